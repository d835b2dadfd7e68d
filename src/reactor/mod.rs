//! The reactor: one `mio::Poll` per [`Context`], whose epoll fd is the single fd a host event
//! loop watches. [`Context::process`] runs ready I/O, timers and callbacks without blocking.
//!
//! Callbacks run only inside `process()` (and while the context is dropped), on the calling
//! thread, with no internal borrow held, so they may call back into the context: call,
//! notify, reply, close. Calling `process()` from a callback fails with `Recursive`.
//!
//! Sockets are registered edge-triggered inside mio; the fd the host sees stays readable while
//! work is left because `process()` re-signals its waker whenever it stops with work pending
//! (a read budget was hit, output is waiting, a close is pending).

mod accept;
pub mod budget;
mod housekeeping;
mod input;
mod log;
mod pool;
pub mod request;
mod spares;
mod streams;
pub mod timers;
pub mod transport;
mod udp;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::Child;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use slab::Slab;

use crate::codec::Params;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{rpc_error, CallFailure, Event, IdHasher, Limits, Outcome, SendError, Session};

use budget::ConnAccount;
use input::InBuf;
pub use log::LogSink;
pub use pool::PooledHandler;
pub use request::{InputValue, Request, Shared, StreamEvent, StreamState, YieldStatus};
use request::{QueuedKind, ReplyBody, ReplyQueue, RequestBytes};
pub use streams::{CallEvent, CallEventHandler, CallOptions, CallStream, SendStatus, StreamHandler, StreamItem};
use timers::{TimerKind, Timers};
use transport::{Listener, SocketAddrOrPath, Stream};

/// Identifies a connection within its context; stale ids (of closed and removed
/// connections) are detected by the generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connection {}.{}", self.index, self.generation)
    }
}

/// Identifies a listener within its context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(usize);

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
pub type TimerCallback = Box<dyn FnOnce(&Context)>;

/// A connection opened (connected or accepted) or closed.
#[derive(Debug)]
pub enum ConnEvent<'a> {
    Open,
    Closed { kind: ErrorKind, reason: &'a str },
}

struct PendingCall {
    seq: u64,
    timed: bool,
    /// When the call's own timeout fires (to tell the callee's deadline reply from an
    /// application error that happens to use the same code).
    deadline: Option<Instant>,
    done: Completion,
    /// Items and send credit of an extended call (taken out while it runs).
    on_event: Option<streams::CallEventHandler>,
    /// The application reports consumed items itself (`grant`), e.g. a pulling stream.
    manual_credit: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum ConnState {
    Connecting,
    Open,
    /// Close requested; finished (pending calls failed, event delivered) in `process()`.
    Closing,
    Closed,
}

struct Conn {
    id: ConnId,
    stream: Option<Stream>,
    state: ConnState,
    /// Remaining connect targets after the one in progress.
    targets: Vec<SocketAddrOrPath>,
    session: Session<PendingCall>,
    inbuf: InBuf,
    /// Created by connect/spawn/stdio: the application releases it; accepted ones are ours.
    owned: bool,
    released: bool,
    /// The peer finished sending; close once our answers are out.
    read_eof: bool,
    /// A readiness event said the peer closed its end: read on until EOF is seen (data and
    /// the hang-up can arrive in one edge-triggered event).
    peer_closed: bool,
    in_ready: bool,
    dirty: bool,
    /// Why the connection closes, and whether to try writing what is queued first.
    close_reason: Option<(ErrorKind, String)>,
    flush_before_close: bool,
    describe: String,
    /// When bytes last came from or went to this peer (idle timeout; UDP peers expire).
    last_active: Instant,
    /// What the loop charged the budget for this connection's input buffer and session.
    charged: usize,
    /// What its requests hold (charged by them, from any thread), and whether it is gone.
    account: Arc<ConnAccount>,
    /// Not read for now, and why.
    pause: Pause,
    /// A pause stopped dispatching with complete messages still buffered.
    undispatched: bool,
    /// When the first bytes of the message now arriving came (message timeout).
    message_started: Option<Instant>,
    /// The oldest unfinished reassembly and when it was first seen (message timeout).
    reassembly_watch: Option<(u64, Instant)>,
    /// When output last made progress, while some is waiting.
    output_since: Option<Instant>,
    /// When the peer closed its end while requests were unanswered (linger).
    eof_at: Option<Instant>,
    /// Its key in the UDP peers' LRU order (a listener's peer).
    udp_lru: Option<u64>,
    /// TCP_NOTSENT_LOWAT is set (once the extension is on: only then does joint reorder).
    lowat_set: bool,
    /// Our calls whose `send` was refused because the output was full: they hear
    /// `CallEvent::Writable` once it drains.
    send_blocked: Vec<u32>,
}

/// Why a connection is not being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pause {
    None,
    /// Its output is over the high-water mark: read again once it drains to half.
    Output,
    /// The budget had no room (when it stood at `used_at` bytes): read again once memory
    /// has been given back.
    Budget {
        used_at: usize,
    },
}

struct Handlers {
    methods: HashMap<Vec<u8>, RequestHandler, BuildHasherDefault<IdHasher>>,
    fallback: Option<RequestHandler>,
    notification: Option<NotificationHandler>,
    conn_event: Option<ConnEventHandler>,
}

struct Inner {
    config: Config,
    poll: Poll,
    /// Taken out while events are handled (they need `&mut Inner`).
    events: Option<Events>,
    conns: Slab<Conn>,
    next_generation: u32,
    listeners: Slab<Listener>,
    /// Connections with input to read (or buffered input to decode).
    ready: Vec<ConnId>,
    /// Connections with output to write.
    dirty: Vec<ConnId>,
    /// Connections whose close must be finished.
    closing: Vec<ConnId>,
    /// Connections that opened outside `process()`; their Open event is still due.
    opened: Vec<ConnId>,
    /// Listeners with connections to accept.
    accept_ready: Vec<usize>,
    timers: Timers,
    user_timers: HashMap<u64, TimerCallback>,
    next_user_timer: u64,
    next_call_seq: u64,
    children: Vec<Child>,
    spare_queue: ReplyQueue,
    /// The last poll filled the events buffer; poll again soon.
    more_events: bool,
    /// UDP peers by (listener, address).
    udp_peers: HashMap<(usize, std::net::SocketAddr), ConnId>,
    /// The peer's extended calls being served, by (connection, msgid).
    streams: HashMap<(ConnId, u32), streams::StreamEntry, BuildHasherDefault<IdHasher>>,
    /// Where UDP listeners receive datagrams.
    datagram: InBuf,
    /// The context's state shared with other threads (the budget among it).
    shared: Arc<Shared>,
    /// Empty read buffers kept for reuse (so busy connections do not allocate per read, and
    /// idle ones hold none).
    spare_bufs: Vec<Vec<u8>>,
    /// What the budget was charged for `spare_bufs`.
    spare_charged: usize,
    /// Connections stopped for lack of budget.
    budget_paused: Vec<ConnId>,
    /// The housekeeping timer (message, output, idle and linger timeouts) is scheduled.
    housekeeping_armed: bool,
    /// Connections with a socket (for `max_connections`).
    open_conns: usize,
    /// When accepting last failed for lack of fds, and the delay before the next try.
    accept_backoff: HashMap<usize, Duration>,
    /// An fd kept open so that, when the process runs out, one can be freed to accept and
    /// close a waiting connection (its client sees the close instead of hanging).
    reserve_fd: Option<std::os::fd::OwnedFd>,
    /// UDP peers by last activity, oldest first (evicted when the table is full).
    udp_lru: std::collections::BTreeMap<u64, ConnId>,
    udp_tick: u64,
}

const WAKER_TOKEN: Token = Token(0);
const CONN_TOKEN_BASE: usize = 2;
const LISTENER_BIT: usize = 1 << (usize::BITS - 1);
const EVENTS_CAPACITY: usize = 1024;

fn conn_token(index: usize) -> Token {
    Token(CONN_TOKEN_BASE + index * 2)
}

/// A MessagePack-RPC context: connections, listeners, handlers and timers driven through one
/// pollable fd. Not thread-safe, except the [`Request`] tokens and [`Context::waker`].
pub struct Context {
    inner: RefCell<Inner>,
    handlers: RefCell<Handlers>,
    shared: Arc<Shared>,
    dispatching: Cell<bool>,
    log: Option<LogSink>,
    log_level: LogLevel,
    /// Lines caused by peers, counted per kind so a flood of them is summarised.
    peer_log: RefCell<log::RateLimit>,
    /// `shutdown()` was called: new requests are refused with SHUTTING_DOWN.
    shutting_down: Cell<bool>,
    pool: Arc<std::sync::Mutex<pool::Pool>>,
}

impl Context {
    /// Create a context.
    pub fn new(config: Config) -> Result<Context> {
        let poll = Poll::new().map_err(|e| Error::io("create epoll instance", &e))?;
        let waker = Waker::new(poll.registry(), WAKER_TOKEN).map_err(|e| Error::io("create waker", &e))?;
        let log = config.log.clone().or_else(log::env_sink);
        let log_level = log::env_level().unwrap_or(config.log_level);
        let workers = config.workers;
        let shared = Arc::new(Shared::new(waker, config.memory_budget));
        Ok(Context {
            inner: RefCell::new(Inner {
                config,
                poll,
                events: Some(Events::with_capacity(EVENTS_CAPACITY)),
                conns: Slab::new(),
                next_generation: 1,
                listeners: Slab::new(),
                ready: Vec::new(),
                dirty: Vec::new(),
                closing: Vec::new(),
                opened: Vec::new(),
                accept_ready: Vec::new(),
                timers: Timers::default(),
                user_timers: HashMap::new(),
                next_user_timer: 1,
                next_call_seq: 1,
                children: Vec::new(),
                spare_queue: ReplyQueue::default(),
                more_events: false,
                udp_peers: HashMap::new(),
                streams: HashMap::default(),
                datagram: InBuf::default(),
                shared: shared.clone(),
                spare_bufs: Vec::new(),
                spare_charged: 0,
                budget_paused: Vec::new(),
                housekeeping_armed: false,
                open_conns: 0,
                accept_backoff: HashMap::new(),
                reserve_fd: accept::open_reserve_fd(),
                udp_lru: Default::default(),
                udp_tick: 0,
            }),
            handlers: RefCell::new(Handlers { methods: HashMap::default(), fallback: None, notification: None, conn_event: None }),
            shared,
            dispatching: Cell::new(false),
            log,
            log_level,
            peer_log: RefCell::new(log::RateLimit::default()),
            shutting_down: Cell::new(false),
            pool: Arc::new(std::sync::Mutex::new(pool::Pool::new(workers))),
        })
    }

    /// The fd to watch for readability. Stable for the context's lifetime.
    pub fn fd(&self) -> RawFd {
        self.inner.borrow().poll.as_raw_fd()
    }

    /// Something any thread can use to make the fd readable.
    pub fn waker(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Whether a callback of this context is running (re-entrant `process()` is refused).
    pub fn is_dispatching(&self) -> bool {
        self.dispatching.get()
    }

    /// Milliseconds until `process()` has timer work: -1 none, 0 now; rounded up.
    pub fn timeout_ms(&self) -> i32 {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        if inner.has_immediate_work() {
            return 0;
        }
        // Deadlines of calls that already completed would wake the host for nothing.
        let (conns, user_timers) = (&inner.conns, &inner.user_timers);
        inner.timers.drop_stale_front(|k| timer_is_live(conns, user_timers, k));
        match inner.timers.next_deadline() {
            Some(at) => timers::millis_until(at, Instant::now()),
            None => -1,
        }
    }

    pub(crate) fn log(&self, level: LogLevel, message: impl FnOnce() -> String) {
        if level <= self.log_level {
            if let Some(sink) = &self.log {
                sink(level, &message());
            }
        }
    }

    // ---- driving -------------------------------------------------------------------------

    /// Run ready I/O, due timers and their callbacks, without blocking.
    pub fn process(&self) -> Result<()> {
        self.process_within(Duration::ZERO)
    }

    /// `process()`, but first wait up to `max_wait` for something to happen.
    fn process_within(&self, max_wait: Duration) -> Result<()> {
        if self.dispatching.get() {
            return Err(Error::new(ErrorKind::Recursive, "process() called from inside a callback"));
        }
        self.dispatching.set(true);
        let _processing = self.shared.enter_processing();
        let _reset = ResetOnDrop(&self.dispatching);
        self.poll_events(max_wait)?;
        // After the poll, not before: a wake-up landing between the two would have its
        // eventfd event collected by this poll while leaving the flag set, and every later
        // wake-up would then be skipped. Everything queued is drained below.
        self.shared.clear_woken();
        self.deliver_opened();
        self.accept_connections();
        self.read_connections();
        self.run_timers();
        self.drain_replies();
        self.flush_connections();
        self.finish_closes();
        self.inner.borrow_mut().resume_paused();
        self.reap_children();

        let inner = self.inner.borrow();
        if inner.has_immediate_work() || inner.more_events {
            self.shared.wake();
        }
        Ok(())
    }

    /// Block until the fd is readable or `timeout` (None: forever, capped by the next timer)
    /// passes, then `process()`. A convenience for programs without their own loop.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<()> {
        if self.dispatching.get() {
            return Err(Error::new(ErrorKind::Recursive, "wait() called from inside a callback"));
        }
        // Waiting happens in the same epoll_wait that collects the events: one syscall.
        let until_timer = match self.timeout_ms() {
            ms if ms < 0 => None,
            ms => Some(Duration::from_millis(ms as u64)),
        };
        let wait = match (until_timer, timeout) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Duration::from_secs(3600),
        };
        self.process_within(wait)
    }

    fn poll_events(&self, max_wait: Duration) -> Result<()> {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let mut events = inner.events.take().unwrap_or_else(|| Events::with_capacity(EVENTS_CAPACITY));
        let wait = if inner.has_immediate_work() || inner.more_events { Duration::ZERO } else { max_wait };
        match inner.poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => events.clear(),
            Err(e) => {
                inner.events = Some(events);
                return Err(Error::io("epoll_wait", &e));
            }
        }
        let mut count = 0;
        for event in events.iter() {
            count += 1;
            let token = event.token().0;
            if token == WAKER_TOKEN.0 {
                continue;
            }
            if token & LISTENER_BIT != 0 {
                let lid = token & !LISTENER_BIT;
                if event.is_writable() {
                    inner.udp_writable(lid);
                }
                if event.is_readable() && !inner.accept_ready.contains(&lid) {
                    inner.accept_ready.push(lid);
                }
                continue;
            }
            let index = (token - CONN_TOKEN_BASE) / 2;
            let write_end = (token - CONN_TOKEN_BASE) % 2 == 1;
            let Some(conn) = inner.conns.get_mut(index) else { continue };
            let id = conn.id;
            let is_pipe = matches!(conn.stream, Some(Stream::Pipe(_)));
            if !write_end && (event.is_read_closed() || event.is_error()) {
                conn.peer_closed = true;
            }
            if !write_end && (event.is_readable() || event.is_read_closed() || event.is_error()) && !conn.in_ready {
                conn.in_ready = true;
                inner.ready.push(id);
            }
            let writable = if is_pipe { write_end } else { event.is_writable() || event.is_write_closed() || event.is_error() };
            if writable {
                if conn.state == ConnState::Connecting {
                    inner.check_connect(index);
                }
                if let Some(conn) = inner.conns.get_mut(index) {
                    if !conn.dirty {
                        conn.dirty = true;
                        inner.dirty.push(id);
                    }
                }
            }
        }
        inner.more_events = count == EVENTS_CAPACITY;
        inner.events = Some(events);
        Ok(())
    }

    fn deliver_opened(&self) {
        let opened = std::mem::take(&mut self.inner.borrow_mut().opened);
        for id in opened {
            self.emit_conn_event(id, ConnEvent::Open);
        }
    }

    fn dispatch_event(&self, id: ConnId, event: Event<'_, PendingCall>) {
        match event {
            Event::Request { msgid, method, params, ext } => {
                self.serve_request(id, msgid, RequestBytes::Borrowed { method, args: params.args, kwargs: params.kwargs }, ext)
            }
            Event::Notification { method, params } => {
                let handler = self.handlers.borrow().notification.clone();
                match handler {
                    Some(handler) => handler(self, id, method, params),
                    None => self.log(LogLevel::Debug, || format!("notification {:?} ignored (no handler)", String::from_utf8_lossy(method))),
                }
            }
            Event::Response { msgid, call, outcome, extended } => {
                self.retire_timer(&call);
                let call_id = CallId { conn: id, msgid, seq: call.seq };
                let outcome = match outcome {
                    Outcome::Result(r) => Ok(r),
                    // The callee's deadline error can come before our own timer fires: it is
                    // the same timeout.
                    Outcome::Error(e)
                        if extended
                            && call.deadline.is_some_and(|d| Instant::now() >= d)
                            && crate::codec::error_code(e) == Some(rpc_error::DEADLINE_EXCEEDED) =>
                    {
                        Err(CallError { kind: ErrorKind::Timeout, error: &[], message: "call timed out".into() })
                    }
                    Outcome::Error(e) => Err(CallError {
                        kind: ErrorKind::Remote,
                        error: e,
                        message: crate::codec::error_message(e).map(|m| String::from_utf8_lossy(m).into_owned()).unwrap_or_default(),
                    }),
                    Outcome::Failed(CallFailure::TooLarge) => {
                        let max = self.inner.borrow().config.limits.frame.max_message_size;
                        Err(CallError { kind: ErrorKind::TooLarge, error: &[], message: format!("response larger than the {max}-byte limit") })
                    }
                    Outcome::Failed(CallFailure::Malformed) => {
                        Err(CallError { kind: ErrorKind::Protocol, error: &[], message: "malformed response".into() })
                    }
                };
                (call.done)(self, Response { call: call_id, outcome });
            }
            Event::Rejected(reason) => self.log(LogLevel::Warn, || format!("{id}: {reason}")),
            Event::Stray(reason) => self.log(LogLevel::Info, || format!("{id}: {reason}")),
            Event::ExtensionReady(on) => {
                self.log(LogLevel::Debug, || format!("{id}: joint extension {}", if on { "on" } else { "refused: stock peer" }));
                let started = {
                    let mut inner = self.inner.borrow_mut();
                    inner.mark_dirty(id);
                    inner.conn_mut(id).map(|c| c.session.take_started_inputs()).unwrap_or_default()
                };
                for msgid in started {
                    self.dispatch_stream_event(id, Event::SendCredit { msgid });
                }
            }
            other => self.dispatch_stream_event(id, other),
        }
    }

    /// Run the handler of a request (or answer it at once: no such method, shutting down).
    fn serve_request(&self, id: ConnId, msgid: u32, bytes: RequestBytes<'_>, ext: Option<crate::protocol::ExtCall>) {
        let handler = if self.shutting_down.get() {
            None
        } else {
            let h = self.handlers.borrow();
            h.methods.get(bytes.method()).or(h.fallback.as_ref()).cloned()
        };
        let Some(handler) = handler else {
            let (code, message) = if self.shutting_down.get() {
                (rpc_error::SHUTTING_DOWN, "the server is shutting down".to_string())
            } else {
                (rpc_error::NO_METHOD, format!("no such method: {}", String::from_utf8_lossy(bytes.method())))
            };
            let mut inner = self.inner.borrow_mut();
            if let Some(conn) = inner.conn_mut(id) {
                let _ = conn.session.reply_error(msgid, code, message.as_bytes());
            }
            inner.mark_dirty(id);
            return;
        };
        let Some((limits, account)) = self.inner.borrow_mut().conn_mut(id).map(|c| (c.session.limits().frame, c.account.clone())) else {
            return;
        };
        let stream = ext.map(|e| (e, self.open_stream(id, msgid, e)));
        handler(self, Request::new(account, id, msgid, limits, bytes, stream));
    }

    fn retire_timer(&self, call: &PendingCall) {
        if call.timed {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let (conns, user_timers) = (&inner.conns, &inner.user_timers);
            inner.timers.retire(|k| timer_is_live(conns, user_timers, k));
        }
    }

    fn on_eof(&self, id: ConnId) {
        let pending = {
            let mut inner = self.inner.borrow_mut();
            let Some(conn) = inner.conn_mut(id) else { return };
            conn.read_eof = true;
            // Our calls can no longer be answered; stock requests already received still
            // are (a peer may half-close after sending them).
            conn.session.take_pending_keep_open()
        };
        self.fail_calls(id, pending, ErrorKind::Closed, "connection closed by the peer");
        // Extended calls need the caller (credit, input, cancel): they end now.
        self.end_served_calls(id, StreamState::Closed);
        let mut inner = self.inner.borrow_mut();
        inner.mark_dirty(id);
        // Requests it sent may still be answered, for a while (the linger).
        let linger = inner.config.linger;
        let Some(conn) = inner.conn_mut(id) else { return };
        if conn.session.unanswered() > 0 || conn.undispatched {
            if linger.is_zero() {
                drop(inner);
                self.close_conn(id, ErrorKind::Closed, "connection closed by the peer; its unanswered requests were cancelled".into(), true);
                return;
            }
            conn.eof_at = Some(Instant::now());
            inner.arm_housekeeping();
        }
    }

    fn fail_calls(&self, id: ConnId, pending: Vec<(u32, PendingCall)>, kind: ErrorKind, message: &str) {
        for (msgid, call) in pending {
            self.retire_timer(&call);
            let call_id = CallId { conn: id, msgid, seq: call.seq };
            (call.done)(self, Response { call: call_id, outcome: Err(CallError { kind, error: &[], message: message.to_string() }) });
        }
    }

    fn run_timers(&self) {
        let now = Instant::now();
        loop {
            let kind = match self.inner.borrow_mut().timers.pop_due(now) {
                Some(k) => k,
                None => return,
            };
            match kind {
                TimerKind::CallTimeout { conn, msgid, seq } => {
                    let call = {
                        let mut inner = self.inner.borrow_mut();
                        let call = inner.conn_mut(conn).and_then(|c| match c.session.pending_call(msgid) {
                            Some(p) if p.seq == seq => c.session.cancel(msgid),
                            _ => None,
                        });
                        if call.is_some() {
                            inner.timers.fired();
                        }
                        call
                    };
                    if let Some(call) = call {
                        let call_id = CallId { conn, msgid, seq };
                        let err = CallError { kind: ErrorKind::Timeout, error: &[], message: "call timed out".into() };
                        (call.done)(self, Response { call: call_id, outcome: Err(err) });
                    }
                }
                TimerKind::ConnectTimeout { conn } => {
                    let connecting = {
                        let mut inner = self.inner.borrow_mut();
                        let connecting = inner.conn_mut(conn).is_some_and(|c| c.state == ConnState::Connecting);
                        if connecting {
                            inner.timers.fired();
                        }
                        connecting
                    };
                    if connecting {
                        self.close_conn(conn, ErrorKind::Timeout, "connect timed out".into(), false);
                    }
                }
                TimerKind::Deadline { conn, msgid } => {
                    self.inner.borrow_mut().timers.fired();
                    self.deadline_passed(conn, msgid);
                }
                TimerKind::UdpSweep { listener } => {
                    self.inner.borrow_mut().timers.fired();
                    self.sweep_udp_peers(listener);
                }
                TimerKind::Housekeeping => {
                    self.inner.borrow_mut().timers.fired();
                    self.housekeeping();
                }
                TimerKind::AcceptRetry { listener } => {
                    let mut inner = self.inner.borrow_mut();
                    inner.timers.fired();
                    if inner.listeners.contains(listener) {
                        inner.accept_ready.push(listener);
                    }
                }
                TimerKind::User { id } => {
                    let callback = {
                        let mut inner = self.inner.borrow_mut();
                        let cb = inner.user_timers.remove(&id);
                        if cb.is_some() {
                            inner.timers.fired();
                        }
                        cb
                    };
                    if let Some(cb) = callback {
                        cb(self);
                    }
                }
            }
        }
    }

    /// Move replies queued by request tokens into their connections' output.
    fn drain_replies(&self) {
        let mut guard = self.inner.borrow_mut();
        self.move_replies(&mut guard);
    }

    /// `drain_replies` with the context already borrowed.
    fn move_replies(&self, inner: &mut Inner) {
        let mut queue = std::mem::take(&mut inner.spare_queue);
        self.shared.take_queue(&mut queue);
        let mut last: Option<ConnId> = None;
        for reply in queue.entries.drain(..) {
            let (kind, conn_id, msgid) = (reply.kind, reply.conn, reply.msgid);
            if kind == QueuedKind::Final && !inner.streams.is_empty() {
                inner.streams.remove(&(conn_id, msgid));
            }
            if last.is_some_and(|l| l != conn_id) {
                inner.sync_memory(last.take().expect("checked"));
            }
            let Some(conn) = inner.conn_mut(conn_id) else { continue };
            let pushed = match (kind, reply.body) {
                (QueuedKind::Final, ReplyBody::Owned(v)) => conn.session.push_encoded_reply_vec(msgid, v).is_ok(),
                (QueuedKind::Final, ReplyBody::Arena { start, end }) => conn.session.push_encoded_reply(msgid, &queue.bytes[start..end]).is_ok(),
                (QueuedKind::Final, ReplyBody::Parts { head, body }) => conn.session.push_reply_parts(msgid, head, body).is_ok(),
                (QueuedKind::Message, ReplyBody::Owned(v)) => conn.session.push_encoded_vec(msgid, v).is_ok(),
                (QueuedKind::Message, ReplyBody::Arena { start, end }) => conn.session.push_encoded(msgid, &queue.bytes[start..end]).is_ok(),
                (QueuedKind::Message, ReplyBody::Parts { head, body }) => conn.session.push_encoded_parts(msgid, head, body).is_ok(),
                (QueuedKind::InputsConsumed(n), _) => {
                    conn.session.inputs_consumed(msgid, n);
                    true
                }
            };
            if pushed {
                inner.mark_dirty(conn_id);
                last = Some(conn_id);
            }
        }
        if let Some(id) = last {
            inner.sync_memory(id);
        }
        // The answers' memory is now charged as their connections' output.
        self.shared.budget.release(std::mem::take(&mut queue.charged));
        queue.bytes.clear();
        if queue.bytes.capacity() > 1 << 20 {
            queue.bytes = Vec::new();
        }
        inner.spare_queue = queue;
    }

    fn flush_connections(&self) {
        let mut to_close = Vec::new();
        let mut writable = Vec::new();
        {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let watch_output = inner.config.message_timeout.is_some();
            let dirty = std::mem::take(&mut inner.dirty);
            for id in dirty {
                let Some(conn) = inner.conn_mut(id) else { continue };
                conn.dirty = false;
                if conn.state != ConnState::Open {
                    continue;
                }
                if let Err(e) = conn.flush() {
                    to_close.push((id, ErrorKind::Closed, format!("write failed: {e}")));
                    continue;
                }
                let waiting = conn.output_since.is_some();
                if conn.read_eof && !conn.session.has_output() && conn.session.unanswered() == 0 {
                    to_close.push((id, ErrorKind::Closed, "connection closed by the peer".into()));
                }
                inner.sync_memory(id);
                inner.resume_if_drained(id);
                if let Some(calls) = inner.senders_to_wake(id) {
                    writable.push((id, calls));
                }
                if waiting && watch_output {
                    inner.arm_housekeeping();
                }
            }
        }
        for (id, calls) in writable {
            for msgid in calls {
                self.dispatch_stream_event(id, Event::SendCredit { msgid });
            }
        }
        for (id, kind, reason) in to_close {
            self.log_peer(LogLevel::Info, "connection closed", || format!("{id}: {reason}"));
            self.close_conn(id, kind, reason, false);
        }
    }

    /// Finish closes: fail pending calls, tell the application, free what nobody holds.
    fn finish_closes(&self) {
        loop {
            let closing = std::mem::take(&mut self.inner.borrow_mut().closing);
            if closing.is_empty() {
                return;
            }
            for id in closing {
                self.finish_close(id, true);
            }
        }
    }

    fn finish_close(&self, id: ConnId, notify: bool) {
        if self.inner.borrow_mut().conn_mut(id).is_none_or(|c| c.state == ConnState::Closed) {
            return;
        }
        // Handlers of the peer's extended calls hear that the call ended; stock requests
        // see it through their connection's account (set below).
        self.end_served_calls(id, StreamState::Closed);
        let (pending, kind, reason, notify) = {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let Some(conn) = inner.conns.get_mut(id.index as usize).filter(|c| c.id == id) else { return };
            if conn.state == ConnState::Closed {
                return;
            }
            if conn.flush_before_close {
                let _ = conn.flush();
            }
            // Nothing more is done for a peer that is gone: drop what is queued for it and
            // what it half sent, and tell its running handlers.
            conn.account.set_closed();
            conn.session.discard_io();
            conn.inbuf = InBuf::default();
            conn.pause = Pause::None;
            conn.eof_at = None;
            conn.output_since = None;
            conn.message_started = None;
            if let Some(key) = conn.udp_lru.take() {
                inner.udp_lru.remove(&key);
            }
            if let Some(mut stream) = conn.stream.take() {
                inner.open_conns -= 1;
                stream.deregister(inner.poll.registry());
                if let Some(child) = stream.take_child() {
                    inner.children.push(child);
                }
                if let Stream::UdpPeer { peer, listener, .. } = stream {
                    inner.udp_peers.remove(&(listener, peer));
                }
            }
            inner.sync_memory(id);
            let Some(conn) = inner.conns.get_mut(id.index as usize).filter(|c| c.id == id) else { return };
            conn.state = ConnState::Closed;
            let (kind, reason) = conn.close_reason.take().unwrap_or((ErrorKind::Closed, "closed".into()));
            let ended: Vec<(ConnId, u32)> = inner.streams.keys().filter(|(c, _)| *c == id).copied().collect();
            for key in ended {
                if let Some(entry) = inner.streams.remove(&key) {
                    entry.shared.end(StreamState::Closed);
                }
            }
            let Some(conn) = inner.conns.get_mut(id.index as usize).filter(|c| c.id == id) else { return };
            let pending = conn.session.take_pending();
            let notify = notify && !conn.released;
            (pending, kind, reason, notify)
        };
        let call_kind = if kind == ErrorKind::Protocol || kind == ErrorKind::Limit { ErrorKind::Closed } else { kind };
        self.fail_calls(id, pending, call_kind, &reason);
        if notify {
            self.emit_conn_event(id, ConnEvent::Closed { kind, reason: &reason });
        }
        let mut inner = self.inner.borrow_mut();
        let removable = inner.conn_mut(id).is_some_and(|c| !c.owned || c.released);
        if removable {
            inner.conns.remove(id.index as usize);
        }
    }

    fn emit_conn_event(&self, id: ConnId, event: ConnEvent<'_>) {
        let handler = self.handlers.borrow().conn_event.clone();
        if let Some(handler) = handler {
            handler(self, id, event);
        }
    }

    fn reap_children(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
    }

    // ---- connections ---------------------------------------------------------------------

    /// Start connecting to `uri`. Calls may be made at once; they are sent when connected.
    /// Failures that are known at once (bad address, Unix socket missing) are returned; later
    /// ones close the connection (its calls fail, a `Closed` event is emitted).
    pub fn connect(&self, uri: &str) -> Result<ConnId> {
        let address = transport::parse_uri(uri)?;
        let mut targets = address.targets();
        targets.reverse();
        let mut last_error = None;
        while let Some(target) = targets.pop() {
            match transport::connect(&target) {
                Ok(stream) => {
                    let is_tcp = matches!(stream, Stream::Tcp(_));
                    let mut inner = self.inner.borrow_mut();
                    let state = if is_tcp { ConnState::Connecting } else { ConnState::Open };
                    let id = inner.add_conn(stream, state, true).map_err(|e| Error::io("register connection", &e))?;
                    if let Some(conn) = inner.conn_mut(id) {
                        conn.targets = targets;
                        conn.describe = uri.to_string();
                        // We speak first: offer the joint extension (a stock server answers
                        // with an ordinary error and nothing changes).
                        conn.session.offer_extension();
                    }
                    if is_tcp {
                        if let Some(t) = inner.config.connect_timeout {
                            inner.timers.add(timers::after(t), TimerKind::ConnectTimeout { conn: id });
                        }
                    } else {
                        inner.opened.push(id);
                    }
                    drop(inner);
                    self.wake_if_outside();
                    return Ok(id);
                }
                Err(e) => last_error = Some(Error::io(&format!("connect to {uri}"), &e)),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::new(ErrorKind::Address, format!("{uri}: no address"))))
    }

    /// Spawn a program and talk MessagePack-RPC over its stdin/stdout (as `nvim --embed`).
    pub fn spawn(&self, argv: &[String]) -> Result<ConnId> {
        let stream = transport::spawn(argv).map_err(|e| Error::io(&format!("spawn {:?}", argv.first().map(String::as_str).unwrap_or("")), &e))?;
        self.add_owned_open(stream, format!("spawn {}", argv.join(" ")), true)
    }

    /// Talk MessagePack-RPC over this process's own stdin/stdout.
    pub fn open_stdio(&self) -> Result<ConnId> {
        let stream = transport::stdio().map_err(|e| Error::io("open stdio", &e))?;
        // Usually a server started by its client, which speaks first: offer nothing.
        self.add_owned_open(stream, "stdio".into(), false)
    }

    fn add_owned_open(&self, stream: Stream, describe: String, offer_extension: bool) -> Result<ConnId> {
        let mut inner = self.inner.borrow_mut();
        let id = inner.add_conn(stream, ConnState::Open, true).map_err(|e| Error::io("register connection", &e))?;
        if let Some(conn) = inner.conn_mut(id) {
            conn.describe = describe;
            if offer_extension {
                conn.session.offer_extension();
                inner.mark_dirty(id);
            }
        }
        inner.opened.push(id);
        drop(inner);
        self.wake_if_outside();
        Ok(id)
    }

    /// Close a connection: pending calls fail with `Cancelled`, the `Closed` event follows in
    /// `process()`.
    pub fn close(&self, id: ConnId) -> Result<()> {
        if !self.inner.borrow_mut().conn_exists(id) {
            return Err(Error::new(ErrorKind::State, "no such connection"));
        }
        self.close_conn(id, ErrorKind::Cancelled, "closed by the application".into(), true);
        Ok(())
    }

    /// The application drops its hold on a connection it created (connect/spawn/stdio):
    /// it is closed if open (pending calls fail with `Cancelled`, no `Closed` event), and its
    /// handle is freed once that is done.
    pub fn release(&self, id: ConnId) {
        let mut inner = self.inner.borrow_mut();
        let Some(conn) = inner.conn_mut(id) else { return };
        if !conn.owned || conn.released {
            return;
        }
        conn.released = true;
        if conn.state == ConnState::Closed {
            inner.conns.remove(id.index as usize);
            return;
        }
        drop(inner);
        self.close_conn(id, ErrorKind::Cancelled, "connection freed by the application".into(), true);
    }

    fn close_conn(&self, id: ConnId, kind: ErrorKind, reason: String, flush_first: bool) {
        let mut inner = self.inner.borrow_mut();
        let Some(conn) = inner.conn_mut(id) else { return };
        if matches!(conn.state, ConnState::Closing | ConnState::Closed) {
            return;
        }
        conn.state = ConnState::Closing;
        conn.close_reason = Some((kind, reason));
        conn.flush_before_close = flush_first;
        inner.closing.push(id);
        drop(inner);
        self.wake_if_outside();
    }

    fn wake_if_outside(&self) {
        if !self.dispatching.get() {
            self.shared.wake();
        }
    }

    /// Whether the context still has this connection and its owner has not released it.
    pub fn has_conn(&self, id: ConnId) -> bool {
        self.inner.borrow_mut().conn_mut(id).is_some_and(|c| !c.released)
    }

    /// Whether the connection is usable for new calls (connecting or open).
    pub fn is_open(&self, id: ConnId) -> bool {
        let inner = self.inner.borrow();
        inner
            .conns
            .get(id.index as usize)
            .filter(|c| c.id == id)
            .is_some_and(|c| matches!(c.state, ConnState::Open | ConnState::Connecting) && !c.read_eof)
    }

    /// Where the joint extension stands on a connection.
    pub fn extension(&self, id: ConnId) -> Option<crate::protocol::ExtMode> {
        self.inner.borrow_mut().conn_mut(id).map(|c| c.session.extension())
    }

    /// A short description of the peer (address or process), for logs.
    pub fn describe(&self, id: ConnId) -> String {
        let inner = self.inner.borrow();
        inner.conns.get(id.index as usize).filter(|c| c.id == id).map(|c| c.describe.clone()).unwrap_or_default()
    }

    /// Begin a graceful shutdown: every listener closes, and requests that arrive from now on
    /// are answered with a SHUTTING_DOWN error. Requests already received are unaffected;
    /// connections stay open until the application closes them. See
    /// [`unanswered_requests`](Self::unanswered_requests) to know when the work is done.
    pub fn shutdown(&self) {
        self.shutting_down.set(true);
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        for mut listener in inner.listeners.drain() {
            listener.deregister(inner.poll.registry());
        }
    }

    /// Requests received on all connections and not answered yet (answers still queued
    /// count as answered once `process()` has run).
    pub fn unanswered_requests(&self) -> usize {
        self.inner.borrow().conns.iter().map(|(_, c)| c.session.unanswered()).sum()
    }

    // ---- listening -----------------------------------------------------------------------

    /// Listen on `uri` (`tcp://HOST:PORT`, port 0 picks one; `unix:///path`).
    pub fn listen(&self, uri: &str) -> Result<ListenerId> {
        let address = transport::parse_uri(uri)?;
        let mut listener = Listener::bind(&address)?;
        let mut inner = self.inner.borrow_mut();
        listener.set_backlog(inner.config.listen_backlog).map_err(|e| Error::io("set the listen backlog", &e))?;
        let entry = inner.listeners.vacant_entry();
        let key = entry.key();
        listener.register(inner.poll.registry(), Token(key | LISTENER_BIT)).map_err(|e| Error::io("register listener", &e))?;
        if matches!(listener, Listener::Udp(_)) {
            inner.timers.add(timers::after(udp::SWEEP_EVERY), TimerKind::UdpSweep { listener: key });
        }
        inner.listeners.insert(listener);
        Ok(ListenerId(key))
    }

    /// The address a listener is bound to, as a URI (with the actual port).
    pub fn listener_uri(&self, id: ListenerId) -> Option<String> {
        self.inner.borrow().listeners.get(id.0).map(Listener::uri)
    }

    /// Stop listening (open connections stay). A Unix socket's file is removed.
    pub fn close_listener(&self, id: ListenerId) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        let mut listener = inner.listeners.try_remove(id.0).ok_or_else(|| Error::new(ErrorKind::State, "no such listener"))?;
        listener.deregister(inner.poll.registry());
        let peers: Vec<ConnId> = inner.udp_peers.iter().filter(|((l, _), _)| *l == id.0).map(|(_, c)| *c).collect();
        drop(inner);
        for conn in peers {
            self.close_conn(conn, ErrorKind::Closed, "listener closed".into(), true);
        }
        Ok(())
    }

    // ---- calls ---------------------------------------------------------------------------

    /// Call `method` with `params` (one encoded array, or a map for keyword params). `done`
    /// runs exactly once, inside `process()` or when the context is dropped. On error, it
    /// never runs.
    pub fn call(&self, id: ConnId, method: &[u8], params: &[u8], timeout: Option<Duration>, done: Completion) -> Result<CallId> {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let seq = inner.next_call_seq;
        let Some(conn) = inner.conns.get_mut(id.index as usize).filter(|c| c.id == id) else {
            return Err(Error::new(ErrorKind::State, "no such connection"));
        };
        if !matches!(conn.state, ConnState::Open | ConnState::Connecting) || conn.read_eof {
            return Err(Error::new(ErrorKind::Closed, "connection is closed"));
        }
        let pending = PendingCall { seq, timed: timeout.is_some(), deadline: timeout.map(timers::after), done, on_event: None, manual_credit: false };
        let msgid = conn.session.call(method, params, pending).map_err(|(e, _)| send_error(e))?;
        inner.next_call_seq += 1;
        if let Some(t) = timeout {
            inner.timers.add(timers::after(t), TimerKind::CallTimeout { conn: id, msgid, seq });
        }
        inner.mark_dirty(id);
        drop(guard);
        self.wake_if_outside();
        Ok(CallId { conn: id, msgid, seq })
    }

    /// Send a notification.
    pub fn notify(&self, id: ConnId, method: &[u8], params: &[u8]) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        let Some(conn) = inner.conn_mut(id) else {
            return Err(Error::new(ErrorKind::State, "no such connection"));
        };
        if !matches!(conn.state, ConnState::Open | ConnState::Connecting) {
            return Err(Error::new(ErrorKind::Closed, "connection is closed"));
        }
        conn.session.notify(method, params).map_err(send_error)?;
        inner.mark_dirty(id);
        drop(inner);
        self.wake_if_outside();
        Ok(())
    }

    /// Cancel a pending call: its completion runs with `Cancelled` in the next `process()`
    /// (a late response is ignored). Returns false if the call is no longer pending.
    pub fn cancel(&self, call: CallId) -> bool {
        let pending = {
            let mut inner = self.inner.borrow_mut();
            let Some(conn) = inner.conn_mut(call.conn) else { return false };
            let pending = match conn.session.pending_call(call.msgid) {
                Some(p) if p.seq & 0xffff_ffff == call.seq & 0xffff_ffff => conn.session.cancel(call.msgid),
                _ => None,
            };
            // An extended callee is told (CANCEL): flush it.
            inner.mark_dirty(call.conn);
            pending
        };
        let Some(pending) = pending else { return false };
        // Completions run inside process(): park it on a zero-delay timer.
        let msgid = call.msgid;
        let conn = call.conn;
        self.add_timer(
            Duration::ZERO,
            Box::new(move |ctx: &Context| {
                ctx.retire_timer(&pending);
                let call_id = CallId { conn, msgid, seq: pending.seq };
                let err = CallError { kind: ErrorKind::Cancelled, error: &[], message: "call cancelled".into() };
                (pending.done)(ctx, Response { call: call_id, outcome: Err(err) });
            }),
        );
        true
    }

    /// The id of the call pending on `conn` under `msgid`, if there is one.
    pub fn pending_call(&self, conn: ConnId, msgid: u32) -> Option<CallId> {
        let mut inner = self.inner.borrow_mut();
        let seq = inner.conn_mut(conn)?.session.pending_call(msgid)?.seq;
        Some(CallId { conn, msgid, seq })
    }

    /// Call and wait for the result, running `process()` meanwhile (other callbacks run
    /// too). Not allowed from inside a callback.
    pub fn call_blocking(
        &self,
        id: ConnId,
        method: &[u8],
        params: &[u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<Vec<u8>, (Error, Vec<u8>)> {
        if self.dispatching.get() {
            return Err((Error::new(ErrorKind::Recursive, "blocking call from inside a callback"), Vec::new()));
        }
        type Slot = Rc<RefCell<Option<std::result::Result<Vec<u8>, (Error, Vec<u8>)>>>>;
        let slot: Slot = Rc::new(RefCell::new(None));
        let filler = slot.clone();
        self.call(
            id,
            method,
            params,
            timeout,
            Box::new(move |_ctx: &Context, r: Response<'_>| {
                *filler.borrow_mut() = Some(match r.outcome {
                    Ok(v) => budget::try_to_vec(v).ok_or_else(|| (Error::new(ErrorKind::Limit, "out of memory for the result"), Vec::new())),
                    Err(e) => Err((Error::new(e.kind, e.message), e.error.to_vec())),
                });
            }),
        )
        .map_err(|e| (e, Vec::new()))?;
        loop {
            if let Some(r) = slot.borrow_mut().take() {
                return r;
            }
            self.wait(None).map_err(|e| (e, Vec::new()))?;
        }
    }

    // ---- handlers ------------------------------------------------------------------------

    /// Serve `method` (on every connection of this context). Replaces an earlier handler.
    pub fn register(&self, method: &[u8], handler: RequestHandler) {
        let old = self.handlers.borrow_mut().methods.insert(method.to_vec(), handler);
        drop(old); // after the borrow: a C destructor may call back into the context
    }

    pub fn unregister(&self, method: &[u8]) -> bool {
        let old = self.handlers.borrow_mut().methods.remove(method);
        old.is_some()
    }

    /// Handler for requests to methods that are not registered (default: a NO_METHOD error).
    pub fn set_fallback(&self, handler: Option<RequestHandler>) {
        let old = std::mem::replace(&mut self.handlers.borrow_mut().fallback, handler);
        drop(old);
    }

    pub fn set_notification_handler(&self, handler: Option<NotificationHandler>) {
        let old = std::mem::replace(&mut self.handlers.borrow_mut().notification, handler);
        drop(old);
    }

    pub fn set_conn_event_handler(&self, handler: Option<ConnEventHandler>) {
        let old = std::mem::replace(&mut self.handlers.borrow_mut().conn_event, handler);
        drop(old);
    }

    // ---- timers --------------------------------------------------------------------------

    /// Run `callback` inside `process()` after `delay`. Returns an id for
    /// [`cancel_timer`](Self::cancel_timer).
    pub fn add_timer(&self, delay: Duration, callback: TimerCallback) -> u64 {
        let mut inner = self.inner.borrow_mut();
        let id = inner.next_user_timer;
        inner.next_user_timer += 1;
        inner.user_timers.insert(id, callback);
        inner.timers.add(timers::after(delay), TimerKind::User { id });
        drop(inner);
        self.wake_if_outside();
        id
    }

    pub fn cancel_timer(&self, id: u64) -> bool {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let removed = inner.user_timers.remove(&id);
        if removed.is_some() {
            let (conns, user_timers) = (&inner.conns, &inner.user_timers);
            inner.timers.retire(|k| timer_is_live(conns, user_timers, k));
        }
        drop(guard);
        removed.is_some()
    }
}

fn send_error(e: SendError) -> Error {
    match e {
        SendError::Malformed => Error::new(ErrorKind::InvalidArgument, "payload is not exactly one valid MessagePack object"),
        SendError::NotArray => Error::new(ErrorKind::InvalidArgument, "params must be a MessagePack array (or a map)"),
        SendError::TooLarge => Error::new(ErrorKind::TooLarge, "message larger than the size limit"),
        SendError::TooManyCalls => Error::new(ErrorKind::Limit, "too many calls in flight on this connection"),
        SendError::Closed => Error::new(ErrorKind::Closed, "connection is closed"),
        SendError::WouldBlock => Error::new(ErrorKind::Limit, "no flow-control credit: wait until the peer grants more"),
        SendError::Unsupported => {
            Error::new(ErrorKind::Unsupported, "needs the joint extension on this call (the peer is a stock peer, or the call is not streaming)")
        }
    }
}

fn timer_is_live(conns: &Slab<Conn>, user_timers: &HashMap<u64, TimerCallback>, kind: &TimerKind) -> bool {
    let conn = |id: &ConnId| conns.get(id.index as usize).filter(|c| c.id == *id);
    match kind {
        TimerKind::CallTimeout { conn: id, msgid, seq } => conn(id).and_then(|c| c.session.pending_call(*msgid)).is_some_and(|p| p.seq == *seq),
        TimerKind::ConnectTimeout { conn: id } => conn(id).is_some_and(|c| c.state == ConnState::Connecting),
        TimerKind::AcceptRetry { .. } | TimerKind::UdpSweep { .. } | TimerKind::Deadline { .. } | TimerKind::Housekeeping => true,
        TimerKind::User { id } => user_timers.contains_key(id),
    }
}

struct ResetOnDrop<'a>(&'a Cell<bool>);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl Inner {
    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id.index as usize).filter(|c| c.id == id)
    }

    fn conn_exists(&mut self, id: ConnId) -> bool {
        self.conn_mut(id).is_some()
    }

    fn has_immediate_work(&self) -> bool {
        !self.ready.is_empty() || !self.dirty.is_empty() || !self.closing.is_empty() || !self.opened.is_empty() || !self.accept_ready.is_empty()
    }

    fn mark_dirty(&mut self, id: ConnId) {
        if let Some(conn) = self.conn_mut(id) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    fn add_conn(&mut self, mut stream: Stream, state: ConnState, owned: bool) -> io::Result<ConnId> {
        let entry = self.conns.vacant_entry();
        let index = entry.key();
        stream.register(self.poll.registry(), conn_token(index))?;
        if state == ConnState::Open {
            stream.set_nodelay();
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let id = ConnId { index: index as u32, generation };
        let describe = stream.describe();
        let always_ready = stream.reader_always_ready();
        let datagram = stream.is_datagram();
        let mut session = Session::new(udp::limits_for(&datagram, self.config.limits));
        session.set_datagram(datagram);
        self.open_conns += 1;
        self.conns.insert(Conn {
            id,
            stream: Some(stream),
            state,
            targets: Vec::new(),
            session,
            inbuf: InBuf::default(),
            owned,
            released: false,
            read_eof: false,
            peer_closed: false,
            in_ready: always_ready,
            dirty: false,
            close_reason: None,
            flush_before_close: false,
            describe,
            last_active: Instant::now(),
            charged: 0,
            account: input::new_account(self.shared.clone()),
            pause: Pause::None,
            undispatched: false,
            message_started: None,
            reassembly_watch: None,
            output_since: None,
            eof_at: None,
            udp_lru: None,
            lowat_set: false,
            send_blocked: Vec::new(),
        });
        if always_ready {
            self.ready.push(id);
        }
        if self.config.idle_timeout.is_some() {
            self.arm_housekeeping();
        }
        Ok(id)
    }

    /// A writable event on a connecting TCP stream: finished, failed (try the next address),
    /// or still in progress.
    fn check_connect(&mut self, index: usize) {
        let registry = self.poll.registry();
        let Some(conn) = self.conns.get_mut(index) else { return };
        let Some(stream) = conn.stream.as_mut() else { return };
        match stream.connect_result() {
            Ok(false) => {}
            Ok(true) => {
                stream.set_nodelay();
                conn.state = ConnState::Open;
                self.opened.push(conn.id);
            }
            Err(e) => {
                stream.deregister(registry);
                while let Some(target) = conn.targets.pop() {
                    if let Ok(mut next) = transport::connect(&target) {
                        if next.register(registry, conn_token(index)).is_ok() {
                            conn.stream = Some(next);
                            return;
                        }
                    }
                }
                conn.stream = None;
                self.open_conns -= 1;
                conn.state = ConnState::Closing;
                let kind = if e.kind() == io::ErrorKind::ConnectionRefused { ErrorKind::ConnectionRefused } else { ErrorKind::Io };
                conn.close_reason = Some((kind, format!("connect to {} failed: {e}", conn.describe)));
                self.closing.push(conn.id);
            }
        }
    }
}

impl Conn {
    /// Whether new calls may be made on it (connecting or open, peer still sending).
    fn is_usable(&self) -> bool {
        matches!(self.state, ConnState::Open | ConnState::Connecting) && !self.read_eof
    }

    /// Write as much queued output as the stream takes now (several chunks per `writev`),
    /// and keep the clock of output waiting for the peer.
    fn flush(&mut self) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else { return Ok(()) };
        if !self.lowat_set && self.session.fragment_size().is_some() {
            stream.set_notsent_lowat(transport::NOTSENT_LOWAT);
            stream.set_recv_buffer_if_loopback(transport::EXT_RECV_BUFFER);
            self.lowat_set = true;
        }
        let before = self.session.output_len();
        let result = if stream.is_datagram() {
            udp::flush_datagrams(stream, &mut self.session, &mut self.last_active)
        } else {
            write_out(stream, &mut self.session)
        };
        let after = self.session.output_len();
        if after < before {
            self.last_active = Instant::now();
        }
        self.output_since = match (after, self.output_since) {
            (0, _) => None,
            (_, Some(since)) if after >= before => Some(since),
            _ => Some(Instant::now()),
        };
        result
    }
}

/// `writev` queued output until it is all written or the stream would block.
fn write_out(stream: &mut Stream, session: &mut Session<PendingCall>) -> io::Result<()> {
    while session.has_output() {
        let written = {
            let mut slices = [io::IoSlice::new(&[]); crate::protocol::output::MAX_IOVECS];
            let n = session.output_slices(&mut slices);
            stream.write_vectored(&slices[..n])
        };
        match written {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
            Ok(n) => session.consume_output(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Drop for Context {
    /// Every pending call completes with `Cancelled`; open connections get a `Closed` event;
    /// then handlers (and their user data) are dropped and every fd is closed.
    fn drop(&mut self) {
        self.dispatching.set(true);
        let _processing = self.shared.enter_processing();
        let ids: Vec<ConnId> = self.inner.borrow().conns.iter().map(|(_, c)| c.id).collect();
        for id in ids {
            let live = self.inner.borrow_mut().conn_mut(id).is_some_and(|c| c.state != ConnState::Closed);
            if live {
                {
                    let mut inner = self.inner.borrow_mut();
                    if let Some(conn) = inner.conn_mut(id) {
                        conn.close_reason = Some((ErrorKind::Cancelled, "context freed".into()));
                        conn.flush_before_close = true;
                    }
                }
                self.finish_close(id, true);
            }
        }
        let timers: Vec<TimerCallback> = self.inner.borrow_mut().user_timers.drain().map(|(_, cb)| cb).collect();
        drop(timers);
        let handlers = std::mem::replace(
            &mut *self.handlers.borrow_mut(),
            Handlers { methods: HashMap::default(), fallback: None, notification: None, conn_event: None },
        );
        drop(handlers);
        let mut inner = self.inner.borrow_mut();
        for mut child in inner.children.drain(..) {
            if !matches!(child.try_wait(), Ok(Some(_))) {
                // Give it a moment to exit on its own (its stdin is closed), then insist.
                let deadline = Instant::now() + Duration::from_millis(500);
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if matches!(child.try_wait(), Ok(None)) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}
