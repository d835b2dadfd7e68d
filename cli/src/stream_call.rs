//! `joint call --stream` and `joint call --send-json-lines FILE`: an extended call (joint
//! extension) whose items are printed as they arrive, and/or into which the lines of FILE
//! are streamed.
//!
//! Output on stdout: each item the callee streams, as one line of JSON, then the result as
//! the last line, `{"result": VALUE}`. Without `--stream` only the result is printed, as a
//! bare JSON line like a plain `joint call`.
//!
//! With `--output FILE` the bytes of bin items go to FILE instead (a download), with a
//! progress line on stderr when it is a terminal.
//!
//! Input: FILE (`-` for stdin) is read on a thread, one JSON value per line (blank lines are
//! skipped), into a bounded channel; the loop sends a line whenever the callee's credit
//! allows (`SendStatus::WouldBlock` waits for `CallEvent::Writable`), then ends the input.
//! So a slow or interactive producer never stalls the loop, and a slow callee slows the
//! reading instead of filling memory.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Stdout, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use joint::error::{Error, ErrorKind};
use joint::protocol::ExtMode;
use joint::reactor::{CallEvent, CallId, CallOptions, ConnEvent, ConnId, Context, Response, SendStatus};
use rmpv::Value;

use crate::call::{self, CallParams, Options};
use crate::{json, EXIT_FAILED, EXIT_USAGE};

/// Lines read ahead of what the callee has accepted.
const READ_AHEAD: usize = 64;

/// What the reader thread hands the loop.
enum Line {
    /// Line number (from 1) and text.
    Text(u64, String),
    End,
    Failed(String),
}

/// FILE opened, its reader thread not started yet (it needs the context's waker).
struct LineSource {
    name: String,
    rx: Receiver<Line>,
    start: Box<dyn FnOnce(&Context) + Send>,
}

/// How the call ended.
type Outcome = Result<Vec<u8>, (Error, Vec<u8>)>;

/// Items printed as they arrive, flushed each time the loop comes back.
struct Printer {
    out: BufWriter<Stdout>,
    failed: Option<io::Error>,
    /// `--output FILE`: where bin items go.
    file: Option<Download>,
}

struct Download {
    path: String,
    out: BufWriter<File>,
    bytes: u64,
    started: Instant,
    /// Progress is shown (stderr is a terminal), last at this time.
    progress: Option<Instant>,
}

impl Download {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.bytes += data.len() as u64;
        if let Some(last) = self.progress {
            if last.elapsed() >= Duration::from_millis(250) {
                self.show_progress();
            }
        }
        Ok(())
    }

    fn show_progress(&mut self) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        eprint!("\r{}: {:.1} MiB, {:.1} MiB/s   ", self.path, self.bytes as f64 / 1048576.0, self.bytes as f64 / 1048576.0 / secs);
        self.progress = Some(Instant::now());
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.progress.is_some() {
            self.show_progress();
            eprintln!();
        }
        self.out.flush()
    }
}

impl Printer {
    /// One streamed item: a bin item's bytes to the output file if there is one, anything
    /// else as a JSON line.
    fn item(&mut self, item: &[u8]) {
        if let Some(d) = self.file.as_mut() {
            let mut pos = 0;
            if let Ok(bytes) = joint::codec::read::bin(item, &mut pos) {
                if pos == item.len() {
                    if let Err(e) = d.write(bytes) {
                        if self.failed.is_none() {
                            self.failed = Some(io::Error::new(e.kind(), format!("{}: {e}", d.path)));
                        }
                    }
                    return;
                }
            }
        }
        let text = match json::decode(item) {
            Ok(v) => json::to_json(&v).to_string(),
            Err(e) => format!("{{\"$invalid\":{}}}", serde_json::Value::from(e)),
        };
        self.line(&text);
    }

    fn line(&mut self, text: &str) {
        if self.failed.is_none() {
            if let Err(e) = writeln!(self.out, "{text}") {
                self.failed = Some(e);
            }
        }
    }

    fn flush(&mut self) -> Result<(), &io::Error> {
        if self.failed.is_none() {
            if let Err(e) = self.out.flush() {
                self.failed = Some(e);
            }
        }
        self.failed.as_ref().map_or(Ok(()), Err)
    }
}

pub fn run(options: &Options, stream: bool, send_lines: Option<&str>) -> ExitCode {
    // The input is opened first: a missing file is reported before anything is sent.
    let lines = match send_lines.map(open_input).transpose() {
        Ok(l) => l,
        Err(message) => {
            eprintln!("joint: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (ctx, conn) = match call::connect(options) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let code = drive(&ctx, conn, options, stream, lines);
    drop(ctx); // closes the connection; a spawned program gets EOF on its stdin
    code
}

/// Create `--output FILE` (truncating it).
fn open_output(path: &str) -> Result<Download, String> {
    let f = File::create(path).map_err(|e| format!("cannot write {path}: {e}"))?;
    // SAFETY: isatty on fd 2 has no preconditions.
    let tty = unsafe { libc::isatty(2) } == 1;
    let now = Instant::now();
    Ok(Download { path: path.to_string(), out: BufWriter::with_capacity(1 << 20, f), bytes: 0, started: now, progress: tty.then_some(now) })
}

/// Open FILE (or stdin for `-`) and start reading it on a thread.
fn open_input(path: &str) -> Result<LineSource, String> {
    let (reader, name): (Box<dyn Read + Send>, String) = if path == "-" {
        (Box::new(io::stdin()), "stdin".to_string())
    } else {
        let file = File::open(path).map_err(|e| format!("--send-json-lines: cannot read {path}: {e}"))?;
        (Box::new(file), path.to_string())
    };
    let (tx, rx) = mpsc::sync_channel::<Line>(READ_AHEAD);
    // The thread starts once the context exists, so it can wake the loop after each line.
    let start = Box::new(move |ctx: &Context| {
        let waker = ctx.waker();
        std::thread::spawn(move || {
            let mut number = 0u64;
            for line in BufReader::new(reader).lines() {
                number += 1;
                let sent = match line {
                    Ok(text) => tx.send(Line::Text(number, text)),
                    Err(e) => {
                        let _ = tx.send(Line::Failed(format!("line {number}: {e}")));
                        waker.wake();
                        return;
                    }
                };
                if sent.is_err() {
                    return; // the call is over
                }
                waker.wake();
            }
            let _ = tx.send(Line::End);
            waker.wake();
        });
    }) as Box<dyn FnOnce(&Context) + Send>;
    Ok(LineSource { name, rx, start })
}

fn fail(message: &str) -> ExitCode {
    eprintln!("joint: {message}");
    ExitCode::from(EXIT_FAILED)
}

fn timed_out(options: &Options) -> ExitCode {
    let ms = options.timeout.map(|t| t.as_millis()).unwrap_or_default();
    fail(&format!("no answer to {} from {} within {ms} ms (timed out)", options.method, options.uri))
}

fn drive(ctx: &Context, conn: ConnId, options: &Options, stream: bool, lines: Option<LineSource>) -> ExitCode {
    let deadline = options.timeout.map(|t| Instant::now() + t);
    let closed: Rc<RefCell<Option<String>>> = Rc::default();
    let c = closed.clone();
    ctx.set_conn_event_handler(Some(Rc::new(move |_ctx: &Context, id: ConnId, event: ConnEvent<'_>| {
        if let (true, ConnEvent::Closed { reason, .. }) = (id == conn, event) {
            *c.borrow_mut() = Some(reason.to_string());
        }
    })));

    if lines.is_some() {
        // Streaming in needs the extension: find out before the call is made, so a stock
        // peer never gets a call it would answer as if no input was coming.
        loop {
            match ctx.extension(conn) {
                Some(ExtMode::On) => break,
                Some(ExtMode::Offered) if ctx.is_open(conn) => {}
                Some(ExtMode::Refused | ExtMode::Off) => {
                    return fail(&format!(
                        "--send-json-lines needs the joint extension, which {} does not speak (a stock MessagePack-RPC peer); {} was not called",
                        options.uri, options.method
                    ));
                }
                _ => {
                    // The reason names the address ("connect to URI failed: ...").
                    let reason = closed.borrow().clone().unwrap_or_else(|| format!("{}: the connection closed", options.uri));
                    return fail(&reason);
                }
            }
            let left = match deadline {
                Some(d) if Instant::now() >= d => return timed_out(options),
                Some(d) => Some(d - Instant::now()),
                None => None,
            };
            if let Err(e) = ctx.wait(left) {
                return fail(&e.to_string());
            }
        }
    }

    let file = match options.output.as_deref().map(open_output).transpose() {
        Ok(f) => f,
        Err(message) => return fail(&message),
    };
    let printer = Rc::new(RefCell::new(Printer { out: BufWriter::new(io::stdout()), failed: None, file }));
    let p = printer.clone();
    let on_event = Box::new(move |_ctx: &Context, _call: CallId, event: CallEvent<'_>| {
        // Credit (Writable) needs no bookkeeping: the loop tries to send after every wait.
        if let (true, CallEvent::Item(item)) = (stream, event) {
            p.borrow_mut().item(item);
        }
    });
    let done: Rc<RefCell<Option<Outcome>>> = Rc::default();
    let d = done.clone();
    let completion = Box::new(move |_ctx: &Context, r: Response<'_>| {
        *d.borrow_mut() = Some(match r.outcome {
            Ok(v) => Ok(v.to_vec()),
            Err(e) => Err((Error::new(e.kind, e.message), e.error.to_vec())),
        });
    });
    let (args, kwargs) = match &options.params {
        CallParams::Positional(values) => (json::encode(&Value::Array(values.clone())), None),
        CallParams::Keyword(_) => (joint::codec::EMPTY_ARRAY.to_vec(), Some(options.params.encode())),
    };
    let opts = CallOptions {
        // What is left of --timeout: the callee gets it as its deadline.
        timeout: deadline.map(|d| d.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))),
        kwargs,
        client_stream: lines.is_some(),
        on_event: Some(on_event),
        ..CallOptions::default()
    };
    let call = match ctx.call_with(conn, options.method.as_bytes(), &args, opts, completion) {
        Ok(call) => call,
        Err(e) => return fail(&format!("{} on {}: {}", options.method, options.uri, e.message)),
    };

    let mut input = lines.map(|source| {
        (source.start)(ctx);
        Input { name: source.name, rx: source.rx, held: None, ended: false }
    });
    let mut broken_pipe = false;
    loop {
        if done.borrow().is_some() {
            break;
        }
        if let Some(inp) = input.as_mut().filter(|i| !i.ended) {
            if let Err((code, message)) = inp.feed(ctx, call) {
                ctx.cancel(call);
                eprintln!("joint: {message}");
                return ExitCode::from(code);
            }
        }
        if let Err(e) = ctx.wait(None) {
            return fail(&e.to_string());
        }
        if let Err(e) = printer.borrow_mut().flush() {
            if e.kind() == io::ErrorKind::BrokenPipe {
                // `| head`: the reader has seen enough.
                broken_pipe = true;
                ctx.cancel(call);
                break;
            }
            let message = format!("cannot write to stdout: {e}");
            ctx.cancel(call);
            return fail(&message);
        }
    }
    if broken_pipe {
        return ExitCode::SUCCESS;
    }

    let outcome = done.borrow_mut().take();
    let finished = printer.borrow_mut().file.as_mut().map(Download::finish);
    if let Some(Err(e)) = finished {
        return fail(&format!("{}: {e}", options.output.as_deref().unwrap_or("")));
    }
    match outcome {
        Some(Ok(result)) => match json::decode(&result) {
            Ok(value) => {
                let json = json::to_json(&value);
                let mut p = printer.borrow_mut();
                if stream {
                    p.line(&serde_json::json!({ "result": json }).to_string());
                } else {
                    p.line(&json.to_string());
                }
                match p.flush() {
                    Err(e) if e.kind() != io::ErrorKind::BrokenPipe => fail(&format!("cannot write to stdout: {e}")),
                    _ => ExitCode::SUCCESS,
                }
            }
            Err(e) => fail(&format!("{}: the result is not usable: {e}", options.method)),
        },
        // The callee's deadline (our --timeout) passed on its side first.
        Some(Err((e, error_object)))
            if e.kind == ErrorKind::Remote
                && options.timeout.is_some()
                && joint::codec::error_code(&error_object) == Some(joint::protocol::rpc_error::DEADLINE_EXCEEDED) =>
        {
            let _ = printer.borrow_mut().flush();
            timed_out(options)
        }
        Some(Err((e, error_object))) if e.kind == ErrorKind::Remote => {
            let _ = printer.borrow_mut().flush();
            crate::call::remote_error(options, &error_object)
        }
        Some(Err((e, _))) if e.kind == ErrorKind::Timeout => {
            let _ = printer.borrow_mut().flush();
            timed_out(options)
        }
        Some(Err((e, _))) => {
            let message = match e.kind {
                ErrorKind::ConnectionRefused | ErrorKind::Address | ErrorKind::Io => e.message.clone(),
                _ => format!("{} on {}: {}", options.method, options.uri, e.message),
            };
            fail(&message)
        }
        None => fail(&format!("{} on {}: the call did not finish", options.method, options.uri)),
    }
}

/// The lines still to send into the call.
struct Input {
    name: String,
    rx: Receiver<Line>,
    /// Encoded, refused for lack of credit: sent first when credit comes.
    held: Option<Vec<u8>>,
    ended: bool,
}

impl Input {
    /// Send what is available and what credit allows; end the input after the last line.
    /// An error is an exit code and a message.
    fn feed(&mut self, ctx: &Context, call: CallId) -> Result<(), (u8, String)> {
        loop {
            let item = match self.held.take() {
                Some(item) => item,
                None => match self.rx.try_recv() {
                    Ok(Line::Text(number, text)) => {
                        if text.trim().is_empty() {
                            continue;
                        }
                        let json: serde_json::Value =
                            serde_json::from_str(&text).map_err(|e| (EXIT_USAGE, format!("{}:{number}: not a JSON value: {e}", self.name)))?;
                        let value = json::to_msgpack(&json).map_err(|e| (EXIT_USAGE, format!("{}:{number}: {e}", self.name)))?;
                        json::encode(&value)
                    }
                    Ok(Line::End) | Err(TryRecvError::Disconnected) => {
                        self.ended = true;
                        // Fails only if the call already finished: its outcome is reported.
                        let _ = ctx.end_input(call);
                        return Ok(());
                    }
                    Ok(Line::Failed(e)) => return Err((EXIT_FAILED, format!("reading {}: {e}", self.name))),
                    Err(TryRecvError::Empty) => return Ok(()),
                },
            };
            match ctx.send(call, &item) {
                Ok(SendStatus::Sent) => {}
                Ok(SendStatus::WouldBlock) => {
                    self.held = Some(item);
                    return Ok(());
                }
                // The call finished (the callee answered early, or it failed): the loop
                // reports its outcome.
                Err(e) if e.kind == ErrorKind::State => {
                    self.ended = true;
                    return Ok(());
                }
                Err(e) => return Err((EXIT_FAILED, format!("sending into the call: {e}"))),
            }
        }
    }
}
