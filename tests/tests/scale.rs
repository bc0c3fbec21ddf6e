//! Scale, through the shim (issue "100,000 tenants and 100,000 vhosts at the cost of one"):
//! a program the `programs` lines leave unguarded never parses the configuration — under
//! `/etc/ld.so.preload` every `bash` and `cron` job would otherwise parse 100,000 `map`
//! lines — while a listed program parses all of it (and refuses to start on its error).
//!
//! A compiled configuration (`toctou-guard compile`) is mapped by the shim and honours every
//! map line (sampled); after an edit of the text without compiling, the text decides.
//!
//! Needs root (skipped with `SKIP:` otherwise, a failure when `CI` is set).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use toctou_guard_tests::shim_fixture::{Fixture, c_program};

#[test]
fn unlisted_programs_do_not_parse_a_hundred_thousand_maps() {
    let Some(f) = Fixture::new("scale-programs", "") else {
        return;
    };
    let hooks = c_program("hooks");
    let mut maps = String::new();
    for i in 0..100_000 {
        maps.push_str(&format!(
            "map /var/www/vhosts/d{i}.example/httpdocs {}\n",
            10_000 + i
        ));
    }
    // The last line is an error: only a program that parses the file can see it.
    let write = |name: &str, programs: &str| {
        let p = f.base.join("etc").join(name);
        fs::write(
            &p,
            format!(
                "{programs}\nroot {}/home/*/public_html\n{maps}no_such_directive x\n",
                f.base.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        p
    };
    let unlisted = write("unlisted.conf", "programs nginx php-fpm*");
    let listed = write("listed.conf", "programs hooks");
    let run = |conf: &std::path::Path| {
        f.command(&hooks)
            .env("TOCTOU_GUARD_CONFIG", conf)
            .args([OsStr::new("open"), OsStr::new("/etc/hostname")])
            .output()
            .unwrap()
    };
    let out = run(&unlisted);
    assert!(
        out.status.success() && out.stdout.starts_with(b"OK") && out.stderr.is_empty(),
        "an unlisted program must run unguarded without reading further: {out:?}"
    );
    let out = run(&listed);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!("{}:100003:", listed.display()))
            && err.contains("refusing to start"),
        "a listed program parses every line: {out:?}"
    );
}

/// `map BASE/vhosts/dI/httpdocs UID` for 100,000 vhosts, `10_000 + I` each: the directories
/// exist (with `own.txt`, the map's owner's, and `other.txt`, uid `20_000 + I`'s) only for
/// the sampled `I`s.
fn vhost_maps(base: &Path, samples: &[u32]) -> String {
    let mut maps = String::new();
    for i in 0..100_000u32 {
        maps.push_str(&format!(
            "map {}/vhosts/d{i}/httpdocs {}\n",
            base.display(),
            10_000 + i
        ));
    }
    for &i in samples {
        let dir = base.join(format!("vhosts/d{i}/httpdocs"));
        fs::create_dir_all(&dir).unwrap();
        for (name, uid) in [("own.txt", 10_000 + i), ("other.txt", 20_000 + i)] {
            let p = dir.join(name);
            fs::write(&p, format!("{name} of d{i}\n")).unwrap();
            std::os::unix::fs::chown(&p, Some(uid), Some(uid)).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    fs::set_permissions(base.join("vhosts"), fs::Permissions::from_mode(0o755)).unwrap();
    maps
}

/// Does a guarded process started now map the compiled form (`/proc/PID/maps` names it)?
/// A `sleep` holds the guard's state (loaded in the constructor) while it is looked at.
fn maps_the_image(f: &Fixture, image: &Path) -> bool {
    let mut child = f.command(Path::new("/bin/sleep")).arg("20").spawn().unwrap();
    let pid = child.id();
    // Loaded once the shim's announcement mapping is there.
    let maps = toctou_guard_tests::poll::wait_for("the guard in sleep", Duration::from_secs(10), || {
        fs::read_to_string(format!("/proc/{pid}/maps"))
            .ok()
            .filter(|m| m.contains("toctou-guard:mode="))
    });
    let _ = child.kill();
    let _ = child.wait();
    maps.contains(&image.display().to_string())
}

#[test]
fn a_compiled_hundred_thousand_maps_config_is_mapped_and_every_map_honoured() {
    let Some(f) = Fixture::new("scale-compiled", "") else {
        return;
    };
    let Some(cli) = toctou_guard_tests::artifacts::guard_cli() else {
        return;
    };
    let samples: Vec<u32> = (0..100_000).step_by(4999).chain([99_999]).collect();
    let maps = vhost_maps(&f.base, &samples);
    let text = fs::read_to_string(&f.conf).unwrap() + &maps;
    fs::write(&f.conf, &text).unwrap();
    let image = toctou_policy::image::path_for(&f.conf);
    let run_cli = |args: &[&OsStr]| Command::new(&cli).args(args).output().unwrap();
    let out = run_cli(&[OsStr::new("compile"), f.conf.as_os_str()]);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("compiled 100001 guarded tree(s)"),
        "{out:?}"
    );
    let out = run_cli(&[OsStr::new("check"), f.conf.as_os_str()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("compiled form is fresh: the guards map it"),
        "{out:?}"
    );
    assert!(maps_the_image(&f, &image), "the shim maps {}", image.display());
    // Each process that parses the text pays ~0.3 s: those rounds check a few vhosts only.
    let few = [samples[0], samples[3], samples[samples.len() - 1]];
    let honoured = |f: &Fixture, samples: &[u32], moved: Option<u32>| {
        for &i in samples {
            let dir = f.base.join(format!("vhosts/d{i}/httpdocs"));
            let (own, other) = (
                f.hook("open", &dir.join("own.txt"), None),
                f.hook("open", &dir.join("other.txt"), None),
            );
            let (want_own, want_other) = if moved == Some(i) {
                ("ERR EACCES".to_string(), format!("OK other.txt of d{i}"))
            } else {
                (format!("OK own.txt of d{i}"), "ERR EACCES".to_string())
            };
            assert_eq!(
                (own, other),
                (want_own, want_other),
                "vhost d{i} (map moved: {moved:?})"
            );
        }
    };
    honoured(&f, &samples, None);
    assert!(
        !f.logs().iter().any(|l| l.contains("compiled form")),
        "a fresh image is used silently"
    );

    // The text edited without compiling: one map's owner changes. The guards must see the
    // edit (the image is stale), say so once per process, and not map the image.
    let moved = samples[3];
    let edited = text.replace(
        &format!("/vhosts/d{moved}/httpdocs {}\n", 10_000 + moved),
        &format!("/vhosts/d{moved}/httpdocs {}\n", 20_000 + moved),
    );
    assert_ne!(edited, text);
    fs::write(&f.conf, &edited).unwrap();
    honoured(&f, &few, Some(moved));
    let stale = format!("{}: compiled form stale, parsing text", image.display());
    assert!(
        f.logs().iter().any(|l| l.contains(&stale)),
        "the log says the image is stale"
    );
    assert!(!maps_the_image(&f, &image), "a stale image is not kept mapped");
    let out = run_cli(&[OsStr::new("check"), f.conf.as_os_str()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&stale), "{out:?}");
    let _ = f.logs();

    // Compiled again, it is used again; made group-writable, it is refused for the text.
    assert!(
        run_cli(&[OsStr::new("compile"), f.conf.as_os_str()])
            .status
            .success()
    );
    assert!(maps_the_image(&f, &image));
    honoured(&f, &samples, Some(moved));
    // Silent again (and the log socket's queue, finite, emptied: the guards never block on it).
    assert!(!f.logs().iter().any(|l| l.contains("compiled form")));
    fs::set_permissions(&image, fs::Permissions::from_mode(0o664)).unwrap();
    honoured(&f, &few, Some(moved));
    assert!(!maps_the_image(&f, &image), "a group-writable image is not used");
    let logs = f.logs();
    assert!(
        logs.iter().any(
            |l| l.contains(&format!("{}: refusing to trust it", image.display()))
                && l.contains("parsing text")
        ),
        "the refusal is logged"
    );

    // A symlink in its place, to an image compiled from this very text, is refused too.
    let elsewhere = f.base.join("etc/elsewhere.tgc");
    let out = run_cli(&[
        OsStr::new("compile"),
        f.conf.as_os_str(),
        OsStr::new("--output"),
        elsewhere.as_os_str(),
    ]);
    assert!(out.status.success(), "{out:?}");
    fs::remove_file(&image).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &image).unwrap();
    honoured(&f, &few, Some(moved));
    // (/proc/PID/maps would name the file the link leads to.)
    assert!(!maps_the_image(&f, &elsewhere), "a symlinked image is not used");
    let logs = f.logs();
    assert!(
        logs.iter().any(
            |l| l.contains(&format!("{}: is a symbolic link", image.display())) && l.contains("parsing text")
        ),
        "the refusal is logged"
    );
}
