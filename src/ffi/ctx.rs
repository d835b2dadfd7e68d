//! Configuration, contexts, listeners, handler registration and timers.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CString};
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::codec::Params;
use crate::reactor::{Config, ConnEvent, ConnHandle, ConnId, ListenerId, LogLevel, Request};

/// Options for new contexts. Create with `joint_config_new`, adjust with the setters, pass to
/// `joint_ctx_new` (which copies it), free with `joint_config_free`.
pub struct joint_config {
    config: Config,
}

/// A context: connections, listeners, handlers and timers driven through one pollable fd.
///
/// Methods: `joint_ctx_fd`, `joint_ctx_timeout_ms`, `joint_ctx_process`, `joint_ctx_wait`,
/// `joint_ctx_wakeup`, `joint_ctx_connect`, `joint_ctx_spawn`, `joint_ctx_open_stdio`,
/// `joint_ctx_listen`, `joint_ctx_register`, `joint_ctx_set_*`, `joint_ctx_add_timer`,
/// `joint_ctx_last_error`, `joint_ctx_free`.
pub struct joint_ctx {
    ctx: Box<Context>,
    listeners: RefCell<Vec<*mut joint_listener>>,
}

/// A listening socket; owned by its context. Valid until `joint_listener_close` or
/// `joint_ctx_free`.
pub struct joint_listener {
    ctx: *const joint_ctx,
    id: ListenerId,
    uri: CString,
}

/// Receives log lines: `level` is one of `JOINT_LOG_*`, `message` is valid during the call.
pub type joint_log_cb = Option<unsafe extern "C" fn(level: i32, message: *const c_char, user_data: *mut c_void)>;

/// Serves a request. The callback owns `req` and must pass it exactly once to
/// `joint_request_reply`, `joint_request_reply_error`, `joint_request_reply_error_msg` or
/// `joint_request_free` — now, later, or from another thread.
pub type joint_request_cb = Option<unsafe extern "C" fn(req: *mut joint_request, user_data: *mut c_void)>;

/// Receives a notification. `method` (not NUL-terminated, str or bin as the peer sent it) and
/// `params` (the params object as sent: an array, or a map for keyword params) are borrowed
/// until the callback returns.
pub type joint_notification_cb = Option<
    unsafe extern "C" fn(conn: *mut joint_conn, method: *const u8, method_len: usize, params: *const u8, params_len: usize, user_data: *mut c_void),
>;

/// A connection opened (`JOINT_CONN_OPEN`: connected or accepted; `status` is `JOINT_OK`) or
/// closed (`JOINT_CONN_CLOSED`: `status` says why, `reason` describes it). `reason` is valid
/// during the call. After the CLOSED callback of an accepted connection returns, `conn` is
/// freed.
pub type joint_conn_cb =
    Option<unsafe extern "C" fn(conn: *mut joint_conn, event: i32, status: joint_status, reason: *const c_char, user_data: *mut c_void)>;

/// A timer fired. Its `free_user_data`, if any, runs right after.
pub type joint_timer_cb = Option<unsafe extern "C" fn(ctx: *mut joint_ctx, user_data: *mut c_void)>;

/// Connection event: opened.
pub const JOINT_CONN_OPEN: i32 = 1;
/// Connection event: closed.
pub const JOINT_CONN_CLOSED: i32 = 2;

/// The largest message sent or accepted over UDP (one message per datagram), in bytes.
pub const JOINT_UDP_MAX_MESSAGE: usize = 65507;

/// Log level: errors.
pub const JOINT_LOG_ERROR: i32 = 1;
/// Log level: warnings (for example malformed messages from peers).
pub const JOINT_LOG_WARN: i32 = 2;
/// Log level: connection life cycle.
pub const JOINT_LOG_INFO: i32 = 3;
/// Log level: everything.
pub const JOINT_LOG_DEBUG: i32 = 4;

fn level_of(l: LogLevel) -> i32 {
    l as i32
}

/// Create a configuration with the defaults: 64 MiB maximum message size, nesting depth 128,
/// 65536 calls in flight per connection and direction, 10 s connect timeout, a 256 MiB
/// memory budget, a 1 MiB output high-water mark, 4096 connections, a 30 s message timeout,
/// no idle timeout, a 5 s linger, a listen backlog of 1024, no logging (unless the JOINT_LOG
/// environment variable is set).
/// On success `*config_out` is owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn joint_config_new(config_out: *mut *mut joint_config) -> joint_status {
    guard(JOINT_E_PANIC, || {
        if config_out.is_null() {
            return JOINT_E_NULL;
        }
        let cfg = Box::into_raw(Box::new(joint_config { config: Config::default() }));
        // SAFETY: checked non-NULL.
        unsafe { *config_out = cfg };
        JOINT_OK
    })
}

/// Free a configuration. NULL is a no-op. Contexts created from it are not affected.
#[no_mangle]
pub unsafe extern "C" fn joint_config_free(config: *mut joint_config) {
    guard((), || {
        if !config.is_null() {
            // SAFETY: created by joint_config_new and freed once (caller's promise).
            drop(unsafe { Box::from_raw(config) });
        }
    })
}

/// Apply a setting that cannot fail.
pub(crate) unsafe fn with_config_pub(config: *mut joint_config, f: impl FnOnce(&mut Config)) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_config(config, |c| {
            f(c);
            JOINT_OK
        })
    }
}

unsafe fn with_config(config: *mut joint_config, f: impl FnOnce(&mut Config) -> joint_status) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: a live joint_config from joint_config_new (caller's promise), or NULL.
        match unsafe { config.as_mut() } {
            Some(c) => f(&mut c.config),
            None => JOINT_E_NULL,
        }
    })
}

/// Largest message accepted or sent, in bytes (at least 64). Larger incoming requests are
/// answered with a `JOINT_RPC_TOO_LARGE` error and skipped; the connection stays open.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_max_message_size(config: *mut joint_config, bytes: usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_config(config, |c| {
            if bytes < 64 {
                return JOINT_E_INVAL;
            }
            c.limits.frame.max_message_size = bytes;
            JOINT_OK
        })
    }
}

/// Deepest nesting of arrays and maps accepted in a message (the RPC envelope counts as one
/// level; at least 2). A deeper message closes its connection (after an error reply when
/// its msgid is known).
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_max_depth(config: *mut joint_config, depth: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_config(config, |c| {
            if depth < 2 {
                return JOINT_E_INVAL;
            }
            c.limits.frame.max_depth = depth;
            JOINT_OK
        })
    }
}

/// Most requests from a peer left unanswered at once per connection (excess ones get a
/// `JOINT_RPC_TOO_MANY_REQUESTS` error), and most calls pending per connection (excess
/// `joint_conn_call` returns `JOINT_E_LIMIT`). At least 1.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_max_inflight(config: *mut joint_config, calls: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_config(config, |c| {
            if calls == 0 {
                return JOINT_E_INVAL;
            }
            c.limits.max_inflight = calls as usize;
            JOINT_OK
        })
    }
}

/// Connect timeout in milliseconds; -1 leaves it to the operating system.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_connect_timeout_ms(config: *mut joint_config, timeout_ms: i32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_config(config, |c| {
            c.connect_timeout = match timeout_ms {
                -1 => None,
                ms if ms >= 0 => Some(Duration::from_millis(ms as u64)),
                _ => return JOINT_E_INVAL,
            };
            JOINT_OK
        })
    }
}

/// The memory budget, in bytes (at least 1 MiB; default 256 MiB): what all connections of a
/// context together may make it hold — input buffers, reassembly of fragmented messages,
/// queued output, answers on their way to the loop, and requests a handler holds. When it is
/// spent, connections holding more than 64 KiB stop being read until memory is given back
/// (their peers see TCP back-pressure), and an answer that does not fit is replaced by a
/// `JOINT_RPC_RESOURCE_EXHAUSTED` error. See docs/c-api-conventions.md, "Memory".
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_memory_budget(config: *mut joint_config, bytes: usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set_checked(config, bytes >= 1 << 20, |c| c.memory_budget = bytes) }
}

/// Output high-water mark, in bytes (at least 1; default 1 MiB): while more than this is
/// queued for a connection, its requests are not read or dispatched, until the output drains
/// to half of it. A peer that does not read is slowed down, not buffered for.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_output_high_water(config: *mut joint_config, bytes: usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set_checked(config, bytes >= 1, |c| c.output_high_water = bytes) }
}

/// Most open connections of a context, accepted and opened together (at least 1; default
/// 4096). A connection accepted beyond it is closed at once (its client sees the close).
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_max_connections(config: *mut joint_config, connections: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set_checked(config, connections >= 1, |c| c.max_connections = connections as usize) }
}

/// Message timeout in milliseconds (default 30000; -1: none): a message must arrive whole
/// within this long of its first byte, and queued output must make progress within it, or
/// the connection closes (`JOINT_E_TIMEOUT` / `JOINT_E_LIMIT` in its close event).
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_message_timeout_ms(config: *mut joint_config, timeout_ms: i32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set_checked(config, timeout_ms == -1 || timeout_ms > 0, |c| c.message_timeout = millis(timeout_ms)) }
}

/// Idle timeout in milliseconds (default -1: none): a connection with no traffic either way,
/// no unanswered requests and no pending calls for this long is closed.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_idle_timeout_ms(config: *mut joint_config, timeout_ms: i32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set_checked(config, timeout_ms == -1 || timeout_ms > 0, |c| c.idle_timeout = millis(timeout_ms)) }
}

/// Linger in milliseconds (default 5000; 0: none): after a peer closed its end, how long the
/// requests it sent may still be answered; then they are cancelled
/// (`joint_request_is_cancelled` says so, answering does nothing) and the connection is
/// freed.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_linger_ms(config: *mut joint_config, linger_ms: i32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set_checked(config, linger_ms >= 0, |c| c.linger = Duration::from_millis(linger_ms.max(0) as u64)) }
}

/// Connections the kernel queues for each listener until they are accepted (at least 1;
/// default 1024, capped by the system's `net.core.somaxconn`).
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_listen_backlog(config: *mut joint_config, backlog: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set_checked(config, (1..=i32::MAX as u32).contains(&backlog), |c| c.listen_backlog = backlog) }
}

/// `Some(ms)` for a positive timeout, `None` for -1.
fn millis(ms: i32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms as u64))
}

/// Apply `set` if `valid`, else `JOINT_E_INVAL`.
unsafe fn set_checked(config: *mut joint_config, valid: bool, set: impl FnOnce(&mut Config)) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_config(config, |c| {
            if !valid {
                return JOINT_E_INVAL;
            }
            set(c);
            JOINT_OK
        })
    }
}

/// Send log lines up to `level` (`JOINT_LOG_*`) to `cb`, which runs on the thread calling
/// `joint_ctx_process`. `free_user_data` runs when the last context using it is freed (or the
/// config, if no context was created). A NULL `cb` turns logging off.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_log_cb(
    config: *mut joint_config,
    level: i32,
    cb: joint_log_cb,
    user_data: *mut c_void,
    free_user_data: joint_free_fn,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_config(config, move |c| {
            c.log_level = match level {
                JOINT_LOG_ERROR => LogLevel::Error,
                JOINT_LOG_WARN => LogLevel::Warn,
                JOINT_LOG_INFO => LogLevel::Info,
                JOINT_LOG_DEBUG => LogLevel::Debug,
                // Turning logging off: the level does not matter.
                _ if cb.is_none() => c.log_level,
                _ => return JOINT_E_INVAL,
            };
            c.log = cb.map(|cb| {
                let ud = UserData::new(user_data, free_user_data);
                Rc::new(move |level: LogLevel, message: &str| {
                    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
                    // SAFETY: a C callback with the documented signature; text lives across the call.
                    cb(level_of(level), text.as_ptr(), ud.get());
                }) as crate::reactor::LogSink
            });
            JOINT_OK
        })
    }
}

/// Create a context. `config` is copied (NULL: defaults). On success `*ctx_out` is owned by
/// the caller; free it with `joint_ctx_free`.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_new(config: *const joint_config, ctx_out: *mut *mut joint_ctx) -> joint_status {
    guard(JOINT_E_PANIC, || {
        if ctx_out.is_null() {
            return JOINT_E_NULL;
        }
        // SAFETY: NULL or a live joint_config (caller's promise).
        let config = unsafe { config.as_ref() }.map(|c| c.config.clone()).unwrap_or_default();
        match Context::new(config) {
            Ok(ctx) => {
                let raw = Box::into_raw(Box::new(joint_ctx { ctx, listeners: RefCell::new(Vec::new()) }));
                // SAFETY: checked non-NULL.
                unsafe { *ctx_out = raw };
                JOINT_OK
            }
            Err(e) => status_of(e.kind),
        }
    })
}

/// Free a context. Every pending call completes with `JOINT_E_CANCELLED`, open connections
/// get a CLOSED event, registered `free_user_data` functions run, and every fd is closed.
/// Every connection and listener handle of the context becomes invalid: free your
/// connections before the context, not after.
/// Child processes get 0.5 s to exit after their stdin closes, then are killed. Requests
/// still held by the application stay valid; answering them does nothing. NULL is a no-op.
/// Must not be called from a callback of this context (such a call is ignored).
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_free(ctx: *mut joint_ctx) {
    guard((), || {
        if ctx.is_null() {
            return;
        }
        // SAFETY: a live context (caller's promise).
        if unsafe { &*ctx }.ctx.is_dispatching() {
            return;
        }
        // SAFETY: created by joint_ctx_new, freed once (caller's promise).
        let owned = unsafe { Box::from_raw(ctx) };
        for l in owned.listeners.borrow_mut().drain(..) {
            // SAFETY: listener handles are boxes owned by this context.
            drop(unsafe { Box::from_raw(l) });
        }
        drop(owned);
    })
}

pub(crate) unsafe fn ctx_ref<'a>(ctx: *const joint_ctx) -> Option<&'a joint_ctx> {
    // SAFETY: NULL or a live context (caller's promise).
    unsafe { ctx.as_ref() }
}

/// Run `f` on a context pointer: NULL and poisoned contexts are refused, panics poison.
pub(crate) unsafe fn on_ctx(ctx: *const joint_ctx, f: impl FnOnce(&joint_ctx, &Context) -> joint_status) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: forwarded caller promise.
        let Some(c) = (unsafe { ctx_ref(ctx) }) else { return JOINT_E_NULL };
        with_context(&c.ctx, |inner| f(c, inner))
    })
}

/// Detail of the last error on this context (or on one of its connections), NUL-terminated,
/// "" if none. Owned by the context; valid until the next call on it.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_last_error(ctx: *const joint_ctx) -> *const c_char {
    guard(c"".as_ptr(), || {
        // SAFETY: NULL or a live context.
        match unsafe { ctx_ref(ctx) } {
            Some(c) => c.ctx.last_error_ptr(),
            None => c"".as_ptr(),
        }
    })
}

/// The fd to watch for readability (level-triggered: it stays readable while
/// `joint_ctx_process` has work). Stable for the context's lifetime; never read, write or
/// close it. -1 if `ctx` is NULL.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_fd(ctx: *const joint_ctx) -> i32 {
    // SAFETY: NULL or a live context.
    guard(-1, || unsafe { ctx_ref(ctx) }.map_or(-1, |c| c.ctx.fd()))
}

/// Milliseconds until `joint_ctx_process` must run even if the fd stays quiet: -1 no
/// deadline, 0 now. Rounded up. Query again after every `joint_ctx_process`.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_timeout_ms(ctx: *const joint_ctx) -> i32 {
    // SAFETY: NULL or a live context.
    guard(0, || unsafe { ctx_ref(ctx) }.map_or(-1, |c| c.ctx.timeout_ms()))
}

/// Run ready I/O, due timers and callbacks; never blocks. Callbacks run only in here (and in
/// `joint_ctx_free`). Returns an error only for context-level failures; connection and call
/// failures are reported through their callbacks. From a callback: `JOINT_E_RECURSIVE`.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_process(ctx: *mut joint_ctx) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, |_, c| match c.process() {
            Ok(()) => JOINT_OK,
            Err(e) => fail(c, &e),
        })
    }
}

/// Wait until the fd is readable or `timeout_ms` passes (-1: no limit other than the next
/// timer), then run `joint_ctx_process`. For programs without their own event loop.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_wait(ctx: *mut joint_ctx, timeout_ms: i32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, |_, c| {
            let timeout = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
            match c.wait(timeout) {
                Ok(()) => JOINT_OK,
                Err(e) => fail(c, &e),
            }
        })
    }
}

/// Make the fd readable so the loop calls `joint_ctx_process` soon. Safe from any thread and
/// async-signal-safe (an atomic flag and a write to an eventfd; no lock, no allocation).
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_wakeup(ctx: *const joint_ctx) -> joint_status {
    guard(JOINT_E_PANIC, || {
        if ctx.is_null() {
            return JOINT_E_NULL;
        }
        // SAFETY: only the `ctx` box pointer and the context's immutable `shared` Arc are
        // read; both are set at creation and never change, so reading them from another
        // thread does not race with the loop thread.
        let shared = unsafe { &*std::ptr::addr_of!((*ctx).ctx) }.waker();
        shared.wake();
        JOINT_OK
    })
}

/// Listen on `uri`: `tcp://HOST:PORT` (port 0 picks a free port; IPv6 as `tcp://[::1]:PORT`),
/// `unix:///path` (the socket file must not exist; it is removed when the listener closes),
/// or `udp://HOST:PORT` (one message per datagram, at most 65507 bytes; each remote address
/// becomes a connection, forgotten after 60 s idle). Accepted connections are served by the registered handlers and reported to the
/// connection callback. `listener_out` may be NULL; the listener is owned by the context.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_listen(ctx: *mut joint_ctx, uri: *const c_char, listener_out: *mut *mut joint_listener) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, |jc, c| {
            let uri = match c_str(uri) {
                Ok(u) => String::from_utf8_lossy(u).into_owned(),
                Err(s) => return s,
            };
            match c.listen(&uri) {
                Ok(id) => {
                    let bound = c.listener_uri(id).unwrap_or_default();
                    let l = Box::into_raw(Box::new(joint_listener { ctx: jc, id, uri: CString::new(bound).unwrap_or_default() }));
                    jc.listeners.borrow_mut().push(l);
                    put(listener_out, l);
                    JOINT_OK
                }
                Err(e) => fail(c, &e),
            }
        })
    }
}

/// Begin a graceful shutdown: every listener closes (their handles are freed), and requests
/// that arrive from now on are answered with a `JOINT_RPC_SHUTTING_DOWN` error. Requests
/// already received, calls, and open connections are unaffected: keep processing until
/// `joint_ctx_unanswered` is 0, then free the context.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_shutdown(ctx: *mut joint_ctx) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, |jc, c| {
            c.shutdown();
            for l in jc.listeners.borrow_mut().drain(..) {
                // SAFETY: listener handles are boxes owned by this context.
                drop(Box::from_raw(l));
            }
            JOINT_OK
        })
    }
}

/// Requests received on this context's connections and not answered yet (for a graceful
/// shutdown: process until it is 0).
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_unanswered(ctx: *const joint_ctx) -> usize {
    // SAFETY: NULL or a live context.
    guard(0, || unsafe { ctx_ref(ctx) }.map_or(0, |c| c.ctx.unanswered_requests()))
}

/// The listener's address as a URI, with the real port (for example "tcp://127.0.0.1:41234").
/// Owned by the listener. "" if `listener` is NULL.
#[no_mangle]
pub unsafe extern "C" fn joint_listener_uri(listener: *const joint_listener) -> *const c_char {
    // SAFETY: NULL or a live listener.
    guard(c"".as_ptr(), || unsafe { listener.as_ref() }.map_or(c"".as_ptr(), |l| l.uri.as_ptr()))
}

/// Stop listening and free the listener (connections it accepted stay open). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn joint_listener_close(listener: *mut joint_listener) -> joint_status {
    guard(JOINT_E_PANIC, || {
        // SAFETY: NULL or a live listener.
        let Some(l) = (unsafe { listener.as_ref() }) else { return JOINT_OK };
        // SAFETY: a listener's context outlives it.
        let jc = unsafe { &*l.ctx };
        jc.listeners.borrow_mut().retain(|&p| p != listener);
        let status = with_context(&jc.ctx, |c| match c.close_listener(l.id) {
            Ok(()) => JOINT_OK,
            Err(e) => fail(c, &e),
        });
        // SAFETY: removed from the context's list above, so freed exactly once.
        drop(unsafe { Box::from_raw(listener) });
        status
    })
}

pub(crate) fn conn_ptr(c: &Context, id: ConnId) -> *mut joint_conn {
    c.conn_handle(id).map_or(std::ptr::null_mut(), |h| h as *mut joint_conn)
}

/// Serve `method` (NUL-terminated) with `cb` on every connection of this context. Replaces
/// an earlier registration of the same name (whose `free_user_data` then runs).
/// `free_user_data` runs when this registration is replaced, removed, or the context freed.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_register(
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
            c.register(method, request_handler(cb, UserData::new(user_data, free_user_data)));
            JOINT_OK
        })
    }
}

fn request_handler(cb: unsafe extern "C" fn(*mut joint_request, *mut c_void), ud: UserData) -> crate::reactor::RequestHandler {
    Rc::new(move |ctx: &Context, req: Request| {
        let raw = joint_request::into_raw(req, ctx as *const Context);
        // SAFETY: a C callback with the documented signature; it takes ownership of `raw`.
        unsafe { cb(raw, ud.get()) };
    })
}

/// Remove the registration of `method`; `JOINT_E_STATE` if there is none.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_unregister(ctx: *mut joint_ctx, method: *const c_char) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, |_, c| match c_str(method) {
            Ok(m) if c.unregister(m) => JOINT_OK,
            Ok(m) => {
                c.set_last_error(&format!("no method {:?} is registered", String::from_utf8_lossy(m)));
                JOINT_E_STATE
            }
            Err(s) => s,
        })
    }
}

/// Serve requests for methods that are not registered (by default they get a
/// `JOINT_RPC_NO_METHOD` error). A NULL `cb` restores the default.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_set_fallback(
    ctx: *mut joint_ctx,
    cb: joint_request_cb,
    user_data: *mut c_void,
    free_user_data: joint_free_fn,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, move |_, c| {
            c.set_fallback(cb.map(|cb| request_handler(cb, UserData::new(user_data, free_user_data))));
            JOINT_OK
        })
    }
}

/// Receive notifications (from every connection). A NULL `cb` ignores them.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_set_notification_cb(
    ctx: *mut joint_ctx,
    cb: joint_notification_cb,
    user_data: *mut c_void,
    free_user_data: joint_free_fn,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, move |_, c| {
            c.set_notification_handler(cb.map(|cb| {
                let ud = UserData::new(user_data, free_user_data);
                Rc::new(move |ctx: &Context, id: ConnId, method: &[u8], params: Params<'_>| {
                    let p = params.kwargs.unwrap_or(params.args);
                    // SAFETY: a C callback with the documented signature; the slices outlive the call.
                    cb(conn_ptr(ctx, id), method.as_ptr(), method.len(), p.as_ptr(), p.len(), ud.get());
                }) as crate::reactor::NotificationHandler
            }));
            JOINT_OK
        })
    }
}

/// Be told when connections open and close. A NULL `cb` turns it off.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_set_conn_cb(
    ctx: *mut joint_ctx,
    cb: joint_conn_cb,
    user_data: *mut c_void,
    free_user_data: joint_free_fn,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, move |_, c| {
            c.set_conn_event_handler(cb.map(|cb| {
                let ud = UserData::new(user_data, free_user_data);
                Rc::new(move |ctx: &Context, id: ConnId, event: ConnEvent<'_>| {
                    let conn = conn_ptr(ctx, id);
                    match event {
                        // SAFETY: a C callback with the documented signature.
                        ConnEvent::Open => cb(conn, JOINT_CONN_OPEN, JOINT_OK, c"".as_ptr(), ud.get()),
                        ConnEvent::Closed { kind, reason } => {
                            let text = CString::new(reason.replace('\0', " ")).unwrap_or_default();
                            // SAFETY: as above; `text` lives across the call.
                            cb(conn, JOINT_CONN_CLOSED, status_of(kind), text.as_ptr(), ud.get());
                        }
                    }
                }) as crate::reactor::ConnEventHandler
            }));
            JOINT_OK
        })
    }
}

/// Run `cb` once, inside `joint_ctx_process`, after `delay_ms` milliseconds (0: on the next
/// process). `free_user_data` runs after the callback, or when the timer is cancelled or the
/// context freed before it fires. `timer_id_out` (may be NULL) receives an id for
/// `joint_ctx_cancel_timer`.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_add_timer(
    ctx: *mut joint_ctx,
    delay_ms: u32,
    cb: joint_timer_cb,
    user_data: *mut c_void,
    free_user_data: joint_free_fn,
    timer_id_out: *mut u64,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, move |_, c| {
            let Some(cb) = cb else { return JOINT_E_NULL };
            let ud = UserData::new(user_data, free_user_data);
            let ctx_ptr = ctx;
            let id = c.add_timer(
                Duration::from_millis(delay_ms as u64),
                Box::new(move |_c: &Context| {
                    // SAFETY: a C callback with the documented signature; the context is alive
                    // while its timers fire.
                    cb(ctx_ptr, ud.get());
                    drop(ud);
                }),
            );
            put(timer_id_out, id);
            JOINT_OK
        })
    }
}

/// Cancel a timer that has not fired; its `free_user_data` runs now. `JOINT_E_STATE` if it
/// already fired or was cancelled.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_cancel_timer(ctx: *mut joint_ctx, timer_id: u64) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        on_ctx(ctx, |_, c| {
            if c.cancel_timer(timer_id) {
                JOINT_OK
            } else {
                c.set_last_error("no such timer (it fired or was cancelled)");
                JOINT_E_STATE
            }
        })
    }
}

/// A connection handle (`joint_conn *`) is the reactor's connection handle.
pub(crate) unsafe fn handle_ref<'a>(conn: *const joint_conn) -> Option<&'a ConnHandle> {
    // SAFETY: NULL or a live connection handle (caller's promise); joint_conn pointers are
    // ConnHandle pointers.
    unsafe { (conn as *const ConnHandle).as_ref() }
}
