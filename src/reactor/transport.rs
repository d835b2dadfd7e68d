//! Byte streams the reactor drives: TCP, Unix domain sockets, and pipes (a child process's
//! stdin/stdout, or our own); and UDP, one message per datagram. Addresses are URIs:
//! `tcp://127.0.0.1:7000`, `tcp://[::1]:7000`, `tcp://localhost:7000`, `unix:///path/to.sock`,
//! `udp://127.0.0.1:7000`; and TLS over TCP (`tls://HOST:PORT`, see `tls.rs`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use mio::unix::{pipe, SourceFd};
use mio::{Interest, Registry, Token};

use crate::error::{Error, ErrorKind, Result};

use super::tls::TlsStream;
use super::tls_config::TlsConfig;

/// A parsed address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Tcp(Vec<SocketAddr>),
    /// A path, and for listeners the socket file's mode (`?mode=0600`).
    Unix(PathBuf, Option<u32>),
    Udp(Vec<SocketAddr>),
    /// TLS over TCP; the host as written (the name the server's certificate must carry).
    Tls(Vec<SocketAddr>, String),
}

/// The largest MessagePack-RPC message that fits in one UDP datagram (65535 minus the IPv4
/// and UDP headers). Larger messages are refused with a size error, never fragmented.
pub const UDP_MAX_MESSAGE: usize = 65507;

/// Parse a `tcp://` or `unix://` URI. TCP host names are resolved here (blocking, through the
/// system resolver; IP literals never block).
pub fn parse_uri(uri: &str) -> Result<Address> {
    let bad = |why: &str| Error::new(ErrorKind::Address, format!("invalid address {uri:?}: {why}"));
    if let Some(rest) = uri.strip_prefix("tls://") {
        let host = rest.trim_end_matches('/').rsplit_once(':').map(|(h, _)| h).unwrap_or("");
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).to_string();
        return match parse_uri(&format!("tcp://{rest}"))? {
            Address::Tcp(addrs) => Ok(Address::Tls(addrs, host)),
            _ => Err(bad("expected tls://HOST:PORT")),
        };
    }
    if let Some(rest) = uri.strip_prefix("udp://") {
        return match parse_uri(&format!("tcp://{rest}"))? {
            Address::Tcp(addrs) => Ok(Address::Udp(addrs)),
            _ => Err(bad("expected udp://HOST:PORT")),
        };
    }
    if let Some(rest) = uri.strip_prefix("tcp://") {
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Err(bad("missing host and port"));
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("missing :port"))?;
        let port: u16 = port.parse().map_err(|_| bad("port must be a number from 0 to 65535"))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(Address::Tcp(vec![SocketAddr::new(ip, port)]));
        }
        let addrs: Vec<SocketAddr> =
            (host, port).to_socket_addrs().map_err(|e| Error::new(ErrorKind::Address, format!("cannot resolve {host:?}: {e}")))?.collect();
        if addrs.is_empty() {
            return Err(Error::new(ErrorKind::Address, format!("{host:?} has no addresses")));
        }
        Ok(Address::Tcp(addrs))
    } else if let Some(path) = uri.strip_prefix("unix://").or_else(|| uri.strip_prefix("unix:")) {
        let (path, mode) = super::unix::split_mode(path).map_err(|e| bad(&e))?;
        if path.is_empty() {
            return Err(bad("missing path"));
        }
        Ok(Address::Unix(PathBuf::from(path), mode))
    } else {
        Err(bad("expected tcp://HOST:PORT, tls://HOST:PORT, unix:///PATH or udp://HOST:PORT"))
    }
}

/// Format a socket address as a URI.
pub fn tcp_uri(addr: SocketAddr) -> String {
    format!("tcp://{addr}")
}

/// A connected byte stream.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
    Unix(UnixStream),
    Pipe(PipePair),
    /// A connected UDP socket (our client side): each read is one datagram.
    Udp(UdpSocket),
    /// One peer of a UDP listener: datagrams arrive through the listener's socket, and
    /// answers go back to `peer` from it.
    UdpPeer {
        socket: Rc<UdpSocket>,
        peer: SocketAddr,
        listener: usize,
    },
}

/// Two pipe ends used as one stream: what we read, and what we write.
pub struct PipePair {
    reader: pipe::Receiver,
    writer: pipe::Sender,
    /// The reader or writer could not be registered with epoll (a regular file redirected to
    /// stdin/stdout): it is always ready, so the reactor polls it instead.
    pub reader_always_ready: bool,
    pub writer_always_ready: bool,
    /// The spawned process, if this pair is a child's stdin/stdout.
    pub child: Option<Child>,
}

/// Unsent bytes a TCP socket on which joint fragments may hold before it reports "would
/// block" (TCP_NOTSENT_LOWAT; see `Stream::set_notsent_lowat`).
pub const NOTSENT_LOWAT: usize = 256 << 10;

/// The receive buffer of a loopback TCP connection that speaks the extension
/// (`Stream::set_recv_buffer_if_loopback`). Chosen with `cli/examples/bulk.rs` and
/// `examples/big_transfer_latency.rs`: smaller, a sender stalls on the receiver's wake-ups
/// (slower uploads); bigger (512 KiB to 1 MiB), small answers wait behind it (small-call
/// p99 above 2 ms during a 256 MiB transfer).
pub const EXT_RECV_BUFFER: usize = 384 << 10;

/// Unanswered TCP keepalive probes before the kernel resets the connection (`TCP_KEEPCNT`).
pub const TCP_KEEPALIVE_PROBES: usize = 3;

/// Token offsets: each stream uses `base` (its socket or read end) and `base + 1` (a pipe's
/// write end).
pub const WRITE_END: usize = 1;

impl Stream {
    pub fn register(&mut self, registry: &Registry, base: Token) -> io::Result<()> {
        let both = Interest::READABLE | Interest::WRITABLE;
        match self {
            Stream::Tcp(s) => registry.register(s, base, both),
            Stream::Tls(s) => registry.register(&mut s.tcp, base, both),
            Stream::Unix(s) => registry.register(s, base, both),
            Stream::Udp(s) => registry.register(s, base, both),
            Stream::UdpPeer { .. } => Ok(()),
            Stream::Pipe(p) => {
                match registry.register(&mut p.reader, base, Interest::READABLE) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) => p.reader_always_ready = true,
                    Err(e) => return Err(e),
                }
                match registry.register(&mut p.writer, Token(base.0 + WRITE_END), Interest::WRITABLE) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) => p.writer_always_ready = true,
                    Err(e) => return Err(e),
                }
                Ok(())
            }
        }
    }

    pub fn deregister(&mut self, registry: &Registry) {
        // Errors only mean it was never registered; the fds are closed right after anyway.
        let _ = match self {
            Stream::Tcp(s) => registry.deregister(s),
            Stream::Tls(s) => {
                s.close_notify();
                registry.deregister(&mut s.tcp)
            }
            Stream::Unix(s) => registry.deregister(s),
            Stream::Udp(s) => registry.deregister(s),
            Stream::UdpPeer { .. } => Ok(()),
            Stream::Pipe(p) => {
                if !p.reader_always_ready {
                    let _ = registry.deregister(&mut p.reader);
                }
                if !p.writer_always_ready {
                    let _ = registry.deregister(&mut p.writer);
                }
                Ok(())
            }
        };
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Pipe(p) => p.reader.read(buf),
            Stream::Udp(s) => s.recv(buf),
            // Its datagrams are read by the listener.
            Stream::UdpPeer { .. } => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            // std sends with MSG_NOSIGNAL on sockets, so a closed peer gives EPIPE, not SIGPIPE.
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write_vectored(&[io::IoSlice::new(buf)]),
            Stream::Unix(s) => s.write(buf),
            Stream::Pipe(p) => write_pipe_nosigpipe(p.writer.as_raw_fd(), buf),
            Stream::Udp(s) => s.send(buf),
            Stream::UdpPeer { socket, peer, .. } => socket.send_to(buf, *peer),
        }
    }

    /// Write several buffers at once where the stream can (`sendmsg` on sockets).
    pub fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => send_vectored(s.as_raw_fd(), bufs),
            Stream::Tls(s) => s.write_vectored(bufs),
            Stream::Unix(s) => send_vectored(s.as_raw_fd(), bufs),
            _ => self.write(bufs.first().map_or(&[][..], |b| &b[..])),
        }
    }

    /// Each read and write is one whole message (UDP).
    pub fn is_datagram(&self) -> bool {
        matches!(self, Stream::Udp(_) | Stream::UdpPeer { .. })
    }

    /// Write what the stream itself queued (TLS records: handshake messages, or encrypted
    /// output the socket did not take); `Ok` also when the socket is full.
    pub fn send_pending(&mut self) -> io::Result<()> {
        match self {
            Stream::Tls(s) => match s.send_records() {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Output queued inside the stream (TLS records) that the socket has not taken yet.
    pub fn has_pending_output(&self) -> bool {
        matches!(self, Stream::Tls(s) if s.has_pending_records())
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// For a TLS stream whose TCP connection is up: drive the handshake (`Ok(true)` when
    /// done). Other streams have none.
    pub fn handshake(&mut self) -> io::Result<bool> {
        match self {
            Stream::Tls(s) => s.handshake(),
            _ => Ok(true),
        }
    }

    /// What the TLS handshake settled (None for other streams, or before it is done).
    pub fn tls_session(&self) -> Option<&super::tls::TlsSession> {
        match self {
            Stream::Tls(s) => s.session.as_ref(),
            _ => None,
        }
    }

    pub fn reader_always_ready(&self) -> bool {
        matches!(self, Stream::Pipe(p) if p.reader_always_ready)
    }

    /// For an outgoing TCP connect: `Ok(true)` once established, `Ok(false)` while in
    /// progress, or the connect error.
    pub fn connect_result(&self) -> io::Result<bool> {
        let tcp = match self {
            Stream::Tcp(s) => Some(s),
            Stream::Tls(s) => Some(&s.tcp),
            _ => None,
        };
        match tcp {
            Some(s) => {
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                match s.peer_addr() {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
                    Err(e) => Err(e),
                }
            }
            None => Ok(true),
        }
    }

    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Tls(s) => Some(&s.tcp),
            _ => None,
        }
    }

    pub fn set_nodelay(&self) {
        if let Some(s) = self.tcp() {
            // Latency matters more than segment count for RPC; writes are batched already.
            let _ = s.set_nodelay(true);
        }
    }

    /// TCP keepalive (TCP and TLS streams; others are left alone): `SO_KEEPALIVE`, the first
    /// probe after `idle` without traffic, then one every third of it (at least 1 s), and a
    /// reset after 3 unanswered probes. `None` leaves the socket as it is.
    pub fn set_tcp_keepalive(&self, idle: Option<Duration>) {
        let Some(idle) = idle else { return };
        let secs = idle.as_secs() + u64::from(idle.subsec_nanos() > 0);
        let secs = secs.clamp(1, i32::MAX as u64) as usize;
        self.set_int_option(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
        self.set_int_option(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs);
        self.set_int_option(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, (secs / 3).max(1));
        self.set_int_option(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, TCP_KEEPALIVE_PROBES);
    }

    /// Keep at most `bytes` of unsent data in the kernel (TCP_NOTSENT_LOWAT): what we queue
    /// ourselves can still be reordered (a small answer between the fragments of a big one),
    /// what the kernel holds cannot. Only worth its extra wake-ups where joint fragments
    /// (the extension); a stock connection sends every message whole anyway.
    pub fn set_notsent_lowat(&self, bytes: usize) {
        self.set_int_option(libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, bytes);
    }

    /// Cap the kernel's receive buffer (SO_RCVBUF) at about `bytes`: bytes that arrived but
    /// were not read yet are as out of reach as unsent ones, so with the extension a small
    /// answer does not wait behind megabytes of fragments already in our receive queue.
    /// Only on loopback: across a network the buffer must hold the path's bandwidth times its
    /// delay, which the kernel's autotuning finds and a fixed cap would defeat.
    pub fn set_recv_buffer_if_loopback(&self, bytes: usize) {
        let loopback = self.tcp().is_some_and(|s| s.peer_addr().is_ok_and(|a| a.ip().is_loopback()));
        if !loopback {
            return;
        }
        // The kernel doubles the value given (for its bookkeeping).
        self.set_int_option(libc::SOL_SOCKET, libc::SO_RCVBUF, bytes / 2);
    }

    fn set_int_option(&self, level: libc::c_int, name: libc::c_int, value: usize) {
        let Some(fd) = self.tcp().map(|s| s.as_raw_fd()) else { return };
        let value = value.min(i32::MAX as usize) as libc::c_int;
        // SAFETY: setsockopt on a valid socket fd with a pointer to a c_int of the size given.
        unsafe {
            libc::setsockopt(fd, level, name, (&value as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t);
        }
    }

    /// Take the child process out (so it can be reaped after the pipes are closed).
    pub fn take_child(&mut self) -> Option<Child> {
        match self {
            Stream::Pipe(p) => p.child.take(),
            _ => None,
        }
    }

    /// The peer's address as a URI (see `Context::peer_address`).
    pub fn peer_uri(&self) -> Option<String> {
        match self {
            Stream::Tcp(s) => s.peer_addr().ok().map(tcp_uri),
            Stream::Tls(s) => s.tcp.peer_addr().ok().map(|a| format!("tls://{a}")),
            Stream::Unix(s) => {
                let addr = s.peer_addr().ok()?;
                Some(addr.as_pathname().map(|p| format!("unix://{}", p.display())).unwrap_or_else(|| "unix:".into()))
            }
            Stream::Udp(s) => s.peer_addr().ok().map(|a| format!("udp://{a}")),
            Stream::UdpPeer { peer, .. } => Some(format!("udp://{peer}")),
            Stream::Pipe(_) => None,
        }
    }

    /// On a Unix socket, the process on the other end.
    pub fn peer_credentials(&self) -> Option<super::PeerCredentials> {
        match self {
            Stream::Unix(s) => super::unix::peer_credentials(s.as_raw_fd()),
            _ => None,
        }
    }

    /// A short description for logs.
    pub fn describe(&self) -> String {
        match self {
            Stream::Tcp(s) => match s.peer_addr() {
                Ok(a) => format!("tcp://{a}"),
                Err(_) => "tcp".into(),
            },
            Stream::Tls(s) => match s.tcp.peer_addr() {
                Ok(a) => format!("tls://{a}"),
                Err(_) => "tls".into(),
            },
            Stream::Unix(_) => "unix".into(),
            Stream::Udp(s) => s.peer_addr().map(|a| format!("udp://{a}")).unwrap_or_else(|_| "udp".into()),
            Stream::UdpPeer { peer, .. } => format!("udp://{peer}"),
            Stream::Pipe(p) => match &p.child {
                Some(c) => format!("child process {}", c.id()),
                None => "stdio".into(),
            },
        }
    }
}

/// Start a non-blocking TCP or Unix connect. TCP completes later (writable event); Unix
/// sockets connect at once or fail at once.
pub fn connect(addr: &SocketAddrOrPath) -> io::Result<Stream> {
    match addr {
        SocketAddrOrPath::Tcp(a) => Ok(Stream::Tcp(TcpStream::connect(*a)?)),
        SocketAddrOrPath::Tls(a, tls) => Ok(Stream::Tls(Box::new(TlsStream::client(TcpStream::connect(*a)?, tls.config.clone(), tls.name.clone())?))),
        SocketAddrOrPath::Unix(p) => Ok(Stream::Unix(UnixStream::connect(p)?)),
        SocketAddrOrPath::Udp(a) => {
            let any: SocketAddr = if a.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
            let socket = UdpSocket::bind(any)?;
            socket.connect(*a)?;
            Ok(Stream::Udp(socket))
        }
    }
}

/// One concrete destination of a connect attempt.
#[derive(Clone, Debug)]
pub enum SocketAddrOrPath {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Udp(SocketAddr),
    Tls(SocketAddr, TlsClient),
}

/// What a TLS client needs for each connect attempt.
#[derive(Clone, Debug)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

impl Address {
    /// Destinations to try in order. A `tls://` address takes its settings from `tls` (the
    /// system's roots when None).
    pub fn targets(&self, tls: Option<&TlsConfig>) -> Result<Vec<SocketAddrOrPath>> {
        Ok(match self {
            Address::Tls(v, host) => {
                let default = TlsConfig::new();
                let tls = tls.unwrap_or(&default);
                let client = TlsClient { config: tls.client_config()?, name: tls.server_name_for(host)? };
                v.iter().map(|a| SocketAddrOrPath::Tls(*a, client.clone())).collect()
            }
            Address::Tcp(v) => v.iter().map(|a| SocketAddrOrPath::Tcp(*a)).collect(),
            Address::Unix(p, None) => vec![SocketAddrOrPath::Unix(p.clone())],
            Address::Unix(_, Some(_)) => {
                return Err(Error::new(ErrorKind::Address, "?mode= is for listeners: it sets the socket file's mode"));
            }
            Address::Udp(v) => v.iter().map(|a| SocketAddrOrPath::Udp(*a)).collect(),
        })
    }
}

/// Spawn `argv` with its stdin and stdout connected to us; its stderr is inherited.
pub fn spawn(argv: &[String]) -> io::Result<Stream> {
    let (program, args) = argv.split_first().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
    let mut child = Command::new(program).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let writer = pipe::Sender::from(child.stdin.take().expect("piped stdin"));
    let reader = pipe::Receiver::from(child.stdout.take().expect("piped stdout"));
    writer.set_nonblocking(true)?;
    reader.set_nonblocking(true)?;
    Ok(Stream::Pipe(PipePair { reader, writer, reader_always_ready: false, writer_always_ready: false, child: Some(child) }))
}

/// Our own stdin and stdout as a stream. They are duplicated, so closing the stream leaves
/// fds 0 and 1 open; note that O_NONBLOCK is shared with anything else using them.
pub fn stdio() -> io::Result<Stream> {
    let reader = dup_nonblocking(0)?;
    let writer = dup_nonblocking(1)?;
    Ok(Stream::Pipe(PipePair {
        reader: pipe::Receiver::from(reader),
        writer: pipe::Sender::from(writer),
        reader_always_ready: false,
        writer_always_ready: false,
        child: None,
    }))
}

fn dup_nonblocking(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a caller-chosen fd returns a new fd or -1; no memory
    // is touched. The new fd is owned by nobody else, so OwnedFd may take it.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh, valid fd (checked above) that we exclusively own.
    let owned = unsafe { OwnedFd::from_raw_fd(new) };
    // SAFETY: F_GETFL/F_SETFL on a valid fd; no memory is touched.
    unsafe {
        let flags = libc::fcntl(new, libc::F_GETFL);
        if flags < 0 || libc::fcntl(new, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(owned)
}

/// writev(2) on a socket, as sendmsg(2) with MSG_NOSIGNAL: std's `write_vectored` is writev,
/// which raises SIGPIPE when the peer has closed, and kills a host that did not ignore it
/// (C programs do not; Rust programs do, which hid this).
pub(super) fn send_vectored(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain old data; all zeroes is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix; sendmsg only reads them.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    loop {
        // SAFETY: sendmsg(2) on a socket fd with iovecs that live across the call.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// write(2) on a pipe without letting a closed reader raise SIGPIPE in the host process
/// (a library must not change the process's signal disposition): SIGPIPE is blocked on this
/// thread for the write, and a SIGPIPE it caused is consumed before unblocking (curl does the
/// same).
fn write_pipe_nosigpipe(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: plain libc calls on stack-allocated sigset_t values and a valid buffer; the
    // signal mask is restored before returning on every path.
    unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        let n = libc::write(fd, buf.as_ptr().cast(), buf.len());
        let err = io::Error::last_os_error();
        if n < 0 && err.raw_os_error() == Some(libc::EPIPE) && libc::sigismember(&old, libc::SIGPIPE) == 0 {
            let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            while libc::sigtimedwait(&block, std::ptr::null_mut(), &zero) == libc::SIGPIPE {}
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if n < 0 {
            Err(err)
        } else {
            Ok(n as usize)
        }
    }
}

/// A listening socket.
pub enum Listener {
    Tcp(TcpListener),
    /// TCP, each accepted connection served over TLS with this configuration.
    Tls(TcpListener, Arc<rustls::ServerConfig>),
    /// The path is removed when the listener is dropped.
    Unix(UnixListener, PathBuf),
    /// A bound UDP socket, shared with the peers it has heard from.
    Udp(Rc<UdpSocket>),
}

/// Bind the first of `addrs` that can be bound.
fn bind_tcp(addrs: &[SocketAddr], scheme: &str) -> Result<TcpListener> {
    let mut last = None;
    for a in addrs {
        match TcpListener::bind(*a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(Error::io(&format!("listen on {scheme}://{a}"), &e)),
        }
    }
    Err(last.unwrap_or_else(|| Error::new(ErrorKind::Address, "no address to listen on")))
}

impl Listener {
    /// Bind `address`; a `tls://` one needs the server's settings.
    pub fn bind(address: &Address, tls: Option<&TlsConfig>) -> Result<Listener> {
        match address {
            Address::Tls(addrs, _) => {
                let tls = tls.ok_or_else(|| {
                    Error::new(ErrorKind::InvalidArgument, "a tls:// listener needs a certificate and key (listen with TLS settings)")
                })?;
                let config = tls.server_config()?;
                Ok(Listener::Tls(bind_tcp(addrs, "tls")?, config))
            }
            Address::Tcp(addrs) => Ok(Listener::Tcp(bind_tcp(addrs, "tcp")?)),
            Address::Unix(path, mode) => match super::unix::bind(path, *mode) {
                Ok(l) => Ok(Listener::Unix(l, path.clone())),
                Err(e) => Err(Error::io(&format!("listen on unix://{}", path.display()), &e)),
            },
            Address::Udp(addrs) => {
                let mut last = None;
                for a in addrs {
                    match UdpSocket::bind(*a) {
                        Ok(s) => return Ok(Listener::Udp(Rc::new(s))),
                        Err(e) => last = Some(Error::io(&format!("listen on udp://{a}"), &e)),
                    }
                }
                Err(last.unwrap_or_else(|| Error::new(ErrorKind::Address, "no address to listen on")))
            }
        }
    }

    /// Set how many connections the kernel queues before they are accepted (listen(2) again
    /// on a listening socket only changes its backlog).
    pub fn set_backlog(&self, backlog: u32) -> io::Result<()> {
        let fd = match self {
            Listener::Tcp(l) | Listener::Tls(l, _) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
            Listener::Udp(_) => return Ok(()),
        };
        let backlog = backlog.min(i32::MAX as u32) as libc::c_int;
        // SAFETY: listen(2) on a valid socket fd owned by this listener.
        if unsafe { libc::listen(fd, backlog) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Listener::Tcp(l) | Listener::Tls(l, _) => registry.register(l, token, Interest::READABLE),
            Listener::Unix(l, _) => registry.register(l, token, Interest::READABLE),
            // Writable too: answers to peers wait for it when the socket buffer is full.
            Listener::Udp(s) => registry.register(&mut SourceFd(&s.as_raw_fd()), token, Interest::READABLE | Interest::WRITABLE),
        }
    }

    pub fn deregister(&mut self, registry: &Registry) {
        let _ = match self {
            Listener::Tcp(l) | Listener::Tls(l, _) => registry.deregister(l),
            Listener::Unix(l, _) => registry.deregister(l),
            Listener::Udp(s) => registry.deregister(&mut SourceFd(&s.as_raw_fd())),
        };
    }

    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
            Listener::Tls(l, config) => {
                let (s, _) = l.accept()?;
                Ok(Stream::Tls(Box::new(TlsStream::server(s, config.clone())?)))
            }
            Listener::Unix(l, _) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Udp(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// The bound address as a URI (with the real port when bound to port 0).
    pub fn uri(&self) -> String {
        match self {
            Listener::Tcp(l) => l.local_addr().map(tcp_uri).unwrap_or_else(|_| "tcp://?".into()),
            Listener::Tls(l, _) => l.local_addr().map(|a| format!("tls://{a}")).unwrap_or_else(|_| "tls://?".into()),
            Listener::Unix(_, p) => format!("unix://{}", p.display()),
            Listener::Udp(s) => s.local_addr().map(|a| format!("udp://{a}")).unwrap_or_else(|_| "udp://?".into()),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uris() {
        assert_eq!(parse_uri("tcp://127.0.0.1:7000").unwrap(), Address::Tcp(vec!["127.0.0.1:7000".parse().unwrap()]));
        assert_eq!(parse_uri("tcp://[::1]:7000").unwrap(), Address::Tcp(vec!["[::1]:7000".parse().unwrap()]));
        assert_eq!(parse_uri("unix:///tmp/x.sock").unwrap(), Address::Unix("/tmp/x.sock".into(), None));
        assert_eq!(parse_uri("unix:rel.sock").unwrap(), Address::Unix("rel.sock".into(), None));
        assert_eq!(parse_uri("udp://127.0.0.1:9").unwrap(), Address::Udp(vec!["127.0.0.1:9".parse().unwrap()]));
        assert_eq!(parse_uri("tls://127.0.0.1:9").unwrap(), Address::Tls(vec!["127.0.0.1:9".parse().unwrap()], "127.0.0.1".into()));
        assert_eq!(parse_uri("tls://[::1]:9").unwrap(), Address::Tls(vec!["[::1]:9".parse().unwrap()], "::1".into()));
        assert!(matches!(parse_uri("tls://localhost:9").unwrap(), Address::Tls(v, h) if !v.is_empty() && h == "localhost"));
        assert!(matches!(parse_uri("tcp://localhost:1").unwrap(), Address::Tcp(v) if !v.is_empty()));
        for bad in ["", "http://x:1", "tcp://", "tcp://1.2.3.4", "tcp://1.2.3.4:99999", "tcp://:80", "unix://", "tls://", "tls://1.2.3.4"] {
            let e = parse_uri(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Address, "{bad}");
        }
    }
}
