//! The tenant tree the open-loop benchmarks read, and the guard configurations for it.
//!
//! `BASE/tenants/t{i}/public_html/index.html` for `i < count`, each tenant directory and its
//! files owned by its own uid (when run as root), plus `BASE/outside/i0.html` outside
//! every root. Building 100,000 tenants takes a few seconds, so the tree is kept under
//! `/var/tmp/toctou-guard-bench` and reused while its marker says it is complete.
//!
//! Files are made with the attack harness's helpers (`toctou_attack::tenants`), as its
//! tenants are.

use std::path::PathBuf;

use toctou_attack::error::Wrap;
use toctou_attack::sys::{getegid, geteuid};
use toctou_attack::tenants::{filler, mk_dir, mk_file};

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

    /// Guard configuration with `cache_slots n`, written on first use.
    pub fn config_slots(&self, n: u32) -> Result<PathBuf, String> {
        let p = self.base.join(format!("guard-{n}.conf"));
        if !p.exists() {
            mk_file(
                &p,
                self.config_text(Some(n)).as_bytes(),
                geteuid(),
                getegid(),
                0o644,
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(p)
    }

    /// The default configuration plus 100,000 `map` lines (one per vhost, none of them in
    /// the fixture's tree): what a lookup costs with a configuration that large. Written on
    /// first use.
    pub fn config_many_maps(&self) -> Result<PathBuf, String> {
        let p = self.base.join("guard-100k-maps.conf");
        if !p.exists() {
            let mut text = self.config_text(None);
            text.push_str(&map_lines(100_000));
            mk_file(&p, text.as_bytes(), geteuid(), getegid(), 0o644).map_err(|e| e.to_string())?;
        }
        Ok(p)
    }

    /// [`Self::config_many_maps`]' text under another name, with its compiled form beside it
    /// (`NAME.tgc`, what `toctou-guard compile` writes): the guard maps it instead of parsing.
    /// Compiled again whenever the text is newer than the image.
    pub fn config_many_maps_compiled(&self) -> Result<PathBuf, String> {
        let p = self.base.join("guard-100k-maps-compiled.conf");
        if !p.exists() {
            let text = std::fs::read(self.config_many_maps()?).map_err(|e| e.to_string())?;
            mk_file(&p, &text, geteuid(), getegid(), 0o644).map_err(|e| e.to_string())?;
        }
        compile_beside(&p)?;
        Ok(p)
    }

    /// The guard configuration text, with `cache_slots` when given.
    fn config_text(&self, slots: Option<u32>) -> String {
        let b = self.base.display();
        let mut s = format!(
            "# toctou-guard-bench micro fixture\nmode enforce\nroot {b}/tenants/*/public_html\nlog_socket {b}/log.sock\n"
        );
        if let Some(n) = slots {
            s.push_str(&format!("cache_slots {n}\n"));
        }
        s
    }
}

/// Write `conf`'s compiled form beside it (`CONF.tgc`, as `toctou-guard compile` does) unless
/// the one there is fresh.
pub fn compile_beside(conf: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    use toctou_policy::image;
    let m = std::fs::metadata(conf).map_err(|e| e.to_string())?;
    let stamp = image::Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
    };
    let out = image::path_for(conf);
    let fresh = std::fs::read(&out)
        .ok()
        .and_then(|b| image::Image::open(std::sync::Arc::new(b), &out).ok())
        .is_some_and(|(img, _)| img.stamp() == stamp);
    if !fresh {
        let text = std::fs::read(conf).map_err(|e| e.to_string())?;
        let cfg = toctou_policy::Config::parse_bytes(&text, conf).map_err(|e| e.to_string())?;
        let bytes = image::compile(&cfg, stamp)?;
        mk_file(&out, &bytes, geteuid(), getegid(), 0o644).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `n` `map` lines, one per vhost (`map /var/www/vhosts/dI.example/httpdocs 10000+I`): what
/// an operator generates from the server's configuration on a box of `n` vhosts.
pub fn map_lines(n: u32) -> String {
    let mut text = String::with_capacity(n as usize * 52);
    for i in 0..n {
        text.push_str(&format!(
            "map /var/www/vhosts/d{i}.example/httpdocs {}\n",
            10_000 + i
        ));
    }
    text
}

/// The owner of tenant `i`'s files: its own uid as root, else ours (no chown possible).
fn owner(i: u64) -> (u32, u32) {
    if geteuid() == 0 {
        let uid = TENANT_UID_BASE + (i % 1000) as u32;
        (uid, uid)
    } else {
        (geteuid(), getegid())
    }
}

/// The tree for `count` tenants, built (or reused) under `/var/tmp/toctou-guard-bench/micro`.
pub fn micro(count: u64) -> Result<Micro, String> {
    let base = std::env::var_os("TOCTOU_BENCH_DIR")
        .map_or_else(|| PathBuf::from("/var/tmp/toctou-guard-bench"), PathBuf::from)
        .join("micro");
    let m = Micro { base, count };
    let marker = m.base.join(format!(".complete-{count}"));
    if marker.exists() {
        return Ok(m);
    }
    build(&m).map_err(|e| e.to_string())?;
    mk_file(&marker, b"", geteuid(), getegid(), 0o644).map_err(|e| e.to_string())?;
    Ok(m)
}

/// Make every directory and file of `m`, root-owned (ours) but the tenants'; 0755 and 0644,
/// as the guard's config trust check requires.
fn build(m: &Micro) -> toctou_attack::Result<()> {
    let (me, my_group) = (geteuid(), getegid());
    std::fs::create_dir_all(&m.base).wrap(|| format!("mkdir {}", m.base.display()))?;
    for d in [m.base.clone(), m.base.join("outside"), m.base.join("tenants")] {
        mk_dir(&d, me, my_group, 0o755)?;
    }
    let data = filler(SMALL_FILE_BYTES);
    mk_file(&m.base.join("outside/i0.html"), &data, me, my_group, 0o644)?;
    for i in 0..m.count {
        let (uid, gid) = owner(i);
        let tenant = m.base.join(format!("tenants/t{i}"));
        mk_dir(&tenant, uid, gid, 0o755)?;
        mk_dir(&tenant.join("public_html"), uid, gid, 0o755)?;
        mk_file(&tenant.join("public_html/index.html"), &data, uid, gid, 0o644)?;
    }
    mk_file(&m.config(), m.config_text(None).as_bytes(), me, my_group, 0o644)?;
    mk_file(
        &m.config_big_cache(),
        m.config_text(Some(131072)).as_bytes(),
        me,
        my_group,
        0o644,
    )
}
