//! A fresh random marker per run, written into every secret, so that a leak found in a
//! response cannot come from an earlier run, a cache or a coincidence.
#![forbid(unsafe_code)]

use crate::error::{Result, Wrap};

/// `TGLEAK-` followed by 32 random hex digits.
pub fn fresh() -> Result<String> {
    let mut raw = [0u8; 16];
    crate::sys::random_bytes(&mut raw).wrap(|| "getrandom")?;
    let mut s = String::from("TGLEAK-");
    for b in raw {
        s.push_str(&format!("{b:02x}"));
    }
    Ok(s)
}

/// Does `hay` contain `needle`? (`memmem`.)
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn markers_differ_and_are_found() {
        let a = super::fresh().expect("marker");
        let b = super::fresh().expect("marker");
        assert_ne!(a, b);
        assert_eq!(a.len(), 7 + 32);
        assert!(super::contains(format!("xx{a}yy").as_bytes(), a.as_bytes()));
        assert!(!super::contains(b"TGLEAK-", a.as_bytes()));
    }
}
