//! One error type: what the harness was doing, plus the OS error when there is one.
#![forbid(unsafe_code)]

use std::fmt;
use std::io;

/// An error with its context (`"creating /tmp/x: Permission denied"`).
#[derive(Debug)]
pub struct Error {
    what: String,
    source: Option<io::Error>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error without an OS cause.
    pub fn msg(what: impl Into<String>) -> Self {
        Error {
            what: what.into(),
            source: None,
        }
    }

    /// An OS error with what was being done.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error {
            what: what.into(),
            source: Some(source),
        }
    }

    /// The raw OS error number, if any.
    pub fn errno(&self) -> Option<i32> {
        self.source.as_ref().and_then(io::Error::raw_os_error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{}: {}", self.what, e),
            None => f.write_str(&self.what),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// `.wrap(|| format!("doing {x}"))` on `io::Result`.
pub trait Wrap<T> {
    fn wrap<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Wrap<T> for io::Result<T> {
    fn wrap<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}
