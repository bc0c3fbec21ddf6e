//! `toctou-guard import apache|nginx`: a `map DOCROOT UID` line for each document root of
//! the server's virtual hosts, with the owner the rule should expect: the vhost's
//! `AssignUserID` (mpm-itk: the worker itself runs as it), else its `SuexecUserGroup`, else
//! the `user` of the php-fpm pool whose `listen` is the address it passes PHP to. Where none
//! is known it says so, commented, with the document root's owner today as a suggestion.
//!
//! The output is a configuration fragment (comments and `map` lines) to append to the
//! configuration after review. Document roots the current configuration does not cover are
//! warned of on stderr (`docroots::warnings`, as `check --nginx/--apache` does).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use toctou_policy::Policy;

use crate::docroots::{self, Parsed, UserSource, Vhost};
use crate::load;
use crate::php::{self, PoolUser};

const USAGE: &str =
    "usage: toctou-guard import apache|nginx [--conf FILE] [--config CONFIG] [--fpm-conf DIR]";

/// A user name (or `#UID` / `UID`) as a uid, by `getpwnam`.
fn uid_of(user: &str) -> Result<u32, String> {
    let digits = user.strip_prefix('#').unwrap_or(user);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return digits
            .parse()
            .map_err(|_| format!("uid {digits} is out of range"));
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(format!("no user '{user}' (getpwnam)")),
        Err(e) => Err(format!("getpwnam({user}): {e}")),
    }
}

/// Does a pool listening on `listen` answer FastCGI sent to `addr`?
fn listens_on(listen: &str, addr: &str) -> bool {
    match addr.strip_prefix("unix:") {
        Some(path) => Path::new(listen) == Path::new(path),
        // `listen = 9000` is every address on that port.
        None => listen == addr || addr.rsplit_once(':').is_some_and(|(_, port)| port == listen),
    }
}

/// The expected owner of `v`'s document roots and why, or why none is known.
fn owner(v: &Vhost, pools: &[PoolUser]) -> Result<(u32, String), Vec<String>> {
    let mut found: Vec<(u32, String)> = Vec::new();
    let mut problems = Vec::new();
    // mpm-itk's user first: the worker that opens the files runs as it.
    let rank = |s: &UserSource| match s {
        UserSource::AssignUserId(_) => 0,
        UserSource::Suexec(_) => 1,
        UserSource::Fpm(_) => 2,
    };
    let mut hints: Vec<_> = v.users.iter().collect();
    hints.sort_by_key(|h| rank(&h.source));
    for h in hints {
        let at = format!("{}:{}", h.file.display(), h.line);
        let r = match &h.source {
            UserSource::AssignUserId(u) | UserSource::Suexec(u) => {
                uid_of(u).map(|uid| (uid, format!("{} {u} at {at}", h.directive)))
            }
            UserSource::Fpm(addr) => match pools.iter().find(|p| listens_on(&p.listen, addr)) {
                None => Err(format!("no php-fpm pool listens on {addr}")),
                Some(p) => match &p.user {
                    None => Err(format!(
                        "php-fpm pool [{}] ({}) sets no user",
                        p.name, p.listen_at
                    )),
                    Some((u, uat)) => uid_of(u).map(|uid| {
                        (
                            uid,
                            format!(
                                "{} {addr} at {at} -> php-fpm pool [{}] listen at {}, user {u} at {uat}",
                                h.directive, p.name, p.listen_at
                            ),
                        )
                    }),
                },
            },
        };
        match r {
            Ok(f) => found.push(f),
            Err(e) => problems.push(format!("{} at {at}: {e}", h.directive)),
        }
    }
    let Some(first) = found.first().cloned() else {
        return Err(problems);
    };
    for (uid, why) in &found[1..] {
        if *uid != first.0 {
            eprintln!(
                "toctou-guard: {}:{}: warning: vhost {} names two owners: uid {} ({}) and uid {uid} ({why}); \
                 the first is used",
                v.file.display(),
                v.line,
                show_name(v),
                first.0,
                first.1
            );
        }
    }
    Ok(first)
}

fn show_name(v: &Vhost) -> &str {
    if v.name.is_empty() { "(unnamed)" } else { &v.name }
}

/// The configuration fragment for `parsed` (`what`: where it was read from).
pub fn fragment(parsed: &Parsed, pools: &[PoolUser], what: &str) -> String {
    let mut body = String::new();
    let mut maps: BTreeMap<String, (u32, String)> = BTreeMap::new();
    let mut vhosts_seen = std::collections::BTreeSet::new();
    for r in &parsed.roots {
        let at = format!("{}:{}", r.file.display(), r.line);
        let v = r.vhost.map(|i| &parsed.vhosts[i]);
        let vhost = match v {
            Some(v) => {
                vhosts_seen.insert((v.file.clone(), v.line));
                format!("vhost {} ({}:{})", show_name(v), v.file.display(), v.line)
            }
            None => "the main server (no virtual host)".to_string(),
        };
        let head = format!("# {vhost}: {} {} at {at}", r.directive, r.path);
        if !matches!(r.directive.to_ascii_lowercase().as_str(), "root" | "documentroot") {
            body.push_str(&format!(
                "{head}: not mapped (an alias may name shared files; add a map by hand if it is the tenant's)\n"
            ));
            continue;
        }
        if r.path.contains('$') || !r.path.starts_with('/') {
            body.push_str(&format!("{head}: not mapped (variables or a relative path)\n"));
            continue;
        }
        let path = r.path.trim_end_matches('/');
        let path = if path.is_empty() { "/" } else { path };
        let known = v.map_or_else(|| Err(Vec::new()), |v| owner(v, pools));
        let (uid, why) = match known {
            Ok(k) => k,
            Err(problems) => {
                let why = if problems.is_empty() {
                    "no SuexecUserGroup, AssignUserID or php-fpm pool user".to_string()
                } else {
                    problems.join("; ")
                };
                let now = std::fs::metadata(path).map(|m| m.uid());
                match now {
                    Ok(o) => body.push_str(&format!(
                        "{head}: no owner known ({why}); {path} is owned by uid {o} now, so perhaps:\n# map {path} {o}\n"
                    )),
                    Err(e) => body.push_str(&format!("{head}: no owner known ({why}); {path}: {e}\n")),
                }
                continue;
            }
        };
        body.push_str(&format!("{head}; owner from {why}\n"));
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            let real =
                std::fs::canonicalize(path).map_or_else(|e| e.to_string(), |p| p.display().to_string());
            body.push_str(&format!(
                "# {path} is a symlink to {real}: the guard sees the path the server passes, so the map names {path}\n"
            ));
        }
        match maps.get(path) {
            Some((u, _)) if *u == uid => body.push_str("# (mapped above)\n"),
            Some((u, first)) => {
                eprintln!(
                    "toctou-guard: {at}: warning: {path} is served as uid {uid} here and as uid {u} at {first}: \
                     only the first is mapped"
                );
                body.push_str(&format!("# map {path} {uid}   (conflicts with the map above)\n"));
            }
            None => {
                body.push_str(&format!("map {path} {uid}\n"));
                maps.insert(path.to_string(), (uid, at));
            }
        }
    }
    format!(
        "# toctou-guard import: {} map line(s) for {} document root(s) in {} virtual host(s), from {what}\n{body}",
        maps.len(),
        parsed.roots.len(),
        vhosts_seen.len()
    )
}

/// Apache's vhosts as `apache2ctl -t -D DUMP_VHOSTS` lists them, read from the files it
/// names; `None` (with a note) when apache2ctl is missing or fails: every vhost in the files.
fn apache(conf: Option<&Path>) -> Result<(Parsed, String), String> {
    let main = docroots::apache_conf(conf);
    let mut cmd = Command::new("apache2ctl");
    if conf.is_some() {
        cmd.arg("-f").arg(&main);
    }
    cmd.args(["-t", "-D", "DUMP_VHOSTS"]);
    let dump = match cmd.output() {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => {
            eprintln!(
                "toctou-guard: warning: apache2ctl -t -D DUMP_VHOSTS failed ({}): reading every <VirtualHost> in the files",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("toctou-guard: warning: apache2ctl: {e}: reading every <VirtualHost> in the files");
            None
        }
    };
    let Some(dump) = dump else {
        let p = docroots::apache_parsed(conf, &[])?;
        for n in &p.notes {
            eprintln!("toctou-guard: {n}");
        }
        return Ok((p, format!("{} and its includes", main.display())));
    };
    let listed = docroots::parse_dump_vhosts(&dump);
    let files: Vec<PathBuf> = listed.iter().map(|(_, f, _)| f.clone()).collect();
    let mut p = docroots::apache_parsed(conf, &files)?;
    // Apache's own answer: only the vhosts it loaded (an <IfDefine> that is false, a file
    // no include reaches, are not served).
    let mut keep = vec![false; p.vhosts.len()];
    for (i, v) in p.vhosts.iter_mut().enumerate() {
        if let Some((name, _, _)) = listed.iter().find(|(_, f, l)| *f == v.file && *l == v.line) {
            keep[i] = true;
            if v.name.is_empty() {
                v.name = name.clone();
            }
        } else {
            eprintln!(
                "toctou-guard: {}:{}: note: this <VirtualHost> is not in apache2ctl -D DUMP_VHOSTS (Apache does not load it): skipped",
                v.file.display(),
                v.line
            );
        }
    }
    p.roots.retain(|r| r.vhost.is_none_or(|i| keep[i]));
    Ok((
        p,
        format!(
            "`apache2ctl -t -D DUMP_VHOSTS` and {} with its includes",
            main.display()
        ),
    ))
}

pub fn run(args: &[String]) -> Result<(), String> {
    let server = args.first().map(String::as_str);
    let (mut conf, mut config, mut fpm) = (None, None, None);
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .map(PathBuf::from)
                .ok_or(format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--conf" => conf = Some(value()?),
            "--config" => config = Some(value()?),
            "--fpm-conf" => fpm = Some(value()?),
            other => return Err(format!("unexpected argument '{other}'\n{USAGE}")),
        }
    }
    let (parsed, what) = match server {
        Some("nginx") => (
            docroots::nginx_parsed(conf.as_deref())?,
            match &conf {
                Some(c) => format!("`nginx -T -c {}`", c.display()),
                None => "`nginx -T`".into(),
            },
        ),
        Some("apache") => apache(conf.as_deref())?,
        _ => return Err(USAGE.into()),
    };
    let pools = php::pool_users(fpm.as_deref())?;
    // The operator's configuration, if there is one, says which document roots are guarded.
    let config_path = config.clone().unwrap_or_else(load::default_path);
    if config.is_some() || config_path.exists() {
        let cfg = load::load(&config_path).map_err(|e| load::describe(&e))?;
        for w in docroots::warnings(&Policy::new(cfg), &parsed.roots) {
            eprintln!("toctou-guard: {w}");
        }
    } else {
        eprintln!(
            "toctou-guard: note: no configuration at {}: document roots are not checked against one (--config CONFIG)",
            config_path.display()
        );
    }
    print!("{}", fragment(&parsed, &pools, &what));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_by_priority_and_pool_sockets() {
        let p = docroots::parse_nginx(
            "# configuration file /n/a:\nserver { server_name a; root /nonexistent/a; fastcgi_pass unix:/run/a.sock; }\n\
             server { server_name b; root /nonexistent/b; fastcgi_pass 127.0.0.1:9000; }\n\
             server { server_name c; root /nonexistent/c; fastcgi_pass unix:/run/none.sock; }\n\
             server { server_name d; root /nonexistent/a/; location /x/ { alias /srv/x/; } }\n",
        );
        let pools = [
            PoolUser {
                name: "a".into(),
                listen: "/run/a.sock".into(),
                listen_at: "/p/a.conf:2".into(),
                user: Some(("#4242".into(), "/p/a.conf:3".into())),
            },
            PoolUser {
                name: "b".into(),
                listen: "9000".into(),
                listen_at: "/p/b.conf:2".into(),
                user: Some(("root".into(), "/p/b.conf:3".into())),
            },
        ];
        let f = fragment(&p, &pools, "test");
        let maps: Vec<&str> = f.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(maps, ["map /nonexistent/a 4242", "map /nonexistent/b 0"], "{f}");
        assert!(
            f.contains("no php-fpm pool listens on unix:/run/none.sock"),
            "{f}"
        );
        assert!(f.contains("alias /srv/x/ at /n/a:4: not mapped"), "{f}");
        assert!(
            f.starts_with("# toctou-guard import: 2 map line(s) for 5 document root(s) in 4 virtual host(s)"),
            "{f}"
        );
        assert_eq!(uid_of("root"), Ok(0));
        assert!(uid_of("no-such-user-tg").is_err());
    }
}
