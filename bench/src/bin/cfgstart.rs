//! Process start with a 100,000-`map` configuration, as text and compiled (`CONFIG.tgc`),
//! against a one-line configuration and no guard at all: a guarded `/bin/true` (the
//! configuration has no `programs` line, so it loads everything) and an unguarded
//! `bash -c true` (`programs nginx`: the shim decides from `/proc/self/exe` and stops).
//!
//! Each start is `fork` + `exec` + `wait4` by a small helper process (this program started
//! again with `--spawner` before it loads anything, so a child's `ru_maxrss`, which counts
//! the forked copy of its parent, starts from ~2 MB), the cells rotating every run so drift
//! hits them alike; time is wall clock from spawn to reaped, max RSS is the child's
//! `ru_maxrss`. Max RSS counts the compiled image's page-cache pages a process maps (shared
//! by every process, and mapped a large folio at a time on this kernel): the table after it
//! shows, for an idle guarded `sleep`, private (`RssAnon`) apart from shared file pages. The library comes through `LD_PRELOAD` with `TOCTOU_GUARD_CONFIG` (the same
//! loader runs as under `/etc/ld.so.preload`; that harness is `startup` in `wt-bench`).
//!
//! `cargo run --release -p toctou-guard-bench --bin cfgstart -- [--runs N]` (as root: the
//! configurations must be root's, as the guard requires).

use std::io::{BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use toctou_attack::artefacts::SHIM;
use toctou_guard_bench::fixture;
use toctou_guard_bench::stats::{median, range};

struct Cell {
    name: String,
    argv: Vec<String>,
    config: Option<PathBuf>,
    ms: Vec<f64>,
    rss_kb: Vec<f64>,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("cfgstart: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "--spawner") {
        return spawner();
    }
    let mut helper = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg("--spawner")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawner: {e}"))?;
    let mut to_helper = helper.stdin.take().ok_or("spawner stdin")?;
    let mut from_helper = std::io::BufReader::new(helper.stdout.take().ok_or("spawner stdout")?);
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let so = SHIM.locate()?;
    let fx = fixture::micro(1)?;
    let maps_text = std::fs::read_to_string(fx.config_many_maps()?).map_err(|e| e.to_string())?;
    let one_line = fx.config();
    let compiled = fx.config_many_maps_compiled()?;
    // The same three for a program the `programs` line leaves out.
    let dir = fx.base.join("cfgstart");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let unlisted = |name: &str, text: &str| -> Result<PathBuf, String> {
        let p = dir.join(name);
        std::fs::write(&p, format!("programs nginx\n{text}")).map_err(|e| e.to_string())?;
        Ok(p)
    };
    let one_text = std::fs::read_to_string(&one_line).map_err(|e| e.to_string())?;
    let u_one = unlisted("one.conf", &one_text)?;
    let u_text = unlisted("maps.conf", &maps_text)?;
    let u_comp = unlisted("maps-compiled.conf", &maps_text)?;
    fixture::compile_beside(&u_comp)?;
    let guarded = ["/bin/true".to_string()];
    let bash = ["/bin/bash".to_string(), "-c".into(), "true".into()];
    let mut cells = Vec::new();
    for (argv, what, configs) in [
        (
            &guarded[..],
            "guarded /bin/true",
            [
                None,
                Some(one_line.clone()),
                Some(fx.config_many_maps()?),
                Some(compiled.clone()),
            ],
        ),
        (
            &bash[..],
            "unguarded bash -c true",
            [None, Some(u_one), Some(u_text), Some(u_comp)],
        ),
    ] {
        for (label, config) in [
            "no preload",
            "1-line config",
            "100k maps, text",
            "100k maps, compiled",
        ]
        .iter()
        .zip(configs)
        {
            cells.push(Cell {
                name: format!("{what}, {label}"),
                argv: argv.to_vec(),
                config,
                ms: Vec::new(),
                rss_kb: Vec::new(),
            });
        }
    }
    for _ in 0..runs {
        for c in &mut cells {
            let conf = c.config.as_ref().map_or("-".into(), |p| p.display().to_string());
            writeln!(to_helper, "{}\t{conf}\t{}", so.display(), c.argv.join("\t"))
                .map_err(|e| e.to_string())?;
            let mut reply = String::new();
            from_helper.read_line(&mut reply).map_err(|e| e.to_string())?;
            let mut f = reply.split_whitespace().map(str::parse::<f64>);
            match (f.next(), f.next()) {
                (Some(Ok(ms)), Some(Ok(rss))) => {
                    c.ms.push(ms);
                    c.rss_kb.push(rss);
                }
                _ => return Err(format!("{}: {}", c.name, reply.trim())),
            }
        }
    }
    drop(to_helper);
    let _ = helper.wait();
    println!(
        "process start, {runs} runs per cell, cells interleaved; shim {}",
        so.display()
    );
    println!("| program, configuration | start ms median [min–max] | max RSS KiB median [min–max] |");
    println!("|---|---|---|");
    for c in &cells {
        let (lo, hi) = range(&c.ms);
        let (rlo, rhi) = range(&c.rss_kb);
        println!(
            "| {} | {:.2} [{:.2}–{:.2}] | {:.0} [{:.0}–{:.0}] |",
            c.name,
            median(&c.ms),
            lo,
            hi,
            median(&c.rss_kb),
            rlo,
            rhi
        );
    }
    println!("\nmemory of an idle guarded `sleep` once its guard has loaded (kB, /proc/PID/smaps_rollup)");
    println!("| configuration | Rss | RssAnon (private) | RssFile (shared page cache) | Pss |");
    println!("|---|---|---|---|---|");
    for (label, conf) in [
        ("1-line config", &one_line),
        ("100k maps, text", &fx.config_many_maps()?),
        ("100k maps, compiled", &compiled),
    ] {
        let m = idle_memory(&so, conf)?;
        println!("| {label} | {} | {} | {} | {} |", m[0], m[1], m[2], m[3]);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nload average at the end: {}", load.trim());
    Ok(())
}

/// Rss, RssAnon, RssFile and Pss (kB) of a guarded `sleep` after its guard loaded (its
/// announcement mapping is in `/proc/PID/maps`), after one guarded open of a vhost path.
fn idle_memory(so: &Path, conf: &Path) -> Result<[u64; 4], String> {
    let mut child = Command::new("/bin/sleep")
        .arg("30")
        .env_clear()
        .env("LD_PRELOAD", so)
        .env("TOCTOU_GUARD_CONFIG", conf)
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    let t = Instant::now();
    while !toctou_guard_bench::proc::maps_contain(pid, "toctou-guard:mode=") {
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            return Err(format!("{}: the guard did not load in 10 s", conf.display()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok([
        field(&status, "VmRSS:"),
        field(&status, "RssAnon:"),
        field(&status, "RssFile:"),
        field(&rollup, "Pss:"),
    ])
}

/// The helper: one line per start on stdin (`SHIM\tCONFIG|-\tARGV...`), `MS RSS_KB` (or an
/// error) per line on stdout.
fn spawner() -> Result<(), String> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let mut f = line.split('\t');
        let (Some(so), Some(conf)) = (f.next(), f.next()) else {
            return Err(format!("spawner: bad request {line:?}"));
        };
        let argv: Vec<String> = f.map(String::from).collect();
        let config = (conf != "-").then(|| PathBuf::from(conf));
        let reply = match start(Path::new(so), &argv, config.as_deref()) {
            Ok((ms, rss)) => format!("{ms} {rss}"),
            Err(e) => e.replace('\n', " "),
        };
        writeln!(out, "{reply}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One start: wall milliseconds from spawn to reaped, and the child's max RSS in KiB.
fn start(so: &Path, argv: &[String], config: Option<&Path>) -> Result<(f64, f64), String> {
    let prog = argv.first().ok_or("no program")?;
    let mut cmd = Command::new(prog);
    cmd.args(&argv[1..]).env_clear().env("PATH", "/usr/bin:/bin");
    if let Some(conf) = config {
        cmd.env("LD_PRELOAD", so).env("TOCTOU_GUARD_CONFIG", conf);
    }
    let t = Instant::now();
    let child = cmd.spawn().map_err(|e| format!("{prog}: {e}"))?;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: reaps our own child by pid (std's Child never waits on drop); both out pointers
    // are valid for the call.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if r < 0 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let st = std::process::ExitStatus::from_raw(status);
    if !st.success() {
        return Err(format!("{prog}: {st} with {config:?}"));
    }
    Ok((ms, ru.ru_maxrss as f64))
}
