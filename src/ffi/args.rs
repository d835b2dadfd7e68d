//! Arguments from C: buffers, strings, out-params, timeouts and user data.

use std::ffi::{c_char, c_void, CStr};
use std::time::Duration;

use super::status::*;

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
    // SAFETY: forwarded caller promise.
    unsafe {
        put(data_out, bytes.as_ptr());
        put(len_out, bytes.len());
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

/// How long a function may wait: `-1` no limit, `0` don't wait, `> 0` milliseconds.
pub(crate) fn wait_limit(timeout_ms: i32) -> Result<Option<Duration>, joint_status> {
    match timeout_ms {
        -1 => Ok(None),
        ms if ms >= 0 => Ok(Some(Duration::from_millis(ms as u64))),
        _ => Err(JOINT_E_INVAL),
    }
}

/// A limit on something that cannot end at once (a call, a connect, a message): `-1` no
/// limit, `> 0` milliseconds; `0` ("don't wait") is refused as meaningless for it.
pub(crate) fn duration_limit(timeout_ms: i32) -> Result<Option<Duration>, joint_status> {
    match timeout_ms {
        -1 => Ok(None),
        ms if ms > 0 => Ok(Some(Duration::from_millis(ms as u64))),
        _ => Err(JOINT_E_INVAL),
    }
}

/// Releases user data; called exactly once, when a registration is replaced or its owner freed.
/// A registration function that fails (or is given a NULL callback) does not take the user
/// data: it stays the caller's.
pub type joint_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

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
