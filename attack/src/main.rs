//! `toctou-attack`: race symlink swaps against real servers and count leaked secrets.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use toctou_attack::naive::{self, NaiveOptions};
use toctou_attack::report::{EXIT_ERROR, Report};
use toctou_attack::run::{RunOptions, run_matrix};
use toctou_attack::target::{ExternalSpec, Guard, TargetKind, Tools};
use toctou_attack::{Scenario, signals};

const USAGE: &str = "\
usage: toctou-attack [--targets LIST|auto] [--scenarios LIST|all] [--requests N] [--seconds S]
                     [--clients N] [--swappers N] [--swapper-nice N] [--full] [--json]
                     [--shim PATH] [--fs PATH]
                     [--url URL --attacker-docroot DIR --victim-docroot DIR] [--list]
       toctou-attack serve-naive --root DIR --port N [--user UID:GID] [--max-seconds N]

Sets up two tenants (victim, attacker) under /tmp, races symlink swaps as the attacker's
uid against each target on 127.0.0.1, and counts responses carrying the victim's secret.
Needs root. Prints a table target x scenario.

  --targets LIST   comma-separated targets, or `auto` (default): naive and naive+shim,
                   plus apache/nginx/php/fuse targets when installed (skips are printed)
  --scenarios LIST comma-separated scenarios, or `all` (default)
  --requests N     request budget per cell (default 100000; --full: 1000000)
  --seconds S      time budget per cell (default 5; --full: 30)
  --clients N      attack-lane client threads (default 3; one more runs the legit lane)
  --swappers N     swapper threads (default 1)
  --swapper-nice N the swapper's nice value (default -10, so that servers and clients on a
                   small machine do not starve it)
  --json           print JSON instead of the table
  --shim PATH      libtoctou_guard.so (default: next to this binary)
  --fs PATH        toctou-guard-fs (default: next to this binary)
  --url URL        `external`: the URL of the attacker's document root on a live server
  --list           list targets and scenarios

Exit status: 0 all good; 1 a guarded target leaked or refused a tenant's own file, or
its FUSE daemon went past its RSS/descriptor bound (deep-tree, alias-pinning);
2 a bare target did not leak (the race proves nothing); 3 a cell could not run;
130 interrupted.";

fn die(msg: &str) -> ExitCode {
    eprintln!("toctou-attack: {msg}");
    eprintln!("try --help");
    ExitCode::from(64)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve-naive") {
        return serve_naive(&args[1..]);
    }
    match attack(&args) {
        Ok(code) => ExitCode::from(code as u8),
        Err(msg) => die(&msg),
    }
}

fn serve_naive(args: &[String]) -> ExitCode {
    let mut root = None;
    let mut port = None;
    let mut user = None;
    let mut max = 3600u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--root" => root = Some(PathBuf::from(val())),
            "--port" => port = val().parse::<u16>().ok(),
            "--user" => {
                let v = val();
                user = v
                    .split_once(':')
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
            }
            "--max-seconds" => max = val().parse().unwrap_or(max),
            other => return die(&format!("serve-naive: unknown argument {other}")),
        }
    }
    let (Some(root), Some(port)) = (root, port) else {
        return die("serve-naive needs --root and --port");
    };
    let opts = NaiveOptions {
        root,
        port,
        user,
        max_lifetime: Duration::from_secs(max),
    };
    match naive::serve(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("toctou-attack serve-naive: {e}");
            ExitCode::from(1)
        }
    }
}

/// The targets `auto` stands for.
const AUTO: [TargetKind; 13] = [
    TargetKind::Naive,
    TargetKind::NaiveShim,
    TargetKind::Apache,
    TargetKind::ApacheShim,
    TargetKind::Nginx,
    TargetKind::NginxShim,
    TargetKind::NginxIfNotOwner,
    TargetKind::Php,
    TargetKind::PhpShim,
    TargetKind::NaiveFuse,
    TargetKind::ApacheFuse,
    TargetKind::NginxFuse,
    TargetKind::PhpFuse,
];

fn attack(args: &[String]) -> Result<i32, String> {
    let mut targets: Option<String> = None;
    let mut scenarios: Option<String> = None;
    let (mut requests, mut seconds): (Option<u64>, Option<f64>) = (None, None);
    let (mut clients, mut swappers, mut nice) = (None, None, None);
    let (mut full, mut json, mut list) = (false, false, false);
    let (mut shim, mut fs) = (None, None);
    let (mut url, mut adoc, mut vdoc) = (None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--targets" => targets = Some(val()?),
            "--scenarios" => scenarios = Some(val()?),
            "--requests" => requests = Some(val()?.parse().map_err(|_| "--requests: not a number")?),
            "--seconds" => seconds = Some(val()?.parse().map_err(|_| "--seconds: not a number")?),
            "--clients" => clients = Some(val()?.parse().map_err(|_| "--clients: not a number")?),
            "--swappers" => swappers = Some(val()?.parse().map_err(|_| "--swappers: not a number")?),
            "--swapper-nice" => nice = Some(val()?.parse().map_err(|_| "--swapper-nice: not a number")?),
            "--full" => full = true,
            "--json" => json = true,
            "--list" => list = true,
            "--shim" => shim = Some(PathBuf::from(val()?)),
            "--fs" => fs = Some(PathBuf::from(val()?)),
            "--url" => url = Some(val()?),
            "--attacker-docroot" => adoc = Some(PathBuf::from(val()?)),
            "--victim-docroot" => vdoc = Some(PathBuf::from(val()?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if list {
        println!("targets:");
        for k in TargetKind::ALL {
            println!("  {:<19} {}", k.name(), k.describe());
        }
        println!("scenarios:");
        for s in Scenario::ALL {
            println!("  {:<9} {}", s.name(), s.describe());
        }
        return Ok(0);
    }
    let self_exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut tools = Tools::detect(&self_exe, shim, fs);
    let explicit = targets.as_deref().is_some_and(|t| t != "auto");
    let mut kinds: Vec<TargetKind> = match targets.as_deref() {
        None | Some("auto") => AUTO.to_vec(),
        Some(list) => list
            .split(',')
            .map(|s| TargetKind::parse(s.trim()).ok_or_else(|| format!("unknown target {s:?} (see --list)")))
            .collect::<Result<_, _>>()?,
    };
    if let Some(url) = url {
        let (a, v) = adoc
            .zip(vdoc)
            .ok_or("--url needs --attacker-docroot and --victim-docroot")?;
        tools.external = Some(ExternalSpec {
            url,
            attacker_docroot: a,
            victim_docroot: v,
        });
        if !explicit {
            kinds = vec![TargetKind::External];
        }
    }
    let scen: Vec<Scenario> = match scenarios.as_deref() {
        None | Some("all") => Scenario::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|s| Scenario::parse(s.trim()).ok_or_else(|| format!("unknown scenario {s:?} (see --list)")))
            .collect::<Result<_, _>>()?,
    };
    let mut opts = RunOptions::new(tools);
    opts.targets = kinds;
    opts.scenarios = scen;
    if full {
        opts.max_requests = 1_000_000;
        opts.max_time = Duration::from_secs(30);
    }
    if let Some(r) = requests {
        opts.max_requests = r;
    }
    if let Some(s) = seconds {
        opts.max_time = Duration::from_secs_f64(s);
    }
    if let Some(c) = clients {
        opts.attack_clients = c;
    }
    if let Some(s) = swappers {
        opts.swappers = s;
    }
    if let Some(n) = nice {
        opts.swapper_nice = n;
    }
    if toctou_attack::sys::geteuid() != 0 {
        eprintln!(
            "toctou-attack: needs root (it chowns the tenants' files and runs the swapper as the attacker's uid)"
        );
        return Ok(EXIT_ERROR);
    }
    signals::install().map_err(|e| format!("signal handlers: {e}"))?;
    if !json {
        eprintln!(
            "toctou-attack: {} requests / {:?} per cell, {} attack + {} legit clients, {} swapper thread(s) at nice {}",
            opts.max_requests,
            opts.max_time,
            opts.attack_clients,
            opts.legit_clients,
            opts.swappers,
            opts.swapper_nice
        );
        for &k in &opts.targets {
            if let Some(why) = opts.tools.missing(k) {
                eprintln!("skipping {}: {why}", k.name());
            }
        }
        println!("{}", Report::table_header());
    }
    let report = run_matrix(&opts, |c| {
        if !json {
            println!("{}", Report::table_row(c));
        }
    })
    .map_err(|e| e.to_string())?;
    let mut code = report.exit_code();
    // Explicitly requested targets that could not run are an error; `auto` only reports them.
    if explicit && !report.skipped.is_empty() && code == 0 {
        code = EXIT_ERROR;
    }
    if report.cells.is_empty() && code == 0 {
        eprintln!("toctou-attack: nothing ran");
        code = EXIT_ERROR;
    }
    if json {
        print!("{}", report.json());
    } else {
        summary(&report, code);
    }
    Ok(code)
}

fn summary(report: &Report, code: i32) {
    println!();
    for (k, why) in &report.skipped {
        println!("skipped {}: {why}", k.name());
    }
    let mut seen = Vec::new();
    for c in &report.cells {
        if seen.contains(&c.target) {
            continue;
        }
        seen.push(c.target);
        let (r, l, f) = report.totals(c.target);
        let what = match c.guard {
            Guard::Bare => "bare (must leak)",
            Guard::Reference => "reference",
            _ => "guarded (must not leak)",
        };
        println!(
            "{:<19} {:<24} {r:>9} requests, {l:>7} leaks, {f} false denials",
            c.target.name(),
            what
        );
    }
    let mut notes: Vec<(Scenario, &str)> = Vec::new();
    for c in &report.cells {
        if let Some(n) = &c.note
            && !notes.contains(&(c.scenario, n.as_str()))
        {
            notes.push((c.scenario, n));
            println!("note: {}: {n}", c.scenario.name());
        }
    }
    for c in &report.cells {
        if let Some(e) = &c.error {
            println!("error: {} {}: {e}", c.target.name(), c.scenario.name());
        }
    }
    println!(
        "exit {code}: {}",
        match code {
            0 => "guarded targets held, bare targets leaked",
            1 => "a guarded target leaked or refused a tenant's own file",
            2 => "a bare target did not leak: the race proves nothing",
            3 => "a target or cell could not run",
            _ => "interrupted",
        }
    );
}
