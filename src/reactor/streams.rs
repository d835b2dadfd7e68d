//! The joint extension in the reactor: serving extended calls (items streamed to the caller,
//! values sent in, cancellation, deadlines) and making them (items as they arrive, sending
//! into a call, pulling a stream from a blocking loop).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::request::{Request, StreamEvent, StreamShared, StreamState};
use super::timers::{self, TimerKind};
use super::{send_error, CallId, Completion, ConnId, Context, LogLevel, PendingCall, Response};
use crate::codec::call_flags;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::output::Payload;
use crate::protocol::{rpc_error, Event, ExtCall, SendError};

/// Receives what happens to one of our extended calls before it completes.
pub type CallEventHandler = Box<dyn FnMut(&Context, CallId, CallEvent<'_>)>;

/// Receives what happens to a peer's extended call we serve (loop thread).
pub type StreamHandler = Rc<dyn Fn(&Context, &StreamEvent)>;

/// Something that happened to one of our extended calls.
#[derive(Debug)]
pub enum CallEvent<'a> {
    /// An item the callee streamed (one encoded object, borrowed for the call).
    Item(&'a [u8]),
    /// The callee granted credit: `send` may be tried again after `SendStatus::WouldBlock`.
    Writable,
}

/// How to make a call with [`Context::call_with`].
#[derive(Default)]
pub struct CallOptions {
    /// Fails the call locally after this long; an extended callee gets it as its deadline.
    pub timeout: Option<Duration>,
    /// Keyword params (one encoded map).
    pub kwargs: Option<Vec<u8>>,
    /// The call takes values sent into it ([`Context::send`], then [`Context::end_input`]).
    pub client_stream: bool,
    /// Items the callee may stream before we grant more (0: the context's default window).
    pub window: u32,
    /// Items and send credit, as they come.
    pub on_event: Option<CallEventHandler>,
    /// Report consumed items with [`Context::grant`] instead of after each `Item` event
    /// (for consumers slower than the loop).
    pub manual_credit: bool,
    /// Extra flags for the callee (`codec::call_flags`).
    pub flags: u32,
}

/// What [`Context::send`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    Sent,
    /// No credit: wait for `CallEvent::Writable` and try again.
    WouldBlock,
}

pub(super) struct StreamEntry {
    pub(super) shared: Arc<StreamShared>,
    handler: Option<StreamHandler>,
    /// Values delivered to `handler` are credited by [`Context::grant_inputs`], not when it
    /// returns.
    manual_credit: bool,
}

impl Context {
    /// A peer's extended call arrives: its shared state, and its deadline.
    pub(super) fn open_stream(&self, conn: ConnId, msgid: u32, ext: ExtCall) -> Arc<StreamShared> {
        let shared = StreamShared::new(ext.window);
        let mut inner = self.inner.borrow_mut();
        inner.streams.insert((conn, msgid), StreamEntry { shared: shared.clone(), handler: None, manual_credit: false });
        if ext.deadline_ms > 0 {
            inner.timers.add(timers::after(Duration::from_millis(ext.deadline_ms as u64)), TimerKind::Deadline { conn, msgid });
        }
        shared
    }

    /// Deliver a served call's events to `handler` (on the loop thread) instead of queueing
    /// them for `Request::next_input`. Inputs already queued are delivered at once.
    pub fn set_stream_handler(&self, conn: ConnId, msgid: u32, handler: Option<StreamHandler>) -> Result<()> {
        let queued = {
            let mut inner = self.inner.borrow_mut();
            let entry = inner.streams.get_mut(&(conn, msgid)).ok_or_else(|| Error::new(ErrorKind::State, "no such running extended call"))?;
            entry.handler = handler.clone();
            entry.shared.take_inputs()
        };
        if let Some(h) = handler {
            for event in queued {
                self.deliver_input(conn, msgid, &h, event);
            }
        }
        Ok(())
    }

    /// Credit the values delivered to a served call's stream handler with
    /// [`grant_inputs`](Self::grant_inputs) instead of when the handler returns (for consumers
    /// slower than the loop: the caller then waits instead of the application buffering).
    /// Values pulled with `Request::next_input` are credited as they are pulled either way.
    /// Set it before [`set_stream_handler`](Self::set_stream_handler), which delivers the
    /// inputs already queued at once. `State` once the call ended; `Unsupported` for a stock
    /// request.
    pub fn set_manual_input_credit(&self, req: &Request, enabled: bool) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        running_stream(&mut inner, req)?.manual_credit = enabled;
        Ok(())
    }

    /// With manual input credit: `n` values sent into the served call `req` were consumed,
    /// its caller may send that many more (credit goes out once half the window is consumed,
    /// as for [`grant`](Self::grant)). `State` once the call ended; `Unsupported` for a stock
    /// request.
    pub fn grant_inputs(&self, req: &Request, n: u32) -> Result<()> {
        let (conn, msgid) = (req.conn(), req.msgid());
        {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            running_stream(inner, req)?;
            if let Some(c) = inner.conn_mut(conn) {
                c.session.inputs_consumed(msgid, n);
            }
            inner.mark_dirty(conn);
        }
        self.wake_if_outside();
        Ok(())
    }

    /// Run the handler on `event`; an input's buffer is kept for the next big message the
    /// connection receives (the handler only borrowed it). The input is credited back to the
    /// caller unless the call takes manual credit (the flag as the handler left it).
    fn deliver_input(&self, conn: ConnId, msgid: u32, handler: &StreamHandler, event: StreamEvent) {
        handler(self, &event);
        if let StreamEvent::Input(value) = event {
            let mut inner = self.inner.borrow_mut();
            let manual = inner.streams.get(&(conn, msgid)).is_some_and(|e| e.manual_credit);
            if let Some(c) = inner.conn_mut(conn) {
                if !manual {
                    c.session.inputs_consumed(msgid, 1);
                }
                c.session.recycle(value.into_buffer());
            }
            inner.mark_dirty(conn);
        }
    }

    fn stream_entry(&self, conn: ConnId, msgid: u32) -> Option<(Arc<StreamShared>, Option<StreamHandler>)> {
        self.inner.borrow().streams.get(&(conn, msgid)).map(|e| (e.shared.clone(), e.handler.clone()))
    }

    pub(super) fn dispatch_stream_event(&self, id: ConnId, event: Event<'_, PendingCall>) {
        match event {
            Event::Item { msgid, item } => self.on_call_event(id, msgid, CallEvent::Item(item)),
            Event::SendCredit { msgid } => self.on_call_event(id, msgid, CallEvent::Writable),
            Event::Input { msgid, item } => self.on_input(id, msgid, StreamEvent::Input(item.to_vec().into())),
            Event::InputEnd { msgid } => self.on_input(id, msgid, StreamEvent::InputEnd),
            Event::Thrown { msgid, error } => self.on_input(id, msgid, StreamEvent::Thrown(error.to_vec())),
            Event::YieldCredit { msgid, n } => {
                let Some((shared, handler)) = self.stream_entry(id, msgid) else { return };
                if shared.add_credit(n) {
                    if let Some(h) = handler {
                        h(self, &StreamEvent::Writable);
                    }
                }
            }
            Event::CancelRequested { msgid } => self.end_served_call(id, msgid, StreamState::Cancelled),
            _ => {}
        }
    }

    pub(super) fn on_input(&self, id: ConnId, msgid: u32, event: StreamEvent) {
        let Some((shared, handler)) = self.stream_entry(id, msgid) else { return };
        match handler {
            Some(h) => self.deliver_input(id, msgid, &h, event),
            None => shared.queue_input(event),
        }
    }

    /// A served call ends without its handler: cancelled by the caller, or past its deadline.
    fn end_served_call(&self, conn: ConnId, msgid: u32, state: StreamState) {
        let Some(entry) = self.inner.borrow_mut().streams.remove(&(conn, msgid)) else { return };
        if !entry.shared.end(state) {
            return; // the handler answered first; that answer stands
        }
        let (code, text): (i64, &[u8]) = match state {
            StreamState::TimedOut => (rpc_error::DEADLINE_EXCEEDED, b"the call's deadline passed"),
            StreamState::Closed => (rpc_error::CANCELLED, b"the caller went away"),
            _ => (rpc_error::CANCELLED, b"cancelled by the caller"),
        };
        {
            let mut inner = self.inner.borrow_mut();
            if let Some(c) = inner.conn_mut(conn) {
                c.session.finish_ext_call(msgid, code, text);
            }
            inner.mark_dirty(conn);
        }
        self.log(LogLevel::Debug, || format!("{conn}: call {msgid} ended: {state:?}"));
        if let Some(h) = entry.handler {
            h(self, &StreamEvent::Ended(state));
        }
    }

    /// End every served extended call of a connection (its peer went away).
    pub(super) fn end_served_calls(&self, conn: ConnId, state: StreamState) {
        let msgids: Vec<u32> = self.inner.borrow().streams.keys().filter(|(c, _)| *c == conn).map(|(_, m)| *m).collect();
        for msgid in msgids {
            self.end_served_call(conn, msgid, state);
        }
    }

    pub(super) fn deadline_passed(&self, conn: ConnId, msgid: u32) {
        self.end_served_call(conn, msgid, StreamState::TimedOut);
    }

    /// An item or credit for one of our calls: run its event handler (taken out of the
    /// pending call meanwhile, so the handler may use the context freely).
    fn on_call_event(&self, conn: ConnId, msgid: u32, event: CallEvent<'_>) {
        let taken = {
            let mut inner = self.inner.borrow_mut();
            inner.conn_mut(conn).and_then(|c| c.session.pending_call_mut(msgid)).map(|p| (p.on_event.take(), p.seq, p.manual_credit))
        };
        let Some((handler, seq, manual)) = taken else { return };
        let is_item = matches!(event, CallEvent::Item(_));
        let call = CallId { conn, msgid, seq };
        let handler = match handler {
            Some(mut h) => {
                h(self, call, event);
                Some(h)
            }
            None => None,
        };
        let mut inner = self.inner.borrow_mut();
        let Some(c) = inner.conn_mut(conn) else { return };
        if let Some(p) = c.session.pending_call_mut(msgid) {
            if p.seq == seq && p.on_event.is_none() {
                p.on_event = handler;
            }
        }
        if is_item && !manual {
            c.session.items_consumed(msgid, 1);
            inner.mark_dirty(conn);
        }
    }

    /// Call with options: keyword params, a deadline, streaming both ways. To a joint peer
    /// this is an extended call; to a stock peer a stock request (and streaming into it is
    /// refused with `Unsupported`). `done` runs exactly once, as for [`Context::call`].
    pub fn call_with(&self, id: ConnId, method: &[u8], args: &[u8], opts: CallOptions, done: Completion) -> Result<CallId> {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let seq = inner.next_call_seq;
        let default_window = inner.config.limits.ext.window;
        let room = inner.shared.budget.limit().saturating_sub(inner.shared.budget.used());
        let Some(conn) = inner.conns.get_mut(id.index as usize).filter(|c| c.id == id) else {
            return Err(Error::new(ErrorKind::State, "no such connection"));
        };
        conn.admit_call()?;
        conn.admit_waiting(method.len() + args.len() + opts.kwargs.as_ref().map_or(0, |k| k.len()) + 32, room)?;
        let window = if opts.window == 0 { default_window } else { opts.window };
        let mut flags = opts.flags | call_flags::ASYNC_FLOW;
        if opts.client_stream {
            flags |= call_flags::CLIENT_STREAM;
        }
        let deadline_ms = opts.timeout.map_or(0, |t| t.as_millis().clamp(1, u32::MAX as u128) as u32);
        let pending = PendingCall {
            seq,
            timed: opts.timeout.is_some(),
            deadline: opts.timeout.map(timers::after),
            done,
            on_event: opts.on_event,
            manual_credit: opts.manual_credit,
        };
        let msgid =
            conn.session.call_ext(method, args, opts.kwargs.as_deref(), flags, deadline_ms, window, pending).map_err(|(e, _)| send_error(e))?;
        if conn.waits_for_reconnect() {
            inner.sync_memory(id);
        }
        inner.next_call_seq += 1;
        inner.arm_keepalive();
        if let Some(t) = opts.timeout {
            inner.timers.add(timers::after(t), TimerKind::CallTimeout { conn: id, msgid, seq });
        }
        inner.mark_dirty(id);
        drop(guard);
        self.wake_if_outside();
        Ok(CallId { conn: id, msgid, seq })
    }

    fn with_call_session<T>(
        &self,
        call: CallId,
        f: impl FnOnce(&mut crate::protocol::Session<PendingCall>) -> std::result::Result<T, SendError>,
    ) -> Result<T> {
        self.with_call_conn(call, |conn| f(&mut conn.session))
    }

    /// Run `f` on the connection of our running `call`; mark it for a flush if `f` succeeds.
    fn with_call_conn<T>(&self, call: CallId, f: impl FnOnce(&mut super::Conn) -> std::result::Result<T, SendError>) -> Result<T> {
        let mut inner = self.inner.borrow_mut();
        let conn = inner.conn_mut(call.conn).ok_or_else(|| Error::new(ErrorKind::State, "no such connection"))?;
        if conn.session.pending_call(call.msgid).is_none_or(|p| p.seq != call.seq) {
            return Err(Error::new(ErrorKind::State, "the call is not running"));
        }
        let r = f(conn).map_err(send_error)?;
        inner.mark_dirty(call.conn);
        drop(inner);
        self.wake_if_outside();
        Ok(r)
    }

    /// Send `item` (one encoded object) into our running call (made with `client_stream`).
    pub fn send(&self, call: CallId, item: &[u8]) -> Result<SendStatus> {
        let shared = &self.shared;
        self.send_with(call, |s| {
            // A big item is encoded into a recycled buffer, if the call can take it now.
            let reuse = if item.len() >= super::spares::SPARE_MIN && s.send_credit(call.msgid) > 0 {
                shared.spares.take(&shared.budget, item.len() + 16)
            } else {
                None
            };
            s.send_input_in(call.msgid, item, reuse.unwrap_or_default())
        })
    }

    /// Send a bin value of the bytes `data[range]` into our running `call` without copying
    /// them: they are written from `data`, which may serve any number of values and calls
    /// (an upload from a cache, say). Like [`send`](Self::send) otherwise. While queued, the
    /// bytes count in the memory budget only if the queue holds the last reference to `data`
    /// (memory the caller keeps is the caller's).
    pub fn send_bin_shared(&self, call: CallId, data: Arc<Vec<u8>>, range: std::ops::Range<usize>) -> Result<SendStatus> {
        let body = Payload::new(data, range).ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "range outside the buffer"))?;
        self.send_with(call, |s| s.send_bin_shared(call.msgid, body))
    }

    /// Run `send` (one SEND into `call`) on the call's session, unless the connection's
    /// output holds `output_high_water` bytes or more beyond its biggest message (one big
    /// message in transfer is not a backlog, as for reading): a value sent now would only
    /// pile up, and a fast sender would queue its whole window. Then the call is told
    /// `Writable` once that backlog drains to half (`Inner::senders_to_wake`). A call that is
    /// not running, or not extended, gets its error as without the mark.
    fn send_with(
        &self,
        call: CallId,
        send: impl FnOnce(&mut crate::protocol::Session<PendingCall>) -> std::result::Result<(), SendError>,
    ) -> Result<SendStatus> {
        let hwm = self.inner.borrow().config.output_high_water;
        let sent = self.with_call_conn(call, |conn| {
            if conn.session.is_extended_call(call.msgid) && conn.session.output_backlog() >= hwm {
                if !conn.send_blocked.contains(&call.msgid) {
                    conn.send_blocked.push(call.msgid);
                }
                return Err(SendError::WouldBlock);
            }
            send(&mut conn.session)
        });
        match sent {
            Ok(()) => Ok(SendStatus::Sent),
            Err(e) if e.kind == ErrorKind::Limit => Ok(SendStatus::WouldBlock),
            Err(e) => Err(e),
        }
    }

    /// No more values will be sent into `call`.
    pub fn end_input(&self, call: CallId) -> Result<()> {
        self.with_call_session(call, |s| s.end_input(call.msgid))
    }

    /// Throw `error` (one encoded object) into the running `call`; its handler decides what
    /// happens next.
    pub fn throw(&self, call: CallId, error: &[u8]) -> Result<()> {
        self.with_call_session(call, |s| s.throw_into(call.msgid, error))
    }

    /// With `manual_credit`: `n` items were consumed, the callee may send that many more.
    pub fn grant(&self, call: CallId, n: u32) -> Result<()> {
        self.with_call_session(call, |s| {
            s.items_consumed(call.msgid, n);
            Ok(())
        })
    }

    /// Whether `call` runs as an extended call (false to a stock peer, and while the
    /// negotiation is still under way).
    pub fn is_extended_call(&self, call: CallId) -> bool {
        self.inner.borrow_mut().conn_mut(call.conn).is_some_and(|c| c.session.is_extended_call(call.msgid))
    }

    /// Call and pull the streamed items one by one with [`CallStream::next`] (blocking; not
    /// from a callback). Credit is granted as items are pulled, so a slow consumer slows the
    /// producer instead of buffering.
    pub fn call_stream(&self, id: ConnId, method: &[u8], args: &[u8], mut opts: CallOptions) -> Result<CallStream> {
        let state: Rc<RefCell<PullState>> = Rc::default();
        let on_items = state.clone();
        let on_done = state.clone();
        opts.manual_credit = true;
        opts.on_event = Some(Box::new(move |_ctx: &Context, _call: CallId, event: CallEvent<'_>| {
            if let CallEvent::Item(item) = event {
                // An item can be as big as a message: copied fallibly; if memory is out the
                // stream ends with that error rather than skip the item.
                let mut st = on_items.borrow_mut();
                if st.lost {
                    return; // nothing after a lost item is delivered
                }
                match super::budget::try_to_vec(item) {
                    Some(copy) => st.items.push_back(copy),
                    None => st.lost = true,
                }
            }
        }));
        let call = self.call_with(
            id,
            method,
            args,
            opts,
            Box::new(move |_ctx: &Context, r: Response<'_>| {
                on_done.borrow_mut().done = Some(match r.outcome {
                    Ok(v) => super::budget::try_to_vec(v).ok_or_else(|| (Error::new(ErrorKind::Limit, "out of memory for the result"), Vec::new())),
                    Err(e) => Err((Error::new(e.kind, e.message), e.error.to_vec())),
                });
            }),
        )?;
        Ok(CallStream { call, state })
    }
}

/// The entry of the served call `req` while it runs (not one that reuses its msgid after it
/// ended).
fn running_stream<'a>(inner: &'a mut super::Inner, req: &Request) -> Result<&'a mut StreamEntry> {
    let Some(shared) = req.stream_shared() else { return Err(Error::new(ErrorKind::Unsupported, "not an extended call")) };
    match inner.streams.get_mut(&(req.conn(), req.msgid())) {
        Some(e) if Arc::ptr_eq(&e.shared, shared) && shared.state() == StreamState::Active => Ok(e),
        _ => Err(Error::new(ErrorKind::State, "the call is not running")),
    }
}

#[derive(Default)]
struct PullState {
    items: VecDeque<Vec<u8>>,
    done: Option<std::result::Result<Vec<u8>, (Error, Vec<u8>)>>,
    /// An item could not be copied (out of memory): the stream ends with that error.
    lost: bool,
}

/// One streamed item, or the end of the call with its result.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamItem {
    Item(Vec<u8>),
    Done(Vec<u8>),
}

/// A call whose items are pulled (see [`Context::call_stream`]).
pub struct CallStream {
    call: CallId,
    state: Rc<RefCell<PullState>>,
}

impl CallStream {
    pub fn call_id(&self) -> CallId {
        self.call
    }

    /// The next item, or `Done(result)` once, then `Err(State)`. Waits up to `timeout`
    /// (`None`: until the call ends); `Ok(None)` on timeout. A failed call gives its error
    /// (and, for `Remote`, the peer's error object).
    pub fn next(&self, ctx: &Context, timeout: Option<Duration>) -> std::result::Result<Option<StreamItem>, (Error, Vec<u8>)> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let item = self.state.borrow_mut().items.pop_front();
            if let Some(item) = item {
                // Credit only matters while the call runs; a finished call ignores it.
                let _ = ctx.grant(self.call, 1);
                return Ok(Some(StreamItem::Item(item)));
            }
            // Items before the lost one were delivered above; then the stream ends.
            if self.state.borrow().lost {
                self.state.borrow_mut().done = None;
                ctx.cancel(self.call);
                return Err((Error::new(ErrorKind::Limit, "out of memory for a streamed item; the call was cancelled"), Vec::new()));
            }
            if let Some(done) = self.state.borrow_mut().done.take() {
                return done.map(|r| Some(StreamItem::Done(r)));
            }
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    Some(left)
                }
                None => None,
            };
            ctx.wait(wait).map_err(|e| (e, Vec::new()))?;
        }
    }
}
