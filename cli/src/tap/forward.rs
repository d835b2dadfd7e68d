//! Byte pumps: each direction of a tapped connection is copied as it is read.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;

use super::observe::Observer;

/// Bytes read (and forwarded) at a time, per direction.
pub const CHUNK: usize = 64 * 1024;

/// A connected socket of either family.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    pub fn shutdown(&self, how: Shutdown) {
        // Errors mean the socket is closed already, which is what was wanted.
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        };
    }

    /// Blocking mode and, for TCP, no Nagle delay (the tap must not add latency).
    pub fn prepare(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_nonblocking(false)?;
                s.set_nodelay(true)
            }
            Stream::Unix(s) => s.set_nonblocking(false),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How one direction ended.
pub struct Ended {
    pub bytes: u64,
    /// None: the sender closed its end (EOF), which was passed on.
    pub error: Option<String>,
}

/// Copy `from` to `to` until EOF (passed on as a half-close) or an error (which shuts both
/// sockets down, so the other direction ends too). Each chunk is shown, then written at once.
pub fn pump(mut from: Stream, mut to: Stream, observer: &mut Observer) -> Ended {
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    let error = loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                to.shutdown(Shutdown::Write);
                break None;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(format!("read: {e}")),
        };
        // Shown first, so a call is on record before its answer can come back (the
        // scanner only looks at these bytes; it never waits for more).
        observer.feed(&buf[..n]);
        if let Err(e) = to.write_all(&buf[..n]) {
            break Some(format!("write: {e}"));
        }
        bytes += n as u64;
    };
    if error.is_some() {
        from.shutdown(Shutdown::Both);
        to.shutdown(Shutdown::Both);
    }
    Ended { bytes, error }
}
