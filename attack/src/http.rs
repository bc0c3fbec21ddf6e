//! A minimal HTTP/1.1 keep-alive client: enough to hammer a server with `GET`s (and the
//! WebDAV writes of the `dav` scenario) and see the status and body of every answer
//! (Content-Length, chunked, or until close).
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One request: `GET url`, or a WebDAV write (`PUT` with a body, `DELETE`, `MOVE` to
/// `destination`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    pub url: String,
    /// `MOVE`'s `Destination` (a URL path on the same server).
    pub destination: Option<String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn get(url: &str) -> Request {
        Request {
            method: "GET",
            url: url.to_string(),
            destination: None,
            body: Vec::new(),
        }
    }

    /// `METHOD url`: a line for reports.
    pub fn describe(&self) -> String {
        match &self.destination {
            Some(d) => format!("{} {} -> {d}", self.method, self.url),
            None => format!("{} {}", self.method, self.url),
        }
    }
}

/// A connection that is reopened when the server closes it.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    timeout: Duration,
    /// Connections opened so far (for statistics).
    pub connects: u64,
}

const MAX_HEADER: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

impl Conn {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        Conn {
            addr,
            stream: None,
            buf: Vec::with_capacity(8192),
            timeout,
            connects: 0,
        }
    }

    fn connect(&mut self) -> io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            self.connects += 1;
            self.buf.clear();
            self.stream = Some(s);
        }
        self.stream.as_mut().ok_or_else(|| io::Error::other("no stream"))
    }

    /// `GET path`. A kept-alive connection the server closed in the meantime is reopened and
    /// the request sent once more.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send(&Request::get(path))
    }

    /// Any request, with the same reconnection as [`Conn::get`].
    pub fn send(&mut self, req: &Request) -> io::Result<Response> {
        let reused = self.stream.is_some();
        match self.send_once(req) {
            Ok(r) => Ok(r),
            Err(e) if reused && is_stale(&e) => {
                self.stream = None;
                self.send_once(req)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }

    fn send_once(&mut self, r: &Request) -> io::Result<Response> {
        let mut req = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: toctou-attack\r\n",
            r.method, r.url
        );
        if let Some(d) = &r.destination {
            req.push_str(&format!("Destination: http://127.0.0.1{d}\r\nOverwrite: T\r\n"));
        }
        if r.method != "GET" {
            req.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(&r.body);
        self.connect()?.write_all(&bytes)?;
        let r = self.read_response();
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let s = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::other("no stream"))?;
        let n = s.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn read_response(&mut self) -> io::Result<Response> {
        // Headers.
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEADER {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "header too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before a response",
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad status line {status_line:?}"),
                )
            })?;
        let mut length = None;
        let mut chunked = false;
        let mut close = status_line.starts_with("HTTP/1.0");
        for l in lines {
            let Some((k, v)) = l.split_once(':') else { continue };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => length = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => close = v.contains("close"),
                _ => {}
            }
        }
        self.buf.drain(..head_end);
        // 1xx, 204 and 304 never carry a body, whatever the headers say (RFC 9112 6.3).
        let bodiless = status < 200 || status == 204 || status == 304;
        let body = if bodiless {
            Vec::new()
        } else if chunked {
            self.read_chunked()?
        } else if let Some(n) = length {
            if n > MAX_BODY {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
            }
            while self.buf.len() < n {
                if self.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed inside a body",
                    ));
                }
            }
            self.buf.drain(..n).collect()
        } else {
            close = true;
            while self.buf.len() <= MAX_BODY && self.fill()? > 0 {}
            std::mem::take(&mut self.buf)
        };
        if close {
            self.stream = None;
        }
        Ok(Response { status, body })
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        for _ in 0..100_000 {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                if self.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed inside chunks",
                    ));
                }
            };
            let size_txt = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            self.buf.drain(..line_end + 2);
            if body.len() + size > MAX_BODY {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed inside a chunk",
                    ));
                }
            }
            if size == 0 {
                // Last chunk; no trailers expected.
                self.buf.drain(..2);
                return Ok(body);
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
        Err(io::Error::new(io::ErrorKind::InvalidData, "too many chunks"))
    }
}

fn is_stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encode a query value (unreserved characters and `/` are kept).
pub fn encode_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server answering each request with the next canned response.
    fn serve(responses: Vec<&'static str>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            for r in responses {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).expect("read");
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                s.write_all(r.as_bytes()).expect("write");
            }
        });
        addr
    }

    #[test]
    fn content_length_chunked_and_keep_alive() {
        let addr = serve(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ]);
        let mut c = Conn::new(addr, Duration::from_secs(5));
        let r = c.get("/a").expect("first");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = c.get("/b").expect("second");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
        let r = c.get("/c").expect("third");
        assert_eq!(r.status, 403);
        assert_eq!(c.connects, 1, "keep-alive reused one connection");
    }

    #[test]
    fn query_encoding() {
        assert_eq!(encode_query("a/b c&d"), "a/b%20c%26d");
    }
}
