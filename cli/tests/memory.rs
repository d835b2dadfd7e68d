//! Flow control bounds memory: 1 GiB streamed each way between `joint serve` (its own process)
//! and a client in this process that consumes slowly; the peak RSS of each side stays under
//! 64 MiB. (Its own test binary, so no other test shares this process's memory.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use joint::codec;
use joint::reactor::{CallOptions, Config, Context, SendStatus, StreamItem};

const GIB: u64 = 1 << 30;
const CHUNK: u64 = 32 << 10;
const LIMIT_KIB: u64 = 64 << 10;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> (Server, String) {
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_joint")).args(["serve", "--listen", "tcp://127.0.0.1:0"]).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let uri = loop {
        let line = lines.next().expect("joint serve said nothing").unwrap();
        if let Some(u) = line.strip_prefix("listening on ") {
            break u.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Server(child), uri)
}

/// Peak resident set (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn int(v: u64) -> Vec<u8> {
    let mut b = Vec::new();
    codec::write_uint(&mut b, v);
    b
}

#[test]
fn one_gib_each_way_with_a_slow_consumer_stays_under_64_mib() {
    let (server, uri) = start_server();
    let server_pid = server.0.id().to_string();
    let ctx = Context::new(Config::default()).unwrap();
    let conn = ctx.connect(&uri).unwrap();

    // Server → client: download(1 GiB), pulled slowly (a pause every 256 items).
    let mut params = vec![0x92];
    params.extend(int(GIB));
    params.extend(int(CHUNK));
    let started = Instant::now();
    let stream = ctx.call_stream(conn, b"download", &params, CallOptions::default()).unwrap();
    let mut received = 0u64;
    let mut items = 0u64;
    let result = loop {
        match stream.next(&ctx, Some(Duration::from_secs(60))).unwrap() {
            Some(StreamItem::Item(bin)) => {
                let mut pos = 0;
                received += codec::read::bin(&bin, &mut pos).unwrap().len() as u64;
                items += 1;
                if items % 256 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Some(StreamItem::Done(r)) => break r,
            None => panic!("download stalled"),
        }
    };
    assert_eq!(received, GIB);
    assert_eq!(codec::uint_value(&result), Some(GIB));
    let download_time = started.elapsed();

    // Client → server: upload() of 1 GiB, sent as fast as credit allows; the server's
    // consumer is the slower side here only if it is, and credit keeps both bounded.
    let done = std::rc::Rc::new(std::cell::RefCell::new(None));
    let d = done.clone();
    let call = ctx
        .call_with(
            conn,
            b"upload",
            &[0x90],
            CallOptions { client_stream: true, ..Default::default() },
            Box::new(move |_ctx, r| *d.borrow_mut() = Some(r.outcome.map(<[u8]>::to_vec).map_err(|e| e.message))),
        )
        .unwrap();
    let mut chunk = Vec::new();
    codec::write_bin(&mut chunk, &vec![0x33u8; CHUNK as usize]);
    let started = Instant::now();
    let mut sent = 0u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while sent < GIB {
        assert!(Instant::now() < deadline, "upload stalled at {sent} bytes");
        match ctx.send(call, &chunk).unwrap() {
            SendStatus::Sent => sent += CHUNK,
            SendStatus::WouldBlock => ctx.wait(Some(Duration::from_millis(50))).unwrap(),
        }
    }
    ctx.end_input(call).unwrap();
    while done.borrow().is_none() {
        assert!(Instant::now() < deadline, "no upload result");
        ctx.wait(Some(Duration::from_millis(50))).unwrap();
    }
    let upload_time = started.elapsed();
    let result = done.borrow_mut().take().unwrap().unwrap();
    let mut pos = 0;
    assert_eq!(codec::read::array(&result, &mut pos), Ok(2));
    assert_eq!(codec::read::uint(&result, &mut pos), Ok(GIB));

    let server_kib = peak_rss_kib(&server_pid);
    let client_kib = peak_rss_kib("self");
    eprintln!(
        "1 GiB download {download_time:?}, 1 GiB upload {upload_time:?}; peak RSS: server {} MiB, client {} MiB",
        server_kib / 1024,
        client_kib / 1024
    );
    assert!(server_kib < LIMIT_KIB, "server peak RSS {server_kib} KiB");
    assert!(client_kib < LIMIT_KIB, "client peak RSS {client_kib} KiB");
}
