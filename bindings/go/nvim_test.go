package joint_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	joint "github.com/joint-rpc/joint/bindings/go"
)

// Neovim is a stock MessagePack-RPC peer that calls back while our request is pending.

func nvimPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("nvim")
	if err != nil {
		if requireAll() || os.Getenv("JOINT_REQUIRE_NVIM") == "1" {
			t.Fatal("nvim not found")
		}
		t.Skip("nvim not found")
	}
	return p
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// nvimTCP starts `nvim --headless --listen 127.0.0.1:PORT` and dials it.
func nvimTCP(t *testing.T) *joint.Client {
	nvim := nvimPath(t)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd := exec.Command(nvim, "--headless", "--clean", "-n", "--listen", addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := joint.Dial("tcp://" + addr)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("nvim did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nvimEmbed runs `nvim --embed` as a child process talking over its stdin and stdout.
func nvimEmbed(t *testing.T) *joint.Client {
	nvim := nvimPath(t)
	c, err := joint.DialCommand(testCtx(t), []string{nvim, "--embed", "--headless", "--clean", "-n"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNeovim(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(*testing.T) *joint.Client
	}{{"tcp", nvimTCP}, {"embed", nvimEmbed}} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.open(t)
			ctx := testCtx(t)
			if v := must[int](t)(joint.CallAs[int](ctx, c, "nvim_eval", "1+2")); v != 3 {
				t.Fatalf("nvim_eval = %d", v)
			}
			if c.Extension() {
				t.Fatal("Neovim is a stock peer: the extension must be off")
			}

			// Errors: Neovim's [type, message].
			_, err := c.Call(ctx, "nvim_eval", "no_such_function()")
			var re *joint.RemoteError
			if !errors.As(err, &re) || !strings.Contains(re.Message, "no_such_function") {
				t.Fatalf("eval error: %v", err)
			}
			if _, err := c.Call(ctx, "nvim_no_such_api"); !errors.As(err, &re) {
				t.Fatalf("missing API: %v", err)
			}

			// A callback into us while our nvim_eval is pending, and a notification.
			var info []any
			if err := c.CallInto(ctx, &info, "nvim_get_api_info"); err != nil {
				t.Fatal(err)
			}
			ch := toString(info[0])
			if err := c.Handle("go_add", addHandler); err != nil {
				t.Fatal(err)
			}
			notes := make(chan string, 1)
			c.OnNotify(func(method string, params joint.Raw) { notes <- method + " " + params.String() })
			if v := must[int](t)(joint.CallAs[int](ctx, c, "nvim_eval", "rpcrequest("+ch+", 'go_add', 40, 2)")); v != 42 {
				t.Fatalf("rpcrequest round trip = %d", v)
			}
			must[joint.Raw](t)(c.Call(ctx, "nvim_command", "call rpcnotify("+ch+", 'event', 'hi', [1, 2])"))
			select {
			case n := <-notes:
				if n != `event ["hi",[1,2]]` {
					t.Fatalf("notification %q", n)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no notification")
			}

			// Streaming calls degrade to stock requests.
			s, err := c.CallStream(ctx, "nvim_eval", "[1, 2, 3]")
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := s.Next(); ok {
				t.Fatal("a stock peer streams nothing")
			}
			if r, err := s.Result(); err != nil || r.String() != "[1,2,3]" {
				t.Fatalf("stream to nvim: %v %v", r, err)
			}
			// Timeout of a call that does not return (Neovim waits in getchar()).
			tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			if _, err := c.Call(tctx, "nvim_eval", "getchar()"); !errors.Is(err, joint.ErrTimeout) {
				t.Fatalf("getchar: %v", err)
			}
		})
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case int8:
		return strconv.FormatInt(int64(x), 10)
	case int16:
		return strconv.FormatInt(int64(x), 10)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint8:
		return strconv.FormatUint(uint64(x), 10)
	case uint16:
		return strconv.FormatUint(uint64(x), 10)
	case uint32:
		return strconv.FormatUint(uint64(x), 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	}
	return "?"
}
