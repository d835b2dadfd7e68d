//! `joint tap`: a transparent MessagePack-RPC proxy that prints every message that passes.

mod describe;
mod forward;
mod observe;
mod print;
mod scanner;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use joint::reactor::transport::{parse_uri, Address};

use crate::call::Target;
use crate::signals::{self, SignalPipe};
use crate::{EXIT_FAILED, EXIT_USAGE};
use forward::{pump, Stream};
use observe::{Conn, Observer};
use print::{Dir, Printer, Record};

/// How long connecting to --to may take for each client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const AFTER_HELP: &str = "\
EXAMPLE:
    $ joint serve --listen tcp://127.0.0.1:6000 &
    $ joint tap --listen tcp://127.0.0.1:7000 --to tcp://127.0.0.1:6000 &
    $ joint call tcp://127.0.0.1:7000 echo hello
    17:25:43.947 #1 open peer=127.0.0.1:38738 upstream=tcp://127.0.0.1:6000
    17:25:43.947 #1 -> request msgid=1 joint.hello [1,{\"window\":64,\"fragment\":65536,...}]
    17:25:43.947 #1 -> request msgid=2 echo [\"hello\"]
    17:25:43.947 #1 <- response msgid=1 joint.hello (0.219 ms) result=[1,{\"window\":64,...}]
    17:25:43.947 #1 <- response msgid=2 echo (0.209 ms) result=\"hello\"
    17:25:43.948 #1 closed c2s_bytes=78 s2c_bytes=62
    \"hello\"

LINES (human form): time (UTC), #connection, -> (client to server) or <- (server to
client), kind, msgid, method, latency (responses and pongs: since the request or ping
passed), then the other fields. Kinds: request, response, notification, and the joint
extension's call, yield, send, end, cancel, throw, more_yields, more_sends, fragment, ping,
pong (docs/PROTOCOL.md); unknown for other arrays; open, closed, refused; undecodable.
Lines are cut to the terminal's width (200 characters when stdout is not a terminal);
--full prints them whole.

--json: one object per line with these keys (those that apply):
    time         RFC 3339, UTC, e.g. \"2026-12-07T12:00:00.103421Z\"
    conn         the connection's number (1, 2, ...)
    dir          \"c2s\" (client to server) or \"s2c\"
    kind         as above
    msgid, method
    params, result, error, kwargs, flags, deadline_ms, window, item, n, nonce
                 the message's elements by their names in docs/PROTOCOL.md, as JSON in the
                 mapping `joint call` prints (see `joint help`); a response has result or
                 error, whichever it carries
    fragid, total, chunk_bytes, fragment, fragments
                 a fragment: its message's id and size, this chunk's size, which fragment
                 it is; the first also has of, of_msgid, of_method (the message it starts),
                 the last complete (its kind) and that message's msgid, method, latency_ms
    latency_ms   responses (and pongs, and the last fragment of a response)
    size         the message's size in bytes
    cut          the message is larger than 256 KiB: what the first element not shown is,
                 e.g. \"result: bin of 209715200 bytes\" (the elements after it are absent)
    peer, upstream (open); c2s_bytes, s2c_bytes, error (closed); offset, reason
                 (undecodable)

BOUNDS: every byte is forwarded as soon as it is read (64 KiB at a time; the messages
that end in those bytes are printed first, none is waited for), and whatever the peers
send the tap holds per connection at most two 64 KiB buffers, the first 256 KiB of the
message being read in each direction (a larger message is forwarded whole and shown in
part, with its size), 64 fragmented messages being followed per direction and 4096
unanswered calls for latencies (more are not timed); --max-connections bounds the rest.
A stream that stops being MessagePack-RPC (a byte that is not MessagePack, a message that
is not an array, nesting deeper than 1024) is still forwarded byte for byte; a line says so
and that direction is no longer shown. Printing blocks forwarding while stdout blocks: a
slow reader of the output slows the connections down (nothing is queued for it); a closed
stdout is ignored.

A client's EOF is passed on to the server as a half-close (and the other way round); the
pair closes when both sides have, or when either fails. Exits 0 on SIGINT or SIGTERM
(removing a Unix socket it created), 2 if it cannot listen, 64 for bad arguments.";

/// Forward MessagePack-RPC connections to a server and print every message that passes.
///
/// Each client that connects to --listen gets its own connection to --to; the bytes go
/// through unchanged both ways and each message is printed as it passes, on stdout.
#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct TapArgs {
    /// Where clients connect: tcp://HOST:PORT or unix:///PATH. Port 0 picks a free one; the
    /// address is printed on stderr as `listening on URI`
    #[arg(long, value_name = "URI")]
    pub listen: String,
    /// The server to forward to: tcp://HOST:PORT or unix:///PATH (not exec:)
    #[arg(long, value_name = "URI")]
    pub to: String,
    /// Print one JSON object per line (fields: see below)
    #[arg(long)]
    pub json: bool,
    /// Print lines whole, not cut to the terminal's width, and every fragment of a
    /// fragmented message (not just its first and last)
    #[arg(long)]
    pub full: bool,
    /// Clients served at once; more are accepted and closed at once, with a line
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
}

/// A --listen or --to address.
#[derive(Debug, Clone)]
enum Endpoint {
    Tcp(Vec<std::net::SocketAddr>),
    Unix(PathBuf),
}

/// An address to listen on or forward to. A malformed one, or one tap cannot use, is a usage
/// error (64); a well-formed host name that does not resolve is a failure to connect (2).
fn endpoint(option: &str, uri: &str) -> Result<Endpoint, (u8, String)> {
    let usage = |message: String| (EXIT_USAGE, message);
    let target = Target::parse(uri).map_err(|e| usage(format!("{option}: {e}")))?;
    let Some(uri) = target.uri() else {
        return Err(usage(format!("{option} {uri:?}: exec: cannot be tapped; give a tcp:// or unix:// address")));
    };
    match parse_uri(uri) {
        Ok(Address::Tcp(addrs)) => Ok(Endpoint::Tcp(addrs)),
        Ok(Address::Unix(path, _)) => Ok(Endpoint::Unix(path)),
        Ok(_) => Err(usage(format!("{option} {uri:?}: joint tap speaks tcp:// and unix:// only"))),
        // Target::parse has checked the syntax: what is left is resolving the host.
        Err(e) => Err((EXIT_FAILED, format!("{option}: {}", e.message))),
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    fn bind(at: &Endpoint) -> std::io::Result<(Listener, String)> {
        match at {
            Endpoint::Tcp(addrs) => {
                let l = TcpListener::bind(&addrs[..])?;
                let uri = format!("tcp://{}", l.local_addr()?);
                Ok((Listener::Tcp(l), uri))
            }
            Endpoint::Unix(path) => {
                let l = UnixListener::bind(path)?;
                Ok((Listener::Unix(l, path.clone()), format!("unix://{}", path.display())))
            }
        }
    }

    fn set_nonblocking(&self) -> std::io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l, _) => l.set_nonblocking(true),
        }
    }

    fn fd(&self) -> i32 {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }

    /// The next client and how to name it.
    fn accept(&self) -> std::io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, peer)| (Stream::Tcp(s), peer.to_string())),
            Listener::Unix(l, _) => l.accept().map(|(s, _)| (Stream::Unix(s), "unix".to_string())),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn connect(to: &Endpoint) -> std::io::Result<Stream> {
    match to {
        Endpoint::Tcp(addrs) => {
            let mut last = None;
            for addr in addrs {
                match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
                    Ok(s) => return Ok(Stream::Tcp(s)),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
        }
        Endpoint::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
    }
}

pub fn run(args: TapArgs) -> ExitCode {
    let (listen, to) = match (endpoint("--listen", &args.listen), endpoint("--to", &args.to)) {
        (Ok(listen), Ok(to)) => (listen, to),
        (Err((code, message)), _) | (_, Err((code, message))) => {
            eprintln!("joint tap: {message}");
            return ExitCode::from(code);
        }
    };
    let failed = |message: String| {
        eprintln!("joint tap: {message}");
        ExitCode::from(EXIT_FAILED)
    };
    let signals = match SignalPipe::install(&[libc::SIGINT, libc::SIGTERM]) {
        Ok(s) => s,
        Err(e) => return failed(format!("cannot catch signals: {e}")),
    };
    let (listener, uri) = match Listener::bind(&listen) {
        Ok(l) => l,
        Err(e) => return failed(format!("cannot listen on {}: {e}", args.listen)),
    };
    if let Err(e) = listener.set_nonblocking() {
        return failed(format!("cannot listen on {}: {e}", args.listen));
    }
    eprintln!("listening on {uri}");
    let printer = Arc::new(Printer::new(args.json, args.full));
    let active = Arc::new(AtomicU64::new(0));
    let mut label = 0u64;
    loop {
        if let Err(e) = signals::poll_readable(&[listener.fd(), signals.fd()], -1) {
            return failed(format!("poll: {e}"));
        }
        if let Some(signal) = signals.take() {
            eprintln!("joint tap: {}, stopping", signals::name(signal));
            return ExitCode::SUCCESS;
        }
        let (client, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of fds, most likely: the clients already here keep being served.
                eprintln!("joint tap: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        label += 1;
        if active.load(Ordering::SeqCst) >= args.max_connections {
            printer.print(
                &Record::new(label, None, "refused")
                    .with("peer", peer)
                    .with("error", format!("{} connections are open (--max-connections)", args.max_connections)),
            );
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (printer, active, to, upstream) = (printer.clone(), active.clone(), to.clone(), args.to.clone());
        let conn = Arc::new(Conn::new(label, printer, args.full));
        let spawned = std::thread::Builder::new().name(format!("tap #{label}")).spawn(move || {
            serve_pair(&conn, client, &peer, &to, &upstream);
            active.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            eprintln!("joint tap: cannot start a thread for connection #{label}: {e}");
        }
    }
}

/// Forward one client to its own upstream connection until both are done.
fn serve_pair(conn: &Arc<Conn>, client: Stream, peer: &str, to: &Endpoint, upstream: &str) {
    let closed = |error: String| Record::new(conn.label, None, "closed").with("peer", peer).with("error", error);
    let server = match connect(to) {
        Ok(s) => s,
        Err(e) => return conn.printer.print(&closed(format!("could not connect to {upstream}: {e}"))),
    };
    let clones = client.prepare().and_then(|()| server.prepare()).and_then(|()| Ok((client.try_clone()?, server.try_clone()?)));
    let (client_reader, server_reader) = match clones {
        Ok(c) => c,
        Err(e) => return conn.printer.print(&closed(format!("cannot set up the connection: {e}"))),
    };
    conn.printer.print(&Record::new(conn.label, None, "open").with("peer", peer).with("upstream", upstream));
    let up_conn = conn.clone();
    let upward = std::thread::Builder::new().name(format!("tap #{} c2s", conn.label)).spawn(move || {
        let mut observer = Observer::new(Dir::ToServer, up_conn);
        pump(client_reader, server, &mut observer)
    });
    let upward = match upward {
        Ok(handle) => handle,
        Err(e) => {
            client.shutdown(Shutdown::Both);
            return conn.printer.print(&closed(format!("cannot start a thread: {e}")));
        }
    };
    let down = pump(server_reader, client, &mut Observer::new(Dir::ToClient, conn.clone()));
    let up = upward.join().unwrap_or_else(|_| forward::Ended { bytes: 0, error: Some("the forwarding thread failed".into()) });
    let mut record = Record::new(conn.label, None, "closed").with("c2s_bytes", up.bytes).with("s2c_bytes", down.bytes);
    if let Some(error) = up.error.or(down.error) {
        record = record.with("error", error);
    }
    conn.printer.print(&record);
}
