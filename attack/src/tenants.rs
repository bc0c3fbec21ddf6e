//! The two tenants: a fresh base directory under /tmp owned by root (0755), with
//! `www/victim/public_html` and `www/attacker/public_html` owned by their tenants' numeric
//! uids, the victim's secret carrying a fresh marker, a root-owned "system" secret, and
//! the legit files both tenants own. Everything is removed on `Drop`.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, Wrap};

/// Default numeric uids (and gids) of the two tenants.
pub const VICTIM_UID: u32 = 41001;
pub const ATTACKER_UID: u32 = 41002;

/// Name of the victim's secret directory (inside its document root) and of the file in it.
pub const SECRET_DIR: &str = "tg-secret";
pub const SECRET_FILE: &str = "page.txt";
/// Where the legit files live inside each document root.
pub const LEGIT_DIR: &str = "tg-legit";

/// One tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The tenant directory: the `*` of `root .../*/public_html`; its owner is the tenant's.
    pub home: PathBuf,
    /// The document root, `home/public_html`.
    pub docroot: PathBuf,
}

/// A legit request: a file a tenant owns (or a shared root-owned file) and its content.
#[derive(Debug, Clone)]
pub struct LegitFile {
    pub path: PathBuf,
    pub content: Vec<u8>,
    /// Owned by the attacker tenant (left out while its document root is being swapped).
    pub attacker: bool,
    /// Root-owned, served only with `allow_uid 0`.
    pub shared: bool,
}

/// The tenants of one run.
#[derive(Debug)]
pub struct Tenants {
    /// The temporary base directory (removed on drop); `None` for an external target.
    pub base: Option<PathBuf>,
    /// The directory that URL `/` maps to for the built-in targets (`base/www`).
    pub www: PathBuf,
    /// Root-owned scratch directory: server configs, logs, sockets, the guard config.
    pub run: PathBuf,
    pub victim: Tenant,
    pub attacker: Tenant,
    /// The fresh random marker of this run.
    pub marker: String,
    /// The victim's secret file (contains the marker).
    pub secret: PathBuf,
    /// The directory holding it.
    pub secret_dir: PathBuf,
    /// A root-owned file the server can read, containing the marker.
    pub system_secret: PathBuf,
    /// Bytes that identify the system secret in a response.
    pub system_marker: Vec<u8>,
    pub legit: Vec<LegitFile>,
    /// Paths created inside an operator's directories (external mode), removed on drop.
    created: Vec<PathBuf>,
}

/// Options for [`Tenants::create`].
#[derive(Debug, Clone)]
pub struct TenantOptions {
    pub victim_uid: u32,
    pub attacker_uid: u32,
}

impl Default for TenantOptions {
    fn default() -> Self {
        TenantOptions {
            victim_uid: VICTIM_UID,
            attacker_uid: ATTACKER_UID,
        }
    }
}

/// Create a directory (not failing if it exists), then set its owner and mode.
pub fn mk_dir(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("mkdir {}", path.display()), e)),
    }
    lchown(path, Some(uid), Some(gid)).wrap(|| format!("chown {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).wrap(|| format!("chmod {}", path.display()))
}

/// Write a file, then set its owner and mode.
pub fn mk_file(path: &Path, content: &[u8], uid: u32, gid: u32, mode: u32) -> Result<()> {
    fs::write(path, content).wrap(|| format!("write {}", path.display()))?;
    lchown(path, Some(uid), Some(gid)).wrap(|| format!("chown {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).wrap(|| format!("chmod {}", path.display()))
}

/// Create a symlink `path -> target` owned by `uid` (the link itself, not its target).
pub fn mk_symlink(target: &Path, path: &Path, uid: u32, gid: u32) -> Result<()> {
    symlink(target, path).wrap(|| format!("symlink {} -> {}", path.display(), target.display()))?;
    lchown(path, Some(uid), Some(gid)).wrap(|| format!("lchown {}", path.display()))
}

impl Tenant {
    /// Write `rel` (a path under the document root) as this tenant, mode 0644, making the
    /// directories on the way (0755, the tenant's): any size of file (the benchmarks serve
    /// a 1 MiB one). Removed with the base directory.
    pub fn add_file(&self, rel: &str, content: &[u8]) -> Result<PathBuf> {
        let path = self.add_dirs(rel)?;
        mk_file(&path, content, self.uid, self.gid, 0o644)?;
        Ok(path)
    }

    /// A symlink `rel -> target` (under the document root), owned by this tenant.
    pub fn add_symlink(&self, rel: &str, target: &Path) -> Result<PathBuf> {
        let path = self.add_dirs(rel)?;
        mk_symlink(target, &path, self.uid, self.gid)?;
        Ok(path)
    }

    /// The directories between the document root and `rel`, created as this tenant.
    fn add_dirs(&self, rel: &str) -> Result<PathBuf> {
        let path = self.docroot.join(rel);
        let mut dir = self.docroot.clone();
        for c in Path::new(rel).parent().into_iter().flat_map(Path::components) {
            dir.push(c);
            mk_dir(&dir, self.uid, self.gid, 0o755)?;
        }
        Ok(path)
    }
}

/// `n` bytes of HTML-ish text, the same every time (the benchmarks' payloads).
pub fn filler(n: usize) -> Vec<u8> {
    let line = b"<p>toctou-guard benchmark payload, the same bytes every time.</p>\n";
    line.iter().copied().cycle().take(n).collect()
}

impl Tenants {
    /// Fresh tenants under a new `/tmp/toctou-attack-PID-RAND` (needs root, for chown).
    pub fn create(opts: &TenantOptions) -> Result<Tenants> {
        if crate::sys::geteuid() != 0 {
            return Err(Error::msg(
                "setting up tenants needs root (it chowns files to the tenant uids)",
            ));
        }
        let marker = crate::marker::fresh()?;
        let base = PathBuf::from(format!(
            "/tmp/toctou-attack-{}-{}",
            std::process::id(),
            &marker[7..15]
        ));
        fs::create_dir(&base).wrap(|| format!("mkdir {}", base.display()))?;
        // From here on, Drop removes the base directory on any error.
        let mut t = Tenants {
            base: Some(base.clone()),
            www: base.join("www"),
            run: base.join("run"),
            victim: tenant("victim", opts.victim_uid, &base.join("www/victim")),
            attacker: tenant("attacker", opts.attacker_uid, &base.join("www/attacker")),
            secret: PathBuf::new(),
            secret_dir: PathBuf::new(),
            system_secret: base.join("system-secret.txt"),
            system_marker: format!("SYSTEM {marker}").into_bytes(),
            marker,
            legit: Vec::new(),
            created: Vec::new(),
        };
        mk_dir(&base, 0, 0, 0o755)?;
        mk_dir(&t.www, 0, 0, 0o755)?;
        mk_dir(&t.run, 0, 0, 0o755)?;
        mk_dir(&base.join("mnt"), 0, 0, 0o755)?;
        for who in [&t.victim, &t.attacker] {
            mk_dir(&who.home, who.uid, who.gid, 0o755)?;
            mk_dir(&who.docroot, who.uid, who.gid, 0o755)?;
        }
        mk_file(
            &t.system_secret,
            format!("SYSTEM {}\n", t.marker).as_bytes(),
            0,
            0,
            0o644,
        )?;
        t.make_secret(SECRET_DIR)?;
        t.make_legit()?;
        Ok(t)
    }

    /// Tenants given by an operator: two document roots (whose owners are the tenants); the
    /// harness adds its secret and legit files inside them and removes them on drop.
    pub fn external(attacker_docroot: &Path, victim_docroot: &Path) -> Result<Tenants> {
        use std::os::unix::fs::MetadataExt;
        let marker = crate::marker::fresh()?;
        let owner = |p: &Path| -> Result<(u32, u32)> {
            let m = fs::symlink_metadata(p).wrap(|| format!("lstat {}", p.display()))?;
            if !m.is_dir() {
                return Err(Error::msg(format!("{} is not a directory", p.display())));
            }
            Ok((m.uid(), m.gid()))
        };
        let (au, ag) = owner(attacker_docroot)?;
        let (vu, vg) = owner(victim_docroot)?;
        if au == vu {
            return Err(Error::msg(
                "the attacker's and the victim's document roots have the same owner",
            ));
        }
        let mk = |name: &str, uid, gid, docroot: &Path| Tenant {
            name: name.to_string(),
            uid,
            gid,
            home: docroot.parent().unwrap_or(docroot).to_path_buf(),
            docroot: docroot.to_path_buf(),
        };
        let run = PathBuf::from(format!(
            "/tmp/toctou-attack-{}-{}",
            std::process::id(),
            &marker[7..15]
        ));
        fs::create_dir(&run).wrap(|| format!("mkdir {}", run.display()))?;
        let mut t = Tenants {
            base: Some(run.clone()),
            www: common_ancestor(attacker_docroot, victim_docroot),
            run: run.clone(),
            victim: mk("victim", vu, vg, victim_docroot),
            attacker: mk("attacker", au, ag, attacker_docroot),
            secret: PathBuf::new(),
            secret_dir: PathBuf::new(),
            system_secret: PathBuf::from("/etc/passwd"),
            system_marker: b"root:x:0:0:".to_vec(),
            marker,
            legit: Vec::new(),
            created: Vec::new(),
        };
        mk_dir(&run, 0, 0, 0o755)?;
        let secret_name = format!("{SECRET_DIR}-{}", &t.marker[7..15]);
        t.make_secret(&secret_name)?;
        t.make_legit()?;
        Ok(t)
    }

    fn make_secret(&mut self, dir_name: &str) -> Result<()> {
        let v = &self.victim;
        self.secret_dir = v.docroot.join(dir_name);
        self.secret = self.secret_dir.join(SECRET_FILE);
        if self.secret_dir.symlink_metadata().is_ok() {
            return Err(Error::msg(format!(
                "{} already exists",
                self.secret_dir.display()
            )));
        }
        mk_dir(&self.secret_dir, v.uid, v.gid, 0o755)?;
        self.created.push(self.secret_dir.clone());
        mk_file(
            &self.secret,
            format!("SECRET {}\n", self.marker).as_bytes(),
            v.uid,
            v.gid,
            0o644,
        )
    }

    fn make_legit(&mut self) -> Result<()> {
        let mut legit = Vec::new();
        for who in [&self.victim, &self.attacker] {
            let (u, g) = (who.uid, who.gid);
            let root = who.docroot.join(LEGIT_DIR);
            if root.symlink_metadata().is_ok() {
                return Err(Error::msg(format!("{} already exists", root.display())));
            }
            mk_dir(&root, u, g, 0o755)?;
            self.created.push(root.clone());
            for d in ["nested", "nested/a", "nested/a/b"] {
                mk_dir(&root.join(d), u, g, 0o755)?;
            }
            let index = format!("{} legit index\n", who.name).into_bytes();
            let deep = format!("{} legit deep file\n", who.name).into_bytes();
            mk_file(&root.join("index.html"), &index, u, g, 0o644)?;
            mk_file(&root.join("nested/a/b/deep.txt"), &deep, u, g, 0o644)?;
            // The tenant's own symlinks, relative so they also work through a FUSE mount.
            mk_symlink(Path::new("nested/a/b/deep.txt"), &root.join("own-link.txt"), u, g)?;
            mk_symlink(Path::new("nested/a"), &root.join("linkdir"), u, g)?;
            let attacker = who.uid == self.attacker.uid;
            for (p, c) in [
                ("index.html", &index),
                ("nested/a/b/deep.txt", &deep),
                ("own-link.txt", &deep),
                ("linkdir/b/deep.txt", &deep),
            ] {
                legit.push(LegitFile {
                    path: root.join(p),
                    content: c.clone(),
                    attacker,
                    shared: false,
                });
            }
            let shared = format!("shared root-owned file in {}'s docroot\n", who.name).into_bytes();
            mk_file(&root.join("shared.txt"), &shared, 0, 0, 0o644)?;
            legit.push(LegitFile {
                path: root.join("shared.txt"),
                content: shared,
                attacker,
                shared: true,
            });
        }
        self.legit = legit;
        Ok(())
    }

    /// The guard's `root` pattern for these tenants (`.../www/*/public_html`).
    pub fn root_pattern(&self) -> String {
        let home_parent = self.attacker.home.parent().unwrap_or(Path::new("/"));
        let leaf = self
            .attacker
            .docroot
            .file_name()
            .map(|s| s.to_string_lossy().into_owned());
        format!("{}/*/{}", home_parent.display(), leaf.unwrap_or_default())
    }

    /// Keep everything: nothing is removed, now or on drop. The base directory, if any.
    pub fn keep(&mut self) -> Option<PathBuf> {
        self.created.clear();
        self.base.take()
    }

    /// Remove everything now (also done on drop).
    pub fn cleanup(&mut self) {
        for p in self.created.drain(..).rev() {
            let _ = fs::remove_dir_all(&p);
        }
        if let Some(base) = self.base.take() {
            unmount_under(&base);
            let _ = fs::remove_dir_all(&base);
        }
    }
}

impl Drop for Tenants {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn tenant(name: &str, uid: u32, home: &Path) -> Tenant {
    Tenant {
        name: name.to_string(),
        uid,
        gid: uid,
        home: home.to_path_buf(),
        docroot: home.join("public_html"),
    }
}

/// The longest common ancestor directory of two absolute paths.
pub fn common_ancestor(a: &Path, b: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for (x, y) in a.components().zip(b.components()) {
        if x != y {
            break;
        }
        out.push(x);
    }
    out
}

/// A relative path from directory `from` to `to` (both absolute, lexically normal).
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let common = common_ancestor(from, to);
    let mut out = PathBuf::new();
    let ups = from
        .components()
        .count()
        .saturating_sub(common.components().count());
    for _ in 0..ups {
        out.push("..");
    }
    if let Ok(rest) = to.strip_prefix(&common) {
        out.push(rest);
    }
    out
}

/// Lazily unmount whatever is still mounted under `dir` (a FUSE mount left by a crash would
/// otherwise make removal recurse through it).
fn unmount_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    for line in info.lines() {
        if let Some(mp) = line.split(' ').nth(4)
            && mp.starts_with(&prefix)
        {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(mp)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_has_the_size_asked_for() {
        assert_eq!(filler(512).len(), 512);
        assert!(filler(1 << 20).starts_with(b"<p>"));
        assert!(filler(0).is_empty());
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(
                Path::new("/b/www/attacker/public_html/x"),
                Path::new("/b/www/victim/public_html/s/p")
            ),
            PathBuf::from("../../../victim/public_html/s/p")
        );
        assert_eq!(
            relative(Path::new("/b/www/a/p/e"), Path::new("/b/www")),
            PathBuf::from("../../..")
        );
    }
}
