package joint

// #include "bridge.h"
import "C"

import (
	"context"
	"log/slog"
	"runtime/cgo"
)

// The library's callbacks, reached through the trampolines in bridge.c. They all run on a
// loop's driver goroutine, inside joint_ctx_process or joint_ctx_free, and never block.

//export goFreeHandle
func goFreeHandle(h C.uintptr_t) {
	if h != 0 {
		cgo.Handle(h).Delete()
	}
}

//export goLogCb
func goLogCb(level C.int32_t, message *C.char, h C.uintptr_t) {
	l, ok := cgo.Handle(h).Value().(*slog.Logger)
	if !ok {
		return
	}
	lv := slog.LevelDebug
	switch level {
	case C.JOINT_LOG_ERROR:
		lv = slog.LevelError
	case C.JOINT_LOG_WARN:
		lv = slog.LevelWarn
	case C.JOINT_LOG_INFO:
		lv = slog.LevelInfo
	}
	l.Log(context.Background(), lv, C.GoString(message), "source", "joint")
}

//export goNotificationCb
func goNotificationCb(conn *C.joint_conn, method *C.uint8_t, methodLen C.size_t, params *C.uint8_t, paramsLen C.size_t, h C.uintptr_t) {
	n, ok := cgo.Handle(h).Value().(*notifier)
	if !ok {
		return
	}
	n.push(string(goBytes(method, methodLen)), Raw(goBytes(params, paramsLen)))
}

//export goConnCb
func goConnCb(conn *C.joint_conn, event C.int32_t, status C.joint_status, reason *C.char, h C.uintptr_t) {
	if c, ok := cgo.Handle(h).Value().(*Client); ok {
		c.connEvent(conn, event, status, C.GoString(reason))
	}
}

//export goResponseCb
func goResponseCb(conn *C.joint_conn, resp *C.joint_response, h C.uintptr_t) {
	handle := cgo.Handle(h)
	pc := handle.Value().(*pendingCall)
	handle.Delete()
	pc.complete(resp)
}

//export goCallEventCb
func goCallEventCb(conn *C.joint_conn, callID C.uint64_t, event C.int32_t, data *C.uint8_t, n C.size_t, h C.uintptr_t) {
	pc := cgo.Handle(h).Value().(*pendingCall)
	if pc.stream != nil {
		pc.stream.event(event, data, n)
	}
}

//export goRequestCb
func goRequestCb(req *C.joint_request, h C.uintptr_t) {
	e, ok := cgo.Handle(h).Value().(*handlerEntry)
	if !ok {
		C.joint_request_free(req)
		return
	}
	e.l.dispatch(req, e)
}

//export goRequestEventCb
func goRequestEventCb(req *C.joint_request, event C.int32_t, data *C.uint8_t, n C.size_t, h C.uintptr_t) {
	if rs, ok := cgo.Handle(h).Value().(*reqState); ok {
		rs.event(event)
	}
}
