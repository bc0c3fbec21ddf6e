//! The run: for each target, for each scenario it supports, lay the scenario out, (re)start
//! the target when its guard configuration changes, start the attacker's swapper, drive
//! the load, stop the swapper, and record the cell.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::guardconf::{GuardConfig, LogListener};
use crate::load::{self, LoadResult, LoadSpec};
use crate::report::{CellResult, Report, Verdict};
use crate::scenario::{self, Prepared, Scenario};
use crate::swapper::{Swapper, SwapperOptions};
use crate::target::{self, StartEnv, Target, TargetKind, Tools};
use crate::tenants::{TenantOptions, Tenants};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub targets: Vec<TargetKind>,
    pub scenarios: Vec<Scenario>,
    /// Per cell, over both lanes.
    pub max_requests: u64,
    /// Per cell.
    pub max_time: Duration,
    /// Client threads in the attack lane.
    pub attack_clients: usize,
    /// Client threads in the legit lane (all clients go there in the `legit` scenario).
    pub legit_clients: usize,
    /// Swapper threads.
    pub swappers: usize,
    /// The swapper's nice value (negative: it is not starved by servers and clients).
    pub swapper_nice: i32,
    pub tools: Tools,
    pub tenants: TenantOptions,
    /// Guard config in audit mode (for tests of `mode audit`; a shim target then leaks).
    pub audit: bool,
    /// A bare target that did not leak in an attack gets one more try with three times the
    /// budget (a loaded machine can starve the race; not leaking must be really so).
    pub retry_bare: bool,
}

impl RunOptions {
    /// Defaults sized for a 2-core machine.
    pub fn new(tools: Tools) -> RunOptions {
        RunOptions {
            targets: vec![TargetKind::Naive, TargetKind::NaiveShim],
            scenarios: Scenario::ALL.to_vec(),
            max_requests: 100_000,
            max_time: Duration::from_secs(5),
            attack_clients: 3,
            legit_clients: 1,
            swappers: 1,
            swapper_nice: -10,
            tools,
            tenants: TenantOptions::default(),
            audit: false,
            retry_bare: true,
        }
    }
}

/// A target kept running across cells while its configuration does not change.
struct Running {
    config: PathBuf,
    target: Box<dyn Target>,
}

/// Run every target x scenario; `progress` sees each cell as it finishes.
pub fn run_matrix(opts: &RunOptions, mut progress: impl FnMut(&CellResult)) -> Result<Report> {
    let mut report = Report::default();
    let mut internal = Vec::new();
    let mut external = false;
    for &k in &opts.targets {
        if let Some(why) = opts.tools.missing(k) {
            report.skipped.push((k, why));
        } else if k == TargetKind::External {
            external = true;
        } else {
            internal.push(k);
        }
    }
    if !internal.is_empty() {
        let tenants = Tenants::create(&opts.tenants)?;
        report.marker = tenants.marker.clone();
        run_targets(opts, &tenants, &internal, &mut report, &mut progress)?;
    }
    if external && !crate::signals::interrupted() {
        let spec = opts
            .tools
            .external
            .as_ref()
            .ok_or_else(|| Error::msg("no external target"))?;
        let tenants = Tenants::external(&spec.attacker_docroot, &spec.victim_docroot)?;
        report.marker = tenants.marker.clone();
        run_targets(
            opts,
            &tenants,
            &[TargetKind::External],
            &mut report,
            &mut progress,
        )?;
    }
    report.interrupted = crate::signals::interrupted();
    Ok(report)
}

fn run_targets(
    opts: &RunOptions,
    tenants: &Tenants,
    kinds: &[TargetKind],
    report: &mut Report,
    progress: &mut impl FnMut(&CellResult),
) -> Result<()> {
    let log = LogListener::bind(&tenants.run.join("log.sock"))?;
    let mut configs: HashMap<String, PathBuf> = HashMap::new();
    for &kind in kinds {
        let mut running: Option<Running> = None;
        // Once a target failed to start with a configuration, its other cells say so at once.
        let mut start_failed: HashMap<PathBuf, String> = HashMap::new();
        // `system` last: it is the one cell whose configuration differs (no allow_uid 0).
        let mut scenarios: Vec<Scenario> = opts
            .scenarios
            .iter()
            .copied()
            .filter(|s| kind.supports(*s))
            .collect();
        scenarios.sort_by_key(|s| *s == Scenario::System);
        for scenario in scenarios {
            if crate::signals::interrupted() {
                return Ok(());
            }
            let mut cell = run_cell(
                opts,
                tenants,
                kind,
                scenario,
                &log,
                &mut configs,
                &mut running,
                &mut start_failed,
            );
            if opts.retry_bare && cell.verdict() == Verdict::NoLeak {
                let longer = RunOptions {
                    max_requests: opts.max_requests.saturating_mul(3),
                    max_time: opts.max_time * 3,
                    ..opts.clone()
                };
                let first = cell.load.requests();
                cell = run_cell(
                    &longer,
                    tenants,
                    kind,
                    scenario,
                    &log,
                    &mut configs,
                    &mut running,
                    &mut start_failed,
                );
                let note = format!("no leak in {first} requests; retried with 3x the budget");
                cell.note = Some(match cell.note.take() {
                    Some(n) => format!("{n}; {note}"),
                    None => note,
                });
            }
            progress(&cell);
            report.cells.push(cell);
        }
    }
    Ok(())
}

fn empty_cell(kind: TargetKind, scenario: Scenario) -> CellResult {
    CellResult {
        target: kind,
        scenario,
        guard: kind.guard(),
        load: LoadResult::default(),
        swaps: 0,
        swap_errors: 0,
        log_lines: 0,
        log_sample: Vec::new(),
        error: None,
        note: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn run_cell(
    opts: &RunOptions,
    tenants: &Tenants,
    kind: TargetKind,
    scenario: Scenario,
    log: &LogListener,
    configs: &mut HashMap<String, PathBuf>,
    running: &mut Option<Running>,
    start_failed: &mut HashMap<PathBuf, String>,
) -> CellResult {
    let mut cell = empty_cell(kind, scenario);
    let prepared = match scenario::prepare(scenario, tenants) {
        Ok(p) => p,
        Err(e) => {
            cell.error = Some(format!("setup: {e}"));
            return cell;
        }
    };
    cell.note = prepared.note.clone();
    if let Err(e) = attack_cell(
        opts,
        tenants,
        kind,
        &prepared,
        log,
        configs,
        running,
        start_failed,
        &mut cell,
    ) {
        cell.error = Some(e.to_string());
        // A target in an unknown state is not reused.
        *running = None;
    }
    cell
}

#[allow(clippy::too_many_arguments)]
fn attack_cell(
    opts: &RunOptions,
    tenants: &Tenants,
    kind: TargetKind,
    prepared: &Prepared,
    log: &LogListener,
    configs: &mut HashMap<String, PathBuf>,
    running: &mut Option<Running>,
    start_failed: &mut HashMap<PathBuf, String>,
    cell: &mut CellResult,
) -> Result<()> {
    let gc = GuardConfig {
        root: tenants.root_pattern(),
        owner_euid: kind.is_php(),
        allow_root: prepared.allow_root,
        audit: opts.audit,
        log_socket: log.path.clone(),
        log_rate: 1000,
    };
    let text = gc.text();
    let conf = match configs.get(&text) {
        Some(p) => p.clone(),
        None => {
            let p = gc.write(&tenants.run, &format!("guard-{}.conf", configs.len()))?;
            configs.insert(text, p.clone());
            p
        }
    };
    if running.as_ref().is_some_and(|r| r.config != conf) {
        *running = None;
    }
    if running.is_none() {
        if let Some(e) = start_failed.get(&conf) {
            return Err(Error::msg(e.clone()));
        }
        let env = StartEnv {
            tenants,
            tools: &opts.tools,
            guard_config: &conf,
        };
        match target::start(kind, &env) {
            Ok(target) => {
                *running = Some(Running {
                    config: conf.clone(),
                    target,
                })
            }
            Err(e) => {
                let e = format!("start {}: {e}", kind.name());
                start_failed.insert(conf.clone(), e.clone());
                return Err(Error::msg(e));
            }
        }
    }
    let target = &mut running.as_mut().ok_or_else(|| Error::msg("no target"))?.target;
    let urls = |files: &[PathBuf]| -> Result<Vec<String>> {
        files
            .iter()
            .map(|f| {
                target
                    .url(f)
                    .ok_or_else(|| Error::msg(format!("{} cannot ask for {}", kind.name(), f.display())))
            })
            .collect()
    };
    let attack_urls = urls(&prepared.attack)?;
    let attacker_only = kind.is_php() || kind == TargetKind::External;
    let legit_files = scenario::legit_files(tenants, prepared, attacker_only);
    let mut legit = Vec::new();
    for l in legit_files {
        let u = target
            .url(&l.path)
            .ok_or_else(|| Error::msg(format!("cannot ask for {}", l.path.display())))?;
        legit.push((u, l.content.clone()));
    }
    let is_attack = prepared.scenario.is_attack();
    let spec = LoadSpec {
        addr: target.addr(),
        attack_urls,
        markers: prepared.leak_markers.clone(),
        attack_threads: if is_attack { opts.attack_clients } else { 0 },
        legit,
        legit_threads: if is_attack {
            opts.legit_clients
        } else {
            opts.attack_clients + opts.legit_clients
        },
        max_requests: opts.max_requests,
        max_time: opts.max_time,
    };
    let swapper = match &prepared.swap {
        Some(plan) => {
            let a = &tenants.attacker;
            let s = Swapper::spawn(
                plan,
                &SwapperOptions {
                    uid: a.uid,
                    gid: a.gid,
                    threads: opts.swappers,
                    nice: opts.swapper_nice,
                    max_lifetime: opts.max_time + Duration::from_secs(60),
                },
            )?;
            s.run();
            Some(s)
        }
        None => None,
    };
    let log_before = log.count();
    log.clear();
    cell.load = load::run(&spec);
    if let Some(s) = swapper {
        let st = s.quit();
        cell.swaps = st.swaps;
        cell.swap_errors = st.errors;
        if st.errors > 0 && st.swaps == 0 {
            return Err(Error::msg(format!(
                "swapper: every swap failed (errno {})",
                st.first_errno
            )));
        }
    }
    // Let the last datagrams arrive: until the count stops moving (at most 200 ms).
    let mut last = log.count();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(10));
        let now = log.count();
        if now == last {
            break;
        }
        last = now;
    }
    cell.log_lines = log.count() - log_before;
    cell.log_sample = log.lines().into_iter().take(3).collect();
    target.check_alive()?;
    if cell.load.requests() == 0 {
        return Err(Error::msg(format!(
            "no request completed: {}",
            cell.load.first_error.clone().unwrap_or_default()
        )));
    }
    Ok(())
}
