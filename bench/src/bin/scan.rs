//! `scan`: throughput of `toctou-guard scan` on a 1,000,000-entry tree with a warm cache.
//!
//! Builds `DIR/home/tNNN/public_html/dNNN/fNNN` once (reused when its marker says it is
//! complete): 100 tenants × 100 directories × 100 files, each tenant's files owned by its
//! own uid, so the scan judges 1,010,100 entries and finds nothing. Then one untimed run
//! (warms the dentry and inode caches), then `--runs` timed runs of the installed binary
//! (`toctou-guard scan --json --quiet`); prints entries/s per run, min/median/max.
//!
//! ```text
//! target/release/scan [--dir /tmp/tg-scan-bench] [--runs 3] [--tenants 100] [--dirs 100] [--files 100]
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, fchown};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use toctou_guard_bench::stats::{median, range};

const UID0: u32 = 43000;

struct Args {
    dir: PathBuf,
    runs: usize,
    tenants: usize,
    dirs: usize,
    files: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        dir: PathBuf::from("/tmp/tg-scan-bench"),
        runs: 3,
        tenants: 100,
        dirs: 100,
        files: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or(format!("{k} needs a value"));
        let num = |s: String| {
            s.parse::<usize>()
                .map_err(|_| format!("{k}: '{s}' is not a number"))
        };
        match k.as_str() {
            "--dir" => a.dir = PathBuf::from(v()?),
            "--runs" => a.runs = num(v()?)?.max(1),
            "--tenants" => a.tenants = num(v()?)?,
            "--dirs" => a.dirs = num(v()?)?,
            "--files" => a.files = num(v()?)?,
            _ => {
                return Err("usage: scan [--dir DIR] [--runs N] [--tenants N] [--dirs N] [--files N]".into());
            }
        }
    }
    Ok(a)
}

/// The tree and its config; skipped when the marker names the same shape.
fn build(a: &Args) -> Result<PathBuf, String> {
    let shape = format!("{} {} {}\n", a.tenants, a.dirs, a.files);
    let marker = a.dir.join("complete");
    let conf = a.dir.join("toctou-guard.conf");
    if fs::read_to_string(&marker).is_ok_and(|m| m == shape) {
        return Ok(conf);
    }
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let _ = fs::remove_dir_all(&a.dir);
    let t0 = Instant::now();
    for t in 0..a.tenants {
        let uid = UID0 + t as u32;
        let home = a.dir.join(format!("home/t{t:03}"));
        for d in 0..a.dirs {
            let dir = home.join(format!("public_html/d{d:03}"));
            fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
            for f in 0..a.files {
                let p = dir.join(format!("f{f:03}"));
                let file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&p)
                    .map_err(|e| err(&p, e))?;
                fchown(&file, Some(uid), Some(uid)).map_err(|e| err(&p, e))?;
            }
            std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).map_err(|e| err(&dir, e))?;
        }
        for p in [home.join("public_html"), home.clone()] {
            std::os::unix::fs::chown(&p, Some(uid), Some(uid)).map_err(|e| err(&p, e))?;
        }
    }
    fs::set_permissions(&a.dir, fs::Permissions::from_mode(0o755)).map_err(|e| err(&a.dir, e))?;
    let mut c = fs::File::create(&conf).map_err(|e| err(&conf, e))?;
    writeln!(c, "root {}/home/*/public_html", a.dir.display()).map_err(|e| err(&conf, e))?;
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).map_err(|e| err(&conf, e))?;
    fs::write(&marker, shape).map_err(|e| err(&marker, e))?;
    eprintln!("built {} in {:.1} s", a.dir.display(), t0.elapsed().as_secs_f64());
    Ok(conf)
}

/// One scan: (entries, seconds of wall time for the whole command).
fn scan_once(bin: &Path, conf: &Path) -> Result<(u64, f64), String> {
    let t0 = Instant::now();
    let out = Command::new(bin)
        .args(["scan", "--json", "--quiet", "--config"])
        .arg(conf)
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(0) {
        return Err(format!(
            "scan exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // `"entries": N,` in the pretty JSON.
    let entries = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"entries\": "))
        .and_then(|v| v.trim_end_matches(',').parse().ok())
        .ok_or("no entries count in the scan's JSON")?;
    Ok((entries, secs))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scan bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<(), String> {
    let a = args()?;
    let bin = toctou_guard_bench::CLI.locate()?;
    println!("binary: {}", toctou_attack::artefacts::describe(&bin));
    let conf = build(&a)?;
    let (entries, secs) = scan_once(&bin, &conf)?;
    println!("warm-up: {entries} entries in {secs:.2} s");
    let mut rates = Vec::new();
    for i in 1..=a.runs {
        let (entries, secs) = scan_once(&bin, &conf)?;
        let rate = entries as f64 / secs;
        println!("run {i}: {entries} entries in {secs:.3} s: {rate:.0} entries/s");
        rates.push(rate);
    }
    let (lo, hi) = range(&rates);
    println!(
        "entries/s over {} warm runs: min {lo:.0}, median {:.0}, max {hi:.0} ({} threads available)",
        a.runs,
        median(&rates),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(())
}
