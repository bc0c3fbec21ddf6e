//! End to end: real nginx and Apache on 127.0.0.1 under `wrk`, bare vs `+shim` vs the
//! servers' own defences vs FUSE (toctou-guard-fs in each mode, bindfs), in interleaved
//! rounds, reported as ratios to bare taken in the same run, with per-request µs.
//!
//! `cargo run --release -p toctou-guard-bench --bin e2e -- [--seconds S] [--rounds R]
//!  [--connections C] [--threads T] [--only nginx|apache] [--no-fuse] [--no-bindfs] [--keep]
//!  [--workers N] [--files small|big|both] [--cost N] [--figure] [--compare-fs DAEMON]
//!  [--compare-so LIB]`
//!
//! `--figure` is issue 13's nginx figure: one nginx worker, `wrk -t1 -c16`, the small file,
//! bare / `+shim` / `if_not_owner` in 5 interleaved rounds, then the instructions and system
//! calls per request of each ([`toctou_guard_bench::cost`]).
//!
//! `--compare-so LIB` adds, per server, a row `+shim B`: the server run exactly as `+shim`
//! (same configuration) but preloading LIB, e.g. the build before a change, measured in the
//! same interleaved rounds (and counted by `--cost` like the others); `--compare-fs DAEMON`
//! does the same for `toctou-guard-fs` (`+fuse noopen B`).
//!
//! Needs root (tenant uids, FUSE mounts, servers dropping to www-data). The lab is the
//! attack harness's (`toctou_attack`): its two tenants, its servers tuned for throughput,
//! its FUSE mounts and process handling. Every server and daemon is stopped and every mount
//! detached on exit, including on Ctrl-C.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use toctou_attack::artefacts::{self, FS_DAEMON};
use toctou_attack::targets::fuse::FuseMount;
use toctou_attack::targets::{Tuning, WebServer};
use toctou_attack::{signals, sys};
use toctou_guard_bench::cost::{self, Cost, CostOptions};
use toctou_guard_bench::lab::{BIG, LEAK, Lab, SMALL, Server, Setup, measure};
use toctou_guard_bench::proc;
use toctou_guard_bench::stats::{fmt_ratio, median, range, ratios};
use toctou_guard_bench::wrk::{self, WrkOptions, WrkResult};

/// bindfs at its fastest on this machine: single-threaded (on 2 cores `--multithreaded`
/// costs a thread hand-off per request and measured slower), page cache kept across opens,
/// long attribute and entry timeouts. The README lists the alternatives measured.
const BINDFS_FASTEST: &str = "-o kernel_cache,entry_timeout=60,attr_timeout=60";

struct Args {
    seconds: u64,
    rounds: usize,
    connections: u32,
    threads: u32,
    only: Option<WebServer>,
    fuse: bool,
    bindfs_on: bool,
    keep: bool,
    /// A run during which other processes kept more than this share of the CPUs busy is
    /// repeated (up to `retries` times, within `budget`), keeping the quietest attempt.
    max_foreign: f64,
    retries: u32,
    budget: f64,
    bindfs: Vec<String>,
    /// nginx `worker_processes` / Apache `StartServers`; `None`: the servers' defaults.
    workers: Option<u32>,
    /// The files measured.
    files: Vec<&'static str>,
    /// Requests counted under strace (and a quarter of them under callgrind) per nginx
    /// set-up after the rounds; 0: none.
    cost: u64,
    /// Where the raw strace and callgrind outputs go.
    out: PathBuf,
    /// Another `toctou-guard-fs` (e.g. the build before a change), mounted `noopen` as
    /// row `+fuse noopen B` in the same interleaved rounds.
    compare_fs: Option<PathBuf>,
    /// Another `libtoctou_guard.so`, preloaded as row `+shim B` in the same rounds.
    compare_so: Option<PathBuf>,
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn usage() -> String {
    format!(
        "usage: e2e [--seconds S (2)] [--rounds R (5)] [--connections C (16)] [--threads T (2)] [--only nginx|apache] [--no-fuse] [--no-bindfs] [--keep]\n           [--max-foreign PCT (15)] [--retries N (2)] [--budget SECONDS (290)]\n           [--bindfs \"BINDFS OPTIONS\" (\"{BINDFS_FASTEST}\")] [--compare-fs DAEMON] [--compare-so LIB]\n           [--workers N (server default)] [--files small|big|both (both)] [--cost REQUESTS (0)] [--out DIR (/var/tmp/toctou-guard-bench/cost)]\n           [--figure: --only nginx --no-fuse --no-bindfs --workers 1 --threads 1 --files small --cost 20000]\n\n--cost N: after the rounds, each nginx set-up's worker is counted: system calls per request\n(strace -c over N requests) and user-space instructions per request (callgrind, N/4 requests;\nworker_processes 1 needed).\n\nA run during which other processes used more than PCT% of the CPUs is repeated up to N times\n(while the elapsed time is under the budget), keeping the quietest attempt."
    )
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
        bindfs: words(BINDFS_FASTEST),
        workers: None,
        files: vec![SMALL, BIG],
        cost: 0,
        out: PathBuf::from("/var/tmp/toctou-guard-bench/cost"),
        compare_fs: None,
        compare_so: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => a.seconds = number(&flag, value()?)?,
            "--rounds" => a.rounds = number(&flag, value()?)?,
            "--connections" => a.connections = number(&flag, value()?)?,
            "--threads" => a.threads = number(&flag, value()?)?,
            "--only" => {
                a.only = Some(match value()?.as_str() {
                    "nginx" => WebServer::Nginx,
                    "apache" => WebServer::Apache,
                    other => return Err(format!("--only: nginx or apache, not {other}")),
                })
            }
            "--no-fuse" => a.fuse = false,
            "--no-bindfs" => a.bindfs_on = false,
            "--max-foreign" => a.max_foreign = number::<f64>(&flag, value()?)? / 100.0,
            "--retries" => a.retries = number(&flag, value()?)?,
            "--bindfs" => a.bindfs = words(&value()?),
            "--budget" => a.budget = number(&flag, value()?)?,
            "--keep" => a.keep = true,
            "--workers" => a.workers = Some(number(&flag, value()?)?),
            "--files" => {
                a.files = match value()?.as_str() {
                    "small" => vec![SMALL],
                    "big" => vec![BIG],
                    "both" => vec![SMALL, BIG],
                    other => return Err(format!("--files: small, big or both, not {other}")),
                }
            }
            "--cost" => a.cost = number(&flag, value()?)?,
            "--out" => a.out = PathBuf::from(value()?),
            "--figure" => {
                a.only = Some(WebServer::Nginx);
                a.fuse = false;
                a.bindfs_on = false;
                a.workers = Some(1);
                a.threads = 1;
                a.files = vec![SMALL];
                a.cost = 20_000;
            }
            "--compare-fs" => a.compare_fs = Some(PathBuf::from(value()?)),
            "--compare-so" => a.compare_so = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!("{}", usage());
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
    a.workers = a.workers.map(|w| w.clamp(1, 64));
    a.cost = a.cost.min(1_000_000);
    if a.cost > 0 && a.workers != Some(1) {
        return Err("--cost counts one worker: add --workers 1".into());
    }
    Ok(a)
}

fn number<T: FromStr>(flag: &str, v: String) -> Result<T, String> {
    v.parse().map_err(|_| format!("{flag}: not a number"))
}

/// The FUSE mounts set-ups serve through, by row label (`+fuse noopen`, `+bindfs`); what
/// cannot be mounted is added to `skipped`.
fn mount_all(args: &Args, lab: &Lab, skipped: &mut Vec<String>) -> Vec<(String, FuseMount)> {
    let mut mounts = Vec::new();
    if args.fuse {
        mount_guard_fs(lab, &mut mounts, skipped);
        if let Some(b) = &args.compare_fs {
            println!("fuse B: {}", artefacts::describe(b));
            let (mnt, log) = (
                lab.base.join("mnt/noopen-b"),
                lab.tenants.run.join("fuse-noopen-b.log"),
            );
            match FuseMount::guard_fs(b, &lab.tenants.www, &mnt, "noopen", &log) {
                Ok(m) => mounts.push(("+fuse noopen B".into(), m)),
                Err(e) => skipped.push(format!("+fuse noopen B: {e}")),
            }
        }
    }
    if args.bindfs_on {
        println!("bindfs options: {}", args.bindfs.join(" "));
        let bindfs = lab.tools.bindfs.as_deref().ok_or("bindfs not found".to_string());
        let mounted = bindfs.and_then(|b| {
            let (mnt, log) = (lab.base.join("mnt/bindfs"), lab.tenants.run.join("bindfs.log"));
            FuseMount::bindfs(b, &lab.tenants.www, &mnt, &args.bindfs, &log).map_err(|e| e.to_string())
        });
        match mounted {
            Ok(m) => mounts.push(("+bindfs".into(), m)),
            Err(e) => skipped.push(format!("+bindfs: {e}")),
        }
    }
    mounts
}

/// `toctou-guard-fs` in each of its modes.
fn mount_guard_fs(lab: &Lab, mounts: &mut Vec<(String, FuseMount)>, skipped: &mut Vec<String>) {
    let daemon = match FS_DAEMON.locate() {
        Ok(d) => d,
        Err(e) => return skipped.push(format!("+fuse: {e}")),
    };
    println!("fuse: {}", artefacts::describe(&daemon));
    for mode in ["noopen", "passthrough"] {
        let mnt = lab.base.join("mnt").join(mode);
        let log = lab.tenants.run.join(format!("fuse-{mode}.log"));
        match FuseMount::guard_fs(&daemon, &lab.tenants.www, &mnt, mode, &log) {
            Ok(m) => mounts.push((format!("+fuse {mode}"), m)),
            Err(e) => skipped.push(format!("+fuse {mode}: {e}")),
        }
    }
}

/// Per server: bare, `+shim` (and `+shim B`), its own defence, and one row per mount.
fn setups(args: &Args, lab: &Lab, mounts: &[(String, FuseMount)]) -> Vec<Setup> {
    let mut setups = Vec::new();
    for server in [WebServer::Nginx, WebServer::Apache] {
        if args.only.is_some_and(|o| o != server) {
            continue;
        }
        let plain = |label: &str| Setup {
            server,
            label: label.into(),
            docroot: lab.docroot(&lab.tenants.www),
            shim: None,
            symlink_check: false,
            helper_pids: Vec::new(),
        };
        setups.push(plain("bare"));
        setups.push(Setup {
            shim: Some(lab.shim.clone()),
            ..plain("+shim")
        });
        if let Some(b) = &args.compare_so {
            setups.push(Setup {
                shim: Some(b.clone()),
                ..plain("+shim B")
            });
        }
        let own = match server {
            WebServer::Nginx => "disable_symlinks if_not_owner",
            WebServer::Apache => "SymLinksIfOwnerMatch",
        };
        setups.push(Setup {
            symlink_check: true,
            ..plain(own)
        });
        for (label, m) in mounts {
            setups.push(Setup {
                docroot: lab.docroot(&m.mountpoint),
                helper_pids: vec![m.pid()],
                ..plain(label)
            });
        }
    }
    setups
}

/// Every set-up that starts and passes its check; the others are added to `skipped`.
fn start_servers(setups: Vec<Setup>, lab: &Lab, skipped: &mut Vec<String>) -> Vec<Server> {
    let mut servers = Vec::new();
    for s in setups {
        let label = format!("{} {}", s.server.name(), s.label);
        match Server::start(s, lab) {
            Ok(server) => servers.push(server),
            Err(e) => skipped.push(format!("{label}: {e}")),
        }
    }
    servers
}

/// One measured (server set-up, file) pair and its per-round results.
struct Cell {
    server: usize,
    path: &'static str,
    results: Vec<WrkResult>,
    /// Requests of every timed attempt, kept or not (the FUSE daemon saw them all).
    all_requests: u64,
}

/// Every file on every server.
fn cells_for(servers: usize, files: &[&'static str]) -> Vec<Cell> {
    files
        .iter()
        .copied()
        .flat_map(|path| {
            (0..servers).map(move |server| Cell {
                server,
                path,
                results: Vec::new(),
                all_requests: 0,
            })
        })
        .collect()
}

/// The timed part: warm-up, then interleaved rounds of `wrk` over all cells.
struct Rounds<'a> {
    args: &'a Args,
    started: Instant,
    opts: WrkOptions,
    servers: &'a [Server],
}

impl Rounds<'_> {
    fn announce(&self, cells: usize) {
        println!(
            "wrk -t{} -c{} -d{}s, {} rounds interleaved over {cells} cells; load before: {}",
            self.opts.threads,
            self.opts.connections,
            self.opts.seconds,
            self.args.rounds,
            proc::loadavg()
        );
    }

    /// Page cache, FUSE dentries, server caches: one second per cell.
    fn warm_up(&self, cells: &[Cell]) -> Result<(), String> {
        let warm = WrkOptions {
            seconds: 1,
            ..self.opts
        };
        for c in cells {
            not_interrupted()?;
            wrk::wrk(&self.servers[c.server].url(c.path), warm)?;
        }
        Ok(())
    }

    /// Every round measures every cell once, in an order rotated each round, so no set-up
    /// always follows the same one.
    fn run(&self, cells: &mut [Cell]) -> Result<(), String> {
        let n = cells.len();
        for round in 0..self.args.rounds {
            for k in 0..n {
                not_interrupted()?;
                let cells_left = (self.args.rounds - round) * n - k;
                self.measure_cell(&mut cells[(k + round * 7) % n], cells_left)?;
            }
            eprintln!(
                "round {}/{} done ({:.0}s, load {})",
                round + 1,
                self.args.rounds,
                self.started.elapsed().as_secs_f64(),
                proc::loadavg()
            );
        }
        Ok(())
    }

    /// One round of `cell`: the quietest of up to `1 + retries` runs, retrying a disturbed
    /// run only while the `cells_left` runs still to come fit in the budget.
    fn measure_cell(&self, cell: &mut Cell, cells_left: usize) -> Result<(), String> {
        let server = &self.servers[cell.server];
        let mut best: Option<WrkResult> = None;
        for attempt in 0..=self.args.retries {
            let committed = (cells_left as f64 + 0.5) * (self.args.seconds as f64 + 0.2);
            if attempt > 0 && self.started.elapsed().as_secs_f64() + committed > self.args.budget {
                break;
            }
            let r = measure(server, cell.path, self.opts)?;
            cell.all_requests += r.requests;
            let quiet = r.foreign_load <= self.args.max_foreign;
            if best.is_none_or(|b| r.foreign_load < b.foreign_load) {
                best = Some(r);
            }
            if quiet {
                break;
            }
        }
        cell.results.extend(best);
        Ok(())
    }
}

fn not_interrupted() -> Result<(), String> {
    if signals::interrupted() {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("e2e: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = signals::install() {
        eprintln!("e2e: signal handlers: {e}");
        std::process::exit(1);
    }
    if let Err(e) = run(&args) {
        eprintln!("e2e: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    if sys::geteuid() != 0 {
        return Err("run as root: tenants need their own uids, FUSE mounts need root".into());
    }
    let started = Instant::now();
    // Dropped last: after the mounts, dropped after the servers that serve from them.
    let tuning = Tuning {
        workers: args.workers,
        ..Tuning::THROUGHPUT
    };
    let lab = Lab::new(args.keep, tuning)?;
    println!("# toctou-guard e2e");
    println!("shim: {}", artefacts::describe(&lab.shim));
    if let Some(b) = &args.compare_so {
        println!("shim B: {}", artefacts::describe(b));
    }
    let mut skipped = Vec::new();
    let mounts = mount_all(args, &lab, &mut skipped);
    let servers = start_servers(setups(args, &lab, &mounts), &lab, &mut skipped);
    for s in &skipped {
        println!("skipped: {s}");
    }
    if servers.is_empty() {
        return Err("nothing to measure".into());
    }
    let rounds = Rounds {
        args,
        started,
        opts: WrkOptions {
            threads: args.threads,
            connections: args.connections,
            seconds: args.seconds,
        },
        servers: &servers,
    };
    let mut cells = cells_for(servers.len(), &args.files);
    rounds.announce(cells.len());
    rounds.warm_up(&cells)?;
    let stats_before: Vec<_> = mounts.iter().map(|(_, m)| m.stats()).collect();
    rounds.run(&mut cells)?;
    report(&servers, &cells);
    fuse_messages(&mounts, &stats_before, &servers, &cells);
    if args.cost > 0 {
        counts(args, &lab, &servers)?;
    }
    println!(
        "\ntotal {:.0}s; load after: {}",
        started.elapsed().as_secs_f64(),
        proc::loadavg()
    );
    Ok(())
}

/// Instructions and system calls per request of each nginx set-up that serves the raw tree
/// (bare, `+shim`, `if_not_owner`): strace on the running worker, callgrind on a restart.
fn counts(args: &Args, lab: &Lab, servers: &[Server]) -> Result<(), String> {
    std::fs::create_dir_all(&args.out).map_err(|e| format!("mkdir {}: {e}", args.out.display()))?;
    let o = CostOptions {
        strace_requests: args.cost,
        callgrind_requests: (args.cost / 4).max(1),
        warm: 500,
        conns: args.connections,
        out: args.out.clone(),
    };
    let mut costs = Vec::new();
    for s in servers
        .iter()
        .filter(|s| s.setup.server == WebServer::Nginx && s.setup.helper_pids.is_empty())
    {
        not_interrupted()?;
        let mut c = Cost {
            label: s.setup.label.clone(),
            ..Cost::default()
        };
        eprintln!("counting {}: strace", c.label);
        match cost::syscalls(s, &o) {
            Ok(m) => c.syscalls = m,
            Err(e) => c.errors.push(format!("system calls: {e}")),
        }
        eprintln!("counting {}: callgrind", c.label);
        if let Err(e) = cost::instructions(&s.setup, lab, &o, &mut c) {
            c.errors.push(format!("instructions: {e}"));
        }
        costs.push(c);
    }
    cost::report(&costs, &o);
    Ok(())
}

/// What each FUSE daemon was asked per HTTP request served through its mount, during the
/// timed rounds: the proof (or not) that warm requests cost no round trip to the daemon.
fn fuse_messages(
    mounts: &[(String, FuseMount)],
    before: &[Option<BTreeMap<String, u64>>],
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

/// One table per server and file: every set-up against the bare one.
fn report(servers: &[Server], cells: &[Cell]) {
    for server in [WebServer::Nginx, WebServer::Apache] {
        for path in [SMALL, BIG] {
            let rows: Vec<&Cell> = cells
                .iter()
                .filter(|c| c.path == path && servers[c.server].setup.server == server)
                .collect();
            if let Some(bare) = rows.iter().find(|c| servers[c.server].setup.label == "bare") {
                table(server, path, bare, &rows, servers);
            }
        }
    }
}

fn table(server: WebServer, path: &str, bare: &Cell, rows: &[&Cell], servers: &[Server]) {
    let bare_rps: Vec<f64> = bare.results.iter().map(|r| r.rps).collect();
    let file = if path == SMALL {
        "512 B file at depth 4"
    } else {
        "1 MiB file"
    };
    println!("\n## {} — {file} ({path})", server.name());
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
            s.leak,
            errors,
            100.0 * median(&c.results.iter().map(|r| r.foreign_load).collect::<Vec<_>>())
        );
    }
}
