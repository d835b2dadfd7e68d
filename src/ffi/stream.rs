//! The joint extension in the C API: call options, streaming both ways, cancellation and
//! deadlines, the pulled-stream helper, and the worker pool.

use std::ffi::{c_char, c_void};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::conn::{joint_buf, joint_conn, joint_response, joint_response_cb, on_conn};
use super::ctx::{conn_ptr, handle_ref, joint_ctx, joint_request_cb, on_ctx};
use super::request::joint_request;
use super::*;
use crate::protocol::ExtMode;
use crate::reactor::{
    CallEvent, CallId, CallOptions, CallStream, ConnId, Request, Response, SendStatus, StreamEvent, StreamItem, StreamState, YieldStatus,
};

/// Options for `joint_conn_call_opts` and `joint_conn_call_stream`: keyword params, a
/// timeout that is also the callee's deadline, streaming. Borrowed by those calls (copied);
/// reusable. Create with `joint_call_opts_new`, free with `joint_call_opts_free`.
pub struct joint_call_opts {
    timeout_ms: i32,
    kwargs: Option<Vec<u8>>,
    client_stream: bool,
    window: u32,
    event_cb: joint_call_event_cb,
    manual_credit: bool,
}

/// What happens to one of our calls before it completes: `JOINT_CALL_ITEM` (an item the
/// callee streamed: `data`/`len`, borrowed until the callback returns) or `JOINT_CALL_WRITABLE`
/// (`joint_conn_send` may be tried again). `user_data` is the call's.
pub type joint_call_event_cb =
    Option<unsafe extern "C" fn(conn: *mut joint_conn, call_id: u64, event: i32, data: *const u8, len: usize, user_data: *mut c_void)>;

/// What happens to a running extended call we serve (see `joint_request_set_event_cb`):
/// `JOINT_INPUT_VALUE` (a value sent in: `data`/`len`, borrowed until the callback returns),
/// `JOINT_INPUT_END`, `JOINT_INPUT_THROW` (the error object thrown in), `JOINT_INPUT_WRITABLE`
/// (`joint_request_yield` may be tried again), or the end of the call without the handler:
/// `JOINT_INPUT_CANCELLED`, `JOINT_INPUT_TIMEOUT`, `JOINT_INPUT_CLOSED` (answering then does
/// nothing; the request must still be consumed).
pub type joint_request_event_cb =
    Option<unsafe extern "C" fn(req: *mut joint_request, event: i32, data: *const u8, len: usize, user_data: *mut c_void)>;

/// A call whose items are pulled with `joint_stream_next` (blocking). Free with
/// `joint_stream_free`.
pub struct joint_stream {
    ctx: *const Context,
    stream: CallStream,
    finished: bool,
}

/// Call event: an item.
pub const JOINT_CALL_ITEM: i32 = 1;
/// Call event: send credit arrived.
pub const JOINT_CALL_WRITABLE: i32 = 2;

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

/// Call flag: the callee may stream ahead within its window.
pub const JOINT_CALL_FLAG_ASYNC_FLOW: u32 = 1;
/// Call flag: the caller asks for the method to run away from the callee's loop (advisory).
pub const JOINT_CALL_FLAG_RUN_ISOLATED: u32 = 2;
/// Call flag: the caller sends values into the call (it takes input).
pub const JOINT_CALL_FLAG_CLIENT_STREAM: u32 = 4;

/// Extension state of a connection (`joint_conn_extension`): not offered.
pub const JOINT_EXT_OFF: i32 = 0;
/// Offered, no answer yet.
pub const JOINT_EXT_PENDING: i32 = 1;
/// Both ends speak the joint extension.
pub const JOINT_EXT_ON: i32 = 2;
/// The peer is a stock MessagePack-RPC peer.
pub const JOINT_EXT_REFUSED: i32 = 3;

/// Error code in joint's error objects: the caller cancelled the call.
pub const JOINT_RPC_CANCELLED: i64 = 8;
/// Error code in joint's error objects: the call's deadline passed.
pub const JOINT_RPC_DEADLINE_EXCEEDED: i64 = 9;

/// Offer the joint extension on connections this context opens and accept it on
/// connections it accepts (default: true). Stock peers are unaffected either way: the offer
/// is one ordinary request to the reserved method "joint.hello", answered by them with an
/// ordinary error.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_extension(config: *mut joint_config, enabled: bool) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { super::ctx::with_config_pub(config, |c| c.limits.ext.enabled = enabled) }
}

/// Flow-control window: items a peer may stream into (or out of) one call before it must
/// wait for credit (default 64; at least 1).
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_window(config: *mut joint_config, items: u32) -> joint_status {
    if items == 0 {
        return JOINT_E_INVAL;
    }
    // SAFETY: forwarded caller promise.
    unsafe { super::ctx::with_config_pub(config, |c| c.limits.ext.window = items) }
}

/// Threads of the worker pool for methods registered with `joint_ctx_register_pool`
/// (default 4; started on first use).
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_workers(config: *mut joint_config, threads: u32) -> joint_status {
    if threads == 0 {
        return JOINT_E_INVAL;
    }
    // SAFETY: forwarded caller promise.
    unsafe { super::ctx::with_config_pub(config, |c| c.workers = threads as usize) }
}

/// Create call options (no timeout, no kwargs, no streaming input, the context's window).
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_new(opts_out: *mut *mut joint_call_opts) -> joint_status {
    guard(JOINT_E_PANIC, || {
        if opts_out.is_null() {
            return JOINT_E_NULL;
        }
        let o = joint_call_opts { timeout_ms: -1, kwargs: None, client_stream: false, window: 0, event_cb: None, manual_credit: false };
        // SAFETY: checked non-NULL.
        unsafe { *opts_out = Box::into_raw(Box::new(o)) };
        JOINT_OK
    })
}

/// Free call options. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_free(opts: *mut joint_call_opts) {
    guard((), || {
        if !opts.is_null() {
            // SAFETY: created by joint_call_opts_new, freed once.
            drop(unsafe { Box::from_raw(opts) });
        }
    })
}

unsafe fn set_opt(opts: *mut joint_call_opts, f: impl FnOnce(&mut joint_call_opts)) -> joint_status {
    // SAFETY: NULL or live options (caller's promise).
    guard(JOINT_E_PANIC, || {
        unsafe { opts.as_mut() }.map_or(JOINT_E_NULL, |o| {
            f(o);
            JOINT_OK
        })
    })
}

/// Timeout in milliseconds (-1 or 0: none). The call fails with `JOINT_E_TIMEOUT` after it;
/// a joint callee gets it as its deadline and stops too.
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_set_timeout_ms(opts: *mut joint_call_opts, timeout_ms: i32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set_opt(opts, |o| o.timeout_ms = timeout_ms) }
}

/// Keyword params: one encoded MessagePack map (copied); `(NULL, 0)` removes them. To a
/// stock peer they travel as the last positional param (or as the params, if there are no
/// positional ones).
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_set_kwargs(opts: *mut joint_call_opts, kwargs: *const u8, len: usize) -> joint_status {
    // SAFETY: `kwargs` has `len` readable bytes (or NULL, 0).
    let bytes = match unsafe { slice(kwargs, len) } {
        Ok(b) => b,
        Err(s) => return s,
    };
    if !bytes.is_empty() && (crate::codec::validate_object(bytes, Default::default()).is_err() || !matches!(bytes[0], 0x80..=0x8f | 0xde | 0xdf)) {
        return JOINT_E_INVAL;
    }
    // SAFETY: forwarded caller promise.
    unsafe { set_opt(opts, |o| o.kwargs = (!bytes.is_empty()).then(|| bytes.to_vec())) }
}

/// The call takes values sent into it with `joint_conn_send`, then `joint_conn_end_input`.
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_set_client_stream(opts: *mut joint_call_opts, enabled: bool) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set_opt(opts, |o| o.client_stream = enabled) }
}

/// Items the callee may stream before we grant more (0: the context's window).
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_set_window(opts: *mut joint_call_opts, items: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set_opt(opts, |o| o.window = items) }
}

/// Receive items and send credit as they come (runs inside `joint_ctx_process`, with the
/// call's user data).
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_set_event_cb(opts: *mut joint_call_opts, cb: joint_call_event_cb) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set_opt(opts, |o| o.event_cb = cb) }
}

/// Grant credit with `joint_conn_grant` instead of after each item callback returns (for
/// consumers slower than the loop: the callee then waits instead of us buffering).
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_set_manual_credit(opts: *mut joint_call_opts, enabled: bool) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set_opt(opts, |o| o.manual_credit = enabled) }
}

fn call_options(opts: Option<&joint_call_opts>, user_data: *mut c_void, conn_handle: *mut joint_conn) -> CallOptions {
    let Some(o) = opts else { return CallOptions::default() };
    let on_event = o.event_cb.map(|cb| {
        Box::new(move |_ctx: &Context, call: CallId, event: CallEvent<'_>| {
            let (kind, data): (i32, &[u8]) = match event {
                CallEvent::Item(item) => (JOINT_CALL_ITEM, item),
                CallEvent::Writable => (JOINT_CALL_WRITABLE, &[]),
            };
            // SAFETY: a C callback with the documented signature; `data` outlives the call.
            unsafe { cb(conn_handle, call.to_u64(), kind, data.as_ptr(), data.len(), user_data) };
        }) as crate::reactor::CallEventHandler
    });
    CallOptions {
        timeout: (o.timeout_ms > 0).then(|| Duration::from_millis(o.timeout_ms as u64)),
        kwargs: o.kwargs.clone(),
        client_stream: o.client_stream,
        window: o.window,
        on_event,
        manual_credit: o.manual_credit,
        flags: 0,
    }
}

/// Call with options: to a joint peer this is an extended call (keyword params, deadline,
/// streamed items through the options' event callback, values sent in with
/// `joint_conn_send`); to a stock peer a stock request. `opts` may be NULL (defaults).
/// Completion as for `joint_conn_call`: `cb` runs exactly once; on an error return never.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_call_opts(
    conn: *mut joint_conn,
    method: *const c_char,
    params: *const u8,
    params_len: usize,
    opts: *const joint_call_opts,
    cb: joint_response_cb,
    user_data: *mut c_void,
    call_id_out: *mut u64,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_conn(conn, |c, id| {
            let (method, params) = match method_and_params(method, params, params_len) {
                Ok(mp) => mp,
                Err(s) => return s,
            };
            let options = call_options(opts.as_ref(), user_data, conn);
            let done = Box::new(move |ctx: &Context, r: Response<'_>| {
                if let Some(cb) = cb {
                    let resp = joint_response::from_response(&r);
                    cb(conn_ptr(ctx, r.call.conn), &resp, user_data);
                }
            });
            match c.call_with(id, method, params, options, done) {
                Ok(call) => {
                    put(call_id_out, call.to_u64());
                    JOINT_OK
                }
                Err(e) => fail(c, &e),
            }
        })
    }
}

fn call_id(c: &Context, id: ConnId, call: u64) -> CallId {
    c.call_from_u64(id, call)
}

/// Send `item` (one encoded object, copied) into our running call `call_id` (made with
/// client streaming). `JOINT_WOULD_BLOCK`: no credit yet, or the connection's output holds
/// its high-water mark of unsent bytes (`joint_config_set_output_high_water`) — wait for
/// `JOINT_CALL_WRITABLE` and try again. `JOINT_E_UNSUPPORTED`: the peer is a stock peer (or the call takes no
/// input, or its input has ended).
#[no_mangle]
pub unsafe extern "C" fn joint_conn_send(conn: *mut joint_conn, call_id: u64, item: *const u8, len: usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_conn(conn, |c, id| {
            let item = match slice(item, len) {
                Ok(b) => b,
                Err(s) => return s,
            };
            match c.send(call_id_of(c, id, call_id), item) {
                Ok(SendStatus::Sent) => JOINT_OK,
                Ok(SendStatus::WouldBlock) => JOINT_WOULD_BLOCK,
                Err(e) => fail(c, &e),
            }
        })
    }
}

fn call_id_of(c: &Context, id: ConnId, call: u64) -> CallId {
    call_id(c, id, call)
}

/// No more values will be sent into `call_id`.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_end_input(conn: *mut joint_conn, call_id: u64) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { on_conn(conn, |c, id| c.end_input(call_id_of(c, id, call_id)).map_or_else(|e| fail(c, &e), |_| JOINT_OK)) }
}

/// Throw `error` (one encoded object, copied) into the running call `call_id`; the callee's
/// handler gets it (`JOINT_INPUT_THROW`) and decides how the call ends.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_throw(conn: *mut joint_conn, call_id: u64, error: *const u8, len: usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_conn(conn, |c, id| {
            let error = match slice(error, len) {
                Ok(b) => b,
                Err(s) => return s,
            };
            c.throw(call_id_of(c, id, call_id), error).map_or_else(|e| fail(c, &e), |_| JOINT_OK)
        })
    }
}

/// With manual credit: `items` more may be streamed to us on `call_id`.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_grant(conn: *mut joint_conn, call_id: u64, items: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { on_conn(conn, |c, id| c.grant(call_id_of(c, id, call_id), items).map_or_else(|e| fail(c, &e), |_| JOINT_OK)) }
}

/// Where the joint extension stands on a connection: `JOINT_EXT_OFF`, `JOINT_EXT_PENDING`,
/// `JOINT_EXT_ON` or `JOINT_EXT_REFUSED` (a stock peer). -1 if `conn` is NULL.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_extension(conn: *const joint_conn) -> i32 {
    guard(-1, || {
        // SAFETY: NULL or a live connection.
        let Some(h) = (unsafe { handle_ref(conn) }) else { return -1 };
        // SAFETY: a connection's context outlives its handle.
        match unsafe { &*h.ctx }.extension(h.id) {
            Some(ExtMode::Off) | None => JOINT_EXT_OFF,
            Some(ExtMode::Offered) => JOINT_EXT_PENDING,
            Some(ExtMode::On) => JOINT_EXT_ON,
            Some(ExtMode::Refused) => JOINT_EXT_REFUSED,
        }
    })
}

/// Call and pull the streamed items one at a time with `joint_stream_next` (a blocking
/// helper: not from a callback). Credit is granted as items are pulled, so a slow consumer
/// slows the producer instead of buffering. `opts` may be NULL; its event callback and
/// manual-credit setting are ignored. On success `*stream_out` is owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_call_stream(
    conn: *mut joint_conn,
    method: *const c_char,
    params: *const u8,
    params_len: usize,
    opts: *const joint_call_opts,
    stream_out: *mut *mut joint_stream,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_conn(conn, |c, id| {
            if stream_out.is_null() {
                return JOINT_E_NULL;
            }
            let (method, params) = match method_and_params(method, params, params_len) {
                Ok(mp) => mp,
                Err(s) => return s,
            };
            let mut options = call_options(opts.as_ref(), std::ptr::null_mut(), conn);
            options.on_event = None;
            match c.call_stream(id, method, params, options) {
                Ok(stream) => {
                    *stream_out = Box::into_raw(Box::new(joint_stream { ctx: c, stream, finished: false }));
                    JOINT_OK
                }
                Err(e) => fail(c, &e),
            }
        })
    }
}

/// Pull the next item, waiting up to `timeout_ms` (-1: as long as it takes), running
/// `joint_ctx_process` meanwhile. `JOINT_OK`: `*item_out` holds an item. `JOINT_DONE`: the
/// call finished; `*item_out` holds its result (then the stream is over). `JOINT_E_TIMEOUT`
/// with nothing written: no item yet. `JOINT_E_REMOTE`: `*item_out` holds the peer's error
/// object. Other errors: why the call failed. Buffers are owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn joint_stream_next(stream: *mut joint_stream, timeout_ms: i32, item_out: *mut *mut joint_buf) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: NULL or a live stream.
        let Some(s) = (unsafe { stream.as_mut() }) else { return JOINT_E_NULL };
        if item_out.is_null() {
            return JOINT_E_NULL;
        }
        // SAFETY: a stream's context outlives it (documented).
        let ctx = unsafe { &*s.ctx };
        if s.finished {
            return JOINT_E_STATE;
        }
        with_context(ctx, |c| {
            let timeout = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
            let give = |data: Vec<u8>| {
                // SAFETY: checked non-NULL above.
                unsafe { *item_out = Box::into_raw(Box::new(joint_buf { data })) };
            };
            match s.stream.next(c, timeout) {
                Ok(Some(StreamItem::Item(v))) => {
                    give(v);
                    JOINT_OK
                }
                Ok(Some(StreamItem::Done(v))) => {
                    s.finished = true;
                    give(v);
                    JOINT_DONE
                }
                Ok(None) => JOINT_E_TIMEOUT,
                Err((e, obj)) => {
                    if e.kind != crate::error::ErrorKind::Recursive {
                        s.finished = true;
                    }
                    if e.kind == crate::error::ErrorKind::Remote {
                        give(obj);
                    }
                    fail(c, &e)
                }
            }
        })
    })
}

/// The id of the stream's call (for `joint_conn_send`, `joint_conn_cancel`, ...).
#[no_mangle]
pub unsafe extern "C" fn joint_stream_call_id(stream: *const joint_stream) -> u64 {
    // SAFETY: NULL or a live stream.
    guard(0, || unsafe { stream.as_ref() }.map_or(0, |s| s.stream.call_id().to_u64()))
}

/// Free a stream; a call still running is cancelled. NULL is a no-op. Before the context.
#[no_mangle]
pub unsafe extern "C" fn joint_stream_free(stream: *mut joint_stream) {
    guard((), || {
        if stream.is_null() {
            return;
        }
        // SAFETY: created by joint_conn_call_stream, freed once.
        let s = unsafe { Box::from_raw(stream) };
        if !s.finished {
            // SAFETY: the context outlives its streams (documented).
            unsafe { &*s.ctx }.cancel(s.stream.call_id());
        }
    })
}

fn request_of<'a>(req: *const joint_request) -> Option<&'a joint_request> {
    // SAFETY: NULL or a live request (every caller forwards the C caller's promise).
    unsafe { req.as_ref() }
}

/// Whether the request is an extended call (so it can stream, be cancelled, have a deadline).
#[no_mangle]
pub unsafe extern "C" fn joint_request_is_extended(req: *const joint_request) -> bool {
    guard(false, || request_of(req).is_some_and(|r| r.req.ext().is_some()))
}

/// The flags of an extended call (`JOINT_CALL_FLAG_*`); 0 for a stock request.
#[no_mangle]
pub unsafe extern "C" fn joint_request_flags(req: *const joint_request) -> u32 {
    guard(0, || request_of(req).and_then(|r| r.req.ext()).map_or(0, |e| e.flags))
}

/// The milliseconds the caller allowed the call (its deadline, from when it arrived); 0 for
/// none or a stock request.
#[no_mangle]
pub unsafe extern "C" fn joint_request_deadline_ms(req: *const joint_request) -> u32 {
    guard(0, || request_of(req).and_then(|r| r.req.ext()).map_or(0, |e| e.deadline_ms))
}

/// Stream one item (one encoded object, copied) to the caller. `JOINT_WOULD_BLOCK`: no
/// credit — wait for `JOINT_INPUT_WRITABLE` (or `joint_request_wait_writable`) and try
/// again. `JOINT_E_CANCELLED` / `JOINT_E_TIMEOUT` / `JOINT_E_CLOSED`: the call ended; stop
/// and free the request. A stock caller gets all items as one array when the request is
/// answered (the answer's own value is then not sent). Any thread.
#[no_mangle]
pub unsafe extern "C" fn joint_request_yield(req: *mut joint_request, item: *const u8, len: usize) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: NULL or a live request owned by the caller.
        let Some(r) = (unsafe { req.as_mut() }) else { return JOINT_E_NULL };
        // SAFETY: `item` has `len` readable bytes (or NULL, 0).
        let item = match unsafe { slice(item, len) } {
            Ok(b) => b,
            Err(s) => return s,
        };
        match r.req.yield_item(item) {
            Ok(YieldStatus::Sent) => JOINT_OK,
            Ok(YieldStatus::WouldBlock) => JOINT_WOULD_BLOCK,
            Err(e) => status_of(e.kind),
        }
    })
}

/// Block until `joint_request_yield` has credit (`JOINT_OK`), `timeout_ms` passes without
/// any (`JOINT_WOULD_BLOCK`; -1: no limit), or the call ends (`JOINT_E_CANCELLED`,
/// `JOINT_E_TIMEOUT` for its deadline, `JOINT_E_CLOSED`). For handlers on their own threads
/// (never on the loop thread: credit arrives through it).
#[no_mangle]
pub unsafe extern "C" fn joint_request_wait_writable(req: *const joint_request, timeout_ms: i32) -> joint_status {
    guard(JOINT_E_PANIC, || {
        let Some(r) = request_of(req) else { return JOINT_E_NULL };
        let timeout = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
        match r.req.wait_writable(timeout) {
            Ok(true) => JOINT_OK,
            Ok(false) => JOINT_WOULD_BLOCK,
            Err(e) => status_of(e.kind),
        }
    })
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
/// (-1: no limit): `JOINT_OK` with `*event_out` set and, for VALUE and THROW, `*data_out`
/// holding the value (owned by the caller; NULL otherwise); `JOINT_E_TIMEOUT` if nothing came.
/// For handlers without an event callback; any thread. Values pulled are credited back to
/// the caller. A stock request has no input: it reports `JOINT_INPUT_END` at once.
#[no_mangle]
pub unsafe extern "C" fn joint_request_next_input(
    req: *const joint_request,
    timeout_ms: i32,
    event_out: *mut i32,
    data_out: *mut *mut joint_buf,
) -> joint_status {
    guard(JOINT_E_PANIC, || {
        let Some(r) = request_of(req) else { return JOINT_E_NULL };
        let timeout = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
        match r.req.next_input(timeout) {
            Ok(Some(event)) => {
                let (code, data) = event_code(&event);
                // SAFETY: out-params may be NULL.
                unsafe {
                    put(event_out, code);
                    let buf = if matches!(event, StreamEvent::Input(_) | StreamEvent::Thrown(_)) {
                        Box::into_raw(Box::new(joint_buf { data: data.to_vec() }))
                    } else {
                        std::ptr::null_mut()
                    };
                    if data_out.is_null() {
                        joint_buf_free_internal(buf);
                    } else {
                        *data_out = buf;
                    }
                }
                JOINT_OK
            }
            Ok(None) => JOINT_E_TIMEOUT,
            Err(e) => status_of(e.kind),
        }
    })
}

unsafe fn joint_buf_free_internal(buf: *mut joint_buf) {
    if !buf.is_null() {
        // SAFETY: a buffer just made by Box::into_raw.
        drop(unsafe { Box::from_raw(buf) });
    }
}

/// Receive the call's events (`JOINT_INPUT_*`) through `cb` on the loop thread, inside
/// `joint_ctx_process`, instead of pulling them. Values delivered are credited back to the
/// caller when the callback returns. Only for extended calls (`JOINT_E_UNSUPPORTED`
/// otherwise), only on the loop thread, and a request with an event callback must also be
/// consumed on the loop thread. `free_user_data` runs when the call ends.
#[no_mangle]
pub unsafe extern "C" fn joint_request_set_event_cb(
    req: *mut joint_request,
    cb: joint_request_event_cb,
    user_data: *mut c_void,
    free_user_data: joint_free_fn,
) -> joint_status {
    guard(JOINT_E_PANIC, || {
        let Some(r) = request_of(req) else { return JOINT_E_NULL };
        if r.req.ext().is_none() {
            return JOINT_E_UNSUPPORTED;
        }
        // SAFETY: the context of a request on the loop thread is alive (documented rule).
        let ctx = unsafe { &*r.ctx };
        with_context(ctx, |c| {
            let handler = cb.map(|cb| {
                let ud = UserData::new(user_data, free_user_data);
                Rc::new(move |_ctx: &Context, e: &StreamEvent| {
                    let (code, data) = event_code(e);
                    // SAFETY: a C callback with the documented signature; the request is
                    // alive until its owner consumes it, which must happen on this thread.
                    unsafe { cb(req, code, data.as_ptr(), data.len(), ud.get()) };
                }) as crate::reactor::StreamHandler
            });
            let registered = handler.is_some();
            match c.set_stream_handler(r.req.conn(), r.req.msgid(), handler) {
                Ok(()) => {
                    r.has_event_cb.set(registered);
                    JOINT_OK
                }
                Err(e) => fail(c, &e),
            }
        })
    })
}

/// A C handler's user data, shared with worker threads.
struct PoolUserData(UserData);

// SAFETY: `joint_ctx_register_pool` documents that its user data must be usable from any
// thread; joint itself only passes the pointer along and frees it once.
unsafe impl Send for PoolUserData {}
// SAFETY: as above.
unsafe impl Sync for PoolUserData {}

/// Serve `method` on the worker pool (`joint_config_set_workers` threads) instead of the loop
/// thread, for handlers that block or compute. `cb` runs on a worker thread and owns the
/// request as usual (reply, yield with `joint_request_wait_writable`, pull inputs with
/// `joint_request_next_input` — not `joint_request_set_event_cb` or `joint_request_conn`).
/// `user_data` must be usable from any thread; `free_user_data` runs when the registration
/// is replaced or the context freed (after the workers stop).
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_register_pool(
    ctx: *mut joint_ctx,
    method: *const c_char,
    cb: joint_request_cb,
    user_data: *mut c_void,
    free_user_data: joint_free_fn,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, move |_, c| {
            let method = match c_str(method) {
                Ok(m) => m,
                Err(s) => return s,
            };
            let Some(cb) = cb else { return JOINT_E_NULL };
            let ud = Arc::new(PoolUserData(UserData::new(user_data, free_user_data)));
            let ctx_ptr: *const Context = c;
            let ctx_addr = ctx_ptr as usize;
            c.register_pooled(
                method,
                Arc::new(move |req: Request| {
                    let raw = joint_request::into_raw(req, ctx_addr as *const Context);
                    // SAFETY: a C callback with the documented signature; it takes `raw`.
                    cb(raw, ud.0.get());
                }),
            );
            JOINT_OK
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rpc_codes_match() {
        assert_eq!(super::JOINT_RPC_CANCELLED, crate::protocol::rpc_error::CANCELLED);
        assert_eq!(super::JOINT_RPC_DEADLINE_EXCEEDED, crate::protocol::rpc_error::DEADLINE_EXCEEDED);
        assert_eq!(super::super::JOINT_UDP_MAX_MESSAGE, crate::reactor::transport::UDP_MAX_MESSAGE);
        use crate::codec::call_flags;
        assert_eq!(super::JOINT_CALL_FLAG_ASYNC_FLOW, call_flags::ASYNC_FLOW);
        assert_eq!(super::JOINT_CALL_FLAG_RUN_ISOLATED, call_flags::RUN_ISOLATED);
        assert_eq!(super::JOINT_CALL_FLAG_CLIENT_STREAM, call_flags::CLIENT_STREAM);
    }
}
