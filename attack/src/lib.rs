//! `toctou-attack`: sets up two tenants, races symlink swaps against a web server as the
//! attacker tenant, and counts every response that carries the victim's secret.
//!
//! A guarded target must show zero leaks (and zero false denials in the legit lane); a bare
//! one must leak, or the run proves nothing.
//!
//! - `tenants`: the temporary base directory, the two tenants, the secret with a fresh
//!   marker, the legit files; removed on drop (and on SIGINT/SIGTERM via `signals`).
//! - `scenario`: what each attack lays out and which two names its swapper exchanges.
//! - `swapper`: the attacker's forked child (its own uid) running `RENAME_EXCHANGE` threads,
//!   controlled with Run/Pause/Quit.
//! - `target`, `targets/*`: the servers (naive, Apache, nginx, php-fpm, FUSE, external);
//!   `targets::WebServer` and `targets::fuse::FuseMount` also serve the benchmarks' sites.
//! - `artefacts`: where the built shim, FUSE daemon and programs are (the one locator of the
//!   harness, the benchmarks and the integration tests).
//! - `load`, `http`: keep-alive clients counting leaks, denials and false denials.
//! - `run`, `report`: the target x scenario matrix, its table, JSON and exit status.
//! - `exhaust`: the attacker's helper working through the mount (`deep-tree`,
//!   `alias-pinning`) and the FUSE daemon's RSS and descriptor count over a cell.
//! - `sys`: the only module with `unsafe` system calls (plus one `pre_exec` hook in `process`).

pub mod artefacts;
pub mod error;
pub mod exhaust;
pub mod guardconf;
pub mod http;
pub mod load;
pub mod marker;
pub mod naive;
pub mod process;
pub mod report;
pub mod run;
pub mod scenario;
pub mod signals;
pub mod swapper;
pub mod sys;
pub mod target;
pub mod targets;
pub mod tenants;

pub use error::{Error, Result};
pub use report::{CellResult, Report};
pub use run::{RunOptions, run_matrix};
pub use scenario::Scenario;
pub use target::{Guard, TargetKind, Tools};
pub use tenants::Tenants;
