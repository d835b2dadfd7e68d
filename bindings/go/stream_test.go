package joint_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	joint "github.com/joint-rpc/joint/bindings/go"
)

func streamServer(t *testing.T, opts ...joint.Option) (*joint.Server, string, *atomic.Int64) {
	var sent atomic.Int64
	s, uri := newServer(t, func(s *joint.Server) {
		s.HandleStream("count", func(ctx context.Context, r *joint.Request, st *joint.ServerStream) (any, error) {
			var n int
			if err := r.Args(&n); err != nil {
				return nil, err
			}
			for i := 0; i < n; i++ {
				if err := st.Send(i); err != nil {
					return nil, err
				}
				sent.Add(1)
			}
			return n, nil
		})
		s.HandleStream("sum", func(ctx context.Context, r *joint.Request, st *joint.ServerStream) (any, error) {
			total := 0
			for {
				v, err := st.Recv()
				if err == io.EOF {
					return total, nil
				}
				if err != nil {
					return nil, err
				}
				var n int
				if err := v.Decode(&n); err != nil {
					return nil, joint.Errorf(joint.CodeInvalidParams, "not a number: %s", v)
				}
				total += n
			}
		})
		// bidi: each value comes back doubled as soon as it arrives; the result is the count.
		s.HandleStream("double", func(ctx context.Context, r *joint.Request, st *joint.ServerStream) (any, error) {
			n := 0
			for {
				v, err := st.Recv()
				if err == io.EOF {
					return n, nil
				}
				var re *joint.RemoteError
				if errors.As(err, &re) {
					return nil, joint.Errorf(77, "caught: %s", re.Message)
				}
				if err != nil {
					return nil, err
				}
				var x int
				v.Decode(&x)
				if err := st.Send(2 * x); err != nil {
					return nil, err
				}
				n++
			}
		})
	}, opts...)
	return s, uri, &sent
}

func TestServerStream1000(t *testing.T) {
	_, uri, _ := streamServer(t)
	c := dial(t, uri)
	s, err := c.CallStream(testCtx(t), "count", 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	for it, ok := s.Next(); ok; it, ok = s.Next() {
		var v int
		if err := it.Decode(&v); err != nil || v != n {
			t.Fatalf("item %d: %v %v", n, v, err)
		}
		n++
	}
	if err := s.Err(); err != nil || n != 1000 {
		t.Fatalf("%d items, %v", n, err)
	}
	res, err := s.Result()
	var total int
	if err != nil || res.Decode(&total) != nil || total != 1000 {
		t.Fatalf("result %v %v", res, err)
	}
}

func TestStreamFlowControl(t *testing.T) {
	// A consumer that does not read holds the producer at the window.
	const window = 8
	_, uri, sent := streamServer(t)
	c := dial(t, uri, joint.WithWindow(window))
	s, err := c.CallStream(testCtx(t), "count", 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	time.Sleep(300 * time.Millisecond)
	if n := sent.Load(); n > window {
		t.Fatalf("the producer sent %d items ahead of a consumer that took none (window %d)", n, window)
	}
	// Slowly take a few: the producer stays within a window of the consumer.
	for i := 0; i < 20; i++ {
		if _, ok := s.Next(); !ok {
			t.Fatal(s.Err())
		}
		time.Sleep(2 * time.Millisecond)
		if ahead := sent.Load() - int64(i+1); ahead > window {
			t.Fatalf("after %d taken the producer is %d ahead", i+1, ahead)
		}
	}
	n := 20
	for _, ok := s.Next(); ok; _, ok = s.Next() {
		n++
	}
	if _, err := s.Result(); err != nil || n != 1000 {
		t.Fatalf("%d items, %v", n, err)
	}
}

func TestClientStreamSum(t *testing.T) {
	_, uri, _ := streamServer(t)
	c := dial(t, uri, joint.WithWindow(4)) // small window: Send must wait for credit
	s, err := c.CallBidi(testCtx(t), "sum")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 1; i <= 1000; i++ {
		if err := s.Send(i); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	res, err := s.Result()
	var total int
	if err != nil || res.Decode(&total) != nil || total != 500500 {
		t.Fatalf("sum %v %v", res, err)
	}

	// A bad value: the handler's error ends the call; Send then reports it.
	s2, err := c.CallBidi(testCtx(t), "sum")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s2.Send("x")
	<-s2.Done()
	var re *joint.RemoteError
	if err := s2.Send(1); !errors.As(err, &re) || re.Code != joint.CodeInvalidParams {
		t.Fatalf("send after the call failed: %v", err)
	}
	if _, err := s2.Result(); !errors.As(err, &re) {
		t.Fatalf("result: %v", err)
	}
}

func TestBidi(t *testing.T) {
	_, uri, _ := streamServer(t)
	c := dial(t, uri, joint.WithWindow(16))
	s, err := c.CallBidi(testCtx(t), "double")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 2000
	sendErr := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := s.Send(i); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- s.CloseSend()
	}()
	i := 0
	for it, ok := s.Next(); ok; it, ok = s.Next() {
		var v int
		if err := it.Decode(&v); err != nil || v != 2*i {
			t.Fatalf("item %d = %d, %v", i, v, err)
		}
		i++
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	res, err := s.Result()
	var count int
	if err != nil || res.Decode(&count) != nil || count != n || i != n {
		t.Fatalf("result %v %v, %d items", res, err, i)
	}

	// A lock-step exchange, one value at a time.
	s2, err := c.CallBidi(testCtx(t), "double")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for i := 0; i < 10; i++ {
		s2.Send(i)
		it, ok := s2.Next()
		var v int
		if !ok || it.Decode(&v) != nil || v != 2*i {
			t.Fatalf("lock-step %d: %v %v", i, it, s2.Err())
		}
	}
	// An error thrown in reaches the handler.
	if err := s2.Throw(joint.NewError(5, "stop")); err != nil {
		t.Fatal(err)
	}
	_, err = s2.Result()
	var re *joint.RemoteError
	if !errors.As(err, &re) || re.Code != 77 || re.Message != "caught: stop" {
		t.Fatalf("after throw: %v", err)
	}
}

func TestStreamCancel(t *testing.T) {
	handlerErr := make(chan error, 1)
	_, uri := newServer(t, func(s *joint.Server) {
		s.HandleStream("forever", func(ctx context.Context, r *joint.Request, st *joint.ServerStream) (any, error) {
			for i := 0; ; i++ {
				if err := st.Send(i); err != nil {
					handlerErr <- err
					return nil, err
				}
			}
		})
	})
	c := dial(t, uri, joint.WithWindow(4))

	// Close mid-stream.
	s, err := c.CallStream(testCtx(t), "forever")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, ok := s.Next(); !ok {
			t.Fatal(s.Err())
		}
	}
	s.Close()
	if _, err := s.Result(); !errors.Is(err, joint.ErrCancelled) {
		t.Fatalf("after Close: %v", err)
	}
	select {
	case err := <-handlerErr:
		if !errors.Is(err, joint.ErrCancelled) {
			t.Fatalf("handler: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not stop")
	}

	// Context cancellation.
	ctx, cancel := context.WithCancel(context.Background())
	s, err = c.CallStream(ctx, "forever")
	if err != nil {
		t.Fatal(err)
	}
	s.Next()
	cancel()
	for _, ok := s.Next(); ok; _, ok = s.Next() {
	}
	if err := s.Err(); !errors.Is(err, joint.ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v", err)
	}
	<-handlerErr

	// Deadline.
	dctx, dcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer dcancel()
	s, err = c.CallStream(dctx, "forever")
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := s.Next(); ok; _, ok = s.Next() {
	}
	if err := s.Err(); !errors.Is(err, joint.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after deadline: %v", err)
	}
	select {
	case err := <-handlerErr:
		if !errors.Is(err, joint.ErrTimeout) && !errors.Is(err, joint.ErrCancelled) {
			t.Fatalf("handler after deadline: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not stop at the deadline")
	}
}

func TestStreamHandlerLeftoverGoroutine(t *testing.T) {
	// A goroutine still in Recv when the handler returns gets ErrHandlerReturned, and the
	// call is answered anyway.
	leftover := make(chan error, 1)
	_, uri := newServer(t, func(s *joint.Server) {
		s.HandleStream("leave", func(ctx context.Context, r *joint.Request, st *joint.ServerStream) (any, error) {
			go func() { _, err := st.Recv(); leftover <- err }()
			time.Sleep(50 * time.Millisecond)
			return "answered", nil
		})
	})
	c := dial(t, uri)
	s, err := c.CallBidi(testCtx(t), "leave")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Result()
	if err != nil || res.String() != `"answered"` {
		t.Fatalf("%v %v", res, err)
	}
	if err := <-leftover; !errors.Is(err, joint.ErrHandlerReturned) {
		t.Fatalf("leftover Recv: %v", err)
	}
}

func TestStreamToCLIDownload(t *testing.T) {
	// Big items through the CLI's download (fragmented by the extension).
	c := dial(t, startCLI(t, "tcp://127.0.0.1:0")[0])
	s, err := c.CallStream(testCtx(t), "download", 1<<20, 100000)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	off := 0
	for it, ok := s.Next(); ok; it, ok = s.Next() {
		var chunk []byte
		if err := it.Decode(&chunk); err != nil {
			t.Fatal(err)
		}
		for j, b := range chunk {
			if int(b) != (off+j)%251 {
				t.Fatalf("byte %d = %d", off+j, b)
			}
		}
		off += len(chunk)
	}
	if _, err := s.Result(); err != nil || off != 1<<20 {
		t.Fatalf("%d bytes, %v", off, err)
	}
}
