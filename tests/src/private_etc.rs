//! A private `/etc` for one program run: the real `/etc` with a few files added
//! (`ld.so.preload`, `toctou-guard.conf`) on an overlay mounted in a private mount namespace,
//! which vanishes with the program. The real `/etc` is never written.
//!
//! Moved here from `tests/tests/adversary.rs` (its `PrivateEtc` and `hooks_copy`, same
//! interface) so that `ld_so_preload.rs` shares it. Needs root (`unshare -m`, `mount`) and
//! util-linux's `unshare` and `setpriv`.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::shim_fixture::{Fixture, c_program};

/// Runs `program args` in a private mount namespace whose `/etc` is the real one plus the
/// files in `etc` (and minus `/etc/toctou-guard.conf` unless `etc` names it), as `uid`,
/// with `env` added for `program` alone (set by `env(1)`, after the privileges are dropped:
/// the namespace's own shell and `setpriv` see none of it).
pub struct PrivateEtc {
    dir: PathBuf,
}

impl PrivateEtc {
    /// The overlay's directories under `f.base/etc-TAG`, its upper layer holding `etc`
    /// (each file root's, 0644).
    pub fn new(f: &Fixture, tag: &str, etc: &[(&str, &[u8])]) -> PrivateEtc {
        let dir = f.base.join(format!("etc-{tag}"));
        let upper = dir.join("upper");
        fs::create_dir_all(&upper).unwrap();
        fs::create_dir_all(dir.join("work")).unwrap();
        // The merged /etc takes the upper layer's own mode: keep it the real /etc's, whatever
        // the umask (the guard refuses a config under a group- or world-writable directory).
        fs::set_permissions(&upper, fs::Permissions::from_mode(0o755)).unwrap();
        for (name, text) in etc {
            let p = upper.join(name);
            fs::write(&p, text).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        }
        PrivateEtc { dir }
    }

    /// `program args` as `uid` (gid `uid`, no supplementary groups), environment `PATH`
    /// and `env` only.
    pub fn run(&self, uid: u32, env: &[(&str, &OsStr)], program: &Path, args: &[&OsStr]) -> Output {
        let upper = self.dir.join("upper");
        let script = format!(
            "mount -t overlay overlay -o lowerdir=/etc,upperdir={},workdir={} /etc || exit 97; \
             [ -e {}/toctou-guard.conf ] || rm -f /etc/toctou-guard.conf; \
             exec setpriv --reuid={uid} --regid={uid} --clear-groups \"$@\"",
            upper.display(),
            self.dir.join("work").display(),
            upper.display(),
        );
        let mut assignments = Vec::new();
        for (k, v) in env {
            let mut a = OsString::from(format!("{k}="));
            a.push(v);
            assignments.push(a);
        }
        let out = Command::new("unshare")
            .args([
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
                "sh",
                "/usr/bin/env",
            ])
            .args(assignments)
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .expect("unshare");
        assert_ne!(
            out.status.code(),
            Some(97),
            "overlay mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// A copy of the `hooks` helper at `path` (parents 0755), owned by root, mode `mode`.
pub fn hooks_copy(path: &Path, mode: u32) -> PathBuf {
    let mut d = path.parent().unwrap().to_path_buf();
    fs::create_dir_all(&d).unwrap();
    while d.starts_with(std::env::temp_dir()) && d != std::env::temp_dir() {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        d.pop();
    }
    fs::copy(c_program("hooks"), path).unwrap();
    chown(path, Some(0), Some(0)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}
