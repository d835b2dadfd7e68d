/* api_free_order: handles outlive their context safely. A context that serves and calls
 * itself holds five things the application can free: the context, a connection it made, a
 * listener, a pulled stream and a request its handler kept. For every one of the 120 orders
 * of freeing them:
 *   - once the context is freed, every remaining handle's functions return JOINT_E_STATE
 *     (joint_conn_is_open false, joint_request_conn NULL) and its _free still works;
 *   - a connection freed by a callback that joint_ctx_free runs is not touched again;
 *   - nothing leaks and no freed memory is touched (run again under Valgrind as
 *     leak_free_order, and under ASan in the sanitizer build). */
#include "testutil.h"

enum { CTX, CONN, LISTENER, STREAM, REQUEST, NTHINGS };

static joint_request *held;

static void keep(joint_request *req, void *user_data)
{
    (void)user_data;
    held = req;
}

static void ignore_event(joint_request *req, int32_t event, const uint8_t *data, size_t len, void *user_data)
{
    (void)req, (void)event, (void)data, (void)len, (void)user_data;
}

struct things {
    joint_ctx *ctx;
    joint_conn *conn;
    joint_listener *listener;
    joint_stream *stream;
    joint_request *request;
    int ctx_freed;
};

static void open_things(struct things *t)
{
    memset(t, 0, sizeof *t);
    held = NULL;
    CHECK_OK(joint_ctx_new(NULL, &t->ctx));
    CHECK_OK(joint_ctx_register(t->ctx, "hold", keep, NULL, NULL));
    CHECK_OK(joint_ctx_listen(t->ctx, "tcp://127.0.0.1:0", &t->listener));
    CHECK_OK(joint_ctx_connect(t->ctx, joint_listener_uri(t->listener), &t->conn));
    TU_WAIT_FOR(t->ctx, joint_conn_extension(t->conn) == JOINT_EXT_ON, 5000);
    CHECK_OK(joint_conn_call_stream(t->conn, "hold", NULL, 0, NULL, &t->stream));
    TU_WAIT_FOR(t->ctx, held != NULL, 5000);
    t->request = held;
    /* an event callback points back at the request: freeing it must unhook it */
    CHECK_OK(joint_request_set_event_cb(t->request, ignore_event, NULL, NULL));
}

/* What each handle says once its context is gone. */
static void check_orphaned(struct things *t, int thing)
{
    joint_buf *buf = NULL;
    int32_t event = 0;
    switch (thing) {
    case CONN:
        CHECK(!joint_conn_is_open(t->conn));
        CHECK(joint_conn_extension(t->conn) == -1);
        CHECK_ST(joint_conn_call(t->conn, "hold", NULL, 0, -1, NULL, NULL, NULL), JOINT_E_STATE);
        CHECK_ST(joint_conn_notify(t->conn, "n", NULL, 0), JOINT_E_STATE);
        CHECK_ST(joint_conn_close(t->conn), JOINT_E_STATE);
        CHECK_ST(joint_conn_cancel(t->conn, 1), JOINT_E_STATE);
        CHECK_OK(joint_conn_set_user_data(t->conn, t)); /* the handle's own data still works */
        CHECK(joint_conn_user_data(t->conn) == t);
        break;
    case LISTENER:
        CHECK(strncmp(joint_listener_uri(t->listener), "tcp://127.0.0.1:", 16) == 0);
        CHECK_ST(joint_listener_close(t->listener), JOINT_E_STATE);
        break;
    case STREAM:
        CHECK_ST(joint_stream_next(t->stream, 0, &buf, NULL), JOINT_E_STATE);
        CHECK(buf == NULL);
        CHECK(joint_stream_call_id(t->stream) != 0);
        break;
    case REQUEST:
        CHECK(joint_request_conn(t->request) == NULL);
        CHECK_ST(joint_request_set_event_cb(t->request, NULL, NULL, NULL), JOINT_E_STATE);
        CHECK(joint_request_is_cancelled(t->request)); /* its connection is gone */
        CHECK_ST(joint_request_next_input(t->request, 0, &event, &buf), JOINT_OK);
        CHECK((event == JOINT_INPUT_CLOSED || event == JOINT_INPUT_CANCELLED) && buf == NULL); /* the stream freed first cancels */
        break;
    }
}

static void free_thing(struct things *t, int thing)
{
    int other;
    switch (thing) {
    case CTX:
        joint_ctx_free(t->ctx);
        t->ctx_freed = 1;
        /* everything not freed yet is an orphan now */
        for (other = CONN; other < NTHINGS; other++) {
            if ((other == CONN && t->conn) || (other == LISTENER && t->listener) || (other == STREAM && t->stream) ||
                (other == REQUEST && t->request))
                check_orphaned(t, other);
        }
        break;
    case CONN:
        joint_conn_free(t->conn);
        t->conn = NULL;
        break;
    case LISTENER:
        joint_listener_free(t->listener);
        t->listener = NULL;
        break;
    case STREAM:
        joint_stream_free(t->stream);
        t->stream = NULL;
        break;
    case REQUEST:
        /* answering is allowed in any state; it consumes the request */
        (void)joint_request_reply(t->request, NULL, 0);
        t->request = NULL;
        break;
    }
    if (!t->ctx_freed)
        CHECK_OK(joint_ctx_wait(t->ctx, 0)); /* the context keeps working meanwhile */
}

/* The permutation number `n` (0..119) of the five things, as a factorial-base number. */
static void order_of(int n, int order[NTHINGS])
{
    int pool[NTHINGS] = {CTX, CONN, LISTENER, STREAM, REQUEST};
    int left = NTHINGS, i, j, f;
    for (i = 0; i < NTHINGS; i++) {
        for (f = 1, j = 2; j < left; j++)
            f *= j;
        j = n / f;
        n %= f;
        order[i] = pool[j];
        for (; j < left - 1; j++)
            pool[j] = pool[j + 1];
        left--;
    }
}

/* A completion that runs while joint_ctx_free cancels its call frees the connection. */
static void free_conn_on_done(joint_conn *conn, const joint_response *resp, void *user_data)
{
    CHECK_ST(joint_response_status(resp), JOINT_E_CANCELLED);
    CHECK(conn == *(joint_conn **)user_data);
    joint_conn_free(conn);
    *(joint_conn **)user_data = NULL;
}

static void test_free_from_a_callback_of_ctx_free(void)
{
    joint_ctx *ctx;
    joint_listener *l;
    joint_conn *conn;
    held = NULL;
    CHECK_OK(joint_ctx_new(NULL, &ctx));
    CHECK_OK(joint_ctx_register(ctx, "hold", keep, NULL, NULL));
    CHECK_OK(joint_ctx_listen(ctx, "tcp://127.0.0.1:0", &l));
    CHECK_OK(joint_ctx_connect(ctx, joint_listener_uri(l), &conn));
    CHECK_OK(joint_conn_call(conn, "hold", NULL, 0, -1, free_conn_on_done, &conn, NULL));
    TU_WAIT_FOR(ctx, held != NULL, 5000);
    joint_ctx_free(ctx);
    CHECK(conn == NULL); /* the completion ran, and freed it */
    joint_request_free(held);
    joint_listener_free(l);
}

int main(void)
{
    int n, i, order[NTHINGS], seen = 0;
    for (n = 0; n < 120; n++) {
        struct things t;
        order_of(n, order);
        for (i = 0; i < NTHINGS; i++)
            seen |= 1 << (order[i] * NTHINGS + i); /* every thing at every position */
        open_things(&t);
        for (i = 0; i < NTHINGS; i++)
            free_thing(&t, order[i]);
    }
    CHECK(seen == (1 << (NTHINGS * NTHINGS)) - 1);
    test_free_from_a_callback_of_ctx_free();
    printf("api_free_order: 120 orders ok\n");
    return 0;
}
