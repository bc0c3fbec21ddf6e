//! Differential conformance: `tests/c/conform.c` calls every hooked entry point with a
//! table of odd but legal arguments on three kinds of stack (the main one, a 16 KiB
//! pthread, a signal handler on a `sigaltstack`), once bare and once under the shim, and
//! the lines must match. Outside every root the shim must behave exactly like libc; on a
//! tenant's own tree (every file its own) the rule allows everything, so it must too. On the
//! victim's files the only difference allowed is a refusal: bare `OK`, shim `ERR EACCES`.
//!
//! A crash of the program (the shim's, SIGSEGV/SIGABRT) is a result of its own: the case
//! that was running is recorded as `CRASH <signal>` and the table resumes after it, so one
//! crash does not hide the rest. A hang is killed after [`TIMEOUT`].
//!
//! Needs root (the fixture) and the release build of the shim; skips with `SKIP:` otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, chown, lchown, symlink};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use toctou_guard_tests::shim_fixture::{ALICE, BOB, Fixture, c_program};

/// One run of `conform` (one stack of one table) may take this long.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Resumptions after crashes, per stack: more than the table has cases.
const MAX_RUNS: usize = 3000;
/// The result of a line one side never printed (its stack stopped).
const MISSING: &str = "MISSING";

/// What one table printed on one stack: `key` (`ENTRY:CASE STACK`) to result, in order.
#[derive(Default)]
struct StackRun {
    results: Vec<(String, String)>,
    comments: Vec<String>,
    /// Abnormal ends: the case (or the place) and how.
    crashes: Vec<String>,
    stderr: String,
}

/// How a bounded run ended.
struct Ended {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<ExitStatus>,
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        libc::SIGUSR1 => "SIGUSR1",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

fn how(status: Option<ExitStatus>) -> String {
    match status {
        None => format!("TIMEOUT (hung, killed after {}s)", TIMEOUT.as_secs()),
        Some(s) => match (s.signal(), s.code()) {
            (Some(sig), _) => signal_name(sig),
            (None, Some(code)) => format!("EXIT {code}"),
            _ => format!("{s}"),
        },
    }
}

/// Run `cmd` to its end or [`TIMEOUT`] (then kill it), with its output.
fn bounded(mut cmd: Command) -> Ended {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn conform");
    let pipe_reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = pipe_reader(Box::new(child.stdout.take().expect("stdout")));
    let err = pipe_reader(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait") {
            Some(st) => break Some(st),
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    Ended {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        status,
    }
}

/// A table: the `conform` arguments before `STACK`, and what resets the tree before a run.
struct Table<'a> {
    /// Named in messages.
    what: &'a str,
    args: Vec<OsString>,
    prepare: &'a dyn Fn(),
}

/// `conform ARGS STACK START` as ALICE, bare or under the shim.
fn command(f: &Fixture, shim: bool, args: &[OsString], stack: &str, start: usize) -> Command {
    let prog = c_program("conform");
    let mut cmd = if shim {
        f.command(&prog)
    } else {
        let mut c = Command::new(&prog);
        c.env_remove("LD_PRELOAD").env_remove("TOCTOU_GUARD_CONFIG");
        c
    };
    cmd.args(args)
        .arg(stack)
        .arg(start.to_string())
        .uid(ALICE)
        .gid(ALICE);
    cmd
}

/// One stack of a table, resumed after each case that crashed the process.
fn run_stack(f: &Fixture, t: &Table<'_>, shim: bool, stack: &str) -> StackRun {
    let mut run = StackRun::default();
    let mut start = 0;
    for _ in 0..MAX_RUNS {
        (t.prepare)();
        let end = bounded(command(f, shim, &t.args, stack, start));
        let text = String::from_utf8_lossy(&end.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&end.stderr);
        if !stderr.is_empty() && !run.stderr.contains(&*stderr) {
            run.stderr.push_str(&stderr);
        }
        let (complete, partial) = match text.rfind('\n') {
            Some(i) => (&text[..=i], &text[i + 1..]),
            None => ("", &text[..]),
        };
        let mut cases = 0;
        let mut finished = false;
        for line in complete.lines() {
            if let Some(c) = line.strip_prefix("# ") {
                finished |= c.starts_with("end ");
                if !run.comments.iter().any(|k| k == c) {
                    run.comments.push(c.to_string());
                }
            } else if let Some((key, result)) = line.split_once(" -> ") {
                run.results.push((key.to_string(), result.to_string()));
                cases += 1;
            } else {
                run.comments.push(format!("unparsed: {line}"));
            }
        }
        let ok = end.status.is_some_and(|s| s.success());
        if finished && ok {
            return run;
        }
        let how = how(end.status);
        match partial.strip_suffix(" -> ") {
            // Died inside a case: record it, resume after it.
            Some(key) if end.status.is_some() => {
                run.results.push((key.to_string(), format!("CRASH {how}")));
                run.crashes.push(format!("{key}: {how}"));
                start += cases + 1;
            }
            Some(key) => {
                run.results.push((key.to_string(), format!("CRASH {how}")));
                run.crashes
                    .push(format!("{key}: {how}; the rest of this stack not run"));
                return run;
            }
            None => {
                let after = run.results.last().map_or("the start", |(k, _)| k.as_str());
                run.crashes.push(format!(
                    "{stack}: {how} outside any case (after {after}); the rest of this stack not run"
                ));
                return run;
            }
        }
    }
    run.crashes
        .push(format!("{stack}: more than {MAX_RUNS} crashes, gave up"));
    run
}

/// Both runs of every stack of a table.
struct Compared {
    stacks: Vec<String>,
    bare: Vec<StackRun>,
    shim: Vec<StackRun>,
}

fn stacks() -> Vec<String> {
    let out = Command::new(c_program("conform"))
        .arg("stacks")
        .output()
        .expect("conform stacks");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn run_both(f: &Fixture, t: &Table<'_>) -> Compared {
    let stacks = stacks();
    assert!(stacks.len() >= 3, "conform stacks: {stacks:?}");
    let bare: Vec<StackRun> = stacks.iter().map(|s| run_stack(f, t, false, s)).collect();
    let shim: Vec<StackRun> = stacks.iter().map(|s| run_stack(f, t, true, s)).collect();
    // TG_CONFORM_DUMP=DIR: every line of both runs, for reading the whole table.
    if let Some(dir) = std::env::var_os("TG_CONFORM_DUMP") {
        let dir = Path::new(&dir);
        let _ = fs::create_dir_all(dir);
        let slug: String =
            t.args[0].to_string_lossy().into_owned() + "-" + &t.what.replace(['/', ' ', '\''], "_");
        for (name, runs) in [("bare", &bare), ("shim", &shim)] {
            let text: String = runs
                .iter()
                .flat_map(|r| r.results.iter().map(|(k, v)| format!("{k} -> {v}\n")))
                .collect();
            let _ = fs::write(dir.join(format!("{slug}.{name}")), text);
        }
    }
    Compared { stacks, bare, shim }
}

/// `ENTRY:CASE STACK` into (`CASE`, `ENTRY`, `STACK`).
fn split_key(key: &str) -> (&str, &str, &str) {
    let (entry_case, stack) = key.rsplit_once(' ').unwrap_or((key, ""));
    let (entry, case) = entry_case.split_once(':').unwrap_or(("", entry_case));
    (case, entry, stack)
}

/// Differing lines, grouped by case and both results: "CASE [entries x stacks]"; lines one
/// side never reached (its stack stopped on a hang) only counted, per stack.
fn diff_report(diffs: &[(String, String, String)]) -> String {
    type Group = (BTreeSet<String>, BTreeSet<String>);
    let mut groups: BTreeMap<(String, String, String), Group> = BTreeMap::new();
    let mut order: Vec<(String, String, String)> = Vec::new();
    let mut missing: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (key, bare, shim) in diffs {
        let (case, entry, stack) = split_key(key);
        if bare == MISSING || shim == MISSING {
            let side = if bare == MISSING { "bare" } else { "shim" };
            *missing.entry((stack, side)).or_default() += 1;
            continue;
        }
        let g = (case.to_string(), bare.clone(), shim.clone());
        if !groups.contains_key(&g) {
            order.push(g.clone());
        }
        let e = groups.entry(g).or_default();
        e.0.insert(entry.to_string());
        e.1.insert(stack.to_string());
    }
    let mut s = String::new();
    for g in order {
        let (entries, stacks) = &groups[&g];
        let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
        let stacks: Vec<&str> = stacks.iter().map(String::as_str).collect();
        s.push_str(&format!(
            "  {} [{} x {}]\n      bare: {}\n      shim: {}\n",
            g.0,
            entries.join(","),
            stacks.join(","),
            g.1,
            g.2
        ));
    }
    for ((stack, side), n) in missing {
        s.push_str(&format!(
            "  ({n} lines of stack {stack} never ran on the {side} side)\n"
        ));
    }
    s
}

impl Compared {
    /// Lines per stack (bare), the distinct cases, and the total.
    fn size(&self) -> (Vec<(String, usize)>, usize, usize) {
        let per: Vec<(String, usize)> = self
            .stacks
            .iter()
            .zip(&self.bare)
            .map(|(s, r)| (s.clone(), r.results.len()))
            .collect();
        let cases: BTreeSet<&str> = self
            .bare
            .iter()
            .flat_map(|r| {
                r.results
                    .iter()
                    .map(|(k, _)| k.rsplit_once(' ').map_or(k.as_str(), |p| p.0))
            })
            .collect();
        let total = per.iter().map(|p| p.1).sum();
        (per, cases.len(), total)
    }

    fn print_size(&self, what: &str) -> usize {
        let (per, cases, total) = self.size();
        let fewest = per.iter().map(|p| p.1).min().unwrap_or(0);
        let per: Vec<String> = per.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!(
            "conformance table, {what}: {cases} cases ({fewest} of them in a signal handler) x {} \
             stacks = {total} lines ({})",
            self.stacks.len(),
            per.join(", ")
        );
        for c in self.bare.iter().flat_map(|r| &r.comments) {
            if c.starts_with("stack ") || c.contains("skipped") || c.starts_with("WARNING") {
                println!("  # {c}");
            }
        }
        total
    }

    /// Every (key, bare, shim) that differs, in table order; a key missing on one side is
    /// `MISSING`.
    fn differences(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (b, s) in self.bare.iter().zip(&self.shim) {
            let shim: BTreeMap<&str, &str> =
                s.results.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let bare_keys: BTreeSet<&str> = b.results.iter().map(|(k, _)| k.as_str()).collect();
            for (k, v) in &b.results {
                let other = shim.get(k.as_str()).copied().unwrap_or(MISSING);
                if other != v {
                    out.push((k.clone(), v.clone(), other.to_string()));
                }
            }
            for (k, v) in &s.results {
                if !bare_keys.contains(k.as_str()) {
                    out.push((k.clone(), MISSING.into(), v.clone()));
                }
            }
        }
        out
    }

    /// Crashes and stderr, for the failure message.
    fn troubles(&self) -> String {
        let mut s = String::new();
        for (name, runs) in [("bare", &self.bare), ("shim", &self.shim)] {
            for (stack, r) in self.stacks.iter().zip(runs.iter()) {
                if !r.crashes.is_empty() {
                    s.push_str(&format!(
                        "{name} {stack}: {} crash(es):\n    {}\n",
                        r.crashes.len(),
                        r.crashes.join("\n    ")
                    ));
                }
                if !r.stderr.is_empty() {
                    let mut e: String = r.stderr.chars().take(2000).collect();
                    if e.len() < r.stderr.len() {
                        e.push_str(" ...");
                    }
                    s.push_str(&format!("{name} {stack}: stderr:\n{e}\n"));
                }
            }
        }
        s
    }
}

/// The main table on `base`, bare and under the shim: every line must match.
fn assert_main_table_matches(f: &Fixture, what: &str, base: &Path, base_mode: u32, owner: Option<u32>) {
    let prepare = || fresh_base(base, base_mode, owner);
    let t = Table {
        what,
        args: vec!["main".into(), base.as_os_str().to_owned()],
        prepare: &prepare,
    };
    let c = run_both(f, &t);
    let total = c.print_size(t.what);
    let diffs = c.differences();
    let troubles = c.troubles();
    if !diffs.is_empty() || !troubles.is_empty() {
        println!("{} of {total} lines differ on {}", diffs.len(), t.what);
    }
    let _ = fs::remove_dir_all(base);
    assert!(
        diffs.is_empty() && troubles.is_empty(),
        "{what}: {} of {total} lines differ (bare | shim), grouped as CASE [entries x stacks]:\n{}{}",
        diffs.len(),
        diff_report(&diffs),
        troubles
    );
    assert!(total >= 60, "{what}: only {total} lines");
}

/// An empty `base` (mode `mode`, owner `owner` or root) with `null`, a character device
/// like /dev/null owned by the tenant (the program cannot make one, it is not root).
fn fresh_base(base: &Path, mode: u32, owner: Option<u32>) {
    let _ = fs::remove_dir_all(base);
    fs::create_dir_all(base).expect("mkdir base");
    if let Some(uid) = owner {
        chown(base, Some(uid), Some(uid)).expect("chown base");
    }
    fs::set_permissions(base, fs::Permissions::from_mode(mode)).expect("chmod base");
    let null = base.join("null");
    let st = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(st.success(), "mknod {}", null.display());
    chown(&null, Some(ALICE), Some(ALICE)).expect("chown null");
    fs::set_permissions(&null, fs::Permissions::from_mode(0o644)).expect("chmod null");
}

#[test]
fn own_tree_under_a_root_behaves_like_libc() {
    let Some(f) = Fixture::new("conform-own", "") else {
        return;
    };
    let base = f.alice("conform");
    assert_main_table_matches(
        &f,
        "ALICE's own tree in her docroot (under a root)",
        &base,
        0o755,
        Some(ALICE),
    );
}

#[test]
fn outside_every_root_behaves_like_libc() {
    let Some(f) = Fixture::new("conform-out", "") else {
        return;
    };
    let base = f.base.join("outside");
    assert_main_table_matches(&f, "a 0777 directory outside every root", &base, 0o777, None);
}

/// Alice's docroot back to the fixture's (plus `devnull`), bob's secret intact.
fn reset_victim(f: &Fixture, alice_names: &BTreeSet<OsString>) {
    let secret = f.bob("secret.txt");
    fs::write(&secret, "BOB-SECRET\n").expect("restore bob's secret");
    chown(&secret, Some(BOB), Some(BOB)).expect("chown secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o666)).expect("chmod secret");
    let clean = |dir: &Path, keep: &dyn Fn(&OsStr) -> bool| {
        for e in fs::read_dir(dir).expect("read_dir").flatten() {
            if !keep(&e.file_name()) {
                let p = e.path();
                if fs::remove_file(&p).is_err() {
                    let _ = fs::remove_dir_all(&p);
                }
            }
        }
    };
    clean(&f.bob(""), &|n| n == "secret.txt");
    clean(&f.alice("uploads"), &|n| n == "dangling");
    clean(&f.alice(""), &|n| alice_names.contains(n));
}

#[test]
fn victims_files_differ_only_by_a_refusal() {
    let Some(f) = Fixture::new("conform-victim", "") else {
        return;
    };
    let devnull = f.alice("devnull");
    symlink("/dev/null", &devnull).expect("symlink devnull");
    lchown(&devnull, Some(ALICE), Some(ALICE)).expect("lchown devnull");
    let names: BTreeSet<OsString> = fs::read_dir(f.alice(""))
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let prepare = || reset_victim(&f, &names);
    let what = "the victim's files from ALICE's docroot";
    let t = Table {
        what,
        args: vec![
            "victim".into(),
            f.base.join("home/alice/public_html").into_os_string(),
            f.base.join("home/bob/public_html").into_os_string(),
        ],
        prepare: &prepare,
    };
    let c = run_both(&f, &t);
    let total = c.print_size(what);
    let all = c.differences();
    let (refused, wrong): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(_, bare, shim)| bare.starts_with("OK") && shim == "ERR EACCES");
    println!(
        "{what}: {} of {total} lines refused by the shim (bare OK, shim ERR EACCES)",
        refused.len()
    );
    let troubles = c.troubles();
    assert!(
        wrong.is_empty() && troubles.is_empty(),
        "{what}: {} of {total} lines differ otherwise than bare OK / shim ERR EACCES:\n{}{}",
        wrong.len(),
        diff_report(&wrong),
        troubles
    );
    assert!(
        !refused.is_empty(),
        "{what}: the shim refused nothing: was it loaded?"
    );
    assert!(total >= 60, "{what}: only {total} lines");
}
