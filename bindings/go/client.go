package joint

// #include "bridge.h"
import "C"

import (
	"context"
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"
)

// Client is one connection to a MessagePack-RPC peer (joint or stock), driven by its own
// event-loop goroutine. Its methods are safe for concurrent use. Close it when done.
//
// A Client can also serve the peer's calls back over the same connection (Handle,
// HandleStream) and receive its notifications (OnNotify): Neovim, for one, calls back
// while a request of ours is pending.
type Client struct {
	l   *loop
	cfg *config

	conn     *C.joint_conn // driver-owned
	opened   chan error
	openSent bool     // driver-owned
	tls      TLSState // set on the driver before opened is sent, then read-only

	closeOnce sync.Once
	closedCh  chan struct{}
	closeErr  error
	stopOnce  sync.Once
}

// Dial connects to uri: tcp://HOST:PORT, tcp://[::1]:PORT, unix:///path, udp://HOST:PORT
// (one message per datagram; use timeouts), or tls://HOST:PORT (TLS over TCP: the server
// is verified against the system's trusted roots, or as WithTLS says). It returns once the
// connection is open; for tls://, once the TLS handshake is done.
//
// A TLS failure that the client detects during the handshake (the server's certificate is
// not signed by a trusted CA, does not carry the host or ServerName, has expired; the peer
// does not speak TLS) fails Dial with an *Error of StatusTLS (errors.Is(err, ErrTLS))
// whose Detail names the cause. With TLS 1.3 a server checks the client's certificate
// after the client's side of the handshake is done, so a refusal of ours (none presented
// to a server that requires one, or one its CA did not sign) closes the connection just
// after Dial returns: the calls then fail with StatusTLS naming the cause, and Err reports
// it.
func Dial(uri string, opts ...Option) (*Client, error) {
	return DialContext(context.Background(), uri, opts...)
}

// DialContext is Dial with a context that bounds the connection attempt.
func DialContext(ctx context.Context, uri string, opts ...Option) (*Client, error) {
	op := "dial " + uri
	return dial(ctx, op, opts, func(l *loop, cfg *config, out **C.joint_conn) error {
		u := cString(uri)
		if cfg.tls == nil {
			return l.fail(C.joint_ctx_connect(l.ctx, cChars(u), out), op)
		}
		tc, err := cfg.tls.newC(op)
		if err != nil {
			return err
		}
		defer C.joint_tls_config_free(tc)
		return l.fail(C.joint_ctx_connect_tls(l.ctx, cChars(u), tc, out), op)
	})
}

// DialCommand starts the program argv[0] (searched in PATH) with the arguments argv[1:]
// and talks MessagePack-RPC over its stdin and stdout, as `nvim --embed` needs. Its stderr
// is inherited. Closing the Client closes the child's stdin.
func DialCommand(ctx context.Context, argv []string, opts ...Option) (*Client, error) {
	if len(argv) == 0 {
		return nil, &Error{Status: StatusInvalid, Op: "spawn", Detail: "empty argv"}
	}
	op := "spawn " + argv[0]
	return dial(ctx, op, opts, func(l *loop, cfg *config, out **C.joint_conn) error {
		if cfg.tls != nil {
			return &Error{Status: StatusInvalid, Op: op, Detail: "WithTLS is for tls:// connections, not for a command"}
		}
		ptrSize := unsafe.Sizeof((*C.char)(nil))
		arr := (**C.char)(C.malloc(C.size_t(uintptr(len(argv)+1) * ptrSize)))
		slots := unsafe.Slice(arr, len(argv)+1)
		for i, a := range argv {
			slots[i] = C.CString(a)
		}
		slots[len(argv)] = nil
		st := C.jg_spawn(l.ctx, arr, out)
		for i := range argv {
			C.free(unsafe.Pointer(slots[i]))
		}
		C.free(unsafe.Pointer(arr))
		return l.fail(st, op)
	})
}

func dial(ctx context.Context, op string, opts []Option, connect func(*loop, *config, **C.joint_conn) error) (*Client, error) {
	cfg := buildConfig(opts)
	l, err := newLoop(cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{l: l, cfg: cfg, opened: make(chan error, 1), closedCh: make(chan struct{})}
	var derr error
	if err := l.do(func() {
		h := newHandle(c)
		if st := C.jg_set_conn_cb(l.ctx, C.uintptr_t(h)); st < 0 {
			h.Delete()
			derr = l.fail(st, op)
			return
		}
		var conn *C.joint_conn
		if err := connect(l, cfg, &conn); err != nil {
			derr = err
			return
		}
		c.conn = conn
		l.onStop = append(l.onStop, func() {
			C.joint_conn_free(c.conn)
			c.conn = nil
		})
	}); err != nil {
		derr = err
	}
	if derr == nil {
		select {
		case derr = <-c.opened:
			if derr != nil {
				if e, ok := derr.(*Error); ok {
					e.Op = op
				}
			}
		case <-ctx.Done():
			derr = &Error{Status: StatusCancelled, Op: op, cause: ctx.Err()}
			if ctx.Err() == context.DeadlineExceeded {
				derr.(*Error).Status = StatusTimeout
			}
		}
	}
	if derr != nil {
		c.Close()
		return nil, derr
	}
	return c, nil
}

// connEvent runs on the driver for OPEN and CLOSED of our connection.
func (c *Client) connEvent(conn *C.joint_conn, event C.int32_t, status C.joint_status, reason string) {
	switch event {
	case C.JOINT_CONN_OPEN:
		if !c.openSent {
			c.openSent = true
			c.tls = tlsState(conn)
			c.opened <- nil
		}
	case C.JOINT_CONN_CLOSED:
		st := Status(status)
		if status >= 0 {
			st = StatusClosed
		}
		err := &Error{Status: st, Op: "connection", Detail: reason}
		if !c.openSent {
			c.openSent = true
			c.opened <- err
		}
		c.setClosed(err)
	}
}

func (c *Client) setClosed(err error) {
	c.closeOnce.Do(func() {
		c.closeErr = err
		close(c.closedCh)
	})
}

// tlsFailure is the error of a call or notification op on a connection that a TLS failure
// closed (the server refused our certificate after Dial returned): that failure, so that
// the caller learns why rather than just ErrClosed. nil otherwise.
func (c *Client) tlsFailure(op string) error {
	select {
	case <-c.closedCh:
	default:
		return nil
	}
	if e, ok := c.closeErr.(*Error); ok && e.Status == StatusTLS {
		cp := *e
		cp.Op = op
		return &cp
	}
	return nil
}

// TLS is what the TLS handshake of the connection settled: its version and the server's
// certificate (subject, SHA-256, DER). The zero TLSState if the connection is not TLS.
func (c *Client) TLS() TLSState { return c.tls }

// Done is closed when the connection closes (the peer went away, or Close).
func (c *Client) Done() <-chan struct{} { return c.closedCh }

// Err says why the connection closed, after Done is closed; nil before.
func (c *Client) Err() error {
	select {
	case <-c.closedCh:
		return c.closeErr
	default:
		return nil
	}
}

// Close closes the connection and stops its event loop: pending calls fail with ErrClosed.
func (c *Client) Close() error {
	c.stopOnce.Do(func() {
		c.l.stop()
		c.setClosed(&Error{Status: StatusClosed, Op: "connection", Detail: "closed by Close"})
	})
	return nil
}

// Extension reports whether the joint extension is on for this connection (false for a
// stock peer, or while the offer is unanswered).
func (c *Client) Extension() bool {
	var on bool
	_ = c.l.do(func() { on = c.conn != nil && C.joint_conn_extension(c.conn) == C.JOINT_EXT_ON })
	return on
}

// Call calls method with args (encoded with github.com/vmihailenco/msgpack/v5; a Raw is
// sent as is; a trailing Kwargs are keyword params) and returns the result as encoded
// MessagePack. Cancelling ctx cancels the call (a joint callee is told); ctx's deadline is
// the call's timeout (and a joint callee's deadline). A peer's error object comes back as a
// *RemoteError; other failures as *Error (errors.Is: ErrTimeout, ErrCancelled, ErrClosed...).
func (c *Client) Call(ctx context.Context, method string, args ...any) (Raw, error) {
	params, kwargs, err := encodeArgs(args)
	if err != nil {
		return nil, err
	}
	pc, err := c.start(ctx, method, params, kwargs, nil)
	if err != nil {
		return nil, err
	}
	return pc.wait(ctx)
}

// CallInto calls method and decodes its result into result (a pointer).
func (c *Client) CallInto(ctx context.Context, result any, method string, args ...any) error {
	raw, err := c.Call(ctx, method, args...)
	if err != nil {
		return err
	}
	return raw.Decode(result)
}

// CallAs calls method and decodes its result as a T.
func CallAs[T any](ctx context.Context, c *Client, method string, args ...any) (T, error) {
	var v T
	err := c.CallInto(ctx, &v, method, args...)
	return v, err
}

// Notify sends a notification (no answer). Kwargs travel as the params map when there are
// no positional args, else as the last positional arg.
func (c *Client) Notify(method string, args ...any) error {
	params, kwargs, err := encodeArgs(args)
	if err != nil {
		return err
	}
	if kwargs != nil {
		n := len(args) - 1
		if n == 0 {
			params = kwargs
		} else {
			withMap := append(append([]any{}, args[:n]...), map[string]any(args[n].(Kwargs)))
			if params, _, err = encodeArgs(withMap); err != nil {
				return err
			}
		}
	}
	var nerr error
	if err := c.l.do(func() {
		if nerr = c.tlsFailure("notify " + method); nerr != nil {
			return
		}
		if c.conn == nil {
			nerr = &Error{Status: StatusClosed, Op: "notify " + method}
			return
		}
		m := cString(method)
		nerr = c.l.fail(C.joint_conn_notify(c.conn, cChars(m), cPtr(params), C.size_t(len(params))), "notify "+method)
	}); err != nil {
		return &Error{Status: StatusClosed, Op: "notify " + method}
	}
	return nerr
}

// Handle serves method for the peer's calls on this connection (see Server.Handle).
func (c *Client) Handle(method string, h HandlerFunc) error {
	return c.l.register(method, &handlerEntry{l: c.l, unary: h})
}

// HandleStream serves a streaming method for the peer (see Server.HandleStream).
func (c *Client) HandleStream(method string, h StreamHandlerFunc) error {
	return c.l.register(method, &handlerEntry{l: c.l, stream: h})
}

// OnNotify receives the peer's notifications, in order, on one goroutine (nil: ignore
// them). Notifications are queued without bound while fn runs.
func (c *Client) OnNotify(fn func(method string, params Raw)) error { return c.l.setNotify(fn) }

// pendingCall is one call in flight: its handle is the user data of the C call.
type pendingCall struct {
	c      *Client
	method string
	id     uint64 // driver-owned
	// finished is driver-owned: the completion ran (no more C calls on this id).
	finished bool
	done     chan struct{}
	result   Raw
	err      error
	stream   *Stream
	// hasTimeout: the call was made with a timeout; ctxDeadline: it was ctx's deadline.
	hasTimeout, ctxDeadline bool
}

type streamSpec struct {
	bidi   bool
	window uint32
}

// timeoutFor is the call timeout in ms from ctx's deadline or the default, and whether it
// is ctx's.
func (c *Client) timeoutFor(ctx context.Context, method string) (int32, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, false, ctxError("call "+method, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		rem := time.Until(dl)
		if rem <= 0 {
			return 0, false, ctxError("call "+method, context.DeadlineExceeded)
		}
		if c.cfg.callTimeout <= 0 || rem < c.cfg.callTimeout {
			return durationMs(rem), true, nil
		}
	}
	return durationMs(c.cfg.callTimeout), false, nil
}

func ctxError(op string, err error) error {
	st := StatusCancelled
	if err == context.DeadlineExceeded {
		st = StatusTimeout
	}
	return &Error{Status: st, Op: op, cause: err}
}

func (c *Client) start(ctx context.Context, method string, params, kwargs []byte, spec *streamSpec) (*pendingCall, error) {
	timeout, fromCtx, err := c.timeoutFor(ctx, method)
	if err != nil {
		return nil, err
	}
	pc := &pendingCall{c: c, method: method, done: make(chan struct{}), hasTimeout: timeout > 0, ctxDeadline: fromCtx}
	if spec != nil {
		pc.stream = newStream(pc, spec, c.cfg)
	}
	h := newHandle(pc)
	if !c.l.post(func() { c.startOnDriver(pc, h, params, kwargs, timeout, spec) }) {
		h.Delete()
		return nil, &Error{Status: StatusClosed, Op: "call " + method}
	}
	return pc, nil
}

func (c *Client) startOnDriver(pc *pendingCall, h cgo.Handle, params, kwargs []byte, timeout int32, spec *streamSpec) {
	l := c.l
	op := "call " + pc.method
	if err := c.tlsFailure(op); err != nil {
		h.Delete()
		pc.fail(err)
		return
	}
	if c.conn == nil || l.stopping {
		h.Delete()
		pc.fail(&Error{Status: StatusClosed, Op: op})
		return
	}
	opts := l.plain
	if spec != nil {
		if st := C.joint_call_opts_new(&opts); st < 0 {
			h.Delete()
			pc.fail(l.fail(st, op))
			return
		}
		defer C.joint_call_opts_free(opts)
		C.joint_call_opts_set_window(opts, C.uint32_t(spec.window))
		C.jg_call_opts_set_event_cb(opts, C.uintptr_t(h))
		C.joint_call_opts_set_manual_credit(opts, true)
		C.joint_call_opts_set_client_stream(opts, C.bool(spec.bidi))
	}
	limit := C.int32_t(-1) // no timeout (0 is not a timeout in the C API)
	if timeout > 0 {
		limit = C.int32_t(timeout)
	}
	C.joint_call_opts_set_timeout_ms(opts, limit)
	if st := C.joint_call_opts_set_kwargs(opts, cPtr(kwargs), C.size_t(len(kwargs))); st < 0 {
		h.Delete()
		pc.fail(l.fail(st, op))
		return
	}
	m := cString(pc.method)
	var id C.uint64_t
	st := C.jg_call(c.conn, cChars(m), cPtr(params), C.size_t(len(params)), opts, C.uintptr_t(h), &id)
	if st < 0 {
		h.Delete()
		pc.fail(l.fail(st, op))
		return
	}
	pc.id = uint64(id)
}

// fail completes the call without the library (driver).
func (pc *pendingCall) fail(err error) {
	pc.finished = true
	pc.err = err
	close(pc.done)
}

// complete runs on the driver with the call's outcome, exactly once.
func (pc *pendingCall) complete(resp *C.joint_response) {
	pc.finished = true
	st := C.joint_response_status(resp)
	var p *C.uint8_t
	var n C.size_t
	switch {
	case st == C.JOINT_OK:
		C.joint_response_result(resp, &p, &n)
		pc.result = Raw(goBytes(p, n))
	case st == C.JOINT_E_REMOTE:
		C.joint_response_error(resp, &p, &n)
		re := remoteErrorFrom(goBytes(p, n), pc.method)
		pc.err = re
		if pc.hasTimeout && re.HasCode && re.Code == CodeDeadlineExceeded {
			// A joint callee's deadline is our timeout: when its timer fires before ours,
			// this is still our call timing out.
			pc.err = &Error{Status: StatusTimeout, Op: "call " + pc.method, Detail: re.Message}
		}
	case pc.c.l.stopping && (st == C.JOINT_E_CANCELLED || st == C.JOINT_E_CLOSED):
		pc.err = &Error{Status: StatusClosed, Op: "call " + pc.method, Detail: "client closed"}
	default:
		pc.err = &Error{Status: Status(st), Op: "call " + pc.method, Detail: C.GoString(C.joint_response_message(resp))}
	}
	close(pc.done)
}

// cancel asks the driver to cancel the call if it is still pending.
func (pc *pendingCall) cancel() {
	pc.c.l.post(func() {
		if !pc.finished && pc.c.conn != nil {
			C.joint_conn_cancel(pc.c.conn, C.uint64_t(pc.id))
		}
	})
}

func (pc *pendingCall) wait(ctx context.Context) (Raw, error) {
	select {
	case <-pc.done:
	case <-ctx.Done():
		pc.cancel()
		<-pc.done
	}
	return pc.result, pc.errFor(ctx)
}

// errFor ties a cancellation or timeout to the context that caused it.
func (pc *pendingCall) errFor(ctx context.Context) error {
	e, ok := pc.err.(*Error)
	if !ok {
		return pc.err
	}
	switch {
	case e.Status == StatusTimeout && pc.ctxDeadline:
		c := *e
		c.cause = context.DeadlineExceeded
		return &c
	case (e.Status == StatusCancelled || e.Status == StatusTimeout) && ctx.Err() != nil:
		c := *e
		c.cause = ctx.Err()
		if ctx.Err() == context.DeadlineExceeded {
			c.Status = StatusTimeout
		}
		return &c
	}
	return pc.err
}
