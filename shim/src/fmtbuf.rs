//! A fixed-size text buffer for log lines and `/proc/self/fd/N` paths: no allocation.

use core::fmt;

pub struct FmtBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

// SAFETY: a byte array and a length: all zeros is an empty buffer.
unsafe impl<const N: usize> crate::ffi::Zeroable for FmtBuf<N> {}

impl<const N: usize> Default for FmtBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FmtBuf<N> {
    pub const fn new() -> Self {
        FmtBuf { buf: [0; N], len: 0 }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Append raw bytes; whatever does not fit is dropped (a log line is cut, never overflows).
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    /// The contents plus a NUL, as a C string (None if full or if it holds a NUL).
    pub fn as_cstr(&mut self) -> Option<&core::ffi::CStr> {
        if self.len >= N {
            return None;
        }
        self.buf[self.len] = 0;
        core::ffi::CStr::from_bytes_with_nul(&self.buf[..=self.len]).ok()
    }
}

impl<const N: usize> fmt::Write for FmtBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_bytes(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn truncates_instead_of_overflowing() {
        let mut b = FmtBuf::<8>::new();
        b.write_str("0123456789").unwrap();
        assert_eq!(b.as_bytes(), b"01234567");
        assert!(b.as_cstr().is_none());
    }
}
