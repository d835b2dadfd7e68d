//! `joint serve`: the demo server and its methods.

use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use joint::codec::Params;
use joint::protocol::rpc_error;
use joint::reactor::{ClientAuth, Config, ConnEvent, ConnId, Context, Request, Response, TlsConfig};
use rmpv::Value;

use crate::methods::{self, invalid_params, params, reply};
use crate::signals::{self, SignalPipe};
use crate::{json, EXIT_FAILED};

pub const DEFAULT_LISTEN: &str = "tcp://127.0.0.1:6000";

/// After SIGINT/SIGTERM, how long requests already received get to be answered (a second
/// signal stops at once).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Longest `sleep(ms)` accepted: one day.
const MAX_SLEEP_MS: u64 = 86_400_000;

#[derive(Default)]
pub struct Options {
    pub listen: Vec<String>,
    pub stdio: bool,
    /// Resource limits given on the command line (the library's defaults otherwise).
    pub memory_budget_mib: Option<usize>,
    pub max_connections: Option<usize>,
    /// 0: no limit.
    pub message_timeout_ms: Option<u64>,
    /// 0: none.
    pub idle_timeout_ms: Option<u64>,
    pub linger_ms: Option<u64>,
    pub listen_backlog: Option<u32>,
    /// `--tls-cert`/`--tls-key`: the certificate chain and key `tls://` listeners present.
    pub tls_cert: Option<(String, String)>,
    /// `--tls-client-ca`: clients must present a certificate signed by a CA in this file.
    pub tls_client_ca: Option<String>,
}

impl Options {
    /// The library configuration these options ask for.
    pub fn config(&self) -> Config {
        let mut c = Config::default();
        let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        if let Some(mib) = self.memory_budget_mib {
            c.memory_budget = mib << 20;
        }
        if let Some(n) = self.max_connections {
            c.max_connections = n;
        }
        if let Some(v) = self.message_timeout_ms {
            c.message_timeout = ms(v);
        }
        if let Some(v) = self.idle_timeout_ms {
            c.idle_timeout = ms(v);
        }
        if let Some(v) = self.linger_ms {
            c.linger = Duration::from_millis(v);
        }
        if let Some(n) = self.listen_backlog {
            c.listen_backlog = n;
        }
        c
    }

    /// The TLS settings of the `tls://` listeners, if any are asked for.
    pub fn tls_config(&self) -> Result<Option<TlsConfig>, String> {
        let Some((cert, key)) = &self.tls_cert else { return Ok(None) };
        let mut tls = TlsConfig::new();
        tls.set_certificate_files(cert, key).map_err(|e| e.message)?;
        if let Some(ca) = &self.tls_client_ca {
            tls.set_ca_file(ca).map_err(|e| e.message)?;
            tls.set_client_auth(ClientAuth::Required);
        }
        Ok(Some(tls))
    }
}

/// What the server remembers between requests.
struct State {
    last_notification: RefCell<Value>,
    /// Largest `blob(n)` that fits in one reply.
    max_blob: usize,
    /// The bytes `blob` answers with (0, 1, ..., 255, 0, ...), as long as the largest blob
    /// asked for so far: every answer is a slice of it, written to the client from here.
    blob_bytes: RefCell<std::sync::Arc<Vec<u8>>>,
}

/// Serve the demo methods on `ctx`: echo, add, sleep, blob, last_notification, callback,
/// and the streaming ones (count, download, sum, upload).
pub fn install(ctx: &Context, config: &Config) {
    let state = Rc::new(State {
        last_notification: RefCell::new(Value::Nil),
        // The bin header and the response envelope take a few bytes of the message.
        max_blob: config.limits.frame.max_message_size.saturating_sub(32),
        blob_bytes: RefCell::default(),
    });
    methods::register_echo_add(ctx);
    ctx.register(b"sleep", Rc::new(sleep));
    let s = state.clone();
    ctx.register(b"blob", Rc::new(move |_ctx: &Context, req: Request| blob(&s, req)));
    let s = state.clone();
    ctx.register(
        b"last_notification",
        Rc::new(move |_ctx: &Context, req: Request| match params(&req, &[]) {
            Some(_) => {
                let last = s.last_notification.borrow().clone();
                reply(req, &last);
            }
            None => invalid_params(req, "last_notification() takes no arguments"),
        }),
    );
    ctx.register(b"callback", Rc::new(callback));
    crate::streams::install(ctx, config);
    ctx.set_notification_handler(Some(Rc::new(move |_ctx: &Context, _conn: ConnId, method: &[u8], p: Params<'_>| {
        let method = Value::from(String::from_utf8_lossy(method).into_owned());
        let params = json::decode(p.kwargs.unwrap_or(p.args)).unwrap_or(Value::Nil);
        *state.last_notification.borrow_mut() = Value::Array(vec![method, params]);
    })));
}

/// `sleep(ms)`: answer nil after `ms` milliseconds, from a timer, so other calls go on.
fn sleep(ctx: &Context, req: Request) {
    let ms = params(&req, &["ms"]).and_then(|p| match &p[0] {
        Value::Integer(i) => i.as_u64(),
        Value::F64(f) if *f >= 0.0 => Some(f.ceil() as u64),
        Value::F32(f) if *f >= 0.0 => Some(f.ceil() as u64),
        _ => None,
    });
    match ms {
        Some(ms) if ms <= MAX_SLEEP_MS => {
            ctx.add_timer(Duration::from_millis(ms), Box::new(move |_ctx: &Context| reply(req, &Value::Nil)));
        }
        _ => invalid_params(req, &format!("sleep(ms) needs a number of milliseconds from 0 to {MAX_SLEEP_MS}")),
    }
}

/// `blob(n)`: n bytes as bin, byte i being i % 256.
fn blob(state: &State, req: Request) {
    let n = params(&req, &["n"]).and_then(|p| p[0].as_u64());
    let Some(n) = n else {
        return invalid_params(req, "blob(n) needs a non-negative integer");
    };
    match usize::try_from(n) {
        Ok(n) if n <= state.max_blob => {
            if req.is_conn_closed() {
                return; // the client is gone: skip the work
            }
            let mut bytes = state.blob_bytes.borrow_mut();
            if bytes.len() < n {
                if !req.fits(n + 5) {
                    let message = format!("blob({n}) does not fit in the server's memory budget now");
                    let _ = req.reply_error_code(rpc_error::RESOURCE_EXHAUSTED, message.as_bytes());
                    return;
                }
                let mut grown = Vec::new();
                if grown.try_reserve_exact(n).is_err() {
                    let _ = req.reply_error_code(rpc_error::RESOURCE_EXHAUSTED, b"blob(n): out of memory");
                    return;
                }
                grown.extend((0..n).map(|i| i as u8));
                *bytes = std::sync::Arc::new(grown);
            }
            // Shared, not copied: every answer is written from this one buffer.
            let _ = req.reply_bin_shared(bytes.clone(), 0..n);
        }
        _ => {
            let message = format!("blob(n): n is larger than the message size limit ({} bytes at most)", state.max_blob);
            let _ = req.reply_error_code(rpc_error::TOO_LARGE, message.as_bytes());
        }
    }
}

/// `callback(method, params)`: call `method` on the caller, over the same connection, and
/// answer with its result or its error object.
/// How long `callback` waits for the client's answer.
const CALLBACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn callback(ctx: &Context, req: Request) {
    const USAGE: &str = "callback(method, params) needs a method name and an array (or map) of params";
    let Some(p) = params(&req, &["method", "params"]) else {
        return invalid_params(req, USAGE);
    };
    let (Some(method), Value::Array(_) | Value::Map(_)) = (p[0].as_str(), &p[1]) else {
        return invalid_params(req, USAGE);
    };
    let method = method.to_string();
    let name = method.clone();
    let conn = req.conn();
    // The completion answers the request; it is shared so that, if the call cannot start
    // (the completion is then dropped unrun), the error can still be sent from here.
    let slot = Rc::new(Cell::new(Some(req)));
    let taken = slot.clone();
    let started = ctx.call(
        conn,
        method.as_bytes(),
        &json::encode(&p[1]),
        // A client that drops requests from the server must not leave this call hanging.
        Some(CALLBACK_TIMEOUT),
        Box::new(move |_ctx: &Context, response: Response<'_>| {
            let Some(req) = taken.take() else { return };
            let _ = match response.outcome {
                Ok(result) => req.reply(result),
                Err(e) if e.kind == joint::error::ErrorKind::Remote => req.reply_error(e.error),
                Err(e) => req.reply_error_code(rpc_error::HANDLER_FAILED, format!("callback {name}: {}", e.message).as_bytes()),
            };
        }),
    );
    if let Err(e) = started {
        if let Some(req) = slot.take() {
            let _ = req.reply_error_code(rpc_error::HANDLER_FAILED, format!("callback: {e}").as_bytes());
        }
    }
}

/// Run the server until SIGINT/SIGTERM, or until the stdio connection closes.
pub fn run(options: &Options) -> ExitCode {
    match serve(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("joint serve: {message}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn serve(options: &Options) -> Result<(), String> {
    // Before anything else, so a signal during start-up is not lost.
    let signal_pipe = SignalPipe::install(&[libc::SIGINT, libc::SIGTERM]).map_err(|e| format!("cannot catch signals: {e}"))?;
    let config = options.config();
    let ctx = Context::new(config.clone()).map_err(|e| e.to_string())?;
    install(&ctx, &config);

    let mut listen = options.listen.clone();
    if listen.is_empty() && !options.stdio {
        listen.push(DEFAULT_LISTEN.to_string());
    }
    let tls = options.tls_config()?;
    for uri in &listen {
        let id = match (&tls, uri.starts_with("tls://")) {
            (Some(tls), true) => ctx.listen_tls(uri, tls),
            // parse_serve makes sure a tls:// listener has its certificate.
            _ => ctx.listen(uri),
        };
        let id = id.map_err(|e| e.to_string())?;
        let actual = ctx.listener_uri(id).unwrap_or_else(|| uri.clone());
        eprintln!("listening on {actual}");
    }

    let stdio_closed = Rc::new(Cell::new(false));
    if options.stdio {
        let stdio = ctx.open_stdio().map_err(|e| e.to_string())?;
        let closed = stdio_closed.clone();
        ctx.set_conn_event_handler(Some(Rc::new(move |_ctx: &Context, id: ConnId, event: ConnEvent<'_>| {
            if id == stdio && matches!(event, ConnEvent::Closed { .. }) {
                closed.set(true);
            }
        })));
    }

    let fds = [ctx.fd(), signal_pipe.fd()];
    // Set at the first signal: requests already received get until then to be answered.
    let mut deadline: Option<Instant> = None;
    loop {
        if stdio_closed.get() {
            return Ok(());
        }
        if let Some(signal) = signal_pipe.take() {
            if deadline.is_some() {
                eprintln!("joint serve: {}, stopping now", signals::name(signal));
                return Ok(());
            }
            eprintln!("joint serve: {}, shutting down", signals::name(signal));
            // Listeners close (Unix socket files are removed), new requests are refused.
            ctx.shutdown();
            deadline = Some(Instant::now() + SHUTDOWN_GRACE);
        }
        let mut timeout = ctx.timeout_ms();
        if let Some(at) = deadline {
            if ctx.unanswered_requests() == 0 || Instant::now() >= at {
                return Ok(()); // dropping the context flushes and closes every connection
            }
            let left = at.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32 + 1;
            timeout = if timeout < 0 { left } else { timeout.min(left) };
        }
        signals::poll_readable(&fds, timeout).map_err(|e| format!("poll: {e}"))?;
        ctx.process().map_err(|e| e.to_string())?;
    }
}
