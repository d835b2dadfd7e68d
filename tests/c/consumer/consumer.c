/* A program that uses an installed (or vendored) joint, built by build_install.sh three
 * ways: CMake find_package, pkg-config, CMake add_subdirectory.
 *
 *   consumer static|shared [PATH_PREFIX]
 *
 * Checks which libjoint it runs with (statically linked, or a shared library whose path
 * starts with PATH_PREFIX, compared after resolving symbolic links: on merged-/usr systems
 * the loader may name /lib/... for /usr/lib/...), that it is the version the header says,
 * and that a call works. */
#define _GNU_SOURCE /* dladdr */
#include <joint.h>

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what)
{
    fprintf(stderr, "consumer: FAIL: %s\n", what);
    return 1;
}

static void sum(joint_request *req, void *user_data)
{
    (void)user_data;
    joint_request_reply(req, (const uint8_t *)"\x2a", 1); /* 42 */
}

int main(int argc, char **argv)
{
    Dl_info info;
    joint_ctx *ctx;
    joint_listener *l;
    joint_conn *conn;
    joint_buf *result = NULL, *error = NULL;
    const uint8_t *data;
    size_t len;
    int is_static;

    if (argc < 2)
        return fail("usage: consumer static|shared [PATH_PREFIX]");
    if (!dladdr((void *)joint_version, &info) || !info.dli_fname)
        return fail("dladdr");
    is_static = strstr(info.dli_fname, "libjoint.so") == NULL;
    printf("consumer: joint %s from %s (%s)\n", joint_version(), info.dli_fname, is_static ? "static" : "shared");
    if (is_static != (strcmp(argv[1], "static") == 0))
        return fail("linked the wrong way");
    if (argc > 2) {
        char loaded[PATH_MAX], expected[PATH_MAX];
        if (!realpath(info.dli_fname, loaded) || !realpath(argv[2], expected))
            return fail("realpath");
        if (strncmp(loaded, expected, strlen(expected)) != 0 || loaded[strlen(expected)] != '/')
            return fail("libjoint.so loaded from the wrong place");
    }
    if (joint_version_number() != JOINT_VERSION_NUMBER)
        return fail("header and library versions differ");

    if (joint_ctx_new(NULL, &ctx) != JOINT_OK ||
        joint_ctx_register(ctx, "answer", sum, NULL, NULL) != JOINT_OK ||
        joint_ctx_listen(ctx, "tcp://127.0.0.1:0", &l) != JOINT_OK ||
        joint_ctx_connect(ctx, joint_listener_uri(l), &conn) != JOINT_OK ||
        joint_conn_call_sync(conn, "answer", NULL, 0, 5000, &result, &error) != JOINT_OK ||
        joint_buf_data(result, &data, &len) != JOINT_OK || len != 1 || data[0] != 0x2a)
        return fail("round trip");
    joint_buf_free(result);
    joint_conn_free(conn);
    joint_ctx_free(ctx);
    printf("consumer: ok\n");
    return 0;
}
