//! Reference models and property checks for everything in `toctou_policy` that reads bytes a
//! tenant or an operator controls: the configuration parser, path classification, root
//! patterns and the log-line escaper.
//!
//! One copy, two users: the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, through this
//! crate) and the property tests (`policy/tests/properties.rs`, which includes this file as
//! a module), so a coverage-guided campaign and `cargo test` hold the code to the same rules.
//! Every check returns `Err(what was violated)` instead of panicking, so each caller can report
//! it its own way. The reference models are written from the documented semantics, not from
//! the implementation: walk the path as written, component by component.

use std::collections::HashSet;
use std::path::Path;

use toctou_policy::config::RootEntry;
use toctou_policy::logline::{self, CUT, Denial, MAX_COMM, MAX_PATH, MAX_TENANT, PRI_DENIAL};
use toctou_policy::path::PathBuf as Scratch;
use toctou_policy::{Config, DenyReason, Error, ErrorKind, Expected, OwnerRule, PATH_MAX, Policy, Target};

/// `Ok`, or what was violated.
pub type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn show(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

// ---------------------------------------------------------------------------------------------
// The configuration parser.

/// Shortest run of input bytes that counts as "quoted" in an error message.
pub const QUOTE_WINDOW: usize = 8;

/// The runs of [`QUOTE_WINDOW`] bytes error messages are made of: the parser's own source
/// (tests excluded) and the one constant it prints that is not spelled out there (`1 << 24`).
/// An input word that happens to spell a piece of a fixed message (`(expected`,
/// `/home/*/public_html)`) is not a leak.
fn message_runs() -> &'static HashSet<[u8; QUOTE_WINDOW]> {
    static RUNS: std::sync::OnceLock<HashSet<[u8; QUOTE_WINDOW]>> = std::sync::OnceLock::new();
    RUNS.get_or_init(|| {
        let mut text = Vec::new();
        for src in [
            include_str!("../../policy/src/config.rs"),
            include_str!("../../policy/src/pattern.rs"),
            include_str!("../../policy/src/error.rs"),
        ] {
            let code = src.split("#[cfg(test)]").next().unwrap_or(src);
            text.extend_from_slice(code.as_bytes());
            text.push(b'\n');
        }
        text.extend_from_slice(b" 16777216 ");
        text.windows(QUOTE_WINDOW)
            .map(|w| <[u8; QUOTE_WINDOW]>::try_from(w).unwrap_or_default())
            .collect()
    })
}

/// `components` joined into a path: absolute (a leading `/`, and `/` alone when empty) or
/// relative. The fuzz targets build their probe paths with it.
pub fn join_path<'a>(components: impl IntoIterator<Item = &'a [u8]>, absolute: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in components.into_iter().enumerate() {
        if absolute || i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    if absolute && out.is_empty() {
        out.push(b'/');
    }
    out
}

/// The directive word of a line, as the parser reads it (`None`: blank or comment).
pub fn directive_of(line: &str) -> Option<&str> {
    let content = line.split('#').next().unwrap_or("").trim();
    content.split_whitespace().next()
}

/// Every word of a line (split at whitespace and `#`), directive included: what a message
/// may not quote, but for the offending line's directive word.
fn words(line: &[u8]) -> Vec<&[u8]> {
    match std::str::from_utf8(line) {
        Ok(s) => s
            .split(|c: char| c.is_whitespace() || c == '#')
            .filter(|w| !w.is_empty())
            .map(str::as_bytes)
            .collect(),
        Err(_) => line
            .split(|b| b.is_ascii_whitespace() || *b == b'#')
            .filter(|w| !w.is_empty())
            .collect(),
    }
}

/// Byte offset where line `n` (1-based) starts.
fn line_start(text: &[u8], n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    text.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 2)
        .map_or(text.len(), |(i, _)| i + 1)
}

/// All the properties of `Config::parse_bytes` and `Config::parse_settings_bytes` (and of
/// their `&str` twins) on one input: they never panic (the caller's part), agree with each
/// other, and every error names `source` and a line of the text, is found at the first
/// offending line and quotes nothing of the text but the offending directive word.
pub fn check_config(text: &[u8], source: &Path) -> Check {
    let full = Config::parse_bytes(text, source);
    let settings = Config::parse_settings_bytes(text, source);
    if let Ok(s) = std::str::from_utf8(text) {
        ensure!(Config::parse(s, source) == full, "parse and parse_bytes disagree");
        ensure!(
            Config::parse_settings(s, source) == settings,
            "parse_settings and parse_settings_bytes disagree"
        );
    }
    for (res, need_roots) in [(&full, true), (&settings, false)] {
        match res {
            Ok(c) => check_config_ok(text, source, c, need_roots)?,
            Err(e) => check_config_err(text, source, e, need_roots)?,
        }
    }
    match (&full, &settings) {
        (Ok(a), Ok(b)) => ensure!(
            a == b,
            "parse_bytes and parse_settings_bytes read different configs"
        ),
        (Err(a), Err(b)) => ensure!(a == b, "different errors: {a} / {b}"),
        (Err(a), Ok(b)) => ensure!(
            b.roots.is_empty() && a.kind() == ErrorKind::Invalid && a.line().is_none(),
            "only parse_bytes refused, and not for a missing root: {a}"
        ),
        (Ok(_), Err(b)) => return Err(format!("only parse_settings_bytes refused: {b}")),
    }
    Ok(())
}

fn check_config_ok(text: &[u8], source: &Path, c: &Config, need_roots: bool) -> Check {
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    ensure!(c.source == source, "source {:?} is not {source:?}", c.source);
    ensure!(!need_roots || !c.roots.is_empty(), "accepted with no root");
    let maps = c.roots.iter().take_while(|r| r.fixed_uid.is_some()).count();
    ensure!(
        c.roots[maps..].iter().all(|r| r.fixed_uid.is_none()),
        "a map after a root"
    );
    let mut keys = HashSet::new();
    for RootEntry {
        pattern,
        fixed_uid,
        line,
    } in &c.roots
    {
        ensure!(
            *line >= 1 && *line <= lines.len(),
            "root from line {line} of {}",
            lines.len()
        );
        let l = std::str::from_utf8(lines[line - 1]).map_err(|_| format!("line {line} is not UTF-8"))?;
        let want = if fixed_uid.is_some() { "map" } else { "root" };
        ensure!(
            directive_of(l) == Some(want),
            "line {line} is not a '{want}' line"
        );
        let arg = l.split('#').next().unwrap_or("").split_whitespace().nth(1);
        ensure!(
            arg == Some(pattern.as_str()),
            "line {line}'s pattern is not {:?}",
            pattern.as_str()
        );
        ensure!(
            keys.insert(pattern.key()),
            "tree {} configured twice",
            pattern.key()
        );
    }
    ensure!(
        (1..=1_000_000).contains(&c.log_rate)
            && c.cache_ttl_ms <= 3_600_000
            && c.cache_slots.is_power_of_two()
            && c.cache_slots <= 1 << 24
            && c.log_socket.is_absolute(),
        "a setting out of range: {c:?}"
    );
    Ok(())
}

fn check_config_err(text: &[u8], source: &Path, e: &Error, need_roots: bool) -> Check {
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    ensure!(e.file() == source, "error names {:?}, not {source:?}", e.file());
    let prefix = match e.line() {
        Some(l) => format!("{}:{l}: ", source.display()),
        None => format!("{}: ", source.display()),
    };
    ensure!(
        e.to_string() == format!("{prefix}{}", e.message()),
        "error does not read FILE:LINE: message: {e}"
    );
    ensure!(!e.message().is_empty(), "empty message");
    ensure!(
        matches!(e.kind(), ErrorKind::Syntax | ErrorKind::Invalid),
        "kind {:?} from a parser",
        e.kind()
    );
    let mut msg = e.message().to_string();
    match e.line() {
        None => ensure!(
            need_roots && e.kind() == ErrorKind::Invalid,
            "an error without a line: {e}"
        ),
        Some(l) => {
            ensure!(
                l >= 1 && l <= lines.len(),
                "line {l} of a {}-line text",
                lines.len()
            );
            match std::str::from_utf8(lines[l - 1]) {
                Err(_) => ensure!(e.message() == "not UTF-8 text", "line {l} is not UTF-8, yet: {e}"),
                Ok(s) => {
                    let Some(d) = directive_of(s) else {
                        return Err(format!("line {l} is blank or a comment, yet: {e}"));
                    };
                    // The one word a message may quote.
                    msg = msg.replace(&format!("'{d}'"), "' '");
                }
            }
            // The first offending line: everything before it is fine on its own.
            let before = &text[..line_start(text, l)];
            if let Err(first) = Config::parse_settings_bytes(before, source) {
                return Err(format!("error reported on line {l}, but already: {first}"));
            }
        }
    }
    // Nothing of the text but that word: no run of QUOTE_WINDOW bytes of any word.
    for (n, line) in lines.iter().enumerate() {
        if let Some(run) = quoted_run(&msg, &words(line)) {
            return Err(format!("the message quotes {} of line {}: {e}", show(run), n + 1));
        }
    }
    Ok(())
}

/// A run of [`QUOTE_WINDOW`] bytes of one of `words` that `msg` contains, and that is not
/// a piece of the fixed message text.
fn quoted_run<'a>(msg: &str, words: &[&'a [u8]]) -> Option<&'a [u8]> {
    let quoted: HashSet<&[u8]> = msg.as_bytes().windows(QUOTE_WINDOW).collect();
    if quoted.is_empty() {
        return None;
    }
    words.iter().flat_map(|w| w.windows(QUOTE_WINDOW)).find(|run| {
        quoted.contains(run)
            && !<[u8; QUOTE_WINDOW]>::try_from(*run).is_ok_and(|r| message_runs().contains(&r))
    })
}

// ---------------------------------------------------------------------------------------------
// Root patterns, as a list of components (`None` is `*`).

/// A pattern's components (`None` is `*`) and the component marked `{...}` as the tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pat {
    pub comps: Vec<Option<Vec<u8>>>,
    pub marked: Option<usize>,
}

impl std::ops::Deref for Pat {
    type Target = Vec<Option<Vec<u8>>>;
    fn deref(&self) -> &Self::Target {
        &self.comps
    }
}

/// Why a pattern is refused, as the reference sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatErr {
    NotAbsolute,
    Dot,
    StarInMap,
    PartialStar,
    MarkerInMap,
    EmptyMarker,
    TwoMarkers,
    PartialBrace,
}

impl PatErr {
    /// The words of `RootPattern::parse`'s message for it.
    pub fn words(self) -> &'static str {
        match self {
            PatErr::NotAbsolute => "not absolute",
            PatErr::Dot => "'..' are not allowed",
            PatErr::StarInMap | PatErr::MarkerInMap => "only allowed in 'root'",
            PatErr::PartialStar => "whole path component",
            PatErr::EmptyMarker => "empty tenant marker",
            PatErr::TwoMarkers => "more than one tenant marker",
            PatErr::PartialBrace => "braces must enclose",
        }
    }
}

/// Absolute, whole components, `*` for any one component (where allowed), no `.` or `..`,
/// no other glob character; empty components (`//`, a trailing `/`) do not count. In a
/// `root`, at most one component `{X}` (X a `*` or a name) marks the tenant; no other brace.
pub fn ref_parse_pattern(text: &str, allow_star: bool) -> Result<Pat, PatErr> {
    if !text.starts_with('/') {
        return Err(PatErr::NotAbsolute);
    }
    let mut out = Pat::default();
    for c in text.split('/').filter(|c| !c.is_empty()) {
        let c = if c.len() >= 2 && c.starts_with('{') && c.ends_with('}') {
            if !allow_star {
                return Err(PatErr::MarkerInMap);
            }
            if c.len() == 2 {
                return Err(PatErr::EmptyMarker);
            }
            if out.marked.is_some() {
                return Err(PatErr::TwoMarkers);
            }
            out.marked = Some(out.comps.len());
            &c[1..c.len() - 1]
        } else {
            c
        };
        if c == "." || c == ".." {
            return Err(PatErr::Dot);
        }
        if c == "*" {
            if !allow_star {
                return Err(PatErr::StarInMap);
            }
            out.comps.push(None);
        } else if c.contains(['{', '}']) {
            return Err(PatErr::PartialBrace);
        } else if c.contains(['*', '?', '[']) {
            return Err(PatErr::PartialStar);
        } else {
            out.comps.push(Some(c.as_bytes().to_vec()));
        }
    }
    Ok(out)
}

/// The marked component is the tenant; else the last `*`; a pattern with neither is its own
/// tenant.
pub fn ref_tenant_depth(p: &Pat) -> usize {
    p.marked
        .or_else(|| p.iter().rposition(Option::is_none))
        .map_or(p.len(), |i| i + 1)
}

pub fn ref_key(p: &Pat) -> String {
    let mut k = String::new();
    for c in p.iter() {
        k.push('/');
        match c {
            None => k.push('*'),
            Some(l) => k.push_str(&String::from_utf8_lossy(l)),
        }
    }
    if k.is_empty() {
        k.push('/');
    }
    k
}

/// Does the component list `comps` match `p` exactly (same depth)?
pub fn ref_matches(p: &[Option<Vec<u8>>], comps: &[&[u8]]) -> bool {
    p.len() == comps.len()
        && p.iter().zip(comps).all(|(pc, c)| match pc {
            None => !c.is_empty(),
            Some(l) => l.as_slice() == *c,
        })
}

/// Absolute, shorter than `PATH_MAX`, no empty, `.` or `..` component, no trailing `/`.
pub fn ref_is_clean(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') || path.len() >= PATH_MAX {
        return false;
    }
    path == b"/"
        || path[1..]
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

/// The components of a clean path (none for `/`).
pub fn clean_components(path: &[u8]) -> Vec<&[u8]> {
    if path == b"/" {
        Vec::new()
    } else {
        path[1..].split(|&b| b == b'/').collect()
    }
}

/// The clean fast path's scanner before the one-pass rewrite (decide.rs at 5fba592), kept as
/// a second reference: cleanliness by a search for each `/` and a look at what follows it.
pub fn old_is_clean(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') || path.len() >= PATH_MAX {
        return false;
    }
    if path.len() == 1 {
        return true;
    }
    let mut i = 0;
    while let Some(off) = path[i..].iter().position(|&b| b == b'/') {
        let c = &path[i + off + 1..];
        let next = c.iter().position(|&b| b == b'/').unwrap_or(c.len());
        if matches!(&c[..next], b"" | b"." | b"..") {
            return false;
        }
        i += off + 1;
    }
    true
}

/// The old scanner's components of a clean absolute path.
pub fn old_clean_components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// The old scanner's byte length of the first `n` components (`/` itself for 0).
pub fn old_prefix_len(path: &[u8], n: usize) -> usize {
    if n == 0 {
        return 1;
    }
    let mut seen = 0;
    for (i, &b) in path.iter().enumerate().skip(1) {
        if b == b'/' {
            seen += 1;
            if seen == n {
                return i;
            }
        }
    }
    path.len()
}

/// `toctou_policy::path::clean_scan` (the one pass of `Policy::classify_clean`) against the
/// reference and the old scanner: the same verdict on cleanliness, the same components, the
/// same prefix lengths (the tenant's length is one of them).
pub fn check_clean_scan(path: &[u8]) -> Check {
    let want = ref_is_clean(path);
    ensure!(
        old_is_clean(path) == want,
        "{}: the two references disagree",
        show(path)
    );
    let got = toctou_policy::path::clean_scan(path);
    ensure!(
        got.is_some() == want,
        "{}: clean_scan says clean = {}, the reference {want}",
        show(path),
        got.is_some()
    );
    let Some((comps, prefixes)) = got else {
        return Ok(());
    };
    let want_comps = clean_components(path);
    ensure!(
        comps == want_comps && old_clean_components(path).eq(comps.iter().copied()),
        "{}: components {:?}, expected {:?}",
        show(path),
        comps.iter().map(|c| show(c)).collect::<Vec<_>>(),
        want_comps.iter().map(|c| show(c)).collect::<Vec<_>>()
    );
    for (n, &len) in prefixes.iter().enumerate() {
        let want_len = join(&want_comps[..n]).len();
        ensure!(
            len == want_len && old_prefix_len(path, n) == want_len,
            "{}: prefix of {n} components {len} bytes long, expected {want_len}",
            show(path)
        );
    }
    Ok(())
}

/// `/` and the components joined by `/`.
pub fn join(comps: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in comps {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Is the clean `path` at or below a path matching `p`? The byte length of its tenant prefix.
pub fn ref_match_clean(p: &Pat, path: &[u8]) -> Option<usize> {
    let comps = clean_components(path);
    (comps.len() >= p.len() && ref_matches(p, &comps[..p.len()]))
        .then(|| join(&comps[..ref_tenant_depth(p)]).len())
}

/// Could a path matching `p` lie strictly below the clean directory `dir`?
pub fn ref_could_lie_below(p: &Pat, dir: &[u8]) -> bool {
    let comps = clean_components(dir);
    comps.len() < p.len() && ref_matches(&p[..comps.len()], &comps)
}

/// A clean path matching `p` exactly, `*` spelt `name`.
pub fn instance(p: &Pat, name: &[u8]) -> Vec<u8> {
    let comps: Vec<&[u8]> = p.comps.iter().map(|c| c.as_deref().unwrap_or(name)).collect();
    join(&comps)
}

/// `path` normalised as written (no root matching), into a scratch buffer: the public way to
/// get a `ScratchPath` for `RootPattern::matches`.
pub fn scratch_of(path: &[u8]) -> Option<Scratch> {
    let empty = Policy::new(Config::empty(Path::new("empty.conf")));
    let mut out = Scratch::new();
    match empty.classify(None, path, &mut out) {
        Target::Outside => Some(out),
        _ => None,
    }
}

/// `RootPattern::parse` against the reference, and every matcher of a parsed pattern against
/// it on each of `probes` (any bytes; the clean-path matchers only on the clean ones).
pub fn check_pattern(text: &str, allow_star: bool, probes: &[Vec<u8>]) -> Check {
    let got = toctou_policy::RootPattern::parse(text, allow_star);
    let want = ref_parse_pattern(text, allow_star);
    let (r, p) = match (got, want) {
        (Err(m), Err(w)) => {
            ensure!(
                m.contains(w.words()),
                "{text:?}: refused with {m:?}, expected {w:?}"
            );
            if let Some(run) = quoted_run(&m, &[text.as_bytes()]) {
                return Err(format!("{text:?}: the message {m:?} quotes {}", show(run)));
            }
            return Ok(());
        }
        (Ok(_), Err(w)) => return Err(format!("{text:?}: accepted, expected {w:?}")),
        (Err(m), Ok(_)) => return Err(format!("{text:?}: refused ({m}), expected accepted")),
        (Ok(r), Ok(p)) => (r, p),
    };
    ensure!(r.as_str() == text, "as_str {:?}", r.as_str());
    ensure!(
        r.depth() == p.len(),
        "{text:?}: depth {} != {}",
        r.depth(),
        p.len()
    );
    ensure!(
        r.tenant_depth() == ref_tenant_depth(&p),
        "{text:?}: tenant depth {} != {}",
        r.tenant_depth(),
        ref_tenant_depth(&p)
    );
    ensure!(
        r.key() == ref_key(&p),
        "{text:?}: key {:?} != {:?}",
        r.key(),
        ref_key(&p)
    );
    let again = toctou_policy::RootPattern::parse(&r.key(), allow_star)
        .map_err(|m| format!("{text:?}: its key {:?} does not parse: {m}", r.key()))?;
    ensure!(
        again.same_tree(&r) && again.key() == r.key(),
        "{text:?}: key is another tree"
    );
    // Instances of the pattern itself, then the probes.
    let mut all: Vec<Vec<u8>> = vec![instance(&p, b"t"), instance(&p, b"*")];
    all.extend(probes.iter().cloned());
    for probe in &all {
        if let Some(s) = scratch_of(probe) {
            let comps: Vec<&[u8]> = s.components().collect();
            ensure!(
                r.matches(&s) == ref_matches(&p, &comps),
                "{text:?}.matches({}) = {}",
                show(s.as_bytes()),
                r.matches(&s)
            );
        }
        let m = r.match_clean(probe);
        let below = r.could_lie_below(probe);
        if ref_is_clean(probe) {
            ensure!(
                m == ref_match_clean(&p, probe),
                "{text:?}.match_clean({}) = {m:?}, expected {:?}",
                show(probe),
                ref_match_clean(&p, probe)
            );
            ensure!(
                below == ref_could_lie_below(&p, probe),
                "{text:?}.could_lie_below({}) = {below}",
                show(probe)
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Classification: path → root → tenant.

/// One configured tree for the reference, in `Config::roots` order (maps first).
#[derive(Debug, Clone)]
pub struct RefRoot {
    pub pat: Pat,
    pub fixed_uid: Option<u32>,
}

/// The reference's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefTarget {
    Outside,
    Guarded {
        root: usize,
        tenant: Vec<u8>,
        expected: Expected,
    },
    Escapes,
    TooLong,
}

/// The reference roots of a validated configuration, from the patterns' text.
pub fn ref_roots(c: &Config) -> Vec<RefRoot> {
    c.roots
        .iter()
        .map(|r| RefRoot {
            pat: ref_parse_pattern(r.pattern.as_str(), true).unwrap_or_default(),
            fixed_uid: r.fixed_uid,
        })
        .collect()
}

/// Walk `path` (after `base`'s components when it is relative) as written, one component at
/// a time: `..` takes the last one off (`/..` is `/`), and the first time the components so
/// far match a root exactly, that root (the first in `roots` order) and the tenant prefix
/// are fixed; a `..` at or above that tenant directory afterwards is an escape. A buffer of
/// `cap` bytes holds the path plus a NUL: a component that would not fit is `TooLong`.
/// Returns the answer and the normalised path.
pub fn ref_classify(
    roots: &[RefRoot],
    owner: OwnerRule,
    base: Option<&[u8]>,
    path: &[u8],
    cap: usize,
) -> (RefTarget, Vec<u8>) {
    let relative = path.first() != Some(&b'/');
    let base_comps = base.filter(|_| relative).map(|b| b.split(|&c| c == b'/'));
    let mut stack: Vec<&[u8]> = Vec::new();
    let len = |s: &[&[u8]]| join(s).len();
    let enter = |s: &[&[u8]]| {
        roots
            .iter()
            .position(|r| ref_matches(&r.pat, s))
            .map(|i| (i, ref_tenant_depth(&roots[i].pat)))
    };
    let mut entered = enter(&stack);
    for c in base_comps.into_iter().flatten().chain(path.split(|&c| c == b'/')) {
        if c.is_empty() || c == b"." {
            continue;
        }
        if c == b".." {
            if let Some((_, td)) = entered
                && td > 0
                && stack.len() <= td
            {
                return (RefTarget::Escapes, Vec::new());
            }
            stack.pop();
            continue;
        }
        let grown = if stack.is_empty() {
            1 + c.len()
        } else {
            len(&stack) + 1 + c.len()
        };
        if grown >= cap {
            return (RefTarget::TooLong, Vec::new());
        }
        stack.push(c);
        if entered.is_none() {
            entered = enter(&stack);
        }
    }
    let normal = join(&stack);
    let target = match entered {
        None => RefTarget::Outside,
        Some((root, td)) => RefTarget::Guarded {
            root,
            tenant: join(&stack[..td]),
            expected: match (roots[root].fixed_uid, owner) {
                (Some(uid), _) => Expected::Uid(uid),
                (None, OwnerRule::Tenant) => Expected::TenantOwner,
                (None, OwnerRule::Euid) => Expected::Euid,
            },
        },
    };
    (target, normal)
}

/// `target` (with the normalised path in `out`) against the reference's answer.
fn agree(target: Target, out: &[u8], want: &(RefTarget, Vec<u8>)) -> Check {
    match (target, &want.0) {
        (Target::Outside, RefTarget::Outside) => {}
        (Target::Deny(DenyReason::EscapesTenant), RefTarget::Escapes) => return Ok(()),
        (Target::Deny(DenyReason::PathTooLong), RefTarget::TooLong) => return Ok(()),
        (
            Target::Guarded {
                root,
                tenant_len,
                expected,
            },
            RefTarget::Guarded {
                root: want_root,
                tenant,
                expected: want_expected,
            },
        ) => {
            ensure!(root == *want_root, "root {root}, expected {want_root}");
            ensure!(
                expected == *want_expected,
                "{expected:?}, expected {want_expected:?}"
            );
            ensure!(
                out.get(..tenant_len) == Some(tenant.as_slice()),
                "tenant {}, expected {}",
                show(out.get(..tenant_len).unwrap_or(b"(past the end)")),
                show(tenant)
            );
        }
        (t, w) => return Err(format!("{t:?}, expected {w:?}")),
    }
    ensure!(
        out == want.1.as_slice(),
        "normalised to {}, expected {}",
        show(out),
        show(&want.1)
    );
    Ok(())
}

/// `Policy::classify` (in a fresh buffer, in the reused `scratch`, and in a small 64-byte
/// buffer) and `Policy::classify_clean` against the reference walk, for `path` relative to
/// `base`. `roots` is `ref_roots(policy.config())`.
pub fn check_classify(
    policy: &Policy,
    roots: &[RefRoot],
    base: Option<&[u8]>,
    path: &[u8],
    scratch: &mut Scratch,
) -> Check {
    let owner = policy.config().owner;
    let ctx = || format!("classify({:?}, {})", base.map(show), show(path));
    let want = ref_classify(roots, owner, base, path, PATH_MAX);
    let mut fresh = Scratch::new();
    let t = policy.classify(base, path, &mut fresh);
    agree(t, fresh.as_bytes(), &want).map_err(|e| format!("{}: {e}", ctx()))?;
    let again = policy.classify(base, path, scratch);
    ensure!(
        again == t,
        "{}: a reused buffer says {again:?}, a fresh one {t:?}",
        ctx()
    );
    ensure!(
        matches!(t, Target::Deny(_)) || scratch.as_bytes() == fresh.as_bytes(),
        "{}: a reused buffer holds another path",
        ctx()
    );
    let mut small = toctou_policy::path::PathBuf::<64>::root();
    let ts = policy.classify(base, path, &mut small);
    let want_small = ref_classify(roots, owner, base, path, 64);
    agree(ts, small.as_bytes(), &want_small).map_err(|e| format!("{} in 64 bytes: {e}", ctx()))?;
    check_clean_scan(path).map_err(|e| format!("{}: {e}", ctx()))?;
    match policy.classify_clean(path) {
        None => ensure!(
            !ref_is_clean(path),
            "{}: classify_clean refused a clean path",
            ctx()
        ),
        Some(fast) => {
            ensure!(
                ref_is_clean(path),
                "{}: classify_clean answered an unclean path",
                ctx()
            );
            let slow = policy.classify(None, path, &mut fresh);
            ensure!(
                fast == slow,
                "{}: classify_clean {fast:?}, classify {slow:?}",
                ctx()
            );
        }
    }
    Ok(())
}

/// `Policy::may_guard_below(dir)` against the reference, and what it promises: when it says
/// no, every clean path at or below `dir` (`dir` plus each of `suffixes`) is outside every
/// root, by the fast path and by the walk.
pub fn check_may_guard_below(
    policy: &Policy,
    roots: &[RefRoot],
    dir: &[u8],
    suffixes: &[Vec<&[u8]>],
) -> Check {
    let got = policy.may_guard_below(dir);
    let want = !ref_is_clean(dir)
        || roots.iter().any(|r| ref_match_clean(&r.pat, dir).is_some())
        || roots.iter().any(|r| ref_could_lie_below(&r.pat, dir));
    ensure!(got == want, "may_guard_below({}) = {got}", show(dir));
    if got {
        return Ok(());
    }
    let mut out = Scratch::new();
    for s in suffixes {
        let mut comps = clean_components(dir);
        comps.extend(
            s.iter()
                .copied()
                .filter(|c| !c.is_empty() && *c != b"." && *c != b".."),
        );
        let p = join(&comps);
        if !ref_is_clean(&p) {
            continue;
        }
        ensure!(
            policy.classify_clean(&p) == Some(Target::Outside)
                && policy.classify(None, &p, &mut out) == Target::Outside,
            "may_guard_below({}) is false, yet {} is guarded",
            show(dir),
            show(&p)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The log line.

/// Characters `write_escaped` spends on one byte.
pub fn escaped_width(b: u8) -> usize {
    if b.is_ascii_graphic() && b != b'\\' && b != b'=' {
        1
    } else {
        4
    }
}

/// Undo the escaping: the bytes, and whether the field ended with the cut marker.
pub fn unescape(s: &str) -> Result<(Vec<u8>, bool), String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if &b[i..] == CUT.as_bytes() => return Ok((out, true)),
            b'\\' => {
                let hex = |c: u8| match c {
                    b'0'..=b'9' => Some(c - b'0'),
                    b'a'..=b'f' => Some(c - b'a' + 10),
                    _ => None,
                };
                match (
                    b.get(i + 1),
                    b.get(i + 2).and_then(|&c| hex(c)),
                    b.get(i + 3).and_then(|&c| hex(c)),
                ) {
                    (Some(b'x'), Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(format!("a bad escape at {i} of {s:?}")),
                }
                i += 4;
            }
            c if c.is_ascii_graphic() && c != b'=' => {
                out.push(c);
                i += 1;
            }
            c => return Err(format!("byte {c:#04x} at {i} of {s:?}")),
        }
    }
    Ok((out, false))
}

/// `write_escaped(input, max)` wrote `out`: printable ASCII with no space and no `=`, each
/// byte plain or `\xNN` (canonically), at most `max` characters then the marker only when
/// cut, cut exactly where the next byte would not fit, and it reads back as `input` (or,
/// when cut, as the start of it).
pub fn check_escaped(input: &[u8], max: usize, out: &str) -> Check {
    let (back, cut) = unescape(out)?;
    let width: usize = back.iter().map(|&b| escaped_width(b)).sum();
    ensure!(width <= max, "{width} characters over a bound of {max}: {out:?}");
    ensure!(
        out.len() == width + if cut { CUT.len() } else { 0 },
        "not the canonical escaping: {out:?}"
    );
    if cut {
        ensure!(
            back.len() < input.len() && input.starts_with(&back),
            "cut text is not a prefix of the input: {out:?}"
        );
        ensure!(
            width + escaped_width(input[back.len()]) > max,
            "cut at {} though the next byte fits in {max}: {out:?}",
            back.len()
        );
    } else {
        ensure!(
            back == input,
            "{out:?} reads back as {}, not {}",
            show(&back),
            show(input)
        );
    }
    Ok(())
}

pub const DENY_REASONS: [DenyReason; 8] = [
    DenyReason::OwnerMismatch,
    DenyReason::TenantIsSymlink,
    DenyReason::TenantMissing,
    DenyReason::EscapesTenant,
    DenyReason::PathTooLong,
    DenyReason::UnresolvedDirfd,
    DenyReason::DanglingSymlink,
    DenyReason::LoaderOptions,
];

/// The field order every denial line has.
pub const FIELDS: [&str; 10] = [
    "action",
    "reason",
    "mode",
    "uid",
    "owner",
    "expected",
    "suppressed",
    "comm",
    "tenant",
    "path",
];

/// Longest tag a guard writes (the FUSE daemon's).
pub const LONGEST_TAG: &str = "toctou-guard-fs";

/// One denial line (header and body) as the guards write it: split on spaces it is the header
/// then exactly the ten fields, in order, each `key=value` with one `=`; each value says what
/// was given; the three free fields are escaped (see [`check_escaped`]); and the whole line
/// stays under 1 KiB (the shim's buffer) for any tag up to [`LONGEST_TAG`], any pid and any
/// `suppressed` count up to `u32::MAX`.
pub fn check_denial(d: &Denial<'_>, tag: &str, pid: u32) -> Check {
    let mut s = String::new();
    logline::write_header(&mut s, PRI_DENIAL, tag, pid).map_err(|e| e.to_string())?;
    let header = format!("<{PRI_DENIAL}>{tag}[{pid}]: ");
    ensure!(s == header, "header {s:?}");
    logline::write_denial(&mut s, d).map_err(|e| e.to_string())?;
    let fields: Vec<&str> = s[header.len()..].split(' ').collect();
    ensure!(fields.len() == FIELDS.len(), "{} fields: {s:?}", fields.len());
    let num = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
    for (f, key) in fields.iter().zip(FIELDS) {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| format!("field {f:?} has no '='"))?;
        ensure!(k == key, "field {k:?} where {key:?} belongs: {s:?}");
        ensure!(!v.contains('='), "field {k} holds a '=': {s:?}");
        match k {
            "action" => ensure!(v == if d.audit { "audit" } else { "deny" }, "action={v}"),
            "reason" => ensure!(v == d.reason.as_str(), "reason={v}"),
            "mode" => ensure!(v == d.mode.as_str(), "mode={v}"),
            "uid" => ensure!(v == num(d.uid), "uid={v}"),
            "owner" => ensure!(v == num(d.owner), "owner={v}"),
            "expected" => ensure!(v == num(d.expected), "expected={v}"),
            "suppressed" => ensure!(v == d.suppressed.to_string(), "suppressed={v}"),
            "comm" => check_escaped(d.comm, MAX_COMM, v).map_err(|e| format!("comm: {e}"))?,
            "tenant" => check_escaped(d.tenant, MAX_TENANT, v).map_err(|e| format!("tenant: {e}"))?,
            _ => check_escaped(d.path, MAX_PATH, v).map_err(|e| format!("path: {e}"))?,
        }
    }
    if tag.len() <= LONGEST_TAG.len() && d.suppressed <= u64::from(u32::MAX) {
        ensure!(s.len() < 1024, "a {}-byte line: {s:?}", s.len());
    }
    check_parse(d, tag, pid, &s)
}

/// `line` (written from `d`) reads back with the policy's own parser (`toctou-guard
/// report`'s) as what was written: the header's tag and pid, every fixed field, and the
/// free fields' bytes exactly as this file's independent [`unescape`] reads them.
fn check_parse(d: &Denial<'_>, tag: &str, pid: u32, line: &str) -> Check {
    let (t, p, body) = logline::parse_header(line).ok_or_else(|| format!("no header in {line:?}"))?;
    ensure!((t, p) == (tag, pid), "header read back as {t}[{p}]: {line:?}");
    let back = logline::parse_denial(body).map_err(|e| format!("parse_denial: {e}: {line:?}"))?;
    ensure!(
        (
            back.audit,
            back.reason,
            back.mode,
            back.uid,
            back.owner,
            back.expected,
            back.suppressed
        ) == (
            d.audit,
            d.reason,
            d.mode,
            d.uid,
            d.owner,
            d.expected,
            d.suppressed
        ),
        "fixed fields read back as {back:?}: {line:?}"
    );
    for (name, text) in [("comm", back.comm), ("tenant", back.tenant), ("path", back.path)] {
        let ours = logline::unescape(text).ok_or_else(|| format!("{name}: unescape refused {text:?}"))?;
        ensure!(
            Ok(&ours) == unescape(text).as_ref(),
            "{name}: unescape({text:?}) = {ours:?}, the oracle says {:?}",
            unescape(text)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The compiled configuration image.

/// `policy`'s configuration compiled into an image and loaded back as a policy.
pub fn compiled(policy: &Policy) -> Result<Policy, String> {
    let stamp = toctou_policy::image::Stamp {
        dev: 1,
        ino: 2,
        ..Default::default()
    };
    let bytes = toctou_policy::image::compile(policy.config(), stamp)?;
    let (img, cfg) = toctou_policy::image::Image::open(std::sync::Arc::new(bytes), Path::new("t.conf.tgc"))
        .map_err(|e| format!("a compiled image does not load: {e}"))?;
    let mut want = policy.config().clone();
    want.roots.clear();
    want.source = cfg.source.clone();
    ensure!(
        cfg == want,
        "the image's settings {cfg:?} are not the text's {want:?}"
    );
    ensure!(img.stamp() == stamp, "the image's stamp changed");
    Ok(Policy::from_image(cfg, img))
}

/// The compiled policy answers as the parsed one: `classify` (normalised path too),
/// `classify_clean`, `may_guard_below` and the trees it names.
pub fn check_image_agrees(parsed: &Policy, image: &Policy, base: Option<&[u8]>, path: &[u8]) -> Check {
    let ctx = || format!("image: classify({:?}, {})", base.map(show), show(path));
    let (mut a, mut b) = (Scratch::new(), Scratch::new());
    let (ta, tb) = (
        parsed.classify(base, path, &mut a),
        image.classify(base, path, &mut b),
    );
    ensure!(ta == tb, "{}: parsed {ta:?}, compiled {tb:?}", ctx());
    ensure!(
        matches!(ta, Target::Deny(_)) || a.as_bytes() == b.as_bytes(),
        "{}: another normalised path",
        ctx()
    );
    let (ca, cb) = (parsed.classify_clean(path), image.classify_clean(path));
    ensure!(
        ca == cb,
        "image: classify_clean({}): parsed {ca:?}, compiled {cb:?}",
        show(path)
    );
    if ref_is_clean(path) {
        let (ma, mb) = (parsed.may_guard_below(path), image.may_guard_below(path));
        ensure!(
            ma == mb,
            "image: may_guard_below({}): parsed {ma}, compiled {mb}",
            show(path)
        );
    }
    ensure!(
        parsed.root_count() == image.root_count(),
        "image: another number of trees"
    );
    for i in 0..parsed.root_count() {
        ensure!(parsed.root(i) == image.root(i), "image: tree {i} differs");
    }
    ensure!(
        parsed.shadowed() == image.shadowed(),
        "image: shadowed trees differ"
    );
    Ok(())
}

/// Any bytes offered as an image: refused with an error naming the file, or accepted and then
/// every lookup answers (the caller sees a panic as the failure).
pub fn check_image_bytes(bytes: Vec<u8>, paths: &[&[u8]]) -> Check {
    let file = Path::new("/etc/x.conf.tgc");
    match toctou_policy::image::Image::open(std::sync::Arc::new(bytes), file) {
        Err(e) => ensure!(
            e.to_string().starts_with("/etc/x.conf.tgc: compiled form: "),
            "the error does not name the file: {e}"
        ),
        Ok((img, cfg)) => {
            let p = Policy::from_image(cfg, img);
            let mut out = Scratch::new();
            for path in paths {
                let _ = p.classify(None, path, &mut out);
                let _ = p.classify_clean(path);
                let _ = p.may_guard_below(path);
            }
            for i in 0..p.root_count().min(64) {
                let _ = p.root(i);
            }
        }
    }
    Ok(())
}
