//! Incoming requests as owned tokens, and the thread-safe path their replies take.
//!
//! A [`Request`] may be answered inline in its handler, later from the loop thread, or from
//! any other thread. Every reply is encoded by the answering thread into the context's
//! [`Shared`] reply queue; the loop thread moves queued replies into the connections' output
//! when it next runs `process()` (which it does right after each handler returns, so inline
//! replies cost no extra wake-up). Dropping an unanswered request sends an error reply.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::codec::{self, FrameLimits, PayloadError};
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::rpc_error;

use super::ConnId;

/// State shared between the loop thread and threads that answer requests.
pub struct Shared {
    pub(super) waker: mio::Waker,
    /// A wake-up is already pending; saves eventfd writes when many replies arrive at once.
    woken: AtomicBool,
    queue: Mutex<ReplyQueue>,
}

/// Replies waiting for the loop thread. Small replies share one byte arena (no allocation per
/// reply); a big one keeps its own buffer so it is moved, not copied.
#[derive(Default)]
pub(super) struct ReplyQueue {
    pub bytes: Vec<u8>,
    pub entries: Vec<QueuedReply>,
}

pub(super) struct QueuedReply {
    pub conn: ConnId,
    pub body: ReplyBody,
}

pub(super) enum ReplyBody {
    Arena { start: usize, end: usize },
    Owned(Vec<u8>),
}

const OWN_BUFFER_ABOVE: usize = 64 << 10;

thread_local! {
    /// The `Shared` of the context whose `process()` runs on this thread, if any.
    static PROCESSING: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
}

impl Shared {
    pub(super) fn new(waker: mio::Waker) -> Self {
        Shared { waker, woken: AtomicBool::new(false), queue: Mutex::new(ReplyQueue::default()) }
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

    fn push(&self, conn: ConnId, encode: impl FnOnce(&mut Vec<u8>), size_hint: usize) {
        if size_hint > OWN_BUFFER_ABOVE {
            let mut own = Vec::with_capacity(size_hint + 16);
            encode(&mut own);
            self.lock().entries.push(QueuedReply { conn, body: ReplyBody::Owned(own) });
        } else {
            let mut q = self.lock();
            let start = q.bytes.len();
            encode(&mut q.bytes);
            let end = q.bytes.len();
            q.entries.push(QueuedReply { conn, body: ReplyBody::Arena { start, end } });
        }
        self.wake_unless_processing();
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

/// A request from the peer, owned by the application until it is answered.
///
/// Answer it exactly once with [`reply`](Request::reply), [`reply_error`](Request::reply_error)
/// or [`reply_error_code`](Request::reply_error_code), from any thread. Dropping it unanswered
/// answers with a `NOT_ANSWERED` error, so the peer never waits forever.
pub struct Request {
    shared: Arc<Shared>,
    conn: ConnId,
    msgid: u32,
    limits: FrameLimits,
    /// method, args and kwargs, back to back.
    data: Bytes,
    method_end: usize,
    args_end: usize,
    has_kwargs: bool,
    answered: bool,
}

impl Request {
    pub(super) fn new(shared: Arc<Shared>, conn: ConnId, msgid: u32, limits: FrameLimits, method: &[u8], args: &[u8], kwargs: Option<&[u8]>) -> Self {
        let kw = kwargs.unwrap_or(&[]);
        let data = Bytes::concat(&[method, args, kw]);
        Request {
            shared,
            conn,
            msgid,
            limits,
            method_end: method.len(),
            args_end: method.len() + args.len(),
            has_kwargs: kwargs.is_some(),
            data,
            answered: false,
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
        &self.data.as_slice()[..self.method_end]
    }

    /// Positional params: one encoded MessagePack array.
    pub fn args(&self) -> &[u8] {
        &self.data.as_slice()[self.method_end..self.args_end]
    }

    /// Keyword params: one encoded MessagePack map, when the peer sent a map as params.
    pub fn kwargs(&self) -> Option<&[u8]> {
        self.has_kwargs.then(|| &self.data.as_slice()[self.args_end..])
    }

    /// Answer with a result (one encoded MessagePack object). If `result` is not a valid
    /// object within the size limit, the peer gets an error reply instead and this returns
    /// the reason.
    pub fn reply(mut self, result: &[u8]) -> Result<()> {
        self.answer(Ok(result))
    }

    /// Answer with an error object (any one encoded MessagePack object).
    pub fn reply_error(mut self, error: &[u8]) -> Result<()> {
        self.answer(Err(error))
    }

    /// Answer with joint's `[code, message]` error object.
    pub fn reply_error_code(mut self, code: i64, message: &[u8]) -> Result<()> {
        self.send_error_code(code, message);
        Ok(())
    }

    fn answer(&mut self, outcome: std::result::Result<&[u8], &[u8]>) -> Result<()> {
        let payload = match outcome {
            Ok(p) | Err(p) => p,
        };
        // Leave room for the envelope; a too-big reply becomes an error reply.
        let limits = FrameLimits { max_message_size: self.limits.max_message_size.saturating_sub(16), ..self.limits };
        if let Err(e) = codec::validate_object(payload, limits) {
            let (code, what, kind) = match e {
                PayloadError::TooLarge => (rpc_error::TOO_LARGE, "reply larger than the message size limit", ErrorKind::TooLarge),
                _ => (rpc_error::HANDLER_FAILED, "handler produced an invalid MessagePack reply", ErrorKind::InvalidArgument),
            };
            self.send_error_code(code, what.as_bytes());
            return Err(Error::new(kind, what));
        }
        let msgid = self.msgid;
        self.answered = true;
        self.shared.push(
            self.conn,
            |out| match outcome {
                Ok(r) => codec::encode_response(out, msgid, codec::NIL, r),
                Err(e) => codec::encode_response(out, msgid, e, codec::NIL),
            },
            payload.len(),
        );
        Ok(())
    }

    fn send_error_code(&mut self, code: i64, message: &[u8]) {
        let msgid = self.msgid;
        self.answered = true;
        self.shared.push(
            self.conn,
            |out| {
                let mut err = Vec::with_capacity(message.len() + 10);
                codec::encode_error(&mut err, code, message);
                codec::encode_response(out, msgid, &err, codec::NIL);
            },
            message.len(),
        );
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

    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { buf, len } => &buf[..*len as usize],
            Bytes::Heap(v) => v,
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.answered {
            self.send_error_code(rpc_error::NOT_ANSWERED, b"the request was released without an answer");
        }
    }
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
