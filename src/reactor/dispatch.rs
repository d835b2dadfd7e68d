//! Dispatch to the application: protocol events, requests, due timers, end of input and
//! closes, each delivered to its handler or completion with no borrow held.

use std::time::Instant;

use crate::error::ErrorKind;
use crate::protocol::{rpc_error, CallFailure, Event, Outcome};

use super::{
    timer_is_live, CallError, CallId, ConnEvent, ConnId, ConnState, Context, InBuf, LogLevel, Pause, PendingCall, Request, RequestBytes, Response,
    Stream, StreamState, TimerKind,
};

impl Context {
    pub(super) fn dispatch_event(&self, id: ConnId, event: Event<'_, PendingCall>) {
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
    pub(super) fn serve_request(&self, id: ConnId, msgid: u32, bytes: RequestBytes<'_>, ext: Option<crate::protocol::ExtCall>) {
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

    pub(super) fn retire_timer(&self, call: &PendingCall) {
        if call.timed {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let (conns, user_timers) = (&inner.conns, &inner.user_timers);
            inner.timers.retire(|k| timer_is_live(conns, user_timers, k));
        }
    }

    pub(super) fn on_eof(&self, id: ConnId) {
        let pending = {
            let mut inner = self.inner.borrow_mut();
            let Some(conn) = inner.conn_mut(id) else { return };
            if conn.redials() {
                // Its calls fail once the connection is down and a fresh session takes new
                // ones (see reconnect.rs). Requests the peer sent us are not answered: the
                // answers would have no connection to go to (calls made meanwhile wait).
                drop(inner);
                self.close_conn(id, ErrorKind::Closed, "connection closed by the peer".into(), false);
                return;
            }
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

    pub(super) fn fail_calls(&self, id: ConnId, pending: Vec<(u32, PendingCall)>, kind: ErrorKind, message: &str) {
        for (msgid, call) in pending {
            self.retire_timer(&call);
            let call_id = CallId { conn: id, msgid, seq: call.seq };
            (call.done)(self, Response { call: call_id, outcome: Err(CallError { kind, error: &[], message: message.to_string() }) });
        }
    }

    pub(super) fn run_timers(&self) {
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
                    let reason = {
                        let mut inner = self.inner.borrow_mut();
                        let now = Instant::now();
                        // A reconnecting connection's timer may be of an earlier attempt.
                        let current =
                            |c: &super::Conn| c.reconnect.as_ref().is_none_or(|r| c.stream.is_some() && r.connect_deadline.is_some_and(|d| d <= now));
                        let reason = inner.conn_mut(conn).filter(|c| c.state == ConnState::Connecting && current(c)).map(|c| {
                            let stream = c.stream.as_ref();
                            if stream.is_some_and(|s| s.is_tls() && s.connect_result().is_ok_and(|up| up)) {
                                "TLS handshake did not finish in time (connect timeout; message timeout for accepted connections)"
                            } else {
                                "connect timed out"
                            }
                        });
                        if reason.is_some() {
                            inner.timers.fired();
                        }
                        reason
                    };
                    if let Some(reason) = reason {
                        self.close_conn(conn, ErrorKind::Timeout, reason.into(), false);
                    }
                }
                TimerKind::Redial { conn, attempt } => {
                    let due = {
                        let mut inner = self.inner.borrow_mut();
                        let due = inner.conn_mut(conn).is_some_and(|c| super::reconnect::redial_is_due(c, attempt));
                        if due {
                            inner.timers.fired();
                        }
                        due
                    };
                    if due {
                        self.redial_due(conn);
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
                TimerKind::Keepalive => {
                    self.inner.borrow_mut().timers.fired();
                    self.keepalive();
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

    pub(super) fn finish_close(&self, id: ConnId, notify: bool) {
        let redials = match self.inner.borrow_mut().conn_mut(id) {
            None => return,
            Some(c) if c.state == ConnState::Closed => return,
            Some(c) => c.redials(),
        };
        if redials {
            self.redial_after_close(id);
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
            let unannounced = std::mem::replace(&mut conn.unannounced, false);
            let notify = notify && !conn.released && !unannounced;
            if unannounced {
                let what = if conn.refused { "connection refused" } else { "TLS handshake failed" };
                drop(guard);
                self.log_peer(LogLevel::Info, what, || format!("{id}: {reason}"));
            }
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

    pub(super) fn emit_conn_event(&self, id: ConnId, event: ConnEvent<'_>) {
        let handler = self.handlers.borrow().conn_event.clone();
        if let Some(handler) = handler {
            handler(self, id, event);
        }
    }
}
