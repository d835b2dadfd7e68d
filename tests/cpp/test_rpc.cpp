// cpp_rpc: a client and a server in one process through joint.hpp. One context serves and
// calls itself over TCP (the handlers answer inside the client's wait/call_sync), plus a
// server on its own thread and a spawned child. Covers: call and call_sync, remote errors,
// timeouts, notifications, deferred replies (timer), replies from std::thread, requests
// dropped unanswered (JOINT_RPC_NOT_ANSWERED), cancel and close, connection events, kwargs,
// calling back over the request's connection, re-entrancy (JOINT_E_RECURSIVE), fallback,
// unregistering, graceful shutdown, address errors.
#include "test_util.hpp"

#include <atomic>
#include <thread>

using joint::Bytes;
using joint::Context;
using joint::Request;

namespace {

struct Rpc : ::testing::Test {
    void SetUp() override {
        ctx = Context::create().value();
        JT_ASSERT_OK(ctx.on("add", [](Request req) {
            auto a = req.args<int64_t, int64_t>();
            if (!a)
                return (void)req.reply_error(JOINT_RPC_INVALID_PARAMS, a.error().message());
            (void)req.reply_value(std::get<0>(*a) + std::get<1>(*a));
        }));
        // echo(x): answers with x as sent
        JT_ASSERT_OK(ctx.on("echo", [](Request req) {
            auto a = req.args<joint::Raw>();
            (void)(a ? req.reply(std::get<0>(*a).bytes) : req.reply_error(a.error()));
        }));
        JT_ASSERT_OK(ctx.on("fail", [](Request req) { (void)req.reply_error(42, "it failed"); }));
        JT_ASSERT_OK(ctx.on("hold", [this](Request req) { held.push_back(std::move(req)); }));
        JT_ASSERT_OK(ctx.on("drop", [](Request) {}));
        // later(ms, v): answers v after ms, from a timer that owns the request
        JT_ASSERT_OK(ctx.on("later", [this](Request req) {
            auto a = req.args<uint32_t, int64_t>();
            if (!a)
                return (void)req.reply_error(a.error());
            auto [ms, v] = *a;
            JT_EXPECT_OK(ctx.after(ms, [req = std::move(req), v = v]() mutable { JT_EXPECT_OK(req.reply_value(v)); }));
        }));
        // thread(v): answers v from a std::thread
        JT_ASSERT_OK(ctx.on("thread", [this](Request req) {
            threads.emplace_back([req = std::move(req)]() mutable {
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
                auto a = req.args<int64_t>();
                JT_EXPECT_OK(req.reply_value(a ? std::get<0>(*a) * 2 : -1));
            });
        }));
        uri = ctx.listen("tcp://127.0.0.1:0").value();
        conn = ctx.connect(uri).value();
    }
    void TearDown() override {
        for (std::thread &t : threads)
            t.join();
    }
    // Destroy the connection and the context now (see jt::Defer).
    void finish() {
        conn = joint::Connection();
        ctx = Context();
    }
    Context ctx;
    std::vector<Request> held;
    std::vector<std::thread> threads;
    std::string uri;
    joint::Connection conn;
};

TEST_F(Rpc, CallSync) {
    auto r = conn.call_sync("add", joint::pack(2, 3), 5000);
    JT_ASSERT_OK(r);
    EXPECT_EQ(r->as<int>().value(), 5);
    EXPECT_EQ(jt::hex(*r), "05");
    EXPECT_EQ(uri.rfind("tcp://127.0.0.1:", 0), 0u);
}

TEST_F(Rpc, CallAsyncBothCallbackForms) {
    std::optional<int64_t> a, b;
    joint::CallId id_seen = 0;
    jt::Defer end{[this] { finish(); }};
    auto id1 = conn.call("add", joint::pack(1, 2), [&](joint::Result<Bytes> r) { a = joint::unpack<int64_t>(r.value()).value(); }, 5000);
    auto id2 = conn.call("add", joint::pack(3, 4), [&](const joint::Response &r) {
        EXPECT_TRUE(r.ok());
        EXPECT_EQ(r.message(), "");
        EXPECT_EQ(r.conn(), conn.ref());
        id_seen = r.call_id();
        b = r.as<int64_t>().value();
    });
    JT_ASSERT_OK(id1);
    JT_ASSERT_OK(id2);
    EXPECT_NE(id1.value(), id2.value());
    ASSERT_TRUE(jt::run_until(ctx, [&] { return a && b; }));
    EXPECT_EQ(*a, 3);
    EXPECT_EQ(*b, 7);
    EXPECT_EQ(id_seen, id2.value());
}

TEST_F(Rpc, RemoteErrors) {
    auto r = conn.call_sync("fail", {}, 5000);
    ASSERT_FALSE(r.ok());
    const joint::Error &e = r.error();
    EXPECT_EQ(e.code(), JOINT_E_REMOTE);
    EXPECT_TRUE(e.is_remote());
    EXPECT_EQ(e.message(), "it failed");
    EXPECT_EQ(e.remote_code(), 42);
    auto obj = joint::unpack<std::tuple<int, std::string>>(e.remote_object());
    JT_ASSERT_OK(obj);
    EXPECT_EQ(*obj, std::make_tuple(42, std::string("it failed")));

    // bad params: the handler's [INVALID_PARAMS, message]
    auto bad = conn.call_sync("add", joint::pack("x", 1), 5000);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().remote_code(), JOINT_RPC_INVALID_PARAMS);
    EXPECT_NE(bad.error().message().find("expected an integer, found str"), std::string::npos) << bad.error().message();

    // no such method
    auto none = conn.call_sync("nope", {}, 5000);
    ASSERT_FALSE(none.ok());
    EXPECT_EQ(none.error().remote_code(), JOINT_RPC_NO_METHOD);

    // the same through an async callback
    std::optional<joint::Error> async;
    jt::Defer end{[this] { finish(); }};
    JT_ASSERT_OK(conn.call("fail", {}, [&](joint::Result<Bytes> res) { async = res.error(); }));
    ASSERT_TRUE(jt::run_until(ctx, [&] { return async.has_value(); }));
    EXPECT_TRUE(async->is_remote());
    EXPECT_EQ(async->message(), "it failed");
    EXPECT_EQ(async->remote_code(), 42);
}

TEST_F(Rpc, ErrorObjectsOfOtherShapes) {
    JT_ASSERT_OK(ctx.on("fail_str", [](Request req) { (void)req.reply_error(joint::pack_value("plain text")); }));
    JT_ASSERT_OK(ctx.on("fail_map", [](Request req) {
        (void)req.reply_error(joint::pack_value(std::map<std::string, joint::Raw>{
            {"code", joint::Raw{joint::pack_value(1009)}}, {"message", joint::Raw{joint::pack_value("from a map")}}}));
    }));
    JT_ASSERT_OK(ctx.on("fail_fwd", [this](Request req) { // pass a nested call's error on
        JT_EXPECT_OK(conn.call("fail", {}, [req = std::move(req)](joint::Result<Bytes> r) mutable { (void)req.reply_error(r.error()); }));
    }));
    auto s = conn.call_sync("fail_str", {}, 5000);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().message(), "plain text");
    EXPECT_EQ(s.error().remote_code(), std::nullopt);
    auto m = conn.call_sync("fail_map", {}, 5000);
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().message(), "from a map");
    EXPECT_EQ(m.error().remote_code(), 1009); // not 0..9: joint's own codes can mean more (see the report)
    auto f = conn.call_sync("fail_fwd", {}, 5000);
    ASSERT_FALSE(f);
    EXPECT_EQ(f.error().message(), "it failed");
    EXPECT_EQ(f.error().remote_code(), 42);
}

TEST_F(Rpc, Timeout) {
    auto t0 = jt::now_ms();
    auto r = conn.call_sync("hold", {}, 50);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), JOINT_E_TIMEOUT);
    EXPECT_TRUE(r.error().is_timeout());
    EXPECT_GE(jt::now_ms() - t0, 45);

    std::optional<joint::Status> st;
    jt::Defer end{[this] { finish(); }};
    JT_ASSERT_OK(conn.call("hold", {}, [&](const joint::Response &res) { st = res.status(); }, 30));
    ASSERT_TRUE(jt::run_until(ctx, [&] { return st.has_value(); }));
    EXPECT_EQ(*st, JOINT_E_TIMEOUT);
    EXPECT_EQ(held.size(), 2u);
    held.clear(); // late answers are ignored
    jt::run_for(ctx, 20);
}

TEST_F(Rpc, Notify) {
    std::vector<std::tuple<std::string, int, std::string>> got;
    jt::Defer end{[this] { finish(); }};
    JT_ASSERT_OK(ctx.on_notification([&](joint::ConnectionRef c, std::string_view method, Bytes params) {
        EXPECT_TRUE(c);
        auto p = joint::unpack<std::tuple<int, std::string>>(params);
        JT_ASSERT_OK(p);
        got.emplace_back(std::string(method), std::get<0>(*p), std::get<1>(*p));
    }));
    JT_ASSERT_OK(conn.notify("note", joint::pack(1, "one")));
    JT_ASSERT_OK(conn.notify(std::string("note2"), joint::pack(2, "two")));
    ASSERT_TRUE(jt::run_until(ctx, [&] { return got.size() == 2; }));
    EXPECT_EQ(got[0], std::make_tuple(std::string("note"), 1, std::string("one")));
    EXPECT_EQ(got[1], std::make_tuple(std::string("note2"), 2, std::string("two")));
}

TEST_F(Rpc, DeferredReplyFromATimer) {
    auto t0 = jt::now_ms();
    auto r = conn.call_sync("later", joint::pack(40, 7), 5000);
    JT_ASSERT_OK(r);
    EXPECT_EQ(r->as<int>().value(), 7);
    EXPECT_GE(jt::now_ms() - t0, 35);
}

TEST_F(Rpc, ReplyFromAnotherThread) {
    int done = 0;
    std::vector<int64_t> results(20, 0);
    jt::Defer end{[this] {
        for (std::thread &t : threads)
            t.join();
        threads.clear();
        finish();
    }};
    for (int i = 0; i < 20; i++)
        JT_ASSERT_OK(conn.call("thread", joint::pack(i), [&, i](joint::Result<Bytes> r) {
            results[static_cast<size_t>(i)] = joint::unpack<int64_t>(r.value()).value();
            done++;
        }));
    ASSERT_TRUE(jt::run_until(ctx, [&] { return done == 20; }));
    for (int i = 0; i < 20; i++)
        EXPECT_EQ(results[static_cast<size_t>(i)], 2 * i);
}

TEST_F(Rpc, DroppedRequestAnswersNotAnswered) {
    auto r = conn.call_sync("drop", {}, 5000);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is_remote());
    EXPECT_EQ(r.error().remote_code(), JOINT_RPC_NOT_ANSWERED);

    // held, then dropped later (the held vector destroys it)
    std::optional<joint::Error> e;
    jt::Defer end{[this] { finish(); }};
    JT_ASSERT_OK(conn.call("hold", {}, [&](joint::Result<Bytes> res) { e = res.error(); }));
    ASSERT_TRUE(jt::run_until(ctx, [&] { return held.size() == 1; }));
    EXPECT_EQ(ctx.unanswered(), 1u);
    held.clear();
    ASSERT_TRUE(jt::run_until(ctx, [&] { return e.has_value(); }));
    EXPECT_EQ(e->remote_code(), JOINT_RPC_NOT_ANSWERED);
    EXPECT_EQ(ctx.unanswered(), 0u);
}

TEST_F(Rpc, CancelAndClose) {
    std::vector<joint::Status> st;
    int closed = 0;
    std::string reason;
    jt::Defer end{[this] { finish(); }};
    auto record = [&](const joint::Response &r) { st.push_back(r.status()); };
    auto id = conn.call("hold", {}, record);
    JT_ASSERT_OK(id);
    ASSERT_TRUE(jt::run_until(ctx, [&] { return held.size() == 1; }));
    JT_ASSERT_OK(conn.cancel(*id));
    auto again = conn.cancel(*id);
    JT_EXPECT_ERR(again, JOINT_E_STATE);
    ASSERT_TRUE(jt::run_until(ctx, [&] { return st.size() == 1; }));
    EXPECT_EQ(st[0], JOINT_E_CANCELLED);

    JT_ASSERT_OK(ctx.on_connection([&](const joint::ConnEvent &ev) {
        if (ev.closed() && ev.conn == conn.ref()) {
            closed++;
            reason = std::string(ev.reason);
        }
    }));
    JT_ASSERT_OK(conn.call("hold", {}, record));
    ASSERT_TRUE(jt::run_until(ctx, [&] { return held.size() == 2; }));
    JT_ASSERT_OK(conn.close());
    EXPECT_FALSE(conn.is_open());
    ASSERT_TRUE(jt::run_until(ctx, [&] { return st.size() == 2 && closed == 1; }));
    EXPECT_EQ(st[1], JOINT_E_CANCELLED);
    JT_EXPECT_ERR(conn.call_sync("add", joint::pack(1, 2)), JOINT_E_CLOSED);
    JT_EXPECT_ERR(conn.call("add", joint::pack(1, 2), record), JOINT_E_CLOSED);
}

TEST_F(Rpc, ConnectionEvents) {
    JT_ASSERT_OK(conn.call_sync("add", joint::pack(1, 2), 5000)); // conn's own events are over
    std::vector<std::pair<int32_t, joint::Status>> events;
    jt::Defer end{[this] { finish(); }};
    JT_ASSERT_OK(ctx.on_connection([&](const joint::ConnEvent &ev) {
        EXPECT_TRUE(ev.conn);
        events.emplace_back(ev.event, ev.status);
    }));
    joint::Connection c2 = ctx.connect(uri).value();
    ASSERT_TRUE(jt::run_until(ctx, [&] { return events.size() == 2; })); // connected + accepted
    EXPECT_EQ(events[0].first, JOINT_CONN_OPEN);
    EXPECT_EQ(events[1].first, JOINT_CONN_OPEN);
    JT_ASSERT_OK(c2.close());
    ASSERT_TRUE(jt::run_until(ctx, [&] { return events.size() == 4; })); // ours + the accepted one
    EXPECT_EQ(events[2].first, JOINT_CONN_CLOSED);
    EXPECT_EQ(events[3].first, JOINT_CONN_CLOSED);
}

TEST_F(Rpc, RequestAccessorsAndKwargs) {
    JT_ASSERT_OK(ctx.on("inspect", [](Request req) {
        std::map<std::string, int> kw;
        if (auto k = req.kwargs())
            kw = joint::unpack<std::map<std::string, int>>(*k).value();
        (void)req.reply_value(std::make_tuple(std::string(req.method()), jt::hex(req.params()), kw, req.msgid() > 0 || true));
    }));
    using Seen = std::tuple<std::string, std::string, std::map<std::string, int>, bool>;
    auto pos = conn.call_sync("inspect", joint::pack(1, 2), 5000);
    JT_ASSERT_OK(pos);
    EXPECT_EQ(pos->as<Seen>().value(), Seen("inspect", "920102", {}, true));
    auto kw = conn.call_sync("inspect", joint::pack_value(std::map<std::string, int>{{"a", 1}, {"b", 2}}), 5000);
    JT_ASSERT_OK(kw);
    Seen want("inspect", "90", {{"a", 1}, {"b", 2}}, true); // a map: params() is []
    EXPECT_EQ(kw->as<Seen>().value(), want);
}

TEST_F(Rpc, CallBackOverTheRequestsConnection) {
    // The server answers "outer" by calling "ping" back on the connection the request came
    // on; the Request waits in the completion callable.
    JT_ASSERT_OK(ctx.on("ping", [](Request req) { (void)req.reply_value("pong"); }));
    JT_ASSERT_OK(ctx.on("outer", [](Request req) {
        joint::ConnectionRef back = req.conn();
        ASSERT_TRUE(back);
        JT_EXPECT_OK(back.call("ping", {}, [req = std::move(req)](joint::Result<Bytes> r) mutable {
            (void)(r ? req.reply(*r) : req.reply_error(r.error()));
        }));
    }));
    auto r = conn.call_sync("outer", {}, 5000);
    JT_ASSERT_OK(r);
    EXPECT_EQ(r->as<std::string>().value(), "pong");
}

TEST_F(Rpc, BlockingCallsFromACallbackAreRecursive) {
    JT_ASSERT_OK(ctx.on("recurse", [this](Request req) {
        auto sync = req.conn().call_sync("add", joint::pack(1, 2));
        auto proc = ctx.process();
        auto wait = ctx.wait(0);
        (void)req.reply_value(std::make_tuple(sync ? 0 : sync.error().code(), proc ? 0 : proc.error().code(),
                                              wait ? 0 : wait.error().code(), sync ? "" : sync.error().message()));
    }));
    auto r = conn.call_sync("recurse", {}, 5000);
    JT_ASSERT_OK(r);
    auto [a, b, c, msg] = r->as<std::tuple<int, int, int, std::string>>().value();
    EXPECT_EQ(a, JOINT_E_RECURSIVE);
    EXPECT_EQ(b, JOINT_E_RECURSIVE);
    EXPECT_EQ(c, JOINT_E_RECURSIVE);
    EXPECT_NE(msg.find("callback"), std::string::npos) << msg;
}

TEST_F(Rpc, FallbackAndOff) {
    JT_ASSERT_OK(ctx.on_fallback([](Request req) { (void)req.reply_value("fallback:" + std::string(req.method())); }));
    auto r = conn.call_sync("whatever", {}, 5000);
    JT_ASSERT_OK(r);
    EXPECT_EQ(r->as<std::string>().value(), "fallback:whatever");
    JT_ASSERT_OK(ctx.on_fallback(nullptr));
    auto none = conn.call_sync("whatever", {}, 5000);
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().remote_code(), JOINT_RPC_NO_METHOD);

    JT_ASSERT_OK(ctx.off("add"));
    auto gone = conn.call_sync("add", joint::pack(1, 2), 5000);
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().remote_code(), JOINT_RPC_NO_METHOD);
}

TEST_F(Rpc, FallbackGetsTheMethodAndArgsOfUnregisteredMethods) {
    // The fallback owns the request like any handler: method() names what was called and
    // the params are there as sent; its reply (here a deferred one) goes to the caller.
    int calls = 0;
    JT_ASSERT_OK(ctx.on_fallback([this, &calls](Request req) {
        ++calls;
        auto a = req.args<int64_t, std::string>();
        if (!a)
            return (void)req.reply_error(JOINT_RPC_INVALID_PARAMS, a.error().message());
        std::string answer = std::string(req.method()) + "(" + std::to_string(std::get<0>(*a)) + ", " + std::get<1>(*a) + ")";
        JT_EXPECT_OK(ctx.after(0, [req = std::move(req), answer]() mutable { JT_EXPECT_OK(req.reply_value(answer)); }));
    }));
    auto r = conn.call_sync("not.registered", joint::pack(7, "seven"), 5000);
    JT_ASSERT_OK(r);
    EXPECT_EQ(r->as<std::string>().value(), "not.registered(7, seven)");
    EXPECT_EQ(calls, 1);

    // its error replies reach the caller as remote errors
    auto bad = conn.call_sync("other", joint::pack("x"), 5000);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().remote_code(), JOINT_RPC_INVALID_PARAMS);
    EXPECT_EQ(calls, 2);

    // a fallback that drops its request unanswered: NOT_ANSWERED, as for any handler
    JT_ASSERT_OK(ctx.on_fallback([](Request) {}));
    auto dropped = conn.call_sync("nobody", {}, 5000);
    ASSERT_FALSE(dropped);
    EXPECT_EQ(dropped.error().remote_code(), JOINT_RPC_NOT_ANSWERED);
    EXPECT_EQ(ctx.unanswered(), 0u);
}

TEST_F(Rpc, RegisteredMethodsDoNotReachTheFallback) {
    int fallback_calls = 0;
    JT_ASSERT_OK(ctx.on_fallback([&fallback_calls](Request req) {
        ++fallback_calls;
        (void)req.reply_value("fallback");
    }));
    auto sum = conn.call_sync("add", joint::pack(2, 3), 5000);
    JT_ASSERT_OK(sum);
    EXPECT_EQ(sum->as<int>().value(), 5);
    auto fail = conn.call_sync("fail", {}, 5000); // its own error, not the fallback's answer
    ASSERT_FALSE(fail);
    EXPECT_EQ(fail.error().remote_code(), 42);
    EXPECT_EQ(fallback_calls, 0);

    // registered later: its handler wins from then on; unregistered: back to the fallback
    auto before = conn.call_sync("late", {}, 5000);
    JT_ASSERT_OK(before);
    EXPECT_EQ(before->as<std::string>().value(), "fallback");
    EXPECT_EQ(fallback_calls, 1);
    JT_ASSERT_OK(ctx.on("late", [](Request req) { (void)req.reply_value("late"); }));
    auto registered = conn.call_sync("late", {}, 5000);
    JT_ASSERT_OK(registered);
    EXPECT_EQ(registered->as<std::string>().value(), "late");
    EXPECT_EQ(fallback_calls, 1);
    JT_ASSERT_OK(ctx.off("late"));
    auto after = conn.call_sync("late", {}, 5000);
    JT_ASSERT_OK(after);
    EXPECT_EQ(after->as<std::string>().value(), "fallback");
    EXPECT_EQ(fallback_calls, 2);
}

TEST_F(Rpc, FallbackReplacedAndRemoved) {
    auto probe = jt::probe();
    JT_ASSERT_OK(ctx.on_fallback([probe](Request req) { (void)req.reply_value("first"); }));
    EXPECT_EQ(probe.use_count(), 2);
    auto first = conn.call_sync("x", {}, 5000);
    JT_ASSERT_OK(first);
    EXPECT_EQ(first->as<std::string>().value(), "first");

    // replacing destroys the old callable; the new one answers
    JT_ASSERT_OK(ctx.on_fallback([](Request req) { (void)req.reply_value("second"); }));
    EXPECT_EQ(probe.use_count(), 1);
    auto second = conn.call_sync("x", {}, 5000);
    JT_ASSERT_OK(second);
    EXPECT_EQ(second->as<std::string>().value(), "second");

    // removed: the standard no-such-method error; removing again is harmless
    JT_ASSERT_OK(ctx.on_fallback(nullptr));
    JT_ASSERT_OK(ctx.on_fallback(nullptr));
    auto none = conn.call_sync("x", {}, 5000);
    ASSERT_FALSE(none);
    EXPECT_TRUE(none.error().is_remote());
    EXPECT_EQ(none.error().remote_code(), JOINT_RPC_NO_METHOD);
    // registered methods were never affected
    auto sum = conn.call_sync("add", joint::pack(1, 2), 5000);
    JT_ASSERT_OK(sum);
    EXPECT_EQ(sum->as<int>().value(), 3);

    // and a fallback can be set again
    JT_ASSERT_OK(ctx.on_fallback([](Request req) { (void)req.reply_value("third"); }));
    auto third = conn.call_sync("x", {}, 5000);
    JT_ASSERT_OK(third);
    EXPECT_EQ(third->as<std::string>().value(), "third");
}

TEST(Fallback, OnAnEmptyContextFails) {
    auto probe = jt::probe();
    Context empty;
    JT_EXPECT_ERR(empty.on_fallback([probe](Request) {}), JOINT_E_NULL);
    EXPECT_EQ(probe.use_count(), 1); // the box was freed, not leaked
    JT_EXPECT_ERR(empty.on_fallback(nullptr), JOINT_E_NULL);
}

TEST_F(Rpc, ShutdownAnswersNewRequestsWithShuttingDown) {
    JT_ASSERT_OK(conn.call_sync("add", joint::pack(1, 2), 5000));
    JT_ASSERT_OK(ctx.shutdown());
    auto r = conn.call_sync("add", joint::pack(1, 2), 5000);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().remote_code(), JOINT_RPC_SHUTTING_DOWN);
    EXPECT_EQ(ctx.unanswered(), 0u);
}

TEST_F(Rpc, CallablesMayReturnValues) {
    // a handler or callback that returns something (a Result, say): the value is dropped
    JT_ASSERT_OK(ctx.on("ret", [](Request req) { return req.reply_value(11); }));
    auto r = conn.call_sync("ret", {}, 5000);
    JT_ASSERT_OK(r);
    EXPECT_EQ(r->as<int>().value(), 11);
    int done = 0;
    jt::Defer end{[this] { finish(); }};
    JT_ASSERT_OK(conn.call("ret", {}, [&done](joint::Result<Bytes> res) { return ++done + static_cast<int>(res.ok()); }));
    JT_ASSERT_OK(ctx.after(0, [&done] { return joint::Result<int>(++done); }));
    ASSERT_TRUE(jt::run_until(ctx, [&] { return done == 2; }));
}

TEST_F(Rpc, ManyCallsEachCompleteOnce) {
    const int n = 2000;
    std::vector<int> runs(n, 0);
    int bad = 0, done = 0;
    jt::Defer end{[this] { finish(); }};
    for (int i = 0; i < n; i++)
        JT_ASSERT_OK(conn.call("add", joint::pack(i, 1), [&, i](joint::Result<Bytes> r) {
            runs[static_cast<size_t>(i)]++;
            done++;
            if (!r || joint::unpack<int>(*r).value_or(-1) != i + 1)
                bad++;
        }));
    ASSERT_TRUE(jt::run_until(ctx, [&] { return done == n; }, 60000));
    jt::run_for(ctx, 20);
    EXPECT_EQ(bad, 0);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(runs[static_cast<size_t>(i)], 1) << i;
}

TEST_F(Rpc, LargePayload) {
    std::vector<uint8_t> blob(1 << 20);
    for (size_t i = 0; i < blob.size(); i++)
        blob[i] = static_cast<uint8_t>(i * 7);
    auto r = conn.call_sync("echo", joint::pack(blob), 10000);
    JT_ASSERT_OK(r);
    EXPECT_EQ(r->as<std::vector<uint8_t>>().value(), blob);
}

TEST_F(Rpc, InvalidArgumentsAreReportedWithDetail) {
    JT_EXPECT_ERR(conn.call_sync("add", joint::pack_value(5)), JOINT_E_INVAL); // params must be an array or map
    JT_EXPECT_ERR(conn.notify(std::string("a\0b", 3)), JOINT_E_INVAL);
    auto l = ctx.listen("bogus://nowhere");
    JT_EXPECT_ERR(l, JOINT_E_ADDRESS);
    if (!l) {
        EXPECT_FALSE(l.error().message().empty());
    }
    JT_EXPECT_ERR(ctx.connect("unix:///nonexistent/joint.sock"), JOINT_E_CONNREFUSED); // known at once
}

// Connection and ConnectionRef share their methods: a method name with a NUL byte is
// refused by every one that takes a name, before anything is sent.
template <class C>
void expect_nul_names_refused(const C &c) {
    std::string bad("a\0b", 3);
    JT_EXPECT_ERR(c.call(bad, {}, [](joint::Result<Bytes>) { ADD_FAILURE() << "a refused call completed"; }), JOINT_E_INVAL);
    JT_EXPECT_ERR(c.call(bad, {}, nullptr), JOINT_E_INVAL);
    JT_EXPECT_ERR(c.call_sync(bad), JOINT_E_INVAL);
    JT_EXPECT_ERR(c.notify(bad), JOINT_E_INVAL);
    JT_EXPECT_ERR(c.call(bad, {}, joint::CallOptions(), nullptr, nullptr), JOINT_E_INVAL);
    JT_EXPECT_ERR(c.call(bad, {}, joint::CallOptions().timeout_ms(1000), [](const joint::Response &) {}), JOINT_E_INVAL);
    JT_EXPECT_ERR(c.call_stream(bad), JOINT_E_INVAL);
}

TEST_F(Rpc, MethodNamesWithANulAreRefusedByConnectionAndConnectionRef) {
    expect_nul_names_refused(conn);
    expect_nul_names_refused(conn.ref());
}

TEST(RpcConnect, RefusedConnectionFailsItsCalls) {
    Context ctx = Context::create().value();
    std::string uri;
    {
        Context tmp = Context::create().value();
        uri = tmp.listen("tcp://127.0.0.1:0").value();
    } // closed: nothing listens there now
    joint::Connection conn = ctx.connect(uri).value(); // does not block: fails later
    std::optional<joint::ConnEvent> closed;
    std::string reason;
    jt::Defer end{[&] {
        conn = joint::Connection();
        ctx = Context();
    }};
    JT_ASSERT_OK(ctx.on_connection([&](const joint::ConnEvent &ev) {
        if (ev.closed()) {
            closed = ev;
            reason = std::string(ev.reason);
        }
    }));
    auto r = conn.call_sync("add", joint::pack(1, 2), 5000);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().code() == JOINT_E_CONNREFUSED || r.error().code() == JOINT_E_CLOSED) << r.error().to_string();
    EXPECT_FALSE(r.error().message().empty());
    ASSERT_TRUE(jt::run_until(ctx, [&] { return closed.has_value(); }));
    EXPECT_LT(closed->status, 0);
    EXPECT_FALSE(reason.empty());
}

TEST(RpcThreads, ServerOnItsOwnThread) {
    Context server = Context::create().value();
    JT_ASSERT_OK(server.on("add", [](Request req) {
        auto a = req.args<int64_t, int64_t>();
        (void)req.reply_value(a ? std::get<0>(*a) + std::get<1>(*a) : -1);
    }));
    std::string uri = server.listen("tcp://127.0.0.1:0").value();
    std::atomic<bool> stop{false};
    std::thread loop([&] {
        while (!stop.load())
            if (!server.wait(-1))
                break;
    });
    {
        Context client = Context::create().value();
        joint::Connection conn = client.connect(uri).value();
        for (int i = 0; i < 100; i++) {
            auto r = conn.call_sync("add", joint::pack(i, i), 5000);
            JT_ASSERT_OK(r);
            ASSERT_EQ(r->as<int>().value(), 2 * i);
        }
    }
    stop = true;
    JT_EXPECT_OK(server.wakeup()); // from this thread, while the loop thread waits
    loop.join();
}

TEST(RpcSpawn, ChildProcessOverStdio) {
    // `cat` echoes what it reads: our request comes back to us as a request, our own "add"
    // answers it, and the answer comes back again as the response to our call.
    Context ctx = Context::create().value();
    JT_ASSERT_OK(ctx.on("add", [](Request req) {
        auto a = req.args<int64_t, int64_t>();
        (void)req.reply_value(a ? std::get<0>(*a) + std::get<1>(*a) : -1);
    }));
    auto conn = ctx.spawn({"cat"});
    JT_ASSERT_OK(conn);
    auto r = conn->call_sync("add", joint::pack(20, 22), 5000);
    JT_ASSERT_OK(r);
    EXPECT_EQ(r->as<int>().value(), 42);
    JT_EXPECT_ERR(ctx.spawn({}), JOINT_E_INVAL);
    JT_EXPECT_ERR(ctx.spawn({std::string("c\0at", 4)}), JOINT_E_INVAL);
}

TEST(RpcUnix, UnixSocket) {
    Context ctx = Context::create().value();
    JT_ASSERT_OK(ctx.on("hi", [](Request req) { (void)req.reply_value("hi"); }));
    std::string path = ::testing::TempDir() + "joint-cpp-" + std::to_string(jt::now_ms()) + ".sock";
    auto uri = ctx.listen("unix://" + path);
    JT_ASSERT_OK(uri);
    joint::Connection conn = ctx.connect(*uri).value();
    auto r = conn.call_sync("hi", {}, 5000);
    JT_ASSERT_OK(r);
    EXPECT_EQ(r->as<std::string>().value(), "hi");
}

} // namespace
