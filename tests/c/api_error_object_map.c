/* api_error_object_map: joint_error_message / joint_error_code on error objects that are
 * maps with non-string keys, e.g. {1: 2, "message": "hi"} (a peer may send any object as
 * its error).
 *
 * Regression test: the map branch of codec::error_message once skipped a non-string key
 * without consuming it, so keys and values got out of step ({1: 2, "message": "hi"} gave
 * no message). */
#include "testutil.h"

static size_t message_of(joint_writer *w, char *buf, size_t size)
{
    const uint8_t *data;
    size_t len;
    CHECK_OK(joint_writer_data(w, &data, &len));
    return joint_error_message(data, len, buf, size);
}

int main(void)
{
    joint_writer *w;
    char buf[64];
    const uint8_t *data;
    size_t len;
    int64_t code = 0;

    CHECK_OK(joint_writer_new(&w));

    /* {1: 2, "message": "hi"} -> "hi" */
    CHECK_OK(joint_write_map(w, 2));
    CHECK_OK(joint_write_int(w, 1));
    CHECK_OK(joint_write_int(w, 2));
    CHECK_OK(joint_write_cstr(w, "message"));
    CHECK_OK(joint_write_cstr(w, "hi"));
    printf("{1: 2, \"message\": \"hi\"} -> %zu \"%s\"\n", message_of(w, buf, sizeof buf), buf);
    CHECK(message_of(w, buf, sizeof buf) == 2);
    CHECK_STREQ(buf, "hi");

    /* {1: "message", "x": "y"} -> no message */
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_map(w, 2));
    CHECK_OK(joint_write_int(w, 1));
    CHECK_OK(joint_write_cstr(w, "message"));
    CHECK_OK(joint_write_cstr(w, "x"));
    CHECK_OK(joint_write_cstr(w, "y"));
    printf("{1: \"message\", \"x\": \"y\"} -> %zu \"%s\"\n", message_of(w, buf, sizeof buf), buf);
    CHECK(message_of(w, buf, sizeof buf) == 0);

    /* {[1]: nil, "code": 7} -> code 7 (error_code skips whole keys: expected to pass) */
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_map(w, 2));
    CHECK_OK(joint_write_array(w, 1));
    CHECK_OK(joint_write_int(w, 1));
    CHECK_OK(joint_write_nil(w));
    CHECK_OK(joint_write_cstr(w, "code"));
    CHECK_OK(joint_write_int(w, 7));
    CHECK_OK(joint_writer_data(w, &data, &len));
    CHECK_OK(joint_error_code(data, len, &code));
    CHECK(code == 7);

    joint_writer_free(w);
    printf("api_error_object_map: ok\n");
    return 0;
}
