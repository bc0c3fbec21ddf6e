//! The naive server: what Apache's `Options SymLinksIfOwnerMatch` does, in a few lines.
//! For every request it walks the path with `lstat`, refuses a symlink whose owner differs
//! from its target's, and then - in a separate system call - opens the path and sends the
//! file. The check is on the path, the read is on whatever the path names a moment later:
//! the race window the harness exploits. Served bare, it must leak; run with the shim
//! (`LD_PRELOAD`), the `open` itself is checked and it must not.
#![forbid(unsafe_code)]

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::error::{Error, Result, Wrap};

/// How to serve.
#[derive(Debug, Clone)]
pub struct NaiveOptions {
    /// The directory URL `/` maps to.
    pub root: PathBuf,
    pub port: u16,
    /// Drop to this uid:gid after binding (the web server user).
    pub user: Option<(u32, u32)>,
    /// Exit after this long whatever happens (the harness normally kills it first).
    pub max_lifetime: Duration,
}

const MAX_CONNECTIONS: usize = 512;
const MAX_REQUESTS_PER_CONNECTION: u64 = 100_000_000;
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// Bind 127.0.0.1:port, drop privileges, serve until killed or `max_lifetime`.
pub fn serve(opts: &NaiveOptions) -> Result<()> {
    let listener =
        TcpListener::bind(("127.0.0.1", opts.port)).wrap(|| format!("bind 127.0.0.1:{}", opts.port))?;
    if let Some((uid, gid)) = opts.user {
        // Still single-threaded here, so a process-wide drop is sound.
        crate::sys::drop_privileges(uid, gid).wrap(|| format!("drop privileges to {uid}:{gid}"))?;
    }
    let lifetime = opts.max_lifetime;
    std::thread::spawn(move || {
        std::thread::sleep(lifetime);
        std::process::exit(0);
    });
    let root = Arc::new(opts.root.clone());
    let active = Arc::new(AtomicUsize::new(0));
    // Bounded by the lifetime watchdog above; each accepted connection is one iteration.
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("accept", e)),
        };
        if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            continue; // dropped: closes the connection
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (root, done) = (Arc::clone(&root), Arc::clone(&active));
        let spawned = std::thread::Builder::new().spawn(move || {
            let _ = connection(&root, stream);
            done.fetch_sub(1, Ordering::Relaxed);
        });
        if spawned.is_err() {
            // The closure never ran (the stream was dropped, closing the connection).
            active.fetch_sub(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

fn connection(root: &Path, stream: TcpStream) -> io::Result<()> {
    // A working directory of this connection's own (`?cwd` requests `chdir`), as a server
    // with one process per connection has.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let request_line = line.trim_end().to_string();
        // Skip the headers (bounded).
        let mut close = request_line.ends_with("HTTP/1.0");
        for _ in 0..100 {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if l.to_ascii_lowercase().starts_with("connection:") && l.to_ascii_lowercase().contains("close") {
                close = true;
            }
        }
        let mut parts = request_line.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, body) = if method != "GET" {
            (405, b"method not allowed\n".to_vec())
        } else {
            match handle(root, target) {
                Ok(body) => (200, body),
                Err(status) => (status, format!("{status}\n").into_bytes()),
            }
        };
        let reason = match status {
            200 => "OK",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Error",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        writer.write_all(head.as_bytes())?;
        writer.write_all(&body)?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

fn status_of(e: &io::Error) -> u16 {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => 403,
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP) | Some(libc::EISDIR) => 404,
        _ => 500,
    }
}

/// The `SymLinksIfOwnerMatch` check on the path, then the open: a status or the file.
///
/// With `?dirfd` it serves the way a server holding a directory open does: the check on the
/// directories, an open of the directory, then `openat(dir, name)` (the name followed, as
/// nginx's `disable_symlinks off` would) - the `dirfd-escape` scenario, where the tenant
/// moves that directory out of every root in between. With `?cwd` the same from the working
/// directory: `chdir(dir)`, then `open(name)` (the `cwd-escape` scenario).
pub fn handle(root: &Path, target: &str) -> std::result::Result<Vec<u8>, u16> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let from_dirfd = query == "dirfd";
    let from_cwd = query == "cwd";
    let checked = if from_dirfd || from_cwd {
        comps.len().saturating_sub(1)
    } else {
        comps.len()
    };
    let mut cur = root.to_path_buf();
    for (i, comp) in comps.iter().enumerate() {
        if *comp == "." || *comp == ".." || comp.contains('%') || comp.contains('\0') {
            return Err(404);
        }
        if i == checked {
            break;
        }
        cur.push(comp);
        // The check: lstat every component; a symlink must have its target's owner.
        let l = fs::symlink_metadata(&cur).map_err(|e| status_of(&e))?;
        if l.file_type().is_symlink() {
            let t = fs::metadata(&cur).map_err(|e| status_of(&e))?;
            if t.uid() != l.uid() {
                return Err(403);
            }
        }
    }
    // The use: a second, separate resolution of the same path.
    let mut f = match comps.last() {
        Some(name) if from_dirfd => {
            let dir = File::open(&cur).map_err(|e| status_of(&e))?;
            let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC;
            let fd = nix::fcntl::openat(&dir, *name, flags, nix::sys::stat::Mode::empty())
                .map_err(|e| status_of(&io::Error::from_raw_os_error(e as i32)))?;
            File::from(fd)
        }
        // This thread's own working directory (see `connection`).
        Some(name) if from_cwd => {
            std::env::set_current_dir(&cur).map_err(|e| status_of(&e))?;
            File::open(name).map_err(|e| status_of(&e))?
        }
        _ => File::open(&cur).map_err(|e| status_of(&e))?,
    };
    let m = f.metadata().map_err(|e| status_of(&e))?;
    if !m.is_file() {
        return Err(404);
    }
    let mut body = Vec::with_capacity(m.len().min(MAX_FILE) as usize);
    Read::by_ref(&mut f)
        .take(MAX_FILE)
        .read_to_end(&mut body)
        .map_err(|e| status_of(&e))?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::handle;
    use std::os::unix::fs::symlink;

    #[test]
    fn serves_files_and_refuses_dotdot_and_missing() {
        let dir = std::env::temp_dir().join(format!("tg-naive-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("d")).expect("mkdir");
        std::fs::write(dir.join("d/f.txt"), b"hi").expect("write");
        // Own symlink (same owner as its target): followed.
        symlink("f.txt", dir.join("d/l.txt")).expect("symlink");
        assert_eq!(handle(&dir, "/d/f.txt?x=1"), Ok(b"hi".to_vec()));
        assert_eq!(handle(&dir, "/d/l.txt"), Ok(b"hi".to_vec()));
        assert_eq!(handle(&dir, "/d/../d/f.txt"), Err(404));
        assert_eq!(handle(&dir, "/d/nope"), Err(404));
        assert_eq!(handle(&dir, "/d"), Err(404));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
