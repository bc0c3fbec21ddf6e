//! `naive`, `naive+shim`, `naive+fuse`: the built-in server (`naive.rs`), re-executed as
//! `toctou-attack serve-naive` so that the shim can be preloaded into it.
#![forbid(unsafe_code)]

use std::process::Command;
use std::time::Duration;

use crate::error::Result;
use crate::process::ServerProcess;
use crate::target::{StartEnv, Target, TargetKind};
use crate::targets::{StaticTarget, add_shim_env, docroot_for, server_user, spawn_listening};

pub fn start(kind: TargetKind, env: &StartEnv<'_>) -> Result<Box<dyn Target>> {
    let (docroot, mount) = docroot_for(kind, env)?;
    let (uid, gid) = server_user();
    let listening = spawn_listening("/", Duration::from_secs(15), |port| {
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
        ServerProcess::spawn(kind.name(), cmd, &out, vec![])
    })?;
    Ok(StaticTarget::boxed(kind, env, listening, mount))
}
