//! TLS through the Rust API: a server and a client context in one thread, certificates made
//! by the test (rcgen). Every failure must close only that connection, name its cause, and
//! come within the connect (or message) timeout; the server keeps serving.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use joint::error::ErrorKind;
use joint::reactor::{ClientAuth, Config, ConnEvent, Context, Response, TlsConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn make_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    Ca { cert: params.self_signed(&key).unwrap(), key }
}

/// A leaf certificate for `names` signed by `ca`: (chain PEM, key PEM, DER).
fn leaf(ca: &Ca, cn: &str, names: &[&str], expired: bool) -> (String, String, Vec<u8>) {
    let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.distinguished_name.push(DnType::OrganizationName, "joint tests");
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

fn server_tls(ca: &Ca, auth: ClientAuth) -> TlsConfig {
    let (chain, key, _) = leaf(ca, "server", &["localhost", "127.0.0.1"], false);
    let mut tls = TlsConfig::new();
    tls.set_certificate_pem(chain.as_bytes(), key.as_bytes()).unwrap();
    if auth != ClientAuth::None {
        tls.set_ca_pem(ca.cert.pem().as_bytes()).unwrap();
        tls.set_client_auth(auth);
    }
    tls
}

fn client_tls(ca: &Ca) -> TlsConfig {
    let mut tls = TlsConfig::new();
    tls.set_ca_pem(ca.cert.pem().as_bytes()).unwrap();
    tls
}

/// Connection events the server saw, and the ids of the connections it announced.
#[derive(Default)]
struct Seen {
    lines: Vec<String>,
    opened: Vec<joint::reactor::ConnId>,
}

type Events = Rc<RefCell<Seen>>;

/// A server context that echoes `[x]` -> x and records its connection events.
fn server(config: Config, tls: &TlsConfig) -> (Context, String, Events) {
    let ctx = Context::new(config).unwrap();
    let l = ctx.listen_tls("tls://127.0.0.1:0", tls).unwrap();
    let uri = ctx.listener_uri(l).unwrap();
    ctx.register(
        b"echo",
        Rc::new(|_ctx, req| {
            let args = req.args().to_vec();
            req.reply(&args[1..]).unwrap();
        }),
    );
    let events: Events = Rc::default();
    let seen = events.clone();
    ctx.set_conn_event_handler(Some(Rc::new(move |_ctx: &Context, id, ev: ConnEvent<'_>| {
        let mut seen = seen.borrow_mut();
        let line = match ev {
            ConnEvent::Open => {
                seen.opened.push(id);
                format!("open {id}")
            }
            ConnEvent::Closed { reason, .. } => format!("closed {id}: {reason}"),
            other => format!("{other:?} {id}"),
        };
        seen.lines.push(line);
    })));
    (ctx, uri, events)
}

fn run_until(a: &Context, b: &Context, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        a.process().unwrap();
        b.wait(Some(Duration::from_millis(1))).unwrap();
    }
}

type Outcome = Rc<RefCell<Option<Result<Vec<u8>, (ErrorKind, String)>>>>;

fn call(cli: &Context, conn: joint::reactor::ConnId, value: u8) -> Outcome {
    let out: Outcome = Rc::default();
    let o = out.clone();
    let done = Box::new(move |_c: &Context, r: Response<'_>| {
        *o.borrow_mut() = Some(r.outcome.map(|v| v.to_vec()).map_err(|e| (e.kind, e.message.to_string())));
    });
    cli.call(conn, b"echo", &[0x91, value], Some(Duration::from_secs(5)), done).unwrap();
    out
}

/// Call through a fresh client with `tls`, returning the outcome.
fn call_with(srv: &Context, uri: &str, tls: &TlsConfig) -> Result<Vec<u8>, (ErrorKind, String)> {
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect_tls(uri, tls).unwrap();
    let out = call(&cli, conn, 7);
    run_until(srv, &cli, || out.borrow().is_some());
    let r = out.borrow_mut().take().unwrap();
    r
}

#[test]
fn calls_over_tls_and_what_the_handshake_settled() {
    let ca = make_ca("test CA");
    let (srv, uri, events) = server(Config::default(), &server_tls(&ca, ClientAuth::None));
    assert!(uri.starts_with("tls://127.0.0.1:"), "{uri}");
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect_tls(&uri, &client_tls(&ca)).unwrap();
    let outs: Vec<Outcome> = (0..50).map(|i| call(&cli, conn, i)).collect();
    run_until(&srv, &cli, || outs.iter().all(|o| o.borrow().is_some()));
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(o.borrow().clone().unwrap(), Ok(vec![i as u8]));
    }
    let session = cli.tls_session(conn).expect("a TLS session");
    assert_eq!(session.version, "TLSv1.3");
    // AES-128-GCM is preferred (faster; see tls_config::provider).
    assert_eq!(session.cipher_suite, "TLS13_AES_128_GCM_SHA256");
    let server_cert = session.peer_certificate.expect("the server's certificate");
    assert!(server_cert.subject.contains("CN=server"), "{}", server_cert.subject);
    // The server saw no client certificate, and announced the connection once.
    assert_eq!(events.borrow().opened.len(), 1, "{:?}", events.borrow().lines);
}

#[test]
fn mutual_tls_shows_the_client_certificate() {
    let ca = make_ca("test CA");
    let (srv, uri, events) = server(Config::default(), &server_tls(&ca, ClientAuth::Required));
    let (chain, key, der) = leaf(&ca, "alice", &["alice.example"], false);
    let mut tls = client_tls(&ca);
    tls.set_certificate_pem(chain.as_bytes(), key.as_bytes()).unwrap();
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect_tls(&uri, &tls).unwrap();
    let out = call(&cli, conn, 1);
    run_until(&srv, &cli, || out.borrow().is_some());
    assert_eq!(out.borrow().clone().unwrap(), Ok(vec![1]));
    // The server's view of the one connection it accepted.
    let ids = events.borrow().opened.clone();
    assert_eq!(ids.len(), 1);
    let peer = srv.tls_session(ids[0]).unwrap().peer_certificate.expect("the client's certificate");
    assert!(peer.subject.contains("CN=alice") && peer.subject.contains("O=joint tests"), "{}", peer.subject);
    assert_eq!(peer.der, der);
    assert_eq!(peer.sha256.as_slice(), ring::digest::digest(&ring::digest::SHA256, &der).as_ref());
}

#[test]
fn optional_client_auth_serves_clients_without_a_certificate() {
    let ca = make_ca("test CA");
    let (srv, uri, events) = server(Config::default(), &server_tls(&ca, ClientAuth::Optional));
    assert_eq!(call_with(&srv, &uri, &client_tls(&ca)), Ok(vec![7]));
    let ids = events.borrow().opened.clone();
    assert!(srv.tls_session(ids[0]).unwrap().peer_certificate.is_none());
    // A certificate from another CA is refused even though one is optional.
    let other = make_ca("other CA");
    let (chain, key, _) = leaf(&other, "mallory", &["m.example"], false);
    let mut tls = client_tls(&ca);
    tls.set_certificate_pem(chain.as_bytes(), key.as_bytes()).unwrap();
    let (kind, message) = call_with(&srv, &uri, &tls).unwrap_err();
    assert_eq!(kind, ErrorKind::Tls, "{message}");
    assert!(message.contains("refused our certificate"), "{message}");
}

#[test]
fn each_handshake_failure_names_its_cause_and_the_server_serves_on() {
    let ca = make_ca("test CA");
    let (srv, uri, events) = server(Config::default(), &server_tls(&ca, ClientAuth::None));
    let expect = |tls: &TlsConfig, uri: &str, needle: &str| {
        let started = Instant::now();
        let (kind, message) = call_with(&srv, uri, tls).unwrap_err();
        assert_eq!(kind, ErrorKind::Tls, "{message}");
        assert!(message.contains(needle), "{message:?} should say {needle:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    };
    // Unknown issuer: the client trusts another CA.
    expect(&client_tls(&make_ca("other CA")), &uri, "not signed by a trusted CA");
    // Name mismatch: the certificate is for localhost and 127.0.0.1.
    let mut named = client_tls(&ca);
    named.set_server_name("db.example").unwrap();
    expect(&named, &uri, "name mismatch");
    // The system's roots do not know the test CA either.
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(&uri).unwrap();
    let out = call(&cli, conn, 1);
    run_until(&srv, &cli, || out.borrow().is_some());
    let (kind, message) = out.borrow().clone().unwrap().unwrap_err();
    assert_eq!(kind, ErrorKind::Tls, "{message}");
    // A good client is still served, and the failed ones were never announced.
    assert_eq!(call_with(&srv, &uri, &client_tls(&ca)), Ok(vec![7]));
    let seen = events.borrow();
    assert_eq!(seen.opened.len(), 1, "{:?}", seen.lines);
    assert!(!seen.lines.iter().any(|e| e.contains("TLS")), "{:?}", seen.lines);
}

#[test]
fn an_expired_server_certificate_is_refused() {
    let ca = make_ca("test CA");
    let (chain, key, _) = leaf(&ca, "server", &["127.0.0.1"], true);
    let mut tls = TlsConfig::new();
    tls.set_certificate_pem(chain.as_bytes(), key.as_bytes()).unwrap();
    let (srv, uri, _) = server(Config::default(), &tls);
    let (kind, message) = call_with(&srv, &uri, &client_tls(&ca)).unwrap_err();
    assert_eq!(kind, ErrorKind::Tls);
    assert!(message.contains("expired"), "{message}");
}

#[test]
fn a_missing_client_certificate_is_refused_by_name() {
    let ca = make_ca("test CA");
    let (srv, uri, _) = server(Config::default(), &server_tls(&ca, ClientAuth::Required));
    let (kind, message) = call_with(&srv, &uri, &client_tls(&ca)).unwrap_err();
    assert_eq!(kind, ErrorKind::Tls, "{message}");
    assert!(message.contains("requires a client certificate"), "{message}");
}

#[test]
fn plaintext_and_tls_mixed_up_fail_with_a_hint() {
    let ca = make_ca("test CA");
    let (srv, uri, _) = server(Config::default(), &server_tls(&ca, ClientAuth::None));
    // A plaintext client on the TLS port.
    let cli = Context::new(Config::default()).unwrap();
    let conn = cli.connect(&uri.replace("tls://", "tcp://")).unwrap();
    let out = call(&cli, conn, 1);
    run_until(&srv, &cli, || out.borrow().is_some());
    let (_, message) = out.borrow().clone().unwrap().unwrap_err();
    assert!(message.contains("speaks TLS"), "{message}");
    // A TLS client on a plaintext port.
    let plain = Context::new(Config::default()).unwrap();
    let l = plain.listen("tcp://127.0.0.1:0").unwrap();
    let plain_uri = plain.listener_uri(l).unwrap().replace("tcp://", "tls://");
    let (kind, message) = call_with(&plain, &plain_uri, &client_tls(&ca)).unwrap_err();
    assert_eq!(kind, ErrorKind::Tls, "{message}");
    assert!(message.contains("plaintext port"), "{message}");
    // The TLS server still serves.
    assert_eq!(call_with(&srv, &uri, &client_tls(&ca)), Ok(vec![7]));
}

#[test]
fn a_handshake_that_never_finishes_is_closed_by_the_message_timeout() {
    let ca = make_ca("test CA");
    let config = Config { message_timeout: Some(Duration::from_millis(300)), ..Config::default() };
    let (srv, uri, events) = server(config, &server_tls(&ca, ClientAuth::None));
    let addr = uri.trim_start_matches("tls://").to_string();
    // Half a ClientHello, then silence.
    let mut raw = std::net::TcpStream::connect(&addr).unwrap();
    raw.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    raw.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(5) && !closed {
        srv.wait(Some(Duration::from_millis(20))).unwrap();
        let mut buf = [0u8; 64];
        closed = matches!(raw.read(&mut buf), Ok(0)) || matches!(raw.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
    }
    assert!(closed, "the stalled handshake was not closed");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "closed after {took:?}");
    assert!(events.borrow().lines.is_empty(), "{:?}", events.borrow().lines);
}

#[test]
fn tls_settings_are_checked_when_given() {
    let mut tls = TlsConfig::new();
    let e = tls.set_certificate_pem(b"not pem", b"not pem").unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    let e = tls.set_certificate_files("/nonexistent/cert.pem", "/nonexistent/key.pem").unwrap_err();
    assert!(e.message.contains("/nonexistent/cert.pem"), "{}", e.message);
    let ca = make_ca("test CA");
    let (chain, _, _) = leaf(&ca, "a", &["a.example"], false);
    let (_, other_key, _) = leaf(&ca, "b", &["b.example"], false);
    let e = tls.set_certificate_pem(chain.as_bytes(), other_key.as_bytes()).unwrap_err();
    assert!(e.message.contains("is not the key"), "{}", e.message);
    let ctx = Context::new(Config::default()).unwrap();
    let e = ctx.listen("tls://127.0.0.1:0").unwrap_err();
    assert!(e.message.contains("needs a certificate"), "{}", e.message);
    let e = ctx.listen_tls("tcp://127.0.0.1:0", &server_tls(&ca, ClientAuth::None)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    let mut fresh = TlsConfig::new();
    let (chain, key, _) = leaf(&ca, "s", &["127.0.0.1"], false);
    fresh.set_certificate_pem(chain.as_bytes(), key.as_bytes()).unwrap();
    fresh.set_client_auth(ClientAuth::Required);
    let e = ctx.listen_tls("tls://127.0.0.1:0", &fresh).unwrap_err();
    assert!(e.message.contains("CA"), "{}", e.message);
}

#[test]
fn the_accept_handler_sees_the_verified_certificate_and_can_refuse_it() {
    let ca = make_ca("test CA");
    let (srv, uri, events) = server(Config::default(), &server_tls(&ca, ClientAuth::Required));
    let asked: Rc<RefCell<Vec<String>>> = Rc::default();
    let a = asked.clone();
    // Only alice, although the CA signed bob's certificate too.
    srv.set_accept_handler(Some(Rc::new(move |ctx: &Context, id| {
        let session = ctx.tls_session(id).expect("called after the handshake");
        let subject = session.peer_certificate.map(|c| c.subject.clone()).unwrap_or_default();
        a.borrow_mut().push(format!("{} {subject}", ctx.peer_address(id).unwrap_or_default()));
        subject.contains("CN=alice")
    })));
    let with_cert = |cn: &str| {
        let (chain, key, _) = leaf(&ca, cn, &[], false);
        let mut tls = client_tls(&ca);
        tls.set_certificate_pem(chain.as_bytes(), key.as_bytes()).unwrap();
        tls
    };
    let refused = call_with(&srv, &uri, &with_cert("bob"));
    assert_eq!(refused.as_ref().map_err(|e| e.0), Err(ErrorKind::Closed), "{refused:?}");
    assert_eq!(call_with(&srv, &uri, &with_cert("alice")), Ok(vec![7]));
    let asked = asked.borrow();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked[0].starts_with("tls://127.0.0.1:") && asked[0].contains("CN=bob"), "{asked:?}");
    assert!(asked[1].contains("CN=alice"), "{asked:?}");
    // Only alice's connection was announced.
    assert_eq!(events.borrow().opened.len(), 1, "{:?}", events.borrow().lines);
}
