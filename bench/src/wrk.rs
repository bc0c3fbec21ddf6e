//! One bounded `wrk` run, parsed, with the machine's CPU time around it.

use std::process::Command;

use crate::proc;

/// What one `wrk` run reported.
#[derive(Clone, Copy, Debug, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub rps: f64,
    pub non_2xx: u64,
    pub socket_errors: u64,
    /// Busy CPU seconds of the whole machine during the run (everything: other users too).
    pub machine_cpu_s: f64,
    /// CPU seconds of wrk itself.
    pub wrk_cpu_s: f64,
    /// Wall seconds of the run.
    pub wall_s: f64,
    /// CPU time of the server's processes (and FUSE daemon) per request, µs; filled in by
    /// the caller, which knows the processes.
    pub server_cpu_us_per_req: f64,
    /// Share of the machine's CPUs busy with processes other than the server, its FUSE
    /// daemon and wrk during the run (other users' builds and tests); filled in by the caller.
    pub foreign_load: f64,
}

/// How `wrk` is driven.
#[derive(Clone, Copy, Debug)]
pub struct WrkOptions {
    pub threads: u32,
    pub connections: u32,
    /// Whole seconds: wrk takes no finer unit.
    pub seconds: u64,
}

fn number_after(text: &str, label: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.trim_end_matches(',').parse().ok())
}

/// `wrk -tT -cC -dDs URL`, parsed. The duration bounds it; `timeout` bounds a hung wrk.
pub fn wrk(url: &str, o: WrkOptions) -> Result<WrkResult, String> {
    let secs = o.seconds.max(1);
    let (busy0, _) = proc::cpu_jiffies();
    let wrk0 = proc::children_cpu_seconds();
    let t0 = std::time::Instant::now();
    let out = Command::new("timeout")
        .arg(format!("{}", secs + 20))
        .arg("wrk")
        .arg(format!("-t{}", o.threads))
        .arg(format!("-c{}", o.connections))
        .arg(format!("-d{secs}s"))
        .arg("--timeout")
        .arg("5s")
        .arg(url)
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let (busy1, _) = proc::cpu_jiffies();
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk {url} failed ({}): {}{}",
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let rps =
        number_after(&text, "Requests/sec:").ok_or_else(|| format!("wrk: no Requests/sec in {text}"))?;
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let non_2xx = number_after(&text, "Non-2xx or 3xx responses:").unwrap_or(0.0) as u64;
    let socket_errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|l| {
            l.split(',')
                .filter_map(|p| p.split_whitespace().nth(1))
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let cpu_s = (busy1.saturating_sub(busy0)) as f64 / proc::clock_ticks();
    Ok(WrkResult {
        requests,
        rps,
        non_2xx,
        socket_errors,
        machine_cpu_s: cpu_s,
        wrk_cpu_s: proc::children_cpu_seconds() - wrk0,
        wall_s: t0.elapsed().as_secs_f64(),
        server_cpu_us_per_req: f64::NAN,
        foreign_load: f64::NAN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_lines() {
        let t = "  1000 requests in 1.00s, 1.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 7\nRequests/sec:  12345.67\n";
        assert_eq!(number_after(t, "Requests/sec:"), Some(12345.67));
        assert_eq!(number_after(t, "Non-2xx or 3xx responses:"), Some(7.0));
    }
}
