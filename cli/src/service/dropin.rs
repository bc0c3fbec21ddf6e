//! The systemd drop-in that preloads the library into a service: its text, where it goes,
//! and which services it is meant for.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the package installs the library.
pub const LIBRARY: &str = "/usr/lib/toctou-guard/libtoctou_guard.so";
/// The drop-in's file name inside `SERVICE.service.d/`.
pub const FILE_NAME: &str = "toctou-guard.conf";

/// Is `service` a web server or PHP service the guard is for? Debian/RHEL names, and the
/// panels' own PHP services (cPanel `ea-php81-php-fpm`, Plesk `plesk-php82-fpm`,
/// DirectAdmin `php-fpm82`).
pub fn validate(service: &str) -> Result<&str, String> {
    let s = service.strip_suffix(".service").unwrap_or(service);
    // A file name under /etc/systemd/system: no '/', no "..", nothing hidden or option-like.
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
        && !s.contains("..")
        && !s.starts_with(['.', '-']);
    let known = matches!(s, "apache2" | "httpd" | "nginx" | "lsws" | "lshttpd")
        || (s.contains("php") && s.contains("-fpm"));
    if safe && known {
        Ok(s)
    } else {
        Err(format!(
            "'{service}': not a web server or php-fpm service (apache2, httpd, nginx, lsws, php-fpm, php8.2-fpm, ea-php81-php-fpm, plesk-php82-fpm, php-fpm82, ...)"
        ))
    }
}

/// A path systemd reads verbatim in `Environment=`: absolute, no space, quote, `\` or `%`
/// (a specifier), so that the drop-in means exactly what it says.
fn plain(what: &str, p: &Path) -> Result<String, String> {
    let s = p
        .to_str()
        .ok_or_else(|| format!("{what} {}: not UTF-8", p.display()))?;
    if !s.starts_with('/')
        || s.bytes()
            .any(|b| b.is_ascii_whitespace() || b"\"'\\%$".contains(&b))
    {
        return Err(format!(
            "{what} '{s}': must be an absolute path without spaces, quotes, '\\', '%' or '$'"
        ));
    }
    Ok(s.to_string())
}

/// The drop-in for `service` (its `Environment=` lines are what `enable` prints to start a
/// server with where systemd does not run).
pub fn text(service: &str, library: &Path, config: &Path) -> Result<String, String> {
    let (lib, conf) = (plain("library", library)?, plain("config", config)?);
    Ok(format!(
        "# toctou-guard: preload the guard into {service}'s processes (fail closed: a broken\n\
         # config stops the service at start). Installed by `toctou-guard enable {service}`,\n\
         # removed by `toctou-guard disable {service}`.\n\
         [Service]\n\
         Environment=LD_PRELOAD={lib}\n\
         Environment=TOCTOU_GUARD_CONFIG={conf}\n"
    ))
}

/// `KEY=VALUE` of each `Environment=` line of a drop-in.
pub fn environment(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `ROOT/etc/systemd/system/SERVICE.service.d/toctou-guard.conf`.
pub fn path(root: &Path, service: &str) -> PathBuf {
    root.join(format!("etc/systemd/system/{service}.service.d"))
        .join(FILE_NAME)
}

/// Write `text` at `path` (root 0644), atomically: a temp file in the same directory,
/// renamed over the old one.
pub fn install(path: &Path, text: &str) -> Result<(), String> {
    let dir = path
        .parent()
        .ok_or_else(|| format!("{}: no directory", path.display()))?;
    fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("write {}: {e}", path.display())
    })
}

/// Remove the drop-in (and its directory, if that leaves it empty). `false` if there was none.
pub fn remove(path: &Path) -> Result<bool, String> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("remove {}: {e}", path.display())),
    }
    if let Some(dir) = path.parent() {
        // Only when empty: the operator's own drop-ins stay.
        let _ = fs::remove_dir(dir);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drop-ins the package ships are exactly what `enable` writes with the defaults.
    #[test]
    fn shipped_dropins_are_the_generated_ones() {
        let conf = Path::new(toctou_policy::DEFAULT_CONFIG_PATH);
        for (service, shipped) in [
            ("apache2", include_str!("../../../packaging/dropins/apache2.conf")),
            ("httpd", include_str!("../../../packaging/dropins/httpd.conf")),
            ("nginx", include_str!("../../../packaging/dropins/nginx.conf")),
            ("php-fpm", include_str!("../../../packaging/dropins/php-fpm.conf")),
        ] {
            assert_eq!(
                text(service, Path::new(LIBRARY), conf).unwrap(),
                shipped,
                "{service}"
            );
        }
    }

    /// Installing, upgrading or removing the package restarts and reloads no server: the
    /// only systemd call in any maintainer script is `daemon-reload`.
    #[test]
    fn maintainer_scripts_restart_nothing() {
        for (name, text) in [
            (
                "debian/postinst",
                include_str!("../../../packaging/debian/postinst"),
            ),
            ("debian/prerm", include_str!("../../../packaging/debian/prerm")),
            ("debian/postrm", include_str!("../../../packaging/debian/postrm")),
            ("rpm/post", include_str!("../../../packaging/rpm/post")),
            ("rpm/postun", include_str!("../../../packaging/rpm/postun")),
        ] {
            for (n, line) in text.lines().enumerate() {
                // Code, not comments or messages to the operator.
                let code = line.split('#').next().unwrap_or("");
                if code.trim_start().starts_with("echo ") {
                    continue;
                }
                let calls =
                    code.contains("systemctl") || code.contains("invoke-rc.d") || code.contains("service ");
                let only_reload = code.matches("systemctl").count()
                    == code.matches("systemctl daemon-reload").count()
                    && !code.contains("invoke-rc.d")
                    && !code.contains("service ");
                assert!(!calls || only_reload, "packaging/{name}:{}: {line}", n + 1);
                for word in ["restart", "try-restart", "reload-or", "kill", "stop", "start"] {
                    assert!(
                        !code.split_whitespace().any(|w| w == word),
                        "packaging/{name}:{}: {line}",
                        n + 1
                    );
                }
            }
        }
    }

    #[test]
    fn services_and_paths() {
        for ok in [
            "nginx",
            "apache2.service",
            "php8.2-fpm",
            "ea-php81-php-fpm",
            "plesk-php82-fpm",
            "php-fpm",
        ] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in [
            "sshd",
            "",
            "../nginx",
            "nginx/x",
            "php8.2-fpm\n",
            "mysql",
            "..php-fpm",
            "php-fpm/../../../tmp/x",
            ".php-fpm",
            "-php-fpm",
            "php..-fpm",
            "php-fpm\0",
            "php-fpm ",
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        assert!(text("nginx", Path::new("lib.so"), Path::new("/c")).is_err());
        assert!(text("nginx", Path::new("/a b.so"), Path::new("/c")).is_err());
        assert!(text("nginx", Path::new("/a.so"), Path::new("/%n")).is_err());
        let t = text("nginx", Path::new("/a.so"), Path::new("/c")).unwrap();
        assert_eq!(
            environment(&t),
            [
                ("LD_PRELOAD".into(), "/a.so".into()),
                ("TOCTOU_GUARD_CONFIG".into(), "/c".into())
            ]
        );
    }
}
