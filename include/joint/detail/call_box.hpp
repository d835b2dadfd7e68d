// joint/detail/call_box.hpp — the boxes and trampolines of our calls' callables (completions,
// call events), and the ConnectionOps calls that create them. Part of joint.hpp; included
// by joint/connection.hpp after the classes it needs.
#ifndef JOINT_DETAIL_CALL_BOX_HPP
#define JOINT_DETAIL_CALL_BOX_HPP

#include <joint/base.hpp>
#include <joint/connection.hpp>
#include <joint/detail/box.hpp>
#include <joint/streaming.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

namespace joint {
namespace detail {

using ResponseFn = Fn<void(const Response &)>;

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

extern "C" {

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

} // extern "C"

template <class Derived>
template <class F>
Result<CallId> ConnectionOps<Derived>::call(CStr method, Bytes params, F &&on_done, std::int32_t timeout_ms) const {
    using D = std::decay_t<F>;
    static_assert(std::is_invocable_v<D &, Result<Bytes>> || std::is_invocable_v<D &, const Response &>,
                  "joint: a completion callback is callable as void(joint::Result<joint::Bytes>) or void(const joint::Response &)");
    if (Result<void> u = callable(method); !u)
        return u.error();
    ResponseFn *box = make_fn<void(const Response &)>(ResponseAdapter<D>{std::forward<F>(on_done)}, ctx());
    CallId id = 0;
    Status st = joint_conn_call(conn(), method.c_str(), params.data(), params.size(), timeout_ms, &joint_hpp_on_response,
                                to_user_data(box), &id);
    if (st < 0) { // the callback will never run
        delete box;
        return make_error(st, ctx());
    }
    return id;
}

template <class Derived>
template <class E, class F>
Result<CallId> ConnectionOps<Derived>::call(CStr method, Bytes params, const CallOptions &opts, E &&on_event, F &&on_done) const {
    using ED = std::decay_t<E>;
    using FD = std::decay_t<F>;
    static_assert(std::is_same_v<ED, std::nullptr_t> || std::is_invocable_v<ED &, const CallEvent &>,
                  "joint: a call event callback is callable as void(const joint::CallEvent &) (or nullptr)");
    static_assert(std::is_same_v<FD, std::nullptr_t> || std::is_invocable_v<FD &, Result<Bytes>> || std::is_invocable_v<FD &, const Response &>,
                  "joint: a completion callback is callable as void(joint::Result<joint::Bytes>) or void(const joint::Response &) (or nullptr)");
    constexpr bool events = !std::is_same_v<ED, std::nullptr_t>;
    if (Result<void> u = callable(method); !u)
        return u.error();
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
    CallBox *box = new CallBoxImpl<ED, FD>(std::forward<E>(on_event), std::forward<F>(on_done));
    box->ctx = ctx();
    if (o) // the box is the event callback's user data too; the completion deletes it
        (void)joint_call_opts_set_event_cb(o, events ? &joint_hpp_on_call_event : nullptr, to_user_data(box), nullptr);
    CallId id = 0;
    Status st = joint_conn_call_opts(conn(), method.c_str(), params.data(), params.size(), o, &joint_hpp_on_call_done,
                                     to_user_data(box), &id);
    if (o && events)
        (void)joint_call_opts_set_event_cb(o, nullptr, nullptr, nullptr); // the options stay as they were
    if (st < 0) { // neither callable will run
        delete box;
        return make_error(st, ctx());
    }
    return id;
}

} // namespace detail
} // namespace joint

#endif // JOINT_DETAIL_CALL_BOX_HPP
