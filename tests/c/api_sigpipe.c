/* api_sigpipe: a C host keeps SIGPIPE's default action (death), and joint must never raise it.
 *   - A client sends a request for 4 MiB and closes at once (a FIN, nothing unread): the
 *     server answers within its linger time, its first write draws an RST, and the next
 *     fails with EPIPE — which writev(2) turns into SIGPIPE. Done 20 times.
 *   - A server whose accept callback refuses every connection closes it under a client that
 *     is writing a 4 MiB call, over tcp:// and tls://.
 * Each call completes with an error, and this process lives. (Rust test binaries ignore
 * SIGPIPE, which is why this is a C test.) */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static char dir[64];

static bool refuse(joint_conn *conn, void *user_data)
{
    (void)conn;
    ++*(int *)user_data;
    return false;
}

/* big(): 4 MiB of bin. */
static void on_big(joint_request *req, void *user_data)
{
    static uint8_t reply[5 + (4 << 20)];
    (void)user_data;
    reply[0] = 0xc6;
    reply[1] = 0x00;
    reply[2] = 0x40;
    CHECK_OK(joint_request_reply(req, reply, sizeof reply));
}

/* Connect to `uri` (tcp://127.0.0.1:PORT) with a plain socket, ask for big(), close at once. */
static void ask_and_leave(const char *uri)
{
    static const uint8_t request[] = {0x94, 0x00, 0x01, 0xa3, 'b', 'i', 'g', 0x90};
    struct sockaddr_in addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(strrchr(uri, ':') + 1));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(write(fd, request, sizeof request) == (ssize_t)sizeof request);
    close(fd);
}

static void big_call(joint_ctx *ctx, joint_conn *conn)
{
    static uint8_t params[6 + (4 << 20)];
    struct tu_outcome o = {0, 0, 0};
    params[0] = 0x91;
    params[1] = 0xc6; /* bin 32 */
    params[2] = 0x00;
    params[3] = 0x40;
    params[4] = 0x00;
    params[5] = 0x00;
    CHECK_OK(joint_conn_call(conn, "sink", params, sizeof params, 10000, tu_on_response, &o, NULL));
    TU_WAIT_FOR(ctx, o.done, 10000);
    CHECK(o.status != JOINT_OK);
    printf("  call ended: %s\n", joint_status_str(o.status));
}

int main(void)
{
    joint_ctx *ctx;
    joint_listener *tcp, *tls;
    joint_tls_config *server, *client;
    joint_conn *conn;
    int refused = 0;
    char cmd[512];

    signal(SIGPIPE, SIG_DFL);
    snprintf(dir, sizeof dir, "/tmp/joint-api-sigpipe-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ca"
             " -addext basicConstraints=critical,CA:FALSE -addext subjectAltName=IP:127.0.0.1 -keyout key.pem -out cert.pem"
             " >/dev/null 2>&1",
             dir);
    CHECK(system(cmd) == 0);

    CHECK_OK(joint_ctx_new(NULL, &ctx));
    CHECK_OK(joint_ctx_register(ctx, "big", on_big, NULL, NULL));
    CHECK_OK(joint_ctx_listen(ctx, "tcp://127.0.0.1:0", &tcp));
    for (int i = 0; i < 20; i++) {
        int64_t until = tu_now_ms() + 100;
        ask_and_leave(joint_listener_uri(tcp));
        while (tu_now_ms() < until)
            CHECK_OK(joint_ctx_wait(ctx, 10));
    }
    printf("  20 answers to clients that left: still here\n");
    joint_listener_free(tcp);

    CHECK_OK(joint_ctx_set_accept_cb(ctx, refuse, &refused, NULL));
    CHECK_OK(joint_ctx_listen(ctx, "tcp://127.0.0.1:0", &tcp));
    CHECK_OK(joint_tls_config_new(&server));
    snprintf(cmd, sizeof cmd, "%s/cert.pem", dir);
    {
        char key[128];
        snprintf(key, sizeof key, "%s/key.pem", dir);
        CHECK_OK(joint_tls_config_set_certificate_files(server, cmd, key));
    }
    CHECK_OK(joint_ctx_listen_tls(ctx, "tls://127.0.0.1:0", server, &tls));
    CHECK_OK(joint_tls_config_new(&client));
    CHECK_OK(joint_tls_config_set_ca_file(client, cmd));

    CHECK_OK(joint_ctx_connect(ctx, joint_listener_uri(tcp), &conn));
    big_call(ctx, conn);
    joint_conn_free(conn);
    CHECK_OK(joint_ctx_connect_tls(ctx, joint_listener_uri(tls), client, &conn));
    big_call(ctx, conn);
    joint_conn_free(conn);
    CHECK(refused == 2);

    joint_tls_config_free(client);
    joint_tls_config_free(server);
    joint_listener_free(tcp);
    joint_listener_free(tls);
    joint_ctx_free(ctx);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    printf("api_sigpipe: ok\n");
    return 0;
}
