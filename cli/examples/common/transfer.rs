//! Streamed transfers and medians shared by the bulk and tls examples (included with
//! `#[path]`; a directory, so Cargo does not take it for an example of its own).

use std::time::{Duration, Instant};

use joint::codec;
use joint::reactor::{CallEvent, CallOptions, Config, ConnId, Context, SendStatus};

/// A client context whose budget does not stand in the way of the transfer being measured.
pub fn context() -> Context {
    Context::new(Config { memory_budget: 1 << 30, ..Config::default() }).unwrap()
}

/// `download(bytes, chunk)` streamed to a joint client that only counts the bytes.
pub fn download(ctx: &Context, conn: ConnId, bytes: usize, chunk: usize) -> Duration {
    let got = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let done = std::rc::Rc::new(std::cell::Cell::new(false));
    let (g, d) = (got.clone(), done.clone());
    let mut params = vec![0x92];
    codec::write_uint(&mut params, bytes as u64);
    codec::write_uint(&mut params, chunk as u64);
    let opts = CallOptions {
        on_event: Some(Box::new(move |_ctx, _call, e: CallEvent<'_>| {
            if let CallEvent::Item(item) = e {
                g.set(g.get() + item.len());
            }
        })),
        ..Default::default()
    };
    let start = Instant::now();
    ctx.call_with(
        conn,
        b"download",
        &params,
        opts,
        Box::new(move |_ctx, r| {
            assert!(r.outcome.is_ok(), "download failed");
            d.set(true);
        }),
    )
    .unwrap();
    while !done.get() {
        ctx.wait(Some(Duration::from_millis(100))).unwrap();
    }
    let took = start.elapsed();
    assert!(got.get() >= bytes, "{} of {bytes} bytes", got.get());
    took
}

/// `upload()` fed `bytes` in `chunk`-byte bin items as fast as credit allows: copied by
/// `Context::send`, or written from one shared buffer by `Context::send_bin_shared` (as
/// `download` writes its items).
pub fn upload(ctx: &Context, conn: ConnId, bytes: usize, chunk: usize, shared: bool) -> Duration {
    let done = std::rc::Rc::new(std::cell::Cell::new(false));
    let d = done.clone();
    let start = Instant::now();
    let call = ctx
        .call_with(
            conn,
            b"upload",
            &[0x90],
            CallOptions { client_stream: true, ..Default::default() },
            Box::new(move |_ctx, r| {
                assert!(r.outcome.is_ok(), "upload failed");
                d.set(true);
            }),
        )
        .unwrap();
    let mut item = Vec::new();
    codec::write_bin(&mut item, &vec![0x33u8; chunk]);
    let data = std::sync::Arc::new(vec![0x33u8; chunk]);
    let mut sent = 0;
    while sent < bytes {
        let status = if shared { ctx.send_bin_shared(call, data.clone(), 0..chunk) } else { ctx.send(call, &item) };
        match status.unwrap() {
            SendStatus::Sent => sent += chunk,
            SendStatus::WouldBlock => ctx.wait(Some(Duration::from_millis(100))).unwrap(),
        }
    }
    ctx.end_input(call).unwrap();
    while !done.get() {
        ctx.wait(Some(Duration::from_millis(100))).unwrap();
    }
    start.elapsed()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
