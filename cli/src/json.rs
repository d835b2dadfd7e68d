//! JSON ⇄ MessagePack, for arguments on the command line and results on stdout.
//!
//! JSON null, booleans, numbers, strings, arrays and objects map to their MessagePack
//! counterparts (integers keep their i64/u64 range; other numbers become float64). MessagePack
//! values with no JSON counterpart are written as one-key objects, accepted back on input:
//!
//! | MessagePack                      | JSON                                   |
//! |----------------------------------|----------------------------------------|
//! | bin                              | `{"$bin":"<base64>"}`                  |
//! | ext                              | `{"$ext":[type,"<base64>"]}`           |
//! | map with non-string keys         | `{"$map":[[key,value],...]}`           |
//! | str that is not valid UTF-8      | `{"$str":"<base64 of the raw bytes>"}` |
//! | float NaN, +inf, -inf            | `{"$float":"nan"}`, `"inf"`, `"-inf"`  |
//!
//! A map whose only key is one of those five names (or with repeated keys) is written in the
//! `$map` form too, so output read back as input gives the same MessagePack. On input, only an
//! object with exactly one key, one of those names, is a special form; float32 values print
//! with their shortest float32 digits.

use base64::prelude::{Engine, BASE64_STANDARD};
use rmpv::Value;
use serde_json::{Map, Number, Value as Json};

const SPECIAL_KEYS: [&str; 5] = ["$bin", "$ext", "$map", "$str", "$float"];

/// A command-line argument: JSON if it parses as JSON; else, unless it begins like JSON (with
/// `[`, `{`, `"`, a digit or `-`), the text itself as a string. A word that begins like JSON
/// but does not parse is an error, so a typo such as `[1,` is not sent as the string "[1,".
pub fn parse_arg(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Json>(text) {
        Ok(json) => to_msgpack(&json),
        Err(e) if text.trim_start().starts_with(|c: char| matches!(c, '[' | '{' | '"' | '-') || c.is_ascii_digit()) => {
            Err(format!("{text:?} begins like JSON but is not valid JSON ({e}); quote it for the shell as '\"...\"' to send a string"))
        }
        Err(_) => Ok(Value::from(text)),
    }
}

/// Convert JSON to MessagePack. Fails only on a malformed special form.
pub fn to_msgpack(json: &Json) -> Result<Value, String> {
    Ok(match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => number_to_msgpack(n),
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(items.iter().map(to_msgpack).collect::<Result<_, _>>()?),
        Json::Object(map) => {
            if map.len() == 1 {
                if let Some((key, value)) = map.iter().next() {
                    if let Some(special) = special_to_msgpack(key, value)? {
                        return Ok(special);
                    }
                }
            }
            let mut pairs = Vec::with_capacity(map.len());
            for (k, v) in map {
                pairs.push((Value::from(k.as_str()), to_msgpack(v)?));
            }
            Value::Map(pairs)
        }
    })
}

fn number_to_msgpack(n: &Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::from(i)
    } else if let Some(u) = n.as_u64() {
        Value::from(u)
    } else {
        Value::F64(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// The value of a one-key object whose key is a special-form name; `None` for other keys.
fn special_to_msgpack(key: &str, value: &Json) -> Result<Option<Value>, String> {
    let decode = |what: &str, text: &Json| -> Result<Vec<u8>, String> {
        let text = text.as_str().ok_or_else(|| format!("{what} needs a base64 string"))?;
        BASE64_STANDARD.decode(text).map_err(|e| format!("{what}: invalid base64: {e}"))
    };
    Ok(Some(match key {
        "$bin" => Value::Binary(decode("$bin", value)?),
        "$str" => raw_str(&decode("$str", value)?)?,
        "$ext" => {
            let bad = || "$ext needs [type, \"<base64>\"] with type from -128 to 127".to_string();
            let parts = value.as_array().filter(|p| p.len() == 2).ok_or_else(bad)?;
            let ty = parts[0].as_i64().and_then(|t| i8::try_from(t).ok()).ok_or_else(bad)?;
            Value::Ext(ty, decode("$ext", &parts[1])?)
        }
        "$map" => {
            let bad = || "$map needs an array of [key, value] pairs".to_string();
            let pairs = value.as_array().ok_or_else(bad)?;
            let mut out = Vec::with_capacity(pairs.len());
            for pair in pairs {
                match pair.as_array().map(Vec::as_slice) {
                    Some([k, v]) => out.push((to_msgpack(k)?, to_msgpack(v)?)),
                    _ => return Err(bad()),
                }
            }
            Value::Map(out)
        }
        "$float" => match value.as_str() {
            Some("nan") => Value::F64(f64::NAN),
            Some("inf") => Value::F64(f64::INFINITY),
            Some("-inf") => Value::F64(f64::NEG_INFINITY),
            _ => return Err("$float needs \"nan\", \"inf\" or \"-inf\"".into()),
        },
        _ => return Ok(None),
    }))
}

/// A MessagePack str holding exactly `bytes`, valid UTF-8 or not (rmpv has no constructor for
/// the invalid case, so it is decoded from its encoding).
fn raw_str(bytes: &[u8]) -> Result<Value, String> {
    let mut encoded = Vec::with_capacity(bytes.len() + 5);
    joint::codec::write_str(&mut encoded, bytes);
    rmpv::decode::read_value(&mut encoded.as_slice()).map_err(|e| format!("$str: {e}"))
}

/// Convert MessagePack to JSON (lossless, see the module docs).
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(v), _) => Json::from(v),
            (None, Some(v)) => Json::from(v),
            _ => Json::Null, // unreachable: an Integer is always an i64 or a u64
        },
        // Shortest float32 digits ("1.1", not 1.100000023841858).
        Value::F32(f) => float_to_json(f.to_string().parse::<f64>().unwrap_or(f64::from(*f))),
        Value::F64(f) => float_to_json(*f),
        Value::String(s) => match s.as_str() {
            Some(text) => Json::String(text.to_string()),
            None => special("$str", Json::String(BASE64_STANDARD.encode(s.as_bytes()))),
        },
        Value::Binary(b) => special("$bin", Json::String(BASE64_STANDARD.encode(b))),
        Value::Ext(ty, data) => special("$ext", Json::Array(vec![Json::from(*ty), Json::String(BASE64_STANDARD.encode(data))])),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(pairs) => map_to_json(pairs),
    }
}

fn float_to_json(f: f64) -> Json {
    match Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None => {
            let name = if f.is_nan() {
                "nan"
            } else if f > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            special("$float", Json::String(name.into()))
        }
    }
}

fn special(key: &str, value: Json) -> Json {
    let mut map = Map::new();
    map.insert(key.into(), value);
    Json::Object(map)
}

fn map_to_json(pairs: &[(Value, Value)]) -> Json {
    let mut object = Map::with_capacity(pairs.len());
    let mut plain = true;
    for (k, v) in pairs {
        match k.as_str() {
            Some(key) if !object.contains_key(key) => {
                object.insert(key.to_string(), to_json(v));
            }
            _ => {
                plain = false;
                break;
            }
        }
    }
    let ambiguous = object.len() == 1 && object.keys().all(|k| SPECIAL_KEYS.contains(&k.as_str()));
    if plain && !ambiguous {
        return Json::Object(object);
    }
    let pairs = pairs.iter().map(|(k, v)| Json::Array(vec![to_json(k), to_json(v)])).collect();
    special("$map", Json::Array(pairs))
}

/// Encode a value as MessagePack bytes (compact forms). A str that is not valid UTF-8 stays a
/// str (rmpv's own encoder would write it as bin).
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, value);
    out
}

fn encode_into(out: &mut Vec<u8>, value: &Value) {
    use joint::codec as c;
    match value {
        Value::Nil => c::write_nil(out),
        Value::Boolean(b) => c::write_bool(out, *b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => c::write_uint(out, u),
            (None, Some(v)) => c::write_sint(out, v),
            (None, None) => c::write_nil(out), // unreachable: an Integer is an i64 or a u64
        },
        Value::F32(f) => c::write_f32(out, *f),
        Value::F64(f) => c::write_f64(out, *f),
        Value::String(s) => c::write_str(out, s.as_bytes()),
        Value::Binary(b) => c::write_bin(out, b),
        Value::Ext(ty, data) => c::write_ext(out, *ty, data),
        Value::Array(items) => {
            c::write_array_len(out, items.len() as u32);
            for item in items {
                encode_into(out, item);
            }
        }
        Value::Map(pairs) => {
            c::write_map_len(out, pairs.len() as u32);
            for (k, v) in pairs {
                encode_into(out, k);
                encode_into(out, v);
            }
        }
    }
}

/// Decode exactly one MessagePack value.
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    let mut rest = bytes;
    let value = rmpv::decode::read_value(&mut rest).map_err(|e| format!("invalid MessagePack: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("invalid MessagePack: {} bytes after the value", rest.len()));
    }
    Ok(value)
}

/// MessagePack bytes as one line of JSON (or a note that they are not valid MessagePack).
pub fn bytes_to_json_text(bytes: &[u8]) -> String {
    match decode(bytes) {
        Ok(v) => to_json(&v).to_string(),
        Err(e) => format!("<{e}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        let v = parse_arg(text).expect("valid");
        to_json(&decode(&encode(&v)).expect("decodes")).to_string()
    }

    #[test]
    fn plain_values_round_trip() {
        for text in [
            "null",
            "true",
            "false",
            "0",
            "-1",
            "-9223372036854775808",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551615",
            "1.5",
            "2.0",
            "-0.25",
            "1e+300",
            r#""""#,
            r#""héllo 日本 🦀""#,
            "[]",
            "{}",
            r#"{"b":[1,{"c":null}],"a":"d"}"#,
        ] {
            assert_eq!(round_trip(text), text, "{text}");
        }
    }

    #[test]
    fn special_forms_round_trip() {
        for text in [
            r#"{"$bin":"AAEC/w=="}"#,
            r#"{"$ext":[-5,"AQI="]}"#,
            r#"{"$map":[[1,"one"],[null,[2]]]}"#,
            r#"{"$map":[["$bin","not bin"]]}"#,
            r#"{"$map":[["a",1],["a",2]]}"#,
            r#"{"$str":"/w=="}"#,
            r#"{"$float":"nan"}"#,
            r#"{"$float":"-inf"}"#,
        ] {
            assert_eq!(round_trip(text), text, "{text}");
        }
        assert_eq!(round_trip(r#"{"$map":[["a",1]]}"#), r#"{"a":1}"#);
        assert_eq!(round_trip(r#"{"$bin":"AA==","x":1}"#), r#"{"$bin":"AA==","x":1}"#);
        assert_eq!(round_trip(r#"{"$other":1}"#), r#"{"$other":1}"#);
    }

    #[test]
    fn non_json_args_are_strings() {
        assert_eq!(parse_arg("hello").unwrap(), Value::from("hello"));
        assert_eq!(parse_arg("hello world").unwrap(), Value::from("hello world"));
        assert_eq!(parse_arg("truth").unwrap(), Value::from("truth"));
        assert_eq!(parse_arg("").unwrap(), Value::from(""));
    }

    #[test]
    fn words_that_begin_like_json_must_be_json() {
        for text in ["[1,", "{", "\"open", "12abc", "-x", "1+2", " [1"] {
            let e = parse_arg(text).unwrap_err();
            assert!(e.contains("begins like JSON"), "{text}: {e}");
        }
        assert_eq!(parse_arg("-2").unwrap(), Value::from(-2));
        assert_eq!(parse_arg("\"1+2\"").unwrap(), Value::from("1+2"));
    }

    #[test]
    fn malformed_special_forms_are_errors() {
        for text in [r#"{"$bin":"!!"}"#, r#"{"$bin":1}"#, r#"{"$ext":[300,""]}"#, r#"{"$map":[[1]]}"#, r#"{"$float":"x"}"#] {
            assert!(parse_arg(text).is_err(), "{text}");
        }
    }

    #[test]
    fn float32_prints_short() {
        assert_eq!(to_json(&Value::F32(1.1)).to_string(), "1.1");
    }

    #[test]
    fn decode_rejects_trailing_bytes() {
        assert!(decode(&[0x01, 0x02]).is_err());
        assert!(decode(&[0x92, 0x01]).is_err());
    }
}
