// hello: a joint server and a client in one program.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	joint "github.com/joint-rpc/joint/bindings/go"
)

func main() {
	srv, err := joint.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	srv.Handle("hello", func(ctx context.Context, r *joint.Request) (any, error) {
		var name string
		if err := r.Args(&name); err != nil {
			return nil, err
		}
		return "hello, " + name, nil
	})
	uri, err := srv.Listen("tcp://127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}

	c, err := joint.Dial(uri)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	greeting, err := joint.CallAs[string](ctx, c, "hello", "world")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(greeting)
}
