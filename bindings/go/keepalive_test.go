package joint_test

import (
	"bufio"
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	joint "github.com/joint-rpc/joint/bindings/go"
)

// A joint server stopped with SIGSTOP is found by the keepalive: the pending call fails
// with StatusClosed within about interval + timeout instead of hanging.
func TestKeepaliveFindsAStoppedServer(t *testing.T) {
	cmd := exec.Command(cliPath(t), "serve", "--listen", "tcp://127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	uri := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				uri <- strings.TrimSpace(u)
			}
		}
	}()
	var addr string
	select {
	case addr = <-uri:
	case <-time.After(10 * time.Second):
		t.Fatal("joint serve did not report its listener")
	}
	c := dial(t, addr, joint.WithKeepalive(100*time.Millisecond, 300*time.Millisecond))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n, err := joint.CallAs[int](ctx, c, "echo", 1); err != nil || n != 1 {
		t.Fatalf("echo: %v %v", n, err)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Call(ctx, "sleep", 60000)
	waited := time.Since(start)
	var je *joint.Error
	if !errors.As(err, &je) || je.Status != joint.StatusClosed || !strings.Contains(err.Error(), "keepalive") {
		t.Fatalf("want StatusClosed naming the keepalive, got %v", err)
	}
	if waited < 300*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("failed after %v; want about interval + timeout", waited)
	}
}

func TestKeepaliveOff(t *testing.T) {
	uris := startCLI(t, "tcp://127.0.0.1:0")
	c := dial(t, uris[0], joint.WithKeepalive(0, 0))
	defer c.Close()
	if n, err := joint.CallAs[int](context.Background(), c, "echo", 2); err != nil || n != 2 {
		t.Fatalf("echo: %v %v", n, err)
	}
}
