//! Peers that misbehave in time rather than in content: one that sends a byte at a time, one
//! that never reads what it asked for, and a crowd that connects and leaves over and over.
//! The server is a joint Context on its own thread; the other side is in this process too.
//!
//! The tests of this file run one at a time (they measure the process's memory and fds).

#[macro_use]
mod support;

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use joint::codec;
use joint::error::ErrorKind;
use joint::reactor::{Config, ConnEvent, Context};

use support::*;

const MIB: usize = 1 << 20;

static SERIAL: Mutex<()> = Mutex::new(());

/// Hold this while a test runs: memory and fd counts are process-wide.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().unwrap()
}

fn rss() -> usize {
    status_kib("VmRSS:") * 1024
}

/// Reset the peak RSS (VmHWM) to the current RSS, if the kernel allows it.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn peak() -> usize {
    status_kib("VmHWM:") * 1024
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn set_rcvbuf(stream: &TcpStream, bytes: i32) {
    // SAFETY: setsockopt on a valid socket fd with a correctly sized int.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// A raw client calling `add` in a loop on its own thread until stopped; panics (failing
/// the test at `finish`) if any call fails or takes longer than PROMPT.
struct Background {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    handle: std::thread::JoinHandle<()>,
}

impl Background {
    fn start(addr: &str) -> Background {
        let mut c = RawClient::connect(addr, "well-behaved");
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let (stop2, done2) = (stop.clone(), done.clone());
        let handle = std::thread::spawn(move || {
            let mut k = 0;
            while !stop2.load(Ordering::SeqCst) {
                k += 1;
                c.check_add(k, k as i64);
                done2.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Background { stop, done, handle }
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::SeqCst)
    }

    fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + PROMPT;
        while !self.handle.is_finished() {
            assert!(Instant::now() < deadline, "the well-behaved client is stuck");
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Err(p) = self.handle.join() {
            std::panic::resume_unwind(p);
        }
        self.done.load(Ordering::SeqCst)
    }
}

// ---- slowloris ------------------------------------------------------------------------------

/// Ten peers each send a request one byte every 50 ms (a scaled-down slowloris: the real one
/// sends a byte a second). Meanwhile other connections make 500 calls: they complete as fast
/// as ever, and every slow request is answered in the end.
#[test]
fn slowloris_does_not_delay_other_connections() {
    let _serial = serial();
    const SLOW: usize = 10;
    const CALLS: usize = 500;
    const CALLERS: usize = 4;
    let srv = ServerThread::start(Config::default);
    let addr = srv.addr.clone();

    // Each slow request carries a 40-byte string, so it takes about 2.7 s to send.
    let pad = "x".repeat(40);
    let slow_requests: Vec<Vec<u8>> = (0..SLOW).map(|i| request(100 + i as u32, "echo", &arr![s(&format!("{pad}{i}"))])).collect();
    let len = slow_requests[0].len();
    let slow_addr = addr.clone();
    let slow_started = Arc::new(AtomicBool::new(false));
    let started2 = slow_started.clone();
    let slow = std::thread::spawn(move || {
        let mut peers: Vec<RawClient> = (0..SLOW).map(|_| RawClient::connect(&slow_addr, "slowloris")).collect();
        let start = Instant::now();
        for at in 0..len {
            for (p, req) in peers.iter_mut().zip(&slow_requests) {
                p.send(&req[at..at + 1]);
            }
            if at == 2 {
                started2.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for (i, p) in peers.iter_mut().enumerate() {
            let r = p.expect_reply();
            assert_eq!(r.msgid, 100 + i as u32);
            assert_eq!(r.result(), s(&format!("{pad}{i}")));
        }
        start.elapsed()
    });

    // Start the batch once every slow peer is a few bytes into its request.
    let deadline = Instant::now() + PROMPT;
    while !slow_started.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the slow peers did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!slow.is_finished(), "the slow peers finished before the batch started");
    let batch_start = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut client = RawClient::connect(&addr, "caller");
                let mut worst = Duration::ZERO;
                for i in 0..CALLS / CALLERS {
                    let t = Instant::now();
                    client.check_add((c * 1000 + i) as u32, i as i64);
                    worst = worst.max(t.elapsed());
                }
                worst
            })
        })
        .collect();
    let worst = callers.into_iter().map(|h| h.join().expect("caller")).max().unwrap();
    let batch = batch_start.elapsed();

    let deadline = Instant::now() + Duration::from_secs(20);
    while !slow.is_finished() {
        assert!(Instant::now() < deadline, "the slow requests were not answered");
        std::thread::sleep(Duration::from_millis(10));
    }
    let slow_took = slow.join().expect("slow peers");
    eprintln!(
        "{CALLS} calls on {CALLERS} connections took {batch:?} (worst call {worst:?}) while {SLOW} peers each took {slow_took:?} to send {len} bytes"
    );
    assert!(batch < Duration::from_secs(5), "the batch took {batch:?}");
    srv.stop();
}

// ---- a peer that never reads ----------------------------------------------------------------

/// A server with an 8 MiB output high-water mark, a 2 s message timeout (so output that
/// makes no progress for 2 s closes its connection) and a `blob` method answering 1 MiB.
/// Returns it, the number of `blob` requests it answered, and the reasons of the connections
/// it closed.
type Closes = Arc<Mutex<Vec<(ErrorKind, String)>>>;

fn blob_server() -> (ServerThread, Arc<AtomicUsize>, Closes) {
    let closes: Closes = Arc::default();
    let handled = Arc::new(AtomicUsize::new(0));
    let (c2, h2) = (closes.clone(), handled.clone());
    let srv = ServerThread::start_with(
        || Config { output_high_water: 8 * MIB, message_timeout: Some(Duration::from_secs(2)), ..Config::default() },
        move |ctx: &Context| {
            standard_handlers(ctx);
            let mut blob = Vec::new();
            codec::write_bin(&mut blob, &vec![0x5a; MIB]);
            let blob = Rc::new(blob);
            ctx.register(
                b"blob",
                Rc::new(move |_ctx, req| {
                    req.reply(&blob).unwrap();
                    h2.fetch_add(1, Ordering::SeqCst);
                }),
            );
            ctx.set_conn_event_handler(Some(Rc::new(move |_ctx, _id, e: ConnEvent<'_>| {
                if let ConnEvent::Closed { kind, reason } = e {
                    c2.lock().unwrap().push((kind, reason.to_string()));
                }
            })));
        },
    );
    (srv, handled, closes)
}

/// Samples the RSS every few ms on its own thread; `stop` returns the largest value seen.
struct RssMonitor {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<usize>,
}

impl RssMonitor {
    fn start() -> RssMonitor {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut max = 0;
            while !s2.load(Ordering::SeqCst) {
                max = max.max(rss());
                std::thread::sleep(Duration::from_millis(2));
            }
            max.max(rss())
        });
        RssMonitor { stop, handle }
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// A client asks for 1 MiB blobs and never reads the answers: once more than the high-water
/// mark (8 MiB) waits for it the server stops reading its requests (back-pressure), closes it
/// when its output has made no progress for the message timeout, its memory stays bounded
/// meanwhile, and another connection is served all along. With `burst` the client pipelines 64 requests in one write;
/// otherwise it sends the next request once the server has answered the previous one.
fn never_reads(burst: bool) {
    let _serial = serial();
    let (srv, handled, closes) = blob_server();
    let background = Background::start(&srv.addr);
    while background.done() < 10 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let base = rss();
    let exact_peak = reset_peak();
    let monitor = RssMonitor::start();

    let mut evil = TcpStream::connect(&srv.addr).unwrap();
    set_rcvbuf(&evil, 16 << 10);
    // No Nagle: each request must leave at once (held-back requests would arrive as a burst).
    evil.set_nodelay(true).unwrap();
    evil.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    if burst {
        let batch: Vec<u8> = (0..64).flat_map(|i| request(i, "blob", &arr![])).collect();
        evil.write_all(&batch).unwrap();
        sent = 64;
    }
    while closes.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the server did not close the non-reading peer ({sent} requests sent)");
        if !burst && handled.load(Ordering::SeqCst) == sent && sent < 1000 && evil.write_all(&request(sent as u32, "blob", &arr![])).is_ok() {
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let closed_at = background.done();
    let max_rss = monitor.stop();
    let peak_rss = if exact_peak { peak() } else { max_rss };
    drop(evil);

    // The well-behaved connection is still served.
    while background.done() < closed_at + 10 {
        assert!(Instant::now() < deadline, "the well-behaved connection stalled");
        std::thread::sleep(Duration::from_millis(1));
    }
    let calls = background.finish();
    let (kind, reason) = closes.lock().unwrap()[0].clone();
    let after = rss();
    eprintln!(
        "{sent} requests sent, {} answered before the close ({kind:?}: {reason}); RSS {} MiB before, peak {} MiB (sampled {} MiB), {} MiB after; {calls} calls on the other connection",
        handled.load(Ordering::SeqCst),
        base >> 20,
        peak_rss >> 20,
        max_rss >> 20,
        after >> 20
    );
    assert_eq!(kind, ErrorKind::Limit, "{reason}");
    assert!(reason.contains("not reading"), "{reason}");
    assert!(peak_rss.saturating_sub(base) < 64 * MIB, "RSS grew by {} MiB", (peak_rss - base) >> 20);
    assert!(after.saturating_sub(base) < 64 * MIB, "RSS stayed {} MiB above the start", (after - base) >> 20);
    srv.stop();
}

#[test]
fn peer_that_never_reads_is_closed_and_memory_stays_bounded() {
    never_reads(false);
}

/// A peer that pipelines 64 requests for 1 MiB answers in one write: the high-water mark is
/// checked between requests, so the server holds about 8 MiB of answers, not 64 (a read
/// budget of 9-byte requests could otherwise ask for over 100 GiB).
#[test]
fn pipelined_burst_from_a_peer_that_never_reads_stays_bounded() {
    never_reads(true);
}

// ---- connection churn -----------------------------------------------------------------------

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

/// 1000 connections are opened, used for one call each and closed, five times over. After
/// each round (once both sides have processed the closes) the process has exactly the fds
/// it had before, and after the first round its memory stops growing.
#[test]
fn connection_churn_leaks_no_fds_and_no_memory() {
    let _serial = serial();
    const N: usize = 1000;
    const ROUNDS: usize = 5;
    raise_fd_limit(2 * N as u64 + 256);
    let srv = ServerThread::start(Config::default);
    let mut ctl = srv.client("control");
    let mut ctl_id = 1;
    let (opens0, closes0, _) = stats(&mut ctl, ctl_id);
    let client = Context::new(Config::default()).unwrap();
    let base_fds = open_fds();
    let base_rss = rss();
    let mut rss_after = Vec::new();
    for round in 0..ROUNDS {
        let started = Instant::now();
        let results = Results::default();
        let mut conns = Vec::new();
        // In waves of 100, all left open until the end of the round: the listen backlog is
        // 128, and a SYN dropped from a full accept queue costs a 1 s retransmission.
        for wave in 0..N / 100 {
            for i in wave * 100..(wave + 1) * 100 {
                let conn = client.connect(&srv.uri).expect("connect");
                client.call(conn, b"add", &int_params(&[i as i64, 1]), Some(Duration::from_secs(30)), results.done(i as u64)).expect("call");
                conns.push(conn);
            }
            drive_until(&client, Duration::from_secs(30), "every call", || results.len() == (wave + 1) * 100);
        }
        assert_eq!(open_fds(), base_fds + 2 * N, "round {round}: both ends of every connection are open");
        for i in 0..N {
            match results.get(i as u64) {
                Ok(v) => assert_eq!(Val::decode(&v), int(i as i128 + 1)),
                Err(e) => panic!("round {round}, call {i}: {e:?}"),
            }
        }
        for conn in &conns {
            client.release(*conn);
        }
        client.process().unwrap();
        for conn in &conns {
            assert!(!client.is_open(*conn));
        }
        ctl_id += 10;
        let (opens, _, _) = wait_for_closes(&mut ctl, ctl_id, closes0 + N * (round + 1));
        assert_eq!(opens, opens0 + N * (round + 1));
        let fds = open_fds();
        let now_rss = rss();
        eprintln!(
            "round {round}: {N} connections in {:?}; {fds} fds (baseline {base_fds}); RSS {} KiB (baseline {} KiB)",
            started.elapsed(),
            now_rss >> 10,
            base_rss >> 10
        );
        assert_eq!(fds, base_fds, "round {round}: fds did not return to the baseline");
        rss_after.push(now_rss);
    }
    for (round, r) in rss_after.iter().enumerate().skip(1) {
        assert!(r.saturating_sub(rss_after[0]) < 16 * MIB, "round {round}: RSS grew by {} KiB since the first round", (r - rss_after[0]) >> 10);
    }
    drop(client);
    ctl.check_add(1, 1);
    srv.stop();
}
