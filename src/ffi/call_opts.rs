//! `joint_call_opts`: keyword params, timeouts, streaming and the call event callback.

use std::ffi::c_void;
use std::rc::Rc;
use std::time::Duration;

use super::args::{duration_limit, joint_free_fn, slice, UserData};
use super::conn::{joint_conn, pack_call_id};
use super::ctx::joint_ctx;
use super::handle::{guard, into_handle, take_handle, with_object, Boxed, Castable};
use super::status::*;
use crate::reactor::{CallEvent, CallId, CallOptions, Context};

/// Options for `joint_conn_call_opts` and `joint_conn_call_stream`: keyword params, a
/// timeout that is also the callee's deadline, streaming. Read (copied) by those calls;
/// reusable. Create with `joint_call_opts_new`, free with `joint_call_opts_free`.
pub struct joint_call_opts {
    timeout: Option<Duration>,
    kwargs: Option<Vec<u8>>,
    client_stream: bool,
    window: u32,
    /// Shared with the calls made with it: its user data is freed when the options and every
    /// such call are done with it.
    event: Option<Rc<EventCallback>>,
    manual_credit: bool,
}

impl Castable for joint_call_opts {
    type Ownership = Boxed;
}

struct EventCallback {
    cb: unsafe extern "C" fn(*mut joint_conn, u64, i32, *const u8, usize, *mut c_void),
    user_data: UserData,
}

/// What happens to one of our calls before it completes: `JOINT_CALL_ITEM` (an item the
/// callee streamed: `data`/`len`, borrowed until the callback returns) or `JOINT_CALL_WRITABLE`
/// (`joint_conn_send` may be tried again). `user_data` is the one given to
/// `joint_call_opts_set_event_cb`.
pub type joint_call_event_cb =
    Option<unsafe extern "C" fn(conn: *mut joint_conn, call_id: u64, event: i32, data: *const u8, len: usize, user_data: *mut c_void)>;

/// Call event: an item.
pub const JOINT_CALL_ITEM: i32 = 1;
/// Call event: `joint_conn_send` may be tried again (credit arrived, or the output drained).
pub const JOINT_CALL_WRITABLE: i32 = 2;

/// Call flag: the callee may stream ahead within its window.
pub const JOINT_CALL_FLAG_ASYNC_FLOW: u32 = 1;
/// Call flag: the caller asks for the method to run away from the callee's loop (advisory).
pub const JOINT_CALL_FLAG_RUN_ISOLATED: u32 = 2;
/// Call flag: the caller sends values into the call (it takes input).
pub const JOINT_CALL_FLAG_CLIENT_STREAM: u32 = 4;

/// Create call options (no timeout, no kwargs, no streaming input, the context's window).
/// On success `*opts_out` is owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_new(opts_out: *mut *mut joint_call_opts) -> joint_status {
    guard(
        || JOINT_E_PANIC,
        || {
            if opts_out.is_null() {
                return JOINT_E_NULL;
            }
            let o = joint_call_opts { timeout: None, kwargs: None, client_stream: false, window: 0, event: None, manual_credit: false };
            // SAFETY: checked non-NULL.
            unsafe { *opts_out = into_handle(o) };
            JOINT_OK
        },
    )
}

/// Free call options. NULL is a no-op. Calls made with them are not affected.
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_free(opts: *mut joint_call_opts) {
    // SAFETY: NULL or options from joint_call_opts_new, freed once (caller's promise).
    guard(|| (), || drop(unsafe { take_handle(opts) }))
}

/// Timeout in milliseconds (-1: none, the default; 0 is `JOINT_E_INVAL`). The call fails
/// with `JOINT_E_TIMEOUT` after it; a joint callee gets it as its deadline and stops too.
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_set_timeout_ms(opts: *mut joint_call_opts, timeout_ms: i32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(opts, |o| match duration_limit(timeout_ms) {
            Ok(t) => {
                o.timeout = t;
                JOINT_OK
            }
            Err(s) => s,
        })
    }
}

/// Keyword params: one encoded MessagePack map (copied); `(NULL, 0)` removes them. To a
/// stock peer they travel as the last positional param (or as the params, if there are no
/// positional ones).
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_set_kwargs(opts: *mut joint_call_opts, kwargs: *const u8, len: usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(opts, |o| {
            let bytes = match slice(kwargs, len) {
                Ok(b) => b,
                Err(s) => return s,
            };
            let is_map = |b: &[u8]| crate::codec::validate_object(b, Default::default()).is_ok() && matches!(b[0], 0x80..=0x8f | 0xde | 0xdf);
            if !bytes.is_empty() && !is_map(bytes) {
                return JOINT_E_INVAL;
            }
            o.kwargs = (!bytes.is_empty()).then(|| bytes.to_vec());
            JOINT_OK
        })
    }
}

/// The call takes values sent into it with `joint_conn_send`, then `joint_conn_end_input`.
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_set_client_stream(opts: *mut joint_call_opts, enabled: bool) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_object(opts, |o| set(&mut o.client_stream, enabled)) }
}

/// Items the callee may stream before we grant more (0: the context's window).
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_set_window(opts: *mut joint_call_opts, items: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_object(opts, |o| set(&mut o.window, items)) }
}

/// Receive items and send credit of calls made with these options as they come (inside
/// `joint_ctx_process`). Replaces an earlier callback; a NULL `cb` removes it.
/// `free_user_data` runs once the options are freed or given another callback, and every
/// call made with this one has completed.
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_set_event_cb(
    opts: *mut joint_call_opts,
    cb: joint_call_event_cb,
    user_data: *mut c_void,
    free_user_data: joint_free_fn,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(opts, |o| {
            o.event = cb.map(|cb| Rc::new(EventCallback { cb, user_data: UserData::new(user_data, free_user_data) }));
            JOINT_OK
        })
    }
}

/// Grant credit with `joint_conn_grant` instead of after each item callback returns (for
/// consumers slower than the loop: the callee then waits instead of us buffering).
#[no_mangle]
pub unsafe extern "C" fn joint_call_opts_set_manual_credit(opts: *mut joint_call_opts, enabled: bool) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_object(opts, |o| set(&mut o.manual_credit, enabled)) }
}

fn set<T>(field: &mut T, value: T) -> joint_status {
    *field = value;
    JOINT_OK
}

impl joint_call_opts {
    /// The reactor's options for one call of context `jc` (defaults for NULL options).
    pub(crate) fn for_call(opts: Option<&joint_call_opts>, jc: &joint_ctx) -> CallOptions {
        let Some(o) = opts else { return CallOptions::default() };
        let jc_ptr = jc as *const joint_ctx;
        let on_event = o.event.clone().map(|e| {
            Box::new(move |ctx: &Context, call: CallId, event: CallEvent<'_>| {
                let (kind, data): (i32, &[u8]) = match event {
                    CallEvent::Item(item) => (JOINT_CALL_ITEM, item),
                    CallEvent::Writable => (JOINT_CALL_WRITABLE, &[]),
                };
                // SAFETY: the context's box outlives its reactor, which owns this closure.
                let conn = unsafe { &*jc_ptr }.conn_handle(ctx, call.conn);
                // SAFETY: a C callback with the documented signature; `data` outlives the call.
                unsafe { (e.cb)(conn, pack_call_id(call), kind, data.as_ptr(), data.len(), e.user_data.get()) };
            }) as crate::reactor::CallEventHandler
        });
        CallOptions {
            timeout: o.timeout,
            kwargs: o.kwargs.clone(),
            client_stream: o.client_stream,
            window: o.window,
            on_event,
            manual_credit: o.manual_credit,
            flags: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_and_limits_match_the_protocol() {
        use crate::codec::call_flags;
        assert_eq!(super::JOINT_CALL_FLAG_ASYNC_FLOW, call_flags::ASYNC_FLOW);
        assert_eq!(super::JOINT_CALL_FLAG_RUN_ISOLATED, call_flags::RUN_ISOLATED);
        assert_eq!(super::JOINT_CALL_FLAG_CLIENT_STREAM, call_flags::CLIENT_STREAM);
        assert_eq!(super::super::JOINT_UDP_MAX_MESSAGE, crate::reactor::transport::UDP_MAX_MESSAGE);
    }
}
