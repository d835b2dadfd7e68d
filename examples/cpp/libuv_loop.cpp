// libuv_loop.cpp — joint's C++ wrapper on a libuv loop.
//
// One process, two contexts (a server, and a client connected to it over TCP on the loopback
// interface), both driven by one libuv loop that also runs a timer of its own. Each context
// needs exactly two libuv handles (class UvJoint below):
//
//   uv_poll_t   on ctx.fd(), for UV_READABLE;
//   uv_timer_t  re-armed from ctx.timeout_ms() after every ctx.process().
//
// The server answers
//   add(a, b)             in the handler;
//   add_later(a, b)       20 ms later, from a joint timer that owns the Request meanwhile;
//   add_in_thread(a, b)   on libuv's thread pool (uv_queue_work): a Request may be answered
//                         from any thread, and joint wakes the loop to send the answer.
// The client makes the three calls with completion callbacks, checks the sums, and the
// program exits 0.
//
// Build: c++ -std=c++17 libuv_loop.cpp $(pkg-config --cflags --libs libuv) -ljoint
#include <joint.hpp>
#include <uv.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

// ---- The adapter: one joint::Context on a libuv loop ------------------------------------

class UvJoint {
public:
    // The context must outlive this adapter, and the adapter must stay in place (libuv
    // holds pointers to its handles) until close() has been followed by a uv_run.
    UvJoint(uv_loop_t *loop, joint::Context &ctx) : ctx_(ctx) {
        poll_.data = this;
        timer_.data = this;
        uv_timer_init(loop, &timer_);
        int err = uv_poll_init(loop, &poll_, ctx.fd());
        if (err == 0)
            err = uv_poll_start(&poll_, UV_READABLE, [](uv_poll_t *h, int, int) { self(h)->drive(); });
        if (err != 0) {
            std::fprintf(stderr, "uv_poll: %s\n", uv_strerror(err));
            failed_ = true;
        }
        arm();
    }
    UvJoint(const UvJoint &) = delete;
    UvJoint &operator=(const UvJoint &) = delete;

    // Close both handles; run the loop once more before destroying this or the context.
    void close() {
        uv_close(reinterpret_cast<uv_handle_t *>(&poll_), nullptr);
        uv_close(reinterpret_cast<uv_handle_t *>(&timer_), nullptr);
    }
    bool failed() const { return failed_; }

private:
    template <class H>
    static UvJoint *self(H *handle) { return static_cast<UvJoint *>(handle->data); }

    // Run joint's ready work (callbacks run in here), then ask for the next deadline.
    void drive() {
        if (auto r = ctx_.process(); !r) {
            std::fprintf(stderr, "process: %s\n", r.error().to_string().c_str());
            failed_ = true;
            uv_stop(poll_.loop);
            return;
        }
        arm();
    }
    // -1: no deadline; 0: now (libuv runs the timer on the next iteration); else ms, rounded up.
    void arm() {
        int32_t ms = ctx_.timeout_ms();
        if (ms < 0)
            uv_timer_stop(&timer_);
        else
            uv_timer_start(&timer_, [](uv_timer_t *h) { self(h)->drive(); }, static_cast<uint64_t>(ms), 0);
    }

    joint::Context &ctx_;
    uv_poll_t poll_{};
    uv_timer_t timer_{};
    bool failed_ = false;
};

// ---- Server -----------------------------------------------------------------------------

// add_in_thread: the work item owns the Request while a pool thread holds it.
struct Job {
    uv_work_t work{};
    joint::Request req;
    int64_t sum = 0;
};

static void serve(joint::Context &server, uv_loop_t *loop) {
    server.on("add", [](joint::Request req) {
        if (auto args = req.args<int64_t, int64_t>())
            (void)req.reply_value(std::get<0>(*args) + std::get<1>(*args));
        else
            (void)req.reply_error(JOINT_RPC_INVALID_PARAMS, args.error().message());
    }).value();

    server.on("add_later", [&server](joint::Request req) {
        auto args = req.args<int64_t, int64_t>();
        if (!args)
            return (void)req.reply_error(JOINT_RPC_INVALID_PARAMS, args.error().message());
        int64_t sum = std::get<0>(*args) + std::get<1>(*args);
        // If the timer cannot be added, the lambda (and the Request in it) is destroyed,
        // which answers the peer with JOINT_RPC_NOT_ANSWERED.
        (void)server.after(20, [req = std::move(req), sum]() mutable { (void)req.reply_value(sum); });
    }).value();

    server.on("add_in_thread", [loop](joint::Request req) {
        auto args = req.args<int64_t, int64_t>();
        if (!args)
            return (void)req.reply_error(JOINT_RPC_INVALID_PARAMS, args.error().message());
        auto job = std::make_unique<Job>();
        job->sum = std::get<0>(*args) + std::get<1>(*args);
        job->req = std::move(req);
        job->work.data = job.get();
        int err = uv_queue_work(
            loop, &job->work,
            [](uv_work_t *w) { // on a pool thread
                Job *j = static_cast<Job *>(w->data);
                uv_sleep(10); // pretend to work
                (void)j->req.reply_value(j->sum);
            },
            [](uv_work_t *w, int) { delete static_cast<Job *>(w->data); }); // back on the loop
        if (err == 0)
            job.release(); // the after-work callback deletes it
    }).value();
}

// ---- main -------------------------------------------------------------------------------

int main() {
    uv_loop_t *loop = uv_default_loop();
    joint::Context server = joint::Context::create().value();
    joint::Context client = joint::Context::create().value();
    serve(server, loop);
    std::string uri = server.listen("tcp://127.0.0.1:0").value();
    joint::Connection conn = client.connect(uri).value();

    struct Call {
        const char *method;
        int64_t a, b, result;
        bool done;
    } calls[] = {{"add", 1, 2, 0, false}, {"add_later", 3, 4, 0, false}, {"add_in_thread", 5, 6, 0, false}};
    int left = 3;
    // Calls made before the loop runs are queued; they go out once the connection is up.
    for (Call &c : calls) {
        conn.call(c.method, joint::pack(c.a, c.b), [&c, &left, loop](joint::Result<joint::Bytes> r) {
            c.done = true;
            if (auto v = r ? joint::unpack<int64_t>(*r) : joint::Result<int64_t>(r.error()))
                c.result = *v;
            else
                std::fprintf(stderr, "%s failed: %s\n", c.method, v.error().to_string().c_str());
            if (--left == 0)
                uv_stop(loop); // all answered: leave uv_run
        }, 5000).value();
    }

    UvJoint server_uv(loop, server), client_uv(loop, client);
    uv_timer_t tick; // the host's own work, and a deadline for the example
    unsigned ticks = 0;
    tick.data = &ticks;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, [](uv_timer_t *h) {
        if (++*static_cast<unsigned *>(h->data) == 1000) { // 10 s
            std::fprintf(stderr, "timed out waiting for the calls\n");
            uv_stop(h->loop);
        }
    }, 10, 10);

    uv_run(loop, UV_RUN_DEFAULT); // until the last completion or the deadline calls uv_stop

    int rc = server_uv.failed() || client_uv.failed();
    for (const Call &c : calls) {
        std::printf("%s(%lld, %lld) = %lld\n", c.method, static_cast<long long>(c.a), static_cast<long long>(c.b),
                    static_cast<long long>(c.result));
        if (!c.done || c.result != c.a + c.b)
            rc = 1;
    }
    std::printf("the host's own timer ticked %u times meanwhile\n", ticks);

    // Tear down: close the handles, let libuv finish closing them (this also waits for queued
    // work), and only then destroy the contexts whose fds the handles watched.
    conn = joint::Connection();
    client_uv.close();
    server_uv.close();
    uv_close(reinterpret_cast<uv_handle_t *>(&tick), nullptr);
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_close(loop) != 0) {
        std::fprintf(stderr, "uv_loop_close: handles left open\n");
        rc = 1;
    }
    if (rc == 0)
        std::printf("libuv_loop: ok\n");
    return rc;
}
