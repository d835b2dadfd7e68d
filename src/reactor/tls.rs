//! A TLS stream over a non-blocking TCP socket (rustls). The handshake and the records are
//! driven from the same readiness events as plain TCP: no thread, nothing blocks. What it
//! holds beyond rustls's own record buffers: one socket read (`RX_CHUNK`) while it is being
//! decrypted, and at most `TX_CHUNK` of encrypted output the socket has not taken yet.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// Bytes read from the socket at once (rustls itself reads 4 KiB per call): one syscall per
/// two full records. Released whenever the socket is drained.
const RX_CHUNK: usize = 32 << 10;
/// Plaintext taken per write, so encrypted output the socket has not taken stays bounded.
const TX_CHUNK: usize = 64 << 10;

/// The certificate a peer presented and the handshake verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The certificate, DER-encoded.
    pub der: Vec<u8>,
    /// Its subject, attributes in certificate order, for example "O=example, CN=alice".
    pub subject: String,
    /// SHA-256 of `der`.
    pub sha256: [u8; 32],
}

impl PeerCertificate {
    fn from_der(der: &[u8]) -> PeerCertificate {
        let subject = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => cert.subject().to_string(),
            Err(_) => String::new(),
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest.as_ref());
        PeerCertificate { der: der.to_vec(), subject, sha256 }
    }
}

/// What the handshake settled, kept for the connection's lifetime.
#[derive(Clone, Debug)]
pub struct TlsSession {
    /// "TLSv1.3" or "TLSv1.2".
    pub version: &'static str,
    pub cipher_suite: String,
    pub peer_certificate: Option<Arc<PeerCertificate>>,
}

pub struct TlsStream {
    pub(super) tcp: TcpStream,
    tls: Connection,
    rx: Vec<u8>,
    rx_start: usize,
    rx_end: usize,
    /// The first fatal error, reported again by every later call.
    failed: Option<(io::ErrorKind, String)>,
    /// Set once the handshake is done.
    pub(super) session: Option<TlsSession>,
    /// Whether any TLS record came from the peer (to tell "not a TLS peer" apart).
    heard_from_peer: bool,
}

/// A TLS failure carried in an `io::Error` (its message names the cause).
#[derive(Debug)]
struct TlsFailure(String);

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsFailure {}

/// Whether an I/O error is a TLS failure (reported as `ErrorKind::Tls`).
pub fn is_tls_failure(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TlsFailure>())
}

enum Pulled {
    Records,
    Eof,
}

impl TlsStream {
    pub fn client(tcp: TcpStream, config: Arc<ClientConfig>, name: ServerName<'static>) -> io::Result<TlsStream> {
        let tls = ClientConnection::new(config, name).map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        Ok(Self::with(tcp, tls.into()))
    }

    pub fn server(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
        let tls = ServerConnection::new(config).map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        Ok(Self::with(tcp, tls.into()))
    }

    fn with(tcp: TcpStream, mut tls: Connection) -> TlsStream {
        tls.set_buffer_limit(Some(TX_CHUNK + (16 << 10)));
        TlsStream { tcp, tls, rx: Vec::new(), rx_start: 0, rx_end: 0, failed: None, session: None, heard_from_peer: false }
    }

    fn is_client(&self) -> bool {
        matches!(self.tls, Connection::Client(_))
    }

    fn check_failed(&self) -> io::Result<()> {
        match &self.failed {
            Some((kind, message)) => Err(io::Error::new(*kind, TlsFailure(message.clone()))),
            None => Ok(()),
        }
    }

    fn fail(&mut self, kind: io::ErrorKind, message: String) -> io::Error {
        self.failed = Some((kind, message.clone()));
        io::Error::new(kind, TlsFailure(message))
    }

    /// Drive the handshake: `Ok(true)` once it is done, `Ok(false)` while it waits for the
    /// peer or the socket, or the error that ended it (with a message naming the cause).
    pub fn handshake(&mut self) -> io::Result<bool> {
        self.check_failed()?;
        loop {
            match self.send_records() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.tls.is_handshaking() {
                self.session = Some(self.settled());
                return Ok(true);
            }
            match self.pull() {
                Ok(Pulled::Records) => continue,
                Ok(Pulled::Eof) => {
                    let message = if self.heard_from_peer {
                        "TLS: the peer closed the connection during the handshake".to_string()
                    } else if self.is_client() {
                        "TLS: the server closed the connection without answering the TLS handshake (is it a plaintext port? use tcp://)".to_string()
                    } else {
                        "TLS: the client closed the connection before the handshake".to_string()
                    };
                    return Err(self.fail(io::ErrorKind::ConnectionAborted, message));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    fn settled(&self) -> TlsSession {
        let version = match self.tls.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        let cipher_suite = self.tls.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default();
        let peer_certificate = self.tls.peer_certificates().and_then(|c| c.first()).map(|der| Arc::new(PeerCertificate::from_der(der)));
        TlsSession { version, cipher_suite, peer_certificate }
    }

    /// Feed rustls one slice of received bytes (reading the socket when none are left) and
    /// decrypt what is complete.
    fn pull(&mut self) -> io::Result<Pulled> {
        if self.rx_start == self.rx_end {
            if self.rx.len() < RX_CHUNK {
                self.rx.resize(RX_CHUNK, 0);
            }
            let n = loop {
                match self.tcp.read(&mut self.rx) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.rx = Vec::new();
                        return Err(e);
                    }
                    other => break other?,
                }
            };
            if n == 0 {
                self.rx = Vec::new();
                // Tell rustls the transport ended (its reader then reports EOF).
                let _ = self.tls.read_tls(&mut &[][..]);
                return Ok(Pulled::Eof);
            }
            self.rx_start = 0;
            self.rx_end = n;
        }
        let mut slice = &self.rx[self.rx_start..self.rx_end];
        let taken = self.tls.read_tls(&mut slice)?;
        self.rx_start += taken;
        if taken > 0 {
            self.heard_from_peer = true;
        }
        if let Err(e) = self.tls.process_new_packets() {
            // Tell the peer why (the alert rustls queued), then fail.
            let _ = self.send_records();
            let message = describe_error(&e, self.is_client(), self.tls.is_handshaking());
            return Err(self.fail(io::ErrorKind::InvalidData, message));
        }
        Ok(Pulled::Records)
    }

    /// Write queued records until none are left (`Ok`) or the socket is full (`WouldBlock`).
    pub fn send_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut NoSigpipe(&self.tcp)) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Encrypted output the socket has not taken yet.
    pub fn has_pending_records(&self) -> bool {
        self.tls.wants_write()
    }

    /// Read plaintext: fills `buf` as far as the socket allows, so a short read means the
    /// socket is drained (the reactor relies on that with edge-triggered readiness).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check_failed()?;
        let mut filled = 0;
        loop {
            match self.tls.reader().read(&mut buf[filled..]) {
                Ok(0) => return Ok(filled),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: an EOF like any other (a message cut
                // short is caught by the MessagePack framing).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                Err(e) => return Err(e),
            }
            match self.pull() {
                Ok(_) => {
                    // A key update or a ticket may want an answer.
                    if let Err(e) = self.send_records() {
                        if e.kind() != io::ErrorKind::WouldBlock && filled == 0 {
                            return Err(e);
                        }
                    }
                }
                Err(e) if filled > 0 && e.kind() == io::ErrorKind::WouldBlock => return Ok(filled),
                // Reported by the next call (kept in `failed` when it is a TLS error).
                Err(_) if filled > 0 => return Ok(filled),
                Err(e) => return Err(e),
            }
        }
    }

    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.check_failed()?;
        self.send_records()?;
        let mut taken = 0;
        for b in bufs {
            if taken >= TX_CHUNK {
                break;
            }
            let want = &b[..b.len().min(TX_CHUNK - taken)];
            let n = self.tls.writer().write(want)?;
            taken += n;
            if n < want.len() {
                break;
            }
        }
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.send_records() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(taken),
        }
    }

    /// Say goodbye properly (close_notify), if the socket takes it now.
    pub fn close_notify(&mut self) {
        if self.failed.is_none() && self.session.is_some() {
            self.tls.send_close_notify();
            let _ = self.send_records();
        }
    }
}

/// A TLS failure in words that name the cause and, where it helps, the fix.
fn describe_error(e: &rustls::Error, is_client: bool, handshaking: bool) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let whose = if is_client { "the server's certificate" } else { "the client's certificate" };
    match e {
        E::InvalidCertificate(C::UnknownIssuer) => format!("TLS: {whose} is not signed by a trusted CA (unknown issuer)"),
        E::InvalidCertificate(C::BadSignature) => format!("TLS: {whose} has a bad signature"),
        E::InvalidCertificate(c @ (C::NotValidForName | C::NotValidForNameContext { .. })) => format!("TLS: name mismatch: {c}"),
        E::InvalidCertificate(c @ (C::Expired | C::ExpiredContext { .. })) => format!("TLS: {whose} has expired ({c})"),
        E::InvalidCertificate(c @ (C::NotValidYet | C::NotValidYetContext { .. })) => format!("TLS: {whose} is not valid yet ({c})"),
        // webpki's error is wrapped as `Other`; its Debug text is all that names it.
        E::InvalidCertificate(C::Other(o)) if format!("{o:?}").contains("CaUsedAsEndEntity") => format!(
            "TLS: {whose} is a CA certificate (basicConstraints CA:TRUE), which cannot identify a peer: \
             use a certificate signed by that CA, or a self-signed one with CA:FALSE"
        ),
        E::InvalidCertificate(c) => format!("TLS: {whose} was refused: {c}"),
        E::NoCertificatesPresented if !is_client => "TLS: the client sent no certificate, and this server requires one".into(),
        E::AlertReceived(A::CertificateRequired) => "TLS: the server requires a client certificate".into(),
        E::AlertReceived(a @ (A::UnknownCA | A::BadCertificate | A::CertificateExpired | A::CertificateUnknown | A::AccessDenied)) => {
            format!("TLS: the peer refused our certificate (alert {a:?})")
        }
        E::InvalidMessage(_) | E::InappropriateMessage { .. } if handshaking && !is_client => {
            format!("TLS: the client is not speaking TLS (a plaintext client on a TLS port?): {e}")
        }
        E::InvalidMessage(_) | E::InappropriateMessage { .. } if handshaking => {
            format!("TLS: the server is not speaking TLS (a plaintext port? use tcp://): {e}")
        }
        other => format!("TLS: {other}"),
    }
}

/// The socket as rustls writes records to it: with MSG_NOSIGNAL, so a peer that closed gives
/// EPIPE, not a SIGPIPE that would kill a C host (see `transport::send_vectored`).
struct NoSigpipe<'a>(&'a TcpStream);

impl Write for NoSigpipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        super::transport::send_vectored(std::os::fd::AsRawFd::as_raw_fd(self.0), &[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        super::transport::send_vectored(std::os::fd::AsRawFd::as_raw_fd(self.0), bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_cause() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(describe_error(&unknown, true, true).contains("not signed by a trusted CA"));
        let none = rustls::Error::NoCertificatesPresented;
        assert!(describe_error(&none, false, true).contains("requires one"));
        let garbage = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert!(describe_error(&garbage, false, true).contains("plaintext client on a TLS port"));
    }
}
