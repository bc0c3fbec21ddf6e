//! Changes through the mount (`--rw`): create, mkdir, unlink, rmdir, rename, setattr.
//! Anything new is looked up again through [`GuardFs::resolve_child`], so it passes the
//! rule like any other entry.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileHandle, FileType, INodeNo, RenameFlags, TimeOrNow};
use nix::fcntl::OFlag;

use crate::attr::attr_of;
use crate::fs::{GuardFs, errno};
use crate::lookup::Caller;
use crate::nodes::Node;
use crate::syscalls;

/// What a SETATTR asks to change (`None`: leave it).
pub(crate) struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    /// The passthrough handle the change came through, if any.
    pub fh: Option<FileHandle>,
}

/// A time from a SETATTR as the kernel sent it, (seconds, nanoseconds in 0..1e9). fuser
/// 0.18 builds the `SystemTime` of a pre-1970 time (sec < 0, nsec) as `EPOCH - (-sec, nsec)`
/// (its own TODO in `time.rs`), so that is undone here: a negative offset `(s, n)` is the
/// kernel's `(-s, n)`, e.g. 1960-01-01 00:00:00.5 is (-315619200, 5e8).
fn timespec_of(t: SystemTime) -> (i64, i64) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, i64::from(d.subsec_nanos())),
        Err(e) => (
            -(e.duration().as_secs() as i64),
            i64::from(e.duration().subsec_nanos()),
        ),
    }
}

impl GuardFs {
    /// The parent must be inside a tenant for anything to be created, removed or renamed.
    fn writable_dir(&self, ino: INodeNo) -> Result<Arc<Node>, Errno> {
        if !self.settings.rw {
            return Err(Errno::EROFS);
        }
        let node = self.node(ino)?;
        if node.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        if !self.in_tenant(&node) {
            return Err(Errno::EACCES);
        }
        Ok(node)
    }

    /// The credentials a new object in `dir` is made with, and the owner it will have.
    /// As the caller (so the rule then judges the caller's file, and nobody can plant a
    /// file that belongs to someone else); root's requests as the tenant's owner (root could
    /// chown it raw, and a root-owned file could not be served).
    fn as_creator(&self, caller: Caller, dir: &Node) -> Result<(Option<syscalls::Creds>, u32), Errno> {
        if self.euid != 0 {
            return Ok((None, self.euid));
        }
        match dir.tenant.as_deref() {
            Some(t) if caller.uid == 0 => syscalls::Creds::assume(t.uid, caller.gid, &[])
                .map(|c| (Some(c), t.uid))
                .map_err(errno),
            _ => Ok((self.as_caller(caller)?, caller.uid)),
        }
    }

    /// The mode a create asks SOURCE for: the caller's umask applied, unless `dir` has a
    /// default ACL (SOURCE's kernel then ignores the umask and applies the ACL, as raw).
    fn masked(&self, dir: &Node, mode: u32, umask: u32) -> u32 {
        if self.has_default_acl(dir) {
            mode
        } else {
            mode & !umask
        }
    }

    pub(crate) fn do_create(
        &self,
        caller: Caller,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<FileAttr, Errno> {
        let dir = self.writable_dir(parent)?;
        let perm = self.masked(&dir, mode, umask) & 0o777;
        let (creds, owner) = self.as_creator(caller, &dir)?;
        self.judge_new(caller, &dir, name, owner)?;
        let fd = syscalls::create_child(&dir.fd, name, OFlag::from_bits_truncate(flags), perm);
        drop(creds);
        drop(fd.map_err(errno)?);
        self.resolve_child(caller, &dir, name)?.attr()
    }

    pub(crate) fn do_mkdir(
        &self,
        caller: Caller,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<FileAttr, Errno> {
        let dir = self.writable_dir(parent)?;
        let perm = self.masked(&dir, mode, umask) & 0o1777;
        let (creds, owner) = self.as_creator(caller, &dir)?;
        self.judge_new(caller, &dir, name, owner)?;
        let made = syscalls::mkdir_child(&dir.fd, name, perm);
        drop(creds);
        made.map_err(errno)?;
        self.resolve_child(caller, &dir, name)?.attr()
    }

    /// `mknod`: FIFOs and sockets (`bind`), made as the caller and judged like a create.
    /// Device nodes are refused (`EPERM`): the mount is `nodev`, and one made in SOURCE
    /// would be a device for every other user of SOURCE.
    pub(crate) fn do_mknod(
        &self,
        caller: Caller,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<FileAttr, Errno> {
        let kind = mode & libc::S_IFMT;
        if !matches!(kind, libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFREG) {
            return Err(Errno::EPERM);
        }
        let dir = self.writable_dir(parent)?;
        let perm = self.masked(&dir, mode, umask) & 0o777;
        let (creds, owner) = self.as_creator(caller, &dir)?;
        self.judge_new(caller, &dir, name, owner)?;
        let made = syscalls::mknod_child(&dir.fd, name, kind | perm);
        drop(creds);
        made.map_err(errno)?;
        self.resolve_child(caller, &dir, name)?.attr()
    }

    /// `unlink`, or `rmdir` when `dir`.
    pub(crate) fn do_unlink(
        &self,
        caller: Caller,
        parent: INodeNo,
        name: &OsStr,
        dir: bool,
    ) -> Result<(), Errno> {
        let d = self.writable_dir(parent)?;
        let _creds = self.as_caller(caller)?;
        syscalls::unlink_child(&d.fd, name, dir).map_err(errno)
    }

    pub(crate) fn do_setattr(
        &self,
        caller: Caller,
        ino: INodeNo,
        mut set: SetAttr,
    ) -> Result<FileAttr, Errno> {
        if !self.settings.rw {
            return Err(Errno::EROFS);
        }
        let node = self.node(ino)?;
        // A size change through an open file (`ftruncate`, `O_TRUNC`; the kernel then sends
        // a handle, 0 in no-open mode): the kernel checked write access when the file was
        // opened, and raw, `ftruncate` needs no permission on the inode (a 0000 file opened
        // `O_RDWR` at creation is truncated). A reopen as the caller would refuse it.
        if let (Some(sz), Some(fh)) = (set.size, set.fh) {
            self.truncate(&node, fh, sz)?;
            set.size = None;
            self.kill_suidgid_for(caller, &node)?;
        }
        // As the caller: ownership and permission checks are the kernel's, as raw.
        let creds = self.as_caller(caller)?;
        let mut truncated = false;
        if let Some(m) = set.mode {
            // No set-id bits through the mount: files here belong to the tenant.
            syscalls::fchmod_held(&node.fd, m & 0o1777).map_err(errno)?;
        }
        if set.uid.is_some() || set.gid.is_some() {
            syscalls::fchown_held(&node.fd, set.uid, set.gid).map_err(errno)?;
        }
        if let Some(sz) = set.size {
            // truncate(path): write permission as the caller (the kernel checked it too).
            self.truncate(&node, FileHandle(0), sz)?;
            truncated = true;
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let ts = |t: Option<TimeOrNow>| match t {
                None => nix::sys::time::TimeSpec::new(0, libc::UTIME_OMIT),
                Some(TimeOrNow::Now) => nix::sys::time::TimeSpec::new(0, libc::UTIME_NOW),
                Some(TimeOrNow::SpecificTime(t)) => {
                    let (sec, nsec) = timespec_of(t);
                    nix::sys::time::TimeSpec::new(sec, nsec)
                }
            };
            syscalls::utimens_held(&node.fd, &ts(set.atime), &ts(set.mtime)).map_err(errno)?;
        }
        // As the daemon: the caller may write the file without owning it.
        drop(creds);
        if truncated {
            self.kill_suidgid_for(caller, &node)?;
        }
        let st = syscalls::fstat(&node.fd).map_err(errno)?;
        attr_of(node.ino, &st)
    }

    /// A truncation by anyone but root drops the set-id bits, as raw (the daemon's own
    /// truncation, as root, would keep them; `FUSE_HANDLE_KILLPRIV_V2`).
    fn kill_suidgid_for(&self, caller: Caller, node: &Node) -> Result<(), Errno> {
        if caller.uid == 0 || node.kind != FileType::RegularFile {
            return Ok(());
        }
        self.kill_suidgid(node)
    }

    /// O_TRUNC arrives as SETATTR(size): atomic O_TRUNC is not negotiated, so the kernel
    /// sends it even though it never sends OPEN in no-open mode.
    fn truncate(&self, node: &Node, fh: FileHandle, size: u64) -> Result<(), Errno> {
        match self.handle_fd(fh) {
            Some(f) => nix::unistd::ftruncate(&*f, size as i64),
            None => syscalls::truncate_held(&node.fd, size),
        }
        .map_err(errno)
    }

    pub(crate) fn do_rename(
        &self,
        caller: Caller,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let from = self.writable_dir(parent)?;
        let to = self.writable_dir(newparent)?;
        if !self.same_tenant(&from, &to) {
            return Err(Errno::EXDEV);
        }
        let _creds = self.as_caller(caller)?;
        syscalls::rename_child(&from.fd, name, &to.fd, newname, flags.bits()).map_err(errno)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_before_1970() {
        assert_eq!(timespec_of(UNIX_EPOCH + Duration::new(5, 7)), (5, 7));
        assert_eq!(timespec_of(UNIX_EPOCH - Duration::new(1, 0)), (-1, 0));
        // What fuser hands over for the kernel's (-315619200, 5e8).
        assert_eq!(
            timespec_of(UNIX_EPOCH - Duration::new(315_619_200, 500_000_000)),
            (-315_619_200, 500_000_000)
        );
    }
}
