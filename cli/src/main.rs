//! `toctou-guard`: the operator's command.
//!
//! ```text
//! toctou-guard check [CONFIG] [--nginx | --nginx-conf F] [--apache | --apache-conf F]
//!                                                  validate, like `nginx -t`; with a
//!                                                  server, warn of document roots no
//!                                                  root or map covers
//! toctou-guard check --php [FILE...]               php-fpm/php.ini settings the guard cannot fix
//! toctou-guard explain PATH [--uid UID] [--config CONFIG]
//! toctou-guard import apache|nginx [--conf FILE] [--config CONFIG] [--fpm-conf DIR]
//!                                                  map lines for the server's vhosts
//! toctou-guard report [--file LOG]... [--journal] [--since TIME] [--json] [--prometheus FILE]
//! toctou-guard enable SERVICE [--config CONFIG] [--library SO] [--root DIR]
//! toctou-guard disable SERVICE [--root DIR]
//! toctou-guard status [--json] [--log FILE] [--pid PID]...
//! toctou-guard init --layout PANEL [--mode audit|enforce] [--prefix DIR] [--output FILE [--force]]
//! toctou-guard scan [--config FILE] [--json] [--quiet]
//! toctou-guard compile [CONFIG] [--output FILE]  the compiled form guards map (CONFIG.tgc)
//! ```
#![forbid(unsafe_code)]

mod compile;
mod docroots;
mod explain;
mod import;
mod init;
mod load;
mod php;
mod report;
mod scan;
mod service;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: toctou-guard check [CONFIG] [--nginx | --nginx-conf FILE] [--apache | --apache-conf FILE]\n       \
                     toctou-guard check --php [FILE...]\n       \
                     toctou-guard explain PATH [--uid UID] [--config CONFIG]\n       \
                     toctou-guard import apache|nginx [--conf FILE] [--config CONFIG] [--fpm-conf DIR]\n       \
                     toctou-guard report [--file LOG]... [--journal] [--since TIME] [--json] [--prometheus FILE]\n       \
                     toctou-guard enable SERVICE [--config CONFIG] [--library SO] [--root DIR]\n       \
                     toctou-guard disable SERVICE [--root DIR]\n       \
                     toctou-guard status [--json] [--log FILE] [--pid PID]...\n       \
                     toctou-guard init --layout cpanel|plesk|directadmin|ispconfig|hestiacp|virtualmin [--mode audit|enforce] [--prefix DIR] [--output FILE [--force]]\n       \
                     toctou-guard scan [--config FILE] [--json] [--quiet]\n       \
                     toctou-guard compile [CONFIG] [--output FILE]\n";

fn main() -> ExitCode {
    // Paths are taken as UTF-8 text: refuse another name (a tenant's) rather than panic on it.
    let mut args = Vec::new();
    for (i, a) in std::env::args_os().enumerate().skip(1) {
        match a.into_string() {
            Ok(a) => args.push(a),
            Err(a) => {
                let shown = scan::shown(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str()));
                eprintln!("toctou-guard: argument {i} is not UTF-8: {shown}");
                return ExitCode::from(2);
            }
        }
    }
    match run(&args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("toctou-guard: {msg}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    match args.first().map(String::as_str) {
        Some("check") if args.get(1).is_some_and(|a| a == "--php") => {
            let (problems, pools) = php::check(&args[2..])?;
            for p in &problems {
                eprintln!("toctou-guard: {p}");
            }
            if !problems.is_empty() {
                return Ok(ExitCode::from(1));
            }
            println!("php: {pools} pool(s) checked: no shared opcache without validation, no ffi.enable=1");
            Ok(ExitCode::SUCCESS)
        }
        Some("check") => {
            let mut config = None;
            let (mut nginx, mut apache) = (None, None);
            let mut it = args[1..].iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--nginx" => nginx = Some(None),
                    "--apache" => apache = Some(None),
                    "--nginx-conf" => {
                        nginx = Some(Some(PathBuf::from(it.next().ok_or("--nginx-conf needs a FILE")?)))
                    }
                    "--apache-conf" => {
                        apache = Some(Some(PathBuf::from(
                            it.next().ok_or("--apache-conf needs a FILE")?,
                        )))
                    }
                    p if config.is_none() && !p.starts_with("--") => config = Some(PathBuf::from(p)),
                    other => return Err(format!("unexpected argument '{other}'\n{USAGE}")),
                }
            }
            let path = config.unwrap_or_else(load::default_path);
            let cfg = checked(&path)?;
            let policy = toctou_policy::Policy::new(cfg.clone());
            let mut served = Vec::new();
            if let Some(conf) = &nginx {
                served.extend(docroots::nginx(conf.as_deref())?);
            }
            if let Some(conf) = &apache {
                served.extend(docroots::apache(conf.as_deref())?);
            }
            for w in docroots::warnings(&policy, &served) {
                eprintln!("toctou-guard: {w}");
            }
            println!(
                "{}: syntax is ok, ownership is safe: mode {}, {} guarded tree(s), owner rule {:?}, allow_uid {:?}",
                path.display(),
                cfg.mode.as_str(),
                cfg.roots.len(),
                cfg.owner,
                cfg.allow_uids
            );
            match compiled_line(&path)? {
                Ok(line) => println!("{line}"),
                Err(warning) => eprintln!("toctou-guard: warning: {warning}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Some("compile") => {
            println!("{}", compile::run(&args[1..])?);
            Ok(ExitCode::SUCCESS)
        }
        Some("explain") => {
            let mut path = None;
            let mut uid = None;
            let mut config = None;
            let mut it = args[1..].iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--uid" => {
                        let v = it.next().ok_or("--uid needs a value")?;
                        uid = Some(
                            v.parse::<u32>()
                                .map_err(|_| format!("--uid: '{v}' is not a number"))?,
                        );
                    }
                    "--config" => config = Some(PathBuf::from(it.next().ok_or("--config needs a value")?)),
                    p if path.is_none() && !p.starts_with("--") => path = Some(PathBuf::from(p)),
                    other => return Err(format!("unexpected argument '{other}'\n{USAGE}")),
                }
            }
            let path = path.ok_or(format!("explain needs a PATH\n{USAGE}"))?;
            let config = config.unwrap_or_else(load::default_path);
            let cfg = load::load(&config).map_err(|e| load::describe(&e))?;
            print!("{}", explain::explain(cfg, &path, uid));
            Ok(ExitCode::SUCCESS)
        }
        Some("import") => {
            import::run(&args[1..])?;
            Ok(ExitCode::SUCCESS)
        }
        Some("report") => {
            report::run(&args[1..])?;
            Ok(ExitCode::SUCCESS)
        }
        Some("enable") => {
            let o = service::enable::Options::parse(&args[1..], true)
                .map_err(|e| format!("enable: {e}\n{USAGE}"))?;
            service::enable::enable(&o, |p| checked(p).map(drop))?;
            Ok(ExitCode::SUCCESS)
        }
        Some("disable") => {
            let o = service::enable::Options::parse(&args[1..], false)
                .map_err(|e| format!("disable: {e}\n{USAGE}"))?;
            service::enable::disable(&o)?;
            Ok(ExitCode::SUCCESS)
        }
        Some("status") => {
            let o =
                service::status::Options::parse(&args[1..]).map_err(|e| format!("status: {e}\n{USAGE}"))?;
            Ok(service::status::run(&o))
        }
        Some("init") => init::run(&args[1..]).map(|()| ExitCode::SUCCESS),
        Some("scan") => Ok(scan::run(&args[1..])),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(USAGE.trim_end().to_string()),
    }
}

/// `check`'s line on the compiled form: what a guard will load (`Err`: a warning, when it
/// will parse the text although a compiled form is there).
fn compiled_line(path: &Path) -> Result<Result<String, String>, String> {
    use toctou_policy::load::Compiled;
    let image = toctou_policy::image::path_for(path);
    Ok(match load::compiled_status(path)? {
        Compiled::Fresh => Ok(format!(
            "{}: compiled form is fresh: the guards map it",
            image.display()
        )),
        Compiled::Absent => Ok(format!(
            "{}: no compiled form: the guards parse the text (toctou-guard compile makes one)",
            image.display()
        )),
        c => Err(c.note(path).unwrap_or_default()),
    })
}

/// The configuration at `path`, loaded as the guards load it (an error shows the line), with
/// a warning for each root another one shadows: what `check` and `enable` both require.
fn checked(path: &Path) -> Result<toctou_policy::Config, String> {
    let cfg = load::load(path).map_err(|e| load::describe(&e))?;
    let policy = toctou_policy::Policy::new(cfg.clone());
    for (inner, outer) in policy.shadowed() {
        let (i, o) = (&cfg.roots[inner], &cfg.roots[outer]);
        eprintln!(
            "toctou-guard: {}:{}: warning: '{}' lies inside '{}' (line {}), which every path to it \
             enters first: line {} never applies",
            path.display(),
            i.line,
            i.pattern.as_str(),
            o.pattern.as_str(),
            o.line,
            i.line
        );
    }
    Ok(cfg)
}
