//! Results: one cell per target x scenario, the verdict of each, the table, the JSON and
//! the exit status.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::time::Duration;

use crate::exhaust::{DaemonUsage, HelperStats, RSS_GROWTH_BOUND_KIB};
use crate::load::LoadResult;
use crate::scenario::Scenario;
use crate::target::{Guard, TargetKind};

/// One target x scenario.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub target: TargetKind,
    pub scenario: Scenario,
    pub guard: Guard,
    pub load: LoadResult,
    pub swaps: u64,
    pub swap_errors: u64,
    /// Denial lines the shim sent to the log socket during the cell.
    pub log_lines: u64,
    /// The first few of those lines.
    pub log_sample: Vec<String>,
    /// The cell could not run (target did not start, setup failed, target died).
    pub error: Option<String>,
    pub note: Option<String>,
    /// The FUSE daemon's RSS and descriptors over the cell (`+fuse` targets).
    pub daemon: Option<DaemonUsage>,
    /// The attacker's helper working through the served tree (`deep-tree`, `alias-pinning`).
    pub helper: Option<HelperStats>,
}

/// What a cell proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// As it should be.
    Ok,
    /// A guarded target sent the secret.
    GuardedLeak,
    /// A guarded target refused a tenant's own file.
    FalseDenial,
    /// The FUSE daemon went past its stated RSS or descriptor bound under the attack.
    OverBound,
    /// A bare target did not leak: the race was not hard enough, the run proves nothing.
    NoLeak,
    /// The cell did not run.
    Error,
    /// Shown for reference, decides nothing.
    Info,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::GuardedLeak => "LEAK",
            Verdict::FalseDenial => "FALSE-DENIAL",
            Verdict::OverBound => "OVER-BOUND",
            Verdict::NoLeak => "NO-LEAK",
            Verdict::Error => "ERROR",
            Verdict::Info => "info",
        }
    }
}

impl CellResult {
    /// A cell of `target` x `scenario` before it ran.
    pub fn empty(target: TargetKind, scenario: Scenario) -> CellResult {
        CellResult {
            target,
            scenario,
            guard: target.guard(),
            load: LoadResult::default(),
            swaps: 0,
            swap_errors: 0,
            log_lines: 0,
            log_sample: Vec::new(),
            error: None,
            note: None,
            daemon: None,
            helper: None,
        }
    }

    pub fn verdict(&self) -> Verdict {
        if self.error.is_some() {
            return Verdict::Error;
        }
        let l = &self.load;
        match self.guard {
            g if g.must_hold() => {
                // The helper's failures are the attacker's own files refused.
                let helper_errors = self.helper.map_or(0, |h| h.errors);
                let over = self.scenario.exhausts_daemon() && self.daemon.is_none_or(|d| !d.within_bounds());
                if l.leaks > 0 {
                    Verdict::GuardedLeak
                } else if l.false_denials > 0 || helper_errors > 0 {
                    Verdict::FalseDenial
                } else if over && self.guard == Guard::Fuse {
                    // Also when the daemon could not be measured: nothing unproven passes.
                    Verdict::OverBound
                } else {
                    Verdict::Ok
                }
            }
            // No daemon to exhaust: shown beside the guarded cells.
            Guard::Bare if self.scenario.exhausts_daemon() => Verdict::Info,
            Guard::Bare if self.scenario.is_attack() && l.leaks == 0 => Verdict::NoLeak,
            Guard::Bare => Verdict::Ok,
            _ => Verdict::Info,
        }
    }

    pub fn swaps_per_sec(&self) -> f64 {
        let s = self.load.elapsed.as_secs_f64();
        if s > 0.0 { self.swaps as f64 / s } else { 0.0 }
    }
}

/// A whole run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub cells: Vec<CellResult>,
    /// Targets not run, and why.
    pub skipped: Vec<(TargetKind, String)>,
    pub marker: String,
    pub interrupted: bool,
}

/// Exit statuses.
pub const EXIT_OK: i32 = 0;
pub const EXIT_GUARDED_LEAK: i32 = 1;
pub const EXIT_BARE_NO_LEAK: i32 = 2;
pub const EXIT_ERROR: i32 = 3;
pub const EXIT_INTERRUPTED: i32 = 130;

fn human(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.0}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.0}ms", d.as_secs_f64() * 1e3))
        .unwrap_or_else(|| "-".into())
}

impl Report {
    /// 1 when a guarded target leaked or refused a legit file, else 2 when a bare target
    /// did not leak, else 3 when a cell could not run.
    pub fn exit_code(&self) -> i32 {
        let v: Vec<Verdict> = self.cells.iter().map(CellResult::verdict).collect();
        if v.iter().any(|v| {
            matches!(
                v,
                Verdict::GuardedLeak | Verdict::FalseDenial | Verdict::OverBound
            )
        }) {
            EXIT_GUARDED_LEAK
        } else if self.interrupted {
            EXIT_INTERRUPTED
        } else if v.contains(&Verdict::NoLeak) {
            EXIT_BARE_NO_LEAK
        } else if v.contains(&Verdict::Error) {
            EXIT_ERROR
        } else {
            EXIT_OK
        }
    }

    pub fn table_header() -> String {
        format!(
            "{:<19} {:<9} {:>9} {:>8} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8}  {}",
            "target",
            "scenario",
            "requests",
            "req/s",
            "leaks",
            "denied",
            "falsed",
            "1st-leak",
            "swaps/s",
            "logged",
            "verdict"
        )
    }

    pub fn table_row(c: &CellResult) -> String {
        let l = &c.load;
        let rps = if l.elapsed.as_secs_f64() > 0.0 {
            l.requests() as f64 / l.elapsed.as_secs_f64()
        } else {
            0.0
        };
        let mut s = format!(
            "{:<19} {:<9} {:>9} {:>8} {:>8} {:>6} {:>6} {:>8} {:>8} {:>8}  {}",
            c.target.name(),
            c.scenario.name(),
            l.requests(),
            human(rps),
            l.leaks,
            human(l.denials as f64),
            l.false_denials,
            ms(l.first_leak),
            human(c.swaps_per_sec()),
            c.log_lines,
            c.verdict().label()
        );
        if let Some(e) = &c.error {
            let first = e.lines().next().unwrap_or("");
            let _ = write!(s, "  {first}");
        }
        if c.verdict() == Verdict::FalseDenial
            && let Some(f) = &l.first_false_denial
        {
            let _ = write!(s, "  ({f})");
        }
        if let Some(d) = &c.daemon
            && c.scenario.exhausts_daemon()
        {
            let _ = write!(
                s,
                "  daemon rss {}->{} KiB (+{} KiB, bound {}), fds {}->{} (+{} at peak, bound {})",
                d.before.rss_kib,
                d.end.rss_kib,
                d.rss_growth_kib(),
                RSS_GROWTH_BOUND_KIB,
                d.before.fds,
                d.end.fds,
                d.fd_growth(),
                d.fd_growth_bound
            );
        }
        if let Some(h) = &c.helper {
            let _ = write!(s, "  helper ops {} errors {} leaks {}", h.ops, h.errors, h.leaks);
            if h.errors > 0 {
                let _ = write!(s, " (first errno {})", h.first_errno);
            }
        }
        s
    }

    pub fn table(&self) -> String {
        let mut s = Report::table_header();
        s.push('\n');
        for c in &self.cells {
            s.push_str(&Report::table_row(c));
            s.push('\n');
        }
        for (k, why) in &self.skipped {
            let _ = writeln!(s, "{:<19} skipped: {why}", k.name());
        }
        s
    }

    /// Totals per target: (requests, leaks, false denials).
    pub fn totals(&self, target: TargetKind) -> (u64, u64, u64) {
        self.cells
            .iter()
            .filter(|c| c.target == target)
            .fold((0, 0, 0), |(r, l, f), c| {
                (r + c.load.requests(), l + c.load.leaks, f + c.load.false_denials)
            })
    }

    pub fn cell(&self, target: TargetKind, scenario: Scenario) -> Option<&CellResult> {
        self.cells
            .iter()
            .find(|c| c.target == target && c.scenario == scenario)
    }

    pub fn json(&self) -> String {
        let mut s = String::from("{\n  \"cells\": [\n");
        for (i, c) in self.cells.iter().enumerate() {
            let l = &c.load;
            let _ = write!(
                s,
                "    {{\"target\": {}, \"scenario\": {}, \"guard\": {}, \"requests\": {}, \"attack_requests\": {}, \
                 \"leaks\": {}, \"denials\": {}, \"own\": {}, \"errors\": {}, \"legit_requests\": {}, \
                 \"false_denials\": {}, \"first_leak_ms\": {}, \"elapsed_ms\": {}, \"swaps\": {}, \
                 \"swaps_per_sec\": {:.0}, \"swap_errors\": {}, \"log_lines\": {}, \"log_sample\": [{}], \"verdict\": {}, \"error\": {}, \"note\": {}, \"daemon\": {}, \"helper\": {}}}",
                q(c.target.name()),
                q(c.scenario.name()),
                q(&format!("{:?}", c.guard).to_lowercase()),
                l.requests(),
                l.attack_requests,
                l.leaks,
                l.denials,
                l.own,
                l.errors,
                l.legit_requests,
                l.false_denials,
                l.first_leak
                    .map(|d| format!("{:.3}", d.as_secs_f64() * 1e3))
                    .unwrap_or_else(|| "null".into()),
                l.elapsed.as_millis(),
                c.swaps,
                c.swaps_per_sec(),
                c.swap_errors,
                c.log_lines,
                c.log_sample.iter().map(|l| q(l)).collect::<Vec<_>>().join(", "),
                q(c.verdict().label()),
                c.error.as_deref().map(q).unwrap_or_else(|| "null".into()),
                c.note.as_deref().map(q).unwrap_or_else(|| "null".into()),
                c.daemon
                    .as_ref()
                    .map(daemon_json)
                    .unwrap_or_else(|| "null".into()),
                c.helper
                    .map(|h| format!(
                        "{{\"ops\": {}, \"errors\": {}, \"first_errno\": {}, \"leaks\": {}}}",
                        h.ops, h.errors, h.first_errno, h.leaks
                    ))
                    .unwrap_or_else(|| "null".into()),
            );
            s.push_str(if i + 1 < self.cells.len() { ",\n" } else { "\n" });
        }
        s.push_str("  ],\n  \"skipped\": [");
        for (i, (k, why)) in self.skipped.iter().enumerate() {
            let _ = write!(
                s,
                "{}{{\"target\": {}, \"why\": {}}}",
                if i > 0 { ", " } else { "" },
                q(k.name()),
                q(why)
            );
        }
        let _ = write!(s, "],\n  \"exit_code\": {}\n}}\n", self.exit_code());
        s
    }
}

/// The daemon's usage as a JSON object, with the bounds it was held to.
fn daemon_json(d: &DaemonUsage) -> String {
    format!(
        "{{\"rss_before_kib\": {}, \"rss_peak_kib\": {}, \"rss_end_kib\": {}, \"rss_growth_kib\": {}, \
         \"rss_growth_bound_kib\": {}, \"fds_before\": {}, \"fds_peak\": {}, \"fds_end\": {}, \"fd_growth\": {}, \
         \"fd_growth_bound\": {}}}",
        d.before.rss_kib,
        d.peak.rss_kib,
        d.end.rss_kib,
        d.rss_growth_kib(),
        RSS_GROWTH_BOUND_KIB,
        d.before.fds,
        d.peak.fds,
        d.end.fds,
        d.fd_growth(),
        d.fd_growth_bound
    )
}

/// A JSON string literal.
pub fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(target: TargetKind, scenario: Scenario, leaks: u64, false_denials: u64) -> CellResult {
        CellResult {
            load: LoadResult {
                attack_requests: 100,
                leaks,
                false_denials,
                ..Default::default()
            },
            ..CellResult::empty(target, scenario)
        }
    }

    fn code(cells: Vec<CellResult>) -> i32 {
        Report {
            cells,
            ..Default::default()
        }
        .exit_code()
    }

    #[test]
    fn exit_codes() {
        let bare_leaked = cell(TargetKind::Naive, Scenario::Final, 5, 0);
        let shim_held = cell(TargetKind::NaiveShim, Scenario::Final, 0, 0);
        assert_eq!(code(vec![bare_leaked.clone(), shim_held.clone()]), EXIT_OK);
        let shim_leaked = cell(TargetKind::NaiveShim, Scenario::Final, 1, 0);
        assert_eq!(
            code(vec![bare_leaked.clone(), shim_leaked.clone()]),
            EXIT_GUARDED_LEAK
        );
        let shim_refused = cell(TargetKind::NaiveShim, Scenario::Legit, 0, 1);
        assert_eq!(code(vec![bare_leaked.clone(), shim_refused]), EXIT_GUARDED_LEAK);
        let bare_held = cell(TargetKind::Apache, Scenario::Dir, 0, 0);
        assert_eq!(
            code(vec![bare_held.clone(), shim_held.clone()]),
            EXIT_BARE_NO_LEAK
        );
        // A guarded leak wins over a bare target that did not leak.
        assert_eq!(code(vec![bare_held, shim_leaked]), EXIT_GUARDED_LEAK);
        // The legit lane of a bare target need not leak; the reference decides nothing.
        let bare_legit = cell(TargetKind::Naive, Scenario::Legit, 0, 0);
        let reference = cell(TargetKind::NginxIfNotOwner, Scenario::Hardlink, 9, 0);
        assert_eq!(code(vec![bare_legit, reference]), EXIT_OK);
        let mut broken = shim_held;
        broken.error = Some("start: no".into());
        assert_eq!(code(vec![bare_leaked, broken]), EXIT_ERROR);
    }

    #[test]
    fn daemon_bounds_decide_the_exhaustion_cells() {
        use crate::exhaust::{DaemonUsage, HelperStats, Usage};
        let usage = |rss_kib, fds| Usage { rss_kib, fds };
        let within = DaemonUsage {
            before: usage(3_000, 30),
            peak: usage(4_200, 760),
            end: usage(4_100, 750),
            fd_growth_bound: 856,
        };
        let mut c = cell(TargetKind::NginxFuse, Scenario::DeepTree, 0, 0);
        c.daemon = Some(within);
        assert_eq!(c.verdict(), Verdict::Ok);
        // The daemon before issue 12: +45 MiB walking 600 levels of 255-byte names.
        c.daemon = Some(DaemonUsage {
            peak: usage(49_000, 760),
            ..within
        });
        assert_eq!(c.verdict(), Verdict::OverBound);
        assert_eq!(code(vec![c.clone()]), EXIT_GUARDED_LEAK);
        // One descriptor per pinned alias.
        c.daemon = Some(DaemonUsage {
            end: usage(4_100, 5_030),
            fd_growth_bound: 128,
            ..within
        });
        assert_eq!(c.verdict(), Verdict::OverBound);
        // Not measured: not proven.
        c.daemon = None;
        assert_eq!(c.verdict(), Verdict::OverBound);
        // The attacker's own files refused through the mount.
        c.daemon = Some(within);
        c.helper = Some(HelperStats {
            ops: 10,
            errors: 1,
            first_errno: 24,
            leaks: 0,
        });
        assert_eq!(c.verdict(), Verdict::FalseDenial);
        // A bare target has no daemon: information only.
        let bare = cell(TargetKind::Nginx, Scenario::AliasPinning, 0, 0);
        assert_eq!(bare.verdict(), Verdict::Info);
        // Bounds only judge the exhaustion scenarios.
        let mut other = cell(TargetKind::NginxFuse, Scenario::UploadsLink, 0, 0);
        other.daemon = None;
        assert_eq!(other.verdict(), Verdict::Ok);
    }

    #[test]
    fn json_is_escaped() {
        assert_eq!(q("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
