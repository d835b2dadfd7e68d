//! The reactor through its Rust API: a server and a client context in one thread.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use joint::codec;
use joint::error::ErrorKind;
use joint::reactor::{Config, ConnEvent, Context, Response};

fn server() -> (Context, String) {
    let ctx = Context::new(Config::default()).unwrap();
    let l = ctx.listen("tcp://127.0.0.1:0").unwrap();
    let uri = ctx.listener_uri(l).unwrap();
    ctx.register(
        b"echo",
        Rc::new(|_ctx, req| {
            let args = req.args().to_vec();
            // [x] -> x
            let inner = &args[1..];
            req.reply(inner).unwrap();
        }),
    );
    ctx.register(
        b"defer",
        Rc::new(|ctx, req| {
            ctx.add_timer(Duration::from_millis(20), Box::new(move |_| req.reply(&[0x2a]).unwrap()));
        }),
    );
    ctx.register(
        b"thread",
        Rc::new(|_ctx, req| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                req.reply(&[0x07]).unwrap();
            });
        }),
    );
    ctx.register(b"drop", Rc::new(|_ctx, req| drop(req)));
    (ctx, uri)
}

/// Drive both contexts until `done` or a deadline.
fn run_until(a: &Context, b: &Context, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        a.process().unwrap();
        b.wait(Some(Duration::from_millis(1))).unwrap();
    }
}

type Outcome = Result<Vec<u8>, (ErrorKind, Vec<u8>)>;
type Results = Rc<RefCell<Vec<(Outcome, u32)>>>;

fn collector(results: &Results, tag: u32) -> Box<dyn FnOnce(&Context, Response<'_>)> {
    let results = results.clone();
    Box::new(move |_ctx, r| {
        let v = match r.outcome {
            Ok(v) => Ok(v.to_vec()),
            Err(e) => Err((e.kind, e.error.to_vec())),
        };
        results.borrow_mut().push((v, tag));
    })
}

#[test]
fn calls_replies_errors_and_timeouts() {
    let (srv, uri) = server();
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let results: Results = Rc::default();
    cli.call(conn, b"echo", &[0x91, 0xa2, b'h', b'i'], None, collector(&results, 1)).unwrap();
    cli.call(conn, b"nope", &[0x90], None, collector(&results, 2)).unwrap();
    cli.call(conn, b"defer", &[0x90], None, collector(&results, 3)).unwrap();
    cli.call(conn, b"thread", &[0x90], None, collector(&results, 4)).unwrap();
    cli.call(conn, b"drop", &[0x90], None, collector(&results, 5)).unwrap();
    cli.call(conn, b"defer", &[0x90], Some(Duration::from_millis(1)), collector(&results, 6)).unwrap();
    run_until(&srv, &cli, || results.borrow().len() == 6);
    let r = results.borrow();
    let get = |tag| r.iter().find(|(_, t)| *t == tag).unwrap().0.clone();
    assert_eq!(get(1), Ok(vec![0xa2, b'h', b'i']));
    let (kind, err) = get(2).unwrap_err();
    assert_eq!(kind, ErrorKind::Remote);
    assert_eq!(codec::error_code(&err), Some(joint::protocol::rpc_error::NO_METHOD));
    assert_eq!(get(3), Ok(vec![0x2a]));
    assert_eq!(get(4), Ok(vec![0x07]));
    assert_eq!(codec::error_code(&get(5).unwrap_err().1), Some(joint::protocol::rpc_error::NOT_ANSWERED));
    assert_eq!(get(6).unwrap_err().0, ErrorKind::Timeout);
}

#[test]
fn pending_calls_fail_once_when_the_server_goes_away() {
    let (srv, uri) = server();
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let results: Results = Rc::default();
    let events = Rc::new(RefCell::new(Vec::new()));
    let ev = events.clone();
    cli.set_conn_event_handler(Some(Rc::new(move |_ctx, _id, e| ev.borrow_mut().push(format!("{e:?}")))));
    // a call that is never answered (the handler keeps the request forever)
    let kept = Rc::new(RefCell::new(Vec::new()));
    let k = kept.clone();
    srv.register(b"hang", Rc::new(move |_ctx, req| k.borrow_mut().push(req)));
    for i in 0..10 {
        cli.call(conn, b"hang", &[0x90], None, collector(&results, i)).unwrap();
    }
    run_until(&srv, &cli, || kept.borrow().len() == 10);
    std::mem::forget(std::mem::take(&mut *kept.borrow_mut()));
    drop(srv);
    run_until(&Context::new(Config::default()).unwrap(), &cli, || results.borrow().len() == 10);
    for (r, _) in results.borrow().iter() {
        assert_eq!(r.as_ref().unwrap_err().0, ErrorKind::Closed);
    }
    run_until(&Context::new(Config::default()).unwrap(), &cli, || events.borrow().len() == 2);
    assert_eq!(events.borrow()[0], "Open");
    assert!(events.borrow()[1].starts_with("Closed"));
    // still exactly 10 after more processing
    cli.process().unwrap();
    assert_eq!(results.borrow().len(), 10);
}

#[test]
fn context_drop_cancels_pending_calls() {
    let (srv, uri) = server();
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let results: Results = Rc::default();
    cli.call(conn, b"defer", &[0x90], None, collector(&results, 1)).unwrap();
    drop(cli);
    assert_eq!(results.borrow().len(), 1);
    assert_eq!(results.borrow()[0].0.as_ref().unwrap_err().0, ErrorKind::Cancelled);
    drop(srv);
}

#[test]
fn connect_refused_fails_calls() {
    let cli = Context::new(Config::default()).unwrap();
    // bind then drop to get a free port nobody listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conn = cli.connect(&format!("tcp://127.0.0.1:{port}")).unwrap();
    let results: Results = Rc::default();
    cli.call(conn, b"x", &[0x90], None, collector(&results, 1)).unwrap();
    let other = Context::new(Config::default()).unwrap();
    run_until(&other, &cli, || !results.borrow().is_empty());
    assert_eq!(results.borrow()[0].0.as_ref().unwrap_err().0, ErrorKind::ConnectionRefused);
}

#[test]
fn unix_socket_and_blocking_call() {
    let dir = std::env::temp_dir().join(format!("joint-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let srv = Context::new(Config::default()).unwrap();
    srv.listen(&format!("unix://{}", path.display())).unwrap();
    srv.register(
        b"add",
        Rc::new(|_ctx, req| {
            let sum = req.args()[1] + req.args()[2];
            req.reply(&[sum]).unwrap();
        }),
    );
    let uri = format!("unix://{}", path.display());
    let handle = std::thread::spawn(move || {
        let cli = Context::new(Config::default()).unwrap();
        let conn = cli.connect(&uri).unwrap();
        let r = cli.call_blocking(conn, b"add", &[0x92, 2, 3], Some(Duration::from_secs(5)));
        r.map_err(|e| e.0.message)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !handle.is_finished() && Instant::now() < deadline {
        srv.wait(Some(Duration::from_millis(10))).unwrap();
    }
    assert_eq!(handle.join().unwrap(), Ok(vec![5]));
    drop(srv);
    assert!(!path.exists(), "socket file removed with the listener");
}

#[test]
fn process_from_callback_is_refused() {
    let (srv, uri) = server();
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    cli.call(
        conn,
        b"echo",
        &[0x91, 0x01],
        None,
        Box::new(move |ctx, _r| {
            *s.borrow_mut() = Some(ctx.process().unwrap_err().kind);
        }),
    )
    .unwrap();
    run_until(&srv, &cli, || seen.borrow().is_some());
    assert_eq!(*seen.borrow(), Some(ErrorKind::Recursive));
}

#[test]
fn events_report_open_and_close_for_accepted_connections() {
    let (srv, uri) = server();
    let events = Rc::new(RefCell::new(Vec::new()));
    let ev = events.clone();
    srv.set_conn_event_handler(Some(Rc::new(move |_ctx, _id, e: ConnEvent<'_>| ev.borrow_mut().push(format!("{e:?}")))));
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let results: Results = Rc::default();
    cli.call(conn, b"echo", &[0x91, 0x01], None, collector(&results, 1)).unwrap();
    run_until(&srv, &cli, || !results.borrow().is_empty());
    cli.release(conn);
    run_until(&srv, &cli, || events.borrow().len() == 2);
    assert_eq!(events.borrow()[0], "Open");
    assert!(events.borrow()[1].starts_with("Closed"), "{:?}", events.borrow());
}

#[test]
fn shutdown_refuses_new_requests_and_closes_listeners() {
    let (srv, uri) = server();
    let held = Rc::new(RefCell::new(Vec::new()));
    let h = held.clone();
    srv.register(b"hold", Rc::new(move |_ctx, req| h.borrow_mut().push(req)));
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let results: Results = Rc::default();
    cli.call(conn, b"hold", &[0x90], None, collector(&results, 1)).unwrap();
    run_until(&srv, &cli, || held.borrow().len() == 1);
    srv.shutdown();
    assert_eq!(srv.unanswered_requests(), 1);
    cli.call(conn, b"echo", &[0x91, 0x01], None, collector(&results, 2)).unwrap();
    run_until(&srv, &cli, || results.borrow().len() == 1);
    let (kind, err) = results.borrow()[0].0.clone().unwrap_err();
    assert_eq!(kind, ErrorKind::Remote);
    assert_eq!(codec::error_code(&err), Some(joint::protocol::rpc_error::SHUTTING_DOWN));
    // The request received before the shutdown still completes.
    held.borrow_mut().pop().unwrap().reply(&[0x09]).unwrap();
    run_until(&srv, &cli, || results.borrow().len() == 2);
    assert_eq!(results.borrow()[1].0, Ok(vec![0x09]));
    assert_eq!(srv.unanswered_requests(), 0);
    // The listener is gone: a new connection is refused.
    let port = uri.rsplit(':').next().unwrap();
    assert!(std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err());
}

#[test]
fn huge_timer_delays_do_not_panic() {
    let ctx = Context::new(Config::default()).unwrap();
    let id = ctx.add_timer(Duration::MAX, Box::new(|_| panic!("must not fire")));
    ctx.process().unwrap();
    assert!(ctx.timeout_ms() > 1_000_000);
    assert!(ctx.cancel_timer(id));
}

/// A wake-up from another thread is never lost, however it interleaves with `process()`
/// (regression: the "already woken" flag was cleared before the poll, so a wake-up landing in
/// between left it set and silenced every later one).
#[test]
fn wakeups_from_another_thread_are_never_lost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let ctx = Context::new(Config::default()).unwrap();
    let waker = ctx.waker();
    let want = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (w, s) = (want.clone(), stop.clone());
    let t = std::thread::spawn(move || {
        for i in 0..100_000u64 {
            waker.wake(); // a wake-up whose work is done at once
            for _ in 0..(i * 7919 % 500) {
                std::hint::spin_loop();
            }
            w.store(true, Ordering::SeqCst);
            waker.wake(); // real work, and its wake-up
            let t0 = Instant::now();
            while w.load(Ordering::SeqCst) {
                assert!(t0.elapsed() < Duration::from_secs(2), "wake-up lost after {i} rounds");
                std::hint::spin_loop();
            }
        }
        s.store(true, Ordering::SeqCst);
        waker.wake();
    });
    // The thread fails (after 2 s) if a wake-up is lost; the 3 s wait then lets it finish.
    while !stop.load(Ordering::SeqCst) && !t.is_finished() {
        ctx.process().unwrap();
        if want.swap(false, Ordering::SeqCst) {
            continue;
        }
        ctx.wait(Some(Duration::from_secs(3))).unwrap();
        want.swap(false, Ordering::SeqCst);
    }
    t.join().unwrap();
}
