//! Watches the bytes of one direction of a connection as they are forwarded, and prints
//! each message as it ends: decoded, matched with its call (for latencies and method names),
//! fragments followed to their end. Everything it keeps is bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rmpv::Value;
use serde_json::Value as Json;

use super::describe::{describe, Described, Shown};
use super::print::{Dir, Printer, Record};
use super::scanner::{Message, Scanner};
use crate::json;

/// Bytes of one message kept for display; the rest is forwarded without being looked at.
pub const DISPLAY_LIMIT: usize = 256 * 1024;
/// Calls (and pings) remembered per connection for latencies; more are not timed.
pub const MAX_PENDING: usize = 4096;
/// Fragmented messages followed at once per direction (joint itself allows 64).
const MAX_FRAGMENTED: usize = 64;

/// What a latency is measured for: a call by its msgid, or a ping by its nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Call(u64),
    Ping(u64),
}

struct Pending {
    started: Instant,
    method: Option<String>,
}

/// What the two directions of one connection share.
pub struct Conn {
    pub label: u64,
    pub printer: Arc<Printer>,
    /// Keyed by the direction the call (or ping) went.
    pending: Mutex<HashMap<(Dir, Key), Pending>>,
    /// --full: print every fragment, not just the first and the last of each message.
    full: bool,
}

impl Conn {
    pub fn new(label: u64, printer: Arc<Printer>, full: bool) -> Conn {
        Conn { label, printer, pending: Mutex::new(HashMap::new()), full }
    }

    fn start(&self, dir: Dir, key: Key, method: Option<String>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() < MAX_PENDING {
            pending.insert((dir, key), Pending { started: Instant::now(), method });
        }
    }

    fn finish(&self, dir: Dir, key: Key) -> Option<Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&(dir, key))
    }

    fn method_of(&self, dir: Dir, msgid: u64) -> Option<String> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).get(&(dir, Key::Call(msgid))).and_then(|p| p.method.clone())
    }
}

/// A fragmented message being followed.
struct Fragmented {
    received: u64,
    count: u64,
    inner: Described,
}

pub struct Observer {
    scanner: Scanner,
    state: State,
}

struct State {
    dir: Dir,
    conn: Arc<Conn>,
    lost: bool,
    fragments: HashMap<u64, Fragmented>,
}

impl Observer {
    pub fn new(dir: Dir, conn: Arc<Conn>) -> Observer {
        Observer { scanner: Scanner::new(DISPLAY_LIMIT), state: State { dir, conn, lost: false, fragments: HashMap::new() } }
    }

    /// Look at the next bytes that went this way.
    pub fn feed(&mut self, data: &[u8]) {
        if self.state.lost {
            return;
        }
        let state = &mut self.state;
        if let Err((offset, why)) = self.scanner.feed(data, &mut |m| state.on_message(m)) {
            state.lost = true;
            let record = Record::new(state.conn.label, Some(state.dir), "undecodable")
                .with("offset", offset)
                .with("reason", format!("{why}; the rest of this direction is forwarded without being shown"));
            state.conn.printer.print(&record);
        }
    }
}

fn shown_json(shown: &Shown) -> Json {
    match shown {
        Shown::Value(v) => json::to_json(v),
        Shown::Cut { .. } => Json::Null,
    }
}

impl State {
    fn on_message(&mut self, message: Message<'_>) {
        let d = describe(message.prefix);
        let (dir, conn) = (self.dir, self.conn.clone());
        let mut record = Record::new(conn.label, Some(dir), d.kind);
        record.size = Some(message.size);
        record.msgid = d.msgid;
        record.method = d.method.clone();
        if d.kind == "fragment" {
            match self.on_fragment(&d, &mut record) {
                true => {}
                false => return,
            }
        } else {
            self.match_call(&d, &mut record);
            add_fields(&d, &mut record);
        }
        conn.printer.print(&record);
    }

    /// Start or finish the timing of a call or ping, and name the method of messages that
    /// belong to a call.
    fn match_call(&self, d: &Described, record: &mut Record) {
        let (dir, conn) = (self.dir, &self.conn);
        match (d.kind, d.msgid) {
            ("request" | "call", Some(msgid)) => conn.start(dir, Key::Call(msgid), d.method.clone()),
            ("response", Some(msgid)) => {
                if let Some(call) = conn.finish(dir.opposite(), Key::Call(msgid)) {
                    record.latency = Some(call.started.elapsed());
                    record.method = call.method;
                }
            }
            // These go from the callee back to the caller.
            ("yield" | "more_sends", Some(msgid)) => record.method = conn.method_of(dir.opposite(), msgid),
            (_, Some(msgid)) => record.method = conn.method_of(dir, msgid),
            ("ping", None) => {
                if let Some(nonce) = d.uint("nonce") {
                    conn.start(dir, Key::Ping(nonce), None);
                }
            }
            ("pong", None) => {
                if let Some(call) = d.uint("nonce").and_then(|nonce| conn.finish(dir.opposite(), Key::Ping(nonce))) {
                    record.latency = Some(call.started.elapsed());
                }
            }
            _ => {}
        }
    }

    /// Follow a fragment; false when it is a middle one not worth a line (without --full).
    fn on_fragment(&mut self, d: &Described, record: &mut Record) -> bool {
        let (Some(fragid), Some(total)) = (d.uint("fragid"), d.uint("total")) else {
            add_fields(d, record);
            return true;
        };
        let (chunk_len, chunk): (u64, &[u8]) = match d.field("chunk") {
            Some(Shown::Value(Value::Binary(b))) => (b.len() as u64, b),
            Some(Shown::Cut { payload: Some((n, some)), .. }) => (*n, some),
            _ => (0, &[]),
        };
        record.fields = vec![("fragid".into(), fragid.into()), ("total".into(), total.into()), ("chunk_bytes".into(), chunk_len.into())];
        let first = !self.fragments.contains_key(&fragid);
        if first {
            if self.fragments.len() >= MAX_FRAGMENTED {
                return true; // shown, not followed
            }
            // The first chunk starts with the message it carries.
            let inner = describe(chunk);
            record.fields.push(("of".into(), inner.kind.into()));
            if let Some(msgid) = inner.msgid {
                record.fields.push(("of_msgid".into(), msgid.into()));
            }
            let method = match (inner.kind, inner.msgid) {
                ("response", Some(msgid)) => self.conn.method_of(self.dir.opposite(), msgid),
                _ => inner.method.clone(),
            };
            if let Some(method) = method {
                record.fields.push(("of_method".into(), method.into()));
            }
            if inner.kind == "request" || inner.kind == "call" {
                let mut ignored = Record::default();
                self.match_call(&inner, &mut ignored);
            }
            self.fragments.insert(fragid, Fragmented { received: 0, count: 0, inner });
        }
        let Some(f) = self.fragments.get_mut(&fragid) else { return true };
        f.received += chunk_len;
        f.count += 1;
        if f.received < total {
            record.fields.push(("fragment".into(), f.count.into()));
            return first || self.conn.full;
        }
        let Some(done) = self.fragments.remove(&fragid) else { return true };
        record.fields.push(("fragments".into(), done.count.into()));
        record.fields.push(("complete".into(), done.inner.kind.into()));
        record.msgid = done.inner.msgid;
        record.method = done.inner.method.clone();
        if done.inner.kind != "request" && done.inner.kind != "call" {
            self.match_call(&done.inner, record);
        }
        true
    }
}

fn add_fields(d: &Described, record: &mut Record) {
    for (name, shown) in &d.fields {
        if let Shown::Cut { what, .. } = shown {
            record.cut = Some(format!("{name}: {what}"));
            break;
        }
        record.fields.push((name.to_string(), shown_json(shown)));
    }
}
