//! The attacks, one per scenario: what the attacker tenant lays out in its own document
//! root, which pair of names its swapper exchanges, and which files it asks the server for.
//!
//! Every swap is `renameat2(RENAME_EXCHANGE)` of two names in one attacker-owned directory,
//! done by the attacker's uid (see `swapper.rs`). Files are laid out by root and `lchown`ed
//! to the attacker, which is what the attacker could do itself.
#![forbid(unsafe_code)]

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::error::{Error, Result, Wrap};
pub use crate::exhaust::MountLoad;
use crate::tenants::{LegitFile, SECRET_FILE, Tenants, mk_dir, mk_file, mk_symlink, relative};

/// One attack (or the legit lane alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// The requested file flips between the attacker's file and a symlink to the secret.
    Final,
    /// An intermediate directory flips with a symlink to the victim's directory.
    Dir,
    /// The attacker's document root itself flips with a symlink to the victim's.
    Docroot,
    /// A hard link to the victim's secret.
    Hardlink,
    /// The requested file flips with a relative symlink `../../../victim/...`.
    Dotdot,
    /// The requested file flips with a symlink to a root-owned file.
    System,
    /// A path component cycles directory -> symlink to the victim's dir -> regular file.
    Dirfile,
    /// An intermediate directory flips with a symlink `../../..` so that the walk leaves the
    /// attacker's root and ends in the victim's.
    Escape,
    /// No attack: both tenants ask for their own files (all clients in the legit lane).
    Legit,
    /// PHP only: the attacker's page reads the victim's file by absolute path.
    Direct,
    /// WebDAV writes (`PUT`, `DELETE`, `MOVE`) into the attacker's upload directory while it
    /// flips with a symlink to the victim's world-writable one; a leak is a victim file
    /// created, changed or removed.
    Dav,
    /// PHP only: a directory outside the document root (`private/d`, which PHP's realpath
    /// cache remembers as a real directory) flips with a symlink to the victim's secret
    /// directory.
    PrivateSwap,
    /// The naive server holds the attacker's directory open and serves `openat(dir, name)`
    /// from it, while the attacker moves that directory out of every root and back.
    DirfdEscape,
    /// The same from the working directory: `chdir(dir)`, then `open(name)`.
    CwdEscape,
    /// Not a race: the attacker plants links in the victim's world-writable `uploads/`
    /// pointing into the victim's own `private/` and asks for them by the victim's URL.
    UploadsLink,
    /// Daemon exhaustion: a 600-deep chain of 255-byte names walked through the mount by
    /// the attacker while the lanes run (and a 600-deep short chain asked for over HTTP).
    DeepTree,
    /// Daemon exhaustion: 5,000 hard links to one symlink to one directory, held open
    /// (`O_PATH`) through the mount by the attacker while the lanes run.
    AliasPinning,
}

impl Scenario {
    pub const ALL: [Scenario; 17] = [
        Scenario::Final,
        Scenario::Dir,
        Scenario::Docroot,
        Scenario::Hardlink,
        Scenario::Dotdot,
        Scenario::System,
        Scenario::Dirfile,
        Scenario::Escape,
        Scenario::Legit,
        Scenario::Direct,
        Scenario::Dav,
        Scenario::PrivateSwap,
        Scenario::DirfdEscape,
        Scenario::CwdEscape,
        Scenario::UploadsLink,
        Scenario::DeepTree,
        Scenario::AliasPinning,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Final => "final",
            Scenario::Dir => "dir",
            Scenario::Docroot => "docroot",
            Scenario::Hardlink => "hardlink",
            Scenario::Dotdot => "dotdot",
            Scenario::System => "system",
            Scenario::Dirfile => "dirfile",
            Scenario::Escape => "escape",
            Scenario::Legit => "legit",
            Scenario::Direct => "direct",
            Scenario::Dav => "dav",
            Scenario::PrivateSwap => "private-swap",
            Scenario::DirfdEscape => "dirfd-escape",
            Scenario::CwdEscape => "cwd-escape",
            Scenario::UploadsLink => "uploads-link",
            Scenario::DeepTree => "deep-tree",
            Scenario::AliasPinning => "alias-pinning",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// One line for `--help` and the README.
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Final => {
                "the requested file flips (RENAME_EXCHANGE) between the attacker's file and a symlink to the victim's secret"
            }
            Scenario::Dir => {
                "an intermediate directory flips with a symlink to the victim's secret directory"
            }
            Scenario::Docroot => {
                "the attacker's document root flips with a symlink to the victim's document root"
            }
            Scenario::Hardlink => {
                "a hard link to the victim's secret inside the attacker's root (made by root: fs.protected_hardlinks=1 forbids the tenant to)"
            }
            Scenario::Dotdot => {
                "the requested file flips with a relative symlink ../../../victim/public_html/..."
            }
            Scenario::System => {
                "the requested file flips with a symlink to a root-owned file the server can read (config without allow_uid 0)"
            }
            Scenario::Dirfile => {
                "a path component cycles directory -> symlink to the victim's directory -> regular file"
            }
            Scenario::Escape => {
                "an intermediate directory flips with a symlink '../../..', so the walk leaves the attacker's root and ends in the victim's"
            }
            Scenario::Legit => {
                "no attack: both tenants fetch their own files, nested files, their own symlinks and root-owned shared files"
            }
            Scenario::Direct => "PHP only: the attacker's page reads the victim's secret by absolute path",
            Scenario::CwdEscape => {
                "naive only: the server chdir()s into the attacker's directory, then open(name); the attacker moves that directory out of every root and back"
            }
            Scenario::DirfdEscape => {
                "naive only: the server opens the attacker's directory, then openat(dir, name); the attacker moves that directory out of every root and back (RENAME_EXCHANGE)"
            }
            Scenario::PrivateSwap => {
                "PHP only: a directory outside the document root (private/d, cached by PHP's realpath cache) flips with a symlink to the victim's secret directory"
            }
            Scenario::UploadsLink => {
                "not a race: attacker-owned links in the victim's 1777 uploads/ to the victim's own private/db.conf (private 0711, db.conf 0644, so that a bare server can read it), asked for by the victim's URL"
            }
            Scenario::DeepTree => {
                "daemon exhaustion: the attacker walks a 600-deep chain of 255-byte names (and a link at its bottom) through the mount while the lanes run; the daemon's RSS and fds are bounded"
            }
            Scenario::AliasPinning => {
                "daemon exhaustion: the attacker holds 5,000 hard links to one symlink to one of its directories open (O_PATH) through the mount while the lanes run; no EMFILE for anyone else"
            }
            Scenario::Dav => {
                "WebDAV PUT/DELETE/MOVE into the attacker's upload directory while it flips with a symlink to the victim's world-writable one (a leak: a victim file created, changed or removed)"
            }
        }
    }

    /// True for the attacks that are a race (a bare target must leak in them).
    pub fn is_race(self) -> bool {
        !matches!(
            self,
            Scenario::Hardlink
                | Scenario::Legit
                | Scenario::Direct
                | Scenario::UploadsLink
                | Scenario::DeepTree
                | Scenario::AliasPinning
        )
    }

    /// True for the attacks on the FUSE daemon's resources: the daemon's RSS and fd count
    /// are measured and bounded; a bare target (no daemon) is shown for information only.
    pub fn exhausts_daemon(self) -> bool {
        matches!(self, Scenario::DeepTree | Scenario::AliasPinning)
    }

    /// True when there is an attack lane at all.
    pub fn is_attack(self) -> bool {
        self != Scenario::Legit
    }
}

/// What the swapper does: exchange each pair twice (there and back), cycling through the
/// pairs, so that the layout is whole again whenever it stops between units.
#[derive(Debug, Clone)]
pub struct SwapPlan {
    /// The attacker-owned directory holding both names.
    pub dir: PathBuf,
    pub pairs: Vec<(String, String)>,
    /// Swapper threads (1 when several pairs share a name: units must not interleave).
    pub max_threads: usize,
}

/// A scenario laid out on disk; removed again on drop.
#[derive(Debug)]
pub struct Prepared {
    pub scenario: Scenario,
    /// Files the attacker asks for (the lane whose responses are searched for the marker).
    pub attack: Vec<PathBuf>,
    /// A response containing any of these is a leak.
    pub leak_markers: Vec<Vec<u8>>,
    pub swap: Option<SwapPlan>,
    /// Whether the guard config may contain `allow_uid 0` (not in `system`).
    pub allow_root: bool,
    /// The attacker's document root moves: keep its files out of the legit lane.
    pub moves_attacker_docroot: bool,
    /// Appended to the URLs of `attack` (`?dirfd`: the naive server opens from a directory).
    pub attack_query: &'static str,
    /// Writes the attacker sends (the `dav` scenario), beside the `GET`s of `attack`.
    pub writes: Vec<Write>,
    /// A directory of the victim's that no request may change: each entry created, changed
    /// or removed in it during the cell counts as a leak.
    pub victim_dir: Option<PathBuf>,
    pub note: Option<String>,
    /// Legit files of this scenario only (the victim's own link beside the planted ones).
    pub extra_legit: Vec<LegitFile>,
    /// What the attacker's helper does through the served tree while the lanes run.
    pub mount_load: Option<MountLoad>,
    /// How many descriptors the FUSE daemon may gain in the cell (the daemon-exhaustion
    /// scenarios).
    pub fd_growth_bound: Option<u64>,
    cleanup: Vec<PathBuf>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for p in self.cleanup.drain(..) {
            match p.symlink_metadata() {
                Ok(m) if m.is_dir() => {
                    let _ = fs::remove_dir_all(&p);
                }
                Ok(_) => {
                    let _ = fs::remove_file(&p);
                }
                Err(_) => {}
            }
        }
    }
}

/// The victim's upload directory (`dav`) and how many files it holds.
pub const DAV_DIR: &str = "tg-uploads";
const DAV_FILES: usize = 8;

/// One WebDAV write of the attack lane.
#[derive(Debug, Clone)]
pub struct Write {
    pub method: &'static str,
    pub path: PathBuf,
    /// `MOVE`'s destination.
    pub destination: Option<PathBuf>,
}

/// What a directory holds: name → (inode, bytes) of each entry (bytes of regular files).
pub type Snapshot = std::collections::BTreeMap<std::ffi::OsString, (u64, Vec<u8>)>;

pub fn snapshot(dir: &Path) -> Result<Snapshot> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Snapshot::new();
    for e in fs::read_dir(dir).wrap(|| format!("read {}", dir.display()))? {
        let e = e.wrap(|| format!("read {}", dir.display()))?;
        let m = e
            .path()
            .symlink_metadata()
            .wrap(|| format!("stat {}", e.path().display()))?;
        let bytes = if m.is_file() {
            fs::read(e.path()).unwrap_or_default()
        } else {
            Vec::new()
        };
        out.insert(e.file_name(), (m.ino(), bytes));
    }
    Ok(out)
}

/// Entries created, changed or removed between two snapshots.
pub fn touched(before: &Snapshot, after: &Snapshot) -> u64 {
    let changed = before.iter().filter(|(k, v)| after.get(*k) != Some(v)).count();
    let created = after.keys().filter(|k| !before.contains_key(*k)).count();
    (changed + created) as u64
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

/// Lay out `scenario` in the attacker's document root.
pub fn prepare(scenario: Scenario, t: &Tenants) -> Result<Prepared> {
    let a = &t.attacker;
    let (u, g) = (a.uid, a.gid);
    let work = a.docroot.join(format!("attack-{}", scenario.name()));
    let own = |what: &str| format!("attacker's own {what} file\n").into_bytes();
    let mut p = Prepared {
        scenario,
        attack: Vec::new(),
        leak_markers: vec![t.marker.as_bytes().to_vec(), t.system_marker.clone()],
        swap: None,
        allow_root: scenario != Scenario::System,
        moves_attacker_docroot: false,
        attack_query: "",
        writes: Vec::new(),
        victim_dir: None,
        note: None,
        extra_legit: Vec::new(),
        mount_load: None,
        fd_growth_bound: None,
        cleanup: Vec::new(),
    };
    let fresh_work = |p: &mut Prepared| -> Result<()> {
        if work.symlink_metadata().is_ok() {
            fs::remove_dir_all(&work).wrap(|| format!("remove stale {}", work.display()))?;
        }
        mk_dir(&work, u, g, 0o755)?;
        p.cleanup.push(work.clone());
        Ok(())
    };
    match scenario {
        Scenario::Final | Scenario::Dotdot | Scenario::System => {
            fresh_work(&mut p)?;
            mk_file(&work.join("page.txt"), &own(scenario.name()), u, g, 0o644)?;
            let target = match scenario {
                Scenario::Final => t.secret.clone(),
                Scenario::Dotdot => relative(&work, &t.secret),
                _ => t.system_secret.clone(),
            };
            mk_symlink(&target, &work.join(".swap"), u, g)?;
            p.attack.push(work.join("page.txt"));
            p.swap = Some(SwapPlan {
                dir: work.clone(),
                pairs: vec![pair("page.txt", ".swap")],
                max_threads: 4,
            });
        }
        Scenario::Dir => {
            fresh_work(&mut p)?;
            mk_dir(&work.join("sub"), u, g, 0o755)?;
            mk_file(&work.join("sub").join(SECRET_FILE), &own("dir"), u, g, 0o644)?;
            mk_symlink(&t.secret_dir, &work.join(".swap"), u, g)?;
            p.attack.push(work.join("sub").join(SECRET_FILE));
            p.swap = Some(SwapPlan {
                dir: work.clone(),
                pairs: vec![pair("sub", ".swap")],
                max_threads: 4,
            });
        }
        Scenario::Dirfile => {
            fresh_work(&mut p)?;
            mk_dir(&work.join("sub"), u, g, 0o755)?;
            mk_file(&work.join("sub").join(SECRET_FILE), &own("dirfile"), u, g, 0o644)?;
            mk_symlink(&t.secret_dir, &work.join(".swap"), u, g)?;
            mk_file(&work.join(".file"), &own("dirfile plain"), u, g, 0o644)?;
            p.attack.push(work.join("sub").join(SECRET_FILE));
            p.swap = Some(SwapPlan {
                dir: work.clone(),
                pairs: vec![pair("sub", ".swap"), pair("sub", ".file")],
                max_threads: 1,
            });
        }
        Scenario::Escape => {
            fresh_work(&mut p)?;
            // `up` is a real directory mirroring the path from the common ancestor down to
            // the secret, holding the attacker's own file; `.swap` is `../../..` (that
            // ancestor). Same request, two different walks.
            let ancestor = crate::tenants::common_ancestor(&work, &t.secret);
            let rest = t
                .secret
                .strip_prefix(&ancestor)
                .map_err(|_| Error::msg("escape: no common ancestor"))?;
            let up = work.join("up");
            mk_dir(&up, u, g, 0o755)?;
            let mut dir = up.clone();
            let comps: Vec<_> = rest.components().collect();
            for (i, c) in comps.iter().enumerate() {
                dir.push(c);
                if i + 1 == comps.len() {
                    mk_file(&dir, &own("escape"), u, g, 0o644)?;
                } else {
                    mk_dir(&dir, u, g, 0o755)?;
                }
            }
            mk_symlink(&relative(&work, &ancestor), &work.join(".swap"), u, g)?;
            p.attack.push(up.join(rest));
            p.swap = Some(SwapPlan {
                dir: work.clone(),
                pairs: vec![pair("up", ".swap")],
                max_threads: 4,
            });
        }
        Scenario::DirfdEscape | Scenario::CwdEscape => {
            fresh_work(&mut p)?;
            // `mv` (in the root) holds a link to the victim's secret; `away` (outside every
            // root) is an empty directory. The swapper exchanges the two across directories.
            mk_dir(&work.join("mv"), u, g, 0o755)?;
            mk_symlink(&t.secret, &work.join("mv").join(SECRET_FILE), u, g)?;
            let private = a.home.join(format!("private-{}", scenario.name()));
            if private.symlink_metadata().is_ok() {
                fs::remove_dir_all(&private).wrap(|| format!("remove stale {}", private.display()))?;
            }
            mk_dir(&private, u, g, 0o755)?;
            p.cleanup.push(private.clone());
            mk_dir(&private.join("away"), u, g, 0o755)?;
            let rel = |p: &Path| {
                p.strip_prefix(&a.home)
                    .map(|r| r.display().to_string())
                    .map_err(|_| Error::msg("dirfd-escape: the docroot is not inside the tenant's home"))
            };
            p.attack.push(work.join("mv").join(SECRET_FILE));
            p.attack_query = if scenario == Scenario::DirfdEscape {
                "?dirfd"
            } else {
                "?cwd"
            };
            p.swap = Some(SwapPlan {
                dir: a.home.clone(),
                pairs: vec![(rel(&work.join("mv"))?, rel(&private.join("away"))?)],
                max_threads: 4,
            });
        }
        Scenario::PrivateSwap => {
            // Outside the document root, so outside a `root .../public_html`: only a rule
            // that judges every open (the `owner euid` pools' `root /`) covers it.
            let private = a.home.join("private");
            if private.symlink_metadata().is_ok() {
                fs::remove_dir_all(&private).wrap(|| format!("remove stale {}", private.display()))?;
            }
            mk_dir(&private, u, g, 0o755)?;
            p.cleanup.push(private.clone());
            mk_dir(&private.join("d"), u, g, 0o755)?;
            mk_file(
                &private.join("d").join(SECRET_FILE),
                &own("private-swap"),
                u,
                g,
                0o644,
            )?;
            mk_symlink(&t.secret_dir, &private.join(".swap"), u, g)?;
            p.attack.push(private.join("d").join(SECRET_FILE));
            p.swap = Some(SwapPlan {
                dir: private,
                pairs: vec![pair("d", ".swap")],
                max_threads: 4,
            });
        }
        Scenario::Dav => {
            fresh_work(&mut p)?;
            // The attacker's upload directory and the victim's (left world-writable, as
            // upload directories are), holding the same names; the server may write both.
            let upl = work.join("upl");
            mk_dir(&upl, u, g, 0o777)?;
            let victim_upl = t.victim.docroot.join(DAV_DIR);
            if victim_upl.symlink_metadata().is_ok() {
                fs::remove_dir_all(&victim_upl).wrap(|| format!("remove stale {}", victim_upl.display()))?;
            }
            mk_dir(&victim_upl, t.victim.uid, t.victim.gid, 0o777)?;
            p.cleanup.push(victim_upl.clone());
            for i in 0..DAV_FILES {
                let name = format!("keep-{i}.txt");
                mk_file(&upl.join(&name), &own("dav"), u, g, 0o666)?;
                let victim = format!("victim's upload {i}\n").into_bytes();
                mk_file(
                    &victim_upl.join(&name),
                    &victim,
                    t.victim.uid,
                    t.victim.gid,
                    0o666,
                )?;
            }
            mk_symlink(&victim_upl, &work.join(".swap"), u, g)?;
            for i in 0..DAV_FILES {
                let keep = upl.join(format!("keep-{i}.txt"));
                let moved = upl.join(format!("moved-{i}.txt"));
                let write = |method, path: &PathBuf, destination: Option<&PathBuf>| Write {
                    method,
                    path: path.clone(),
                    destination: destination.cloned(),
                };
                p.writes.extend([
                    write("PUT", &keep, None),
                    write("MOVE", &keep, Some(&moved)),
                    write("PUT", &upl.join(format!("new-{i}.php")), None),
                    write("DELETE", &moved, None),
                    write("PUT", &keep, None),
                    write("DELETE", &keep, None),
                ]);
            }
            p.victim_dir = Some(victim_upl);
            p.swap = Some(SwapPlan {
                dir: work.clone(),
                pairs: vec![pair("upl", ".swap")],
                max_threads: 4,
            });
        }
        Scenario::Docroot => {
            // The attacker's docroot has its own `tg-secret/page.txt`; the swap replaces the
            // whole docroot with a symlink to the victim's.
            let name = t
                .secret_dir
                .file_name()
                .ok_or_else(|| Error::msg("secret dir has no name"))?;
            let mirror = a.docroot.join(name);
            if mirror.symlink_metadata().is_ok() {
                fs::remove_dir_all(&mirror).wrap(|| format!("remove stale {}", mirror.display()))?;
            }
            mk_dir(&mirror, u, g, 0o755)?;
            p.cleanup.push(mirror.clone());
            mk_file(&mirror.join(SECRET_FILE), &own("docroot"), u, g, 0o644)?;
            let leaf = a
                .docroot
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let swap = a.home.join(".swap-docroot");
            if swap.symlink_metadata().is_ok() {
                fs::remove_file(&swap).wrap(|| format!("remove stale {}", swap.display()))?;
            }
            mk_symlink(&t.victim.docroot, &swap, u, g)?;
            p.cleanup.push(swap);
            p.attack.push(mirror.join(SECRET_FILE));
            p.swap = Some(SwapPlan {
                dir: a.home.clone(),
                pairs: vec![(leaf, ".swap-docroot".into())],
                max_threads: 4,
            });
            p.moves_attacker_docroot = true;
        }
        Scenario::Hardlink => {
            fresh_work(&mut p)?;
            let link = work.join(SECRET_FILE);
            fs::hard_link(&t.secret, &link)
                .wrap(|| format!("link {} -> {}", link.display(), t.secret.display()))?;
            let protected = fs::read_to_string("/proc/sys/fs/protected_hardlinks").map(|s| s.trim() == "1");
            p.note = Some(match protected {
                Ok(true) => "hard link made by root: fs.protected_hardlinks=1 forbids the tenant".into(),
                _ => "hard link made by root (fs.protected_hardlinks=0: the tenant could make it itself)"
                    .into(),
            });
            p.attack.push(link);
        }
        Scenario::Direct => {
            p.attack.push(t.secret.clone());
        }
        Scenario::UploadsLink => uploads_link(t, &mut p)?,
        Scenario::DeepTree => {
            fresh_work(&mut p)?;
            deep_tree(t, &work, &mut p)?;
        }
        Scenario::AliasPinning => {
            fresh_work(&mut p)?;
            alias_pinning(t, &work, &mut p)?;
        }
        Scenario::Legit => {}
    }
    Ok(p)
}

/// The victim's world-writable upload directory and its private one (`uploads-link`).
const UPLOADS: &str = "tg-uploads";
const PRIVATE: &str = "tg-private";

/// `uploads-link`: the layout of issue 12 item 1, in the victim's document root (under the
/// guard's root pattern). `private/` is 0711 and `db.conf` 0644 so that a bare server can
/// read the file at all (with 0700 it answers 403 raw: no leak to show); the planted links
/// are the attacker's, which only a rule on the link's owner (nginx `if_not_owner`, the
/// daemon) can tell from the victim's own. Variants: the relative link, an absolute
/// one, a link as a directory on the way, a chain through the victim's own link, and a link
/// into a 0700 directory; beside them the victim's own link in `uploads/`, which must be
/// served.
fn uploads_link(t: &Tenants, p: &mut Prepared) -> Result<()> {
    let v = &t.victim;
    let (a, vu, vg) = (&t.attacker, v.uid, v.gid);
    let uploads = v.docroot.join(UPLOADS);
    let private = v.docroot.join(PRIVATE);
    let hidden = v.docroot.join(format!("{PRIVATE}-0700"));
    for d in [&uploads, &private, &hidden] {
        if d.symlink_metadata().is_ok() {
            fs::remove_dir_all(d).wrap(|| format!("remove stale {}", d.display()))?;
        }
        p.cleanup.push(d.clone());
    }
    mk_dir(&uploads, vu, vg, 0o1777)?;
    mk_dir(&private, vu, vg, 0o711)?;
    mk_dir(&hidden, vu, vg, 0o700)?;
    let secret = format!("DB_PASSWORD=SECRET {}\n", t.marker).into_bytes();
    mk_file(&private.join("db.conf"), &secret, vu, vg, 0o644)?;
    mk_file(&hidden.join("db.conf"), &secret, vu, vg, 0o644)?;
    // The victim's own link to its own file: owner matches, so followed.
    mk_symlink(Path::new("db.conf"), &private.join("alias.conf"), vu, vg)?;
    let logo = b"victim's own logo\n".to_vec();
    mk_file(&private.join("logo.txt"), &logo, vu, vg, 0o644)?;
    mk_symlink(
        Path::new("../tg-private/logo.txt"),
        &uploads.join("logo.png"),
        vu,
        vg,
    )?;
    p.extra_legit.push(LegitFile {
        path: uploads.join("logo.png"),
        content: logo,
        attacker: false,
        shared: false,
    });
    let planted: [(&str, PathBuf, PathBuf); 5] = [
        ("avatar.png", "../tg-private/db.conf".into(), "avatar.png".into()),
        ("abs.png", private.join("db.conf"), "abs.png".into()),
        ("dir", "../tg-private".into(), "dir/db.conf".into()),
        ("chain.png", "../tg-private/alias.conf".into(), "chain.png".into()),
        (
            "hidden.png",
            "../tg-private-0700/db.conf".into(),
            "hidden.png".into(),
        ),
    ];
    for (name, target, request) in planted {
        mk_symlink(&target, &uploads.join(name), a.uid, a.gid)?;
        p.attack.push(uploads.join(request));
    }
    p.note = Some(
        "not a race; private/ 0711 and db.conf 0644 so that a bare server can read it (0700: 403 raw)".into(),
    );
    Ok(())
}

/// Depth of the `deep-tree` chain of long names (walked by the helper).
pub const DEEP_LEVELS: usize = 600;
/// Depth of its short chain, asked for over HTTP: the naive server's own check `lstat`s
/// every prefix (as Apache's does), quadratic in the depth, so through a mount with no
/// kernel caching 600 levels (180,000 LOOKUPs a request) outlast the client's timeout.
pub const HTTP_LEVELS: usize = 128;
/// What the daemon may hold beyond one descriptor per object of the attacker's tree.
pub const FD_SLACK: u64 = 128;
/// The long chain's name at every level: 255 bytes, the longest a name can be.
fn long_name() -> String {
    "n".repeat(255)
}

/// `deep-tree`: `s/d/d/.../d` (600 levels, short enough for a URL and PATH_MAX) holding the
/// attacker's file, its own link to it and a link to the victim's secret, asked for over
/// HTTP; `l/NNN.../NNN...` (600 levels of 255-byte names, 150 KiB: past PATH_MAX, so
/// only walked one component at a time) with a file and a relative link at the bottom,
/// walked through the mount by the attacker's helper. Made with `*at` calls from held
/// directory descriptors (the paths are too long for anything else).
fn deep_tree(t: &Tenants, work: &Path, p: &mut Prepared) -> Result<()> {
    let a = &t.attacker;
    let own = b"attacker's own deep file\n";
    let short = chain(work, "s", "d", HTTP_LEVELS, a.uid, a.gid)?;
    let bottom = PathBuf::from("s").join(vec!["d"; HTTP_LEVELS].join("/"));
    at_file(&short, "own.txt", own, a.uid, a.gid)?;
    at_symlink(&short, "own.txt", "link.txt", a.uid, a.gid)?;
    at_symlink(&short, &t.secret.to_string_lossy(), "evil.txt", a.uid, a.gid)?;
    for leaf in ["own.txt", "link.txt", "evil.txt"] {
        p.attack.push(work.join(&bottom).join(leaf));
    }
    let long = chain(work, "l", &long_name(), DEEP_LEVELS, a.uid, a.gid)?;
    at_file(&long, "own.txt", own, a.uid, a.gid)?;
    // `..` at the bottom and back down: a link resolved at depth 600.
    at_symlink(&long, &format!("../{}/own.txt", long_name()), "up", a.uid, a.gid)?;
    at_symlink(&long, &t.secret.to_string_lossy(), "evil", a.uid, a.gid)?;
    p.mount_load = Some(MountLoad::Walk {
        top: work.join("l"),
        name: long_name(),
        depth: DEEP_LEVELS,
        leaves: vec!["own.txt".into(), "up".into()],
        refused: vec!["evil".into()],
    });
    // One held descriptor per directory at most, whatever the kernel keeps cached.
    p.fd_growth_bound = Some((DEEP_LEVELS + HTTP_LEVELS) as u64 + FD_SLACK);
    Ok(())
}

/// How many aliases `alias-pinning` holds open (issue 12 item 5 held 20,000 in two
/// processes; 5,000 in one keeps the cell short and is still 5x the fd bound).
pub const PINNED_ALIASES: usize = 5000;

/// `alias-pinning`: `d/` (the attacker's directory with its own file), `l -> ../d`, and
/// `a/0` ... `a/4999`, hard links to `l` (a hard link to a symlink is the symlink), all the
/// attacker's; the helper holds every `a/N` open with `O_PATH` (each one a name the kernel
/// cannot forget), the attack lane asks for files through the aliases and through a link
/// to the victim's secret directory.
fn alias_pinning(t: &Tenants, work: &Path, p: &mut Prepared) -> Result<()> {
    let a = &t.attacker;
    mk_dir(&work.join("d"), a.uid, a.gid, 0o755)?;
    mk_file(
        &work.join("d").join("own.txt"),
        b"attacker's own pinned file\n",
        a.uid,
        a.gid,
        0o644,
    )?;
    mk_symlink(Path::new("../d"), &work.join("l"), a.uid, a.gid)?;
    mk_dir(&work.join("a"), a.uid, a.gid, 0o755)?;
    let mut names = Vec::with_capacity(PINNED_ALIASES);
    for i in 0..PINNED_ALIASES {
        let name = i.to_string();
        let link = work.join("a").join(&name);
        // `link(2)` does not follow a symlink: every alias is the same link inode.
        fs::hard_link(work.join("l"), &link).wrap(|| format!("link {}", link.display()))?;
        names.push(name);
    }
    mk_symlink(&t.secret_dir, &work.join("a").join("evil"), a.uid, a.gid)?;
    for r in ["a/0/own.txt", "a/4999/own.txt", "a/evil/page.txt"] {
        p.attack.push(work.join(r));
    }
    p.mount_load = Some(MountLoad::Pin {
        dir: work.join("a"),
        names,
    });
    // 5,000 aliases of one directory: one descriptor, not one per alias.
    p.fd_growth_bound = Some(FD_SLACK);
    Ok(())
}

/// `parent/top/name/name/...` (`depth` levels of `name`), each directory the tenant's;
/// returns the bottom one, held.
fn chain(parent: &Path, top: &str, name: &str, depth: usize, uid: u32, gid: u32) -> Result<OwnedFd> {
    let top_dir = parent.join(top);
    mk_dir(&top_dir, uid, gid, 0o755)?;
    let mut dir = rustix::fs::open(
        &top_dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("open {}", top_dir.display()), e.into()))?;
    for level in 0..depth {
        let ctx = || format!("{}: level {level} of {top}", parent.display());
        rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755))
            .map_err(|e| Error::io(ctx(), e.into()))?;
        rustix::fs::chownat(
            &dir,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::io(ctx(), e.into()))?;
        dir = rustix::fs::openat(
            &dir,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(ctx(), e.into()))?;
    }
    Ok(dir)
}

/// A file `name` in the held directory `dir`, the tenant's, 0644.
fn at_file(dir: &OwnedFd, name: &str, content: &[u8], uid: u32, gid: u32) -> Result<()> {
    let ctx = || format!("create {name} at depth");
    let f = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| Error::io(ctx(), e.into()))?;
    let mut f = fs::File::from(f);
    std::io::Write::write_all(&mut f, content).map_err(|e| Error::io(ctx(), e))?;
    rustix::fs::fchown(
        &f,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .map_err(|e| Error::io(ctx(), e.into()))?;
    rustix::fs::fchmod(&f, Mode::from_raw_mode(0o644)).map_err(|e| Error::io(ctx(), e.into()))
}

/// A symlink `name -> target` in the held directory `dir`, owned by the tenant.
fn at_symlink(dir: &OwnedFd, target: &str, name: &str, uid: u32, gid: u32) -> Result<()> {
    let ctx = || format!("symlink {name} at depth");
    rustix::fs::symlinkat(target, dir, name).map_err(|e| Error::io(ctx(), e.into()))?;
    rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::io(ctx(), e.into()))
}

/// The legit files that stay put during `prepared` (and whether root-owned shared files
/// may be served).
pub fn legit_files<'a>(
    t: &'a Tenants,
    prepared: &Prepared,
    attacker_only: bool,
) -> Vec<&'a crate::tenants::LegitFile> {
    t.legit
        .iter()
        .filter(|l| !(l.attacker && prepared.moves_attacker_docroot))
        .filter(|l| !l.shared || prepared.allow_root)
        .filter(|l| !attacker_only || l.attacker)
        .collect()
}
