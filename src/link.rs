//! The way back to the client during one call: what a backend sends the caller before the result.
//!
//! A backend handling a call may send notifications (progress, log lines) and, in the handshake
//! era, requests of its own (`sampling/createMessage`, `elicitation/create`, `roots/list`). The
//! face that took the call hands the core a [`ClientLink`] saying how to reach that very client:
//! the MCP face over the call's event stream (or, for a 2026-07-28 client, as an
//! `input_required` interim result), the OpenAI face only for notifications it ignores.

use crate::jsonrpc::{self, RpcError};
use serde_json::{json, Value};

pub use crate::jsonrpc::MISSING_CLIENT_CAPABILITY;

/// The methods a backend may ask of the client while it handles a call.
pub const CLIENT_METHODS: &[&str] = &["sampling/createMessage", "elicitation/create", "roots/list"];

/// How a call reaches back to the client that made it.
pub trait ClientLink {
    /// Passes a notification (progress with the client's own token, a log line) to the client.
    fn notify(&mut self, message: Value);

    /// Asks the client `method` (one of [`CLIENT_METHODS`]) and waits for its answer.
    fn ask(&mut self, method: &str, _params: Value) -> Result<Value, RpcError> {
        Err(RpcError::new(
            jsonrpc::METHOD_NOT_FOUND,
            format!("the client of this call cannot answer {method} (it reached mcp-gateway by a way that carries no requests back)"),
        ))
    }

    /// The client's capabilities, as a 2026-07-28 backend should see them in the request
    /// envelope.
    fn capabilities(&self) -> Value {
        json!({})
    }

    /// The log level the client asked for (2026-07-28 `_meta` `logLevel`); `None`: no log lines.
    fn log_level(&self) -> Option<String> {
        None
    }

    /// True when the client speaks 2026-07-28 itself: a backend's `input_required` result goes
    /// to it as it is. Otherwise the core asks the client each embedded request and retries.
    fn takes_input_required(&self) -> bool {
        false
    }
}

/// Any closure taking notifications is a link that cannot answer requests.
impl<F: FnMut(Value)> ClientLink for F {
    fn notify(&mut self, message: Value) {
        self(message)
    }
}

/// A request embedded in a 2026-07-28 `input_required` result, made fit for a handshake-era
/// client: a URL-mode elicitation gets the `elicitationId` 2025-11-25 requires (derived from the
/// request's key, so asking again gives the same id).
pub fn to_handshake_form(method: &str, params: &mut Value, key: &str) {
    let url_mode = params.get("mode").and_then(Value::as_str) == Some("url");
    if method == "elicitation/create" && url_mode {
        if let Some(map) = params.as_object_mut() {
            map.entry("elicitationId")
                .or_insert_with(|| json!(format!("mcp-gateway-{key}")));
        }
    }
}

/// A handshake-era backend's request, made fit for a 2026-07-28 `input_required` result:
/// without the `elicitationId` that revision dropped.
pub fn to_modern_form(method: &str, params: &mut Value) {
    if method == "elicitation/create" {
        if let Some(map) = params.as_object_mut() {
            map.remove("elicitationId");
        }
    }
}

/// Whether `capabilities` (a client's declared capabilities) allow asking it `method` with
/// `params`; the error names what is missing.
pub fn check_capability(
    capabilities: &Value,
    method: &str,
    params: &Value,
) -> Result<(), RpcError> {
    let needed: &[&str] = match method {
        "sampling/createMessage" => &["sampling"],
        "roots/list" => &["roots"],
        "elicitation/create" => {
            if params.get("mode").and_then(Value::as_str) == Some("url") {
                &["elicitation", "url"]
            } else {
                &["elicitation"]
            }
        }
        _ => {
            return Err(RpcError::new(
                jsonrpc::METHOD_NOT_FOUND,
                format!("mcp-gateway does not relay {method} to clients"),
            ))
        }
    };
    let mut at = capabilities;
    for key in needed {
        match at.get(*key) {
            Some(next) if !next.is_null() => at = next,
            _ => {
                let what = needed.join(".");
                // `{"elicitation": {"url": {}}}`: an object keyed by capability, as clients
                // declare them.
                let required = needed
                    .iter()
                    .rev()
                    .fold(json!({}), |inner, key| json!({ *key: inner }));
                return Err(RpcError::new(
                    MISSING_CLIENT_CAPABILITY,
                    format!("the client did not declare the \"{what}\" capability, so mcp-gateway cannot pass it this {method} request"),
                )
                .with_data(json!({"requiredCapabilities": required})));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_checked_per_method_and_mode() {
        let caps = json!({"sampling": {}, "elicitation": {"form": {}}});
        assert!(check_capability(&caps, "sampling/createMessage", &json!({})).is_ok());
        assert!(check_capability(&caps, "elicitation/create", &json!({"mode": "form"})).is_ok());
        let url =
            check_capability(&caps, "elicitation/create", &json!({"mode": "url"})).unwrap_err();
        assert_eq!(url.code, MISSING_CLIENT_CAPABILITY);
        assert_eq!(
            url.data,
            Some(json!({"requiredCapabilities": {"elicitation": {"url": {}}}})),
            "an object keyed by capability, as clients declare them"
        );
        let roots = check_capability(&caps, "roots/list", &json!({})).unwrap_err();
        assert!(roots.message.contains("\"roots\""), "{}", roots.message);
        let other = check_capability(&caps, "tools/call", &json!({})).unwrap_err();
        assert_eq!(other.code, jsonrpc::METHOD_NOT_FOUND);
    }

    #[test]
    fn url_elicitations_get_and_lose_their_id_between_eras() {
        let mut modern = json!({"mode": "url", "message": "sign in", "url": "https://x.example"});
        to_handshake_form("elicitation/create", &mut modern, "k1");
        assert_eq!(modern["elicitationId"], "mcp-gateway-k1");
        let mut form = json!({"mode": "form", "message": "name?"});
        to_handshake_form("elicitation/create", &mut form, "k1");
        assert!(form.get("elicitationId").is_none());
        to_modern_form("elicitation/create", &mut modern);
        assert!(modern.get("elicitationId").is_none());
    }

    #[test]
    fn a_closure_is_a_link_that_refuses_requests() {
        let mut seen = Vec::new();
        let mut closure = |m: Value| seen.push(m);
        let link: &mut dyn ClientLink = &mut closure;
        link.notify(json!({"method": "x"}));
        assert!(link.ask("roots/list", json!({})).is_err());
        assert!(!link.takes_input_required());
        assert_eq!(seen.len(), 1);
    }
}
