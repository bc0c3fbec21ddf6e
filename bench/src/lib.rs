//! Shared pieces of the toctou-guard benchmarks: the on-disk tenant fixture, the `openloop`
//! child process, `wrk`, CPU accounting from `/proc` and the statistics printed as ratios.
//! The lab itself (servers, FUSE mounts, tenants, process handling, where the built shim
//! and daemon are) is the attack harness's: `toctou_attack::{targets, tenants, process,
//! artefacts}`.
//!
//! Every comparison is made inside one run: the variants are measured in interleaved rounds,
//! each round's figure is divided by the same round's bare figure, and the median and spread
//! of those ratios are reported.

pub mod child;
pub mod client;
pub mod cost;
pub mod fixture;
pub mod lab;
pub mod proc;
pub mod stats;
pub mod wrk;

/// The operator command (`toctou-guard compile`, `scan`), found like the shim and the daemon.
pub const CLI: toctou_attack::artefacts::Artefact = toctou_attack::artefacts::Artefact {
    package: "toctou-guard",
    file: "toctou-guard",
    env: Some("TOCTOU_GUARD_CLI"),
};
