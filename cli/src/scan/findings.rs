//! What `scan` reports: one finding per object enforcing would refuse (or the walk could not
//! judge), with the tenant it belongs to.

/// Finding kinds, in the order the summary lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A file or directory whose owner is neither the tenant's nor an `allow_uid`.
    OwnerMismatch,
    /// The same, for a regular file with several names (a hard link to another's file).
    Hardlink,
    /// A symlink whose target, resolved lexically against its directory, is outside the
    /// tenant directory.
    SymlinkLeavesTenant,
    /// A tenant directory that is a symlink (the guard refuses everything below it).
    TenantSymlink,
    /// A tenant directory owned by root under the tenant rule: every tenant file is refused.
    TenantRootOwned,
    /// A path the guard cannot hold (`path-too-long`).
    PathTooLong,
    /// A directory on another file system: reported, not entered.
    OtherMount,
    /// A directory that could not be read, was replaced during the scan, or is a symlink
    /// where the pattern expects a directory (none of them followed).
    Unreadable,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::OwnerMismatch,
        Kind::Hardlink,
        Kind::SymlinkLeavesTenant,
        Kind::TenantSymlink,
        Kind::TenantRootOwned,
        Kind::PathTooLong,
        Kind::OtherMount,
        Kind::Unreadable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OwnerMismatch => "owner-mismatch",
            Kind::Hardlink => "hardlink",
            Kind::SymlinkLeavesTenant => "symlink-leaves-tenant",
            Kind::TenantSymlink => "tenant-symlink",
            Kind::TenantRootOwned => "tenant-root-owned",
            Kind::PathTooLong => "path-too-long",
            Kind::OtherMount => "other-mount",
            Kind::Unreadable => "unreadable",
        }
    }

    /// Would enforcing refuse something because of it? (A mount or an unreadable directory
    /// is what the scan could not look at, not a denial.)
    pub fn denies(self) -> bool {
        !matches!(self, Kind::OtherMount | Kind::Unreadable)
    }
}

/// One finding. Paths are the raw bytes; the report escapes them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub kind: Kind,
    pub tenant: Vec<u8>,
    pub path: Vec<u8>,
    pub detail: String,
}

impl Finding {
    pub fn new(kind: Kind, tenant: &[u8], path: &[u8], detail: impl Into<String>) -> Finding {
        Finding {
            kind,
            tenant: tenant.to_vec(),
            path: path.to_vec(),
            detail: detail.into(),
        }
    }
}
