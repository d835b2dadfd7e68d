package joint_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	joint "github.com/joint-rpc/joint/bindings/go"
)

// Closing a Client and a Server ends every goroutine they started (drivers, notification
// dispatchers, handlers).
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		s, uri, _ := streamServer(t)
		s.OnNotify(func(string, joint.Raw) {})
		s.Handle("add", addHandler)
		c, err := joint.Dial(uri)
		if err != nil {
			t.Fatal(err)
		}
		c.OnNotify(func(string, joint.Raw) {})
		ctx := context.Background()
		for i := 0; i < 10; i++ {
			if _, err := c.Call(ctx, "add", i, i); err != nil {
				t.Fatal(err)
			}
		}
		c.Notify("n", 1)
		st, _ := c.CallStream(ctx, "count", 100)
		st.Result()
		st, _ = c.CallBidi(ctx, "sum")
		st.Send(1)
		st.CloseSend()
		st.Result()
		st, _ = c.CallStream(ctx, "count", 1000000)
		st.Next()
		c.Close()
		s.Close()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
