//! The run: for each target, for each scenario it supports, lay the scenario out, (re)start
//! the target when its guard configuration changes, start the attacker's swapper, drive
//! the load, stop the swapper, and record the cell.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::exhaust::{self, DaemonUsage, Helper};
use crate::guardconf::{GuardConfig, LogListener};
use crate::http::Request;
use crate::load::{self, LoadSpec};
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
    let mut runner = CellRunner::new(opts, tenants, &log);
    for &kind in kinds {
        for scenario in runner.scenarios(kind) {
            if crate::signals::interrupted() {
                return Ok(());
            }
            let cell = runner.run_cell_or_retry(kind, scenario);
            progress(&cell);
            report.cells.push(cell);
        }
        // The next target starts afresh.
        runner.forget_target();
    }
    Ok(())
}

/// The cells of one run: what they share (tenants, log socket, the guard configurations
/// written so far) and the target kept running between cells.
struct CellRunner<'a> {
    opts: &'a RunOptions,
    tenants: &'a Tenants,
    log: &'a LogListener,
    /// Guard configuration files by their text.
    configs: HashMap<String, PathBuf>,
    running: Option<Running>,
    /// Once the target failed to start with a configuration, its other cells say so at once.
    start_failed: HashMap<PathBuf, String>,
}

impl<'a> CellRunner<'a> {
    fn new(opts: &'a RunOptions, tenants: &'a Tenants, log: &'a LogListener) -> CellRunner<'a> {
        CellRunner {
            opts,
            tenants,
            log,
            configs: HashMap::new(),
            running: None,
            start_failed: HashMap::new(),
        }
    }

    /// The scenarios `kind` runs, `system` last: it is the one cell whose configuration
    /// differs (no allow_uid 0).
    fn scenarios(&self, kind: TargetKind) -> Vec<Scenario> {
        let mut scenarios: Vec<Scenario> = self
            .opts
            .scenarios
            .iter()
            .copied()
            .filter(|s| kind.supports(*s))
            .collect();
        scenarios.sort_by_key(|s| *s == Scenario::System);
        scenarios
    }

    /// Stop the running target and forget its start failures.
    fn forget_target(&mut self) {
        self.running = None;
        self.start_failed.clear();
    }

    /// One cell; a bare target that did not leak gets one more try with three times the
    /// budget when `retry_bare` is set.
    fn run_cell_or_retry(&mut self, kind: TargetKind, scenario: Scenario) -> CellResult {
        let cell = self.run_cell(self.opts, kind, scenario);
        if !self.opts.retry_bare || cell.verdict() != Verdict::NoLeak {
            return cell;
        }
        let longer = RunOptions {
            max_requests: self.opts.max_requests.saturating_mul(3),
            max_time: self.opts.max_time * 3,
            ..self.opts.clone()
        };
        let first = cell.load.requests();
        let mut cell = self.run_cell(&longer, kind, scenario);
        let note = format!("no leak in {first} requests; retried with 3x the budget");
        cell.note = Some(match cell.note.take() {
            Some(n) => format!("{n}; {note}"),
            None => note,
        });
        cell
    }

    /// Lay `scenario` out and attack `kind` with it, within the budget of `opts`.
    fn run_cell(&mut self, opts: &RunOptions, kind: TargetKind, scenario: Scenario) -> CellResult {
        let mut cell = CellResult::empty(kind, scenario);
        let prepared = match scenario::prepare(scenario, self.tenants) {
            Ok(p) => p,
            Err(e) => {
                cell.error = Some(format!("setup: {e}"));
                return cell;
            }
        };
        cell.note = prepared.note.clone();
        if let Err(e) = self.attack_cell(opts, kind, &prepared, &mut cell) {
            cell.error = Some(e.to_string());
            // A target in an unknown state is not reused.
            self.running = None;
        }
        cell
    }

    fn attack_cell(
        &mut self,
        opts: &RunOptions,
        kind: TargetKind,
        prepared: &Prepared,
        cell: &mut CellResult,
    ) -> Result<()> {
        let (tenants, log) = (self.tenants, self.log);
        let conf = self.config_for(kind, prepared)?;
        let target = self.target_for(kind, &conf)?;
        let spec = load_spec(opts, tenants, kind, prepared, &**target)?;
        let daemon = target.fuse_daemon();
        let daemon_pid = daemon.as_ref().map(|(pid, _)| *pid);
        // Before the attacker's helper starts: its growth is what the cell measures.
        let before = daemon_pid.and_then(exhaust::usage);
        let sampler =
            daemon_pid.map(|pid| exhaust::Sampler::start(pid, opts.max_time + Duration::from_secs(90)));
        let helper = match &prepared.mount_load {
            Some(load) => {
                // Through the mount when there is one (every local user can reach it), else
                // the raw tree.
                let load = match &daemon {
                    Some((_, mnt)) => load.served(&tenants.www, mnt)?,
                    None => load.clone(),
                };
                let a = &tenants.attacker;
                Some(Helper::spawn(
                    &load,
                    a.uid,
                    a.gid,
                    opts.max_time + Duration::from_secs(90),
                )?)
            }
            None => None,
        };
        let swapper = start_swapper(opts, tenants, prepared)?;
        let log_before = log.count();
        log.clear();
        let victim_before = prepared
            .victim_dir
            .as_deref()
            .map(scenario::snapshot)
            .transpose()?;
        cell.load = load::run(&spec);
        // At the end of the load, the helper still holding its pins.
        let end = daemon_pid.and_then(exhaust::usage);
        if let (Some(s), Some(before), Some(end)) = (sampler, before, end) {
            cell.daemon = Some(DaemonUsage {
                before,
                peak: s.finish(),
                end,
                fd_growth_bound: prepared.fd_growth_bound.unwrap_or(exhaust::FD_GROWTH_BOUND),
            });
        }
        cell.helper = helper.map(Helper::quit);
        // The attacker read, through the served tree, a name that must be refused.
        cell.load.leaks += cell.helper.map_or(0, |h| h.leaks);
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
        if let (Some(dir), Some(before)) = (&prepared.victim_dir, &victim_before) {
            // Writes leak by changing the victim's files, whatever the responses said.
            cell.load.leaks += scenario::touched(before, &scenario::snapshot(dir)?);
        }
        settle(log);
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

    /// The guard configuration file for `kind` in this scenario (written once per text).
    fn config_for(&mut self, kind: TargetKind, prepared: &Prepared) -> Result<PathBuf> {
        let gc = GuardConfig {
            // A pool running as its tenant judges every open by its owner, wherever it is
            // (the README's php-fpm configuration): directories outside the document root,
            // which a tenant can swap, are covered too.
            root: if kind.is_php() {
                "/".to_string()
            } else {
                self.tenants.root_pattern()
            },
            owner_euid: kind.is_php(),
            allow_root: prepared.allow_root,
            audit: self.opts.audit,
            log_socket: self.log.path.clone(),
            log_rate: 1000,
        };
        let text = gc.text();
        if let Some(p) = self.configs.get(&text) {
            return Ok(p.clone());
        }
        let p = gc.write(&self.tenants.run, &format!("guard-{}.conf", self.configs.len()))?;
        self.configs.insert(text, p.clone());
        Ok(p)
    }

    /// The running target of `kind` with configuration `conf`: the one kept from the last
    /// cell, or a fresh start.
    fn target_for(&mut self, kind: TargetKind, conf: &Path) -> Result<&mut Box<dyn Target>> {
        if self.running.as_ref().is_some_and(|r| r.config != conf) {
            self.running = None;
        }
        if self.running.is_none() {
            if let Some(e) = self.start_failed.get(conf) {
                return Err(Error::msg(e.clone()));
            }
            let env = StartEnv {
                tenants: self.tenants,
                tools: &self.opts.tools,
                guard_config: conf,
            };
            match target::start(kind, &env) {
                Ok(target) => {
                    self.running = Some(Running {
                        config: conf.to_path_buf(),
                        target,
                    })
                }
                Err(e) => {
                    let e = format!("start {}: {e}", kind.name());
                    self.start_failed.insert(conf.to_path_buf(), e.clone());
                    return Err(Error::msg(e));
                }
            }
        }
        Ok(&mut self
            .running
            .as_mut()
            .ok_or_else(|| Error::msg("no target"))?
            .target)
    }
}

/// What the clients ask `target` for in this cell.
fn load_spec(
    opts: &RunOptions,
    tenants: &Tenants,
    kind: TargetKind,
    prepared: &Prepared,
    target: &dyn Target,
) -> Result<LoadSpec> {
    let url = |f: &Path| {
        target
            .url(f)
            .ok_or_else(|| Error::msg(format!("{} cannot ask for {}", kind.name(), f.display())))
    };
    let mut attack: Vec<Request> = prepared
        .attack
        .iter()
        .map(|f| Ok(Request::get(&format!("{}{}", url(f)?, prepared.attack_query))))
        .collect::<Result<_>>()?;
    for w in &prepared.writes {
        attack.push(Request {
            method: w.method,
            url: url(&w.path)?,
            destination: w.destination.as_deref().map(url).transpose()?,
            body: if w.method == "PUT" {
                b"attacker's upload\n".to_vec()
            } else {
                Vec::new()
            },
        });
    }
    let attacker_only = kind.is_php() || kind == TargetKind::External;
    let legit = scenario::legit_files(tenants, prepared, attacker_only)
        .into_iter()
        .chain(
            prepared
                .extra_legit
                .iter()
                .filter(|l| !attacker_only || l.attacker),
        )
        .map(|l| Ok((url(&l.path)?, l.content.clone())))
        .collect::<Result<_>>()?;
    let is_attack = prepared.scenario.is_attack();
    Ok(LoadSpec {
        addr: target.addr(),
        attack,
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
    })
}

/// The attacker's swapper for this scenario, running; `None` when it swaps nothing.
fn start_swapper(opts: &RunOptions, tenants: &Tenants, prepared: &Prepared) -> Result<Option<Swapper>> {
    let Some(plan) = &prepared.swap else {
        return Ok(None);
    };
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
    Ok(Some(s))
}

/// Let the last datagrams arrive: until the count stops moving (at most 200 ms).
fn settle(log: &LogListener) {
    let mut last = log.count();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(10));
        let now = log.count();
        if now == last {
            break;
        }
        last = now;
    }
}
