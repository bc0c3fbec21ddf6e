//! Scale, through the shim (issue "100,000 tenants and 100,000 vhosts at the cost of one"):
//! a program the `programs` lines leave unguarded never parses the configuration — under
//! `/etc/ld.so.preload` every `bash` and `cron` job would otherwise parse 100,000 `map`
//! lines — while a listed program parses all of it (and refuses to start on its error).
//!
//! Needs root (skipped with `SKIP:` otherwise, a failure when `CI` is set).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;

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
