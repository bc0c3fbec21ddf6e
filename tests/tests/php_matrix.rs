//! The PHP matrix: real php-fpm pools running as the attacker tenant behind real nginx on
//! 127.0.0.1 (`toctou_guard_tests::php_site`). Each row is one way PHP reaches a file: through
//! a library behind an extension (libcurl, libxml2, libxslt, libsqlite3, libzip, libgd,
//! libmagic, exif), PHP's own streams (`include`, a symlink, the realpath cache), a directory
//! listing (`glob`), or a program it starts (`system`, ...). Every row asserts three things:
//! the bare pool reads the victim's 0640 file (so the row can fail), the guarded pool
//! (`owner euid`, `root /`, `allow_uid 0`) never returns its bytes and logs the denial, and
//! the guarded pool serves the tenant's own file the same way.
//!
//! Needs root, nginx, php-fpm8.2 with php8.2-{curl,xml,sqlite3,zip,gd} and the shim
//! (`scripts/setup`; `cargo build --release -p toctou-guard-shim`).

use std::path::Path;

use toctou_guard_tests::heavy;
use toctou_guard_tests::php_site::{PhpSite, Pool, body, replace_with_symlink};

/// A row whose victim and own files are plain bytes: the script gets the path as `?f=`.
fn text_row(name: &str, script: &str, victim: impl Fn(&str) -> String) {
    let _heavy = heavy();
    let Some(site) = PhpSite::new() else { return };
    let (marker, own_marker) = (site.marker().to_string(), site.own_marker());
    let url = site.script(&format!("{name}.php"), script);
    let ext = Path::new(name)
        .extension()
        .map_or(String::new(), |e| e.to_string_lossy().into());
    let secret = site.victim_file(&format!("{name}/secret{ext}"), victim(&marker).as_bytes());
    let own = site.own_file(&format!("{name}/own{ext}"), victim(&own_marker).as_bytes());
    site.assert_row(&url, &secret, &marker, &own, &own_marker);
}

const XML: fn(&str) -> String = |m| format!("<?xml version=\"1.0\"?>\n<r>{m}</r>\n");

#[test]
fn php_curl_file_url() {
    text_row(
        "curl",
        r#"<?php
$c = curl_init('file://' . $_GET['f']);
curl_setopt($c, CURLOPT_RETURNTRANSFER, true);
$r = curl_exec($c);
echo $r === false ? 'DENIED ' . curl_error($c) : $r;
"#,
        |m| format!("{m}\n"),
    );
}

#[test]
fn php_simplexml_load_file() {
    text_row(
        "simplexml",
        r#"<?php
$x = @simplexml_load_file($_GET['f']);
echo $x === false ? 'DENIED' : $x->asXML();
"#,
        XML,
    );
}

#[test]
fn php_domdocument_load() {
    text_row(
        "domload",
        r#"<?php
$d = new DOMDocument();
echo @$d->load($_GET['f']) ? $d->saveXML() : 'DENIED';
"#,
        XML,
    );
}

/// libxslt loads an imported stylesheet itself (`xsl:import`), through libxml2's loader.
#[test]
fn php_xslt_import_stylesheet() {
    text_row(
        "xslimport",
        r#"<?php
$xsl = new DOMDocument();
$xsl->loadXML('<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
    . '<xsl:import href="file://' . htmlspecialchars($_GET['f']) . '"/></xsl:stylesheet>');
$p = new XSLTProcessor();
if (!@$p->importStylesheet($xsl)) { echo 'DENIED'; exit; }
$doc = new DOMDocument();
$doc->loadXML('<x/>');
echo @$p->transformToXml($doc);
"#,
        |m| {
            format!(
                "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">\
                 <xsl:output method=\"text\"/><xsl:template match=\"/\">{m}</xsl:template>\
                 </xsl:stylesheet>\n"
            )
        },
    );
}

/// A transformation reads the victim's XML with `document()`: libxslt's own load.
#[test]
fn php_xslt_transform_document() {
    text_row(
        "xsldocument",
        r#"<?php
$xsl = new DOMDocument();
$xsl->loadXML('<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
    . '<xsl:output method="text"/><xsl:template match="/">'
    . '<xsl:value-of select="document(\'file://' . htmlspecialchars($_GET['f']) . '\')/r"/>'
    . '</xsl:template></xsl:stylesheet>');
$p = new XSLTProcessor();
$p->importStylesheet($xsl);
$doc = new DOMDocument();
$doc->loadXML('<x/>');
$r = @$p->transformToXml($doc);
echo ($r === false || trim($r) === '') ? 'DENIED' : $r;
"#,
        XML,
    );
}

/// An external entity (XXE) in a document the tenant wrote: libxml2 loads the victim's file.
#[test]
fn php_xml_external_entity() {
    text_row(
        "xxe",
        r#"<?php
$x = @simplexml_load_string('<!DOCTYPE r [<!ENTITY e SYSTEM "file://' . htmlspecialchars($_GET['f'])
    . '">]><r>&e;</r>', 'SimpleXMLElement', LIBXML_NOENT);
echo $x === false ? 'DENIED' : (string)$x;
"#,
        |m| format!("{m}\n"),
    );
}

#[test]
fn php_xmlreader_open() {
    text_row(
        "xmlreader",
        r#"<?php
$r = new XMLReader();
if (!@$r->open($_GET['f'])) { echo 'DENIED'; exit; }
while (@$r->read()) { if ($r->nodeType == XMLReader::TEXT) echo $r->value; }
"#,
        XML,
    );
}

/// libzip reads a file added to the tenant's own archive itself, when the archive is closed.
#[test]
fn php_ziparchive_addfile() {
    text_row(
        "zipadd",
        r#"<?php
$o = sys_get_temp_dir() . '/tg-zipadd-' . getmypid() . '.zip';
$z = new ZipArchive();
$z->open($o, ZipArchive::CREATE | ZipArchive::OVERWRITE);
$z->addFile($_GET['f'], 's.txt');
if (!@$z->close()) { echo 'DENIED'; exit; }
$z = new ZipArchive();
$z->open($o);
echo $z->getFromName('s.txt');
unlink($o);
"#,
        |m| format!("{m}\n"),
    );
}

/// A row whose files PHP makes itself (`code` writes `$out`, given `$m`, the marker).
fn generated_row(name: &str, code: &str, script: &str, leak: impl Fn(&str) -> String) {
    let _heavy = heavy();
    let Some(site) = PhpSite::new() else { return };
    let (marker, own_marker) = (site.marker().to_string(), site.own_marker());
    let with = |m: &str| format!("$m = '{m}';\n{code}");
    let secret = site.generate_victim(&format!("{name}/secret"), &with(&marker));
    let own = site.generate(&format!("{name}-own"), &with(&own_marker));
    let url = site.script(&format!("{name}.php"), script);
    site.assert_row(&url, &secret, &leak(&marker), &own, &leak(&own_marker));
}

const SQLITE_DB: &str = "$db = new SQLite3($out);\n$db->exec('CREATE TABLE t (v TEXT)');\n\
                         $db->exec(\"INSERT INTO t VALUES ('$m')\");\n$db->close();";

#[test]
fn php_sqlite3_open() {
    generated_row(
        "sqlite3",
        SQLITE_DB,
        r#"<?php
try {
    $db = new SQLite3($_GET['f'], SQLITE3_OPEN_READONLY);
    echo @$db->querySingle('SELECT v FROM t');
} catch (Exception $e) { echo 'DENIED ', $e->getMessage(); }
"#,
        str::to_string,
    );
}

#[test]
fn php_pdo_sqlite_open() {
    generated_row(
        "pdosqlite",
        SQLITE_DB,
        r#"<?php
try {
    $db = new PDO('sqlite:' . $_GET['f'], null, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
    echo $db->query('SELECT v FROM t')->fetchColumn();
} catch (Exception $e) { echo 'DENIED ', $e->getMessage(); }
"#,
        str::to_string,
    );
}

/// SQLite opens an attached database itself: `ATTACH` from the tenant's own in-memory one.
#[test]
fn php_sqlite3_attach() {
    generated_row(
        "sqliteattach",
        SQLITE_DB,
        r#"<?php
try {
    $db = new SQLite3(':memory:');
    $db->enableExceptions(true);
    $db->exec("ATTACH DATABASE '" . SQLite3::escapeString($_GET['f']) . "' AS v");
    echo $db->querySingle('SELECT v FROM v.t');
} catch (Exception $e) { echo 'DENIED ', $e->getMessage(); }
"#,
        str::to_string,
    );
}

#[test]
fn php_ziparchive_open() {
    generated_row(
        "zip",
        "$z = new ZipArchive();\n$z->open($out, ZipArchive::CREATE | ZipArchive::OVERWRITE);\n\
         $z->addFromString('s.txt', $m);\n$z->close();",
        r#"<?php
$z = new ZipArchive();
$r = $z->open($_GET['f'], ZipArchive::RDONLY);
echo $r === true ? $z->getFromName('s.txt') : "DENIED $r";
"#,
        str::to_string,
    );
}

/// The images' secret is their size: the victim's is 317x211, the attacker's 64x48 (the
/// marker only selects which).
fn png_code() -> &'static str {
    "[$w, $h] = str_starts_with($m, 'OWN-') ? [64, 48] : [317, 211];\n\
     imagepng(imagecreatetruecolor($w, $h), $out);"
}

fn png_size(m: &str, sep: &str) -> String {
    if m.starts_with("OWN-") {
        format!("64{sep}48")
    } else {
        format!("317{sep}211")
    }
}

#[test]
fn php_finfo_file() {
    generated_row(
        "finfo",
        png_code(),
        r#"<?php
$r = @finfo_file(finfo_open(), $_GET['f']);
echo $r === false ? 'DENIED' : $r;
"#,
        |m| png_size(m, " x "),
    );
}

#[test]
fn php_getimagesize() {
    generated_row(
        "getimagesize",
        png_code(),
        r#"<?php
$r = @getimagesize($_GET['f']);
echo $r === false ? 'DENIED' : "size {$r[0]}x{$r[1]}";
"#,
        |m| png_size(m, "x"),
    );
}

#[test]
fn php_imagecreatefrompng() {
    generated_row(
        "imagecreatefrompng",
        png_code(),
        r#"<?php
$i = @imagecreatefrompng($_GET['f']);
echo $i === false ? 'DENIED' : 'size ' . imagesx($i) . 'x' . imagesy($i);
"#,
        |m| png_size(m, "x"),
    );
}

#[test]
fn php_exif_read_data() {
    generated_row(
        "exif",
        // A JPEG from gd with an EXIF segment (APP1) whose ImageDescription is the marker.
        "$i = imagecreatetruecolor(8, 8); ob_start(); imagejpeg($i); $j = ob_get_clean();\n\
         $s = $m . \"\\0\";\n\
         $tiff = \"II*\\0\" . pack('V', 8) . pack('v', 1) . pack('vvVV', 0x010E, 2, strlen($s), 26) . pack('V', 0) . $s;\n\
         $app = \"Exif\\0\\0\" . $tiff;\n\
         file_put_contents($out, substr($j, 0, 2) . \"\\xff\\xe1\" . pack('n', strlen($app) + 2) . $app . substr($j, 2));",
        r#"<?php
$e = @exif_read_data($_GET['f']);
echo $e === false ? 'DENIED' : ($e['ImageDescription'] ?? 'no description');
"#,
        str::to_string,
    );
}

#[test]
fn php_include_victim_file() {
    text_row(
        "include",
        r#"<?php
if ((@include $_GET['f']) === false) { echo 'DENIED'; }
"#,
        |m| format!("included {m}\n"),
    );
}

/// `file_get_contents` of an attacker's symlink to the victim's file (and to its own).
#[test]
fn php_file_get_contents_through_symlink() {
    let _heavy = heavy();
    let Some(site) = PhpSite::new() else { return };
    let (marker, own_marker) = (site.marker().to_string(), site.own_marker());
    let url = site.script(
        "fgc.php",
        "<?php\n$r = @file_get_contents($_GET['f']);\necho $r === false ? 'DENIED' : $r;\n",
    );
    let secret = site.victim_file("fgc/secret.txt", marker.as_bytes());
    let own = site.own_file("fgc/own.txt", own_marker.as_bytes());
    let link = site.own_symlink("fgc/link.txt", &secret);
    let own_link = site.own_symlink("fgc/ownlink.txt", &own);
    site.assert_row(&url, &link, &marker, &own_link, &own_marker);
}

/// PHP's realpath cache: `private/d/secret.txt` is read while `d` (outside the document
/// root) is the attacker's real directory; `d` is then swapped for a symlink to the victim's
/// directory and read again. PHP hands the kernel a path it resolved itself, in a place no
/// `root .../public_html` covers: only the strong form (`root /`) judges it.
#[test]
fn php_realpath_cache_directory_swap() {
    let _heavy = heavy();
    let Some(site) = PhpSite::new() else { return };
    let (marker, own_marker) = (site.marker().to_string(), site.own_marker());
    let url = site.script(
        "realpath.php",
        "<?php\n$r = @file_get_contents($_GET['f']);\necho $r === false ? 'DENIED' : $r;\n",
    );
    let victim_dir = site.victim_file("swap/secret.txt", marker.as_bytes());
    let victim_dir = victim_dir.parent().expect("victim dir").to_path_buf();
    let a = &site.tenants.attacker;
    let private = a.home.join("private");
    toctou_attack::tenants::mk_dir(&private, a.uid, a.gid, 0o755).expect("private");
    let d = private.join("d");
    let path = d.join("secret.txt");
    for pool in [Pool::Bare, Pool::Guarded] {
        if d.is_symlink() {
            std::fs::remove_file(&d).expect("remove the symlink");
        }
        toctou_attack::tenants::mk_dir(&d, a.uid, a.gid, 0o755).expect("d");
        toctou_attack::tenants::mk_file(&path, own_marker.as_bytes(), a.uid, a.gid, 0o644).expect("own");
        // Both workers of the pool fill their realpath cache with the real directory.
        for _ in 0..4 {
            let r = site.get_file(pool, &url, &path);
            assert!(
                body(&r).contains(&own_marker),
                "{pool:?}: own file in a real directory: {:?}",
                body(&r)
            );
        }
        replace_with_symlink(&site, &d, &victim_dir);
        if pool == Pool::Bare {
            let r = site.get_file(pool, &url, &path);
            assert!(
                body(&r).contains(&marker),
                "the bare pool did not read through the swapped directory: {:?}",
                body(&r)
            );
        } else {
            for _ in 0..4 {
                site.assert_refused(&url, &path, &marker);
            }
        }
    }
}

/// PHP `glob()` of the attacker's symlink to the victim's directory must not list its names
/// (issue 10 item 4: glibc's `glob` opens directories past the `opendir` hook).
#[test]
fn php_glob_symlinked_victim_directory() {
    let _heavy = heavy();
    let Some(site) = PhpSite::new() else { return };
    let (marker, own_marker) = (site.marker().to_string(), site.own_marker());
    let url = site.script(
        "glob.php",
        "<?php\n$r = glob($_GET['f'] . '/*');\necho $r === false ? 'DENIED' : implode(\"\\n\", $r);\n",
    );
    // The victim's names are the secret: the marker is a file name.
    let secret = site.victim_file(&format!("globbed/{marker}.txt"), b"x");
    let own = site.own_file(&format!("globown/{own_marker}.txt"), b"x");
    let link = site.own_symlink("globlink", secret.parent().expect("dir"));
    let own_link = site.own_symlink("globownlink", own.parent().expect("dir"));
    site.assert_row(&url, &link, &marker, &own_link, &own_marker);
}

/// The ways PHP starts a program (issue 10 item 8): `cat` of the victim's file from a pool
/// with `clear_env = yes` must stay guarded.
fn exec_row(name: &str, run: &str) {
    text_row(
        name,
        &format!("<?php\n$cmd = 'cat ' . escapeshellarg($_GET['f']) . ' 2>&1';\n{run}\n"),
        |m| format!("{m}\n"),
    );
}

#[test]
fn php_system_cat() {
    exec_row("system", "system($cmd);");
}

#[test]
fn php_exec_cat() {
    exec_row("exec", "exec($cmd, $out); echo implode(\"\\n\", $out);");
}

#[test]
fn php_shell_exec_cat() {
    exec_row("shell_exec", "echo shell_exec($cmd);");
}

#[test]
fn php_passthru_cat() {
    exec_row("passthru", "passthru($cmd);");
}

#[test]
fn php_popen_cat() {
    exec_row(
        "popen",
        "$p = popen($cmd, 'r'); echo stream_get_contents($p); pclose($p);",
    );
}

#[test]
fn php_proc_open_cat() {
    exec_row(
        "proc_open",
        "$p = proc_open($cmd, [1 => ['pipe', 'w']], $pipes);\n\
         echo stream_get_contents($pipes[1]); proc_close($p);",
    );
}

/// An explicit environment array replaces the child's environment entirely.
#[test]
fn php_proc_open_env_array_cat() {
    exec_row(
        "proc_open_env",
        "$p = proc_open($cmd, [1 => ['pipe', 'w']], $pipes, null, ['PATH' => '/usr/bin:/bin']);\n\
         echo stream_get_contents($pipes[1]); proc_close($p);",
    );
}

/// A plugin that opens a file, and a loader that loads it with `dlopen(RTLD_DEEPBIND)` as PHP
/// does (or `dlmopen(LM_ID_BASE)`), then checks the hook changed nothing else: a missing
/// library still fails with libc's `dlerror`, `dlopen(NULL)` is the program, `RTLD_NOLOAD`
/// finds the loaded plugin, a bare library name is found.
const PLUGIN_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
const char *tg_probe(void) { return "plugin"; }
/* Which tg_probe the plugin binds to: its own under RTLD_DEEPBIND, the program's without. */
const char *plugin_binds(void) { return tg_probe(); }
int plugin_read(const char *path, char *buf, int n) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -errno;
    int r = read(fd, buf, n - 1);
    close(fd);
    buf[r > 0 ? r : 0] = 0;
    return r;
}
"#;

const LOADER_C: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
const char *tg_probe(void) { return "main"; }
int main(int argc, char **argv) {
    void *h = strcmp(argv[3], "dlmopen") == 0
        ? dlmopen(LM_ID_BASE, argv[1], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND)
        : dlopen(argv[1], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) { printf("DLOPEN-FAILED %s\n", dlerror()); return 1; }
    int (*rd)(const char *, char *, int) = (int (*)(const char *, char *, int))dlsym(h, "plugin_read");
    if (!rd) { printf("DLSYM-FAILED\n"); return 1; }
    if (dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD) != h) { printf("NOLOAD-DIFFERS\n"); return 1; }
    if (dlopen(NULL, RTLD_NOW) == NULL) { printf("NULL-FAILED\n"); return 1; }
    /* A bare name is still found (ld.so.cache), though glibc now sees the shim as caller. */
    if (dlopen("libm.so.6", RTLD_NOW) == NULL) { printf("BARE-NAME-FAILED %s\n", dlerror()); return 1; }
    if (dlopen("/nonexistent/tg-missing.so", RTLD_NOW | RTLD_DEEPBIND) != NULL) { printf("MISSING-LOADED\n"); return 1; }
    const char *e = dlerror();
    if (!e || !strstr(e, "tg-missing.so")) { printf("DLERROR-WRONG %s\n", e ? e : "(null)"); return 1; }
    char buf[256];
    int r = rd(argv[2], buf, sizeof buf);
    if (r < 0) printf("ERR %d\n", -r); else printf("OK %s", buf);
    const char *(*binds)(void) = (const char *(*)(void))dlsym(h, "plugin_binds");
    printf("BIND %s\n", binds ? binds() : "?");
    return 0;
}
"#;

/// Issue 10 item 2 outside PHP: a library loaded with `RTLD_DEEPBIND` binds `open` to libc
/// unless the shim's `dlopen` drops the flag; its open of another tenant's file through a
/// symlink must be refused like any other, its open of the tenant's own file served. The
/// flag is dropped only in guarded processes: a program the configuration does not guard
/// keeps libc's binding (the plugin's own `tg_probe`, not the program's).
#[test]
fn item2_deepbind_plugin_opens_are_guarded() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    use toctou_guard_tests::shim_fixture::Fixture;
    let Some(f) = Fixture::new("deepbind", "") else {
        return;
    };
    let Some(unguarded) = Fixture::new("deepbind-off", "programs not-the-loader\n") else {
        return;
    };
    let build = |name: &str, src: &str, extra: &[&str]| {
        let c = f.base.join(format!("{name}.c"));
        let out = f.base.join(name);
        std::fs::write(&c, src).expect("write C source");
        let r = Command::new("cc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&out)
            .arg(&c)
            .args(extra)
            .output()
            .expect("cc (install gcc)");
        assert!(
            r.status.success(),
            "cc {name}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        out
    };
    let plugin = build("plugin.so", PLUGIN_C, &["-shared", "-fPIC"]);
    // -rdynamic: the program's tg_probe is in the global scope, for the plugin to bind to.
    let loader = build("loader", LOADER_C, &["-ldl", "-rdynamic"]);
    let run = |fx: &Fixture, path: &Path, how: &str| {
        let out = fx.run(&loader, &[plugin.as_os_str(), path.as_os_str(), how.as_ref()]);
        assert!(
            out.stderr.is_empty(),
            "the shim must not write to fd 2: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for how in ["dlopen", "dlmopen"] {
        // Without the shim the plugin reads the victim's file: the test can fail.
        let bare = Command::new(&loader)
            .arg(&plugin)
            .arg(f.alice("link"))
            .arg(how)
            .env_remove("LD_PRELOAD")
            .output()
            .expect("run the loader");
        let bare = String::from_utf8_lossy(&bare.stdout);
        assert_eq!(bare.trim(), "OK BOB-SECRET\nBIND plugin", "{how}");
        let refused = format!("ERR {}\nBIND main", libc::EACCES);
        assert_eq!(run(&f, &f.alice("link"), how), refused, "{how}: victim's file");
        let logs = f.logs();
        assert!(
            logs.iter()
                .any(|l| l.contains("action=deny") && l.ends_with("/public_html/link")),
            "{how}: no denial line: {logs:?}"
        );
        let own = run(&f, &f.alice("index.html"), how);
        assert_eq!(own, "OK alice-own\nBIND main", "{how}: own file");
        // Not guarded: libc's semantics, flag included.
        let off = run(&unguarded, &unguarded.alice("link"), how);
        assert_eq!(off, "OK BOB-SECRET\nBIND plugin", "{how}: unguarded program");
    }
}

/// Issue 10 item 3, the strong form's price: what a pool legally opens under `root /` with
/// `owner euid` and `allow_uid 0` — sessions, temp files, /dev, /proc/self, /etc, zoneinfo,
/// gconv, NSS, its own files through every library — is served, and not one denial is
/// logged for it (the victim's file, read last, is the only denial).
#[test]
fn php_strong_config_refuses_no_legal_open() {
    let _heavy = heavy();
    let Some(site) = PhpSite::new() else { return };
    let own_marker = site.own_marker();
    let own = site.own_file("legal/own.txt", own_marker.as_bytes());
    let own_dir = own.parent().expect("dir").to_path_buf();
    let url = site.script(
        "legal.php",
        r#"<?php
$own = $_GET['f'];
$dir = dirname($own);
$fail = [];
$check = function ($what, $ok) use (&$fail) { if (!$ok) $fail[] = $what; };
$check('session', @session_start() && ($_SESSION['n'] = 1) && session_write_close());
$t = tempnam(sys_get_temp_dir(), 'tg');
$check('tempnam', $t !== false && file_put_contents($t, 'x') === 1 && file_get_contents($t) === 'x' && unlink($t));
$h = tmpfile();
$check('tmpfile', $h !== false && fwrite($h, 'x') === 1);
$check('/dev/null', @fopen('/dev/null', 'w') !== false);
$check('/dev/urandom', strlen(random_bytes(16)) === 16 && @file_get_contents('/dev/urandom', false, null, 0, 4) !== false);
$check('/proc/self/status', str_contains((string)@file_get_contents('/proc/self/status'), 'Uid:'));
$check('/etc/passwd', str_contains((string)@file_get_contents('/etc/passwd'), 'root:'));
$check('zoneinfo', date_default_timezone_set('Europe/Paris') && (new DateTime('2020-06-01', new DateTimeZone('America/New_York')))->format('T') === 'EDT');
$check('iconv', @iconv('UTF-8', 'ISO-8859-1', "\u{e9}") === "\xe9");
$check('nss', gethostbyname('localhost') === '127.0.0.1');
$check('own file', @file_get_contents($own) !== false);
$check('own dir', is_array(@scandir($dir)) && count(glob($dir . '/*')) >= 1);
$check('own mkdir', @mkdir("$dir/sub") && @rmdir("$dir/sub"));
$c = curl_init('file://' . $own); curl_setopt($c, CURLOPT_RETURNTRANSFER, true);
$check('curl own', curl_exec($c) !== false);
$db = new SQLite3("$dir/own.db"); $db->exec('CREATE TABLE IF NOT EXISTS t (v)');
$check('sqlite own', $db->exec("INSERT INTO t VALUES (1)") && $db->querySingle('SELECT count(*) FROM t') >= 1);
$db->close();
$check('sqlite tmp', (new SQLite3(sys_get_temp_dir() . '/tg-' . getmypid() . '.db'))->exec('CREATE TABLE IF NOT EXISTS t (v)'));
$z = new ZipArchive();
$check('zip own', $z->open("$dir/own.zip", ZipArchive::CREATE | ZipArchive::OVERWRITE) === true && $z->addFromString('a', 'b') && $z->close());
$check('xml own', @simplexml_load_string('<r/>') !== false && (new DOMDocument())->loadXML('<r/>'));
echo $fail ? 'BROKEN ' . implode(', ', $fail) : 'LEGAL-OK';
"#,
    );
    site.log.clear();
    let r = site.get_file(Pool::Guarded, &url, &own);
    assert_eq!(body(&r).trim(), "LEGAL-OK", "status {}", r.status);
    // A denial we know of, read last: once its line is in, every earlier line is too.
    let secret = site.victim_file("legal/secret.txt", site.marker().as_bytes());
    let probe = site.script(
        "legal-probe.php",
        "<?php\necho @file_get_contents($_GET['f']) === false ? 'DENIED' : 'READ';\n",
    );
    assert_eq!(
        body(&site.get_file(Pool::Guarded, &probe, &secret)).trim(),
        "DENIED"
    );
    let last = site.assert_denial_logged();
    let lines = site.log.lines();
    let denials: Vec<&String> = lines.iter().filter(|l| l.contains("action=deny")).collect();
    assert_eq!(denials, vec![&last], "legal opens were refused");
    assert!(last.ends_with("/legal/secret.txt"), "{last}");
    let _ = std::fs::remove_dir_all(own_dir.join("sub"));
}

/// Issue 10, "a shared opcache": one php-fpm master, the victim's pool and the attacker's
/// pool (both guarded). After one request to the victim's pool compiled its 0600
/// `wp-config.php` into the master's opcache, the attacker's `include` of it is answered
/// from memory with no `open()` the shim could judge, unless `opcache.validate_permission`
/// is on. `toctou-guard check --php` fails the first configuration and passes the second.
#[test]
fn php_shared_opcache_needs_validate_permission_and_check_php_says_so() {
    use std::net::SocketAddr;
    use std::time::{Duration, SystemTime};
    use toctou_attack::http::{Conn, encode_query};
    use toctou_attack::process::wait_http;
    use toctou_attack::targets::php::{fastcgi_location, fpm_config, spawn_fpm};
    use toctou_attack::targets::{nginx, scratch_in, server_user, set_preload, with_port_retries};
    use toctou_attack::tenants::mk_file;

    let _heavy = heavy();
    let Some(site) = PhpSite::new() else { return };
    let Some(cli) = toctou_guard_tests::artifacts::artifact("toctou-guard", "toctou-guard") else {
        toctou_guard_tests::prereq::require(false, "toctou-guard (cargo build --release -p toctou-guard)");
        return;
    };
    let t = &site.tenants;
    let (v, a) = (&t.victim, &t.attacker);
    let marker = site.marker().to_string();
    let wp = site.victim_path("wp/wp-config.php");
    mk_file(
        &wp,
        format!("<?php $db_password = '{marker}';\n").as_bytes(),
        v.uid,
        v.gid,
        0o600,
    )
    .expect("wp-config.php");
    // Older than opcache.file_update_protection (2 s): cached on first use.
    std::fs::File::options()
        .write(true)
        .open(&wp)
        .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(3600)))
        .expect("set mtime");
    let index = site.victim_path("wp/index.php");
    mk_file(
        &index,
        b"<?php include __DIR__ . '/wp-config.php'; echo 'victim ok';\n",
        v.uid,
        v.gid,
        0o644,
    )
    .expect("index.php");
    let url = site.script(
        "opcache.php",
        "<?php\n@include $_GET['f'];\necho isset($db_password) ? $db_password : 'DENIED';\n",
    );
    let (so, conf) = (&site.so, &site.conf);
    for validate in ["0", "1"] {
        let settings = format!(
            "php_admin_value[opcache.validate_permission] = {validate}\n\
             php_admin_value[opcache.validate_root] = {validate}\n"
        );
        let started = with_port_retries(|port| {
            let dir_a = scratch_in(&t.run, &format!("opcache-a-{validate}"), port)?;
            let dir_v = scratch_in(&t.run, &format!("opcache-v-{validate}"), port)?;
            let victim_pool = format!(
                "\n[victim]\nuser = {}\ngroup = {}\nlisten = {}/php.sock\nlisten.owner = www-data\n\
                 listen.group = www-data\nlisten.mode = 0660\npm = static\npm.max_children = 1\n{settings}",
                v.uid,
                v.gid,
                dir_v.display()
            );
            let text = format!(
                "{}{settings}{victim_pool}",
                fpm_config(&dir_a, a.uid, server_user().1, 1)
            );
            let mut fpm = spawn_fpm(&site.fpm_bin, &dir_a, &text, |c| {
                set_preload(c, Some((so, conf)));
                Ok(())
            })?;
            let mut servers = vec![];
            for (i, dir) in [&dir_a, &dir_v].into_iter().enumerate() {
                let port = if i == 0 {
                    port
                } else {
                    toctou_attack::process::free_port()?
                };
                let text = nginx::config(&t.www, port, dir, "off", &fastcgi_location(dir));
                let mut ngx = nginx::spawn(&site.nginx_bin, dir, &text, |c| {
                    set_preload(c, None);
                    Ok(())
                })?;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                wait_http(addr, "/", &mut [&mut ngx, &mut fpm], Duration::from_secs(20))?;
                servers.push((addr, ngx));
            }
            Ok((fpm, servers, dir_a))
        });
        let (_fpm, servers, dir_a) = started.unwrap_or_else(|e| panic!("start the shared master: {e}"));
        let get = |addr: SocketAddr, path: &str| {
            let r = Conn::new(addr, Duration::from_secs(20)).get(path).expect("GET");
            body(&r)
        };
        let victim_url = format!("/{}", index.strip_prefix(&t.www).expect("under www").display());
        assert!(
            get(servers[1].0, &victim_url).contains("victim ok"),
            "the victim's page"
        );
        let got = get(
            servers[0].0,
            &format!("{url}?f={}", encode_query(wp.to_str().expect("utf-8"))),
        );
        let check = std::process::Command::new(&cli)
            .args(["check", "--php"])
            .arg(dir_a.join("php-fpm.conf"))
            .output()
            .expect("run toctou-guard check --php");
        let stderr = String::from_utf8_lossy(&check.stderr);
        if validate == "0" {
            assert!(
                got.contains(&marker),
                "validate_permission=0: the attacker's pool was expected to be served the victim's \
                 cached script (the case check --php exists for): {got:?}"
            );
            assert_eq!(
                check.status.code(),
                Some(1),
                "check --php passed a shared opcache: {stderr}"
            );
            assert!(
                stderr.contains("pool [tenant]") && stderr.contains("opcache.validate_permission=0"),
                "{stderr}"
            );
        } else {
            assert!(!got.contains(&marker), "LEAK with validate_permission=1: {got:?}");
            assert!(
                check.status.success(),
                "check --php failed a safe config: {stderr}"
            );
        }
    }
}
