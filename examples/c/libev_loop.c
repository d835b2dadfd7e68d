/* libev_loop.c — joint on a libev loop.
 *
 * One process, two joint contexts (a server, and a client connected to it over TCP on the
 * loopback interface), both driven by one libev loop that also runs a timer of its own.
 * Each context needs two watchers:
 *
 *   ev_io     on joint_ctx_fd(), for EV_READ;
 *   ev_timer  re-armed from joint_ctx_timeout_ms() after every joint_ctx_process().
 *
 * The server answers
 *   add(a, b)             in the handler;
 *   add_later(a, b)       later, from a joint timer (joint_ctx_add_timer);
 *   add_in_thread(a, b)   from a worker thread (joint_request_reply is thread-safe and wakes
 *                         the context's fd, so libev needs no ev_async for it).
 * The client calls each once, checks the sums, and the program exits 0.
 *
 * Build: cc -std=c99 libev_loop.c -ljoint -lev -lpthread
 */
#define _POSIX_C_SOURCE 200809L

#include <joint.h>
#include <ev.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define TICK_SECONDS 0.01
#define DEADLINE_TICKS 1000 /* 10 s */

/* ---- The adapter: one joint context on a libev loop ------------------------------------ */

struct ev_joint {
    ev_io io;       /* the context's fd is readable: there is work */
    ev_timer timer; /* the context's next deadline */
    joint_ctx *ctx;
    int failed;
};

static void ev_joint_drive(struct ev_loop *loop, struct ev_joint *a);

static void on_joint_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    ev_joint_drive(loop, w->data);
}

static void on_joint_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    ev_joint_drive(loop, w->data);
}

/* Re-arm the timer from the context's deadline. ev_timer_again() is not used: with a
 * repeat of 0 (joint says "process now") it would stop the timer instead of firing it. */
static void ev_joint_arm(struct ev_loop *loop, struct ev_joint *a)
{
    int32_t ms = joint_ctx_timeout_ms(a->ctx);
    ev_timer_stop(loop, &a->timer);
    if (ms >= 0) {
        ev_timer_set(&a->timer, ms / 1000.0, 0.0);
        ev_timer_start(loop, &a->timer);
    }
}

static void ev_joint_drive(struct ev_loop *loop, struct ev_joint *a)
{
    joint_status st = joint_ctx_process(a->ctx); /* callbacks run in here */
    if (st != JOINT_OK) {
        fprintf(stderr, "joint_ctx_process: %s (%s)\n", joint_status_str(st), joint_ctx_last_error(a->ctx));
        a->failed = 1;
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    ev_joint_arm(loop, a);
}

static void ev_joint_attach(struct ev_loop *loop, struct ev_joint *a, joint_ctx *ctx)
{
    a->ctx = ctx;
    a->failed = 0;
    ev_io_init(&a->io, on_joint_readable, joint_ctx_fd(ctx), EV_READ);
    ev_init(&a->timer, on_joint_timer);
    a->io.data = a;
    a->timer.data = a;
    ev_io_start(loop, &a->io);
    ev_joint_arm(loop, a);
}

/* Stop both watchers; do this before freeing the context (it closes the fd ev_io watches). */
static void ev_joint_detach(struct ev_loop *loop, struct ev_joint *a)
{
    ev_io_stop(loop, &a->io);
    ev_timer_stop(loop, &a->timer);
}

/* ---- Server ------------------------------------------------------------------------- */

#define MAX_WORKERS 8

struct server {
    joint_ctx *ctx;
    pthread_t workers[MAX_WORKERS];
    int nworkers;
};

static void reply_int(joint_request *req, int64_t value) /* any thread; consumes req */
{
    joint_writer *w;
    const uint8_t *data;
    size_t len;

    if (joint_writer_new(&w) != JOINT_OK) {
        joint_request_free(req);
        return;
    }
    joint_write_int(w, value);
    joint_writer_data(w, &data, &len);
    joint_request_reply(req, data, len);
    joint_writer_free(w);
}

static int read_two_ints(joint_request *req, int64_t *a, int64_t *b)
{
    const uint8_t *params;
    size_t len;
    uint32_t n = 0;
    joint_reader *r = NULL;
    int ok = joint_request_params(req, &params, &len) == JOINT_OK &&
             joint_reader_new(params, len, &r) == JOINT_OK &&
             joint_read_array(r, &n) == JOINT_OK && n == 2 &&
             joint_read_int(r, a) == JOINT_OK && joint_read_int(r, b) == JOINT_OK;
    joint_reader_free(r);
    if (!ok) {
        joint_request_reply_error_msg(req, JOINT_RPC_INVALID_PARAMS, "expected two integers");
        return -1;
    }
    return 0;
}

static void handle_add(joint_request *req, void *user_data)
{
    int64_t a, b;
    (void)user_data;
    if (read_two_ints(req, &a, &b) == 0)
        reply_int(req, a + b);
}

struct deferred { /* a joint timer's user data owns the request until it fires */
    joint_request *req;
    int64_t sum;
};

static void deferred_fire(joint_ctx *ctx, void *user_data)
{
    struct deferred *d = user_data;
    (void)ctx;
    reply_int(d->req, d->sum);
    d->req = NULL;
}

static void deferred_free(void *user_data)
{
    struct deferred *d = user_data;
    joint_request_free(d->req); /* answers the peer if the timer never fired */
    free(d);
}

static void handle_add_later(joint_request *req, void *user_data)
{
    struct server *srv = user_data;
    struct deferred *d;
    int64_t a, b;

    if (read_two_ints(req, &a, &b) != 0)
        return;
    if (!(d = malloc(sizeof *d))) {
        joint_request_free(req);
        return;
    }
    d->req = req;
    d->sum = a + b;
    /* A call that fails never runs its callbacks: then the request is still ours. */
    if (joint_ctx_add_timer(srv->ctx, 20, deferred_fire, d, deferred_free, NULL) != JOINT_OK) {
        joint_request_reply_error_msg(req, JOINT_RPC_HANDLER_FAILED, "no timer");
        free(d);
    }
}

struct job {
    joint_request *req;
    int64_t a, b;
};

static void *worker(void *arg)
{
    struct job *job = arg;
    struct timespec pause = {0, 10 * 1000 * 1000};
    nanosleep(&pause, NULL); /* pretend to work */
    reply_int(job->req, job->a + job->b);
    free(job);
    return NULL;
}

static void handle_add_in_thread(joint_request *req, void *user_data)
{
    struct server *srv = user_data;
    struct job *job;
    int64_t a, b;

    if (read_two_ints(req, &a, &b) != 0)
        return;
    job = malloc(sizeof *job);
    if (!job || srv->nworkers == MAX_WORKERS) {
        free(job);
        joint_request_reply_error_msg(req, JOINT_RPC_HANDLER_FAILED, "too busy");
        return;
    }
    job->req = req;
    job->a = a;
    job->b = b;
    if (pthread_create(&srv->workers[srv->nworkers], NULL, worker, job) != 0) {
        free(job);
        joint_request_reply_error_msg(req, JOINT_RPC_HANDLER_FAILED, "no thread");
        return;
    }
    srv->nworkers++;
}

/* ---- Client ------------------------------------------------------------------------- */

struct call {
    const char *method;
    int64_t a, b;
    int64_t result;
    int done;
};

struct client {
    struct ev_loop *loop;
    int calls_left;
};

static void on_response(joint_conn *conn, const joint_response *resp, void *user_data)
{
    struct call *c = user_data;
    struct client *cl = joint_conn_user_data(conn); /* set with joint_conn_set_user_data */
    joint_status st = joint_response_status(resp);
    const uint8_t *data;
    size_t len;
    joint_reader *r;

    c->done = 1;
    if (st == JOINT_OK) {
        joint_response_result(resp, &data, &len); /* borrowed until we return */
        if (joint_reader_new(data, len, &r) == JOINT_OK) {
            joint_read_int(r, &c->result);
            joint_reader_free(r);
        }
    } else {
        fprintf(stderr, "%s failed: %s: %s\n", c->method, joint_status_str(st), joint_response_message(resp));
    }
    if (--cl->calls_left == 0)
        ev_break(cl->loop, EVBREAK_ALL);
}

static joint_status start_call(joint_conn *conn, struct call *c)
{
    joint_writer *w;
    const uint8_t *params;
    size_t len;
    joint_status st;

    if ((st = joint_writer_new(&w)) != JOINT_OK)
        return st;
    joint_write_array(w, 2);
    joint_write_int(w, c->a);
    joint_write_int(w, c->b);
    joint_writer_data(w, &params, &len);
    st = joint_conn_call(conn, c->method, params, len, 5000, on_response, c, NULL);
    joint_writer_free(w);
    return st;
}

/* ---- The host's own work -------------------------------------------------------------- */

static unsigned long ticks;

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    if (++ticks == DEADLINE_TICKS) {
        fprintf(stderr, "timed out waiting for the calls\n");
        ev_break(loop, EVBREAK_ALL);
    }
}

int main(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct server srv = {0};
    struct client cl;
    struct ev_joint server_ev, client_ev;
    struct call calls[3] = {
        {"add", 1, 2, 0, 0},
        {"add_later", 3, 4, 0, 0},
        {"add_in_thread", 5, 6, 0, 0},
    };
    joint_ctx *client = NULL;
    joint_listener *listener;
    joint_conn *conn = NULL;
    ev_timer tick;
    int rc, i;

    if (!loop || joint_ctx_new(NULL, &srv.ctx) != JOINT_OK || joint_ctx_new(NULL, &client) != JOINT_OK)
        return 1;
    joint_ctx_register(srv.ctx, "add", handle_add, &srv, NULL);
    joint_ctx_register(srv.ctx, "add_later", handle_add_later, &srv, NULL);
    joint_ctx_register(srv.ctx, "add_in_thread", handle_add_in_thread, &srv, NULL);
    if (joint_ctx_listen(srv.ctx, "tcp://127.0.0.1:0", &listener) != JOINT_OK ||
        joint_ctx_connect(client, joint_listener_uri(listener), &conn) != JOINT_OK) {
        fprintf(stderr, "listen/connect: %s %s\n", joint_ctx_last_error(srv.ctx), joint_ctx_last_error(client));
        joint_ctx_free(client);
        joint_ctx_free(srv.ctx);
        return 1;
    }
    cl.loop = loop;
    cl.calls_left = 3;
    joint_conn_set_user_data(conn, &cl);
    for (i = 0; i < 3; i++) {
        if (start_call(conn, &calls[i]) != JOINT_OK) {
            fprintf(stderr, "call %s: %s\n", calls[i].method, joint_ctx_last_error(client));
            return 1;
        }
    }

    ev_joint_attach(loop, &server_ev, srv.ctx);
    ev_joint_attach(loop, &client_ev, client);
    ev_timer_init(&tick, on_tick, TICK_SECONDS, TICK_SECONDS);
    ev_timer_start(loop, &tick);

    ev_run(loop, 0); /* until on_response or on_tick calls ev_break */

    rc = server_ev.failed || client_ev.failed;
    for (i = 0; i < 3; i++) {
        int64_t want = calls[i].a + calls[i].b;
        printf("%s(%lld, %lld) = %lld\n", calls[i].method, (long long)calls[i].a, (long long)calls[i].b,
               (long long)calls[i].result);
        if (!calls[i].done || calls[i].result != want) {
            fprintf(stderr, "%s: got %lld, want %lld\n", calls[i].method, (long long)calls[i].result, (long long)want);
            rc = 1;
        }
    }
    printf("the host's own timer ticked %lu times meanwhile\n", ticks);

    /* Tear down: stop the watchers before the contexts close the fds they watch. */
    ev_timer_stop(loop, &tick);
    ev_joint_detach(loop, &client_ev);
    ev_joint_detach(loop, &server_ev);
    ev_loop_destroy(loop);
    joint_conn_free(conn);
    joint_ctx_free(client);
    for (i = 0; i < srv.nworkers; i++)
        pthread_join(srv.workers[i], NULL);
    joint_ctx_free(srv.ctx);
    joint_listener_free(listener);
    if (rc == 0)
        printf("libev_loop: ok\n");
    return rc;
}
