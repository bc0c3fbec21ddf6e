//! Denial lines to syslog (`authpriv`), one datagram each, rate-limited per process. The
//! line itself is `toctou_policy::logline`'s, shared with the FUSE daemon.
//!
//! No `openlog`/`syslog(3)`: they lock and allocate. A fresh datagram socket per line costs
//! three system calls, only on a denial, and cannot ever write into a descriptor the server
//! reused after closing ours.

use core::fmt::Write;

use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
use toctou_policy::logline::{self, Denial, PRI_CONFIG_ERROR, PRI_DENIAL, RateLimit};

use crate::ffi;
use crate::fmtbuf::FmtBuf;

/// One log line.
type Line = FmtBuf<1024>;

/// The syslog tag of the shim's lines (the FUSE daemon's is `toctou-guard-fs`).
const TAG: &str = "toctou-guard";

pub struct Logger {
    addr: Option<SocketAddrUnix>,
    rate: RateLimit,
}

impl Logger {
    pub fn new(socket: &std::path::Path, per_second: u32) -> Self {
        Logger {
            addr: SocketAddrUnix::new(socket).ok(),
            rate: RateLimit::new(per_second),
        }
    }

    /// Log `denial` unless this second's budget is spent (then it is counted, and the count
    /// is reported on the next line that gets through). `comm` and `suppressed` are ours.
    pub fn event(&self, denial: Denial<'_>) {
        let Some(suppressed) = self.rate.admit(crate::state::now_ms() / 1000) else {
            return;
        };
        let mut comm = [0u8; 16];
        let denial = Denial {
            suppressed,
            comm: ffi::thread_name(&mut comm),
            ..denial
        };
        if ffi::on_alternate_signal_stack() {
            // A signal handler's stack can be 8 KiB with the kernel's signal frame on it, and
            // the open that is refused sits deep in it: the line goes in a mapping instead.
            if let Some(mut map) = ffi::Mapped::zeroed(core::mem::size_of::<Line>())
                && let Some(line) = map.as_mut::<Line>()
            {
                self.send_denial(line, &denial);
            }
            return;
        }
        self.denial_on_stack(&denial);
    }

    /// Its own frame: the line's buffer is only on the stack of this call.
    #[inline(never)]
    fn denial_on_stack(&self, denial: &Denial<'_>) {
        let mut line = Line::new();
        self.send_denial(&mut line, denial);
    }

    fn send_denial(&self, line: &mut Line, denial: &Denial<'_>) {
        let _ = logline::write_header(line, PRI_DENIAL, TAG, pid());
        let _ = logline::write_denial(line, denial);
        self.send(line.as_bytes());
    }

    /// A configuration problem, not rate-limited (once per process start).
    pub fn config_error(&self, message: &str) {
        let mut line = FmtBuf::<1024>::new();
        let _ = logline::write_header(&mut line, PRI_CONFIG_ERROR, TAG, pid());
        let _ = write!(line, "action=config-error ");
        line.push_bytes(message.as_bytes());
        self.send(line.as_bytes());
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

fn pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}
