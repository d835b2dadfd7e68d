package joint_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	joint "github.com/joint-rpc/joint/bindings/go"
)

func Example() {
	srv, _ := joint.NewServer()
	defer srv.Close()
	srv.Handle("add", func(ctx context.Context, r *joint.Request) (any, error) {
		var a, b int
		if err := r.Args(&a, &b); err != nil {
			return nil, err
		}
		return a + b, nil
	})
	uri, _ := srv.Listen("tcp://127.0.0.1:0")

	c, _ := joint.Dial(uri)
	defer c.Close()
	sum, err := joint.CallAs[int](context.Background(), c, "add", 2, 3)
	fmt.Println(sum, err)

	_, err = c.Call(context.Background(), "add", "two", 3)
	// errors.As fills re: call it before reading re's fields (in one Println the order of
	// the call and the field reads would be unspecified).
	var re *joint.RemoteError
	isRemote := errors.As(err, &re)
	fmt.Println(isRemote, re.Code, re.Message)
	// Output:
	// 5 <nil>
	// true 1 add: param 1: msgpack: invalid code=a3 decoding int64
}

func ExampleServer_HandleStream() {
	srv, _ := joint.NewServer()
	defer srv.Close()
	// count(n) streams 0..n-1 and returns n.
	srv.HandleStream("count", func(ctx context.Context, r *joint.Request, s *joint.ServerStream) (any, error) {
		var n int
		if err := r.Args(&n); err != nil {
			return nil, err
		}
		for i := 0; i < n; i++ {
			if err := s.Send(i); err != nil { // waits for the caller's credit
				return nil, err
			}
		}
		return n, nil
	})
	// sum() adds the numbers sent in.
	srv.HandleStream("sum", func(ctx context.Context, r *joint.Request, s *joint.ServerStream) (any, error) {
		total := 0
		for {
			v, err := s.Recv()
			if err == io.EOF {
				return total, nil
			} else if err != nil {
				return nil, err
			}
			var x int
			if err := v.Decode(&x); err != nil {
				return nil, joint.NewError(joint.CodeInvalidParams, "numbers only")
			}
			total += x
		}
	})
	uri, _ := srv.Listen("tcp://127.0.0.1:0")
	c, _ := joint.Dial(uri)
	defer c.Close()
	ctx := context.Background()

	st, _ := c.CallStream(ctx, "count", 3)
	for item, ok := st.Next(); ok; item, ok = st.Next() {
		fmt.Println("item", item)
	}
	fmt.Println(st.Result())

	in, _ := c.CallBidi(ctx, "sum")
	for i := 1; i <= 4; i++ {
		in.Send(i)
	}
	in.CloseSend()
	fmt.Println(in.Result())
	// Output:
	// item 0
	// item 1
	// item 2
	// 3 <nil>
	// 10 <nil>
}

// Mutual TLS: the server requires a client certificate signed by its CA, and its handlers
// see who the client is (Request.TLS); the client sees the server's (Client.TLS).
func ExampleWithTLS() {
	// A CA, a server certificate for 127.0.0.1 and a client certificate for
	// "O=joint, CN=alice", made in memory with crypto/x509 (see tls_test.go). With files,
	// use CertFile, KeyFile and CAFile instead.
	ca := newCA("example CA")
	server := newServerCert(ca, time.Time{}, time.Time{})
	alice := newClientCert(ca, "alice")

	srv, _ := joint.NewServer(joint.WithTLS(joint.TLSConfig{
		CertPEM:    server.certPEM,
		KeyPEM:     server.keyPEM,
		CAPEM:      ca.certPEM,
		ClientAuth: joint.ClientAuthRequired,
	}))
	defer srv.Close()
	srv.Handle("whoami", func(ctx context.Context, r *joint.Request) (any, error) {
		return r.TLS.PeerSubject, nil
	})
	uri, _ := srv.Listen("tls://127.0.0.1:0")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := joint.DialContext(ctx, uri, joint.WithTLS(joint.TLSConfig{
		CAPEM:   ca.certPEM,
		CertPEM: alice.certPEM,
		KeyPEM:  alice.keyPEM,
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	who, err := joint.CallAs[string](ctx, c, "whoami")
	state := c.TLS()
	fmt.Println(who, err, state.Version, state.PeerSubject)

	// Without a client certificate: refused, with StatusTLS and the cause. (With TLS 1.3
	// the server refuses once the client's side of the handshake is done, so the failure
	// may come from Dial or from the first call.)
	bare, err := joint.DialContext(ctx, uri, joint.WithTLS(joint.TLSConfig{CAPEM: ca.certPEM}))
	if err == nil {
		defer bare.Close()
		_, err = bare.Call(ctx, "whoami")
	}
	var e *joint.Error
	isTLS := errors.Is(err, joint.ErrTLS)
	namesCause := errors.As(err, &e) && strings.Contains(e.Detail, "the server requires a client certificate")
	fmt.Println(isTLS, namesCause)
	// Output:
	// O=joint, CN=alice <nil> TLSv1.3 CN=server
	// true true
}
