//! Denial counts per process, from the syslog file the shim's lines end up in (or, without
//! that file, the journal). The shim keeps no counter a process could be asked for, so the
//! log is the honest source: every refused open is one `toctou-guard[PID]: action=deny`
//! line (rate-limited lines are counted in the next line's `suppressed=N`, added here).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;

use crate::report::{self, Line};

/// The file `status` reads by default (rsyslog's `authpriv` on Debian).
pub const DEFAULT_LOG: &str = "/var/log/auth.log";

/// Denials (`action=deny` or, in audit mode, `action=audit`) per pid in `text`.
pub fn count(text: &str) -> HashMap<u32, u64> {
    count_lines(text.lines().map(str::to_string))
}

/// [`count`] line by line (a log file may be large: it is never held whole). Each line is
/// read as `report` reads it (`toctou_policy::logline` behind it); the FUSE daemon's lines
/// (`toctou-guard-fs`) carry the daemon's pid, not a server's, and are left out.
fn count_lines(lines: impl Iterator<Item = String>) -> HashMap<u32, u64> {
    let mut n = HashMap::new();
    for line in lines {
        // The year of a traditional stamp does not matter to a count.
        if let Line::Denial(e) = report::classify(&line, 0)
            && !e.fs
            && let Some(pid) = e.pid
        {
            *n.entry(pid).or_insert(0) += 1 + e.suppressed;
        }
    }
    n
}

/// [`count`] over `path`; `Err` names why it could not be read.
pub fn from_file(path: &Path) -> Result<HashMap<u32, u64>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines = BufReader::new(f)
        .split(b'\n')
        .map_while(Result::ok)
        .map(|l| String::from_utf8_lossy(&l).into_owned());
    Ok(count_lines(lines))
}

/// [`count`] over the journal's `authpriv` lines of identifier `toctou-guard` (Debian 12
/// without rsyslog has no auth.log), at most 60 s of `journalctl`.
pub fn from_journal() -> Result<HashMap<u32, u64>, String> {
    let out = Command::new("timeout")
        .args([
            "60",
            "journalctl",
            "-q",
            "--no-pager",
            "-o",
            "short",
            "SYSLOG_FACILITY=10",
            "-t",
            "toctou-guard",
        ])
        .output()
        .map_err(|e| format!("journalctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "journalctl failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(count(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_by_pid_with_suppressed_lines() {
        let log = "\
2026-12-04T01:00:00+00:00 h toctou-guard[7]: action=deny reason=owner-mismatch mode=enforce uid=33 owner=1 expected=2 suppressed=0 comm=nginx tenant=/h/a path=/h/a/p/x
<84>toctou-guard[7]: action=deny reason=owner-mismatch mode=enforce uid=33 owner=1 expected=2 suppressed=5 comm=nginx tenant=/h/a path=/h/a/p/y
<84>toctou-guard[8]: action=audit reason=owner-mismatch mode=audit uid=33 owner=1 expected=2 suppressed=0 comm=x tenant= path=/x
<84>toctou-guard-fs[7]: action=deny reason=owner-mismatch mode=enforce uid=33 owner=1 expected=2 suppressed=0 comm=x tenant= path=/x
<83>toctou-guard[7]: action=config-error file=/x
toctou-guard[x]: action=deny
Dec 04 01:00:01 h toctou-guard[8]: action=deny reason=tenant-missing mode=enforce uid=33 owner=- expected=- suppressed=0 comm=x tenant= path=/x
";
        let n = super::count(log);
        assert_eq!(n.get(&7), Some(&7));
        // The audit line, and one as `journalctl -o short` prints it.
        assert_eq!(n.get(&8), Some(&2));
        assert_eq!(n.len(), 2);
    }
}
