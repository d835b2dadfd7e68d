//! `joint_stream`: a call whose streamed items are pulled one at a time (blocking).

use std::cell::Cell;
use std::ffi::c_char;
use std::sync::Arc;

use super::args::{method_and_params, put, wait_limit};
use super::call_opts::joint_call_opts;
use super::conn::{joint_conn, pack_call_id};
use super::ctx::joint_ctx;
use super::handle::{guard, into_handle, take_handle, with_handle, with_ref, Boxed, Castable, InContext, Life, Live};
use super::response::joint_buf;
use super::status::*;
use crate::error::ErrorKind;
use crate::reactor::{CallStream, StreamItem};

/// A call whose items are pulled with `joint_stream_next`. Owned by the caller; free with
/// `joint_stream_free`, before or after `joint_ctx_free`.
pub struct joint_stream {
    life: Arc<Life>,
    stream: CallStream,
    finished: Cell<bool>,
}

impl Castable for joint_stream {
    type Ownership = Boxed;
}

impl InContext for joint_stream {
    fn life(&self) -> Option<&joint_ctx> {
        self.life.get()
    }
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
        with_handle(conn, |h: &joint_conn, live: Live<'_>| {
            if stream_out.is_null() {
                return JOINT_E_NULL;
            }
            let (method, params) = match method_and_params(method, params, params_len) {
                Ok(mp) => mp,
                Err(s) => return s,
            };
            let mut options = joint_call_opts::for_call(opts.as_ref(), live.jc);
            options.on_event = None;
            options.manual_credit = false;
            match live.ctx.call_stream(h.id(), method, params, options) {
                Ok(stream) => {
                    put(stream_out, into_handle(joint_stream { life: live.jc.life_token(), stream, finished: Cell::new(false) }));
                    JOINT_OK
                }
                Err(e) => live.fail(&e),
            }
        })
    }
}

/// Pull the next item, waiting up to `timeout_ms` (-1: no limit; 0: don't wait), running
/// `joint_ctx_process` meanwhile. `JOINT_OK`: `*item_out` holds an item. `JOINT_DONE`: the
/// call finished; `*item_out` holds its result (the stream is over). `JOINT_WOULD_BLOCK`:
/// no item yet, nothing written. `JOINT_E_REMOTE`: the peer answered with an error object,
/// written to `*error_out` if it is not NULL. Other errors: why the call failed (after the
/// end: `JOINT_E_STATE`). Buffers are owned by the caller (`joint_buf_free`).
#[no_mangle]
pub unsafe extern "C" fn joint_stream_next(
    stream: *mut joint_stream,
    timeout_ms: i32,
    item_out: *mut *mut joint_buf,
    error_out: *mut *mut joint_buf,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(stream, |s: &joint_stream, live: Live<'_>| {
            if item_out.is_null() {
                return JOINT_E_NULL;
            }
            if s.finished.get() {
                return live.refuse(JOINT_E_STATE, "the stream has ended");
            }
            let timeout = match wait_limit(timeout_ms) {
                Ok(t) => t,
                Err(st) => return live.refuse(st, "timeout_ms must be -1, 0 or positive"),
            };
            let give = |out: *mut *mut joint_buf, data: Vec<u8>| {
                if !out.is_null() {
                    put(out, into_handle(joint_buf { data }));
                }
            };
            match s.stream.next(live.ctx, timeout) {
                Ok(Some(StreamItem::Item(v))) => {
                    give(item_out, v);
                    JOINT_OK
                }
                Ok(Some(StreamItem::Done(v))) => {
                    s.finished.set(true);
                    give(item_out, v);
                    JOINT_DONE
                }
                Ok(None) => JOINT_WOULD_BLOCK,
                Err((e, obj)) => {
                    if e.kind != ErrorKind::Recursive {
                        s.finished.set(true);
                    }
                    if e.kind == ErrorKind::Remote {
                        give(error_out, obj);
                    }
                    live.fail(&e)
                }
            }
        })
    }
}

/// The id of the stream's call (for `joint_conn_send`, `joint_conn_cancel`, ...). 0 if
/// `stream` is NULL.
#[no_mangle]
pub unsafe extern "C" fn joint_stream_call_id(stream: *const joint_stream) -> u64 {
    // SAFETY: forwarded caller promise.
    unsafe { with_ref(stream, |s: &joint_stream| pack_call_id(s.stream.call_id())) }
}

/// Free a stream; a call still running is cancelled. NULL is a no-op. Works before or after
/// `joint_ctx_free`.
#[no_mangle]
pub unsafe extern "C" fn joint_stream_free(stream: *mut joint_stream) {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(stream, |s: &joint_stream, live: Live<'_>| {
            if !s.finished.get() {
                live.ctx.cancel(s.stream.call_id());
            }
        })
    };
    // SAFETY: NULL or a stream from joint_conn_call_stream, freed once (caller's promise).
    guard(|| (), || drop(unsafe { take_handle(stream) }))
}
