//! `joint tap` end to end: real clients (`joint call`, raw sockets) through a real `joint tap`
//! process to real servers (`joint serve`, Neovim, a byte-echoing socket in the test).
//!
//! Every child is killed when its guard drops, and every wait has a deadline.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/process.rs"]
mod process;

use process::{serve, start_listening, Guard, JOINT, LIMIT};

struct Tap {
    guard: Guard,
    uri: String,
    out: mpsc::Receiver<String>,
}

impl Tap {
    fn start(to: &str, extra: &[&str]) -> Tap {
        Tap::listening_on("tcp://127.0.0.1:0", to, extra)
    }

    fn listening_on(listen: &str, to: &str, extra: &[&str]) -> Tap {
        let (guard, uri, out) = start_listening(Command::new(JOINT).args(["tap", "--listen", listen, "--to", to]).args(extra));
        Tap { guard, uri, out }
    }

    /// Output lines until one satisfies `done` (that one included).
    fn until(&self, done: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + LIMIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(line) => {
                    let last = done(&line);
                    seen.push(line);
                    if last {
                        return seen;
                    }
                }
                Err(_) => panic!("the tap did not print the expected line; it printed:\n{}", seen.join("\n")),
            }
        }
    }

    /// --json output lines up to the `closed` line of `closes` connections.
    fn json_until_closed(&self, closes: usize) -> Vec<Value> {
        let count = std::cell::Cell::new(0);
        let seen = self.until(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if v["kind"] == "closed" {
                count.set(count.get() + 1);
            }
            count.get() == closes
        });
        seen.iter().map(|l| serde_json::from_str(l).expect("JSON")).collect()
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.guard.0.id())).expect("/proc status");
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
        line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number")
    }
}

fn joint(args: &[&str]) -> Output {
    let child = Command::new(JOINT).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(LIMIT).expect("joint exits in time").expect("output")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn find(records: &[Value], what: impl Fn(&Value) -> bool) -> &Value {
    records.iter().find(|r| what(r)).unwrap_or_else(|| panic!("no such record in {records:#?}"))
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("joint-tap-{}-{name}", std::process::id()))
}

#[test]
fn calls_pass_unchanged_and_are_shown_as_json() {
    let (_server, server_uri) = serve();
    let tap = Tap::start(&server_uri, &["--json"]);
    let out = joint(&["call", &tap.uri, "echo", r#"{"a":[1,2.5,null],"b":{"$bin":"AAEC"}}"#]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), r#"{"a":[1,2.5,null],"b":{"$bin":"AAEC"}}"#);
    let out = joint(&["call", &tap.uri, "nosuch"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let records = tap.json_until_closed(2);
    for r in &records {
        assert!(r["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{r}");
        assert!(r["conn"].as_u64().is_some(), "{r}");
    }
    let open = find(&records, |r| r["kind"] == "open");
    assert_eq!((&open["conn"], &open["upstream"]), (&Value::from(1), &Value::from(server_uri.as_str())));
    let request = find(&records, |r| r["kind"] == "request" && r["method"] == "echo");
    assert_eq!((&request["dir"], &request["params"]), (&Value::from("c2s"), &serde_json::json!([{"a":[1,2.5,null],"b":{"$bin":"AAEC"}}])));
    let msgid = request["msgid"].as_u64().expect("a msgid");
    let response = find(&records, |r| r["kind"] == "response" && r["msgid"] == msgid && r["conn"] == 1);
    assert_eq!((&response["dir"], &response["method"]), (&Value::from("s2c"), &Value::from("echo")));
    assert_eq!(response["result"], request["params"][0]);
    assert!(response["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0 && ms < LIMIT.as_secs_f64() * 1e3), "{response}");
    assert!(response["size"].as_u64().is_some_and(|n| n > 10), "{response}");
    let failed = find(&records, |r| r["kind"] == "response" && r["method"] == "nosuch");
    assert_eq!((&failed["conn"], &failed["error"][0]), (&Value::from(2), &Value::from(2)));
    assert!(failed.get("result").is_none(), "{failed}");
    let closed = find(&records, |r| r["kind"] == "closed" && r["conn"] == 1);
    assert!(closed["c2s_bytes"].as_u64().is_some_and(|n| n > 0) && closed.get("error").is_none(), "{closed}");
}

#[test]
fn human_lines_name_the_message_and_its_latency() {
    let (_server, server_uri) = serve();
    let tap = Tap::start(&server_uri, &[]);
    let out = joint(&["call", &tap.uri, "add", "2", "3"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "5"), "{out:?}");
    let seen = tap.until(|l| l.contains(" closed "));
    let request = seen.iter().find(|l| l.contains("-> request") && l.contains(" add [2,3]")).expect("the request line");
    let msgid = request.split("msgid=").nth(1).and_then(|s| s.split(' ').next()).expect("a msgid");
    let response = seen.iter().find(|l| l.contains(&format!("<- response msgid={msgid} add ("))).unwrap_or_else(|| panic!("{seen:#?}"));
    assert!(response.contains(" ms) result=5"), "{response}");
    assert!(seen.iter().all(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(" #1 ")), "{seen:#?}");
}

#[test]
fn two_connections_at_once_are_labelled_apart() {
    let (_server, server_uri) = serve();
    let tap = Tap::start(&server_uri, &["--json"]);
    let uri = tap.uri.clone();
    let slow = thread::spawn(move || joint(&["call", &uri, "sleep", "500"]));
    // The second call starts while the first is still waiting for its answer.
    let first = tap.until(|l| l.contains(r#""method":"sleep""#));
    let fast = joint(&["call", &tap.uri, "echo", "quick"]);
    assert_eq!(stdout(&fast), "\"quick\"");
    assert_eq!(stdout(&slow.join().expect("slow call")), "null");
    let mut records: Vec<Value> = first.iter().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    records.extend(tap.json_until_closed(2));
    let sleep = find(&records, |r| r["kind"] == "request" && r["method"] == "sleep");
    let echo = find(&records, |r| r["kind"] == "request" && r["method"] == "echo");
    assert_ne!(sleep["conn"], echo["conn"]);
    let slept = find(&records, |r| r["kind"] == "response" && r["method"] == "sleep");
    let echoed = find(&records, |r| r["kind"] == "response" && r["method"] == "echo");
    assert_eq!((&slept["conn"], &echoed["conn"]), (&sleep["conn"], &echo["conn"]));
    assert!(slept["latency_ms"].as_f64().is_some_and(|ms| ms >= 500.0), "{slept}");
    // The echo was answered while the sleep was still pending on the other connection.
    let index = |r: &Value| records.iter().position(|x| x == r).expect("present");
    assert!(index(echoed) < index(slept), "{records:#?}");
}

#[test]
fn a_streaming_call_shows_the_extension_decoded() {
    let (_server, server_uri) = serve();
    let tap = Tap::start(&server_uri, &["--json"]);
    let out = joint(&["call", "--stream", &tap.uri, "count", "3"]);
    assert_eq!(stdout(&out), "0\n1\n2\n{\"result\":3}", "{out:?}");
    let records = tap.json_until_closed(1);
    let hello = find(&records, |r| r["kind"] == "request" && r["method"] == "joint.hello");
    assert_eq!(hello["params"][0], 1);
    let call = find(&records, |r| r["kind"] == "call");
    assert_eq!((&call["method"], &call["params"], &call["dir"]), (&Value::from("count"), &serde_json::json!([3]), &Value::from("c2s")));
    assert!(call["window"].as_u64().is_some_and(|w| w > 0) && call["flags"].as_u64().is_some(), "{call}");
    let items: Vec<&Value> = records.iter().filter(|r| r["kind"] == "yield").map(|r| &r["item"]).collect();
    assert_eq!(items, [0, 1, 2]);
    assert!(records.iter().filter(|r| r["kind"] == "yield").all(|r| r["method"] == "count" && r["msgid"] == call["msgid"] && r["dir"] == "s2c"));
    let done = find(&records, |r| r["kind"] == "response" && r["msgid"] == call["msgid"]);
    assert_eq!((&done["result"], &done["method"]), (&Value::from(3), &Value::from("count")));
    assert!(done["latency_ms"].as_f64().is_some());
}

#[test]
fn fragments_of_a_big_answer_are_followed() {
    let (_server, server_uri) = serve();
    let tap = Tap::start(&server_uri, &["--json"]);
    let out = joint(&["call", &tap.uri, "blob", "300000"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let records = tap.json_until_closed(1);
    let first = find(&records, |r| r["kind"] == "fragment" && r["fragment"] == 1);
    assert_eq!((&first["of"], &first["of_method"]), (&Value::from("response"), &Value::from("blob")));
    let last = find(&records, |r| r["kind"] == "fragment" && r.get("complete").is_some());
    assert_eq!((&last["complete"], &last["method"], &last["fragid"]), (&Value::from("response"), &Value::from("blob"), &first["fragid"]));
    assert!(last["total"].as_u64().is_some_and(|n| n > 300_000) && last["latency_ms"].as_f64().is_some(), "{last}");
    // Without --full the fragments in between are not printed.
    assert_eq!(records.iter().filter(|r| r["kind"] == "fragment").count(), 2);
}

#[test]
fn neovim_behind_the_tap() {
    if !process::have_nvim() {
        return;
    }
    let (nvim_socket, tap_socket) = (temp_path("nvim.sock"), temp_path("tap.sock"));
    let _ = std::fs::remove_file(&nvim_socket);
    let _ = std::fs::remove_file(&tap_socket);
    let mut nvim = Command::new("nvim");
    nvim.args(["--headless", "--clean", "--listen"]).arg(&nvim_socket).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let _nvim = Guard(nvim.spawn().expect("spawn nvim"));
    let deadline = Instant::now() + LIMIT;
    while std::os::unix::net::UnixStream::connect(&nvim_socket).is_err() {
        assert!(Instant::now() < deadline, "nvim did not listen on {nvim_socket:?}");
        thread::sleep(Duration::from_millis(20));
    }
    let to = format!("unix://{}", nvim_socket.display());
    let tap = Tap::listening_on(&format!("unix://{}", tap_socket.display()), &to, &["--json"]);
    assert_eq!(tap.uri, format!("unix://{}", tap_socket.display()));
    let out = joint(&["call", &tap.uri, "nvim_eval", r#""6*7""#]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "42"), "{out:?}");
    let records = tap.json_until_closed(1);
    // Neovim is a stock peer: it refuses the extension's offer with an ordinary error.
    let refused = find(&records, |r| r["kind"] == "response" && r["method"] == "joint.hello");
    assert!(refused.get("error").is_some_and(|e| !e.is_null()), "{refused}");
    let answer = find(&records, |r| r["kind"] == "response" && r["method"] == "nvim_eval");
    assert_eq!(answer["result"], 42);
    assert!(!records.iter().any(|r| r["kind"] == "call" || r["kind"] == "undecodable"), "{records:#?}");
    drop(tap);
    let _ = std::fs::remove_file(&nvim_socket);
}

/// A server in the test that sends back every byte it gets (half-close aware), or with
/// `echo` false reads and counts them; it reports what it saw when its client is done.
fn raw_upstream(echo: bool) -> (String, mpsc::Receiver<(u64, u32)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let uri = format!("tcp://{}", listener.local_addr().expect("address"));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else { return };
        let mut buf = vec![0u8; 1 << 16];
        let (mut total, mut crc) = (0u64, crc32fast::Hasher::new());
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    total += n as u64;
                    crc.update(&buf[..n]);
                    if echo && conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = conn.shutdown(Shutdown::Write);
        let _ = tx.send((total, crc.finalize()));
    });
    (uri, rx)
}

fn connect(uri: &str) -> TcpStream {
    let conn = TcpStream::connect(uri.strip_prefix("tcp://").expect("tcp")).expect("connect to the tap");
    conn.set_read_timeout(Some(LIMIT)).expect("timeout");
    conn
}

#[test]
fn garbage_is_forwarded_byte_for_byte() {
    let (upstream, seen) = raw_upstream(true);
    let tap = Tap::start(&upstream, &["--json"]);
    // A valid message, then bytes that are not MessagePack-RPC.
    let mut sent = vec![0x93, 0x02, 0xa4, b'p', b'i', b'n', b'g', 0x90];
    let mut x = 0x2545_f491_u32;
    sent.extend(b"GET / HTTP/1.1\r\n");
    sent.extend((0..1_000_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    let mut client = connect(&tap.uri);
    let mut writer = client.try_clone().expect("clone");
    let to_send = sent.clone();
    let sender = thread::spawn(move || {
        writer.write_all(&to_send).expect("write");
        writer.shutdown(Shutdown::Write).expect("half-close");
    });
    let mut back = Vec::new();
    client.read_to_end(&mut back).expect("the echo, then EOF passed on by the tap");
    sender.join().expect("sender");
    assert!(back == sent, "{} bytes back of {}", back.len(), sent.len());
    let (total, crc) = seen.recv_timeout(LIMIT).expect("upstream done");
    assert_eq!((total, crc), (sent.len() as u64, crc32fast::hash(&sent)));
    let records = tap.json_until_closed(1);
    let notification = find(&records, |r| r["kind"] == "notification" && r["dir"] == "c2s");
    assert_eq!((&notification["method"], &notification["params"]), (&Value::from("ping"), &serde_json::json!([])));
    for dir in ["c2s", "s2c"] {
        let lost = find(&records, |r| r["kind"] == "undecodable" && r["dir"] == dir);
        assert_eq!(lost["offset"], 8, "{lost}");
        assert!(lost["reason"].as_str().is_some_and(|s| s.contains("0x47")), "{lost}");
    }
    let closed = find(&records, |r| r["kind"] == "closed");
    assert_eq!((&closed["c2s_bytes"], &closed["s2c_bytes"]), (&Value::from(sent.len()), &Value::from(sent.len())));
}

#[test]
fn a_200_mb_message_is_forwarded_with_bounded_memory() {
    const SIZE: u32 = 200 << 20;
    let (upstream, seen) = raw_upstream(false);
    let tap = Tap::start(&upstream, &["--json"]);
    let mut client = connect(&tap.uri);
    // [0, 7, "put", [bin of 200 MiB]], written in pieces with a known pattern.
    let mut head = vec![0x94, 0x00, 0x07, 0xa3, b'p', b'u', b't', 0x91, 0xc6];
    head.extend(SIZE.to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    client.write_all(&head).expect("write");
    crc.update(&head);
    let piece: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    for _ in 0..SIZE >> 20 {
        client.write_all(&piece).expect("write");
        crc.update(&piece);
    }
    client.shutdown(Shutdown::Write).expect("half-close");
    let total = head.len() as u64 + u64::from(SIZE);
    assert_eq!(seen.recv_timeout(LIMIT).expect("upstream done"), (total, crc.finalize()));
    let records = tap.json_until_closed(1);
    let request = find(&records, |r| r["kind"] == "request");
    assert_eq!((&request["msgid"], &request["method"], &request["size"]), (&Value::from(7), &Value::from("put"), &Value::from(total)));
    assert_eq!(request["cut"], "params: array of 1 items");
    let peak = tap.peak_rss_kib();
    eprintln!("joint tap peak RSS after forwarding {total} bytes in one message: {peak} KiB");
    assert!(peak < 16 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn bad_arguments_exit_64() {
    for args in [
        &["tap"][..],
        &["tap", "--listen", "tcp://127.0.0.1:0"],
        &["tap", "--to", "tcp://127.0.0.1:1"],
        &["tap", "--listen", "tcp://127.0.0.1:0", "--to", "exec:nvim --embed"],
        &["tap", "--listen", "exec:cat", "--to", "tcp://127.0.0.1:1"],
        &["tap", "--listen", "tcp://127.0.0.1:0", "--to", "ftp://x:1"],
        &["tap", "--listen", "tcp://127.0.0.1", "--to", "tcp://127.0.0.1:1"],
        &["tap", "--listen", "tcp://127.0.0.1:0", "--to", "tls://127.0.0.1:1"],
        &["tap", "--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:1", "--max-connections", "0"],
        &["tap", "--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:1", "--bogus"],
    ] {
        let out = joint(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
    let exec = joint(&["tap", "--listen", "tcp://127.0.0.1:0", "--to", "exec:nvim --embed"]);
    assert!(String::from_utf8_lossy(&exec.stderr).contains("exec:"), "{exec:?}");
    // A well-formed host name that does not resolve is a failure to connect, not a usage error.
    let unresolved = joint(&["tap", "--listen", "tcp://127.0.0.1:0", "--to", "tcp://no-such-host.invalid:1"]);
    assert_eq!(unresolved.status.code(), Some(2), "{unresolved:?}");
    assert!(String::from_utf8_lossy(&unresolved.stderr).contains("no-such-host.invalid"), "{unresolved:?}");
    let help = joint(&["tap", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("BOUNDS"), "{help:?}");
}

#[test]
fn connections_over_the_cap_are_refused_with_a_line() {
    let (_server, server_uri) = serve();
    let tap = Tap::start(&server_uri, &["--json", "--max-connections", "1"]);
    let _first = connect(&tap.uri);
    tap.until(|l| l.contains(r#""kind":"open""#));
    let mut second = connect(&tap.uri);
    let mut buf = [0u8; 1];
    assert_eq!(second.read(&mut buf).expect("EOF, not a timeout"), 0);
    let refused: Value = serde_json::from_str(&tap.until(|l| l.contains("refused")).pop().expect("a line")).expect("JSON");
    assert_eq!(refused["conn"], 2);
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("--max-connections")), "{refused}");
}
