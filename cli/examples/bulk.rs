//! Bulk throughput of `joint serve` beside a raw socket transfer on the same loopback, in
//! one run: prints a Markdown table (GB/s, and the ratio to the raw transfer, each run right
//! after a run of its baseline) for docs/BENCHMARKS.md.
//!
//! Usage: `cargo run --release -p joint-cli --example bulk -- [MIB] [RUNS]` (default 256 MiB
//! per transfer, a multiple of 32; medians of 5 runs). `joint serve` is the binary next to this one
//! (target/release/joint: build it first, `cargo build --release -p joint-cli`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use joint::codec;
use joint::reactor::{ConnId, Context};

#[path = "common/transfer.rs"]
mod transfer;

use transfer::{download, median, upload};

const MIB: usize = 1 << 20;
/// Read and write size of the raw transfer and the raw client.
const IO: usize = 1 << 20;

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn joint_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/release/examples/bulk -> target/release/joint
    exe.parent().and_then(|p| p.parent()).unwrap().join("joint")
}

fn start_server() -> Server {
    let mut child = Command::new(joint_binary())
        .args(["serve", "--listen", "tcp://127.0.0.1:0", "--memory-budget-mib", "1024"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("run target/release/joint (cargo build --release -p joint-cli)");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let uri = loop {
        let line = lines.next().expect("joint serve said nothing").unwrap();
        if let Some(u) = line.strip_prefix("listening on ") {
            break u.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server(child, uri)
}

/// Two plain sockets: one thread writes `bytes` in 1 MiB writes, this one reads them.
fn raw_tcp(bytes: usize) -> Duration {
    raw_transfer(bytes, |s| drain(s, bytes))
}

/// The same transfer, the reader writing what it reads to a file (the baseline of
/// `joint call --output`, which does the same).
fn raw_tcp_to_file(bytes: usize) -> Duration {
    let path = std::env::temp_dir().join(format!("joint-bulk-raw-{}.bin", std::process::id()));
    let took = raw_transfer(bytes, |s| {
        let mut file = std::fs::File::create(&path).unwrap();
        let mut buf = vec![0u8; IO];
        let mut left = bytes;
        while left > 0 {
            let n = s.read(&mut buf[..left.min(IO)]).unwrap();
            assert!(n > 0, "closed early");
            file.write_all(&buf[..n]).unwrap();
            left -= n;
        }
    });
    let _ = std::fs::remove_file(&path);
    took
}

/// A thread writes `bytes` to a plain socket in 1 MiB writes; `receive` takes them on
/// this one. Returns how long `receive` took.
fn raw_transfer(bytes: usize, receive: impl FnOnce(&mut TcpStream)) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sender = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let buf = vec![0x5au8; IO];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(IO);
            s.write_all(&buf[..n]).unwrap();
            left -= n;
        }
    });
    let mut s = TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    receive(&mut s);
    let took = start.elapsed();
    sender.join().unwrap();
    took
}

fn drain(s: &mut TcpStream, mut left: usize) {
    let mut buf = vec![0u8; IO];
    while left > 0 {
        let n = s.read(&mut buf[..left.min(IO)]).unwrap();
        assert!(n > 0, "closed early");
        left -= n;
    }
}

/// A raw client asks for `blob(n)` and reads the answer's bytes (no decoding), `times` times.
fn stock_blob(addr: &str, n: usize, times: usize) -> Duration {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let start = Instant::now();
    for i in 0..times {
        let mut params = vec![0x91];
        codec::write_uint(&mut params, n as u64);
        let mut req = Vec::new();
        codec::encode_request(&mut req, i as u32, b"blob", &params);
        s.write_all(&req).unwrap();
        // [0x94, 0x01, msgid (fixint), nil, bin32 header, n bytes]
        drain(&mut s, 4 + 5 + n);
    }
    start.elapsed()
}

fn connect(uri: &str) -> (Context, ConnId) {
    let ctx = transfer::context();
    let conn = ctx.connect(uri).unwrap();
    // Negotiate the extension before timing.
    let r = ctx.call_blocking(conn, b"echo", &[0x91, 0x01], Some(Duration::from_secs(5)));
    assert!(r.is_ok());
    (ctx, conn)
}

/// `joint call --stream --output FILE` downloading `bytes` (the command-line client path).
fn cli_download(uri: &str, bytes: usize, chunk: usize) -> Duration {
    let out = std::env::temp_dir().join(format!("joint-bulk-{}.bin", std::process::id()));
    let start = Instant::now();
    let status = Command::new(joint_binary())
        .args(["call", uri, "download", &bytes.to_string(), &chunk.to_string(), "--stream", "--output"])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let took = start.elapsed();
    assert!(status.success(), "joint call --output failed");
    assert_eq!(std::fs::metadata(&out).unwrap().len() as usize, bytes);
    let _ = std::fs::remove_file(&out);
    took
}

/// The machine's speed drifts (a shared VM): every run of a row is paired with a run of its
/// baseline right before it, and the row reports the median of those ratios.
struct Paired {
    /// Median GB/s of the row's runs.
    gbps: f64,
    /// Median GB/s of the baseline runs paired with them.
    base_gbps: f64,
    /// Median of (row GB/s / baseline GB/s) over the pairs.
    ratio: f64,
}

fn paired(runs: usize, bytes: usize, mut base: impl FnMut() -> Duration, mut row: impl FnMut() -> Duration) -> Paired {
    let gbps = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e9;
    let pairs: Vec<(f64, f64)> = (0..runs).map(|_| (gbps(base()), gbps(row()))).collect();
    Paired {
        gbps: median(pairs.iter().map(|p| p.1).collect()),
        base_gbps: median(pairs.iter().map(|p| p.0).collect()),
        ratio: median(pairs.iter().map(|p| p.1 / p.0).collect()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mib: usize = args.first().map_or(256, |a| a.parse().expect("MIB"));
    let runs: usize = args.get(1).map_or(5, |a| a.parse().expect("RUNS"));
    assert!(mib % 32 == 0, "MIB must be a multiple of 32 (the blob row moves MIB in 32 MiB blobs)");
    let bytes = mib * MIB;
    let srv = start_server();
    let addr = srv.1.strip_prefix("tcp://").unwrap().to_string();
    let (ctx, conn) = connect(&srv.1);

    let blob_n = 32 * MIB;
    let blob_times = bytes / blob_n;
    type Row<'a> = (String, Box<dyn FnMut() -> Duration + 'a>);
    let rows: Vec<Row> = vec![
        (format!("stock `blob(32 MiB)` to a raw client, {blob_times} in a row"), Box::new(|| stock_blob(&addr, blob_n, blob_times))),
        ("streamed download, 1 MiB items (joint client)".into(), Box::new(|| download(&ctx, conn, bytes, MIB))),
        ("streamed download, 64 KiB items (joint client)".into(), Box::new(|| download(&ctx, conn, bytes, 64 << 10))),
        ("streamed upload, 1 MiB items (joint client, `send`)".into(), Box::new(|| upload(&ctx, conn, bytes, MIB, false))),
        ("streamed upload, 64 KiB items (joint client, `send`)".into(), Box::new(|| upload(&ctx, conn, bytes, 64 << 10, false))),
        ("streamed upload, 1 MiB items (joint client, `send_bin_shared`)".into(), Box::new(|| upload(&ctx, conn, bytes, MIB, true))),
    ];
    // BULK_ONLY=WORD runs only the rows whose name contains WORD (for profiling one).
    let only = std::env::var("BULK_ONLY").ok();
    let skip = |name: &str| only.as_deref().is_some_and(|w| !name.contains(w));
    println!("| transfer ({mib} MiB; medians of {runs} runs, each after a run of its baseline) | GB/s | baseline GB/s | × baseline |");
    println!("|---|---:|---:|---:|");
    let raw = paired(runs, bytes, || raw_tcp(bytes), || raw_tcp(bytes));
    println!("| raw TCP, 1 MiB writes and reads (the baseline, against itself) | {:.2} | {:.2} | {:.2} |", raw.gbps, raw.base_gbps, raw.ratio);
    for (name, mut measure) in rows {
        if skip(&name) {
            continue;
        }
        let p = paired(runs, bytes, || raw_tcp(bytes), &mut measure);
        println!("| {name} | {:.2} | {:.2} | {:.2} |", p.gbps, p.base_gbps, p.ratio);
    }
    // The command-line client writes a file: its baseline is a raw transfer that does too.
    let name = "`joint call --stream --output FILE`, 1 MiB items (baseline: raw TCP written to a file)";
    if !skip(name) {
        let p = paired(runs, bytes, || raw_tcp_to_file(bytes), || cli_download(&srv.1, bytes, MIB));
        println!("| {name} | {:.2} | {:.2} | {:.2} |", p.gbps, p.base_gbps, p.ratio);
    }
}
