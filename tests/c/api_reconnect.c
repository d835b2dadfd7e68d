/* api_reconnect: joint_ctx_connect_reconnecting and joint_reconnect_opts.
 *   - failover: the first endpoint is dead, the second answers: CONNECTING twice, OPEN;
 *   - a call in flight when the server goes away completes with JOINT_E_CLOSED, once; DOWN;
 *   - a call made while down waits, and is answered once a new server listens on the same
 *     address: CONNECTING, OPEN again, and the extension is negotiated again;
 *   - the queue bound (JOINT_E_LIMIT), the fail-fast mode (JOINT_E_CLOSED at once), bad
 *     options (JOINT_E_INVAL) and the final CLOSED of joint_conn_close. */
#include "testutil.h"

#define MAX_EVENTS 256

struct events {
    int32_t event[MAX_EVENTS];
    joint_status status[MAX_EVENTS];
    char reason[MAX_EVENTS][96];
    int n;
};

static void on_conn(joint_conn *conn, int32_t event, joint_status status, const char *reason, void *user_data)
{
    struct events *ev = user_data;
    CHECK(conn != NULL && reason != NULL);
    CHECK(event == JOINT_CONN_OPEN || event == JOINT_CONN_CLOSED || event == JOINT_CONN_CONNECTING || event == JOINT_CONN_DOWN);
    if (ev->n < MAX_EVENTS) {
        ev->event[ev->n] = event;
        ev->status[ev->n] = status;
        snprintf(ev->reason[ev->n], sizeof ev->reason[0], "%s", reason);
        ev->n++;
    }
}

static int count(const struct events *ev, int32_t event)
{
    int i, n = 0;
    for (i = 0; i < ev->n; i++)
        n += ev->event[i] == event;
    return n;
}

static void handle_hold(joint_request *req, void *user_data)
{
    joint_request **held = user_data;
    *held = req;
}

/* A server context listening on `uri` (NULL: a free port), serving "sum" and "hold". */
static joint_ctx *server(const char *uri, char *uri_out, size_t uri_size, joint_request **held, joint_listener **l)
{
    joint_ctx *ctx;
    CHECK_OK(joint_ctx_new(NULL, &ctx));
    CHECK_OK(joint_ctx_listen(ctx, uri ? uri : "tcp://127.0.0.1:0", l));
    if (uri_out)
        snprintf(uri_out, uri_size, "%s", joint_listener_uri(*l));
    CHECK_OK(joint_ctx_register(ctx, "sum", tu_handle_sum, NULL, NULL));
    CHECK_OK(joint_ctx_register(ctx, "hold", handle_hold, held, NULL));
    return ctx;
}

/* Run the client and (if not NULL) the server until `cond`. */
#define DRIVE(client, srv, cond)                                                              \
    do {                                                                                      \
        int64_t drive_deadline_ = tu_now_ms() + 5000;                                         \
        while (!(cond)) {                                                                     \
            CHECK(tu_now_ms() < drive_deadline_);                                             \
            if (srv)                                                                          \
                CHECK_OK(joint_ctx_wait((srv), 1));                                           \
            CHECK_OK(joint_ctx_wait((client), 2));                                            \
        }                                                                                     \
    } while (0)

int main(void)
{
    char live[128], dead[128];
    const char *uris[2];
    joint_ctx *client, *srv, *scratch;
    joint_reconnect_opts *opts;
    joint_conn *conn, *other;
    joint_writer *w;
    joint_request *held = NULL;
    joint_listener *l1, *l2, *l3;
    struct events ev = {0};
    struct tu_outcome first = {0}, inflight = {0}, queued = {0}, extra = {0};
    const uint8_t *params;
    size_t len;
    int64_t v[2];
    int downs;

    /* An address nothing listens on: a port that was just freed. */
    scratch = server(NULL, dead, sizeof dead, &held, &l1);
    joint_listener_free(l1);
    joint_ctx_free(scratch);
    srv = server(NULL, live, sizeof live, &held, &l2);
    uris[0] = dead;
    uris[1] = live;

    CHECK_OK(joint_reconnect_opts_new(&opts));
    CHECK_ST(joint_reconnect_opts_set_backoff_ms(opts, 0, 100), JOINT_E_INVAL);
    CHECK_ST(joint_reconnect_opts_set_backoff_ms(opts, 50, 20), JOINT_E_INVAL);
    CHECK_ST(joint_reconnect_opts_set_factor(opts, 0.5), JOINT_E_INVAL);
    CHECK_ST(joint_reconnect_opts_set_jitter(opts, 1.5), JOINT_E_INVAL);
    CHECK_ST(joint_reconnect_opts_set_queue_limit(opts, -1), JOINT_E_INVAL);
    CHECK_ST(joint_reconnect_opts_set_give_up_ms(opts, 0), JOINT_E_INVAL);
    CHECK_ST(joint_reconnect_opts_set_backoff_ms(NULL, 10, 20), JOINT_E_NULL);
    CHECK_OK(joint_reconnect_opts_set_backoff_ms(opts, 20, 100));
    CHECK_OK(joint_reconnect_opts_set_factor(opts, 2.0));
    CHECK_OK(joint_reconnect_opts_set_jitter(opts, 0.1));
    CHECK_OK(joint_reconnect_opts_set_queue_limit(opts, 1));
    CHECK_OK(joint_reconnect_opts_set_give_up_ms(opts, -1));
    CHECK_OK(joint_reconnect_opts_set_tls(opts, NULL));

    CHECK_OK(joint_ctx_new(NULL, &client));
    CHECK_OK(joint_ctx_set_conn_cb(client, on_conn, &ev, NULL));
    CHECK_ST(joint_ctx_connect_reconnecting(client, uris, 0, opts, &conn), JOINT_E_INVAL);
    CHECK_ST(joint_ctx_connect_reconnecting(client, NULL, 2, opts, &conn), JOINT_E_NULL);
    CHECK_OK(joint_ctx_connect_reconnecting(client, uris, 2, opts, &conn));
    CHECK_OK(joint_writer_new(&w));

    /* Failover to the live endpoint; the call made before it was up waits for it. */
    v[0] = 1;
    v[1] = 2;
    tu_ints(w, &params, &len, 2, v);
    CHECK_OK(joint_conn_call(conn, "sum", params, len, 5000, tu_on_response, &first, NULL));
    DRIVE(client, srv, first.done == 1);
    CHECK_OK(first.status);
    CHECK_EQ_I64(first.value, 3);
    CHECK(ev.n == 3);
    CHECK(ev.event[0] == JOINT_CONN_CONNECTING && strcmp(ev.reason[0], dead) == 0);
    CHECK(ev.event[1] == JOINT_CONN_CONNECTING && strcmp(ev.reason[1], live) == 0);
    CHECK(ev.event[2] == JOINT_CONN_OPEN && ev.status[2] == JOINT_OK);
    DRIVE(client, srv, joint_conn_extension(conn) == JOINT_EXT_ON);

    /* In flight when the server goes: JOINT_E_CLOSED, once. */
    CHECK_OK(joint_conn_call(conn, "hold", NULL, 0, -1, tu_on_response, &inflight, NULL));
    DRIVE(client, srv, held != NULL);
    joint_ctx_free(srv);
    joint_listener_free(l2);
    joint_request_free(held);
    held = NULL;
    DRIVE(client, (joint_ctx *)NULL, inflight.done == 1 && count(&ev, JOINT_CONN_DOWN) >= 1);
    CHECK_ST(inflight.status, JOINT_E_CLOSED);
    CHECK(joint_conn_is_open(conn)); /* still usable: calls wait */

    /* Down: one call waits (the queue limit is 1), the next is refused. */
    v[0] = 5;
    v[1] = 6;
    tu_ints(w, &params, &len, 2, v);
    CHECK_OK(joint_conn_call(conn, "sum", params, len, 5000, tu_on_response, &queued, NULL));
    CHECK_ST(joint_conn_call(conn, "sum", params, len, 5000, tu_on_response, &extra, NULL), JOINT_E_LIMIT);
    downs = count(&ev, JOINT_CONN_DOWN);
    DRIVE(client, (joint_ctx *)NULL, count(&ev, JOINT_CONN_DOWN) >= downs + 2);
    CHECK(queued.done == 0);

    /* A new server on the same address: the queued call goes out on the new connection. */
    srv = server(live, NULL, 0, &held, &l3);
    DRIVE(client, srv, queued.done == 1);
    CHECK_OK(queued.status);
    CHECK_EQ_I64(queued.value, 11);
    CHECK(count(&ev, JOINT_CONN_OPEN) == 2);
    CHECK(ev.event[ev.n - 1] == JOINT_CONN_OPEN);
    CHECK(ev.event[ev.n - 2] == JOINT_CONN_CONNECTING);
    CHECK(count(&ev, JOINT_CONN_CLOSED) == 0);
    CHECK(inflight.done == 1 && extra.done == 0);
    CHECK(held == NULL); /* the call in flight was not resent */
    DRIVE(client, srv, joint_conn_extension(conn) == JOINT_EXT_ON);

    /* Close: final. */
    CHECK_OK(joint_conn_close(conn));
    DRIVE(client, srv, count(&ev, JOINT_CONN_CLOSED) == 1);
    CHECK(ev.status[ev.n - 1] == JOINT_E_CANCELLED);
    CHECK(!joint_conn_is_open(conn));
    joint_conn_free(conn);

    /* Fail-fast: with a queue limit of -1, a call while not up is refused at once. */
    CHECK_OK(joint_reconnect_opts_set_queue_limit(opts, 0)); /* refuse at once */
    uris[0] = dead;
    CHECK_OK(joint_ctx_connect_reconnecting(client, uris, 1, opts, &other));
    CHECK_ST(joint_conn_call(other, "sum", params, len, 5000, tu_on_response, &extra, NULL), JOINT_E_CLOSED);
    joint_conn_free(other);
    CHECK(extra.done == 0);

    joint_reconnect_opts_free(opts);
    joint_reconnect_opts_free(NULL);
    joint_writer_free(w);
    joint_ctx_free(client);
    joint_ctx_free(srv);
    joint_listener_free(l3);
    printf("api_reconnect: ok\n");
    return 0;
}
