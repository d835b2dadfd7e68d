//! UDP: one message per datagram, joint on both ends and against raw sockets.

use std::cell::RefCell;
use std::net::UdpSocket;
use std::rc::Rc;
use std::time::{Duration, Instant};

use joint::codec::{self, Message};
use joint::error::ErrorKind;
use joint::protocol::rpc_error;
use joint::reactor::transport::UDP_MAX_MESSAGE;
use joint::reactor::{Config, Context};

type Outcome = Result<Vec<u8>, (ErrorKind, Vec<u8>)>;

fn server() -> (Context, String) {
    let ctx = Context::new(Config::default()).unwrap();
    let l = ctx.listen("udp://127.0.0.1:0").unwrap();
    let uri = ctx.listener_uri(l).unwrap();
    ctx.register(
        b"echo",
        Rc::new(|_ctx, req| {
            let arg = req.args()[1..].to_vec();
            let _ = req.reply(&arg);
        }),
    );
    ctx.register(
        b"big",
        Rc::new(|_ctx, req| {
            let mut out = Vec::new();
            codec::write_bin(&mut out, &vec![7u8; 70_000]);
            let _ = req.reply(&out);
        }),
    );
    (ctx, uri)
}

fn run_until(a: &Context, b: &Context, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        a.process().unwrap();
        b.wait(Some(Duration::from_millis(1))).unwrap();
    }
}

fn collect(slot: &Rc<RefCell<Vec<Outcome>>>) -> joint::reactor::Completion {
    let slot = slot.clone();
    Box::new(move |_ctx, r| {
        slot.borrow_mut().push(match r.outcome {
            Ok(v) => Ok(v.to_vec()),
            Err(e) => Err((e.kind, e.error.to_vec())),
        })
    })
}

fn str_param(s: &str) -> Vec<u8> {
    let mut p = vec![0x91];
    codec::write_str(&mut p, s.as_bytes());
    p
}

#[test]
fn joint_to_joint_calls_notifications_and_size_limits() {
    let (srv, uri) = server();
    let notes = Rc::new(RefCell::new(Vec::new()));
    let n = notes.clone();
    srv.set_notification_handler(Some(Rc::new(move |_ctx, _id, method, _params| n.borrow_mut().push(method.to_vec()))));
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let results = Rc::new(RefCell::new(Vec::new()));
    for i in 0..50 {
        cli.call(conn, b"echo", &str_param(&format!("héllo {i}")), Some(Duration::from_secs(5)), collect(&results)).unwrap();
    }
    cli.notify(conn, b"note", &[0x90]).unwrap();
    cli.call(conn, b"missing", &[0x90], Some(Duration::from_secs(5)), collect(&results)).unwrap();
    run_until(&srv, &cli, || results.borrow().len() == 51);
    let r = results.borrow();
    for i in 0..50 {
        let mut want = Vec::new();
        codec::write_str(&mut want, format!("héllo {i}").as_bytes());
        assert!(r.contains(&Ok(want)), "echo {i} missing");
    }
    let errors: Vec<_> = r.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(codec::error_code(&errors[0].1), Some(rpc_error::NO_METHOD));
    assert_eq!(notes.borrow().as_slice(), &[b"note".to_vec()]);
    drop(r);

    // A call too big for a datagram is refused at once, with a size error.
    let mut big = vec![0x91];
    codec::write_bin(&mut big, &vec![1u8; UDP_MAX_MESSAGE]);
    let e = cli.call(conn, b"echo", &big, None, collect(&results)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    // A reply too big for a datagram becomes a TOO_LARGE error reply.
    results.borrow_mut().clear();
    cli.call(conn, b"big", &[0x90], Some(Duration::from_secs(5)), collect(&results)).unwrap();
    run_until(&srv, &cli, || results.borrow().len() == 1);
    let (kind, err) = results.borrow()[0].clone().unwrap_err();
    assert_eq!(kind, ErrorKind::Remote);
    assert_eq!(codec::error_code(&err), Some(rpc_error::TOO_LARGE));
}

/// Drive the server on this thread while a raw UDP socket on another thread talks to it.
fn with_raw_peer(uri: &str, srv: &Context, peer: impl FnOnce(UdpSocket) + Send + 'static) {
    let addr = uri.strip_prefix("udp://").unwrap().to_string();
    let t = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        peer(s);
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !t.is_finished() {
        assert!(Instant::now() < deadline, "raw peer timed out");
        srv.wait(Some(Duration::from_millis(5))).unwrap();
    }
    t.join().unwrap();
}

fn recv_response(s: &UdpSocket) -> (u32, Vec<u8>, Vec<u8>) {
    let mut buf = vec![0u8; 70_000];
    let n = s.recv(&mut buf).expect("a response datagram");
    match codec::decode_message(&buf[..n]).unwrap() {
        Message::Response { msgid, error, result } => (msgid, error.to_vec(), result.to_vec()),
        other => panic!("not a response: {other:?}"),
    }
}

#[test]
fn raw_socket_peer_gets_one_response_per_message() {
    let (srv, uri) = server();
    with_raw_peer(&uri, &srv, |s| {
        let mut req = Vec::new();
        codec::encode_request(&mut req, 7, b"echo", &str_param("x"));
        s.send(&req).unwrap();
        let (id, err, res) = recv_response(&s);
        assert_eq!((id, err.as_slice(), res.as_slice()), (7, codec::NIL, &[0xa1, b'x'][..]));

        // Two messages in one datagram: two answers (each in its own datagram).
        let mut two = Vec::new();
        codec::encode_request(&mut two, 8, b"echo", &str_param("a"));
        codec::encode_request(&mut two, 9, b"echo", &str_param("b"));
        s.send(&two).unwrap();
        let mut ids = vec![recv_response(&s).0, recv_response(&s).0];
        ids.sort();
        assert_eq!(ids, vec![8, 9]);

        // Garbage, and a message cut off by the end of its datagram: dropped, peer kept.
        s.send(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        s.send(&req[..req.len() - 2]).unwrap();
        let mut req2 = Vec::new();
        codec::encode_request(&mut req2, 10, b"echo", &str_param("y"));
        s.send(&req2).unwrap();
        let (id, _, res) = recv_response(&s);
        assert_eq!((id, res.as_slice()), (10, &[0xa1, b'y'][..]));

        // A request with a bad method type is answered with INVALID_REQUEST.
        s.send(&[0x94, 0x00, 0x0b, 0x05, 0x90]).unwrap();
        let (id, err, _) = recv_response(&s);
        assert_eq!(id, 11);
        assert_eq!(codec::error_code(&err), Some(rpc_error::INVALID_REQUEST));
    });
}

#[test]
fn joint_client_against_a_raw_udp_server() {
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let uri = format!("udp://{}", raw.local_addr().unwrap());
    let t = std::thread::spawn(move || {
        let mut buf = vec![0u8; 70_000];
        for _ in 0..3 {
            let (n, from) = raw.recv_from(&mut buf).unwrap();
            let Message::Request { msgid, method, params } = codec::decode_message(&buf[..n]).unwrap() else { panic!() };
            let mut out = Vec::new();
            match method {
                b"sum" => {
                    let (a, b) = (params.args[1] as i64, params.args[2] as i64);
                    codec::encode_response(&mut out, msgid, codec::NIL, &[(a + b) as u8]);
                }
                _ => {
                    let mut err = Vec::new();
                    codec::write_str(&mut err, b"nope");
                    codec::encode_response(&mut out, msgid, &err, codec::NIL);
                }
            }
            raw.send_to(&out, from).unwrap();
        }
    });
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let results = Rc::new(RefCell::new(Vec::new()));
    cli.call(conn, b"sum", &[0x92, 2, 3], Some(Duration::from_secs(5)), collect(&results)).unwrap();
    cli.call(conn, b"sum", &[0x92, 20, 22], Some(Duration::from_secs(5)), collect(&results)).unwrap();
    cli.call(conn, b"other", &[0x90], Some(Duration::from_secs(5)), collect(&results)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while results.borrow().len() < 3 {
        assert!(Instant::now() < deadline);
        cli.wait(Some(Duration::from_millis(10))).unwrap();
    }
    t.join().unwrap();
    let r = results.borrow();
    assert!(r.contains(&Ok(vec![5])) && r.contains(&Ok(vec![42])));
    assert!(r.contains(&Err((ErrorKind::Remote, vec![0xa4, b'n', b'o', b'p', b'e']))));
}

#[test]
fn udp_call_to_a_closed_port_fails() {
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(&format!("udp://127.0.0.1:{port}")).unwrap();
    let results = Rc::new(RefCell::new(Vec::new()));
    cli.call(conn, b"x", &[0x90], Some(Duration::from_secs(3)), collect(&results)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while results.borrow().is_empty() {
        assert!(Instant::now() < deadline);
        cli.wait(Some(Duration::from_millis(10))).unwrap();
    }
    // Linux reports the ICMP port-unreachable as ECONNREFUSED on the connected socket;
    // without it the call would time out. Either way it completes once, with an error.
    let (kind, _) = results.borrow()[0].clone().unwrap_err();
    assert!(matches!(kind, ErrorKind::ConnectionRefused | ErrorKind::Timeout), "{kind:?}");
}
