/* api_user_data: the free_user_data of long-lived registrations (joint_ctx_register,
 * joint_ctx_set_fallback, joint_ctx_set_notification_cb, joint_ctx_set_conn_cb,
 * joint_config_set_log_cb, joint_ctx_add_timer) runs exactly once — when the registration
 * is replaced or removed, or its owner is freed — and never while its callback can still
 * run; and a registration call that fails never calls it (docs/c-api-conventions.md: "A
 * function that takes a callback and returns an error never calls that callback").
 *
 * Regression test: registrations once ran free_user_data at once (closures that read only
 * the pointer field captured it alone under Rust 2021 disjoint captures), and failed
 * registrations ran it too. */
#include "testutil.h"

enum { REGISTER_OLD, REGISTER, REMOVED, FALLBACK, NOTE, CONN, LOG, TIMER, FAILED, NCOUNTERS };
static int freed[NCOUNTERS];
static int used_after_free;

static void count_free(void *user_data)
{
    freed[(int *)user_data - freed]++;
}

/* Each callback checks its user data has not been released yet. */
static void check_alive(void *user_data)
{
    if (freed[(int *)user_data - freed] != 0) {
        fprintf(stderr, "callback #%d ran after its free_user_data\n", (int)((int *)user_data - freed));
        used_after_free++;
    }
}

static void on_request(joint_request *req, void *user_data)
{
    check_alive(user_data);
    joint_request_reply(req, (const uint8_t *)"\xc0", 1);
}
static void on_note(joint_conn *c, const uint8_t *m, size_t ml, const uint8_t *p, size_t pl, void *user_data)
{
    (void)c, (void)m, (void)ml, (void)p, (void)pl;
    check_alive(user_data);
}
static int conn_events;
static void on_conn(joint_conn *c, int32_t e, joint_status s, const char *r, void *user_data)
{
    (void)c, (void)e, (void)s, (void)r;
    check_alive(user_data);
    conn_events++;
}
static int log_lines;
static void on_log(int32_t level, const char *message, void *user_data)
{
    (void)level, (void)message;
    check_alive(user_data);
    log_lines++;
}
static void on_timer(joint_ctx *ctx, void *user_data)
{
    (void)ctx;
    check_alive(user_data);
}

int main(void)
{
    struct tu_pair p;
    joint_config *cfg;
    joint_buf *result, *error;
    int i;

    CHECK_OK(joint_config_new(&cfg));
    CHECK_OK(joint_config_set_log_cb(cfg, JOINT_LOG_DEBUG, on_log, &freed[LOG], count_free));
    tu_pair_open(&p, cfg);
    joint_config_free(cfg);
    printf("after registering the log sink and freeing the config: freed=%d (want 0)\n", freed[LOG]);
    CHECK(freed[LOG] == 0);

    CHECK_OK(joint_ctx_register(p.ctx, "m", on_request, &freed[REGISTER_OLD], count_free));
    CHECK(freed[REGISTER_OLD] == 0);
    CHECK_OK(joint_ctx_register(p.ctx, "m", on_request, &freed[REGISTER], count_free));
    CHECK(freed[REGISTER_OLD] == 1 && freed[REGISTER] == 0);
    CHECK_OK(joint_ctx_register(p.ctx, "removed", on_request, &freed[REMOVED], count_free));
    CHECK(freed[REMOVED] == 0);
    CHECK_OK(joint_ctx_unregister(p.ctx, "removed"));
    CHECK(freed[REMOVED] == 1);
    CHECK_OK(joint_ctx_set_fallback(p.ctx, on_request, &freed[FALLBACK], count_free));
    CHECK_OK(joint_ctx_set_notification_cb(p.ctx, on_note, &freed[NOTE], count_free));
    CHECK_OK(joint_ctx_set_conn_cb(p.ctx, on_conn, &freed[CONN], count_free));
    CHECK_OK(joint_ctx_add_timer(p.ctx, 60000, on_timer, &freed[TIMER], count_free, NULL));
    CHECK(freed[FALLBACK] == 0 && freed[NOTE] == 0 && freed[CONN] == 0 && freed[TIMER] == 0);

    /* exercise every callback */
    CHECK_OK(joint_conn_call_sync(p.client, "m", NULL, 0, 5000, &result, &error));
    joint_buf_free(result);
    CHECK_OK(joint_conn_call_sync(p.client, "unregistered", NULL, 0, 5000, &result, &error)); /* fallback */
    joint_buf_free(result);
    CHECK_OK(joint_conn_notify(p.client, "note", NULL, 0));
    for (i = 0; i < 10; i++)
        CHECK_OK(joint_ctx_wait(p.ctx, 5));
    CHECK(conn_events >= 2 && log_lines >= 1);
    CHECK(used_after_free == 0);

    joint_conn_free(p.client);
    joint_ctx_free(p.ctx);
    for (i = 0; i < NCOUNTERS; i++) {
        if (freed[i] != (i == FAILED ? 0 : 1)) {
            fprintf(stderr, "free_user_data #%d ran %d times\n", i, freed[i]);
            exit(1);
        }
    }

    /* Failed registrations must not call free_user_data (checked last: see bug 2). */
    CHECK_OK(joint_config_new(&cfg));
    CHECK(joint_ctx_register(NULL, "m", on_request, &freed[FAILED], count_free) < 0);
    CHECK(joint_config_set_log_cb(cfg, 99 /* no such level */, on_log, &freed[FAILED], count_free) < 0);
    CHECK_OK(joint_ctx_new(NULL, &p.ctx));
    CHECK(joint_ctx_register(p.ctx, "m", NULL, &freed[FAILED], count_free) < 0);
    CHECK(joint_ctx_add_timer(p.ctx, 0, NULL, &freed[FAILED], count_free, NULL) < 0);
    joint_ctx_free(p.ctx);
    joint_listener_free(p.listener);
    printf("free_user_data calls from failed registrations: %d (want 0)\n", freed[FAILED]);
    CHECK(freed[FAILED] == 0);

    joint_config_free(cfg);
    printf("api_user_data: ok\n");
    return 0;
}
