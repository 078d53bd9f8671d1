//! The 2026-07-28 routing headers: decoding a header value (`Mcp-Name`, `Mcp-Param-*`, verbatim
//! or `=?base64?...?=`), the base64 codec under it, and the `Mcp-Param-*` check.
//!
//! The input as a string is a header value. Invariants: no panic; whatever decodes re-encodes
//! to a valid header value that decodes to the same text; any text encodes to a valid header
//! value that decodes back to it; base64 that decodes re-encodes canonically to bytes that
//! decode the same. When the input is JSON `{"schema": ..., "arguments": {...}, "method": ...}`,
//! the headers the gateway would send for that call (`routing_headers`) pass its own check
//! (`param_headers::check`) after encoding and decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway::mcp::headers::{decode_value, encode_value, routing_headers};
use mcp_gateway::mcp::{base64, param_headers};
use mcp_gateway::untrusted::header_value_ok;
use serde_json::{Map, Value};
use std::collections::HashMap;

fn round_trips(text: &str) {
    let encoded = encode_value(text);
    assert!(header_value_ok(&encoded), "{encoded:?} is no header value");
    assert_eq!(decode_value(&encoded).as_deref(), Some(text));
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(decoded) = decode_value(&text) {
        round_trips(&decoded);
    }
    round_trips(&text);
    if let Some(bytes) = base64::decode(&text) {
        let canonical = base64::encode(&bytes);
        assert_eq!(base64::decode(&canonical), Some(bytes));
    }

    let Ok(Value::Object(call)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Some(schema) = call.get("schema") else {
        return;
    };
    let method = call
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("tools/call");
    let empty = Map::new();
    let arguments = call
        .get("arguments")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let marked = param_headers::marked(schema);
    let name = "tool";
    let mut params = Map::new();
    params.insert("name".into(), Value::from(name));
    params.insert("arguments".into(), Value::Object(arguments.clone()));
    let mut by_tool = HashMap::new();
    by_tool.insert(name.to_string(), marked.clone());
    let sent = routing_headers(method, Some(&params), &by_tool);
    for (header, value) in &sent {
        assert!(header_value_ok(value), "{header}: {value:?}");
    }
    if method == "tools/call" {
        let lookup = |wanted: &str| {
            sent.iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(wanted))
                .map(|(_, v)| decode_value(v).ok_or(()))
        };
        if let Err(e) = param_headers::check(&marked, arguments, &lookup) {
            panic!("our own headers {sent:?} fail our check: {e}");
        }
    }
});
