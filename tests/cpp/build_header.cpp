// cpp_build_header_cxx{17,20}_{exceptions,noexcept}: joint.hpp compiles on its own (it is
// the first include, twice, to check the guard) under strict warnings (-Wall -Wextra
// -Wpedantic -Werror -Wshadow -Wconversion -Wold-style-cast ..., set by CMake), with and
// without exceptions, and every template in it instantiates cleanly.
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
    joint::Config config = joint::Config::create().value();
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
