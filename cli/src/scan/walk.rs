//! The walk: every root pattern expanded by listing directories, then every tree below a
//! concrete root, by worker threads sharing a stack of directories.
//!
//! Never by path: each directory is opened relative to its parent's descriptor with
//! `O_NOFOLLOW | O_DIRECTORY`, and must still be the inode its parent's listing `lstat`ed, so
//! a directory swapped for a symlink during the walk is reported, not entered. Each entry is
//! one `fstatat(AT_SYMLINK_NOFOLLOW)` relative to the directory's descriptor; what it means is
//! the policy's (`classify_clean`, `tenant_owner`, `decide`), never decided here.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rustix::fs::{self, AtFlags, CWD, Dir, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use toctou_policy::{Config, Decision, Expected, Meta, Policy, ScratchPath, Target, tenant_owner};

use super::findings::{Finding, Kind};

/// Progress, read by the progress line while the workers run.
#[derive(Default)]
pub struct Counters {
    pub entries: AtomicU64,
    pub dirs: AtomicU64,
}

/// A tenant as the walk below one concrete root sees it.
struct Tenant {
    /// The tenant directory (empty for `/`).
    path: Vec<u8>,
    /// The owner the rule expects of every file below the root.
    expected: u32,
    /// The root directory's file system: a directory on another is not entered.
    dev: u64,
}

/// A directory to list: its name in a parent held open, and the inode the parent's listing saw.
struct Job {
    parent: Arc<OwnedFd>,
    name: CString,
    ino: u64,
    path: Vec<u8>,
    tenant: Arc<Tenant>,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

fn lstat_at(dir: &OwnedFd, name: &CStr) -> Result<Stat, Errno> {
    fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
}

fn join(path: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 1 + name.len());
    out.extend_from_slice(path);
    out.push(b'/');
    out.extend_from_slice(name);
    out
}

pub fn shown(path: &[u8]) -> String {
    let mut s = String::new();
    let _ = toctou_policy::logline::write_escaped(&mut s, if path.is_empty() { b"/" } else { path }, 1 << 16);
    s
}

/// Open the directory `name` of `parent` that a listing saw as inode `ino`; `Err` is why not.
fn open_dir(parent: &OwnedFd, name: &CStr, ino: u64) -> Result<OwnedFd, String> {
    let fd = fs::openat(parent, name, DIR_FLAGS, Mode::empty()).map_err(|e| match e {
        Errno::LOOP | Errno::NOTDIR => {
            "replaced by a symlink or a file during the scan: not followed".to_string()
        }
        e => format!("cannot open: {e}"),
    })?;
    match fs::fstat(&fd) {
        Ok(st) if st.st_ino == ino => Ok(fd),
        Ok(_) => Err("replaced by another directory during the scan: not entered".into()),
        Err(e) => Err(format!("cannot stat: {e}")),
    }
}

/// The whole scan. `threads` workers; findings unsorted.
pub fn scan(policy: &Policy, counters: &Counters, threads: usize) -> Result<Vec<Finding>, String> {
    let root = fs::openat(CWD, "/", DIR_FLAGS, Mode::empty()).map_err(|e| format!("/: {e}"))?;
    let mut ex = Expand {
        policy,
        idx: 0,
        comps: Vec::new(),
        tenant_depth: 0,
        findings: Vec::new(),
        jobs: Vec::new(),
        seen: HashSet::new(),
    };
    let root = Arc::new(root);
    let root_st = fs::fstat(&*root).map_err(|e| format!("/: {e}"))?;
    for (idx, entry) in policy.config().roots.iter().enumerate() {
        let key = entry.pattern.key();
        ex.idx = idx;
        ex.comps = key
            .split('/')
            .filter(|c| !c.is_empty())
            .map(|c| c.as_bytes().to_vec())
            .collect();
        ex.tenant_depth = entry.pattern.tenant_depth();
        let tenant = (ex.tenant_depth == 0).then(|| (Vec::new(), root_st));
        if ex.comps.is_empty() {
            let why = format!(
                "'{key}' (line {}) is the whole file system: not scanned",
                entry.line
            );
            ex.findings.push(Finding::new(Kind::Unreadable, &[], b"/", why));
            continue;
        }
        ex.expand(&root, &[], 0, tenant);
    }
    let Expand {
        mut findings, jobs, ..
    } = ex;
    let queue = Queue {
        state: Mutex::new((jobs, 0)),
        cv: Condvar::new(),
    };
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    Worker {
                        counters,
                        ..Worker::lone(policy)
                    }
                    .run(&queue)
                })
            })
            .collect();
        for w in workers {
            match w.join() {
                Ok(f) => findings.extend(f),
                Err(_) => findings.push(Finding::new(Kind::Unreadable, &[], &[], "a worker thread failed")),
            }
        }
    });
    Ok(findings)
}

/// Expanding one pattern into concrete roots (single-threaded: few directories).
struct Expand<'a> {
    policy: &'a Policy,
    idx: usize,
    comps: Vec<Vec<u8>>,
    tenant_depth: usize,
    findings: Vec<Finding>,
    jobs: Vec<Job>,
    /// Concrete roots already queued (by another pattern spelling the same directory).
    seen: HashSet<Vec<u8>>,
}

impl Expand<'_> {
    /// Is the pattern being expanded a `map` (a fixed expected owner)?
    fn fixed(&self) -> bool {
        self.policy.config().roots[self.idx].fixed_uid.is_some()
    }

    fn find(&mut self, kind: Kind, tenant: &[u8], path: &[u8], detail: String) {
        self.findings.push(Finding::new(kind, tenant, path, detail));
    }

    /// Is the link `name` in `dir` (at `path`, above the tenant) an alias of a path this
    /// pattern's own expansion reaches (ISPConfig's clients/clientN/DOMAIN -> webM)? Every
    /// component of that path is one the expansion lists, so any link on it is met there.
    fn alias(&self, dir: &OwnedFd, name: &CStr, path: &[u8]) -> bool {
        let mut w = Worker::lone(self.policy);
        if !matches!(w.read_link(dir, name, path), Ok((_, true))) {
            return false;
        }
        let depth = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).count();
        let comps: Vec<&[u8]> = w
            .scratch
            .as_bytes()
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        comps.len() == depth && comps.iter().zip(&self.comps).all(|(c, p)| p == b"*" || p == c)
    }

    /// `dir` (at `path`, `depth` components deep) matched the pattern so far; `tenant` is the
    /// tenant directory and its `lstat` once the walk is at or below it.
    fn expand(&mut self, dir: &Arc<OwnedFd>, path: &[u8], depth: usize, tenant: Option<(Vec<u8>, Stat)>) {
        let comp = self.comps[depth].clone();
        let names: Vec<CString> = if comp == b"*" {
            match Dir::read_from(&**dir) {
                Ok(mut d) => {
                    let mut names = Vec::new();
                    while let Some(Ok(e)) = d.read() {
                        let n = e.file_name();
                        if n != c"." && n != c".." {
                            names.push(n.to_owned());
                        }
                    }
                    names.sort();
                    names
                }
                Err(e) => {
                    self.find(Kind::Unreadable, &[], path, format!("cannot list: {e}"));
                    return;
                }
            }
        } else {
            match CString::new(comp) {
                Ok(c) => vec![c],
                Err(_) => return,
            }
        };
        let d = depth + 1;
        let full = self.comps.len();
        for name in names {
            let child = join(path, name.to_bytes());
            let st = match lstat_at(dir, &name) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => {
                    self.find(Kind::Unreadable, &[], &child, format!("cannot stat: {e}"));
                    continue;
                }
            };
            let tenant = if d == self.tenant_depth {
                Some((child.clone(), st))
            } else {
                tenant.clone()
            };
            match file_type(&st) {
                FileType::Symlink
                    if st.st_uid == 0 && d < self.tenant_depth && self.alias(dir, &name, &child) =>
                {
                    // Scanned under its own name.
                }
                FileType::Symlink if d < self.tenant_depth || self.fixed() => {
                    // Above the tenant (the guard follows it like any directory on the way)
                    // or a `map`'s directory (its owner is fixed): nothing refused for being a
                    // link, but the scan follows no link.
                    let what = "a symlink where the pattern expects a directory: not scanned";
                    self.find(Kind::Unreadable, &[], &child, what.into());
                }
                FileType::Symlink if d == self.tenant_depth => {
                    let what = "the tenant directory is a symlink: every open below it is refused";
                    self.find(Kind::TenantSymlink, &child, &child, what.into());
                }
                FileType::Symlink => {
                    // A link inside the tenant where the pattern continues (DirectAdmin's
                    // ~/public_html): judged like any link, never followed.
                    if let Some((tp, _)) = &tenant {
                        let mut w = Worker::lone(self.policy);
                        w.symlink(dir, &name, &child, tp);
                        self.findings.append(&mut w.findings);
                    }
                }
                FileType::Directory if d == full => self.at_root(dir, name, child, st, tenant),
                FileType::Directory => {
                    if let Some((tp, tst)) = &tenant
                        && d > self.tenant_depth
                        && st.st_dev != tst.st_dev
                    {
                        self.find(
                            Kind::OtherMount,
                            tp,
                            &child,
                            "another file system: not entered".into(),
                        );
                        continue;
                    }
                    match open_dir(dir, &name, st.st_ino) {
                        Ok(fd) => self.expand(&Arc::new(fd), &child, d, tenant),
                        Err(why) => {
                            let tp = tenant.as_ref().map_or(&[][..], |t| t.0.as_slice());
                            self.find(Kind::Unreadable, tp, &child, why);
                        }
                    }
                }
                _ if d == full => self.at_root(dir, name, child, st, tenant),
                _ => {}
            }
        }
    }

    /// A concrete root (`name` in `parent`): judge it, and queue it if it is a directory.
    fn at_root(
        &mut self,
        parent: &Arc<OwnedFd>,
        name: CString,
        path: Vec<u8>,
        st: Stat,
        tenant: Option<(Vec<u8>, Stat)>,
    ) {
        let Some((tpath, tst)) = tenant else {
            return;
        };
        if !self.seen.insert(path.clone()) {
            return;
        }
        let fixed = self.fixed();
        let expected = match self.policy.classify_clean(&path) {
            Some(Target::Guarded { root, expected, .. }) if root == self.idx => expected,
            // Inside another root's tree: that root's walk covers it.
            Some(Target::Guarded { .. } | Target::Outside) => return,
            _ => {
                self.find(
                    Kind::PathTooLong,
                    &tpath,
                    &path,
                    "the guard cannot hold this path".into(),
                );
                return;
            }
        };
        let expected = match expected {
            Expected::Uid(u) => u,
            // `owner euid`: the tenant's own pool runs as the tenant directory's owner.
            Expected::TenantOwner | Expected::Euid => {
                match tenant_owner(Some(Meta::new(tst.st_uid, tst.st_mode))) {
                    Ok(u) => u,
                    Err(r) => {
                        self.find(
                            Kind::TenantSymlink,
                            &tpath,
                            &tpath,
                            format!("refused: {}", r.as_str()),
                        );
                        return;
                    }
                }
            }
        };
        if tst.st_uid == 0 && !fixed {
            self.find(
                Kind::TenantRootOwned,
                &tpath,
                &tpath,
                "the tenant directory is owned by root: its tenant's files are refused (is the tenant marked right?)"
                    .into(),
            );
        }
        let mut w = Worker::lone(self.policy);
        let t = Tenant {
            path: tpath,
            expected,
            dev: st.st_dev,
        };
        w.judge_owner(&st, &path, &t);
        self.findings.append(&mut w.findings);
        if file_type(&st) == FileType::Directory {
            self.jobs.push(Job {
                parent: parent.clone(),
                name,
                ino: st.st_ino,
                path,
                tenant: Arc::new(t),
            });
        }
    }
}

/// The stack of directories still to list, and how many workers are listing one now.
struct Queue {
    state: Mutex<(Vec<Job>, usize)>,
    cv: Condvar,
}

struct Worker<'a> {
    policy: &'a Policy,
    /// A policy with no roots: its `classify` is the guard's lexical normalisation alone.
    lexical: &'a Policy,
    counters: &'a Counters,
    findings: Vec<Finding>,
    scratch: Box<ScratchPath>,
    /// The path of the entry being judged (the directory's path, `/`, the name).
    buf: Vec<u8>,
    link: Vec<u8>,
}

static NO_COUNTERS: Counters = Counters {
    entries: AtomicU64::new(0),
    dirs: AtomicU64::new(0),
};

impl<'a> Worker<'a> {
    /// A worker for one judgement outside the threads (the pattern expansion).
    fn lone(policy: &'a Policy) -> Worker<'a> {
        static LEXICAL: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
        Worker {
            policy,
            lexical: LEXICAL.get_or_init(|| Policy::new(Config::empty(std::path::Path::new("scan")))),
            counters: &NO_COUNTERS,
            findings: Vec::new(),
            scratch: Box::new(ScratchPath::new()),
            buf: Vec::new(),
            link: Vec::new(),
        }
    }

    fn run(mut self, q: &Queue) -> Vec<Finding> {
        loop {
            let job = {
                let mut g = q.state.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if let Some(j) = g.0.pop() {
                        g.1 += 1;
                        break j;
                    }
                    if g.1 == 0 {
                        return self.findings;
                    }
                    g = q.cv.wait(g).unwrap_or_else(|p| p.into_inner());
                }
            };
            let children = self.list(job);
            let mut g = q.state.lock().unwrap_or_else(|p| p.into_inner());
            let n = children.len();
            g.0.extend(children);
            g.1 -= 1;
            let finished = g.1 == 0 && g.0.is_empty();
            drop(g);
            if n > 1 || finished {
                q.cv.notify_all();
            } else if n == 1 {
                q.cv.notify_one();
            }
        }
    }

    fn find(&mut self, kind: Kind, tenant: &[u8], path: &[u8], detail: String) {
        self.findings.push(Finding::new(kind, tenant, path, detail));
    }

    /// List one directory: judge each entry, return its subdirectories to list.
    fn list(&mut self, job: Job) -> Vec<Job> {
        let t = &*job.tenant;
        let fd = match open_dir(&job.parent, &job.name, job.ino) {
            Ok(fd) => Arc::new(fd),
            Err(why) => {
                self.find(Kind::Unreadable, &t.path, &job.path, why);
                return Vec::new();
            }
        };
        let mut dir = match Dir::read_from(&*fd) {
            Ok(d) => d,
            Err(e) => {
                self.find(Kind::Unreadable, &t.path, &job.path, format!("cannot list: {e}"));
                return Vec::new();
            }
        };
        let mut children = Vec::new();
        let mut entries = 0u64;
        self.buf.clear();
        self.buf.extend_from_slice(&job.path);
        let plen = self.buf.len();
        while let Some(e) = dir.read() {
            let e = match e {
                Ok(e) => e,
                Err(err) => {
                    self.find(
                        Kind::Unreadable,
                        &t.path,
                        &job.path,
                        format!("listing failed: {err}"),
                    );
                    break;
                }
            };
            let name = e.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            entries += 1;
            let st = match lstat_at(&fd, name) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue, // removed since the listing
                Err(err) => {
                    let p = join(&job.path, name.to_bytes());
                    self.find(Kind::Unreadable, &t.path, &p, format!("cannot stat: {err}"));
                    continue;
                }
            };
            self.buf.truncate(plen);
            self.buf.push(b'/');
            self.buf.extend_from_slice(name.to_bytes());
            if self.buf.len() >= toctou_policy::PATH_MAX {
                let p = std::mem::take(&mut self.buf);
                self.find(
                    Kind::PathTooLong,
                    &t.path,
                    &p,
                    "the guard refuses paths this long".into(),
                );
                self.buf = p;
                continue;
            }
            match file_type(&st) {
                FileType::Symlink => {
                    let p = std::mem::take(&mut self.buf);
                    self.symlink(&fd, name, &p, &t.path);
                    self.buf = p;
                }
                ft => {
                    let p = std::mem::take(&mut self.buf);
                    self.judge_owner(&st, &p, t);
                    if ft == FileType::Directory {
                        if st.st_dev != t.dev {
                            self.find(
                                Kind::OtherMount,
                                &t.path,
                                &p,
                                "another file system: not entered".into(),
                            );
                        } else {
                            children.push(Job {
                                parent: fd.clone(),
                                name: name.to_owned(),
                                ino: st.st_ino,
                                path: p.clone(),
                                tenant: job.tenant.clone(),
                            });
                        }
                    }
                    self.buf = p;
                }
            }
        }
        self.counters.entries.fetch_add(entries, Ordering::Relaxed);
        self.counters.dirs.fetch_add(1, Ordering::Relaxed);
        children
    }

    /// The policy's decision on an object's owner.
    fn judge_owner(&mut self, st: &Stat, path: &[u8], t: &Tenant) {
        if matches!(self.policy.decide(st.st_uid, t.expected), Decision::Allow) {
            return;
        }
        let (kind, detail) = if file_type(st) == FileType::RegularFile && st.st_nlink > 1 {
            (
                Kind::Hardlink,
                format!(
                    "{} names, owner uid {}, expected uid {}",
                    st.st_nlink, st.st_uid, t.expected
                ),
            )
        } else {
            (
                Kind::OwnerMismatch,
                format!("owner uid {}, expected uid {}", st.st_uid, t.expected),
            )
        };
        self.find(kind, &t.path, path, detail);
    }

    /// The text of the link `name` in `dir` (at `path`), and whether it resolved lexically
    /// against the link's directory (into `self.scratch`; `false`: too long).
    fn read_link(&mut self, dir: &OwnedFd, name: &CStr, path: &[u8]) -> Result<(Vec<u8>, bool), Errno> {
        let target = fs::readlinkat(dir, name, std::mem::take(&mut self.link))?.into_bytes();
        let base = &path[..path.iter().rposition(|&b| b == b'/').unwrap_or(0)];
        let base = if base.is_empty() { b"/" as &[u8] } else { base };
        let resolved = self.lexical.classify(Some(base), &target, &mut *self.scratch) == Target::Outside;
        Ok((target, resolved))
    }

    /// A symlink `name` in `dir` at `path`: does its target, resolved lexically against the
    /// link's directory, stay in the tenant directory `tenant`?
    fn symlink(&mut self, dir: &OwnedFd, name: &CStr, path: &[u8], tenant: &[u8]) {
        let (target, resolvable) = match self.read_link(dir, name, path) {
            Ok(t) => t,
            Err(e) => {
                self.find(
                    Kind::Unreadable,
                    tenant,
                    path,
                    format!("cannot read the link: {e}"),
                );
                return;
            }
        };
        let resolved = resolvable.then(|| self.scratch.as_bytes());
        let inside = |r: &[u8]| {
            tenant.is_empty() || r.starts_with(tenant) && (r.len() == tenant.len() || r[tenant.len()] == b'/')
        };
        // A link that stays in the tenant but leads out of every root: the guard judges what
        // is opened through it, no walk reaches what is behind it (links are not followed).
        let unscanned = resolved
            .filter(|&r| inside(r))
            .map(|r| self.policy.classify_clean(r) == Some(Target::Outside));
        if unscanned == Some(false) {
            self.link = target;
            return;
        }
        let detail = match resolved {
            None => format!("-> {} (too long to resolve)", shown(&target)),
            Some(r) => {
                let what = match fs::statat(CWD, r, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if file_type(&st) == FileType::Symlink => {
                        format!("a symlink owned by uid {}", st.st_uid)
                    }
                    Ok(st) => format!("owner uid {}", st.st_uid),
                    Err(Errno::NOENT) => "missing".into(),
                    Err(e) => format!("cannot stat: {e}"),
                };
                format!("-> {} (resolves to {}, {what})", shown(&target), shown(r))
            }
        };
        if unscanned == Some(true) {
            let detail = format!("{detail}: in the tenant but outside every root: not scanned");
            self.find(Kind::Unreadable, tenant, path, detail);
            self.link = target;
            return;
        }
        self.find(Kind::SymlinkLeavesTenant, tenant, path, detail);
        self.link = target;
    }
}
