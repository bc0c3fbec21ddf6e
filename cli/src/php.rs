//! `toctou-guard check --php [FILE...]`: the PHP settings no file-level guard can make safe.
//!
//! - A php-fpm master's opcache is one shared memory for all its pools. A script one pool
//!   compiled is served to another pool from memory, with no `open()` for the shim to judge,
//!   unless `opcache.validate_permission` (the worker must be able to read the file) and
//!   `opcache.validate_root` (the same file under each chroot) are on. So: two or more
//!   pools under one master with opcache on and either setting off is an error.
//! - `ffi.enable=1` lets a tenant's script call libc directly (`FFI::cdef`): every preload
//!   guard is bypassed. Any pool (or the php.ini every pool reads) setting it is an error.
//!
//! The files are php-fpm configurations (`[global]` and one section per pool; `include=`
//! globs are followed, a relative one from the including file's directory, where php-fpm
//! itself would use its prefix) and php.ini files (`conf.d/*.ini` too). A section with a `listen`
//! key is a pool; every other `key = value` is a php.ini setting all pools inherit, which a
//! pool overrides with `php_value[...]`, `php_flag[...]`, `php_admin_value[...]` or
//! `php_admin_flag[...]`. With no FILE: every `/etc/php/*/fpm/` (php-fpm.conf, php.ini,
//! conf.d/*.ini), one master each.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One `key = value`, with where it was read.
#[derive(Debug, Clone)]
struct Setting {
    value: String,
    at: String,
}

#[derive(Debug, Default)]
struct Pool {
    name: String,
    at: String,
    /// `php_value[k]` and friends: k → value.
    overrides: BTreeMap<String, Setting>,
    /// `listen` and `user` (`$pool` expanded, as php-fpm does), for `import`.
    listen: Option<Setting>,
    user: Option<Setting>,
}

/// One master: its pools and the php.ini settings they inherit.
#[derive(Debug, Default)]
struct Master {
    pools: Vec<Pool>,
    ini: BTreeMap<String, Setting>,
}

/// php.ini's booleans (`1`, `On`, `Yes`, `True`; everything else is off).
fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")
}

/// php.ini's defaults for the settings we judge, as php-fpm 8.2 starts with no php.ini.
fn default_of(key: &str) -> &'static str {
    match key {
        "opcache.enable" => "1",
        "ffi.enable" => "preload",
        _ => "0",
    }
}

impl Master {
    /// `key` as `pool` sees it, and where it was set (`None`: the built-in default).
    fn effective(&self, pool: &Pool, key: &str) -> (String, Option<String>) {
        match pool.overrides.get(key).or_else(|| self.ini.get(key)) {
            Some(s) => (s.value.clone(), Some(s.at.clone())),
            None => (default_of(key).to_string(), None),
        }
    }

    /// Every problem, as `WHERE: error: WHAT`.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let shared = self.pools.len() >= 2;
        for p in &self.pools {
            let (ffi, ffi_at) = self.effective(p, "ffi.enable");
            if truthy(&ffi) {
                out.push(format!(
                    "{}: error: pool [{}] has ffi.enable={ffi}: its scripts can call libc directly and \
                     bypass the guard (use ffi.enable=preload or 0)",
                    ffi_at.unwrap_or_else(|| p.at.clone()),
                    p.name
                ));
            }
            if !shared || !truthy(&self.effective(p, "opcache.enable").0) {
                continue;
            }
            for key in ["opcache.validate_permission", "opcache.validate_root"] {
                let (v, at) = self.effective(p, key);
                if !truthy(&v) {
                    let shown = if at.is_none() { format!("{v} (default)") } else { v };
                    out.push(format!(
                        "{}: error: pool [{}] shares its master's opcache with {} other pool(s) and has \
                         {key}={shown}: it is served scripts other pools compiled with no open() to \
                         judge (set {key}=1)",
                        at.unwrap_or_else(|| p.at.clone()),
                        p.name,
                        self.pools.len() - 1,
                    ));
                }
            }
        }
        out
    }
}

/// `dir/pattern` where only the last component may hold `*` (php-fpm's `include=` globs as
/// distributions write them), sorted; a path without `*` as is.
fn expand(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let name = pattern.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains('*') {
        return Ok(vec![pattern.to_path_buf()]);
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    if dir.to_string_lossy().contains('*') {
        return Err(format!(
            "{}: only the last component may hold '*'",
            pattern.display()
        ));
    }
    let parts: Vec<&str> = name.split('*').collect();
    let matches = |n: &str| {
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if !n.starts_with(first) || !n.ends_with(last) || n.len() < first.len() + last.len() {
            return false;
        }
        let mut rest = &n[first.len()..n.len() - last.len()];
        for mid in &parts[1..parts.len() - 1] {
            match rest.find(mid) {
                Some(i) => rest = &rest[i + mid.len()..],
                None => return false,
            }
        }
        true
    };
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| !n.starts_with('.') && matches(n))
            })
            .map(|e| e.path())
            .collect(),
        // php-fpm accepts an include glob matching nothing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    out.sort();
    Ok(out)
}

/// `php_value[k]`, `php_admin_flag[k]`, ...: `Some(k)`.
fn override_key(key: &str) -> Option<&str> {
    let (prefix, rest) = key.split_once('[')?;
    matches!(
        prefix,
        "php_value" | "php_flag" | "php_admin_value" | "php_admin_flag"
    )
    .then(|| rest.strip_suffix(']'))
    .flatten()
}

/// Read one file (and its includes, at most `depth` deep) into `m`.
fn read_file(m: &mut Master, path: &Path, depth: u32) -> Result<(), String> {
    if depth > 8 {
        return Err(format!("{}: includes nested too deep", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut section: Option<String> = None;
    // Pool sections of this file: a section is a pool once it has `listen`.
    let mut sections: Vec<(String, String, BTreeMap<String, Setting>, bool)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), n + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_string());
            sections.push((name.trim().to_string(), at, BTreeMap::new(), false));
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let key = k.trim();
        // Values may be quoted, and a `;` after them starts a comment.
        let v = v.trim();
        let value = match v.strip_prefix('"').and_then(|s| s.split_once('"')) {
            Some((inner, _)) => inner.to_string(),
            None => v.split(';').next().unwrap_or("").trim().to_string(),
        };
        if key == "include" && section.as_deref().is_none_or(|s| s == "global") {
            let base = path.parent().unwrap_or(Path::new("/"));
            for inc in expand(&base.join(&value))? {
                read_file(m, &inc, depth + 1)?;
            }
            continue;
        }
        let setting = Setting { value, at };
        match sections.last_mut() {
            Some((name, _, keys, is_pool)) if name != "global" => {
                if key == "listen" {
                    *is_pool = true;
                }
                keys.insert(key.to_string(), setting);
            }
            Some(_) => {}
            None => {
                m.ini.insert(key.to_string(), setting);
            }
        }
    }
    for (name, at, keys, is_pool) in sections {
        if is_pool {
            let overrides = keys
                .iter()
                .filter_map(|(k, s)| override_key(k).map(|o| (o.to_string(), s.clone())))
                .collect();
            let expanded = |k: &str| {
                keys.get(k).map(|s| Setting {
                    value: s.value.replace("$pool", &name),
                    at: s.at.clone(),
                })
            };
            let (listen, user) = (expanded("listen"), expanded("user"));
            m.pools.push(Pool {
                name,
                at,
                overrides,
                listen,
                user,
            });
        } else {
            // php.ini sections ([PHP], [opcache], ...) only group settings.
            m.ini.extend(keys);
        }
    }
    Ok(())
}

/// The default files: each `/etc/php/VERSION/fpm/` is one master.
fn default_masters() -> Result<Vec<Vec<PathBuf>>, String> {
    let mut masters = Vec::new();
    for dir in expand(Path::new("/etc/php/*"))? {
        let fpm = dir.join("fpm");
        let conf = fpm.join("php-fpm.conf");
        if !conf.is_file() {
            continue;
        }
        let mut files = vec![fpm.join("php.ini")];
        files.extend(expand(&fpm.join("conf.d/*.ini"))?);
        files.push(conf);
        masters.push(files.into_iter().filter(|f| f.is_file()).collect());
    }
    if masters.is_empty() {
        return Err("no /etc/php/*/fpm/php-fpm.conf found: name the files".into());
    }
    Ok(masters)
}

/// A php-fpm pool's socket and user, each with where it was set (`FILE:LINE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUser {
    pub name: String,
    pub listen: String,
    pub listen_at: String,
    /// `None`: the pool sets no `user` (it runs as the master, i.e. root: php-fpm refuses).
    pub user: Option<(String, String)>,
}

/// Every pool of the default masters (`/etc/php/*/fpm/php-fpm.conf` and what it includes),
/// or of every `DIR/*.conf` when `dir` is given (`import --fpm-conf DIR`).
pub fn pool_users(dir: Option<&Path>) -> Result<Vec<PoolUser>, String> {
    let masters = match dir {
        Some(d) if !d.is_dir() => return Err(format!("--fpm-conf {}: not a directory", d.display())),
        Some(d) => vec![expand(&d.join("*.conf"))?],
        None => default_masters().unwrap_or_default(),
    };
    let mut out = Vec::new();
    for files in masters {
        let mut m = Master::default();
        for f in &files {
            read_file(&mut m, f, 0)?;
        }
        out.extend(m.pools.into_iter().filter_map(|p| {
            let listen = p.listen?;
            Some(PoolUser {
                name: p.name,
                listen: listen.value,
                listen_at: listen.at,
                user: p.user.map(|u| (u.value, u.at)),
            })
        }));
    }
    Ok(out)
}

/// Check `files` (one master) or the default masters; `Ok(problems)`.
pub fn check(files: &[String]) -> Result<(Vec<String>, usize), String> {
    let masters = if files.is_empty() {
        default_masters()?
    } else {
        vec![files.iter().map(PathBuf::from).collect()]
    };
    let mut problems = Vec::new();
    let mut pools = 0;
    for files in masters {
        let mut m = Master::default();
        for f in &files {
            read_file(&mut m, f, 0)?;
        }
        pools += m.pools.len();
        problems.extend(m.problems());
    }
    Ok((problems, pools))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(files: &[(&str, &str)]) -> (tempdir::Dir, Vec<String>) {
        let d = tempdir::Dir::new();
        let mut names = Vec::new();
        for (name, text) in files {
            let p = d.0.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            names.push(p.to_string_lossy().into_owned());
        }
        (d, names)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "tg-php-check-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    const FPM: &str = "[global]\npid = /run/x.pid\ninclude = pool.d/*.conf\n";
    const POOL_A: &str = "[alice]\nuser = alice\nlisten = /run/a.sock\n";
    const POOL_B: &str = "[bob]\nuser = bob\nlisten = /run/b.sock\n";

    #[test]
    fn two_pools_with_opcache_defaults_fail() {
        let (_d, f) = master(&[
            ("pool.d/a.conf", POOL_A),
            ("pool.d/b.conf", POOL_B),
            ("php-fpm.conf", FPM),
        ]);
        let (p, pools) = check(&f[2..]).unwrap();
        assert_eq!(pools, 2);
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(p[0].contains("pool [alice]") && p[0].contains("opcache.validate_permission=0 (default)"));
        assert!(p[0].contains("a.conf:1: error"), "{}", p[0]);
    }

    #[test]
    fn validate_settings_in_php_ini_pass_and_one_pool_is_fine() {
        let ini = "[opcache]\nopcache.validate_permission = On ; comment\nopcache.validate_root=\"1\"\n";
        let (_d, f) = master(&[
            ("php.ini", ini),
            ("pool.d/a.conf", POOL_A),
            ("pool.d/b.conf", POOL_B),
            ("php-fpm.conf", FPM),
        ]);
        let (p, _) = check(&[f[0].clone(), f[3].clone()]).unwrap();
        assert!(p.is_empty(), "{p:#?}");
        let (_d, f) = master(&[("pool.d/a.conf", POOL_A), ("php-fpm.conf", FPM)]);
        let (p, pools) = check(&f[1..]).unwrap();
        assert_eq!((p.len(), pools), (0, 1), "{p:#?}");
    }

    #[test]
    fn a_pool_override_wins_over_php_ini() {
        let ini = "opcache.validate_permission=1\nopcache.validate_root=1\n";
        let b = format!("{POOL_B}php_admin_flag[opcache.validate_permission] = off\n");
        let (_d, f) = master(&[
            ("php.ini", ini),
            ("pool.d/a.conf", POOL_A),
            ("pool.d/b.conf", &b),
            ("php-fpm.conf", FPM),
        ]);
        let (p, _) = check(&[f[0].clone(), f[3].clone()]).unwrap();
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].contains("b.conf:4: error: pool [bob]"), "{}", p[0]);
        // opcache off for every pool: nothing is shared.
        let (_d, f) = master(&[
            ("php.ini", "opcache.enable=0\n"),
            ("pool.d/a.conf", POOL_A),
            ("pool.d/b.conf", POOL_B),
            ("php-fpm.conf", FPM),
        ]);
        assert!(check(&[f[0].clone(), f[3].clone()]).unwrap().0.is_empty());
    }

    #[test]
    fn ffi_enable_fails_in_a_pool_or_php_ini() {
        let a = format!("{POOL_A}php_admin_value[ffi.enable] = 1\n");
        let (_d, f) = master(&[("pool.d/a.conf", &a), ("php-fpm.conf", FPM)]);
        let (p, _) = check(&f[1..]).unwrap();
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].contains("a.conf:4: error: pool [alice] has ffi.enable=1"),
            "{}",
            p[0]
        );
        let (_d, f) = master(&[
            ("php.ini", "[ffi]\nffi.enable = true\n"),
            ("pool.d/a.conf", POOL_A),
            ("php-fpm.conf", FPM),
        ]);
        let (p, _) = check(&[f[0].clone(), f[2].clone()]).unwrap();
        assert!(p.len() == 1 && p[0].contains("php.ini:2: error"), "{p:#?}");
        let (_d, f) = master(&[
            ("php.ini", "ffi.enable = preload\n"),
            ("pool.d/a.conf", POOL_A),
            ("php-fpm.conf", FPM),
        ]);
        assert!(check(&[f[0].clone(), f[2].clone()]).unwrap().0.is_empty());
    }

    #[test]
    fn pool_users_with_sockets() {
        let (d, _f) = master(&[
            ("pool.d/a.conf", POOL_A),
            (
                "pool.d/c.conf",
                "[carol]\nlisten = /run/$pool.sock\nuser = $pool\n",
            ),
            ("pool.d/not-a-pool.txt", POOL_B),
        ]);
        let p = pool_users(Some(&d.0.join("pool.d"))).unwrap();
        assert_eq!(p.len(), 2, "{p:#?}");
        assert_eq!(
            (p[0].name.as_str(), p[0].listen.as_str()),
            ("alice", "/run/a.sock")
        );
        assert_eq!(p[0].user.as_ref().map(|u| u.0.as_str()), Some("alice"));
        assert!(p[0].listen_at.ends_with("a.conf:3"), "{}", p[0].listen_at);
        assert_eq!(
            (p[1].listen.as_str(), p[1].user.as_ref().unwrap().0.as_str()),
            ("/run/carol.sock", "carol")
        );
        assert!(pool_users(Some(Path::new("/nonexistent"))).is_err());
    }

    #[test]
    fn a_missing_file_is_an_error() {
        assert!(
            check(&["/nonexistent/php-fpm.conf".into()])
                .unwrap_err()
                .contains("/nonexistent")
        );
    }
}
