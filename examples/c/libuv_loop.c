/* libuv_loop.c — joint on a libuv loop.
 *
 * One process, two joint contexts (a server, and a client connected to it over TCP on the
 * loopback interface), both driven by one libuv loop that also runs a timer of its own.
 * Each context needs exactly two libuv handles:
 *
 *   uv_poll_t   on joint_ctx_fd(), for UV_READABLE;
 *   uv_timer_t  re-armed from joint_ctx_timeout_ms() after every joint_ctx_process().
 *
 * The server answers
 *   add(a, b)             in the handler;
 *   add_later(a, b)       later, from a joint timer (joint_ctx_add_timer);
 *   add_in_thread(a, b)   on libuv's thread pool (uv_queue_work): joint_request_reply() may be
 *                         called from any thread, and joint wakes the loop to send the answer.
 * The client calls each once, checks the sums, and the program exits 0.
 *
 * Build: cc -std=c99 libuv_loop.c $(pkg-config --cflags --libs libuv) -ljoint
 */
#define _POSIX_C_SOURCE 200809L

#include <joint.h>
#include <uv.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define TICK_MS 10
#define DEADLINE_TICKS 1000 /* 10 s */

/* ---- The adapter: one joint context on a libuv loop ------------------------------------ */

struct uv_joint {
    joint_ctx *ctx;
    uv_poll_t poll;   /* the context's fd is readable: there is work */
    uv_timer_t timer; /* the context's next deadline */
    int failed;
};

static void uv_joint_drive(struct uv_joint *a);

static void on_joint_readable(uv_poll_t *handle, int status, int events)
{
    (void)status; /* an error here means the fd is unusable; process() will say so */
    (void)events;
    uv_joint_drive(handle->data);
}

static void on_joint_timer(uv_timer_t *handle)
{
    uv_joint_drive(handle->data);
}

/* Re-arm the timer from the context's deadline: -1 none, 0 now (libuv then runs the timer
 * on the next loop iteration), otherwise milliseconds, already rounded up by joint. */
static void uv_joint_arm(struct uv_joint *a)
{
    int32_t ms = joint_ctx_timeout_ms(a->ctx);
    if (ms < 0)
        uv_timer_stop(&a->timer);
    else
        uv_timer_start(&a->timer, on_joint_timer, (uint64_t)ms, 0);
}

/* Run joint's ready work (callbacks run in here), then ask for the next deadline. */
static void uv_joint_drive(struct uv_joint *a)
{
    joint_status st = joint_ctx_process(a->ctx);
    if (st != JOINT_OK) {
        fprintf(stderr, "joint_ctx_process: %s (%s)\n", joint_status_str(st), joint_ctx_last_error(a->ctx));
        a->failed = 1;
        uv_stop(a->poll.loop);
        return;
    }
    uv_joint_arm(a);
}

static int uv_joint_attach(uv_loop_t *loop, struct uv_joint *a, joint_ctx *ctx)
{
    int err;
    a->ctx = ctx;
    a->failed = 0;
    if ((err = uv_poll_init(loop, &a->poll, joint_ctx_fd(ctx))) != 0)
        return err;
    uv_timer_init(loop, &a->timer);
    a->poll.data = a;
    a->timer.data = a;
    if ((err = uv_poll_start(&a->poll, UV_READABLE, on_joint_readable)) != 0)
        return err;
    uv_joint_arm(a);
    return 0;
}

/* Close both handles. The context must outlive them: free it only after the loop has run
 * the close callbacks (uv_run once more), since the poll handle watches the context's fd. */
static void uv_joint_detach(struct uv_joint *a)
{
    uv_close((uv_handle_t *)&a->poll, NULL);
    uv_close((uv_handle_t *)&a->timer, NULL);
}

/* ---- Server ------------------------------------------------------------------------- */

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

/* Deferred reply from a joint timer; the timer's user data owns the request meanwhile. */
struct deferred {
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
    joint_ctx *ctx = user_data;
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
    if (joint_ctx_add_timer(ctx, 20, deferred_fire, d, deferred_free, NULL) != JOINT_OK) {
        joint_request_reply_error_msg(req, JOINT_RPC_HANDLER_FAILED, "no timer");
        free(d);
    }
}

/* Reply from libuv's thread pool. */
struct job {
    uv_work_t work;
    joint_request *req;
    int64_t a, b;
};

static void job_run(uv_work_t *work) /* on a pool thread */
{
    struct job *job = work->data;
    uv_sleep(10); /* pretend to work */
    reply_int(job->req, job->a + job->b);
}

static void job_done(uv_work_t *work, int status) /* back on the loop thread */
{
    (void)status;
    free(work->data);
}

static void handle_add_in_thread(joint_request *req, void *user_data)
{
    uv_loop_t *loop = user_data;
    struct job *job;
    int64_t a, b;

    if (read_two_ints(req, &a, &b) != 0)
        return;
    if (!(job = malloc(sizeof *job))) {
        joint_request_free(req);
        return;
    }
    job->req = req;
    job->a = a;
    job->b = b;
    job->work.data = job;
    if (uv_queue_work(loop, &job->work, job_run, job_done) != 0) {
        joint_request_reply_error_msg(req, JOINT_RPC_HANDLER_FAILED, "cannot queue work");
        free(job);
    }
}

/* ---- Client ------------------------------------------------------------------------- */

struct call {
    const char *method;
    int64_t a, b;
    int64_t result;
    int done;
};

static int calls_left = 3;

static void on_response(joint_conn *conn, const joint_response *resp, void *user_data)
{
    struct call *c = user_data;
    joint_status st = joint_response_status(resp);
    const uint8_t *data;
    size_t len;
    joint_reader *r;
    (void)conn;

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
    if (--calls_left == 0)
        uv_stop(uv_default_loop()); /* all answered: leave uv_run */
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

static void on_tick(uv_timer_t *handle)
{
    if (++ticks == DEADLINE_TICKS) {
        fprintf(stderr, "timed out waiting for the calls\n");
        uv_stop(handle->loop);
    }
}

int main(void)
{
    uv_loop_t *loop = uv_default_loop();
    struct uv_joint server_uv, client_uv;
    struct call calls[3] = {
        {"add", 1, 2, 0, 0},
        {"add_later", 3, 4, 0, 0},
        {"add_in_thread", 5, 6, 0, 0},
    };
    joint_ctx *server = NULL, *client = NULL;
    joint_listener *listener;
    joint_conn *conn = NULL;
    uv_timer_t tick;
    int rc = 1, i;

    if (joint_ctx_new(NULL, &server) != JOINT_OK || joint_ctx_new(NULL, &client) != JOINT_OK)
        return 1;
    joint_ctx_register(server, "add", handle_add, NULL, NULL);
    joint_ctx_register(server, "add_later", handle_add_later, server, NULL);
    joint_ctx_register(server, "add_in_thread", handle_add_in_thread, loop, NULL);
    if (joint_ctx_listen(server, "tcp://127.0.0.1:0", &listener) != JOINT_OK ||
        joint_ctx_connect(client, joint_listener_uri(listener), &conn) != JOINT_OK) {
        fprintf(stderr, "listen/connect: %s %s\n", joint_ctx_last_error(server), joint_ctx_last_error(client));
        joint_ctx_free(client);
        joint_ctx_free(server);
        return 1;
    }
    /* Calls made before the loop runs are queued; they go out once the connection is up. */
    for (i = 0; i < 3; i++) {
        if (start_call(conn, &calls[i]) != JOINT_OK) {
            fprintf(stderr, "call %s: %s\n", calls[i].method, joint_ctx_last_error(client));
            return 1;
        }
    }

    if (uv_joint_attach(loop, &server_uv, server) != 0 || uv_joint_attach(loop, &client_uv, client) != 0) {
        fprintf(stderr, "uv_poll_init failed\n");
        return 1;
    }
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, TICK_MS, TICK_MS);

    uv_run(loop, UV_RUN_DEFAULT); /* until on_response or on_tick calls uv_stop */

    rc = server_uv.failed || client_uv.failed;
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

    /* Tear down: close the handles, let libuv finish closing them (this also waits for
     * queued work), and only then free the contexts whose fds the handles watched. */
    joint_conn_free(conn);
    uv_joint_detach(&client_uv);
    uv_joint_detach(&server_uv);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_close(loop) != 0) {
        fprintf(stderr, "uv_loop_close: handles left open\n");
        rc = 1;
    }
    joint_ctx_free(client);
    joint_ctx_free(server);
    joint_listener_free(listener);
    if (rc == 0)
        printf("libuv_loop: ok\n");
    return rc;
}
