//! Small `/proc` readers: CPU time of the machine, of a server's process tree and of our
//! reaped children, the load average, a process's mappings. (Starting and stopping the
//! servers and daemons is the attack harness's: `toctou_attack::process`.)

/// Busy and total jiffies of all CPUs, from the first line of `/proc/stat`.
pub fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle + iowait
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Clock ticks per second (`USER_HZ`).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Does `/proc/PID/maps` mention `needle` (e.g. the shim's file name)?
pub fn maps_contain(pid: u32, needle: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains(needle))
}

/// The 1-, 5- and 15-minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `(ppid, utime + stime, cutime + cstime)` of one process, in clock ticks.
fn stat_ticks(pid: u32) -> Option<(u32, u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // After ')': state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    Some((n(1) as u32, n(11) + n(12), n(13) + n(14)))
}

/// CPU time, in clock ticks, used so far by each of `roots` (all threads), its reaped
/// children, and its live children: a server's master and workers, a FUSE daemon.
/// Children that exit between two samples move from the live sum into the parent's
/// reaped sum, so differences stay consistent.
pub fn tree_cpu_ticks(roots: &[u32]) -> u64 {
    let mut total = 0;
    for &r in roots {
        if let Some((_, own, reaped)) = stat_ticks(r) {
            total += own + reaped;
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if roots.contains(&pid) {
                continue;
            }
            if let Some((ppid, own, _)) = stat_ticks(pid)
                && roots.contains(&ppid)
            {
                total += own;
            }
        }
    }
    total
}

/// CPU seconds (user + system) of all reaped children of this process so far.
pub fn children_cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Number of online CPUs.
pub fn cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// Reap child `pid`: its wait status and its resource usage (`ru_maxrss`: maximum RSS in
/// KiB, of it and its reaped descendants).
pub fn wait4(pid: u32) -> Result<(i32, libc::rusage), String> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `ru` are valid, writable, and live across the call.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
        if r == pid as libc::pid_t {
            return Ok((status, ru));
        }
        let e = std::io::Error::last_os_error();
        if r < 0 && e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4({pid}): {e}"));
        }
    }
}
