//! Denial lines to syslog (`authpriv`), one datagram each, rate-limited per process.
//!
//! No `openlog`/`syslog(3)`: they lock and allocate. A fresh datagram socket per line costs
//! three system calls, only on a denial, and cannot ever write into a descriptor the server
//! reused after closing ours.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
use toctou_policy::DenyReason;

use crate::ffi;
use crate::fmtbuf::FmtBuf;

/// `authpriv` (10) × 8 + `warning` (4).
const PRI_AUTHPRIV_WARNING: u32 = 84;
/// `authpriv` × 8 + `err` (3), for configuration errors.
const PRI_AUTHPRIV_ERR: u32 = 83;

pub struct Logger {
    addr: Option<SocketAddrUnix>,
    per_second: u64,
    /// `second << 32 | lines logged in that second`.
    window: AtomicU64,
    suppressed: AtomicU64,
}

/// One refused (or, in audit mode, would-be refused) open.
pub struct Event<'a> {
    pub action: &'static str,
    pub reason: DenyReason,
    pub path: &'a [u8],
    pub owner: Option<u32>,
    pub expected: Option<u32>,
    pub tenant: &'a [u8],
    pub mode: &'static str,
}

impl Logger {
    pub fn new(socket: &std::path::Path, per_second: u32) -> Self {
        Logger {
            addr: SocketAddrUnix::new(socket).ok(),
            per_second: u64::from(per_second),
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Log `ev` unless this second's budget is spent (then it is counted, and the count is
    /// reported on the next line that gets through).
    pub fn event(&self, ev: &Event<'_>) {
        if !self.admit() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut line = FmtBuf::<1024>::new();
        let _ = write!(
            line,
            "<{PRI_AUTHPRIV_WARNING}>toctou-guard[{}]: action={} reason={} comm=",
            pid(),
            ev.action,
            ev.reason.as_str()
        );
        let mut comm = [0u8; 16];
        line.push_escaped(ffi::thread_name(&mut comm));
        line.push_bytes(b" path=");
        line.push_escaped(ev.path);
        let _ = write!(
            line,
            " owner={} expected={} tenant=",
            Opt(ev.owner),
            Opt(ev.expected)
        );
        line.push_escaped(ev.tenant);
        let _ = write!(line, " mode={}", ev.mode);
        let dropped = self.suppressed.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = write!(line, " suppressed={dropped}");
        }
        self.send(line.as_bytes());
    }

    /// A configuration problem, not rate-limited (once per process start).
    pub fn config_error(&self, message: &str) {
        let mut line = FmtBuf::<1024>::new();
        let _ = write!(
            line,
            "<{PRI_AUTHPRIV_ERR}>toctou-guard[{}]: action=config-error ",
            pid()
        );
        line.push_bytes(message.as_bytes());
        self.send(line.as_bytes());
    }

    fn admit(&self) -> bool {
        let now = crate::state::now_ms() / 1000;
        let mut cur = self.window.load(Ordering::Relaxed);
        loop {
            let (sec, count) = (cur >> 32, cur & 0xffff_ffff);
            let next = if sec == now & 0xffff_ffff {
                if count >= self.per_second {
                    return false;
                }
                cur + 1
            } else {
                ((now & 0xffff_ffff) << 32) | 1
            };
            match self
                .window
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    fn send(&self, line: &[u8]) {
        let Some(addr) = &self.addr else { return };
        // No syslog daemon, or a full queue: the denial itself already happened; drop the line.
        if let Ok(sock) = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        ) {
            let _ = rustix::net::sendto(&sock, line, SendFlags::NOSIGNAL, addr);
        }
    }
}

fn pid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

struct Opt(Option<u32>);

impl core::fmt::Display for Opt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("-"),
        }
    }
}
