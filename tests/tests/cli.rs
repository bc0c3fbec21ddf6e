//! `toctou-guard check` and `explain`, as an operator runs them (release build required).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cli() -> Option<PathBuf> {
    toctou_guard_tests::artifacts::guard_cli()
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn write_conf(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("toctou-guard.conf");
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    p
}

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().unwrap()
}

#[test]
fn check_accepts_a_good_config() {
    let Some(bin) = cli() else { return };
    let d = scratch("good");
    let conf = write_conf(&d, "mode audit\nroot /home/*/public_html\nallow_uid 0\n");
    let out = run(&bin, &["check", conf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("syntax is ok") && stdout.contains("mode audit"),
        "{stdout}"
    );
}

#[test]
fn check_names_file_and_line_of_an_error() {
    let Some(bin) = cli() else { return };
    let d = scratch("bad");
    let conf = write_conf(&d, "root /home/*/public_html\n# fine\nmap /srv/shop alice\n");
    let out = run(&bin, &["check", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The guards quote nothing of a line but its directive; the CLI shows the line itself.
    let expect = format!("{}:3: 'map': a UID is not numeric", conf.display());
    assert!(stderr.contains(&expect), "{stderr}");
    assert!(stderr.contains("\n  3 | map /srv/shop alice"), "{stderr}");
}

#[test]
fn check_refuses_a_config_others_can_write() {
    let Some(bin) = cli() else { return };
    let d = scratch("unsafe");
    let conf = write_conf(&d, "root /home/*/public_html\n");
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o666)).unwrap();
    let out = run(&bin, &["check", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("writable by group or others (mode 666)"));
}

#[test]
fn explain_shows_root_tenant_owner_and_decision() {
    let Some(bin) = cli() else { return };
    let d = scratch("explain");
    let pub_dir = d.join("home/alice/public_html");
    fs::create_dir_all(&pub_dir).unwrap();
    fs::write(pub_dir.join("index.html"), "x").unwrap();
    let conf = write_conf(&d, &format!("root {}/home/*/public_html\n", d.display()));
    let path = pub_dir.join("sub/../index.html");
    let out = run(
        &bin,
        &[
            "explain",
            path.to_str().unwrap(),
            "--config",
            conf.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!("path:     {}", pub_dir.join("index.html").display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("tenant:   {}/home/alice", d.display())),
        "{stdout}"
    );
    assert!(stdout.contains("decision: allow"), "{stdout}");
    let out = run(
        &bin,
        &["explain", "/etc/hostname", "--config", conf.to_str().unwrap()],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("outside every root"));
    let escape = pub_dir.join("../../bob/public_html/x");
    let out = run(
        &bin,
        &[
            "explain",
            escape.to_str().unwrap(),
            "--config",
            conf.to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deny (escapes-tenant)"));
}

/// A `map` inside a `root` never applies (the first root a path enters decides): `check`
/// warns, naming both lines, and `explain` says which line won and why.
#[test]
fn a_map_inside_a_root_is_reported() {
    let Some(bin) = cli() else { return };
    let d = scratch("shadow");
    let shop = d.join("home/alice/public_html/shop");
    fs::create_dir_all(&shop).unwrap();
    fs::write(shop.join("index.html"), "x").unwrap();
    let conf = write_conf(
        &d,
        &format!(
            "root {0}/home/*/public_html\nmap {0}/home/alice/public_html/shop 1005\n",
            d.display()
        ),
    );
    let out = run(&bin, &["check", conf.to_str().unwrap()]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: warning: ", conf.display()))
            && stderr.contains("(line 1)")
            && stderr.contains("line 2 never applies"),
        "{stderr}"
    );
    let out = run(
        &bin,
        &[
            "explain",
            shop.join("index.html").to_str().unwrap(),
            "--config",
            conf.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("(line 1)") && stdout.contains("also under map"),
        "{stdout}"
    );
    assert!(stdout.contains("(line 2), which never applies"), "{stdout}");
}

/// Item 3 of "The shim against a real adversary": a document root configured through a path
/// no root matches (DirectAdmin's symlinked `~/public_html`, an alias) was never guarded, and
/// nothing said so. `check --nginx-conf` / `--apache-conf` names each such document root with
/// its file and line, and the tree it resolves to; covered ones pass in silence.
#[test]
fn item3_check_warns_of_document_roots_no_root_covers() {
    let Some(bin) = cli() else { return };
    // `check` runs `nginx -T`, which must be installed.
    if toctou_guard_tests::prereq::program(&["nginx", "/usr/sbin/nginx"], "nginx").is_none() {
        return;
    }
    let d = scratch("docroots");
    let base = d.display();
    // alice's site lives under the guarded tree; `www/alice` is the alias the server uses.
    fs::create_dir_all(d.join("home/alice/public_html")).unwrap();
    fs::create_dir_all(d.join("www")).unwrap();
    std::os::unix::fs::symlink(d.join("home/alice/public_html"), d.join("www/alice")).unwrap();
    let conf = write_conf(&d, &format!("root {base}/home/*/public_html\n"));
    let nginx_conf = d.join("nginx.conf");
    fs::write(
        &nginx_conf,
        format!(
            "events {{}}\nhttp {{\n  server {{\n    listen 127.0.0.1:1;\n    root {base}/home/bob/public_html;\n  }}\n  \
             server {{\n    listen 127.0.0.1:2;\n    root {base}/www/alice;\n    location /x/ {{ alias /srv/x/; }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let out = run(
        &bin,
        &[
            "check",
            conf.to_str().unwrap(),
            "--nginx-conf",
            nginx_conf.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let at = format!("{}:", nginx_conf.display());
    assert!(
        err.contains(&format!(
            "{at}9: warning: root {base}/www/alice is not under any root"
        )) && err.contains(&format!("resolves to {base}/home/alice/public_html, which is")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{at}10: warning: alias /srv/x/ is not under any root")),
        "{err}"
    );
    assert!(
        !err.contains("home/bob"),
        "a covered document root was reported: {err}"
    );
    // Apache's configuration, includes followed.
    let apache_dir = d.join("apache2");
    fs::create_dir_all(apache_dir.join("sites-enabled")).unwrap();
    fs::write(
        apache_dir.join("apache2.conf"),
        "IncludeOptional sites-enabled/*.conf\n",
    )
    .unwrap();
    fs::write(
        apache_dir.join("sites-enabled/a.conf"),
        format!("<VirtualHost *:80>\n  DocumentRoot \"{base}/www/alice\"\n</VirtualHost>\n"),
    )
    .unwrap();
    let apache_conf = apache_dir.join("apache2.conf");
    let out = run(
        &bin,
        &[
            "check",
            conf.to_str().unwrap(),
            "--apache-conf",
            apache_conf.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2: warning: DocumentRoot {base}/www/alice is not under any root",
            apache_dir.join("sites-enabled/a.conf").display()
        )),
        "{err}"
    );
}

#[test]
fn compile_then_check_says_fresh_and_after_an_edit_stale() {
    let Some(bin) = cli() else { return };
    let d = scratch("compile");
    let conf = write_conf(&d, "root /home/*/public_html\nmap /srv/shop 1005\n");
    let c = conf.to_str().unwrap();
    let image = d.join("toctou-guard.conf.tgc");
    let out = run(&bin, &["check", c]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{}: no compiled form", image.display())),
        "{out:?}"
    );
    let out = run(&bin, &["compile", c]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&format!(
            "{}: compiled 2 guarded tree(s) from {c} (",
            image.display()
        )),
        "{out:?}"
    );
    assert_eq!(fs::metadata(&image).unwrap().permissions().mode() & 0o7777, 0o644);
    let out = run(&bin, &["check", c]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("compiled form is fresh: the guards map it"),
        "{out:?}"
    );
    fs::write(&conf, "root /home/*/public_html\nmap /srv/shop 1006\n").unwrap();
    let out = run(&bin, &["check", c]);
    assert!(out.status.success(), "a stale image is a warning: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "toctou-guard: warning: {}: compiled form stale, parsing text",
            image.display()
        )),
        "{out:?}"
    );
}

#[test]
fn compile_refuses_a_broken_or_unsafe_config_and_writes_nothing() {
    let Some(bin) = cli() else { return };
    let d = scratch("compile-bad");
    let conf = write_conf(&d, "root /home/*/public_html\nmap /srv/shop alice\n");
    let image = d.join("toctou-guard.conf.tgc");
    let out = run(&bin, &["compile", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: 'map': a UID is not numeric", conf.display()))
            && stderr.contains("\n  2 | map /srv/shop alice"),
        "{stderr}"
    );
    fs::write(&conf, "root /home/*/public_html\n").unwrap();
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o666)).unwrap();
    let out = run(&bin, &["compile", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("writable by group or others"),
        "{out:?}"
    );
    assert!(!image.exists(), "nothing written");
    assert!(
        fs::read_dir(&d)
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().contains("tmp")),
        "no temporary file left"
    );
}

/// A path that is not UTF-8 (a tenant can name its files so) is refused with a message and
/// exit 2, never a panic: `explain` cannot answer for it, so it must say so.
#[test]
fn an_argument_that_is_not_utf8_is_refused_not_a_crash() {
    use std::os::unix::ffi::OsStrExt;
    let Some(bin) = cli() else { return };
    let odd = std::ffi::OsStr::from_bytes(b"/home/t\xff/public_html/x");
    let out = Command::new(&bin).arg("explain").arg(odd).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("toctou-guard: argument 2 is not UTF-8: /home/t\\xff/public_html/x")
            && !stderr.contains("panicked"),
        "{stderr}"
    );
}
