package joint_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	joint "github.com/joint-rpc/joint/bindings/go"
)

// ---- certificates, made per run with crypto/x509 and crypto/ecdsa ---------------------

// certKey is a certificate, its key, and both as PEM.
type certKey struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte // PKCS#8
}

var serial int64 = 1

func newCertKey(tmpl *x509.Certificate, parent *certKey) *certKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return &certKey{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
	}
}

// newCA makes a self-signed CA.
func newCA(cn string) *certKey {
	return newCertKey(&x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil)
}

// newServerCert makes a server certificate for 127.0.0.1 and localhost signed by ca.
func newServerCert(ca *certKey, notBefore, notAfter time.Time) *certKey {
	return newCertKey(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "server"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca)
}

// newClientCert makes a client certificate for O=joint, CN=cn signed by ca.
func newClientCert(ca *certKey, cn string) *certKey {
	return newCertKey(&x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"joint"}, CommonName: cn},
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca)
}

// pki is a test's certificates, also written as PEM files into a temporary directory.
type pki struct {
	dir                          string
	ca, other                    *certKey // the CA that signed the rest, and an unrelated one
	server, expired, alice, mall *certKey // mall: a client certificate signed by other
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), ca: newCA("joint test CA"), other: newCA("other CA")}
	p.server = newServerCert(p.ca, time.Time{}, time.Time{})
	p.expired = newServerCert(p.ca, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	p.alice = newClientCert(p.ca, "alice")
	p.mall = newClientCert(p.other, "mallory")
	for name, ck := range map[string]*certKey{"ca": p.ca, "other": p.other, "server": p.server, "expired": p.expired, "alice": p.alice, "mall": p.mall} {
		if err := os.WriteFile(p.file(name+".pem"), ck.certPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p.file(name+".key"), ck.keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (p *pki) file(name string) string { return filepath.Join(p.dir, name) }

// serverTLS: the server certificate from files, and client certificates as auth says.
func (p *pki) serverTLS(auth joint.ClientAuth) joint.TLSConfig {
	cfg := joint.TLSConfig{CertFile: p.file("server.pem"), KeyFile: p.file("server.key"), ClientAuth: auth}
	if auth != joint.ClientAuthNone {
		cfg.CAFile = p.file("ca.pem")
	}
	return cfg
}

// clientTLS trusts the test CA; with a name, presents that client's certificate.
func (p *pki) clientTLS(name string) joint.TLSConfig {
	cfg := joint.TLSConfig{CAFile: p.file("ca.pem")}
	if name != "" {
		cfg.CertFile, cfg.KeyFile = p.file(name+".pem"), p.file(name+".key")
	}
	return cfg
}

func (p *pki) goPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.cert)
	return pool
}

func goCert(ck *certKey) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{ck.cert.Raw}, PrivateKey: ck.key, Leaf: ck.cert}
}

// ---- a joint TLS server ----------------------------------------------------------------

// peerInfo is what the "peer" handler answers: what it sees of the client.
type peerInfo struct {
	Version, Subject string
	SHA256           []byte
	CN               string
	HasCert          bool
}

func tlsServer(t *testing.T, cfg joint.TLSConfig, opts ...joint.Option) string {
	t.Helper()
	s, err := joint.NewServer(append(opts, joint.WithTLS(cfg))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.Handle("add", addHandler)
	s.Handle("peer", func(ctx context.Context, r *joint.Request) (any, error) {
		info := peerInfo{Version: r.TLS.Version, Subject: r.TLS.PeerSubject, HasCert: r.TLS.PeerCertificateDER != nil}
		if info.HasCert {
			info.SHA256 = r.TLS.PeerSHA256[:]
		}
		cert, err := r.TLS.PeerCertificate()
		if err != nil {
			return nil, err
		}
		if cert != nil {
			info.CN = cert.Subject.CommonName
		}
		return info, nil
	})
	s.HandleStream("count", func(ctx context.Context, r *joint.Request, st *joint.ServerStream) (any, error) {
		var n int
		if err := r.Args(&n); err != nil {
			return nil, err
		}
		for i := 0; i < n; i++ {
			if err := st.Send(i); err != nil {
				return nil, err
			}
		}
		return n, nil
	})
	uri, err := s.Listen("tls://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(uri, "tls://127.0.0.1:") {
		t.Fatalf("bound %q", uri)
	}
	return uri
}

func tlsDial(t *testing.T, uri string, opts ...joint.Option) *joint.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := joint.DialContext(ctx, uri, opts...)
	if err != nil {
		t.Fatalf("dial %s: %v", uri, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// checkAdd checks that a client made with opts can call the server at uri.
func checkAdd(t *testing.T, uri string, opts ...joint.Option) {
	t.Helper()
	c := tlsDial(t, uri, opts...)
	if v, err := joint.CallAs[int](testCtx(t), c, "add", 40, 2); err != nil || v != 42 {
		t.Fatalf("add over %s: %v %v", uri, v, err)
	}
	c.Close()
}

// tlsFailure dials uri with opts and calls add; it returns the error, from Dial or (when
// the server refused us after our side of the handshake was done) from the call.
func tlsFailure(t *testing.T, uri string, opts ...joint.Option) *joint.Error {
	t.Helper()
	ctx := testCtx(t)
	c, err := joint.DialContext(ctx, uri, opts...)
	where := "dial"
	if err == nil {
		defer c.Close()
		where = "first call"
		_, err = c.Call(ctx, "add", 1, 2)
		if err == nil {
			t.Fatalf("dial and call %s succeeded", uri)
		}
		// Err reports the same failure.
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatal("the connection did not close")
		}
		var ce *joint.Error
		if !errors.As(c.Err(), &ce) || ce.Status != joint.StatusTLS {
			t.Fatalf("Err() = %v, want StatusTLS", c.Err())
		}
		// Calls and notifications on the closed connection say why it closed.
		if _, err := c.Call(ctx, "add", 1, 2); !errors.Is(err, joint.ErrTLS) || !strings.Contains(err.Error(), ce.Detail) {
			t.Fatalf("a later call: %v", err)
		}
		if err := c.Notify("n"); !errors.Is(err, joint.ErrTLS) {
			t.Fatalf("a later notification: %v", err)
		}
	}
	t.Logf("failed on %s: %v", where, err)
	var e *joint.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v, want *joint.Error", err, err)
	}
	if e.Status != joint.StatusTLS || !errors.Is(err, joint.ErrTLS) {
		t.Fatalf("status %v (%v), want StatusTLS", e.Status, err)
	}
	return e
}

func wantDetail(t *testing.T, e *joint.Error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(e.Detail, p) {
			t.Fatalf("detail %q lacks %q (error: %v)", e.Detail, p, e)
		}
	}
}

// ---- tests -----------------------------------------------------------------------------

func TestTLSRoundTrip(t *testing.T) {
	p := newPKI(t)
	uri := tlsServer(t, p.serverTLS(joint.ClientAuthNone))
	c := tlsDial(t, uri, joint.WithTLS(p.clientTLS("")))
	ctx := testCtx(t)
	if v := must[int](t)(joint.CallAs[int](ctx, c, "add", 40, 2)); v != 42 {
		t.Fatal(v)
	}
	// The joint extension runs over TLS too: a stream of 500 items, within flow control.
	st, err := c.CallStream(ctx, "count", 500)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for item, ok := st.Next(); ok; item, ok = st.Next() {
		var i int
		if err := item.Decode(&i); err != nil || i != n {
			t.Fatalf("item %d: %s %v", n, item, err)
		}
		n++
	}
	if res, err := st.Result(); err != nil || res.String() != "500" || n != 500 {
		t.Fatalf("stream: %d items, %s %v", n, res, err)
	}
	if !c.Extension() {
		t.Fatal("the extension is off over TLS")
	}

	// What the client sees of the server.
	s := c.TLS()
	if s.Version != "TLSv1.3" || s.PeerSubject != "CN=server" {
		t.Fatalf("client TLS state: %q %q", s.Version, s.PeerSubject)
	}
	if s.PeerSHA256 != sha256.Sum256(p.server.cert.Raw) || !bytes.Equal(s.PeerCertificateDER, p.server.cert.Raw) {
		t.Fatal("client: the server's certificate is not the one it has")
	}
	cert, err := s.PeerCertificate()
	if err != nil || !cert.Equal(p.server.cert) || cert.IPAddresses[0].String() != "127.0.0.1" {
		t.Fatalf("PeerCertificate: %v %v", cert, err)
	}

	// What the handler sees of a client without a certificate.
	var info peerInfo
	if err := c.CallInto(ctx, &info, "peer"); err != nil {
		t.Fatal(err)
	}
	if info.Version != "TLSv1.3" || info.Subject != "" || info.HasCert || info.CN != "" {
		t.Fatalf("server saw %+v", info)
	}

	// The same settings from memory, and the server's DNS name.
	memServer := tlsServer(t, joint.TLSConfig{CertPEM: p.server.certPEM, KeyPEM: p.server.keyPEM})
	checkAdd(t, memServer, joint.WithTLS(joint.TLSConfig{CAPEM: p.ca.certPEM}))
	port := memServer[strings.LastIndexByte(memServer, ':')+1:]
	checkAdd(t, "tls://localhost:"+port, joint.WithTLS(joint.TLSConfig{CAPEM: p.ca.certPEM}))
	checkAdd(t, memServer, joint.WithTLS(joint.TLSConfig{CAPEM: p.ca.certPEM, ServerName: "localhost"}))
}

func TestTLSStateZeroWithoutTLS(t *testing.T) {
	var seen joint.TLSState
	seen.Version = "unset"
	_, uri := newServer(t, func(s *joint.Server) {
		s.Handle("peer", func(ctx context.Context, r *joint.Request) (any, error) {
			seen = r.TLS
			return nil, nil
		})
	})
	c := dial(t, uri)
	if _, err := c.Call(testCtx(t), "peer"); err != nil {
		t.Fatal(err)
	}
	cert, err := seen.PeerCertificate()
	if seen.Version != "" || seen.PeerSubject != "" || seen.PeerCertificateDER != nil || seen.PeerSHA256 != [32]byte{} || cert != nil || err != nil {
		t.Fatalf("handler over tcp:// saw %+v", seen)
	}
	if s := c.TLS(); s.Version != "" || s.PeerCertificateDER != nil {
		t.Fatalf("client over tcp:// has %+v", s)
	}
}

func TestTLSMutual(t *testing.T) {
	p := newPKI(t)
	uri := tlsServer(t, p.serverTLS(joint.ClientAuthRequired))
	c := tlsDial(t, uri, joint.WithTLS(p.clientTLS("alice")))
	var info peerInfo
	if err := c.CallInto(testCtx(t), &info, "peer"); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(p.alice.cert.Raw)
	if info.Subject != "O=joint, CN=alice" || info.CN != "alice" || !bytes.Equal(info.SHA256, sum[:]) || info.Version != "TLSv1.3" {
		t.Fatalf("server saw %+v", info)
	}

	// No client certificate: refused during the handshake, and named.
	e := tlsFailure(t, uri, joint.WithTLS(p.clientTLS("")))
	wantDetail(t, e, "requires a client certificate")
	// A client certificate that another CA signed: refused.
	e = tlsFailure(t, uri, joint.WithTLS(p.clientTLS("mall")))
	wantDetail(t, e, "refused our certificate")
	// The server goes on serving, over the connection it had and new ones.
	if v, err := joint.CallAs[int](testCtx(t), c, "add", 1, 2); err != nil || v != 3 {
		t.Fatalf("add after the refusals: %v %v", v, err)
	}
	checkAdd(t, uri, joint.WithTLS(p.clientTLS("alice")))

	// Optional client certificates: a client without one is served, and seen as such.
	opt := tlsServer(t, p.serverTLS(joint.ClientAuthOptional))
	for _, name := range []string{"", "alice"} {
		c := tlsDial(t, opt, joint.WithTLS(p.clientTLS(name)))
		var info peerInfo
		if err := c.CallInto(testCtx(t), &info, "peer"); err != nil {
			t.Fatal(err)
		}
		if info.HasCert != (name != "") || info.CN != name {
			t.Fatalf("optional, client %q: server saw %+v", name, info)
		}
	}
	e = tlsFailure(t, opt, joint.WithTLS(p.clientTLS("mall")))
	wantDetail(t, e, "refused our certificate")
}

func TestTLSFailures(t *testing.T) {
	p := newPKI(t)
	uri := tlsServer(t, p.serverTLS(joint.ClientAuthNone))
	good := joint.WithTLS(p.clientTLS(""))
	cases := []struct {
		name  string
		uri   string
		opts  []joint.Option
		parts []string
	}{
		{"another CA", uri, []joint.Option{joint.WithTLS(joint.TLSConfig{CAFile: p.file("other.pem")})},
			[]string{"server's certificate is not signed by a trusted CA", "unknown issuer"}},
		{"server name mismatch", uri, []joint.Option{joint.WithTLS(joint.TLSConfig{CAFile: p.file("ca.pem"), ServerName: "joint.example"})},
			[]string{"name mismatch"}},
		// A tls:// URI without WithTLS: the system's roots do not know our CA.
		{"system roots", uri, nil, []string{"unknown issuer"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c, err := joint.DialContext(testCtx(t), tc.uri, tc.opts...)
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			var e *joint.Error
			if !errors.As(err, &e) {
				t.Fatalf("%T %v", err, err)
			}
			if tc.opts == nil && e.Status == joint.StatusInvalid {
				// A machine without trusted roots: the settings are refused at once.
				wantDetail(t, e, "no trusted CA certificates found")
				return
			}
			if e.Status != joint.StatusTLS || !errors.Is(err, joint.ErrTLS) || !strings.HasPrefix(e.Op, "dial tls://") {
				t.Fatalf("dial: %v (status %d)", err, e.Status)
			}
			wantDetail(t, e, tc.parts...)
			if !strings.Contains(err.Error(), "TLS failure") {
				t.Fatalf("Error() = %q", err.Error())
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("the failure took %v", d)
			}
			// The server goes on serving.
			checkAdd(t, uri, good)
		})
	}

	// An expired server certificate.
	expired := tlsServer(t, joint.TLSConfig{CertFile: p.file("expired.pem"), KeyFile: p.file("expired.key")})
	e := tlsFailure(t, expired, good)
	wantDetail(t, e, "expired")

	// TLS and plaintext mixed up: a tls:// client of a tcp:// port is told, and a tcp://
	// client of the TLS port gets no answer but a closed connection.
	_, plain := newServer(t, func(s *joint.Server) { s.Handle("add", addHandler) })
	e = tlsFailure(t, "tls://"+strings.TrimPrefix(plain, "tcp://"), good)
	wantDetail(t, e, "without answering the TLS handshake", "plaintext port")
	c := tlsDial(t, "tcp://"+strings.TrimPrefix(uri, "tls://"))
	if _, err := c.Call(testCtx(t), "add", 1, 2); !errors.Is(err, joint.ErrClosed) {
		t.Fatalf("plaintext call to the TLS port: %v", err)
	}
	checkAdd(t, uri, good)
}

func TestTLSMisuse(t *testing.T) {
	p := newPKI(t)
	uri := tlsServer(t, p.serverTLS(joint.ClientAuthNone))
	invalid := func(err error, parts ...string) {
		t.Helper()
		var e *joint.Error
		if !errors.As(err, &e) || e.Status != joint.StatusInvalid {
			t.Fatalf("got %v, want StatusInvalid", err)
		}
		wantDetail(t, e, parts...)
	}
	dialErr := func(uri string, cfg joint.TLSConfig) error {
		c, err := joint.DialContext(testCtx(t), uri, joint.WithTLS(cfg))
		if err == nil {
			c.Close()
		}
		return err
	}
	listenErr := func(uri string, cfg *joint.TLSConfig) error {
		var opts []joint.Option
		if cfg != nil {
			opts = append(opts, joint.WithTLS(*cfg))
		}
		s, err := joint.NewServer(opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.Listen(uri)
		return err
	}

	// WithTLS on something that is not tls://.
	_, plain := newServer(t, nil)
	invalid(dialErr(plain, p.clientTLS("")), "not a tls:// address")
	_, err := joint.DialCommand(testCtx(t), []string{"true"}, joint.WithTLS(p.clientTLS("")))
	invalid(err, "not for a command")
	srvTLS := p.serverTLS(joint.ClientAuthNone)
	invalid(listenErr("tcp://127.0.0.1:0", &srvTLS), "not a tls:// address")
	// A tls:// listener without settings, or without a certificate.
	invalid(listenErr("tls://127.0.0.1:0", nil), "WithTLS")
	invalid(listenErr("tls://127.0.0.1:0", &joint.TLSConfig{CAFile: p.file("ca.pem")}), "needs a certificate")
	invalid(listenErr("tls://127.0.0.1:0", &joint.TLSConfig{CertFile: p.file("server.pem"), KeyFile: p.file("server.key"), ClientAuth: joint.ClientAuthRequired}),
		"need a CA")
	// Files and PEM the library refuses, with its reason.
	invalid(dialErr(uri, joint.TLSConfig{CertFile: p.file("alice.pem"), KeyFile: p.file("missing.key")}), "missing.key")
	invalid(dialErr(uri, joint.TLSConfig{CertFile: p.file("server.pem"), KeyFile: p.file("alice.key")}), "is not the key")
	invalid(dialErr(uri, joint.TLSConfig{CAFile: p.file("nowhere.pem")}), "nowhere.pem")
	invalid(dialErr(uri, joint.TLSConfig{CAPEM: []byte("junk")}), "TLS CA")
	invalid(listenErr("tls://127.0.0.1:0", &joint.TLSConfig{CertPEM: p.server.certPEM, KeyPEM: p.server.keyPEM, ClientAuth: 7}), "client auth")
	// Settings that do not go together.
	invalid(dialErr(uri, joint.TLSConfig{CertFile: p.file("alice.pem")}), "CertFile and KeyFile go together")
	invalid(dialErr(uri, joint.TLSConfig{CertPEM: p.alice.certPEM}), "CertPEM and KeyPEM go together")
	invalid(dialErr(uri, joint.TLSConfig{CAFile: p.file("ca.pem"), CAPEM: p.ca.certPEM}), "not both")
	// After all that, the server still serves.
	checkAdd(t, uri, joint.WithTLS(p.clientTLS("")))
}

// ---- interop with Go's crypto/tls --------------------------------------------------------

// stockTLSServer is a stock MessagePack-RPC server over crypto/tls: tls.Listen and a
// hand-written responder (msgpack/v5). It answers add(a, b) and whoami() (the CN of the
// client's certificate), and any other method (joint.hello included) with an error.
func stockTLSServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
				serveStock(conn.(*tls.Conn))
			}()
		}
	}()
	return "tls://" + ln.Addr().String()
}

func serveStock(conn *tls.Conn) {
	dec := msgpack.NewDecoder(conn)
	for {
		var msg []msgpack.RawMessage
		if err := dec.Decode(&msg); err != nil {
			return
		}
		var kind int
		if len(msg) != 4 || msgpack.Unmarshal(msg[0], &kind) != nil || kind != 0 {
			continue // notifications, responses: nothing to answer
		}
		var id uint32
		var method string
		msgpack.Unmarshal(msg[1], &id)
		msgpack.Unmarshal(msg[2], &method)
		var result, rerr any
		switch method {
		case "add":
			var args []int
			msgpack.Unmarshal(msg[3], &args)
			result = args[0] + args[1]
		case "whoami":
			st := conn.ConnectionState()
			if len(st.PeerCertificates) > 0 {
				result = st.PeerCertificates[0].Subject.CommonName
			}
		default:
			rerr = "no such method: " + method
		}
		out, _ := msgpack.Marshal([]any{1, id, rerr, result})
		if _, err := conn.Write(out); err != nil {
			return
		}
	}
}

// A joint client calling a server made with crypto/tls (mutual TLS: Go verifies joint's
// client certificate; joint verifies Go's server certificate).
func TestTLSInteropGoServer(t *testing.T) {
	p := newPKI(t)
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		name := map[uint16]string{tls.VersionTLS13: "TLSv1.3", tls.VersionTLS12: "TLSv1.2"}[version]
		t.Run(name, func(t *testing.T) {
			uri := stockTLSServer(t, &tls.Config{
				Certificates: []tls.Certificate{goCert(p.server)},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    p.goPool(),
				MinVersion:   version,
				MaxVersion:   version,
			})
			c := tlsDial(t, uri, joint.WithTLS(p.clientTLS("alice")))
			ctx := testCtx(t)
			if v, err := joint.CallAs[int](ctx, c, "add", 40, 2); err != nil || v != 42 {
				t.Fatalf("add: %v %v", v, err)
			}
			if who, err := joint.CallAs[string](ctx, c, "whoami"); err != nil || who != "alice" {
				t.Fatalf("whoami: %q %v", who, err)
			}
			if c.Extension() {
				t.Fatal("a stock server, yet the extension is on")
			}
			s := c.TLS()
			if s.Version != name || s.PeerSubject != "CN=server" || s.PeerSHA256 != sha256.Sum256(p.server.cert.Raw) {
				t.Fatalf("TLS state %q %q", s.Version, s.PeerSubject)
			}
			// Without a certificate, Go's server refuses us; the failure says so.
			e := tlsFailure(t, uri, joint.WithTLS(p.clientTLS("")))
			if version == tls.VersionTLS13 {
				wantDetail(t, e, "requires a client certificate")
			}
			// And Go's server certificate is checked: another CA is refused.
			e = tlsFailure(t, uri, joint.WithTLS(joint.TLSConfig{CAFile: p.file("other.pem")}))
			wantDetail(t, e, "unknown issuer")
		})
	}
}

// goTLSCall sends one MessagePack-RPC request over a crypto/tls client connection and
// reads the answer.
func goTLSCall(conn *tls.Conn, id uint32, method string, params ...any) (rerr, result any, err error) {
	if params == nil {
		params = []any{}
	}
	req, err := msgpack.Marshal([]any{0, id, method, params})
	if err != nil {
		return nil, nil, err
	}
	if _, err := conn.Write(req); err != nil {
		return nil, nil, err
	}
	var resp []any
	if err := msgpack.NewDecoder(conn).Decode(&resp); err != nil {
		return nil, nil, err
	}
	if len(resp) != 4 || fmt.Sprint(resp[0]) != "1" || fmt.Sprint(resp[1]) != fmt.Sprint(id) {
		return nil, nil, fmt.Errorf("not a response to %d: %v", id, resp)
	}
	return resp[2], resp[3], nil
}

// A client made with crypto/tls (tls.Dial and a msgpack request) calling the joint server.
func TestTLSInteropGoClient(t *testing.T) {
	p := newPKI(t)
	uri := tlsServer(t, p.serverTLS(joint.ClientAuthRequired))
	addr := strings.TrimPrefix(uri, "tls://")
	dialer := &net.Dialer{Timeout: 10 * time.Second}

	conn, err := tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{RootCAs: p.goPool(), Certificates: []tls.Certificate{goCert(p.alice)}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	st := conn.ConnectionState()
	if st.Version != tls.VersionTLS13 || !st.PeerCertificates[0].Equal(p.server.cert) {
		t.Fatalf("Go client: version %x, server certificate %v", st.Version, st.PeerCertificates[0].Subject)
	}
	rerr, res, err := goTLSCall(conn, 7, "add", 40, 2)
	if err != nil || rerr != nil || fmt.Sprint(res) != "42" {
		t.Fatalf("add: %v %v %v", rerr, res, err)
	}
	rerr, res, err = goTLSCall(conn, 8, "peer")
	if err != nil || rerr != nil {
		t.Fatalf("peer: %v %v", rerr, err)
	}
	info, _ := res.(map[string]any)
	if info["Subject"] != "O=joint, CN=alice" || info["CN"] != "alice" || info["Version"] != "TLSv1.3" {
		t.Fatalf("the joint handler saw %v", res)
	}
	rerr, _, err = goTLSCall(conn, 9, "nope")
	if err != nil || rerr == nil {
		t.Fatalf("unknown method: %v %v", rerr, err)
	}

	// A Go client without a certificate is refused: the handshake ends with an alert.
	bare, err := tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{RootCAs: p.goPool()})
	if err == nil {
		defer bare.Close()
		_ = bare.SetDeadline(time.Now().Add(10 * time.Second))
		_, _, err = goTLSCall(bare, 1, "add", 1, 2)
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("Go client without a certificate: %v", err)
	}
	// A Go client that trusts another CA refuses the joint server.
	otherPool := x509.NewCertPool()
	otherPool.AddCert(p.other.cert)
	_, err = tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{RootCAs: otherPool, Certificates: []tls.Certificate{goCert(p.alice)}})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("Go client trusting another CA: %v", err)
	}
	// The first connection is still served.
	if _, res, err := goTLSCall(conn, 10, "add", 1, 2); err != nil || fmt.Sprint(res) != "3" {
		t.Fatalf("add after the refusals: %v %v", res, err)
	}
}
