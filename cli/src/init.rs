//! `toctou-guard init --layout PANEL`: a configuration that fits a hosting panel's document
//! roots and ownership, and which of the panel's PHP handlers it protects.
//!
//! The table below is the one place the layouts live (the README has a short copy).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One panel: where its document roots are, who owns what, the `root` lines that fit.
pub struct Layout {
    pub name: &'static str,
    /// Comment lines describing the tree (without `# `).
    about: &'static [&'static str],
    /// `root` patterns (`{P}` is the prefix); a trailing `  # ...` is kept as a comment.
    roots: &'static [&'static str],
    /// (handler, protected?, why) for the PHP handlers the panel offers.
    php: &'static [(&'static str, bool, &'static str)],
}

const EUID_NOTE: &str =
    "with its own configuration saying `owner euid` (TOCTOU_GUARD_CONFIG in the FPM service)";
const NO_ENV: &str =
    "the wrapper (suexec/suphp) clears LD_PRELOAD; use toctou-guard-fs or /etc/ld.so.preload";
const SAME_PROC: &str =
    "PHP runs inside the shared server: a script reads any tenant's files by their own paths";

pub const LAYOUTS: &[Layout] = &[
    Layout {
        name: "cpanel",
        about: &[
            "cPanel: /home/USER/public_html, addon and subdomains in /home/USER/DOMAIN.",
            "/home/USER is USER:USER 0711, public_html USER:nobody 0750. The tenant is /home/USER,",
            "so every directory directly in a home is guarded (addon domains included).",
            "Other home partitions (/home2, /home3): copy the line with that prefix.",
        ],
        roots: &["{P}/home/{*}/*"],
        php: &[
            ("ea-phpNN-php-fpm (per-user pools)", true, EUID_NOTE),
            (
                "Apache and nginx serving files",
                true,
                "the tenant rule of this file",
            ),
            ("DSO (mod_php, runs as nobody)", false, SAME_PROC),
            ("suPHP / CGI through suexec", false, NO_ENV),
            (
                "CloudLinux mod_lsapi (lsphp)",
                false,
                "not verified: treat as unprotected",
            ),
        ],
    },
    Layout {
        name: "plesk",
        about: &[
            "Plesk: /var/www/vhosts/DOMAIN/httpdocs; DOMAIN (the subscription's directory) is",
            "owned by the subscription's system user, who is the tenant.",
            "Additional domains of a subscription live in /var/www/vhosts/SUBSCRIPTION/DOMAIN2:",
            "uncomment the second line to guard every directory of a subscription.",
        ],
        roots: &["{P}/var/www/vhosts/*/httpdocs", "#{P}/var/www/vhosts/{*}/*"],
        php: &[
            (
                "PHP-FPM served by nginx or Apache (plesk-phpNN-fpm, per-domain pools)",
                true,
                EUID_NOTE,
            ),
            (
                "Apache and nginx serving files",
                true,
                "the tenant rule of this file",
            ),
            (
                "FastCGI application by Apache (mod_fcgid + suexec)",
                false,
                NO_ENV,
            ),
            (
                "Apache module (mod_php, runs as www-data/apache)",
                false,
                SAME_PROC,
            ),
        ],
    },
    Layout {
        name: "directadmin",
        about: &[
            "DirectAdmin: /home/USER/domains/DOMAIN/public_html (and private_html, often a",
            "symlink to it); ~/public_html is a symlink to the default domain's. The tenant is",
            "/home/USER, marked with {*} because it is not the last '*'.",
        ],
        roots: &[
            "{P}/home/{*}/domains/*/public_html",
            "{P}/home/{*}/domains/*/private_html",
            "{P}/home/*/public_html  # the ~/public_html symlink, when a vhost is served through it",
        ],
        php: &[
            ("php-fpmNN (per-user pools)", true, EUID_NOTE),
            (
                "Apache, nginx, OpenLiteSpeed serving files",
                true,
                "the tenant rule of this file",
            ),
            ("mod_php (runs as the Apache user)", false, SAME_PROC),
            ("suPHP / FastCGI through suexec", false, NO_ENV),
            ("LSPHP", false, "not verified: treat as unprotected"),
        ],
    },
    Layout {
        name: "ispconfig",
        about: &[
            "ISPConfig: /var/www/clients/clientN/webM/web. webM is root:root; only web/ belongs",
            "to the site user (webM), so the tenant is .../webM/web, marked {web}.",
            "/var/www/DOMAIN are symlinks to webM: a vhost served through them is not guarded.",
        ],
        roots: &["{P}/var/www/clients/*/*/{web}"],
        php: &[
            ("PHP-FPM (one pool per site, as the site user)", true, EUID_NOTE),
            (
                "Apache and nginx serving files",
                true,
                "the tenant rule of this file",
            ),
            ("Fast-CGI / CGI through suexec, SuPHP", false, NO_ENV),
            ("Mod-PHP", false, SAME_PROC),
        ],
    },
    Layout {
        name: "hestiacp",
        about: &[
            "HestiaCP: /home/USER/web/DOMAIN/public_html (public_shtml for SSI).",
            "/home/USER/web is root:USER, so the tenant is /home/USER, marked {*}.",
        ],
        roots: &[
            "{P}/home/{*}/web/*/public_html",
            "{P}/home/{*}/web/*/public_shtml",
        ],
        php: &[
            ("PHP-FPM (per-user pools of the web templates)", true, EUID_NOTE),
            (
                "nginx and Apache serving files",
                true,
                "the tenant rule of this file",
            ),
            ("mod_php (Apache templates without FPM)", false, SAME_PROC),
        ],
    },
    Layout {
        name: "virtualmin",
        about: &[
            "Virtualmin: /home/USER/public_html; sub-servers in /home/PARENT/domains/SUB/public_html,",
            "owned by the parent's user, who is the tenant (marked {*}).",
        ],
        roots: &["{P}/home/*/public_html", "{P}/home/{*}/domains/*/public_html"],
        php: &[
            ("PHP-FPM (one pool per virtual server)", true, EUID_NOTE),
            (
                "Apache and nginx serving files",
                true,
                "the tenant rule of this file",
            ),
            ("FCGId / CGI through suexec", false, NO_ENV),
            ("Apache mod_php", false, SAME_PROC),
        ],
    },
];

pub fn names() -> String {
    LAYOUTS.iter().map(|l| l.name).collect::<Vec<_>>().join("|")
}

pub fn find(name: &str) -> Result<&'static Layout, String> {
    LAYOUTS
        .iter()
        .find(|l| l.name == name)
        .ok_or_else(|| format!("--layout: unknown layout '{name}' (expected {})", names()))
}

impl Layout {
    /// The configuration text, every path under `prefix` (`""` for none), in `mode`.
    pub fn config(&self, prefix: &str, mode: toctou_policy::Mode) -> String {
        let mut out = format!(
            "# toctou-guard configuration for {} (toctou-guard init --layout {}).\n",
            self.name, self.name
        );
        for a in self.about {
            out.push_str(&format!("# {a}\n"));
        }
        out.push_str(
            "#\n# Before enforcing: `toctou-guard scan` lists what would be denied; `mode audit` logs\n\
             # denials without refusing: keep it for a day, read `toctou-guard report`, then\n\
             # switch to `mode enforce`.\n",
        );
        out.push_str(&format!("mode {}\n", mode.as_str()));
        out.push_str(
            "# Root-owned shared files (error pages, /usr/share): uncomment to accept them.\n\
             # allow_uid 0\n",
        );
        for r in self.roots {
            let r = r.replace("{P}", prefix);
            match r.strip_prefix('#') {
                Some(rest) => out.push_str(&format!("# root {rest}\n")),
                None => out.push_str(&format!("root {r}\n")),
            }
        }
        out
    }

    /// What it protects, for stderr.
    pub fn handlers(&self) -> String {
        let mut out = format!(
            "toctou-guard: {}: PHP handlers and servers this configuration protects:\n",
            self.name
        );
        for (h, yes, why) in self.php {
            out.push_str(&format!("  {:<4} {h}: {why}\n", if *yes { "yes" } else { "no" }));
        }
        out
    }
}

/// `init --layout X [--mode audit|enforce] [--prefix DIR] [--output FILE [--force]]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let (mut layout, mut prefix, mut output, mut force) = (None, String::new(), None, false);
    // Audit first: a layout that does not fit the box must not deny half its sites on day one.
    let mut mode = toctou_policy::Mode::Audit;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| it.next().cloned().ok_or(format!("{a} needs {what}"));
        match a.as_str() {
            "--layout" => layout = Some(find(&value("a layout")?)?),
            "--prefix" => {
                let p = value("a DIR")?;
                if !p.starts_with('/') {
                    return Err(format!("--prefix: '{p}' is not an absolute path"));
                }
                prefix = p.trim_end_matches('/').to_string();
            }
            "--mode" => {
                let m = value("audit|enforce")?;
                mode = toctou_policy::Mode::from_word(&m)
                    .ok_or(format!("--mode: '{m}' is not audit or enforce"))?;
            }
            "--output" => output = Some(PathBuf::from(value("a FILE")?)),
            "--force" => force = true,
            other => return Err(format!("init: unexpected argument '{other}'")),
        }
    }
    let layout = layout.ok_or(format!("init needs --layout {}", names()))?;
    let text = layout.config(&prefix, mode);
    match output {
        None => print!("{text}"),
        Some(path) => write_config(&path, &text, force)?,
    }
    eprint!("{}", layout.handlers());
    Ok(())
}

/// Write `text` to `path` as root's 0644 file: through a new file beside it and a rename, so
/// that a reader never sees half a configuration.
fn write_config(path: &Path, text: &str, force: bool) -> Result<(), String> {
    if !force && fs::symlink_metadata(path).is_ok() {
        return Err(format!("{}: exists (use --force to replace it)", path.display()));
    }
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().map_or("conf".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let fail = |e: std::io::Error| format!("{}: {e}", tmp.display());
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(fail)?;
    let done = (|| {
        std::os::unix::fs::fchown(&f, Some(0), Some(0))?;
        f.set_permissions(fs::Permissions::from_mode(0o644))?; // whatever the umask
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = done {
        let _ = fs::remove_file(&tmp);
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_parses_and_marks_the_right_tenant() {
        let tenant = |layout: &str, path: &str| {
            let text = find(layout).unwrap().config("/p", toctou_policy::Mode::Enforce);
            let cfg = toctou_policy::Config::parse(&text, Path::new("init.conf")).unwrap();
            let policy = toctou_policy::Policy::new(cfg);
            match policy.classify_clean(path.as_bytes()) {
                Some(toctou_policy::Target::Guarded { tenant_len, .. }) => path[..tenant_len].to_string(),
                other => panic!("{layout}: {path}: {other:?}"),
            }
        };
        assert_eq!(tenant("cpanel", "/p/home/u/public_html/i.php"), "/p/home/u");
        assert_eq!(tenant("cpanel", "/p/home/u/addon.tld/i.php"), "/p/home/u");
        assert_eq!(
            tenant("plesk", "/p/var/www/vhosts/d.tld/httpdocs/i.php"),
            "/p/var/www/vhosts/d.tld"
        );
        assert_eq!(
            tenant("directadmin", "/p/home/u/domains/d.tld/public_html/i"),
            "/p/home/u"
        );
        assert_eq!(tenant("directadmin", "/p/home/u/public_html/i"), "/p/home/u");
        assert_eq!(
            tenant("ispconfig", "/p/var/www/clients/client1/web2/web/i"),
            "/p/var/www/clients/client1/web2/web"
        );
        assert_eq!(
            tenant("hestiacp", "/p/home/u/web/d.tld/public_html/i"),
            "/p/home/u"
        );
        assert_eq!(
            tenant("virtualmin", "/p/home/u/domains/s.tld/public_html/i"),
            "/p/home/u"
        );
        assert_eq!(tenant("virtualmin", "/p/home/u/public_html/i"), "/p/home/u");
        for l in LAYOUTS {
            assert!(
                l.php.iter().any(|p| p.1) && l.php.iter().any(|p| !p.1),
                "{}",
                l.name
            );
            assert!(!l.config("", toctou_policy::Mode::Audit).contains("{P}"));
            // The default is audit (`run` without --mode); --mode enforce says so.
            for mode in [toctou_policy::Mode::Audit, toctou_policy::Mode::Enforce] {
                let cfg = toctou_policy::Config::parse(&l.config("", mode), Path::new("i")).unwrap();
                assert_eq!(cfg.mode, mode, "{}", l.name);
            }
        }
    }
}
