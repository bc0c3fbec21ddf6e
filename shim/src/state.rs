//! The configuration, loaded once per process, and what happens when it cannot be.
//!
//! Loading uses raw system calls only (rustix), so reading the config never re-enters our
//! own `open` hook. It runs from the library constructor, or from the first hooked call if
//! another library's constructor opens a file before ours ran.

use core::ffi::CStr;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;
use toctou_policy::config::{SERVER_PROGRAMS, program_matches};
use toctou_policy::image::Bytes;
use toctou_policy::load::{self, ConfigIo, LoadError, OpenFailure, Opened, ReadFailure};
use toctou_policy::{DEFAULT_CONFIG_PATH, Meta, PATH_MAX, Policy};

use crate::ffi;
use crate::owners::Owners;
use crate::syslog::Logger;

pub struct State {
    pub policy: Policy,
    pub owners: Owners,
    pub log: Logger,
}

static STATE: OnceLock<State> = OnceLock::new();

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
static PHASE: AtomicU8 = AtomicU8::new(UNINIT);
/// `pid << 32 | tid` of the thread loading the configuration.
static LOADER: AtomicU64 = AtomicU64::new(0);

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

/// The state if it is loaded, never loading it.
pub fn loaded() -> Option<&'static State> {
    STATE.get()
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
    let env = Env::read();
    let path = Path::new(OsStr::from_bytes(
        env.config.unwrap_or(DEFAULT_CONFIG_PATH.as_bytes()),
    ));
    let mut exe = [0u8; PATH_MAX];
    let program = program_name(&mut exe);
    let server = program.is_some_and(|p| SERVER_PROGRAMS.iter().any(|s| program_matches(s, p)));

    let euid = rustix::process::geteuid().as_raw();
    // A server always parses the whole file (its errors must stop it); any other program
    // the `programs` lines leave out does not parse it at all.
    let prescan = if server { None } else { program };
    // A fresh compiled form (CONFIG.tgc) is mapped, not parsed: see `load::load_policy_for`.
    let loaded = match load::load_policy_for(&mut RawIo::default(), path, euid, prescan) {
        Ok(Some(l)) => l,
        Ok(None) => return,
        // Installed, not configured, not a server, not asked for: inert.
        Err(LoadError::Missing(_)) if !env.explicit && !server => return,
        Err(e) => {
            let msg = e.error().to_string();
            let log = Logger::new(Path::new(toctou_policy::config::DEFAULT_LOG_SOCKET), 1);
            if env.explicit || server {
                log.config_error(&format!("{msg}; refusing to start"));
                ffi::refuse_to_start(format!("toctou-guard: {msg}; refusing to start\n").as_bytes());
            }
            log.config_error(&format!("{msg}; this process is not guarded"));
            return;
        }
    };
    let config = loaded.policy.config();
    // A name that cannot be read is guarded (fail closed).
    if program.is_some_and(|p| !config.guards_program(p)) {
        return;
    }
    quiet_panics(&config.log_socket);
    announce(config.mode.as_str(), path.as_os_str().as_bytes());
    let state = State {
        owners: Owners::new(config, ffi::seed(b"toctou-guard owner cache")),
        log: Logger::new(&config.log_socket, config.log_rate),
        policy: loaded.policy,
    };
    if let Some(note) = loaded.compiled.note(path) {
        state.log.config_error(&note);
    }
    // Before STATE: a hook that sees the state guarded finds what children need.
    crate::exec::prepare(env.preloaded, env.config);
    let _ = STATE.set(state);
}

/// `toctou-guard:mode=MODE:config=PATH` as a memfd mapping's name (at most 249 bytes, the
/// kernel's limit: a longer path is cut), on the stack: loading must not allocate.
fn announce(mode: &str, path: &[u8]) {
    let mut buf = [0u8; 250];
    let mut n = 0;
    for part in [
        b"toctou-guard:mode=".as_slice(),
        mode.as_bytes(),
        b":config=",
        path,
    ] {
        let take = part.len().min(buf.len() - 1 - n);
        buf[n..n + take].copy_from_slice(&part[..take]);
        n += take;
    }
    if let Ok(name) = CStr::from_bytes_with_nul(&buf[..=n]) {
        ffi::announce(name);
    }
}

/// What the environment asks of us. In secure-execution mode (setuid, setgid, file
/// capabilities: `AT_SECURE`) it asks nothing, exactly as ld.so ignores `LD_*` there: the
/// caller of a privileged program must not choose what it reads or prints.
struct Env {
    /// `TOCTOU_GUARD_CONFIG`, as raw bytes (a path need not be UTF-8).
    config: Option<&'static [u8]>,
    /// Guarding was asked for explicitly: a configuration was named, or `LD_PRELOAD`
    /// names this very library (however it was renamed).
    explicit: bool,
    /// `LD_PRELOAD` names this library (children need it kept).
    preloaded: bool,
}

impl Env {
    fn read() -> Env {
        if ffi::secure_execution() {
            return Env {
                config: None,
                explicit: false,
                preloaded: false,
            };
        }
        // `toctou_policy::CONFIG_ENV`, read without allocating.
        let config = ffi::getenv(c"TOCTOU_GUARD_CONFIG").filter(|p| !p.is_empty());
        let preloaded = ffi::getenv(c"LD_PRELOAD").is_some_and(preload_names_us);
        Env {
            explicit: config.is_some() || preloaded,
            config,
            preloaded,
        }
    }
}

/// Does an `LD_PRELOAD` value (entries separated by spaces or colons) name this library?
/// Compared by the object itself (device and inode), not by its file name.
fn preload_names_us(list: &[u8]) -> bool {
    let Some(ours) = ffi::own_library_path().and_then(stat_id) else {
        return false;
    };
    list.split(|&b| b == b' ' || b == b':')
        .filter(|e| !e.is_empty())
        .any(|entry| {
            let mut buf = [0u8; PATH_MAX];
            let Some(c) = nul_terminated(entry, &mut buf) else {
                return false;
            };
            // A bare name is found by ld.so in its search path: compare our own basename.
            if !entry.contains(&b'/') {
                return ffi::own_library_path()
                    .is_some_and(|p| p.to_bytes().rsplit(|&b| b == b'/').next() == Some(entry));
            }
            stat_id(c) == Some(ours)
        })
}

fn stat_id(path: &CStr) -> Option<(u64, u64)> {
    rustix::fs::stat(path).ok().map(|st| (st.st_dev, st.st_ino))
}

fn nul_terminated<'a>(bytes: &[u8], buf: &'a mut [u8]) -> Option<&'a CStr> {
    let dst = buf.get_mut(..=bytes.len())?;
    dst[..bytes.len()].copy_from_slice(bytes);
    dst[bytes.len()] = 0;
    CStr::from_bytes_with_nul(dst).ok()
}

/// The loader's system calls, raw (rustix): reading the configuration never re-enters our
/// own `open` hook.
#[derive(Default)]
struct RawIo {
    fd: Option<OwnedFd>,
}

impl ConfigIo for RawIo {
    fn open(&mut self, path: &Path) -> Result<Opened, OpenFailure> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fail = |e: Errno| OpenFailure::from_errno(e.raw_os_error(), e.to_string());
        let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(fail)?;
        let st = rustix::fs::fstat(&fd).map_err(fail)?;
        self.fd = Some(fd);
        let ns = |s: i64, n: u64| s.wrapping_mul(1_000_000_000).wrapping_add(n as i64);
        Ok(Opened::new(st.st_uid, st.st_mode, st.st_size as u64).with_stamp(
            st.st_dev,
            st.st_ino,
            ns(st.st_mtime, st.st_mtime_nsec as u64),
            ns(st.st_ctime, st.st_ctime_nsec as u64),
        ))
    }

    fn image(&mut self, size: u64) -> Result<std::sync::Arc<dyn Bytes>, String> {
        let fd = self.fd.as_ref().ok_or("not open")?;
        let len = usize::try_from(size).map_err(|_| "too large")?;
        let map = ffi::MappedFile::map(fd, len).map_err(|e| e.to_string())?;
        Ok(std::sync::Arc::new(map))
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadFailure> {
        let fd = self.fd.as_ref().ok_or(ReadFailure::Other("not open".into()))?;
        rustix::io::read(fd, buf).map_err(|e| match e {
            Errno::INTR => ReadFailure::Interrupted,
            e => ReadFailure::Other(e.to_string()),
        })
    }

    fn lstat(&mut self, path: &Path) -> Option<Meta> {
        let st = rustix::fs::statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        Some(Meta::new(st.st_uid, st.st_mode))
    }
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

/// Basename of `/proc/self/exe`, for the `programs` directive; `None` if it cannot be read
/// whole. A deleted binary (upgraded under a running server) reads as `NAME (deleted)`.
fn program_name(buf: &mut [u8; PATH_MAX]) -> Option<&[u8]> {
    let n = rustix::fs::readlinkat_raw(CWD, c"/proc/self/exe", &mut buf[..]).ok()?;
    if n == 0 || n >= buf.len() {
        return None; // possibly cut: a prefix of the name must not pass for the name
    }
    let full = &buf[..n];
    let full = full.strip_suffix(b" (deleted)").unwrap_or(full);
    full.rsplit(|&b| b == b'/').next()
}

/// Library constructor: load before `main` so a broken configuration stops the server at
/// start, not at its first request.
extern "C" fn constructor() {
    let _ = current();
    crate::exec::resolve();
    crate::mutate::resolve();
    // SAFETY: registers a plain `extern "C"` function with no arguments, as the child
    // handler; it only touches atomics in static memory (async-signal-safe).
    unsafe { libc::pthread_atfork(None, None, Some(crate::dirs::after_fork_in_child)) };
    crate::cwd::owned_by_this_process();
    // SAFETY: as above; this handler too touches only atomics and makes one getpid.
    unsafe { libc::pthread_atfork(None, None, Some(crate::cwd::owned_by_this_process)) };
}

#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;
