//! The rule around one open: classify the path, open, `fstat` the descriptor, decide.
//!
//! Everything here runs on the caller's stack with raw system calls: no allocation, no
//! lock. Paths outside every root are opened with no extra system call at all.

use core::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;
use toctou_policy::logline::Denial;
use toctou_policy::{Decision, DenyReason, Expected, Meta, PATH_MAX, ScratchPath, Target};

use crate::basedir::{self, BaseDir};
use crate::dirs;
use crate::ffi;
use crate::fmtbuf::FmtBuf;
use crate::scratch::{self, LongPath, SMALL_BASE, SMALL_PATH};
use crate::state::{self, Phase, State};

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

    /// Run `f` with the directory itself as a descriptor (`EBADF` for a negative number).
    pub(crate) fn borrowed<R>(self, f: impl FnOnce(BorrowedFd<'_>) -> Result<R, Errno>) -> Result<R, Errno> {
        self.with(c".", f)
    }

    /// Run `f` with the directory as a descriptor, for a system call on `path`.
    pub(crate) fn with<R>(
        self,
        path: &CStr,
        f: impl FnOnce(BorrowedFd<'_>) -> Result<R, Errno>,
    ) -> Result<R, Errno> {
        match self {
            // An empty path is ENOENT before the kernel looks at the directory at all.
            _ if path.is_empty() => Err(Errno::NOENT),
            Dir::Cwd => f(CWD),
            // The kernel ignores the directory of an absolute path (even -1).
            Dir::Fd(_) if path.to_bytes().first() == Some(&b'/') => f(CWD),
            // A negative number is no descriptor (`BorrowedFd` cannot even hold -1).
            Dir::Fd(fd) if fd < 0 => Err(Errno::BADF),
            // SAFETY: `fd` is not negative, and it is only passed to system calls for the
            // duration of this call; if it is not open the kernel answers EBADF, as libc would.
            Dir::Fd(fd) => f(unsafe { BorrowedFd::borrow_raw(fd) }),
        }
    }
}

/// `openat(dir, path, flags, mode)` under the rule.
pub fn open(dir: Dir, path: &CStr, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    run(&OpenReq {
        dir,
        path,
        flags,
        mode,
    })
}

/// A call on one path (an open, a rename's source, a `chmod`...), in two forms: as libc
/// makes it, and once the path is known to lie in a tenant's tree, where `judged` decides on
/// the objects it reaches through `Check`. Classifying the path is the same for all of them.
pub(crate) trait PathCall {
    type Out;
    /// The directory a relative path starts from.
    fn dir(&self) -> Dir;
    fn path(&self) -> &CStr;
    /// The call untouched: outside every root, and in audit mode after a logged refusal.
    fn raw(&self) -> Result<Self::Out, Errno>;
    /// The call under the rule.
    fn judged(&self, check: &Check<'_>) -> Result<Self::Out, Errno>;
}

/// Classify the call's path and make it: raw outside every root, judged inside one.
pub(crate) fn run<C: PathCall>(call: &C) -> Result<C::Out, Errno> {
    match state::current() {
        Phase::Passthrough => call.raw(),
        Phase::Guard(st) => guarded(st, call),
    }
}

/// One open as the caller asked for it.
struct OpenReq<'a> {
    dir: Dir,
    path: &'a CStr,
    flags: OFlags,
    mode: Mode,
}

impl PathCall for OpenReq<'_> {
    type Out = OwnedFd;

    fn dir(&self) -> Dir {
        self.dir
    }

    fn path(&self) -> &CStr {
        self.path
    }

    /// The open itself, untouched.
    fn raw(&self) -> Result<OwnedFd, Errno> {
        self.raw_with(self.flags)
    }

    fn judged(&self, check: &Check<'_>) -> Result<OwnedFd, Errno> {
        if self.flags.contains(OFlags::PATH) {
            // O_PATH ignores every flag but O_CLOEXEC, O_DIRECTORY and O_NOFOLLOW: nothing is
            // created or truncated; judge the object it names like any other.
            let fd = self.raw()?;
            return check.opened(fd, OFlags::empty());
        }
        if self.flags.contains(OFlags::TMPFILE) {
            return check.tmpfile(self);
        }
        if self.flags.contains(OFlags::CREATE) {
            return check.create(self);
        }
        // O_TRUNC waits for the verdict: a refused open must not have emptied the victim's file.
        let fd = self.raw_with(self.flags - OFlags::TRUNC)?;
        check.opened(fd, self.flags)
    }
}

impl OpenReq<'_> {
    fn raw_with(&self, flags: OFlags) -> Result<OwnedFd, Errno> {
        self.dir
            .with(self.path, |d| rustix::fs::openat(d, self.path, flags, self.mode))
    }
}

fn guarded<C: PathCall>(st: &State, req: &C) -> Result<C::Out, Errno> {
    let bytes = req.path().to_bytes();
    if bytes.is_empty() {
        return req.raw(); // ENOENT, before the kernel even looks at the directory
    }
    // Fast path: a clean absolute path (what servers pass) is matched in place, no copy.
    if bytes.first() == Some(&b'/')
        && let Some(target) = st.policy.classify_clean(bytes)
    {
        return apply(st, target, bytes, req);
    }
    if matches!(req.dir(), Dir::Cwd)
        && let Some(done) = from_remembered_cwd(st, req, bytes)
    {
        return done;
    }
    if bytes.len() >= PATH_MAX {
        return Err(Errno::NAMETOOLONG); // the kernel's answer for any path this long
    }
    // Small buffers first; a path that does not fit them (rare) is done again in a mapping.
    let mut base = [0u8; SMALL_BASE];
    let mut norm = ScratchPath::<SMALL_PATH>::root();
    if let Some(done) = normalised(st, req, &mut base, &mut norm, false) {
        return done;
    }
    let mut map = ffi::Mapped::zeroed(core::mem::size_of::<LongPath>()).ok_or(Errno::NOMEM)?;
    let long = map.as_mut::<LongPath>().ok_or(Errno::NOMEM)?;
    normalised(st, req, &mut long.base, &mut long.norm, true).unwrap_or(Err(Errno::NAMETOOLONG))
}

/// A clean relative path from a remembered working directory (see `cwd`): joined to it on
/// the stack and matched in place like an absolute path — no `getcwd`, no scratch copy.
/// `None`: not remembered, not clean, or too long for the buffer (the general way then).
fn from_remembered_cwd<C: PathCall>(st: &State, req: &C, rel: &[u8]) -> Option<Result<C::Out, Errno>> {
    let mut joined = [0u8; SMALL_BASE];
    let (len, ..) = crate::cwd::remembered(&mut joined)?;
    let start = if len == 1 {
        1 // "/" + rel
    } else {
        *joined.get_mut(len)? = b'/';
        len + 1
    };
    let end = start.checked_add(rel.len()).filter(|&e| e <= joined.len())?;
    joined[start..end].copy_from_slice(rel);
    let path = &joined[..end];
    let target = entered_under_a_root(Dir::Cwd, st.policy.classify_clean(path)?);
    Some(apply(st, target, path, req))
}

/// Classify and open a path that is relative or not clean, normalising it into `norm`
/// (relative to the directory named in `base`). `None`: it does not fit these buffers.
fn normalised<C: PathCall, const N: usize>(
    st: &State,
    req: &C,
    base_buf: &mut [u8],
    norm: &mut ScratchPath<N>,
    last_try: bool,
) -> Option<Result<C::Out, Errno>> {
    let bytes = req.path().to_bytes();
    let base = if bytes.first() == Some(&b'/') {
        None
    } else {
        match basedir::dir_path(req.dir(), base_buf) {
            Ok(b) => Some(b),
            // Not a directory, not open: the kernel's own answer, as without the guard.
            Err(BaseDir::Kernel(e)) => return Some(Err(e)),
            Err(BaseDir::TooLong) if !last_try => return None,
            Err(BaseDir::TooLong | BaseDir::Unnamed) => return Some(unnamed_base(st, req, base_buf)),
        }
    };
    let mut target = st.policy.classify(base, bytes, norm);
    if base.is_some() {
        target = entered_under_a_root(req.dir(), target);
    }
    match target {
        Target::Deny(DenyReason::PathTooLong) if !last_try => None,
        // Longer than PATH_MAX once joined to its base (the kernel does not mind): judge by
        // the base alone, which may be outside anything guarded.
        Target::Deny(DenyReason::PathTooLong) if base.is_some_and(|b| !st.policy.may_guard_below(b)) => {
            Some(req.raw())
        }
        // Log the path as asked: the normalised one stops where the walk was refused.
        Target::Deny(reason) => Some(refuse_unopened(st, reason, bytes, b"", req)),
        target => Some(apply(st, target, norm.as_bytes(), req)),
    }
}

/// A relative open from a directory entered under a root is judged by that root's tenant,
/// wherever the directory is now (see `dirs`): outside every root, or moved into another
/// tenant's tree.
fn entered_under_a_root(dir: Dir, target: Target) -> Target {
    let uid = match dirs::owner_of(dir) {
        dirs::Lookup::Owner(uid) => uid,
        dirs::Lookup::Absent => return target,
        // Outside every root by its path, and the table cannot say whether it was entered
        // under one: refuse rather than guess (the slot is being rewritten this instant).
        dirs::Lookup::Busy if target == Target::Outside => return Target::Deny(DenyReason::UnresolvedDirfd),
        dirs::Lookup::Busy => return target,
    };
    match target {
        Target::Outside => Target::Guarded {
            root: 0,
            tenant_len: 0,
            expected: Expected::Uid(uid),
        },
        Target::Guarded { root, tenant_len, .. } => Target::Guarded {
            root,
            tenant_len,
            expected: Expected::Uid(uid),
        },
        deny => deny,
    }
}

/// A relative open from a directory that cannot be named (deleted, deeper than
/// `PATH_MAX`): the kernel's own answer when nothing below its nearest nameable ancestor
/// can be guarded; otherwise a refusal (the tenant cannot be known).
fn unnamed_base<C: PathCall>(st: &State, req: &C, buf: &mut [u8]) -> Result<C::Out, Errno> {
    match basedir::named_ancestor(req.dir(), buf) {
        // Deleted: only the directory itself can be opened through it, and it is empty.
        Ok(None) if basedir::is_deleted(req.dir()) => req.raw(),
        Ok(Some(anc)) if !st.policy.may_guard_below(anc) => req.raw(),
        _ => refuse_unopened(st, DenyReason::UnresolvedDirfd, req.path().to_bytes(), b"", req),
    }
}

/// Act on a classified path; `normalized` is what tenant lengths index into.
fn apply<C: PathCall>(st: &State, target: Target, normalized: &[u8], req: &C) -> Result<C::Out, Errno> {
    let (tenant_len, expected) = match target {
        Target::Outside => return req.raw(),
        Target::Deny(reason) => return refuse_unopened(st, reason, normalized, b"", req),
        Target::Guarded {
            tenant_len, expected, ..
        } => (tenant_len, expected),
    };
    let tenant = &normalized[..tenant_len];
    let expected_uid = match expected_uid(st, expected, tenant) {
        Ok(uid) => uid,
        Err(reason) => return refuse_unopened(st, reason, normalized, tenant, req),
    };
    req.judged(&Check {
        st,
        expected: expected_uid,
        path: normalized,
        tenant,
    })
}

/// The uid a tree's files must belong to, `tenant` its tenant directory.
fn expected_uid(st: &State, expected: Expected, tenant: &[u8]) -> Result<u32, DenyReason> {
    match expected {
        Expected::Uid(uid) => Ok(uid),
        Expected::Euid => Ok(rustix::process::geteuid().as_raw()),
        Expected::TenantOwner => cached_tenant_owner(st, tenant),
    }
}

/// Where an object lies, for the write rule (see [`Check::place_of`]).
#[derive(PartialEq)]
enum Place {
    /// Outside every root.
    Outside,
    /// In this call's tenant's own tree.
    Own,
    /// In another tree, or where its name cannot be read.
    Elsewhere,
}

/// The expected owner and the names to log, for one guarded call.
pub(crate) struct Check<'a> {
    st: &'a State,
    expected: u32,
    path: &'a [u8],
    tenant: &'a [u8],
}

impl Check<'_> {
    /// Decide on the descriptor the caller will read; on refusal close it *then* fail.
    pub(crate) fn opened(&self, fd: OwnedFd, flags: OFlags) -> Result<OwnedFd, Errno> {
        let st = rustix::fs::fstat(&fd)?;
        // Only regular files are truncated: the kernel ignores O_TRUNC on FIFOs, devices
        // and sockets, where ftruncate would fail with EINVAL.
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind == FileType::RegularFile && (writable(flags) || flags.contains(OFlags::TRUNC)) {
            self.write_verdict(fd.as_fd(), &st)?;
        } else {
            self.verdict(st.st_uid)?;
        }
        if kind == FileType::Directory {
            // Relative opens from it stay this tenant's, wherever it is moved.
            dirs::remember(st.st_dev, st.st_ino, self.expected);
        }
        if flags.contains(OFlags::TRUNC) && kind == FileType::Directory {
            return Err(Errno::ISDIR); // what the kernel answers for O_TRUNC on a directory
        }
        if flags.contains(OFlags::TRUNC) && kind == FileType::RegularFile {
            if writable(flags) {
                rustix::fs::ftruncate(&fd, 0)?;
            } else {
                // O_RDONLY|O_TRUNC: Linux checks write permission and truncates, yet the
                // descriptor stays read-only. Reopen that very object for writing.
                reopen_truncating(&fd)?;
            }
        }
        Ok(fd)
    }

    /// Would a file owned by `owner` be accepted here? (No log: for bookkeeping.)
    pub(crate) fn accepts(&self, owner: u32) -> bool {
        self.st.policy.decide(owner, self.expected) == Decision::Allow
    }

    /// The uid the tenant's files must belong to.
    pub(crate) fn expected(&self) -> u32 {
        self.expected
    }

    /// The verdict for a call that changes the object `fd` holds (`st` its status): a file
    /// opened for writing, an object `chmod`/`chown`/`truncate` acts on, a directory a name
    /// is removed or renamed in. The tenant's own owner; or an `allow_uid` owner (root's, the
    /// server's own files) when the object itself lies in this tenant's tree: reads of such
    /// files are allowed anywhere, but were writes, a tenant's symlink could aim the server's
    /// writes at every file those owners have on the box.
    #[inline(never)] // off the read path's frame: signal handlers run on small stacks
    pub(crate) fn write_verdict(&self, fd: BorrowedFd<'_>, st: &rustix::fs::Stat) -> Result<(), Errno> {
        self.write_verdict_or(fd, st, || None)
    }

    /// [`Self::write_verdict`], where a refusal is the kernel's own answer when `kernel`
    /// says the kernel itself would refuse the call (`EXDEV`, `EPERM`...): as without the
    /// guard, and nothing to log (the rule stopped nothing).
    pub(crate) fn write_verdict_or(
        &self,
        fd: BorrowedFd<'_>,
        st: &rustix::fs::Stat,
        kernel: impl FnOnce() -> Option<Errno>,
    ) -> Result<(), Errno> {
        match self.write_decision(fd, st) {
            Decision::Allow => Ok(()),
            d => self.refused_unless(d, Some(st.st_uid), kernel),
        }
    }

    /// A new name in the directory `dir` (`st`): [`Self::write_verdict`], except in a sticky
    /// directory (`/tmp`, PHP's session directory) written by a process that is not root,
    /// whose other entries the kernel itself protects from a new name.
    #[inline(never)]
    pub(crate) fn create_verdict(
        &self,
        dir: BorrowedFd<'_>,
        st: &rustix::fs::Stat,
        kernel: impl FnOnce() -> Option<Errno>,
    ) -> Result<(), Errno> {
        if self.sticky_exception(dir, st) {
            return Ok(());
        }
        self.write_verdict_or(dir, st, kernel)
    }

    /// The existing entry `name` of the directory `dir` (`st`) is removed, replaced, or
    /// given another name. In a directory [`Self::write_verdict`] accepts, any entry; in a
    /// sticky directory only let through for new names, the entry's own owner must be the
    /// tenant's (the kernel lets the server remove or rename *its own* entries there, which a
    /// tenant's symlink must not make it do). No entry: nothing to protect.
    #[inline(never)]
    pub(crate) fn entry_verdict(
        &self,
        dir: BorrowedFd<'_>,
        st: &rustix::fs::Stat,
        name: &CStr,
        kernel: impl FnOnce() -> Option<Errno>,
    ) -> Result<(), Errno> {
        match self.write_decision(dir, st) {
            Decision::Allow => Ok(()),
            _ if self.sticky_exception(dir, st) => {
                match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(entry) if entry.st_uid != self.expected => {
                        let d = self.st.policy.refuse(DenyReason::OwnerMismatch);
                        self.refused_unless(d, Some(entry.st_uid), kernel)
                    }
                    _ => Ok(()),
                }
            }
            d => self.refused_unless(d, Some(st.st_uid), kernel),
        }
    }

    fn write_decision(&self, fd: BorrowedFd<'_>, st: &rustix::fs::Stat) -> Decision {
        // A file with another name may be that name's too (a hard link the tenant made into
        // its tree, where `fs.protected_hardlinks` is off): only a file's one name counts.
        let one_name = FileType::from_raw_mode(st.st_mode) == FileType::Directory || st.st_nlink <= 1;
        match self.st.policy.decide(st.st_uid, self.expected) {
            Decision::Allow if st.st_uid == self.expected || (one_name && self.lies_in_tenant(fd)) => {
                Decision::Allow
            }
            Decision::Allow => self.st.policy.refuse(DenyReason::OwnerMismatch),
            d => d,
        }
    }

    /// A sticky directory (`dir`, `st`) an `allow_uid` owner has, written by a process that
    /// is not root (for root the kernel protects nothing there), outside every root or in
    /// this tenant's own tree: in another tenant's tree the new name would be a file that
    /// tree then serves as an allowed owner's.
    fn sticky_exception(&self, dir: BorrowedFd<'_>, st: &rustix::fs::Stat) -> bool {
        FileType::from_raw_mode(st.st_mode) == FileType::Directory
            && st.st_mode & libc::S_ISVTX != 0
            && !rustix::process::geteuid().is_root()
            && self.st.policy.decide(st.st_uid, self.expected) == Decision::Allow
            && self.place_of(dir) != Place::Elsewhere
    }

    /// Does the object `fd` holds lie in this tenant's own tree (see [`Self::place_of`])?
    /// Not for a tenant that is `/` itself (`root /`: the whole box) or unknown (a
    /// directory entered under a root and named elsewhere now).
    fn lies_in_tenant(&self, fd: BorrowedFd<'_>) -> bool {
        self.tenant.len() > 1 && self.place_of(fd) == Place::Own
    }

    /// Where the object `fd` holds lies, by the kernel's name for it
    /// (`/proc/thread-self/fd/N`: where it is, not the path that led there, so no symlink
    /// of the tenant's counts). A name that cannot be read counts as elsewhere.
    #[inline(never)] // rare: its buffer stays out of every open's frame
    fn place_of(&self, fd: BorrowedFd<'_>) -> Place {
        let Some(mut map) = ffi::Mapped::zeroed(PATH_MAX) else {
            return Place::Elsewhere;
        };
        let buf = map.bytes_mut();
        let mut link = FmtBuf::<40>::new();
        let _ = core::fmt::Write::write_fmt(
            &mut link,
            format_args!("/proc/thread-self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)),
        );
        let Some(link) = link.as_cstr() else {
            return Place::Elsewhere;
        };
        let real = match rustix::fs::readlinkat_raw(CWD, link, &mut buf[..PATH_MAX]) {
            Ok(n) if n < PATH_MAX => &buf[..n],
            _ => return Place::Elsewhere,
        };
        match self.st.policy.classify_clean(real) {
            Some(Target::Outside) => Place::Outside,
            // The tree's own expected owner too: a directory entered under one tenant's root
            // keeps that tenant's owner wherever it is moved (`entered_under_a_root`), so a
            // tenant who moves it into another's tree must not get that tree's writes.
            Some(Target::Guarded {
                tenant_len, expected, ..
            }) if real.get(..tenant_len) == Some(self.tenant)
                && expected_uid(self.st, expected, self.tenant) == Ok(self.expected) =>
            {
                Place::Own
            }
            _ => Place::Elsewhere,
        }
    }

    /// [`Self::refused`], unless the kernel would refuse the call anyway (see
    /// [`Self::write_verdict_or`]).
    fn refused_unless(
        &self,
        decision: Decision,
        owner: Option<u32>,
        kernel: impl FnOnce() -> Option<Errno>,
    ) -> Result<(), Errno> {
        if matches!(decision, Decision::Deny(_))
            && let Some(e) = kernel()
        {
            return Err(e);
        }
        self.refused(decision, owner)
    }

    /// Allow, or log and answer EACCES (audit mode: log and allow).
    pub(crate) fn verdict(&self, owner: u32) -> Result<(), Errno> {
        match self.st.policy.decide(owner, self.expected) {
            Decision::Allow => Ok(()),
            d => self.refused(d, Some(owner)),
        }
    }

    /// Log a refusal; `Err(EACCES)` unless audit mode lets it through.
    fn refused(&self, decision: Decision, owner: Option<u32>) -> Result<(), Errno> {
        let (audit, reason) = match decision {
            Decision::Allow => return Ok(()),
            Decision::Audit(r) => (true, r),
            Decision::Deny(r) => (false, r),
        };
        log(
            self.st,
            audit,
            reason,
            owner,
            Some(self.expected),
            self.tenant,
            self.path,
        );
        if audit { Ok(()) } else { Err(Errno::ACCESS) }
    }

    /// `O_CREAT`: an existing file is judged by its owner; a new one may only be created in
    /// a directory the rule accepts, judged on the directory object we then create it in
    /// (`O_EXCL|O_NOFOLLOW`, so no symlink can redirect the creation).
    fn create(&self, req: &OpenReq<'_>) -> Result<OwnedFd, Errno> {
        let bytes = req.path.to_bytes_with_nul();
        let body = &bytes[..bytes.len() - 1];
        let slash = body.iter().rposition(|&b| b == b'/');
        let name =
            CStr::from_bytes_with_nul(&bytes[slash.map_or(0, |i| i + 1)..]).map_err(|_| Errno::INVAL)?;
        if matches!(name.to_bytes(), b"" | b"." | b"..") {
            // `dir/`, `.`, `..`: the kernel creates nothing there (EISDIR); ask it, judge
            // whatever it opens.
            let fd = req.raw_with(req.flags - OFlags::TRUNC)?;
            return self.opened(fd, req.flags);
        }
        let parent: &[u8] = match slash {
            None => b".",
            Some(0) => b"/",
            Some(i) => &body[..i],
        };
        scratch::with_cstr(parent, |parent| self.create_in(req, parent, name))
    }

    fn create_in(&self, req: &OpenReq<'_>, parent: &CStr, name: &CStr) -> Result<OwnedFd, Errno> {
        let flags = req.flags;
        let user_excl = flags.contains(OFlags::EXCL);
        // Bounded: each round either finds the file, creates it, or loses a race to a
        // concurrent creator; a dangling symlink in its place makes every round fail.
        for _ in 0..3 {
            if !user_excl {
                match req.raw_with(flags - OFlags::CREATE - OFlags::TRUNC) {
                    // O_CREAT of an existing directory: the kernel's EISDIR.
                    Ok(fd) if is_dir(&fd) => return Err(Errno::ISDIR),
                    Ok(fd) => return self.opened(fd, flags),
                    Err(Errno::NOENT) => {}
                    Err(e) => return Err(e),
                }
            }
            let pdir = req.dir.with(parent, |d| {
                rustix::fs::openat(d, parent, dir_flags(), Mode::empty())
            })?;
            // O_CREAT|O_EXCL of an existing name: the kernel's EEXIST comes first.
            let exists = || {
                rustix::fs::statat(&pdir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok()
                    .then_some(Errno::EXIST)
                    .filter(|_| user_excl)
            };
            self.create_verdict(pdir.as_fd(), &rustix::fs::fstat(&pdir)?, exists)?;
            // O_EXCL never follows a symlink (and, unlike O_NOFOLLOW, is not kept on the fd).
            let create = (flags | OFlags::EXCL) - OFlags::TRUNC;
            match rustix::fs::openat(&pdir, name, create, req.mode) {
                // New and empty: nothing to truncate.
                Ok(fd) => return Ok(lowest(fd, [pdir], flags)),
                Err(Errno::EXIST) if !user_excl => {
                    if let Some(fd) = self.create_at_link_target(&pdir, name, req)? {
                        return Ok(lowest(fd, [pdir], flags));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        // Still "exists" yet cannot be opened or created: a dangling symlink the rule refused
        // to follow (or a lost race each time).
        let decision = self.st.policy.refuse(DenyReason::DanglingSymlink);
        self.refused(decision, None)?;
        req.raw() // audit mode: what the call would have done without the guard
    }

    /// `name` in `pdir` is a symlink to a file not created yet (`app.log -> logs/new.log`).
    /// The bare call creates the link's target; do so only in a directory the rule accepts,
    /// judged on that directory object, creating the last name with `O_EXCL|O_NOFOLLOW`.
    /// `None`: not such a link (or its target appeared meanwhile).
    fn create_at_link_target(
        &self,
        pdir: &OwnedFd,
        name: &CStr,
        req: &OpenReq<'_>,
    ) -> Result<Option<OwnedFd>, Errno> {
        // Rare: a mapping, not the stack, holds the target.
        let mut map = ffi::Mapped::zeroed(PATH_MAX).ok_or(Errno::NOMEM)?;
        let buf = map.bytes_mut();
        let n = match rustix::fs::readlinkat_raw(pdir, name, &mut buf[..PATH_MAX - 1]) {
            Ok(n) if n > 0 && n < PATH_MAX - 1 => n,
            _ => return Ok(None),
        };
        buf[n] = 0;
        let slash = buf[..n].iter().rposition(|&b| b == b'/');
        let (dir_end, name_start) = match slash {
            None => (None, 0),
            Some(i) => (Some(i), i + 1),
        };
        if matches!(&buf[name_start..n], b"" | b"." | b"..") {
            return Ok(None);
        }
        let tdir = match dir_end {
            None => rustix::fs::openat(pdir, c".", dir_flags(), Mode::empty())?,
            Some(0) => rustix::fs::openat(pdir, c"/", dir_flags(), Mode::empty())?,
            Some(i) => {
                buf[i] = 0; // split in place: the directory part, then the name
                let dir = CStr::from_bytes_with_nul(&buf[..=i]).map_err(|_| Errno::INVAL)?;
                rustix::fs::openat(pdir, dir, dir_flags(), Mode::empty())?
            }
        };
        self.create_verdict(tdir.as_fd(), &rustix::fs::fstat(&tdir)?, || None)?;
        let target = CStr::from_bytes_with_nul(&buf[name_start..=n]).map_err(|_| Errno::INVAL)?;
        let create = (req.flags | OFlags::EXCL) - OFlags::TRUNC;
        match rustix::fs::openat(&tdir, target, create, req.mode) {
            Ok(fd) => Ok(Some(lowest(fd, [tdir], req.flags))),
            Err(Errno::EXIST) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `O_TMPFILE`: the new inode belongs to us; judge the directory it is created in.
    #[inline(never)] // rare: its buffers stay out of every open's frame
    fn tmpfile(&self, req: &OpenReq<'_>) -> Result<OwnedFd, Errno> {
        let pdir = req.raw_with(dir_flags())?;
        self.create_verdict(pdir.as_fd(), &rustix::fs::fstat(&pdir)?, || None)?;
        let fd = rustix::fs::openat(&pdir, c".", req.flags, req.mode)?;
        Ok(lowest(fd, [pdir], req.flags))
    }
}

pub(crate) fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn writable(flags: OFlags) -> bool {
    flags.intersects(OFlags::WRONLY | OFlags::RDWR)
}

/// One denial line (or audit line) to syslog.
pub(crate) fn log(
    st: &State,
    audit: bool,
    reason: DenyReason,
    owner: Option<u32>,
    expected: Option<u32>,
    tenant: &[u8],
    path: &[u8],
) {
    st.log.event(Denial {
        audit,
        reason,
        mode: st.policy.mode(),
        uid: Some(rustix::process::geteuid().as_raw()),
        owner,
        expected,
        suppressed: 0,
        comm: b"",
        tenant,
        path,
    });
}

/// Refuse a path that is wrong before anything is opened (audit mode: log, then open).
fn refuse_unopened<C: PathCall>(
    st: &State,
    reason: DenyReason,
    path: &[u8],
    tenant: &[u8],
    req: &C,
) -> Result<C::Out, Errno> {
    let audit = matches!(st.policy.refuse(reason), Decision::Audit(_));
    let path = if path.is_empty() {
        req.path().to_bytes()
    } else {
        path
    };
    log(st, audit, reason, None, None, tenant, path);
    match reason {
        _ if audit => req.raw(),
        DenyReason::PathTooLong => Err(Errno::NAMETOOLONG),
        _ => Err(Errno::ACCESS),
    }
}

/// The tenant directory's owner: cached, else `lstat` (never following it).
fn cached_tenant_owner(st: &State, tenant: &[u8]) -> Result<u32, DenyReason> {
    let key = st.owners.key(tenant);
    let now = state::now_ms();
    if let Some(uid) = st.owners.get(key, now) {
        return Ok(uid);
    }
    let meta = scratch::with_cstr(tenant, |c| rustix::fs::statat(CWD, c, AtFlags::SYMLINK_NOFOLLOW))
        .ok()
        .map(|s| Meta::new(s.st_uid, s.st_mode));
    let uid = toctou_policy::tenant_owner(meta)?;
    st.owners.put(key, uid, now);
    Ok(uid)
}

/// The kernel gives an open the lowest free descriptor; ours opened helper directories
/// first. Once they are closed, move `fd` down to the lowest free number if that is lower,
/// keeping its close-on-exec flag.
pub(crate) fn lowest<const K: usize>(fd: OwnedFd, helpers: [OwnedFd; K], flags: OFlags) -> OwnedFd {
    drop(helpers);
    let moved = if flags.contains(OFlags::CLOEXEC) {
        rustix::io::fcntl_dupfd_cloexec(&fd, 0)
    } else {
        rustix::io::dup(&fd)
    };
    use std::os::fd::AsRawFd;
    match moved {
        Ok(m) if m.as_raw_fd() < fd.as_raw_fd() => m,
        _ => fd,
    }
}

fn is_dir(fd: &OwnedFd) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

/// Truncate the object `fd` holds by opening it again for writing through its magic link
/// (no path lookup a tenant could race), with the kernel's own permission check.
#[inline(never)] // rare: its buffers stay out of every open's frame
fn reopen_truncating(fd: &OwnedFd) -> Result<(), Errno> {
    let mut link = FmtBuf::<40>::new();
    let _ = core::fmt::Write::write_fmt(
        &mut link,
        format_args!("/proc/thread-self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)),
    );
    let link = link.as_cstr().ok_or(Errno::INVAL)?;
    let flags = OFlags::WRONLY | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOCTTY;
    rustix::fs::openat(CWD, link, flags, Mode::empty()).map(drop)
}
