//! Status codes, the library version, and reading remote error objects.

use std::ffi::c_char;

use super::args::{put, slice};
use super::handle::guard;
use crate::error::ErrorKind;

/// A status code: `JOINT_OK` (0) is success; the positive `JOINT_WOULD_BLOCK` and `JOINT_DONE`
/// are outcomes, not errors; negative values are errors (see `joint_status_str`).
pub type joint_status = i32;

// The codes are typed `i32` (what `joint_status` is) so that the header lists them first.

/// Success.
pub const JOINT_OK: i32 = 0;
/// Not an error: nothing can be done yet (no credit, the output is full, nothing arrived
/// within the wait); wait for the WRITABLE event or wait again.
pub const JOINT_WOULD_BLOCK: i32 = 1;
/// Not an error: a stream has ended (its result is available).
pub const JOINT_DONE: i32 = 2;
/// An argument is invalid (malformed MessagePack payload, out-of-range value).
pub const JOINT_E_INVAL: i32 = -1;
/// A required pointer argument is NULL.
pub const JOINT_E_NULL: i32 = -2;
/// Called from inside a callback where that is not allowed (process, wait, blocking calls).
pub const JOINT_E_RECURSIVE: i32 = -3;
/// The object is not in a state that allows this call (for handles of a freed context:
/// the context is gone).
pub const JOINT_E_STATE: i32 = -4;
/// A configured limit was reached (for example calls in flight on a connection).
pub const JOINT_E_LIMIT: i32 = -5;
/// The address could not be parsed or resolved.
pub const JOINT_E_ADDRESS: i32 = -6;
/// Reader: the next value has another type.
pub const JOINT_E_TYPE: i32 = -7;
/// Reader: no more values.
pub const JOINT_E_EOF: i32 = -8;
/// Needs the joint extension, which the peer (a stock MessagePack-RPC peer) or this call
/// (not a streaming call) does not have.
pub const JOINT_E_UNSUPPORTED: i32 = -9;
/// An operating-system I/O error (see `joint_ctx_last_error`).
pub const JOINT_E_IO: i32 = -100;
/// The peer refused the connection.
pub const JOINT_E_CONNREFUSED: i32 = -101;
/// The connection is closed or was lost.
pub const JOINT_E_CLOSED: i32 = -102;
/// A call's timeout or deadline passed (never "nothing arrived yet": that is
/// `JOINT_WOULD_BLOCK`).
pub const JOINT_E_TIMEOUT: i32 = -103;
/// Cancelled by the application (cancel, close, or freeing the connection or context).
pub const JOINT_E_CANCELLED: i32 = -104;
/// The address is already in use.
pub const JOINT_E_ADDRINUSE: i32 = -105;
/// TLS failed: the peer's certificate was not trusted (unknown issuer, name mismatch,
/// expired), a client certificate was missing or refused, or the peer does not speak TLS.
/// The context's last error (or the response's message) names the cause.
pub const JOINT_E_TLS: i32 = -106;
/// The peer broke the protocol (malformed message).
pub const JOINT_E_PROTOCOL: i32 = -200;
/// A message or payload is larger than the size limit.
pub const JOINT_E_TOO_LARGE: i32 = -201;
/// The peer answered with an error object (see `joint_response_error`).
pub const JOINT_E_REMOTE: i32 = -300;
/// A panic inside joint was caught; the context is now poisoned.
pub const JOINT_E_PANIC: i32 = -900;
/// An earlier panic poisoned this context; only `joint_ctx_free` remains valid.
pub const JOINT_E_POISONED: i32 = -901;

/// Error code in joint's `[code, message]` error objects (docs/PROTOCOL.md): the handler
/// failed.
pub const JOINT_RPC_HANDLER_FAILED: i64 = 0;
/// The params were not what the method expects.
pub const JOINT_RPC_INVALID_PARAMS: i64 = 1;
/// No such method.
pub const JOINT_RPC_NO_METHOD: i64 = 2;
/// The request was malformed.
pub const JOINT_RPC_INVALID_REQUEST: i64 = 3;
/// The request was too large or too deep.
pub const JOINT_RPC_TOO_LARGE: i64 = 4;
/// Too many requests in flight on the connection.
pub const JOINT_RPC_TOO_MANY_REQUESTS: i64 = 5;
/// The server is shutting down.
pub const JOINT_RPC_SHUTTING_DOWN: i64 = 6;
/// The request was freed without an answer.
pub const JOINT_RPC_NOT_ANSWERED: i64 = 7;
/// The caller cancelled the call.
pub const JOINT_RPC_CANCELLED: i64 = 8;
/// The call's deadline passed.
pub const JOINT_RPC_DEADLINE_EXCEEDED: i64 = 9;
/// Error code in joint's error objects: the answer did not fit in the answering end's memory
/// budget (`joint_config_set_memory_budget`); try again later or ask for less.
pub const JOINT_RPC_RESOURCE_EXHAUSTED: i64 = 10;

pub(crate) fn status_of(kind: ErrorKind) -> joint_status {
    match kind {
        ErrorKind::InvalidArgument => JOINT_E_INVAL,
        ErrorKind::Recursive => JOINT_E_RECURSIVE,
        ErrorKind::State => JOINT_E_STATE,
        ErrorKind::Limit => JOINT_E_LIMIT,
        ErrorKind::Address => JOINT_E_ADDRESS,
        ErrorKind::Io => JOINT_E_IO,
        ErrorKind::ConnectionRefused => JOINT_E_CONNREFUSED,
        ErrorKind::AddressInUse => JOINT_E_ADDRINUSE,
        ErrorKind::Tls => JOINT_E_TLS,
        ErrorKind::Closed => JOINT_E_CLOSED,
        ErrorKind::Timeout => JOINT_E_TIMEOUT,
        ErrorKind::Cancelled => JOINT_E_CANCELLED,
        ErrorKind::Protocol => JOINT_E_PROTOCOL,
        ErrorKind::TooLarge => JOINT_E_TOO_LARGE,
        ErrorKind::Remote => JOINT_E_REMOTE,
        ErrorKind::Unsupported => JOINT_E_UNSUPPORTED,
    }
}

static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library version as a static string, such as "0.2.0". Thread-safe.
#[no_mangle]
pub extern "C" fn joint_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// The library version as `(major << 16) | (minor << 8) | patch`, comparable with
/// `JOINT_VERSION_NUMBER`. Thread-safe.
#[no_mangle]
pub extern "C" fn joint_version_number() -> u32 {
    let part = |s: &str| s.parse::<u32>().unwrap_or(0);
    (part(env!("CARGO_PKG_VERSION_MAJOR")) << 16) | (part(env!("CARGO_PKG_VERSION_MINOR")) << 8) | part(env!("CARGO_PKG_VERSION_PATCH"))
}

/// A static, NUL-terminated description of a status code ("unknown status" for codes this
/// version does not know). Never NULL; thread-safe.
#[no_mangle]
pub extern "C" fn joint_status_str(status: joint_status) -> *const c_char {
    let s: &'static str = match status {
        JOINT_OK => "ok\0",
        JOINT_E_INVAL => "invalid argument\0",
        JOINT_E_NULL => "NULL argument\0",
        JOINT_E_RECURSIVE => "not allowed from inside a callback\0",
        JOINT_E_STATE => "wrong state for this call\0",
        JOINT_E_LIMIT => "limit reached\0",
        JOINT_E_ADDRESS => "invalid or unresolvable address\0",
        JOINT_E_TYPE => "value has another type\0",
        JOINT_E_EOF => "no more values\0",
        JOINT_E_UNSUPPORTED => "needs the joint extension\0",
        JOINT_WOULD_BLOCK => "nothing can be done yet (would block)\0",
        JOINT_DONE => "stream ended\0",
        JOINT_E_IO => "I/O error\0",
        JOINT_E_CONNREFUSED => "connection refused\0",
        JOINT_E_CLOSED => "connection closed\0",
        JOINT_E_TIMEOUT => "timeout or deadline passed\0",
        JOINT_E_CANCELLED => "cancelled\0",
        JOINT_E_ADDRINUSE => "address in use\0",
        JOINT_E_TLS => "TLS failure\0",
        JOINT_E_PROTOCOL => "protocol error\0",
        JOINT_E_TOO_LARGE => "message too large\0",
        JOINT_E_REMOTE => "the peer returned an error\0",
        JOINT_E_PANIC => "internal panic (context poisoned)\0",
        JOINT_E_POISONED => "context poisoned by an earlier panic\0",
        _ => "unknown status\0",
    };
    s.as_ptr().cast()
}

/// Whether `status` leaves the context unusable (only `joint_ctx_free` remains valid).
#[no_mangle]
pub extern "C" fn joint_status_is_fatal(status: joint_status) -> bool {
    status <= JOINT_E_PANIC
}

/// Extract a human-readable message from a remote error object (MessagePack bytes): a
/// string, the first string of an array such as `[code, message]`, or the "message" value of
/// a map. Copies it into `buf` (NUL-terminated, truncated to fit when `buf_len > 0`) and
/// returns its full length, like snprintf; 0 if there is no message. `buf` may be NULL when
/// `buf_len` is 0 (to query the length).
#[no_mangle]
pub unsafe extern "C" fn joint_error_message(error: *const u8, error_len: usize, buf: *mut c_char, buf_len: usize) -> usize {
    guard(
        || 0,
        || {
            // SAFETY: the caller passes a readable buffer of error_len bytes (or NULL, 0).
            let Ok(err) = (unsafe { slice(error, error_len) }) else { return 0 };
            let message = crate::codec::error_message(err).unwrap_or(&[]);
            if !buf.is_null() && buf_len > 0 {
                let n = message.len().min(buf_len - 1);
                // SAFETY: buf has buf_len writable bytes; we write n + 1 <= buf_len.
                unsafe {
                    std::ptr::copy_nonoverlapping(message.as_ptr(), buf.cast::<u8>(), n);
                    *buf.add(n) = 0;
                }
            }
            message.len()
        },
    )
}

/// The integer code of a remote error object: the first element of `[code, ...]`, or the
/// "code" value of a map. `JOINT_E_TYPE` if it has none.
#[no_mangle]
pub unsafe extern "C" fn joint_error_code(error: *const u8, error_len: usize, code_out: *mut i64) -> joint_status {
    guard(
        || JOINT_E_PANIC,
        || {
            // SAFETY: the caller passes a readable buffer of error_len bytes (or NULL, 0).
            let err = match unsafe { slice(error, error_len) } {
                Ok(e) => e,
                Err(s) => return s,
            };
            match crate::codec::error_code(err) {
                Some(code) => {
                    // SAFETY: out-param, NULL allowed.
                    unsafe { put(code_out, code) };
                    JOINT_OK
                }
                None => JOINT_E_TYPE,
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rpc_error;

    #[test]
    fn rpc_error_codes_match_the_protocol() {
        assert_eq!(JOINT_RPC_HANDLER_FAILED, rpc_error::HANDLER_FAILED);
        assert_eq!(JOINT_RPC_INVALID_PARAMS, rpc_error::INVALID_PARAMS);
        assert_eq!(JOINT_RPC_NO_METHOD, rpc_error::NO_METHOD);
        assert_eq!(JOINT_RPC_INVALID_REQUEST, rpc_error::INVALID_REQUEST);
        assert_eq!(JOINT_RPC_TOO_LARGE, rpc_error::TOO_LARGE);
        assert_eq!(JOINT_RPC_TOO_MANY_REQUESTS, rpc_error::TOO_MANY_REQUESTS);
        assert_eq!(JOINT_RPC_SHUTTING_DOWN, rpc_error::SHUTTING_DOWN);
        assert_eq!(JOINT_RPC_NOT_ANSWERED, rpc_error::NOT_ANSWERED);
        assert_eq!(JOINT_RPC_CANCELLED, rpc_error::CANCELLED);
        assert_eq!(JOINT_RPC_DEADLINE_EXCEEDED, rpc_error::DEADLINE_EXCEEDED);
        assert_eq!(JOINT_RPC_RESOURCE_EXHAUSTED, rpc_error::RESOURCE_EXHAUSTED);
    }

    #[test]
    fn only_panics_are_fatal() {
        assert!(joint_status_is_fatal(JOINT_E_PANIC) && joint_status_is_fatal(JOINT_E_POISONED));
        assert!(!joint_status_is_fatal(JOINT_E_CLOSED) && !joint_status_is_fatal(JOINT_WOULD_BLOCK));
    }
}
