//! The compiled configuration (`CONFIG.tgc`, written by `toctou-guard compile`): a flat,
//! position-independent, read-only image a guard can map and walk in place, so that a
//! process with a 100,000-`map` configuration starts without parsing 100,000 lines or
//! building 100,000 patterns, and 100 workers share one copy in the page cache.
//!
//! Layout (all integers little-endian, offsets from the start of the image):
//!
//! | at | what |
//! |---|---|
//! | 0 | magic `TGUARDC\0`, format version (u32), header length (u32, 128), image length (u64) |
//! | 24 | the text file's `st_dev`, `st_ino`, `st_size`, `st_mtime` ns, `st_ctime` ns (5 × u64) |
//! | 64 | (offset, length) of: settings text, roots, nodes, hash table, string pool (5 × 2 × u32) |
//! | 104 | longest probe of the hash table (u32), deepest pattern (u32), depth bit set (u64), the hash of a fixed probe (u64) |
//!
//! * settings: the non-tree directives as configuration text, parsed at load (a few lines);
//! * roots, 32 bytes each, in [`Config::roots`] order: key (offset, length in the pool: the
//!   normalised pattern, `/home/*/public_html`), the text as written (offset, length), the
//!   `map` uid (`u32::MAX` for a `root`), line, depth, tenant depth;
//! * nodes of the trie of path components, 28 bytes each: `*` child, lowest root ending here
//!   (`u32::MAX`: none), number of literal children; then, for a node heading a run of
//!   one-way levels (no root, no `*`, one literal child), the run: the node after it, its
//!   components' text joined by `/` (offset, length in the pool), its number of levels —
//!   walked with one compare (`u32::MAX` for a node heading none). A child's index is always
//!   greater than its parent's, so the trie has no cycle;
//! * a hash table with linear probing of (parent node, component) → child, 16 bytes a slot,
//!   2 slots per edge (a pattern with a `*`'s edges placed first, in their home slots):
//!   parent, child (`u32::MAX`: empty slot), name (offset, length in the pool: the
//!   component inside a root's key, not a copy). A lookup probes at most the longest probe
//!   the compiler saw: its cost depends on the path, not on
//!   the number of lines.
//!
//! Freshness is decided by the text's `fstat` (device, inode, size, mtime, ctime), not a
//! hash of its bytes: hashing the text means reading 5 MB in every process, which is what
//! the image exists to avoid. Every write to the text changes its ctime (which no one but the
//! kernel sets), a replacement by rename changes its inode. File times advance by a clock
//! tick, so `toctou-guard compile` records a stamp only once the clock is past the text's
//! ctime tick and a second read agrees with the first (a same-size write in the tick of the
//! read would otherwise keep the stamp).
//!
//! [`Image::open`] checks every offset, count and index once at load; a malformed image is
//! an error naming the file, never a crash. Reads after that are still checked (a value out
//! of bounds reads as "nothing here", never as a panic), so no byte pattern can crash a guard.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, OwnerRule};
use crate::error::{Error, ErrorKind};
use crate::index::Found;
use crate::path::Components;

pub const MAGIC: [u8; 8] = *b"TGUARDC\0";
/// Bumped on any change of the layout; an image of another version is not used.
/// 2: `cache_shared` names a uid (`off|UID`), no longer `on|off`.
/// 3: a node heading a run of one-way levels carries the run (one compare walks it).
pub const VERSION: u32 = 3;
/// The largest image accepted (100,000 `map` lines of long vhost paths compile to ~20 MiB).
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;
/// The suffix the loader looks for next to the text: `CONFIG.tgc`.
pub const SUFFIX: &str = ".tgc";

const HEADER: usize = 128;
const ROOT_REC: usize = 32;
const NODE_REC: usize = 28;
const SLOT_REC: usize = 16;
const NONE: u32 = u32::MAX;
/// Nodes a walk may have active at once (as [`crate::index`]).
const MAX_ACTIVE: usize = 16;

/// What `fstat` says of the text file: an image is fresh when all of it is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl Stamp {
    /// An implementation of [`crate::ConfigIo`] that cannot say leaves it zero: never fresh.
    pub fn is_known(&self) -> bool {
        self.ino != 0
    }
}

/// The image's bytes: a `Vec` read from the file, or the shim's read-only mapping.
pub trait Bytes: Send + Sync {
    fn bytes(&self) -> &[u8];
}

impl Bytes for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// The image path for the configuration `text`: `text` + [`SUFFIX`].
pub fn path_for(text: &Path) -> std::path::PathBuf {
    let mut s = text.as_os_str().to_os_string();
    s.push(SUFFIX);
    s.into()
}

/// The settings of `cfg` (everything but its trees) as configuration text that parses back
/// to the same values.
fn settings_text(cfg: &Config) -> String {
    // Every field named: a new directive does not compile until it is written here too.
    let Config {
        source: _,
        roots: _,
        mode,
        owner,
        allow_uids,
        programs,
        log_socket,
        log_rate,
        cache_ttl_ms,
        cache_slots,
        cache_shared,
    } = cfg;
    let mut s = String::new();
    let _ = writeln!(s, "mode {}", mode.as_str());
    let owner = match owner {
        OwnerRule::Tenant => "tenant",
        OwnerRule::Euid => "euid",
    };
    let _ = writeln!(s, "owner {owner}");
    for uid in allow_uids {
        let _ = writeln!(s, "allow_uid {uid}");
    }
    for p in programs {
        let _ = writeln!(s, "programs {p}");
    }
    let _ = writeln!(s, "log_socket {}", log_socket.display());
    let _ = writeln!(
        s,
        "log_rate {log_rate}\ncache_ttl_ms {cache_ttl_ms}\ncache_slots {cache_slots}\ncache_shared {}",
        cache_shared.map_or_else(|| "off".to_string(), |u| u.to_string())
    );
    s
}

/// The table is laid out by [`fnv`]: an image hashed another way (a build whose hash changed
/// without a new [`VERSION`]) would find no edge and guard nothing, so the header carries
/// this and an image whose probe differs is refused.
fn hash_probe() -> u64 {
    fnv(0x7467, b"toctou-guard compiled configuration")
}

/// The home slot of a hash in a table of `slots` (multiply-shift: no modulo, any size).
fn slot_of(hash: u64, slots: usize) -> usize {
    ((u128::from(hash) * slots as u128) >> 64) as usize
}

/// The hash of an edge: eight bytes of the name per multiply (the FxHash step), then one
/// avalanche; part of the format (the table is laid out by it).
fn fnv(parent: u32, name: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    let mut h = mix(u64::from(parent), name.len() as u64);
    let mut chunks = name.chunks_exact(8);
    for c in &mut chunks {
        h = mix(
            h,
            u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        );
    }
    // The last 0-7 bytes as a zero-padded little-endian word (a loop, not a memcpy call).
    let tail = chunks
        .remainder()
        .iter()
        .enumerate()
        .fold(0u64, |t, (i, &b)| t | u64::from(b) << (8 * i));
    h = mix(h, tail);
    // The table's slot comes from the high bits: a full avalanche (splitmix64's), since
    // names differing in one digit under sequential parents must not land side by side —
    // with a lighter mix, runs of neighbours made probes of up to 68 slots (100,000 maps).
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Compile a parsed configuration (read from a text whose `fstat` gave `stamp`).
pub fn compile(cfg: &Config, stamp: Stamp) -> Result<Vec<u8>, String> {
    compile_within(cfg, stamp, MAX_IMAGE_BYTES)
}

/// [`compile`], refusing an image larger than `limit` bytes.
fn compile_within(cfg: &Config, stamp: Stamp, limit: u64) -> Result<Vec<u8>, String> {
    let mut pool: Vec<u8> = Vec::new();
    let put = |pool: &mut Vec<u8>, b: &[u8]| {
        let off = pool.len() as u64;
        pool.extend_from_slice(b);
        (off, b.len() as u64)
    };
    // The trie, as RootIndex builds it: nodes in creation order, so a child > its parent.
    let mut nodes: Vec<[u32; 3]> = vec![[NONE, NONE, 0]];
    let mut edges: HashMap<(u32, &[u8]), (u32, usize)> = HashMap::new();
    let mut edge_list: Vec<(u32, u32, u64, &[u8])> = Vec::new();
    // Edges on a pattern with a `*` (one walked by every tenant's requests) go into the table
    // first, so that they sit in their home slots; a `map` line's are each one vhost's.
    let mut hot: Vec<bool> = Vec::new();
    let mut roots = Vec::with_capacity(cfg.roots.len() * ROOT_REC);
    let (mut depth_mask, mut max_depth) = (0u64, 0usize);
    for (i, r) in cfg.roots.iter().enumerate() {
        let key_text = r.pattern.key();
        let key = put(&mut pool, key_text.as_bytes());
        // Most patterns are written as their key: store the text once.
        let text = if key_text == r.pattern.as_str() {
            key
        } else {
            put(&mut pool, r.pattern.as_str().as_bytes())
        };
        // An edge's name is the component's bytes inside this key (1 + the `/` before it).
        let mut name_at = key.0 + 1;
        let mut at = 0u32;
        let starred = r.pattern.parts().any(|p| p.is_none());
        for part in r.pattern.parts() {
            let next = nodes.len() as u32;
            let child = match part {
                Some(lit) => {
                    let (child, e) = *edges.entry((at, lit)).or_insert_with(|| {
                        edge_list.push((at, next, name_at, lit));
                        hot.push(false);
                        (next, edge_list.len() - 1)
                    });
                    hot[e] |= starred;
                    child
                }
                None => {
                    let star = &mut nodes[at as usize][0];
                    if *star == NONE {
                        *star = next;
                    }
                    *star
                }
            };
            name_at += part.map_or(1, <[u8]>::len) as u64 + 1;
            if child == next {
                if part.is_some() {
                    nodes[at as usize][2] += 1;
                }
                nodes.push([NONE, NONE, 0]);
            }
            at = child;
        }
        let root = &mut nodes[at as usize][1];
        *root = (*root).min(i as u32);
        let d = r.pattern.depth();
        max_depth = max_depth.max(d);
        if d < 64 {
            depth_mask |= 1 << d;
        }
        let uid = r.fixed_uid.unwrap_or(NONE);
        for v in [
            key.0,
            key.1,
            text.0,
            text.1,
            u64::from(uid),
            r.line as u64,
            d as u64,
            r.pattern.tenant_depth() as u64,
        ] {
            roots.extend_from_slice(&u32::try_from(v).map_err(|_| too_large())?.to_le_bytes());
        }
    }
    let chains = chains(&nodes, &edge_list, &mut pool)?;
    // Two slots per edge: short probes for names that are there and for names that are not
    // (most components of a path outside every root); no power of two to round to.
    let slots = (edge_list.len() * 2).max(8);
    let mut table = vec![[0u32, NONE, 0, 0]; slots];
    let mut max_probe = 0usize;
    let mut order: Vec<usize> = (0..edge_list.len()).collect();
    order.sort_by_key(|&e| !hot[e]); // stable: configuration order within each group
    for &(parent, child, off, name) in order.iter().map(|&e| &edge_list[e]) {
        debug_assert_eq!(&pool[off as usize..off as usize + name.len()], name);
        let mut s = slot_of(fnv(parent, name), slots);
        let mut probe = 0;
        while table[s][1] != NONE {
            s = if s + 1 == slots { 0 } else { s + 1 };
            probe += 1;
        }
        max_probe = max_probe.max(probe);
        let off = u32::try_from(off).map_err(|_| too_large())?;
        let len = u32::try_from(name.len()).map_err(|_| too_large())?;
        table[s] = [parent, child, off, len];
    }
    let settings = settings_text(cfg);
    let sections = [
        settings.len(),
        roots.len(),
        nodes.len() * NODE_REC,
        slots * SLOT_REC,
        pool.len(),
    ];
    let total: usize = HEADER + sections.iter().sum::<usize>();
    if total as u64 > limit {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(HEADER as u32).to_le_bytes());
    out.extend_from_slice(&(total as u64).to_le_bytes());
    for v in [
        stamp.dev,
        stamp.ino,
        stamp.size,
        stamp.mtime_ns as u64,
        stamp.ctime_ns as u64,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut off = HEADER;
    for (len, count) in sections
        .iter()
        .zip([settings.len(), cfg.roots.len(), nodes.len(), slots, pool.len()])
    {
        out.extend_from_slice(&(off as u32).to_le_bytes());
        out.extend_from_slice(&(count as u32).to_le_bytes());
        off += len;
    }
    out.extend_from_slice(&(max_probe as u32).to_le_bytes());
    out.extend_from_slice(&(max_depth as u32).to_le_bytes());
    out.extend_from_slice(&depth_mask.to_le_bytes());
    out.extend_from_slice(&hash_probe().to_le_bytes());
    debug_assert_eq!(out.len(), HEADER);
    out.extend_from_slice(settings.as_bytes());
    out.extend_from_slice(&roots);
    for (n, chain) in nodes.iter().zip(&chains) {
        for v in n.iter().chain(chain) {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    for s in &table {
        for v in s {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.extend_from_slice(&pool);
    Ok(out)
}

/// For each node heading a run of one-way levels (no root, no `*`, one literal child, for
/// one level or more), the run: `[node after it, pool offset, length, levels]` of its
/// components' text joined by `/`; `[NONE, 0, 0, 0]` for every other node. Only heads: a walk
/// enters a run from a node with a `*`, a root or several children, or at the top.
fn chains(
    nodes: &[[u32; 3]],
    edges: &[(u32, u32, u64, &[u8])],
    pool: &mut Vec<u8>,
) -> Result<Vec<[u32; 4]>, String> {
    let mut only: Vec<Option<(u64, usize, u32)>> = vec![None; nodes.len()];
    for &(parent, child, off, name) in edges {
        only[parent as usize] = Some((off, name.len(), child));
    }
    let one_way = |n: usize| {
        let [star, root, nlit] = nodes[n];
        (star == NONE && root == NONE && nlit == 1)
            .then_some(only[n])
            .flatten()
    };
    let mut inner = vec![false; nodes.len()];
    for &(parent, child, ..) in edges {
        inner[child as usize] |= one_way(parent as usize).is_some();
    }
    let mut out = vec![[NONE, 0, 0, 0]; nodes.len()];
    for head in (0..nodes.len()).filter(|&n| !inner[n]) {
        let Some((off, len, mut at)) = one_way(head) else {
            continue;
        };
        let (mut text, mut levels) = (pool[off as usize..off as usize + len].to_vec(), 1u32);
        while let Some((o, l, next)) = one_way(at as usize) {
            text.push(b'/');
            text.extend_from_slice(&pool[o as usize..o as usize + l]);
            (at, levels) = (next, levels + 1);
        }
        // A single level's text is its edge's name, already in the pool.
        let (o, l) = if levels == 1 {
            (off, len as u64)
        } else {
            let o = pool.len() as u64;
            pool.extend_from_slice(&text);
            (o, text.len() as u64)
        };
        let fit = |v: u64| u32::try_from(v).ok().filter(|&v| v != NONE).ok_or_else(too_large);
        out[head] = [at, fit(o)?, fit(l)?, levels];
    }
    Ok(out)
}

fn bad(path: &Path, msg: String) -> Error {
    Error::new(ErrorKind::Invalid, path, None, format!("compiled form: {msg}"))
}

fn too_large() -> String {
    format!(
        "the compiled form would be larger than {} MiB, the limit",
        MAX_IMAGE_BYTES >> 20
    )
}

/// One root of an image, as [`crate::Policy::root`] shows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RootRec<'a> {
    pub key: &'a [u8],
    pub text: &'a [u8],
    pub fixed_uid: Option<u32>,
    pub line: usize,
    pub depth: usize,
    pub tenant_depth: usize,
}

/// A validated image.
#[derive(Clone)]
pub struct Image {
    data: Arc<dyn Bytes>,
    stamp: Stamp,
    roots: (usize, usize),
    nodes: (usize, usize),
    table: (usize, usize),
    pool: (usize, usize),
    max_probe: usize,
    pub(crate) max_depth: usize,
    pub(crate) depth_mask: u64,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("len", &self.data.bytes().len())
            .field("roots", &self.roots.1)
            .field("nodes", &self.nodes.1)
            .finish()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(NONE, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | u64::from(u32_at(b, at + 4)) << 32
}

impl Image {
    /// Validate `data` (read from `path`) and parse its settings: the configuration without
    /// its trees, and the image that holds them.
    pub fn open(data: Arc<dyn Bytes>, path: &Path) -> Result<(Image, Config), Error> {
        let (img, cfg) = Self::open_header(data, path)?;
        img.validate(path)?;
        Ok((img, cfg))
    }

    /// The first half of [`Self::open`]: the header, the sections' bounds and the settings,
    /// so that a program the `programs` lines leave unguarded reads nothing more. The image
    /// must not be used before [`Self::validate`] passed.
    pub(crate) fn open_header(data: Arc<dyn Bytes>, path: &Path) -> Result<(Image, Config), Error> {
        let bad = |msg: String| bad(path, msg);
        let b = data.bytes();
        if b.len() < HEADER || b[..8] != MAGIC {
            return Err(bad("not a toctou-guard compiled configuration (bad magic)".into()));
        }
        let version = u32_at(b, 8);
        if version != VERSION {
            return Err(bad(format!(
                "format version {version}, this guard reads version {VERSION} (run toctou-guard compile)"
            )));
        }
        if u32_at(b, 12) as usize != HEADER || u64_at(b, 16) != b.len() as u64 {
            return Err(bad(format!(
                "truncated or extended: the header says {} bytes, the file has {}",
                u64_at(b, 16),
                b.len()
            )));
        }
        let stamp = Stamp {
            dev: u64_at(b, 24),
            ino: u64_at(b, 32),
            size: u64_at(b, 40),
            mtime_ns: u64_at(b, 48) as i64,
            ctime_ns: u64_at(b, 56) as i64,
        };
        // Each section: (offset, count) with its record size, inside the image.
        let section = |i: usize, rec: usize, what: &str| -> Result<(usize, usize), Error> {
            let off = u32_at(b, 64 + 8 * i) as usize;
            let count = u32_at(b, 68 + 8 * i) as usize;
            let end = (count as u64) * rec as u64 + off as u64;
            if off < HEADER || end > b.len() as u64 {
                return Err(bad(format!("the {what} lie outside the file")));
            }
            Ok((off, count))
        };
        let settings = section(0, 1, "settings")?;
        let roots = section(1, ROOT_REC, "roots")?;
        let nodes = section(2, NODE_REC, "nodes")?;
        let table = section(3, SLOT_REC, "hash table")?;
        let pool = section(4, 1, "strings")?;
        let max_probe = u32_at(b, 104) as usize;
        let img = Image {
            stamp,
            roots,
            nodes,
            table,
            pool,
            max_probe,
            max_depth: u32_at(b, 108) as usize,
            depth_mask: u64_at(b, 112),
            data: data.clone(),
        };
        if u64_at(b, 120) != hash_probe() {
            return Err(bad(
                "laid out with another hash function (run toctou-guard compile)".into(),
            ));
        }
        if roots.1 == 0 || nodes.1 == 0 {
            return Err(bad("no root and no map".into()));
        }
        if table.1 == 0 || max_probe >= table.1 {
            return Err(bad("the hash table's size or probe length is wrong".into()));
        }
        let text = &b[settings.0..settings.0 + settings.1];
        let cfg = Config::parse_settings_bytes(text, path)
            .map_err(|e| bad(format!("its settings do not parse ({})", e.message())))?;
        if !cfg.roots.is_empty() {
            return Err(bad("its settings name trees".into()));
        }
        Ok((img, cfg))
    }

    /// The second half of [`Self::open`]: every node, hash slot and root, once (linear in
    /// the image; after it no index read can leave its section).
    pub(crate) fn validate(&self, path: &Path) -> Result<(), Error> {
        let bad = |msg: String| bad(path, msg);
        let (img, b, w) = (self, self.data.bytes(), self.walk());
        let (roots, nodes, table, pool) = (self.roots, self.nodes, self.table, self.pool);
        let in_pool = |off: u32, len: u32| u64::from(off) + u64::from(len) <= pool.1 as u64;
        for i in 0..nodes.1 {
            let [star, root, nlit] = w.node(i as u32);
            let [to, off, len, levels] = w.chain(i as u32);
            // A run starts only at a node the walk cannot stop or branch at.
            let run_ok = to == NONE
                || (star == NONE
                    && root == NONE
                    && nlit == 1
                    && to as usize > i
                    && (to as usize) < nodes.1
                    && in_pool(off, len)
                    && levels >= 1
                    && levels as usize <= crate::path::PATH_MAX
                    && {
                        // `levels` non-empty components joined by `/`.
                        let text = w.pool(off, len);
                        text.split(|&b| b == b'/').all(|c| !c.is_empty())
                            && text.iter().filter(|&&b| b == b'/').count() + 1 == levels as usize
                    });
            if (star != NONE && (star as usize >= nodes.1 || star as usize <= i))
                || (root != NONE && root as usize >= roots.1)
                || nlit as usize > table.1
                || !run_ok
            {
                return Err(bad(format!("node {i} is malformed")));
            }
        }
        for s in 0..table.1 {
            let [parent, child, off, len] = w.slot(s);
            if child != NONE
                && (parent as usize >= nodes.1
                    || child as usize >= nodes.1
                    || child <= parent
                    || len == 0
                    || !in_pool(off, len))
            {
                return Err(bad(format!("hash slot {s} is malformed")));
            }
        }
        let (mut depth_mask, mut max_depth) = (0u64, 0usize);
        for i in 0..roots.1 {
            let at = roots.0 + i * ROOT_REC;
            let f = |k: usize| u32_at(b, at + 4 * k);
            let (depth, tenant_depth) = (f(6) as usize, f(7) as usize);
            if !in_pool(f(0), f(1))
                || !in_pool(f(2), f(3))
                || tenant_depth > depth
                || depth > crate::path::PATH_MAX
                || w.pool(f(0), f(1)).first() != Some(&b'/')
            {
                return Err(bad(format!("root {i} is malformed")));
            }
            max_depth = max_depth.max(depth);
            if depth < 64 {
                depth_mask |= 1 << depth;
            }
        }
        // The depth filter skips lookups: it must cover every root, or a root would be missed.
        if (depth_mask, max_depth) != (img.depth_mask, img.max_depth) {
            return Err(bad("the depth summary disagrees with the roots".into()));
        }
        Ok(())
    }

    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    pub fn len(&self) -> usize {
        self.data.bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn root_count(&self) -> usize {
        self.roots.1
    }

    /// The bytes, fetched once for a whole lookup (they sit behind a `dyn Bytes`).
    fn walk(&self) -> Walk<'_> {
        Walk {
            b: self.data.bytes(),
            img: self,
        }
    }

    pub(crate) fn root(&self, i: usize) -> RootRec<'_> {
        let w = self.walk();
        let [
            key_off,
            key_len,
            text_off,
            text_len,
            uid,
            line,
            depth,
            tenant_depth,
        ] = rec::<8>(w.b, self.roots.0 + i * ROOT_REC);
        RootRec {
            key: w.pool(key_off, key_len),
            text: w.pool(text_off, text_len),
            fixed_uid: (uid != NONE).then_some(uid),
            line: line as usize,
            depth: depth as usize,
            tenant_depth: tenant_depth as usize,
        }
    }

    /// Tenant depth and `map` uid of root `i`: all the hot path needs of it.
    #[inline]
    pub(crate) fn tenant_and_uid(&self, i: usize) -> (usize, Option<u32>) {
        let [uid, _, _, tenant_depth] = rec::<4>(self.data.bytes(), self.roots.0 + i * ROOT_REC + 16);
        (tenant_depth as usize, (uid != NONE).then_some(uid))
    }

    /// As [`crate::index::RootIndex::first`].
    pub(crate) fn first(&self, comps: &mut Components<'_, '_>) -> Found {
        let w = self.walk();
        let (mut at, mut depth) = (0u32, 0);
        // While one node at a time is possible (the usual configuration), no set to carry.
        let mut active = loop {
            let [star, root, _] = w.node(at);
            if root != NONE {
                return Found::Root {
                    depth,
                    root: root as usize,
                };
            }
            // A run of one-way levels: the path takes all of them, or it leaves every pattern.
            let [to, off, len, levels] = w.chain(at);
            if to != NONE {
                if !comps.take(w.pool(off, len), levels as usize) {
                    return Found::Nothing;
                }
                (at, depth) = (to, depth + levels as usize);
                continue;
            }
            let Some(c) = comps.next() else {
                return Found::Nothing;
            };
            depth += 1;
            match (w.literal(at, c), (star != NONE).then_some(star)) {
                (None, None) => return Found::Nothing,
                (Some(n), None) | (None, Some(n)) => at = n,
                (Some(literal), Some(star)) => {
                    let mut both = Active::empty();
                    both.nodes[..2].copy_from_slice(&[literal, star]);
                    both.len = 2;
                    break both;
                }
            }
        };
        loop {
            if let Some(root) = w.root_of(&active) {
                return Found::Root { depth, root };
            }
            if active.len == 0 {
                return Found::Nothing;
            }
            let Some(c) = comps.next() else {
                return Found::Nothing;
            };
            match w.step(&active, c) {
                Some(next) => active = next,
                None => return Found::TooMany,
            }
            depth += 1;
        }
    }

    /// As [`crate::index::RootIndex::exact`].
    pub(crate) fn exact<'p>(&self, comps: impl Iterator<Item = &'p [u8]>) -> Found {
        let w = self.walk();
        let mut active = Active::start();
        let mut depth = 0;
        for c in comps {
            match w.step(&active, c) {
                Some(next) if next.len == 0 => return Found::Nothing,
                Some(next) => active = next,
                None => return Found::TooMany,
            }
            depth += 1;
        }
        w.root_of(&active)
            .map_or(Found::Nothing, |root| Found::Root { depth, root })
    }

    /// As [`crate::index::RootIndex::deeper_below`].
    pub(crate) fn deeper_below<'p>(&self, comps: impl Iterator<Item = &'p [u8]>) -> Option<bool> {
        let w = self.walk();
        let mut active = Active::start();
        for c in comps {
            active = w.step(&active, c)?;
            if active.len == 0 {
                return Some(false);
            }
        }
        Some(active.nodes[..active.len].iter().any(|&n| {
            let [star, _, nlit] = w.node(n);
            star != NONE || nlit > 0
        }))
    }
}

/// An image's bytes for the length of one lookup.
#[derive(Clone, Copy)]
struct Walk<'a> {
    b: &'a [u8],
    img: &'a Image,
}

/// `N` little-endian `u32`s at `at` (all `u32::MAX` if they are not all there).
#[inline]
fn rec<const N: usize>(b: &[u8], at: usize) -> [u32; N] {
    match b.get(at..at + 4 * N) {
        Some(r) => {
            std::array::from_fn(|k| u32::from_le_bytes([r[4 * k], r[4 * k + 1], r[4 * k + 2], r[4 * k + 3]]))
        }
        None => [NONE; N],
    }
}

impl<'a> Walk<'a> {
    fn pool(self, off: u32, len: u32) -> &'a [u8] {
        let start = self.img.pool.0 + off as usize;
        self.b.get(start..start + len as usize).unwrap_or_default()
    }

    #[inline]
    fn node(self, n: u32) -> [u32; 3] {
        if n as usize >= self.img.nodes.1 {
            return [NONE, NONE, 0];
        }
        rec(self.b, self.img.nodes.0 + n as usize * NODE_REC)
    }

    /// The run a node heads: `[node after it, text offset, text length, levels]`.
    #[inline]
    fn chain(self, n: u32) -> [u32; 4] {
        if n as usize >= self.img.nodes.1 {
            return [NONE, 0, 0, 0];
        }
        rec(self.b, self.img.nodes.0 + n as usize * NODE_REC + 12)
    }

    #[inline]
    fn slot(self, s: usize) -> [u32; 4] {
        rec(self.b, self.img.table.0 + s * SLOT_REC)
    }

    /// The child of node `parent` named `name`.
    fn literal(self, parent: u32, name: &[u8]) -> Option<u32> {
        let slots = self.img.table.1;
        let mut s = slot_of(fnv(parent, name), slots);
        for _ in 0..=self.img.max_probe {
            let [p, child, off, len] = self.slot(s);
            if child == NONE {
                return None;
            }
            if p == parent && len as usize == name.len() && crate::path::same(self.pool(off, len), name) {
                return Some(child);
            }
            s = if s + 1 == slots { 0 } else { s + 1 };
        }
        None
    }

    fn step(self, active: &Active, comp: &[u8]) -> Option<Active> {
        let mut next = Active::empty();
        for &n in &active.nodes[..active.len] {
            let star = self.node(n)[0];
            for child in [self.literal(n, comp), (star != NONE).then_some(star)]
                .into_iter()
                .flatten()
            {
                *next.nodes.get_mut(next.len)? = child;
                next.len += 1;
            }
        }
        Some(next)
    }

    fn root_of(self, active: &Active) -> Option<usize> {
        active.nodes[..active.len]
            .iter()
            .map(|&n| self.node(n)[1])
            .filter(|&r| r != NONE)
            .min()
            .map(|r| r as usize)
    }
}

struct Active {
    nodes: [u32; MAX_ACTIVE],
    len: usize,
}

impl Active {
    fn empty() -> Active {
        Active {
            nodes: [0; MAX_ACTIVE],
            len: 0,
        }
    }
    fn start() -> Active {
        Active {
            nodes: [0; MAX_ACTIVE],
            len: 1,
        }
    }
}

/// The components of a pattern key (`/home/*/x`): `None` for a `*`.
fn key_parts(key: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    key.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(|c| (c != b"*").then_some(c))
}

/// Walks `comps` along the leading components of `key`: `None` when one differs or `comps`
/// is deeper than `key`, else whether `key` has components left (the two callers differ only
/// in which answer they want).
fn key_left_after<'p>(key: &[u8], comps: impl Iterator<Item = &'p [u8]>) -> Option<bool> {
    let mut parts = key_parts(key);
    for c in comps {
        match parts.next() {
            Some(None) => {}
            Some(Some(l)) if l == c => {}
            _ => return None,
        }
    }
    Some(parts.next().is_some())
}

/// Does the path `comps` match the pattern `key` exactly (as deep as it)?
pub(crate) fn key_matches<'p>(key: &[u8], comps: impl Iterator<Item = &'p [u8]>) -> bool {
    key_left_after(key, comps) == Some(false)
}

/// Is the path `comps` under the pattern `key` (it or below)?
pub(crate) fn key_under<'p>(key: &[u8], mut comps: impl Iterator<Item = &'p [u8]>) -> bool {
    key_parts(key).all(|p| match (p, comps.next()) {
        (None, Some(_)) => true,
        (Some(l), Some(c)) => l == c,
        (_, None) => false,
    })
}

/// Could a path matching `key` lie strictly below the directory `comps`?
pub(crate) fn key_could_lie_below<'p>(key: &[u8], comps: impl Iterator<Item = &'p [u8]>) -> bool {
    key_left_after(key, comps) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Policy, ScratchPath, Target};

    fn both(text: &str) -> (Policy, Policy) {
        let cfg = Config::parse(text, Path::new("t.conf")).unwrap();
        let bytes = compile(&cfg, Stamp::default()).unwrap();
        let (img, settings) = Image::open(Arc::new(bytes), Path::new("t.conf.tgc")).unwrap();
        (Policy::new(cfg), Policy::from_image(settings, img))
    }

    #[test]
    fn too_many_star_ways_fall_back_the_same() {
        // As index.rs's test: 32 ways live at once down /b/b/b/b/b, so both try each pattern.
        let mut text = String::new();
        for m in 0..32u32 {
            let parts: String = (0..5)
                .map(|k| if m & (1 << k) != 0 { "/*" } else { "/b" })
                .collect();
            text.push_str(&format!("root {parts}/end\n"));
        }
        let (parsed, image) = both(&text);
        for p in [
            "/b/b/b/b/b/end",
            "/b/b/b/b/b/end/x",
            "/c/c/c/c/c/end",
            "/b/b/b/b/b",
            "/b/b/b/b/b/../b/end",
        ] {
            let (mut a, mut b) = (ScratchPath::new(), ScratchPath::new());
            assert_eq!(
                parsed.classify(None, p.as_bytes(), &mut a),
                image.classify(None, p.as_bytes(), &mut b),
                "{p}"
            );
            assert_eq!(
                parsed.classify_clean(p.as_bytes()),
                image.classify_clean(p.as_bytes()),
                "{p}"
            );
        }
        assert!(matches!(
            image.classify_clean(b"/b/b/b/b/b/end"),
            Some(Target::Guarded { root: 0, .. })
        ));
        assert_eq!(
            parsed.may_guard_below(b"/b/b/b/b"),
            image.may_guard_below(b"/b/b/b/b")
        );
    }

    #[test]
    fn every_setting_survives_compiling() {
        let text = "mode audit\nowner euid\nallow_uid 0 33\nprograms nginx php-fpm*\nlog_socket /run/x.sock\n\
                    log_rate 5\ncache_ttl_ms 200\ncache_slots 1024\ncache_shared 33\nroot /home/*/public_html\n";
        let cfg = Config::parse(text, Path::new("t.conf")).unwrap();
        let (_, image) = both(text);
        let mut want = cfg.clone();
        want.roots.clear();
        want.source = image.config().source.clone();
        assert_eq!(image.config(), &want);
        let (_, image) = both("root /x\n");
        assert_eq!(image.config().cache_shared, None, "the defaults too");
    }

    #[test]
    fn an_image_of_the_previous_version_is_refused() {
        // Version 1 wrote `cache_shared on`, which this version must not read as a uid;
        // version 2's nodes are 12 bytes, without the runs.
        let cfg = Config::parse("root /a/*/b\n", Path::new("t.conf")).unwrap();
        for old in [1u32, 2] {
            let mut bytes = compile(&cfg, Stamp::default()).unwrap();
            bytes[8..12].copy_from_slice(&old.to_le_bytes());
            let e = Image::open(Arc::new(bytes), Path::new("/etc/t.conf.tgc")).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "/etc/t.conf.tgc: compiled form: format version {old}, this guard reads version 3 (run toctou-guard compile)"
                )
            );
        }
    }

    #[test]
    fn past_the_size_cap_is_a_clear_error() {
        let cfg = Config::parse("root /a/*/b\nmap /srv/x 5\n", Path::new("t.conf")).unwrap();
        let size = compile(&cfg, Stamp::default()).unwrap().len() as u64;
        assert!(compile_within(&cfg, Stamp::default(), size).is_ok());
        assert_eq!(
            compile_within(&cfg, Stamp::default(), size - 1).unwrap_err(),
            "the compiled form would be larger than 64 MiB, the limit"
        );
    }

    #[test]
    fn a_run_at_a_node_with_a_star_is_refused() {
        let cfg = Config::parse("root /a/b/*/c\n", Path::new("t.conf")).unwrap();
        let mut bytes = compile(&cfg, Stamp::default()).unwrap();
        let (nodes, count) = (u32_at(&bytes, 80) as usize, u32_at(&bytes, 84) as usize);
        let node = |b: &[u8], i: usize, k: usize| u32_at(b, nodes + i * NODE_REC + 4 * k);
        // The `*`'s parent heads no run; give it the run its `*` child heads (`c`): in bounds,
        // a target above it, one level — but a walk must branch there, not take the run.
        let starred = (0..count).find(|&i| node(&bytes, i, 0) != NONE).unwrap();
        let star = node(&bytes, starred, 0) as usize;
        assert_eq!(node(&bytes, starred, 3), NONE);
        assert_ne!(node(&bytes, star, 3), NONE);
        let run = nodes + star * NODE_REC + 12;
        let copy: Vec<u8> = bytes[run..run + 16].to_vec();
        let at = nodes + starred * NODE_REC + 12;
        bytes[at..at + 16].copy_from_slice(&copy);
        let e = Image::open(Arc::new(bytes), Path::new("/etc/t.conf.tgc")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("/etc/t.conf.tgc: compiled form: node {starred} is malformed")
        );
    }

    #[test]
    fn a_node_pointing_back_is_refused() {
        let cfg = Config::parse("root /a/*/b\n", Path::new("t.conf")).unwrap();
        let mut bytes = compile(&cfg, Stamp::default()).unwrap();
        let nodes = u32_at(&bytes, 80) as usize;
        // Node 1's `*` child pointed at node 0: a cycle a walk could go round.
        bytes[nodes + NODE_REC..nodes + NODE_REC + 4].copy_from_slice(&0u32.to_le_bytes());
        let e = Image::open(Arc::new(bytes), Path::new("/etc/t.conf.tgc")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/t.conf.tgc: compiled form: node 1 is malformed"
        );
    }
}
