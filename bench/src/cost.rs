//! Instructions and system calls per request of one server worker, bare vs `+shim`: counts,
//! not times, so they are stable on a shared machine.
//!
//! - System calls: `strace -c -f -p WORKER` around exactly N requests ([`crate::client`]),
//!   and a full `strace -f -p WORKER` of a few requests, to compare the per-request lists.
//! - Instructions (user space): the hardware counters are not exposed in this VM (`perf
//!   stat -e instructions` says `<not supported>`), so the server runs under
//!   `valgrind --tool=callgrind`, twice: with W and with W + N requests; the difference over
//!   N is what a request costs, start-up and shut-down cancelling out. `callgrind_annotate`
//!   of both dumps gives the same difference per function of the shim.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use toctou_attack::sys;
use toctou_attack::targets::server_user;

use crate::client::get_n;
use crate::fixture::SMALL_FILE_BYTES;
use crate::lab::{Lab, SMALL, Server, Setup};

/// How the counts are taken.
#[derive(Clone, Debug)]
pub struct CostOptions {
    /// Requests counted under strace.
    pub strace_requests: u64,
    /// Requests counted under callgrind (the difference between the two runs).
    pub callgrind_requests: u64,
    /// Requests before counting (both callgrind runs serve them).
    pub warm: u64,
    /// Connections the requests are spread over (as wrk's `-c`).
    pub conns: u32,
    /// Where the raw outputs are written.
    pub out: PathBuf,
}

/// What one set-up costs per request.
#[derive(Clone, Debug, Default)]
pub struct Cost {
    pub label: String,
    /// System calls per request, by name.
    pub syscalls: BTreeMap<String, f64>,
    /// User-space instructions per request of the worker.
    pub instructions: Option<f64>,
    /// The shim's own instructions per request (exclusive cost of its functions).
    pub shim_self: Option<f64>,
    /// Inclusive instructions per request of each shim function, largest first.
    pub shim_functions: Vec<(String, f64)>,
    /// What could not be measured, and why.
    pub errors: Vec<String>,
}

/// `label` as a file name part: `disable_symlinks if_not_owner` -> `disable_symlinks-if_not_owner`.
pub fn slug(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').to_string()
}

/// The live children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut v = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                v.extend(s.split_whitespace().filter_map(|w| w.parse::<u32>().ok()));
            }
        }
    }
    v
}

/// The one worker of `master` (nginx `worker_processes 1`), waiting up to `timeout` for it.
pub fn single_worker(master: u32, timeout: Duration) -> Result<u32, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let c = children(master);
        match c.as_slice() {
            [w] => return Ok(*w),
            _ if Instant::now() >= deadline => {
                return Err(format!(
                    "process {master} has {} children, expected one worker (worker_processes 1)",
                    c.len()
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs `work` while `strace ARGS -f -p PID -o OUT` is attached; returns what it wrote.
fn strace_while(
    pid: u32,
    args: &[&str],
    out: &Path,
    work: impl FnOnce() -> Result<(), String>,
) -> Result<String, String> {
    let err_path = out.with_extension("stderr");
    let err = std::fs::File::create(&err_path).map_err(|e| format!("create {}: {e}", err_path.display()))?;
    let mut child = Command::new("strace")
        .args(args)
        .args(["-f", "-p", &pid.to_string(), "-o"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .map_err(|e| format!("strace: {e}"))?;
    // Attached once it says so (one line per thread).
    let deadline = Instant::now() + Duration::from_secs(10);
    let attached = loop {
        let text = std::fs::read_to_string(&err_path).unwrap_or_default();
        if text.contains("attached") {
            break Ok(());
        }
        if Instant::now() >= deadline || child.try_wait().ok().flatten().is_some() {
            break Err(format!("strace did not attach to {pid}: {}", text.trim()));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let worked = attached.and_then(|()| work());
    // SIGINT: strace detaches and writes its summary.
    let _ = sys::kill(child.id() as libc::pid_t, libc::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("strace on {pid} did not stop"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    worked?;
    std::fs::read_to_string(out).map_err(|e| format!("read {}: {e}", out.display()))
}

/// `strace -c` summary: calls per system call name (the `total` line left out).
pub fn parse_strace_summary(text: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors], syscall
        if f.len() < 5 || f[0].parse::<f64>().is_err() {
            continue;
        }
        let name = f[f.len() - 1];
        if name == "total" {
            continue;
        }
        if let Ok(calls) = f[3].parse::<u64>() {
            *m.entry(name.to_string()).or_insert(0) += calls;
        }
    }
    m
}

/// The `summary:` (or `totals:`) line of a callgrind dump: instructions executed.
pub fn callgrind_total(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:"))?;
        v.split_whitespace().next()?.parse().ok()
    })
}

/// One `callgrind_annotate` line: cost, function, object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FnCost {
    pub cost: u64,
    pub function: String,
    pub object: String,
}

/// The function lines of `callgrind_annotate` (`1,234 (5.6%)  file:function [object]`).
pub fn parse_annotate(text: &str) -> Vec<FnCost> {
    let mut v = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((num, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(cost) = num.replace(',', "").parse::<u64>() else {
            continue;
        };
        let mut rest = rest.trim_start();
        if rest.starts_with('(')
            && let Some(i) = rest.find(')')
        {
            rest = rest[i + 1..].trim_start();
        }
        let (place, object) = match (rest.rfind(" ["), rest.ends_with(']')) {
            (Some(i), true) => (&rest[..i], &rest[i + 2..rest.len() - 1]),
            _ => (rest, ""),
        };
        let Some((_, function)) = place.split_once(':') else {
            continue;
        };
        v.push(FnCost {
            cost,
            function: function.to_string(),
            object: object.to_string(),
        });
    }
    v
}

/// System calls per request of `server`'s worker: `strace -c` around the counted requests,
/// and a full trace of 3 requests on one connection (raw files in `o.out`).
pub fn syscalls(server: &Server, o: &CostOptions) -> Result<BTreeMap<String, f64>, String> {
    let worker = single_worker(server.pid(), Duration::from_secs(5))?;
    let addr = server.serving.addr;
    let name = slug(&server.setup.label);
    let timeout = Duration::from_secs(10);
    let get = |n: u64, conns: u32| move || get_n(addr, SMALL, n, conns, SMALL_FILE_BYTES, timeout);
    get(o.warm, o.conns)()?;
    let summary = strace_while(
        worker,
        &["-c"],
        &o.out.join(format!("strace-c-{name}.txt")),
        get(o.strace_requests, o.conns),
    )?;
    strace_while(
        worker,
        &[],
        &o.out.join(format!("strace-3-requests-{name}.txt")),
        get(3, 1),
    )?;
    let n = o.strace_requests.max(1) as f64;
    Ok(parse_strace_summary(&summary)
        .into_iter()
        .map(|(k, v)| (k, v as f64 / n))
        .collect())
}

/// One run of `setup` under callgrind serving `o.warm + extra` requests (plus the start
/// check's 3): the worker's dump and its `callgrind_annotate` listings.
fn callgrind_run(
    setup: &Setup,
    lab: &Lab,
    o: &CostOptions,
    extra: u64,
) -> Result<(u64, Vec<FnCost>, Vec<FnCost>), String> {
    let name = format!("{}-{}", slug(&setup.label), o.warm + extra);
    let nginx = lab.tools.nginx.as_ref().ok_or("nginx not found")?;
    // The worker writes its dump after dropping to the server's user.
    let dir = o.out.join(format!("callgrind-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let (uid, gid) = server_user();
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    let wrapper = dir.join("nginx-under-callgrind");
    let script = format!(
        "#!/bin/sh\nexec valgrind -q --tool=callgrind --callgrind-out-file={}/callgrind.out.%p {} \"$@\"\n",
        dir.display(),
        nginx.display()
    );
    std::fs::write(&wrapper, script).map_err(|e| format!("write {}: {e}", wrapper.display()))?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", wrapper.display()))?;
    let mut tools = lab.tools.clone();
    tools.nginx = Some(wrapper);
    let server = Server::start_with(setup.clone(), lab, &tools, Duration::from_secs(30))?;
    let worker = single_worker(server.pid(), Duration::from_secs(30))?;
    let total = o.warm + extra;
    get_n(
        server.serving.addr,
        SMALL,
        total,
        o.conns,
        SMALL_FILE_BYTES,
        Duration::from_secs(30),
    )?;
    drop(server); // SIGTERM: the worker exits, and callgrind writes its dump.
    let dump = dir.join(format!("callgrind.out.{worker}"));
    let text = std::fs::read_to_string(&dump).map_err(|e| format!("read {}: {e}", dump.display()))?;
    let ir = callgrind_total(&text).ok_or_else(|| format!("{}: no summary line", dump.display()))?;
    let annotate = |extra_args: &[&str]| -> Result<Vec<FnCost>, String> {
        let out = Command::new("callgrind_annotate")
            .args(["--threshold=100", "--auto=no"])
            .args(extra_args)
            .arg(&dump)
            .output()
            .map_err(|e| format!("callgrind_annotate: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let file = dir.join(format!("annotate{}.txt", extra_args.join("")));
        std::fs::write(&file, &text).map_err(|e| format!("write {}: {e}", file.display()))?;
        Ok(parse_annotate(&text))
    };
    Ok((ir, annotate(&[])?, annotate(&["--inclusive=yes"])?))
}

/// The shim's functions in a listing, by name. `callgrind_annotate` names the object only
/// on one line of a function; the lines of code inlined into it from other files (`sip.rs:…`)
/// carry none, and are the shim's when their function's only named object is the shim.
/// Exclusive costs of those parts add up (`inclusive == false`); an inclusive listing gives
/// the part holding the function's calls the whole function's cost, so the largest part is
/// the function's (`inclusive == true`).
fn shim_costs(fns: &[FnCost], inclusive: bool) -> BTreeMap<String, u64> {
    let mut objects: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for f in fns.iter().filter(|f| !f.object.is_empty()) {
        let o = objects.entry(f.function.as_str()).or_default();
        if !o.contains(&f.object.as_str()) {
            o.push(&f.object);
        }
    }
    let is_shim = |o: &str| o.contains("libtoctou_guard");
    let mut m = BTreeMap::new();
    for f in fns {
        let shim = if f.object.is_empty() {
            objects
                .get(f.function.as_str())
                .is_some_and(|o| o.len() == 1 && is_shim(o[0]))
        } else {
            is_shim(&f.object)
        };
        if shim {
            let e = m.entry(f.function.clone()).or_insert(0);
            *e = if inclusive { (*e).max(f.cost) } else { *e + f.cost };
        }
    }
    m
}

/// User-space instructions per request of `setup`'s worker, and of the shim's functions.
pub fn instructions(setup: &Setup, lab: &Lab, o: &CostOptions, cost: &mut Cost) -> Result<(), String> {
    let (ir0, self0, incl0) = callgrind_run(setup, lab, o, 0)?;
    let (ir1, self1, incl1) = callgrind_run(setup, lab, o, o.callgrind_requests)?;
    let n = o.callgrind_requests.max(1) as f64;
    cost.instructions = Some((ir1 as f64 - ir0 as f64) / n);
    let sum = |m: BTreeMap<String, u64>| m.values().sum::<u64>() as f64;
    if setup.shim.is_some() {
        cost.shim_self = Some((sum(shim_costs(&self1, false)) - sum(shim_costs(&self0, false))) / n);
        let before = shim_costs(&incl0, true);
        let mut fns: Vec<(String, f64)> = shim_costs(&incl1, true)
            .into_iter()
            .map(|(f, c)| {
                let d = c as f64 - before.get(&f).copied().unwrap_or(0) as f64;
                (f, d / n)
            })
            .filter(|(_, c)| *c >= 1.0)
            .collect();
        fns.sort_by(|a, b| b.1.total_cmp(&a.1));
        cost.shim_functions = fns;
    }
    Ok(())
}

/// The per-request counts of every set-up side by side (markdown), the first one the
/// reference; then the shim's functions.
pub fn report(costs: &[Cost], o: &CostOptions) {
    if costs.is_empty() {
        return;
    }
    println!(
        "\n## Per request of the worker: instructions (callgrind, {} requests after {} warm-up) and system calls (strace -c, {} requests), {} connections",
        o.callgrind_requests, o.warm, o.strace_requests, o.conns
    );
    let head: Vec<&str> = costs.iter().map(|c| c.label.as_str()).collect();
    println!("| per request | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(costs.len()));
    let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:.0}"));
    let base = costs[0].instructions;
    let instr: Vec<String> = costs
        .iter()
        .map(|c| match (c.instructions, base) {
            (Some(x), Some(b)) if b > 0.0 && c.label != costs[0].label => {
                format!("{x:.0} ({:+.0}, {:.3}×)", x - b, x / b)
            }
            (x, _) => fmt(x),
        })
        .collect();
    println!("| user-space instructions (worker) | {} |", instr.join(" | "));
    let shim: Vec<String> = costs.iter().map(|c| fmt(c.shim_self)).collect();
    println!("| … of which in the shim's own code | {} |", shim.join(" | "));
    let mut names: Vec<&String> = costs.iter().flat_map(|c| c.syscalls.keys()).collect();
    names.sort();
    names.dedup();
    let total: Vec<String> = costs
        .iter()
        .map(|c| format!("{:.2}", c.syscalls.values().sum::<f64>()))
        .collect();
    println!("| system calls, all | {} |", total.join(" | "));
    for name in names {
        let row: Vec<String> = costs
            .iter()
            .map(|c| format!("{:.2}", c.syscalls.get(name).copied().unwrap_or(0.0)))
            .collect();
        // Leave out what happens far less than once per request (timers, log rotation).
        if costs
            .iter()
            .all(|c| c.syscalls.get(name).copied().unwrap_or(0.0) < 0.005)
        {
            continue;
        }
        println!("| `{name}` | {} |", row.join(" | "));
    }
    for c in costs.iter().filter(|c| !c.shim_functions.is_empty()) {
        println!(
            "\n### {}: the shim's functions, inclusive instructions per request",
            c.label
        );
        for (f, n) in c.shim_functions.iter().take(25) {
            println!("- {n:.0} `{f}`");
        }
    }
    for c in costs {
        for e in &c.errors {
            println!("not measured, {}: {e}", c.label);
        }
    }
    println!("raw output: {}", o.out.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strace_summary() {
        let t = "% time     seconds  usecs/call     calls    errors syscall\n\
                 ------ ----------- ----------- --------- --------- ----------------\n\
                 \x20 40.00    0.000400           2       200           writev\n\
                 \x20 30.00    0.000300           1       300        12 recvfrom\n\
                 \x20  0.00    0.000000           0         5           openat\n\
                 ------ ----------- ----------- --------- --------- ----------------\n\
                 100.00    0.001000           2       505        12 total\n";
        let m = parse_strace_summary(t);
        assert_eq!(m.len(), 3);
        assert_eq!(m["writev"], 200);
        assert_eq!(m["recvfrom"], 300);
        assert_eq!(m["openat"], 5);
    }

    #[test]
    fn parses_callgrind_dump_and_annotate() {
        assert_eq!(
            callgrind_total("events: Ir\nsummary: 128535\ntotals: 128535\n"),
            Some(128535)
        );
        assert_eq!(callgrind_total("totals: 7\n"), Some(7));
        assert_eq!(callgrind_total("events: Ir\n"), None);
        let t = "--------\nIr                file:function\n--------\n\
                 128,535 (100.0%)  PROGRAM TOTALS\n\
                 125,861 (97.92%)  ./elf/./elf/rtld.c:_dl_start [/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2]\n\
                 \x20 1,020 ( 0.79%)  ???:toctou_guard::guard::open [/x/libtoctou_guard.so]\n";
        let v = parse_annotate(t);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].cost, 125861);
        assert_eq!(v[0].function, "_dl_start");
        assert_eq!(v[1].cost, 1020);
        assert_eq!(v[1].function, "toctou_guard::guard::open");
        assert_eq!(v[1].object, "/x/libtoctou_guard.so");
        assert_eq!(shim_costs(&v, false).values().sum::<u64>(), 1020);
        // Inlined lines carry no object: the shim's by their function's named object.
        let t = "  100 (1.0%)  a.rs:f [/x/libtoctou_guard.so]\n   40 (0.4%)  sip.rs:f\n   \
                 30 (0.3%)  b.c:open [/lib/libc.so.6]\n   20 (0.2%)  c.c:open [/x/libtoctou_guard.so]\n   \
                 10 (0.1%)  d.h:open\n";
        let v = parse_annotate(t);
        assert_eq!(v.len(), 5);
        let all = shim_costs(&v, false);
        assert_eq!((all["f"], all["open"]), (140, 20));
        assert_eq!(shim_costs(&v, true)["f"], 100);
        assert_eq!(shim_costs(&v, true)["open"], 20);
    }

    #[test]
    fn slugs() {
        assert_eq!(
            slug("disable_symlinks if_not_owner"),
            "disable_symlinks-if_not_owner"
        );
        assert_eq!(slug("+shim"), "shim");
    }
}
