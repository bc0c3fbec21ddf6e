//! Denials (and audit-mode would-be denials) as one syslog datagram each, rate-limited.
//!
//! Format, facility authpriv (10), severity warning (4) → `<84>`:
//! `<84>toctou-guard-fs[PID]: action=deny reason=owner-mismatch path=/rel/path owner=UID
//! expected=UID tenant=/abs/tenant/dir mode=enforce`
//! The socket is non-blocking: a stalled syslog daemon drops lines, never stalls the mount.
#![forbid(unsafe_code)]

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Instant;

use parking_lot::Mutex;
use toctou_policy::{DenyReason, Mode};

pub struct DenyLog {
    socket: Option<UnixDatagram>,
    target: PathBuf,
    rate: u32,
    pid: u32,
    mode: Mode,
    window: Mutex<Window>,
}

struct Window {
    start: Instant,
    sent: u32,
    suppressed: u64,
}

/// One denial, as logged.
pub struct Event<'a> {
    pub audit: bool,
    pub reason: DenyReason,
    pub path: &'a [u8],
    pub owner: Option<u32>,
    pub expected: Option<u32>,
    pub tenant: &'a [u8],
}

/// Bytes as a log-safe word: printable ASCII kept, everything else (spaces, `=`, control
/// and non-ASCII bytes) as `\xNN`, so a tenant-chosen file name cannot forge fields or lines.
pub fn escape(out: &mut String, bytes: &[u8]) {
    use std::fmt::Write;
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' && b != b'=' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

impl DenyLog {
    pub fn new(target: PathBuf, rate: u32, mode: Mode) -> DenyLog {
        let socket = UnixDatagram::unbound()
            .ok()
            .filter(|s| s.set_nonblocking(true).is_ok());
        DenyLog {
            socket,
            target,
            rate: rate.max(1),
            pid: std::process::id(),
            mode,
            window: Mutex::new(Window {
                start: Instant::now(),
                sent: 0,
                suppressed: 0,
            }),
        }
    }

    pub fn format(&self, ev: &Event<'_>) -> String {
        let mut line = format!(
            "<84>toctou-guard-fs[{}]: action={} reason={} path=",
            self.pid,
            if ev.audit { "audit" } else { "deny" },
            ev.reason.as_str()
        );
        escape(&mut line, ev.path);
        let num = |v: Option<u32>| v.map_or_else(|| "-".to_string(), |u| u.to_string());
        line.push_str(&format!(
            " owner={} expected={} tenant=",
            num(ev.owner),
            num(ev.expected)
        ));
        escape(&mut line, ev.tenant);
        line.push_str(" mode=");
        line.push_str(self.mode.as_str());
        line
    }

    pub fn log(&self, ev: &Event<'_>) {
        let summary = {
            let mut w = self.window.lock();
            if w.start.elapsed().as_secs() >= 1 {
                let s = std::mem::take(&mut w.suppressed);
                w.start = Instant::now();
                w.sent = 0;
                s
            } else {
                0
            }
        };
        if summary > 0 {
            self.send(&format!(
                "<84>toctou-guard-fs[{}]: action=suppressed count={summary} mode={}",
                self.pid,
                self.mode.as_str()
            ));
        }
        {
            let mut w = self.window.lock();
            if w.sent >= self.rate {
                w.suppressed += 1;
                return;
            }
            w.sent += 1;
        }
        self.send(&self.format(ev));
    }

    fn send(&self, line: &str) {
        if let Some(s) = &self.socket {
            let _ = s.send_to(line.as_bytes(), &self.target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let l = DenyLog::new(PathBuf::from("/nonexistent"), 5, Mode::Enforce);
        let s = l.format(&Event {
            audit: false,
            reason: DenyReason::OwnerMismatch,
            path: b"/alice/a b=c",
            owner: Some(1002),
            expected: Some(1001),
            tenant: b"/srv/alice",
        });
        assert!(s.starts_with("<84>toctou-guard-fs["), "{s}");
        assert!(
            s.ends_with(
                "]: action=deny reason=owner-mismatch path=/alice/a\\x20b\\x3dc owner=1002 \
                 expected=1001 tenant=/srv/alice mode=enforce"
            ),
            "{s}"
        );
    }
}
