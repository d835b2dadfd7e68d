//! `joint_response` (a call's outcome, lent to its callback) and `joint_buf` (bytes owned
//! by the caller).

use std::ffi::{c_char, CString};

use super::args::put_slice;
use super::conn::pack_call_id;
use super::handle::{guard, take_handle, with_ref, Borrowed, Boxed, Castable};
use super::status::*;
use crate::reactor::Response;

/// The outcome of a call, lent to `joint_response_cb` until it returns. Read it with
/// `joint_response_status`, `joint_response_result`, `joint_response_error`,
/// `joint_response_message`, `joint_response_call_id`.
pub struct joint_response {
    status: joint_status,
    result: *const u8,
    result_len: usize,
    error: *const u8,
    error_len: usize,
    message: Option<CString>,
    call_id: u64,
}

impl Castable for joint_response {
    type Ownership = Borrowed;
}

/// Bytes owned by the caller (a result of a blocking call, a pulled item). Read with
/// `joint_buf_data`, free with `joint_buf_free`.
pub struct joint_buf {
    pub(crate) data: Vec<u8>,
}

impl Castable for joint_buf {
    type Ownership = Boxed;
}

impl joint_response {
    /// The C view of `r`; it borrows `r`'s buffers.
    pub(crate) fn of(r: &Response<'_>) -> Self {
        let nil = crate::codec::NIL;
        match &r.outcome {
            Ok(result) => joint_response {
                status: JOINT_OK,
                result: result.as_ptr(),
                result_len: result.len(),
                error: nil.as_ptr(),
                error_len: 1,
                message: None,
                call_id: pack_call_id(r.call),
            },
            Err(e) => joint_response {
                status: status_of(e.kind),
                result: nil.as_ptr(),
                result_len: 1,
                error: if e.error.is_empty() { nil.as_ptr() } else { e.error.as_ptr() },
                error_len: e.error.len().max(1),
                message: CString::new(e.message.replace('\0', " ")).ok(),
                call_id: pack_call_id(r.call),
            },
        }
    }
}

/// `JOINT_OK` with a result; `JOINT_E_REMOTE` when the peer answered with an error object;
/// otherwise why the call failed (`JOINT_E_TIMEOUT`, `JOINT_E_CLOSED`, `JOINT_E_CANCELLED`,
/// `JOINT_E_CONNREFUSED`, `JOINT_E_TOO_LARGE`, `JOINT_E_PROTOCOL`, ...).
#[no_mangle]
pub unsafe extern "C" fn joint_response_status(resp: *const joint_response) -> joint_status {
    // SAFETY: NULL or the response lent to the running callback.
    unsafe { with_ref(resp, |r| r.status) }
}

/// The result object (MessagePack; nil unless the status is `JOINT_OK`). Borrowed until the
/// callback returns.
#[no_mangle]
pub unsafe extern "C" fn joint_response_result(resp: *const joint_response, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    // SAFETY: NULL or the response lent to the running callback, whose buffers live as long.
    unsafe {
        with_ref(resp, |r| {
            put_slice(std::slice::from_raw_parts(r.result, r.result_len), data_out, len_out);
            JOINT_OK
        })
    }
}

/// The peer's error object as sent (MessagePack; nil unless the status is
/// `JOINT_E_REMOTE`). Borrowed until the callback returns. See `joint_error_message`.
#[no_mangle]
pub unsafe extern "C" fn joint_response_error(resp: *const joint_response, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    // SAFETY: NULL or the response lent to the running callback, whose buffers live as long.
    unsafe {
        with_ref(resp, |r| {
            put_slice(std::slice::from_raw_parts(r.error, r.error_len), data_out, len_out);
            JOINT_OK
        })
    }
}

/// A readable description of a failure (for `JOINT_E_REMOTE`, the message found in the
/// error object), "" on success. Borrowed until the callback returns.
#[no_mangle]
pub unsafe extern "C" fn joint_response_message(resp: *const joint_response) -> *const c_char {
    // SAFETY: NULL or the response lent to the running callback.
    unsafe { with_ref(resp, |r| r.message.as_ref().map_or(c"".as_ptr(), |m| m.as_ptr())) }
}

/// The id `joint_conn_call` gave this call (0 if `resp` is NULL).
#[no_mangle]
pub unsafe extern "C" fn joint_response_call_id(resp: *const joint_response) -> u64 {
    // SAFETY: NULL or the response lent to the running callback.
    unsafe { with_ref(resp, |r| r.call_id) }
}

/// The bytes of a buffer, borrowed until `joint_buf_free`.
#[no_mangle]
pub unsafe extern "C" fn joint_buf_data(buf: *const joint_buf, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    // SAFETY: NULL or a live buffer; out-params may be NULL.
    unsafe {
        with_ref(buf, |b| {
            put_slice(&b.data, data_out, len_out);
            JOINT_OK
        })
    }
}

/// Free a buffer. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn joint_buf_free(buf: *mut joint_buf) {
    // SAFETY: NULL or a buffer handed out by joint, freed once (caller's promise).
    guard(|| (), || drop(unsafe { take_handle(buf) }))
}
