// streaming.cpp — the joint extension from C++: a server streams items to a client that
// pulls them, and a client streams values into a call. Flow control is per call: whoever
// sends is told WouldBlock when the other side has granted no credit, and hears Writable
// when it may go on; nothing is buffered on its behalf.
//
// One context serves and calls itself (Stream::next() and wait() run it). Both ends are
// joint, so calls with CallOptions are extended calls; to a stock MessagePack-RPC peer they
// would be ordinary requests (the items arriving as one array).
//
// Build: c++ -std=c++17 streaming.cpp -ljoint
#include <joint.hpp>

#include <cstdint>
#include <cstdio>

int main() {
    joint::Context ctx = joint::Context::create().value();

    // count(n): streams 0..n-1 as fast as the caller's credit allows, then answers n.
    ctx.on("count", [](joint::Request req) {
        auto args = req.args<int64_t>();
        int64_t n = args ? std::get<0>(args.value()) : 0;
        auto pump = [n, i = int64_t{0}](joint::Request &r) mutable {
            for (; i < n; i++)
                if (r.yield_value(i).value_or(joint::YieldStatus::WouldBlock) == joint::YieldStatus::WouldBlock)
                    return; // no credit yet (or the call ended): wait for Writable
            (void)r.reply_value(n);
        };
        pump(req); // what the first credit allows
        if (req)   // more to come: the request moves into the event callable
            (void)req.on_events([pump](joint::Request &r, const joint::RequestEvent &ev) mutable {
                if (ev.kind == joint::InputKind::Writable)
                    pump(r);
            });
    }).value();

    // sum(): adds the values streamed in; answers the total when the input ends.
    ctx.on("sum", [](joint::Request req) {
        (void)req.on_events([total = int64_t{0}](joint::Request &r, const joint::RequestEvent &ev) mutable {
            if (ev.kind == joint::InputKind::Value)
                total += ev.as<int64_t>().value_or(0);
            else if (ev.kind == joint::InputKind::End)
                (void)r.reply_value(total);
        });
    }).value();

    joint::Connection conn = ctx.connect(ctx.listen("tcp://127.0.0.1:0").value()).value();

    // 1. Pull a stream. The window is how far the producer may run ahead of the consumer.
    joint::Stream stream = conn.call_stream("count", joint::pack(10), joint::CallOptions().window(2)).value();
    std::printf("count(10) streams:");
    joint::StreamItem item = stream.next().value(); // Item..., then Done with the result
    for (; item.is_item(); item = stream.next().value())
        std::printf(" %lld", static_cast<long long>(item.as<int64_t>().value()));
    std::printf(", then returns %lld\n", static_cast<long long>(item.as<int64_t>().value()));

    // 2. Stream values in; on WouldBlock, run the loop until the call's Writable event.
    bool writable = false, done = false;
    int64_t total = 0;
    joint::CallId id = conn.call("sum", {}, joint::CallOptions().client_stream(),
                                 [&](const joint::CallEvent &ev) { writable = writable || ev.is_writable(); },
                                 [&](joint::Result<joint::Bytes> r) {
                                     total = joint::unpack<int64_t>(r.value()).value();
                                     done = true;
                                 })
                             .value();
    for (int64_t v = 1; v <= 1000;) {
        if (conn.send_value(id, v).value() == joint::SendStatus::Sent)
            v++;
        else
            for (writable = false; !writable;)
                ctx.wait(-1).value();
    }
    conn.end_input(id).value(); // no more values: the server answers
    while (!done)
        ctx.wait(-1).value();
    std::printf("sum(1..1000), streamed in = %lld\n", static_cast<long long>(total));
    return total == 500500 ? 0 : 1;
}
