//! Extended attributes and POSIX ACLs (`FUSE_POSIX_ACL`): the kernel enforces the ACLs
//! itself (with `default_permissions`) and reads them here as `system.posix_acl_access` /
//! `system.posix_acl_default`, so an ACL on SOURCE answers through the mount as it does
//! raw. Everything is read from and written to the held object (never a path), and,
//! where the kernel checks permissions raw (`user.*` reads, every change), as the caller.
//!
//! Only `user.*` and the two ACL names are served: `trusted.*` and `security.*` are the
//! daemon's host's business (capabilities, LSM labels) and are not shown to tenants.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use fuser::{Errno, INodeNo};

use crate::fs::{GuardFs, errno};
use crate::lookup::Caller;
use crate::nodes::Node;
use crate::syscalls;

pub(crate) const ACL_ACCESS: &str = "system.posix_acl_access";
pub(crate) const ACL_DEFAULT: &str = "system.posix_acl_default";

/// Largest value or name list the kernel passes (XATTR_SIZE_MAX, XATTR_LIST_MAX).
const XATTR_MAX: usize = 64 * 1024;

fn is_acl(name: &[u8]) -> bool {
    name == ACL_ACCESS.as_bytes() || name == ACL_DEFAULT.as_bytes()
}

/// A name the mount serves.
fn served(name: &[u8]) -> bool {
    is_acl(name) || (name.starts_with(b"user.") && name.len() > 5)
}

/// What a GETXATTR or LISTXATTR answers: the size asked about (`size` 0), or the bytes.
pub(crate) enum XattrReply {
    Size(u32),
    Data(Vec<u8>),
}

fn reply_of(len: usize, data: Vec<u8>, size: u32) -> Result<XattrReply, Errno> {
    if size == 0 {
        return u32::try_from(len).map(XattrReply::Size).map_err(|_| Errno::E2BIG);
    }
    if len > size as usize {
        return Err(Errno::ERANGE);
    }
    Ok(XattrReply::Data(data))
}

impl GuardFs {
    pub(crate) fn do_getxattr(
        &self,
        caller: Caller,
        ino: INodeNo,
        name: &OsStr,
        size: u32,
    ) -> Result<XattrReply, Errno> {
        let node = self.node(ino)?;
        if !served(name.as_bytes()) {
            // As if absent: the kernel asks for `security.capability` on writes.
            return Err(Errno::ENODATA);
        }
        // Reading an ACL needs no permission raw; a `user.*` value needs read permission.
        let _creds = if is_acl(name.as_bytes()) {
            None
        } else {
            self.as_caller(caller)?
        };
        let want = if size == 0 {
            0
        } else {
            (size as usize).min(XATTR_MAX)
        };
        let (len, data) = syscalls::getxattr_held(&node.fd, name, want).map_err(errno)?;
        reply_of(len, data, size)
    }

    pub(crate) fn do_listxattr(&self, ino: INodeNo, size: u32) -> Result<XattrReply, Errno> {
        let node = self.node(ino)?;
        // Listing needs no permission raw. The whole list, to filter it (and to know the
        // filtered size when `size` is 0).
        let (_, all) = syscalls::listxattr_held(&node.fd, XATTR_MAX).map_err(errno)?;
        let mut out = Vec::with_capacity(all.len());
        for n in all.split(|&b| b == 0).filter(|n| served(n)) {
            out.extend_from_slice(n);
            out.push(0);
        }
        reply_of(out.len(), out, size)
    }

    /// The node a change of attributes applies to: `-o rw` only, a served name.
    fn xattr_target(&self, ino: INodeNo, name: &OsStr) -> Result<std::sync::Arc<Node>, Errno> {
        if !self.settings.rw {
            return Err(Errno::EROFS);
        }
        if !served(name.as_bytes()) {
            return Err(Errno::EOPNOTSUPP);
        }
        self.node(ino)
    }

    pub(crate) fn do_setxattr(
        &self,
        caller: Caller,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<(), Errno> {
        let node = self.xattr_target(ino, name)?;
        // As the caller: ownership (ACLs) and write permission (`user.*`) are checked by
        // SOURCE's kernel exactly as raw; an ACL set there also updates the mode bits.
        let _creds = self.as_caller(caller)?;
        syscalls::setxattr_held(&node.fd, name, value, flags).map_err(errno)?;
        self.note_xattr_change(&node);
        Ok(())
    }

    pub(crate) fn do_removexattr(&self, caller: Caller, ino: INodeNo, name: &OsStr) -> Result<(), Errno> {
        let node = self.xattr_target(ino, name)?;
        let _creds = self.as_caller(caller)?;
        syscalls::removexattr_held(&node.fd, name).map_err(errno)?;
        self.note_xattr_change(&node);
        Ok(())
    }

    /// A change of an ACL in SOURCE may change the mode bits too (its mask is the group
    /// bits): have the kernel refresh what it cached.
    fn note_xattr_change(&self, node: &Node) {
        if let Ok(st) = syscalls::fstat(&node.fd) {
            self.note_change(node, &st);
        }
    }

    /// Whether a new object in `dir` inherits a default ACL (then SOURCE's kernel ignores
    /// the umask, so the daemon must not apply it either).
    pub(crate) fn has_default_acl(&self, dir: &Node) -> bool {
        syscalls::getxattr_held(&dir.fd, OsStr::new(ACL_DEFAULT), 0).is_ok_and(|(n, _)| n > 0)
    }
}
