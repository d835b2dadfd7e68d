/* joint_batch — the joint side of the interop matrix when joint is the CLIENT.
 *
 * A generic, type-blind batch client over the public C API (include/joint.h): the harness
 * (tests/interop/harness.py) builds every MessagePack payload itself and checks every answer;
 * this program only moves bytes through joint, so it exercises joint's real client path
 * (connect, pipelined calls, notifications, msgid matching, out-of-order completion).
 *
 *   joint_batch URI [TIMEOUT_MS [CA_FILE [CERT_FILE KEY_FILE]]] < script > results
 *
 * A tls:// URI connects with TLS, trusting the CAs in CA_FILE (the system's without one) and
 * presenting CERT_FILE/KEY_FILE when the server asks for a client certificate.
 *
 * script: records back to back
 *   'C' u32 method_len, method, u32 params_len, params   issue a call now (do not wait)
 *   'N' u32 method_len, method, u32 params_len, params   send a notification now
 *   'W'                                                  wait until every call issued so far
 *                                                        has completed
 *   end of input                                         = 'W', then exit
 * results: one record per completed call, in COMPLETION order
 *   u32 call_index (0-based, issue order), i32 joint_status, u32 len, bytes
 *   bytes = the result (JOINT_OK), the peer's error object (JOINT_E_REMOTE), or
 *   joint_response_message() text (any other status).
 * Integers are little-endian. Exit status: 0 when the script ran to its end (call failures
 * are reported in the results, not here); 3 on bad input or a failed API call.
 *
 * It also serves `echo(x)` on the connection, for servers that call back into their client
 * while its call is pending (the callback check).
 */
#include <joint.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *out;
static size_t outstanding;

static void die(const char *what, joint_status st, joint_ctx *ctx) {
    fprintf(stderr, "joint_batch: %s: %s (%s)\n", what, joint_status_str(st), ctx ? joint_ctx_last_error(ctx) : "");
    exit(3);
}

static void put_u32(uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    fwrite(b, 1, 4, out);
}

static void on_response(joint_conn *conn, const joint_response *resp, void *user_data) {
    (void)conn;
    uint32_t index = (uint32_t)(uintptr_t)user_data;
    joint_status st = joint_response_status(resp);
    const uint8_t *data = NULL;
    size_t len = 0;
    if (st == JOINT_OK) {
        joint_response_result(resp, &data, &len);
    } else if (st == JOINT_E_REMOTE) {
        joint_response_error(resp, &data, &len);
    } else {
        const char *msg = joint_response_message(resp);
        data = (const uint8_t *)msg;
        len = strlen(msg);
    }
    put_u32(index);
    put_u32((uint32_t)st);
    put_u32((uint32_t)len);
    if (len) fwrite(data, 1, len, out);
    outstanding--;
}

/* echo(x): answer with x, byte for byte. */
static void serve_echo(joint_request *req, void *user_data) {
    (void)user_data;
    const uint8_t *params, *value;
    size_t len, value_len;
    uint32_t n;
    joint_reader *r = NULL;
    joint_request_params(req, &params, &len);
    if (joint_reader_new(params, len, &r) == JOINT_OK && joint_read_array(r, &n) == JOINT_OK && n == 1 &&
        joint_read_raw(r, &value, &value_len) == JOINT_OK) {
        joint_request_reply(req, value, value_len); /* copies before the request (and params) go */
    } else {
        joint_request_reply_error_msg(req, JOINT_RPC_INVALID_PARAMS, "echo(x) takes one argument");
    }
    joint_reader_free(r);
}

static int get_u32(FILE *in, uint32_t *v) {
    unsigned char b[4];
    if (fread(b, 1, 4, in) != 4) return -1;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

/* Read a u32-prefixed field; NUL-terminated for convenience (methods are C strings). */
static uint8_t *get_field(FILE *in, uint32_t *len) {
    if (get_u32(in, len)) return NULL;
    uint8_t *buf = malloc((size_t)*len + 1);
    if (!buf || fread(buf, 1, *len, in) != *len) {
        free(buf);
        return NULL;
    }
    buf[*len] = 0;
    return buf;
}

static void wait_all(joint_ctx *ctx) {
    while (outstanding > 0) {
        joint_status st = joint_ctx_wait(ctx, -1);
        if (st != JOINT_OK) die("joint_ctx_wait", st, ctx);
    }
    fflush(out);
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 6 || argc == 5) {
        fprintf(stderr, "usage: joint_batch URI [TIMEOUT_MS [CA_FILE [CERT_FILE KEY_FILE]]] < script > results\n");
        return 3;
    }
    int32_t timeout_ms = argc >= 3 ? atoi(argv[2]) : 60000;
    out = stdout;
    static char outbuf[1 << 16];
    setvbuf(out, outbuf, _IOFBF, sizeof outbuf);

    joint_ctx *ctx;
    joint_status st = joint_ctx_new(NULL, &ctx);
    if (st) die("joint_ctx_new", st, NULL);
    st = joint_ctx_register(ctx, "echo", serve_echo, NULL, NULL);
    if (st) die("joint_ctx_register", st, ctx);
    joint_conn *conn;
    if (strncmp(argv[1], "tls://", 6) == 0) {
        joint_tls_config *tls;
        st = joint_tls_config_new(&tls);
        if (st) die("joint_tls_config_new", st, ctx);
        if (st == JOINT_OK && argc >= 4) st = joint_tls_config_set_ca_file(tls, argv[3]);
        if (st == JOINT_OK && argc == 6) st = joint_tls_config_set_certificate_files(tls, argv[4], argv[5]);
        if (st) {
            fprintf(stderr, "joint_batch: TLS settings: %s\n", joint_tls_config_error(tls));
            return 3;
        }
        st = joint_ctx_connect_tls(ctx, argv[1], tls, &conn);
        joint_tls_config_free(tls);
        if (st) die("joint_ctx_connect_tls", st, ctx);
    } else {
        st = joint_ctx_connect(ctx, argv[1], &conn);
        if (st) die("joint_ctx_connect", st, ctx);
    }

    uint32_t next_index = 0;
    int kind;
    while ((kind = getchar()) != EOF) {
        if (kind == 'W') {
            wait_all(ctx);
            continue;
        }
        if (kind != 'C' && kind != 'N') {
            fprintf(stderr, "joint_batch: bad record kind %d\n", kind);
            return 3;
        }
        uint32_t mlen, plen;
        uint8_t *method = get_field(stdin, &mlen);
        uint8_t *params = method ? get_field(stdin, &plen) : NULL;
        if (!params) {
            fprintf(stderr, "joint_batch: truncated record\n");
            return 3;
        }
        if (kind == 'C') {
            st = joint_conn_call(conn, (const char *)method, params, plen, timeout_ms, on_response,
                                 (void *)(uintptr_t)next_index, NULL);
            if (st) die("joint_conn_call", st, ctx);
            next_index++;
            outstanding++;
        } else {
            st = joint_conn_notify(conn, (const char *)method, params, plen);
            if (st) die("joint_conn_notify", st, ctx);
        }
        free(method);
        free(params);
    }
    wait_all(ctx);
    joint_conn_free(conn);
    /* Let the close go out before the context goes away. */
    joint_ctx_process(ctx);
    joint_ctx_free(ctx);
    return 0;
}
