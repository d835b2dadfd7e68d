//! Connections, calls, notifications and responses.

use std::ffi::{c_char, c_void, CStr, CString};
use std::time::Duration;

use super::ctx::{conn_ptr, handle_ref, on_ctx};
use super::*;
use crate::reactor::{ConnId, Response};

/// A connection. Connections made with `joint_ctx_connect`, `joint_ctx_spawn` or
/// `joint_ctx_open_stdio` are owned by the caller until `joint_conn_free`; they stay valid
/// (closed) after the peer goes away. Connections accepted by a listener are owned by the
/// context and valid until their CLOSED callback returns.
pub struct joint_conn {
    _private: [u8; 0],
}

/// The outcome of a call, borrowed by `joint_response_cb` until it returns. Read it with
/// `joint_response_status`, `joint_response_result`, `joint_response_error`,
/// `joint_response_message`, `joint_response_call_id`.
pub struct joint_response {
    status: joint_status,
    result: *const u8,
    result_len: usize,
    error: *const u8,
    error_len: usize,
    message: Option<CString>,
    call_id: u64,
}

/// Bytes owned by the caller (a result of a blocking call). Read with `joint_buf_data`, free
/// with `joint_buf_free`.
pub struct joint_buf {
    pub(crate) data: Vec<u8>,
}

/// Completes a call, exactly once: with the result, the peer's error, a timeout, the loss of
/// the connection, a cancellation, or the context being freed. `conn` and `resp` are valid
/// until the callback returns.
pub type joint_response_cb = Option<unsafe extern "C" fn(conn: *mut joint_conn, resp: *const joint_response, user_data: *mut c_void)>;

/// Run `f` on a connection pointer's context and id.
pub(crate) unsafe fn on_conn(conn: *const joint_conn, f: impl FnOnce(&Context, ConnId) -> joint_status) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: NULL or a live connection (caller's promise).
        let Some(h) = (unsafe { handle_ref(conn) }) else { return JOINT_E_NULL };
        // SAFETY: a connection's context outlives its handle.
        let ctx = unsafe { &*h.ctx };
        with_context(ctx, |c| f(c, h.id))
    })
}

fn new_conn(c: &Context, made: crate::error::Result<ConnId>, conn_out: *mut *mut joint_conn) -> joint_status {
    match made {
        Ok(id) => {
            // SAFETY: out-param checked by the caller of this helper.
            unsafe { put(conn_out, conn_ptr(c, id)) };
            JOINT_OK
        }
        Err(e) => fail(c, &e),
    }
}

/// Connect to `uri` (`tcp://HOST:PORT`, `tcp://[::1]:PORT`, `unix:///path`, or
/// `udp://HOST:PORT`: one message per datagram, at most 65507 bytes, no delivery guarantee —
/// use call timeouts) without blocking (host names are resolved with the system resolver, which may block). Calls may
/// be made at once; they are sent when the connection is up. Errors known at once (bad
/// address, missing Unix socket) are returned; later ones (refused, timeout) close the
/// connection: its calls fail and the connection callback gets CLOSED. On success
/// `*conn_out` is owned by the caller (`joint_conn_free`).
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_connect(ctx: *mut joint_ctx, uri: *const c_char, conn_out: *mut *mut joint_conn) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, |_, c| {
            if conn_out.is_null() {
                return JOINT_E_NULL;
            }
            match c_str(uri) {
                Ok(u) => new_conn(c, c.connect(&String::from_utf8_lossy(u)), conn_out),
                Err(s) => s,
            }
        })
    }
}

/// Start `argv[0]` (searched in PATH) with the NULL-terminated arguments `argv`, and talk
/// MessagePack-RPC over its stdin and stdout (its stderr is inherited), as `nvim --embed`
/// needs. On success `*conn_out` is owned by the caller; freeing it closes the child's
/// stdin, and the child is reaped when it exits.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_spawn(ctx: *mut joint_ctx, argv: *const *const c_char, conn_out: *mut *mut joint_conn) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, |_, c| {
            if conn_out.is_null() || argv.is_null() {
                return JOINT_E_NULL;
            }
            let mut args = Vec::new();
            let mut i = 0;
            loop {
                // SAFETY: argv is NULL-terminated (caller's promise).
                let p = *argv.add(i);
                if p.is_null() {
                    break;
                }
                args.push(String::from_utf8_lossy(CStr::from_ptr(p).to_bytes()).into_owned());
                i += 1;
            }
            if args.is_empty() {
                c.set_last_error("argv is empty");
                return JOINT_E_INVAL;
            }
            new_conn(c, c.spawn(&args), conn_out)
        })
    }
}

/// Talk MessagePack-RPC over this process's stdin and stdout (for a server started by its
/// client, as Neovim starts plugins). The fds are duplicated; O_NONBLOCK is set on them.
/// On success `*conn_out` is owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_open_stdio(ctx: *mut joint_ctx, conn_out: *mut *mut joint_conn) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, |_, c| {
            if conn_out.is_null() {
                return JOINT_E_NULL;
            }
            new_conn(c, c.open_stdio(), conn_out)
        })
    }
}

/// Release a connection made with `joint_ctx_connect`, `joint_ctx_spawn` or
/// `joint_ctx_open_stdio`. If it is open it is closed: its pending calls complete with
/// `JOINT_E_CANCELLED` during the next `joint_ctx_process` (no CLOSED event follows).
/// NULL, and connections accepted by a listener, are ignored.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_free(conn: *mut joint_conn) {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_conn(conn, |c, id| {
            c.release(id);
            JOINT_OK
        });
    }
}

/// Close a connection (any kind): pending calls complete with `JOINT_E_CANCELLED` and the
/// CLOSED event follows, both during the next `joint_ctx_process`.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_close(conn: *mut joint_conn) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_conn(conn, |c, id| match c.close(id) {
            Ok(()) => JOINT_OK,
            Err(e) => fail(c, &e),
        })
    }
}

/// Whether new calls can be made on the connection (it is connecting or open).
#[no_mangle]
pub unsafe extern "C" fn joint_conn_is_open(conn: *const joint_conn) -> bool {
    // SAFETY: forwarded caller promise.
    guard(false, || unsafe { handle_ref(conn) }.is_some_and(|h| unsafe { &*h.ctx }.is_open(h.id)))
}

/// Attach application data to a connection (joint never touches it).
#[no_mangle]
pub unsafe extern "C" fn joint_conn_set_user_data(conn: *mut joint_conn, user_data: *mut c_void) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: NULL or a live connection.
        match unsafe { handle_ref(conn) } {
            Some(h) => {
                h.user_data.set(user_data as usize);
                JOINT_OK
            }
            None => JOINT_E_NULL,
        }
    })
}

/// The data attached with `joint_conn_set_user_data` (NULL if none).
#[no_mangle]
pub unsafe extern "C" fn joint_conn_user_data(conn: *const joint_conn) -> *mut c_void {
    // SAFETY: NULL or a live connection.
    guard(std::ptr::null_mut(), || unsafe { handle_ref(conn) }.map_or(std::ptr::null_mut(), |h| h.user_data.get() as *mut c_void))
}

/// Call `method` (NUL-terminated) with `params`: one encoded MessagePack array (or a map, for
/// servers that take keyword params); `(NULL, 0)` sends `[]`. Both are copied.
/// `timeout_ms` > 0 fails the call with `JOINT_E_TIMEOUT` after that long; 0 or -1 means no
/// timeout. `cb` (may be NULL: the result is discarded) runs exactly once, inside
/// `joint_ctx_process` or `joint_ctx_free`. If this returns an error, `cb` never runs.
/// `call_id_out` (may be NULL) receives an id for `joint_conn_cancel`.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_call(
    conn: *mut joint_conn,
    method: *const c_char,
    params: *const u8,
    params_len: usize,
    timeout_ms: i32,
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
            let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms as u64));
            let done = Box::new(move |ctx: &Context, r: Response<'_>| {
                if let Some(cb) = cb {
                    let resp = joint_response::from_response(&r);
                    // SAFETY: a C callback with the documented signature; `resp` and the
                    // buffers it points into outlive the call.
                    cb(conn_ptr(ctx, r.call.conn), &resp, user_data);
                }
            });
            match c.call(id, method, params, timeout, done) {
                Ok(call) => {
                    put(call_id_out, call.to_u64());
                    JOINT_OK
                }
                Err(e) => fail(c, &e),
            }
        })
    }
}

impl joint_response {
    pub(super) fn from_response(r: &Response<'_>) -> Self {
        match &r.outcome {
            Ok(result) => joint_response {
                status: JOINT_OK,
                result: result.as_ptr(),
                result_len: result.len(),
                error: crate::codec::NIL.as_ptr(),
                error_len: 1,
                message: None,
                call_id: r.call.to_u64(),
            },
            Err(e) => joint_response {
                status: status_of(e.kind),
                result: crate::codec::NIL.as_ptr(),
                result_len: 1,
                error: if e.error.is_empty() { crate::codec::NIL.as_ptr() } else { e.error.as_ptr() },
                error_len: e.error.len().max(1),
                message: CString::new(e.message.replace('\0', " ")).ok(),
                call_id: r.call.to_u64(),
            },
        }
    }
}

/// Cancel a pending call: it completes with `JOINT_E_CANCELLED` during the next
/// `joint_ctx_process`; a late response is ignored. `JOINT_E_STATE` if it is not pending.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_cancel(conn: *mut joint_conn, call_id: u64) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_conn(conn, |c, id| {
            if c.cancel(c.call_from_u64(id, call_id)) {
                JOINT_OK
            } else {
                c.set_last_error("the call is not pending (it completed or was cancelled)");
                JOINT_E_STATE
            }
        })
    }
}

/// Send a notification (no response). `params` as for `joint_conn_call`.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_notify(conn: *mut joint_conn, method: *const c_char, params: *const u8, params_len: usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_conn(conn, |c, id| {
            let (method, params) = match method_and_params(method, params, params_len) {
                Ok(mp) => mp,
                Err(s) => return s,
            };
            match c.notify(id, method, params) {
                Ok(()) => JOINT_OK,
                Err(e) => fail(c, &e),
            }
        })
    }
}

/// Call and wait (running `joint_ctx_process` meanwhile, so other callbacks run too).
/// On `JOINT_OK`, `*result_out` receives the result. On `JOINT_E_REMOTE`, `*error_out` (if
/// not NULL) receives the peer's error object. Both are owned by the caller
/// (`joint_buf_free`). Other errors are described by `joint_ctx_last_error`.
/// `timeout_ms` as for `joint_conn_call`. From a callback: `JOINT_E_RECURSIVE`.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_call_sync(
    conn: *mut joint_conn,
    method: *const c_char,
    params: *const u8,
    params_len: usize,
    timeout_ms: i32,
    result_out: *mut *mut joint_buf,
    error_out: *mut *mut joint_buf,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_conn(conn, |c, id| {
            if result_out.is_null() {
                return JOINT_E_NULL;
            }
            let (method, params) = match method_and_params(method, params, params_len) {
                Ok(mp) => mp,
                Err(s) => return s,
            };
            let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms as u64));
            match c.call_blocking(id, method, params, timeout) {
                Ok(result) => {
                    put(result_out, Box::into_raw(Box::new(joint_buf { data: result })));
                    JOINT_OK
                }
                Err((e, error_obj)) => {
                    if e.kind == crate::error::ErrorKind::Remote && !error_out.is_null() {
                        put(error_out, Box::into_raw(Box::new(joint_buf { data: error_obj })));
                    }
                    fail(c, &e)
                }
            }
        })
    }
}

/// `JOINT_OK` with a result; `JOINT_E_REMOTE` when the peer answered with an error object;
/// otherwise why the call failed (`JOINT_E_TIMEOUT`, `JOINT_E_CLOSED`, `JOINT_E_CANCELLED`,
/// `JOINT_E_CONNREFUSED`, `JOINT_E_TOO_LARGE`, `JOINT_E_PROTOCOL`, ...).
#[no_mangle]
pub unsafe extern "C" fn joint_response_status(resp: *const joint_response) -> joint_status {
    // SAFETY: NULL or the response passed to the running callback.
    guard(JOINT_E_PANIC, || unsafe { resp.as_ref() }.map_or(JOINT_E_NULL, |r| r.status))
}

/// The result object (MessagePack; nil unless the status is `JOINT_OK`). Borrowed until the
/// callback returns.
#[no_mangle]
pub unsafe extern "C" fn joint_response_result(resp: *const joint_response, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: NULL or the response passed to the running callback.
        let Some(r) = (unsafe { resp.as_ref() }) else { return JOINT_E_NULL };
        // SAFETY: the result buffer is alive for the callback; out-params may be NULL.
        unsafe { put_slice(std::slice::from_raw_parts(r.result, r.result_len), data_out, len_out) };
        JOINT_OK
    })
}

/// The peer's error object as sent (MessagePack; nil unless the status is
/// `JOINT_E_REMOTE`). Borrowed until the callback returns. See `joint_error_message`.
#[no_mangle]
pub unsafe extern "C" fn joint_response_error(resp: *const joint_response, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: NULL or the response passed to the running callback.
        let Some(r) = (unsafe { resp.as_ref() }) else { return JOINT_E_NULL };
        // SAFETY: the error buffer is alive for the callback; out-params may be NULL.
        unsafe { put_slice(std::slice::from_raw_parts(r.error, r.error_len), data_out, len_out) };
        JOINT_OK
    })
}

/// A readable description of a failure (for `JOINT_E_REMOTE`, the message found in the
/// error object), "" on success. Borrowed until the callback returns.
#[no_mangle]
pub unsafe extern "C" fn joint_response_message(resp: *const joint_response) -> *const c_char {
    // SAFETY: NULL or the response passed to the running callback.
    guard(c"".as_ptr(), || unsafe { resp.as_ref() }.and_then(|r| r.message.as_ref()).map_or(c"".as_ptr(), |m| m.as_ptr()))
}

/// The id `joint_conn_call` returned for this call.
#[no_mangle]
pub unsafe extern "C" fn joint_response_call_id(resp: *const joint_response) -> u64 {
    // SAFETY: NULL or the response passed to the running callback.
    guard(0, || unsafe { resp.as_ref() }.map_or(0, |r| r.call_id))
}

/// The bytes of a buffer, borrowed until `joint_buf_free`.
#[no_mangle]
pub unsafe extern "C" fn joint_buf_data(buf: *const joint_buf, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: NULL or a live buffer.
        let Some(b) = (unsafe { buf.as_ref() }) else { return JOINT_E_NULL };
        // SAFETY: out-params may be NULL.
        unsafe { put_slice(&b.data, data_out, len_out) };
        JOINT_OK
    })
}

/// Free a buffer. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn joint_buf_free(buf: *mut joint_buf) {
    guard((), || {
        if !buf.is_null() {
            // SAFETY: a buffer handed out by joint, freed once (caller's promise).
            drop(unsafe { Box::from_raw(buf) });
        }
    })
}
