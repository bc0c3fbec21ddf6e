//! The configuration, loaded once per process, and what happens when it cannot be.
//!
//! Loading uses raw system calls only (rustix), so reading the config never re-enters our
//! own `open` hook. It runs from the library constructor, or from the first hooked call if
//! another library's constructor opens a file before ours ran.

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use toctou_policy::config::program_matches;
use toctou_policy::trust::{self, Meta};
use toctou_policy::{Config, DEFAULT_CONFIG_PATH, OwnerCache, Policy};

use crate::ffi;
use crate::syslog::Logger;

pub struct State {
    pub policy: Policy,
    pub owners: OwnerCache,
    pub log: Logger,
}

static STATE: OnceLock<State> = OnceLock::new();

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
static PHASE: AtomicU8 = AtomicU8::new(UNINIT);
/// `pid << 32 | tid` of the thread loading the configuration.
static LOADER: AtomicU64 = AtomicU64::new(0);

/// Programs refused a start on a broken configuration even when loaded through
/// `/etc/ld.so.preload` without `TOCTOU_GUARD_CONFIG`: the servers the guard exists for.
const SERVER_PROGRAMS: &[&str] = &["apache2", "httpd", "nginx", "php-fpm*", "lsphp*", "php-cgi*"];

/// What a hook should do.
pub enum Phase {
    /// Apply the rule with this configuration.
    Guard(&'static State),
    /// Open untouched: not configured for this process, or our own loader re-entering.
    Passthrough,
}

/// The state for the current call; loads it on first use.
#[inline]
pub fn current() -> Phase {
    match STATE.get() {
        Some(s) => Phase::Guard(s),
        None if PHASE.load(Ordering::Acquire) == DONE => Phase::Passthrough,
        None => slow_path(),
    }
}

#[cold]
fn slow_path() -> Phase {
    let me = whoami();
    // Bounded: a load takes microseconds; a loader that vanished (forked away from) is
    // replaced, and past the bound we fail closed (deny) rather than spin for ever.
    for _ in 0..1_000_000 {
        match PHASE.compare_exchange(UNINIT, RUNNING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                LOADER.store(me, Ordering::Release);
                load();
                PHASE.store(DONE, Ordering::Release);
                return phase_after_load();
            }
            Err(DONE) => return phase_after_load(),
            Err(_) => {
                let loader = LOADER.load(Ordering::Acquire);
                if loader == me {
                    return Phase::Passthrough; // our own loader's allocator or libc opening
                }
                if loader >> 32 != me >> 32 && loader != 0 {
                    // Forked while another thread of the parent was loading: start over here.
                    let _ = LOADER.compare_exchange(loader, 0, Ordering::AcqRel, Ordering::Acquire);
                    let _ = PHASE.compare_exchange(RUNNING, UNINIT, Ordering::AcqRel, Ordering::Acquire);
                }
                std::thread::yield_now();
            }
        }
    }
    ffi::refuse_to_start(b"toctou-guard: configuration load did not finish; refusing to continue\n")
}

fn phase_after_load() -> Phase {
    STATE.get().map_or(Phase::Passthrough, Phase::Guard)
}

fn whoami() -> u64 {
    let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    (u64::from(pid) << 32) | u64::from(tid)
}

/// Coarse monotonic milliseconds (vDSO, no system call on x86_64).
pub fn now_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (t.tv_sec as u64)
        .wrapping_mul(1000)
        .wrapping_add(t.tv_nsec as u64 / 1_000_000)
}

/// Load the configuration, or decide what its absence means for this process.
fn load() {
    // `toctou_policy::CONFIG_ENV`, read without allocating.
    let explicit_path = ffi::getenv(c"TOCTOU_GUARD_CONFIG").filter(|p| !p.is_empty());
    let preload_names_us =
        ffi::getenv(c"LD_PRELOAD").is_some_and(|v| v.windows(13).any(|w| w == b"toctou_guard."));
    let explicit = explicit_path.is_some() || preload_names_us;
    let path = Path::new(
        std::str::from_utf8(explicit_path.unwrap_or(DEFAULT_CONFIG_PATH.as_bytes()))
            .unwrap_or(DEFAULT_CONFIG_PATH),
    );

    let mut exe = [0u8; 256];
    let program = program_name(&mut exe);

    let config = match read_config(path) {
        Ok(c) => c,
        Err(LoadError::Missing) if !explicit => return, // installed, not configured: inert
        Err(e) => {
            let msg = match e {
                LoadError::Missing => format!("{}: cannot read: no such file", path.display()),
                LoadError::Other(m) => m,
            };
            let server = SERVER_PROGRAMS.iter().any(|p| program_matches(p, program));
            let log = Logger::new(Path::new(toctou_policy::config::DEFAULT_LOG_SOCKET), 1);
            if explicit || server {
                log.config_error(&format!("{msg}; refusing to start"));
                ffi::refuse_to_start(format!("toctou-guard: {msg}; refusing to start\n").as_bytes());
            }
            log.config_error(&format!("{msg}; this process is not guarded"));
            return;
        }
    };
    if !config.guards_program(program) {
        return;
    }
    quiet_panics(&config.log_socket);
    let state = State {
        owners: OwnerCache::new(config.cache_slots, config.cache_ttl_ms),
        log: Logger::new(&config.log_socket, config.log_rate),
        policy: Policy::new(config),
    };
    let _ = STATE.set(state);
}

enum LoadError {
    Missing,
    Other(String),
}

/// Read and validate the configuration file with raw system calls.
fn read_config(path: &Path) -> Result<Config, LoadError> {
    let euid = rustix::process::geteuid().as_raw();
    let lstat = |p: &Path| {
        rustix::fs::statat(CWD, p, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| Meta {
                uid: st.st_uid,
                mode: st.st_mode,
            })
    };
    let fd = match rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Err(LoadError::Missing),
        Err(e) => return Err(LoadError::Other(format!("{}: cannot read: {e}", path.display()))),
    };
    trust::check_path(path, euid, lstat).map_err(|e| LoadError::Other(e.to_string()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| LoadError::Other(format!("{}: {e}", path.display())))?;
    trust::check_component(
        path,
        path,
        Meta {
            uid: st.st_uid,
            mode: st.st_mode,
        },
        euid,
        true,
    )
    .map_err(|e| LoadError::Other(e.to_string()))?;
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match rustix::io::read(&fd, &mut chunk) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&chunk[..n]),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(LoadError::Other(format!("{}: cannot read: {e}", path.display()))),
        }
        if text.len() > 1 << 20 {
            return Err(LoadError::Other(format!("{}: larger than 1 MiB", path.display())));
        }
    }
    let text = String::from_utf8(text)
        .map_err(|_| LoadError::Other(format!("{}: not UTF-8 text", path.display())))?;
    Config::parse(&text, path).map_err(|e| LoadError::Other(e.to_string()))
}

/// Our own panics (this library has its own copy of std, so its own hook) go to syslog,
/// never to fd 2, which is the server's error log. `panic = "abort"` then kills the worker:
/// a bug in the guard must never let an open through unguarded.
fn quiet_panics(socket: &Path) {
    let log = Logger::new(socket, 1);
    std::panic::set_hook(Box::new(move |info| {
        let mut line = crate::fmtbuf::FmtBuf::<512>::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!("internal error, aborting: {info}"));
        log.config_error(std::str::from_utf8(line.as_bytes()).unwrap_or("internal error, aborting"));
    }));
}

/// Basename of `/proc/self/exe`, for the `programs` directive.
fn program_name(buf: &mut [u8; 256]) -> &[u8] {
    let n = rustix::fs::readlinkat_raw(CWD, c"/proc/self/exe", &mut buf[..])
        .unwrap_or(0)
        .min(buf.len());
    let full = &buf[..n];
    full.rsplit(|&b| b == b'/').next().unwrap_or(full)
}

/// Library constructor: load before `main` so a broken configuration stops the server at
/// start, not at its first request.
extern "C" fn constructor() {
    let _ = current();
}

#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;
