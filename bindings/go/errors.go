package joint

// #include "bridge.h"
import "C"

import (
	"errors"
	"fmt"
	"strings"
)

// Status is a joint_status code of the C library (JOINT_E_*). It implements error, so the
// sentinels below work with errors.Is on every error this package returns.
type Status int32

// Library status codes (include/joint.h). New codes may be added; Error() describes any.
const (
	StatusOK          Status = C.JOINT_OK
	StatusInvalid     Status = C.JOINT_E_INVAL
	StatusNull        Status = C.JOINT_E_NULL
	StatusRecursive   Status = C.JOINT_E_RECURSIVE
	StatusState       Status = C.JOINT_E_STATE
	StatusLimit       Status = C.JOINT_E_LIMIT
	StatusAddress     Status = C.JOINT_E_ADDRESS
	StatusType        Status = C.JOINT_E_TYPE
	StatusEOF         Status = C.JOINT_E_EOF
	StatusUnsupported Status = C.JOINT_E_UNSUPPORTED
	StatusIO          Status = C.JOINT_E_IO
	StatusConnRefused Status = C.JOINT_E_CONNREFUSED
	StatusClosed      Status = C.JOINT_E_CLOSED
	StatusTimeout     Status = C.JOINT_E_TIMEOUT
	StatusCancelled   Status = C.JOINT_E_CANCELLED
	StatusAddrInUse   Status = C.JOINT_E_ADDRINUSE
	StatusTLS         Status = C.JOINT_E_TLS
	StatusProtocol    Status = C.JOINT_E_PROTOCOL
	StatusTooLarge    Status = C.JOINT_E_TOO_LARGE
	StatusRemote      Status = C.JOINT_E_REMOTE
	StatusPanic       Status = C.JOINT_E_PANIC
	StatusPoisoned    Status = C.JOINT_E_POISONED
)

// Sentinel errors: test with errors.Is.
var (
	// ErrTimeout: the call's timeout or the context's deadline passed (errors from a context
	// deadline also match context.DeadlineExceeded).
	ErrTimeout error = StatusTimeout
	// ErrClosed: the connection is closed or was lost, or the Client/Server was closed.
	ErrClosed error = StatusClosed
	// ErrCancelled: the call was cancelled (errors from a cancelled context also match
	// context.Canceled), or a served call was cancelled by its caller.
	ErrCancelled error = StatusCancelled
	// ErrConnRefused: the peer refused the connection.
	ErrConnRefused error = StatusConnRefused
	// ErrUnsupported: the operation needs the joint extension, which the peer lacks (a
	// stock MessagePack-RPC peer), or the call does not take input.
	ErrUnsupported error = StatusUnsupported
	// ErrTooLarge: a message is larger than the size limit.
	ErrTooLarge error = StatusTooLarge
	// ErrAddress: the address could not be parsed or resolved.
	ErrAddress error = StatusAddress
	// ErrAddrInUse: the address is already in use.
	ErrAddrInUse error = StatusAddrInUse
	// ErrLimit: a configured limit was reached (for example calls in flight).
	ErrLimit error = StatusLimit
	// ErrProtocol: the peer broke the protocol.
	ErrProtocol error = StatusProtocol
	// ErrTLS: the TLS handshake failed: the peer's certificate was not trusted (unknown
	// issuer, name mismatch, expired), a client certificate was missing or refused, or the
	// peer does not speak TLS. The *Error's Detail names the cause.
	ErrTLS error = StatusTLS
)

func (s Status) Error() string { return C.GoString(C.joint_status_str(C.joint_status(s))) }

// Fatal reports whether the status leaves a context unusable.
func (s Status) Fatal() bool { return bool(C.joint_status_is_fatal(C.joint_status(s))) }

// Error is a failure reported by the library: its Status, what was being done, and the
// library's detail. errors.Is(err, ErrTimeout) (and the other sentinels) match its Status;
// when a context ended the operation it also matches ctx.Err().
type Error struct {
	Status Status
	Op     string // "call add", "dial tcp://...", ...
	Detail string // the library's description, when it gave one
	cause  error  // context error, if a context ended the operation
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("joint: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	b.WriteString(e.Status.Error())
	if e.Detail != "" && e.Detail != e.Status.Error() {
		b.WriteString(" (")
		b.WriteString(e.Detail)
		b.WriteString(")")
	}
	if e.cause != nil {
		b.WriteString(": ")
		b.WriteString(e.cause.Error())
	}
	return b.String()
}

// Unwrap returns the Status and, if a context ended the operation, the context's error.
func (e *Error) Unwrap() []error {
	if e.cause != nil {
		return []error{e.Status, e.cause}
	}
	return []error{e.Status}
}

func statusErr(st C.joint_status, op string) error {
	if st >= 0 {
		return nil
	}
	return &Error{Status: Status(st), Op: op}
}

// RPC error codes of joint's `[code, message]` error objects (docs/PROTOCOL.md).
const (
	CodeHandlerFailed    = C.JOINT_RPC_HANDLER_FAILED
	CodeInvalidParams    = C.JOINT_RPC_INVALID_PARAMS
	CodeNoMethod         = C.JOINT_RPC_NO_METHOD
	CodeInvalidRequest   = C.JOINT_RPC_INVALID_REQUEST
	CodeTooLarge         = C.JOINT_RPC_TOO_LARGE
	CodeTooManyRequests  = C.JOINT_RPC_TOO_MANY_REQUESTS
	CodeShuttingDown     = C.JOINT_RPC_SHUTTING_DOWN
	CodeNotAnswered      = C.JOINT_RPC_NOT_ANSWERED
	CodeCancelled        = C.JOINT_RPC_CANCELLED
	CodeDeadlineExceeded = C.JOINT_RPC_DEADLINE_EXCEEDED
)

// RemoteError is an error object: the one a peer answered a call with (the call's error
// matches errors.As(err, new(*RemoteError))), or one a handler returns to answer with.
//
// Raw is the error object as sent (MessagePack). Code and Message are what the library
// finds in the usual shapes: `[code, message]` (joint's and Neovim's), a map with "code"
// and "message", or a plain string (HasCode false). A handler returning a RemoteError with
// Raw set answers with Raw as is; otherwise with `[Code, Message]`.
type RemoteError struct {
	Code    int64
	HasCode bool
	Message string
	Raw     Raw
	// Method is the method of the call that failed (empty in errors a handler builds).
	Method string
}

func (e *RemoteError) Error() string {
	var b strings.Builder
	b.WriteString("joint: ")
	if e.Method != "" {
		b.WriteString("call ")
		b.WriteString(e.Method)
		b.WriteString(": ")
	}
	b.WriteString("remote error")
	if e.HasCode {
		fmt.Fprintf(&b, " %d", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	} else if len(e.Raw) > 0 {
		b.WriteString(": ")
		b.WriteString(e.Raw.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrCancelled) / ErrTimeout true for joint's CANCELLED and
// DEADLINE_EXCEEDED error objects (a call cancelled or timed out on the far side).
func (e *RemoteError) Is(target error) bool {
	if !e.HasCode {
		return false
	}
	switch target {
	case ErrCancelled:
		return e.Code == CodeCancelled
	case ErrTimeout:
		return e.Code == CodeDeadlineExceeded
	}
	return false
}

// NewError returns an error that a handler can return to answer with joint's error object
// `[code, message]`.
func NewError(code int64, message string) *RemoteError {
	return &RemoteError{Code: code, HasCode: true, Message: message}
}

// Errorf is NewError with a formatted message.
func Errorf(code int64, format string, args ...any) *RemoteError {
	return NewError(code, fmt.Sprintf(format, args...))
}

// remoteErrorFrom decodes an error object with the library's helpers.
func remoteErrorFrom(raw []byte, method string) *RemoteError {
	e := &RemoteError{Raw: Raw(raw), Method: method}
	if len(raw) == 0 {
		return e
	}
	p := cPtr(raw)
	var code C.int64_t
	if C.joint_error_code(p, C.size_t(len(raw)), &code) == C.JOINT_OK {
		e.Code, e.HasCode = int64(code), true
	}
	n := C.joint_error_message(p, C.size_t(len(raw)), nil, 0)
	if n > 0 {
		buf := make([]byte, int(n)+1)
		C.joint_error_message(p, C.size_t(len(raw)), cChars(buf), C.size_t(len(buf)))
		e.Message = string(buf[:n])
	}
	return e
}

// errorObject encodes what a handler's error answers with.
func errorObject(err error) []byte {
	var re *RemoteError
	if errors.As(err, &re) {
		if len(re.Raw) > 0 {
			return re.Raw
		}
		return mustMarshal([]any{re.Code, re.Message})
	}
	return mustMarshal([]any{int64(CodeHandlerFailed), err.Error()})
}
