//! The load generator: client threads doing keep-alive `GET`s. The attack lane asks for the
//! attacker's raced paths and counts responses carrying the marker (leaks) and refusals;
//! the legit lane asks for files the tenants own and counts every answer that is not the
//! exact file (false denials). Bounded by a request budget and a deadline.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::http::{Conn, Request, Response};
use crate::marker::contains;

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    /// Requests of the attack lane.
    pub attack: Vec<Request>,
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

impl LoadResult {
    /// Add another client's counts to these.
    fn add(&mut self, r: LoadResult) {
        self.attack_requests += r.attack_requests;
        self.leaks += r.leaks;
        self.denials += r.denials;
        self.own += r.own;
        self.errors += r.errors;
        self.legit_requests += r.legit_requests;
        self.false_denials += r.false_denials;
        self.status_403 += r.status_403;
        self.status_404 += r.status_404;
        self.status_5xx += r.status_5xx;
        self.first_false_denial = self.first_false_denial.take().or(r.first_false_denial);
        self.first_error = self.first_error.take().or(r.first_error);
    }
}

/// What every client of a run shares.
struct Shared {
    spec: LoadSpec,
    start: Instant,
    deadline: Instant,
    /// Requests issued so far, over both lanes.
    issued: AtomicU64,
    /// Nanoseconds from the start to the first leak (`u64::MAX`: none yet).
    first_leak_ns: AtomicU64,
    /// Set by a client that lost the server: everyone stops.
    stop: AtomicBool,
}

impl Shared {
    /// Go on: no stop, no signal, before the deadline and within the request budget.
    fn go_on(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
            && !crate::signals::interrupted()
            && Instant::now() < self.deadline
            && self.issued.fetch_add(1, Ordering::Relaxed) < self.spec.max_requests
    }
}

/// Run both lanes until the budget or the deadline is spent (or SIGINT/SIGTERM arrives).
pub fn run(spec: &LoadSpec) -> LoadResult {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        spec: spec.clone(),
        start,
        deadline: start + spec.max_time,
        issued: AtomicU64::new(0),
        first_leak_ns: AtomicU64::new(u64::MAX),
        stop: AtomicBool::new(false),
    });
    let mut handles = Vec::new();
    let lanes = [
        (true, spec.attack_threads, spec.attack.len()),
        (false, spec.legit_threads, spec.legit.len()),
    ];
    for (attack, threads, n) in lanes {
        if n == 0 {
            continue;
        }
        for index in 0..threads {
            let client = Client {
                shared: Arc::clone(&shared),
                attack,
                next: index,
                counts: LoadResult::default(),
            };
            handles.push(std::thread::spawn(move || client.run()));
        }
    }
    let mut total = LoadResult::default();
    for h in handles {
        if let Ok(r) = h.join() {
            total.add(r);
        }
    }
    let ns = shared.first_leak_ns.load(Ordering::Relaxed);
    total.first_leak = (ns != u64::MAX).then(|| Duration::from_nanos(ns));
    total.elapsed = start.elapsed();
    total
}

/// One client thread: a keep-alive connection going round its lane's URLs.
struct Client {
    shared: Arc<Shared>,
    /// The attack lane (else the legit lane).
    attack: bool,
    /// Index of the next URL in its lane (modulo the lane's length).
    next: usize,
    counts: LoadResult,
}

impl Client {
    fn run(mut self) -> LoadResult {
        let shared = Arc::clone(&self.shared);
        let spec = &shared.spec;
        let mut conn = Conn::new(spec.addr, Duration::from_secs(5));
        let mut consecutive_errors = 0u32;
        while shared.go_on() {
            let get;
            let (req, expected) = if self.attack {
                (&spec.attack[self.next % spec.attack.len()], None)
            } else {
                let (u, e) = &spec.legit[self.next % spec.legit.len()];
                get = Request::get(u);
                (&get, Some(e))
            };
            self.next += 1;
            let res = conn.send(req);
            let url = &req.describe();
            if self.attack {
                self.counts.attack_requests += 1;
            } else {
                self.counts.legit_requests += 1;
            }
            match res {
                Ok(resp) => {
                    consecutive_errors = 0;
                    self.count_response(url, expected, &resp);
                }
                Err(e) => {
                    self.count_error(url, &e);
                    consecutive_errors += 1;
                    if consecutive_errors >= 50 {
                        // The server is gone: stop everyone rather than spin.
                        shared.stop.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        self.counts
    }

    /// A connection or protocol error: in the legit lane also a false denial.
    fn count_error(&mut self, url: &str, e: &std::io::Error) {
        let c = &mut self.counts;
        c.errors += 1;
        if c.first_error.is_none() {
            c.first_error = Some(format!("{url}: {e}"));
        }
        if !self.attack {
            c.false_denials += 1;
            if c.first_false_denial.is_none() {
                c.first_false_denial = Some(format!("{url}: {e}"));
            }
        }
    }

    /// An answer: `expected` is the exact body of a legit request (`None`: an attack one).
    fn count_response(&mut self, url: &str, expected: Option<&Vec<u8>>, resp: &Response) {
        let c = &mut self.counts;
        match resp.status {
            403 => c.status_403 += 1,
            404 => c.status_404 += 1,
            500..=599 => c.status_5xx += 1,
            _ => {}
        }
        if let Some(expected) = expected {
            if resp.status != 200 || &resp.body != expected {
                c.false_denials += 1;
                if c.first_false_denial.is_none() {
                    let body = String::from_utf8_lossy(&resp.body[..resp.body.len().min(80)]).into_owned();
                    c.first_false_denial = Some(format!("{url}: {} {body:?}", resp.status));
                }
            }
        } else if resp.status == 200 && self.shared.spec.markers.iter().any(|m| contains(&resp.body, m)) {
            c.leaks += 1;
            let ns = self.shared.start.elapsed().as_nanos().min(u64::MAX as u128 - 1) as u64;
            self.shared.first_leak_ns.fetch_min(ns, Ordering::Relaxed);
        } else if (200..300).contains(&resp.status) {
            c.own += 1; // the attacker's own file, or a write into its own tree
        } else {
            c.denials += 1;
        }
    }
}
