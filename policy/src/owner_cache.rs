//! A bounded, lock-free cache of tenant owners: `tenant directory → uid`, with expiry.
//!
//! Fixed size (allocated once), so 100,000 tenants cannot grow a worker's memory; readers
//! never block and never allocate. Each slot is a seqlock: a writer that finds the slot busy
//! simply does not cache, so a `fork()` (or a writer's death) in the middle of an update can
//! at worst leave that one slot uncached in the child: never a wrong owner, never a wait.

use std::hash::{DefaultHasher, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

struct Slot {
    /// Even: stable. Odd: being written.
    seq: AtomicU32,
    uid: AtomicU32,
    key: AtomicU64,
    /// Expiry, in the caller's milliseconds clock. 0 means empty.
    expires_ms: AtomicU64,
}

pub struct OwnerCache {
    slots: Box<[Slot]>,
    mask: usize,
    ttl_ms: u64,
    /// Secret key of the slot hash, chosen by the caller per process (the shim takes the
    /// kernel's `AT_RANDOM` bytes), so a tenant cannot pick a name that collides with
    /// another tenant's: the policy itself never asks the OS for randomness.
    seed: [u64; 2],
}

impl OwnerCache {
    /// `slots` is rounded up to a power of two; `seed` keys the hash (keep it secret).
    pub fn new(slots: usize, ttl_ms: u32, seed: [u64; 2]) -> Self {
        let n = slots.max(1).next_power_of_two();
        let slots = (0..n)
            .map(|_| Slot {
                seq: AtomicU32::new(0),
                uid: AtomicU32::new(0),
                key: AtomicU64::new(0),
                expires_ms: AtomicU64::new(0),
            })
            .collect();
        OwnerCache {
            slots,
            mask: n - 1,
            ttl_ms: u64::from(ttl_ms),
            seed,
        }
    }

    /// The cache key of a tenant directory path.
    pub fn key(&self, tenant: &[u8]) -> u64 {
        // SipHash over the secret seed, then the name: unpredictable without the seed.
        let mut h = DefaultHasher::new();
        h.write_u64(self.seed[0]);
        h.write_u64(self.seed[1]);
        h.write(tenant);
        h.finish()
    }

    fn slot(&self, key: u64) -> &Slot {
        &self.slots[(key as usize) & self.mask]
    }

    /// The cached owner, if present and not expired at `now_ms`.
    pub fn get(&self, key: u64, now_ms: u64) -> Option<u32> {
        let slot = self.slot(key);
        let s1 = slot.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let k = slot.key.load(Ordering::Relaxed);
        let uid = slot.uid.load(Ordering::Relaxed);
        let exp = slot.expires_ms.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if slot.seq.load(Ordering::Relaxed) != s1 {
            return None;
        }
        (k == key && now_ms < exp).then_some(uid)
    }

    /// Remember `uid` for `key` until `now_ms + ttl`. Never blocks: a busy slot is skipped.
    pub fn put(&self, key: u64, uid: u32, now_ms: u64) {
        if self.ttl_ms == 0 {
            return;
        }
        let slot = self.slot(key);
        let s = slot.seq.load(Ordering::Relaxed);
        if s & 1 == 1
            || slot
                .seq
                .compare_exchange(s, s.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        fence(Ordering::Release);
        slot.key.store(key, Ordering::Relaxed);
        slot.uid.store(uid, Ordering::Relaxed);
        slot.expires_ms
            .store(now_ms.saturating_add(self.ttl_ms).max(1), Ordering::Relaxed);
        slot.seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const SEED: [u64; 2] = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];

    #[test]
    fn the_seed_keys_the_hash() {
        let a = OwnerCache::new(16, 100, SEED);
        let b = OwnerCache::new(16, 100, [1, 2]);
        assert_ne!(a.key(b"/home/alice"), b.key(b"/home/alice"));
        assert_eq!(
            a.key(b"/home/alice"),
            OwnerCache::new(4, 1, SEED).key(b"/home/alice")
        );
    }

    #[test]
    fn hit_miss_expiry() {
        let c = OwnerCache::new(16, 100, SEED);
        let k = c.key(b"/home/alice");
        assert_eq!(c.get(k, 0), None);
        c.put(k, 1001, 1000);
        assert_eq!(c.get(k, 1050), Some(1001));
        assert_eq!(c.get(k, 1100), None, "expired");
        assert_ne!(c.key(b"/home/alice"), c.key(b"/home/bob"));
    }

    #[test]
    fn bounded_and_colliding_keys_never_confuse_owners() {
        let c = OwnerCache::new(4, 1000, SEED);
        let keys: Vec<u64> = (0..1000)
            .map(|i| c.key(format!("/home/t{i}").as_bytes()))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            c.put(*k, i as u32, 0);
        }
        for (i, k) in keys.iter().enumerate() {
            if let Some(uid) = c.get(*k, 1) {
                assert_eq!(uid, i as u32);
            }
        }
    }

    #[test]
    fn ttl_zero_disables_caching() {
        let c = OwnerCache::new(4, 0, SEED);
        let k = c.key(b"/x");
        c.put(k, 1, 0);
        assert_eq!(c.get(k, 0), None);
    }

    #[test]
    fn concurrent_readers_see_only_written_pairs() {
        let c = Arc::new(OwnerCache::new(1, 1_000_000, SEED));
        let keys = [c.key(b"/a"), c.key(b"/b")];
        let writer = {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..100_000u32 {
                    let which = (i % 2) as usize;
                    c.put(keys[which], 1000 + which as u32, 1);
                }
            })
        };
        for _ in 0..100_000 {
            for (which, k) in keys.iter().enumerate() {
                if let Some(uid) = c.get(*k, 2) {
                    assert_eq!(uid, 1000 + which as u32, "torn read");
                }
            }
        }
        writer.join().unwrap();
    }
}
