//! The filesystem: the daemon's state and every FUSE request, following fuser's `simple.rs`
//! shape: each request bumps its counter, calls one helper returning `Result<T, Errno>`,
//! and ends in exactly one reply. The helpers live by idea: [`crate::lookup`] (lookup and
//! the rule), [`crate::attr`] (attributes), [`crate::data`] (contents and listings) and
//! [`crate::mutate`] (changes through the mount).
//!
//! The rule is applied in [`GuardFs::resolve_child`], at `lookup`: the name is opened by
//! the daemon (`O_PATH|O_NOFOLLOW`, relative to the parent's held fd), the opened object's
//! owner is compared with the tenant's, and only then does the kernel get an entry, whose
//! inode is served from that held object and nothing else. A swap of the name afterwards
//! can only cause a new `lookup`, which is checked again. That is why the kernel may skip
//! OPEN and FLUSH (no-open mode) and keep file data in its page cache.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use toctou_policy::Policy;

use crate::args::DataMode;
use crate::data::Backing;
use crate::denylog::DenyLog;
use crate::lookup::{Caller, root_node};
use crate::mutate::SetAttr;
use crate::nodes::{self, Node, Nodes};
use crate::stats::{Stats, bump};
use crate::syscalls;
use crate::xattr::XattrReply;

pub(crate) fn errno(e: nix::errno::Errno) -> Errno {
    Errno::from_i32(e as i32)
}

/// Settings fixed at start.
pub struct Settings {
    pub mode: DataMode,
    pub rw: bool,
    /// Negotiate POSIX ACLs (the kernel then enforces them, read through `xattr.rs`).
    pub acl: bool,
    pub entry_ttl: Duration,
    pub attr_ttl: Duration,
    /// Absolute, canonical SOURCE (empty for `/`): the prefix of every path the policy's
    /// `root`/`map` patterns are matched against, and of the paths in log lines.
    pub source_abs: Vec<u8>,
    /// Absolute paths naming SOURCE's root in symlink targets: SOURCE and the mount point.
    pub prefixes: Vec<Vec<u8>>,
}

pub struct GuardFs {
    pub(crate) policy: Policy,
    pub(crate) settings: Settings,
    pub(crate) nodes: Arc<Nodes>,
    pub(crate) root_dev: u64,
    pub(crate) root_fd: Arc<OwnedFd>,
    pub(crate) log: DenyLog,
    pub stats: Arc<Stats>,
    pub(crate) backing: Mutex<Backing>,
    pub(crate) euid: u32,
    /// Inodes whose cached pages the kernel must drop (see `note_change`), sent to the
    /// notifier thread.
    pub(crate) inval: std::sync::mpsc::SyncSender<u64>,
}

impl GuardFs {
    pub fn new(
        policy: Policy,
        settings: Settings,
        root_fd: OwnedFd,
        log: DenyLog,
        stats: Arc<Stats>,
        inval: std::sync::mpsc::SyncSender<u64>,
    ) -> Result<GuardFs, String> {
        let st = syscalls::fstat(&root_fd).map_err(|e| format!("fstat SOURCE: {e}"))?;
        let root_fd = Arc::new(root_fd);
        let nodes = Arc::new(Nodes::default());
        let dup = root_fd.try_clone().map_err(|e| format!("dup SOURCE fd: {e}"))?;
        let (key, root) = root_node(&policy, &settings, &st, dup)?;
        nodes.insert_root(key, root);
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
            inval,
        })
    }

    /// The inode table, shared with the fd valve.
    pub fn nodes(&self) -> Arc<Nodes> {
        self.nodes.clone()
    }

    /// The node the kernel calls `ino`. The staging root (`nodes::is_stage_root`) is none:
    /// nothing but `lookup` and `getattr` is served there.
    pub(crate) fn node(&self, ino: INodeNo) -> Result<Arc<Node>, Errno> {
        let ino = nodes::node_ino(ino.0).ok_or(Errno::EACCES)?;
        self.nodes.get(ino).ok_or(Errno::ESTALE)
    }

    /// `lookup` in the staging root: its one name is SOURCE's root.
    fn stage_lookup(&self, name: &OsStr) -> Result<FileAttr, Errno> {
        if name.as_bytes() != nodes::STAGE_NAME {
            return Err(Errno::ENOENT);
        }
        self.do_getattr(INodeNo(nodes::BOUND_ROOT))
    }

    /// The staging root's attributes: an empty root-only directory.
    fn stage_attr(&self) -> FileAttr {
        FileAttr {
            ino: INodeNo(nodes::ROOT),
            size: 0,
            blocks: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: FileType::Directory,
            perm: 0o700,
            nlink: 2,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

impl Filesystem for GuardFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        self.do_init(config)
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        bump(&self.stats.lookup);
        if nodes::is_stage_root(parent.0) {
            return match self.stage_lookup(name) {
                Ok(attr) => reply.entry(&self.settings.entry_ttl, &attr, Generation(0)),
                Err(e) => reply.error(e),
            };
        }
        let entry = self
            .do_lookup(Caller::of(req), parent, name)
            .and_then(|c| Ok((c.attr()?, c.per_caller)));
        match entry {
            // Decided for this caller (a link followed with its permissions, or `owner
            // euid`): not cached for the next caller.
            Ok((attr, per_caller)) => reply.entry_with_ttls(
                &self.settings.attr_ttl,
                if per_caller {
                    &Duration::ZERO
                } else {
                    &self.settings.entry_ttl
                },
                &attr,
                Generation(0),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        bump(&self.stats.forget);
        self.do_forget(ino, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        bump(&self.stats.getattr);
        if nodes::is_stage_root(ino.0) {
            return reply.attr(&self.settings.attr_ttl, &self.stage_attr());
        }
        match self.do_getattr(ino) {
            Ok(attr) => reply.attr(&self.settings.attr_ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
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
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            fh,
        };
        match self.do_setattr(Caller::of(req), ino, set) {
            Ok(attr) => reply.attr(&self.settings.attr_ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, _ino: INodeNo, reply: ReplyData) {
        // Never reached: links are resolved by the daemon and served as their targets.
        bump(&self.stats.other);
        reply.error(Errno::EINVAL);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        bump(&self.stats.open);
        match self.do_open(Caller::of(req), ino, flags, &reply) {
            Ok((fh, id)) => reply.opened_passthrough(fh, FopenFlags::empty(), &id),
            Err(e) => reply.error(e),
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
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        bump(&self.stats.write);
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        match self.do_write(ino, fh, offset, data, kill) {
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
        self.do_release(ino, fh);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        bump(&self.stats.fsync);
        match self.do_fsync(ino, datasync) {
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

    fn releasedir(&self, _: &Request, _: INodeNo, _: FileHandle, _: OpenFlags, reply: ReplyEmpty) {
        bump(&self.stats.releasedir);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        bump(&self.stats.statfs);
        match self.do_statfs() {
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
            Err(e) => reply.error(e),
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
        match self.do_create(Caller::of(req), parent, name, mode, umask, flags) {
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
        match self.do_mkdir(Caller::of(req), parent, name, mode, umask) {
            Ok(attr) => reply.entry_with_ttls(
                &self.settings.attr_ttl,
                &self.settings.entry_ttl,
                &attr,
                Generation(0),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        bump(&self.stats.unlink);
        match self.do_unlink(Caller::of(req), parent, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        bump(&self.stats.rmdir);
        match self.do_unlink(Caller::of(req), parent, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        bump(&self.stats.rename);
        match self.do_rename(Caller::of(req), parent, name, newparent, newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        // Counted apart: the kernel's ACL fetches (one per inode once cached) show here.
        bump(&self.stats.getxattr);
        match self.do_getxattr(Caller::of(req), ino, name, size) {
            Ok(XattrReply::Size(n)) => reply.size(n),
            Ok(XattrReply::Data(d)) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        bump(&self.stats.other);
        match self.do_listxattr(ino, size) {
            Ok(XattrReply::Size(n)) => reply.size(n),
            Ok(XattrReply::Data(d)) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        bump(&self.stats.other);
        match self.do_setxattr(Caller::of(req), ino, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        bump(&self.stats.other);
        match self.do_removexattr(Caller::of(req), ino, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(&self, _: &Request, _: INodeNo, _: &OsStr, _: &std::path::Path, reply: ReplyEntry) {
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
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        bump(&self.stats.other);
        match self.do_mknod(Caller::of(req), parent, name, mode, umask) {
            Ok(attr) => reply.entry_with_ttls(
                &self.settings.attr_ttl,
                &self.settings.entry_ttl,
                &attr,
                Generation(0),
            ),
            Err(e) => reply.error(e),
        }
    }
}
