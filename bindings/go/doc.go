// Package joint is the Go binding of joint, a MessagePack-RPC engine written in Rust and
// shipped as a C library (include/joint.h). It speaks stock MessagePack-RPC to any peer
// (Neovim, other libraries) and, between joint peers, the joint extension: streaming both
// ways with flow control, cancellation, deadlines and keyword params.
//
// # Clients
//
//	c, err := joint.Dial("tcp://127.0.0.1:6000")
//	defer c.Close()
//	sum, err := joint.CallAs[int](ctx, c, "add", 2, 3)
//
// Params are encoded with github.com/vmihailenco/msgpack/v5 (a Raw is sent as is; a
// trailing Kwargs are keyword params); results come back as Raw (encoded MessagePack) to
// Decode. ctx cancels the call (a joint callee is told) and its deadline is the call's
// timeout. A peer's error object is a *RemoteError; library failures are *Error values
// that match ErrTimeout, ErrCancelled, ErrClosed, ... with errors.Is.
//
// # Servers
//
//	s, err := joint.NewServer()
//	s.Handle("add", func(ctx context.Context, r *joint.Request) (any, error) {
//		var a, b int
//		if err := r.Args(&a, &b); err != nil {
//			return nil, err // answers [1, "add takes 2 params, got N"]
//		}
//		return a + b, nil
//	})
//	err = s.Serve("tcp://127.0.0.1:6000")
//
// Each call runs its handler on a new goroutine. Streaming handlers (HandleStream) Send
// items within the caller's credit and Recv the values it sends in.
//
// # TLS
//
// tls://HOST:PORT is TLS over TCP (1.3 or 1.2), with settings given by WithTLS to Dial and
// to NewServer: a server's certificate and key, the CA to trust instead of the system's
// roots, client certificates (ClientAuthRequired for mutual TLS), the server name to
// verify. Handshake failures are *Error values with StatusTLS (errors.Is(err, ErrTLS))
// whose Detail names the cause. Client.TLS and Request.TLS tell the TLS version and the
// peer's certificate.
//
//	s, _ := joint.NewServer(joint.WithTLS(joint.TLSConfig{CertFile: "server.pem", KeyFile: "server.key"}))
//	uri, err := s.Listen("tls://0.0.0.0:6443")
//	c, err := joint.Dial("tls://server.example:6443", joint.WithTLS(joint.TLSConfig{CAFile: "ca.pem"}))
//
// # Threading
//
// A C context is single-threaded, so each Client and Server owns one and drives it from a
// dedicated goroutine locked to its OS thread: every C call on the context happens there.
// Other goroutines hand it work through a queue and wake it through an eventfd; callbacks
// from C only copy data and signal, so no user code ever blocks the loop. Handler
// goroutines answer with the library's thread-safe request functions; streaming handlers
// block their goroutine's thread in joint_request_next_input and
// joint_request_wait_writable. Go values never cross into C: callbacks find their Go state
// through runtime/cgo handles.
//
// # Linking
//
// By default the package links ../../target/release/libjoint.a (build it with
// `cargo build --release -p joint`). With the build tag joint_external, link another build
// through CGO_LDFLAGS instead (for example `pkg-config --libs joint` after a CMake install).
package joint
