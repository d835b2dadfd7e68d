//! `joint_listener`: listening sockets.

use std::ffi::{c_char, CString};
use std::sync::Arc;

use super::args::{c_str, put};
use super::ctx::joint_ctx;
use super::handle::{guard, into_handle, take_handle, with_handle, with_ref, Boxed, Castable, InContext, Life, Live};
use super::status::*;
use crate::reactor::TlsConfig;

/// A listening socket, owned by the caller that asked for its handle. `joint_listener_close`
/// stops listening; `joint_listener_free` (closing first if needed) releases the handle, in
/// any order with `joint_ctx_free`.
pub struct joint_listener {
    life: Arc<Life>,
    /// Its key in the context's table of open listeners.
    serial: u64,
    uri: CString,
}

impl Castable for joint_listener {
    type Ownership = Boxed;
}

impl InContext for joint_listener {
    fn life(&self) -> Option<&joint_ctx> {
        self.life.get()
    }
}

/// The largest message sent or accepted over UDP (one message per datagram), in bytes.
pub const JOINT_UDP_MAX_MESSAGE: usize = 65507;

/// Listen on `uri`: `tcp://HOST:PORT` (port 0 picks a free port; IPv6 as `tcp://[::1]:PORT`),
/// `unix:///path` (the socket file must not exist; it is removed when the listener closes),
/// or `udp://HOST:PORT` (one message per datagram, at most 65507 bytes; each remote address
/// becomes a connection, forgotten after 60 s idle); `tls://HOST:PORT` needs
/// `joint_ctx_listen_tls`. Accepted connections are served by the
/// registered handlers and reported to the connection callback. With `listener_out`, the
/// caller gets a handle it owns (`joint_listener_free`); with NULL, the listener runs until
/// `joint_ctx_shutdown` or `joint_ctx_free`.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_listen(ctx: *mut joint_ctx, uri: *const c_char, listener_out: *mut *mut joint_listener) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { listen(ctx, uri, None, listener_out) }
}

/// `joint_ctx_listen`, and `joint_ctx_listen_tls` with its settings.
///
/// # Safety
/// `ctx` is NULL or a live context; `uri` NULL or a C string; `listener_out` NULL or writable.
pub(super) unsafe fn listen(
    ctx: *mut joint_ctx,
    uri: *const c_char,
    tls: Option<&TlsConfig>,
    listener_out: *mut *mut joint_listener,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(ctx, |jc: &joint_ctx, live: Live<'_>| {
            let uri = match c_str(uri) {
                Ok(u) => String::from_utf8_lossy(u).into_owned(),
                Err(s) => return s,
            };
            let listened = match tls {
                Some(tls) => live.ctx.listen_tls(&uri, tls),
                None => live.ctx.listen(&uri),
            };
            match listened {
                Ok(id) => {
                    if !listener_out.is_null() {
                        let bound = live.ctx.listener_uri(id).unwrap_or_default();
                        let l = joint_listener { life: jc.life_token(), serial: jc.add_listener(id), uri: CString::new(bound).unwrap_or_default() };
                        put(listener_out, into_handle(l));
                    }
                    JOINT_OK
                }
                Err(e) => live.fail(&e),
            }
        })
    }
}

/// The listener's address as a URI, with the real port (for example "tcp://127.0.0.1:41234").
/// Owned by the listener; valid until `joint_listener_free`. "" if `listener` is NULL.
#[no_mangle]
pub unsafe extern "C" fn joint_listener_uri(listener: *const joint_listener) -> *const c_char {
    // SAFETY: forwarded caller promise.
    unsafe { with_ref(listener, |l| l.uri.as_ptr()) }
}

/// Stop listening (connections it accepted stay open). Closing a closed listener does
/// nothing. The handle stays valid until `joint_listener_free`.
#[no_mangle]
pub unsafe extern "C" fn joint_listener_close(listener: *mut joint_listener) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_handle(listener, |l: &joint_listener, live: Live<'_>| close(l, &live)) }
}

fn close(l: &joint_listener, live: &Live<'_>) -> joint_status {
    match live.jc.take_listener(l.serial) {
        Some(id) => live.status(live.ctx.close_listener(id)),
        None => JOINT_OK,
    }
}

/// Close the listener if it is open, and free its handle. NULL is a no-op. Works after
/// `joint_ctx_free` too.
#[no_mangle]
pub unsafe extern "C" fn joint_listener_free(listener: *mut joint_listener) {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(listener, |l: &joint_listener, live: Live<'_>| {
            close(l, &live);
        })
    };
    // SAFETY: NULL or a handle from joint_ctx_listen, freed once (caller's promise).
    guard(|| (), || drop(unsafe { take_handle(listener) }))
}
