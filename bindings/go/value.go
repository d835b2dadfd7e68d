package joint

// #include "bridge.h"
import "C"

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Raw is one encoded MessagePack value: a call's result, a streamed item, params. Passed as
// an argument or returned from a handler, it is sent as is, without re-encoding.
type Raw []byte

// Decode decodes the value into v (a pointer), with github.com/vmihailenco/msgpack/v5.
func (r Raw) Decode(v any) error {
	if len(r) == 0 {
		return fmt.Errorf("joint: decode: empty value")
	}
	return msgpack.Unmarshal(r, v)
}

// Any decodes the value into plain Go values: nil, bool, int64, uint64 (above the int64
// range), float64, string (str), []byte (bin), []any, map[string]any (map[any]any when a
// key is not a str), and Raw for an ext value (such as Neovim's handles).
func (r Raw) Any() (any, error) {
	if len(r) == 0 {
		return nil, fmt.Errorf("joint: decode: empty value")
	}
	return decodeAny(msgpack.NewDecoder(bytes.NewReader(r)), 0)
}

func decodeAny(d *msgpack.Decoder, depth int) (any, error) {
	if depth > 1000 {
		return nil, fmt.Errorf("joint: decode: nested too deeply")
	}
	c, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case c == msgpcode.Nil:
		return nil, d.DecodeNil()
	case c == msgpcode.False || c == msgpcode.True:
		return d.DecodeBool()
	case msgpcode.IsFixedNum(c) || c == msgpcode.Int8 || c == msgpcode.Int16 || c == msgpcode.Int32 || c == msgpcode.Int64:
		return d.DecodeInt64()
	case c == msgpcode.Uint8 || c == msgpcode.Uint16 || c == msgpcode.Uint32 || c == msgpcode.Uint64:
		u, err := d.DecodeUint64()
		if err == nil && u <= math.MaxInt64 {
			return int64(u), nil
		}
		return u, err
	case c == msgpcode.Float || c == msgpcode.Double:
		return d.DecodeFloat64()
	case msgpcode.IsString(c):
		return d.DecodeString()
	case msgpcode.IsBin(c):
		return d.DecodeBytes()
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := d.DecodeArrayLen()
		if err != nil {
			return nil, err
		}
		a := make([]any, n)
		for i := range a {
			if a[i], err = decodeAny(d, depth+1); err != nil {
				return nil, err
			}
		}
		return a, nil
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := d.DecodeMapLen()
		if err != nil {
			return nil, err
		}
		keys, vals := make([]any, n), make([]any, n)
		strKeys := true
		for i := 0; i < n; i++ {
			if keys[i], err = decodeAny(d, depth+1); err != nil {
				return nil, err
			}
			if vals[i], err = decodeAny(d, depth+1); err != nil {
				return nil, err
			}
			switch k := keys[i].(type) {
			case string:
			case []byte:
				keys[i], strKeys = string(k), false
			case []any, map[string]any, map[any]any, Raw:
				return nil, fmt.Errorf("joint: decode: a map key is a container")
			default:
				strKeys = false
			}
		}
		if strKeys {
			m := make(map[string]any, n)
			for i, k := range keys {
				m[k.(string)] = vals[i]
			}
			return m, nil
		}
		m := make(map[any]any, n)
		for i, k := range keys {
			m[k] = vals[i]
		}
		return m, nil
	default: // ext, or malformed
		raw, err := d.DecodeRaw()
		return Raw(raw), err
	}
}

// String renders the value as JSON-like text for messages and debugging.
func (r Raw) String() string {
	v, err := r.Any()
	if err != nil {
		return fmt.Sprintf("<invalid msgpack %x>", []byte(r))
	}
	if b, err := json.Marshal(jsonable(v)); err == nil {
		return string(b)
	}
	return fmt.Sprint(v)
}

func jsonable(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = jsonable(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = jsonable(e)
		}
		return s
	}
	return v
}

// EncodeMsgpack writes the value as is (msgpack.CustomEncoder); an empty Raw is nil.
func (r Raw) EncodeMsgpack(enc *msgpack.Encoder) error {
	return enc.Encode(msgpack.RawMessage(r))
}

// DecodeMsgpack keeps the next value as is (msgpack.CustomDecoder).
func (r *Raw) DecodeMsgpack(dec *msgpack.Decoder) error {
	m, err := dec.DecodeRaw()
	if err != nil {
		return err
	}
	*r = Raw(m)
	return nil
}

// Kwargs are keyword params. Passed as the last argument of a call they travel as the
// extended call's kwargs to a joint peer, and to a stock peer as the last positional param
// (or as the params map when there are no positional params).
type Kwargs map[string]any

// Marshal encodes v as MessagePack (as this package encodes params and results).
func Marshal(v any) (Raw, error) {
	if r, ok := v.(Raw); ok {
		return r, nil
	}
	b, err := msgpack.Marshal(v)
	return Raw(b), err
}

func mustMarshal(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// encodeArgs encodes positional args as one array, and trailing Kwargs as a map.
func encodeArgs(args []any) (params, kwargs []byte, err error) {
	if n := len(args); n > 0 {
		if kw, ok := args[n-1].(Kwargs); ok {
			args = args[:n-1]
			if kwargs, err = msgpack.Marshal(map[string]any(kw)); err != nil {
				return nil, nil, fmt.Errorf("joint: encode kwargs: %w", err)
			}
		}
	}
	if args == nil {
		args = []any{}
	}
	if params, err = msgpack.Marshal(args); err != nil {
		return nil, nil, fmt.Errorf("joint: encode params: %w", err)
	}
	return params, kwargs, nil
}

// cPtr points C at the bytes of b for the duration of one call (b holds no Go pointers).
func cPtr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

func cChars(b []byte) *C.char {
	if len(b) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(&b[0]))
}

// cString is s NUL-terminated in Go memory, for one C call.
func cString(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

// goBytes copies borrowed C bytes.
func goBytes(p *C.uint8_t, n C.size_t) []byte {
	if p == nil || n == 0 {
		return nil
	}
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))...)
}
