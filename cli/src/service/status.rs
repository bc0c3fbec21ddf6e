//! `toctou-guard status`: is the guard really on in every server process running now?

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{denials, procs};
use crate::json;

pub struct Options {
    pub json: bool,
    pub log: PathBuf,
    pub pids: Vec<u32>,
}

impl Options {
    /// `[--json] [--log FILE] [--pid PID]...`
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            json: false,
            log: PathBuf::from(denials::DEFAULT_LOG),
            pids: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--json" => o.json = true,
                "--log" => o.log = PathBuf::from(it.next().ok_or("--log needs a FILE")?),
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
    config: PathBuf,
    /// The mode the config file states now, or why it could not be loaded.
    mode: Result<&'static str, String>,
    guarded: bool,
    /// Why not, when not.
    why: &'static str,
    denials: Option<u64>,
}

pub fn run(o: &Options) -> ExitCode {
    let users = procs::users();
    let counts = denials::from_file(&o.log);
    let mut loaded: HashMap<PathBuf, Result<toctou_policy::Config, String>> = HashMap::new();
    let rows: Vec<Row> = procs::servers(&o.pids)
        .into_iter()
        .map(|p| {
            let config = p
                .config_env
                .clone()
                .unwrap_or_else(|| PathBuf::from(toctou_policy::DEFAULT_CONFIG_PATH));
            let cfg = loaded
                .entry(config.clone())
                .or_insert_with(|| crate::load::load(&config).map_err(|e| e.to_string()));
            let excluded = cfg
                .as_ref()
                .is_ok_and(|c| !c.guards_program(p.program.as_bytes()));
            let (guarded, why) = match (&p.library, excluded) {
                (None, _) => (false, "library not mapped"),
                (Some(_), true) => (false, "its config's `programs` leaves it out"),
                (Some(_), false) => (true, ""),
            };
            Row {
                user: users.get(&p.euid).cloned().unwrap_or_else(|| p.euid.to_string()),
                mode: cfg.as_ref().map(|c| c.mode.as_str()).map_err(Clone::clone),
                denials: counts.as_ref().ok().map(|c| c.get(&p.pid).copied().unwrap_or(0)),
                config,
                guarded,
                why,
                p,
            }
        })
        .collect();
    let guarded = rows.iter().filter(|r| r.guarded).count();
    let source = match &counts {
        Ok(_) => format!("denial lines of each pid in {}", o.log.display()),
        Err(e) => format!("denials unknown: {e} (pass --log FILE)"),
    };
    if o.json {
        print_json(&rows, guarded, &source, &o.log);
    } else {
        print_table(&rows, guarded, &source);
    }
    if guarded == rows.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_table(rows: &[Row], guarded: usize, source: &str) {
    println!(
        "{:>7} {:>7} {:<6} {:<10} {:<12} {:<9} {:<8} {:>7}  CONFIG",
        "PID", "PPID", "ROLE", "USER", "PROGRAM", "GUARDED", "MODE", "DENIALS"
    );
    for r in rows {
        let mode = r.mode.as_ref().map_or("error", |m| m);
        let denials = r.denials.map_or("-".to_string(), |n| n.to_string());
        let mut config = r.config.display().to_string();
        if let Err(e) = &r.mode {
            config.push_str(&format!(" ({e})"));
        }
        if !r.guarded {
            config.push_str(&format!(" [UNGUARDED: {}]", r.why));
        }
        println!(
            "{:>7} {:>7} {:<6} {:<10} {:<12} {:<9} {:<8} {:>7}  {config}",
            r.p.pid,
            r.p.ppid,
            if r.p.worker { "worker" } else { "master" },
            r.user,
            r.p.program,
            if r.guarded { "yes" } else { "NO" },
            mode,
            denials
        );
    }
    if rows.is_empty() {
        println!("no web server or php-fpm process is running");
    }
    println!("{guarded} of {} server processes guarded ({source})", rows.len());
}

fn print_json(rows: &[Row], guarded: usize, source: &str, log: &Path) {
    let opt = |s: Option<String>| s.map_or("null".to_string(), |s| json::string(&s));
    let procs: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"pid\":{},\"ppid\":{},\"role\":\"{}\",\"user\":{},\"uid\":{},\"program\":{},\"guarded\":{},\
                 \"unguarded_because\":{},\"library\":{},\"config\":{},\"mode\":{},\"config_error\":{},\"denials\":{}}}",
                r.p.pid,
                r.p.ppid,
                if r.p.worker { "worker" } else { "master" },
                json::string(&r.user),
                r.p.euid,
                json::string(&r.p.program),
                r.guarded,
                opt((!r.guarded).then(|| r.why.to_string())),
                opt(r.p.library.clone()),
                json::string(&r.config.display().to_string()),
                opt(r.mode.as_ref().ok().map(|m| m.to_string())),
                opt(r.mode.as_ref().err().cloned()),
                r.denials.map_or("null".to_string(), |n| n.to_string()),
            )
        })
        .collect();
    println!(
        "{{\"processes\":[{}],\"guarded\":{guarded},\"total\":{},\"log\":{},\"denials_source\":{}}}",
        procs.join(","),
        rows.len(),
        json::string(&log.display().to_string()),
        json::string(source)
    );
}
