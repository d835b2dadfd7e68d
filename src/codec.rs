//! MessagePack framing and the MessagePack-RPC envelope.
//!
//! The wire is a plain concatenation of MessagePack objects, so finding where one message ends
//! means walking its structure. [`Scanner`] does that incrementally (it resumes where it stopped
//! when more bytes arrive, so a 64 MiB message read in 64 KiB pieces is walked once, not 1024
//! times) and enforces the size and depth limits from the declared lengths, before anything is
//! allocated. rmp's own `MessageLen` estimator is not used because it panics (`todo!`) on ext
//! types and accepts the reserved byte 0xc1, and hostile input must never panic.
//!
//! Encoding uses `rmp::encode` directly into the caller's `Vec<u8>`.

use rmp::Marker;

/// Limits applied while framing incoming data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest accepted message, in bytes.
    pub max_message_size: usize,
    /// Deepest accepted nesting of arrays and maps (the RPC envelope itself counts as 1).
    pub max_depth: u32,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits { max_message_size: 64 << 20, max_depth: 128 }
    }
}

/// Result of [`Scanner::scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// A whole object of this many bytes starts at the beginning of the buffer.
    Complete(usize),
    /// More bytes are needed; at least `needed` in total (a lower bound).
    Incomplete { needed: usize },
    /// The object is, or declares itself, larger than `max_message_size`.
    TooLarge,
    /// The object nests deeper than `max_depth`.
    TooDeep,
    /// The reserved byte 0xc1 appeared where an object must start.
    Invalid,
}

/// Incremental walker that finds the end of one MessagePack object.
///
/// Feed it the same growing buffer (always starting at the object's first byte) until it
/// reports `Complete`; then [`reset`](Scanner::reset) it for the next object. While
/// [`discarding`](Scanner::start_discarding), the caller may drop the bytes it has already
/// been told about with [`advance`](Scanner::advance).
#[derive(Debug)]
pub struct Scanner {
    limits: FrameLimits,
    /// Offset (from the object's start) of the next byte not yet walked. It can run past the
    /// end of the buffer while a str/bin/ext payload is still arriving.
    pos: usize,
    /// Items left in each open array or map (a map counts keys and values).
    stack: Vec<u64>,
    started: bool,
    /// Size limit switched off: we only look for the end of an object we already rejected.
    discarding: bool,
}

enum Head {
    /// An object with no children: total size `header + payload`.
    Leaf { header: usize, payload: u64 },
    /// An array or map with `items` children after a `header`-byte header.
    Container { header: usize, items: u64 },
}

impl Scanner {
    pub fn new(limits: FrameLimits) -> Self {
        Scanner { limits, pos: 0, stack: Vec::new(), started: false, discarding: false }
    }

    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    pub fn reset(&mut self) {
        self.pos = 0;
        self.stack.clear();
        self.started = false;
        self.discarding = false;
    }

    /// Keep walking the current object without the size limit, so that its remaining bytes can
    /// be skipped as they arrive.
    pub fn start_discarding(&mut self) {
        self.discarding = true;
    }

    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// How many bytes at the front of the buffer may be dropped now (while discarding).
    pub fn droppable(&self, buffered: usize) -> usize {
        self.pos.min(buffered)
    }

    /// The caller dropped `n` bytes from the front of the buffer (n <= `droppable`).
    pub fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.pos);
        self.pos -= n;
    }

    /// Walk as far as `buf` allows. `buf` must start at the object's first byte (minus whatever
    /// was dropped with `advance`).
    pub fn scan(&mut self, buf: &[u8]) -> Scan {
        if !self.started && !self.discarding {
            // Most messages arrive whole: walk them in one tight pass first.
            if let Some(n) = fast_len(buf, self.limits) {
                return Scan::Complete(n);
            }
        }
        self.scan_resumable(buf)
    }

    fn scan_resumable(&mut self, buf: &[u8]) -> Scan {
        loop {
            if self.started && self.stack.is_empty() {
                return if buf.len() >= self.pos { Scan::Complete(self.pos) } else { Scan::Incomplete { needed: self.pos } };
            }
            let Some(&first) = buf.get(self.pos) else {
                return Scan::Incomplete { needed: self.pos + 1 };
            };
            let head = match Self::head(first, &buf[self.pos..]) {
                Ok(h) => h,
                Err(HeadError::Short(n)) => return Scan::Incomplete { needed: self.pos + n },
                Err(HeadError::Reserved) => return Scan::Invalid,
            };
            match head {
                Head::Leaf { header, payload } => {
                    let end = self.pos as u64 + header as u64 + payload;
                    if !self.discarding && end > self.limits.max_message_size as u64 {
                        return Scan::TooLarge;
                    }
                    self.pos = usize::try_from(end).unwrap_or(usize::MAX);
                    self.started = true;
                    self.finish_item();
                }
                Head::Container { header, items } => {
                    // Every child takes at least one byte, which bounds the declared count.
                    let min_end = self.pos as u64 + header as u64 + items;
                    if !self.discarding && min_end > self.limits.max_message_size as u64 {
                        return Scan::TooLarge;
                    }
                    if self.stack.len() as u64 + 1 > self.limits.max_depth as u64 {
                        return Scan::TooDeep;
                    }
                    self.pos += header;
                    self.started = true;
                    if items > 0 {
                        // The parent's count drops now, but it stays on the stack (even at
                        // zero) until this child closes, so the stack depth is the nesting.
                        if let Some(top) = self.stack.last_mut() {
                            *top -= 1;
                        }
                        self.stack.push(items);
                    } else {
                        self.finish_item();
                    }
                }
            }
        }
    }

    /// One child of the innermost open container is done; close every container that is full.
    fn finish_item(&mut self) {
        if let Some(top) = self.stack.last_mut() {
            *top -= 1;
        }
        while self.stack.last() == Some(&0) {
            self.stack.pop();
        }
    }

    fn head(first: u8, rest: &[u8]) -> Result<Head, HeadError> {
        fn be(rest: &[u8], n: usize) -> Result<u64, HeadError> {
            let bytes = rest.get(1..1 + n).ok_or(HeadError::Short(1 + n))?;
            Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64))
        }
        let leaf = |header: usize, payload: u64| Ok(Head::Leaf { header, payload });
        let container = |header: usize, items: u64| Ok(Head::Container { header, items });
        match Marker::from_u8(first) {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => leaf(1, 0),
            Marker::Reserved => Err(HeadError::Reserved),
            Marker::U8 | Marker::I8 => leaf(1, 1),
            Marker::U16 | Marker::I16 => leaf(1, 2),
            Marker::U32 | Marker::I32 | Marker::F32 => leaf(1, 4),
            Marker::U64 | Marker::I64 | Marker::F64 => leaf(1, 8),
            Marker::FixStr(n) => leaf(1, n as u64),
            Marker::Str8 | Marker::Bin8 => leaf(2, be(rest, 1)?),
            Marker::Str16 | Marker::Bin16 => leaf(3, be(rest, 2)?),
            Marker::Str32 | Marker::Bin32 => leaf(5, be(rest, 4)?),
            // fixext: marker, type byte, fixed data
            Marker::FixExt1 => leaf(2, 1),
            Marker::FixExt2 => leaf(2, 2),
            Marker::FixExt4 => leaf(2, 4),
            Marker::FixExt8 => leaf(2, 8),
            Marker::FixExt16 => leaf(2, 16),
            // ext: marker, length, type byte, data
            Marker::Ext8 => leaf(3, be(rest, 1)?),
            Marker::Ext16 => leaf(4, be(rest, 2)?),
            Marker::Ext32 => leaf(6, be(rest, 4)?),
            Marker::FixArray(n) => container(1, n as u64),
            Marker::Array16 => container(3, be(rest, 2)?),
            Marker::Array32 => container(5, be(rest, 4)?),
            Marker::FixMap(n) => container(1, 2 * n as u64),
            Marker::Map16 => container(3, 2 * be(rest, 2)?),
            Marker::Map32 => container(5, 2 * be(rest, 4)?),
        }
    }
}

/// Length of the complete object at the start of `buf` if it is whole, within `limits`,
/// and nested at most 16 deep; `None` otherwise (the caller then uses the resumable walk,
/// which gives the precise answer). Same result as [`Scanner::scan`] whenever it answers.
fn fast_len(buf: &[u8], limits: FrameLimits) -> Option<usize> {
    const DEPTH: usize = 16;
    let mut stack = [0u32; DEPTH];
    let mut depth = 0usize;
    let mut pos = 0usize;
    let end = buf.len().min(limits.max_message_size);
    let max_depth = (limits.max_depth as usize).min(DEPTH);
    loop {
        let b = *buf.get(pos)?;
        // (bytes of this object's header or whole scalar, children if it is a container)
        let (size, items): (usize, Option<u32>) = match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, None),
            0xa0..=0xbf => (1 + (b & 0x1f) as usize, None),
            0x90..=0x9f => (1, Some((b & 0x0f) as u32)),
            0x80..=0x8f => (1, Some(2 * (b & 0x0f) as u32)),
            0xcc | 0xd0 => (2, None),
            0xcd | 0xd1 => (3, None),
            0xce | 0xd2 | 0xca => (5, None),
            0xcf | 0xd3 | 0xcb => (9, None),
            0xd4 => (3, None),
            0xd5 => (4, None),
            0xd6 => (6, None),
            0xd7 => (10, None),
            0xd8 => (18, None),
            0xc4 | 0xd9 => (2 + *buf.get(pos + 1)? as usize, None),
            0xc5 | 0xda => (3 + u16::from_be_bytes([*buf.get(pos + 1)?, *buf.get(pos + 2)?]) as usize, None),
            0xdc => (3, Some(u16::from_be_bytes([*buf.get(pos + 1)?, *buf.get(pos + 2)?]) as u32)),
            0xde => (3, Some(2 * u16::from_be_bytes([*buf.get(pos + 1)?, *buf.get(pos + 2)?]) as u32)),
            // 32-bit lengths, ext8/16/32 and 0xc1: rare, leave them to the full walk.
            _ => return None,
        };
        pos += size;
        if pos > end {
            return None;
        }
        if let Some(items) = items {
            if depth + 1 > max_depth {
                return None;
            }
            if items > 0 {
                stack[depth] = items;
                depth += 1;
                continue;
            }
        }
        // A leaf (or empty container) is done: close every container it completes.
        loop {
            if depth == 0 {
                return Some(pos);
            }
            stack[depth - 1] -= 1;
            if stack[depth - 1] > 0 {
                break;
            }
            depth -= 1;
        }
    }
}

enum HeadError {
    /// The header needs this many bytes from the marker on.
    Short(usize),
    Reserved,
}

/// Length of the single complete object at the start of `buf`, or `None` if `buf` does not
/// start with a whole valid object within `limits`.
pub fn object_len(buf: &[u8], limits: FrameLimits) -> Option<usize> {
    match Scanner::new(limits).scan(buf) {
        Scan::Complete(n) => Some(n),
        _ => None,
    }
}

/// Why a user-supplied payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// Not exactly one complete, valid MessagePack object.
    Malformed,
    /// Larger or deeper than the limits.
    TooLarge,
    /// A valid object of the wrong type (for example params that are not an array or map).
    WrongType,
}

/// Check that `buf` is exactly one valid MessagePack object within `limits`.
pub fn validate_object(buf: &[u8], limits: FrameLimits) -> Result<(), PayloadError> {
    // Most answers are one scalar: no walk needed.
    if let Some(n) = scalar_len(buf) {
        return match (n == buf.len(), n <= limits.max_message_size) {
            (true, true) => Ok(()),
            (true, false) => Err(PayloadError::TooLarge),
            _ => Err(PayloadError::Malformed),
        };
    }
    match Scanner::new(limits).scan(buf) {
        Scan::Complete(n) if n == buf.len() => Ok(()),
        Scan::TooLarge | Scan::TooDeep => Err(PayloadError::TooLarge),
        _ => Err(PayloadError::Malformed),
    }
}

/// MessagePack-RPC message type codes.
pub const TYPE_REQUEST: u64 = 0;
pub const TYPE_RESPONSE: u64 = 1;
pub const TYPE_NOTIFICATION: u64 = 2;

/// Type codes of the joint extension (docs/PROTOCOL.md), sent only after both ends agreed.
/// Caller → callee: an extended request.
pub const TYPE_CALL: u64 = 16;
/// Callee → caller: one streamed result item.
pub const TYPE_YIELD: u64 = 17;
/// Caller → callee: one value sent into a running call.
pub const TYPE_SEND: u64 = 18;
/// Caller → callee: no more values will be sent.
pub const TYPE_END: u64 = 19;
/// Caller → callee: stop the call.
pub const TYPE_CANCEL: u64 = 20;
/// Caller → callee: an error thrown into the running call.
pub const TYPE_THROW: u64 = 21;
/// Caller → callee: the callee may send `n` more YIELDs.
pub const TYPE_MORE_YIELDS: u64 = 22;
/// Callee → caller: the caller may send `n` more SENDs.
pub const TYPE_MORE_SENDS: u64 = 23;
/// Either way: a piece of a message larger than the fragment size.
pub const TYPE_FRAGMENT: u64 = 24;
/// Either way: are you there? Answered at once with a PONG carrying the same nonce. Sent
/// only to a peer whose hello said `"ping"` (keepalive).
pub const TYPE_PING: u64 = 25;
/// Either way: the answer to a PING.
pub const TYPE_PONG: u64 = 26;
/// The highest extension type code.
pub const TYPE_LAST: u64 = TYPE_PONG;

/// Flags of an extended call (bits; the first two keep the original joint's values).
pub mod call_flags {
    /// The callee may run ahead and stream items without waiting (within the window).
    pub const ASYNC_FLOW: u32 = 1;
    /// The caller asks for the method to run away from the callee's event loop.
    pub const RUN_ISOLATED: u32 = 2;
    /// The caller will send values into the call (SEND ... END).
    pub const CLIENT_STREAM: u32 = 4;
    pub const KNOWN: u32 = ASYNC_FLOW | RUN_ISOLATED | CLIENT_STREAM;
}

/// Encoded empty array, used when a peer sends params as a map or nil.
pub const EMPTY_ARRAY: &[u8] = &[0x90];
/// Encoded nil.
pub const NIL: &[u8] = &[0xc0];

/// A decoded MessagePack-RPC message. Every payload is a borrowed, complete MessagePack object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Request {
        msgid: u32,
        method: &'a [u8],
        params: Params<'a>,
    },
    Response {
        msgid: u32,
        error: &'a [u8],
        result: &'a [u8],
    },
    Notification {
        method: &'a [u8],
        params: Params<'a>,
    },
    /// `[16, msgid, method, params, kwargs, flags, deadline_ms, window]`
    Call {
        msgid: u32,
        method: &'a [u8],
        params: Params<'a>,
        flags: u32,
        deadline_ms: u32,
        window: u32,
    },
    /// `[17, msgid, item]`
    Yield {
        msgid: u32,
        item: &'a [u8],
    },
    /// `[18, msgid, item]`
    Send {
        msgid: u32,
        item: &'a [u8],
    },
    /// `[19, msgid]`
    End {
        msgid: u32,
    },
    /// `[20, msgid]`
    Cancel {
        msgid: u32,
    },
    /// `[21, msgid, error]`
    Throw {
        msgid: u32,
        error: &'a [u8],
    },
    /// `[22, msgid, n]`
    MoreYields {
        msgid: u32,
        n: u32,
    },
    /// `[23, msgid, n]`
    MoreSends {
        msgid: u32,
        n: u32,
    },
    /// `[24, fragid, total, chunk]`: chunk is the bin payload.
    Fragment {
        fragid: u32,
        total: u64,
        chunk: &'a [u8],
    },
    /// `[25, nonce]`
    Ping {
        nonce: u32,
    },
    /// `[26, nonce]`
    Pong {
        nonce: u32,
    },
}

/// Call parameters: positional arguments (always a MessagePack array) and, when the peer sent
/// a map as params, that map as keyword arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params<'a> {
    pub args: &'a [u8],
    pub kwargs: Option<&'a [u8]>,
}

/// Why a complete frame is not a usable MessagePack-RPC message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Not an array, or an array whose first element is not a known type code. The stream is
    /// not MessagePack-RPC.
    NotRpc,
    /// A message of a known type that is malformed. `kind` is its type code; `msgid` is the raw
    /// msgid object if the message has one (so a request can still be answered);
    /// `reason` is static text for the log and the error reply.
    Malformed { kind: u64, msgid: Option<RawMsgid>, reason: &'static str },
}

/// A msgid as far as it could be decoded: a valid u32, or the raw object bytes' bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawMsgid {
    Valid(u32),
    /// Byte range of an invalid msgid object within the frame.
    Invalid {
        start: usize,
        end: usize,
    },
}

/// A tiny cursor over a complete frame, built on rmp's readers.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<Marker> {
        self.buf.get(self.pos).map(|&b| Marker::from_u8(b))
    }

    /// Skip one whole object, returning its bytes.
    fn object(&mut self) -> Option<&'a [u8]> {
        let rest = &self.buf[self.pos..];
        let n = match scalar_len(rest) {
            Some(n) => n,
            None => object_len(rest, FrameLimits { max_message_size: usize::MAX, max_depth: u32::MAX })?,
        };
        self.pos += n;
        Some(&rest[..n])
    }

    /// Everything after the cursor, which must be exactly one object (the last element of a
    /// frame that was already found complete, so no walk is needed).
    fn last_object(&mut self) -> Option<&'a [u8]> {
        let rest = &self.buf[self.pos..];
        self.pos = self.buf.len();
        (!rest.is_empty()).then_some(rest)
    }

    fn array_len(&mut self) -> Option<u32> {
        let mut rd = &self.buf[self.pos..];
        let before = rd.len();
        let n = rmp::decode::read_array_len(&mut rd).ok()?;
        self.pos += before - rd.len();
        Some(n)
    }

    /// An unsigned integer, or a float with an integral value (some peers send those).
    fn uint(&mut self) -> Option<u64> {
        // Type codes and most msgids are positive fixints.
        if let Some(&b @ 0x00..=0x7f) = self.buf.get(self.pos) {
            self.pos += 1;
            return Some(b as u64);
        }
        let obj = self.object()?;
        uint_value(obj)
    }

    /// A str or bin payload.
    fn name(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        let mut rd = &self.buf[self.pos..];
        let before = rd.len();
        let len = match self.peek()? {
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => rmp::decode::read_str_len(&mut rd).ok()?,
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => rmp::decode::read_bin_len(&mut rd).ok()?,
            _ => return None,
        } as usize;
        let data_start = start + (before - rd.len());
        let data = self.buf.get(data_start..data_start.checked_add(len)?)?;
        self.pos = data_start + len;
        Some(data)
    }
}

/// Length of the scalar (anything but an array or map) at the start of `buf`, if it is one and
/// is complete. A fast path that needs no walk.
pub fn scalar_len(buf: &[u8]) -> Option<usize> {
    let first = *buf.first()?;
    let n = match Scanner::head(first, buf) {
        Ok(Head::Leaf { header, payload }) => header.checked_add(usize::try_from(payload).ok()?)?,
        _ => return None,
    };
    (n <= buf.len()).then_some(n)
}

/// Decode an unsigned integer (or an integral, non-negative float) from a complete object.
pub fn uint_value(obj: &[u8]) -> Option<u64> {
    match number(obj)? {
        Number::Unsigned(v) => Some(v),
        Number::Signed(v) => u64::try_from(v).ok(),
        Number::Float(f) => integral(f),
    }
}

/// Decode a signed integer (or an integral float) from a complete object.
pub fn int_value(obj: &[u8]) -> Option<i64> {
    match number(obj)? {
        Number::Unsigned(v) => i64::try_from(v).ok(),
        Number::Signed(v) => Some(v),
        Number::Float(f) => float_to_i64(f),
    }
}

/// A decoded MessagePack number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

/// Decode the number at the start of `obj`. Integers are on the per-call path (type codes,
/// msgids, arguments), where rmp's generic `read_int` costs several times this direct match.
pub fn number(obj: &[u8]) -> Option<Number> {
    fn be<const N: usize>(obj: &[u8]) -> Option<[u8; N]> {
        obj.get(1..1 + N)?.try_into().ok()
    }
    let first = *obj.first()?;
    Some(match first {
        0x00..=0x7f => Number::Unsigned(first as u64),
        0xe0..=0xff => Number::Signed(first as i8 as i64),
        0xcc => Number::Unsigned(be::<1>(obj)?[0] as u64),
        0xcd => Number::Unsigned(u16::from_be_bytes(be(obj)?) as u64),
        0xce => Number::Unsigned(u32::from_be_bytes(be(obj)?) as u64),
        0xcf => Number::Unsigned(u64::from_be_bytes(be(obj)?)),
        0xd0 => Number::Signed(be::<1>(obj)?[0] as i8 as i64),
        0xd1 => Number::Signed(i16::from_be_bytes(be(obj)?) as i64),
        0xd2 => Number::Signed(i32::from_be_bytes(be(obj)?) as i64),
        0xd3 => Number::Signed(i64::from_be_bytes(be(obj)?)),
        0xca => Number::Float(f32::from_be_bytes(be(obj)?) as f64),
        0xcb => Number::Float(f64::from_be_bytes(be(obj)?)),
        _ => return None,
    })
}

fn integral(f: f64) -> Option<u64> {
    (f.fract() == 0.0 && (0.0..18446744073709551616.0).contains(&f)).then_some(f as u64)
}

fn float_to_i64(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && (-9223372036854775808.0..9223372036854775808.0).contains(&f)).then_some(f as i64)
}

/// Decode a complete frame (exactly one object) as a MessagePack-RPC message.
pub fn decode_message(frame: &[u8]) -> Result<Message<'_>, EnvelopeError> {
    let mut c = Cursor { buf: frame, pos: 0 };
    let len = match c.peek() {
        Some(Marker::FixArray(_) | Marker::Array16 | Marker::Array32) => c.array_len().ok_or(EnvelopeError::NotRpc)?,
        _ => return Err(EnvelopeError::NotRpc),
    };
    if len == 0 {
        return Err(EnvelopeError::NotRpc);
    }
    let kind = c.uint().ok_or(EnvelopeError::NotRpc)?;
    let malformed = |msgid, reason| EnvelopeError::Malformed { kind, msgid, reason };
    match kind {
        TYPE_REQUEST | TYPE_RESPONSE => {
            let id_start = c.pos;
            let msgid = if len >= 2 {
                let value = match c.buf.get(c.pos) {
                    Some(&b @ 0x00..=0x7f) => {
                        c.pos += 1;
                        Some(b as u64)
                    }
                    _ => uint_value(c.object().ok_or(EnvelopeError::NotRpc)?),
                };
                Some(match value.and_then(|v| u32::try_from(v).ok()) {
                    Some(v) => RawMsgid::Valid(v),
                    None => RawMsgid::Invalid { start: id_start, end: c.pos },
                })
            } else {
                None
            };
            if len != 4 {
                return Err(malformed(msgid, "expected an array of 4 elements"));
            }
            let msgid = match msgid {
                Some(RawMsgid::Valid(id)) => id,
                other => return Err(malformed(other, "msgid must be an unsigned 32-bit integer")),
            };
            if kind == TYPE_REQUEST {
                let Some(method) = c.name() else {
                    return Err(malformed(Some(RawMsgid::Valid(msgid)), "method name must be a string"));
                };
                let params = params(&mut c).ok_or(malformed(Some(RawMsgid::Valid(msgid)), "params must be an array"))?;
                Ok(Message::Request { msgid, method, params })
            } else {
                let error = c.object().ok_or(EnvelopeError::NotRpc)?;
                let result = c.last_object().ok_or(EnvelopeError::NotRpc)?;
                Ok(Message::Response { msgid, error, result })
            }
        }
        TYPE_NOTIFICATION => {
            if len != 3 {
                return Err(malformed(None, "expected an array of 3 elements"));
            }
            let method = c.name().ok_or(malformed(None, "method name must be a string"))?;
            let params = params(&mut c).ok_or(malformed(None, "params must be an array"))?;
            Ok(Message::Notification { method, params })
        }
        TYPE_CALL..=TYPE_LAST => decode_extension(kind, len, c),
        _ => Err(EnvelopeError::NotRpc),
    }
}

/// The extension's messages. Every one starts `[type, id, ...]`; the id is a msgid (or a
/// fragment id), always a u32.
fn decode_extension(kind: u64, len: u32, mut c: Cursor<'_>) -> Result<Message<'_>, EnvelopeError> {
    let malformed = |msgid: Option<u32>, reason| EnvelopeError::Malformed { kind, msgid: msgid.map(RawMsgid::Valid), reason };
    let expected = match kind {
        TYPE_CALL => 8,
        TYPE_END | TYPE_CANCEL | TYPE_PING | TYPE_PONG => 2,
        TYPE_FRAGMENT => 4,
        _ => 3,
    };
    let id = if len >= 2 { c.uint().and_then(|v| u32::try_from(v).ok()) } else { None };
    if len != expected {
        return Err(malformed(id, "wrong number of elements for this message type"));
    }
    let Some(id) = id else { return Err(malformed(None, "id must be an unsigned 32-bit integer")) };
    let u32_field = |c: &mut Cursor<'_>| c.uint().and_then(|v| u32::try_from(v).ok());
    Ok(match kind {
        TYPE_CALL => {
            let method = c.name().ok_or(malformed(Some(id), "method name must be a string"))?;
            let args = match c.peek() {
                Some(Marker::FixArray(_) | Marker::Array16 | Marker::Array32) => c.object(),
                _ => None,
            }
            .ok_or(malformed(Some(id), "params must be an array"))?;
            let kwargs = match c.peek() {
                Some(Marker::Null) => {
                    c.object();
                    None
                }
                Some(Marker::FixMap(_) | Marker::Map16 | Marker::Map32) => Some(c.object().ok_or(malformed(Some(id), "bad kwargs"))?),
                _ => return Err(malformed(Some(id), "kwargs must be a map or nil")),
            };
            let flags = u32_field(&mut c).ok_or(malformed(Some(id), "flags must be an unsigned 32-bit integer"))?;
            let deadline_ms = u32_field(&mut c).ok_or(malformed(Some(id), "deadline must be an unsigned 32-bit integer"))?;
            let window = u32_field(&mut c).ok_or(malformed(Some(id), "window must be an unsigned 32-bit integer"))?;
            Message::Call { msgid: id, method, params: Params { args, kwargs }, flags, deadline_ms, window }
        }
        TYPE_YIELD => Message::Yield { msgid: id, item: c.last_object().ok_or(malformed(Some(id), "missing item"))? },
        TYPE_SEND => Message::Send { msgid: id, item: c.last_object().ok_or(malformed(Some(id), "missing item"))? },
        TYPE_END => Message::End { msgid: id },
        TYPE_CANCEL => Message::Cancel { msgid: id },
        TYPE_PING => Message::Ping { nonce: id },
        TYPE_PONG => Message::Pong { nonce: id },
        TYPE_THROW => Message::Throw { msgid: id, error: c.last_object().ok_or(malformed(Some(id), "missing error"))? },
        TYPE_MORE_YIELDS | TYPE_MORE_SENDS => {
            let n = u32_field(&mut c).ok_or(malformed(Some(id), "credit must be an unsigned 32-bit integer"))?;
            if kind == TYPE_MORE_YIELDS {
                Message::MoreYields { msgid: id, n }
            } else {
                Message::MoreSends { msgid: id, n }
            }
        }
        TYPE_FRAGMENT => {
            let total = c.uint().ok_or(malformed(None, "fragment total must be an unsigned integer"))?;
            let chunk = read::bin(c.buf, &mut c.pos).map_err(|_| malformed(None, "fragment chunk must be a bin"))?;
            Message::Fragment { fragid: id, total, chunk }
        }
        _ => return Err(EnvelopeError::NotRpc),
    })
}

/// Params as peers send them: an array, a map (keyword style), or nil (taken as no arguments).
fn params<'a>(c: &mut Cursor<'a>) -> Option<Params<'a>> {
    // Params are the last element of a complete frame: they run to its end.
    match c.peek()? {
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => Some(Params { args: c.last_object()?, kwargs: None }),
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => Some(Params { args: EMPTY_ARRAY, kwargs: Some(c.last_object()?) }),
        Marker::Null => {
            c.last_object()?;
            Some(Params { args: EMPTY_ARRAY, kwargs: None })
        }
        _ => None,
    }
}

/// What can be learnt from the start of a message that will not be decoded whole (too large,
/// too deep, or corrupt further on): its type code and msgid, if they are there.
pub fn peek_header(prefix: &[u8]) -> (Option<u64>, Option<u32>) {
    let mut c = Cursor { buf: prefix, pos: 0 };
    let Some(Marker::FixArray(_) | Marker::Array16 | Marker::Array32) = c.peek() else {
        return (None, None);
    };
    let Some(len) = c.array_len() else { return (None, None) };
    if len < 2 {
        return (None, None);
    }
    let kind = c.uint();
    let msgid = match kind {
        Some(TYPE_REQUEST | TYPE_RESPONSE | TYPE_CALL) => c.uint().and_then(|v| u32::try_from(v).ok()),
        _ => None,
    };
    (kind, msgid)
}

// ---- encoding -------------------------------------------------------------------------------

// Writes into a Vec<u8> cannot fail; these helpers drop the impossible io::Error.

pub fn write_array_len(out: &mut Vec<u8>, n: u32) {
    let _ = rmp::encode::write_array_len(out, n);
}

pub fn write_map_len(out: &mut Vec<u8>, n: u32) {
    let _ = rmp::encode::write_map_len(out, n);
}

/// An unsigned integer in its smallest encoding (as rmp's `write_uint`, minus its
/// `io::Write` plumbing, which shows on the per-call path).
pub fn write_uint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else if v <= u8::MAX as u64 {
        out.extend_from_slice(&[0xcc, v as u8]);
    } else if v <= u16::MAX as u64 {
        out.push(0xcd);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= u32::MAX as u64 {
        out.push(0xce);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// A signed integer in its smallest encoding (non-negative values as unsigned, like rmp).
pub fn write_sint(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        write_uint(out, v as u64);
    } else if v >= -32 {
        out.push(v as i8 as u8);
    } else if v >= i8::MIN as i64 {
        out.extend_from_slice(&[0xd0, v as i8 as u8]);
    } else if v >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(v as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    let _ = rmp::encode::write_f64(out, v);
}

pub fn write_f32(out: &mut Vec<u8>, v: f32) {
    let _ = rmp::encode::write_f32(out, v);
}

pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    let _ = rmp::encode::write_bool(out, v);
}

pub fn write_nil(out: &mut Vec<u8>) {
    out.push(0xc0);
}

/// A str object. `s` is written as is: MessagePack str is meant to be UTF-8 but peers differ.
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    let _ = rmp::encode::write_str_len(out, s.len() as u32);
    out.extend_from_slice(s);
}

/// The header of a bin object of `len` bytes (the caller appends them).
pub fn write_bin_len(out: &mut Vec<u8>, len: usize) {
    let _ = rmp::encode::write_bin_len(out, len as u32);
}

pub fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    let _ = rmp::encode::write_bin_len(out, b.len() as u32);
    out.extend_from_slice(b);
}

pub fn write_ext(out: &mut Vec<u8>, ty: i8, data: &[u8]) {
    let _ = rmp::encode::write_ext_meta(out, data.len() as u32, ty);
    out.extend_from_slice(data);
}

/// `[0, msgid, method, params]`; `params` must be one encoded object.
pub fn encode_request(out: &mut Vec<u8>, msgid: u32, method: &[u8], params: &[u8]) {
    out.push(0x94);
    out.push(0x00);
    write_uint(out, msgid as u64);
    write_str(out, method);
    out.extend_from_slice(params);
}

/// `[1, msgid, error, result]`; `error` and `result` must be encoded objects.
pub fn encode_response(out: &mut Vec<u8>, msgid: u32, error: &[u8], result: &[u8]) {
    out.push(0x94);
    out.push(0x01);
    write_uint(out, msgid as u64);
    out.extend_from_slice(error);
    out.extend_from_slice(result);
}

/// Like [`encode_response`] but with the msgid given as raw object bytes (used to answer a
/// request whose msgid is not a valid u32, so the peer can still match the error).
pub fn encode_response_raw_id(out: &mut Vec<u8>, raw_msgid: &[u8], error: &[u8], result: &[u8]) {
    out.push(0x94);
    out.push(0x01);
    out.extend_from_slice(raw_msgid);
    out.extend_from_slice(error);
    out.extend_from_slice(result);
}

/// `[2, method, params]`.
pub fn encode_notification(out: &mut Vec<u8>, method: &[u8], params: &[u8]) {
    out.push(0x93);
    out.push(0x02);
    write_str(out, method);
    out.extend_from_slice(params);
}

/// `[16, msgid, method, params, kwargs, flags, deadline_ms, window]`; `kwargs` is an encoded
/// map or `None` (nil).
pub fn encode_call(out: &mut Vec<u8>, msgid: u32, method: &[u8], args: &[u8], kwargs: Option<&[u8]>, flags: u32, deadline_ms: u32, window: u32) {
    out.push(0x98);
    out.push(TYPE_CALL as u8);
    write_uint(out, msgid as u64);
    write_str(out, method);
    out.extend_from_slice(args);
    out.extend_from_slice(kwargs.unwrap_or(NIL));
    write_uint(out, flags as u64);
    write_uint(out, deadline_ms as u64);
    write_uint(out, window as u64);
}

/// `[type, msgid, payload]` for YIELD, SEND and THROW.
pub fn encode_item(out: &mut Vec<u8>, kind: u64, msgid: u32, payload: &[u8]) {
    out.push(0x93);
    out.push(kind as u8);
    write_uint(out, msgid as u64);
    out.extend_from_slice(payload);
}

/// `[type, msgid]` for END and CANCEL (and `[type, nonce]` for PING and PONG).
pub fn encode_signal(out: &mut Vec<u8>, kind: u64, msgid: u32) {
    out.push(0x92);
    out.push(kind as u8);
    write_uint(out, msgid as u64);
}

/// `[type, msgid, n]` for MORE_YIELDS and MORE_SENDS.
pub fn encode_credit(out: &mut Vec<u8>, kind: u64, msgid: u32, n: u32) {
    out.push(0x93);
    out.push(kind as u8);
    write_uint(out, msgid as u64);
    write_uint(out, n as u64);
}

/// `[24, fragid, total, chunk]`.
pub fn encode_fragment(out: &mut Vec<u8>, fragid: u32, total: u64, chunk: &[u8]) {
    encode_fragment_header(out, fragid, total, chunk.len());
    out.extend_from_slice(chunk);
}

/// `[24, fragid, total, chunk]` up to the chunk's bytes, which the caller sends from where
/// they are.
pub fn encode_fragment_header(out: &mut Vec<u8>, fragid: u32, total: u64, chunk_len: usize) {
    out.push(0x94);
    out.push(TYPE_FRAGMENT as u8);
    write_uint(out, fragid as u64);
    write_uint(out, total);
    let _ = rmp::encode::write_bin_len(out, chunk_len as u32);
}

/// The error object joint itself produces: `[code, message]` (Neovim's convention).
pub fn encode_error(out: &mut Vec<u8>, code: i64, message: &[u8]) {
    out.push(0x92);
    write_sint(out, code);
    write_str(out, message);
}

/// Best-effort human-readable message from a remote error object: a string, a
/// `[code, message]` array, or a map with a "message" key. `None` if no text is found.
pub fn error_message(obj: &[u8]) -> Option<&[u8]> {
    let mut c = Cursor { buf: obj, pos: 0 };
    match c.peek()? {
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 | Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => c.name(),
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
            let n = c.array_len()?;
            for _ in 0..n {
                if let Some(Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32) = c.peek() {
                    return c.name();
                }
                c.object()?;
            }
            None
        }
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
            let mut rd = &obj[c.pos..];
            let before = rd.len();
            let n = rmp::decode::read_map_len(&mut rd).ok()?;
            c.pos += before - rd.len();
            for _ in 0..n {
                let key = c.object()?;
                let value = c.object()?;
                if is_key(key, b"message") {
                    return read::str(value, &mut 0).ok();
                }
            }
            None
        }
        _ => None,
    }
}

/// Whether a map key (one encoded object) is the string `name`, in any str encoding.
fn is_key(key: &[u8], name: &[u8]) -> bool {
    matches!(read::str(key, &mut 0), Ok(k) if k == name)
}

/// The integer code of a remote error: the first element of a `[code, ...]` array, or the
/// "code" key of a map.
pub fn error_code(obj: &[u8]) -> Option<i64> {
    let mut c = Cursor { buf: obj, pos: 0 };
    match c.peek()? {
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
            if c.array_len()? == 0 {
                return None;
            }
            int_value(c.object()?)
        }
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
            let mut rd = &obj[c.pos..];
            let before = rd.len();
            let n = rmp::decode::read_map_len(&mut rd).ok()?;
            c.pos += before - rd.len();
            for _ in 0..n {
                let key = c.object()?;
                let value = c.object()?;
                if is_key(key, b"code") {
                    return int_value(value);
                }
            }
            None
        }
        _ => None,
    }
}

/// Reading one value at a time from a buffer of MessagePack (the C API's reader). Each
/// function reads at `*pos` and advances it only on success.
pub mod read {
    use super::{object_len, scalar_len, FrameLimits};
    use rmp::Marker;

    /// The type of the next value.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Kind {
        Nil,
        Bool,
        Int,
        Float,
        Str,
        Bin,
        Array,
        Map,
        Ext,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum ReadError {
        /// No more data.
        Eof,
        /// The next value has another type (or does not fit the requested integer type).
        Type,
        /// The data is truncated or not MessagePack.
        Malformed,
    }

    type R<T> = Result<T, ReadError>;

    fn marker(buf: &[u8], pos: usize) -> R<Marker> {
        buf.get(pos).map(|&b| Marker::from_u8(b)).ok_or(ReadError::Eof)
    }

    pub fn kind(buf: &[u8], pos: usize) -> R<Kind> {
        Ok(match marker(buf, pos)? {
            Marker::Null => Kind::Nil,
            Marker::True | Marker::False => Kind::Bool,
            Marker::FixPos(_)
            | Marker::FixNeg(_)
            | Marker::U8
            | Marker::U16
            | Marker::U32
            | Marker::U64
            | Marker::I8
            | Marker::I16
            | Marker::I32
            | Marker::I64 => Kind::Int,
            Marker::F32 | Marker::F64 => Kind::Float,
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => Kind::Str,
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => Kind::Bin,
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => Kind::Array,
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => Kind::Map,
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => Kind::Ext,
            Marker::Reserved => return Err(ReadError::Malformed),
        })
    }

    /// The whole next value's bytes.
    pub fn raw<'a>(buf: &'a [u8], pos: &mut usize) -> R<&'a [u8]> {
        kind(buf, *pos)?;
        let rest = &buf[*pos..];
        let n = match scalar_len(rest) {
            Some(n) => n,
            None => object_len(rest, FrameLimits { max_message_size: usize::MAX, max_depth: 1024 }).ok_or(ReadError::Malformed)?,
        };
        *pos += n;
        Ok(&rest[..n])
    }

    pub fn nil(buf: &[u8], pos: &mut usize) -> R<()> {
        expect(kind(buf, *pos)?, Kind::Nil)?;
        *pos += 1;
        Ok(())
    }

    pub fn boolean(buf: &[u8], pos: &mut usize) -> R<bool> {
        expect(kind(buf, *pos)?, Kind::Bool)?;
        let v = buf[*pos] == 0xc3;
        *pos += 1;
        Ok(v)
    }

    fn expect(got: Kind, want: Kind) -> R<()> {
        if got == want {
            Ok(())
        } else {
            Err(ReadError::Type)
        }
    }

    /// A signed integer; integral floats are accepted (some peers send them).
    pub fn int(buf: &[u8], pos: &mut usize) -> R<i64> {
        // Fixints are most of what handlers read: skip the general path for them.
        match buf.get(*pos) {
            Some(&b @ (0x00..=0x7f | 0xe0..=0xff)) => {
                *pos += 1;
                Ok(b as i8 as i64)
            }
            _ => number(buf, pos, super::int_value),
        }
    }

    /// An unsigned integer; integral floats are accepted.
    pub fn uint(buf: &[u8], pos: &mut usize) -> R<u64> {
        match buf.get(*pos) {
            Some(&b @ 0x00..=0x7f) => {
                *pos += 1;
                Ok(b as u64)
            }
            _ => number(buf, pos, super::uint_value),
        }
    }

    /// A float or any integer, as f64.
    pub fn float(buf: &[u8], pos: &mut usize) -> R<f64> {
        number(buf, pos, |obj| {
            let mut rd = obj;
            match Marker::from_u8(obj[0]) {
                Marker::F32 => rmp::decode::read_f32(&mut rd).ok().map(f64::from),
                Marker::F64 => rmp::decode::read_f64(&mut rd).ok(),
                Marker::U64 => super::uint_value(obj).map(|v| v as f64),
                _ => super::int_value(obj).map(|v| v as f64),
            }
        })
    }

    fn number<T>(buf: &[u8], pos: &mut usize, decode: impl Fn(&[u8]) -> Option<T>) -> R<T> {
        match kind(buf, *pos)? {
            Kind::Int | Kind::Float => {}
            _ => return Err(ReadError::Type),
        }
        let obj = &buf[*pos..];
        let n = super::scalar_len(obj).ok_or(ReadError::Malformed)?;
        let v = decode(&obj[..n]).ok_or(ReadError::Type)?;
        *pos += n;
        Ok(v)
    }

    fn payload<'a>(buf: &'a [u8], pos: &mut usize, want: Kind) -> R<&'a [u8]> {
        expect(kind(buf, *pos)?, want)?;
        let mut rd = &buf[*pos..];
        let before = rd.len();
        let len = match want {
            Kind::Str => rmp::decode::read_str_len(&mut rd).map_err(|_| ReadError::Malformed)?,
            _ => rmp::decode::read_bin_len(&mut rd).map_err(|_| ReadError::Malformed)?,
        } as usize;
        let start = *pos + (before - rd.len());
        let data = buf.get(start..start + len).ok_or(ReadError::Malformed)?;
        *pos = start + len;
        Ok(data)
    }

    pub fn str<'a>(buf: &'a [u8], pos: &mut usize) -> R<&'a [u8]> {
        payload(buf, pos, Kind::Str)
    }

    pub fn bin<'a>(buf: &'a [u8], pos: &mut usize) -> R<&'a [u8]> {
        payload(buf, pos, Kind::Bin)
    }

    /// An array header: the element count. The elements follow.
    pub fn array(buf: &[u8], pos: &mut usize) -> R<u32> {
        expect(kind(buf, *pos)?, Kind::Array)?;
        let mut rd = &buf[*pos..];
        let before = rd.len();
        let n = rmp::decode::read_array_len(&mut rd).map_err(|_| ReadError::Malformed)?;
        *pos += before - rd.len();
        Ok(n)
    }

    /// A map header: the number of key/value pairs. They follow, key first.
    pub fn map(buf: &[u8], pos: &mut usize) -> R<u32> {
        expect(kind(buf, *pos)?, Kind::Map)?;
        let mut rd = &buf[*pos..];
        let before = rd.len();
        let n = rmp::decode::read_map_len(&mut rd).map_err(|_| ReadError::Malformed)?;
        *pos += before - rd.len();
        Ok(n)
    }

    /// An ext value: its type and data.
    pub fn ext<'a>(buf: &'a [u8], pos: &mut usize) -> R<(i8, &'a [u8])> {
        expect(kind(buf, *pos)?, Kind::Ext)?;
        let mut rd = &buf[*pos..];
        let before = rd.len();
        let meta = rmp::decode::read_ext_meta(&mut rd).map_err(|_| ReadError::Malformed)?;
        let start = *pos + (before - rd.len());
        let data = buf.get(start..start + meta.size as usize).ok_or(ReadError::Malformed)?;
        *pos = start + meta.size as usize;
        Ok((meta.typeid, data))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reads_values_in_sequence() {
            let mut b = Vec::new();
            super::super::write_array_len(&mut b, 9);
            super::super::write_nil(&mut b);
            super::super::write_bool(&mut b, true);
            super::super::write_sint(&mut b, -5);
            super::super::write_uint(&mut b, u64::MAX);
            super::super::write_f64(&mut b, 2.5);
            super::super::write_str(&mut b, "héllo".as_bytes());
            super::super::write_bin(&mut b, &[1, 2]);
            super::super::write_ext(&mut b, 5, &[9, 9, 9]);
            super::super::write_map_len(&mut b, 0);
            let mut p = 0;
            assert_eq!(array(&b, &mut p), Ok(9));
            assert_eq!(kind(&b, p), Ok(Kind::Nil));
            assert_eq!(int(&b, &mut p), Err(ReadError::Type));
            nil(&b, &mut p).unwrap();
            assert_eq!(boolean(&b, &mut p), Ok(true));
            assert_eq!(uint(&b, &mut p), Err(ReadError::Type));
            assert_eq!(int(&b, &mut p), Ok(-5));
            assert_eq!(int(&b, &mut p), Err(ReadError::Type));
            assert_eq!(uint(&b, &mut p), Ok(u64::MAX));
            assert_eq!(float(&b, &mut p), Ok(2.5));
            assert_eq!(str(&b, &mut p), Ok("héllo".as_bytes()));
            assert_eq!(bin(&b, &mut p), Ok(&[1u8, 2][..]));
            assert_eq!(ext(&b, &mut p), Ok((5, &[9u8, 9, 9][..])));
            assert_eq!(map(&b, &mut p), Ok(0));
            assert_eq!(kind(&b, p), Err(ReadError::Eof));
            // truncated str
            assert_eq!(str(&[0xa5, b'a'], &mut 0), Err(ReadError::Malformed));
            // integral float as int
            let mut f = Vec::new();
            super::super::write_f64(&mut f, 42.0);
            assert_eq!(int(&f, &mut 0), Ok(42));
            assert_eq!(float(&[0x07], &mut 0), Ok(7.0));
        }

        #[test]
        fn ints_on_every_format_boundary() {
            // Fixints take a fast path; the neighbours on either side take the general one.
            for v in [0i64, 1, 127, 128, 255, 256, -1, -32, -33, -128, -129, i64::MIN, i64::MAX] {
                let mut b = Vec::new();
                super::super::write_sint(&mut b, v);
                b.push(0xc0); // what follows must stay unread
                let mut p = 0;
                assert_eq!(int(&b, &mut p), Ok(v), "{v}");
                assert_eq!(p, b.len() - 1, "{v}");
                let mut p = 0;
                if v >= 0 {
                    assert_eq!(uint(&b, &mut p), Ok(v as u64), "{v}");
                    assert_eq!(p, b.len() - 1, "{v}");
                } else {
                    assert_eq!(uint(&b, &mut p), Err(ReadError::Type), "{v}");
                    assert_eq!(p, 0);
                }
            }
            assert_eq!(int(&[], &mut 0), Err(ReadError::Eof));
            assert_eq!(uint(&[0xe0], &mut 0), Err(ReadError::Type));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: FrameLimits = FrameLimits { max_message_size: 1 << 20, max_depth: 16 };

    fn scan_all(buf: &[u8]) -> Scan {
        Scanner::new(L).scan(buf)
    }

    #[test]
    fn scans_every_type() {
        let cases: &[&[u8]] = &[
            &[0x00],
            &[0xff],
            &[0xc0],
            &[0xc2],
            &[0xc3],
            &[0xcc, 1],
            &[0xcd, 1, 2],
            &[0xce, 1, 2, 3, 4],
            &[0xcf, 0, 0, 0, 0, 0, 0, 0, 1],
            &[0xd0, 1],
            &[0xd1, 1, 2],
            &[0xd2, 1, 2, 3, 4],
            &[0xd3, 0, 0, 0, 0, 0, 0, 0, 1],
            &[0xca, 0, 0, 0, 0],
            &[0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xa2, b'h', b'i'],
            &[0xd9, 1, b'x'],
            &[0xda, 0, 1, b'x'],
            &[0xdb, 0, 0, 0, 1, b'x'],
            &[0xc4, 2, 1, 2],
            &[0xc5, 0, 1, 9],
            &[0xc6, 0, 0, 0, 1, 9],
            &[0xd4, 1, 9],
            &[0xd5, 1, 9, 9],
            &[0xd6, 1, 0, 0, 0, 0],
            &[0xd7, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xd8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xc7, 1, 5, 9],
            &[0xc8, 0, 1, 5, 9],
            &[0xc9, 0, 0, 0, 1, 5, 9],
            &[0x90],
            &[0x92, 1, 2],
            &[0xdc, 0, 1, 0xc0],
            &[0xdd, 0, 0, 0, 1, 0xc0],
            &[0x80],
            &[0x81, 1, 2],
            &[0xde, 0, 1, 1, 2],
            &[0xdf, 0, 0, 0, 1, 1, 2],
            &[0x92, 0x91, 0x90, 0x81, 0xa1, b'k', 0x90],
        ];
        for case in cases {
            assert_eq!(scan_all(case), Scan::Complete(case.len()), "{case:02x?}");
            let mut extended = case.to_vec();
            extended.extend_from_slice(&[0xc0, 0xc0]);
            assert_eq!(scan_all(&extended), Scan::Complete(case.len()), "{case:02x?} + trailing");
            // Every proper prefix is incomplete, and resuming on the whole buffer completes.
            for cut in 0..case.len() {
                let mut s = Scanner::new(L);
                assert!(matches!(s.scan(&case[..cut]), Scan::Incomplete { .. }), "{case:02x?} cut {cut}");
                assert_eq!(s.scan(case), Scan::Complete(case.len()));
            }
        }
    }

    #[test]
    fn resumes_byte_by_byte() {
        let mut msg = Vec::new();
        encode_request(&mut msg, 7, b"method", &[0x93, 0xc4, 3, 1, 2, 3, 0x81, 0xa1, b'a', 0x90, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut s = Scanner::new(L);
        for i in 0..msg.len() {
            assert!(matches!(s.scan(&msg[..i]), Scan::Incomplete { needed } if needed > i));
        }
        assert_eq!(s.scan(&msg), Scan::Complete(msg.len()));
    }

    #[test]
    fn fast_path_agrees_with_the_resumable_walk() {
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let limits = FrameLimits { max_message_size: 200, max_depth: 6 };
        // Bytes biased towards containers and small scalars, so structure is common.
        let alphabet = [
            0x90u8, 0x91, 0x92, 0x93, 0x81, 0x82, 0x80, 0x01, 0x7f, 0xc0, 0xc3, 0xa1, 0xa3, b'x', 0xcc, 0xcd, 0xd0, 0xd4, 0xd8, 0xc4, 0x05, 0xdc,
            0x00, 0x02, 0xde, 0xcb, 0xd9, 0x03,
        ];
        let mut agreed = 0;
        for _ in 0..200_000 {
            let n = (next() % 40) as usize;
            let buf: Vec<u8> = (0..n).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            let slow = Scanner::new(limits).scan_resumable(&buf);
            if let Some(fast) = fast_len(&buf, limits) {
                assert_eq!(slow, Scan::Complete(fast), "{buf:02x?}");
                agreed += 1;
            }
        }
        assert!(agreed > 10_000, "the fast path answered only {agreed} times");
    }

    #[test]
    fn integer_encodings_match_rmp() {
        let values: Vec<i128> = vec![
            0,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            4294967295,
            4294967296,
            -1,
            -32,
            -33,
            -128,
            -129,
            -32768,
            -32769,
            -2147483648,
            -2147483649,
            i64::MIN as i128,
            i64::MAX as i128,
            u64::MAX as i128,
        ];
        for v in values {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            if v < 0 {
                write_sint(&mut ours, v as i64);
                rmp::encode::write_sint(&mut theirs, v as i64).unwrap();
                assert_eq!(int_value(&ours), Some(v as i64));
            } else {
                write_uint(&mut ours, v as u64);
                rmp::encode::write_uint(&mut theirs, v as u64).unwrap();
                assert_eq!(uint_value(&ours), Some(v as u64));
                if v <= i64::MAX as i128 {
                    let mut signed = Vec::new();
                    write_sint(&mut signed, v as i64);
                    assert_eq!(signed, ours, "{v}");
                }
            }
            assert_eq!(ours, theirs, "{v}");
        }
        assert_eq!(uint_value(&[0xff]), None);
        assert_eq!(int_value(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(uint_value(&[0xcd, 0x01]), None, "truncated");
        assert_eq!(uint_value(&[0xcb, 0x40, 0x45, 0, 0, 0, 0, 0, 0]), Some(42));
        assert_eq!(uint_value(&[0xcb, 0x40, 0x45, 0x10, 0, 0, 0, 0, 0]), None, "42.125");
    }

    #[test]
    fn rejects_reserved_byte() {
        assert_eq!(scan_all(&[0xc1]), Scan::Invalid);
        assert_eq!(scan_all(&[0x92, 0x01, 0xc1]), Scan::Invalid);
    }

    #[test]
    fn rejects_declared_sizes_before_data_arrives() {
        // bin32 claiming 4 GiB, only the header present.
        assert_eq!(scan_all(&[0xc6, 0xff, 0xff, 0xff, 0xff]), Scan::TooLarge);
        // array32 claiming 4 G elements.
        assert_eq!(scan_all(&[0xdd, 0xff, 0xff, 0xff, 0xff]), Scan::TooLarge);
        // map32 likewise
        assert_eq!(scan_all(&[0xdf, 0x80, 0, 0, 0]), Scan::TooLarge);
        // exactly at the limit is fine
        let limits = FrameLimits { max_message_size: 10, max_depth: 4 };
        let mut s = Scanner::new(limits);
        assert_eq!(s.scan(&[0xc4, 8, 0, 0, 0, 0, 0, 0, 0, 0]), Scan::Complete(10));
        let mut s = Scanner::new(limits);
        assert_eq!(s.scan(&[0xc4, 9]), Scan::TooLarge);
    }

    #[test]
    fn rejects_deep_nesting() {
        let deep = vec![0x91u8; 17];
        assert_eq!(scan_all(&deep), Scan::TooDeep);
        let mut ok = vec![0x91u8; 15];
        ok.push(0x90);
        assert_eq!(scan_all(&ok), Scan::Complete(16));
    }

    #[test]
    fn discarding_skips_oversize_payload() {
        let limits = FrameLimits { max_message_size: 8, max_depth: 4 };
        let mut msg = vec![0x92, 0x01, 0xc5, 0x00, 0x20];
        msg.extend_from_slice(&[7u8; 32]);
        msg.push(0xc0); // the next message
        let mut s = Scanner::new(limits);
        assert_eq!(s.scan(&msg[..5]), Scan::TooLarge);
        s.start_discarding();
        // Feed in small pieces, dropping what the scanner allows.
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let total = loop {
            let take = (fed + 3).min(msg.len());
            buf.extend_from_slice(&msg[fed..take]);
            fed = take;
            match s.scan(&buf) {
                Scan::Complete(n) => break n,
                Scan::Incomplete { .. } => {
                    let d = s.droppable(buf.len());
                    buf.drain(..d);
                    s.advance(d);
                }
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(&buf[total..], &msg[fed - (buf.len() - total)..fed]);
        assert_eq!(buf[total], 0xc0);
    }

    #[test]
    fn decodes_messages() {
        let mut m = Vec::new();
        encode_request(&mut m, u32::MAX, b"add", &[0x92, 1, 2]);
        assert_eq!(
            decode_message(&m),
            Ok(Message::Request { msgid: u32::MAX, method: b"add", params: Params { args: &[0x92, 1, 2], kwargs: None } })
        );
        m.clear();
        encode_response(&mut m, 0, NIL, &[3]);
        assert_eq!(decode_message(&m), Ok(Message::Response { msgid: 0, error: NIL, result: &[3] }));
        m.clear();
        encode_notification(&mut m, b"n", &[0x90]);
        assert_eq!(decode_message(&m), Ok(Message::Notification { method: b"n", params: Params { args: &[0x90], kwargs: None } }));
        // bin method name, map params, float msgid
        let m = [0x94, 0x00, 0xcb, 0x41, 0xef, 0xff, 0xff, 0xff, 0xe0, 0, 0, 0xc4, 1, b'm', 0x81, 0xa1, b'k', 1];
        assert_eq!(
            decode_message(&m),
            Ok(Message::Request { msgid: u32::MAX, method: b"m", params: Params { args: EMPTY_ARRAY, kwargs: Some(&[0x81, 0xa1, b'k', 1]) } })
        );
    }

    #[test]
    fn reports_malformed_envelopes() {
        assert_eq!(decode_message(&[0x01]), Err(EnvelopeError::NotRpc));
        assert_eq!(decode_message(&[0x90]), Err(EnvelopeError::NotRpc));
        assert_eq!(decode_message(&[0x94, 0x07, 0, 0, 0]), Err(EnvelopeError::NotRpc));
        assert!(matches!(
            decode_message(&[0x93, 0x00, 0x05, 0xa1, b'm']),
            Err(EnvelopeError::Malformed { kind: 0, msgid: Some(RawMsgid::Valid(5)), .. })
        ));
        assert!(matches!(
            decode_message(&[0x94, 0x00, 0xa1, b'x', 0xa1, b'm', 0x90]),
            Err(EnvelopeError::Malformed { kind: 0, msgid: Some(RawMsgid::Invalid { start: 2, end: 4 }), .. })
        ));
        assert!(matches!(
            decode_message(&[0x94, 0x00, 0x01, 0x05, 0x90]),
            Err(EnvelopeError::Malformed { kind: 0, msgid: Some(RawMsgid::Valid(1)), reason: "method name must be a string" })
        ));
        assert!(matches!(
            decode_message(&[0x94, 0x00, 0x01, 0xa1, b'm', 0x05]),
            Err(EnvelopeError::Malformed { kind: 0, msgid: Some(RawMsgid::Valid(1)), reason: "params must be an array" })
        ));
        assert!(matches!(decode_message(&[0x94, 0x01, 0xff, 0xc0, 0xc0]), Err(EnvelopeError::Malformed { kind: 1, .. })));
    }

    #[test]
    fn extracts_error_text() {
        let mut e = Vec::new();
        encode_error(&mut e, 3, b"boom");
        assert_eq!(error_message(&e), Some(&b"boom"[..]));
        assert_eq!(error_code(&e), Some(3));
        assert_eq!(error_message(&[0xa2, b'h', b'i']), Some(&b"hi"[..]));
        let map = [0x82, 0xa4, b'c', b'o', b'd', b'e', 0x07, 0xa7, b'm', b'e', b's', b's', b'a', b'g', b'e', 0xa1, b'x'];
        assert_eq!(error_message(&map), Some(&b"x"[..]));
        assert_eq!(error_code(&map), Some(7));
        assert_eq!(error_message(&[0x05]), None);
        // non-string keys before "message", and a str8-encoded key
        let odd = [0x82, 0x01, 0x02, 0xd9, 7, b'm', b'e', b's', b's', b'a', b'g', b'e', 0xa2, b'h', b'i'];
        assert_eq!(error_message(&odd), Some(&b"hi"[..]));
        let odd_code = [0x82, 0xc0, 0x90, 0xd9, 4, b'c', b'o', b'd', b'e', 0x09];
        assert_eq!(error_code(&odd_code), Some(9));
    }

    #[test]
    fn peeks_headers_of_partial_messages() {
        assert_eq!(peek_header(&[0x94, 0x00, 0x2a, 0xa3, b'a']), (Some(0), Some(42)));
        assert_eq!(peek_header(&[0x94, 0x01]), (Some(1), None));
        assert_eq!(peek_header(&[0x47, 0x45]), (None, None));
    }
}
