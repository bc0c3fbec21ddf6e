//! The denial line, written once for both guards, into any [`fmt::Write`] (the shim's fixed
//! stack buffer, the daemon's `String`), and the per-second budget that limits them.
//!
//! ```text
//! <84>toctou-guard[2211]: action=deny reason=owner-mismatch mode=enforce uid=33 owner=1002 expected=1001 suppressed=0 comm=nginx tenant=/home/alice path=/home/alice/public_html/x
//! ```
//! Fixed fields first, in this order, each always present (`-` when unknown); then the
//! fields whose bytes someone else chose: `comm` (the process's own name), `tenant` and,
//! last, `path`. Those are escaped (every byte that is not printable ASCII, and `\`, `=` and
//! space, becomes `\xNN`), so no name can forge a field or a line, and cut to a bound with
//! the marker `\...` (which escaped text can never contain: a real `\` is `\x5c`).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::config::Mode;
use crate::decide::DenyReason;

/// `authpriv` (10) × 8 + `warning` (4).
pub const PRI_DENIAL: u32 = 84;
/// `authpriv` × 8 + `err` (3), for configuration errors.
pub const PRI_CONFIG_ERROR: u32 = 83;

/// Longest escaped `comm`, `tenant` and `path` (before the cut marker): a whole line stays
/// under 1 KiB, the shim's buffer.
pub const MAX_COMM: usize = 64;
pub const MAX_TENANT: usize = 256;
pub const MAX_PATH: usize = 512;

/// The marker that ends a cut field.
pub const CUT: &str = "\\...";

/// One refused open (or, in audit mode, one that would have been refused).
#[derive(Debug, Clone, Copy)]
pub struct Denial<'a> {
    /// `true` in audit mode: logged, then allowed.
    pub audit: bool,
    pub reason: DenyReason,
    pub mode: Mode,
    /// The effective uid of the process whose open was judged.
    pub uid: Option<u32>,
    /// The opened object's owner (`None` when refused before anything was opened).
    pub owner: Option<u32>,
    pub expected: Option<u32>,
    /// Lines dropped by the rate limit since the last one written.
    pub suppressed: u64,
    pub comm: &'a [u8],
    pub tenant: &'a [u8],
    pub path: &'a [u8],
}

/// `<PRI>TAG[PID]: `, the syslog header both guards start their lines with.
pub fn write_header(w: &mut impl Write, pri: u32, tag: &str, pid: u32) -> fmt::Result {
    write!(w, "<{pri}>{tag}[{pid}]: ")
}

/// The body of a denial line (after [`write_header`]).
pub fn write_denial(w: &mut impl Write, d: &Denial<'_>) -> fmt::Result {
    write!(
        w,
        "action={} reason={} mode={} uid={} owner={} expected={} suppressed={} comm=",
        if d.audit { "audit" } else { "deny" },
        d.reason.as_str(),
        d.mode.as_str(),
        Opt(d.uid),
        Opt(d.owner),
        Opt(d.expected),
        d.suppressed,
    )?;
    write_escaped(w, d.comm, MAX_COMM)?;
    w.write_str(" tenant=")?;
    write_escaped(w, d.tenant, MAX_TENANT)?;
    w.write_str(" path=")?;
    write_escaped(w, d.path, MAX_PATH)
}

/// Untrusted bytes as one log word, at most `max` characters before the cut marker.
pub fn write_escaped(w: &mut impl Write, bytes: &[u8], max: usize) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut used = 0;
    for &b in bytes {
        let plain = b.is_ascii_graphic() && b != b'\\' && b != b'=';
        let width = if plain { 1 } else { 4 };
        if used + width > max {
            return w.write_str(CUT);
        }
        used += width;
        if plain {
            w.write_char(char::from(b))?;
        } else {
            let esc = [b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]];
            // The four bytes are ASCII.
            w.write_str(core::str::from_utf8(&esc).unwrap_or("\\x3f"))?;
        }
    }
    Ok(())
}

/// The guards' syslog tags: the shim's and the FUSE daemon's.
pub const TAGS: [&str; 2] = ["toctou-guard", "toctou-guard-fs"];

/// `[<PRI>]TAG[PID]: BODY` → `(TAG, PID, BODY)` (the header [`write_header`] writes, with
/// or without the priority a syslog daemon strips); `None` for any other text.
pub fn parse_header(line: &str) -> Option<(&str, u32, &str)> {
    let line = match line.strip_prefix('<') {
        Some(rest) => {
            let (pri, rest) = rest.split_once('>')?;
            pri.bytes().all(|b| b.is_ascii_digit()).then_some(rest)?
        }
        None => line,
    };
    let (tag, rest) = line.split_once('[')?;
    let (pid, body) = rest.split_once("]: ")?;
    if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some((tag, pid.parse().ok()?, body))
}

/// A denial line's body as read back: the fixed fields decoded, the three free fields as
/// written (escaped, printable ASCII; [`unescape`] gives their bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedDenial<'a> {
    pub audit: bool,
    pub reason: DenyReason,
    pub mode: Mode,
    pub uid: Option<u32>,
    pub owner: Option<u32>,
    pub expected: Option<u32>,
    pub suppressed: u64,
    pub comm: &'a str,
    pub tenant: &'a str,
    pub path: &'a str,
}

/// Why a body that looked like one of ours is not a denial line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ten fields of [`write_denial`], in its order.
const FIELDS: [&str; 10] = [
    "action",
    "reason",
    "mode",
    "uid",
    "owner",
    "expected",
    "suppressed",
    "comm",
    "tenant",
    "path",
];

/// Read back what [`write_denial`] wrote: exactly its ten `key=value` fields, in order,
/// separated by one space (escaped text holds no space and no `=`), each value valid.
/// Never panics; an error names the first field that is wrong.
pub fn parse_denial(body: &str) -> Result<ParsedDenial<'_>, ParseError> {
    let err = |m: String| Err(ParseError(m));
    let mut values = [""; 10];
    let mut words = body.split(' ');
    for (i, key) in FIELDS.iter().enumerate() {
        let Some(word) = words.next() else {
            return err(format!("field '{key}' missing"));
        };
        match word.split_once('=') {
            Some((k, v)) if k == *key && !v.contains('=') => values[i] = v,
            _ => return err(format!("'{key}=' expected, found '{}'", word.escape_debug())),
        }
    }
    if words.next().is_some() {
        return err("text after 'path='".into());
    }
    let num = |i: usize| -> Result<Option<u32>, ParseError> {
        match values[i] {
            "-" => Ok(None),
            v => v
                .parse()
                .map(Some)
                .map_err(|_| ParseError(format!("{}={}: not a number or '-'", FIELDS[i], v.escape_debug()))),
        }
    };
    let audit = match values[0] {
        "deny" => false,
        "audit" => true,
        v => return err(format!("action={}: not deny or audit", v.escape_debug())),
    };
    let Some(reason) = DenyReason::from_word(values[1]) else {
        return err(format!("reason={}: unknown", values[1].escape_debug()));
    };
    let Some(mode) = Mode::from_word(values[2]) else {
        return err(format!("mode={}: unknown", values[2].escape_debug()));
    };
    let Ok(suppressed) = values[6].parse() else {
        return err(format!("suppressed={}: not a number", values[6].escape_debug()));
    };
    for i in 7..10 {
        if unescape(values[i]).is_none() {
            return err(format!("{}=: not escaped as the guards write it", FIELDS[i]));
        }
    }
    Ok(ParsedDenial {
        audit,
        reason,
        mode,
        uid: num(3)?,
        owner: num(4)?,
        expected: num(5)?,
        suppressed,
        comm: values[7],
        tenant: values[8],
        path: values[9],
    })
}

/// The bytes [`write_escaped`] was given, and whether it cut them (`\...` at the end);
/// `None` if `text` is not its output (a raw space, `=`, `\`, non-ASCII, a bad `\xNN`).
pub fn unescape(text: &str) -> Option<(Vec<u8>, bool)> {
    let (text, cut) = match text.strip_suffix(CUT) {
        Some(t) => (t, true),
        None => (text, false),
    };
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let hex = b.get(i + 2..i + 4).filter(|_| b.get(i + 1) == Some(&b'x'))?;
            let h = core::str::from_utf8(hex).ok()?;
            // Lower-case hex only, as written, so that one text means one byte string.
            if h.bytes().any(|c| c.is_ascii_uppercase()) {
                return None;
            }
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 4;
        } else if b[i].is_ascii_graphic() && b[i] != b'=' {
            out.push(b[i]);
            i += 1;
        } else {
            return None;
        }
    }
    Some((out, cut))
}

struct Opt(Option<u32>);

impl fmt::Display for Opt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("-"),
        }
    }
}

/// Denial lines per second, lock-free: one atomic word for the window, one for the lines
/// dropped, so a flood of denials costs the guard a counter increment each, and the next
/// line that gets through says how many were dropped (`suppressed=N`).
pub struct RateLimit {
    per_second: u64,
    /// `second << 32 | lines written in that second`.
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second: u64::from(per_second.max(1)),
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// May a line be written in second `now_s`? `Some(n)`: yes, reporting `n` lines dropped
    /// since the last one; `None`: no (the line is counted as dropped).
    pub fn admit(&self, now_s: u64) -> Option<u64> {
        let now = now_s & 0xffff_ffff;
        let mut cur = self.window.load(Ordering::Relaxed);
        loop {
            let (sec, count) = (cur >> 32, cur & 0xffff_ffff);
            let next = if sec == now {
                if count >= self.per_second {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                cur + 1
            } else {
                (now << 32) | 1
            };
            match self
                .window
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(path: &[u8]) -> String {
        let mut s = String::new();
        write_header(&mut s, PRI_DENIAL, "toctou-guard", 7).unwrap();
        write_denial(
            &mut s,
            &Denial {
                audit: false,
                reason: DenyReason::OwnerMismatch,
                mode: Mode::Enforce,
                uid: Some(33),
                owner: Some(1002),
                expected: None,
                suppressed: 4,
                comm: b"ng inx",
                tenant: b"/home/alice",
                path,
            },
        )
        .unwrap();
        s
    }

    #[test]
    fn fixed_fields_first_path_last() {
        assert_eq!(
            line(b"/home/alice/public_html/a b=c\n"),
            "<84>toctou-guard[7]: action=deny reason=owner-mismatch mode=enforce uid=33 owner=1002 \
             expected=- suppressed=4 comm=ng\\x20inx tenant=/home/alice \
             path=/home/alice/public_html/a\\x20b\\x3dc\\x0a"
        );
    }

    #[test]
    fn long_fields_are_cut_with_a_marker() {
        let s = line(&[b'\xff'; 4000]);
        assert!(s.len() < 1024, "{}", s.len());
        assert!(s.ends_with("\\xff\\..."), "{s}");
        let mut w = String::new();
        write_escaped(&mut w, b"abcdef", 4).unwrap();
        assert_eq!(w, "abcd\\...");
        let mut w = String::new();
        write_escaped(&mut w, b"a\\", 4).unwrap();
        assert_eq!(w, "a\\...", "a 4-byte escape that does not fit is cut whole");
    }

    #[test]
    fn a_line_reads_back() {
        let l = line(b"/home/alice/public_html/a b");
        let (tag, pid, body) = parse_header(&l).unwrap();
        assert_eq!((tag, pid), ("toctou-guard", 7));
        let d = parse_denial(body).unwrap();
        assert_eq!(
            (
                d.audit,
                d.reason,
                d.mode,
                d.uid,
                d.owner,
                d.expected,
                d.suppressed
            ),
            (
                false,
                DenyReason::OwnerMismatch,
                Mode::Enforce,
                Some(33),
                Some(1002),
                None,
                4
            )
        );
        assert_eq!((d.comm, d.tenant), ("ng\\x20inx", "/home/alice"));
        assert_eq!(
            unescape(d.path).unwrap(),
            (b"/home/alice/public_html/a b".to_vec(), false)
        );
        assert_eq!(unescape("ab\\..."), Some((b"ab".to_vec(), true)));
        // Without the priority, as syslog daemons store it.
        assert_eq!(parse_header(&l[4..]).map(|h| h.0), Some("toctou-guard"));
    }

    #[test]
    fn broken_lines_are_errors_not_panics() {
        let l = line(b"/x");
        let body = parse_header(&l).unwrap().2;
        for bad in [
            &body[..body.len() / 2],
            "action=deny",
            "",
            "action=block reason=owner-mismatch",
        ] {
            assert!(parse_denial(bad).is_err(), "{bad}");
        }
        assert!(parse_denial(&body.replace("uid=33", "uid=x")).is_err());
        assert!(parse_denial(&format!("{body} extra=1")).is_err());
        assert!(parse_denial(&body.replace("comm=ng", "comm=\\xZZ")).is_err());
        assert_eq!(parse_header("sshd[1]: x").map(|h| h.0), Some("sshd"));
        assert_eq!(parse_header("no header"), None);
        assert_eq!(parse_header("<x>t[1]: y"), None);
        assert_eq!(parse_header("t[-1]: y"), None);
    }

    #[test]
    fn rate_limit_counts_what_it_drops() {
        let r = RateLimit::new(2);
        assert_eq!(r.admit(10), Some(0));
        assert_eq!(r.admit(10), Some(0));
        assert_eq!(r.admit(10), None);
        assert_eq!(r.admit(10), None);
        assert_eq!(r.admit(11), Some(2), "the next line reports the two dropped");
        assert_eq!(r.admit(11), Some(0));
    }
}
