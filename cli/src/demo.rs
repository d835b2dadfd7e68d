//! `joint demo`: a server (its own context, on a thread) and a client in one process, with a
//! short narrative of what happens. Exits non-zero if anything is not as expected.

use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use joint::error::{Error, ErrorKind};
use joint::reactor::{CallEvent, CallId, CallOptions, Config, ConnId, Context, Request, Response, SendStatus, Shared};
use rmpv::Value;

use crate::{json, methods, serve, EXIT_REMOTE};

const TIMEOUT: Duration = Duration::from_secs(5);

pub fn run() -> ExitCode {
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("joint demo: FAILED: {message}");
            ExitCode::from(EXIT_REMOTE)
        }
    }
}

/// The server's thread; stopped and joined on drop.
struct ServerThread {
    uri: String,
    stop: Arc<AtomicBool>,
    waker: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    fn start() -> Result<ServerThread, String> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let config = Config::default();
            let started = Context::new(config.clone()).and_then(|ctx| {
                serve::install(&ctx, &config);
                let id = ctx.listen("tcp://127.0.0.1:0")?;
                let uri = ctx.listener_uri(id).unwrap_or_default();
                Ok((ctx, uri))
            });
            let ctx = match started {
                Ok((ctx, uri)) => {
                    let _ = tx.send(Ok((uri, ctx.waker())));
                    ctx
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            while !stopped.load(Ordering::SeqCst) {
                if let Err(e) = ctx.wait(None) {
                    eprintln!("joint demo: server: {e}");
                    return;
                }
            }
        });
        let (uri, waker) = rx.recv_timeout(TIMEOUT).map_err(|_| "the server thread did not start".to_string())??;
        Ok(ServerThread { uri, stop, waker, thread: Some(thread) })
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How a demo call ended.
enum Outcome {
    Ok(Value),
    Remote(Value),
    Failed(Error),
}

struct Client {
    ctx: Context,
    conn: ConnId,
}

impl Client {
    fn call(&self, method: &str, args: Vec<Value>, timeout: Duration) -> Outcome {
        let params = json::encode(&Value::Array(args));
        match self.ctx.call_blocking(self.conn, method.as_bytes(), &params, Some(timeout)) {
            Ok(bytes) => json::decode(&bytes).map_or_else(|e| Outcome::Failed(Error::new(ErrorKind::Protocol, e)), Outcome::Ok),
            Err((e, obj)) if e.kind == ErrorKind::Remote => Outcome::Remote(json::decode(&obj).unwrap_or(Value::Nil)),
            Err((e, _)) => Outcome::Failed(e),
        }
    }

    /// A call that must succeed with `expected`.
    fn expect(&self, method: &str, args: Vec<Value>, expected: &Value) -> Result<(), String> {
        let shown = show_call(method, &args);
        match self.call(method, args, TIMEOUT) {
            Outcome::Ok(v) if v == *expected => {
                println!("  {shown} = {}", show(&v));
                Ok(())
            }
            Outcome::Ok(v) => Err(format!("{shown} returned {}, expected {}", show(&v), show(expected))),
            Outcome::Remote(e) => Err(format!("{shown} failed with {}", show(&e))),
            Outcome::Failed(e) => Err(format!("{shown}: {e}")),
        }
    }

    /// A call that must fail with a `[code, message]` error.
    fn expect_error(&self, method: &str, args: Vec<Value>, code: i64) -> Result<(), String> {
        let shown = show_call(method, &args);
        match self.call(method, args, TIMEOUT) {
            Outcome::Remote(e) if e.as_array().and_then(|a| a.first()).and_then(Value::as_i64) == Some(code) => {
                println!("  {shown} fails with error {}", show(&e));
                Ok(())
            }
            Outcome::Remote(e) => Err(format!("{shown} failed with {}, expected error code {code}", show(&e))),
            Outcome::Ok(v) => Err(format!("{shown} returned {}, expected an error", show(&v))),
            Outcome::Failed(e) => Err(format!("{shown}: {e}")),
        }
    }
}

fn show(v: &Value) -> String {
    json::to_json(v).to_string()
}

fn show_call(method: &str, args: &[Value]) -> String {
    let args: Vec<String> = args.iter().map(show).collect();
    format!("{method}({})", args.join(", "))
}

fn demo() -> Result<(), String> {
    let started = Instant::now();
    println!("joint demo: a MessagePack-RPC server and client in one process\n");
    let server = ServerThread::start()?;
    println!("server: listening on {} (its own context, on a thread)", server.uri);

    let ctx = Context::new(Config::default()).map_err(|e| e.to_string())?;
    // The client serves methods too: the server may call back into it.
    let callbacks = Rc::new(Cell::new(0u32));
    let seen = callbacks.clone();
    ctx.register(b"echo", Rc::new(methods::echo));
    ctx.register(
        b"add",
        Rc::new(move |ctx: &Context, req: Request| {
            seen.set(seen.get() + 1);
            let args = match json::decode(req.args()) {
                Ok(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            println!("    (the server calls the client's {})", show_call("add", &args));
            methods::add(ctx, req);
        }),
    );
    let conn = ctx.connect(&server.uri).map_err(|e| e.to_string())?;
    println!("client: connected to {}\n", server.uri);
    let client = Client { ctx, conn };

    println!("Calls:");
    client.expect("add", vec![Value::from(2), Value::from(3)], &Value::from(5))?;
    client.expect("add", vec![Value::F64(1.5), Value::from(2)], &Value::F64(3.5))?;
    let text = Value::from("héllo wörld, こんにちは 🦀");
    client.expect("echo", vec![text.clone()], &text)?;

    pipelined(&client)?;

    println!("\nA notification, then a call that reads it back:");
    let note = vec![Value::from("hello from the demo"), Value::from(42)];
    client.ctx.notify(client.conn, b"greet", &json::encode(&Value::Array(note.clone()))).map_err(|e| e.to_string())?;
    println!("  notify greet({})", note.iter().map(show).collect::<Vec<_>>().join(", "));
    client.expect("last_notification", vec![], &Value::Array(vec![Value::from("greet"), Value::Array(note)]))?;

    println!("\nErrors come back as [code, message]:");
    client.expect_error("no_such_method", vec![], joint::protocol::rpc_error::NO_METHOD)?;
    client.expect_error("add", vec![Value::from("two"), Value::from(3)], joint::protocol::rpc_error::INVALID_PARAMS)?;

    println!("\nA timeout:");
    let t0 = Instant::now();
    match client.call("sleep", vec![Value::from(500)], Duration::from_millis(100)) {
        Outcome::Failed(e) if e.kind == ErrorKind::Timeout => {
            println!("  sleep(500) with a 100 ms timeout: {} after {} ms", e.message, t0.elapsed().as_millis());
        }
        Outcome::Failed(e) => return Err(format!("sleep(500) with a 100 ms timeout: {e}, expected a timeout")),
        Outcome::Ok(v) => return Err(format!("sleep(500) with a 100 ms timeout returned {}", show(&v))),
        Outcome::Remote(e) => return Err(format!("sleep(500) with a 100 ms timeout failed with {}", show(&e))),
    }

    println!("\nA callback: the server calls a method of the client while answering it:");
    let args = vec![Value::from("add"), Value::Array(vec![Value::from(20), Value::from(22)])];
    client.expect("callback", args, &Value::from(42))?;
    if callbacks.get() != 1 {
        return Err(format!("the client's add ran {} times, expected once", callbacks.get()));
    }

    streaming(&client)?;

    drop(client);
    drop(server);
    println!("\nAll as expected, in {} ms.", started.elapsed().as_millis());
    Ok(())
}

/// 100 calls sent at once, without waiting for answers: call #i sleeps (100 - i) * 2 ms on the
/// server, so the answers come back in the opposite order.
fn pipelined(client: &Client) -> Result<(), String> {
    const N: usize = 100;
    let order = Rc::new(RefCell::new(Vec::with_capacity(N)));
    let failures = Rc::new(RefCell::new(Vec::new()));
    let t0 = Instant::now();
    for i in 0..N {
        let ms = (N - i) as u64 * 2;
        let (order, failures) = (order.clone(), failures.clone());
        let params = json::encode(&Value::Array(vec![Value::from(ms)]));
        let done = Box::new(move |_ctx: &Context, r: Response<'_>| match r.outcome {
            Ok(_) => order.borrow_mut().push(i),
            Err(e) => failures.borrow_mut().push(format!("call #{i}: {}", e.message)),
        });
        client.ctx.call(client.conn, b"sleep", &params, Some(TIMEOUT), done).map_err(|e| e.to_string())?;
    }
    while order.borrow().len() + failures.borrow().len() < N {
        if t0.elapsed() > TIMEOUT {
            return Err("the pipelined calls did not finish in time".into());
        }
        client.ctx.wait(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
    }
    let elapsed = t0.elapsed().as_millis();
    if let Some(f) = failures.borrow().first() {
        return Err(f.clone());
    }
    let order = order.borrow();
    if order.windows(2).all(|w| w[0] < w[1]) {
        return Err("the pipelined calls were answered in the order they were sent".into());
    }
    let first: Vec<String> = order.iter().take(3).map(|i| format!("#{i}")).collect();
    let reversed = order.iter().rev().copied().eq(0..N);
    println!(
        "  {N} calls sent at once, sleep(200), sleep(198), ... sleep(2): all answered in {elapsed} ms (one after another: {} ms)",
        (1..=N).map(|k| k * 2).sum::<usize>()
    );
    println!(
        "  answers arrived out of order ({}): {}, ..., #{}",
        if reversed { "exactly reversed" } else { "mostly reversed" },
        first.join(", "),
        order.last().copied().unwrap_or_default()
    );
    Ok(())
}

/// How an extended call of the demo ended.
type Done = Rc<RefCell<Option<Result<Value, String>>>>;

impl Client {
    /// Start an extended call; its outcome lands in the returned slot.
    fn start(&self, method: &str, args: Vec<Value>, opts: CallOptions) -> Result<(CallId, Done), String> {
        let done: Done = Rc::default();
        let d = done.clone();
        let completion = Box::new(move |_ctx: &Context, r: Response<'_>| {
            *d.borrow_mut() = Some(match r.outcome {
                Ok(v) => json::decode(v).map_err(|e| e.to_string()),
                Err(e) => Err(if e.error.is_empty() { format!("{:?}: {}", e.kind, e.message) } else { json::bytes_to_json_text(e.error) }),
            });
        });
        let params = json::encode(&Value::Array(args));
        let call = self.ctx.call_with(self.conn, method.as_bytes(), &params, opts, completion).map_err(|e| e.to_string())?;
        Ok((call, done))
    }

    /// Run the loop until `cond` holds (at most TIMEOUT).
    fn run_until(&self, what: &str, cond: impl Fn() -> bool) -> Result<(), String> {
        let t0 = Instant::now();
        while !cond() {
            if t0.elapsed() > TIMEOUT {
                return Err(format!("{what}: did not happen in time"));
            }
            self.ctx.wait(Some(Duration::from_millis(50))).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Items streamed to us, collected as they arrive.
fn collect_items(items: &Rc<RefCell<Vec<Value>>>) -> joint::reactor::CallEventHandler {
    let items = items.clone();
    Box::new(move |_ctx: &Context, _call: CallId, event: CallEvent<'_>| {
        if let CallEvent::Item(item) = event {
            items.borrow_mut().push(json::decode(item).unwrap_or(Value::Nil));
        }
    })
}

/// The joint extension: a method streaming items out, values streamed in with flow control,
/// and a cancelled stream.
fn streaming(client: &Client) -> Result<(), String> {
    println!("\nStreaming (the joint extension; both ends are joint, so calls can stream):");

    // Items arrive one by one, before the result; credit is granted as they are taken.
    let items = Rc::new(RefCell::new(Vec::new()));
    let opts = CallOptions { on_event: Some(collect_items(&items)), ..CallOptions::default() };
    let (_, done) = client.start("count", vec![Value::from(5)], opts)?;
    client.run_until("count(5)", || done.borrow().is_some())?;
    let expected: Vec<Value> = (0..5).map(Value::from).collect();
    match done.borrow_mut().take() {
        Some(Ok(v)) if v == Value::from(5) && *items.borrow() == expected => {
            let shown: Vec<String> = items.borrow().iter().map(show).collect();
            println!("  count(5) streamed {}, then returned {}", shown.join(", "), show(&v));
        }
        other => return Err(format!("count(5): streamed {:?}, ended with {other:?}", items.borrow())),
    }

    // Values streamed in: send as credit allows, wait for more when the callee says so.
    let opts = CallOptions { client_stream: true, ..CallOptions::default() };
    let (call, done) = client.start("sum", vec![], opts)?;
    client.run_until("sum(): the call starting", || client.ctx.is_extended_call(call) || done.borrow().is_some())?;
    let (mut next, mut waits) = (1i64, 0u32);
    while next <= 100 {
        if done.borrow().is_some() {
            return Err(format!("sum() ended early: {:?}", done.borrow()));
        }
        match client.ctx.send(call, &json::encode(&Value::from(next))).map_err(|e| format!("sum(): send: {e}"))? {
            SendStatus::Sent => next += 1,
            SendStatus::WouldBlock => {
                // No credit: the server has not consumed enough yet. Credit comes as an event.
                waits += 1;
                client.ctx.wait(Some(Duration::from_millis(50))).map_err(|e| e.to_string())?;
            }
        }
    }
    client.ctx.end_input(call).map_err(|e| format!("sum(): end of input: {e}"))?;
    client.run_until("sum()", || done.borrow().is_some())?;
    match done.borrow_mut().take() {
        Some(Ok(v)) if v == Value::from(5050) => {
            println!("  sum() with 1, 2, ..., 100 streamed in = {} (the sender waited for credit {waits} times)", show(&v))
        }
        other => return Err(format!("sum() of 1..=100: {other:?}")),
    }

    // A stream nobody wants to the end: cancel it; the server stops producing.
    const LONG: u64 = 1_000_000_000;
    let items = Rc::new(RefCell::new(Vec::new()));
    let opts = CallOptions { on_event: Some(collect_items(&items)), ..CallOptions::default() };
    let (call, done) = client.start("count", vec![Value::from(LONG)], opts)?;
    client.run_until("count(1000000000): the first 1000 items", || items.borrow().len() >= 1000 || done.borrow().is_some())?;
    let t0 = Instant::now();
    if !client.ctx.cancel(call) {
        return Err(format!("count({LONG}) could not be cancelled: {:?}", done.borrow()));
    }
    client.run_until("count(1000000000): cancelled", || done.borrow().is_some())?;
    let got = items.borrow().len();
    match done.borrow_mut().take() {
        Some(Err(e)) if e.contains("Cancelled") => {
            println!("  count({LONG}) cancelled after {got} items, in {} ms: {e}", t0.elapsed().as_millis())
        }
        other => return Err(format!("count({LONG}) after cancel: {other:?}")),
    }
    // The server dropped the call and answers at once.
    client.expect("echo", vec![Value::from("still here")], &Value::from("still here"))
}
