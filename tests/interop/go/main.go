// Command gopeer: github.com/neovim/go-client's msgpack/rpc (a general MessagePack-RPC
// endpoint) as a server and as a client, for joint's interop matrix.
//
//	gopeer server tcp HOST PORT | server unix PATH   serve; prints READY when listening
//	gopeer server|client tls|mtls HOST PORT DIR      the same over TLS (Go's crypto/tls): DIR
//	    holds ca.pem, server.pem/server-key.pem and client.pem/client-key.pem; with mtls the
//	    server requires a client certificate signed by ca.pem and the client presents one
//	gopeer client tcp HOST PORT | client unix PATH   run the checks against joint serve,
//	                                                 one JSON line per check on stdout
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/neovim/go-client/msgpack"
	"github.com/neovim/go-client/msgpack/rpc"
)

// Ext is an ext value: sent through msgpack.Marshaler, received through the endpoint's
// extension map.
type Ext struct {
	Kind int
	Data []byte
}

func (x Ext) MarshalMsgPack(e *msgpack.Encoder) error { return e.PackExtension(x.Kind, x.Data) }

var extKinds = []int{1, 2, 4, 5, 6, 8, 16, 127, -5, -1}

func extensions() msgpack.ExtensionMap {
	m := msgpack.ExtensionMap{}
	for _, k := range extKinds {
		k := k
		// The decoder reports type codes as unsigned bytes (-5 arrives as 251).
		m[k&0xff] = func(b []byte) (interface{}, error) { return Ext{k, append([]byte(nil), b...)}, nil }
	}
	return m
}

// tlsConfig is the crypto/tls configuration of the tls and mtls transports.
func tlsConfig(args []string, side string) (*tls.Config, error) {
	dir, mutual := args[3], args[0] == "mtls"
	pem, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in ca.pem")
	}
	cfg := &tls.Config{RootCAs: roots, ClientCAs: roots}
	if side == "server" || mutual {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, side+".pem"), filepath.Join(dir, side+"-key.pem"))
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if mutual {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func listen(args []string) (net.Listener, error) {
	switch args[0] {
	case "tcp":
		return net.Listen("tcp", net.JoinHostPort(args[1], args[2]))
	case "tls", "mtls":
		cfg, err := tlsConfig(args, "server")
		if err != nil {
			return nil, err
		}
		return tls.Listen("tcp", net.JoinHostPort(args[1], args[2]), cfg)
	}
	return net.Listen("unix", args[1])
}

func dial(args []string) (net.Conn, error) {
	switch args[0] {
	case "tcp":
		return net.Dial("tcp", net.JoinHostPort(args[1], args[2]))
	case "tls", "mtls":
		cfg, err := tlsConfig(args, "client")
		if err != nil {
			return nil, err
		}
		conn, err := tls.Dial("tcp", net.JoinHostPort(args[1], args[2]), cfg)
		if err == nil {
			err = conn.Handshake()
		}
		return conn, err
	}
	return net.Dial("unix", args[1])
}

func logf(format string, args ...interface{}) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// ---- server -----------------------------------------------------------------------------

var (
	noteMu   sync.Mutex
	noteCond = sync.NewCond(&noteMu)
	lastNote []interface{}
)

func serveConn(conn net.Conn) {
	// Without a log function the endpoint dereferences a nil func on an unknown method.
	e, err := rpc.NewEndpoint(conn, conn, conn, rpc.WithLogf(logf))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(e.Register("echo", func(x interface{}) (interface{}, error) { return x, nil }))
	must(e.Register("fail", func() (interface{}, error) {
		return nil, rpc.Error{Value: []interface{}{42, "boom \u2717"}}
	}))
	must(e.Register("note", func(params ...interface{}) {
		noteMu.Lock()
		lastNote = params
		noteCond.Broadcast()
		noteMu.Unlock()
	}))
	// Requests run on their own goroutines and notifications on another, so a request that
	// follows a notification can overtake it: wait (bounded) until the note is in.
	must(e.Register("last_note", func() (interface{}, error) {
		deadline := time.Now().Add(10 * time.Second)
		noteMu.Lock()
		defer noteMu.Unlock()
		for lastNote == nil && time.Now().Before(deadline) {
			noteMu.Unlock()
			time.Sleep(time.Millisecond)
			noteMu.Lock()
		}
		return lastNote, nil
	}))
	// Call back into the client (joint_batch serves echo) while the client's call is pending.
	must(e.Register("call_back", func(x interface{}) (interface{}, error) {
		var r interface{}
		err := e.Call("echo", &r, x)
		return r, err
	}))
	must(e.Register("call_back_fail", func() (interface{}, error) {
		var r interface{}
		err := e.Call("nope_cb", &r)
		return r, err // the client's error object, passed on as this call's error
	}))
	must(e.Register("sleep", func(ms int64, tag interface{}) (interface{}, error) {
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return tag, nil
	}))
	if err := e.Serve(); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
	}
}

func server(args []string) {
	ln, err := listen(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; ln.Close(); os.Exit(0) }()
	fmt.Println("READY")
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go serveConn(conn)
	}
}

// ---- client checks ----------------------------------------------------------------------

const nonASCII = "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \U0001F389"
const bigLen = 16 * 1024 * 1024

type item struct {
	name  string
	value interface{}
}

func items() []item {
	it := []item{{"nil", nil}, {"true", true}, {"false", false}}
	for _, v := range []int64{0, -1, -32, -33, 127, 128, 255, 256, -128, -129, 65535, 65536, -32768, -32769,
		math.MaxInt32, math.MaxInt32 + 1, math.MaxUint32, math.MaxUint32 + 1, math.MinInt32, math.MinInt32 - 1,
		1 << 53, math.MinInt64, math.MaxInt64} {
		it = append(it, item{fmt.Sprintf("int:%d", v), v})
	}
	it = append(it, item{"int:9223372036854775808", uint64(1) << 63}, item{"int:18446744073709551615", uint64(math.MaxUint64)})
	it = append(it, item{"float64:1.5", 1.5}, item{"float64:-0.1", -0.1}, item{"float64:1e308", 1e308},
		item{"float64:5e-324", 5e-324})
	it = append(it, item{"str:empty", ""}, item{"str:ascii", "ascii"}, item{"str:non-ascii", nonASCII},
		item{"str:str8", strings.Repeat("x", 40)}, item{"str:str16", strings.Repeat(nonASCII, 20)},
		item{"str:str32", strings.Repeat("y", 70000)})
	bin16 := make([]byte, 300)
	for i := 0; i < 256; i++ {
		bin16[i] = byte(i)
	}
	bin32 := make([]byte, 70000)
	for i := range bin32 {
		bin32[i] = byte(i)
	}
	it = append(it, item{"bin:empty", []byte{}}, item{"bin:bytes", []byte{0, 1, 0x7f, 0x80, 0xfe, 0xff}},
		item{"bin:bin16", bin16}, item{"bin:bin32", bin32})
	array16 := make([]interface{}, 20)
	map16 := map[string]interface{}{}
	for i := 0; i < 20; i++ {
		array16[i] = int64(i)
		map16[fmt.Sprintf("k%02d", i)] = int64(i)
	}
	array32 := make([]interface{}, 70000)
	map32 := map[string]interface{}{}
	for i := range array32 {
		array32[i] = int64(i)
		map32[fmt.Sprintf("k%05d", i)] = int64(i)
	}
	it = append(it, item{"array:empty", []interface{}{}},
		item{"array:nested", []interface{}{1, []interface{}{2, []interface{}{3, []interface{}{4, []interface{}{}}}}, "deep"}},
		item{"array:array16", array16}, item{"array:array32", array32})
	it = append(it, item{"map:empty", map[string]interface{}{}},
		item{"map:nested", map[string]interface{}{"a": 1, "nested": map[string]interface{}{"k": []interface{}{true, nil, "v"}}, "\u00fcml": "\u00e4"}},
		item{"map:map16", map16}, item{"map:map32", map32})
	seq := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}
	it = append(it, item{"ext:fixext1", Ext{1, []byte{1}}}, item{"ext:fixext2", Ext{2, []byte{1, 2}}},
		item{"ext:fixext4", Ext{4, []byte{1, 2, 3, 4}}}, item{"ext:fixext8", Ext{8, seq(8)}},
		item{"ext:fixext16", Ext{16, seq(16)}}, item{"ext:ext8", Ext{5, []byte("abc")}},
		item{"ext:ext16", Ext{127, make([]byte, 300)}}, item{"ext:ext32", Ext{6, seq(70000)}},
		item{"ext:negative-type", Ext{-5, []byte("neg")}},
		item{"ext:timestamp32", Ext{-1, []byte{0x5f, 0xee, 0x66, 0x00}}})
	return it
}

var skip = map[string]string{
	"map:int-keys": "go-client's msgpack decodes maps into map[string]interface{}: non-string keys are refused",
}

func asInt(v interface{}) (*big.Int, bool) {
	switch x := v.(type) {
	case int:
		return big.NewInt(int64(x)), true
	case int64:
		return big.NewInt(x), true
	case uint64:
		return new(big.Int).SetUint64(x), true
	}
	return nil, false
}

func kind(v interface{}) string {
	switch v.(type) {
	case nil:
		return "nil"
	case bool:
		return "bool"
	case int, int64, uint64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bin"
	case []interface{}:
		return "array"
	case map[string]interface{}:
		return "map"
	case Ext:
		return "ext"
	}
	return fmt.Sprintf("%T", v)
}

func short(v interface{}) string {
	s := fmt.Sprintf("%v", v)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// diff: "" if equal with types (int != float != bool, str != bin), else why not.
func diff(e, a interface{}, path string) string {
	ke, ka := kind(e), kind(a)
	if ke != ka {
		return fmt.Sprintf("%s: expected %s %s, got %s %s", path, ke, short(e), ka, short(a))
	}
	switch ke {
	case "int":
		x, _ := asInt(e)
		y, _ := asInt(a)
		if x.Cmp(y) != 0 {
			return fmt.Sprintf("%s: expected %v, got %v", path, x, y)
		}
	case "bin":
		if !bytes.Equal(e.([]byte), a.([]byte)) {
			return path + ": bin differs"
		}
	case "ext":
		x, y := e.(Ext), a.(Ext)
		if x.Kind != y.Kind || !bytes.Equal(x.Data, y.Data) {
			return fmt.Sprintf("%s: expected ext %d, got ext %d", path, x.Kind, y.Kind)
		}
	case "array":
		x, y := e.([]interface{}), a.([]interface{})
		if len(x) != len(y) {
			return fmt.Sprintf("%s: expected %d elements, got %d", path, len(x), len(y))
		}
		for i := range x {
			if d := diff(x[i], y[i], fmt.Sprintf("%s[%d]", path, i)); d != "" {
				return d
			}
		}
	case "map":
		x, y := e.(map[string]interface{}), a.(map[string]interface{})
		if len(x) != len(y) {
			return fmt.Sprintf("%s: expected %d keys, got %d", path, len(x), len(y))
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			w, ok := y[k]
			if !ok {
				return fmt.Sprintf("%s: key %q missing", path, k)
			}
			if d := diff(x[k], w, fmt.Sprintf("%s[%q]", path, k)); d != "" {
				return d
			}
		}
	default:
		if !reflect.DeepEqual(e, a) {
			return fmt.Sprintf("%s: expected %s, got %s", path, short(e), short(a))
		}
	}
	return ""
}

func report(check string, ok bool, detail string, extra map[string]interface{}) {
	rec := map[string]interface{}{"check": check, "ok": ok, "detail": detail}
	for k, v := range extra {
		rec[k] = v
	}
	b, _ := json.Marshal(rec)
	fmt.Println(string(b))
}

func u64(s string) uint64 {
	var v uint64
	fmt.Sscan(s, &v)
	return v
}

func client(args []string) {
	conn, err := dial(args)
	if err != nil {
		for _, c := range []string{"types", "error", "notify", "pipeline", "big"} {
			report(c, false, "connect: "+err.Error(), nil)
		}
		return
	}
	e, err := rpc.NewEndpoint(conn, conn, conn, rpc.WithExtensions(extensions()), rpc.WithLogf(logf))
	if err != nil {
		panic(err)
	}
	// For joint serve's callback(method, params): joint calls these on this client.
	if err := e.Register("twice", func(x int64) (int64, error) { return 2 * x, nil }); err != nil {
		panic(err)
	}
	if err := e.Register("fail_cb", func() (interface{}, error) {
		return nil, rpc.Error{Value: []interface{}{7, "nested \u2717"}}
	}); err != nil {
		panic(err)
	}
	go e.Serve()
	call := func(method string, params ...interface{}) (interface{}, error) {
		var reply interface{}
		done := make(chan *rpc.Call, 1)
		e.Go(method, done, &reply, params...)
		select {
		case c := <-done:
			return reply, c.Err
		case <-time.After(60 * time.Second):
			return nil, fmt.Errorf("%s: no answer in 60 s", method)
		}
	}

	checks := []struct {
		name string
		run  func()
	}{
		{"types", func() {
			var names []string
			var vals []interface{}
			for _, it := range items() {
				if _, ok := skip[it.name]; !ok {
					names = append(names, it.name)
					vals = append(vals, it.value)
				}
			}
			got, err := call("echo", vals)
			d := ""
			if err != nil {
				d = "echo: " + err.Error()
			} else {
				d = diff(normalize(vals), got, "$")
			}
			cases := [][3]interface{}{
				{int64(math.MaxInt64), 0, int64(math.MaxInt64)},
				{int64(math.MaxInt64), 1, uint64(1) << 63},
				{u64("18446744073709551614"), 1, uint64(math.MaxUint64)},
				{int64(math.MinInt64), 0, int64(math.MinInt64)},
				{int64(math.MinInt64), uint64(math.MaxUint64), int64(math.MaxInt64)},
				{int64(math.MaxUint32), 1, int64(math.MaxUint32 + 1)},
				{-1, int64(math.MinInt32), int64(math.MinInt32 - 1)},
				{1.5, 0.25, 1.75},
				{1, 0.5, 1.5},
			}
			for _, c := range cases {
				if d != "" {
					break
				}
				r, err := call("add", c[0], c[1])
				if err != nil {
					d = fmt.Sprintf("add(%v, %v): %v", c[0], c[1], err)
				} else {
					d = diff(normalize(c[2]), r, fmt.Sprintf("add(%v, %v)", c[0], c[1]))
				}
			}
			detail := d
			if d == "" {
				detail = fmt.Sprintf("%d items echoed, %d add() cases", len(vals), len(cases))
			}
			report("types", d == "", detail, map[string]interface{}{"items": names, "skipped": skip})
		}},
		{"error", func() {
			ok := true
			var details []string
			for _, c := range []struct {
				method string
				params []interface{}
				want   interface{}
			}{
				{"nope", []interface{}{1}, []interface{}{int64(2), "no such method: nope"}},
				{"add", []interface{}{"x", 1}, []interface{}{int64(1), "add(a, b) needs two numbers"}},
			} {
				r, err := call(c.method, c.params...)
				rerr, isRemote := err.(rpc.Error)
				if !isRemote {
					ok = false
					details = append(details, fmt.Sprintf("%s: no remote error (%v, %v)", c.method, r, err))
					continue
				}
				if d := diff(c.want, rerr.Value, c.method); d != "" {
					ok = false
					details = append(details, d)
				} else {
					details = append(details, fmt.Sprintf("%s -> %v", c.method, rerr.Value))
				}
			}
			if r, err := call("echo", "still alive"); err != nil || r != "still alive" {
				ok = false
				details = append(details, fmt.Sprintf("echo after errors: %v %v", r, err))
			}
			report("error", ok, strings.Join(details, "; "), nil)
		}},
		{"notify", func() {
			if err := e.Notify("note", "notify \u2713", 42); err != nil {
				report("notify", false, err.Error(), nil)
				return
			}
			got, err := call("last_notification")
			d := ""
			if err != nil {
				d = err.Error()
			} else {
				d = diff([]interface{}{"note", []interface{}{"notify \u2713", int64(42)}}, got, "last_notification()")
			}
			if d == "" {
				d = fmt.Sprintf("last_notification() = %v", got)
				report("notify", true, d, nil)
				return
			}
			report("notify", false, d, nil)
		}},
		{"pipeline", func() {
			const n = 1000
			done := make(chan *rpc.Call, n)
			replies := make([]interface{}, n)
			index := map[*rpc.Call]int{}
			for k := 0; k < n; k++ {
				var c *rpc.Call
				if k%2 == 0 {
					c = e.Go("sleep", done, &replies[k], n-k)
				} else {
					c = e.Go("echo", done, &replies[k], k)
				}
				index[c] = k
			}
			var order []int
			bad := 0
			timeout := time.After(60 * time.Second)
			for len(order) < n {
				select {
				case c := <-done:
					k := index[c]
					order = append(order, k)
					var want interface{}
					if k%2 == 1 {
						want = int64(k)
					}
					if c.Err != nil || diff(want, replies[k], "") != "" {
						bad++
					}
				case <-timeout:
					report("pipeline", false, fmt.Sprintf("%d of %d answered in 60 s", len(order), n), nil)
					return
				}
			}
			reordered := !sort.IntsAreSorted(order)
			report("pipeline", bad == 0, fmt.Sprintf("%d calls, %d wrong", n, bad),
				map[string]interface{}{"reordered": reordered})
		}},
		{"big", func() {
			data := make([]byte, bigLen)
			for i := range data {
				data[i] = byte(i % 251)
			}
			got, err := call("echo", data)
			b, _ := got.([]byte)
			ok := err == nil && bytes.Equal(b, data)
			blob, err2 := call("blob", bigLen)
			bb, _ := blob.([]byte)
			ok2 := err2 == nil && len(bb) == bigLen
			for i := 0; ok2 && i < bigLen; i++ {
				ok2 = bb[i] == byte(i)
			}
			word := map[bool]string{true: "intact", false: "WRONG"}
			report("big", ok && ok2, fmt.Sprintf("echo(16 MiB bin) %s; blob(16 MiB) %s", word[ok], word[ok2]), nil)
		}},
	}
	checks = append(checks, struct {
		name string
		run  func()
	}{"callback", func() {
		r, err := call("callback", "twice", []interface{}{21})
		d := ""
		if err != nil {
			d = fmt.Sprintf("callback(twice, [21]): %v", err)
		} else {
			d = diff(int64(42), r, "callback(twice, [21])")
		}
		_, err = call("callback", "fail_cb", []interface{}{})
		rerr, isRemote := err.(rpc.Error)
		if d == "" && !isRemote {
			d = fmt.Sprintf("callback(fail_cb): no remote error (%v)", err)
		} else if d == "" {
			d = diff([]interface{}{int64(7), "nested \u2717"}, rerr.Value, "callback(fail_cb)")
		}
		detail := d
		if d == "" {
			detail = fmt.Sprintf("joint called twice(21) on the client -> 42; fail_cb() -> error %v passed through", rerr.Value)
		}
		report("callback", d == "", detail, nil)
	}})
	for _, c := range checks {
		func() {
			defer func() {
				if r := recover(); r != nil {
					report(c.name, false, fmt.Sprintf("panic: %v", r), nil)
				}
			}()
			c.run()
		}()
	}
	e.Close()
}

// normalize: the client's own int-typed values as they decode (int64/uint64 compare by value).
func normalize(v interface{}) interface{} {
	switch x := v.(type) {
	case int:
		return int64(x)
	case []interface{}:
		out := make([]interface{}, len(x))
		for i := range x {
			out[i] = normalize(x[i])
		}
		return out
	case map[string]interface{}:
		out := map[string]interface{}{}
		for k, w := range x {
			out[k] = normalize(w)
		}
		return out
	}
	return v
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: gopeer server|client tcp HOST PORT | unix PATH")
		os.Exit(64)
	}
	if os.Args[1] == "server" {
		server(os.Args[2:])
	} else {
		client(os.Args[2:])
	}
}
