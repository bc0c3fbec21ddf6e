//! One opaque error type with a kind, and the `file:line:` prefix operators expect.

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration text is wrong (unknown directive, bad argument, ...).
    Syntax,
    /// The configuration is well formed but unusable (no root, conflicting rules).
    Invalid,
    /// The configuration file (or a directory above it) can be changed by someone other than
    /// root or the process's own uid: trusting it would let a tenant switch the guard off.
    UnsafeOwnership,
    /// The configuration file could not be read.
    Io,
}

/// A configuration error. Its `Display` is `FILE:LINE: message` (or `FILE: message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    file: PathBuf,
    line: Option<usize>,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Error {
            kind,
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn file(&self) -> &Path {
        &self.file
    }
    pub fn line(&self) -> Option<usize> {
        self.line
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for Error {}
