/* epoll_loop.c — joint inside a hand-written epoll loop.
 *
 * One process, two joint contexts: a server, and a client connected to it over TCP on the
 * loopback interface. The program's own epoll loop watches both contexts' fds next to a
 * timerfd of its own (standing for whatever else the host program does), and shows the
 * three ways a server can answer a request:
 *
 *   add(a, b)             in the handler itself;
 *   add_later(a, b)       later on the loop thread, from a timer (joint_ctx_add_timer);
 *   add_in_thread(a, b)   from a worker thread (joint_request_reply is thread-safe).
 *
 * The client calls each once, checks the sums, and the program exits 0.
 *
 * The integration contract (joint.h): watch joint_ctx_fd() for readability, call
 * joint_ctx_process() when it is readable or when joint_ctx_timeout_ms() has elapsed, and
 * query the timeout again after every joint_ctx_process().
 *
 * Build: cc -std=c99 epoll_loop.c -ljoint -lpthread     (Linux)
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */

#include <joint.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 10        /* period of the host's own timer */
#define DEADLINE_MS 10000 /* give up if the calls have not completed by then */
#define MAX_WORKERS 8

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Server side ------------------------------------------------------------------- */

struct server {
    joint_ctx *ctx;
    pthread_t workers[MAX_WORKERS]; /* joined before exit */
    int nworkers;
};

/* Encode `value` and answer `req` with it. Safe on any thread: the writer is local and
 * joint_request_reply() may be called from any thread. Consumes `req`. */
static void reply_int(joint_request *req, int64_t value)
{
    joint_writer *w;
    const uint8_t *data;
    size_t len;

    if (joint_writer_new(&w) != JOINT_OK) {
        joint_request_free(req); /* the peer gets an error rather than no answer */
        return;
    }
    joint_write_int(w, value);
    joint_writer_data(w, &data, &len);
    joint_request_reply(req, data, len);
    joint_writer_free(w);
}

/* Read params [a, b]. On failure answer the request with an error and return -1. Params
 * are borrowed from the request, so read them on the thread that received it. */
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

/* 1. Answer at once. */
static void handle_add(joint_request *req, void *user_data)
{
    int64_t a, b;
    (void)user_data;
    if (read_two_ints(req, &a, &b) == 0)
        reply_int(req, a + b);
}

/* 2. Answer from a timer. The timer's user data owns the request until the reply; its free
 * function releases the request if the timer never fires (context freed first). */
struct deferred {
    joint_request *req;
    int64_t sum;
};

static void deferred_fire(joint_ctx *ctx, void *user_data)
{
    struct deferred *d = user_data;
    (void)ctx;
    reply_int(d->req, d->sum);
    d->req = NULL; /* consumed */
}

static void deferred_free(void *user_data) /* after deferred_fire, or on cancel/free */
{
    struct deferred *d = user_data;
    joint_request_free(d->req); /* no-op when already answered (NULL) */
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

/* 3. Answer from another thread. The worker gets everything it needs up front; it touches
 * no joint object but the request, which it consumes with joint_request_reply(). joint
 * wakes the server's fd so the loop sends the answer. */
struct job {
    joint_request *req;
    int64_t a, b;
};

static void *worker(void *arg)
{
    struct job *job = arg;
    struct timespec pause = {0, 10 * 1000 * 1000}; /* pretend to work for 10 ms */
    nanosleep(&pause, NULL);
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

/* ---- Client side ------------------------------------------------------------------- */

struct call {
    const char *method;
    int64_t a, b;
    int64_t result;
    int done; /* the response callback ran (exactly once per call) */
};

static void on_response(joint_conn *conn, const joint_response *resp, void *user_data)
{
    struct call *c = user_data;
    joint_status st = joint_response_status(resp);
    const uint8_t *data;
    size_t len;
    joint_reader *r;
    (void)conn;

    c->done = 1;
    if (st != JOINT_OK) {
        fprintf(stderr, "%s failed: %s: %s\n", c->method, joint_status_str(st), joint_response_message(resp));
        return;
    }
    /* The result is borrowed until this callback returns: read it now. */
    joint_response_result(resp, &data, &len);
    if (joint_reader_new(data, len, &r) == JOINT_OK) {
        joint_read_int(r, &c->result);
        joint_reader_free(r);
    }
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
    /* Non-blocking: on_response runs later, inside joint_ctx_process(). */
    st = joint_conn_call(conn, c->method, params, len, 5000, on_response, c, NULL);
    joint_writer_free(w);
    return st;
}

/* ---- The host loop ------------------------------------------------------------------- */

/* A context in the loop: `due` is when it must be processed even if its fd stays quiet
 * (monotonic ms, -1 for never). */
struct watched {
    const char *name;
    joint_ctx *ctx;
    int64_t due;
};

/* Process a context and re-read its deadline, as the contract requires. */
static int process(struct watched *w)
{
    joint_status st = joint_ctx_process(w->ctx);
    int32_t ms;
    if (st != JOINT_OK) {
        fprintf(stderr, "%s: joint_ctx_process: %s (%s)\n", w->name, joint_status_str(st), joint_ctx_last_error(w->ctx));
        return -1;
    }
    ms = joint_ctx_timeout_ms(w->ctx);
    w->due = ms < 0 ? -1 : now_ms() + ms;
    return 0;
}

enum { SERVER, CLIENT, TICK }; /* epoll_event.data.u32 */

int main(void)
{
    struct server srv = {0};
    struct watched watched[2] = {{"server", NULL, -1}, {"client", NULL, -1}};
    struct call calls[3] = {
        {"add", 1, 2, 0, 0},
        {"add_later", 3, 4, 0, 0},
        {"add_in_thread", 5, 6, 0, 0},
    };
    joint_ctx *client = NULL;
    joint_listener *listener;
    joint_conn *conn = NULL;
    struct itimerspec tick_spec = {{0, TICK_MS * 1000000}, {0, TICK_MS * 1000000}};
    struct epoll_event ev;
    int ep = -1, tick = -1, rc = 1, i;
    unsigned long ticks = 0;
    int64_t deadline = now_ms() + DEADLINE_MS;

    /* Server: three methods, listening on a free port. */
    if (joint_ctx_new(NULL, &srv.ctx) != JOINT_OK)
        return 1;
    joint_ctx_register(srv.ctx, "add", handle_add, &srv, NULL);
    joint_ctx_register(srv.ctx, "add_later", handle_add_later, &srv, NULL);
    joint_ctx_register(srv.ctx, "add_in_thread", handle_add_in_thread, &srv, NULL);
    if (joint_ctx_listen(srv.ctx, "tcp://127.0.0.1:0", &listener) != JOINT_OK) {
        fprintf(stderr, "listen: %s\n", joint_ctx_last_error(srv.ctx));
        goto out;
    }

    /* Client: a second context, connected to the server. Calls can be made right away;
     * they go out once the connection is up. */
    if (joint_ctx_new(NULL, &client) != JOINT_OK ||
        joint_ctx_connect(client, joint_listener_uri(listener), &conn) != JOINT_OK) {
        fprintf(stderr, "connect: %s\n", client ? joint_ctx_last_error(client) : "no context");
        goto out;
    }
    for (i = 0; i < 3; i++) {
        if (start_call(conn, &calls[i]) != JOINT_OK) {
            fprintf(stderr, "call %s: %s\n", calls[i].method, joint_ctx_last_error(client));
            goto out;
        }
    }
    watched[SERVER].ctx = srv.ctx;
    watched[CLIENT].ctx = client;

    /* The epoll set: both context fds (readable = "call joint_ctx_process") and our own
     * timerfd. Level-triggered EPOLLIN is all joint needs. */
    ep = epoll_create1(EPOLL_CLOEXEC);
    tick = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ep < 0 || tick < 0 || timerfd_settime(tick, 0, &tick_spec, NULL) < 0) {
        perror("epoll/timerfd");
        goto out;
    }
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.u32 = SERVER;
    epoll_ctl(ep, EPOLL_CTL_ADD, joint_ctx_fd(srv.ctx), &ev);
    ev.data.u32 = CLIENT;
    epoll_ctl(ep, EPOLL_CTL_ADD, joint_ctx_fd(client), &ev);
    ev.data.u32 = TICK;
    epoll_ctl(ep, EPOLL_CTL_ADD, tick, &ev);

    /* Initial deadlines (nothing has been processed yet). */
    for (i = 0; i < 2; i++) {
        int32_t ms = joint_ctx_timeout_ms(watched[i].ctx);
        watched[i].due = ms < 0 ? -1 : now_ms() + ms;
    }

    while (!(calls[0].done && calls[1].done && calls[2].done)) {
        struct epoll_event events[8];
        int64_t now = now_ms();
        int timeout = -1, n;

        if (now >= deadline) {
            fprintf(stderr, "timed out waiting for the calls\n");
            goto out;
        }
        /* Sleep until the earliest joint deadline (our timerfd wakes us anyway). */
        for (i = 0; i < 2; i++) {
            if (watched[i].due >= 0) {
                int64_t left = watched[i].due > now ? watched[i].due - now : 0;
                if (timeout < 0 || left < timeout)
                    timeout = (int)left;
            }
        }

        n = epoll_wait(ep, events, 8, timeout);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            goto out;
        }
        for (i = 0; i < n; i++) {
            uint32_t what = events[i].data.u32;
            if (what == TICK) {
                uint64_t expirations;
                if (read(tick, &expirations, sizeof expirations) == (ssize_t)sizeof expirations)
                    ticks += expirations; /* the host's own periodic work would go here */
            } else if (process(&watched[what]) != 0) {
                goto out;
            }
        }
        /* Contexts whose deadline passed without their fd becoming readable. */
        now = now_ms();
        for (i = 0; i < 2; i++)
            if (watched[i].due >= 0 && now >= watched[i].due && process(&watched[i]) != 0)
                goto out;
    }

    rc = 0;
    for (i = 0; i < 3; i++) {
        int64_t want = calls[i].a + calls[i].b;
        printf("%s(%lld, %lld) = %lld\n", calls[i].method, (long long)calls[i].a, (long long)calls[i].b,
               (long long)calls[i].result);
        if (calls[i].result != want) {
            fprintf(stderr, "%s: got %lld, want %lld\n", calls[i].method, (long long)calls[i].result, (long long)want);
            rc = 1;
        }
    }
    printf("the host's timerfd ticked %lu times meanwhile\n", ticks);
    if (ticks == 0) { /* add_later alone takes 20 ms: the tick must have fired */
        fprintf(stderr, "the host's own fd was starved\n");
        rc = 1;
    }

out:
    /* Take the fds out of the epoll set before the contexts close them. */
    if (ep >= 0) {
        if (client)
            epoll_ctl(ep, EPOLL_CTL_DEL, joint_ctx_fd(client), NULL);
        epoll_ctl(ep, EPOLL_CTL_DEL, joint_ctx_fd(srv.ctx), NULL);
        close(ep);
    }
    if (tick >= 0)
        close(tick);
    joint_conn_free(conn);
    joint_ctx_free(client);
    for (i = 0; i < srv.nworkers; i++)
        pthread_join(srv.workers[i], NULL);
    joint_ctx_free(srv.ctx);
    joint_listener_free(listener);
    if (rc == 0)
        printf("epoll_loop: ok\n");
    return rc;
}
