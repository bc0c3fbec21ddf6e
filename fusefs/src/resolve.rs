//! Following a symlink found in SOURCE, ourselves, one component at a time.
//!
//! The kernel is never shown a symlink: a link is resolved here, relative to the directory
//! it sits in (its path below SOURCE), every component opened with `O_NOFOLLOW` from the
//! previous one's held fd, nested links spliced in (at most [`MAX_HOPS`]), `..` popped off
//! the stack of held directories. Nothing outside SOURCE can be reached: `..` above SOURCE
//! and absolute targets not under SOURCE (or the mount point, which shows the same tree)
//! are refused. The caller then judges the final object by the tenant of the directory the
//! link sits in, exactly as if it had been found there.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::stat::FileStat;

use crate::syscalls;

pub const MAX_HOPS: u32 = 40;

/// The result of following a link.
pub enum Followed {
    Object(OwnedFd, FileStat),
    /// The link leads outside SOURCE.
    Escapes,
}

pub fn is_symlink(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Where a link target starts: `Some(rest)` relative to SOURCE's root for an absolute
/// target under one of `prefixes`, `None` for an absolute target elsewhere.
fn strip_prefix<'a>(target: &'a [u8], prefixes: &[Vec<u8>]) -> Option<&'a [u8]> {
    prefixes.iter().find_map(|p| {
        let rest = target.strip_prefix(p.as_slice())?;
        (rest.is_empty() || rest[0] == b'/' || p.as_slice() == b"/").then_some(rest)
    })
}

fn components(p: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    p.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".")
}

/// Deepest directory the daemon serves below SOURCE (and the longest climb `..` verifies).
pub const MAX_DEPTH: u32 = 1024;

fn same(a: &FileStat, b: &FileStat) -> bool {
    (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
}

/// Where `..` of a directory found on disk leads.
enum Climb {
    /// SOURCE's root itself.
    Root,
    /// A directory below SOURCE.
    Dir(OwnedFd, FileStat),
    /// Not below SOURCE any more (the directory was moved out), or too deep to tell.
    Outside,
}

/// The parent of `dir` as it is on disk now, and whether that is still inside SOURCE
/// (`root`): climbed one `..` at a time up to SOURCE, at most [`MAX_DEPTH`] steps.
fn climb(dir: &OwnedFd, root: &FileStat) -> Result<Climb, Errno> {
    let parent = syscalls::open_parent(dir)?;
    let pst = syscalls::fstat(&parent)?;
    if same(&pst, root) {
        return Ok(Climb::Root);
    }
    let (mut cur, mut cst) = (syscalls::open_parent(&parent)?, None);
    for _ in 0..MAX_DEPTH {
        let st = syscalls::fstat(&cur)?;
        if same(&st, root) {
            return Ok(Climb::Dir(parent, pst));
        }
        if cst.as_ref().is_some_and(|c| same(c, &st)) {
            // `..` of `/` is `/`: the top was reached without meeting SOURCE.
            return Ok(Climb::Outside);
        }
        let up = syscalls::open_parent(&cur)?;
        cst = Some(st);
        cur = up;
    }
    Ok(Climb::Outside)
}

/// Follow the link whose target is `target`, sitting in the directory `dir` (the held fd
/// of the directory the link was found in: a relative target starts there, wherever that
/// directory has been moved since). `root` is SOURCE's held fd; `prefixes` are the
/// absolute paths that name SOURCE's root (SOURCE itself and the mount point). `link_ok`
/// is asked about every further link met on the way (its `lstat`) and may refuse it.
pub fn follow(
    root: BorrowedFd<'_>,
    prefixes: &[Vec<u8>],
    dir: BorrowedFd<'_>,
    target: &[u8],
    link_ok: &mut dyn FnMut(&FileStat) -> Result<(), Errno>,
) -> Result<Followed, Errno> {
    let root_st = syscalls::fstat(root)?;
    // The directories walked so far, SOURCE's root below the first (not held: `root`).
    let mut stack: Vec<(OwnedFd, FileStat)> = Vec::new();
    // Whether `stack[0]` was found on disk (the link's directory, or a parent of it reached
    // by `..`) rather than walked down from the root: popping it climbs on disk.
    let mut from_disk = false;
    let rel = if target.first() == Some(&b'/') {
        match strip_prefix(target, prefixes) {
            Some(rest) => rest,
            None => return Ok(Followed::Escapes),
        }
    } else {
        let d = dir.try_clone_to_owned().map_err(|_| Errno::EMFILE)?;
        let st = syscalls::fstat(&d)?;
        if !same(&st, &root_st) {
            stack.push((d, st));
            from_disk = true;
        }
        target
    };
    let mut pending: VecDeque<Vec<u8>> = components(rel).map(<[u8]>::to_vec).collect();

    let mut hops = 1;
    while let Some(c) = pending.pop_front() {
        if c == b".." {
            let Some((top, _)) = stack.pop() else {
                return Ok(Followed::Escapes);
            };
            if stack.is_empty() && from_disk {
                match climb(&top, &root_st)? {
                    Climb::Root => from_disk = false,
                    Climb::Dir(fd, st) => stack.push((fd, st)),
                    Climb::Outside => return Ok(Followed::Escapes),
                }
            }
            continue;
        }
        let fd = match stack.last() {
            Some((_, st)) if !is_dir(st) => return Err(Errno::ENOTDIR),
            Some((dir, _)) => syscalls::open_child(dir, OsStr::from_bytes(&c))?,
            None => syscalls::open_child(root, OsStr::from_bytes(&c))?,
        };
        let st = syscalls::fstat(&fd)?;
        if is_symlink(&st) {
            link_ok(&st)?;
            hops += 1;
            if hops > MAX_HOPS {
                return Err(Errno::ELOOP);
            }
            let t = syscalls::readlink_fd(&fd)?;
            let rest = if t.first() == Some(&b'/') {
                match strip_prefix(&t, prefixes) {
                    Some(rest) => {
                        stack.clear();
                        from_disk = false;
                        rest
                    }
                    None => return Ok(Followed::Escapes),
                }
            } else {
                &t[..]
            };
            for comp in components(rest).rev() {
                pending.push_front(comp.to_vec());
            }
            continue;
        }
        if stack.len() >= MAX_DEPTH as usize {
            return Err(Errno::ENAMETOOLONG);
        }
        stack.push((fd, st));
    }
    match stack.pop() {
        Some((fd, st)) => Ok(Followed::Object(fd, st)),
        None => {
            let fd = root.try_clone_to_owned().map_err(|_| Errno::EMFILE)?;
            Ok(Followed::Object(fd, root_st))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::fd::AsFd;

    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    /// SOURCE with alice/pub/{f, sub/g}, bob/secret and links; removed on drop.
    struct Src(PathBuf);
    impl Drop for Src {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn src() -> (Src, OwnedFd) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("tg-resolve-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("alice/pub/sub")).unwrap();
        std::fs::create_dir_all(d.join("bob")).unwrap();
        std::fs::write(d.join("alice/pub/f"), b"f").unwrap();
        std::fs::write(d.join("alice/pub/sub/g"), b"g").unwrap();
        std::fs::write(d.join("bob/secret"), b"s").unwrap();
        symlink("sub", d.join("alice/pub/s")).unwrap();
        symlink("s/../f", d.join("alice/pub/chain")).unwrap();
        symlink("loop2", d.join("alice/pub/loop1")).unwrap();
        symlink("loop1", d.join("alice/pub/loop2")).unwrap();
        let fd = syscalls::open_source(&d).unwrap();
        (Src(d), fd)
    }

    fn ino_of(p: &std::path::Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().ino()
    }

    fn follow_to(s: &Src, fd: &OwnedFd, dir: &str, target: &str) -> Result<Option<u64>, Errno> {
        let prefixes = vec![s.0.as_os_str().as_bytes().to_vec(), b"/mnt/guarded".to_vec()];
        let dir = syscalls::open_source(&s.0.join(dir.trim_start_matches('/'))).unwrap();
        Ok(
            match follow(fd.as_fd(), &prefixes, dir.as_fd(), target.as_bytes(), &mut |_| {
                Ok(())
            })? {
                Followed::Object(_, st) => Some(st.st_ino),
                Followed::Escapes => None,
            },
        )
    }

    #[test]
    fn follows_inside_source() {
        let (s, fd) = src();
        let f = ino_of(&s.0.join("alice/pub/f"));
        assert_eq!(follow_to(&s, &fd, "/alice/pub", "f"), Ok(Some(f)));
        assert_eq!(follow_to(&s, &fd, "/alice/pub", "./sub/../f"), Ok(Some(f)));
        assert_eq!(
            follow_to(&s, &fd, "/alice/pub", "chain"),
            Ok(Some(f)),
            "nested links"
        );
        assert_eq!(
            follow_to(&s, &fd, "/alice/pub/s", "../f"),
            Ok(Some(f)),
            "dir via link"
        );
        let abs = format!("{}/alice/pub/f", s.0.display());
        assert_eq!(
            follow_to(&s, &fd, "/alice/pub", &abs),
            Ok(Some(f)),
            "absolute under SOURCE"
        );
        assert_eq!(
            follow_to(&s, &fd, "/alice/pub", "/mnt/guarded/alice/pub/f"),
            Ok(Some(f))
        );
        // Another tenant's file is reached (and then judged by the caller, not here).
        let secret = ino_of(&s.0.join("bob/secret"));
        assert_eq!(
            follow_to(&s, &fd, "/alice/pub", "../../bob/secret"),
            Ok(Some(secret))
        );
    }

    #[test]
    fn never_leaves_source() {
        let (s, fd) = src();
        assert_eq!(follow_to(&s, &fd, "/alice/pub", "../../../etc/passwd"), Ok(None));
        assert_eq!(follow_to(&s, &fd, "/alice/pub", "/etc/passwd"), Ok(None));
        assert_eq!(follow_to(&s, &fd, "/alice/pub", "/mnt/guardedx/a"), Ok(None));
        assert_eq!(follow_to(&s, &fd, "/alice/pub", "loop1"), Err(Errno::ELOOP));
        assert_eq!(follow_to(&s, &fd, "/alice/pub", "f/x"), Err(Errno::ENOTDIR));
        assert_eq!(follow_to(&s, &fd, "/alice/pub", "missing"), Err(Errno::ENOENT));
    }

    fn follow_from(fd: &OwnedFd, held: &OwnedFd, target: &str) -> Result<Option<u64>, Errno> {
        Ok(
            match follow(fd.as_fd(), &[], held.as_fd(), target.as_bytes(), &mut |_| Ok(()))? {
                Followed::Object(_, st) => Some(st.st_ino),
                Followed::Escapes => None,
            },
        )
    }

    #[test]
    fn dotdot_climbs_from_where_the_directory_is_now() {
        let (s, fd) = src();
        let held = syscalls::open_source(&s.0.join("alice/pub/sub")).unwrap();
        std::fs::create_dir_all(s.0.join("bob/deeper")).unwrap();
        std::fs::write(s.0.join("bob/deeper/x"), b"x").unwrap();
        std::fs::rename(s.0.join("alice/pub/sub"), s.0.join("bob/deeper/sub")).unwrap();
        let x = ino_of(&s.0.join("bob/deeper/x"));
        assert_eq!(follow_from(&fd, &held, "../x"), Ok(Some(x)));
        assert_eq!(
            follow_from(&fd, &held, "g"),
            Ok(Some(ino_of(&s.0.join("bob/deeper/sub/g"))))
        );
        assert_eq!(follow_from(&fd, &held, "../../.."), Ok(Some(ino_of(&s.0))));
        assert_eq!(follow_from(&fd, &held, "../../../.."), Ok(None));
        // Moved out of SOURCE: `..` no longer leads inside it.
        let out = PathBuf::from(format!("{}-out", s.0.display()));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::rename(s.0.join("bob/deeper"), out.join("deeper")).unwrap();
        let r = follow_from(&fd, &held, "../x");
        let _ = std::fs::remove_dir_all(&out);
        assert_eq!(r, Ok(None));
    }

    #[test]
    fn prefixes() {
        let p = vec![b"/srv/www".to_vec(), b"/var/www".to_vec()];
        assert_eq!(strip_prefix(b"/srv/www/alice/x", &p), Some(&b"/alice/x"[..]));
        assert_eq!(strip_prefix(b"/srv/www", &p), Some(&b""[..]));
        assert_eq!(strip_prefix(b"/srv/wwwx/a", &p), None);
        assert_eq!(strip_prefix(b"/etc/passwd", &p), None);
        assert_eq!(strip_prefix(b"/var/www/bob", &p), Some(&b"/bob"[..]));
    }
}
