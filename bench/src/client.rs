//! A bounded HTTP client: exactly N requests over C kept-alive connections, so that a count
//! of instructions or system calls divides by a known number of requests (wrk stops on a
//! deadline, with requests in flight).

use std::net::SocketAddr;
use std::time::Duration;

use toctou_attack::http::Conn;

/// `GET path` `total` times over `conns` connections in parallel (one thread each), every
/// answer checked to be 200 with `bytes` of body. Each request is bounded by `timeout`.
pub fn get_n(
    addr: SocketAddr,
    path: &str,
    total: u64,
    conns: u32,
    bytes: usize,
    timeout: Duration,
) -> Result<(), String> {
    let conns = u64::from(conns.max(1)).min(total.max(1));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..conns)
            .map(|i| {
                // The first `total % conns` connections take one request more.
                let share = total / conns + u64::from(i < total % conns);
                s.spawn(move || {
                    let mut c = Conn::new(addr, timeout);
                    for _ in 0..share {
                        let r = c.get(path).map_err(|e| format!("GET {addr}{path}: {e}"))?;
                        if r.status != 200 || r.body.len() != bytes {
                            return Err(format!(
                                "GET {addr}{path}: {} with {} bytes, expected 200 with {bytes}",
                                r.status,
                                r.body.len()
                            ));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        // The scope joins the rest if one fails.
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|_| Err("client thread panicked".into())))
    })
}
