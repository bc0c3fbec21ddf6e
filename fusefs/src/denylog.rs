//! Denials (and audit-mode would-be denials) as one syslog datagram each, rate-limited, in
//! the one line format both guards share (`toctou_policy::logline`, documented in the
//! README), tagged `toctou-guard-fs[PID]`. The socket is non-blocking: a stalled syslog
//! daemon drops lines, never stalls the mount.
#![forbid(unsafe_code)]

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use toctou_policy::logline::{self, Denial, PRI_DENIAL, RateLimit};
use toctou_policy::{DenyReason, Mode};

const TAG: &str = "toctou-guard-fs";

pub struct DenyLog {
    socket: Option<UnixDatagram>,
    target: PathBuf,
    rate: RateLimit,
    pid: u32,
    mode: Mode,
}

/// One denial, as logged.
pub struct Event<'a> {
    pub audit: bool,
    pub reason: DenyReason,
    /// Absolute path in SOURCE.
    pub path: &'a [u8],
    pub owner: Option<u32>,
    pub expected: Option<u32>,
    pub tenant: &'a [u8],
    /// The requesting process: its uid, and its pid (for its name).
    pub uid: Option<u32>,
    pub pid: Option<u32>,
}

impl DenyLog {
    pub fn new(target: PathBuf, rate: u32, mode: Mode) -> DenyLog {
        let socket = UnixDatagram::unbound()
            .ok()
            .filter(|s| s.set_nonblocking(true).is_ok());
        DenyLog {
            socket,
            target,
            rate: RateLimit::new(rate),
            pid: std::process::id(),
            mode,
        }
    }

    /// The whole line for `ev`, reporting `suppressed` dropped lines.
    pub fn format(&self, ev: &Event<'_>, suppressed: u64) -> String {
        // The caller's name, only on a denial (rate-limited): one small read of /proc.
        let comm = ev
            .pid
            .and_then(|p| std::fs::read(format!("/proc/{p}/comm")).ok())
            .unwrap_or_default();
        let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
        let mut line = String::new();
        let _ = logline::write_header(&mut line, PRI_DENIAL, TAG, self.pid);
        let _ = logline::write_denial(
            &mut line,
            &Denial {
                audit: ev.audit,
                reason: ev.reason,
                mode: self.mode,
                uid: ev.uid,
                owner: ev.owner,
                expected: ev.expected,
                suppressed,
                comm,
                tenant: ev.tenant,
                path: ev.path,
            },
        );
        line
    }

    pub fn log(&self, ev: &Event<'_>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(suppressed) = self.rate.admit(now) {
            let line = self.format(ev, suppressed);
            if let Some(s) = &self.socket {
                let _ = s.send_to(line.as_bytes(), &self.target);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let l = DenyLog::new(PathBuf::from("/nonexistent"), 5, Mode::Enforce);
        let s = l.format(
            &Event {
                audit: false,
                reason: DenyReason::OwnerMismatch,
                path: b"/srv/alice/a b=c",
                owner: Some(1002),
                expected: Some(1001),
                tenant: b"/srv/alice",
                uid: Some(33),
                pid: None,
            },
            3,
        );
        assert!(s.starts_with("<84>toctou-guard-fs["), "{s}");
        assert!(
            s.ends_with(
                "]: action=deny reason=owner-mismatch mode=enforce uid=33 owner=1002 \
                 expected=1001 suppressed=3 comm= tenant=/srv/alice path=/srv/alice/a\\x20b\\x3dc"
            ),
            "{s}"
        );
    }
}
