#include <joint.hpp>

int main() {
    joint::Context ctx = joint::Context::create().value();   // value(): the result, or abort with the error
    ctx.on("add", [](joint::Request req) {                   // any callable; runs inside wait()/process()
        auto args = req.args<int64_t, int64_t>();             // Result<std::tuple<int64_t, int64_t>>
        if (!args) return (void)req.reply_error(JOINT_RPC_INVALID_PARAMS, args.error().message());
        (void)req.reply_value(std::get<0>(*args) + std::get<1>(*args));   // now, later, or from any thread
    }).value();
    joint::Connection conn = ctx.connect(ctx.listen("tcp://127.0.0.1:0").value()).value();
    joint::Result<joint::Buffer> sum = conn.call_sync("add", joint::pack(2, 3), 1000);   // runs the server too
    return sum && sum->as<int64_t>().value() == 5 ? 0 : 1;
}
