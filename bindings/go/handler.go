package joint

// #include "bridge.h"
import "C"

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// HandlerFunc serves one call. Its result is encoded with msgpack (a Raw is sent as is; nil
// answers nil). A *RemoteError answers with that error object; any other error with
// `[0, err.Error()]`. ctx ends when the call's deadline passes, the caller cancels a joint
// call, the connection closes, or the Server/Client closes. A panic answers with an error.
type HandlerFunc func(ctx context.Context, req *Request) (any, error)

// StreamHandlerFunc serves a streaming call: s.Send streams items to the caller (waiting
// for its credit), s.Recv takes the values it sends in. Its return value is the call's
// result. A stock caller gets the items sent as one array instead (and cannot send in).
// ctx ends at the call's deadline and when the Server/Client closes; a cancellation by the
// caller shows as an error from Send or Recv (and then ends ctx).
type StreamHandlerFunc func(ctx context.Context, req *Request, s *ServerStream) (any, error)

// Request is a call being served.
type Request struct {
	Method   string
	Params   Raw           // the positional params: one MessagePack array
	Kwargs   Raw           // the keyword params (a map), nil if the caller sent none
	MsgID    uint32        // the msgid the caller chose
	Extended bool          // a joint extended call (can stream, be cancelled, have a deadline)
	Deadline time.Duration // the time the caller allowed, from arrival; 0 for none
	// TLS is what the TLS handshake of the connection the call came on settled: the
	// version and the client's certificate (PeerSubject, PeerSHA256, PeerCertificate),
	// if it presented one. The zero TLSState if the connection is not TLS.
	TLS TLSState
}

// Args decodes the positional params into dst (pointers), exactly one per param. The error
// is an INVALID_PARAMS *RemoteError: return it to answer with it.
func (r *Request) Args(dst ...any) error {
	dec := msgpack.NewDecoder(bytesReader(r.Params))
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return Errorf(CodeInvalidParams, "%s: params are not an array", r.Method)
	}
	if n != len(dst) {
		return Errorf(CodeInvalidParams, "%s takes %d params, got %d", r.Method, len(dst), n)
	}
	for i, d := range dst {
		if err := dec.Decode(d); err != nil {
			return Errorf(CodeInvalidParams, "%s: param %d: %v", r.Method, i+1, err)
		}
	}
	return nil
}

type handlerEntry struct {
	l      *loop
	unary  HandlerFunc
	stream StreamHandlerFunc
}

// register serves method with e; "" is the fallback for unregistered methods.
func (l *loop) register(method string, e *handlerEntry) error {
	if e.unary == nil && e.stream == nil {
		return &Error{Status: StatusNull, Op: "handle " + method, Detail: "nil handler"}
	}
	var rerr error
	if err := l.do(func() {
		h := newHandle(e)
		var st C.joint_status
		if method == "" {
			st = C.jg_set_fallback(l.ctx, C.uintptr_t(h))
		} else {
			m := cString(method)
			st = C.jg_register(l.ctx, cChars(m), C.uintptr_t(h))
		}
		if st < 0 {
			h.Delete()
			rerr = l.fail(st, "handle "+method)
		}
	}); err != nil {
		return err
	}
	return rerr
}

// reqState is a request being served: the C request and who may touch it.
//
// Unary handlers of extended calls get an event callback (so that a cancellation, deadline
// or closed connection ends ctx at once); such a request must be consumed on the driver, so
// it is answered through the loop. Other requests are answered from the handler's goroutine
// (joint_request_reply is thread-safe), and streaming handlers pull inputs and wait for
// credit on their own goroutine, with the blocking joint_request_next_input and
// joint_request_wait_writable.
type reqState struct {
	l         *loop
	req       *C.joint_request
	viaDriver bool
	consumed  bool // driver-owned when viaDriver
	cancel    context.CancelCauseFunc

	mu       sync.Mutex
	cond     sync.Cond
	active   int  // ServerStream operations in progress
	finished bool // the handler returned: no more operations
}

// dispatch runs on the driver: copy the request out and start its handler goroutine.
func (l *loop) dispatch(req *C.joint_request, e *handlerEntry) {
	var p *C.uint8_t
	var n C.size_t
	r := &Request{}
	if C.joint_request_method(req, &p, &n) == C.JOINT_OK {
		r.Method = string(goBytes(p, n))
	}
	if C.joint_request_params(req, &p, &n) == C.JOINT_OK {
		r.Params = Raw(goBytes(p, n))
	}
	if C.joint_request_kwargs(req, &p, &n) == C.JOINT_OK {
		r.Kwargs = Raw(goBytes(p, n))
	}
	r.MsgID = uint32(C.joint_request_msgid(req))
	r.Extended = bool(C.joint_request_is_extended(req))
	r.Deadline = time.Duration(C.joint_request_deadline_ms(req)) * time.Millisecond
	r.TLS = tlsState(C.joint_request_conn(req))

	rs := &reqState{l: l, req: req}
	rs.cond.L = &rs.mu
	ctx, cancel := context.WithCancelCause(l.base)
	rs.cancel = cancel
	var stopTimer context.CancelFunc = func() {}
	if r.Deadline > 0 {
		ctx, stopTimer = context.WithTimeoutCause(ctx, r.Deadline, ErrTimeout)
	}
	if e.unary != nil && r.Extended {
		h := newHandle(rs)
		if C.jg_request_set_event_cb(req, C.uintptr_t(h)) == C.JOINT_OK {
			rs.viaDriver = true
			l.reqs[rs] = struct{}{}
		} else {
			h.Delete()
		}
	}
	go func() {
		defer cancel(nil)
		defer stopTimer()
		rs.serve(ctx, r, e)
	}()
}

// event runs on the driver for a unary extended call: it ended without the handler.
func (rs *reqState) event(event C.int32_t) {
	switch event {
	case C.JOINT_INPUT_CANCELLED:
		rs.cancel(ErrCancelled)
	case C.JOINT_INPUT_TIMEOUT:
		rs.cancel(ErrTimeout)
	case C.JOINT_INPUT_CLOSED:
		rs.cancel(ErrClosed)
	}
}

func (rs *reqState) serve(ctx context.Context, r *Request, e *handlerEntry) {
	var ss *ServerStream
	if e.stream != nil {
		ss = &ServerStream{rs: rs, ctx: ctx}
	}
	res, err := func() (res any, err error) {
		defer func() {
			if p := recover(); p != nil {
				res, err = nil, Errorf(CodeHandlerFailed, "%s: panic: %v", r.Method, p)
			}
		}()
		if ss != nil {
			return e.stream(ctx, r, ss)
		}
		return e.unary(ctx, r)
	}()
	if ss != nil {
		rs.finishOps()
	}
	var payload []byte
	isErr := err != nil
	if isErr {
		payload = errorObject(err)
	} else if raw, ok := res.(Raw); ok {
		payload = raw
	} else if res != nil {
		if payload, err = msgpack.Marshal(res); err != nil {
			isErr, payload = true, errorObject(Errorf(CodeHandlerFailed, "%s: cannot encode the result: %v", r.Method, err))
		}
	}
	rs.answer(payload, isErr)
}

func (rs *reqState) answer(payload []byte, isErr bool) {
	if rs.viaDriver {
		// If the loop has stopped, shutdown already released the request.
		rs.l.post(func() { rs.consumeOnDriver(payload, &isErr) })
		return
	}
	answer(rs.req, payload, isErr)
	rs.l.kick()
}

func answer(req *C.joint_request, payload []byte, isErr bool) {
	if isErr {
		C.joint_request_reply_error(req, cPtr(payload), C.size_t(len(payload)))
	} else {
		C.joint_request_reply(req, cPtr(payload), C.size_t(len(payload)))
	}
}

// consumeOnDriver answers (isErr non-nil) or frees a request that has an event callback.
func (rs *reqState) consumeOnDriver(payload []byte, isErr *bool) {
	if rs.consumed {
		return
	}
	rs.consumed = true
	delete(rs.l.reqs, rs)
	if isErr == nil {
		rs.cancel(ErrClosed)
		C.joint_request_free(rs.req)
		return
	}
	answer(rs.req, payload, *isErr)
}

func (rs *reqState) begin() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.finished {
		return false
	}
	rs.active++
	return true
}

func (rs *reqState) end() {
	rs.mu.Lock()
	rs.active--
	if rs.active == 0 {
		rs.cond.Broadcast()
	}
	rs.mu.Unlock()
}

func (rs *reqState) isFinished() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.finished
}

// finishOps waits for ServerStream operations still running (on goroutines the handler left
// behind; they notice within one wait slice) so the request can be answered.
func (rs *reqState) finishOps() {
	rs.mu.Lock()
	rs.finished = true
	for rs.active > 0 {
		rs.cond.Wait()
	}
	rs.mu.Unlock()
}

// ErrHandlerReturned is returned by ServerStream methods used after the handler returned.
var ErrHandlerReturned = fmt.Errorf("joint: the stream handler has returned")

// waitSlice bounds each blocking C wait so that a ServerStream notices ctx and its
// handler's return.
const waitSlice = 100 // ms

// ServerStream is the streaming side of a call served by a StreamHandlerFunc. Send and Recv
// may be used from two goroutines at once, but not after the handler returns.
type ServerStream struct {
	rs  *reqState
	ctx context.Context
	eof bool
}

// endErr is the error for a call that ended without the handler; it also ends ctx.
func (s *ServerStream) endErr(st C.joint_status, op string) error {
	err := &Error{Status: Status(st), Op: op}
	switch st {
	case C.JOINT_E_CANCELLED, C.JOINT_E_TIMEOUT, C.JOINT_E_CLOSED:
		s.rs.cancel(err.Status)
	}
	return err
}

func (s *ServerStream) stopped(op string) error {
	if s.rs.isFinished() {
		return ErrHandlerReturned
	}
	if s.ctx.Err() != nil {
		return ctxError(op, context.Cause(s.ctx))
	}
	return nil
}

// Send streams v to the caller, waiting for credit (flow control). Errors: ErrCancelled,
// ErrTimeout, ErrClosed when the call ended; ErrTooLarge for an item over the size limit.
func (s *ServerStream) Send(v any) error {
	b, err := Marshal(v)
	if err != nil {
		return err
	}
	if !s.rs.begin() {
		return ErrHandlerReturned
	}
	defer s.rs.end()
	for {
		st := C.joint_request_yield(s.rs.req, cPtr(b), C.size_t(len(b)))
		switch {
		case st == C.JOINT_OK:
			s.rs.l.kick()
			return nil
		case st != C.JOINT_WOULD_BLOCK:
			return s.endErr(st, "send")
		}
		for {
			if err := s.stopped("send"); err != nil {
				return err
			}
			w := C.joint_request_wait_writable(s.rs.req, waitSlice)
			if w == C.JOINT_OK {
				break
			}
			if w != C.JOINT_WOULD_BLOCK { // WOULD_BLOCK: the slice passed without credit
				return s.endErr(w, "send")
			}
		}
	}
}

// Recv returns the next value the caller sent in; io.EOF once the caller has closed its
// side (a stock caller at once). A value thrown in by the caller comes back as a
// *RemoteError (the stream goes on). ErrCancelled, ErrTimeout, ErrClosed: the call ended.
func (s *ServerStream) Recv() (Raw, error) {
	if s.eof {
		return nil, io.EOF
	}
	if !s.rs.begin() {
		return nil, ErrHandlerReturned
	}
	defer s.rs.end()
	for {
		if err := s.stopped("recv"); err != nil {
			return nil, err
		}
		var ev C.int32_t
		var buf *C.joint_buf
		st := C.joint_request_next_input(s.rs.req, waitSlice, &ev, &buf)
		if st == C.JOINT_WOULD_BLOCK { // the slice passed with nothing: look at ctx again
			continue
		}
		if st < 0 {
			return nil, s.endErr(st, "recv")
		}
		var data []byte
		if buf != nil {
			var p *C.uint8_t
			var n C.size_t
			C.joint_buf_data(buf, &p, &n)
			data = goBytes(p, n)
			C.joint_buf_free(buf)
		}
		switch ev {
		case C.JOINT_INPUT_VALUE:
			s.rs.l.kick() // the credit for it is queued in the library
			return Raw(data), nil
		case C.JOINT_INPUT_END:
			s.eof = true
			return nil, io.EOF
		case C.JOINT_INPUT_THROW:
			return nil, remoteErrorFrom(data, "")
		case C.JOINT_INPUT_CANCELLED:
			return nil, s.endErr(C.JOINT_E_CANCELLED, "recv")
		case C.JOINT_INPUT_TIMEOUT:
			return nil, s.endErr(C.JOINT_E_TIMEOUT, "recv")
		case C.JOINT_INPUT_CLOSED:
			return nil, s.endErr(C.JOINT_E_CLOSED, "recv")
		}
	}
}
