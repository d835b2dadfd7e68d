/* C side of the Go binding: trampolines that turn the library's void* user data into the
 * uintptr_t values of runtime/cgo handles, and a loop step. No Go pointer ever crosses. */
#ifndef JOINT_GO_BRIDGE_H
#define JOINT_GO_BRIDGE_H

#include <stdint.h>
#include <stdlib.h>
#include "joint.h"

/* The binding's own wake-up eventfd (non-blocking, close-on-exec); -1 on failure. */
int jg_eventfd(void);
void jg_close(int fd);
/* Wait until the context fd or the eventfd is readable or joint_ctx_timeout_ms passes, then
 * drain the eventfd. */
void jg_wait(joint_ctx *ctx, int fd, int efd);

joint_status jg_register(joint_ctx *ctx, const char *method, uintptr_t h);
joint_status jg_set_fallback(joint_ctx *ctx, uintptr_t h);
joint_status jg_set_notification_cb(joint_ctx *ctx, uintptr_t h);
joint_status jg_set_conn_cb(joint_ctx *ctx, uintptr_t h);
joint_status jg_config_set_log_cb(joint_config *config, int32_t level, uintptr_t h);
joint_status jg_call(joint_conn *conn, const char *method, const uint8_t *params, size_t len,
                     const joint_call_opts *opts, uintptr_t h, uint64_t *id_out);
joint_status jg_call_opts_set_event_cb(joint_call_opts *opts, uintptr_t h);
joint_status jg_request_set_event_cb(joint_request *req, uintptr_t h);
joint_status jg_spawn(joint_ctx *ctx, char **argv, joint_conn **conn_out);

#endif
