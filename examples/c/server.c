/* server.c — a MessagePack-RPC server driven by joint_ctx_wait().
 *
 *   server URI            URI: tcp://127.0.0.1:0 (0 picks a free port), tcp://[::1]:7000,
 *                              unix:///tmp/joint.sock
 *
 * Methods:
 *   add(a, b)   -> a + b          two integers
 *   echo(x)     -> x              any value, returned as sent
 *   sleep(ms)   -> ms             answers after `ms` milliseconds (a deferred reply: the
 *                                 request is kept and answered later from a timer)
 * Notifications:
 *   shutdown                      stop serving and exit 0
 *   anything else                 printed as "notification METHOD (N params)"
 *
 * The first line on stdout is "listening on URI" with the real address (the port the
 * system picked). SIGINT and SIGTERM also stop the server cleanly.
 *
 * Build: cc -std=c99 server.c -ljoint
 */
#define _POSIX_C_SOURCE 200809L /* sigaction */

#include <joint.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Everything the handlers need, passed to them as user_data. */
struct server {
    joint_ctx *ctx;
    volatile sig_atomic_t stop; /* set by the "shutdown" notification or a signal */
};

/* The signal handler needs the context to wake the loop up. */
static struct server *g_server;

static void on_signal(int signo)
{
    (void)signo;
    g_server->stop = 1;
    /* joint_ctx_wakeup() only writes to an eventfd, so it may be called from a signal
     * handler: joint_ctx_wait() returns and the loop sees `stop`. */
    joint_ctx_wakeup(g_server->ctx);
}

/* Reply with one encoded MessagePack value built by `w`. joint_request_reply() consumes
 * the request whatever it returns. */
static void reply_with(joint_request *req, joint_writer *w)
{
    const uint8_t *data;
    size_t len;
    if (joint_writer_data(w, &data, &len) == JOINT_OK)
        joint_request_reply(req, data, len);
    else
        joint_request_reply_error_msg(req, JOINT_RPC_HANDLER_FAILED, "encoding failed");
}

static void reply_int(joint_request *req, int64_t value)
{
    joint_writer *w;
    if (joint_writer_new(&w) != JOINT_OK) {
        joint_request_free(req); /* the peer gets a JOINT_RPC_NOT_ANSWERED error */
        return;
    }
    joint_write_int(w, value);
    reply_with(req, w);
    joint_writer_free(w);
}

/* Open a reader on the request's params (always one MessagePack array) and read the array
 * header. Returns the element count, or -1 (and answers the request) on failure. */
static long open_params(joint_request *req, joint_reader **reader_out)
{
    const uint8_t *params;
    size_t len;
    uint32_t count;
    joint_reader *r;

    if (joint_request_params(req, &params, &len) != JOINT_OK || joint_reader_new(params, len, &r) != JOINT_OK) {
        joint_request_free(req);
        return -1;
    }
    if (joint_read_array(r, &count) != JOINT_OK) {
        joint_reader_free(r);
        joint_request_reply_error_msg(req, JOINT_RPC_INVALID_PARAMS, "params must be an array");
        return -1;
    }
    *reader_out = r;
    return (long)count;
}

/* add(a, b): both integers; the sum must fit in int64. */
static void handle_add(joint_request *req, void *user_data)
{
    joint_reader *r = NULL;
    int64_t a, b;
    long n = open_params(req, &r);
    (void)user_data;

    if (n < 0)
        return; /* already answered */
    if (n != 2 || joint_read_int(r, &a) != JOINT_OK || joint_read_int(r, &b) != JOINT_OK) {
        joint_reader_free(r);
        joint_request_reply_error_msg(req, JOINT_RPC_INVALID_PARAMS, "add expects two integers");
        return;
    }
    joint_reader_free(r);
    if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b)) {
        joint_request_reply_error_msg(req, JOINT_RPC_INVALID_PARAMS, "add: integer overflow");
        return;
    }
    reply_int(req, a + b);
}

/* echo(x): answer with the argument's encoded bytes, whatever its type. */
static void handle_echo(joint_request *req, void *user_data)
{
    joint_reader *r = NULL;
    const uint8_t *value;
    size_t len;
    long n = open_params(req, &r);
    (void)user_data;

    if (n < 0)
        return; /* already answered */
    if (n != 1 || joint_read_raw(r, &value, &len) != JOINT_OK) {
        joint_reader_free(r);
        joint_request_reply_error_msg(req, JOINT_RPC_INVALID_PARAMS, "echo expects one argument");
        return;
    }
    /* `value` points into the request's params, which stay valid until the request is
     * consumed, so it can be passed straight to the reply (which copies it). */
    joint_request_reply(req, value, len);
    joint_reader_free(r);
}

/* sleep(ms): keep the request and answer it from a timer. The timer's user data owns the
 * request until it is answered: if the timer never fires (the context is freed first), the
 * free function still releases it, and the peer gets an error instead of waiting forever. */
struct pending_sleep {
    joint_request *req;
    int64_t ms;
};

static void sleep_done(joint_ctx *ctx, void *user_data)
{
    struct pending_sleep *p = user_data;
    (void)ctx;
    reply_int(p->req, p->ms);
    p->req = NULL; /* consumed by the reply */
}

static void sleep_free(void *user_data) /* runs after sleep_done, or on cancel/ctx free */
{
    struct pending_sleep *p = user_data;
    joint_request_free(p->req); /* NULL (already answered) is a no-op */
    free(p);
}

static void handle_sleep(joint_request *req, void *user_data)
{
    struct server *srv = user_data;
    struct pending_sleep *p;
    joint_reader *r = NULL;
    int64_t ms;
    long n = open_params(req, &r);

    if (n < 0)
        return; /* already answered */
    if (n != 1 || joint_read_int(r, &ms) != JOINT_OK || ms < 0 || ms > 60000) {
        joint_reader_free(r);
        joint_request_reply_error_msg(req, JOINT_RPC_INVALID_PARAMS, "sleep expects 0..60000 ms");
        return;
    }
    joint_reader_free(r);

    p = malloc(sizeof *p);
    if (!p) {
        joint_request_reply_error_msg(req, JOINT_RPC_HANDLER_FAILED, "out of memory");
        return;
    }
    p->req = req;
    p->ms = ms;
    /* A call that fails never runs its callbacks (neither sleep_done nor sleep_free), so
     * on failure the request is still ours to answer. */
    if (joint_ctx_add_timer(srv->ctx, (uint32_t)ms, sleep_done, p, sleep_free, NULL) != JOINT_OK) {
        joint_request_reply_error_msg(req, JOINT_RPC_HANDLER_FAILED, "cannot start a timer");
        free(p);
    }
}

/* Notifications: method and params are borrowed for the duration of the call, and the
 * method name is not NUL-terminated. */
static void on_notification(joint_conn *conn, const uint8_t *method, size_t method_len,
                            const uint8_t *params, size_t params_len, void *user_data)
{
    struct server *srv = user_data;
    joint_reader *r;
    uint32_t count = 0;
    (void)conn;

    if (method_len == strlen("shutdown") && memcmp(method, "shutdown", method_len) == 0) {
        srv->stop = 1;
        return;
    }
    if (joint_reader_new(params, params_len, &r) == JOINT_OK) {
        joint_read_array(r, &count); /* count stays 0 if params are not an array */
        joint_reader_free(r);
    }
    printf("notification %.*s (%u params)\n", (int)method_len, (const char *)method, (unsigned)count);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct server srv = {0};
    joint_listener *listener;
    joint_status st;
    struct sigaction sa;

    if (argc != 2) {
        fprintf(stderr, "usage: %s URI   (e.g. tcp://127.0.0.1:0)\n", argv[0]);
        return 2;
    }

    if ((st = joint_ctx_new(NULL, &srv.ctx)) != JOINT_OK) {
        fprintf(stderr, "joint_ctx_new: %s\n", joint_status_str(st));
        return 1;
    }
    g_server = &srv;

    /* Handlers are registered on the context and serve every connection it accepts. */
    if (joint_ctx_register(srv.ctx, "add", handle_add, NULL, NULL) != JOINT_OK ||
        joint_ctx_register(srv.ctx, "echo", handle_echo, NULL, NULL) != JOINT_OK ||
        joint_ctx_register(srv.ctx, "sleep", handle_sleep, &srv, NULL) != JOINT_OK ||
        joint_ctx_set_notification_cb(srv.ctx, on_notification, &srv, NULL) != JOINT_OK) {
        fprintf(stderr, "registration failed: %s\n", joint_ctx_last_error(srv.ctx));
        joint_ctx_free(srv.ctx);
        return 1;
    }

    if ((st = joint_ctx_listen(srv.ctx, argv[1], &listener)) != JOINT_OK) {
        fprintf(stderr, "listen %s: %s (%s)\n", argv[1], joint_status_str(st), joint_ctx_last_error(srv.ctx));
        joint_ctx_free(srv.ctx);
        return 1;
    }

    /* No SA_RESTART: a signal also interrupts the wait, which joint treats as a wake-up. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* Whoever started us reads this line to learn the address. */
    printf("listening on %s\n", joint_listener_uri(listener));
    fflush(stdout);

    /* The whole event loop: sleep until there is work (or the next timer is due), run it. */
    while (!srv.stop) {
        st = joint_ctx_wait(srv.ctx, -1);
        if (st != JOINT_OK) {
            fprintf(stderr, "joint_ctx_wait: %s (%s)\n", joint_status_str(st), joint_ctx_last_error(srv.ctx));
            break;
        }
    }

    /* Frees the listener and every connection; pending sleep timers run sleep_free. */
    joint_ctx_free(srv.ctx);
    joint_listener_free(listener);
    return st == JOINT_OK ? 0 : 1;
}
