//! The load generator: client threads doing keep-alive `GET`s. The attack lane asks for the
//! attacker's raced paths and counts responses carrying the marker (leaks) and refusals;
//! the legit lane asks for files the tenants own and counts every answer that is not the
//! exact file (false denials). Bounded by a request budget and a deadline.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::http::Conn;
use crate::marker::contains;

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    /// URLs of the attack lane.
    pub attack_urls: Vec<String>,
    /// A response body containing one of these is a leak.
    pub markers: Vec<Vec<u8>>,
    pub attack_threads: usize,
    /// URLs of the legit lane with the exact body each must return.
    pub legit: Vec<(String, Vec<u8>)>,
    pub legit_threads: usize,
    /// Requests over both lanes.
    pub max_requests: u64,
    pub max_time: Duration,
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub attack_requests: u64,
    pub leaks: u64,
    /// 403, 404, 5xx and other non-200 answers in the attack lane.
    pub denials: u64,
    /// 200 without the marker (the attacker's own file) in the attack lane.
    pub own: u64,
    /// Connection or protocol errors (both lanes).
    pub errors: u64,
    pub legit_requests: u64,
    pub false_denials: u64,
    pub first_leak: Option<Duration>,
    /// The first false denial, for the report.
    pub first_false_denial: Option<String>,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub status_403: u64,
    pub status_404: u64,
    pub status_5xx: u64,
}

impl LoadResult {
    pub fn requests(&self) -> u64 {
        self.attack_requests + self.legit_requests
    }
}

#[derive(Default)]
struct Counts {
    r: LoadResult,
}

/// Run both lanes until the budget or the deadline is spent (or SIGINT/SIGTERM arrives).
pub fn run(spec: &LoadSpec) -> LoadResult {
    let start = Instant::now();
    let deadline = start + spec.max_time;
    let issued = Arc::new(AtomicU64::new(0));
    let first_leak_ns = Arc::new(AtomicU64::new(u64::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    let lanes = [
        (true, spec.attack_threads, spec.attack_urls.len()),
        (false, spec.legit_threads, spec.legit.len()),
    ];
    for (attack, threads, n) in lanes {
        if n == 0 {
            continue;
        }
        for t in 0..threads {
            let spec = spec.clone();
            let (issued, first_leak_ns, stop) =
                (Arc::clone(&issued), Arc::clone(&first_leak_ns), Arc::clone(&stop));
            handles.push(std::thread::spawn(move || {
                client(&spec, attack, t, start, deadline, &issued, &first_leak_ns, &stop)
            }));
        }
    }
    let mut total = LoadResult::default();
    for h in handles {
        let Ok(c) = h.join() else { continue };
        let r = c.r;
        total.attack_requests += r.attack_requests;
        total.leaks += r.leaks;
        total.denials += r.denials;
        total.own += r.own;
        total.errors += r.errors;
        total.legit_requests += r.legit_requests;
        total.false_denials += r.false_denials;
        total.status_403 += r.status_403;
        total.status_404 += r.status_404;
        total.status_5xx += r.status_5xx;
        total.first_false_denial = total.first_false_denial.or(r.first_false_denial);
        total.first_error = total.first_error.or(r.first_error);
    }
    let ns = first_leak_ns.load(Ordering::Relaxed);
    total.first_leak = (ns != u64::MAX).then(|| Duration::from_nanos(ns));
    total.elapsed = start.elapsed();
    total
}

#[allow(clippy::too_many_arguments)]
fn client(
    spec: &LoadSpec,
    attack: bool,
    index: usize,
    start: Instant,
    deadline: Instant,
    issued: &AtomicU64,
    first_leak_ns: &AtomicU64,
    stop: &AtomicBool,
) -> Counts {
    let mut c = Counts::default();
    let mut conn = Conn::new(spec.addr, Duration::from_secs(5));
    let mut i = index;
    let mut consecutive_errors = 0u32;
    loop {
        if stop.load(Ordering::Relaxed) || crate::signals::interrupted() || Instant::now() >= deadline {
            break;
        }
        if issued.fetch_add(1, Ordering::Relaxed) >= spec.max_requests {
            break;
        }
        let (url, expected) = if attack {
            (&spec.attack_urls[i % spec.attack_urls.len()], None)
        } else {
            let (u, e) = &spec.legit[i % spec.legit.len()];
            (u, Some(e))
        };
        i += 1;
        let res = conn.get(url);
        if attack {
            c.r.attack_requests += 1;
        } else {
            c.r.legit_requests += 1;
        }
        let resp = match res {
            Ok(r) => {
                consecutive_errors = 0;
                r
            }
            Err(e) => {
                c.r.errors += 1;
                if c.r.first_error.is_none() {
                    c.r.first_error = Some(format!("GET {url}: {e}"));
                }
                if !attack {
                    c.r.false_denials += 1;
                    if c.r.first_false_denial.is_none() {
                        c.r.first_false_denial = Some(format!("GET {url}: {e}"));
                    }
                }
                consecutive_errors += 1;
                if consecutive_errors >= 50 {
                    // The server is gone: stop everyone rather than spin.
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                continue;
            }
        };
        match resp.status {
            403 => c.r.status_403 += 1,
            404 => c.r.status_404 += 1,
            500..=599 => c.r.status_5xx += 1,
            _ => {}
        }
        if let Some(expected) = expected {
            if resp.status != 200 || &resp.body != expected {
                c.r.false_denials += 1;
                if c.r.first_false_denial.is_none() {
                    let body = String::from_utf8_lossy(&resp.body[..resp.body.len().min(80)]).into_owned();
                    c.r.first_false_denial = Some(format!("GET {url}: {} {body:?}", resp.status));
                }
            }
        } else if resp.status == 200 && spec.markers.iter().any(|m| contains(&resp.body, m)) {
            c.r.leaks += 1;
            let ns = start.elapsed().as_nanos().min(u64::MAX as u128 - 1) as u64;
            first_leak_ns.fetch_min(ns, Ordering::Relaxed);
        } else if resp.status == 200 {
            c.r.own += 1;
        } else {
            c.r.denials += 1;
        }
    }
    c
}
