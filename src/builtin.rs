//! The gateway's own tools, served under the reserved `gateway` prefix so that the MCP face has
//! something real to offer before any backend is configured.

use crate::gateway::{Gateway, Principal};
use crate::jsonrpc::{self, RpcError};
use serde_json::{json, Value};

/// Name of the status tool.
pub const STATUS_TOOL: &str = "gateway__status";

/// Definitions of the built-in tools, as `tools/list` shows them.
pub fn tool_definitions() -> Vec<Value> {
    vec![json!({
        "name": STATUS_TOOL,
        "title": "Gateway status",
        "description": "Reports the MCP gateway's backends: transport, state (up, down, starting), number of tools, last error and last call latency.",
        "inputSchema": {"type": "object", "properties": {}, "additionalProperties": false},
        "annotations": {"readOnlyHint": true, "openWorldHint": false},
    })]
}

/// Runs built-in tool `name`.
pub fn call(
    gateway: &Gateway,
    principal: &Principal,
    name: &str,
    _arguments: &Value,
) -> Result<Value, RpcError> {
    match name {
        STATUS_TOOL => {
            let status = gateway.status_json(principal);
            Ok(json!({
                "content": [{"type": "text", "text": status_text(&status)}],
                "structuredContent": status,
                "isError": false,
            }))
        }
        other => Err(RpcError::new(
            jsonrpc::INVALID_PARAMS,
            format!("unknown tool \"{other}\""),
        )),
    }
}

/// A short human summary of a status report.
pub fn status_text(status: &Value) -> String {
    let mut lines = vec![format!(
        "mcp-gateway {} up {} s, {} tools in total.",
        status["version"].as_str().unwrap_or("?"),
        status["uptime_secs"].as_u64().unwrap_or(0),
        status["tools"].as_u64().unwrap_or(0)
    )];
    let backends = status["backends"].as_array().cloned().unwrap_or_default();
    if backends.is_empty() {
        lines.push(
            "No backends are configured yet: add them under \"mcpServers\" in the config file."
                .to_string(),
        );
    }
    for b in backends {
        let mut line = format!(
            "- {} ({}): {}, {} tools",
            b["name"].as_str().unwrap_or("?"),
            b["transport"].as_str().unwrap_or("?"),
            b["state"].as_str().unwrap_or("?"),
            b["tools"].as_u64().unwrap_or(0)
        );
        if let Some(ms) = b["last_latency_ms"].as_u64() {
            line.push_str(&format!(", last call {ms} ms"));
        }
        if let Some(err) = b["last_error"].as_str() {
            line.push_str(&format!(", last error: {err}"));
        }
        lines.push(line);
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_names_backends_and_errors() {
        let status = json!({"version": "1.0", "uptime_secs": 5, "tools": 3, "backends": [
            {"name": "ha", "transport": "http", "state": "down", "tools": 0, "last_error": "refused", "last_latency_ms": null}
        ]});
        let text = status_text(&status);
        assert!(
            text.contains("ha (http): down, 0 tools, last error: refused"),
            "{text}"
        );
        let empty = status_text(&json!({"backends": []}));
        assert!(empty.contains("mcpServers"));
    }
}
