//! The JSON-RPC parser and classifier as the MCP face runs it on a POST body:
//! `serde_json::from_slice`, arrays refused, then `jsonrpc::classify`.
//!
//! Invariants: no panic; a message classified as a request, notification or response carries
//! exactly the method and id the object holds; an error is -32600 with HTTP 400; a response
//! built for a request's id classifies as a response to that id, and an error object read back
//! from `to_value` is the same error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway::jsonrpc::{self, Message, RpcError};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if value.is_array() {
        return;
    }
    // (`classify` takes the message apart; the original stays here to check against.)
    match jsonrpc::classify(value.clone()) {
        Ok(Message::Request { id, method, params }) => {
            assert_eq!(value["id"], id);
            assert_eq!(value["method"].as_str(), Some(method.as_str()));
            assert!(id.is_string() || id.is_u64() || id.is_i64());
            check_params(&value, &params);
            check_answers(&id);
        }
        Ok(Message::Notification { method, params }) => {
            assert!(value.get("id").is_none());
            assert_eq!(value["method"].as_str(), Some(method.as_str()));
            check_params(&value, &params);
        }
        Ok(Message::Response { id, message }) => {
            assert_eq!(value["id"], id);
            assert_eq!(message, value, "a response is passed on whole");
            assert!(value.get("result").is_some() || value.get("error").is_some());
            // What the gateway reads from a backend's error member, and writes back.
            if let Some(error) = value.get("error") {
                let read = RpcError::from_value(error);
                assert_eq!(RpcError::from_value(&read.to_value()), read);
                let _ = read.http_status();
            }
        }
        Err(error) => {
            assert_eq!(error.code, jsonrpc::INVALID_REQUEST);
            assert_eq!(error.http_status(), 400);
            let _ = jsonrpc::error_response(&Value::Null, &error).to_string();
        }
    }
});

fn check_params(value: &Value, params: &serde_json::Map<String, Value>) {
    match value.get("params") {
        None | Some(Value::Null) => assert!(params.is_empty()),
        Some(p) => assert_eq!(p.as_object(), Some(params)),
    }
}

/// The answers the gateway sends to a request with `id` classify as responses to that id,
/// after a trip through the wire text.
fn check_answers(id: &Value) {
    let error = RpcError::new(jsonrpc::INVALID_PARAMS, "x").with_data(json!({"id": id}));
    for answer in [
        jsonrpc::response(id, json!({})),
        jsonrpc::error_response(id, &error),
    ] {
        let text = answer.to_string();
        let back: Value = serde_json::from_str(&text).expect("our own answer re-parses");
        match jsonrpc::classify(back) {
            Ok(Message::Response { id: got, .. }) => {
                assert_eq!(&got, id);
                assert_eq!(jsonrpc::id_key(&got), jsonrpc::id_key(id));
            }
            other => panic!("our answer {text} classified as {other:?}"),
        }
    }
    assert_eq!(RpcError::from_value(&error.to_value()), error);
}
