//! The data path: file contents (no-open reads and writes on the held object, or
//! passthrough backing files) and directory listings.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Weak};

use fuser::{
    BackingId, Errno, FileHandle, FileType, INodeNo, InitFlags, KernelConfig, OpenFlags, ReplyDirectory,
    ReplyOpen,
};
use nix::fcntl::OFlag;

use crate::args::DataMode;
use crate::fs::{GuardFs, errno};
use crate::lookup::Caller;
use crate::nodes::{Held, Node};
use crate::syscalls;

/// Open handles in passthrough mode: one backing id per inode while any handle is open.
#[derive(Default)]
pub(crate) struct Backing {
    by_fh: HashMap<u64, (Arc<BackingId>, Arc<Held>)>,
    by_ino: HashMap<u64, (Weak<BackingId>, Weak<Held>)>,
    next_fh: u64,
}

impl GuardFs {
    /// What the data path needs from the kernel, asked for at `init`.
    pub(crate) fn do_init(&self, config: &mut KernelConfig) -> std::io::Result<()> {
        // Page cache kept across (absent) opens, dropped when the file's mtime/size changes.
        if config.add_capabilities(InitFlags::FUSE_AUTO_INVAL_DATA).is_err() {
            eprintln!(
                "toctou-guard-fs: kernel lacks FUSE_AUTO_INVAL_DATA: changes made to SOURCE outside the mount may be served stale from the page cache"
            );
        }
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        // The daemon clears set-id bits on write/truncate itself (`kill_suidgid`); without
        // this the kernel asks for `security.capability` (GETXATTR) before every write.
        let _ = config.add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        // POSIX ACLs checked by the kernel (served by `xattr.rs`), as raw: without it the
        // kernel checks mode bits only, and an ACL entry denying or granting a user is
        // ignored. DONT_MASK: the umask arrives unapplied, so a create in a directory with a
        // default ACL can ignore it, as raw.
        if self.settings.acl
            && config
                .add_capabilities(InitFlags::FUSE_POSIX_ACL | InitFlags::FUSE_DONT_MASK)
                .is_err()
        {
            eprintln!(
                "toctou-guard-fs: kernel lacks FUSE_POSIX_ACL: ACLs in SOURCE are not honoured (mode bits only)"
            );
        }
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
        let _ = node.rfd.set(Held::new(fd));
        node.rfd.get().map(|h| &**h).ok_or(Errno::EIO)
    }

    /// The node's write descriptor, reopened from the held object when it has none (the
    /// fd valve closes it after a second without writes).
    fn write_fd(&self, node: &Arc<Node>) -> Result<Arc<Held>, Errno> {
        if !self.settings.rw {
            return Err(Errno::EROFS);
        }
        if node.kind != FileType::RegularFile {
            return Err(Errno::EISDIR);
        }
        self.nodes
            .write_fd(node, || syscalls::reopen(&node.fd, OFlag::O_RDWR))
            .map_err(errno)
    }

    /// The backing file of a passthrough handle (`fh` 0: no handle, no-open mode).
    pub(crate) fn handle_fd(&self, fh: FileHandle) -> Option<Arc<Held>> {
        if fh.0 == 0 {
            return None;
        }
        self.backing.lock().by_fh.get(&fh.0).map(|(_, f)| f.clone())
    }

    pub(crate) fn do_read(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, Errno> {
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

    pub(crate) fn do_write(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        kill_suidgid: bool,
    ) -> Result<u32, Errno> {
        let node = self.node(ino)?;
        if !self.settings.rw {
            return Err(Errno::EROFS);
        }
        // The kernel says a write by this caller drops the set-id bits (as raw: a writer
        // without CAP_FSETID); the daemon's own write, as root, would keep them.
        if kill_suidgid {
            self.kill_suidgid(&node)?;
        }
        let n = match self.handle_fd(fh) {
            Some(f) => syscalls::pwrite(&*f, data, offset),
            None => syscalls::pwrite(&*self.write_fd(&node)?, data, offset),
        }
        .map_err(errno)?;
        Ok(n as u32)
    }

    /// Clear the set-user-id bit, and set-group-id when group-executable, as the kernel
    /// does for a write or truncate by a caller without CAP_FSETID
    /// (`FUSE_HANDLE_KILLPRIV_V2`: the daemon's job).
    pub(crate) fn kill_suidgid(&self, node: &Node) -> Result<(), Errno> {
        let st = syscalls::fstat(&*node.fd).map_err(errno)?;
        let mode = st.st_mode & 0o7777;
        let mut kill = libc::S_ISUID;
        if mode & libc::S_IXGRP != 0 {
            kill |= libc::S_ISGID;
        }
        if mode & kill != 0 {
            syscalls::fchmod_held(&node.fd, mode & !kill).map_err(errno)?;
        }
        Ok(())
    }

    pub(crate) fn do_open(
        &self,
        caller: Caller,
        ino: INodeNo,
        flags: OpenFlags,
        reply: &ReplyOpen,
    ) -> Result<(FileHandle, Arc<BackingId>), Errno> {
        match self.settings.mode {
            // ENOSYS once: the kernel stops sending OPEN (and RELEASE) for good and opens
            // with FOPEN_KEEP_CACHE. The decision was made at lookup on the held object.
            DataMode::NoOpen => Err(Errno::ENOSYS),
            DataMode::Passthrough => self.open_passthrough(caller, ino, flags, reply),
        }
    }

    /// Passthrough mode: check the held object again, then hand the kernel a backing file.
    fn open_passthrough(
        &self,
        caller: Caller,
        ino: INodeNo,
        flags: OpenFlags,
        reply: &ReplyOpen,
    ) -> Result<(FileHandle, Arc<BackingId>), Errno> {
        let node = self.node(ino)?;
        if node.kind != FileType::RegularFile {
            return Err(Errno::EISDIR);
        }
        let wants_write = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        if wants_write && !self.settings.rw {
            return Err(Errno::EROFS);
        }
        // The check at open, on the object the backing file will be opened from.
        self.recheck(caller, &node)?;
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
                let file = Arc::new(Held::new(syscalls::reopen(&node.fd, acc).map_err(errno)?));
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
        Ok((FileHandle(fh), id))
    }

    pub(crate) fn do_release(&self, ino: INodeNo, fh: FileHandle) {
        if fh.0 != 0 {
            let mut b = self.backing.lock();
            b.by_fh.remove(&fh.0);
            // The last handle of the inode gone: its backing id is freed; forget the slot.
            let dead = b.by_ino.get(&ino.0).is_some_and(|(id, _)| id.strong_count() == 0);
            if dead {
                b.by_ino.remove(&ino.0);
            }
        }
    }

    pub(crate) fn do_fsync(&self, ino: INodeNo, datasync: bool) -> Result<(), Errno> {
        let node = self.node(ino)?;
        // The write descriptor if still open, else the held one: fsync flushes the file's
        // dirty data whichever descriptor it is called on.
        let wfd = node.wfd.lock().clone();
        let fd: &OwnedFd = match (&wfd, node.kind) {
            (Some(w), _) => w,
            (None, FileType::RegularFile) => self.read_fd(&node)?,
            (None, _) => return Ok(()),
        };
        if datasync {
            nix::unistd::fdatasync(fd).map_err(errno)
        } else {
            nix::unistd::fsync(fd).map_err(errno)
        }
    }

    pub(crate) fn do_readdir(
        &self,
        ino: INodeNo,
        offset: u64,
        reply: &mut ReplyDirectory,
    ) -> Result<(), Errno> {
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
                let d_ino = if d.name == b"." {
                    crate::nodes::kernel_ino(node.ino)
                } else {
                    d.ino.max(2)
                };
                if reply.add(INodeNo(d_ino), d.next_off, kind, OsStr::from_bytes(d.name)) {
                    return Ok(());
                }
                off = d.next_off;
            }
        }
    }
}
