//! Peer identity and access control: the accept callback that decides which accepted
//! connections are served, and a connection's peer address and (Unix) credentials.

use std::ffi::{c_char, c_void, CString};
use std::rc::Rc;

use super::args::{joint_free_fn, put, UserData};
use super::conn::joint_conn;
use super::ctx::joint_ctx;
use super::handle::{with_handle, Live};
use super::status::*;
use crate::reactor::{ConnId, Context};

/// Decides whether an accepted connection is served: return true to serve it, false to
/// close it. Runs inside `joint_ctx_process` before anything else happens on the connection
/// (before its OPEN event and its first request; for TLS after the handshake, so
/// `joint_conn_peer_subject` and the other TLS getters work; for UDP when a peer address is
/// first heard, dropping its datagram if refused). `conn` is lent for the call; a refused
/// one is closed without any event, its handle is freed when the callback returns, and calls
/// made on it meanwhile end with `JOINT_E_CANCELLED` (their `conn` argument NULL). Closing
/// it from the callback and returning true gives OPEN, then CLOSED.
pub type joint_accept_cb = Option<unsafe extern "C" fn(conn: *mut joint_conn, user_data: *mut c_void) -> bool>;

/// Decide which accepted connections are served (see `joint_accept_cb`); it sees
/// `joint_conn_peer_address`, `joint_conn_peer_credentials` and, for TLS, the client's
/// certificate. A NULL `cb` serves every connection (the default).
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_set_accept_cb(
    ctx: *mut joint_ctx,
    cb: joint_accept_cb,
    user_data: *mut c_void,
    free_user_data: joint_free_fn,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(ctx, move |jc: &joint_ctx, live: Live<'_>| {
            let jc_ptr = jc as *const joint_ctx;
            live.ctx.set_accept_handler(cb.map(|cb| {
                let ud = UserData::new(user_data, free_user_data);
                Rc::new(move |c: &Context, id: ConnId| {
                    // SAFETY: the box outlives its reactor, which owns this handler.
                    let jc = &*jc_ptr;
                    let conn = jc.conn_handle(c, id);
                    // SAFETY: a C callback with the documented signature.
                    let serve = cb(conn, ud.get());
                    if !serve {
                        jc.drop_unannounced_conn(id);
                    }
                    serve
                }) as crate::reactor::AcceptHandler
            }));
            JOINT_OK
        })
    }
}

/// The peer's address as a URI: "tcp://IP:PORT", "tls://IP:PORT", "udp://IP:PORT",
/// "unix:///PATH" for a peer socket bound to a path, or "unix:" for an unnamed one (most
/// clients' are). "" when not known: pipes, before a connection is made, a closed
/// connection never asked before. Once known it stays (after a close too). Owned by the
/// handle.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_peer_address(conn: *const joint_conn) -> *const c_char {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(conn, |c: &joint_conn, live: Live<'_>| {
            if let Some(a) = c.peer_address.get() {
                return a.as_ptr();
            }
            match live.ctx.peer_address(c.id()) {
                Some(a) => c.peer_address.get_or_init(|| CString::new(a).unwrap_or_default()).as_ptr(),
                None => c"".as_ptr(),
            }
        })
    }
}

/// On a Unix socket, the process on the other end as the kernel recorded it when the
/// connection was made (`SO_PEERCRED`): its pid, uid and gid, into the out-params that are
/// not NULL. The pid is the one the peer had then: it may have exited and the number been
/// reused since, so check it now rather than later. `JOINT_E_STATE` for other transports
/// and closed connections.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_peer_credentials(
    conn: *const joint_conn,
    pid_out: *mut i32,
    uid_out: *mut u32,
    gid_out: *mut u32,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(conn, |c: &joint_conn, live: Live<'_>| match live.ctx.peer_credentials(c.id()) {
            Some(cred) => {
                put(pid_out, cred.pid);
                put(uid_out, cred.uid);
                put(gid_out, cred.gid);
                JOINT_OK
            }
            None => live.refuse(JOINT_E_STATE, "no peer credentials: not an open Unix socket connection"),
        })
    }
}
