//! What a message is, for display: its kind, msgid, method and named fields, read from the
//! message's bytes, or from its first bytes when it is larger than the display limit.

use rmpv::Value;

use super::scanner::{header_len, parse_header, value_len, Header};

/// A field's value, or what is known of it when the message was cut short.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    Value(Value),
    /// Not all of it is in the prefix: a description ("bin of 209715200 bytes"), and, for a
    /// payload, its declared length and the bytes of it that are there.
    Cut {
        what: String,
        payload: Option<(u64, Vec<u8>)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    /// request, response, notification, call, yield, ... (see KINDS), or "unknown".
    pub kind: &'static str,
    pub msgid: Option<u64>,
    pub method: Option<String>,
    /// The other elements, by name, in message order; a cut field is the last one.
    pub fields: Vec<(&'static str, Shown)>,
}

impl Described {
    pub fn field(&self, name: &str) -> Option<&Shown> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn uint(&self, name: &str) -> Option<u64> {
        match self.field(name) {
            Some(Shown::Value(v)) => as_u64(v),
            _ => None,
        }
    }
}

/// Type code, name, and the names of the elements after the type code (docs/PROTOCOL.md).
const KINDS: &[(u64, &str, &[&str])] = &[
    (0, "request", &["msgid", "method", "params"]),
    (1, "response", &["msgid", "error", "result"]),
    (2, "notification", &["method", "params"]),
    (16, "call", &["msgid", "method", "params", "kwargs", "flags", "deadline_ms", "window"]),
    (17, "yield", &["msgid", "item"]),
    (18, "send", &["msgid", "item"]),
    (19, "end", &["msgid"]),
    (20, "cancel", &["msgid"]),
    (21, "throw", &["msgid", "error"]),
    (22, "more_yields", &["msgid", "n"]),
    (23, "more_sends", &["msgid", "n"]),
    (24, "fragment", &["fragid", "total", "chunk"]),
    (25, "ping", &["nonce"]),
    (26, "pong", &["nonce"]),
];

/// An integer, or a float with an integral value (as joint accepts them).
pub fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => i.as_u64(),
        Value::F64(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 18446744073709551616.0 => Some(*f as u64),
        Value::F32(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 18446744073709551616.0 => Some(*f as u64),
        _ => None,
    }
}

/// What the header at the start of `bytes` announces, e.g. "array of 3 items".
fn outline(bytes: &[u8]) -> (String, Option<u64>) {
    let Some(&marker) = bytes.first() else { return ("a value not shown".into(), None) };
    let Some(len) = header_len(marker).filter(|len| *len <= bytes.len()) else {
        return ("a value not shown".into(), None);
    };
    let name = match marker {
        0x80..=0x8f | 0xde | 0xdf => "map",
        0x90..=0x9f | 0xdc | 0xdd => "array",
        0xa0..=0xbf | 0xd9..=0xdb => "str",
        0xc4..=0xc6 => "bin",
        _ => "ext",
    };
    match parse_header(&bytes[..len]) {
        Header::Container(n) if name == "map" => (format!("map of {} entries", n / 2), None),
        Header::Container(n) => (format!("array of {n} items"), None),
        Header::Payload(n) => (format!("{name} of {n} bytes"), Some(n)),
        Header::Scalar => ("a value not shown".into(), None),
    }
}

/// One element of the envelope: whole, or cut (and then the last).
fn element(rest: &mut &[u8]) -> Option<Shown> {
    if rest.is_empty() {
        return None;
    }
    match value_len(rest) {
        Some(len) => {
            // The whole value is here, so every length in it is backed by real bytes.
            let value = rmpv::decode::read_value(&mut &rest[..len]).ok()?;
            *rest = &rest[len..];
            Some(Shown::Value(value))
        }
        None => {
            let (what, declared) = outline(rest);
            let payload = declared.map(|n| {
                let head = header_len(rest[0]).unwrap_or(rest.len()).min(rest.len());
                (n, rest[head..].to_vec())
            });
            *rest = &[];
            Some(Shown::Cut { what, payload })
        }
    }
}

/// Describe a message (a MessagePack array) from its bytes, all of them or a prefix.
pub fn describe(prefix: &[u8]) -> Described {
    let mut unknown = Described { kind: "unknown", msgid: None, method: None, fields: Vec::new() };
    let Some(len) = prefix.first().and_then(|m| header_len(*m)).filter(|len| *len <= prefix.len()) else {
        return unknown;
    };
    let Header::Container(count) = parse_header(&prefix[..len]) else { return unknown };
    let mut rest = &prefix[len..];
    let mut elements = Vec::new();
    while (elements.len() as u64) < count {
        match element(&mut rest) {
            Some(e) => elements.push(e),
            None => break,
        }
    }
    let code = match elements.first() {
        Some(Shown::Value(v)) => as_u64(v),
        _ => None,
    };
    let Some(&(_, kind, names)) = code.and_then(|c| KINDS.iter().find(|k| k.0 == c)) else {
        if let Some(whole) = (value_len(prefix) == Some(prefix.len())).then(|| rmpv::decode::read_value(&mut &prefix[..]).ok()).flatten() {
            unknown.fields.push(("message", Shown::Value(whole)));
        }
        return unknown;
    };
    let mut described = Described { kind, msgid: None, method: None, fields: Vec::new() };
    for (i, shown) in elements.into_iter().enumerate().skip(1) {
        let name = names.get(i - 1).copied().unwrap_or("extra");
        match (name, &shown) {
            ("msgid", Shown::Value(v)) if as_u64(v).is_some() => described.msgid = as_u64(v),
            ("method", Shown::Value(Value::String(s))) => described.method = Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            ("method", Shown::Value(Value::Binary(b))) => described.method = Some(String::from_utf8_lossy(b).into_owned()),
            _ => described.fields.push((name, shown)),
        }
    }
    if kind == "response" {
        // Show the error or the result, whichever the response carries.
        let failed = matches!(described.field("error"), Some(s) if *s != Shown::Value(Value::Nil));
        described.fields.retain(|(name, _)| *name != if failed { "result" } else { "error" });
    }
    described
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(v: &Value) -> Vec<u8> {
        crate::json::encode(v)
    }

    #[test]
    fn names_stock_and_extension_messages() {
        let request = bytes(&Value::Array(vec![0.into(), 12.into(), "multiply".into(), Value::Array(vec![2.into()])]));
        let d = describe(&request);
        assert_eq!((d.kind, d.msgid, d.method.as_deref()), ("request", Some(12), Some("multiply")));
        assert_eq!(d.fields, [("params", Shown::Value(Value::Array(vec![2.into()])))]);

        let failed = bytes(&Value::Array(vec![1.into(), 3.into(), Value::Array(vec![2.into(), "no".into()]), Value::Nil]));
        let d = describe(&failed);
        assert_eq!((d.kind, d.fields.len(), d.fields[0].0), ("response", 1, "error"));

        let credit = bytes(&Value::Array(vec![22.into(), 5.into(), 8.into()]));
        let d = describe(&credit);
        assert_eq!((d.kind, d.msgid, d.uint("n")), ("more_yields", Some(5), Some(8)));

        let odd = bytes(&Value::Array(vec![99.into(), "x".into()]));
        assert_eq!(describe(&odd).kind, "unknown");
        assert_eq!(describe(&odd).fields.len(), 1);
    }

    #[test]
    fn describes_what_is_there_of_a_cut_message() {
        let big = bytes(&Value::Array(vec![1.into(), 7.into(), Value::Nil, Value::Binary(vec![9; 100_000])]));
        let d = describe(&big[..1000]);
        assert_eq!((d.kind, d.msgid), ("response", Some(7)));
        match d.field("result") {
            Some(Shown::Cut { what, payload: Some((n, some)) }) => {
                assert_eq!((what.as_str(), *n), ("bin of 100000 bytes", 100_000));
                assert_eq!(some.len(), 1000 - 4 - 5);
            }
            other => panic!("{other:?}"),
        }
    }
}
