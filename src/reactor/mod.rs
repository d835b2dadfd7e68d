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
mod conn;
mod dispatch;
mod housekeeping;
mod inner;
mod input;
mod keepalive;
mod log;
mod pipeline;
mod pool;
mod reconnect;
pub mod request;
mod spares;
mod streams;
pub mod timers;
pub mod tls;
pub mod tls_config;
pub mod transport;
mod types;
mod udp;
mod unix;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use slab::Slab;

use crate::error::{Error, ErrorKind, Result};

use budget::ConnAccount;
use conn::{conn_token, Conn, ConnState, Pause, PendingCall, CONN_TOKEN_BASE, EVENTS_CAPACITY, LISTENER_BIT, WAKER_TOKEN};
use inner::{send_error, timer_is_live, Handlers, Inner, ResetOnDrop};
use input::InBuf;
pub use log::LogSink;
pub use pool::PooledHandler;
pub use reconnect::Reconnect;
pub use request::{InputValue, Request, Shared, StreamEvent, StreamState, YieldStatus};
use request::{QueuedKind, ReplyBody, ReplyQueue, RequestBytes};
pub use streams::{CallEvent, CallEventHandler, CallOptions, CallStream, SendStatus, StreamHandler, StreamItem};
use timers::{TimerKind, Timers};
pub use tls::{PeerCertificate, TlsSession};
pub use tls_config::{ClientAuth, TlsConfig};
use transport::{Listener, SocketAddrOrPath, Stream};
pub use types::{
    AcceptHandler, CallError, CallId, Completion, Config, ConnEvent, ConnEventHandler, ConnId, ListenerId, LogLevel, NotificationHandler,
    PeerCredentials, RequestHandler, Response, TimerCallback,
};

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
                keepalive_due: None,
                open_conns: 0,
                accept_backoff: HashMap::new(),
                reserve_fd: accept::open_reserve_fd(),
                udp_lru: Default::default(),
                udp_tick: 0,
            }),
            handlers: RefCell::new(Handlers { methods: HashMap::default(), fallback: None, notification: None, conn_event: None, accept: None }),
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

    // ---- connections ---------------------------------------------------------------------

    /// Start connecting to `uri`. Calls may be made at once; they are sent when connected.
    /// Failures that are known at once (bad address, Unix socket missing) are returned; later
    /// ones close the connection (its calls fail, a `Closed` event is emitted).
    pub fn connect(&self, uri: &str) -> Result<ConnId> {
        self.connect_with(uri, None)
    }

    /// `connect`, with TLS settings for a `tls://` URI (trusted CAs, a client certificate, a
    /// server name). Without them a `tls://` server is verified against the system's roots.
    /// The connection opens once the handshake is done; a failed handshake closes it with
    /// an `ErrorKind::Tls` reason that names the cause, within the connect timeout.
    pub fn connect_tls(&self, uri: &str, tls: &TlsConfig) -> Result<ConnId> {
        self.connect_with(uri, Some(tls))
    }

    fn connect_with(&self, uri: &str, tls: Option<&TlsConfig>) -> Result<ConnId> {
        let address = transport::parse_uri(uri)?;
        if tls.is_some() && !matches!(address, transport::Address::Tls(..)) {
            return Err(Error::new(ErrorKind::InvalidArgument, format!("TLS settings given for {uri:?}, which is not a tls:// address")));
        }
        let mut targets = address.targets(tls)?;
        targets.reverse();
        let mut last_error = None;
        while let Some(target) = targets.pop() {
            match transport::connect(&target) {
                Ok(stream) => {
                    let is_tcp = matches!(stream, Stream::Tcp(_) | Stream::Tls(_));
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
        let mut inner = self.inner.borrow_mut();
        let Some(conn) = inner.conn_mut(id) else {
            return Err(Error::new(ErrorKind::State, "no such connection"));
        };
        conn.stop_reconnecting();
        drop(inner);
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
        conn.stop_reconnecting();
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
        // A connection the accept handler refused is gone for the application at once.
        self.inner.borrow_mut().conn_mut(id).is_some_and(|c| !c.released && !c.refused)
    }

    /// Whether the connection is usable for new calls (connecting or open; a reconnecting
    /// one that is down: whether calls may wait now, see [`Reconnect::queue_limit`]).
    pub fn is_open(&self, id: ConnId) -> bool {
        let inner = self.inner.borrow();
        inner.conns.get(id.index as usize).filter(|c| c.id == id).is_some_and(|c| c.admit_call().is_ok())
    }

    /// Where the joint extension stands on a connection.
    pub fn extension(&self, id: ConnId) -> Option<crate::protocol::ExtMode> {
        self.inner.borrow_mut().conn_mut(id).map(|c| c.session.extension())
    }

    /// What the TLS handshake of a connection settled: version, cipher suite, and the peer's
    /// verified certificate if it sent one. None for other transports, or before it is done.
    pub fn tls_session(&self, id: ConnId) -> Option<TlsSession> {
        let inner = self.inner.borrow();
        let conn = inner.conns.get(id.index as usize).filter(|c| c.id == id)?;
        conn.tls.clone()
    }

    /// The peer's address as a URI: `tcp://IP:PORT`, `tls://IP:PORT`, `udp://IP:PORT`,
    /// `unix:///PATH` for a peer socket bound to a path, or `unix:` for an unnamed one (most
    /// clients' are). None for pipes and closed connections.
    pub fn peer_address(&self, id: ConnId) -> Option<String> {
        let inner = self.inner.borrow();
        inner.conns.get(id.index as usize).filter(|c| c.id == id)?.stream.as_ref()?.peer_uri()
    }

    /// On a Unix socket, the pid, uid and gid of the process on the other end (`SO_PEERCRED`,
    /// recorded by the kernel when the connection was made). None for other transports and
    /// closed connections.
    pub fn peer_credentials(&self, id: ConnId) -> Option<PeerCredentials> {
        let inner = self.inner.borrow();
        inner.conns.get(id.index as usize).filter(|c| c.id == id)?.stream.as_ref()?.peer_credentials()
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
        self.listen_with(uri, None)
    }

    /// Listen on `tls://HOST:PORT`: each accepted connection is served over TLS with these
    /// settings (a certificate and key; a CA and `ClientAuth` for client certificates). A
    /// connection opens (the `Open` event) once its handshake is done; one that fails or
    /// does not finish within the message timeout is closed without an event, and logged.
    pub fn listen_tls(&self, uri: &str, tls: &TlsConfig) -> Result<ListenerId> {
        self.listen_with(uri, Some(tls))
    }

    fn listen_with(&self, uri: &str, tls: Option<&TlsConfig>) -> Result<ListenerId> {
        let address = transport::parse_uri(uri)?;
        if tls.is_some() && !matches!(address, transport::Address::Tls(..)) {
            return Err(Error::new(ErrorKind::InvalidArgument, format!("TLS settings given for {uri:?}, which is not a tls:// address")));
        }
        let mut listener = Listener::bind(&address, tls)?;
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
        let room = inner.shared.budget.limit().saturating_sub(inner.shared.budget.used());
        let Some(conn) = inner.conns.get_mut(id.index as usize).filter(|c| c.id == id) else {
            return Err(Error::new(ErrorKind::State, "no such connection"));
        };
        conn.admit_call()?;
        conn.admit_waiting(method.len() + params.len() + 16, room)?;
        let pending = PendingCall { seq, timed: timeout.is_some(), deadline: timeout.map(timers::after), done, on_event: None, manual_credit: false };
        let msgid = conn.session.call(method, params, pending).map_err(|(e, _)| send_error(e))?;
        if conn.waits_for_reconnect() {
            inner.sync_memory(id); // what waits counts against the memory budget
        }
        inner.next_call_seq += 1;
        inner.arm_keepalive();
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
        let room = inner.shared.budget.limit().saturating_sub(inner.shared.budget.used());
        let Some(conn) = inner.conn_mut(id) else {
            return Err(Error::new(ErrorKind::State, "no such connection"));
        };
        if !matches!(conn.state, ConnState::Open | ConnState::Connecting) {
            return Err(Error::new(ErrorKind::Closed, "connection is closed"));
        }
        if conn.reconnect.is_some() {
            conn.admit_call()?;
            conn.admit_waiting(method.len() + params.len() + 16, room)?;
        }
        conn.session.notify(method, params).map_err(send_error)?;
        if conn.waits_for_reconnect() {
            inner.sync_memory(id);
        }
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

    /// Decide which accepted connections are served: `handler` runs for each one before
    /// anything else happens on it — before its `Open` event and its first request, for TLS
    /// after the handshake, for UDP when a peer address is first heard (its datagram is
    /// dropped if refused) — and may look at [`peer_address`](Self::peer_address),
    /// [`peer_credentials`](Self::peer_credentials) and [`tls_session`](Self::tls_session).
    /// Returning false closes the connection without any event (logged at info level).
    pub fn set_accept_handler(&self, handler: Option<AcceptHandler>) {
        let old = std::mem::replace(&mut self.handlers.borrow_mut().accept, handler);
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
                        conn.stop_reconnecting();
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
            Handlers { methods: HashMap::default(), fallback: None, notification: None, conn_event: None, accept: None },
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
