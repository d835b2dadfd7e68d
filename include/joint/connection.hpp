// joint/connection.hpp — connections: ConnectionRef (not owned), Connection (owned), and
// what their calls deliver (Response, CallEvent, ConnEvent). Part of joint.hpp.
#ifndef JOINT_CONNECTION_HPP
#define JOINT_CONNECTION_HPP

#include <joint/base.hpp>
#include <joint/detail/connection_ops.hpp>
#include <joint/detail/ctx_life.hpp>
#include <joint/msgpack.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace joint {

/// A connection that is not owned: one accepted by a listener (valid until its CLOSED
/// event returns), or one passed to a callback (valid during the callback), or a view of a
/// Connection. Cheap to copy; empty when raw() is NULL. Its methods: detail::ConnectionOps.
class ConnectionRef : public detail::ConnectionOps<ConnectionRef> {
public:
    ConnectionRef() = default;
    /// `ctx` (optional) is the connection's context, used for error details.
    explicit ConnectionRef(joint_conn *conn, joint_ctx *ctx = nullptr) noexcept : conn_(conn), ctx_(ctx) {}

    /// The C connection (not owned); NULL if empty.
    joint_conn *raw() const noexcept { return conn_; }
    /// Not empty.
    explicit operator bool() const noexcept { return conn_ != nullptr; }

    /// Same connection.
    friend bool operator==(ConnectionRef a, ConnectionRef b) noexcept { return a.conn_ == b.conn_; }
    /// Different connections.
    friend bool operator!=(ConnectionRef a, ConnectionRef b) noexcept { return a.conn_ != b.conn_; }

private:
    friend class detail::ConnectionOps<ConnectionRef>;
    joint_conn *conn_handle() const noexcept { return conn_; }
    joint_ctx *ctx_handle() const noexcept { return ctx_; }
    bool ctx_gone() const noexcept { return false; } // not tracked: valid while the context lives
    std::shared_ptr<detail::CtxLife> stream_life() const noexcept { return nullptr; }

    joint_conn *conn_ = nullptr;
    joint_ctx *ctx_ = nullptr;
};

/// An owned connection (Context::connect, spawn, open_stdio): destroying it closes it (its
/// pending calls complete with JOINT_E_CANCELLED on the next process; no CLOSED event) and
/// frees it. It stays valid after the peer goes away (calls then fail with
/// JOINT_E_CLOSED). If it outlives its Context it becomes inert (calls fail with
/// JOINT_E_STATE, the destructor does nothing): the context freed it. Its methods:
/// detail::ConnectionOps, as for ConnectionRef.
class Connection : public detail::ConnectionOps<Connection> {
public:
    Connection() = default;
    /// Takes ownership of `conn`, a connection of `ctx`. `life` is the context's liveness
    /// token (from Context); without it the Connection must not be used after the context is
    /// destroyed (destroying it is always fine).
    Connection(joint_conn *conn, joint_ctx *ctx, std::shared_ptr<detail::CtxLife> life = nullptr) noexcept
        : c_(conn, Free{std::move(life)}), ctx_(ctx) {}

    /// A non-owning view (for code that takes ConnectionRef).
    ConnectionRef ref() const noexcept { return ConnectionRef(ctx_gone() ? nullptr : c_.get(), ctx_); }
    /// Same as ref().
    operator ConnectionRef() const noexcept { return ref(); }

    /// The C connection (still owned by this object); NULL if empty.
    joint_conn *raw() const noexcept { return c_.get(); }
    /// Give up ownership: the caller frees it with joint_conn_free (before or after the
    /// context).
    joint_conn *release() noexcept { return c_.release(); }
    /// Holds a connection.
    explicit operator bool() const noexcept { return c_ != nullptr; }

private:
    friend class detail::ConnectionOps<Connection>;
    struct Free {
        std::shared_ptr<detail::CtxLife> life;
        void operator()(joint_conn *c) const noexcept { joint_conn_free(c); } // also after the context
    };
    joint_conn *conn_handle() const noexcept { return c_.get(); }
    joint_ctx *ctx_handle() const noexcept { return ctx_; }
    bool ctx_gone() const noexcept {
        const auto &life = c_.get_deleter().life;
        return life && !life->alive;
    }
    std::shared_ptr<detail::CtxLife> stream_life() const noexcept { return c_.get_deleter().life; }

    std::unique_ptr<joint_conn, Free> c_;
    joint_ctx *ctx_ = nullptr;
};

/// The outcome of a call, borrowed by a completion callback until it returns.
class Response {
public:
    /// Wraps the C response of a completion callback (borrowed; used by the wrapper's callbacks).
    explicit Response(const joint_response *resp, joint_conn *conn, joint_ctx *ctx) noexcept : r_(resp), conn_(conn), ctx_(ctx) {}

    /// JOINT_OK, or why the call failed (JOINT_E_REMOTE, JOINT_E_TIMEOUT, ...).
    Status status() const noexcept { return joint_response_status(r_); }
    /// The call succeeded: result() is its result.
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
    /// The id of the call (as returned when it was made).
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

    /// The C response (borrowed until the callback returns).
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
    /// The connection.
    ConnectionRef conn;
    /// JOINT_CONN_OPEN, JOINT_CONN_CLOSED, or another JOINT_CONN_* event.
    std::int32_t event = 0;
    /// JOINT_OK for OPEN; for CLOSED, why it closed.
    Status status = JOINT_OK;
    /// For CLOSED: a description of why (borrowed during the callback).
    std::string_view reason;

    /// The connection opened (JOINT_CONN_OPEN).
    bool opened() const noexcept { return event == JOINT_CONN_OPEN; }
    /// The connection closed (JOINT_CONN_CLOSED).
    bool closed() const noexcept { return event == JOINT_CONN_CLOSED; }
};

/// Something that happened to one of our calls before it completed: an item the callee
/// streamed (Item: `data`, borrowed until the callback returns) or send credit (Writable:
/// send() may be tried again). Borrowed during the callback.
struct CallEvent {
    /// An item the callee streamed, or send credit.
    enum class Kind : std::int32_t { Item = JOINT_CALL_ITEM, Writable = JOINT_CALL_WRITABLE };
    /// What happened.
    Kind kind = Kind::Item;
    /// For Item: the item, as MessagePack (borrowed until the callback returns).
    Bytes data;
    /// The id of the call.
    CallId call_id = 0;
    /// The connection the call was made on (valid during the callback).
    ConnectionRef conn;

    /// An item the callee streamed.
    bool is_item() const noexcept { return kind == Kind::Item; }
    /// Send credit: send() may be tried again.
    bool is_writable() const noexcept { return kind == Kind::Writable; }
    /// The item unpacked as T.
    template <class T>
    Result<T> as() const {
        return unpack<T>(data);
    }
};

} // namespace joint

// The callables' boxes need the classes above; they also define ConnectionOps' calls that
// take callables.
#include <joint/detail/call_box.hpp>

#endif // JOINT_CONNECTION_HPP
