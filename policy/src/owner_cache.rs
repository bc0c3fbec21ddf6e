//! A bounded, lock-free cache of tenant owners: `tenant directory → uid`, with expiry.
//!
//! Set-associative: a key hashes to one bucket of [`WAYS`] entries, one 64-byte cache line,
//! and a new entry replaces the bucket's empty or expired entry, else the oldest one not read
//! since it was written (CLOCK's second chance). So a table of a few thousand buckets keeps
//! the hot tenants of 100,000 (web traffic is Zipf-like), and a lookup touches one cache
//! line whatever the table's size. Fixed size, allocated once; readers never block or
//! allocate.
//!
//! The buckets may live in memory the caller provides ([`OwnerCache::over`]): the shim puts
//! them in a shared anonymous mapping that a server's master makes before it forks, so every
//! worker reads what any worker learnt. That is why a bucket must stay correct across
//! processes:
//!
//! - each bucket is a seqlock (`lock`: generation, and a busy bit with the time it was set);
//!   a reader that meets a busy bucket treats it as a miss, and a writer that finds it busy
//!   does not cache: nobody waits;
//! - a writer that dies (or is stopped) mid-update leaves its bucket busy: past
//!   [`RECLAIM_MS`] another writer takes it over with one compare-and-swap on the lock word
//!   (so only one of them does), never waiting;
//! - a writer stopped long enough to be taken over may yet wake up and finish its stores
//!   into a bucket it no longer holds. Each entry's `tag` is the key mixed with the owner and
//!   expiry it was written with, under the secret seed: a reader accepts an entry only if its
//!   two words belong together, so a mix of two writers' words is a miss, never a wrong owner
//!   (a late writer's whole entry is its own correct observation, trusted no longer than its
//!   TTL from when it was made, like any entry).
//!
//! Expiry is kept in 32 bits of milliseconds; the bucket's stable lock word holds the high
//! bits of the clock its entries were written under, and a write in a new epoch (every
//! 49.7 days) empties the bucket's other entries, so an old entry never comes back to life.

use std::sync::atomic::{AtomicU64, Ordering, fence};

/// Entries per bucket (one cache line: the lock, the referenced bits, three entries).
pub const WAYS: usize = 3;
/// A bucket busy for longer than this (its writer died or was stopped) may be taken over.
pub const RECLAIM_MS: u64 = 1000;

const BUSY: u64 = 1;
const LOW31: u64 = 0x7fff_ffff;

#[repr(C)]
#[derive(Default)]
struct Way {
    /// `key ^ mix(word)`.
    tag: AtomicU64,
    /// `uid << 32 | expiry` (expiry: the low 32 bits of the milliseconds clock; 0: empty).
    word: AtomicU64,
}

/// One bucket. All-zero bytes are an empty bucket, so a zeroed mapping is a valid table.
#[repr(C, align(64))]
#[derive(Default)]
pub struct Bucket {
    /// Stable: `generation << 32 | epoch << 1` (epoch: the clock's bits above 32, 31 of them).
    /// Busy: `generation << 32 | stamp << 1 | 1` (stamp: the clock's low 31 bits when it
    /// became busy). Every change of the bucket changes this word.
    lock: AtomicU64,
    /// Bit `i`: entry `i` was read since it was written. Outside the seqlock and the tags: a
    /// lost or late bit only skews which entry is evicted.
    referenced: AtomicU64,
    ways: [Way; WAYS],
}

/// Bytes of one bucket (for sizing a caller-provided region).
pub const BUCKET_BYTES: usize = core::mem::size_of::<Bucket>();

enum Buckets {
    Owned(Box<[Bucket]>),
    Borrowed(&'static [Bucket]),
}

pub struct OwnerCache {
    buckets: Buckets,
    /// Buckets minus one (a power of two minus one).
    mask: usize,
    ttl_ms: u64,
    /// Secret key of the bucket hash and of the tags, chosen by the caller per process (the
    /// shim takes the kernel's `AT_RANDOM` bytes, in the master for a shared table), so a
    /// tenant cannot pick a name that collides with another tenant's: the policy itself
    /// never asks the OS for randomness.
    seed: [u64; 2],
}

/// wyhash's constants: odd, about half their bits set.
const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;

/// The 128-bit product of `a` and `b`, its halves xor-ed.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The first 8 bytes of `b` (at least 8), little-endian.
#[inline(always)]
fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]))
}

/// 1 to 7 bytes as one word: read as two overlapping halves (4..=7 bytes) or the first,
/// middle and last byte (1..=3), which cover every byte; with the length hashed beside it,
/// distinct inputs of one length give distinct words.
#[inline(always)]
fn small(b: &[u8]) -> u64 {
    let n = b.len();
    let u32le = |i: usize| u64::from(u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4])));
    if n >= 4 {
        u32le(0) | (u32le(n - 4) << 32)
    } else {
        u64::from(b[0]) | (u64::from(b[n / 2]) << 8) | (u64::from(b[n - 1]) << 16)
    }
}

/// A bucket as one consistent read.
struct Snapshot {
    lock: u64,
    words: [u64; WAYS],
    /// The key each entry was written for; `None` when its words do not belong together
    /// (torn by a late writer, or never written).
    keys: [Option<u64>; WAYS],
}

impl OwnerCache {
    /// A table of its own, of [`Self::buckets_for`]`(slots)` buckets; `seed` keys the hash
    /// (keep it secret).
    pub fn new(slots: usize, ttl_ms: u32, seed: [u64; 2]) -> Self {
        let n = Self::buckets_for(slots);
        let b: Box<[Bucket]> = (0..n).map(|_| Bucket::default()).collect();
        Self::build(Buckets::Owned(b), ttl_ms, seed)
    }

    /// The buckets of a table of at least `slots` entries: a power of two.
    pub fn buckets_for(slots: usize) -> usize {
        slots.div_ceil(WAYS).max(1).next_power_of_two()
    }

    /// A table over buckets the caller placed (a shared mapping, zeroed when made). Every
    /// user of the same region must pass the same `seed` and `ttl_ms`. `None` unless the
    /// length is a power of two.
    pub fn over(region: &'static [Bucket], ttl_ms: u32, seed: [u64; 2]) -> Option<Self> {
        region
            .len()
            .is_power_of_two()
            .then(|| Self::build(Buckets::Borrowed(region), ttl_ms, seed))
    }

    fn build(buckets: Buckets, ttl_ms: u32, seed: [u64; 2]) -> Self {
        let n = match &buckets {
            Buckets::Owned(b) => b.len(),
            Buckets::Borrowed(b) => b.len(),
        };
        OwnerCache {
            buckets,
            mask: n - 1,
            ttl_ms: u64::from(ttl_ms),
            seed,
        }
    }

    /// The cache key of a tenant directory path.
    ///
    /// Wyhash-style: each 8-byte word is folded into the state by a 128-bit multiply with a
    /// secret multiplier, the state starts from the seed and the length, and a final mix
    /// spreads every bit into the high half (the bucket index). Unpredictable without the
    /// seed, ~40 instructions for a typical path where SipHash took ~360 (issue 13).
    pub fn key(&self, tenant: &[u8]) -> u64 {
        let [s0, s1] = self.seed;
        let m = s1 ^ P1;
        let n = tenant.len();
        // The length keeps "/a" and "/a\0" apart (the tail reads below pad with zeroes).
        let mut h = fold(s0 ^ n as u64, P0);
        let mut words = tenant.chunks_exact(8);
        for w in &mut words {
            h = fold(h ^ le64(w), m);
        }
        let r = words.remainder().len();
        if r > 0 {
            let tail = if n >= 8 {
                // The last 8 bytes, shifted to drop those already folded: no byte copy.
                le64(&tenant[n - 8..]) >> (64 - 8 * r)
            } else {
                small(tenant)
            };
            h = fold(h ^ tail, m);
        }
        // splitmix64's finaliser (a bijection) under the other half of the seed.
        let mut x = h ^ s0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn bucket(&self, key: u64) -> &Bucket {
        let all: &[Bucket] = match &self.buckets {
            Buckets::Owned(b) => b,
            Buckets::Borrowed(b) => b,
        };
        &all[((key >> 32) as usize) & self.mask]
    }

    /// `key ^ mix(word)`, keyed so that a tenant cannot make two entries' words combine into
    /// a valid third. Its own inverse in `key`.
    fn tag(&self, key: u64, word: u64) -> u64 {
        let mut x = word ^ self.seed[1];
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        key ^ x ^ (x >> 31)
    }

    /// The bucket as a seqlock reader sees it; `Err(lock)`: busy, or changed while read.
    fn read(&self, b: &Bucket) -> Result<Snapshot, u64> {
        let lock = b.lock.load(Ordering::Acquire);
        if lock & BUSY == BUSY {
            return Err(lock);
        }
        let mut tags = [0u64; WAYS];
        let mut words = [0u64; WAYS];
        for (i, w) in b.ways.iter().enumerate() {
            tags[i] = w.tag.load(Ordering::Relaxed);
            words[i] = w.word.load(Ordering::Relaxed);
        }
        fence(Ordering::Acquire);
        if b.lock.load(Ordering::Relaxed) != lock {
            return Err(lock & !BUSY);
        }
        let mut keys = [None; WAYS];
        for i in 0..WAYS {
            if words[i] as u32 != 0 {
                keys[i] = Some(self.tag(tags[i], words[i]));
            }
        }
        Ok(Snapshot { lock, words, keys })
    }

    /// Is an entry of expiry `word` in a bucket of stable `lock` still valid at `now_ms`?
    fn fresh(lock: u64, word: u64, now_ms: u64) -> bool {
        let exp = word & 0xffff_ffff;
        (lock >> 1) & LOW31 == (now_ms >> 32) & LOW31 && exp != 0 && now_ms & 0xffff_ffff < exp
    }

    /// The cached owner, if present and not expired at `now_ms`.
    pub fn get(&self, key: u64, now_ms: u64) -> Option<u32> {
        let b = self.bucket(key);
        let snap = self.read(b).ok()?;
        let i = (0..WAYS)
            .find(|&i| snap.keys[i] == Some(key) && Self::fresh(snap.lock, snap.words[i], now_ms))?;
        if b.referenced.load(Ordering::Relaxed) & (1 << i) == 0 {
            b.referenced.fetch_or(1 << i, Ordering::Relaxed);
        }
        Some((snap.words[i] >> 32) as u32)
    }

    /// Remember `uid` for `key` until `now_ms + ttl`. Never blocks: when the bucket is being
    /// written, nothing is cached.
    pub fn put(&self, key: u64, uid: u32, now_ms: u64) {
        if let Some(w) = self.begin_put(key, now_ms) {
            w.write(uid);
        }
    }

    /// The first half of [`Self::put`]: the entry chosen and its bucket marked busy. The
    /// write happens when the returned [`Pending`] is written; dropped unwritten, or its
    /// process killed, the bucket stays busy until taken over (what a writer that dies
    /// mid-update leaves).
    pub fn begin_put(&self, key: u64, now_ms: u64) -> Option<Pending<'_>> {
        if self.ttl_ms == 0 {
            return None;
        }
        let b = self.bucket(key);
        let stamp = now_ms & LOW31;
        let epoch = (now_ms >> 32) & LOW31;
        let (seen, way, clear_others) = match self.read(b) {
            Ok(snap) => {
                let same_epoch = (snap.lock >> 1) & LOW31 == epoch;
                (snap.lock, self.victim(b, &snap, key, now_ms), !same_epoch)
            }
            Err(lock) if lock & BUSY == BUSY => {
                let age = stamp.wrapping_sub((lock >> 1) & LOW31) & LOW31;
                if age <= RECLAIM_MS {
                    return None;
                }
                // Its dead writer may have left any entry half-written (the tags catch that)
                // and its epoch is lost: start the bucket afresh with this entry.
                (lock, 0, true)
            }
            Err(_) => return None, // being written this instant
        };
        // Taking a stable bucket keeps its generation; taking over a dead writer's bumps it,
        // so the lock word differs from everything a reader may have seen before.
        let generation = (seen >> 32).wrapping_add(seen & BUSY);
        let busy = (generation << 32) | (stamp << 1) | BUSY;
        b.lock
            .compare_exchange(seen, busy, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // The data stores may not be seen before the busy lock word.
        fence(Ordering::Release);
        if clear_others {
            for (i, w) in b.ways.iter().enumerate() {
                if i != way {
                    w.word.store(0, Ordering::Relaxed);
                }
            }
        }
        // Low 32 bits of the expiry, capped at the end of this epoch (0 is "empty").
        let exp = now_ms.saturating_add(self.ttl_ms).min(now_ms | 0xffff_ffff) & 0xffff_ffff;
        Some(Pending {
            cache: self,
            bucket: b,
            way,
            busy,
            released: ((generation + 1) << 32) | (epoch << 1),
            key,
            exp: exp.max(1),
        })
    }

    /// The entry to (re)write: this key's own, then an empty or expired one, then the oldest
    /// (earliest expiry: one TTL for all) not read since written, then the oldest.
    fn victim(&self, b: &Bucket, snap: &Snapshot, key: u64, now_ms: u64) -> usize {
        let fresh = |i: usize| Self::fresh(snap.lock, snap.words[i], now_ms);
        if let Some(i) = (0..WAYS).find(|&i| snap.keys[i] == Some(key)) {
            return i;
        }
        if let Some(i) = (0..WAYS).find(|&i| snap.keys[i].is_none() || !fresh(i)) {
            return i;
        }
        let referenced = b.referenced.load(Ordering::Relaxed);
        let oldest = |pick: &dyn Fn(usize) -> bool| {
            (0..WAYS)
                .filter(|&i| pick(i))
                .min_by_key(|&i| snap.words[i] as u32)
        };
        if let Some(i) = oldest(&|i| referenced & (1 << i) == 0) {
            return i;
        }
        // Every entry was read: they compete afresh for the next eviction.
        b.referenced.store(0, Ordering::Relaxed);
        oldest(&|_| true).unwrap_or(0)
    }
}

/// A bucket this writer holds busy (see [`OwnerCache::begin_put`]).
pub struct Pending<'a> {
    cache: &'a OwnerCache,
    bucket: &'a Bucket,
    way: usize,
    busy: u64,
    released: u64,
    key: u64,
    exp: u64,
}

impl Pending<'_> {
    /// Fill the entry and release the bucket.
    pub fn write(self, uid: u32) {
        let word = (u64::from(uid) << 32) | self.exp;
        let w = &self.bucket.ways[self.way];
        w.word.store(word, Ordering::Relaxed);
        w.tag.store(self.cache.tag(self.key, word), Ordering::Relaxed);
        self.bucket
            .referenced
            .fetch_and(!(1 << self.way), Ordering::Relaxed);
        // A compare-and-swap, not a store: if the bucket was taken over while this writer was
        // stopped, the new holder's lock stays (and the tags sort out the words).
        let _ =
            self.bucket
                .lock
                .compare_exchange(self.busy, self.released, Ordering::Release, Ordering::Relaxed);
    }

    /// Store only the owner half of the entry (as a writer killed half-way through would
    /// have), keep the bucket busy. For tests of what a dead writer leaves.
    #[doc(hidden)]
    pub fn write_owner_only(self, uid: u32) {
        let w = &self.bucket.ways[self.way];
        w.word.store((u64::from(uid) << 32) | self.exp, Ordering::Relaxed);
    }
}

/// Zipf(1) draws over `0..n` ranks by inverse CDF, from a fixed xorshift, so every run (and
/// every bench child) sees the same sequence. Shared by this module's hit-rate test and
/// the bench's `openloop --zipf`; not part of the policy API.
#[doc(hidden)]
pub fn zipf_draws(n: usize, draws: usize) -> Vec<usize> {
    let n = n.max(1);
    let mut cdf = Vec::with_capacity(n);
    let mut sum = 0.0f64;
    for r in 1..=n {
        sum += 1.0 / r as f64;
        cdf.push(sum);
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..draws)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64 * sum;
            cdf.partition_point(|&c| c < u).min(n - 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const SEED: [u64; 2] = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];

    fn keys(c: &OwnerCache, n: usize) -> Vec<u64> {
        (0..n).map(|i| c.key(format!("/home/t{i}").as_bytes())).collect()
    }

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

    /// Every length from empty to past three words (so every tail length, long and short),
    /// every byte position (each side of every word boundary, in the tail), a few changes:
    /// each variant has its own key, so its own tag, and never reads another's entry.
    #[test]
    fn one_byte_anywhere_makes_another_tag() {
        let c = OwnerCache::new(WAYS, 10_000, SEED);
        let word = (1001u64 << 32) | 5000;
        let mut seen = std::collections::HashMap::new();
        for n in 0..=40usize {
            let base: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let mut variants = vec![base.clone()];
            for p in 0..n {
                for d in [0x01u8, 0x80, 0xff, b'a' ^ b'/'] {
                    let mut v = base.clone();
                    v[p] ^= d;
                    variants.push(v);
                }
            }
            for v in variants {
                let tag = c.tag(c.key(&v), word);
                if let Some(other) = seen.insert(tag, v.clone()) {
                    panic!("{v:?} and {other:?} share the tag {tag:#x}");
                }
            }
        }
        // A zero byte more is another name, not the same padded word.
        assert_ne!(c.key(b"/home/a"), c.key(b"/home/a\0"));
        assert_ne!(c.key(b"/home/alice/"), c.key(b"/home/alice/\0"));
        // And so another entry: in a one-bucket table, a neighbour's entry is a miss.
        let (k, near) = (c.key(b"/home/alice2024"), c.key(b"/home/alice2025"));
        c.put(k, 1001, 1);
        assert_eq!(c.get(k, 2), Some(1001));
        assert_eq!(c.get(near, 2), None, "a one-byte neighbour read alice's owner");
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
        c.put(k, 1002, 1100);
        assert_eq!(c.get(k, 1101), Some(1002), "an expired entry is replaced");
    }

    #[test]
    fn a_full_bucket_keeps_every_way_and_evicts_the_oldest() {
        // One bucket: WAYS entries fit, the next one evicts the first written.
        let c = OwnerCache::new(WAYS, 10_000, SEED);
        let ks = keys(&c, WAYS + 1);
        for (i, k) in ks.iter().take(WAYS).enumerate() {
            c.put(*k, i as u32, i as u64 + 1);
        }
        for (i, k) in ks.iter().take(WAYS).enumerate() {
            assert_eq!(c.get(*k, 100), Some(i as u32), "way {i}");
        }
        c.put(ks[WAYS], 77, 100);
        assert_eq!(c.get(ks[WAYS], 101), Some(77));
        assert_eq!(c.get(ks[0], 101), None, "the oldest entry made room");
        assert_eq!(c.get(ks[1], 101), Some(1));
        // Rewriting a key reuses its own slot rather than evicting another.
        c.put(ks[1], 11, 102);
        assert_eq!(c.get(ks[1], 103), Some(11));
        assert_eq!(c.get(ks[2], 103), Some(2));
    }

    #[test]
    fn bounded_and_colliding_keys_never_confuse_owners() {
        let c = OwnerCache::new(WAYS, 1000, SEED);
        let ks = keys(&c, 1000);
        for (i, k) in ks.iter().enumerate() {
            c.put(*k, i as u32, 0);
        }
        let hits = ks
            .iter()
            .enumerate()
            .filter(|(i, k)| c.get(**k, 1).inspect(|uid| assert_eq!(*uid, *i as u32)).is_some())
            .count();
        assert_eq!(hits, WAYS, "a one-bucket table holds exactly its ways");
    }

    #[test]
    fn an_entry_never_outlives_its_clock_epoch() {
        let c = OwnerCache::new(WAYS, 10_000, SEED);
        let (k, old) = (c.key(b"/home/alice"), c.key(b"/home/old"));
        let epoch = 1u64 << 32;
        c.put(old, 1, 5);
        // 49.7 days later the low 32 bits come round again: not a hit.
        assert_eq!(c.get(old, epoch + 4), None, "an old epoch's entry");
        // An entry written just before the epoch ends is cut at its end.
        c.put(k, 2, epoch - 10);
        assert_eq!(c.get(k, epoch - 5), Some(2));
        assert_eq!(c.get(k, epoch + 5), None);
        // Writing in the new epoch empties the bucket's old entries for good.
        c.put(k, 3, epoch + 6);
        assert_eq!(c.get(k, epoch + 7), Some(3));
        assert_eq!(c.get(old, epoch + 7), None);
    }

    #[test]
    fn ttl_zero_disables_caching() {
        let c = OwnerCache::new(8, 0, SEED);
        let k = c.key(b"/x");
        c.put(k, 1, 0);
        assert_eq!(c.get(k, 0), None);
    }

    #[test]
    fn a_region_must_be_a_power_of_two_of_buckets() {
        let leak = |n: usize| -> &'static [Bucket] { Box::leak((0..n).map(|_| Bucket::default()).collect()) };
        assert!(OwnerCache::over(leak(3), 1000, SEED).is_none());
        let c = OwnerCache::over(leak(4), 1000, SEED).unwrap();
        c.put(c.key(b"/a"), 5, 1);
        assert_eq!(c.get(c.key(b"/a"), 2), Some(5));
        assert_eq!(OwnerCache::buckets_for(1), 1);
        assert_eq!(OwnerCache::buckets_for(4097), 2048);
        assert_eq!(BUCKET_BYTES, 64, "one cache line");
    }

    /// A writer that dies between marking its bucket busy and releasing it (here: with only
    /// the owner stored, a wrong one).
    #[test]
    fn a_dead_writers_bucket_is_a_miss_then_reclaimed() {
        let c = OwnerCache::new(WAYS, 10_000, SEED);
        let k = c.key(b"/home/alice");
        c.put(k, 1001, 1000);
        assert_eq!(c.get(k, 1000), Some(1001));
        // Dies mid-update of alice's own entry, having stored the attacker's uid.
        c.begin_put(k, 1001).unwrap().write_owner_only(666);
        assert_eq!(
            c.get(k, 1002),
            None,
            "busy is a miss, never the half-written owner"
        );
        assert!(
            c.begin_put(k, 1002).is_none(),
            "a freshly busy bucket is left to its writer"
        );
        // Past RECLAIM_MS one writer takes it over; the half-written entry never reads.
        let later = 1001 + RECLAIM_MS + 1;
        let other = keys(&c, 2);
        c.put(other[0], 7, later);
        assert_eq!(c.get(other[0], later + 1), Some(7));
        assert_eq!(c.get(k, later + 1), None, "emptied by the takeover, not 666");
        c.put(k, 1001, later + 2);
        c.put(other[1], 8, later + 2);
        for (key, uid) in [(k, 1001), (other[0], 7), (other[1], 8)] {
            assert_eq!(c.get(key, later + 3), Some(uid));
        }
    }

    /// Writers stopped past RECLAIM_MS, taken over, that wake and finish their stores.
    #[test]
    fn a_late_writer_never_makes_a_wrong_owner() {
        let c = OwnerCache::new(WAYS, 10_000, SEED);
        let k = c.key(b"/home/alice");
        let mallory = c.key(b"/home/mallory");
        let whole = c.begin_put(mallory, 1000).unwrap();
        let now = 1000 + RECLAIM_MS + 1;
        c.put(k, 1001, now);
        assert_eq!(c.get(k, now + 1), Some(1001));
        // The late writer overwrites alice's entry (the same way) with its own whole entry:
        // its release fails (the lock moved on), the entry reads as mallory's, not alice's.
        whole.write(666);
        assert_ne!(c.get(k, now + 2), Some(666));
        c.put(k, 1001, now + 3);
        assert_eq!(c.get(k, now + 4), Some(1001));
        // A late writer that gets only half its stores in: alice's tag, mallory's owner.
        let half = c.begin_put(mallory, now + 4).unwrap();
        let much_later = now + 4 + RECLAIM_MS + 1;
        c.put(k, 1001, much_later);
        half.write_owner_only(666);
        match c.get(k, much_later + 1) {
            None | Some(1001) => {}
            Some(uid) => panic!("alice's key read as uid {uid}"),
        }
    }

    #[test]
    fn concurrent_writers_and_readers_see_only_written_pairs() {
        // Two buckets, three threads writing 64 keys, each key always with its own uid.
        let c = Arc::new(OwnerCache::new(2 * WAYS, 1_000_000, SEED));
        let ks = Arc::new(keys(&c, 64));
        for (j, k) in ks.iter().enumerate() {
            c.put(*k, 1000 + j as u32, 1);
        }
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writers: Vec<_> = (0..3)
            .map(|t| {
                let (c, ks, done) = (c.clone(), ks.clone(), done.clone());
                std::thread::spawn(move || {
                    for i in 0..200_000usize {
                        let j = (i * 7 + t * 13) % ks.len();
                        c.put(ks[j], 1000 + j as u32, 1 + (i % 1000) as u64);
                    }
                    done.fetch_add(1, Ordering::Release);
                })
            })
            .collect();
        let mut hits = 0u64;
        // Bounded: until the writers are done, at most this many passes.
        for _ in 0..1_000_000 {
            for (j, k) in ks.iter().enumerate() {
                if let Some(uid) = c.get(*k, 2) {
                    assert_eq!(uid, 1000 + j as u32, "torn read");
                    hits += 1;
                }
            }
            if done.load(Ordering::Acquire) == 3 {
                break;
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        assert!(hits > 0, "the readers never hit: the test tests nothing");
    }

    fn hit_rate(c: &OwnerCache, ks: &[u64], draws: &[usize]) -> f64 {
        let mut hits = 0;
        for (t, &d) in draws.iter().enumerate() {
            match c.get(ks[d], t as u64) {
                Some(uid) => {
                    assert_eq!(uid, d as u32);
                    hits += 1;
                }
                None => c.put(ks[d], d as u32, t as u64),
            }
        }
        hits as f64 / draws.len() as f64
    }

    /// 100,000 tenants, Zipf traffic, 4096 slots: close to the ideal of always keeping the
    /// most popular tenants.
    #[test]
    fn zipf_traffic_over_100k_tenants_mostly_hits() {
        let n = 100_000;
        let draws = zipf_draws(n, 400_000);
        let c = OwnerCache::new(4096, u32::MAX, SEED);
        let entries = OwnerCache::buckets_for(4096) * WAYS;
        let ks = keys(&c, n);
        let h = |m: usize| (1..=m).map(|r| 1.0 / r as f64).sum::<f64>();
        let ideal = h(entries) / h(n);
        let rate = hit_rate(&c, &ks, &draws);
        eprintln!("zipf(1), 100,000 tenants, {entries} entries: hit rate {rate:.3}, ideal {ideal:.3}");
        assert!(rate > 0.85 * ideal, "hit rate {rate:.3}, ideal {ideal:.3}");
    }
}
