//! `joint bench` against real servers: a `joint serve` child on a free port, and Neovim
//! (skipped when `nvim` is not on PATH, unless JOINT_REQUIRE_NVIM is set).
//!
//! Every child is killed when its guard drops and every wait has a deadline. Timing checks
//! are loose behaviour checks (does --depth overlap calls, does --rate pace them), not speed
//! tests.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/process.rs"]
mod process;

use process::{serve, Guard, JOINT, LIMIT};

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn json(&self) -> Value {
        assert_eq!(self.code, Some(0), "joint bench failed: {}", self.stderr);
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Run `joint bench ARGS`, failing the test if it takes longer than LIMIT.
fn bench(args: &[&str]) -> Outcome {
    let mut child = Command::new(JOINT)
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn joint bench");
    let (mut out, mut err) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let mut guard = Guard(child);
    let stdout = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        match guard.0.try_wait().expect("wait for joint bench") {
            Some(status) => break status,
            None if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            None => panic!("joint bench {args:?} did not exit within {LIMIT:?}"),
        }
    };
    Outcome { code: status.code(), stdout: stdout.join().expect("stdout reader"), stderr: stderr.join().expect("stderr reader") }
}

fn number(v: &Value, key: &str) -> f64 {
    v.pointer(key).and_then(Value::as_f64).unwrap_or_else(|| panic!("no number at {key} in {v}"))
}

#[test]
fn calls_gives_exactly_that_many_calls() {
    let (_server, uri) = serve();
    for args in [&["--calls", "1000", "--depth", "16", "--connections", "3"][..], &["--calls", "77", "--warmup", "0.2", "--depth", "5"]] {
        let v = bench(&[&[uri.as_str(), "add", "2", "3", "--json"][..], args].concat()).json();
        let calls = if args[1] == "1000" { 1000.0 } else { 77.0 };
        assert_eq!((number(&v, "/calls"), number(&v, "/errors")), (calls, 0.0), "{args:?}: {v}");
        let (p50, max) = (number(&v, "/latency_ms/p50"), number(&v, "/latency_ms/max"));
        assert!(p50 > 0.0 && p50 <= max, "{v}");
        assert!(number(&v, "/calls_per_sec") > 0.0, "{v}");
    }
}

#[test]
fn error_responses_are_counted_not_fatal() {
    let (_server, uri) = serve();
    let v = bench(&[&uri, "no_such_method", "--calls", "50", "--depth", "4", "--json"]).json();
    assert_eq!((number(&v, "/calls"), number(&v, "/errors")), (50.0, 50.0), "{v}");
    // Keyword params reach the method: add by name works, with a missing name it is an error.
    let v = bench(&[&uri, "add", "--kw", "a=1", "--kw", "b=2", "--calls", "20", "--json"]).json();
    assert_eq!(number(&v, "/errors"), 0.0, "{v}");
    let v = bench(&[&uri, "add", "--kw", "a=1", "--calls", "20", "--json"]).json();
    assert_eq!(number(&v, "/errors"), 20.0, "{v}");
}

#[test]
fn table_names_every_figure() {
    let (_server, uri) = serve();
    let out = bench(&[&uri, "echo", "\"x\"", "--calls", "10"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for word in ["calls", "errors", "seconds", "calls/s", "p50", "p90", "p99", "p99.9", "max"] {
        assert!(out.stdout.contains(word), "no {word} in\n{}", out.stdout);
    }
}

#[test]
fn depth_and_connections_overlap_calls() {
    let (_server, uri) = serve();
    // 16 calls of 200 ms: 4 rounds at depth 4 on one connection, 2 over two connections.
    let seconds = |extra: &[&str]| {
        let v = bench(&[&[uri.as_str(), "sleep", "200", "--calls", "16", "--depth", "4", "--json"][..], extra].concat()).json();
        assert_eq!(number(&v, "/errors"), 0.0, "{v}");
        number(&v, "/seconds")
    };
    let one = seconds(&[]);
    assert!((0.79..1.59).contains(&one), "4 rounds of 200 ms took {one} s");
    let two = seconds(&["--connections", "2"]);
    assert!((0.39..0.79).contains(&two), "2 rounds of 200 ms took {two} s");
}

#[test]
fn rate_paces_the_calls() {
    let (_server, uri) = serve();
    let v = bench(&[&uri, "echo", "1", "--rate", "200", "--duration", "1", "--connections", "2", "--depth", "4", "--json"]).json();
    let (calls, rate) = (number(&v, "/calls"), number(&v, "/calls_per_sec"));
    // 200 calls are scheduled in the second; a server that keeps up answers them all.
    assert_eq!(calls, 200.0, "{v}");
    assert!((150.0..=260.0).contains(&rate), "asked for 200 calls/s, measured {rate}: {v}");
}

/// The server is stopped (SIGSTOP) for 600 ms in the middle of the run.
fn with_stalled_server(args: &[&str]) -> Value {
    let (server, uri) = serve();
    let run = {
        let mut words: Vec<String> = vec![uri, "echo".into(), "1".into(), "--duration".into(), "2".into(), "--json".into()];
        words.extend(args.iter().map(|a| a.to_string()));
        thread::spawn(move || bench(&words.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    thread::sleep(Duration::from_millis(700));
    server.signal(libc::SIGSTOP);
    thread::sleep(Duration::from_millis(600));
    server.signal(libc::SIGCONT);
    run.join().expect("bench thread").json()
}

#[test]
fn open_loop_shows_a_stall_in_the_latency() {
    // Open loop: the ~60 calls scheduled during the stall all wait for it, so more than a
    // tenth of the 200 calls are hundreds of milliseconds late.
    let v = with_stalled_server(&["--rate", "100"]);
    assert!(number(&v, "/latency_ms/max") >= 450.0, "{v}");
    assert!(number(&v, "/latency_ms/p90") >= 150.0, "{v}");
    // Closed loop hides it: one call waits, the thousands of others are fast.
    let v = with_stalled_server(&[]);
    assert!(number(&v, "/latency_ms/max") >= 450.0, "{v}");
    assert!(number(&v, "/latency_ms/p90") < 50.0, "{v}");
}

#[test]
fn bad_arguments_exit_64_naming_the_problem() {
    for (args, named) in [
        (&["tcp://127.0.0.1:1", "echo", "--depth", "0"][..], "--depth"),
        (&["tcp://127.0.0.1:1", "echo", "--rate", "fast"], "--rate"),
        (&["tcp://127.0.0.1:1", "echo", "--rate", "0"], "--rate"),
        (&["tcp://127.0.0.1:1", "echo", "--duration", "-1"], "--duration"),
        (&["tcp://127.0.0.1:1", "echo", "--calls", "3", "--duration", "1"], "cannot be used with"),
        (&["tcp://127.0.0.1:1", "echo", "--connections", "0"], "--connections"),
        (&["tcp://127.0.0.1:1", "echo", "--frobnicate"], "--frobnicate"),
        (&["tcp://127.0.0.1:1"], "METHOD"),
        (&["http://127.0.0.1:1", "echo"], "invalid address"),
        (&["tcp://127.0.0.1:1", "echo", "1", "--kw", "a=1"], "--kw cannot be combined"),
        (&["tcp://127.0.0.1:1", "echo", r#"{"$bin":"!"}"#], "base64"),
    ] {
        let out = bench(args);
        assert_eq!(out.code, Some(64), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(named), "{args:?}: stderr does not name {named:?}: {}", out.stderr);
    }
    let out = bench(&["--help"]);
    assert_eq!(out.code, Some(0));
    assert!(out.stdout.contains("--rate") && out.stdout.contains("cannot keep up"), "{}", out.stdout);
}

#[test]
fn unreachable_address_exits_2() {
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port(); // closed again at once
    let out = bench(&[&format!("tcp://127.0.0.1:{port}"), "echo", "--calls", "1"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("could not connect") && out.stderr.contains("refused"), "{}", out.stderr);
}

#[test]
fn losing_the_server_mid_run_reports_and_exits_2() {
    let (mut server, uri) = serve();
    let run = thread::spawn(move || bench(&[&uri, "echo", "1", "--duration", "20", "--depth", "8", "--json"]));
    thread::sleep(Duration::from_millis(500));
    let _ = server.0.kill();
    let out = run.join().expect("bench thread");
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("ended early") && out.stderr.contains("connection lost"), "{}", out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("no report ({e}): {}", out.stdout));
    assert!(number(&v, "/calls") > 0.0 && number(&v, "/seconds") < 10.0, "{v}");
}

/// `nvim --headless --clean --listen 127.0.0.1:PORT`, once it accepts connections.
fn nvim() -> Option<(Guard, String)> {
    if !process::have_nvim() {
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let address = format!("127.0.0.1:{port}");
    let child = Command::new("nvim")
        .args(["--headless", "--clean", "--listen", &address])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nvim");
    let guard = Guard(child);
    let deadline = Instant::now() + LIMIT;
    while TcpStream::connect(&address).is_err() {
        assert!(Instant::now() < deadline, "nvim did not listen on {address}");
        thread::sleep(Duration::from_millis(20));
    }
    Some((guard, format!("tcp://{address}")))
}

#[test]
fn neovim_is_a_stock_server_like_any_other() {
    let Some((_nvim, uri)) = nvim() else { return };
    let v = bench(&[&uri, "nvim_eval", "\"1+1\"", "--calls", "300", "--depth", "8", "--connections", "2", "--json"]).json();
    assert_eq!((number(&v, "/calls"), number(&v, "/errors")), (300.0, 0.0), "{v}");
    let v = bench(&[&uri, "no_such_function", "--calls", "30", "--json"]).json();
    assert_eq!((number(&v, "/calls"), number(&v, "/errors")), (30.0, 30.0), "{v}");
}

#[test]
fn open_loop_against_a_server_that_never_answers_still_ends() {
    let (server, uri) = serve();
    server.signal(libc::SIGSTOP); // the kernel still accepts the connection
    let started = Instant::now();
    let out = bench(&[&uri, "echo", "1", "--rate", "100", "--duration", "1", "--timeout", "300", "--json"]);
    server.signal(libc::SIGCONT);
    let v = out.json();
    // Every call of the measured second is an error: timed out, or never sent for want of room.
    assert_eq!((number(&v, "/calls"), number(&v, "/errors")), (100.0, 100.0), "{v}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "took {took:?}: {v}");
}
