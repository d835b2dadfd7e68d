// joint/streaming.hpp — the joint extension's values: CallOptions, the pulled Stream and its
// StreamItem, send/yield outcomes, the extension's state, and the events of a served call
// (InputKind, InputEvent, RequestEvent). Part of joint.hpp.
#ifndef JOINT_STREAMING_HPP
#define JOINT_STREAMING_HPP

#include <joint/base.hpp>
#include <joint/detail/ctx_life.hpp>
#include <joint/msgpack.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace joint {

// ---- The joint extension: call options, pulled streams, events of served calls ------------

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

    /// Fail the call with JOINT_E_TIMEOUT after `ms` (-1: none, the default; 0 is
    /// JOINT_E_INVAL). A joint callee gets it
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
    /// No setter failed so far.
    bool ok() const noexcept { return !error_.has_value(); }
    /// The first failure recorded, or success.
    Result<void> status() const {
        if (error_)
            return *error_;
        return {};
    }

    /// The C options; NULL until a setter ran (NULL means the defaults to the C API).
    joint_call_opts *raw() const noexcept { return o_.get(); }
    /// Give up ownership: the caller frees the options with joint_call_opts_free.
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
    /// Which of the three it is.
    enum class Kind { Item, Done, Timeout };
    /// Which step this is.
    Kind kind = Kind::Timeout;
    /// The item (Item) or the call's result (Done), as MessagePack; empty for Timeout.
    Buffer data;

    /// An item of the stream (in data).
    bool is_item() const noexcept { return kind == Kind::Item; }
    /// The call ended; data is its result.
    bool is_done() const noexcept { return kind == Kind::Done; }
    /// Nothing arrived within the timeout.
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
/// may outlive its Context (next() then fails with JOINT_E_STATE).
class Stream {
public:
    Stream() = default;
    /// Takes ownership of `stream`, a stream of `ctx`; `life` as for Connection.
    Stream(joint_stream *stream, joint_ctx *ctx, std::shared_ptr<detail::CtxLife> life = nullptr)
        : s_(stream), ctx_(ctx), life_(std::move(life)) {}
    /// Moves the stream out of `o`.
    Stream(Stream &&o) noexcept : s_(std::exchange(o.s_, nullptr)), ctx_(o.ctx_), life_(std::move(o.life_)), finished_(o.finished_) {}
    /// Moves the stream out of `o`; a stream this one held is destroyed first (cancelling its call if it still runs).
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
        joint_buf *buf = nullptr, *error = nullptr;
        Status st = joint_stream_next(s_, timeout_ms, &buf, &error);
        if (st == JOINT_WOULD_BLOCK)
            return StreamItem{}; // nothing yet
        StreamItem item;
        if (st == JOINT_OK || st == JOINT_DONE) {
            item.kind = st == JOINT_OK ? StreamItem::Kind::Item : StreamItem::Kind::Done;
            item.data = Buffer(buf);
            finished_ = st == JOINT_DONE;
            return item;
        }
        if (st != JOINT_E_RECURSIVE && st != JOINT_E_STATE)
            finished_ = true;
        if (st == JOINT_E_REMOTE && error)
            return detail::remote_error(error);
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

    /// The C stream (still owned by this object); NULL if empty or its context is gone.
    joint_stream *raw() const noexcept { return usable() ? s_ : nullptr; }
    /// Give up ownership: the caller frees it with joint_stream_free (before or after the
    /// context).
    joint_stream *release() noexcept {
        life_.reset();
        return std::exchange(s_, nullptr);
    }
    /// Holds a stream.
    explicit operator bool() const noexcept { return s_ != nullptr; }

private:
    bool usable() const noexcept { return s_ && (!life_ || life_->alive); }
    void reset() noexcept {
        joint_stream_free(s_); // also after the context: the handle outlives it
        s_ = nullptr;
        life_.reset();
    }

    joint_stream *s_ = nullptr;
    joint_ctx *ctx_ = nullptr;
    std::shared_ptr<detail::CtxLife> life_;
    bool finished_ = false;
};

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
    /// The event kinds (InputKind).
    using Kind = InputKind;
    /// What happened.
    Kind kind = Kind::End;
    /// The value (Value) or the error object (Throw), as MessagePack; empty otherwise.
    Buffer data;

    /// The call is over (Cancelled, Timeout, Closed).
    bool ended() const noexcept { return kind == Kind::Cancelled || kind == Kind::Timeout || kind == Kind::Closed; }
    template <class T>
    /// The data unpacked as T.
    Result<T> as() const {
        return data.as<T>();
    }
};

/// One event pushed to a Request::on_events callable; `data` (Value, Throw) is borrowed
/// until the callable returns.
struct RequestEvent {
    /// The event kinds (InputKind).
    using Kind = InputKind;
    /// What happened.
    Kind kind = Kind::End;
    /// The value (Value) or the error object (Throw), as MessagePack; empty otherwise.
    Bytes data;

    /// The call is over (Cancelled, Timeout, Closed).
    bool ended() const noexcept { return kind == Kind::Cancelled || kind == Kind::Timeout || kind == Kind::Closed; }
    template <class T>
    /// The data unpacked as T.
    Result<T> as() const {
        return unpack<T>(data);
    }
};

} // namespace joint

#endif // JOINT_STREAMING_HPP
