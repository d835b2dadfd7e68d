//! Reconnecting client connections ([`Context::connect_reconnecting`]): one [`ConnId`] that
//! outlives its sockets. Endpoints are tried in order on every round of attempts (failover);
//! between rounds the delay grows exponentially with jitter, up to a maximum, and is reset
//! once a connection has been up. Calls in flight when a connection drops fail with
//! `ErrorKind::Closed` and are never resent; calls made while down wait in a bounded queue
//! (they go out, in order, on the next connection) or fail at once. Each new connection gets
//! a fresh protocol session, so the joint extension is negotiated again.

use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::Session;

use super::{
    conn_token, input, timers, transport, Conn, ConnEvent, ConnId, ConnState, Context, InBuf, Pause, Stream, StreamState, TimerKind, TlsConfig,
};

/// How a reconnecting connection retries. See [`Context::connect_reconnecting`].
#[derive(Clone, Debug, PartialEq)]
pub struct Reconnect {
    /// The delay before the second round of attempts (the first one starts at once), and
    /// before the first round after a connection that was up dropped. Default 100 ms.
    pub initial_delay: Duration,
    /// The longest delay between rounds (before jitter). Default 30 s.
    pub max_delay: Duration,
    /// Each failed round multiplies the delay by this (at least 1). Default 2.
    pub factor: f64,
    /// Each delay is multiplied by a random number in `[1 - jitter, 1 + jitter]`, so clients
    /// that lost the same server do not come back in step. 0 to 1; default 0.2.
    pub jitter: f64,
    /// `Some(n)`: calls and notifications made while the connection is not up wait, at most
    /// `n` of them and the max message size in bytes together (the next one fails with
    /// `ErrorKind::Limit`), and go out in order once it is; a waiting call that times out or
    /// is cancelled is withdrawn, never sent. `None` (or `Some(0)`): they fail at once with
    /// `ErrorKind::Closed`. Default `Some(64)`.
    pub queue_limit: Option<usize>,
    /// Close the connection for good (a final `Closed` event; queued calls fail) when no
    /// connection has been up for this long since it was made or went down. `None`: retry
    /// forever (the default).
    pub give_up_after: Option<Duration>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.2,
            queue_limit: Some(64),
            give_up_after: None,
        }
    }
}

impl Reconnect {
    fn check(&self) -> Result<()> {
        let bad = |why: &str| Err(Error::new(ErrorKind::InvalidArgument, format!("reconnect policy: {why}")));
        if self.initial_delay.is_zero() {
            return bad("the initial delay must be more than 0");
        }
        if self.max_delay < self.initial_delay {
            return bad("the maximum delay is shorter than the initial delay");
        }
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return bad("the factor must be a number of at least 1");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return bad("the jitter must be between 0 and 1");
        }
        if self.give_up_after.is_some_and(|d| d.is_zero()) {
            return bad("give_up_after must be more than 0 (None: never give up)");
        }
        Ok(())
    }
}

/// Where a reconnecting connection stands.
pub(super) struct Redial {
    pub(super) policy: Reconnect,
    endpoints: Vec<(String, transport::Address)>,
    tls: Option<TlsConfig>,
    /// The endpoint being tried (or in use).
    endpoint: usize,
    /// Rounds that failed since the connection was made or last up.
    rounds: u32,
    /// Counts attempts and rounds, so timers of earlier ones are recognised as stale.
    pub(super) attempt: u64,
    /// When the connect timeout of the attempt in progress passes.
    pub(super) connect_deadline: Option<Instant>,
    /// Since when no connection has been up.
    since: Instant,
    /// The current socket reached `Open`, and when.
    up: bool,
    up_at: Option<Instant>,
    /// The application closed it (or the policy gave up): the next close is final.
    pub(super) stopping: bool,
    rng: u64,
}

impl Redial {
    /// The connection is up. The backoff starts over only once it has stayed up a while
    /// (see `redial_after_close`): a server that accepts and closes at once is not hammered.
    pub(super) fn went_up(&mut self) {
        self.up = true;
        self.up_at = Some(Instant::now());
        self.connect_deadline = None;
    }

    /// The earlier of the connect timeout and the give-up time, for an attempt starting now.
    fn attempt_deadline(&self, connect_timeout: Option<Duration>) -> Option<Instant> {
        let timeout = connect_timeout.map(timers::after);
        match (timeout, self.give_up_at()) {
            (Some(t), Some(g)) => Some(t.min(g)),
            (t, g) => t.or(g),
        }
    }

    /// The delay before the next round: `initial * factor^rounds`, capped, then jittered.
    fn next_delay(&mut self) -> Duration {
        let p = &self.policy;
        let base = p.initial_delay.as_secs_f64() * p.factor.powi(self.rounds.min(1000) as i32);
        // Capped at a day, so a "no maximum" of Duration::MAX cannot overflow below.
        let base = base.min(p.max_delay.as_secs_f64()).min(86_400.0);
        self.rounds = self.rounds.saturating_add(1);
        // xorshift64*: plenty for spreading retries.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let unit = (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        let scale = 1.0 - p.jitter + 2.0 * p.jitter * unit;
        Duration::from_secs_f64((base * scale).max(0.0))
    }

    fn give_up_at(&self) -> Option<Instant> {
        self.policy.give_up_after.map(|d| self.since.checked_add(d).unwrap_or_else(|| timers::after(d)))
    }
}

/// Whether a `Redial` timer for `attempt` still stands: the connection waits between rounds.
pub(super) fn redial_is_due(conn: &Conn, attempt: u64) -> bool {
    conn.state == ConnState::Connecting && conn.stream.is_none() && conn.reconnect.as_ref().is_some_and(|r| r.attempt == attempt && !r.stopping)
}

fn seed(index: u32) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let s = nanos ^ (u64::from(std::process::id()) << 32) ^ u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    s.max(1)
}

impl Conn {
    /// The application closes it: no reconnect follows.
    pub(super) fn stop_reconnecting(&mut self) {
        if let Some(r) = self.reconnect.as_mut() {
            r.stopping = true;
        }
    }

    /// Whether a close of this connection is a drop to recover from rather than final.
    pub(super) fn redials(&self) -> bool {
        self.reconnect.as_ref().is_some_and(|r| !r.stopping)
    }
}

enum Tried {
    /// An attempt is in progress (or already up).
    Started,
    /// Every remaining endpoint of the round failed at once; the last reason.
    Failed(ErrorKind, String),
    Gone,
}

impl Context {
    /// Connect to the first of `uris` that answers, and reconnect whenever the connection is
    /// lost, as `policy` says. The id stays valid across reconnects, until the application
    /// closes or releases it or the policy gives up.
    ///
    /// Each round of attempts tries the endpoints in order (failover), each with the connect
    /// timeout; the first round starts at once, later ones after the backoff delay. Events:
    /// `Connecting { endpoint }` as each attempt starts, `Open` once up, `Down` when the
    /// connection drops or a round fails, and a final `Closed`.
    ///
    /// Calls in flight when a connection drops fail with `ErrorKind::Closed` and are never
    /// resent (the peer may have run them). Calls made while the connection is not up, the
    /// first connect included, wait or fail at once ([`Reconnect::queue_limit`]); a waiting
    /// call's timeout runs while it waits. Every new connection offers the joint extension
    /// again. `tls` holds the settings for the `tls://` endpoints among `uris`. Addresses are
    /// parsed (and host names resolved) here; bad ones are returned as errors. UDP is not
    /// supported (it has no connection to lose).
    pub fn connect_reconnecting(&self, uris: &[&str], tls: Option<&TlsConfig>, policy: Reconnect) -> Result<ConnId> {
        policy.check()?;
        if uris.is_empty() {
            return Err(Error::new(ErrorKind::InvalidArgument, "no endpoint to connect to"));
        }
        let mut endpoints = Vec::with_capacity(uris.len());
        for uri in uris {
            let address = transport::parse_uri(uri)?;
            if matches!(address, transport::Address::Udp(_)) {
                return Err(Error::new(ErrorKind::InvalidArgument, format!("{uri:?}: UDP has no connection to reconnect")));
            }
            // Settings that cannot work are reported now, not at every attempt.
            address.targets(tls)?;
            endpoints.push((uri.to_string(), address));
        }
        if tls.is_some() && !endpoints.iter().any(|(_, a)| matches!(a, transport::Address::Tls(..))) {
            return Err(Error::new(ErrorKind::InvalidArgument, "TLS settings given, but no endpoint is a tls:// address"));
        }
        let mut inner = self.inner.borrow_mut();
        let id = inner.add_conn_detached(true);
        if let Some(conn) = inner.conn_mut(id) {
            conn.describe = uris[0].to_string();
            conn.session.offer_extension();
            // Calls made before it is up wait, withdrawable, in the session (protocol/held.rs).
            conn.session.hold_output();
            conn.reconnect = Some(Box::new(Redial {
                policy,
                endpoints,
                tls: tls.cloned(),
                endpoint: 0,
                rounds: 0,
                attempt: 0,
                connect_deadline: None,
                since: Instant::now(),
                up: false,
                up_at: None,
                stopping: false,
                rng: seed(id.index),
            }));
        }
        // The first round starts in process(), where its events can be delivered.
        inner.timers.add(Instant::now(), TimerKind::Redial { conn: id, attempt: 0 });
        drop(inner);
        self.wake_if_outside();
        Ok(id)
    }

    /// Whether the connection is up (open), as opposed to connecting, reconnecting or closed.
    pub fn is_up(&self, id: ConnId) -> bool {
        self.inner.borrow_mut().conn_mut(id).is_some_and(|c| c.state == ConnState::Open && !c.read_eof)
    }

    /// A `Redial` timer fired: start a round, or give up.
    pub(super) fn redial_due(&self, id: ConnId) {
        let give_up = {
            let mut inner = self.inner.borrow_mut();
            let Some(r) = inner.conn_mut(id).and_then(|c| c.reconnect.as_mut()) else { return };
            r.give_up_at().is_some_and(|at| at <= Instant::now())
        };
        if give_up {
            self.give_up(id, ErrorKind::Timeout, "no connection".into());
            return;
        }
        match self.try_endpoints(id, 0) {
            Tried::Started | Tried::Gone => {}
            Tried::Failed(kind, reason) => self.round_failed(id, kind, reason),
        }
    }

    /// Try the endpoints from `from` on until an attempt starts.
    fn try_endpoints(&self, id: ConnId, from: usize) -> Tried {
        let mut last = (ErrorKind::Address, "no endpoint".to_string());
        let mut next = from;
        loop {
            let (endpoint, outcome) = {
                let mut guard = self.inner.borrow_mut();
                let inner = &mut *guard;
                let connect_timeout = inner.config.connect_timeout;
                let Some(conn) = inner.conns.get_mut(id.index as usize).filter(|c| c.id == id) else { return Tried::Gone };
                let Some(r) = conn.reconnect.as_mut() else { return Tried::Gone };
                if r.stopping || conn.state != ConnState::Connecting || conn.stream.is_some() {
                    return Tried::Gone;
                }
                let Some((uri, address)) = r.endpoints.get(next) else { return Tried::Failed(last.0, last.1) };
                let uri = uri.clone();
                r.endpoint = next;
                r.attempt += 1;
                conn.describe = uri.clone();
                let tls = if matches!(address, transport::Address::Tls(..)) { r.tls.as_ref() } else { None };
                let outcome = match address.targets(tls) {
                    Err(e) => Err((e.kind, format!("connect to {uri}: {}", e.message))),
                    Ok(mut targets) => {
                        targets.reverse();
                        let mut failure = None;
                        let mut started = None;
                        while let Some(target) = targets.pop() {
                            match transport::connect(&target) {
                                Ok(mut stream) => match stream.register(inner.poll.registry(), conn_token(id.index as usize)) {
                                    Ok(()) => {
                                        started = Some(stream);
                                        break;
                                    }
                                    Err(e) => failure = Some((ErrorKind::Io, format!("register connection to {uri}: {e}"))),
                                },
                                Err(e) => {
                                    let kind =
                                        if e.kind() == std::io::ErrorKind::ConnectionRefused { ErrorKind::ConnectionRefused } else { ErrorKind::Io };
                                    failure = Some((kind, format!("connect to {uri} failed: {e}")));
                                }
                            }
                        }
                        match started {
                            Some(stream) => {
                                let is_tcp = matches!(stream, Stream::Tcp(_) | Stream::Tls(_));
                                conn.targets = targets;
                                conn.stream = Some(stream);
                                conn.last_active = Instant::now();
                                conn.last_input = Instant::now();
                                inner.open_conns += 1;
                                let conn = inner.conns.get_mut(id.index as usize).expect("checked above");
                                let r = conn.reconnect.as_mut().expect("checked above");
                                if is_tcp {
                                    // The give-up time bounds an attempt too.
                                    if let Some(at) = r.attempt_deadline(connect_timeout) {
                                        r.connect_deadline = Some(at);
                                        inner.timers.add(at, TimerKind::ConnectTimeout { conn: id });
                                    }
                                } else {
                                    // A Unix socket is up at once.
                                    conn.state = ConnState::Open;
                                    conn.session.release_held();
                                    r.went_up();
                                    inner.opened.push(id);
                                    inner.mark_dirty(id);
                                }
                                inner.arm_keepalive();
                                Ok(())
                            }
                            None => Err(failure.unwrap_or((ErrorKind::Address, format!("{uri}: no address")))),
                        }
                    }
                };
                (uri, outcome)
            };
            self.emit_conn_event(id, ConnEvent::Connecting { endpoint: &endpoint });
            match outcome {
                Ok(()) => return Tried::Started,
                Err(failure) => {
                    self.log(super::LogLevel::Debug, || format!("{id}: {}", failure.1));
                    last = failure;
                    next += 1;
                }
            }
        }
    }

    /// A round of attempts failed: `Down`, then the next round after the backoff (or the end).
    fn round_failed(&self, id: ConnId, kind: ErrorKind, reason: String) {
        let (give_up, at, attempt) = {
            let mut inner = self.inner.borrow_mut();
            let Some(r) = inner.conn_mut(id).and_then(|c| c.reconnect.as_mut()) else { return };
            if r.stopping {
                return;
            }
            let delay = r.next_delay();
            let at = timers::after(delay);
            let give_up_at = r.give_up_at();
            r.attempt += 1;
            let attempt = r.attempt;
            match give_up_at {
                Some(end) if end <= Instant::now() => (true, at, attempt),
                Some(end) => (false, at.min(end), attempt),
                None => (false, at, attempt),
            }
        };
        if give_up {
            self.give_up(id, kind, reason);
            return;
        }
        self.inner.borrow_mut().timers.add(at, TimerKind::Redial { conn: id, attempt });
        self.emit_conn_event(id, ConnEvent::Down { kind, reason: &reason });
    }

    /// The policy's time is up: close for good (queued calls fail, a final `Closed`).
    fn give_up(&self, id: ConnId, kind: ErrorKind, reason: String) {
        let after = {
            let mut inner = self.inner.borrow_mut();
            let Some(conn) = inner.conn_mut(id) else { return };
            conn.stop_reconnecting();
            conn.reconnect.as_ref().and_then(|r| r.policy.give_up_after).unwrap_or_default()
        };
        self.close_conn(id, kind, format!("gave up reconnecting after {} ms: {reason}", after.as_millis()), false);
    }

    /// `finish_close` of a reconnecting connection that is not being closed for good: a
    /// connection that was up dropped (its calls in flight fail, a fresh session waits for
    /// the next one), or an attempt failed (the next endpoint, or the end of the round).
    pub(super) fn redial_after_close(&self, id: ConnId) {
        // Handlers of the peer's extended calls hear that the call ended, before their
        // streams are dropped below (as finish_close does); answers already queued go into
        // the old session, which is dropped, never into the next one.
        self.end_served_calls(id, StreamState::Closed);
        self.drain_replies();
        let (was_up, kind, reason, pending, endpoint, count, gave_up) = {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let limits = inner.config.limits;
            let Some(conn) = inner.conns.get_mut(id.index as usize).filter(|c| c.id == id) else { return };
            if let Some(mut stream) = conn.stream.take() {
                inner.open_conns -= 1;
                stream.deregister(inner.poll.registry());
            }
            let (kind, reason) = conn.close_reason.take().unwrap_or((ErrorKind::Closed, "closed".into()));
            conn.state = ConnState::Connecting;
            conn.flush_before_close = false;
            conn.inbuf = InBuf::default();
            conn.read_eof = false;
            conn.peer_closed = false;
            conn.pause = Pause::None;
            conn.message_started = None;
            conn.reassembly_watch = None;
            conn.output_since = None;
            conn.eof_at = None;
            conn.ping_sent = None;
            conn.lowat_set = false;
            conn.tls = None;
            let r = conn.reconnect.as_mut().expect("a reconnecting connection");
            let was_up = std::mem::replace(&mut r.up, false);
            r.attempt += 1;
            r.connect_deadline = None;
            let (endpoint, count) = (r.endpoint, r.endpoints.len());
            let gave_up = r.give_up_at().is_some_and(|at| at <= Instant::now());
            let mut pending = Vec::new();
            if was_up {
                // Up long enough to count as healthy: the backoff and the give-up clock start
                // over. A connection dropped at once keeps counting rounds.
                if r.up_at.take().is_some_and(|t| t.elapsed() >= r.policy.initial_delay.max(Duration::from_secs(1))) {
                    r.rounds = 0;
                    r.since = Instant::now();
                }
                // What the old connection held goes with it; nothing of it is resent.
                conn.account.set_closed();
                conn.account = input::new_account(inner.shared.clone());
                pending = conn.session.take_pending();
                conn.session.discard_io();
                let mut session = Session::new(limits);
                session.offer_extension();
                session.hold_output();
                conn.session = session;
                conn.undispatched = false;
                conn.send_blocked.clear();
                let ended: Vec<(ConnId, u32)> = inner.streams.keys().filter(|(c, _)| *c == id).copied().collect();
                for key in ended {
                    if let Some(entry) = inner.streams.remove(&key) {
                        entry.shared.end(StreamState::Closed);
                    }
                }
            }
            inner.sync_memory(id);
            (was_up, kind, reason, pending, endpoint, count, gave_up)
        };
        if was_up {
            let message = format!("connection lost, the call was not resent: {reason}");
            self.fail_calls(id, pending, ErrorKind::Closed, &message);
            // The first round after a drop waits the initial delay.
            self.round_failed(id, kind, reason);
            return;
        }
        if gave_up {
            self.give_up(id, kind, reason);
            return;
        }
        let tried = if endpoint + 1 < count { self.try_endpoints(id, endpoint + 1) } else { Tried::Failed(kind, reason) };
        if let Tried::Failed(kind, reason) = tried {
            self.round_failed(id, kind, reason);
        }
    }
}
