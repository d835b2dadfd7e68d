//! The C ABI. Every `extern "C"` function of libjoint is in this module and its children, and
//! so is every `unsafe` that touches a pointer handed over by C.
//!
//! Rules that hold for every function (see docs/c-api-conventions.md):
//! - a panic never crosses into C: each export catches it, returns `JOINT_E_PANIC` (or a
//!   documented default) and poisons the context, after which only `_free` works;
//! - every pointer is checked for NULL; `(NULL, 0)` is an empty buffer;
//! - out-params are written only on success.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)] // every export is unsafe for the same documented reasons
#![deny(unsafe_op_in_unsafe_fn)]

mod conn;
mod ctx;
mod msgpack;
mod request;
mod stream;

pub use conn::*;
pub use ctx::*;
pub use msgpack::*;
pub use request::*;
pub use stream::*;

use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, ErrorKind};
use crate::reactor::Context;

/// A status code: 0 is success, negative values are errors (see `joint_status_str`).
pub type joint_status = i32;

/// Success.
pub const JOINT_OK: joint_status = 0;
/// Not an error: flow control has no credit now; wait for the WRITABLE event and try again.
pub const JOINT_WOULD_BLOCK: joint_status = 1;
/// Not an error: a stream has ended (its result is available).
pub const JOINT_DONE: joint_status = 2;
/// An argument is invalid (malformed MessagePack payload, out-of-range value).
pub const JOINT_E_INVAL: joint_status = -1;
/// A required pointer argument is NULL.
pub const JOINT_E_NULL: joint_status = -2;
/// Called from inside a callback where that is not allowed (process, wait, blocking calls).
pub const JOINT_E_RECURSIVE: joint_status = -3;
/// The object is not in a state that allows this call.
pub const JOINT_E_STATE: joint_status = -4;
/// A configured limit was reached (for example calls in flight on a connection).
pub const JOINT_E_LIMIT: joint_status = -5;
/// The address could not be parsed or resolved.
pub const JOINT_E_ADDRESS: joint_status = -6;
/// Reader: the next value has another type.
pub const JOINT_E_TYPE: joint_status = -7;
/// Reader: no more values.
pub const JOINT_E_EOF: joint_status = -8;
/// Needs the joint extension, which the peer (a stock MessagePack-RPC peer) or this call
/// (not a streaming call) does not have.
pub const JOINT_E_UNSUPPORTED: joint_status = -9;
/// An operating-system I/O error (see `joint_ctx_last_error`).
pub const JOINT_E_IO: joint_status = -100;
/// The peer refused the connection.
pub const JOINT_E_CONNREFUSED: joint_status = -101;
/// The connection is closed or was lost.
pub const JOINT_E_CLOSED: joint_status = -102;
/// A timeout expired.
pub const JOINT_E_TIMEOUT: joint_status = -103;
/// Cancelled by the application (cancel, close, or freeing the connection or context).
pub const JOINT_E_CANCELLED: joint_status = -104;
/// The address is already in use.
pub const JOINT_E_ADDRINUSE: joint_status = -105;
/// The peer broke the protocol (malformed message).
pub const JOINT_E_PROTOCOL: joint_status = -200;
/// A message or payload is larger than the size limit.
pub const JOINT_E_TOO_LARGE: joint_status = -201;
/// The peer answered with an error object (see `joint_response_error`).
pub const JOINT_E_REMOTE: joint_status = -300;
/// A panic inside joint was caught; the context is now poisoned.
pub const JOINT_E_PANIC: joint_status = -900;
/// An earlier panic poisoned this context; only `joint_ctx_free` remains valid.
pub const JOINT_E_POISONED: joint_status = -901;

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
/// Error code in joint's error objects: the answer did not fit in the answering end's memory
/// budget (`joint_config_set_memory_budget`); try again later or ask for less.
pub const JOINT_RPC_RESOURCE_EXHAUSTED: i64 = 10;

/// Releases user data; called exactly once, when a registration is replaced or its owner freed.
/// A registration function that fails (or is given a NULL callback) does not take the user
/// data: it stays the caller's.
pub type joint_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

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
        ErrorKind::Closed => JOINT_E_CLOSED,
        ErrorKind::Timeout => JOINT_E_TIMEOUT,
        ErrorKind::Cancelled => JOINT_E_CANCELLED,
        ErrorKind::Protocol => JOINT_E_PROTOCOL,
        ErrorKind::TooLarge => JOINT_E_TOO_LARGE,
        ErrorKind::Remote => JOINT_E_REMOTE,
        ErrorKind::Unsupported => JOINT_E_UNSUPPORTED,
    }
}

/// Run an export's body, turning a panic into `on_panic`.
pub(crate) fn guard<R>(on_panic: R, body: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(on_panic)
}

/// Run a body against a live context: poisoned contexts are refused, and a panic poisons it.
pub(crate) fn with_context(ctx: &Context, body: impl FnOnce(&Context) -> joint_status) -> joint_status {
    if ctx.is_poisoned() {
        ctx.set_last_error("the context is poisoned by an earlier panic; only joint_ctx_free works");
        return JOINT_E_POISONED;
    }
    match catch_unwind(AssertUnwindSafe(|| body(ctx))) {
        Ok(status) => status,
        Err(_) => {
            ctx.poison();
            ctx.set_last_error("a panic inside joint was caught; the context is poisoned");
            JOINT_E_PANIC
        }
    }
}

/// Record `e` as the context's last error and return its status.
pub(crate) fn fail(ctx: &Context, e: &Error) -> joint_status {
    ctx.set_last_error(&e.message);
    status_of(e.kind)
}

/// Borrow `(ptr, len)` as a slice: `(NULL, 0)` is empty, `(NULL, n)` is an error.
///
/// # Safety
/// If `ptr` is not NULL it must point to `len` readable bytes that stay valid and unmodified
/// for `'a`.
pub(crate) unsafe fn slice<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], joint_status> {
    if ptr.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(JOINT_E_NULL) };
    }
    if len > isize::MAX as usize {
        return Err(JOINT_E_INVAL);
    }
    // SAFETY: non-NULL, length checked against isize::MAX; validity is the caller's promise.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrow a call's method name and params; `(NULL, 0)` or empty params mean none (an
/// empty array).
///
/// # Safety
/// As for [`c_str`] and [`slice`].
pub(crate) unsafe fn method_and_params<'a>(method: *const c_char, params: *const u8, len: usize) -> Result<(&'a [u8], &'a [u8]), joint_status> {
    // SAFETY: forwarded caller promise.
    let method = unsafe { c_str(method) }?;
    // SAFETY: forwarded caller promise.
    match unsafe { slice(params, len) }? {
        [] => Ok((method, crate::codec::EMPTY_ARRAY)),
        p => Ok((method, p)),
    }
}

/// Borrow a NUL-terminated C string's bytes.
///
/// # Safety
/// If not NULL, `s` must point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn c_str<'a>(s: *const c_char) -> Result<&'a [u8], joint_status> {
    if s.is_null() {
        return Err(JOINT_E_NULL);
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's promise.
    Ok(unsafe { CStr::from_ptr(s) }.to_bytes())
}

/// Write a borrowed byte view into out-params (either may be NULL).
///
/// # Safety
/// Non-NULL out pointers must be valid for writes.
pub(crate) unsafe fn put_slice(bytes: &[u8], data_out: *mut *const u8, len_out: *mut usize) {
    if !data_out.is_null() {
        // SAFETY: checked non-NULL; writable by the caller's promise.
        unsafe { *data_out = bytes.as_ptr() };
    }
    if !len_out.is_null() {
        // SAFETY: as above.
        unsafe { *len_out = bytes.len() };
    }
}

/// Write `value` to an out-param if it is not NULL.
///
/// # Safety
/// A non-NULL `out` must be valid for writes.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: checked non-NULL; writable by the caller's promise.
        unsafe { *out = value };
    }
}

/// Holds C user data and releases it with its `joint_free_fn` when dropped.
///
/// Create it only once a registration has succeeded: a function that fails must leave the
/// user data to the caller. Closures must use [`get`](UserData::get), never the field: a
/// closure that reads only `ptr` would capture the pointer alone (Rust 2021 captures
/// disjoint fields) and the UserData would be dropped — freeing the data — at once.
pub(crate) struct UserData {
    ptr: *mut c_void,
    free: joint_free_fn,
}

impl UserData {
    pub fn new(ptr: *mut c_void, free: joint_free_fn) -> Self {
        UserData { ptr, free }
    }

    pub fn get(&self) -> *mut c_void {
        self.ptr
    }
}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: the application registered `free` for exactly this pointer, and it runs
            // once because UserData is not Clone.
            unsafe { free(self.ptr) };
        }
    }
}

static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library version as a static string, such as "0.1.0". Thread-safe.
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
        JOINT_WOULD_BLOCK => "no flow-control credit yet (would block)\0",
        JOINT_DONE => "stream ended\0",
        JOINT_E_IO => "I/O error\0",
        JOINT_E_CONNREFUSED => "connection refused\0",
        JOINT_E_CLOSED => "connection closed\0",
        JOINT_E_TIMEOUT => "timed out\0",
        JOINT_E_CANCELLED => "cancelled\0",
        JOINT_E_ADDRINUSE => "address in use\0",
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
    guard(0, || {
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
    })
}

/// The integer code of a remote error object: the first element of `[code, ...]`, or the
/// "code" value of a map. `JOINT_E_TYPE` if it has none.
#[no_mangle]
pub unsafe extern "C" fn joint_error_code(error: *const u8, error_len: usize, code_out: *mut i64) -> joint_status {
    guard(JOINT_E_PANIC, || {
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
    })
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
        assert_eq!(JOINT_RPC_RESOURCE_EXHAUSTED, rpc_error::RESOURCE_EXHAUSTED);
    }

    #[test]
    fn panics_poison_the_context() {
        let ctx = Context::new(Default::default()).unwrap();
        assert_eq!(with_context(&ctx, |_| panic!("boom")), JOINT_E_PANIC);
        assert_eq!(with_context(&ctx, |_| JOINT_OK), JOINT_E_POISONED);
        assert!(joint_status_is_fatal(JOINT_E_PANIC) && joint_status_is_fatal(JOINT_E_POISONED));
        assert!(!joint_status_is_fatal(JOINT_E_CLOSED));
    }
}
