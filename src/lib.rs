//! joint: a MessagePack-RPC engine with a C ABI.
//!
//! Layers, bottom up:
//! - [`codec`]: MessagePack framing and the RPC envelope (on `rmp`);
//! - [`protocol`]: the connection state machine, sans I/O;
//! - [`reactor`]: sockets, pipes, timers and dispatch on `mio`, one pollable fd per context;
//! - `ffi`: the C ABI, the only place with `extern "C"` and FFI `unsafe`.

/// cbindgen:ignore
pub mod codec;
/// cbindgen:ignore
pub mod error;
pub mod ffi;
/// cbindgen:ignore
pub mod protocol;
/// cbindgen:ignore
pub mod reactor;
// Fuzz target bodies, shared by fuzz/ (cargo-fuzz) and tests/fuzz_corpus.rs; not part of the API.
#[doc(hidden)]
pub mod fuzz_targets;
