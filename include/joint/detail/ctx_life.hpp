// joint/detail/ctx_life.hpp — a context's liveness, shared with what may outlive it.
// Part of joint.hpp.
#ifndef JOINT_DETAIL_CTX_LIFE_HPP
#define JOINT_DETAIL_CTX_LIFE_HPP

#include <joint.h>

#include <vector>

namespace joint {
namespace detail {

/// Owns a joint_ctx's liveness, shared with the Connections and Streams made from it.
struct CtxLife {
    bool alive = true;
    /// The live Streams' handles: the Context frees them before itself (joint_stream_free
    /// must come before joint_ctx_free), so that a Stream may outlive its Context.
    std::vector<joint_stream *> streams;
};

} // namespace detail
} // namespace joint

#endif // JOINT_DETAIL_CTX_LIFE_HPP
