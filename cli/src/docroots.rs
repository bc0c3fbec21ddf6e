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
    /// The virtual host (index into [`Parsed::vhosts`]) it is configured in, if any.
    pub vhost: Option<usize>,
}

/// Who runs a virtual host's code, as one of its directives says (for `import`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSource {
    /// `SuexecUserGroup USER GROUP`: the user name (or `#UID`).
    Suexec(String),
    /// mpm-itk's `AssignUserID USER GROUP`.
    AssignUserId(String),
    /// The FastCGI address it proxies to: `unix:PATH` or `HOST:PORT` (a php-fpm pool's
    /// `listen`).
    Fpm(String),
}

/// One such directive and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserHint {
    pub source: UserSource,
    pub directive: String,
    pub file: PathBuf,
    pub line: usize,
}

/// A `server {}` block / `<VirtualHost>`: its first name and where it starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vhost {
    pub name: String,
    pub file: PathBuf,
    pub line: usize,
    pub users: Vec<UserHint>,
}

/// A server's document roots and virtual hosts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub roots: Vec<DocRoot>,
    pub vhosts: Vec<Vhost>,
    /// Includes not followed (`FILE:LINE: note: ...`), for the operator.
    pub notes: Vec<String>,
}

/// nginx's document roots, from `nginx -T` (with `-c CONF` when given): every file nginx
/// would read, includes expanded, each headed by `# configuration file F:`.
pub fn nginx(conf: Option<&Path>) -> Result<Vec<DocRoot>, String> {
    Ok(nginx_parsed(conf)?.roots)
}

/// [`nginx`]'s document roots with their virtual hosts.
pub fn nginx_parsed(conf: Option<&Path>) -> Result<Parsed, String> {
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
    Ok(parse_nginx(&String::from_utf8_lossy(&out.stdout)))
}

/// `nginx -T`'s output: every statement, ended by `;`, `{` or `}`, with its block nesting.
/// Each file is dumped whole after the file that includes it, so nesting restarts at each
/// `# configuration file F:` header, and a `server {}` anywhere but in an `upstream` is a
/// virtual host. `fastcgi_pass NAME` to an `upstream NAME { server unix:...; }` is resolved
/// to that upstream's first server.
pub fn parse_nginx(dump: &str) -> Parsed {
    let mut st = NginxState::default();
    let mut file = PathBuf::new();
    let (mut line_in_file, mut stmt_line) = (0, 0);
    // The statement's words so far, the word being read, and nginx's tokenizer state:
    // inside quotes, after a `\`.
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let (mut quote, mut escaped) = (None::<char>, false);
    for l in dump.lines() {
        if let Some(f) = l
            .strip_prefix("# configuration file ")
            .and_then(|r| r.strip_suffix(':'))
        {
            // A new file: whatever the last one left open (a cut dump) ends here.
            file = PathBuf::from(f);
            line_in_file = 0;
            st.stack.clear();
            words.clear();
            (word, quote, escaped) = (None, None, false);
            continue;
        }
        line_in_file += 1;
        for c in l.chars() {
            if word.is_none() && words.is_empty() && !c.is_whitespace() {
                stmt_line = line_in_file;
            }
            if escaped {
                escaped = false;
                let w = word.get_or_insert_with(String::new);
                match c {
                    '"' | '\'' | '\\' => w.push(c),
                    't' => w.push('\t'),
                    'r' => w.push('\r'),
                    'n' => w.push('\n'),
                    c => {
                        w.push('\\');
                        w.push(c);
                    }
                }
                continue;
            }
            if c == '\\' {
                escaped = true;
                continue;
            }
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                } else {
                    word.get_or_insert_with(String::new).push(c);
                }
                continue;
            }
            match c {
                // A comment only where a word would start (`root /a#b;` is a path).
                '#' if word.is_none() => break,
                '"' | '\'' if word.is_none() => {
                    quote = Some(c);
                    word = Some(String::new());
                }
                c if c.is_whitespace() => words.extend(word.take()),
                ';' | '{' | '}' => {
                    words.extend(word.take());
                    st.statement(&words, c, &file, stmt_line);
                    words.clear();
                }
                c => word.get_or_insert_with(String::new).push(c),
            }
        }
        // A line break: inside quotes it is part of the word; else it ends one.
        escaped = false;
        match quote {
            Some(_) => word.get_or_insert_with(String::new).push('\n'),
            None => words.extend(word.take()),
        }
    }
    let mut p = st.p;
    for h in p.vhosts.iter_mut().flat_map(|v| v.users.iter_mut()) {
        if let UserSource::Fpm(addr) = &mut h.source
            && let Some((name, server)) = st.upstreams.iter().find(|(n, _)| n == addr)
        {
            h.directive = format!("{} {name} -> upstream server", h.directive);
            *addr = server.clone();
        }
    }
    p
}

/// What [`parse_nginx`] has read so far.
#[derive(Default)]
struct NginxState {
    p: Parsed,
    /// Open blocks: their first word and argument, and the vhost a `server` block is.
    stack: Vec<(String, String, Option<usize>)>,
    /// `upstream NAME { server ADDR; }`: (NAME, first ADDR).
    upstreams: Vec<(String, String)>,
}

impl NginxState {
    /// One statement (its words, unquoted), ended by `end` (`;`, `{` or `}`).
    fn statement(&mut self, words: &[String], end: char, file: &Path, line: usize) {
        let p = &mut self.p;
        let vhost = self.stack.iter().rev().find_map(|b| b.2);
        let first = words.first().map_or("", String::as_str);
        let arg = words.get(1).map_or("", String::as_str);
        match end {
            '{' => {
                let in_upstream = self.stack.last().is_some_and(|b| b.0 == "upstream");
                let v = (first == "server" && !in_upstream).then(|| {
                    p.vhosts.push(Vhost {
                        file: file.to_path_buf(),
                        line,
                        ..Vhost::default()
                    });
                    p.vhosts.len() - 1
                });
                self.stack.push((first.to_string(), arg.to_string(), v));
            }
            '}' => {
                self.stack.pop();
            }
            _ => match (first, self.stack.last()) {
                ("root" | "alias", _) if !arg.is_empty() => p.roots.push(DocRoot {
                    directive: first.to_string(),
                    path: arg.to_string(),
                    file: file.to_path_buf(),
                    line,
                    vhost,
                }),
                ("server", Some((up, name, _))) if up == "upstream" => {
                    self.upstreams.push((name.clone(), arg.to_string()))
                }
                ("server_name", _) => {
                    if let Some(v) = vhost.map(|v| &mut p.vhosts[v])
                        && v.name.is_empty()
                    {
                        v.name = arg.to_string();
                    }
                }
                ("fastcgi_pass", _) if !arg.is_empty() => {
                    if let Some(v) = vhost {
                        p.vhosts[v].users.push(UserHint {
                            source: UserSource::Fpm(arg.to_string()),
                            directive: first.to_string(),
                            file: file.to_path_buf(),
                            line,
                        });
                    }
                }
                _ => {}
            },
        }
    }
}

/// The FastCGI address in an Apache handler or proxy target:
/// `proxy:unix:/run/php/x.sock|fcgi://localhost` → `unix:/run/php/x.sock`,
/// `proxy:fcgi://127.0.0.1:9000/` → `127.0.0.1:9000`.
fn fcgi_address(arg: &str) -> Option<String> {
    if let Some(i) = arg.find("unix:") {
        let path = arg[i + 5..].split('|').next()?;
        return Some(format!("unix:{path}"));
    }
    let rest = &arg[arg.find("fcgi://")? + 7..];
    Some(rest.split('/').next()?.to_string())
}

/// `apache2ctl -t -D DUMP_VHOSTS`: the virtual hosts Apache really loaded, each
/// `NAME (FILE:LINE)`, as `(name, file, line)`, once each.
pub fn parse_dump_vhosts(text: &str) -> Vec<(String, PathBuf, usize)> {
    let mut out: Vec<(String, PathBuf, usize)> = Vec::new();
    for l in text.lines() {
        let Some((before, at)) = l.trim_end().strip_suffix(')').and_then(|l| l.rsplit_once(" (")) else {
            continue;
        };
        let Some((file, line)) = at.rsplit_once(':') else {
            continue;
        };
        let Ok(line) = line.parse() else { continue };
        let name = before.split_whitespace().last().unwrap_or("").to_string();
        if !out.iter().any(|(_, f, n)| f == Path::new(file) && *n == line) {
            out.push((name, PathBuf::from(file), line));
        }
    }
    out
}

/// An Apache directive's words as `ap_getword_conf` reads them: a word in `"..."` or `'...'`
/// may hold spaces (and its quote as `\"`); `None` for a quote left open.
fn apache_words(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(first) = chars.next() else {
            return Some(out);
        };
        let mut w = String::new();
        if first == '"' || first == '\'' {
            loop {
                match chars.next()? {
                    '\\' if chars.peek() == Some(&first) => w.extend(chars.next()),
                    c if c == first => break,
                    c => w.push(c),
                }
            }
        } else {
            w.push(first);
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                w.push(c);
            }
        }
        out.push(w);
    }
}

/// Apache's document roots: `DocumentRoot`, `Alias`, `AliasMatch`'s target and `UserDir`
/// in `conf` (default `/etc/apache2/apache2.conf`) and every file it `Include`s.
pub fn apache(conf: Option<&Path>) -> Result<Vec<DocRoot>, String> {
    let p = apache_parsed(conf, &[])?;
    for n in &p.notes {
        eprintln!("toctou-guard: {n}");
    }
    Ok(p.roots)
}

/// The default `apache2.conf`, or `conf`.
pub fn apache_conf(conf: Option<&Path>) -> PathBuf {
    conf.map_or_else(|| PathBuf::from("/etc/apache2/apache2.conf"), Path::to_path_buf)
}

/// [`apache`]'s document roots with their `<VirtualHost>` blocks; `also` are files read too
/// (after the includes), such as those `DUMP_VHOSTS` names but an include with a variable
/// (`${APACHE_CONFDIR}`) hid. `<IfModule>`, `<IfDefine>` are not evaluated: every block is
/// read as if its condition held.
pub fn apache_parsed(conf: Option<&Path>, also: &[PathBuf]) -> Result<Parsed, String> {
    let conf = apache_conf(conf);
    let server_root = conf
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let mut out = Parsed::default();
    let mut seen = Vec::new();
    apache_file(&conf, &server_root, &mut out, &mut seen, 0)?;
    for f in also {
        apache_file(f, &server_root, &mut out, &mut seen, 0)?;
    }
    Ok(out)
}

/// Bounded: includes nest at most 16 deep, and each file is read once.
fn apache_file(
    file: &Path,
    server_root: &Path,
    out: &mut Parsed,
    seen: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<(), String> {
    if depth > 16 || seen.iter().any(|s| s == file) {
        return Ok(());
    }
    seen.push(file.to_path_buf());
    let bytes = fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    // A comment in Latin-1 must not cost the whole configuration.
    let text = String::from_utf8_lossy(&bytes);
    // A <VirtualHost> block never spans files: (its index, its line).
    let mut vhost: Option<(usize, usize)> = None;
    let lines: Vec<&str> = text.lines().collect();
    let mut next = 0;
    while next < lines.len() {
        // A line ending in `\` continues on the next (both removed, as Apache does).
        let at = next + 1;
        let mut l = lines[next].trim_end_matches('\r').to_string();
        next += 1;
        while l.ends_with('\\') && next < lines.len() {
            l.pop();
            l.push_str(lines[next].trim_end_matches('\r'));
            next += 1;
        }
        if l.trim_start().starts_with('#') {
            continue;
        }
        let Some(words) = apache_words(&l) else {
            out.notes.push(format!(
                "{}:{at}: warning: unterminated quote: line ignored",
                file.display()
            ));
            continue;
        };
        let Some((d, args)) = words.split_first() else {
            continue;
        };
        let (d, i) = (d.as_str(), at - 1);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let first = args.first().copied().unwrap_or_default();
        let hint = |source| UserHint {
            source,
            directive: d.to_string(),
            file: file.to_path_buf(),
            line: i + 1,
        };
        let in_vhost = vhost.map(|v| v.0);
        let path = match d.to_ascii_lowercase().as_str() {
            "include" | "includeoptional" => {
                // A variable cannot be expanded here (`import` finds such vhosts through
                // DUMP_VHOSTS); an optional include may match nothing.
                if first.contains("${") {
                    out.notes.push(format!(
                        "{}:{}: note: {d} {first} is not followed (a variable): the document roots it holds are not read",
                        file.display(),
                        i + 1
                    ));
                    continue;
                }
                for f in glob(&server_root.join(first)) {
                    if d.eq_ignore_ascii_case("includeoptional") && !f.exists() {
                        continue;
                    }
                    apache_file(&f, server_root, out, seen, depth + 1)?;
                }
                continue;
            }
            "<virtualhost" => {
                if let Some((_, open)) = vhost {
                    out.notes.push(format!(
                        "{}:{open}: warning: <VirtualHost> not closed before the one at line {}",
                        file.display(),
                        i + 1
                    ));
                }
                out.vhosts.push(Vhost {
                    file: file.to_path_buf(),
                    line: i + 1,
                    ..Vhost::default()
                });
                vhost = Some((out.vhosts.len() - 1, i + 1));
                continue;
            }
            "</virtualhost>" => {
                if vhost.take().is_none() {
                    out.notes.push(format!(
                        "{}:{}: warning: </VirtualHost> without <VirtualHost>: ignored",
                        file.display(),
                        i + 1
                    ));
                }
                continue;
            }
            "servername" => {
                if let Some(v) = in_vhost {
                    out.vhosts[v].name = first.to_string();
                }
                continue;
            }
            "suexecusergroup" | "assignuserid" => {
                if let (Some(v), false) = (in_vhost, first.is_empty()) {
                    let source = if d.eq_ignore_ascii_case("assignuserid") {
                        UserSource::AssignUserId(first.to_string())
                    } else {
                        UserSource::Suexec(first.to_string())
                    };
                    out.vhosts[v].users.push(hint(source));
                }
                continue;
            }
            "sethandler" | "proxypass" | "proxypassmatch" => {
                if let Some(v) = in_vhost
                    && let Some(addr) = args.iter().find_map(|a| fcgi_address(a))
                {
                    out.vhosts[v].users.push(hint(UserSource::Fpm(addr)));
                }
                continue;
            }
            "documentroot" | "userdir" => args.first().copied(),
            "alias" | "aliasmatch" | "scriptalias" => args.get(1).copied(),
            _ => None,
        };
        if let Some(p) = path {
            out.roots.push(DocRoot {
                directive: d.to_string(),
                path: p.to_string(),
                file: file.to_path_buf(),
                line: i + 1,
                vhost: in_vhost,
            });
        }
    }
    if let Some((_, line)) = vhost {
        out.notes.push(format!(
            "{}:{line}: warning: <VirtualHost> not closed at the end of the file",
            file.display()
        ));
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
        let r = parse_nginx(dump).roots;
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!((r[0].path.as_str(), r[0].line), ("/var/www/html", 2));
        assert_eq!(r[0].file, PathBuf::from("/etc/nginx/nginx.conf"));
        assert_eq!(
            (r[1].directive.as_str(), r[1].path.as_str(), r[1].line),
            ("alias", "/srv/s/", 2)
        );
    }

    #[test]
    fn nginx_vhosts_with_fastcgi_and_upstreams() {
        let dump = "# configuration file /n/nginx.conf:\nhttp {\n  upstream php_b { server unix:/run/b.sock; }\n  \
                    include /n/sites/*;\n}\n# configuration file /n/sites/a:\nserver {\n  server_name a.test www.a.test;\n  \
                    root /srv/a;\n  location ~ \\.php$ {\n    fastcgi_pass\n      unix:/run/a.sock;\n  }\n}\n\
                    server { server_name b.test; root /srv/b; location / { fastcgi_pass php_b; } }\n";
        let p = parse_nginx(dump);
        assert_eq!(p.vhosts.len(), 2, "{p:#?}");
        assert_eq!((p.vhosts[0].name.as_str(), p.vhosts[0].line), ("a.test", 1));
        assert_eq!(
            p.vhosts[0].users[0].source,
            UserSource::Fpm("unix:/run/a.sock".into())
        );
        assert_eq!(
            p.vhosts[0].users[0].line, 5,
            "a statement's line is where it starts"
        );
        assert_eq!(
            p.vhosts[1].users[0].source,
            UserSource::Fpm("unix:/run/b.sock".into())
        );
        let r: Vec<_> = p
            .roots
            .iter()
            .map(|r| (r.path.as_str(), r.vhost, r.line))
            .collect();
        assert_eq!(r, [("/srv/a", Some(0), 3), ("/srv/b", Some(1), 9)]);
    }

    #[test]
    fn apache_handlers_and_dump_vhosts() {
        assert_eq!(
            fcgi_address("proxy:unix:/run/php/x.sock|fcgi://localhost").as_deref(),
            Some("unix:/run/php/x.sock")
        );
        assert_eq!(
            fcgi_address("proxy:fcgi://127.0.0.1:9000/").as_deref(),
            Some("127.0.0.1:9000")
        );
        assert_eq!(fcgi_address("application/x-httpd-php"), None);
        let dump = "VirtualHost configuration:\n*:80                   is a NameVirtualHost\n         \
                    default server a.test (/e/sites/a.conf:1)\n         port 80 namevhost a.test (/e/sites/a.conf:1)\n\
                    \x20                alias www.a.test\n127.0.0.1:8081         b.test (/e/b.conf:3)\n";
        assert_eq!(
            parse_dump_vhosts(dump),
            [
                ("a.test".to_string(), PathBuf::from("/e/sites/a.conf"), 1),
                ("b.test".to_string(), PathBuf::from("/e/b.conf"), 3)
            ]
        );
    }

    #[test]
    fn apache_includes_with_variables_are_noted_missing_optional_ones_skipped() {
        let d = std::env::temp_dir().join(format!("tg-docroots-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let conf = d.join("apache2.conf");
        fs::write(
            &conf,
            "Include ${APACHE_CONFDIR}/x.conf\nIncludeOptional missing.conf\n<VirtualHost *:80>\n\
             DocumentRoot /srv/a\nSuexecUserGroup a a\n</VirtualHost>\n",
        )
        .unwrap();
        let p = apache_parsed(Some(&conf), &[]);
        let _ = fs::remove_dir_all(&d);
        let p = p.unwrap();
        assert_eq!(p.notes.len(), 1, "{p:#?}");
        assert!(p.notes[0].starts_with(&format!(
            "{}:1: note: Include ${{APACHE_CONFDIR}}/x.conf",
            conf.display()
        )));
        assert_eq!((p.roots.len(), p.roots[0].vhost), (1, Some(0)));
        assert_eq!(p.vhosts[0].users[0].source, UserSource::Suexec("a".into()));
    }

    /// Quotes keep spaces, `#`, `;` and braces; `#` starts a comment only at a word's start.
    #[test]
    fn nginx_quotes_and_comments() {
        let dump = "# configuration file /n/a:\nserver {\n  server_name \"q.test\"; # a { comment }\n  \
                    root \"/srv/my site\";\n  location /h { root /srv/a#b; }\n  \
                    location /s { alias '/srv/x;y{z}'; }\n  location /e { root \"/srv/e\\\"q\"; }\n}\n\
                    # configuration file /n/cut:\nserver { root /srv/t";
        let p = parse_nginx(dump);
        let r: Vec<_> = p.roots.iter().map(|r| (r.path.as_str(), r.line)).collect();
        assert_eq!(
            r,
            [
                ("/srv/my site", 3),
                ("/srv/a#b", 4),
                ("/srv/x;y{z}", 5),
                ("/srv/e\"q", 6)
            ],
            "{p:#?}"
        );
        assert_eq!((p.vhosts.len(), p.vhosts[0].name.as_str()), (2, "q.test"));
    }

    /// Odd Apache syntax: quoted paths with spaces, a continued line, a comment, a quote or a
    /// `<VirtualHost>` left open, a stray close, bytes that are not UTF-8: `FILE:LINE:`
    /// warnings, never a wrong path or a failure.
    #[test]
    fn apache_quotes_continuations_and_unterminated_blocks() {
        let d = std::env::temp_dir().join(format!("tg-docroots-odd-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let conf = d.join("apache2.conf");
        let mut text = b"<VirtualHost *:80>\n  ServerName \"sp.test\"\n  DocumentRoot \"/srv/my site\"\n  \
                        # DocumentRoot /commented \xff\n  Alias /x \"/srv/x \\\"y\\\"/\"\n  DocumentRoot /srv/cont\\\n\
                        inued\n</VirtualHost>\n</VirtualHost>\n<VirtualHost *:81>\n  DocumentRoot \"/srv/unterminated\n  \
                        DocumentRoot /srv/open\n"
            .to_vec();
        text.extend_from_slice(b"  SuexecUserGroup \"u\" g\n");
        fs::write(&conf, text).unwrap();
        let p = apache_parsed(Some(&conf), &[]);
        let _ = fs::remove_dir_all(&d);
        let p = p.unwrap();
        let r: Vec<_> = p
            .roots
            .iter()
            .map(|r| (r.path.as_str(), r.line, r.vhost))
            .collect();
        assert_eq!(
            r,
            [
                ("/srv/my site", 3, Some(0)),
                ("/srv/x \"y\"/", 5, Some(0)),
                ("/srv/continued", 6, Some(0)),
                ("/srv/open", 12, Some(1)),
            ],
            "{p:#?}"
        );
        assert_eq!(p.vhosts[0].name, "sp.test");
        assert_eq!(p.vhosts[1].users[0].source, UserSource::Suexec("u".into()));
        let c = conf.display();
        assert_eq!(
            p.notes,
            [
                format!("{c}:9: warning: </VirtualHost> without <VirtualHost>: ignored"),
                format!("{c}:11: warning: unterminated quote: line ignored"),
                format!("{c}:10: warning: <VirtualHost> not closed at the end of the file"),
            ],
            "{p:#?}"
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard(b"*.conf", b"000-default.conf"));
        assert!(!wildcard(b"*.conf", b"default.conf.bak"));
        assert!(wildcard(b"a?c", b"abc"));
    }
}
