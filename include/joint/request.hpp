// joint/request.hpp — Request, a peer's request owned until answered. Part of joint.hpp.
#ifndef JOINT_REQUEST_HPP
#define JOINT_REQUEST_HPP

#include <joint/base.hpp>
#include <joint/connection.hpp>
#include <joint/detail/handler_frame.hpp>
#include <joint/msgpack.hpp>
#include <joint/streaming.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace joint {

/// A request from a peer, owned: answer it exactly once with reply / reply_value /
/// reply_error — in the handler, later, or from any thread. Destroying it unanswered sends
/// [JOINT_RPC_NOT_ANSWERED, ...]. Every reply consumes it (also on failure); the Request is
/// then empty and further replies return JOINT_E_STATE.
class Request {
public:
    Request() = default;
    /// Takes ownership of `req`; `ctx` (optional) is its context, for conn().
    explicit Request(joint_request *req, joint_ctx *ctx = nullptr) noexcept : r_(req), ctx_(ctx) {}
    /// Moves the request (and the duty to answer it) out of `o`.
    Request(Request &&o) noexcept : r_(std::exchange(o.r_, nullptr)), ctx_(o.ctx_) {}
    /// Moves the request out of `o`; a request this one held is answered as on destruction.
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
    /// The request's message id on the wire.
    std::uint32_t msgid() const noexcept { return joint_request_msgid(r_); }
    /// The connection it came on (to call the peer back); empty if it has closed. Only on the
    /// loop thread, while the context lives (empty on a worker-pool thread).
    ConnectionRef conn() const noexcept {
        if (detail::pool_thread())
            return ConnectionRef();
        return ConnectionRef(joint_request_conn(r_), ctx_);
    }

    // -- The joint extension: a served extended call (see the file comment of joint.hpp) --

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
    /// Pull the next event, waiting up to `timeout_ms` (-1: no limit, 0: don't wait); an
    /// Error with JOINT_WOULD_BLOCK if nothing came in time (InputKind::Timeout is the call's
    /// deadline).
    /// Values pulled are credited back to the caller. For requests without on_events; any
    /// thread (blocks: not on the loop thread unless timeout_ms is 0). A stock request
    /// reports End at once.
    Result<InputEvent> next_input(std::int32_t timeout_ms = no_timeout) const {
        if (!r_)
            return answered();
        std::int32_t kind = 0;
        joint_buf *data = nullptr;
        Status st = joint_request_next_input(r_, timeout_ms, &kind, &data);
        if (st == JOINT_WOULD_BLOCK)
            return Error(st, "nothing came in time");
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
    /// when fn returns (with set_manual_credit: when you call grant). Inputs that arrived
    /// before registration are delivered right after on_events returns success.
    ///
    /// The loop-thread rule: only on the loop thread (in a handler, a loop callback or a
    /// timer; never in an on_pool handler or another thread: JOINT_E_STATE there); fn runs
    /// inside process() on that thread, and the request must be answered on it. Only for
    /// extended calls: a stock request gives JOINT_E_UNSUPPORTED. On failure this Request
    /// keeps the request and fn is destroyed. An exception escaping fn while the box still
    /// holds the request answers it [JOINT_RPC_HANDLER_FAILED, what()].
    template <class F>
    Result<void> on_events(F &&fn);

    /// Credit the values on_events delivers with grant() instead of when fn returns (for
    /// consumers slower than the loop: the caller then waits instead of you buffering). Set
    /// it before on_events, which delivers the values already queued at once. Values pulled
    /// with next_input are credited as they are pulled either way. The loop-thread rule as
    /// for on_events; JOINT_E_UNSUPPORTED for a stock request, JOINT_E_STATE once the call
    /// ended.
    Result<void> set_manual_credit(bool enabled = true) {
        if (!r_)
            return answered();
        if (detail::pool_thread())
            return Error(JOINT_E_STATE, "Request::set_manual_credit is for the loop thread");
        return credit_status(joint_request_set_manual_credit(r_, enabled));
    }
    /// With set_manual_credit: `n` values sent in were consumed, the caller may send that
    /// many more. As set_manual_credit otherwise.
    Result<void> grant(std::uint32_t n) {
        if (!r_)
            return answered();
        if (detail::pool_thread())
            return Error(JOINT_E_STATE, "Request::grant is for the loop thread");
        return credit_status(joint_request_grant(r_, n));
    }

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

    /// Holds a request (not moved from, released or empty).
    bool valid() const noexcept { return r_ != nullptr; }
    /// Same as valid().
    explicit operator bool() const noexcept { return valid(); }
    /// The C request (still owned by this object); NULL if empty.
    joint_request *raw() const noexcept { return r_; }
    /// Give up ownership: the caller must pass it to a joint_request_reply* / _free.
    joint_request *release() noexcept { return std::exchange(r_, nullptr); }

private:
    joint_request *take() noexcept { return std::exchange(r_, nullptr); }
    // Not the context's last error: the context may be gone (that is one JOINT_E_STATE).
    static Result<void> credit_status(Status st) {
        if (st == JOINT_E_UNSUPPORTED)
            return Error(st, "not an extended call (the caller is a stock peer, or made a plain call)");
        return detail::check(st, nullptr, "the call ended, or its context is gone");
    }
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

} // namespace joint

// The box of on_events needs Request complete; it also defines on_events.
#include <joint/detail/request_events.hpp>

#endif // JOINT_REQUEST_HPP
