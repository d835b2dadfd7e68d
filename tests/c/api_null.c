/* api_null: every function that takes a pointer, called with NULL where a pointer is
 * required, returns its documented error (JOINT_E_NULL, or the documented default for
 * functions that return no status), never crashes, and leaves every out-param untouched;
 * every _free(NULL) is a no-op. Also: invalid (non-NULL) arguments are rejected without
 * writing out-params, callbacks of failed calls never run, and a request passed to a
 * failing reply is still consumed (the peer gets an error). */
#include "testutil.h"

#define SENTINEL ((void *)0x5e47)

static int callbacks_run; /* any callback of a call that failed must never run */

static void never_response(joint_conn *conn, const joint_response *resp, void *user_data)
{
    (void)conn, (void)resp, (void)user_data;
    callbacks_run++;
}
static void never_request(joint_request *req, void *user_data)
{
    (void)user_data;
    callbacks_run++;
    joint_request_free(req);
}
static void never_timer(joint_ctx *ctx, void *user_data)
{
    (void)ctx, (void)user_data;
    callbacks_run++;
}
static void never_log(int32_t level, const char *message, void *user_data)
{
    (void)level, (void)message, (void)user_data;
}

/* ---- functions that need no live object ------------------------------------------- */
static void test_free_null(void)
{
    joint_conn_free(NULL);
    joint_buf_free(NULL);
    joint_config_free(NULL);
    joint_ctx_free(NULL);
    joint_writer_free(NULL);
    joint_reader_free(NULL);
    joint_request_free(NULL);
    joint_listener_free(NULL);
    CHECK_ST(joint_listener_close(NULL), JOINT_E_NULL);
}

static void test_config(void)
{
    joint_config *cfg = SENTINEL;
    CHECK_ST(joint_config_new(NULL), JOINT_E_NULL);
    CHECK_ST(joint_config_set_max_message_size(NULL, 1024), JOINT_E_NULL);
    CHECK_ST(joint_config_set_max_depth(NULL, 8), JOINT_E_NULL);
    CHECK_ST(joint_config_set_max_inflight(NULL, 8), JOINT_E_NULL);
    CHECK_ST(joint_config_set_connect_timeout_ms(NULL, 100), JOINT_E_NULL);
    CHECK_ST(joint_config_set_memory_budget(NULL, 1 << 20), JOINT_E_NULL);
    CHECK_ST(joint_config_set_output_high_water(NULL, 1024), JOINT_E_NULL);
    CHECK_ST(joint_config_set_max_connections(NULL, 8), JOINT_E_NULL);
    CHECK_ST(joint_config_set_message_timeout_ms(NULL, 100), JOINT_E_NULL);
    CHECK_ST(joint_config_set_idle_timeout_ms(NULL, 100), JOINT_E_NULL);
    CHECK_ST(joint_config_set_linger_ms(NULL, 100), JOINT_E_NULL);
    CHECK_ST(joint_config_set_listen_backlog(NULL, 8), JOINT_E_NULL);
    CHECK_ST(joint_config_set_log_cb(NULL, JOINT_LOG_DEBUG, never_log, NULL, NULL), JOINT_E_NULL);

    CHECK_OK(joint_config_new(&cfg));
    CHECK(cfg != SENTINEL && cfg != NULL);
    /* documented lower bounds */
    CHECK_ST(joint_config_set_max_message_size(cfg, 63), JOINT_E_INVAL);
    CHECK_OK(joint_config_set_max_message_size(cfg, 64));
    CHECK_ST(joint_config_set_max_depth(cfg, 1), JOINT_E_INVAL);
    CHECK_OK(joint_config_set_max_depth(cfg, 2));
    CHECK_ST(joint_config_set_max_inflight(cfg, 0), JOINT_E_INVAL);
    CHECK_OK(joint_config_set_max_inflight(cfg, 1));
    CHECK_ST(joint_config_set_connect_timeout_ms(cfg, -2), JOINT_E_INVAL);
    CHECK_OK(joint_config_set_connect_timeout_ms(cfg, -1));
    CHECK_ST(joint_config_set_connect_timeout_ms(cfg, 0), JOINT_E_INVAL); /* 0 ("don't wait") cannot be a connect timeout */
    CHECK_ST(joint_config_set_memory_budget(cfg, (1 << 20) - 1), JOINT_E_INVAL);
    CHECK_OK(joint_config_set_memory_budget(cfg, 1 << 20));
    CHECK_ST(joint_config_set_output_high_water(cfg, 0), JOINT_E_INVAL);
    CHECK_OK(joint_config_set_output_high_water(cfg, 1));
    CHECK_ST(joint_config_set_max_connections(cfg, 0), JOINT_E_INVAL);
    CHECK_OK(joint_config_set_max_connections(cfg, 1));
    CHECK_ST(joint_config_set_message_timeout_ms(cfg, 0), JOINT_E_INVAL);
    CHECK_ST(joint_config_set_message_timeout_ms(cfg, -2), JOINT_E_INVAL);
    CHECK_OK(joint_config_set_message_timeout_ms(cfg, -1));
    CHECK_OK(joint_config_set_message_timeout_ms(cfg, 1));
    CHECK_ST(joint_config_set_idle_timeout_ms(cfg, 0), JOINT_E_INVAL);
    CHECK_OK(joint_config_set_idle_timeout_ms(cfg, -1));
    CHECK_ST(joint_config_set_linger_ms(cfg, -1), JOINT_E_INVAL);
    CHECK_OK(joint_config_set_linger_ms(cfg, 0));
    CHECK_ST(joint_config_set_listen_backlog(cfg, 0), JOINT_E_INVAL);
    CHECK_OK(joint_config_set_listen_backlog(cfg, 1));
    CHECK_OK(joint_config_set_log_cb(cfg, JOINT_LOG_ERROR, NULL, NULL, NULL)); /* NULL cb: off */
    joint_config_free(cfg);
}

static void test_ctx_null(void)
{
    joint_ctx *ctx = SENTINEL;
    joint_conn *conn = SENTINEL;
    joint_listener *l = SENTINEL;
    uint64_t id = 77;
    const char *argv[] = {"true", NULL};

    CHECK_ST(joint_ctx_new(NULL, NULL), JOINT_E_NULL);
    CHECK_STREQ(joint_ctx_last_error(NULL), "");
    CHECK(joint_ctx_fd(NULL) == -1);
    CHECK(joint_ctx_timeout_ms(NULL) == -1);
    CHECK_ST(joint_ctx_process(NULL), JOINT_E_NULL);
    CHECK_ST(joint_ctx_wait(NULL, 0), JOINT_E_NULL);
    CHECK_ST(joint_ctx_wakeup(NULL), JOINT_E_NULL);
    CHECK_ST(joint_ctx_shutdown(NULL), JOINT_E_NULL);
    CHECK(joint_ctx_unanswered(NULL) == 0);
    CHECK_ST(joint_ctx_connect(NULL, "tcp://127.0.0.1:1", &conn), JOINT_E_NULL);
    CHECK_ST(joint_ctx_spawn(NULL, argv, &conn), JOINT_E_NULL);
    CHECK_ST(joint_ctx_open_stdio(NULL, &conn), JOINT_E_NULL);
    CHECK_ST(joint_ctx_listen(NULL, "tcp://127.0.0.1:0", &l), JOINT_E_NULL);
    CHECK_ST(joint_ctx_register(NULL, "m", never_request, NULL, NULL), JOINT_E_NULL);
    CHECK_ST(joint_ctx_unregister(NULL, "m"), JOINT_E_NULL);
    CHECK_ST(joint_ctx_set_fallback(NULL, never_request, NULL, NULL), JOINT_E_NULL);
    CHECK_ST(joint_ctx_set_notification_cb(NULL, NULL, NULL, NULL), JOINT_E_NULL);
    CHECK_ST(joint_ctx_set_conn_cb(NULL, NULL, NULL, NULL), JOINT_E_NULL);
    CHECK_ST(joint_ctx_add_timer(NULL, 0, never_timer, NULL, NULL, &id), JOINT_E_NULL);
    CHECK_ST(joint_ctx_cancel_timer(NULL, 1), JOINT_E_NULL);
    CHECK_STREQ(joint_listener_uri(NULL), "");
    CHECK(ctx == SENTINEL && conn == SENTINEL && l == SENTINEL && id == 77);

    /* NULL arguments other than the context */
    CHECK_OK(joint_ctx_new(NULL, &ctx));
    CHECK(ctx != SENTINEL && ctx != NULL);
    CHECK(joint_ctx_fd(ctx) >= 0);
    CHECK_ST(joint_ctx_connect(ctx, NULL, &conn), JOINT_E_NULL);
    CHECK_ST(joint_ctx_connect(ctx, "tcp://127.0.0.1:1", NULL), JOINT_E_NULL);
    CHECK_ST(joint_ctx_spawn(ctx, NULL, &conn), JOINT_E_NULL);
    CHECK_ST(joint_ctx_spawn(ctx, argv, NULL), JOINT_E_NULL);
    CHECK_ST(joint_ctx_open_stdio(ctx, NULL), JOINT_E_NULL);
    CHECK_ST(joint_ctx_listen(ctx, NULL, &l), JOINT_E_NULL);
    CHECK_ST(joint_ctx_register(ctx, NULL, never_request, NULL, NULL), JOINT_E_NULL);
    CHECK_ST(joint_ctx_register(ctx, "m", NULL, NULL, NULL), JOINT_E_NULL);
    CHECK_ST(joint_ctx_unregister(ctx, NULL), JOINT_E_NULL);
    CHECK_ST(joint_ctx_unregister(ctx, "never-registered"), JOINT_E_STATE);
    CHECK_ST(joint_ctx_add_timer(ctx, 0, NULL, NULL, NULL, &id), JOINT_E_NULL);
    CHECK_ST(joint_ctx_cancel_timer(ctx, 123456), JOINT_E_STATE);
    CHECK(conn == SENTINEL && l == SENTINEL && id == 77);

    /* invalid (non-NULL) arguments: an error, nothing written, detail in last_error */
    {
        const char *empty_argv[] = {NULL};
        CHECK(joint_ctx_connect(ctx, "bogus://nowhere", &conn) < 0);
        CHECK(joint_ctx_last_error(ctx)[0] != '\0');
        CHECK(joint_ctx_connect(ctx, "unix:///nonexistent/joint-test.sock", &conn) < 0);
        CHECK(joint_ctx_listen(ctx, "tcp://256.1.1.1:0", &l) < 0);
        CHECK(joint_ctx_listen(ctx, "not a uri", &l) < 0);
        CHECK_ST(joint_ctx_spawn(ctx, empty_argv, &conn), JOINT_E_INVAL);
        CHECK(conn == SENTINEL && l == SENTINEL);
    }

    /* NULL-accepting setters: a NULL callback turns the feature off */
    CHECK_OK(joint_ctx_set_fallback(ctx, NULL, NULL, NULL));
    CHECK_OK(joint_ctx_set_notification_cb(ctx, NULL, NULL, NULL));
    CHECK_OK(joint_ctx_set_conn_cb(ctx, NULL, NULL, NULL));
    CHECK_OK(joint_ctx_listen(ctx, "tcp://127.0.0.1:0", NULL)); /* listener_out may be NULL */
    CHECK_OK(joint_ctx_process(ctx));
    CHECK(callbacks_run == 0);
    joint_ctx_free(ctx);
}

static void test_conn_null(void)
{
    joint_buf *result = SENTINEL, *error = SENTINEL;
    uint64_t id = 77;
    struct tu_pair p;

    CHECK_ST(joint_conn_close(NULL), JOINT_E_NULL);
    CHECK(!joint_conn_is_open(NULL));
    CHECK_ST(joint_conn_set_user_data(NULL, SENTINEL), JOINT_E_NULL);
    CHECK(joint_conn_user_data(NULL) == NULL);
    CHECK_ST(joint_conn_call(NULL, "m", NULL, 0, -1, never_response, NULL, &id), JOINT_E_NULL);
    CHECK_ST(joint_conn_cancel(NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_conn_notify(NULL, "m", NULL, 0), JOINT_E_NULL);
    CHECK_ST(joint_conn_call_sync(NULL, "m", NULL, 0, -1, &result, &error), JOINT_E_NULL);
    CHECK(id == 77 && result == SENTINEL && error == SENTINEL);

    tu_pair_open(&p, NULL);
    CHECK(joint_conn_is_open(p.client));
    CHECK(joint_conn_user_data(p.client) == NULL);
    CHECK_ST(joint_conn_call(p.client, NULL, NULL, 0, -1, never_response, NULL, &id), JOINT_E_NULL);
    CHECK_ST(joint_conn_call(p.client, "m", NULL, 3, -1, never_response, NULL, &id), JOINT_E_NULL);
    CHECK_ST(joint_conn_call(p.client, "m", (const uint8_t *)"\xc1", 1, -1, never_response, NULL, &id),
             JOINT_E_INVAL); /* not valid MessagePack */
    CHECK_ST(joint_conn_call(p.client, "m", (const uint8_t *)"\x91\x01\x02", 3, -1, never_response, NULL, &id),
             JOINT_E_INVAL); /* trailing bytes: not exactly one object */
    CHECK_ST(joint_conn_notify(p.client, NULL, NULL, 0), JOINT_E_NULL);
    CHECK_ST(joint_conn_notify(p.client, "m", NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_conn_call_sync(p.client, NULL, NULL, 0, -1, &result, &error), JOINT_E_NULL);
    CHECK_ST(joint_conn_call_sync(p.client, "m", NULL, 2, -1, &result, &error), JOINT_E_NULL);
    CHECK_ST(joint_conn_call_sync(p.client, "m", NULL, 0, -1, NULL, &error), JOINT_E_NULL);
    CHECK_ST(joint_conn_cancel(p.client, 999999), JOINT_E_STATE);
    CHECK(id == 77 && result == SENTINEL && error == SENTINEL);

    /* a call that failed in the library never runs its callback */
    CHECK_OK(joint_ctx_wait(p.ctx, 50));
    CHECK_OK(joint_ctx_process(p.ctx));
    CHECK(callbacks_run == 0);

    /* cb may be NULL (result discarded); error_out may be NULL */
    CHECK_OK(joint_conn_call(p.client, "nothing_here", NULL, 0, -1, NULL, NULL, NULL));
    CHECK_ST(joint_conn_call_sync(p.client, "nothing_here", NULL, 0, 5000, &result, NULL), JOINT_E_REMOTE);
    CHECK(result == SENTINEL);

    CHECK_OK(joint_conn_set_user_data(p.client, SENTINEL));
    CHECK(joint_conn_user_data(p.client) == SENTINEL);
    joint_conn_free(p.client);
    joint_ctx_free(p.ctx);
    joint_listener_free(p.listener);
}

static void test_response_request_null(void)
{
    const uint8_t *data = SENTINEL;
    size_t len = 77;

    CHECK_ST(joint_response_status(NULL), JOINT_E_NULL);
    CHECK_ST(joint_response_result(NULL, &data, &len), JOINT_E_NULL);
    CHECK_ST(joint_response_error(NULL, &data, &len), JOINT_E_NULL);
    CHECK_STREQ(joint_response_message(NULL), "");
    CHECK(joint_response_call_id(NULL) == 0);

    CHECK(!joint_request_is_cancelled(NULL));
    CHECK(!joint_request_fits(NULL, 1));
    CHECK_ST(joint_request_method(NULL, &data, &len), JOINT_E_NULL);
    CHECK_ST(joint_request_params(NULL, &data, &len), JOINT_E_NULL);
    CHECK_ST(joint_request_kwargs(NULL, &data, &len), JOINT_E_NULL);
    CHECK(joint_request_msgid(NULL) == 0);
    CHECK(joint_request_conn(NULL) == NULL);
    CHECK_ST(joint_request_reply(NULL, (const uint8_t *)"\xc0", 1), JOINT_E_NULL);
    CHECK_ST(joint_request_reply_error(NULL, (const uint8_t *)"\xc0", 1), JOINT_E_NULL);
    CHECK_ST(joint_request_reply_error_msg(NULL, 1, "x"), JOINT_E_NULL);

    CHECK_ST(joint_buf_data(NULL, &data, &len), JOINT_E_NULL);
    CHECK(data == SENTINEL && len == 77);
}

static void test_msgpack_null(void)
{
    joint_writer *w = SENTINEL;
    joint_reader *r = SENTINEL;
    const uint8_t *data = SENTINEL;
    size_t len = 77;
    bool b = true;
    int64_t i = 77;
    uint64_t u = 77;
    double d = 7.5;
    uint32_t count = 77;
    int8_t type = 7;

    CHECK_ST(joint_writer_new(NULL), JOINT_E_NULL);
    CHECK_ST(joint_writer_reset(NULL), JOINT_E_NULL);
    CHECK_ST(joint_writer_data(NULL, &data, &len), JOINT_E_NULL);
    CHECK_ST(joint_write_nil(NULL), JOINT_E_NULL);
    CHECK_ST(joint_write_bool(NULL, true), JOINT_E_NULL);
    CHECK_ST(joint_write_int(NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_write_uint(NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_write_double(NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_write_float(NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_write_str(NULL, (const uint8_t *)"a", 1), JOINT_E_NULL);
    CHECK_ST(joint_write_cstr(NULL, "a"), JOINT_E_NULL);
    CHECK_ST(joint_write_bin(NULL, (const uint8_t *)"a", 1), JOINT_E_NULL);
    CHECK_ST(joint_write_array(NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_write_map(NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_write_ext(NULL, 1, (const uint8_t *)"a", 1), JOINT_E_NULL);
    CHECK_ST(joint_write_raw(NULL, (const uint8_t *)"\xc0", 1), JOINT_E_NULL);
    CHECK(data == SENTINEL && len == 77);

    CHECK_OK(joint_writer_new(&w));
    CHECK_ST(joint_write_str(w, NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_write_cstr(w, NULL), JOINT_E_NULL);
    CHECK_ST(joint_write_bin(w, NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_write_ext(w, 1, NULL, 1), JOINT_E_NULL);
    CHECK_ST(joint_write_raw(w, NULL, 1), JOINT_E_NULL);
    CHECK_OK(joint_writer_data(w, &data, &len));
    CHECK(len == 0); /* failed writes appended nothing */
    joint_writer_free(w);

    data = SENTINEL;
    len = 77;
    CHECK_ST(joint_reader_new(NULL, 1, &r), JOINT_E_NULL);
    CHECK_ST(joint_reader_new((const uint8_t *)"\xc0", 1, NULL), JOINT_E_NULL);
    CHECK(r == SENTINEL);
    CHECK_ST(joint_reader_reset(NULL, (const uint8_t *)"\xc0", 1), JOINT_E_NULL);
    CHECK(joint_reader_remaining(NULL) == 0);
    CHECK(joint_reader_type(NULL) == JOINT_TYPE_NONE);
    CHECK_ST(joint_read_nil(NULL), JOINT_E_NULL);
    CHECK_ST(joint_read_bool(NULL, &b), JOINT_E_NULL);
    CHECK_ST(joint_read_int(NULL, &i), JOINT_E_NULL);
    CHECK_ST(joint_read_uint(NULL, &u), JOINT_E_NULL);
    CHECK_ST(joint_read_double(NULL, &d), JOINT_E_NULL);
    CHECK_ST(joint_read_str(NULL, &data, &len), JOINT_E_NULL);
    CHECK_ST(joint_read_bin(NULL, &data, &len), JOINT_E_NULL);
    CHECK_ST(joint_read_array(NULL, &count), JOINT_E_NULL);
    CHECK_ST(joint_read_map(NULL, &count), JOINT_E_NULL);
    CHECK_ST(joint_read_ext(NULL, &type, &data, &len), JOINT_E_NULL);
    CHECK_ST(joint_read_raw(NULL, &data, &len), JOINT_E_NULL);
    CHECK(b && i == 77 && u == 77 && d == 7.5 && count == 77 && type == 7 && data == SENTINEL && len == 77);

    CHECK_OK(joint_reader_new(NULL, 0, &r)); /* (NULL, 0) is an empty buffer */
    CHECK(r != SENTINEL && joint_reader_remaining(r) == 0);
    CHECK_ST(joint_reader_reset(r, NULL, 5), JOINT_E_NULL);
    joint_reader_free(r);

    CHECK(joint_error_message(NULL, 0, NULL, 0) == 0);
    CHECK(joint_error_message(NULL, 4, NULL, 0) == 0);
    CHECK_ST(joint_error_code(NULL, 4, &i), JOINT_E_NULL);
    CHECK_ST(joint_error_code(NULL, 0, &i), JOINT_E_TYPE);
    CHECK(i == 77);
}

/* Replies that fail still consume the request, and the peer is answered with an error. */
static void reply_null_result(joint_request *req, void *user_data)
{
    (void)user_data;
    CHECK_ST(joint_request_reply(req, NULL, 5), JOINT_E_NULL);
}
static void reply_invalid_result(joint_request *req, void *user_data)
{
    (void)user_data;
    CHECK_ST(joint_request_reply(req, (const uint8_t *)"\xc1", 1), JOINT_E_INVAL);
}
static void reply_null_error(joint_request *req, void *user_data)
{
    (void)user_data;
    CHECK_ST(joint_request_reply_error(req, NULL, 3), JOINT_E_NULL);
}
static void kwargs_of_positional(joint_request *req, void *user_data)
{
    const uint8_t *data = SENTINEL;
    size_t len = 77;
    (void)user_data;
    CHECK_ST(joint_request_kwargs(req, &data, &len), JOINT_E_STATE); /* params were an array */
    CHECK(data == SENTINEL && len == 77);
    CHECK_OK(joint_request_reply(req, (const uint8_t *)"\xc3", 1));
}

static void test_consuming_replies(void)
{
    static const char *methods[] = {"reply_null_result", "reply_invalid_result", "reply_null_error"};
    joint_buf *result = SENTINEL, *error = NULL;
    const uint8_t *err;
    size_t err_len, k;
    int64_t code;
    struct tu_pair p;

    tu_pair_open(&p, NULL);
    CHECK_OK(joint_ctx_register(p.ctx, methods[0], reply_null_result, NULL, NULL));
    CHECK_OK(joint_ctx_register(p.ctx, methods[1], reply_invalid_result, NULL, NULL));
    CHECK_OK(joint_ctx_register(p.ctx, methods[2], reply_null_error, NULL, NULL));
    CHECK_OK(joint_ctx_register(p.ctx, "kwargs", kwargs_of_positional, NULL, NULL));
    for (k = 0; k < 3; k++) {
        CHECK_ST(joint_conn_call_sync(p.client, methods[k], NULL, 0, 5000, &result, &error), JOINT_E_REMOTE);
        CHECK(result == SENTINEL);
        CHECK_OK(joint_buf_data(error, &err, &err_len));
        CHECK_OK(joint_error_code(err, err_len, &code));
        printf("%s: peer got error code %lld\n", methods[k], (long long)code);
        CHECK(code == JOINT_RPC_NOT_ANSWERED || code == JOINT_RPC_HANDLER_FAILED);
        joint_buf_free(error);
        error = NULL;
    }
    CHECK_OK(joint_conn_call_sync(p.client, "kwargs", NULL, 0, 5000, &result, &error));
    CHECK(error == NULL);
    joint_buf_free(result);
    CHECK(joint_ctx_unanswered(p.ctx) == 0);
    joint_conn_free(p.client);
    joint_ctx_free(p.ctx);
    joint_listener_free(p.listener);
}

int main(void)
{
    test_free_null();
    test_config();
    test_ctx_null();
    test_conn_null();
    test_response_request_null();
    test_msgpack_null();
    test_consuming_replies();
    CHECK(callbacks_run == 0);
    printf("api_null: ok\n");
    return 0;
}
