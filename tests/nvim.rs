//! Interop with a real peer: Neovim (0.7.2 in CI, from apt) as server over stdio (`--embed`),
//! TCP and a Unix socket; as a client of our server; and nested calls in both directions.
//!
//! Each test is skipped with a notice when `nvim` is not on PATH, unless JOINT_REQUIRE_NVIM is
//! set (CI sets it, so a missing nvim fails there instead of passing silently).

#[macro_use]
mod support;

use std::cell::RefCell;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use joint::codec;
use joint::error::ErrorKind;
use joint::reactor::{Config, ConnEvent, ConnId, Context};

use support::*;

fn have_nvim(test: &str) -> bool {
    if on_path("nvim") {
        return true;
    }
    if std::env::var_os("JOINT_REQUIRE_NVIM").is_some() {
        panic!("{test}: nvim is not on PATH but JOINT_REQUIRE_NVIM is set");
    }
    // Straight to stderr (not eprintln!, which the test harness captures): visible in CI logs.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: nvim is not on PATH (install it: apt-get install -y neovim)");
    false
}

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Record connection events as "Open" / "Closed(kind)" per connection.
type Events = Rc<RefCell<Vec<(ConnId, String)>>>;

fn record_events(ctx: &Context) -> Events {
    let events: Events = Rc::default();
    let ev = events.clone();
    ctx.set_conn_event_handler(Some(Rc::new(move |_ctx, id, e: ConnEvent<'_>| {
        let text = match e {
            ConnEvent::Open => "Open".to_string(),
            ConnEvent::Closed { kind, reason } => format!("Closed({kind:?}: {reason})"),
            other => format!("{other:?}"),
        };
        ev.borrow_mut().push((id, text));
    })));
    events
}

fn closed(events: &Events, conn: ConnId) -> bool {
    events.borrow().iter().any(|(id, e)| *id == conn && e.starts_with("Closed"))
}

/// Notifications received: (method, params).
type Notes = Rc<RefCell<Vec<(String, Val)>>>;

fn record_notifications(ctx: &Context) -> Notes {
    let notes: Notes = Rc::default();
    let n = notes.clone();
    ctx.set_notification_handler(Some(Rc::new(move |_ctx, _conn, method, params| {
        n.borrow_mut().push((String::from_utf8_lossy(method).into_owned(), Val::decode(params.args)));
    })));
    notes
}

/// The calls every nvim transport gets: eval, a function with a UTF-8 argument, an error
/// (a Remote error carrying nvim's `[type, message]`), a notification then a read back.
fn basic_calls(ctx: &Context, conn: ConnId, tag: &str) {
    assert_eq!(call_ok(ctx, conn, "nvim_eval", &arr![s("1+2")]), int(3), "{tag}");
    assert_eq!(call_ok(ctx, conn, "nvim_call_function", &arr![s("toupper"), arr![s("héllo")]]), s("HÉLLO"), "{tag}");
    match call_wait(ctx, conn, "nvim_eval", &arr![int(42)]) {
        Err((ErrorKind::Remote, err, message)) => {
            let v = Val::decode(&err);
            let parts = v.as_arr();
            assert_eq!(parts.len(), 2, "{tag}: nvim errors are [type, message]: {v:?}");
            assert!(matches!(parts[0], Val::Int(_)), "{tag}: {v:?}");
            let text = String::from_utf8_lossy(codec::error_message(&err).expect("error message")).into_owned();
            assert!(text.contains("Wrong type for argument 1"), "{tag}: {text}");
            assert!(text.contains("nvim_eval"), "{tag}: {text}");
            assert_eq!(message, text, "{tag}: CallError.message is the text found in the error object");
            assert_eq!(parts[1], s(&text));
        }
        other => panic!("{tag}: expected a Remote error, got {other:?}"),
    }
    let value = arr![int(42), s("héllo"), Val::Map(vec![(s("k"), Val::Bool(true))])];
    ctx.notify(conn, b"nvim_set_var", &arr![s("joint_probe"), value.clone()].encode()).unwrap();
    assert_eq!(call_ok(ctx, conn, "nvim_get_var", &arr![s("joint_probe")]), value, "{tag}");
}

/// `n` nvim_eval calls issued at once, before any of them is sent; all must complete, once,
/// with the right value.
fn pipelined_evals(ctx: &Context, conn: ConnId, n: u64, tag: &str) {
    let results = Results::default();
    for i in 0..n {
        ctx.call(conn, b"nvim_eval", &arr![s(&format!("{i}*3+1"))].encode(), None, results.done(i)).unwrap();
    }
    drive_until(ctx, Duration::from_secs(20), "pipelined calls", || results.len() == n as usize);
    let mut ok = 0;
    for i in 0..n {
        match results.get(i) {
            Ok(v) => {
                assert_eq!(Val::decode(&v), int(i as i128 * 3 + 1), "{tag}: call {i}");
                ok += 1;
            }
            Err(e) => panic!("{tag}: call {i} failed: {e:?}"),
        }
    }
    assert_eq!(ok, n, "{tag}");
    // Nothing completes twice.
    for _ in 0..3 {
        ctx.wait(Some(Duration::from_millis(5))).unwrap();
    }
    assert_eq!(results.len(), n as usize, "{tag}");
}

#[test]
fn embedded_nvim_over_stdio() {
    if !have_nvim("embedded_nvim_over_stdio") {
        return;
    }
    let ctx = Context::new(Config::default()).unwrap();
    let events = record_events(&ctx);
    let conn = ctx.spawn(&argv(&["nvim", "--embed", "--headless", "--clean"])).unwrap();
    basic_calls(&ctx, conn, "embed");
    pipelined_evals(&ctx, conn, 200, "embed");

    // Quit: nvim exits, the connection closes, the call completes exactly once.
    let results = Results::default();
    ctx.call(conn, b"nvim_command", &arr![s("qa!")].encode(), None, results.done(0)).unwrap();
    drive_until(&ctx, Duration::from_secs(10), "nvim to exit and the connection to close", || closed(&events, conn));
    drive_until(&ctx, Duration::from_secs(1), "the qa! call to complete", || results.len() == 1);
    // nvim 0.7 exits without answering (Closed); an answer (nil) would be fine too.
    match results.get(0) {
        Ok(v) => assert_eq!(v, codec::NIL),
        Err((kind, _, _)) => assert_eq!(kind, ErrorKind::Closed),
    }
    assert!(!ctx.is_open(conn));
    assert_eq!(events.borrow().iter().filter(|(id, _)| *id == conn).count(), 2, "{:?}", events.borrow());
    let err = ctx.call(conn, b"nvim_eval", &arr![s("1")].encode(), None, results.done(1)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Closed);
    ctx.release(conn);
    let t0 = Instant::now();
    drop(ctx);
    assert!(t0.elapsed() < Duration::from_millis(400), "context drop took {:?} (nvim had exited)", t0.elapsed());
    assert_eq!(results.len(), 1);
}

#[test]
fn dropping_the_context_ends_an_embedded_nvim() {
    if !have_nvim("dropping_the_context_ends_an_embedded_nvim") {
        return;
    }
    let ctx = Context::new(Config::default()).unwrap();
    let conn = ctx.spawn(&argv(&["nvim", "--embed", "--headless", "--clean"])).unwrap();
    let pid = call_ok(&ctx, conn, "nvim_call_function", &arr![s("getpid"), arr![]]).as_int() as i32;
    let t0 = Instant::now();
    drop(ctx);
    assert!(t0.elapsed() < Duration::from_secs(3), "context drop took {:?}", t0.elapsed());
    // nvim exits when its stdin closes; in any case the drop reaped (or killed) it.
    // SAFETY: kill with signal 0 only checks whether the pid exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "nvim {pid} still running after the context was dropped");
}

/// Start `nvim --headless --clean --listen ADDR` and wait until it accepts connections.
fn listening_nvim(dir: &TempDir, addr: &str, probe: impl Fn() -> bool) -> Option<ChildGuard> {
    let log = std::fs::File::create(dir.join("nvim-stderr.txt")).unwrap();
    let child = Command::new("nvim")
        .args(["--headless", "--clean", "--listen", addr])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn nvim");
    let mut guard = ChildGuard(Some(child));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if probe() {
            return Some(guard);
        }
        if guard.child().try_wait().unwrap().is_some() || Instant::now() > deadline {
            eprintln!("nvim --listen {addr} did not come up: {}", std::fs::read_to_string(dir.join("nvim-stderr.txt")).unwrap_or_default());
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Basic and pipelined calls against a listening nvim, then quit it.
fn exercise_listening_nvim(uri: &str, mut nvim: ChildGuard, tag: &str) {
    let ctx = Context::new(Config::default()).unwrap();
    let events = record_events(&ctx);
    let conn = ctx.connect(uri).unwrap();
    basic_calls(&ctx, conn, tag);
    pipelined_evals(&ctx, conn, 1000, tag);
    // A second connection to the same nvim works alongside.
    let conn2 = ctx.connect(uri).unwrap();
    assert_eq!(call_ok(&ctx, conn2, "nvim_eval", &arr![s("6*7")]), int(42), "{tag}");
    ctx.notify(conn, b"nvim_command", &arr![s("qa!")].encode()).unwrap();
    drive_until(&ctx, Duration::from_secs(10), "nvim to exit", || closed(&events, conn) && closed(&events, conn2));
    let status = nvim.wait_timeout(Duration::from_secs(5)).expect("nvim exits after qa!");
    assert!(status.success(), "{tag}: nvim exit status {status:?}");
    ctx.release(conn);
    ctx.release(conn2);
}

#[test]
fn nvim_server_over_tcp() {
    if !have_nvim("nvim_server_over_tcp") {
        return;
    }
    let dir = TempDir::new("nvtcp");
    // The port is free when picked but another process could take it before nvim binds it:
    // try a few.
    for attempt in 0..3 {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let probe = || TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(200)).is_ok();
        if let Some(nvim) = listening_nvim(&dir, &addr, probe) {
            exercise_listening_nvim(&format!("tcp://{addr}"), nvim, "tcp");
            return;
        }
        eprintln!("attempt {attempt}: nvim could not listen on {addr}; retrying");
    }
    panic!("nvim did not listen on TCP after 3 attempts");
}

#[test]
fn nvim_server_over_unix_socket() {
    if !have_nvim("nvim_server_over_unix_socket") {
        return;
    }
    let dir = TempDir::new("nvunix");
    let path = dir.join("nv.sock");
    let probe = || std::os::unix::net::UnixStream::connect(&path).is_ok();
    let nvim = listening_nvim(&dir, path.to_str().unwrap(), probe).expect("nvim listening on a Unix socket");
    exercise_listening_nvim(&format!("unix://{}", path.display()), nvim, "unix");
}

// ---- nvim as a client of our server ---------------------------------------------------------

/// Run nvim with `script` as a client of `rpc_addr`, driving `ctx` until it exits. Returns the
/// script's output file (key=value lines).
fn run_nvim_client(ctx: &Context, dir: &TempDir, script: &str, rpc_addr: &str) -> String {
    let script_path = dir.join("client.lua");
    let out_path = dir.join("out.txt");
    let err_path = dir.join("stderr.txt");
    let _ = std::fs::remove_file(&out_path);
    std::fs::write(&script_path, script).unwrap();
    let child = Command::new("nvim")
        .args(["--headless", "--clean", "-c", &format!("luafile {}", script_path.display()), "-c", "qa!"])
        .env("RPC_ADDR", rpc_addr)
        .env("RESULT_FILE", &out_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn nvim");
    let mut nvim = ChildGuard(Some(child));
    // nvim blocks in rpcrequest until we answer: keep driving our context meanwhile.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = nvim.child().try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            drop(nvim); // kills it
            panic!("nvim client did not finish within 20 s; stderr: {}", std::fs::read_to_string(&err_path).unwrap_or_default());
        }
        ctx.wait(Some(Duration::from_millis(10))).unwrap();
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(status.success(), "nvim exit {status:?}; output: {out}; stderr: {}", std::fs::read_to_string(&err_path).unwrap_or_default());
    assert!(out.ends_with("done\n"), "script did not finish: {out:?}; stderr: {}", std::fs::read_to_string(&err_path).unwrap_or_default());
    out
}

/// The value of `key=` in the script output.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    out.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("no {key} in {out:?}"))
}

const LUA_PRELUDE: &str = r#"
local addr = os.getenv("RPC_ADDR")
local out = assert(io.open(os.getenv("RESULT_FILE"), "w"))
local function put(k, v) out:write(k, "=", tostring(v), "\n"); out:flush() end
local ok, err = pcall(function()
  local mode = addr:find("^/") and "pipe" or "tcp"
  local ch = vim.fn.sockconnect(mode, addr, {rpc = true})
  put("chan_ok", ch > 0)
"#;

const LUA_POSTLUDE: &str = r#"
  vim.fn.chanclose(ch)
end)
if not ok then put("lua_error", err) end
out:write("done\n")
out:close()
"#;

fn lua(body: &str) -> String {
    format!("{LUA_PRELUDE}{body}{LUA_POSTLUDE}")
}

fn serve_add_and_echo(ctx: &Context) {
    // `fail [code]` answers joint's `[code, "boom-CODE"]`; `fail []` answers a plain string.
    ctx.register(
        b"fail",
        Rc::new(|_ctx, req| {
            let a = Val::decode(req.args());
            match a.as_arr().first() {
                Some(Val::Int(code)) => req.reply_error_code(*code as i64, format!("boom-{code}").as_bytes()).unwrap(),
                _ => req.reply_error(&s("boom-str").encode()).unwrap(),
            }
        }),
    );
    ctx.register(
        b"add",
        Rc::new(|_ctx, req| {
            let a = Val::decode(req.args());
            let sum = a.as_arr()[0].as_int() + a.as_arr()[1].as_int();
            req.reply(&int(sum).encode()).unwrap();
        }),
    );
    ctx.register(
        b"echo",
        Rc::new(|_ctx, req| {
            let a = Val::decode(req.args());
            req.reply(&a.as_arr()[0].encode()).unwrap();
        }),
    );
}

#[test]
fn nvim_as_client_of_our_server() {
    if !have_nvim("nvim_as_client_of_our_server") {
        return;
    }
    let dir = TempDir::new("nvcli");
    let ctx = Context::new(Config::default()).unwrap();
    serve_add_and_echo(&ctx);
    let notes = record_notifications(&ctx);
    let events = record_events(&ctx);
    let tcp = ctx.listen("tcp://127.0.0.1:0").unwrap();
    let tcp_addr = ctx.listener_uri(tcp).unwrap().strip_prefix("tcp://").unwrap().to_string();
    let sock = dir.join("s.sock");
    ctx.listen(&format!("unix://{}", sock.display())).unwrap();

    let script = lua(r#"
  put("add", vim.rpcrequest(ch, "add", 1, 2))
  put("echo", vim.rpcrequest(ch, "echo", "héllo"))
  put("echo_list", vim.fn.json_encode(vim.rpcrequest(ch, "echo", {1, "two", {three = 3}})))
  local ok2, e2 = pcall(vim.rpcrequest, ch, "nope", 1)
  put("missing_ok", ok2)
  put("missing_err", e2)
  for _, code in ipairs({0, 1, 2, 3, 7}) do
    local okc, ec = pcall(vim.rpcrequest, ch, "fail", code)
    put("fail" .. code, tostring(okc) .. " " .. tostring(ec))
  end
  local oks, es = pcall(vim.rpcrequest, ch, "fail")
  put("fail_str", tostring(oks) .. " " .. tostring(es))
  vim.rpcnotify(ch, "note", "hello-notify")
  -- a request after the notification: when it returns, the notification has been handled
  put("add2", vim.rpcrequest(ch, "add", 40, 2))
"#);
    for (i, addr) in [tcp_addr.clone(), sock.display().to_string()].iter().enumerate() {
        let out = run_nvim_client(&ctx, &dir, &script, addr);
        assert_eq!(field(&out, "chan_ok"), "true", "{addr}");
        assert_eq!(field(&out, "add"), "3", "{addr}");
        assert_eq!(field(&out, "echo"), "héllo", "{addr}");
        assert_eq!(field(&out, "echo_list").replace(' ', ""), r#"[1,"two",{"three":3}]"#, "{addr}");
        assert_eq!(field(&out, "missing_ok"), "false", "{addr}");
        // nvim shows the text of `[0|1, message]` errors and of string errors (other codes:
        // see nvim_shows_the_text_of_joint_protocol_errors).
        assert_eq!(field(&out, "fail0"), "false boom-0", "{addr}");
        assert_eq!(field(&out, "fail1"), "false boom-1", "{addr}");
        assert_eq!(field(&out, "fail_str"), "false boom-str", "{addr}");
        assert_eq!(field(&out, "add2"), "42", "{addr}");
        assert_eq!(notes.borrow().len(), i + 1, "{addr}");
        assert_eq!(notes.borrow()[i], ("note".to_string(), arr![s("hello-notify")]), "{addr}");
        // nvim closed the channel and exited: the server saw its connection open and close.
        drive_until(&ctx, Duration::from_secs(5), "the nvim connection to close", || {
            events.borrow().iter().filter(|(_, e)| e.starts_with("Closed")).count() == i + 1
        });
        assert_eq!(events.borrow().iter().filter(|(_, e)| e == "Open").count(), i + 1);
    }
}

// ---- nested calls -----------------------------------------------------------------------------

#[test]
fn nvim_calls_us_while_our_request_is_pending() {
    if !have_nvim("nvim_calls_us_while_our_request_is_pending") {
        return;
    }
    let ctx = Context::new(Config::default()).unwrap();
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let l = log.clone();
    ctx.register(
        b"add",
        Rc::new(move |_ctx, req| {
            let a = Val::decode(req.args());
            l.borrow_mut().push(format!("add {a:?}"));
            let sum = a.as_arr()[0].as_int() + a.as_arr()[1].as_int();
            req.reply(&int(sum).encode()).unwrap();
        }),
    );
    // The same, answered later from a timer (nvim stays blocked in rpcrequest meanwhile).
    let l = log.clone();
    ctx.register(
        b"slow_add",
        Rc::new(move |ctx, req| {
            let a = Val::decode(req.args());
            l.borrow_mut().push(format!("slow_add {a:?}"));
            let sum = a.as_arr()[0].as_int() + a.as_arr()[1].as_int();
            ctx.add_timer(Duration::from_millis(20), Box::new(move |_ctx| req.reply(&int(sum).encode()).unwrap()));
        }),
    );
    let l = log.clone();
    ctx.set_notification_handler(Some(Rc::new(move |_ctx, _conn, method, params| {
        l.borrow_mut().push(format!("{} {:?}", String::from_utf8_lossy(method), Val::decode(params.args)));
    })));
    let conn = ctx.spawn(&argv(&["nvim", "--embed", "--headless", "--clean"])).unwrap();
    let info = call_ok(&ctx, conn, "nvim_get_api_info", &arr![]);
    let chan = info.as_arr()[0].as_int();
    assert!(chan > 0, "{info:?}");

    let code = "local chan = ...; vim.rpcnotify(chan, 'tick', 1); return vim.rpcrequest(chan, 'add', 1, 2) + 100";
    let r = call_ok(&ctx, conn, "nvim_exec_lua", &arr![s(code), arr![int(chan)]]);
    assert_eq!(r, int(103));
    assert_eq!(*log.borrow(), vec!["tick [1]".to_string(), "add [1, 2]".to_string()]);

    log.borrow_mut().clear();
    let code = "local chan = ...; return vim.rpcrequest(chan, 'slow_add', 5, 6) * 2";
    let r = call_ok(&ctx, conn, "nvim_exec_lua", &arr![s(code), arr![int(chan)]]);
    assert_eq!(r, int(22));
    assert_eq!(*log.borrow(), vec!["slow_add [5, 6]".to_string()]);

    // Several pipelined: nvim starts each exec_lua while blocked in the previous one's
    // rpcrequest, so the nested requests pile up on its call stack. nvim 0.7 only takes the
    // answer to the innermost one, and only once the one above has unwound (otherwise it
    // logs "a response with an unknown request id" and closes the channel). So hold them all,
    // answer the newest, and answer each next one from the completion of the exec_lua that
    // just returned: replies given outside their handlers, in reverse order.
    log.borrow_mut().clear();
    const K: usize = 5;
    type Held = Rc<RefCell<Vec<joint::reactor::Request>>>;
    let held: Held = Rc::default();
    fn answer_newest(held: &Held) {
        let next = held.borrow_mut().pop();
        if let Some(req) = next {
            let a = Val::decode(req.args());
            let sum = a.as_arr()[0].as_int() + a.as_arr()[1].as_int();
            req.reply(&int(sum).encode()).unwrap();
        }
    }
    let h = held.clone();
    ctx.register(
        b"held_add",
        Rc::new(move |_ctx, req| {
            h.borrow_mut().push(req);
            if h.borrow().len() == K {
                answer_newest(&h);
            }
        }),
    );
    let results = Results::default();
    for i in 0..K as i64 {
        let code = format!("local chan = ...; return vim.rpcrequest(chan, 'held_add', {i}, 1000)");
        let record = results.done(i as u64);
        let h = held.clone();
        let done: joint::reactor::Completion = Box::new(move |ctx, r| {
            record(ctx, r);
            answer_newest(&h);
        });
        ctx.call(conn, b"nvim_exec_lua", &arr![s(&code), arr![int(chan)]].encode(), None, done).unwrap();
    }
    drive_until(&ctx, Duration::from_secs(10), "pipelined nested calls", || results.len() == K);
    for i in 0..K as u64 {
        let r = results.get(i).unwrap_or_else(|e| panic!("nested call {i}: {e:?}"));
        assert_eq!(Val::decode(&r), int(i as i128 + 1000));
    }
    let order: Vec<u64> = results.inner.borrow().iter().map(|(t, _)| *t).collect();
    assert_eq!(order, vec![4, 3, 2, 1, 0], "innermost first");
    assert!(held.borrow().is_empty());
    // And sequentially, many times over.
    for i in 0..20i64 {
        let code = format!("local chan = ...; return vim.rpcrequest(chan, 'add', {i}, 1) * 2");
        assert_eq!(call_ok(&ctx, conn, "nvim_exec_lua", &arr![s(&code), arr![int(chan)]]), int((i as i128 + 1) * 2));
    }
    ctx.notify(conn, b"nvim_command", &arr![s("qa!")].encode()).unwrap();
    drive_until(&ctx, Duration::from_secs(10), "nvim to exit", || !ctx.is_open(conn));
    ctx.release(conn);
}

#[test]
fn our_server_calls_nvim_back_while_handling_its_request() {
    if !have_nvim("our_server_calls_nvim_back_while_handling_its_request") {
        return;
    }
    let dir = TempDir::new("nvnest");
    let ctx = Context::new(Config::default()).unwrap();
    let calls_back = Rc::new(RefCell::new(0));
    let cb = calls_back.clone();
    ctx.register(
        b"nested",
        Rc::new(move |ctx, req| {
            let cb = cb.clone();
            // Call nvim on the connection the request came in on; answer from the completion.
            let expr = Val::decode(req.args()).as_arr()[0].clone();
            ctx.call(
                req.conn(),
                b"nvim_eval",
                &arr![expr].encode(),
                Some(Duration::from_secs(10)),
                Box::new(move |_ctx, r| {
                    *cb.borrow_mut() += 1;
                    match r.outcome {
                        Ok(v) => req.reply(&int(Val::decode(v).as_int() + 1).encode()).unwrap(),
                        Err(e) => req.reply_error(&s(&format!("call back failed: {:?} {}", e.kind, e.message)).encode()).unwrap(),
                    }
                }),
            )
            .unwrap();
        }),
    );
    let tcp = ctx.listen("tcp://127.0.0.1:0").unwrap();
    let addr = ctx.listener_uri(tcp).unwrap().strip_prefix("tcp://").unwrap().to_string();
    let script = lua(r#"
  put("nested", vim.rpcrequest(ch, "nested", "40+2"))
  vim.g.joint_depth = 7
  put("nested_var", vim.rpcrequest(ch, "nested", "g:joint_depth * 6"))
  local ok2, e2 = pcall(vim.rpcrequest, ch, "nested", "no_such_function_xyz()")
  put("nested_err_ok", ok2)
  put("nested_err", e2)
"#);
    let out = run_nvim_client(&ctx, &dir, &script, &addr);
    assert_eq!(field(&out, "nested"), "43", "{out}");
    assert_eq!(field(&out, "nested_var"), "43", "{out}");
    assert_eq!(field(&out, "nested_err_ok"), "false", "{out}");
    assert!(field(&out, "nested_err").contains("call back failed: Remote"), "{out}");
    assert_eq!(*calls_back.borrow(), 3);
}

/// nvim 0.7 (`rpc_send_call`) turns an error object into text only when it is a string or
/// `[type, message]` with type 0 (Exception) or 1 (Validation); anything else becomes
/// "unknown error". joint's own errors keep their distinct codes (docs/PROTOCOL.md says so
/// and recommends codes 0/1 for application errors meant for Neovim): this pins down what an
/// nvim client sees for a missing method (code 2) — the request fails, with nvim's text.
#[test]
fn nvim_client_sees_joint_protocol_errors_as_failures() {
    if !have_nvim("nvim_client_sees_joint_protocol_errors_as_failures") {
        return;
    }
    let dir = TempDir::new("nverr");
    let ctx = Context::new(Config::default()).unwrap();
    let tcp = ctx.listen("tcp://127.0.0.1:0").unwrap();
    let addr = ctx.listener_uri(tcp).unwrap().strip_prefix("tcp://").unwrap().to_string();
    let script = lua(r#"
  local ok2, e2 = pcall(vim.rpcrequest, ch, "nope", 1)
  put("missing", tostring(ok2) .. " " .. tostring(e2))
"#);
    let out = run_nvim_client(&ctx, &dir, &script, &addr);
    let missing = field(&out, "missing");
    assert!(missing.starts_with("false "), "{out}");
    assert!(missing.contains("unknown error") || missing.contains("no such method: nope"), "{out}");
}
