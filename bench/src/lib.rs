//! Shared pieces of the toctou-guard benchmarks: locating the built artefacts, the on-disk
//! tenant fixture, the `openloop` child process and the statistics printed as ratios.
//!
//! Every comparison is made inside one run: the variants are measured in interleaved rounds,
//! each round's figure is divided by the same round's bare figure, and the median and spread
//! of those ratios are reported.

pub mod artefacts;
pub mod child;
pub mod fixture;
pub mod load;
pub mod mounts;
pub mod proc;
pub mod servers;
pub mod stats;
