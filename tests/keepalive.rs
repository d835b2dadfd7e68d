//! Keepalive (docs/PROTOCOL.md, "Keepalive"): PINGs between joint peers keep a quiet but
//! alive connection open, a stopped peer is found within the timeout and its pending calls
//! fail with `Closed`, stock peers never see a PING, and TCP keepalive is set on the sockets.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use joint::codec;
use joint::error::ErrorKind;
use joint::protocol::ExtMode;
use joint::reactor::{Completion, Config, ConnId, Context, LogLevel, Request};

type Outcome = Result<Vec<u8>, (ErrorKind, String)>;
type Results = Rc<RefCell<Vec<Outcome>>>;

fn collector(results: &Results) -> Completion {
    let results = results.clone();
    Box::new(move |_ctx, r| {
        results.borrow_mut().push(match r.outcome {
            Ok(v) => Ok(v.to_vec()),
            Err(e) => Err((e.kind, e.message)),
        })
    })
}

fn keepalive(interval_ms: u64, timeout_ms: u64) -> Config {
    Config {
        keepalive_interval: Some(Duration::from_millis(interval_ms)),
        keepalive_timeout: Duration::from_millis(timeout_ms),
        ..Config::default()
    }
}

/// A server whose `hang` never answers (the requests are kept) and whose `echo` answers.
fn server(config: Config) -> (Context, String, Rc<RefCell<Vec<Request>>>) {
    let ctx = Context::new(config).unwrap();
    let l = ctx.listen("tcp://127.0.0.1:0").unwrap();
    let uri = ctx.listener_uri(l).unwrap();
    let held: Rc<RefCell<Vec<Request>>> = Rc::default();
    let h = held.clone();
    ctx.register(b"hang", Rc::new(move |_ctx, req| h.borrow_mut().push(req)));
    ctx.register(
        b"echo",
        Rc::new(|_ctx, req| {
            let args = req.args().to_vec();
            let _ = req.reply(&args);
        }),
    );
    (ctx, uri, held)
}

/// Drive the contexts until `done`, failing after `within`.
fn run_until(ctxs: &[&Context], within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for c in ctxs {
            c.wait(Some(Duration::from_millis(1))).unwrap();
        }
    }
}

/// Drive the contexts for `span`.
fn run_for(ctxs: &[&Context], span: Duration) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        for c in ctxs {
            c.wait(Some(Duration::from_millis(1))).unwrap();
        }
    }
}

/// Log lines of a context at debug level, collected.
fn logging(mut config: Config) -> (Config, Rc<RefCell<Vec<String>>>) {
    let lines: Rc<RefCell<Vec<String>>> = Rc::default();
    let l = lines.clone();
    config.log = Some(Rc::new(move |_level, line: &str| l.borrow_mut().push(line.to_string())));
    config.log_level = LogLevel::Debug;
    (config, lines)
}

fn count(lines: &Rc<RefCell<Vec<String>>>, conn: ConnId, what: &str) -> usize {
    let prefix = format!("{conn}:");
    lines.borrow().iter().filter(|l| l.starts_with(&prefix) && l.contains(what)).count()
}

#[test]
fn an_alive_peer_answers_pings_and_keeps_a_quiet_connection_open() {
    let (srv, uri, held) = server(keepalive(50, 150));
    let (config, lines) = logging(keepalive(50, 150));
    let cli = Context::new(config).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let results: Results = Rc::default();
    cli.call(conn, b"hang", &[0x90], None, collector(&results)).unwrap();
    run_until(&[&srv, &cli], Duration::from_secs(10), "the call to arrive", || held.borrow().len() == 1);
    assert_eq!(cli.extension(conn), Some(ExtMode::On));

    // Twenty intervals, more than six timeouts, with nothing but pings on the wire.
    run_for(&[&srv, &cli], Duration::from_millis(1000));
    let pings = count(&lines, conn, "keepalive ping sent");
    // A ping goes out only after input came since the last one: all but the last were answered.
    assert!(pings >= 4, "{pings} pings in 1 s at a 50 ms interval: {:?}", lines.borrow());
    assert!(results.borrow().is_empty(), "the call ended: {:?}", results.borrow());
    assert!(cli.is_open(conn));
    assert_eq!(count(&lines, conn, "no answer to keepalive ping"), 0);

    // The connection still works: the held call is answered and arrives.
    let req = held.borrow_mut().pop().unwrap();
    req.reply(&[0x2a]).unwrap();
    run_until(&[&srv, &cli], Duration::from_secs(10), "the answer", || !results.borrow().is_empty());
    assert_eq!(results.borrow()[0], Ok(vec![0x2a]));
}

/// Kills its child on drop, stopped or not.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let pid = self.0.id() as libc::pid_t;
        // SAFETY: signals to our own child, which has not been reaped yet (wait follows).
        unsafe {
            libc::kill(pid, libc::SIGCONT);
            libc::kill(pid, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

const CHILD_ENV: &str = "JOINT_KEEPALIVE_TEST_CHILD";

/// The peer process of `a_stopped_peer_...`: not a test of its own (it returns at once unless
/// started by that test, which runs this binary again with the variable set).
#[test]
fn keepalive_child_server() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let (ctx, uri, _held) = server(Config::default());
    println!("listening on {uri}");
    std::io::stdout().flush().unwrap();
    // Never longer than a minute, whatever happens to the parent.
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        ctx.wait(Some(Duration::from_millis(100))).unwrap();
    }
}

fn spawn_child_server() -> (ChildGuard, String) {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", "keepalive_child_server", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let stdout = guard.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // libtest prints "test NAME ... " on the same line first.
            if let Some(at) = line.find("listening on ") {
                let _ = tx.send(line[at + "listening on ".len()..].trim().to_string());
            }
        }
    });
    let uri = rx.recv_timeout(Duration::from_secs(30)).expect("the child server did not say where it listens");
    (guard, uri)
}

#[test]
fn a_stopped_peer_is_detected_by_the_keepalive_and_its_calls_fail_closed() {
    let (child, uri) = spawn_child_server();
    let (interval, timeout) = (100u64, 300u64);
    let cli = Context::new(keepalive(interval, timeout)).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let results: Results = Rc::default();
    cli.call(conn, b"echo", &[0x91, 0x07], None, collector(&results)).unwrap();
    run_until(&[&cli], Duration::from_secs(10), "the echo", || !results.borrow().is_empty());
    assert_eq!(results.borrow_mut().remove(0), Ok(vec![0x91, 0x07]));
    assert_eq!(cli.extension(conn), Some(ExtMode::On));
    // A call that will not be answered, then one that proves it arrived (the server reads in
    // order), so the last input from the peer is just before the stop.
    cli.call(conn, b"hang", &[0x90], None, collector(&results)).unwrap();
    cli.call(conn, b"echo", &[0x91, 0x08], None, collector(&results)).unwrap();
    run_until(&[&cli], Duration::from_secs(10), "the echo behind the hanging call", || !results.borrow().is_empty());
    assert_eq!(results.borrow_mut().remove(0), Ok(vec![0x91, 0x08]));

    // SAFETY: our own child, alive (the guard reaps it).
    assert_eq!(unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGSTOP) }, 0);
    let stopped = Instant::now();
    let slack = Duration::from_millis(1500);
    run_until(&[&cli], Duration::from_millis(interval + timeout) + slack, "the keepalive to close the connection", || {
        !results.borrow().is_empty()
    });
    let elapsed = stopped.elapsed();
    {
        let r = results.borrow();
        let Err((kind, message)) = &r[0] else { panic!("the call succeeded: {r:?}") };
        assert_eq!(*kind, ErrorKind::Closed, "{message}");
        assert!(message.contains("no answer to keepalive ping within 300 ms (peer dead or stopped)"), "{message}");
    }
    assert!(elapsed >= Duration::from_millis(timeout), "closed after {elapsed:?}, before the {timeout} ms timeout");
    assert!(!cli.is_open(conn));
    // Exactly once: nothing more completes.
    run_for(&[&cli], Duration::from_millis(200));
    assert_eq!(results.borrow().len(), 1);
    drop(child); // SIGCONT, SIGKILL, reap
}

/// Read whatever arrives within `span`.
fn read_for(stream: &mut TcpStream, span: Duration, ctxs: &[&Context]) -> Vec<u8> {
    stream.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + span;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        for c in ctxs {
            c.wait(Some(Duration::from_millis(1))).unwrap();
        }
        match stream.read(&mut buf) {
            Ok(0) => panic!("closed"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    got
}

#[test]
fn a_stock_client_never_receives_a_ping() {
    let (srv, uri, held) = server(keepalive(30, 60));
    let addr = uri.strip_prefix("tcp://").unwrap();
    let mut stock = TcpStream::connect(addr).unwrap();
    // A stock request that is never answered, then quiet for many intervals.
    let mut wire = Vec::new();
    codec::encode_request(&mut wire, 1, b"hang", &[0x90]);
    stock.write_all(&wire).unwrap();
    let got = read_for(&mut stock, Duration::from_millis(600), &[&srv]);
    assert_eq!(held.borrow().len(), 1, "the request arrived");
    assert!(got.is_empty(), "a stock client received {got:02x?}");
    // Still open and served: an echo is answered.
    wire.clear();
    codec::encode_request(&mut wire, 2, b"echo", &[0x91, 0x05]);
    stock.write_all(&wire).unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while got.len() < 6 {
        assert!(Instant::now() < end, "no echo: {got:02x?}");
        got.extend(read_for(&mut stock, Duration::from_millis(10), &[&srv]));
    }
    assert_eq!(got, [0x94, 0x01, 0x02, 0xc0, 0x91, 0x05]);
}

#[test]
fn a_stock_server_never_receives_a_ping() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("tcp://{}", listener.local_addr().unwrap());
    let cli = Context::new(keepalive(30, 60)).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let results: Results = Rc::default();
    cli.call(conn, b"hang", &[0x90], None, collector(&results)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let mut stock = loop {
        cli.wait(Some(Duration::from_millis(1))).unwrap();
        if let Ok((s, _)) = listener.accept() {
            break s;
        }
        assert!(Instant::now() < end, "no connection");
    };
    // The hello and the call arrive; the hello is refused as a stock server would.
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while !got.windows(4).any(|w| w == b"hang") {
        assert!(Instant::now() < end, "no call: {got:02x?}");
        got.extend(read_for(&mut stock, Duration::from_millis(10), &[&cli]));
    }
    let mut err = Vec::new();
    codec::encode_error(&mut err, 2, b"no such method: joint.hello");
    let mut wire = Vec::new();
    codec::encode_response(&mut wire, 1, &err, codec::NIL);
    stock.write_all(&wire).unwrap();
    run_until(&[&cli], Duration::from_secs(10), "the refusal", || cli.extension(conn) == Some(ExtMode::Refused));
    // Quiet for twenty intervals: not a byte, and the call is still pending.
    let after = read_for(&mut stock, Duration::from_millis(600), &[&cli]);
    assert!(after.is_empty(), "a stock server received {after:02x?}");
    assert!(results.borrow().is_empty(), "{:?}", results.borrow());
    assert!(cli.is_open(conn));
}

/// Our fd whose socket has these addresses (joint's end of a connection the test made).
fn fd_of(local: SocketAddr, peer: SocketAddr) -> Option<RawFd> {
    fn addr(fd: RawFd, peer: bool) -> Option<SocketAddr> {
        // SAFETY: a zeroed sockaddr_storage of the size given; the kernel fills at most that.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let p = (&mut storage as *mut libc::sockaddr_storage).cast();
        // SAFETY: as above; fd is any number (a non-socket just fails).
        let rc = unsafe { if peer { libc::getpeername(fd, p, &mut len) } else { libc::getsockname(fd, p, &mut len) } };
        if rc != 0 || storage.ss_family != libc::AF_INET as libc::sa_family_t {
            return None;
        }
        // SAFETY: the family says it is a sockaddr_in.
        let sin: libc::sockaddr_in = unsafe { *(&storage as *const libc::sockaddr_storage).cast() };
        let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
    }
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Ok(fd) = entry.unwrap().file_name().to_string_lossy().parse::<RawFd>() else { continue };
        if addr(fd, false) == Some(local) && addr(fd, true) == Some(peer) {
            return Some(fd);
        }
    }
    None
}

fn int_option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> i32 {
    let mut value: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a c_int and its size; fd is a socket of this process.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut libc::c_int).cast(), &mut len) };
    assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
    value
}

/// (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT)
fn tcp_keepalive_of(fd: RawFd) -> (i32, i32, i32, i32) {
    (
        int_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
    )
}

#[test]
fn tcp_keepalive_is_set_on_accepted_and_connected_sockets() {
    let config = Config { tcp_keepalive: Some(Duration::from_millis(7500)), ..Config::default() };
    // Accepted: joint listens, a plain socket connects.
    let (srv, uri, _held) = server(config.clone());
    let peer = TcpStream::connect(uri.strip_prefix("tcp://").unwrap()).unwrap();
    let mut fd = None;
    let end = Instant::now() + Duration::from_secs(10);
    while fd.is_none() {
        assert!(Instant::now() < end, "not accepted");
        srv.wait(Some(Duration::from_millis(1))).unwrap();
        fd = fd_of(peer.peer_addr().unwrap(), peer.local_addr().unwrap());
    }
    run_for(&[&srv], Duration::from_millis(20));
    // 7.5 s rounds up to 8; probes every 8 / 3 = 2 s; 3 of them.
    assert_eq!(tcp_keepalive_of(fd.unwrap()), (1, 8, 2, 3));
    // The plain socket's own options are not joint's business: it was not touched.
    assert_eq!(int_option(peer.as_raw_fd(), libc::SOL_SOCKET, libc::SO_KEEPALIVE), 0);

    // Connected: joint connects to a plain listener.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let cli = Context::new(config).unwrap();
    let conn = cli.connect(&format!("tcp://{}", listener.local_addr().unwrap())).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    run_until(&[&cli], Duration::from_secs(10), "the connection to open", || cli.is_open(conn) && cli.peer_address(conn).is_some());
    run_for(&[&cli], Duration::from_millis(20));
    let fd = fd_of(accepted.peer_addr().unwrap(), accepted.local_addr().unwrap()).unwrap();
    assert_eq!(tcp_keepalive_of(fd), (1, 8, 2, 3));

    // Off: the socket is left as the OS made it.
    let off = Context::new(Config { tcp_keepalive: None, ..Config::default() }).unwrap();
    let conn = off.connect(&format!("tcp://{}", listener.local_addr().unwrap())).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    run_until(&[&off], Duration::from_secs(10), "the connection to open", || off.is_open(conn) && off.peer_address(conn).is_some());
    let fd = fd_of(accepted.peer_addr().unwrap(), accepted.local_addr().unwrap()).unwrap();
    assert_eq!(int_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 0);
}

#[test]
fn c_setters_check_their_values() {
    use joint::ffi::*;
    let mut config: *mut joint_config = std::ptr::null_mut();
    // SAFETY: the out-param is valid; the configuration is used while alive and freed once.
    unsafe {
        assert_eq!(joint_config_new(&mut config), JOINT_OK);
        assert_eq!(joint_config_set_keepalive_ms(config, 0, 1000), JOINT_E_INVAL);
        assert_eq!(joint_config_set_keepalive_ms(config, -2, 1000), JOINT_E_INVAL);
        assert_eq!(joint_config_set_keepalive_ms(config, 1000, 0), JOINT_E_INVAL);
        assert_eq!(joint_config_set_keepalive_ms(config, 1000, -1), JOINT_E_INVAL);
        assert_eq!(joint_config_set_keepalive_ms(config, 100, 300), JOINT_OK);
        assert_eq!(joint_config_set_keepalive_ms(config, -1, 300), JOINT_OK);
        assert_eq!(joint_config_set_tcp_keepalive_ms(config, 0), JOINT_E_INVAL);
        assert_eq!(joint_config_set_tcp_keepalive_ms(config, -1), JOINT_OK);
        assert_eq!(joint_config_set_tcp_keepalive_ms(config, 5000), JOINT_OK);
        assert_eq!(joint_config_set_keepalive_ms(std::ptr::null_mut(), 100, 300), JOINT_E_NULL);
        joint_config_free(config);
    }
}

#[test]
fn a_client_that_does_not_run_its_loop_between_calls_is_not_taken_for_dead() {
    // The server pings only peers it waits for: a blocking client, idle and not processing
    // for many timeouts, keeps its connection and calls again afterwards.
    let (config, lines) = logging(keepalive(50, 150));
    let (srv, uri, _held) = {
        let ctx = Context::new(config).unwrap();
        let l = ctx.listen("tcp://127.0.0.1:0").unwrap();
        let uri = ctx.listener_uri(l).unwrap();
        ctx.register(
            b"echo",
            Rc::new(|_ctx, req| {
                let args = req.args().to_vec();
                let _ = req.reply(&args);
            }),
        );
        (ctx, uri, ())
    };
    let cli = Context::new(keepalive(50, 150)).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let results: Results = Rc::default();
    cli.call(conn, b"echo", &[0x91, 1], None, collector(&results)).unwrap();
    run_until(&[&srv, &cli], Duration::from_secs(10), "the first answer", || results.borrow().len() == 1);
    assert_eq!(cli.extension(conn), Some(ExtMode::On));
    // Only the server runs, for more than six of its timeouts.
    run_for(&[&srv], Duration::from_millis(1000));
    assert_eq!(lines.borrow().iter().filter(|l| l.contains("keepalive ping sent")).count(), 0, "{:?}", lines.borrow());
    assert_eq!(lines.borrow().iter().filter(|l| l.contains("no answer to keepalive ping")).count(), 0);
    cli.call(conn, b"echo", &[0x91, 2], None, collector(&results)).unwrap();
    run_until(&[&srv, &cli], Duration::from_secs(10), "the second answer", || results.borrow().len() == 2);
    assert_eq!(results.borrow()[1], Ok(vec![0x91, 2]));
}
