//! Incoming requests as owned tokens, and the thread-safe path their replies take.
//!
//! A [`Request`] may be answered inline in its handler, later from the loop thread, or from
//! any other thread. Every reply is encoded by the answering thread into the context's
//! [`Shared`] reply queue; the loop thread moves queued replies into the connections' output
//! when it next runs `process()` (which it does right after each handler returns, so inline
//! replies cost no extra wake-up). Dropping an unanswered request sends an error reply.
//!
//! With the joint extension a request may also stream items back (`yield_item`, within the
//! caller's credit) and receive values sent into it, either through an event handler on the
//! loop thread or by pulling them (`next_input`, any thread). Its [`StreamShared`] is the
//! state both threads see: credit, queued inputs, and whether the call was cancelled.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::codec::{self, FrameLimits, PayloadError};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::output::Payload;
use crate::protocol::{rpc_error, ExtCall};

use super::budget::{Budget, ConnAccount, REQUEST_OVERHEAD, SMALL};
use super::ConnId;

/// State shared between the loop thread and threads that answer requests.
pub struct Shared {
    pub(super) waker: mio::Waker,
    /// A wake-up is already pending; saves eventfd writes when many replies arrive at once.
    woken: AtomicBool,
    /// Bytes in the queue (so the loop can notice a flood of answers within one read).
    queued_bytes: std::sync::atomic::AtomicUsize,
    queue: Mutex<ReplyQueue>,
    /// The context's memory budget (charged from any thread).
    pub(super) budget: Budget,
    /// Big buffers of written messages, for the next big ones (any thread).
    pub(super) spares: super::spares::Spares,
}

/// Replies waiting for the loop thread. Small replies share one byte arena (no allocation per
/// reply); a big one keeps its own buffer so it is moved, not copied.
#[derive(Default)]
pub(super) struct ReplyQueue {
    pub bytes: Vec<u8>,
    pub entries: Vec<QueuedReply>,
    /// Budget charged for these entries; released once they are moved into the connections.
    pub charged: usize,
}

pub(super) struct QueuedReply {
    pub conn: ConnId,
    pub msgid: u32,
    pub kind: QueuedKind,
    pub body: ReplyBody,
}

/// What a queued entry is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum QueuedKind {
    /// The final response to request `msgid`.
    Final,
    /// Another message of the call (a YIELD).
    Message,
    /// The application consumed this many values sent into the call (grant more credit).
    InputsConsumed(u32),
}

pub(super) enum ReplyBody {
    Arena {
        start: usize,
        end: usize,
    },
    Owned(Vec<u8>),
    /// An envelope and the handler's own buffer after it (written from where it is).
    Parts {
        head: Vec<u8>,
        body: Payload,
    },
}

const OWN_BUFFER_ABOVE: usize = 64 << 10;

thread_local! {
    /// The `Shared` of the context whose `process()` runs on this thread, if any.
    static PROCESSING: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
}

impl Shared {
    pub(super) fn new(waker: mio::Waker, budget: usize) -> Self {
        Shared {
            waker,
            woken: AtomicBool::new(false),
            queued_bytes: Default::default(),
            queue: Mutex::new(ReplyQueue::default()),
            budget: Budget::new(budget),
            // An eighth of the budget at most is kept for reuse.
            spares: super::spares::Spares::new(budget / 8),
        }
    }

    /// Give back budget from any thread; wakes the loop if that may let stopped connections
    /// be read again.
    pub(super) fn release(&self, n: usize) {
        if self.budget.release(n) || n >= SMALL {
            self.wake_unless_processing();
        }
    }

    /// Make the context fd readable so the host calls `process()` (any thread).
    pub fn wake(&self) {
        if !self.woken.swap(true, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }

    /// Called at the start of `process()`, before the queue is drained.
    pub(super) fn clear_woken(&self) {
        self.woken.store(false, Ordering::SeqCst);
    }

    /// Wake unless this thread is inside this context's `process()`, which will look at the
    /// queue before it returns anyway.
    fn wake_unless_processing(&self) {
        let inside = PROCESSING.with(|p| std::ptr::eq(p.get(), self));
        if !inside {
            self.wake();
        }
    }

    /// Mark this thread as running `process()` for this context; undone by the guard's drop.
    pub(super) fn enter_processing(&self) -> ProcessingGuard {
        let previous = PROCESSING.with(|p| p.replace(self));
        ProcessingGuard { previous }
    }

    /// Queue a message for the loop thread, charging the budget for it. A message bigger than
    /// the [`SMALL`] allowance is queued only if `checked` is false or it fits the budget;
    /// returns whether it was queued.
    fn push(&self, conn: ConnId, msgid: u32, kind: QueuedKind, encode: impl FnOnce(&mut Vec<u8>), size_hint: usize, checked: bool) -> bool {
        let charge = size_hint + 32;
        if charge > SMALL && checked {
            if !self.budget.try_charge(charge) {
                return false;
            }
        } else {
            self.budget.charge(charge);
        }
        let size = if size_hint > OWN_BUFFER_ABOVE {
            let mut own = self.spares.take(&self.budget, size_hint + 16).unwrap_or_default();
            if own.try_reserve_exact(size_hint + 16).is_err() {
                self.release(charge);
                return false;
            }
            encode(&mut own);
            let size = own.len();
            let mut q = self.lock();
            q.entries.push(QueuedReply { conn, msgid, kind, body: ReplyBody::Owned(own) });
            q.charged += charge;
            size
        } else {
            let mut q = self.lock();
            let start = q.bytes.len();
            encode(&mut q.bytes);
            let end = q.bytes.len();
            q.entries.push(QueuedReply { conn, msgid, kind, body: ReplyBody::Arena { start, end } });
            q.charged += charge;
            end - start
        };
        self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        self.wake_unless_processing();
        true
    }

    /// Queue a message made of `head` and the handler's buffer `body`, if it fits in the
    /// budget (bodies within the small allowance always do); returns the body if not.
    fn push_parts(&self, conn: ConnId, msgid: u32, kind: QueuedKind, head: Vec<u8>, body: Payload) -> std::result::Result<(), Payload> {
        let size = head.len() + body.len();
        // A shared buffer (held elsewhere too) costs nothing more for being queued.
        let charge = head.len() + body.memory() + 32;
        if charge > SMALL {
            if !self.budget.try_charge(charge) {
                return Err(body);
            }
        } else {
            self.budget.charge(charge);
        }
        let mut q = self.lock();
        q.entries.push(QueuedReply { conn, msgid, kind, body: ReplyBody::Parts { head, body } });
        q.charged += charge;
        drop(q);
        self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        self.wake_unless_processing();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplyQueue> {
        // A panic while holding this lock cannot leave the queue inconsistent (pushes are
        // append-only), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Swap the queue with `spare` (an empty queue whose capacity is reused).
    pub(super) fn take_queue(&self, spare: &mut ReplyQueue) {
        let mut q = self.lock();
        std::mem::swap(&mut *q, spare);
        self.queued_bytes.store(0, Ordering::Relaxed);
    }

    /// Bytes of answers queued for the loop thread.
    pub(super) fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }
}

pub(super) struct ProcessingGuard {
    previous: *const Shared,
}

impl Drop for ProcessingGuard {
    fn drop(&mut self) {
        PROCESSING.with(|p| p.set(self.previous));
    }
}

/// Where an extended call stands, as both the loop thread and the handler's thread see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    Active,
    /// The application answered (the final response is queued).
    Answered,
    /// The caller cancelled the call; it was answered with a CANCELLED error.
    Cancelled,
    /// The deadline passed; it was answered with a DEADLINE_EXCEEDED error.
    TimedOut,
    /// The connection closed.
    Closed,
}

/// Something that happened to a running extended call, for its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A value the caller sent in (one encoded object).
    Input(InputValue),
    /// The caller will send nothing more.
    InputEnd,
    /// The caller threw this error object into the call.
    Thrown(Vec<u8>),
    /// Credit arrived after `yield_item` said `WouldBlock`.
    Writable,
    /// The call ended without the handler: cancelled, timed out, or its connection closed.
    /// Answering now does nothing.
    Ended(StreamState),
}

/// A value sent into a call: one encoded object, at the end of the buffer it arrived in
/// (a big value is handed over in the message that carried it, not copied out of it).
/// Derefs to the value's bytes.
#[derive(Clone)]
pub struct InputValue {
    buf: Vec<u8>,
    start: usize,
}

impl InputValue {
    /// The value that is `buf[start..]`.
    pub(super) fn at_end_of(buf: Vec<u8>, start: usize) -> InputValue {
        debug_assert!(start <= buf.len());
        InputValue { buf, start }
    }

    /// The whole buffer the value is the end of, the message's envelope before it (for
    /// reusing the memory; `to_vec()` copies just the value).
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }
}

impl From<Vec<u8>> for InputValue {
    fn from(buf: Vec<u8>) -> InputValue {
        InputValue { buf, start: 0 }
    }
}

impl std::ops::Deref for InputValue {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

impl AsRef<[u8]> for InputValue {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for InputValue {
    fn eq(&self, other: &InputValue) -> bool {
        **self == **other
    }
}

impl Eq for InputValue {}

impl std::fmt::Debug for InputValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InputValue({} bytes)", self.len())
    }
}

/// Shared between the loop thread and whichever thread holds the request.
pub struct StreamShared {
    flow: Mutex<Flow>,
    cond: Condvar,
}

struct Flow {
    yield_credit: u32,
    state: StreamState,
    /// Inputs waiting to be pulled (when no event handler is registered).
    inputs: VecDeque<StreamEvent>,
    /// `yield_item` hit zero credit: say `Writable` when credit comes.
    want_writable: bool,
}

impl StreamShared {
    pub(super) fn new(yield_credit: u32) -> Arc<Self> {
        Arc::new(StreamShared {
            flow: Mutex::new(Flow { yield_credit, state: StreamState::Active, inputs: VecDeque::new(), want_writable: false }),
            cond: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Flow> {
        self.flow.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for a change of `f`, until `deadline` (`None`: forever); `None` once it passed.
    fn wait<'a>(&self, f: MutexGuard<'a, Flow>, deadline: Option<Instant>) -> Option<MutexGuard<'a, Flow>> {
        Some(match deadline {
            None => self.cond.wait(f).unwrap_or_else(|p| p.into_inner()),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                self.cond.wait_timeout(f, left).unwrap_or_else(|p| p.into_inner()).0
            }
        })
    }

    pub fn state(&self) -> StreamState {
        self.lock().state
    }

    /// Loop thread: the caller granted `n` more items. Returns true if a `Writable` is due.
    pub(super) fn add_credit(&self, n: u32) -> bool {
        let mut f = self.lock();
        f.yield_credit = f.yield_credit.saturating_add(n);
        let due = std::mem::take(&mut f.want_writable);
        drop(f);
        self.cond.notify_all();
        due
    }

    /// Loop thread: take the inputs queued so far (an event handler was just registered).
    pub(super) fn take_inputs(&self) -> Vec<StreamEvent> {
        self.lock().inputs.drain(..).collect()
    }

    /// Loop thread: queue an input for a puller.
    pub(super) fn queue_input(&self, event: StreamEvent) {
        self.lock().inputs.push_back(event);
        self.cond.notify_all();
    }

    /// Loop thread: the call ends without the handler (cancel, deadline, close). Returns
    /// false if the handler had already answered (then nothing changes).
    pub(super) fn end(&self, state: StreamState) -> bool {
        let mut f = self.lock();
        if f.state != StreamState::Active {
            return false;
        }
        f.state = state;
        drop(f);
        self.cond.notify_all();
        true
    }
}

/// What [`Request::yield_item`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YieldStatus {
    Sent,
    /// No credit: wait for `StreamEvent::Writable` (or use `wait_writable`) and try again.
    WouldBlock,
}

/// A request from the peer, owned by the application until it is answered.
///
/// Answer it exactly once with [`reply`](Request::reply), [`reply_error`](Request::reply_error)
/// or [`reply_error_code`](Request::reply_error_code), from any thread. Dropping it unanswered
/// answers with a `NOT_ANSWERED` error, so the peer never waits forever.
pub struct Request {
    /// What the connection's requests hold, whether it is gone, and the context's shared
    /// state (where answers go).
    account: Arc<ConnAccount>,
    /// Budget charged for this request (released when it is dropped).
    charged: usize,
    conn: ConnId,
    msgid: u32,
    limits: FrameLimits,
    data: RequestData,
    answered: bool,
    /// Set for an extended call (joint extension).
    ext: Option<ExtCall>,
    stream: Option<Arc<StreamShared>>,
    /// Items yielded to a stock caller, which gets them as one array at the end.
    collected: Option<Collected>,
}

struct Collected {
    items: Vec<u8>,
    count: u32,
}

/// Where a request's method and params are, in the message that carried them.
pub(super) struct Parts {
    pub method: Range<usize>,
    /// `None`: no positional params (the peer sent a map or nil): an empty array.
    pub args: Option<Range<usize>>,
    pub kwargs: Option<Range<usize>>,
}

impl Parts {
    /// The ranges of `method`, `args` and `kwargs` within `message` (they are slices of it,
    /// except an `args` that is the shared empty array).
    pub fn locate(message: &[u8], method: &[u8], args: &[u8], kwargs: Option<&[u8]>) -> Parts {
        let base = message.as_ptr() as usize;
        let range = |part: &[u8]| -> Option<Range<usize>> {
            let start = (part.as_ptr() as usize).checked_sub(base)?;
            (start + part.len() <= message.len()).then(|| start..start + part.len())
        };
        Parts { method: range(method).unwrap_or(0..0), args: range(args), kwargs: kwargs.and_then(range) }
    }
}

/// A request's bytes: copied from the read buffer (small requests, most RPC calls), or the
/// whole message it came in, taken over without a copy (big ones); and where its parts are.
struct RequestData {
    storage: Storage,
    parts: Parts,
}

enum Storage {
    Copied(Bytes),
    Owned(Vec<u8>),
}

impl RequestData {
    #[inline]
    fn base(&self) -> &[u8] {
        match &self.storage {
            Storage::Copied(b) => b.as_slice(),
            Storage::Owned(v) => v,
        }
    }
}

/// How [`Request::new`] gets its bytes.
pub(super) enum RequestBytes<'a> {
    Borrowed { method: &'a [u8], args: &'a [u8], kwargs: Option<&'a [u8]> },
    Owned { message: Vec<u8>, parts: Parts },
}

impl RequestBytes<'_> {
    pub(super) fn method(&self) -> &[u8] {
        match self {
            RequestBytes::Borrowed { method, .. } => method,
            RequestBytes::Owned { message, parts } => &message[parts.method.clone()],
        }
    }
}

impl Request {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        account: Arc<ConnAccount>,
        conn: ConnId,
        msgid: u32,
        limits: FrameLimits,
        bytes: RequestBytes<'_>,
        ext: Option<(ExtCall, Arc<StreamShared>)>,
    ) -> Self {
        let (data, heap) = match bytes {
            RequestBytes::Borrowed { method, args, kwargs } => {
                let kw = kwargs.unwrap_or(&[]);
                let bytes = Bytes::concat(&[method, args, kw]);
                let heap = bytes.heap_len();
                let (m, a) = (method.len(), method.len() + args.len());
                let parts = Parts { method: 0..m, args: Some(m..a), kwargs: kwargs.map(|k| a..a + k.len()) };
                (RequestData { storage: Storage::Copied(bytes), parts }, heap)
            }
            RequestBytes::Owned { message, parts } => {
                let heap = message.capacity();
                (RequestData { storage: Storage::Owned(message), parts }, heap)
            }
        };
        // Held bytes count against the budget until the request is dropped; they came from
        // the connection, so they count as its memory too (it stops being read when the
        // budget is spent).
        let charged = REQUEST_OVERHEAD + heap;
        account.shared.budget.charge(charged);
        if heap > 0 {
            account.add(heap);
        }
        let (ext, stream) = match ext {
            Some((e, s)) => (Some(e), Some(s)),
            None => (None, None),
        };
        Request { account, charged, conn, msgid, limits, data, answered: false, ext, stream, collected: None }
    }

    /// The extended call's flags, deadline and window; `None` for a stock request.
    pub fn ext(&self) -> Option<ExtCall> {
        self.ext
    }

    /// The state shared with the loop thread; `None` for a stock request.
    pub(super) fn stream_shared(&self) -> Option<&Arc<StreamShared>> {
        self.stream.as_ref()
    }

    /// Where the extended call stands (`Active` for a stock request until answered).
    pub fn state(&self) -> StreamState {
        match &self.stream {
            Some(s) => s.state(),
            None if self.answered => StreamState::Answered,
            None if self.account.is_closed() => StreamState::Closed,
            None => StreamState::Active,
        }
    }

    /// Stream one item (one encoded object) to the caller. A stock caller gets all items as
    /// one array when the request is answered (the answer's own value is then dropped).
    pub fn yield_item(&mut self, item: &[u8]) -> Result<YieldStatus> {
        if let Some(done) = self.take_yield_credit(item)? {
            return Ok(done);
        }
        let msgid = self.msgid;
        if !self.account.shared.push(
            self.conn,
            msgid,
            QueuedKind::Message,
            |out| codec::encode_item(out, codec::TYPE_YIELD, msgid, item),
            item.len(),
            true,
        ) {
            return Err(self.yield_refused(item.len()));
        }
        Ok(YieldStatus::Sent)
    }

    /// Like [`yield_item`](Self::yield_item), taking the item's buffer: a big item is written
    /// to the caller from it, never copied.
    pub fn yield_vec(&mut self, item: Vec<u8>) -> Result<YieldStatus> {
        if item.len() < super::super::protocol::output::OWN_CHUNK_ABOVE {
            return self.yield_item(&item);
        }
        if let Some(done) = self.take_yield_credit(&item)? {
            return Ok(done);
        }
        let mut head = Vec::with_capacity(8);
        codec::encode_item(&mut head, codec::TYPE_YIELD, self.msgid, &[]);
        let size = item.len();
        if self.account.shared.push_parts(self.conn, self.msgid, QueuedKind::Message, head, Payload::from(item)).is_err() {
            return Err(self.yield_refused(size));
        }
        Ok(YieldStatus::Sent)
    }

    /// Stream a bin item of the bytes `data[range]` without copying them (the same buffer
    /// may serve any number of items and calls). To a stock caller the bytes are collected
    /// into the final array like any item.
    pub fn yield_bin_shared(&mut self, data: Arc<Vec<u8>>, range: std::ops::Range<usize>) -> Result<YieldStatus> {
        let body = Payload::new(data, range).ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "range outside the buffer"))?;
        let mut header = Vec::with_capacity(5);
        codec::write_bin_len(&mut header, body.len());
        if self.stream.is_none() || body.len() < super::super::protocol::output::OWN_CHUNK_ABOVE {
            let mut item = header;
            item.extend_from_slice(body.bytes());
            return self.yield_item(&item);
        }
        if body.len() + 32 > self.limits.max_message_size {
            return Err(Error::new(ErrorKind::TooLarge, "item larger than the message size limit"));
        }
        // The item is a bin of these bytes by construction: only the credit is checked.
        if let Some(done) = self.take_yield_credit(&[0xc0])? {
            return Ok(done);
        }
        let mut head = Vec::with_capacity(16);
        codec::encode_item(&mut head, codec::TYPE_YIELD, self.msgid, &header);
        let size = body.len();
        if self.account.shared.push_parts(self.conn, self.msgid, QueuedKind::Message, head, body).is_err() {
            return Err(self.yield_refused(size));
        }
        Ok(YieldStatus::Sent)
    }

    /// The checks before an item goes out, and its credit taken. `Some` if the item is
    /// already dealt with: collected for a stock caller, or no credit (`WouldBlock`).
    fn take_yield_credit(&mut self, item: &[u8]) -> Result<Option<YieldStatus>> {
        let limits = FrameLimits { max_message_size: self.limits.max_message_size.saturating_sub(16), ..self.limits };
        codec::validate_object(item, limits).map_err(|e| match e {
            PayloadError::TooLarge => Error::new(ErrorKind::TooLarge, "item larger than the message size limit"),
            _ => Error::new(ErrorKind::InvalidArgument, "item is not one valid MessagePack object"),
        })?;
        if self.answered {
            return Err(Error::new(ErrorKind::State, "the request was already answered"));
        }
        let Some(stream) = &self.stream else {
            let c = self.collected.get_or_insert_with(|| Collected { items: Vec::new(), count: 0 });
            if c.items.len() + item.len() + 16 > self.limits.max_message_size {
                return Err(Error::new(ErrorKind::TooLarge, "the items yielded to a stock caller exceed the message size limit"));
            }
            c.items.extend_from_slice(item);
            c.count += 1;
            return Ok(Some(YieldStatus::Sent));
        };
        let mut f = stream.lock();
        match f.state {
            StreamState::Active => {}
            other => return Err(ended_error(other)),
        }
        if f.yield_credit == 0 {
            f.want_writable = true;
            return Ok(Some(YieldStatus::WouldBlock));
        }
        f.yield_credit -= 1;
        Ok(None)
    }

    /// An item did not fit in the memory budget: give its credit back.
    fn yield_refused(&self, size: usize) -> Error {
        if let Some(stream) = &self.stream {
            stream.lock().yield_credit += 1;
        }
        budget_error(size, &self.account.shared.budget)
    }

    /// Block until `yield_item` may send again (credit), the call ends, or `timeout` passes.
    /// Returns whether there is credit. Finding none makes a `Writable` due when credit comes,
    /// as a `WouldBlock` from `yield_item` does, so an event handler can ask before it produces
    /// an item. For handlers on their own threads, or with a zero timeout on the loop thread.
    pub fn wait_writable(&self, timeout: Option<Duration>) -> Result<bool> {
        let Some(stream) = &self.stream else { return Ok(true) };
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut f = stream.lock();
        loop {
            if f.state != StreamState::Active {
                return Err(ended_error(f.state));
            }
            if f.yield_credit > 0 {
                return Ok(true);
            }
            f.want_writable = true;
            let Some(next) = stream.wait(f, deadline) else { return Ok(false) };
            f = next;
        }
    }

    /// Pull the next event of an extended call (an input, the end of input, a throw, or the
    /// end of the call), waiting up to `timeout` (`None`: forever). `Ok(None)` on timeout.
    /// For handlers that did not register an event handler; any thread.
    pub fn next_input(&self, timeout: Option<Duration>) -> Result<Option<StreamEvent>> {
        let Some(stream) = &self.stream else { return Ok(Some(StreamEvent::InputEnd)) };
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut f = stream.lock();
        loop {
            if let Some(event) = f.inputs.pop_front() {
                drop(f);
                if matches!(event, StreamEvent::Input(_)) {
                    self.account.shared.push(self.conn, self.msgid, QueuedKind::InputsConsumed(1), |_| {}, 0, false);
                }
                return Ok(Some(event));
            }
            if f.state != StreamState::Active && f.state != StreamState::Answered {
                return Ok(Some(StreamEvent::Ended(f.state)));
            }
            let Some(next) = stream.wait(f, deadline) else { return Ok(None) };
            f = next;
        }
    }

    pub fn conn(&self) -> ConnId {
        self.conn
    }

    pub fn msgid(&self) -> u32 {
        self.msgid
    }

    /// The method name as sent (str or bin; not necessarily UTF-8).
    pub fn method(&self) -> &[u8] {
        &self.data.base()[self.data.parts.method.clone()]
    }

    /// Positional params: one encoded MessagePack array.
    pub fn args(&self) -> &[u8] {
        self.data.parts.args.clone().map_or(codec::EMPTY_ARRAY, |r| &self.data.base()[r])
    }

    /// Keyword params: one encoded MessagePack map, when the peer sent a map as params.
    pub fn kwargs(&self) -> Option<&[u8]> {
        self.data.parts.kwargs.clone().map(|r| &self.data.base()[r])
    }

    /// Whether an answer of `bytes` would fit in the memory budget now. Answers beyond the
    /// 64 KiB allowance that do not fit are replaced by a RESOURCE_EXHAUSTED error, so a
    /// handler about to build a big answer can refuse before doing the work.
    pub fn fits(&self, bytes: usize) -> bool {
        let b = &self.account.shared.budget;
        let need = bytes.saturating_add(32);
        need <= SMALL || b.used().saturating_add(need) <= b.limit()
    }

    /// Whether the connection the request came on is gone (answering it does nothing).
    pub fn is_conn_closed(&self) -> bool {
        self.account.is_closed()
    }

    /// Answer with a result (one encoded MessagePack object). If `result` is not a valid
    /// object within the size limit, the peer gets an error reply instead and this returns
    /// the reason.
    pub fn reply(mut self, result: &[u8]) -> Result<()> {
        self.answer(Ok(result))
    }

    /// Answer with a result (one encoded MessagePack object) in a buffer the request takes:
    /// a big result is written to the peer from this buffer, never copied. Otherwise as
    /// [`reply`](Self::reply).
    pub fn reply_vec(mut self, result: Vec<u8>) -> Result<()> {
        if self.collected.is_some() || result.len() < super::super::protocol::output::OWN_CHUNK_ABOVE {
            return self.answer(Ok(&result));
        }
        if let Err(state) = self.claim_answer() {
            return Err(ended_error(state));
        }
        if let Some(e) = self.refuse_payload(&result) {
            return Err(e);
        }
        let msgid = self.msgid;
        self.answered = true;
        if self.account.is_closed() {
            return Ok(());
        }
        let mut head = Vec::with_capacity(8);
        codec::encode_response(&mut head, msgid, codec::NIL, &[]);
        self.send_parts(head, Payload::from(result))
    }

    /// Answer with a bin object of the bytes `data[range]`, without copying them: the same
    /// buffer may answer any number of requests (a file server's cache, say). The bytes are
    /// counted in the memory budget while they are queued.
    pub fn reply_bin_shared(mut self, data: Arc<Vec<u8>>, range: std::ops::Range<usize>) -> Result<()> {
        let body = Payload::new(data, range).ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "range outside the buffer"))?;
        if let Err(state) = self.claim_answer() {
            return Err(ended_error(state));
        }
        if body.len() + 32 > self.limits.max_message_size {
            let what = "reply larger than the message size limit";
            self.send_error_code_claimed(rpc_error::TOO_LARGE, what.as_bytes());
            return Err(Error::new(ErrorKind::TooLarge, what));
        }
        self.answered = true;
        if self.account.is_closed() {
            return Ok(());
        }
        let mut head = Vec::with_capacity(16);
        codec::encode_response(&mut head, self.msgid, codec::NIL, &[]);
        codec::write_bin_len(&mut head, body.len());
        self.send_parts(head, body)
    }

    /// Queue a final answer of `head` + `body` (already validated and claimed), or answer with
    /// RESOURCE_EXHAUSTED if it does not fit in the budget.
    fn send_parts(&mut self, head: Vec<u8>, body: Payload) -> Result<()> {
        let size = head.len() + body.len();
        if self.account.shared.push_parts(self.conn, self.msgid, QueuedKind::Final, head, body).is_err() {
            let e = budget_error(size, &self.account.shared.budget);
            self.send_error_code_claimed(rpc_error::RESOURCE_EXHAUSTED, e.message.as_bytes());
            return Err(e);
        }
        Ok(())
    }

    /// Answer with an error object (any one encoded MessagePack object).
    pub fn reply_error(mut self, error: &[u8]) -> Result<()> {
        self.answer(Err(error))
    }

    /// Answer with joint's `[code, message]` error object.
    pub fn reply_error_code(mut self, code: i64, message: &[u8]) -> Result<()> {
        if let Err(state) = self.claim_answer() {
            return Err(ended_error(state));
        }
        self.send_error_code_claimed(code, message);
        Ok(())
    }

    fn send_error_code_claimed(&mut self, code: i64, message: &[u8]) {
        let msgid = self.msgid;
        self.answered = true;
        if self.account.is_closed() {
            return; // nobody to tell
        }
        self.account.shared.push(
            self.conn,
            msgid,
            QueuedKind::Final,
            |out| {
                let mut err = Vec::with_capacity(message.len() + 10);
                codec::encode_error(&mut err, code, message);
                codec::encode_response(out, msgid, &err, codec::NIL);
            },
            message.len(),
            false,
        );
    }

    /// Claim the right to send the final answer: false if the call already ended without
    /// the handler (cancelled, timed out, closed).
    fn claim_answer(&mut self) -> std::result::Result<(), StreamState> {
        if let Some(stream) = &self.stream {
            let mut f = stream.lock();
            if f.state != StreamState::Active {
                self.answered = true;
                return Err(f.state);
            }
            f.state = StreamState::Answered;
        }
        Ok(())
    }

    fn answer(&mut self, outcome: std::result::Result<&[u8], &[u8]>) -> Result<()> {
        if let Err(state) = self.claim_answer() {
            return Err(ended_error(state));
        }
        if let (Some(c), Ok(_)) = (self.collected.take(), outcome) {
            // A stock caller of a streaming method: all items as one array.
            let mut array = Vec::with_capacity(c.items.len() + 5);
            codec::write_array_len(&mut array, c.count);
            array.extend_from_slice(&c.items);
            return self.send_final(Ok(&array));
        }
        self.send_final(outcome)
    }

    fn send_final(&mut self, outcome: std::result::Result<&[u8], &[u8]>) -> Result<()> {
        let payload = match outcome {
            Ok(p) | Err(p) => p,
        };
        if let Some(e) = self.refuse_payload(payload) {
            return Err(e);
        }
        let msgid = self.msgid;
        self.answered = true;
        if self.account.is_closed() {
            return Ok(()); // the peer is gone: skip the work
        }
        let queued = self.account.shared.push(
            self.conn,
            msgid,
            QueuedKind::Final,
            |out| match outcome {
                Ok(r) => codec::encode_response(out, msgid, codec::NIL, r),
                Err(e) => codec::encode_response(out, msgid, e, codec::NIL),
            },
            payload.len(),
            true,
        );
        if !queued {
            let e = budget_error(payload.len(), &self.account.shared.budget);
            self.send_error_code_claimed(rpc_error::RESOURCE_EXHAUSTED, e.message.as_bytes());
            return Err(e);
        }
        Ok(())
    }

    /// A payload that is not one valid object within the size limit (leaving room for the
    /// envelope) is answered with an error instead; returns that error.
    #[inline]
    fn refuse_payload(&mut self, payload: &[u8]) -> Option<Error> {
        let limits = FrameLimits { max_message_size: self.limits.max_message_size.saturating_sub(16), ..self.limits };
        let e = codec::validate_object(payload, limits).err()?;
        let (code, what, kind) = match e {
            PayloadError::TooLarge => (rpc_error::TOO_LARGE, "reply larger than the message size limit", ErrorKind::TooLarge),
            _ => (rpc_error::HANDLER_FAILED, "handler produced an invalid MessagePack reply", ErrorKind::InvalidArgument),
        };
        self.send_error_code_claimed(code, what.as_bytes());
        Some(Error::new(kind, what))
    }

    fn send_error_code(&mut self, code: i64, message: &[u8]) {
        if self.claim_answer().is_ok() {
            self.send_error_code_claimed(code, message);
        }
    }
}

/// A request's bytes: small ones (most RPC calls) live inline, so taking a request costs no
/// allocation beyond its handle.
enum Bytes {
    Inline { buf: [u8; INLINE], len: u8 },
    Heap(Vec<u8>),
}

const INLINE: usize = 64;

impl Bytes {
    fn concat(parts: &[&[u8]]) -> Self {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total <= INLINE {
            let mut buf = [0u8; INLINE];
            let mut at = 0;
            for p in parts {
                buf[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
            Bytes::Inline { buf, len: total as u8 }
        } else {
            let mut v = Vec::with_capacity(total);
            for p in parts {
                v.extend_from_slice(p);
            }
            Bytes::Heap(v)
        }
    }

    fn heap_len(&self) -> usize {
        match self {
            Bytes::Inline { .. } => 0,
            Bytes::Heap(v) => v.capacity(),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { buf, len } => &buf[..*len as usize],
            Bytes::Heap(v) => v,
        }
    }
}

fn ended_error(state: StreamState) -> Error {
    match state {
        StreamState::Cancelled => Error::new(ErrorKind::Cancelled, "the caller cancelled the call"),
        StreamState::TimedOut => Error::new(ErrorKind::Timeout, "the call's deadline passed"),
        StreamState::Closed => Error::new(ErrorKind::Closed, "the connection closed"),
        StreamState::Answered | StreamState::Active => Error::new(ErrorKind::State, "the request was already answered"),
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.answered {
            self.send_error_code(rpc_error::NOT_ANSWERED, b"the request was released without an answer");
        }
        if self.charged > REQUEST_OVERHEAD {
            self.account.sub(self.charged - REQUEST_OVERHEAD);
        }
        self.account.shared.release(self.charged);
    }
}

/// A message that does not fit in what is left of the memory budget.
fn budget_error(size: usize, budget: &Budget) -> Error {
    Error::new(ErrorKind::Limit, format!("{size} bytes do not fit in the memory budget ({} of {} bytes in use)", budget.used(), budget.limit()))
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("conn", &self.conn)
            .field("msgid", &self.msgid)
            .field("method", &String::from_utf8_lossy(self.method()))
            .finish()
    }
}
