//! Where the guard keeps path bytes: small buffers on the caller's stack, and a mapping of
//! its own for the rare path that does not fit. A preload library runs on whatever stack
//! the program gives it — a 16 KiB thread, a signal handler's `SIGSTKSZ` alternate stack —
//! so no `PATH_MAX` buffer may live there.

use core::ffi::CStr;

use rustix::io::Errno;
use toctou_policy::{PATH_MAX, ScratchPath};

use crate::ffi::Mapped;

/// Normalised paths up to this many bytes stay on the stack.
pub const SMALL_PATH: usize = 1024;
/// Base directories (the working directory, an `openat` directory) up to this long too.
pub const SMALL_BASE: usize = 512;
/// Names made NUL-terminated for a system call (a tenant directory, a parent directory).
pub const SMALL_NAME: usize = 256;

/// The buffers for one long path, in a mapping ([`crate::ffi::Zeroable`]): a base of up to
/// `PATH_MAX` joined to a relative path of up to `PATH_MAX` (the kernel takes that).
#[repr(C)]
pub struct LongPath {
    pub base: [u8; PATH_MAX],
    pub norm: ScratchPath<{ 2 * PATH_MAX }>,
}

/// `bytes` and a NUL in `buf`, as a C string; `None` if it does not fit (or holds a NUL).
pub fn nul_terminated<'a>(bytes: &[u8], buf: &'a mut [u8]) -> Option<&'a CStr> {
    let dst = buf.get_mut(..=bytes.len())?;
    dst[..bytes.len()].copy_from_slice(bytes);
    dst[bytes.len()] = 0;
    CStr::from_bytes_with_nul(dst).ok()
}

/// Run `f` on `bytes` as a C string: copied to the stack if short, else to a mapping.
pub fn with_cstr<R>(bytes: &[u8], f: impl FnOnce(&CStr) -> Result<R, Errno>) -> Result<R, Errno> {
    let mut small = [0u8; SMALL_NAME];
    if let Some(c) = nul_terminated(bytes, &mut small) {
        return f(c);
    }
    if bytes.len() >= PATH_MAX {
        return Err(Errno::NAMETOOLONG);
    }
    let mut map = Mapped::zeroed(PATH_MAX).ok_or(Errno::NOMEM)?;
    let c = nul_terminated(bytes, map.bytes_mut()).ok_or(Errno::INVAL)?;
    f(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names() {
        assert_eq!(with_cstr(b"/a/b", |c| Ok(c.to_bytes().len())), Ok(4));
        let long = vec![b'x'; 3000];
        assert_eq!(with_cstr(&long, |c| Ok(c.to_bytes().len())), Ok(3000));
        assert_eq!(with_cstr(&[b'x'; PATH_MAX], |_| Ok(())), Err(Errno::NAMETOOLONG));
        assert_eq!(with_cstr(b"a\0b", |_| Ok(())), Err(Errno::INVAL));
    }
}
