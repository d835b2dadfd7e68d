/* testutil.h — tiny helpers shared by the C tests (not part of the library's API). */
#ifndef JOINT_TESTUTIL_H
#define JOINT_TESTUTIL_H

#include <joint.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Abort the test with a message that names the failed condition. */
#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

/* Compare two joint_status values and print both names on failure. */
#define CHECK_ST(expr, want)                                                                  \
    do {                                                                                      \
        joint_status check_st_got_ = (expr);                                                  \
        joint_status check_st_want_ = (want);                                                 \
        if (check_st_got_ != check_st_want_) {                                                \
            fprintf(stderr, "%s:%d: %s returned %d (%s), want %d (%s)\n", __FILE__, __LINE__, \
                    #expr, (int)check_st_got_, joint_status_str(check_st_got_),               \
                    (int)check_st_want_, joint_status_str(check_st_want_));                   \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

#define CHECK_OK(expr) CHECK_ST(expr, JOINT_OK)

#define CHECK_EQ_I64(got, want)                                                               \
    do {                                                                                      \
        int64_t check_got_ = (int64_t)(got), check_want_ = (int64_t)(want);                   \
        if (check_got_ != check_want_) {                                                      \
            fprintf(stderr, "%s:%d: %s == %" PRId64 ", want %" PRId64 "\n", __FILE__,         \
                    __LINE__, #got, check_got_, check_want_);                                 \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

#define CHECK_STREQ(got, want)                                                                \
    do {                                                                                      \
        const char *check_got_ = (got), *check_want_ = (want);                                \
        if (!check_got_ || strcmp(check_got_, check_want_) != 0) {                            \
            fprintf(stderr, "%s:%d: %s == \"%s\", want \"%s\"\n", __FILE__, __LINE__, #got,   \
                    check_got_ ? check_got_ : "(null)", check_want_);                         \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

/* One MessagePack integer that is all of `data`. */
static inline int64_t tu_dec_int(const uint8_t *data, size_t len)
{
    joint_reader *r;
    int64_t v = 0;
    CHECK_OK(joint_reader_new(data, len, &r));
    CHECK_OK(joint_read_int(r, &v));
    CHECK(joint_reader_remaining(r) == 0);
    joint_reader_free(r);
    return v;
}

/* How a call ended, as tu_on_response records it: how many times it completed (a test
 * checks it ends at exactly 1), its status and, on success, its integer result. */
struct tu_outcome {
    int done;
    joint_status status;
    int64_t value;
};

static inline void tu_on_response(joint_conn *conn, const joint_response *resp, void *user_data)
{
    struct tu_outcome *o = user_data;
    const uint8_t *data;
    size_t len;
    (void)conn;
    o->done++;
    o->status = joint_response_status(resp);
    if (o->status == JOINT_OK) {
        CHECK_OK(joint_response_result(resp, &data, &len));
        o->value = tu_dec_int(data, len);
    }
}

static inline int64_t tu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Drive `ctx` with joint_ctx_wait until `cond` holds; fail after `ms` milliseconds. */
#define TU_WAIT_FOR(ctx, cond, ms)                                                            \
    do {                                                                                      \
        int64_t tu_deadline_ = tu_now_ms() + (ms);                                            \
        while (!(cond)) {                                                                     \
            if (tu_now_ms() > tu_deadline_) {                                                 \
                fprintf(stderr, "%s:%d: timed out waiting for %s\n", __FILE__, __LINE__,      \
                        #cond);                                                               \
                exit(1);                                                                      \
            }                                                                                 \
            CHECK_OK(joint_ctx_wait((ctx), 20));                                              \
        }                                                                                     \
    } while (0)

/* A context listening on a free loopback port with one client connection to itself. */
struct tu_pair {
    joint_ctx *ctx;
    joint_listener *listener;
    joint_conn *client; /* owned by the test: joint_conn_free */
};

static inline void tu_pair_open(struct tu_pair *p, const joint_config *config)
{
    CHECK_OK(joint_ctx_new(config, &p->ctx));
    CHECK_OK(joint_ctx_listen(p->ctx, "tcp://127.0.0.1:0", &p->listener));
    CHECK_OK(joint_ctx_connect(p->ctx, joint_listener_uri(p->listener), &p->client));
}

/* Encode a small params array of integers. The result is borrowed from `w`. */
static inline void tu_ints(joint_writer *w, const uint8_t **data, size_t *len, int n, const int64_t *v)
{
    int i;
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_array(w, (uint32_t)n));
    for (i = 0; i < n; i++)
        CHECK_OK(joint_write_int(w, v[i]));
    CHECK_OK(joint_writer_data(w, data, len));
}

/* Read a buffer holding one integer. */
static inline int64_t tu_buf_int(const joint_buf *buf)
{
    const uint8_t *data;
    size_t len;
    joint_reader *r;
    int64_t v = 0;
    CHECK_OK(joint_buf_data(buf, &data, &len));
    CHECK_OK(joint_reader_new(data, len, &r));
    CHECK_OK(joint_read_int(r, &v));
    CHECK(joint_reader_remaining(r) == 0);
    joint_reader_free(r);
    return v;
}

/* A request handler that answers with the sum of its integer params. */
static inline void tu_handle_sum(joint_request *req, void *user_data)
{
    const uint8_t *params, *out;
    size_t len, out_len;
    joint_reader *r;
    joint_writer *w;
    uint32_t n, i;
    int64_t sum = 0, v;
    (void)user_data;
    CHECK_OK(joint_request_params(req, &params, &len));
    CHECK_OK(joint_reader_new(params, len, &r));
    CHECK_OK(joint_read_array(r, &n));
    for (i = 0; i < n; i++) {
        CHECK_OK(joint_read_int(r, &v));
        sum += v;
    }
    joint_reader_free(r);
    CHECK_OK(joint_writer_new(&w));
    CHECK_OK(joint_write_int(w, sum));
    CHECK_OK(joint_writer_data(w, &out, &out_len));
    CHECK_OK(joint_request_reply(req, out, out_len));
    joint_writer_free(w);
}

#endif /* JOINT_TESTUTIL_H */
