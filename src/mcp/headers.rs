//! The 2026-07-28 routing headers: `Mcp-Method`, `Mcp-Name` and `Mcp-Param-*`, with their
//! value encoding (verbatim for plain printable ASCII, `=?base64?...?=` for anything else).

use super::{base64, name_param, param_headers, METHOD_HEADER, NAME_HEADER};
use serde_json::{Map, Value};

const ENCODED_PREFIX: &str = "=?base64?";
const ENCODED_SUFFIX: &str = "?=";

/// `value` as a header value: as is when it is printable ASCII without edge whitespace (and
/// does not look encoded), otherwise `=?base64?…?=` around the base64 of its UTF-8.
pub fn encode_value(value: &str) -> String {
    let printable = value.bytes().all(|b| (0x20..=0x7e).contains(&b));
    let plain = printable && value.trim() == value && !value.starts_with(ENCODED_PREFIX);
    if plain {
        value.to_owned()
    } else {
        format!(
            "{ENCODED_PREFIX}{}{ENCODED_SUFFIX}",
            base64::encode(value.as_bytes())
        )
    }
}

/// Decodes a routing header value: verbatim, or `=?base64?...?=`. `None` for a malformed
/// encoding or one that is not UTF-8.
pub fn decode_value(value: &str) -> Option<String> {
    match value
        .strip_prefix(ENCODED_PREFIX)
        .and_then(|v| v.strip_suffix(ENCODED_SUFFIX))
    {
        Some(payload) => base64::decode(payload).and_then(|bytes| String::from_utf8(bytes).ok()),
        None => Some(value.to_string()),
    }
}

/// The routing headers of a 2026-07-28 request: `Mcp-Method`, `Mcp-Name` for the methods that
/// name something, and the `Mcp-Param-*` headers of the arguments a tool marks (`marked`: the
/// tool's `x-mcp-header` parameters, by tool name).
pub fn routing_headers(
    method: &str,
    params: Option<&Map<String, Value>>,
    marked: &std::collections::HashMap<String, Vec<param_headers::ParamHeader>>,
) -> Vec<(String, String)> {
    let mut headers = vec![(METHOD_HEADER.to_string(), encode_value(method))];
    let name = name_param(method).and_then(|param| params?.get(param)?.as_str());
    if let Some(name) = name {
        headers.push((NAME_HEADER.to_string(), encode_value(name)));
        let marked = marked.get(name).filter(|_| method == "tools/call");
        let arguments = params
            .and_then(|p| p.get("arguments"))
            .and_then(Value::as_object);
        if let (Some(marked), Some(arguments)) = (marked, arguments) {
            for (header, value) in param_headers::outgoing(marked, arguments) {
                headers.push((header, encode_value(&value)));
            }
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_plain_or_encoded() {
        for value in [
            "get_weather",
            "file:///a b.txt",
            "Zürich",
            "café",
            " x",
            "x ",
            "tab\there",
            "line\nbreak",
            "=?base64?looks encoded?=",
            "",
            "日本語",
        ] {
            let encoded = encode_value(value);
            assert!(crate::untrusted::header_value_ok(&encoded), "{encoded:?}");
            assert_eq!(decode_value(&encoded).as_deref(), Some(value), "{value:?}");
        }
        assert_eq!(encode_value("get_weather"), "get_weather");
        assert_eq!(encode_value("Zürich"), "=?base64?WsO8cmljaA==?=");
        assert_eq!(encode_value(" x"), "=?base64?IHg=?=");
    }

    #[test]
    fn malformed_encodings_are_refused() {
        assert_eq!(decode_value("=?base64?###?="), None);
        assert_eq!(decode_value("=?base64?/w==?="), None, "not UTF-8");
        assert_eq!(
            decode_value("=?base64?abc"),
            Some("=?base64?abc".into()),
            "not encoded"
        );
    }

    #[test]
    fn routing_headers_name_what_the_request_names() {
        let params = serde_json::json!({"name": "Zürich", "arguments": {}});
        let headers = routing_headers("tools/call", params.as_object(), &Default::default());
        assert_eq!(
            headers,
            [
                ("Mcp-Method".to_string(), "tools/call".to_string()),
                (
                    "Mcp-Name".to_string(),
                    "=?base64?WsO8cmljaA==?=".to_string()
                )
            ]
        );
        let read = serde_json::json!({"uri": "file:///x"});
        let headers = routing_headers("resources/read", read.as_object(), &Default::default());
        assert_eq!(headers[1].1, "file:///x");
        assert_eq!(
            routing_headers("tools/list", None, &Default::default()).len(),
            1
        );
    }
}
