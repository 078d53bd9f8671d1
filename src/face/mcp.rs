//! The MCP face at `/mcp`: Streamable HTTP for both protocol eras on one URL.
//!
//! - **Stateless 2026-07-28**: every POST is self-contained; the `_meta` envelope and the
//!   `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers are checked against the body;
//!   `server/discover` tells the client what we offer; results carry `resultType` (and lists
//!   `ttlMs` and `cacheScope`).
//! - **Handshake era** (2025-11-25, 2025-06-18, 2025-03-26): `initialize` opens a session whose
//!   `Mcp-Session-Id` later requests carry; GET opens the server-to-client stream that carries
//!   `list_changed` notifications; DELETE ends the session.
//!
//! A POST is answered with JSON, or with an SSE stream as soon as the call produces a
//! notification (progress, log) before its result.

use crate::backend::{
    CallOptions, HANDSHAKE_VERSIONS, META_CLIENT_CAPABILITIES, META_CLIENT_INFO,
    META_PROTOCOL_VERSION, META_SERVER_INFO, MODERN_VERSION,
};
use crate::catalog::{self, ListKind as CatalogList, Route};
use crate::gateway::{Gateway, ListKind, Principal};
use crate::http_util::{request_header, respond_empty, respond_json, Responder, SseStream};
use crate::jsonrpc::{self, Message, RpcError};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tiny_http::{Method, Request};

const SESSION_HEADER: &str = "Mcp-Session-Id";
/// `_meta` key naming the `subscriptions/listen` request a notification belongs to.
const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
const VERSION_HEADER: &str = "MCP-Protocol-Version";
const METHOD_HEADER: &str = "Mcp-Method";
const NAME_HEADER: &str = "Mcp-Name";
const SESSION_IDLE_LIMIT: Duration = Duration::from_secs(3600);
const MAX_SESSIONS: usize = 10_000;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(25);

/// Which era a request belongs to.
#[derive(Debug, Clone, PartialEq)]
enum Era {
    /// 2026-07-28, no session.
    Modern,
    /// A handshake-era session.
    Session { id: String },
    /// No session and no 2026-07-28 envelope (curl and simple scripts): answered like the
    /// handshake era.
    Plain,
}

struct Session {
    protocol_version: String,
    last_seen: Instant,
}

struct OpenStream {
    /// The handshake-era session of a GET stream; empty for a 2026-07-28 listen stream.
    session: String,
    stream: SseStream,
    /// Which list changes it wants: tools, resources, prompts.
    wants: [bool; 3],
    /// The id of the `subscriptions/listen` request, stamped on each notification.
    subscription_id: Option<Value>,
}

/// The MCP face: its sessions and open GET streams.
pub struct McpFace {
    gateway: Arc<Gateway>,
    sessions: Mutex<HashMap<String, Session>>,
    streams: Mutex<Vec<OpenStream>>,
}

impl McpFace {
    /// Creates the face and hooks it to the gateway's list changes.
    pub fn new(gateway: Arc<Gateway>) -> Arc<McpFace> {
        let face = Arc::new(McpFace {
            gateway: Arc::clone(&gateway),
            sessions: Mutex::new(HashMap::new()),
            streams: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&face);
        gateway.on_lists_changed(Box::new(move |kinds| {
            if let Some(face) = weak.upgrade() {
                face.broadcast_list_changed(kinds);
            }
        }));
        let weak = Arc::downgrade(&face);
        let _ = std::thread::Builder::new()
            .name("mcp-keepalive".into())
            .spawn(move || loop {
                std::thread::sleep(KEEPALIVE_EVERY);
                match weak.upgrade() {
                    Some(face) => face.housekeeping(),
                    None => return,
                }
            });
        face
    }

    /// Answers one request to `/mcp`. `body` has been read (within the size limit) and the caller
    /// authenticated as `principal`.
    pub fn handle(&self, request: Request, body: Vec<u8>, principal: &Principal) {
        if let Some(origin) = request_header(&request, "Origin") {
            if !self.gateway.config.origin_allowed(origin) {
                log::warn!("refused a request from origin {origin}");
                let error = RpcError::new(jsonrpc::INVALID_REQUEST, format!("origin {origin} is not allowed (add it to \"allowed_origins\" in the config)"));
                respond_json(
                    request,
                    403,
                    &jsonrpc::error_response(&Value::Null, &error),
                    &[],
                );
                return;
            }
        }
        match request.method() {
            Method::Post => self.handle_post(request, &body, principal),
            Method::Get => self.handle_get(request),
            Method::Delete => self.handle_delete(request),
            _ => respond_empty(
                request,
                405,
                &[("Allow".into(), "GET, POST, DELETE".into())],
            ),
        }
    }

    fn handle_post(&self, request: Request, body: &[u8], principal: &Principal) {
        let value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let error = RpcError::new(
                    jsonrpc::PARSE_ERROR,
                    format!("the request body is not valid JSON: {e}"),
                );
                return respond_json(
                    request,
                    400,
                    &jsonrpc::error_response(&Value::Null, &error),
                    &[],
                );
            }
        };
        if value.is_array() {
            let error = RpcError::new(
                jsonrpc::INVALID_REQUEST,
                "JSON-RPC batches are not supported: send one message per POST",
            );
            return respond_json(
                request,
                400,
                &jsonrpc::error_response(&Value::Null, &error),
                &[],
            );
        }
        let message = match jsonrpc::classify(&value) {
            Ok(m) => m,
            Err(error) => {
                let id = value
                    .get("id")
                    .filter(|id| id.is_string() || id.is_number())
                    .cloned()
                    .unwrap_or(Value::Null);
                return respond_json(request, 400, &jsonrpc::error_response(&id, &error), &[]);
            }
        };
        let session_header = request_header(&request, SESSION_HEADER).map(str::to_string);
        match message {
            Message::Response { .. } => respond_empty(request, 202, &[]),
            Message::Notification { method, params } => {
                if let Some(id) = &session_header {
                    if !self.touch_session(id) {
                        return self.unknown_session(request);
                    }
                }
                if method == "notifications/cancelled" {
                    if let Some(request_id) = params.get("requestId") {
                        let key = cancel_key(
                            session_header.as_deref().unwrap_or(&principal.name),
                            request_id,
                        );
                        self.gateway
                            .cancel(&key, params.get("reason").and_then(Value::as_str));
                    }
                }
                respond_empty(request, 202, &[])
            }
            Message::Request { id, method, params } => {
                if method == "initialize" {
                    return self.initialize(request, &id, &params);
                }
                let era = match self.era_of(&request, session_header.as_deref(), &method, &params) {
                    Ok(Some(era)) => era,
                    Ok(None) => return self.unknown_session(request),
                    Err(error) => {
                        let status = modern_status(&error);
                        return respond_json(
                            request,
                            status,
                            &jsonrpc::error_response(&id, &error),
                            &[],
                        );
                    }
                };
                let can_stream = request_header(&request, "Accept")
                    .map(|a| a.contains("text/event-stream"))
                    .unwrap_or(false);
                if era == Era::Modern && method == "subscriptions/listen" {
                    return self.listen(request, id, &params, can_stream);
                }
                let mut responder = Responder::new(request, can_stream, Vec::new());
                let key_owner = match &era {
                    Era::Session { id } => id.clone(),
                    _ => principal.name.clone(),
                };
                let outcome = self.dispatch(
                    &era,
                    principal,
                    &method,
                    params,
                    cancel_key(&key_owner, &id),
                    &mut responder,
                );
                let (status, response) = match outcome {
                    Ok(mut result) => {
                        if era == Era::Modern {
                            mark_modern_result(&method, &mut result);
                        }
                        (200, jsonrpc::response(&id, result))
                    }
                    Err(error) => {
                        let status = if era == Era::Modern {
                            modern_status(&error)
                        } else {
                            200
                        };
                        (status, jsonrpc::error_response(&id, &error))
                    }
                };
                responder.finish(status, &response);
            }
        }
    }

    /// Works out the era of a non-initialize request; `Ok(None)` for an unknown session.
    fn era_of(
        &self,
        request: &Request,
        session: Option<&str>,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<Option<Era>, RpcError> {
        if let Some(id) = session {
            if let Some(v) = request_header(request, VERSION_HEADER) {
                if !HANDSHAKE_VERSIONS.contains(&v) {
                    return Err(unsupported_version(v));
                }
            }
            return Ok(self
                .touch_session(id)
                .then(|| Era::Session { id: id.to_string() }));
        }
        let version_header = request_header(request, VERSION_HEADER);
        let meta = params.get("_meta").and_then(Value::as_object);
        let has_envelope = meta
            .map(|m| m.contains_key(META_PROTOCOL_VERSION))
            .unwrap_or(false);
        if version_header == Some(MODERN_VERSION) || has_envelope {
            check_modern_request(request, method, params)?;
            return Ok(Some(Era::Modern));
        }
        if let Some(v) = version_header {
            if !HANDSHAKE_VERSIONS.contains(&v) {
                return Err(unsupported_version(v));
            }
        }
        Ok(Some(Era::Plain))
    }

    fn touch_session(&self, id: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get_mut(id) {
            Some(s) => {
                s.last_seen = Instant::now();
                true
            }
            None => false,
        }
    }

    fn unknown_session(&self, request: Request) {
        let error = RpcError::new(
            jsonrpc::INVALID_REQUEST,
            "unknown or expired Mcp-Session-Id: send initialize again to start a new session",
        );
        respond_json(
            request,
            404,
            &jsonrpc::error_response(&Value::Null, &error),
            &[],
        );
    }

    fn initialize(&self, request: Request, id: &Value, params: &Map<String, Value>) {
        let requested = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let version = if HANDSHAKE_VERSIONS.contains(&requested) {
            requested
        } else {
            HANDSHAKE_VERSIONS[0]
        };
        let session_id = match crate::tokens::generate_token() {
            Ok(t) => t
                .trim_start_matches("mgw_")
                .chars()
                .take(32)
                .collect::<String>(),
            Err(e) => {
                let error = RpcError::new(
                    jsonrpc::INTERNAL_ERROR,
                    format!("cannot create a session: {e}"),
                );
                return respond_json(request, 500, &jsonrpc::error_response(id, &error), &[]);
            }
        };
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if sessions.len() >= MAX_SESSIONS {
                if let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_seen)
                    .map(|(k, _)| k.clone())
                {
                    sessions.remove(&oldest);
                }
            }
            sessions.insert(
                session_id.clone(),
                Session {
                    protocol_version: version.to_string(),
                    last_seen: Instant::now(),
                },
            );
        }
        let client = params
            .get("clientInfo")
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("unknown client");
        log::info!("MCP session started by {client} (protocol {version})");
        let result = json!({
            "protocolVersion": version,
            "capabilities": capabilities(),
            "serverInfo": server_info(),
            "instructions": self.instructions(),
        });
        respond_json(
            request,
            200,
            &jsonrpc::response(id, result),
            &[(SESSION_HEADER.to_string(), session_id)],
        );
    }

    fn instructions(&self) -> String {
        let names: Vec<&str> = self.gateway.backends.iter().map(|b| b.name()).collect();
        if names.is_empty() {
            "mcp-gateway with no backends configured yet; the gateway__status tool reports its state.".to_string()
        } else {
            format!("mcp-gateway aggregating the MCP servers {}. Tool and prompt names are <server>__<name>; gateway__status reports which servers are up.", names.join(", "))
        }
    }

    fn dispatch(
        &self,
        era: &Era,
        principal: &Principal,
        method: &str,
        params: Map<String, Value>,
        cancel_key: String,
        responder: &mut Responder,
    ) -> Result<Value, RpcError> {
        let page_size = self.gateway.config.limits.page_size;
        let catalog = self.gateway.catalog();
        let cursor = params.get("cursor").and_then(Value::as_str);
        let list = |items: &[Value], key: &str| -> Result<Value, RpcError> {
            let (page, next) = catalog::page(items, cursor, page_size)
                .map_err(|m| RpcError::new(jsonrpc::INVALID_PARAMS, m))?;
            let mut result = json!({ key: page });
            if let Some(next) = next {
                result["nextCursor"] = json!(next);
            }
            Ok(result)
        };
        let progress_token = params
            .get("_meta")
            .and_then(|m| m.get("progressToken"))
            .cloned();
        let options = CallOptions {
            progress_token,
            cancel_key: Some(cancel_key),
        };
        let mut notify = |message: Value| responder.notify(&message);
        let allowed = |backend: usize| self.gateway.allows(principal, backend);
        let visible = |kind: CatalogList| match principal.servers {
            None => catalog.visible(kind, &|_| true),
            Some(_) => catalog.visible(kind, &allowed),
        };
        match method {
            "server/discover" => Ok(json!({
                "supportedVersions": [MODERN_VERSION],
                "capabilities": capabilities(),
                "instructions": self.instructions(),
                "_meta": {META_SERVER_INFO: server_info()},
            })),
            "ping" => Ok(json!({})),
            "tools/list" => list(&visible(CatalogList::Tools), "tools"),
            "resources/list" => list(&visible(CatalogList::Resources), "resources"),
            "resources/templates/list" => {
                list(&visible(CatalogList::Templates), "resourceTemplates")
            }
            "prompts/list" => list(&visible(CatalogList::Prompts), "prompts"),
            "logging/setLevel" if *era != Era::Modern => Ok(json!({})),
            "tools/call" => {
                let name = required_str(&params, "name", method)?;
                let arguments = match params.get("arguments") {
                    None | Some(Value::Null) => json!({}),
                    Some(a @ Value::Object(_)) => a.clone(),
                    Some(_) => {
                        return Err(RpcError::new(
                            jsonrpc::INVALID_PARAMS,
                            "tools/call: \"arguments\" must be an object",
                        ))
                    }
                };
                self.gateway
                    .call_tool(principal, name, arguments, options, &mut notify)
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let uri = required_str(&params, "uri", method)?;
                let owner = catalog
                    .resource_owner(uri)
                    .filter(|b| allowed(*b))
                    .ok_or_else(|| {
                        RpcError::new(
                            jsonrpc::INVALID_PARAMS,
                            format!(
                                "unknown resource \"{uri}\" (resources/list shows what is offered)"
                            ),
                        )
                        .with_data(json!({"uri": uri}))
                    })?;
                self.gateway
                    .forward(owner, method, forwardable(params), options, &mut notify)
            }
            "prompts/get" => {
                let name = required_str(&params, "name", method)?;
                match catalog.prompt(name) {
                    Some(Route::Backend { backend, original }) if allowed(*backend) => {
                        let mut p = forwardable(params.clone());
                        p.insert("name".into(), json!(original));
                        self.gateway
                            .forward(*backend, method, p, options, &mut notify)
                    }
                    _ => Err(RpcError::new(
                        jsonrpc::INVALID_PARAMS,
                        format!("unknown prompt \"{name}\" (prompts/list shows what is offered)"),
                    )
                    .with_data(json!({"name": name}))),
                }
            }
            "completion/complete" => {
                let reference = params.get("ref").cloned().unwrap_or(Value::Null);
                let mut p = forwardable(params.clone());
                let target = match reference.get("type").and_then(Value::as_str) {
                    Some("ref/prompt") => match reference
                        .get("name")
                        .and_then(Value::as_str)
                        .and_then(|n| catalog.prompt(n))
                    {
                        Some(Route::Backend { backend, original }) if allowed(*backend) => {
                            p.insert(
                                "ref".into(),
                                json!({"type": "ref/prompt", "name": original}),
                            );
                            Some(*backend)
                        }
                        _ => None,
                    },
                    Some("ref/resource") => {
                        reference.get("uri").and_then(Value::as_str).and_then(|u| {
                            catalog
                                .template_owner(u)
                                .or_else(|| catalog.resource_owner(u))
                        })
                    }
                    _ => None,
                };
                match target.filter(|b| allowed(*b)) {
                    Some(backend) => self.gateway.forward(backend, method, p, options, &mut notify),
                    None => Err(RpcError::new(jsonrpc::INVALID_PARAMS, "completion/complete: \"ref\" names no prompt or resource template of this gateway")),
                }
            }
            _ => Err(RpcError::new(
                jsonrpc::METHOD_NOT_FOUND,
                format!("method \"{method}\" is not supported by mcp-gateway"),
            )
            .with_data(json!({"method": method}))),
        }
    }

    fn handle_get(&self, request: Request) {
        let Some(session) = request_header(&request, SESSION_HEADER).map(str::to_string) else {
            return respond_empty(request, 405, &[("Allow".into(), "POST".into())]);
        };
        if !self.touch_session(&session) {
            return self.unknown_session(request);
        }
        let accepts = request_header(&request, "Accept")
            .map(|a| a.contains("text/event-stream"))
            .unwrap_or(false);
        if !accepts {
            let error = RpcError::new(
                jsonrpc::INVALID_REQUEST,
                "GET /mcp opens an event stream: send Accept: text/event-stream",
            );
            return respond_json(
                request,
                406,
                &jsonrpc::error_response(&Value::Null, &error),
                &[],
            );
        }
        match SseStream::start(request, &[(SESSION_HEADER.to_string(), session.clone())]) {
            Ok(mut stream) => {
                if stream.comment("stream open").is_ok() {
                    self.streams
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(OpenStream {
                            session,
                            stream,
                            wants: [true; 3],
                            subscription_id: None,
                        });
                }
            }
            Err(e) => log::debug!("cannot open the event stream: {e}"),
        }
    }

    fn handle_delete(&self, request: Request) {
        let Some(session) = request_header(&request, SESSION_HEADER).map(str::to_string) else {
            let error = RpcError::new(
                jsonrpc::INVALID_REQUEST,
                "DELETE /mcp needs the Mcp-Session-Id of the session to end",
            );
            return respond_json(
                request,
                400,
                &jsonrpc::error_response(&Value::Null, &error),
                &[],
            );
        };
        let removed = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session);
        match removed {
            Some(s) => {
                self.close_streams(|open| open.session == session);
                log::info!("MCP session ended (protocol {})", s.protocol_version);
                respond_empty(request, 200, &[])
            }
            None => self.unknown_session(request),
        }
    }

    fn close_streams(&self, which: impl Fn(&OpenStream) -> bool) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let (closing, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut *streams)
            .into_iter()
            .partition(|s| which(s));
        *streams = keep;
        drop(streams);
        for open in closing {
            let _ = open.stream.finish();
        }
    }

    /// Sends `notifications/<kind>/list_changed` to every open stream that wants it.
    pub fn broadcast_list_changed(&self, kinds: &[ListKind]) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain_mut(|open| {
            kinds.iter().all(|kind| {
                let (slot, method) = match kind {
                    ListKind::Tools => (0, "notifications/tools/list_changed"),
                    ListKind::Resources => (1, "notifications/resources/list_changed"),
                    ListKind::Prompts => (2, "notifications/prompts/list_changed"),
                };
                if !open.wants[slot] {
                    return true;
                }
                let params = match &open.subscription_id {
                    Some(id) => json!({"_meta": {META_SUBSCRIPTION_ID: id}}),
                    None => json!({}),
                };
                open.stream
                    .send(&jsonrpc::notification(method, params))
                    .is_ok()
            })
        });
    }

    /// 2026-07-28 `subscriptions/listen`: acknowledge the list-change kinds we honour, then keep
    /// the stream open (on the keep-alive thread, not a worker) and send them as they happen.
    fn listen(&self, request: Request, id: Value, params: &Map<String, Value>, can_stream: bool) {
        if !can_stream {
            let error = RpcError::new(
                jsonrpc::INVALID_REQUEST,
                "subscriptions/listen answers with an event stream: send Accept: text/event-stream",
            );
            return respond_json(request, 400, &jsonrpc::error_response(&id, &error), &[]);
        }
        let asked = params.get("notifications").cloned().unwrap_or(Value::Null);
        let wants = [
            "toolsListChanged",
            "resourcesListChanged",
            "promptsListChanged",
        ]
        .map(|k| asked.get(k).and_then(Value::as_bool) == Some(true));
        let mut honoured = Map::new();
        for (key, yes) in [
            "toolsListChanged",
            "resourcesListChanged",
            "promptsListChanged",
        ]
        .iter()
        .zip(wants)
        {
            if yes {
                honoured.insert(key.to_string(), json!(true));
            }
        }
        let mut stream = match SseStream::start(request, &[]) {
            Ok(s) => s,
            Err(e) => return log::debug!("cannot open the listen stream: {e}"),
        };
        let ack = jsonrpc::notification(
            "notifications/subscriptions/acknowledged",
            json!({"notifications": honoured, "_meta": {META_SUBSCRIPTION_ID: id}}),
        );
        if stream.send(&ack).is_ok() {
            self.streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(OpenStream {
                    session: String::new(),
                    stream,
                    wants,
                    subscription_id: Some(id),
                });
        }
    }

    /// Keep-alives on open streams; forgets idle sessions.
    fn housekeeping(&self) {
        let expired: Vec<String> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let expired: Vec<String> = sessions
                .iter()
                .filter(|(_, s)| s.last_seen.elapsed() > SESSION_IDLE_LIMIT)
                .map(|(k, _)| k.clone())
                .collect();
            for id in &expired {
                sessions.remove(id);
            }
            expired
        };
        if !expired.is_empty() {
            self.close_streams(|open| expired.contains(&open.session));
        }
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain_mut(|open| open.stream.comment("keep-alive").is_ok());
    }

    /// Number of open sessions (for tests and metrics).
    pub fn session_count(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

fn cancel_key(owner: &str, request_id: &Value) -> String {
    format!("{owner}:{}", jsonrpc::id_key(request_id))
}

fn required_str<'a>(
    params: &'a Map<String, Value>,
    key: &str,
    method: &str,
) -> Result<&'a str, RpcError> {
    params.get(key).and_then(Value::as_str).ok_or_else(|| {
        RpcError::new(
            jsonrpc::INVALID_PARAMS,
            format!("{method}: params.{key} must be a string"),
        )
    })
}

/// The params a client sent, without the parts the backend gets from us instead (the
/// 2026-07-28 envelope and the progress token, which the backend layer sets itself).
fn forwardable(mut params: Map<String, Value>) -> Map<String, Value> {
    if let Some(Value::Object(meta)) = params.get_mut("_meta") {
        meta.remove(META_PROTOCOL_VERSION);
        meta.remove(META_CLIENT_INFO);
        meta.remove(META_CLIENT_CAPABILITIES);
        meta.remove("progressToken");
        if meta.is_empty() {
            params.remove("_meta");
        }
    }
    params
}

fn capabilities() -> Value {
    json!({
        "tools": {"listChanged": true},
        "resources": {"listChanged": true, "subscribe": false},
        "prompts": {"listChanged": true},
        "completions": {},
        "logging": {},
    })
}

fn server_info() -> Value {
    json!({"name": "mcp-gateway", "title": "MCP gateway", "version": env!("CARGO_PKG_VERSION")})
}

fn unsupported_version(requested: &str) -> RpcError {
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
fn check_modern_request(
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
fn modern_status(error: &RpcError) -> u16 {
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

/// 2026-07-28 results say they are complete; list results say how long they may be cached.
fn mark_modern_result(method: &str, result: &mut Value) {
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
            map.entry("ttlMs").or_insert(json!(0));
            map.entry("cacheScope").or_insert(json!("private"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        mark_modern_result("tools/list", &mut r);
        assert_eq!(r["resultType"], "complete");
        assert_eq!(r["cacheScope"], "private");
        let mut c = json!({"content": []});
        mark_modern_result("tools/call", &mut c);
        assert_eq!(c["resultType"], "complete");
        assert!(c.get("ttlMs").is_none());
    }

    #[test]
    fn forwarded_params_lose_the_envelope_only() {
        let params = json!({"uri": "x://y", "_meta": {META_PROTOCOL_VERSION: "2026-07-28", META_CLIENT_CAPABILITIES: {}, "progressToken": 1, "custom": true}});
        let Value::Object(map) = params else {
            unreachable!()
        };
        let out = forwardable(map);
        assert_eq!(
            Value::Object(out),
            json!({"uri": "x://y", "_meta": {"custom": true}})
        );
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
