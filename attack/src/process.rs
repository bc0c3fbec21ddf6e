//! Server processes started by the harness (and the benchmarks): their own process group,
//! killed with their parent (`PR_SET_PDEATHSIG`), stdout/stderr in a file (or pipes),
//! stopped (TERM, then KILL of the whole group) on drop; plus free ports, readiness probes
//! and fuse mount points.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, Wrap};
use crate::sys;

/// A started server process.
pub struct ServerProcess {
    pub name: String,
    child: Child,
    /// The file holding its stdout and stderr (empty for [`ServerProcess::spawn_piped`]).
    pub output: PathBuf,
    /// More files worth showing when it fails (its error log).
    pub logs: Vec<PathBuf>,
    stopped: bool,
}

impl ServerProcess {
    /// Start `cmd` with stdout/stderr to `output`, in a new process group, with SIGTERM
    /// on the death of the thread that started it.
    pub fn spawn(name: &str, mut cmd: Command, output: &Path, logs: Vec<PathBuf>) -> Result<ServerProcess> {
        let out = File::create(output).wrap(|| format!("create {}", output.display()))?;
        let err = out.try_clone().wrap(|| "dup output file")?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        ServerProcess::start(name, cmd, output.to_path_buf(), logs)
    }

    /// Start `cmd` like [`ServerProcess::spawn`], but driven over pipes (the benchmarks'
    /// open-loop child): its stdin and stdout are handed back, its stderr is ours.
    pub fn spawn_piped(name: &str, mut cmd: Command) -> Result<(ServerProcess, ChildStdin, ChildStdout)> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut p = ServerProcess::start(name, cmd, PathBuf::new(), Vec::new())?;
        let pipes = p.child.stdin.take().zip(p.child.stdout.take());
        let (stdin, stdout) = pipes.ok_or_else(|| Error::msg(format!("{name}: no pipes")))?;
        Ok((p, stdin, stdout))
    }

    /// Spawn `cmd` (its stdio set) in a new process group, with SIGTERM on the death of the
    /// thread that started it.
    fn start(name: &str, mut cmd: Command, output: PathBuf, logs: Vec<PathBuf>) -> Result<ServerProcess> {
        cmd.process_group(0);
        // SAFETY: the hook only calls prctl (async-signal-safe), allocating nothing.
        unsafe {
            cmd.pre_exec(|| sys::set_parent_death_signal(libc::SIGTERM));
        }
        let child = cmd
            .spawn()
            .wrap(|| format!("start {name} ({:?})", cmd.get_program()))?;
        Ok(ServerProcess {
            name: name.to_string(),
            child,
            output,
            logs,
            stopped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error (with the tail of its output and logs) if it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => {
                self.stopped = true;
                Err(Error::msg(format!(
                    "{} exited ({st}):\n{}",
                    self.name,
                    self.tail()
                )))
            }
            Err(e) => Err(Error::io(format!("wait for {}", self.name), e)),
        }
    }

    /// Its exit status once it has exited by itself within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.stopped = true;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The last lines of its output and logs.
    pub fn tail(&self) -> String {
        let mut s = String::new();
        for p in std::iter::once(&self.output).chain(self.logs.iter()) {
            if let Ok(text) = fs::read_to_string(p) {
                let start = text.len().saturating_sub(1500);
                let start = (start..text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                if !text.trim().is_empty() {
                    s.push_str(&format!("--- {}\n{}\n", p.display(), &text[start..]));
                }
            }
        }
        s
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL to the whole process group.
    pub fn stop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        if !self.stopped {
            let _ = sys::kill(pid, libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = sys::kill(-pid, libc::SIGKILL);
                let _ = self.child.wait();
            }
            self.stopped = true;
        }
        // Workers that outlived their master.
        let _ = sys::kill(-pid, libc::SIGKILL);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0)).wrap(|| "bind 127.0.0.1:0")?;
    Ok(l.local_addr().wrap(|| "local_addr")?.port())
}

/// Wait until `addr` answers an HTTP request (any status), while every process in `procs`
/// is alive. Polls every 10 ms for at most `timeout`.
pub fn wait_http(
    addr: SocketAddr,
    probe: &str,
    procs: &mut [&mut ServerProcess],
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        for p in procs.iter_mut() {
            p.check_alive()?;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            let mut c = crate::http::Conn::new(addr, Duration::from_secs(2));
            match c.get(probe) {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let tails: Vec<String> = procs.iter().map(|p| p.tail()).collect();
    Err(Error::msg(format!(
        "{addr} not answering HTTP after {timeout:?} ({last})\n{}",
        tails.join("\n")
    )))
}

/// Is `path` a mount point of type fuse (per /proc/self/mountinfo)?
pub fn is_fuse_mount(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let fstype = f.iter().position(|x| *x == "-").and_then(|i| f.get(i + 1));
        f.get(4) == Some(&want.as_ref()) && fstype.is_some_and(|t| t.starts_with("fuse"))
    })
}
