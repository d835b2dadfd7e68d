// cpp_stream: the joint extension through joint.hpp. A server context and a client context
// on the test thread, driven by one poll loop (client first), unless a case needs the server
// on its own thread (pulled streams: Stream::next runs only the client's context). Covers:
//   - server streaming with credit: window 2, 500 items, a handler that yields until
//     WouldBlock and resumes on Writable (Request::on_events); manual credit with grant();
//   - manual credit for a served call (Request::set_manual_credit, Request::grant): the
//     client never gets more than the window beyond what the server granted;
//   - a pulled Stream (call_stream / next) with a slow consumer: the producer never gets more
//     than the window ahead; Done, then JOINT_E_STATE; a remote error; Timeout; destroying a
//     running Stream cancels the call; the call's own timeout is an error, not Timeout;
//   - client streaming: send until WouldBlock, the Writable event, end_input; sending right
//     after connecting (before the extension is negotiated);
//   - bidirectional streaming; throw_error; cancel and deadline as both sides see them;
//   - kwargs (a map, raw bytes, removed, invalid);
//   - Context::on_pool: a worker thread pulling inputs (next_input), yielding and waiting
//     for credit (wait_writable); on_events and conn() refused there; a handler replaced
//     while it runs is destroyed after that run, on the worker thread;
//   - a stock server (Config::set_extension(false)): items as one array, kwargs as the last
//     param, send / end_input / throw_error refused, on_events refused (the request stays);
//   - inputs queued before on_events (a workaround for a library bug, see the report);
//   - no leaks: every box (a call's event + completion box, a request's event box, a pool
//     handler) is destroyed exactly when it should be (use-count probes), a Stream may
//     outlive its Context.
#include "test_util.hpp"

#include <poll.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <thread>

using joint::Bytes;
using joint::CallOptions;
using joint::Context;
using joint::InputKind;
using joint::Request;
using joint::RequestEvent;
using joint::SendStatus;
using joint::YieldStatus;

namespace {

/// What the server's producers did (atomics: also used by a server on its own thread).
struct ServerStats {
    std::atomic<int> would_block{0}; // yields that found no credit
    std::atomic<int> writable{0};    // Writable events
    std::atomic<int64_t> yielded{0}; // items sent
};

/// count(n): yields 0..n-1 within the caller's credit, then answers n.
struct Counter {
    int64_t next = 0, n = 0;
    ServerStats *stats = nullptr;
    void pump(Request &req) {
        while (next < n) {
            auto st = req.yield_value(next);
            if (!st)
                return; // the call ended
            if (*st == YieldStatus::WouldBlock) {
                stats->would_block++;
                return; // Writable brings us back
            }
            stats->yielded++;
            next++;
        }
        (void)req.reply_value(n);
    }
};

/// Serve count(n) on `ctx`. `probe` is copied into every event callable (to see it go).
void serve_count(Context &ctx, ServerStats &stats, const jt::Probe &probe, std::function<void(Request &)> on_stock = nullptr) {
    JT_ASSERT_OK(ctx.on("count", [&stats, probe, on_stock](Request req) {
        auto a = req.args<int64_t>();
        if (!a)
            return (void)req.reply_error(a.error());
        if (!req.is_extended() && on_stock)
            on_stock(req);
        Counter c{0, std::get<0>(*a), &stats};
        c.pump(req); // what the first credit allows (a stock caller: everything, as one array)
        if (!req)
            return;
        JT_EXPECT_OK(req.on_events([c, probe](Request &r, const RequestEvent &ev) mutable {
            (void)probe;
            if (ev.kind == InputKind::Writable) {
                c.stats->writable++;
                c.pump(r);
            } // an ended call: the box, and the request in it, go by themselves
        }));
    }));
}

/// A served call that keeps its request and records its events.
struct Held {
    std::vector<InputKind> events;
    uint32_t deadline_ms = 0;
    uint32_t flags = 0;
    bool extended = false;
    joint::Status late_yield = 1, late_reply = 1; // after the call ended
};

/// A client call's record.
struct Rec {
    std::vector<int64_t> items;
    int writable = 0, runs = 0;
    joint::Status status = 12345;
    std::vector<uint8_t> result; // the result, or the error object
    std::optional<int64_t> remote_code;
    std::string message;
};
auto on_event(Rec &r) {
    return [&r](const joint::CallEvent &ev) {
        EXPECT_TRUE(ev.conn);
        EXPECT_NE(ev.call_id, 0u);
        if (ev.is_item())
            r.items.push_back(ev.as<int64_t>().value_or(-1));
        else if (ev.is_writable())
            r.writable++;
    };
}
auto on_done(Rec &r) {
    return [&r](const joint::Response &resp) {
        r.runs++;
        r.status = resp.status();
        r.result = (resp.ok() ? resp.result() : resp.error_object()).to_vector();
        if (!resp.ok()) {
            joint::Error e = resp.error();
            r.remote_code = e.remote_code();
            r.message = e.message();
        }
    };
}

struct Streaming : ::testing::Test {
    void SetUp() override {
        main_id = std::this_thread::get_id();
        joint::Config cfg = joint::Config::create().value();
        JT_ASSERT_OK(cfg.set_window(4));  // values into a call: the client waits after 4
        JT_ASSERT_OK(cfg.set_workers(2)); // the on_pool handlers
        srv = Context::create(cfg).value();
        register_handlers(srv);
        uri = srv.listen("tcp://127.0.0.1:0").value();
        cli = Context::create().value();
        conn = cli.connect(uri).value();
        EXPECT_EQ(conn.extension(), joint::Extension::Pending);
        ASSERT_TRUE(run_until([&] { return conn.extension() != joint::Extension::Pending; }));
        ASSERT_EQ(conn.extension(), joint::Extension::On);
        box_baseline = box_probe.use_count(); // the count handler's own copy
    }
    void TearDown() override { finish(); }
    // Destroy the client, then the server (see jt::Defer).
    void finish() {
        conn = joint::Connection();
        cli = Context();
        late.clear();
        srv = Context();
    }

    void register_handlers(Context &ctx) {
        serve_count(ctx, stats, box_probe, [this](Request &req) {
            // a stock request: on_events is refused and the request stays ours
            auto p = box_probe;
            auto r = req.on_events([p](Request &, const RequestEvent &) {});
            stock_on_events = r ? 0 : r.error().code();
            stock_kept = static_cast<bool>(req);
            stock_probe_after = box_probe.use_count();
        });
        // sum(): adds the values sent in; answers at End; a throw answers with the thrown object
        JT_ASSERT_OK(ctx.on("sum", [this](Request req) {
            sum_extended = req.is_extended();
            sum_flags = req.flags();
            JT_EXPECT_OK(req.on_events([this, total = int64_t{0}, p = box_probe](Request &r, const RequestEvent &ev) mutable {
                (void)p;
                switch (ev.kind) {
                case InputKind::Value: total += ev.as<int64_t>().value_or(-1000000); break;
                case InputKind::End: (void)r.reply_value(total); break;
                case InputKind::Throw:
                    thrown = ev.data.to_vector();
                    JT_EXPECT_OK(r.reply_error(ev.data));
                    break;
                default: break;
                }
            }));
        }));
        // hold(): never answers; records its events
        JT_ASSERT_OK(ctx.on("hold", [this](Request req) {
            auto h = std::make_shared<Held>();
            h->deadline_ms = req.deadline_ms();
            h->flags = req.flags();
            h->extended = req.is_extended();
            holds.push_back(h);
            JT_EXPECT_OK(req.on_events([h, p = box_probe](Request &r, const RequestEvent &ev) {
                (void)p;
                h->events.push_back(ev.kind);
                if (ev.ended()) { // the call was answered for us: later answers are dropped
                    auto y = r.yield_value(1);
                    h->late_yield = y ? 0 : y.error().code();
                    auto a = r.reply_value(1);
                    h->late_reply = a ? 0 : a.error().code();
                }
            }));
        }));
        // kw(): answers [hex of params, hex of kwargs or ""]
        JT_ASSERT_OK(ctx.on("kw", [](Request req) {
            auto k = req.kwargs();
            (void)req.reply_value(std::make_tuple(jt::hex(req.params()), k ? jt::hex(*k) : std::string()));
        }));
        JT_ASSERT_OK(ctx.on("fail", [](Request req) { (void)req.reply_error(77, "failed on purpose"); }));
        // echo(): streams every value sent in back, doubled; answers their count at End
        JT_ASSERT_OK(ctx.on("echo", [this](Request req) {
            struct Echo {
                std::deque<int64_t> out;
                bool ended = false;
                int64_t count = 0;
                ServerStats *stats;
                void flush(Request &r) {
                    while (!out.empty()) {
                        auto st = r.yield_value(out.front() * 2);
                        if (!st)
                            return;
                        if (*st == YieldStatus::WouldBlock) {
                            stats->would_block++;
                            return;
                        }
                        out.pop_front();
                    }
                    if (ended)
                        (void)r.reply_value(count);
                }
            };
            JT_EXPECT_OK(req.on_events([e = Echo{{}, false, 0, &stats}, p = box_probe](Request &r, const RequestEvent &ev) mutable {
                (void)p;
                if (ev.kind == InputKind::Value) {
                    e.out.push_back(ev.as<int64_t>().value_or(-1));
                    e.count++;
                } else if (ev.kind == InputKind::End) {
                    e.ended = true;
                }
                e.flush(r);
            }));
        }));
        // late(): keeps the request without events (the test registers them later)
        JT_ASSERT_OK(ctx.on("late", [this](Request req) { late.push_back(std::move(req)); }));
        // pool_echo(): on a worker thread, streams every value sent in back; answers their count
        JT_ASSERT_OK(ctx.on_pool("pool_echo", [this, p = pool_probe](Request req) {
            pool_calls++;
            if (std::this_thread::get_id() == main_id)
                pool_on_main++;
            auto refused = req.on_events([](Request &, const RequestEvent &) {});
            pool_on_events = refused ? 0 : refused.error().code();
            pool_conn_empty = !req.conn();
            int64_t n = 0;
            for (;;) {
                auto ev = req.next_input(10000);
                if (!ev)
                    return (void)req.reply_error(ev.error());
                if (ev->kind == InputKind::End)
                    break;
                if (ev->kind != InputKind::Value)
                    return; // the call ended
                for (;;) {
                    auto st = req.yield(ev->data);
                    if (!st)
                        return;
                    if (*st == YieldStatus::Sent)
                        break;
                    pool_waits++;
                    auto w = req.wait_writable(10000);
                    if (!w)
                        return;
                }
                n++;
            }
            (void)req.reply_value(n);
        }));
    }

    // Wait up to `ms` for either context's fd (or timer), then process the client, then the
    // server.
    void pump(int ms) {
        pollfd fds[2] = {{cli ? cli.fd() : -1, POLLIN, 0}, {srv ? srv.fd() : -1, POLLIN, 0}};
        int t = ms;
        for (Context *c : {&cli, &srv}) {
            int ct = *c ? c->timeout_ms() : -1;
            if (ct >= 0 && ct < t)
                t = ct;
        }
        (void)::poll(fds, 2, t);
        for (Context *c : {&cli, &srv}) {
            if (*c) {
                auto r = c->process();
                EXPECT_TRUE(r.ok()) << r.error().to_string();
            }
        }
    }
    template <class P>
    bool run_until(P pred, int64_t timeout_ms = 10000) {
        int64_t deadline = jt::now_ms() + timeout_ms;
        while (!pred()) {
            if (jt::now_ms() >= deadline)
                return false;
            pump(20);
        }
        return true;
    }
    void run_for(int64_t ms) {
        int64_t deadline = jt::now_ms() + ms;
        while (jt::now_ms() < deadline)
            pump(5);
    }
    // Send `values` into `id`; on WouldBlock run the loop until the call's Writable event.
    // Returns how often it had to wait.
    int send_all(joint::CallId id, int64_t from, int64_t to, Rec &r) {
        int waits = 0;
        for (int64_t v = from; v <= to;) {
            auto st = conn.send_value(id, v);
            if (!st) {
                ADD_FAILURE() << "send " << v << ": " << st.error().to_string();
                return waits;
            }
            if (*st == SendStatus::Sent) {
                v++;
                continue;
            }
            waits++;
            int w = r.writable;
            if (!run_until([&] { return r.writable > w || r.runs > 0; })) {
                ADD_FAILURE() << "no Writable event";
                return waits;
            }
        }
        return waits;
    }
    // Every event callable of the server is gone (each holds a copy of box_probe).
    bool server_boxes_gone() {
        return run_until([&] { return box_probe.use_count() == box_baseline; });
    }

    std::thread::id main_id;
    jt::Probe box_probe = jt::probe();
    long box_baseline = 0;
    jt::Probe pool_probe = jt::probe();
    ServerStats stats;
    std::vector<std::shared_ptr<Held>> holds;
    std::vector<uint8_t> thrown;
    bool sum_extended = false;
    uint32_t sum_flags = 0;
    joint::Status stock_on_events = 1;
    bool stock_kept = false;
    long stock_probe_after = 0;
    std::atomic<int> pool_calls{0}, pool_on_main{0}, pool_waits{0}, pool_on_events{1};
    std::atomic<bool> pool_conn_empty{false};
    Context srv; // declared before the requests and connections that refer to it
    std::vector<Request> late;
    std::string uri;
    Context cli;
    joint::Connection conn;
};

TEST_F(Streaming, ServerStreamingWithCredit) {
    Rec c;
    auto call_probe = jt::probe();
    jt::Defer end{[this] { finish(); }};
    auto id = conn.call("count", joint::pack(500), CallOptions().window(2),
                        [&c, ev = on_event(c), call_probe](const joint::CallEvent &e) { ev(e); },
                        [&c, done = on_done(c), call_probe](const joint::Response &r) { done(r); });
    JT_ASSERT_OK(id);
    EXPECT_EQ(call_probe.use_count(), 3); // one box holds both callables
    ASSERT_TRUE(run_until([&] { return c.runs == 1; }));
    ASSERT_EQ(c.status, JOINT_OK) << c.message;
    EXPECT_EQ(joint::unpack<int64_t>(c.result).value(), 500);
    ASSERT_EQ(c.items.size(), 500u);
    for (int64_t i = 0; i < 500; i++)
        ASSERT_EQ(c.items[static_cast<size_t>(i)], i);
    EXPECT_GT(stats.would_block.load(), 0); // window 2: out of credit again and again
    EXPECT_GT(stats.writable.load(), 0);
    EXPECT_EQ(call_probe.use_count(), 1); // destroyed after the completion
    EXPECT_TRUE(server_boxes_gone());     // the handler's event box went with the answer
    JT_EXPECT_ERR(conn.grant(*id, 1), JOINT_E_STATE); // no longer running
}

TEST_F(Streaming, ManualCredit) {
    Rec c;
    jt::Defer end{[this] { finish(); }};
    auto id = conn.call("count", joint::pack(20), CallOptions().window(4).manual_credit(), on_event(c), on_done(c));
    JT_ASSERT_OK(id);
    ASSERT_TRUE(run_until([&] { return c.items.size() == 4; }));
    run_for(50);
    EXPECT_EQ(c.items.size(), 4u); // without grant() the producer stops at the window
    EXPECT_EQ(c.runs, 0);
    size_t granted = 4;
    while (c.runs == 0) {
        if (c.items.size() == granted && granted < 20) {
            JT_ASSERT_OK(conn.grant(*id, 4));
            granted += 4;
        }
        pump(20);
        ASSERT_LE(c.items.size(), granted);
    }
    EXPECT_EQ(c.status, JOINT_OK);
    EXPECT_EQ(c.items.size(), 20u);
    EXPECT_EQ(joint::unpack<int64_t>(c.result).value(), 20);
}

TEST_F(Streaming, ManualInputCredit) {
    // A served call whose values wait for Request::grant: the client, sending as fast as it
    // can, never gets more than the server's window (4) beyond what was granted.
    Rec c;
    jt::Defer end{[this] { finish(); }};
    auto id = conn.call("late", {}, CallOptions().client_stream(), on_event(c), on_done(c));
    JT_ASSERT_OK(id);
    ASSERT_TRUE(run_until([&] { return late.size() == 1; }));
    Request req = std::move(late.back());
    late.pop_back();
    JT_ASSERT_OK(req.set_manual_credit());
    struct Slow {
        std::vector<int64_t> got;
        Request *req = nullptr; // the box's Request, while the call runs
    };
    auto s = std::make_shared<Slow>();
    JT_ASSERT_OK(req.on_events([s, p = box_probe](Request &r, const RequestEvent &ev) {
        (void)p;
        s->req = &r;
        if (ev.kind == InputKind::Value) {
            s->got.push_back(ev.as<int64_t>().value_or(-1));
        } else if (ev.kind == InputKind::End) {
            (void)r.reply_value(static_cast<int64_t>(s->got.size()));
            s->req = nullptr;
        }
    }));
    EXPECT_FALSE(req); // moved into the box
    const int64_t total = 40;
    int64_t next = 0;
    size_t granted = 0;
    auto send_some = [&] {
        while (next < total) {
            auto st = conn.send_value(*id, next);
            ASSERT_TRUE(st.ok()) << st.error().to_string();
            if (*st == SendStatus::WouldBlock)
                return;
            next++;
        }
    };
    for (int i = 0; i < 20; i++) {
        send_some();
        pump(2);
    }
    EXPECT_EQ(s->got.size(), 4u); // nothing granted: the window, and the client waits
    EXPECT_EQ(next, 4);
    int64_t deadline = jt::now_ms() + 10000;
    while (granted < static_cast<size_t>(total)) {
        ASSERT_LT(jt::now_ms(), deadline);
        if (s->got.size() > granted) {
            ASSERT_TRUE(s->req);
            JT_ASSERT_OK(s->req->grant(1));
            granted++;
        }
        send_some();
        pump(s->got.size() > granted ? 0 : 5);
        ASSERT_LE(s->got.size(), granted + 4);
    }
    for (int64_t i = 0; i < total; i++)
        ASSERT_EQ(s->got[static_cast<size_t>(i)], i);
    JT_ASSERT_OK(conn.end_input(*id));
    ASSERT_TRUE(run_until([&] { return c.runs == 1; }));
    ASSERT_EQ(c.status, JOINT_OK) << c.message;
    EXPECT_EQ(joint::unpack<int64_t>(c.result).value(), total);
    JT_EXPECT_ERR(Request().grant(1), JOINT_E_STATE);
    JT_EXPECT_ERR(Request().set_manual_credit(), JOINT_E_STATE);
    EXPECT_TRUE(server_boxes_gone());
}

TEST_F(Streaming, ClientStreamingSum) {
    Rec c;
    jt::Defer end{[this] { finish(); }};
    auto id = conn.call("sum", {}, CallOptions().client_stream(), on_event(c), on_done(c));
    JT_ASSERT_OK(id);
    int waits = send_all(*id, 1, 300, c); // against the server's window of 4
    EXPECT_GT(waits, 0);
    EXPECT_GT(c.writable, 0);
    JT_ASSERT_OK(conn.end_input(*id));
    JT_EXPECT_ERR(conn.send_value(*id, 1), JOINT_E_UNSUPPORTED); // the input has ended
    JT_EXPECT_ERR(conn.end_input(*id), JOINT_E_UNSUPPORTED);
    ASSERT_TRUE(run_until([&] { return c.runs == 1; }));
    ASSERT_EQ(c.status, JOINT_OK) << c.message;
    EXPECT_EQ(joint::unpack<int64_t>(c.result).value(), 300 * 301 / 2);
    EXPECT_TRUE(sum_extended);
    EXPECT_TRUE(sum_flags & JOINT_CALL_FLAG_CLIENT_STREAM);
    JT_EXPECT_ERR(conn.send_value(*id, 1), JOINT_E_STATE); // the call is over
    EXPECT_TRUE(server_boxes_gone());
}

TEST_F(Streaming, SendRightAfterConnecting) {
    // The extension is still being negotiated: the call has no credit yet (WouldBlock), then
    // the Writable event comes when it starts.
    joint::Connection fresh = cli.connect(uri).value();
    ASSERT_EQ(fresh.extension(), joint::Extension::Pending);
    Rec c;
    jt::Defer end{[&] {
        fresh = joint::Connection();
        finish();
    }};
    auto id = fresh.call("sum", {}, CallOptions().client_stream(), on_event(c), on_done(c));
    JT_ASSERT_OK(id);
    for (int64_t v = 1; v <= 10;) {
        auto st = fresh.send_value(*id, v);
        JT_ASSERT_OK(st);
        if (*st == SendStatus::Sent) {
            v++;
            continue;
        }
        int w = c.writable;
        ASSERT_TRUE(run_until([&] { return c.writable > w; }));
    }
    JT_ASSERT_OK(fresh.end_input(*id));
    ASSERT_TRUE(run_until([&] { return c.runs == 1; }));
    ASSERT_EQ(c.status, JOINT_OK) << c.message;
    EXPECT_EQ(joint::unpack<int64_t>(c.result).value(), 55);
    EXPECT_EQ(fresh.extension(), joint::Extension::On);
}

TEST_F(Streaming, Bidirectional) {
    Rec c;
    jt::Defer end{[this] { finish(); }};
    // values in against the server's window of 4, items out against ours of 2
    auto id = conn.call("echo", {}, CallOptions().client_stream().window(2), on_event(c), on_done(c));
    JT_ASSERT_OK(id);
    send_all(*id, 0, 99, c);
    JT_ASSERT_OK(conn.end_input(*id));
    ASSERT_TRUE(run_until([&] { return c.runs == 1; }));
    ASSERT_EQ(c.status, JOINT_OK) << c.message;
    EXPECT_EQ(joint::unpack<int64_t>(c.result).value(), 100);
    ASSERT_EQ(c.items.size(), 100u);
    for (int64_t i = 0; i < 100; i++)
        ASSERT_EQ(c.items[static_cast<size_t>(i)], 2 * i);
    EXPECT_GT(stats.would_block.load(), 0);
    EXPECT_TRUE(server_boxes_gone());
}

TEST_F(Streaming, ThrowEndsTheCallWithTheHandlersAnswer) {
    Rec c;
    jt::Defer end{[this] { finish(); }};
    auto id = conn.call("sum", {}, CallOptions().client_stream(), on_event(c), on_done(c));
    JT_ASSERT_OK(id);
    JT_ASSERT_OK(conn.send_value(*id, 5));
    JT_ASSERT_OK(conn.throw_error(*id, 42, "stop it"));
    ASSERT_TRUE(run_until([&] { return c.runs == 1; }));
    EXPECT_EQ(c.status, JOINT_E_REMOTE);
    EXPECT_EQ(c.remote_code, 42);
    EXPECT_EQ(c.message, "stop it");
    EXPECT_EQ(jt::hex(thrown), "922aa773746f70206974"); // [42, "stop it"] as thrown
    JT_EXPECT_ERR(conn.throw_error(*id, joint::pack_value(1)), JOINT_E_STATE); // over
    EXPECT_TRUE(server_boxes_gone());
}

TEST_F(Streaming, CancelBothSidesSeeIt) {
    Rec c;
    auto call_probe = jt::probe();
    jt::Defer end{[this] { finish(); }};
    auto id = conn.call("hold", {}, CallOptions(), [call_probe](const joint::CallEvent &) {},
                        [&c, done = on_done(c), call_probe](const joint::Response &r) { done(r); });
    JT_ASSERT_OK(id);
    ASSERT_TRUE(run_until([&] { return holds.size() == 1; }));
    auto h = holds[0];
    EXPECT_TRUE(h->extended);
    EXPECT_EQ(h->deadline_ms, 0u);
    EXPECT_TRUE(h->flags & JOINT_CALL_FLAG_ASYNC_FLOW);
    JT_ASSERT_OK(conn.cancel(*id));
    ASSERT_TRUE(run_until([&] { return c.runs == 1 && !h->events.empty(); }));
    EXPECT_EQ(c.status, JOINT_E_CANCELLED);
    ASSERT_EQ(h->events.size(), 1u);
    EXPECT_EQ(h->events[0], InputKind::Cancelled);
    EXPECT_EQ(h->late_yield, JOINT_E_CANCELLED);
    EXPECT_EQ(h->late_reply, JOINT_E_CANCELLED); // dropped (and consumed)
    EXPECT_EQ(call_probe.use_count(), 1);
    EXPECT_TRUE(server_boxes_gone()); // the box, with its request, went with the call
    EXPECT_TRUE(run_until([&] { return srv.unanswered() == 0; }));
}

TEST_F(Streaming, DeadlineTimesOutBothSides) {
    Rec c;
    jt::Defer end{[this] { finish(); }};
    int64_t t0 = jt::now_ms();
    auto id = conn.call("hold", {}, CallOptions().timeout_ms(150), on_event(c), on_done(c));
    JT_ASSERT_OK(id);
    ASSERT_TRUE(run_until([&] { return holds.size() == 1; }));
    auto h = holds[0];
    EXPECT_EQ(h->deadline_ms, 150u);
    // Only the server runs until its deadline has passed (the client's loop "runs late"):
    // the server answers DEADLINE_EXCEEDED on its own; the client still reports its own
    // timeout.
    while (h->events.empty() && jt::now_ms() - t0 < 5000)
        JT_ASSERT_OK(srv.wait(10));
    ASSERT_EQ(h->events.size(), 1u);
    EXPECT_EQ(h->events[0], InputKind::Timeout);
    EXPECT_GE(jt::now_ms() - t0, 140);
    EXPECT_EQ(h->late_yield, JOINT_E_TIMEOUT);
    EXPECT_EQ(h->late_reply, JOINT_E_TIMEOUT);
    ASSERT_TRUE(run_until([&] { return c.runs == 1; }));
    EXPECT_EQ(c.status, JOINT_E_TIMEOUT) << c.message;
    EXPECT_TRUE(server_boxes_gone());
    EXPECT_TRUE(run_until([&] { return srv.unanswered() == 0; }));
}

TEST_F(Streaming, Kwargs) {
    auto sync = [&](const CallOptions &opts, joint::Bytes params) {
        Rec c;
        auto id = conn.call("kw", params, opts, on_done(c));
        EXPECT_TRUE(id.ok()) << (id ? "" : id.error().to_string());
        EXPECT_TRUE(run_until([&] { return c.runs == 1; }));
        EXPECT_EQ(c.status, JOINT_OK) << c.message;
        return joint::unpack<std::tuple<std::string, std::string>>(c.result).value_or(std::tuple<std::string, std::string>());
    };
    CallOptions opts;
    EXPECT_EQ(opts.raw(), nullptr); // no C handle until a setter runs
    opts.kwargs(std::map<std::string, int>{{"x", 7}});
    JT_ASSERT_OK(opts.status());
    EXPECT_NE(opts.raw(), nullptr);
    EXPECT_EQ(sync(opts, joint::pack(1)), std::make_tuple(std::string("9101"), std::string("81a17807")));
    // raw bytes; then removed
    opts.kwargs(joint::pack_value(std::map<std::string, std::string>{{"k", "v"}}));
    EXPECT_EQ(std::get<1>(sync(opts, {})), "81a16ba176");
    opts.kwargs(Bytes());
    EXPECT_EQ(sync(opts, joint::pack(1)), std::make_tuple(std::string("9101"), std::string()));
    // one CallOptions serves many calls; moved, it moves its handle
    CallOptions moved = std::move(opts);
    EXPECT_EQ(opts.raw(), nullptr);
    EXPECT_NE(moved.raw(), nullptr);

    // not a map: recorded, and every call with these options fails with it (nothing leaks)
    auto probe = jt::probe();
    CallOptions bad;
    bad.kwargs(joint::pack_value(1)).window(2);
    EXPECT_FALSE(bad.ok());
    JT_EXPECT_ERR(bad.status(), JOINT_E_INVAL);
    JT_EXPECT_ERR(conn.call("kw", {}, bad, [probe](const joint::CallEvent &) {}, [probe](joint::Result<Bytes>) {}), JOINT_E_INVAL);
    JT_EXPECT_ERR(conn.call_stream("kw", {}, bad), JOINT_E_INVAL);
    EXPECT_EQ(probe.use_count(), 1);
}

TEST_F(Streaming, PoolHandlerOnAWorkerThread) {
    Rec c;
    jt::Defer end{[this] { finish(); }};
    EXPECT_EQ(pool_probe.use_count(), 2); // the registration's box
    // window 1: the worker waits for credit after each item
    auto id = conn.call("pool_echo", {}, CallOptions().client_stream().window(1), on_event(c), on_done(c));
    JT_ASSERT_OK(id);
    send_all(*id, 0, 199, c);
    JT_ASSERT_OK(conn.end_input(*id));
    ASSERT_TRUE(run_until([&] { return c.runs == 1; }));
    ASSERT_EQ(c.status, JOINT_OK) << c.message;
    EXPECT_EQ(joint::unpack<int64_t>(c.result).value(), 200);
    ASSERT_EQ(c.items.size(), 200u);
    for (int64_t i = 0; i < 200; i++)
        ASSERT_EQ(c.items[static_cast<size_t>(i)], i);
    EXPECT_EQ(pool_calls.load(), 1);
    EXPECT_EQ(pool_on_main.load(), 0);
    EXPECT_GT(pool_waits.load(), 0); // wait_writable was needed
    EXPECT_EQ(pool_on_events.load(), JOINT_E_STATE);
    EXPECT_TRUE(pool_conn_empty.load());

    // replaced: the old box goes at once (no call is running); the context takes the new one
    JT_ASSERT_OK(srv.on_pool("pool_echo", [p = pool_probe](Request req) { (void)req.reply_value(0); }));
    EXPECT_EQ(pool_probe.use_count(), 2);
    finish();
    EXPECT_EQ(pool_probe.use_count(), 1);
}

TEST_F(Streaming, PoolHandlerReplacedWhileRunning) {
    // A worker still runs the old handler: its box lives until that run returns, and is then
    // destroyed there, on the worker thread.
    std::atomic<bool> started{false};
    std::atomic<int> destroyed{0};
    std::thread::id destroyed_on;
    std::mutex mu;
    std::shared_ptr<int> token(new int(0), [&](int *p) {
        std::lock_guard<std::mutex> lock(mu);
        destroyed_on = std::this_thread::get_id();
        destroyed++;
        delete p;
    });
    Rec c;
    jt::Defer end{[this] { finish(); }};
    JT_ASSERT_OK(srv.on_pool("slow", [token, &started](Request req) {
        started = true;
        auto ev = req.next_input(10000); // waits for the client's End
        (void)req.reply_value(ev ? *token + static_cast<int>(ev->kind) : -1);
    }));
    token.reset(); // the box holds the last reference
    auto id = conn.call("slow", {}, CallOptions().client_stream(), on_done(c));
    JT_ASSERT_OK(id);
    ASSERT_TRUE(run_until([&] { return started.load(); }));
    JT_ASSERT_OK(srv.on_pool("slow", [](Request req) { (void)req.reply_value(0); }));
    EXPECT_EQ(destroyed.load(), 0); // the running handler still has it
    JT_ASSERT_OK(conn.end_input(*id));
    ASSERT_TRUE(run_until([&] { return c.runs == 1 && destroyed.load() == 1; }));
    EXPECT_EQ(joint::unpack<int>(c.result).value(), static_cast<int>(InputKind::End));
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_NE(destroyed_on, main_id);
}

TEST_F(Streaming, StockServer) {
    finish();
    joint::Config cfg = joint::Config::create().value();
    JT_ASSERT_OK(cfg.set_extension(false));
    srv = Context::create(cfg).value();
    register_handlers(srv);
    uri = srv.listen("tcp://127.0.0.1:0").value();
    cli = Context::create().value();
    conn = cli.connect(uri).value();
    ASSERT_TRUE(run_until([&] { return conn.extension() != joint::Extension::Pending; }));
    ASSERT_EQ(conn.extension(), joint::Extension::Refused);
    Rec c, k, s;
    jt::Defer end{[this] { finish(); }};

    // a streaming method: every item in one array, no item events
    JT_ASSERT_OK(conn.call("count", joint::pack(4), CallOptions().window(2), on_event(c), on_done(c)));
    ASSERT_TRUE(run_until([&] { return c.runs == 1; }));
    ASSERT_EQ(c.status, JOINT_OK) << c.message;
    EXPECT_EQ(joint::unpack<std::vector<int>>(c.result).value(), (std::vector<int>{0, 1, 2, 3}));
    EXPECT_TRUE(c.items.empty());
    EXPECT_EQ(stock_on_events, JOINT_E_UNSUPPORTED);
    EXPECT_TRUE(stock_kept);             // the request stayed with the handler
    EXPECT_EQ(stock_probe_after, box_baseline + 1); // the refused callable went at once (our copy: +1)

    // kwargs travel as the last positional param
    JT_ASSERT_OK(conn.call("kw", joint::pack(1), CallOptions().kwargs(std::map<std::string, int>{{"x", 7}}), on_done(k)));
    ASSERT_TRUE(run_until([&] { return k.runs == 1; }));
    EXPECT_EQ(std::get<0>(joint::unpack<std::tuple<std::string, std::string>>(k.result).value()), "920181a17807");

    // no input into a stock call
    auto id = conn.call("kw", {}, CallOptions().client_stream(), on_event(s), on_done(s));
    JT_ASSERT_OK(id);
    JT_EXPECT_ERR(conn.send_value(*id, 1), JOINT_E_UNSUPPORTED);
    JT_EXPECT_ERR(conn.end_input(*id), JOINT_E_UNSUPPORTED);
    JT_EXPECT_ERR(conn.throw_error(*id, 1, "x"), JOINT_E_UNSUPPORTED);
    ASSERT_TRUE(run_until([&] { return s.runs == 1; }));
    EXPECT_EQ(s.status, JOINT_OK);
    EXPECT_TRUE(server_boxes_gone());
}

TEST_F(Streaming, EventsQueuedBeforeOnEventsAreDeliveredAfterIt) {
    // The values and the End arrive while the request waits without an event callable; they
    // are delivered when on_events registers one, and that callable answers at once.
    Rec c;
    int64_t total = 0;
    std::vector<InputKind> kinds;
    jt::Defer end{[this] { finish(); }};
    auto id = conn.call("late", {}, CallOptions().client_stream(), nullptr, on_done(c));
    JT_ASSERT_OK(id);
    ASSERT_TRUE(run_until([&] { return late.size() == 1; }));
    for (int v = 1; v <= 3; v++)
        JT_ASSERT_OK(conn.send_value(*id, v));
    JT_ASSERT_OK(conn.end_input(*id));
    run_for(50);
    Request req = std::move(late[0]);
    EXPECT_TRUE(req.is_extended());
    JT_ASSERT_OK(req.on_events([&](Request &r, const RequestEvent &ev) {
        kinds.push_back(ev.kind);
        if (ev.kind == InputKind::Value)
            total += ev.as<int64_t>().value_or(-100);
        else if (ev.kind == InputKind::End)
            JT_EXPECT_OK(r.reply_value(total));
    }));
    EXPECT_FALSE(req); // the box has it
    EXPECT_EQ(kinds, (std::vector<InputKind>{InputKind::Value, InputKind::Value, InputKind::Value, InputKind::End}));
    ASSERT_TRUE(run_until([&] { return c.runs == 1; }));
    EXPECT_EQ(c.status, JOINT_OK);
    EXPECT_EQ(joint::unpack<int64_t>(c.result).value(), 6);
    JT_EXPECT_ERR(req.on_events([](Request &, const RequestEvent &) {}), JOINT_E_STATE); // empty
}

TEST_F(Streaming, NextInputOnTheLoopThreadAndStockRequests) {
    // next_input with timeout 0 on the loop thread; a stock request reports End at once and
    // is always writable.
    std::vector<std::pair<InputKind, std::string>> seen;
    bool stock_writable = false;
    JT_ASSERT_OK(srv.on("peek", [&](Request req) {
        auto ev = req.next_input(0);
        if (ev)
            seen.emplace_back(ev->kind, jt::hex(ev->data));
        else
            seen.emplace_back(InputKind::Closed, ev.error().status_str());
        if (!req.is_extended())
            stock_writable = req.wait_writable(0).value_or(false);
        (void)req.reply_value(1);
    }));
    jt::Defer end{[this] { finish(); }};
    bool plain_done = false;
    JT_ASSERT_OK(conn.call("peek", {}, [&](joint::Result<Bytes> r) { plain_done = r.ok(); })); // a stock request
    ASSERT_TRUE(run_until([&] { return plain_done; }));
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].first, InputKind::End);
    EXPECT_EQ(seen[0].second, "");
    EXPECT_TRUE(stock_writable);
    Rec c;
    JT_ASSERT_OK(conn.call("peek", {}, CallOptions().client_stream(), on_done(c)));
    ASSERT_TRUE(run_until([&] { return c.runs == 1; }));
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[1].second, joint::status_str(JOINT_WOULD_BLOCK)); // nothing sent in yet
}

TEST_F(Streaming, CallBoxes) {
    auto probe = jt::probe();
    int events = 0, dones = 0;
    jt::Defer end{[this] { finish(); }};
    // a failed call destroys both callables at once, and neither runs
    JT_EXPECT_ERR(conn.call("count", jt::bytes({0xc1}), CallOptions(), [probe, &events](const joint::CallEvent &) { events++; },
                            [probe, &dones](joint::Result<Bytes>) { dones++; }),
                  JOINT_E_INVAL);
    JT_EXPECT_ERR(conn.call(std::string_view("a\0b", 3), {}, CallOptions(), [probe](const joint::CallEvent &) {}, nullptr), JOINT_E_INVAL);
    EXPECT_EQ(probe.use_count(), 1);
    // events only (no completion callable): the box still goes after the completion
    JT_ASSERT_OK(conn.call("count", joint::pack(3), CallOptions(), [probe, &events](const joint::CallEvent &e) { events += e.is_item(); },
                           nullptr));
    // completion only, through the four-argument form
    JT_ASSERT_OK(conn.call("count", joint::pack(3), CallOptions().timeout_ms(5000), [probe, &dones](joint::Result<Bytes> r) {
        dones++;
        EXPECT_EQ(joint::unpack<int>(r.value()).value(), 3);
    }));
    EXPECT_EQ(probe.use_count(), 3);
    ASSERT_TRUE(run_until([&] { return events == 3 && dones == 1 && probe.use_count() == 1; }));
    run_for(20);
    EXPECT_EQ(dones, 1);
    EXPECT_EQ(events, 3);

    // calls pending when the client context goes complete CANCELLED, and their boxes go
    std::vector<joint::Status> got;
    for (int i = 0; i < 3; i++)
        JT_ASSERT_OK(conn.call("hold", {}, CallOptions(), [probe](const joint::CallEvent &) {},
                               [probe, &got](const joint::Response &r) { got.push_back(r.status()); }));
    ASSERT_TRUE(run_until([&] { return holds.size() == 3; }));
    EXPECT_EQ(probe.use_count(), 7); // two copies per box
    EXPECT_EQ(box_probe.use_count(), box_baseline + 3); // the server's three held event boxes
    conn = joint::Connection();
    cli = Context();
    ASSERT_EQ(got.size(), 3u);
    for (joint::Status s : got)
        EXPECT_EQ(s, JOINT_E_CANCELLED);
    EXPECT_EQ(probe.use_count(), 1);
    // the server sees the connection go: its calls end as Closed, their boxes go
    EXPECT_TRUE(server_boxes_gone());
    for (auto &h : holds) {
        ASSERT_EQ(h->events.size(), 1u);
        EXPECT_EQ(h->events[0], InputKind::Closed);
    }
}

TEST_F(Streaming, RequestBoxesGoWithTheServerContext) {
    Rec c;
    jt::Defer end{[this] { finish(); }};
    JT_ASSERT_OK(conn.call("hold", {}, CallOptions(), on_event(c), on_done(c)));
    JT_ASSERT_OK(conn.call("count", joint::pack(1000), CallOptions().window(1), on_event(c), on_done(c)));
    ASSERT_TRUE(run_until([&] { return holds.size() == 1 && !c.items.empty(); }));
    EXPECT_EQ(box_probe.use_count(), box_baseline + 2);
    EXPECT_EQ(pool_probe.use_count(), 2);
    srv = Context(); // ends both calls and destroys their boxes with the requests
    EXPECT_EQ(box_probe.use_count(), 1);
    EXPECT_EQ(pool_probe.use_count(), 1);
    // NOTE: no InputKind::Closed comes here: a connection closed on our side (or with the
    // context) ends its served calls without telling their event callables (see the report).
    EXPECT_TRUE(holds[0]->events.empty() || holds[0]->events == std::vector<InputKind>{InputKind::Closed});
    ASSERT_TRUE(run_until([&] { return c.runs == 2; }));
    EXPECT_NE(c.status, JOINT_OK);
}

TEST(CallOptionsAndConfig, Basics) {
    joint::Config cfg = joint::Config::create().value();
    JT_EXPECT_OK(cfg.set_extension(false));
    JT_EXPECT_OK(cfg.set_window(1));
    JT_EXPECT_OK(cfg.set_workers(1));
    JT_EXPECT_ERR(cfg.set_window(0), JOINT_E_INVAL);
    JT_EXPECT_ERR(cfg.set_workers(0), JOINT_E_INVAL);
    joint::Config empty;
    JT_EXPECT_ERR(empty.set_extension(true), JOINT_E_NULL);

    CallOptions o;
    EXPECT_TRUE(o.ok());
    EXPECT_EQ(o.raw(), nullptr);
    o.timeout_ms(5).window(3).client_stream().manual_credit(false).kwargs(Bytes());
    JT_EXPECT_OK(o.status());
    joint_call_opts *raw = o.release();
    EXPECT_NE(raw, nullptr);
    EXPECT_EQ(o.raw(), nullptr);
    joint_call_opts_free(raw);
    o.kwargs(jt::bytes({0x81, 0xa1})); // truncated
    JT_EXPECT_ERR(o.status(), JOINT_E_INVAL);
    o.window(1); // the first failure is kept
    JT_EXPECT_ERR(o.status(), JOINT_E_INVAL);

    joint::Stream s;
    EXPECT_FALSE(s);
    JT_EXPECT_ERR(s.next(0), JOINT_E_NULL);
    EXPECT_EQ(s.call_id(), 0u);
    joint::ConnectionRef none;
    EXPECT_EQ(none.extension(), joint::Extension::Off);
    JT_EXPECT_ERR(none.send(1, joint::pack_value(1)), JOINT_E_NULL);
    JT_EXPECT_ERR(none.grant(1, 1), JOINT_E_NULL);
    Request r;
    EXPECT_FALSE(r.is_extended());
    EXPECT_EQ(r.deadline_ms(), 0u);
    JT_EXPECT_ERR(r.yield_value(1), JOINT_E_STATE);
    JT_EXPECT_ERR(r.next_input(0), JOINT_E_STATE);
    JT_EXPECT_ERR(r.wait_writable(0), JOINT_E_STATE);
}

// ---- A server on its own thread: pulled streams ---------------------------------------------

struct ServerThread {
    explicit ServerThread(jt::Probe p) : probe(std::move(p)) {
        ctx = Context::create().value();
        serve_count(ctx, stats, probe);
        JT_EXPECT_OK(ctx.on("fail", [](Request req) { (void)req.reply_error(77, "failed on purpose"); }));
        JT_EXPECT_OK(ctx.on("hold", [this](Request req) {
            held++;
            JT_EXPECT_OK(req.on_events([this, p = probe](Request &, const RequestEvent &ev) {
                (void)p;
                if (ev.kind == InputKind::Cancelled)
                    cancelled++;
                else if (ev.kind == InputKind::Timeout)
                    timed_out++;
                else if (ev.kind == InputKind::Closed)
                    closed++;
            }));
        }));
        uri = ctx.listen("tcp://127.0.0.1:0").value();
        thread = std::thread([this] {
            while (!stop.load())
                if (!ctx.wait(-1))
                    break;
        });
    }
    ~ServerThread() {
        stop = true;
        JT_EXPECT_OK(ctx.wakeup());
        thread.join();
    }
    // Run the client's context until pred() holds (what the client queued, a cancellation
    // say, goes out when its context runs).
    template <class P>
    static bool wait_for(Context &client, P pred, int64_t ms = 10000) {
        int64_t deadline = jt::now_ms() + ms;
        while (!pred() && jt::now_ms() < deadline)
            (void)client.wait(2);
        return pred();
    }
    jt::Probe probe;
    ServerStats stats;
    std::atomic<int> held{0}, cancelled{0}, timed_out{0}, closed{0};
    Context ctx;
    std::string uri;
    std::atomic<bool> stop{false};
    std::thread thread;
};

TEST(PulledStream, SlowConsumer) {
    auto probe = jt::probe();
    {
        ServerThread server(probe);
        Context cli = Context::create().value();
        joint::Connection conn = cli.connect(server.uri).value();
        auto s = conn.call_stream("count", joint::pack(100), CallOptions().window(3));
        JT_ASSERT_OK(s);
        EXPECT_NE(s->call_id(), 0u);
        int64_t pulled = 0, max_ahead = 0;
        for (;;) {
            auto item = s->next(10000);
            JT_ASSERT_OK(item);
            ASSERT_FALSE(item->is_timeout());
            if (item->is_done()) {
                EXPECT_EQ(item->as<int64_t>().value(), 100);
                break;
            }
            ASSERT_TRUE(item->is_item());
            ASSERT_EQ(item->as<int64_t>().value(), pulled);
            pulled++;
            max_ahead = std::max(max_ahead, server.stats.yielded.load() - pulled);
            std::this_thread::sleep_for(std::chrono::milliseconds(1)); // a slow consumer
        }
        EXPECT_EQ(pulled, 100);
        EXPECT_LE(max_ahead, 3); // never more than the window ahead
        EXPECT_GT(server.stats.would_block.load(), 0); // the producer waited for the consumer
        EXPECT_TRUE(s->finished());
        JT_EXPECT_ERR(s->next(0), JOINT_E_STATE);
    }
    EXPECT_EQ(probe.use_count(), 1);
}

TEST(PulledStream, ErrorsTimeoutsAndCancel) {
    auto probe = jt::probe();
    {
        ServerThread server(probe);
        Context cli = Context::create().value();
        joint::Connection conn = cli.connect(server.uri).value();

        // a remote error: the peer's error object
        auto f = conn.call_stream("fail");
        JT_ASSERT_OK(f);
        auto r = f->next(10000);
        ASSERT_FALSE(r);
        EXPECT_TRUE(r.error().is_remote());
        EXPECT_EQ(r.error().remote_code(), 77);
        EXPECT_EQ(r.error().message(), "failed on purpose");
        EXPECT_TRUE(f->finished());

        // nothing within the timeout: Timeout, not an error; destroying the Stream cancels
        {
            joint::Stream h = conn.call_stream("hold").value();
            auto t = h.next(50);
            JT_ASSERT_OK(t);
            EXPECT_TRUE(t->is_timeout());
            EXPECT_TRUE(t->data.empty());
            EXPECT_FALSE(h.finished());
        }
        EXPECT_TRUE(ServerThread::wait_for(cli, [&] { return server.cancelled.load() == 1; }));

        // the call's own timeout is an error (also when next() waits in short steps)
        int64_t t0 = jt::now_ms();
        joint::Stream d = conn.call_stream("hold", {}, CallOptions().timeout_ms(100)).value();
        int timeouts = 0;
        joint::Result<joint::StreamItem> step = d.next(30);
        while (step && step->is_timeout()) {
            timeouts++;
            step = d.next(30);
        }
        ASSERT_FALSE(step);
        EXPECT_EQ(step.error().code(), JOINT_E_TIMEOUT) << step.error().to_string();
        EXPECT_GE(jt::now_ms() - t0, 90);
        EXPECT_GE(timeouts, 1);
        EXPECT_TRUE(d.finished());
        JT_EXPECT_ERR(d.next(0), JOINT_E_STATE);
        joint::Stream d2 = conn.call_stream("hold", {}, CallOptions().timeout_ms(50)).value();
        JT_EXPECT_ERR(d2.next(), JOINT_E_TIMEOUT);
        EXPECT_TRUE(ServerThread::wait_for(cli, [&] { return server.timed_out.load() + server.cancelled.load() == 3; }));
    }
    EXPECT_EQ(probe.use_count(), 1);
}

TEST(PulledStream, StreamOutlivingItsContextIsInert) {
    auto probe = jt::probe();
    {
        ServerThread server(probe);
        joint::Stream s;
        {
            Context cli = Context::create().value();
            joint::Connection conn = cli.connect(server.uri).value();
            s = conn.call_stream("hold").value();
            auto t = s.next(20);
            JT_ASSERT_OK(t);
            EXPECT_TRUE(t->is_timeout());
            EXPECT_NE(s.call_id(), 0u);
        } // the context frees the stream's handle first
        EXPECT_TRUE(s);
        JT_EXPECT_ERR(s.next(0), JOINT_E_STATE);
        EXPECT_EQ(s.call_id(), 0u);
        EXPECT_EQ(s.raw(), nullptr);
        Context idle = Context::create().value();
        EXPECT_TRUE(ServerThread::wait_for(idle, [&] { return server.cancelled.load() + server.closed.load() == 1; }));
    } // `s` goes after its context: no joint_stream_free (ASan / valgrind would see it)
    EXPECT_EQ(probe.use_count(), 1);
}

TEST(PulledStream, FromAStockServer) {
    auto probe = jt::probe();
    ServerStats stats;
    joint::Config cfg = joint::Config::create().value();
    JT_ASSERT_OK(cfg.set_extension(false));
    Context ctx = Context::create(cfg).value(); // serves and calls itself: next() runs both
    serve_count(ctx, stats, probe);
    joint::Connection conn = ctx.connect(ctx.listen("tcp://127.0.0.1:0").value()).value();
    auto s = conn.call_stream("count", joint::pack(3));
    JT_ASSERT_OK(s);
    auto item = s->next(10000);
    JT_ASSERT_OK(item);
    ASSERT_TRUE(item->is_done()); // no items: the stock answer holds them all
    EXPECT_EQ(item->as<std::vector<int>>().value(), (std::vector<int>{0, 1, 2}));
    EXPECT_EQ(conn.extension(), joint::Extension::Off); // this context offers nothing either
}

} // namespace
