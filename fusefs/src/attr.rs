//! Attributes: a held object's `fstat`, as the kernel is told it (`getattr`, `statfs`).
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo};
use nix::sys::stat::FileStat;
use nix::sys::statvfs::Statvfs;

use crate::fs::{GuardFs, errno};
use crate::nodes::Node;
use crate::syscalls;

pub(crate) fn time(sec: i64, nsec: i64) -> SystemTime {
    let ns = nsec.clamp(0, 999_999_999) as u32;
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, ns)
    } else {
        UNIX_EPOCH - Duration::new(sec.unsigned_abs(), 0) + Duration::new(0, ns)
    }
}

pub(crate) fn kind_of(st: &FileStat) -> Result<FileType, Errno> {
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

/// The attributes the kernel is given for node `ino`, under the kernel's number for it.
pub(crate) fn attr_of(ino: u64, st: &FileStat) -> Result<FileAttr, Errno> {
    Ok(FileAttr {
        ino: INodeNo(crate::nodes::kernel_ino(ino)),
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

impl GuardFs {
    pub(crate) fn do_getattr(&self, ino: INodeNo) -> Result<FileAttr, Errno> {
        let node = self.node(ino)?;
        let st = syscalls::fstat(&node.fd).map_err(errno)?;
        self.note_change(&node, &st);
        attr_of(node.ino, &st)
    }

    /// The kernel drops cached pages when size or mtime change (`FUSE_AUTO_INVAL_DATA`),
    /// so a same-size rewrite with its old mtime restored would be served stale forever.
    /// ctime cannot be set back: when it moved, have the notifier thread invalidate the
    /// inode (never from this request handler: the kernel may wait on it). Directories
    /// too: the invalidation also drops the kernel's cached POSIX ACLs, so a `setfacl` made
    /// in SOURCE reaches the mount within the attribute TTL.
    pub(crate) fn note_change(&self, node: &Node, st: &FileStat) {
        if !matches!(node.kind, FileType::RegularFile | FileType::Directory) {
            return;
        }
        let now = (st.st_ctime, st.st_ctime_nsec);
        let mut seen = node.ctime.lock();
        // Remembered only once the notice is queued: a full queue retries next time.
        if *seen != now && self.inval.try_send(node.ino).is_ok() {
            *seen = now;
        }
    }

    pub(crate) fn do_statfs(&self) -> Result<Statvfs, Errno> {
        nix::sys::statvfs::fstatvfs(&*self.root_fd).map_err(errno)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(time(1, 5), UNIX_EPOCH + Duration::new(1, 5));
    }
}
