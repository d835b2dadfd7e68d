// joint/detail/box.hpp — callback boxes: every callable handed to C travels as a heap box
// in user_data, freed by joint_hpp_free_box (or by the trampoline that runs it last).
// Part of joint.hpp.
#ifndef JOINT_DETAIL_BOX_HPP
#define JOINT_DETAIL_BOX_HPP

#include <joint/base.hpp>

#include <type_traits>
#include <utility>

namespace joint {
namespace detail {

/// Base of every callback box handed to C as user_data; freed by joint_hpp_free_box.
struct BoxBase {
    virtual ~BoxBase() = default;
    joint_ctx *ctx = nullptr; // the context the box is registered with (for ConnectionRef)
};

/// A type-erased, move-only callable with a fixed signature.
template <class Sig>
struct Fn;
template <class R, class... A>
struct Fn<R(A...)> : BoxBase {
    virtual R call(A... args) = 0;
};
template <class F, class Sig>
struct FnImpl;
template <class F, class R, class... A>
struct FnImpl<F, R(A...)> final : Fn<R(A...)> {
    template <class G>
    explicit FnImpl(G &&g) : f(std::forward<G>(g)) {}
    R call(A... args) override {
        if constexpr (std::is_void_v<R>)
            (void)f(std::forward<A>(args)...); // what the callable returns (a Result, say) is dropped
        else
            return f(std::forward<A>(args)...);
    }
    F f;
};

template <class Sig, class F>
Fn<Sig> *make_fn(F &&f, joint_ctx *ctx) {
    auto *box = new FnImpl<std::decay_t<F>, Sig>(std::forward<F>(f));
    box->ctx = ctx;
    return box;
}

inline void *to_user_data(BoxBase *box) noexcept { return static_cast<void *>(box); }
template <class Sig>
Fn<Sig> *from_user_data(void *user_data) noexcept {
    return static_cast<Fn<Sig> *>(static_cast<BoxBase *>(user_data));
}

extern "C" {
inline void joint_hpp_free_box(void *user_data) noexcept { delete static_cast<BoxBase *>(user_data); }
} // extern "C"

/// Hand a box to a registration function; if it fails, the box is still ours: free it.
inline Result<void> registered(Status st, BoxBase *box, const joint_ctx *ctx) {
    if (st < 0) {
        delete box;
        return make_error(st, ctx);
    }
    return {};
}

} // namespace detail
} // namespace joint

#endif // JOINT_DETAIL_BOX_HPP
