//! JSON-RPC 2.0 as MCP uses it: classifying an incoming message, building responses and errors.

use serde::Serialize;
use serde_json::{json, Map, Value};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters (also: unknown tool, prompt or resource).
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error (also: a backend failed).
pub const INTERNAL_ERROR: i64 = -32603;
/// 2026-07-28: a routing header disagrees with the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// 2026-07-28: the requested protocol version is not supported.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// 2026-07-28: the client lacks a capability the request needs (HTTP 400).
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
/// mcp-gateway: a request over a rate limit (HTTP 429; `data.retryAfterMs`).
pub const RATE_LIMITED: i64 = -32029;
/// mcp-gateway: the client's access rule refuses the tool, prompt or resource (`data.rule` names
/// the part of the rule: `servers`, `deny`, `allow` or `read_only`).
pub const ACCESS_DENIED: i64 = -32023;

/// The string `key` of a request's `params`, or -32602 naming it (`tools/call: params.name must
/// be a string`).
pub fn required_str<'a>(
    params: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
    method: &str,
) -> Result<&'a str, RpcError> {
    params
        .get(key)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            RpcError::new(
                INVALID_PARAMS,
                format!("{method}: params.{key} must be a string"),
            )
        })
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// Error code.
    pub code: i64,
    /// What went wrong, for a person.
    pub message: String,
    /// Machine-readable details.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Adds `data`.
    pub fn with_data(mut self, data: Value) -> RpcError {
        self.data = Some(data);
        self
    }

    /// The `error` member.
    pub fn to_value(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        error
    }

    /// Reads an `error` member sent by a backend.
    pub fn from_value(error: &Value) -> RpcError {
        RpcError {
            code: error
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or(INTERNAL_ERROR),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error without a message")
                .to_string(),
            data: error.get("data").cloned(),
        }
    }

    /// HTTP status to send with this error when it is the whole answer to a POST.
    pub fn http_status(&self) -> u16 {
        match self.code {
            PARSE_ERROR | INVALID_REQUEST | HEADER_MISMATCH | UNSUPPORTED_PROTOCOL_VERSION => 400,
            _ => 200,
        }
    }
}

/// A message of `fields` after `"jsonrpc": "2.0"`. Built by hand: `json!` would copy every
/// value it is given (it serialises it into a new one), and results and params can be large.
fn message<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let mut map = Map::with_capacity(N + 1);
    map.insert("jsonrpc".to_string(), Value::String("2.0".to_string()));
    for (key, value) in fields {
        map.insert(key.to_string(), value);
    }
    Value::Object(map)
}

/// A successful response.
pub fn response(id: &Value, result: Value) -> Value {
    message([("id", id.clone()), ("result", result)])
}

/// A successful response that borrows its `result` (which need not be a [`Value`]): the same
/// JSON as [`response`], written without building the message.
pub fn response_ref<'a, R: Serialize + ?Sized>(id: &'a Value, result: &'a R) -> ResponseRef<'a, R> {
    ResponseRef {
        jsonrpc: "2.0",
        id,
        result,
    }
}

/// See [`response_ref`].
#[derive(Serialize)]
pub struct ResponseRef<'a, R: Serialize + ?Sized> {
    jsonrpc: &'static str,
    id: &'a Value,
    result: &'a R,
}

/// An error response.
pub fn error_response(id: &Value, error: &RpcError) -> Value {
    message([("id", id.clone()), ("error", error.to_value())])
}

/// A notification.
pub fn notification(method: &str, params: Value) -> Value {
    message([
        ("method", Value::String(method.to_string())),
        ("params", params),
    ])
}

/// A request.
pub fn request(id: &Value, method: &str, params: Value) -> Value {
    message([
        ("id", id.clone()),
        ("method", Value::String(method.to_string())),
        ("params", params),
    ])
}

/// What kind of JSON-RPC message a value is.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request: it has an id and a method.
    Request {
        /// Its id (string or number).
        id: Value,
        /// The method.
        method: String,
        /// Its params (an empty object when absent).
        params: Map<String, Value>,
    },
    /// A notification: a method and no id.
    Notification {
        /// The method.
        method: String,
        /// Its params.
        params: Map<String, Value>,
    },
    /// A response (result or error) to a request.
    Response {
        /// The id it answers.
        id: Value,
        /// The whole message.
        message: Value,
    },
}

/// Classifies one message, or says precisely why it is not a valid one. It takes the message
/// apart rather than copying its params (this runs on every request); a response keeps the
/// whole message, for whoever waits for it.
pub fn classify(value: Value) -> Result<Message, RpcError> {
    let Value::Object(mut obj) = value else {
        return Err(RpcError::new(
            INVALID_REQUEST,
            "a JSON-RPC message must be a JSON object",
        ));
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(RpcError::new(
            INVALID_REQUEST,
            "the message must contain \"jsonrpc\": \"2.0\"",
        ));
    }
    if let Some(id) = obj.get("id") {
        if !(id.is_string() || id.is_i64() || id.is_u64()) {
            return Err(RpcError::new(
                INVALID_REQUEST,
                "\"id\" must be a string or an integer",
            ));
        }
    }
    match obj.get("method") {
        Some(Value::String(_)) => {
            let params = match obj.remove("params") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(p)) => p,
                Some(_) => return Err(RpcError::new(INVALID_REQUEST, "\"params\" must be an object")),
            };
            let method = match obj.remove("method") {
                Some(Value::String(method)) => method,
                _ => String::new(), // (matched as a string just above)
            };
            Ok(match obj.remove("id") {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            })
        }
        Some(_) => Err(RpcError::new(INVALID_REQUEST, "\"method\" must be a string")),
        None => match obj.get("id") {
            Some(id) if obj.contains_key("result") || obj.contains_key("error") => Ok(Message::Response { id: id.clone(), message: Value::Object(obj) }),
            _ => Err(RpcError::new(INVALID_REQUEST, "the message has no \"method\" (not a request) and no \"result\" or \"error\" (not a response)")),
        },
    }
}

/// The id of a request as a map key.
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_all_kinds() {
        let req = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        assert!(
            matches!(classify(req), Ok(Message::Request { method, .. }) if method == "tools/list")
        );
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert!(matches!(classify(note), Ok(Message::Notification { .. })));
        let resp = json!({"jsonrpc": "2.0", "id": "a", "result": {}});
        assert!(matches!(classify(resp), Ok(Message::Response { .. })));
    }

    #[test]
    fn rejects_with_reasons() {
        for (bad, needle) in [
            (json!([1]), "object"),
            (json!({"id": 1, "method": "x"}), "jsonrpc"),
            (json!({"jsonrpc": "2.0", "id": 1.5, "method": "x"}), "id"),
            (json!({"jsonrpc": "2.0", "id": 1, "method": 5}), "method"),
            (
                json!({"jsonrpc": "2.0", "id": 1, "method": "x", "params": [1]}),
                "params",
            ),
            (json!({"jsonrpc": "2.0", "id": 1}), "no \"method\""),
        ] {
            let err = classify(bad).expect_err("must be rejected");
            assert_eq!(err.code, INVALID_REQUEST);
            assert!(
                err.message.contains(needle),
                "{} lacks {needle}",
                err.message
            );
        }
    }

    #[test]
    fn error_objects_round_trip() {
        let e = RpcError::new(INVALID_PARAMS, "unknown tool").with_data(json!({"name": "x"}));
        let back = RpcError::from_value(&e.to_value());
        assert_eq!(back, e);
        assert_eq!(
            error_response(&json!(3), &e)["error"]["code"],
            INVALID_PARAMS
        );
    }
}
