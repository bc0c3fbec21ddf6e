//! The tenant tree the open-loop benchmarks read, and the guard configurations for it.
//!
//! `BASE/tenants/t{i}/public_html/index.html` for `i < count`, each tenant directory and its
//! files owned by its own uid (when run as root), plus `BASE/outside/i0.html` outside
//! every root. Building 100,000 tenants takes a few seconds, so the tree is kept under
//! `/var/tmp/toctou-guard-bench` and reused while its marker says it is complete.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Bytes of every small file: a typical small static asset.
pub const SMALL_FILE_BYTES: usize = 512;

/// First uid handed to tenants; tenant `i` is owned by `TENANT_UID_BASE + i % 1000`.
pub const TENANT_UID_BASE: u32 = 3000;

pub struct Micro {
    pub base: PathBuf,
    pub count: u64,
}

impl Micro {
    /// `openloop` prefix and suffix for tenant paths: `{prefix}{i}{suffix}`.
    pub fn tenant_prefix(&self) -> String {
        format!("{}/tenants/t", self.base.display())
    }
    pub const SUFFIX: &'static str = "/public_html/index.html";

    /// `openloop` prefix of the file outside every root: `{prefix}0.html`.
    pub fn outside_prefix(&self) -> String {
        format!("{}/outside/i", self.base.display())
    }

    /// Guard configuration with the default owner cache.
    pub fn config(&self) -> PathBuf {
        self.base.join("guard.conf")
    }

    /// Guard configuration with an owner cache larger than the tenant count.
    pub fn config_big_cache(&self) -> PathBuf {
        self.base.join("guard-131072.conf")
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Create `dir` (and parents) with mode 0755, as the guard's config trust check requires.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
}

/// Write a root-owned (when root), mode 0644 file.
pub fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
}

/// A file of `n` bytes of HTML-ish text.
pub fn content(n: usize) -> Vec<u8> {
    let line = b"<p>toctou-guard benchmark payload, the same bytes every time.</p>\n";
    line.iter().copied().cycle().take(n).collect()
}

/// The tree for `count` tenants, built (or reused) under `/var/tmp/toctou-guard-bench/micro`.
pub fn micro(count: u64) -> std::io::Result<Micro> {
    let base = std::env::var_os("TOCTOU_BENCH_DIR")
        .map_or_else(|| PathBuf::from("/var/tmp/toctou-guard-bench"), PathBuf::from)
        .join("micro");
    let m = Micro { base, count };
    let marker = m.base.join(format!(".complete-{count}"));
    if marker.exists() {
        return Ok(m);
    }
    private_dir(&m.base)?;
    private_dir(&m.base.join("outside"))?;
    write_file(&m.base.join("outside/i0.html"), &content(SMALL_FILE_BYTES))?;
    let data = content(SMALL_FILE_BYTES);
    let root = is_root();
    for i in 0..count {
        let tenant = m.base.join(format!("tenants/t{i}"));
        let docroot = tenant.join("public_html");
        private_dir(&docroot)?;
        let file = docroot.join("index.html");
        write_file(&file, &data)?;
        if root {
            let uid = TENANT_UID_BASE + (i % 1000) as u32;
            for p in [&file, &docroot, &tenant] {
                std::os::unix::fs::chown(p, Some(uid), Some(uid))?;
            }
        }
    }
    let conf = |slots: Option<u32>| {
        let mut s = format!(
            "# toctou-guard-bench micro fixture\nmode enforce\nroot {}/tenants/*/public_html\nlog_socket {}/log.sock\n",
            m.base.display(),
            m.base.display()
        );
        if let Some(n) = slots {
            s.push_str(&format!("cache_slots {n}\n"));
        }
        s
    };
    write_file(&m.config(), conf(None).as_bytes())?;
    write_file(&m.config_big_cache(), conf(Some(131072)).as_bytes())?;
    write_file(&marker, b"")?;
    Ok(m)
}
