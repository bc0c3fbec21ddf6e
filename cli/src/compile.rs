//! `toctou-guard compile [CONFIG] [--output FILE]`: write the compiled form of a configuration
//! (`CONFIG.tgc` by default), which every guard maps instead of parsing the text while the
//! text is unchanged (see `toctou_policy::image`). Run it after every edit of the text; an
//! edit without it is safe (the guards see the image is stale and parse the text) but slow.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use toctou_policy::image;
use toctou_policy::load::Compiled;

use crate::load;

pub fn run(args: &[String]) -> Result<String, String> {
    let (mut config, mut output) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--output" => output = Some(PathBuf::from(it.next().ok_or("--output needs a FILE")?)),
            p if config.is_none() && !p.starts_with("--") => config = Some(PathBuf::from(p)),
            other => return Err(format!("compile: unexpected argument '{other}'")),
        }
    }
    let config = config.unwrap_or_else(load::default_path);
    let (cfg, stamp) = settled(&config)?;
    let bytes = image::compile(&cfg, stamp).map_err(|e| format!("{}: {e}", config.display()))?;
    let default = image::path_for(&config);
    let out = output.unwrap_or_else(|| default.clone());
    write_replacing(&out, &bytes).map_err(|e| format!("{}: cannot write: {e}", out.display()))?;
    // What a guard will do with it: the default place must now read as fresh.
    if out == default {
        match load::compiled_status(&config)? {
            Compiled::Fresh => {}
            other => {
                return Err(other
                    .note(&config)
                    .unwrap_or_else(|| format!("{}: not found after writing it", out.display())));
            }
        }
    }
    Ok(format!(
        "{}: compiled {} guarded tree(s) from {} ({} bytes)",
        out.display(),
        cfg.roots.len(),
        config.display(),
        bytes.len()
    ))
}

/// The configuration and the `fstat` stamp it was read with, once no later write could leave
/// that stamp as it is. File times advance by the kernel's clock tick (milliseconds): a write
/// in the same tick as the read, same size, would keep the ctime and pass an image of the old
/// text for fresh. So, as git does for a racily clean index: wait until the clock is past
/// that tick, read again, and accept only if both reads agree; any write after that gets a
/// later ctime.
fn settled(config: &Path) -> Result<(toctou_policy::Config, image::Stamp), String> {
    const TICK_NS: i64 = 50_000_000; // above any HZ's jiffy
    for _ in 0..3 {
        let (cfg, stamp) = load::load_stamped(config)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let wait = (stamp.ctime_ns.max(stamp.mtime_ns) + TICK_NS).saturating_sub(now);
        if wait > 0 {
            std::thread::sleep(std::time::Duration::from_nanos(wait.min(TICK_NS) as u64));
        }
        let (again, stamp_again) = load::load_stamped(config)?;
        if stamp_again == stamp && again == cfg {
            return Ok((cfg, stamp));
        }
    }
    Err(format!(
        "{}: changed while it was being compiled (three times): run toctou-guard compile again",
        config.display()
    ))
}

/// Write `bytes` to a new file beside `path` (0644), then rename it over `path`: a guard
/// that mapped the old image keeps its inode, whose bytes never change under it.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().ok_or(std::io::ErrorKind::InvalidInput)?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
