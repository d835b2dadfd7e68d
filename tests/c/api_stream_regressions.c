/* api_stream_regressions: one minimal repro per bug found and fixed in the joint
 * extension's C API, selected by argv[1]; each exits 0 while the library behaves as
 * documented.
 *
 *   send_early      joint_conn_send / joint_conn_end_input on an extended call made while
 *                   the extension offer is unanswered: the call has no credit yet
 *                   (JOINT_WOULD_BLOCK, then JOINT_CALL_WRITABLE when it starts), not
 *                   JOINT_E_UNSUPPORTED.
 *   closed_event    the caller closes its connection while an extended call with an event
 *                   callback runs: the handler gets JOINT_INPUT_CLOSED.
 *   deadline_status the client's loop runs late, so the callee's DEADLINE_EXCEEDED error
 *                   arrives before the client's own timer runs: the call still completes
 *                   with JOINT_E_TIMEOUT.
 *   free_after_ctx  (run under valgrind) a held request whose event callback is set, freed
 *                   after joint_ctx_free, touches no freed memory. */
#include "testutil.h"

#include <poll.h>

static joint_ctx *srv, *cli;
static joint_listener *srv_listener;
static joint_conn *conn;

static void pump(int ms)
{
    struct pollfd f[2] = {{joint_ctx_fd(cli), POLLIN, 0}, {joint_ctx_fd(srv), POLLIN, 0}};
    CHECK(poll(f, 2, ms) >= 0);
    CHECK_OK(joint_ctx_process(cli));
    CHECK_OK(joint_ctx_process(srv));
}

#define PUMP_UNTIL(cond, ms)                                                                  \
    do {                                                                                      \
        int64_t d_ = tu_now_ms() + (ms);                                                      \
        while (!(cond) && tu_now_ms() < d_)                                                   \
            pump(10);                                                                         \
    } while (0)

/* sum(): answers with the number of values sent in, at JOINT_INPUT_END. */
static void sum_event(joint_request *req, int32_t event, const uint8_t *data, size_t len, void *user_data)
{
    int *n = user_data;
    uint8_t out[1];
    (void)data, (void)len;
    if (event == JOINT_INPUT_VALUE) {
        (*n)++;
    } else if (event == JOINT_INPUT_END) {
        out[0] = (uint8_t)*n;
        joint_request_reply(req, out, 1);
    } else if (event != JOINT_INPUT_WRITABLE) {
        joint_request_free(req);
    }
}
static void handle_sum(joint_request *req, void *user_data)
{
    int *n = calloc(1, sizeof *n);
    (void)user_data;
    CHECK_OK(joint_request_set_event_cb(req, sum_event, n, free));
}

/* hold(): keeps the request, records its events. */
static joint_request *held;
static int held_events[8], nheld_events;
static void hold_event(joint_request *req, int32_t event, const uint8_t *data, size_t len, void *user_data)
{
    (void)req, (void)data, (void)len, (void)user_data;
    if (nheld_events < 8)
        held_events[nheld_events++] = event;
}
static void handle_hold(joint_request *req, void *user_data)
{
    (void)user_data;
    held = req;
    CHECK_OK(joint_request_set_event_cb(req, hold_event, NULL, NULL));
}

struct done {
    int runs;
    joint_status status;
    int writable;
};
static void on_done(joint_conn *c, const joint_response *resp, void *user_data)
{
    struct done *d = user_data;
    (void)c;
    d->runs++;
    d->status = joint_response_status(resp);
}
static void on_event(joint_conn *c, uint64_t id, int32_t event, const uint8_t *data, size_t len, void *user_data)
{
    (void)c, (void)id, (void)data, (void)len;
    if (event == JOINT_CALL_WRITABLE)
        ((struct done *)user_data)->writable++;
}

static void open_pair(void)
{
    joint_listener *l;
    CHECK_OK(joint_ctx_new(NULL, &srv));
    CHECK_OK(joint_ctx_new(NULL, &cli));
    CHECK_OK(joint_ctx_listen(srv, "tcp://127.0.0.1:0", &l));
    srv_listener = l;
    CHECK_OK(joint_ctx_register(srv, "sum", handle_sum, NULL, NULL));
    CHECK_OK(joint_ctx_register(srv, "hold", handle_hold, NULL, NULL));
    CHECK_OK(joint_ctx_connect(cli, joint_listener_uri(l), &conn));
}

static int send_early(void)
{
    joint_call_opts *o;
    struct done d = {0, 0, 0};
    uint64_t id;
    joint_status st;
    open_pair();
    CHECK_OK(joint_call_opts_new(&o));
    CHECK_OK(joint_call_opts_set_client_stream(o, true));
    CHECK_OK(joint_call_opts_set_event_cb(o, on_event, &d, NULL));
    CHECK_OK(joint_conn_call_opts(conn, "sum", NULL, 0, o, on_done, &d, &id));
    CHECK(joint_conn_extension(conn) == JOINT_EXT_PENDING);
    st = joint_conn_send(conn, id, (const uint8_t *)"\x01", 1);
    if (st == JOINT_WOULD_BLOCK) {
        PUMP_UNTIL(d.writable > 0, 5000);
        CHECK(d.writable > 0); /* the call started: credit */
        st = joint_conn_send(conn, id, (const uint8_t *)"\x01", 1);
    }
    CHECK_OK(st);
    st = joint_conn_end_input(conn, id);
    while (st == JOINT_WOULD_BLOCK) {
        pump(10);
        st = joint_conn_end_input(conn, id);
    }
    CHECK_OK(st);
    PUMP_UNTIL(d.runs == 1, 5000);
    CHECK_OK(d.status);
    joint_call_opts_free(o);
    joint_conn_free(conn);
    joint_ctx_free(cli);
    joint_ctx_free(srv);
    joint_listener_free(srv_listener);
    return 0;
}

static int closed_event(void)
{
    open_pair();
    PUMP_UNTIL(joint_conn_extension(conn) == JOINT_EXT_ON, 5000);
    CHECK_OK(joint_conn_call_opts(conn, "hold", NULL, 0, NULL, NULL, NULL, NULL));
    PUMP_UNTIL(held != NULL, 5000);
    CHECK(held != NULL);
    joint_conn_free(conn); /* the caller goes away */
    PUMP_UNTIL(nheld_events > 0, 2000);
    CHECK(nheld_events == 1);
    CHECK(held_events[0] == JOINT_INPUT_CLOSED);
    joint_request_free(held);
    joint_ctx_free(cli);
    joint_ctx_free(srv);
    joint_listener_free(srv_listener);
    return 0;
}

static int deadline_status(void)
{
    joint_call_opts *o;
    struct done d = {0, 0, 0};
    int64_t until;
    open_pair();
    PUMP_UNTIL(joint_conn_extension(conn) == JOINT_EXT_ON, 5000);
    CHECK_OK(joint_call_opts_new(&o));
    CHECK_OK(joint_call_opts_set_timeout_ms(o, 100));
    CHECK_OK(joint_conn_call_opts(conn, "hold", NULL, 0, o, on_done, &d, NULL));
    PUMP_UNTIL(held != NULL, 5000); /* the call reached the server */
    CHECK(held != NULL && d.runs == 0);
    /* The client's loop is busy elsewhere for 300 ms; the server's deadline passes and it
     * answers with DEADLINE_EXCEEDED. */
    until = tu_now_ms() + 300;
    while (tu_now_ms() < until)
        CHECK_OK(joint_ctx_wait(srv, 10));
    CHECK_OK(joint_ctx_process(cli)); /* now both the answer and the client's timer are due */
    CHECK(d.runs == 1);
    CHECK_ST(d.status, JOINT_E_TIMEOUT);
    joint_request_free(held);
    joint_call_opts_free(o);
    joint_conn_free(conn);
    joint_ctx_free(cli);
    joint_ctx_free(srv);
    joint_listener_free(srv_listener);
    return 0;
}

static int free_after_ctx(void)
{
    open_pair();
    PUMP_UNTIL(joint_conn_extension(conn) == JOINT_EXT_ON, 5000);
    CHECK_OK(joint_conn_call_opts(conn, "hold", NULL, 0, NULL, NULL, NULL, NULL));
    PUMP_UNTIL(held != NULL, 5000);
    CHECK(held != NULL);
    joint_ctx_free(srv);     /* the request stays valid (documented) */
    joint_listener_free(srv_listener);
    joint_request_free(held); /* valgrind: invalid read in set_stream_handler */
    joint_conn_free(conn);
    joint_ctx_free(cli);
    return 0;
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "";
    if (strcmp(which, "send_early") == 0)
        return send_early();
    if (strcmp(which, "closed_event") == 0)
        return closed_event();
    if (strcmp(which, "deadline_status") == 0)
        return deadline_status();
    if (strcmp(which, "free_after_ctx") == 0)
        return free_after_ctx();
    fprintf(stderr, "usage: api_stream_regressions send_early|closed_event|deadline_status|free_after_ctx\n");
    return 2;
}
