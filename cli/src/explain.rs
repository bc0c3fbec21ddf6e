//! `explain PATH`: which root and tenant a path falls under, the expected owner, and what
//! the guard would decide for the file an open of it would return right now.

use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use toctou_policy::{Config, Decision, Expected, Meta, Policy, ScratchPath, Target, tenant_owner};

pub fn explain(cfg: Config, path: &Path, uid: Option<u32>) -> String {
    let policy = Policy::new(cfg);
    let mut out = String::new();
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let mut norm = ScratchPath::new();
    let target = policy.classify(
        Some(cwd.as_os_str().as_bytes()),
        path.as_os_str().as_bytes(),
        &mut norm,
    );
    let shown = String::from_utf8_lossy(norm.as_bytes()).into_owned();
    let _ = writeln!(out, "path:     {shown}");
    let (root, tenant_len, expected) = match target {
        Target::Outside => {
            let _ = writeln!(
                out,
                "root:     none (outside every root: opened untouched, no extra system call)"
            );
            let _ = writeln!(out, "decision: allow");
            return out;
        }
        Target::Deny(reason) => {
            let _ = writeln!(out, "decision: deny ({}) before opening", reason.as_str());
            return out;
        }
        Target::Guarded {
            root,
            tenant_len,
            expected,
        } => (root, tenant_len, expected),
    };
    let entry = &policy.config().roots[root];
    let kind = |e: &toctou_policy::config::RootEntry| if e.fixed_uid.is_some() { "map" } else { "root" };
    let _ = writeln!(
        out,
        "root:     {} {} (line {})",
        kind(entry),
        entry.pattern.as_str(),
        entry.line
    );
    // Say which line won when a deeper tree also holds the path: the first entered decides.
    for (inner, outer) in policy.shadowed() {
        let i = &policy.config().roots[inner];
        if outer == root && i.pattern.match_clean(norm.as_bytes()).is_some() {
            let _ = writeln!(
                out,
                "          (also under {} {} (line {}), which never applies: the path enters line {} first)",
                kind(i),
                i.pattern.as_str(),
                i.line,
                entry.line
            );
        }
    }
    let tenant = String::from_utf8_lossy(&norm.as_bytes()[..tenant_len]).into_owned();
    let _ = writeln!(out, "tenant:   {tenant}");
    let expected_uid = match expected {
        Expected::Uid(u) => {
            let _ = writeln!(out, "expected: uid {u} (fixed by map)");
            Ok(u)
        }
        Expected::Euid => {
            let u = uid.unwrap_or_else(crate::load::euid);
            let _ = writeln!(
                out,
                "expected: uid {u} (owner euid: the worker's effective uid{})",
                if uid.is_some() { ", from --uid" } else { "" }
            );
            Ok(u)
        }
        Expected::TenantOwner => {
            let meta = std::fs::symlink_metadata(&tenant).ok().map(|m| Meta {
                uid: m.uid(),
                mode: m.mode(),
            });
            let owner = tenant_owner(meta);
            if let Ok(u) = owner {
                let _ = writeln!(
                    out,
                    "expected: uid {u} (owner of {tenant}, not following symlinks)"
                );
            }
            owner
        }
    };
    let expected_uid = match expected_uid {
        Ok(u) => u,
        Err(reason) => {
            let _ = writeln!(out, "decision: {}", describe(policy.refuse(reason)));
            return out;
        }
    };
    match std::fs::metadata(norm_path(&norm)) {
        Ok(m) => {
            let _ = writeln!(
                out,
                "file:     owner uid {} (what an open returns now, symlinks followed)",
                m.uid()
            );
            let _ = writeln!(
                out,
                "decision: {}",
                describe(policy.decide(m.uid(), expected_uid))
            );
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "file:     cannot be opened now ({e}); any file it later names must be owned by uid {expected_uid}"
            );
        }
    }
    out
}

fn norm_path(norm: &ScratchPath) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(norm.as_bytes()))
}

fn describe(d: Decision) -> String {
    match d {
        Decision::Allow => "allow".into(),
        Decision::Deny(r) => format!("deny ({}): EACCES", r.as_str()),
        Decision::Audit(r) => format!("audit ({}): would deny, allowed by mode audit", r.as_str()),
    }
}
