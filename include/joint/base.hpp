// joint/base.hpp — what every part of joint.hpp uses: build checks (C++17, exceptions),
// status codes and ids, Bytes, Error, Result, C string arguments and the exception hook.
// Part of joint.hpp.
#ifndef JOINT_BASE_HPP
#define JOINT_BASE_HPP

#include <joint.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
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

/// The library's version, e.g. "0.2.0" (JOINT_VERSION_STRING is the header's).
inline std::string_view version() noexcept { return joint_version(); }
/// The static description of a status code ("unknown status" for unknown codes).
inline std::string_view status_str(Status status) noexcept { return joint_status_str(status); }

// ---- Bytes: a borrowed view of bytes ------------------------------------------------------

/// A non-owning view of bytes (MessagePack data, bin values): pointer and length. It never
/// owns; whoever made it says how long the bytes live (see the file comment of joint.hpp).
class Bytes {
public:
    /// The element type (for generic code).
    using value_type = std::uint8_t;
    /// The size type (for generic code).
    using size_type = std::size_t;
    /// An iterator over the bytes.
    using const_iterator = const std::uint8_t *;

    constexpr Bytes() noexcept = default;
    /// Views `size` bytes at `data`.
    constexpr Bytes(const std::uint8_t *data, std::size_t size) noexcept : data_(data), size_(size) {}
    /// Views `size` bytes at `data`.
    Bytes(const void *data, std::size_t size) noexcept : data_(static_cast<const std::uint8_t *>(data)), size_(size) {}
    /// Views the vector's bytes (valid while the vector lives unchanged).
    Bytes(const std::vector<std::uint8_t> &v) noexcept : data_(v.data()), size_(v.size()) {}
    template <std::size_t N>
    /// Views the array's bytes (valid while the array lives unchanged).
    Bytes(const std::array<std::uint8_t, N> &a) noexcept : data_(a.data()), size_(N) {}
    /// Views the bytes of a string (explicit: a string is not MessagePack).
    explicit Bytes(std::string_view s) noexcept : data_(reinterpret_cast<const std::uint8_t *>(s.data())), size_(s.size()) {}

    /// The first byte (may be NULL when empty).
    constexpr const std::uint8_t *data() const noexcept { return data_; }
    /// The number of bytes.
    constexpr std::size_t size() const noexcept { return size_; }
    /// No bytes.
    constexpr bool empty() const noexcept { return size_ == 0; }
    /// The first byte.
    constexpr const_iterator begin() const noexcept { return data_; }
    /// One past the last byte.
    constexpr const_iterator end() const noexcept { return data_ + size_; }
    /// Byte `i` (unchecked; `i` < size()).
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

    /// The same bytes (contents, not addresses).
    friend bool operator==(Bytes a, Bytes b) noexcept {
        return a.size_ == b.size_ && (a.size_ == 0 || std::memcmp(a.data_, b.data_, a.size_) == 0);
    }
    /// Different bytes.
    friend bool operator!=(Bytes a, Bytes b) noexcept { return !(a == b); }

private:
    const std::uint8_t *data_ = nullptr;
    std::size_t size_ = 0;
};

/// The process on the other end of a Unix socket, as the kernel recorded it (SO_PEERCRED).
struct PeerCredentials {
    /// The peer's process id.
    std::int32_t pid = 0;
    /// The peer's user id.
    std::uint32_t uid = 0;
    /// The peer's group id.
    std::uint32_t gid = 0;
};

// ---- Error and Result ---------------------------------------------------------------------

/// Why something failed: a status code (JOINT_E_*) and a message (the C API's detail from
/// joint_ctx_last_error when it has one, else joint_status_str). When the peer answered a
/// call with an error object (JOINT_E_REMOTE), the raw object and the message found in it.
class Error {
public:
    Error() = default;
    /// An error with status `code` (negative), a message and, for JOINT_E_REMOTE, the peer's raw error object.
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

    /// The peer answered with an error object (JOINT_E_REMOTE): see remote_object().
    bool is_remote() const noexcept { return code_ == JOINT_E_REMOTE; }
    /// The call timed out (JOINT_E_TIMEOUT).
    bool is_timeout() const noexcept { return code_ == JOINT_E_TIMEOUT; }
    /// The call was cancelled (JOINT_E_CANCELLED).
    bool is_cancelled() const noexcept { return code_ == JOINT_E_CANCELLED; }
    /// The connection closed (JOINT_E_CLOSED).
    bool is_closed() const noexcept { return code_ == JOINT_E_CLOSED; }
    /// A TLS handshake failed (the message names why: unknown issuer, name mismatch, ...).
    bool is_tls() const noexcept { return code_ == JOINT_E_TLS; }
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
    /// The type of the value.
    using value_type = T;

    /// A success holding a copy of `value`.
    Result(const T &value) : v_(std::in_place_index<0>, value) {}
    /// A success holding `value`.
    Result(T &&value) : v_(std::in_place_index<0>, std::move(value)) {}
    /// A failure.
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

    /// A success: value() may be called.
    bool ok() const noexcept { return v_.index() == 0; }
    /// Same as ok().
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
    /// The value; only when ok() (otherwise prints the error and aborts).
    const T &value() const & { return *checked(); }
    /// The value, moved out; only when ok() (otherwise prints the error and aborts).
    T &&value() && { return std::move(*checked()); }
    /// Same as value().
    T &operator*() & { return value(); }
    /// Same as value().
    const T &operator*() const & { return value(); }
    /// Same as value(), moved out.
    T &&operator*() && { return std::move(*checked()); }
    /// The value's members; only when ok().
    T *operator->() { return checked(); }
    /// The value's members; only when ok().
    const T *operator->() const { return checked(); }

    /// The value, or `fallback` on error.
    template <class U>
    T value_or(U &&fallback) const & {
        if (const T *v = std::get_if<0>(&v_))
            return *v;
        return static_cast<T>(std::forward<U>(fallback));
    }
    template <class U>
    /// The value moved out, or `fallback` on error.
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
    /// No value.
    using value_type = void;

    Result() = default;
    /// A failure.
    Result(Error error) : error_(std::move(error)) {}

    /// A success.
    bool ok() const noexcept { return !error_.has_value(); }
    /// Same as ok().
    explicit operator bool() const noexcept { return ok(); }
    /// The error; only when !ok().
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

} // namespace joint

#endif // JOINT_BASE_HPP
