//! `joint call` and `joint notify`: one request (or notification) from the command line.

use std::cell::RefCell;
use std::io::Write;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use joint::error::{Error, ErrorKind};
use joint::reactor::{Config, ConnEvent, ConnId, Context, Reconnect, TlsConfig};
use rmpv::Value;

use crate::{json, methods, EXIT_FAILED, EXIT_REMOTE};

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `tcp://HOST:PORT` or `unix:///path`, as the library parses it.
    Socket(String),
    /// `tls://HOST:PORT`.
    Tls(String),
    /// `exec:PROGRAM ARG...`: a child process spoken to over its stdin/stdout.
    Exec(Vec<String>),
}

impl Target {
    pub fn parse(uri: &str) -> Result<Target, String> {
        if let Some(command) = uri.strip_prefix("exec:") {
            let argv = split_command(command)?;
            if argv.is_empty() {
                return Err("exec: needs a program to run, as in 'exec:nvim --embed'".into());
            }
            Ok(Target::Exec(argv))
        } else if uri.starts_with("tcp://") || uri.starts_with("unix:") {
            Ok(Target::Socket(uri.to_string()))
        } else if uri.starts_with("tls://") {
            Ok(Target::Tls(uri.to_string()))
        } else {
            Err(format!("unsupported address {uri:?}: expected tcp://HOST:PORT, tls://HOST:PORT, unix:///PATH or exec:PROGRAM ARG..."))
        }
    }

    pub(crate) fn open(&self, ctx: &Context, tls: &TlsOptions) -> joint::error::Result<ConnId> {
        match self {
            Target::Socket(uri) => ctx.connect(uri),
            Target::Tls(uri) => ctx.connect_tls(uri, &tls.config()?),
            Target::Exec(argv) => ctx.spawn(argv),
        }
    }
}

/// `--tls-ca`, `--tls-cert`/`--tls-key` and `--tls-server-name`, for `tls://` targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust these CAs instead of the system's.
    pub ca: Option<String>,
    /// A client certificate chain and its key, for servers that ask for one.
    pub cert: Option<(String, String)>,
    /// The name the server's certificate must carry, instead of the URI's host.
    pub server_name: Option<String>,
}

impl TlsOptions {
    pub fn is_empty(&self) -> bool {
        *self == TlsOptions::default()
    }

    fn config(&self) -> joint::error::Result<TlsConfig> {
        let mut tls = TlsConfig::new();
        if let Some(ca) = &self.ca {
            tls.set_ca_file(ca)?;
        }
        if let Some((cert, key)) = &self.cert {
            tls.set_certificate_files(cert, key)?;
        }
        if let Some(name) = &self.server_name {
            tls.set_server_name(name)?;
        }
        Ok(tls)
    }
}

/// Split a command line into words: blanks separate words, '...' is literal, "..." allows \"
/// and \\, and a backslash outside quotes escapes the next character. No expansions.
pub fn split_command(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("exec: unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("exec: unterminated \" quote".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("exec: unterminated \" quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("exec: trailing backslash".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

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
                let _ = writeln!(out, "{}", json::to_json(&value)).and_then(|()| out.flush());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("{}: the result is not usable: {e}", options.method)),
        },
        Err((e, error_object)) if e.kind == ErrorKind::Remote => {
            let error_json = json::bytes_to_json_text(&error_object);
            let message = if e.message.is_empty() { error_json.clone() } else { e.message.clone() };
            eprintln!("joint: {} failed: {message}", options.method);
            eprintln!("error: {error_json}");
            ExitCode::from(EXIT_REMOTE)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_commands() {
        assert_eq!(split_command("nvim --embed  --headless").unwrap(), ["nvim", "--embed", "--headless"]);
        assert_eq!(split_command(r#"sh -c 'echo "a b"' "x\"y" a\ b ''"#).unwrap(), ["sh", "-c", "echo \"a b\"", "x\"y", "a b", ""]);
        assert!(split_command("'open").is_err());
        assert!(split_command("\"open").is_err());
        assert!(split_command("x\\").is_err());
        assert!(split_command("  ").unwrap().is_empty());
    }

    #[test]
    fn parses_targets() {
        assert_eq!(Target::parse("tcp://127.0.0.1:1").unwrap(), Target::Socket("tcp://127.0.0.1:1".into()));
        assert_eq!(Target::parse("unix:///tmp/s").unwrap(), Target::Socket("unix:///tmp/s".into()));
        assert_eq!(Target::parse("exec:nvim --embed").unwrap(), Target::Exec(vec!["nvim".into(), "--embed".into()]));
        assert!(Target::parse("exec:").is_err());
        assert!(Target::parse("http://x").is_err());
    }
}
