//! The filesystem: every FUSE request, following fuser's `simple.rs` shape (a helper
//! returning `Result<T, Errno>`, then exactly one reply).
//!
//! The rule is applied in [`GuardFs::resolve_child`], at `lookup`: the name is opened by
//! the daemon (`O_PATH|O_NOFOLLOW`, relative to the parent's held fd), the opened object's
//! owner is compared with the tenant's, and only then does the kernel get an entry, whose
//! inode is served from that held object and nothing else. A swap of the name afterwards
//! can only cause a new `lookup`, which is checked again. That is why the kernel may skip
//! OPEN and FLUSH (no-open mode) and keep file data in its page cache.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use nix::fcntl::OFlag;
use nix::sys::stat::FileStat;
use parking_lot::Mutex;
use std::collections::HashMap;
use toctou_policy::{Decision, DenyReason, Policy};

use crate::args::DataMode;
use crate::denylog::{DenyLog, Event};
use crate::nodes::{Key, NewNode, Node, Nodes, ROOT, Tenant};
use crate::resolve::{self, Followed};
use crate::stats::{Stats, bump};
use crate::syscalls;

const NO_TENANT: u32 = u32::MAX;

fn errno(e: nix::errno::Errno) -> Errno {
    Errno::from_i32(e as i32)
}

/// Settings fixed at start.
pub struct Settings {
    pub mode: DataMode,
    pub rw: bool,
    pub tenant_depth: u32,
    /// `--owner`: the root itself is the tenant, owned by this uid.
    pub owner: Option<u32>,
    pub entry_ttl: Duration,
    pub attr_ttl: Duration,
    /// Absolute, canonical SOURCE (for `tenant=` in logs).
    pub source_abs: Vec<u8>,
    /// Absolute paths naming SOURCE's root in symlink targets: SOURCE and the mount point.
    pub prefixes: Vec<Vec<u8>>,
}

/// Open handles in passthrough mode: one backing id per inode while any handle is open.
#[derive(Default)]
struct Backing {
    by_fh: HashMap<u64, (Arc<BackingId>, Arc<OwnedFd>)>,
    by_ino: HashMap<u64, (Weak<BackingId>, Weak<OwnedFd>)>,
    next_fh: u64,
}

pub struct GuardFs {
    policy: Policy,
    settings: Settings,
    nodes: Arc<Nodes>,
    root_dev: u64,
    root_fd: Arc<OwnedFd>,
    log: DenyLog,
    pub stats: Arc<Stats>,
    backing: Mutex<Backing>,
    euid: u32,
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    let ns = nsec.clamp(0, 999_999_999) as u32;
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, ns)
    } else {
        UNIX_EPOCH - Duration::new(sec.unsigned_abs(), 0) + Duration::new(0, ns)
    }
}

fn kind_of(st: &FileStat) -> Result<FileType, Errno> {
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => FileType::RegularFile,
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => return Err(Errno::EIO),
    })
}

fn attr_of(ino: u64, st: &FileStat) -> Result<FileAttr, Errno> {
    Ok(FileAttr {
        ino: INodeNo(ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: kind_of(st)?,
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    })
}

fn join(parent: &[u8], name: &[u8]) -> Box<[u8]> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p.into_boxed_slice()
}

/// A stable id for "the directory reached through link `name` in `parent`".
fn alias_id(parent: u64, name: &[u8]) -> u64 {
    // FNV-1a; collisions only merge two symlink aliases of the same directory object.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ parent.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

/// A looked-up child, accepted by the rule.
struct Child {
    node: Arc<Node>,
    st: FileStat,
}

impl GuardFs {
    pub fn new(
        policy: Policy,
        settings: Settings,
        root_fd: OwnedFd,
        log: DenyLog,
        stats: Arc<Stats>,
    ) -> Result<GuardFs, String> {
        let st = syscalls::fstat(&root_fd).map_err(|e| format!("fstat SOURCE: {e}"))?;
        let tenant = settings.owner.map(|uid| {
            Arc::new(Tenant {
                uid,
                path: settings.source_abs.clone().into_boxed_slice(),
            })
        });
        let tenant = match (tenant, settings.tenant_depth) {
            (Some(t), _) => Some(t),
            (None, 0) => Some(Arc::new(Tenant {
                uid: st.st_uid,
                path: settings.source_abs.clone().into_boxed_slice(),
            })),
            (None, _) => None,
        };
        let root_fd = Arc::new(root_fd);
        let nodes = Arc::new(Nodes::default());
        let dup = root_fd.try_clone().map_err(|e| format!("dup SOURCE fd: {e}"))?;
        nodes.insert_root(
            Key {
                dev: st.st_dev,
                ino: st.st_ino,
                tenant_uid: tenant.as_ref().map_or(NO_TENANT, |t| t.uid),
                alias: 0,
            },
            NewNode {
                parent: ROOT,
                fd: dup,
                kind: FileType::Directory,
                depth: 0,
                tenant,
                path: Box::from(&b"/"[..]),
                readable: false,
            },
        );
        Ok(GuardFs {
            policy,
            settings,
            nodes,
            root_dev: st.st_dev,
            root_fd,
            log,
            stats,
            backing: Mutex::new(Backing::default()),
            euid: syscalls::euid(),
        })
    }

    /// The inode table, shared with the fd valve.
    pub fn nodes(&self) -> Arc<Nodes> {
        self.nodes.clone()
    }

    fn node(&self, ino: INodeNo) -> Result<Arc<Node>, Errno> {
        self.nodes.get(ino.0).ok_or(Errno::ESTALE)
    }

    /// Log a refusal; `Err(EACCES)` unless audit mode lets it through.
    fn refuse(
        &self,
        decision: Decision,
        path: &[u8],
        owner: Option<u32>,
        tenant: Option<&Tenant>,
    ) -> Result<(), Errno> {
        let (audit, reason) = match decision {
            Decision::Allow => return Ok(()),
            Decision::Deny(r) => (false, r),
            Decision::Audit(r) => (true, r),
        };
        bump(if audit {
            &self.stats.audited
        } else {
            &self.stats.denied
        });
        self.log.log(&Event {
            audit,
            reason,
            path,
            owner,
            expected: tenant.map(|t| t.uid),
            tenant: tenant.map_or(&self.settings.source_abs[..], |t| &t.path[..]),
        });
        if audit { Ok(()) } else { Err(Errno::EACCES) }
    }

    /// A refusal that even audit mode cannot let through: there is nothing inside SOURCE
    /// the daemon could serve instead (a link out of SOURCE, a symlinked tenant directory).
    fn refuse_structural(&self, reason: DenyReason, path: &[u8], tenant: Option<&Tenant>) -> Errno {
        let _ = self.refuse(Decision::Deny(reason), path, None, tenant);
        Errno::EACCES
    }

    /// Look `name` up in `parent`, apply the rule to the object found, and return it.
    fn resolve_child(&self, parent: &Node, name: &OsStr) -> Result<Child, Errno> {
        if parent.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        let name_b = name.as_bytes();
        if !syscalls::is_plain_name(name_b) {
            return Err(Errno::ENOENT);
        }
        let path = join(&parent.path, name_b);
        let depth = parent.depth + 1;
        let td = self.settings.tenant_depth;
        let fd = syscalls::open_child(&parent.fd, name).map_err(errno)?;
        let st = syscalls::fstat(&fd).map_err(errno)?;

        let (fd, st, via_link) = if resolve::is_symlink(&st) {
            let Some(tenant) = parent.tenant.as_deref().filter(|_| depth > td) else {
                // A link at or above the tenant level: its owner is not a tenant's word.
                return Err(self.refuse_structural(DenyReason::TenantIsSymlink, &path, None));
            };
            let target = syscalls::readlink_fd(&fd).map_err(errno)?;
            match resolve::follow(
                self.root_fd.as_fd(),
                &self.settings.prefixes,
                &parent.path,
                &target,
            )
            .map_err(errno)?
            {
                Followed::Object(fd, st) => (fd, st, true),
                Followed::Escapes => {
                    return Err(self.refuse_structural(DenyReason::EscapesTenant, &path, Some(tenant)));
                }
            }
        } else {
            (fd, st, false)
        };

        let tenant = if depth < td {
            None
        } else if depth == td && !via_link {
            let mut abs = self.settings.source_abs.clone();
            abs.extend_from_slice(&path);
            Some(Arc::new(Tenant {
                uid: st.st_uid,
                path: abs.into_boxed_slice(),
            }))
        } else {
            parent.tenant.clone()
        };
        if depth > td || via_link {
            // Below a tenant every node has one; fail closed if that ever breaks.
            let t = tenant.as_deref().ok_or(Errno::EACCES)?;
            // The rule, on the object we hold and will serve.
            self.refuse(
                self.policy.decide(st.st_uid, t.uid),
                &path,
                Some(st.st_uid),
                Some(t),
            )?;
        }

        let kind = kind_of(&st)?;
        // Hold a regular file open for reading: the same object (reopened through
        // /proc/self/fd, not by name), and no-open reads need nothing more.
        let (fd, readable) = if kind == FileType::RegularFile {
            match syscalls::reopen(&fd, OFlag::O_RDONLY | OFlag::O_NOATIME) {
                Ok(rfd) => (rfd, true),
                Err(_) => (fd, false),
            }
        } else {
            (fd, false)
        };
        let key = Key {
            dev: st.st_dev,
            ino: st.st_ino,
            tenant_uid: tenant.as_ref().map_or(NO_TENANT, |t| t.uid),
            alias: if via_link && kind == FileType::Directory {
                alias_id(parent.ino, name_b)
            } else {
                0
            },
        };
        let node = self.nodes.lookup(
            key,
            self.root_dev,
            NewNode {
                parent: parent.ino,
                fd,
                kind,
                depth,
                tenant,
                path,
                readable,
            },
        );
        self.stats
            .nodes_live
            .store(self.nodes.len() as u64, Ordering::Relaxed);
        Ok(Child { node, st })
    }

    fn entry(&self, reply: ReplyEntry, child: Result<Child, Errno>) {
        match child.and_then(|c| attr_of(c.node.ino, &c.st)) {
            Ok(attr) => reply.entry_with_ttls(
                &self.settings.attr_ttl,
                &self.settings.entry_ttl,
                &attr,
                Generation(0),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn do_getattr(&self, ino: INodeNo) -> Result<FileAttr, Errno> {
        let node = self.node(ino)?;
        let st = syscalls::fstat(&node.fd).map_err(errno)?;
        attr_of(node.ino, &st)
    }

    /// The node's read-only fd, reopened from the held object on first use.
    fn read_fd<'a>(&self, node: &'a Node) -> Result<&'a OwnedFd, Errno> {
        if node.kind != FileType::RegularFile {
            return Err(Errno::EISDIR);
        }
        if node.readable {
            return Ok(&node.fd);
        }
        if let Some(fd) = node.rfd.get() {
            return Ok(fd);
        }
        let fd = syscalls::reopen(&node.fd, OFlag::O_RDONLY | OFlag::O_NOATIME).map_err(errno)?;
        let _ = node.rfd.set(fd);
        node.rfd.get().ok_or(Errno::EIO)
    }

    fn write_fd<'a>(&self, node: &'a Node) -> Result<&'a OwnedFd, Errno> {
        if !self.settings.rw {
            return Err(Errno::EROFS);
        }
        if node.kind != FileType::RegularFile {
            return Err(Errno::EISDIR);
        }
        if let Some(fd) = node.wfd.get() {
            return Ok(fd);
        }
        let fd = syscalls::reopen(&node.fd, OFlag::O_RDWR).map_err(errno)?;
        let _ = node.wfd.set(fd);
        node.wfd.get().ok_or(Errno::EIO)
    }

    fn handle_fd(&self, fh: FileHandle) -> Option<Arc<OwnedFd>> {
        if fh.0 == 0 {
            return None;
        }
        self.backing.lock().by_fh.get(&fh.0).map(|(_, f)| f.clone())
    }

    fn do_read(&self, ino: INodeNo, fh: FileHandle, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let node = self.node(ino)?;
        let mut buf = vec![0u8; size as usize];
        let n = match self.handle_fd(fh) {
            Some(f) => syscalls::pread(&*f, &mut buf, offset),
            None => syscalls::pread(self.read_fd(&node)?, &mut buf, offset),
        }
        .map_err(errno)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn do_write(&self, ino: INodeNo, fh: FileHandle, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let node = self.node(ino)?;
        if !self.settings.rw {
            return Err(Errno::EROFS);
        }
        let n = match self.handle_fd(fh) {
            Some(f) => syscalls::pwrite(&*f, data, offset),
            None => syscalls::pwrite(self.write_fd(&node)?, data, offset),
        }
        .map_err(errno)?;
        Ok(n as u32)
    }

    /// Passthrough mode: check the held object again, then hand the kernel a backing file.
    fn do_open_passthrough(
        &self,
        ino: INodeNo,
        flags: OpenFlags,
        reply: &ReplyOpen,
    ) -> Result<(u64, Arc<BackingId>), Errno> {
        let node = self.node(ino)?;
        if node.kind != FileType::RegularFile {
            return Err(Errno::EISDIR);
        }
        let wants_write = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        if wants_write && !self.settings.rw {
            return Err(Errno::EROFS);
        }
        // The check at open, on the object the backing file will be opened from.
        let st = syscalls::fstat(&node.fd).map_err(errno)?;
        if node.depth > self.settings.tenant_depth {
            let t = node.tenant.as_deref().ok_or(Errno::EACCES)?;
            self.refuse(
                self.policy.decide(st.st_uid, t.uid),
                &node.path,
                Some(st.st_uid),
                Some(t),
            )?;
        }
        let mut b = self.backing.lock();
        b.next_fh += 1;
        let fh = b.next_fh;
        let existing = b
            .by_ino
            .get(&node.ino)
            .and_then(|(id, f)| Some((id.upgrade()?, f.upgrade()?)));
        let (id, file) = match existing {
            Some(pair) => pair,
            None => {
                let acc = if self.settings.rw {
                    OFlag::O_RDWR
                } else {
                    OFlag::O_RDONLY
                };
                let file = Arc::new(syscalls::reopen(&node.fd, acc).map_err(errno)?);
                let id = Arc::new(reply.open_backing(file.as_fd()).map_err(|e| {
                    eprintln!("toctou-guard-fs: FUSE passthrough: cannot register backing file: {e}");
                    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
                })?);
                b.by_ino
                    .insert(node.ino, (Arc::downgrade(&id), Arc::downgrade(&file)));
                (id, file)
            }
        };
        b.by_fh.insert(fh, (id.clone(), file));
        Ok((fh, id))
    }

    fn do_readdir(&self, ino: INodeNo, offset: u64, reply: &mut ReplyDirectory) -> Result<(), Errno> {
        let node = self.node(ino)?;
        if node.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        let dir = syscalls::open_dir_for_read(&node.fd).map_err(errno)?;
        let mut buf = vec![0u8; 32 * 1024];
        let mut off = offset;
        loop {
            let n = syscalls::getdents(&dir, off, &mut buf).map_err(errno)?;
            if n == 0 {
                return Ok(());
            }
            for d in syscalls::parse_dirents(&buf[..n]) {
                let kind = match d.d_type {
                    libc::DT_DIR => FileType::Directory,
                    libc::DT_FIFO => FileType::NamedPipe,
                    libc::DT_SOCK => FileType::Socket,
                    libc::DT_CHR => FileType::CharDevice,
                    libc::DT_BLK => FileType::BlockDevice,
                    // Links are shown as what they are served as; a regular file is the
                    // closest d_type that makes no promise of a link to read.
                    _ => FileType::RegularFile,
                };
                let d_ino = if d.name == b"." { node.ino } else { d.ino.max(2) };
                if reply.add(INodeNo(d_ino), d.next_off, kind, OsStr::from_bytes(d.name)) {
                    return Ok(());
                }
                off = d.next_off;
            }
        }
    }

    /// The parent must be inside a tenant for anything to be created, removed or renamed.
    fn writable_dir(&self, ino: INodeNo) -> Result<Arc<Node>, Errno> {
        if !self.settings.rw {
            return Err(Errno::EROFS);
        }
        let node = self.node(ino)?;
        if node.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        if node.tenant.is_none() || node.depth < self.settings.tenant_depth {
            return Err(Errno::EACCES);
        }
        Ok(node)
    }

    /// Run `f` with this thread's filesystem uid set to the tenant's (so what is created
    /// belongs to the tenant and passes the rule), when the daemon can switch.
    fn as_tenant<T>(&self, node: &Node, gid: u32, f: impl FnOnce() -> T) -> T {
        match node.tenant.as_deref() {
            Some(t) if self.euid == 0 => {
                let _cred = syscalls::FsCred::switch(t.uid, gid);
                f()
            }
            _ => f(),
        }
    }

    fn do_create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<Child, Errno> {
        let dir = self.writable_dir(parent)?;
        let perm = mode & !umask & 0o777;
        let fd = self
            .as_tenant(&dir, req.gid(), || {
                syscalls::create_child(&dir.fd, name, OFlag::from_bits_truncate(flags), perm)
            })
            .map_err(errno)?;
        drop(fd);
        self.resolve_child(&dir, name)
    }

    fn do_mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<Child, Errno> {
        let dir = self.writable_dir(parent)?;
        let perm = mode & !umask & 0o1777;
        self.as_tenant(&dir, req.gid(), || syscalls::mkdir_child(&dir.fd, name, perm))
            .map_err(errno)?;
        self.resolve_child(&dir, name)
    }

    #[allow(clippy::too_many_arguments)]
    fn do_setattr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> Result<FileAttr, Errno> {
        if !self.settings.rw {
            return Err(Errno::EROFS);
        }
        let node = self.node(ino)?;
        if let Some(m) = mode {
            // No set-id bits through the mount: files here belong to the tenant.
            syscalls::fchmod_held(&node.fd, m & 0o1777).map_err(errno)?;
        }
        if uid.is_some() || gid.is_some() {
            syscalls::fchown_held(&node.fd, uid, gid).map_err(errno)?;
        }
        if let Some(sz) = size {
            // O_TRUNC arrives here: atomic O_TRUNC is not negotiated, so the kernel sends
            // SETATTR(size) even though it never sends OPEN in no-open mode.
            match fh.and_then(|f| self.handle_fd(f)) {
                Some(f) => nix::unistd::ftruncate(&*f, sz as i64),
                None => syscalls::truncate_held(&node.fd, sz),
            }
            .map_err(errno)?;
        }
        if atime.is_some() || mtime.is_some() {
            let ts = |t: Option<TimeOrNow>| match t {
                None => nix::sys::time::TimeSpec::new(0, libc::UTIME_OMIT),
                Some(TimeOrNow::Now) => nix::sys::time::TimeSpec::new(0, libc::UTIME_NOW),
                Some(TimeOrNow::SpecificTime(t)) => {
                    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                    nix::sys::time::TimeSpec::new(d.as_secs() as i64, i64::from(d.subsec_nanos()))
                }
            };
            syscalls::utimens_held(&node.fd, &ts(atime), &ts(mtime)).map_err(errno)?;
        }
        let st = syscalls::fstat(&node.fd).map_err(errno)?;
        attr_of(node.ino, &st)
    }

    fn do_rename(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let from = self.writable_dir(parent)?;
        let to = self.writable_dir(newparent)?;
        let same_tenant = match (&from.tenant, &to.tenant) {
            (Some(a), Some(b)) => a.uid == b.uid,
            _ => false,
        };
        if !same_tenant {
            return Err(Errno::EXDEV);
        }
        syscalls::rename_child(&from.fd, name, &to.fd, newname, flags.bits()).map_err(errno)
    }
}

impl Filesystem for GuardFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Page cache kept across (absent) opens, dropped when the file's mtime/size changes.
        if config.add_capabilities(InitFlags::FUSE_AUTO_INVAL_DATA).is_err() {
            eprintln!(
                "toctou-guard-fs: kernel lacks FUSE_AUTO_INVAL_DATA: changes made to SOURCE outside the mount may be served stale from the page cache"
            );
        }
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        // FUSE_ATOMIC_O_TRUNC is deliberately not requested: without OPEN, the kernel
        // must send SETATTR(size=0) for O_TRUNC or the truncation would be lost.
        if self.settings.mode == DataMode::Passthrough {
            config
                .add_capabilities(InitFlags::FUSE_PASSTHROUGH)
                .map_err(|_| {
                    std::io::Error::other(
                        "the kernel does not offer FUSE_PASSTHROUGH (needs Linux >= 6.9 and CONFIG_FUSE_PASSTHROUGH)",
                    )
                })?;
            config
                .set_max_stack_depth(1)
                .map_err(|_| std::io::Error::other("cannot set max_stack_depth 1"))?;
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        bump(&self.stats.lookup);
        let child = self.node(parent).and_then(|p| self.resolve_child(&p, name));
        self.entry(reply, child);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        bump(&self.stats.forget);
        self.nodes.forget(ino.0, nlookup);
        self.stats
            .nodes_live
            .store(self.nodes.len() as u64, Ordering::Relaxed);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        bump(&self.stats.getattr);
        match self.do_getattr(ino) {
            Ok(attr) => reply.attr(&self.settings.attr_ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        bump(&self.stats.setattr);
        match self.do_setattr(ino, mode, uid, gid, size, atime, mtime, fh) {
            Ok(attr) => reply.attr(&self.settings.attr_ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, _ino: INodeNo, reply: ReplyData) {
        // Never reached: links are resolved by the daemon and served as their targets.
        bump(&self.stats.other);
        reply.error(Errno::EINVAL);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        bump(&self.stats.open);
        match self.settings.mode {
            // ENOSYS once: the kernel stops sending OPEN (and RELEASE) for good and opens
            // with FOPEN_KEEP_CACHE. The decision was made at lookup on the held object.
            DataMode::NoOpen => reply.error(Errno::ENOSYS),
            DataMode::Passthrough => match self.do_open_passthrough(ino, flags, &reply) {
                Ok((fh, id)) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id),
                Err(e) => reply.error(e),
            },
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        bump(&self.stats.opendir);
        // ENOSYS once: no OPENDIR/RELEASEDIR any more; readdir works from the held fd.
        reply.error(Errno::ENOSYS);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        bump(&self.stats.read);
        match self.do_read(ino, fh, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        bump(&self.stats.write);
        match self.do_write(ino, fh, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lo: LockOwner, reply: ReplyEmpty) {
        bump(&self.stats.flush);
        // ENOSYS once: the kernel stops sending FLUSH on close (writes are synchronous).
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        bump(&self.stats.release);
        if fh.0 != 0 {
            let mut b = self.backing.lock();
            b.by_fh.remove(&fh.0);
            // The last handle of the inode gone: its backing id is freed; forget the slot.
            let dead = b.by_ino.get(&ino.0).is_some_and(|(id, _)| id.strong_count() == 0);
            if dead {
                b.by_ino.remove(&ino.0);
            }
        }
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        bump(&self.stats.fsync);
        let r = self.node(ino).and_then(|n| match n.wfd.get() {
            Some(fd) if datasync => nix::unistd::fdatasync(fd).map_err(errno),
            Some(fd) => nix::unistd::fsync(fd).map_err(errno),
            None => Ok(()),
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        bump(&self.stats.readdir);
        match self.do_readdir(ino, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        bump(&self.stats.releasedir);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        bump(&self.stats.statfs);
        match nix::sys::statvfs::fstatvfs(&*self.root_fd) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        bump(&self.stats.create);
        match self
            .do_create(req, parent, name, mode, umask, flags)
            .and_then(|c| attr_of(c.node.ino, &c.st))
        {
            Ok(attr) => reply.created(
                &self.settings.entry_ttl,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        bump(&self.stats.mkdir);
        let child = self.do_mkdir(req, parent, name, mode, umask);
        self.entry(reply, child);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        bump(&self.stats.unlink);
        let r = self
            .writable_dir(parent)
            .and_then(|d| syscalls::unlink_child(&d.fd, name, false).map_err(errno));
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        bump(&self.stats.rmdir);
        let r = self
            .writable_dir(parent)
            .and_then(|d| syscalls::unlink_child(&d.fd, name, true).map_err(errno));
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        bump(&self.stats.rename);
        match self.do_rename(parent, name, newparent, newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        // Links are never shown to the kernel, so none can be made through the mount.
        bump(&self.stats.other);
        reply.error(Errno::EPERM);
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        bump(&self.stats.other);
        reply.error(Errno::EPERM);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        bump(&self.stats.other);
        reply.error(Errno::EPERM);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(&*join(b"/", b"a"), b"/a");
        assert_eq!(&*join(b"/a", b"b"), b"/a/b");
        assert_ne!(alias_id(1, b"x"), alias_id(2, b"x"));
        assert_eq!(time(1, 5), UNIX_EPOCH + Duration::new(1, 5));
    }
}
