// joint/detail/ctx_life.hpp — a context's liveness, shared with what may outlive it.
// Part of joint.hpp.
#ifndef JOINT_DETAIL_CTX_LIFE_HPP
#define JOINT_DETAIL_CTX_LIFE_HPP

#include <joint.h>

namespace joint {
namespace detail {

/// Whether a joint_ctx is alive, shared with the Connections and Streams made from it. The
/// C handles outlive their context by themselves (their functions then say JOINT_E_STATE);
/// this only keeps the wrappers from reading the freed context's last error.
struct CtxLife {
    bool alive = true;
};

} // namespace detail
} // namespace joint

#endif // JOINT_DETAIL_CTX_LIFE_HPP
