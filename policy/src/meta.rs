//! What the caller observed about a file system object: the facts the rule decides on.
//!
//! The policy makes no system call; the shim (raw `fstat`/`lstat`), the FUSE daemon (`fstat`
//! of the object it holds) and the CLI (`std::fs`) each fill one of these in their own way.

/// Owner and `st_mode` (type and permission bits) of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub uid: u32,
    pub mode: u32,
}

pub(crate) const S_IFMT: u32 = 0o170000;
pub(crate) const S_IFDIR: u32 = 0o040000;
pub(crate) const S_IFREG: u32 = 0o100000;
pub(crate) const S_IFLNK: u32 = 0o120000;
pub(crate) const S_ISVTX: u32 = 0o1000;

impl Meta {
    pub fn new(uid: u32, mode: u32) -> Meta {
        Meta { uid, mode }
    }
    pub fn is_dir(self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
    pub fn is_symlink(self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }
    pub fn is_file(self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
}
