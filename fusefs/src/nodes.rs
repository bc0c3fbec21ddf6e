//! The inode table: one [`Node`] per FUSE inode the kernel knows, each holding the exact
//! object it was checked on.
//!
//! A node is keyed by the object (`st_dev`, `st_ino`) *and* by the tenant it was judged
//! for: the same file reached from two tenants' trees is two nodes with two decisions.
//! Directories reached through a symlink get their own node (an `alias`), so the kernel
//! never sees one directory inode under two parents.
//! `forget` drops nodes (and their fds) once the kernel's lookup count reaches zero, so
//! memory and fds stay bounded by what the kernel caches.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use fuser::FileType;
use parking_lot::Mutex;

/// Descriptors the daemon holds for nodes and open handles right now ([`Held`]): what the
/// fd valve and the limits compare, not the number of nodes (a node may hold a shared
/// descriptor, or up to three of its own).
static HELD_FDS: AtomicUsize = AtomicUsize::new(0);

/// How many [`Held`] descriptors are open.
pub fn held_fds() -> usize {
    HELD_FDS.load(Ordering::Relaxed)
}

/// A descriptor the daemon keeps beyond one request, counted in [`held_fds`].
#[derive(Debug)]
pub struct Held(OwnedFd);

impl Held {
    pub fn new(fd: OwnedFd) -> Held {
        HELD_FDS.fetch_add(1, Ordering::Relaxed);
        Held(fd)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD_FDS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for Held {
    type Target = OwnedFd;
    fn deref(&self) -> &OwnedFd {
        &self.0
    }
}

impl AsFd for Held {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A write descriptor is closed once unused this long (the next write reopens it).
pub const WRITE_IDLE: Duration = Duration::from_secs(1);

/// The root's FUSE inode number (the daemon's own number for SOURCE's root; see
/// [`BOUND_ROOT`] for what the kernel calls it when the mount point is a bind mount).
pub const ROOT: u64 = 1;
/// Numbers not taken from `st_ino` start here (above any real `st_ino` we accept).
const SYNTHETIC_BASE: u64 = 1 << 62;
/// SOURCE's root as the kernel knows it when the mount point is a bind mount of it
/// (`main.rs`, `bind_root`): the kernel creates its own root inode (number 1) before INIT
/// enables POSIX ACLs and never caches that inode's ACL, so every walk through it by a
/// non-owner cost a GETXATTR round trip and an RCU-walk restart. Number 1 is then an empty
/// staging directory that only names SOURCE's root ([`STAGE_NAME`]), an ordinary inode
/// whose ACL the kernel caches. Never a natural number (below [`SYNTHETIC_BASE`], excluded
/// in [`Nodes::lookup`]).
pub const BOUND_ROOT: u64 = SYNTHETIC_BASE - 1;
/// The staging root's one name: SOURCE's root.
pub const STAGE_NAME: &[u8] = b"source";
/// Set once, before the mount, when the mount point is to be a bind mount of
/// [`STAGE_NAME`]: a property of the whole process (one mount per daemon).
static ROOT_BOUND: AtomicBool = AtomicBool::new(false);

/// From now on the kernel's inode 1 is the staging root and SOURCE's root is [`BOUND_ROOT`].
pub fn set_root_bound() {
    ROOT_BOUND.store(true, Ordering::Relaxed);
}

/// Is the kernel's inode `ino` the staging root (nothing of SOURCE)?
pub fn is_stage_root(ino: u64) -> bool {
    ino == ROOT && ROOT_BOUND.load(Ordering::Relaxed)
}

/// The kernel's number for the daemon's node `ino`.
pub fn kernel_ino(ino: u64) -> u64 {
    if ino == ROOT && ROOT_BOUND.load(Ordering::Relaxed) {
        BOUND_ROOT
    } else {
        ino
    }
}

/// The daemon's node for the kernel's number `ino` (the staging root maps to none).
pub fn node_ino(ino: u64) -> Option<u64> {
    if !ROOT_BOUND.load(Ordering::Relaxed) {
        return Some(ino);
    }
    match ino {
        ROOT => None,
        BOUND_ROOT => Some(ROOT),
        n => Some(n),
    }
}

/// The tenant a node is judged for.
#[derive(Debug)]
pub struct Tenant {
    /// The expected owner: the tenant directory's owner (or `--owner`).
    pub uid: u32,
    /// Absolute path of the tenant directory, for log lines.
    pub path: Box<[u8]>,
    /// `owner euid` (`--owner caller`): the expected owner is the uid of the process making
    /// each request, not `uid` (which still keys the nodes and owns root's creates).
    pub by_caller: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub dev: u64,
    pub ino: u64,
    /// `u32::MAX` above the tenant level.
    pub tenant_uid: u32,
    /// 0, or an id of the symlink through which a directory was reached.
    pub alias: u64,
}

pub struct Node {
    pub ino: u64,
    /// The inode it was first looked up in (for invalidation notices).
    pub parent: u64,
    /// `O_PATH` handle (a regular file's: open `O_RDONLY`, see `readable`): pins the
    /// checked object; every read, readdir and attribute comes from it. Shared by every
    /// node of the same object (aliases through links, other tenants' views), so 20,000
    /// names of one directory cost one descriptor.
    pub fd: Arc<Held>,
    pub kind: FileType,
    /// Depth below SOURCE of the name it was looked up by (the root is 0).
    pub depth: u32,
    pub tenant: Option<Arc<Tenant>>,
    /// Whether the rule judges this node's own object: false outside every root and for a
    /// tenant directory reached by its own name (it is its own owner).
    pub judged: bool,
    /// The name it was looked up by in `parent` (empty for the root): with `parent`, all
    /// a node keeps of its path (a full path per node made memory grow with the square
    /// of the depth). Only log lines rebuild the path.
    pub name: Box<[u8]>,
    /// Length of the path below SOURCE it was looked up by (`/a/b`: 4), for the cap.
    pub path_len: u32,
    /// `fd` itself is open for reading (regular files are reopened `O_RDONLY` from the
    /// `O_PATH` handle at lookup: one fd per inode, and reads need no further open).
    pub readable: bool,
    /// Read-only reopen of `fd`, made on first read when `fd` is not `readable`.
    pub rfd: OnceLock<Held>,
    /// Read-write reopen of `fd`, made on a write (`-o rw`), closed by the fd valve after
    /// [`WRITE_IDLE`] without one.
    pub wfd: Mutex<Option<Arc<Held>>>,
    /// When `wfd` was last used (ms since the table's start).
    pub last_write: AtomicU64,
    /// `Key::alias`: non-zero for a directory reached through a link, and for every
    /// directory below one (each is its own inode, never its real path's).
    pub alias: u64,
    /// The object's ctime (seconds, nanoseconds) when the kernel was last told about it: a
    /// change the kernel's mtime/size check would miss invalidates its cached pages.
    pub ctime: Mutex<(i64, i64)>,
}

struct Entry {
    node: Arc<Node>,
    nlookup: u64,
    key: Key,
}

#[derive(Default)]
struct Table {
    by_ino: HashMap<u64, Entry>,
    by_key: HashMap<Key, u64>,
    next_synthetic: u64,
    /// The shared descriptor of each object some node holds: (dev, ino, readable).
    shared: HashMap<(u64, u64, bool), Weak<Held>>,
    /// Live nodes per tenant uid.
    per_tenant: HashMap<u32, usize>,
}

#[derive(Default)]
pub struct Nodes {
    table: Mutex<Table>,
    /// The fd valve, woken when the held descriptors grow past `high_water`.
    valve: OnceLock<(std::thread::Thread, usize)>,
    /// Most nodes one tenant may have (see [`Nodes::set_quota`]); 0 until set: none.
    quota: AtomicUsize,
    /// Nodes with an open write descriptor, for the valve to close when idle.
    writers: Mutex<Vec<Weak<Node>>>,
    start: OnceLock<Instant>,
}

/// A new node would take its tenant past its quota.
#[derive(Debug)]
pub struct OverQuota;

/// What to build if the key is new.
pub struct NewNode {
    pub parent: u64,
    pub fd: OwnedFd,
    pub kind: FileType,
    pub depth: u32,
    pub tenant: Option<Arc<Tenant>>,
    pub judged: bool,
    pub name: Box<[u8]>,
    pub path_len: u32,
    pub readable: bool,
    pub alias: u64,
    pub ctime: (i64, i64),
}

impl Node {
    fn new(ino: u64, new: NewNode, fd: Arc<Held>) -> Node {
        Node {
            ino,
            parent: new.parent,
            fd,
            kind: new.kind,
            depth: new.depth,
            tenant: new.tenant,
            judged: new.judged,
            name: new.name,
            path_len: new.path_len,
            readable: new.readable,
            rfd: OnceLock::new(),
            wfd: Mutex::new(None),
            last_write: AtomicU64::new(0),
            alias: new.alias,
            ctime: Mutex::new(new.ctime),
        }
    }
}

impl Nodes {
    pub fn insert_root(&self, key: Key, new: NewNode) {
        let mut t = self.table.lock();
        t.next_synthetic = SYNTHETIC_BASE;
        let fd = Arc::new(Held::new(new.fd));
        let new = NewNode {
            parent: ROOT,
            depth: 0,
            fd: fd.try_clone().expect("dup of SOURCE's fd"),
            ..new
        };
        // The dup in `new` is dropped: the root holds `fd`.
        let node = Arc::new(Node::new(ROOT, new, fd));
        t.by_key.insert(key, ROOT);
        t.by_ino.insert(
            ROOT,
            Entry {
                node,
                nlookup: 1,
                key,
            },
        );
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Node>> {
        self.table.lock().by_ino.get(&ino).map(|e| e.node.clone())
    }

    /// Wake `valve` whenever more than `high_water` nodes are live.
    pub fn set_valve(&self, valve: std::thread::Thread, high_water: usize) {
        let _ = self.valve.set((valve, high_water));
    }

    pub fn len(&self) -> usize {
        self.table.lock().by_ino.len()
    }

    /// At most `quota` nodes per tenant: one tenant pinning names (open `O_PATH`
    /// descriptors keep the kernel from forgetting them) cannot take the descriptors
    /// every other tenant needs.
    pub fn set_quota(&self, quota: usize) {
        self.quota.store(quota, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        self.start.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    /// `node`'s write descriptor (opened with `open` if it has none), marked as used now.
    pub fn write_fd(
        &self,
        node: &Arc<Node>,
        open: impl FnOnce() -> Result<OwnedFd, nix::errno::Errno>,
    ) -> Result<Arc<Held>, nix::errno::Errno> {
        node.last_write.store(self.now_ms(), Ordering::Relaxed);
        let mut w = node.wfd.lock();
        if let Some(fd) = w.as_ref() {
            return Ok(fd.clone());
        }
        let fd = Arc::new(Held::new(open()?));
        *w = Some(fd.clone());
        drop(w);
        self.writers.lock().push(Arc::downgrade(node));
        Ok(fd)
    }

    /// Close write descriptors unused for `idle` (a write in flight keeps its own
    /// reference until it is done).
    pub fn close_idle_writers(&self, idle: Duration) {
        let now = self.now_ms();
        let idle = idle.as_millis() as u64;
        self.writers.lock().retain(|w| {
            let Some(node) = w.upgrade() else {
                return false;
            };
            if now.saturating_sub(node.last_write.load(Ordering::Relaxed)) < idle {
                return true;
            }
            node.wfd.lock().take();
            false
        });
    }

    /// Up to `n` (parent inode, name) pairs of known nodes other than the root: entries the
    /// fd valve asks the kernel to drop, so that it forgets their inodes and we their fds.
    pub fn victims(&self, n: usize) -> Vec<(u64, Box<[u8]>)> {
        // Any node but the root: dropping a directory's entry drops its cached subtree at
        // once, which relieves the table much faster than one leaf per notice.
        let t = self.table.lock();
        t.by_ino
            .values()
            .filter(|e| e.node.ino != ROOT)
            .take(n)
            .map(|e| (e.node.parent, e.node.name.clone()))
            .collect()
    }

    /// (parent inode, name) pairs of nodes of every tenant past 70% of its quota, enough
    /// to bring each back to 50% once the kernel forgets them (names a process keeps open
    /// stay: those are the tenant's own to release).
    pub fn tenant_victims(&self) -> Vec<(u64, Box<[u8]>)> {
        let quota = self.quota.load(Ordering::Relaxed);
        if quota == 0 {
            return Vec::new();
        }
        let t = self.table.lock();
        let mut excess: HashMap<u32, usize> = t
            .per_tenant
            .iter()
            .filter(|&(_, &n)| n > quota / 10 * 7)
            .map(|(&uid, &n)| (uid, n - quota / 2))
            .collect();
        if excess.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for e in t.by_ino.values() {
            if let Some(n) = excess.get_mut(&e.key.tenant_uid)
                && *n > 0
                && e.node.tenant.is_some()
            {
                *n -= 1;
                out.push((e.node.parent, e.node.name.clone()));
            }
        }
        out
    }

    /// The node for `key`, its lookup count raised by one; built from `new` if unknown.
    /// `root_dev` lets objects on SOURCE's filesystem keep their `st_ino` as inode number.
    pub fn lookup(&self, key: Key, root_dev: u64, new: NewNode) -> Result<Arc<Node>, OverQuota> {
        let mut t = self.table.lock();
        if let Some(&ino) = t.by_key.get(&key)
            && let Some(e) = t.by_ino.get_mut(&ino)
        {
            e.nlookup += 1;
            return Ok(e.node.clone());
        }
        let quota = self.quota.load(Ordering::Relaxed);
        let tenant_nodes = t.per_tenant.get(&key.tenant_uid).copied().unwrap_or(0);
        if new.tenant.is_some() && quota > 0 && tenant_nodes >= quota {
            if let Some((valve, _)) = self.valve.get() {
                valve.unpark();
            }
            return Err(OverQuota);
        }
        let natural =
            key.dev == root_dev && key.ino > ROOT && key.ino < BOUND_ROOT && !t.by_ino.contains_key(&key.ino);
        let ino = if natural {
            key.ino
        } else {
            loop {
                let n = t.next_synthetic;
                t.next_synthetic += 1;
                if !t.by_ino.contains_key(&n) {
                    break n;
                }
            }
        };
        let shared_key = (key.dev, key.ino, new.readable);
        let fd = match t.shared.get(&shared_key).and_then(Weak::upgrade) {
            // The new descriptor (of the same object) is closed when `new` drops.
            Some(fd) => fd,
            None => {
                let fd = Arc::new(Held::new(new.fd.try_clone().map_err(|_| OverQuota)?));
                t.shared.insert(shared_key, Arc::downgrade(&fd));
                fd
            }
        };
        if new.tenant.is_some() {
            *t.per_tenant.entry(key.tenant_uid).or_default() += 1;
        }
        let node = Arc::new(Node::new(ino, new, fd));
        t.by_key.insert(key, ino);
        t.by_ino.insert(
            ino,
            Entry {
                node: node.clone(),
                nlookup: 1,
                key,
            },
        );
        if let Some((valve, high)) = self.valve.get()
            && held_fds() > *high
        {
            valve.unpark();
        }
        Ok(node)
    }

    /// The kernel dropped `n` references; forget the node at zero.
    pub fn forget(&self, ino: u64, n: u64) {
        let Some(ino) = node_ino(ino).filter(|&i| i != ROOT) else {
            return;
        };
        let mut t = self.table.lock();
        let gone = match t.by_ino.get_mut(&ino) {
            Some(e) => {
                e.nlookup = e.nlookup.saturating_sub(n);
                (e.nlookup == 0).then_some(e.key)
            }
            None => None,
        };
        if let Some(key) = gone
            && let Some(e) = t.by_ino.remove(&ino)
        {
            if t.by_key.get(&key) == Some(&ino) {
                t.by_key.remove(&key);
            }
            if e.node.tenant.is_some()
                && let Some(n) = t.per_tenant.get_mut(&key.tenant_uid)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    t.per_tenant.remove(&key.tenant_uid);
                }
            }
            // The last node of the object: forget its shared slot too.
            let shared_key = (key.dev, key.ino, e.node.readable);
            if Arc::strong_count(&e.node.fd) == 1 {
                t.shared.remove(&shared_key);
            }
        }
    }
}
