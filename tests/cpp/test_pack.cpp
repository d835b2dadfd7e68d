// cpp_pack: joint::pack / pack_value / unpack (through joint_writer and joint_reader) for
// every supported type: exact encodings at the format boundaries, round trips, nesting,
// range and type errors with their messages, borrowed views, Raw and Ext, Codec
// specializations, hostile input (huge declared counts), Writer and Reader directly.
#include "test_util.hpp"

#include <cmath>
#include <deque>
#include <limits>
#include <list>

using joint::Bytes;
using jt::hex;

namespace {

template <class T>
T round_trip(const T &v) {
    auto bytes = joint::pack_value(v);
    auto back = joint::unpack<T>(bytes);
    EXPECT_TRUE(back.ok()) << hex(bytes) << ": " << (back.ok() ? "" : back.error().to_string());
    return back.ok() ? std::move(back).value() : T{};
}

TEST(Pack, ParamsArrays) {
    EXPECT_EQ(hex(joint::pack()), "90");
    EXPECT_EQ(hex(joint::pack(1, 2)), "920102");
    EXPECT_EQ(hex(joint::pack("a", true, nullptr)), "93a161c3c0");
    auto r = joint::try_pack(1, "x");
    JT_ASSERT_OK(r);
    EXPECT_EQ(hex(*r), "9201a178");
}

TEST(Pack, Nil) {
    EXPECT_EQ(hex(joint::pack_value(nullptr)), "c0");
    EXPECT_EQ(hex(joint::pack_value(std::nullopt)), "c0");
    EXPECT_EQ(hex(joint::pack_value(std::monostate{})), "c0");
    EXPECT_EQ(hex(joint::pack_value(static_cast<const char *>(nullptr))), "c0");
    JT_EXPECT_OK(joint::unpack<std::nullptr_t>(jt::bytes({0xc0})));
    JT_EXPECT_ERR(joint::unpack<std::nullptr_t>(jt::bytes({0x00})), JOINT_E_TYPE);
}

TEST(Pack, Bool) {
    EXPECT_EQ(hex(joint::pack_value(true)), "c3");
    EXPECT_EQ(hex(joint::pack_value(false)), "c2");
    EXPECT_TRUE(round_trip(true));
    EXPECT_FALSE(round_trip(false));
    JT_EXPECT_ERR(joint::unpack<bool>(jt::bytes({0x01})), JOINT_E_TYPE); // no int -> bool
}

TEST(Pack, IntegerEncodingsAtBoundaries) {
    // smallest encodings: positive fixint, uint8/16/32/64, negative fixint, int8/16/32/64
    const std::pair<int64_t, const char *> signed_cases[] = {
        {0, "00"},
        {127, "7f"},
        {128, "cc80"},
        {255, "ccff"},
        {256, "cd0100"},
        {65535, "cdffff"},
        {65536, "ce00010000"},
        {4294967295LL, "ceffffffff"},
        {4294967296LL, "cf0000000100000000"},
        {std::numeric_limits<int64_t>::max(), "cf7fffffffffffffff"},
        {-1, "ff"},
        {-32, "e0"},
        {-33, "d0df"},
        {-128, "d080"},
        {-129, "d1ff7f"},
        {-32768, "d18000"},
        {-32769, "d2ffff7fff"},
        {std::numeric_limits<int32_t>::min(), "d280000000"},
        {static_cast<int64_t>(std::numeric_limits<int32_t>::min()) - 1, "d3ffffffff7fffffff"},
        {std::numeric_limits<int64_t>::min(), "d38000000000000000"},
    };
    for (auto [v, want] : signed_cases) {
        EXPECT_EQ(hex(joint::pack_value(v)), want) << v;
        EXPECT_EQ(round_trip(v), v);
    }
    EXPECT_EQ(hex(joint::pack_value(std::numeric_limits<uint64_t>::max())), "cfffffffffffffffff");
    EXPECT_EQ(round_trip(std::numeric_limits<uint64_t>::max()), std::numeric_limits<uint64_t>::max());
}

template <class T>
void check_limits() {
    SCOPED_TRACE(typeid(T).name());
    EXPECT_EQ(round_trip(std::numeric_limits<T>::min()), std::numeric_limits<T>::min());
    EXPECT_EQ(round_trip(std::numeric_limits<T>::max()), std::numeric_limits<T>::max());
    EXPECT_EQ(round_trip(static_cast<T>(0)), 0);
    if constexpr (sizeof(T) < 8) {
        // one past either end does not fit
        using Wide = std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>;
        auto over = joint::unpack<T>(joint::pack_value(static_cast<Wide>(std::numeric_limits<T>::max()) + 1));
        JT_EXPECT_ERR(over, JOINT_E_TYPE);
        if (!over) {
            EXPECT_NE(over.error().message().find("out of range"), std::string::npos) << over.error().message();
        }
        if constexpr (std::is_signed_v<T>)
            JT_EXPECT_ERR(joint::unpack<T>(joint::pack_value(static_cast<int64_t>(std::numeric_limits<T>::min()) - 1)), JOINT_E_TYPE);
    }
    if constexpr (std::is_unsigned_v<T>)
        JT_EXPECT_ERR(joint::unpack<T>(joint::pack_value(-1)), JOINT_E_TYPE);
}

TEST(Pack, IntegerTypesAndRanges) {
    check_limits<int8_t>();
    check_limits<int16_t>();
    check_limits<int32_t>();
    check_limits<int64_t>();
    check_limits<uint8_t>();
    check_limits<uint16_t>();
    check_limits<uint32_t>();
    check_limits<uint64_t>();
    check_limits<long>();
    check_limits<unsigned long long>();
    check_limits<short>();
    JT_EXPECT_ERR(joint::unpack<int64_t>(joint::pack_value(std::numeric_limits<uint64_t>::max())), JOINT_E_TYPE);
    JT_EXPECT_ERR(joint::unpack<uint64_t>(joint::pack_value(std::numeric_limits<int64_t>::min())), JOINT_E_TYPE);
    // integral floats are read as integers (some peers send them); others are not
    EXPECT_EQ(joint::unpack<int>(joint::pack_value(3.0)).value_or(0), 3);
    JT_EXPECT_ERR(joint::unpack<int>(joint::pack_value(3.5)), JOINT_E_TYPE);
    JT_EXPECT_ERR(joint::unpack<int>(joint::pack_value("3")), JOINT_E_TYPE);
}

TEST(Pack, Floats) {
    EXPECT_EQ(hex(joint::pack_value(1.5)), "cb3ff8000000000000");
    EXPECT_EQ(hex(joint::pack_value(1.5f)), "ca3fc00000");
    for (double d : {0.0, -0.0, 1.5, -2.25, 1e300, std::numeric_limits<double>::min(), std::numeric_limits<double>::denorm_min(),
                     std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()})
        EXPECT_EQ(round_trip(d), d);
    EXPECT_TRUE(std::isnan(round_trip(std::numeric_limits<double>::quiet_NaN())));
    EXPECT_TRUE(std::signbit(round_trip(-0.0)));
    for (float f : {0.5f, -3.75f, std::numeric_limits<float>::max(), std::numeric_limits<float>::lowest()})
        EXPECT_EQ(round_trip(f), f);
    EXPECT_EQ(joint::unpack<double>(joint::pack_value(7)).value_or(0), 7.0); // any integer reads as a double
    EXPECT_EQ(joint::unpack<double>(joint::pack_value(1.5f)).value_or(0), 1.5);
    JT_EXPECT_ERR(joint::unpack<double>(joint::pack_value(true)), JOINT_E_TYPE);
}

enum class Color : uint8_t { red = 1, blue = 200 };
enum Plain { kMinus = -5 };

TEST(Pack, Enums) {
    EXPECT_EQ(hex(joint::pack_value(Color::blue)), "ccc8");
    EXPECT_EQ(round_trip(Color::blue), Color::blue);
    EXPECT_EQ(round_trip(kMinus), kMinus);
    JT_EXPECT_ERR(joint::unpack<Color>(joint::pack_value(300)), JOINT_E_TYPE);
}

TEST(Pack, Strings) {
    EXPECT_EQ(hex(joint::pack_value("")), "a0");
    EXPECT_EQ(hex(joint::pack_value("abc")), "a3616263");
    EXPECT_EQ(hex(joint::pack_value(std::string_view("ab"))), "a26162");
    const char *cp = "hi";
    EXPECT_EQ(hex(joint::pack_value(cp)), "a26869");
    char buf[8] = "ab"; // a char array packs up to its first NUL
    EXPECT_EQ(hex(joint::pack_value(buf)), "a26162");
    char full[3] = {'x', 'y', 'z'}; // or all of it, without reading past the end
    EXPECT_EQ(hex(joint::pack_value(full)), "a378797a");

    for (size_t n : {0u, 1u, 31u, 32u, 255u, 256u, 65535u, 65536u, 70000u}) {
        std::string s(n, 'q');
        auto b = joint::pack_value(s);
        uint8_t head = b[0];
        if (n < 32) {
            EXPECT_EQ(head, 0xa0 | n);
        }
        else if (n < 256)
            EXPECT_EQ(head, 0xd9);
        else if (n < 65536)
            EXPECT_EQ(head, 0xda);
        else
            EXPECT_EQ(head, 0xdb);
        EXPECT_EQ(round_trip(s), s) << n;
    }
    std::string nul("a\0b", 3);
    EXPECT_EQ(round_trip(nul), nul);
    std::string utf8 = "h\xc3\xa9llo \xe2\x9c\x93";
    EXPECT_EQ(round_trip(utf8), utf8);
    // a str may be read from bin (some peers send strings as bin)
    EXPECT_EQ(joint::unpack<std::string>(joint::pack_value(std::vector<uint8_t>{'o', 'k'})).value_or(""), "ok");
    auto wrong = joint::unpack<std::string>(joint::pack_value(5));
    JT_EXPECT_ERR(wrong, JOINT_E_TYPE);
    if (!wrong) {
        EXPECT_EQ(wrong.error().message(), "expected str, found int");
    }
}

TEST(Pack, StringViewsBorrowFromTheInput) {
    auto bytes = joint::pack_value("borrowed");
    auto sv = joint::unpack<std::string_view>(bytes);
    JT_ASSERT_OK(sv);
    EXPECT_EQ(*sv, "borrowed");
    EXPECT_GE(reinterpret_cast<const uint8_t *>(sv->data()), bytes.data());
    EXPECT_LT(reinterpret_cast<const uint8_t *>(sv->data()), bytes.data() + bytes.size());
}

TEST(Pack, Bin) {
    EXPECT_EQ(hex(joint::pack_value(std::vector<uint8_t>{})), "c400");
    EXPECT_EQ(hex(joint::pack_value(std::vector<uint8_t>{1, 2})), "c4020102");
    std::array<uint8_t, 3> arr{7, 8, 9};
    EXPECT_EQ(hex(joint::pack_value(arr)), "c403070809");
    EXPECT_EQ(round_trip(arr), arr);
    JT_EXPECT_ERR((joint::unpack<std::array<uint8_t, 4>>(joint::pack_value(arr))), JOINT_E_TYPE);
    for (size_t n : {0u, 255u, 256u, 65535u, 65536u, 100000u}) {
        std::vector<uint8_t> v(n);
        for (size_t i = 0; i < n; i++)
            v[i] = static_cast<uint8_t>(i);
        auto b = joint::pack_value(v);
        EXPECT_EQ(b[0], n < 256 ? 0xc4 : n < 65536 ? 0xc5 : 0xc6);
        EXPECT_EQ(round_trip(v), v);
        auto view = joint::unpack<Bytes>(b);
        JT_ASSERT_OK(view);
        EXPECT_EQ(*view, Bytes(v));
        EXPECT_EQ(hex(joint::pack_value(*view)), hex(b)); // a Bytes view packs as bin
    }
}

TEST(Pack, Sequences) {
    EXPECT_EQ(hex(joint::pack_value(std::vector<int>{})), "90");
    EXPECT_EQ(hex(joint::pack_value(std::vector<int>{1, -1})), "9201ff");
    for (size_t n : {15u, 16u, 65535u, 65536u}) {
        std::vector<int> v(n, 1);
        auto b = joint::pack_value(v);
        EXPECT_EQ(b[0], n < 16 ? 0x90 | n : n < 65536 ? 0xdc : 0xdd);
        EXPECT_EQ(round_trip(v), v);
    }
    EXPECT_EQ(round_trip(std::vector<std::string>{"a", "", "c"}), (std::vector<std::string>{"a", "", "c"}));
    EXPECT_EQ(round_trip(std::vector<bool>{true, false}), (std::vector<bool>{true, false}));
    EXPECT_EQ(round_trip(std::deque<int>{1, 2}), (std::deque<int>{1, 2}));
    EXPECT_EQ(round_trip(std::list<double>{1.5}), (std::list<double>{1.5}));
    EXPECT_EQ(round_trip(std::array<int, 3>{1, 2, 3}), (std::array<int, 3>{1, 2, 3}));
    auto wrong = joint::unpack<std::array<int, 2>>(joint::pack_value(std::vector<int>{1, 2, 3}));
    JT_EXPECT_ERR(wrong, JOINT_E_TYPE);
    if (!wrong) {
        EXPECT_EQ(wrong.error().message(), "expected an array of 2 elements, found 3");
    }
    std::vector<std::vector<std::vector<int>>> deep{{{1}, {}}, {}, {{2, 3}}};
    EXPECT_EQ(round_trip(deep), deep);
    auto elem = joint::unpack<std::vector<int>>(joint::pack_value(std::make_tuple(1, "x")));
    JT_EXPECT_ERR(elem, JOINT_E_TYPE);
}

TEST(Pack, Maps) {
    std::map<std::string, int> m{{"a", 1}, {"b", 2}};
    EXPECT_EQ(hex(joint::pack_value(m)), "82a16101a16202");
    EXPECT_EQ(round_trip(m), m);
    EXPECT_EQ(round_trip(std::map<std::string, int>{}), (std::map<std::string, int>{}));
    for (size_t n : {15u, 16u, 70000u}) {
        std::map<int, int> big;
        for (size_t i = 0; i < n; i++)
            big[static_cast<int>(i)] = static_cast<int>(i * 2);
        auto b = joint::pack_value(big);
        EXPECT_EQ(b[0], n < 16 ? 0x80 | n : n < 65536 ? 0xde : 0xdf);
        EXPECT_EQ(round_trip(big), big);
    }
    std::unordered_map<std::string, std::vector<std::optional<std::string>>> um{{"k", {std::nullopt, "v"}}, {"e", {}}};
    EXPECT_EQ(round_trip(um), um);
    std::map<int64_t, std::map<std::string, bool>> nested{{-1, {{"t", true}}}, {5, {}}};
    EXPECT_EQ(round_trip(nested), nested);
    JT_EXPECT_ERR((joint::unpack<std::map<std::string, int>>(joint::pack_value(std::vector<int>{}))), JOINT_E_TYPE);
}

TEST(Pack, TuplesPairsOptionals) {
    auto t = std::make_tuple(1, std::string("two"), 3.0, std::make_tuple(false, std::vector<int>{4}));
    EXPECT_EQ(round_trip(t), t);
    EXPECT_EQ(round_trip(std::tuple<>{}), std::tuple<>{});
    EXPECT_EQ(hex(joint::pack_value(std::tuple<>{})), "90");
    auto p = std::make_pair(std::string("k"), -7);
    EXPECT_EQ(round_trip(p), p);
    JT_EXPECT_ERR((joint::unpack<std::tuple<int, int>>(joint::pack(1, 2, 3))), JOINT_E_TYPE);
    JT_EXPECT_ERR((joint::unpack<std::tuple<int, int>>(joint::pack(1))), JOINT_E_TYPE);
    std::optional<int> none, some = 5;
    EXPECT_EQ(round_trip(none), none);
    EXPECT_EQ(round_trip(some), some);
    EXPECT_EQ(hex(joint::pack_value(none)), "c0");
    std::optional<std::vector<std::optional<int>>> ov = std::vector<std::optional<int>>{1, std::nullopt};
    EXPECT_EQ(round_trip(ov), ov);
}

TEST(Pack, RawEmbedsAndCapturesEncodedValues) {
    auto inner = joint::pack_value(std::map<std::string, int>{{"x", 1}});
    auto outer = joint::pack(joint::Raw{inner}, 2);
    EXPECT_EQ(hex(outer), "92" + hex(inner) + "02");
    auto back = joint::unpack<std::tuple<joint::Raw, int>>(outer);
    JT_ASSERT_OK(back);
    EXPECT_EQ(std::get<0>(*back).bytes, Bytes(inner));
    EXPECT_EQ(std::get<1>(*back), 2);
}

TEST(Pack, Ext) {
    for (size_t n : {1u, 2u, 3u, 4u, 8u, 16u, 17u, 300u, 70000u}) {
        joint::Ext e{static_cast<int8_t>(-3), std::vector<uint8_t>(n, 0xab)};
        EXPECT_EQ(round_trip(e), e) << n;
    }
    EXPECT_EQ(hex(joint::pack_value(joint::Ext{5, {1}})), "d40501");
    JT_EXPECT_ERR(joint::unpack<joint::Ext>(joint::pack_value(1)), JOINT_E_TYPE);
}

struct Point {
    int x = 0;
    int y = 0;
    bool operator==(const Point &o) const { return x == o.x && y == o.y; }
};
} // namespace

template <>
struct joint::Codec<Point> {
    static void pack(joint::Writer &w, const Point &p) { w.write_array(2).write(p.x).write(p.y); }
    static bool unpack(joint::Reader &r, Point &p) { return r.read_array_of(2) && r.read_into(p.x) && r.read_into(p.y); }
};

namespace {

struct Unpackable {};
} // namespace
template <>
struct joint::Codec<Unpackable> {
    static void pack(joint::Writer &w, const Unpackable &) { w.fail(JOINT_E_INVAL, "Unpackable cannot be packed"); }
    static bool unpack(joint::Reader &r, Unpackable &) { return r.fail(JOINT_E_TYPE, "never"); }
};
namespace {

TEST(Pack, CodecSpecializations) {
    EXPECT_EQ(hex(joint::pack_value(Point{1, 2})), "920102");
    EXPECT_EQ(round_trip(Point{-5, 7}), (Point{-5, 7}));
    std::map<std::string, std::vector<Point>> m{{"p", {{1, 2}, {3, 4}}}};
    EXPECT_EQ(round_trip(m), m);

    // A failing Codec: try_pack reports it, pack gives the never-valid byte 0xc1.
    auto r = joint::try_pack(1, Unpackable{});
    JT_EXPECT_ERR(r, JOINT_E_INVAL);
    if (!r) {
        EXPECT_EQ(r.error().message(), "Unpackable cannot be packed");
    }
    EXPECT_EQ(hex(joint::pack(1, Unpackable{})), "c1");
    EXPECT_EQ(hex(joint::pack_value(Unpackable{})), "c1");
    auto u = joint::unpack<Unpackable>(joint::pack_value(1));
    JT_EXPECT_ERR(u, JOINT_E_TYPE);
}

TEST(Pack, MalformedAndTruncatedInput) {
    JT_EXPECT_ERR(joint::unpack<int>(Bytes()), JOINT_E_EOF);
    auto e = joint::unpack<int>(Bytes());
    if (!e) {
        EXPECT_EQ(e.error().message(), "expected an integer, found the end of the data");
    }
    auto trailing = joint::unpack<int>(jt::bytes({0x01, 0x02}));
    JT_EXPECT_ERR(trailing, JOINT_E_INVAL);
    if (!trailing) {
        EXPECT_EQ(trailing.error().message(), "1 bytes left after the value");
    }
    EXPECT_FALSE(joint::unpack<std::string>(jt::bytes({0xa5, 'a'})).ok());      // str of 5, 1 byte
    EXPECT_FALSE(joint::unpack<std::vector<int>>(jt::bytes({0x93, 1, 2})).ok()); // array of 3, 2 elements
    EXPECT_FALSE(joint::unpack<int>(jt::bytes({0xc1})).ok());                    // never-used byte
    EXPECT_FALSE(joint::unpack<joint::Raw>(jt::bytes({0x92, 0x01})).ok());
}

TEST(Pack, HugeDeclaredCountsDoNotAllocate) {
    // An array header claiming 2^32-1 elements followed by 3 bytes: fails at once, without
    // reserving memory for the declared count.
    auto big = jt::bytes({0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3});
    auto v = joint::unpack<std::vector<std::string>>(big);
    EXPECT_FALSE(v.ok());
    auto m = joint::unpack<std::map<int, int>>(jt::bytes({0xdf, 0xff, 0xff, 0xff, 0xff, 1, 2}));
    EXPECT_FALSE(m.ok());
}

TEST(Pack, WriterDirectly) {
    joint::Writer w = joint::Writer::create().value();
    w.write_map(1).write_str("k").write_array(3).write_nil().write_bool(true).write_uint(300);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(hex(w.data()), "81a16b93c0c3cd012c");
    w.reset();
    EXPECT_TRUE(w.data().empty());
    w.write_double(0.5).write_float(0.5f).write_int(-2).write_bin(jt::bytes({9})).write_ext(1, jt::bytes({2})).write_raw(jt::bytes({0xc0}));
    EXPECT_EQ(hex(w.data()), "cb3fe0000000000000ca3f000000fec40109d40102c0");
    w.write(std::make_tuple(1, "x"));
    EXPECT_EQ(hex(w.data()).substr(hex(w.data()).size() - 8), "9201a178");
    w.fail(JOINT_E_INVAL, "first");
    w.fail(JOINT_E_TYPE, "second");
    w.write_int(1); // ignored after a failure
    JT_EXPECT_ERR(w.status(), JOINT_E_INVAL);
    EXPECT_EQ(w.status().error().message(), "first");
    std::vector<uint8_t> copy = w.to_vector();
    EXPECT_EQ(copy.back(), 0x78); // the tuple's "x": nothing appended after the failure
    w.reset();
    EXPECT_TRUE(w.ok());
}

TEST(Pack, ReaderDirectly) {
    auto bytes = joint::pack(1, "two", std::vector<int>{3}, std::map<std::string, int>{{"k", 4}});
    joint::Reader r = joint::Reader::create(bytes).value();
    EXPECT_EQ(r.type(), JOINT_TYPE_ARRAY);
    EXPECT_EQ(r.remaining(), bytes.size());
    ASSERT_TRUE(r.read_array_of(4));
    EXPECT_EQ(r.type(), JOINT_TYPE_INT);
    EXPECT_EQ(r.read<int>().value(), 1);
    EXPECT_EQ(r.type(), JOINT_TYPE_STR);
    EXPECT_TRUE(r.skip());
    EXPECT_EQ(r.type(), JOINT_TYPE_ARRAY);
    uint32_t n = 0;
    ASSERT_TRUE(r.read_array(n));
    EXPECT_EQ(n, 1u);
    auto wrong = r.read<std::string>(); // an int is next: fails, consumes nothing
    JT_EXPECT_ERR(wrong, JOINT_E_TYPE);
    EXPECT_TRUE(r.ok()); // read<T> returns the error and clears it
    int three = 0;
    ASSERT_TRUE(r.read_into(three));
    EXPECT_EQ(three, 3);
    EXPECT_EQ(r.type(), JOINT_TYPE_MAP);
    ASSERT_TRUE(r.read_map(n));
    EXPECT_EQ((r.read<std::pair<std::string, int>>().ok()), false); // a map entry is not an array
    EXPECT_EQ(r.read<std::string>().value(), "k");
    EXPECT_EQ(r.read<int>().value(), 4);
    EXPECT_TRUE(r.at_end());
    EXPECT_EQ(r.type(), JOINT_TYPE_NONE);
    EXPECT_FALSE(r.skip());
    EXPECT_EQ(r.error().code(), JOINT_E_EOF);
    r.reset(joint::pack_value(9));
    EXPECT_TRUE(r.ok());
}

TEST(Pack, RequestArgs) {
    // args<Ts...>() is unpack<std::tuple<Ts...>>(params()): checked here without a peer.
    auto params = joint::pack(1, "s", std::vector<int>{2});
    auto t = joint::unpack<std::tuple<int, std::string_view, std::vector<int>>>(params);
    JT_ASSERT_OK(t);
    EXPECT_EQ(std::get<1>(*t), "s");
}

} // namespace
