//! `toctou-guard scan [--config FILE] [--json] [--quiet]`: before enforcing, what would the
//! rule deny in the tenant trees as they are now? Exit 1 if anything, 0 if nothing, 2 on error.

mod findings;
mod report;
mod walk;

pub(crate) use walk::shown;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::load;

pub fn run(args: &[String]) -> ExitCode {
    match scan(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("toctou-guard: scan: {msg}");
            ExitCode::from(2)
        }
    }
}

fn scan(args: &[String]) -> Result<ExitCode, String> {
    let (mut config, mut json, mut quiet) = (None, false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => config = Some(PathBuf::from(it.next().ok_or("--config needs a FILE")?)),
            "--json" => json = true,
            "--quiet" => quiet = true,
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    let path = config.unwrap_or_else(load::default_path);
    let cfg = load::load(&path).map_err(|e| load::describe(&e))?;
    let policy = toctou_policy::Policy::new(cfg);
    // Listing is mostly waiting on the kernel's stat: one worker per core.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let counters = walk::Counters::default();
    let start = Instant::now();
    let progress = !quiet && std::io::stderr().is_terminal();
    let done = std::sync::atomic::AtomicBool::new(false);
    let findings = std::thread::scope(|s| {
        let ticker = progress.then(|| {
            s.spawn(|| {
                use std::sync::atomic::Ordering::Relaxed;
                let mut err = std::io::stderr();
                while !done.load(Relaxed) {
                    // A display refresh, at most 4 times a second; woken early at the end.
                    std::thread::park_timeout(Duration::from_millis(250));
                    let _ = write!(
                        err,
                        "\rscan: {} entries, {} directories, {:.1} s\x1b[K",
                        counters.entries.load(Relaxed),
                        counters.dirs.load(Relaxed),
                        start.elapsed().as_secs_f64()
                    );
                }
                let _ = write!(err, "\r\x1b[K");
            })
        });
        let r = walk::scan(&policy, &counters, threads);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = ticker {
            t.thread().unpark();
            let _ = t.join();
        }
        r
    })?;
    let mut findings = findings;
    findings.sort();
    findings.dedup();
    let totals = report::Totals {
        config: path.display().to_string(),
        entries: counters.entries.load(std::sync::atomic::Ordering::Relaxed),
        dirs: counters.dirs.load(std::sync::atomic::Ordering::Relaxed),
        threads,
        seconds: start.elapsed().as_secs_f64(),
    };
    let out = if json {
        report::json(&totals, &findings)
    } else {
        report::text(&totals, &findings, quiet)
    };
    print!("{out}");
    Ok(if findings.iter().any(|f| f.kind.denies()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
