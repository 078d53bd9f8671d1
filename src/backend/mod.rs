//! Backends: one MCP client connection per configured server, kept alive by a supervisor thread.
//!
//! A [`Backend`] owns the protocol side of talking to one server: it negotiates the revision
//! (probing the stateless 2026-07-28 `server/discover`, falling back to the `initialize`
//! handshake), fetches the server's tools, resources, templates and prompts (following
//! pagination), re-fetches them on `list_changed` and periodically, reconnects with backoff when
//! the connection dies, and runs calls with a timeout and a cap on calls in flight. How bytes
//! travel is the business of the [`transport`] modules.

pub mod http;
pub mod legacy_sse;
pub mod pending;
pub mod stdio;
pub mod transport;
pub mod web;

use crate::config::{ServerConfig, TransportConfig};
use crate::jsonrpc::{self, RpcError};
use crate::link::{ClientLink, CLIENT_METHODS};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};
use transport::{Reply, Transport, TransportError, UnsolicitedHandler, WireProtocol};

pub use crate::mcp::result_json::ResultJson;
pub use crate::mcp::results::CacheHint;
use crate::mcp::{
    HANDSHAKE_VERSIONS, META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL,
    META_PROTOCOL_VERSION, META_SERVER_INFO, MODERN_VERSION,
};

const MAX_LIST_PAGES: usize = 100;
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT_CAP: Duration = Duration::from_secs(30);
/// How long a call to a backend that is down waits for an immediate reconnection attempt.
const RECONNECT_WAIT: Duration = Duration::from_millis(1500);
/// Callers cannot make the supervisor retry more often than this.
const RETRY_NOW_MIN_GAP: Duration = Duration::from_millis(500);
/// How long a call waits for one of the backend's call slots.
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// Where a backend is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Connecting for the first time.
    Starting,
    /// Connected and listed.
    Up,
    /// Not connected; retried with backoff.
    Down,
    /// `enabled: false` in the config.
    Disabled,
}

impl State {
    /// Lowercase name for `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Up => "up",
            State::Down => "down",
            State::Disabled => "disabled",
        }
    }
}

/// What a backend offers, as it said it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lists {
    /// `tools/list` entries.
    pub tools: Vec<Value>,
    /// `resources/list` entries.
    pub resources: Vec<Value>,
    /// `resources/templates/list` entries.
    pub templates: Vec<Value>,
    /// `prompts/list` entries.
    pub prompts: Vec<Value>,
    /// What a 2026-07-28 backend said about caching each list, indexed by
    /// [`crate::mcp::ListKind::index`].
    pub cache_hints: [CacheHint; 4],
}

impl Lists {
    /// The items of one list.
    pub fn items(&self, kind: crate::mcp::ListKind) -> &[Value] {
        use crate::mcp::ListKind;
        match kind {
            ListKind::Tools => &self.tools,
            ListKind::Resources => &self.resources,
            ListKind::Templates => &self.templates,
            ListKind::Prompts => &self.prompts,
        }
    }

    fn items_mut(&mut self, kind: crate::mcp::ListKind) -> &mut Vec<Value> {
        use crate::mcp::ListKind;
        match kind {
            ListKind::Tools => &mut self.tools,
            ListKind::Resources => &mut self.resources,
            ListKind::Templates => &mut self.templates,
            ListKind::Prompts => &mut self.prompts,
        }
    }
}

/// A snapshot of a backend for `/status`.
#[derive(Debug, Clone)]
pub struct Status {
    /// Config name.
    pub name: String,
    /// Transport kind.
    pub transport: &'static str,
    /// Life state.
    pub state: State,
    /// Negotiated protocol revision.
    pub protocol_version: Option<String>,
    /// The backend's `serverInfo`.
    pub server_info: Option<Value>,
    /// Number of tools it offers.
    pub tools: usize,
    /// Last connection or call error.
    pub last_error: Option<String>,
    /// Latency of the last call, in milliseconds.
    pub last_latency_ms: Option<u64>,
    /// Calls made and failed since start.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
}

/// Why a call to a backend failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The backend answered with a JSON-RPC error: passed on to the caller as is.
    Rpc(RpcError),
    /// The backend is not connected.
    Down {
        /// Backend name.
        backend: String,
        /// Why, if known.
        reason: String,
    },
    /// The backend did not answer in time.
    Timeout {
        /// Backend name.
        backend: String,
        /// The limit.
        after: Duration,
    },
    /// The transport failed during the call.
    Failed {
        /// Backend name.
        backend: String,
        /// What happened.
        reason: String,
    },
    /// All call slots of the backend stayed busy.
    Busy {
        /// Backend name.
        backend: String,
    },
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Rpc(e) => write!(f, "{} (code {})", e.message, e.code),
            CallError::Down { backend, reason } => write!(f, "backend '{backend}' is unavailable: {reason}; the gateway keeps retrying"),
            CallError::Timeout { backend, after } => write!(f, "backend '{backend}' did not answer within {} ms", after.as_millis()),
            CallError::Failed { backend, reason } => write!(f, "backend '{backend}' failed: {reason}"),
            CallError::Busy { backend } => write!(f, "backend '{backend}' is busy: too many calls in flight (limits.max_calls_per_backend)"),
        }
    }
}

impl CallError {
    /// What went wrong, without the backend's name (for `/status`, which names it already).
    pub fn reason(&self) -> String {
        match self {
            CallError::Rpc(e) => e.message.clone(),
            CallError::Down { reason, .. } | CallError::Failed { reason, .. } => reason.clone(),
            CallError::Timeout { after, .. } => {
                format!("no answer within {} ms", after.as_millis())
            }
            CallError::Busy { .. } => "too many calls in flight".to_string(),
        }
    }

    /// The JSON-RPC error a client sees.
    pub fn to_rpc(&self) -> RpcError {
        match self {
            CallError::Rpc(e) => e.clone(),
            other => {
                // `kind` lets a face choose its answer without reading the message.
                let (backend, kind) = match other {
                    CallError::Down { backend, .. } => (backend.as_str(), "down"),
                    CallError::Timeout { backend, .. } => (backend.as_str(), "timeout"),
                    CallError::Failed { backend, .. } => (backend.as_str(), "failed"),
                    CallError::Busy { backend } => (backend.as_str(), "busy"),
                    CallError::Rpc(_) => ("", ""),
                };
                RpcError::new(jsonrpc::INTERNAL_ERROR, other.to_string())
                    .with_data(json!({"backend": backend, "kind": kind}))
            }
        }
    }
}

/// Receives the notifications a backend sends outside any call (resource updates).
pub type NoticeHandler = Arc<dyn Fn(&Value) + Send + Sync>;

/// Extra settings of one call.
#[derive(Default, Clone)]
pub struct CallOptions {
    /// The caller's `progressToken`, if it wants progress.
    pub progress_token: Option<Value>,
    /// A key under which the caller may later cancel the call (see [`Backend::cancel`]).
    pub cancel_key: Option<String>,
    /// Who makes the call, for the audit log (`None`: not audited, e.g. the gateway's own lists).
    pub audit: Option<crate::audit::AuditContext>,
}

/// The negotiated connection.
struct Connection {
    transport: Box<dyn Transport>,
    stateless: bool,
    version: String,
    capabilities: Value,
    server_info: Value,
}

/// Notes the list a `notifications/<list>/list_changed` names as announced.
fn announce(announced: &Mutex<Vec<crate::mcp::ListKind>>, method: &str) {
    if let Some(kind) = crate::mcp::ListKind::of_changed_notification(method) {
        let mut kinds = announced.lock().unwrap_or_else(|e| e.into_inner());
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
}

enum SupervisorMsg {
    Refresh,
    ServerRequest(Value),
    /// A call found the backend unreachable: reconnect.
    ConnectionFailed,
    /// A call is waiting for a backend that is down: try to connect now rather than after the
    /// backoff.
    RetryNow,
    Stop,
}

struct Slots {
    /// Calls in flight, and calls waiting for a slot (only then is a freed slot announced: a
    /// condvar's notify is a system call even with nobody waiting).
    state: Mutex<SlotState>,
    freed: Condvar,
    max: usize,
}

struct Mutable {
    state: State,
    last_error: Option<String>,
    last_latency_ms: Option<u64>,
    calls: u64,
    failures: u64,
}

/// One configured backend.
pub struct Backend {
    /// Its configuration.
    pub config: ServerConfig,
    connection: RwLock<Option<Arc<Connection>>>,
    lists: RwLock<Arc<Lists>>,
    /// Lists the backend said changed (`notifications/*/list_changed`) since the catalog last
    /// looked: its clients hear of them even when the lists read back the same (a tool added
    /// and removed again between two reads).
    announced: Arc<Mutex<Vec<crate::mcp::ListKind>>>,
    status: Mutex<Mutable>,
    slots: Slots,
    next_id: AtomicU64,
    in_flight: Mutex<HashMap<String, (u64, Arc<Connection>)>>,
    supervisor: Mutex<Option<Sender<SupervisorMsg>>>,
    on_change: Box<dyn Fn() + Send + Sync>,
    on_notice: RwLock<Option<NoticeHandler>>,
    /// Resource URIs clients subscribed to, with how many subscribers each.
    subscriptions: Mutex<HashMap<String, usize>>,
    /// The id of the open 2026-07-28 `subscriptions/listen` request.
    listen_id: Mutex<Option<Value>>,
    stopped: AtomicBool,
    refresh_interval: Duration,
}

impl Backend {
    /// A backend that is not started yet. `on_change` is called (from the backend's thread)
    /// whenever its lists or its state change.
    pub fn new(
        config: ServerConfig,
        max_calls: usize,
        refresh_interval: Duration,
        on_change: Box<dyn Fn() + Send + Sync>,
    ) -> Arc<Backend> {
        let state = if config.enabled {
            State::Starting
        } else {
            State::Disabled
        };
        Arc::new(Backend {
            config,
            connection: RwLock::new(None),
            lists: RwLock::new(Arc::new(Lists::default())),
            announced: Arc::new(Mutex::new(Vec::new())),
            status: Mutex::new(Mutable {
                state,
                last_error: None,
                last_latency_ms: None,
                calls: 0,
                failures: 0,
            }),
            slots: Slots {
                state: Mutex::new(SlotState::default()),
                freed: Condvar::new(),
                max: max_calls.max(1),
            },
            next_id: AtomicU64::new(1),
            in_flight: Mutex::new(HashMap::new()),
            supervisor: Mutex::new(None),
            on_change,
            on_notice: RwLock::new(None),
            subscriptions: Mutex::new(HashMap::new()),
            listen_id: Mutex::new(None),
            stopped: AtomicBool::new(false),
            refresh_interval,
        })
    }

    /// Backend name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Calls in flight now.
    pub fn busy(&self) -> usize {
        self.slots
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .busy
    }

    /// Starts the supervisor thread (connect, list, watch, reconnect). Returns at once.
    pub fn start(self: &Arc<Self>) {
        if !self.config.enabled {
            return;
        }
        let (tx, rx) = mpsc::channel();
        *self.supervisor.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("backend-{}", self.name()))
            .spawn(move || {
                let what = format!("the supervisor of backend '{}'", me.name());
                crate::resilient::restart_on_panic(&what, || Arc::clone(&me).supervise(&rx));
            });
        if let Err(e) = spawned {
            self.set_down(format!("cannot start a thread: {e}"));
        }
    }

    /// Stops the supervisor and closes the connection.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.nudge(SupervisorMsg::Stop);
        if let Some(conn) = self
            .connection
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            conn.transport.close();
        }
    }

    /// What the backend offers now.
    /// The lists the backend announced as changed since the last call (see `announced`).
    pub fn take_announced(&self) -> Vec<crate::mcp::ListKind> {
        std::mem::take(&mut *self.announced.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn lists(&self) -> Arc<Lists> {
        Arc::clone(&self.lists.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// A snapshot for `/status`.
    pub fn status(&self) -> Status {
        let m = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let conn = self.current_connection();
        Status {
            name: self.config.name.clone(),
            transport: self.config.transport.kind(),
            state: m.state,
            protocol_version: conn.as_ref().map(|c| c.version.clone()),
            server_info: conn.as_ref().map(|c| c.server_info.clone()),
            tools: self.lists().tools.len(),
            last_error: m.last_error.clone(),
            last_latency_ms: m.last_latency_ms,
            calls: m.calls,
            failures: m.failures,
        }
    }

    fn nudge(&self, msg: SupervisorMsg) {
        if let Some(tx) = self
            .supervisor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.send(msg);
        }
    }

    fn set_state(&self, state: State, error: Option<String>) {
        let changed = {
            let mut m = self.status.lock().unwrap_or_else(|e| e.into_inner());
            let changed = m.state != state;
            m.state = state;
            if error.is_some() {
                m.last_error = error;
            }
            changed
        };
        if changed {
            (self.on_change)();
        }
    }

    fn set_down(&self, error: String) {
        self.set_state(State::Down, Some(error));
    }

    /// Sets who hears the notifications this backend sends outside calls. Set before [`start`].
    ///
    /// [`start`]: Backend::start
    pub fn set_notice_handler(&self, handler: NoticeHandler) {
        *self.on_notice.write().unwrap_or_else(|e| e.into_inner()) = Some(handler);
    }

    /// Sends `logging/setLevel` when connected in the handshake era to a backend that offers
    /// logging (2026-07-28 backends get the level with each request instead).
    pub fn set_log_level(&self, level: &str) {
        let conn = self.current_connection();
        let Some(conn) = conn else { return };
        if conn.stateless || conn.capabilities.get("logging").is_none() {
            return;
        }
        if let Err(e) = self.call_with("logging/setLevel", "level", json!(level)) {
            log::debug!("[{}] logging/setLevel failed: {e}", self.config.name);
        }
    }

    /// The connection calls go over now, if any.
    fn current_connection(&self) -> Option<Arc<Connection>> {
        self.connection
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends `method` with one parameter (`key`: `value`) and no caller to report to.
    fn call_with(&self, method: &str, key: &str, value: Value) -> Result<Value, CallError> {
        let mut params = Map::new();
        params.insert(key.into(), value);
        let mut ignore = |_: Value| {};
        self.call(method, &params, CallOptions::default(), &mut ignore)
            .map(ResultJson::into_value)
    }

    /// Sends `method` with `params` to the backend and returns its `result`.
    ///
    /// Notifications the backend sends during the call (progress, log messages) are passed to
    /// `link` with the caller's own progress token put back in place; requests the backend makes
    /// of the client (sampling, elicitation, roots) are asked through `link` and its answer goes
    /// back to the backend under the backend's own request id.
    pub fn call(
        &self,
        method: &str,
        params: &Map<String, Value>,
        options: CallOptions,
        link: &mut dyn ClientLink,
    ) -> Result<ResultJson, CallError> {
        // The wait for a slot counts against the call's time: a call ends within `timeout_ms`.
        let deadline = Instant::now() + self.config.timeout;
        let _slot = self.acquire_slot()?;
        let started = Instant::now();
        let result = self.call_once(method, params, &options, link, true, deadline);
        let mut m = self.status.lock().unwrap_or_else(|e| e.into_inner());
        m.calls += 1;
        m.last_latency_ms = Some(started.elapsed().as_millis() as u64);
        match &result {
            Ok(_) | Err(CallError::Rpc(_)) => {}
            // Not connected: the reason is already the last error; keep it unwrapped.
            Err(CallError::Down { .. }) => m.failures += 1,
            Err(e) => {
                m.failures += 1;
                m.last_error = Some(e.reason());
            }
        }
        result
    }

    fn call_once(
        &self,
        method: &str,
        original: &Map<String, Value>,
        options: &CallOptions,
        link: &mut dyn ClientLink,
        may_retry: bool,
        deadline: Instant,
    ) -> Result<ResultJson, CallError> {
        let conn = self.current_connection();
        let conn = match conn {
            Some(conn) => conn,
            None => self.wait_for_reconnect().ok_or_else(|| {
                let reason = self
                    .status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "not connected yet".to_string());
                CallError::Down {
                    backend: self.config.name.clone(),
                    reason,
                }
            })?,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut params = original.clone();
        let our_token = options
            .progress_token
            .as_ref()
            .map(|_| json!(format!("gw-{}-{id}", self.config.name)));
        if let Some(token) = &our_token {
            meta_mut(&mut params).insert("progressToken".to_string(), token.clone());
        }
        if conn.stateless {
            add_envelope(&mut params, link.capabilities());
            if let Some(level) = link.log_level() {
                meta_mut(&mut params)
                    .entry(META_LOG_LEVEL.to_string())
                    .or_insert(json!(level));
            }
        }
        let request = jsonrpc::request(&json!(id), method, Value::Object(params));
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // Its whole time went waiting for a slot.
            return Err(CallError::Busy {
                backend: self.config.name.clone(),
            });
        }
        if let Some(key) = &options.cancel_key {
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), (id, Arc::clone(&conn)));
        }
        let transport = &conn.transport;
        let mut forward = |message: Value| {
            if message.get("method").is_some() && message.get("id").is_some() {
                let reply = relay_server_request(&message, link, &self.config.name);
                if let Err(e) = transport.send(&reply) {
                    log::debug!("[{}] could not answer its request: {e}", self.config.name);
                }
                return;
            }
            let mut message = message;
            let method = message.get("method").and_then(Value::as_str).unwrap_or("");
            if method.ends_with("/list_changed") {
                // Ours to act on (refresh the catalog, tell our clients), not the caller's.
                announce(&self.announced, method);
                self.nudge(SupervisorMsg::Refresh);
                return;
            }
            if method == "notifications/cancelled" {
                // It names one of the backend's own requests to the client, under the backend's
                // id, which the client never saw; by the time it is read here, that question
                // has been answered already.
                return;
            }
            let is_progress =
                message.get("method").and_then(Value::as_str) == Some("notifications/progress");
            if is_progress {
                match (
                    &options.progress_token,
                    message.pointer_mut("/params/progressToken"),
                ) {
                    (Some(theirs), Some(token)) if Some(&*token) == our_token.as_ref() => {
                        *token = theirs.clone()
                    }
                    _ => return,
                }
            }
            link.notify(message);
        };
        let outcome = transport.request(&request, our_token.as_ref(), left, &mut forward);
        if let Some(key) = &options.cancel_key {
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key);
        }
        match outcome {
            Ok(Reply::Error(error)) => Err(CallError::Rpc(RpcError::from_value(&error))),
            Ok(Reply::Result(result)) => Ok(result),
            Err(TransportError::SessionExpired) if may_retry => {
                log::info!(
                    "[{}] backend session expired; initialising again",
                    self.config.name
                );
                match self.reconnect_now() {
                    Ok(()) => self.call_once(method, original, options, link, false, deadline),
                    Err(e) => Err(CallError::Down {
                        backend: self.config.name.clone(),
                        reason: e,
                    }),
                }
            }
            Err(TransportError::Timeout(_)) => {
                let cancel = jsonrpc::notification(
                    "notifications/cancelled",
                    json!({"requestId": id, "reason": "timed out in mcp-gateway"}),
                );
                let _ = transport.send(&cancel);
                Err(CallError::Timeout {
                    backend: self.config.name.clone(),
                    after: self.config.timeout,
                })
            }
            Err(e @ (TransportError::Unavailable(_) | TransportError::Closed)) => {
                self.nudge(SupervisorMsg::ConnectionFailed);
                Err(CallError::Down {
                    backend: self.config.name.clone(),
                    reason: e.to_string(),
                })
            }
            Err(e) => Err(CallError::Failed {
                backend: self.config.name.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// Cancels the call registered under `key`, if it is still running.
    pub fn cancel(&self, key: &str, reason: Option<&str>) {
        let entry = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if let Some((id, conn)) = entry {
            let mut params = json!({"requestId": id});
            if let Some(r) = reason {
                params["reason"] = json!(r);
            }
            let _ = conn
                .transport
                .send(&jsonrpc::notification("notifications/cancelled", params));
        }
    }

    /// For a call to a backend that is down: asks the supervisor to try now and waits briefly
    /// for the connection. `None` if it is still down.
    fn wait_for_reconnect(&self) -> Option<Arc<Connection>> {
        if !self.config.enabled || self.stopped.load(Ordering::SeqCst) {
            return None;
        }
        let deadline = Instant::now() + RECONNECT_WAIT.min(self.config.timeout);
        let mut polls = 0u32;
        while Instant::now() < deadline {
            // Asked again now and then: the supervisor ignores requests that come too soon
            // after its last attempt.
            if polls % 10 == 0 {
                self.nudge(SupervisorMsg::RetryNow);
            }
            polls += 1;
            std::thread::sleep(Duration::from_millis(25));
            let conn = self.current_connection();
            if conn.is_some() {
                return conn;
            }
        }
        None
    }

    fn acquire_slot(&self) -> Result<SlotGuard<'_>, CallError> {
        // Waiting holds a worker thread, so wait briefly: a backend that stays saturated must not
        // take every worker of the gateway with it.
        let deadline = Instant::now() + self.config.timeout.min(SLOT_WAIT);
        let mut state = self.slots.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.busy >= self.slots.max {
            let now = Instant::now();
            if now >= deadline {
                return Err(CallError::Busy {
                    backend: self.config.name.clone(),
                });
            }
            state.waiting += 1;
            state = self
                .slots
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            state.waiting -= 1;
        }
        state.busy += 1;
        Ok(SlotGuard { slots: &self.slots })
    }

    /// Connects again right away (after an expired session), replacing the connection.
    fn reconnect_now(&self) -> Result<(), String> {
        let conn = self.connect()?;
        let old = self
            .connection
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .replace(conn);
        if let Some(old) = old {
            old.transport.close();
        }
        Ok(())
    }

    /// On a 2026-07-28 backend, change notifications and resource updates come on a long-lived
    /// `subscriptions/listen` request; (re)opens it on `conn` asking for the list changes the
    /// backend offers and the resources clients subscribed to.
    fn listen_for_changes(&self, conn: &Connection, wait: bool) {
        let mut wants: Map<String, Value> = [
            ("tools", "toolsListChanged"),
            ("prompts", "promptsListChanged"),
            ("resources", "resourcesListChanged"),
        ]
        .into_iter()
        .filter(|(cap, _)| {
            conn.capabilities
                .get(cap)
                .and_then(|c| c.get("listChanged"))
                .and_then(Value::as_bool)
                == Some(true)
        })
        .map(|(_, key)| (key.to_string(), json!(true)))
        .collect();
        let subscribed = self.subscribed_uris();
        if !subscribed.is_empty() {
            wants.insert("resourceSubscriptions".into(), json!(subscribed));
        }
        if wants.is_empty() {
            return;
        }
        let id = json!(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut params = Map::new();
        params.insert("notifications".into(), Value::Object(wants));
        add_envelope(&mut params, json!({}));
        let request = jsonrpc::request(&id, "subscriptions/listen", Value::Object(params));
        let previous = self
            .listen_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(id);
        conn.transport.open_subscription(request, previous, wait);
    }

    /// Subscribes (`on`) or unsubscribes one client to updates of `uri`. Counted: the backend
    /// hears `resources/subscribe` for the first subscriber and `unsubscribe` after the last
    /// (2026-07-28 backends: the URI joins or leaves the listen request).
    pub fn set_subscription(&self, uri: &str, on: bool) -> Result<(), CallError> {
        let changed = {
            let mut subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
            let count = subs.entry(uri.to_string()).or_insert(0);
            let before = *count;
            *count = if on {
                before + 1
            } else {
                before.saturating_sub(1)
            };
            let after = *count;
            if after == 0 {
                subs.remove(uri);
            }
            (before == 0) != (after == 0)
        };
        if !changed {
            return Ok(());
        }
        let conn = self.current_connection();
        let Some(conn) = conn else { return Ok(()) };
        if conn.stateless {
            self.listen_for_changes(&conn, true);
            return Ok(());
        }
        let method = if on {
            "resources/subscribe"
        } else {
            "resources/unsubscribe"
        };
        self.call_with(method, "uri", json!(uri)).map(|_| ())
    }

    /// The resource URIs some client is subscribed to.
    fn subscribed_uris(&self) -> Vec<String> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// After a reconnection: the subscriptions clients hold are made again on the new
    /// connection (handshake era; 2026-07-28 backends get them in the listen request).
    fn resubscribe(&self, conn: &Connection) {
        if conn.stateless {
            return;
        }
        let uris = self.subscribed_uris();
        for uri in uris {
            if let Err(e) = self.call_with("resources/subscribe", "uri", json!(uri)) {
                log::debug!(
                    "[{}] cannot subscribe to {uri} again: {e}",
                    self.config.name
                );
            }
        }
    }

    fn supervise(self: Arc<Self>, rx: &Receiver<SupervisorMsg>) {
        let mut backoff = BACKOFF_START;
        while !self.stopped.load(Ordering::SeqCst) {
            match self.connect() {
                Ok(conn) => {
                    backoff = BACKOFF_START;
                    log::info!(
                        "[{}] connected ({}, protocol {})",
                        self.config.name,
                        self.config.transport.kind(),
                        conn.version
                    );
                    if conn.stateless {
                        *self.listen_id.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        self.listen_for_changes(&conn, false);
                    }
                    *self.connection.write().unwrap_or_else(|e| e.into_inner()) =
                        Some(Arc::clone(&conn));
                    self.resubscribe(&conn);
                    // Drop failures reported about the previous connection.
                    while let Ok(msg) = rx.try_recv() {
                        if let SupervisorMsg::Stop = msg {
                            return;
                        }
                    }
                    self.refresh_lists();
                    self.set_state(State::Up, None);
                    self.watch(rx);
                    if self.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let reason = "connection lost".to_string();
                    log::warn!("[{}] {reason}; reconnecting", self.config.name);
                    if let Some(old) = self
                        .connection
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                    {
                        old.transport.close();
                    }
                    self.set_down(reason);
                }
                Err(reason) => {
                    log::warn!(
                        "[{}] cannot connect: {reason}; next try in {} s",
                        self.config.name,
                        backoff.as_secs()
                    );
                    self.set_down(reason);
                    // Wait for the backoff, but stay responsive to a stop, and try again at once
                    // when a caller wants the backend (it may just have been restarted).
                    let attempted = Instant::now();
                    let until = attempted + backoff;
                    while Instant::now() < until {
                        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                            Ok(SupervisorMsg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                            Ok(SupervisorMsg::RetryNow)
                                if attempted.elapsed() >= RETRY_NOW_MIN_GAP =>
                            {
                                break
                            }
                            _ => {}
                        }
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Runs while connected: refreshes lists on notification or timer, answers server requests,
    /// returns when the connection is dead.
    fn watch(&self, rx: &Receiver<SupervisorMsg>) {
        let mut next_refresh = Instant::now() + self.refresh_interval;
        loop {
            let alive = self
                .connection
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|c| c.transport.is_alive())
                .unwrap_or(false);
            if !alive {
                return;
            }
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(SupervisorMsg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(SupervisorMsg::Refresh) => {
                    // Several notifications often come in a burst: drain them, list once.
                    while let Ok(SupervisorMsg::Refresh) = rx.try_recv() {}
                    self.refresh_lists();
                    next_refresh = Instant::now() + self.refresh_interval;
                }
                Ok(SupervisorMsg::ServerRequest(request)) => {
                    if let Some(conn) = self.current_connection() {
                        answer_server_request(conn.transport.as_ref(), &request, &self.config.name);
                    }
                }
                Ok(SupervisorMsg::ConnectionFailed) => return,
                Ok(SupervisorMsg::RetryNow) => {}
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_refresh {
                self.refresh_lists();
                next_refresh = Instant::now() + self.refresh_interval;
            }
        }
    }

    fn unsolicited_handler(&self) -> UnsolicitedHandler {
        let tx = Mutex::new(
            self.supervisor
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        );
        let name = self.config.name.clone();
        let announced = Arc::clone(&self.announced);
        let on_notice = self
            .on_notice
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Arc::new(move |message: Value| {
            let method = message.get("method").and_then(Value::as_str).unwrap_or("");
            let msg = if message.get("id").is_some() && !method.is_empty() {
                SupervisorMsg::ServerRequest(message.clone())
            } else if method.ends_with("/list_changed") {
                announce(&announced, method);
                SupervisorMsg::Refresh
            } else if method == "notifications/resources/updated" {
                if let Some(handler) = &on_notice {
                    handler(&message);
                }
                return;
            } else {
                if method == "notifications/message" {
                    log::info!(
                        "[{name}] {}",
                        message
                            .get("params")
                            .map(Value::to_string)
                            .unwrap_or_default()
                    );
                }
                return;
            };
            if let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = tx.send(msg);
            }
        })
    }

    /// Opens the transport and negotiates the protocol.
    fn connect(&self) -> Result<Arc<Connection>, String> {
        let name = &self.config.name;
        let timeout = self.config.timeout.min(CONNECT_TIMEOUT_CAP);
        let handler = self.unsolicited_handler();
        match &self.config.transport {
            TransportConfig::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let t =
                    stdio::StdioTransport::spawn(name, command, args, env, cwd.as_deref(), handler)
                        .map_err(|e| e.to_string())?;
                negotiate(Box::new(t), timeout, true)
            }
            TransportConfig::StreamableHttp { url, headers } => {
                let t = http::HttpTransport::new(name, url, headers.clone(), handler)
                    .map_err(|e| e.to_string())?;
                negotiate(Box::new(t), timeout, true)
            }
            TransportConfig::Sse { url, headers } => {
                let t = legacy_sse::LegacySseTransport::connect(
                    name,
                    url,
                    headers.clone(),
                    timeout,
                    handler,
                )
                .map_err(|e| e.to_string())?;
                negotiate(Box::new(t), timeout, false)
            }
            TransportConfig::AutoHttp { url, headers } => {
                let t = http::HttpTransport::new(name, url, headers.clone(), Arc::clone(&handler))
                    .map_err(|e| e.to_string())?;
                match negotiate(Box::new(t), timeout, true) {
                    Ok(conn) => Ok(conn),
                    Err(http_error) => {
                        log::info!("[{name}] Streamable HTTP failed ({http_error}); trying the older HTTP+SSE transport");
                        let t = legacy_sse::LegacySseTransport::connect(
                            name,
                            url,
                            headers.clone(),
                            timeout,
                            handler,
                        )
                        .map_err(|e| {
                            format!(
                                "neither Streamable HTTP ({http_error}) nor HTTP+SSE ({e}) worked"
                            )
                        })?;
                        negotiate(Box::new(t), timeout, false)
                    }
                }
            }
        }
    }

    fn refresh_lists(&self) {
        let Some(conn) = self.current_connection() else {
            return;
        };
        let caps = &conn.capabilities;
        let mut lists = Lists::default();
        let mut failed = None;
        for kind in crate::mcp::ListKind::ALL {
            let (capability, method) = (kind.capability(), kind.method());
            if caps.get(capability).is_none() {
                continue;
            }
            match self.list_all(method, kind.result_key()) {
                Ok((items, said)) => {
                    *lists.items_mut(kind) = items;
                    lists.cache_hints[kind.index()] = said;
                }
                Err(CallError::Rpc(e)) => {
                    log::debug!("[{}] {method}: {}", self.config.name, e.message)
                }
                Err(e) => {
                    log::warn!("[{}] {method} failed: {e}", self.config.name);
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_some() {
            // Keep the lists we had; a transient failure must not empty the catalog.
            return;
        }
        if conn.stateless {
            let marked = lists
                .tools
                .iter()
                .filter_map(|tool| {
                    let name = tool.get("name")?.as_str()?;
                    let params = crate::mcp::param_headers::marked(tool.get("inputSchema")?);
                    (!params.is_empty()).then(|| (name.to_string(), params))
                })
                .collect();
            conn.transport.set_param_headers(marked);
        }
        let changed = {
            let mut current = self.lists.write().unwrap_or_else(|e| e.into_inner());
            let changed = **current != lists;
            if changed {
                *current = Arc::new(lists);
            }
            changed
        };
        let announced = !self
            .announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if changed || announced {
            (self.on_change)();
        }
    }

    fn list_all(&self, method: &str, key: &str) -> Result<(Vec<Value>, CacheHint), CallError> {
        let mut items = Vec::new();
        let mut hint = CacheHint {
            ttl_ms: None,
            public: true,
        };
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut params = Map::new();
            if let Some(c) = cursor.take() {
                params.insert("cursor".to_string(), c);
            }
            let result = self
                .call(method, &params, CallOptions::default(), &mut |_| {})?
                .into_value();
            if let Some(Value::Array(page)) = result.get(key) {
                items.extend(page.iter().cloned());
            }
            if let Some(ttl) = result.get("ttlMs").and_then(Value::as_u64) {
                hint.ttl_ms = Some(hint.ttl_ms.map_or(ttl, |t| t.min(ttl)));
            }
            hint.public &= result.get("cacheScope").and_then(Value::as_str) == Some("public");
            match result.get("nextCursor") {
                Some(c @ Value::String(s)) if !s.is_empty() => cursor = Some(c.clone()),
                _ => return Ok((items, hint)),
            }
        }
        log::warn!(
            "[{}] {method} returned more than {MAX_LIST_PAGES} pages; keeping the first ones",
            self.config.name
        );
        Ok((items, hint))
    }
}

#[derive(Default)]
struct SlotState {
    busy: usize,
    waiting: usize,
}

struct SlotGuard<'a> {
    slots: &'a Slots,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.slots.state.lock().unwrap_or_else(|e| e.into_inner());
        state.busy = state.busy.saturating_sub(1);
        if state.waiting > 0 {
            self.slots.freed.notify_one();
        }
    }
}

fn meta_mut(params: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let meta = params
        .entry("_meta".to_string())
        .or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta {
        Value::Object(m) => m,
        // Just made an object above.
        _ => unreachable!("_meta was set to an object"),
    }
}

/// Our client identity.
pub fn client_info() -> Value {
    json!({"name": "mcp-gateway", "version": env!("CARGO_PKG_VERSION")})
}

/// Adds the 2026-07-28 per-request envelope to `params._meta`, declaring `capabilities` as the
/// client's.
fn add_envelope(params: &mut Map<String, Value>, capabilities: Value) {
    let meta = meta_mut(params);
    meta.insert(META_PROTOCOL_VERSION.to_string(), json!(MODERN_VERSION));
    meta.insert(META_CLIENT_INFO.to_string(), client_info());
    meta.insert(META_CLIENT_CAPABILITIES.to_string(), capabilities);
}

/// What mcp-gateway declares to handshake-era backends: it can pass every client request on (to
/// the client that made the call, when that client declared the capability itself).
fn declared_capabilities() -> Value {
    json!({"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {}})
}

/// The reply to a request the backend sent during a call: `ping` is ours to answer; sampling,
/// elicitation and roots are asked of the calling client through `link`; anything else is a
/// clear JSON-RPC error.
fn relay_server_request(request: &Value, link: &mut dyn ClientLink, backend: &str) -> Value {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let params = request.get("params").cloned().unwrap_or_else(|| json!({}));
    let answer = if method == "ping" {
        Ok(json!({}))
    } else if CLIENT_METHODS.contains(&method) {
        link.ask(method, params)
    } else {
        Err(RpcError::new(
            jsonrpc::METHOD_NOT_FOUND,
            format!("mcp-gateway does not relay {method} to clients"),
        ))
    };
    match answer {
        Ok(result) => jsonrpc::response(&id, result),
        Err(error) => {
            log::info!(
                "[{backend}] its {method} request was refused: {}",
                error.message
            );
            jsonrpc::error_response(&id, &error)
        }
    }
}

/// Answers a request the backend sent outside any call: no client to ask, so `ping` gets its
/// empty result and everything else a clear JSON-RPC error.
fn answer_server_request(transport: &dyn Transport, request: &Value, backend: &str) {
    let mut nobody = |_: Value| {};
    let reply = relay_server_request(request, &mut nobody, backend);
    if let Err(e) = transport.send(&reply) {
        log::debug!("[{backend}] could not answer its request: {e}");
    }
}

/// Negotiates the protocol on a fresh transport: probe `server/discover` (when `probe_modern`),
/// fall back to `initialize`.
fn negotiate(
    transport: Box<dyn Transport>,
    timeout: Duration,
    probe_modern: bool,
) -> Result<Arc<Connection>, String> {
    match negotiate_inner(transport.as_ref(), timeout, probe_modern) {
        Ok((stateless, version, capabilities, server_info)) => Ok(Arc::new(Connection {
            transport,
            stateless,
            version,
            capabilities,
            server_info,
        })),
        Err(e) => {
            transport.close();
            Err(e)
        }
    }
}

fn negotiate_inner(
    transport: &dyn Transport,
    timeout: Duration,
    probe_modern: bool,
) -> Result<(bool, String, Value, Value), String> {
    let mut ignore = |_message: Value| {};
    if probe_modern {
        transport.set_protocol(WireProtocol {
            version: Some(MODERN_VERSION.to_string()),
            stateless: true,
        });
        let mut params = Map::new();
        add_envelope(&mut params, json!({}));
        let probe = jsonrpc::request(&json!(0), "server/discover", Value::Object(params));
        match transport.request(&probe, None, timeout, &mut ignore) {
            Ok(Reply::Error(_)) => {}
            Ok(Reply::Result(result)) => {
                let result = result.into_value();
                let supported = result
                    .get("supportedVersions")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().any(|x| x == MODERN_VERSION))
                    .unwrap_or(false);
                if supported {
                    let info = result
                        .pointer(&format!("/_meta/{}", META_SERVER_INFO.replace('/', "~1")))
                        .or_else(|| result.get("serverInfo"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    return Ok((
                        true,
                        MODERN_VERSION.to_string(),
                        result
                            .get("capabilities")
                            .cloned()
                            .unwrap_or_else(|| json!({})),
                        info,
                    ));
                }
            }
            Err(
                e @ (TransportError::Unavailable(_)
                | TransportError::Timeout(_)
                | TransportError::Closed),
            ) => return Err(e.to_string()),
            Err(_) => {} // any other answer means: not a 2026-07-28 server
        }
        if !transport.is_alive() {
            return Err("the backend closed the connection".to_string());
        }
        transport.set_protocol(WireProtocol::default());
    }
    let params = json!({"protocolVersion": HANDSHAKE_VERSIONS[0], "capabilities": declared_capabilities(), "clientInfo": client_info()});
    let init = jsonrpc::request(&json!(0), "initialize", params);
    let result = match transport
        .request(&init, None, timeout, &mut ignore)
        .map_err(|e| e.to_string())?
    {
        Reply::Error(error) => {
            return Err(format!(
                "initialize was refused: {}",
                RpcError::from_value(&error).message
            ))
        }
        Reply::Result(result) => result.into_value(),
    };
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !HANDSHAKE_VERSIONS.contains(&version.as_str()) {
        return Err(format!("the backend speaks protocol \"{version}\", which mcp-gateway does not know (it speaks {MODERN_VERSION} and {})", HANDSHAKE_VERSIONS.join(", ")));
    }
    transport.set_protocol(WireProtocol {
        version: Some(version.clone()),
        stateless: false,
    });
    transport
        .send(&jsonrpc::notification(
            "notifications/initialized",
            json!({}),
        ))
        .map_err(|e| e.to_string())?;
    transport.open_listen_stream();
    Ok((
        false,
        version,
        result
            .get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({})),
        result.get("serverInfo").cloned().unwrap_or(Value::Null),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Naming, TransportConfig};

    fn backend(max_calls: usize, timeout: Duration) -> Arc<Backend> {
        let config = ServerConfig {
            name: "slots".into(),
            transport: TransportConfig::StreamableHttp {
                url: "http://127.0.0.1:9/mcp".into(),
                headers: Vec::new(),
            },
            timeout,
            enabled: false,
            tools_allow: Vec::new(),
            tools_deny: Vec::new(),
            naming: Naming::prefixed("slots"),
            confirm: Vec::new(),
            read_only_tools: Vec::new(),
            cache_ttl: None,
        };
        Backend::new(config, max_calls, Duration::from_secs(300), Box::new(|| {}))
    }

    #[test]
    fn a_freed_slot_goes_to_a_waiting_call_and_a_full_backend_says_busy() {
        let b = backend(1, Duration::from_secs(5));
        let held = b.acquire_slot().expect("the first slot");
        assert_eq!(b.busy(), 1);
        let waiter = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.acquire_slot().map(|_| ()).is_ok())
        };
        // Bounded wait until the other thread is waiting for the slot.
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.slots.state.lock().unwrap().waiting == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(b.slots.state.lock().unwrap().waiting, 1);
        drop(held);
        assert!(
            waiter.join().unwrap(),
            "the waiting call got the freed slot"
        );
        assert_eq!(b.busy(), 0);

        let quick = backend(1, Duration::from_millis(50));
        let _held = quick.acquire_slot().expect("the first slot");
        assert!(matches!(quick.acquire_slot(), Err(CallError::Busy { .. })));
        assert_eq!(quick.slots.state.lock().unwrap().waiting, 0);
    }
}
