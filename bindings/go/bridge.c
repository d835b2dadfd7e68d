#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bridge.h"
#include "_cgo_export.h"

int jg_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

void jg_close(int fd) { (void)close(fd); }

void jg_wait(joint_ctx *ctx, int fd, int efd) {
    int timeout = joint_ctx_timeout_ms(ctx);
    if (timeout != 0) {
        struct pollfd p[2] = {
            { .fd = fd, .events = POLLIN, .revents = 0 },
            { .fd = efd, .events = POLLIN, .revents = 0 },
        };
        /* EINTR (signals aimed at the Go runtime) just ends the wait early. */
        (void)poll(p, 2, timeout);
    }
    uint64_t count;
    (void)read(efd, &count, sizeof count);
}

static void free_tramp(void *ud) { goFreeHandle((uintptr_t)ud); }

static void request_tramp(joint_request *req, void *ud) { goRequestCb(req, (uintptr_t)ud); }

static void notification_tramp(joint_conn *conn, const uint8_t *method, size_t method_len,
                               const uint8_t *params, size_t params_len, void *ud) {
    goNotificationCb(conn, (uint8_t *)method, method_len, (uint8_t *)params, params_len, (uintptr_t)ud);
}

static void conn_tramp(joint_conn *conn, int32_t event, joint_status status, const char *reason, void *ud) {
    goConnCb(conn, event, status, (char *)reason, (uintptr_t)ud);
}

static void log_tramp(int32_t level, const char *message, void *ud) {
    goLogCb(level, (char *)message, (uintptr_t)ud);
}

static void response_tramp(joint_conn *conn, const joint_response *resp, void *ud) {
    goResponseCb(conn, (joint_response *)resp, (uintptr_t)ud);
}

static void call_event_tramp(joint_conn *conn, uint64_t call_id, int32_t event, const uint8_t *data,
                             size_t len, void *ud) {
    goCallEventCb(conn, call_id, event, (uint8_t *)data, len, (uintptr_t)ud);
}

static void request_event_tramp(joint_request *req, int32_t event, const uint8_t *data, size_t len, void *ud) {
    goRequestEventCb(req, event, (uint8_t *)data, len, (uintptr_t)ud);
}

joint_status jg_register(joint_ctx *ctx, const char *method, uintptr_t h) {
    return joint_ctx_register(ctx, method, request_tramp, (void *)h, free_tramp);
}

joint_status jg_set_fallback(joint_ctx *ctx, uintptr_t h) {
    return joint_ctx_set_fallback(ctx, request_tramp, (void *)h, free_tramp);
}

joint_status jg_set_notification_cb(joint_ctx *ctx, uintptr_t h) {
    return joint_ctx_set_notification_cb(ctx, notification_tramp, (void *)h, free_tramp);
}

joint_status jg_set_conn_cb(joint_ctx *ctx, uintptr_t h) {
    return joint_ctx_set_conn_cb(ctx, conn_tramp, (void *)h, free_tramp);
}

joint_status jg_config_set_log_cb(joint_config *config, int32_t level, uintptr_t h) {
    return joint_config_set_log_cb(config, level, log_tramp, (void *)h, free_tramp);
}

joint_status jg_call(joint_conn *conn, const char *method, const uint8_t *params, size_t len,
                     const joint_call_opts *opts, uintptr_t h, uint64_t *id_out) {
    return joint_conn_call_opts(conn, method, params, len, opts, response_tramp, (void *)h, id_out);
}

/* The call's handle is the event callback's user data too; the call's completion deletes
 * it, so the options do not free it. */
joint_status jg_call_opts_set_event_cb(joint_call_opts *opts, uintptr_t h) {
    return joint_call_opts_set_event_cb(opts, call_event_tramp, (void *)h, NULL);
}

joint_status jg_request_set_event_cb(joint_request *req, uintptr_t h) {
    return joint_request_set_event_cb(req, request_event_tramp, (void *)h, free_tramp);
}

joint_status jg_spawn(joint_ctx *ctx, char **argv, joint_conn **conn_out) {
    return joint_ctx_spawn(ctx, (const char *const *)argv, conn_out);
}
