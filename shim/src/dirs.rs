//! Directories entered under a root, remembered by `(dev, ino)` with the expected owner of
//! the tenant they were entered under (item 3 of "The shim against a real adversary").
//!
//! A relative open is classified by the path of its base directory *now*: a tenant that
//! moves a directory the server holds (`public_html/mv` → `private/mv`, outside every root)
//! would shed the rule for every `openat(fd, ...)` from it, and the same for a working
//! directory. So a directory opened or entered under a root keeps that root's tenant: a
//! relative open from it is judged by the owner remembered here, wherever it is now.
//!
//! A fixed table of seqlocked slots in static memory: no allocation, no lock, safe after
//! `fork()`. A slot is found by a keyed hash (the key from `AT_RANDOM`), so a tenant cannot
//! aim at one; a full table forgets the oldest entry in a slot. What that costs: a directory
//! whose entry was overwritten by 4096 other directories' (the server entered that many
//! between opening it and using it) falls back to being judged by its path.

use core::ffi::{CStr, c_char, c_int};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use rustix::fs::{AtFlags, CWD};
use rustix::io::Errno;

use crate::ffi;
use crate::guard::{self, Check, Dir, PathCall};

const SLOTS: usize = 4096;

struct Slot {
    /// Even: stable; odd: being written.
    seq: AtomicU32,
    dev: AtomicU64,
    ino: AtomicU64,
    /// The expected owner, plus one (0: empty).
    uid_plus_one: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)] // the array initialiser, each slot its own
const EMPTY: Slot = Slot {
    seq: AtomicU32::new(0),
    dev: AtomicU64::new(0),
    ino: AtomicU64::new(0),
    uid_plus_one: AtomicU64::new(0),
};
static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];
/// Set once anything was remembered: until then a relative open costs nothing extra.
static ANY: AtomicBool = AtomicBool::new(false);

fn slot(dev: u64, ino: u64) -> &'static Slot {
    let [k0, k1] = key();
    let mut h =
        (dev ^ k0).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (ino ^ k1).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    h ^= h >> 31;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 29;
    &TABLE[(h as usize) % SLOTS]
}

/// The hash key, derived from the kernel's `AT_RANDOM` bytes once (no system call).
fn key() -> [u64; 2] {
    static K0: AtomicU64 = AtomicU64::new(0);
    static K1: AtomicU64 = AtomicU64::new(0);
    static READ: AtomicBool = AtomicBool::new(false);
    if !READ.load(Ordering::Acquire) {
        let [a, b] = ffi::seed(b"toctou-guard dirs");
        K0.store(a, Ordering::Relaxed);
        K1.store(b, Ordering::Relaxed);
        READ.store(true, Ordering::Release);
    }
    [K0.load(Ordering::Relaxed), K1.load(Ordering::Relaxed)]
}

/// Remember that the directory `(dev, ino)` was entered under a root whose tenant's files
/// belong to `uid`. A slot another thread is writing this instant is left to it.
pub fn remember(dev: u64, ino: u64, uid: u32) {
    // Servers open the same directories again and again: write only what is new, so that
    // readers of a busy directory rarely meet a write in progress.
    if lookup(dev, ino) == Lookup::Owner(uid) {
        return;
    }
    let s = slot(dev, ino);
    let seq = s.seq.load(Ordering::Relaxed);
    if seq % 2 == 1
        || s.seq
            .compare_exchange(seq, seq.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    // The data stores may not be seen before the odd sequence number.
    core::sync::atomic::fence(Ordering::Release);
    s.dev.store(dev, Ordering::Relaxed);
    s.ino.store(ino, Ordering::Relaxed);
    s.uid_plus_one.store(u64::from(uid) + 1, Ordering::Relaxed);
    s.seq.store(seq.wrapping_add(2), Ordering::Release);
    ANY.store(true, Ordering::Relaxed);
}

/// What the table says of one directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Owner(u32),
    Absent,
    /// Its slot was being written every time we looked: we cannot tell.
    Busy,
}

/// In the child of a `fork()`: a slot another thread was writing at the fork stays odd
/// for ever (that thread does not exist here). Empty it, so that it reads as absent rather
/// than busy. Registered with `pthread_atfork` from the library's constructor.
pub extern "C" fn after_fork_in_child() {
    for s in &TABLE {
        let seq = s.seq.load(Ordering::Relaxed);
        if seq % 2 == 1 {
            s.uid_plus_one.store(0, Ordering::Relaxed);
            s.seq.store(seq.wrapping_add(1), Ordering::Release);
        }
    }
}

/// The owner remembered for `(dev, ino)`. A write is three stores, so a reader that meets
/// one retries (bounded); one that never gets a stable read says so rather than guess.
fn lookup(dev: u64, ino: u64) -> Lookup {
    let s = slot(dev, ino);
    for _ in 0..256 {
        let before = s.seq.load(Ordering::Acquire);
        if before % 2 == 1 {
            core::hint::spin_loop();
            continue;
        }
        let (d, i, u) = (
            s.dev.load(Ordering::Relaxed),
            s.ino.load(Ordering::Relaxed),
            s.uid_plus_one.load(Ordering::Relaxed),
        );
        core::sync::atomic::fence(Ordering::Acquire);
        if s.seq.load(Ordering::Relaxed) == before {
            return if d == dev && i == ino && u != 0 {
                Lookup::Owner((u - 1) as u32)
            } else {
                Lookup::Absent
            };
        }
    }
    Lookup::Busy
}

/// The owner remembered for the directory a relative path starts from (`Absent` when
/// nothing was ever remembered, or it cannot be `stat`ed: then its path decides, as before).
pub fn owner_of(dir: Dir) -> Lookup {
    if !ANY.load(Ordering::Relaxed) {
        return Lookup::Absent;
    }
    let st = match dir {
        Dir::Cwd => match crate::cwd::ids() {
            Some((dev, ino)) => return lookup(dev, ino),
            None => rustix::fs::statat(CWD, c".", AtFlags::empty()),
        },
        Dir::Fd(_) => dir.borrowed(|d| rustix::fs::fstat(d)),
    };
    match st {
        Ok(st) => lookup(st.st_dev, st.st_ino),
        Err(_) => Lookup::Absent,
    }
}

/// `chdir(path)` as the kernel does it; a working directory entered under a root is then
/// remembered with that root's tenant. (Entering is not refused: only what is opened from
/// it is judged, as before.)
struct Chdir<'a> {
    path: &'a CStr,
}

impl PathCall for Chdir<'_> {
    type Out = ();

    fn dir(&self) -> Dir {
        Dir::Cwd
    }

    fn path(&self) -> &CStr {
        self.path
    }

    fn raw(&self) -> Result<(), Errno> {
        rustix::process::chdir(self.path)
    }

    fn judged(&self, check: &Check<'_>) -> Result<(), Errno> {
        rustix::process::chdir(self.path)?;
        // Only a directory the rule accepts is remembered: a tenant's symlink into another
        // tenant's tree must not label that tree with the first tenant's owner.
        if let Ok(st) = rustix::fs::statat(CWD, c".", AtFlags::empty())
            && check.accepts(st.st_uid)
        {
            remember(st.st_dev, st.st_ino, check.expected());
        }
        Ok(())
    }
}

pub mod symbols {
    use super::*;

    /// # Safety
    /// C `chdir`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn chdir(path: *const c_char) -> c_int {
        // SAFETY: the C caller passes NULL or a NUL-terminated path.
        let Some(path) = (unsafe { ffi::cstr(path) }) else {
            ffi::set_errno(libc::EFAULT);
            return -1;
        };
        match crate::cwd::moving(|| guard::run(&Chdir { path })) {
            Ok(()) => 0,
            Err(e) => {
                ffi::set_errno(e.raw_os_error());
                -1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_tells_apart() {
        remember(1, 2, 42001);
        assert_eq!(lookup(1, 2), Lookup::Owner(42001));
        assert_eq!(lookup(1, 3), Lookup::Absent);
        remember(1, 2, 42002);
        assert_eq!(lookup(1, 2), Lookup::Owner(42002));
        remember(7, 8, 0);
        assert_eq!(lookup(7, 8), Lookup::Owner(0));
    }
}
