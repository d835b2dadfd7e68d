package joint_test

import (
	"context"
	"io"
	"testing"

	joint "github.com/joint-rpc/joint/bindings/go"
)

func benchServer(b *testing.B) *joint.Client {
	s, err := joint.NewServer()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	s.Handle("add", addHandler)
	s.HandleStream("count", func(ctx context.Context, r *joint.Request, st *joint.ServerStream) (any, error) {
		var n int
		r.Args(&n)
		for i := 0; i < n; i++ {
			if err := st.Send(i); err != nil {
				return nil, err
			}
		}
		return n, nil
	})
	s.HandleStream("sum", func(ctx context.Context, r *joint.Request, st *joint.ServerStream) (any, error) {
		n := 0
		for {
			if _, err := st.Recv(); err == io.EOF {
				return n, nil
			} else if err != nil {
				return nil, err
			}
			n++
		}
	})
	uri, err := s.Listen("tcp://127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	c, err := joint.Dial(uri)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func BenchmarkCall(b *testing.B) {
	c := benchServer(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Call(ctx, "add", i, 1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCallParallel(b *testing.B) {
	c := benchServer(b)
	ctx := context.Background()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Call(ctx, "add", 1, 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkStreamItems(b *testing.B) {
	c := benchServer(b)
	s, err := c.CallStream(context.Background(), "count", b.N)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	n := 0
	for _, ok := s.Next(); ok; _, ok = s.Next() {
		n++
	}
	if _, err := s.Result(); err != nil || n != b.N {
		b.Fatal(n, err)
	}
}

func BenchmarkSendItems(b *testing.B) {
	c := benchServer(b)
	s, err := c.CallBidi(context.Background(), "sum")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Send(i); err != nil {
			b.Fatal(err)
		}
	}
	s.CloseSend()
	if _, err := s.Result(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCallCLI: the Go client against the Rust demo server (`joint serve`).
func BenchmarkCallCLI(b *testing.B) {
	c, err := joint.Dial(startCLIB(b))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Call(ctx, "add", i, 1); err != nil {
			b.Fatal(err)
		}
	}
}
