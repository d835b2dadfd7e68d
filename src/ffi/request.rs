//! Incoming requests: owned tokens that are answered exactly once, from any thread.

use std::ffi::c_char;

use super::ctx::conn_ptr;
use super::*;
use crate::reactor::Request;

/// A request from a peer, owned by the application from the moment its `joint_request_cb`
/// runs. Pass it exactly once to `joint_request_reply`, `joint_request_reply_error`,
/// `joint_request_reply_error_msg` or `joint_request_free` (which answers with a
/// `JOINT_RPC_NOT_ANSWERED` error): in the callback, later, or from another thread. The
/// accessors may be used from the thread that holds it.
pub struct joint_request {
    pub(super) req: Request,
    pub(super) ctx: *const Context,
    /// `joint_request_set_event_cb` was used: unregister when consumed (loop thread).
    pub(super) has_event_cb: std::cell::Cell<bool>,
}

impl joint_request {
    pub(crate) fn into_raw(req: Request, ctx: *const Context) -> *mut joint_request {
        Box::into_raw(Box::new(joint_request { req, ctx, has_event_cb: std::cell::Cell::new(false) }))
    }
}

/// Take ownership of a request handle.
///
/// # Safety
/// `req` must be NULL or a live request handle that is not used afterwards.
unsafe fn take(req: *mut joint_request) -> Option<Box<joint_request>> {
    // SAFETY: per the function's contract.
    let r = (!req.is_null()).then(|| unsafe { Box::from_raw(req) })?;
    if r.has_event_cb.get() && r.req.state() == crate::reactor::StreamState::Active {
        // The event callback holds this pointer: drop it before the handle goes. Requests
        // with an event callback are consumed on the loop thread (documented); while the call
        // is Active its context is alive (freeing the context ends every call as Closed).
        // SAFETY: as just said.
        let ctx = unsafe { &*r.ctx };
        let _ = ctx.set_stream_handler(r.req.conn(), r.req.msgid(), None);
    }
    Some(r)
}

/// The method name as the peer sent it (str or bin; not NUL-terminated). Borrowed from the
/// request.
#[no_mangle]
pub unsafe extern "C" fn joint_request_method(req: *const joint_request, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: NULL or a live request.
        let Some(r) = (unsafe { req.as_ref() }) else { return JOINT_E_NULL };
        // SAFETY: out-params may be NULL.
        unsafe { put_slice(r.req.method(), data_out, len_out) };
        JOINT_OK
    })
}

/// The positional params: one MessagePack array (`[]` when the peer sent a map or nil).
/// Borrowed from the request.
#[no_mangle]
pub unsafe extern "C" fn joint_request_params(req: *const joint_request, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: NULL or a live request.
        let Some(r) = (unsafe { req.as_ref() }) else { return JOINT_E_NULL };
        // SAFETY: out-params may be NULL.
        unsafe { put_slice(r.req.args(), data_out, len_out) };
        JOINT_OK
    })
}

/// The keyword params: the MessagePack map the peer sent as params. `JOINT_E_STATE` (and
/// nothing written) when the params were not a map. Borrowed from the request.
#[no_mangle]
pub unsafe extern "C" fn joint_request_kwargs(req: *const joint_request, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: NULL or a live request.
        let Some(r) = (unsafe { req.as_ref() }) else { return JOINT_E_NULL };
        match r.req.kwargs() {
            Some(kw) => {
                // SAFETY: out-params may be NULL.
                unsafe { put_slice(kw, data_out, len_out) };
                JOINT_OK
            }
            None => JOINT_E_STATE,
        }
    })
}

/// The msgid the peer chose for this request.
#[no_mangle]
pub unsafe extern "C" fn joint_request_msgid(req: *const joint_request) -> u32 {
    // SAFETY: NULL or a live request.
    guard(0, || unsafe { req.as_ref() }.map_or(0, |r| r.req.msgid()))
}

/// Whether the call ended without its handler: the caller cancelled it, its deadline passed,
/// or its connection is gone (the peer went away, or closed its end and the linger passed).
/// Answering it then does nothing, so long work for it can stop early. Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_is_cancelled(req: *const joint_request) -> bool {
    use crate::reactor::StreamState;
    // SAFETY: NULL or a live request.
    guard(false, || {
        unsafe { req.as_ref() }.is_some_and(|r| matches!(r.req.state(), StreamState::Cancelled | StreamState::TimedOut | StreamState::Closed))
    })
}

/// Whether an answer of `bytes` would fit in the context's memory budget now. An answer
/// larger than 64 KiB that does not fit is replaced by a `JOINT_RPC_RESOURCE_EXHAUSTED` error,
/// so a handler about to build a big answer can refuse before doing the work. Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_fits(req: *const joint_request, bytes: usize) -> bool {
    // SAFETY: NULL or a live request.
    guard(false, || unsafe { req.as_ref() }.is_some_and(|r| r.req.fits(bytes)))
}

/// The connection the request came on, to call the peer back over it; NULL if it has closed.
/// Only on the thread that runs `joint_ctx_process`, and only while the context lives.
#[no_mangle]
pub unsafe extern "C" fn joint_request_conn(req: *const joint_request) -> *mut joint_conn {
    guard(std::ptr::null_mut(), || {
        // SAFETY: NULL or a live request whose context is alive (documented rule).
        let Some(r) = (unsafe { req.as_ref() }) else { return std::ptr::null_mut() };
        // SAFETY: as above.
        conn_ptr(unsafe { &*r.ctx }, r.req.conn())
    })
}

/// Answer with `result` (one encoded MessagePack object, copied; `(NULL, 0)` answers nil).
/// Consumes `req` on every return path. If `result` is not one valid object within the size limit, the peer gets an
/// error instead and this returns `JOINT_E_INVAL` or `JOINT_E_TOO_LARGE`. Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_reply(req: *mut joint_request, result: *const u8, result_len: usize) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: the caller hands over ownership of a live request (or NULL).
        let Some(r) = (unsafe { take(req) }) else { return JOINT_E_NULL };
        // SAFETY: `result` has `result_len` readable bytes (or is NULL with 0).
        match unsafe { slice(result, result_len) } {
            Ok([]) => r.req.reply(crate::codec::NIL).map_or_else(|e| status_of(e.kind), |_| JOINT_OK),
            Ok(bytes) => r.req.reply(bytes).map_or_else(|e| status_of(e.kind), |_| JOINT_OK),
            Err(s) => {
                drop(r); // answers with NOT_ANSWERED
                s
            }
        }
    })
}

/// Answer with an error object (one encoded MessagePack object, copied; peers expect a
/// string or `[code, message]`). Consumes `req` on every return path. Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_reply_error(req: *mut joint_request, error: *const u8, error_len: usize) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: the caller hands over ownership of a live request (or NULL).
        let Some(r) = (unsafe { take(req) }) else { return JOINT_E_NULL };
        // SAFETY: `error` has `error_len` readable bytes (or is NULL with 0).
        match unsafe { slice(error, error_len) } {
            Ok([]) => {
                drop(r);
                JOINT_E_INVAL
            }
            Ok(bytes) => r.req.reply_error(bytes).map_or_else(|e| status_of(e.kind), |_| JOINT_OK),
            Err(s) => {
                drop(r);
                s
            }
        }
    })
}

/// Answer with joint's error object `[code, message]` (`message` NUL-terminated UTF-8, NULL
/// for ""; codes: `JOINT_RPC_*` or the application's own). Consumes `req`. Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_reply_error_msg(req: *mut joint_request, code: i64, message: *const c_char) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: the caller hands over ownership of a live request (or NULL).
        let Some(r) = (unsafe { take(req) }) else { return JOINT_E_NULL };
        // SAFETY: NULL or a NUL-terminated string.
        let text = unsafe { c_str(message) }.unwrap_or(b"");
        r.req.reply_error_code(code, text).map_or_else(|e| status_of(e.kind), |_| JOINT_OK)
    })
}

/// Release a request. If it was not answered, the peer gets a `JOINT_RPC_NOT_ANSWERED` error
/// so it never waits forever. NULL is a no-op. Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_free(req: *mut joint_request) {
    // SAFETY: the caller hands over ownership of a live request (or NULL).
    guard((), || drop(unsafe { take(req) }))
}
