// joint/detail/handler_frame.hpp — per-thread state of request handlers: the request a
// handler is running for (to answer it when the handler throws) and whether the thread is
// a worker-pool thread. Part of joint.hpp.
#ifndef JOINT_DETAIL_HANDLER_FRAME_HPP
#define JOINT_DETAIL_HANDLER_FRAME_HPP

#include <joint/base.hpp>

namespace joint {
namespace detail {

#if JOINT_HPP_EXCEPTIONS
/// The request a handler is running for, on this thread: if the handler throws and the
/// Request holding it is destroyed by the unwinding, the destructor hands it back here so
/// the trampoline can answer with the exception's message instead of NOT_ANSWERED.
struct HandlerFrame {
    joint_request *req;
    int uncaught;
    joint_request *rescued;
    HandlerFrame *prev;
};
inline HandlerFrame *&handler_frame() noexcept {
    static thread_local HandlerFrame *frame = nullptr;
    return frame;
}
#endif

/// Whether this thread is one of a context's worker-pool threads (set when it first runs an
/// on_pool handler): Request::on_events and conn() belong to the loop thread.
inline bool &pool_thread() noexcept {
    static thread_local bool on = false;
    return on;
}

} // namespace detail
} // namespace joint

#endif // JOINT_DETAIL_HANDLER_FRAME_HPP
