//! Reconnecting connections at their edges: waiting calls withdrawn by a timeout or a
//! cancel are never sent; a server that accepts and closes at once does not reset the
//! backoff; give_up_after bounds an attempt in flight; failed attempts leave no fds; waiting
//! calls are bounded by the memory budget; served streams hear the end of a dropped
//! connection; calls made while the peer lingers wait. (tests/reconnect.rs has the basics.)

#[macro_use]
mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use joint::error::ErrorKind;
use joint::reactor::{Config, ConnEvent, Context, Reconnect, Request, TlsConfig};
use support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

type Events = Rc<RefCell<Vec<(Instant, String)>>>;

fn record(ctx: &Context) -> Events {
    let events: Events = Rc::default();
    let ev = events.clone();
    ctx.set_conn_event_handler(Some(Rc::new(move |_ctx: &Context, _id, e: ConnEvent<'_>| {
        let text = match e {
            ConnEvent::Open => "open".to_string(),
            ConnEvent::Connecting { endpoint } => format!("connecting {endpoint}"),
            ConnEvent::Down { kind, reason } => format!("down {kind:?} {reason}"),
            ConnEvent::Closed { kind, reason } => format!("closed {kind:?} {reason}"),
        };
        ev.borrow_mut().push((Instant::now(), text));
    })));
    events
}

fn count(events: &Events, prefix: &str) -> usize {
    events.borrow().iter().filter(|(_, e)| e.starts_with(prefix)).count()
}

fn drive_for(client: &Context, servers: &[&Context], d: Duration, mut stop: impl FnMut() -> bool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop() {
        for s in servers {
            s.process().unwrap();
        }
        client.wait(Some(Duration::from_millis(2))).unwrap();
    }
}

fn echo_server(port: u16) -> (Context, Rc<RefCell<Vec<Val>>>) {
    let ctx = Context::new(Config::default()).unwrap();
    ctx.listen(&format!("tcp://127.0.0.1:{port}")).unwrap();
    let echoes: Rc<RefCell<Vec<Val>>> = Rc::default();
    let e = echoes.clone();
    ctx.register(
        b"echo",
        Rc::new(move |_ctx: &Context, r: Request| {
            let args = r.args().to_vec();
            e.borrow_mut().push(Val::decode(&args));
            r.reply(&args).unwrap();
        }),
    );
    (ctx, echoes)
}

fn quick(queue_limit: Option<usize>) -> Reconnect {
    Reconnect { initial_delay: Duration::from_millis(20), max_delay: Duration::from_millis(100), queue_limit, ..Reconnect::default() }
}

/// Queued calls that time out or are cancelled while down free their place in the queue and
/// are never sent: the server runs only the call still waiting.
#[test]
fn queued_calls_that_time_out_or_are_cancelled_are_never_sent() {
    let port = free_port();
    let uri = format!("tcp://127.0.0.1:{port}");
    let client = Context::new(Config::default()).unwrap();
    let _events = record(&client);
    let conn = client.connect_reconnecting(&[&uri], None, quick(Some(2))).unwrap();
    let results = Results::default();
    client.call(conn, b"echo", &arr![int(1)].encode(), Some(Duration::from_millis(50)), results.done(1)).unwrap();
    let c2 = client.call(conn, b"echo", &arr![int(2)].encode(), None, results.done(2)).unwrap();
    drive_for(&client, &[], Duration::from_secs(2), || results.len() == 1);
    assert!(client.cancel(c2));
    drive_for(&client, &[], Duration::from_secs(2), || results.len() == 2);
    // Nothing waits any more, yet:
    let third = client.call(conn, b"echo", &arr![int(3)].encode(), None, results.done(3));
    let (srv, echoes) = echo_server(port);
    drive_for(&client, &[&srv], Duration::from_secs(3), || client.is_up(conn) && !echoes.borrow().is_empty());
    drive_for(&client, &[&srv], Duration::from_millis(300), || false);
    assert!(third.is_ok(), "a call was refused though nothing waits: {:?}", third.err());
    assert_eq!(echoes.borrow().len(), 1, "calls that already completed (timeout/cancel) were run by the server: {:?}", echoes.borrow());
}

/// A server that accepts and closes at once does not count as healthy: the backoff grows and
/// give_up_after fires.
#[test]
fn a_server_that_accepts_and_closes_at_once_does_not_reset_the_backoff() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let uri = format!("tcp://127.0.0.1:{port}");
    let client = Context::new(Config::default()).unwrap();
    let events = record(&client);
    let policy = Reconnect {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(5),
        give_up_after: Some(Duration::from_millis(300)),
        ..Reconnect::default()
    };
    let _conn = client.connect_reconnecting(&[&uri], None, policy).unwrap();
    drive_for(&client, &[], Duration::from_millis(1500), || count(&events, "closed") > 0);
    let n = count(&events, "connecting");
    let ev = events.borrow();
    drop(ev);
    assert_eq!(count(&events, "closed"), 1, "give_up_after (300 ms) never fired");
    assert!(n < 10, "backoff did not grow: {n} attempts in 1.5 s");
}

fn make_ca_pem() -> String {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "ca");
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

/// give_up_after bounds an attempt in flight (a TLS server that accepts TCP and never
/// answers the handshake): the final Closed comes at the give-up time, not the connect
/// timeout.
#[test]
fn give_up_bounds_the_attempt_in_flight() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let mut tls = TlsConfig::new();
    tls.set_ca_pem(make_ca_pem().as_bytes()).unwrap();
    let uri = format!("tls://127.0.0.1:{port}");
    let client = Context::new(Config { connect_timeout: Some(Duration::from_secs(3)), ..Config::default() }).unwrap();
    let events = record(&client);
    let policy = Reconnect { give_up_after: Some(Duration::from_millis(300)), ..quick(Some(4)) };
    let started = Instant::now();
    let _conn = client.connect_reconnecting(&[&uri], Some(&tls), policy).unwrap();
    drive_for(&client, &[], Duration::from_secs(6), || count(&events, "closed") > 0);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1000), "gave up after {took:?}, not ~300 ms");
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Many failed attempts (refused, and TLS handshake failures) leave no fds behind.
#[test]
fn failed_attempts_leave_no_fds() {
    let dead = format!("tcp://127.0.0.1:{}", free_port());
    // A "TLS" server that speaks garbage: the handshake fails.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for s in listener.incoming().flatten() {
            let mut s = s;
            let _ = s.write_all(b"HTTP/1.0 400 nope\r\n\r\n");
        }
    });
    let mut tls = TlsConfig::new();
    tls.set_ca_pem(make_ca_pem().as_bytes()).unwrap();
    let bad_tls = format!("tls://127.0.0.1:{port}");
    let client = Context::new(Config::default()).unwrap();
    let events = record(&client);
    let policy = Reconnect { initial_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2), ..Reconnect::default() };
    let before = open_fds();
    let conn = client.connect_reconnecting(&[&dead, &bad_tls], Some(&tls), policy).unwrap();
    drive_for(&client, &[], Duration::from_secs(10), || count(&events, "connecting") >= 600);
    let during = open_fds();
    client.close(conn).unwrap();
    drive_for(&client, &[], Duration::from_millis(100), || false);
    assert!(during <= before + 3, "fds grew from {before} to {during}");
}

/// Calls made while down are held within the memory budget: 8 × 8 MiB against a 16 MiB
/// budget are not all admitted.
#[test]
fn waiting_calls_are_bounded_by_the_memory_budget() {
    let client = Context::new(Config { memory_budget: 16 << 20, ..Config::default() }).unwrap();
    // A method on the client to look at its own budget from outside.
    let fits: Rc<Cell<Option<bool>>> = Rc::default();
    let f = fits.clone();
    client.register(
        b"fits",
        Rc::new(move |_ctx: &Context, r: Request| {
            f.set(Some(r.fits(1 << 20)));
            r.reply(&arr![].encode()).unwrap();
        }),
    );
    let lport = free_port();
    client.listen(&format!("tcp://127.0.0.1:{lport}")).unwrap();
    let events = record(&client);
    let dead = format!("tcp://127.0.0.1:{}", free_port());
    let conn = client.connect_reconnecting(&[&dead], None, quick(Some(64))).unwrap();
    let big = Val::Arr(vec![Val::Bin(vec![7u8; 8 << 20])]).encode();
    let results = Results::default();
    let mut admitted = 0;
    for tag in 0..8 {
        if client.call(conn, b"echo", &big, None, results.done(tag)).is_ok() {
            admitted += 1;
        }
    }
    drive_for(&client, &[], Duration::from_secs(3), || count(&events, "down") >= 1);
    let probe = Context::new(Config::default()).unwrap();
    let pc = probe.connect(&format!("tcp://127.0.0.1:{lport}")).unwrap();
    let r = Results::default();
    probe.call(pc, b"fits", &arr![].encode(), Some(Duration::from_secs(3)), r.done(0)).unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while r.len() == 0 && Instant::now() < until {
        client.process().unwrap();
        probe.wait(Some(Duration::from_millis(2))).unwrap();
    }
    assert!(admitted < 8, "64 MiB queued against a 16 MiB budget");
    let _ = ErrorKind::Limit;
}

/// An extended call the peer made into us (served with a loop-thread stream handler) hears
/// `Ended(Closed)` when a reconnecting connection drops, as on a plain one.
fn served_stream_end_seen(reconnecting: bool) -> Vec<String> {
    served_stream_end_seen_how(reconnecting, false)
}

fn served_stream_end_seen_how(reconnecting: bool, keepalive: bool) -> Vec<String> {
    use joint::reactor::{CallOptions, StreamEvent};
    let port = free_port();
    let uri = format!("tcp://127.0.0.1:{port}");
    let srv = Context::new(Config::default()).unwrap();
    srv.listen(&uri).unwrap();
    let accepted: Rc<Cell<Option<joint::reactor::ConnId>>> = Rc::default();
    let a = accepted.clone();
    srv.set_conn_event_handler(Some(Rc::new(move |_c: &Context, id, e: ConnEvent<'_>| {
        if matches!(e, ConnEvent::Open) {
            a.set(Some(id));
        }
    })));
    srv.register(b"hold", Rc::new(move |_ctx: &Context, r: Request| std::mem::forget(r)));
    let cfg = if keepalive {
        Config { keepalive_interval: Some(Duration::from_millis(100)), keepalive_timeout: Duration::from_millis(200), ..Config::default() }
    } else {
        Config::default()
    };
    let client = Context::new(cfg).unwrap();
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let held: Rc<RefCell<Vec<Request>>> = Rc::default();
    let (s, h) = (seen.clone(), held.clone());
    client.register(
        b"sink",
        Rc::new(move |ctx: &Context, r: Request| {
            s.borrow_mut().push(format!("started ext={}", r.ext().is_some()));
            let s2 = s.clone();
            let _ = ctx.set_stream_handler(
                r.conn(),
                r.msgid(),
                Some(Rc::new(move |_c: &Context, ev: &StreamEvent| {
                    if let StreamEvent::Ended(st) = ev {
                        s2.borrow_mut().push(format!("ended {st:?}"));
                    }
                })),
            );
            h.borrow_mut().push(r);
        }),
    );
    let conn = if reconnecting { client.connect_reconnecting(&[&uri], None, quick(Some(4))).unwrap() } else { client.connect(&uri).unwrap() };
    let r = Results::default();
    client.call(conn, b"nothing", &arr![].encode(), None, r.done(0)).unwrap();
    drive_for(&client, &[&srv], Duration::from_secs(3), || accepted.get().is_some_and(|id| srv.extension(id) == Some(joint::protocol::ExtMode::On)));
    let sid = accepted.get().unwrap();
    let sr = Results::default();
    srv.call_with(sid, b"sink", &arr![].encode(), CallOptions { client_stream: true, ..Default::default() }, sr.done(0)).unwrap();
    drive_for(&client, &[&srv], Duration::from_secs(3), || !seen.borrow().is_empty());
    if keepalive {
        let hr = Results::default();
        client.call(conn, b"hold", &arr![].encode(), None, hr.done(9)).unwrap();
        drive_for(&client, &[&srv], Duration::from_millis(100), || false);
        // The server stops running (as if SIGSTOPped): keepalive closes the connection.
        drive_for(&client, &[], Duration::from_secs(2), || hr.len() == 1 && seen.borrow().len() >= 2);
        seen.borrow_mut().push(format!("held call: {:?}", hr.get(9).err().map(|e| (e.0, e.2))));
        drop(srv);
    } else {
        drop(srv);
        drive_for(&client, &[], Duration::from_millis(500), || seen.borrow().len() >= 2);
    }
    let out = seen.borrow().clone();
    out
}

#[test]
fn a_served_stream_hears_the_end_when_keepalive_drops_the_connection() {
    let plain = served_stream_end_seen_how(false, true);
    let recon = served_stream_end_seen_how(true, true);
    assert_eq!(plain.len(), recon.len());
}

#[test]
fn a_served_stream_hears_the_end_when_the_peer_closes() {
    let plain = served_stream_end_seen(false);
    let recon = served_stream_end_seen(true);
    assert_eq!(plain, recon);
}

/// A drop while the peer's requests to us are unanswered: calls made then wait for the
/// reconnect (no linger on a reconnecting connection).
#[test]
fn calls_made_while_the_peer_had_requests_unanswered_wait() {
    let port = free_port();
    let uri = format!("tcp://127.0.0.1:{port}");
    let srv = Context::new(Config::default()).unwrap();
    srv.listen(&uri).unwrap();
    let accepted: Rc<Cell<Option<joint::reactor::ConnId>>> = Rc::default();
    let a = accepted.clone();
    srv.set_conn_event_handler(Some(Rc::new(move |_c: &Context, id, e: ConnEvent<'_>| {
        if matches!(e, ConnEvent::Open) {
            a.set(Some(id));
        }
    })));
    let client = Context::new(Config { linger: Duration::from_secs(2), ..Config::default() }).unwrap();
    let _events = record(&client);
    let held: Rc<RefCell<Vec<Request>>> = Rc::default();
    let h = held.clone();
    client.register(b"hold", Rc::new(move |_ctx: &Context, r: Request| h.borrow_mut().push(r)));
    let conn = client.connect_reconnecting(&[&uri], None, quick(Some(4))).unwrap();
    drive_for(&client, &[&srv], Duration::from_secs(3), || accepted.get().is_some() && client.is_up(conn));
    let sr = Results::default();
    srv.call(accepted.get().unwrap(), b"hold", &arr![].encode(), None, sr.done(0)).unwrap();
    drive_for(&client, &[&srv], Duration::from_secs(3), || !held.borrow().is_empty());
    drop(srv);
    drive_for(&client, &[], Duration::from_millis(200), || false);
    let results = Results::default();
    let r = client.call(conn, b"echo", &arr![].encode(), None, results.done(1));
    assert!(r.is_ok(), "a call made while down was refused");
}
