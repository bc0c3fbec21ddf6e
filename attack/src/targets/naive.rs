//! `naive`, `naive+shim`, `naive+fuse`: the built-in server (`naive.rs`), re-executed as
//! `toctou-attack serve-naive` so that the shim can be preloaded into it.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::error::Result;
use crate::process::{ServerProcess, wait_http};
use crate::target::{StartEnv, Target, TargetKind};
use crate::targets::{StaticTarget, add_shim_env, docroot_for, server_user, with_port_retries};

pub fn start(kind: TargetKind, env: &StartEnv<'_>) -> Result<Box<dyn Target>> {
    let (docroot, mount) = docroot_for(kind, env)?;
    let (uid, gid) = server_user();
    let proc_ = with_port_retries(|port| {
        let mut cmd = Command::new(&env.tools.self_exe);
        cmd.arg("serve-naive")
            .arg("--root")
            .arg(&docroot)
            .arg("--port")
            .arg(port.to_string())
            .arg("--user")
            .arg(format!("{uid}:{gid}"));
        add_shim_env(kind, env, &mut cmd)?;
        let out = env.tenants.run.join(format!("naive-{port}.log"));
        let mut p = ServerProcess::spawn(kind.name(), cmd, &out, vec![])?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_http(addr, "/", &mut [&mut p], Duration::from_secs(15))?;
        Ok((p, addr))
    })?;
    let (p, addr) = proc_;
    Ok(Box::new(StaticTarget {
        kind,
        addr,
        www: env.tenants.www.clone(),
        procs: vec![p],
        mount,
    }))
}
