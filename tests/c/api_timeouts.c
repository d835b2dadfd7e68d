/* api_timeouts: one meaning per timeout value, on every function that takes one.
 *   - waits (joint_ctx_wait, joint_stream_next, joint_request_next_input,
 *     joint_request_wait_writable): -1 waits as long as it takes, 0 does not wait, > 0 waits
 *     that many ms; "nothing yet" is JOINT_WOULD_BLOCK; below -1 is JOINT_E_INVAL;
 *   - limits on things that cannot end at once (joint_conn_call, joint_conn_call_sync,
 *     joint_call_opts_set_timeout_ms, the connect, message and idle timeouts): -1 none,
 *     > 0 ms (a call then fails with JOINT_E_TIMEOUT), 0 and below -1 are JOINT_E_INVAL;
 *   - the linger: 0 does not wait, -1 is JOINT_E_INVAL. */
#include "testutil.h"

#include <pthread.h>

#define SHORT_MS 40
#define WAIT_MS 5000

static joint_ctx *ctx;
static joint_conn *conn;
static joint_request *held;

/* What the pool handler saw, and where it stands (shared with the loop thread). */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int stage; /* 1: waiting for credit with -1; 2: waiting for input with -1; 3: done */
static int failures;

static void set_stage(int s)
{
    pthread_mutex_lock(&lock);
    stage = s;
    pthread_mutex_unlock(&lock);
}

static int get_stage(void)
{
    int s;
    pthread_mutex_lock(&lock);
    s = stage;
    pthread_mutex_unlock(&lock);
    return s;
}

#define EXPECT(cond)                                                                              \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "%s:%d: pool handler: %s\n", __FILE__, __LINE__, #cond);              \
            pthread_mutex_lock(&lock);                                                            \
            failures++;                                                                           \
            pthread_mutex_unlock(&lock);                                                          \
        }                                                                                         \
    } while (0)

/* Runs on a worker thread: every timeout value of the two blocking request functions. */
static void pool_handler(joint_request *req, void *user_data)
{
    static const uint8_t one = 0x01;
    int32_t event = -1;
    joint_buf *buf = NULL;
    int64_t t0;
    (void)user_data;

    EXPECT(joint_request_yield(req, &one, 1) == JOINT_OK);           /* the window's one item */
    EXPECT(joint_request_yield(req, &one, 1) == JOINT_WOULD_BLOCK);  /* no credit left */
    t0 = tu_now_ms();
    EXPECT(joint_request_wait_writable(req, 0) == JOINT_WOULD_BLOCK);
    EXPECT(tu_now_ms() - t0 < SHORT_MS);
    t0 = tu_now_ms();
    EXPECT(joint_request_wait_writable(req, SHORT_MS) == JOINT_WOULD_BLOCK);
    EXPECT(tu_now_ms() - t0 >= SHORT_MS - 5);
    EXPECT(joint_request_wait_writable(req, -2) == JOINT_E_INVAL);
    set_stage(1);
    EXPECT(joint_request_wait_writable(req, -1) == JOINT_OK); /* the client grants */

    t0 = tu_now_ms();
    EXPECT(joint_request_next_input(req, 0, &event, &buf) == JOINT_WOULD_BLOCK);
    EXPECT(tu_now_ms() - t0 < SHORT_MS);
    t0 = tu_now_ms();
    EXPECT(joint_request_next_input(req, SHORT_MS, &event, &buf) == JOINT_WOULD_BLOCK);
    EXPECT(tu_now_ms() - t0 >= SHORT_MS - 5);
    EXPECT(joint_request_next_input(req, -2, &event, &buf) == JOINT_E_INVAL);
    EXPECT(event == -1 && buf == NULL); /* nothing written on any of those */
    set_stage(2);
    EXPECT(joint_request_next_input(req, -1, &event, &buf) == JOINT_OK); /* the client sends */
    EXPECT(event == JOINT_INPUT_VALUE && buf != NULL);
    joint_buf_free(buf);
    joint_request_reply(req, NULL, 0);
    set_stage(3);
}

static void keep(joint_request *req, void *user_data)
{
    (void)user_data;
    held = req;
}

struct done {
    int runs;
    joint_status status;
};

static void on_done(joint_conn *c, const joint_response *resp, void *user_data)
{
    struct done *d = user_data;
    (void)c;
    d->runs++;
    d->status = joint_response_status(resp);
}

static int fired;

static void on_timer(joint_ctx *c, void *user_data)
{
    (void)c, (void)user_data;
    fired = 1;
}

static void test_ctx_wait(void)
{
    int64_t t0 = tu_now_ms();
    CHECK_OK(joint_ctx_wait(ctx, 0));
    CHECK(tu_now_ms() - t0 < SHORT_MS);
    t0 = tu_now_ms();
    CHECK_OK(joint_ctx_wait(ctx, SHORT_MS));
    CHECK(tu_now_ms() - t0 >= SHORT_MS - 5);
    CHECK_ST(joint_ctx_wait(ctx, -2), JOINT_E_INVAL);
    /* -1: until something happens, here a timer */
    fired = 0;
    CHECK_OK(joint_ctx_add_timer(ctx, SHORT_MS, on_timer, NULL, NULL, NULL));
    t0 = tu_now_ms();
    while (!fired)
        CHECK_OK(joint_ctx_wait(ctx, -1));
    CHECK(tu_now_ms() - t0 >= SHORT_MS - 5);
}

static void test_call_limits(void)
{
    joint_buf *result = NULL, *error = NULL;
    joint_call_opts *o;
    struct done d = {0, 0}, none = {0, 0};
    int64_t t0;

    CHECK_ST(joint_conn_call(conn, "hold", NULL, 0, 0, on_done, &none, NULL), JOINT_E_INVAL);
    CHECK_ST(joint_conn_call(conn, "hold", NULL, 0, -2, on_done, &none, NULL), JOINT_E_INVAL);
    CHECK_ST(joint_conn_call_sync(conn, "hold", NULL, 0, 0, &result, &error), JOINT_E_INVAL);
    CHECK(result == NULL && error == NULL);

    /* > 0: the call fails with JOINT_E_TIMEOUT after it */
    t0 = tu_now_ms();
    CHECK_ST(joint_conn_call_sync(conn, "hold", NULL, 0, SHORT_MS, &result, &error), JOINT_E_TIMEOUT);
    CHECK(tu_now_ms() - t0 >= SHORT_MS - 5);
    CHECK(result == NULL && error == NULL);
    joint_request_free(held);
    held = NULL;

    /* -1: no limit — the call is still pending well after a short timeout would have fired */
    CHECK_OK(joint_conn_call(conn, "hold", NULL, 0, -1, on_done, &d, NULL));
    TU_WAIT_FOR(ctx, held != NULL, WAIT_MS);
    t0 = tu_now_ms();
    while (tu_now_ms() - t0 < 3 * SHORT_MS)
        CHECK_OK(joint_ctx_wait(ctx, SHORT_MS));
    CHECK(d.runs == 0);
    joint_request_reply(held, NULL, 0);
    held = NULL;
    TU_WAIT_FOR(ctx, d.runs == 1, WAIT_MS);
    CHECK_OK(d.status);
    CHECK(none.runs == 0);

    CHECK_OK(joint_call_opts_new(&o));
    CHECK_ST(joint_call_opts_set_timeout_ms(o, 0), JOINT_E_INVAL);
    CHECK_ST(joint_call_opts_set_timeout_ms(o, -2), JOINT_E_INVAL);
    CHECK_OK(joint_call_opts_set_timeout_ms(o, -1));
    CHECK_OK(joint_call_opts_set_timeout_ms(o, SHORT_MS));
    d.runs = 0;
    CHECK_OK(joint_conn_call_opts(conn, "hold", NULL, 0, o, on_done, &d, NULL));
    TU_WAIT_FOR(ctx, d.runs == 1, WAIT_MS);
    CHECK_ST(d.status, JOINT_E_TIMEOUT);
    joint_call_opts_free(o);
    if (held) {
        joint_request_free(held); /* answered already by its deadline: this does nothing */
        held = NULL;
    }
}

static void test_config_limits(void)
{
    joint_config *cfg;
    CHECK_OK(joint_config_new(&cfg));
    CHECK_ST(joint_config_set_connect_timeout_ms(cfg, 0), JOINT_E_INVAL);
    CHECK_ST(joint_config_set_message_timeout_ms(cfg, 0), JOINT_E_INVAL);
    CHECK_ST(joint_config_set_idle_timeout_ms(cfg, 0), JOINT_E_INVAL);
    CHECK_ST(joint_config_set_connect_timeout_ms(cfg, -2), JOINT_E_INVAL);
    CHECK_ST(joint_config_set_message_timeout_ms(cfg, -2), JOINT_E_INVAL);
    CHECK_ST(joint_config_set_idle_timeout_ms(cfg, -2), JOINT_E_INVAL);
    CHECK_OK(joint_config_set_connect_timeout_ms(cfg, -1));
    CHECK_OK(joint_config_set_message_timeout_ms(cfg, -1));
    CHECK_OK(joint_config_set_idle_timeout_ms(cfg, -1));
    CHECK_OK(joint_config_set_connect_timeout_ms(cfg, 1));
    CHECK_OK(joint_config_set_linger_ms(cfg, 0));
    CHECK_ST(joint_config_set_linger_ms(cfg, -1), JOINT_E_INVAL);
    joint_config_free(cfg);
}

static void test_stream_next(void)
{
    joint_stream *s;
    joint_buf *item = NULL;
    int64_t t0;
    CHECK_OK(joint_conn_call_stream(conn, "hold", NULL, 0, NULL, &s));
    TU_WAIT_FOR(ctx, held != NULL, WAIT_MS);
    t0 = tu_now_ms();
    CHECK_ST(joint_stream_next(s, 0, &item, NULL), JOINT_WOULD_BLOCK);
    CHECK(tu_now_ms() - t0 < SHORT_MS);
    t0 = tu_now_ms();
    CHECK_ST(joint_stream_next(s, SHORT_MS, &item, NULL), JOINT_WOULD_BLOCK);
    CHECK(tu_now_ms() - t0 >= SHORT_MS - 5);
    CHECK_ST(joint_stream_next(s, -2, &item, NULL), JOINT_E_INVAL);
    CHECK(item == NULL);
    /* -1: until the result comes */
    CHECK_OK(joint_request_reply(held, (const uint8_t *)"\x07", 1));
    held = NULL;
    CHECK_ST(joint_stream_next(s, -1, &item, NULL), JOINT_DONE);
    CHECK(item != NULL);
    joint_buf_free(item);
    joint_stream_free(s);
}

static void test_request_waits(void)
{
    joint_call_opts *o;
    struct done d = {0, 0};
    uint64_t id;
    CHECK_OK(joint_call_opts_new(&o));
    CHECK_OK(joint_call_opts_set_window(o, 1));
    CHECK_OK(joint_call_opts_set_manual_credit(o, true));
    CHECK_OK(joint_call_opts_set_client_stream(o, true));
    CHECK_OK(joint_conn_call_opts(conn, "pool", NULL, 0, o, on_done, &d, &id));
    joint_call_opts_free(o);
    TU_WAIT_FOR(ctx, get_stage() == 1, WAIT_MS);
    CHECK_OK(joint_conn_grant(conn, id, 1));
    TU_WAIT_FOR(ctx, get_stage() == 2, WAIT_MS);
    CHECK_OK(joint_conn_send(conn, id, (const uint8_t *)"\x05", 1));
    TU_WAIT_FOR(ctx, get_stage() == 3 && d.runs == 1, WAIT_MS);
    CHECK_OK(d.status);
    CHECK(failures == 0);
}

int main(void)
{
    joint_listener *listener;
    test_config_limits();

    CHECK_OK(joint_ctx_new(NULL, &ctx));
    CHECK_OK(joint_ctx_register(ctx, "hold", keep, NULL, NULL));
    CHECK_OK(joint_ctx_register_pool(ctx, "pool", pool_handler, NULL, NULL));
    CHECK_OK(joint_ctx_listen(ctx, "tcp://127.0.0.1:0", &listener));
    CHECK_OK(joint_ctx_connect(ctx, joint_listener_uri(listener), &conn));
    TU_WAIT_FOR(ctx, joint_conn_extension(conn) == JOINT_EXT_ON, WAIT_MS);

    test_ctx_wait();
    test_call_limits();
    test_stream_next();
    test_request_waits();

    joint_conn_free(conn);
    joint_ctx_free(ctx);
    joint_listener_free(listener);
    printf("api_timeouts: ok\n");
    return 0;
}
