// joint/detail/context_callbacks.hpp — the trampolines of what Context and Config register:
// request handlers, notifications, connection events, timers and log lines. They never let
// an exception escape into C. Part of joint.hpp.
#ifndef JOINT_DETAIL_CONTEXT_CALLBACKS_HPP
#define JOINT_DETAIL_CONTEXT_CALLBACKS_HPP

#include <joint/base.hpp>
#include <joint/connection.hpp>
#include <joint/detail/box.hpp>
#include <joint/detail/handler_frame.hpp>
#include <joint/request.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

namespace joint {
namespace detail {

using RequestFn = Fn<void(Request)>;
using NotificationFn = Fn<void(ConnectionRef, std::string_view, Bytes)>;
using ConnFn = Fn<void(const ConnEvent &)>;
using AcceptFn = Fn<bool(ConnectionRef)>;
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

inline void joint_hpp_on_request(joint_request *req, void *user_data) noexcept {
    run_request_handler(from_user_data<void(Request)>(user_data), req);
}

/// A handler registered with Context::on_pool, on a worker thread.
inline void joint_hpp_on_pool_request(joint_request *req, void *user_data) noexcept {
    pool_thread() = true; // a worker thread for good
    run_request_handler(from_user_data<void(Request)>(user_data), req);
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

/// An exception escaping the accept callable refuses the connection (fail closed).
inline bool joint_hpp_on_accept(joint_conn *conn, void *user_data) noexcept {
    AcceptFn *fn = from_user_data<bool(ConnectionRef)>(user_data);
#if JOINT_HPP_EXCEPTIONS
    try {
#endif
        return fn->call(ConnectionRef(conn, fn->ctx));
#if JOINT_HPP_EXCEPTIONS
    } catch (const std::exception &e) {
        report_exception("accept", e.what());
    } catch (...) {
        report_exception("accept", "unknown exception");
    }
    return false;
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
} // namespace detail
} // namespace joint

#endif // JOINT_DETAIL_CONTEXT_CALLBACKS_HPP
