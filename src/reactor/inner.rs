//! The context's mutable state (`Inner`, behind one `RefCell`) and the registered handlers.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::io;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use slab::Slab;

use crate::error::{Error, ErrorKind};
use crate::protocol::{IdHasher, SendError, Session};

use super::{
    conn_token, input, streams, transport, udp, Config, Conn, ConnEventHandler, ConnId, ConnState, InBuf, Listener, NotificationHandler, Pause,
    ReplyQueue, RequestHandler, Shared, Stream, TimerCallback, TimerKind, Timers,
};

pub(super) struct Handlers {
    pub(super) methods: HashMap<Vec<u8>, RequestHandler, BuildHasherDefault<IdHasher>>,
    pub(super) fallback: Option<RequestHandler>,
    pub(super) notification: Option<NotificationHandler>,
    pub(super) conn_event: Option<ConnEventHandler>,
    pub(super) accept: Option<super::AcceptHandler>,
}

pub(super) struct Inner {
    pub(super) config: Config,
    pub(super) poll: Poll,
    /// Taken out while events are handled (they need `&mut Inner`).
    pub(super) events: Option<Events>,
    pub(super) conns: Slab<Conn>,
    pub(super) next_generation: u32,
    pub(super) listeners: Slab<Listener>,
    /// Connections with input to read (or buffered input to decode).
    pub(super) ready: Vec<ConnId>,
    /// Connections with output to write.
    pub(super) dirty: Vec<ConnId>,
    /// Connections whose close must be finished.
    pub(super) closing: Vec<ConnId>,
    /// Connections that opened outside `process()`; their Open event is still due.
    pub(super) opened: Vec<ConnId>,
    /// Listeners with connections to accept.
    pub(super) accept_ready: Vec<usize>,
    pub(super) timers: Timers,
    pub(super) user_timers: HashMap<u64, TimerCallback>,
    pub(super) next_user_timer: u64,
    pub(super) next_call_seq: u64,
    pub(super) children: Vec<Child>,
    pub(super) spare_queue: ReplyQueue,
    /// The last poll filled the events buffer; poll again soon.
    pub(super) more_events: bool,
    /// UDP peers by (listener, address).
    pub(super) udp_peers: HashMap<(usize, std::net::SocketAddr), ConnId>,
    /// The peer's extended calls being served, by (connection, msgid).
    pub(super) streams: HashMap<(ConnId, u32), streams::StreamEntry, BuildHasherDefault<IdHasher>>,
    /// Where UDP listeners receive datagrams.
    pub(super) datagram: InBuf,
    /// The context's state shared with other threads (the budget among it).
    pub(super) shared: Arc<Shared>,
    /// Empty read buffers kept for reuse (so busy connections do not allocate per read, and
    /// idle ones hold none).
    pub(super) spare_bufs: Vec<Vec<u8>>,
    /// What the budget was charged for `spare_bufs`.
    pub(super) spare_charged: usize,
    /// Connections stopped for lack of budget.
    pub(super) budget_paused: Vec<ConnId>,
    /// The housekeeping timer (message, output, idle and linger timeouts) is scheduled.
    pub(super) housekeeping_armed: bool,
    /// The keepalive timer is scheduled, for this instant (see `keepalive.rs`).
    pub(super) keepalive_due: Option<std::time::Instant>,
    /// Connections with a socket (for `max_connections`).
    pub(super) open_conns: usize,
    /// When accepting last failed for lack of fds, and the delay before the next try.
    pub(super) accept_backoff: HashMap<usize, Duration>,
    /// An fd kept open so that, when the process runs out, one can be freed to accept and
    /// close a waiting connection (its client sees the close instead of hanging).
    pub(super) reserve_fd: Option<std::os::fd::OwnedFd>,
    /// UDP peers by last activity, oldest first (evicted when the table is full).
    pub(super) udp_lru: std::collections::BTreeMap<u64, ConnId>,
    pub(super) udp_tick: u64,
}

pub(super) fn send_error(e: SendError) -> Error {
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

pub(super) fn timer_is_live(conns: &Slab<Conn>, user_timers: &HashMap<u64, TimerCallback>, kind: &TimerKind) -> bool {
    let conn = |id: &ConnId| conns.get(id.index as usize).filter(|c| c.id == *id);
    match kind {
        TimerKind::CallTimeout { conn: id, msgid, seq } => conn(id).and_then(|c| c.session.pending_call(*msgid)).is_some_and(|p| p.seq == *seq),
        TimerKind::ConnectTimeout { conn: id } => conn(id).is_some_and(|c| c.state == ConnState::Connecting),
        TimerKind::Redial { conn: id, attempt } => conn(id).is_some_and(|c| super::reconnect::redial_is_due(c, *attempt)),
        TimerKind::AcceptRetry { .. } | TimerKind::UdpSweep { .. } | TimerKind::Deadline { .. } | TimerKind::Housekeeping | TimerKind::Keepalive => {
            true
        }
        TimerKind::User { id } => user_timers.contains_key(id),
    }
}

pub(super) struct ResetOnDrop<'a>(pub(super) &'a Cell<bool>);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl Inner {
    pub(super) fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id.index as usize).filter(|c| c.id == id)
    }

    pub(super) fn has_immediate_work(&self) -> bool {
        !self.ready.is_empty() || !self.dirty.is_empty() || !self.closing.is_empty() || !self.opened.is_empty() || !self.accept_ready.is_empty()
    }

    pub(super) fn mark_dirty(&mut self, id: ConnId) {
        if let Some(conn) = self.conn_mut(id) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    pub(super) fn add_conn(&mut self, mut stream: Stream, state: ConnState, owned: bool) -> io::Result<ConnId> {
        let index = self.conns.vacant_key();
        stream.register(self.poll.registry(), conn_token(index))?;
        if state == ConnState::Open {
            stream.set_nodelay();
            stream.set_tcp_keepalive(self.config.tcp_keepalive);
        }
        Ok(self.insert_conn(Some(stream), state, owned))
    }

    /// A connection with no socket yet (a reconnecting one before its first attempt).
    pub(super) fn add_conn_detached(&mut self, owned: bool) -> ConnId {
        self.insert_conn(None, ConnState::Connecting, owned)
    }

    fn insert_conn(&mut self, stream: Option<Stream>, state: ConnState, owned: bool) -> ConnId {
        let index = self.conns.vacant_key();
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let id = ConnId { index: index as u32, generation };
        let describe = stream.as_ref().map(Stream::describe).unwrap_or_default();
        let always_ready = stream.as_ref().is_some_and(Stream::reader_always_ready);
        let datagram = stream.as_ref().is_some_and(Stream::is_datagram);
        let mut session = Session::new(udp::limits_for(&datagram, self.config.limits));
        session.set_datagram(datagram);
        if stream.is_some() {
            self.open_conns += 1;
        }
        self.conns.insert(Conn {
            id,
            stream,
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
            last_input: Instant::now(),
            ping_sent: None,
            waiting_since: None,
            refused: false,
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
            tls: None,
            unannounced: false,
            reconnect: None,
        });
        if always_ready {
            self.ready.push(id);
        }
        if self.config.idle_timeout.is_some() {
            self.arm_housekeeping();
        }
        if !datagram {
            self.arm_keepalive();
        }
        id
    }

    /// A writable event on a connecting TCP stream: finished, failed (try the next address),
    /// or still in progress.
    pub(super) fn check_connect(&mut self, index: usize) {
        let tcp_keepalive = self.config.tcp_keepalive;
        let registry = self.poll.registry();
        let Some(conn) = self.conns.get_mut(index) else { return };
        let Some(stream) = conn.stream.as_mut() else { return };
        match stream.connect_result() {
            Ok(false) => {}
            Ok(true) => {
                stream.set_nodelay();
                stream.set_tcp_keepalive(tcp_keepalive);
                match stream.handshake() {
                    Ok(false) => return,
                    Ok(true) => {}
                    Err(e) => {
                        // The same certificate fails at every address: no other target.
                        conn.state = ConnState::Closing;
                        let kind = if super::tls::is_tls_failure(&e) { ErrorKind::Tls } else { ErrorKind::Io };
                        conn.close_reason = Some((kind, format!("{}: {e}", conn.describe)));
                        self.closing.push(conn.id);
                        return;
                    }
                }
                conn.tls = stream.tls_session().cloned();
                conn.state = ConnState::Open;
                let id = conn.id;
                let redial = conn.reconnect.as_mut().map(|r| r.went_up()).is_some();
                if redial {
                    // What waited for the connection goes out now, in order.
                    conn.session.release_held();
                }
                let tls = conn.tls.is_some();
                self.opened.push(id);
                // Data may have come with the handshake's last flight, already taken off
                // the socket.
                if tls {
                    self.mark_ready(id);
                }
                // Calls queued while it was down go out now.
                if tls || redial {
                    self.mark_dirty(id);
                }
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
