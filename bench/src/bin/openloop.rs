//! The child process of the open-loop benchmarks: it loops `open` + `read` + `close` through
//! libc, so that under `LD_PRELOAD` the guard's hooks are on the path exactly as they are in
//! a web-server worker.
//!
//! `openloop PREFIX SUFFIX COUNT [--fstat] [--zipf]`: iteration `i` opens `PREFIX{i % COUNT}SUFFIX`
//! (built in a stack buffer: nothing is allocated while timing, so the process's RSS only
//! moves because of what the opens themselves cost). `--fstat` adds one bare `fstat` per open,
//! the physical limit of a check on the descriptor. `--zipf` picks the index from a fixed
//! sequence of Zipf(1) draws over `0..COUNT` instead (index `r` the `r+1`-th most popular),
//! as web traffic over many sites is: drawn once at start, before any timing.
//!
//! Commands on stdin, one per line, each answered with one line on stdout:
//! - `run N`: run N iterations, answer `WALL_NS CPU_NS`: elapsed time, and this thread's CPU
//!   time (user + system; unlike wall time it does not grow while other processes hold the
//!   CPU, which matters on a shared 2-core machine);
//! - `rss`: answer `VmRSS VmHWM` in kB (from `/proc/self/status`);
//! - end of input: exit.
//!
//! Any failed call prints `error ...` and exits 1: a benchmark of failing opens measures
//! nothing.

use std::io::{BufRead, Write};
use std::time::Instant;

const BUF: usize = 512;

struct Paths {
    buf: [u8; BUF],
    prefix_len: usize,
    suffix: Vec<u8>,
    count: u64,
    next: u64,
    /// Zipf draws, when asked for: iteration `i` opens index `order[i % len]`.
    order: Option<Vec<u32>>,
}

/// Zipf(1) draws over `0..n` (the policy's fixed-seed generator: bare and guarded children
/// open the same sequence), as u32 to keep the order table small.
fn zipf_order(n: u64, draws: usize) -> Vec<u32> {
    let n = n.clamp(1, u64::from(u32::MAX)) as usize;
    toctou_policy::owner_cache::zipf_draws(n, draws)
        .into_iter()
        .map(|d| d as u32)
        .collect()
}

impl Paths {
    fn new(prefix: &[u8], suffix: &[u8], count: u64, zipf: bool) -> Paths {
        assert!(prefix.len() + suffix.len() + 21 < BUF, "path too long");
        let mut buf = [0u8; BUF];
        buf[..prefix.len()].copy_from_slice(prefix);
        Paths {
            buf,
            prefix_len: prefix.len(),
            suffix: suffix.to_vec(),
            count: count.max(1),
            next: 0,
            order: zipf.then(|| zipf_order(count, 1 << 18)),
        }
    }

    /// The next path, NUL-terminated, in the internal buffer.
    fn next(&mut self) -> *const libc::c_char {
        let i = match &self.order {
            Some(o) => u64::from(o[(self.next % o.len() as u64) as usize]),
            None => self.next % self.count,
        };
        self.next = self.next.wrapping_add(1);
        let mut digits = [0u8; 20];
        let mut n = i;
        let mut k = digits.len();
        loop {
            k -= 1;
            digits[k] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mut at = self.prefix_len;
        let d = &digits[k..];
        self.buf[at..at + d.len()].copy_from_slice(d);
        at += d.len();
        self.buf[at..at + self.suffix.len()].copy_from_slice(&self.suffix);
        at += self.suffix.len();
        self.buf[at] = 0;
        self.buf.as_ptr().cast()
    }

    fn current(&self) -> String {
        let end = self.buf.iter().position(|&b| b == 0).unwrap_or(BUF);
        String::from_utf8_lossy(&self.buf[..end]).into_owned()
    }
}

fn fail(what: &str, paths: &Paths) -> ! {
    let e = std::io::Error::last_os_error();
    println!("error {what} {}: {e}", paths.current());
    std::process::exit(1);
}

fn thread_cpu_ns() -> u128 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

fn run(paths: &mut Paths, iters: u64, extra_fstat: bool) -> (u128, u128) {
    let mut data = [0u8; 4096];
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    for _ in 0..iters {
        let p = paths.next();
        // SAFETY: `p` points at a NUL-terminated path in `paths.buf`, alive for the call.
        let fd = unsafe { libc::open(p, libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            fail("open", paths);
        }
        if extra_fstat {
            // SAFETY: an all-zero `stat` is a valid value; `fd` is open and `st` is writable.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            if unsafe { libc::fstat(fd, &mut st) } != 0 {
                fail("fstat", paths);
            }
            std::hint::black_box(st.st_uid);
        }
        // SAFETY: `data` is a writable buffer of `data.len()` bytes; `fd` is open.
        let n = unsafe { libc::read(fd, data.as_mut_ptr().cast(), data.len()) };
        if n < 0 {
            fail("read", paths);
        }
        std::hint::black_box(&data[..n as usize]);
        // SAFETY: `fd` is ours and closed exactly once.
        unsafe { libc::close(fd) };
    }
    let wall = start.elapsed().as_nanos();
    (wall, thread_cpu_ns() - cpu0)
}

fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: openloop PREFIX SUFFIX COUNT [--fstat] [--zipf]");
        std::process::exit(2);
    }
    let count: u64 = args[2].parse().unwrap_or_else(|_| {
        eprintln!("openloop: COUNT must be a number");
        std::process::exit(2)
    });
    let extra_fstat = args.iter().skip(3).any(|a| a == "--fstat");
    let zipf = args.iter().skip(3).any(|a| a == "--zipf");
    let mut paths = Paths::new(args[0].as_bytes(), args[1].as_bytes(), count, zipf);

    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut line = String::new();
    let mut input = stdin.lock();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut words = line.split_whitespace();
        let reply = match (words.next(), words.next()) {
            (Some("run"), Some(n)) => match n.parse::<u64>() {
                Ok(n) => {
                    let (wall, cpu) = run(&mut paths, n, extra_fstat);
                    format!("{wall} {cpu}")
                }
                Err(_) => "error bad count".to_string(),
            },
            (Some("rss"), None) => {
                let (rss, hwm) = rss();
                format!("{rss} {hwm}")
            }
            _ => "error unknown command".to_string(),
        };
        if writeln!(out, "{reply}").and_then(|_| out.flush()).is_err() {
            break;
        }
    }
}
