//! `toctou-guard enable SERVICE` and `disable SERVICE`.

use std::path::{Path, PathBuf};

use super::{dropin, systemd};

pub struct Options {
    pub service: String,
    /// Where `/etc` is (tests): the drop-in goes under `ROOT/etc/systemd/system`.
    pub root: PathBuf,
    pub config: PathBuf,
    pub library: PathBuf,
}

impl Options {
    /// `SERVICE [--root DIR] [--config FILE] [--library SO]`.
    pub fn parse(args: &[String], enable: bool) -> Result<Options, String> {
        let mut service = None;
        let mut root = PathBuf::from("/");
        let mut config = PathBuf::from(toctou_policy::DEFAULT_CONFIG_PATH);
        let mut library = PathBuf::from(dropin::LIBRARY);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| {
                it.next()
                    .map(PathBuf::from)
                    .ok_or(format!("{name} needs a value"))
            };
            match a.as_str() {
                "--root" => root = val("--root")?,
                "--config" if enable => config = val("--config")?,
                "--library" if enable => library = val("--library")?,
                s if service.is_none() && !s.starts_with("--") => service = Some(s.to_string()),
                other => return Err(format!("unexpected argument '{other}'")),
            }
        }
        let service = service.ok_or("needs a SERVICE (e.g. nginx, apache2, php8.2-fpm)")?;
        let service = dropin::validate(&service)?.to_string();
        Ok(Options {
            service,
            root,
            config,
            library,
        })
    }
}

/// Check the configuration (as `check` does), then install the drop-in and reload/restart,
/// or verify it where systemd does not run. Nothing is written if a check fails.
pub fn enable(o: &Options, check: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), String> {
    check(&o.config)?;
    if !o.library.is_file() {
        return Err(format!(
            "{}: no such library (install the package, or pass --library)",
            o.library.display()
        ));
    }
    let text = dropin::text(&o.service, &o.library, &o.config)?;
    let unit = systemd::find_unit(&o.root, &o.service);
    let on_systemd = systemd::running(&o.root);
    // Verify before writing where systemd cannot do it for us at restart.
    let verified = match (&unit, on_systemd) {
        (Some(unit), false) => Some(systemd::verify(unit, &o.service, &text)?),
        _ => None,
    };
    let path = dropin::path(&o.root, &o.service);
    dropin::install(&path, &text)?;
    println!("{}: installed", path.display());
    if on_systemd {
        return reload_restart(&o.service);
    }
    println!(
        "systemd is not running (no /run/systemd/system): {} not reloaded or restarted",
        o.service
    );
    match (&unit, verified) {
        (Some(unit), Some(warnings)) => {
            println!("systemd-analyze verify {} with the drop-in: ok", unit.display());
            if !warnings.is_empty() {
                println!("  (about the unit itself: {})", warnings.replace('\n', "; "));
            }
        }
        _ => println!("no {}.service unit file found: drop-in not verified", o.service),
    }
    let env: Vec<String> = dropin::environment(&text)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("start {} with this environment: {}", o.service, env.join(" "));
    Ok(())
}

pub fn disable(o: &Options) -> Result<(), String> {
    let path = dropin::path(&o.root, &o.service);
    if !dropin::remove(&path)? {
        println!("{}: not installed, nothing to do", path.display());
        return Ok(());
    }
    println!("{}: removed", path.display());
    if systemd::running(&o.root) {
        return reload_restart(&o.service);
    }
    println!(
        "systemd is not running (no /run/systemd/system): restart {} without LD_PRELOAD/TOCTOU_GUARD_CONFIG",
        o.service
    );
    Ok(())
}

fn reload_restart(service: &str) -> Result<(), String> {
    systemd::systemctl(&["daemon-reload"])?;
    systemd::systemctl(&["restart", &format!("{service}.service")])?;
    println!("systemctl daemon-reload; systemctl restart {service}: done (check with `toctou-guard status`)");
    Ok(())
}
