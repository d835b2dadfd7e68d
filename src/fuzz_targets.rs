//! Bodies of the fuzz targets, as plain functions: `fuzz/fuzz_targets/*.rs` (cargo-fuzz,
//! nightly) call them on libFuzzer's inputs, and `tests/fuzz_corpus.rs` (stable) replays the
//! corpora and a pseudo-random batch through them. They use only the public API of
//! [`codec`](crate::codec) and [`protocol`](crate::protocol), and check invariants with
//! `assert!`, so a violated invariant is a crash to the fuzzer.
//!
//! - [`decoder`]: the framing scanner (resumable and one-shot, against a reference walker
//!   written here), envelope decoding (with an encode/decode round trip), header peeking,
//!   error-object parsing and the `read` module.
//! - [`session_bytes`]: a [`Session`] fed arbitrary bytes in pieces, stock, with the
//!   extension negotiated, or with small limits; the outcome must not depend on the split.
//! - [`session_messages`]: a generator builds valid messages (with a few mutated bytes) and
//!   makes the session call, cancel and answer in between; pending-call bookkeeping is
//!   checked exactly, and everything the session writes is decoded by a second session.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::codec::{self, call_flags, read, EnvelopeError, FrameLimits, Message, Params, RawMsgid, Scan, Scanner};
use crate::protocol::{rpc_error, Decoded, Event, ExtConfig, ExtMode, Limits, Outcome, SendError, Session, HELLO_METHOD};

// ---- small helpers ----------------------------------------------------------------------

/// xorshift64*, seeded from the input, for split points that follow the data.
struct Rng(u64);

impl Rng {
    fn from_data(data: &[u8], salt: u64) -> Rng {
        // FNV-1a over the length and the first and last bytes (all of it would cost more
        // than the target itself on big inputs).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt ^ (data.len() as u64) << 32;
        let (head, tail) = (&data[..data.len().min(32)], &data[data.len().saturating_sub(32)..]);
        for &b in head.iter().chain(tail) {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A piece size in one of four styles: single bytes, a few bytes, tens of bytes, or
    /// anything up to `len` (often all of it).
    fn piece(&mut self, style: u8, len: usize) -> usize {
        match style & 3 {
            0 => 1,
            1 => 1 + self.below(8),
            2 => 1 + self.below(64),
            _ => {
                if self.below(3) == 0 {
                    len.max(1)
                } else {
                    1 + self.below(len.max(1))
                }
            }
        }
    }
}

/// JOINT_FUZZ_TRACE=1: print every decode step (for replaying one input).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("JOINT_FUZZ_TRACE").is_some())
}

const UNLIMITED: FrameLimits = FrameLimits { max_message_size: usize::MAX, max_depth: u32::MAX };

/// Whether `part` lies inside `whole` (borrowed payloads must point into the frame).
fn within(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

fn is_one_object(obj: &[u8]) -> bool {
    Scanner::new(UNLIMITED).scan(obj) == Scan::Complete(obj.len())
}

/// What an independent walk of the MessagePack structure says about the object at the start
/// of a buffer, without limits. `depth` is the deepest container nesting walked so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    Complete { len: usize, depth: u32 },
    Incomplete { depth: u32 },
    Reserved { depth: u32 },
}

/// The reference walker: one loop, an explicit stack, every format spelled out from the
/// MessagePack spec (not from codec.rs).
fn reference_walk(buf: &[u8]) -> Walk {
    let mut pos: u64 = 0;
    // Children still to start in each open container.
    let mut open: Vec<u64> = Vec::new();
    let mut depth = 0u32;
    let len = buf.len() as u64;
    loop {
        let Some(&b) = buf.get(pos as usize) else { return Walk::Incomplete { depth } };
        let be = |n: u64| -> Option<u64> {
            let start = (pos + 1) as usize;
            let bytes = buf.get(start..start + n as usize)?;
            Some(bytes.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64))
        };
        // (header bytes, payload bytes, children if a container); None: header cut short.
        let head: Option<(u64, u64, Option<u64>)> = match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Some((1, 0, None)),
            0xc1 => return Walk::Reserved { depth },
            0x80..=0x8f => Some((1, 0, Some(2 * (b & 0x0f) as u64))),
            0x90..=0x9f => Some((1, 0, Some((b & 0x0f) as u64))),
            0xa0..=0xbf => Some((1, (b & 0x1f) as u64, None)),
            0xc4 | 0xd9 => be(1).map(|n| (2, n, None)),
            0xc5 | 0xda => be(2).map(|n| (3, n, None)),
            0xc6 | 0xdb => be(4).map(|n| (5, n, None)),
            // ext 8/16/32: marker, length, type byte, data
            0xc7 => be(1).map(|n| (3, n, None)),
            0xc8 => be(2).map(|n| (4, n, None)),
            0xc9 => be(4).map(|n| (6, n, None)),
            0xca => Some((5, 0, None)),
            0xcb => Some((9, 0, None)),
            0xcc | 0xd0 => Some((2, 0, None)),
            0xcd | 0xd1 => Some((3, 0, None)),
            0xce | 0xd2 => Some((5, 0, None)),
            0xcf | 0xd3 => Some((9, 0, None)),
            // fixext 1/2/4/8/16: marker, type byte, data
            0xd4 => Some((3, 0, None)),
            0xd5 => Some((4, 0, None)),
            0xd6 => Some((6, 0, None)),
            0xd7 => Some((10, 0, None)),
            0xd8 => Some((18, 0, None)),
            0xdc => be(2).map(|n| (3, 0, Some(n))),
            0xdd => be(4).map(|n| (5, 0, Some(n))),
            0xde => be(2).map(|n| (3, 0, Some(2 * n))),
            0xdf => be(4).map(|n| (5, 0, Some(2 * n))),
        };
        let Some((header, payload, children)) = head else { return Walk::Incomplete { depth } };
        if let Some(top) = open.last_mut() {
            *top -= 1;
        }
        match children {
            Some(n) => {
                depth = depth.max(open.len() as u32 + 1);
                pos += header;
                if n > 0 {
                    open.push(n);
                    continue;
                }
            }
            None => pos += header + payload,
        }
        if pos > len {
            return Walk::Incomplete { depth };
        }
        // A leaf (or an empty container) is done: close every container it completes.
        while open.last() == Some(&0) {
            open.pop();
        }
        if open.is_empty() {
            return Walk::Complete { len: pos as usize, depth };
        }
    }
}

// ---- decoder ----------------------------------------------------------------------------

/// The framing and decoding layer on arbitrary bytes. The first byte picks the limits
/// (bits 2-4 the depth, 5-7 the size) and the style of the split points (bits 0-1); the rest
/// is a stream of frames.
pub fn decoder(data: &[u8]) {
    let Some((&control, body)) = data.split_first() else { return };
    let max_depth = [128u32, 17, 16, 15, 5, 2, 1, 0][(control >> 2) as usize & 7];
    let max_message_size = [1usize << 20, 64 << 20, 4096, 1024, 256, 64, 16, 1][(control >> 5) as usize & 7];
    let limits = FrameLimits { max_message_size, max_depth };
    let mut rng = Rng::from_data(data, 1);

    // Functions that take any bytes: they must not panic, and must agree with themselves.
    check_peek_header(body);
    check_error_object(body);
    check_error_round_trip(body);
    walk_with_read(body, false);

    let mut off = 0;
    let mut frames = 0;
    while off < body.len() && frames < 512 {
        let buf = &body[off..];
        let one_shot = Scanner::new(limits).scan(buf);
        check_scan_against_reference(buf, limits, one_shot);
        let resumed = scan_in_pieces(buf, limits, &mut rng, control);
        assert_eq!(resumed, one_shot, "resumable scan in pieces disagrees with one-shot scan of {:02x?}", &buf[..buf.len().min(64)]);
        assert_eq!(
            codec::object_len(buf, limits),
            match one_shot {
                Scan::Complete(n) => Some(n),
                _ => None,
            }
        );
        match one_shot {
            Scan::Complete(n) => {
                let frame = &buf[..n];
                assert_eq!(codec::validate_object(frame, limits), Ok(()));
                check_frame(frame);
                off += n;
                frames += 1;
            }
            Scan::TooLarge => match discard(buf, limits, &mut rng, control) {
                Some(n) => {
                    off += n;
                    frames += 1;
                }
                None => break,
            },
            Scan::Incomplete { .. } | Scan::TooDeep | Scan::Invalid => {
                check_peek_header(buf);
                walk_with_read(buf, false);
                break;
            }
        }
    }
}

/// The one-shot scan against the reference walker.
fn check_scan_against_reference(buf: &[u8], limits: FrameLimits, scan: Scan) {
    let walk = reference_walk(buf);
    let ctx = || format!("{scan:?} vs reference {walk:?}, limits {limits:?}, input {:02x?}", &buf[..buf.len().min(64)]);
    match scan {
        Scan::Complete(n) => {
            assert!(n >= 1 && n <= buf.len() && n <= limits.max_message_size, "{}", ctx());
            assert!(matches!(walk, Walk::Complete { len, depth } if len == n && depth <= limits.max_depth), "{}", ctx());
        }
        Scan::Incomplete { needed } => {
            assert!(needed > buf.len(), "needed must exceed what is there: {}", ctx());
            assert!(matches!(walk, Walk::Incomplete { depth } if depth <= limits.max_depth), "{}", ctx());
        }
        Scan::Invalid => assert!(matches!(walk, Walk::Reserved { depth } if depth <= limits.max_depth), "{}", ctx()),
        Scan::TooDeep => {
            let depth = match walk {
                Walk::Complete { depth, .. } | Walk::Incomplete { depth } | Walk::Reserved { depth } => depth,
            };
            assert!(depth > limits.max_depth, "{}", ctx());
        }
        Scan::TooLarge => assert!(!matches!(walk, Walk::Complete { len, .. } if len <= limits.max_message_size), "{}", ctx()),
    }
    // The converse: a whole object within both limits is found.
    if let Walk::Complete { len, depth } = walk {
        if len <= limits.max_message_size {
            let want = if depth <= limits.max_depth { Scan::Complete(len) } else { Scan::TooDeep };
            assert_eq!(scan, want, "{}", ctx());
        }
    }
}

/// Scan `buf` as the session does: the same scanner over a growing prefix until it decides.
fn scan_in_pieces(buf: &[u8], limits: FrameLimits, rng: &mut Rng, style: u8) -> Scan {
    let mut s = Scanner::new(limits);
    let mut fed = 0;
    let mut bounds = Vec::new();
    let result = loop {
        fed = (fed + rng.piece(style, buf.len())).min(buf.len());
        match s.scan(&buf[..fed]) {
            Scan::Incomplete { needed } => {
                assert!(needed > fed, "Incomplete {{ needed: {needed} }} with {fed} bytes there");
                bounds.push(needed);
                if fed == buf.len() {
                    break Scan::Incomplete { needed };
                }
            }
            other => break other,
        }
    };
    if let Scan::Complete(n) = result {
        assert!(bounds.iter().all(|&b| b <= n), "a lower bound {bounds:?} exceeds the object's length {n}");
    }
    // A finished scanner reports the same again, and a reset one starts over.
    if let Scan::Complete(n) = result {
        assert_eq!(s.scan(&buf[..fed.max(n)]), Scan::Complete(n));
    }
    s.reset();
    assert_eq!(s.limits(), limits);
    result
}

/// After TooLarge, skip the object as the session does (drop what the scanner allows while
/// more arrives). Returns its length, or None if the stream ends or breaks first.
fn discard(buf: &[u8], limits: FrameLimits, rng: &mut Rng, style: u8) -> Option<usize> {
    let walk = reference_walk(buf);
    let mut s = Scanner::new(limits);
    // Start as the session does: with the prefix that was there when TooLarge was reported.
    let mut fed = 0;
    loop {
        fed = (fed + rng.piece(style, buf.len())).min(buf.len());
        match s.scan(&buf[..fed]) {
            Scan::TooLarge => break,
            Scan::Incomplete { .. } if fed < buf.len() => continue,
            other => panic!("a TooLarge object scanned {other:?} in pieces"),
        }
    }
    s.start_discarding();
    assert!(s.is_discarding());
    let mut dropped = 0;
    loop {
        match s.scan(&buf[dropped..fed]) {
            Scan::Complete(n) => {
                let end = dropped + n;
                assert!(end <= fed);
                if let Walk::Complete { len, .. } = walk {
                    assert_eq!(end, len, "discarding found the end at {end}, the object is {len} bytes");
                }
                return Some(end);
            }
            Scan::Incomplete { .. } => {
                let d = s.droppable(fed - dropped);
                assert!(d <= fed - dropped);
                s.advance(d);
                dropped += d;
                if fed == buf.len() {
                    assert!(!matches!(walk, Walk::Complete { .. }), "discarding missed the end of a whole object");
                    return None;
                }
                fed = (fed + rng.piece(style, buf.len())).min(buf.len());
            }
            Scan::TooDeep | Scan::Invalid => return None,
            Scan::TooLarge => panic!("TooLarge while discarding"),
        }
    }
}

/// One complete frame: envelope decoding, its round trip, headers, error objects, reading.
fn check_frame(frame: &[u8]) {
    let decoded = codec::decode_message(frame);
    let peek = codec::peek_header(frame);
    match decoded {
        Ok(msg) => {
            check_message(frame, msg);
            let (kind, id) = kind_and_id(msg);
            assert_eq!(peek, (Some(kind), id), "peek_header disagrees with decode_message on {frame:02x?}");
            // Re-encoding with joint's writers decodes to the same message.
            let mut again = Vec::new();
            encode(&mut again, msg);
            assert!(is_one_object(&again), "{again:02x?}");
            assert_eq!(codec::decode_message(&again), Ok(msg), "round trip of {frame:02x?} via {again:02x?}");
        }
        Err(EnvelopeError::Malformed { kind, msgid, reason }) => {
            assert!(!reason.is_empty());
            assert!(matches!(kind, codec::TYPE_REQUEST..=codec::TYPE_NOTIFICATION | codec::TYPE_CALL..=codec::TYPE_LAST));
            if let Some(RawMsgid::Invalid { start, end }) = msgid {
                assert!(start < end && end <= frame.len());
                let raw = &frame[start..end];
                assert!(is_one_object(raw));
                assert!(codec::uint_value(raw).and_then(|v| u32::try_from(v).ok()).is_none(), "a valid msgid reported invalid");
                // The echo that answers it is a response with that same invalid msgid.
                let mut echo = Vec::new();
                codec::encode_response_raw_id(&mut echo, raw, codec::NIL, codec::NIL);
                assert!(matches!(
                    codec::decode_message(&echo),
                    Err(EnvelopeError::Malformed { kind: codec::TYPE_RESPONSE, msgid: Some(RawMsgid::Invalid { .. }), .. })
                ));
            }
            if let Some(RawMsgid::Valid(id)) = msgid {
                // A valid msgid means at least two elements, which is all peek_header needs.
                assert_eq!(peek.0, Some(kind), "{frame:02x?}");
                if matches!(kind, codec::TYPE_REQUEST | codec::TYPE_RESPONSE | codec::TYPE_CALL) {
                    assert_eq!(peek.1, Some(id), "{frame:02x?}");
                }
            }
        }
        Err(EnvelopeError::NotRpc) => {}
    }
    check_peek_header(frame);
    check_error_object(frame);
    walk_with_read(frame, true);
}

fn kind_and_id(msg: Message<'_>) -> (u64, Option<u32>) {
    match msg {
        Message::Request { msgid, .. } => (codec::TYPE_REQUEST, Some(msgid)),
        Message::Response { msgid, .. } => (codec::TYPE_RESPONSE, Some(msgid)),
        Message::Notification { .. } => (codec::TYPE_NOTIFICATION, None),
        Message::Call { msgid, .. } => (codec::TYPE_CALL, Some(msgid)),
        Message::Yield { .. } => (codec::TYPE_YIELD, None),
        Message::Send { .. } => (codec::TYPE_SEND, None),
        Message::End { .. } => (codec::TYPE_END, None),
        Message::Cancel { .. } => (codec::TYPE_CANCEL, None),
        Message::Throw { .. } => (codec::TYPE_THROW, None),
        Message::MoreYields { .. } => (codec::TYPE_MORE_YIELDS, None),
        Message::MoreSends { .. } => (codec::TYPE_MORE_SENDS, None),
        Message::Fragment { .. } => (codec::TYPE_FRAGMENT, None),
        Message::Ping { .. } => (codec::TYPE_PING, None),
        Message::Pong { .. } => (codec::TYPE_PONG, None),
    }
}

/// Every payload of a decoded message is a whole object inside the frame.
fn check_message(frame: &[u8], msg: Message<'_>) {
    let object = |obj: &[u8]| {
        assert!(is_one_object(obj), "payload {obj:02x?} of {frame:02x?} is not one object");
        assert!(within(obj, frame) || obj == codec::EMPTY_ARRAY, "payload outside the frame");
        check_error_object(obj);
    };
    let params = |p: Params<'_>| {
        object(p.args);
        assert!(matches!(p.args[0], 0x90..=0x9f | 0xdc | 0xdd), "args are not an array: {:02x?}", p.args);
        if let Some(kw) = p.kwargs {
            object(kw);
            assert!(matches!(kw[0], 0x80..=0x8f | 0xde | 0xdf), "kwargs are not a map: {kw:02x?}");
        }
    };
    match msg {
        Message::Request { method, params: p, .. } | Message::Notification { method, params: p } | Message::Call { method, params: p, .. } => {
            assert!(within(method, frame));
            params(p);
        }
        Message::Response { error, result, .. } => {
            object(error);
            object(result);
        }
        Message::Yield { item, .. } | Message::Send { item, .. } => object(item),
        Message::Throw { error, .. } => object(error),
        Message::Fragment { chunk, .. } => assert!(within(chunk, frame)),
        Message::End { .. } | Message::Cancel { .. } | Message::MoreYields { .. } | Message::MoreSends { .. } | Message::Ping { .. } | Message::Pong { .. } => {}
    }
}

/// Encode a decoded message with joint's writers.
fn encode(out: &mut Vec<u8>, msg: Message<'_>) {
    match msg {
        Message::Request { msgid, method, params } => {
            let p = match params.kwargs {
                Some(kw) if params.args == codec::EMPTY_ARRAY => kw,
                _ => params.args,
            };
            codec::encode_request(out, msgid, method, p)
        }
        Message::Response { msgid, error, result } => codec::encode_response(out, msgid, error, result),
        Message::Notification { method, params } => {
            let p = match params.kwargs {
                Some(kw) if params.args == codec::EMPTY_ARRAY => kw,
                _ => params.args,
            };
            codec::encode_notification(out, method, p)
        }
        Message::Call { msgid, method, params, flags, deadline_ms, window } => {
            codec::encode_call(out, msgid, method, params.args, params.kwargs, flags, deadline_ms, window)
        }
        Message::Yield { msgid, item } => codec::encode_item(out, codec::TYPE_YIELD, msgid, item),
        Message::Send { msgid, item } => codec::encode_item(out, codec::TYPE_SEND, msgid, item),
        Message::Throw { msgid, error } => codec::encode_item(out, codec::TYPE_THROW, msgid, error),
        Message::End { msgid } => codec::encode_signal(out, codec::TYPE_END, msgid),
        Message::Cancel { msgid } => codec::encode_signal(out, codec::TYPE_CANCEL, msgid),
        Message::MoreYields { msgid, n } => codec::encode_credit(out, codec::TYPE_MORE_YIELDS, msgid, n),
        Message::MoreSends { msgid, n } => codec::encode_credit(out, codec::TYPE_MORE_SENDS, msgid, n),
        Message::Fragment { fragid, total, chunk } => codec::encode_fragment(out, fragid, total, chunk),
        Message::Ping { nonce } => codec::encode_signal(out, codec::TYPE_PING, nonce),
        Message::Pong { nonce } => codec::encode_signal(out, codec::TYPE_PONG, nonce),
    }
}

/// `peek_header` on any bytes: the longest header (array32, a 9-byte type, a 9-byte msgid)
/// is 23 bytes, so what it says from the first 23 bytes is all it will ever say (the
/// session's `header_known` relies on this), and what a shorter prefix says stays true.
fn check_peek_header(buf: &[u8]) {
    let full = codec::peek_header(buf);
    assert_eq!(
        codec::peek_header(&buf[..buf.len().min(23)]),
        full,
        "peek_header depends on bytes after the 23rd: {:02x?}",
        &buf[..buf.len().min(32)]
    );
    for cut in 0..buf.len().min(23) {
        let (kind, id) = codec::peek_header(&buf[..cut]);
        assert!(kind.is_none() || kind == full.0, "a prefix of {cut} bytes says type {kind:?}, all of it {:?}", full.0);
        assert!(id.is_none() || id == full.1, "a prefix of {cut} bytes says msgid {id:?}, all of it {:?}", full.1);
    }
}

/// Error-object parsing on any bytes, and a round trip through joint's own error objects.
fn check_error_object(obj: &[u8]) {
    if let Some(m) = codec::error_message(obj) {
        assert!(within(m, obj), "error_message returned bytes outside its input");
    }
    let _ = codec::error_code(obj);
}

/// Joint's own error objects, `[code, message]` and a map form, give their code and text back.
fn check_error_round_trip(obj: &[u8]) {
    let code = match obj.first() {
        Some(&b) => (b as i8 as i64) << (obj.len() % 40),
        None => 0,
    };
    let text = &obj[..obj.len().min(300)];
    let mut e = Vec::new();
    codec::encode_error(&mut e, code, text);
    assert_eq!(codec::error_code(&e), Some(code));
    assert_eq!(codec::error_message(&e), Some(text));
    // The map form, with the keys in str8 encoding and a leading key of another type.
    let mut m = Vec::new();
    codec::write_map_len(&mut m, 3);
    codec::write_uint(&mut m, 1);
    codec::write_nil(&mut m);
    m.extend_from_slice(&[0xd9, 7]);
    m.extend_from_slice(b"message");
    codec::write_str(&mut m, text);
    m.extend_from_slice(&[0xd9, 4]);
    m.extend_from_slice(b"code");
    codec::write_sint(&mut m, code);
    assert_eq!(codec::error_code(&m), Some(code));
    assert_eq!(codec::error_message(&m), Some(text));
}

/// Walk values with the `read` module: each reader either reads the value of its kind and
/// moves past exactly `read::raw`'s length, or fails without moving. `strict`: `buf` is
/// known to start with one whole object, so nothing may fail.
fn walk_with_read(buf: &[u8], strict: bool) {
    let mut pos = 0usize;
    // Per open container: children left, and where it must end (if raw could tell).
    let mut open: Vec<(u64, Option<usize>)> = Vec::new();
    let mut steps = 0;
    loop {
        steps += 1;
        if steps > 100_000 {
            return;
        }
        let start = pos;
        let kind = match read::kind(buf, pos) {
            Ok(k) => k,
            Err(e) => {
                assert!(!strict, "read::kind failed inside a whole object: {e:?}");
                return;
            }
        };
        // read::raw walks the whole value: only near the top (it is quadratic in the depth),
        // for leaves scalar_len below checks the same.
        let container = matches!(kind, read::Kind::Array | read::Kind::Map);
        let mut p = pos;
        let raw = if open.is_empty() || (container && open.len() < 3) { read::raw(buf, &mut p).map(Some) } else { Ok(None) };
        let raw_end = match raw {
            Ok(None) => None,
            Ok(Some(bytes)) => {
                assert_eq!(p, start + bytes.len());
                assert!(within(bytes, buf));
                Some(p)
            }
            Err(_) => {
                assert_eq!(p, start, "read::raw moved on failure");
                None
            }
        };
        if strict && open.is_empty() {
            assert_eq!(raw_end, Some(buf.len()), "read::raw of a whole frame");
        }
        // Readers of the wrong kind refuse without moving.
        let mut q = pos;
        if kind != read::Kind::Str {
            assert_eq!(read::str(buf, &mut q), Err(read::ReadError::Type));
        }
        if kind != read::Kind::Array {
            assert_eq!(read::array(buf, &mut q), Err(read::ReadError::Type));
        }
        if kind != read::Kind::Nil {
            assert_eq!(read::nil(buf, &mut q), Err(read::ReadError::Type));
        }
        if !matches!(kind, read::Kind::Int | read::Kind::Float) {
            assert_eq!(read::int(buf, &mut q), Err(read::ReadError::Type));
        }
        assert_eq!(q, pos);
        let ok = match kind {
            read::Kind::Nil => read::nil(buf, &mut pos).is_ok(),
            read::Kind::Bool => match read::boolean(buf, &mut pos) {
                Ok(v) => {
                    assert_eq!(v, buf[start] == 0xc3);
                    true
                }
                Err(_) => false,
            },
            read::Kind::Int | read::Kind::Float => read_number(buf, &mut pos, kind),
            read::Kind::Str => read::str(buf, &mut pos).is_ok(),
            read::Kind::Bin => read::bin(buf, &mut pos).is_ok(),
            read::Kind::Ext => read::ext(buf, &mut pos).is_ok(),
            read::Kind::Array | read::Kind::Map => {
                let n = if kind == read::Kind::Array {
                    read::array(buf, &mut pos).map(|n| n as u64)
                } else {
                    read::map(buf, &mut pos).map(|n| 2 * n as u64)
                };
                match n {
                    Ok(n) => {
                        if let Some((left, _)) = open.last_mut() {
                            *left -= 1;
                        }
                        if n > 0 {
                            open.push((n, raw_end));
                            continue;
                        }
                        // An empty container: done, like a leaf; its parent was counted.
                        if let Some(end) = raw_end {
                            assert_eq!(pos, end);
                        }
                        close(&mut open, pos);
                        if open.is_empty() {
                            return;
                        }
                        continue;
                    }
                    Err(_) => false,
                }
            }
        };
        if !ok {
            assert_eq!(pos, start, "a reader moved on failure");
            assert!(!strict, "a reader failed inside a whole object at {start}: {:02x?}", &buf[start..buf.len().min(start + 16)]);
            return;
        }
        if let Some(end) = raw_end {
            assert_eq!(pos, end, "reader and read::raw disagree on the length of a {kind:?}");
        }
        assert_eq!(codec::scalar_len(&buf[start..]), Some(pos - start));
        if let Some((left, _)) = open.last_mut() {
            *left -= 1;
        }
        close(&mut open, pos);
        if open.is_empty() {
            return;
        }
    }
}

/// Close every container whose last child just ended at `pos`.
fn close(open: &mut Vec<(u64, Option<usize>)>, pos: usize) {
    while let Some(&(0, end)) = open.last() {
        if let Some(end) = end {
            assert_eq!(pos, end, "a container's children end elsewhere than read::raw said");
        }
        open.pop();
    }
}

/// A number: `int`, `uint` and `float` agree with each other and with `codec::number`.
fn read_number(buf: &[u8], pos: &mut usize, kind: read::Kind) -> bool {
    let start = *pos;
    let (mut a, mut b, mut c) = (start, start, start);
    let i = read::int(buf, &mut a);
    let u = read::uint(buf, &mut b);
    let f = read::float(buf, &mut c);
    for (r, p) in [(i.is_ok(), a), (u.is_ok(), b), (f.is_ok(), c)] {
        if !r {
            assert_eq!(p, start, "a number reader moved on failure");
        }
    }
    let Ok(fv) = f else {
        assert!(i.is_err() && u.is_err(), "int or uint read what float could not");
        return false;
    };
    let n = c - start;
    let obj = &buf[start..c];
    assert_eq!(codec::scalar_len(&buf[start..]), Some(n));
    let number = codec::number(obj).expect("float() read it, number() must too");
    assert_eq!(i.ok(), codec::int_value(obj));
    assert_eq!(u.ok(), codec::uint_value(obj));
    if let Ok(v) = i {
        assert_eq!(a, c);
        if kind == read::Kind::Int {
            assert_eq!(fv, v as f64);
        }
    }
    if let Ok(v) = u {
        assert_eq!(b, c);
        if let Ok(s) = i {
            assert_eq!(s as u64, v);
        }
    }
    match (kind, number) {
        (read::Kind::Int, codec::Number::Unsigned(v)) => assert!(u == Ok(v)),
        (read::Kind::Int, codec::Number::Signed(v)) => assert!(i == Ok(v)),
        (read::Kind::Float, codec::Number::Float(v)) => assert!(v.to_bits() == fv.to_bits() || (v.is_nan() && fv.is_nan())),
        other => panic!("kind and number disagree: {other:?}"),
    }
    *pos = c;
    true
}

// ---- a session and what the test knows about it ------------------------------------------

/// A session under test plus the model of its bookkeeping.
struct Harness {
    s: Session<u32>,
    /// Calls it made that have not completed: msgid → the `call` value given (a unique tag).
    outstanding: BTreeMap<u32, u32>,
    /// Every tag that completed (Response event, cancel, forget, take_pending).
    completed: HashSet<u32>,
    next_tag: u32,
    /// The peer's extended calls to us that we have not answered.
    ext_in: BTreeSet<u32>,
    /// Requests received and not answered yet (for the generator's reply operations).
    requests: Vec<u32>,
    /// Model of `unanswered()`.
    unanswered: usize,
    /// Everything taken from `output()`, how much of it was checked as whole objects, and
    /// how much of it was forwarded to a mirror.
    wire: Vec<u8>,
    checked: usize,
    forwarded: usize,
    /// A mirror's bytes received and not consumed yet.
    wire_in: Vec<u8>,
    /// Bytes fed and not consumed yet (a stream: they stay for the next feed).
    unconsumed: Vec<u8>,
    /// The last reassembled message was not one object: the next step must be Fatal.
    expect_fatal: bool,
    /// The memory allowance set with `set_memory_allowance`, if any.
    allowance: Option<usize>,
    /// The calls pending when the negotiation finished (deferred extended calls among them
    /// went out then).
    pending_at_ready: Option<BTreeSet<u32>>,
    /// Debug rendering of every event, for comparing runs.
    events: Vec<String>,
    fatal: Option<String>,
    /// React to events like an application (session_bytes); otherwise only record them.
    auto: bool,
    /// How output is drained after an event: 0 all, 1 a piece, 2 only at the end.
    drain: u8,
    /// Keep `events` (the runs of session_bytes are compared).
    record: bool,
}

impl Harness {
    fn new(s: Session<u32>, auto: bool, drain: u8) -> Harness {
        Harness {
            s,
            outstanding: BTreeMap::new(),
            completed: HashSet::new(),
            next_tag: 1000,
            ext_in: BTreeSet::new(),
            requests: Vec::new(),
            unanswered: 0,
            wire: Vec::new(),
            checked: 0,
            forwarded: 0,
            wire_in: Vec::new(),
            unconsumed: Vec::new(),
            expect_fatal: false,
            allowance: None,
            pending_at_ready: None,
            events: Vec::new(),
            fatal: None,
            auto,
            drain,
            record: auto,
        }
    }

    fn tag(&mut self) -> u32 {
        self.next_tag += 1;
        self.next_tag
    }

    /// A call completed (one way or another): exactly once, with the tag it was made with.
    fn complete(&mut self, msgid: u32, tag: u32, how: &str) {
        let expected = self.outstanding.remove(&msgid);
        assert_eq!(expected, Some(tag), "{how} for call {msgid} with value {tag}; the model expected {expected:?}");
        assert!(self.completed.insert(tag), "call {msgid} (value {tag}) completed twice ({how})");
    }

    fn call(&mut self, method: &[u8], params: &[u8]) -> Result<u32, SendError> {
        let tag = self.tag();
        match self.s.call(method, params, tag) {
            Ok(id) => {
                assert!(self.outstanding.insert(id, tag).is_none(), "msgid {id} handed out twice");
                Ok(id)
            }
            Err((e, back)) => {
                assert_eq!(back, tag, "a refused call must hand its value back");
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn call_ext(&mut self, method: &[u8], args: &[u8], kwargs: Option<&[u8]>, flags: u32, deadline: u32, window: u32) -> Result<u32, SendError> {
        let tag = self.tag();
        match self.s.call_ext(method, args, kwargs, flags, deadline, window, tag) {
            Ok(id) => {
                assert!(self.outstanding.insert(id, tag).is_none(), "msgid {id} handed out twice");
                Ok(id)
            }
            Err((e, back)) => {
                assert_eq!(back, tag);
                Err(e)
            }
        }
    }

    fn cancel(&mut self, msgid: u32, forget: bool) {
        let expected = self.outstanding.get(&msgid).copied();
        let got = if forget { self.s.forget(msgid) } else { self.s.cancel(msgid) };
        assert_eq!(got, expected, "cancel/forget of {msgid}");
        if let Some(tag) = got {
            self.complete(msgid, tag, "cancel");
        }
    }

    /// Answer request `msgid`; `how` picks the kind of answer.
    fn answer(&mut self, msgid: u32, how: u8, result: &[u8]) {
        let answered = match how % 4 {
            0 => self.s.reply(msgid, Ok(result)).is_ok(),
            1 => self.s.reply(msgid, Err(result)).is_ok(),
            2 => self.s.reply_error(msgid, rpc_error::HANDLER_FAILED, b"handler failed").is_ok(),
            _ => {
                // Counts as the answer even on a closed session.
                self.s.finish_ext_call(msgid, rpc_error::CANCELLED, b"cancelled");
                true
            }
        };
        if answered {
            self.answered(msgid);
        }
    }

    /// The model's side of a final answer to `msgid`.
    fn answered(&mut self, msgid: u32) {
        self.unanswered = self.unanswered.saturating_sub(1);
        self.ext_in.remove(&msgid);
        self.requests.retain(|&r| r != msgid);
    }

    /// Deliver `input` in pieces of `piece()` bytes, the way the reactor does: decode until
    /// NeedMore, read more, stop on Fatal. Checks the session's contract at every step.
    fn feed(&mut self, input: &[u8], mut piece: impl FnMut() -> usize) {
        // `store[start..]` is what the session has not consumed (no shifting per message).
        let mut store = std::mem::take(&mut self.unconsumed);
        let mut start = 0;
        let carried = store.len();
        let mut blocked_again = false;
        let mut fed = 0;
        let mut zero_steps = 0;
        let mut steps = 0usize;
        loop {
            if self.fatal.is_some() {
                // Fatal stays Fatal, whatever comes.
                for probe in [&store[start..], &[][..], &[0x93, 0x02, 0xa1, b'n', 0x90][..]] {
                    assert!(matches!(self.s.decode_next(probe), Decoded::Fatal(_)), "decode_next after Fatal must stay Fatal");
                }
                break;
            }
            steps += 1;
            assert!(steps <= 4 * (input.len() + carried) + 64, "no progress: {steps} steps for {} bytes", input.len() + carried);
            let decoded = self.s.decode_next(&store[start..]);
            if std::mem::take(&mut self.expect_fatal) {
                assert!(matches!(decoded, Decoded::Fatal(_)), "reassembled bytes that are not one object, then {decoded:?}");
            }
            if trace() {
                eprintln!("decode_next({:02x?}) = {decoded:?}", &store[start..store.len().min(start + 48)]);
            }
            if !matches!(decoded, Decoded::Blocked) {
                blocked_again = false;
            }
            match decoded {
                Decoded::Blocked => {
                    // Nothing was taken: asking again without more memory says the same, and
                    // with memory for any one message the session goes on.
                    assert!(self.allowance.is_some(), "Blocked without a memory allowance set");
                    assert!(!blocked_again, "still Blocked with memory for any message");
                    assert!(matches!(self.s.decode_next(&store[start..]), Decoded::Blocked), "Blocked, then something else for the same bytes");
                    self.log(|| "Blocked".into());
                    let more = 2 * self.s.limits().frame.max_message_size + (1 << 16);
                    self.allowance = Some(more);
                    self.s.set_memory_allowance(more);
                    blocked_again = true;
                    self.check();
                    continue;
                }
                Decoded::NeedMore { needed } => {
                    assert!(needed >= 1);
                    // Asking again without new bytes changes nothing (checked now and then).
                    if steps % 8 == 1 {
                        match self.s.decode_next(&store[start..]) {
                            Decoded::NeedMore { needed: again } => assert_eq!(again, needed, "NeedMore changed without new bytes"),
                            other => panic!("NeedMore, then {other:?} for the same bytes"),
                        }
                    }
                    zero_steps = 0;
                    if fed == input.len() {
                        break;
                    }
                    let n = piece().clamp(1, input.len() - fed);
                    store.extend_from_slice(&input[fed..fed + n]);
                    fed += n;
                }
                Decoded::Consumed { consumed, event } => {
                    assert!(consumed <= store.len() - start, "consumed {consumed} of {} bytes", store.len() - start);
                    if consumed == 0 {
                        assert!(event.is_some(), "Consumed nothing and reported nothing");
                        zero_steps += 1;
                        assert!(zero_steps <= 1, "two steps in a row without consuming anything");
                    } else {
                        zero_steps = 0;
                    }
                    if let Some(event) = event {
                        self.on_event(event);
                    }
                    start += consumed;
                }
                Decoded::Reassembled { consumed, message } => {
                    assert!(consumed >= 1 && consumed <= store.len() - start);
                    zero_steps = 0;
                    start += consumed;
                    self.on_reassembled(&message);
                }
                Decoded::Fatal(reason) => {
                    assert!(!reason.is_empty());
                    self.log(|| format!("Fatal({reason})"));
                    self.fatal = Some(reason);
                }
            }
            self.check();
        }
        store.drain(..start);
        self.unconsumed = store;
        self.check_calls();
        self.check_output();
    }

    fn on_reassembled(&mut self, message: &[u8]) {
        let event = self.s.decode_reassembled(message);
        if !is_one_object(message) {
            // The peer's fragments made up something else: that is fatal.
            assert!(event.is_none(), "an event from reassembled bytes that are not one object");
            self.expect_fatal = true;
        }
        if let Some(event) = event {
            self.on_event(event);
        }
    }

    fn on_event(&mut self, event: Event<'_, u32>) {
        self.log(|| format!("{event:?}"));
        match event {
            Event::Request { msgid, params, ext, method } => {
                assert!(is_one_object(params.args), "params of a request are not one object: {:02x?}", params.args);
                assert!(method != HELLO_METHOD.as_bytes() || !self.s.limits().ext.enabled || ext.is_some(), "the hello reached the application");
                self.unanswered += 1;
                if ext.is_some() {
                    self.ext_in.insert(msgid);
                }
                self.requests.push(msgid);
                if self.auto {
                    let args = params.args.to_vec();
                    match msgid % 5 {
                        0 if msgid % 2 == 0 => self.answer(msgid, 0, &args),
                        0 => {
                            // As the reactor sends a big result: the envelope, then the payload
                            // from its own buffer.
                            let mut head = vec![0x94, 0x01];
                            codec::write_uint(&mut head, msgid as u64);
                            codec::write_nil(&mut head);
                            if self.s.push_reply_parts(msgid, head, args.into()).is_ok() {
                                self.answered(msgid);
                            }
                        }
                        1 => self.answer(msgid, 2, &args),
                        2 if ext.is_some() => {
                            // A streamed item first, then the result.
                            let mut item = Vec::new();
                            codec::encode_item(&mut item, codec::TYPE_YIELD, msgid, &args);
                            let _ = self.s.push_encoded(msgid, &item);
                            let mut head = vec![0x93, codec::TYPE_YIELD as u8];
                            codec::write_uint(&mut head, msgid as u64);
                            let _ = self.s.push_encoded_parts(msgid, head, args.clone().into());
                            self.answer(msgid, 0, codec::NIL);
                        }
                        3 => self.answer(msgid, 1, &args),
                        _ => {} // left unanswered
                    }
                }
            }
            Event::Response { msgid, call, outcome, extended } => {
                if let Outcome::Result(o) | Outcome::Error(o) = outcome {
                    assert!(is_one_object(o), "a response's payload is not one object: {o:02x?}");
                    if let Outcome::Error(e) = outcome {
                        assert_ne!(e, codec::NIL);
                    }
                }
                let _ = extended;
                self.complete(msgid, call, "Response");
            }
            Event::Item { msgid, item } => {
                assert!(is_one_object(item));
                assert!(self.outstanding.contains_key(&msgid), "an item for call {msgid}, which is not pending");
                if self.auto {
                    self.s.items_consumed(msgid, 1);
                }
            }
            Event::SendCredit { msgid } => {
                assert!(self.outstanding.contains_key(&msgid), "send credit for call {msgid}, which is not pending");
                if self.auto {
                    let _ = self.s.send_input(msgid, &[0x07]);
                }
            }
            Event::Input { msgid, item } => {
                assert!(is_one_object(item));
                assert!(self.ext_in.contains(&msgid), "input into {msgid}, not a running extended call");
                if self.auto {
                    self.s.inputs_consumed(msgid, 1);
                }
            }
            Event::InputEnd { msgid } | Event::YieldCredit { msgid, .. } => {
                assert!(self.ext_in.contains(&msgid), "an event for {msgid}, not a running extended call");
            }
            Event::Thrown { msgid, error } => {
                assert!(is_one_object(error));
                assert!(self.ext_in.contains(&msgid), "a throw into {msgid}, not a running extended call");
                if self.auto {
                    self.answer(msgid, 2, codec::NIL);
                }
            }
            Event::CancelRequested { msgid } => {
                assert!(self.ext_in.contains(&msgid), "a cancel of {msgid}, not a running extended call");
                if self.auto {
                    self.answer(msgid, 3, codec::NIL);
                }
            }
            Event::ExtensionReady(on) => {
                assert_eq!(self.s.extension(), if on { ExtMode::On } else { ExtMode::Refused });
                assert!(self.pending_at_ready.is_none(), "the negotiation finished twice");
                self.pending_at_ready = Some(self.outstanding.keys().copied().collect());
                for id in self.s.take_started_inputs() {
                    assert!(self.outstanding.contains_key(&id));
                }
            }
            Event::Notification { params, .. } => assert!(is_one_object(params.args)),
            Event::Rejected(r) | Event::Stray(r) => assert!(!r.is_empty()),
        }
        match self.drain {
            0 => self.drain_all(),
            1 => self.drain_some(700),
            _ => {}
        }
    }

    /// Record an event's rendering (when runs are compared, or JOINT_FUZZ_TRACE is set).
    fn log(&mut self, line: impl FnOnce() -> String) {
        if self.record || trace() {
            let line = line();
            if trace() {
                eprintln!("  event: {line}");
            }
            self.events.push(line);
        }
    }

    /// The model agrees with the session (cheap: after every step).
    fn check(&self) {
        assert_eq!(self.s.pending_len(), self.outstanding.len(), "pending_len() vs the calls outstanding {:?}", self.outstanding);
        assert_eq!(self.s.unanswered(), self.unanswered, "unanswered()");
        assert!(self.s.unanswered() <= self.s.limits().max_inflight);
    }

    /// Every call of the model is pending in the session, with its value.
    fn check_calls(&self) {
        self.check();
        for (&id, &tag) in &self.outstanding {
            assert_eq!(self.s.pending_call(id), Some(&tag));
        }
    }

    fn drain_some(&mut self, n: usize) {
        let out = self.s.output();
        let n = n.min(out.len());
        self.wire.extend_from_slice(&out[..n]);
        self.s.consume_output(n);
    }

    fn drain_all(&mut self) {
        let mut rounds = 0;
        while self.s.has_output() {
            rounds += 1;
            assert!(rounds < 1 << 20, "output never runs dry");
            let n = self.s.output().len();
            self.wire.extend_from_slice(self.s.output());
            self.s.consume_output(n);
        }
        assert_eq!(self.s.output_len(), 0, "has_output() is false but output_len() is not 0");
    }

    /// What was written, followed by what is waiting, is a sequence of whole MessagePack-RPC
    /// messages (the output only ever holds whole messages; a drain may stop mid-message).
    fn check_output(&mut self) {
        let drained = self.wire.len() - self.checked;
        let mut all = self.wire[self.checked..].to_vec();
        let mut slices = [std::io::IoSlice::new(&[]); 256];
        let n = self.s.output_slices(&mut slices);
        if n == slices.len() {
            return; // too many pieces queued to look at them all (checked once drained)
        }
        for s in &slices[..n] {
            all.extend_from_slice(s);
        }
        assert!(all.len() - drained <= self.s.output_len(), "output_slices() holds more than output_len()");
        let mut off = 0;
        let mut whole = 0;
        while off < all.len() {
            let Scan::Complete(n) = Scanner::new(UNLIMITED).scan(&all[off..]) else {
                panic!("the output is not a sequence of whole objects at {}: {:02x?}", self.checked + off, &all[off..all.len().min(off + 32)]);
            };
            let msg = &all[off..off + n];
            match codec::decode_message(msg) {
                Ok(_) => {}
                // An error reply that echoes a request's invalid msgid.
                Err(EnvelopeError::Malformed { kind: codec::TYPE_RESPONSE, msgid: Some(RawMsgid::Invalid { .. }), .. }) => {}
                Err(e) => panic!("the session wrote an invalid message {msg:02x?}: {e:?}"),
            }
            off += n;
            if off <= drained {
                whole = off;
            }
        }
        self.checked += whole;
    }

    /// Close the session: the pending calls come back, each once.
    fn finish(&mut self) {
        assert!(self.s.output_backlog() <= self.s.output_len());
        if self.drain == 2 {
            self.s.take_output(&mut self.wire);
            assert!(!self.s.has_output() && self.s.output_len() == 0, "take_output() left output behind");
        } else {
            self.drain_all();
        }
        assert_eq!(self.s.output_backlog(), 0);
        self.check_output();
        for (id, tag) in self.s.take_pending() {
            self.complete(id, tag, "take_pending");
        }
        assert!(self.outstanding.is_empty(), "calls lost: {:?}", self.outstanding);
        assert_eq!(self.s.pending_len(), 0);
        assert!(self.s.is_closed());
        assert_eq!(self.s.call(b"m", &[0x90], 1), Err((SendError::Closed, 1)));
        assert_eq!(self.s.notify(b"m", &[0x90]), Err(SendError::Closed));
        assert_eq!(self.s.reply(1, Ok(codec::NIL)), Err(SendError::Closed));
        assert_eq!(self.s.reply_error(1, 0, b"x"), Err(SendError::Closed));
        assert_eq!(self.s.push_reply_parts(1, vec![0x94, 0x01, 0x01, 0xc0], vec![0xc0].into()), Err(SendError::Closed));
        assert!(matches!(self.s.decode_next(&[0x90]), Decoded::Fatal(_)));
        // The peer is gone: everything queued or half received is dropped.
        self.s.discard_io();
        assert!(!self.s.has_output() && self.s.output_len() == 0 && !self.s.is_reassembling());
        assert_eq!(self.s.oldest_reassembly(), None);
    }
}

/// Two sessions with the extension on both sides, as in the protocol's own tests: `a` offered
/// it, `b` accepted. The hello is msgid 1 of `a`.
fn pair(la: Limits, lb: Limits) -> (Session<u32>, Session<u32>) {
    let (mut a, mut b) = (Session::new(la), Session::new(lb));
    a.offer_extension();
    assert_eq!(a.extension(), ExtMode::Offered);
    let wire = a.output().to_vec();
    a.consume_output(wire.len());
    assert!(matches!(b.decode_next(&wire), Decoded::Consumed { consumed, event: None } if consumed == wire.len()));
    let wire = b.output().to_vec();
    b.consume_output(wire.len());
    assert!(matches!(a.decode_next(&wire), Decoded::Consumed { event: Some(Event::ExtensionReady(true)), .. }));
    assert_eq!((a.extension(), b.extension()), (ExtMode::On, ExtMode::On));
    (a, b)
}

fn ext_limits(frame: FrameLimits, max_inflight: usize, window: u32) -> Limits {
    Limits { frame, max_inflight, ext: ExtConfig { enabled: true, window, fragment_size: 1024 } }
}

// ---- session_bytes ----------------------------------------------------------------------

/// A session fed arbitrary bytes. First byte: the mode (`% 3`: stock; the extension
/// negotiated; small limits with the extension negotiated) and, above it, options (which end
/// is under test, how output is drained, the piece style). The outcome — events and output —
/// must be the same whether the bytes come in pieces or all at once.
pub fn session_bytes(data: &[u8]) {
    let Some((&control, input)) = data.split_first() else { return };
    let style = control >> 6;
    let drain = (control >> 4) & 3;
    let mut rng = Rng::from_data(data, 2);

    let mut pieces = session_for_bytes(control, drain);
    pieces.feed(input, || rng.piece(style, input.len()));
    let mut whole = session_for_bytes(control, drain);
    whole.feed(input, || input.len());

    assert_eq!(pieces.events, whole.events, "events depend on how the input was split");
    pieces.finish();
    whole.finish();
    assert!(pieces.wire == whole.wire, "output depends on how the input was split");
}

/// The session under test for [`session_bytes`], with a few calls of its own pending so
/// responses, items and credits have somewhere to go.
fn session_for_bytes(control: u8, drain: u8) -> Harness {
    let mode = control % 3;
    let options = control / 3;
    let client = options & 1 == 1;
    let s = match mode {
        0 => {
            let ext = ExtConfig { enabled: options & 2 != 0, window: 4, fragment_size: 1024 };
            Session::new(Limits { frame: FrameLimits { max_message_size: 1 << 20, max_depth: 32 }, max_inflight: 16, ext })
        }
        1 => {
            let l = ext_limits(FrameLimits { max_message_size: 1 << 20, max_depth: 32 }, 16, 4);
            let (a, b) = pair(l, l);
            if client {
                a
            } else {
                b
            }
        }
        _ => {
            let frame = FrameLimits { max_message_size: 128 + (options as usize % 8) * 64, max_depth: 3 + (options as u32 % 5) };
            let l = ext_limits(frame, 2 + options as usize % 3, 2);
            let (a, b) = pair(l, l);
            if client {
                a
            } else {
                b
            }
        }
    };
    let mut h = Harness::new(s, true, drain);
    if mode == 2 {
        // Little memory for reassembly: Blocked, then more memory, then on.
        let allowance = [0usize, 100, 1000, usize::MAX][(options as usize / 15) % 4];
        if allowance != usize::MAX {
            h.s.set_memory_allowance(allowance);
            h.allowance = Some(allowance);
        }
    }
    let _ = h.call(b"add", &[0x92, 0x01, 0x02]);
    let _ = h.call(b"m", &[0x90]);
    assert_eq!(h.s.notify(b"note", &[0x91, 0x01]), Ok(()));
    if mode != 0 {
        let _ = h.call_ext(b"stream", &[0x90], None, 0, 0, 2);
        let _ = h.call_ext(b"sink", &[0x91, 0x05], Some(&[0x81, 0xa1, b'k', 0x01]), call_flags::CLIENT_STREAM | call_flags::ASYNC_FLOW, 100, 4);
    }
    h.drain_all();
    h.check();
    h
}

// ---- session_messages -------------------------------------------------------------------

/// The generator's source of decisions: the fuzz input, read a byte at a time (zeros once it
/// runs out).
struct Src<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Src<'_> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn below(&mut self, n: usize) -> usize {
        self.byte() as usize % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos += n;
        &self.data[start..end]
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.below(items.len())])
        }
    }
}

/// A valid MessagePack value, at most `depth` containers deep.
fn gen_value(src: &mut Src<'_>, out: &mut Vec<u8>, depth: u32) {
    match src.byte() % 17 {
        0 => codec::write_nil(out),
        1 => codec::write_bool(out, src.byte() & 1 == 1),
        2 => codec::write_uint(out, src.byte() as u64 & 0x7f),
        3 => codec::write_sint(out, -(src.byte() as i64) - 1),
        4 => {
            let v = src.u32() as u64;
            codec::write_uint(out, v << (src.byte() % 33));
        }
        5 => codec::write_sint(out, (src.u32() as i32 as i64) << (src.byte() % 32)),
        6 => codec::write_f64(out, f64::from_bits((src.u32() as u64) << 32 | src.u32() as u64)),
        7 => codec::write_f32(out, src.u16() as f32 / 4.0),
        8 => {
            let n = src.below(40);
            let s = src.bytes(n).to_vec();
            codec::write_str(out, &s);
        }
        9 => {
            let n = src.below(40);
            let b = src.bytes(n).to_vec();
            codec::write_bin(out, &b);
        }
        10 => {
            let n = [1usize, 2, 4, 8, 16, 0, 3, 200][src.below(8)];
            codec::write_ext(out, src.byte() as i8, &vec![0x5a; n]);
        }
        11 | 12 if depth > 0 => {
            let n = src.below(5);
            codec::write_array_len(out, n as u32);
            for _ in 0..n {
                gen_value(src, out, depth - 1);
            }
        }
        13 if depth > 0 => {
            let n = src.below(4);
            codec::write_map_len(out, n as u32);
            for _ in 0..n {
                gen_value(src, out, 0);
                gen_value(src, out, depth - 1);
            }
        }
        14 => {
            // Big: exercises the size limit and fragments.
            let n = src.u16() as usize % 9000;
            codec::write_bin(out, &vec![0xab; n]);
        }
        15 => {
            let n = 32 + src.below(300);
            codec::write_str(out, &vec![b'x'; n]);
        }
        _ => codec::write_uint(out, src.byte() as u64),
    }
}

fn gen_args(src: &mut Src<'_>, depth: u32) -> Vec<u8> {
    let mut p = Vec::new();
    let n = src.below(4);
    codec::write_array_len(&mut p, n as u32);
    for _ in 0..n {
        gen_value(src, &mut p, depth.saturating_sub(1));
    }
    p
}

fn gen_kwargs(src: &mut Src<'_>, depth: u32) -> Vec<u8> {
    let mut p = Vec::new();
    let n = src.below(3);
    codec::write_map_len(&mut p, n as u32);
    for i in 0..n {
        codec::write_str(&mut p, &[b'k', b'0' + i as u8]);
        gen_value(src, &mut p, depth.saturating_sub(1));
    }
    p
}

/// Params as peers send them: an array, a map or nil.
fn gen_params(src: &mut Src<'_>, depth: u32) -> Vec<u8> {
    match src.byte() % 8 {
        0 => gen_kwargs(src, depth),
        1 => codec::NIL.to_vec(),
        _ => gen_args(src, depth),
    }
}

fn gen_method(src: &mut Src<'_>) -> Vec<u8> {
    match src.byte() % 6 {
        0 => b"add".to_vec(),
        1 => b"echo".to_vec(),
        2 => Vec::new(),
        3 => {
            let n = src.below(12);
            src.bytes(n).to_vec()
        }
        _ => b"m".to_vec(),
    }
}

fn hello_value(window: u32, fragment: u64) -> Vec<u8> {
    let mut p = Vec::new();
    codec::write_array_len(&mut p, 2);
    codec::write_uint(&mut p, 1);
    codec::write_map_len(&mut p, 2);
    codec::write_str(&mut p, b"window");
    codec::write_uint(&mut p, window as u64);
    codec::write_str(&mut p, b"fragment");
    codec::write_uint(&mut p, fragment);
    p
}

/// A message the generator wrote: where it is, and whether it must be handled cleanly.
struct Gen {
    /// Messages queued for the next feed, concatenated.
    inbox: Vec<u8>,
    /// (start, end) of every message in `inbox`, for the mutations.
    bounds: Vec<(usize, usize)>,
    /// Responses in `inbox` to calls that were pending when they were written.
    answers: Vec<u32>,
    /// Something was generated that may legitimately make the stream fatal (garbage, a
    /// mutation, an extension message the session may not accept, a credit overrun, too
    /// deep): from then on a Fatal is not a finding.
    risky: bool,
    /// Items the generator may still stream into each of our extended calls (conservative:
    /// the credit we grant back is not counted).
    yields_left: BTreeMap<u32, u32>,
    /// Sends the generator may still make into each extended call it made to us.
    sends_left: BTreeMap<u32, u32>,
    /// The extension is (or, once the inbox is fed, will be) on.
    ext_on: bool,
    next_fragid: u32,
    open_reassemblies: usize,
    /// Declared sizes of the fragmented messages left unfinished (an honest sender keeps
    /// those under way within the message size limit together).
    open_declared: u64,
}

impl Gen {
    fn push(&mut self, message: &[u8], limits: FrameLimits) {
        let start = self.inbox.len();
        self.inbox.extend_from_slice(message);
        self.bounds.push((start, self.inbox.len()));
        // Too deep is fatal by design; too large is skipped, which is not.
        match reference_walk(message) {
            Walk::Complete { depth, .. } if depth <= limits.max_depth => {}
            _ => self.risky = true,
        }
    }
}

/// Structure-aware: the input drives a generator of valid messages (requests, responses to
/// the calls the session made, notifications, extension messages, fragments of big
/// messages), a few of whose bytes get mutated, and makes the session call, cancel and
/// answer in between. Every call completes exactly once; `pending_len()` and
/// `unanswered()` match the model; everything the session writes decodes cleanly at a
/// second session; while nothing risky was generated, the stream never goes Fatal and every
/// response to a pending call completes it.
pub fn session_messages(data: &[u8]) {
    let mut src = Src { data, pos: 0 };
    let role = src.byte() % 4;
    let c = src.byte();
    let frame = if c & 1 == 1 {
        FrameLimits { max_message_size: 300 + (c as usize >> 1) * 24, max_depth: 6 }
    } else {
        FrameLimits { max_message_size: 1 << 20, max_depth: 24 }
    };
    let max_inflight = 3 + (c as usize >> 4);
    let window = 1 + (c as u32 >> 5);
    let depth = frame.max_depth - 2;
    let ours = ext_limits(frame, max_inflight, window);
    // The mirror reads what the session writes; its window is wide so that credit the
    // generator grants never makes our SENDs overrun it.
    let mirror_limits = ext_limits(FrameLimits::default(), 1 << 20, 1 << 30);

    // role 0: stock client; 1: client that offered the extension (the generator answers);
    // 2: client with the extension negotiated with the mirror; 3: server side (the
    // generator may offer the extension), no mirror.
    let (session, mirror) = match role {
        0 => {
            let stock = |l: Limits| Limits { ext: ExtConfig { enabled: false, ..l.ext }, ..l };
            (Session::new(stock(ours)), Some(Session::<u32>::new(stock(mirror_limits))))
        }
        1 => {
            let mut s = Session::new(ours);
            s.offer_extension();
            (s, Some(Session::new(mirror_limits)))
        }
        2 => {
            let (s, m) = pair(ours, mirror_limits);
            (s, Some(m))
        }
        _ => (Session::new(ours), None),
    };
    let mut h = Harness::new(session, false, 2);
    let mut mirror = mirror.map(|m| Harness::new(m, false, 2));
    let mut g = Gen {
        inbox: Vec::new(),
        bounds: Vec::new(),
        answers: Vec::new(),
        risky: false,
        yields_left: BTreeMap::new(),
        sends_left: BTreeMap::new(),
        ext_on: role == 2,
        next_fragid: 0,
        open_reassemblies: 0,
        open_declared: 0,
    };
    // Calls the mirror must see (sent) and extended calls waiting for the negotiation.
    let mut sent: BTreeSet<u32> = BTreeSet::new();
    let mut deferred: BTreeSet<u32> = BTreeSet::new();
    let hello_pending = role == 1;
    let mut hello_answered = false;
    if role == 1 {
        // The hello took msgid 1.
        let id = h.call(b"first", &[0x90]).unwrap();
        assert_eq!(id, 2, "the hello should have taken msgid 1");
        sent.insert(id);
    }

    let mut ops = 0;
    while !src.done() && ops < 2000 {
        ops += 1;
        let op = src.byte();
        match op % 24 {
            // ---- the session acts ----
            0 | 1 => {
                let method = gen_method(&mut src);
                let params = gen_params(&mut src, depth);
                if let Ok(id) = h.call(&method, &params) {
                    sent.insert(id);
                }
            }
            2 | 3 => {
                let method = gen_method(&mut src);
                let args = gen_args(&mut src, depth);
                let kwargs = (src.byte() & 1 == 1).then(|| gen_kwargs(&mut src, depth));
                let flags = src.byte() as u32 & 0x0f;
                let win = src.below(6) as u32;
                let mode = h.s.extension();
                if let Ok(id) = h.call_ext(&method, &args, kwargs.as_deref(), flags, src.byte() as u32, win) {
                    if mode == ExtMode::Offered {
                        deferred.insert(id);
                    } else {
                        sent.insert(id);
                    }
                    if mode == ExtMode::On || mode == ExtMode::Offered {
                        g.yields_left.insert(id, win);
                    }
                }
            }
            4 => {
                let ids: Vec<u32> = h.outstanding.keys().copied().collect();
                let id = src.pick(&ids).unwrap_or(src.byte() as u32);
                h.cancel(id, src.byte() & 3 == 0);
            }
            5 | 6 => {
                let ids = h.requests.clone();
                let id = src.pick(&ids).unwrap_or(src.byte() as u32);
                let how = src.byte();
                let mut result = Vec::new();
                gen_value(&mut src, &mut result, depth);
                h.answer(id, how, &result);
            }
            7 => {
                let ids: Vec<u32> = h.outstanding.keys().copied().collect();
                if let Some(id) = src.pick(&ids) {
                    match src.byte() % 4 {
                        0 => {
                            let mut item = Vec::new();
                            gen_value(&mut src, &mut item, depth);
                            let _ = h.s.send_input(id, &item);
                        }
                        1 => {
                            let _ = h.s.end_input(id);
                        }
                        2 => {
                            let mut e = Vec::new();
                            codec::encode_error(&mut e, 1, b"thrown");
                            let _ = h.s.throw_into(id, &e);
                        }
                        _ => h.s.items_consumed(id, 1 + src.below(4) as u32),
                    }
                }
            }
            8 => {
                let ids: Vec<u32> = h.ext_in.iter().copied().collect();
                if let Some(id) = src.pick(&ids) {
                    h.s.inputs_consumed(id, 1 + src.below(4) as u32);
                }
            }
            9 => {
                let n = src.u16() as usize;
                h.drain_some(n);
            }
            10 => {
                h.drain_all();
            }
            // ---- the peer writes ----
            11 | 12 => {
                let id = if src.byte() & 3 == 0 { src.u32() } else { src.byte() as u32 % 16 };
                let method = gen_method(&mut src);
                let params = gen_params(&mut src, depth);
                let mut m = Vec::new();
                codec::encode_request(&mut m, id, &method, &params);
                g.push(&m, frame);
            }
            13 | 14 => {
                let ids: Vec<u32> = h.outstanding.keys().copied().collect();
                let id = match src.pick(&ids) {
                    Some(id) if src.byte() % 4 != 0 => {
                        g.answers.push(id);
                        id
                    }
                    // Not a call of ours (nor the hello, msgid 1).
                    _ => 500 + src.byte() as u32,
                };
                let mut error = Vec::new();
                match src.byte() % 5 {
                    0 => codec::encode_error(&mut error, 0, b""),
                    1 => codec::encode_error(&mut error, rpc_error::NO_METHOD, b"no such method"),
                    2 => gen_value(&mut src, &mut error, depth),
                    _ => codec::write_nil(&mut error),
                }
                let mut result = Vec::new();
                gen_value(&mut src, &mut result, depth);
                let mut m = Vec::new();
                codec::encode_response(&mut m, id, &error, &result);
                g.push(&m, frame);
            }
            15 => {
                let method = gen_method(&mut src);
                let params = gen_params(&mut src, depth);
                let mut m = Vec::new();
                codec::encode_notification(&mut m, &method, &params);
                g.push(&m, frame);
            }
            16 | 17 => gen_extension(&mut src, &mut g, &h, frame, depth),
            18 => gen_fragments(&mut src, &mut g, &h, frame, depth),
            19 => {
                // The negotiation (client that offered it) or an offer (server side).
                if hello_pending && !hello_answered {
                    hello_answered = true;
                    let mut m = Vec::new();
                    match src.byte() % 4 {
                        0 => {
                            let mut e = Vec::new();
                            codec::encode_error(&mut e, rpc_error::NO_METHOD, b"no such method");
                            codec::encode_response(&mut m, 1, &e, codec::NIL);
                        }
                        1 => {
                            codec::encode_response(&mut m, 1, codec::NIL, &[0x91, 0x00]);
                        }
                        _ => {
                            let f = [1024u64, 1, 1 << 20, src.u16() as u64][src.below(4)];
                            codec::encode_response(&mut m, 1, codec::NIL, &hello_value(src.byte() as u32, f));
                            g.ext_on = true;
                        }
                    }
                    g.push(&m, frame);
                } else if role == 3 {
                    let mut m = Vec::new();
                    let id = src.byte() as u32;
                    codec::encode_request(&mut m, id, HELLO_METHOD.as_bytes(), &hello_value(src.byte() as u32, 1024));
                    g.push(&m, frame);
                    g.ext_on = true;
                }
            }
            20 => {
                // Garbage between messages.
                let n = 1 + src.below(6);
                let junk = src.bytes(n).to_vec();
                let start = g.inbox.len();
                g.inbox.extend_from_slice(&junk);
                g.bounds.push((start, g.inbox.len()));
                g.risky = true;
            }
            21 => {
                // Little memory for reassembly (the feed raises it when Blocked).
                let allowance = src.u16() as usize;
                h.s.set_memory_allowance(allowance);
                h.allowance = Some(allowance);
            }
            // ---- delivery ----
            _ => deliver(&mut src, &mut g, &mut h, &mut mirror, &mut sent, &mut deferred),
        }
        h.check();
    }
    deliver(&mut src, &mut g, &mut h, &mut mirror, &mut sent, &mut deferred);
    h.drain_all();
    h.check_output();
    if let Some(m) = mirror.as_mut() {
        forward(&mut h, m, &mut sent, &mut deferred);
        // Every call that went out reached the peer, once (the mirror records Request events
        // in `requests`; the hello never reaches it as one).
        let seen = &m.requests;
        let unique: BTreeSet<u32> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "the peer saw a call twice: {seen:?}");
        assert_eq!(&unique, &sent, "calls sent (left) vs calls the peer saw (right); deferred {deferred:?}");
    }
    h.finish();
}

/// An extension message; risky unless the extension is on and the credit allows it.
fn gen_extension(src: &mut Src<'_>, g: &mut Gen, h: &Harness, frame: FrameLimits, depth: u32) {
    let ours: Vec<u32> = h.outstanding.keys().copied().collect();
    let theirs: Vec<u32> = h.ext_in.iter().copied().collect();
    let mut m = Vec::new();
    if !g.ext_on {
        g.risky = true;
    }
    match src.byte() % 9 {
        0 => {
            let id = src.byte() as u32 % 24;
            let method = gen_method(src);
            let args = gen_args(src, depth);
            let kwargs = (src.byte() & 1 == 1).then(|| gen_kwargs(src, depth));
            let flags = src.byte() as u32 & 0x0f;
            codec::encode_call(&mut m, id, &method, &args, kwargs.as_deref(), flags, src.byte() as u32, src.below(8) as u32);
            if theirs.contains(&id) {
                // The msgid is still in flight: the session keeps the first call (and its
                // window), so later SENDs may break that window.
                g.risky = true;
            } else if flags & call_flags::CLIENT_STREAM != 0 {
                g.sends_left.insert(id, h.s.limits().ext.window);
            } else {
                g.sends_left.remove(&id);
            }
        }
        1 => {
            let id = src.pick(&ours).unwrap_or(src.byte() as u32);
            gen_item(src, &mut m, codec::TYPE_YIELD, id, depth);
            match g.yields_left.get_mut(&id) {
                Some(n) if *n > 0 => *n -= 1,
                // No credit left, or a call we do not know is extended: may be fatal.
                _ => g.risky = true,
            }
        }
        2 => {
            let id = src.pick(&theirs).unwrap_or(src.byte() as u32);
            gen_item(src, &mut m, codec::TYPE_SEND, id, depth);
            match g.sends_left.get_mut(&id) {
                Some(n) if *n > 0 => *n -= 1,
                Some(_) => g.risky = true,
                None => {}
            }
        }
        3 | 4 => {
            let id = src.pick(&theirs).unwrap_or(src.byte() as u32);
            let kind = if src.byte() & 1 == 0 { codec::TYPE_END } else { codec::TYPE_CANCEL };
            codec::encode_signal(&mut m, kind, id);
            if kind == codec::TYPE_END {
                g.sends_left.remove(&id);
            }
        }
        5 => {
            let id = src.pick(&theirs).unwrap_or(src.byte() as u32);
            let mut e = Vec::new();
            codec::encode_error(&mut e, src.byte() as i64, b"thrown");
            codec::encode_item(&mut m, codec::TYPE_THROW, id, &e);
        }
        6 => {
            let id = src.pick(&theirs).unwrap_or(src.byte() as u32);
            codec::encode_credit(&mut m, codec::TYPE_MORE_YIELDS, id, src.byte() as u32);
        }
        _ => {
            let id = src.pick(&ours).unwrap_or(src.byte() as u32);
            codec::encode_credit(&mut m, codec::TYPE_MORE_SENDS, id, src.byte() as u32);
        }
    }
    g.push(&m, frame);
}

/// A YIELD or SEND (`kind`) of one generated value for call `id`.
fn gen_item(src: &mut Src<'_>, out: &mut Vec<u8>, kind: u64, id: u32, depth: u32) {
    let mut item = Vec::new();
    gen_value(src, &mut item, depth);
    codec::encode_item(out, kind, id, &item);
}

/// A big message in fragments: a request, a response to a pending call, or a call; all of
/// its fragments or some, possibly with a small message in between or a lying total.
fn gen_fragments(src: &mut Src<'_>, g: &mut Gen, h: &Harness, frame: FrameLimits, depth: u32) {
    if !g.ext_on {
        g.risky = true;
    }
    let mut inner = Vec::new();
    let mut big = vec![0x91];
    codec::write_bin(&mut big, &vec![0xcd; 200 + src.u16() as usize % 6000]);
    let ours: Vec<u32> = h.outstanding.keys().copied().collect();
    let mut answer = None;
    match src.byte() % 3 {
        0 => codec::encode_request(&mut inner, src.byte() as u32, b"big", &big),
        1 => {
            let id = src.pick(&ours).unwrap_or(src.byte() as u32);
            if h.outstanding.contains_key(&id) {
                answer = Some(id);
            }
            codec::encode_response(&mut inner, id, codec::NIL, &big);
        }
        _ => codec::encode_call(&mut inner, 100 + src.byte() as u32, b"big", &big, None, 0, 0, 4),
    }
    match src.byte() {
        0..=31 => {
            // A small message instead, one that did not need fragmenting.
            inner.clear();
            answer = None;
            codec::encode_notification(&mut inner, b"n", &gen_args(src, depth));
        }
        32..=35 => {
            // A fragment in fragments: fatal by design.
            inner.clear();
            answer = None;
            codec::encode_fragment(&mut inner, 9999, 3, &[0x91, 0x90]);
            g.risky = true;
        }
        _ => {}
    }
    if !matches!(reference_walk(&inner), Walk::Complete { depth, .. } if depth <= frame.max_depth) {
        g.risky = true;
    }
    // The fragment frames must fit the frame limit, or they are skipped (not fatal, but the
    // reassembly then never completes).
    let room = frame.max_message_size.saturating_sub(24).max(1);
    let chunk = 1 + src.u16() as usize % room.min(4096);
    let fragid = g.next_fragid + src.below(3) as u32;
    g.next_fragid = fragid + 1;
    let lie = src.byte() % 16 == 0;
    let keep_all = src.byte() % 8 != 0;
    let total = if lie {
        g.risky = true;
        inner.len() as u64 + 1 + src.byte() as u64
    } else {
        inner.len() as u64
    };
    let fits = total <= frame.max_message_size as u64;
    if fits && g.open_declared + total > frame.max_message_size as u64 {
        g.risky = true;
    }
    let between = src.byte() % 4 == 0;
    let pieces: Vec<&[u8]> = inner.chunks(chunk).collect();
    let count = if keep_all { pieces.len() } else { src.below(pieces.len() + 1) };
    if inner.len() > frame.max_message_size && chunk < 23 {
        // Too large: skipped, and its call failed if the first fragment holds the header.
        answer = None;
    }
    if count < pieces.len() || lie {
        answer = None;
        if count > 0 {
            // Never completes: it holds one of the reassemblies the session allows at once.
            g.open_reassemblies += 1;
            if g.open_reassemblies >= 60 {
                g.risky = true;
            }
            if fits {
                g.open_declared += total;
            }
        }
    }
    for (i, p) in pieces.iter().take(count).enumerate() {
        let mut m = Vec::new();
        codec::encode_fragment(&mut m, fragid, total, p);
        g.push(&m, frame);
        if between && i == 0 {
            let mut n = Vec::new();
            codec::encode_notification(&mut n, b"between", &[0x90]);
            g.push(&n, frame);
        }
    }
    if let Some(id) = answer {
        g.answers.push(id);
    }
}

/// Mutate a few bytes of the inbox (sometimes), then feed it to the session in pieces.
fn deliver(src: &mut Src<'_>, g: &mut Gen, h: &mut Harness, mirror: &mut Option<Harness>, sent: &mut BTreeSet<u32>, deferred: &mut BTreeSet<u32>) {
    let mut inbox = std::mem::take(&mut g.inbox);
    let bounds = std::mem::take(&mut g.bounds);
    let answers = std::mem::take(&mut g.answers);
    let mutations = match src.byte() % 16 {
        0..=11 => 0,
        n => n as usize - 11,
    };
    if !inbox.is_empty() {
        for _ in 0..mutations {
            // Mostly inside a message's first bytes, where the structure is.
            let (start, end) = bounds[src.below(bounds.len())];
            let at = start + (src.u16() as usize % (end - start).clamp(1, 24));
            let at = at.min(inbox.len() - 1);
            let new = src.byte();
            if inbox[at] != new {
                inbox[at] = new;
                g.risky = true;
            }
        }
    }
    let pending_before: BTreeSet<u32> = h.outstanding.keys().copied().collect();
    // Single bytes only for small batches (a big one byte by byte costs too many steps).
    let style = match src.byte() {
        s if s & 3 == 0 && inbox.len() > 2048 => s | 1,
        s => s,
    };
    let mut rng = Rng::from_data(&inbox, style as u64);
    let len = inbox.len();
    h.feed(&inbox, || rng.piece(style, len));
    if !g.risky {
        assert!(h.fatal.is_none(), "valid input was fatal: {:?}; events {:?} (all of them with JOINT_FUZZ_TRACE=1)", h.fatal, h.events);
        for id in answers {
            // (Not pending before the feed: cancelled meanwhile.)
            if pending_before.contains(&id) {
                assert!(!h.outstanding.contains_key(&id), "a valid response to pending call {id} did not complete it; events {:?}", h.events);
            }
        }
    }
    if let Some(m) = mirror.as_mut() {
        forward(h, m, sent, deferred);
    }
}

/// Move what the session wrote to the mirror, which must read it without a Fatal.
fn forward(h: &mut Harness, m: &mut Harness, sent: &mut BTreeSet<u32>, deferred: &mut BTreeSet<u32>) {
    // Calls deferred until the negotiation went out when it finished, if still pending then.
    if let Some(pending) = &h.pending_at_ready {
        for id in std::mem::take(deferred) {
            if pending.contains(&id) {
                sent.insert(id);
            }
        }
    }
    h.drain_all();
    let bytes = h.wire[h.forwarded..].to_vec();
    h.forwarded = h.wire.len();
    // The wire may start mid-message (an earlier partial drain): the mirror keeps a buffer.
    m.wire_in.extend_from_slice(&bytes);
    let input = std::mem::take(&mut m.wire_in);
    let mut off = 0;
    loop {
        match m.s.decode_next(&input[off..]) {
            Decoded::Blocked => panic!("a session with no memory allowance set never blocks"),
            Decoded::NeedMore { .. } => break,
            Decoded::Consumed { consumed, event } => {
                if let Some(e) = event {
                    mirror_event(m, e);
                }
                off += consumed;
            }
            Decoded::Reassembled { consumed, message } => {
                off += consumed;
                if let Some(e) = m.s.decode_reassembled(&message) {
                    mirror_event(m, e);
                }
            }
            Decoded::Fatal(r) => panic!("the peer could not read what the session wrote: {r}; its events {:?}", m.events),
        }
    }
    m.wire_in = input[off..].to_vec();
    m.drain_all();
}

fn mirror_event(m: &mut Harness, e: Event<'_, u32>) {
    m.log(|| format!("mirror: {e:?}"));
    match e {
        Event::Request { msgid, method, .. } => {
            assert_ne!(method, HELLO_METHOD.as_bytes(), "the hello reached the application");
            m.requests.push(msgid);
        }
        Event::Rejected(r) => panic!("the peer rejected what the session wrote: {r}"),
        _ => {}
    }
}
