//! The crate's one error type. Every message is a sentence a user can act on:
//! it names the file, the value or the shape that is wrong and, where there is
//! one, what to do about it.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// No GPU adapter (not even a software one) could be found.
    NoAdapter(String),
    /// The adapter was found but refused a device, or the device failed.
    Device(String),
    /// Two things that must agree in shape do not.
    Shape(String),
    /// A configuration value is out of range.
    Config(String),
    /// Reading or writing a file failed; `path` names it.
    Io { path: String, message: String },
    /// A stop flag (Ctrl-C, SIGTERM) ended a run early, after its checkpoint; the
    /// message says where.
    Stopped(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(m) | Error::Device(m) | Error::Shape(m) | Error::Config(m) | Error::Stopped(m) => {
                f.write_str(m)
            }
            Error::Io { path, message } => write!(f, "{path}: {message}"),
        }
    }
}

impl std::error::Error for Error {}
