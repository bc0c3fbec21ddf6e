//! The tenant-owner cache of this process, shared with every worker of the same server.
//!
//! With `cache_shared on` (the default) the table lives in a shared anonymous mapping made
//! by the process that loads the configuration first: a server's master, before it forks
//! its workers, which inherit it. So a tenant's owner looked up by one worker is a hit in all
//! of them, and 100,000 tenants cost one table per server, not one per worker.
//!
//! Trust. The workers sharing a table share a uid, and the table is writable memory in each
//! of them: code a tenant gets to run inside a worker (mod_php, FFI) can write entries that
//! the other workers will believe — a tenant directory "owned" by any uid. What that adds
//! is little: such code already reads every file the worker can, and can ptrace or patch its
//! sibling workers of the same uid. What it must not add is reach across uids, so the table
//! is claimed by the first uid that uses it (at its first `set*uid` or its first write), and
//! a process of any other uid drops it for a private, empty table before it runs anything
//! else (php-fpm pools with their own users, a CGI child that changes user): the shared pages
//! are unmapped from it, so it can neither read nor write them. A uid changed by a raw
//! system call, bypassing our `set*uid` hooks, is caught at that process's first cache write
//! (every miss checks `geteuid`); until then it may read entries, never write them.

use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, Ordering};

use toctou_policy::owner_cache::{BUCKET_BYTES, Bucket};
use toctou_policy::{Config, OwnerCache};

use crate::ffi::{self, SharedRegion};

/// The first bytes of the shared mapping; the buckets follow at [`BUCKETS_AT`].
#[repr(C)]
pub struct Header {
    /// The effective uid allowed to use the table, plus one; 0 until the first claims it.
    claimed_by: AtomicU64,
}

/// Where the buckets start in the mapping (a cache line of its own for the header).
const BUCKETS_AT: usize = 64;

const SHARING: u8 = 0;
const PRIVATE: u8 = 1;
/// The shared pages could not be dropped: this process uses no cache at all.
const DISABLED: u8 = 2;
/// Inherited by `fork` with the pages it describes.
static MODE: AtomicU8 = AtomicU8::new(SHARING);
/// The millisecond in which our euid was last found to own the shared table (`u64::MAX`:
/// never).
static CHECKED_AT: AtomicU64 = AtomicU64::new(u64::MAX);

pub struct Owners {
    cache: OwnerCache,
    shared: Option<Shared>,
}

struct Shared {
    region: SharedRegion,
    header: &'static Header,
}

impl Owners {
    pub fn new(config: &Config, seed: [u64; 2]) -> Owners {
        let private = || Owners {
            cache: OwnerCache::new(config.cache_slots, config.cache_ttl_ms, seed),
            shared: None,
        };
        if !config.cache_shared || config.cache_ttl_ms == 0 {
            return private();
        }
        let n = OwnerCache::buckets_for(config.cache_slots);
        let made = SharedRegion::new(BUCKETS_AT + n * BUCKET_BYTES).and_then(|region| {
            let header = region.slice::<Header>(0, 1)?.first()?;
            let buckets = region.slice::<Bucket>(BUCKETS_AT, n)?;
            let cache = OwnerCache::over(buckets, config.cache_ttl_ms, seed)?;
            Some(Owners {
                cache,
                shared: Some(Shared { region, header }),
            })
        });
        made.unwrap_or_else(private)
    }

    pub fn key(&self, tenant: &[u8]) -> u64 {
        self.cache.key(tenant)
    }

    #[inline]
    pub fn get(&self, key: u64, now_ms: u64) -> Option<u32> {
        if MODE.load(Ordering::Relaxed) == DISABLED {
            return None;
        }
        self.cache.get(key, now_ms)
    }

    pub fn put(&self, key: u64, uid: u32, now_ms: u64) {
        if self.usable(Some(now_ms)) {
            self.cache.put(key, uid, now_ms);
        }
    }

    /// May this process use (write) the table? Claims a shared table for our euid if
    /// nobody has, and drops it for a private one if another uid has. From `put` (`now_ms`
    /// given) `geteuid` is asked at most once per millisecond: a system call on every miss
    /// cost 5% at 100,000 tenants, and it only backs up the `set*uid` hooks.
    fn usable(&self, now_ms: Option<u64>) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        match MODE.load(Ordering::Relaxed) {
            SHARING => {}
            PRIVATE => return true,
            _ => return false,
        }
        if now_ms.is_some_and(|now| CHECKED_AT.load(Ordering::Relaxed) == now) {
            return true;
        }
        let ok = self.claim(shared);
        if ok && let Some(now) = now_ms {
            CHECKED_AT.store(now, Ordering::Relaxed);
        }
        ok
    }

    fn claim(&self, shared: &Shared) -> bool {
        let me = u64::from(rustix::process::geteuid().as_raw()) + 1;
        let owner =
            match shared
                .header
                .claimed_by
                .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(owner) => owner,
            };
        if owner == me {
            return true;
        }
        if shared.region.make_private() {
            MODE.store(PRIVATE, Ordering::Relaxed);
            true
        } else {
            MODE.store(DISABLED, Ordering::Relaxed);
            false
        }
    }
}

/// After a successful `set*uid`: claim the shared table for the new uid, or leave it.
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
