//! Reconnecting connections (`Context::connect_reconnecting`): a reconnect across a server
//! restart with queued calls, failover from a dead first endpoint, the fail-fast mode, the
//! queue bound, the backoff's growth and cap, and giving up; and the edges: waiting calls
//! withdrawn by a timeout or a cancel are never sent, a server that accepts and closes at
//! once does not reset the backoff, give_up_after bounds an attempt in flight, failed
//! attempts leave no fds, waiting calls stay within the memory budget, served streams hear
//! the end of a dropped connection, and calls made while the peer lingers wait. Client and
//! servers run on the test thread, each driven in turn; every wait has a deadline.

#[macro_use]
mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use joint::error::ErrorKind;
use joint::protocol::ExtMode;
use joint::reactor::{Config, ConnEvent, ConnId, Context, Reconnect, Request, TlsConfig};
use support::*;

/// The tests of this file run one at a time: one of them counts the process's fds.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A port nothing listens on (just freed by the kernel).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    ctx: Context,
    /// The params of every `echo` it served, in order.
    echoes: Rc<RefCell<Vec<Val>>>,
    /// `hold` requests it received (never answered).
    held: Rc<RefCell<Vec<Request>>>,
    holds: Rc<Cell<usize>>,
}

fn server(port: u16) -> Server {
    let ctx = Context::new(Config::default()).unwrap();
    ctx.listen(&format!("tcp://127.0.0.1:{port}")).unwrap();
    let echoes: Rc<RefCell<Vec<Val>>> = Rc::default();
    let held: Rc<RefCell<Vec<Request>>> = Rc::default();
    let holds: Rc<Cell<usize>> = Rc::default();
    let e = echoes.clone();
    ctx.register(
        b"echo",
        Rc::new(move |_ctx: &Context, r: Request| {
            let args = r.args().to_vec();
            e.borrow_mut().push(Val::decode(&args));
            r.reply(&args).unwrap();
        }),
    );
    let (h, n) = (held.clone(), holds.clone());
    ctx.register(
        b"hold",
        Rc::new(move |_ctx: &Context, r: Request| {
            n.set(n.get() + 1);
            h.borrow_mut().push(r);
        }),
    );
    Server { ctx, echoes, held, holds }
}

type Events = Rc<RefCell<Vec<(Instant, String)>>>;

fn record(ctx: &Context) -> Events {
    let events: Events = Rc::default();
    let ev = events.clone();
    ctx.set_conn_event_handler(Some(Rc::new(move |_ctx: &Context, _id, e: ConnEvent<'_>| {
        let text = match e {
            ConnEvent::Open => "open".to_string(),
            ConnEvent::Connecting { endpoint } => format!("connecting {endpoint}"),
            ConnEvent::Down { kind, .. } => format!("down {kind:?}"),
            ConnEvent::Closed { kind, .. } => format!("closed {kind:?}"),
        };
        ev.borrow_mut().push((Instant::now(), text));
    })));
    events
}

fn names(events: &Events) -> Vec<String> {
    events.borrow().iter().map(|(_, e)| e.clone()).collect()
}

fn count(events: &Events, prefix: &str) -> usize {
    events.borrow().iter().filter(|(_, e)| e.starts_with(prefix)).count()
}

/// Drive the client and any servers until `done()` holds; panics after `within`.
fn drive(client: &Context, servers: &[&Server], within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        for s in servers {
            s.ctx.process().unwrap();
        }
        client.wait(Some(Duration::from_millis(2))).unwrap();
    }
}

fn quick(queue_limit: Option<usize>) -> Reconnect {
    Reconnect { initial_delay: Duration::from_millis(30), max_delay: Duration::from_millis(120), queue_limit, ..Reconnect::default() }
}

fn echo(client: &Context, conn: ConnId, results: &Results, tag: u64) -> joint::error::Result<joint::reactor::CallId> {
    client.call(conn, b"echo", &arr![int(tag as i128)].encode(), None, results.done(tag))
}

#[test]
fn reconnects_across_a_server_restart_with_queued_calls() {
    let _serial = serial();
    let port = free_port();
    let uri = format!("tcp://127.0.0.1:{port}");
    let first = server(port);
    let client = Context::new(Config::default()).unwrap();
    let events = record(&client);
    let conn = client.connect_reconnecting(&[&uri], None, quick(Some(10))).unwrap();
    let results = Results::default();

    echo(&client, conn, &results, 1).unwrap();
    drive(&client, &[&first], PROMPT, "the first answer", || results.len() == 1);
    assert_eq!(Val::decode(&results.get(1).unwrap()), arr![int(1)]);
    drive(&client, &[&first], PROMPT, "the extension", || client.extension(conn) == Some(ExtMode::On));
    assert_eq!(names(&events), [format!("connecting {uri}"), "open".into()]);

    // A call in flight when the server goes away fails with Closed, once, and is not resent.
    client.call(conn, b"hold", &arr![].encode(), None, results.done(2)).unwrap();
    drive(&client, &[&first], PROMPT, "the held call to arrive", || first.holds.get() == 1);
    let Server { ctx, held, .. } = first;
    drop(ctx);
    drop(held);
    drive(&client, &[], PROMPT, "the held call to fail", || results.len() == 2);
    let (kind, _, message) = results.get(2).unwrap_err();
    assert_eq!(kind, ErrorKind::Closed, "{message}");
    assert!(message.contains("not resent"), "{message}");
    assert!(count(&events, "down") >= 1, "{:?}", names(&events));
    assert!(!client.is_up(conn));
    assert!(client.is_open(conn), "a reconnecting connection takes calls while down");

    // Calls made while down wait; some failed attempts pass meanwhile.
    for tag in 10..13 {
        echo(&client, conn, &results, tag).unwrap();
    }
    let downs = count(&events, "down");
    drive(&client, &[], PROMPT, "failed attempts while the server is down", || count(&events, "down") >= downs + 2);
    assert_eq!(results.len(), 2, "queued calls completed while down");

    let second = server(port);
    drive(&client, &[&second], PROMPT, "the queued answers", || results.len() == 5);
    let order: Vec<u64> = results.inner.borrow().iter().map(|(t, _)| *t).collect();
    assert_eq!(order, [1, 2, 10, 11, 12], "queued calls answered in order");
    for tag in 10..13 {
        assert_eq!(Val::decode(&results.get(tag).unwrap()), arr![int(tag as i128)]);
    }
    assert_eq!(*second.echoes.borrow(), [arr![int(10)], arr![int(11)], arr![int(12)]]);
    assert!(client.is_up(conn));
    drive(&client, &[&second], PROMPT, "the extension again", || client.extension(conn) == Some(ExtMode::On));

    // The events: open, down, then connecting/down pairs, and open again.
    let seen = names(&events);
    assert_eq!(seen.iter().filter(|e| *e == "open").count(), 2, "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("open"), "{seen:?}");
    assert_eq!(seen[2], "down Closed", "{seen:?}");
    assert!(seen[3..seen.len() - 1].iter().all(|e| e.starts_with("connecting") || e.starts_with("down")), "{seen:?}");
    assert!(seen[seen.len() - 2].starts_with("connecting"), "{seen:?}");

    // The held call was never replayed: more traffic, and still nothing of it.
    echo(&client, conn, &results, 20).unwrap();
    drive(&client, &[&second], PROMPT, "one more answer", || results.len() == 6);
    assert_eq!(second.holds.get(), 0, "a call in flight was resent");
    results.get(2).unwrap_err(); // exactly once
    assert_eq!(client.describe(conn), uri);

    // Closing is final: no reconnect after it.
    client.close(conn).unwrap();
    drive(&client, &[&second], PROMPT, "the final close", || count(&events, "closed") == 1);
    let n = events.borrow().len();
    let until = Instant::now() + Duration::from_millis(200);
    drive(&client, &[&second], PROMPT, "a quiet moment", || Instant::now() >= until);
    assert_eq!(events.borrow().len(), n, "{:?}", names(&events));
    assert!(echo(&client, conn, &results, 30).is_err());
}

#[test]
fn fails_over_from_a_dead_first_endpoint() {
    let _serial = serial();
    let dead = format!("tcp://127.0.0.1:{}", free_port());
    let live_port = free_port();
    let live = server(live_port);
    let live_uri = format!("tcp://127.0.0.1:{live_port}");
    let client = Context::new(Config::default()).unwrap();
    let events = record(&client);
    let conn = client.connect_reconnecting(&[&dead, &live_uri], None, quick(Some(10))).unwrap();
    let results = Results::default();
    echo(&client, conn, &results, 7).unwrap();
    drive(&client, &[&live], PROMPT, "the answer", || results.len() == 1);
    assert_eq!(Val::decode(&results.get(7).unwrap()), arr![int(7)]);
    assert_eq!(names(&events), [format!("connecting {dead}"), format!("connecting {live_uri}"), "open".into()]);
    assert_eq!(client.peer_address(conn), Some(live_uri.clone()));
    assert_eq!(client.describe(conn), live_uri);
}

#[test]
fn fail_fast_mode_refuses_calls_while_down() {
    let _serial = serial();
    let port = free_port();
    let uri = format!("tcp://127.0.0.1:{port}");
    let srv = server(port);
    let client = Context::new(Config::default()).unwrap();
    let events = record(&client);
    let conn = client.connect_reconnecting(&[&uri], None, quick(None)).unwrap();
    // Not up yet: fail-fast refuses at once, before the first connect too.
    let results = Results::default();
    let e = echo(&client, conn, &results, 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Closed);
    assert!(e.message.contains("reconnecting"), "{}", e.message);
    drive(&client, &[&srv], PROMPT, "open", || client.is_up(conn));
    echo(&client, conn, &results, 2).unwrap();
    drive(&client, &[&srv], PROMPT, "an answer", || results.len() == 1);
    drop(srv);
    drive(&client, &[], PROMPT, "down", || count(&events, "down") >= 1);
    let e = echo(&client, conn, &results, 3).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Closed);
    assert!(!client.is_open(conn), "calls are refused while down");
    let e = client.notify(conn, b"echo", &arr![].encode()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Closed);
    assert_eq!(results.len(), 1, "a refused call never completes");
}

#[test]
fn the_queue_is_bounded() {
    let _serial = serial();
    let dead = format!("tcp://127.0.0.1:{}", free_port());
    let client = Context::new(Config::default()).unwrap();
    let events = record(&client);
    let conn = client.connect_reconnecting(&[&dead], None, quick(Some(2))).unwrap();
    let results = Results::default();
    echo(&client, conn, &results, 1).unwrap();
    client.notify(conn, b"echo", &arr![].encode()).unwrap();
    let e = echo(&client, conn, &results, 3).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Limit, "{}", e.message);
    drive(&client, &[], PROMPT, "a failed round", || count(&events, "down") >= 1);
    assert_eq!(echo(&client, conn, &results, 4).unwrap_err().kind, ErrorKind::Limit);
    assert_eq!(results.len(), 0, "queued calls wait across failed rounds");
    // Closed by the application: the queued call fails with Cancelled, once.
    client.close(conn).unwrap();
    drive(&client, &[], PROMPT, "the close", || count(&events, "closed") == 1 && results.len() == 1);
    assert_eq!(results.get(1).unwrap_err().0, ErrorKind::Cancelled);
    assert_eq!(names(&events).last().unwrap(), "closed Cancelled");
}

#[test]
fn backoff_grows_and_is_capped() {
    let _serial = serial();
    let dead = format!("tcp://127.0.0.1:{}", free_port());
    let client = Context::new(Config::default()).unwrap();
    let events = record(&client);
    let policy = Reconnect {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(80),
        factor: 2.0,
        jitter: 0.2,
        ..Reconnect::default()
    };
    let conn = client.connect_reconnecting(&[&dead], None, policy).unwrap();
    drive(&client, &[], Duration::from_secs(10), "eight attempts", || count(&events, "connecting") >= 8);
    let times: Vec<Instant> = events.borrow().iter().filter(|(_, e)| e.starts_with("connecting")).map(|(t, _)| *t).collect();
    let gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0).collect();
    for (i, gap) in gaps.iter().enumerate() {
        let base = (20.0 * 2f64.powi(i as i32)).min(80.0);
        // Never faster than the jittered delay allows; later only by scheduling slack.
        assert!(*gap >= base * 0.8 - 0.5, "gap {i} was {gap:.1} ms, base {base} ms: {gaps:?}");
        assert!(*gap <= base * 1.2 + 40.0, "gap {i} was {gap:.1} ms, base {base} ms: {gaps:?}");
    }
    // The cap: the late gaps are about 80 ms, not 160 and more.
    assert!(gaps[4..].iter().all(|g| *g < 140.0), "{gaps:?}");
    client.close(conn).unwrap();
}

#[test]
fn gives_up_after_the_given_time() {
    let _serial = serial();
    let dead = format!("tcp://127.0.0.1:{}", free_port());
    let client = Context::new(Config::default()).unwrap();
    let events = record(&client);
    let policy = Reconnect { give_up_after: Some(Duration::from_millis(300)), ..quick(Some(4)) };
    let started = Instant::now();
    let conn = client.connect_reconnecting(&[&dead], None, policy).unwrap();
    let results = Results::default();
    echo(&client, conn, &results, 1).unwrap();
    drive(&client, &[], PROMPT, "the final close", || count(&events, "closed") == 1);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    assert!(count(&events, "connecting") >= 2, "{:?}", names(&events));
    drive(&client, &[], PROMPT, "the queued call", || results.len() == 1);
    let (kind, _, message) = results.get(1).unwrap_err();
    assert!(message.contains("gave up reconnecting"), "{kind:?} {message}");
    assert!(!client.is_open(conn));
    assert!(echo(&client, conn, &results, 2).is_err());
    // Nothing after the final event.
    let n = events.borrow().len();
    let until = Instant::now() + Duration::from_millis(150);
    drive(&client, &[], PROMPT, "a quiet moment", || Instant::now() >= until);
    assert_eq!(events.borrow().len(), n);
}

#[test]
fn bad_arguments_are_refused_at_once() {
    let _serial = serial();
    let ctx = Context::new(Config::default()).unwrap();
    assert_eq!(ctx.connect_reconnecting(&[], None, Reconnect::default()).unwrap_err().kind, ErrorKind::InvalidArgument);
    assert_eq!(ctx.connect_reconnecting(&["nonsense"], None, Reconnect::default()).unwrap_err().kind, ErrorKind::Address);
    assert_eq!(ctx.connect_reconnecting(&["udp://127.0.0.1:9"], None, Reconnect::default()).unwrap_err().kind, ErrorKind::InvalidArgument);
    let bad = Reconnect { jitter: 1.5, ..Reconnect::default() };
    assert_eq!(ctx.connect_reconnecting(&["tcp://127.0.0.1:9"], None, bad).unwrap_err().kind, ErrorKind::InvalidArgument);
    let bad = Reconnect { max_delay: Duration::from_millis(1), ..Reconnect::default() };
    assert_eq!(ctx.connect_reconnecting(&["tcp://127.0.0.1:9"], None, bad).unwrap_err().kind, ErrorKind::InvalidArgument);
}

// ---- edges -------------------------------------------------------------------------------

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

/// Faster than `quick`: 20 ms initial, 100 ms at most.
fn brisk(queue_limit: Option<usize>) -> Reconnect {
    Reconnect { initial_delay: Duration::from_millis(20), max_delay: Duration::from_millis(100), queue_limit, ..Reconnect::default() }
}

/// Queued calls that time out or are cancelled while down free their place in the queue and
/// are never sent: the server runs only the call still waiting.
#[test]
fn queued_calls_that_time_out_or_are_cancelled_are_never_sent() {
    let _serial = serial();
    let port = free_port();
    let uri = format!("tcp://127.0.0.1:{port}");
    let client = Context::new(Config::default()).unwrap();
    let _events = record(&client);
    let conn = client.connect_reconnecting(&[&uri], None, brisk(Some(2))).unwrap();
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
    let _serial = serial();
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
    let _serial = serial();
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
    let policy = Reconnect { give_up_after: Some(Duration::from_millis(300)), ..brisk(Some(4)) };
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
    let _serial = serial();
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
    let _serial = serial();
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
    let conn = client.connect_reconnecting(&[&dead], None, brisk(Some(64))).unwrap();
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
    let conn = if reconnecting { client.connect_reconnecting(&[&uri], None, brisk(Some(4))).unwrap() } else { client.connect(&uri).unwrap() };
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
    let _serial = serial();
    let plain = served_stream_end_seen_how(false, true);
    let recon = served_stream_end_seen_how(true, true);
    assert_eq!(plain.len(), recon.len());
}

#[test]
fn a_served_stream_hears_the_end_when_the_peer_closes() {
    let _serial = serial();
    let plain = served_stream_end_seen(false);
    let recon = served_stream_end_seen(true);
    assert_eq!(plain, recon);
}

/// A drop while the peer's requests to us are unanswered: calls made then wait for the
/// reconnect (no linger on a reconnecting connection).
#[test]
fn calls_made_while_the_peer_had_requests_unanswered_wait() {
    let _serial = serial();
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
    let conn = client.connect_reconnecting(&[&uri], None, brisk(Some(4))).unwrap();
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
