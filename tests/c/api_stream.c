/* api_stream: the joint extension through the C API, between a server context and client
 * contexts (same thread, driven by one poll loop, unless a case needs its own thread).
 *   - server streaming: an event callback that yields until JOINT_WOULD_BLOCK and carries
 *     on at JOINT_INPUT_WRITABLE (window 2, 500 items, in order); manual credit with
 *     joint_conn_grant;
 *   - a pulled stream (joint_conn_call_stream / joint_stream_next, client on its own
 *     thread): items, JOINT_DONE with the result, then JOINT_E_STATE; a remote error;
 *     JOINT_WOULD_BLOCK with nothing written; joint_stream_free cancelling a running call;
 *   - client streaming: joint_conn_send until JOINT_WOULD_BLOCK, JOINT_CALL_WRITABLE,
 *     joint_conn_end_input (after which send and end_input are refused);
 *   - joint_conn_throw reaching the handler as JOINT_INPUT_THROW;
 *   - cancel: JOINT_E_CANCELLED on the client, JOINT_INPUT_CANCELLED on the server, and a
 *     late reply returns JOINT_E_CANCELLED and consumes the request;
 *   - a deadline (joint_call_opts_set_timeout_ms): JOINT_E_TIMEOUT on the client,
 *     JOINT_INPUT_TIMEOUT and joint_request_deadline_ms on the server;
 *   - kwargs (joint_call_opts_set_kwargs) reaching joint_request_kwargs;
 *   - joint_ctx_register_pool: a handler on a worker thread pulling inputs
 *     (joint_request_next_input) and echoing them (joint_request_yield, waiting with
 *     joint_request_wait_writable);
 *   - a server with joint_config_set_extension(false): JOINT_EXT_REFUSED, the stock
 *     fallbacks (items as one array, kwargs as the last param, no input), and
 *     JOINT_E_UNSUPPORTED for joint_conn_send / end_input / throw and event callbacks;
 *   - every event callback's free_user_data runs exactly once (answered, cancelled, timed
 *     out, replaced, removed), and never for a failed registration;
 *   - NULL (and invalid) arguments of every extension function.
 * Known gaps are written up where they apply (search "NOTE"). */
#include "testutil.h"

#include <poll.h>
#include <pthread.h>

#define SENTINEL ((void *)0x5e47)
#define WAIT_MS 10000

/* ---- helpers ------------------------------------------------------------------------- */

static joint_writer *w; /* scratch encoder, main thread only */

/* One encoded integer, borrowed from `w` until its next use. */
static const uint8_t *enc_int(int64_t v, size_t *len)
{
    const uint8_t *data;
    CHECK_OK(joint_writer_reset(w));
    CHECK_OK(joint_write_int(w, v));
    CHECK_OK(joint_writer_data(w, &data, len));
    return data;
}

/* The first integer of a params array. */
static int64_t first_param(const joint_request *req)
{
    const uint8_t *data;
    size_t len;
    joint_reader *r;
    uint32_t n;
    int64_t v = 0;
    CHECK_OK(joint_request_params(req, &data, &len));
    CHECK_OK(joint_reader_new(data, len, &r));
    CHECK_OK(joint_read_array(r, &n));
    CHECK(n >= 1);
    CHECK_OK(joint_read_int(r, &v));
    joint_reader_free(r);
    return v;
}

static joint_writer *srv_w; /* the server handlers' own encoder (loop thread) */

static void reply_int(joint_request *req, int64_t v)
{
    const uint8_t *data;
    size_t len;
    /* not `w`: a handler runs inside joint_ctx_process, while the test may hold bytes of `w` */
    CHECK_OK(joint_writer_reset(srv_w));
    CHECK_OK(joint_write_int(srv_w, v));
    CHECK_OK(joint_writer_data(srv_w, &data, &len));
    CHECK_OK(joint_request_reply(req, data, len));
}

/* Every context the main thread drives. */
#define MAX_CTX 4
static joint_ctx *loop_ctx[MAX_CTX];
static int nloop;

static void loop_add(joint_ctx *ctx)
{
    CHECK(nloop < MAX_CTX);
    loop_ctx[nloop++] = ctx;
}

static void loop_remove(joint_ctx *ctx)
{
    int i;
    for (i = 0; i < nloop; i++) {
        if (loop_ctx[i] == ctx) {
            loop_ctx[i] = loop_ctx[--nloop];
            return;
        }
    }
    CHECK(!"not in the loop");
}

/* Wait up to `ms` for any context's fd (or its next timer), then process every context.
 * Contexts are processed in the order they were added (clients first: see the deadline
 * case). */
static void loop_once(int ms)
{
    struct pollfd fds[MAX_CTX];
    int i, t = ms;
    for (i = 0; i < nloop; i++) {
        int ct = joint_ctx_timeout_ms(loop_ctx[i]);
        fds[i].fd = joint_ctx_fd(loop_ctx[i]);
        fds[i].events = POLLIN;
        fds[i].revents = 0;
        if (ct >= 0 && ct < t)
            t = ct;
    }
    CHECK(poll(fds, (nfds_t)nloop, t) >= 0);
    for (i = 0; i < nloop; i++)
        CHECK_OK(joint_ctx_process(loop_ctx[i]));
}

#define LOOP_UNTIL(cond)                                                                      \
    do {                                                                                      \
        int64_t loop_deadline_ = tu_now_ms() + WAIT_MS;                                       \
        while (!(cond)) {                                                                     \
            if (tu_now_ms() > loop_deadline_) {                                               \
                fprintf(stderr, "%s:%d: timed out waiting for %s\n", __FILE__, __LINE__,      \
                        #cond);                                                               \
                exit(1);                                                                      \
            }                                                                                 \
            loop_once(20);                                                                    \
        }                                                                                     \
    } while (0)

/* A completion record. */
struct done {
    int runs;
    joint_status status;
    uint8_t result[256];
    size_t result_len;
    int64_t error_code;
};

static void on_done(joint_conn *conn, const joint_response *resp, void *user_data)
{
    struct done *d = user_data;
    const uint8_t *data;
    size_t len;
    (void)conn;
    d->runs++;
    d->status = joint_response_status(resp);
    if (d->status == JOINT_OK) {
        CHECK_OK(joint_response_result(resp, &data, &len));
    } else {
        CHECK_OK(joint_response_error(resp, &data, &len));
        if (d->status == JOINT_E_REMOTE)
            CHECK_OK(joint_error_code(data, len, &d->error_code));
    }
    CHECK(len <= sizeof d->result);
    memcpy(d->result, data, len);
    d->result_len = len;
}

/* Items streamed to one of our calls, as integers. */
#define MAX_ITEMS 1000
struct items {
    int64_t v[MAX_ITEMS];
    int n;
    int writable; /* JOINT_CALL_WRITABLE events */
    uint64_t call_id;
};

/* A call's user data: its completion (on_done sees only `done`) and its events. */
struct call {
    struct done done;
    struct items items;
};

static void on_call_event(joint_conn *conn, uint64_t call_id, int32_t event, const uint8_t *data, size_t len,
                          void *user_data)
{
    struct items *it = &((struct call *)user_data)->items;
    CHECK(conn != NULL);
    if (it->call_id)
        CHECK(call_id == it->call_id);
    if (event == JOINT_CALL_ITEM) {
        CHECK(it->n < MAX_ITEMS);
        it->v[it->n++] = tu_dec_int(data, len);
    } else {
        CHECK(event == JOINT_CALL_WRITABLE);
        CHECK(len == 0);
        it->writable++;
    }
}

static void call_reset(struct call *c)
{
    memset(c, 0, sizeof *c);
    c->done.status = 12345;
}

/* Options whose event callback reports to `c` (its user data). */
static joint_call_opts *opts_new(struct call *c)
{
    joint_call_opts *o = SENTINEL;
    CHECK_OK(joint_call_opts_new(&o));
    CHECK(o != SENTINEL && o != NULL);
    CHECK_OK(joint_call_opts_set_event_cb(o, on_call_event, c, NULL));
    return o;
}

/* ---- server methods ------------------------------------------------------------------ */

static pthread_t main_thread;

/* count(n): yields 0..n-1 within the caller's credit, then answers n. */
struct producer {
    joint_request *req;
    int64_t next, n;
};
static int producers_freed, srv_would_block, srv_writable;

static void producer_free(void *user_data)
{
    producers_freed++;
    free(user_data);
}

/* Yield what credit allows; answer at the end. May consume the request (and, when an event
 * callback is set, free `p` through its free_user_data): do not touch `p` afterwards. */
static void produce(struct producer *p)
{
    for (;;) {
        size_t len;
        const uint8_t *item;
        joint_status st;
        if (p->next == p->n) {
            reply_int(p->req, p->n);
            return;
        }
        CHECK_OK(joint_writer_reset(srv_w));
        CHECK_OK(joint_write_int(srv_w, p->next));
        CHECK_OK(joint_writer_data(srv_w, &item, &len));
        st = joint_request_yield(p->req, item, len);
        if (st == JOINT_WOULD_BLOCK) {
            srv_would_block++;
            return; /* JOINT_INPUT_WRITABLE brings us back */
        }
        CHECK_OK(st);
        p->next++;
    }
}

static void count_event(joint_request *req, int32_t event, const uint8_t *data, size_t len, void *user_data)
{
    struct producer *p = user_data;
    CHECK(pthread_equal(pthread_self(), main_thread));
    CHECK(req == p->req);
    (void)data;
    CHECK(len == 0);
    switch (event) {
    case JOINT_INPUT_WRITABLE:
        srv_writable++;
        produce(p);
        break;
    case JOINT_INPUT_CANCELLED:
    case JOINT_INPUT_TIMEOUT:
    case JOINT_INPUT_CLOSED:
        /* the call is over; answering does nothing, but the request must be consumed */
        joint_request_free(req);
        break;
    default:
        CHECK(!"unexpected event for count");
    }
}

static int stock_counts;

static void handle_count(joint_request *req, void *user_data)
{
    struct producer *p = calloc(1, sizeof *p);
    (void)user_data;
    CHECK(p != NULL);
    p->req = req;
    p->n = first_param(req);
    if (joint_request_is_extended(req)) {
        CHECK_OK(joint_request_set_event_cb(req, count_event, p, producer_free));
        produce(p);
    } else {
        /* a stock caller: yields are collected into one array */
        stock_counts++;
        CHECK_ST(joint_request_set_event_cb(req, count_event, p, producer_free), JOINT_E_UNSUPPORTED);
        CHECK_OK(joint_request_wait_writable(req, 0)); /* never blocks a stock request */
        produce(p);
        free(p); /* not taken by the failed registration */
    }
}

/* sum(): adds the values sent in; answers at JOINT_INPUT_END; a throw answers with the
 * thrown error object. */
struct acc {
    int64_t total;
    int values;
};
static int accs_freed, srv_thrown;
static uint8_t thrown[64];
static size_t thrown_len;

static void acc_free(void *user_data)
{
    accs_freed++;
    free(user_data);
}

static void sum_event(joint_request *req, int32_t event, const uint8_t *data, size_t len, void *user_data)
{
    struct acc *a = user_data;
    switch (event) {
    case JOINT_INPUT_VALUE:
        a->total += tu_dec_int(data, len);
        a->values++;
        break;
    case JOINT_INPUT_END:
        CHECK(len == 0);
        reply_int(req, a->total); /* a is freed when this returns */
        break;
    case JOINT_INPUT_THROW:
        srv_thrown++;
        CHECK(len <= sizeof thrown);
        memcpy(thrown, data, len);
        thrown_len = len;
        CHECK_OK(joint_request_reply_error(req, data, len));
        break;
    case JOINT_INPUT_WRITABLE:
        break;
    default: /* cancelled, timed out, closed */
        joint_request_free(req);
    }
}

static void handle_sum(joint_request *req, void *user_data)
{
    struct acc *a = calloc(1, sizeof *a);
    (void)user_data;
    CHECK(a != NULL);
    CHECK(joint_request_is_extended(req));
    CHECK_OK(joint_request_set_event_cb(req, sum_event, a, acc_free));
}

/* hold(): never answers by itself; records its events. */
#define MAX_HELD 8
struct held {
    joint_request *req;
    int events[8];
    int nevents;
    int freed;
    uint32_t deadline_ms;
};
static struct held holds[MAX_HELD];
static int nholds;

static void hold_event(joint_request *req, int32_t event, const uint8_t *data, size_t len, void *user_data)
{
    struct held *h = user_data;
    CHECK(req == h->req);
    (void)data, (void)len;
    CHECK(h->nevents < 8);
    h->events[h->nevents++] = event;
}

static void hold_free(void *user_data)
{
    ((struct held *)user_data)->freed++;
}

static void handle_hold(joint_request *req, void *user_data)
{
    struct held *h;
    (void)user_data;
    CHECK(nholds < MAX_HELD);
    h = &holds[nholds++];
    h->req = req;
    h->deadline_ms = joint_request_deadline_ms(req);
    CHECK_OK(joint_request_set_event_cb(req, hold_event, h, hold_free));
}

/* kw(): answers with its kwargs (or, without any, with its positional params). */
static int kw_calls;
static void handle_kw(joint_request *req, void *user_data)
{
    const uint8_t *data = SENTINEL;
    size_t len = 99;
    joint_status st = joint_request_kwargs(req, &data, &len);
    (void)user_data;
    kw_calls++;
    if (st == JOINT_E_STATE) {
        CHECK(data == SENTINEL && len == 99); /* nothing written */
        CHECK_OK(joint_request_params(req, &data, &len));
    } else {
        CHECK_OK(st);
        /* positional params still there */
        CHECK_OK(joint_request_params(req, &data, &len));
        CHECK(len == 2 && data[0] == 0x91 && data[1] == 0x01);
        CHECK_OK(joint_request_kwargs(req, &data, &len));
    }
    CHECK_OK(joint_request_reply(req, data, len));
}

/* fail(): an error with code 77. */
static void handle_fail(joint_request *req, void *user_data)
{
    (void)user_data;
    CHECK_OK(joint_request_reply_error_msg(req, 77, "failed on purpose"));
}

/* replace(): event callbacks replaced and removed; each free_user_data runs once. */
static int replace_freed[3];
static void replace_event(joint_request *req, int32_t event, const uint8_t *data, size_t len, void *user_data)
{
    (void)req, (void)event, (void)data, (void)len, (void)user_data;
}
static void replace_free(void *user_data)
{
    (*(int *)user_data)++;
}
static void handle_replace(joint_request *req, void *user_data)
{
    (void)user_data;
    CHECK_OK(joint_request_set_event_cb(req, replace_event, &replace_freed[0], replace_free));
    CHECK(replace_freed[0] == 0);
    CHECK_OK(joint_request_set_event_cb(req, replace_event, &replace_freed[1], replace_free));
    CHECK(replace_freed[0] == 1 && replace_freed[1] == 0); /* the replaced one, at once */
    CHECK_OK(joint_request_set_event_cb(req, NULL, &replace_freed[2], replace_free));
    CHECK(replace_freed[1] == 1 && replace_freed[2] == 0); /* removed; a NULL cb takes nothing */
    CHECK_OK(joint_request_set_event_cb(req, replace_event, &replace_freed[0], replace_free));
    reply_int(req, 1);
    CHECK(replace_freed[0] == 2); /* answering ends the call: freed */
}

/* pool_echo(): on a worker thread, streams every value sent in back, then answers with
 * their count. */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static int pool_calls, pool_on_main, pool_waits, pool_freed;

static void pool_echo(joint_request *req, void *user_data)
{
    int64_t n = 0;
    uint8_t out[16];
    size_t out_len;
    int waits = 0;
    CHECK(user_data == &pool_calls);
    pthread_mutex_lock(&pool_mu);
    pool_calls++;
    if (pthread_equal(pthread_self(), main_thread))
        pool_on_main++;
    pthread_mutex_unlock(&pool_mu);
    CHECK(joint_request_is_extended(req));
    for (;;) {
        int32_t event = -1;
        joint_buf *buf = SENTINEL;
        const uint8_t *data;
        size_t len;
        joint_status st;
        CHECK_OK(joint_request_next_input(req, WAIT_MS, &event, &buf));
        if (event == JOINT_INPUT_END) {
            CHECK(buf == NULL);
            break;
        }
        CHECK(event == JOINT_INPUT_VALUE);
        CHECK(buf != NULL && buf != SENTINEL);
        CHECK_OK(joint_buf_data(buf, &data, &len));
        CHECK(tu_dec_int(data, len) == n);
        while ((st = joint_request_yield(req, data, len)) == JOINT_WOULD_BLOCK) {
            waits++;
            CHECK_OK(joint_request_wait_writable(req, WAIT_MS));
        }
        CHECK_OK(st);
        joint_buf_free(buf);
        n++;
    }
    /* encode by hand: `w` belongs to the main thread */
    CHECK(n < 65536);
    out[0] = 0xcd, out[1] = (uint8_t)(n >> 8), out[2] = (uint8_t)n, out_len = 3;
    pthread_mutex_lock(&pool_mu);
    pool_waits += waits;
    pthread_mutex_unlock(&pool_mu);
    CHECK_OK(joint_request_reply(req, out, out_len));
}

static void pool_free(void *user_data)
{
    CHECK(user_data == &pool_calls);
    pool_freed++;
}

/* ---- the server ---------------------------------------------------------------------- */

static joint_ctx *srv;
static const char *srv_uri;

static joint_listener *srv_listener;

static void server_open(void)
{
    joint_config *cfg;
    joint_listener *l;
    CHECK_OK(joint_config_new(&cfg));
    CHECK_OK(joint_config_set_workers(cfg, 2));
    CHECK_OK(joint_ctx_new(cfg, &srv));
    joint_config_free(cfg);
    CHECK_OK(joint_ctx_listen(srv, "tcp://127.0.0.1:0", &l));
    srv_uri = joint_listener_uri(l);
    srv_listener = l;
    CHECK_OK(joint_ctx_register(srv, "count", handle_count, NULL, NULL));
    CHECK_OK(joint_ctx_register(srv, "sum", handle_sum, NULL, NULL));
    CHECK_OK(joint_ctx_register(srv, "hold", handle_hold, NULL, NULL));
    CHECK_OK(joint_ctx_register(srv, "kw", handle_kw, NULL, NULL));
    CHECK_OK(joint_ctx_register(srv, "fail", handle_fail, NULL, NULL));
    CHECK_OK(joint_ctx_register(srv, "replace", handle_replace, NULL, NULL));
    CHECK_OK(joint_ctx_register_pool(srv, "pool_echo", pool_echo, &pool_calls, pool_free));
}

/* A client context (added to the loop after the server, so processed before it) connected
 * to `uri`, with the joint extension negotiated (or refused). */
static joint_conn *client_open(joint_ctx **ctx_out, const char *uri, int32_t want_ext)
{
    joint_conn *conn;
    CHECK_OK(joint_ctx_new(NULL, ctx_out));
    CHECK_OK(joint_ctx_connect(*ctx_out, uri, &conn));
    /* the client goes first in the loop (see the deadline case) */
    loop_add(*ctx_out);
    if (nloop > 1) {
        joint_ctx *first = loop_ctx[0];
        loop_ctx[0] = loop_ctx[nloop - 1];
        loop_ctx[nloop - 1] = first;
    }
    CHECK(joint_conn_extension(conn) == JOINT_EXT_PENDING);
    /* NOTE: joint_conn_send / joint_conn_end_input on a call made while the offer is still
     * unanswered return JOINT_E_UNSUPPORTED (as for a stock peer) even though the peer turns
     * out to be a joint peer; so streaming clients wait for JOINT_EXT_ON first. */
    LOOP_UNTIL(joint_conn_extension(conn) == want_ext);
    return conn;
}

static void client_close(joint_ctx *ctx, joint_conn *conn)
{
    joint_conn_free(conn);
    loop_remove(ctx);
    joint_ctx_free(ctx);
}

/* ---- the cases ----------------------------------------------------------------------- */

static void test_server_streaming(joint_conn *conn)
{
    static struct call c;
    joint_call_opts *o = opts_new(&c);
    const uint8_t *params;
    size_t len;
    int64_t n = 500;
    int i, freed_before = producers_freed, granted;

    /* window 2, 500 items: the producer runs out of credit again and again */
    call_reset(&c);
    CHECK_OK(joint_call_opts_set_window(o, 2));
    tu_ints(w, &params, &len, 1, &n);
    CHECK_OK(joint_conn_call_opts(conn, "count", params, len, o, on_done, &c, &c.items.call_id));
    CHECK(c.items.call_id != 0);
    LOOP_UNTIL(c.done.runs == 1);
    CHECK_OK(c.done.status);
    CHECK(tu_dec_int(c.done.result, c.done.result_len) == 500);
    CHECK(c.items.n == 500);
    for (i = 0; i < 500; i++)
        CHECK_EQ_I64(c.items.v[i], i);
    CHECK(srv_would_block > 0 && srv_writable > 0);
    LOOP_UNTIL(producers_freed == freed_before + 1); /* the event cb's user data, once */

    /* manual credit: without joint_conn_grant the producer stops at the window */
    call_reset(&c);
    n = 20;
    CHECK_OK(joint_call_opts_set_window(o, 4));
    CHECK_OK(joint_call_opts_set_manual_credit(o, true));
    tu_ints(w, &params, &len, 1, &n);
    CHECK_OK(joint_conn_call_opts(conn, "count", params, len, o, on_done, &c, &c.items.call_id));
    LOOP_UNTIL(c.items.n == 4);
    for (i = 0; i < 10; i++)
        loop_once(5);
    CHECK(c.items.n == 4 && c.done.runs == 0);
    for (granted = 4; c.done.runs == 0;) {
        if (c.items.n == granted && granted < 20) {
            CHECK_OK(joint_conn_grant(conn, c.items.call_id, 4));
            granted += 4;
        }
        loop_once(20);
        CHECK(c.items.n <= granted);
    }
    CHECK_OK(c.done.status);
    CHECK(c.items.n == 20);
    CHECK(tu_dec_int(c.done.result, c.done.result_len) == 20);
    CHECK_ST(joint_conn_grant(conn, c.items.call_id, 1), JOINT_E_STATE); /* no longer running */
    joint_call_opts_free(o);
    LOOP_UNTIL(producers_freed == freed_before + 2);
}

static void test_client_streaming(joint_conn *conn)
{
    static struct call c;
    joint_call_opts *o = opts_new(&c);
    int64_t v;
    int would_block = 0, freed_before = accs_freed;
    size_t len;
    const uint8_t *item;

    call_reset(&c);
    CHECK_OK(joint_call_opts_set_client_stream(o, true));
    CHECK_OK(joint_conn_call_opts(conn, "sum", NULL, 0, o, on_done, &c, &c.items.call_id));
    /* 300 values against the server's window of 64: the sender must wait for credit */
    for (v = 1; v <= 300;) {
        joint_status st;
        item = enc_int(v, &len);
        st = joint_conn_send(conn, c.items.call_id, item, len);
        if (st == JOINT_OK) {
            v++;
        } else {
            int writable = c.items.writable;
            CHECK_ST(st, JOINT_WOULD_BLOCK);
            would_block++;
            LOOP_UNTIL(c.items.writable > writable);
        }
    }
    CHECK_OK(joint_conn_end_input(conn, c.items.call_id));
    item = enc_int(1, &len);
    CHECK_ST(joint_conn_send(conn, c.items.call_id, item, len), JOINT_E_UNSUPPORTED); /* input ended */
    CHECK_ST(joint_conn_end_input(conn, c.items.call_id), JOINT_E_UNSUPPORTED);
    LOOP_UNTIL(c.done.runs == 1);
    CHECK_OK(c.done.status);
    CHECK(tu_dec_int(c.done.result, c.done.result_len) == 300 * 301 / 2);
    CHECK(would_block > 0 && c.items.writable > 0);
    LOOP_UNTIL(accs_freed == freed_before + 1);
    /* the call is over */
    CHECK_ST(joint_conn_send(conn, c.items.call_id, item, len), JOINT_E_STATE);

    /* throw: the handler gets the error object and answers with it */
    call_reset(&c);
    CHECK_OK(joint_conn_call_opts(conn, "sum", NULL, 0, o, on_done, &c, &c.items.call_id));
    item = enc_int(5, &len);
    CHECK_OK(joint_conn_send(conn, c.items.call_id, item, len));
    {
        const uint8_t *err;
        size_t err_len;
        CHECK_OK(joint_writer_reset(w));
        CHECK_OK(joint_write_array(w, 2));
        CHECK_OK(joint_write_int(w, 42));
        CHECK_OK(joint_write_cstr(w, "stop it"));
        CHECK_OK(joint_writer_data(w, &err, &err_len));
        CHECK_OK(joint_conn_throw(conn, c.items.call_id, err, err_len));
        LOOP_UNTIL(c.done.runs == 1);
        CHECK(srv_thrown == 1);
        CHECK(thrown_len == err_len && memcmp(thrown, err, err_len) == 0);
    }
    CHECK_ST(c.done.status, JOINT_E_REMOTE);
    CHECK_EQ_I64(c.done.error_code, 42);
    LOOP_UNTIL(accs_freed == freed_before + 2);
    joint_call_opts_free(o);
}

static void test_cancel_and_deadline(joint_conn *conn)
{
    static struct call c;
    joint_call_opts *o = opts_new(&c);
    struct held *h;
    int64_t t0;
    const uint8_t *item;
    size_t len;

    /* cancel */
    call_reset(&c);
    CHECK_OK(joint_conn_call_opts(conn, "hold", NULL, 0, o, on_done, &c, &c.items.call_id));
    LOOP_UNTIL(nholds == 1);
    h = &holds[0];
    CHECK(h->deadline_ms == 0);
    CHECK(joint_request_is_extended(h->req));
    CHECK_OK(joint_conn_cancel(conn, c.items.call_id));
    LOOP_UNTIL(c.done.runs == 1 && h->nevents == 1);
    CHECK_ST(c.done.status, JOINT_E_CANCELLED);
    CHECK(h->events[0] == JOINT_INPUT_CANCELLED);
    CHECK(h->freed == 1);
    item = enc_int(1, &len);
    CHECK_ST(joint_request_yield(h->req, item, len), JOINT_E_CANCELLED);
    CHECK_ST(joint_request_wait_writable(h->req, 0), JOINT_E_CANCELLED);
    {
        int32_t event = -1;
        joint_buf *buf = SENTINEL;
        CHECK_OK(joint_request_next_input(h->req, 0, &event, &buf));
        CHECK(event == JOINT_INPUT_CANCELLED && buf == NULL);
    }
    CHECK_ST(joint_request_reply(h->req, item, len), JOINT_E_CANCELLED); /* late: dropped, consumed */
    CHECK(h->freed == 1);
    LOOP_UNTIL(joint_ctx_unanswered(srv) == 0);
    CHECK(c.done.runs == 1);

    /* deadline: the client's timeout is the callee's deadline */
    call_reset(&c);
    CHECK_OK(joint_call_opts_set_timeout_ms(o, 150));
    t0 = tu_now_ms();
    CHECK_OK(joint_conn_call_opts(conn, "hold", NULL, 0, o, on_done, &c, &c.items.call_id));
    LOOP_UNTIL(nholds == 2);
    h = &holds[1];
    CHECK(h->deadline_ms == 150);
    LOOP_UNTIL(c.done.runs == 1 && h->nevents == 1);
    CHECK(tu_now_ms() - t0 >= 140);
    /* The client is processed before the server in each loop round, so its own timer fires
     * first. NOTE: a client whose loop runs late can instead get the server's
     * [JOINT_RPC_DEADLINE_EXCEEDED, ...] error first, i.e. JOINT_E_REMOTE, not TIMEOUT. */
    CHECK_ST(c.done.status, JOINT_E_TIMEOUT);
    CHECK(h->events[0] == JOINT_INPUT_TIMEOUT);
    CHECK(h->freed == 1);
    CHECK_ST(joint_request_yield(h->req, item, len), JOINT_E_TIMEOUT);
    CHECK_ST(joint_request_reply_error_msg(h->req, 1, "late"), JOINT_E_TIMEOUT);
    LOOP_UNTIL(joint_ctx_unanswered(srv) == 0);
    joint_call_opts_free(o);
}

static void test_kwargs_and_callbacks(joint_conn *conn)
{
    static struct call c;
    joint_call_opts *o = opts_new(&c);
    static const uint8_t kw[] = {0x81, 0xa1, 'x', 0x07}; /* {"x": 7} */
    static const uint8_t one[] = {0x91, 0x01};           /* [1] */

    call_reset(&c);
    CHECK_ST(joint_call_opts_set_kwargs(o, one, sizeof one), JOINT_E_INVAL); /* not a map */
    CHECK_ST(joint_call_opts_set_kwargs(o, kw, 2), JOINT_E_INVAL);          /* truncated */
    CHECK_OK(joint_call_opts_set_kwargs(o, kw, sizeof kw));
    CHECK_OK(joint_conn_call_opts(conn, "kw", one, sizeof one, o, on_done, &c, NULL));
    LOOP_UNTIL(c.done.runs == 1);
    CHECK_OK(c.done.status);
    CHECK(c.done.result_len == sizeof kw && memcmp(c.done.result, kw, sizeof kw) == 0);
    /* (NULL, 0) removes them */
    call_reset(&c);
    CHECK_OK(joint_call_opts_set_kwargs(o, NULL, 0));
    CHECK_OK(joint_conn_call_opts(conn, "kw", one, sizeof one, o, on_done, &c, NULL));
    LOOP_UNTIL(c.done.runs == 1);
    CHECK(c.done.result_len == sizeof one && memcmp(c.done.result, one, sizeof one) == 0);
    /* NULL opts: defaults */
    call_reset(&c);
    CHECK_OK(joint_conn_call_opts(conn, "kw", NULL, 0, NULL, on_done, &c, NULL));
    LOOP_UNTIL(c.done.runs == 1);
    CHECK(c.done.result_len == 1 && c.done.result[0] == 0x90);
    joint_call_opts_free(o);

    /* event callbacks replaced and removed: each user data freed once */
    call_reset(&c);
    CHECK_OK(joint_conn_call_opts(conn, "replace", NULL, 0, NULL, on_done, &c, NULL));
    LOOP_UNTIL(c.done.runs == 1);
    CHECK_OK(c.done.status);
    CHECK(replace_freed[0] == 2 && replace_freed[1] == 1 && replace_freed[2] == 0);
}

static void test_pool(joint_conn *conn)
{
    static struct call c;
    joint_call_opts *o = opts_new(&c);
    int64_t v;
    int i;
    size_t len;
    const uint8_t *item;

    call_reset(&c);
    CHECK_OK(joint_call_opts_set_client_stream(o, true));
    CHECK_OK(joint_call_opts_set_window(o, 1)); /* the worker waits for credit after each item */
    CHECK_OK(joint_conn_call_opts(conn, "pool_echo", NULL, 0, o, on_done, &c, &c.items.call_id));
    for (v = 0; v < 200;) {
        joint_status st;
        item = enc_int(v, &len);
        st = joint_conn_send(conn, c.items.call_id, item, len);
        if (st == JOINT_OK) {
            v++;
        } else {
            int writable = c.items.writable;
            CHECK_ST(st, JOINT_WOULD_BLOCK);
            LOOP_UNTIL(c.items.writable > writable || c.done.runs);
        }
    }
    CHECK_OK(joint_conn_end_input(conn, c.items.call_id));
    LOOP_UNTIL(c.done.runs == 1);
    CHECK_OK(c.done.status);
    CHECK_EQ_I64(tu_dec_int(c.done.result, c.done.result_len), 200);
    CHECK(c.items.n == 200);
    for (i = 0; i < 200; i++)
        CHECK_EQ_I64(c.items.v[i], i);
    pthread_mutex_lock(&pool_mu);
    CHECK(pool_calls == 1 && pool_on_main == 0);
    CHECK(pool_waits > 0); /* joint_request_wait_writable was needed */
    pthread_mutex_unlock(&pool_mu);
    joint_call_opts_free(o);
}

/* A stock server (extension disabled): what a joint client gets. */
static void test_stock_server(void)
{
    joint_config *cfg;
    joint_ctx *stock, *cli;
    joint_listener *l;
    joint_conn *conn;
    static struct call c;
    joint_call_opts *o = opts_new(&c);
    static const uint8_t kw[] = {0x81, 0xa1, 'x', 0x07};
    static const uint8_t one[] = {0x91, 0x01};
    static const uint8_t one_kw[] = {0x92, 0x01, 0x81, 0xa1, 'x', 0x07};
    static const uint8_t count_result[] = {0x94, 0x00, 0x01, 0x02, 0x03};
    int64_t n = 4;
    const uint8_t *params, *item;
    size_t len;

    CHECK_OK(joint_config_new(&cfg));
    CHECK_OK(joint_config_set_extension(cfg, false));
    CHECK_OK(joint_ctx_new(cfg, &stock));
    joint_config_free(cfg);
    CHECK_OK(joint_ctx_listen(stock, "tcp://127.0.0.1:0", &l));
    CHECK_OK(joint_ctx_register(stock, "count", handle_count, NULL, NULL));
    CHECK_OK(joint_ctx_register(stock, "kw", handle_kw, NULL, NULL));
    loop_add(stock);
    conn = client_open(&cli, joint_listener_uri(l), JOINT_EXT_REFUSED);

    /* a streaming method: every item in one array, no item events */
    call_reset(&c);
    tu_ints(w, &params, &len, 1, &n);
    CHECK_OK(joint_conn_call_opts(conn, "count", params, len, o, on_done, &c, &c.items.call_id));
    LOOP_UNTIL(c.done.runs == 1);
    CHECK_OK(c.done.status);
    CHECK(c.done.result_len == sizeof count_result && memcmp(c.done.result, count_result, sizeof count_result) == 0);
    CHECK(c.items.n == 0 && stock_counts == 1);

    /* kwargs travel as the last positional param */
    call_reset(&c);
    CHECK_OK(joint_call_opts_set_kwargs(o, kw, sizeof kw));
    CHECK_OK(joint_conn_call_opts(conn, "kw", one, sizeof one, o, on_done, &c, NULL));
    LOOP_UNTIL(c.done.runs == 1);
    CHECK(c.done.result_len == sizeof one_kw && memcmp(c.done.result, one_kw, sizeof one_kw) == 0);
    CHECK_OK(joint_call_opts_set_kwargs(o, NULL, 0));

    /* no input into a stock call */
    call_reset(&c);
    CHECK_OK(joint_call_opts_set_client_stream(o, true));
    CHECK_OK(joint_conn_call_opts(conn, "kw", NULL, 0, o, on_done, &c, &c.items.call_id));
    item = enc_int(1, &len);
    CHECK_ST(joint_conn_send(conn, c.items.call_id, item, len), JOINT_E_UNSUPPORTED);
    CHECK_ST(joint_conn_end_input(conn, c.items.call_id), JOINT_E_UNSUPPORTED);
    CHECK_ST(joint_conn_throw(conn, c.items.call_id, item, len), JOINT_E_UNSUPPORTED);
    CHECK(strlen(joint_ctx_last_error(cli)) > 0);
    LOOP_UNTIL(c.done.runs == 1);
    CHECK_OK(c.done.status);

    joint_call_opts_free(o);
    client_close(cli, conn);
    loop_remove(stock);
    joint_ctx_free(stock);
    joint_listener_free(l);
}

/* ---- the pulled stream, on its own thread ----------------------------------------------- */

static pthread_mutex_t pull_mu = PTHREAD_MUTEX_INITIALIZER;
static int pull_done;

static void *pull_thread(void *arg)
{
    const char *uri = arg;
    joint_ctx *ctx;
    joint_conn *conn;
    joint_stream *s = SENTINEL;
    joint_call_opts *o;
    joint_buf *buf;
    joint_buf *result = NULL, *error = NULL;
    const uint8_t *data;
    size_t len;
    static const uint8_t hundred[] = {0x91, 0x64}; /* [100] */
    int64_t i, code;
    joint_status st;

    CHECK_OK(joint_ctx_new(NULL, &ctx));
    CHECK_OK(joint_ctx_connect(ctx, uri, &conn));
    CHECK_OK(joint_call_opts_new(&o));
    CHECK_OK(joint_call_opts_set_window(o, 3));

    /* items in order, then JOINT_DONE with the result, then JOINT_E_STATE */
    CHECK_OK(joint_conn_call_stream(conn, "count", hundred, sizeof hundred, o, &s));
    CHECK(s != SENTINEL && s != NULL);
    CHECK(joint_stream_call_id(s) != 0);
    for (i = 0;; i++) {
        buf = NULL;
        st = joint_stream_next(s, WAIT_MS, &buf, NULL);
        CHECK(buf != NULL);
        if (st == JOINT_DONE) {
            CHECK_EQ_I64(i, 100);
            CHECK_EQ_I64(tu_buf_int(buf), 100);
            joint_buf_free(buf);
            break;
        }
        CHECK_OK(st);
        CHECK_EQ_I64(tu_buf_int(buf), i);
        joint_buf_free(buf);
    }
    buf = SENTINEL;
    CHECK_ST(joint_stream_next(s, 0, &buf, NULL), JOINT_E_STATE);
    CHECK(buf == SENTINEL);
    joint_stream_free(s);

    /* a remote error: its error object */
    CHECK_OK(joint_conn_call_stream(conn, "fail", NULL, 0, NULL, &s));
    buf = NULL;
    {
        joint_buf *item = SENTINEL;
        CHECK_ST(joint_stream_next(s, WAIT_MS, &item, &buf), JOINT_E_REMOTE);
        CHECK(item == SENTINEL); /* out-params only on success; the error object in error_out */
    }
    CHECK(buf != NULL);
    CHECK_OK(joint_buf_data(buf, &data, &len));
    CHECK_OK(joint_error_code(data, len, &code));
    CHECK_EQ_I64(code, 77);
    joint_buf_free(buf);
    joint_stream_free(s);

    /* nothing comes: JOINT_WOULD_BLOCK, nothing written; freeing the stream cancels the call */
    CHECK_OK(joint_conn_call_stream(conn, "hold", NULL, 0, o, &s));
    buf = SENTINEL;
    CHECK_ST(joint_stream_next(s, 50, &buf, NULL), JOINT_WOULD_BLOCK);
    CHECK(buf == SENTINEL);
    joint_stream_free(s);
    /* a call after it: answered after the server has seen the cancellation */
    CHECK_OK(joint_conn_call_sync(conn, "kw", NULL, 0, WAIT_MS, &result, &error));
    joint_buf_free(result);

    joint_call_opts_free(o);
    joint_conn_free(conn);
    joint_ctx_free(ctx);
    pthread_mutex_lock(&pull_mu);
    pull_done = 1;
    pthread_mutex_unlock(&pull_mu);
    return NULL;
}

static int pulled(void)
{
    int done;
    pthread_mutex_lock(&pull_mu);
    done = pull_done;
    pthread_mutex_unlock(&pull_mu);
    return done;
}

static void test_pulled_stream(void)
{
    pthread_t t;
    int first_hold = nholds;
    CHECK(pthread_create(&t, NULL, pull_thread, (void *)srv_uri) == 0);
    LOOP_UNTIL(pulled());
    CHECK(pthread_join(t, NULL) == 0);
    /* the held call was cancelled by joint_stream_free */
    CHECK(nholds == first_hold + 1);
    CHECK(holds[first_hold].nevents == 1 && holds[first_hold].events[0] == JOINT_INPUT_CANCELLED);
    CHECK(holds[first_hold].freed == 1);
    joint_request_free(holds[first_hold].req);
}

/* ---- NULL and invalid arguments ---------------------------------------------------------- */

static int never_runs;
static void never_response(joint_conn *conn, const joint_response *resp, void *user_data)
{
    (void)conn, (void)resp, (void)user_data;
    never_runs++;
}
static void never_request(joint_request *req, void *user_data)
{
    (void)user_data;
    never_runs++;
    joint_request_free(req);
}
static void never_event(joint_request *req, int32_t event, const uint8_t *data, size_t len, void *user_data)
{
    (void)req, (void)event, (void)data, (void)len, (void)user_data;
    never_runs++;
}
static int null_freed;
static void null_free(void *user_data)
{
    (void)user_data;
    null_freed++;
}

/* stock(): checks the extension functions on a stock request (from a plain call) */
static void handle_stock(joint_request *req, void *user_data)
{
    int32_t event = -1;
    joint_buf *buf = SENTINEL;
    (void)user_data;
    CHECK(!joint_request_is_extended(req));
    CHECK(joint_request_deadline_ms(req) == 0);
    CHECK_OK(joint_request_next_input(req, 0, &event, &buf)); /* no input: END at once */
    CHECK(event == JOINT_INPUT_END && buf == NULL);
    CHECK_OK(joint_request_next_input(req, -1, NULL, NULL)); /* out-params may be NULL */
    CHECK_ST(joint_request_set_event_cb(req, never_event, SENTINEL, null_free), JOINT_E_UNSUPPORTED);
    CHECK_ST(joint_request_yield(req, (const uint8_t *)"\xc1", 1), JOINT_E_INVAL); /* not MessagePack */
    CHECK_ST(joint_request_yield(req, NULL, 1), JOINT_E_NULL);
    CHECK_OK(joint_request_reply(req, NULL, 0));
}

static void test_null(joint_conn *conn)
{
    joint_config *cfg;
    joint_call_opts *o;
    joint_stream *s = SENTINEL;
    joint_buf *buf = SENTINEL;
    uint64_t id = 777;
    int32_t event = 12345;
    static const uint8_t one[] = {0x91, 0x01};
    static struct done d;

    joint_call_opts_free(NULL);
    joint_stream_free(NULL);

    CHECK_OK(joint_config_new(&cfg));
    CHECK_ST(joint_config_set_extension(NULL, true), JOINT_E_NULL);
    CHECK_ST(joint_config_set_window(NULL, 8), JOINT_E_NULL);
    CHECK_ST(joint_config_set_window(cfg, 0), JOINT_E_INVAL);
    CHECK_ST(joint_config_set_workers(NULL, 2), JOINT_E_NULL);
    CHECK_ST(joint_config_set_workers(cfg, 0), JOINT_E_INVAL);
    CHECK_OK(joint_config_set_extension(cfg, true));
    CHECK_OK(joint_config_set_window(cfg, 1));
    CHECK_OK(joint_config_set_workers(cfg, 1));
    joint_config_free(cfg);

    CHECK_ST(joint_call_opts_new(NULL), JOINT_E_NULL);
    CHECK_ST(joint_call_opts_set_timeout_ms(NULL, 5), JOINT_E_NULL);
    CHECK_ST(joint_call_opts_set_kwargs(NULL, NULL, 0), JOINT_E_NULL);
    CHECK_ST(joint_call_opts_set_client_stream(NULL, true), JOINT_E_NULL);
    CHECK_ST(joint_call_opts_set_window(NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_call_opts_set_event_cb(NULL, on_call_event, NULL, NULL), JOINT_E_NULL);
    CHECK_ST(joint_call_opts_set_manual_credit(NULL, true), JOINT_E_NULL);
    CHECK_OK(joint_call_opts_new(&o));
    CHECK_ST(joint_call_opts_set_kwargs(o, NULL, 4), JOINT_E_NULL);
    CHECK_OK(joint_call_opts_set_event_cb(o, NULL, NULL, NULL)); /* NULL: no events */
    CHECK_OK(joint_call_opts_set_timeout_ms(o, -1));

    /* calls that fail never run their callback nor write their out-params */
    CHECK_ST(joint_conn_call_opts(NULL, "kw", NULL, 0, o, never_response, NULL, &id), JOINT_E_NULL);
    CHECK_ST(joint_conn_call_opts(conn, NULL, NULL, 0, o, never_response, NULL, &id), JOINT_E_NULL);
    CHECK_ST(joint_conn_call_opts(conn, "kw", NULL, 3, o, never_response, NULL, &id), JOINT_E_NULL);
    CHECK_ST(joint_conn_call_opts(conn, "kw", (const uint8_t *)"\x01", 1, o, never_response, NULL, &id),
             JOINT_E_INVAL); /* params not an array */
    CHECK(id == 777);
    CHECK_ST(joint_conn_call_stream(NULL, "kw", NULL, 0, o, &s), JOINT_E_NULL);
    CHECK_ST(joint_conn_call_stream(conn, NULL, NULL, 0, o, &s), JOINT_E_NULL);
    CHECK_ST(joint_conn_call_stream(conn, "kw", NULL, 0, o, NULL), JOINT_E_NULL);
    CHECK(s == SENTINEL);
    CHECK_ST(joint_stream_next(NULL, 0, &buf, NULL), JOINT_E_NULL);
    CHECK(buf == SENTINEL);
    CHECK(joint_stream_call_id(NULL) == 0);

    CHECK_ST(joint_conn_send(NULL, 1, one, sizeof one), JOINT_E_NULL);
    CHECK_ST(joint_conn_send(conn, 1, NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_conn_send(conn, 123456789, one, sizeof one), JOINT_E_STATE); /* no such call */
    CHECK_ST(joint_conn_end_input(NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_conn_end_input(conn, 123456789), JOINT_E_STATE);
    CHECK_ST(joint_conn_throw(NULL, 1, one, sizeof one), JOINT_E_NULL);
    CHECK_ST(joint_conn_throw(conn, 1, NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_conn_throw(conn, 123456789, one, sizeof one), JOINT_E_STATE);
    CHECK_ST(joint_conn_grant(NULL, 1, 1), JOINT_E_NULL);
    CHECK_ST(joint_conn_grant(conn, 123456789, 1), JOINT_E_STATE);
    CHECK(joint_conn_extension(NULL) == -1);
    CHECK(joint_conn_extension(conn) == JOINT_EXT_ON);

    CHECK(!joint_request_is_extended(NULL));
    CHECK(joint_request_deadline_ms(NULL) == 0);
    CHECK_ST(joint_request_yield(NULL, one, sizeof one), JOINT_E_NULL);
    CHECK_ST(joint_request_wait_writable(NULL, 0), JOINT_E_NULL);
    CHECK_ST(joint_request_next_input(NULL, 0, &event, &buf), JOINT_E_NULL);
    CHECK(event == 12345 && buf == SENTINEL);
    CHECK_ST(joint_request_set_event_cb(NULL, never_event, SENTINEL, null_free), JOINT_E_NULL);
    CHECK_ST(joint_request_set_manual_credit(NULL, true), JOINT_E_NULL);
    CHECK_ST(joint_request_grant(NULL, 1), JOINT_E_NULL);

    CHECK_ST(joint_ctx_register_pool(NULL, "p", never_request, SENTINEL, null_free), JOINT_E_NULL);
    CHECK_ST(joint_ctx_register_pool(srv, NULL, never_request, SENTINEL, null_free), JOINT_E_NULL);
    CHECK_ST(joint_ctx_register_pool(srv, "p", NULL, SENTINEL, null_free), JOINT_E_NULL);

    /* a stock request (plain joint_conn_call) meets the extension functions */
    CHECK_OK(joint_ctx_register(srv, "stock", handle_stock, NULL, NULL));
    CHECK_OK(joint_conn_call(conn, "stock", NULL, 0, WAIT_MS, on_done, &d, NULL));
    LOOP_UNTIL(d.runs == 1);
    CHECK_OK(d.status);

    /* failed registrations took nothing */
    CHECK(null_freed == 0);
    CHECK(never_runs == 0);
    joint_call_opts_free(o);
}

int main(void)
{
    joint_ctx *cli;
    joint_conn *conn;

    main_thread = pthread_self();
    CHECK_OK(joint_writer_new(&w));
    CHECK_OK(joint_writer_new(&srv_w));
    server_open();
    loop_add(srv);
    conn = client_open(&cli, srv_uri, JOINT_EXT_ON);

    test_server_streaming(conn);
    test_client_streaming(conn);
    test_cancel_and_deadline(conn);
    test_kwargs_and_callbacks(conn);
    test_pool(conn);
    test_pulled_stream();
    test_stock_server();
    test_null(conn);

    client_close(cli, conn);
    LOOP_UNTIL(joint_ctx_unanswered(srv) == 0);
    loop_remove(srv);
    CHECK(pool_freed == 0);
    joint_ctx_free(srv); /* stops the workers, then frees the pool's user data */
    joint_listener_free(srv_listener);
    CHECK(pool_freed == 1);
    CHECK(producers_freed == 3 && accs_freed == 2); /* count: 500, manual credit, pulled */
    joint_writer_free(w);
    joint_writer_free(srv_w);
    printf("api_stream: ok\n");
    return 0;
}
