// cpp_msgpack_cxx: with JOINT_WITH_MSGPACK_CXX (and <msgpack.hpp>, Debian libmsgpack-cxx-dev),
// joint::pack / pack_value take any type msgpack-cxx can pack (MSGPACK_DEFINE structs,
// msgpack::object, containers of them), and joint::unpack reads into msgpack::object_handle
// or any type msgpack-cxx converts to. Built only when the header is found.
#include "test_util.hpp"

#if !JOINT_HPP_MSGPACK_CXX
#error "JOINT_WITH_MSGPACK_CXX and <msgpack.hpp> are required"
#endif

using joint::Bytes;
using jt::hex;

namespace {

struct Person {
    std::string name;
    int age = 0;
    std::vector<std::string> tags;
    MSGPACK_DEFINE(name, age, tags);
    bool operator==(const Person &o) const { return name == o.name && age == o.age && tags == o.tags; }
};

std::vector<uint8_t> with_msgpack_cxx(const Person &p) {
    msgpack::sbuffer sb;
    msgpack::pack(sb, p);
    return std::vector<uint8_t>(sb.data(), sb.data() + sb.size());
}

TEST(MsgpackCxx, PackAdaptableTypes) {
    Person p{"ada", 36, {"math"}};
    EXPECT_EQ(joint::pack_value(p), with_msgpack_cxx(p)); // same bytes as msgpack-cxx alone
    auto params = joint::pack(1, p, "x");                  // mixed with joint's own types
    EXPECT_EQ(hex(params), "9301" + hex(with_msgpack_cxx(p)) + "a178");
    std::vector<Person> people{p, {"bob", 1, {}}};
    auto back = joint::unpack<std::vector<Person>>(joint::pack_value(people)); // joint's vector, msgpack-cxx's elements
    JT_ASSERT_OK(back);
    EXPECT_EQ(*back, people);
}

TEST(MsgpackCxx, ObjectHandle) {
    auto bytes = joint::pack(1, "two", std::map<std::string, int>{{"k", 3}});
    auto oh = joint::unpack<msgpack::object_handle>(bytes);
    JT_ASSERT_OK(oh);
    const msgpack::object &o = oh->get();
    ASSERT_EQ(o.type, msgpack::type::ARRAY);
    ASSERT_EQ(o.via.array.size, 3u);
    EXPECT_EQ(o.via.array.ptr[0].as<int>(), 1);
    EXPECT_EQ(o.via.array.ptr[1].as<std::string>(), "two");
    // a msgpack::object packs back to the same bytes
    EXPECT_EQ(joint::pack_value(o), bytes);
    EXPECT_EQ(joint::pack_value(o.via.array.ptr[2]), joint::pack_value(std::map<std::string, int>{{"k", 3}}));
}

TEST(MsgpackCxx, ConversionErrorsAreResults) {
    auto r = joint::unpack<Person>(joint::pack_value(5));
    JT_EXPECT_ERR(r, JOINT_E_TYPE);
    if (!r) {
        EXPECT_EQ(r.error().message().rfind("msgpack-cxx: ", 0), 0u) << r.error().message();
    }
}

TEST(MsgpackCxx, OverRpc) {
    joint::Context ctx = joint::Context::create().value();
    JT_ASSERT_OK(ctx.on("older", [](joint::Request req) {
        auto args = req.args<Person>();
        if (!args)
            return (void)req.reply_error(JOINT_RPC_INVALID_PARAMS, args.error().message());
        Person p = std::get<0>(*args);
        p.age++;
        (void)req.reply_value(p);
    }));
    joint::Connection conn = ctx.connect(ctx.listen("tcp://127.0.0.1:0").value()).value();
    auto r = conn.call_sync("older", joint::pack(Person{"cy", 9, {"a", "b"}}), 5000);
    JT_ASSERT_OK(r);
    EXPECT_EQ(r->as<Person>().value(), (Person{"cy", 10, {"a", "b"}}));
    auto oh = r->as<msgpack::object_handle>();
    JT_ASSERT_OK(oh);
    EXPECT_EQ(oh->get().via.array.ptr[1].as<int>(), 10);
}

} // namespace
