// cpp_tls: TLS in joint.hpp, with certificates made by the openssl command: TlsConfig's
// setters report what is wrong; a call over tls:// with mutual TLS, the handler seeing the
// client's subject, certificate and fingerprint through Request::conn(); a client without a
// certificate and a client trusting another CA fail with Error::is_tls() and a message
// naming the cause, while the server goes on serving. on_accept: refusing by certificate
// subject and by Unix peer uid (no request served), peer_address() and peer_credentials().
#include "test_util.hpp"

#include <cstdlib>
#include <optional>
#include <vector>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

using joint::ClientAuth;
using joint::Context;
using joint::Request;
using joint::TlsConfig;

namespace {

std::string dir;

std::string path(const char *name) { return dir + "/" + name; }

bool sh(const std::string &cmd) { return std::system(("cd " + dir + " && { " + cmd + " ; } >/dev/null 2>&1").c_str()) == 0; }

struct Tls : ::testing::Test {
    static void SetUpTestSuite() {
        char tmpl[] = "/tmp/joint-cpp-tls-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        const std::string ec = "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes ";
        ASSERT_TRUE(sh(ec + "-x509 -days 2 -subj /CN=ca -keyout ca.key -out ca.pem"));
        ASSERT_TRUE(sh(ec + "-x509 -days 2 -subj /CN=other -keyout other.key -out other.pem"));
        ASSERT_TRUE(sh(ec + "-subj /CN=server -keyout server.key -out server.csr"
                            " && printf 'subjectAltName=IP:127.0.0.1\\n' > server.ext"
                            " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
                            " -extfile server.ext -out server.pem"));
        ASSERT_TRUE(sh(ec + "-subj /O=joint/CN=bob -keyout bob.key -out bob.csr"
                            " && printf 'basicConstraints=CA:FALSE\\n' > bob.ext"
                            " && openssl x509 -req -in bob.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
                            " -extfile bob.ext -out bob.pem"));
    }
    static void TearDownTestSuite() { (void)sh("rm -f *.pem *.key *.csr *.ext *.srl && cd / && rmdir " + dir); }

    void SetUp() override {
        ctx = Context::create().value();
        auto tls = TlsConfig::create().value();
        JT_ASSERT_OK(tls.set_certificate_files(path("server.pem"), path("server.key")));
        JT_ASSERT_OK(tls.set_ca_file(path("ca.pem")));
        JT_ASSERT_OK(tls.set_client_auth(ClientAuth::Required));
        // whoami(): the subject of the caller's certificate and its TLS version.
        JT_ASSERT_OK(ctx.on("whoami", [this](Request req) {
            auto conn = req.conn();
            seen_der = std::string(reinterpret_cast<const char *>(conn.peer_certificate().data()), conn.peer_certificate().size());
            seen_sha = conn.peer_sha256().has_value();
            (void)req.reply_value(std::string(conn.peer_subject()) + " " + std::string(conn.tls_version()));
        }));
        auto uri = ctx.listen_tls("tls://127.0.0.1:0", tls);
        JT_ASSERT_OK(uri);
        server_uri = *uri;
    }

    TlsConfig client(const char *ca, bool with_cert) {
        auto tls = TlsConfig::create().value();
        EXPECT_TRUE(tls.set_ca_file(path(ca)).ok());
        if (with_cert) {
            EXPECT_TRUE(tls.set_certificate_files(path("bob.pem"), path("bob.key")).ok());
        }
        return tls;
    }

    Context ctx;
    std::string server_uri, seen_der;
    bool seen_sha = false;
};

TEST_F(Tls, SettersSayWhatIsWrong) {
    auto tls = TlsConfig::create().value();
    auto missing = tls.set_ca_file(path("nope.pem"));
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code(), JOINT_E_INVAL);
    EXPECT_NE(missing.error().message().find("nope.pem"), std::string::npos) << missing.error().message();
    auto wrong_key = tls.set_certificate_files(path("server.pem"), path("bob.key"));
    ASSERT_FALSE(wrong_key);
    EXPECT_NE(wrong_key.error().message().find("not the key of the certificate"), std::string::npos) << wrong_key.error().message();
    JT_EXPECT_ERR(tls.set_server_name(std::string("a\0b", 3)), JOINT_E_INVAL);
    JT_EXPECT_ERR(tls.set_server_name("not a name!"), JOINT_E_INVAL);
    // A listener needs a certificate.
    JT_EXPECT_ERR(ctx.listen_tls("tls://127.0.0.1:0", tls), JOINT_E_INVAL);
}

TEST_F(Tls, MutualTlsCallAndPeerIdentity) {
    auto conn = ctx.connect_tls(server_uri, client("ca.pem", true));
    JT_ASSERT_OK(conn);
    auto r = conn->call_sync("whoami", {}, 5000);
    JT_ASSERT_OK(r);
    EXPECT_EQ(r->as<std::string>().value(), "O=joint, CN=bob TLSv1.3");
    EXPECT_TRUE(seen_sha);
    EXPECT_GT(seen_der.size(), 100u);
    EXPECT_EQ(static_cast<unsigned char>(seen_der[0]), 0x30); // a DER SEQUENCE
    // The client sees the server's certificate too.
    EXPECT_EQ(conn->peer_subject(), "CN=server");
    EXPECT_EQ(conn->tls_version(), "TLSv1.3");
    EXPECT_TRUE(conn->peer_sha256().has_value());
    // A plaintext connection has none of it.
    auto plain_uri = ctx.listen("tcp://127.0.0.1:0");
    JT_ASSERT_OK(plain_uri);
    auto plain = ctx.connect(*plain_uri);
    JT_ASSERT_OK(plain);
    JT_ASSERT_OK(plain->call_sync("whoami", {}, 5000));
    EXPECT_TRUE(plain->tls_version().empty());
    EXPECT_TRUE(plain->peer_certificate().empty());
    EXPECT_FALSE(plain->peer_sha256().has_value());
}

TEST_F(Tls, FailuresNameTheirCauseAndLeaveTheServerServing) {
    struct Case {
        const char *ca;
        bool cert;
        const char *cause;
    } cases[] = {{"ca.pem", false, "requires a client certificate"}, {"other.pem", true, "not signed by a trusted CA"}};
    for (const Case &c : cases) {
        auto conn = ctx.connect_tls(server_uri, client(c.ca, c.cert));
        JT_ASSERT_OK(conn);
        auto r = conn->call_sync("whoami", {}, 5000);
        ASSERT_FALSE(r);
        EXPECT_TRUE(r.error().is_tls()) << r.error().to_string();
        EXPECT_NE(r.error().message().find(c.cause), std::string::npos) << r.error().to_string();
    }
    // No settings: the system's roots, which do not know this CA.
    auto system = ctx.connect_tls(server_uri);
    JT_ASSERT_OK(system);
    auto r = system->call_sync("whoami", {}, 5000);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is_tls()) << r.error().to_string();
    auto good = ctx.connect_tls(server_uri, client("ca.pem", true));
    JT_ASSERT_OK(good);
    JT_EXPECT_OK(good->call_sync("whoami", {}, 5000));
}

TEST_F(Tls, AcceptCallbackRefusesBySubject) {
    std::vector<std::string> asked;
    JT_ASSERT_OK(ctx.on_accept([&asked](joint::ConnectionRef conn) {
        asked.push_back(std::string(conn.peer_address()) + " " + std::string(conn.peer_subject()));
        return conn.peer_subject() == "CN=nobody";
    }));
    auto conn = ctx.connect_tls(server_uri, client("ca.pem", true));
    JT_ASSERT_OK(conn);
    auto r = conn->call_sync("whoami", {}, 5000);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is_closed()) << r.error().to_string();
    EXPECT_TRUE(seen_der.empty()) << "the refused connection's request was served";
    ASSERT_EQ(asked.size(), 1u);
    EXPECT_EQ(asked[0].rfind("tls://127.0.0.1:", 0), 0u) << asked[0];
    EXPECT_NE(asked[0].find("O=joint, CN=bob"), std::string::npos) << asked[0];
    JT_ASSERT_OK(ctx.on_accept(nullptr));
    auto again = ctx.connect_tls(server_uri, client("ca.pem", true));
    JT_ASSERT_OK(again);
    JT_EXPECT_OK(again->call_sync("whoami", {}, 5000));
}

TEST(Access, UnixPeerCredentialsAndMode) {
    Context ctx = Context::create().value();
    int served = 0;
    std::optional<joint::PeerCredentials> seen;
    JT_ASSERT_OK(ctx.on("ping", [&served](Request req) {
        served++;
        (void)req.reply_value(1);
    }));
    JT_ASSERT_OK(ctx.on_accept([&seen](joint::ConnectionRef conn) {
        seen = conn.peer_credentials();
        return seen && seen->uid != static_cast<std::uint32_t>(getuid()); // refuse ourselves
    }));
    std::string path = "/tmp/joint-cpp-access-" + std::to_string(getpid()) + ".sock";
    auto uri = ctx.listen("unix://" + path + "?mode=0600");
    JT_ASSERT_OK(uri);
    struct stat st {};
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    auto conn = ctx.connect(*uri);
    JT_ASSERT_OK(conn);
    auto r = conn->call_sync("ping", {}, 5000);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is_closed()) << r.error().to_string();
    EXPECT_EQ(served, 0);
    ASSERT_TRUE(seen.has_value());
    EXPECT_EQ(seen->pid, static_cast<std::int32_t>(getpid()));
    EXPECT_EQ(seen->gid, static_cast<std::uint32_t>(getgid()));
}

} // namespace
