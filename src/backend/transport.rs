//! The pipe to one MCP backend: how JSON-RPC messages travel, nothing about what they mean.
//!
//! A [`Transport`] moves whole JSON-RPC messages to and from one backend over stdio, legacy
//! HTTP+SSE or Streamable HTTP. The protocol logic (which revision, the handshake, retries after
//! an expired session, catalog refresh) lives one level up in `backend::mod`; a transport only
//! sends a message, hands back the matching response, and passes on everything else the backend
//! says.

use crate::mcp::param_headers::ParamHeader;
use crate::mcp::result_json::ResultJson;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What went wrong while talking to a backend.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportError {
    /// The backend could not be reached or the connection broke (refused, reset, process exited).
    Unavailable(String),
    /// No response within the allowed time.
    Timeout(Duration),
    /// The backend answered HTTP 404 to a request carrying our `Mcp-Session-Id`: the session
    /// expired and the caller must initialise again.
    SessionExpired,
    /// The backend answered something that is not valid MCP over this transport
    /// (bad HTTP status, not JSON, wrong content type, SSE stream ended without a response...).
    Protocol(String),
    /// The transport was closed by us.
    Closed,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Unavailable(why) => write!(f, "backend unreachable: {why}"),
            TransportError::Timeout(d) => {
                write!(f, "backend did not answer within {} ms", d.as_millis())
            }
            TransportError::SessionExpired => write!(f, "backend session expired"),
            TransportError::Protocol(why) => write!(f, "backend protocol error: {why}"),
            TransportError::Closed => write!(f, "backend connection closed"),
        }
    }
}

impl std::error::Error for TransportError {}

/// A backend's answer to one request.
#[derive(Debug)]
pub enum Reply {
    /// Its `result` (Streamable HTTP keeps it as the backend's text).
    Result(ResultJson),
    /// Its JSON-RPC `error` object.
    Error(Value),
}

impl Reply {
    /// From a whole response message: its `error`, else its `result` (`{}` when it has
    /// neither).
    pub fn from_message(message: Value) -> Reply {
        let empty = || Value::Object(Default::default());
        let Value::Object(mut members) = message else {
            return Reply::Result(ResultJson::Value(empty()));
        };
        // Taken out, not copied: a result can be megabytes.
        if let Some(error) = members.remove("error") {
            return Reply::Error(error);
        }
        Reply::Result(ResultJson::Value(
            members.remove("result").unwrap_or_else(empty),
        ))
    }

    /// The response message again (`result` or `error`), for tests.
    #[cfg(test)]
    pub fn message(self) -> Value {
        match self {
            Reply::Result(result) => serde_json::json!({"result": result.into_value()}),
            Reply::Error(error) => serde_json::json!({"error": error}),
        }
    }
}

/// Protocol-level facts the HTTP transport needs for its headers. Set by the session layer after
/// it has negotiated with the backend; stdio and legacy SSE ignore it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WireProtocol {
    /// The negotiated protocol revision (e.g. "2026-07-28", "2025-11-25"), sent as
    /// `MCP-Protocol-Version` on every HTTP request after negotiation. `None` before.
    pub version: Option<String>,
    /// True for the stateless 2026-07-28 revision: the HTTP transport then adds the routing headers
    /// `Mcp-Method` (always) and `Mcp-Name` (the `name` param of tools/call and prompts/get, the
    /// `uri` param of resources/read) to every request it POSTs.
    pub stateless: bool,
}

/// Messages the backend sends that are not the response to one of our requests and arrive outside
/// any open request (e.g. `notifications/tools/list_changed` on the GET stream or stdout), plus
/// the server-to-client requests (`ping`, `roots/list`...) that arrive there. The session layer
/// installs one handler per transport.
pub type UnsolicitedHandler = Arc<dyn Fn(Value) + Send + Sync>;

/// One connection to a backend. Implementations are shared between worker threads (`&self`
/// everywhere) and must allow several requests in flight at once.
pub trait Transport: Send + Sync {
    /// Sends the JSON-RPC request `request` (an object with `jsonrpc`, `id`, `method`, `params`)
    /// and blocks until the backend's response with the same `id` arrives, returning its
    /// `result` or `error` (a JSON-RPC error is *not* a `TransportError`).
    ///
    /// Every other message the backend sends in the context of this request before the response
    /// (on Streamable HTTP: the events of this POST's SSE stream; on stdio and legacy SSE:
    /// `notifications/progress` whose `progressToken` equals `progress_token`, and
    /// `notifications/cancelled` naming this request's id) is passed to `on_message` in order, as
    /// it arrives, on the calling thread.
    ///
    /// Gives up with `TransportError::Timeout` after `timeout`.
    fn request(
        &self,
        request: &Value,
        progress_token: Option<&Value>,
        timeout: Duration,
        on_message: &mut dyn FnMut(Value),
    ) -> Result<Reply, TransportError>;

    /// Sends a notification or a response (to a server-to-client request); does not wait for
    /// anything but the transport's acknowledgement (HTTP 202/200).
    fn send(&self, message: &Value) -> Result<(), TransportError>;

    /// Tells the transport what protocol was negotiated (see [`WireProtocol`]). Also resets any
    /// HTTP session id when `protocol.version` is `None` (before a fresh handshake).
    fn set_protocol(&self, protocol: WireProtocol);

    /// After a successful handshake-era initialisation: open whatever channel carries unsolicited
    /// server messages (Streamable HTTP: the optional GET SSE stream, ignored if the backend
    /// answers 405; stdio and legacy SSE already have theirs). Non-blocking: runs on a thread of
    /// the transport's own.
    fn open_listen_stream(&self);

    /// 2026-07-28: keeps the `subscriptions/listen` `request` open, replacing the one sent
    /// before (whose id was `previous_id`); its notifications go to the unsolicited handler.
    /// `wait`: return only once the backend acknowledged it (or after a few seconds).
    /// By default the request is sent on the shared stream after cancelling the previous one.
    fn open_subscription(&self, request: Value, previous_id: Option<Value>, _wait: bool) {
        if let Some(id) = previous_id {
            let cancel = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}});
            let _ = self.send(&cancel);
        }
        if let Err(e) = self.send(&request) {
            log::debug!("cannot send subscriptions/listen: {e}");
        }
    }

    /// Tells the transport which tool parameters become `Mcp-Param-*` headers (2026-07-28), by
    /// the backend's tool name. Only Streamable HTTP sends headers.
    fn set_param_headers(&self, _tools: HashMap<String, Vec<ParamHeader>>) {}

    /// False once the connection is known dead (process exited, SSE stream ended, ...). The
    /// session layer then reconnects with backoff.
    fn is_alive(&self) -> bool;

    /// Ends the connection: stdio kills the child process (after closing its stdin), HTTP sends
    /// `DELETE` for an open session (best effort), and every thread of the transport stops.
    /// Requests still waiting fail with `TransportError::Closed`.
    fn close(&self);
}

/// The first `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The `id` of a JSON-RPC request, which a transport needs to match the response.
pub(crate) fn request_id(request: &Value) -> Result<&Value, TransportError> {
    match request.get("id") {
        Some(id) if !id.is_null() => Ok(id),
        _ => Err(TransportError::Protocol("request has no id".to_owned())),
    }
}

/// Whether `request` is one a backend may answer with requests of its own or log lines.
pub(crate) fn is_interactive(request: &Value) -> bool {
    matches!(
        request.get("method").and_then(Value::as_str),
        Some("tools/call" | "prompts/get" | "resources/read" | "completion/complete")
    )
}
