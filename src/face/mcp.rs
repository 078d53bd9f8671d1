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
    CacheHint, CallOptions, HANDSHAKE_VERSIONS, META_CLIENT_CAPABILITIES, META_CLIENT_INFO,
    META_LOG_LEVEL, META_PROTOCOL_VERSION, META_SERVER_INFO, MODERN_VERSION,
};
use crate::catalog::{self, ListKind as CatalogList, Route};
use crate::face::answer::{Answer, EventLogs};
use crate::gateway::{Gateway, ListKind, Principal};
use crate::http_util::{request_header, respond_empty, respond_json, SseStream};
use crate::jsonrpc::{self, Message, RpcError};
use crate::link::{check_capability, ClientLink};
use crate::param_headers;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
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
}

/// A call whose handshake-era backend asked a 2026-07-28 client something: the client got an
/// `input_required` result, and its retry brings the answer (and a new connection for the rest
/// of the call) to the thread still running the call.
struct Parked {
    principal: String,
    method: String,
    resume: Sender<Resume>,
}

/// What the retry of a parked call hands to it.
struct Resume {
    answer: Answer,
    input_responses: Map<String, Value>,
}

struct OpenStream {
    /// The handshake-era session of a GET stream; empty for a 2026-07-28 listen stream.
    session: String,
    stream: SseStream,
    /// Which list changes it wants: tools, resources, prompts.
    wants: [bool; 3],
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
                .config
                .servers
                .iter()
                .map(|s| s.timeout)
                .fold(gateway.config.limits.call_timeout, Duration::max),
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
        if let Some(host) = request_header(&request, "Host") {
            if !host_allowed(&self.gateway.config, host) {
                log::warn!("refused a request for host {host}");
                let error = RpcError::new(jsonrpc::INVALID_REQUEST, format!("host {host} is not allowed (set \"public_url\" to the URL clients use, or add that origin to \"allowed_origins\" in the config)"));
                respond_json(
                    request,
                    403,
                    &jsonrpc::error_response(&Value::Null, &error),
                    &[],
                );
                return;
            }
        }
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
            Message::Response { id, .. } => {
                if let Some(session) = &session_header {
                    let key = format!("{session}|{}", jsonrpc::id_key(&id));
                    let waiting = self
                        .awaiting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key);
                    match waiting {
                        Some((_, tx)) => {
                            let _ = tx.send(value.clone());
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
                let (status, response) = match outcome {
                    Ok(mut result) => {
                        if era == Era::Modern {
                            let hint = self.list_cache_hint(&method, principal);
                            mark_modern_result(&method, &mut result, hint);
                        } else {
                            unmark_modern_result(&mut result);
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
                answer.finish(status, &response);
            }
        }
    }

    /// The caching hint for a 2026-07-28 list answer to `principal`, from the backends that
    /// contribute to that list; a principal limited to some servers always gets `private`.
    fn list_cache_hint(&self, method: &str, principal: &Principal) -> CacheHint {
        let slot = match method {
            "tools/list" => 0,
            "resources/list" => 1,
            "resources/templates/list" => 2,
            "prompts/list" => 3,
            _ => return CacheHint::default(),
        };
        let hints = self
            .gateway
            .backends
            .iter()
            .enumerate()
            .filter(|(i, _)| self.gateway.allows(principal, *i))
            .filter_map(|(_, b)| {
                let lists = b.lists();
                let items = [
                    &lists.tools,
                    &lists.resources,
                    &lists.templates,
                    &lists.prompts,
                ];
                (!items[slot].is_empty()).then_some(lists.cache_hints[slot])
            })
            .collect::<Vec<_>>();
        let mut hint = combine_hints(hints);
        hint.public &= principal.servers.is_none();
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

    /// Asks a handshake-era client `method` on the call's event stream and waits for the answer
    /// it POSTs back.
    fn ask_in_session(
        &self,
        session: &str,
        link: &mut CallLink<'_>,
        method: &str,
        params: Value,
    ) -> Result<Value, RpcError> {
        let answer = &mut *link.answer;
        if !answer.can_stream() {
            return Err(RpcError::new(
                jsonrpc::INVALID_REQUEST,
                format!("the client's request does not accept an event stream, so mcp-gateway cannot pass it this {method} request"),
            ));
        }
        let request_id = format!("gw-{}", self.next_request.fetch_add(1, Ordering::Relaxed));
        let key = format!("{session}|{}", jsonrpc::id_key(&json!(request_id)));
        let (tx, rx) = mpsc::channel();
        self.awaiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), (link.cancel_key.clone(), tx));
        answer.notify(&jsonrpc::request(&json!(request_id), method, params));
        let outcome = rx.recv_timeout(self.answer_timeout);
        self.awaiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        match outcome {
            Ok(response) => match response.get("error") {
                Some(error) => Err(RpcError::from_value(error)),
                None => Ok(response.get("result").cloned().unwrap_or_else(|| json!({}))),
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                format!("the client cancelled the call before answering {method}"),
            )),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let reason = format!(
                    "the client did not answer {method} within {} s",
                    self.answer_timeout.as_secs()
                );
                // The question is abandoned: tell the client, as the backend would have.
                answer.notify(&jsonrpc::notification(
                    "notifications/cancelled",
                    json!({"requestId": request_id, "reason": reason}),
                ));
                Err(RpcError::new(jsonrpc::INTERNAL_ERROR, reason))
            }
        }
    }

    /// Asks a 2026-07-28 client `method` on behalf of a handshake-era backend: answers the
    /// client's request with an `input_required` result naming it, then waits (holding the
    /// backend's call) for the client's retry, which carries the answer and takes over the rest
    /// of the call.
    fn ask_by_parking(
        &self,
        link: &mut CallLink<'_>,
        method: &str,
        mut params: Value,
    ) -> Result<Value, RpcError> {
        crate::link::to_modern_form(method, &mut params);
        let token = match crate::tokens::generate_token() {
            Ok(t) => t.trim_start_matches("mgw_").to_string(),
            Err(e) => {
                return Err(RpcError::new(
                    jsonrpc::INTERNAL_ERROR,
                    format!("cannot make a request state: {e}"),
                ))
            }
        };
        let (tx, rx) = mpsc::channel();
        self.parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                token.clone(),
                Parked {
                    principal: link.principal.to_string(),
                    method: link.method.to_string(),
                    resume: tx,
                },
            );
        let interim = json!({
            "resultType": "input_required",
            "inputRequests": {PARKED_INPUT_KEY: {"method": method, "params": params}},
            "requestState": format!("{PARKED_STATE_PREFIX}{token}"),
        });
        let id = link.answer.id.clone();
        link.answer.finish(200, &jsonrpc::response(&id, interim));
        let outcome = rx.recv_timeout(self.answer_timeout);
        self.parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&token);
        let resume = outcome.map_err(|_| {
            RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                format!(
                    "the client did not send its {method} answer within {} s",
                    self.answer_timeout.as_secs()
                ),
            )
        })?;
        *link.answer = resume.answer;
        resume
            .input_responses
            .get(PARKED_INPUT_KEY)
            .cloned()
            .ok_or_else(|| {
                RpcError::new(
                    jsonrpc::INVALID_PARAMS,
                    format!("the retry carried no inputResponses.{PARKED_INPUT_KEY}"),
                )
            })
    }

    /// A 2026-07-28 retry carrying the `requestState` of a parked call: hands the answer and
    /// this request's connection to the thread running the call.
    fn resume_parked(
        &self,
        mut answer: Answer,
        token: &str,
        method: &str,
        params: &Map<String, Value>,
        principal: &Principal,
    ) {
        let parked = {
            let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            match parked.get(token) {
                Some(p) if p.principal == principal.name && p.method == method => {
                    parked.remove(token)
                }
                _ => None,
            }
        };
        let input_responses = params
            .get("inputResponses")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let Some(parked) = parked else {
            let error = RpcError::new(
                jsonrpc::INVALID_PARAMS,
                "params.requestState names no call waiting for input (it expired or was already answered): send the request again without requestState",
            );
            let id = answer.id.clone();
            return answer.finish(400, &jsonrpc::error_response(&id, &error));
        };
        if let Err(mpsc::SendError(resume)) = parked.resume.send(Resume {
            answer,
            input_responses,
        }) {
            let mut answer = resume.answer;
            let error = RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                "the call waiting for this input has ended",
            );
            let id = answer.id.clone();
            answer.finish(200, &jsonrpc::error_response(&id, &error));
        }
    }

    /// A notification a backend sent outside any call: resource updates go to the sessions and
    /// listen streams that subscribed to the resource.
    fn backend_notice(&self, backend: usize, message: &Value) {
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
        let subscribed: Vec<String> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, s)| s.subscriptions.contains(uri))
            .map(|(id, _)| id.clone())
            .collect();
        self.retain_streams(|open| {
            let wanted = if open.session.is_empty() {
                open.resources.iter().any(|r| r == uri)
            } else {
                subscribed.contains(&open.session)
            };
            if !wanted {
                return true;
            }
            let mut params = message.get("params").cloned().unwrap_or_else(|| json!({}));
            if let (Some(id), Some(p)) = (&open.subscription_id, params.as_object_mut()) {
                let meta = p.entry("_meta").or_insert_with(|| json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert(META_SUBSCRIPTION_ID.into(), id.clone());
                }
            }
            open.stream
                .send(&jsonrpc::notification(
                    "notifications/resources/updated",
                    params,
                ))
                .is_ok()
        });
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
            if method == "tools/call" {
                self.check_param_headers(request, params)?;
            }
            return Ok(Some(Era::Modern));
        }
        if let Some(v) = version_header {
            if !HANDSHAKE_VERSIONS.contains(&v) {
                return Err(unsupported_version(v));
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
        let header =
            |name: &str| request_header(request, name).map(|v| decode_header_value(v).ok_or(()));
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
            format!("mcp-gateway aggregating the MCP servers {}. Tool and prompt names carry their server's prefix (<prefix>__<name>) unless the config says otherwise; gateway__status reports which servers are up.", names.join(", "))
        }
    }

    fn dispatch(
        &self,
        era: &Era,
        principal: &Principal,
        method: &str,
        params: Map<String, Value>,
        cancel_key: String,
        link: &mut CallLink<'_>,
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
                self.gateway
                    .call_tool_params(principal, forwardable(params), options, link)
            }
            "resources/subscribe" | "resources/unsubscribe" => {
                let uri = required_str(&params, "uri", method)?;
                let owner = catalog
                    .resource_owner(uri)
                    .filter(|b| allowed(*b))
                    .ok_or_else(|| unknown_resource(uri))?;
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
                    if let Err(e) = self.gateway.set_subscription(owner, uri, on) {
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
            "resources/read" => {
                let uri = required_str(&params, "uri", method)?.to_string();
                let uri = uri.as_str();
                let owner = catalog
                    .resource_owner(uri)
                    .filter(|b| allowed(*b))
                    .ok_or_else(|| unknown_resource(uri))?;
                self.gateway
                    .forward(owner, method, forwardable(params), options, link)
            }
            "prompts/get" => {
                let name = required_str(&params, "name", method)?;
                match catalog.prompt(name) {
                    Some(Route::Backend { backend, original }) if allowed(*backend) => {
                        let mut p = forwardable(params.clone());
                        p.insert("name".into(), json!(original));
                        self.gateway.forward(*backend, method, p, options, link)
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
                    Some(backend) => self.gateway.forward(backend, method, p, options, link),
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
                if stream.comment("stream open").is_ok() {
                    self.streams
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(OpenStream {
                            session,
                            stream,
                            wants: [true; 3],
                            subscription_id: None,
                            resources: Vec::new(),
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
        self.release_subscriptions(released);
    }

    /// Gives up one subscriber's subscriptions to `uris`.
    fn release_subscriptions(&self, uris: impl IntoIterator<Item = String>) {
        let catalog = self.gateway.catalog();
        for uri in uris {
            if let Some(owner) = catalog.resource_owner(&uri) {
                if let Err(e) = self.gateway.set_subscription(owner, &uri, false) {
                    log::debug!("cannot unsubscribe from {uri}: {}", e.message);
                }
            }
        }
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
            let _ = open.stream.finish();
        }
        self.release_subscriptions(released);
    }

    /// Sends `notifications/<kind>/list_changed` to every open stream that wants it.
    pub fn broadcast_list_changed(&self, kinds: &[ListKind]) {
        self.retain_streams(|open| {
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
        if stream.send(&ack).is_ok() {
            self.streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(OpenStream {
                    session: String::new(),
                    stream,
                    wants,
                    subscription_id: Some(id),
                    resources,
                });
        }
    }

    /// The `resourceSubscriptions` of a `subscriptions/listen` request that name resources of
    /// this gateway the principal may read; each is subscribed at its backend.
    fn subscribe_for_listen(&self, asked: &Value, principal: &Principal) -> Vec<String> {
        let catalog = self.gateway.catalog();
        let uris = asked
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut honoured = Vec::new();
        for uri in uris {
            let owner = catalog
                .resource_owner(uri)
                .filter(|b| self.gateway.allows(principal, *b));
            let Some(owner) = owner else { continue };
            match self.gateway.set_subscription(owner, uri, true) {
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
        self.retain_streams(|open| open.stream.comment("keep-alive").is_ok());
    }

    /// Number of open sessions (for tests and metrics).
    pub fn session_count(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// The link of one call on the MCP face: the call's answer, and who the client is.
struct CallLink<'a> {
    face: &'a McpFace,
    answer: &'a mut Answer,
    era: &'a Era,
    principal: &'a str,
    /// The client's method (a 2026-07-28 retry must repeat it).
    method: &'a str,
    /// The key the client cancels the call by.
    cancel_key: String,
    capabilities: Value,
    /// Least severe log level passed on; `None`: no log lines.
    log_level: Option<String>,
}

impl ClientLink for CallLink<'_> {
    fn notify(&mut self, message: Value) {
        if message.get("method").and_then(Value::as_str) == Some("notifications/message") {
            let level = message.pointer("/params/level").and_then(Value::as_str);
            let wanted = match (&self.log_level, level) {
                (None, _) => false,
                (Some(min), Some(level)) => level_rank(level) >= level_rank(min),
                (Some(_), None) => true,
            };
            if !wanted {
                return;
            }
        }
        self.answer.notify(&message);
    }

    fn ask(&mut self, method: &str, params: Value) -> Result<Value, RpcError> {
        check_capability(&self.capabilities, method, &params)?;
        let face = self.face;
        match self.era {
            Era::Session { id } => face.ask_in_session(id, self, method, params),
            Era::Modern => face.ask_by_parking(self, method, params),
            Era::Plain => Err(RpcError::new(
                jsonrpc::INVALID_REQUEST,
                format!("a request without a session cannot be asked {method}: initialize a session first"),
            )),
        }
    }

    fn capabilities(&self) -> Value {
        self.capabilities.clone()
    }

    fn log_level(&self) -> Option<String> {
        self.log_level.clone()
    }

    fn takes_input_required(&self) -> bool {
        *self.era == Era::Modern
    }
}

/// Position of a log level from the most verbose; unknown levels count as `info`.
fn level_rank(level: &str) -> usize {
    LOG_LEVELS.iter().position(|l| *l == level).unwrap_or(1)
}

/// The DNS-rebinding guard on `Host`: loopback names (any port) and IP addresses (a rebinding
/// attack needs a name of its own) pass, and so do the hosts of `public_url` and of the
/// `allowed_origins` entries.
fn host_allowed(config: &crate::config::Config, host: &str) -> bool {
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
fn host_name(authority: &str) -> &str {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    }
}

fn unknown_resource(uri: &str) -> RpcError {
    RpcError::new(
        jsonrpc::INVALID_PARAMS,
        format!("unknown resource \"{uri}\" (resources/list shows what is offered)"),
    )
    .with_data(json!({"uri": uri}))
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
        "resources": {"listChanged": true, "subscribe": true},
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

/// A result from a 2026-07-28 backend, for a handshake-era client: without the fields and
/// reserved `_meta` keys of that revision (the content is left as it is).
fn unmark_modern_result(result: &mut Value) {
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
fn mark_modern_result(method: &str, result: &mut Value, hint: CacheHint) {
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
fn combine_hints(hints: impl IntoIterator<Item = CacheHint>) -> CacheHint {
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
