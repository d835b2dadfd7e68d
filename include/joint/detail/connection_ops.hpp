// joint/detail/connection_ops.hpp — the connection methods, written once for Connection and
// ConnectionRef (detail::ConnectionOps, a CRTP base). Part of joint.hpp.
#ifndef JOINT_DETAIL_CONNECTION_OPS_HPP
#define JOINT_DETAIL_CONNECTION_OPS_HPP

#include <joint/base.hpp>
#include <joint/msgpack.hpp>
#include <joint/streaming.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace joint {
namespace detail {

/// The methods of a connection. Derived supplies, as private members (this base is its
/// friend): conn_handle() and ctx_handle(), the C handles; ctx_gone(), whether the context
/// has been destroyed (only an owned Connection can outlive it: every call then fails with
/// JOINT_E_STATE instead of touching the freed handle); stream_life(), the context's
/// liveness token given to the Streams it makes (null for a ConnectionRef, whose Streams
/// must not outlive the context). The calls taking callables are defined in
/// joint/detail/call_box.hpp, next to the boxes they create.
template <class Derived>
class ConnectionOps {
public:
    /// Whether new calls can be made (connecting or open).
    bool is_open() const noexcept { return joint_conn_is_open(live()); }

    /// Call `method` with `params` (one encoded array, e.g. pack(...); empty sends []).
    /// `on_done` runs exactly once, inside Context::process (or the Context's destructor),
    /// as `void(joint::Result<joint::Bytes>)` or `void(const joint::Response &)`: with the
    /// result, the peer's error (JOINT_E_REMOTE), JOINT_E_TIMEOUT, JOINT_E_CLOSED,
    /// JOINT_E_CANCELLED, ... The result bytes are valid until it returns. If call() returns
    /// an error, `on_done` never runs (and is destroyed). timeout_ms > 0 limits the call.
    template <class F>
    Result<CallId> call(CStr method, Bytes params, F &&on_done, std::int32_t timeout_ms = no_timeout) const;
    /// Call without a callback: the outcome is discarded.
    Result<CallId> call(CStr method, Bytes params, std::nullptr_t, std::int32_t timeout_ms = no_timeout) const {
        if (Result<void> u = callable(method); !u)
            return u.error();
        CallId id = 0;
        Status st = joint_conn_call(conn(), method.c_str(), params.data(), params.size(), timeout_ms, nullptr, nullptr, &id);
        if (st < 0)
            return make_error(st, ctx());
        return id;
    }

    /// Call and wait, running the context's callbacks meanwhile. On JOINT_E_REMOTE the Error
    /// carries the peer's error object. From a callback: JOINT_E_RECURSIVE.
    Result<Buffer> call_sync(CStr method, Bytes params = {}, std::int32_t timeout_ms = no_timeout) const {
        if (Result<void> u = callable(method); !u)
            return u.error();
        joint_buf *result = nullptr;
        joint_buf *error = nullptr;
        Status st = joint_conn_call_sync(conn(), method.c_str(), params.data(), params.size(), timeout_ms, &result, &error);
        if (st >= 0)
            return Buffer(result);
        if (st == JOINT_E_REMOTE && error)
            return remote_error(error);
        return make_error(st, ctx());
    }

    // -- The joint extension (see the file comment of joint.hpp and docs/PROTOCOL.md) --

    /// Call with options (timeout/deadline, kwargs, streaming): to a joint peer an extended
    /// call, to a stock peer an ordinary request. `on_event(const joint::CallEvent &)` gets
    /// the call's items (Item; credit for each is granted when it returns, unless
    /// manual_credit) and send credit (Writable), inside process(); `on_done` completes the
    /// call exactly once, after the last event, as for call(). Either may be nullptr. Both
    /// live in one box, destroyed after the completion; if call() returns an error neither
    /// runs. If `opts` recorded a failure, that is the error.
    template <class E, class F>
    Result<CallId> call(CStr method, Bytes params, const CallOptions &opts, E &&on_event, F &&on_done) const;
    /// As above, without events (kwargs, a deadline).
    template <class F>
    Result<CallId> call(CStr method, Bytes params, const CallOptions &opts, F &&on_done) const {
        if (Result<void> u = callable(method); !u) // checked here: c_str() below drops what CStr knows
            return u.error();
        return call(method.c_str(), params, opts, nullptr, std::forward<F>(on_done));
    }
    /// Call and pull the items with Stream::next (blocking; see Stream). The options' manual
    /// credit is ignored. A Stream from an owned Connection may outlive the Context; one
    /// from a ConnectionRef must be destroyed before it.
    Result<Stream> call_stream(CStr method, Bytes params = {}, const CallOptions &opts = CallOptions()) const {
        if (Result<void> u = callable(method); !u)
            return u.error();
        if (Result<void> o = opts.status(); !o)
            return o.error();
        joint_stream *stream = nullptr;
        Status st = joint_conn_call_stream(conn(), method.c_str(), params.data(), params.size(), opts.raw(), &stream);
        if (st < 0)
            return make_error(st, ctx());
        return Stream(stream, ctx(), self().stream_life());
    }
    /// Send one value (one encoded MessagePack object, copied) into our running call `id`,
    /// made with client_stream(). WouldBlock: no credit yet — try again after the call's
    /// Writable event. JOINT_E_UNSUPPORTED: the peer is a stock peer (or the call takes no
    /// input, or its input has ended); JOINT_E_STATE: the call is not running.
    Result<SendStatus> send(CallId id, Bytes item) const {
        if (Result<void> u = usable(); !u)
            return u.error();
        Status st = joint_conn_send(conn(), id, item.data(), item.size());
        if (st < 0)
            return make_error(st, ctx());
        return st == JOINT_WOULD_BLOCK ? SendStatus::WouldBlock : SendStatus::Sent;
    }
    /// Send `value`, packed (see pack_value).
    template <class T>
    Result<SendStatus> send_value(CallId id, const T &value) const {
        if (Result<void> u = usable(); !u)
            return u.error();
        Result<std::vector<std::uint8_t>> v = try_pack_value(value);
        if (!v)
            return v.error();
        return send(id, *v);
    }
    /// No more values will be sent into `id`.
    Result<void> end_input(CallId id) const {
        if (Result<void> u = usable(); !u)
            return u;
        return check(joint_conn_end_input(conn(), id), ctx());
    }
    /// Throw an error object (one encoded MessagePack value) into the running call `id`: its
    /// handler gets it (InputKind::Throw) and decides how the call ends.
    Result<void> throw_error(CallId id, Bytes error_object) const {
        if (Result<void> u = usable(); !u)
            return u;
        return check(joint_conn_throw(conn(), id, error_object.data(), error_object.size()), ctx());
    }
    /// Throw joint's error object [code, message].
    Result<void> throw_error(CallId id, std::int64_t code, std::string_view message) const {
        if (Result<void> u = usable(); !u)
            return u;
        Result<std::vector<std::uint8_t>> e = try_pack_value(std::make_tuple(code, message));
        if (!e)
            return e.error();
        return throw_error(id, *e);
    }
    /// With manual credit: `items` more may be streamed to us on `id`.
    Result<void> grant(CallId id, std::uint32_t items) const {
        if (Result<void> u = usable(); !u)
            return u;
        return check(joint_conn_grant(conn(), id, items), ctx());
    }
    /// Where the joint extension stands on this connection (Off for an empty one).
    Extension extension() const noexcept {
        std::int32_t e = joint_conn_extension(live());
        return e < 0 ? Extension::Off : static_cast<Extension>(e);
    }

    // -- TLS (connections made by connect_tls or accepted by listen_tls) --
    /// "TLSv1.3" or "TLSv1.2" once the handshake is done; empty before and for other transports.
    std::string_view tls_version() const noexcept {
        const char *v = joint_conn_tls_version(live());
        return v ? std::string_view(v) : std::string_view();
    }
    /// The certificate the peer presented and the handshake verified (DER); empty if none.
    /// Valid while the connection is (for an accepted one: until its CLOSED event returns).
    Bytes peer_certificate() const noexcept {
        const std::uint8_t *der = nullptr;
        std::size_t len = 0;
        if (joint_conn_peer_certificate(live(), &der, &len) != JOINT_OK)
            return Bytes();
        return Bytes(der, len);
    }
    /// The subject of that certificate, e.g. "O=example, CN=alice"; empty if none.
    std::string_view peer_subject() const noexcept {
        const char *s = joint_conn_peer_subject(live());
        return s ? std::string_view(s) : std::string_view();
    }
    /// Its SHA-256 fingerprint, if there is one.
    std::optional<std::array<std::uint8_t, 32>> peer_sha256() const noexcept {
        std::array<std::uint8_t, 32> digest{};
        if (joint_conn_peer_sha256(live(), digest.data()) != JOINT_OK)
            return std::nullopt;
        return digest;
    }

    /// The peer's address as a URI ("tcp://IP:PORT", "tls://…", "unix:" for an unnamed Unix
    /// peer); empty for pipes, before connecting and once closed.
    std::string_view peer_address() const noexcept {
        const char *a = joint_conn_peer_address(live());
        return a ? std::string_view(a) : std::string_view();
    }
    /// On a Unix socket, the process on the other end (SO_PEERCRED).
    std::optional<PeerCredentials> peer_credentials() const noexcept {
        PeerCredentials c;
        if (joint_conn_peer_credentials(live(), &c.pid, &c.uid, &c.gid) != JOINT_OK)
            return std::nullopt;
        return c;
    }

    /// Send a notification (no response).
    Result<void> notify(CStr method, Bytes params = {}) const {
        if (Result<void> u = callable(method); !u)
            return u;
        return check(joint_conn_notify(conn(), method.c_str(), params.data(), params.size()), ctx());
    }
    /// Cancel a pending call: it completes with JOINT_E_CANCELLED during the next process.
    Result<void> cancel(CallId id) const {
        if (Result<void> u = usable(); !u)
            return u;
        return check(joint_conn_cancel(conn(), id), ctx(), "the call is not pending");
    }
    /// Close: pending calls complete with JOINT_E_CANCELLED, then the CLOSED event follows.
    Result<void> close() const {
        if (Result<void> u = usable(); !u)
            return u;
        return check(joint_conn_close(conn()), ctx());
    }

    /// Application data attached to the connection (joint never touches it).
    void set_user_data(void *data) const noexcept { (void)joint_conn_set_user_data(live(), data); }
    void *user_data() const noexcept { return joint_conn_user_data(live()); }

protected:
    // Only as a base: no ConnectionOps objects of their own.
    ConnectionOps() = default;
    ~ConnectionOps() = default;

private:
    const Derived &self() const noexcept { return static_cast<const Derived &>(*this); }
    joint_conn *conn() const noexcept { return self().conn_handle(); }
    joint_ctx *ctx() const noexcept { return self().ctx_handle(); }
    /// The handle, or NULL once the context is gone (the C functions then do nothing).
    joint_conn *live() const noexcept { return self().ctx_gone() ? nullptr : conn(); }
    Result<void> usable() const {
        if (self().ctx_gone())
            return Error(JOINT_E_STATE, "the connection's context was destroyed");
        return {};
    }
    Result<void> callable(const CStr &method) const {
        if (Result<void> u = usable(); !u)
            return u;
        if (method.bad())
            return embedded_nul();
        return {};
    }
};

} // namespace detail
} // namespace joint

#endif // JOINT_DETAIL_CONNECTION_OPS_HPP
