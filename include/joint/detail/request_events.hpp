// joint/detail/request_events.hpp — the box and trampolines of Request::on_events, and
// on_events itself. Part of joint.hpp; included by joint/request.hpp after Request.
#ifndef JOINT_DETAIL_REQUEST_EVENTS_HPP
#define JOINT_DETAIL_REQUEST_EVENTS_HPP

#include <joint/base.hpp>
#include <joint/detail/box.hpp>
#include <joint/request.hpp>
#include <joint/streaming.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace joint {
namespace detail {

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

} // namespace joint

#endif // JOINT_DETAIL_REQUEST_EVENTS_HPP
