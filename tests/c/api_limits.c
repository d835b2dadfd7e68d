/* api_limits: the memory budget and the linger through the C API.
 *   - a handler that keeps its request sees joint_request_is_cancelled turn true once the
 *     client's connection is gone (linger 0), and answering it then is harmless;
 *   - joint_request_fits follows the budget (1 MiB here);
 *   - an answer bigger than the budget reaches the caller as JOINT_RPC_RESOURCE_EXHAUSTED
 *     and joint_request_reply returns JOINT_E_LIMIT. */
#include "testutil.h"

#include <string.h>

static joint_request *kept;
static joint_status big_status = 1;

static void keep(joint_request *req, void *user_data)
{
    (void)user_data;
    kept = req;
}

/* Answers with a 2 MiB bin: more than the 1 MiB budget. */
static void big(joint_request *req, void *user_data)
{
    static uint8_t payload[(2 << 20) + 5];
    (void)user_data;
    payload[0] = 0xc6; /* bin32 */
    payload[1] = 0x00;
    payload[2] = 0x20;
    payload[3] = 0x00;
    payload[4] = 0x00;
    CHECK(!joint_request_fits(req, sizeof payload));
    CHECK(joint_request_fits(req, 100));
    big_status = joint_request_reply(req, payload, sizeof payload);
}

static int64_t remote_code = -1;

static void on_big(joint_conn *conn, const joint_response *resp, void *user_data)
{
    const uint8_t *err;
    size_t len;
    (void)conn;
    (void)user_data;
    CHECK_ST(joint_response_status(resp), JOINT_E_REMOTE);
    CHECK_OK(joint_response_error(resp, &err, &len));
    CHECK_OK(joint_error_code(err, len, &remote_code));
}

int main(void)
{
    joint_config *cfg;
    struct tu_pair p;
    CHECK_OK(joint_config_new(&cfg));
    CHECK_OK(joint_config_set_memory_budget(cfg, 1 << 20));
    CHECK_OK(joint_config_set_linger_ms(cfg, 0));
    tu_pair_open(&p, cfg);
    joint_config_free(cfg);
    CHECK_OK(joint_ctx_register(p.ctx, "keep", keep, NULL, NULL));
    CHECK_OK(joint_ctx_register(p.ctx, "big", big, NULL, NULL));

    /* An answer that does not fit the budget. */
    CHECK_OK(joint_conn_call(p.client, "big", NULL, 0, 5000, on_big, NULL, NULL));
    TU_WAIT_FOR(p.ctx, remote_code != -1, 5000);
    CHECK_EQ_I64(remote_code, JOINT_RPC_RESOURCE_EXHAUSTED);
    CHECK_ST(big_status, JOINT_E_LIMIT);

    /* A kept request learns that its caller is gone. */
    CHECK_OK(joint_conn_call(p.client, "keep", NULL, 0, -1, NULL, NULL, NULL));
    TU_WAIT_FOR(p.ctx, kept != NULL, 5000);
    CHECK(!joint_request_is_cancelled(kept));
    joint_conn_free(p.client);
    TU_WAIT_FOR(p.ctx, joint_request_is_cancelled(kept), 5000);
    CHECK_OK(joint_request_reply(kept, NULL, 0)); /* harmless: nobody to tell */

    joint_ctx_free(p.ctx);
    joint_listener_free(p.listener);
    puts("api_limits: ok");
    return 0;
}
