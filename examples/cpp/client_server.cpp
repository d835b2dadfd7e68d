// client_server.cpp — joint from C++: a server and a client in one process, one context.
//
// The context listens on a free TCP port and connects to itself. call_sync() runs the
// context while it waits, so the server's handlers answer in the same thread.
//
// Build: c++ -std=c++17 client_server.cpp -ljoint
#include <joint.hpp>

#include <cstdint>
#include <cstdio>
#include <string>

int main() {
    joint::Context ctx = joint::Context::create().value(); // value(): abort with the error if any

    // add(a, b): answered at once.
    ctx.on("add", [](joint::Request req) {
        auto args = req.args<int64_t, int64_t>();
        if (!args)
            return (void)req.reply_error(JOINT_RPC_INVALID_PARAMS, "add(a, b) takes two integers");
        auto [a, b] = args.value();
        (void)req.reply_value(a + b);
    }).value();

    // greet_later(name): the Request moves into a timer and is answered 20 ms later.
    ctx.on("greet_later", [&ctx](joint::Request req) {
        ctx.after(20, [req = std::move(req)]() mutable {
            auto name = req.args<std::string>();
            (void)req.reply_value("hello, " + (name ? std::get<0>(name.value()) : std::string("stranger")));
        }).value();
    }).value();

    std::string uri = ctx.listen("tcp://127.0.0.1:0").value();
    joint::Connection conn = ctx.connect(uri).value();

    // Blocking calls: a Result holds a Buffer (the result's MessagePack) or a joint::Error.
    int64_t sum = conn.call_sync("add", joint::pack(2, 3), 1000).value().as<int64_t>().value();
    std::printf("add(2, 3) = %lld\n", static_cast<long long>(sum));

    auto bad = conn.call_sync("add", joint::pack("two", 3), 1000);
    std::printf("add(\"two\", 3) failed: %s (code %lld)\n", bad.error().message().c_str(),
                static_cast<long long>(bad.error().remote_code().value_or(-1)));

    // An asynchronous call: the callback runs exactly once, inside wait()/process().
    bool done = false;
    conn.call("greet_later", joint::pack("joint"), [&done](joint::Result<joint::Bytes> r) {
        std::printf("greet_later: %s\n", r ? joint::unpack<std::string>(r.value()).value().c_str() : r.error().message().c_str());
        done = true;
    }, 1000).value();
    while (!done)
        ctx.wait(-1).value();

    return sum == 5 && bad.error().remote_code() == JOINT_RPC_INVALID_PARAMS ? 0 : 1;
}
