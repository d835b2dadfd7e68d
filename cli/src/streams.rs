//! The demo server's streaming methods (joint extension): `count` and `download` stream
//! items to the caller, `sum` and `upload` take values streamed in.
//!
//! Producers yield only within the caller's credit: when `yield_item` says `WouldBlock` they
//! stop and carry on at the next `StreamEvent::Writable`. They also hand the loop back after
//! a batch (a zero-delay timer continues), so a caller that grants a huge window cannot make
//! one call hog the server.
//!
//! A stock MessagePack-RPC caller gets the library's fallbacks: the items of `count` and
//! `download` as one array, and `sum` / `upload` answered at once as if nothing was sent in
//! (0 and `[0, 0]`), since a stock caller has no way to stream values in.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use joint::codec::{self, call_flags};
use joint::error::ErrorKind;
use joint::protocol::rpc_error;
use joint::reactor::{Config, Context, Request, StreamEvent, YieldStatus};
use rmpv::Value;

use crate::json;
use crate::methods::{add_values, invalid_params, params};

/// Byte `i` of a `download` is `i % DOWNLOAD_MODULUS` (a prime, so chunk boundaries never
/// line up with the pattern and a misplaced chunk shows).
pub const DOWNLOAD_MODULUS: u64 = 251;

/// Items or bytes a producer yields before it lets the loop run other work.
const BATCH_ITEMS: u32 = 256;
const BATCH_BYTES: usize = 4 << 20;

/// Serve count, download, sum and upload on `ctx`.
pub fn install(ctx: &Context, config: &Config) {
    // An item must fit in one message with its envelope.
    let max_chunk = config.limits.frame.max_message_size.saturating_sub(64).max(1) as u64;
    ctx.register(b"count", Rc::new(count));
    ctx.register(b"download", Rc::new(move |ctx: &Context, req: Request| download(ctx, req, max_chunk)));
    ctx.register(b"sum", Rc::new(sum));
    ctx.register(b"upload", Rc::new(upload));
}

// ---- producers --------------------------------------------------------------------------

/// `count(n)`: streams 0, 1, ..., n-1, then returns n.
fn count(ctx: &Context, req: Request) {
    let Some(n) = params(&req, &["n"]).and_then(|p| p[0].as_u64()) else {
        return invalid_params(req, "count(n) needs a non-negative integer");
    };
    let mut result = Vec::new();
    codec::write_uint(&mut result, n);
    produce(
        ctx,
        req,
        n,
        Box::new(|i| {
            let mut out = Vec::with_capacity(9);
            codec::write_uint(&mut out, i);
            Item::Encoded(out)
        }),
        result,
    );
}

/// `download(size, chunk)`: streams `size` bytes as bin items of `chunk` bytes (the last one
/// shorter), byte i being i % 251, then returns size.
fn download(ctx: &Context, req: Request, max_chunk: u64) {
    const USAGE: &str = "download(size, chunk) needs a non-negative size and a chunk size of at least 1 byte";
    let Some(p) = params(&req, &["size", "chunk"]) else {
        return invalid_params(req, USAGE);
    };
    let (Some(size), Some(chunk)) = (p[0].as_u64(), p[1].as_u64()) else {
        return invalid_params(req, USAGE);
    };
    if chunk == 0 {
        return invalid_params(req, USAGE);
    }
    if chunk > max_chunk {
        let message = format!("download(size, chunk): chunk is larger than the message size limit allows ({max_chunk} bytes at most)");
        let _ = req.reply_error_code(rpc_error::TOO_LARGE, message.as_bytes());
        return;
    }
    let items = size.div_ceil(chunk);
    let mut result = Vec::new();
    codec::write_uint(&mut result, size);
    // The bytes repeat every DOWNLOAD_MODULUS: each item is a slice of one precomputed run,
    // sent from it without a copy (so the producer does not limit the transfer).
    let run_len = chunk.min(size) as usize + DOWNLOAD_MODULUS as usize;
    let run: std::sync::Arc<Vec<u8>> = std::sync::Arc::new((0..run_len).map(|b| (b as u64 % DOWNLOAD_MODULUS) as u8).collect());
    produce(
        ctx,
        req,
        items,
        Box::new(move |i| {
            let start = i * chunk;
            let len = ((start + chunk).min(size) - start) as usize;
            let from = (start % DOWNLOAD_MODULUS) as usize;
            Item::Shared(run.clone(), from..from + len)
        }),
        result,
    );
}

/// Item `i`.
type MakeItem = Box<dyn Fn(u64) -> Item>;

enum Item {
    /// One encoded MessagePack object.
    Encoded(Vec<u8>),
    /// A bin of these bytes of a shared buffer.
    Shared(std::sync::Arc<Vec<u8>>, std::ops::Range<usize>),
}

/// A request streaming items `0..total`, then answering with `result`.
struct Producer {
    req: Request,
    next: u64,
    total: u64,
    make: MakeItem,
    result: Vec<u8>,
}

type ProducerSlot = Rc<RefCell<Option<Producer>>>;

fn produce(ctx: &Context, req: Request, total: u64, make: MakeItem, result: Vec<u8>) {
    let (conn, msgid, extended) = (req.conn(), req.msgid(), req.ext().is_some());
    if !extended && total == 0 {
        // The library turns a stock caller's answer into the array of the items yielded,
        // but only once something was yielded: with no items it would send `result`.
        // A stock caller always gets an array, so an empty stream is [].
        let _ = req.reply(codec::EMPTY_ARRAY);
        return;
    }
    let slot: ProducerSlot = Rc::new(RefCell::new(Some(Producer { req, next: 0, total, make, result })));
    if extended {
        let s = slot.clone();
        let handler = Rc::new(move |ctx: &Context, event: &StreamEvent| match event {
            StreamEvent::Writable => pump(ctx, &s),
            // Cancelled, past its deadline, or the connection closed: stop.
            StreamEvent::Ended(_) => drop(s.borrow_mut().take()),
            _ => {}
        });
        if ctx.set_stream_handler(conn, msgid, Some(handler)).is_err() {
            // Cannot happen for a live extended call; if it does, the caller hears of it.
            if let Some(p) = slot.borrow_mut().take() {
                let _ = p.req.reply_error_code(rpc_error::HANDLER_FAILED, b"could not follow the call's flow control");
            }
            return;
        }
    }
    pump(ctx, &slot);
}

/// Yield as much as credit (and the batch size) allows; answer once everything is out.
fn pump(ctx: &Context, slot: &ProducerSlot) {
    let mut guard = slot.borrow_mut();
    let Some(p) = guard.as_mut() else { return };
    let (mut items, mut bytes) = (0u32, 0usize);
    while p.next < p.total {
        if items >= BATCH_ITEMS || bytes >= BATCH_BYTES {
            // Let other connections (and this call's cancellation) in, then go on.
            let s = slot.clone();
            ctx.add_timer(Duration::ZERO, Box::new(move |ctx: &Context| pump(ctx, &s)));
            return;
        }
        let (sent, len) = match (p.make)(p.next) {
            Item::Encoded(item) => {
                let len = item.len();
                (p.req.yield_vec(item), len)
            }
            // Written to the caller from the shared buffer.
            Item::Shared(data, range) => {
                let len = range.len();
                (p.req.yield_bin_shared(data, range), len)
            }
        };
        match sent {
            Ok(YieldStatus::Sent) => {
                p.next += 1;
                items += 1;
                bytes += len;
            }
            // No credit: StreamEvent::Writable calls us again.
            Ok(YieldStatus::WouldBlock) => return,
            Err(e) => {
                let Some(p) = guard.take() else { return };
                match e.kind {
                    // The call is over (cancelled, deadline, connection closed).
                    ErrorKind::Cancelled | ErrorKind::Timeout | ErrorKind::Closed => {}
                    // A stock caller gets the items as one array, which has to fit in a message.
                    ErrorKind::TooLarge => {
                        let _ = p.req.reply_error_code(rpc_error::TOO_LARGE, e.message.as_bytes());
                    }
                    _ => {
                        let _ = p.req.reply_error_code(rpc_error::HANDLER_FAILED, e.message.as_bytes());
                    }
                }
                return;
            }
        }
    }
    if let Some(p) = guard.take() {
        // For a stock caller this sends the items as one array instead of `result`.
        let _ = p.req.reply(&p.result);
    }
}

// ---- consumers --------------------------------------------------------------------------

/// `sum()`: adds the numbers streamed in; integers stay integers, a float makes the total a
/// float. Answers at the end of input.
fn sum(ctx: &Context, req: Request) {
    if params(&req, &[]).is_none() {
        return invalid_params(req, "sum() takes no arguments: stream the numbers in");
    }
    consume(
        ctx,
        req,
        Value::from(0),
        Box::new(|total: &mut Value, item: &[u8], index: u64| {
            let value = json::decode(item).map_err(|e| format!("sum(): value {index} is not valid MessagePack: {e}"))?;
            if !matches!(value, Value::Integer(_) | Value::F32(_) | Value::F64(_)) {
                return Err(format!("sum(): value {index} is not a number: {}", json::to_json(&value)));
            }
            *total = add_values(total, &value).map_err(|_| "sum(): the total does not fit in a 64-bit integer".to_string())?;
            Ok(())
        }),
        Box::new(|total| json::encode(&total)),
    );
}

/// What `upload()` has received so far.
pub struct Upload {
    bytes: u64,
    crc: crc32fast::Hasher,
}

/// `upload()`: receives bin chunks; answers `[total_bytes, crc32]` (CRC-32/IEEE) at the end
/// of input.
fn upload(ctx: &Context, req: Request) {
    if params(&req, &[]).is_none() {
        return invalid_params(req, "upload() takes no arguments: stream bin chunks in");
    }
    consume(
        ctx,
        req,
        Upload { bytes: 0, crc: crc32fast::Hasher::new() },
        Box::new(|up: &mut Upload, item: &[u8], index: u64| {
            let mut pos = 0;
            match codec::read::bin(item, &mut pos) {
                Ok(chunk) if pos == item.len() => {
                    up.bytes += chunk.len() as u64;
                    up.crc.update(chunk);
                    Ok(())
                }
                _ => {
                    let shown = json::decode(item).map(|v| json::to_json(&v).to_string()).unwrap_or_else(|_| "invalid MessagePack".into());
                    Err(format!("upload(): value {index} is not a bin chunk: {}", truncate(&shown, 80)))
                }
            }
        }),
        Box::new(|up: Upload| {
            let crc = u64::from(up.crc.finalize());
            json::encode(&Value::Array(vec![Value::from(up.bytes), Value::from(crc)]))
        }),
    );
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// Takes one value streamed in (its index counts from 0); an error answers the call with
/// INVALID_PARAMS.
type Step<S> = Box<dyn Fn(&mut S, &[u8], u64) -> Result<(), String>>;
/// The answer once input ends.
type Finish<S> = Box<dyn FnOnce(S) -> Vec<u8>>;

struct Consumer<S> {
    req: Request,
    state: S,
    seen: u64,
    finish: Finish<S>,
}

/// Fold the values streamed into `req` with `step`, answer with `finish` at the end of input.
/// A call that takes no input (a stock caller, or an extended call without client
/// streaming) is answered at once, from `initial`.
fn consume<S: 'static>(ctx: &Context, req: Request, initial: S, step: Step<S>, finish: Finish<S>) {
    let takes_input = req.ext().is_some_and(|e| e.flags & call_flags::CLIENT_STREAM != 0);
    if !takes_input {
        let _ = req.reply(&finish(initial));
        return;
    }
    let (conn, msgid) = (req.conn(), req.msgid());
    let slot = Rc::new(RefCell::new(Some(Consumer { req, state: initial, seen: 0, finish })));
    let s = slot.clone();
    let handler = Rc::new(move |_ctx: &Context, event: &StreamEvent| {
        let mut guard = s.borrow_mut();
        let Some(c) = guard.as_mut() else { return };
        match event {
            StreamEvent::Input(item) => {
                let index = c.seen;
                c.seen += 1;
                if let Err(message) = step(&mut c.state, item, index) {
                    if let Some(c) = guard.take() {
                        invalid_params(c.req, &message);
                    }
                }
            }
            StreamEvent::InputEnd => {
                if let Some(c) = guard.take() {
                    let answer = (c.finish)(c.state);
                    let _ = c.req.reply(&answer);
                }
            }
            // The caller threw an error in: the call ends with it.
            StreamEvent::Thrown(error) => {
                if let Some(c) = guard.take() {
                    let _ = c.req.reply_error(error);
                }
            }
            StreamEvent::Ended(_) => drop(guard.take()),
            StreamEvent::Writable => {}
        }
    });
    if ctx.set_stream_handler(conn, msgid, Some(handler)).is_err() {
        if let Some(c) = slot.borrow_mut().take() {
            let _ = c.req.reply_error_code(rpc_error::HANDLER_FAILED, b"could not receive the call's input");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_long_text() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc...");
        assert_eq!(truncate("ééé", 2), "éé...");
    }
}
