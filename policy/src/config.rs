//! The configuration file: one directive per line, `#` comments.
//!
//! ```text
//! mode enforce                    # or: audit (log would-be denials, allow them)
//! root /home/*/public_html        # '*' is the tenant; its owner is the expected owner
//! root /home/{*}/domains/*/public_html   # '{...}' marks the tenant when it is not the last '*'
//! map /srv/www/shop 1005          # a fixed expected owner for a tree
//! owner euid                      # or: tenant (default) - expected owner = process euid
//! allow_uid 0                     # owners accepted everywhere
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};
use crate::pattern::RootPattern;

/// Enforce the rule, or only report what it would deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Audit,
}

impl Mode {
    /// The mode a log line's word names (the inverse of [`Mode::as_str`]).
    pub fn from_word(word: &str) -> Option<Mode> {
        [Mode::Enforce, Mode::Audit]
            .into_iter()
            .find(|m| m.as_str() == word)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

/// Where the expected owner comes from for paths under a `root`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerRule {
    /// The owner of the tenant directory (the `*` component), read without following symlinks.
    Tenant,
    /// The process's effective uid at the time of the open (one worker uid per tenant).
    Euid,
}

/// One guarded tree: a `root` pattern, or a `map` with its fixed owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootEntry {
    pub pattern: RootPattern,
    /// `Some` for `map PATH UID`.
    pub fixed_uid: Option<u32>,
    /// Line of the configuration it came from (0 when built in code).
    pub line: usize,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from, for messages.
    pub source: PathBuf,
    pub mode: Mode,
    pub owner: OwnerRule,
    /// `map` entries first (they win at equal depth), then `root` entries, in file order.
    pub roots: Vec<RootEntry>,
    pub allow_uids: Vec<u32>,
    /// If not empty, only programs whose name matches one of these are guarded
    /// (for `/etc/ld.so.preload` deployments). A trailing `*` matches a prefix.
    pub programs: Vec<String>,
    /// Datagram socket of the syslog daemon.
    pub log_socket: PathBuf,
    /// Denial log lines per second per process; the rest are counted and summarised.
    pub log_rate: u32,
    /// How long a tenant's owner is cached.
    pub cache_ttl_ms: u32,
    /// Entries in the tenant owner cache (a power of two; rounded up to whole buckets).
    pub cache_slots: usize,
    /// The one effective uid whose processes use an owner cache shared by all the workers a
    /// server's master forks; `None`: every process keeps a private cache.
    pub cache_shared: Option<u32>,
}

pub const DEFAULT_LOG_SOCKET: &str = "/dev/log";

impl Config {
    /// A configuration with no roots and every default; add roots before use.
    pub fn empty(source: &Path) -> Self {
        Config {
            source: source.to_path_buf(),
            mode: Mode::Enforce,
            owner: OwnerRule::Tenant,
            roots: Vec::new(),
            allow_uids: Vec::new(),
            programs: Vec::new(),
            log_socket: PathBuf::from(DEFAULT_LOG_SOCKET),
            log_rate: 20,
            cache_ttl_ms: 1000,
            cache_slots: 32768,
            cache_shared: None,
        }
    }

    /// Parse and validate configuration text read from `source`.
    pub fn parse(text: &str, source: &Path) -> Result<Config, Error> {
        Self::parse_inner(text.as_bytes(), source, true)
    }

    /// [`Self::parse`] for raw file contents: a line that is not UTF-8 is an error there.
    pub fn parse_bytes(text: &[u8], source: &Path) -> Result<Config, Error> {
        Self::parse_inner(text, source, true)
    }

    /// Parse settings for a guard that can also get its trees elsewhere (the FUSE mount:
    /// SOURCE and `--tenant-depth`): `root`/`map` lines are allowed but not required.
    pub fn parse_settings(text: &str, source: &Path) -> Result<Config, Error> {
        Self::parse_inner(text.as_bytes(), source, false)
    }

    /// [`Self::parse_settings`] for raw file contents.
    pub fn parse_settings_bytes(text: &[u8], source: &Path) -> Result<Config, Error> {
        Self::parse_inner(text, source, false)
    }

    /// Add a guarded tree built in code (the FUSE mount's `--tenant-depth` and `--owner`),
    /// checked for duplicates like a configured one.
    pub fn add_root(&mut self, pattern: RootPattern, fixed_uid: Option<u32>) -> Result<(), Error> {
        if let Some(first) = self.roots.iter().find(|r| r.pattern.same_tree(&pattern)) {
            return Err(Error::new(
                ErrorKind::Invalid,
                &self.source,
                Some(first.line),
                "this tree is also given on the command line",
            ));
        }
        let entry = RootEntry {
            pattern,
            fixed_uid,
            line: 0,
        };
        // Maps first: they win at equal depth.
        let at = if fixed_uid.is_some() {
            self.roots.iter().take_while(|r| r.fixed_uid.is_some()).count()
        } else {
            self.roots.len()
        };
        self.roots.insert(at, entry);
        Ok(())
    }

    // Messages quote nothing of a line but its directive word (and that only when it looks
    // like one): a privileged process pointed at a secret file must not print the secret.
    fn parse_inner(text: &[u8], source: &Path, require_roots: bool) -> Result<Config, Error> {
        let mut cfg = Config::empty(source);
        let mut seen_mode = None;
        let mut seen_owner = None;
        let mut maps = Vec::new();
        let mut roots = Vec::new();
        let mut trees: HashMap<String, usize> = HashMap::new();
        for (idx, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = idx + 1;
            let err = |msg: String| Error::new(ErrorKind::Syntax, source, Some(line), msg);
            let raw = std::str::from_utf8(raw).map_err(|_| err("not UTF-8 text".into()))?;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let mut words = content.split_whitespace();
            let directive = words.next().unwrap_or_default();
            let args: Vec<&str> = words.collect();
            let exactly = |n: usize, usage: &str| {
                if args.len() == n {
                    Ok(())
                } else {
                    Err(err(format!("'{directive}' takes {n} argument(s): {usage}")))
                }
            };
            let mut tree = |pattern: &RootPattern| match trees.entry(pattern.key()) {
                std::collections::hash_map::Entry::Occupied(first) => Err(Error::new(
                    ErrorKind::Invalid,
                    source,
                    Some(line),
                    format!(
                        "'{directive}': this tree is already configured on line {}",
                        first.get()
                    ),
                )),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(line);
                    Ok(())
                }
            };
            match directive {
                "mode" => {
                    exactly(1, "mode enforce|audit")?;
                    if let Some(first) = seen_mode {
                        return Err(err(format!("'mode' given twice (first on line {first})")));
                    }
                    seen_mode = Some(line);
                    cfg.mode = match args[0] {
                        "enforce" => Mode::Enforce,
                        "audit" => Mode::Audit,
                        _ => return Err(err("unknown mode (expected enforce or audit)".into())),
                    };
                }
                "owner" => {
                    exactly(1, "owner tenant|euid")?;
                    if let Some(first) = seen_owner {
                        return Err(err(format!("'owner' given twice (first on line {first})")));
                    }
                    seen_owner = Some(line);
                    cfg.owner = match args[0] {
                        "tenant" => OwnerRule::Tenant,
                        "euid" => OwnerRule::Euid,
                        _ => return Err(err("unknown owner rule (expected tenant or euid)".into())),
                    };
                }
                "root" => {
                    exactly(1, "root PATTERN (e.g. root /home/*/public_html)")?;
                    let pattern =
                        RootPattern::parse(args[0], true).map_err(|m| err(format!("'root': {m}")))?;
                    tree(&pattern)?;
                    roots.push(RootEntry {
                        pattern,
                        fixed_uid: None,
                        line,
                    });
                }
                "map" => {
                    exactly(2, "map PATH UID")?;
                    let pattern =
                        RootPattern::parse(args[0], false).map_err(|m| err(format!("'map': {m}")))?;
                    let uid = parse_uid(args[1]).map_err(|m| err(format!("'map': {m}")))?;
                    tree(&pattern)?;
                    maps.push(RootEntry {
                        pattern,
                        fixed_uid: Some(uid),
                        line,
                    });
                }
                "allow_uid" => {
                    if args.is_empty() {
                        return Err(err("'allow_uid' takes one or more UIDs".into()));
                    }
                    for a in &args {
                        cfg.allow_uids
                            .push(parse_uid(a).map_err(|m| err(format!("'allow_uid': {m}")))?);
                    }
                }
                "programs" => {
                    if args.is_empty() {
                        return Err(err("'programs' takes one or more program names".into()));
                    }
                    cfg.programs.extend(args.iter().map(|s| s.to_string()));
                }
                "log_socket" => {
                    exactly(1, "log_socket PATH")?;
                    if !args[0].starts_with('/') {
                        return Err(err("'log_socket': the path is not absolute".into()));
                    }
                    cfg.log_socket = PathBuf::from(args[0]);
                }
                "log_rate" => {
                    exactly(1, "log_rate LINES_PER_SECOND")?;
                    cfg.log_rate =
                        parse_number(args[0], 1, 1_000_000).map_err(|m| err(format!("'log_rate': {m}")))?;
                }
                "cache_ttl_ms" => {
                    exactly(1, "cache_ttl_ms MILLISECONDS")?;
                    cfg.cache_ttl_ms = parse_number(args[0], 0, 3_600_000)
                        .map_err(|m| err(format!("'cache_ttl_ms': {m}")))?;
                }
                "cache_slots" => {
                    exactly(1, "cache_slots N (a power of two)")?;
                    let n =
                        parse_number(args[0], 1, 1 << 24).map_err(|m| err(format!("'cache_slots': {m}")))?;
                    if !n.is_power_of_two() {
                        return Err(err("'cache_slots': the value is not a power of two".into()));
                    }
                    cfg.cache_slots = n as usize;
                }
                "cache_shared" => {
                    exactly(1, "cache_shared off|UID")?;
                    cfg.cache_shared = match args[0] {
                        "off" => None,
                        // `on` named no uid, and the shared table then trusted whatever uid
                        // claimed it first, which its writers could forge: say so.
                        "on" => {
                            return Err(err("'cache_shared': 'on' is gone, name the workers' \
                                 UID (cache_shared UID, from `id -u NAME`) or off"
                                .into()));
                        }
                        a => Some(parse_uid(a).map_err(|m| err(format!("'cache_shared': {m} (or off)")))?),
                    };
                }
                other => {
                    return Err(err(format!(
                        "unknown directive {} (expected one of: mode, root, map, owner, \
                         allow_uid, programs, log_socket, log_rate, cache_ttl_ms, cache_slots, cache_shared)",
                        quote_word(other)
                    )));
                }
            }
        }
        maps.append(&mut roots);
        cfg.roots = maps;
        if cfg.roots.is_empty() && require_roots {
            return Err(Error::new(
                ErrorKind::Invalid,
                source,
                None,
                "no 'root' or 'map' directive: nothing would be guarded",
            ));
        }
        Ok(cfg)
    }

    /// Is the program named `name` (basename of its executable) to be guarded?
    pub fn guards_program(&self, name: &[u8]) -> bool {
        self.programs.is_empty() || self.programs.iter().any(|p| program_matches(p, name))
    }
}

/// Before parsing at all: `Some(false)` when the file's `programs` lines leave the program
/// `name` unguarded, so that a process the filter skips (every `bash`, `cron` and `ssh`
/// under `/etc/ld.so.preload`) never pays for a file of 100,000 `map` lines. `None`: parse
/// it (no `programs` line, a line that is not valid UTF-8 or names nothing, or a match).
pub fn program_left_unguarded(text: &[u8], name: &[u8]) -> Option<bool> {
    let mut listed = false;
    for raw in text.split(|&b| b == b'\n') {
        let line = raw.split(|&b| b == b'#').next().unwrap_or_default();
        let line = std::str::from_utf8(line).ok()?;
        let mut words = line.split_whitespace();
        if words.next() != Some("programs") {
            continue;
        }
        let mut any = false;
        for w in words {
            any = true;
            if program_matches(w, name) {
                return None;
            }
        }
        if !any {
            return None; // an error the parser must report
        }
        listed = true;
    }
    listed.then_some(false)
}

/// Programs refused a start on a broken configuration even when loaded through
/// `/etc/ld.so.preload` without `TOCTOU_GUARD_CONFIG`: the servers the guard exists for
/// (also the processes `toctou-guard status` reports on).
pub const SERVER_PROGRAMS: &[&str] = &[
    "apache2",
    "httpd",
    "nginx",
    "php-fpm*",
    "lsphp*",
    "php-cgi*",
    "lighttpd",
    "lshttpd",
    "litespeed",
    "uwsgi",
];

/// Does the program `name` match `pattern` (a name, or a prefix ending in `*`)?
pub fn program_matches(pattern: &str, name: &[u8]) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix.as_bytes()),
        None => name == pattern.as_bytes(),
    }
}

/// A word of the file, quoted only if it looks like a directive (letters, digits, `_`).
fn quote_word(w: &str) -> String {
    if w.len() <= 32 && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        format!("'{w}'")
    } else {
        "(not shown: not a directive word)".into()
    }
}

fn parse_uid(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(u) if u != u32::MAX => Ok(u),
        _ => Err("a UID is not numeric (use `id -u NAME` to find it)".into()),
    }
}

fn parse_number(s: &str, min: u32, max: u32) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("the value is not a number between {min} and {max}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn programs_decided_before_parsing() {
        use super::program_left_unguarded as skip;
        let text = b"root /home/*/public_html\nprograms nginx php-fpm* # servers\nmap /x 5\n";
        assert_eq!(skip(text, b"bash"), Some(false));
        assert_eq!(skip(text, b"nginx"), None);
        assert_eq!(skip(text, b"php-fpm8.2"), None);
        assert_eq!(
            skip(b"root /x\n", b"bash"),
            None,
            "no programs line: everything is guarded"
        );
        assert_eq!(skip(b"root /x\nprograms\n", b"bash"), None, "an error to report");
        assert_eq!(skip(b"root /x\n# programs nginx\n", b"bash"), None, "a comment");
        // The prescan and the parser agree.
        let cfg =
            super::Config::parse(std::str::from_utf8(text).unwrap(), std::path::Path::new("t")).unwrap();
        assert!(!cfg.guards_program(b"bash") && cfg.guards_program(b"nginx"));
    }

    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, Path::new("/etc/toctou-guard.conf"))
    }

    #[test]
    fn full_config() {
        let c = parse(
            "# comment\nmode audit\nroot /home/*/public_html # trailing\n\nmap /srv/shop 1005\n\
             owner euid\nallow_uid 0 33\nprograms nginx php-fpm*\nlog_socket /run/x.sock\n\
             log_rate 5\ncache_ttl_ms 200\ncache_slots 1024\ncache_shared off\n",
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Audit);
        assert_eq!(c.owner, OwnerRule::Euid);
        assert_eq!(c.roots.len(), 2);
        assert_eq!(c.roots[0].fixed_uid, Some(1005), "maps come first");
        assert_eq!(c.roots[1].pattern.as_str(), "/home/*/public_html");
        assert_eq!(c.roots[1].line, 3);
        assert_eq!(c.allow_uids, vec![0, 33]);
        assert!(c.guards_program(b"php-fpm8.2"));
        assert!(c.guards_program(b"nginx"));
        assert!(!c.guards_program(b"bash"));
        assert_eq!(c.log_socket, Path::new("/run/x.sock"));
        assert_eq!((c.log_rate, c.cache_ttl_ms, c.cache_slots), (5, 200, 1024));
        assert_eq!(c.cache_shared, None);
        assert_eq!(
            parse("root /a/*\n").unwrap().cache_shared,
            None,
            "private by default"
        );
        assert_eq!(
            parse("root /a/*\ncache_shared 33\n").unwrap().cache_shared,
            Some(33)
        );
    }

    #[test]
    fn defaults() {
        let c = parse("root /home/*/public_html\n").unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.owner, OwnerRule::Tenant);
        assert!(
            c.allow_uids.is_empty(),
            "no owner is accepted everywhere by default"
        );
        assert!(c.guards_program(b"anything"));
    }

    fn err_at(text: &str) -> (usize, String) {
        let e = parse(text).unwrap_err();
        assert_eq!(e.file(), Path::new("/etc/toctou-guard.conf"));
        (e.line().unwrap_or(0), e.to_string())
    }

    #[test]
    fn errors_name_file_and_line() {
        let (line, msg) = err_at("root /home/*/public_html\n\nrooot /x\n");
        assert_eq!(line, 3);
        assert!(
            msg.starts_with("/etc/toctou-guard.conf:3: unknown directive 'rooot'"),
            "{msg}"
        );
        assert_eq!(err_at("mode enforce\nmode sometimes\n").0, 2);
        assert!(
            err_at("root /a/*\nmode on\n")
                .1
                .contains(":2: unknown mode (expected")
        );
        assert!(
            err_at("root a/*/b\n")
                .1
                .contains(":1: 'root': the path is not absolute")
        );
        assert!(
            err_at("root /a/*\nmap /b bob\n")
                .1
                .contains(":2: 'map': a UID is not numeric")
        );
        assert!(err_at("root /a/*\nmap /b\n").1.contains("takes 2 argument"));
        assert!(err_at("root /a/*\nallow_uid -1\n").1.contains(":2:"));
        assert!(err_at("root /a/*\ncache_slots 1000\n").1.contains("power of two"));
        assert!(
            err_at("root /a/*\ncache_shared yes\n")
                .1
                .contains(":2: 'cache_shared': a UID is not numeric (use `id -u NAME` to find it) (or off)")
        );
        assert!(
            err_at("root /a/*\ncache_shared on\n")
                .1
                .contains(":2: 'cache_shared': 'on' is gone, name the workers' UID")
        );
        assert!(
            err_at("root /a/*\ncache_shared 33 34\n")
                .1
                .contains("takes 1 argument")
        );
        assert!(
            err_at("root /a/*\nroot /a/*/\n")
                .1
                .contains(":2: 'root': this tree is already configured on line 1")
        );
        assert!(
            err_at("root /a/*\nmap /a/* 5\n")
                .1
                .contains(":2: 'map': '*' is only allowed in 'root'"),
            "a map cannot have a star"
        );
        assert!(
            err_at("root /a/*\nroot /home/{*}/x/{*}\n")
                .1
                .contains(":2: 'root': more than one tenant marker")
        );
        assert!(
            err_at("root /home/{a*}/x\n")
                .1
                .contains(":1: 'root': '*' must be a whole")
        );
        assert!(
            err_at("root /home/{}/x\n")
                .1
                .contains(":1: 'root': an empty tenant marker")
        );
        assert!(
            err_at("root /home/*/x\nroot /home/{*}/x\n")
                .1
                .contains(":2: 'root': this tree is already configured on line 1"),
            "a marker does not make another tree"
        );
        assert!(err_at("mode enforce\nmode audit\n").1.contains("given twice"));
        assert!(err_at("root /a/*\nowner root\n").1.contains("unknown owner rule"));
    }

    #[test]
    fn messages_never_quote_a_secret() {
        // What /etc/shadow would say: nothing after the directive word, and no word that is
        // not a directive word, may appear in the message.
        for text in [
            "root:$y$j9T$secrethash:19000:0:99999:7:::\n",
            "map /srv/x s3cr3t-value\n",
            "root /a/*\nmode s3cr3t-value\n",
            "root /a/*\nlog_rate s3cr3t-value\n",
            "root s3cr3t-value\n",
        ] {
            let msg = parse(text).unwrap_err().to_string();
            assert!(!msg.contains("s3cr3t") && !msg.contains("secrethash"), "{msg}");
        }
        let msg = parse("root /a/*\nnot_a_directive x\n").unwrap_err().to_string();
        assert!(msg.contains("unknown directive 'not_a_directive'"), "{msg}");
    }

    #[test]
    fn duplicates_are_found_in_linear_time() {
        let mut text = String::new();
        for i in 0..100_000 {
            text.push_str(&format!("map /srv/vhosts/site{i}/httpdocs {}\n", 10_000 + i));
        }
        let c = parse(&text).unwrap();
        assert_eq!(c.roots.len(), 100_000);
        text.push_str("map /srv/vhosts/site7/httpdocs/ 1\n");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains(":100001: 'map': this tree is already configured on line 8")
        );
    }

    #[test]
    fn settings_need_no_root() {
        let c = Config::parse_settings("allow_uid 0\nmode audit\n", Path::new("fs.conf")).unwrap();
        assert_eq!((c.allow_uids.as_slice(), c.mode), (&[0][..], Mode::Audit));
        assert!(Config::parse_settings("bogus\n", Path::new("fs.conf")).is_err());
    }

    #[test]
    fn no_root_is_an_error() {
        let e = parse("mode enforce\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.to_string().contains("nothing would be guarded"));
    }
}
