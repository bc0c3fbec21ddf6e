//! `toctou-guard-fs SOURCE MOUNTPOINT`: serve SOURCE through a FUSE mount where a file is
//! served only if its owner is its tenant's owner, decided on the object the daemon holds.
#![deny(unsafe_code)]

mod args;
mod attr;
mod config;
mod data;
mod denylog;
mod fs;
mod lookup;
mod mutate;
mod nodes;
mod resolve;
mod stats;
mod syscalls;
mod xattr;

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::{MountOption, SessionACL};
use nix::sys::signal::{SigSet, Signal};
use toctou_policy::Policy;

use crate::args::Options;

fn main() {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            print!("{}", args::USAGE);
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("toctou-guard-fs: {e}\n\n{}", args::USAGE);
            std::process::exit(2);
        }
    };
    match run(opts) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("toctou-guard-fs: {e}");
            std::process::exit(1);
        }
    }
}

fn canonical_bytes(p: &Path) -> Result<Vec<u8>, String> {
    let c = p.canonicalize().map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(c.as_os_str().as_bytes().to_vec())
}

/// A mount point left behind by a dead daemon answers ENOTCONN: detach it first.
fn clear_dead_mount(mountpoint: &Path) {
    if let Err(e) = std::fs::metadata(mountpoint)
        && e.raw_os_error() == Some(libc::ENOTCONN)
    {
        eprintln!(
            "toctou-guard-fs: {}: detaching a dead FUSE mount",
            mountpoint.display()
        );
        let _ = nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn is_fuse_mounted(mountpoint: &[u8]) -> bool {
    std::fs::read("/proc/self/mountinfo").is_ok_and(|m| {
        m.split(|&b| b == b'\n').any(|line| {
            let f: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            f.len() > 4 && f[4] == mountpoint && line.windows(7).any(|w| w == b" - fuse")
        })
    })
}

fn write_stats(stats: &stats::Stats, file: Option<&PathBuf>) {
    static DUMPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = DUMPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let line = format!("dump={n} {}", stats.render());
    eprintln!("toctou-guard-fs: stats {line}");
    if let Some(f) = file {
        let tmp = f.with_extension("tmp");
        let ok = std::fs::File::create(&tmp)
            .and_then(|mut fh| writeln!(fh, "{line}"))
            .and_then(|()| std::fs::rename(&tmp, f));
        if let Err(e) = ok {
            eprintln!("toctou-guard-fs: cannot write {}: {e}", f.display());
        }
    }
}

/// The daemon holds descriptors for the inodes the kernel caches (one per object, shared by
/// its aliases), for open write and passthrough handles; the kernel only forgets inodes
/// under memory pressure. Every second this thread closes write descriptors idle for
/// [`nodes::WRITE_IDLE`] and trims the entries of tenants near their quota; near the fd limit (counted in real descriptors, not nodes) it
/// closes every idle one and asks the kernel to drop some entries (from this thread:
/// never from a request handler, which could deadlock on the directory lock) so it forgets
/// those inodes and their fds are closed. Lookups that still hit the limit fail (closed);
/// nothing is ever served unchecked.
fn spawn_fd_valve(nodes: Arc<nodes::Nodes>, notifier: fuser::Notifier, high: usize, low: usize) {
    let valve_nodes = nodes.clone();
    let valve = std::thread::Builder::new()
        .name("fd-valve".into())
        .spawn(move || {
            loop {
                std::thread::park_timeout(Duration::from_secs(1));
                valve_nodes.close_idle_writers(nodes::WRITE_IDLE);
                for (parent, name) in valve_nodes.tenant_victims() {
                    let parent = fuser::INodeNo(nodes::kernel_ino(parent));
                    let _ = notifier.inval_entry(parent, OsStr::from_bytes(&name));
                }
                let live = nodes::held_fds();
                if live <= high {
                    continue;
                }
                valve_nodes.close_idle_writers(Duration::ZERO);
                let live = nodes::held_fds();
                if live <= high {
                    continue;
                }
                for (parent, name) in valve_nodes.victims(live - low) {
                    let parent = fuser::INodeNo(nodes::kernel_ino(parent));
                    let _ = notifier.inval_entry(parent, OsStr::from_bytes(&name));
                }
            }
        });
    if let Ok(v) = valve {
        nodes.set_valve(v.thread().clone(), high);
    }
}

/// Inode invalidations waiting for the notifier thread.
const INVAL_QUEUE: usize = 4096;

/// Send the kernel the inode invalidations request handlers ask for (a notice sent from a
/// handler could wait on the kernel while the kernel waits on that handler's reply).
fn spawn_invalidator(notifier: fuser::Notifier, rx: std::sync::mpsc::Receiver<u64>) {
    let _ = std::thread::Builder::new()
        .name("invalidator".into())
        .spawn(move || {
            // Ends when the file system (the only sender) is dropped.
            while let Ok(ino) = rx.recv() {
                // Offset 0, length 0: every cached page, and the attributes.
                let _ = notifier.inval_inode(fuser::INodeNo(nodes::kernel_ino(ino)), 0, 0);
            }
        });
}

/// As root the file system is mounted on a private staging directory whose root (the
/// kernel's inode 1) only names SOURCE's root, and MOUNTPOINT becomes a bind mount of that
/// name; the staging mount is then detached. Why: the kernel creates inode 1 before INIT
/// enables POSIX ACLs and never caches its ACL, so every path walk through it by a caller
/// who is not its owner left RCU walk and sent a GETXATTR (one per HTTP request under
/// nginx); a looked-up inode's ACL is cached like any other (see `nodes::BOUND_ROOT`).
/// Without root (no bind mounts) the mount point is the FUSE mount itself, as before.
fn stage_dir() -> Result<PathBuf, String> {
    nix::unistd::mkdtemp(&std::env::temp_dir().join("toctou-guard-fs-stage.XXXXXX"))
        .map_err(|e| format!("staging directory: {e}"))
}

/// Bind `stage/source` (SOURCE's root, through FUSE) at `mountpoint`, then unmount the
/// staging mount through the session's own unmounter (so it never unmounts that path again
/// later) and remove the directory: MOUNTPOINT then holds the file system alone.
fn bind_root(stage: &Path, mountpoint: &Path, staged: &mut fuser::SessionUnmounter) -> Result<(), String> {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    let src = stage.join(OsStr::from_bytes(nodes::STAGE_NAME));
    let bound = mount(
        Some(&src),
        mountpoint,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("bind {} at {}: {e}", src.display(), mountpoint.display()));
    if staged.unmount().is_err() {
        let _ = umount2(stage, MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir(stage);
    bound
}

fn run(opts: Options) -> Result<(), String> {
    let source_abs = canonical_bytes(&opts.source)?;
    let cfg = config::load(&opts, &source_abs)?;
    let trees: Vec<String> = cfg.roots.iter().map(|r| r.pattern.as_str().to_string()).collect();
    clear_dead_mount(&opts.mountpoint);
    let mount_abs = canonical_bytes(&opts.mountpoint)?;

    // --background: the parent waits until the child reports the mount ready.
    let ready_pipe = if opts.background {
        let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        match syscalls::fork_before_threads().map_err(|e| format!("fork: {e}"))? {
            Some(_child) => {
                drop(w);
                let mut byte = [0u8; 1];
                let ok = nix::unistd::read(&r, &mut byte).is_ok_and(|n| n == 1);
                std::process::exit(if ok { 0 } else { 1 });
            }
            None => {
                drop(r);
                let _ = nix::unistd::setsid();
                Some(w)
            }
        }
    } else {
        None
    };

    let nofile = syscalls::raise_nofile_limit();
    // The caller's umask already came with each create: the daemon's own must not apply
    // on top of it (0666 under umask 0 would become 0644).
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let root_fd =
        syscalls::open_source(&opts.source).map_err(|e| format!("{}: {e}", opts.source.display()))?;
    let log = denylog::DenyLog::new(cfg.log_socket.clone(), cfg.log_rate, cfg.mode);
    let stats = Arc::new(stats::Stats::default());
    let mode = cfg.mode;
    let settings = fs::Settings {
        mode: opts.mode,
        rw: opts.rw,
        acl: opts.acl,
        entry_ttl: opts.entry_ttl,
        attr_ttl: opts.attr_ttl,
        source_abs: if source_abs == b"/" {
            Vec::new()
        } else {
            source_abs.clone()
        },
        prefixes: vec![source_abs.clone(), mount_abs.clone()],
    };
    let (inval_tx, inval_rx) = std::sync::mpsc::sync_channel(INVAL_QUEUE);
    let guard = fs::GuardFs::new(Policy::new(cfg), settings, root_fd, log, stats.clone(), inval_tx)?;
    let nodes = guard.nodes();

    let fsname: String = String::from_utf8_lossy(&source_abs)
        .chars()
        .map(|c| if c == ',' || c.is_whitespace() { '_' } else { c })
        .collect();
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(fsname),
        MountOption::Subtype("toctou-guard-fs".into()),
        // The kernel checks mode bits: with no OPEN the daemon never sees the caller's open.
        MountOption::DefaultPermissions,
        MountOption::NoSuid,
        MountOption::NoDev,
        // Reads go to SOURCE with O_NOATIME; no atime bookkeeping on the FUSE inodes either.
        MountOption::NoAtime,
        if opts.rw { MountOption::RW } else { MountOption::RO },
    ];
    // The web server is another user: as root (the mount already checks every caller's
    // permissions with default_permissions), let it in unless told not to.
    config.acl = if opts.allow_other.unwrap_or(syscalls::euid() == 0) {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(opts.threads);
    config.clone_fd = opts.threads > 1;

    // Signals are taken synchronously by this thread; every other thread blocks them.
    let mut sigs = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        sigs.add(s);
    }
    sigs.thread_block().map_err(|e| format!("sigprocmask: {e}"))?;

    let stage = if syscalls::euid() == 0 {
        nodes::set_root_bound();
        Some(stage_dir()?)
    } else {
        None
    };
    let fuse_at = stage.as_deref().unwrap_or(&opts.mountpoint);
    let session = fuser::Session::new(guard, fuse_at, &config)
        .map_err(|e| format!("mount {}: {e}", opts.mountpoint.display()));
    if session.is_err()
        && let Some(stage) = &stage
    {
        let _ = std::fs::remove_dir(stage);
    }
    let mut session = session?;
    let mut unmounter = session.unmount_callable();
    let limit = usize::try_from(nofile).unwrap_or(usize::MAX).max(64);
    let (high, low) = (limit / 10 * 7, limit / 10 * 5);
    // Half the descriptors by default: one tenant (pinning names with O_PATH descriptors
    // the kernel cannot make it drop) can never starve the others of the rest.
    let quota = opts.tenant_quota.unwrap_or(limit / 2);
    nodes.set_quota(quota);
    spawn_fd_valve(nodes, session.notifier(), high, low);
    spawn_invalidator(session.notifier(), inval_rx);
    let main_pid = nix::unistd::getpid();
    let runner = std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || {
            let r = session.run();
            // Wake the main thread: the session ended (unmounted from outside, or error).
            let _ = nix::sys::signal::kill(main_pid, Signal::SIGUSR2);
            r
        })
        .map_err(|e| format!("spawn: {e}"))?;
    // The bind mount's lookup of the staging name is answered by the session just started.
    if let Some(stage) = &stage {
        bind_root(stage, &opts.mountpoint, &mut unmounter)?;
    }

    eprintln!(
        "toctou-guard-fs: serving {} at {} ({} mode, {}, trees {}, policy {}, {} threads, fd limit {}, tenant quota {} nodes)",
        opts.source.display(),
        opts.mountpoint.display(),
        opts.mode.as_str(),
        if opts.rw { "rw" } else { "ro" },
        trees.join(" "),
        mode.as_str(),
        opts.threads,
        nofile,
        quota
    );
    if let Some(w) = ready_pipe {
        let ok = is_fuse_mounted(&mount_abs);
        let _ = nix::unistd::write(&w, if ok { b"1" } else { b"" });
    }

    let session_ended = loop {
        match sigs.wait() {
            Ok(Signal::SIGUSR1) => write_stats(&stats, opts.stats.as_ref()),
            Ok(Signal::SIGUSR2) => break true,
            Ok(Signal::SIGHUP) => {}
            Ok(_) => break false,
            Err(e) => return Err(format!("sigwait: {e}")),
        }
    };
    if opts.stats.is_some() {
        write_stats(&stats, opts.stats.as_ref());
    }
    if !session_ended {
        // Clean unmount; if busy (a process still has its cwd there), detach it: the
        // mount then disappears for everyone, and dies with us.
        let unmounted = if stage.is_some() {
            nix::mount::umount2(&opts.mountpoint, nix::mount::MntFlags::empty()).map_err(std::io::Error::from)
        } else {
            unmounter.unmount()
        };
        if let Err(e) = unmounted {
            eprintln!("toctou-guard-fs: unmount: {e}; detaching");
            let _ = nix::mount::umount2(&opts.mountpoint, nix::mount::MntFlags::MNT_DETACH);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while !runner.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !runner.is_finished() {
            // Still referenced after a detach: exiting closes /dev/fuse, which fails
            // every remaining user with ENOTCONN (never the raw files).
            return Ok(());
        }
    }
    match runner.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("session: {e}")),
        Err(_) => Err("session thread panicked".into()),
    }
}
