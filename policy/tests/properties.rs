//! Property tests of everything in the policy crate that reads bytes a tenant or an operator
//! controls: the configuration parser, path classification (against a walk of a real
//! directory tree), root patterns, and the log-line escaper.
//!
//! The properties themselves live in `fuzz/src/lib.rs`, shared with the cargo-fuzz targets
//! (`scripts/fuzz`), so `cargo test` and a fuzzing campaign check the same rules; this file
//! adds the generators and the real-filesystem reference walk. `PROPTEST_CASES=N` runs `N`
//! cases per property instead of the defaults below (kept small for CI).

#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod oracle;

use std::fs;
use std::path::{Component, Path, PathBuf};

use oracle::{
    DENY_REASONS, LONGEST_TAG, RefRoot, check_classify, check_clean_scan, check_config, check_denial,
    check_escaped, check_image_agrees, check_image_bytes, check_may_guard_below, check_pattern, compiled,
    ref_is_clean, ref_roots,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as Cases, TestCaseError, TestRunner};
use toctou_policy::logline::{Denial, write_escaped};
use toctou_policy::{Config, DenyReason, Mode, Policy, RootPattern, ScratchPath, Target};

/// `n` cases (or `PROPTEST_CASES`), and no regression files written into the source tree.
fn cases(n: u32) -> Cases {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    Cases {
        cases: n,
        failure_persistence: None,
        ..Cases::default()
    }
}

fn fail(e: String) -> TestCaseError {
    TestCaseError::fail(e)
}

// ---------------------------------------------------------------------------------------------
// The configuration parser.

const DIRECTIVES: [&str; 11] = [
    "mode",
    "root",
    "map",
    "owner",
    "allow_uid",
    "programs",
    "log_socket",
    "log_rate",
    "cache_ttl_ms",
    "cache_slots",
    "cache_shared",
];

const GOOD_LINES: [&str; 9] = [
    "root /home/*/public_html",
    "map /srv/shop 1005",
    "mode audit",
    "allow_uid 0 33",
    "# a comment",
    "",
    "log_rate 5",
    "programs nginx php-fpm*",
    "cache_shared 33",
];

/// A word nobody should see again: printable, no space, no `#`.
fn secret() -> impl Strategy<Value = String> {
    "[!\"$-~]{8,24}"
}

fn number() -> impl Strategy<Value = String> {
    let n = prop_oneof![
        0u32..100,
        any::<u32>(),
        (0u32..32).prop_map(|k| 1u32 << k),
        10_000_000u32..16_777_216,
        10_000_000u32..100_000_000,
        Just(u32::MAX),
        Just(u32::MAX - 1),
    ];
    (n, prop::sample::select(vec!["", "", "", "+", "0", "-"])).prop_map(|(n, sign)| format!("{sign}{n}"))
}

fn pattern_text() -> impl Strategy<Value = String> {
    let comp = prop::sample::select(vec![
        "home",
        "a",
        "b",
        "public_html",
        "srv",
        "shop",
        "*",
        "*",
        "",
        ".",
        "..",
        "a*",
        "?",
        "[x",
        "web",
        // Tenant markers, good and bad.
        "{*}",
        "{*}",
        "{web}",
        "{a}",
        "{}",
        "{a*}",
        "a{b}",
        "{..}",
    ]);
    (
        prop::sample::select(vec!["/", "/", "/", "", "//"]),
        prop::collection::vec(comp, 0..5),
        prop::sample::select(vec!["", "", "/"]),
    )
        .prop_map(|(lead, comps, trail)| format!("{lead}{}{trail}", comps.join("/")))
}

fn argument() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "/home/*/public_html",
            "/srv/shop",
            "/srv/*/*/web",
            "/var/www",
            "/",
            "/run/log.sock",
            "enforce",
            "audit",
            "tenant",
            "euid",
            "nginx",
            "php-fpm*",
        ])
        .prop_map(str::to_string),
        3 => pattern_text(),
        3 => number(),
        3 => secret(),
        1 => "\\PC{1,12}".prop_map(|s| s.split_whitespace().collect::<String>()),
    ]
}

/// One line of a configuration, as bytes (now and then not UTF-8).
fn config_line() -> impl Strategy<Value = Vec<u8>> {
    let directive = prop_oneof![
        8 => prop::sample::select(DIRECTIVES.to_vec()).prop_map(str::to_string),
        1 => "[a-z_]{1,12}",
        1 => "[a-zA-Z0-9_]{30,40}",
        1 => secret(),
    ];
    let sep = prop::sample::select(vec![" ", " ", " ", "\t", "   ", "\u{a0}", " \u{2003}", "\r"]);
    let words = (
        prop::sample::select(vec!["", "", "", " ", "\t"]),
        directive,
        prop::collection::vec((sep, argument()), 0..4),
        prop::option::of(secret().prop_map(|s| format!(" #{s}"))),
    )
        .prop_map(|(lead, d, args, comment)| {
            let mut l = format!("{lead}{d}");
            for (sep, a) in args {
                l.push_str(sep);
                l.push_str(&a);
            }
            l.push_str(&comment.unwrap_or_default());
            l.into_bytes()
        });
    prop_oneof![
        12 => words,
        1 => Just(Vec::new()),
        1 => secret().prop_map(|s| format!("# {s}").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..24),
    ]
}

fn config_text() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(config_line(), 0..9), any::<bool>()).prop_map(|(lines, newline)| {
        let mut t = lines.join(&b'\n');
        if newline {
            t.push(b'\n');
        }
        t
    })
}

fn source_path() -> impl Strategy<Value = PathBuf> {
    prop::sample::select(vec![
        "/etc/toctou-guard.conf",
        "relative.conf",
        "/tmp/a dir/x:1.conf",
        "/etc/tg\u{e9}.conf",
    ])
    .prop_map(PathBuf::from)
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Generated configurations: see `oracle::check_config` (never panics, errors name the
    /// file and the first offending line, quote nothing of the text but the directive word,
    /// the four entry points agree).
    #[test]
    fn config_parser(text in config_text(), source in source_path()) {
        check_config(&text, &source).map_err(fail)?;
    }

    /// Good lines, then one line with a directive and words nobody should see again: every
    /// directive's refusals, each checked for quoting nothing but the directive word.
    #[test]
    fn config_errors_quote_nothing(
        good in prop::collection::vec(prop::sample::select(GOOD_LINES.to_vec()), 0..4),
        directive in prop::sample::select(DIRECTIVES.to_vec()),
        args in prop_oneof![3 => prop::collection::vec(argument(), 1..2), 1 => prop::collection::vec(argument(), 0..4)],
        after in prop::collection::vec(config_line(), 0..3),
    ) {
        let mut lines: Vec<Vec<u8>> = good.iter().map(|l| l.as_bytes().to_vec()).collect();
        lines.push(format!("{directive} {}", args.join(" ")).into_bytes());
        lines.extend(after);
        check_config(&lines.join(&b'\n'), Path::new("/etc/toctou-guard.conf")).map_err(fail)?;
    }

    /// Any bytes at all.
    #[test]
    fn config_parser_on_any_bytes(text in prop::collection::vec(any::<u8>(), 0..256)) {
        check_config(&text, Path::new("/etc/toctou-guard.conf")).map_err(fail)?;
    }
}

#[test]
fn config_documented_examples_hold() {
    for text in [
        "root:$y$j9T$secrethash:19000:0:99999:7:::\n",
        "map /srv/x s3cr3t-value\n",
        "root /a/*\nmode s3cr3t-value\n",
        "root /a/*\nlog_rate s3cr3t-value\n",
        "root s3cr3t-value\n",
        "root /a/*\nnot_a_directive x\n",
        "root /home/*/public_html\nroot /home//*/public_html/\n",
        "mode enforce\n",
        "",
        "\u{feff}root /a/*\n",
    ] {
        check_config(text.as_bytes(), Path::new("/etc/toctou-guard.conf")).unwrap();
    }
    check_config(
        b"root /a/* #c\nmap /b 1 # c\nallow_uid 0 1 2\n\xff s3cr3t-value\n",
        Path::new("/etc/toctou-guard.conf"),
    )
    .unwrap();
}

/// Found by the `config_parse` fuzz target: `cache_slots N`, with `N` in range but not a power
/// of two, was refused with a message that quoted `N`.
#[test]
fn config_cache_slots_message_quotes_no_value() {
    let e = Config::parse_settings("cache_slots 12345678\n", Path::new("c.conf")).unwrap_err();
    assert!(!e.to_string().contains("12345678"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Root patterns and what may be guarded below a directory.

fn probe() -> impl Strategy<Value = Vec<u8>> {
    let comp = prop::sample::select(vec![
        "home",
        "a",
        "b",
        "public_html",
        "srv",
        "shop",
        "web",
        "x",
        "",
        ".",
        "..",
    ]);
    (any::<bool>(), prop::collection::vec(comp, 0..6)).prop_map(|(absolute, comps)| {
        let p = comps.join("/");
        if absolute || p.is_empty() {
            format!("/{p}")
        } else {
            p
        }
        .into_bytes()
    })
}

fn suffix() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop::sample::select(vec!["home", "a", "public_html", "srv", "shop", "web", "x"])
            .prop_map(str::to_string),
        0..5,
    )
}

proptest! {
    #![proptest_config(cases(1024))]

    /// `RootPattern::parse` and every matcher against the reference, multi-star included.
    #[test]
    fn patterns(text in pattern_text(), allow_star in any::<bool>(), probes in prop::collection::vec(probe(), 0..8)) {
        check_pattern(&text, allow_star, &probes).map_err(fail)?;
    }

    /// `Policy::may_guard_below` against the reference, and its promise that a `false` means
    /// nothing at or below the directory is guarded.
    #[test]
    fn may_guard_below(
        trees in prop::collection::vec((pattern_text(), any::<bool>()), 0..4),
        dirs in prop::collection::vec(probe(), 1..6),
        suffixes in prop::collection::vec(suffix(), 0..6),
    ) {
        let policy = policy_of(&trees);
        let roots = ref_roots(policy.config());
        let suffixes: Vec<Vec<&[u8]>> =
            suffixes.iter().map(|s| s.iter().map(|c| c.as_bytes()).collect()).collect();
        for d in &dirs {
            check_may_guard_below(&policy, &roots, d, &suffixes).map_err(fail)?;
        }
    }
}

/// A policy with the valid ones of `trees` (`true`: a `root`, else a `map` to uid 1005).
fn policy_of(trees: &[(String, bool)]) -> Policy {
    let mut c = Config::empty(Path::new("props.conf"));
    for (text, is_root) in trees {
        if let Ok(p) = RootPattern::parse(text, *is_root) {
            let _ = c.add_root(p, if *is_root { None } else { Some(1005) });
        }
    }
    Policy::new(c)
}

// ---------------------------------------------------------------------------------------------
// Classification against the lexical reference.

fn path_comp() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(vec![
            "home", "a", "b", "public_html", "x", "y", "srv", "shop", "web", ".", "..", "", "*",
            // Longer than a pattern's literal, with it as their start (a run of literals is
            // matched in one compare, which must end at a `/`).
            "shopping", "bb", "a.b",
        ])
        .prop_map(str::to_string),
        1 => "[a-z]{20,70}",
        1 => "[a-z]{500,1400}",
    ]
}

fn any_path() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), prop::collection::vec(path_comp(), 0..10)).prop_map(|(absolute, comps)| {
        let p = comps.join("/");
        if absolute { format!("/{p}") } else { p }.into_bytes()
    })
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Random trees (roots with any number of `*`, maps) and random paths and bases: the
    /// policy's walk, its small-buffer and reused-buffer runs and the clean fast path all
    /// give the reference walk's answer.
    #[test]
    fn classify_matches_the_reference_walk(
        trees in prop::collection::vec((pattern_text(), any::<bool>()), 0..5),
        euid in any::<bool>(),
        base in prop::option::of(any_path()),
        paths in prop::collection::vec(any_path(), 1..8),
    ) {
        let mut policy = policy_of(&trees);
        if euid {
            let mut c = policy.config().clone();
            c.owner = toctou_policy::OwnerRule::Euid;
            policy = Policy::new(c);
        }
        let roots = ref_roots(policy.config());
        let mut scratch = ScratchPath::new();
        for p in &paths {
            check_classify(&policy, &roots, base.as_deref(), p, &mut scratch).map_err(fail)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The compiled image (`toctou-guard compile`).

/// `c`, or with `root /home/*/public_html` when none of its random trees was valid (an image
/// holds at least one tree).
fn with_a_root(mut c: Config) -> Config {
    if c.roots.is_empty() {
        let p = RootPattern::parse("/home/*/public_html", true).unwrap();
        c.add_root(p, None).unwrap();
    }
    c
}

proptest! {
    #![proptest_config(cases(512))]

    /// Random trees and settings, compiled: every lookup on the image equals the parsed
    /// policy's, and both equal the reference walk.
    #[test]
    fn a_compiled_image_answers_as_the_text(
        trees in prop::collection::vec((pattern_text(), any::<bool>()), 1..6),
        euid in any::<bool>(),
        audit in any::<bool>(),
        allow in prop::collection::vec(any::<u32>().prop_filter("a uid", |u| *u != u32::MAX), 0..3),
        base in prop::option::of(any_path()),
        paths in prop::collection::vec(any_path(), 1..8),
    ) {
        let mut c = with_a_root(policy_of(&trees).config().clone());
        if euid {
            c.owner = toctou_policy::OwnerRule::Euid;
        }
        if audit {
            c.mode = Mode::Audit;
        }
        c.allow_uids = allow;
        c.programs = vec!["nginx".into(), "php-fpm*".into()];
        let parsed = Policy::new(c);
        let image = compiled(&parsed).map_err(fail)?;
        prop_assert!(image.is_compiled() && !parsed.is_compiled());
        let roots = ref_roots(parsed.config());
        let mut scratch = ScratchPath::new();
        for p in &paths {
            check_image_agrees(&parsed, &image, base.as_deref(), p).map_err(fail)?;
            check_classify(&image, &roots, base.as_deref(), p, &mut scratch).map_err(fail)?;
        }
        prop_assert_eq!(image.decide(5, 6), parsed.decide(5, 6));
    }

    /// A valid image with bytes changed, cut or appended is refused with an error naming the
    /// file, or loads and answers every lookup: never a panic.
    #[test]
    fn a_malformed_image_is_refused_not_crashed(
        trees in prop::collection::vec((pattern_text(), any::<bool>()), 1..6),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
        tail in prop::collection::vec(any::<u8>(), 0..4),
        paths in prop::collection::vec(any_path(), 1..4),
    ) {
        let c = with_a_root(policy_of(&trees).config().clone());
        let mut bytes = toctou_policy::image::compile(&c, Default::default()).map_err(fail)?;
        for (at, b) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *b;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        bytes.extend_from_slice(&tail);
        let paths: Vec<&[u8]> = paths.iter().map(Vec::as_slice).collect();
        check_image_bytes(bytes, &paths).map_err(fail)?;
    }

    #[test]
    fn any_bytes_as_an_image(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut b = bytes;
        // Most random bytes die at the magic: give half of them a good header start.
        if b.len() >= 16 && b[0] & 1 == 0 {
            b[..8].copy_from_slice(&toctou_policy::image::MAGIC);
            b[8..12].copy_from_slice(&toctou_policy::image::VERSION.to_le_bytes());
        }
        check_image_bytes(b, &[b"/home/a/public_html/x", b"/srv/shop"]).map_err(fail)?;
    }
}

// ---------------------------------------------------------------------------------------------
// The clean fast path's one-pass scanner (8 bytes at a time) against the old byte-wise one.

/// A component made of the bytes the scanner looks at (`.`, NUL, a high byte), or long.
fn scan_comp() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::collection::vec(prop::sample::select(vec![b'a', b'.', 0u8, 0xff, b'z']), 1..12),
        1 => prop::collection::vec(Just(b'x'), 1..200),
        1 => prop::sample::select(vec![&b"."[..], b"..", b"...", b".a", b"a."]).prop_map(<[u8]>::to_vec),
    ]
}

/// Components joined by `/`, perhaps brought to about `PATH_MAX` bytes, perhaps with a bad
/// piece (`//`, `/./`, `/..`, a trailing `/`, NUL) put at any offset; or any bytes at all.
fn scan_path() -> impl Strategy<Value = Vec<u8>> {
    let bad = prop::sample::select(vec![
        &b"//"[..],
        b"/./",
        b"/../",
        b"/",
        b"/.",
        b"/..",
        b"\0",
        b"./",
        b".",
    ]);
    let built = (
        any::<bool>(),
        prop::collection::vec(scan_comp(), 0..40),
        prop::option::of(prop::sample::select(vec![4094usize, 4095, 4096, 4097])),
        prop::option::of((any::<prop::sample::Index>(), bad)),
    )
        .prop_map(|(absolute, comps, len, cut)| {
            let mut p = if absolute { vec![b'/'] } else { Vec::new() };
            p.extend(comps.join(&b'/'));
            if let Some(len) = len {
                p.resize(len, b'y');
            }
            if let Some((at, piece)) = cut {
                let at = at.index(p.len() + 1);
                p.splice(at..at, piece.iter().copied());
            }
            p
        });
    prop_oneof![
        4 => built,
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(|mut p| {
            p.insert(0, b'/');
            p
        }),
    ]
}

proptest! {
    #![proptest_config(cases(2048))]

    /// The one-pass scanner gives the old scanner's (and the reference's) verdict, components
    /// and prefix lengths, on paths near `PATH_MAX` and with every bad piece anywhere.
    #[test]
    fn clean_scan_matches_the_old_scanner(paths in prop::collection::vec(scan_path(), 1..8)) {
        for p in &paths {
            check_clean_scan(p).map_err(fail)?;
        }
    }
}

/// Every bad piece at every offset of a clean path (so at every place in an 8-byte word and
/// across two), and clean paths past the scanner's 16 words and 16 remembered components.
#[test]
fn clean_scan_at_every_offset_and_length() {
    let base = b"/abcdefg/h/ijklmnopqrs/t.u/..v/w../xyz";
    assert!(ref_is_clean(base));
    let mut clean = 0;
    for piece in [&b"//"[..], b"/./", b"/../", b"/.", b"/..", b"/", b"\0", b"."] {
        for at in 0..=base.len() {
            let mut p = base.to_vec();
            p.splice(at..at, piece.iter().copied());
            clean += usize::from(ref_is_clean(&p));
            check_clean_scan(&p).unwrap();
        }
    }
    assert!(clean > 0, "some insertions stay clean (a `.` inside a name)");
    for len in 0..=base.len() {
        check_clean_scan(&base[..len]).unwrap();
    }
    // `/a/a/…` up to PATH_MAX (2,047 components), one byte short, and one byte too long.
    for len in [4093, 4094, 4095, 4096, 4097] {
        let mut p: Vec<u8> = b"/a".iter().copied().cycle().take(len).collect();
        check_clean_scan(&p).unwrap();
        p.push(b'b');
        check_clean_scan(&p).unwrap();
    }
    let long = format!("/{}/x/{}", "y".repeat(300), "z/".repeat(40));
    check_clean_scan(long.trim_end_matches('/').as_bytes()).unwrap();
    check_clean_scan(long.as_bytes()).unwrap();
    assert!(ref_is_clean(long.trim_end_matches('/').as_bytes()));
}

// ---------------------------------------------------------------------------------------------
// Classification against a walk of a real directory tree.

/// `T/home/{a,b}/public_html/{x,y}` and `T/srv/shop` under a fresh directory `T` (its
/// canonical name, so no symlink is involved), removed on drop.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let base = fs::canonicalize(std::env::temp_dir()).unwrap();
        let root = base.join(format!("toctou-props-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for t in ["a", "b"] {
            for d in ["x", "y"] {
                fs::create_dir_all(root.join("home").join(t).join("public_html").join(d)).unwrap();
            }
        }
        fs::create_dir_all(root.join("srv/shop")).unwrap();
        let root = fs::canonicalize(root).unwrap();
        assert!(!root.to_str().unwrap().contains([' ', '\t', '#']), "{root:?}");
        Tree { root }
    }

    fn text(&self) -> &str {
        self.root.to_str().unwrap()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The components of a real absolute path, as bytes.
fn comps_of(p: &Path) -> Vec<Vec<u8>> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_encoded_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

/// The root the real directory `dir` is exactly at (first in order), with its tenant depth.
fn root_at(roots: &[RefRoot], dir: &Path) -> Option<(usize, usize)> {
    let comps = comps_of(dir);
    let comps: Vec<&[u8]> = comps.iter().map(Vec::as_slice).collect();
    roots
        .iter()
        .position(|r| oracle::ref_matches(&r.pat, &comps))
        .map(|i| (i, oracle::ref_tenant_depth(&roots[i].pat)))
}

#[derive(Debug, PartialEq)]
enum Real {
    /// Every component named a real directory: where the walk ended, and the root (index,
    /// tenant directory) it entered first.
    Reached(PathBuf, Option<(usize, PathBuf)>),
    /// A `..` climbed out of the tenant directory entered first.
    Escapes,
    /// A component does not exist (or is no plain directory): the kernel would stop here.
    Missing,
}

/// Walk `comps` from `/` the way the kernel does: each step is `canonicalize(dir/c)` of a
/// real directory, never a symlink, so `..` is the kernel's answer, not a string operation.
fn real_walk(roots: &[RefRoot], comps: &[&str]) -> Real {
    let mut cur = PathBuf::from("/");
    let mut entered = root_at(roots, &cur);
    for c in comps {
        let next = cur.join(c);
        let Ok(meta) = fs::symlink_metadata(&next) else {
            return Real::Missing;
        };
        if meta.file_type().is_symlink() || !meta.is_dir() {
            return Real::Missing;
        }
        if *c == ".."
            && let Some((_, td)) = entered
            && td > 0
            && comps_of(&cur).len() <= td
        {
            return Real::Escapes;
        }
        cur = fs::canonicalize(&next).unwrap();
        if entered.is_none() {
            entered = root_at(roots, &cur);
        }
    }
    let tenant = entered.map(|(i, td)| {
        let mut t = PathBuf::from("/");
        for c in comps_of(&cur).iter().take(td) {
            t.push(std::str::from_utf8(c).unwrap());
        }
        (i, t)
    });
    Real::Reached(cur, tenant)
}

/// The choices a walk makes, turned into components by looking at the real tree as it goes
/// (below `T`: mostly an existing child; anywhere: `..`, `.`, an empty component, or any word
/// of the alphabet, which may not exist).
fn walk_components(tree: &Path, start: &Path, choices: &[(u8, u8)]) -> Vec<String> {
    const ALPHABET: [&str; 11] = [
        "home",
        "a",
        "b",
        "public_html",
        "x",
        "y",
        "srv",
        "shop",
        ".",
        "..",
        "",
    ];
    let mut cur = start.to_path_buf();
    let mut out = Vec::new();
    for &(kind, pick) in choices {
        let mut children: Vec<String> = Vec::new();
        if cur.starts_with(tree) {
            for e in fs::read_dir(&cur).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    children.push(e.file_name().into_string().unwrap());
                }
            }
            children.sort();
        }
        let c = match kind % 8 {
            0..=3 if !children.is_empty() => children[usize::from(pick) % children.len()].clone(),
            4 | 5 => "..".to_string(),
            6 => ALPHABET[usize::from(pick) % ALPHABET.len()].to_string(),
            _ => ALPHABET[8 + usize::from(pick) % 3].to_string(),
        };
        // Follow the walk lexically (good enough to pick the next children; the check is below).
        match c.as_str() {
            "" | "." => {}
            ".." => {
                cur.pop();
            }
            name => cur.push(name),
        }
        out.push(c);
    }
    out
}

#[test]
fn classify_agrees_with_a_real_walk() {
    let tree = Tree::new();
    let t = tree.text();
    let configs = [
        format!("root {t}/home/*/public_html\nmap {t}/srv/shop 1005\n"),
        format!("root {t}/home/*/public_html\nroot {t}/srv/*\nmap {t}/srv/shop 1005\nowner euid\n"),
        format!("root {t}/home/*\nroot {t}/home/a/public_html\n"),
        format!("root {t}/home/*/*\nmap {t}/srv 7\n"),
        format!("map {t}/home/a/public_html/x 9\nroot {t}/home/*/public_html\n"),
    ];
    let policies: Vec<(Policy, Vec<RefRoot>)> = configs
        .iter()
        .map(|c| {
            let p = Policy::new(Config::parse(c, Path::new("tree.conf")).unwrap());
            let r = ref_roots(p.config());
            (p, r)
        })
        .collect();
    let bases: Vec<Option<PathBuf>> = vec![
        None,
        Some(tree.root.clone()),
        Some(tree.root.join("home")),
        Some(tree.root.join("home/a/public_html")),
        Some(tree.root.join("home/b/public_html/x")),
        Some(tree.root.join("srv/shop")),
    ];
    let strategy = (
        0..policies.len(),
        0..bases.len(),
        any::<bool>(),
        prop::collection::vec((any::<u8>(), any::<u8>()), 0..10),
    );
    let config = cases(512);
    let total = config.cases as usize;
    let mut runner = TestRunner::new(config);
    let reached = std::cell::Cell::new(0usize);
    let scratch = std::cell::RefCell::new(ScratchPath::new());
    runner
        .run(&strategy, |(pi, bi, absolute, choices)| {
            let (policy, roots) = &policies[pi];
            let base = bases[bi].as_deref();
            // Absolute paths start with T's own components; relative ones walk from the base.
            let absolute = absolute || base.is_none();
            let start = if absolute {
                tree.root.as_path()
            } else {
                base.unwrap_or(&tree.root)
            };
            let comps = walk_components(&tree.root, start, &choices);
            let rel = comps.join("/");
            let path = if absolute { format!("{t}/{rel}") } else { rel };
            let base_bytes = base.map(|b| b.as_os_str().as_encoded_bytes());
            check_classify(
                policy,
                roots,
                base_bytes,
                path.as_bytes(),
                &mut scratch.borrow_mut(),
            )
            .map_err(fail)?;

            // The same walk done by the kernel, one real directory at a time.
            let mut all: Vec<&str> = Vec::new();
            // As the path reads: a relative one that starts with an empty component is not.
            let absolute = path.starts_with('/');
            let base_text = base.map(|b| b.to_str().unwrap());
            if !absolute {
                all.extend(base_text.unwrap_or("").split('/'));
            }
            all.extend(path.split('/'));
            let all: Vec<&str> = all.into_iter().filter(|c| !c.is_empty()).collect();
            let real = real_walk(roots, &all);
            let mut out = ScratchPath::new();
            let target = policy.classify(base_bytes, path.as_bytes(), &mut out);
            let ctx = || format!("{path:?} from {base:?}: policy {target:?}, kernel walk {real:?}");
            match &real {
                Real::Missing => return Ok(()),
                Real::Escapes => {
                    prop_assert_eq!(target, Target::Deny(DenyReason::EscapesTenant), "{}", ctx())
                }
                Real::Reached(end, entered) => {
                    reached.set(reached.get() + 1);
                    // The lexical normalisation is where the kernel ended up (no symlinks here).
                    prop_assert_eq!(out.as_bytes(), end.as_os_str().as_encoded_bytes(), "{}", ctx());
                    let full = if absolute {
                        PathBuf::from(&path)
                    } else {
                        base.unwrap().join(&path)
                    };
                    let canonical = fs::canonicalize(&full).ok();
                    prop_assert_eq!(canonical.as_ref(), Some(end), "{}", ctx());
                    match (target, entered) {
                        (Target::Outside, None) => {}
                        (Target::Guarded { root, tenant_len, .. }, Some((want_root, tenant))) => {
                            prop_assert_eq!(root, *want_root, "{}", ctx());
                            prop_assert_eq!(
                                &out.as_bytes()[..tenant_len],
                                tenant.as_os_str().as_encoded_bytes(),
                                "{}",
                                ctx()
                            );
                        }
                        _ => prop_assert!(false, "{}", ctx()),
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    // The generator is meant to reach real directories most of the time.
    let reached = reached.get();
    assert!(
        reached * 3 >= total,
        "only {reached} of {total} walks reached a real directory"
    );
}

// ---------------------------------------------------------------------------------------------
// The log line.

/// Bytes that are hard for an escaper: `\`, `=`, space, controls, high bytes, `.` and `x`.
fn nasty_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(vec![b'\\', b'=', b' ', b'\n', 0, 0x7f, 0xff, 0xc3, b'.', b'x', b'5', b'c']),
            2 => any::<u8>(),
            2 => b'!'..=b'~',
        ],
        0..max,
    )
}

proptest! {
    #![proptest_config(cases(1024))]

    /// `write_escaped`: printable, no space or `=`, canonical, within the bound, cut exactly
    /// where the next byte would not fit, and it reads back as the input (or its start).
    #[test]
    fn escaped_fields(bytes in nasty_bytes(700), max in prop_oneof![0usize..16, 0usize..700]) {
        let mut out = String::new();
        write_escaped(&mut out, &bytes, max).unwrap();
        check_escaped(&bytes, max, &out).map_err(fail)?;
    }

    /// Whole denial lines: the fixed field order when split on spaces, every value readable.
    #[test]
    fn denial_lines(
        audit in any::<bool>(),
        reason in 0..DENY_REASONS.len(),
        audit_mode in any::<bool>(),
        ids in (prop::option::of(any::<u32>()), prop::option::of(any::<u32>()), prop::option::of(any::<u32>())),
        suppressed in prop_oneof![0u64..10, any::<u64>(), Just(u64::from(u32::MAX))],
        comm in nasty_bytes(40),
        tenant in nasty_bytes(300),
        path in nasty_bytes(700),
        pid in prop_oneof![1u32..100_000, any::<u32>()],
        fs_tag in any::<bool>(),
    ) {
        let d = Denial {
            audit,
            reason: DENY_REASONS[reason],
            mode: if audit_mode { Mode::Audit } else { Mode::Enforce },
            uid: ids.0,
            owner: ids.1,
            expected: ids.2,
            suppressed,
            comm: &comm,
            tenant: &tenant,
            path: &path,
        };
        let tag = if fs_tag { LONGEST_TAG } else { "toctou-guard" };
        check_denial(&d, tag, pid).map_err(fail)?;
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Any text, and any damage to a real line, is read as a denial or refused with an
    /// error: never a panic (`toctou-guard report` reads whatever a log holds).
    #[test]
    fn parsing_any_text_never_panics(text in ".{0,300}", cut in 0usize..400) {
        let _ = toctou_policy::logline::parse_header(&text);
        let _ = toctou_policy::logline::parse_denial(&text);
        let real = "action=deny reason=owner-mismatch mode=enforce uid=33 owner=1 expected=2 suppressed=0 comm=x tenant=/t path=/t/\\x20";
        let end = cut.min(real.len());
        let path_at = real.find(" path=").unwrap() + " path=".len();
        if end < path_at {
            prop_assert!(toctou_policy::logline::parse_denial(&real[..end]).is_err());
        }
        prop_assert!(toctou_policy::logline::parse_denial(real).is_ok());
    }
}

#[test]
fn the_longest_denial_line_fits_the_shim_buffer() {
    let all = [0xffu8; 2000];
    let d = Denial {
        audit: true,
        reason: DenyReason::TenantIsSymlink,
        mode: Mode::Enforce,
        uid: Some(u32::MAX),
        owner: Some(u32::MAX),
        expected: Some(u32::MAX),
        suppressed: u64::from(u32::MAX),
        comm: &all,
        tenant: &all,
        path: &all,
    };
    check_denial(&d, LONGEST_TAG, u32::MAX).unwrap();
}
