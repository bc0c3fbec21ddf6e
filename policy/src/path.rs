//! Lexical path normalisation into a fixed stack buffer (no allocation).
//!
//! The path is normalised as the process asked for it: `//` and `.` are dropped and `..`
//! removes the previous component. Symlinks are *not* resolved here, on purpose: the guard
//! decides on the opened file's owner, so whatever the kernel resolved, the answer holds.

/// Longest path the guard handles, as Linux's `PATH_MAX` (including the NUL).
pub const PATH_MAX: usize = 4096;

/// A normalised absolute path held in a fixed buffer of `N` bytes (one kept for a NUL; a
/// relative path joined to its directory may exceed `PATH_MAX`, which the kernel allows):
/// always starts with `/`, never ends with `/` (except the root itself), has no empty, `.`
/// or `..` component. The shim holds a small one on the stack and a `PATH_MAX` one only
/// for the rare longer path; every field is a plain integer, and every walk starts with
/// [`Self::clear`], so any bytes at all (zeroed memory) are a valid value to start from.
#[repr(C)]
pub struct PathBuf<const N: usize = PATH_MAX> {
    len: usize,
    depth: usize,
    buf: [u8; N],
}

/// The path (after joining with its base) does not fit in [`PATH_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

impl<const N: usize> Default for PathBuf<N> {
    fn default() -> Self {
        Self::root()
    }
}

impl PathBuf {
    /// The root directory, `/`, in a `PATH_MAX` buffer.
    pub const fn new() -> Self {
        Self::root()
    }
}

impl<const N: usize> PathBuf<N> {
    /// The root directory, `/`, in an `N`-byte buffer.
    pub const fn root() -> Self {
        let mut buf = [0u8; N];
        buf[0] = b'/';
        PathBuf {
            buf,
            len: 1,
            depth: 0,
        }
    }

    /// The normalised path, without a NUL.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Number of components (`/` is 0, `/home/alice` is 2).
    pub fn depth(&self) -> usize {
        self.depth
    }

    pub(crate) fn clear(&mut self) {
        self.buf[0] = b'/';
        self.len = 1;
        self.depth = 0;
    }

    pub(crate) fn push(&mut self, component: &[u8]) -> Result<(), TooLong> {
        let sep = usize::from(self.len > 1);
        // Keep one byte spare so a NUL can always be appended for a system call.
        if self.len + sep + component.len() >= N {
            return Err(TooLong);
        }
        if sep == 1 {
            self.buf[self.len] = b'/';
            self.len += 1;
        }
        self.buf[self.len..self.len + component.len()].copy_from_slice(component);
        self.len += component.len();
        self.depth += 1;
        Ok(())
    }

    pub(crate) fn pop(&mut self) {
        if self.depth == 0 {
            return; // `/..` is `/`
        }
        let cut = self.buf[..self.len].iter().rposition(|&b| b == b'/').unwrap_or(0);
        self.len = cut.max(1);
        self.depth -= 1;
    }

    /// Byte length of the prefix holding the first `depth` components.
    pub fn prefix_len(&self, depth: usize) -> usize {
        if depth == 0 {
            return 1;
        }
        let mut seen = 0;
        for (i, &b) in self.buf[1..self.len].iter().enumerate() {
            if b == b'/' {
                seen += 1;
                if seen == depth {
                    return i + 1;
                }
            }
        }
        self.len
    }

    /// Iterator over the components, left to right.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.as_bytes()[1..]
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
    }
}

/// Split a path into its components, skipping empty ones and `.`.
pub(crate) fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".")
}

/// Normalise `path` (joined to `base` when relative) into `out`, without root matching: the
/// reference the tests hold [`crate::Policy::classify`]'s walk to.
#[cfg(test)]
pub(crate) fn normalize(base: Option<&[u8]>, path: &[u8], out: &mut PathBuf) -> Result<(), TooLong> {
    out.clear();
    let relative = path.first() != Some(&b'/');
    let base_iter = base.filter(|_| relative).into_iter().flat_map(components);
    for c in base_iter.chain(components(path)) {
        if c == b".." {
            out.pop();
        } else {
            out.push(c)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(base: Option<&str>, p: &str) -> String {
        let mut out = PathBuf::new();
        normalize(base.map(str::as_bytes), p.as_bytes(), &mut out).unwrap();
        String::from_utf8(out.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn drops_dots_and_double_slashes() {
        assert_eq!(
            norm(None, "/home//alice/./public_html/"),
            "/home/alice/public_html"
        );
        assert_eq!(norm(None, "/"), "/");
        assert_eq!(norm(None, "//"), "/");
        assert_eq!(norm(None, "/a/b/../c"), "/a/c");
        assert_eq!(norm(None, "/../../etc"), "/etc");
        assert_eq!(norm(None, "/a/b/.."), "/a");
    }

    #[test]
    fn joins_relative_paths_to_base() {
        assert_eq!(
            norm(Some("/home/alice"), "public_html/x"),
            "/home/alice/public_html/x"
        );
        assert_eq!(norm(Some("/home/alice/public_html"), "../../bob"), "/home/bob");
        assert_eq!(norm(Some("/home/alice"), "/etc/passwd"), "/etc/passwd");
        assert_eq!(norm(Some("/"), "."), "/");
    }

    #[test]
    fn depth_and_prefixes() {
        let mut out = PathBuf::new();
        normalize(None, b"/home/alice/public_html/x", &mut out).unwrap();
        assert_eq!(out.depth(), 4);
        assert_eq!(&out.as_bytes()[..out.prefix_len(2)], b"/home/alice");
        assert_eq!(&out.as_bytes()[..out.prefix_len(0)], b"/");
        assert_eq!(&out.as_bytes()[..out.prefix_len(1)], b"/home");
    }

    #[test]
    fn a_small_buffer_says_too_long_where_a_big_one_does_not() {
        let long = format!("/{}", "x".repeat(2000));
        let mut small = PathBuf::<1024>::root();
        let mut out = PathBuf::new();
        assert_eq!(normalize_into(&long, &mut small), Err(TooLong));
        assert!(normalize(None, long.as_bytes(), &mut out).is_ok());
        assert_eq!(out.as_bytes(), long.as_bytes());
    }

    fn normalize_into<const N: usize>(p: &str, out: &mut PathBuf<N>) -> Result<(), TooLong> {
        out.clear();
        for c in components(p.as_bytes()) {
            out.push(c)?;
        }
        Ok(())
    }

    #[test]
    fn too_long_is_an_error_not_a_panic() {
        let long = "/a".repeat(PATH_MAX);
        let mut out = PathBuf::new();
        assert_eq!(normalize(None, long.as_bytes(), &mut out), Err(TooLong));
        let comp = "x".repeat(PATH_MAX - 2);
        assert!(normalize(None, format!("/{comp}").as_bytes(), &mut out).is_ok());
        assert_eq!(
            normalize(None, format!("/{comp}x").as_bytes(), &mut out),
            Err(TooLong)
        );
    }
}
