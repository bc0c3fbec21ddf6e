//! The attack harness's tools for a test, with every prerequisite checked (root, the
//! `toctou-attack` binary, and each target's servers, shim or FUSE daemon).

use std::path::PathBuf;

use toctou_attack::guardconf::{GuardConfig, LogListener};
use toctou_attack::{TargetKind, Tenants, Tools};

use crate::{artifacts, prereq};

/// Tools able to run every target in `kinds`, or `None` after a `SKIP:` (a panic in CI).
#[track_caller]
pub fn tools_for(kinds: &[TargetKind]) -> Option<Tools> {
    if !prereq::root() {
        return None;
    }
    let tools = artifacts::attack_tools();
    if !prereq::require(
        tools.is_some(),
        "the toctou-attack binary (cargo build --release -p toctou-attack)",
    ) {
        return None;
    }
    let tools = tools?;
    let missing: Vec<String> = kinds
        .iter()
        .filter_map(|k| tools.missing(*k).map(|why| format!("target {}: {why}", k.name())))
        .collect();
    if prereq::require(missing.is_empty(), &missing.join("; ")) {
        Some(tools)
    } else {
        None
    }
}

/// `RUN/guard.conf` for real servers the operator's commands are tested against: the
/// tenants' rule, enforced, root's shared files allowed, denial lines to `log`.
pub fn enforcing_config(tenants: &Tenants, log: &LogListener) -> PathBuf {
    GuardConfig {
        root: tenants.root_pattern(),
        owner_euid: false,
        allow_root: true,
        audit: false,
        log_socket: log.path.clone(),
        log_rate: 1000,
    }
    .write(&tenants.run, "guard.conf")
    .expect("config")
}
