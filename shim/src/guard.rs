//! The rule around one open: classify the path, open, `fstat` the descriptor, decide.
//!
//! Everything here runs on the caller's stack with raw system calls: no allocation, no
//! lock. Paths outside every root are opened with no extra system call at all.

use core::ffi::CStr;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;
use toctou_policy::{Decision, DenyReason, Expected, PATH_MAX, ScratchPath, Target};

use crate::ffi;
use crate::fmtbuf::FmtBuf;
use crate::state::{self, Phase, State};
use crate::syslog::Event;

/// The directory a relative path is resolved against.
#[derive(Clone, Copy)]
pub enum Dir {
    Cwd,
    /// An `openat` dirfd as the caller passed it (validity is the kernel's business).
    Fd(RawFd),
}

impl Dir {
    pub fn from_raw(fd: RawFd) -> Dir {
        if fd == libc::AT_FDCWD {
            Dir::Cwd
        } else {
            Dir::Fd(fd)
        }
    }

    fn with<R>(self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> R {
        match self {
            Dir::Cwd => f(CWD),
            // SAFETY: the fd number is only passed to system calls for the duration of this
            // call; if the caller's fd is invalid the kernel answers EBADF, as libc would.
            Dir::Fd(fd) => f(unsafe { BorrowedFd::borrow_raw(fd) }),
        }
    }
}

/// `openat(dir, path, flags, mode)` under the rule.
pub fn open(dir: Dir, path: &CStr, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    match state::current() {
        Phase::Passthrough => raw_open(dir, path, flags, mode),
        Phase::Guard(st) => guarded(st, dir, path, flags, mode),
    }
}

fn raw_open(dir: Dir, path: &CStr, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    dir.with(|d| rustix::fs::openat(d, path, flags, mode))
}

fn guarded(st: &State, dir: Dir, path: &CStr, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    let bytes = path.to_bytes();
    // Fast path: a clean absolute path (what servers pass) is matched in place, no copy.
    if bytes.first() == Some(&b'/')
        && let Some(target) = st.policy.classify_clean(bytes)
    {
        return apply(st, target, bytes, dir, path, flags, mode);
    }
    let mut base_buf = [0u8; PATH_MAX];
    let base = if bytes.first() == Some(&b'/') {
        None
    } else {
        match dir_path(dir, &mut base_buf) {
            Some(b) => Some(b),
            None => {
                return refuse_unopened(
                    st,
                    DenyReason::UnresolvedDirfd,
                    bytes,
                    b"",
                    dir,
                    path,
                    flags,
                    mode,
                );
            }
        }
    };
    let mut norm = ScratchPath::new();
    match st.policy.classify(base, bytes, &mut norm) {
        // Log the path as asked: the normalised one stops where the walk was refused.
        Target::Deny(reason) => refuse_unopened(st, reason, bytes, b"", dir, path, flags, mode),
        target => apply(st, target, norm.as_bytes(), dir, path, flags, mode),
    }
}

/// Act on a classified path; `normalized` is what tenant lengths index into.
fn apply(
    st: &State,
    target: Target,
    normalized: &[u8],
    dir: Dir,
    path: &CStr,
    flags: OFlags,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    let (tenant_len, expected) = match target {
        Target::Outside => return raw_open(dir, path, flags, mode),
        Target::Deny(reason) => return refuse_unopened(st, reason, normalized, b"", dir, path, flags, mode),
        Target::Guarded {
            tenant_len, expected, ..
        } => (tenant_len, expected),
    };
    let tenant = &normalized[..tenant_len];
    let expected_uid = match expected {
        Expected::Uid(uid) => uid,
        Expected::Euid => rustix::process::geteuid().as_raw(),
        Expected::TenantOwner => match tenant_owner(st, tenant) {
            Ok(uid) => uid,
            Err(reason) => return refuse_unopened(st, reason, normalized, tenant, dir, path, flags, mode),
        },
    };
    let check = Check {
        st,
        expected: expected_uid,
        path: normalized,
        tenant,
    };
    if flags.contains(OFlags::TMPFILE) {
        return check.tmpfile(dir, path, flags, mode);
    }
    if flags.contains(OFlags::CREATE) {
        return check.create(dir, path, flags, mode);
    }
    // O_TRUNC waits for the verdict: a refused open must not have emptied the victim's file.
    let fd = raw_open(dir, path, flags - OFlags::TRUNC, mode)?;
    check.opened(fd, flags)
}

/// The expected owner and the names to log, for one guarded open.
struct Check<'a> {
    st: &'a State,
    expected: u32,
    path: &'a [u8],
    tenant: &'a [u8],
}

impl Check<'_> {
    /// Decide on the descriptor the caller will read; on refusal close it *then* fail.
    fn opened(&self, fd: OwnedFd, flags: OFlags) -> Result<OwnedFd, Errno> {
        let owner = rustix::fs::fstat(&fd)?.st_uid;
        self.verdict(owner)?;
        if flags.contains(OFlags::TRUNC) && writable(flags) {
            rustix::fs::ftruncate(&fd, 0)?;
        }
        Ok(fd)
    }

    /// Allow, or log and answer EACCES (audit mode: log and allow).
    fn verdict(&self, owner: u32) -> Result<(), Errno> {
        match self.st.policy.decide(owner, self.expected) {
            Decision::Allow => Ok(()),
            Decision::Audit(reason) => {
                self.log("audit", reason, Some(owner));
                Ok(())
            }
            Decision::Deny(reason) => {
                self.log("deny", reason, Some(owner));
                Err(Errno::ACCESS)
            }
        }
    }

    fn log(&self, action: &'static str, reason: DenyReason, owner: Option<u32>) {
        self.st.log.event(&Event {
            action,
            reason,
            path: self.path,
            owner,
            expected: Some(self.expected),
            tenant: self.tenant,
            mode: self.st.policy.mode().as_str(),
        });
    }

    /// `O_CREAT`: an existing file is judged by its owner; a new one may only be created in
    /// a directory the rule accepts, judged on the directory object we then create it in
    /// (`O_EXCL|O_NOFOLLOW`, so no symlink can redirect the creation).
    fn create(&self, dir: Dir, path: &CStr, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        let user_excl = flags.contains(OFlags::EXCL);
        let Some((parent, name)) = split_parent(path) else {
            // `dir/`, `.`, `..`: nothing can be created there; open what exists and judge it.
            let fd = raw_open(
                dir,
                path,
                flags - OFlags::CREATE - OFlags::EXCL - OFlags::TRUNC,
                mode,
            )?;
            return self.opened(fd, flags);
        };
        // Bounded: each round either finds the file, creates it, or loses a race to a
        // concurrent creator; a dangling symlink in its place makes every round fail.
        for _ in 0..3 {
            if !user_excl {
                match raw_open(dir, path, flags - OFlags::CREATE - OFlags::TRUNC, mode) {
                    Ok(fd) => return self.opened(fd, flags),
                    Err(Errno::NOENT) => {}
                    Err(e) => return Err(e),
                }
            }
            let pdir = dir.with(|d| rustix::fs::openat(d, parent.as_c(), dir_flags(), Mode::empty()))?;
            self.verdict(rustix::fs::fstat(&pdir)?.st_uid)?;
            let create = (flags | OFlags::EXCL | OFlags::NOFOLLOW) - OFlags::TRUNC;
            match rustix::fs::openat(&pdir, name, create, mode) {
                Ok(fd) => return Ok(fd), // new and empty: nothing to truncate
                Err(Errno::EXIST) if !user_excl => continue,
                Err(e) => return Err(e),
            }
        }
        match self.st.policy.refuse(DenyReason::DanglingSymlink) {
            Decision::Deny(r) | Decision::Audit(r) => self.log("deny", r, None),
            Decision::Allow => {}
        }
        Err(Errno::ACCESS)
    }

    /// `O_TMPFILE`: the new inode belongs to us; judge the directory it is created in.
    fn tmpfile(&self, dir: Dir, path: &CStr, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        let pdir = raw_open(dir, path, dir_flags(), Mode::empty())?;
        self.verdict(rustix::fs::fstat(&pdir)?.st_uid)?;
        rustix::fs::openat(&pdir, c".", flags, mode)
    }
}

fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn writable(flags: OFlags) -> bool {
    flags.intersects(OFlags::WRONLY | OFlags::RDWR)
}

/// Refuse a path that is wrong before anything is opened (audit mode: log, then open).
#[allow(clippy::too_many_arguments)]
fn refuse_unopened(
    st: &State,
    reason: DenyReason,
    path: &[u8],
    tenant: &[u8],
    dir: Dir,
    cpath: &CStr,
    flags: OFlags,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    let decision = st.policy.refuse(reason);
    let action = if matches!(decision, Decision::Audit(_)) {
        "audit"
    } else {
        "deny"
    };
    let ev = Event {
        action,
        reason,
        path: if path.is_empty() { cpath.to_bytes() } else { path },
        owner: None,
        expected: None,
        tenant,
        mode: st.policy.mode().as_str(),
    };
    st.log.event(&ev);
    match decision {
        Decision::Audit(_) => raw_open(dir, cpath, flags, mode),
        _ if reason == DenyReason::PathTooLong => Err(Errno::NAMETOOLONG),
        _ => Err(Errno::ACCESS),
    }
}

/// The tenant directory's owner: cached, else `lstat` (never following it).
fn tenant_owner(st: &State, tenant: &[u8]) -> Result<u32, DenyReason> {
    let key = st.owners.key(tenant);
    let now = state::now_ms();
    if let Some(uid) = st.owners.get(key, now) {
        return Ok(uid);
    }
    let stat = if tenant.len() < 256 {
        lstat_dir(tenant, &mut [0u8; 256])
    } else {
        lstat_dir(tenant, &mut [0u8; PATH_MAX])
    }?;
    st.owners.put(key, stat, now);
    Ok(stat)
}

/// `lstat` of a directory named by `name` (copied into `buf` to add the NUL).
fn lstat_dir(name: &[u8], buf: &mut [u8]) -> Result<u32, DenyReason> {
    let nul = buf.get_mut(..=name.len()).ok_or(DenyReason::PathTooLong)?;
    nul[..name.len()].copy_from_slice(name);
    nul[name.len()] = 0;
    let c = CStr::from_bytes_with_nul(nul).map_err(|_| DenyReason::TenantMissing)?;
    match rustix::fs::statat(CWD, c, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => match FileType::from_raw_mode(s.st_mode) {
            FileType::Symlink => Err(DenyReason::TenantIsSymlink),
            FileType::Directory => Ok(s.st_uid),
            _ => Err(DenyReason::TenantMissing),
        },
        Err(_) => Err(DenyReason::TenantMissing),
    }
}

/// The absolute path of the directory a relative path starts from.
fn dir_path(dir: Dir, buf: &mut [u8; PATH_MAX]) -> Option<&[u8]> {
    match dir {
        Dir::Cwd => ffi::getcwd(&mut buf[..]),
        Dir::Fd(fd) => {
            let mut link = FmtBuf::<32>::new();
            let _ = core::fmt::Write::write_fmt(&mut link, format_args!("/proc/self/fd/{fd}"));
            let link = link.as_cstr()?;
            let n = rustix::fs::readlinkat_raw(CWD, link, &mut buf[..]).ok()?;
            (n < PATH_MAX && buf.first() == Some(&b'/')).then_some(&buf[..n])
        }
    }
}

/// A parent directory path (NUL-terminated, on the stack) and the final name.
struct Parent {
    buf: [u8; PATH_MAX],
    len: usize,
}

impl Parent {
    fn as_c(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.buf[..=self.len]).unwrap_or(c".")
    }
}

fn split_parent(path: &CStr) -> Option<(Parent, &CStr)> {
    let bytes = path.to_bytes_with_nul();
    let body = &bytes[..bytes.len() - 1];
    let slash = body.iter().rposition(|&b| b == b'/');
    let name = CStr::from_bytes_with_nul(&bytes[slash.map_or(0, |i| i + 1)..]).ok()?;
    if matches!(name.to_bytes(), b"" | b"." | b"..") {
        return None;
    }
    let mut parent = Parent {
        buf: [0; PATH_MAX],
        len: 1,
    };
    match slash {
        None => parent.buf[0] = b'.',
        Some(0) => parent.buf[0] = b'/',
        Some(i) => {
            parent.buf[..i].copy_from_slice(&body[..i]);
            parent.len = i;
        }
    }
    parent.buf[parent.len] = 0;
    Some((parent, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        let (p, n) = split_parent(c"/home/a/x.html").unwrap();
        assert_eq!((p.as_c(), n), (c"/home/a", c"x.html"));
        let (p, n) = split_parent(c"x").unwrap();
        assert_eq!((p.as_c(), n), (c".", c"x"));
        let (p, n) = split_parent(c"/x").unwrap();
        assert_eq!((p.as_c(), n), (c"/", c"x"));
        assert!(split_parent(c"a/").is_none());
        assert!(split_parent(c"a/..").is_none());
    }
}
