//! `joint call` and `joint notify`: one request (or notification) from the command line.

use std::cell::RefCell;
use std::io::Write;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use joint::error::{Error, ErrorKind};
use joint::reactor::{Config, ConnEvent, ConnId, Context, Reconnect};
use rmpv::Value;

pub use crate::target::{Target, TlsOptions};
use crate::{json, methods, EXIT_FAILED, EXIT_REMOTE};

/// The params of a call: positional, or keyword (sent as a map).
#[derive(Debug, Clone, PartialEq)]
pub enum CallParams {
    Positional(Vec<Value>),
    Keyword(Vec<(String, Value)>),
}

impl CallParams {
    pub(crate) fn encode(&self) -> Vec<u8> {
        json::encode(&match self {
            CallParams::Positional(args) => Value::Array(args.clone()),
            CallParams::Keyword(pairs) => Value::Map(pairs.iter().map(|(k, v)| (Value::from(k.as_str()), v.clone())).collect()),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub target: Target,
    pub uri: String,
    pub method: String,
    pub params: CallParams,
    /// None: wait as long as it takes.
    pub timeout: Option<Duration>,
    /// `--retry-ms MS`: keep trying to connect for this long.
    pub retry: Option<Duration>,
    /// `--stream`: print the items the callee streams, one JSON line each.
    pub stream: bool,
    /// `--send-json-lines FILE`: stream the JSON lines of FILE (`-`: stdin) into the call.
    pub send_lines: Option<String>,
    /// `--output FILE`: the bytes of streamed bin items go to FILE.
    pub output: Option<String>,
    pub tls: TlsOptions,
    /// `--pretty`: print the result (or the remote error) as indented JSON.
    pub pretty: bool,
}

/// A context that serves `echo` and `add` (for callbacks), connected to the target.
pub(crate) fn connect(options: &Options) -> Result<(Context, ConnId), ExitCode> {
    let config = Config { connect_timeout: options.timeout, ..Config::default() };
    let ctx = Context::new(config).map_err(|e| fail(&e.to_string()))?;
    methods::register_echo_add(&ctx);
    let conn = match options.retry {
        Some(retry) => connect_retrying(&ctx, options, retry)?,
        None => options.target.open(&ctx, &options.tls).map_err(|e| fail(&e.message))?,
    };
    Ok((ctx, conn))
}

/// `--retry-ms`: a reconnecting connection that gives up after `retry`; returns once it is
/// up. A connection lost later is retried too, but the call in flight on it fails.
fn connect_retrying(ctx: &Context, options: &Options, retry: Duration) -> Result<ConnId, ExitCode> {
    let policy = Reconnect {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        queue_limit: Some(1),
        give_up_after: Some(retry),
        ..Reconnect::default()
    };
    let tls = match &options.target {
        Target::Tls(_) => Some(options.tls.config().map_err(|e| fail(&e.message))?),
        _ => None,
    };
    let conn = ctx.connect_reconnecting(&[&options.uri], tls.as_ref(), policy).map_err(|e| fail(&e.message))?;
    let closed: Rc<RefCell<Option<String>>> = Rc::default();
    let last_down: Rc<RefCell<Option<String>>> = Rc::default();
    let (c, d) = (closed.clone(), last_down.clone());
    ctx.set_conn_event_handler(Some(Rc::new(move |_ctx: &Context, id, event: ConnEvent<'_>| match event {
        ConnEvent::Closed { reason, .. } if id == conn => *c.borrow_mut() = Some(reason.to_string()),
        ConnEvent::Down { reason, .. } if id == conn => *d.borrow_mut() = Some(reason.to_string()),
        _ => {}
    })));
    while !ctx.is_up(conn) {
        if let Some(reason) = closed.borrow_mut().take() {
            ctx.set_conn_event_handler(None);
            let why = last_down.borrow_mut().take().unwrap_or(reason);
            return Err(fail(&format!("could not connect to {} within {} ms: {why}", options.uri, retry.as_millis())));
        }
        ctx.wait(Some(Duration::from_millis(100))).map_err(|e| fail(&e.message))?;
    }
    ctx.set_conn_event_handler(None);
    Ok(conn)
}

/// A value as JSON text: one line, or indented (`--pretty`).
pub(crate) fn json_text(value: &Value, pretty: bool) -> String {
    let json = json::to_json(value);
    if pretty {
        serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string())
    } else {
        json.to_string()
    }
}

/// Print the peer's error object once, as JSON (exactly what it sent), and give exit status 1.
pub(crate) fn remote_error(options: &Options, error_object: &[u8]) -> ExitCode {
    let error = match json::decode(error_object) {
        Ok(value) => json_text(&value, options.pretty),
        Err(_) => json::bytes_to_json_text(error_object),
    };
    eprintln!("joint: {} failed: {error}", options.method);
    ExitCode::from(EXIT_REMOTE)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("joint: {message}");
    ExitCode::from(EXIT_FAILED)
}

/// Why a call failed, in words, for anything but a remote error.
fn describe_failure(options: &Options, e: &Error) -> String {
    match e.kind {
        ErrorKind::Timeout => {
            let ms = options.timeout.map(|t| t.as_millis()).unwrap_or_default();
            format!("no answer to {} from {} within {ms} ms (timed out)", options.method, options.uri)
        }
        // These messages name the address already.
        ErrorKind::ConnectionRefused | ErrorKind::Address | ErrorKind::Io | ErrorKind::Tls => e.message.clone(),
        _ => format!("{} on {}: {}", options.method, options.uri, e.message),
    }
}

/// `joint call`: print the result as JSON (exit 0), the remote error (exit 1), or why there
/// was no answer (exit 2).
pub fn run_call(options: &Options) -> ExitCode {
    if options.stream || options.send_lines.is_some() {
        return crate::stream_call::run(options, options.stream, options.send_lines.as_deref());
    }
    let (ctx, conn) = match connect(options) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let outcome = ctx.call_blocking(conn, options.method.as_bytes(), &options.params.encode(), options.timeout);
    let code = match outcome {
        Ok(result) => match json::decode(&result) {
            Ok(value) => {
                let mut out = std::io::stdout().lock();
                // A closed stdout (`| head`) is not worth an error of its own.
                let _ = writeln!(out, "{}", json_text(&value, options.pretty)).and_then(|()| out.flush());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("{}: the result is not usable: {e}", options.method)),
        },
        Err((e, error_object)) if e.kind == ErrorKind::Remote => remote_error(options, &error_object),
        Err((e, _)) => fail(&describe_failure(options, &e)),
    };
    drop(ctx); // closes the connection; a spawned program gets EOF on its stdin
    code
}

/// The method `joint notify` calls after the notification: any answer, even "no such
/// method", proves the peer has read (and, being in order, handled) the notification.
const SYNC_METHOD: &[u8] = b"joint.sync";

/// `joint notify`: send the notification and make sure the peer got it.
pub fn run_notify(options: &Options) -> ExitCode {
    let (ctx, conn) = match connect(options) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = ctx.notify(conn, options.method.as_bytes(), &options.params.encode()) {
        return fail(&format!("{} on {}: {}", options.method, options.uri, e.message));
    }
    let code = match ctx.call_blocking(conn, SYNC_METHOD, joint::codec::EMPTY_ARRAY, options.timeout) {
        Ok(_) => ExitCode::SUCCESS,
        Err((e, _)) if e.kind == ErrorKind::Remote => ExitCode::SUCCESS,
        Err((e, _)) => fail(&format!("could not confirm that {} was delivered: {}", options.method, describe_failure(options, &e))),
    };
    drop(ctx);
    code
}
