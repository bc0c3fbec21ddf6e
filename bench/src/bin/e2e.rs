//! End to end: real nginx and Apache on 127.0.0.1 under `wrk`, bare vs `+shim` vs the
//! servers' own defences vs FUSE (toctou-guard-fs in each mode, bindfs), in interleaved
//! rounds, reported as ratios to bare taken in the same run, with per-request µs.
//!
//! `cargo run --release -p toctou-guard-bench --bin e2e -- [--seconds S] [--rounds R]
//!  [--connections C] [--threads T] [--only nginx|apache] [--no-fuse] [--no-bindfs] [--keep]`
//!
//! Needs root (tenant uids, FUSE mounts, servers dropping to www-data). Every server and
//! daemon is stopped and every mount detached on exit, including on Ctrl-C.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use toctou_guard_bench::fixture::{self, content, private_dir, write_file};
use toctou_guard_bench::load::{self, WrkOptions, WrkResult};
use toctou_guard_bench::mounts::{self, Mount};
use toctou_guard_bench::servers::{Kind, Server, Setup};
use toctou_guard_bench::stats::{fmt_ratio, median, range, ratios};
use toctou_guard_bench::{artefacts, proc};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

const SMALL: &str = "/d1/d2/d3/small.html";
const BIG: &str = "/big.bin";
const LEAK: &str = "/leak.html";
const BIG_BYTES: usize = 1 << 20;
const ALICE: u32 = fixture::TENANT_UID_BASE + 1;
const BOB: u32 = fixture::TENANT_UID_BASE + 2;

struct Args {
    seconds: u64,
    rounds: usize,
    connections: u32,
    threads: u32,
    only: Option<Kind>,
    fuse: bool,
    bindfs_on: bool,
    keep: bool,
    /// A run during which other processes kept more than this share of the CPUs busy is
    /// repeated (up to `retries` times, within `budget`), keeping the quietest attempt.
    max_foreign: f64,
    retries: u32,
    budget: f64,
    bindfs: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 2,
        rounds: 5,
        connections: 16,
        threads: 2,
        only: None,
        fuse: true,
        bindfs_on: true,
        keep: false,
        max_foreign: 0.15,
        retries: 2,
        budget: 290.0,
        bindfs: mounts::BINDFS_FASTEST
            .split_whitespace()
            .map(String::from)
            .collect(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--seconds" => {
                a.seconds = value("--seconds")?
                    .parse()
                    .map_err(|_| "--seconds: not a number")?
            }
            "--rounds" => a.rounds = value("--rounds")?.parse().map_err(|_| "--rounds: not a number")?,
            "--connections" => {
                a.connections = value("--connections")?
                    .parse()
                    .map_err(|_| "--connections: not a number")?
            }
            "--threads" => {
                a.threads = value("--threads")?
                    .parse()
                    .map_err(|_| "--threads: not a number")?
            }
            "--only" => {
                a.only = Some(match value("--only")?.as_str() {
                    "nginx" => Kind::Nginx,
                    "apache" => Kind::Apache,
                    other => return Err(format!("--only: nginx or apache, not {other}")),
                })
            }
            "--no-fuse" => a.fuse = false,
            "--no-bindfs" => a.bindfs_on = false,
            "--max-foreign" => {
                a.max_foreign = value("--max-foreign")?
                    .parse::<f64>()
                    .map_err(|_| "--max-foreign: not a number")?
                    / 100.0
            }
            "--retries" => {
                a.retries = value("--retries")?
                    .parse()
                    .map_err(|_| "--retries: not a number")?
            }
            "--bindfs" => a.bindfs = value("--bindfs")?.split_whitespace().map(String::from).collect(),
            "--budget" => a.budget = value("--budget")?.parse().map_err(|_| "--budget: not a number")?,
            "--keep" => a.keep = true,
            "-h" | "--help" => {
                println!(
                    "usage: e2e [--seconds S (2)] [--rounds R (5)] [--connections C (16)] [--threads T (2)] [--only nginx|apache] [--no-fuse] [--no-bindfs] [--keep]\n           [--max-foreign PCT (15)] [--retries N (2)] [--budget SECONDS (290)]\n           [--bindfs \"BINDFS OPTIONS\" (\"{}\")]\n\nA run during which other processes used more than PCT% of the CPUs is repeated up to N times\n(while the elapsed time is under the budget), keeping the quietest attempt.",
                    mounts::BINDFS_FASTEST
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    a.seconds = a.seconds.clamp(1, 60);
    a.rounds = a.rounds.clamp(1, 50);
    a.connections = a.connections.clamp(1, 1000);
    a.threads = a.threads.clamp(1, a.connections);
    a.retries = a.retries.min(10);
    a.budget = a.budget.clamp(10.0, 3600.0);
    Ok(a)
}

/// The work directory, removed on drop (after the mounts and servers declared later).
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else if !mounts::is_mounted(&self.path.join("mnt/noopen"))
            && !mounts::is_mounted(&self.path.join("mnt/passthrough"))
            && !mounts::is_mounted(&self.path.join("mnt/bindfs"))
        {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Two tenants: alice serves the measured files; alice's `leak.html` is a symlink to bob's
/// secret, so every set-up also shows whether it is guarded at all.
fn build_tree(w: &Path) -> Result<PathBuf, String> {
    let io = |e: std::io::Error| e.to_string();
    let src = w.join("src");
    let alice = src.join("alice");
    let bob = src.join("bob");
    let deep = alice.join("public_html/d1/d2/d3");
    private_dir(&deep).map_err(io)?;
    private_dir(&bob.join("public_html")).map_err(io)?;
    write_file(&deep.join("small.html"), &content(fixture::SMALL_FILE_BYTES)).map_err(io)?;
    write_file(&alice.join("public_html/big.bin"), &content(BIG_BYTES)).map_err(io)?;
    write_file(&bob.join("public_html/secret.html"), b"bob's secret\n").map_err(io)?;
    std::os::unix::fs::symlink(
        "../../bob/public_html/secret.html",
        alice.join("public_html/leak.html"),
    )
    .map_err(io)?;
    for (tenant, uid) in [(&alice, ALICE), (&bob, BOB)] {
        let mut stack = vec![tenant.to_path_buf()];
        while let Some(p) = stack.pop() {
            std::os::unix::fs::lchown(&p, Some(uid), Some(uid)).map_err(io)?;
            if p.is_dir() && !p.is_symlink() {
                for e in std::fs::read_dir(&p).map_err(io)? {
                    stack.push(e.map_err(io)?.path());
                }
            }
        }
    }
    let conf = w.join("guard.conf");
    write_file(
        &conf,
        format!(
            "# toctou-guard-bench e2e\nmode enforce\nroot {}/*/public_html\nlog_socket {}/log.sock\n",
            src.display(),
            w.display()
        )
        .as_bytes(),
    )
    .map_err(io)?;
    Ok(conf)
}

/// One measured (server set-up, file) pair and its per-round results.
struct Cell {
    server: usize,
    path: &'static str,
    results: Vec<WrkResult>,
    /// Requests of every timed attempt, kept or not (the FUSE daemon saw them all).
    all_requests: u64,
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("e2e: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    if let Err(e) = run(&args) {
        eprintln!("e2e: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("run as root: tenants need their own uids, FUSE mounts need root".into());
    }
    let started = Instant::now();
    let so = artefacts::shim()?;
    let path = PathBuf::from(format!("/tmp/toctou-guard-e2e-{}", std::process::id()));
    private_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let work = WorkDir {
        path,
        keep: args.keep,
    };
    let w = work.path.clone();
    let conf = build_tree(&w)?;
    let src = w.join("src");

    println!("# toctou-guard e2e");
    println!("shim: {}", artefacts::describe(&so));

    // Mounts first (servers serve from them), dropped after the servers.
    let mut mounts: Vec<(String, Mount)> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    if args.fuse {
        match artefacts::fuse_daemon() {
            Ok(daemon) => {
                println!("fuse: {}", artefacts::describe(&daemon));
                for mode in ["noopen", "passthrough"] {
                    let mnt = w.join("mnt").join(mode);
                    match mounts::toctou_fs(&daemon, &src, &mnt, mode, &w.join(format!("fuse-{mode}.log"))) {
                        Ok(m) => mounts.push((format!("+fuse {mode}"), m)),
                        Err(e) => skipped.push(format!("+fuse {mode}: {e}")),
                    }
                }
            }
            Err(e) => skipped.push(format!("+fuse: {e}")),
        }
    }
    if args.bindfs_on {
        let mnt = w.join("mnt/bindfs");
        println!("bindfs options: {}", args.bindfs.join(" "));
        match mounts::bindfs(&src, &mnt, &args.bindfs, &w.join("bindfs.log")) {
            Ok(m) => mounts.push(("+bindfs".into(), m)),
            Err(e) => skipped.push(format!("+bindfs: {e}")),
        }
    }

    let docroot = |base: &Path| base.join("alice/public_html");
    let mut setups = Vec::new();
    for kind in [Kind::Nginx, Kind::Apache] {
        if args.only.is_some_and(|o| o != kind) {
            continue;
        }
        let plain = |label: &str| Setup {
            kind,
            label: label.into(),
            docroot: docroot(&src),
            guard: None,
            if_not_owner: false,
            symlinks_if_owner_match: false,
            helper_pids: Vec::new(),
        };
        setups.push(plain("bare"));
        setups.push(Setup {
            guard: Some((so.clone(), conf.clone())),
            ..plain("+shim")
        });
        match kind {
            Kind::Nginx => setups.push(Setup {
                if_not_owner: true,
                ..plain("disable_symlinks if_not_owner")
            }),
            Kind::Apache => setups.push(Setup {
                symlinks_if_owner_match: true,
                ..plain("SymLinksIfOwnerMatch")
            }),
        }
        for (label, m) in &mounts {
            setups.push(Setup {
                docroot: docroot(&m.mountpoint),
                helper_pids: vec![m.daemon_pid()],
                ..plain(label)
            });
        }
    }

    let mut servers: Vec<Server> = Vec::new();
    let mut guard_status: Vec<String> = Vec::new();
    for (i, s) in setups.into_iter().enumerate() {
        let name = format!("{}-{i}", s.kind.as_str());
        let label = format!("{} {}", s.kind.as_str(), s.label);
        let server = match Server::start(s, &w, &name) {
            Ok(sv) => sv,
            Err(e) => {
                skipped.push(format!("{label}: {e}"));
                continue;
            }
        };
        // Check before measuring: both files served in full, and what the leak link gives.
        let check = (|| -> Result<String, String> {
            let small = load::get(server.port, SMALL)?;
            let big = load::get(server.port, BIG)?;
            if small != (200, fixture::SMALL_FILE_BYTES) || big != (200, BIG_BYTES) {
                return Err(format!("small file gave {small:?}, 1 MB file gave {big:?}"));
            }
            if server.setup.guard.is_some() && !proc::maps_contain(server.pid(), "libtoctou_guard") {
                return Err("the shim is not loaded in the server".into());
            }
            Ok(load::get(server.port, LEAK)?.0.to_string())
        })();
        match check {
            Ok(leak) => {
                guard_status.push(leak);
                servers.push(server);
            }
            Err(e) => skipped.push(format!("{label}: {e} (see {})", server.dir.display())),
        }
    }
    for s in &skipped {
        println!("skipped: {s}");
    }
    if servers.is_empty() {
        return Err("nothing to measure".into());
    }

    let opts = WrkOptions {
        threads: args.threads,
        connections: args.connections,
        seconds: args.seconds,
    };
    let mut cells: Vec<Cell> = Vec::new();
    for path in [SMALL, BIG] {
        for server in 0..servers.len() {
            cells.push(Cell {
                server,
                path,
                results: Vec::new(),
                all_requests: 0,
            });
        }
    }
    println!(
        "wrk -t{} -c{} -d{}s, {} rounds interleaved over {} cells; load before: {}",
        opts.threads,
        opts.connections,
        opts.seconds,
        args.rounds,
        cells.len(),
        proc::loadavg()
    );
    // Warm-up: page cache, FUSE dentries, server caches, once per cell.
    let warm = WrkOptions { seconds: 1, ..opts };
    for c in &cells {
        if STOP.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        load::wrk(&servers[c.server].url(c.path), warm)?;
    }
    let stats_before: Vec<_> = mounts.iter().map(|(_, m)| m.stats()).collect();
    let n = cells.len();
    for round in 0..args.rounds {
        // Rotate the order each round, so no set-up always follows the same one.
        for k in 0..n {
            if STOP.load(Ordering::SeqCst) {
                return Err("interrupted".into());
            }
            let c = &mut cells[(k + round * 7) % n];
            let server = &servers[c.server];
            let mut best: Option<WrkResult> = None;
            for attempt in 0..=args.retries {
                // Retry only while the runs still to come fit in the budget.
                let cells_left = (args.rounds - round) * n - k;
                let committed = (cells_left as f64 + 0.5) * (args.seconds as f64 + 0.2);
                if attempt > 0 && started.elapsed().as_secs_f64() + committed > args.budget {
                    break;
                }
                let r = measure(server, c.path, opts)?;
                c.all_requests += r.requests;
                let quiet = r.foreign_load <= args.max_foreign;
                if best.is_none_or(|b| r.foreign_load < b.foreign_load) {
                    best = Some(r);
                }
                if quiet {
                    break;
                }
            }
            let Some(r) = best else { continue };
            c.results.push(r);
        }
        eprintln!(
            "round {}/{} done ({:.0}s, load {})",
            round + 1,
            args.rounds,
            started.elapsed().as_secs_f64(),
            proc::loadavg()
        );
    }

    report(&servers, &guard_status, &cells);
    fuse_messages(&mounts, &stats_before, &servers, &cells);
    println!(
        "\ntotal {:.0}s; load after: {}",
        started.elapsed().as_secs_f64(),
        proc::loadavg()
    );
    drop(servers);
    drop(mounts);
    drop(work);
    Ok(())
}

/// One wrk run against `server`, with the server's own CPU time and the foreign load.
fn measure(server: &Server, path: &str, opts: WrkOptions) -> Result<WrkResult, String> {
    let roots = server.cpu_roots();
    let before = proc::tree_cpu_ticks(&roots);
    let mut r = load::wrk(&server.url(path), opts)?;
    let server_s = proc::tree_cpu_ticks(&roots).saturating_sub(before) as f64 / proc::clock_ticks();
    if r.requests > 0 {
        r.server_cpu_us_per_req = server_s * 1e6 / r.requests as f64;
    }
    let foreign = (r.machine_cpu_s - server_s - r.wrk_cpu_s).max(0.0);
    r.foreign_load = foreign / (proc::cpus() * r.wall_s.max(0.1));
    Ok(r)
}

/// What each FUSE daemon was asked per HTTP request served through its mount, during the
/// timed rounds: the proof (or not) that warm requests cost no round trip to the daemon.
fn fuse_messages(
    mounts: &[(String, Mount)],
    before: &[Option<std::collections::BTreeMap<String, u64>>],
    servers: &[Server],
    cells: &[Cell],
) {
    let mut header = false;
    for ((label, m), before) in mounts.iter().zip(before) {
        let (Some(before), Some(after)) = (before, m.stats()) else {
            continue;
        };
        let http: u64 = cells
            .iter()
            .filter(|c| &servers[c.server].setup.label == label)
            .map(|c| c.all_requests)
            .sum();
        if http == 0 {
            continue;
        }
        if !header {
            println!(
                "\n## FUSE requests to the daemon per HTTP request (timed rounds, both servers, both files)"
            );
            header = true;
        }
        let mut parts = Vec::new();
        let mut total = 0;
        for (k, v) in &after {
            if matches!(k.as_str(), "dump" | "nodes_live" | "denied" | "audited") {
                continue;
            }
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            total += d;
            if d > 0 {
                parts.push(format!("{k} {:.3}", d as f64 / http as f64));
            }
        }
        println!(
            "- {label}: {:.3} per request over {http} requests ({})",
            total as f64 / http as f64,
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            }
        );
    }
}

fn report(servers: &[Server], guard_status: &[String], cells: &[Cell]) {
    for kind in [Kind::Nginx, Kind::Apache] {
        for path in [SMALL, BIG] {
            let rows: Vec<&Cell> = cells
                .iter()
                .filter(|c| c.path == path && servers[c.server].setup.kind == kind)
                .collect();
            let Some(bare) = rows.iter().find(|c| servers[c.server].setup.label == "bare") else {
                continue;
            };
            let bare_rps: Vec<f64> = bare.results.iter().map(|r| r.rps).collect();
            let file = if path == SMALL {
                "512 B file at depth 4"
            } else {
                "1 MiB file"
            };
            println!("\n## {} — {file} ({path})", kind.as_str());
            println!(
                "| set-up | req/s median [min–max] | ratio to bare, same round | µs/req (1/rate) | Δµs vs bare | server CPU µs/req | CPU ratio (bare/this) | GET {LEAK} | errors | other load |"
            );
            println!("|---|---|---|---|---|---|---|---|---|---|");
            let bare_us = 1e6 / median(&bare_rps);
            let bare_cpu: Vec<f64> = bare.results.iter().map(|r| r.server_cpu_us_per_req).collect();
            for c in rows {
                let s = &servers[c.server];
                let rps: Vec<f64> = c.results.iter().map(|r| r.rps).collect();
                let (lo, hi) = range(&rps);
                let us = 1e6 / median(&rps);
                let cpu: Vec<f64> = c.results.iter().map(|r| r.server_cpu_us_per_req).collect();
                let errors: u64 = c.results.iter().map(|r| r.non_2xx + r.socket_errors).sum();
                println!(
                    "| {} | {:.0} [{:.0}–{:.0}] | {} | {:.1} | {:+.1} | {:.1} | {} | {} | {} | {:.0}% |",
                    s.setup.label,
                    median(&rps),
                    lo,
                    hi,
                    fmt_ratio(&ratios(&rps, &bare_rps)),
                    us,
                    us - bare_us,
                    median(&cpu),
                    fmt_ratio(&ratios(&bare_cpu, &cpu)),
                    guard_status[c.server],
                    errors,
                    100.0 * median(&c.results.iter().map(|r| r.foreign_load).collect::<Vec<_>>())
                );
            }
        }
    }
}
