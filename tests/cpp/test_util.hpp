// test_util.hpp — helpers shared by the C++ tests (not part of the library's API). Every
// test source compiles with and without exceptions.
#ifndef JOINT_TEST_UTIL_HPP
#define JOINT_TEST_UTIL_HPP

#include <joint.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

// The binary's exception mode must be the one CMake asked for.
#if defined(JOINT_TEST_EXPECT_NO_EXCEPTIONS) && JOINT_HPP_EXCEPTIONS
#error "this test binary must be built with -fno-exceptions"
#endif

// EXPECT/ASSERT that a joint::Result is ok, printing its error otherwise.
#define JT_EXPECT_OK(expr)                                                                    \
    do {                                                                                      \
        auto &&jt_r_ = (expr);                                                                \
        EXPECT_TRUE(jt_r_.ok()) << #expr << ": " << (jt_r_.ok() ? "" : jt_r_.error().to_string()); \
    } while (0)
#define JT_ASSERT_OK(expr)                                                                    \
    do {                                                                                      \
        auto &&jt_r_ = (expr);                                                                \
        ASSERT_TRUE(jt_r_.ok()) << #expr << ": " << (jt_r_.ok() ? "" : jt_r_.error().to_string()); \
    } while (0)
// EXPECT that a joint::Result failed with status `want`.
#define JT_EXPECT_ERR(expr, want)                                                             \
    do {                                                                                      \
        auto &&jt_r_ = (expr);                                                                \
        EXPECT_FALSE(jt_r_.ok()) << #expr << " succeeded";                                    \
        if (!jt_r_.ok()) {                                                                    \
            EXPECT_EQ(jt_r_.error().code(), (want)) << #expr << ": " << jt_r_.error().to_string(); \
        }                                                                                     \
    } while (0)

namespace jt {

inline int64_t now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

/// Run `ctx` until pred() holds or `timeout_ms` passes; returns pred().
template <class P>
bool run_until(joint::Context &ctx, P pred, int64_t timeout_ms = 10000) {
    int64_t deadline = now_ms() + timeout_ms;
    while (!pred()) {
        if (now_ms() >= deadline)
            return false;
        auto r = ctx.wait(20);
        if (!r) {
            ADD_FAILURE() << "wait: " << r.error().to_string();
            return false;
        }
    }
    return true;
}

/// Run `ctx` for about `ms` milliseconds.
inline void run_for(joint::Context &ctx, int64_t ms) {
    int64_t deadline = now_ms() + ms;
    while (now_ms() < deadline)
        (void)ctx.wait(5);
}

/// Lower-case hex of bytes, for messages.
inline std::string hex(joint::Bytes b) {
    std::string s;
    char buf[4];
    for (uint8_t c : b) {
        std::snprintf(buf, sizeof buf, "%02x", c);
        s += buf;
    }
    return s;
}

/// A probe: capture it in a callable; its use_count() says how many copies are alive, so a
/// box that was freed (or leaked) shows.
using Probe = std::shared_ptr<int>;
inline Probe probe() { return std::make_shared<int>(0); }

/// Runs a function when it goes out of scope. Tests whose callbacks capture locals declare
/// one after those locals to destroy the context first, so that callbacks run during the
/// context's destruction (CANCELLED completions, CLOSED events) never see dead locals —
/// also when an ASSERT returns early.
template <class F>
struct Defer {
    F f;
    ~Defer() { f(); }
};
template <class F>
Defer(F) -> Defer<F>;

inline std::vector<uint8_t> bytes(std::initializer_list<int> v) {
    std::vector<uint8_t> out;
    for (int c : v)
        out.push_back(static_cast<uint8_t>(c));
    return out;
}

} // namespace jt

#endif
