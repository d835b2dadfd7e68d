//! The input side of a connection: reading into a buffer that grows only with the bytes that
//! actually arrive, decoding and dispatching complete messages, and stopping (TCP
//! back-pressure) when the connection's output or the context's memory budget says so.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use super::budget::SMALL;
use super::request::{InputValue, Parts, RequestBytes, StreamEvent};
use super::transport;
use super::{ConnId, ConnState, Context, Inner, LogLevel, Pause};
use crate::error::ErrorKind;
use crate::protocol::{Decoded, Event};

/// The first read size of a connection, and the least a buffer grows by.
pub(super) const READ_CHUNK: usize = 64 << 10;
/// The read size grows (doubling while reads fill it: a peer sending in bulk) up to this.
pub(super) const MAX_READ_CHUNK: usize = 1 << 20;

/// Requests at least this big take over the buffer they arrived in instead of being copied.
const OWN_REQUEST_ABOVE: usize = 64 << 10;

/// Received bytes not yet consumed: `data[start..end]`. Empty (no allocation) while nothing
/// is buffered.
#[derive(Default)]
pub(super) struct InBuf {
    pub(super) data: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Lower bound of the size of the message being received (from its header; a peer's
    /// claim, used only to stop growing, never to decide how much to allocate).
    pub(super) needed: usize,
    /// The connection's read size now: doubles while reads fill it, halves when they do
    /// not (0: not started, READ_CHUNK).
    pub(super) chunk: usize,
}

/// Why there is no room to read into.
pub(super) enum NoRoom {
    /// The budget allows no more now: stop reading until memory comes back.
    Budget,
    /// The allocation failed.
    OutOfMemory,
}

impl InBuf {
    pub(super) fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub(super) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes allocated.
    pub(super) fn memory(&self) -> usize {
        self.data.capacity()
    }

    /// Room to read into. The buffer grows by at least [`READ_CHUNK`] and at most by what it
    /// already holds (so its size is at most about twice the bytes received), and by no more
    /// than `allowance` bytes in all.
    pub(super) fn spare(&mut self, allowance: usize) -> Result<&mut [u8], NoRoom> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let pending = self.end - self.start;
        let chunk = self.chunk.max(READ_CHUNK);
        let want = self.needed.saturating_sub(pending).clamp(chunk, pending.max(chunk));
        if self.data.len() - self.end < want && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end = pending;
            self.start = 0;
        }
        let free = self.data.len() - self.end;
        if free < want {
            let grow = (want - free).min(allowance);
            if grow == 0 && free == 0 {
                return Err(NoRoom::Budget);
            }
            if grow > 0 {
                let len = self.data.len() + grow;
                if self.data.try_reserve_exact(len - self.data.len()).is_err() {
                    return Err(NoRoom::OutOfMemory);
                }
                self.data.resize(len, 0);
            }
        }
        Ok(&mut self.data[self.end..])
    }

    /// A read of `n` bytes into `spare` bytes of room: adapt the read size.
    pub(super) fn note_read(&mut self, n: usize, spare: usize) {
        let chunk = self.chunk.max(READ_CHUNK);
        self.chunk = if n == spare {
            (chunk * 2).min(MAX_READ_CHUNK)
        } else if n < spare / 4 {
            (chunk / 2).max(READ_CHUNK)
        } else {
            chunk
        };
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// After a read round: give memory back. An empty buffer is handed back (an idle
    /// connection holds nothing; the caller may keep it for reuse); a big buffer holding only
    /// a small partial message is shrunk (a peer that trickles bytes holds about what it sent).
    pub(super) fn trim(&mut self) -> Option<Vec<u8>> {
        if self.is_empty() {
            self.needed = 0;
            return (self.data.capacity() > 0).then(|| std::mem::take(&mut self.data));
        }
        let pending = self.end - self.start;
        if pending <= 4096 && self.data.len() > 16 << 10 {
            let mut small = Vec::new();
            if small.try_reserve_exact(pending.max(256)).is_ok() {
                small.extend_from_slice(self.filled());
                small.resize(small.capacity(), 0);
                self.data = small;
                self.start = 0;
                self.end = pending;
            }
        }
        None
    }

    /// Take the buffer over (a big request keeps it); the bytes after `frame_end` stay
    /// buffered. `None` if their new buffer could not be allocated.
    fn take_through(&mut self, frame_end: usize) -> Option<Vec<u8>> {
        let rest = self.end - frame_end;
        let mut fresh = Vec::new();
        if rest > 0 {
            fresh.try_reserve_exact(rest.max(READ_CHUNK)).ok()?;
            fresh.extend_from_slice(&self.data[frame_end..self.end]);
            fresh.resize(fresh.capacity(), 0);
        }
        let mut taken = std::mem::replace(&mut self.data, fresh);
        taken.truncate(frame_end);
        self.start = 0;
        self.end = rest;
        Some(taken)
    }
}

/// How a read attempt ended.
enum ReadOutcome {
    More,
    Drained,
    BudgetUsed,
    Eof,
    Failed(io::Error),
}

/// Whether dispatching went on to the end of the buffer.
#[derive(PartialEq, Eq)]
pub(super) enum Dispatched {
    /// Everything complete was dispatched; the connection is open.
    All,
    /// Stopped by a pause; complete messages may remain buffered.
    Paused,
    /// The connection is closing.
    Closed,
}

/// A request taken out of the read buffer with its position, so the buffer can be handed to it.
struct OwnedRequest {
    msgid: u32,
    frame_end: usize,
    parts: Parts,
    ext: Option<crate::protocol::ExtCall>,
}

impl Inner {
    /// Bytes a connection may still allocate: the budget's free room, or at least what is
    /// left of its small allowance.
    #[inline]
    pub(super) fn allowance(&self, id: ConnId) -> usize {
        let budget = self.budget();
        let room = budget.limit().saturating_sub(budget.used());
        if room >= SMALL {
            return room;
        }
        let Some(conn) = self.conns.get(id.index as usize).filter(|c| c.id == id) else { return 0 };
        room.max(SMALL.saturating_sub(conn.held()))
    }

    /// Whether a connection must stop being read now: its output backlog (beyond the one big
    /// message in transfer) is over the high-water mark, or the budget is spent and it holds
    /// more than its allowance.
    fn pause_reason(&self, id: ConnId) -> Option<Pause> {
        let conn = self.conns.get(id.index as usize).filter(|c| c.id == id)?;
        let hwm = self.config.output_high_water;
        if conn.session.output_len() > hwm && conn.session.output_backlog() > hwm {
            return Some(Pause::Output);
        }
        let budget = self.budget();
        if budget.is_spent() && conn.held() > SMALL {
            return Some(Pause::Budget { used_at: budget.used() });
        }
        None
    }
}

impl Context {
    pub(super) fn read_connections(&self) {
        let ready = std::mem::take(&mut self.inner.borrow_mut().ready);
        for id in ready {
            self.read_conn(id);
        }
    }

    /// Read from one connection up to the read budget, decoding and dispatching each complete
    /// message as soon as it is in. Input that was left undispatched by a pause goes first.
    pub(super) fn read_conn(&self, id: ConnId) {
        let mut total = 0usize;
        let mut first = true;
        loop {
            let prepared = {
                let mut guard = self.inner.borrow_mut();
                let inner = &mut *guard;
                let Some(conn) = inner.conn_mut(id) else { return };
                conn.in_ready = false;
                if conn.state != ConnState::Open || conn.pause != Pause::None {
                    return;
                }
                if first && conn.undispatched {
                    Prepared::Dispatch(std::mem::take(&mut conn.inbuf))
                } else if conn.read_eof {
                    return;
                } else if let Some(pause) = inner.pause_reason(id) {
                    inner.pause(id, pause);
                    return;
                } else {
                    self.read_some(inner, id, &mut total)
                }
            };
            first = false;
            let (mut buf, outcome) = match prepared {
                Prepared::Dispatch(buf) => (buf, ReadOutcome::More),
                Prepared::Read(buf, outcome) => (buf, outcome),
                Prepared::NoRoom(buf, NoRoom::Budget) => {
                    let mut inner = self.inner.borrow_mut();
                    let used_at = inner.budget().used();
                    inner.put_back(id, buf, true);
                    inner.pause(id, Pause::Budget { used_at });
                    return;
                }
                Prepared::NoRoom(buf, NoRoom::OutOfMemory) => {
                    self.inner.borrow_mut().put_back(id, buf, true);
                    self.close_conn(id, ErrorKind::Limit, "out of memory for its input".into(), false);
                    return;
                }
                Prepared::Stop => return,
            };
            let datagram = self.is_datagram_conn(id);
            let dispatched = self.dispatch_buffer(id, &mut buf);
            if datagram && dispatched == Dispatched::All {
                self.end_datagram(id, &mut buf);
            }
            {
                let mut inner = self.inner.borrow_mut();
                if let Some(conn) = inner.conn_mut(id) {
                    conn.undispatched = dispatched == Dispatched::Paused;
                }
                // Between reads of one round the buffer stays; after the last it is trimmed.
                let last = !matches!(outcome, ReadOutcome::More) || dispatched != Dispatched::All;
                inner.put_back(id, buf, last);
            }
            if dispatched != Dispatched::All {
                // Closing, or paused: a resume puts the connection back on the ready list.
                if dispatched == Dispatched::Paused {
                    if let ReadOutcome::Eof = outcome {
                        self.on_eof(id);
                    }
                }
                return;
            }
            match outcome {
                ReadOutcome::More => continue,
                ReadOutcome::Drained => return,
                ReadOutcome::BudgetUsed => {
                    self.inner.borrow_mut().mark_ready(id);
                    return;
                }
                ReadOutcome::Eof => {
                    self.on_eof(id);
                    return;
                }
                ReadOutcome::Failed(e) => {
                    if super::tls::is_tls_failure(&e) {
                        self.close_conn(id, ErrorKind::Tls, e.to_string(), false);
                        return;
                    }
                    let kind = if e.kind() == io::ErrorKind::ConnectionRefused { ErrorKind::ConnectionRefused } else { ErrorKind::Closed };
                    self.close_conn(id, kind, format!("read failed: {e}"), false);
                    return;
                }
            }
        }
    }

    /// One read into the connection's buffer (taken out of it; the caller puts it back).
    fn read_some(&self, inner: &mut Inner, id: ConnId, total: &mut usize) -> Prepared {
        let budget_bytes = inner.config.read_budget;
        let allowance = inner.allowance(id);
        let Some(conn) = inner.conn_mut(id) else { return Prepared::Stop };
        let mut buf = std::mem::take(&mut conn.inbuf);
        if conn.stream.is_none() {
            conn.inbuf = buf;
            return Prepared::Stop;
        }
        if buf.data.capacity() == 0 {
            if let Some(pooled) = inner.spare_bufs.pop() {
                buf.data = pooled;
                inner.charge_spare_bufs();
            }
        }
        let Some(conn) = inner.conn_mut(id) else { return Prepared::Stop };
        let Some(stream) = conn.stream.as_mut() else { return Prepared::Stop };
        // A short read means "drained" unless the peer closed: then read on to the EOF.
        let always_ready = stream.reader_always_ready() || conn.peer_closed || stream.is_datagram();
        if stream.is_datagram() {
            buf.needed = transport::UDP_MAX_MESSAGE + 1;
        }
        let spare = match buf.spare(allowance) {
            Ok(spare) => spare,
            Err(no_room) => return Prepared::NoRoom(buf, no_room),
        };
        let spare_len = spare.len();
        let outcome = loop {
            match stream.read(spare) {
                Ok(0) => break ReadOutcome::Eof,
                Ok(n) => {
                    buf.end += n;
                    *total += n;
                    buf.note_read(n, spare_len);
                    conn.last_active = Instant::now();
                    conn.last_input = conn.last_active;
                    break if n < spare_len && !always_ready {
                        ReadOutcome::Drained
                    } else if *total >= budget_bytes {
                        ReadOutcome::BudgetUsed
                    } else {
                        ReadOutcome::More
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break ReadOutcome::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break ReadOutcome::Failed(e),
            }
        };
        Prepared::Read(buf, outcome)
    }

    /// Decode and dispatch every complete message in `buf`, unless the connection must stop
    /// being read first (its output is over the high-water mark, or the budget is spent).
    pub(super) fn dispatch_buffer(&self, id: ConnId, buf: &mut InBuf) -> Dispatched {
        let mut consumed_any = false;
        let result = loop {
            let decoded = {
                let mut guard = self.inner.borrow_mut();
                let inner = &mut *guard;
                let hwm = inner.config.output_high_water;
                let budget = &self.shared.budget;
                let room = budget.limit().saturating_sub(budget.used());
                let Some(conn) = inner.conn_mut(id).filter(|c| c.state == ConnState::Open) else { break Dispatched::Closed };
                if buf.is_empty() {
                    break Dispatched::All;
                }
                // The common case decides on two counters; the rest only when one is high.
                let conn = if conn.session.output_len() + self.shared.queued_bytes() > hwm || room == 0 {
                    match self.gate_dispatch(inner, id) {
                        Gate::Go => {}
                        Gate::Pause(pause) => {
                            inner.pause(id, pause);
                            break Dispatched::Paused;
                        }
                        Gate::Failed(reason) => {
                            drop(guard);
                            self.close_conn(id, ErrorKind::Closed, reason, false);
                            break Dispatched::Closed;
                        }
                    }
                    let allowance = inner.allowance(id);
                    let Some(conn) = inner.conn_mut(id) else { break Dispatched::Closed };
                    conn.session.set_memory_allowance(allowance);
                    conn
                } else {
                    // Plenty of room: at least the allowance, whatever this connection holds.
                    conn.session.set_memory_allowance(if room >= SMALL { room } else { room.max(SMALL.saturating_sub(conn.held())) });
                    conn
                };
                conn.session.decode_next(buf.filled())
            };
            match decoded {
                Decoded::NeedMore { needed } => {
                    buf.needed = needed;
                    break Dispatched::All;
                }
                Decoded::Blocked => {
                    let mut inner = self.inner.borrow_mut();
                    let used_at = inner.budget().used();
                    inner.pause(id, Pause::Budget { used_at });
                    break Dispatched::Paused;
                }
                Decoded::Consumed { consumed, event } => {
                    consumed_any = true;
                    let frame_start = buf.start;
                    match event {
                        Some(Event::Request { msgid, method, params, ext }) if consumed >= OWN_REQUEST_ABOVE => {
                            let frame = &buf.data[..buf.end];
                            let owned = OwnedRequest {
                                msgid,
                                frame_end: frame_start + consumed,
                                parts: Parts::locate(frame, method, params.args, params.kwargs),
                                ext,
                            };
                            self.serve_owned_request(id, buf, owned);
                        }
                        Some(event) => {
                            self.dispatch_event(id, event);
                            buf.consume(consumed);
                        }
                        None => buf.consume(consumed),
                    }
                }
                Decoded::Reassembled { consumed, message } => {
                    consumed_any = true;
                    buf.consume(consumed);
                    self.dispatch_reassembled(id, message);
                }
                Decoded::Fatal(reason) => {
                    if self.is_datagram_conn(id) {
                        // Datagrams are independent: drop this one, keep the peer.
                        self.log_peer(LogLevel::Warn, "datagram dropped", || format!("{id}: datagram dropped: {reason}"));
                        buf.consume(buf.end - buf.start);
                        self.reset_datagram_input(id);
                        break Dispatched::All;
                    }
                    let reason = match buf.filled() {
                        // A TLS record header (handshake or alert, TLS 1.0 to 1.3).
                        [0x15 | 0x16, 0x03, 0x00..=0x04, ..] => {
                            format!("{reason} (the peer speaks TLS on a plaintext connection: use tls:// on both ends, or tcp:// on both)")
                        }
                        _ => reason,
                    };
                    self.log_peer(LogLevel::Warn, "protocol error", || format!("{id}: {reason}; closing it"));
                    self.close_conn(id, ErrorKind::Protocol, reason, true);
                    break Dispatched::Closed;
                }
            }
        };
        self.track_message_progress(id, buf, consumed_any, result == Dispatched::Paused);
        result
    }

    /// Between two messages: stop when the output is over the high-water mark (after moving
    /// queued answers into it and writing what the socket takes) or when the budget is spent
    /// and this connection holds more than its allowance. A write that fails here means the
    /// peer is gone: no more of its requests are run.
    fn gate_dispatch(&self, inner: &mut Inner, id: ConnId) -> Gate {
        let hwm = inner.config.output_high_water;
        let Some(conn) = inner.conn_mut(id) else { return Gate::Go };
        if conn.session.output_len() + self.shared.queued_bytes() > hwm {
            self.move_replies(inner);
            if let Some(conn) = inner.conn_mut(id) {
                if let Err(e) = conn.flush() {
                    return Gate::Failed(format!("write failed: {e}"));
                }
            }
        }
        match inner.pause_reason(id) {
            Some(pause) => Gate::Pause(pause),
            None => Gate::Go,
        }
    }

    /// A big request takes over the buffer it arrived in; what followed it stays buffered.
    fn serve_owned_request(&self, id: ConnId, buf: &mut InBuf, req: OwnedRequest) {
        let Some(message) = buf.take_through(req.frame_end) else {
            self.close_conn(id, ErrorKind::Limit, "out of memory for its input".into(), false);
            return;
        };
        // The buffer's memory moves from the connection's input to the request.
        self.inner.borrow_mut().sync_memory_with(id, buf);
        self.serve_request(id, req.msgid, RequestBytes::Owned { message, parts: req.parts }, req.ext);
    }

    /// A message reassembled from fragments: handled as if it had arrived whole. A request
    /// keeps the reassembly buffer, so does a value sent into a call (moved to the front of
    /// it); after anything else the buffer is kept for the connection's next big message.
    fn dispatch_reassembled(&self, id: ConnId, mut message: Vec<u8>) {
        let event = {
            let mut inner = self.inner.borrow_mut();
            let Some(conn) = inner.conn_mut(id) else { return };
            conn.session.decode_reassembled(&message)
        };
        match event {
            Some(Event::Request { msgid, method, params, ext }) => {
                let parts = Parts::locate(&message, method, params.args, params.kwargs);
                self.serve_request(id, msgid, RequestBytes::Owned { message, parts }, ext);
                return;
            }
            Some(Event::Input { msgid, item }) => {
                // The value is the message's last element: handed over where it is.
                let start = item.as_ptr() as usize - message.as_ptr() as usize;
                message.truncate(start + item.len());
                self.on_input(id, msgid, StreamEvent::Input(InputValue::at_end_of(message, start)));
                return;
            }
            Some(event) => self.dispatch_event(id, event),
            None => {}
        }
        if let Some(conn) = self.inner.borrow_mut().conn_mut(id) {
            conn.session.recycle(message);
        }
    }

    /// Keep the message-progress clock: a message whose first bytes are buffered must be
    /// complete within the message timeout. (Input held back by a pause is not the peer's
    /// delay, so the clock does not run then.)
    fn track_message_progress(&self, id: ConnId, buf: &InBuf, consumed_any: bool, paused: bool) {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let watch = inner.config.message_timeout.is_some();
        let Some(conn) = inner.conn_mut(id) else { return };
        if buf.is_empty() || paused {
            conn.message_started = None;
        } else if consumed_any || conn.message_started.is_none() {
            conn.message_started = Some(Instant::now());
        }
        if watch && (conn.message_started.is_some() || conn.session.is_reassembling()) {
            inner.arm_housekeeping();
        }
    }
}

enum Gate {
    Go,
    Pause(Pause),
    /// The peer is gone (a write failed).
    Failed(String),
}

enum Prepared {
    /// Dispatch what is buffered (left by a pause) before reading.
    Dispatch(InBuf),
    Read(InBuf, ReadOutcome),
    NoRoom(InBuf, NoRoom),
    Stop,
}

impl super::Conn {
    /// Bytes this connection holds: its input buffer and session (charged by the loop) and
    /// what its requests hold (each charges the budget itself; their payloads are in the
    /// account, their fixed overhead is counted here from the session's unanswered count).
    pub(super) fn held(&self) -> usize {
        self.charged + self.account.held() + self.session.unanswered() * super::budget::REQUEST_OVERHEAD
    }
}

/// The account a new connection's requests charge.
pub(super) fn new_account(shared: Arc<super::request::Shared>) -> Arc<super::budget::ConnAccount> {
    Arc::new(super::budget::ConnAccount::new(shared))
}
