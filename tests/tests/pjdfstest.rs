//! POSIX conformance of `toctou-guard-fs` (issue 12): pjdfstest (crates.io `pjdfstest`, the
//! Rust port of the POSIX file system test suite) on the raw tree and on an `-o rw` mount in
//! `mode audit` of the same tree, in the same run. Every test case whose outcome differs
//! must be on the intended-refusal list in `fusefs/README.md` (section "pjdfstest"), each
//! entry with its reason; any other difference fails.
//!
//! Needs root, /dev/fuse and the `pjdfstest` binary (`cargo install --locked pjdfstest`,
//! done by `.ci/run`); skipped with `SKIP:` otherwise, a failure when `CI` is set.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use toctou_guard_tests::fuse_tree::{Mount, Tree, prerequisites};
use toctou_guard_tests::poll::poll_for;
use toctou_guard_tests::prereq;

/// One pjdfstest run (about a minute here) may take at most this long.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The heading of the intended-refusal list in `fusefs/README.md`.
const LIST_HEADING: &str = "### pjdfstest: intended differences";

fn pjdfstest_bin() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        candidates.push(Path::new(&h).join("bin/pjdfstest"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        candidates.push(Path::new(&h).join(".cargo/bin/pjdfstest"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("pjdfstest")));
    }
    let found = candidates.into_iter().find(|p| p.is_file());
    prereq::require(
        found.is_some(),
        "pjdfstest (cargo install --locked pjdfstest; .ci/run installs it)",
    )
    .then_some(found?)
}

/// What a test case came to, and the first line of its failure message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed(String),
    Skipped,
}

impl Outcome {
    fn word(&self) -> &str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed(_) => "FAILED",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Drop ANSI colour sequences (in case the runner's colour crate ignores `NO_COLOR`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The runner's per-case lines: `NAME   ok|FAILED|skipped`, a failure followed by its
/// message on an indented line.
fn parse(output: &str) -> BTreeMap<String, Outcome> {
    let mut results = BTreeMap::new();
    let mut last_failed: Option<String> = None;
    for line in output.lines().map(strip_ansi) {
        if line.starts_with('\t') || line.starts_with(' ') {
            if let Some(name) = last_failed.take()
                && let Some(Outcome::Failed(msg)) = results.get_mut(&name)
            {
                *msg = line.trim().to_string();
            }
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(word), None) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        let outcome = match word {
            "ok" => Outcome::Ok,
            "FAILED" => Outcome::Failed(String::new()),
            "skipped" => Outcome::Skipped,
            _ => continue,
        };
        if outcome.word() == "FAILED" {
            last_failed = Some(name.to_string());
        }
        results.insert(name.to_string(), outcome);
    }
    results
}

/// Run the suite on `dir` (pjdfstest makes its own temporary directory in it).
fn run_suite(bin: &Path, conf: &Path, dir: &Path, out: &Path) -> BTreeMap<String, Outcome> {
    let log = fs::File::create(out).expect("create output file");
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(conf)
        .arg("-p")
        .arg(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("run pjdfstest");
    let status = poll_for(RUN_TIMEOUT, || child.try_wait().expect("wait pjdfstest"));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "pjdfstest on {} ran past {RUN_TIMEOUT:?} (output: {})",
            dir.display(),
            out.display()
        );
    }
    let text = fs::read_to_string(out).expect("read output");
    let results = parse(&text);
    assert!(
        results.len() > 100,
        "pjdfstest on {} reported {} cases ({status:?}); output {}:\n{}",
        dir.display(),
        results.len(),
        out.display(),
        text.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    results
}

/// Does `name` match `pattern` (`*`: any run of characters)?
fn matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(k) => rest = &rest[k + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The intended-difference list under [`LIST_HEADING`] (up to the next heading): lines
/// `- \`pattern\` \`pattern\` ... — reason`; (pattern, reason) pairs.
fn intended_list() -> Vec<(String, String)> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fusefs/README.md");
    let text = fs::read_to_string(&readme).expect("read fusefs/README.md");
    let start = text
        .find(LIST_HEADING)
        .unwrap_or_else(|| panic!("{} has no {LIST_HEADING:?}", readme.display()));
    let mut list = Vec::new();
    for line in text[start + LIST_HEADING.len()..].lines() {
        if line.starts_with('#') {
            break;
        }
        let Some(rest) = line.strip_prefix("- `") else {
            continue;
        };
        let Some((names, reason)) = rest.split_once(" — ") else {
            panic!("intended difference without ` — reason`: {line}");
        };
        assert!(
            !reason.trim().is_empty(),
            "intended difference without a reason: {line}"
        );
        for name in names.split('`').map(str::trim).filter(|n| !n.is_empty()) {
            list.push((name.to_string(), reason.trim().to_string()));
        }
    }
    assert!(!list.is_empty(), "the intended-difference list is empty");
    list
}

fn counts(r: &BTreeMap<String, Outcome>) -> String {
    let n = |w: &str| r.values().filter(|o| o.word() == w).count();
    format!("{} ok, {} failed, {} skipped", n("ok"), n("FAILED"), n("skipped"))
}

#[test]
fn patterns() {
    assert!(matches("link::*", "link::share_metadata::fifo"));
    assert!(matches("*::symlink", "chmod::update_ctime::symlink"));
    assert!(!matches("*::symlink", "chmod::update_ctime::symlinks"));
    assert!(matches("mknod::device_files*", "mknod::device_files"));
    assert!(matches("a*b*c", "aXbYc") && !matches("a*b*c", "aXcYb"));
    assert!(matches("chmod::clear_isgid_bit", "chmod::clear_isgid_bit"));
    assert!(!matches("chmod::clear_isgid_bit", "chmod::clear_isgid_bits"));
}

#[test]
fn pjdfstest_mount_differs_from_raw_only_by_intended_refusals() {
    let Some(daemon) = prerequisites() else { return };
    let Some(suite) = pjdfstest_bin() else { return };
    let t = Tree::new("pjd");
    // The tenant the suite runs in is root's own (pjdfstest creates as root, then chowns).
    t.dir("suite", 0);
    let raw_dir = t.base.join("raw");
    fs::create_dir(&raw_dir).expect("mkdir raw");
    for d in [&raw_dir, &t.src.join("suite")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let conf = t.base.join("guard.conf");
    fs::write(
        &conf,
        format!(
            "mode audit\nroot {}/*\nlog_socket {}\n",
            t.src.display(),
            t.base.join("no-listener.sock").display()
        ),
    )
    .expect("write guard config");
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).expect("chmod");
    // Users that exist on every Debian system (the suite's defaults, `tests`, may not).
    let pjd_conf = t.base.join("pjdfstest.toml");
    fs::write(
        &pjd_conf,
        "[features]\n\n[settings]\nnaptime = 0.01\nallow_remount = false\n\n\
         [dummy_auth]\nentries = [[\"nobody\", \"nogroup\"], [\"daemon\", \"daemon\"]]\n",
    )
    .expect("write pjdfstest config");

    let raw = run_suite(&suite, &pjd_conf, &raw_dir, &t.base.join("raw.out"));
    let m = Mount::start(
        &daemon,
        &t,
        &["-o", "rw", "--config", conf.to_str().expect("utf-8")],
    );
    let mnt = run_suite(&suite, &pjd_conf, &t.mnt.join("suite"), &t.base.join("mount.out"));
    drop(m);

    let list = intended_list();
    let mut unexpected = Vec::new();
    let mut intended = 0;
    for (name, on_raw) in &raw {
        let on_mount = mnt.get(name).cloned();
        if on_mount.as_ref().map(Outcome::word) == Some(on_raw.word()) {
            continue;
        }
        if list.iter().any(|(p, _)| matches(p, name)) {
            intended += 1;
            continue;
        }
        unexpected.push(format!(
            "{name}: raw {}, mount {:?}",
            on_raw.word(),
            on_mount.unwrap_or(Outcome::Skipped)
        ));
    }
    // Entries no difference needs any more (kept honest by hand: printed, not failed).
    let stale: Vec<_> = list
        .iter()
        .map(|(p, _)| p)
        .filter(|p| {
            !raw.iter()
                .any(|(n, o)| matches(p, n) && mnt.get(n).map(Outcome::word) != Some(o.word()))
        })
        .collect();
    println!(
        "pjdfstest: {} cases; raw: {}; mount: {}; {intended} intended differences, {} unexpected",
        raw.len(),
        counts(&raw),
        counts(&mnt),
        unexpected.len()
    );
    if !stale.is_empty() {
        println!("pjdfstest: listed as intended but now the same as raw: {stale:?}");
    }
    assert!(
        unexpected.is_empty(),
        "differences not on the list in fusefs/README.md:\n{}",
        unexpected.join("\n")
    );
}
