package joint_test

import (
	"context"
	"errors"
	"fmt"
	"io"

	joint "github.com/joint-rpc/joint/bindings/go"
)

func Example() {
	srv, _ := joint.NewServer()
	defer srv.Close()
	srv.Handle("add", func(ctx context.Context, r *joint.Request) (any, error) {
		var a, b int
		if err := r.Args(&a, &b); err != nil {
			return nil, err
		}
		return a + b, nil
	})
	uri, _ := srv.Listen("tcp://127.0.0.1:0")

	c, _ := joint.Dial(uri)
	defer c.Close()
	sum, err := joint.CallAs[int](context.Background(), c, "add", 2, 3)
	fmt.Println(sum, err)

	_, err = c.Call(context.Background(), "add", "two", 3)
	var re *joint.RemoteError
	fmt.Println(errors.As(err, &re), re.Code, re.Message)
	// Output:
	// 5 <nil>
	// true 1 add: param 1: msgpack: invalid code=a3 decoding int64
}

func ExampleServer_HandleStream() {
	srv, _ := joint.NewServer()
	defer srv.Close()
	// count(n) streams 0..n-1 and returns n.
	srv.HandleStream("count", func(ctx context.Context, r *joint.Request, s *joint.ServerStream) (any, error) {
		var n int
		if err := r.Args(&n); err != nil {
			return nil, err
		}
		for i := 0; i < n; i++ {
			if err := s.Send(i); err != nil { // waits for the caller's credit
				return nil, err
			}
		}
		return n, nil
	})
	// sum() adds the numbers sent in.
	srv.HandleStream("sum", func(ctx context.Context, r *joint.Request, s *joint.ServerStream) (any, error) {
		total := 0
		for {
			v, err := s.Recv()
			if err == io.EOF {
				return total, nil
			} else if err != nil {
				return nil, err
			}
			var x int
			if err := v.Decode(&x); err != nil {
				return nil, joint.NewError(joint.CodeInvalidParams, "numbers only")
			}
			total += x
		}
	})
	uri, _ := srv.Listen("tcp://127.0.0.1:0")
	c, _ := joint.Dial(uri)
	defer c.Close()
	ctx := context.Background()

	st, _ := c.CallStream(ctx, "count", 3)
	for item, ok := st.Next(); ok; item, ok = st.Next() {
		fmt.Println("item", item)
	}
	fmt.Println(st.Result())

	in, _ := c.CallBidi(ctx, "sum")
	for i := 1; i <= 4; i++ {
		in.Send(i)
	}
	in.CloseSend()
	fmt.Println(in.Result())
	// Output:
	// item 0
	// item 1
	// item 2
	// 3 <nil>
	// 10 <nil>
}
