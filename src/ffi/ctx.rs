//! `joint_ctx`: the context's C-side state (last error, poison flag, connection handles),
//! driving it, handler registration and timers.

use std::cell::{Cell, Ref, RefCell};
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::args::{c_str, joint_free_fn, put, wait_limit, UserData};
use super::config::joint_config;
use super::conn::joint_conn;
use super::handle::{guard, into_handle, take_handle, with_handle, Boxed, Castable, InContext, Life, Live};
use super::request::joint_request;
use super::status::*;
use crate::codec::Params;
use crate::reactor::{ConnEvent, ConnId, Context, ListenerId, Request, Shared};

/// A context: connections, listeners, handlers and timers driven through one pollable fd.
/// Create with `joint_ctx_new`, free with `joint_ctx_free` — before or after the handles it
/// made, in any order.
pub struct joint_ctx {
    /// The reactor; taken out (`None`) while the context is freed.
    ctx: RefCell<Option<Context>>,
    /// Shared with every handle of the context; ended when it is freed.
    life: Arc<Life>,
    /// Read by `joint_ctx_wakeup` from any thread; set at creation, never changed.
    waker: Arc<Shared>,
    last_error: RefCell<CString>,
    /// A panic crossed an export: the state may be torn, refuse further use.
    poisoned: Cell<bool>,
    /// The handle of each connection the application has seen, so callbacks pass the
    /// pointer it knows.
    conns: RefCell<HashMap<ConnId, *mut joint_conn>>,
    /// The application's connection callback.
    conn_cb: RefCell<Option<Rc<ConnCallback>>>,
    /// Open listeners that have a handle, by the handle's serial number.
    listeners: RefCell<HashMap<u64, ListenerId>>,
    next_listener: Cell<u64>,
}

impl Castable for joint_ctx {
    type Ownership = Boxed;
}

impl InContext for joint_ctx {
    fn life(&self) -> Option<&joint_ctx> {
        self.life.get()
    }
}

struct ConnCallback {
    cb: unsafe extern "C" fn(*mut joint_conn, i32, joint_status, *const c_char, *mut c_void),
    user_data: UserData,
}

impl joint_ctx {
    /// The reactor, unless the context is being freed.
    pub(crate) fn context(&self) -> Option<Ref<'_, Context>> {
        Ref::filter_map(self.ctx.borrow(), Option::as_ref).ok()
    }

    pub(crate) fn life_token(&self) -> Arc<Life> {
        self.life.clone()
    }

    /// Remember `message` as the detail of the last failure (`joint_ctx_last_error`).
    pub(crate) fn set_last_error(&self, message: &str) {
        let clean: Vec<u8> = message.bytes().filter(|&b| b != 0).collect();
        *self.last_error.borrow_mut() = CString::new(clean).unwrap_or_default();
    }

    pub(crate) fn poison(&self) {
        self.poisoned.set(true);
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.get()
    }

    /// The handle of connection `id`, made (owned by the context) the first time a callback
    /// needs one; NULL if the connection is gone.
    pub(crate) fn conn_handle(&self, ctx: &Context, id: ConnId) -> *mut joint_conn {
        if let Some(&h) = self.conns.borrow().get(&id) {
            return h;
        }
        if !ctx.has_conn(id) {
            return std::ptr::null_mut();
        }
        let h = into_handle(joint_conn::new(self.life.clone(), id, false));
        self.conns.borrow_mut().insert(id, h);
        h
    }

    /// Record the handle of a connection the application made (it owns the handle).
    pub(crate) fn adopt_conn(&self, id: ConnId) -> *mut joint_conn {
        let h = into_handle(joint_conn::new(self.life.clone(), id, true));
        self.conns.borrow_mut().insert(id, h);
        h
    }

    /// Free the handle of a connection the context owns that will get no CLOSED event (one
    /// the accept callback refused).
    pub(crate) fn drop_unannounced_conn(&self, id: ConnId) {
        let Some(h) = self.conns.borrow_mut().remove(&id) else { return };
        // SAFETY: handles in the map are live boxes.
        if unsafe { &*h }.owned_by_caller() {
            self.conns.borrow_mut().insert(id, h);
            return;
        }
        // SAFETY: a context-owned handle, removed from the map, so freed once.
        drop(unsafe { take_handle(h) });
    }

    /// The application freed its connection handle.
    pub(crate) fn forget_conn(&self, id: ConnId) {
        self.conns.borrow_mut().remove(&id);
    }

    /// Run the application's connection callback; after CLOSED, free the handle of a
    /// connection the context owns.
    fn conn_event(&self, ctx: &Context, id: ConnId, event: ConnEvent<'_>) {
        let conn = self.conn_handle(ctx, id);
        let cb = self.conn_cb.borrow().clone();
        // Read before the callback, which may free a handle the application owns.
        // SAFETY: handles in the map are live boxes.
        let ours = !conn.is_null() && !unsafe { &*conn }.owned_by_caller();
        let closed = matches!(event, ConnEvent::Closed { .. });
        if let Some(c) = cb {
            match event {
                // SAFETY: a C callback with the documented signature.
                ConnEvent::Open => unsafe { (c.cb)(conn, JOINT_CONN_OPEN, JOINT_OK, c"".as_ptr(), c.user_data.get()) },
                ConnEvent::Closed { kind, reason } => {
                    let text = CString::new(reason.replace('\0', " ")).unwrap_or_default();
                    // SAFETY: as above; `text` lives across the call.
                    unsafe { (c.cb)(conn, JOINT_CONN_CLOSED, status_of(kind), text.as_ptr(), c.user_data.get()) };
                }
                ConnEvent::Connecting { endpoint } => {
                    let text = CString::new(endpoint.replace('\0', " ")).unwrap_or_default();
                    // SAFETY: as above.
                    unsafe { (c.cb)(conn, JOINT_CONN_CONNECTING, JOINT_OK, text.as_ptr(), c.user_data.get()) };
                }
                ConnEvent::Down { kind, reason } => {
                    let text = CString::new(reason.replace('\0', " ")).unwrap_or_default();
                    // SAFETY: as above.
                    unsafe { (c.cb)(conn, JOINT_CONN_DOWN, status_of(kind), text.as_ptr(), c.user_data.get()) };
                }
            }
        }
        if closed && ours {
            self.conns.borrow_mut().remove(&id);
            // SAFETY: a context-owned handle, removed from the map, so freed once.
            drop(unsafe { take_handle(conn) });
        }
    }

    /// Register a new listener handle's serial number.
    pub(crate) fn add_listener(&self, id: ListenerId) -> u64 {
        let serial = self.next_listener.get();
        self.next_listener.set(serial + 1);
        self.listeners.borrow_mut().insert(serial, id);
        serial
    }

    /// The listener of a handle, if it is still open (and forget it).
    pub(crate) fn take_listener(&self, serial: u64) -> Option<ListenerId> {
        self.listeners.borrow_mut().remove(&serial)
    }
}

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
/// closed (`JOINT_CONN_CLOSED`: `status` says why, `reason` describes it). Reconnecting
/// connections also get `JOINT_CONN_CONNECTING` and `JOINT_CONN_DOWN`, and their CLOSED is
/// final. `reason` is valid
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
/// Connection event, reconnecting connections only (`joint_ctx_connect_reconnecting`): an
/// attempt to connect starts; `reason` is the endpoint's URI, `status` is `JOINT_OK`.
pub const JOINT_CONN_CONNECTING: i32 = 3;
/// Connection event, reconnecting connections only: the connection dropped (its calls in
/// flight completed with `JOINT_E_CLOSED`) or a round of attempts over every endpoint
/// failed (`status` and `reason` say why); another round follows after the backoff delay.
pub const JOINT_CONN_DOWN: i32 = 4;

/// Create a context. `config` is copied (NULL: defaults). On success `*ctx_out` is owned by
/// the caller; free it with `joint_ctx_free`.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_new(config: *const joint_config, ctx_out: *mut *mut joint_ctx) -> joint_status {
    guard(
        || JOINT_E_PANIC,
        || {
            if ctx_out.is_null() {
                return JOINT_E_NULL;
            }
            // SAFETY: NULL or a live joint_config (caller's promise).
            let config = unsafe { config.as_ref() }.map(|c| c.config.clone()).unwrap_or_default();
            let ctx = match Context::new(config) {
                Ok(ctx) => ctx,
                Err(e) => return status_of(e.kind),
            };
            let raw = into_handle(joint_ctx {
                waker: ctx.waker(),
                ctx: RefCell::new(None),
                life: Life::new(),
                last_error: RefCell::default(),
                poisoned: Cell::new(false),
                conns: RefCell::default(),
                conn_cb: RefCell::new(None),
                listeners: RefCell::default(),
                next_listener: Cell::new(1),
            });
            let jc_ptr = raw as *const joint_ctx;
            // The context always hears connection events: it frees the handles it owns.
            ctx.set_conn_event_handler(Some(Rc::new(move |c: &Context, id: ConnId, event: ConnEvent<'_>| {
                // SAFETY: the box outlives its reactor (joint_ctx_free drops the reactor first).
                unsafe { &*jc_ptr }.conn_event(c, id, event)
            })));
            // SAFETY: just made.
            let jc = unsafe { &mut *raw };
            *jc.ctx.get_mut() = Some(ctx);
            jc.life.start(raw);
            // SAFETY: checked non-NULL.
            unsafe { *ctx_out = raw };
            JOINT_OK
        },
    )
}

/// Free a context. Every pending call completes with `JOINT_E_CANCELLED`, open connections
/// get a CLOSED event, registered `free_user_data` functions run, and every fd is closed.
/// Handles the application still holds (connections it made, listeners, streams, requests)
/// stay valid to free: from now on their other functions return `JOINT_E_STATE` (and
/// `joint_conn_is_open` false); requests may still be answered, which does nothing.
/// Child processes get 0.5 s to exit after their stdin closes, then are killed. NULL is a
/// no-op. Must not be called from a callback of this context (such a call is ignored).
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_free(ctx: *mut joint_ctx) {
    guard(
        || (),
        || {
            if ctx.is_null() {
                return;
            }
            // SAFETY: a live context (caller's promise).
            let jc = unsafe { &*ctx };
            let Ok(mut slot) = jc.ctx.try_borrow_mut() else { return };
            if slot.as_ref().is_none_or(|c| c.is_dispatching()) {
                return;
            }
            let reactor = slot.take();
            drop(slot);
            jc.life.end();
            // Callbacks run while the reactor goes; the box (and its handle map) outlives it.
            drop(reactor);
            let owned_by_context: Vec<*mut joint_conn> = jc.conns.borrow_mut().drain().map(|(_, h)| h).collect();
            for h in owned_by_context {
                // SAFETY: handles in the map are live boxes.
                if !unsafe { &*h }.owned_by_caller() {
                    // SAFETY: context-owned, taken out of the map: freed once.
                    drop(unsafe { take_handle(h) });
                }
            }
            jc.life.end_home();
            // SAFETY: made by joint_ctx_new, freed once (caller's promise).
            drop(unsafe { take_handle(ctx) });
        },
    )
}

/// Detail of the last error on this context (or on one of its handles), NUL-terminated, ""
/// if none. Owned by the context; valid until the next call on it.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_last_error(ctx: *const joint_ctx) -> *const c_char {
    // SAFETY: NULL or a live context.
    guard(|| c"".as_ptr(), || unsafe { ctx.as_ref() }.map_or(c"".as_ptr(), |c| c.last_error.borrow().as_ptr()))
}

/// The fd to watch for readability (level-triggered: it stays readable while
/// `joint_ctx_process` has work). Stable for the context's lifetime; never read, write or
/// close it. -1 if `ctx` is NULL.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_fd(ctx: *const joint_ctx) -> i32 {
    // SAFETY: forwarded caller promise.
    unsafe { super::handle::enter(ctx, |_| -1, |_, live| live.ctx.fd()) }
}

/// Milliseconds until `joint_ctx_process` must run even if the fd stays quiet: -1 no
/// deadline, 0 now. Rounded up. Query again after every `joint_ctx_process`. -1 if `ctx` is
/// NULL.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_timeout_ms(ctx: *const joint_ctx) -> i32 {
    // SAFETY: forwarded caller promise.
    unsafe { super::handle::enter(ctx, |_| -1, |_, live| live.ctx.timeout_ms()) }
}

/// Run ready I/O, due timers and callbacks; never blocks. Callbacks run only in here (and in
/// `joint_ctx_free`). Returns an error only for context-level failures; connection and call
/// failures are reported through their callbacks. From a callback: `JOINT_E_RECURSIVE`.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_process(ctx: *mut joint_ctx) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_handle(ctx, |_, live: Live<'_>| live.status(live.ctx.process())) }
}

/// Wait until the fd is readable or `timeout_ms` passes (-1: no limit other than the next
/// timer; 0: don't wait), then run `joint_ctx_process`. For programs without their own
/// event loop.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_wait(ctx: *mut joint_ctx, timeout_ms: i32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(ctx, |_, live: Live<'_>| match wait_limit(timeout_ms) {
            Ok(timeout) => live.status(live.ctx.wait(timeout)),
            Err(s) => live.refuse(s, "timeout_ms must be -1, 0 or positive"),
        })
    }
}

/// Make the fd readable so the loop calls `joint_ctx_process` soon. Safe from any thread and
/// async-signal-safe (an atomic flag and a write to an eventfd; no lock, no allocation).
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_wakeup(ctx: *const joint_ctx) -> joint_status {
    guard(
        || JOINT_E_PANIC,
        || {
            if ctx.is_null() {
                return JOINT_E_NULL;
            }
            // SAFETY: only the immutable `waker` field is read, set at creation; reading it
            // from another thread does not race with the loop thread.
            unsafe { &*std::ptr::addr_of!((*ctx).waker) }.wake();
            JOINT_OK
        },
    )
}

/// Begin a graceful shutdown: every listener closes (their handles stay valid until
/// `joint_listener_free`), and requests that arrive from now on are answered with a
/// `JOINT_RPC_SHUTTING_DOWN` error. Requests already received, calls, and open connections
/// are unaffected: keep processing until `joint_ctx_unanswered` is 0, then free the context.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_shutdown(ctx: *mut joint_ctx) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(ctx, |jc: &joint_ctx, live: Live<'_>| {
            live.ctx.shutdown();
            jc.listeners.borrow_mut().clear();
            JOINT_OK
        })
    }
}

/// Requests received on this context's connections and not answered yet (for a graceful
/// shutdown: process until it is 0).
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_unanswered(ctx: *const joint_ctx) -> usize {
    // SAFETY: forwarded caller promise.
    unsafe { with_handle(ctx, |_, live: Live<'_>| live.ctx.unanswered_requests()) }
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
        with_handle(ctx, move |jc: &joint_ctx, live: Live<'_>| {
            let method = match c_str(method) {
                Ok(m) => m,
                Err(s) => return s,
            };
            let Some(cb) = cb else { return JOINT_E_NULL };
            live.ctx.register(method, request_handler(jc, cb, UserData::new(user_data, free_user_data)));
            JOINT_OK
        })
    }
}

fn request_handler(jc: &joint_ctx, cb: unsafe extern "C" fn(*mut joint_request, *mut c_void), ud: UserData) -> crate::reactor::RequestHandler {
    let life = jc.life_token();
    Rc::new(move |_: &Context, req: Request| {
        let raw = joint_request::into_raw(req, life.clone());
        // SAFETY: a C callback with the documented signature; it takes ownership of `raw`.
        unsafe { cb(raw, ud.get()) };
    })
}

/// Remove the registration of `method`; `JOINT_E_STATE` if there is none.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_unregister(ctx: *mut joint_ctx, method: *const c_char) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(ctx, |_, live: Live<'_>| match c_str(method) {
            Ok(m) if live.ctx.unregister(m) => JOINT_OK,
            Ok(m) => live.refuse(JOINT_E_STATE, &format!("no method {:?} is registered", String::from_utf8_lossy(m))),
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
        with_handle(ctx, move |jc: &joint_ctx, live: Live<'_>| {
            live.ctx.set_fallback(cb.map(|cb| request_handler(jc, cb, UserData::new(user_data, free_user_data))));
            JOINT_OK
        })
    }
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
        with_handle(ctx, move |jc: &joint_ctx, live: Live<'_>| {
            let method = match c_str(method) {
                Ok(m) => m,
                Err(s) => return s,
            };
            let Some(cb) = cb else { return JOINT_E_NULL };
            let ud = Arc::new(PoolUserData(UserData::new(user_data, free_user_data)));
            let life = jc.life_token();
            live.ctx.register_pooled(
                method,
                Arc::new(move |req: Request| {
                    let raw = joint_request::into_raw(req, life.clone());
                    // SAFETY: a C callback with the documented signature; it takes `raw`.
                    cb(raw, ud.0.get());
                }),
            );
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
        with_handle(ctx, move |jc: &joint_ctx, live: Live<'_>| {
            let jc_ptr = jc as *const joint_ctx;
            live.ctx.set_notification_handler(cb.map(|cb| {
                let ud = UserData::new(user_data, free_user_data);
                Rc::new(move |c: &Context, id: ConnId, method: &[u8], params: Params<'_>| {
                    let p = params.kwargs.unwrap_or(params.args);
                    // SAFETY: the box outlives its reactor, which owns this handler.
                    let conn = (&*jc_ptr).conn_handle(c, id);
                    // SAFETY: a C callback with the documented signature; the slices outlive the call.
                    cb(conn, method.as_ptr(), method.len(), p.as_ptr(), p.len(), ud.get());
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
        with_handle(ctx, move |jc: &joint_ctx, _| {
            let new = cb.map(|cb| Rc::new(ConnCallback { cb, user_data: UserData::new(user_data, free_user_data) }));
            let old = jc.conn_cb.replace(new);
            drop(old); // its free_user_data runs here, outside the borrow
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
        with_handle(ctx, move |_, live: Live<'_>| {
            let Some(cb) = cb else { return JOINT_E_NULL };
            let ud = UserData::new(user_data, free_user_data);
            let id = live.ctx.add_timer(
                Duration::from_millis(delay_ms as u64),
                Box::new(move |_c: &Context| {
                    // SAFETY: a C callback with the documented signature; timers fire only
                    // while the context is alive.
                    cb(ctx, ud.get());
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
        with_handle(ctx, |_, live: Live<'_>| {
            if live.ctx.cancel_timer(timer_id) {
                JOINT_OK
            } else {
                live.refuse(JOINT_E_STATE, "no such timer (it fired or was cancelled)")
            }
        })
    }
}
