//! Helpers for request handlers, and the `echo` and `add` methods that both the demo server and
//! `joint call` (for callbacks from the server) serve.

use std::rc::Rc;

use joint::protocol::rpc_error;
use joint::reactor::{Context, Request};
use rmpv::Value;

use crate::json;

/// The params of a request by name: positional (exactly `names.len()` of them), or keyword
/// (a map with exactly those string keys). `None` if they do not fit.
pub fn params(req: &Request, names: &[&str]) -> Option<Vec<Value>> {
    if let Some(kwargs) = req.kwargs() {
        let Ok(Value::Map(pairs)) = json::decode(kwargs) else { return None };
        if pairs.len() != names.len() {
            return None;
        }
        let mut slots: Vec<Option<Value>> = vec![None; names.len()];
        for (k, v) in pairs {
            let i = names.iter().position(|n| Some(*n) == k.as_str())?;
            if slots[i].replace(v).is_some() {
                return None;
            }
        }
        return slots.into_iter().collect();
    }
    match json::decode(req.args()) {
        Ok(Value::Array(items)) if items.len() == names.len() => Some(items),
        _ => None,
    }
}

/// Answer with a value.
pub fn reply(req: Request, value: &Value) {
    // A reply over the size limit becomes an error reply to the peer; nothing else to do.
    let _ = req.reply(&json::encode(value));
}

/// Answer with joint's `[INVALID_PARAMS, message]` error.
pub fn invalid_params(req: Request, message: &str) {
    let _ = req.reply_error_code(rpc_error::INVALID_PARAMS, message.as_bytes());
}

pub fn echo(_ctx: &Context, req: Request) {
    match params(&req, &["x"]) {
        Some(mut p) => {
            let x = p.swap_remove(0);
            reply(req, &x);
        }
        None => invalid_params(req, "echo(x) takes one argument"),
    }
}

pub const ADD_USAGE: &str = "add(a, b) needs two numbers";

pub fn add(_ctx: &Context, req: Request) {
    let sum = params(&req, &["a", "b"]).ok_or(ADD_USAGE).and_then(|p| add_values(&p[0], &p[1]));
    match sum {
        Ok(v) => reply(req, &v),
        Err(message) => invalid_params(req, message),
    }
}

/// a + b: integers stay integers (any result in the i64 or u64 range), anything with a float
/// is a float.
pub fn add_values(a: &Value, b: &Value) -> Result<Value, &'static str> {
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => {
            let wide = |i: &rmpv::Integer| i.as_i64().map(i128::from).or_else(|| i.as_u64().map(i128::from));
            let (Some(x), Some(y)) = (wide(x), wide(y)) else { return Err(ADD_USAGE) };
            let sum = x + y;
            if let Ok(v) = i64::try_from(sum) {
                Ok(Value::from(v))
            } else if let Ok(v) = u64::try_from(sum) {
                Ok(Value::from(v))
            } else {
                Err("add(a, b): the sum does not fit in a 64-bit integer")
            }
        }
        _ => match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => Ok(Value::F64(x + y)),
            _ => Err(ADD_USAGE),
        },
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => i.as_f64(),
        Value::F32(f) => Some(f64::from(*f)),
        Value::F64(f) => Some(*f),
        _ => None,
    }
}

/// Serve `echo` and `add` on `ctx`.
pub fn register_echo_add(ctx: &Context) {
    ctx.register(b"echo", Rc::new(echo));
    ctx.register(b"add", Rc::new(add));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_keeps_integers() {
        assert_eq!(add_values(&Value::from(2), &Value::from(3)), Ok(Value::from(5)));
        assert_eq!(add_values(&Value::from(-5), &Value::from(2)), Ok(Value::from(-3)));
        assert_eq!(add_values(&Value::from(i64::MAX), &Value::from(1)), Ok(Value::from(1u64 << 63)));
        assert_eq!(add_values(&Value::from(u64::MAX), &Value::from(-1)), Ok(Value::from(u64::MAX - 1)));
        assert_eq!(add_values(&Value::from(i64::MIN), &Value::from(-1)), Err("add(a, b): the sum does not fit in a 64-bit integer"));
        assert_eq!(add_values(&Value::from(u64::MAX), &Value::from(1)), Err("add(a, b): the sum does not fit in a 64-bit integer"));
    }

    #[test]
    fn add_mixes_to_float() {
        assert_eq!(add_values(&Value::F64(1.5), &Value::from(2)), Ok(Value::F64(3.5)));
        assert_eq!(add_values(&Value::F32(0.5), &Value::F64(0.25)), Ok(Value::F64(0.75)));
        assert_eq!(add_values(&Value::from("x"), &Value::from(1)), Err(ADD_USAGE));
        assert_eq!(add_values(&Value::Boolean(true), &Value::from(1)), Err(ADD_USAGE));
    }
}
