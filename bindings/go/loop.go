package joint

// #include "bridge.h"
import "C"

import (
	"context"
	"runtime"
	"runtime/cgo"
	"sync"
	"syscall"
)

func newHandle(v any) cgo.Handle { return cgo.NewHandle(v) }

// loop owns one joint_ctx and the goroutine that drives it. The C context is
// single-threaded: every call on it (and on its connections and calls) happens on the
// driver goroutine, which is locked to its OS thread. Other goroutines hand it work with
// post (a queue plus a write to the binding's own eventfd, which the driver polls with the
// context fd) and never block it: callbacks into Go only copy data and signal.
//
// The binding does not wake the driver with joint_ctx_wakeup: that wake-up can be lost (see
// kick), and an eventfd of its own needs no care around joint_ctx_free.
type loop struct {
	ctx *C.joint_ctx
	fd  C.int
	efd C.int // the binding's wake-up eventfd (see post)

	mu      sync.Mutex
	queue   []func()
	closed  bool // no more work accepted: the context is being freed
	stopReq bool

	done    chan struct{} // closed when the context is freed
	doneErr error         // a fatal context error, if that ended the loop

	// The context of handlers; cancelled when the loop stops.
	base       context.Context
	cancelBase context.CancelFunc

	// Driver-owned.
	stopping bool
	reqs     map[*reqState]struct{} // requests with an event callback, consumed on the driver
	onStop   []func()               // run on the driver before the context is freed
	plain    *C.joint_call_opts     // reused options of unary calls

	notes *notifier
}

func newLoop(cfg *config) (*loop, error) {
	l := &loop{done: make(chan struct{}), reqs: map[*reqState]struct{}{}}
	l.base, l.cancelBase = context.WithCancel(context.Background())
	ready := make(chan error, 1)
	go l.drive(cfg, ready)
	if err := <-ready; err != nil {
		l.cancelBase()
		return nil, err
	}
	return l, nil
}

func (l *loop) drive(cfg *config, ready chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ccfg, err := cfg.newCConfig()
	if err != nil {
		ready <- err
		return
	}
	var ctx *C.joint_ctx
	st := C.joint_ctx_new(ccfg, &ctx)
	C.joint_config_free(ccfg)
	if st != C.JOINT_OK {
		ready <- statusErr(st, "new context")
		return
	}
	l.ctx = ctx
	l.fd = C.int(C.joint_ctx_fd(ctx))
	if l.efd = C.jg_eventfd(); l.efd < 0 {
		C.joint_ctx_free(ctx)
		ready <- &Error{Status: StatusIO, Op: "eventfd"}
		return
	}
	if st := C.joint_call_opts_new(&l.plain); st != C.JOINT_OK {
		C.joint_ctx_free(ctx)
		C.jg_close(l.efd)
		ready <- statusErr(st, "call options")
		return
	}
	ready <- nil

	// Each turn: take the queued work (after the wait drained the eventfd, so a post from
	// now on leaves it readable), run it, process, and wait only if nothing was queued
	// meanwhile.
	var batch []func()
	for {
		l.mu.Lock()
		batch, l.queue = l.queue, batch[:0]
		stop := l.stopReq
		l.mu.Unlock()
		for i, f := range batch {
			f()
			batch[i] = nil
		}
		if stop {
			break
		}
		if st := C.joint_ctx_process(ctx); st < 0 {
			l.doneErr = &Error{Status: Status(st), Op: "process", Detail: C.GoString(C.joint_ctx_last_error(ctx))}
			break
		}
		l.mu.Lock()
		pending := len(l.queue) > 0 || l.stopReq
		l.mu.Unlock()
		if !pending {
			C.jg_wait(ctx, l.fd, l.efd)
		}
	}
	l.shutdown()
}

// wake makes the driver's wait return; l.mu is held.
func (l *loop) wake() {
	one := [8]byte{1}
	_, _ = syscall.Write(int(l.efd), one[:])
}

// kick makes the driver run joint_ctx_process soon. Used after the thread-safe request
// calls (reply, yield, next_input) that queue work inside the library: their own wake-up
// can be lost (library bug: a joint_ctx_wakeup landing inside joint_ctx_process before its
// epoll_wait leaves the context's "woken" flag set with no event pending, so later wake-ups
// are dropped until the next process).
func (l *loop) kick() { l.post(func() {}) }

// shutdown runs on the driver: refuse new work, run what was queued, release requests held
// for the driver, free the context (pending calls complete with CANCELLED; the Go side
// reports ErrClosed).
func (l *loop) shutdown() {
	l.stopping = true
	l.cancelBase()
	for {
		l.mu.Lock()
		batch := l.queue
		l.queue = nil
		if len(batch) == 0 {
			l.closed = true
		}
		l.mu.Unlock()
		if len(batch) == 0 {
			break
		}
		for _, f := range batch {
			f()
		}
	}
	for _, f := range l.onStop {
		f()
	}
	for rs := range l.reqs {
		rs.consumeOnDriver(nil, nil)
	}
	C.joint_call_opts_free(l.plain)
	C.joint_ctx_free(l.ctx) // runs the remaining callbacks and free functions
	l.ctx = nil
	C.jg_close(l.efd) // no post reaches it any more: closed is set
	if l.notes != nil {
		l.notes.close()
	}
	close(l.done)
}

// post queues f to run on the driver goroutine. False if the loop has stopped (f will not
// run).
func (l *loop) post(f func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.queue = append(l.queue, f)
	if len(l.queue) == 1 {
		l.wake()
	}
	return true
}

// do runs f on the driver goroutine and waits for it. ErrClosed if the loop has stopped.
func (l *loop) do(f func()) error {
	ch := make(chan struct{})
	if !l.post(func() { f(); close(ch) }) {
		return ErrClosed
	}
	<-ch
	return nil
}

// stop frees the context and waits until it is gone. Safe to call more than once and from
// any goroutine except the driver itself.
func (l *loop) stop() {
	l.mu.Lock()
	if !l.stopReq && !l.closed {
		l.stopReq = true
		if len(l.queue) == 0 {
			l.wake()
		}
	}
	l.mu.Unlock()
	<-l.done
}

func (l *loop) lastError() string { return C.GoString(C.joint_ctx_last_error(l.ctx)) }

// fail is the error for status st of op on the driver, with the library's detail.
func (l *loop) fail(st C.joint_status, op string) error {
	if st >= 0 {
		return nil
	}
	if l.stopping && (st == C.JOINT_E_CANCELLED || st == C.JOINT_E_CLOSED) {
		return &Error{Status: StatusClosed, Op: op, Detail: "closed"}
	}
	return &Error{Status: Status(st), Op: op, Detail: l.lastError()}
}

// notifier delivers notifications to one goroutine, in order, without blocking the driver.
type notifier struct {
	fn     func(method string, params Raw)
	mu     sync.Mutex
	q      []notification
	wake   chan struct{}
	closed bool
}

type notification struct {
	method string
	params Raw
}

func newNotifier(fn func(string, Raw)) *notifier {
	n := &notifier{fn: fn, wake: make(chan struct{}, 1)}
	go n.run()
	return n
}

func (n *notifier) push(method string, params Raw) {
	n.mu.Lock()
	n.q = append(n.q, notification{method, params})
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) run() {
	for range n.wake {
		for {
			n.mu.Lock()
			q := n.q
			n.q = nil
			closed := n.closed
			n.mu.Unlock()
			for _, x := range q {
				n.fn(x.method, x.params)
			}
			if len(q) == 0 {
				if closed {
					return
				}
				break
			}
		}
	}
}

// setNotify installs fn for notifications (driver).
func (l *loop) setNotify(fn func(method string, params Raw)) error {
	var err error
	if e := l.do(func() {
		if l.notes != nil {
			l.notes.close()
			l.notes = nil
		}
		if fn == nil {
			C.joint_ctx_set_notification_cb(l.ctx, nil, nil, nil)
			return
		}
		n := newNotifier(fn)
		h := newHandle(n)
		if st := C.jg_set_notification_cb(l.ctx, C.uintptr_t(h)); st < 0 {
			h.Delete()
			n.close()
			err = l.fail(st, "set notification handler")
			return
		}
		l.notes = n
	}); e != nil {
		return e
	}
	return err
}
