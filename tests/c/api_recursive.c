/* api_recursive: re-entrancy rules (G8). From inside every kind of callback — request
 * handler, response, timer, connection event, notification —
 *   joint_ctx_process, joint_ctx_wait and joint_conn_call_sync return JOINT_E_RECURSIVE
 *   (out-params untouched, detail in joint_ctx_last_error), joint_ctx_free is ignored;
 *   call, notify, register, add_timer, cancel and reply work;
 *   processing a *different* context is allowed (nested loops).
 * And after the callbacks return, the context still works. */
#include "testutil.h"

static joint_ctx *g_ctx;     /* the context whose callbacks probe */
static joint_ctx *g_other;   /* an unrelated context */
static joint_conn *g_client; /* a client connection of g_ctx */
static int probes;           /* callbacks that ran the probe */
static int nested_done;      /* completions of calls made from inside callbacks */
static int notified;

static void nested_response(joint_conn *conn, const joint_response *resp, void *user_data)
{
    (void)conn, (void)user_data;
    CHECK_OK(joint_response_status(resp));
    nested_done++;
}

static void noop_timer(joint_ctx *ctx, void *user_data)
{
    (void)ctx, (void)user_data;
}

/* The checks every callback runs. `where` names the callback for messages. */
static void probe(const char *where)
{
    joint_buf *result = (joint_buf *)0x1, *error = (joint_buf *)0x2;
    uint64_t timer;
    printf("probing from %s\n", where);

    CHECK_ST(joint_ctx_process(g_ctx), JOINT_E_RECURSIVE);
    CHECK(joint_ctx_last_error(g_ctx)[0] != '\0');
    CHECK_ST(joint_ctx_wait(g_ctx, 0), JOINT_E_RECURSIVE);
    CHECK_ST(joint_ctx_wait(g_ctx, 1000), JOINT_E_RECURSIVE); /* must not block either */
    CHECK_ST(joint_conn_call_sync(g_client, "sum", NULL, 0, 1000, &result, &error), JOINT_E_RECURSIVE);
    CHECK(result == (joint_buf *)0x1 && error == (joint_buf *)0x2);
    joint_ctx_free(g_ctx); /* ignored from a callback */

    /* what *is* allowed from a callback */
    CHECK_OK(joint_conn_call(g_client, "sum", NULL, 0, 5000, nested_response, NULL, NULL));
    CHECK_OK(joint_conn_notify(g_client, "note", NULL, 0));
    CHECK_OK(joint_ctx_register(g_ctx, "sum", tu_handle_sum, NULL, NULL));
    CHECK_OK(joint_ctx_add_timer(g_ctx, 100000, noop_timer, NULL, NULL, &timer));
    CHECK_OK(joint_ctx_cancel_timer(g_ctx, timer));
    CHECK_OK(joint_ctx_wakeup(g_ctx));

    /* another context is not "this" context: its loop may run here */
    CHECK_OK(joint_ctx_process(g_other));
    CHECK_OK(joint_ctx_wait(g_other, 0));
    probes++;
}

static void on_probe_request(joint_request *req, void *user_data)
{
    (void)user_data;
    probe("a request handler");
    CHECK_OK(joint_request_reply(req, (const uint8_t *)"\xc3", 1));
}

static void on_response(joint_conn *conn, const joint_response *resp, void *user_data)
{
    int *done = user_data;
    (void)conn;
    CHECK_OK(joint_response_status(resp));
    probe("a response callback");
    *done = 1;
}

static void on_timer(joint_ctx *ctx, void *user_data)
{
    int *fired = user_data;
    CHECK(ctx == g_ctx);
    probe("a timer callback");
    *fired = 1;
}

static void on_conn(joint_conn *conn, int32_t event, joint_status status, const char *reason, void *user_data)
{
    int *opened = user_data;
    (void)conn, (void)status, (void)reason;
    if (event == JOINT_CONN_OPEN && *opened == 0) {
        probe("a connection callback");
        *opened = 1;
    }
}

static void on_notification(joint_conn *conn, const uint8_t *method, size_t method_len, const uint8_t *params,
                            size_t params_len, void *user_data)
{
    (void)conn, (void)params, (void)params_len, (void)user_data;
    if (method_len == 5 && memcmp(method, "probe", 5) == 0) {
        probe("a notification callback");
        notified = 1;
    }
}

int main(void)
{
    struct tu_pair p;
    int opened = 0, response_done = 0, timer_fired = 0;
    joint_buf *result, *error = NULL;
    joint_listener *other_listener;
    joint_conn *other_conn;

    /* An unrelated context with some life in it, to process from inside callbacks. */
    CHECK_OK(joint_ctx_new(NULL, &g_other));
    CHECK_OK(joint_ctx_listen(g_other, "tcp://127.0.0.1:0", &other_listener));
    CHECK_OK(joint_ctx_connect(g_other, joint_listener_uri(other_listener), &other_conn));

    CHECK_OK(joint_ctx_new(NULL, &p.ctx));
    g_ctx = p.ctx;
    CHECK_OK(joint_ctx_set_conn_cb(p.ctx, on_conn, &opened, NULL));
    CHECK_OK(joint_ctx_set_notification_cb(p.ctx, on_notification, NULL, NULL));
    CHECK_OK(joint_ctx_register(p.ctx, "probe", on_probe_request, NULL, NULL));
    CHECK_OK(joint_ctx_register(p.ctx, "sum", tu_handle_sum, NULL, NULL));
    CHECK_OK(joint_ctx_listen(p.ctx, "tcp://127.0.0.1:0", &p.listener));
    CHECK_OK(joint_ctx_connect(p.ctx, joint_listener_uri(p.listener), &p.client));
    g_client = p.client;

    TU_WAIT_FOR(p.ctx, opened, 5000);                                           /* conn cb */
    CHECK_OK(joint_conn_call(p.client, "probe", NULL, 0, 5000, on_response, &response_done, NULL));
    TU_WAIT_FOR(p.ctx, response_done, 5000);                    /* handler + response cb */
    CHECK_OK(joint_ctx_add_timer(p.ctx, 1, on_timer, &timer_fired, NULL, NULL));
    TU_WAIT_FOR(p.ctx, timer_fired, 5000);                                     /* timer cb */
    CHECK_OK(joint_conn_notify(p.client, "probe", NULL, 0));
    TU_WAIT_FOR(p.ctx, notified, 5000);                                 /* notification cb */
    CHECK(probes == 5);

    /* Every call made from inside a callback completes once we are outside again. */
    TU_WAIT_FOR(p.ctx, nested_done == probes, 5000);

    /* The context survived the ignored joint_ctx_free calls and works normally. */
    CHECK_OK(joint_conn_call_sync(p.client, "sum", NULL, 0, 5000, &result, &error));
    CHECK(tu_buf_int(result) == 0);
    joint_buf_free(result);
    CHECK_OK(joint_ctx_process(p.ctx));

    joint_conn_free(p.client);
    joint_ctx_free(p.ctx);
    joint_conn_free(other_conn);
    joint_ctx_free(g_other);
    joint_listener_free(other_listener);
    joint_listener_free(p.listener);
    printf("api_recursive: ok\n");
    return 0;
}
