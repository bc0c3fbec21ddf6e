//! Lookup, where the rule is applied.
//!
//! [`GuardFs::resolve_child`] opens the name itself (`O_PATH|O_NOFOLLOW`, relative to the
//! parent's held fd), follows a link only inside SOURCE, decides which tenant the object
//! belongs to, and compares the owner of the object it holds with that tenant's. Every
//! other decision about where tenants are or whether an owner passes lives here too
//! ([`root_node`], [`GuardFs::in_tenant`], [`GuardFs::same_tenant`], [`GuardFs::recheck`]),
//! so a change to the rule touches this file only.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fuser::{Errno, FileAttr, FileType, INodeNo};
use nix::fcntl::OFlag;
use nix::sys::stat::FileStat;
use toctou_policy::{Decision, DenyReason, Expected, Meta, Policy, ScratchPath, Target, tenant_owner};

use crate::attr::{attr_of, kind_of};
use crate::denylog::Event;
use crate::fs::{GuardFs, Settings, errno};
use crate::nodes::{Key, NewNode, Node, ROOT, Tenant};
use crate::resolve::{self, Followed};
use crate::stats::bump;
use crate::syscalls;

/// `Key::tenant_uid` of a node outside every tenant.
const NO_TENANT: u32 = u32::MAX;

/// Who asked: whose permissions a link is followed and an object created with, and the
/// denial line's `uid` and `comm`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl Caller {
    pub(crate) fn of(req: &fuser::Request) -> Caller {
        Caller {
            uid: req.uid(),
            gid: req.gid(),
            pid: req.pid(),
        }
    }
}

/// The rule for an object outside every tenant so far, reached by the absolute path `abs`
/// (its own `lstat`-like facts in `own`): the policy's classification of that path, as the
/// shim would make it. `Ok(None)`: outside every root. `Ok(Some((tenant, judged)))`: under
/// a root; `judged` is false for the tenant directory itself (it is its own owner).
fn enter_root(
    policy: &Policy,
    abs: &[u8],
    own: Meta,
    tenant_meta: impl FnOnce(&[u8]) -> Option<Meta>,
) -> Result<Option<(Arc<Tenant>, bool)>, DenyReason> {
    let mut scratch = ScratchPath::new();
    let (target, normalized) = match policy.classify_clean(abs) {
        Some(t) => (t, abs),
        None => (policy.classify(None, abs, &mut scratch), scratch.as_bytes()),
    };
    let (tenant_len, expected) = match target {
        Target::Outside => return Ok(None),
        Target::Deny(reason) => return Err(reason),
        Target::Guarded {
            tenant_len, expected, ..
        } => (tenant_len, expected),
    };
    let tenant_path = &normalized[..tenant_len];
    let is_tenant_dir = tenant_len == normalized.len();
    let uid = match expected {
        Expected::Uid(uid) => uid,
        Expected::TenantOwner | Expected::Euid if is_tenant_dir => tenant_owner(Some(own))?,
        Expected::TenantOwner | Expected::Euid => tenant_owner(tenant_meta(tenant_path))?,
    };
    let tenant = Arc::new(Tenant {
        uid,
        path: Box::from(tenant_path),
        by_caller: expected == Expected::Euid,
    });
    Ok(Some((tenant, !is_tenant_dir)))
}

fn meta_of(st: &FileStat) -> Meta {
    Meta {
        uid: st.st_uid,
        mode: st.st_mode,
    }
}

/// The one node not found by lookup: SOURCE itself (`st`, held as `fd`), with its tenant
/// if SOURCE lies under a root.
pub(crate) fn root_node(
    policy: &Policy,
    settings: &Settings,
    st: &FileStat,
    fd: OwnedFd,
) -> Result<(Key, NewNode), String> {
    let abs: &[u8] = if settings.source_abs.is_empty() {
        b"/"
    } else {
        &settings.source_abs
    };
    let lstat = |p: &[u8]| {
        nix::sys::stat::lstat(OsStr::from_bytes(p))
            .ok()
            .map(|s| meta_of(&s))
    };
    let (tenant, judged) = match enter_root(policy, abs, meta_of(st), lstat) {
        Ok(Some((t, judged))) => (Some(t), judged),
        Ok(None) => (None, false),
        Err(r) => return Err(format!("SOURCE is under a root, but: {}", r.as_str())),
    };
    if let Some(t) = tenant.as_deref()
        && judged
        && !matches!(policy.decide(st.st_uid, t.uid), Decision::Allow)
    {
        return Err(format!(
            "SOURCE is owned by uid {}, not its tenant's uid {}",
            st.st_uid, t.uid
        ));
    }
    let key = Key {
        dev: st.st_dev,
        ino: st.st_ino,
        tenant_uid: tenant.as_ref().map_or(NO_TENANT, |t| t.uid),
        alias: 0,
    };
    let node = NewNode {
        parent: ROOT,
        fd,
        kind: FileType::Directory,
        depth: 0,
        tenant,
        judged,
        name: Box::default(),
        path_len: 0,
        readable: false,
        alias: 0,
        ctime: (st.st_ctime, st.st_ctime_nsec),
    };
    Ok((key, node))
}

/// A stable id for "the directory reached through link `name` in `parent`".
fn alias_id(parent: u64, name: &[u8]) -> u64 {
    // FNV-1a; collisions only merge two symlink aliases of the same directory object.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ parent.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

/// Longest path below SOURCE the daemon serves (bytes, from the `/`): 192 KiB, far past
/// PATH_MAX, so only a tree built to attack the daemon meets it.
pub(crate) const MAX_PATH_LEN: u32 = 192 * 1024;

/// The owner `tenant`'s objects must have for `caller`: the tenant's, or under `owner
/// euid` the caller's own uid (no caller: nobody's, so nothing but an `allow_uid` passes).
fn expected_uid(tenant: &Tenant, caller: Option<Caller>) -> u32 {
    match (tenant.by_caller, caller) {
        (false, _) => tenant.uid,
        (true, Some(c)) => c.uid,
        (true, None) => NO_TENANT,
    }
}

/// Where a decision is made, for its log line: `name` in the directory `dir` (`dir`
/// itself when `name` is empty). The path is only rebuilt when a line is written.
#[derive(Clone, Copy)]
struct At<'a> {
    dir: &'a Node,
    name: &'a [u8],
    tenant: Option<&'a Tenant>,
    caller: Option<Caller>,
}

/// A looked-up child, accepted by the rule.
pub(crate) struct Child {
    node: Arc<Node>,
    st: FileStat,
    /// Decided for this caller only (reached by following a link with the caller's
    /// permissions, or judged against the caller's uid): the kernel must not cache the
    /// name for other callers (entry TTL 0).
    pub(crate) per_caller: bool,
}

impl Child {
    /// The entry the kernel is given: the held object's attributes, under the node's inode.
    pub(crate) fn attr(&self) -> Result<FileAttr, Errno> {
        attr_of(self.node.ino, &self.st)
    }
}

impl GuardFs {
    pub(crate) fn do_lookup(&self, caller: Caller, parent: INodeNo, name: &OsStr) -> Result<Child, Errno> {
        let parent = self.node(parent)?;
        self.resolve_child(caller, &parent, name)
    }

    /// Act as `caller` on this thread (its fsuid, fsgid and supplementary groups) while the
    /// guard lives, so the kernel checks what it would check raw. `None`: nothing to switch
    /// (the caller is root, or the daemon is not and cannot switch). An error if the switch
    /// fails: the request must then fail rather than run with the daemon's rights.
    pub(crate) fn as_caller(&self, caller: Caller) -> Result<Option<syscalls::Creds>, Errno> {
        if self.euid != 0 || caller.uid == 0 {
            return Ok(None);
        }
        let groups = syscalls::groups_of(caller.pid, caller.uid, caller.gid);
        syscalls::Creds::assume(caller.uid, caller.gid, &groups)
            .map(Some)
            .map_err(errno)
    }

    /// The rule on the owner an object about to be created as `name` in `dir` will have:
    /// refused now (nothing is left in SOURCE) if it could never be served.
    pub(crate) fn judge_new(
        &self,
        caller: Caller,
        dir: &Node,
        name: &OsStr,
        owner: u32,
    ) -> Result<(), Errno> {
        let Some(t) = dir.tenant.as_deref() else {
            return Err(Errno::EACCES);
        };
        let at = At {
            dir,
            name: name.as_bytes(),
            tenant: Some(t),
            caller: Some(caller),
        };
        self.apply_rule(owner, t, &at)
    }

    /// The absolute path in SOURCE of `name` in `dir` (of `dir` if `name` is empty), as
    /// it was looked up: for the policy's classification above the tenants, and for logs.
    /// Rebuilt from the chain of parents (at most [`resolve::MAX_DEPTH`] steps); a part no
    /// longer known shows as `/...`.
    fn abs(&self, dir: &Node, name: &[u8]) -> Vec<u8> {
        let mut names: Vec<Box<[u8]>> = Vec::new();
        if !name.is_empty() {
            names.push(Box::from(name));
        }
        let mut cur: Option<Arc<Node>> = None;
        let mut complete = false;
        for _ in 0..=resolve::MAX_DEPTH {
            let node = cur.as_deref().unwrap_or(dir);
            if node.ino == ROOT {
                complete = true;
                break;
            }
            names.push(node.name.clone());
            match self.nodes.get(node.parent) {
                Some(p) => cur = Some(p),
                None => break,
            }
        }
        let mut abs = self.settings.source_abs.clone();
        if !complete {
            abs.extend_from_slice(b"/...");
        }
        for n in names.iter().rev() {
            abs.push(b'/');
            abs.extend_from_slice(n);
        }
        if abs.is_empty() {
            abs.push(b'/');
        }
        abs
    }

    pub(crate) fn do_forget(&self, ino: INodeNo, nlookup: u64) {
        self.nodes.forget(ino.0, nlookup);
        self.count_nodes();
    }

    fn count_nodes(&self) {
        self.stats
            .nodes_live
            .store(self.nodes.len() as u64, Ordering::Relaxed);
    }

    /// Log a refusal; `Err(EACCES)` unless audit mode lets it through.
    fn refuse(&self, decision: Decision, at: &At<'_>, owner: Option<u32>) -> Result<(), Errno> {
        let (audit, reason) = match decision {
            Decision::Allow => return Ok(()),
            Decision::Deny(r) => (false, r),
            Decision::Audit(r) => (true, r),
        };
        bump(if audit {
            &self.stats.audited
        } else {
            &self.stats.denied
        });
        let path = self.abs(at.dir, at.name);
        self.log.log(&Event {
            audit,
            reason,
            path: &path,
            owner,
            expected: at.tenant.map(|t| expected_uid(t, at.caller)),
            tenant: at.tenant.map_or(&[][..], |t| &t.path[..]),
            uid: at.caller.map(|c| c.uid),
            pid: at.caller.map(|c| c.pid),
        });
        if audit { Ok(()) } else { Err(Errno::EACCES) }
    }

    /// A refusal that even audit mode cannot let through: there is nothing inside SOURCE
    /// the daemon could serve instead (a link out of SOURCE, a symlinked tenant directory).
    fn refuse_structural(&self, reason: DenyReason, at: &At<'_>) -> Errno {
        let _ = self.refuse(Decision::Deny(reason), at, None);
        Errno::EACCES
    }

    /// The owner rule: `owner` (of the object at `at`) against the tenant's.
    fn apply_rule(&self, owner: u32, tenant: &Tenant, at: &At<'_>) -> Result<(), Errno> {
        let at = At {
            tenant: Some(tenant),
            ..*at
        };
        let expected = expected_uid(tenant, at.caller);
        self.refuse(self.policy.decide(owner, expected), &at, Some(owner))
    }

    /// Whether `node` is inside a tenant (at or below the tenant's own directory).
    pub(crate) fn in_tenant(&self, node: &Node) -> bool {
        node.tenant.is_some()
    }

    /// Whether a rename from `a` to `b` stays within one tenant.
    pub(crate) fn same_tenant(&self, a: &Node, b: &Node) -> bool {
        match (&a.tenant, &b.tenant) {
            (Some(a), Some(b)) => a.uid == b.uid,
            _ => false,
        }
    }

    /// The rule again on a node's held object, as it is now (passthrough `open`).
    pub(crate) fn recheck(&self, caller: Caller, node: &Node) -> Result<(), Errno> {
        let st = syscalls::fstat(&node.fd).map_err(errno)?;
        if node.judged {
            let t = node.tenant.as_deref().ok_or(Errno::EACCES)?;
            let at = At {
                dir: node,
                name: b"",
                tenant: Some(t),
                caller: Some(caller),
            };
            self.apply_rule(st.st_uid, t, &at)?;
        }
        Ok(())
    }

    /// What the daemon holds for the tenant directory `tenant` (an absolute path in SOURCE),
    /// an ancestor of `parent` or `parent` itself: the `fstat` of that held node, the very
    /// object the name was resolved through, never a second lookup by path.
    fn ancestor_meta(&self, parent: &Node, tenant: &[u8]) -> Option<Meta> {
        let Some(rest) = tenant.strip_prefix(self.settings.source_abs.as_slice()) else {
            // Above SOURCE (only SOURCE itself is ever judged against such a tenant).
            return nix::sys::stat::lstat(OsStr::from_bytes(tenant))
                .ok()
                .map(|s| meta_of(&s));
        };
        let want = rest.split(|&b| b == b'/').filter(|c| !c.is_empty()).count() as u32;
        let mut held: Option<Arc<Node>> = None;
        // Bounded by the depth: each step goes one level up.
        for _ in 0..=parent.depth {
            let node = held.as_deref().unwrap_or(parent);
            if node.depth == want {
                return syscalls::fstat(&node.fd).ok().map(|s| meta_of(&s));
            }
            if node.depth < want || node.ino == ROOT {
                return None;
            }
            held = Some(self.nodes.get(node.parent)?);
        }
        None
    }

    /// Look `name` up in `parent`, apply the rule to the object found, and return it.
    pub(crate) fn resolve_child(&self, caller: Caller, parent: &Node, name: &OsStr) -> Result<Child, Errno> {
        if parent.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        let name_b = name.as_bytes();
        if !syscalls::is_plain_name(name_b) {
            return Err(Errno::ENOENT);
        }
        let depth = parent.depth + 1;
        let path_len = parent.path_len + 1 + name_b.len() as u32;
        let mut at = At {
            dir: parent,
            name: name_b,
            tenant: parent.tenant.as_deref(),
            caller: Some(caller),
        };
        // Caps, so that a tree built to exhaust the daemon cannot: names below them are
        // refused (logged, ENAMETOOLONG), never served unchecked.
        if depth > resolve::MAX_DEPTH || path_len > MAX_PATH_LEN {
            let _ = self.refuse(Decision::Deny(DenyReason::PathTooLong), &at, None);
            return Err(Errno::ENAMETOOLONG);
        }
        let fd = syscalls::open_child(&parent.fd, name).map_err(errno)?;
        let st = syscalls::fstat(&fd).map_err(errno)?;

        // Which tenant this name belongs to: the parent's, once inside a root (the first root
        // a path enters decides, as in the shim's walk); else the policy's answer for its path.
        let (tenant, judged) = match &parent.tenant {
            Some(t) => (Some(t.clone()), true),
            None => {
                let tenant_meta = |tenant: &[u8]| self.ancestor_meta(parent, tenant);
                match enter_root(&self.policy, &self.abs(parent, name_b), meta_of(&st), tenant_meta) {
                    Ok(Some((t, judged))) => (Some(t), judged),
                    Ok(None) => (None, false),
                    Err(reason) => return Err(self.refuse_structural(reason, &at)),
                }
            }
        };
        at.tenant = tenant.as_deref();

        let (fd, st, via_link) = if resolve::is_symlink(&st) {
            let Some(t) = tenant.as_deref().filter(|_| judged) else {
                // Outside every root, or the tenant directory itself: a link's owner there
                // is not a tenant's word, and nothing would judge what it leads to.
                return Err(self.refuse_structural(DenyReason::TenantIsSymlink, &at));
            };
            // The link itself must be the tenant's (nginx's `if_not_owner`): a link another
            // user planted in a world-writable directory of this tenant is not followed.
            self.apply_rule(st.st_uid, t, &at)?;
            let target = syscalls::readlink_fd(&fd).map_err(errno)?;
            // Every link further on the way is judged the same way.
            let mut link_ok = |link: &FileStat| {
                self.apply_rule(link.st_uid, t, &at)
                    .map_err(|_| nix::errno::Errno::EACCES)
            };
            // Followed with the caller's permissions: no search through a directory the
            // caller could not search raw.
            let followed = {
                let _creds = self.as_caller(caller)?;
                resolve::follow(
                    self.root_fd.as_fd(),
                    &self.settings.prefixes,
                    parent.fd.as_fd(),
                    &target,
                    &mut link_ok,
                )
            };
            match followed.map_err(errno)? {
                Followed::Object(fd, st) => (fd, st, true),
                Followed::Escapes => {
                    let at = At {
                        tenant: Some(t),
                        ..at
                    };
                    return Err(self.refuse_structural(DenyReason::EscapesTenant, &at));
                }
            }
        } else {
            (fd, st, false)
        };
        if judged {
            // Below a tenant every node has one; fail closed if that ever breaks.
            let t = tenant.as_deref().ok_or(Errno::EACCES)?;
            // The rule, on the object we hold and will serve.
            self.apply_rule(st.st_uid, t, &at)?;
        }

        let kind = kind_of(&st)?;
        // Hold a regular file open for reading: the same object (reopened through
        // /proc/self/fd, not by name), and no-open reads need nothing more.
        let (fd, readable) = if kind == FileType::RegularFile {
            match syscalls::reopen(&fd, OFlag::O_RDONLY | OFlag::O_NOATIME) {
                Ok(rfd) => (rfd, true),
                Err(_) => (fd, false),
            }
        } else {
            (fd, false)
        };
        // A directory reached through a link, or below one, is its own inode: shared with
        // its real path, the kernel would see one directory under two parents (ELOOP when
        // one is an ancestor of the other, as in `totenant/pub`).
        let alias = if kind == FileType::Directory && (via_link || parent.alias != 0) {
            alias_id(parent.ino, name_b)
        } else {
            0
        };
        let key = Key {
            dev: st.st_dev,
            ino: st.st_ino,
            tenant_uid: tenant.as_ref().map_or(NO_TENANT, |t| t.uid),
            alias,
        };
        let node = self
            .nodes
            .lookup(
                key,
                self.root_dev,
                NewNode {
                    parent: parent.ino,
                    fd,
                    kind,
                    depth,
                    tenant,
                    judged,
                    name: Box::from(name_b),
                    path_len,
                    readable,
                    alias,
                    ctime: (st.st_ctime, st.st_ctime_nsec),
                },
            )
            .map_err(|_| {
                // This tenant holds its share of the daemon's descriptors already: its own
                // lookups fail (the kernel is asked to forget some), nobody else's.
                Errno::EMFILE
            })?;
        // An existing node: the object may have changed since the kernel last heard of it.
        self.note_change(&node, &st);
        self.count_nodes();
        // Under `owner euid` every judged name depends on who asks (the tenant directory
        // itself, its own owner, does not).
        let per_caller = via_link || (node.judged && node.tenant.as_deref().is_some_and(|t| t.by_caller));
        Ok(Child { node, st, per_caller })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_ne!(alias_id(1, b"x"), alias_id(2, b"x"));
    }
}
