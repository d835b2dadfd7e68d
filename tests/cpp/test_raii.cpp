// cpp_raii: ownership in joint.hpp. Every wrapper owns one handle and frees it once; moved-from
// objects are empty; raw()/release() hand the handle over; every boxed callable is destroyed
// exactly once — when its registration is replaced or removed, its timer fired or was
// cancelled, its call completed, its registration failed, or the context was destroyed. Leaks
// and double frees are caught by the sanitizer build and the cpp_leak_ (valgrind) tests.
#include "test_util.hpp"

#include <thread>

using joint::Bytes;
using joint::Context;
using joint::Request;

TEST(Result, ValueErrorValueOr) {
    joint::Result<int> ok(7);
    EXPECT_TRUE(ok.ok());
    EXPECT_TRUE(static_cast<bool>(ok));
    EXPECT_EQ(ok.value(), 7);
    EXPECT_EQ(*ok, 7);
    EXPECT_EQ(ok.value_or(3), 7);

    joint::Result<int> bad(joint::Error(JOINT_E_TIMEOUT, "too slow"));
    EXPECT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().code(), JOINT_E_TIMEOUT);
    EXPECT_EQ(bad.error().message(), "too slow");
    EXPECT_TRUE(bad.error().is_timeout());
    EXPECT_EQ(bad.value_or(3), 3);
    EXPECT_EQ(bad.error().to_string(), std::string(joint_status_str(JOINT_E_TIMEOUT)) + ": too slow");

    joint::Result<std::unique_ptr<int>> moved(std::make_unique<int>(5));
    std::unique_ptr<int> p = std::move(moved).value();
    EXPECT_EQ(*p, 5);

    joint::Result<void> v;
    EXPECT_TRUE(v.ok());
    v.value();
    joint::Result<void> verr(joint::Error(JOINT_E_STATE, "x"));
    EXPECT_FALSE(verr);
    EXPECT_EQ(verr.error().code(), JOINT_E_STATE);
}

TEST(ResultDeathTest, ValueOnErrorAborts) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    joint::Result<int> bad(joint::Error(JOINT_E_CLOSED, "gone"));
    EXPECT_DEATH((void)bad.value(), "value\\(\\) called on an error.*gone");
    joint::Result<int> good(1);
    EXPECT_DEATH((void)good.error(), "error\\(\\) called on a success");
}

TEST(Config, CreateSetAndFree) {
    auto config = joint::Config::create();
    JT_ASSERT_OK(config);
    joint::Config c = std::move(config).value();
    JT_EXPECT_OK(c.set_max_message_size(1 << 20));
    JT_EXPECT_OK(c.set_max_depth(16));
    JT_EXPECT_OK(c.set_max_inflight(8));
    JT_EXPECT_OK(c.set_connect_timeout_ms(2000));
    JT_EXPECT_OK(c.set_memory_budget(64 << 20));
    JT_EXPECT_OK(c.set_output_high_water(1 << 20));
    JT_EXPECT_OK(c.set_max_connections(16));
    JT_EXPECT_OK(c.set_message_timeout_ms(-1));
    JT_EXPECT_OK(c.set_idle_timeout_ms(60000));
    JT_EXPECT_OK(c.set_linger_ms(0));
    JT_EXPECT_OK(c.set_listen_backlog(64));
    JT_EXPECT_ERR(c.set_memory_budget(1024), JOINT_E_INVAL); // at least 1 MiB
    JT_EXPECT_ERR(c.set_max_message_size(1), JOINT_E_INVAL); // at least 64
    JT_EXPECT_ERR(c.set_max_depth(1), JOINT_E_INVAL);        // at least 2

    joint::Config moved = std::move(c);
    EXPECT_FALSE(c);
    EXPECT_TRUE(moved);
    JT_EXPECT_ERR(c.set_max_depth(8), JOINT_E_NULL); // moved-from: empty
    JT_EXPECT_ERR(Context::create(c), JOINT_E_NULL);
    auto ctx = Context::create(moved);
    JT_EXPECT_OK(ctx);

    joint_config *raw = moved.release();
    EXPECT_FALSE(moved);
    joint_config_free(raw);
}

TEST(Config, LogCallableLivesWithTheContexts) {
    auto probe = jt::probe();
    std::vector<std::string> lines;
    {
        joint::Config config = joint::Config::create().value();
        JT_ASSERT_OK(config.on_log(JOINT_LOG_DEBUG, [probe, &lines](int32_t, std::string_view m) { lines.emplace_back(m); }));
        EXPECT_EQ(probe.use_count(), 2);
        {
            Context a = Context::create(config).value();
            Context b = Context::create(config).value();
            config = joint::Config(); // the config goes; the contexts keep the callable
            EXPECT_EQ(probe.use_count(), 2);
            (void)a.listen("tcp://127.0.0.1:0").value();
            (void)a.process();
        }
        EXPECT_EQ(probe.use_count(), 1); // destroyed with the last context
    }
    // replaced and turned off: destroyed each time
    joint::Config config = joint::Config::create().value();
    JT_ASSERT_OK(config.on_log(JOINT_LOG_INFO, [probe](int32_t, std::string_view) {}));
    JT_ASSERT_OK(config.on_log(JOINT_LOG_INFO, [probe](int32_t, std::string_view) {}));
    EXPECT_EQ(probe.use_count(), 2);
    JT_ASSERT_OK(config.on_log(nullptr));
    EXPECT_EQ(probe.use_count(), 1);
}

TEST(Context, CreateMoveRelease) {
    Context ctx = Context::create().value();
    EXPECT_TRUE(ctx);
    EXPECT_GE(ctx.fd(), 0);
    EXPECT_EQ(ctx.timeout_ms(), -1);
    JT_EXPECT_OK(ctx.process());
    JT_EXPECT_OK(ctx.wait(0));
    JT_EXPECT_OK(ctx.wakeup());

    int fd = ctx.fd();
    Context moved = std::move(ctx);
    EXPECT_FALSE(ctx);
    EXPECT_EQ(moved.fd(), fd);
    EXPECT_EQ(ctx.fd(), -1);
    JT_EXPECT_ERR(ctx.process(), JOINT_E_NULL);
    JT_EXPECT_ERR(ctx.listen("tcp://127.0.0.1:0"), JOINT_E_NULL);
    JT_EXPECT_ERR(ctx.on("m", [](Request) {}), JOINT_E_NULL);
    JT_EXPECT_ERR(ctx.after(1, [] {}), JOINT_E_NULL);

    Context other = Context::create().value();
    moved = std::move(other); // frees the first context
    EXPECT_FALSE(other);
    EXPECT_TRUE(moved);

    joint_ctx *raw = moved.release();
    EXPECT_FALSE(moved);
    joint_ctx_free(raw);
}

TEST(Boxes, HandlerReplacedRemovedOrDestroyedWithContext) {
    auto probe = jt::probe();
    {
        Context ctx = Context::create().value();
        JT_ASSERT_OK(ctx.on("m", [probe](Request) {}));
        EXPECT_EQ(probe.use_count(), 2);
        JT_ASSERT_OK(ctx.on("m", [probe](Request) {})); // replaces: the old one is destroyed
        EXPECT_EQ(probe.use_count(), 2);
        JT_ASSERT_OK(ctx.off("m"));
        EXPECT_EQ(probe.use_count(), 1);
        auto again = ctx.off("m");
        JT_EXPECT_ERR(again, JOINT_E_STATE);
        if (!again) {
            EXPECT_EQ(again.error().message(), "no handler for that method");
        }

        JT_ASSERT_OK(ctx.on("a", [probe](Request) {}));
        JT_ASSERT_OK(ctx.on("b", [probe](Request) {}));
        JT_ASSERT_OK(ctx.on_fallback([probe](Request) {}));
        JT_ASSERT_OK(ctx.on_notification([probe](joint::ConnectionRef, std::string_view, Bytes) {}));
        JT_ASSERT_OK(ctx.on_connection([probe](const joint::ConnEvent &) {}));
        EXPECT_EQ(probe.use_count(), 6);
        JT_ASSERT_OK(ctx.on_fallback(nullptr));
        JT_ASSERT_OK(ctx.on_notification(nullptr));
        JT_ASSERT_OK(ctx.on_connection(nullptr));
        EXPECT_EQ(probe.use_count(), 3);
    }
    EXPECT_EQ(probe.use_count(), 1); // the context took the rest with it
}

TEST(Boxes, FailedRegistrationDestroysTheCallable) {
    auto probe = jt::probe();
    Context ctx = Context::create().value();
    JT_EXPECT_ERR(ctx.on(static_cast<const char *>(nullptr), [probe](Request) {}), JOINT_E_NULL);
    JT_EXPECT_ERR(ctx.on(std::string_view("a\0b", 3), [probe](Request) {}), JOINT_E_INVAL);
    Context empty;
    JT_EXPECT_ERR(empty.on_connection([probe](const joint::ConnEvent &) {}), JOINT_E_NULL);
    JT_EXPECT_ERR(empty.after(0, [probe] {}), JOINT_E_NULL);
    EXPECT_EQ(probe.use_count(), 1);
}

TEST(Boxes, TimersFireOnceThenGo) {
    auto probe = jt::probe();
    Context ctx = Context::create().value();
    int fired = 0;
    auto t1 = ctx.after(0, [probe, &fired] { fired++; });
    JT_ASSERT_OK(t1);
    auto t2 = ctx.after(60000, [probe, &fired] { fired += 100; });
    JT_ASSERT_OK(t2);
    auto t3 = ctx.after(60000, [probe, &fired] { fired += 1000; });
    JT_ASSERT_OK(t3);
    EXPECT_EQ(probe.use_count(), 4);
    EXPECT_TRUE(jt::run_until(ctx, [&] { return fired > 0; }));
    EXPECT_EQ(fired, 1);
    EXPECT_EQ(probe.use_count(), 3); // destroyed right after it ran
    JT_EXPECT_OK(ctx.cancel_timer(t2.value()));
    EXPECT_EQ(probe.use_count(), 2); // destroyed at cancel
    JT_EXPECT_ERR(ctx.cancel_timer(t2.value()), JOINT_E_STATE);
    JT_EXPECT_ERR(ctx.cancel_timer(t1.value()), JOINT_E_STATE);
    ctx = Context();                 // t3 never runs; destroyed with the context
    EXPECT_EQ(probe.use_count(), 1);
    EXPECT_EQ(fired, 1);
}

TEST(Boxes, MoveOnlyCallables) {
    Context ctx = Context::create().value();
    auto owned = std::make_unique<int>(41);
    int seen = 0;
    JT_ASSERT_OK(ctx.after(0, [p = std::move(owned), &seen] { seen = *p + 1; }));
    EXPECT_TRUE(jt::run_until(ctx, [&] { return seen != 0; }));
    EXPECT_EQ(seen, 42);
}

struct Loop : ::testing::Test {
    void SetUp() override {
        ctx = Context::create().value();
        JT_ASSERT_OK(ctx.on("add", [](Request req) {
            auto a = req.args<int64_t, int64_t>();
            (void)(a ? req.reply_value(std::get<0>(*a) + std::get<1>(*a)) : req.reply_error(a.error()));
        }));
        JT_ASSERT_OK(ctx.on("hold", [this](Request req) { held.push_back(std::move(req)); }));
        uri = ctx.listen("tcp://127.0.0.1:0").value();
        conn = ctx.connect(uri).value();
    }
    // Destroy the connection and the context now (see jt::Defer).
    void finish() {
        conn = joint::Connection();
        ctx = Context();
    }
    Context ctx;
    std::vector<Request> held; // destroyed before ctx: answered NOT_ANSWERED (dropped if gone)
    std::string uri;
    joint::Connection conn;
};

TEST_F(Loop, CompletionCallableDestroyedAfterItsOneRun) {
    auto probe = jt::probe();
    int runs = 0;
    jt::Defer end{[this] { finish(); }};
    auto id = conn.call("add", joint::pack(1, 2), [probe, &runs](joint::Result<Bytes> r) {
        runs++;
        EXPECT_TRUE(r.ok());
    });
    JT_ASSERT_OK(id);
    EXPECT_EQ(probe.use_count(), 2);
    EXPECT_TRUE(jt::run_until(ctx, [&] { return runs > 0; }));
    jt::run_for(ctx, 30);
    EXPECT_EQ(runs, 1);
    EXPECT_EQ(probe.use_count(), 1);
}

TEST_F(Loop, FailedCallNeverRunsAndDestroysTheCallable) {
    auto probe = jt::probe();
    int runs = 0;
    auto bad = [&](std::vector<uint8_t> params) {
        return conn.call("add", params, [probe, &runs](joint::Result<Bytes>) { runs++; });
    };
    JT_EXPECT_ERR(bad({0xc1}), JOINT_E_INVAL);   // not MessagePack
    JT_EXPECT_ERR(bad({0x01}), JOINT_E_INVAL);   // not an array or map
    JT_EXPECT_ERR(bad({0x92, 0x01}), JOINT_E_INVAL); // truncated
    JT_EXPECT_ERR(conn.call(std::string_view("a\0", 2), {}, [probe, &runs](joint::Result<Bytes>) { runs++; }), JOINT_E_INVAL);
    EXPECT_EQ(probe.use_count(), 1);
    jt::run_for(ctx, 20);
    EXPECT_EQ(runs, 0);
}

TEST_F(Loop, PendingCallsCompleteCancelledWhenTheContextGoes) {
    auto probe = jt::probe();
    std::vector<joint::Status> got;
    jt::Defer end{[this] { finish(); }};
    for (int i = 0; i < 3; i++)
        JT_ASSERT_OK(conn.call("hold", {}, [probe, &got](const joint::Response &r) { got.push_back(r.status()); }));
    EXPECT_TRUE(jt::run_until(ctx, [&] { return held.size() == 3; }));
    conn = joint::Connection(); // closes: pending calls complete CANCELLED on the next process
    EXPECT_TRUE(jt::run_until(ctx, [&] { return got.size() == 3; }));
    for (joint::Status s : got)
        EXPECT_EQ(s, JOINT_E_CANCELLED);

    joint::Connection c2 = ctx.connect(uri).value();
    JT_ASSERT_OK(c2.call("hold", {}, [probe, &got](const joint::Response &r) { got.push_back(r.status()); }));
    EXPECT_TRUE(jt::run_until(ctx, [&] { return held.size() == 4; }));
    c2 = joint::Connection();
    ctx = Context(); // completes during the destruction
    ASSERT_EQ(got.size(), 4u);
    EXPECT_EQ(got[3], JOINT_E_CANCELLED);
    EXPECT_EQ(probe.use_count(), 1);
    held.clear(); // requests outliving their context: answering does nothing
}

TEST_F(Loop, ConnectionOutlivingItsContextIsInert) {
    joint::Connection late = ctx.connect(uri).value();
    JT_ASSERT_OK(late.call_sync("add", joint::pack(1, 1), 5000));
    conn = joint::Connection();
    ctx = Context(); // frees every connection handle; `late` must not touch its handle now
    EXPECT_TRUE(late);
    EXPECT_FALSE(late.is_open());
    EXPECT_FALSE(late.ref());
    JT_EXPECT_ERR(late.call_sync("add", joint::pack(1, 1)), JOINT_E_STATE);
    JT_EXPECT_ERR(late.notify("x"), JOINT_E_STATE);
    JT_EXPECT_ERR(late.call("add", {}, [](joint::Result<Bytes>) {}), JOINT_E_STATE);
    JT_EXPECT_ERR(late.close(), JOINT_E_STATE);
    JT_EXPECT_ERR(late.cancel(1), JOINT_E_STATE);
    JT_EXPECT_ERR(late.call("add", {}, nullptr), JOINT_E_STATE);
    JT_EXPECT_ERR(late.call("add", {}, joint::CallOptions(), nullptr, nullptr), JOINT_E_STATE);
    JT_EXPECT_ERR(late.call_stream("add"), JOINT_E_STATE);
    JT_EXPECT_ERR(late.send(1, joint::pack_value(1)), JOINT_E_STATE);
    JT_EXPECT_ERR(late.send_value(1, 1), JOINT_E_STATE);
    JT_EXPECT_ERR(late.end_input(1), JOINT_E_STATE);
    JT_EXPECT_ERR(late.throw_error(1, 1, "x"), JOINT_E_STATE);
    JT_EXPECT_ERR(late.grant(1, 1), JOINT_E_STATE);
    EXPECT_EQ(late.extension(), joint::Extension::Off);
    EXPECT_EQ(late.user_data(), nullptr);
} // `late` destroyed after its context: no joint_conn_free (ASan / valgrind would see it)

TEST_F(Loop, ConnectionOwnedByACallbackDestroyedDuringContextDestruction) {
    // A completion callable owns a Connection; the context's destruction completes the call
    // (CANCELLED) and destroys the callable, and with it the Connection, mid-destruction.
    joint::Connection owned = ctx.connect(uri).value();
    joint::ConnectionRef ref = owned;
    int runs = 0;
    jt::Defer end{[this] { finish(); }};
    JT_ASSERT_OK(ref.call("hold", {}, [c = std::move(owned), &runs](joint::Result<Bytes> r) {
        runs++;
        EXPECT_FALSE(r.ok());
        EXPECT_FALSE(c.is_open()); // inert: its context is going away
    }));
    EXPECT_TRUE(jt::run_until(ctx, [&] { return held.size() == 1; }));
    conn = joint::Connection();
    ctx = Context();
    EXPECT_EQ(runs, 1);
}

TEST_F(Loop, ConnectionMoveAndRelease) {
    joint::Connection a = ctx.connect(uri).value();
    joint::Connection b = std::move(a);
    EXPECT_FALSE(a);
    EXPECT_TRUE(b);
    JT_EXPECT_ERR(a.call_sync("add", joint::pack(1, 2)), JOINT_E_NULL);
    JT_EXPECT_OK(b.call_sync("add", joint::pack(1, 2), 5000));
    joint::ConnectionRef ref = b.ref();
    EXPECT_EQ(ref.raw(), b.raw());
    joint_conn *raw = b.release();
    EXPECT_FALSE(b);
    EXPECT_TRUE(joint_conn_is_open(raw));
    joint_conn_free(raw); // ours now
}

TEST_F(Loop, RequestMoveReleaseAndDrop) {
    JT_ASSERT_OK(conn.call("hold", joint::pack(1), nullptr));
    JT_ASSERT_OK(conn.call("hold", joint::pack(2), nullptr));
    JT_ASSERT_OK(conn.call("hold", joint::pack(3), nullptr));
    ASSERT_TRUE(jt::run_until(ctx, [&] { return held.size() == 3; }));
    EXPECT_EQ(ctx.unanswered(), 3u);

    Request a = std::move(held[0]);
    EXPECT_FALSE(held[0]);
    EXPECT_TRUE(a);
    EXPECT_EQ(a.method(), "hold");
    EXPECT_EQ(held[0].method(), "");    // empty: accessors give empty values
    EXPECT_EQ(held[0].params().size(), 0u);
    JT_EXPECT_ERR(held[0].reply_value(1), JOINT_E_STATE);

    JT_EXPECT_OK(a.reply_value(10));
    EXPECT_FALSE(a);
    JT_EXPECT_ERR(a.reply_value(11), JOINT_E_STATE); // consumed
    JT_EXPECT_ERR(a.reply_error(1, "x"), JOINT_E_STATE);
    JT_EXPECT_ERR(a.reply(Bytes()), JOINT_E_STATE);

    joint_request *raw = held[1].release();
    EXPECT_FALSE(held[1]);
    joint_request_free(raw); // NOT_ANSWERED
    held[2] = Request();     // move-assigned over: the old one is dropped, NOT_ANSWERED
    ASSERT_TRUE(jt::run_until(ctx, [&] { return ctx.unanswered() == 0; }));
}

TEST(Buffers, WriterReaderBufferOwnership) {
    joint::Writer w = joint::Writer::create().value();
    w.write_array(2).write_int(1).write_str("x");
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(jt::hex(w.data()), "9201a178");
    joint::Writer w2 = std::move(w);
    EXPECT_FALSE(w);
    EXPECT_EQ(jt::hex(w2.data()), "9201a178");
    EXPECT_TRUE(w.data().empty());
    w.write_int(1); // on an empty writer: recorded as a failure
    EXPECT_FALSE(w.ok());
    JT_EXPECT_ERR(w.status(), JOINT_E_NULL);
    joint_writer *rw = w2.release();
    joint_writer_free(rw);

    std::vector<uint8_t> data = joint::pack(5);
    joint::Reader r = joint::Reader::create(data).value();
    joint::Reader r2 = std::move(r);
    EXPECT_FALSE(r);
    auto t = r2.read<std::tuple<int>>();
    JT_ASSERT_OK(t);
    EXPECT_EQ(std::get<0>(*t), 5);
    joint_reader_free(r2.release());

    joint::Buffer empty;
    EXPECT_FALSE(empty);
    EXPECT_TRUE(empty.bytes().empty());
    EXPECT_EQ(empty.size(), 0u);
    joint_buf_free(empty.release());
}

TEST_F(Loop, BufferFromCallSync) {
    auto r = conn.call_sync("add", joint::pack(20, 22), 5000);
    JT_ASSERT_OK(r);
    joint::Buffer buf = std::move(r).value();
    EXPECT_EQ(jt::hex(buf), "2a");
    joint::Buffer moved = std::move(buf);
    EXPECT_FALSE(buf);
    EXPECT_EQ(moved.as<int>().value(), 42);
    joint_buf *raw = moved.release();
    joint_buf_free(raw);
}

TEST(Build, ExceptionMode) {
#if defined(JOINT_TEST_EXPECT_NO_EXCEPTIONS)
    EXPECT_EQ(JOINT_HPP_EXCEPTIONS, 0);
#else
    EXPECT_EQ(JOINT_HPP_EXCEPTIONS, 1);
#endif
    EXPECT_EQ(joint::version(), JOINT_VERSION_STRING);
    EXPECT_EQ(joint::status_str(JOINT_E_TIMEOUT), joint_status_str(JOINT_E_TIMEOUT));
}
