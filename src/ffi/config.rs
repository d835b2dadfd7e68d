//! `joint_config`: options for new contexts.

use std::ffi::{c_char, c_void, CString};
use std::rc::Rc;
use std::time::Duration;

use super::args::{duration_limit, joint_free_fn, UserData};
use super::handle::{guard, into_handle, take_handle, with_object, Boxed, Castable};
use super::status::*;
use crate::reactor::{Config, LogLevel};

/// Options for new contexts. Create with `joint_config_new`, adjust with the setters, pass to
/// `joint_ctx_new` (which copies it), free with `joint_config_free`.
pub struct joint_config {
    pub(crate) config: Config,
}

impl Castable for joint_config {
    type Ownership = Boxed;
}

/// Receives log lines: `level` is one of `JOINT_LOG_*`, `message` is valid during the call.
pub type joint_log_cb = Option<unsafe extern "C" fn(level: i32, message: *const c_char, user_data: *mut c_void)>;

/// Log level: errors.
pub const JOINT_LOG_ERROR: i32 = 1;
/// Log level: warnings (for example malformed messages from peers).
pub const JOINT_LOG_WARN: i32 = 2;
/// Log level: connection life cycle.
pub const JOINT_LOG_INFO: i32 = 3;
/// Log level: everything.
pub const JOINT_LOG_DEBUG: i32 = 4;

/// Create a configuration with the defaults: 64 MiB maximum message size, nesting depth 128,
/// 65536 calls in flight per connection and direction, 10 s connect timeout, a 256 MiB
/// memory budget, a 1 MiB output high-water mark, 4096 connections, a 30 s message timeout,
/// no idle timeout, keepalive pings after 30 s of quiet with a 30 s timeout (joint peers only),
/// TCP keepalive after 60 s, a 5 s linger, a listen backlog of 1024, the joint extension on with a
/// window of 64 items, 4 worker threads, no logging (unless the JOINT_LOG environment
/// variable is set). On success `*config_out` is owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn joint_config_new(config_out: *mut *mut joint_config) -> joint_status {
    guard(
        || JOINT_E_PANIC,
        || {
            if config_out.is_null() {
                return JOINT_E_NULL;
            }
            // SAFETY: checked non-NULL.
            unsafe { *config_out = into_handle(joint_config { config: Config::default() }) };
            JOINT_OK
        },
    )
}

/// Free a configuration. NULL is a no-op. Contexts created from it are not affected.
#[no_mangle]
pub unsafe extern "C" fn joint_config_free(config: *mut joint_config) {
    // SAFETY: NULL or a configuration from joint_config_new, freed once (caller's promise).
    guard(|| (), || drop(unsafe { take_handle(config) }))
}

/// Apply `set` if `valid`, else `JOINT_E_INVAL`.
///
/// # Safety
/// `config` is NULL or a live configuration.
unsafe fn set(config: *mut joint_config, valid: bool, set: impl FnOnce(&mut Config)) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(config, |c| {
            if !valid {
                return JOINT_E_INVAL;
            }
            set(&mut c.config);
            JOINT_OK
        })
    }
}

/// Largest message accepted or sent, in bytes (at least 64). Larger incoming requests are
/// answered with a `JOINT_RPC_TOO_LARGE` error and skipped; the connection stays open.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_max_message_size(config: *mut joint_config, bytes: usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set(config, bytes >= 64, |c| c.limits.frame.max_message_size = bytes) }
}

/// Deepest nesting of arrays and maps accepted in a message (the RPC envelope counts as one
/// level; at least 2). A deeper message closes its connection (after an error reply when
/// its msgid is known).
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_max_depth(config: *mut joint_config, depth: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set(config, depth >= 2, |c| c.limits.frame.max_depth = depth) }
}

/// Most requests from a peer left unanswered at once per connection (excess ones get a
/// `JOINT_RPC_TOO_MANY_REQUESTS` error), and most calls pending per connection (excess
/// `joint_conn_call` returns `JOINT_E_LIMIT`). At least 1.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_max_inflight(config: *mut joint_config, calls: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set(config, calls >= 1, |c| c.limits.max_inflight = calls as usize) }
}

/// Connect timeout in milliseconds (default 10000; -1: as long as the operating system
/// tries; 0 is `JOINT_E_INVAL`).
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_connect_timeout_ms(config: *mut joint_config, timeout_ms: i32) -> joint_status {
    let limit = duration_limit(timeout_ms);
    // SAFETY: forwarded caller promise.
    unsafe { set(config, limit.is_ok(), |c| c.connect_timeout = limit.unwrap_or_default()) }
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
    unsafe { set(config, bytes >= 1 << 20, |c| c.memory_budget = bytes) }
}

/// Output high-water mark, in bytes (at least 1; default 1 MiB): while more than this is
/// queued for a connection, its requests are not read or dispatched, and `joint_conn_send`
/// returns `JOINT_WOULD_BLOCK`, until the output drains to half of it. A peer that does not
/// read is slowed down, not buffered for.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_output_high_water(config: *mut joint_config, bytes: usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set(config, bytes >= 1, |c| c.output_high_water = bytes) }
}

/// Most open connections of a context, accepted and opened together (at least 1; default
/// 4096). A connection accepted beyond it is closed at once (its client sees the close).
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_max_connections(config: *mut joint_config, connections: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set(config, connections >= 1, |c| c.max_connections = connections as usize) }
}

/// Message timeout in milliseconds (default 30000; -1: none; 0 is `JOINT_E_INVAL`): a
/// message must arrive whole within this long of its first byte, and queued output must make
/// progress within it, or the connection closes (`JOINT_E_TIMEOUT` / `JOINT_E_LIMIT` in its
/// close event).
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_message_timeout_ms(config: *mut joint_config, timeout_ms: i32) -> joint_status {
    let limit = duration_limit(timeout_ms);
    // SAFETY: forwarded caller promise.
    unsafe { set(config, limit.is_ok(), |c| c.message_timeout = limit.unwrap_or_default()) }
}

/// Idle timeout in milliseconds (default -1: none; 0 is `JOINT_E_INVAL`): a connection with
/// no traffic either way, no unanswered requests and no pending calls for this long is closed.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_idle_timeout_ms(config: *mut joint_config, timeout_ms: i32) -> joint_status {
    let limit = duration_limit(timeout_ms);
    // SAFETY: forwarded caller promise.
    unsafe { set(config, limit.is_ok(), |c| c.idle_timeout = limit.unwrap_or_default()) }
}

/// Keepalive between joint peers: while calls of ours are pending, after `interval_ms` with
/// nothing from the peer (default 30000; -1: never ping; 0 is `JOINT_E_INVAL`) send it a PING, which it answers at once;
/// when nothing at all has come `timeout_ms` after the PING (default 30000; must be > 0,
/// else `JOINT_E_INVAL`), the peer is taken for dead (a stopped process, a pulled cable):
/// the connection closes and every pending call fails with `JOINT_E_CLOSED` ("no answer to
/// keepalive ping within N ms (peer dead or stopped)"). Only on connections where both ends
/// agreed on the joint extension: a stock peer never receives a PING. A connection that is
/// not being read (output back-pressure, memory budget) or whose peer sent EOF is not judged.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_keepalive_ms(config: *mut joint_config, interval_ms: i32, timeout_ms: i32) -> joint_status {
    let interval = duration_limit(interval_ms);
    // With pings off the timeout is not used: -1 (or anything) is fine then.
    let valid = interval.is_ok() && (timeout_ms > 0 || interval_ms == -1);
    // SAFETY: forwarded caller promise.
    unsafe {
        set(config, valid, |c| {
            c.keepalive_interval = interval.unwrap_or_default();
            c.keepalive_timeout = Duration::from_millis(timeout_ms.max(1) as u64);
        })
    }
}

/// TCP keepalive on TCP and TLS connections, accepted or connected, with any peer (default
/// 60000; -1: leave the sockets as the OS makes them; 0 is `JOINT_E_INVAL`): `SO_KEEPALIVE`
/// with the first probe after `idle_ms` without traffic (`TCP_KEEPIDLE`, whole seconds,
/// rounded up), then one every third of it (`TCP_KEEPINTVL`, at least 1 s); the kernel resets
/// an idle connection after 3 unanswered probes (`TCP_KEEPCNT`), and pending calls fail with
/// `JOINT_E_CLOSED`. Probes are only sent while nothing we sent is unacknowledged: with
/// data in flight the kernel's retransmission limit applies instead (about 15 minutes by
/// default). It notices hosts that are gone, not processes that stopped (their kernel
/// still answers): that is what `joint_config_set_keepalive_ms` is for.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_tcp_keepalive_ms(config: *mut joint_config, idle_ms: i32) -> joint_status {
    let idle = duration_limit(idle_ms);
    // SAFETY: forwarded caller promise.
    unsafe { set(config, idle.is_ok(), |c| c.tcp_keepalive = idle.unwrap_or_default()) }
}

/// Linger in milliseconds (default 5000; 0: don't wait): after a peer closed its end, how
/// long the requests it sent may still be answered; then they are cancelled
/// (`joint_request_is_cancelled` says so, answering does nothing) and the connection is
/// freed. -1 is `JOINT_E_INVAL`: a peer that left may not hold the context's memory forever.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_linger_ms(config: *mut joint_config, linger_ms: i32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set(config, linger_ms >= 0, |c| c.linger = Duration::from_millis(linger_ms.max(0) as u64)) }
}

/// Connections the kernel queues for each listener until they are accepted (at least 1;
/// default 1024, capped by the system's `net.core.somaxconn`).
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_listen_backlog(config: *mut joint_config, backlog: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set(config, (1..=i32::MAX as u32).contains(&backlog), |c| c.listen_backlog = backlog) }
}

/// Offer the joint extension on connections this context opens and accept it on
/// connections it accepts (default: true). Stock peers are unaffected either way: the offer
/// is one ordinary request to the reserved method "joint.hello", answered by them with an
/// ordinary error.
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_extension(config: *mut joint_config, enabled: bool) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set(config, true, |c| c.limits.ext.enabled = enabled) }
}

/// Flow-control window: items a peer may stream into (or out of) one call before it must
/// wait for credit (default 64; at least 1).
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_window(config: *mut joint_config, items: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set(config, items >= 1, |c| c.limits.ext.window = items) }
}

/// Threads of the worker pool for methods registered with `joint_ctx_register_pool`
/// (default 4; at least 1; started on first use).
#[no_mangle]
pub unsafe extern "C" fn joint_config_set_workers(config: *mut joint_config, threads: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { set(config, threads >= 1, |c| c.workers = threads as usize) }
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
        with_object(config, move |c| {
            let c = &mut c.config;
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
                    cb(level as i32, text.as_ptr(), ud.get());
                }) as crate::reactor::LogSink
            });
            JOINT_OK
        })
    }
}
