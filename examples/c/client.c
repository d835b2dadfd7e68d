/* client.c — a blocking MessagePack-RPC client (joint_conn_call_sync).
 *
 *   client URI            the address server.c printed, e.g. tcp://127.0.0.1:41234
 *
 * Against server.c it:
 *   1. calls add(2, 3) and checks the result is 5;
 *   2. calls echo("héllo") and checks the same string comes back;
 *   3. calls a method the server does not have and prints the peer's error message;
 *   4. calls sleep(200) with a 1 ms timeout and checks it fails with JOINT_E_TIMEOUT;
 *   5. sends the notification note("hello");
 *   6. sends the notification "shutdown" and waits until the server hangs up.
 * It exits 0 if every answer was as expected, 1 otherwise.
 *
 * Build: cc -std=c99 client.c -ljoint
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <joint.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define CALL_TIMEOUT_MS 5000 /* for calls that should succeed */

static int failures;

#define FAIL(...) (fprintf(stderr, "client: FAIL: " __VA_ARGS__), fputc('\n', stderr), failures++)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Call `method` with the params encoded in `params` (an array) and wait for the answer.
 * On JOINT_OK, *result_out holds the result; on JOINT_E_REMOTE, *error_out holds the
 * peer's error object; the caller frees both with joint_buf_free (NULL is fine). */
static joint_status call(joint_conn *conn, const char *method, joint_writer *params, int32_t timeout_ms,
                         joint_buf **result_out, joint_buf **error_out)
{
    const uint8_t *data;
    size_t len;
    joint_status st = joint_writer_data(params, &data, &len);
    *result_out = NULL;
    *error_out = NULL;
    if (st != JOINT_OK)
        return st;
    return joint_conn_call_sync(conn, method, data, len, timeout_ms, result_out, error_out);
}

/* Open a reader on a result buffer. The buffer must outlive the reader. */
static joint_reader *read_buf(const joint_buf *buf)
{
    const uint8_t *data;
    size_t len;
    joint_reader *r = NULL;
    if (joint_buf_data(buf, &data, &len) != JOINT_OK || joint_reader_new(data, len, &r) != JOINT_OK)
        return NULL;
    return r;
}

static void test_add(joint_ctx *ctx, joint_conn *conn, joint_writer *w)
{
    joint_buf *result, *error;
    joint_reader *r;
    int64_t sum = 0;
    joint_status st;

    joint_writer_reset(w);
    joint_write_array(w, 2); /* params: [2, 3] */
    joint_write_int(w, 2);
    joint_write_int(w, 3);
    st = call(conn, "add", w, CALL_TIMEOUT_MS, &result, &error);
    if (st != JOINT_OK) {
        FAIL("add: %s (%s)", joint_status_str(st), joint_ctx_last_error(ctx));
    } else if (!(r = read_buf(result)) || joint_read_int(r, &sum) != JOINT_OK || sum != 5) {
        FAIL("add(2, 3) returned %lld, want 5", (long long)sum);
        joint_reader_free(r);
    } else {
        printf("add(2, 3) = %lld\n", (long long)sum);
        joint_reader_free(r);
    }
    joint_buf_free(result);
    joint_buf_free(error);
}

static void test_echo(joint_ctx *ctx, joint_conn *conn, joint_writer *w)
{
    static const char text[] = "h\xc3\xa9llo"; /* "héllo" in UTF-8, whatever the source charset */
    joint_buf *result, *error;
    joint_reader *r;
    const uint8_t *s = NULL;
    size_t n = 0;
    joint_status st;

    joint_writer_reset(w);
    joint_write_array(w, 1);
    joint_write_cstr(w, text);
    st = call(conn, "echo", w, CALL_TIMEOUT_MS, &result, &error);
    if (st != JOINT_OK) {
        FAIL("echo: %s (%s)", joint_status_str(st), joint_ctx_last_error(ctx));
    } else if (!(r = read_buf(result)) || joint_read_str(r, &s, &n) != JOINT_OK ||
               n != strlen(text) || memcmp(s, text, n) != 0) {
        FAIL("echo returned something else than \"%s\"", text);
        joint_reader_free(r);
    } else {
        /* Strings read from MessagePack are not NUL-terminated: print with a length. */
        printf("echo(\"%s\") = \"%.*s\"\n", text, (int)n, (const char *)s);
        joint_reader_free(r);
    }
    joint_buf_free(result);
    joint_buf_free(error);
}

static void test_missing_method(joint_ctx *ctx, joint_conn *conn, joint_writer *w)
{
    joint_buf *result, *error;
    const uint8_t *err;
    size_t err_len;
    char message[256];
    int64_t code = -1;
    joint_status st;

    joint_writer_reset(w);
    joint_write_array(w, 0);
    st = call(conn, "no_such_method", w, CALL_TIMEOUT_MS, &result, &error);
    if (st != JOINT_E_REMOTE) {
        FAIL("no_such_method: got %s, want a remote error (%s)", joint_status_str(st), joint_ctx_last_error(ctx));
    } else {
        /* The error object is whatever the peer sent; joint_error_message() finds the text
         * in the usual shapes ("text", [code, "text"], {"message": "text"}). */
        joint_buf_data(error, &err, &err_len);
        joint_error_message(err, err_len, message, sizeof message);
        printf("no_such_method: remote error: %s\n", message);
        if (joint_error_code(err, err_len, &code) != JOINT_OK || code != JOINT_RPC_NO_METHOD)
            FAIL("no_such_method: error code %lld, want JOINT_RPC_NO_METHOD", (long long)code);
        if (message[0] == '\0')
            FAIL("no_such_method: the error has no message");
    }
    joint_buf_free(result);
    joint_buf_free(error);
}

static void test_timeout(joint_ctx *ctx, joint_conn *conn, joint_writer *w)
{
    joint_buf *result, *error;
    joint_status st;

    joint_writer_reset(w);
    joint_write_array(w, 1);
    joint_write_int(w, 200); /* the server answers after 200 ms ... */
    st = call(conn, "sleep", w, 1, &result, &error); /* ... but we wait only 1 ms */
    if (st != JOINT_E_TIMEOUT)
        FAIL("sleep(200) with a 1 ms timeout: got %s, want JOINT_E_TIMEOUT", joint_status_str(st));
    else
        printf("sleep(200) with a 1 ms timeout: %s (%s)\n", joint_status_str(st), joint_ctx_last_error(ctx));
    /* The late answer, when it comes, is ignored by joint. */
    joint_buf_free(result);
    joint_buf_free(error);
}

int main(int argc, char **argv)
{
    joint_ctx *ctx;
    joint_conn *conn;
    joint_writer *w;
    joint_status st;
    int64_t deadline;

    if (argc != 2) {
        fprintf(stderr, "usage: %s URI\n", argv[0]);
        return 2;
    }
    if (joint_ctx_new(NULL, &ctx) != JOINT_OK || joint_writer_new(&w) != JOINT_OK)
        return 1;

    /* Connecting does not block: calls made now are sent once the connection is up, and a
     * refused connection makes them fail. */
    if ((st = joint_ctx_connect(ctx, argv[1], &conn)) != JOINT_OK) {
        fprintf(stderr, "client: connect %s: %s (%s)\n", argv[1], joint_status_str(st), joint_ctx_last_error(ctx));
        joint_writer_free(w);
        joint_ctx_free(ctx);
        return 1;
    }

    test_add(ctx, conn, w);
    test_echo(ctx, conn, w);
    test_missing_method(ctx, conn, w);
    test_timeout(ctx, conn, w);

    /* Notifications get no answer: JOINT_OK only means the message was queued. */
    joint_writer_reset(w);
    joint_write_array(w, 1);
    joint_write_cstr(w, "hello");
    {
        const uint8_t *params;
        size_t len;
        joint_writer_data(w, &params, &len);
        if ((st = joint_conn_notify(conn, "note", params, len)) != JOINT_OK)
            FAIL("notify note: %s", joint_status_str(st));
    }
    if ((st = joint_conn_notify(conn, "shutdown", NULL, 0)) != JOINT_OK) /* (NULL, 0) sends [] */
        FAIL("notify shutdown: %s", joint_status_str(st));

    /* Keep the loop running until the server has read "shutdown" and closed the connection
     * (this also makes sure the queued notifications were sent before we exit). */
    deadline = now_ms() + CALL_TIMEOUT_MS;
    while (joint_conn_is_open(conn) && now_ms() < deadline)
        joint_ctx_wait(ctx, 100);
    if (joint_conn_is_open(conn))
        FAIL("the server did not close the connection after \"shutdown\"");
    else
        printf("server closed the connection\n");

    joint_conn_free(conn);
    joint_writer_free(w);
    joint_ctx_free(ctx);
    if (failures) {
        fprintf(stderr, "client: %d check(s) failed\n", failures);
        return 1;
    }
    printf("client: all checks passed\n");
    return 0;
}
