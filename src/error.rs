//! The error kinds of the Rust layers; the C ABI maps each to one `joint_status` code.

use std::fmt;
use std::io;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An argument is invalid (bad payload, bad option value).
    InvalidArgument,
    /// A call that must not be made from inside a callback was.
    Recursive,
    /// The object is in the wrong state for this call (for example a closed connection).
    State,
    /// A configured limit was reached (too many calls in flight).
    Limit,
    /// The address could not be parsed or resolved.
    Address,
    /// An I/O error from the operating system.
    Io,
    ConnectionRefused,
    AddressInUse,
    /// The connection was closed (by the peer, an error, or the application).
    Closed,
    Timeout,
    Cancelled,
    /// The TLS handshake failed (certificate not trusted, name mismatch, expired, missing
    /// client certificate, a peer not speaking TLS), or a TLS record was bad.
    Tls,
    /// The peer broke the protocol.
    Protocol,
    /// A message or payload is larger than the size limit.
    TooLarge,
    /// The peer answered with an error object.
    Remote,
    /// Needs the joint extension, which the peer (or this call) does not have.
    Unsupported,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }

    pub fn io(context: &str, e: &io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::ConnectionRefused => ErrorKind::ConnectionRefused,
            io::ErrorKind::AddrInUse => ErrorKind::AddressInUse,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            io::ErrorKind::NotFound if context.starts_with("connect") => ErrorKind::ConnectionRefused,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{context}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
