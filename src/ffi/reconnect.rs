//! `joint_reconnect_opts` and `joint_ctx_connect_reconnecting`: client connections that
//! reconnect, with backoff, over a list of endpoints.

use std::ffi::c_char;
use std::time::Duration;

use super::args::{c_str, duration_limit};
use super::conn::{joint_conn, open_conn};
use super::ctx::joint_ctx;
use super::handle::{guard, into_handle, take_handle, with_object, with_ref, Boxed, Castable};
use super::status::*;
use super::tls::joint_tls_config;
use crate::reactor::{Reconnect, TlsConfig};

/// How a reconnecting connection retries (`joint_ctx_connect_reconnecting`). Read (copied)
/// when the connection is made; reusable. Create with `joint_reconnect_opts_new`, free with
/// `joint_reconnect_opts_free`.
pub struct joint_reconnect_opts {
    policy: Reconnect,
    tls: Option<TlsConfig>,
}

impl Castable for joint_reconnect_opts {
    type Ownership = Boxed;
}

/// Create reconnect options with the defaults: backoff from 100 ms to 30 s, factor 2, jitter
/// 0.2, at most 64 calls wait while down, never give up, no TLS settings. On success
/// `*opts_out` is owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn joint_reconnect_opts_new(opts_out: *mut *mut joint_reconnect_opts) -> joint_status {
    guard(
        || JOINT_E_PANIC,
        || {
            if opts_out.is_null() {
                return JOINT_E_NULL;
            }
            let o = joint_reconnect_opts { policy: Reconnect::default(), tls: None };
            // SAFETY: checked non-NULL.
            unsafe { *opts_out = into_handle(o) };
            JOINT_OK
        },
    )
}

/// Free reconnect options. NULL is a no-op. Connections made with them are not affected.
#[no_mangle]
pub unsafe extern "C" fn joint_reconnect_opts_free(opts: *mut joint_reconnect_opts) {
    // SAFETY: NULL or options from joint_reconnect_opts_new, freed once (caller's promise).
    guard(|| (), || drop(unsafe { take_handle(opts) }))
}

/// The delay before the second round of attempts (the first starts at once) and after a
/// connection that was up drops, and the longest delay between rounds: milliseconds, both
/// `> 0`, `max_ms >= initial_ms` (else `JOINT_E_INVAL`).
#[no_mangle]
pub unsafe extern "C" fn joint_reconnect_opts_set_backoff_ms(opts: *mut joint_reconnect_opts, initial_ms: i32, max_ms: i32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(opts, |o| {
            if initial_ms <= 0 || max_ms < initial_ms {
                return JOINT_E_INVAL;
            }
            o.policy.initial_delay = Duration::from_millis(initial_ms as u64);
            o.policy.max_delay = Duration::from_millis(max_ms as u64);
            JOINT_OK
        })
    }
}

/// Each failed round multiplies the delay by `factor` (at least 1, else `JOINT_E_INVAL`).
#[no_mangle]
pub unsafe extern "C" fn joint_reconnect_opts_set_factor(opts: *mut joint_reconnect_opts, factor: f64) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(opts, |o| {
            if !(factor.is_finite() && factor >= 1.0) {
                return JOINT_E_INVAL;
            }
            o.policy.factor = factor;
            JOINT_OK
        })
    }
}

/// Each delay is multiplied by a random number in `[1 - jitter, 1 + jitter]`; `jitter` is 0
/// to 1 (else `JOINT_E_INVAL`).
#[no_mangle]
pub unsafe extern "C" fn joint_reconnect_opts_set_jitter(opts: *mut joint_reconnect_opts, jitter: f64) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(opts, |o| {
            if !(0.0..=1.0).contains(&jitter) {
                return JOINT_E_INVAL;
            }
            o.policy.jitter = jitter;
            JOINT_OK
        })
    }
}

/// Calls and notifications made while the connection is not up: up to `limit > 0` of them
/// (default 64), and at most the context's max message size in bytes together, wait and go
/// out, in order, once it is; the next one is refused with `JOINT_E_LIMIT`. A waiting call
/// that times out or is cancelled is withdrawn: it is never sent. `0`: they are refused at
/// once with `JOINT_E_CLOSED`. Negative is `JOINT_E_INVAL` (there is no unbounded queue).
#[no_mangle]
pub unsafe extern "C" fn joint_reconnect_opts_set_queue_limit(opts: *mut joint_reconnect_opts, limit: i32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(opts, |o| {
            o.policy.queue_limit = match limit {
                0 => None,
                n if n > 0 => Some(n as usize),
                _ => return JOINT_E_INVAL,
            };
            JOINT_OK
        })
    }
}

/// Close the connection for good (queued calls fail, a final CLOSED) once no connection has
/// been up for `give_up_ms` since it was made or went down; `-1`: retry forever (the
/// default); `0` is `JOINT_E_INVAL`.
#[no_mangle]
pub unsafe extern "C" fn joint_reconnect_opts_set_give_up_ms(opts: *mut joint_reconnect_opts, give_up_ms: i32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(opts, |o| match duration_limit(give_up_ms) {
            Ok(t) => {
                o.policy.give_up_after = t;
                JOINT_OK
            }
            Err(s) => s,
        })
    }
}

/// TLS settings for the `tls://` endpoints (copied; NULL removes them: the system's roots).
#[no_mangle]
pub unsafe extern "C" fn joint_reconnect_opts_set_tls(opts: *mut joint_reconnect_opts, tls: *const joint_tls_config) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(opts, |o| {
            if tls.is_null() {
                o.tls = None;
                return JOINT_OK;
            }
            with_ref(tls, |t: &joint_tls_config| {
                o.tls = Some(t.tls.clone());
                JOINT_OK
            })
        })
    }
}

/// Connect to the first of the `n_uris` endpoints in `uris` that answers, and reconnect
/// whenever the connection is lost, as `opts` says (NULL: the defaults of
/// `joint_reconnect_opts_new`). `*conn_out` stays the same connection across reconnects,
/// until `joint_conn_close`, `joint_conn_free` or the give-up time.
///
/// Each round of attempts tries the endpoints in order (failover); the first round starts
/// during the next `joint_ctx_process`, later ones after the backoff delay. The connection
/// callback gets `JOINT_CONN_CONNECTING` as each attempt starts (`reason`: the endpoint),
/// `JOINT_CONN_OPEN` once up, `JOINT_CONN_DOWN` when the connection drops or a round fails,
/// and a final `JOINT_CONN_CLOSED`. Calls in flight when a connection drops complete with
/// `JOINT_E_CLOSED` and are never resent; calls made while it is not up (the first connect
/// included) wait or are refused (`joint_reconnect_opts_set_queue_limit`). Each new
/// connection negotiates the joint extension again. Bad addresses (and UDP ones) are
/// returned at once. On success `*conn_out` is owned by the caller (`joint_conn_free`).
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_connect_reconnecting(
    ctx: *mut joint_ctx,
    uris: *const *const c_char,
    n_uris: usize,
    opts: *const joint_reconnect_opts,
    conn_out: *mut *mut joint_conn,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        open_conn(ctx, conn_out, |live| {
            if uris.is_null() {
                return Err(JOINT_E_NULL);
            }
            if n_uris == 0 || n_uris > isize::MAX as usize / std::mem::size_of::<*const c_char>() {
                return Err(live.refuse(JOINT_E_INVAL, "no endpoint to connect to"));
            }
            let mut list = Vec::with_capacity(n_uris);
            for i in 0..n_uris {
                // SAFETY: `uris` holds `n_uris` pointers (caller's promise).
                list.push(String::from_utf8_lossy(c_str(*uris.add(i))?).into_owned());
            }
            let (mut policy, mut tls) = (Reconnect::default(), None);
            if !opts.is_null() {
                let status = with_ref(opts, |o: &joint_reconnect_opts| {
                    (policy, tls) = (o.policy.clone(), o.tls.clone());
                    JOINT_OK
                });
                if status != JOINT_OK {
                    return Err(status);
                }
            }
            let refs: Vec<&str> = list.iter().map(String::as_str).collect();
            live.ctx.connect_reconnecting(&refs, tls.as_ref(), policy).map_err(|e| live.fail(&e))
        })
    }
}
