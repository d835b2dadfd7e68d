package joint_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	joint "github.com/joint-rpc/joint/bindings/go"
)

// requireAll (JOINT_GO_REQUIRE_ALL=1, set by run-tests.sh) turns skips for a missing CLI or
// Neovim into failures.
func requireAll() bool { return os.Getenv("JOINT_GO_REQUIRE_ALL") == "1" }

func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if requireAll() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// cliPath is the joint CLI: $JOINT_CLI, else the repository's target/release/joint.
func cliPath(t testing.TB) string {
	t.Helper()
	p := os.Getenv("JOINT_CLI")
	if p == "" {
		p = filepath.Join("..", "..", "target", "release", "joint")
	}
	if _, err := os.Stat(p); err != nil {
		skipOrFail(t, "joint CLI not found at %s (cargo build --release -p joint-cli, or set JOINT_CLI)", p)
	}
	return p
}

// startCLI runs `joint serve` on the given listen URIs and returns the bound URIs; the
// server is killed when the test ends.
func startCLI(t *testing.T, listen ...string) []string {
	t.Helper()
	uris, _ := startCLIKill(t, listen...)
	return uris
}

// startCLIKill is startCLI that also returns a function that kills the server now.
func startCLIKill(t testing.TB, listen ...string) ([]string, func()) {
	t.Helper()
	args := []string{"serve"}
	for _, l := range listen {
		args = append(args, "--listen", l)
	}
	cmd := exec.Command(cliPath(t), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill := func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(kill)
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var uris []string
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				uris = append(uris, strings.TrimSpace(u))
				if len(uris) == len(listen) {
					found <- uris
				}
			}
		}
	}()
	select {
	case uris := <-found:
		return uris, kill
	case <-time.After(10 * time.Second):
		t.Fatal("joint serve did not report its listeners")
		return nil, nil
	}
}

func dial(t *testing.T, uri string, opts ...joint.Option) *joint.Client {
	t.Helper()
	c, err := joint.Dial(uri, opts...)
	if err != nil {
		t.Fatalf("dial %s: %v", uri, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newServer starts a Go server on a free TCP port; it is closed when the test ends.
func newServer(t *testing.T, setup func(s *joint.Server), opts ...joint.Option) (*joint.Server, string) {
	t.Helper()
	s, err := joint.NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if setup != nil {
		setup(s)
	}
	uri, err := s.Listen("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return s, uri
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func startCLIB(b *testing.B) string {
	uris, _ := startCLIKill(b, "tcp://127.0.0.1:0")
	return uris[0]
}
