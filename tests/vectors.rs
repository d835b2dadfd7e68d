//! The protocol test vectors (tests/vectors/protocol.json, shared with the wrappers' tests):
//! every vector decodes as the message it describes, and joint's encoders produce exactly
//! its bytes.

use joint::codec::{self, Message};
use serde_json::Value as Json;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// MessagePack → the vectors' JSON form (bin as {"$bin": hex}).
fn to_json(v: &rmpv::Value) -> Json {
    use rmpv::Value as V;
    match v {
        V::Nil => Json::Null,
        V::Boolean(b) => Json::Bool(*b),
        V::Integer(i) => i.as_i64().map(Json::from).or_else(|| i.as_u64().map(Json::from)).unwrap(),
        V::F32(f) => Json::from(*f as f64),
        V::F64(f) => Json::from(*f),
        V::String(s) => Json::String(s.as_str().unwrap().to_string()),
        V::Binary(b) => serde_json::json!({ "$bin": b.iter().map(|x| format!("{x:02x}")).collect::<String>() }),
        V::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        V::Map(m) => Json::Object(m.iter().map(|(k, v)| (k.as_str().unwrap().to_string(), to_json(v))).collect()),
        V::Ext(..) => panic!("no ext in the vectors"),
    }
}

fn reencode(m: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    match *m {
        Message::Request { msgid, method, params } => codec::encode_request(&mut out, msgid, method, params.kwargs.unwrap_or(params.args)),
        Message::Response { msgid, error, result } => codec::encode_response(&mut out, msgid, error, result),
        Message::Notification { method, params } => codec::encode_notification(&mut out, method, params.kwargs.unwrap_or(params.args)),
        Message::Call { msgid, method, params, flags, deadline_ms, window } => {
            codec::encode_call(&mut out, msgid, method, params.args, params.kwargs, flags, deadline_ms, window)
        }
        Message::Yield { msgid, item } => codec::encode_item(&mut out, codec::TYPE_YIELD, msgid, item),
        Message::Send { msgid, item } => codec::encode_item(&mut out, codec::TYPE_SEND, msgid, item),
        Message::Throw { msgid, error } => codec::encode_item(&mut out, codec::TYPE_THROW, msgid, error),
        Message::End { msgid } => codec::encode_signal(&mut out, codec::TYPE_END, msgid),
        Message::Cancel { msgid } => codec::encode_signal(&mut out, codec::TYPE_CANCEL, msgid),
        Message::MoreYields { msgid, n } => codec::encode_credit(&mut out, codec::TYPE_MORE_YIELDS, msgid, n),
        Message::MoreSends { msgid, n } => codec::encode_credit(&mut out, codec::TYPE_MORE_SENDS, msgid, n),
        Message::Fragment { fragid, total, chunk } => codec::encode_fragment(&mut out, fragid, total, chunk),
        Message::Ping { nonce } => codec::encode_signal(&mut out, codec::TYPE_PING, nonce),
        Message::Pong { nonce } => codec::encode_signal(&mut out, codec::TYPE_PONG, nonce),
    }
    out
}

#[test]
fn every_vector_decodes_and_reencodes_exactly() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/protocol.json")).unwrap();
    let doc: Json = serde_json::from_str(&text).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 20);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let bytes = hex(v["hex"].as_str().unwrap());
        assert_eq!(codec::validate_object(&bytes, Default::default()), Ok(()), "{name}");
        let value = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
        assert_eq!(to_json(&value), v["message"], "{name}: the bytes are the described message");
        let message = codec::decode_message(&bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(reencode(&message), bytes, "{name}: joint encodes exactly these bytes");
    }
}
