/* api_access: who may connect. A Unix listener with ?mode=0600 has that mode; the accept
 * callback sees each accepted connection's peer address and credentials (pid, uid, gid of
 * this very process) before its OPEN event, and refusing by uid closes the connection
 * without any event and without serving its request (the client's call fails with
 * JOINT_E_CLOSED); once admitted again, calls are served. Valgrind (leak_access) checks
 * the handles of refused connections are freed. */
#include "testutil.h"

#include <sys/stat.h>
#include <unistd.h>

struct gate {
    int asked, opened, refuse_uid, served, refused_call_done;
    joint_status refused_call_status;
    joint_conn *refused_call_conn;
    char address[128];
    int32_t pid;
    uint32_t uid, gid;
};

/* Completes the call the accept callback made on a connection it then refused. */
static void on_refused_call(joint_conn *conn, const joint_response *resp, void *user_data)
{
    struct gate *g = user_data;
    g->refused_call_done++;
    g->refused_call_status = joint_response_status(resp);
    g->refused_call_conn = conn;
}

static bool on_accept(joint_conn *conn, void *user_data)
{
    struct gate *g = user_data;
    bool serve;
    const char *address = joint_conn_peer_address(conn);
    g->asked++;
    snprintf(g->address, sizeof g->address, "%s", address ? address : "(null)");
    CHECK_OK(joint_conn_peer_credentials(conn, &g->pid, &g->uid, &g->gid));
    CHECK_OK(joint_conn_peer_credentials(conn, NULL, NULL, NULL));
    serve = g->refuse_uid < 0 || g->uid != (uint32_t)g->refuse_uid;
    if (!serve) /* a call made on it before refusing ends as cancelled, with no handle left */
        CHECK_OK(joint_conn_call(conn, "sum", NULL, 0, -1, on_refused_call, g, NULL));
    return serve;
}

static void on_conn(joint_conn *conn, int32_t event, joint_status status, const char *reason, void *user_data)
{
    struct gate *g = user_data;
    (void)status;
    (void)reason;
    /* Only the accepted end: the client's own connections have a named peer. */
    if (event == JOINT_CONN_OPEN && strcmp(joint_conn_peer_address(conn), "unix:") == 0)
        g->opened++;
}

static void on_sum(joint_request *req, void *user_data)
{
    ((struct gate *)user_data)->served++;
    tu_handle_sum(req, NULL);
}

static joint_status call_sum(joint_ctx *ctx, const char *uri)
{
    struct tu_outcome o = {0, 0, 0};
    joint_conn *conn;
    CHECK_OK(joint_ctx_connect(ctx, uri, &conn));
    CHECK_OK(joint_conn_call(conn, "sum", (const uint8_t *)"\x92\x14\x16", 3, 5000, tu_on_response, &o, NULL));
    TU_WAIT_FOR(ctx, o.done, 5000);
    joint_conn_free(conn);
    return o.status;
}

int main(void)
{
    joint_ctx *ctx;
    joint_listener *listener, *tcp_listener;
    joint_conn *tcp;
    struct gate g;
    struct stat st;
    char path[64], uri[128];
    int32_t pid;

    snprintf(path, sizeof path, "/tmp/joint-api-access-%d.sock", (int)getpid());
    unlink(path);
    memset(&g, 0, sizeof g);
    g.refuse_uid = (int)getuid();

    CHECK_OK(joint_ctx_new(NULL, &ctx));
    CHECK_OK(joint_ctx_register(ctx, "sum", on_sum, &g, NULL));
    CHECK_OK(joint_ctx_set_conn_cb(ctx, on_conn, &g, NULL));
    CHECK_OK(joint_ctx_set_accept_cb(ctx, on_accept, &g, NULL));
    snprintf(uri, sizeof uri, "unix://%s?mode=0600", path);
    CHECK_OK(joint_ctx_listen(ctx, uri, &listener));
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);
    snprintf(uri, sizeof uri, "%s", joint_listener_uri(listener));
    CHECK(strncmp(uri, "unix:///tmp/joint-api-access-", 29) == 0 && strchr(uri, '?') == NULL);
    CHECK_ST(joint_ctx_connect(ctx, "unix:///tmp/x.sock?mode=0600", &tcp), JOINT_E_ADDRESS);
    CHECK(strstr(joint_ctx_last_error(ctx), "for listeners") != NULL);

    /* Refused by uid: no request served, no OPEN, the call fails with E_CLOSED. */
    CHECK_ST(call_sum(ctx, uri), JOINT_E_CLOSED);
    CHECK(g.asked == 1 && g.served == 0 && g.opened == 0);
    CHECK(g.refused_call_done == 1 && g.refused_call_status == JOINT_E_CANCELLED && g.refused_call_conn == NULL);
    CHECK_STREQ(g.address, "unix:");
    CHECK(g.pid == (int32_t)getpid() && g.uid == (uint32_t)getuid() && g.gid == (uint32_t)getgid());
    printf("  refused pid %d uid %u gid %u (%s)\n", (int)g.pid, (unsigned)g.uid, (unsigned)g.gid, g.address);

    /* Admitted. */
    g.refuse_uid = -1;
    CHECK_ST(call_sum(ctx, uri), JOINT_OK);
    CHECK(g.asked == 2 && g.served == 1 && g.opened == 1);

    /* A NULL callback serves everyone; TCP connections have an address but no credentials. */
    CHECK_OK(joint_ctx_set_accept_cb(ctx, NULL, NULL, NULL));
    CHECK_OK(joint_ctx_listen(ctx, "tcp://127.0.0.1:0", &tcp_listener));
    CHECK_OK(joint_ctx_connect(ctx, joint_listener_uri(tcp_listener), &tcp));
    TU_WAIT_FOR(ctx, joint_conn_peer_address(tcp)[0] != '\0', 5000);
    CHECK_STREQ(joint_conn_peer_address(tcp), joint_listener_uri(tcp_listener));
    CHECK_ST(joint_conn_peer_credentials(tcp, &pid, NULL, NULL), JOINT_E_STATE);
    CHECK_ST(joint_conn_peer_credentials(NULL, &pid, NULL, NULL), JOINT_E_NULL);
    CHECK_STREQ(joint_conn_peer_address(NULL), ""); /* not known: "", as for every string getter */
    joint_conn_free(tcp);
    joint_listener_free(tcp_listener);
    joint_listener_free(listener);

    joint_ctx_free(ctx);
    CHECK(stat(path, &st) != 0); /* the socket file went with its listener */
    printf("api_access: ok\n");
    return 0;
}
