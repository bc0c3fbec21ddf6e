//! `external`: an operator's live server. `--url` is the URL of the attacker's document
//! root; the harness lays its files out in the two document roots the operator names (as
//! their owners), races them, and removes them afterwards.
#![forbid(unsafe_code)]

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, Wrap};
use crate::target::{StartEnv, Target, TargetKind};

pub struct ExternalTarget {
    addr: SocketAddr,
    prefix: String,
    attacker_docroot: PathBuf,
}

/// `http://HOST:PORT/prefix` -> (address, prefix without trailing slash).
pub fn parse_url(url: &str) -> Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Error::msg(format!("{url}: only http:// URLs are supported")))?;
    let (hostport, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, String::new()));
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addr = hostport
        .to_socket_addrs()
        .wrap(|| format!("resolve {hostport}"))?
        .next()
        .ok_or_else(|| Error::msg(format!("{hostport}: no address")))?;
    Ok((addr, path.trim_end_matches('/').to_string()))
}

impl Target for ExternalTarget {
    fn kind(&self) -> TargetKind {
        TargetKind::External
    }
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn url(&self, file: &Path) -> Option<String> {
        let rel = file.strip_prefix(&self.attacker_docroot).ok()?;
        Some(format!("{}/{}", self.prefix, rel.to_str()?))
    }
    fn check_alive(&mut self) -> Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        format!("external {}{}", self.addr, self.prefix)
    }
}

pub fn start(env: &StartEnv<'_>) -> Result<Box<dyn Target>> {
    let spec = env
        .tools
        .external
        .as_ref()
        .ok_or_else(|| Error::msg("no external target given"))?;
    let (addr, prefix) = parse_url(&spec.url)?;
    Ok(Box::new(ExternalTarget {
        addr,
        prefix,
        attacker_docroot: env.tenants.attacker.docroot.clone(),
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls() {
        let (a, p) = super::parse_url("http://127.0.0.1:8080/~eve/").expect("url");
        assert_eq!(a.port(), 8080);
        assert_eq!(p, "/~eve");
        let (a, p) = super::parse_url("http://127.0.0.1").expect("url");
        assert_eq!((a.port(), p.as_str()), (80, ""));
    }
}
