//! The tenant-owner cache of this process, shared with every worker of the same server.
//!
//! With `cache_shared UID` the table lives in a shared anonymous mapping made by the process
//! that loads the configuration first: a server's master, before it forks its workers, which
//! inherit it. So a tenant's owner looked up by one worker is a hit in all of them, and
//! 100,000 tenants cost one table per server, not one per worker.
//!
//! Trust. The workers sharing a table share a uid, and the table is writable memory in each
//! of them: code a tenant gets to run inside a worker (mod_php, FFI) can write entries that
//! the other workers will believe — a tenant directory "owned" by any uid. What that adds
//! is little: such code already reads every file the worker can, and can ptrace or patch its
//! sibling workers of the same uid. What it must not add is reach across uids, so nothing in
//! the shared pages says who may use them (such code could rewrite that too): the uid is the
//! operator's, from the root-owned configuration, kept in this process's private memory. A
//! process whose euid is another (the root master once it writes, php-fpm pools with their
//! own users, a CGI child that changes user) drops the table for a private, empty one at its
//! `set*uid` or its first write, before it believes an entry: the shared pages are unmapped
//! from it, so it can neither read nor write them. A uid changed by a raw system call,
//! bypassing our `set*uid` hooks, is caught at that process's first cache write (every miss
//! checks `geteuid`); until then it may read entries, never write them.

use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, Ordering};

use toctou_policy::owner_cache::{BUCKET_BYTES, Bucket};
use toctou_policy::{Config, OwnerCache};

use crate::ffi::{self, SharedRegion};

/// Reads and writes the shared table: our euid is the configured one.
const SHARING: u8 = 0;
/// Uses a table of its own (never had a shared one, or dropped it).
const PRIVATE: u8 = 1;
/// Keeps the shared pages mapped for children of the configured uid, uses no entry: a
/// master of another euid (root) before its first write or `set*uid`.
const HOLDING: u8 = 2;
/// The shared pages could not be dropped: this process uses no cache at all.
const DISABLED: u8 = 3;
/// Inherited by `fork` with the pages it describes.
static MODE: AtomicU8 = AtomicU8::new(PRIVATE);
/// The millisecond in which our euid was last found to be the configured one (`u64::MAX`:
/// never).
static CHECKED_AT: AtomicU64 = AtomicU64::new(u64::MAX);

pub struct Owners {
    cache: OwnerCache,
    shared: Option<Shared>,
}

struct Shared {
    region: SharedRegion,
    /// The only euid that may use the region (`cache_shared UID`).
    uid: u32,
}

impl Owners {
    pub fn new(config: &Config, seed: [u64; 2]) -> Owners {
        let private = || Owners {
            cache: OwnerCache::new(config.cache_slots, config.cache_ttl_ms, seed),
            shared: None,
        };
        let Some(uid) = config.cache_shared.filter(|_| config.cache_ttl_ms != 0) else {
            return private();
        };
        let n = OwnerCache::buckets_for(config.cache_slots);
        let made = SharedRegion::new(n * BUCKET_BYTES).and_then(|region| {
            let buckets = region.slice::<Bucket>(0, n)?;
            let cache = OwnerCache::over(buckets, config.cache_ttl_ms, seed)?;
            Some(Owners {
                cache,
                shared: Some(Shared { region, uid }),
            })
        });
        let Some(owners) = made else {
            return private();
        };
        let mine = rustix::process::geteuid().as_raw() == uid;
        MODE.store(if mine { SHARING } else { HOLDING }, Ordering::Relaxed);
        owners
    }

    pub fn key(&self, tenant: &[u8]) -> u64 {
        self.cache.key(tenant)
    }

    #[inline]
    pub fn get(&self, key: u64, now_ms: u64) -> Option<u32> {
        if MODE.load(Ordering::Relaxed) >= HOLDING {
            return None;
        }
        self.cache.get(key, now_ms)
    }

    pub fn put(&self, key: u64, uid: u32, now_ms: u64) {
        if self.usable(Some(now_ms)) {
            self.cache.put(key, uid, now_ms);
        }
    }

    /// May this process use (write) the table? Starts using a held shared table if our euid
    /// is the configured one, and drops it for a private one if not. From `put` (`now_ms`
    /// given) `geteuid` is asked at most once per millisecond: a system call on every miss
    /// cost 5% at 100,000 tenants, and it only backs up the `set*uid` hooks.
    fn usable(&self, now_ms: Option<u64>) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        match MODE.load(Ordering::Relaxed) {
            SHARING | HOLDING => {}
            PRIVATE => return true,
            _ => return false,
        }
        if now_ms.is_some_and(|now| CHECKED_AT.load(Ordering::Relaxed) == now) {
            return true;
        }
        let ok = Self::settle(shared);
        if ok && let Some(now) = now_ms {
            CHECKED_AT.store(now, Ordering::Relaxed);
        }
        ok
    }

    /// Share if our euid is the configured uid, else go private (for good: a later
    /// `set*uid` back finds the private table).
    fn settle(shared: &Shared) -> bool {
        if rustix::process::geteuid().as_raw() == shared.uid {
            MODE.store(SHARING, Ordering::Relaxed);
            return true;
        }
        CHECKED_AT.store(u64::MAX, Ordering::Relaxed);
        if shared.region.make_private() {
            MODE.store(PRIVATE, Ordering::Relaxed);
            true
        } else {
            MODE.store(DISABLED, Ordering::Relaxed);
            false
        }
    }
}

/// After a successful `set*uid`: use the shared table if the new euid is the configured one,
/// or leave it.
fn uid_changed() {
    if let Some(st) = crate::state::loaded() {
        let _ = st.owners.usable(None);
    }
}

/// `errno` of a failed call, kept across our bookkeeping.
fn after(r: libc::c_int) -> libc::c_int {
    if r == 0 {
        let saved = ffi::errno();
        uid_changed();
        ffi::set_errno(saved);
    }
    r
}

pub mod symbols {
    use super::*;
    use ffi::Ids;

    static SETUID: AtomicPtr<libc::c_void> = AtomicPtr::new(core::ptr::null_mut());
    static SETEUID: AtomicPtr<libc::c_void> = AtomicPtr::new(core::ptr::null_mut());
    static SETREUID: AtomicPtr<libc::c_void> = AtomicPtr::new(core::ptr::null_mut());
    static SETRESUID: AtomicPtr<libc::c_void> = AtomicPtr::new(core::ptr::null_mut());

    /// C `setuid`; then the owner cache follows the new uid (see the module).
    #[unsafe(no_mangle)]
    pub extern "C" fn setuid(uid: libc::uid_t) -> libc::c_int {
        after(ffi::real_set_id(c"setuid", &SETUID, Ids::One(uid)))
    }

    /// C `seteuid`.
    #[unsafe(no_mangle)]
    pub extern "C" fn seteuid(euid: libc::uid_t) -> libc::c_int {
        after(ffi::real_set_id(c"seteuid", &SETEUID, Ids::One(euid)))
    }

    /// C `setreuid`.
    #[unsafe(no_mangle)]
    pub extern "C" fn setreuid(ruid: libc::uid_t, euid: libc::uid_t) -> libc::c_int {
        after(ffi::real_set_id(c"setreuid", &SETREUID, Ids::Two(ruid, euid)))
    }

    /// C `setresuid`.
    #[unsafe(no_mangle)]
    pub extern "C" fn setresuid(ruid: libc::uid_t, euid: libc::uid_t, suid: libc::uid_t) -> libc::c_int {
        after(ffi::real_set_id(
            c"setresuid",
            &SETRESUID,
            Ids::Three(ruid, euid, suid),
        ))
    }
}
