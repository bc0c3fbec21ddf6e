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
use std::os::fd::OwnedFd;
use std::sync::{Arc, OnceLock};

use fuser::FileType;
use parking_lot::Mutex;

/// The root's FUSE inode number.
pub const ROOT: u64 = 1;
/// Numbers not taken from `st_ino` start here (above any real `st_ino` we accept).
const SYNTHETIC_BASE: u64 = 1 << 62;

/// The tenant a node is judged for.
#[derive(Debug)]
pub struct Tenant {
    /// The expected owner: the tenant directory's owner (or `--owner`).
    pub uid: u32,
    /// Absolute path of the tenant directory, for log lines.
    pub path: Box<[u8]>,
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
    /// `O_PATH` handle (or, for files created through the mount, the creating fd):
    /// pins the checked object; every read, readdir and attribute comes from it.
    pub fd: OwnedFd,
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
    pub rfd: OnceLock<OwnedFd>,
    /// Read-write reopen of `fd`, made on first write (`-o rw`).
    pub wfd: OnceLock<OwnedFd>,
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
}

#[derive(Default)]
pub struct Nodes {
    table: Mutex<Table>,
    /// The fd valve, woken when the table grows past `high_water`.
    valve: OnceLock<(std::thread::Thread, usize)>,
}

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
    fn new(ino: u64, new: NewNode) -> Node {
        Node {
            ino,
            parent: new.parent,
            fd: new.fd,
            kind: new.kind,
            depth: new.depth,
            tenant: new.tenant,
            judged: new.judged,
            name: new.name,
            path_len: new.path_len,
            readable: new.readable,
            rfd: OnceLock::new(),
            wfd: OnceLock::new(),
            alias: new.alias,
            ctime: Mutex::new(new.ctime),
        }
    }
}

impl Nodes {
    pub fn insert_root(&self, key: Key, new: NewNode) {
        let mut t = self.table.lock();
        t.next_synthetic = SYNTHETIC_BASE;
        let node = Arc::new(Node::new(
            ROOT,
            NewNode {
                parent: ROOT,
                depth: 0,
                ..new
            },
        ));
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

    /// The node for `key`, its lookup count raised by one; built from `new` if unknown.
    /// `root_dev` lets objects on SOURCE's filesystem keep their `st_ino` as inode number.
    pub fn lookup(&self, key: Key, root_dev: u64, new: NewNode) -> Arc<Node> {
        let mut t = self.table.lock();
        if let Some(&ino) = t.by_key.get(&key)
            && let Some(e) = t.by_ino.get_mut(&ino)
        {
            e.nlookup += 1;
            return e.node.clone();
        }
        let natural = key.dev == root_dev
            && key.ino > ROOT
            && key.ino < SYNTHETIC_BASE
            && !t.by_ino.contains_key(&key.ino);
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
        let node = Arc::new(Node::new(ino, new));
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
            && t.by_ino.len() > *high
        {
            valve.unpark();
        }
        node
    }

    /// The kernel dropped `n` references; forget the node at zero.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let mut t = self.table.lock();
        let gone = match t.by_ino.get_mut(&ino) {
            Some(e) => {
                e.nlookup = e.nlookup.saturating_sub(n);
                (e.nlookup == 0).then_some(e.key)
            }
            None => None,
        };
        if let Some(key) = gone {
            t.by_ino.remove(&ino);
            if t.by_key.get(&key) == Some(&ino) {
                t.by_key.remove(&key);
            }
        }
    }
}
