//! `joint_request`: a request from a peer, owned by the application and answered exactly
//! once, from any thread; for extended calls also streaming out and values in.

use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::rc::Rc;
use std::sync::Arc;

use super::args::{c_str, joint_free_fn, put, put_slice, slice, wait_limit, UserData};
use super::conn::joint_conn;
use super::ctx::joint_ctx;
use super::handle::{guard, into_handle, take_handle, with_handle, with_object, with_ref, Boxed, Castable, InContext, Life, Live};
use super::response::joint_buf;
use super::status::*;
use crate::reactor::{Context, Request, StreamEvent, StreamState, YieldStatus};

/// A request from a peer, owned by the application from the moment its `joint_request_cb`
/// runs. Pass it exactly once to `joint_request_reply`, `joint_request_reply_error`,
/// `joint_request_reply_error_msg` or `joint_request_free` (which answers with a
/// `JOINT_RPC_NOT_ANSWERED` error): in the callback, later, or from another thread, before
/// or after `joint_ctx_free` (answering then does nothing). The accessors may be used from
/// the thread that holds it.
pub struct joint_request {
    req: Request,
    life: Arc<Life>,
    /// `joint_request_set_event_cb` was used: unregister when consumed (loop thread).
    has_event_cb: Cell<bool>,
}

impl Castable for joint_request {
    type Ownership = Boxed;
}

impl InContext for joint_request {
    fn life(&self) -> Option<&joint_ctx> {
        self.life.get()
    }
}

impl joint_request {
    pub(crate) fn into_raw(req: Request, life: Arc<Life>) -> *mut joint_request {
        into_handle(joint_request { req, life, has_event_cb: Cell::new(false) })
    }
}

/// What happens to a running extended call we serve (see `joint_request_set_event_cb`):
/// `JOINT_INPUT_VALUE` (a value sent in: `data`/`len`, borrowed until the callback returns),
/// `JOINT_INPUT_END`, `JOINT_INPUT_THROW` (the error object thrown in), `JOINT_INPUT_WRITABLE`
/// (`joint_request_yield` may be tried again: sent once credit comes after a yield returned
/// `JOINT_WOULD_BLOCK` or `joint_request_wait_writable` found none), or the end of the call
/// without the handler:
/// `JOINT_INPUT_CANCELLED`, `JOINT_INPUT_TIMEOUT`, `JOINT_INPUT_CLOSED` (answering then does
/// nothing; the request must still be consumed).
pub type joint_request_event_cb =
    Option<unsafe extern "C" fn(req: *mut joint_request, event: i32, data: *const u8, len: usize, user_data: *mut c_void)>;

/// Request event: a value sent into the call.
pub const JOINT_INPUT_VALUE: i32 = 1;
/// Request event: the caller will send no more values.
pub const JOINT_INPUT_END: i32 = 2;
/// Request event: the caller threw an error object into the call.
pub const JOINT_INPUT_THROW: i32 = 3;
/// Request event: `joint_request_yield` has credit again.
pub const JOINT_INPUT_WRITABLE: i32 = 4;
/// Request event: the caller cancelled the call (it was answered with a CANCELLED error).
pub const JOINT_INPUT_CANCELLED: i32 = 5;
/// Request event: the call's deadline passed (it was answered with DEADLINE_EXCEEDED).
pub const JOINT_INPUT_TIMEOUT: i32 = 6;
/// Request event: the connection closed.
pub const JOINT_INPUT_CLOSED: i32 = 7;

/// Take ownership of a request handle back from C.
///
/// # Safety
/// `req` must be NULL or a live request handle that is not used afterwards.
unsafe fn take(req: *mut joint_request) -> Option<Box<joint_request>> {
    // SAFETY: per the function's contract.
    let r = unsafe { take_handle(req) }?;
    if r.has_event_cb.get() && r.req.state() == StreamState::Active {
        // The event callback holds this pointer: drop it before the handle goes. Requests
        // with an event callback are consumed on the loop thread (documented), so the
        // context's state may be read here.
        if let Some(ctx) = r.life.get().and_then(|jc| jc.context()) {
            let _ = ctx.set_stream_handler(r.req.conn(), r.req.msgid(), None);
        }
    }
    Some(r)
}

/// The method name as the peer sent it (str or bin; not NUL-terminated). Borrowed from the
/// request.
#[no_mangle]
pub unsafe extern "C" fn joint_request_method(req: *const joint_request, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    // SAFETY: NULL or a live request; out-params may be NULL.
    unsafe {
        with_ref(req, |r| {
            put_slice(r.req.method(), data_out, len_out);
            JOINT_OK
        })
    }
}

/// The positional params: one MessagePack array (`[]` when the peer sent a map or nil).
/// Borrowed from the request.
#[no_mangle]
pub unsafe extern "C" fn joint_request_params(req: *const joint_request, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    // SAFETY: NULL or a live request; out-params may be NULL.
    unsafe {
        with_ref(req, |r| {
            put_slice(r.req.args(), data_out, len_out);
            JOINT_OK
        })
    }
}

/// The keyword params: the MessagePack map the peer sent as params. `JOINT_E_STATE` (and
/// nothing written) when the params were not a map. Borrowed from the request.
#[no_mangle]
pub unsafe extern "C" fn joint_request_kwargs(req: *const joint_request, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    // SAFETY: NULL or a live request; out-params may be NULL.
    unsafe {
        with_ref(req, |r| match r.req.kwargs() {
            Some(kw) => {
                put_slice(kw, data_out, len_out);
                JOINT_OK
            }
            None => JOINT_E_STATE,
        })
    }
}

/// The msgid the peer chose for this request (0 if `req` is NULL).
#[no_mangle]
pub unsafe extern "C" fn joint_request_msgid(req: *const joint_request) -> u32 {
    // SAFETY: NULL or a live request.
    unsafe { with_ref(req, |r| r.req.msgid()) }
}

/// Whether the call ended without its handler: the caller cancelled it, its deadline passed,
/// or its connection is gone (the peer went away, or closed its end and the linger passed,
/// or the context was freed). Answering it then does nothing, so long work for it can stop
/// early. Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_is_cancelled(req: *const joint_request) -> bool {
    // SAFETY: NULL or a live request.
    unsafe { with_ref(req, |r| matches!(r.req.state(), StreamState::Cancelled | StreamState::TimedOut | StreamState::Closed)) }
}

/// Whether an answer of `bytes` would fit in the context's memory budget now. An answer
/// larger than 64 KiB that does not fit is replaced by a `JOINT_RPC_RESOURCE_EXHAUSTED` error,
/// so a handler about to build a big answer can refuse before doing the work. Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_fits(req: *const joint_request, bytes: usize) -> bool {
    // SAFETY: NULL or a live request.
    unsafe { with_ref(req, |r| r.req.fits(bytes)) }
}

/// The connection the request came on, to call the peer back over it (lent like the
/// connection it names); NULL if it has closed or the context is gone. Only on the thread
/// that runs `joint_ctx_process`.
#[no_mangle]
pub unsafe extern "C" fn joint_request_conn(req: *const joint_request) -> *mut joint_conn {
    // SAFETY: NULL or a live request.
    unsafe { with_handle(req, |r: &joint_request, live: Live<'_>| live.jc.conn_handle(live.ctx, r.req.conn())) }
}

/// Answer with `result` (one encoded MessagePack object, copied; `(NULL, 0)` answers nil).
/// Consumes `req` on every return path. If `result` is not one valid object within the size
/// limit, the peer gets an error instead and this returns `JOINT_E_INVAL` or
/// `JOINT_E_TOO_LARGE`. Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_reply(req: *mut joint_request, result: *const u8, result_len: usize) -> joint_status {
    guard(
        || JOINT_E_PANIC,
        || {
            // SAFETY: the caller hands over ownership of a live request (or NULL).
            let Some(r) = (unsafe { take(req) }) else { return JOINT_E_NULL };
            // SAFETY: `result` has `result_len` readable bytes (or is NULL with 0).
            match unsafe { slice(result, result_len) } {
                Ok([]) => r.req.reply(crate::codec::NIL).map_or_else(|e| status_of(e.kind), |_| JOINT_OK),
                Ok(bytes) => r.req.reply(bytes).map_or_else(|e| status_of(e.kind), |_| JOINT_OK),
                Err(s) => s, // dropping the request answers NOT_ANSWERED
            }
        },
    )
}

/// Answer with an error object (one encoded MessagePack object, copied; peers expect a
/// string or `[code, message]`). Consumes `req` on every return path. Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_reply_error(req: *mut joint_request, error: *const u8, error_len: usize) -> joint_status {
    guard(
        || JOINT_E_PANIC,
        || {
            // SAFETY: the caller hands over ownership of a live request (or NULL).
            let Some(r) = (unsafe { take(req) }) else { return JOINT_E_NULL };
            // SAFETY: `error` has `error_len` readable bytes (or is NULL with 0).
            match unsafe { slice(error, error_len) } {
                Ok([]) => JOINT_E_INVAL,
                Ok(bytes) => r.req.reply_error(bytes).map_or_else(|e| status_of(e.kind), |_| JOINT_OK),
                Err(s) => s,
            }
        },
    )
}

/// Answer with joint's error object `[code, message]` (`message` NUL-terminated UTF-8, NULL
/// for ""; codes: `JOINT_RPC_*` or the application's own). Consumes `req`. Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_reply_error_msg(req: *mut joint_request, code: i64, message: *const c_char) -> joint_status {
    guard(
        || JOINT_E_PANIC,
        || {
            // SAFETY: the caller hands over ownership of a live request (or NULL).
            let Some(r) = (unsafe { take(req) }) else { return JOINT_E_NULL };
            // SAFETY: NULL or a NUL-terminated string.
            let text = unsafe { c_str(message) }.unwrap_or(b"");
            r.req.reply_error_code(code, text).map_or_else(|e| status_of(e.kind), |_| JOINT_OK)
        },
    )
}

/// Release a request. If it was not answered, the peer gets a `JOINT_RPC_NOT_ANSWERED` error
/// so it never waits forever. NULL is a no-op. Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_free(req: *mut joint_request) {
    // SAFETY: the caller hands over ownership of a live request (or NULL).
    guard(|| (), || drop(unsafe { take(req) }))
}

/// Whether the request is an extended call (so it can stream, be cancelled, have a deadline).
#[no_mangle]
pub unsafe extern "C" fn joint_request_is_extended(req: *const joint_request) -> bool {
    // SAFETY: NULL or a live request.
    unsafe { with_ref(req, |r| r.req.ext().is_some()) }
}

/// The flags of an extended call (`JOINT_CALL_FLAG_*`); 0 for a stock request.
#[no_mangle]
pub unsafe extern "C" fn joint_request_flags(req: *const joint_request) -> u32 {
    // SAFETY: NULL or a live request.
    unsafe { with_ref(req, |r| r.req.ext().map_or(0, |e| e.flags)) }
}

/// The milliseconds the caller allowed the call (its deadline, from when it arrived); 0 for
/// none or a stock request.
#[no_mangle]
pub unsafe extern "C" fn joint_request_deadline_ms(req: *const joint_request) -> u32 {
    // SAFETY: NULL or a live request.
    unsafe { with_ref(req, |r| r.req.ext().map_or(0, |e| e.deadline_ms)) }
}

/// Stream one item (one encoded object, copied) to the caller. `JOINT_WOULD_BLOCK`: no
/// credit — wait for `JOINT_INPUT_WRITABLE` (or `joint_request_wait_writable`) and try
/// again. `JOINT_E_CANCELLED` / `JOINT_E_TIMEOUT` / `JOINT_E_CLOSED`: the call ended; stop
/// and free the request. A stock caller gets all items as one array when the request is
/// answered (the answer's own value is then not sent). Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_yield(req: *mut joint_request, item: *const u8, len: usize) -> joint_status {
    // SAFETY: NULL or a live request owned by the caller; `item` has `len` readable bytes.
    unsafe {
        with_object(req, |r| match slice(item, len) {
            Ok(item) => match r.req.yield_item(item) {
                Ok(YieldStatus::Sent) => JOINT_OK,
                Ok(YieldStatus::WouldBlock) => JOINT_WOULD_BLOCK,
                Err(e) => status_of(e.kind),
            },
            Err(s) => s,
        })
    }
}

/// Wait until `joint_request_yield` has credit (`JOINT_OK`), up to `timeout_ms` (-1: no
/// limit; 0: don't wait): `JOINT_WOULD_BLOCK` if none came in time; `JOINT_E_CANCELLED`,
/// `JOINT_E_TIMEOUT` (its deadline) or `JOINT_E_CLOSED` if the call ended. Finding no
/// credit makes a `JOINT_INPUT_WRITABLE` event due when it comes, so an event-driven handler
/// can ask with `timeout_ms` 0 before it produces an item. Waiting (`timeout_ms` other than
/// 0) is for handlers on their own threads, never the loop thread: credit arrives through it.
#[no_mangle]
pub unsafe extern "C" fn joint_request_wait_writable(req: *const joint_request, timeout_ms: i32) -> joint_status {
    // SAFETY: NULL or a live request.
    unsafe {
        with_ref(req, |r| match wait_limit(timeout_ms) {
            Ok(timeout) => match r.req.wait_writable(timeout) {
                Ok(true) => JOINT_OK,
                Ok(false) => JOINT_WOULD_BLOCK,
                Err(e) => status_of(e.kind),
            },
            Err(s) => s,
        })
    }
}

fn event_code(e: &StreamEvent) -> (i32, &[u8]) {
    match e {
        StreamEvent::Input(v) => (JOINT_INPUT_VALUE, &v[..]),
        StreamEvent::InputEnd => (JOINT_INPUT_END, &[]),
        StreamEvent::Thrown(v) => (JOINT_INPUT_THROW, v),
        StreamEvent::Writable => (JOINT_INPUT_WRITABLE, &[]),
        StreamEvent::Ended(StreamState::Cancelled) => (JOINT_INPUT_CANCELLED, &[]),
        StreamEvent::Ended(StreamState::TimedOut) => (JOINT_INPUT_TIMEOUT, &[]),
        StreamEvent::Ended(_) => (JOINT_INPUT_CLOSED, &[]),
    }
}

/// Pull the next event of an extended call (`JOINT_INPUT_*`), waiting up to `timeout_ms`
/// (-1: no limit; 0: don't wait): `JOINT_OK` with `*event_out` set and, for VALUE and
/// THROW, `*data_out` holding the value (owned by the caller; NULL otherwise);
/// `JOINT_WOULD_BLOCK` if nothing came in time. For handlers without an event callback; any
/// thread. Values pulled are credited back to the caller. A stock request has no input: it
/// reports `JOINT_INPUT_END` at once.
#[no_mangle]
pub unsafe extern "C" fn joint_request_next_input(
    req: *const joint_request,
    timeout_ms: i32,
    event_out: *mut i32,
    data_out: *mut *mut joint_buf,
) -> joint_status {
    // SAFETY: NULL or a live request; out-params may be NULL.
    unsafe {
        with_ref(req, |r| {
            let timeout = match wait_limit(timeout_ms) {
                Ok(t) => t,
                Err(s) => return s,
            };
            match r.req.next_input(timeout) {
                Ok(Some(event)) => {
                    let (code, data) = event_code(&event);
                    put(event_out, code);
                    let carries_value = matches!(event, StreamEvent::Input(_) | StreamEvent::Thrown(_));
                    if !data_out.is_null() {
                        *data_out = if carries_value { into_handle(joint_buf { data: data.to_vec() }) } else { std::ptr::null_mut() };
                    }
                    JOINT_OK
                }
                Ok(None) => JOINT_WOULD_BLOCK,
                Err(e) => status_of(e.kind),
            }
        })
    }
}

/// Receive the call's events (`JOINT_INPUT_*`) through `cb` on the loop thread, inside
/// `joint_ctx_process`, instead of pulling them. Values delivered are credited back to the
/// caller when the callback returns (or, with `joint_request_set_manual_credit`, when you
/// call `joint_request_grant`). Only for extended calls (`JOINT_E_UNSUPPORTED`
/// otherwise), only on the loop thread, and a request with an event callback must also be
/// consumed on the loop thread. A NULL `cb` removes it. `free_user_data` runs when the call
/// ends or the callback is replaced.
#[no_mangle]
pub unsafe extern "C" fn joint_request_set_event_cb(
    req: *mut joint_request,
    cb: joint_request_event_cb,
    user_data: *mut c_void,
    free_user_data: joint_free_fn,
) -> joint_status {
    // SAFETY: NULL or a live request.
    unsafe {
        with_handle(req, |r: &joint_request, live: Live<'_>| {
            if r.req.ext().is_none() {
                return live.refuse(JOINT_E_UNSUPPORTED, "not an extended call");
            }
            let handler = cb.map(|cb| {
                let ud = UserData::new(user_data, free_user_data);
                Rc::new(move |_ctx: &Context, e: &StreamEvent| {
                    let (code, data) = event_code(e);
                    // SAFETY: a C callback with the documented signature; the request is
                    // alive until its owner consumes it, which must happen on this thread
                    // and unregisters this handler first.
                    cb(req, code, data.as_ptr(), data.len(), ud.get());
                }) as crate::reactor::StreamHandler
            });
            let registered = handler.is_some();
            match live.ctx.set_stream_handler(r.req.conn(), r.req.msgid(), handler) {
                Ok(()) => {
                    r.has_event_cb.set(registered);
                    JOINT_OK
                }
                Err(e) => live.fail(&e),
            }
        })
    }
}

/// Credit the values delivered to the event callback with `joint_request_grant` instead of
/// when the callback returns (for consumers slower than the loop: the caller then waits
/// instead of you buffering). Set it before `joint_request_set_event_cb`, which delivers the
/// values already queued at once. Values pulled with `joint_request_next_input` are credited
/// as they are pulled either way. Only for extended calls (`JOINT_E_UNSUPPORTED` otherwise)
/// and only on the loop thread; `JOINT_E_STATE` once the call ended.
#[no_mangle]
pub unsafe extern "C" fn joint_request_set_manual_credit(req: *mut joint_request, enabled: bool) -> joint_status {
    // SAFETY: NULL or a live request.
    unsafe {
        // A stock request is refused by the reactor (Unsupported), like a call that ended (State).
        with_handle(req, |r: &joint_request, live: Live<'_>| live.status(live.ctx.set_manual_input_credit(&r.req, enabled)))
    }
}

/// With manual credit: `n` values sent into the call were consumed, the caller may send that
/// many more. Only for extended calls (`JOINT_E_UNSUPPORTED` otherwise) and only on the loop
/// thread; `JOINT_E_STATE` once the call ended.
#[no_mangle]
pub unsafe extern "C" fn joint_request_grant(req: *mut joint_request, n: u32) -> joint_status {
    // SAFETY: NULL or a live request.
    unsafe {
        // A stock request is refused by the reactor (Unsupported), like a call that ended (State).
        with_handle(req, |r: &joint_request, live: Live<'_>| live.status(live.ctx.grant_inputs(&r.req, n)))
    }
}
