//! `check --nginx [CONF]` / `check --apache [CONF]`: the web server's document roots, each
//! checked against the guard's trees. The shim classifies the path a server *passes*: a
//! document root configured through a path no `root` or `map` pattern matches (a symlinked
//! `~/public_html`, a bind-mounted alias) is served unguarded, silently. This says so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use toctou_policy::{PATH_MAX, Policy, ScratchPath, Target};

/// One document root as the server's configuration states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRoot {
    /// `root`, `alias`, `DocumentRoot`, `Alias`...
    pub directive: String,
    pub path: String,
    pub file: PathBuf,
    pub line: usize,
}

/// nginx's document roots, from `nginx -T` (with `-c CONF` when given): every file nginx
/// would read, includes expanded, each headed by `# configuration file F:`.
pub fn nginx(conf: Option<&Path>) -> Result<Vec<DocRoot>, String> {
    let mut cmd = Command::new("nginx");
    cmd.arg("-T");
    if let Some(c) = conf {
        cmd.arg("-c").arg(c);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("nginx -T: {e} (is nginx installed?)"))?;
    if !out.status.success() {
        return Err(format!(
            "nginx -T failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(parse_nginx_dump(&String::from_utf8_lossy(&out.stdout)))
}

pub fn parse_nginx_dump(dump: &str) -> Vec<DocRoot> {
    let mut file = PathBuf::new();
    let mut line_in_file = 0;
    let mut out = Vec::new();
    for l in dump.lines() {
        if let Some(f) = l
            .strip_prefix("# configuration file ")
            .and_then(|r| r.strip_suffix(':'))
        {
            file = PathBuf::from(f);
            line_in_file = 0;
            continue;
        }
        line_in_file += 1;
        let code = l.split('#').next().unwrap_or("");
        // A statement may follow a `{` on the same line (`location / { root /x; }`).
        for stmt in code.split([';', '{', '}']) {
            let mut words = stmt.split_whitespace();
            let (Some(d @ ("root" | "alias")), Some(p)) = (words.next(), words.next()) else {
                continue;
            };
            out.push(DocRoot {
                directive: d.to_string(),
                path: unquote(p).to_string(),
                file: file.clone(),
                line: line_in_file,
            });
        }
    }
    out
}

fn unquote(s: &str) -> &str {
    s.trim_matches(|c| c == '"' || c == '\'')
}

/// Apache's document roots: `DocumentRoot`, `Alias`, `AliasMatch`'s target and `UserDir`
/// in `conf` (default `/etc/apache2/apache2.conf`) and every file it `Include`s.
pub fn apache(conf: Option<&Path>) -> Result<Vec<DocRoot>, String> {
    let conf = conf.map_or_else(|| PathBuf::from("/etc/apache2/apache2.conf"), Path::to_path_buf);
    let server_root = conf
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let mut out = Vec::new();
    let mut seen = Vec::new();
    apache_file(&conf, &server_root, &mut out, &mut seen, 0)?;
    Ok(out)
}

/// Bounded: includes nest at most 16 deep, and each file is read once.
fn apache_file(
    file: &Path,
    server_root: &Path,
    out: &mut Vec<DocRoot>,
    seen: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<(), String> {
    if depth > 16 || seen.iter().any(|s| s == file) {
        return Ok(());
    }
    seen.push(file.to_path_buf());
    let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    for (i, l) in text.lines().enumerate() {
        let mut words = l.split_whitespace();
        let Some(d) = words.next() else { continue };
        let args: Vec<&str> = words.map(unquote).collect();
        let path = match d.to_ascii_lowercase().as_str() {
            "include" | "includeoptional" => {
                for f in glob(&server_root.join(args.first().copied().unwrap_or_default())) {
                    apache_file(&f, server_root, out, seen, depth + 1)?;
                }
                continue;
            }
            "documentroot" | "userdir" => args.first().copied(),
            "alias" | "aliasmatch" | "scriptalias" => args.get(1).copied(),
            _ => None,
        };
        if let Some(p) = path {
            out.push(DocRoot {
                directive: d.to_string(),
                path: p.to_string(),
                file: file.to_path_buf(),
                line: i + 1,
            });
        }
    }
    Ok(())
}

/// Apache's include patterns: a directory (every file in it), or `*` and `?` in the last
/// component (`sites-enabled/*.conf`); sorted, as Apache reads them.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    if pattern.is_dir() {
        return sorted(
            fs::read_dir(pattern)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        );
    }
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return vec![pattern.to_path_buf()];
    }
    let entries = fs::read_dir(dir).into_iter().flatten().flatten();
    sorted(
        entries
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| wildcard(name.as_bytes(), n.as_bytes()))
            })
            .map(|e| e.path()),
    )
}

fn sorted(it: impl Iterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = it.filter(|p| p.is_file()).collect();
    v.sort();
    v
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Warnings for the document roots the guard does not cover as the server names them.
pub fn warnings(policy: &Policy, roots: &[DocRoot]) -> Vec<String> {
    let mut out = Vec::new();
    for r in roots {
        let at = format!("{}:{}", r.file.display(), r.line);
        if r.path.contains('$') || !r.path.starts_with('/') {
            out.push(format!(
                "{at}: warning: {} {} uses variables or is relative: check by hand that every path it \
                 yields lies under a root",
                r.directive, r.path
            ));
            continue;
        }
        // A file inside it: the document root may itself be the tenant directory.
        let inside = format!("{}/index.html", r.path.trim_end_matches('/'));
        let mut buf = ScratchPath::<PATH_MAX>::root();
        if !matches!(
            policy.classify(None, inside.as_bytes(), &mut buf),
            Target::Outside
        ) {
            continue;
        }
        let real = fs::canonicalize(&r.path).ok();
        let hint = match real.as_deref().and_then(Path::to_str) {
            Some(real) if real != r.path.trim_end_matches('/') => {
                let real_inside = format!("{real}/index.html");
                let mut buf = ScratchPath::<PATH_MAX>::root();
                if matches!(
                    policy.classify(None, real_inside.as_bytes(), &mut buf),
                    Target::Outside
                ) {
                    format!(" (it resolves to {real}, which is not under a root either)")
                } else {
                    format!(
                        " (it resolves to {real}, which is: the guard sees the path the server passes, \
                         so add a root for {})",
                        r.path
                    )
                }
            }
            _ => String::new(),
        };
        out.push(format!(
            "{at}: warning: {} {} is not under any root or map: files served from it are not guarded{hint}",
            r.directive, r.path
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_dump_roots_with_files_and_lines() {
        let dump = "# configuration file /etc/nginx/nginx.conf:\nhttp {\n  root /var/www/html; # x\n}\n\
                    # configuration file /etc/nginx/sites-enabled/a:\nserver {\n  location /s/ { alias \"/srv/s/\"; }\n  # root /commented;\n}\n";
        let r = parse_nginx_dump(dump);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!((r[0].path.as_str(), r[0].line), ("/var/www/html", 2));
        assert_eq!(r[0].file, PathBuf::from("/etc/nginx/nginx.conf"));
        assert_eq!(
            (r[1].directive.as_str(), r[1].path.as_str(), r[1].line),
            ("alias", "/srv/s/", 2)
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard(b"*.conf", b"000-default.conf"));
        assert!(!wildcard(b"*.conf", b"default.conf.bak"));
        assert!(wildcard(b"a?c", b"abc"));
    }
}
