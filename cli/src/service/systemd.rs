//! Talking to systemd: is it running, reload and restart, and — where it does not run (CI, a
//! container) — `systemd-analyze verify` of the unit with the drop-in.

use std::path::{Path, PathBuf};
use std::process::Command;

/// systemd is the running init (what `sd_booted()` checks).
pub fn running(root: &Path) -> bool {
    root.join("run/systemd/system").is_dir()
}

/// `systemctl ARGS`, its stderr in the error.
pub fn systemctl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| format!("systemctl {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "systemctl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `SERVICE.service` in the unit directories under `root`, then the host's.
pub fn find_unit(root: &Path, service: &str) -> Option<PathBuf> {
    let dirs = [
        "etc/systemd/system",
        "lib/systemd/system",
        "usr/lib/systemd/system",
    ];
    let mut roots = vec![root.to_path_buf()];
    if root != Path::new("/") {
        roots.push(PathBuf::from("/"));
    }
    roots
        .iter()
        .flat_map(|r| {
            dirs.iter()
                .map(move |d| r.join(d).join(format!("{service}.service")))
        })
        .find(|p| p.is_file())
}

/// Verify `unit` with only our drop-in: both are copied into a scratch directory
/// (`systemd-analyze verify DIR/SERVICE.service` reads `DIR/SERVICE.service.d/`), so the
/// answer does not depend on what else is installed. Any complaint naming the drop-in, or a
/// failing exit status, is an error; other warnings about the unit itself are returned.
pub fn verify(unit: &Path, service: &str, dropin_text: &str) -> Result<String, String> {
    let scratch = std::env::temp_dir().join(format!("toctou-guard-verify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let result = (|| {
        let d = scratch.join(format!("{service}.service.d"));
        std::fs::create_dir_all(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        let copy = scratch.join(format!("{service}.service"));
        std::fs::copy(unit, &copy).map_err(|e| format!("copy {}: {e}", unit.display()))?;
        std::fs::write(d.join(super::dropin::FILE_NAME), dropin_text)
            .map_err(|e| format!("write drop-in copy: {e}"))?;
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .map_err(|e| format!("systemd-analyze: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr).replace(&*scratch.to_string_lossy(), "");
        let ours: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(super::dropin::FILE_NAME))
            .collect();
        if !out.status.success() || !ours.is_empty() {
            return Err(format!(
                "systemd-analyze verify {} with the drop-in failed ({}): {}",
                unit.display(),
                out.status,
                stderr.trim()
            ));
        }
        Ok(stderr.trim().to_string())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The check can fail: a drop-in systemd complains about is refused.
    #[test]
    fn verify_refuses_a_dropin_systemd_complains_about() {
        let unit = Path::new("/lib/systemd/system/nginx.service");
        if !unit.is_file() || !Path::new("/usr/bin/systemd-analyze").is_file() {
            // As tests/src/prereq.rs: a skip is a failure in CI.
            assert!(
                !matches!(std::env::var("CI").as_deref(), Ok(v) if !v.is_empty() && v != "0" && v != "false"),
                "missing prerequisite in CI: nginx's unit file and systemd-analyze"
            );
            eprintln!("SKIP: nginx's unit file and systemd-analyze");
            return;
        }
        let good = "[Service]\nEnvironment=LD_PRELOAD=/usr/lib/x.so\n";
        assert!(super::verify(unit, "nginx", good).is_ok());
        let bad = "[Service]\nEnvironment=LD_PRELOAD=/usr/lib/x.so\nEnvironmnet=TYPO=1\n";
        let e = super::verify(unit, "nginx", bad).expect_err("a typo in the drop-in");
        assert!(
            e.contains("Environmnet") && e.contains("toctou-guard.conf"),
            "{e}"
        );
    }
}
