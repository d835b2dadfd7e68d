package joint

// #include "bridge.h"
import "C"

import (
	"crypto/x509"
	"strings"
	"unsafe"
)

// ClientAuth says whether a TLS server asks its clients for a certificate.
type ClientAuth int32

// Client certificate modes of a TLS server (TLSConfig.ClientAuth).
const (
	// ClientAuthNone: clients are not asked for a certificate (the default).
	ClientAuthNone ClientAuth = C.JOINT_TLS_CLIENT_AUTH_NONE
	// ClientAuthOptional: clients are asked for one; a client without one is served, one
	// with a certificate the CA did not sign is refused during the handshake.
	ClientAuthOptional ClientAuth = C.JOINT_TLS_CLIENT_AUTH_OPTIONAL
	// ClientAuthRequired: a client without a certificate signed by the CA is refused
	// during the handshake.
	ClientAuthRequired ClientAuth = C.JOINT_TLS_CLIENT_AUTH_REQUIRED
)

// TLSConfig is the TLS settings of a connection (Dial to tls://HOST:PORT) or of a server's
// tls:// listeners, given with WithTLS. joint speaks TLS 1.3 and 1.2 (rustls); certificates
// and keys are PEM (keys PKCS#8, PKCS#1 or SEC1), read and checked when the settings are
// used, that is by Dial or Listen.
//
// A server needs a certificate and its key, and may ask clients for certificates
// (ClientAuth, with CAFile or CAPEM the CA that must have signed them). A client verifies
// the server's certificate against CAFile/CAPEM, or the system's trusted roots when neither
// is given, and against the host of the URI, or ServerName; it presents its certificate
// (CertFile/KeyFile or CertPEM/KeyPEM) when the server asks for one.
type TLSConfig struct {
	// CertFile and KeyFile are PEM files: the certificate chain (leaf first) and its private
	// key. Give both or neither; not together with CertPEM/KeyPEM.
	CertFile, KeyFile string
	// CertPEM and KeyPEM are CertFile and KeyFile in memory.
	CertPEM, KeyPEM []byte
	// CAFile (or CAPEM, in memory; not both) holds the CA certificates to trust: a client
	// verifies the server's certificate against them instead of the system's roots; a
	// server verifies client certificates against them.
	CAFile string
	CAPEM  []byte
	// ClientAuth (servers only): whether clients must present a certificate (default
	// ClientAuthNone). ClientAuthOptional and ClientAuthRequired need CAFile or CAPEM.
	ClientAuth ClientAuth
	// ServerName (clients only) is the DNS name or IP address the server's certificate
	// must carry, instead of the host of the URI.
	ServerName string
}

// WithTLS gives the TLS settings (copied) of a Client (Dial, DialContext) or of a Server's
// listeners (NewServer). A Client dialing tls://HOST:PORT without WithTLS verifies the
// server against the system's trusted roots. A Server's tls:// listeners need it, with a
// certificate. WithTLS with any other URI (tcp://, unix://, udp://, DialCommand) is an
// error with StatusInvalid, so that a connection or listener meant to be secure is never
// plaintext by mistake: use another Client or Server for plaintext.
func WithTLS(cfg TLSConfig) Option {
	cfg.CertPEM = append([]byte(nil), cfg.CertPEM...)
	cfg.KeyPEM = append([]byte(nil), cfg.KeyPEM...)
	cfg.CAPEM = append([]byte(nil), cfg.CAPEM...)
	return func(c *config) { c.tls = &cfg }
}

// isTLSURI reports whether uri is a tls:// address.
func isTLSURI(uri string) bool { return strings.HasPrefix(uri, "tls://") }

// newC makes the library's TLS settings, checking them; the caller frees them. Errors are
// *Error values for op, with the library's reason as Detail.
func (t *TLSConfig) newC(op string) (*C.joint_tls_config, error) {
	invalid := func(detail string) error { return &Error{Status: StatusInvalid, Op: op, Detail: detail} }
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		return nil, invalid("TLS: CertFile and KeyFile go together")
	case (len(t.CertPEM) == 0) != (len(t.KeyPEM) == 0):
		return nil, invalid("TLS: CertPEM and KeyPEM go together")
	case t.CertFile != "" && len(t.CertPEM) > 0:
		return nil, invalid("TLS: give CertFile/KeyFile or CertPEM/KeyPEM, not both")
	case t.CAFile != "" && len(t.CAPEM) > 0:
		return nil, invalid("TLS: give CAFile or CAPEM, not both")
	}
	for _, s := range []string{t.CertFile, t.KeyFile, t.CAFile, t.ServerName} {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, invalid("TLS: a file name or server name holds a NUL byte")
		}
	}
	var tc *C.joint_tls_config
	if st := C.joint_tls_config_new(&tc); st != C.JOINT_OK {
		return nil, statusErr(st, op)
	}
	var err error
	check := func(st C.joint_status, what string) {
		if st < 0 && err == nil {
			err = &Error{Status: Status(st), Op: op, Detail: "TLS " + what + ": " + C.GoString(C.joint_tls_config_error(tc))}
		}
	}
	if t.CertFile != "" {
		cf, kf := cString(t.CertFile), cString(t.KeyFile)
		check(C.joint_tls_config_set_certificate_files(tc, cChars(cf), cChars(kf)), "certificate")
	}
	if len(t.CertPEM) > 0 {
		check(C.joint_tls_config_set_certificate_pem(tc, cPtr(t.CertPEM), C.size_t(len(t.CertPEM)),
			cPtr(t.KeyPEM), C.size_t(len(t.KeyPEM))), "certificate")
	}
	if t.CAFile != "" {
		f := cString(t.CAFile)
		check(C.joint_tls_config_set_ca_file(tc, cChars(f)), "CA")
	}
	if len(t.CAPEM) > 0 {
		check(C.joint_tls_config_set_ca_pem(tc, cPtr(t.CAPEM), C.size_t(len(t.CAPEM))), "CA")
	}
	if t.ClientAuth != ClientAuthNone {
		check(C.joint_tls_config_set_client_auth(tc, C.int32_t(t.ClientAuth)), "client auth")
	}
	if t.ServerName != "" {
		n := cString(t.ServerName)
		check(C.joint_tls_config_set_server_name(tc, cChars(n)), "server name")
	}
	if err != nil {
		C.joint_tls_config_free(tc)
		return nil, err
	}
	return tc, nil
}

// TLSState is what the TLS handshake of a connection settled: Client.TLS for a Client's
// connection, Request.TLS for the connection a call came on. It is the zero TLSState
// (Version "") when the connection is not TLS.
type TLSState struct {
	// Version is "TLSv1.3" or "TLSv1.2"; "" if the connection is not TLS.
	Version string
	// PeerSubject is the subject of the peer's verified certificate, attributes in
	// certificate order (for example "O=joint, CN=alice"); "" if the peer presented none
	// (a client of a server with ClientAuthNone or ClientAuthOptional).
	PeerSubject string
	// PeerSHA256 is the SHA-256 fingerprint of the peer's certificate (of its DER); zero if
	// there is none.
	PeerSHA256 [32]byte
	// PeerCertificateDER is the peer's verified certificate (DER, the leaf only); nil if
	// there is none.
	PeerCertificateDER []byte
}

// PeerCertificate parses PeerCertificateDER with crypto/x509: nil and no error when the
// peer presented no certificate (or the connection is not TLS).
func (s TLSState) PeerCertificate() (*x509.Certificate, error) {
	if len(s.PeerCertificateDER) == 0 {
		return nil, nil
	}
	return x509.ParseCertificate(s.PeerCertificateDER)
}

// tlsState reads conn's TLS session (driver).
func tlsState(conn *C.joint_conn) TLSState {
	var s TLSState
	if conn == nil {
		return s
	}
	v := C.joint_conn_tls_version(conn)
	if v == nil {
		return s
	}
	s.Version = C.GoString(v)
	var der *C.uint8_t
	var n C.size_t
	if C.joint_conn_peer_certificate(conn, &der, &n) == C.JOINT_OK {
		s.PeerCertificateDER = goBytes(der, n)
		s.PeerSubject = C.GoString(C.joint_conn_peer_subject(conn))
		C.joint_conn_peer_sha256(conn, (*C.uint8_t)(unsafe.Pointer(&s.PeerSHA256[0])))
	}
	return s
}
