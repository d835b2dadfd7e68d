// cpp_build_header_cxx{17,20}_{exceptions,noexcept}: joint.hpp compiles on its own (it is
// the first include, twice, to check the guard) under strict warnings (-Wall -Wextra
// -Wpedantic -Werror -Wshadow -Wconversion -Wold-style-cast ..., set by CMake), with and
// without exceptions, and every template in it instantiates cleanly (the joint extension's
// too).
#include <joint.hpp>
#include <joint.hpp>

#if defined(JOINT_TEST_EXPECT_NO_EXCEPTIONS) && JOINT_HPP_EXCEPTIONS
#error "expected a -fno-exceptions build"
#endif
#if !defined(JOINT_TEST_EXPECT_NO_EXCEPTIONS) && !JOINT_HPP_EXCEPTIONS
#error "expected a build with exceptions"
#endif

static_assert(!std::is_copy_constructible_v<joint::Context> && std::is_nothrow_move_constructible_v<joint::Context>);
static_assert(!std::is_copy_constructible_v<joint::Connection> && std::is_nothrow_move_constructible_v<joint::Connection>);
static_assert(!std::is_copy_constructible_v<joint::Request> && std::is_nothrow_move_constructible_v<joint::Request>);
static_assert(!std::is_copy_constructible_v<joint::Config> && !std::is_copy_constructible_v<joint::Buffer>);
static_assert(!std::is_copy_constructible_v<joint::Writer> && !std::is_copy_constructible_v<joint::Reader>);
static_assert(std::is_trivially_copyable_v<joint::ConnectionRef> && std::is_trivially_copyable_v<joint::Bytes>);
static_assert(sizeof(joint::Request) == 2 * sizeof(void *));
static_assert(!std::is_copy_constructible_v<joint::Stream> && std::is_nothrow_move_constructible_v<joint::Stream>);
static_assert(!std::is_copy_constructible_v<joint::CallOptions> && std::is_nothrow_move_constructible_v<joint::CallOptions>);
static_assert(!std::is_copy_constructible_v<joint::InputEvent> && std::is_nothrow_move_constructible_v<joint::InputEvent>);

struct Point {
    int x = 0, y = 0;
};
template <>
struct joint::Codec<Point> {
    static void pack(joint::Writer &w, const Point &p) { w.write_array(2).write(p.x).write(p.y); }
    static bool unpack(joint::Reader &r, Point &p) { return r.read_array_of(2) && r.read_into(p.x) && r.read_into(p.y); }
};
enum class Color : uint8_t { red = 1 };

int main() {
    joint::Context ctx = joint::Context::create().value();
    int state = 0;
    (void)ctx.on("m", [&state](joint::Request req) {
        state++;
        (void)req.method();
        (void)req.kwargs();
        (void)req.conn();
        (void)req.args<int, std::string_view>();
        (void)req.reply_value(Point{1, 2});
    });
    (void)ctx.on_fallback([](joint::Request req) { (void)req.reply_error(JOINT_RPC_NO_METHOD, "no"); });
    (void)ctx.on_notification([](joint::ConnectionRef, std::string_view, joint::Bytes) {});
    (void)ctx.on_connection([](const joint::ConnEvent &e) { (void)e.closed(); });
    (void)ctx.after(0, [&state] { state++; });
    joint::Result<joint::Connection> conn = ctx.connect("tcp://127.0.0.1:1");
    if (conn) {
        (void)conn->call("m", joint::pack(1), [](joint::Result<joint::Bytes>) {});
        (void)conn->call("m", joint::pack(1), [](const joint::Response &r) { (void)r.as<Point>(); }, 10);
        (void)conn->call("m", {}, nullptr);
        (void)conn->notify("n", joint::pack(Color::red, std::map<std::string, std::vector<double>>{}));
    }
    // the joint extension
    (void)ctx.on("s", [](joint::Request req) {
        (void)req.is_extended();
        (void)req.flags();
        (void)req.deadline_ms();
        (void)req.yield_value(Point{1, 2});
        (void)req.yield(joint::Bytes());
        (void)req.set_manual_credit();
        (void)req.on_events([n = 0](joint::Request &r, const joint::RequestEvent &ev) mutable {
            n++;
            if (ev.kind == joint::InputKind::Value)
                (void)ev.as<Point>();
            if (ev.ended())
                return;
            (void)r.grant(1);
            (void)r.reply_value(n);
        });
    });
    (void)ctx.on_pool("p", [](joint::Request req) {
        joint::Result<joint::InputEvent> ev = req.next_input(10);
        if (ev && !ev->ended())
            (void)ev->as<int>();
        (void)req.wait_writable(10);
    });
    if (conn) {
        joint::CallOptions opts;
        opts.timeout_ms(10).kwargs(std::map<std::string, int>{{"x", 1}}).client_stream().window(2).manual_credit();
        (void)opts.kwargs(joint::Bytes()).status();
        auto id = conn->call("s", joint::pack(1), opts, [](const joint::CallEvent &e) { (void)e.as<int>(); },
                             [](joint::Result<joint::Bytes>) {});
        (void)conn->call("s", {}, opts, nullptr, [](const joint::Response &) {});
        (void)conn->call("s", {}, joint::CallOptions(), [](const joint::CallEvent &) {}, nullptr);
        (void)conn->call("s", {}, opts, [](joint::Result<joint::Bytes>) {});
        if (id) {
            (void)conn->send(*id, joint::pack_value(1));
            (void)conn->send_value(*id, Point{});
            (void)conn->end_input(*id);
            (void)conn->throw_error(*id, 1, "x");
            (void)conn->grant(*id, 1);
        }
        (void)(conn->extension() == joint::Extension::On);
        (void)conn->ref().call("s", {}, opts, nullptr, nullptr);
        joint::Result<joint::Stream> st = conn->call_stream("s", {}, joint::CallOptions().window(1));
        if (st) {
            joint::Result<joint::StreamItem> item = st->next(0);
            if (item && item->is_item())
                (void)item->as<Point>();
            (void)st->call_id();
        }
    }
    joint::Config config = joint::Config::create().value();
    (void)config.set_extension(true);
    (void)config.set_window(8);
    (void)config.set_workers(1);
    (void)config.on_log(JOINT_LOG_WARN, [](std::int32_t, std::string_view) {});
    auto bytes = joint::pack(true, 1u, -1, 1.5, 2.5f, "s", std::string("t"), std::optional<int>{}, nullptr, std::tuple<int, bool>{},
                             std::pair<int, int>{}, std::vector<uint8_t>{1}, std::array<int, 2>{}, joint::Ext{1, {2}}, Point{});
    auto back = joint::unpack<std::tuple<bool, unsigned, int, double, float, std::string_view, std::string, std::optional<int>, std::nullptr_t,
                                         std::tuple<int, bool>, std::pair<int, int>, std::vector<uint8_t>, std::array<int, 2>, joint::Ext, Point>>(bytes);
#if JOINT_HPP_EXCEPTIONS
    try {
        (void)joint::unpack<int>(joint::Bytes()).unwrap();
        return 1;
    } catch (const joint::Exception &e) {
        if (e.error().code() != JOINT_E_EOF)
            return 1;
    }
#endif
    return back.ok() ? 0 : 1;
}
