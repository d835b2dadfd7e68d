//! `joint_conn`: connections, and the calls, notifications and values sent over them.

use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr};
use std::sync::Arc;

use super::args::{duration_limit, method_and_params, put, slice};
use super::call_opts::joint_call_opts;
use super::ctx::joint_ctx;
use super::handle::{enter, guard, into_handle, take_handle, with_handle, with_ref, Boxed, Castable, InContext, Life, Live};
use super::response::{joint_buf, joint_response};
use super::status::*;
use crate::error::ErrorKind;
use crate::protocol::ExtMode;
use crate::reactor::{CallId, ConnId, Context, Response, SendStatus};

/// A connection. Connections made with `joint_ctx_connect`, `joint_ctx_spawn` or
/// `joint_ctx_open_stdio` are owned by the caller until `joint_conn_free` (before or after
/// `joint_ctx_free`); they stay valid (closed) after the peer goes away. Connections a
/// listener accepted are lent to callbacks and valid until their CLOSED callback returns.
pub struct joint_conn {
    life: Arc<Life>,
    id: ConnId,
    user_data: Cell<*mut c_void>,
    owned_by_caller: bool,
    /// What its TLS handshake settled, with the version and the peer's subject as C
    /// strings, cached on first use so what is lent out lives as long as the handle.
    pub(super) tls: std::cell::OnceCell<(crate::reactor::TlsSession, std::ffi::CString, std::ffi::CString)>,
    /// The peer's address as a C string, cached once known so what is lent out lives as
    /// long as the handle.
    pub(super) peer_address: std::cell::OnceCell<std::ffi::CString>,
}

impl Castable for joint_conn {
    type Ownership = Boxed;
}

impl InContext for joint_conn {
    fn life(&self) -> Option<&joint_ctx> {
        self.life.get()
    }
}

impl joint_conn {
    pub(crate) fn new(life: Arc<Life>, id: ConnId, owned_by_caller: bool) -> Self {
        joint_conn {
            life,
            id,
            user_data: Cell::new(std::ptr::null_mut()),
            owned_by_caller,
            tls: Default::default(),
            peer_address: Default::default(),
        }
    }

    pub(crate) fn owned_by_caller(&self) -> bool {
        self.owned_by_caller
    }

    pub(crate) fn id(&self) -> ConnId {
        self.id
    }
}

/// Completes a call, exactly once: with the result, the peer's error, a timeout, the loss of
/// the connection, a cancellation, or the context being freed. `resp` is lent until the
/// callback returns; `conn` too, and it is NULL once the application has freed the
/// connection.
pub type joint_response_cb = Option<unsafe extern "C" fn(conn: *mut joint_conn, resp: *const joint_response, user_data: *mut c_void)>;

/// Extension state of a connection (`joint_conn_extension`): not offered.
pub const JOINT_EXT_OFF: i32 = 0;
/// Offered, no answer yet.
pub const JOINT_EXT_PENDING: i32 = 1;
/// Both ends speak the joint extension.
pub const JOINT_EXT_ON: i32 = 2;
/// The peer is a stock MessagePack-RPC peer.
pub const JOINT_EXT_REFUSED: i32 = 3;

/// A call id for C: the msgid in the high half, the low 32 bits of the call's sequence number
/// below (so an id of a finished call does not match a later call that reuses its msgid).
pub(crate) fn pack_call_id(call: CallId) -> u64 {
    ((call.msgid as u64) << 32) | (call.seq & 0xffff_ffff)
}

/// The call a C id names on `conn`: the pending one, or an id that matches no call.
fn unpack_call_id(ctx: &Context, conn: ConnId, id: u64) -> CallId {
    let (msgid, low) = ((id >> 32) as u32, id & 0xffff_ffff);
    ctx.pending_call(conn, msgid).filter(|c| c.seq & 0xffff_ffff == low).unwrap_or(CallId { conn, msgid, seq: low })
}

/// The completion of a C call: runs `cb` with the connection's handle and a response view.
fn completion(jc: &joint_ctx, cb: joint_response_cb, user_data: *mut c_void) -> crate::reactor::Completion {
    let jc_ptr = jc as *const joint_ctx;
    Box::new(move |ctx: &Context, r: Response<'_>| {
        if let Some(cb) = cb {
            let resp = joint_response::of(&r);
            // SAFETY: the context's box outlives its reactor, which runs this completion.
            let conn = unsafe { &*jc_ptr }.conn_handle(ctx, r.call.conn);
            // SAFETY: a C callback with the documented signature; `resp` and the buffers it
            // points into outlive the call.
            unsafe { cb(conn, &resp, user_data) };
        }
    })
}

/// Make a connection with `open` and hand its handle to `conn_out`.
///
/// # Safety
/// `ctx` is NULL or a live context; `conn_out` is NULL or writable.
pub(super) unsafe fn open_conn(
    ctx: *mut joint_ctx,
    conn_out: *mut *mut joint_conn,
    open: impl FnOnce(&Live<'_>) -> Result<ConnId, joint_status>,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(ctx, |_, live: Live<'_>| {
            if conn_out.is_null() {
                return JOINT_E_NULL;
            }
            match open(&live) {
                Ok(id) => {
                    put(conn_out, live.jc.adopt_conn(id));
                    JOINT_OK
                }
                Err(s) => s,
            }
        })
    }
}

/// Connect to `uri` without blocking (host names are resolved with the system resolver,
/// which may block): `tcp://HOST:PORT`, `tcp://[::1]:PORT`, `unix:///path`,
/// `udp://HOST:PORT` (one message per datagram, at most 65507 bytes, no delivery guarantee:
/// use call timeouts) or `tls://HOST:PORT` (verified against the system's trusted roots; see
/// `joint_ctx_connect_tls` for other settings). Calls may be made at once; they are sent when the connection is up.
/// Errors known at once (bad address, missing Unix socket) are returned; later ones
/// (refused, timeout) close the connection: its calls fail and the connection callback gets
/// CLOSED. On success `*conn_out` is owned by the caller (`joint_conn_free`).
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_connect(ctx: *mut joint_ctx, uri: *const c_char, conn_out: *mut *mut joint_conn) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        open_conn(ctx, conn_out, |live| {
            let uri = super::args::c_str(uri)?;
            live.ctx.connect(&String::from_utf8_lossy(uri)).map_err(|e| live.fail(&e))
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
        open_conn(ctx, conn_out, |live| {
            if argv.is_null() {
                return Err(JOINT_E_NULL);
            }
            let mut args = Vec::new();
            loop {
                // SAFETY: argv is NULL-terminated (caller's promise).
                let p = *argv.add(args.len());
                if p.is_null() {
                    break;
                }
                args.push(String::from_utf8_lossy(CStr::from_ptr(p).to_bytes()).into_owned());
            }
            if args.is_empty() {
                return Err(live.refuse(JOINT_E_INVAL, "argv is empty"));
            }
            live.ctx.spawn(&args).map_err(|e| live.fail(&e))
        })
    }
}

/// Talk MessagePack-RPC over this process's stdin and stdout (for a server started by its
/// client, as Neovim starts plugins). The fds are duplicated; O_NONBLOCK is set on them.
/// On success `*conn_out` is owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_open_stdio(ctx: *mut joint_ctx, conn_out: *mut *mut joint_conn) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { open_conn(ctx, conn_out, |live| live.ctx.open_stdio().map_err(|e| live.fail(&e))) }
}

/// Release a connection the caller owns (from `joint_ctx_connect`, `joint_ctx_spawn` or
/// `joint_ctx_open_stdio`). If it is open it is closed: its pending calls complete with
/// `JOINT_E_CANCELLED` during the next `joint_ctx_process` (no CLOSED event follows).
/// Works before or after `joint_ctx_free`. NULL, and connections a listener accepted (the
/// context frees those), are ignored.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_free(conn: *mut joint_conn) {
    // SAFETY: NULL or a live connection handle (caller's promise).
    if !unsafe { with_ref(conn, |h: &joint_conn| h.owned_by_caller) } {
        return;
    }
    // SAFETY: as above.
    unsafe {
        with_handle(conn, |h: &joint_conn, live: Live<'_>| live.ctx.release(h.id));
        // Also while the context is being freed (from one of its callbacks): it must not
        // hand this pointer out again.
        with_ref(conn, |h: &joint_conn| {
            if let Some(home) = h.life.home() {
                home.forget_conn(h.id);
            }
        });
    }
    // SAFETY: a caller-owned handle, freed once (caller's promise).
    guard(|| (), || drop(unsafe { take_handle(conn) }))
}

/// Close a connection (any kind) without freeing its handle: pending calls complete with
/// `JOINT_E_CANCELLED` and the CLOSED event follows, both during the next
/// `joint_ctx_process`.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_close(conn: *mut joint_conn) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_handle(conn, |h: &joint_conn, live: Live<'_>| live.status(live.ctx.close(h.id))) }
}

/// Whether new calls can be made on the connection (it is connecting or open, and its
/// context is alive). For a reconnecting connection that is not up: whether a call may
/// wait for it now (queue mode, with room in the queue).
#[no_mangle]
pub unsafe extern "C" fn joint_conn_is_open(conn: *const joint_conn) -> bool {
    // SAFETY: forwarded caller promise.
    unsafe { with_handle(conn, |h: &joint_conn, live: Live<'_>| live.ctx.is_open(h.id)) }
}

/// Attach application data to a connection (joint never touches it). Works after
/// `joint_ctx_free` too.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_set_user_data(conn: *mut joint_conn, user_data: *mut c_void) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_ref(conn, |h: &joint_conn| {
            h.user_data.set(user_data);
            JOINT_OK
        })
    }
}

/// The data attached with `joint_conn_set_user_data` (NULL if none).
#[no_mangle]
pub unsafe extern "C" fn joint_conn_user_data(conn: *const joint_conn) -> *mut c_void {
    // SAFETY: forwarded caller promise.
    unsafe { with_ref(conn, |h: &joint_conn| h.user_data.get()) }
}

/// Where the joint extension stands on a connection: `JOINT_EXT_OFF`, `JOINT_EXT_PENDING`,
/// `JOINT_EXT_ON` or `JOINT_EXT_REFUSED` (a stock peer). -1 if `conn` is NULL or its context
/// is gone.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_extension(conn: *const joint_conn) -> i32 {
    // SAFETY: forwarded caller promise.
    unsafe {
        enter(
            conn,
            |_| -1,
            |h: &joint_conn, live: Live<'_>| match live.ctx.extension(h.id) {
                Some(ExtMode::Off) | None => JOINT_EXT_OFF,
                Some(ExtMode::Offered) => JOINT_EXT_PENDING,
                Some(ExtMode::On) => JOINT_EXT_ON,
                Some(ExtMode::Refused) => JOINT_EXT_REFUSED,
            },
        )
    }
}

/// Call `method` (NUL-terminated) with `params`: one encoded MessagePack array (or a map, for
/// servers that take keyword params); `(NULL, 0)` sends `[]`. Both are copied.
/// `timeout_ms`: -1 no timeout, > 0 fail the call with `JOINT_E_TIMEOUT` after that long (0
/// is `JOINT_E_INVAL`). `cb` (may be NULL: the result is discarded) runs exactly once,
/// inside `joint_ctx_process` or `joint_ctx_free`. If this returns an error, `cb` never
/// runs. `call_id_out` (may be NULL) receives an id for `joint_conn_cancel`.
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
        with_handle(conn, |h: &joint_conn, live: Live<'_>| {
            let (method, params) = match method_and_params(method, params, params_len) {
                Ok(mp) => mp,
                Err(s) => return s,
            };
            let timeout = match duration_limit(timeout_ms) {
                Ok(t) => t,
                Err(s) => return live.refuse(s, "timeout_ms must be -1 or positive"),
            };
            match live.ctx.call(h.id, method, params, timeout, completion(live.jc, cb, user_data)) {
                Ok(call) => {
                    put(call_id_out, pack_call_id(call));
                    JOINT_OK
                }
                Err(e) => live.fail(&e),
            }
        })
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
        with_handle(conn, |h: &joint_conn, live: Live<'_>| {
            let (method, params) = match method_and_params(method, params, params_len) {
                Ok(mp) => mp,
                Err(s) => return s,
            };
            let options = joint_call_opts::for_call(opts.as_ref(), live.jc);
            match live.ctx.call_with(h.id, method, params, options, completion(live.jc, cb, user_data)) {
                Ok(call) => {
                    put(call_id_out, pack_call_id(call));
                    JOINT_OK
                }
                Err(e) => live.fail(&e),
            }
        })
    }
}

/// Cancel a pending call: it completes with `JOINT_E_CANCELLED` during the next
/// `joint_ctx_process`; a late response is ignored. `JOINT_E_STATE` if it is not pending.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_cancel(conn: *mut joint_conn, call_id: u64) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(conn, |h: &joint_conn, live: Live<'_>| {
            if live.ctx.cancel(unpack_call_id(live.ctx, h.id, call_id)) {
                JOINT_OK
            } else {
                live.refuse(JOINT_E_STATE, "the call is not pending (it completed or was cancelled)")
            }
        })
    }
}

/// Send a notification (no response). `params` as for `joint_conn_call`.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_notify(conn: *mut joint_conn, method: *const c_char, params: *const u8, params_len: usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(conn, |h: &joint_conn, live: Live<'_>| match method_and_params(method, params, params_len) {
            Ok((method, params)) => live.status(live.ctx.notify(h.id, method, params)),
            Err(s) => s,
        })
    }
}

/// Call and wait (running `joint_ctx_process` meanwhile, so other callbacks run too).
/// `JOINT_OK`: `*result_out` receives the result. `JOINT_E_REMOTE`: `*error_out` (if not
/// NULL) receives the peer's error object. Both are owned by the caller (`joint_buf_free`).
/// Other errors are described by `joint_ctx_last_error`. `timeout_ms` as for
/// `joint_conn_call`. From a callback: `JOINT_E_RECURSIVE`.
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
        with_handle(conn, |h: &joint_conn, live: Live<'_>| {
            if result_out.is_null() {
                return JOINT_E_NULL;
            }
            let (method, params) = match method_and_params(method, params, params_len) {
                Ok(mp) => mp,
                Err(s) => return s,
            };
            let timeout = match duration_limit(timeout_ms) {
                Ok(t) => t,
                Err(s) => return live.refuse(s, "timeout_ms must be -1 or positive"),
            };
            match live.ctx.call_blocking(h.id, method, params, timeout) {
                Ok(result) => {
                    put(result_out, into_handle(joint_buf { data: result }));
                    JOINT_OK
                }
                Err((e, error_obj)) => {
                    if e.kind == ErrorKind::Remote && !error_out.is_null() {
                        put(error_out, into_handle(joint_buf { data: error_obj }));
                    }
                    live.fail(&e)
                }
            }
        })
    }
}

/// Send `item` (one encoded object, copied) into our running call `call_id` (made with
/// client streaming). `JOINT_WOULD_BLOCK`: no credit yet, or the connection's output holds
/// its high-water mark of unsent bytes (`joint_config_set_output_high_water`) — wait for
/// `JOINT_CALL_WRITABLE` and try again. `JOINT_E_UNSUPPORTED`: the peer is a stock peer (or
/// the call takes no input, or its input has ended).
#[no_mangle]
pub unsafe extern "C" fn joint_conn_send(conn: *mut joint_conn, call_id: u64, item: *const u8, len: usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(conn, |h: &joint_conn, live: Live<'_>| {
            let item = match slice(item, len) {
                Ok(b) => b,
                Err(s) => return s,
            };
            match live.ctx.send(unpack_call_id(live.ctx, h.id, call_id), item) {
                Ok(SendStatus::Sent) => JOINT_OK,
                Ok(SendStatus::WouldBlock) => JOINT_WOULD_BLOCK,
                Err(e) => live.fail(&e),
            }
        })
    }
}

/// No more values will be sent into `call_id`.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_end_input(conn: *mut joint_conn, call_id: u64) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_handle(conn, |h: &joint_conn, live: Live<'_>| live.status(live.ctx.end_input(unpack_call_id(live.ctx, h.id, call_id)))) }
}

/// Throw `error` (one encoded object, copied) into the running call `call_id`; the callee's
/// handler gets it (`JOINT_INPUT_THROW`) and decides how the call ends.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_throw(conn: *mut joint_conn, call_id: u64, error: *const u8, len: usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(conn, |h: &joint_conn, live: Live<'_>| match slice(error, len) {
            Ok(error) => live.status(live.ctx.throw(unpack_call_id(live.ctx, h.id, call_id), error)),
            Err(s) => s,
        })
    }
}

/// With manual credit: `items` more may be streamed to us on `call_id`.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_grant(conn: *mut joint_conn, call_id: u64, items: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_handle(conn, |h: &joint_conn, live: Live<'_>| live.status(live.ctx.grant(unpack_call_id(live.ctx, h.id, call_id), items))) }
}
