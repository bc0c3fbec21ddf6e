//! Helpers shared by the integration tests: prerequisites that skip locally but fail in CI,
//! the workspace's built artifacts (the shim, the FUSE daemon, `toctou-attack`), the FUSE
//! daemon's harness (a two-tenant tree and a running mount), the shim's fixture (two
//! docroots, a config, the C helpers), deadline polls in place of fixed sleeps, and a lock
//! that keeps heavy race tests from measuring each other.
#![forbid(unsafe_code)]

pub mod artifacts;
pub mod fuse_tree;
pub mod harness;
pub mod php_site;
pub mod poll;
pub mod prereq;
pub mod private_etc;
pub mod shim_fixture;

use std::process::Output;
use std::sync::{Mutex, MutexGuard};

/// A finished program for an assertion message: exit code, stdout, stderr.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}; stdout {:?}; stderr {:?}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

static HEAVY: Mutex<()> = Mutex::new(());

/// Hold this while a test races or loads a server: tests of one binary run in parallel,
/// and on a 2-core machine two races at once slow each other down.
pub fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}
