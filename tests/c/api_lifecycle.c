/* api_lifecycle: completion callbacks run exactly once, whatever ends the call, and every
 * free_user_data runs exactly once.
 *   - calls pending when joint_ctx_free runs complete with JOINT_E_CANCELLED during it;
 *   - joint_conn_cancel -> JOINT_E_CANCELLED on the next process, cancelling twice is
 *     JOINT_E_STATE; a per-call timeout -> JOINT_E_TIMEOUT; joint_conn_free with calls
 *     pending -> JOINT_E_CANCELLED, and no CLOSED event for that connection;
 *   - late answers (after a timeout or cancel) are ignored;
 *   - a timer's free_user_data runs exactly once: after it fired, on cancel, or at ctx
 *     free (registrations' free_user_data: see api_user_data);
 *   - requests still held after joint_ctx_free can be answered or freed harmlessly. */
#include "testutil.h"

#define MAX_HELD 16

static joint_request *held[MAX_HELD]; /* requests the "hold" handler keeps unanswered */
static int nheld;

static void hold(joint_request *req, void *user_data)
{
    (void)user_data;
    CHECK(nheld < MAX_HELD);
    held[nheld++] = req;
}

/* One record per call: how often its callback ran and with what. */
struct call {
    int runs;
    joint_status status;
    uint64_t id;
};

static void record(joint_conn *conn, const joint_response *resp, void *user_data)
{
    struct call *c = user_data;
    (void)conn;
    c->runs++;
    c->status = joint_response_status(resp);
    CHECK(joint_response_call_id(resp) == c->id);
    if (c->status != JOINT_OK) {
        /* a failed call has a nil result and a readable description */
        const uint8_t *data;
        size_t len;
        CHECK_OK(joint_response_result(resp, &data, &len));
        CHECK(len == 1 && data[0] == 0xc0);
        CHECK(joint_response_message(resp) != NULL);
    }
}

static void start(joint_conn *conn, const char *method, int32_t timeout_ms, struct call *c)
{
    memset(c, 0, sizeof *c);
    c->status = 12345;
    CHECK_OK(joint_conn_call(conn, method, NULL, 0, timeout_ms, record, c, &c->id));
}

/* free_user_data counters, one per registration kind */
enum { TIMER_FIRED, TIMER_CANCELLED, TIMER_PENDING, NCOUNTERS };
static int freed[NCOUNTERS];
static int timer_runs[NCOUNTERS];

static void count_free(void *user_data)
{
    freed[(int *)user_data - freed]++;
}

static void count_timer(joint_ctx *ctx, void *user_data)
{
    (void)ctx;
    timer_runs[(int *)user_data - freed]++;
    /* "free_user_data runs right after" the callback, not before */
    CHECK(freed[(int *)user_data - freed] == 0);
}

static int closed_events;
static void on_conn(joint_conn *conn, int32_t event, joint_status status, const char *reason, void *user_data)
{
    (void)conn, (void)status, (void)reason, (void)user_data;
    if (event == JOINT_CONN_CLOSED)
        closed_events++;
}

static void on_note(joint_conn *conn, const uint8_t *m, size_t ml, const uint8_t *p, size_t pl, void *ud)
{
    (void)conn, (void)m, (void)ml, (void)p, (void)pl, (void)ud;
}

static void on_log(int32_t level, const char *message, void *user_data)
{
    (void)level, (void)message, (void)user_data;
}

int main(void)
{
    struct tu_pair p;
    joint_config *cfg;
    joint_conn *second;
    struct call at_free[3], no_cb_id, cancelled, timed_out, on_freed_conn[2], ok_call;
    uint64_t t_fired, t_cancelled, t_pending;
    int i;

    CHECK_OK(joint_config_new(&cfg));
    CHECK_OK(joint_config_set_log_cb(cfg, JOINT_LOG_DEBUG, on_log, NULL, NULL));
    tu_pair_open(&p, cfg);
    joint_config_free(cfg); /* the context keeps its own copy */
    CHECK_OK(joint_ctx_register(p.ctx, "hold", hold, NULL, NULL));
    CHECK_OK(joint_ctx_register(p.ctx, "sum", tu_handle_sum, NULL, NULL));
    CHECK_OK(joint_ctx_set_notification_cb(p.ctx, on_note, NULL, NULL));
    CHECK_OK(joint_ctx_set_conn_cb(p.ctx, on_conn, NULL, NULL));

    /* timers: one fires, one is cancelled, one is still pending at ctx free */
    CHECK_OK(joint_ctx_add_timer(p.ctx, 0, count_timer, &freed[TIMER_FIRED], count_free, &t_fired));
    CHECK_OK(joint_ctx_add_timer(p.ctx, 60000, count_timer, &freed[TIMER_CANCELLED], count_free, &t_cancelled));
    CHECK_OK(joint_ctx_add_timer(p.ctx, 60000, count_timer, &freed[TIMER_PENDING], count_free, &t_pending));
    CHECK(t_fired != t_cancelled && t_cancelled != t_pending);
    CHECK_OK(joint_ctx_cancel_timer(p.ctx, t_cancelled));
    CHECK(freed[TIMER_CANCELLED] == 1 && timer_runs[TIMER_CANCELLED] == 0);
    CHECK_ST(joint_ctx_cancel_timer(p.ctx, t_cancelled), JOINT_E_STATE);
    TU_WAIT_FOR(p.ctx, timer_runs[TIMER_FIRED] == 1, 5000);
    CHECK(freed[TIMER_FIRED] == 1);
    CHECK_ST(joint_ctx_cancel_timer(p.ctx, t_fired), JOINT_E_STATE);

    /* an ordinary call completes once */
    start(p.client, "sum", 5000, &ok_call);
    TU_WAIT_FOR(p.ctx, ok_call.runs == 1, 5000);
    CHECK_OK(ok_call.status);

    /* cancel: completes with CANCELLED on the next process; the late answer is ignored */
    start(p.client, "hold", -1, &cancelled);
    TU_WAIT_FOR(p.ctx, nheld == 1, 5000);
    CHECK_OK(joint_conn_cancel(p.client, cancelled.id));
    CHECK(cancelled.runs == 0); /* not from inside cancel */
    CHECK_ST(joint_conn_cancel(p.client, cancelled.id), JOINT_E_STATE);
    CHECK_OK(joint_ctx_process(p.ctx));
    CHECK(cancelled.runs == 1);
    CHECK_ST(cancelled.status, JOINT_E_CANCELLED);
    CHECK_OK(joint_request_reply(held[0], (const uint8_t *)"\x01", 1)); /* late: ignored */

    /* timeout */
    start(p.client, "hold", 30, &timed_out);
    TU_WAIT_FOR(p.ctx, timed_out.runs == 1, 5000);
    CHECK_ST(timed_out.status, JOINT_E_TIMEOUT);
    CHECK(nheld == 2);
    CHECK_OK(joint_request_reply(held[1], (const uint8_t *)"\x01", 1)); /* late: ignored */

    /* joint_conn_free with pending calls: CANCELLED during the next process, no CLOSED
     * event for the freed connection itself. */
    CHECK_OK(joint_ctx_connect(p.ctx, joint_listener_uri(p.listener), &second));
    start(second, "hold", -1, &on_freed_conn[0]);
    start(second, "hold", -1, &on_freed_conn[1]);
    TU_WAIT_FOR(p.ctx, nheld == 4, 5000);
    /* Let the client read what the server sent (the answer to its joint.hello): closing a
     * socket with unread data resets the connection, which would close the server side at
     * once instead of after its answers. */
    for (i = 0; i < 3; i++)
        CHECK_OK(joint_ctx_wait(p.ctx, 5));
    closed_events = 0;
    joint_conn_free(second);
    CHECK(on_freed_conn[0].runs == 0);
    TU_WAIT_FOR(p.ctx, on_freed_conn[0].runs == 1 && on_freed_conn[1].runs == 1, 5000);
    CHECK_ST(on_freed_conn[0].status, JOINT_E_CANCELLED);
    CHECK_ST(on_freed_conn[1].status, JOINT_E_CANCELLED);
    /* The server side of that connection stays open while it owes answers (the peer may
     * only have shut down its sending side); once they are given it closes, and it is the
     * only CLOSED event: the freed client side gets none. */
    for (i = 0; i < 10; i++)
        CHECK_OK(joint_ctx_wait(p.ctx, 5));
    CHECK(closed_events == 0);
    joint_request_reply(held[2], (const uint8_t *)"\x01", 1); /* to a peer that is gone */
    joint_request_free(held[3]);
    TU_WAIT_FOR(p.ctx, closed_events >= 1, 5000);
    for (i = 0; i < 5; i++)
        CHECK_OK(joint_ctx_wait(p.ctx, 10));
    CHECK(closed_events == 1);

    /* calls still pending at joint_ctx_free complete during it */
    start(p.client, "hold", -1, &at_free[0]);
    start(p.client, "hold", 60000, &at_free[1]);
    start(p.client, "hold", -1, &at_free[2]);
    memset(&no_cb_id, 0, sizeof no_cb_id);
    CHECK_OK(joint_conn_call(p.client, "hold", NULL, 0, -1, NULL, NULL, &no_cb_id.id)); /* cb NULL */
    TU_WAIT_FOR(p.ctx, nheld == 8, 5000);
    CHECK(joint_ctx_unanswered(p.ctx) == 4);
    for (i = 0; i < 3; i++)
        CHECK(at_free[i].runs == 0);
    CHECK(freed[TIMER_PENDING] == 0);

    joint_ctx_free(p.ctx);
    joint_listener_free(p.listener);

    for (i = 0; i < 3; i++) {
        CHECK(at_free[i].runs == 1);
        CHECK_ST(at_free[i].status, JOINT_E_CANCELLED);
    }
    CHECK(cancelled.runs == 1 && timed_out.runs == 1 && ok_call.runs == 1);
    CHECK(on_freed_conn[0].runs == 1 && on_freed_conn[1].runs == 1);
    /* every timer's free_user_data ran exactly once */
    for (i = 0; i < NCOUNTERS; i++) {
        if (freed[i] != 1) {
            fprintf(stderr, "free_user_data #%d ran %d times\n", i, freed[i]);
            exit(1);
        }
    }
    CHECK(timer_runs[TIMER_FIRED] == 1 && timer_runs[TIMER_PENDING] == 0);

    /* Requests outlive their context: answering or freeing them is harmless. */
    printf("joint_request_reply after joint_ctx_free: %s\n",
           joint_status_str(joint_request_reply(held[4], (const uint8_t *)"\xc0", 1)));
    joint_request_free(held[5]);
    for (i = 6; i < nheld; i++)
        joint_request_reply_error_msg(held[i], 1, "too late");

    /* The connection the test owns outlives the context: its functions say JOINT_E_STATE,
     * and freeing it after the context is fine. */
    CHECK(!joint_conn_is_open(p.client));
    CHECK_ST(joint_conn_call(p.client, "sum", NULL, 0, -1, NULL, NULL, NULL), JOINT_E_STATE);
    joint_conn_free(p.client);
    printf("api_lifecycle: ok\n");
    return 0;
}
