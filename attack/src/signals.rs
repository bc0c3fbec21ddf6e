//! SIGINT/SIGTERM turn into a flag that every loop of the harness polls, so that a killed
//! run still stops its servers, its swapper and removes its tenants (all `Drop`s run).
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // Second signal: the user insists. _exit is async-signal-safe.
        crate::sys::exit_now(130);
    }
}

/// Catch SIGINT and SIGTERM from now on.
pub fn install() -> std::io::Result<()> {
    crate::sys::on_termination_signals(on_signal)
}

/// True once SIGINT or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}
