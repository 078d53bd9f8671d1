//! The wire rules of `/mcp`: the 2026-07-28 request checks (envelope, routing headers, versions),
//! routing header value encoding, the `Host` guard against DNS rebinding, and the fields a result
//! gains or loses between the protocol eras.

use super::{METHOD_HEADER, NAME_HEADER, VERSION_HEADER};
use crate::backend::{
    CacheHint, HANDSHAKE_VERSIONS, META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, MODERN_VERSION,
};
use crate::http_util::request_header;
use crate::jsonrpc::{self, RpcError};
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use tiny_http::Request;

/// The DNS-rebinding guard on `Host`: loopback names (any port) and IP addresses (a rebinding
/// attack needs a name of its own) pass, and so do the hosts of `public_url` and of the
/// `allowed_origins` entries.
pub(super) fn host_allowed(config: &crate::config::Config, host: &str) -> bool {
    let name = host_name(host).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") || name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let same_host = |url: &String| {
        let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
        let authority = url[after_scheme..].split('/').next().unwrap_or("");
        host_name(authority).eq_ignore_ascii_case(&name)
    };
    config.public_url.iter().any(same_host) || config.allowed_origins.iter().any(same_host)
}

/// The host part of a `Host` header or URL authority: no port, no IPv6 brackets.
pub(super) fn host_name(authority: &str) -> &str {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    }
}

pub(super) fn unsupported_version(requested: &str) -> RpcError {
    let mut supported = vec![MODERN_VERSION];
    supported.extend_from_slice(HANDSHAKE_VERSIONS);
    RpcError::new(
        jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
        format!(
            "protocol version \"{requested}\" is not supported; this gateway speaks {}",
            supported.join(", ")
        ),
    )
    .with_data(json!({"supported": supported, "requested": requested}))
}

/// The 2026-07-28 checks: envelope present, headers equal to the body, version supported.
pub(super) fn check_modern_request(
    request: &Request,
    method: &str,
    params: &Map<String, Value>,
) -> Result<(), RpcError> {
    let meta = params.get("_meta").and_then(Value::as_object).ok_or_else(|| {
        RpcError::new(jsonrpc::INVALID_PARAMS, format!("params._meta must be an object carrying \"{META_PROTOCOL_VERSION}\" and \"{META_CLIENT_CAPABILITIES}\""))
    })?;
    let missing: Vec<&str> = [META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES]
        .into_iter()
        .filter(|k| !meta.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(RpcError::new(
            jsonrpc::INVALID_PARAMS,
            format!("params._meta is missing {}", missing.join(" and ")),
        ));
    }
    let body_version = meta.get(META_PROTOCOL_VERSION).and_then(Value::as_str);
    let header_version = request_header(request, VERSION_HEADER);
    if header_version.is_none() || header_version != body_version {
        return Err(RpcError::new(jsonrpc::HEADER_MISMATCH, format!("the {VERSION_HEADER} header ({}) does not match params._meta's protocol version ({})", header_version.unwrap_or("missing"), body_version.unwrap_or("missing"))));
    }
    let method_header = request_header(request, METHOD_HEADER);
    if method_header != Some(method) {
        return Err(RpcError::new(
            jsonrpc::HEADER_MISMATCH,
            format!(
                "the {METHOD_HEADER} header ({}) does not match the body's method ({method})",
                method_header.unwrap_or("missing")
            ),
        ));
    }
    let name_key = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(key) = name_key {
        if let Some(body_value) = params.get(key).and_then(Value::as_str) {
            let header = request_header(request, NAME_HEADER).and_then(decode_header_value);
            if header.as_deref() != Some(body_value) {
                return Err(RpcError::new(
                    jsonrpc::HEADER_MISMATCH,
                    format!(
                        "the {NAME_HEADER} header does not match params.{key} (\"{body_value}\")"
                    ),
                ));
            }
        }
    }
    match body_version {
        Some(MODERN_VERSION) => Ok(()),
        Some(other) => Err(unsupported_version(other)),
        None => Err(RpcError::new(
            jsonrpc::INVALID_PARAMS,
            "the protocol version in params._meta must be a string",
        )),
    }
}

/// Decodes a routing header value: verbatim, or `=?base64?...?=` for values that do not fit a
/// header. `None` for a malformed encoding.
pub fn decode_header_value(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(payload) => base64_decode(payload).and_then(|bytes| String::from_utf8(bytes).ok()),
        None => Some(value.to_string()),
    }
}

/// Standard base64 with padding; `None` if malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some((c - b'A') as u32),
            b'a'..=b'z' => Some((c - b'a' + 26) as u32),
            b'0'..=b'9' => Some((c - b'0' + 52) as u32),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let v = if i >= 4 - pad { 0 } else { sextet(*c)? };
            n = (n << 6) | v;
        }
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    Some(out)
}

/// The HTTP status of a 2026-07-28 error answer.
pub(super) fn modern_status(error: &RpcError) -> u16 {
    match error.code {
        jsonrpc::PARSE_ERROR
        | jsonrpc::INVALID_REQUEST
        | jsonrpc::INVALID_PARAMS
        | jsonrpc::HEADER_MISMATCH
        | jsonrpc::UNSUPPORTED_PROTOCOL_VERSION => 400,
        jsonrpc::METHOD_NOT_FOUND => 404,
        _ => 200,
    }
}

/// A result from a 2026-07-28 backend, for a handshake-era client: without the fields and
/// reserved `_meta` keys of that revision (the content is left as it is).
pub(super) fn unmark_modern_result(result: &mut Value) {
    let Value::Object(map) = result else { return };
    if map.get("resultType").and_then(Value::as_str) == Some("complete") {
        map.remove("resultType");
    }
    map.remove("ttlMs");
    map.remove("cacheScope");
    if let Some(Value::Object(meta)) = map.get_mut("_meta") {
        meta.retain(|key, _| !key.starts_with("io.modelcontextprotocol/"));
        if meta.is_empty() {
            map.remove("_meta");
        }
    }
}

/// 2026-07-28 results say they are complete; list results say how long they may be cached.
pub(super) fn mark_modern_result(method: &str, result: &mut Value, hint: CacheHint) {
    if let Value::Object(map) = result {
        map.entry("resultType").or_insert(json!("complete"));
        if matches!(
            method,
            "tools/list"
                | "resources/list"
                | "resources/templates/list"
                | "prompts/list"
                | "server/discover"
        ) {
            let scope = if hint.public { "public" } else { "private" };
            map.entry("ttlMs")
                .or_insert(json!(hint.ttl_ms.unwrap_or(0)));
            map.entry("cacheScope").or_insert(json!(scope));
        }
    }
}

/// The caching hint of an aggregated list: the shortest `ttlMs` of the backends that
/// contribute to it (0 for one that said nothing), public only when all of them said so.
pub(super) fn combine_hints(hints: impl IntoIterator<Item = CacheHint>) -> CacheHint {
    let mut combined = CacheHint {
        ttl_ms: None,
        public: false,
    };
    let mut first = true;
    for hint in hints {
        let ttl = hint.ttl_ms.unwrap_or(0);
        combined.ttl_ms = Some(combined.ttl_ms.map_or(ttl, |t| t.min(ttl)));
        combined.public = if first {
            hint.public
        } else {
            combined.public && hint.public
        };
        first = false;
    }
    combined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_checked_against_loopback_addresses_and_configured_urls() {
        let parse = |text: &str| {
            crate::config::Config::parse(text, std::path::Path::new("/"), &|_| None)
                .expect("a valid config")
        };
        let config = parse("{}");
        for host in [
            "localhost:9",
            "127.0.0.1",
            "[::1]:8080",
            "192.168.1.5:8080",
            "a.localhost",
        ] {
            assert!(host_allowed(&config, host), "{host}");
        }
        assert!(!host_allowed(&config, "evil.example:8080"));
        assert!(!host_allowed(&config, "nas.local"));
        let config = parse(
            r#"{"public_url": "https://gw.example.net/mcp", "allowed_origins": ["http://nas.local:8080"]}"#,
        );
        assert!(host_allowed(&config, "gw.example.net"));
        assert!(host_allowed(&config, "NAS.local:8080"));
        assert!(!host_allowed(&config, "evil.example"));
    }

    #[test]
    fn routing_header_values_decode() {
        assert_eq!(decode_header_value("add").as_deref(), Some("add"));
        assert_eq!(
            decode_header_value("=?base64?w6lsw6k=?=").as_deref(),
            Some("élé")
        );
        assert_eq!(decode_header_value("=?base64?!!!!?="), None);
        assert_eq!(base64_decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(base64_decode("abc"), None);
    }

    #[test]
    fn modern_results_are_marked() {
        let mut r = json!({"tools": []});
        mark_modern_result("tools/list", &mut r, CacheHint::default());
        assert_eq!(r["resultType"], "complete");
        assert_eq!(r["cacheScope"], "private");
        assert_eq!(r["ttlMs"], 0);
        let mut c = json!({"content": []});
        mark_modern_result("tools/call", &mut c, CacheHint::default());
        assert_eq!(c["resultType"], "complete");
        assert!(c.get("ttlMs").is_none());
    }

    #[test]
    fn list_hints_take_the_shortest_ttl_and_public_only_when_all_agree() {
        let public = |ttl| CacheHint {
            ttl_ms: Some(ttl),
            public: true,
        };
        let both = combine_hints([public(60_000), public(5_000)]);
        assert_eq!((both.ttl_ms, both.public), (Some(5_000), true));
        let silent = combine_hints([public(60_000), CacheHint::default()]);
        assert_eq!((silent.ttl_ms, silent.public), (Some(0), false));
        let none = combine_hints([]);
        assert_eq!((none.ttl_ms, none.public), (None, false));
    }

    #[test]
    fn unsupported_version_lists_ours() {
        let e = unsupported_version("1999-01-01");
        assert_eq!(e.code, jsonrpc::UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(
            e.data.as_ref().and_then(|d| d["supported"][0].as_str()),
            Some(MODERN_VERSION)
        );
    }
}
