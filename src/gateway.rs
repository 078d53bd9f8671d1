//! The core every face calls: the backends, the aggregated catalog, the token store, and the
//! one path a tool call takes (route, call, report).

use crate::audit::AuditContext;
use crate::backend::{Backend, CallError, CallOptions};
use crate::builtin;
use crate::catalog::{Catalog, Route, Source};
use crate::config::Config;
use crate::jsonrpc::{self, RpcError};
use crate::link::ClientLink;
use crate::oauth::OAuthServer;
use crate::tokens::TokenStore;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Instant;

/// How many `input_required` rounds one request may take before mcp-gateway gives up.
pub const MAX_INPUT_ROUNDS: usize = 10;

/// Who is calling: a static token's name or an OAuth grant, and which backends it may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// For logs: the token's name, or `oauth:<client name>`.
    pub name: String,
    /// Backends it may use (`None`: all).
    pub servers: Option<Vec<String>>,
}

impl Principal {
    /// A principal that may use everything.
    pub fn unrestricted(name: impl Into<String>) -> Principal {
        Principal {
            name: name.into(),
            servers: None,
        }
    }

    /// Whether it may use the backend named `server`.
    pub fn may_use(&self, server: &str) -> bool {
        self.servers
            .as_ref()
            .map(|s| s.iter().any(|x| x == server))
            .unwrap_or(true)
    }
}

/// Logs each clash once, when it appears (rebuilds often find the same ones again), and notes the
/// ones that went away.
fn log_clash_changes(before: &[String], after: &[String]) {
    for clash in after.iter().filter(|c| !before.contains(c)) {
        log::warn!("{clash}");
    }
    for gone in before.iter().filter(|c| !after.contains(c)) {
        log::info!("no longer a clash: {gone}");
    }
}

pub use crate::mcp::ListKind;

/// A callback told when lists change (faces use it to notify their clients).
pub type ChangeListener = Box<dyn Fn(&[ListKind]) + Send + Sync>;

/// Called with a backend's index and a notification it sent outside any call (e.g.
/// `notifications/resources/updated`).
pub type NoticeListener = Box<dyn Fn(usize, &Value) + Send + Sync>;

/// The running gateway.
pub struct Gateway {
    /// The configuration it runs with.
    pub config: Config,
    /// Backends in config order.
    pub backends: Vec<Arc<Backend>>,
    /// Bearer tokens.
    pub tokens: TokenStore,
    /// The OAuth authorization server.
    pub oauth: OAuthServer,
    /// When it started.
    pub started: Instant,
    catalog: RwLock<Arc<Catalog>>,
    /// Rebuilds run one at a time, so the last one always reflects the newest lists.
    rebuilding: Mutex<()>,
    /// The audit log.
    pub audit: crate::audit::AuditLog,
    /// The counters behind `/metrics`.
    pub metrics: crate::metrics::Metrics,
    listeners: RwLock<Vec<ChangeListener>>,
    notice_listeners: Arc<RwLock<Vec<NoticeListener>>>,
}

impl Gateway {
    /// Builds the gateway and starts its backends (in the background: this returns at once).
    pub fn start(config: Config, tokens: TokenStore, oauth: OAuthServer) -> Arc<Gateway> {
        // A backend may hold at most all workers but one, so a stuck backend cannot take every
        // worker (and with them /health and the other backends) down with it.
        let max_calls = config
            .limits
            .max_calls_per_backend
            .min(config.workers.saturating_sub(1).max(1));
        let gateway = Arc::new_cyclic(|weak: &Weak<Gateway>| {
            let backends = config
                .servers
                .iter()
                .map(|server| {
                    let weak = weak.clone();
                    Backend::new(
                        server.clone(),
                        max_calls,
                        config.limits.refresh_interval,
                        Box::new(move || {
                            if let Some(gateway) = weak.upgrade() {
                                gateway.rebuild_catalog();
                            }
                        }),
                    )
                })
                .collect();
            Gateway {
                config: config.clone(),
                backends,
                tokens,
                oauth,
                started: Instant::now(),
                catalog: RwLock::new(Arc::new(Catalog::default())),
                rebuilding: Mutex::new(()),
                audit: crate::audit::AuditLog::start(&config.audit, &config.state_dir),
                metrics: crate::metrics::Metrics::new(),
                listeners: RwLock::new(Vec::new()),
                notice_listeners: Arc::new(RwLock::new(Vec::new())),
            }
        });
        for (index, backend) in gateway.backends.iter().enumerate() {
            let listeners = Arc::clone(&gateway.notice_listeners);
            backend.set_notice_handler(Arc::new(move |message: &Value| {
                for listener in listeners.read().unwrap_or_else(|e| e.into_inner()).iter() {
                    listener(index, message);
                }
            }));
        }
        gateway.rebuild_catalog();
        for backend in &gateway.backends {
            backend.start();
        }
        gateway
    }

    /// Stops every backend.
    pub fn stop(&self) {
        for backend in &self.backends {
            backend.stop();
        }
        self.tokens.flush_usage();
    }

    /// Registers a listener for list changes.
    pub fn on_lists_changed(&self, listener: ChangeListener) {
        self.listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(listener);
    }

    /// Registers a listener for notifications backends send outside calls.
    pub fn on_backend_notice(&self, listener: NoticeListener) {
        self.notice_listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(listener);
    }

    /// Subscribes (`on`) or unsubscribes one client to updates of resource `uri` of backend
    /// `index` (counted per URI, so one client leaving does not end another's updates).
    pub fn set_subscription(&self, index: usize, uri: &str, on: bool) -> Result<(), RpcError> {
        let Some(backend) = self.backends.get(index) else {
            return Err(RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                "route to a backend that does not exist",
            ));
        };
        backend.set_subscription(uri, on).map_err(|e| e.to_rpc())
    }

    /// Sends `logging/setLevel` to every handshake-era backend that offers logging.
    pub fn set_backend_log_level(&self, level: &str) {
        for backend in &self.backends {
            backend.set_log_level(level);
        }
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Builds the catalog again from the backends' lists; tells listeners what changed.
    pub fn rebuild_catalog(&self) {
        let _one_at_a_time = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        let lists: Vec<_> = self.backends.iter().map(|b| b.lists()).collect();
        let sources: Vec<Source<'_>> = self
            .backends
            .iter()
            .zip(&lists)
            .map(|(b, l)| Source {
                server: b.name(),
                allow: &b.config.tools_allow,
                deny: &b.config.tools_deny,
                naming: &b.config.naming,
                lists: l,
            })
            .collect();
        let fresh = Catalog::build(builtin::tool_definitions(), &sources);
        let previous = self.catalog();
        log_clash_changes(&previous.clashes, &fresh.clashes);
        let before = previous.fingerprints();
        let after = fresh.fingerprints();
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        let mut kinds: Vec<ListKind> = ListKind::ALL
            .into_iter()
            .zip(before.iter().zip(after.iter()))
            .filter(|(_, (b, a))| b != a)
            .map(|(k, _)| k)
            .collect();
        // A backend that said its list changed is believed, even when it reads back the same.
        for kind in self.backends.iter().flat_map(|b| b.take_announced()) {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if !kinds.is_empty() {
            for listener in self
                .listeners
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                listener(&kinds);
            }
        }
    }

    /// Calls the namespaced tool `name` with `arguments` for `principal`. A tool the principal
    /// may not use is answered as unknown, so its existence is not revealed.
    pub fn call_tool(
        &self,
        principal: &Principal,
        name: &str,
        arguments: Value,
        options: CallOptions,
        link: &mut dyn ClientLink,
    ) -> Result<Value, RpcError> {
        let mut params = Map::new();
        params.insert("name".into(), json!(name));
        params.insert("arguments".into(), arguments);
        self.call_tool_params(principal, params, options, link)
    }

    /// Like [`Gateway::call_tool`], with the client's whole `tools/call` params (`name`,
    /// `arguments` and whatever else it sent, e.g. `inputResponses`, `requestState`, `_meta`),
    /// which reach the backend as they are but for the tool's own name.
    pub fn call_tool_params(
        &self,
        principal: &Principal,
        mut params: Map<String, Value>,
        options: CallOptions,
        link: &mut dyn ClientLink,
    ) -> Result<Value, RpcError> {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let catalog = self.catalog();
        let route = catalog.tool(&name).filter(|route| match route {
            Route::Builtin(_) => true,
            Route::Backend { backend, .. } => self.allows(principal, *backend),
        });
        match route {
            None => {
                let error = RpcError::new(
                    jsonrpc::INVALID_PARAMS,
                    format!(
                        "unknown tool \"{name}\" (tools/list shows the tools this gateway offers)"
                    ),
                )
                .with_data(json!({"name": name}));
                let call = Audited::tool("", &name, &params);
                self.audit_refusal(options.audit.as_ref(), &call, &error);
                Err(error)
            }
            Some(Route::Builtin(tool)) => {
                let arguments = params
                    .get("arguments")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                let started = Instant::now();
                let outcome = builtin::call(self, principal, tool, &arguments);
                let call = Audited::tool("gateway", &name, &params);
                self.audit_outcome(options.audit.as_ref(), &call, started, &outcome);
                outcome
            }
            Some(Route::Backend { backend, original }) => {
                // The backend never sees a call its own schema refuses.
                if let Some(schema) = catalog.tool_schema(&name) {
                    let empty = Value::Object(Map::new());
                    let arguments = params.get("arguments").unwrap_or(&empty);
                    let violations = schema.validate(arguments);
                    if !violations.is_empty() {
                        let error = invalid_arguments(&name, &violations);
                        let server = self.backends.get(*backend).map(|b| b.name()).unwrap_or("");
                        let call = Audited::tool(server, &name, &params);
                        self.audit_refusal(options.audit.as_ref(), &call, &error);
                        return Err(error);
                    }
                }
                // The backend gets its own name; the audit line keeps the one the client used.
                params.insert("name".into(), json!(original));
                let started = Instant::now();
                let mut options = options;
                let who = options.audit.take();
                let outcome =
                    self.forward_unaudited(*backend, "tools/call", &params, options, link);
                let server = self.backends.get(*backend).map(|b| b.name()).unwrap_or("");
                let call = Audited::tool(server, &name, &params);
                self.audit_outcome(who.as_ref(), &call, started, &outcome);
                outcome
            }
        }
    }

    /// Sends `method` to backend `index`, mapping failures to JSON-RPC errors.
    ///
    /// When a 2026-07-28 backend answers `input_required` and the client does not speak that
    /// revision, the embedded requests are asked of the client through `link` (as the handshake
    /// era's requests) and the request is sent again with the answers, up to
    /// [`MAX_INPUT_ROUNDS`] times.
    pub fn forward(
        &self,
        index: usize,
        method: &str,
        params: Map<String, Value>,
        options: CallOptions,
        link: &mut dyn ClientLink,
    ) -> Result<Value, RpcError> {
        // Prompts and resources are audited here; tools in `call_tool_params`, under the name
        // the client used.
        let audited = matches!(method, "prompts/get" | "resources/read");
        if !audited {
            return self.forward_unaudited(index, method, &params, options, link);
        }
        let name = params
            .get(if method == "resources/read" {
                "uri"
            } else {
                "name"
            })
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut options = options;
        let who = options.audit.take();
        let started = Instant::now();
        let outcome = self.forward_unaudited(index, method, &params, options, link);
        let server = self.backends.get(index).map(|b| b.name()).unwrap_or("");
        let call = Audited {
            action: method,
            server,
            name: &name,
            params: &params,
        };
        self.audit_outcome(who.as_ref(), &call, started, &outcome);
        outcome
    }

    /// Writes the audit line of a call that was made.
    fn audit_outcome(
        &self,
        who: Option<&AuditContext>,
        call: &Audited<'_>,
        started: Instant,
        outcome: &Result<Value, RpcError>,
    ) {
        let (label, detail, bytes) = match outcome {
            Ok(result) => {
                let failed = result.get("isError").and_then(Value::as_bool) == Some(true);
                let label = if failed { "error" } else { "ok" };
                (label, None, Some(crate::audit::approximate_size(result)))
            }
            Err(e) => ("error", Some(e.message.as_str()), None),
        };
        self.audit_line(who, call, label, detail, Some(started.elapsed()), bytes);
    }

    /// Writes the audit line of a call the gateway refused.
    fn audit_refusal(&self, who: Option<&AuditContext>, call: &Audited<'_>, error: &RpcError) {
        self.audit_line(who, call, "refused", Some(&error.message), None, None);
    }

    fn audit_line(
        &self,
        who: Option<&AuditContext>,
        call: &Audited<'_>,
        outcome: &str,
        detail: Option<&str>,
        duration: Option<std::time::Duration>,
        result_bytes: Option<usize>,
    ) {
        self.metrics.observe(
            call.action,
            call.server,
            call.name,
            outcome,
            duration,
            &self.catalog(),
        );
        let Some(who) = who else { return };
        self.audit.record(&crate::audit::Entry {
            face: who.face,
            principal: &who.principal,
            action: call.action,
            server: call.server,
            name: call.name,
            arguments: call.params.get("arguments"),
            outcome,
            detail,
            duration,
            result_bytes,
        });
    }

    /// Sends `method` to backend `index`, answering the `input_required` rounds of a 2026-07-28
    /// backend for a client that cannot take them itself.
    fn forward_unaudited(
        &self,
        index: usize,
        method: &str,
        params: &Map<String, Value>,
        options: CallOptions,
        link: &mut dyn ClientLink,
    ) -> Result<Value, RpcError> {
        if self.audit.refuses() {
            return Err(RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                "the audit log cannot be written, and audit.on_failure is \"refuse\": no calls until it can",
            ));
        }
        let Some(backend) = self.backends.get(index) else {
            return Err(RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                "route to a backend that does not exist",
            ));
        };
        // The caller keeps `params` (for its audit line); a retry carries the answers as well.
        let mut retry: Option<Map<String, Value>> = None;
        for _ in 0..=MAX_INPUT_ROUNDS {
            let sent = retry.clone().unwrap_or_else(|| params.clone());
            let result = backend
                .call(method, sent, options.clone(), link)
                .map_err(|e| {
                    if !matches!(e, CallError::Rpc(_)) {
                        log::warn!("{method} on '{}' failed: {e}", backend.name());
                    }
                    e.to_rpc()
                })?;
            let input_required =
                result.get("resultType").and_then(Value::as_str) == Some("input_required");
            if !input_required || link.takes_input_required() {
                return Ok(result);
            }
            let answers = ask_embedded_requests(&result, link)?;
            let next = retry.get_or_insert_with(|| params.clone());
            next.insert("inputResponses".into(), Value::Object(answers));
            match result.get("requestState") {
                Some(state) => next.insert("requestState".into(), state.clone()),
                None => next.remove("requestState"),
            };
        }
        Err(RpcError::new(
            jsonrpc::INTERNAL_ERROR,
            format!("'{}' still asked for input after {MAX_INPUT_ROUNDS} rounds; mcp-gateway gave up on this {method}", backend.name()),
        ))
    }

    /// Whether `principal` may use backend `index`.
    pub fn allows(&self, principal: &Principal, index: usize) -> bool {
        self.backends
            .get(index)
            .map(|b| principal.may_use(b.name()))
            .unwrap_or(false)
    }

    /// Cancels a call started with `cancel_key`, wherever it runs.
    pub fn cancel(&self, cancel_key: &str, reason: Option<&str>) {
        for backend in &self.backends {
            backend.cancel(cancel_key, reason);
        }
    }

    /// The status report shared by `/status` and the `gateway__status` tool, showing only the
    /// backends `principal` may use.
    pub fn status_json(&self, principal: &Principal) -> Value {
        let backends: Vec<Value> = self
            .backends
            .iter()
            .filter(|b| principal.may_use(b.name()))
            .map(|b| {
                let s = b.status();
                json!({
                    "name": s.name,
                    "transport": s.transport,
                    "state": s.state.as_str(),
                    "protocol_version": s.protocol_version,
                    "server_info": s.server_info,
                    "tools": s.tools,
                    "last_error": s.last_error,
                    "last_latency_ms": s.last_latency_ms,
                    "calls": s.calls,
                    "failures": s.failures,
                })
            })
            .collect();
        let catalog = self.catalog();
        let allowed = |b: usize| self.allows(principal, b);
        let count = |kind: ListKind| catalog.visible(kind, &allowed).len();
        let clashes = if principal.servers.is_none() {
            catalog.clashes.clone()
        } else {
            Vec::new()
        };
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().as_secs(),
            "tools": count(ListKind::Tools),
            "resources": count(ListKind::Resources),
            "prompts": count(ListKind::Prompts),
            "clashes": clashes,
            "backends": backends,
        })
    }
}

/// Asks the client each request embedded in an `input_required` result; the answers keyed as
/// the backend keyed the requests.
fn ask_embedded_requests(
    result: &Value,
    link: &mut dyn ClientLink,
) -> Result<Map<String, Value>, RpcError> {
    let mut answers = Map::new();
    let requests = result.get("inputRequests").and_then(Value::as_object);
    for (key, request) in requests.into_iter().flatten() {
        let method = request.get("method").and_then(Value::as_str).unwrap_or("");
        let mut params = request.get("params").cloned().unwrap_or_else(|| json!({}));
        crate::link::to_handshake_form(method, &mut params, key);
        let answer = link.ask(method, params)?;
        answers.insert(key.clone(), answer);
    }
    Ok(answers)
}

/// What an audit line says a call was.
struct Audited<'a> {
    action: &'a str,
    server: &'a str,
    name: &'a str,
    params: &'a Map<String, Value>,
}

impl<'a> Audited<'a> {
    fn tool(server: &'a str, name: &'a str, params: &'a Map<String, Value>) -> Audited<'a> {
        Audited {
            action: "tools/call",
            server,
            name,
            params,
        }
    }
}

/// -32602 for arguments the tool's `inputSchema` refuses: every violation with its JSON pointer
/// in the message (a model reads it and can correct its call) and in `data.violations`.
fn invalid_arguments(name: &str, violations: &[crate::policy::Violation]) -> RpcError {
    let listed: Vec<Value> = violations
        .iter()
        .map(|v| json!({"pointer": v.pointer, "message": v.message}))
        .collect();
    RpcError::new(
        jsonrpc::INVALID_PARAMS,
        format!(
            "invalid arguments for tool \"{name}\": {}",
            crate::policy::schema::summary(violations)
        ),
    )
    .with_data(json!({"name": name, "violations": listed}))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that answers every request with what it was asked, and records the questions.
    struct Answering(Vec<String>);

    impl ClientLink for Answering {
        fn notify(&mut self, _message: Value) {}
        fn ask(&mut self, method: &str, params: Value) -> Result<Value, RpcError> {
            self.0.push(method.to_string());
            Ok(json!({"answered": params}))
        }
    }

    #[test]
    fn embedded_requests_are_asked_and_answered_under_their_keys() {
        let interim = json!({
            "resultType": "input_required",
            "inputRequests": {
                "who": {"method": "elicitation/create", "params": {"message": "name?"}},
                "llm": {"method": "sampling/createMessage", "params": {"maxTokens": 5}},
            },
            "requestState": "opaque",
        });
        let mut client = Answering(Vec::new());
        let answers = ask_embedded_requests(&interim, &mut client).unwrap();
        assert_eq!(client.0, ["elicitation/create", "sampling/createMessage"]);
        assert_eq!(answers["who"], json!({"answered": {"message": "name?"}}));
        assert_eq!(answers["llm"], json!({"answered": {"maxTokens": 5}}));
        let mut refusing = |_: Value| {};
        assert!(ask_embedded_requests(&interim, &mut refusing).is_err());
    }
}
