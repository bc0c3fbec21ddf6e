//! The web server and PHP processes running now, read from `/proc`.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use toctou_policy::config::{SERVER_PROGRAMS, program_matches};

/// What `/proc/PID` tells about one server process.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// Basename of `/proc/PID/exe` (` (deleted)` stripped), else `comm`.
    pub program: String,
    /// `/proc/PID/exe` (` (deleted)` stripped); `None` when it cannot be read (not root).
    pub exe: Option<PathBuf>,
    pub euid: u32,
    /// Why this is not a server the guard is for (a tenant's process named like one), when
    /// it is not: such a process is listed, and counts neither way.
    pub ignored: Option<String>,
    /// The mapped file whose name contains `libtoctou_guard` (`/proc/PID/maps`).
    pub library: Option<String>,
    /// What the shim announced it loaded and guards this process with (its memfd mapping
    /// `toctou-guard:mode=MODE:config=PATH`): `(mode, config)`.
    pub loaded: Option<(String, PathBuf)>,
    /// `TOCTOU_GUARD_CONFIG` in the process's initial environment (`/proc/PID/environ`),
    /// made absolute against its working directory.
    pub config_env: Option<PathBuf>,
    /// A parent of the same program: a worker (else the master).
    pub worker: bool,
}

/// `(ppid, comm)` from `/proc/PID/stat` (`comm` may hold spaces and parentheses).
fn stat(pid: u32) -> Option<(u32, String)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (s.find('(')?, s.rfind(')')?);
    let comm = s.get(open + 1..close)?.to_string();
    let ppid = s.get(close + 1..)?.split_whitespace().nth(1)?.parse().ok()?;
    Some((ppid, comm))
}

/// `/proc/PID/exe`, without the ` (deleted)` of a replaced binary.
fn exe(pid: u32) -> Option<PathBuf> {
    let p = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let s = p.to_string_lossy();
    Some(match s.strip_suffix(" (deleted)") {
        Some(kept) => PathBuf::from(kept),
        None => p,
    })
}

/// Is the running executable (the inode, wherever it is now) a system binary: root's, and
/// writable by nobody else? A tenant's copy of a server binary is its own file.
fn system_binary(pid: u32) -> Result<(), String> {
    // Unreadable (status not run as root): unknown, so counted, never hidden as ignored.
    let Ok(m) = fs::metadata(format!("/proc/{pid}/exe")) else {
        return Ok(());
    };
    if m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(format!(
            "not a system binary (owned by uid {}, mode {:o})",
            m.uid(),
            m.mode() & 0o7777
        ));
    }
    Ok(())
}

fn euid(pid: u32) -> u32 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

/// The mapped path of each of `/proc/PID/maps`'s lines (the sixth field onwards: a path may
/// hold spaces).
fn mapped(pid: u32) -> Vec<String> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines()
        .filter_map(|l| {
            let mut rest = l;
            for _ in 0..5 {
                rest = rest.trim_start().split_once(' ')?.1;
            }
            Some(rest.trim_start().to_string())
        })
        .filter(|p| !p.is_empty())
        .collect()
}

fn library(maps: &[String]) -> Option<String> {
    maps.iter()
        .find(|p| {
            p.rsplit('/')
                .next()
                .is_some_and(|n| n.contains("libtoctou_guard"))
        })
        .cloned()
}

/// The shim's announcement (`shim/src/state.rs`, `announce`).
fn loaded(maps: &[String]) -> Option<(String, PathBuf)> {
    maps.iter().find_map(|p| {
        let rest = p.strip_prefix("/memfd:toctou-guard:mode=")?;
        let rest = rest.strip_suffix(" (deleted)").unwrap_or(rest);
        let (mode, config) = rest.split_once(":config=")?;
        Some((mode.to_string(), PathBuf::from(config)))
    })
}

fn config_env(pid: u32) -> Option<PathBuf> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let key = format!("{}=", toctou_policy::CONFIG_ENV);
    let v = env
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(key.as_bytes()))?;
    let p = PathBuf::from(String::from_utf8_lossy(v).into_owned());
    Some(if p.is_absolute() {
        p
    } else {
        fs::read_link(format!("/proc/{pid}/cwd"))
            .unwrap_or_default()
            .join(p)
    })
}

/// Is `name` (a program's file name) one of the servers the guard is for?
pub fn is_server(name: &str) -> bool {
    SERVER_PROGRAMS
        .iter()
        .any(|p| program_matches(p, name.as_bytes()))
}

/// Every server process, by pid. With `only` not empty, just those pids and their
/// descendants.
///
/// The program is the executable's name (`comm` only where `/proc/PID/exe` cannot be read):
/// `comm` is the name of whatever path was executed, a tenant's symlink `nginx` to any
/// binary included. A process counts as a server when its executable is a system binary and
/// it runs as root or was started by such a server (a master and its workers); anything else
/// of that name is a tenant's own process, as privileged as the tenant: `ignored`.
pub fn servers(only: &[u32]) -> Vec<Proc> {
    let mut parent = HashMap::new();
    let mut found = Vec::new();
    let pids = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
    for pid in pids {
        let Some((ppid, comm)) = stat(pid) else { continue };
        parent.insert(pid, ppid);
        let exe = exe(pid);
        let program = exe
            .as_ref()
            .and_then(|p| p.file_name())
            .map_or(comm, |n| n.to_string_lossy().into_owned());
        if is_server(&program) {
            found.push((pid, ppid, program, exe));
        }
    }
    let programs: HashMap<u32, &str> = found.iter().map(|(p, _, n, _)| (*p, n.as_str())).collect();
    // Bounded: a parent chain is at most as long as the process table.
    let descends = |mut pid: u32| {
        for _ in 0..=parent.len() {
            if only.contains(&pid) {
                return true;
            }
            match parent.get(&pid) {
                Some(&pp) if pp != 0 && pp != pid => pid = pp,
                _ => return false,
            }
        }
        false
    };
    let system: HashMap<u32, (Result<(), String>, u32)> = found
        .iter()
        .map(|(pid, ..)| (*pid, (system_binary(*pid), euid(*pid))))
        .collect();
    // Started by root's server: up the chain of server processes with system binaries to one
    // running as root. Bounded like `descends`.
    let trusted = |mut pid: u32| -> Result<(), String> {
        let started_by = system.get(&pid).map_or(u32::MAX, |s| s.1);
        for _ in 0..=parent.len() {
            match system.get(&pid) {
                Some((Err(e), _)) => return Err(e.clone()),
                Some((Ok(()), 0)) => return Ok(()),
                Some((Ok(()), _)) => pid = parent.get(&pid).copied().unwrap_or(0),
                None => break,
            }
        }
        Err(format!("started by uid {started_by}, not by root or a server"))
    };
    let mut out: Vec<Proc> = found
        .iter()
        .filter(|(pid, ..)| only.is_empty() || descends(*pid))
        .map(|(pid, ppid, program, exe)| {
            let maps = mapped(*pid);
            Proc {
                pid: *pid,
                ppid: *ppid,
                worker: programs.get(ppid) == Some(&program.as_str()),
                program: program.clone(),
                exe: exe.clone(),
                euid: system.get(pid).map_or(u32::MAX, |s| s.1),
                ignored: trusted(*pid).err(),
                library: library(&maps),
                loaded: loaded(&maps),
                config_env: config_env(*pid),
            }
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// uid -> user name, from `/etc/passwd`.
pub fn users() -> HashMap<u32, String> {
    users_from(Path::new("/etc/passwd"))
}

fn users_from(path: &Path) -> HashMap<u32, String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_is_read_and_not_a_server() {
        let me = std::process::id();
        let (ppid, comm) = super::stat(me).expect("stat");
        assert!(ppid > 0 && !comm.is_empty());
        assert!(super::is_server("php-fpm8.2") && super::is_server("nginx") && !super::is_server("bash"));
        assert!(super::servers(&[me]).is_empty());
    }

    #[test]
    fn maps_paths_and_the_announcement() {
        let maps = vec![
            "/usr/lib/toctou-guard/libtoctou_guard.so".to_string(),
            "/memfd:toctou-guard:mode=audit:config=/etc/a b.conf (deleted)".to_string(),
        ];
        assert_eq!(super::library(&maps).as_deref(), Some(maps[0].as_str()));
        let (mode, conf) = super::loaded(&maps).expect("announced");
        assert_eq!((mode.as_str(), conf.to_str()), ("audit", Some("/etc/a b.conf")));
        assert!(super::loaded(&maps[..1]).is_none());
        let own = super::mapped(std::process::id());
        assert!(own.iter().any(|p| p.starts_with('/')), "{own:?}");
    }
}
