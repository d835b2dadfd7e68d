package joint

// #include "bridge.h"
import "C"

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"
)

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// ErrServerClosed is returned by Serve after Close or Shutdown.
var ErrServerClosed = errors.New("joint: server closed")

// Server serves methods on any number of listeners (tcp://, unix://, udp://, or tls:// with
// WithTLS), from its own event-loop goroutine. Each call runs its handler on a new
// goroutine. Its methods are safe for concurrent use.
type Server struct {
	l         *loop
	tls       *TLSConfig // WithTLS: the settings of tls:// listeners
	closeOnce sync.Once
}

// NewServer makes a server; register handlers, then Listen or Serve. With WithTLS, its
// listeners are tls:// ones.
func NewServer(opts ...Option) (*Server, error) {
	cfg := buildConfig(opts)
	l, err := newLoop(cfg)
	if err != nil {
		return nil, err
	}
	return &Server{l: l, tls: cfg.tls}, nil
}

// Handle serves method with h (replacing an earlier handler of that name).
func (s *Server) Handle(method string, h HandlerFunc) error {
	return s.l.register(method, &handlerEntry{l: s.l, unary: h})
}

// HandleStream serves method with a streaming handler.
func (s *Server) HandleStream(method string, h StreamHandlerFunc) error {
	return s.l.register(method, &handlerEntry{l: s.l, stream: h})
}

// HandleFallback serves the methods that have no handler (req.Method says which); by
// default they get a NO_METHOD error.
func (s *Server) HandleFallback(h HandlerFunc) error {
	return s.l.register("", &handlerEntry{l: s.l, unary: h})
}

// OnNotify receives notifications from every connection, in order, on one goroutine.
func (s *Server) OnNotify(fn func(method string, params Raw)) error { return s.l.setNotify(fn) }

// Listen starts listening on uri (tcp://HOST:PORT, port 0 picks one; unix:///path;
// udp://HOST:PORT; tls://HOST:PORT) and returns its address with the real port.
//
// A tls:// listener needs the server made WithTLS, with a certificate (else an *Error with
// StatusInvalid); a server made WithTLS listens on tls:// only. Each accepted connection
// is served once its TLS handshake is done; a client that fails the handshake (an
// untrusted or missing certificate, not speaking TLS) is closed and logged at info level,
// and the server goes on serving the others. Handlers see the client's certificate in
// Request.TLS.
func (s *Server) Listen(uri string) (string, error) {
	var bound string
	var lerr error
	op := "listen " + uri
	if s.tls == nil && isTLSURI(uri) {
		return "", &Error{Status: StatusInvalid, Op: op, Detail: "a tls:// listener needs a server made WithTLS, with a certificate"}
	}
	if err := s.l.do(func() {
		u := cString(uri)
		var lst *C.joint_listener
		if s.tls == nil {
			if st := C.joint_ctx_listen(s.l.ctx, cChars(u), &lst); st < 0 {
				lerr = s.l.fail(st, op)
				return
			}
		} else {
			tc, err := s.tls.newC(op)
			if err != nil {
				lerr = err
				return
			}
			st := C.joint_ctx_listen_tls(s.l.ctx, cChars(u), tc, &lst)
			C.joint_tls_config_free(tc)
			if st < 0 {
				lerr = s.l.fail(st, op)
				return
			}
		}
		bound = C.GoString(C.joint_listener_uri(lst))
		// The loop frees the handle (and so closes the listener) when the server stops.
		s.l.onStop = append(s.l.onStop, func() { C.joint_listener_free(lst) })
	}); err != nil {
		return "", ErrServerClosed
	}
	return bound, lerr
}

// Serve listens on uri and serves until Close or Shutdown (then ErrServerClosed).
func (s *Server) Serve(uri string) error {
	if _, err := s.Listen(uri); err != nil {
		return err
	}
	<-s.l.done
	if s.l.doneErr != nil {
		return s.l.doneErr
	}
	return ErrServerClosed
}

// Done is closed when the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.l.done }

// Close stops at once: listeners and connections close, handlers' contexts end, and their
// answers are dropped.
func (s *Server) Close() error {
	s.closeOnce.Do(s.l.stop)
	return nil
}

// Shutdown stops gracefully: listeners close, new requests are refused with a
// SHUTTING_DOWN error, and the requests already received are given until ctx ends to be
// answered; then Close.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.Close()
	if err := s.l.do(func() { C.joint_ctx_shutdown(s.l.ctx) }); err != nil {
		return nil
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		var left C.size_t
		if err := s.l.do(func() { left = C.joint_ctx_unanswered(s.l.ctx) }); err != nil || left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
