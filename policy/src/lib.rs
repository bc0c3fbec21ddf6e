//! The toctou-guard rule, shared by the `LD_PRELOAD` shim and the FUSE daemon.
//!
//! Everything here is pure: no system calls, no `unsafe`. Callers feed in what they
//! observed (a path, a `stat` result) and get a decision back. The hot-path entry points
//! ([`Policy::classify`], [`Policy::decide`], [`OwnerCache`]) never allocate.
#![forbid(unsafe_code)]

pub mod config;
pub mod decide;
pub mod error;
pub mod image;
mod index;
pub mod load;
pub mod logline;
pub mod meta;
pub mod owner_cache;
pub mod path;
pub mod pattern;
pub mod trust;

pub use config::{Config, Mode, OwnerRule};
pub use decide::{Decision, DenyReason, Expected, Policy, RootInfo, Target, tenant_owner};
pub use error::{Error, ErrorKind};
pub use load::{Compiled, ConfigIo, LoadError, Loaded, OpenFailure, Opened, ReadFailure, Roots};
pub use meta::Meta;
pub use owner_cache::OwnerCache;
pub use path::{PATH_MAX, PathBuf as ScratchPath};
pub use pattern::RootPattern;

/// Where the shim and the CLI look for the configuration unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/toctou-guard.conf";
/// Environment variable naming another configuration file.
pub const CONFIG_ENV: &str = "TOCTOU_GUARD_CONFIG";
