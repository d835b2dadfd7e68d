// joint/msgpack.hpp — MessagePack values: Buffer (owned bytes), Raw, Ext, Writer, Reader,
// Codec<T> and the built-in codecs (with the msgpack-cxx adapter under
// JOINT_WITH_MSGPACK_CXX), pack and unpack. Part of joint.hpp.
#ifndef JOINT_MSGPACK_HPP
#define JOINT_MSGPACK_HPP

#include <joint/base.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

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

namespace detail {
template <class T>
struct dependent_false : std::false_type {};
} // namespace detail

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
    /// Same as bytes().
    operator Bytes() const noexcept { return bytes(); }
    /// The first byte (NULL when empty).
    const std::uint8_t *data() const noexcept { return bytes().data(); }
    /// The number of bytes.
    std::size_t size() const noexcept { return bytes().size(); }
    /// No bytes.
    bool empty() const noexcept { return bytes().empty(); }
    /// A copy of the bytes.
    std::vector<std::uint8_t> to_vector() const { return bytes().to_vector(); }
    /// Unpack the bytes (one MessagePack value) as T; see joint::unpack.
    template <class T>
    Result<T> as() const;

    /// The C buffer (still owned by this object); NULL if empty.
    joint_buf *raw() const noexcept { return b_.get(); }
    /// Give up ownership: the caller frees it with joint_buf_free.
    joint_buf *release() noexcept { return b_.release(); }
    /// Holds a buffer.
    explicit operator bool() const noexcept { return b_ != nullptr; }

private:
    detail::Owned<joint_buf, &joint_buf_free> b_;
};

// ---- MessagePack: Writer, Reader, pack, unpack --------------------------------------------

/// Pre-encoded MessagePack (one value), written as is / read without decoding. Borrowed.
struct Raw {
    /// One encoded MessagePack value.
    Bytes bytes;
};

/// A MessagePack ext value: an application type and its data.
struct Ext {
    /// The application's ext type (0 to 127; negative types are reserved by MessagePack).
    std::int8_t type = 0;
    /// The ext data.
    std::vector<std::uint8_t> data;
    /// Same type and data.
    friend bool operator==(const Ext &a, const Ext &b) { return a.type == b.type && a.data == b.data; }
    /// Different type or data.
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

    /// A new, empty writer.
    static Result<Writer> create() {
        joint_writer *w = nullptr;
        Status st = joint_writer_new(&w);
        if (st < 0)
            return detail::make_error(st);
        return Writer(w);
    }

    /// Write nil.
    Writer &write_nil() { return ok() ? step(joint_write_nil(w_.get())) : *this; }
    /// Write a boolean.
    Writer &write_bool(bool v) { return ok() ? step(joint_write_bool(w_.get(), v)) : *this; }
    /// Write a signed integer (in the smallest encoding that holds it).
    Writer &write_int(std::int64_t v) { return ok() ? step(joint_write_int(w_.get(), v)) : *this; }
    /// Write an unsigned integer (in the smallest encoding that holds it).
    Writer &write_uint(std::uint64_t v) { return ok() ? step(joint_write_uint(w_.get(), v)) : *this; }
    /// Write a float 64.
    Writer &write_double(double v) { return ok() ? step(joint_write_double(w_.get(), v)) : *this; }
    /// Write a float 32.
    Writer &write_float(float v) { return ok() ? step(joint_write_float(w_.get(), v)) : *this; }
    /// Write a string (UTF-8 is not checked).
    Writer &write_str(std::string_view s) {
        if (s.size() > 0xffffffffu)
            return fail(JOINT_E_INVAL, "string longer than 2^32-1 bytes");
        return ok() ? step(joint_write_str(w_.get(), reinterpret_cast<const std::uint8_t *>(s.data()), s.size())) : *this;
    }
    /// Write a bin value.
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
    /// Write an ext value of application type `type`.
    Writer &write_ext(std::int8_t type, Bytes data) {
        if (data.size() > 0xffffffffu)
            return fail(JOINT_E_INVAL, "ext longer than 2^32-1 bytes");
        return ok() ? step(joint_write_ext(w_.get(), type, data.data(), data.size())) : *this;
    }
    /// Bytes that already are encoded MessagePack (not checked).
    Writer &write_raw(Bytes encoded) { return ok() ? step(joint_write_raw(w_.get(), encoded.data(), encoded.size())) : *this; }
    /// Any supported value (see the file comment of joint.hpp), containers recursively.
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
    /// No write failed so far.
    bool ok() const noexcept { return status_ == JOINT_OK; }
    /// The first failure recorded, or success.
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
    /// A copy of the bytes written so far.
    std::vector<std::uint8_t> to_vector() const { return data().to_vector(); }
    /// Empty the writer (keeping its memory) and clear a recorded failure.
    void reset() noexcept {
        (void)joint_writer_reset(w_.get());
        status_ = JOINT_OK;
        message_.clear();
    }

    /// The C writer (still owned by this object); NULL if empty.
    joint_writer *raw() const noexcept { return w_.get(); }
    /// Give up ownership: the caller frees it with joint_writer_free.
    joint_writer *release() noexcept { return w_.release(); }
    /// Holds a writer.
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
    /// Everything has been read.
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
    /// Read an array header; `count` is its number of elements (read them next).
    bool read_array(std::uint32_t &count) { return step(joint_read_array(r_.get(), &count), "array"); }
    /// Read a map header; `count` is its number of key/value pairs (read them next).
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
    /// No read failed so far (see error()).
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

    /// The C reader (still owned by this object); NULL if empty.
    joint_reader *raw() const noexcept { return r_.get(); }
    /// Give up ownership: the caller frees it with joint_reader_free.
    joint_reader *release() noexcept { return r_.release(); }
    /// Holds a reader.
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

} // namespace joint

#endif // JOINT_MSGPACK_HPP
