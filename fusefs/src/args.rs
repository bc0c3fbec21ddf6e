//! Command line: `toctou-guard-fs SOURCE MOUNTPOINT [options]`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: toctou-guard-fs SOURCE MOUNTPOINT [options]

Serve SOURCE at MOUNTPOINT; a file under SOURCE/TENANT/... is served only if its owner is
the owner of SOURCE/TENANT (read without following symlinks), or an allow_uid.

options:
  --tenant-depth N      shorthand for 'root SOURCE/*/.../*' (N stars; 0: SOURCE itself is
                        the tenant): tenant directories are N levels below SOURCE
                        (the default, 1, when the configuration has no root/map line)
  --owner UID           shorthand for 'map SOURCE UID': every file must be owned by UID
  --owner caller        the configuration's 'owner euid': every file under a root must be
                        owned by the uid of the process asking (one php-fpm pool per
                        tenant); decided at every lookup, never cached by the kernel
  --config FILE         the guards' configuration, as the shim reads it: root and map
                        lines (matched against the absolute paths in SOURCE), allow_uid,
                        mode enforce|audit, log_socket, log_rate, owner euid (as
                        --owner caller)
  --mode noopen|passthrough
                        noopen (default): decide at lookup, kernel skips OPEN/FLUSH and
                        keeps the page cache; passthrough: check again at OPEN and let
                        the kernel read the backing file directly (FUSE passthrough)
  -o OPT[,OPT...]       rw, ro (default), allow_other, no_allow_other, noacl, background, and the long options
                        as key=value (tenant_depth=N, owner=UID, config=FILE, mode=M,
                        threads=N, tenant_quota=N, entry_ttl_ms=N, attr_ttl_ms=N); mount(8) options such
                        as defaults, nofail, _netdev, dev, suid are accepted and ignored
                        (the mount is always nosuid,nodev,default_permissions)
  --allow-other         let other users (the web server) use the mount: the default
                        when the daemon runs as root
  --no-allow-other      only the mounting user may use the mount
  --no-acl              do not negotiate POSIX ACLs (kernel checks mode bits only: an ACL
                        in SOURCE is ignored); saves one request per path walk (see README)
  --threads N           FUSE worker threads (default: number of CPUs)
  --tenant-quota N      most inodes (each holding a descriptor) one tenant may have at
                        once; past it that tenant's lookups fail with EMFILE (default:
                        half the descriptor limit)
  --entry-ttl-ms N      how long the kernel caches a name (default 1000)
  --attr-ttl-ms N       how long the kernel caches attributes (default 1000)
  --stats FILE          on SIGUSR1 (and at exit) write request counters to FILE
  --background          return once mounted (for mount(8)/fstab); default: foreground
  --foreground          stay in the foreground (the default)
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataMode {
    NoOpen,
    Passthrough,
}

impl DataMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DataMode::NoOpen => "noopen",
            DataMode::Passthrough => "passthrough",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub source: PathBuf,
    pub mountpoint: PathBuf,
    /// `--tenant-depth`, if given.
    pub tenant_depth: Option<u32>,
    pub owner: Option<u32>,
    /// `--owner caller`: the configuration's `owner euid`.
    pub owner_caller: bool,
    pub config: Option<PathBuf>,
    pub mode: DataMode,
    pub rw: bool,
    /// `None`: the default, on when the daemon runs as root.
    pub allow_other: Option<bool>,
    /// Negotiate `FUSE_POSIX_ACL` (default; `--no-acl` turns it off).
    pub acl: bool,
    pub threads: usize,
    /// Most nodes one tenant may have at once (default: half the fd limit).
    pub tenant_quota: Option<usize>,
    pub entry_ttl: Duration,
    pub attr_ttl: Duration,
    pub stats: Option<PathBuf>,
    pub background: bool,
}

fn number<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    v.parse()
        .map_err(|_| format!("{flag}: '{v}' is not a valid number"))
}

impl Options {
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut positional = Vec::new();
        let mut o = Options {
            source: PathBuf::new(),
            mountpoint: PathBuf::new(),
            tenant_depth: None,
            owner: None,
            owner_caller: false,
            config: None,
            mode: DataMode::NoOpen,
            rw: false,
            allow_other: None,
            acl: true,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            tenant_quota: None,
            entry_ttl: Duration::from_millis(1000),
            attr_ttl: Duration::from_millis(1000),
            stats: None,
            background: false,
        };
        while let Some(a) = args.next() {
            // Accept --flag=value as well as --flag value.
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (a.clone(), None),
            };
            let mut value = || inline.clone().or_else(|| args.next());
            match flag.as_str() {
                "-h" | "--help" => return Err(String::new()),
                "--tenant-depth" => {
                    o.tenant_depth = Some(number("--tenant-depth", value())?);
                }
                "--owner" => match value() {
                    Some(v) if v == "caller" => o.owner_caller = true,
                    v => o.owner = Some(number("--owner", v)?),
                },
                "--config" => o.config = Some(PathBuf::from(value().ok_or("--config needs a file")?)),
                "--mode" => {
                    o.mode = match value().as_deref() {
                        Some("noopen") => DataMode::NoOpen,
                        Some("passthrough") => DataMode::Passthrough,
                        other => {
                            return Err(format!("--mode: expected noopen or passthrough, got {other:?}"));
                        }
                    }
                }
                "-o" => {
                    let list = value().ok_or("-o needs options")?;
                    for opt in list.split(',') {
                        o.mount_option(opt)?;
                    }
                }
                "--allow-other" => o.allow_other = Some(true),
                "--no-allow-other" => o.allow_other = Some(false),
                "--no-acl" => o.acl = false,
                "--threads" => o.threads = number("--threads", value())?,
                "--tenant-quota" => o.tenant_quota = Some(number("--tenant-quota", value())?),
                "--entry-ttl-ms" => o.entry_ttl = Duration::from_millis(number("--entry-ttl-ms", value())?),
                "--attr-ttl-ms" => o.attr_ttl = Duration::from_millis(number("--attr-ttl-ms", value())?),
                "--stats" => o.stats = Some(PathBuf::from(value().ok_or("--stats needs a file")?)),
                "--foreground" | "-f" => o.background = false,
                "--background" => o.background = true,
                s if s.starts_with('-') && s.len() > 1 => {
                    return Err(format!("unknown option '{s}'"));
                }
                _ => positional.push(a),
            }
        }
        if positional.len() != 2 {
            return Err(format!(
                "expected SOURCE and MOUNTPOINT, got {} argument(s)",
                positional.len()
            ));
        }
        o.mountpoint = PathBuf::from(positional.pop().unwrap_or_default());
        o.source = PathBuf::from(positional.pop().unwrap_or_default());
        if o.owner.is_some() && o.tenant_depth.is_some() {
            return Err("--owner and --tenant-depth exclude each other".into());
        }
        if o.tenant_depth.is_some_and(|d| d > 64) {
            return Err("--tenant-depth must be at most 64".into());
        }
        if !(1..=1024).contains(&o.threads) {
            return Err("--threads must be between 1 and 1024".into());
        }
        Ok(o)
    }

    fn mount_option(&mut self, opt: &str) -> Result<(), String> {
        let (key, val) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (opt, None),
        };
        match key {
            // mount(8)/mount.fuse3 pass these; set-id bits and devices are always off and
            // mode bits always checked by the kernel, whatever they say.
            ""
            | "defaults"
            | "auto"
            | "noauto"
            | "nofail"
            | "_netdev"
            | "user"
            | "nouser"
            | "users"
            | "nosuid"
            | "suid"
            | "nodev"
            | "dev"
            | "exec"
            | "noexec"
            | "async"
            | "sync"
            | "dirsync"
            | "atime"
            | "noatime"
            | "relatime"
            | "norelatime"
            | "strictatime"
            | "nodiratime"
            | "diratime"
            | "lazytime"
            | "nolazytime"
            | "silent"
            | "loud"
            | "default_permissions" => {}
            k if k.starts_with("x-") || k.starts_with("comment") => {}
            "rw" => self.rw = true,
            "ro" => self.rw = false,
            "allow_other" => self.allow_other = Some(true),
            "no_allow_other" => self.allow_other = Some(false),
            "noacl" => self.acl = false,
            "tenant_depth" => self.tenant_depth = Some(number("tenant_depth", val)?),
            "owner" if val.as_deref() == Some("caller") => self.owner_caller = true,
            "owner" | "owner_uid" => self.owner = Some(number("owner", val)?),
            "config" => self.config = Some(PathBuf::from(val.ok_or("config= needs a file")?)),
            "mode" => {
                self.mode = match val.as_deref() {
                    Some("noopen") => DataMode::NoOpen,
                    Some("passthrough") => DataMode::Passthrough,
                    other => return Err(format!("mode=: expected noopen or passthrough, got {other:?}")),
                }
            }
            "threads" => self.threads = number("threads", val)?,
            "tenant_quota" => self.tenant_quota = Some(number("tenant_quota", val)?),
            "entry_ttl_ms" => self.entry_ttl = Duration::from_millis(number("entry_ttl_ms", val)?),
            "attr_ttl_ms" => self.attr_ttl = Duration::from_millis(number("attr_ttl_ms", val)?),
            "background" => self.background = true,
            other => return Err(format!("unknown mount option '{other}'")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Options, String> {
        Options::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_and_flags() {
        let o = parse("/srv /mnt").unwrap();
        assert_eq!((o.tenant_depth, o.rw, o.mode), (None, false, DataMode::NoOpen));
        let o = parse("/srv /mnt --owner 33 -o rw,allow_other --mode passthrough --threads=3").unwrap();
        assert_eq!(o.owner, Some(33));
        assert_eq!(o.tenant_depth, None);
        assert!(o.rw && o.allow_other == Some(true));
        assert_eq!(parse("/srv /mnt").unwrap().allow_other, None);
        assert!(parse("/srv /mnt").unwrap().acl);
        assert!(!parse("/srv /mnt --no-acl").unwrap().acl);
        assert!(!parse("/srv /mnt -o rw,noacl").unwrap().acl);
        assert_eq!(
            parse("/srv /mnt --no-allow-other").unwrap().allow_other,
            Some(false)
        );
        assert_eq!(
            parse("/srv /mnt -o no_allow_other").unwrap().allow_other,
            Some(false)
        );
        assert_eq!((o.mode, o.threads), (DataMode::Passthrough, 3));
        assert!(parse("/srv /mnt --owner 1 --tenant-depth 2").is_err());
        let o = parse("/srv /mnt --owner caller").unwrap();
        assert!(o.owner_caller && o.owner.is_none());
        assert!(parse("/srv /mnt -o owner=caller").unwrap().owner_caller);
        assert!(parse("/srv /mnt --owner nobody").is_err());
        assert!(parse("/srv").is_err());
        assert!(parse("/srv /mnt --bogus").is_err());
        assert!(parse("/srv /mnt -o defaults,nofail,x-systemd.requires=a").is_ok());
    }
}
