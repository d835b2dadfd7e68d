//! `joint_writer` and `joint_reader`: a small MessagePack writer and reader, so C programs
//! need no other MessagePack library. Their value functions are named `joint_write_*` and
//! `joint_read_*` (the one exception to `joint_<object>_<verb>`, for brevity).

use std::ffi::c_char;

use super::args::{c_str, put, put_slice, slice};
use super::handle::{guard, into_handle, take_handle, with_object, with_ref, Boxed, Castable};
use super::status::*;
use crate::codec::{self, read};

/// Builds MessagePack bytes. `joint_writer_new`, then `joint_write_*` in order (containers
/// take their element count first, then the elements), then `joint_writer_data`. Reuse it
/// with `joint_writer_reset`; free with `joint_writer_free`.
pub struct joint_writer {
    buf: Vec<u8>,
}

/// Reads MessagePack values one at a time from a buffer the caller keeps alive and unchanged
/// while reading. Each `joint_read_*` consumes one value on success; on failure
/// (`JOINT_E_TYPE`, `JOINT_E_EOF`, `JOINT_E_PROTOCOL` for malformed data) nothing is consumed.
pub struct joint_reader {
    data: *const u8,
    len: usize,
    pos: usize,
}

impl Castable for joint_writer {
    type Ownership = Boxed;
}

impl Castable for joint_reader {
    type Ownership = Boxed;
}

/// Value types reported by `joint_reader_type`.
/// No value: end of data, or malformed data.
pub const JOINT_TYPE_NONE: i32 = 0;
/// nil
pub const JOINT_TYPE_NIL: i32 = 1;
/// true or false
pub const JOINT_TYPE_BOOL: i32 = 2;
/// any integer (read with `joint_read_int` or `joint_read_uint`)
pub const JOINT_TYPE_INT: i32 = 3;
/// float32 or float64
pub const JOINT_TYPE_FLOAT: i32 = 4;
/// str
pub const JOINT_TYPE_STR: i32 = 5;
/// bin
pub const JOINT_TYPE_BIN: i32 = 6;
/// array
pub const JOINT_TYPE_ARRAY: i32 = 7;
/// map
pub const JOINT_TYPE_MAP: i32 = 8;
/// ext
pub const JOINT_TYPE_EXT: i32 = 9;

/// Create a writer. On success `*writer_out` is owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn joint_writer_new(writer_out: *mut *mut joint_writer) -> joint_status {
    guard(
        || JOINT_E_PANIC,
        || {
            if writer_out.is_null() {
                return JOINT_E_NULL;
            }
            // SAFETY: checked non-NULL.
            unsafe { *writer_out = into_handle(joint_writer { buf: Vec::with_capacity(256) }) };
            JOINT_OK
        },
    )
}

/// Free a writer. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn joint_writer_free(writer: *mut joint_writer) {
    // SAFETY: NULL or made by joint_writer_new, freed once (caller's promise).
    guard(|| (), || drop(unsafe { take_handle(writer) }))
}

/// Empty the writer, keeping its memory.
#[no_mangle]
pub unsafe extern "C" fn joint_writer_reset(writer: *mut joint_writer) -> joint_status {
    // SAFETY: NULL or a live writer.
    unsafe { with_writer(writer, |b| b.clear()) }
}

/// The bytes written so far, borrowed until the next call on the writer.
#[no_mangle]
pub unsafe extern "C" fn joint_writer_data(writer: *const joint_writer, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    // SAFETY: NULL or a live writer; out-params may be NULL.
    unsafe {
        with_ref(writer, |w| {
            put_slice(&w.buf, data_out, len_out);
            JOINT_OK
        })
    }
}

/// Append to a writer's buffer.
///
/// # Safety
/// `writer` is NULL or a live writer.
unsafe fn with_writer(writer: *mut joint_writer, f: impl FnOnce(&mut Vec<u8>)) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(writer, |w| {
            f(&mut w.buf);
            JOINT_OK
        })
    }
}

/// Append nil.
#[no_mangle]
pub unsafe extern "C" fn joint_write_nil(writer: *mut joint_writer) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_writer(writer, codec::write_nil) }
}

/// Append a boolean.
#[no_mangle]
pub unsafe extern "C" fn joint_write_bool(writer: *mut joint_writer, value: bool) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_writer(writer, |b| codec::write_bool(b, value)) }
}

/// Append a signed integer (smallest encoding).
#[no_mangle]
pub unsafe extern "C" fn joint_write_int(writer: *mut joint_writer, value: i64) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_writer(writer, |b| codec::write_sint(b, value)) }
}

/// Append an unsigned integer (smallest encoding).
#[no_mangle]
pub unsafe extern "C" fn joint_write_uint(writer: *mut joint_writer, value: u64) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_writer(writer, |b| codec::write_uint(b, value)) }
}

/// Append a float64.
#[no_mangle]
pub unsafe extern "C" fn joint_write_double(writer: *mut joint_writer, value: f64) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_writer(writer, |b| codec::write_f64(b, value)) }
}

/// Append a float32.
#[no_mangle]
pub unsafe extern "C" fn joint_write_float(writer: *mut joint_writer, value: f32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_writer(writer, |b| codec::write_f32(b, value)) }
}

/// Append a str of `len` bytes (UTF-8 expected, not checked).
#[no_mangle]
pub unsafe extern "C" fn joint_write_str(writer: *mut joint_writer, data: *const u8, len: usize) -> joint_status {
    // SAFETY: `data` has `len` readable bytes (or is NULL with 0).
    let bytes = match unsafe { slice(data, len) } {
        Ok(b) => b,
        Err(s) => return s,
    };
    if len > u32::MAX as usize {
        return JOINT_E_TOO_LARGE;
    }
    // SAFETY: forwarded caller promise.
    unsafe { with_writer(writer, |b| codec::write_str(b, bytes)) }
}

/// Append a NUL-terminated string as a str.
#[no_mangle]
pub unsafe extern "C" fn joint_write_cstr(writer: *mut joint_writer, s: *const c_char) -> joint_status {
    // SAFETY: NULL or a NUL-terminated string.
    let bytes = match unsafe { c_str(s) } {
        Ok(b) => b,
        Err(st) => return st,
    };
    // SAFETY: forwarded caller promise.
    unsafe { with_writer(writer, |b| codec::write_str(b, bytes)) }
}

/// Append a bin of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn joint_write_bin(writer: *mut joint_writer, data: *const u8, len: usize) -> joint_status {
    // SAFETY: `data` has `len` readable bytes (or is NULL with 0).
    let bytes = match unsafe { slice(data, len) } {
        Ok(b) => b,
        Err(s) => return s,
    };
    if len > u32::MAX as usize {
        return JOINT_E_TOO_LARGE;
    }
    // SAFETY: forwarded caller promise.
    unsafe { with_writer(writer, |b| codec::write_bin(b, bytes)) }
}

/// Append an array header; write its `count` elements next.
#[no_mangle]
pub unsafe extern "C" fn joint_write_array(writer: *mut joint_writer, count: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_writer(writer, |b| codec::write_array_len(b, count)) }
}

/// Append a map header; write its `count` key/value pairs next (key first).
#[no_mangle]
pub unsafe extern "C" fn joint_write_map(writer: *mut joint_writer, count: u32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_writer(writer, |b| codec::write_map_len(b, count)) }
}

/// Append an ext value of application type `ext_type` with `len` bytes of data.
#[no_mangle]
pub unsafe extern "C" fn joint_write_ext(writer: *mut joint_writer, ext_type: i8, data: *const u8, len: usize) -> joint_status {
    // SAFETY: `data` has `len` readable bytes (or is NULL with 0).
    let bytes = match unsafe { slice(data, len) } {
        Ok(b) => b,
        Err(s) => return s,
    };
    if len > u32::MAX as usize {
        return JOINT_E_TOO_LARGE;
    }
    // SAFETY: forwarded caller promise.
    unsafe { with_writer(writer, |b| codec::write_ext(b, ext_type, bytes)) }
}

/// Append bytes that already are encoded MessagePack (not checked).
#[no_mangle]
pub unsafe extern "C" fn joint_write_raw(writer: *mut joint_writer, data: *const u8, len: usize) -> joint_status {
    // SAFETY: `data` has `len` readable bytes (or is NULL with 0).
    let bytes = match unsafe { slice(data, len) } {
        Ok(b) => b,
        Err(s) => return s,
    };
    // SAFETY: forwarded caller promise.
    unsafe { with_writer(writer, |b| b.extend_from_slice(bytes)) }
}

/// Create a reader over `len` bytes at `data`, which stay owned by the caller and must stay
/// valid while the reader is used. On success `*reader_out` is owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn joint_reader_new(data: *const u8, len: usize, reader_out: *mut *mut joint_reader) -> joint_status {
    guard(
        || JOINT_E_PANIC,
        || {
            if reader_out.is_null() || (data.is_null() && len > 0) {
                return JOINT_E_NULL;
            }
            // SAFETY: checked non-NULL.
            unsafe { *reader_out = into_handle(joint_reader { data, len, pos: 0 }) };
            JOINT_OK
        },
    )
}

/// Point the reader at new data (no allocation).
#[no_mangle]
pub unsafe extern "C" fn joint_reader_reset(reader: *mut joint_reader, data: *const u8, len: usize) -> joint_status {
    // SAFETY: NULL or a live reader.
    unsafe {
        with_object(reader, |r| {
            if data.is_null() && len > 0 {
                return JOINT_E_NULL;
            }
            *r = joint_reader { data, len, pos: 0 };
            JOINT_OK
        })
    }
}

/// Free a reader (not the data). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn joint_reader_free(reader: *mut joint_reader) {
    // SAFETY: NULL or made by joint_reader_new, freed once (caller's promise).
    guard(|| (), || drop(unsafe { take_handle(reader) }))
}

/// Bytes not read yet.
#[no_mangle]
pub unsafe extern "C" fn joint_reader_remaining(reader: *const joint_reader) -> usize {
    // SAFETY: NULL or a live reader.
    unsafe { with_ref(reader, |r| r.len - r.pos) }
}

impl joint_reader {
    /// The data, with the lifetime the caller promises (the reader does not own it).
    fn bytes<'a>(&self) -> &'a [u8] {
        if self.data.is_null() {
            return &[];
        }
        // SAFETY: the caller keeps `len` bytes at `data` valid while reading (documented).
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

fn read_status(e: read::ReadError) -> joint_status {
    match e {
        read::ReadError::Eof => JOINT_E_EOF,
        read::ReadError::Type => JOINT_E_TYPE,
        read::ReadError::Malformed => JOINT_E_PROTOCOL,
    }
}

/// Read one value with `f`, write it out on success.
unsafe fn with_reader<'a, T>(
    reader: *mut joint_reader,
    f: impl FnOnce(&'a [u8], &mut usize) -> Result<T, read::ReadError>,
    out: impl FnOnce(T),
) -> joint_status {
    // SAFETY: NULL or a live reader (caller's promise).
    unsafe {
        with_object(reader, |r| {
            let mut pos = r.pos;
            match f(r.bytes(), &mut pos) {
                Ok(v) => {
                    r.pos = pos;
                    out(v);
                    JOINT_OK
                }
                Err(e) => read_status(e),
            }
        })
    }
}

/// The type of the next value (`JOINT_TYPE_*`); `JOINT_TYPE_NONE` at the end or on
/// malformed data.
#[no_mangle]
pub unsafe extern "C" fn joint_reader_type(reader: *const joint_reader) -> i32 {
    if reader.is_null() {
        return JOINT_TYPE_NONE;
    }
    // SAFETY: a live reader.
    unsafe {
        with_ref(reader, |r| match read::kind(r.bytes(), r.pos) {
            Ok(read::Kind::Nil) => JOINT_TYPE_NIL,
            Ok(read::Kind::Bool) => JOINT_TYPE_BOOL,
            Ok(read::Kind::Int) => JOINT_TYPE_INT,
            Ok(read::Kind::Float) => JOINT_TYPE_FLOAT,
            Ok(read::Kind::Str) => JOINT_TYPE_STR,
            Ok(read::Kind::Bin) => JOINT_TYPE_BIN,
            Ok(read::Kind::Array) => JOINT_TYPE_ARRAY,
            Ok(read::Kind::Map) => JOINT_TYPE_MAP,
            Ok(read::Kind::Ext) => JOINT_TYPE_EXT,
            Err(_) => JOINT_TYPE_NONE,
        })
    }
}

/// Read nil.
#[no_mangle]
pub unsafe extern "C" fn joint_read_nil(reader: *mut joint_reader) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe { with_reader(reader, read::nil, |_| ()) }
}

/// Read a boolean.
#[no_mangle]
pub unsafe extern "C" fn joint_read_bool(reader: *mut joint_reader, value_out: *mut bool) -> joint_status {
    // SAFETY: forwarded caller promise; out-param may be NULL.
    unsafe { with_reader(reader, read::boolean, |v| put(value_out, v)) }
}

/// Read an integer that fits in int64_t (integral floats are accepted, as some peers send
/// them); `JOINT_E_TYPE` otherwise.
#[no_mangle]
pub unsafe extern "C" fn joint_read_int(reader: *mut joint_reader, value_out: *mut i64) -> joint_status {
    // SAFETY: forwarded caller promise; out-param may be NULL.
    unsafe { with_reader(reader, read::int, |v| put(value_out, v)) }
}

/// Read a non-negative integer that fits in uint64_t (integral floats accepted).
#[no_mangle]
pub unsafe extern "C" fn joint_read_uint(reader: *mut joint_reader, value_out: *mut u64) -> joint_status {
    // SAFETY: forwarded caller promise; out-param may be NULL.
    unsafe { with_reader(reader, read::uint, |v| put(value_out, v)) }
}

/// Read a float or any integer as a double.
#[no_mangle]
pub unsafe extern "C" fn joint_read_double(reader: *mut joint_reader, value_out: *mut f64) -> joint_status {
    // SAFETY: forwarded caller promise; out-param may be NULL.
    unsafe { with_reader(reader, read::float, |v| put(value_out, v)) }
}

/// Read a str: its bytes (not NUL-terminated), borrowed from the reader's data.
#[no_mangle]
pub unsafe extern "C" fn joint_read_str(reader: *mut joint_reader, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    // SAFETY: forwarded caller promise; out-params may be NULL.
    unsafe { with_reader(reader, read::str, |v| put_slice(v, data_out, len_out)) }
}

/// Read a bin: its bytes, borrowed from the reader's data.
#[no_mangle]
pub unsafe extern "C" fn joint_read_bin(reader: *mut joint_reader, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    // SAFETY: forwarded caller promise; out-params may be NULL.
    unsafe { with_reader(reader, read::bin, |v| put_slice(v, data_out, len_out)) }
}

/// Read an array header: the element count. Read the elements next.
#[no_mangle]
pub unsafe extern "C" fn joint_read_array(reader: *mut joint_reader, count_out: *mut u32) -> joint_status {
    // SAFETY: forwarded caller promise; out-param may be NULL.
    unsafe { with_reader(reader, read::array, |v| put(count_out, v)) }
}

/// Read a map header: the number of key/value pairs. Read them next, key first.
#[no_mangle]
pub unsafe extern "C" fn joint_read_map(reader: *mut joint_reader, count_out: *mut u32) -> joint_status {
    // SAFETY: forwarded caller promise; out-param may be NULL.
    unsafe { with_reader(reader, read::map, |v| put(count_out, v)) }
}

/// Read an ext value: its type and data (borrowed from the reader's data).
#[no_mangle]
pub unsafe extern "C" fn joint_read_ext(reader: *mut joint_reader, type_out: *mut i8, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    // SAFETY: forwarded caller promise; out-params may be NULL.
    unsafe {
        with_reader(reader, read::ext, |(t, d)| {
            put(type_out, t);
            put_slice(d, data_out, len_out);
        })
    }
}

/// Read the next whole value (a scalar, or an array or map with everything inside) as
/// encoded bytes, borrowed from the reader's data. Use it to skip a value or pass it on.
#[no_mangle]
pub unsafe extern "C" fn joint_read_raw(reader: *mut joint_reader, data_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    // SAFETY: forwarded caller promise; out-params may be NULL.
    unsafe { with_reader(reader, read::raw, |v| put_slice(v, data_out, len_out)) }
}
