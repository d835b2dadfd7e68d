package joint

// #include "bridge.h"
import "C"

import (
	"context"
	"io"
	"sync"
)

// Stream is a call whose callee streams items back (joint extension), and with CallBidi
// also takes values sent into it. Items are queued as they arrive, at most the window
// (WithWindow, default 64) at a time: credit for more is granted as Next hands them out, so
// a slow consumer slows the producer instead of buffering.
//
// Next may be used from one goroutine while Send is used from another. To a stock peer the
// call is a plain request: no items, its answer is the Result, and Send fails with
// ErrUnsupported.
type Stream struct {
	pc         *pendingCall
	ctx        context.Context
	stopAfter  func() bool
	grantEvery uint32

	mu       sync.Mutex
	items    []Raw
	head     int
	consumed uint32
	notify   chan struct{}
	writable chan struct{}
}

func newStream(pc *pendingCall, spec *streamSpec, cfg *config) *Stream {
	s := &Stream{pc: pc, notify: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
	s.grantEvery = spec.window / 2
	if s.grantEvery == 0 {
		s.grantEvery = 1
	}
	return s
}

// CallStream calls a method that streams items back. The call runs until its result
// arrives, ctx ends, or Close. Read the items with Next, then the result with Result.
func (c *Client) CallStream(ctx context.Context, method string, args ...any) (*Stream, error) {
	return c.callStream(ctx, method, false, args)
}

// CallBidi is CallStream for a method that also takes values sent into it: Send them, then
// CloseSend, while reading items with Next (in another goroutine, if the callee streams
// while it takes input).
func (c *Client) CallBidi(ctx context.Context, method string, args ...any) (*Stream, error) {
	return c.callStream(ctx, method, true, args)
}

func (c *Client) callStream(ctx context.Context, method string, bidi bool, args []any) (*Stream, error) {
	params, kwargs, err := encodeArgs(args)
	if err != nil {
		return nil, err
	}
	window := c.cfg.window
	if window == 0 {
		window = 64
	}
	pc, err := c.start(ctx, method, params, kwargs, &streamSpec{bidi: bidi, window: window})
	if err != nil {
		return nil, err
	}
	s := pc.stream
	s.ctx = ctx
	s.stopAfter = context.AfterFunc(ctx, pc.cancel)
	return s, nil
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// event runs on the driver: an item or send credit.
func (s *Stream) event(event C.int32_t, data *C.uint8_t, n C.size_t) {
	switch event {
	case C.JOINT_CALL_ITEM:
		item := Raw(goBytes(data, n))
		s.mu.Lock()
		s.items = append(s.items, item)
		s.mu.Unlock()
		signal(s.notify)
	case C.JOINT_CALL_WRITABLE:
		signal(s.writable)
	}
}

func (s *Stream) pop() (Raw, bool) {
	s.mu.Lock()
	if s.head == len(s.items) {
		s.mu.Unlock()
		return nil, false
	}
	it := s.items[s.head]
	s.items[s.head] = nil
	s.head++
	if s.head == len(s.items) {
		s.items, s.head = s.items[:0], 0
	}
	s.consumed++
	var grant uint32
	if s.consumed >= s.grantEvery {
		grant, s.consumed = s.consumed, 0
	}
	s.mu.Unlock()
	if grant > 0 {
		pc := s.pc
		pc.c.l.post(func() {
			if !pc.finished && pc.c.conn != nil {
				C.joint_conn_grant(pc.c.conn, C.uint64_t(pc.id), C.uint32_t(grant))
			}
		})
	}
	return it, true
}

// Next returns the next item, waiting for it; false when the call has finished and every
// item was taken (then Result or Err says how it ended).
func (s *Stream) Next() (Raw, bool) {
	for {
		if it, ok := s.pop(); ok {
			return it, true
		}
		select {
		case <-s.notify:
		case <-s.pc.done:
			// Items arrive before the completion; take what is left.
			return s.pop()
		}
	}
}

// Result drops the items not taken yet, waits for the call to finish, and returns its
// result (a streaming joint method's final answer; a stock peer's whole answer).
func (s *Stream) Result() (Raw, error) {
	for {
		if _, ok := s.Next(); !ok {
			break
		}
	}
	s.stopAfter()
	return s.pc.result, s.pc.errFor(s.ctx)
}

// Err is the call's error once Next has returned false (nil if it succeeded or is still
// running).
func (s *Stream) Err() error {
	select {
	case <-s.pc.done:
		return s.pc.errFor(s.ctx)
	default:
		return nil
	}
}

// Done is closed when the call has finished.
func (s *Stream) Done() <-chan struct{} { return s.pc.done }

// Send sends v into the call (CallBidi), waiting for flow-control credit. It returns the
// call's error once the call has failed, or io.EOF once it has finished.
func (s *Stream) Send(v any) error {
	b, err := Marshal(v)
	if err != nil {
		return err
	}
	pc := s.pc
	for {
		var serr error
		var blocked, ended bool
		if err := pc.c.l.do(func() {
			if pc.finished || pc.c.conn == nil {
				ended = true
				return
			}
			st := C.joint_conn_send(pc.c.conn, C.uint64_t(pc.id), cPtr(b), C.size_t(len(b)))
			blocked = st == C.JOINT_WOULD_BLOCK
			serr = pc.c.l.fail(st, "send into "+pc.method)
		}); err != nil {
			ended = true
		}
		if ended {
			<-pc.done
			return s.endedErr()
		}
		if !blocked {
			return serr
		}
		select {
		case <-s.writable:
		case <-pc.done:
			return s.endedErr()
		}
	}
}

func (s *Stream) endedErr() error {
	if err := s.pc.errFor(s.ctx); err != nil {
		return err
	}
	return io.EOF
}

// CloseSend tells the callee that nothing more will be sent.
func (s *Stream) CloseSend() error {
	pc := s.pc
	var cerr error
	if err := pc.c.l.do(func() {
		if pc.finished || pc.c.conn == nil {
			return
		}
		cerr = pc.c.l.fail(C.joint_conn_end_input(pc.c.conn, C.uint64_t(pc.id)), "close send of "+pc.method)
	}); err != nil {
		return nil
	}
	return cerr
}

// Throw throws an error object (for example NewError(code, message)) into the running
// call: the callee's handler gets it and decides how the call ends.
func (s *Stream) Throw(errObj any) error {
	var b []byte
	if e, ok := errObj.(error); ok {
		b = errorObject(e)
	} else {
		var err error
		if b, err = Marshal(errObj); err != nil {
			return err
		}
	}
	pc := s.pc
	var terr error
	if err := pc.c.l.do(func() {
		if pc.finished || pc.c.conn == nil {
			terr = io.EOF
			return
		}
		terr = pc.c.l.fail(C.joint_conn_throw(pc.c.conn, C.uint64_t(pc.id), cPtr(b), C.size_t(len(b))), "throw into "+pc.method)
	}); err != nil {
		return err
	}
	return terr
}

// Close cancels the call if it is still running, and waits until it has finished.
func (s *Stream) Close() error {
	select {
	case <-s.pc.done:
	default:
		s.pc.cancel()
		<-s.pc.done
	}
	s.stopAfter()
	return nil
}
