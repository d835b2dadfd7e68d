//! Peer identity and access control on accepted connections: the accept handler sees the
//! peer's address and, on Unix sockets, its credentials (SO_PEERCRED) before anything else
//! happens on the connection, and a refusal closes it without an event or a request being
//! served; Unix listeners take a file mode (`?mode=0600`) that is set before anyone can
//! connect. (TLS: tests/tls.rs checks the handler sees the client's certificate.)

use std::cell::{Cell, RefCell};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::rc::Rc;
use std::time::{Duration, Instant};

use joint::error::ErrorKind;
use joint::reactor::{Config, ConnEvent, ConnId, Context, PeerCredentials, Response};

type Outcome = Rc<RefCell<Option<Result<Vec<u8>, (ErrorKind, String)>>>>;
/// What the accept handler saw: the peer's address and credentials.
type Asked = Rc<RefCell<Vec<(Option<String>, Option<PeerCredentials>)>>>;

struct Server {
    ctx: Context,
    uri: String,
    /// Requests served, Open events and accept-handler runs.
    served: Rc<Cell<usize>>,
    opened: Rc<Cell<usize>>,
    asked: Asked,
}

/// A server on `uri` whose accept handler records what it saw and admits by `admit`.
fn server(uri: &str, admit: impl Fn(Option<PeerCredentials>) -> bool + 'static) -> Server {
    let ctx = Context::new(Config::default()).unwrap();
    let l = ctx.listen(uri).unwrap();
    let uri = ctx.listener_uri(l).unwrap();
    let served = Rc::new(Cell::new(0));
    let s = served.clone();
    ctx.register(
        b"echo",
        Rc::new(move |_ctx: &Context, req: joint::reactor::Request| {
            s.set(s.get() + 1);
            let args = req.args().to_vec();
            req.reply(&args[1..]).unwrap();
        }),
    );
    let opened = Rc::new(Cell::new(0));
    let o = opened.clone();
    // Every event of an accepted connection counts (CLOSED too): a refused one must get none.
    ctx.set_conn_event_handler(Some(Rc::new(move |ctx: &Context, id: ConnId, ev: ConnEvent<'_>| {
        let accepted =
            matches!(ev, ConnEvent::Open) && ctx.peer_address(id).is_some_and(|a| a == "unix:" || a.starts_with("tcp://") || a.starts_with("udp://"));
        if accepted || matches!(ev, ConnEvent::Closed { .. }) {
            o.set(o.get() + 1);
        }
    })));
    let asked: Asked = Rc::default();
    let a = asked.clone();
    ctx.set_accept_handler(Some(Rc::new(move |ctx: &Context, id: ConnId| {
        let cred = ctx.peer_credentials(id);
        a.borrow_mut().push((ctx.peer_address(id), cred));
        admit(cred)
    })));
    Server { ctx, uri, served, opened, asked }
}

fn call(srv: &Context, uri: &str) -> (Context, ConnId, Result<Vec<u8>, (ErrorKind, String)>) {
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(uri).unwrap();
    let out: Outcome = Rc::default();
    let o = out.clone();
    let done = Box::new(move |_c: &Context, r: Response<'_>| {
        *o.borrow_mut() = Some(r.outcome.map(|v| v.to_vec()).map_err(|e| (e.kind, e.message.to_string())));
    });
    cli.call(conn, b"echo", &[0x91, 7], Some(Duration::from_secs(5)), done).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.borrow().is_none() {
        assert!(Instant::now() < deadline, "timed out");
        srv.process().unwrap();
        cli.wait(Some(Duration::from_millis(1))).unwrap();
    }
    let r = out.borrow_mut().take().unwrap();
    (cli, conn, r)
}

fn temp_socket(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("joint-access-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path.display().to_string()
}

fn me() -> PeerCredentials {
    // SAFETY: getuid/getgid cannot fail.
    PeerCredentials { pid: std::process::id() as i32, uid: unsafe { libc::getuid() }, gid: unsafe { libc::getgid() } }
}

#[test]
fn unix_peers_are_seen_with_their_credentials_and_refused_by_uid() {
    let path = temp_socket("uid");
    let uid = me().uid;
    // Admit every uid but ours: this test's own client is the one refused.
    let srv = server(&format!("unix://{path}"), move |cred| cred.is_some_and(|c| c.uid != uid));
    let (cli, conn, outcome) = call(&srv.ctx, &format!("unix://{path}"));
    let (kind, reason) = outcome.unwrap_err();
    assert_eq!(kind, ErrorKind::Closed, "{reason}");
    assert_eq!(srv.served.get(), 0, "a refused connection's request was served");
    assert_eq!(srv.opened.get(), 0, "a refused connection was announced");
    assert_eq!(*srv.asked.borrow(), vec![(Some("unix:".to_string()), Some(me()))]);
    // The client side of a Unix connection sees the server's credentials (the same process).
    assert_eq!(cli.peer_credentials(conn), None, "closed: none left");
    let srv2 = server(&format!("unix://{}", temp_socket("uid2")), |_| true);
    let path2 = srv2.uri.clone();
    let cli2 = Context::new(Config::default()).unwrap();
    let conn2 = cli2.connect(&path2).unwrap();
    let (_c, _id, ok) = call(&srv2.ctx, &path2);
    assert_eq!(ok.unwrap(), vec![7]);
    assert_eq!(srv2.opened.get(), 2, "cli2 and the call's client");
    assert_eq!(cli2.peer_credentials(conn2), Some(me()));
}

#[test]
fn tcp_peers_are_seen_by_address_and_refusing_one_leaves_others_served() {
    let turn = Rc::new(Cell::new(0));
    let t = turn.clone();
    // Refuse every other connection.
    let srv = server("tcp://127.0.0.1:0", move |cred| {
        assert_eq!(cred, None, "TCP has no peer credentials");
        t.set(t.get() + 1);
        t.get() % 2 == 0
    });
    let (_c1, _, refused) = call(&srv.ctx, &srv.uri);
    assert_eq!(refused.unwrap_err().0, ErrorKind::Closed);
    let (c2, conn2, admitted) = call(&srv.ctx, &srv.uri);
    assert_eq!(admitted.unwrap(), vec![7]);
    assert_eq!((srv.served.get(), srv.opened.get()), (1, 1));
    let asked = srv.asked.borrow();
    assert_eq!(asked.len(), 2);
    for (addr, _) in asked.iter() {
        let addr = addr.as_deref().unwrap();
        assert!(addr.starts_with("tcp://127.0.0.1:"), "{addr}");
    }
    // What the server saw is the client's own address.
    let server_addr = c2.peer_address(conn2).unwrap();
    assert_eq!(server_addr, srv.uri);
}

#[test]
fn unix_listeners_take_a_file_mode() {
    for (mode, want) in [("0600", 0o600), ("0660", 0o660), ("0777", 0o777)] {
        let path = temp_socket(&format!("mode{mode}"));
        let ctx = Context::new(Config::default()).unwrap();
        let l = ctx.listen(&format!("unix://{path}?mode={mode}")).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, want, "mode={mode}");
        assert_eq!(ctx.listener_uri(l).unwrap(), format!("unix://{path}"));
        // It serves like any other.
        let srv = server(&format!("unix://{}?mode={mode}", temp_socket(&format!("serve{mode}"))), |_| true);
        let (_c, _id, ok) = call(&srv.ctx, &srv.uri);
        assert_eq!(ok.unwrap(), vec![7]);
        drop(ctx);
        assert!(std::fs::metadata(&path).is_err(), "the socket file is removed with its listener");
    }
    let ctx = Context::new(Config::default()).unwrap();
    for bad in ["unix:///tmp/x.sock?mode=0800", "unix:///tmp/x.sock?mode=", "unix:///tmp/x.sock?mode=7777"] {
        let e = ctx.listen(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Address, "{bad}: {e:?}");
        assert!(e.message.contains("mode"), "{bad}: {}", e.message);
    }
    let e = ctx.connect("unix:///tmp/x.sock?mode=0600").unwrap_err();
    assert!(e.message.contains("for listeners"), "{}", e.message);
}

#[test]
fn udp_peers_go_through_the_accept_handler() {
    let admit = Rc::new(Cell::new(false));
    let a = admit.clone();
    let srv = server("udp://127.0.0.1:0", move |_| a.get());
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(&srv.uri).unwrap();
    let out: Outcome = Rc::default();
    let o = out.clone();
    let done = Box::new(move |_c: &Context, r: Response<'_>| *o.borrow_mut() = Some(r.outcome.map(|v| v.to_vec()).map_err(|e| (e.kind, e.message))));
    cli.call(conn, b"echo", &[0x91, 7], Some(Duration::from_millis(300)), done).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.borrow().is_none() {
        assert!(Instant::now() < deadline, "timed out");
        srv.ctx.process().unwrap();
        cli.wait(Some(Duration::from_millis(1))).unwrap();
    }
    assert_eq!(out.borrow().as_ref().unwrap().as_ref().unwrap_err().0, ErrorKind::Timeout, "a refused peer's datagram was answered");
    assert_eq!((srv.served.get(), srv.opened.get()), (0, 0));
    let asked = srv.asked.borrow().clone();
    assert_eq!(asked.len(), 1);
    assert!(asked[0].0.as_deref().unwrap().starts_with("udp://127.0.0.1:"), "{asked:?}");
    // Admitted: the next datagram from the same peer is served.
    admit.set(true);
    let (_c, _id, ok) = call(&srv.ctx, &srv.uri.clone());
    assert_eq!(ok.unwrap(), vec![7]);
    assert_eq!(srv.served.get(), 1);
}
