package joint

// #include "bridge.h"
import "C"

import (
	"context"
	"log/slog"
	"time"
)

// Option configures a Client (Dial, DialCommand) or a Server (NewServer).
type Option func(*config)

type config struct {
	window         uint32 // 0: the library's default (64)
	maxMessage     int
	maxDepth       uint32
	maxInflight    uint32
	connectTimeout time.Duration
	hasConnect     bool
	extension      *bool
	logger         *slog.Logger
	callTimeout    time.Duration
	memoryBudget   int
	highWater      int
	maxConns       uint32
	backlog        uint32
	// Timeouts: set (has*) to a positive duration, or to 0 or less for none.
	messageTimeout, idleTimeout, linger time.Duration
	hasMessage, hasIdle, hasLinger      bool
	tls                                 *TLSConfig // WithTLS
	keepaliveInterval, keepaliveTimeout time.Duration
	hasKeepalive                        bool
}

// WithWindow sets the flow-control window: items a peer may stream into (or out of) one call
// before it must wait for credit (default 64).
func WithWindow(items uint32) Option { return func(c *config) { c.window = items } }

// WithMaxMessageSize sets the largest message accepted or sent (default 64 MiB).
func WithMaxMessageSize(bytes int) Option { return func(c *config) { c.maxMessage = bytes } }

// WithMaxDepth sets the deepest nesting accepted in a message (default 128).
func WithMaxDepth(depth uint32) Option { return func(c *config) { c.maxDepth = depth } }

// WithMaxInflight sets the most requests left unanswered per connection and the most calls
// pending per connection (default 65536).
func WithMaxInflight(calls uint32) Option { return func(c *config) { c.maxInflight = calls } }

// WithConnectTimeout sets the connect timeout (default 10 s; 0 or less leaves it to the
// operating system).
func WithConnectTimeout(d time.Duration) Option {
	return func(c *config) { c.connectTimeout, c.hasConnect = d, true }
}

// WithExtension turns the joint extension (streaming, cancellation, deadlines, kwargs) on
// or off (default on; stock peers are unaffected either way).
func WithExtension(enabled bool) Option { return func(c *config) { c.extension = &enabled } }

// WithLogger sends the library's log lines to l (default: none, unless the JOINT_LOG
// environment variable is set). The logger runs on the connection's event-loop goroutine:
// it must not block, nor call into this package.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithCallTimeout sets a default timeout for a Client's calls whose context has no
// deadline (default none).
func WithCallTimeout(d time.Duration) Option { return func(c *config) { c.callTimeout = d } }

// WithMemoryBudget sets the bytes all connections together may make the library hold:
// input, reassembly, queued output and requests being served (default 256 MiB, at least
// 1 MiB). When it is spent, connections holding more than 64 KiB are not read until memory
// comes back, and an answer that does not fit becomes a RESOURCE_EXHAUSTED (10) error.
func WithMemoryBudget(bytes int) Option { return func(c *config) { c.memoryBudget = bytes } }

// WithOutputHighWater sets the unsent output per connection above which its requests are
// not read until it drains to half (default 1 MiB): a peer that does not read is slowed
// down, not buffered for.
func WithOutputHighWater(bytes int) Option { return func(c *config) { c.highWater = bytes } }

// WithMaxConnections sets the most open connections (default 4096); one accepted beyond it
// is closed at once.
func WithMaxConnections(n uint32) Option { return func(c *config) { c.maxConns = n } }

// WithMessageTimeout sets how long a message may take to arrive whole once it started, and
// queued output may go without progress, before the connection closes (default 30 s; 0 or
// less: no limit).
func WithMessageTimeout(d time.Duration) Option {
	return func(c *config) { c.messageTimeout, c.hasMessage = d, true }
}

// WithIdleTimeout closes connections with no traffic and nothing pending for d (default
// none; 0 or less: none).
func WithIdleTimeout(d time.Duration) Option {
	return func(c *config) { c.idleTimeout, c.hasIdle = d, true }
}

// WithKeepalive sets the keepalive between joint peers: while calls of ours wait on a
// connection whose peer has sent nothing for interval, ping it, and close the connection
// (its calls fail with StatusClosed) if nothing comes within timeout after the ping. The
// default is 30 s and 30 s; an interval <= 0 never pings. Stock peers are never pinged.
func WithKeepalive(interval, timeout time.Duration) Option {
	return func(c *config) { c.keepaliveInterval, c.keepaliveTimeout, c.hasKeepalive = interval, timeout, true }
}

// WithLinger sets how long requests of a peer that closed its end may still be answered
// before they are cancelled and the connection freed (default 5 s; 0: at once).
func WithLinger(d time.Duration) Option { return func(c *config) { c.linger, c.hasLinger = d, true } }

// WithListenBacklog sets how many connections the kernel queues per listener (default 1024).
func WithListenBacklog(n uint32) Option { return func(c *config) { c.backlog = n } }

func buildConfig(opts []Option) *config {
	c := &config{}
	for _, o := range opts {
		o(c)
	}
	return c
}

// newCConfig makes the library configuration; the caller frees it.
func (c *config) newCConfig() (*C.joint_config, error) {
	var cfg *C.joint_config
	if st := C.joint_config_new(&cfg); st != C.JOINT_OK {
		return nil, statusErr(st, "config")
	}
	check := func(st C.joint_status, what string) error {
		if st < 0 {
			return statusErr(st, "config "+what)
		}
		return nil
	}
	var err error
	set := func(e error) {
		if err == nil {
			err = e
		}
	}
	if c.window > 0 {
		set(check(C.joint_config_set_window(cfg, C.uint32_t(c.window)), "window"))
	}
	if c.maxMessage > 0 {
		set(check(C.joint_config_set_max_message_size(cfg, C.size_t(c.maxMessage)), "max message size"))
	}
	if c.maxDepth > 0 {
		set(check(C.joint_config_set_max_depth(cfg, C.uint32_t(c.maxDepth)), "max depth"))
	}
	if c.maxInflight > 0 {
		set(check(C.joint_config_set_max_inflight(cfg, C.uint32_t(c.maxInflight)), "max inflight"))
	}
	if c.hasConnect {
		ms := int32(-1)
		if c.connectTimeout > 0 {
			ms = durationMs(c.connectTimeout)
		}
		set(check(C.joint_config_set_connect_timeout_ms(cfg, C.int32_t(ms)), "connect timeout"))
	}
	if c.extension != nil {
		set(check(C.joint_config_set_extension(cfg, C.bool(*c.extension)), "extension"))
	}
	if c.memoryBudget > 0 {
		set(check(C.joint_config_set_memory_budget(cfg, C.size_t(c.memoryBudget)), "memory budget"))
	}
	if c.highWater > 0 {
		set(check(C.joint_config_set_output_high_water(cfg, C.size_t(c.highWater)), "output high water"))
	}
	if c.maxConns > 0 {
		set(check(C.joint_config_set_max_connections(cfg, C.uint32_t(c.maxConns)), "max connections"))
	}
	if c.backlog > 0 {
		set(check(C.joint_config_set_listen_backlog(cfg, C.uint32_t(c.backlog)), "listen backlog"))
	}
	limitMs := func(d time.Duration) C.int32_t {
		if d <= 0 {
			return -1
		}
		return C.int32_t(durationMs(d))
	}
	if c.hasMessage {
		set(check(C.joint_config_set_message_timeout_ms(cfg, limitMs(c.messageTimeout)), "message timeout"))
	}
	if c.hasIdle {
		set(check(C.joint_config_set_idle_timeout_ms(cfg, limitMs(c.idleTimeout)), "idle timeout"))
	}
	if c.hasKeepalive {
		interval, timeout := C.int32_t(-1), C.int32_t(-1)
		if c.keepaliveInterval > 0 {
			interval, timeout = C.int32_t(durationMs(c.keepaliveInterval)), C.int32_t(durationMs(c.keepaliveTimeout))
		}
		set(check(C.joint_config_set_keepalive_ms(cfg, interval, timeout), "keepalive"))
	}
	if c.hasLinger {
		ms := C.int32_t(0)
		if c.linger > 0 {
			ms = C.int32_t(durationMs(c.linger))
		}
		set(check(C.joint_config_set_linger_ms(cfg, ms), "linger"))
	}
	if c.logger != nil {
		level := C.JOINT_LOG_WARN
		ctx := context.Background()
		switch {
		case c.logger.Enabled(ctx, slog.LevelDebug):
			level = C.JOINT_LOG_DEBUG
		case c.logger.Enabled(ctx, slog.LevelInfo):
			level = C.JOINT_LOG_INFO
		case c.logger.Enabled(ctx, slog.LevelWarn):
			level = C.JOINT_LOG_WARN
		default:
			level = C.JOINT_LOG_ERROR
		}
		h := newHandle(c.logger)
		if st := C.jg_config_set_log_cb(cfg, C.int32_t(level), C.uintptr_t(h)); st < 0 {
			h.Delete()
			set(statusErr(st, "config logger"))
		}
	}
	if err != nil {
		C.joint_config_free(cfg)
		return nil, err
	}
	return cfg, nil
}

// durationMs rounds d up to whole milliseconds, within int32.
func durationMs(d time.Duration) int32 {
	if d <= 0 {
		return 0
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > 1<<31-1 {
		return 1<<31 - 1
	}
	return int32(ms)
}
