//! A running `openloop` child, bare or with the shim under `LD_PRELOAD`.
//!
//! The child stays alive across rounds; each `run` asks it for N more iterations and reads
//! back the nanoseconds it measured itself, so process start-up and pipes are never timed.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command};
use std::time::Duration;

use toctou_attack::process::ServerProcess;
use toctou_attack::targets::set_preload;

/// How a child is started.
pub struct Spec<'a> {
    pub openloop: &'a Path,
    /// Iteration `i` opens `{prefix}{i % count}{suffix}`.
    pub prefix: &'a str,
    pub suffix: &'a str,
    pub count: u64,
    /// One bare `fstat` per open (the physical limit of a descriptor check).
    pub extra_fstat: bool,
    /// Indices drawn Zipf(1) over `0..count` instead of round-robin.
    pub zipf: bool,
    /// `(libtoctou_guard.so, config)` to load the guard; `None` for a bare child.
    pub guard: Option<(&'a Path, &'a Path)>,
    /// Working directory of the child, for relative paths.
    pub cwd: Option<&'a Path>,
}

pub struct OpenLoop {
    /// Stopped (TERM, then KILL) on drop, and killed with its parent.
    process: ServerProcess,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl OpenLoop {
    pub fn spawn(spec: &Spec<'_>) -> Result<OpenLoop, String> {
        let mut cmd = Command::new(spec.openloop);
        cmd.arg(spec.prefix).arg(spec.suffix).arg(spec.count.to_string());
        set_preload(&mut cmd, spec.guard);
        if spec.extra_fstat {
            cmd.arg("--fstat");
        }
        if spec.zipf {
            cmd.arg("--zipf");
        }
        if let Some(dir) = spec.cwd {
            cmd.current_dir(dir);
        }
        let (process, stdin, stdout) = ServerProcess::spawn_piped("openloop", cmd)
            .map_err(|e| format!("{}: {e}", spec.openloop.display()))?;
        Ok(OpenLoop {
            process,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
        })
    }

    fn ask(&mut self, command: &str) -> Result<String, String> {
        let stdin = self.stdin.as_mut().ok_or("child stdin closed")?;
        writeln!(stdin, "{command}")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("openloop: {e}"))?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("openloop: {e}"))?;
        let line = line.trim().to_string();
        if line.is_empty() || line.starts_with("error") {
            return Err(format!(
                "openloop answered {:?} to {command:?}",
                if line.is_empty() {
                    "nothing (it died)"
                } else {
                    &line
                }
            ));
        }
        Ok(line)
    }

    /// Run `iters` iterations; the `(wall, thread CPU)` times the child measured.
    pub fn run_both(&mut self, iters: u64) -> Result<(Duration, Duration), String> {
        let line = self.ask(&format!("run {iters}"))?;
        let mut it = line.split_whitespace().map(|w| w.parse::<u64>());
        match (it.next(), it.next()) {
            (Some(Ok(wall)), Some(Ok(cpu))) => Ok((Duration::from_nanos(wall), Duration::from_nanos(cpu))),
            _ => Err(format!("openloop: bad answer {line:?}")),
        }
    }

    /// Run `iters` iterations; the child's own CPU time for them (user + system).
    pub fn run(&mut self, iters: u64) -> Result<Duration, String> {
        self.run_both(iters).map(|(_, cpu)| cpu)
    }

    /// `(VmRSS, VmHWM)` of the child, in kB.
    pub fn rss(&mut self) -> Result<(u64, u64), String> {
        let line = self.ask("rss")?;
        let mut it = line.split_whitespace().map(|w| w.parse::<u64>().unwrap_or(0));
        Ok((it.next().unwrap_or(0), it.next().unwrap_or(0)))
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

impl Drop for OpenLoop {
    fn drop(&mut self) {
        // End of input makes the child exit; the process is stopped anyway (on its own drop)
        // in case it is stuck.
        drop(self.stdin.take());
        self.process.wait_exit(Duration::from_secs(2));
    }
}
