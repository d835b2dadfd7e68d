//! The limits of a context, driven past each by a raw peer: the memory budget (answers that
//! do not fit, connections stopped while it is spent and read again when memory comes back),
//! the output high-water mark, the linger after a peer closes, the idle timeout, the listen
//! backlog, UDP peers evicted least recently heard first, and fragment headers that claim
//! megabytes they never send.

#[macro_use]
mod support;

use std::cell::{Cell, RefCell};
use std::net::{TcpStream, UdpSocket};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use joint::codec;
use joint::protocol::rpc_error;
use joint::reactor::{Config, ConnEvent, Context, Request, StreamState};
use support::*;

const MIB: usize = 1 << 20;

fn notification(method: &str, params: &Val) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_notification(&mut out, method.as_bytes(), &params.encode());
    out
}

/// `big [n]` answers n bytes of bin (copied from a buffer the handler built).
fn big_handler(ctx: &Context) {
    ctx.register(
        b"big",
        Rc::new(|_ctx, req: Request| {
            let n = codec::uint_value(&req.args()[1..]).unwrap() as usize;
            let mut out = Vec::new();
            codec::write_bin(&mut out, &vec![0x5a; n]);
            let _ = req.reply(&out);
        }),
    );
}

#[test]
fn an_answer_that_does_not_fit_the_budget_is_an_error_and_the_connection_goes_on() {
    let srv = ServerThread::start_with(
        || Config { memory_budget: 2 * MIB, ..Config::default() },
        |ctx| {
            standard_handlers(ctx);
            big_handler(ctx);
        },
    );
    let mut c = srv.client("budget");
    let r = c.call(1, "big", &arr![int(4 * MIB as i128)]);
    assert_eq!(r.code(), rpc_error::RESOURCE_EXHAUSTED, "{}", r.message());
    assert!(r.message().contains("memory budget"), "{}", r.message());
    // Within the budget it works, on the same connection.
    let r = c.call(2, "big", &arr![int(MIB as i128)]);
    assert!(r.is_ok());
    c.check_add(3, 1);
    srv.stop();
}

/// Requests whose handlers keep them (and their 200 KiB params) hold budget: once it is
/// spent, the connection is not read any further — the rest of its pipelined requests wait
/// in the socket — and when the held requests are answered it is read again and every
/// request is served. A second connection with small calls is served throughout.
#[test]
fn a_spent_budget_stops_the_connection_holding_it_until_memory_comes_back() {
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let srv = ServerThread::start_with(
        || Config { memory_budget: 2 * MIB, ..Config::default() },
        move |ctx| {
            let stats = standard_handlers(ctx);
            let s = stats.clone();
            ctx.register(
                b"keep",
                Rc::new(move |_ctx, req| {
                    h.fetch_add(1, Ordering::SeqCst);
                    s.borrow_mut().held.push(req);
                }),
            );
        },
    );
    let mut evil = srv.client("holder");
    let payload = Val::Bin(vec![1u8; 200 << 10]);
    let batch: Vec<u8> = (0..40).flat_map(|i| request(i, "keep", &arr![payload.clone()])).collect();
    let sender = {
        let mut s = evil.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            s.write_all(&batch).unwrap();
        })
    };
    let mut small = srv.client("small");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut k = 0;
    while Instant::now() < deadline {
        k += 1;
        small.check_add(k, k as i64);
    }
    let held = handled.load(Ordering::SeqCst);
    // 2 MiB of budget holds at most ten 200 KiB requests, fewer while the read buffer holds
    // part of the budget too.
    assert!((2..=11).contains(&held), "{held} requests held with a 2 MiB budget");
    // Answer them: memory comes back, the connection is read again; repeat until all 40
    // are served.
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered < 40 {
        assert!(Instant::now() < deadline, "only {answered} of 40 answered");
        small.send(&notification("release", &arr![]));
        while let Recv::Msg(m) = evil.recv(Duration::from_millis(200)) {
            assert!(Reply::parse(&m).is_ok());
            answered += 1;
        }
    }
    sender.join().unwrap();
    assert_eq!(handled.load(Ordering::SeqCst), 40);
    srv.stop();
}

/// A client that sends many requests for 64 KiB answers without reading: the server stops
/// reading it at the high-water mark, then, once the client reads, sends every answer in
/// order — nothing is lost while it was held back.
#[test]
fn a_peer_held_back_by_its_output_gets_every_answer_once_it_reads() {
    let srv = ServerThread::start_with(
        || Config { output_high_water: 256 << 10, ..Config::default() },
        |ctx| {
            standard_handlers(ctx);
            big_handler(ctx);
        },
    );
    let mut c = srv.client("slow reader");
    let n = 200;
    let batch: Vec<u8> = (0..n).flat_map(|i| request(i, "big", &arr![int(64 << 10)])).collect();
    let sender = {
        let mut s = c.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            s.write_all(&batch).unwrap();
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..n {
        let r = c.expect_reply();
        assert_eq!(r.msgid, i, "answers in order");
        assert!(r.is_ok());
    }
    sender.join().unwrap();
    srv.stop();
}

/// Requests of a peer that closed its end may be answered within the linger; after it the
/// connection is freed and the requests still held see it closed (answering does nothing).
#[test]
fn the_linger_cancels_requests_of_a_peer_that_left() {
    type Held = Rc<RefCell<Vec<Request>>>;
    let ctx = Context::new(Config { linger: Duration::from_millis(150), ..Config::default() }).unwrap();
    let l = ctx.listen("tcp://127.0.0.1:0").unwrap();
    let addr = ctx.listener_uri(l).unwrap().strip_prefix("tcp://").unwrap().to_string();
    let held: Held = Rc::default();
    let h = held.clone();
    ctx.register(b"hold", Rc::new(move |_ctx, req| h.borrow_mut().push(req)));
    let closed: Rc<RefCell<Vec<(Instant, String)>>> = Rc::default();
    let c2 = closed.clone();
    ctx.set_conn_event_handler(Some(Rc::new(move |_ctx, _id, e: ConnEvent<'_>| {
        if let ConnEvent::Closed { reason, .. } = e {
            c2.borrow_mut().push((Instant::now(), reason.to_string()));
        }
    })));
    let mut peer = RawClient::connect(&addr, "leaver");
    peer.send(&request(1, "hold", &arr![]));
    peer.send(&request(2, "hold", &arr![]));
    drive_until(&ctx, Duration::from_secs(5), "both requests", || held.borrow().len() == 2);
    // One is answered within the linger: the peer still gets it.
    peer.shutdown_write();
    let left = Instant::now();
    let first = held.borrow_mut().remove(0);
    first.reply(codec::NIL).unwrap();
    drive_until(&ctx, Duration::from_secs(5), "the close after the linger", || !closed.borrow().is_empty());
    let (at, reason) = closed.borrow()[0].clone();
    let waited = at - left;
    assert!(waited >= Duration::from_millis(140) && waited < Duration::from_secs(2), "closed {waited:?} after the peer left");
    assert!(reason.contains("linger"), "{reason}");
    let answers = peer.expect_closed(Duration::from_secs(2));
    assert_eq!(answers.len(), 1, "the answer given within the linger arrives");
    let second = held.borrow_mut().remove(0);
    assert_eq!(second.state(), StreamState::Closed);
    assert!(second.is_conn_closed());
    second.reply(codec::NIL).unwrap(); // does nothing, harmlessly
    ctx.process().unwrap();
}

#[test]
fn a_zero_linger_cancels_at_once() {
    let ctx = Context::new(Config { linger: Duration::ZERO, ..Config::default() }).unwrap();
    let l = ctx.listen("tcp://127.0.0.1:0").unwrap();
    let addr = ctx.listener_uri(l).unwrap().strip_prefix("tcp://").unwrap().to_string();
    let held: Rc<RefCell<Vec<Request>>> = Rc::default();
    let h = held.clone();
    ctx.register(b"hold", Rc::new(move |_ctx, req| h.borrow_mut().push(req)));
    let mut peer = RawClient::connect(&addr, "leaver");
    peer.send(&request(1, "hold", &arr![]));
    drive_until(&ctx, Duration::from_secs(5), "the request", || held.borrow().len() == 1);
    peer.shutdown_write();
    drive_until(&ctx, Duration::from_secs(2), "the cancel", || held.borrow()[0].is_conn_closed());
    peer.expect_closed(Duration::from_secs(2));
}

/// With an idle timeout, a quiet connection is closed after it; one with a call in progress
/// is not, however long the call takes.
#[test]
fn idle_connections_close_busy_ones_do_not() {
    let ctx = Context::new(Config { idle_timeout: Some(Duration::from_millis(200)), ..Config::default() }).unwrap();
    let l = ctx.listen("tcp://127.0.0.1:0").unwrap();
    let addr = ctx.listener_uri(l).unwrap().strip_prefix("tcp://").unwrap().to_string();
    let held: Rc<RefCell<Vec<Request>>> = Rc::default();
    let h = held.clone();
    ctx.register(b"hold", Rc::new(move |_ctx, req| h.borrow_mut().push(req)));
    let closes = Rc::new(Cell::new(0));
    let c2 = closes.clone();
    ctx.set_conn_event_handler(Some(Rc::new(move |_ctx, _id, e: ConnEvent<'_>| {
        if matches!(e, ConnEvent::Closed { .. }) {
            c2.set(c2.get() + 1);
        }
    })));
    let mut quiet = RawClient::connect(&addr, "quiet");
    let mut busy = RawClient::connect(&addr, "busy");
    busy.send(&request(1, "hold", &arr![]));
    let start = Instant::now();
    drive_until(&ctx, Duration::from_secs(3), "the quiet one closed", || closes.get() == 1);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(190), "closed after {took:?}");
    quiet.expect_closed(Duration::from_secs(1));
    // The busy one stays for as long as its request is held.
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        ctx.wait(Some(Duration::from_millis(20))).unwrap();
    }
    assert_eq!(closes.get(), 1, "a connection with a request in progress was closed as idle");
    held.borrow_mut().remove(0).reply(codec::NIL).unwrap();
    drive_until(&ctx, Duration::from_secs(1), "the answer out", || {
        ctx.process().unwrap();
        true
    });
    assert!(busy.expect_reply().is_ok());
}

/// The listen backlog (default 1024): 600 clients connecting at once to a context that is not
/// accepting yet all complete their handshakes without waiting for SYN retransmissions.
#[test]
fn a_burst_of_connects_fits_the_listen_backlog() {
    let ctx = Context::new(Config::default()).unwrap();
    let l = ctx.listen("tcp://127.0.0.1:0").unwrap();
    let addr: std::net::SocketAddr = ctx.listener_uri(l).unwrap().strip_prefix("tcp://").unwrap().parse().unwrap();
    let start = Instant::now();
    let conns: Vec<TcpStream> = (0..600).map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap()).collect();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(900), "600 connects took {took:?}: SYNs were dropped");
    drop(conns);
}

/// Beyond the most UDP peers a context keeps (4096), the least recently heard is forgotten:
/// new peers are always answered, however many addresses came before.
#[test]
fn udp_peers_beyond_the_table_evict_the_least_recent() {
    let ctx = Context::new(Config::default()).unwrap();
    let l = ctx.listen("udp://127.0.0.1:0").unwrap();
    let addr = ctx.listener_uri(l).unwrap().strip_prefix("udp://").unwrap().to_string();
    ctx.register(
        b"echo",
        Rc::new(|_ctx, req: Request| {
            let a = req.args()[1..].to_vec();
            let _ = req.reply(&a);
        }),
    );
    let events = Rc::new(Cell::new((0usize, 0usize)));
    let e2 = events.clone();
    ctx.set_conn_event_handler(Some(Rc::new(move |_ctx, _id, e: ConnEvent<'_>| {
        let (o, c) = e2.get();
        e2.set(if matches!(e, ConnEvent::Open) { (o + 1, c) } else { (o, c + 1) });
    })));
    const PEERS: usize = 4096 + 200;
    // Every client socket stays open, so each is a new address (no port is reused).
    raise_fd_limit(PEERS as u64 + 512);
    let msg = request(1, "echo", &arr![int(5)]);
    let mut answered = 0;
    let mut all = Vec::new();
    for batch in (0..PEERS).collect::<Vec<_>>().chunks(100) {
        let socks: Vec<UdpSocket> = batch
            .iter()
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.send_to(&msg, &addr).unwrap();
                s
            })
            .collect();
        for s in &socks {
            s.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
            let mut buf = [0u8; 256];
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                ctx.process().unwrap();
                if s.recv(&mut buf).is_ok() {
                    answered += 1;
                    break;
                }
                assert!(Instant::now() < deadline, "peer {answered} was not answered");
            }
        }
        all.extend(socks);
    }
    ctx.process().unwrap();
    let (opens, closes) = events.get();
    assert_eq!(answered, PEERS);
    assert_eq!(opens, PEERS);
    assert!(closes >= PEERS - 4096, "{closes} peers forgotten for {PEERS} addresses");
}

fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            assert!(lim.rlim_max >= want, "RLIMIT_NOFILE hard limit {} is below the {want} this test needs", lim.rlim_max);
            lim.rlim_cur = want;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
}

fn own_rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() << 10
}

/// A raw connection that negotiated the extension, then sent a fragment header claiming
/// `len` bytes and one byte of them; a moment later, one more byte.
fn forged_fragment(srv: &Context, addr: &str, len: usize) -> TcpStream {
    use joint::protocol::{Decoded, ExtMode, Limits, Session};
    use std::io::{Read, Write};
    let mut s: Session<u32> = Session::new(Limits::default());
    s.offer_extension();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_nonblocking(true).unwrap();
    tcp.set_nodelay(true).unwrap();
    let hello = s.output().to_vec();
    s.consume_output(hello.len());
    tcp.write_all(&hello).unwrap();
    let mut inbuf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.extension() != ExtMode::On {
        assert!(Instant::now() < deadline, "the extension was not agreed");
        srv.process().unwrap();
        let mut b = [0u8; 4096];
        match tcp.read(&mut b) {
            Ok(n) => inbuf.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        while let Decoded::Consumed { consumed, .. } = s.decode_next(&inbuf) {
            inbuf.drain(..consumed);
        }
    }
    let mut wire = Vec::new();
    codec::encode_fragment_header(&mut wire, 1, len as u64, len);
    wire.push(0x91);
    tcp.write_all(&wire).unwrap();
    for _ in 0..20 {
        srv.process().unwrap();
    }
    tcp.write_all(&[0x00]).unwrap();
    for _ in 0..20 {
        srv.process().unwrap();
    }
    tcp
}

#[test]
fn fragment_headers_claiming_megabytes_make_the_server_hold_nothing() {
    let srv = Context::new(Config::default()).unwrap();
    let l = srv.listen("tcp://127.0.0.1:0").unwrap();
    let uri = srv.listener_uri(l).unwrap();
    let addr = uri.strip_prefix("tcp://").unwrap().to_string();
    srv.register(b"echo", Rc::new(|_ctx, req: Request| req.reply(&[0x01]).unwrap()));
    let before = own_rss();
    // 4 × 60 MiB, then 8 MiB halving down to 32 KiB: about 55 bytes each.
    let mut sizes = vec![60 * MIB; 4];
    let mut k = 8 * MIB;
    while k >= 32 << 10 {
        sizes.push(k);
        k /= 2;
    }
    let held: Vec<TcpStream> = sizes.iter().map(|&len| forged_fragment(&srv, &addr, len)).collect();
    let grown = own_rss().saturating_sub(before);
    // An honest client's 256 KiB call still goes through.
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let mut params = vec![0x91];
    codec::write_bin(&mut params, &vec![7u8; 256 << 10]);
    let done = Rc::new(RefCell::new(None));
    let d = done.clone();
    cli.call(conn, b"echo", &params, None, Box::new(move |_c, r| *d.borrow_mut() = Some(r.outcome.is_ok()))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while done.borrow().is_none() && Instant::now() < deadline {
        srv.process().unwrap();
        cli.wait(Some(Duration::from_millis(1))).unwrap();
    }
    assert!(grown < 16 * MIB, "{} connections of ~55 bytes each made the process grow by {} MiB", held.len(), grown >> 20);
    assert_eq!(*done.borrow(), Some(true), "an honest 256 KiB call did not complete in 5 s");
}
