//! Is a configuration file trustworthy? Only if nobody but root (or the process's own uid)
//! can change it or any directory above it; otherwise a tenant could switch the guard off.
//!
//! The caller gathers the facts (`lstat` of the file and every ancestor); this decides.

use std::path::Path;

use crate::error::{Error, ErrorKind};

pub use crate::meta::Meta;
use crate::meta::{S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISVTX};

/// Check one component. `path` is the component's full path, `is_target` for the file itself.
pub fn check_component(
    config: &Path,
    path: &Path,
    meta: Meta,
    euid: u32,
    is_target: bool,
) -> Result<(), Error> {
    let unsafe_err = |why: String| {
        Error::new(
            ErrorKind::UnsafeOwnership,
            config,
            None,
            format!("refusing to trust it: {why} (it must be owned by root and writable by its owner only)"),
        )
    };
    if meta.uid != 0 && meta.uid != euid {
        return Err(unsafe_err(format!(
            "{} is owned by uid {}",
            path.display(),
            meta.uid
        )));
    }
    let kind = meta.mode & S_IFMT;
    if kind == S_IFLNK {
        return Ok(()); // a symlink's own bits mean nothing; its owner and directory are checked
    }
    if is_target && kind != S_IFREG {
        return Err(unsafe_err(format!("{} is not a regular file", path.display())));
    }
    let sticky_dir = kind == S_IFDIR && meta.mode & S_ISVTX != 0;
    if meta.mode & 0o022 != 0 && !sticky_dir {
        return Err(unsafe_err(format!(
            "{} is writable by group or others (mode {:o})",
            path.display(),
            meta.mode & 0o7777
        )));
    }
    Ok(())
}

/// Check every directory above the file (the file itself is checked on its opened
/// descriptor by the loader), using `lstat` to read each one.
pub fn check_ancestors(
    config: &Path,
    euid: u32,
    mut lstat: impl FnMut(&Path) -> Option<Meta>,
) -> Result<(), Error> {
    for p in config.ancestors().skip(1) {
        if p.as_os_str().is_empty() {
            break;
        }
        let meta = lstat(p).ok_or_else(|| {
            Error::new(
                ErrorKind::Io,
                config,
                None,
                format!("cannot read {}", p.display()),
            )
        })?;
        check_component(config, p, meta, euid, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(uid: u32, perm: u32) -> Meta {
        Meta {
            uid,
            mode: S_IFREG | perm,
        }
    }
    fn dir(uid: u32, perm: u32) -> Meta {
        Meta {
            uid,
            mode: S_IFDIR | perm,
        }
    }

    fn check(f: Meta, parent: Meta, euid: u32) -> Result<(), Error> {
        let conf = Path::new("/etc/tg/x.conf");
        check_component(conf, conf, f, euid, true)?;
        check_ancestors(conf, euid, |p| {
            Some(match p.to_str().unwrap() {
                "/etc/tg" => parent,
                _ => dir(0, 0o755),
            })
        })
    }

    #[test]
    fn root_owned_is_trusted() {
        check(file(0, 0o644), dir(0, 0o755), 33).unwrap();
        check(file(33, 0o600), dir(0, 0o755), 33).expect("own uid");
        check(file(0, 0o644), dir(0, 0o1777), 33).expect("sticky dir");
    }

    #[test]
    fn tenant_writable_is_refused() {
        let e = check(file(1001, 0o644), dir(0, 0o755), 33).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnsafeOwnership);
        assert!(
            e.to_string().contains("/etc/tg/x.conf is owned by uid 1001"),
            "{e}"
        );
        let e = check(file(0, 0o666), dir(0, 0o755), 33).unwrap_err();
        assert!(
            e.to_string().contains("writable by group or others (mode 666)"),
            "{e}"
        );
        let e = check(file(0, 0o644), dir(1001, 0o755), 33).unwrap_err();
        assert!(e.to_string().contains("/etc/tg is owned by uid 1001"), "{e}");
        let e = check(file(0, 0o644), dir(0, 0o777), 33).unwrap_err();
        assert!(e.to_string().contains("/etc/tg is writable"), "{e}");
        assert!(
            check(
                Meta {
                    uid: 0,
                    mode: S_IFDIR | 0o755
                },
                dir(0, 0o755),
                0
            )
            .is_err(),
            "not a file"
        );
    }
}
