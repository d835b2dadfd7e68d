//! `joint serve` attacked as a hostile peer would: each test drives peers past one limit and
//! asserts the bound — the server's peak RSS, its fds, that it stays alive, and that a
//! well-behaved client's calls keep answering promptly meanwhile. Each prints one
//! `ATTACK|...` line, which bench/bench.sh collects into the "limits under attack" table of
//! docs/BENCHMARKS.md. (Its own test binary; the tests run one at a time.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use joint::codec::{self, Message};

const MIB: u64 = 1 << 20;

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

// ---- the server under attack -------------------------------------------------------------

struct Server {
    child: Child,
    /// The plaintext listener's address (host:port).
    addr: String,
    /// The TLS listener's (started by `start_tls`), or empty.
    tls_addr: String,
    log_lines: Arc<AtomicUsize>,
}

#[derive(Default, Clone, Copy)]
struct Rlimits {
    address_space: Option<u64>,
    files: Option<u64>,
}

impl Server {
    fn start(args: &[&str], limits: Rlimits) -> Server {
        Server::spawn(&[], args, limits)
    }

    /// Listening on tls:// (with `tls`'s server certificate) as well as tcp://.
    fn start_tls(tls: &TlsFiles, args: &[&str], limits: Rlimits) -> Server {
        let (cert, key) = (tls.path("server.pem"), tls.path("server-key.pem"));
        Server::spawn(&["--listen", "tls://127.0.0.1:0", "--tls-cert", &cert, "--tls-key", &key], args, limits)
    }

    fn spawn(listen: &[&str], args: &[&str], limits: Rlimits) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_joint"));
        cmd.args(["serve", "--listen", "tcp://127.0.0.1:0"]).args(listen).args(args).env("JOINT_LOG", "info").stderr(Stdio::piped());
        // SAFETY: only async-signal-safe setrlimit calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let set = |resource, value: u64| {
                    let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
                    if libc::setrlimit(resource, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                };
                if let Some(v) = limits.address_space {
                    set(libc::RLIMIT_AS, v)?;
                }
                if let Some(v) = limits.files {
                    set(libc::RLIMIT_NOFILE, v)?;
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn joint serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let wanted = 1 + listen.iter().filter(|a| **a == "--listen").count();
        let mut uris = Vec::new();
        while uris.len() < wanted {
            let line = lines.next().expect("joint serve said nothing").unwrap();
            if let Some(u) = line.strip_prefix("listening on ") {
                uris.push(u.trim().to_string());
            }
        }
        let log_lines = Arc::new(AtomicUsize::new(0));
        let counter = log_lines.clone();
        thread::spawn(move || {
            for _ in lines {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let find = |scheme: &str| uris.iter().find_map(|u| u.strip_prefix(scheme)).unwrap_or_default().to_string();
        Server { addr: find("tcp://"), tls_addr: find("tls://"), child, log_lines }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("the server is alive");
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn rss(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    /// Peak resident set since the server started.
    fn peak(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).unwrap().count()
    }

    /// User + system CPU time the server has used.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 1000 / hz)
    }

    fn assert_alive(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "the server died: {:?}", self.child.try_wait());
    }

    /// Wait until the server's fds are back to `base` (or fewer).
    fn wait_fds(&self, base: usize, within: Duration) -> Duration {
        let start = Instant::now();
        while self.fds() > base {
            assert!(start.elapsed() < within, "fds stayed at {} (baseline {base}) for {within:?}", self.fds());
            thread::sleep(Duration::from_millis(10));
        }
        start.elapsed()
    }
}

impl Server {
    /// Wait until the server holds at least `want` fds (the attack's connections are in).
    fn wait_fds_up(&self, want: usize, within: Duration) {
        let start = Instant::now();
        while self.fds() < want {
            assert!(start.elapsed() < within, "the server holds {} fds, expected {want}", self.fds());
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- raw MessagePack-RPC peers -------------------------------------------------------------

fn request(msgid: u32, method: &str, params: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_request(&mut out, msgid, method.as_bytes(), params);
    out
}

fn uint_params(values: &[u64]) -> Vec<u8> {
    let mut p = Vec::new();
    codec::write_array_len(&mut p, values.len() as u32);
    for v in values {
        codec::write_uint(&mut p, *v);
    }
    p
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s
}

fn set_rcvbuf(s: &TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a valid socket with a pointer to a c_int of the size given.
    unsafe {
        libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, (&bytes as *const libc::c_int).cast(), 4);
    }
}

/// Read one whole message from a blocking stream.
fn read_message<S: Read + ?Sized>(s: &mut S, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let whole = codec::FrameLimits { max_message_size: usize::MAX, max_depth: 1000 };
    loop {
        if let Some(n) = codec::object_len(buf, whole) {
            let message = buf[..n].to_vec();
            buf.drain(..n);
            return Ok(message);
        }
        let mut chunk = [0u8; 64 << 10];
        match s.read(&mut chunk)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A well-behaved client calling `echo` lock-step on its own connection every few ms, timing
/// each call, for as long as the attack runs.
struct Control {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<Duration>>,
}

/// A blocking byte stream: a TcpStream, or a TLS session over one.
trait Duplex: Read + Write + Send {}
impl<T: Read + Write + Send> Duplex for T {}

impl Control {
    fn start(addr: &str) -> Control {
        let s = connect(addr);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Control::on(Box::new(s))
    }

    /// The same over TLS (its handshake done first).
    fn start_tls(addr: &str, config: &Arc<rustls::ClientConfig>) -> Control {
        let s = connect_tls(addr, config).expect("the control client's TLS handshake");
        s.sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Control::on(Box::new(s))
    }

    fn on(mut s: Box<dyn Duplex>) -> Control {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = thread::spawn(move || {
            let mut latencies = Vec::new();
            let mut buf = Vec::new();
            let mut id = 0u32;
            while !s2.load(Ordering::SeqCst) {
                id += 1;
                let t0 = Instant::now();
                s.write_all(&request(id, "echo", &uint_params(&[id as u64]))).expect("control call sent");
                let reply = read_message(&mut s, &mut buf).expect("control call answered within 10 s");
                let Ok(Message::Response { msgid, error, .. }) = codec::decode_message(&reply) else { panic!("not a response") };
                assert_eq!((msgid, error), (id, codec::NIL));
                latencies.push(t0.elapsed());
                thread::sleep(Duration::from_millis(5));
            }
            latencies
        });
        Control { stop, handle }
    }

    /// Stop; (calls, p50, p99, max) of the calls made.
    fn finish(self) -> Latency {
        self.stop.store(true, Ordering::SeqCst);
        let mut l = self.handle.join().expect("the control client failed");
        assert!(!l.is_empty(), "no control call completed");
        l.sort();
        let at = |q: f64| l[((l.len() - 1) as f64 * q) as usize];
        Latency { calls: l.len(), p50: at(0.5), p99: at(0.99), max: *l.last().unwrap() }
    }
}

struct Latency {
    calls: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The line bench/bench.sh turns into a row of the "limits under attack" table.
fn report(attack: &str, server: &Server, base_rss: u64, control: &Latency, outcome: &str) {
    println!(
        "ATTACK|{attack}|{:.0}|{:.0}|{}|{:.2}|{:.2}|{:.2}|{outcome}",
        base_rss as f64 / MIB as f64,
        server.peak() as f64 / MIB as f64,
        control.calls,
        ms(control.p50),
        ms(control.p99),
        ms(control.max)
    );
}

fn assert_prompt(control: &Latency, what: &str) {
    assert!(control.p99 < Duration::from_millis(250), "{what}: control calls p99 {:?} (max {:?})", control.p99, control.max);
}

// ---- the attacks ---------------------------------------------------------------------------

/// Many connections each send a request whose header declares a 60 MiB bin (14 bytes, then
/// one more byte): the server allocates with what arrives, not with what is declared, so
/// it survives a 2 GiB address-space limit (where reserving 60 MiB per connection would
/// abort it after about 30 of them) with its memory nearly flat.
#[test]
fn declared_lengths_allocate_nothing() {
    let _serial = serial();
    const CONNS: usize = 200;
    let mut srv = Server::start(&[], Rlimits { address_space: Some(2 << 30), ..Default::default() });
    let base = srv.rss();
    let control = Control::start(&srv.addr);
    let mut header = vec![0x94, 0x00, 0x01, 0xa4, b'e', b'c', b'h', b'o', 0x91, 0xc6];
    header.extend_from_slice(&(60u32 << 20).to_be_bytes());
    let mut conns: Vec<TcpStream> = (0..CONNS)
        .map(|_| {
            let mut s = connect(&srv.addr);
            s.write_all(&header).unwrap();
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    for s in &mut conns {
        s.write_all(&[0x00]).unwrap();
    }
    thread::sleep(Duration::from_millis(500));
    srv.assert_alive();
    let control = control.finish();
    let grew = srv.peak().saturating_sub(base);
    report(&format!("{CONNS} connections declaring a 60 MiB bin (15 bytes each), RLIMIT_AS 2 GiB"), &srv, base, &control, "alive");
    assert!(grew < 32 * MIB, "peak RSS grew by {} MiB", grew / MIB);
    assert_prompt(&control, "declared lengths");
}

/// Clients that pipeline `blob(1 MiB)` and never read: each is stopped at the output
/// high-water mark (back-pressure), so together they hold a few MiB, far under the budget,
/// and the well-behaved client is answered promptly throughout.
#[test]
fn pipelining_without_reading_is_held_back() {
    let _serial = serial();
    const EVIL: usize = 8;
    let mut srv = Server::start(&["--memory-budget-mib", "64"], Rlimits::default());
    let base = srv.rss();
    let control = Control::start(&srv.addr);
    let batch: Vec<u8> = (0..300).flat_map(|i| request(i, "blob", &uint_params(&[MIB]))).collect();
    let evil: Vec<TcpStream> = (0..EVIL)
        .map(|_| {
            let mut s = connect(&srv.addr);
            set_rcvbuf(&s, 16 << 10);
            s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
            // The server stops reading once its output is over the mark: part of the batch
            // may stay unsent (the write times out), which is the point.
            let _ = s.write_all(&batch);
            s
        })
        .collect();
    thread::sleep(Duration::from_secs(2));
    srv.assert_alive();
    let control = control.finish();
    let grew = srv.peak().saturating_sub(base);
    report(&format!("{EVIL} clients pipelining blob(1 MiB) without reading, budget 64 MiB"), &srv, base, &control, "held back");
    assert!(grew < 64 * MIB + 16 * MIB, "peak RSS grew by {} MiB with a 64 MiB budget", grew / MIB);
    assert_prompt(&control, "non-reading pipeliners");
    drop(evil);
}

/// Clients that pipeline 8 × `blob(60 MiB)` and vanish: what is queued for them is dropped
/// at the first failed write, the server stops working for them at once (its CPU goes quiet
/// and their fds are freed within a second), and its peak stays within the budget plus the
/// one answer a handler is building.
#[test]
fn work_for_vanished_peers_stops() {
    let _serial = serial();
    const EVIL: usize = 8;
    let mut srv = Server::start(&["--memory-budget-mib", "128"], Rlimits::default());
    let base = srv.rss();
    let base_fds = srv.fds();
    let control = Control::start(&srv.addr);
    let batch: Vec<u8> = (0..8).flat_map(|i| request(i, "blob", &uint_params(&[60 * MIB]))).collect();
    for _ in 0..EVIL {
        let mut s = connect(&srv.addr);
        s.write_all(&batch).unwrap();
        thread::sleep(Duration::from_millis(50));
        drop(s); // unread data: the kernel resets the connection
    }
    let freed = srv.wait_fds(base_fds + 1, Duration::from_secs(5));
    let cpu0 = srv.cpu();
    thread::sleep(Duration::from_secs(1));
    let busy = srv.cpu() - cpu0;
    srv.assert_alive();
    let control = control.finish();
    let grew = srv.peak().saturating_sub(base);
    report(
        &format!("{EVIL} clients pipelining 8 × blob(60 MiB), then vanishing; budget 128 MiB"),
        &srv,
        base,
        &control,
        &format!("fds freed {:.0} ms after the last left; {:.0} ms CPU in the second after", ms(freed), ms(busy)),
    );
    assert!(busy < Duration::from_millis(300), "the server kept working for gone peers: {busy:?} CPU in a second");
    assert!(grew < 128 * MIB + 2 * 64 * MIB + 32 * MIB, "peak RSS grew by {} MiB with a 128 MiB budget", grew / MIB);
    assert_prompt(&control, "vanishing peers");
}

/// More clients than the server has fds, each sending `sleep(one day)` and closing: the
/// linger cancels their requests and frees their fds, the server keeps serving the
/// connections it has while out of fds, backs off accepting without flooding its log, and
/// new clients are served again right after.
#[test]
fn closed_peers_give_their_fds_back() {
    let _serial = serial();
    const CLIENTS: usize = 300;
    let mut srv = Server::start(&["--linger-ms", "300"], Rlimits { files: Some(128), ..Default::default() });
    let base_fds = srv.fds();
    let base = srv.rss();
    let control = Control::start(&srv.addr);
    let lines_before = srv.log_lines.load(Ordering::Relaxed);
    let sleep = request(1, "sleep", &uint_params(&[86_400_000]));
    let clients: Vec<thread::JoinHandle<()>> = (0..CLIENTS)
        .map(|i| {
            let addr = srv.addr.clone();
            let sleep = sleep.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis((i % 30) as u64 * 10));
                if let Ok(mut s) = TcpStream::connect(&addr) {
                    let _ = s.write_all(&sleep);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let freed = srv.wait_fds(base_fds + 1, Duration::from_secs(10));
    // A new client is served.
    let mut fresh = connect(&srv.addr);
    fresh.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    fresh.write_all(&request(7, "echo", &uint_params(&[7]))).unwrap();
    let reply = read_message(&mut fresh, &mut Vec::new()).expect("a new client is answered");
    assert!(matches!(codec::decode_message(&reply), Ok(Message::Response { msgid: 7, .. })));
    srv.assert_alive();
    let control = control.finish();
    let lines = srv.log_lines.load(Ordering::Relaxed) - lines_before;
    report(
        &format!("{CLIENTS} clients sending sleep(1 day) and closing, 128 fds, linger 300 ms"),
        &srv,
        base,
        &control,
        &format!("fds back {:.1} s after the last client; {lines} log lines", freed.as_secs_f64()),
    );
    assert!(lines < 200, "{lines} log lines for {CLIENTS} clients");
    assert_prompt(&control, "fd exhaustion");
}

/// Connections that send a message a byte at a time and never finish it (slowloris) are
/// closed when the message timeout passes; their fds come back.
#[test]
fn trickling_messages_time_out() {
    let _serial = serial();
    const CONNS: usize = 200;
    let mut srv = Server::start(&["--message-timeout-ms", "800"], Rlimits::default());
    let base_fds = srv.fds();
    let base = srv.rss();
    let control = Control::start(&srv.addr);
    let message = request(1, "echo", &uint_params(&[1, 2, 3, 4, 5, 6, 7, 8]));
    let mut conns: Vec<TcpStream> = (0..CONNS).map(|_| connect(&srv.addr)).collect();
    let start = Instant::now();
    let mut closed = 0;
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(3) && closed < CONNS {
        closed = 0;
        for s in &mut conns {
            if sent < message.len() - 1 && s.write_all(&message[sent..sent + 1]).is_err() {
                closed += 1;
            }
        }
        sent = (sent + 1).min(message.len() - 1);
        thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_millis(1500) {
            // By now every trickling connection should be gone: the server closed them.
            closed = conns.iter_mut().map(peer_closed).filter(|c| *c).count();
        }
    }
    let took = start.elapsed();
    assert_eq!(closed, CONNS, "{closed} of {CONNS} trickling connections closed after {took:?}");
    drop(conns);
    srv.wait_fds(base_fds + 1, Duration::from_secs(2));
    srv.assert_alive();
    let control = control.finish();
    report(
        &format!("{CONNS} connections trickling one message (slowloris), message timeout 800 ms"),
        &srv,
        base,
        &control,
        &format!("all closed within {:.1} s", took.as_secs_f64()),
    );
    assert_prompt(&control, "slowloris");
}

/// Whether the server closed this connection (a read sees EOF or a reset at once, after
/// whatever it sent before: a TLS alert, say).
fn peer_closed(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 4096];
    let closed = loop {
        match s.read(&mut b) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// Beyond `--max-connections`, connections are accepted and closed at once (the client sees
/// the close); those within it are served, and a slot freed is used again.
#[test]
fn connections_beyond_the_cap_are_closed_at_once() {
    let _serial = serial();
    let mut srv = Server::start(&["--max-connections", "20"], Rlimits::default());
    let base = srv.rss();
    let control = Control::start(&srv.addr); // one of the 20
    let mut within: Vec<TcpStream> = (0..19).map(|_| connect(&srv.addr)).collect();
    thread::sleep(Duration::from_millis(100));
    let mut beyond: Vec<TcpStream> = (0..5).map(|_| connect(&srv.addr)).collect();
    for s in &mut beyond {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 8];
        assert!(matches!(s.read(&mut b), Ok(0) | Err(_)), "a connection beyond the cap was not closed");
    }
    for (i, s) in within.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(&request(i as u32, "echo", &uint_params(&[1]))).unwrap();
        read_message(s, &mut Vec::new()).expect("a connection within the cap is served");
    }
    drop(within.pop());
    thread::sleep(Duration::from_millis(100));
    let mut again = connect(&srv.addr);
    again.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    again.write_all(&request(1, "echo", &uint_params(&[1]))).unwrap();
    read_message(&mut again, &mut Vec::new()).expect("a freed slot is used again");
    srv.assert_alive();
    let control = control.finish();
    report("25 connections against --max-connections 20", &srv, base, &control, "5 closed at once, 20 served");
    assert_prompt(&control, "connection cap");
}

/// A joint peer that starts 64 fragmented messages of 8 MiB and finishes none: the totals
/// being reassembled may add up to the message size limit (64 MiB) and no more, so the
/// connection is closed at the ninth; the memory held is what actually arrived. A single
/// unfinished fragmented message is closed by the message timeout.
#[test]
fn unfinished_fragmented_messages_are_bounded() {
    let _serial = serial();
    let mut srv = Server::start(&["--message-timeout-ms", "800"], Rlimits::default());
    let base = srv.rss();
    let control = Control::start(&srv.addr);
    let chunk = vec![0u8; 64 << 10];
    let mut s = negotiated(&srv.addr);
    let mut wire = Vec::new();
    for fragid in 0..64u32 {
        codec::encode_fragment(&mut wire, fragid, 8 * MIB, &chunk);
    }
    let _ = s.write_all(&wire);
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let t0 = Instant::now();
    assert!(read_until_closed(&mut s), "the server kept a connection reassembling 8 × 64 MiB");
    let cut = t0.elapsed();

    let mut stale = negotiated(&srv.addr);
    let mut wire = Vec::new();
    codec::encode_fragment(&mut wire, 1, 8 * MIB, &chunk);
    stale.write_all(&wire).unwrap();
    stale.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let t0 = Instant::now();
    assert!(read_until_closed(&mut stale), "an unfinished reassembly was not timed out");
    let stale_after = t0.elapsed();
    assert!(stale_after >= Duration::from_millis(700), "closed after {stale_after:?}, before the timeout");
    srv.assert_alive();
    let control = control.finish();
    let grew = srv.peak().saturating_sub(base);
    report(
        "64 unfinished fragmented messages of 8 MiB on one connection; then one left unfinished",
        &srv,
        base,
        &control,
        &format!("closed after {:.0} ms; the stale one after {:.0} ms", ms(cut), ms(stale_after)),
    );
    assert!(grew < 32 * MIB, "peak RSS grew by {} MiB", grew / MIB);
    assert_prompt(&control, "reassembly");
}

/// A raw connection that has negotiated the joint extension.
fn negotiated(addr: &str) -> TcpStream {
    let mut s = connect(addr);
    let mut params = Vec::new();
    codec::write_array_len(&mut params, 2);
    codec::write_uint(&mut params, 1);
    codec::write_map_len(&mut params, 1);
    codec::write_str(&mut params, b"fragment");
    codec::write_uint(&mut params, 64 << 10);
    s.write_all(&request(0, "joint.hello", &params)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let reply = read_message(&mut s, &mut Vec::new()).unwrap();
    assert!(matches!(codec::decode_message(&reply), Ok(Message::Response { msgid: 0, error: codec::NIL, .. })), "hello refused");
    s
}

/// Read (and drop) until the server closes; false if it did not within the read timeout.
fn read_until_closed(s: &mut TcpStream) -> bool {
    let mut b = vec![0u8; 64 << 10];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

// ---- attacks on a TLS listener ---------------------------------------------------------------

/// TLS handshakes that never finish — connections that send nothing, half a ClientHello, or
/// a ClientHello a byte every 50 ms — are each closed by the message timeout (counted from
/// the accept), not before it; their fds come back, the memory they held is small, and a TLS
/// client's calls (handshake included) stay prompt meanwhile.
#[test]
fn stalled_tls_handshakes_time_out() {
    let _serial = serial();
    const CONNS: usize = 300;
    let tls = TlsFiles::new("stalled");
    let config = client_config(&tls);
    let mut srv = Server::start_tls(&tls, &["--message-timeout-ms", "800"], Rlimits::default());
    let base_fds = srv.fds();
    let base = srv.rss();
    let control = Control::start_tls(&srv.tls_addr, &config);
    let hello = client_hello(&config);
    let start = Instant::now();
    let mut conns: Vec<TcpStream> = (0..CONNS)
        .map(|i| {
            let mut s = connect(&srv.tls_addr);
            if i % 3 == 1 {
                s.write_all(&hello[..hello.len() / 2]).unwrap();
            }
            s
        })
        .collect();
    srv.wait_fds_up(base_fds + 1 + CONNS, Duration::from_secs(2));
    let mut sent = 0;
    let took = loop {
        for s in conns.iter_mut().skip(2).step_by(3) {
            let _ = s.write_all(&hello[sent..sent + 1]);
        }
        sent = (sent + 1).min(hello.len() - 2); // never the whole of it
        thread::sleep(Duration::from_millis(50));
        let closed = conns.iter_mut().map(peer_closed).filter(|c| *c).count();
        if start.elapsed() < Duration::from_millis(650) {
            assert_eq!(closed, 0, "stalled handshakes closed {:?} after connecting, before the message timeout", start.elapsed());
        }
        if closed == CONNS {
            break start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(4), "{closed} of {CONNS} stalled handshakes closed after {:?}", start.elapsed());
    };
    drop(conns);
    srv.wait_fds(base_fds + 1, Duration::from_secs(2));
    tls_echo(&srv.tls_addr, &config).expect("a new TLS client is served");
    srv.assert_alive();
    let control = control.finish();
    let grew = srv.peak().saturating_sub(base);
    report(
        &format!("{CONNS} TLS handshakes never finished (silent, half a ClientHello, or one trickled), message timeout 800 ms; TLS control client"),
        &srv,
        base,
        &control,
        &format!("all closed {:.2} s after connecting, none before 0.65 s; fds back; peak +{} KiB", took.as_secs_f64(), grew >> 10),
    );
    assert!(grew < 8 * MIB, "peak RSS grew by {} MiB for {CONNS} handshaking connections", grew / MIB);
    assert_prompt(&control, "stalled handshakes");
}

/// Plaintext MessagePack-RPC and random bytes sent to the TLS port, in waves: each
/// connection is closed as soon as its first bytes are read (long before the 30 s message
/// timeout), with nothing answered in plaintext and the log rate-limited; the fds come back
/// and TLS clients are not disturbed.
#[test]
fn garbage_on_the_tls_port_is_closed() {
    let _serial = serial();
    const WAVES: usize = 5;
    const CONNS: usize = 200;
    let tls = TlsFiles::new("garbage");
    let config = client_config(&tls);
    let mut srv = Server::start_tls(&tls, &["--message-timeout-ms", "30000"], Rlimits::default());
    let base_fds = srv.fds();
    let base = srv.rss();
    let control = Control::start_tls(&srv.tls_addr, &config);
    let lines_before = srv.log_lines.load(Ordering::Relaxed);
    let plaintext = request(1, "echo", &uint_params(&[1, 2, 3]));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut garbage = || -> Vec<u8> {
        (0..16 << 10)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    for _ in 0..WAVES {
        let start = Instant::now();
        let mut conns: Vec<TcpStream> = (0..CONNS)
            .map(|i| {
                let mut s = connect(&srv.tls_addr);
                let bytes = if i % 2 == 0 { plaintext.clone() } else { garbage() };
                let _ = s.write_all(&bytes);
                s
            })
            .collect();
        loop {
            let closed = conns.iter_mut().map(peer_closed).filter(|c| *c).count();
            if closed == CONNS {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "{closed} of {CONNS} garbage connections closed after {:?}", start.elapsed());
            thread::sleep(Duration::from_millis(10));
        }
        slowest = slowest.max(start.elapsed());
        // Nothing that decodes as a MessagePack-RPC answer came back to the plaintext requests.
        for s in conns.iter_mut().step_by(2) {
            s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
            if read_message(s, &mut Vec::new()).is_ok() {
                answered += 1;
            }
        }
        drop(conns);
        srv.wait_fds(base_fds + 1, Duration::from_secs(2));
        thread::sleep(Duration::from_millis(200));
    }
    tls_echo(&srv.tls_addr, &config).expect("a new TLS client is served");
    srv.assert_alive();
    let control = control.finish();
    let lines = srv.log_lines.load(Ordering::Relaxed) - lines_before;
    let grew = srv.peak().saturating_sub(base);
    report(
        &format!(
            "{WAVES} waves of {CONNS} connections sending plaintext MessagePack-RPC or 16 KiB of random bytes to the TLS port; TLS control client"
        ),
        &srv,
        base,
        &control,
        &format!("each wave all closed within {:.0} ms (message timeout 30 s), fds back; {lines} log lines", ms(slowest)),
    );
    assert_eq!(answered, 0, "plaintext requests to the TLS port were answered");
    assert!(slowest < Duration::from_secs(2), "garbage connections took {slowest:?} to be closed");
    assert!(lines < 100, "{lines} log lines for {} connections", WAVES * CONNS);
    // What a wave's reads hold at once (200 × 16 KiB), with room for the allocator.
    assert!(grew < 16 * MIB, "peak RSS grew by {} MiB", grew / MIB);
    assert_prompt(&control, "garbage on the TLS port");
}

/// TLS clients that finish the handshake and then send a message a byte at a time (one TLS
/// record per byte) are closed by the message timeout, as over plaintext; their fds come back.
#[test]
fn trickling_over_tls_times_out() {
    let _serial = serial();
    const CONNS: usize = 100;
    let tls = TlsFiles::new("trickle");
    let config = client_config(&tls);
    let mut srv = Server::start_tls(&tls, &["--message-timeout-ms", "800"], Rlimits::default());
    let base_fds = srv.fds();
    let base = srv.rss();
    let control = Control::start_tls(&srv.tls_addr, &config);
    let message = request(1, "echo", &uint_params(&[1, 2, 3, 4, 5, 6, 7, 8]));
    let mut conns: Vec<TlsStream> = (0..CONNS).map(|_| connect_tls(&srv.tls_addr, &config).expect("TLS handshake")).collect();
    let start = Instant::now();
    let mut sent = 0;
    let took = loop {
        for s in &mut conns {
            // One record holding one byte, straight to the socket (nothing read).
            if s.conn.writer().write_all(&message[sent..sent + 1]).is_ok() {
                while s.conn.wants_write() && s.conn.write_tls(&mut s.sock).is_ok() {}
            }
        }
        sent = (sent + 1).min(message.len() - 2); // never the whole of it
        thread::sleep(Duration::from_millis(100));
        let closed = conns.iter_mut().map(|s| peer_closed(&mut s.sock)).filter(|c| *c).count();
        if start.elapsed() < Duration::from_millis(650) {
            assert_eq!(closed, 0, "trickling TLS connections closed {:?} after their first byte, before the message timeout", start.elapsed());
        }
        if closed == CONNS {
            break start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(4), "{closed} of {CONNS} trickling TLS connections closed after {:?}", start.elapsed());
    };
    drop(conns);
    srv.wait_fds(base_fds + 1, Duration::from_secs(2));
    srv.assert_alive();
    let control = control.finish();
    let grew = srv.peak().saturating_sub(base);
    report(
        &format!("{CONNS} TLS connections trickling one message a record of 1 byte at a time, message timeout 800 ms; TLS control client"),
        &srv,
        base,
        &control,
        &format!("all closed {:.2} s after the first byte, none before 0.65 s", took.as_secs_f64()),
    );
    assert!(grew < 8 * MIB, "peak RSS grew by {} MiB", grew / MIB);
    assert_prompt(&control, "TLS slowloris");
}

/// Connections still in their TLS handshake hold a slot of `--max-connections`: with the cap
/// filled by stalled handshakes (and the control client), further connections — TLS or
/// plaintext — are closed at once; the slots come back when the message timeout closes the
/// stalled ones, and a new TLS client is then served.
#[test]
fn handshaking_connections_count_against_the_cap() {
    let _serial = serial();
    let tls = TlsFiles::new("cap");
    let config = client_config(&tls);
    let mut srv = Server::start_tls(&tls, &["--max-connections", "20", "--message-timeout-ms", "2000"], Rlimits::default());
    let base_fds = srv.fds();
    let base = srv.rss();
    let control = Control::start_tls(&srv.tls_addr, &config); // one of the 20
    let filled = Instant::now();
    let stalled: Vec<TcpStream> = (0..19).map(|_| connect(&srv.tls_addr)).collect();
    srv.wait_fds_up(base_fds + 20, Duration::from_secs(2));
    let mut slowest = Duration::ZERO;
    for addr in [&srv.tls_addr, &srv.tls_addr, &srv.tls_addr, &srv.tls_addr, &srv.addr] {
        let mut s = connect(addr);
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let t0 = Instant::now();
        let mut b = [0u8; 8];
        let r = s.read(&mut b);
        let timed_out = r.as_ref().is_err_and(|e| matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
        assert!(matches!(r, Ok(0) | Err(_)) && !timed_out, "a connection beyond the cap was not closed: {r:?}");
        slowest = slowest.max(t0.elapsed());
    }
    assert!(slowest < Duration::from_millis(500), "a connection beyond the cap took {slowest:?} to be closed");
    assert!(tls_echo(&srv.tls_addr, &config).is_err(), "a TLS client beyond the cap was served");
    // The slots are held until the message timeout closes the stalled handshakes.
    assert!(srv.fds() >= base_fds + 20, "the stalled handshakes were closed early");
    srv.wait_fds(base_fds + 1, Duration::from_secs(4));
    let freed = filled.elapsed();
    assert!(freed >= Duration::from_millis(1900), "slots freed {freed:?} after filling, before the 2 s message timeout");
    tls_echo(&srv.tls_addr, &config).expect("a TLS client is served once the stalled handshakes are closed");
    drop(stalled);
    srv.assert_alive();
    let control = control.finish();
    report(
        "TLS control + 19 stalled TLS handshakes against --max-connections 20, message timeout 2 s; 6 more (TLS and plaintext)",
        &srv,
        base,
        &control,
        &format!("beyond the cap closed within {:.1} ms; slots back {:.2} s after filling, then served", ms(slowest), freed.as_secs_f64()),
    );
    assert_prompt(&control, "TLS connection cap");
}

// ---- TLS ---------------------------------------------------------------------------------

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files for `joint serve`;
/// the CA also in DER for the test's own rustls clients.
#[path = "support/certs.rs"]
mod certs;
use certs::TlsFiles;

/// A rustls client configuration trusting the test CA.
fn client_config(tls: &TlsFiles) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(tls.ca.clone())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_session(config: &Arc<rustls::ClientConfig>) -> rustls::ClientConnection {
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    rustls::ClientConnection::new(config.clone(), name).unwrap()
}

/// A TLS connection with its handshake done (within 5 s).
fn connect_tls(addr: &str, config: &Arc<rustls::ClientConfig>) -> std::io::Result<TlsStream> {
    let sock = connect(addr);
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut s = rustls::StreamOwned::new(tls_session(config), sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// The first flight a TLS client sends (its ClientHello, in one record).
fn client_hello(config: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let mut hello = Vec::new();
    tls_session(config).write_tls(&mut hello).unwrap();
    assert_eq!(hello[0], 0x16, "a handshake record");
    hello
}

/// A fresh TLS client is served: handshake, then `echo` answered.
fn tls_echo(addr: &str, config: &Arc<rustls::ClientConfig>) -> std::io::Result<()> {
    let mut s = connect_tls(addr, config)?;
    s.write_all(&request(9, "echo", &uint_params(&[9])))?;
    let reply = read_message(&mut s, &mut Vec::new())?;
    assert!(matches!(codec::decode_message(&reply), Ok(Message::Response { msgid: 9, error: codec::NIL, .. })));
    Ok(())
}
