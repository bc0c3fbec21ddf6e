//! Process start under `/etc/ld.so.preload`: what every program on the box pays when the
//! shim is loaded into all of them, with a configuration of 100,000 `map` lines against a
//! one-rule configuration and against no preload at all, and with the same 100,000 lines
//! compiled (`toctou-guard compile`: `CONFIG.tgc` mapped instead of the text parsed); for a
//! guarded server (`nginx -t`) and for a program the `programs` filter leaves out
//! (`bash -c true`).
//!
//! `startup [--runs N (50)] [--maps N (100000)] [--no-instructions] [--compare-so LIB]`
//!
//! `--compare-so LIB` adds every preloaded cell again with LIB in `/etc/ld.so.preload` (e.g.
//! the shim before a change), in the same rotation; a cell whose program does not start
//! (an older shim refusing the configuration) says `refused` and why.
//!
//! As root, in a private mount namespace whose `/etc` is an overlay of the real one (the
//! method of `tests/src/private_etc.rs`): the real `/etc` is never written, and the overlay
//! vanishes with this process. Inside it, each start is one `fork`+`exec`+`wait4` of the
//! program, timed from before the fork to after the reap, with its maximum RSS from
//! `wait4`'s rusage; the variants rotate every run. The forks are made by a small helper
//! process (this program, `--spawner`), started before any `/etc/ld.so.preload` exists:
//! `ru_maxrss` counts the forked copy of the parent too, so the parent must be small and
//! unguarded; its own RSS, the floor of every figure, is printed. Instructions: `perf stat -r N -e
//! instructions:u` when the machine has counters, else one start under
//! `valgrind --tool=callgrind` (a start's instruction count hardly varies), which also
//! shows that the shim was loaded and whether it mapped the compiled image.
//!
//! The image is fresh only for the text's dev/ino/size/mtime/ctime, and the rename that
//! puts a parked configuration in place changes its ctime: so the compiled cell compiles
//! after its text is renamed in (outside the timed start), and its `.tgc` is removed when
//! the next cell takes `/etc/toctou-guard.conf` (a stale image beside the text cell would
//! only add a check, but the text cell must measure the text alone).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::str::FromStr;
use std::time::Instant;

use toctou_attack::artefacts::{self, SHIM};
use toctou_attack::sys;
use toctou_guard_bench::CLI;
use toctou_guard_bench::cost::callgrind_total;
use toctou_guard_bench::fixture::map_lines;
use toctou_guard_bench::proc;
use toctou_guard_bench::stats::{fmt_ratio, median, range, ratios};

/// The configuration every guarded start reads.
const CONF: &str = "/etc/toctou-guard.conf";
/// Its compiled form (`toctou_policy::image::path_for(CONF)`), written by `toctou-guard compile`.
const CONF_IMAGE: &str = "/etc/toctou-guard.conf.tgc";
const PRELOAD: &str = "/etc/ld.so.preload";
/// Only the servers are guarded; everything else is left alone, as README advises for
/// `/etc/ld.so.preload`.
const PROGRAMS: &str = "programs nginx php-fpm* apache2";

struct Args {
    runs: usize,
    maps: u32,
    instructions: bool,
    /// Another `libtoctou_guard.so`: its cells rotate with the others.
    compare_so: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        runs: 50,
        maps: 100_000,
        instructions: true,
        compare_so: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => a.runs = number(&flag, value()?)?,
            "--maps" => a.maps = number(&flag, value()?)?,
            "--no-instructions" => a.instructions = false,
            "--compare-so" => a.compare_so = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!(
                    "usage: startup [--runs N (50)] [--maps N (100000)] [--no-instructions] [--compare-so LIB]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    a.runs = a.runs.clamp(1, 1000);
    a.maps = a.maps.clamp(1, 1_000_000);
    Ok(a)
}

fn number<T: FromStr>(flag: &str, v: String) -> Result<T, String> {
    v.parse().map_err(|_| format!("{flag}: not a number"))
}

/// What `/etc` holds for a start.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Etc {
    /// No `/etc/ld.so.preload`.
    Bare,
    /// The shim preloaded, the configuration one `root` rule (and `programs`).
    OneRule,
    /// The shim preloaded, the configuration the `root` rule plus the `map` lines.
    Maps,
    /// The same text, compiled beside it (`/etc/toctou-guard.conf.tgc`).
    Compiled,
}

impl Etc {
    const ALL: [Etc; 4] = [Etc::Bare, Etc::OneRule, Etc::Maps, Etc::Compiled];

    fn label(self, maps: u32) -> String {
        match self {
            Etc::Bare => "no ld.so.preload".into(),
            Etc::OneRule => "preload, 1-rule config".into(),
            Etc::Maps => format!("preload, {maps} map lines"),
            Etc::Compiled => format!("preload, {maps} map lines compiled"),
        }
    }

    /// Where this configuration waits in `/etc` while another is in use.
    fn parked(self) -> Option<&'static str> {
        match self {
            Etc::Bare => None,
            Etc::OneRule => Some("/etc/toctou-guard-bench-1rule.conf"),
            Etc::Maps => Some("/etc/toctou-guard-bench-maps.conf"),
            Etc::Compiled => Some("/etc/toctou-guard-bench-maps-compiled.conf"),
        }
    }
}

/// One cell's `/etc`: its configuration state and which shim `/etc/ld.so.preload` names
/// (an index into the shims: 0 the tree's, 1 `--compare-so`'s).
#[derive(Clone, Copy, PartialEq, Eq)]
struct State {
    etc: Etc,
    shim: usize,
}

impl State {
    /// Every state of the tree's shim, then the preloaded ones of each other shim.
    fn all(shims: usize) -> Vec<State> {
        let mut v: Vec<State> = Etc::ALL.iter().map(|&etc| State { etc, shim: 0 }).collect();
        for shim in 1..shims {
            v.extend(
                Etc::ALL
                    .iter()
                    .filter(|&&e| e != Etc::Bare)
                    .map(|&etc| State { etc, shim }),
            );
        }
        v
    }

    fn label(self, maps: u32) -> String {
        let b = if self.shim > 0 { " (shim B)" } else { "" };
        format!("{}{b}", self.etc.label(maps))
    }
}

/// The programs started.
fn programs() -> Result<Vec<(String, Vec<OsString>)>, String> {
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .ok_or("nginx not found")?;
    Ok(vec![
        (
            "nginx -t (guarded)".into(),
            vec![nginx.into(), "-t".into(), "-q".into()],
        ),
        (
            "bash -c true (not in programs)".into(),
            vec!["/bin/bash".into(), "-c".into(), "true".into()],
        ),
    ])
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--spawner") {
        spawner();
        return;
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("startup: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("startup: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    if sys::geteuid() != 0 {
        return Err("run as root: /etc is overlaid in a private mount namespace".into());
    }
    let mut shims = Vec::new();
    for so in std::iter::once(SHIM.locate()?).chain(args.compare_so.clone()) {
        shims.push(std::fs::canonicalize(&so).map_err(|e| format!("shim {}: {e}", so.display()))?);
    }
    let cli = CLI.locate()?;
    let dir = std::env::var_os("TOCTOU_BENCH_DIR")
        .map_or_else(|| PathBuf::from("/var/tmp/toctou-guard-bench"), PathBuf::from)
        .join(format!("startup-{}", std::process::id()));
    let result = private_etc(&dir).and_then(|()| {
        // Before any /etc/ld.so.preload: the spawner runs unguarded, as small as it started.
        let mut spawner = Spawner::new()?;
        measure(args, &shims, &cli, &mut spawner)
    });
    // The namespace (and its overlay) goes with this process; the layers' directories stay.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Enter a private mount namespace and mount an overlay on `/etc` whose upper layer is
/// `dir/upper` (empty, 0755: the merged `/etc` takes its mode, and the guard refuses a
/// configuration in a group- or world-writable directory).
fn private_etc(dir: &Path) -> Result<(), String> {
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", upper.display()))?;
    // SAFETY: unshare takes no pointers; this process is single-threaded here.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNS): {}",
            std::io::Error::last_os_error()
        ));
    }
    // No mount made here may propagate back to the real namespace.
    sh("mount", &["--make-rprivate", "/"])?;
    let opts = format!(
        "lowerdir=/etc,upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    sh("mount", &["-t", "overlay", "overlay", "-o", &opts, "/etc"])?;
    // Whatever the real /etc says, only what we write counts.
    for f in [CONF, PRELOAD] {
        if Path::new(f).exists() {
            std::fs::remove_file(f).map_err(|e| format!("rm {f} (in the overlay): {e}"))?;
        }
    }
    Ok(())
}

fn sh(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Root-owned 0644 in the overlay's `/etc`.
fn write_etc(path: &str, text: &[u8]) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {path}: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| format!("chmod {path}: {e}"))
}

/// Puts `to` in place: `/etc/toctou-guard.conf` (renamed in from where it was parked, so no
/// start reads a half-written file; compiled after the rename for [`Etc::Compiled`]) and
/// `/etc/ld.so.preload` naming `to`'s shim. The seconds `toctou-guard compile` took and the
/// image's size, when it ran.
fn switch(
    from: Option<State>,
    to: State,
    shims: &[PathBuf],
    cli: &Path,
) -> Result<Option<(f64, u64)>, String> {
    if from == Some(to) {
        return Ok(None);
    }
    // Another shim with the same configuration: only the preload line changes.
    let moved = from.map(|f| f.etc) != Some(to.etc);
    let from = from.map(|f| f.etc).filter(|_| moved);
    if from == Some(Etc::Compiled) {
        std::fs::remove_file(CONF_IMAGE).map_err(|e| format!("rm {CONF_IMAGE}: {e}"))?;
    }
    if let Some(p) = from.and_then(Etc::parked) {
        std::fs::rename(CONF, p).map_err(|e| format!("park {CONF}: {e}"))?;
    }
    match to.etc.parked() {
        Some(p) => {
            if moved {
                std::fs::rename(p, CONF).map_err(|e| format!("rename {p} {CONF}: {e}"))?;
            }
            write_etc(PRELOAD, format!("{}\n", shims[to.shim].display()).as_bytes())?;
            if moved && to.etc == Etc::Compiled {
                return compile(cli).map(Some);
            }
            Ok(None)
        }
        None => match std::fs::remove_file(PRELOAD) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("rm {PRELOAD}: {e}")),
            _ => Ok(None),
        },
    }
}

/// `toctou-guard compile /etc/toctou-guard.conf` (it checks the image it wrote reads as
/// fresh): the seconds it took, and the image's size.
fn compile(cli: &Path) -> Result<(f64, u64), String> {
    let t0 = Instant::now();
    let out = Command::new(cli)
        .args(["compile", CONF])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", cli.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} compile {CONF}: {}: {}",
            cli.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let secs = t0.elapsed().as_secs_f64();
    let size = std::fs::metadata(CONF_IMAGE).map_err(|e| format!("{CONF_IMAGE} after compile: {e}"))?;
    Ok((secs, size.len()))
}

/// `--spawner`: for each line `ERRFILE\tPROGRAM\tARG…` on stdin, one start of the program
/// (stderr to ERRFILE), answered with `MS MAXRSS_KIB STATUS` (or `error TEXT`); then
/// `rss KIB` of itself when asked `rss`. Allocates nothing that grows.
fn spawner() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let reply = if line == "rss" {
            format!("rss {}", vm_rss_kib())
        } else {
            let mut f = line.split('\t');
            let (err, argv): (_, Vec<&str>) = (f.next().unwrap_or_default(), f.collect());
            match spawn_once(Path::new(err), &argv) {
                Ok((ms, rss, status)) => format!("{ms} {rss} {status}"),
                Err(e) => format!("error {e}"),
            }
        };
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
}

/// This process's resident set, KiB.
fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// One fork+exec+wait4 of `argv`: milliseconds, maximum RSS (KiB), wait status.
fn spawn_once(err_file: &Path, argv: &[&str]) -> Result<(f64, i64, i32), String> {
    let program = argv.first().ok_or("no program")?;
    let err = std::fs::File::create(err_file).map_err(|e| format!("create {}: {e}", err_file.display()))?;
    let t0 = Instant::now();
    let child = Command::new(program)
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let (status, ru) = proc::wait4(child.id())?;
    Ok((t0.elapsed().as_secs_f64() * 1e3, ru.ru_maxrss, status))
}

/// The `--spawner` helper, driven over pipes.
struct Spawner {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    _process: toctou_attack::process::ServerProcess,
}

impl Spawner {
    fn new() -> Result<Spawner, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--spawner");
        let (p, stdin, stdout) =
            toctou_attack::process::ServerProcess::spawn_piped("spawner", cmd).map_err(|e| e.to_string())?;
        Ok(Spawner {
            stdin,
            stdout: BufReader::new(stdout),
            _process: p,
        })
    }

    fn ask(&mut self, line: &str) -> Result<String, String> {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("spawner: {e}"))?;
        let mut reply = String::new();
        self.stdout
            .read_line(&mut reply)
            .map_err(|e| format!("spawner: {e}"))?;
        match reply.trim() {
            "" => Err("spawner exited".into()),
            r => r
                .strip_prefix("error ")
                .map_or_else(|| Ok(r.to_string()), |e| Err(e.to_string())),
        }
    }

    /// One start: wall milliseconds, maximum RSS in KiB; `Ok(Err)` with its stderr if the
    /// program failed (e.g. an older shim refusing a configuration), `Err` if the spawner did.
    fn start(&mut self, argv: &[OsString], err_file: &Path) -> Result<Result<(f64, u64), String>, String> {
        let mut line = err_file.display().to_string();
        for a in argv {
            line.push('\t');
            line.push_str(&a.to_string_lossy());
        }
        let reply = self.ask(&line)?;
        let (ms, rss, status) = parse_reply(&reply).ok_or_else(|| format!("spawner: {reply}"))?;
        if status != 0 {
            let text = std::fs::read_to_string(err_file).unwrap_or_default();
            return Ok(Err(format!("wait status {status}: {}", text.trim())));
        }
        Ok(Ok((ms, rss)))
    }
}

/// The spawner's `MS MAXRSS_KIB STATUS`.
fn parse_reply(reply: &str) -> Option<(f64, u64, i32)> {
    let mut f = reply.split_whitespace();
    let ms = f.next()?.parse().ok()?;
    let rss = f.next()?.parse().ok()?;
    let status = f.next()?.parse().ok()?;
    f.next().is_none().then_some((ms, rss, status))
}

/// Mean instructions from `perf stat -x,` output (`VALUE,UNIT,EVENT,…`).
fn parse_perf(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.contains("instructions"))
        .and_then(|l| l.split(',').next())
        .and_then(|v| v.parse::<f64>().ok())
}

/// Per program and `/etc`: start times (ms) and maximum RSS (KiB).
struct Cell {
    times: Vec<f64>,
    rss: Vec<f64>,
    instructions: String,
    /// Why the program did not start in this cell: its starts stop, the other cells go on.
    refused: Option<String>,
}

fn measure(args: &Args, shims: &[PathBuf], cli: &Path, spawner: &mut Spawner) -> Result<(), String> {
    let states = State::all(shims.len());
    let root = "root /srv/toctou-guard-bench/*/public_html";
    write_etc(
        Etc::OneRule.parked().unwrap_or_default(),
        format!("{root}\n{PROGRAMS}\n").as_bytes(),
    )?;
    let mut big = format!("{root}\n{PROGRAMS}\n");
    big.push_str(&map_lines(args.maps));
    write_etc(Etc::Maps.parked().unwrap_or_default(), big.as_bytes())?;
    write_etc(Etc::Compiled.parked().unwrap_or_default(), big.as_bytes())?;
    let big_len = big.len();
    drop(big);
    let programs = programs()?;
    println!("# toctou-guard startup under /etc/ld.so.preload (private mount namespace, overlay /etc)");
    println!("shim: {}", artefacts::describe(&shims[0]));
    if let Some(b) = shims.get(1) {
        println!("shim B: {}", artefacts::describe(b));
    }
    println!("compiler: {} compile {CONF}", artefacts::describe(cli));
    println!(
        "config: `{root}` + `{PROGRAMS}` (1-rule), the same + {} `map` lines ({} bytes; also compiled after each rename into place, untimed); {} starts per cell, interleaved; load before: {}",
        args.maps,
        big_len,
        args.runs,
        proc::loadavg()
    );
    let err_file = std::env::temp_dir().join(format!("toctou-startup-{}.err", std::process::id()));
    let mut cells: Vec<Vec<Cell>> = programs
        .iter()
        .map(|_| {
            states
                .iter()
                .map(|_| Cell {
                    times: Vec::new(),
                    rss: Vec::new(),
                    instructions: "–".into(),
                    refused: None,
                })
                .collect()
        })
        .collect();
    let mut current = None;
    let mut compiles = Vec::new();
    let n = programs.len() * states.len();
    let (busy0, total0) = proc::cpu_jiffies();
    for run in 0..args.runs {
        // Rotate the order every run, so no variant always follows the same one.
        for k in 0..n {
            let idx = (k + run) % n;
            let (p, e) = (idx / states.len(), idx % states.len());
            let cell = &mut cells[p][e];
            if cell.refused.is_some() {
                continue;
            }
            compiles.extend(switch(current, states[e], shims, cli)?);
            current = Some(states[e]);
            match spawner.start(&programs[p].1, &err_file)? {
                Ok((ms, rss)) => {
                    cell.times.push(ms);
                    cell.rss.push(rss as f64);
                }
                Err(why) => {
                    eprintln!(
                        "startup: {} with {}: did not start: {why}",
                        programs[p].0,
                        states[e].label(args.maps)
                    );
                    cell.refused = Some(why);
                }
            }
        }
    }
    let (busy1, total1) = proc::cpu_jiffies();
    let busy = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
    if args.instructions {
        let perf = perf_works();
        for (p, (_, argv)) in programs.iter().enumerate() {
            for (e, state) in states.iter().enumerate() {
                if cells[p][e].refused.is_some() {
                    continue;
                }
                compiles.extend(switch(current, *state, shims, cli)?);
                current = Some(*state);
                cells[p][e].instructions = if perf {
                    perf_instructions(argv, args.runs)
                } else {
                    callgrind_instructions(argv, &err_file)
                }
                .unwrap_or_else(|e| format!("n/a ({e})"));
            }
        }
    }
    let _ = std::fs::remove_file(&err_file);
    let secs: Vec<f64> = compiles.iter().map(|c| c.0).collect();
    println!(
        "toctou-guard compile ran {} times (untimed), median {:.2} s; image {} bytes",
        compiles.len(),
        median(&secs),
        compiles.last().map_or(0, |c| c.1)
    );
    println!(
        "\n| program | /etc | start ms, median [min–max] | ratio to no preload, same run | max RSS KiB (median) | instructions per start |"
    );
    println!("|---|---|---|---|---|---|");
    for (p, (name, _)) in programs.iter().enumerate() {
        let bare = cells[p][0].times.clone();
        for (e, state) in states.iter().enumerate() {
            let c = &cells[p][e];
            if let Some(why) = &c.refused {
                // The first line: the shim's own message.
                let why = why.lines().next().unwrap_or_default();
                println!(
                    "| {name} | {} | refused: {why} | n/a | n/a | – |",
                    state.label(args.maps)
                );
                continue;
            }
            let (lo, hi) = range(&c.times);
            println!(
                "| {name} | {} | {:.2} [{lo:.2}–{hi:.2}] | {} | {:.0} | {} |",
                state.label(args.maps),
                median(&c.times),
                // Start i of this cell over start i of the bare cell: the same run.
                fmt_ratio(&ratios(&c.times, &bare)),
                median(&c.rss),
                c.instructions
            );
        }
    }
    let helper = spawner.ask("rss")?;
    println!(
        "\nmax RSS (wait4) is at least the forking helper's own: {} KiB (its copy before exec)",
        helper.trim_start_matches("rss ")
    );
    println!(
        "machine busy during the timed starts: {:.0}% of both CPUs (this benchmark included); load after: {}",
        100.0 * busy,
        proc::loadavg()
    );
    Ok(())
}

/// Does `perf stat -e instructions:u` count here? (Not in a VM that hides its PMU.)
fn perf_works() -> bool {
    Command::new("perf")
        .args(["stat", "-x,", "-e", "instructions:u", "true"])
        .output()
        .is_ok_and(|o| {
            let e = String::from_utf8_lossy(&o.stderr);
            o.status.success() && !e.contains("not supported") && !e.contains("not counted")
        })
}

/// Mean user-space instructions of `runs` starts, from `perf stat -r`.
fn perf_instructions(argv: &[OsString], runs: usize) -> Result<String, String> {
    let out = Command::new("perf")
        .args([
            "stat",
            "-x,",
            "-e",
            "instructions:u",
            "-r",
            &runs.to_string(),
            "--",
        ])
        .args(argv)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("perf: {e}"))?;
    let text = String::from_utf8_lossy(&out.stderr);
    let n = parse_perf(&text).ok_or_else(|| format!("perf stat: {}", text.trim()))?;
    Ok(format!("{n:.0} (perf, mean of {runs})"))
}

/// User-space instructions of one start under callgrind, and whether the shim was in it.
fn callgrind_instructions(argv: &[OsString], err_file: &Path) -> Result<String, String> {
    let out = err_file.with_extension("callgrind");
    let status = Command::new("valgrind")
        .args(["-q", "--tool=callgrind"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("valgrind: {e}"))?;
    let text = std::fs::read_to_string(&out).map_err(|e| format!("read {}: {e}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    if !status.success() {
        return Err(format!("valgrind {argv:?}: {status}"));
    }
    let ir = callgrind_total(&text).ok_or("no callgrind summary")?;
    let shim = what_loaded(&text);
    Ok(format!("{ir} (callgrind; {shim})"))
}

/// What the shim did with the configuration, from the function names of a callgrind dump:
/// a fresh image is checked through (`Image::validate`) before a guarded program uses it,
/// and a program the `programs` lines leave out reads only its header (`open_header`); the
/// text is parsed (`load::parse`, also for a stale image) or, for a program left unguarded,
/// prescanned (`program_left_unguarded`).
fn what_loaded(callgrind: &str) -> &'static str {
    let has = |f: &str| callgrind.contains(f);
    if !has("libtoctou_guard") {
        "no shim"
    } else if has("Image::validate") {
        "shim loaded, image mapped"
    } else if has("toctou_policy::load::parse\n") || has("program_left_unguarded") {
        "shim loaded, text read"
    } else if has("Image::open_header") {
        "shim loaded, image header only"
    } else {
        "shim loaded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spawner_replies_and_perf() {
        assert_eq!(parse_reply("2.5 6816 0"), Some((2.5, 6816, 0)));
        assert_eq!(parse_reply("2.5 6816 256"), Some((2.5, 6816, 256)));
        assert_eq!(parse_reply("2.5 6816"), None);
        assert_eq!(parse_reply("2.5 6816 0 extra"), None);
        assert_eq!(parse_reply("rss 2264"), None);
        assert_eq!(
            parse_perf("8343260,,instructions:u,1000,100.00,,\n"),
            Some(8343260.0)
        );
        assert_eq!(parse_perf("<not supported>,,instructions:u,0,100.00,,\n"), None);
    }

    #[test]
    fn shim_b_repeats_every_preloaded_state() {
        let s = State::all(2);
        assert_eq!(s.len(), 7);
        assert!(s[..4].iter().all(|x| x.shim == 0));
        assert!(s[4..].iter().all(|x| x.shim == 1 && x.etc != Etc::Bare));
        assert_eq!(s[6].label(100), "preload, 100 map lines compiled (shim B)");
        assert_eq!(State::all(1).len(), Etc::ALL.len());
    }

    #[test]
    fn tells_an_image_from_the_text() {
        // Function names as a callgrind dump of the shim's start has them.
        let lib = "ob=(3) /t/libtoctou_guard.so\n";
        let header = "fn=(1032) toctou_policy::image::Image::open_header\n";
        let settings = "fn=(1044) toctou_policy::config::Config::parse_inner\n";
        assert_eq!(what_loaded("ob=(1) /usr/lib/libc.so.6\nfn=(2) main\n"), "no shim");
        let mapped = format!("{lib}{header}{settings}fn=(1192) toctou_policy::image::Image::validate\n");
        assert_eq!(what_loaded(&mapped), "shim loaded, image mapped");
        let parsed = format!("{lib}fn=(1202) toctou_policy::load::parse\n{settings}");
        assert_eq!(what_loaded(&parsed), "shim loaded, text read");
        let stale = format!("{lib}{header}{settings}fn=(1202) toctou_policy::load::parse\n");
        assert_eq!(what_loaded(&stale), "shim loaded, text read");
        let prescan = format!("{lib}fn=(1170) toctou_policy::config::program_left_unguarded\n");
        assert_eq!(what_loaded(&prescan), "shim loaded, text read");
        assert_eq!(
            what_loaded(&format!("{lib}{header}{settings}")),
            "shim loaded, image header only"
        );
        assert_eq!(what_loaded(lib), "shim loaded");
    }
}
