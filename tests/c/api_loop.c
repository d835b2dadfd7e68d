/* api_loop: the event-loop contract of joint_ctx_fd / joint_ctx_timeout_ms /
 * joint_ctx_process / joint_ctx_wakeup (docs/c-api-conventions.md G1-G6):
 *   - the fd is valid, close-on-exec, and never changes;
 *   - an idle context: timeout -1, fd not readable, process is cheap (spurious wake-ups are
 *     harmless);
 *   - timers: the timeout is rounded up (never 0 before the deadline, so a host never spins
 *     or fires early), 0 once due, -1 again after the timer ran;
 *   - joint_ctx_wakeup from another thread makes the fd readable;
 *   - a call made outside process makes the fd readable (G6), and a call's timeout shows in
 *     joint_ctx_timeout_ms;
 *   - joint_ctx_wait sleeps until the next timer. */
#include "testutil.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

static int readable(joint_ctx *ctx, int wait_ms)
{
    struct pollfd pfd;
    pfd.fd = joint_ctx_fd(ctx);
    pfd.events = POLLIN;
    pfd.revents = 0;
    return poll(&pfd, 1, wait_ms) == 1 && (pfd.revents & POLLIN);
}

static int fired;
static void on_timer(joint_ctx *ctx, void *user_data)
{
    (void)ctx, (void)user_data;
    fired++;
}

static void *wake_later(void *arg)
{
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
    CHECK_OK(joint_ctx_wakeup(arg));
    return NULL;
}

int main(void)
{
    joint_ctx *ctx;
    joint_listener *listener;
    joint_conn *conn;
    int fd, i, flags;
    int64_t start, elapsed;
    int32_t ms;
    pthread_t thread;

    CHECK_OK(joint_ctx_new(NULL, &ctx));
    fd = joint_ctx_fd(ctx);
    CHECK(fd >= 0);
    flags = fcntl(fd, F_GETFD);
    CHECK(flags >= 0 && (flags & FD_CLOEXEC));

    /* idle */
    CHECK(joint_ctx_timeout_ms(ctx) == -1);
    CHECK_OK(joint_ctx_process(ctx));
    CHECK(!readable(ctx, 0));
    start = tu_now_ms();
    for (i = 0; i < 10000; i++)
        CHECK_OK(joint_ctx_process(ctx)); /* spurious: harmless and cheap */
    elapsed = tu_now_ms() - start;
    printf("10000 idle joint_ctx_process calls: %lld ms\n", (long long)elapsed);
    CHECK(elapsed < 2000);
    CHECK(joint_ctx_timeout_ms(ctx) == -1);

    /* a 0 ms timer is due at once */
    CHECK_OK(joint_ctx_add_timer(ctx, 0, on_timer, NULL, NULL, NULL));
    CHECK(joint_ctx_timeout_ms(ctx) == 0);
    CHECK_OK(joint_ctx_process(ctx));
    CHECK(fired == 1);
    CHECK(joint_ctx_timeout_ms(ctx) == -1);

    /* a 30 ms timer: the timeout counts down, rounded up, and reaches 0 only when due */
    start = tu_now_ms();
    CHECK_OK(joint_ctx_add_timer(ctx, 30, on_timer, NULL, NULL, NULL));
    ms = joint_ctx_timeout_ms(ctx);
    CHECK(ms >= 1 && ms <= 30);
    while ((ms = joint_ctx_timeout_ms(ctx)) > 0) {
        CHECK(ms <= 30);
        CHECK(tu_now_ms() - start <= 30 + 1000);
    }
    elapsed = tu_now_ms() - start;
    printf("30 ms timer: timeout reached 0 after %lld ms\n", (long long)elapsed);
    CHECK(elapsed >= 29); /* CLOCK_MONOTONIC ms truncation allows 1 ms of slack */
    CHECK(fired == 1);    /* nothing runs outside process */
    CHECK_OK(joint_ctx_process(ctx));
    CHECK(fired == 2);
    CHECK(joint_ctx_timeout_ms(ctx) == -1);

    /* joint_ctx_wait honours the timer: it sleeps about as long as the timer says */
    start = tu_now_ms();
    CHECK_OK(joint_ctx_add_timer(ctx, 40, on_timer, NULL, NULL, NULL));
    while (fired < 3)
        CHECK_OK(joint_ctx_wait(ctx, -1));
    elapsed = tu_now_ms() - start;
    CHECK(elapsed >= 39 && elapsed < 2000);

    /* the fd is the same object throughout */
    CHECK(joint_ctx_fd(ctx) == fd);

    /* wakeup from another thread */
    CHECK(!readable(ctx, 0));
    CHECK(pthread_create(&thread, NULL, wake_later, ctx) == 0);
    CHECK(readable(ctx, 5000));
    pthread_join(thread, NULL);
    CHECK_OK(joint_ctx_process(ctx));
    CHECK(!readable(ctx, 0));

    /* G6: a call made outside process needs process to run: the fd says so */
    CHECK_OK(joint_ctx_listen(ctx, "tcp://127.0.0.1:0", &listener));
    CHECK_OK(joint_ctx_connect(ctx, joint_listener_uri(listener), &conn));
    for (i = 0; i < 20; i++)
        CHECK_OK(joint_ctx_wait(ctx, 5));
    CHECK(!readable(ctx, 0));
    CHECK_OK(joint_conn_call(conn, "nothing", NULL, 0, 200, NULL, NULL, NULL));
    CHECK(readable(ctx, 1000));
    ms = joint_ctx_timeout_ms(ctx);
    CHECK(ms >= 0 && ms <= 200); /* the call's deadline */
    for (i = 0; i < 20; i++)
        CHECK_OK(joint_ctx_wait(ctx, 5));
    /* Answered (no such method). The call's deadline may linger as a stale entry (joint's
     * timer heap deletes lazily), and the keepalive pass armed while the call waited (a
     * quarter of the 30 s keepalive) is still due: each at worst wakes the host once for
     * nothing, and nothing is armed again after it. */
    ms = joint_ctx_timeout_ms(ctx);
    CHECK(ms == -1 || ms <= 7500);
    /* With the keepalive off, only the call's deadline can be left. */
    {
        joint_config *config;
        joint_ctx *quiet;
        joint_listener *l;
        joint_conn *c;
        CHECK_OK(joint_config_new(&config));
        CHECK_OK(joint_config_set_keepalive_ms(config, -1, -1));
        CHECK_OK(joint_ctx_new(config, &quiet));
        joint_config_free(config);
        CHECK_OK(joint_ctx_listen(quiet, "tcp://127.0.0.1:0", &l));
        CHECK_OK(joint_ctx_connect(quiet, joint_listener_uri(l), &c));
        CHECK_OK(joint_conn_call(c, "nothing", NULL, 0, 200, NULL, NULL, NULL));
        for (i = 0; i < 20; i++)
            CHECK_OK(joint_ctx_wait(quiet, 5));
        ms = joint_ctx_timeout_ms(quiet);
        CHECK(ms == -1 || ms <= 200);
        joint_conn_free(c);
        joint_listener_free(l);
        joint_ctx_free(quiet);
    }

    CHECK(joint_ctx_fd(ctx) == fd);
    joint_conn_free(conn);
    joint_ctx_free(ctx);
    joint_listener_free(listener);
    printf("api_loop: ok\n");
    return 0;
}
