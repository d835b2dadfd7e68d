//! The C ABI. Every `extern "C"` function of libjoint is in this module and its children, and
//! so is every `unsafe` that touches a pointer handed over by C. One file per C object, in
//! the order the header presents them; `handle.rs` declares how each object is owned and is
//! the one place where pointers become references.
//!
//! Rules that hold for every function (see docs/c-api-conventions.md):
//! - a panic never crosses into C: each export catches it, returns `JOINT_E_PANIC` (or a
//!   documented default) and poisons the context, after which only the `_free` functions work;
//! - every pointer is checked for NULL; `(NULL, 0)` is an empty buffer;
//! - out-params are written only when the function returns `JOINT_OK` or `JOINT_DONE`;
//!   an `error_out` param only with `JOINT_E_REMOTE`;
//! - handles of a freed context return `JOINT_E_STATE`; their `_free` still works.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)] // every export is unsafe for the same documented reasons
#![deny(unsafe_op_in_unsafe_fn)]

mod args;
mod handle;

// The C objects, in the order include/joint.h presents them (cbindgen follows this order;
// blank lines keep rustfmt from sorting it).
mod status;

mod config;

mod ctx;

mod listener;

mod conn;

mod tls;

mod reconnect;

mod peer;

mod call_opts;

mod response;

mod stream;

mod request;

mod msgpack;

pub use args::joint_free_fn;
pub use call_opts::*;
pub use config::*;
pub use conn::*;
pub use ctx::*;
pub use listener::*;
pub use msgpack::*;
pub use peer::*;
pub use reconnect::*;
pub use request::*;
pub use response::*;
pub use status::*;
pub use stream::*;
pub use tls::*;
