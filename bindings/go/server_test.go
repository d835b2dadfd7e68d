package joint_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	joint "github.com/joint-rpc/joint/bindings/go"
)

func addHandler(ctx context.Context, r *joint.Request) (any, error) {
	var a, b int64
	if err := r.Args(&a, &b); err != nil {
		return nil, err
	}
	return a + b, nil
}

func TestServerUnary(t *testing.T) {
	type point struct {
		X, Y int
	}
	_, uri := newServer(t, func(s *joint.Server) {
		s.Handle("add", addHandler)
		s.Handle("nil", func(ctx context.Context, r *joint.Request) (any, error) { return nil, nil })
		s.Handle("raw", func(ctx context.Context, r *joint.Request) (any, error) {
			return joint.Raw{0x93, 0x01, 0x02, 0x03}, nil // [1, 2, 3], sent as is
		})
		s.Handle("struct", func(ctx context.Context, r *joint.Request) (any, error) {
			var p point
			if err := r.Args(&p); err != nil {
				return nil, err
			}
			return point{p.Y, p.X}, nil
		})
		s.Handle("kw", func(ctx context.Context, r *joint.Request) (any, error) {
			var kw map[string]int
			if r.Kwargs == nil {
				return nil, joint.NewError(joint.CodeInvalidParams, "kwargs expected")
			}
			if err := r.Kwargs.Decode(&kw); err != nil {
				return nil, err
			}
			var pos []int
			r.Params.Decode(&pos)
			return []any{pos, kw["a"] * kw["b"], r.Extended}, nil
		})
		s.Handle("method", func(ctx context.Context, r *joint.Request) (any, error) { return r.Method, nil })
	})
	c := dial(t, uri)
	ctx := testCtx(t)
	if v := must[int](t)(joint.CallAs[int](ctx, c, "add", 40, 2)); v != 42 {
		t.Fatal(v)
	}
	r := must[joint.Raw](t)(c.Call(ctx, "nil"))
	if v, _ := r.Any(); v != nil {
		t.Fatalf("nil: %v", r)
	}
	var arr []int
	if err := c.CallInto(ctx, &arr, "raw"); err != nil || !reflect.DeepEqual(arr, []int{1, 2, 3}) {
		t.Fatalf("raw: %v %v", arr, err)
	}
	p := must[point](t)(joint.CallAs[point](ctx, c, "struct", point{1, 2}))
	if p != (point{2, 1}) {
		t.Fatal(p)
	}
	kw := must[joint.Raw](t)(c.Call(ctx, "kw", 7, joint.Kwargs{"a": 6, "b": 7}))
	if kw.String() != "[[7],42,true]" {
		t.Fatalf("kw: %s", kw)
	}
	if m := must[string](t)(joint.CallAs[string](ctx, c, "method")); m != "method" {
		t.Fatal(m)
	}
}

func TestServerErrors(t *testing.T) {
	_, uri := newServer(t, func(s *joint.Server) {
		s.Handle("add", addHandler)
		s.Handle("custom", func(ctx context.Context, r *joint.Request) (any, error) {
			return nil, joint.Errorf(42, "custom %d", 1)
		})
		s.Handle("raw_error", func(ctx context.Context, r *joint.Request) (any, error) {
			return nil, &joint.RemoteError{Raw: joint.Raw("\xa4oops")} // the string "oops"
		})
		s.Handle("plain", func(ctx context.Context, r *joint.Request) (any, error) {
			return nil, fmt.Errorf("wrapped: %w", errors.New("boom"))
		})
		s.Handle("panic", func(ctx context.Context, r *joint.Request) (any, error) { panic("aaah") })
		s.Handle("unencodable", func(ctx context.Context, r *joint.Request) (any, error) { return make(chan int), nil })
	})
	c := dial(t, uri)
	ctx := testCtx(t)
	cases := []struct {
		method  string
		args    []any
		code    int64
		hasCode bool
		message string
	}{
		{"missing", nil, joint.CodeNoMethod, true, "no such method: missing"},
		{"add", []any{1}, joint.CodeInvalidParams, true, "add takes 2 params, got 1"},
		{"add", []any{"a", "b"}, joint.CodeInvalidParams, true, ""},
		{"custom", nil, 42, true, "custom 1"},
		{"raw_error", nil, 0, false, "oops"},
		{"plain", nil, joint.CodeHandlerFailed, true, "wrapped: boom"},
		{"panic", nil, joint.CodeHandlerFailed, true, "panic: panic: aaah"},
		{"unencodable", nil, joint.CodeHandlerFailed, true, ""},
	}
	for _, tc := range cases {
		_, err := c.Call(ctx, tc.method, tc.args...)
		var re *joint.RemoteError
		if !errors.As(err, &re) {
			t.Fatalf("%s: want a RemoteError, got %v", tc.method, err)
		}
		if re.HasCode != tc.hasCode || re.Code != tc.code {
			t.Errorf("%s: code %v %d, want %v %d (%v)", tc.method, re.HasCode, re.Code, tc.hasCode, tc.code, err)
		}
		if tc.message != "" && re.Message != tc.message && !(tc.method == "panic" && re.Message == "panic: "+"aaah") {
			if !(tc.method == "panic" && len(re.Message) > 0) {
				t.Errorf("%s: message %q, want %q", tc.method, re.Message, tc.message)
			}
		}
	}
}

func TestServerSeesCancelAndDeadline(t *testing.T) {
	cause := make(chan error, 4)
	started := make(chan struct{}, 4)
	_, uri := newServer(t, func(s *joint.Server) {
		s.Handle("wait", func(ctx context.Context, r *joint.Request) (any, error) {
			started <- struct{}{}
			select {
			case <-ctx.Done():
				cause <- context.Cause(ctx)
				return nil, ctx.Err()
			case <-time.After(10 * time.Second):
				cause <- nil
				return "slept", nil
			}
		})
		s.Handle("deadline", func(ctx context.Context, r *joint.Request) (any, error) {
			dl, ok := ctx.Deadline()
			return []any{ok, r.Deadline.Milliseconds(), time.Until(dl) > 0}, nil
		})
	})
	c := dial(t, uri)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := c.Call(ctx, "wait"); errc <- err }()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, joint.ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("caller: %v", err)
	}
	select {
	case err := <-cause:
		if !errors.Is(err, joint.ErrCancelled) {
			t.Fatalf("handler's cause: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was not told of the cancellation")
	}

	tctx, tcancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer tcancel()
	if _, err := c.Call(tctx, "wait"); !errors.Is(err, joint.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller: %v", err)
	}
	<-started
	select {
	case err := <-cause:
		// The callee's deadline and the caller's CANCEL (sent when its own timer fires)
		// race: either ends the handler.
		if !errors.Is(err, joint.ErrTimeout) && !errors.Is(err, joint.ErrCancelled) {
			t.Fatalf("handler's cause: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's deadline did not pass")
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	var info []any
	if err := c.CallInto(dctx, &info, "deadline"); err != nil {
		t.Fatal(err)
	}
	if info[0] != true || info[2] != true {
		t.Fatalf("deadline info %v", info)
	}
}

func TestServerNotifications(t *testing.T) {
	got := make(chan string, 100)
	_, uri := newServer(t, func(s *joint.Server) {
		s.OnNotify(func(method string, params joint.Raw) {
			var p []int
			params.Decode(&p)
			got <- fmt.Sprint(method, p)
		})
	})
	c := dial(t, uri)
	for i := 0; i < 50; i++ {
		if err := c.Notify("tick", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 50; i++ {
		select {
		case s := <-got:
			if want := fmt.Sprint("tick", []int{i}); s != want {
				t.Fatalf("notification %d: %s, want %s (order must hold)", i, s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("notification %d missing", i)
		}
	}
}

func TestServerFallback(t *testing.T) {
	_, uri := newServer(t, func(s *joint.Server) {
		s.HandleFallback(func(ctx context.Context, r *joint.Request) (any, error) { return "fallback:" + r.Method, nil })
	})
	c := dial(t, uri)
	if v := must[string](t)(joint.CallAs[string](testCtx(t), c, "anything")); v != "fallback:anything" {
		t.Fatal(v)
	}
}

func TestConcurrentCalls(t *testing.T) {
	var inflight, peak atomic.Int32
	_, uri := newServer(t, func(s *joint.Server) {
		s.Handle("add", func(ctx context.Context, r *joint.Request) (any, error) {
			n := inflight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			inflight.Add(-1)
			return addHandler(ctx, r)
		})
	})
	c := dial(t, uri)
	ctx := testCtx(t)
	const goroutines, calls = 100, 50
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < calls; i++ {
				v, err := joint.CallAs[int](ctx, c, "add", g, i)
				if err != nil || v != g+i {
					errs <- fmt.Errorf("add(%d, %d) = %d, %v", g, i, v, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if peak.Load() < 2 {
		t.Errorf("handlers never ran concurrently (peak %d)", peak.Load())
	}
}

func TestManyClients(t *testing.T) {
	_, uri := newServer(t, func(s *joint.Server) { s.Handle("add", addHandler) })
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for g := 0; g < 20; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			c, err := joint.Dial(uri)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for i := 0; i < 20; i++ {
				if v, err := joint.CallAs[int](context.Background(), c, "add", g, i); err != nil || v != g+i {
					errs <- fmt.Errorf("%d %v", v, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestServerShutdownAndClose(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	s, uri := newServer(t, func(s *joint.Server) {
		s.Handle("block", func(ctx context.Context, r *joint.Request) (any, error) {
			started <- struct{}{}
			select {
			case <-release:
				return "done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		s.Handle("add", addHandler)
	})
	c := dial(t, uri)
	res := make(chan error, 1)
	go func() {
		v, err := joint.CallAs[string](context.Background(), c, "block")
		if err == nil && v != "done" {
			err = fmt.Errorf("got %q", v)
		}
		res <- err
	}()
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	// New requests are refused while the old one finishes (once the shutdown has begun).
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, err := c.Call(testCtx(t), "add", 1, 2)
		var re *joint.RemoteError
		if errors.As(err, &re) && re.Code == joint.CodeShuttingDown {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("call during shutdown: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	if err := <-res; err != nil {
		t.Fatalf("the call in progress: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("server not done")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not see the connection close")
	}

	// Close with a handler still running: the caller's call fails, the handler's ctx ends.
	ended := make(chan struct{})
	s2, uri2 := newServer(t, func(s *joint.Server) {
		s.Handle("block", func(ctx context.Context, r *joint.Request) (any, error) {
			started <- struct{}{}
			<-ctx.Done()
			close(ended)
			return nil, nil
		})
	})
	c2 := dial(t, uri2)
	go func() { _, err := c2.Call(context.Background(), "block"); res <- err }()
	<-started
	s2.Close()
	if err := <-res; !errors.Is(err, joint.ErrClosed) {
		t.Fatalf("call when the server closed: %v", err)
	}
	<-ended
	if err := s2.Serve("tcp://127.0.0.1:0"); !errors.Is(err, joint.ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

func TestServeBlocks(t *testing.T) {
	s, err := joint.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("add", addHandler)
	done := make(chan error, 1)
	go func() { done <- s.Serve("tcp://127.0.0.1:0") }()
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	s.Close()
	if err := <-done; !errors.Is(err, joint.ErrServerClosed) {
		t.Fatal(err)
	}
}

func TestListenErrors(t *testing.T) {
	s, uri := newServer(t, nil)
	if _, err := s.Listen(uri); !errors.Is(err, joint.ErrAddrInUse) {
		t.Fatalf("listen twice: %v", err)
	}
	if _, err := s.Listen("bogus"); !errors.Is(err, joint.ErrAddress) {
		t.Fatalf("bogus address: %v", err)
	}
}

func TestUDP(t *testing.T) {
	s, _ := newServer(t, func(s *joint.Server) { s.Handle("add", addHandler) })
	uri, err := s.Listen("udp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, uri)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if v := must[int](t)(joint.CallAs[int](ctx, c, "add", 1, 2)); v != 3 {
		t.Fatal(v)
	}
}

func TestStockClient(t *testing.T) {
	// A client without the extension is a stock MessagePack-RPC peer: a streaming handler's
	// items come back as one array, and kwargs travel as the params map.
	_, uri := newServer(t, func(s *joint.Server) {
		s.HandleStream("items", func(ctx context.Context, r *joint.Request, st *joint.ServerStream) (any, error) {
			if _, err := st.Recv(); err == nil {
				return nil, errors.New("a stock call has no input")
			}
			for i := 0; i < 5; i++ {
				if err := st.Send(i); err != nil {
					return nil, err
				}
			}
			return "ignored for stock callers", nil
		})
		s.Handle("kw", func(ctx context.Context, r *joint.Request) (any, error) {
			return []any{r.Extended, r.Kwargs != nil}, nil
		})
	})
	c := dial(t, uri, joint.WithExtension(false))
	ctx := testCtx(t)
	if c.Extension() {
		t.Fatal("extension on")
	}
	var items []int
	if err := c.CallInto(ctx, &items, "items"); err != nil || !reflect.DeepEqual(items, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("items: %v %v", items, err)
	}
	if r := must[joint.Raw](t)(c.Call(ctx, "kw", joint.Kwargs{"a": 1})); r.String() != "[false,true]" {
		t.Fatalf("kw: %s", r)
	}
	st, err := c.CallBidi(ctx, "items")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(1); !errors.Is(err, joint.ErrUnsupported) {
		t.Fatalf("send to a stock call: %v", err)
	}
	st.Close()
}

// The resource limits are options: with a 1 MiB memory budget an answer of 2 MiB becomes a
// RESOURCE_EXHAUSTED (10) error, smaller ones work on the same connection.
func TestResourceLimitOptions(t *testing.T) {
	_, uri := newServer(t, func(s *joint.Server) {
		s.Handle("blob", func(ctx context.Context, r *joint.Request) (any, error) {
			var n int
			if err := r.Args(&n); err != nil {
				return nil, err
			}
			return make([]byte, n), nil
		})
	}, joint.WithMemoryBudget(1<<20), joint.WithOutputHighWater(1<<16), joint.WithMaxConnections(8),
		joint.WithMessageTimeout(5*time.Second), joint.WithIdleTimeout(0), joint.WithLinger(0), joint.WithListenBacklog(16))
	c := dial(t, uri, joint.WithMemoryBudget(64<<20))
	ctx := testCtx(t)
	_, err := c.Call(ctx, "blob", 2<<20)
	var re *joint.RemoteError
	if !errors.As(err, &re) || re.Code != 10 {
		t.Fatalf("want a RemoteError with code 10, got %v", err)
	}
	v, err := joint.CallAs[[]byte](ctx, c, "blob", 1000)
	if err != nil || len(v) != 1000 {
		t.Fatalf("blob(1000): %d bytes, %v", len(v), err)
	}
	if _, err := joint.NewServer(joint.WithMemoryBudget(1024)); err == nil {
		t.Fatal("a memory budget under 1 MiB was accepted")
	}
}
