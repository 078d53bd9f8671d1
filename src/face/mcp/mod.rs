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
//! notification (progress, log) or a question for the client before its result (see
//! [`crate::face::answer`], which also makes handshake-era streams resumable).
//!
//! This file routes requests, keeps sessions, streams and subscriptions; `ask` carries a
//! backend's questions to the client in either era; `wire` holds the header checks and the
//! per-era shape of results.

mod ask;
mod wire;

use ask::{level_rank, CallLink, Parked};
use wire::{check_modern_request, host_allowed, modern_status, unsupported_version};

use crate::backend::CallOptions;
use crate::face::answer::{Answer, EventLogs};
use crate::gateway::{Gateway, ListKind, Principal};
use crate::http_util::{request_header, respond_empty, respond_json, QueuedStream, SseStream};
use crate::jsonrpc::{self, required_str, Message, RpcError};
use crate::mcp::param_headers;
use crate::mcp::result_json::ResultJson;
use crate::mcp::results::{combine_hints, mark_modern_result, unmark_modern_result, CacheHint};
use crate::mcp::{
    HANDSHAKE_VERSIONS, META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL,
    META_PROTOCOL_VERSION, META_SERVER_INFO, MODERN_VERSION, MODERN_VERSIONS, SESSION_HEADER,
    VERSION_HEADER,
};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tiny_http::{Method, Request};

/// `_meta` key naming the `subscriptions/listen` request a notification belongs to.
use crate::mcp::META_SUBSCRIPTION_ID;
const SESSION_IDLE_LIMIT: Duration = Duration::from_secs(3600);
const MAX_SESSIONS: usize = 10_000;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(25);
/// Resource updates held per session while it has no GET stream.
const MAX_HELD_NOTICES: usize = 64;
/// `requestState` of the `input_required` results mcp-gateway makes itself (for a handshake-era
/// backend that asked a 2026-07-28 client something).
const PARKED_STATE_PREFIX: &str = "mcp-gateway/parked/";
/// The key of the one request in such a result.
const PARKED_INPUT_KEY: &str = "input";
/// Log levels, most verbose first (RFC 5424 names, as MCP uses them).
const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

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
    /// What the client declared at `initialize`: which requests may be passed to it.
    capabilities: Value,
    /// Set by `logging/setLevel`; log lines below it are not passed on.
    log_level: Option<String>,
    /// Resource URIs it subscribed to.
    subscriptions: HashSet<String>,
    /// Resource updates that came while the session had no GET stream open (the newest
    /// [`MAX_HELD_NOTICES`]); sent when it opens one.
    held: VecDeque<Value>,
}

struct OpenStream {
    /// The handshake-era session of a GET stream; empty for a 2026-07-28 listen stream.
    session: String,
    /// Written by a thread of its own: queuing an event never waits for the client.
    stream: QueuedStream,
    /// Which list changes it wants, indexed by [`ListKind::index`].
    wants: [bool; 4],
    /// The id of the `subscriptions/listen` request, stamped on each notification.
    subscription_id: Option<Value>,
    /// Resource URIs a `subscriptions/listen` stream asked updates for.
    resources: Vec<String>,
}

/// The MCP face: its sessions and open GET streams.
pub struct McpFace {
    gateway: Arc<Gateway>,
    sessions: Mutex<HashMap<String, Session>>,
    streams: Mutex<Vec<OpenStream>>,
    /// Handshake-era POST streams, kept for resumption.
    logs: Arc<EventLogs>,
    /// Requests passed to handshake-era clients, waiting for the answer, by `<session>|<id>`;
    /// with the cancel key of the call that asked.
    awaiting: Mutex<HashMap<String, (String, Sender<Value>)>>,
    /// How long a request passed to a client (sampling, elicitation, roots) waits for the
    /// answer: as long as the longest call may take.
    answer_timeout: Duration,
    /// Calls waiting for a 2026-07-28 client's retry, by token.
    parked: Mutex<HashMap<String, Parked>>,
    next_request: AtomicU64,
}

impl McpFace {
    /// Creates the face and hooks it to the gateway's list changes.
    pub fn new(gateway: Arc<Gateway>) -> Arc<McpFace> {
        let face = Arc::new(McpFace {
            gateway: Arc::clone(&gateway),
            sessions: Mutex::new(HashMap::new()),
            streams: Mutex::new(Vec::new()),
            logs: Arc::new(EventLogs::default()),
            awaiting: Mutex::new(HashMap::new()),
            answer_timeout: gateway
                .config()
                .servers
                .iter()
                .map(|s| s.timeout)
                .fold(gateway.config().limits.call_timeout, Duration::max),
            parked: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
        });
        let weak = Arc::downgrade(&face);
        gateway.on_lists_changed(Box::new(move |kinds| {
            if let Some(face) = weak.upgrade() {
                face.broadcast_list_changed(kinds);
            }
        }));
        let weak = Arc::downgrade(&face);
        gateway.on_backend_notice(Box::new(move |backend, message| {
            if let Some(face) = weak.upgrade() {
                face.backend_notice(backend, message);
            }
        }));
        let weak = Arc::downgrade(&face);
        let _ = std::thread::Builder::new()
            .name("mcp-keepalive".into())
            .spawn(move || {
                crate::resilient::restart_on_panic("the MCP face's keep-alive", || loop {
                    std::thread::sleep(KEEPALIVE_EVERY);
                    match weak.upgrade() {
                        Some(face) => face.housekeeping(),
                        None => return,
                    }
                })
            });
        face
    }

    /// Answers one request to `/mcp`. `body` has been read (within the size limit) and the caller
    /// authenticated as `principal`.
    pub fn handle(&self, request: Request, body: Vec<u8>, principal: &Principal) {
        if let Some(refusal) = self.guard_refusal(&request) {
            log::warn!("refused a request: {refusal}");
            let error = RpcError::new(jsonrpc::INVALID_REQUEST, refusal);
            let body = jsonrpc::error_response(&Value::Null, &error);
            return respond_json(request, 403, &body, &[]);
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

    /// Why the DNS-rebinding guards refuse `request` (its `Host` or its browser `Origin`), if
    /// they do.
    fn guard_refusal(&self, request: &Request) -> Option<String> {
        let config = &*self.gateway.config();
        if let Some(host) = request_header(request, "Host") {
            if !host_allowed(config, host) {
                return Some(format!("host {host} is not allowed (set \"public_url\" to the URL clients use, or add that origin to \"allowed_origins\" in the config)"));
            }
        }
        match request_header(request, "Origin") {
            Some(origin) if !config.origin_allowed(origin) => Some(format!(
                "origin {origin} is not allowed (add it to \"allowed_origins\" in the config)"
            )),
            _ => None,
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
        let id_if_refused = value
            .get("id")
            .filter(|id| id.is_string() || id.is_number())
            .cloned()
            .unwrap_or(Value::Null);
        let message = match jsonrpc::classify(value) {
            Ok(m) => m,
            Err(error) => {
                return respond_json(
                    request,
                    400,
                    &jsonrpc::error_response(&id_if_refused, &error),
                    &[],
                );
            }
        };
        let session_header = request_header(&request, SESSION_HEADER).map(str::to_string);
        match message {
            Message::Response { id, message } => {
                if let Some(session) = &session_header {
                    let key = format!("{session}|{}", jsonrpc::id_key(&id));
                    let waiting = self
                        .awaiting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key);
                    match waiting {
                        Some((_, tx)) => {
                            let _ = tx.send(message);
                        }
                        None => log::debug!("a response to no request of ours ({key})"),
                    }
                }
                respond_empty(request, 202, &[])
            }
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
                        // A request of that call waiting for this client's answer ends too.
                        self.awaiting
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .retain(|_, (call, _)| *call != key);
                    }
                }
                respond_empty(request, 202, &[])
            }
            Message::Request { id, method, params } => {
                let modern_envelope = params
                    .get("_meta")
                    .and_then(Value::as_object)
                    .is_some_and(|m| m.contains_key(META_PROTOCOL_VERSION));
                if method == "initialize" && !modern_envelope {
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
                if era == Era::Modern && !crate::mcp::MODERN_REQUESTS.contains(&method.as_str()) {
                    let error = RpcError::new(
                        jsonrpc::METHOD_NOT_FOUND,
                        format!("{method} is not a method of protocol revision {MODERN_VERSION}"),
                    );
                    return respond_json(request, 404, &jsonrpc::error_response(&id, &error), &[]);
                }
                let can_stream = request_header(&request, "Accept")
                    .map(|a| a.contains("text/event-stream"))
                    .unwrap_or(false);
                if era == Era::Modern && method == "subscriptions/listen" {
                    return self.listen(request, id, &params, can_stream, principal);
                }
                if era == Era::Modern {
                    let parked = params
                        .get("requestState")
                        .and_then(Value::as_str)
                        .and_then(|s| s.strip_prefix(PARKED_STATE_PREFIX))
                        .map(str::to_string);
                    if let Some(token) = parked {
                        let answer = Answer::new(request, id, can_stream, None);
                        return self.resume_parked(answer, &token, &method, &params, principal);
                    }
                }
                if let Some(kind) = ListKind::of_method(&method) {
                    return self.answer_list(request, &era, &id, kind, &params, principal);
                }
                let key_owner = match &era {
                    Era::Session { id } => id.clone(),
                    _ => principal.name.clone(),
                };
                let cancel = cancel_key(&key_owner, &id);
                let resumable = match &era {
                    Era::Session { id } => Some((id.clone(), Arc::clone(&self.logs))),
                    _ => None,
                };
                let mut answer = Answer::new(request, id, can_stream, resumable);
                let (capabilities, log_level) = self.client_settings(&era, &params);
                let mut link = CallLink {
                    face: self,
                    answer: &mut answer,
                    era: &era,
                    principal: &principal.name,
                    method: &method,
                    cancel_key: cancel.clone(),
                    capabilities,
                    log_level,
                };
                let outcome = self.dispatch(&era, principal, &method, params, cancel, &mut link);
                let id = answer.id.clone();
                match outcome {
                    Ok(mut result) => {
                        if era == Era::Modern {
                            let hint = self.list_cache_hint(&method, principal);
                            mark_modern_result(&method, &mut result, hint);
                        } else {
                            unmark_modern_result(&mut result);
                        }
                        answer.finish(200, &jsonrpc::response_ref(&id, &result));
                    }
                    Err(error) => {
                        let status = if era == Era::Modern {
                            modern_status(&error)
                        } else {
                            200
                        };
                        answer.finish(status, &jsonrpc::error_response(&id, &error));
                    }
                }
            }
        }
    }

    /// A list request's answer, written straight from the catalog: the same JSON that
    /// [`McpFace::dispatch`] and `mark_modern_result` give, without copying the entries into a
    /// result value first (a `tools/list` is the most frequent request after calls).
    fn answer_list(
        &self,
        request: Request,
        era: &Era,
        id: &Value,
        kind: ListKind,
        params: &Map<String, Value>,
        principal: &Principal,
    ) {
        let page_size = self.gateway.config().limits.page_size;
        let cursor = params.get("cursor").and_then(Value::as_str);
        let page = match self
            .gateway
            .list_page_json(principal, kind, cursor, page_size)
        {
            Ok(page) => page,
            Err(message) => {
                let error = RpcError::new(jsonrpc::INVALID_PARAMS, message);
                let status = if *era == Era::Modern {
                    modern_status(&error)
                } else {
                    200
                };
                return respond_json(request, status, &jsonrpc::error_response(id, &error), &[]);
            }
        };
        let (items, next) = &*page;
        let mut out = Vec::with_capacity(items.len() + 160);
        out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        // Writing JSON values and strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, id);
        out.extend_from_slice(b",\"result\":{\"");
        out.extend_from_slice(kind.result_key().as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(items);
        if let Some(next) = next {
            out.extend_from_slice(b",\"nextCursor\":");
            let _ = serde_json::to_writer(&mut out, next);
        }
        if *era == Era::Modern {
            let hint = self.list_cache_hint(kind.method(), principal);
            let scope = if hint.public { "public" } else { "private" };
            let tail = format!(
                ",\"resultType\":\"complete\",\"ttlMs\":{},\"cacheScope\":\"{scope}\"",
                hint.ttl_ms.unwrap_or(0)
            );
            out.extend_from_slice(tail.as_bytes());
        }
        out.extend_from_slice(b"}}");
        crate::http_util::respond_bytes(request, 200, out, "application/json", &[]);
    }

    /// The caching hint for a 2026-07-28 list answer to `principal`, from the backends that
    /// contribute to that list; a principal limited to some servers always gets `private`.
    fn list_cache_hint(&self, method: &str, principal: &Principal) -> CacheHint {
        let Some(kind) = ListKind::of_method(method) else {
            return CacheHint::default();
        };
        let hints = self
            .gateway
            .backends()
            .iter()
            .enumerate()
            .filter(|(i, _)| self.gateway.allows(principal, *i))
            .filter_map(|(_, b)| {
                let lists = b.lists();
                (!lists.items(kind).is_empty()).then_some(lists.cache_hints[kind.index()])
            })
            .collect::<Vec<_>>();
        let mut hint = combine_hints(hints);
        hint.public &= principal.rule.is_everything();
        hint
    }

    /// The capabilities and log level of the client behind a request: from its session, or
    /// from a 2026-07-28 request's `_meta`.
    fn client_settings(&self, era: &Era, params: &Map<String, Value>) -> (Value, Option<String>) {
        match era {
            Era::Session { id } => {
                let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
                match sessions.get(id) {
                    Some(s) => (
                        s.capabilities.clone(),
                        Some(s.log_level.clone().unwrap_or_else(|| "debug".into())),
                    ),
                    None => (json!({}), None),
                }
            }
            Era::Modern => {
                let meta = params.get("_meta");
                let caps = meta
                    .and_then(|m| m.get(META_CLIENT_CAPABILITIES))
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                let level = meta
                    .and_then(|m| m.get(META_LOG_LEVEL))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                (caps, level)
            }
            Era::Plain => (json!({}), Some("debug".into())),
        }
    }

    /// A notification a backend sent outside any call: resource updates go to the sessions and
    /// listen streams that subscribed to the resource.
    fn backend_notice(&self, backend: &str, message: &Value) {
        if message.get("method").and_then(Value::as_str) != Some("notifications/resources/updated")
        {
            return;
        }
        let Some(uri) = message.pointer("/params/uri").and_then(Value::as_str) else {
            return;
        };
        if self.gateway.catalog().resource_owner(uri).is_none() {
            log::debug!("backend {backend} announced an update of {uri}, which it does not list");
        }
        // A 2026-07-28 backend stamps the id of the gateway's own listen request on it; each
        // client's stream gets its own (or none).
        let mut message = message.clone();
        if let Some(Value::Object(meta)) = message.pointer_mut("/params/_meta") {
            meta.remove(META_SUBSCRIPTION_ID);
            if meta.is_empty() {
                if let Some(params) = message.get_mut("params").and_then(Value::as_object_mut) {
                    params.remove("_meta");
                }
            }
        }
        let message = &message;
        let subscribed: Vec<String> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, s)| s.subscriptions.contains(uri))
            .map(|(id, _)| id.clone())
            .collect();
        let mut reached = HashSet::new();
        self.retain_streams(|open| {
            let wanted = if open.session.is_empty() {
                open.resources.iter().any(|r| r == uri)
            } else {
                subscribed.contains(&open.session)
            };
            if !wanted {
                return true;
            }
            reached.insert(open.session.clone());
            let mut params = message.get("params").cloned().unwrap_or_else(|| json!({}));
            if let (Some(id), Some(p)) = (&open.subscription_id, params.as_object_mut()) {
                let meta = p.entry("_meta").or_insert_with(|| json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert(META_SUBSCRIPTION_ID.into(), id.clone());
                }
            }
            open.stream.send(&jsonrpc::notification(
                "notifications/resources/updated",
                params,
            ))
        });
        // Sessions without a GET stream (yet, or for a moment) get it when they open one.
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        for id in subscribed.iter().filter(|id| !reached.contains(*id)) {
            if let Some(session) = sessions.get_mut(id) {
                if session.held.len() >= MAX_HELD_NOTICES {
                    session.held.pop_front();
                }
                session.held.push_back(message.clone());
            }
        }
    }

    /// `logging/setLevel` in a session: remembered for the session's own log lines, and sent to
    /// the backends as the most verbose level any session wants (`debug` while a session has
    /// set none), so one session's choice never hides another's lines.
    fn set_log_level(&self, session: &str, params: &Map<String, Value>) -> Result<Value, RpcError> {
        let level = params
            .get("level")
            .and_then(Value::as_str)
            .filter(|l| LOG_LEVELS.contains(l))
            .ok_or_else(|| {
                RpcError::new(
                    jsonrpc::INVALID_PARAMS,
                    format!(
                        "logging/setLevel: params.level must be one of {}",
                        LOG_LEVELS.join(", ")
                    ),
                )
            })?;
        let most_verbose = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = sessions.get_mut(session) {
                s.log_level = Some(level.to_string());
            }
            // A session that set no level wants every line.
            sessions
                .values()
                .map(|s| s.log_level.as_deref().unwrap_or(LOG_LEVELS[0]))
                .min_by_key(|l| level_rank(l))
                .unwrap_or(level)
                .to_string()
        };
        self.gateway.set_backend_log_level(&most_verbose);
        Ok(json!({}))
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
                    return Err(unsupported_version(v, false));
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
            if method == "tools/call" {
                self.check_param_headers(request, params)?;
            }
            return Ok(Some(Era::Modern));
        }
        if let Some(v) = version_header {
            if !HANDSHAKE_VERSIONS.contains(&v) {
                return Err(unsupported_version(v, false));
            }
        }
        Ok(Some(Era::Plain))
    }

    /// The `Mcp-Param-*` headers of a 2026-07-28 `tools/call` must agree with its arguments, as
    /// the tool's definition marks them.
    fn check_param_headers(
        &self,
        request: &Request,
        params: &Map<String, Value>,
    ) -> Result<(), RpcError> {
        let catalog = self.gateway.catalog();
        let name = params.get("name").and_then(Value::as_str);
        let schema = catalog
            .tools
            .iter()
            .find(|tool| tool.get("name").and_then(Value::as_str) == name)
            .and_then(|tool| tool.get("inputSchema"));
        let Some(schema) = schema else {
            return Ok(());
        };
        let marked = param_headers::marked(schema);
        if marked.is_empty() {
            return Ok(());
        }
        let empty = Map::new();
        let arguments = params
            .get("arguments")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let header = |name: &str| {
            request_header(request, name).map(|v| crate::mcp::headers::decode_value(v).ok_or(()))
        };
        param_headers::check(&marked, arguments, &header)
            .map_err(|message| RpcError::new(jsonrpc::HEADER_MISMATCH, message))
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
        let evicted = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let mut evicted = None;
            if sessions.len() >= MAX_SESSIONS {
                if let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_seen)
                    .map(|(k, _)| k.clone())
                {
                    evicted = sessions.remove(&oldest).map(|s| (oldest, s));
                }
            }
            sessions.insert(
                session_id.clone(),
                Session {
                    protocol_version: version.to_string(),
                    last_seen: Instant::now(),
                    capabilities: params
                        .get("capabilities")
                        .cloned()
                        .unwrap_or_else(|| json!({})),
                    log_level: None,
                    subscriptions: HashSet::new(),
                    held: VecDeque::new(),
                },
            );
            evicted
        };
        if let Some((id, session)) = evicted {
            self.end_session(&id, session);
        }
        let client = params
            .get("clientInfo")
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("unknown client");
        log::info!(
            "MCP session started by {} (protocol {})",
            crate::untrusted::for_log(client),
            crate::untrusted::for_log(version)
        );
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
        let backends = self.gateway.backends();
        let names: Vec<&str> = backends.iter().map(|b| b.name()).collect();
        if names.is_empty() {
            "mcp-gateway with no backends configured yet; the gateway__status tool reports its state.".to_string()
        } else {
            format!("mcp-gateway aggregating the MCP servers {}. Tool and prompt names carry their server's prefix (<prefix>__<name>) unless the config says otherwise; gateway__status reports which servers are up.", names.join(", "))
        }
    }

    /// Answers every method but the four lists, which [`McpFace::answer_list`] writes from the
    /// catalog before a request gets here.
    fn dispatch(
        &self,
        era: &Era,
        principal: &Principal,
        method: &str,
        params: Map<String, Value>,
        cancel_key: String,
        link: &mut CallLink<'_>,
    ) -> Result<ResultJson, RpcError> {
        let progress_token = params
            .get("_meta")
            .and_then(|m| m.get("progressToken"))
            .cloned();
        let options = CallOptions {
            progress_token,
            cancel_key: Some(cancel_key),
            audit: Some(crate::audit::AuditContext {
                face: "mcp",
                principal: principal.name.clone(),
            }),
        };
        let built = match method {
            "server/discover" => Ok(json!({
                "supportedVersions": MODERN_VERSIONS,
                "capabilities": capabilities(),
                "instructions": self.instructions(),
                "_meta": {META_SERVER_INFO: server_info()},
            })),
            "ping" => Ok(json!({})),
            "logging/setLevel" => match era {
                Era::Session { id } => self.set_log_level(id, &params),
                Era::Plain => Ok(json!({})),
                Era::Modern => Err(RpcError::new(
                    jsonrpc::METHOD_NOT_FOUND,
                    format!("logging/setLevel is not part of {MODERN_VERSION}: put the level in params._meta[\"{META_LOG_LEVEL}\"]"),
                )),
            },
            "tools/call" => {
                required_str(&params, "name", method)?;
                match params.get("arguments") {
                    None | Some(Value::Object(_)) => {}
                    Some(_) => {
                        return Err(RpcError::new(
                            jsonrpc::INVALID_PARAMS,
                            "tools/call: \"arguments\" must be an object",
                        ))
                    }
                };
                return self
                    .gateway
                    .request(principal, method, forwardable(params), options, link);
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                let uri = required_str(&params, "uri", method)?;
                let owner = self.gateway.resource_owner(principal, uri)?;
                let on = method == "resources/subscribe";
                let changed = match era {
                    Era::Session { id } => {
                        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
                        match sessions.get_mut(id) {
                            Some(s) if on => s.subscriptions.insert(uri.to_string()),
                            Some(s) => s.subscriptions.remove(uri),
                            None => false,
                        }
                    }
                    Era::Modern => return Err(RpcError::new(
                        jsonrpc::METHOD_NOT_FOUND,
                        format!("{method} is not part of {MODERN_VERSION}: open subscriptions/listen with notifications.resourceSubscriptions"),
                    )),
                    Era::Plain => return Err(RpcError::new(
                        jsonrpc::INVALID_REQUEST,
                        format!("{method} needs a session to send the updates on: initialize one first"),
                    )),
                };
                if changed {
                    if let Err(e) = self.gateway.set_subscription(&owner, uri, on) {
                        if on {
                            if let Era::Session { id } = era {
                                if let Some(s) = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
                                    s.subscriptions.remove(uri);
                                }
                            }
                        }
                        return Err(e);
                    }
                }
                Ok(json!({}))
            }
            "resources/read" | "prompts/get" | "completion/complete" => {
                return self
                    .gateway
                    .request(principal, method, forwardable(params), options, link)
            }
            _ => Err(RpcError::new(
                jsonrpc::METHOD_NOT_FOUND,
                format!("method \"{method}\" is not supported by mcp-gateway"),
            )
            .with_data(json!({"method": method}))),
        };
        built.map(ResultJson::from)
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
        let resumed = request_header(&request, "Last-Event-ID")
            .and_then(|last| self.logs.find(&session, last));
        let headers = [(SESSION_HEADER.to_string(), session.clone())];
        if let Some((log, after)) = resumed {
            match SseStream::start(request, &headers) {
                Ok(stream) => log
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .resume(after, stream),
                Err(e) => log::debug!("cannot open the resumed stream: {e}"),
            }
            return;
        }
        match SseStream::start(request, &headers) {
            Ok(mut stream) => {
                let held: Vec<Value> = self
                    .sessions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(&session)
                    .map(|s| s.held.drain(..).collect())
                    .unwrap_or_default();
                let delivered = stream.comment("stream open").is_ok()
                    && held.iter().all(|message| stream.send(message).is_ok());
                if !delivered {
                    return;
                }
                match QueuedStream::start(stream) {
                    Ok(stream) => {
                        self.streams
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(OpenStream {
                                session,
                                stream,
                                wants: [true; 4],
                                subscription_id: None,
                                resources: Vec::new(),
                            })
                    }
                    Err(e) => log::warn!("cannot start the event stream's writer: {e}"),
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
                log::info!("MCP session ended (protocol {})", s.protocol_version);
                self.end_session(&session, s);
                respond_empty(request, 200, &[])
            }
            None => self.unknown_session(request),
        }
    }

    /// Keeps the open streams for which `keep` says so; the resource subscriptions of the
    /// others are given up.
    fn retain_streams(&self, keep: impl FnMut(&mut OpenStream) -> bool) {
        let mut keep = keep;
        let mut released = Vec::new();
        {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            streams.retain_mut(|open| {
                let kept = keep(open);
                if !kept {
                    released.append(&mut open.resources);
                }
                kept
            });
        }
        if released.is_empty() {
            return;
        }
        // This may run on a backend's reader thread (a resource update), which must not wait
        // for its own backend's answer to the unsubscribe: another thread sends it.
        let gateway = Arc::clone(&self.gateway);
        let spawned = std::thread::Builder::new()
            .name("mcp-unsubscribe".into())
            .spawn(move || release_at_backends(&gateway, released));
        if let Err(e) = spawned {
            log::warn!("cannot start a thread to unsubscribe a closed stream's resources: {e}");
        }
    }

    /// Gives up one subscriber's subscriptions to `uris`.
    fn release_subscriptions(&self, uris: impl IntoIterator<Item = String>) {
        release_at_backends(&self.gateway, uris);
    }

    /// Forgets a session that ended (or expired): its streams, events and subscriptions.
    fn end_session(&self, id: &str, session: Session) {
        self.close_streams(|open| open.session == id);
        self.logs.forget_session(id);
        self.release_subscriptions(session.subscriptions);
    }

    fn close_streams(&self, which: impl Fn(&OpenStream) -> bool) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let (closing, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut *streams)
            .into_iter()
            .partition(|s| which(s));
        *streams = keep;
        drop(streams);
        let mut released = Vec::new();
        for mut open in closing {
            released.append(&mut open.resources);
            open.stream.finish();
        }
        self.release_subscriptions(released);
    }

    /// Sends `notifications/<kind>/list_changed` to every open stream that wants it.
    pub fn broadcast_list_changed(&self, kinds: &[ListKind]) {
        // Resources and templates share one notification: send it once.
        let mut changed: Vec<ListKind> = Vec::new();
        for kind in kinds {
            if !changed
                .iter()
                .any(|k| k.changed_notification() == kind.changed_notification())
            {
                changed.push(*kind);
            }
        }
        self.retain_streams(|open| {
            changed.iter().all(|kind| {
                let method = kind.changed_notification();
                if !open.wants[kind.index()] {
                    return true;
                }
                let params = match &open.subscription_id {
                    Some(id) => json!({"_meta": {META_SUBSCRIPTION_ID: id}}),
                    None => json!({}),
                };
                open.stream.send(&jsonrpc::notification(method, params))
            })
        });
    }

    /// 2026-07-28 `subscriptions/listen`: acknowledge the list-change kinds we honour, then keep
    /// the stream open (on the keep-alive thread, not a worker) and send them as they happen.
    fn listen(
        &self,
        request: Request,
        id: Value,
        params: &Map<String, Value>,
        can_stream: bool,
        principal: &Principal,
    ) {
        if !can_stream {
            let error = RpcError::new(
                jsonrpc::INVALID_REQUEST,
                "subscriptions/listen answers with an event stream: send Accept: text/event-stream",
            );
            return respond_json(request, 400, &jsonrpc::error_response(&id, &error), &[]);
        }
        let asked = params.get("notifications").cloned().unwrap_or(Value::Null);
        let wants = ListKind::ALL
            .map(|k| asked.get(k.listen_kind()).and_then(Value::as_bool) == Some(true));
        let mut honoured = Map::new();
        for (kind, yes) in ListKind::ALL.into_iter().zip(wants) {
            if yes {
                honoured.insert(kind.listen_kind().to_string(), json!(true));
            }
        }
        let resources = self.subscribe_for_listen(&asked, principal);
        if !resources.is_empty() {
            honoured.insert("resourceSubscriptions".into(), json!(resources));
        }
        let mut stream = match SseStream::start(request, &[]) {
            Ok(s) => s,
            Err(e) => return log::debug!("cannot open the listen stream: {e}"),
        };
        let ack = jsonrpc::notification(
            "notifications/subscriptions/acknowledged",
            json!({"notifications": honoured, "_meta": {META_SUBSCRIPTION_ID: id}}),
        );
        if stream.send(&ack).is_err() {
            return self.release_subscriptions(resources);
        }
        match QueuedStream::start(stream) {
            Ok(stream) => self
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(OpenStream {
                    session: String::new(),
                    stream,
                    wants,
                    subscription_id: Some(id),
                    resources,
                }),
            Err(e) => {
                log::warn!("cannot start the listen stream's writer: {e}");
                self.release_subscriptions(resources);
            }
        }
    }

    /// The `resourceSubscriptions` of a `subscriptions/listen` request that name resources of
    /// this gateway the principal may read; each is subscribed at its backend.
    fn subscribe_for_listen(&self, asked: &Value, principal: &Principal) -> Vec<String> {
        let uris = asked
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut honoured = Vec::new();
        for uri in uris {
            let Ok(owner) = self.gateway.resource_owner(principal, uri) else {
                continue;
            };
            match self.gateway.set_subscription(&owner, uri, true) {
                Ok(()) => honoured.push(uri.to_string()),
                Err(e) => log::debug!("cannot subscribe to {uri}: {}", e.message),
            }
        }
        honoured
    }

    /// Keep-alives on open streams; forgets idle sessions.
    fn housekeeping(&self) {
        let expired: Vec<(String, Session)> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, s)| s.last_seen.elapsed() > SESSION_IDLE_LIMIT)
                .map(|(k, _)| k.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| sessions.remove(&id).map(|s| (id, s)))
                .collect()
        };
        for (id, session) in expired {
            self.end_session(&id, session);
        }
        self.logs.sweep();
        self.retain_streams(|open| open.stream.comment("keep-alive"));
    }

    /// Number of open sessions (for tests and metrics).
    pub fn session_count(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// Gives up one subscriber's subscriptions to `uris` at their backends (each backend hears the
/// last unsubscribe only).
fn release_at_backends(gateway: &Gateway, uris: impl IntoIterator<Item = String>) {
    for uri in uris {
        if let Some(owner) = gateway.resource_backend(&uri) {
            if let Err(e) = gateway.set_subscription(&owner, &uri, false) {
                log::debug!("cannot unsubscribe from {uri}: {}", e.message);
            }
        }
    }
}

fn cancel_key(owner: &str, request_id: &Value) -> String {
    format!("{owner}:{}", jsonrpc::id_key(request_id))
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
        "resources": {"listChanged": true, "subscribe": true},
        "prompts": {"listChanged": true},
        "completions": {},
        "logging": {},
    })
}

fn server_info() -> Value {
    json!({"name": "mcp-gateway", "title": "MCP gateway", "version": env!("CARGO_PKG_VERSION")})
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
