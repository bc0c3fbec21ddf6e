//! `libtoctou_guard.so`: an `LD_PRELOAD` library for web-server workers.
//!
//! After every open under a configured root it `fstat`s the descriptor the process will
//! actually read, and refuses (closes it, fails with `EACCES`, logs to syslog) a file whose
//! owner is not the tenant's owner. Deciding on the object, never on the path, is what makes
//! a symlink swap between a check and the open useless.
//!
//! Layout: `export` holds the C symbols (thin), `guard` the rule around one open, `state`
//! the configuration loaded once, `syslog` the denial log, `ffi` the few libc calls that need
//! `unsafe`. The hot path makes raw system calls through rustix: no allocation, no lock, no
//! recursion into our own hooks, nothing that a `fork()` could leave locked.
#![deny(unsafe_op_in_unsafe_fn)]

mod basedir;
mod cwd;
mod dirs;
mod dlopen;
mod exec;
mod export;
mod ffi;
mod fmtbuf;
mod guard;
mod listing;
mod loader;
mod mutate;
mod owners;
mod scratch;
mod state;
mod stdio_mode;
mod syslog;
