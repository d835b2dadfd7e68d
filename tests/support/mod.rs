//! Shared helpers for the integration tests: a small MessagePack value type, raw blocking
//! clients with deadlines, a joint server running on its own thread, and child-process and
//! temp-dir guards. Every wait here has a deadline, so no test can hang.

#![allow(dead_code)]

use std::cell::RefCell;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use joint::codec::{self, read, FrameLimits, Scan, Scanner};
use joint::error::ErrorKind;
use joint::reactor::{Config, ConnEvent, Context, Request, Shared};

/// The deadline used for anything that should happen "promptly" on an idle machine; generous
/// because CI shares 2 vCPUs between the tests, cargo and the peers.
pub const PROMPT: Duration = Duration::from_secs(5);

// ---- MessagePack values ---------------------------------------------------------------------

/// A MessagePack value, for building payloads and checking replies in tests.
#[derive(Clone, PartialEq)]
pub enum Val {
    Nil,
    Bool(bool),
    /// Any integer (i64 and u64 both fit).
    Int(i128),
    F64(f64),
    Str(Vec<u8>),
    Bin(Vec<u8>),
    Arr(Vec<Val>),
    Map(Vec<(Val, Val)>),
    Ext(i8, Vec<u8>),
}

impl std::fmt::Debug for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Nil => f.write_str("nil"),
            Val::Bool(b) => write!(f, "{b}"),
            Val::Int(i) => write!(f, "{i}"),
            Val::F64(x) => write!(f, "{x:?}"),
            Val::Str(s) => write!(f, "{:?}", String::from_utf8_lossy(s)),
            Val::Bin(b) if b.len() > 32 => write!(f, "bin[{} bytes]", b.len()),
            Val::Bin(b) => write!(f, "bin{b:?}"),
            Val::Arr(a) => f.debug_list().entries(a).finish(),
            Val::Map(m) => f.debug_map().entries(m.iter().map(|(k, v)| (k, v))).finish(),
            Val::Ext(t, d) => write!(f, "ext({t}, {d:?})"),
        }
    }
}

pub fn s(text: &str) -> Val {
    Val::Str(text.as_bytes().to_vec())
}

pub fn int(i: i128) -> Val {
    Val::Int(i)
}

/// `arr![a, b]` builds a `Val::Arr` (tests use `#[macro_use] mod support;`).
macro_rules! arr {
    ($($x:expr),* $(,)?) => { $crate::support::Val::Arr(vec![$($x),*]) };
}

impl Val {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Val::Nil => codec::write_nil(out),
            Val::Bool(b) => codec::write_bool(out, *b),
            Val::Int(i) if *i >= 0 => codec::write_uint(out, u64::try_from(*i).expect("int fits u64")),
            Val::Int(i) => codec::write_sint(out, i64::try_from(*i).expect("int fits i64")),
            Val::F64(x) => codec::write_f64(out, *x),
            Val::Str(s) => codec::write_str(out, s),
            Val::Bin(b) => codec::write_bin(out, b),
            Val::Arr(a) => {
                codec::write_array_len(out, a.len() as u32);
                for v in a {
                    v.encode_into(out);
                }
            }
            Val::Map(m) => {
                codec::write_map_len(out, m.len() as u32);
                for (k, v) in m {
                    k.encode_into(out);
                    v.encode_into(out);
                }
            }
            Val::Ext(t, d) => codec::write_ext(out, *t, d),
        }
    }

    /// Decode exactly one object that fills `buf`.
    pub fn decode(buf: &[u8]) -> Val {
        let mut pos = 0;
        let v = Val::decode_at(buf, &mut pos).unwrap_or_else(|e| panic!("cannot decode {buf:02x?}: {e:?}"));
        assert_eq!(pos, buf.len(), "trailing bytes after {v:?} in {buf:02x?}");
        v
    }

    pub fn decode_at(buf: &[u8], pos: &mut usize) -> Result<Val, read::ReadError> {
        Ok(match read::kind(buf, *pos)? {
            read::Kind::Nil => {
                read::nil(buf, pos)?;
                Val::Nil
            }
            read::Kind::Bool => Val::Bool(read::boolean(buf, pos)?),
            read::Kind::Int => match read::int(buf, &mut pos.clone()) {
                Ok(_) => Val::Int(read::int(buf, pos)? as i128),
                Err(_) => Val::Int(read::uint(buf, pos)? as i128),
            },
            read::Kind::Float => Val::F64(read::float(buf, pos)?),
            read::Kind::Str => Val::Str(read::str(buf, pos)?.to_vec()),
            read::Kind::Bin => Val::Bin(read::bin(buf, pos)?.to_vec()),
            read::Kind::Array => {
                let n = read::array(buf, pos)?;
                let mut items = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    items.push(Val::decode_at(buf, pos)?);
                }
                Val::Arr(items)
            }
            read::Kind::Map => {
                let n = read::map(buf, pos)?;
                let mut items = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    let k = Val::decode_at(buf, pos)?;
                    let v = Val::decode_at(buf, pos)?;
                    items.push((k, v));
                }
                Val::Map(items)
            }
            read::Kind::Ext => {
                let (t, d) = read::ext(buf, pos)?;
                Val::Ext(t, d.to_vec())
            }
        })
    }

    pub fn as_int(&self) -> i128 {
        match self {
            Val::Int(i) => *i,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    pub fn as_str(&self) -> String {
        match self {
            Val::Str(s) | Val::Bin(s) => String::from_utf8(s.clone()).expect("utf-8"),
            other => panic!("expected a string, got {other:?}"),
        }
    }

    pub fn as_arr(&self) -> &[Val] {
        match self {
            Val::Arr(a) => a,
            other => panic!("expected an array, got {other:?}"),
        }
    }
}

/// The raw bytes of each element of an encoded array (for checking replies field by field,
/// e.g. with `codec::error_code` on the error object).
pub fn split_array(frame: &[u8]) -> Vec<&[u8]> {
    let mut pos = 0;
    let n = read::array(frame, &mut pos).unwrap_or_else(|e| panic!("not an array: {frame:02x?} ({e:?})"));
    let mut parts = Vec::new();
    for _ in 0..n {
        parts.push(read::raw(frame, &mut pos).expect("array element"));
    }
    assert_eq!(pos, frame.len(), "trailing bytes in {frame:02x?}");
    parts
}

/// Params `[a, b, ...]` of small integers, encoded.
pub fn int_params(values: &[i64]) -> Vec<u8> {
    Val::Arr(values.iter().map(|&v| Val::Int(v as i128)).collect()).encode()
}

/// A request frame built with the library's own encoder.
pub fn request(msgid: u32, method: &str, params: &Val) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_request(&mut out, msgid, method.as_bytes(), &params.encode());
    out
}

/// A decoded response: `(msgid, error, result)` with error and result as raw bytes.
pub struct Reply {
    pub msgid: u32,
    pub error: Vec<u8>,
    pub result: Vec<u8>,
}

impl Reply {
    /// Parse with the library's `decode_message`; panics if it is not a response.
    pub fn parse(frame: &[u8]) -> Reply {
        match codec::decode_message(frame) {
            Ok(codec::Message::Response { msgid, error, result }) => Reply { msgid, error: error.to_vec(), result: result.to_vec() },
            other => panic!("expected a response, got {other:?} from {:?}", Val::decode(frame)),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.error == codec::NIL
    }

    pub fn result(&self) -> Val {
        assert!(self.is_ok(), "msgid {} failed: {:?}", self.msgid, Val::decode(&self.error));
        Val::decode(&self.result)
    }

    /// The error code, asserting the call failed.
    pub fn code(&self) -> i64 {
        assert!(!self.is_ok(), "msgid {} unexpectedly succeeded with {:?}", self.msgid, Val::decode(&self.result));
        assert_eq!(self.result, codec::NIL, "result must be nil beside an error");
        codec::error_code(&self.error).unwrap_or_else(|| panic!("error without a code: {:?}", Val::decode(&self.error)))
    }

    pub fn message(&self) -> String {
        String::from_utf8_lossy(codec::error_message(&self.error).unwrap_or(b"")).into_owned()
    }
}

// ---- raw blocking clients -------------------------------------------------------------------

/// What a raw read produced.
#[derive(Debug, PartialEq)]
pub enum Recv {
    Msg(Vec<u8>),
    /// The peer closed (read returned 0) or reset the connection.
    Closed,
    Timeout,
}

/// A raw TCP client doing blocking I/O with deadlines; frames replies with the library's
/// `Scanner` (no size limit).
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub name: &'static str,
}

impl RawClient {
    pub fn connect(addr: &str, name: &'static str) -> RawClient {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{name}: connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        RawClient { stream, buf: Vec::new(), name }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap_or_else(|e| panic!("{}: write: {e}", self.name));
    }

    /// A whole message already buffered, if any.
    fn take_buffered(&mut self) -> Option<Vec<u8>> {
        if self.buf.is_empty() {
            return None;
        }
        let mut sc = Scanner::new(FrameLimits { max_message_size: usize::MAX, max_depth: 100_000 });
        match sc.scan(&self.buf) {
            Scan::Complete(n) => Some(self.buf.drain(..n).collect()),
            Scan::Incomplete { .. } => None,
            other => panic!("{}: server sent invalid MessagePack ({other:?}): {:02x?}", self.name, &self.buf[..self.buf.len().min(64)]),
        }
    }

    /// The next message, or Closed/Timeout, waiting at most `within`.
    pub fn recv(&mut self, within: Duration) -> Recv {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) = self.take_buffered() {
                return Recv::Msg(m);
            }
            let now = Instant::now();
            if now >= deadline {
                return Recv::Timeout;
            }
            let slice = (deadline - now).max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(slice)).unwrap();
            let mut chunk = [0u8; 64 << 10];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    assert!(self.buf.is_empty(), "{}: EOF inside a message ({} bytes buffered)", self.name, self.buf.len());
                    return Recv::Closed;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut | IoKind::Interrupted) => {}
                Err(e) if matches!(e.kind(), IoKind::ConnectionReset | IoKind::ConnectionAborted | IoKind::BrokenPipe) => return Recv::Closed,
                Err(e) => panic!("{}: read: {e}", self.name),
            }
        }
    }

    /// The next message; panics if none arrives within [`PROMPT`].
    pub fn expect_msg(&mut self) -> Vec<u8> {
        match self.recv(PROMPT) {
            Recv::Msg(m) => m,
            other => panic!("{}: expected a message, got {other:?}", self.name),
        }
    }

    pub fn expect_reply(&mut self) -> Reply {
        let m = self.expect_msg();
        Reply::parse(&m)
    }

    /// Assert the server closes the connection within `within` (any message before that is
    /// returned, so callers can check a last error reply).
    pub fn expect_closed(&mut self, within: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut msgs = Vec::new();
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())) {
                Recv::Msg(m) => msgs.push(m),
                Recv::Closed => return msgs,
                Recv::Timeout => panic!("{}: server did not close the connection within {within:?} (got {} messages)", self.name, msgs.len()),
            }
        }
    }

    /// Assert nothing arrives for `quiet`.
    pub fn expect_silence(&mut self, quiet: Duration) {
        match self.recv(quiet) {
            Recv::Timeout => {}
            other => panic!("{}: expected silence, got {other:?}", self.name),
        }
    }

    /// Call and return the reply (the next message must be it).
    pub fn call(&mut self, msgid: u32, method: &str, params: &Val) -> Reply {
        self.send(&request(msgid, method, params));
        let r = self.expect_reply();
        assert_eq!(r.msgid, msgid, "{}: reply to the wrong msgid", self.name);
        r
    }

    /// `add [k, 1000]` must return k + 1000 with the same msgid.
    pub fn check_add(&mut self, msgid: u32, k: i64) {
        let r = self.call(msgid, "add", &arr![int(k as i128), int(1000)]);
        assert_eq!(r.result(), int(k as i128 + 1000), "{}: add", self.name);
    }

    pub fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }
}

// ---- a joint server on its own thread -------------------------------------------------------

/// What the standard handlers saw, readable through the `stats` method.
#[derive(Default)]
pub struct Stats {
    pub opens: usize,
    pub closes: usize,
    /// Every notification delivered: `[method, params, kwargs-or-nil]`.
    pub notes: Vec<Val>,
    /// Requests held by `hang`, answered by the `release` notification.
    pub held: Vec<Request>,
}

/// A joint server context running on its own thread, listening on tcp://127.0.0.1:0.
pub struct ServerThread {
    pub addr: String,
    pub uri: String,
    stop: Arc<AtomicBool>,
    waker: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Start a server with `config` and the standard handlers (see [`standard_handlers`]).
    pub fn start(config: impl FnOnce() -> Config + Send + 'static) -> ServerThread {
        Self::start_with(config, |ctx| {
            standard_handlers(ctx);
        })
    }

    pub fn start_with(config: impl FnOnce() -> Config + Send + 'static, setup: impl FnOnce(&Context) + Send + 'static) -> ServerThread {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("joint-server".into())
            .spawn(move || {
                let ctx = Context::new(config()).expect("server context");
                let l = ctx.listen("tcp://127.0.0.1:0").expect("listen");
                let uri = ctx.listener_uri(l).expect("listener uri");
                setup(&ctx);
                tx.send((uri, ctx.waker())).unwrap();
                while !stop2.load(Ordering::SeqCst) {
                    ctx.wait(Some(Duration::from_millis(50))).expect("server wait");
                }
                drop(ctx);
            })
            .unwrap();
        let (uri, waker) = rx.recv_timeout(PROMPT).expect("server thread did not start");
        let addr = uri.strip_prefix("tcp://").unwrap().to_string();
        ServerThread { addr, uri, stop, waker, handle: Some(handle) }
    }

    pub fn client(&self, name: &'static str) -> RawClient {
        RawClient::connect(&self.addr, name)
    }

    /// Stop the server, asserting its thread ends promptly and did not panic.
    pub fn stop(mut self) {
        self.finish(true);
    }

    fn finish(&mut self, check: bool) {
        let Some(handle) = self.handle.take() else { return };
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        let deadline = Instant::now() + PROMPT;
        while !handle.is_finished() {
            if Instant::now() > deadline {
                if check {
                    panic!("server thread did not stop within {PROMPT:?}");
                }
                return; // leak it rather than hang a failing test
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let r = handle.join();
        if check {
            if let Err(p) = r {
                std::panic::resume_unwind(p);
            }
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        let check = !std::thread::panicking();
        self.finish(check);
    }
}

fn args_of(req: &Request) -> Vec<Val> {
    match Val::decode(req.args()) {
        Val::Arr(a) => a,
        other => panic!("args not an array: {other:?}"),
    }
}

/// Handlers used by the bad-input tests:
/// - `add [a, b]` → a + b;
/// - `echo [x]` → x;
/// - `args ...` → the positional params array as delivered;
/// - `kwargs ...` → the keyword params map as delivered, or nil;
/// - `stats []` → `[opens, closes, notes]`;
/// - `hang ...` → held until a `release` notification answers every held request with "released";
/// - every other notification is recorded in `notes`.
pub fn standard_handlers(ctx: &Context) -> Rc<RefCell<Stats>> {
    let stats = Rc::new(RefCell::new(Stats::default()));
    ctx.register(
        b"add",
        Rc::new(|_ctx, req| {
            let a = args_of(&req);
            let sum = a[0].as_int() + a[1].as_int();
            req.reply(&Val::Int(sum).encode()).unwrap();
        }),
    );
    ctx.register(
        b"echo",
        Rc::new(|_ctx, req| {
            let a = args_of(&req);
            req.reply(&a[0].encode()).unwrap();
        }),
    );
    ctx.register(
        b"args",
        Rc::new(|_ctx, req| {
            let args = req.args().to_vec();
            req.reply(&args).unwrap();
        }),
    );
    ctx.register(
        b"kwargs",
        Rc::new(|_ctx, req| {
            let kw = req.kwargs().map(<[u8]>::to_vec).unwrap_or_else(|| codec::NIL.to_vec());
            req.reply(&kw).unwrap();
        }),
    );
    let st = stats.clone();
    ctx.register(
        b"stats",
        Rc::new(move |_ctx, req| {
            let s = st.borrow();
            let v = arr![int(s.opens as i128), int(s.closes as i128), Val::Arr(s.notes.clone())];
            drop(s);
            req.reply(&v.encode()).unwrap();
        }),
    );
    let st = stats.clone();
    ctx.register(b"hang", Rc::new(move |_ctx, req| st.borrow_mut().held.push(req)));
    let st = stats.clone();
    ctx.set_notification_handler(Some(Rc::new(move |_ctx, _conn, method, params| {
        if method == b"release" {
            let held = std::mem::take(&mut st.borrow_mut().held);
            for r in held {
                r.reply(&s("released").encode()).unwrap();
            }
            return;
        }
        let kw = params.kwargs.map(Val::decode).unwrap_or(Val::Nil);
        st.borrow_mut().notes.push(arr![Val::Str(method.to_vec()), Val::decode(params.args), kw]);
    })));
    let st = stats.clone();
    ctx.set_conn_event_handler(Some(Rc::new(move |_ctx, _id, ev: ConnEvent<'_>| match ev {
        ConnEvent::Open => st.borrow_mut().opens += 1,
        ConnEvent::Closed { .. } => st.borrow_mut().closes += 1,
        ConnEvent::Connecting { .. } | ConnEvent::Down { .. } => {}
    })));
    stats
}

/// Ask the server for `[opens, closes, notes]` over `client`.
pub fn stats(client: &mut RawClient, msgid: u32) -> (usize, usize, Vec<Val>) {
    let v = client.call(msgid, "stats", &arr![]).result();
    let a = v.as_arr();
    (a[0].as_int() as usize, a[1].as_int() as usize, a[2].as_arr().to_vec())
}

/// Poll `stats` until the server has seen `closes` connections close.
pub fn wait_for_closes(client: &mut RawClient, first_msgid: u32, closes: usize) -> (usize, usize, Vec<Val>) {
    let deadline = Instant::now() + PROMPT;
    let mut id = first_msgid;
    loop {
        let st = stats(client, id);
        if st.1 >= closes {
            assert_eq!(st.1, closes, "more closes than expected");
            return st;
        }
        assert!(Instant::now() < deadline, "server saw {} closes, expected {closes}", st.1);
        id += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---- driving a context on the test thread ---------------------------------------------------

/// Run `ctx` until `done()` holds; panics after `within`.
pub fn drive_until(ctx: &Context, within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        ctx.wait(Some(Duration::from_millis(10))).unwrap();
    }
}

/// The outcome of one call as a test sees it.
pub type CallResult = Result<Vec<u8>, (ErrorKind, Vec<u8>, String)>;

/// Collects call outcomes by tag; counts every completion (to prove exactly-once).
#[derive(Clone, Default)]
pub struct Results {
    pub inner: Rc<RefCell<Vec<(u64, CallResult)>>>,
}

impl Results {
    pub fn done(&self, tag: u64) -> joint::reactor::Completion {
        let inner = self.inner.clone();
        Box::new(move |_ctx, r| {
            let v = match r.outcome {
                Ok(v) => Ok(v.to_vec()),
                Err(e) => Err((e.kind, e.error.to_vec(), e.message)),
            };
            inner.borrow_mut().push((tag, v));
        })
    }

    pub fn len(&self) -> usize {
        self.inner.borrow().len()
    }

    pub fn get(&self, tag: u64) -> CallResult {
        let v = self.inner.borrow();
        let mut found = v.iter().filter(|(t, _)| *t == tag);
        let first = found.next().unwrap_or_else(|| panic!("no result for tag {tag}")).1.clone();
        assert!(found.next().is_none(), "tag {tag} completed more than once");
        first
    }
}

/// Call and wait for the result (the test thread drives `ctx`).
pub fn call_wait(ctx: &Context, conn: joint::reactor::ConnId, method: &str, params: &Val) -> CallResult {
    let r = Results::default();
    ctx.call(conn, method.as_bytes(), &params.encode(), None, r.done(0)).expect("call");
    drive_until(ctx, Duration::from_secs(10), method, || r.len() == 1);
    r.get(0)
}

/// `call_wait` that must succeed; returns the decoded result.
pub fn call_ok(ctx: &Context, conn: joint::reactor::ConnId, method: &str, params: &Val) -> Val {
    match call_wait(ctx, conn, method, params) {
        Ok(v) => Val::decode(&v),
        Err((k, e, m)) => panic!("{method} failed: {k:?} {m} {:?}", if e.is_empty() { Val::Nil } else { Val::decode(&e) }),
    }
}

// ---- processes and files --------------------------------------------------------------------

/// Kills (and reaps) the child when dropped, so a failing test leaves no process behind.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    /// Wait for the child to exit, up to `within`; `None` on timeout (the child is killed).
    pub fn wait_timeout(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child().try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = self.child().kill();
                let _ = self.child().wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// A fresh directory under /tmp (short paths: Unix socket paths are limited to 107 bytes),
/// removed when dropped.
pub struct TempDir(pub PathBuf);

static TEMP_SEQ: AtomicUsize = AtomicUsize::new(0);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = TEMP_SEQ.fetch_add(1, Ordering::SeqCst);
        let p = PathBuf::from(format!("/tmp/jt-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether `program` is found on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}
