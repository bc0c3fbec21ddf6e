//! `fopen` mode strings to `open` flags, as glibc reads them.

use rustix::fs::OFlags;

/// Flags for `fopen(path, mode)`, or `None` for a mode glibc would reject (`EINVAL`).
pub fn flags(mode: &[u8]) -> Option<OFlags> {
    let (mut flags, rest) = match mode.split_first()? {
        (b'r', rest) => (OFlags::RDONLY, rest),
        (b'w', rest) => (OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC, rest),
        (b'a', rest) => (OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND, rest),
        _ => return None,
    };
    // glibc looks at up to six more characters; `,ccs=` ends the flags.
    for &c in rest.iter().take(6).take_while(|&&c| c != b',') {
        match c {
            b'+' => flags = (flags - OFlags::RDONLY - OFlags::WRONLY) | OFlags::RDWR,
            b'x' => flags |= OFlags::EXCL,
            b'e' => flags |= OFlags::CLOEXEC,
            _ => {} // 'b', 't', 'm', 'c': no open flag
        }
    }
    Some(flags)
}

/// Does the mode name a character set (`"r,ccs=UTF-8"`), which `fdopen` would ignore?
pub fn has_charset(mode: &[u8]) -> bool {
    mode.windows(5).any(|w| w == b",ccs=")
}

/// The mode's flag characters, and the rest from the first `,` on.
pub fn split_charset(mode: &[u8]) -> (&[u8], &[u8]) {
    mode.split_at(mode.iter().position(|&c| c == b',').unwrap_or(mode.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(flags(b"r"), Some(OFlags::RDONLY));
        assert_eq!(flags(b"rb"), Some(OFlags::RDONLY));
        assert_eq!(flags(b"r+"), Some(OFlags::RDWR));
        assert_eq!(flags(b"w"), Some(OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC));
        assert_eq!(
            flags(b"w+x"),
            Some(OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC | OFlags::EXCL)
        );
        assert_eq!(
            flags(b"ae"),
            Some(OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::CLOEXEC)
        );
        assert_eq!(flags(b"r,ccs=UTF-8"), Some(OFlags::RDONLY));
        assert_eq!(flags(b""), None);
        assert_eq!(flags(b"z"), None);
        assert!(has_charset(b"r,ccs=UTF-8") && !has_charset(b"re"));
        assert_eq!(split_charset(b"wx,ccs=UTF-8"), (&b"wx"[..], &b",ccs=UTF-8"[..]));
    }
}
