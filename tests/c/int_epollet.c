/* int_epollet: a host that registers joint_ctx_fd with EPOLLET (edge-triggered) still gets
 * every piece of work done (G2).
 *
 * An edge-triggered host only hears about *new* readiness. If joint_ctx_process stopped
 * early (its 1 MiB per-connection read budget, output still queued) without signalling
 * itself again, such a host would sleep forever with work pending. So: a client context
 * pipelines many echo calls with 4 KiB payloads (8 MiB each way, far beyond one budget) to
 * a server context, both fds in one EPOLLET epoll set. The loop processes a context only
 * when its fd reports an edge (or its joint deadline passes, none here); if epoll_wait
 * stays silent for STALL_MS while calls are outstanding, a wake-up was lost: fail. */
#include "testutil.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#define CALLS 2000
#define PAYLOAD 4096
#define STALL_MS 3000

static int completed, mismatches;

static void echo(joint_request *req, void *user_data)
{
    const uint8_t *params, *value;
    size_t len, value_len;
    joint_reader *r;
    uint32_t n;
    (void)user_data;
    CHECK_OK(joint_request_params(req, &params, &len));
    CHECK_OK(joint_reader_new(params, len, &r));
    CHECK_OK(joint_read_array(r, &n));
    CHECK(n == 1);
    CHECK_OK(joint_read_raw(r, &value, &value_len));
    CHECK_OK(joint_request_reply(req, value, value_len));
    joint_reader_free(r);
}

static void on_response(joint_conn *conn, const joint_response *resp, void *user_data)
{
    uintptr_t i = (uintptr_t)user_data;
    const uint8_t *data, *bin;
    size_t len, bin_len, k;
    joint_reader *r;
    (void)conn;
    completed++;
    CHECK_OK(joint_response_status(resp));
    CHECK_OK(joint_response_result(resp, &data, &len));
    CHECK_OK(joint_reader_new(data, len, &r));
    CHECK_OK(joint_read_bin(r, &bin, &bin_len));
    if (bin_len != PAYLOAD)
        mismatches++;
    for (k = 0; k < bin_len; k++) {
        if (bin[k] != (uint8_t)(i + k)) {
            mismatches++;
            break;
        }
    }
    joint_reader_free(r);
}

int main(void)
{
    joint_ctx *ctx[2]; /* 0: server, 1: client */
    joint_listener *listener;
    joint_conn *conn;
    joint_writer *w;
    uint8_t payload[PAYLOAD];
    struct epoll_event ev, events[4];
    int ep, i, k;
    long processed[2] = {0, 0}, edges[2] = {0, 0};
    int64_t start = tu_now_ms();

    CHECK_OK(joint_ctx_new(NULL, &ctx[0]));
    CHECK_OK(joint_ctx_new(NULL, &ctx[1]));
    CHECK_OK(joint_ctx_register(ctx[0], "echo", echo, NULL, NULL));
    CHECK_OK(joint_ctx_listen(ctx[0], "tcp://127.0.0.1:0", &listener));
    CHECK_OK(joint_ctx_connect(ctx[1], joint_listener_uri(listener), &conn));

    /* All calls are queued up front: one big burst of pipelined work. */
    CHECK_OK(joint_writer_new(&w));
    for (i = 0; i < CALLS; i++) {
        const uint8_t *params;
        size_t len;
        for (k = 0; k < PAYLOAD; k++)
            payload[k] = (uint8_t)(i + k);
        CHECK_OK(joint_writer_reset(w));
        CHECK_OK(joint_write_array(w, 1));
        CHECK_OK(joint_write_bin(w, payload, PAYLOAD));
        CHECK_OK(joint_writer_data(w, &params, &len));
        CHECK_OK(joint_conn_call(conn, "echo", params, len, -1, on_response, (void *)(uintptr_t)i, NULL));
    }
    joint_writer_free(w);

    ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0);
    for (i = 0; i < 2; i++) {
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN | EPOLLET;
        ev.data.u32 = (uint32_t)i;
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, joint_ctx_fd(ctx[i]), &ev) == 0);
    }

    while (completed < CALLS) {
        int timeout = STALL_MS, n;
        for (i = 0; i < 2; i++) {
            int32_t ms = joint_ctx_timeout_ms(ctx[i]);
            if (ms >= 0 && ms < timeout)
                timeout = ms;
        }
        n = epoll_wait(ep, events, 4, timeout);
        if (n < 0 && errno == EINTR)
            continue;
        CHECK(n >= 0);
        if (n == 0) {
            int due = 0;
            for (i = 0; i < 2; i++) {
                if (joint_ctx_timeout_ms(ctx[i]) == 0) {
                    CHECK_OK(joint_ctx_process(ctx[i]));
                    processed[i]++;
                    due = 1;
                }
            }
            if (!due) {
                fprintf(stderr, "stalled: no edge for %d ms with %d of %d calls done "
                                "(a wake-up was lost under EPOLLET)\n", STALL_MS, completed, CALLS);
                return 1;
            }
            continue;
        }
        for (k = 0; k < n; k++) {
            i = (int)events[k].data.u32;
            edges[i]++;
            CHECK_OK(joint_ctx_process(ctx[i]));
            processed[i]++;
        }
    }

    printf("%d calls of %d bytes each way in %lld ms; edges: server %ld, client %ld; "
           "process calls: server %ld, client %ld\n", CALLS, PAYLOAD, (long long)(tu_now_ms() - start),
           edges[0], edges[1], processed[0], processed[1]);
    CHECK(mismatches == 0);
    /* More than one pass was needed, i.e. the budget did split the work. */
    CHECK(processed[0] > 1 && processed[1] > 1);

    close(ep);
    joint_conn_free(conn);
    joint_ctx_free(ctx[1]);
    joint_ctx_free(ctx[0]);
    joint_listener_free(listener);
    printf("int_epollet: ok\n");
    return 0;
}
