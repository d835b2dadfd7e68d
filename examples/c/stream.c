/* stream.c — streaming with the joint extension, both ways, with flow control.
 *
 *   stream                 (no arguments)
 *
 * It starts a server (its own context, served on a thread) on tcp://127.0.0.1:0, connects a
 * client to it and
 *   1. calls squares(10): the server streams 0, 1, 4, ..., 81, then answers with the count;
 *      the client pulls the items one at a time with joint_stream_next (blocking);
 *   2. calls total(): the client streams 1, 2, ..., 1000 into the call with
 *      joint_conn_send, ends the input, and the server answers with the sum.
 * It exits 0 if every answer was as expected, 1 otherwise.
 *
 * Flow control: a callee may stream only as many items as the caller has granted credit
 * for (the call's window), and the caller may send only as many values as the callee has
 * granted. When the credit is used up, joint_request_yield / joint_conn_send return
 * JOINT_WOULD_BLOCK; credit comes back as an event (JOINT_INPUT_WRITABLE on the server,
 * JOINT_CALL_WRITABLE on the client) once the other side has consumed what it got. So a
 * slow consumer slows the producer down instead of letting memory fill up.
 *
 * Both ends here are joint, so the calls are extended calls. A stock MessagePack-RPC
 * client calling squares() would get all the items as one array instead (joint does that
 * for you); a stock server cannot take values streamed in (JOINT_E_UNSUPPORTED).
 *
 * Build: cc -std=c99 stream.c -ljoint -lpthread
 */
#define _POSIX_C_SOURCE 200809L /* pthreads */

#include <joint.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define FAIL(...) (fprintf(stderr, "stream: FAIL: " __VA_ARGS__), fputc('\n', stderr), failures++)

/* Encode one integer into `out` (at least 9 bytes); returns its length. */
static size_t encode_int(int64_t v, uint8_t *out)
{
    joint_writer *w;
    const uint8_t *data;
    size_t len = 0;
    if (joint_writer_new(&w) != JOINT_OK)
        return 0;
    if (joint_write_int(w, v) == JOINT_OK && joint_writer_data(w, &data, &len) == JOINT_OK)
        memcpy(out, data, len);
    joint_writer_free(w);
    return len;
}

/* Decode one integer; 0 if it is not one. */
static int64_t decode_int(const uint8_t *data, size_t len)
{
    joint_reader *r;
    int64_t v = 0;
    if (joint_reader_new(data, len, &r) == JOINT_OK) {
        joint_read_int(r, &v);
        joint_reader_free(r);
    }
    return v;
}

/* ==== The server ======================================================================== */

/* squares(n): streams i*i for i in 0..n-1, then answers n.
 *
 * The handler does not answer at once: it keeps the request, registers an event callback
 * for it and yields items as long as there is credit. When joint_request_yield says
 * JOINT_WOULD_BLOCK it simply returns; the event callback gets JOINT_INPUT_WRITABLE when
 * the client has taken some items, and carries on from there. */
struct squares {
    joint_request *req;
    int64_t next, n;
};

/* Yield what credit allows; answer once all items are out. Answering consumes the request
 * and ends the call, which frees `s` (the event callback's user data): do not touch `s`
 * after it. */
static void squares_pump(struct squares *s)
{
    uint8_t item[16];
    for (;;) {
        joint_status st;
        if (s->next == s->n) {
            size_t len = encode_int(s->n, item);
            joint_request_reply(s->req, item, len);
            return;
        }
        st = joint_request_yield(s->req, item, encode_int(s->next * s->next, item));
        if (st == JOINT_WOULD_BLOCK)
            return; /* no credit: wait for JOINT_INPUT_WRITABLE */
        if (st != JOINT_OK) {
            /* the call ended (cancelled, deadline, connection closed): stop */
            joint_request_free(s->req);
            return;
        }
        s->next++;
    }
}

static void squares_event(joint_request *req, int32_t event, const uint8_t *data, size_t len, void *user_data)
{
    (void)data, (void)len;
    switch (event) {
    case JOINT_INPUT_WRITABLE: /* credit again */
        squares_pump(user_data);
        break;
    case JOINT_INPUT_CANCELLED: /* the caller gave up, or its deadline passed: the call is */
    case JOINT_INPUT_TIMEOUT:   /* over (joint already answered it), but the request is still */
    case JOINT_INPUT_CLOSED:    /* ours to release */
        joint_request_free(req);
        break;
    default:
        break;
    }
}

static void handle_squares(joint_request *req, void *user_data)
{
    const uint8_t *params;
    size_t len;
    joint_reader *r;
    uint32_t count = 0;
    int64_t n = -1;
    struct squares *s;
    (void)user_data;

    if (joint_request_params(req, &params, &len) == JOINT_OK && joint_reader_new(params, len, &r) == JOINT_OK) {
        if (joint_read_array(r, &count) != JOINT_OK || count != 1 || joint_read_int(r, &n) != JOINT_OK)
            n = -1;
        joint_reader_free(r);
    }
    if (n < 0 || n > 3000000000) {
        joint_request_reply_error_msg(req, 1, "squares(n) needs an integer from 0 to 3000000000");
        return;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        joint_request_free(req);
        return;
    }
    s->req = req;
    s->n = n;
    if (joint_request_is_extended(req)) {
        /* joint frees `s` (free_user_data) when the call ends, however it ends */
        joint_request_set_event_cb(req, squares_event, s, free);
        squares_pump(s);
    } else {
        /* A stock caller: yields never block; joint collects them into one array */
        squares_pump(s);
        free(s);
    }
}

/* total(): the caller streams numbers in; answers their sum when the input ends.
 *
 * Values arrive through the event callback as JOINT_INPUT_VALUE; each one is credited back
 * to the caller when the callback returns, so the caller can send more. */
static void total_event(joint_request *req, int32_t event, const uint8_t *data, size_t len, void *user_data)
{
    int64_t *sum = user_data;
    uint8_t out[16];
    switch (event) {
    case JOINT_INPUT_VALUE:
        *sum += decode_int(data, len);
        break;
    case JOINT_INPUT_END: /* no more values: answer (this frees `sum`, our user data) */
        joint_request_reply(req, out, encode_int(*sum, out));
        break;
    case JOINT_INPUT_THROW: /* the caller threw an error in: end the call with it */
        joint_request_reply_error(req, data, len);
        break;
    case JOINT_INPUT_WRITABLE: /* we stream nothing back */
        break;
    default: /* cancelled, timed out, closed */
        joint_request_free(req);
        break;
    }
}

static void handle_total(joint_request *req, void *user_data)
{
    int64_t *sum;
    (void)user_data;
    if (!joint_request_is_extended(req)) {
        /* a stock caller cannot stream values in: the total of nothing */
        joint_request_reply(req, (const uint8_t *)"\x00", 1);
        return;
    }
    sum = calloc(1, sizeof *sum);
    if (!sum || joint_request_set_event_cb(req, total_event, sum, free) != JOINT_OK) {
        free(sum);
        joint_request_free(req);
    }
}

/* The server's loop, on its own thread, until `stop` is set. */
struct server {
    joint_ctx *ctx;
    pthread_mutex_t mu;
    int stop;
};

static int should_stop(struct server *srv)
{
    int stop;
    pthread_mutex_lock(&srv->mu);
    stop = srv->stop;
    pthread_mutex_unlock(&srv->mu);
    return stop;
}

static void *server_loop(void *arg)
{
    struct server *srv = arg;
    while (!should_stop(srv)) {
        /* wait for the context's fd (or its next timer), then run its callbacks */
        if (joint_ctx_wait(srv->ctx, -1) != JOINT_OK) {
            FAIL("server: %s", joint_ctx_last_error(srv->ctx));
            break;
        }
    }
    return NULL;
}

/* ==== The client ======================================================================== */

/* 1. Pull a stream: joint_stream_next waits (running the client's context meanwhile) and
 *    hands over one item at a time; credit is granted as items are pulled. */
static void pull_squares(joint_ctx *ctx, joint_conn *conn)
{
    static const uint8_t params[] = {0x91, 0x0a}; /* [10] */
    joint_stream *stream;
    joint_buf *buf;
    const uint8_t *data;
    size_t len;
    int64_t i = 0;
    joint_status st;

    if (joint_conn_call_stream(conn, "squares", params, sizeof params, NULL, &stream) != JOINT_OK) {
        FAIL("squares: %s", joint_ctx_last_error(ctx));
        return;
    }
    printf("squares(10) streams:");
    /* JOINT_OK: an item; JOINT_DONE: the result (the stream is over); JOINT_WOULD_BLOCK:
     * nothing within 5 s; anything else: the call failed (for JOINT_E_REMOTE the peer's
     * error object would go to the last argument, here NULL). */
    while ((st = joint_stream_next(stream, 5000, &buf, NULL)) == JOINT_OK) {
        joint_buf_data(buf, &data, &len);
        printf(" %lld", (long long)decode_int(data, len));
        if (decode_int(data, len) != i * i)
            FAIL("squares: item %lld is %lld", (long long)i, (long long)decode_int(data, len));
        i++;
        joint_buf_free(buf);
    }
    if (st == JOINT_DONE) {
        joint_buf_data(buf, &data, &len);
        printf(", then returns %lld\n", (long long)decode_int(data, len));
        if (decode_int(data, len) != 10 || i != 10)
            FAIL("squares: %lld items and the result %lld, want 10 and 10", (long long)i, (long long)decode_int(data, len));
        joint_buf_free(buf);
    } else {
        printf("\n");
        FAIL("squares: %s (%s)", joint_status_str(st), joint_ctx_last_error(ctx));
    }
    joint_stream_free(stream); /* would cancel the call if it were still running */
}

/* 2. Stream values into a call. joint_conn_send says JOINT_WOULD_BLOCK when the server has
 *    not granted more credit yet; the call's event callback then gets JOINT_CALL_WRITABLE. */
struct total_call {
    int writable; /* credit arrived since we last looked */
    int done;
    joint_status status;
    int64_t result;
};

static void total_call_event(joint_conn *conn, uint64_t call_id, int32_t event, const uint8_t *data, size_t len,
                             void *user_data)
{
    struct total_call *c = user_data;
    (void)conn, (void)call_id, (void)data, (void)len;
    if (event == JOINT_CALL_WRITABLE)
        c->writable = 1;
}

static void total_call_done(joint_conn *conn, const joint_response *resp, void *user_data)
{
    struct total_call *c = user_data;
    const uint8_t *data;
    size_t len;
    (void)conn;
    c->done = 1;
    c->status = joint_response_status(resp);
    if (c->status == JOINT_OK && joint_response_result(resp, &data, &len) == JOINT_OK)
        c->result = decode_int(data, len);
}

static void send_total(joint_ctx *ctx, joint_conn *conn)
{
    joint_call_opts *opts;
    struct total_call c = {0, 0, 0, 0};
    uint64_t call;
    uint8_t item[16];
    int64_t v = 1;
    int waits = 0;

    /* Values can be sent once the extension is on: joint offers it when it connects, and
     * the answer takes one round trip. (Sending earlier returns JOINT_E_UNSUPPORTED, as
     * it does for good when the peer is a stock peer: JOINT_EXT_REFUSED.) */
    while (joint_conn_extension(conn) == JOINT_EXT_PENDING)
        joint_ctx_wait(ctx, 100);
    if (joint_conn_extension(conn) != JOINT_EXT_ON) {
        FAIL("total: the server does not speak the joint extension");
        return;
    }

    joint_call_opts_new(&opts);
    joint_call_opts_set_client_stream(opts, true);            /* we will send values in */
    joint_call_opts_set_event_cb(opts, total_call_event, &c, NULL); /* ... and hear of credit */
    joint_call_opts_set_timeout_ms(opts, 5000);               /* also the server's deadline */
    if (joint_conn_call_opts(conn, "total", NULL, 0, opts, total_call_done, &c, &call) != JOINT_OK) {
        FAIL("total: %s", joint_ctx_last_error(ctx));
        joint_call_opts_free(opts);
        return;
    }
    joint_call_opts_free(opts); /* the call copied what it needs */

    while (v <= 1000 && !c.done) {
        joint_status st = joint_conn_send(conn, call, item, encode_int(v, item));
        if (st == JOINT_OK) {
            v++;
        } else if (st == JOINT_WOULD_BLOCK) {
            /* out of credit: run the loop until the server grants more */
            waits++;
            c.writable = 0;
            while (!c.writable && !c.done)
                joint_ctx_wait(ctx, 100);
        } else {
            FAIL("total: send: %s (%s)", joint_status_str(st), joint_ctx_last_error(ctx));
            joint_conn_cancel(conn, call); /* completes it (JOINT_E_CANCELLED) at the next process */
            break;
        }
    }
    if (v > 1000)
        joint_conn_end_input(conn, call); /* no more values */
    /* `c` lives on this stack: wait for the completion before returning */
    while (!c.done)
        joint_ctx_wait(ctx, 100);
    printf("total() of 1, 2, ..., 1000 streamed in = %lld (the client waited for credit %d times)\n",
           (long long)c.result, waits);
    if (c.status != JOINT_OK || c.result != 500500)
        FAIL("total: %s, %lld; want 500500", joint_status_str(c.status), (long long)c.result);
}

int main(void)
{
    struct server srv;
    joint_listener *listener;
    joint_ctx *ctx;
    joint_conn *conn;
    pthread_t thread;
    char uri[128];

    /* The server: its context is set up here, then only its thread touches it (until it is
     * joined). */
    memset(&srv, 0, sizeof srv);
    pthread_mutex_init(&srv.mu, NULL);
    if (joint_ctx_new(NULL, &srv.ctx) != JOINT_OK || joint_ctx_listen(srv.ctx, "tcp://127.0.0.1:0", &listener) != JOINT_OK) {
        fprintf(stderr, "stream: cannot start the server\n");
        return 1;
    }
    joint_ctx_register(srv.ctx, "squares", handle_squares, NULL, NULL);
    joint_ctx_register(srv.ctx, "total", handle_total, NULL, NULL);
    snprintf(uri, sizeof uri, "%s", joint_listener_uri(listener)); /* before the thread owns it */
    printf("server: listening on %s\n", uri);
    if (pthread_create(&thread, NULL, server_loop, &srv) != 0) {
        fprintf(stderr, "stream: cannot start the server thread\n");
        return 1;
    }

    /* The client: its own context, on this thread. */
    if (joint_ctx_new(NULL, &ctx) != JOINT_OK || joint_ctx_connect(ctx, uri, &conn) != JOINT_OK) {
        FAIL("cannot connect to %s", uri);
    } else {
        pull_squares(ctx, conn);
        send_total(ctx, conn);
        joint_conn_free(conn);
    }
    joint_ctx_free(ctx);

    /* Stop the server: set the flag, wake its loop (joint_ctx_wakeup is thread-safe). */
    pthread_mutex_lock(&srv.mu);
    srv.stop = 1;
    pthread_mutex_unlock(&srv.mu);
    joint_ctx_wakeup(srv.ctx);
    pthread_join(thread, NULL);
    joint_ctx_free(srv.ctx);
    joint_listener_free(listener);
    pthread_mutex_destroy(&srv.mu);

    printf(failures ? "stream: %d failure(s)\n" : "stream: all as expected\n", failures);
    return failures ? 1 : 0;
}
