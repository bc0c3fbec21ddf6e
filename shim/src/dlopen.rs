//! `dlopen`/`dlmopen` without `RTLD_DEEPBIND`.
//!
//! PHP loads every extension with `RTLD_DEEPBIND`: the extension and the libraries behind it
//! (libcurl, libxml2, libxslt, libsqlite3, libzip, libgd, ...) then resolve `open`, `fopen`,
//! ... in their own dependency scope first, which holds libc but not us, so their opens
//! never reach our hooks (`curl_exec` of a `file://` URL read any file the pool's uid could
//! read). Dropping the flag puts the global scope, preloaded objects first, back in front:
//! those libraries bind to our hooks like every other object. This is the whole fix; an
//! `LD_AUDIT` module (`la_symbind64`) could rebind the same symbols, but it needs a second
//! library and a second environment variable, one more thing for `clear_env`, setuid
//! programs and `/etc/ld.so.preload` deployments to lose.
//!
//! Costs, decided knowingly:
//! - `RTLD_DEEPBIND` exists so that a plugin keeps its own copy of a symbol the program
//!   also defines. Without it a clash binds the plugin to the program's copy. PHP sets it
//!   to shield extensions from a host (Apache) linked against other versions of the same
//!   libraries; php-fpm, nginx and Apache with the Debian packages share one copy of each.
//! - glibc finds "the caller" of `dlopen` by its return address, which is now inside this
//!   library. That caller decides (a) the namespace for `__LM_ID_CALLER`: ours is the base
//!   namespace, and preloaded objects only exist there, so a caller in another namespace
//!   never reaches this hook; (b) `$ORIGIN` in the name: it now expands to our directory;
//!   (c) for a name without `/`, the search path: the calling object's own `DT_RPATH`/
//!   `DT_RUNPATH` no longer apply (the main program's `DT_RPATH`, `LD_LIBRARY_PATH`,
//!   ld.so.cache and the default directories still do). An absolute or relative path with a
//!   `/` is opened as given: PHP (extension_dir + name), Apache (`LoadModule`) and nginx
//!   (`load_module`) all pass one. A program that finds its plugins by bare name through
//!   its own `RUNPATH`, or names them with `$ORIGIN`, fails to load them under the shim:
//!   none of Debian's php-fpm, nginx or apache2 binaries has an `RPATH` or `RUNPATH`.
//! - `dlmopen(LM_ID_NEWLM, ...)` makes a namespace without preloaded objects: what it
//!   loads is out of the shim's reach whatever the flags (as a static binary is).
//! - Only a guarded process loses the flag: a program the configuration does not guard
//!   (under `/etc/ld.so.preload`, every other program on the box) keeps libc's behaviour.
//!
//! Neither hook is on the hot path (it runs once per library loaded), so `dlsym` through
//! `ffi::next_symbol`, which may allocate on its first call, is acceptable here.

use core::ffi::{c_char, c_int, c_void};

use crate::ffi;
use crate::state::{self, Phase};

/// Every flag the caller gave, except the one that hides libc's opens from us.
fn without_deepbind(mode: c_int) -> c_int {
    mode & !libc::RTLD_DEEPBIND
}

/// The flags to load with: unchanged unless this process is guarded.
fn flags_for(mode: c_int) -> c_int {
    if mode & libc::RTLD_DEEPBIND == 0 {
        return mode;
    }
    match state::current() {
        Phase::Guard(_) => without_deepbind(mode),
        Phase::Passthrough => mode,
    }
}

/// # Safety
/// C `dlopen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void {
    // SAFETY: the caller's arguments, unchanged but for one flag bit.
    unsafe { ffi::real_dlopen(file, flags_for(mode)) }
}

/// # Safety
/// C `dlmopen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlmopen(lmid: libc::Lmid_t, file: *const c_char, mode: c_int) -> *mut c_void {
    // SAFETY: as `dlopen`.
    unsafe { ffi::real_dlmopen(lmid, file, flags_for(mode)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deepbind_is_dropped() {
        let m = libc::RTLD_NOW | libc::RTLD_GLOBAL | libc::RTLD_DEEPBIND | libc::RTLD_NODELETE;
        assert_eq!(
            without_deepbind(m),
            libc::RTLD_NOW | libc::RTLD_GLOBAL | libc::RTLD_NODELETE
        );
        assert_eq!(without_deepbind(libc::RTLD_LAZY), libc::RTLD_LAZY);
    }
}
