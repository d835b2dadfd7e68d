/* bench/joint_server.c - the benchmark's joint server: method "add" [a, b] -> a + b,
 * answered inline from the handler, written in C against the public API (joint.h) exactly
 * as a user would. Usage: joint_server PORT */
#include <joint.h>

#include <stdio.h>
#include <stdlib.h>

struct scratch {
    joint_reader *reader;
    joint_writer *writer;
};

static void add(joint_request *req, void *user_data) {
    struct scratch *s = user_data;
    const uint8_t *params;
    size_t params_len;
    uint32_t count;
    int64_t a, b;
    joint_request_params(req, &params, &params_len);
    joint_reader_reset(s->reader, params, params_len);
    if (joint_read_array(s->reader, &count) != JOINT_OK || count != 2 ||
        joint_read_int(s->reader, &a) != JOINT_OK || joint_read_int(s->reader, &b) != JOINT_OK) {
        joint_request_reply_error_msg(req, JOINT_RPC_INVALID_PARAMS, "add(a, b) takes two integers");
        return;
    }
    const uint8_t *result;
    size_t result_len;
    joint_writer_reset(s->writer);
    joint_write_int(s->writer, a + b);
    joint_writer_data(s->writer, &result, &result_len);
    joint_request_reply(req, result, result_len);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%s", argv[1]);
    struct scratch s;
    joint_ctx *ctx;
    if (joint_ctx_new(NULL, &ctx) != JOINT_OK || joint_reader_new(NULL, 0, &s.reader) != JOINT_OK ||
        joint_writer_new(&s.writer) != JOINT_OK) {
        return 1;
    }
    if (joint_ctx_listen(ctx, uri, NULL) != JOINT_OK) {
        fprintf(stderr, "listen %s: %s\n", uri, joint_ctx_last_error(ctx));
        return 1;
    }
    joint_ctx_register(ctx, "add", add, &s, NULL);
    for (;;) {
        joint_status st = joint_ctx_wait(ctx, -1);
        if (st != JOINT_OK) {
            fprintf(stderr, "joint_ctx_wait: %s\n", joint_ctx_last_error(ctx));
            return 1;
        }
    }
}
