package joint_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	joint "github.com/joint-rpc/joint/bindings/go"
)

// Against the `joint serve` CLI (the Rust demo server).

func TestCLICallTCPAndUnix(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	uris := startCLI(t, "tcp://127.0.0.1:0", "unix://"+sock)
	for _, uri := range uris {
		t.Run(uri, func(t *testing.T) {
			c := dial(t, uri)
			ctx := testCtx(t)
			if v := must[int](t)(joint.CallAs[int](ctx, c, "add", 2, 3)); v != 5 {
				t.Fatalf("add = %d", v)
			}
			if v := must[float64](t)(joint.CallAs[float64](ctx, c, "add", 1.5, 2)); v != 3.5 {
				t.Fatalf("add = %v", v)
			}
			if v := must[int](t)(joint.CallAs[int](ctx, c, "add", joint.Kwargs{"a": 40, "b": 2})); v != 42 {
				t.Fatalf("add kwargs = %d", v)
			}
			in := map[string]any{"s": "héllo", "i": int64(-7), "u": uint64(1 << 63), "f": 0.25, "b": []byte{0, 1, 2},
				"a": []any{true, nil, "x"}, "m": map[string]any{"k": int64(1)}}
			raw := must[joint.Raw](t)(c.Call(ctx, "echo", in))
			out, err := raw.Any()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(out, in) {
				t.Fatalf("echo:\n got %#v\nwant %#v", out, in)
			}
			// A Raw argument is sent as is.
			pre := must[joint.Raw](t)(joint.Marshal([]int{1, 2, 3}))
			var back []int
			if err := c.CallInto(ctx, &back, "echo", pre); err != nil || !reflect.DeepEqual(back, []int{1, 2, 3}) {
				t.Fatalf("echo raw: %v %v", back, err)
			}
			if !c.Extension() {
				t.Error("the extension should be on with the CLI")
			}
		})
	}
}

func TestCLIRemoteErrors(t *testing.T) {
	c := dial(t, startCLI(t, "tcp://127.0.0.1:0")[0])
	ctx := testCtx(t)
	_, err := c.Call(ctx, "no_such_method", 1)
	var re *joint.RemoteError
	if !errors.As(err, &re) || !re.HasCode || re.Code != joint.CodeNoMethod || re.Message != "no such method: no_such_method" {
		t.Fatalf("no method: %#v", err)
	}
	if errors.Is(err, joint.ErrTimeout) || errors.Is(err, joint.ErrClosed) {
		t.Fatal("a remote error is not a transport error")
	}
	_, err = c.Call(ctx, "add", "x", 1)
	if !errors.As(err, &re) || re.Code != joint.CodeInvalidParams || re.Method != "add" {
		t.Fatalf("invalid params: %v", err)
	}
	var fields []any
	if err := re.Raw.Decode(&fields); err != nil || len(fields) != 2 {
		t.Fatalf("raw error object: %v %v", fields, err)
	}
	// The connection is still fine.
	if v := must[int](t)(joint.CallAs[int](ctx, c, "add", 1, 1)); v != 2 {
		t.Fatal(v)
	}
}

func TestCLITimeout(t *testing.T) {
	c := dial(t, startCLI(t, "tcp://127.0.0.1:0")[0])
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Call(ctx, "sleep", 5000)
	if !errors.Is(err, joint.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a timeout, got %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("timeout took %v", el)
	}
	// The default timeout of WithCallTimeout applies without a deadline.
	c2 := dial(t, startCLI(t, "tcp://127.0.0.1:0")[0], joint.WithCallTimeout(100*time.Millisecond))
	_, err = c2.Call(context.Background(), "sleep", 5000)
	if !errors.Is(err, joint.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a library timeout, got %v", err)
	}
	var je *joint.Error
	if !errors.As(err, &je) || je.Status != joint.StatusTimeout {
		t.Fatalf("want *joint.Error, got %T", err)
	}
	// An expired context fails at once.
	_, err = c.Call(ctx, "add", 1, 2)
	if !errors.Is(err, joint.ErrTimeout) {
		t.Fatalf("expired context: %v", err)
	}
	if v := must[int](t)(joint.CallAs[int](testCtx(t), c, "add", 1, 2)); v != 3 {
		t.Fatal(v)
	}
}

func TestCLICancel(t *testing.T) {
	c := dial(t, startCLI(t, "tcp://127.0.0.1:0")[0])
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	_, err := c.Call(ctx, "sleep", 5000)
	if !errors.Is(err, joint.ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("want cancelled, got %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("cancel took %v", el)
	}
	if v := must[int](t)(joint.CallAs[int](testCtx(t), c, "add", 1, 2)); v != 3 {
		t.Fatal(v)
	}
}

func TestCLINotify(t *testing.T) {
	c := dial(t, startCLI(t, "tcp://127.0.0.1:0")[0])
	ctx := testCtx(t)
	if err := c.Notify("hello", 1, "x"); err != nil {
		t.Fatal(err)
	}
	// Messages on one connection are handled in order.
	var last []any
	if err := c.CallInto(ctx, &last, "last_notification"); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(last, []any{"hello", []any{int8(1), "x"}}) {
		t.Fatalf("last_notification = %#v", last)
	}
}

func TestCLICallbackToClient(t *testing.T) {
	c := dial(t, startCLI(t, "tcp://127.0.0.1:0")[0])
	if err := c.Handle("twice", func(ctx context.Context, r *joint.Request) (any, error) {
		var n int
		if err := r.Args(&n); err != nil {
			return nil, err
		}
		return 2 * n, nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if v := must[int](t)(joint.CallAs[int](ctx, c, "callback", "twice", []any{21})); v != 42 {
		t.Fatalf("callback = %d", v)
	}
	_, err := c.Call(ctx, "callback", "missing", []any{})
	var re *joint.RemoteError
	if !errors.As(err, &re) || re.Code != joint.CodeNoMethod {
		t.Fatalf("callback to a missing method: %v", err)
	}
}

func TestCLIStreams(t *testing.T) {
	c := dial(t, startCLI(t, "tcp://127.0.0.1:0")[0])
	ctx := testCtx(t)
	s, err := c.CallStream(ctx, "count", 1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		it, ok := s.Next()
		if !ok {
			break
		}
		var v int
		if err := it.Decode(&v); err != nil || v != n {
			t.Fatalf("item %d = %v (%v)", n, v, err)
		}
		n++
	}
	res, err := s.Result()
	if err != nil || n != 1000 {
		t.Fatalf("count: %d items, %v", n, err)
	}
	var total int
	if res.Decode(&total); total != 1000 {
		t.Fatalf("count result %v", res)
	}

	b, err := c.CallBidi(ctx, "sum")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 1000; i++ {
		if err := b.Send(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.CloseSend(); err != nil {
		t.Fatal(err)
	}
	res, err = b.Result()
	if err != nil || res.Decode(&total) != nil || total != 500500 {
		t.Fatalf("sum = %v, %v", res, err)
	}
}

func TestDialErrors(t *testing.T) {
	_, err := joint.Dial("tcp://127.0.0.1:1")
	if !errors.Is(err, joint.ErrConnRefused) {
		t.Fatalf("refused: %v", err)
	}
	_, err = joint.Dial("nonsense://x")
	if !errors.Is(err, joint.ErrAddress) {
		t.Fatalf("bad address: %v", err)
	}
	_, err = joint.Dial("unix://" + filepath.Join(t.TempDir(), "missing.sock"))
	if err == nil {
		t.Fatal("dial to a missing socket succeeded")
	}
}

func TestPeerGoesAway(t *testing.T) {
	uris, kill := startCLIKill(t, "tcp://127.0.0.1:0")
	c := dial(t, uris[0])
	ctx := testCtx(t)
	pending := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, "sleep", 10000)
		pending <- err
	}()
	time.Sleep(100 * time.Millisecond)
	kill()
	select {
	case err := <-pending:
		if !errors.Is(err, joint.ErrClosed) {
			t.Fatalf("pending call: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pending call did not fail")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if !errors.Is(c.Err(), joint.ErrClosed) {
		t.Fatalf("Err = %v", c.Err())
	}
	if _, err := c.Call(ctx, "add", 1, 2); !errors.Is(err, joint.ErrClosed) {
		t.Fatalf("call after close: %v", err)
	}
}

func TestClientClose(t *testing.T) {
	c := dial(t, startCLI(t, "tcp://127.0.0.1:0")[0])
	pending := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), "sleep", 10000)
		pending <- err
	}()
	time.Sleep(100 * time.Millisecond)
	c.Close()
	if err := <-pending; !errors.Is(err, joint.ErrClosed) {
		t.Fatalf("pending call after Close: %v", err)
	}
	if _, err := c.Call(context.Background(), "add", 1, 2); !errors.Is(err, joint.ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
	if err := c.Notify("x"); !errors.Is(err, joint.ErrClosed) {
		t.Fatalf("notify after Close: %v", err)
	}
	c.Close() // twice is fine
}
