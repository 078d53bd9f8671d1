//! The wire rules of `/mcp`: the 2026-07-28 request checks (envelope, routing headers, versions),
//! routing header value encoding, the `Host` guard against DNS rebinding, and the fields a result
//! gains or loses between the protocol eras.

use crate::http_util::request_header;
use crate::jsonrpc::{self, RpcError};
use crate::mcp::headers::decode_value as decode_header_value;
use crate::mcp::{
    name_param, HANDSHAKE_VERSIONS, META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, METHOD_HEADER,
    MODERN_VERSION, MODERN_VERSIONS, NAME_HEADER, VERSION_HEADER,
};
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

/// A -32022 error for `requested`. A 2026-07-28 request is told the versions of that revision,
/// the same list `server/discover` gives; a handshake-era request (a session's header) the
/// handshake versions.
pub(super) fn unsupported_version(requested: &str, modern: bool) -> RpcError {
    let supported: Vec<&str> = if modern {
        MODERN_VERSIONS.to_vec()
    } else {
        HANDSHAKE_VERSIONS.to_vec()
    };
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
    if let Some(key) = name_param(method) {
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
        Some(other) => Err(unsupported_version(other, true)),
        None => Err(RpcError::new(
            jsonrpc::INVALID_PARAMS,
            "the protocol version in params._meta must be a string",
        )),
    }
}

/// The HTTP status of a 2026-07-28 error answer.
pub(super) fn modern_status(error: &RpcError) -> u16 {
    match error.code {
        jsonrpc::PARSE_ERROR
        | jsonrpc::INVALID_REQUEST
        | jsonrpc::INVALID_PARAMS
        | jsonrpc::HEADER_MISMATCH
        | jsonrpc::UNSUPPORTED_PROTOCOL_VERSION
        | jsonrpc::MISSING_CLIENT_CAPABILITY => 400,
        jsonrpc::METHOD_NOT_FOUND => 404,
        _ => 200,
    }
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
    }

    #[test]
    fn unsupported_version_lists_ours() {
        let e = unsupported_version("1999-01-01", true);
        assert_eq!(e.code, jsonrpc::UNSUPPORTED_PROTOCOL_VERSION);
        let data = e.data.expect("data");
        assert_eq!(data["supported"], json!(crate::mcp::MODERN_VERSIONS));
        assert_eq!(data["requested"], "1999-01-01");
        let handshake = unsupported_version("1999-01-01", false).data.expect("data");
        assert_eq!(handshake["supported"], json!(HANDSHAKE_VERSIONS));
    }
}
