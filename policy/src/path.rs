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
        clean_prefix_len(self.as_bytes(), depth)
    }

    /// Iterator over the components, left to right.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.as_bytes()[1..]
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of `w` that is a `/` or a `.`, and the same of each `/`. Exact: the
/// zero-byte trick `(y - 1) & !y` marks a false byte only where `y` is 1 with a borrow
/// from below, and `y = (b | 1) ^ '/'` is always even (`.` is 0x2e, `/` 0x2f: `| 1` folds
/// them into one compare); the `/`s among them are the odd bytes.
#[inline(always)]
fn slash_or_dot(w: u64) -> (u64, u64) {
    let y = (w | ONES) ^ (ONES * u64::from(b'/'));
    let sd = y.wrapping_sub(ONES) & !y & HIGH;
    (sd, sd & (w << 7))
}

/// Words of a path whose `/` masks [`clean_slashes`] keeps (its first 128 bytes); components
/// past them are found again byte by byte (paths that long are rare, and still correct).
pub(crate) const WORDS: usize = 16;

/// Where the `/`s of a clean path are: bit 7 of each byte that is one, word by word (the
/// extra `/` after the path included, the leading one not).
pub(crate) type Slashes = [u64; WORDS];

/// Is `path` clean (absolute, shorter than `PATH_MAX`, no empty, `.` or `..` component, no
/// trailing `/`)? One pass over its bytes, which also fills `slashes` for [`Components`]:
/// the trie walk then reads no byte of the path but the literals it compares.
///
/// The bytes are read 8 at a time as bit masks of `/` and `.`; a path is unclean when its
/// bytes followed by one more `/` contain `//`, `/./` or `/../` (found with the previous
/// word's masks shifted in, so patterns that straddle two words count too). No allocation,
/// no per-byte loop.
#[inline]
pub(crate) fn clean_slashes(path: &[u8], slashes: &mut Slashes) -> bool {
    let len = path.len();
    if path.first() != Some(&b'/') || len >= PATH_MAX {
        return false;
    }
    // `/` alone is clean and has no component (its extra `/` would read as `//`).
    if len == 1 {
        return true;
    }
    // (`as_chunks` is newer than the workspace's rust-version.)
    let mut words = path.chunks_exact(8);
    let mut prev = (0, 0);
    for (i, w) in (&mut words).enumerate() {
        let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
        let Some(next) = clean_word(slashes, i, w, prev) else {
            return false;
        };
        prev = next;
    }
    // The last bytes (as the top of the last 8 when there are 8), then the extra `/`;
    // zeros past it are neither `/` nor `.`.
    let rest = words.remainder();
    let tail = rest.len();
    let last = match path.last_chunk::<8>() {
        Some(&w) if tail > 0 => u64::from_le_bytes(w) >> (8 * (8 - tail)),
        Some(_) => 0,
        None => rest.iter().rev().fold(0, |w, &b| (w << 8) | u64::from(b)),
    };
    let Some(_) = clean_word(slashes, len / 8, last | (u64::from(b'/') << (8 * tail)), prev) else {
        return false;
    };
    slashes[0] &= !0x80; // the leading `/` ends no component
    true
}

/// Check the `i`-th word of a path, `w`, and keep its `/`s; `prev` are the previous word's
/// masks of `/` or `.` and of `/`. `None`: not clean.
#[inline(always)]
fn clean_word(slashes: &mut Slashes, i: usize, w: u64, prev: (u64, u64)) -> Option<(u64, u64)> {
    let (sd, s) = slash_or_dot(w);
    // A `/` right after a `/` or a `.` is rare in a clean path: only then look closer.
    if s & ((sd << 8) | (prev.0 >> 56)) != 0 {
        let (d, prev_d) = (sd & !s, prev.0 & !prev.1);
        // Bit 7 of byte j of `back(m, pm, k)`: byte j - k was in the mask.
        let back = |m: u64, pm: u64, k: u32| (m << (8 * k)) | (pm >> (64 - 8 * k));
        let d1 = back(d, prev_d, 1);
        let bad =
            back(s, prev.1, 1) | (d1 & back(s, prev.1, 2)) | (d1 & back(d, prev_d, 2) & back(s, prev.1, 3));
        if s & bad != 0 {
            return None;
        }
    }
    if let Some(m) = slashes.get_mut(i) {
        *m = s;
    }
    Some((sd, s))
}

/// `a == b`, inline: what the trie walk compares is a few words, and a call to `bcmp` made
/// it spill and reload its state at every level.
#[inline(always)]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| {
        s.get(i..i + 8)
            .and_then(|w| w.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let half = |s: &[u8], i: usize| {
        s.get(i..i + 4)
            .and_then(|w| w.try_into().ok())
            .map(u32::from_le_bytes)
    };
    match n {
        // Words from the front, then the last 8 bytes (overlapping the one before).
        8.. => (0..(n - 1) / 8).all(|k| word(a, 8 * k) == word(b, 8 * k)) && word(a, n - 8) == word(b, n - 8),
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => a.iter().zip(b).all(|(x, y)| x == y),
    }
}

/// Component ends [`Components`] remembers for [`Components::prefix_len`].
const ENDS: usize = 16;

/// The components of a clean path, cut at the `/`s [`clean_slashes`] found.
pub(crate) struct Components<'s, 'a> {
    path: &'a [u8],
    slashes: &'s Slashes,
    /// Offset of the `/` before the next component.
    start: usize,
    /// The word of `slashes` being read, and its `/`s not yet used.
    word: usize,
    bits: u64,
    /// Where the first components read end (`ends[d]`: the byte length of `d + 1` of them),
    /// for those whose bit is set in `known`.
    ends: [u16; ENDS],
    known: u16,
    /// Components read.
    depth: usize,
}

impl<'s, 'a> Components<'s, 'a> {
    /// The components of `path`, which [`clean_slashes`] found clean, filling `slashes`.
    #[inline]
    pub(crate) fn new(path: &'a [u8], slashes: &'s Slashes) -> Self {
        Components {
            path,
            slashes,
            start: 0,
            word: 0,
            bits: slashes[0],
            ends: [0; ENDS],
            known: 0,
            depth: 0,
        }
    }

    /// The `depth + 1`-th component ends at `end`.
    #[inline(always)]
    fn ended(&mut self, end: usize) {
        if let Some(e) = self.ends.get_mut(self.depth) {
            *e = end as u16; // < PATH_MAX
            self.known |= 1 << self.depth;
        }
        self.depth += 1;
        self.start = end;
    }

    /// Offset of the `/` (or of the end) the current component stops at.
    #[inline(always)]
    fn end(&mut self) -> Option<usize> {
        while self.bits == 0 {
            self.word += 1;
            match self.slashes.get(self.word) {
                Some(&m) => self.bits = m,
                // Past the words kept: look for it byte by byte.
                None => {
                    let rest = self.path.get(self.start + 1..)?;
                    return Some(self.start + 1 + rest.iter().position(|&b| b == b'/').unwrap_or(rest.len()));
                }
            }
        }
        let end = self.word * 8 + (self.bits.trailing_zeros() / 8) as usize;
        self.bits &= self.bits - 1;
        Some(end)
    }

    /// Take the next `depth` components if they are exactly `text` (those joined by `/`): one
    /// compare for a run of trie levels. False (nothing taken) when they are not.
    #[inline]
    pub(crate) fn take(&mut self, text: &[u8], depth: usize) -> bool {
        let from = self.start + 1;
        let end = from + text.len();
        let whole = self.path.get(end).is_none_or(|&b| b == b'/');
        if !whole || !self.path.get(from..end).is_some_and(|p| same(p, text)) {
            return false;
        }
        // Read on from the `/` at `end` (its own bit and those before it used).
        self.word = (end / 8).min(WORDS - 1);
        self.bits = match self.slashes.get(end / 8) {
            Some(&m) => m & u64::MAX.checked_shl(8 * (end % 8) as u32 + 8).unwrap_or(0),
            None => 0,
        };
        // Where the components inside the run end is not recorded (counted again if asked).
        self.depth += depth - 1;
        self.ended(end);
        true
    }

    /// Byte length of the first `n` components (`/` itself for 0), as
    /// [`PathBuf::prefix_len`]; remembered for those already read.
    #[inline]
    pub(crate) fn prefix_len(&self, n: usize) -> usize {
        match n.checked_sub(1) {
            None => 1,
            Some(i) if i < ENDS && self.known & (1 << i) != 0 => usize::from(self.ends[i]),
            Some(_) => clean_prefix_len(self.path, n),
        }
    }
}

impl<'a> Iterator for Components<'_, 'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        // Past the last component (which ends at the end), or `/` itself.
        if self.start + 1 >= self.path.len() {
            return None;
        }
        let end = self.end()?;
        let comp = self.path.get(self.start + 1..end)?;
        self.ended(end);
        Some(comp)
    }
}

/// The clean fast path's scan ([`clean_slashes`], then [`Components`]) as lists, for the
/// property tests and fuzz targets that hold it to a reference: `None` when `path` is not
/// clean, else its components and the byte length of its first 0, 1, ... all of them.
/// Allocates: not for the hot path.
#[doc(hidden)]
pub fn clean_scan(path: &[u8]) -> Option<(Vec<&[u8]>, Vec<usize>)> {
    let mut slashes = [0; WORDS];
    if !clean_slashes(path, &mut slashes) {
        return None;
    }
    let mut comps = Components::new(path, &slashes);
    let list: Vec<&[u8]> = comps.by_ref().collect();
    let prefixes = (0..=list.len()).map(|n| comps.prefix_len(n)).collect();
    Some((list, prefixes))
}

/// Byte length of the first `n` components of a clean absolute path (`/` itself for 0).
pub(crate) fn clean_prefix_len(path: &[u8], n: usize) -> usize {
    if n == 0 {
        return 1;
    }
    let mut seen = 0;
    for (i, &b) in path.iter().enumerate().skip(1) {
        if b == b'/' {
            seen += 1;
            if seen == n {
                return i;
            }
        }
    }
    path.len()
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
