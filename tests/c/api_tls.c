/* api_tls: TLS through the C API, with certificates made by the openssl command:
 *   - settings: a missing file, a key that is not the certificate's, and an unknown client
 *     auth mode are refused by the setter, and joint_tls_config_error says why;
 *   - mutual TLS: a call over tls:// with a client certificate; the server's OPEN callback
 *     sees the client's subject, DER and SHA-256 (checked against openssl's fingerprint), and
 *     joint_conn_tls_version; the client sees the server's subject;
 *   - a client without a certificate fails with JOINT_E_TLS and a message naming the cause,
 *     and the server announced nothing for it;
 *   - a client trusting another CA fails with JOINT_E_TLS ("not signed by a trusted CA"). */
#include "testutil.h"

#include <unistd.h>

static char dir[64];

static void sh(const char *cmd)
{
    char full[2048];
    snprintf(full, sizeof full, "cd %s && { %s ; } >/dev/null 2>&1", dir, cmd);
    if (system(full) != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        exit(1);
    }
}

static void make_certs(void)
{
    snprintf(dir, sizeof dir, "/tmp/joint-api-tls-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    /* Two CAs; a server certificate for 127.0.0.1; a client certificate for alice. */
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ca -keyout ca.key -out ca.pem");
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=other -keyout other.key -out other.pem");
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=server -keyout server.key -out server.csr"
       " && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > server.ext"
       " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem");
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /O=joint/CN=alice -keyout alice.key -out alice.csr"
       " && printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > alice.ext"
       " && openssl x509 -req -in alice.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile alice.ext -out alice.pem");
}

static const char *path(const char *name)
{
    static char buf[4][128];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
    return buf[i];
}

/* openssl's SHA-256 fingerprint of a PEM certificate, as 32 bytes. */
static void fingerprint(const char *pem, uint8_t out[32])
{
    char cmd[256], line[256], *p;
    FILE *f;
    int n = 0;
    snprintf(cmd, sizeof cmd, "openssl x509 -in %s -noout -fingerprint -sha256", pem);
    f = popen(cmd, "r");
    CHECK(f != NULL && fgets(line, sizeof line, f) != NULL);
    pclose(f);
    p = strchr(line, '=');
    CHECK(p != NULL);
    for (p++; n < 32 && *p; p += 3) {
        unsigned v;
        CHECK(sscanf(p, "%2x", &v) == 1);
        out[n++] = (uint8_t)v;
    }
    CHECK(n == 32);
}

struct server_seen {
    int opened;
    char subject[256];
    uint8_t sha256[32];
    size_t der_len;
    char version[16];
};

static void on_server_conn(joint_conn *conn, int32_t event, joint_status status, const char *reason, void *user_data)
{
    struct server_seen *seen = user_data;
    const uint8_t *der;
    (void)status;
    (void)reason;
    if (event != JOINT_CONN_OPEN)
        return;
    /* Our own client ends open here too: they see the server's certificate. */
    if (strstr(joint_conn_peer_subject(conn), "CN=server") != NULL)
        return;
    seen->opened++;
    snprintf(seen->subject, sizeof seen->subject, "%s", joint_conn_peer_subject(conn));
    snprintf(seen->version, sizeof seen->version, "%s", joint_conn_tls_version(conn) ? joint_conn_tls_version(conn) : "");
    if (joint_conn_peer_certificate(conn, &der, &seen->der_len) == JOINT_OK) {
        CHECK(seen->der_len > 4 && der[0] == 0x30);
        CHECK_OK(joint_conn_peer_sha256(conn, seen->sha256));
    }
}

struct outcome {
    int done;
    joint_status status;
    char message[512];
    int64_t value;
};

static void on_response(joint_conn *conn, const joint_response *resp, void *user_data)
{
    struct outcome *o = user_data;
    const uint8_t *data;
    size_t len;
    (void)conn;
    o->status = joint_response_status(resp);
    snprintf(o->message, sizeof o->message, "%s", joint_response_message(resp));
    if (o->status == JOINT_OK) {
        CHECK_OK(joint_response_result(resp, &data, &len));
        o->value = tu_dec_int(data, len);
    }
    o->done = 1;
}

/* Call sum(20, 22) through a new connection with `tls`. */
static struct outcome call_with(joint_ctx *ctx, const char *uri, const joint_tls_config *tls)
{
    struct outcome o;
    joint_conn *conn;
    memset(&o, 0, sizeof o);
    CHECK_OK(joint_ctx_connect_tls(ctx, uri, tls, &conn));
    CHECK_OK(joint_conn_call(conn, "sum", (const uint8_t *)"\x92\x14\x16", 3, 5000, on_response, &o, NULL));
    TU_WAIT_FOR(ctx, o.done, 5000);
    if (o.status == JOINT_OK) {
        CHECK(strstr(joint_conn_peer_subject(conn), "CN=server") != NULL);
        CHECK_STREQ(joint_conn_tls_version(conn), "TLSv1.3");
    }
    joint_conn_free(conn);
    return o;
}

int main(void)
{
    joint_ctx *ctx;
    joint_listener *listener;
    joint_tls_config *server_tls, *client_tls, *bare, *other, *ca_only;
    struct server_seen seen;
    struct outcome o;
    uint8_t want[32];
    char uri[128];

    make_certs();

    /* Setters check what they are given. */
    CHECK_OK(joint_tls_config_new(&bare));
    CHECK_STREQ(joint_tls_config_error(bare), "");
    CHECK_ST(joint_tls_config_set_certificate_files(bare, path("missing.pem"), path("server.key")), JOINT_E_INVAL);
    CHECK(strstr(joint_tls_config_error(bare), "missing.pem") != NULL);
    CHECK_ST(joint_tls_config_set_certificate_files(bare, path("server.pem"), path("alice.key")), JOINT_E_INVAL);
    CHECK(strstr(joint_tls_config_error(bare), "is not the key") != NULL);
    CHECK_ST(joint_tls_config_set_client_auth(bare, 7), JOINT_E_INVAL);
    CHECK_ST(joint_tls_config_set_ca_pem(bare, (const uint8_t *)"junk", 4), JOINT_E_INVAL);
    CHECK_ST(joint_tls_config_set_certificate_files(NULL, "a", "b"), JOINT_E_NULL);

    CHECK_OK(joint_tls_config_new(&server_tls));
    CHECK_OK(joint_tls_config_set_certificate_files(server_tls, path("server.pem"), path("server.key")));
    CHECK_OK(joint_tls_config_set_ca_file(server_tls, path("ca.pem")));
    CHECK_OK(joint_tls_config_set_client_auth(server_tls, JOINT_TLS_CLIENT_AUTH_REQUIRED));

    CHECK_OK(joint_ctx_new(NULL, &ctx));
    /* A tls:// listener needs settings with a certificate. */
    CHECK_ST(joint_ctx_listen(ctx, "tls://127.0.0.1:0", NULL), JOINT_E_INVAL);
    CHECK_ST(joint_ctx_listen_tls(ctx, "tls://127.0.0.1:0", bare, NULL), JOINT_E_INVAL);
    CHECK(strstr(joint_ctx_last_error(ctx), "certificate") != NULL);
    CHECK_OK(joint_ctx_register(ctx, "sum", tu_handle_sum, NULL, NULL));
    memset(&seen, 0, sizeof seen);
    CHECK_OK(joint_ctx_set_conn_cb(ctx, on_server_conn, &seen, NULL));
    CHECK_OK(joint_ctx_listen_tls(ctx, "tls://127.0.0.1:0", server_tls, &listener));
    joint_tls_config_free(server_tls); /* the listener keeps its own copy */
    snprintf(uri, sizeof uri, "%s", joint_listener_uri(listener));
    CHECK(strncmp(uri, "tls://127.0.0.1:", 16) == 0);

    /* Mutual TLS. */
    CHECK_OK(joint_tls_config_new(&client_tls));
    CHECK_OK(joint_tls_config_set_ca_file(client_tls, path("ca.pem")));
    if (joint_tls_config_set_certificate_files(client_tls, path("alice.pem"), path("alice.key")) != JOINT_OK) {
        fprintf(stderr, "client certificate: %s\n", joint_tls_config_error(client_tls));
        return 1;
    }
    o = call_with(ctx, uri, client_tls);
    CHECK_OK(o.status);
    CHECK(o.value == 42);
    CHECK(strstr(seen.subject, "CN=alice") != NULL && strstr(seen.subject, "O=joint") != NULL);
    CHECK_STREQ(seen.version, "TLSv1.3");
    fingerprint(path("alice.pem"), want);
    CHECK(memcmp(seen.sha256, want, 32) == 0);
    printf("  mutual TLS: client subject \"%s\", %zu DER bytes\n", seen.subject, seen.der_len);

    /* No client certificate: refused, and named. */
    seen.opened = 0;
    CHECK_OK(joint_tls_config_new(&ca_only));
    CHECK_OK(joint_tls_config_set_ca_file(ca_only, path("ca.pem")));
    o = call_with(ctx, uri, ca_only);
    CHECK_ST(o.status, JOINT_E_TLS);
    printf("  no client certificate: %s\n", o.message);
    CHECK(strstr(o.message, "requires a client certificate") != NULL);

    /* Trusting another CA. */
    CHECK_OK(joint_tls_config_new(&other));
    CHECK_OK(joint_tls_config_set_ca_file(other, path("other.pem")));
    o = call_with(ctx, uri, other);
    CHECK_ST(o.status, JOINT_E_TLS);
    printf("  another CA: %s\n", o.message);
    CHECK(strstr(o.message, "not signed by a trusted CA") != NULL);
    /* The server announced none of the failed attempts. */
    CHECK(seen.opened == 0);

    joint_tls_config_free(client_tls);
    joint_tls_config_free(other);
    joint_tls_config_free(bare);
    joint_tls_config_free(ca_only);
    joint_listener_free(listener);
    joint_ctx_free(ctx);
    {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK(system(cmd) == 0);
    }
    printf("api_tls: ok\n");
    return 0;
}
