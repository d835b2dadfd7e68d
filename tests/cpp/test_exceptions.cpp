// cpp_exceptions: no exception ever unwinds into C. One that escapes a request handler while
// the request is still the handler's becomes the error reply [JOINT_RPC_HANDLER_FAILED,
// what()]; one that escapes any other callback (or a handler that no longer holds its
// request) is swallowed and reported to the exception hook. Result::unwrap() throws
// joint::Exception. (Built with exceptions only; cpp_noexcept_* cover the other mode.)
#include "test_util.hpp"

#include <stdexcept>

#if !JOINT_HPP_EXCEPTIONS
#error "cpp_exceptions needs exceptions"
#endif

using joint::Bytes;
using joint::Context;
using joint::Request;

namespace {

std::vector<std::pair<std::string, std::string>> g_reports;
void record_hook(const char *where, const char *what) { g_reports.emplace_back(where, what); }

struct Exceptions : ::testing::Test {
    void SetUp() override {
        g_reports.clear();
        previous = joint::set_exception_hook(record_hook);
        ctx = Context::create().value();
        uri = ctx.listen("tcp://127.0.0.1:0").value();
        conn = ctx.connect(uri).value();
    }
    void TearDown() override {
        conn = joint::Connection();
        ctx = Context();
        EXPECT_EQ(joint::set_exception_hook(previous), &record_hook);
    }
    joint::Error call_error(const char *method) {
        auto r = conn.call_sync(method, {}, 5000);
        EXPECT_FALSE(r.ok()) << method << " succeeded";
        return r ? joint::Error() : r.error();
    }
    joint::ExceptionHook previous = nullptr;
    Context ctx;
    std::string uri;
    joint::Connection conn;
};

TEST_F(Exceptions, HandlerExceptionBecomesErrorReply) {
    JT_ASSERT_OK(ctx.on("boom", [](Request) { throw std::runtime_error("boom!"); }));
    JT_ASSERT_OK(ctx.on("int", [](Request) { throw 42; }));
    JT_ASSERT_OK(ctx.on("local", [](Request req) {
        Request mine = std::move(req); // still the handler's: destroyed by the unwinding
        throw std::logic_error("after a move");
    }));
    joint::Error e = call_error("boom");
    EXPECT_TRUE(e.is_remote());
    EXPECT_EQ(e.remote_code(), JOINT_RPC_HANDLER_FAILED);
    EXPECT_EQ(e.message(), "boom!");
    EXPECT_EQ(call_error("int").message(), "unknown exception");
    EXPECT_EQ(call_error("local").message(), "after a move");
    EXPECT_TRUE(g_reports.empty()); // answered, so not reported
    // the handler stays registered and works on
    EXPECT_EQ(call_error("boom").message(), "boom!");
}

TEST_F(Exceptions, FallbackExceptionBecomesErrorReply) {
    // The fallback is a request handler like on()'s: what it throws while it holds the
    // request is the caller's error [JOINT_RPC_HANDLER_FAILED, what()], never a crash.
    int calls = 0;
    JT_ASSERT_OK(ctx.on_fallback([&calls](Request req) {
        ++calls;
        if (req.method() == "int")
            throw 42;
        throw std::runtime_error("no " + std::string(req.method()) + " here");
    }));
    JT_ASSERT_OK(ctx.on("fine", [](Request req) { (void)req.reply_value(1); }));
    joint::Error e = call_error("missing");
    EXPECT_TRUE(e.is_remote());
    EXPECT_EQ(e.remote_code(), JOINT_RPC_HANDLER_FAILED);
    EXPECT_EQ(e.message(), "no missing here");
    EXPECT_EQ(call_error("int").message(), "unknown exception");
    EXPECT_EQ(calls, 2);
    EXPECT_TRUE(g_reports.empty()); // answered, so not reported
    // the fallback stays set and the context works on
    EXPECT_EQ(call_error("again").message(), "no again here");
    auto fine = conn.call_sync("fine", {}, 5000);
    JT_ASSERT_OK(fine);
    EXPECT_EQ(fine->as<int>().value(), 1);
    EXPECT_EQ(calls, 3);
    EXPECT_EQ(ctx.unanswered(), 0u);

    // replied, then threw: the caller has its answer, the exception goes to the hook
    JT_ASSERT_OK(ctx.on_fallback([](Request req) {
        (void)req.reply_value(2);
        throw std::runtime_error("fallback too late");
    }));
    auto r = conn.call_sync("late", {}, 5000);
    JT_ASSERT_OK(r);
    EXPECT_EQ(r->as<int>().value(), 2);
    ASSERT_EQ(g_reports.size(), 1u);
    EXPECT_EQ(g_reports[0], std::make_pair(std::string("request handler"), std::string("fallback too late")));
}

TEST_F(Exceptions, HandlerThatNoLongerHoldsItsRequest) {
    // replied, then threw: the peer has its answer, the exception goes to the hook
    JT_ASSERT_OK(ctx.on("replied", [](Request req) {
        (void)req.reply_value(1);
        throw std::runtime_error("too late");
    }));
    auto r = conn.call_sync("replied", {}, 5000);
    JT_ASSERT_OK(r);
    EXPECT_EQ(r->as<int>().value(), 1);
    ASSERT_EQ(g_reports.size(), 1u);
    EXPECT_EQ(g_reports[0], std::make_pair(std::string("request handler"), std::string("too late")));

    // handed to a timer, then threw: the timer answers later
    JT_ASSERT_OK(ctx.on("handed", [this](Request req) {
        JT_EXPECT_OK(ctx.after(10, [req = std::move(req)]() mutable { (void)req.reply_value(2); }));
        throw std::runtime_error("handed on");
    }));
    auto h = conn.call_sync("handed", {}, 5000);
    JT_ASSERT_OK(h);
    EXPECT_EQ(h->as<int>().value(), 2);
    ASSERT_EQ(g_reports.size(), 2u);
    EXPECT_EQ(g_reports[1].second, "handed on");
}

TEST_F(Exceptions, HandlerCatchingItsOwnExceptionAfterTheRequestWentIsNotAnswered) {
    JT_ASSERT_OK(ctx.on("caught", [](Request req) {
        try {
            Request inner = std::move(req);
            throw std::runtime_error("inner");
        } catch (const std::exception &) {
            // `inner` was destroyed by the unwinding, but the handler returned normally:
            // the request was dropped, as without the exception
        }
    }));
    joint::Error e = call_error("caught");
    EXPECT_EQ(e.remote_code(), JOINT_RPC_NOT_ANSWERED);
    EXPECT_TRUE(g_reports.empty());
}

TEST_F(Exceptions, OtherCallbacksReportToTheHook) {
    JT_ASSERT_OK(ctx.on("add", [](Request req) { (void)req.reply_value(3); }));
    auto probe = jt::probe();
    int ran = 0;
    JT_ASSERT_OK(conn.call("add", {}, [probe, &ran](joint::Result<Bytes>) {
        ran++;
        throw std::runtime_error("in completion");
    }));
    ASSERT_TRUE(jt::run_until(ctx, [&] { return ran == 1; }));
    EXPECT_EQ(probe.use_count(), 1); // the box went anyway

    JT_ASSERT_OK(ctx.on_notification([](joint::ConnectionRef, std::string_view, Bytes) { throw std::runtime_error("in notification"); }));
    JT_ASSERT_OK(conn.notify("n"));
    JT_ASSERT_OK(ctx.after(0, [] { throw 7; }));
    ASSERT_TRUE(jt::run_until(ctx, [&] { return g_reports.size() == 3; }));

    JT_ASSERT_OK(ctx.on_connection([](const joint::ConnEvent &) { throw std::runtime_error("in conn event"); }));
    joint::Connection c2 = ctx.connect(uri).value();
    ASSERT_TRUE(jt::run_until(ctx, [&] { return g_reports.size() >= 5; })); // connected + accepted

    std::map<std::string, std::string> by_kind;
    for (auto &[where, what] : g_reports)
        by_kind[where] = what;
    EXPECT_EQ(by_kind["call completion"], "in completion");
    EXPECT_EQ(by_kind["notification"], "in notification");
    EXPECT_EQ(by_kind["timer"], "unknown exception");
    EXPECT_EQ(by_kind["connection event"], "in conn event");
    // and the context is fine
    JT_EXPECT_OK(conn.call_sync("add", {}, 5000));
}

TEST_F(Exceptions, StreamingCallbacks) {
    // An event callable that throws while its box holds the request answers it
    // [HANDLER_FAILED, what()]; a call's event callable reports to the hook and the call goes
    // on; a pool handler that throws holding its request answers it.
    auto probe = jt::probe();
    JT_ASSERT_OK(ctx.on("ev_boom", [probe](Request req) {
        JT_EXPECT_OK(req.on_events([probe](Request &, const joint::RequestEvent &ev) {
            if (ev.kind == joint::InputKind::Value)
                throw std::runtime_error("bad value");
        }));
    }));
    JT_ASSERT_OK(ctx.on("two", [](Request req) {
        (void)req.yield_value(1);
        (void)req.yield_value(2);
        (void)req.reply_value(3);
    }));
    JT_ASSERT_OK(ctx.on_pool("pool_boom", [](Request) { throw std::runtime_error("on a worker"); }));

    std::optional<joint::Error> err;
    auto id = conn.call("ev_boom", {}, joint::CallOptions().client_stream(), nullptr, [&](joint::Result<Bytes> r) {
        err = r ? joint::Error() : r.error();
    });
    JT_ASSERT_OK(id);
    for (int64_t deadline = jt::now_ms() + 5000; jt::now_ms() < deadline;) { // credit comes with the negotiation
        auto st = conn.send_value(*id, 1);
        JT_ASSERT_OK(st);
        if (*st == joint::SendStatus::Sent)
            break;
        (void)ctx.wait(10);
    }
    ASSERT_TRUE(jt::run_until(ctx, [&] { return err.has_value(); }));
    EXPECT_EQ(err->remote_code(), JOINT_RPC_HANDLER_FAILED);
    EXPECT_EQ(err->message(), "bad value");
    EXPECT_TRUE(jt::run_until(ctx, [&] { return probe.use_count() == 2; })); // the box went with the answer

    int items = 0;
    std::optional<int> result;
    JT_ASSERT_OK(conn.call("two", {}, joint::CallOptions(), [&](const joint::CallEvent &) {
        items++;
        throw std::runtime_error("in call event");
    }, [&](joint::Result<Bytes> r) { result = joint::unpack<int>(r.value()).value(); }));
    ASSERT_TRUE(jt::run_until(ctx, [&] { return result.has_value(); }));
    EXPECT_EQ(items, 2);
    EXPECT_EQ(*result, 3);
    ASSERT_EQ(g_reports.size(), 2u);
    EXPECT_EQ(g_reports[0], std::make_pair(std::string("call event"), std::string("in call event")));

    joint::Error e = call_error("pool_boom");
    EXPECT_EQ(e.remote_code(), JOINT_RPC_HANDLER_FAILED);
    EXPECT_EQ(e.message(), "on a worker");
    EXPECT_EQ(g_reports.size(), 2u);
}

TEST_F(Exceptions, LogCallback) {
    joint::Config config = joint::Config::create().value();
    JT_ASSERT_OK(config.on_log(JOINT_LOG_DEBUG, [](int32_t, std::string_view) { throw std::runtime_error("in log"); }));
    Context logged = Context::create(config).value();
    std::string luri = logged.listen("tcp://127.0.0.1:0").value();
    joint::Connection c = ctx.connect(luri).value(); // `logged` accepts it and logs that (debug)
    auto seen = [] {
        for (auto &[where, what] : g_reports)
            if (where == "log" && what == "in log")
                return true;
        return false;
    };
    for (int64_t deadline = jt::now_ms() + 5000; !seen() && jt::now_ms() < deadline;) {
        (void)ctx.wait(5);
        (void)logged.wait(5);
    }
    EXPECT_TRUE(seen()) << g_reports.size() << " reports";
}

TEST(ExceptionsUnwrap, ThrowsJointException) {
    joint::Result<int> ok(1);
    EXPECT_EQ(ok.unwrap(), 1);
    joint::Result<int> bad(joint::Error(JOINT_E_CLOSED, "gone"));
    try {
        (void)bad.unwrap();
        FAIL() << "no exception";
    } catch (const joint::Exception &e) {
        EXPECT_EQ(e.error().code(), JOINT_E_CLOSED);
        EXPECT_STREQ(e.what(), (std::string(joint_status_str(JOINT_E_CLOSED)) + ": gone").c_str());
    }
    joint::Result<void> v(joint::Error(JOINT_E_STATE, "s"));
    EXPECT_THROW(v.unwrap(), joint::Exception);
    EXPECT_THROW((void)joint::unpack<int>(joint::pack_value("x")).unwrap(), joint::Exception);
    auto moved = joint::Result<std::string>(std::string("v"));
    EXPECT_EQ(std::move(moved).unwrap(), "v");
}

TEST(ExceptionsHook, DefaultPrintsToStderr) {
    joint::ExceptionHook old = joint::set_exception_hook(nullptr);
    Context ctx = Context::create().value();
    JT_ASSERT_OK(ctx.after(0, [] { throw std::runtime_error("to stderr"); }));
    ::testing::internal::CaptureStderr();
    jt::run_for(ctx, 20);
    std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("joint: exception escaped a timer callback: to stderr"), std::string::npos) << err;
    joint::set_exception_hook(old);
}

} // namespace
