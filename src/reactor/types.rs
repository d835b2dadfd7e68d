//! The reactor's public types: ids of connections, listeners and calls, the configuration,
//! how a call ended, and the handler and callback types.

use std::rc::Rc;
use std::time::Duration;

use crate::codec::Params;
use crate::error::ErrorKind;
use crate::protocol::Limits;

use super::{Context, LogSink, Request};

/// Identifies a connection within its context; stale ids (of closed and removed
/// connections) are detected by the generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(super) index: u32,
    pub(super) generation: u32,
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connection {}.{}", self.index, self.generation)
    }
}

/// Identifies a listener within its context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(pub(super) usize);

/// Identifies an outgoing call: the connection, the msgid and a per-context sequence number
/// (so a msgid reused after wrap-around is not mistaken for an old call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallId {
    pub conn: ConnId,
    pub msgid: u32,
    pub seq: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

/// Context configuration. Every byte and fd a context holds for its peers is bounded by one
/// of these (docs/PROTOCOL.md, "Memory and time limits").
#[derive(Clone)]
pub struct Config {
    pub limits: Limits,
    /// How long a connect may take; `None` waits for the operating system.
    pub connect_timeout: Option<Duration>,
    /// Bytes all connections together may make the context hold: input buffers, reassembly,
    /// queued output, answers on their way to the loop, and requests handlers hold.
    pub memory_budget: usize,
    /// When a connection's unsent output passes this many bytes, its requests are not read
    /// (nor dispatched) until the output drains to half of it: TCP back-pressure instead of
    /// buffering for a peer that does not read. Values sent into our calls wait the same way
    /// (`send` says `WouldBlock` until then).
    pub output_high_water: usize,
    /// Most open connections (accepted and our own); a connection accepted beyond it is
    /// closed at once.
    pub max_connections: usize,
    /// A message must complete within this long of its first byte, and queued output must
    /// make progress within it; otherwise the connection closes. `None`: no limit.
    pub message_timeout: Option<Duration>,
    /// Close a connection with no traffic, no unanswered requests and no pending calls for
    /// this long. `None` (the default): keep quiet connections open.
    pub idle_timeout: Option<Duration>,
    /// Keepalive between joint peers (docs/PROTOCOL.md, "Keepalive"): while calls of ours
    /// are pending on a connection and nothing has come from the peer for this long, send it
    /// a PING, which it answers at once. Only on connections where both ends agreed on the
    /// joint extension and the peer's hello said it answers PINGs: a stock peer never sees
    /// one. A connection with none of our calls pending is not pinged, so a client that
    /// does not run its loop between calls (a blocking program) is not taken for dead;
    /// `idle_timeout` closes quiet connections. `None`: never ping.
    ///
    /// Default 30 s: a waiting connection costs one 3-byte PING and PONG per 30 s, and a peer
    /// that stopped (SIGSTOP, a debugger, a frozen VM) or whose host vanished without a
    /// FIN or RST is noticed within about a minute (interval plus timeout) instead of never
    /// — the kernel's own TCP keepalive waits two hours by default and does not notice a
    /// stopped process at all, whose kernel still acknowledges.
    pub keepalive_interval: Option<Duration>,
    /// After a PING, how long nothing at all may come from the peer before the connection is
    /// declared dead and closed: its pending calls fail with `ErrorKind::Closed` ("no answer
    /// to keepalive ping within N ms (peer dead or stopped)"). Default 30 s, long enough for
    /// a peer whose loop is briefly busy (a peer whose loop thread runs a handler for
    /// longer does not answer either: long work belongs on the worker pool). A connection
    /// this end is not reading (output back-pressure, memory budget) or whose peer sent EOF
    /// is not judged. Only used with `keepalive_interval`.
    pub keepalive_timeout: Duration,
    /// TCP keepalive on every TCP and TLS connection, accepted or connected, with any peer:
    /// `SO_KEEPALIVE`, the first probe after this long without traffic (`TCP_KEEPIDLE`), then
    /// probes every third of it (`TCP_KEEPINTVL`, at least 1 s), and the kernel resets the
    /// connection after 3 unanswered probes (`TCP_KEEPCNT`): a vanished host is noticed
    /// about twice this long after traffic stopped — while nothing we sent is
    /// unacknowledged; with data in flight the kernel's retransmission limit applies
    /// (about 15 minutes by default). Whole seconds (rounded up, at least 1).
    /// `None`: leave the socket as the OS made it (no keepalive). Default 60 s (the OS
    /// default, two hours, outlives NAT and firewall mappings).
    pub tcp_keepalive: Option<Duration>,
    /// After the peer closed its end, how long requests it sent may still be answered
    /// before they are cancelled and the connection is freed.
    pub linger: Duration,
    /// Connections the kernel queues for each listening socket before they are accepted.
    pub listen_backlog: u32,
    /// Bytes read from one connection per `process()` before others get their turn.
    pub read_budget: usize,
    /// Threads of the worker pool that runs methods registered with `register_pooled`.
    pub workers: usize,
    pub log: Option<LogSink>,
    pub log_level: LogLevel,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            connect_timeout: Some(Duration::from_secs(10)),
            memory_budget: 256 << 20,
            output_high_water: 1 << 20,
            max_connections: 4096,
            message_timeout: Some(Duration::from_secs(30)),
            idle_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(30),
            tcp_keepalive: Some(Duration::from_secs(60)),
            linger: Duration::from_secs(5),
            listen_backlog: 1024,
            read_budget: 1 << 20,
            workers: 4,
            log: None,
            log_level: LogLevel::Warn,
        }
    }
}

/// How a call ended, as given to its completion.
#[derive(Debug)]
pub struct Response<'a> {
    pub call: CallId,
    /// `Ok(result)`, or the failure. For `ErrorKind::Remote`, `error` holds the peer's error
    /// object as sent.
    pub outcome: std::result::Result<&'a [u8], CallError<'a>>,
}

#[derive(Debug)]
pub struct CallError<'a> {
    pub kind: ErrorKind,
    /// The remote error object (MessagePack), for `Remote`; empty otherwise.
    pub error: &'a [u8],
    /// A readable reason (for `Remote`, the message found in the error object, if any).
    pub message: String,
}

pub type Completion = Box<dyn FnOnce(&Context, Response<'_>)>;

pub type RequestHandler = Rc<dyn Fn(&Context, Request)>;

pub type NotificationHandler = Rc<dyn Fn(&Context, ConnId, &[u8], Params<'_>)>;

pub type ConnEventHandler = Rc<dyn Fn(&Context, ConnId, ConnEvent<'_>)>;

/// Decides whether an accepted connection is served, before anything else happens on it
/// (before its `Open` event, its first request, and for TLS after the handshake, so the
/// peer's certificate can be checked). `false` closes it without any event.
pub type AcceptHandler = Rc<dyn Fn(&Context, ConnId) -> bool>;

/// The process on the other end of a Unix socket, as the kernel recorded it when the
/// connection was made (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

pub type TimerCallback = Box<dyn FnOnce(&Context)>;

/// A connection opened (connected or accepted) or closed. `Connecting` and `Down` happen
/// only on connections made with [`Context::connect_reconnecting`].
#[derive(Debug)]
pub enum ConnEvent<'a> {
    /// The connection is up: connected (and its TLS handshake done) or accepted. On a
    /// reconnecting connection, after every successful attempt.
    Open,
    /// Final: the application closed it, the peer went away, or (reconnecting) the policy
    /// gave up. The id names no usable connection any more.
    Closed { kind: ErrorKind, reason: &'a str },
    /// Reconnecting connections only: an attempt to connect to `endpoint` starts.
    Connecting { endpoint: &'a str },
    /// Reconnecting connections only: the connection dropped (its calls in flight failed
    /// with `Closed`), or a round of attempts over every endpoint failed; another round
    /// follows after the backoff delay.
    Down { kind: ErrorKind, reason: &'a str },
}
