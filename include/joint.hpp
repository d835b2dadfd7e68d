// joint.hpp — header-only C++17 wrapper over joint's C API (joint.h).
//
// Depends only on <joint.h> and the standard library; link libjoint as for C
// (joint::joint in CMake, `pkg-config --libs joint`). Everything lives in namespace joint.
// This header includes the parts, one per file under joint/ (base, msgpack, streaming,
// connection, request, context; joint/detail/ holds the boxes and trampolines behind the
// callbacks); include this one.
//
// C names and C++ names. As a rule joint_ctx_X is Context::X, joint_conn_X is X on
// Connection and ConnectionRef, joint_request_X is Request::X, joint_stream_X is Stream::X,
// joint_response_X is Response::X, joint_config_set_X is Config::set_X,
// joint_call_opts_set_X is CallOptions::X, joint_writer_X / joint_reader_X are Writer::X /
// Reader::X, joint_write_X is Writer::write_X, a *_new is T::create and a *_free the
// destructor (release() hands the handle back). Where the C++ name differs:
//
//     C                                  C++
//     joint_ctx_register                 Context::on
//     joint_ctx_register_pool            Context::on_pool
//     joint_ctx_unregister               Context::off
//     joint_ctx_set_fallback             Context::on_fallback
//     joint_ctx_set_notification_cb      Context::on_notification
//     joint_ctx_set_conn_cb              Context::on_connection
//     joint_ctx_add_timer                Context::after
//     joint_ctx_listen                   Context::listen, which returns the URI (joint_listener_uri)
//     joint_config_set_log_cb            Config::on_log
//     joint_call_opts_new                none: CallOptions makes its handle on the first setter
//     joint_call_opts_set_event_cb       the on_event argument of call(method, params, opts, on_event, on_done)
//     joint_conn_call_opts               call(method, params, opts, on_event, on_done)
//     joint_conn_throw                   throw_error
//     joint_conn_send                    send (send_value packs a value)
//     joint_request_reply                Request::reply (reply_value packs a value)
//     joint_request_reply_error          Request::reply_error(Bytes), reply_error(const Error &)
//     joint_request_reply_error_msg      Request::reply_error(code, message)
//     joint_request_set_event_cb         Request::on_events
//     joint_request_yield                Request::yield (yield_value packs a value)
//     joint_response_error               Response::error_object
//     joint_read_bool, _int, _uint, _double, _str, _bin, _ext, _nil
//                                        Reader::read<T>, read_into (T picks the read)
//     joint_read_raw                     Reader::skip, or read<Raw>
//     joint_buf_data                     Buffer::bytes (data, size)
//     joint_error_code                   Error::remote_code
//     joint_error_message                Error::message of a JOINT_E_REMOTE error
//     joint_status_is_fatal              Error::is_fatal
//     joint_listener_close, joint_listener_free
//                                        none: shutdown() closes the listeners, the Context
//                                        frees their handles
//     joint_version_number, joint_write_cstr
//                                        none (version(); write_str)
//
// A server and a client in one context:
//
//     joint::Context ctx = joint::Context::create().value();
//     ctx.on("add", [](joint::Request req) {
//         auto args = req.args<int64_t, int64_t>();
//         if (!args) return (void)req.reply_error(JOINT_RPC_INVALID_PARAMS, "add(a, b)");
//         auto [a, b] = args.value();
//         (void)req.reply_value(a + b);            // now, later, or from another thread
//     }).value();
//     std::string uri = ctx.listen("tcp://127.0.0.1:0").value();
//     joint::Connection conn = ctx.connect(uri).value();
//     joint::Result<joint::Buffer> sum = conn.call_sync("add", joint::pack(2, 3));
//
// The rules of the C API (docs/c-api-conventions.md) carry over unchanged. The ones a C++
// user meets most often, restated:
//
// * Ownership. Config, Context, Connection, Request, Writer, Reader and Buffer each own one
//   C handle; they are move-only and free it in their destructor. raw() lends the handle,
//   release() gives it up (the caller then frees it with the C function). A moved-from
//   object is empty; calls on it fail with JOINT_E_NULL (or JOINT_E_STATE).
// * Connections vs. their context. An owned Connection (connect/spawn/open_stdio) must be
//   destroyed before its Context in C; this wrapper tracks the context's life, so a
//   Connection that outlives its Context is harmless: its destructor does nothing and its
//   calls fail with JOINT_E_STATE. Accepted connections belong to the context: callbacks get
//   a non-owning ConnectionRef, valid until that connection's CLOSED event returns. A
//   ConnectionRef taken from a Connection is valid while both it and the context live.
// * Requests are owned tokens. A handler gets a Request by value and answers it exactly
//   once — in the handler, later from the loop (e.g. a timer), or from any thread. A
//   Request destroyed unanswered sends a JOINT_RPC_NOT_ANSWERED error, so a forgotten
//   request never leaves the peer waiting. Requests may outlive the context (answering then
//   does nothing), except conn(), which is for the loop thread while the context lives.
//   Methods without a handler get JOINT_RPC_NO_METHOD, unless Context::on_fallback serves
//   them (one handler for all of them; Request::method() says which was called).
// * Borrowed data. Bytes and std::string_view never own. What a callback receives (call
//   results, notification params, event reasons) is valid until the callback returns;
//   Request::method/params/kwargs as long as the Request lives (and is not answered);
//   Buffer data as long as the Buffer; Writer::data() until the next call on the Writer;
//   values unpacked as std::string_view / Bytes / Raw point into the bytes they came from.
// * Threads. A Context and everything obtained from it are used by one thread at a time.
//   Context::wakeup() and Request's reply/destructor (and yield, wait_writable, next_input)
//   may be called from any thread. Callbacks run only inside process()/wait()/call_sync()/
//   Stream::next() (and the Context destructor), on the calling thread; from a callback
//   those four return JOINT_E_RECURSIVE. The exception: Context::on_pool handlers run on
//   the context's worker threads.
// * Event loops. Watch fd() for readability (level-triggered), call process() when it is
//   readable or timeout_ms() has passed, and query timeout_ms() again after every process().
// * Streaming (the joint extension, docs/PROTOCOL.md; used when both ends are joint, see
//   Connection::extension()). A call made with CallOptions can receive items as they come
//   (call's on_event: CallEvent) or be pulled item by item (call_stream → Stream), and can
//   take values sent in (send / end_input / throw_error). A served call streams with
//   Request::yield and takes inputs either pushed on the loop thread (Request::on_events) or
//   pulled from any thread (Request::next_input). Flow control never buffers on your behalf:
//   send and yield answer WouldBlock when the peer has granted no credit — try again after
//   the Writable event (or Request::wait_writable on a thread of your own). Handlers
//   registered with Context::on_pool run on worker threads. To a stock peer an extended call
//   is an ordinary request: items arrive as one array in the result, send fails with
//   JOINT_E_UNSUPPORTED.
//
// Errors do not use exceptions: fallible functions return Result<T> ([[nodiscard]]), which
// holds a T or a joint::Error. With exceptions enabled (__cpp_exceptions), Result::unwrap()
// throws joint::Exception; the header also compiles and works with -fno-exceptions.
//
// Callbacks are any callable (lambdas with captures, move-only ones too). Each is boxed on
// the heap and freed by the C API's free_user_data (registrations, timers, request event
// callables) or right after its single run (call completions, with the call's event
// callable). No exception ever unwinds into C: one that escapes a request handler (or a
// request's event callable) becomes an error reply [JOINT_RPC_HANDLER_FAILED, what()]; one
// that escapes any other callback is swallowed and reported to the exception hook
// (set_exception_hook; the default prints one line to stderr).
//
// MessagePack values: pack(args...) builds a params array, pack_value(v) one value,
// unpack<T>(bytes) reads one; supported are bool, integers, float/double, enums, strings,
// bin (Bytes, std::vector<uint8_t>), std::vector/array/deque/list, std::map/unordered_map,
// std::tuple/pair, std::optional, nullptr (nil), Raw (pre-encoded) and Ext — and any type
// with a joint::Codec<T> specialization. Define JOINT_WITH_MSGPACK_CXX before including this
// header to also pack any msgpack-cxx-adaptable type and unpack into msgpack::object_handle
// (needs <msgpack.hpp> and exceptions).
#ifndef JOINT_HPP
#define JOINT_HPP

#include <joint/base.hpp>
#include <joint/msgpack.hpp>
#include <joint/streaming.hpp>
#include <joint/tls.hpp>
#include <joint/connection.hpp>
#include <joint/request.hpp>
#include <joint/context.hpp>

#endif // JOINT_HPP
