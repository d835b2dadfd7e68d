//! TLS beside plaintext against one `joint serve` listening on both, in one run (so both see
//! the same machine): bulk throughput (a streamed download and upload, each TLS run right
//! after a plaintext one, and the ratio of each pair) and the time of a new connection plus
//! its first call (full TLS handshake each time: no session resumption, a new context per
//! connection). Prints Markdown tables for docs/BENCHMARKS.md.
//!
//! Usage: `cargo run --release -p joint-cli --example tls -- [MIB] [RUNS] [HANDSHAKES]`
//! (default 256 MiB per transfer, 5 runs, 200 connections per run). `joint serve` is the
//! binary next to this one (target/release/joint: `cargo build --release -p joint-cli`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use joint::reactor::{Config, ConnId, Context, TlsConfig};

#[path = "common/transfer.rs"]
mod transfer;

use transfer::{context, download, median, upload};

const MIB: usize = 1 << 20;

#[path = "../tests/support/certs.rs"]
mod certs;

/// `joint serve` and its certificates (held only to be removed with it).
struct Server(Child, Vec<String>, #[allow(dead_code)] certs::TlsFiles);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `joint serve` on tcp:// and tls:// (a certificate for 127.0.0.1 signed by a test CA, ECDSA
/// P-256); returns it and the CA's PEM file.
fn start_server() -> (Server, String) {
    let files = certs::TlsFiles::new("bench-tls");
    let ca = files.path("ca.pem");
    let exe = std::env::current_exe().unwrap();
    let joint = exe.parent().and_then(|p| p.parent()).unwrap().join("joint");
    let (cert, key) = (files.path("server.pem"), files.path("server-key.pem"));
    let mut child = Command::new(joint)
        .args(["serve", "--listen", "tcp://127.0.0.1:0", "--listen", "tls://127.0.0.1:0", "--memory-budget-mib", "1024", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run target/release/joint (cargo build --release -p joint-cli)");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut uris = Vec::new();
    while uris.len() < 2 {
        let line = lines.next().expect("joint serve said nothing").unwrap();
        if let Some(u) = line.strip_prefix("listening on ") {
            uris.push(u.trim().to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Server(child, uris, files), ca)
}

fn open(ctx: &Context, uri: &str, tls: &TlsConfig) -> ConnId {
    let conn = if uri.starts_with("tls://") { ctx.connect_tls(uri, tls) } else { ctx.connect(uri) }.unwrap();
    let r = ctx.call_blocking(conn, b"echo", &[0x91, 0x01], Some(Duration::from_secs(5)));
    assert!(r.is_ok(), "first call on {uri} failed");
    conn
}

fn range(v: &[f64], digits: usize) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.digits$}–{hi:.digits$}")
}

/// `n` new connections, one after another, each with its own context: connect (TCP, and the
/// full TLS handshake over tls://) and one `echo` call answered. Sorted durations.
fn connections(uri: &str, tls: &TlsConfig, n: usize) -> Vec<Duration> {
    let mut took: Vec<Duration> = (0..n)
        .map(|_| {
            let ctx = Context::new(Config::default()).unwrap();
            let t0 = Instant::now();
            let conn = open(&ctx, uri, tls);
            let d = t0.elapsed();
            ctx.close(conn).unwrap();
            d
        })
        .collect();
    took.sort();
    took
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mib: usize = args.first().map_or(256, |a| a.parse().expect("MIB"));
    let runs: usize = args.get(1).map_or(5, |a| a.parse().expect("RUNS"));
    let handshakes: usize = args.get(2).map_or(200, |a| a.parse().expect("HANDSHAKES"));
    let bytes = mib * MIB;
    let (srv, ca) = start_server();
    let (tcp_uri, tls_uri) = (srv.1[0].clone(), srv.1[1].clone());
    let mut tls = TlsConfig::new();
    tls.set_ca_file(&ca).unwrap();

    let ctx = context();
    let (plain, secure) = (open(&ctx, &tcp_uri, &tls), open(&ctx, &tls_uri, &tls));
    let gbps = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e9;
    println!("| transfer ({mib} MiB; {runs} runs, each TLS run right after a plaintext one) | TLS GB/s: median (range) | plaintext GB/s: median (range) | TLS × plaintext: median (range of the pairs) |");
    println!("|---|---:|---:|---:|");
    type Measure<'a> = Box<dyn Fn(ConnId) -> Duration + 'a>;
    let rows: Vec<(&str, Measure)> = vec![
        ("streamed download, 1 MiB items (joint client)", Box::new(|c| download(&ctx, c, bytes, MIB))),
        ("streamed upload, 1 MiB items (joint client, `send_bin_shared`)", Box::new(|c| upload(&ctx, c, bytes, MIB, true))),
    ];
    for (name, measure) in rows {
        let pairs: Vec<(f64, f64)> = (0..runs).map(|_| (gbps(measure(plain)), gbps(measure(secure)))).collect();
        let (p, t): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        let ratios: Vec<f64> = pairs.iter().map(|(p, t)| t / p).collect();
        println!(
            "| {name} | **{:.2}** ({}) | **{:.2}** ({}) | **{:.2}** ({}) |",
            median(t.clone()),
            range(&t, 2),
            median(p.clone()),
            range(&p, 2),
            median(ratios.clone()),
            range(&ratios, 2)
        );
    }
    drop(ctx);

    println!();
    println!("| new connection + first call ({runs} runs of {handshakes}, one at a time) | median (ms): median of the runs (range) | p99 (ms): median of the runs (range) |");
    println!("|---|---:|---:|");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (name, uri) in [("tls:// (full TLS 1.3 handshake, ECDSA P-256 certificate, verified)", &tls_uri), ("tcp://", &tcp_uri)] {
        let (mut p50, mut p99) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let took = connections(uri, &tls, handshakes);
            p50.push(ms(took[(took.len() - 1) / 2]));
            p99.push(ms(took[((took.len() - 1) as f64 * 0.99) as usize]));
        }
        println!("| {name} | **{:.2}** ({}) | **{:.2}** ({}) |", median(p50.clone()), range(&p50, 2), median(p99.clone()), range(&p99, 2));
    }
}
