// The C++ wrapper as installed (build_install.sh, through pkg-config): <joint.hpp> and the
// parts it includes come from the install prefix alone, and a call goes through.
#include <joint.hpp>

#include <cstdio>
#include <string>
#include <tuple>

int main() {
    joint::Context ctx = joint::Context::create().value();
    joint::Result<void> on = ctx.on("sum", [](joint::Request req) {
        auto args = req.args<int, int>();
        if (!args)
            return (void)req.reply_error(args.error());
        (void)req.reply_value(std::get<0>(*args) + std::get<1>(*args));
    });
    std::string uri = ctx.listen("tcp://127.0.0.1:0").value();
    joint::Connection conn = ctx.connect(uri).value();
    joint::Result<joint::Buffer> sum = conn.call_sync("sum", joint::pack(40, 2), 10000);
    if (!on || !sum || sum->as<int>().value_or(0) != 42) {
        std::fprintf(stderr, "consumer_cpp: FAIL: sum(40, 2) is not 42\n");
        return 1;
    }
    std::printf("consumer_cpp: joint %s, sum(40, 2) = 42\n", std::string(joint::version()).c_str());
    return 0;
}
