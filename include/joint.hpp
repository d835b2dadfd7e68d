// joint.hpp — header-only C++17 wrapper over joint's C API (joint.h).
//
// Depends only on <joint.h> and the standard library; link libjoint as for C
// (joint::joint in CMake, `pkg-config --libs joint`). Everything lives in namespace joint.
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

#include <joint.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#if __cplusplus < 201703L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 201703L)
#error "joint.hpp needs C++17"
#endif

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define JOINT_HPP_EXCEPTIONS 1
#include <stdexcept>
#else
#define JOINT_HPP_EXCEPTIONS 0
#endif

#if defined(JOINT_WITH_MSGPACK_CXX)
#if !defined(__has_include)
#error "JOINT_WITH_MSGPACK_CXX needs __has_include"
#elif !__has_include(<msgpack.hpp>)
#error "JOINT_WITH_MSGPACK_CXX is defined but <msgpack.hpp> was not found (Debian: libmsgpack-cxx-dev)"
#elif !JOINT_HPP_EXCEPTIONS
#error "JOINT_WITH_MSGPACK_CXX needs exceptions (msgpack-cxx reports errors by throwing)"
#else
#include <msgpack.hpp>
#define JOINT_HPP_MSGPACK_CXX 1
#endif
#endif
#ifndef JOINT_HPP_MSGPACK_CXX
#define JOINT_HPP_MSGPACK_CXX 0
#endif

namespace joint {

/// A status code of the C API: 0 success, negative an error (JOINT_E_*), positive values are
/// non-error outcomes that functions document (none so far).
using Status = joint_status;
/// The id joint_conn_call gives a call, for cancel().
using CallId = std::uint64_t;
/// The id of a timer, for Context::cancel_timer().
using TimerId = std::uint64_t;
/// Timeouts are in milliseconds; this (or 0) means none.
inline constexpr std::int32_t no_timeout = -1;

/// The library's version, e.g. "0.1.0" (JOINT_VERSION_STRING is the header's).
inline std::string_view version() noexcept { return joint_version(); }
/// The static description of a status code ("unknown status" for unknown codes).
inline std::string_view status_str(Status status) noexcept { return joint_status_str(status); }

// ---- Bytes: a borrowed view of bytes ------------------------------------------------------

/// A non-owning view of bytes (MessagePack data, bin values): pointer and length. It never
/// owns; whoever made it says how long the bytes live (see the file comment).
class Bytes {
public:
    using value_type = std::uint8_t;
    using size_type = std::size_t;
    using const_iterator = const std::uint8_t *;

    constexpr Bytes() noexcept = default;
    constexpr Bytes(const std::uint8_t *data, std::size_t size) noexcept : data_(data), size_(size) {}
    Bytes(const void *data, std::size_t size) noexcept : data_(static_cast<const std::uint8_t *>(data)), size_(size) {}
    /// Views the vector's bytes (valid while the vector lives unchanged).
    Bytes(const std::vector<std::uint8_t> &v) noexcept : data_(v.data()), size_(v.size()) {}
    template <std::size_t N>
    Bytes(const std::array<std::uint8_t, N> &a) noexcept : data_(a.data()), size_(N) {}
    /// Views the bytes of a string (explicit: a string is not MessagePack).
    explicit Bytes(std::string_view s) noexcept : data_(reinterpret_cast<const std::uint8_t *>(s.data())), size_(s.size()) {}

    constexpr const std::uint8_t *data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr const_iterator begin() const noexcept { return data_; }
    constexpr const_iterator end() const noexcept { return data_ + size_; }
    constexpr std::uint8_t operator[](std::size_t i) const noexcept { return data_[i]; }
    /// Bytes [offset, offset + count), clamped to the view.
    constexpr Bytes subspan(std::size_t offset, std::size_t count = static_cast<std::size_t>(-1)) const noexcept {
        if (offset > size_)
            offset = size_;
        if (count > size_ - offset)
            count = size_ - offset;
        return Bytes(data_ + offset, count);
    }
    /// A copy of the bytes.
    std::vector<std::uint8_t> to_vector() const { return std::vector<std::uint8_t>(begin(), end()); }

    friend bool operator==(Bytes a, Bytes b) noexcept {
        return a.size_ == b.size_ && (a.size_ == 0 || std::memcmp(a.data_, b.data_, a.size_) == 0);
    }
    friend bool operator!=(Bytes a, Bytes b) noexcept { return !(a == b); }

private:
    const std::uint8_t *data_ = nullptr;
    std::size_t size_ = 0;
};

// ---- Error and Result ---------------------------------------------------------------------

/// Why something failed: a status code (JOINT_E_*) and a message (the C API's detail from
/// joint_ctx_last_error when it has one, else joint_status_str). When the peer answered a
/// call with an error object (JOINT_E_REMOTE), the raw object and the message found in it.
class Error {
public:
    Error() = default;
    Error(Status code, std::string message, std::vector<std::uint8_t> remote_object = {})
        : code_(code), message_(std::move(message)), remote_(std::move(remote_object)) {}

    /// The status code (negative).
    Status code() const noexcept { return code_; }
    /// The detail: e.g. "connect to tcp://127.0.0.1:1 failed: Connection refused", or for a
    /// remote error the message the peer put in its error object.
    const std::string &message() const noexcept { return message_; }
    /// The static description of code(), e.g. "connection refused".
    const char *status_str() const noexcept { return joint_status_str(code_); }
    /// "status: message" (just the message when it adds nothing to the status).
    std::string to_string() const {
        std::string s = status_str();
        if (!message_.empty() && message_ != s) {
            s += ": ";
            s += message_;
        }
        return s;
    }

    bool is_remote() const noexcept { return code_ == JOINT_E_REMOTE; }
    bool is_timeout() const noexcept { return code_ == JOINT_E_TIMEOUT; }
    bool is_cancelled() const noexcept { return code_ == JOINT_E_CANCELLED; }
    bool is_closed() const noexcept { return code_ == JOINT_E_CLOSED; }
    /// The context is unusable (only destroying it remains valid).
    bool is_fatal() const noexcept { return joint_status_is_fatal(code_); }

    /// The peer's error object as sent (MessagePack); empty unless is_remote().
    Bytes remote_object() const noexcept { return Bytes(remote_); }
    /// The integer code of the peer's error object ([code, message] or {"code": ...}).
    std::optional<std::int64_t> remote_code() const noexcept {
        std::int64_t c = 0;
        if (remote_.empty() || joint_error_code(remote_.data(), remote_.size(), &c) != JOINT_OK)
            return std::nullopt;
        return c;
    }

private:
    Status code_ = JOINT_E_STATE;
    std::string message_;
    std::vector<std::uint8_t> remote_;
};

#if JOINT_HPP_EXCEPTIONS
/// Thrown by Result::unwrap() (only when exceptions are enabled).
class Exception : public std::runtime_error {
public:
    explicit Exception(Error error) : std::runtime_error(error.to_string()), error_(std::move(error)) {}
    const Error &error() const noexcept { return error_; }

private:
    Error error_;
};
#endif

namespace detail {

/// A unique_ptr deleter that calls the C free function FreeFn.
template <auto FreeFn> struct FreeWith {
    template <class T> void operator()(T *p) const noexcept { (void)FreeFn(p); }
};
/// Sole ownership of a C handle, freed with FreeFn.
template <class T, auto FreeFn> using Owned = std::unique_ptr<T, FreeWith<FreeFn>>;

[[noreturn]] inline void fatal(const char *what, const Error *error = nullptr) noexcept {
    std::fprintf(stderr, "joint: %s%s%s\n", what, error ? ": " : "", error ? error->to_string().c_str() : "");
    std::fflush(stderr);
    std::abort();
}

/// An Error for a failed C call: the context's last-error detail when the failing function
/// records one, else joint_status_str. `state_detail` describes JOINT_E_STATE for the
/// functions that return it without a detail (cancel, cancel_timer, unregister).
inline Error make_error(Status status, const joint_ctx *ctx = nullptr, const char *state_detail = nullptr) {
    if (state_detail && status == JOINT_E_STATE)
        return Error(status, state_detail);
    // JOINT_E_NULL and JOINT_E_POISONED are returned without a new detail: an older one
    // would be misleading.
    if (ctx && status != JOINT_E_NULL && status != JOINT_E_POISONED) {
        const char *detail = joint_ctx_last_error(ctx);
        if (detail && *detail)
            return Error(status, detail);
    }
    return Error(status, joint_status_str(status));
}

} // namespace detail

/// A T or an Error. Check ok() (or `if (result)`) before value(); value() on an error
/// prints it and aborts. unwrap() throws joint::Exception instead (exceptions only).
template <class T>
class [[nodiscard]] Result {
    static_assert(!std::is_reference_v<T> && !std::is_same_v<std::remove_cv_t<T>, Error>, "Result<T>: T must be a value type other than Error");

public:
    using value_type = T;

    Result(const T &value) : v_(std::in_place_index<0>, value) {}
    Result(T &&value) : v_(std::in_place_index<0>, std::move(value)) {}
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

    bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    /// The error; only when !ok().
    const Error &error() const & {
        const Error *e = std::get_if<1>(&v_);
        if (!e)
            detail::fatal("joint::Result::error() called on a success");
        return *e;
    }

    /// The value; only when ok() (otherwise prints the error and aborts).
    T &value() & { return *checked(); }
    const T &value() const & { return *checked(); }
    T &&value() && { return std::move(*checked()); }
    T &operator*() & { return value(); }
    const T &operator*() const & { return value(); }
    T &&operator*() && { return std::move(*checked()); }
    T *operator->() { return checked(); }
    const T *operator->() const { return checked(); }

    /// The value, or `fallback` on error.
    template <class U>
    T value_or(U &&fallback) const & {
        if (const T *v = std::get_if<0>(&v_))
            return *v;
        return static_cast<T>(std::forward<U>(fallback));
    }
    template <class U>
    T value_or(U &&fallback) && {
        if (T *v = std::get_if<0>(&v_))
            return std::move(*v);
        return static_cast<T>(std::forward<U>(fallback));
    }

#if JOINT_HPP_EXCEPTIONS
    /// The value, or throws joint::Exception with the error.
    T &unwrap() & {
        if (Error *e = std::get_if<1>(&v_))
            throw Exception(*e);
        return *checked();
    }
    T &&unwrap() && {
        if (Error *e = std::get_if<1>(&v_))
            throw Exception(std::move(*e));
        return std::move(*checked());
    }
#endif

private:
    T *checked() {
        T *v = std::get_if<0>(&v_);
        if (!v)
            detail::fatal("joint::Result::value() called on an error", std::get_if<1>(&v_));
        return v;
    }
    const T *checked() const {
        const T *v = std::get_if<0>(&v_);
        if (!v)
            detail::fatal("joint::Result::value() called on an error", std::get_if<1>(&v_));
        return v;
    }

    std::variant<T, Error> v_;
};

/// Success or an Error.
template <>
class [[nodiscard]] Result<void> {
public:
    using value_type = void;

    Result() = default;
    Result(Error error) : error_(std::move(error)) {}

    bool ok() const noexcept { return !error_.has_value(); }
    explicit operator bool() const noexcept { return ok(); }
    const Error &error() const & {
        if (!error_)
            detail::fatal("joint::Result::error() called on a success");
        return *error_;
    }
    /// Checks success (otherwise prints the error and aborts).
    void value() const {
        if (error_)
            detail::fatal("joint::Result::value() called on an error", &*error_);
    }
#if JOINT_HPP_EXCEPTIONS
    void unwrap() const {
        if (!ok())
            throw Exception(*error_);
    }
#endif

private:
    std::optional<Error> error_;
};

namespace detail {

/// Result<void> from a status: negative is an error, anything else success.
inline Result<void> check(Status status, const joint_ctx *ctx = nullptr, const char *state_detail = nullptr) {
    if (status < 0)
        return make_error(status, ctx, state_detail);
    return {};
}

/// A NUL-terminated string argument: const char* and std::string are passed through, a
/// std::string_view is copied. Only as a by-value parameter (no copies or moves).
class CStr {
public:
    CStr(const char *s) noexcept : p_(s) {}
    CStr(const std::string &s) noexcept : p_(s.c_str()), bad_(s.find('\0') != std::string::npos) {}
    CStr(std::string_view s) : copy_(s), bad_(s.find('\0') != std::string_view::npos) { p_ = copy_.c_str(); }
    CStr(const CStr &) = delete;
    CStr &operator=(const CStr &) = delete;

    const char *c_str() const noexcept { return p_; }
    /// The string has an embedded NUL (C would see only its beginning).
    bool bad() const noexcept { return bad_; }

private:
    std::string copy_;
    const char *p_ = nullptr;
    bool bad_ = false;
};

inline Error embedded_nul() { return Error(JOINT_E_INVAL, "string argument contains a NUL byte"); }

/// Owns a joint_ctx's liveness, shared with the Connections and Streams made from it.
struct CtxLife {
    bool alive = true;
    /// The live Streams' handles: the Context frees them before itself (joint_stream_free
    /// must come before joint_ctx_free), so that a Stream may outlive its Context.
    std::vector<joint_stream *> streams;
};

/// Base of every callback box handed to C as user_data; freed by joint_hpp_free_box.
struct BoxBase {
    virtual ~BoxBase() = default;
    joint_ctx *ctx = nullptr; // the context the box is registered with (for ConnectionRef)
};

/// A type-erased, move-only callable with a fixed signature.
template <class Sig>
struct Fn;
template <class R, class... A>
struct Fn<R(A...)> : BoxBase {
    virtual R call(A... args) = 0;
};
template <class F, class Sig>
struct FnImpl;
template <class F, class R, class... A>
struct FnImpl<F, R(A...)> final : Fn<R(A...)> {
    template <class G>
    explicit FnImpl(G &&g) : f(std::forward<G>(g)) {}
    R call(A... args) override {
        if constexpr (std::is_void_v<R>)
            (void)f(std::forward<A>(args)...); // what the callable returns (a Result, say) is dropped
        else
            return f(std::forward<A>(args)...);
    }
    F f;
};

template <class Sig, class F>
Fn<Sig> *make_fn(F &&f, joint_ctx *ctx) {
    auto *box = new FnImpl<std::decay_t<F>, Sig>(std::forward<F>(f));
    box->ctx = ctx;
    return box;
}

inline void *to_user_data(BoxBase *box) noexcept { return static_cast<void *>(box); }
template <class Sig>
Fn<Sig> *from_user_data(void *user_data) noexcept {
    return static_cast<Fn<Sig> *>(static_cast<BoxBase *>(user_data));
}

template <class T>
struct dependent_false : std::false_type {};

} // namespace detail

/// Receives exceptions that escaped a callback and could not become an error reply: `where`
/// names the callback kind ("call completion", "call event", "notification", "connection
/// event", "timer", "log", or "request handler" / "request event" for a handler or event
/// callable that threw after answering or handing on its request), `what` is what() or "unknown exception". Process-wide and thread-safe; nullptr
/// restores the default, which prints one line to stderr. Must not throw. Never called
/// when exceptions are disabled.
using ExceptionHook = void (*)(const char *where, const char *what);

namespace detail {
inline std::atomic<ExceptionHook> &exception_hook() noexcept {
    static std::atomic<ExceptionHook> hook{nullptr};
    return hook;
}
inline void report_exception(const char *where, const char *what) noexcept {
    ExceptionHook hook = exception_hook().load(std::memory_order_acquire);
    if (!hook) {
        std::fprintf(stderr, "joint: exception escaped a %s callback: %s\n", where, what);
        return;
    }
#if JOINT_HPP_EXCEPTIONS
    try {
        hook(where, what);
    } catch (...) {
        // the hook must not throw either; nothing else can be done here
    }
#else
    hook(where, what);
#endif
}
} // namespace detail

/// Install the exception hook (see ExceptionHook); returns the previous one. Thread-safe.
inline ExceptionHook set_exception_hook(ExceptionHook hook) noexcept {
    return detail::exception_hook().exchange(hook, std::memory_order_acq_rel);
}

// ---- Buffer -------------------------------------------------------------------------------

/// Bytes owned by the caller (results of call_sync): a joint_buf.
class Buffer {
public:
    Buffer() = default;
    /// Takes ownership of `buf` (freed with joint_buf_free).
    explicit Buffer(joint_buf *buf) noexcept : b_(buf) {}

    /// The bytes, valid while this Buffer lives.
    Bytes bytes() const noexcept {
        const std::uint8_t *data = nullptr;
        std::size_t len = 0;
        if (b_ && joint_buf_data(b_.get(), &data, &len) == JOINT_OK)
            return Bytes(data, len);
        return Bytes();
    }
    operator Bytes() const noexcept { return bytes(); }
    const std::uint8_t *data() const noexcept { return bytes().data(); }
    std::size_t size() const noexcept { return bytes().size(); }
    bool empty() const noexcept { return bytes().empty(); }
    std::vector<std::uint8_t> to_vector() const { return bytes().to_vector(); }
    /// Unpack the bytes (one MessagePack value) as T; see joint::unpack.
    template <class T>
    Result<T> as() const;

    joint_buf *raw() const noexcept { return b_.get(); }
    joint_buf *release() noexcept { return b_.release(); }
    explicit operator bool() const noexcept { return b_ != nullptr; }

private:
    detail::Owned<joint_buf, &joint_buf_free> b_;
};

// ---- MessagePack: Writer, Reader, pack, unpack --------------------------------------------

/// Pre-encoded MessagePack (one value), written as is / read without decoding. Borrowed.
struct Raw {
    Bytes bytes;
};

/// A MessagePack ext value: an application type and its data.
struct Ext {
    std::int8_t type = 0;
    std::vector<std::uint8_t> data;
    friend bool operator==(const Ext &a, const Ext &b) { return a.type == b.type && a.data == b.data; }
    friend bool operator!=(const Ext &a, const Ext &b) { return !(a == b); }
};

/// Specialize to pack and unpack your own types:
///
///     template <> struct joint::Codec<Point> {
///         static void pack(joint::Writer &w, const Point &p) { w.write_array(2).write(p.x).write(p.y); }
///         static bool unpack(joint::Reader &r, Point &p) {
///             return r.read_array_of(2) && r.read_into(p.x) && r.read_into(p.y);
///         }
///     };
template <class T, class Enable = void>
struct Codec;

class Writer;
class Reader;

namespace detail {
template <class T, class = void>
struct has_codec : std::false_type {};
template <class T>
struct has_codec<T, std::void_t<decltype(sizeof(Codec<T>))>> : std::true_type {};

template <class T>
void write_value(Writer &w, const T &v);
template <class T>
bool read_value(Reader &r, T &out);
} // namespace detail

/// Builds MessagePack bytes with joint_writer. Every write returns *this; the first failure
/// is kept (later writes do nothing) and reported by status().
class Writer {
public:
    Writer() = default;
    /// Takes ownership of `w` (freed with joint_writer_free).
    explicit Writer(joint_writer *w) noexcept : w_(w) {}

    static Result<Writer> create() {
        joint_writer *w = nullptr;
        Status st = joint_writer_new(&w);
        if (st < 0)
            return detail::make_error(st);
        return Writer(w);
    }

    Writer &write_nil() { return ok() ? step(joint_write_nil(w_.get())) : *this; }
    Writer &write_bool(bool v) { return ok() ? step(joint_write_bool(w_.get(), v)) : *this; }
    Writer &write_int(std::int64_t v) { return ok() ? step(joint_write_int(w_.get(), v)) : *this; }
    Writer &write_uint(std::uint64_t v) { return ok() ? step(joint_write_uint(w_.get(), v)) : *this; }
    Writer &write_double(double v) { return ok() ? step(joint_write_double(w_.get(), v)) : *this; }
    Writer &write_float(float v) { return ok() ? step(joint_write_float(w_.get(), v)) : *this; }
    Writer &write_str(std::string_view s) {
        if (s.size() > 0xffffffffu)
            return fail(JOINT_E_INVAL, "string longer than 2^32-1 bytes");
        return ok() ? step(joint_write_str(w_.get(), reinterpret_cast<const std::uint8_t *>(s.data()), s.size())) : *this;
    }
    Writer &write_bin(Bytes b) {
        if (b.size() > 0xffffffffu)
            return fail(JOINT_E_INVAL, "bin longer than 2^32-1 bytes");
        return ok() ? step(joint_write_bin(w_.get(), b.data(), b.size())) : *this;
    }
    /// An array header; write `count` elements next.
    Writer &write_array(std::size_t count) {
        if (count > 0xffffffffu)
            return fail(JOINT_E_INVAL, "array of more than 2^32-1 elements");
        return ok() ? step(joint_write_array(w_.get(), static_cast<std::uint32_t>(count))) : *this;
    }
    /// A map header; write `count` key/value pairs next.
    Writer &write_map(std::size_t count) {
        if (count > 0xffffffffu)
            return fail(JOINT_E_INVAL, "map of more than 2^32-1 entries");
        return ok() ? step(joint_write_map(w_.get(), static_cast<std::uint32_t>(count))) : *this;
    }
    Writer &write_ext(std::int8_t type, Bytes data) {
        if (data.size() > 0xffffffffu)
            return fail(JOINT_E_INVAL, "ext longer than 2^32-1 bytes");
        return ok() ? step(joint_write_ext(w_.get(), type, data.data(), data.size())) : *this;
    }
    /// Bytes that already are encoded MessagePack (not checked).
    Writer &write_raw(Bytes encoded) { return ok() ? step(joint_write_raw(w_.get(), encoded.data(), encoded.size())) : *this; }
    /// Any supported value (see the file comment), containers recursively.
    template <class T>
    Writer &write(const T &value) {
        if (ok())
            detail::write_value(*this, value);
        return *this;
    }

    /// Record a failure (for Codec specializations); the first one is kept.
    Writer &fail(Status status, std::string message) {
        if (status_ == JOINT_OK) {
            status_ = status < 0 ? status : JOINT_E_INVAL;
            message_ = std::move(message);
        }
        return *this;
    }
    bool ok() const noexcept { return status_ == JOINT_OK; }
    Result<void> status() const {
        if (ok())
            return {};
        return Error(status_, message_);
    }

    /// The bytes written so far, valid until the next call on this Writer.
    Bytes data() const noexcept {
        const std::uint8_t *data = nullptr;
        std::size_t len = 0;
        if (w_ && joint_writer_data(w_.get(), &data, &len) == JOINT_OK)
            return Bytes(data, len);
        return Bytes();
    }
    std::vector<std::uint8_t> to_vector() const { return data().to_vector(); }
    /// Empty the writer (keeping its memory) and clear a recorded failure.
    void reset() noexcept {
        (void)joint_writer_reset(w_.get());
        status_ = JOINT_OK;
        message_.clear();
    }

    joint_writer *raw() const noexcept { return w_.get(); }
    joint_writer *release() noexcept { return w_.release(); }
    explicit operator bool() const noexcept { return w_ != nullptr; }

private:
    Writer &step(Status st) { // every write_* calls C only when ok()
        if (st < 0 && status_ == JOINT_OK) {
            status_ = st;
            message_ = joint_status_str(st);
        }
        return *this;
    }
    detail::Owned<joint_writer, &joint_writer_free> w_;
    Status status_ = JOINT_OK;
    std::string message_;
};

namespace detail {
inline const char *type_name(std::int32_t type) noexcept {
    switch (type) {
    case JOINT_TYPE_NIL: return "nil";
    case JOINT_TYPE_BOOL: return "bool";
    case JOINT_TYPE_INT: return "int";
    case JOINT_TYPE_FLOAT: return "float";
    case JOINT_TYPE_STR: return "str";
    case JOINT_TYPE_BIN: return "bin";
    case JOINT_TYPE_ARRAY: return "array";
    case JOINT_TYPE_MAP: return "map";
    case JOINT_TYPE_EXT: return "ext";
    default: return "no value";
    }
}
} // namespace detail

/// Reads MessagePack values one at a time with joint_reader, over bytes the caller keeps
/// alive and unchanged while reading. Typed reads (read<T>, read_into) keep the first
/// failure (error()); after a failed read of a container the position is unspecified.
class Reader {
public:
    Reader() = default;
    /// Takes ownership of `r` (freed with joint_reader_free).
    explicit Reader(joint_reader *r) noexcept : r_(r) {}

    /// A reader over `data` (borrowed: keep it alive while reading).
    static Result<Reader> create(Bytes data) {
        joint_reader *r = nullptr;
        Status st = joint_reader_new(data.data(), data.size(), &r);
        if (st < 0)
            return detail::make_error(st);
        return Reader(r);
    }
    /// Point the reader at new data and clear a recorded failure.
    void reset(Bytes data) noexcept {
        (void)joint_reader_reset(r_.get(), data.data(), data.size());
        status_ = JOINT_OK;
        message_.clear();
    }

    /// The type of the next value (JOINT_TYPE_*); JOINT_TYPE_NONE at the end or on bad data.
    std::int32_t type() const noexcept { return joint_reader_type(r_.get()); }
    /// Bytes not read yet.
    std::size_t remaining() const noexcept { return joint_reader_remaining(r_.get()); }
    bool at_end() const noexcept { return remaining() == 0; }

    /// Read the next value as T.
    template <class T>
    Result<T> read() {
        T value{};
        if (!read_into(value))
            return take_error();
        return Result<T>(std::move(value));
    }
    /// Read the next value into `out`; false on failure (see error()).
    template <class T>
    bool read_into(T &out) {
        if (!ok())
            return false;
        return detail::read_value(*this, out);
    }
    /// Read an array header that must have exactly `count` elements.
    bool read_array_of(std::size_t count) {
        std::uint32_t n = 0;
        if (!read_array(n))
            return false;
        if (n != count)
            return fail(JOINT_E_TYPE, "expected an array of " + std::to_string(count) + " elements, found " + std::to_string(n));
        return true;
    }
    bool read_array(std::uint32_t &count) { return step(joint_read_array(r_.get(), &count), "array"); }
    bool read_map(std::uint32_t &count) { return step(joint_read_map(r_.get(), &count), "map"); }
    /// Skip the next value (with everything inside it).
    bool skip() {
        const std::uint8_t *d = nullptr;
        std::size_t n = 0;
        return step(joint_read_raw(r_.get(), &d, &n), "a value");
    }

    /// Record a failure (for Codec specializations); returns false. The first one is kept.
    bool fail(Status status, std::string message) {
        if (status_ == JOINT_OK) {
            status_ = status < 0 ? status : JOINT_E_TYPE;
            message_ = std::move(message);
        }
        return false;
    }
    /// Record the failure of a joint_read_* call that expected `what`; false if it failed.
    bool step(Status st, const char *what) {
        if (st >= 0)
            return true;
        if (status_ != JOINT_OK)
            return false;
        std::int32_t t = type();
        std::string found = t == JOINT_TYPE_NONE ? (remaining() == 0 ? "the end of the data" : "malformed data") : detail::type_name(t);
        return fail(st, std::string("expected ") + what + ", found " + found);
    }
    bool ok() const noexcept { return status_ == JOINT_OK; }
    /// The recorded failure (JOINT_E_TYPE, JOINT_E_EOF, JOINT_E_PROTOCOL, ...).
    Error error() const { return ok() ? Error(JOINT_OK, "") : Error(status_, message_); }
    /// The recorded failure, cleared.
    Error take_error() {
        Error e = error();
        status_ = JOINT_OK;
        message_.clear();
        return e;
    }

    joint_reader *raw() const noexcept { return r_.get(); }
    joint_reader *release() noexcept { return r_.release(); }
    explicit operator bool() const noexcept { return r_ != nullptr; }

private:
    detail::Owned<joint_reader, &joint_reader_free> r_;
    Status status_ = JOINT_OK;
    std::string message_;
};

namespace detail {

template <class T>
struct is_std_vector : std::false_type {};
template <class T, class A>
struct is_std_vector<std::vector<T, A>> : std::true_type {};
template <class T>
struct is_std_array : std::false_type {};
template <class T, std::size_t N>
struct is_std_array<std::array<T, N>> : std::true_type {};
template <class T>
struct is_byte_array : std::false_type {};
template <std::size_t N>
struct is_byte_array<std::array<std::uint8_t, N>> : std::true_type {};
template <class T>
struct is_seq : std::false_type {}; // growable sequences: push_back
template <class T, class A>
struct is_seq<std::vector<T, A>> : std::true_type {};
template <class T, class A>
struct is_seq<std::deque<T, A>> : std::true_type {};
template <class T, class A>
struct is_seq<std::list<T, A>> : std::true_type {};
template <class T>
struct is_map : std::false_type {};
template <class K, class V, class C, class A>
struct is_map<std::map<K, V, C, A>> : std::true_type {};
template <class K, class V, class H, class E, class A>
struct is_map<std::unordered_map<K, V, H, E, A>> : std::true_type {};
template <class T>
struct is_tuple_like : std::false_type {};
template <class... Ts>
struct is_tuple_like<std::tuple<Ts...>> : std::true_type {};
template <class A, class B>
struct is_tuple_like<std::pair<A, B>> : std::true_type {};
template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

template <class U>
inline constexpr bool is_char_like = std::is_same_v<U, char> || std::is_same_v<U, wchar_t> || std::is_same_v<U, char16_t> ||
                                     std::is_same_v<U, char32_t>
#if defined(__cpp_char8_t)
                                     || std::is_same_v<U, char8_t>
#endif
    ;

template <class U>
inline constexpr bool is_bin = std::is_same_v<U, Bytes> || std::is_same_v<U, std::vector<std::uint8_t>>;

template <class T>
void write_value(Writer &w, const T &v) {
    using U = std::remove_cv_t<T>;
    if constexpr (has_codec<U>::value) {
        Codec<U>::pack(w, v);
    } else if constexpr (std::is_same_v<U, bool>) {
        w.write_bool(v);
    } else if constexpr (std::is_same_v<U, std::nullptr_t> || std::is_same_v<U, std::nullopt_t> || std::is_same_v<U, std::monostate>) {
        w.write_nil();
    } else if constexpr (is_char_like<U>) {
        static_assert(dependent_false<U>::value, "joint::pack: a single char is ambiguous; pack a std::string or an integer type");
    } else if constexpr (std::is_integral_v<U> && std::is_signed_v<U>) {
        w.write_int(static_cast<std::int64_t>(v));
    } else if constexpr (std::is_integral_v<U>) {
        w.write_uint(static_cast<std::uint64_t>(v));
    } else if constexpr (std::is_enum_v<U>) {
        write_value(w, static_cast<std::underlying_type_t<U>>(v));
    } else if constexpr (std::is_same_v<U, float>) {
        w.write_float(v);
    } else if constexpr (std::is_same_v<U, double>) {
        w.write_double(v);
    } else if constexpr (std::is_same_v<U, std::string> || std::is_same_v<U, std::string_view>) {
        w.write_str(v);
    } else if constexpr (std::is_same_v<U, const char *> || std::is_same_v<U, char *>) {
        if (v)
            w.write_str(std::string_view(v));
        else
            w.write_nil();
    } else if constexpr (std::is_array_v<U> && is_char_like<std::remove_cv_t<std::remove_extent_t<U>>>) {
        static_assert(std::is_same_v<std::remove_cv_t<std::remove_extent_t<U>>, char>, "joint::pack: only char strings");
        const char *end = static_cast<const char *>(std::memchr(v, 0, std::extent_v<U>));
        w.write_str(std::string_view(v, end ? static_cast<std::size_t>(end - v) : std::extent_v<U>));
    } else if constexpr (is_bin<U>) {
        w.write_bin(Bytes(v));
    } else if constexpr (is_byte_array<U>::value) {
        w.write_bin(Bytes(v));
    } else if constexpr (std::is_same_v<U, Raw>) {
        w.write_raw(v.bytes);
    } else if constexpr (std::is_same_v<U, Ext>) {
        w.write_ext(v.type, Bytes(v.data));
    } else if constexpr (is_optional<U>::value) {
        if (v)
            write_value(w, *v);
        else
            w.write_nil();
    } else if constexpr (is_seq<U>::value || is_std_array<U>::value) {
        w.write_array(v.size());
        for (const auto &e : v) {
            if (!w.ok())
                break;
            write_value(w, e);
        }
    } else if constexpr (is_map<U>::value) {
        w.write_map(v.size());
        for (const auto &kv : v) {
            if (!w.ok())
                break;
            write_value(w, kv.first);
            write_value(w, kv.second);
        }
    } else if constexpr (is_tuple_like<U>::value) {
        w.write_array(std::tuple_size<U>::value);
        std::apply([&](const auto &...e) { (write_value(w, e), ...); }, v);
#if JOINT_HPP_MSGPACK_CXX
    } else {
        // Anything else goes to msgpack-cxx (a compile error if it cannot pack T).
        msgpack::sbuffer sb;
        msgpack::pack(sb, v);
        w.write_raw(Bytes(sb.data(), sb.size()));
    }
#else
    } else {
        static_assert(dependent_false<U>::value,
                      "joint::pack: unsupported type (specialize joint::Codec<T>, or define JOINT_WITH_MSGPACK_CXX)");
    }
#endif
}

template <class Int>
bool read_integer(Reader &r, Int &out) {
    if constexpr (std::is_signed_v<Int>) {
        std::int64_t v = 0;
        if (!r.step(joint_read_int(r.raw(), &v), "an integer"))
            return false;
        if (v < static_cast<std::int64_t>(std::numeric_limits<Int>::min()) || v > static_cast<std::int64_t>(std::numeric_limits<Int>::max()))
            return r.fail(JOINT_E_TYPE, "integer " + std::to_string(v) + " out of range");
        out = static_cast<Int>(v);
    } else {
        std::uint64_t v = 0;
        if (!r.step(joint_read_uint(r.raw(), &v), "a non-negative integer"))
            return false;
        if (v > static_cast<std::uint64_t>(std::numeric_limits<Int>::max()))
            return r.fail(JOINT_E_TYPE, "integer " + std::to_string(v) + " out of range");
        out = static_cast<Int>(v);
    }
    return true;
}

/// Borrowed bytes of a str (or bin) value.
inline bool read_text(Reader &r, const std::uint8_t *&data, std::size_t &len) {
    if (r.type() == JOINT_TYPE_BIN)
        return r.step(joint_read_bin(r.raw(), &data, &len), "str");
    return r.step(joint_read_str(r.raw(), &data, &len), "str");
}
/// Borrowed bytes of a bin (or str) value.
inline bool read_binary(Reader &r, const std::uint8_t *&data, std::size_t &len) {
    if (r.type() == JOINT_TYPE_STR)
        return r.step(joint_read_str(r.raw(), &data, &len), "bin");
    return r.step(joint_read_bin(r.raw(), &data, &len), "bin");
}

template <class Tuple, std::size_t... I>
bool read_tuple(Reader &r, Tuple &t, std::index_sequence<I...>) {
    return (r.read_into(std::get<I>(t)) && ...);
}

template <class T>
bool read_value(Reader &r, T &out) {
    using U = T;
    static_assert(!std::is_const_v<U>, "joint::unpack: cannot read into a const object");
    if constexpr (has_codec<U>::value) {
        return Codec<U>::unpack(r, out);
    } else if constexpr (std::is_same_v<U, bool>) {
        return r.step(joint_read_bool(r.raw(), &out), "bool");
    } else if constexpr (std::is_same_v<U, std::nullptr_t> || std::is_same_v<U, std::monostate>) {
        return r.step(joint_read_nil(r.raw()), "nil");
    } else if constexpr (is_char_like<U>) {
        static_assert(dependent_false<U>::value, "joint::unpack: a single char is ambiguous; use std::string or an integer type");
        return false;
    } else if constexpr (std::is_integral_v<U>) {
        return read_integer(r, out);
    } else if constexpr (std::is_enum_v<U>) {
        std::underlying_type_t<U> v{};
        if (!read_integer(r, v))
            return false;
        out = static_cast<U>(v);
        return true;
    } else if constexpr (std::is_floating_point_v<U>) {
        static_assert(!std::is_same_v<U, long double>, "joint::unpack: long double is not supported");
        double d = 0;
        if (!r.step(joint_read_double(r.raw(), &d), "a number"))
            return false;
        out = static_cast<U>(d);
        return true;
    } else if constexpr (std::is_same_v<U, std::string> || std::is_same_v<U, std::string_view>) {
        const std::uint8_t *d = nullptr;
        std::size_t n = 0;
        if (!read_text(r, d, n))
            return false;
        out = U(reinterpret_cast<const char *>(d), n);
        return true;
    } else if constexpr (std::is_same_v<U, Bytes> || std::is_same_v<U, std::vector<std::uint8_t>>) {
        const std::uint8_t *d = nullptr;
        std::size_t n = 0;
        if (!read_binary(r, d, n))
            return false;
        if constexpr (std::is_same_v<U, Bytes>)
            out = Bytes(d, n);
        else
            out.assign(d, d + n);
        return true;
    } else if constexpr (is_byte_array<U>::value) {
        const std::uint8_t *d = nullptr;
        std::size_t n = 0;
        if (!read_binary(r, d, n))
            return false;
        if (n != out.size())
            return r.fail(JOINT_E_TYPE, "expected bin of " + std::to_string(out.size()) + " bytes, found " + std::to_string(n));
        if (n)
            std::memcpy(out.data(), d, n);
        return true;
    } else if constexpr (std::is_same_v<U, Raw>) {
        const std::uint8_t *d = nullptr;
        std::size_t n = 0;
        if (!r.step(joint_read_raw(r.raw(), &d, &n), "a value"))
            return false;
        out.bytes = Bytes(d, n);
        return true;
    } else if constexpr (std::is_same_v<U, Ext>) {
        const std::uint8_t *d = nullptr;
        std::size_t n = 0;
        std::int8_t type = 0;
        if (!r.step(joint_read_ext(r.raw(), &type, &d, &n), "ext"))
            return false;
        out.type = type;
        out.data.assign(d, d + n);
        return true;
    } else if constexpr (is_optional<U>::value) {
        if (r.type() == JOINT_TYPE_NIL) {
            out.reset();
            return r.step(joint_read_nil(r.raw()), "nil");
        }
        typename U::value_type v{};
        if (!r.read_into(v))
            return false;
        out = std::move(v);
        return true;
    } else if constexpr (is_seq<U>::value) {
        std::uint32_t n = 0;
        if (!r.read_array(n))
            return false;
        out.clear();
        if constexpr (is_std_vector<U>::value) // every element takes at least one byte
            out.reserve(n < r.remaining() ? n : r.remaining());
        for (std::uint32_t i = 0; i < n; i++) {
            typename U::value_type e{};
            if (!r.read_into(e))
                return false;
            out.push_back(std::move(e));
        }
        return true;
    } else if constexpr (is_std_array<U>::value) {
        if (!r.read_array_of(out.size()))
            return false;
        for (auto &e : out)
            if (!r.read_into(e))
                return false;
        return true;
    } else if constexpr (is_map<U>::value) {
        std::uint32_t n = 0;
        if (!r.read_map(n))
            return false;
        out.clear();
        for (std::uint32_t i = 0; i < n; i++) {
            typename U::key_type k{};
            typename U::mapped_type v{};
            if (!r.read_into(k) || !r.read_into(v))
                return false;
            out.insert_or_assign(std::move(k), std::move(v));
        }
        return true;
    } else if constexpr (is_tuple_like<U>::value) {
        if (!r.read_array_of(std::tuple_size<U>::value))
            return false;
        return read_tuple(r, out, std::make_index_sequence<std::tuple_size<U>::value>{});
#if JOINT_HPP_MSGPACK_CXX
    } else if constexpr (std::is_same_v<U, msgpack::object>) {
        static_assert(dependent_false<U>::value, "joint::unpack: use msgpack::object_handle (a msgpack::object does not own its zone)");
        return false;
    } else {
        // msgpack::object_handle, or anything msgpack-cxx can convert to.
        const std::uint8_t *d = nullptr;
        std::size_t n = 0;
        if (!r.step(joint_read_raw(r.raw(), &d, &n), "a value"))
            return false;
        try {
            msgpack::object_handle oh = msgpack::unpack(reinterpret_cast<const char *>(d), n);
            if constexpr (std::is_same_v<U, msgpack::object_handle>)
                out = std::move(oh);
            else
                oh.get().convert(out);
        } catch (const std::exception &e) {
            return r.fail(JOINT_E_TYPE, std::string("msgpack-cxx: ") + e.what());
        }
        return true;
    }
#else
    } else {
        static_assert(dependent_false<U>::value,
                      "joint::unpack: unsupported type (specialize joint::Codec<T>, or define JOINT_WITH_MSGPACK_CXX)");
        return false;
    }
#endif
}

inline std::vector<std::uint8_t> invalid_payload() { return {0xc1}; }

} // namespace detail

/// Encode `args` as one MessagePack array: the params of a call or notification.
/// pack() is `[]`. Returns Error only for what MessagePack cannot hold (more than 2^32-1
/// elements or bytes) or a Codec specialization that calls Writer::fail.
template <class... Args>
Result<std::vector<std::uint8_t>> try_pack(const Args &...args) {
    Result<Writer> w = Writer::create();
    if (!w)
        return w.error();
    w->write_array(sizeof...(Args));
    (w->write(args), ...);
    if (!w->ok())
        return w->status().error();
    return w->to_vector();
}

/// Encode one value (a result, an error object, a value inside params).
template <class T>
Result<std::vector<std::uint8_t>> try_pack_value(const T &value) {
    Result<Writer> w = Writer::create();
    if (!w)
        return w.error();
    w->write(value);
    if (!w->ok())
        return w->status().error();
    return w->to_vector();
}

/// As try_pack, for passing straight to a call: on failure the bytes are the single byte
/// 0xc1 (never valid MessagePack), which every call, notify and reply rejects with
/// JOINT_E_INVAL, so the error still surfaces where the bytes are used.
template <class... Args>
std::vector<std::uint8_t> pack(const Args &...args) {
    Result<std::vector<std::uint8_t>> r = try_pack(args...);
    return r ? std::move(r).value() : detail::invalid_payload();
}

/// As try_pack_value, with pack()'s failure convention.
template <class T>
std::vector<std::uint8_t> pack_value(const T &value) {
    Result<std::vector<std::uint8_t>> r = try_pack_value(value);
    return r ? std::move(r).value() : detail::invalid_payload();
}

/// Decode `bytes`, which must hold exactly one MessagePack value, as T. std::string_view,
/// Bytes and Raw results point into `bytes`. Integers are range-checked for T (an integral
/// float such as 3.0 reads as 3); std::string also accepts bin and std::vector<uint8_t>
/// also accepts str; a map with a repeated key keeps the last value.
template <class T>
Result<T> unpack(Bytes bytes) {
    Result<Reader> r = Reader::create(bytes);
    if (!r)
        return r.error();
    Result<T> v = r->read<T>();
    if (v && !r->at_end())
        return Error(JOINT_E_INVAL, std::to_string(r->remaining()) + " bytes left after the value");
    return v;
}

template <class T>
Result<T> Buffer::as() const {
    return unpack<T>(bytes());
}

// ---- The joint extension: call options, pulled streams ------------------------------------

/// What ConnectionRef::send did: the value went out, or the callee has granted no credit yet
/// (try again after the call's Writable event).
enum class SendStatus { Sent, WouldBlock };

/// What Request::yield did: the item went out, or the caller has granted no credit yet (try
/// again after InputKind::Writable, or Request::wait_writable on a thread of your own).
enum class YieldStatus { Sent, WouldBlock };

/// Where the joint extension stands on a connection (joint_conn_extension). A joint client
/// offers it when it connects; the answer takes one round trip.
enum class Extension : std::int32_t {
    Off = JOINT_EXT_OFF,         // not offered (extension disabled, UDP, stdio), or no connection
    Pending = JOINT_EXT_PENDING, // offered, no answer yet
    On = JOINT_EXT_ON,           // both ends speak it
    Refused = JOINT_EXT_REFUSED, // the peer is a stock MessagePack-RPC peer
};

namespace detail {
/// The Error for JOINT_E_REMOTE with the peer's error object in `obj` (consumed).
inline Error remote_error(joint_buf *obj) {
    Buffer err(obj);
    Bytes b = err.bytes();
    std::size_t len = joint_error_message(b.data(), b.size(), nullptr, 0);
    std::string msg(len, '\0');
    if (len)
        joint_error_message(b.data(), b.size(), &msg[0], len + 1);
    return Error(JOINT_E_REMOTE, std::move(msg), b.to_vector());
}
} // namespace detail

/// Options of one call (joint_call_opts): a timeout that is also the callee's deadline,
/// keyword params, streaming values in, the window of items streamed to us, manual credit.
/// Built by chaining; like Writer, the first failure is kept (status()) and a call made with
/// options that failed returns it. A default-constructed CallOptions holds no C handle until
/// the first setter: passed as is, it means the C defaults. Calls copy what they need, so
/// one CallOptions can serve many calls.
///
///     conn.call_stream("count", joint::pack(100), joint::CallOptions().window(8).timeout_ms(5000));
class CallOptions {
public:
    CallOptions() = default;
    /// Takes ownership of `opts` (freed with joint_call_opts_free).
    explicit CallOptions(joint_call_opts *opts) noexcept : o_(opts) {}

    /// Fail the call with JOINT_E_TIMEOUT after `ms` (-1 or 0: none). A joint callee gets it
    /// as its deadline: its handler is told (InputKind::Timeout) and its answer dropped.
    CallOptions &timeout_ms(std::int32_t ms) { return step([&](joint_call_opts *o) { return joint_call_opts_set_timeout_ms(o, ms); }); }
    /// Keyword params: one encoded MessagePack map (copied); empty removes them. Not a map:
    /// JOINT_E_INVAL. To a stock peer they travel as the last positional param.
    CallOptions &kwargs(Bytes map) {
        return step([&](joint_call_opts *o) { return joint_call_opts_set_kwargs(o, map.empty() ? nullptr : map.data(), map.size()); });
    }
    /// Keyword params from a std::map / std::unordered_map, packed (see pack_value).
    template <class M, std::enable_if_t<detail::is_map<M>::value, int> = 0>
    CallOptions &kwargs(const M &map) {
        Result<std::vector<std::uint8_t>> packed = try_pack_value(map);
        if (!packed)
            return fail(packed.error());
        return kwargs(Bytes(*packed));
    }
    /// The call takes values sent in with send(), then end_input().
    CallOptions &client_stream(bool enabled = true) {
        return step([&](joint_call_opts *o) { return joint_call_opts_set_client_stream(o, enabled); });
    }
    /// Items the callee may stream before we grant more (0: the context's window, see
    /// Config::set_window).
    CallOptions &window(std::uint32_t items) { return step([&](joint_call_opts *o) { return joint_call_opts_set_window(o, items); }); }
    /// Grant credit with grant() instead of after each Item event returns (for consumers
    /// slower than the loop: the callee then waits instead of us buffering). Ignored by
    /// call_stream, which grants as items are pulled.
    CallOptions &manual_credit(bool enabled = true) {
        return step([&](joint_call_opts *o) { return joint_call_opts_set_manual_credit(o, enabled); });
    }

    /// Record a failure; the first one is kept.
    CallOptions &fail(Error error) {
        if (!error_)
            error_ = std::move(error);
        return *this;
    }
    bool ok() const noexcept { return !error_.has_value(); }
    Result<void> status() const {
        if (error_)
            return *error_;
        return {};
    }

    /// The C options; NULL until a setter ran (NULL means the defaults to the C API).
    joint_call_opts *raw() const noexcept { return o_.get(); }
    joint_call_opts *release() noexcept { return o_.release(); }

private:
    template <class Set>
    CallOptions &step(Set set) {
        if (error_)
            return *this;
        if (!o_) {
            joint_call_opts *o = nullptr;
            Status st = joint_call_opts_new(&o);
            if (st < 0)
                return fail(detail::make_error(st));
            o_.reset(o);
        }
        Status st = set(o_.get());
        if (st < 0)
            fail(detail::make_error(st));
        return *this;
    }
    detail::Owned<joint_call_opts, &joint_call_opts_free> o_;
    std::optional<Error> error_;
};

/// One step of a pulled Stream: an item, the end of the call with its result, or nothing
/// within the timeout.
struct StreamItem {
    enum class Kind { Item, Done, Timeout };
    Kind kind = Kind::Timeout;
    /// The item (Item) or the call's result (Done), as MessagePack; empty for Timeout.
    Buffer data;

    bool is_item() const noexcept { return kind == Kind::Item; }
    bool is_done() const noexcept { return kind == Kind::Done; }
    bool is_timeout() const noexcept { return kind == Kind::Timeout; }
    /// The data unpacked as T.
    template <class T>
    Result<T> as() const {
        return data.as<T>();
    }
};

/// A call whose items are pulled one at a time (joint_stream), from Connection::call_stream.
/// next() blocks, running the context meanwhile (so: not from a callback); credit is granted
/// as items are pulled, so a slow consumer slows the producer instead of buffering.
/// Destroying a Stream whose call still runs cancels the call (the cancellation goes out
/// when the context next runs). Move-only. A Stream made
/// from a Connection may outlive its Context (the Context frees it first; next() then fails
/// with JOINT_E_STATE); one made from a ConnectionRef must be destroyed before the Context.
class Stream {
public:
    Stream() = default;
    /// Takes ownership of `stream`, a stream of `ctx`; `life` as for Connection.
    Stream(joint_stream *stream, joint_ctx *ctx, std::shared_ptr<detail::CtxLife> life = nullptr)
        : s_(stream), ctx_(ctx), life_(std::move(life)) {
        if (s_ && life_)
            life_->streams.push_back(s_);
    }
    Stream(Stream &&o) noexcept : s_(std::exchange(o.s_, nullptr)), ctx_(o.ctx_), life_(std::move(o.life_)), finished_(o.finished_) {}
    Stream &operator=(Stream &&o) noexcept {
        if (this != &o) {
            reset();
            s_ = std::exchange(o.s_, nullptr);
            ctx_ = o.ctx_;
            life_ = std::move(o.life_);
            finished_ = o.finished_;
        }
        return *this;
    }
    Stream(const Stream &) = delete;
    Stream &operator=(const Stream &) = delete;
    ~Stream() { reset(); }

    /// The next item, waiting up to `timeout_ms` (-1: as long as it takes): StreamItem
    /// Item, then Done with the call's result once (after which next() fails with
    /// JOINT_E_STATE), or Timeout if nothing came in time. A failed call gives its Error
    /// (JOINT_E_REMOTE with the peer's error object, JOINT_E_TIMEOUT for the call's own
    /// timeout, JOINT_E_CANCELLED, JOINT_E_CLOSED, ...). From a callback: JOINT_E_RECURSIVE.
    Result<StreamItem> next(std::int32_t timeout_ms = no_timeout) {
        if (!s_)
            return Error(JOINT_E_NULL, "empty joint::Stream");
        if (!usable())
            return Error(JOINT_E_STATE, "the stream's context was destroyed");
        joint_buf *buf = nullptr;
        Status st = joint_stream_next(s_, timeout_ms, &buf);
        if (st == JOINT_E_TIMEOUT && !buf) {
            // "Nothing within timeout_ms" and "the call's own timeout passed" look alike in C
            // (JOINT_E_TIMEOUT, nothing written); only a finished stream then answers
            // JOINT_E_STATE. Look once more, without waiting.
            st = joint_stream_next(s_, 0, &buf);
            if (st == JOINT_E_TIMEOUT && !buf)
                return StreamItem{}; // nothing yet
        }
        StreamItem item;
        if (st == JOINT_OK || st == JOINT_DONE) {
            item.kind = st == JOINT_OK ? StreamItem::Kind::Item : StreamItem::Kind::Done;
            item.data = Buffer(buf);
            finished_ = st == JOINT_DONE;
            return item;
        }
        if (st == JOINT_E_STATE && !finished_) { // the call timed out (see above)
            finished_ = true;
            return Error(JOINT_E_TIMEOUT, "the call timed out");
        }
        if (st != JOINT_E_RECURSIVE && st != JOINT_E_STATE)
            finished_ = true;
        if (st == JOINT_E_REMOTE && buf)
            return detail::remote_error(buf);
        joint_buf_free(buf);
        if (st >= 0) // a status this version does not know
            return Error(JOINT_E_STATE, std::string("unexpected status from joint_stream_next: ") + joint_status_str(st));
        if (st == JOINT_E_STATE)
            return Error(st, "the stream is over");
        return detail::make_error(st, ctx_);
    }
    /// The id of the stream's call (for send, cancel, ...); 0 if empty.
    CallId call_id() const noexcept { return usable() ? joint_stream_call_id(s_) : 0; }
    /// next() returned Done or an error: the call is over.
    bool finished() const noexcept { return finished_; }

    joint_stream *raw() const noexcept { return usable() ? s_ : nullptr; }
    /// Give up ownership: the caller frees it with joint_stream_free, before the context.
    joint_stream *release() noexcept {
        forget();
        life_.reset();
        return std::exchange(s_, nullptr);
    }
    explicit operator bool() const noexcept { return s_ != nullptr; }

private:
    bool usable() const noexcept { return s_ && (!life_ || life_->alive); }
    void forget() noexcept {
        if (!s_ || !life_)
            return;
        auto &v = life_->streams;
        for (std::size_t i = 0; i < v.size(); i++) {
            if (v[i] == s_) {
                v[i] = v.back();
                v.pop_back();
                break;
            }
        }
    }
    void reset() noexcept {
        if (usable()) { // otherwise the context freed it already
            forget();
            joint_stream_free(s_);
        }
        s_ = nullptr;
        life_.reset();
    }

    joint_stream *s_ = nullptr;
    joint_ctx *ctx_ = nullptr;
    std::shared_ptr<detail::CtxLife> life_;
    bool finished_ = false;
};

// ---- Connections --------------------------------------------------------------------------

class Response;

/// A connection that is not owned: one accepted by a listener (valid until its CLOSED
/// event returns), or one passed to a callback (valid during the callback), or a view of a
/// Connection. Cheap to copy; empty when raw() is NULL.
class ConnectionRef {
public:
    ConnectionRef() = default;
    /// `ctx` (optional) is the connection's context, used for error details.
    explicit ConnectionRef(joint_conn *conn, joint_ctx *ctx = nullptr) noexcept : conn_(conn), ctx_(ctx) {}

    joint_conn *raw() const noexcept { return conn_; }
    explicit operator bool() const noexcept { return conn_ != nullptr; }
    /// Whether new calls can be made (connecting or open).
    bool is_open() const noexcept { return joint_conn_is_open(conn_); }

    /// Call `method` with `params` (one encoded array, e.g. pack(...); empty sends []).
    /// `on_done` runs exactly once, inside Context::process (or the Context's destructor),
    /// as `void(joint::Result<joint::Bytes>)` or `void(const joint::Response &)`: with the
    /// result, the peer's error (JOINT_E_REMOTE), JOINT_E_TIMEOUT, JOINT_E_CLOSED,
    /// JOINT_E_CANCELLED, ... The result bytes are valid until it returns. If call() returns
    /// an error, `on_done` never runs (and is destroyed). timeout_ms > 0 limits the call.
    template <class F>
    Result<CallId> call(detail::CStr method, Bytes params, F &&on_done, std::int32_t timeout_ms = no_timeout) const;
    /// Call without a callback: the outcome is discarded.
    Result<CallId> call(detail::CStr method, Bytes params, std::nullptr_t, std::int32_t timeout_ms = no_timeout) const {
        if (method.bad())
            return detail::embedded_nul();
        CallId id = 0;
        Status st = joint_conn_call(conn_, method.c_str(), params.data(), params.size(), timeout_ms, nullptr, nullptr, &id);
        if (st < 0)
            return detail::make_error(st, ctx_);
        return id;
    }

    /// Call and wait, running the context's callbacks meanwhile. On JOINT_E_REMOTE the Error
    /// carries the peer's error object. From a callback: JOINT_E_RECURSIVE.
    Result<Buffer> call_sync(detail::CStr method, Bytes params = {}, std::int32_t timeout_ms = no_timeout) const {
        if (method.bad())
            return detail::embedded_nul();
        joint_buf *result = nullptr;
        joint_buf *error = nullptr;
        Status st = joint_conn_call_sync(conn_, method.c_str(), params.data(), params.size(), timeout_ms, &result, &error);
        if (st >= 0)
            return Buffer(result);
        if (st == JOINT_E_REMOTE && error)
            return detail::remote_error(error);
        return detail::make_error(st, ctx_);
    }

    // -- The joint extension (see the file comment and docs/PROTOCOL.md) --

    /// Call with options (timeout/deadline, kwargs, streaming): to a joint peer an extended
    /// call, to a stock peer an ordinary request. `on_event(const joint::CallEvent &)` gets
    /// the call's items (Item; credit for each is granted when it returns, unless
    /// manual_credit) and send credit (Writable), inside process(); `on_done` completes the
    /// call exactly once, after the last event, as for call(). Either may be nullptr. Both
    /// live in one box, destroyed after the completion; if call() returns an error neither
    /// runs. If `opts` recorded a failure, that is the error.
    template <class E, class F>
    Result<CallId> call(detail::CStr method, Bytes params, const CallOptions &opts, E &&on_event, F &&on_done) const;
    /// As above, without events (kwargs, a deadline).
    template <class F>
    Result<CallId> call(detail::CStr method, Bytes params, const CallOptions &opts, F &&on_done) const {
        return call(method.c_str(), params, opts, nullptr, std::forward<F>(on_done));
    }
    /// Call and pull the items with Stream::next (blocking; see Stream). The options' manual
    /// credit is ignored. The Stream must be destroyed before the context (a Stream from an
    /// owned Connection need not be).
    Result<Stream> call_stream(detail::CStr method, Bytes params = {}, const CallOptions &opts = CallOptions()) const {
        return stream_with_life(method.c_str(), params, opts, nullptr);
    }
    /// Send one value (one encoded MessagePack object, copied) into our running call `id`,
    /// made with client_stream(). WouldBlock: no credit yet — try again after the call's
    /// Writable event. JOINT_E_UNSUPPORTED: the peer is a stock peer (or the call takes no
    /// input, or its input has ended); JOINT_E_STATE: the call is not running.
    Result<SendStatus> send(CallId id, Bytes item) const {
        Status st = joint_conn_send(conn_, id, item.data(), item.size());
        if (st < 0)
            return detail::make_error(st, ctx_);
        return st == JOINT_WOULD_BLOCK ? SendStatus::WouldBlock : SendStatus::Sent;
    }
    /// Send `value`, packed (see pack_value).
    template <class T>
    Result<SendStatus> send_value(CallId id, const T &value) const {
        Result<std::vector<std::uint8_t>> v = try_pack_value(value);
        if (!v)
            return v.error();
        return send(id, *v);
    }
    /// No more values will be sent into `id`.
    Result<void> end_input(CallId id) const { return detail::check(joint_conn_end_input(conn_, id), ctx_); }
    /// Throw an error object (one encoded MessagePack value) into the running call `id`: its
    /// handler gets it (InputKind::Throw) and decides how the call ends.
    Result<void> throw_error(CallId id, Bytes error_object) const {
        return detail::check(joint_conn_throw(conn_, id, error_object.data(), error_object.size()), ctx_);
    }
    /// Throw joint's error object [code, message].
    Result<void> throw_error(CallId id, std::int64_t code, std::string_view message) const {
        Result<std::vector<std::uint8_t>> e = try_pack_value(std::make_tuple(code, message));
        if (!e)
            return e.error();
        return throw_error(id, *e);
    }
    /// With manual credit: `items` more may be streamed to us on `id`.
    Result<void> grant(CallId id, std::uint32_t items) const { return detail::check(joint_conn_grant(conn_, id, items), ctx_); }
    /// Where the joint extension stands on this connection (Off for an empty ref).
    Extension extension() const noexcept {
        std::int32_t e = joint_conn_extension(conn_);
        return e < 0 ? Extension::Off : static_cast<Extension>(e);
    }

    /// Send a notification (no response).
    Result<void> notify(detail::CStr method, Bytes params = {}) const {
        if (method.bad())
            return detail::embedded_nul();
        return detail::check(joint_conn_notify(conn_, method.c_str(), params.data(), params.size()), ctx_);
    }
    /// Cancel a pending call: it completes with JOINT_E_CANCELLED during the next process.
    Result<void> cancel(CallId id) const {
        return detail::check(joint_conn_cancel(conn_, id), ctx_, "the call is not pending");
    }
    /// Close: pending calls complete with JOINT_E_CANCELLED, then the CLOSED event follows.
    Result<void> close() const { return detail::check(joint_conn_close(conn_), ctx_); }

    /// Application data attached to the connection (joint never touches it).
    void set_user_data(void *data) const noexcept { (void)joint_conn_set_user_data(conn_, data); }
    void *user_data() const noexcept { return joint_conn_user_data(conn_); }

    friend bool operator==(ConnectionRef a, ConnectionRef b) noexcept { return a.conn_ == b.conn_; }
    friend bool operator!=(ConnectionRef a, ConnectionRef b) noexcept { return a.conn_ != b.conn_; }

private:
    friend class Connection;
    Result<Stream> stream_with_life(detail::CStr method, Bytes params, const CallOptions &opts,
                                    std::shared_ptr<detail::CtxLife> life) const {
        if (method.bad())
            return detail::embedded_nul();
        if (Result<void> o = opts.status(); !o)
            return o.error();
        joint_stream *stream = nullptr;
        Status st = joint_conn_call_stream(conn_, method.c_str(), params.data(), params.size(), opts.raw(), &stream);
        if (st < 0)
            return detail::make_error(st, ctx_);
        return Stream(stream, ctx_, std::move(life));
    }

    joint_conn *conn_ = nullptr;
    joint_ctx *ctx_ = nullptr;
};

/// Something that happened to one of our calls before it completed: an item the callee
/// streamed (Item: `data`, borrowed until the callback returns) or send credit (Writable:
/// send() may be tried again). Borrowed during the callback.
struct CallEvent {
    enum class Kind : std::int32_t { Item = JOINT_CALL_ITEM, Writable = JOINT_CALL_WRITABLE };
    Kind kind = Kind::Item;
    Bytes data;
    CallId call_id = 0;
    /// The connection the call was made on (valid during the callback).
    ConnectionRef conn;

    bool is_item() const noexcept { return kind == Kind::Item; }
    bool is_writable() const noexcept { return kind == Kind::Writable; }
    /// The item unpacked as T.
    template <class T>
    Result<T> as() const {
        return unpack<T>(data);
    }
};

/// An owned connection (Context::connect, spawn, open_stdio): destroying it closes it (its
/// pending calls complete with JOINT_E_CANCELLED on the next process; no CLOSED event) and
/// frees it. It stays valid after the peer goes away (calls then fail with
/// JOINT_E_CLOSED). If it outlives its Context it becomes inert (calls fail with
/// JOINT_E_STATE, the destructor does nothing): the context freed it.
class Connection {
public:
    Connection() = default;
    /// Takes ownership of `conn`, a connection of `ctx`. `life` is the context's liveness
    /// token (from Context); without it the Connection must be destroyed before the context.
    Connection(joint_conn *conn, joint_ctx *ctx, std::shared_ptr<detail::CtxLife> life = nullptr) noexcept
        : c_(conn, Free{std::move(life)}), ctx_(ctx) {}

    /// A non-owning view (for code that takes ConnectionRef).
    ConnectionRef ref() const noexcept { return ConnectionRef(usable() ? c_.get() : nullptr, ctx_); }
    operator ConnectionRef() const noexcept { return ref(); }

    bool is_open() const noexcept { return usable() && joint_conn_is_open(c_.get()); }
    template <class F>
    Result<CallId> call(detail::CStr method, Bytes params, F &&on_done, std::int32_t timeout_ms = no_timeout) const {
        if (!usable())
            return dead();
        if (method.bad())
            return detail::embedded_nul();
        return ConnectionRef(c_.get(), ctx_).call(method.c_str(), params, std::forward<F>(on_done), timeout_ms);
    }
    Result<CallId> call(detail::CStr method, Bytes params, std::nullptr_t, std::int32_t timeout_ms = no_timeout) const {
        if (!usable())
            return dead();
        if (method.bad())
            return detail::embedded_nul();
        return ConnectionRef(c_.get(), ctx_).call(method.c_str(), params, nullptr, timeout_ms);
    }
    Result<Buffer> call_sync(detail::CStr method, Bytes params = {}, std::int32_t timeout_ms = no_timeout) const {
        if (!usable())
            return dead();
        if (method.bad())
            return detail::embedded_nul();
        return ConnectionRef(c_.get(), ctx_).call_sync(method.c_str(), params, timeout_ms);
    }
    Result<void> notify(detail::CStr method, Bytes params = {}) const {
        if (!usable())
            return dead();
        if (method.bad())
            return detail::embedded_nul();
        return ConnectionRef(c_.get(), ctx_).notify(method.c_str(), params);
    }
    Result<void> cancel(CallId id) const {
        if (!usable())
            return dead();
        return ConnectionRef(c_.get(), ctx_).cancel(id);
    }
    Result<void> close() const {
        if (!usable())
            return dead();
        return ConnectionRef(c_.get(), ctx_).close();
    }

    // -- The joint extension: see ConnectionRef --
    template <class E, class F>
    Result<CallId> call(detail::CStr method, Bytes params, const CallOptions &opts, E &&on_event, F &&on_done) const {
        if (!usable())
            return dead();
        if (method.bad())
            return detail::embedded_nul();
        return ConnectionRef(c_.get(), ctx_).call(method.c_str(), params, opts, std::forward<E>(on_event), std::forward<F>(on_done));
    }
    template <class F>
    Result<CallId> call(detail::CStr method, Bytes params, const CallOptions &opts, F &&on_done) const {
        if (!usable())
            return dead();
        if (method.bad())
            return detail::embedded_nul();
        return ConnectionRef(c_.get(), ctx_).call(method.c_str(), params, opts, nullptr, std::forward<F>(on_done));
    }
    /// A Stream from an owned Connection may outlive the Context (see Stream).
    Result<Stream> call_stream(detail::CStr method, Bytes params = {}, const CallOptions &opts = CallOptions()) const {
        if (!usable())
            return dead();
        return ConnectionRef(c_.get(), ctx_).stream_with_life(method.c_str(), params, opts, c_.get_deleter().life);
    }
    Result<SendStatus> send(CallId id, Bytes item) const {
        if (!usable())
            return dead();
        return ConnectionRef(c_.get(), ctx_).send(id, item);
    }
    template <class T>
    Result<SendStatus> send_value(CallId id, const T &value) const {
        if (!usable())
            return dead();
        return ConnectionRef(c_.get(), ctx_).send_value(id, value);
    }
    Result<void> end_input(CallId id) const {
        if (!usable())
            return dead();
        return ConnectionRef(c_.get(), ctx_).end_input(id);
    }
    Result<void> throw_error(CallId id, Bytes error_object) const {
        if (!usable())
            return dead();
        return ConnectionRef(c_.get(), ctx_).throw_error(id, error_object);
    }
    Result<void> throw_error(CallId id, std::int64_t code, std::string_view message) const {
        if (!usable())
            return dead();
        return ConnectionRef(c_.get(), ctx_).throw_error(id, code, message);
    }
    Result<void> grant(CallId id, std::uint32_t items) const {
        if (!usable())
            return dead();
        return ConnectionRef(c_.get(), ctx_).grant(id, items);
    }
    Extension extension() const noexcept { return ref().extension(); }

    void set_user_data(void *data) const noexcept { ref().set_user_data(data); }
    void *user_data() const noexcept { return ref().user_data(); }

    joint_conn *raw() const noexcept { return c_.get(); }
    /// Give up ownership: the caller frees it with joint_conn_free, before the context.
    joint_conn *release() noexcept { return c_.release(); }
    explicit operator bool() const noexcept { return c_ != nullptr; }

private:
    struct Free {
        std::shared_ptr<detail::CtxLife> life;
        void operator()(joint_conn *c) const noexcept {
            if (!life || life->alive)
                joint_conn_free(c);
        }
    };
    bool usable() const noexcept {
        const auto &life = c_.get_deleter().life;
        return !life || life->alive;
    }
    static Error dead() { return Error(JOINT_E_STATE, "the connection's context was destroyed"); }

    std::unique_ptr<joint_conn, Free> c_;
    joint_ctx *ctx_ = nullptr;
};

/// The outcome of a call, borrowed by a completion callback until it returns.
class Response {
public:
    explicit Response(const joint_response *resp, joint_conn *conn, joint_ctx *ctx) noexcept : r_(resp), conn_(conn), ctx_(ctx) {}

    Status status() const noexcept { return joint_response_status(r_); }
    bool ok() const noexcept { return status() == JOINT_OK; }
    /// The result (MessagePack; nil unless ok()). Valid until the callback returns.
    Bytes result() const noexcept {
        const std::uint8_t *d = nullptr;
        std::size_t n = 0;
        (void)joint_response_result(r_, &d, &n);
        return Bytes(d, n);
    }
    /// The peer's error object (MessagePack; nil unless JOINT_E_REMOTE).
    Bytes error_object() const noexcept {
        const std::uint8_t *d = nullptr;
        std::size_t n = 0;
        (void)joint_response_error(r_, &d, &n);
        return Bytes(d, n);
    }
    /// A description of the failure ("" on success); for JOINT_E_REMOTE the peer's message.
    std::string_view message() const noexcept {
        const char *m = joint_response_message(r_);
        return m ? std::string_view(m) : std::string_view();
    }
    CallId call_id() const noexcept { return joint_response_call_id(r_); }
    /// The connection the call was made on (valid during the callback).
    ConnectionRef conn() const noexcept { return ConnectionRef(conn_, ctx_); }

    /// The failure as an Error (copies); only when !ok().
    Error error() const {
        Status st = status();
        std::string_view m = message();
        return Error(st, m.empty() ? std::string(joint_status_str(st)) : std::string(m),
                     st == JOINT_E_REMOTE ? error_object().to_vector() : std::vector<std::uint8_t>());
    }
    /// result() or error(); the bytes are valid until the callback returns.
    Result<Bytes> to_result() const {
        if (ok())
            return result();
        return error();
    }
    /// The result unpacked as T, or the failure.
    template <class T>
    Result<T> as() const {
        if (!ok())
            return error();
        return unpack<T>(result());
    }

    const joint_response *raw() const noexcept { return r_; }

private:
    const joint_response *r_;
    joint_conn *conn_;
    joint_ctx *ctx_;
};

/// A connection opened (JOINT_CONN_OPEN) or closed (JOINT_CONN_CLOSED: status says why,
/// reason describes it). Borrowed during the callback. `event` is kept as the C API's
/// integer so that events added later reach you too.
struct ConnEvent {
    ConnectionRef conn;
    std::int32_t event = 0;
    Status status = JOINT_OK;
    std::string_view reason;

    bool opened() const noexcept { return event == JOINT_CONN_OPEN; }
    bool closed() const noexcept { return event == JOINT_CONN_CLOSED; }
};

// ---- Requests -----------------------------------------------------------------------------

class Request;

namespace detail {
#if JOINT_HPP_EXCEPTIONS
/// The request a handler is running for, on this thread: if the handler throws and the
/// Request holding it is destroyed by the unwinding, the destructor hands it back here so
/// the trampoline can answer with the exception's message instead of NOT_ANSWERED.
struct HandlerFrame {
    joint_request *req;
    int uncaught;
    joint_request *rescued;
    HandlerFrame *prev;
};
inline HandlerFrame *&handler_frame() noexcept {
    static thread_local HandlerFrame *frame = nullptr;
    return frame;
}
#endif
} // namespace detail

/// What happened to a running extended call we serve (JOINT_INPUT_*).
enum class InputKind : std::int32_t {
    Value = JOINT_INPUT_VALUE,       // a value the caller sent in
    End = JOINT_INPUT_END,           // the caller will send no more values
    Throw = JOINT_INPUT_THROW,       // the caller threw an error object into the call
    Writable = JOINT_INPUT_WRITABLE, // yield() has credit again
    // The call ended without the handler (it was answered for you; later answers and yields
    // fail with JOINT_E_CANCELLED / JOINT_E_TIMEOUT / JOINT_E_CLOSED):
    Cancelled = JOINT_INPUT_CANCELLED, // the caller cancelled it
    Timeout = JOINT_INPUT_TIMEOUT,     // its deadline passed
    Closed = JOINT_INPUT_CLOSED,       // the connection closed
};

/// One event pulled with Request::next_input (owned).
struct InputEvent {
    using Kind = InputKind;
    Kind kind = Kind::End;
    /// The value (Value) or the error object (Throw), as MessagePack; empty otherwise.
    Buffer data;

    /// The call is over (Cancelled, Timeout, Closed).
    bool ended() const noexcept { return kind == Kind::Cancelled || kind == Kind::Timeout || kind == Kind::Closed; }
    template <class T>
    Result<T> as() const {
        return data.as<T>();
    }
};

/// One event pushed to a Request::on_events callable; `data` (Value, Throw) is borrowed
/// until the callable returns.
struct RequestEvent {
    using Kind = InputKind;
    Kind kind = Kind::End;
    Bytes data;

    bool ended() const noexcept { return kind == Kind::Cancelled || kind == Kind::Timeout || kind == Kind::Closed; }
    template <class T>
    Result<T> as() const {
        return unpack<T>(data);
    }
};

namespace detail {
/// Whether this thread is one of a context's worker-pool threads (set when it first runs an
/// on_pool handler): Request::on_events and conn() belong to the loop thread.
inline bool &pool_thread() noexcept {
    static thread_local bool on = false;
    return on;
}
} // namespace detail

/// A request from a peer, owned: answer it exactly once with reply / reply_value /
/// reply_error — in the handler, later, or from any thread. Destroying it unanswered sends
/// [JOINT_RPC_NOT_ANSWERED, ...]. Every reply consumes it (also on failure); the Request is
/// then empty and further replies return JOINT_E_STATE.
class Request {
public:
    Request() = default;
    /// Takes ownership of `req`; `ctx` (optional) is its context, for conn().
    explicit Request(joint_request *req, joint_ctx *ctx = nullptr) noexcept : r_(req), ctx_(ctx) {}
    Request(Request &&o) noexcept : r_(std::exchange(o.r_, nullptr)), ctx_(o.ctx_) {}
    Request &operator=(Request &&o) noexcept {
        if (this != &o) {
            drop();
            r_ = std::exchange(o.r_, nullptr);
            ctx_ = o.ctx_;
        }
        return *this;
    }
    Request(const Request &) = delete;
    Request &operator=(const Request &) = delete;
    ~Request() { drop(); }

    /// The method name as sent (not NUL-terminated); valid while this Request holds it.
    std::string_view method() const noexcept {
        const std::uint8_t *d = nullptr;
        std::size_t n = 0;
        if (joint_request_method(r_, &d, &n) != JOINT_OK)
            return {};
        return std::string_view(reinterpret_cast<const char *>(d), n);
    }
    /// The positional params: one MessagePack array ([] when the peer sent a map or nil).
    Bytes params() const noexcept {
        const std::uint8_t *d = nullptr;
        std::size_t n = 0;
        if (joint_request_params(r_, &d, &n) != JOINT_OK)
            return {};
        return Bytes(d, n);
    }
    /// The keyword params: the map the peer sent as params; nullopt if they were not a map.
    std::optional<Bytes> kwargs() const noexcept {
        const std::uint8_t *d = nullptr;
        std::size_t n = 0;
        if (joint_request_kwargs(r_, &d, &n) != JOINT_OK)
            return std::nullopt;
        return Bytes(d, n);
    }
    /// The params unpacked as exactly these types: `auto r = req.args<int64_t, std::string>();`
    /// (string_view / Bytes elements point into the request).
    template <class... Ts>
    Result<std::tuple<Ts...>> args() const {
        return unpack<std::tuple<Ts...>>(params());
    }
    std::uint32_t msgid() const noexcept { return joint_request_msgid(r_); }
    /// The connection it came on (to call the peer back); empty if it has closed. Only on the
    /// loop thread, while the context lives (empty on a worker-pool thread).
    ConnectionRef conn() const noexcept {
        if (detail::pool_thread())
            return ConnectionRef();
        return ConnectionRef(joint_request_conn(r_), ctx_);
    }

    // -- The joint extension: a served extended call (see the file comment) --

    /// Whether the caller made an extended call (so it can stream, be cancelled, have a
    /// deadline). A stock request has no input, and its yields are collected into one array
    /// that is sent, instead of the answer's value, when it is answered.
    bool is_extended() const noexcept { return joint_request_is_extended(r_); }
    /// The call ended without the handler (cancelled, past its deadline, or its connection
    /// is gone): answering does nothing, so long work for it can stop.
    bool is_cancelled() const noexcept { return joint_request_is_cancelled(r_); }
    /// Whether an answer of `bytes` fits in the memory budget now (bigger ones that do not
    /// are replaced by a JOINT_RPC_RESOURCE_EXHAUSTED error).
    bool fits(std::size_t bytes) const noexcept { return joint_request_fits(r_, bytes); }
    /// The call's flags (JOINT_CALL_FLAG_*); 0 for a stock request.
    std::uint32_t flags() const noexcept { return joint_request_flags(r_); }
    /// The milliseconds the caller allowed the call, from when it arrived; 0 for none.
    std::uint32_t deadline_ms() const noexcept { return joint_request_deadline_ms(r_); }

    /// Stream one item (one encoded MessagePack value, copied) to the caller. WouldBlock: no
    /// credit — try again after InputKind::Writable (or wait_writable()). JOINT_E_CANCELLED /
    /// JOINT_E_TIMEOUT / JOINT_E_CLOSED: the call ended; stop (and let the Request go).
    /// Any thread.
    Result<YieldStatus> yield(Bytes item) {
        if (!r_)
            return answered();
        Status st = joint_request_yield(r_, item.data(), item.size());
        if (st < 0)
            return detail::make_error(st);
        return st == JOINT_WOULD_BLOCK ? YieldStatus::WouldBlock : YieldStatus::Sent;
    }
    /// Stream `value`, packed (see pack_value).
    template <class T>
    Result<YieldStatus> yield_value(const T &value) {
        if (!r_)
            return answered();
        Result<std::vector<std::uint8_t>> v = try_pack_value(value);
        if (!v)
            return v.error();
        return yield(*v);
    }
    /// Block until yield() has credit (true) or `timeout_ms` passes (false; -1: no limit).
    /// Errors: the call ended (JOINT_E_CANCELLED, JOINT_E_TIMEOUT, JOINT_E_CLOSED). For
    /// handlers on their own threads (on_pool, std::thread) — never on the loop thread,
    /// through which credit arrives. A stock request is always writable.
    Result<bool> wait_writable(std::int32_t timeout_ms = no_timeout) const {
        if (!r_)
            return answered();
        Status st = joint_request_wait_writable(r_, timeout_ms);
        if (st < 0)
            return detail::make_error(st);
        return st == JOINT_OK;
    }
    /// Pull the next event, waiting up to `timeout_ms` (-1: no limit); JOINT_E_TIMEOUT if
    /// nothing came in time (not to be confused with InputKind::Timeout, the call's deadline).
    /// Values pulled are credited back to the caller. For requests without on_events; any
    /// thread (blocks: not on the loop thread unless timeout_ms is 0). A stock request
    /// reports End at once.
    Result<InputEvent> next_input(std::int32_t timeout_ms = no_timeout) const {
        if (!r_)
            return answered();
        std::int32_t kind = 0;
        joint_buf *data = nullptr;
        Status st = joint_request_next_input(r_, timeout_ms, &kind, &data);
        if (st < 0)
            return detail::make_error(st);
        InputEvent ev;
        ev.kind = static_cast<InputKind>(kind);
        ev.data = Buffer(data);
        return ev;
    }
    /// Receive the call's events through `fn(joint::Request &req, const joint::RequestEvent
    /// &ev)` instead of pulling them: this Request moves into the callable's box and `req`
    /// is it (answer it there, or move it out, e.g. into a timer). The box — and the Request,
    /// if still unanswered — is destroyed when the call ends: answered, cancelled, past its
    /// deadline, closed, or the context destroyed. Values are credited back to the caller
    /// when fn returns. Inputs that arrived before registration are delivered right after
    /// on_events returns success.
    ///
    /// The loop-thread rule: only on the loop thread (in a handler, a loop callback or a
    /// timer; never in an on_pool handler or another thread: JOINT_E_STATE there); fn runs
    /// inside process() on that thread, and the request must be answered on it. Only for
    /// extended calls: a stock request gives JOINT_E_UNSUPPORTED. On failure this Request
    /// keeps the request and fn is destroyed. An exception escaping fn while the box still
    /// holds the request answers it [JOINT_RPC_HANDLER_FAILED, what()].
    template <class F>
    Result<void> on_events(F &&fn);

    /// Answer with `result`: one encoded MessagePack value (empty answers nil). If it is
    /// not one valid value within the size limit, the peer gets an error instead and this
    /// returns JOINT_E_INVAL / JOINT_E_TOO_LARGE.
    Result<void> reply(Bytes result) { return consumed(joint_request_reply(take(), result.data(), result.size())); }
    /// Answer with `value`, packed (see pack_value).
    template <class T>
    Result<void> reply_value(const T &value) {
        if (!r_)
            return answered();
        return reply(pack_value(value));
    }
    /// Answer with joint's error object [code, message] (codes: JOINT_RPC_* or your own).
    Result<void> reply_error(std::int64_t code, std::string_view message) {
        if (!r_)
            return answered();
        std::string m(message);
        return consumed(joint_request_reply_error_msg(take(), code, m.c_str()));
    }
    /// Answer with an error object (one encoded MessagePack value; peers expect a string or
    /// [code, message]).
    Result<void> reply_error(Bytes error_object) {
        return consumed(joint_request_reply_error(take(), error_object.data(), error_object.size()));
    }
    /// Pass an Error on: a peer's error object as is, anything else as
    /// [JOINT_RPC_HANDLER_FAILED, message].
    Result<void> reply_error(const Error &error) {
        if (error.is_remote() && !error.remote_object().empty())
            return reply_error(error.remote_object());
        return reply_error(JOINT_RPC_HANDLER_FAILED, error.message());
    }

    bool valid() const noexcept { return r_ != nullptr; }
    explicit operator bool() const noexcept { return valid(); }
    joint_request *raw() const noexcept { return r_; }
    /// Give up ownership: the caller must pass it to a joint_request_reply* / _free.
    joint_request *release() noexcept { return std::exchange(r_, nullptr); }

private:
    joint_request *take() noexcept { return std::exchange(r_, nullptr); }
    static Error answered() { return Error(JOINT_E_STATE, "the request was already answered or released"); }
    Result<void> consumed(Status st) {
        if (st == JOINT_E_NULL)
            return answered();
        return detail::check(st);
    }
    void drop() noexcept {
        if (!r_)
            return;
#if JOINT_HPP_EXCEPTIONS
        detail::HandlerFrame *f = detail::handler_frame();
        if (f && f->req == r_ && !f->rescued && std::uncaught_exceptions() > f->uncaught) {
            f->rescued = std::exchange(r_, nullptr); // the handler is unwinding: see HandlerFrame
            return;
        }
#endif
        joint_request_free(std::exchange(r_, nullptr));
    }

    joint_request *r_ = nullptr;
    joint_ctx *ctx_ = nullptr;
};

// ---- Trampolines: the C callbacks ---------------------------------------------------------
// One extern "C" function per callback type; user_data is a detail::Fn box. They never let
// an exception escape into C.

namespace detail {

using RequestFn = Fn<void(Request)>;
using ResponseFn = Fn<void(const Response &)>;
using NotificationFn = Fn<void(ConnectionRef, std::string_view, Bytes)>;
using ConnFn = Fn<void(const ConnEvent &)>;
using TimerFn = Fn<void()>;
using LogFn = Fn<void(std::int32_t, std::string_view)>;

/// Run a request handler; an exception escaping it while it still holds the request
/// answers [JOINT_RPC_HANDLER_FAILED, what()] (see HandlerFrame).
inline void run_request_handler(RequestFn *fn, joint_request *req) noexcept {
#if JOINT_HPP_EXCEPTIONS
    HandlerFrame frame{req, std::uncaught_exceptions(), nullptr, handler_frame()};
    handler_frame() = &frame;
    const char *what = nullptr;
    std::string what_buf;
    try {
        fn->call(Request(req, fn->ctx));
    } catch (const std::exception &e) {
        try {
            what_buf = e.what();
            what = what_buf.c_str();
        } catch (...) {
            what = "exception";
        }
    } catch (...) {
        what = "unknown exception";
    }
    handler_frame() = frame.prev;
    if (frame.rescued) {
        if (what)
            (void)joint_request_reply_error_msg(frame.rescued, JOINT_RPC_HANDLER_FAILED, what);
        else // destroyed by an exception the handler caught itself: as if dropped
            joint_request_free(frame.rescued);
    } else if (what) {
        // the request was answered or handed on before the exception: nothing to reply to
        report_exception("request handler", what);
    }
#else
    fn->call(Request(req, fn->ctx));
#endif
}

extern "C" {

inline void joint_hpp_free_box(void *user_data) noexcept { delete static_cast<BoxBase *>(user_data); }

inline void joint_hpp_on_request(joint_request *req, void *user_data) noexcept {
    run_request_handler(from_user_data<void(Request)>(user_data), req);
}

/// A handler registered with Context::on_pool, on a worker thread.
inline void joint_hpp_on_pool_request(joint_request *req, void *user_data) noexcept {
    pool_thread() = true; // a worker thread for good
    run_request_handler(from_user_data<void(Request)>(user_data), req);
}

inline void joint_hpp_on_response(joint_conn *conn, const joint_response *resp, void *user_data) noexcept {
    // Completions run exactly once: the box goes with this call.
    std::unique_ptr<ResponseFn> fn(from_user_data<void(const Response &)>(user_data));
#if JOINT_HPP_EXCEPTIONS
    try {
        fn->call(Response(resp, conn, fn->ctx));
    } catch (const std::exception &e) {
        report_exception("call completion", e.what());
    } catch (...) {
        report_exception("call completion", "unknown exception");
    }
#else
    fn->call(Response(resp, conn, fn->ctx));
#endif
}

inline void joint_hpp_on_notification(joint_conn *conn, const std::uint8_t *method, std::size_t method_len,
                                      const std::uint8_t *params, std::size_t params_len, void *user_data) noexcept {
    NotificationFn *fn = from_user_data<void(ConnectionRef, std::string_view, Bytes)>(user_data);
#if JOINT_HPP_EXCEPTIONS
    try {
#endif
        fn->call(ConnectionRef(conn, fn->ctx), std::string_view(reinterpret_cast<const char *>(method), method_len),
                 Bytes(params, params_len));
#if JOINT_HPP_EXCEPTIONS
    } catch (const std::exception &e) {
        report_exception("notification", e.what());
    } catch (...) {
        report_exception("notification", "unknown exception");
    }
#endif
}

inline void joint_hpp_on_conn(joint_conn *conn, std::int32_t event, joint_status status, const char *reason, void *user_data) noexcept {
    ConnFn *fn = from_user_data<void(const ConnEvent &)>(user_data);
    ConnEvent ev{ConnectionRef(conn, fn->ctx), event, status, reason ? std::string_view(reason) : std::string_view()};
#if JOINT_HPP_EXCEPTIONS
    try {
#endif
        fn->call(ev);
#if JOINT_HPP_EXCEPTIONS
    } catch (const std::exception &e) {
        report_exception("connection event", e.what());
    } catch (...) {
        report_exception("connection event", "unknown exception");
    }
#endif
}

inline void joint_hpp_on_timer(joint_ctx *ctx, void *user_data) noexcept {
    (void)ctx;
    TimerFn *fn = from_user_data<void()>(user_data); // freed by joint_hpp_free_box right after
#if JOINT_HPP_EXCEPTIONS
    try {
#endif
        fn->call();
#if JOINT_HPP_EXCEPTIONS
    } catch (const std::exception &e) {
        report_exception("timer", e.what());
    } catch (...) {
        report_exception("timer", "unknown exception");
    }
#endif
}

inline void joint_hpp_on_log(std::int32_t level, const char *message, void *user_data) noexcept {
    LogFn *fn = from_user_data<void(std::int32_t, std::string_view)>(user_data);
#if JOINT_HPP_EXCEPTIONS
    try {
#endif
        fn->call(level, message ? std::string_view(message) : std::string_view());
#if JOINT_HPP_EXCEPTIONS
    } catch (const std::exception &e) {
        report_exception("log", e.what());
    } catch (...) {
        report_exception("log", "unknown exception");
    }
#endif
}

} // extern "C"

/// Adapts a completion callable taking Result<Bytes> or const Response&.
template <class F>
struct ResponseAdapter {
    F f;
    void operator()(const Response &r) {
        if constexpr (std::is_invocable_v<F &, Result<Bytes>>)
            (void)f(r.to_result());
        else
            (void)f(r);
    }
};

/// Hand a box to a registration function; if it fails, the box is still ours: free it.
inline Result<void> registered(Status st, BoxBase *box, const joint_ctx *ctx) {
    if (st < 0) {
        delete box;
        return make_error(st, ctx);
    }
    return {};
}

} // namespace detail

// ---- The joint extension's boxes and trampolines -------------------------------------------

namespace detail {

/// The box of a call made with options: its event callable and its completion, together.
/// The C event callback gets the completion's user_data; the completion frees the box —
/// after the running event callable returns, should a completion ever run inside one.
struct CallBox : BoxBase {
    virtual void event(const CallEvent &ev) = 0;
    virtual void done(const Response &r) = 0;
    bool in_event = false;  // an event callable is running
    bool completed = false; // the completion ran meanwhile: free the box when it returns
};
template <class E, class D>
struct CallBoxImpl final : CallBox {
    template <class E2, class D2>
    CallBoxImpl(E2 &&e, D2 &&d) : on_event(std::forward<E2>(e)), on_done(std::forward<D2>(d)) {}
    void event(const CallEvent &ev) override {
        if constexpr (std::is_same_v<E, std::nullptr_t>)
            (void)ev;
        else
            (void)on_event(ev); // what the callable returns is dropped
    }
    void done(const Response &r) override {
        if constexpr (std::is_same_v<D, std::nullptr_t>)
            (void)r;
        else if constexpr (std::is_invocable_v<D &, Result<Bytes>>)
            (void)on_done(r.to_result());
        else
            (void)on_done(r);
    }
    E on_event;
    D on_done;
};

/// The box of Request::on_events: the callable and the Request it serves. joint frees it
/// (free_user_data) when the call ends; if that happens while the callable runs, the box
/// goes when it returns. Events that joint delivers during registration (inputs queued
/// before it) are copied and replayed once registration has returned, so that the callable
/// never consumes the request inside joint_request_set_event_cb.
struct RequestEventsBox : BoxBase {
    virtual void call(Request &r, const RequestEvent &ev) = 0;
    Request req;
    int running = 0;          // depth of callable runs
    bool registering = false; // inside joint_request_set_event_cb
    bool ended = false;       // free_user_data ran while running: delete when done
    std::vector<std::pair<InputKind, std::vector<std::uint8_t>>> queued;
};
template <class F>
struct RequestEventsImpl final : RequestEventsBox {
    template <class G>
    explicit RequestEventsImpl(G &&g) : f(std::forward<G>(g)) {}
    void call(Request &r, const RequestEvent &ev) override { (void)f(r, ev); }
    F f;
};

inline void deliver_request_event(RequestEventsBox *box, InputKind kind, Bytes data) noexcept {
    RequestEvent ev;
    ev.kind = kind;
    ev.data = data;
    box->running++;
#if JOINT_HPP_EXCEPTIONS
    const char *what = nullptr;
    std::string what_buf;
    try {
        box->call(box->req, ev);
    } catch (const std::exception &e) {
        try {
            what_buf = e.what();
            what = what_buf.c_str();
        } catch (...) {
            what = "exception";
        }
    } catch (...) {
        what = "unknown exception";
    }
    if (what) {
        if (box->req) // still ours to answer
            (void)box->req.reply_error(JOINT_RPC_HANDLER_FAILED, what);
        else
            report_exception("request event", what);
    }
#else
    box->call(box->req, ev);
#endif
    box->running--;
}

extern "C" {

inline void joint_hpp_on_call_event(joint_conn *conn, std::uint64_t call_id, std::int32_t event, const std::uint8_t *data,
                                    std::size_t len, void *user_data) noexcept {
    CallBox *box = static_cast<CallBox *>(static_cast<BoxBase *>(user_data));
    CallEvent ev;
    ev.kind = static_cast<CallEvent::Kind>(event);
    ev.data = Bytes(data, len);
    ev.call_id = call_id;
    ev.conn = ConnectionRef(conn, box->ctx);
    bool outer = !box->in_event;
    box->in_event = true;
#if JOINT_HPP_EXCEPTIONS
    try {
#endif
        box->event(ev);
#if JOINT_HPP_EXCEPTIONS
    } catch (const std::exception &e) {
        report_exception("call event", e.what());
    } catch (...) {
        report_exception("call event", "unknown exception");
    }
#endif
    if (outer) {
        box->in_event = false;
        if (box->completed)
            delete box;
    }
}

inline void joint_hpp_on_call_done(joint_conn *conn, const joint_response *resp, void *user_data) noexcept {
    CallBox *box = static_cast<CallBox *>(static_cast<BoxBase *>(user_data));
#if JOINT_HPP_EXCEPTIONS
    try {
#endif
        box->done(Response(resp, conn, box->ctx));
#if JOINT_HPP_EXCEPTIONS
    } catch (const std::exception &e) {
        report_exception("call completion", e.what());
    } catch (...) {
        report_exception("call completion", "unknown exception");
    }
#endif
    if (box->in_event)
        box->completed = true;
    else
        delete box;
}

inline void joint_hpp_on_request_event(joint_request *req, std::int32_t event, const std::uint8_t *data, std::size_t len,
                                       void *user_data) noexcept {
    (void)req; // the box's Request holds it (or it was moved out, or answered)
    RequestEventsBox *box = static_cast<RequestEventsBox *>(static_cast<BoxBase *>(user_data));
    if (box->ended)
        return;
    if (box->registering) { // replayed by Request::on_events
        box->queued.emplace_back(static_cast<InputKind>(event), std::vector<std::uint8_t>(data, data + len));
        return;
    }
    deliver_request_event(box, static_cast<InputKind>(event), Bytes(data, len));
    if (box->running == 0 && box->ended)
        delete box;
}

inline void joint_hpp_free_request_events(void *user_data) noexcept {
    RequestEventsBox *box = static_cast<RequestEventsBox *>(static_cast<BoxBase *>(user_data));
    if (box->running > 0 || box->registering)
        box->ended = true;
    else
        delete box;
}

} // extern "C"
} // namespace detail

template <class E, class F>
Result<CallId> ConnectionRef::call(detail::CStr method, Bytes params, const CallOptions &opts, E &&on_event, F &&on_done) const {
    using ED = std::decay_t<E>;
    using FD = std::decay_t<F>;
    static_assert(std::is_same_v<ED, std::nullptr_t> || std::is_invocable_v<ED &, const CallEvent &>,
                  "joint: a call event callback is callable as void(const joint::CallEvent &) (or nullptr)");
    static_assert(std::is_same_v<FD, std::nullptr_t> || std::is_invocable_v<FD &, Result<Bytes>> || std::is_invocable_v<FD &, const Response &>,
                  "joint: a completion callback is callable as void(joint::Result<joint::Bytes>) or void(const joint::Response &) (or nullptr)");
    constexpr bool events = !std::is_same_v<ED, std::nullptr_t>;
    if (method.bad())
        return detail::embedded_nul();
    if (Result<void> o = opts.status(); !o)
        return o.error();
    // The event callback is a property of the C options: set it for this call only (the call
    // copies the options), on a temporary joint_call_opts if `opts` has none.
    CallOptions temporary;
    joint_call_opts *o = opts.raw();
    if (events && !o) {
        temporary.manual_credit(false);
        if (!temporary.ok())
            return temporary.status().error();
        o = temporary.raw();
    }
    detail::CallBox *box = new detail::CallBoxImpl<ED, FD>(std::forward<E>(on_event), std::forward<F>(on_done));
    box->ctx = ctx_;
    if (o)
        (void)joint_call_opts_set_event_cb(o, events ? &detail::joint_hpp_on_call_event : nullptr);
    CallId id = 0;
    Status st = joint_conn_call_opts(conn_, method.c_str(), params.data(), params.size(), o, &detail::joint_hpp_on_call_done,
                                     detail::to_user_data(box), &id);
    if (o && events)
        (void)joint_call_opts_set_event_cb(o, nullptr); // the options stay as they were
    if (st < 0) { // neither callable will run
        delete box;
        return detail::make_error(st, ctx_);
    }
    return id;
}

template <class F>
Result<void> Request::on_events(F &&fn) {
    using D = std::decay_t<F>;
    static_assert(std::is_invocable_v<D &, Request &, const RequestEvent &>,
                  "joint: an event callable is callable as void(joint::Request &, const joint::RequestEvent &)");
    if (!r_)
        return answered();
    if (detail::pool_thread())
        return Error(JOINT_E_STATE, "Request::on_events is for the loop thread (a pool handler pulls with next_input)");
    detail::RequestEventsBox *box = new detail::RequestEventsImpl<D>(std::forward<F>(fn));
    box->ctx = ctx_;
    joint_request *raw_req = r_;
    joint_ctx *ctx = ctx_;
    box->req = std::move(*this); // the box holds the request from now on
    box->registering = true;
    Status st = joint_request_set_event_cb(raw_req, &detail::joint_hpp_on_request_event, detail::to_user_data(box),
                                           &detail::joint_hpp_free_request_events);
    box->registering = false;
    if (st < 0) { // not taken: the request stays ours, the callable goes
        *this = std::move(box->req);
        delete box;
        if (st == JOINT_E_UNSUPPORTED)
            return Error(st, "not an extended call (the caller is a stock peer, or made a plain call)");
        return detail::make_error(st, ctx);
    }
    if (!box->queued.empty()) { // inputs that arrived before registration
        std::vector<std::pair<InputKind, std::vector<std::uint8_t>>> queued = std::move(box->queued);
        box->running++;
        for (auto &q : queued) {
            if (box->ended)
                break;
            detail::deliver_request_event(box, q.first, Bytes(q.second));
        }
        box->running--;
        if (box->ended)
            delete box;
    }
    return {};
}

template <class F>
Result<CallId> ConnectionRef::call(detail::CStr method, Bytes params, F &&on_done, std::int32_t timeout_ms) const {
    using D = std::decay_t<F>;
    static_assert(std::is_invocable_v<D &, Result<Bytes>> || std::is_invocable_v<D &, const Response &>,
                  "joint: a completion callback is callable as void(joint::Result<joint::Bytes>) or void(const joint::Response &)");
    if (method.bad())
        return detail::embedded_nul();
    detail::ResponseFn *box = detail::make_fn<void(const Response &)>(detail::ResponseAdapter<D>{std::forward<F>(on_done)}, ctx_);
    CallId id = 0;
    Status st = joint_conn_call(conn_, method.c_str(), params.data(), params.size(), timeout_ms, &detail::joint_hpp_on_response,
                                detail::to_user_data(box), &id);
    if (st < 0) { // the callback will never run
        delete box;
        return detail::make_error(st, ctx_);
    }
    return id;
}

// ---- Config and Context -------------------------------------------------------------------

/// Options for new contexts (joint_config). Context::create copies it.
class Config {
public:
    Config() = default;
    /// Takes ownership of `config` (freed with joint_config_free).
    explicit Config(joint_config *config) noexcept : c_(config) {}

    /// The defaults: 64 MiB messages, depth 128, 65536 calls in flight, 10 s connect
    /// timeout, a 256 MiB memory budget, a 1 MiB output high-water mark, 4096 connections,
    /// 30 s message timeout, no idle timeout, 5 s linger, listen backlog 1024, no logging.
    static Result<Config> create() {
        joint_config *c = nullptr;
        Status st = joint_config_new(&c);
        if (st < 0)
            return detail::make_error(st);
        return Config(c);
    }

    Result<void> set_max_message_size(std::size_t bytes) { return detail::check(joint_config_set_max_message_size(c_.get(), bytes)); }
    Result<void> set_max_depth(std::uint32_t depth) { return detail::check(joint_config_set_max_depth(c_.get(), depth)); }
    Result<void> set_max_inflight(std::uint32_t calls) { return detail::check(joint_config_set_max_inflight(c_.get(), calls)); }
    Result<void> set_connect_timeout_ms(std::int32_t ms) { return detail::check(joint_config_set_connect_timeout_ms(c_.get(), ms)); }
    /// Bytes all connections together may make the context hold (default 256 MiB; at least
    /// 1 MiB); see joint_config_set_memory_budget.
    Result<void> set_memory_budget(std::size_t bytes) { return detail::check(joint_config_set_memory_budget(c_.get(), bytes)); }
    /// Unsent output per connection above which its requests are not read (default 1 MiB).
    Result<void> set_output_high_water(std::size_t bytes) { return detail::check(joint_config_set_output_high_water(c_.get(), bytes)); }
    Result<void> set_max_connections(std::uint32_t n) { return detail::check(joint_config_set_max_connections(c_.get(), n)); }
    /// -1: no limit; otherwise milliseconds (> 0).
    Result<void> set_message_timeout_ms(std::int32_t ms) { return detail::check(joint_config_set_message_timeout_ms(c_.get(), ms)); }
    /// -1 (the default): none; otherwise milliseconds (> 0).
    Result<void> set_idle_timeout_ms(std::int32_t ms) { return detail::check(joint_config_set_idle_timeout_ms(c_.get(), ms)); }
    /// 0: cancel at once; otherwise milliseconds.
    Result<void> set_linger_ms(std::int32_t ms) { return detail::check(joint_config_set_linger_ms(c_.get(), ms)); }
    Result<void> set_listen_backlog(std::uint32_t n) { return detail::check(joint_config_set_listen_backlog(c_.get(), n)); }
    /// Offer the joint extension on connections the context opens and accept it on those it
    /// accepts (default true; stock peers are unaffected either way).
    Result<void> set_extension(bool enabled) { return detail::check(joint_config_set_extension(c_.get(), enabled)); }
    /// Items a peer may stream into (or out of) one call before it waits for credit (default
    /// 64; at least 1).
    Result<void> set_window(std::uint32_t items) { return detail::check(joint_config_set_window(c_.get(), items)); }
    /// Threads of the worker pool for Context::on_pool handlers (default 4; at least 1;
    /// started on first use).
    Result<void> set_workers(std::uint32_t threads) { return detail::check(joint_config_set_workers(c_.get(), threads)); }
    /// Send log lines up to `level` (JOINT_LOG_*) to `fn(std::int32_t level, std::string_view
    /// message)`, on the thread running process(); the message is valid during the call.
    /// Contexts created from this config share `fn`; it is destroyed with the last of them.
    template <class F>
    Result<void> on_log(std::int32_t level, F &&fn) {
        static_assert(std::is_invocable_v<std::decay_t<F> &, std::int32_t, std::string_view>,
                      "joint: a log callback is callable as void(std::int32_t level, std::string_view message)");
        detail::LogFn *box = detail::make_fn<void(std::int32_t, std::string_view)>(std::forward<F>(fn), nullptr);
        return detail::registered(joint_config_set_log_cb(c_.get(), level, &detail::joint_hpp_on_log, detail::to_user_data(box),
                                                          &detail::joint_hpp_free_box),
                                  box, nullptr);
    }
    /// Turn logging off.
    Result<void> on_log(std::nullptr_t) { return detail::check(joint_config_set_log_cb(c_.get(), JOINT_LOG_ERROR, nullptr, nullptr, nullptr)); }

    joint_config *raw() const noexcept { return c_.get(); }
    joint_config *release() noexcept { return c_.release(); }
    explicit operator bool() const noexcept { return c_ != nullptr; }

private:
    detail::Owned<joint_config, &joint_config_free> c_;
};

/// A context (joint_ctx): connections, listeners, handlers and timers driven through one
/// pollable fd. Destroying it completes pending calls with JOINT_E_CANCELLED, sends CLOSED
/// events for open connections, destroys every registered callable and closes every fd —
/// so it must not be destroyed from one of its own callbacks.
class Context {
public:
    Context() = default;
    /// Takes ownership of `ctx` (freed with joint_ctx_free).
    explicit Context(joint_ctx *ctx) : c_(ctx), life_(ctx ? std::make_shared<detail::CtxLife>() : nullptr) {}
    Context(Context &&o) noexcept = default;
    Context &operator=(Context &&o) noexcept {
        if (this != &o) {
            reset();
            c_ = std::move(o.c_);
            life_ = std::move(o.life_);
        }
        return *this;
    }
    ~Context() { reset(); }

    /// A context with the default configuration.
    static Result<Context> create() { return create_from(nullptr); }
    static Result<Context> create(const Config &config) {
        if (!config)
            return Error(JOINT_E_NULL, "empty joint::Config");
        return create_from(config.raw());
    }

    /// The fd to watch for readability (level-triggered); stable; never read or close it.
    int fd() const noexcept { return joint_ctx_fd(c_.get()); }
    /// Milliseconds until process() must run even if the fd stays quiet: -1 none, 0 now.
    /// Query it again after every process().
    std::int32_t timeout_ms() const noexcept { return joint_ctx_timeout_ms(c_.get()); }
    /// Run ready I/O, due timers and callbacks; never blocks.
    Result<void> process() { return detail::check(joint_ctx_process(c_.get()), c_.get()); }
    /// Wait for the fd or `timeout_ms` (-1: only the next timer), then process().
    Result<void> wait(std::int32_t timeout_ms = -1) { return detail::check(joint_ctx_wait(c_.get(), timeout_ms), c_.get()); }
    /// Make the fd readable so the loop runs process() soon. Any thread; async-signal-safe.
    Result<void> wakeup() const noexcept {
        Status st = joint_ctx_wakeup(c_.get());
        if (st < 0)
            return Error(st, std::string()); // no allocation of a message: signal-safe path
        return {};
    }

    /// Listen on `uri` (tcp://HOST:PORT — port 0 picks one —, unix:///path, udp://HOST:PORT);
    /// returns the real address, e.g. "tcp://127.0.0.1:41234". shutdown() closes listeners.
    Result<std::string> listen(detail::CStr uri) {
        if (uri.bad())
            return detail::embedded_nul();
        joint_listener *l = nullptr;
        Status st = joint_ctx_listen(c_.get(), uri.c_str(), &l);
        if (st < 0)
            return detail::make_error(st, c_.get());
        return std::string(joint_listener_uri(l));
    }
    /// Connect to `uri` without blocking (calls may be made at once). Later failures
    /// (refused, timeout) close the connection: its calls fail, on_connection gets CLOSED.
    Result<Connection> connect(detail::CStr uri) {
        if (uri.bad())
            return detail::embedded_nul();
        joint_conn *conn = nullptr;
        Status st = joint_ctx_connect(c_.get(), uri.c_str(), &conn);
        return owned(st, conn);
    }
    /// Start argv[0] (searched in PATH) and talk over its stdin/stdout (e.g. nvim --embed).
    Result<Connection> spawn(const std::vector<std::string> &argv) {
        std::vector<const char *> args;
        args.reserve(argv.size() + 1);
        for (const std::string &a : argv) {
            if (a.find('\0') != std::string::npos)
                return detail::embedded_nul();
            args.push_back(a.c_str());
        }
        args.push_back(nullptr);
        joint_conn *conn = nullptr;
        Status st = joint_ctx_spawn(c_.get(), args.data(), &conn);
        return owned(st, conn);
    }
    /// Talk over this process's stdin/stdout.
    Result<Connection> open_stdio() {
        joint_conn *conn = nullptr;
        Status st = joint_ctx_open_stdio(c_.get(), &conn);
        return owned(st, conn);
    }

    /// Serve `method` with `handler(joint::Request)` on every connection; replaces (and
    /// destroys) an earlier handler of that name. An exception escaping the handler while
    /// it still holds the request answers [JOINT_RPC_HANDLER_FAILED, what()].
    template <class F>
    Result<void> on(detail::CStr method, F &&handler) {
        static_assert(std::is_invocable_v<std::decay_t<F> &, Request>, "joint: a request handler is callable as void(joint::Request)");
        if (method.bad())
            return detail::embedded_nul();
        detail::RequestFn *box = detail::make_fn<void(Request)>(std::forward<F>(handler), c_.get());
        return detail::registered(joint_ctx_register(c_.get(), method.c_str(), &detail::joint_hpp_on_request,
                                                     detail::to_user_data(box), &detail::joint_hpp_free_box),
                                  box, c_.get());
    }
    /// Serve `method` with `handler(joint::Request)` on the worker pool (Config::set_workers
    /// threads) instead of the loop thread, for handlers that block or compute. The handler
    /// owns the request as usual and may answer, yield (waiting with wait_writable) and pull
    /// inputs with next_input — not on_events or conn(), which belong to the loop thread.
    /// It is called concurrently from the pool's threads, so it must be safe to call
    /// concurrently, and it is destroyed on whichever thread last uses it (the context's,
    /// after the workers stop, or a worker's when replaced while running): what it captures
    /// must be safe to destroy on any thread. Exceptions as for on().
    template <class F>
    Result<void> on_pool(detail::CStr method, F &&handler) {
        static_assert(std::is_invocable_v<std::decay_t<F> &, Request>, "joint: a request handler is callable as void(joint::Request)");
        if (method.bad())
            return detail::embedded_nul();
        detail::RequestFn *box = detail::make_fn<void(Request)>(std::forward<F>(handler), c_.get());
        return detail::registered(joint_ctx_register_pool(c_.get(), method.c_str(), &detail::joint_hpp_on_pool_request,
                                                          detail::to_user_data(box), &detail::joint_hpp_free_box),
                                  box, c_.get());
    }
    /// Remove the handler of `method` (JOINT_E_STATE if there is none).
    Result<void> off(detail::CStr method) {
        if (method.bad())
            return detail::embedded_nul();
        return detail::check(joint_ctx_unregister(c_.get(), method.c_str()), c_.get(), "no handler for that method");
    }
    /// Serve requests for methods without a handler with `handler(joint::Request)` (default:
    /// a JOINT_RPC_NO_METHOD error); Request::method() names the method called. Handlers
    /// registered with on()/on_pool() always win. Replaces (and destroys) an earlier
    /// fallback; on_fallback(nullptr) removes it, restoring the default. Runs on the loop
    /// thread; the request is owned and answered as in on(), and exceptions are as for on().
    template <class F>
    Result<void> on_fallback(F &&handler) {
        static_assert(std::is_invocable_v<std::decay_t<F> &, Request>, "joint: a request handler is callable as void(joint::Request)");
        detail::RequestFn *box = detail::make_fn<void(Request)>(std::forward<F>(handler), c_.get());
        return detail::registered(joint_ctx_set_fallback(c_.get(), &detail::joint_hpp_on_request, detail::to_user_data(box),
                                                         &detail::joint_hpp_free_box),
                                  box, c_.get());
    }
    Result<void> on_fallback(std::nullptr_t) { return detail::check(joint_ctx_set_fallback(c_.get(), nullptr, nullptr, nullptr), c_.get()); }
    /// Receive notifications from every connection: fn(ConnectionRef, std::string_view
    /// method, Bytes params) — params is the params object as sent (an array, or a map);
    /// method and params are valid during the call.
    template <class F>
    Result<void> on_notification(F &&fn) {
        static_assert(std::is_invocable_v<std::decay_t<F> &, ConnectionRef, std::string_view, Bytes>,
                      "joint: a notification callback is callable as void(joint::ConnectionRef, std::string_view, joint::Bytes)");
        detail::NotificationFn *box = detail::make_fn<void(ConnectionRef, std::string_view, Bytes)>(std::forward<F>(fn), c_.get());
        return detail::registered(joint_ctx_set_notification_cb(c_.get(), &detail::joint_hpp_on_notification,
                                                                detail::to_user_data(box), &detail::joint_hpp_free_box),
                                  box, c_.get());
    }
    Result<void> on_notification(std::nullptr_t) {
        return detail::check(joint_ctx_set_notification_cb(c_.get(), nullptr, nullptr, nullptr), c_.get());
    }
    /// Be told when connections open and close: fn(const ConnEvent &). After the CLOSED
    /// event of an accepted connection returns, its ConnectionRef is dangling.
    template <class F>
    Result<void> on_connection(F &&fn) {
        static_assert(std::is_invocable_v<std::decay_t<F> &, const ConnEvent &>,
                      "joint: a connection callback is callable as void(const joint::ConnEvent &)");
        detail::ConnFn *box = detail::make_fn<void(const ConnEvent &)>(std::forward<F>(fn), c_.get());
        return detail::registered(
            joint_ctx_set_conn_cb(c_.get(), &detail::joint_hpp_on_conn, detail::to_user_data(box), &detail::joint_hpp_free_box), box,
            c_.get());
    }
    Result<void> on_connection(std::nullptr_t) { return detail::check(joint_ctx_set_conn_cb(c_.get(), nullptr, nullptr, nullptr), c_.get()); }

    /// Run fn() once, inside process(), after `delay_ms` (0: on the next process). The
    /// callable is destroyed right after it runs, or when the timer is cancelled or the
    /// context destroyed first (so it may own a Request, for a deferred reply).
    template <class F>
    Result<TimerId> after(std::uint32_t delay_ms, F &&fn) {
        static_assert(std::is_invocable_v<std::decay_t<F> &>, "joint: a timer callback is callable as void()");
        detail::TimerFn *box = detail::make_fn<void()>(std::forward<F>(fn), c_.get());
        TimerId id = 0;
        Status st = joint_ctx_add_timer(c_.get(), delay_ms, &detail::joint_hpp_on_timer, detail::to_user_data(box),
                                        &detail::joint_hpp_free_box, &id);
        Result<void> r = detail::registered(st, box, c_.get());
        if (!r)
            return r.error();
        return id;
    }
    /// Cancel a timer that has not fired (its callable is destroyed now).
    Result<void> cancel_timer(TimerId id) {
        return detail::check(joint_ctx_cancel_timer(c_.get(), id), c_.get(), "the timer already fired or was cancelled");
    }

    /// Begin a graceful shutdown: listeners close, new requests get JOINT_RPC_SHUTTING_DOWN.
    /// Keep processing until unanswered() is 0, then destroy the context.
    Result<void> shutdown() { return detail::check(joint_ctx_shutdown(c_.get()), c_.get()); }
    /// Requests received and not answered yet.
    std::size_t unanswered() const noexcept { return joint_ctx_unanswered(c_.get()); }
    /// The detail of the last error on the context; valid until the next call on it.
    std::string_view last_error() const noexcept { return joint_ctx_last_error(c_.get()); }

    joint_ctx *raw() const noexcept { return c_.get(); }
    /// Give up ownership: the caller frees it with joint_ctx_free — after destroying (or
    /// releasing) the Connections and Streams made from it, which no longer track its life.
    joint_ctx *release() noexcept {
        life_.reset();
        return c_.release();
    }
    explicit operator bool() const noexcept { return c_ != nullptr; }

private:
    static Result<Context> create_from(const joint_config *config) {
        joint_ctx *ctx = nullptr;
        Status st = joint_ctx_new(config, &ctx);
        if (st < 0)
            return detail::make_error(st);
        return Context(ctx);
    }
    Result<Connection> owned(Status st, joint_conn *conn) {
        if (st < 0)
            return detail::make_error(st, c_.get());
        return Connection(conn, c_.get(), life_);
    }
    void reset() noexcept {
        if (life_) {
            life_->alive = false; // Connections and Streams destroyed from here on leave the freeing to us
            for (joint_stream *s : life_->streams) // before the context, as joint_stream_free requires
                joint_stream_free(s);
            life_->streams.clear();
        }
        joint_ctx_free(c_.release());
        life_.reset();
    }
    detail::Owned<joint_ctx, &joint_ctx_free> c_;
    std::shared_ptr<detail::CtxLife> life_;
};

} // namespace joint

#endif // JOINT_HPP
