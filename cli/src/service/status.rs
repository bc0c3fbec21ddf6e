//! `toctou-guard status`: is the guard really on in every server process running now?

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;

use super::{denials, procs};

pub struct Options {
    pub json: bool,
    /// `--log FILE`; without it `/var/log/auth.log`, else the journal.
    pub log: Option<PathBuf>,
    pub pids: Vec<u32>,
}

impl Options {
    /// `[--json] [--log FILE] [--pid PID]...`
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            json: false,
            log: None,
            pids: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--json" => o.json = true,
                "--log" => o.log = Some(PathBuf::from(it.next().ok_or("--log needs a FILE")?)),
                "--pid" => {
                    let v = it.next().ok_or("--pid needs a PID")?;
                    o.pids
                        .push(v.parse().map_err(|_| format!("--pid: '{v}' is not a pid"))?);
                }
                other => return Err(format!("unexpected argument '{other}'")),
            }
        }
        Ok(o)
    }
}

/// One process, judged.
struct Row {
    p: procs::Proc,
    user: String,
    /// The config it loaded (announced by the shim), else the one it would load.
    config: PathBuf,
    /// The mode it loaded, `-` when unguarded.
    mode: String,
    /// What the file says now, when that differs (a restart would load it).
    now: Option<String>,
    guarded: bool,
    /// Why not, when not.
    why: &'static str,
    denials: Option<u64>,
}

pub fn run(o: &Options) -> ExitCode {
    let users = procs::users();
    let default = Path::new(denials::DEFAULT_LOG);
    let (log, counts) = match &o.log {
        Some(f) => (f.display().to_string(), denials::from_file(f)),
        None if default.exists() => (default.display().to_string(), denials::from_file(default)),
        None => ("the journal".to_string(), denials::from_journal()),
    };
    let mut files: HashMap<PathBuf, Result<&'static str, String>> = HashMap::new();
    let (ignored, servers): (Vec<procs::Proc>, Vec<procs::Proc>) = procs::servers(&o.pids)
        .into_iter()
        .partition(|p| p.ignored.is_some());
    let rows: Vec<Row> = servers
        .into_iter()
        .map(|p| {
            let (guarded, why) = match (&p.library, &p.loaded) {
                (None, _) => (false, "library not mapped"),
                (Some(_), None) => (
                    false,
                    "library mapped, no config announced: its `programs` line leaves this program out (or the library predates `status`)",
                ),
                (Some(_), Some(_)) => (true, ""),
            };
            let (mode, config) = match &p.loaded {
                Some((mode, config)) => (mode.clone(), config.clone()),
                None => (
                    "-".to_string(),
                    p.config_env
                        .clone()
                        .unwrap_or_else(|| PathBuf::from(toctou_policy::DEFAULT_CONFIG_PATH)),
                ),
            };
            let now = if guarded {
                let file = files.entry(config.clone()).or_insert_with(|| {
                    crate::load::load(&config)
                        .map(|c| c.mode.as_str())
                        .map_err(|e| e.to_string())
                });
                match file {
                    Ok(m) if *m == mode => None,
                    Ok(m) => Some(format!("the file now says mode {m}")),
                    Err(e) => Some(format!("the file now fails to load, a restart would fail: {e}")),
                }
            } else {
                None
            };
            Row {
                user: user(&users, p.euid),
                denials: counts.as_ref().ok().map(|c| c.get(&p.pid).copied().unwrap_or(0)),
                config,
                mode,
                now,
                guarded,
                why,
                p,
            }
        })
        .collect();
    let guarded = rows.iter().filter(|r| r.guarded).count();
    let source = match &counts {
        Ok(_) => format!("denials: lines of each pid in {log}"),
        Err(e) => format!("denials unknown: {e} (pass --log FILE)"),
    };
    if o.json {
        print_json(&rows, &ignored, &users, guarded, &source, &log);
    } else {
        print_table(&rows, &ignored, &users, guarded, &source);
    }
    if guarded == rows.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn exe(p: &procs::Proc) -> String {
    p.exe
        .as_ref()
        .map_or("?".to_string(), |e| e.display().to_string())
}

/// Lossy, not `Path`'s serde (which fails on a non-UTF-8 name).
fn path_json(p: &Option<PathBuf>) -> Option<String> {
    p.as_ref().map(|p| p.display().to_string())
}

fn user(users: &HashMap<u32, String>, uid: u32) -> String {
    users.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
}

fn print_table(
    rows: &[Row],
    ignored: &[procs::Proc],
    users: &HashMap<u32, String>,
    guarded: usize,
    source: &str,
) {
    println!(
        "{:>7} {:>7} {:<6} {:<10} {:>6} {:<12} {:<9} {:<8} {:>7}  {:<24} CONFIG",
        "PID", "PPID", "ROLE", "USER", "UID", "PROGRAM", "GUARDED", "MODE", "DENIALS", "EXE"
    );
    for r in rows {
        let denials = r.denials.map_or("-".to_string(), |n| n.to_string());
        let mut config = r.config.display().to_string();
        if let Some(now) = &r.now {
            config.push_str(&format!(" ({now})"));
        }
        if !r.guarded {
            config.push_str(&format!(" [UNGUARDED: {}]", r.why));
        }
        println!(
            "{:>7} {:>7} {:<6} {:<10} {:>6} {:<12} {:<9} {:<8} {:>7}  {:<24} {config}",
            r.p.pid,
            r.p.ppid,
            if r.p.worker { "worker" } else { "master" },
            r.user,
            r.p.euid,
            r.p.program,
            if r.guarded { "yes" } else { "NO" },
            r.mode,
            denials,
            exe(&r.p),
        );
    }
    if rows.is_empty() {
        println!("no web server or php-fpm process is running");
    }
    // A tenant's own process named like a server: shown, so that an operator can tell.
    for p in ignored {
        println!(
            "ignored: pid {} ppid {} {} uid {} ({}) exe {}: {}",
            p.pid,
            p.ppid,
            p.program,
            p.euid,
            user(users, p.euid),
            exe(p),
            p.ignored.as_deref().unwrap_or_default()
        );
    }
    println!("{guarded} of {} server processes guarded ({source})", rows.len());
}

fn print_json(
    rows: &[Row],
    ignored: &[procs::Proc],
    users: &HashMap<u32, String>,
    guarded: usize,
    source: &str,
    log: &str,
) {
    let procs: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            json!({
                "pid": r.p.pid,
                "ppid": r.p.ppid,
                "role": if r.p.worker { "worker" } else { "master" },
                "user": r.user,
                "uid": r.p.euid,
                "program": r.p.program,
                "exe": path_json(&r.p.exe),
                "guarded": r.guarded,
                "unguarded_because": (!r.guarded).then_some(r.why),
                "library": r.p.library,
                "config": r.config.display().to_string(),
                "mode": r.guarded.then_some(&r.mode),
                "config_now": r.now,
                "denials": r.denials,
            })
        })
        .collect();
    let ignored: Vec<serde_json::Value> = ignored
        .iter()
        .map(|p| {
            json!({
                "pid": p.pid,
                "ppid": p.ppid,
                "user": user(users, p.euid),
                "uid": p.euid,
                "program": p.program,
                "exe": path_json(&p.exe),
                "because": p.ignored,
            })
        })
        .collect();
    let out = json!({
        "processes": procs,
        "ignored": ignored,
        "guarded": guarded,
        "total": rows.len(),
        "log": log,
        "denials_source": source,
    });
    println!("{out}");
}
