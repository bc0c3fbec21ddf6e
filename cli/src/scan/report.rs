//! The scan's output: a summary (counts per kind and per tenant), then one line per finding
//! (`KIND TENANT PATH DETAIL`, the first three single words with odd bytes escaped as in the
//! denial lines), or the same as JSON.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::findings::{Finding, Kind};
use super::walk::shown;

/// What was walked.
pub struct Totals {
    pub config: String,
    pub entries: u64,
    pub dirs: u64,
    pub threads: usize,
    pub seconds: f64,
}

impl Totals {
    fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.entries as f64 / self.seconds
        } else {
            0.0
        }
    }
}

fn per_tenant(findings: &[Finding]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for f in findings {
        *m.entry(shown(&f.tenant)).or_insert(0) += 1;
    }
    m
}

pub fn line(f: &Finding) -> String {
    format!(
        "{} {} {} {}",
        f.kind.as_str(),
        shown(&f.tenant),
        shown(&f.path),
        f.detail
    )
}

pub fn text(t: &Totals, findings: &[Finding], quiet: bool) -> String {
    let mut out = String::new();
    if !quiet {
        let _ = writeln!(
            out,
            "scan: {}: {} entries in {} directories, {} threads, {:.2} s ({:.0} entries/s)",
            t.config,
            t.entries,
            t.dirs,
            t.threads,
            t.seconds,
            t.rate()
        );
        let _ = writeln!(out, "{:<24} {:>8}", "finding", "count");
        for k in Kind::ALL {
            let n = findings.iter().filter(|f| f.kind == k).count();
            let _ = writeln!(out, "{:<24} {n:>8}", k.as_str());
        }
        if !findings.is_empty() {
            let _ = writeln!(out, "{:<40} {:>8}", "tenant", "findings");
            for (tenant, n) in per_tenant(findings) {
                let _ = writeln!(out, "{tenant:<40} {n:>8}");
            }
        }
        let denies = findings.iter().filter(|f| f.kind.denies()).count();
        // What was not entered may hide more: "nothing" is only about what was read.
        let unseen = findings.len() - denies;
        let _ = writeln!(
            out,
            "{}{}",
            if denies == 0 {
                "nothing would be denied".to_string()
            } else {
                format!("{denies} finding(s) would be denied when enforcing")
            },
            if unseen == 0 {
                String::new()
            } else {
                format!(" in what was scanned; {unseen} part(s) not scanned (other-mount, unreadable)")
            }
        );
        if !findings.is_empty() {
            out.push('\n');
        }
    }
    for f in findings {
        out.push_str(&line(f));
        out.push('\n');
    }
    out
}

pub fn json(t: &Totals, findings: &[Finding]) -> String {
    let kinds: serde_json::Map<String, serde_json::Value> = Kind::ALL
        .iter()
        .map(|k| {
            (
                k.as_str().to_string(),
                findings.iter().filter(|f| f.kind == *k).count().into(),
            )
        })
        .collect();
    let list: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "kind": f.kind.as_str(),
                "tenant": shown(&f.tenant),
                "path": shown(&f.path),
                "detail": f.detail,
            })
        })
        .collect();
    let v = serde_json::json!({
        "config": t.config,
        "entries": t.entries,
        "directories": t.dirs,
        "threads": t.threads,
        "seconds": t.seconds,
        "entries_per_second": t.rate(),
        "would_deny": findings.iter().any(|f| f.kind.denies()),
        "summary": { "kinds": kinds, "tenants": per_tenant(findings) },
        "findings": list,
    });
    format!("{v:#}\n")
}
