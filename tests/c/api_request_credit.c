/* api_request_credit: manual credit for a served extended call
 * (joint_request_set_manual_credit, joint_request_grant), in one context that serves and
 * calls itself (window 8).
 *   - a client-streaming call served with an event callback and manual credit, the client
 *     sending 300 values as fast as credit allows: while nothing is granted the server gets
 *     exactly the window and the client waits (JOINT_WOULD_BLOCK); granting in uneven steps,
 *     outside the callback, lets the rest through; the server never holds more than the
 *     window beyond what it granted; every value arrives, in order; the call completes
 *     exactly once and the event callback's free_user_data runs once;
 *   - n == 0 grants nothing and is JOINT_OK while the call runs (as for joint_conn_grant);
 *   - values pulled with joint_request_next_input are credited as they are pulled, manual
 *     credit or not;
 *   - misuse: JOINT_E_STATE once the call ended (cancelled) and after joint_ctx_free;
 *     JOINT_E_UNSUPPORTED on a stock request (like joint_request_set_event_cb); JOINT_E_NULL.
 */
#include "testutil.h"

#define WINDOW 8
#define TOTAL 300
#define WAIT_MS 10000

static joint_ctx *ctx;
static joint_conn *conn;
static joint_writer *w;     /* the test's encoder */
static joint_writer *srv_w; /* the handlers' encoder (they run inside joint_ctx_process) */

static void reply_int(joint_request *req, int64_t v)
{
    const uint8_t *data;
    size_t len;
    CHECK_OK(joint_writer_reset(srv_w));
    CHECK_OK(joint_write_int(srv_w, v));
    CHECK_OK(joint_writer_data(srv_w, &data, &len));
    CHECK_OK(joint_request_reply(req, data, len));
}

/* ---- the client side ------------------------------------------------------------------ */

struct call {
    uint64_t id;
    int runs; /* completions */
    joint_status status;
    int64_t result;
    int64_t next; /* the next value to send */
    int would_block;
};

static void on_done(joint_conn *c, const joint_response *resp, void *user_data)
{
    struct call *call = user_data;
    const uint8_t *data;
    size_t len;
    (void)c; /* NULL once the connection was freed */
    call->runs++;
    call->status = joint_response_status(resp);
    if (call->status == JOINT_OK) {
        CHECK_OK(joint_response_result(resp, &data, &len));
        call->result = tu_dec_int(data, len);
    }
}

static void start(struct call *call, const char *method)
{
    joint_call_opts *o;
    memset(call, 0, sizeof *call);
    call->status = 12345;
    CHECK_OK(joint_call_opts_new(&o));
    CHECK_OK(joint_call_opts_set_client_stream(o, true));
    CHECK_OK(joint_conn_call_opts(conn, method, NULL, 0, o, on_done, call, &call->id));
    joint_call_opts_free(o);
}

/* Send values until `upto` or the callee's credit runs out. */
static void send_some(struct call *call, int64_t upto)
{
    while (call->next < upto) {
        const uint8_t *item;
        size_t len;
        joint_status st;
        CHECK_OK(joint_writer_reset(w));
        CHECK_OK(joint_write_int(w, call->next));
        CHECK_OK(joint_writer_data(w, &item, &len));
        st = joint_conn_send(conn, call->id, item, len);
        if (st == JOINT_WOULD_BLOCK) {
            call->would_block++;
            return;
        }
        CHECK_OK(st);
        call->next++;
    }
}

/* ---- the server side ------------------------------------------------------------------ */

/* slow(): values go to the event callback, which keeps them (a consumer slower than the
 * loop); the test takes them and grants credit for them later. */
struct served {
    joint_request *req;
    int64_t got[TOTAL];
    int n;         /* values delivered */
    int granted;   /* values the test granted */
    int max_ahead; /* most values delivered beyond those granted */
    int ended;     /* JOINT_INPUT_END events */
    int finished;  /* the event that ended the call without the handler (0: none yet) */
    int freed;     /* free_user_data runs */
};
static struct served srv;

static void served_event(joint_request *req, int32_t event, const uint8_t *data, size_t len, void *user_data)
{
    struct served *s = user_data;
    CHECK(s == &srv && req == s->req);
    switch (event) {
    case JOINT_INPUT_VALUE:
        CHECK(s->n < TOTAL);
        s->got[s->n++] = tu_dec_int(data, len);
        if (s->n - s->granted > s->max_ahead)
            s->max_ahead = s->n - s->granted;
        break;
    case JOINT_INPUT_END:
        s->ended++;
        break;
    case JOINT_INPUT_CANCELLED:
    case JOINT_INPUT_TIMEOUT:
    case JOINT_INPUT_CLOSED:
        CHECK(s->finished == 0);
        s->finished = event; /* the test consumes the request */
        break;
    default:
        CHECK(!"unexpected event");
    }
}

static void served_free(void *user_data)
{
    ((struct served *)user_data)->freed++;
}

static void handle_slow(joint_request *req, void *user_data)
{
    (void)user_data;
    CHECK(srv.req == NULL);
    srv.req = req;
    CHECK(joint_request_is_extended(req));
    CHECK_OK(joint_request_set_manual_credit(req, true)); /* before the callback: nothing credited */
    CHECK_OK(joint_request_set_event_cb(req, served_event, &srv, served_free));
}

/* pull(): kept for the test, which pulls its values (manual credit set, no event callback). */
static joint_request *pulled;

static void handle_pull(joint_request *req, void *user_data)
{
    (void)user_data;
    CHECK(pulled == NULL);
    CHECK_OK(joint_request_set_manual_credit(req, true));
    pulled = req;
}

/* stock(): called by a stock client. */
static int stock_checked;

static void handle_stock(joint_request *req, void *user_data)
{
    (void)user_data;
    CHECK(!joint_request_is_extended(req));
    CHECK_ST(joint_request_set_manual_credit(req, true), JOINT_E_UNSUPPORTED);
    CHECK_ST(joint_request_grant(req, 1), JOINT_E_UNSUPPORTED);
    stock_checked++;
    reply_int(req, 7);
}

/* ---- the cases ------------------------------------------------------------------------ */

static void test_bounded(void)
{
    static const int steps[] = {1, 3, 2, 5, 8};
    struct call c;
    int i, k = 0;
    int64_t deadline;

    memset(&srv, 0, sizeof srv);
    start(&c, "slow");
    TU_WAIT_FOR(ctx, srv.req != NULL, WAIT_MS);

    /* nothing granted: the server gets the window, the client waits */
    for (i = 0; i < 50; i++) {
        send_some(&c, TOTAL);
        CHECK_OK(joint_ctx_wait(ctx, 2));
    }
    CHECK_EQ_I64(srv.n, WINDOW);
    CHECK_EQ_I64(c.next, WINDOW);
    CHECK(c.would_block > 0 && c.runs == 0);
    CHECK_OK(joint_request_grant(srv.req, 0)); /* grants nothing */
    for (i = 0; i < 10; i++) {
        send_some(&c, TOTAL);
        CHECK_OK(joint_ctx_wait(ctx, 2));
    }
    CHECK_EQ_I64(srv.n, WINDOW);

    /* grant what the consumer took, in uneven steps: the rest flows, within the bound */
    deadline = tu_now_ms() + WAIT_MS;
    while (srv.granted < TOTAL) {
        int held = srv.n - srv.granted;
        CHECK(tu_now_ms() < deadline);
        if (held > 0) {
            int g = steps[k++ % (int)(sizeof steps / sizeof steps[0])];
            if (g > held)
                g = held;
            CHECK_OK(joint_request_grant(srv.req, (uint32_t)g));
            srv.granted += g;
        }
        send_some(&c, TOTAL);
        CHECK_OK(joint_ctx_wait(ctx, held > 0 ? 0 : 5));
        CHECK(srv.n - srv.granted <= WINDOW);
    }
    CHECK(srv.max_ahead <= WINDOW);
    CHECK_EQ_I64(srv.n, TOTAL);
    for (i = 0; i < TOTAL; i++)
        CHECK_EQ_I64(srv.got[i], i);

    /* the end of input, the answer, and one completion */
    CHECK_OK(joint_conn_end_input(conn, c.id));
    TU_WAIT_FOR(ctx, srv.ended == 1, WAIT_MS);
    reply_int(srv.req, srv.n);
    srv.req = NULL;
    TU_WAIT_FOR(ctx, c.runs == 1 && srv.freed == 1, WAIT_MS);
    CHECK_OK(c.status);
    CHECK_EQ_I64(c.result, TOTAL);
    for (i = 0; i < 10; i++)
        CHECK_OK(joint_ctx_wait(ctx, 2));
    CHECK(c.runs == 1 && srv.freed == 1 && srv.finished == 0);
}

static void test_pulled(void)
{
    struct call c;
    int64_t got = 0;
    int32_t event = 0;
    joint_buf *buf;
    int64_t deadline = tu_now_ms() + WAIT_MS;
    const int64_t n = 3 * WINDOW + 1;

    start(&c, "pull");
    TU_WAIT_FOR(ctx, pulled != NULL, WAIT_MS);
    /* never granted: pulling credits the values */
    while (got < n) {
        joint_status st;
        CHECK(tu_now_ms() < deadline);
        send_some(&c, n);
        CHECK_OK(joint_ctx_wait(ctx, 1));
        while ((st = joint_request_next_input(pulled, 0, &event, &buf)) == JOINT_OK) {
            CHECK(event == JOINT_INPUT_VALUE);
            CHECK_EQ_I64(tu_buf_int(buf), got);
            joint_buf_free(buf);
            got++;
        }
        CHECK_ST(st, JOINT_WOULD_BLOCK);
    }
    CHECK(c.would_block > 0); /* the window was in the way, and pulling opened it */
    CHECK_OK(joint_conn_end_input(conn, c.id));
    for (event = 0; event != JOINT_INPUT_END;) {
        joint_status st;
        CHECK(tu_now_ms() < deadline);
        CHECK_OK(joint_ctx_wait(ctx, 1));
        st = joint_request_next_input(pulled, 0, &event, NULL);
        if (st != JOINT_WOULD_BLOCK)
            CHECK_OK(st);
    }
    reply_int(pulled, got);
    pulled = NULL;
    TU_WAIT_FOR(ctx, c.runs == 1, WAIT_MS);
    CHECK_OK(c.status);
    CHECK_EQ_I64(c.result, n);
}

static void test_after_the_call(void)
{
    struct call c;
    memset(&srv, 0, sizeof srv);
    start(&c, "slow");
    TU_WAIT_FOR(ctx, srv.req != NULL, WAIT_MS);
    send_some(&c, 1);
    TU_WAIT_FOR(ctx, srv.n == 1, WAIT_MS);
    CHECK_OK(joint_request_grant(srv.req, 1)); /* running */
    CHECK_OK(joint_conn_cancel(conn, c.id));
    TU_WAIT_FOR(ctx, c.runs == 1 && srv.finished != 0, WAIT_MS);
    CHECK_ST(c.status, JOINT_E_CANCELLED);
    CHECK(srv.finished == JOINT_INPUT_CANCELLED && srv.freed == 1);
    CHECK_ST(joint_request_grant(srv.req, 1), JOINT_E_STATE);
    CHECK_ST(joint_request_grant(srv.req, 0), JOINT_E_STATE);
    CHECK_ST(joint_request_set_manual_credit(srv.req, false), JOINT_E_STATE);
    joint_request_free(srv.req);
    srv.req = NULL;
}

static void test_stock(const char *uri)
{
    joint_config *cfg;
    joint_ctx *plain;
    joint_conn *pconn;
    struct call d;
    int64_t deadline = tu_now_ms() + WAIT_MS;

    CHECK_OK(joint_config_new(&cfg));
    CHECK_OK(joint_config_set_extension(cfg, false));
    CHECK_OK(joint_ctx_new(cfg, &plain));
    joint_config_free(cfg);
    CHECK_OK(joint_ctx_connect(plain, uri, &pconn));
    memset(&d, 0, sizeof d);
    CHECK_OK(joint_conn_call(pconn, "stock", NULL, 0, WAIT_MS, on_done, &d, NULL));
    while (d.runs == 0) {
        CHECK(tu_now_ms() < deadline);
        CHECK_OK(joint_ctx_wait(plain, 1));
        CHECK_OK(joint_ctx_wait(ctx, 1));
    }
    CHECK_OK(d.status);
    CHECK(stock_checked == 1 && d.result == 7);
    joint_conn_free(pconn);
    joint_ctx_free(plain);
}

static void test_null(void)
{
    CHECK_ST(joint_request_set_manual_credit(NULL, true), JOINT_E_NULL);
    CHECK_ST(joint_request_grant(NULL, 1), JOINT_E_NULL);
}

int main(void)
{
    joint_config *cfg;
    joint_listener *listener;
    struct call c;

    CHECK_OK(joint_writer_new(&w));
    CHECK_OK(joint_writer_new(&srv_w));
    CHECK_OK(joint_config_new(&cfg));
    CHECK_OK(joint_config_set_window(cfg, WINDOW));
    CHECK_OK(joint_ctx_new(cfg, &ctx));
    joint_config_free(cfg);
    CHECK_OK(joint_ctx_register(ctx, "slow", handle_slow, NULL, NULL));
    CHECK_OK(joint_ctx_register(ctx, "pull", handle_pull, NULL, NULL));
    CHECK_OK(joint_ctx_register(ctx, "stock", handle_stock, NULL, NULL));
    CHECK_OK(joint_ctx_listen(ctx, "tcp://127.0.0.1:0", &listener));
    CHECK_OK(joint_ctx_connect(ctx, joint_listener_uri(listener), &conn));
    TU_WAIT_FOR(ctx, joint_conn_extension(conn) == JOINT_EXT_ON, WAIT_MS);

    test_null();
    test_bounded();
    test_pulled();
    test_after_the_call();
    test_stock(joint_listener_uri(listener));

    /* a served call whose context is freed: the request reports JOINT_E_STATE, then frees */
    memset(&srv, 0, sizeof srv);
    start(&c, "slow");
    TU_WAIT_FOR(ctx, srv.req != NULL, WAIT_MS);
    joint_conn_free(conn);
    joint_ctx_free(ctx);
    CHECK(srv.finished == JOINT_INPUT_CLOSED && srv.freed == 1);
    CHECK(c.runs == 1);
    CHECK_ST(joint_request_grant(srv.req, 1), JOINT_E_STATE);
    CHECK_ST(joint_request_set_manual_credit(srv.req, true), JOINT_E_STATE);
    joint_request_free(srv.req);
    joint_listener_free(listener);
    joint_writer_free(w);
    joint_writer_free(srv_w);
    printf("api_request_credit: ok\n");
    return 0;
}
