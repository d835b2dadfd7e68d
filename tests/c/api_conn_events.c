/* api_conn_events: connection life cycle as seen through joint_conn_cb.
 *   - connect/accept: one OPEN on each side (status JOINT_OK, reason ""), user data
 *     attached to an accepted connection is there again in its CLOSED event;
 *   - the server calls the client back over the accepted connection (joint_request_conn)
 *     while the client's call is pending;
 *   - close by the client: CLOSED on both sides, is_open false, calls on a closed
 *     connection fail at once and never run their callback;
 *   - close by the server: the client's pending calls fail with JOINT_E_CLOSED;
 *   - refused connect: CLOSED with JOINT_E_CONNREFUSED, its pending call fails the same way;
 *   - Unix sockets: the socket file exists while listening and is removed on close, and
 *     accepted connections outlive their listener;
 *   - joint_ctx_shutdown: listeners close, new requests get JOINT_RPC_SHUTTING_DOWN, and
 *     joint_ctx_unanswered counts what is still owed. */
#include "testutil.h"

#include <sys/stat.h>
#include <unistd.h>

#define MAX_EVENTS 32

struct event {
    joint_conn *conn;
    int32_t event;
    joint_status status;
    char reason[128];
    void *conn_user_data;
};

struct events {
    struct event e[MAX_EVENTS];
    int n;
};

static void on_conn(joint_conn *conn, int32_t event, joint_status status, const char *reason, void *user_data)
{
    struct events *ev = user_data;
    struct event *e;
    CHECK(ev->n < MAX_EVENTS);
    CHECK(event == JOINT_CONN_OPEN || event == JOINT_CONN_CLOSED);
    CHECK(reason != NULL && conn != NULL);
    e = &ev->e[ev->n++];
    e->conn = conn;
    e->event = event;
    e->status = status;
    snprintf(e->reason, sizeof e->reason, "%s", reason);
    e->conn_user_data = joint_conn_user_data(conn);
    printf("  %s %p: %s \"%s\"\n", event == JOINT_CONN_OPEN ? "OPEN  " : "CLOSED", (void *)conn,
           joint_status_str(status), reason);
}

static int count(const struct events *ev, int32_t event)
{
    int i, n = 0;
    for (i = 0; i < ev->n; i++)
        n += ev->e[i].event == event;
    return n;
}

static const struct event *find(const struct events *ev, int32_t event, joint_conn *conn, int want_conn)
{
    int i;
    for (i = 0; i < ev->n; i++)
        if (ev->e[i].event == event && (ev->e[i].conn == conn) == want_conn)
            return &ev->e[i];
    return NULL;
}

/* Run both contexts until `cond`. */
#define DRIVE2(a, b, cond)                                                                    \
    do {                                                                                      \
        int64_t drive_deadline_ = tu_now_ms() + 5000;                                         \
        while (!(cond)) {                                                                     \
            CHECK(tu_now_ms() < drive_deadline_);                                             \
            CHECK_OK(joint_ctx_wait((a), 2));                                                 \
            CHECK_OK(joint_ctx_wait((b), 2));                                                 \
        }                                                                                     \
    } while (0)

struct response {
    int done;
    joint_status status;
    int64_t value;
};

static void on_response(joint_conn *conn, const joint_response *resp, void *user_data)
{
    struct response *r = user_data;
    const uint8_t *data;
    size_t len;
    joint_reader *rd;
    (void)conn;
    r->done++;
    r->status = joint_response_status(resp);
    if (r->status == JOINT_OK) {
        CHECK_OK(joint_response_result(resp, &data, &len));
        CHECK_OK(joint_reader_new(data, len, &rd));
        if (joint_read_int(rd, &r->value) != JOINT_OK)
            r->value = -1;
        joint_reader_free(rd);
    }
}

/* Server: "callback" calls "ping" on the connection the request came on and answers with
 * ping's result + 1 once it arrives. */
static void pong_then_reply(joint_conn *conn, const joint_response *resp, void *user_data)
{
    joint_request *req = user_data;
    struct response r = {0, 0, 0};
    uint8_t out[9];
    on_response(conn, resp, &r);
    CHECK_OK(r.status);
    CHECK(r.value == 41);
    out[0] = 0x2a; /* positive fixint 42 */
    CHECK_OK(joint_request_reply(req, out, 1));
}

static void handle_callback(joint_request *req, void *user_data)
{
    joint_conn *back = joint_request_conn(req);
    (void)user_data;
    CHECK(back != NULL);
    CHECK_OK(joint_conn_call(back, "ping", NULL, 0, 5000, pong_then_reply, req, NULL));
}

static void handle_ping(joint_request *req, void *user_data)
{
    (void)user_data;
    CHECK_OK(joint_request_reply(req, (const uint8_t *)"\x29", 1)); /* 41 */
}

static joint_request *held;
static void handle_hold(joint_request *req, void *user_data)
{
    (void)user_data;
    held = req;
}

static void test_tcp_life_cycle(void)
{
    struct events sev = {{{0}}, 0}, cev = {{{0}}, 0};
    joint_ctx *server, *client;
    joint_listener *listener;
    joint_conn *conn, *accepted;
    struct response r = {0, 0, 0}, after_close = {0, 0, 0};
    static int tag;
    uint64_t id = 77;

    printf("tcp life cycle\n");
    CHECK_OK(joint_ctx_new(NULL, &server));
    CHECK_OK(joint_ctx_new(NULL, &client));
    CHECK_OK(joint_ctx_set_conn_cb(server, on_conn, &sev, NULL));
    CHECK_OK(joint_ctx_set_conn_cb(client, on_conn, &cev, NULL));
    CHECK_OK(joint_ctx_register(server, "callback", handle_callback, NULL, NULL));
    CHECK_OK(joint_ctx_register(client, "ping", handle_ping, NULL, NULL));
    CHECK_OK(joint_ctx_listen(server, "tcp://127.0.0.1:0", &listener));
    CHECK(strncmp(joint_listener_uri(listener), "tcp://127.0.0.1:", 16) == 0);
    CHECK(strcmp(joint_listener_uri(listener), "tcp://127.0.0.1:0") != 0); /* the real port */

    CHECK_OK(joint_ctx_connect(client, joint_listener_uri(listener), &conn));
    CHECK(joint_conn_is_open(conn)); /* connecting counts as open: calls may be made */
    DRIVE2(server, client, count(&sev, JOINT_CONN_OPEN) == 1 && count(&cev, JOINT_CONN_OPEN) == 1);
    CHECK(cev.e[0].conn == conn && cev.e[0].status == JOINT_OK && cev.e[0].reason[0] == '\0');
    accepted = sev.e[0].conn;
    CHECK(sev.e[0].status == JOINT_OK && sev.e[0].reason[0] == '\0');
    CHECK(joint_conn_is_open(accepted));
    CHECK_OK(joint_conn_set_user_data(accepted, &tag));

    /* bidirectional: the server calls back into the client during the client's call */
    CHECK_OK(joint_conn_call(conn, "callback", NULL, 0, 5000, on_response, &r, NULL));
    DRIVE2(server, client, r.done);
    CHECK_OK(r.status);
    CHECK(r.value == 42);

    /* the client closes: CLOSED on both sides */
    CHECK_OK(joint_conn_close(conn));
    CHECK(!joint_conn_is_open(conn));
    DRIVE2(server, client, count(&sev, JOINT_CONN_CLOSED) == 1 && count(&cev, JOINT_CONN_CLOSED) == 1);
    {
        const struct event *c = find(&cev, JOINT_CONN_CLOSED, conn, 1);
        const struct event *s = find(&sev, JOINT_CONN_CLOSED, accepted, 1);
        CHECK(c && s);
        CHECK(c->status == JOINT_E_CANCELLED || c->status == JOINT_E_CLOSED);
        CHECK_ST(s->status, JOINT_E_CLOSED);
        CHECK(s->reason[0] != '\0');
        CHECK(s->conn_user_data == &tag); /* still attached in the CLOSED event */
    }
    /* our connection stays valid (closed) until we free it; calls on it fail at once */
    CHECK(joint_conn_call(conn, "ping", NULL, 0, -1, on_response, &after_close, &id) < 0);
    CHECK(joint_conn_notify(conn, "ping", NULL, 0) < 0);
    CHECK(id == 77);
    CHECK_OK(joint_ctx_wait(client, 5));
    CHECK(after_close.done == 0);
    CHECK(count(&cev, JOINT_CONN_CLOSED) == 1); /* exactly one CLOSED */
    joint_conn_free(conn);

    joint_ctx_free(client);
    joint_ctx_free(server);
    joint_listener_free(listener);
}

static void test_server_closes(void)
{
    struct events sev = {{{0}}, 0}, cev = {{{0}}, 0};
    joint_ctx *server, *client;
    joint_listener *listener;
    joint_conn *conn;
    struct response pending = {0, 0, 0};

    printf("server closes\n");
    CHECK_OK(joint_ctx_new(NULL, &server));
    CHECK_OK(joint_ctx_new(NULL, &client));
    CHECK_OK(joint_ctx_set_conn_cb(server, on_conn, &sev, NULL));
    CHECK_OK(joint_ctx_set_conn_cb(client, on_conn, &cev, NULL));
    CHECK_OK(joint_ctx_register(server, "hold", handle_hold, NULL, NULL));
    CHECK_OK(joint_ctx_listen(server, "tcp://127.0.0.1:0", &listener));
    CHECK_OK(joint_ctx_connect(client, joint_listener_uri(listener), &conn));
    held = NULL;
    CHECK_OK(joint_conn_call(conn, "hold", NULL, 0, -1, on_response, &pending, NULL));
    DRIVE2(server, client, held != NULL && count(&sev, JOINT_CONN_OPEN) == 1);
    CHECK_OK(joint_conn_close(sev.e[0].conn));
    DRIVE2(server, client, pending.done && count(&cev, JOINT_CONN_CLOSED) == 1);
    CHECK_ST(pending.status, JOINT_E_CLOSED);
    CHECK_ST(find(&cev, JOINT_CONN_CLOSED, conn, 1)->status, JOINT_E_CLOSED);
    CHECK(!joint_conn_is_open(conn));
    CHECK(pending.done == 1);
    joint_request_free(held); /* its connection is gone: harmless */
    joint_conn_free(conn);
    joint_ctx_free(client);
    joint_ctx_free(server);
    joint_listener_free(listener);
}

static void test_refused(void)
{
    struct events cev = {{{0}}, 0};
    joint_ctx *ctx;
    joint_listener *listener;
    joint_conn *conn;
    char uri[128];
    struct response r = {0, 0, 0};

    printf("refused\n");
    CHECK_OK(joint_ctx_new(NULL, &ctx));
    CHECK_OK(joint_ctx_set_conn_cb(ctx, on_conn, &cev, NULL));
    /* a port that was just free: listen on it, then close the listener */
    CHECK_OK(joint_ctx_listen(ctx, "tcp://127.0.0.1:0", &listener));
    snprintf(uri, sizeof uri, "%s", joint_listener_uri(listener));
    CHECK_OK(joint_listener_close(listener));
    CHECK_OK(joint_ctx_connect(ctx, uri, &conn));
    CHECK_OK(joint_conn_call(conn, "anything", NULL, 0, -1, on_response, &r, NULL));
    TU_WAIT_FOR(ctx, r.done && count(&cev, JOINT_CONN_CLOSED) == 1, 5000);
    CHECK_ST(r.status, JOINT_E_CONNREFUSED);
    CHECK(count(&cev, JOINT_CONN_OPEN) == 0);
    CHECK_ST(cev.e[0].status, JOINT_E_CONNREFUSED);
    CHECK(cev.e[0].conn == conn && cev.e[0].reason[0] != '\0');
    CHECK(!joint_conn_is_open(conn));
    joint_conn_free(conn);
    joint_ctx_free(ctx);
    joint_listener_free(listener);
}

static void test_unix_socket(void)
{
    char dir[] = "/tmp/joint-api-XXXXXX";
    char path[256], uri[300];
    struct stat st;
    struct tu_pair p;
    joint_buf *result, *error;
    int64_t v[2] = {20, 22};
    const uint8_t *params;
    size_t len;
    joint_writer *w;

    printf("unix socket\n");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/s.sock", dir);
    snprintf(uri, sizeof uri, "unix://%s", path);
    CHECK_OK(joint_writer_new(&w));
    CHECK_OK(joint_ctx_new(NULL, &p.ctx));
    CHECK_OK(joint_ctx_register(p.ctx, "sum", tu_handle_sum, NULL, NULL));
    CHECK_OK(joint_ctx_listen(p.ctx, uri, &p.listener));
    CHECK_STREQ(joint_listener_uri(p.listener), uri);
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    CHECK_ST(joint_ctx_listen(p.ctx, uri, NULL), JOINT_E_ADDRINUSE); /* the file exists */
    CHECK_OK(joint_ctx_connect(p.ctx, uri, &p.client));
    tu_ints(w, &params, &len, 2, v);
    CHECK_OK(joint_conn_call_sync(p.client, "sum", params, len, 5000, &result, &error));
    CHECK(tu_buf_int(result) == 42);
    joint_buf_free(result);

    /* closing the listener removes the file; the accepted connection keeps working */
    CHECK_OK(joint_listener_close(p.listener));
    CHECK(stat(path, &st) != 0);
    CHECK_OK(joint_conn_call_sync(p.client, "sum", params, len, 5000, &result, &error));
    CHECK(tu_buf_int(result) == 42);
    joint_buf_free(result);

    joint_conn_free(p.client);
    joint_ctx_free(p.ctx);
    joint_listener_free(p.listener);
    joint_writer_free(w);
    CHECK(rmdir(dir) == 0);
}

static void test_shutdown(void)
{
    struct tu_pair p;
    joint_buf *result = NULL, *error = NULL;
    const uint8_t *err;
    size_t err_len;
    int64_t code = -1;
    struct response r = {0, 0, 0};
    joint_conn *late;
    char uri[128];

    printf("graceful shutdown\n");
    tu_pair_open(&p, NULL);
    snprintf(uri, sizeof uri, "%s", joint_listener_uri(p.listener));
    CHECK_OK(joint_ctx_register(p.ctx, "hold", handle_hold, NULL, NULL));
    CHECK_OK(joint_ctx_register(p.ctx, "sum", tu_handle_sum, NULL, NULL));
    held = NULL;
    CHECK(joint_ctx_unanswered(p.ctx) == 0);
    CHECK_OK(joint_conn_call(p.client, "hold", NULL, 0, -1, on_response, &r, NULL));
    TU_WAIT_FOR(p.ctx, held != NULL, 5000);
    CHECK(joint_ctx_unanswered(p.ctx) == 1);

    CHECK_OK(joint_ctx_shutdown(p.ctx)); /* p.listener is freed by this */
    /* new requests on open connections are refused ... */
    CHECK_ST(joint_conn_call_sync(p.client, "sum", NULL, 0, 5000, &result, &error), JOINT_E_REMOTE);
    CHECK_OK(joint_buf_data(error, &err, &err_len));
    CHECK_OK(joint_error_code(err, err_len, &code));
    CHECK(code == JOINT_RPC_SHUTTING_DOWN);
    joint_buf_free(error);
    /* ... new connections too (nothing listens any more) ... */
    CHECK_OK(joint_ctx_connect(p.ctx, uri, &late));
    {
        struct response lr = {0, 0, 0};
        CHECK_OK(joint_conn_call(late, "sum", NULL, 0, -1, on_response, &lr, NULL));
        TU_WAIT_FOR(p.ctx, lr.done, 5000);
        CHECK(lr.status == JOINT_E_CONNREFUSED || lr.status == JOINT_E_CLOSED);
    }
    joint_conn_free(late);
    /* ... and what was already received is still answered. */
    CHECK(joint_ctx_unanswered(p.ctx) == 1);
    CHECK_OK(joint_request_reply(held, (const uint8_t *)"\x07", 1));
    TU_WAIT_FOR(p.ctx, r.done, 5000);
    CHECK_OK(r.status);
    CHECK(r.value == 7);
    CHECK(joint_ctx_unanswered(p.ctx) == 0);
    joint_conn_free(p.client);
    joint_ctx_free(p.ctx);
    joint_listener_free(p.listener);
}

int main(void)
{
    test_tcp_life_cycle();
    test_server_closes();
    test_refused();
    test_unix_socket();
    test_shutdown();
    printf("api_conn_events: ok\n");
    return 0;
}
