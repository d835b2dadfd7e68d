// joint/context.hpp — Config and Context: listeners, connections, handlers, timers and the
// event loop's side. Part of joint.hpp.
#ifndef JOINT_CONTEXT_HPP
#define JOINT_CONTEXT_HPP

#include <joint/base.hpp>
#include <joint/connection.hpp>
#include <joint/tls.hpp>
#include <joint/detail/box.hpp>
#include <joint/detail/context_callbacks.hpp>
#include <joint/detail/ctx_life.hpp>
#include <joint/request.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace joint {

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

    /// The largest message accepted or sent, in bytes; see joint_config_set_max_message_size.
    Result<void> set_max_message_size(std::size_t bytes) { return detail::check(joint_config_set_max_message_size(c_.get(), bytes)); }
    /// The deepest nesting of arrays and maps accepted; see joint_config_set_max_depth.
    Result<void> set_max_depth(std::uint32_t depth) { return detail::check(joint_config_set_max_depth(c_.get(), depth)); }
    /// Requests served at once per connection; see joint_config_set_max_inflight.
    Result<void> set_max_inflight(std::uint32_t calls) { return detail::check(joint_config_set_max_inflight(c_.get(), calls)); }
    /// How long a connect may take (-1: no limit); see joint_config_set_connect_timeout_ms.
    Result<void> set_connect_timeout_ms(std::int32_t ms) { return detail::check(joint_config_set_connect_timeout_ms(c_.get(), ms)); }
    /// Bytes all connections together may make the context hold (default 256 MiB; at least
    /// 1 MiB); see joint_config_set_memory_budget.
    Result<void> set_memory_budget(std::size_t bytes) { return detail::check(joint_config_set_memory_budget(c_.get(), bytes)); }
    /// Unsent output per connection above which its requests are not read (default 1 MiB).
    Result<void> set_output_high_water(std::size_t bytes) { return detail::check(joint_config_set_output_high_water(c_.get(), bytes)); }
    /// Accepted connections at once per context; see joint_config_set_max_connections.
    Result<void> set_max_connections(std::uint32_t n) { return detail::check(joint_config_set_max_connections(c_.get(), n)); }
    /// -1: no limit; otherwise milliseconds (> 0).
    Result<void> set_message_timeout_ms(std::int32_t ms) { return detail::check(joint_config_set_message_timeout_ms(c_.get(), ms)); }
    /// -1 (the default): none; otherwise milliseconds (> 0).
    Result<void> set_idle_timeout_ms(std::int32_t ms) { return detail::check(joint_config_set_idle_timeout_ms(c_.get(), ms)); }
    /// 0: cancel at once; otherwise milliseconds.
    Result<void> set_linger_ms(std::int32_t ms) { return detail::check(joint_config_set_linger_ms(c_.get(), ms)); }
    /// The listen(2) backlog of listeners; see joint_config_set_listen_backlog.
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

    /// The C configuration (still owned by this object); NULL if empty.
    joint_config *raw() const noexcept { return c_.get(); }
    /// Give up ownership: the caller frees it with joint_config_free.
    joint_config *release() noexcept { return c_.release(); }
    /// Not empty.
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
    /// Moves the context out of `o`.
    Context(Context &&o) noexcept = default;
    /// Moves the context out of `o`; a context this one held is destroyed first.
    Context &operator=(Context &&o) noexcept {
        if (this != &o) {
            reset();
            c_ = std::move(o.c_);
            life_ = std::move(o.life_);
            listeners_ = std::exchange(o.listeners_, {});
        }
        return *this;
    }
    ~Context() { reset(); }

    /// A context with the default configuration.
    static Result<Context> create() { return create_from(nullptr); }
    /// A context with `config` (copied: it may be destroyed afterwards).
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
        listeners_.push_back(l);
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
    /// Listen on tls://HOST:PORT with `tls` (which needs a certificate and key); returns the
    /// real address. Accepted connections get on_connection's OPEN once their handshake is
    /// done; a client that fails it is closed without any event (logged at info level).
    Result<std::string> listen_tls(detail::CStr uri, const TlsConfig &tls) {
        if (uri.bad())
            return detail::embedded_nul();
        joint_listener *l = nullptr;
        Status st = joint_ctx_listen_tls(c_.get(), uri.c_str(), tls.raw(), &l);
        if (st < 0)
            return detail::make_error(st, c_.get());
        listeners_.push_back(l);
        return std::string(joint_listener_uri(l));
    }
    /// Connect to tls://HOST:PORT, verifying the server against `tls`'s CAs (the system's
    /// roots without them, or with the overload without settings). A failed handshake
    /// closes the connection: its calls fail with JOINT_E_TLS (Error::is_tls) and a message
    /// naming the cause.
    Result<Connection> connect_tls(detail::CStr uri, const TlsConfig &tls) { return connect_tls_with(uri, tls.raw()); }
    /// Connect to tls://HOST:PORT, verifying the server against the system's roots.
    Result<Connection> connect_tls(detail::CStr uri) { return connect_tls_with(uri, nullptr); }
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
    /// Remove the fallback handler: unknown methods are answered with an error again.
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
    /// Stop receiving notifications.
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
    /// Decide which accepted connections are served: fn(ConnectionRef) -> bool runs before a
    /// connection's OPEN event and first request (for TLS after the handshake, so
    /// peer_subject() and peer_sha256() are known) and may look at peer_address() and
    /// peer_credentials(). false (or an exception) closes it without any event.
    template <class F>
    Result<void> on_accept(F &&fn) {
        static_assert(std::is_invocable_r_v<bool, std::decay_t<F> &, ConnectionRef>,
                      "joint: an accept callback is callable as bool(joint::ConnectionRef)");
        detail::AcceptFn *box = detail::make_fn<bool(ConnectionRef)>(std::forward<F>(fn), c_.get());
        return detail::registered(joint_ctx_set_accept_cb(c_.get(), &detail::joint_hpp_on_accept, detail::to_user_data(box),
                                                          &detail::joint_hpp_free_box),
                                  box, c_.get());
    }
    /// Remove the accept callback: every accepted connection is served.
    Result<void> on_accept(std::nullptr_t) { return detail::check(joint_ctx_set_accept_cb(c_.get(), nullptr, nullptr, nullptr), c_.get()); }
    /// Stop the connection callback.
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

    /// The C context (still owned by this object); NULL if empty.
    joint_ctx *raw() const noexcept { return c_.get(); }
    /// Give up ownership: the caller frees it with joint_ctx_free. The Connections and
    /// Streams made from it no longer track its life: do not use them after that (destroying
    /// them is fine). Its listeners are closed now.
    joint_ctx *release() noexcept {
        life_.reset();
        for (joint_listener *l : listeners_)
            joint_listener_free(l);
        listeners_.clear();
        return c_.release();
    }
    /// Holds a context.
    explicit operator bool() const noexcept { return c_ != nullptr; }

private:
    static Result<Context> create_from(const joint_config *config) {
        joint_ctx *ctx = nullptr;
        Status st = joint_ctx_new(config, &ctx);
        if (st < 0)
            return detail::make_error(st);
        return Context(ctx);
    }
    Result<Connection> connect_tls_with(detail::CStr &uri, const joint_tls_config *tls) {
        if (uri.bad())
            return detail::embedded_nul();
        joint_conn *conn = nullptr;
        Status st = joint_ctx_connect_tls(c_.get(), uri.c_str(), tls, &conn);
        return owned(st, conn);
    }
    Result<Connection> owned(Status st, joint_conn *conn) {
        if (st < 0)
            return detail::make_error(st, c_.get());
        return Connection(conn, c_.get(), life_);
    }
    void reset() noexcept {
        if (life_)
            life_->alive = false; // Connections and Streams no longer read its last error
        joint_ctx_free(c_.release());
        life_.reset();
        for (joint_listener *l : listeners_) // the handles outlive the context
            joint_listener_free(l);
        listeners_.clear();
    }
    detail::Owned<joint_ctx, &joint_ctx_free> c_;
    std::shared_ptr<detail::CtxLife> life_;
    /// The listeners' handles, freed with the context (freeing one closes it).
    std::vector<joint_listener *> listeners_;
};

} // namespace joint

#endif // JOINT_CONTEXT_HPP
