//! Small-call latency while a 256 MiB result is in transfer on the same connection, with the
//! joint extension (the result goes in 64 KiB fragments, small answers slip in between) and in
//! stock mode (the result is one message, small answers wait behind it).
//!
//! `cargo run --release --example big_transfer_latency [MiB] [rounds]` prints a markdown
//! table. The server runs on its own thread with its own context; the client sends a small
//! call every 2 ms from the moment the big result starts to go out until it has arrived.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use joint::codec;
use joint::reactor::{Config, Context, Request};

fn config(extension: bool, mib: usize) -> Config {
    let mut c = Config::default();
    c.limits.frame.max_message_size = (mib + 1) << 20;
    // The reply and its copy on the way out both count against the memory budget.
    c.memory_budget = ((mib + 1) << 20) * 4;
    c.limits.ext.enabled = extension;
    c
}

/// Start a server thread; returns its URI and a receiver told when each big result is queued.
fn server(extension: bool, mib: usize) -> (String, mpsc::Receiver<Instant>, mpsc::Sender<()>) {
    let (uri_tx, uri_rx) = mpsc::channel();
    let (sent_tx, sent_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let ctx = Context::new(config(extension, mib)).unwrap();
        let l = ctx.listen("tcp://127.0.0.1:0").unwrap();
        uri_tx.send(ctx.listener_uri(l).unwrap()).unwrap();
        // The result is built once, so the measurement is the transfer, not its making.
        let mut result = Vec::with_capacity((mib << 20) + 5);
        codec::write_bin(&mut result, &vec![0x5a; mib << 20]);
        let result = Rc::new(result);
        ctx.register(
            b"big",
            Rc::new(move |_ctx, req: Request| {
                req.reply(&result).unwrap();
                let _ = sent_tx.send(Instant::now());
            }),
        );
        ctx.register(
            b"echo",
            Rc::new(|_ctx, req: Request| {
                let a = req.args()[1..].to_vec();
                req.reply(&a).unwrap();
            }),
        );
        while stop_rx.try_recv().is_err() {
            ctx.wait(Some(Duration::from_millis(10))).unwrap();
        }
    });
    (uri_rx.recv().unwrap(), sent_rx, stop_tx)
}

struct Run {
    latencies: Vec<Duration>,
    transfer: Duration,
}

fn run(extension: bool, mib: usize) -> Run {
    let (uri, sent, stop) = server(extension, mib);
    let cli = Context::new(config(extension, mib)).unwrap();
    let conn = cli.connect(&uri).unwrap();
    // Warm up (and negotiate).
    let _ = cli.call_blocking(conn, b"echo", &[0x91, 0x01], Some(Duration::from_secs(10)));
    let big_done = Rc::new(RefCell::new(None::<Instant>));
    let b = big_done.clone();
    cli.call(
        conn,
        b"big",
        &[0x90],
        None,
        Box::new(move |_c, r| {
            assert!(r.outcome.is_ok(), "big call failed");
            *b.borrow_mut() = Some(Instant::now());
        }),
    )
    .unwrap();
    let started = loop {
        cli.wait(Some(Duration::from_millis(1))).unwrap();
        if let Ok(t) = sent.try_recv() {
            break t;
        }
    };
    let latencies: Rc<RefCell<Vec<Duration>>> = Rc::default();
    let mut last = Instant::now() - Duration::from_secs(1);
    while big_done.borrow().is_none() {
        if last.elapsed() >= Duration::from_millis(2) {
            let l = latencies.clone();
            let t0 = Instant::now();
            // Only calls issued during the transfer count.
            let done = big_done.clone();
            cli.call(
                conn,
                b"echo",
                &[0x91, 0x07],
                None,
                Box::new(move |_c, r| {
                    // Calls still pending when the run ends complete as cancelled: not counted.
                    if r.outcome.is_ok() && done.borrow().is_none_or(|d| d > t0) {
                        l.borrow_mut().push(t0.elapsed());
                    }
                }),
            )
            .unwrap();
            last = Instant::now();
        }
        cli.wait(Some(Duration::from_millis(1))).unwrap();
    }
    let transfer = big_done.borrow().unwrap() - started;
    // Let the last small answers arrive.
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        cli.wait(Some(Duration::from_millis(5))).unwrap();
    }
    let _ = stop.send(());
    let mut latencies = latencies.borrow().clone();
    latencies.sort();
    Run { latencies, transfer }
}

fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    println!("| mode | {mib} MiB transfer (median) | small calls during it | small-call p50 | small-call p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, ext) in [("joint extension (64 KiB fragments)", true), ("stock MessagePack-RPC", false)] {
        let mut all = Vec::new();
        let mut transfers = Vec::new();
        for _ in 0..rounds {
            let r = run(ext, mib);
            all.extend(r.latencies);
            transfers.push(r.transfer);
        }
        all.sort();
        transfers.sort();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            ms(transfers[transfers.len() / 2]),
            all.len(),
            ms(pct(&all, 0.5)),
            ms(pct(&all, 0.99)),
            ms(all.last().copied().unwrap_or_default())
        );
    }
}
