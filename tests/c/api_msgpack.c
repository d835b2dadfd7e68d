/* api_msgpack: the MessagePack writer and reader in joint.h.
 *   - every type round-trips, including boundaries (int64 min/max, uint64 max, every
 *     integer width switch, float32/float64 specials, empty and non-ASCII str, bin with
 *     NUL bytes, every ext size class, nested containers);
 *   - integers use the smallest encoding, as documented;
 *   - failed reads (wrong type, end of data, malformed data) consume nothing and leave
 *     out-params untouched;
 *   - joint_error_message / joint_error_code on the usual error object shapes. */
#include "testutil.h"

#include <float.h>
#include <math.h>

static joint_writer *w;

/* The encoded bytes so far (borrowed from the writer). */
static const uint8_t *bytes(size_t *len)
{
    const uint8_t *data;
    CHECK_OK(joint_writer_data(w, &data, len));
    return data;
}

/* Check that writing one value produced exactly `want`. */
static void expect_encoding(const char *what, const uint8_t *want, size_t want_len)
{
    size_t len, i;
    const uint8_t *got = bytes(&len);
    if (len != want_len || memcmp(got, want, len) != 0) {
        fprintf(stderr, "encoding of %s:\n  got ", what);
        for (i = 0; i < len; i++)
            fprintf(stderr, "%02x ", got[i]);
        fprintf(stderr, "\n want ");
        for (i = 0; i < want_len; i++)
            fprintf(stderr, "%02x ", want[i]);
        fprintf(stderr, "\n");
        exit(1);
    }
}

#define EXPECT_ENC(what, ...)                                                                 \
    do {                                                                                      \
        static const uint8_t want_[] = {__VA_ARGS__};                                         \
        expect_encoding(what, want_, sizeof want_);                                           \
    } while (0)

static size_t encoded_size_int(int64_t v)
{
    size_t len;
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_int(w, v));
    bytes(&len);
    return len;
}

static size_t encoded_size_uint(uint64_t v)
{
    size_t len;
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_uint(w, v));
    bytes(&len);
    return len;
}

static void test_integer_encodings(void)
{
    /* smallest encoding, at every width boundary */
    static const struct { int64_t v; size_t size; } ints[] = {
        {0, 1}, {1, 1}, {127, 1}, {128, 2}, {255, 2}, {256, 3}, {65535, 3}, {65536, 5},
        {INT64_C(4294967295), 5}, {INT64_C(4294967296), 9}, {INT64_MAX, 9},
        {-1, 1}, {-32, 1}, {-33, 2}, {-128, 2}, {-129, 3}, {-32768, 3}, {-32769, 5},
        {INT32_MIN, 5}, {(int64_t)INT32_MIN - 1, 9}, {INT64_MIN, 9},
    };
    static const struct { uint64_t v; size_t size; } uints[] = {
        {0, 1}, {127, 1}, {128, 2}, {255, 2}, {256, 3}, {65535, 3}, {65536, 5},
        {UINT64_C(4294967295), 5}, {UINT64_C(4294967296), 9}, {UINT64_MAX, 9},
    };
    size_t i;
    for (i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (encoded_size_int(ints[i].v) != ints[i].size) {
            fprintf(stderr, "joint_write_int(%" PRId64 "): %zu bytes, want %zu\n", ints[i].v,
                    encoded_size_int(ints[i].v), ints[i].size);
            exit(1);
        }
    }
    for (i = 0; i < sizeof uints / sizeof uints[0]; i++)
        CHECK(encoded_size_uint(uints[i].v) == uints[i].size);

    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_int(w, INT64_MIN));
    EXPECT_ENC("INT64_MIN", 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0);
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_uint(w, UINT64_MAX));
    EXPECT_ENC("UINT64_MAX", 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_int(w, -32));
    EXPECT_ENC("-32", 0xe0);
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_nil(w));
    CHECK_OK(joint_write_bool(w, true));
    CHECK_OK(joint_write_bool(w, false));
    EXPECT_ENC("nil true false", 0xc0, 0xc3, 0xc2);
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_float(w, 1.5f));
    CHECK_OK(joint_write_double(w, 1.5));
    EXPECT_ENC("1.5f 1.5", 0xca, 0x3f, 0xc0, 0, 0, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0);
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_ext(w, 5, (const uint8_t *)"\x01", 1));
    EXPECT_ENC("fixext1", 0xd4, 0x05, 0x01);
}

/* Read every integer boundary back through read_int / read_uint / read_double. */
static void test_integer_round_trip(void)
{
    static const int64_t ints[] = {0, 1, -1, 127, 128, -32, -33, 255, 256, -128, -129, 65535,
                                   65536, -32768, -32769, INT32_MAX, INT32_MIN, UINT32_MAX,
                                   (int64_t)INT32_MIN - 1, INT64_MAX, INT64_MIN};
    static const uint64_t uints[] = {0, 1, 127, 128, 255, 256, 65535, 65536, UINT32_MAX,
                                     (uint64_t)UINT32_MAX + 1, (uint64_t)INT64_MAX,
                                     (uint64_t)INT64_MAX + 1, UINT64_MAX};
    const size_t nints = sizeof ints / sizeof ints[0], nuints = sizeof uints / sizeof uints[0];
    const uint8_t *data;
    size_t len, i;
    joint_reader *r;

    CHECK_OK(joint_writer_reset(w));
    for (i = 0; i < nints; i++)
        CHECK_OK(joint_write_int(w, ints[i]));
    for (i = 0; i < nuints; i++)
        CHECK_OK(joint_write_uint(w, uints[i]));
    data = bytes(&len);
    CHECK_OK(joint_reader_new(data, len, &r));

    for (i = 0; i < nints; i++) {
        int64_t v = 0;
        uint64_t u = 12345;
        CHECK(joint_reader_type(r) == JOINT_TYPE_INT);
        if (ints[i] < 0) { /* a negative value is not a uint: nothing consumed or written */
            CHECK_ST(joint_read_uint(r, &u), JOINT_E_TYPE);
            CHECK(u == 12345);
        }
        CHECK_OK(joint_read_int(r, &v));
        CHECK_EQ_I64(v, ints[i]);
    }
    for (i = 0; i < nuints; i++) {
        uint64_t u = 0;
        int64_t v = 777;
        size_t before = joint_reader_remaining(r);
        if (uints[i] > (uint64_t)INT64_MAX) { /* does not fit int64: E_TYPE, untouched */
            CHECK_ST(joint_read_int(r, &v), JOINT_E_TYPE);
            CHECK(v == 777 && joint_reader_remaining(r) == before);
        }
        CHECK_OK(joint_read_uint(r, &u));
        CHECK(u == uints[i]);
    }
    CHECK(joint_reader_remaining(r) == 0);
    CHECK(joint_reader_type(r) == JOINT_TYPE_NONE);
    joint_reader_free(r);

    /* Integers read as doubles; integral floats read as integers (documented). */
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_int(w, -7));
    CHECK_OK(joint_write_double(w, 42.0));
    CHECK_OK(joint_write_float(w, 3.0f));
    CHECK_OK(joint_write_double(w, 2.5));
    data = bytes(&len);
    CHECK_OK(joint_reader_new(data, len, &r));
    {
        double d = 0;
        int64_t v = 0;
        uint64_t u = 0;
        CHECK_OK(joint_read_double(r, &d));
        CHECK(d == -7.0);
        CHECK(joint_reader_type(r) == JOINT_TYPE_FLOAT);
        CHECK_OK(joint_read_int(r, &v));
        CHECK(v == 42);
        CHECK_OK(joint_read_uint(r, &u));
        CHECK(u == 3);
        v = 99;
        CHECK_ST(joint_read_int(r, &v), JOINT_E_TYPE); /* 2.5 is not integral */
        CHECK(v == 99);
        CHECK_OK(joint_read_double(r, &d));
        CHECK(d == 2.5);
    }
    joint_reader_free(r);
}

static void test_floats(void)
{
    static const double doubles[] = {0.0, -0.0, 1.0, -1.5, DBL_MAX, -DBL_MAX, DBL_MIN,
                                     4.9406564584124654e-324 /* smallest subnormal */,
                                     3.141592653589793, 1e300};
    static const float floats[] = {0.0f, -2.5f, FLT_MAX, FLT_MIN, 1e-45f, 3.14159274f};
    const size_t nd = sizeof doubles / sizeof doubles[0], nf = sizeof floats / sizeof floats[0];
    const uint8_t *data;
    size_t len, i;
    joint_reader *r;
    double d;

    CHECK_OK(joint_writer_reset(w));
    for (i = 0; i < nd; i++)
        CHECK_OK(joint_write_double(w, doubles[i]));
    for (i = 0; i < nf; i++)
        CHECK_OK(joint_write_float(w, floats[i]));
    CHECK_OK(joint_write_double(w, INFINITY));
    CHECK_OK(joint_write_double(w, -INFINITY));
    CHECK_OK(joint_write_double(w, NAN));
    CHECK_OK(joint_write_float(w, NAN));
    data = bytes(&len);
    CHECK(len == nd * 9 + nf * 5 + 3 * 9 + 5);
    CHECK_OK(joint_reader_new(data, len, &r));
    for (i = 0; i < nd; i++) {
        CHECK(joint_reader_type(r) == JOINT_TYPE_FLOAT);
        CHECK_OK(joint_read_double(r, &d));
        CHECK(memcmp(&d, &doubles[i], sizeof d) == 0); /* bit-exact, keeps -0.0 */
    }
    for (i = 0; i < nf; i++) {
        CHECK_OK(joint_read_double(r, &d));
        CHECK((float)d == floats[i] && d == (double)floats[i]);
    }
    CHECK_OK(joint_read_double(r, &d));
    CHECK(isinf(d) && d > 0);
    CHECK_OK(joint_read_double(r, &d));
    CHECK(isinf(d) && d < 0);
    CHECK_OK(joint_read_double(r, &d));
    CHECK(isnan(d));
    CHECK_OK(joint_read_double(r, &d));
    CHECK(isnan(d));
    CHECK(joint_reader_remaining(r) == 0);
    joint_reader_free(r);
}

/* str/bin/ext of every length class. */
static void test_strings_and_blobs(void)
{
    static const char utf8[] = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xf0\x9f\x98\x80"; /* héllo wörld ✓ 😀 */
    static const size_t lengths[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 70000};
    static const size_t ext_lengths[] = {0, 1, 2, 3, 4, 5, 8, 16, 17, 255, 256, 65536};
    static const int8_t ext_types[] = {-128, -1, 0, 1, 127};
    const size_t nlen = sizeof lengths / sizeof lengths[0];
    const size_t next = sizeof ext_lengths / sizeof ext_lengths[0];
    uint8_t *blob = malloc(70000);
    char *text = malloc(70001);
    const uint8_t *data, *got;
    size_t len, got_len, i;
    joint_reader *r;
    int8_t type;

    CHECK(blob && text);
    for (i = 0; i < 70000; i++) {
        blob[i] = (uint8_t)(i * 7); /* includes NUL bytes */
        text[i] = (char)('a' + i % 26);
    }
    text[70000] = '\0';

    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_cstr(w, utf8));
    CHECK_OK(joint_write_cstr(w, ""));
    CHECK_OK(joint_write_str(w, NULL, 0)); /* (NULL, 0) is an empty buffer */
    CHECK_OK(joint_write_bin(w, NULL, 0));
    for (i = 0; i < nlen; i++) {
        CHECK_OK(joint_write_str(w, (const uint8_t *)text, lengths[i]));
        CHECK_OK(joint_write_bin(w, blob, lengths[i]));
    }
    for (i = 0; i < next; i++)
        CHECK_OK(joint_write_ext(w, ext_types[i % 5], blob, ext_lengths[i]));
    data = bytes(&len);

    CHECK_OK(joint_reader_new(data, len, &r));
    CHECK(joint_reader_type(r) == JOINT_TYPE_STR);
    CHECK_OK(joint_read_str(r, &got, &got_len));
    CHECK(got_len == strlen(utf8) && memcmp(got, utf8, got_len) == 0);
    CHECK_OK(joint_read_str(r, &got, &got_len));
    CHECK(got_len == 0);
    CHECK_OK(joint_read_str(r, &got, &got_len));
    CHECK(got_len == 0);
    CHECK(joint_reader_type(r) == JOINT_TYPE_BIN);
    CHECK_OK(joint_read_bin(r, &got, &got_len));
    CHECK(got_len == 0);
    for (i = 0; i < nlen; i++) {
        /* a str is not a bin, and the other way round */
        got = (const uint8_t *)"untouched";
        got_len = 42;
        CHECK_ST(joint_read_bin(r, &got, &got_len), JOINT_E_TYPE);
        CHECK(got_len == 42 && memcmp(got, "untouched", 9) == 0);
        CHECK_OK(joint_read_str(r, &got, &got_len));
        CHECK(got_len == lengths[i] && (lengths[i] == 0 || memcmp(got, text, got_len) == 0));
        /* borrowed from the reader's data, not copied */
        CHECK(got_len == 0 || (got >= data && got + got_len <= data + len));
        CHECK_ST(joint_read_str(r, &got, &got_len), JOINT_E_TYPE);
        CHECK_OK(joint_read_bin(r, &got, &got_len));
        CHECK(got_len == lengths[i] && (lengths[i] == 0 || memcmp(got, blob, got_len) == 0));
    }
    for (i = 0; i < next; i++) {
        CHECK(joint_reader_type(r) == JOINT_TYPE_EXT);
        CHECK_OK(joint_read_ext(r, &type, &got, &got_len));
        CHECK(type == ext_types[i % 5]);
        CHECK(got_len == ext_lengths[i] && (got_len == 0 || memcmp(got, blob, got_len) == 0));
    }
    CHECK(joint_reader_remaining(r) == 0);
    joint_reader_free(r);
    free(blob);
    free(text);
}

/* [ {"k": [1, nil, true], "": {}}, bin, ext, [[[]]], "end" ] and the container sizes
 * around the fix/16/32 boundaries. */
static void test_nested(void)
{
    static const uint32_t counts[] = {0, 15, 16, 65535, 65536};
    const uint8_t *data, *raw, *s;
    size_t len, raw_len, n, i, k;
    joint_reader *r;
    uint32_t count;
    bool b;
    int64_t v;
    int8_t type;

    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_array(w, 5));
    CHECK_OK(joint_write_map(w, 2));
    CHECK_OK(joint_write_cstr(w, "k"));
    CHECK_OK(joint_write_array(w, 3));
    CHECK_OK(joint_write_int(w, 1));
    CHECK_OK(joint_write_nil(w));
    CHECK_OK(joint_write_bool(w, true));
    CHECK_OK(joint_write_cstr(w, ""));
    CHECK_OK(joint_write_map(w, 0));
    CHECK_OK(joint_write_bin(w, (const uint8_t *)"\0\1", 2));
    CHECK_OK(joint_write_ext(w, -5, (const uint8_t *)"abcd", 4));
    CHECK_OK(joint_write_array(w, 1));
    CHECK_OK(joint_write_array(w, 1));
    CHECK_OK(joint_write_array(w, 0));
    CHECK_OK(joint_write_cstr(w, "end"));
    data = bytes(&len);

    CHECK_OK(joint_reader_new(data, len, &r));
    CHECK(joint_reader_type(r) == JOINT_TYPE_ARRAY);
    CHECK_OK(joint_read_array(r, &count));
    CHECK(count == 5);
    CHECK(joint_reader_type(r) == JOINT_TYPE_MAP);
    CHECK_OK(joint_read_map(r, &count));
    CHECK(count == 2);
    CHECK_OK(joint_read_str(r, &s, &n));
    CHECK(n == 1 && s[0] == 'k');
    CHECK_OK(joint_read_array(r, &count));
    CHECK(count == 3);
    CHECK_OK(joint_read_int(r, &v));
    CHECK(v == 1);
    CHECK(joint_reader_type(r) == JOINT_TYPE_NIL);
    CHECK_ST(joint_read_bool(r, &b), JOINT_E_TYPE);
    CHECK_OK(joint_read_nil(r));
    CHECK(joint_reader_type(r) == JOINT_TYPE_BOOL);
    CHECK_ST(joint_read_nil(r), JOINT_E_TYPE);
    b = false;
    CHECK_OK(joint_read_bool(r, &b));
    CHECK(b == true);
    CHECK_OK(joint_read_str(r, &s, &n));
    CHECK(n == 0);
    CHECK_OK(joint_read_map(r, &count));
    CHECK(count == 0);
    CHECK_OK(joint_read_bin(r, &s, &n));
    CHECK(n == 2 && s[0] == 0 && s[1] == 1);
    CHECK_OK(joint_read_ext(r, &type, &s, &n));
    CHECK(type == -5 && n == 4 && memcmp(s, "abcd", 4) == 0);
    /* read_raw takes a whole nested value: [[[]]] is 3 bytes */
    CHECK_OK(joint_read_raw(r, &raw, &raw_len));
    CHECK(raw_len == 3 && raw[0] == 0x91 && raw[1] == 0x91 && raw[2] == 0x90);
    CHECK_OK(joint_read_raw(r, &raw, &raw_len));
    CHECK(raw_len == 4 && memcmp(raw, "\xa3" "end", 4) == 0);
    CHECK_ST(joint_read_raw(r, &raw, &raw_len), JOINT_E_EOF);

    /* read_raw of the whole document gives back exactly what was written */
    CHECK_OK(joint_reader_reset(r, data, len));
    CHECK_OK(joint_read_raw(r, &raw, &raw_len));
    CHECK(raw == data && raw_len == len);
    joint_reader_free(r);

    /* container headers at the fix/16/32 boundaries (elements: nil, or nil: nil) */
    for (i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        CHECK_OK(joint_writer_reset(w));
        CHECK_OK(joint_write_array(w, counts[i]));
        for (k = 0; k < counts[i]; k++)
            CHECK_OK(joint_write_nil(w));
        CHECK_OK(joint_write_map(w, counts[i]));
        for (k = 0; k < 2 * (size_t)counts[i]; k++)
            CHECK_OK(joint_write_nil(w));
        data = bytes(&len);
        CHECK_OK(joint_reader_new(data, len, &r));
        CHECK_OK(joint_read_array(r, &count));
        CHECK(count == counts[i]);
        for (k = 0; k < count; k++)
            CHECK_OK(joint_read_nil(r));
        CHECK_OK(joint_read_map(r, &count));
        CHECK(count == counts[i]);
        for (k = 0; k < 2 * (size_t)count; k++)
            CHECK_OK(joint_read_nil(r));
        CHECK(joint_reader_remaining(r) == 0);
        joint_reader_free(r);
    }

    /* write_raw splices encoded bytes in unchanged */
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_array(w, 2));
    CHECK_OK(joint_write_raw(w, (const uint8_t *)"\x92\x01\x02", 3));
    CHECK_OK(joint_write_raw(w, NULL, 0));
    CHECK_OK(joint_write_nil(w));
    EXPECT_ENC("raw splice", 0x92, 0x92, 0x01, 0x02, 0xc0);
}

/* Failed reads consume nothing and write nothing. */
static void test_reader_errors(void)
{
    static const uint8_t truncated_str[] = {0xa5, 'a', 'b'};       /* fixstr 5, 2 bytes */
    static const uint8_t truncated_int[] = {0xcd, 0x01};           /* uint16, 1 byte */
    static const uint8_t truncated_array[] = {0x92, 0x01};         /* array of 2, 1 element */
    static const uint8_t reserved[] = {0xc1};                      /* never used */
    static const uint8_t one_int[] = {0x05};
    joint_reader *r;
    const uint8_t *p = (const uint8_t *)"x";
    size_t n = 7;
    uint32_t count = 9;
    int64_t v = 11;
    int8_t type = 3;
    bool b = true;
    double d = 1.25;

    CHECK_OK(joint_reader_new(truncated_str, sizeof truncated_str, &r));
    CHECK(joint_reader_type(r) == JOINT_TYPE_NONE || joint_reader_type(r) == JOINT_TYPE_STR);
    CHECK(joint_read_str(r, &p, &n) < 0);
    CHECK(n == 7 && p[0] == 'x' && joint_reader_remaining(r) == sizeof truncated_str);
    CHECK(joint_read_raw(r, &p, &n) < 0);
    CHECK(n == 7 && joint_reader_remaining(r) == sizeof truncated_str);

    CHECK_OK(joint_reader_reset(r, truncated_int, sizeof truncated_int));
    CHECK(joint_read_int(r, &v) < 0);
    CHECK(v == 11 && joint_reader_remaining(r) == sizeof truncated_int);

    CHECK_OK(joint_reader_reset(r, truncated_array, sizeof truncated_array));
    CHECK(joint_read_raw(r, &p, &n) < 0); /* the whole value is not there */
    CHECK(n == 7 && joint_reader_remaining(r) == sizeof truncated_array);
    CHECK_OK(joint_read_array(r, &count)); /* but its header is */
    CHECK(count == 2);

    CHECK_OK(joint_reader_reset(r, reserved, sizeof reserved));
    CHECK(joint_reader_type(r) == JOINT_TYPE_NONE);
    CHECK_ST(joint_read_nil(r), JOINT_E_PROTOCOL);
    CHECK_ST(joint_read_raw(r, &p, &n), JOINT_E_PROTOCOL);
    CHECK(joint_reader_remaining(r) == 1);

    /* wrong type: every reader leaves the value for the next one */
    CHECK_OK(joint_reader_reset(r, one_int, sizeof one_int));
    CHECK_ST(joint_read_nil(r), JOINT_E_TYPE);
    CHECK_ST(joint_read_bool(r, &b), JOINT_E_TYPE);
    CHECK_ST(joint_read_str(r, &p, &n), JOINT_E_TYPE);
    CHECK_ST(joint_read_bin(r, &p, &n), JOINT_E_TYPE);
    CHECK_ST(joint_read_array(r, &count), JOINT_E_TYPE);
    CHECK_ST(joint_read_map(r, &count), JOINT_E_TYPE);
    CHECK_ST(joint_read_ext(r, &type, &p, &n), JOINT_E_TYPE);
    CHECK(b == true && n == 7 && count == 2 && type == 3);
    CHECK(joint_reader_remaining(r) == 1);
    CHECK_OK(joint_read_double(r, &d));
    CHECK(d == 5.0);

    /* end of data */
    CHECK_ST(joint_read_int(r, &v), JOINT_E_EOF);
    CHECK_ST(joint_read_nil(r), JOINT_E_EOF);
    CHECK_ST(joint_read_raw(r, &p, &n), JOINT_E_EOF);
    CHECK(v == 11 && n == 7);

    /* empty reader over (NULL, 0) */
    CHECK_OK(joint_reader_reset(r, NULL, 0));
    CHECK(joint_reader_remaining(r) == 0 && joint_reader_type(r) == JOINT_TYPE_NONE);
    CHECK_ST(joint_read_int(r, &v), JOINT_E_EOF);
    joint_reader_free(r);
}

static void test_error_objects(void)
{
    char buf[16];
    const uint8_t *data;
    size_t len;
    int64_t code;

    /* a plain string */
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_cstr(w, "boom"));
    data = bytes(&len);
    CHECK(joint_error_message(data, len, buf, sizeof buf) == 4);
    CHECK_STREQ(buf, "boom");
    code = 5;
    CHECK_ST(joint_error_code(data, len, &code), JOINT_E_TYPE);
    CHECK(code == 5);

    /* snprintf semantics: truncate, NUL-terminate, return the full length */
    CHECK(joint_error_message(data, len, buf, 3) == 4);
    CHECK_STREQ(buf, "bo");
    CHECK(joint_error_message(data, len, NULL, 0) == 4);
    memset(buf, 'z', sizeof buf);
    CHECK(joint_error_message(data, len, buf, 1) == 4);
    CHECK(buf[0] == '\0' && buf[1] == 'z');

    /* joint's own [code, message] */
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_array(w, 2));
    CHECK_OK(joint_write_int(w, JOINT_RPC_NO_METHOD));
    CHECK_OK(joint_write_cstr(w, "no such method: x"));
    data = bytes(&len);
    CHECK(joint_error_message(data, len, buf, sizeof buf) == strlen("no such method: x"));
    CHECK_STREQ(buf, "no such method:"); /* 15 chars + NUL */
    CHECK_OK(joint_error_code(data, len, &code));
    CHECK(code == JOINT_RPC_NO_METHOD);

    /* a map with "code" and "message" */
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_map(w, 3));
    CHECK_OK(joint_write_cstr(w, "code"));
    CHECK_OK(joint_write_int(w, -42));
    CHECK_OK(joint_write_cstr(w, "data"));
    CHECK_OK(joint_write_array(w, 0));
    CHECK_OK(joint_write_cstr(w, "message"));
    CHECK_OK(joint_write_cstr(w, "bad"));
    data = bytes(&len);
    CHECK(joint_error_message(data, len, buf, sizeof buf) == 3);
    CHECK_STREQ(buf, "bad");
    CHECK_OK(joint_error_code(data, len, &code));
    CHECK(code == -42);

    /* no message: 0, and an empty string in buf */
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_int(w, 3));
    data = bytes(&len);
    buf[0] = 'x';
    CHECK(joint_error_message(data, len, buf, sizeof buf) == 0);
    CHECK(buf[0] == '\0');
    CHECK(joint_error_message(NULL, 0, NULL, 0) == 0);
}

int main(void)
{
    CHECK_OK(joint_writer_new(&w));
    test_integer_encodings();
    test_integer_round_trip();
    test_floats();
    test_strings_and_blobs();
    test_nested();
    test_reader_errors();
    test_error_objects();
    joint_writer_free(w);
    printf("api_msgpack: ok\n");
    return 0;
}
