//! The C symbols. Each one only converts arguments and results; the rule is in `guard`.
//!
//! Written by hand rather than with redhook: a hook must never fall through to an unguarded
//! open. The release profile builds with `panic = "abort"`, and a panic unwinding out of an
//! `extern "C"` function aborts too: a bug in the guard kills the worker, it never serves
//! the file. We also do not need `dlsym(RTLD_NEXT, "open")`: the real open is the raw system
//! call (rustix), which cannot recurse into our own hooks or into a `dlsym` that allocates.
//!
//! `open`'s third argument is variadic in C. On x86_64 and aarch64 Linux a variadic integer
//! argument travels in the same register as a fixed one, so declaring `mode` as a plain
//! parameter reads it correctly when it was passed, and we only use it with `O_CREAT` or
//! `O_TMPFILE` (when C requires it).

use core::ffi::{c_char, c_int};
use std::os::fd::IntoRawFd;

use libc::mode_t;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::ffi;
use crate::fmtbuf::FmtBuf;
use crate::guard::{self, Dir};
use crate::stdio_mode;

fn open_common(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    // SAFETY: the C caller passes NULL or a NUL-terminated path.
    let Some(path) = (unsafe { ffi::cstr(path) }) else {
        ffi::set_errno(libc::EFAULT);
        return -1;
    };
    let flags = OFlags::from_bits_retain(flags as u32);
    match guard::open(Dir::from_raw(dirfd), path, flags, Mode::from_raw_mode(mode)) {
        Ok(fd) => fd.into_raw_fd(),
        Err(e) => ffi::fail(e, -1),
    }
}

pub mod symbols {
    use super::*;

    /// # Safety
    /// C `open`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
        open_common(libc::AT_FDCWD, path, flags, mode)
    }

    /// # Safety
    /// C `open64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
        open_common(libc::AT_FDCWD, path, flags, mode)
    }

    /// # Safety
    /// C `openat`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
        open_common(dirfd, path, flags, mode)
    }

    /// # Safety
    /// C `openat64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn openat64(
        dirfd: c_int,
        path: *const c_char,
        flags: c_int,
        mode: mode_t,
    ) -> c_int {
        open_common(dirfd, path, flags, mode)
    }

    /// Fortify variant (`_FORTIFY_SOURCE`): like `open` without `O_CREAT`.
    ///
    /// # Safety
    /// C `__open_2`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
        open_common(libc::AT_FDCWD, path, flags, 0)
    }

    /// # Safety
    /// C `__open64_2`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
        open_common(libc::AT_FDCWD, path, flags, 0)
    }

    /// # Safety
    /// C `__openat_2`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
        open_common(dirfd, path, flags, 0)
    }

    /// # Safety
    /// C `__openat64_2`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
        open_common(dirfd, path, flags, 0)
    }

    /// # Safety
    /// C `creat`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn creat(path: *const c_char, mode: mode_t) -> c_int {
        open_common(
            libc::AT_FDCWD,
            path,
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            mode,
        )
    }

    /// # Safety
    /// C `creat64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn creat64(path: *const c_char, mode: mode_t) -> c_int {
        open_common(
            libc::AT_FDCWD,
            path,
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            mode,
        )
    }

    /// glibc's `fopen` opens internally, past any `open` hook: open under the rule ourselves
    /// and wrap the descriptor.
    ///
    /// # Safety
    /// C `fopen`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
        // SAFETY: C string arguments per the fopen contract.
        unsafe { fopen_common(path, mode) }
    }

    /// # Safety
    /// C `fopen64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn fopen64(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
        // SAFETY: C string arguments per the fopen contract.
        unsafe { fopen_common(path, mode) }
    }

    /// # Safety
    /// C `freopen`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn freopen(
        path: *const c_char,
        mode: *const c_char,
        stream: *mut libc::FILE,
    ) -> *mut libc::FILE {
        // SAFETY: arguments per the freopen contract.
        unsafe { freopen_common(path, mode, stream) }
    }

    /// # Safety
    /// C `freopen64`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn freopen64(
        path: *const c_char,
        mode: *const c_char,
        stream: *mut libc::FILE,
    ) -> *mut libc::FILE {
        // SAFETY: arguments per the freopen contract.
        unsafe { freopen_common(path, mode, stream) }
    }

    /// A listing of another tenant's directory is a leak too.
    ///
    /// # Safety
    /// C `opendir`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn opendir(path: *const c_char) -> *mut libc::DIR {
        // SAFETY: the C caller passes NULL or a NUL-terminated path.
        let Some(path) = (unsafe { ffi::cstr(path) }) else {
            return ffi::fail(Errno::FAULT, core::ptr::null_mut());
        };
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match guard::open(Dir::Cwd, path, flags, Mode::empty()) {
            Ok(fd) => ffi::fdopendir(fd.into_raw_fd()),
            Err(e) => ffi::fail(e, core::ptr::null_mut()),
        }
    }
}

/// # Safety
/// C `fopen` contract.
unsafe fn fopen_common(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    // SAFETY: NULL or NUL-terminated, per the contract.
    let (Some(path), Some(mode)) = (unsafe { ffi::cstr(path) }, unsafe { ffi::cstr(mode) }) else {
        return ffi::fail(Errno::FAULT, core::ptr::null_mut());
    };
    let Some(flags) = stdio_mode::flags(mode.to_bytes()) else {
        return ffi::fail(Errno::INVAL, core::ptr::null_mut());
    };
    match guard::open(Dir::Cwd, path, flags, Mode::from_raw_mode(0o666)) {
        Ok(fd) if stdio_mode::has_charset(mode.to_bytes()) => reopen_with_charset(fd, mode),
        Ok(fd) => ffi::fdopen(fd.into_raw_fd(), mode),
        Err(e) => ffi::fail(e, core::ptr::null_mut()),
    }
}

/// `fdopen` ignores `,ccs=CHARSET`: let glibc's `fopen` open the checked object again through
/// its magic link (no path lookup to race), without `x` (it exists now: we made it).
fn reopen_with_charset(fd: std::os::fd::OwnedFd, mode: &core::ffi::CStr) -> *mut libc::FILE {
    use std::os::fd::AsRawFd;
    // Keep the object open above its number, so that the stream gets the number the
    // caller's open would have had (the lowest free one).
    let high = match rustix::io::fcntl_dupfd_cloexec(&fd, fd.as_raw_fd() + 1) {
        Ok(high) => high,
        Err(e) => return ffi::fail(e, core::ptr::null_mut()),
    };
    drop(fd);
    let fd = high;
    let mut link = FmtBuf::<40>::new();
    let _ = core::fmt::Write::write_fmt(&mut link, format_args!("/proc/thread-self/fd/{}", fd.as_raw_fd()));
    let mut m = FmtBuf::<64>::new();
    let (flags_part, rest) = stdio_mode::split_charset(mode.to_bytes());
    for &c in flags_part.iter().filter(|&&c| c != b'x') {
        m.push_bytes(&[c]);
    }
    m.push_bytes(rest);
    let (Some(link), Some(m)) = (link.as_cstr(), m.as_cstr()) else {
        return ffi::fail(Errno::NAMETOOLONG, core::ptr::null_mut());
    };
    let f = ffi::real_fopen(link, m);
    let saved = ffi::errno();
    drop(fd);
    if f.is_null() {
        ffi::set_errno(saved);
    }
    f
}

/// Open `path` under the rule, then let glibc's `freopen` reopen that exact object through
/// `/proc/self/fd/N` (a magic link: no path lookup an attacker could race).
///
/// # Safety
/// C `freopen` contract.
unsafe fn freopen_common(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    // SAFETY: NULL or NUL-terminated, per the contract.
    let Some(mode) = (unsafe { ffi::cstr(mode) }) else {
        return ffi::fail(Errno::FAULT, core::ptr::null_mut());
    };
    // SAFETY: as above.
    let Some(cpath) = (unsafe { ffi::cstr(path) }) else {
        // NULL path: change the mode of the stream's current file; no new object is opened.
        // SAFETY: arguments per the contract.
        return unsafe { ffi::real_freopen(path, mode, stream) };
    };
    let opened = match stdio_mode::flags(mode.to_bytes()) {
        Some(flags) => guard::open(Dir::Cwd, cpath, flags, Mode::from_raw_mode(0o666)),
        None => Err(Errno::INVAL),
    };
    match opened {
        Err(e) => {
            // freopen closes the stream whatever happens.
            // SAFETY: the caller gave the stream up to freopen.
            unsafe { ffi::fclose(stream) };
            ffi::fail(e, core::ptr::null_mut())
        }
        Ok(fd) => {
            let mut link = FmtBuf::<32>::new();
            let _ = core::fmt::Write::write_fmt(
                &mut link,
                format_args!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)),
            );
            let Some(link) = link.as_cstr() else {
                return ffi::fail(Errno::NAMETOOLONG, core::ptr::null_mut());
            };
            // SAFETY: arguments per the contract; `link` names the descriptor we checked.
            let f = unsafe { ffi::real_freopen(link.as_ptr(), mode, stream) };
            let saved = ffi::errno();
            drop(fd);
            if f.is_null() {
                ffi::set_errno(saved);
            }
            f
        }
    }
}
