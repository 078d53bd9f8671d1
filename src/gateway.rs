//! The core every face calls: the backends, the aggregated catalog, the token store, and the
//! one path a tool call takes (route, call, report).

use crate::audit::AuditContext;
use crate::backend::{Backend, CallError, CallOptions, ResultJson};
use crate::builtin;
use crate::catalog::{Catalog, Route, Source};
use crate::config::Config;
use crate::jsonrpc::{self, required_str, RpcError};
use crate::link::ClientLink;
use crate::oauth::OAuthServer;
use crate::policy::cache::{self, ResultCache};
use crate::policy::confirm::{self, Fallback, Verdict};
use crate::policy::AccessRule;
use crate::tokens::TokenStore;
use crate::tool_view::{self, ToolView};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Instant;

/// How long a reload waits for the backends it starts to connect before swapping them in.
const RELOAD_START_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How many `input_required` rounds one request may take before mcp-gateway gives up.
pub const MAX_INPUT_ROUNDS: usize = 10;

/// Who is calling: a static token's name or an OAuth grant, and what it may reach.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// For logs: the token's name, or `oauth:<client name>`.
    pub name: String,
    /// Its access rule.
    pub rule: AccessRule,
    /// What its `tools/list` shows (`full` unless its token or grant says `search`).
    pub tool_view: ToolView,
}

impl Principal {
    /// A principal that may use everything.
    pub fn unrestricted(name: impl Into<String>) -> Principal {
        Principal {
            name: name.into(),
            rule: AccessRule::everything(),
            tool_view: ToolView::Full,
        }
    }

    /// The same principal with another tool view.
    pub fn with_view(&self, tool_view: ToolView) -> Principal {
        Principal {
            tool_view,
            ..self.clone()
        }
    }

    /// Whether it may use the backend named `server` at all.
    pub fn may_use(&self, server: &str) -> bool {
        self.rule.permits_server(server)
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

/// Called with a backend's name and a notification it sent outside any call (e.g.
/// `notifications/resources/updated`).
pub type NoticeListener = Box<dyn Fn(&str, &Value) + Send + Sync>;

/// The catalog and the backends it was built from: its routes are indexes into this list, so
/// a request resolves and forwards against one view even while a reload swaps the backends.
struct View {
    catalog: Arc<Catalog>,
    backends: Arc<Vec<Arc<Backend>>>,
    /// List pages as JSON, as a principal with no access rule and the full view sees them, by
    /// list, first entry and page size: made on first request, for the pages a `nextCursor`
    /// leads to only (so at most one copy of each list). A new view starts empty.
    full_pages: Mutex<HashMap<(usize, usize, usize), Arc<ListPage>>>,
}

/// One page of a list as JSON text (the array), and the cursor of the next page.
pub type ListPage = (Vec<u8>, Option<String>);

/// The running gateway.
pub struct Gateway {
    /// The configuration it runs with (replaced by a reload).
    config: RwLock<Arc<Config>>,
    /// Backends in config order (replaced by a reload; requests use the view's).
    configured: RwLock<Arc<Vec<Arc<Backend>>>>,
    /// Bearer tokens.
    pub tokens: TokenStore,
    /// The OAuth authorization server.
    pub oauth: OAuthServer,
    /// When it started.
    pub started: Instant,
    view: RwLock<Arc<View>>,
    /// Rebuilds run one at a time, so the last one always reflects the newest lists.
    rebuilding: Mutex<()>,
    /// Reloads run one at a time.
    reloading: Mutex<()>,
    /// The audit log.
    pub audit: crate::audit::AuditLog,
    /// Results of read-only tools of servers with `cache_ttl_secs`.
    pub cache: ResultCache,
    /// The counters behind `/metrics`.
    pub metrics: crate::metrics::Metrics,
    listeners: RwLock<Vec<ChangeListener>>,
    notice_listeners: Arc<RwLock<Vec<NoticeListener>>>,
    /// Itself, for the callbacks of backends a reload adds.
    me: Weak<Gateway>,
}

impl Gateway {
    /// Builds the gateway and starts its backends (in the background: this returns at once).
    pub fn start(config: Config, tokens: TokenStore, oauth: OAuthServer) -> Arc<Gateway> {
        let gateway = Arc::new_cyclic(|weak: &Weak<Gateway>| Gateway {
            config: RwLock::new(Arc::new(config.clone())),
            configured: RwLock::new(Arc::new(Vec::new())),
            tokens,
            oauth,
            started: Instant::now(),
            view: RwLock::new(Arc::new(View {
                catalog: Arc::new(Catalog::default()),
                backends: Arc::new(Vec::new()),
                full_pages: Mutex::default(),
            })),
            rebuilding: Mutex::new(()),
            reloading: Mutex::new(()),
            audit: crate::audit::AuditLog::start(&config.audit, &config.state_dir),
            cache: ResultCache::new(
                config.limits.cache_max_entries,
                config.limits.cache_max_bytes,
            ),
            metrics: crate::metrics::Metrics::new(),
            listeners: RwLock::new(Vec::new()),
            notice_listeners: Arc::new(RwLock::new(Vec::new())),
            me: weak.clone(),
        });
        let backends: Vec<Arc<Backend>> = config
            .servers
            .iter()
            .map(|server| gateway.new_backend(server, &config))
            .collect();
        *gateway
            .configured
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(backends);
        gateway.rebuild_catalog();
        for backend in gateway.backends().iter() {
            backend.start();
        }
        gateway
    }

    /// A backend for `server` (not started), wired to rebuild the catalog and pass on its
    /// notifications.
    fn new_backend(&self, server: &crate::config::ServerConfig, config: &Config) -> Arc<Backend> {
        // A backend may hold at most all workers but one, so a stuck backend cannot take every
        // worker (and with them /health and the other backends) down with it.
        let max_calls = config
            .limits
            .max_calls_per_backend
            .min(config.workers.saturating_sub(1).max(1));
        let weak = self.me.clone();
        let backend = Backend::new(
            server.clone(),
            max_calls,
            config.limits.refresh_interval,
            Box::new(move || {
                if let Some(gateway) = weak.upgrade() {
                    gateway.rebuild_catalog();
                }
            }),
        );
        let listeners = Arc::clone(&self.notice_listeners);
        let name = server.name.clone();
        backend.set_notice_handler(Arc::new(move |message: &Value| {
            for listener in listeners.read().unwrap_or_else(|e| e.into_inner()).iter() {
                listener(&name, message);
            }
        }));
        backend
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The backends of the current catalog, in config order (the indexes its routes use).
    pub fn backends(&self) -> Arc<Vec<Arc<Backend>>> {
        Arc::clone(&self.view().backends)
    }

    fn view(&self) -> Arc<View> {
        Arc::clone(&self.view.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes a new, checked configuration without a restart: backends added are started,
    /// removed ones stopped, changed ones restarted (each once its calls in flight have
    /// ended); unchanged backends keep their connections, clients keep their sessions and
    /// streams, and tokens, grants and calls in flight are untouched. Settings read once at
    /// start (listen, workers, state_dir, audit, oauth, rate limits, cache bounds) are logged
    /// as needing a restart.
    pub fn reload(&self, config: Config) {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let old = self.config();
        for setting in restart_only_changes(&old, &config) {
            log::warn!("reload: \"{setting}\" changed; it takes effect at the next restart");
        }
        let current = Arc::clone(&self.configured.read().unwrap_or_else(|e| e.into_inner()));
        let (mut next, mut fresh, mut retired) = (Vec::new(), Vec::new(), Vec::new());
        let (mut added, mut changed, mut kept) = (Vec::new(), Vec::new(), 0usize);
        for server in &config.servers {
            match current.iter().find(|b| b.name() == server.name) {
                Some(backend) if backend.config == *server => {
                    kept += 1;
                    next.push(Arc::clone(backend));
                }
                found => {
                    let backend = self.new_backend(server, &config);
                    if let Some(old) = found {
                        retired.push(Arc::clone(old));
                        changed.push(server.name.clone());
                    } else {
                        added.push(server.name.clone());
                    }
                    fresh.push(Arc::clone(&backend));
                    next.push(backend);
                }
            }
        }
        let removed: Vec<Arc<Backend>> = current
            .iter()
            .filter(|b| !config.servers.iter().any(|s| s.name == b.name()))
            .cloned()
            .collect();
        let removed_names: Vec<String> = removed.iter().map(|b| b.name().to_string()).collect();
        retired.extend(removed);
        let wait = config
            .servers
            .iter()
            .map(|s| s.timeout)
            .chain(old.servers.iter().map(|s| s.timeout))
            .fold(config.limits.call_timeout, std::time::Duration::max);
        // New backends connect before they are swapped in, so a restarted backend's tools do not
        // vanish from the lists while it starts (bounded: one that is slow to come up joins as
        // it is, starting, and its tools appear when it is up).
        for backend in &fresh {
            backend.start();
        }
        let deadline = Instant::now() + RELOAD_START_WAIT;
        while Instant::now() < deadline
            && fresh
                .iter()
                .any(|b| b.status().state == crate::backend::State::Starting)
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        *self.configured.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.rebuild_catalog();
        for backend in retired {
            retire(backend, wait);
        }
        let list = |names: &[String]| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        log::info!(
            "reloaded the config in {} ms: added {}; changed (restarted) {}; removed {}; {kept} unchanged",
            started.elapsed().as_millis(),
            list(&added),
            list(&changed),
            list(&removed_names)
        );
    }

    /// Stops every backend.
    pub fn stop(&self) {
        for backend in self.backends().iter() {
            backend.stop();
        }
        self.tokens.flush_usage();
        self.audit.flush(std::time::Duration::from_secs(2));
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

    /// Subscribes (`on`) or unsubscribes one client to updates of resource `uri` of `backend`
    /// (counted per URI, so one client leaving does not end another's updates).
    pub fn set_subscription(&self, backend: &Backend, uri: &str, on: bool) -> Result<(), RpcError> {
        backend.set_subscription(uri, on).map_err(|e| e.to_rpc())
    }

    /// Sends `logging/setLevel` to every handshake-era backend that offers logging.
    pub fn set_backend_log_level(&self, level: &str) {
        for backend in self.backends().iter() {
            backend.set_log_level(level);
        }
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.view().catalog)
    }

    /// Builds the catalog again from the backends' lists; tells listeners what changed.
    pub fn rebuild_catalog(&self) {
        let _one_at_a_time = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        let backends = Arc::clone(&self.configured.read().unwrap_or_else(|e| e.into_inner()));
        let lists: Vec<_> = backends.iter().map(|b| b.lists()).collect();
        let sources: Vec<Source<'_>> = backends
            .iter()
            .zip(&lists)
            .map(|(b, l)| Source {
                server: b.name(),
                allow: &b.config.tools_allow,
                deny: &b.config.tools_deny,
                naming: &b.config.naming,
                read_only: &b.config.read_only_tools,
                lists: l,
            })
            .collect();
        let fresh = Catalog::build(builtin::tool_definitions(), &sources);
        let previous = self.catalog();
        log_clash_changes(&previous.clashes, &fresh.clashes);
        let before = previous.fingerprints();
        let after = fresh.fingerprints();
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(View {
            catalog: Arc::new(fresh),
            backends: Arc::clone(&backends),
            full_pages: Mutex::default(),
        });
        let mut kinds: Vec<ListKind> = ListKind::ALL
            .into_iter()
            .zip(before.iter().zip(after.iter()))
            .filter(|(_, (b, a))| b != a)
            .map(|(k, _)| k)
            .collect();
        // A backend that said its list changed is believed, even when it reads back the same.
        for kind in backends.iter().flat_map(|b| b.take_announced()) {
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
            .map(ResultJson::into_value)
    }

    /// The one entry for every request that reaches a backend, from every face: resolves the
    /// target in the catalog, applies `principal`'s access rule and the rest of the policy
    /// (validation, confirmation, cache, audit), and forwards. `params` are the client's own
    /// (without the 2026-07-28 envelope), which reach the backend as they are but for the
    /// target's own name.
    pub fn request(
        &self,
        principal: &Principal,
        method: &str,
        params: Map<String, Value>,
        options: CallOptions,
        link: &mut dyn ClientLink,
    ) -> Result<ResultJson, RpcError> {
        let view = self.view();
        let catalog = &view.catalog;
        let backend_at = |index: usize| view.backends.get(index);
        match method {
            "tools/call" => self.call_tool_params(principal, params, options, link),
            "prompts/get" => {
                let name = required_str(&params, "name", method)?.to_string();
                let unknown = || {
                    RpcError::new(
                        jsonrpc::INVALID_PARAMS,
                        format!("unknown prompt \"{name}\" (prompts/list shows what is offered)"),
                    )
                    .with_data(json!({"name": name}))
                };
                let Some(Route::Backend { backend, original }) = catalog.prompt(&name) else {
                    return Err(unknown());
                };
                let Some(backend) = backend_at(*backend) else {
                    return Err(unknown());
                };
                let server = backend.name();
                if let Err(refusal) = principal.rule.check_name(Some(server), &name) {
                    let error = refusal.to_rpc("prompt", &name);
                    let call = Audited::named(method, server, &name, &params);
                    self.audit_refusal(options.audit.as_ref(), &call, &error);
                    return Err(error);
                }
                let mut params = params;
                params.insert("name".into(), json!(original));
                self.forward(backend, method, params, options, link)
            }
            "resources/read" => {
                let uri = required_str(&params, "uri", method)?.to_string();
                let owner = match self.resource_owner_in(&view, principal, &uri) {
                    Ok(owner) => owner,
                    Err(error) => {
                        let call = Audited::named(method, "", &uri, &params);
                        self.audit_refusal(options.audit.as_ref(), &call, &error);
                        return Err(error);
                    }
                };
                self.forward(&owner, method, params, options, link)
            }
            "completion/complete" => {
                let reference = params.get("ref").cloned().unwrap_or(Value::Null);
                let mut params = params;
                let target = match reference.get("type").and_then(Value::as_str) {
                    Some("ref/prompt") => {
                        let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
                        match catalog.prompt(name) {
                            Some(Route::Backend { backend, original }) => backend_at(*backend)
                                .filter(|b| principal.rule.check_name(Some(b.name()), name).is_ok())
                                .inspect(|_| {
                                    params.insert(
                                        "ref".into(),
                                        json!({"type": "ref/prompt", "name": original}),
                                    );
                                }),
                            _ => None,
                        }
                    }
                    Some("ref/resource") => {
                        reference.get("uri").and_then(Value::as_str).and_then(|u| {
                            catalog
                                .template_owner(u)
                                .or_else(|| catalog.resource_owner(u))
                                .and_then(backend_at)
                                .filter(|b| principal.may_use(b.name()))
                        })
                    }
                    _ => None,
                };
                match target {
                    Some(backend) => self.forward(&Arc::clone(backend), method, params, options, link),
                    None => Err(RpcError::new(jsonrpc::INVALID_PARAMS, "completion/complete: \"ref\" names no prompt or resource template of this gateway")),
                }
            }
            _ => Err(RpcError::new(
                jsonrpc::METHOD_NOT_FOUND,
                format!("method \"{method}\" is not routed to backends by mcp-gateway"),
            )),
        }
    }

    /// The backend that serves resource `uri` to `principal` (listed, or under a template): an
    /// unknown URI and one of a server outside its rule get the same answer.
    pub fn resource_owner(
        &self,
        principal: &Principal,
        uri: &str,
    ) -> Result<Arc<Backend>, RpcError> {
        self.resource_owner_in(&self.view(), principal, uri)
    }

    /// The backend that serves resource `uri`, whoever asks (to give up subscriptions).
    pub fn resource_backend(&self, uri: &str) -> Option<Arc<Backend>> {
        let view = self.view();
        let index = view.catalog.resource_owner(uri)?;
        view.backends.get(index).cloned()
    }

    fn resource_owner_in(
        &self,
        view: &View,
        principal: &Principal,
        uri: &str,
    ) -> Result<Arc<Backend>, RpcError> {
        view.catalog
            .resource_owner(uri)
            .and_then(|index| view.backends.get(index))
            .filter(|b| principal.may_use(b.name()))
            .cloned()
            .ok_or_else(|| {
                RpcError::new(
                    jsonrpc::INVALID_PARAMS,
                    format!("unknown resource \"{uri}\" (resources/list and resources/templates/list show what is offered)"),
                )
                .with_data(json!({"uri": uri}))
            })
    }

    /// The entries of list `kind` that `principal`'s access rule lets it see: the same rule
    /// that guards its calls.
    pub fn list(&self, principal: &Principal, kind: ListKind) -> Vec<Value> {
        self.list_in(&self.view(), principal, kind)
    }

    fn list_in(&self, view: &View, principal: &Principal, kind: ListKind) -> Vec<Value> {
        if let Some(listing) = self.search_listing_in(view, principal, kind) {
            return listing;
        }
        Gateway::visible(view, principal, kind)
            .into_iter()
            .cloned()
            .collect()
    }

    /// [`Gateway::list`] of the tools, each with the server it comes from (`gateway` for the
    /// gateway's own), and the catalog they were read from: all from one view, so that a reload
    /// in between cannot pair a tool with another list's server.
    pub fn tools_with_servers(
        &self,
        principal: &Principal,
    ) -> (Arc<Catalog>, Vec<(Option<String>, Value)>) {
        let view = self.view();
        let tools = self.list_in(&view, principal, ListKind::Tools);
        let with_servers = tools
            .into_iter()
            .map(|tool| {
                let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
                let server = match view.catalog.tool(name) {
                    Some(Route::Builtin(_)) => Some(crate::config::BUILTIN_SERVER.to_string()),
                    Some(Route::Backend { backend, .. }) => {
                        view.backends.get(*backend).map(|b| b.name().to_string())
                    }
                    None => None,
                };
                (server, tool)
            })
            .collect();
        (Arc::clone(&view.catalog), with_servers)
    }

    /// One page of [`Gateway::list`] (`cursor` as a previous page gave it) as the JSON text of
    /// its array, written from the catalog in place (a list answer on the MCP face copies no
    /// entry), and kept for the next unrestricted principal that asks for the same page.
    pub fn list_page_json(
        &self,
        principal: &Principal,
        kind: ListKind,
        cursor: Option<&str>,
        page_size: usize,
    ) -> Result<Arc<ListPage>, String> {
        if let Some(listing) = self.search_listing(principal, kind) {
            let entries: Vec<&Value> = listing.iter().collect();
            return crate::catalog::page_json(&entries, cursor, page_size).map(Arc::new);
        }
        let view = self.view();
        let key = aligned_start(cursor, page_size)
            .filter(|_| principal.rule.is_everything())
            .map(|start| (kind.index(), start, page_size));
        if let Some(key) = key {
            let pages = view.full_pages.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(page) = pages.get(&key) {
                return Ok(Arc::clone(page));
            }
        }
        let page = Arc::new(crate::catalog::page_json(
            &Gateway::visible(&view, principal, kind),
            cursor,
            page_size,
        )?);
        if let Some(key) = key {
            view.full_pages
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, Arc::clone(&page));
        }
        Ok(page)
    }

    /// How many entries [`Gateway::list`] has for `principal`, without copying them.
    pub fn list_len(&self, principal: &Principal, kind: ListKind) -> usize {
        if let Some(listing) = self.search_listing(principal, kind) {
            return listing.len();
        }
        Gateway::visible(&self.view(), principal, kind).len()
    }

    /// The tools list of a principal whose view is `search` (else `None`): the meta-tools and
    /// the pinned tools it may use.
    fn search_listing(&self, principal: &Principal, kind: ListKind) -> Option<Vec<Value>> {
        self.search_listing_in(&self.view(), principal, kind)
    }

    fn search_listing_in(
        &self,
        view: &View,
        principal: &Principal,
        kind: ListKind,
    ) -> Option<Vec<Value>> {
        if kind != ListKind::Tools || principal.tool_view != ToolView::Search {
            return None;
        }
        let tools = Gateway::visible(view, principal, kind);
        Some(tool_view::search_listing(
            &tools,
            &self.config().tool_search.pinned,
        ))
    }

    /// The tools `principal` may use that best match `query`, best first, as a search answer
    /// shows them (name, description, input schema); `server` keeps only the tools of that server.
    /// A tool the principal may not use is never found.
    pub fn search_tools(
        &self,
        principal: &Principal,
        query: &str,
        server: Option<&str>,
        limit: usize,
    ) -> Vec<Value> {
        let view = self.view();
        let names: Vec<&str> = view.backends.iter().map(|b| b.name()).collect();
        tool_view::search_catalog(&view.catalog, &names, &principal.rule, query, server, limit)
    }

    fn visible<'a>(view: &'a View, principal: &Principal, kind: ListKind) -> Vec<&'a Value> {
        let catalog = &view.catalog;
        if principal.rule.is_everything() {
            return catalog.visible(kind, &|_| true);
        }
        let rule = &principal.rule;
        catalog.visible_where(kind, &|owner, item| {
            let server = match owner {
                Some(index) => match view.backends.get(index) {
                    Some(backend) => Some(backend.name()),
                    None => return false,
                },
                None => None,
            };
            let name = item.get("name").and_then(Value::as_str).unwrap_or("");
            match kind {
                ListKind::Tools => tool_permitted(view, rule, owner, name),
                ListKind::Prompts => rule.check_name(server, name).is_ok(),
                ListKind::Resources | ListKind::Templates => {
                    server.map(|s| rule.permits_server(s)).unwrap_or(true)
                }
            }
        })
    }

    /// Like [`Gateway::call_tool`], with the client's whole `tools/call` params (`name`,
    /// `arguments` and whatever else it sent, e.g. `inputResponses`, `requestState`, `_meta`),
    /// which reach the backend as they are but for the tool's own name.
    ///
    /// The policy, in order: the tool must exist and the principal's rule allow it; its
    /// arguments must pass its `inputSchema`; a `confirm` tool needs the user's yes; a cached
    /// result of a read-only tool answers without the backend; every outcome is audited.
    pub fn call_tool_params(
        &self,
        principal: &Principal,
        mut params: Map<String, Value>,
        options: CallOptions,
        link: &mut dyn ClientLink,
    ) -> Result<ResultJson, RpcError> {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if tool_view::is_meta(&name) {
            return self.call_meta_tool(principal, &name, params, options, link);
        }
        let view = self.view();
        let catalog = &view.catalog;
        let route = catalog.tool(&name).filter(|route| match route {
            Route::Builtin(_) => true,
            Route::Backend { backend, .. } => view.backends.get(*backend).is_some(),
        });
        let Some(route) = route else {
            let error = RpcError::new(
                jsonrpc::INVALID_PARAMS,
                format!("unknown tool \"{name}\" (tools/list shows the tools this gateway offers)"),
            )
            .with_data(json!({"name": name}));
            let call = Audited::tool("", &name, &params);
            self.audit_refusal(options.audit.as_ref(), &call, &error);
            return Err(error);
        };
        let backend = match route {
            Route::Builtin(_) => None,
            Route::Backend { backend, .. } => view.backends.get(*backend),
        };
        let server = backend.map(|b| b.name());
        let read_only = catalog.is_read_only(&name);
        if let Err(refusal) = principal.rule.check_tool(server, &name, read_only) {
            let error = refusal.to_rpc("tool", &name);
            let call = Audited::tool(server.unwrap_or("gateway"), &name, &params);
            self.audit_refusal(options.audit.as_ref(), &call, &error);
            return Err(error);
        }
        let (backend, original) = match (route, backend) {
            (Route::Builtin(tool), _) | (Route::Backend { original: tool, .. }, None) => {
                // (A backend route always has its backend: the route was filtered above.)
                let arguments = params
                    .get("arguments")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                let started = Instant::now();
                let outcome =
                    builtin::call(self, principal, tool, &arguments).map(ResultJson::from);
                let call = Audited::tool("gateway", &name, &params);
                self.audit_outcome(options.audit.as_ref(), &call, started, &outcome);
                return outcome;
            }
            (Route::Backend { original, .. }, Some(backend)) => (backend, original.as_str()),
        };
        let server = backend.name();
        let empty = Value::Object(Map::new());
        // The backend never sees a call its own schema refuses.
        if let Some(schema) = catalog.tool_schema(&name) {
            let arguments = params.get("arguments").unwrap_or(&empty);
            let violations = schema.validate(arguments);
            if !violations.is_empty() {
                let error = invalid_arguments(&name, &violations);
                let call = Audited::tool(server, &name, &params);
                self.audit_refusal(options.audit.as_ref(), &call, &error);
                return Err(error);
            }
        }
        let config = &backend.config;
        if config
            .confirm
            .iter()
            .any(|g| crate::catalog::glob_match(g, original))
        {
            let arguments = params.get("arguments").unwrap_or(&empty);
            if let Some(refused) = self.confirm(
                options.audit.as_ref(),
                server,
                &name,
                arguments,
                &params,
                link,
            ) {
                return Ok(refused.into());
            }
        }
        // A result kept for this principal answers without the backend (never a retry that
        // carries answers: those belong to one exchange).
        let cache_key = match config.cache_ttl {
            Some(ttl)
                if read_only
                    && !params.contains_key("inputResponses")
                    && !params.contains_key("requestState") =>
            {
                let arguments = params.get("arguments").unwrap_or(&empty);
                let rule = serde_json::to_string(&principal.rule).unwrap_or_default();
                let key = cache::key(&principal.name, &rule, &name, arguments);
                if let Some(kept) = self.cache.get(&key) {
                    let call = Audited::tool(server, &name, &params);
                    let started = Instant::now();
                    self.audit_line(
                        options.audit.as_ref(),
                        &call,
                        "ok",
                        Some("answered from the cache"),
                        Some(started.elapsed()),
                        Some(kept.approximate_size()),
                    );
                    return Ok(kept);
                }
                Some((key, ttl))
            }
            _ => None,
        };
        // The backend gets its own name; the audit line keeps the one the client used.
        params.insert("name".into(), json!(original));
        let started = Instant::now();
        let mut options = options;
        let who = options.audit.take();
        let outcome = self.forward_unaudited(backend, "tools/call", &params, options, link);
        let call = Audited::tool(server, &name, &params);
        self.audit_outcome(who.as_ref(), &call, started, &outcome);
        if let (Some((key, ttl)), Ok(result)) = (cache_key, &outcome) {
            if !result.is_error() && !result.is_input_required() {
                self.cache.put(key, result, ttl);
            }
        }
        outcome
    }

    /// Runs a meta-tool of the `search` view (any principal may call them; what they find or
    /// run is held to its access rule): a search is audited as the gateway's own tool; a call
    /// through `gateway__call_tool` takes the whole policy path under the inner tool's name.
    fn call_meta_tool(
        &self,
        principal: &Principal,
        name: &str,
        params: Map<String, Value>,
        options: CallOptions,
        link: &mut dyn ClientLink,
    ) -> Result<ResultJson, RpcError> {
        let call = Audited::tool("gateway", name, &params);
        if name == tool_view::CALL_TOOL {
            return match tool_view::inner_call(&params) {
                Ok(inner) => self.call_tool_params(principal, inner, options, link),
                Err(error) => {
                    self.audit_refusal(options.audit.as_ref(), &call, &error);
                    Err(error)
                }
            };
        }
        let started = Instant::now();
        let outcome = tool_view::search_request(params.get("arguments")).map(|asked| {
            let found = self.search_tools(
                principal,
                &asked.query,
                asked.server.as_deref(),
                asked.limit,
            );
            ResultJson::from(tool_view::search_result(found))
        });
        self.audit_outcome(options.audit.as_ref(), &call, started, &outcome);
        outcome
    }

    /// Asks the user whether the `confirm` tool `name` may run: `None` when it may, else the
    /// tool result (`isError`) the client gets instead of the call. The answer is audited.
    fn confirm(
        &self,
        who: Option<&AuditContext>,
        server: &str,
        name: &str,
        arguments: &Value,
        params: &Map<String, Value>,
        link: &mut dyn ClientLink,
    ) -> Option<Value> {
        let call = Audited::named("confirm", server, name, params);
        let question = confirm::question(name, server, arguments);
        if let Err(cannot) =
            crate::link::check_capability(&link.capabilities(), "elicitation/create", &question)
        {
            if self.config().confirm_fallback == Fallback::Allow {
                self.audit_line(
                    who,
                    &call,
                    "allowed",
                    Some("the client cannot be asked; confirm_fallback is \"allow\""),
                    None,
                    None,
                );
                return None;
            }
            let text = format!(
                "mcp-gateway did not run \"{name}\": server \"{server}\" lists it under \"confirm\", and this client cannot ask the user ({}). Use a client that supports elicitation, or set \"confirm_fallback\": \"allow\" in the gateway's config.",
                cannot.message
            );
            self.audit_line(who, &call, "refused", Some(&text), None, None);
            return Some(confirm::not_made(text));
        }
        let started = Instant::now();
        match link
            .ask("elicitation/create", question)
            .map(|a| confirm::verdict(&a))
        {
            Ok(Verdict::Accepted) => {
                self.audit_line(who, &call, "accepted", None, Some(started.elapsed()), None);
                None
            }
            Ok(Verdict::Declined(action)) => {
                let text =
                    format!("The user declined to run \"{name}\" ({action}); it was not called.");
                self.audit_line(
                    who,
                    &call,
                    "declined",
                    Some(&action),
                    Some(started.elapsed()),
                    None,
                );
                Some(confirm::not_made(text))
            }
            Err(e) => {
                let text = format!(
                    "\"{name}\" was not confirmed, so it was not called: {}",
                    e.message
                );
                self.audit_line(
                    who,
                    &call,
                    "unanswered",
                    Some(&e.message),
                    Some(started.elapsed()),
                    None,
                );
                Some(confirm::not_made(text))
            }
        }
    }

    /// Sends `method` to `backend`, mapping failures to JSON-RPC errors.
    ///
    /// When a 2026-07-28 backend answers `input_required` and the client does not speak that
    /// revision, the embedded requests are asked of the client through `link` (as the handshake
    /// era's requests) and the request is sent again with the answers, up to
    /// [`MAX_INPUT_ROUNDS`] times.
    pub fn forward(
        &self,
        backend: &Arc<Backend>,
        method: &str,
        params: Map<String, Value>,
        options: CallOptions,
        link: &mut dyn ClientLink,
    ) -> Result<ResultJson, RpcError> {
        // Prompts and resources are audited here; tools in `call_tool_params`, under the name
        // the client used.
        let audited = matches!(method, "prompts/get" | "resources/read");
        if !audited {
            return self.forward_unaudited(backend, method, &params, options, link);
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
        let outcome = self.forward_unaudited(backend, method, &params, options, link);
        let server = backend.name();
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
        outcome: &Result<ResultJson, RpcError>,
    ) {
        let (label, detail, bytes) = match outcome {
            Ok(result) => {
                let label = if result.is_error() { "error" } else { "ok" };
                (label, None, Some(result.approximate_size()))
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
        backend: &Arc<Backend>,
        method: &str,
        params: &Map<String, Value>,
        options: CallOptions,
        link: &mut dyn ClientLink,
    ) -> Result<ResultJson, RpcError> {
        if self.audit.refuses() {
            return Err(RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                "the audit log cannot be written, and audit.on_failure is \"refuse\": no calls until it can",
            ));
        }
        // The caller keeps `params` (for its audit line); a retry carries the answers as well.
        let mut retry: Option<Map<String, Value>> = None;
        for _ in 0..=MAX_INPUT_ROUNDS {
            let sent = retry.as_ref().unwrap_or(params);
            let result = backend
                .call(method, sent, options.clone(), link)
                .map_err(|e| {
                    if !matches!(e, CallError::Rpc(_)) {
                        log::warn!("{method} on '{}' failed: {e}", backend.name());
                    }
                    e.to_rpc()
                })?;
            if !result.is_input_required() || link.takes_input_required() {
                return Ok(result);
            }
            let result = result.into_value();
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
        self.backends()
            .get(index)
            .map(|b| principal.may_use(b.name()))
            .unwrap_or(false)
    }

    /// Cancels a call started with `cancel_key`, wherever it runs.
    pub fn cancel(&self, cancel_key: &str, reason: Option<&str>) {
        for backend in self.backends().iter() {
            backend.cancel(cancel_key, reason);
        }
    }

    /// The status report shared by `/status` and the `gateway__status` tool, showing only the
    /// backends `principal` may use.
    pub fn status_json(&self, principal: &Principal) -> Value {
        let backends: Vec<Value> = self
            .backends()
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
        let count = |kind: ListKind| self.list_len(principal, kind);
        let cache = self.cache.stats();
        let clashes = if principal.rule.is_everything() {
            catalog.clashes.clone()
        } else {
            Vec::new()
        };
        // What a listing costs in each view, measured on the catalog's own entries (not copied).
        let view = self.view();
        let listing = |tool_view: ToolView| {
            let viewer = principal.with_view(tool_view);
            let (tools, bytes) = match self.search_listing_in(&view, &viewer, ListKind::Tools) {
                Some(listing) => (listing.len(), tool_view::listing_bytes(&listing)),
                None => {
                    let tools = Gateway::visible(&view, &viewer, ListKind::Tools);
                    (tools.len(), tool_view::listing_bytes(&tools))
                }
            };
            json!({"tools": tools, "bytes": bytes})
        };
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().as_secs(),
            "tools": self.list_len(&principal.with_view(ToolView::Full), ListKind::Tools),
            "tool_view": principal.tool_view.as_str(),
            "tool_listing": {"full": listing(ToolView::Full), "search": listing(ToolView::Search)},
            "resources": count(ListKind::Resources),
            "prompts": count(ListKind::Prompts),
            "clashes": clashes,
            "cache": {
                "hits": cache.hits,
                "misses": cache.misses,
                "entries": cache.entries,
                "bytes": cache.bytes,
            },
            "backends": backends,
        })
    }
}

/// Whether `rule` lets its principal use the tool `name` of backend `owner` (`None`: ours).
fn tool_permitted(view: &View, rule: &AccessRule, owner: Option<usize>, name: &str) -> bool {
    let server = match owner {
        Some(index) => match view.backends.get(index) {
            Some(backend) => Some(backend.name()),
            None => return false,
        },
        None => None,
    };
    rule.check_tool(server, name, view.catalog.is_read_only(name))
        .is_ok()
}

/// Stops a backend a reload replaced or removed once its calls in flight have ended (or after
/// `wait`, the longest a call may take), on a thread of its own.
fn retire(backend: Arc<Backend>, wait: std::time::Duration) {
    let name = backend.name().to_string();
    let spawned = std::thread::Builder::new()
        .name(format!("retire-{name}"))
        .spawn(move || {
            let deadline = Instant::now() + wait;
            while backend.busy() > 0 && Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            backend.stop();
            log::info!("reload: stopped the previous '{}'", backend.name());
        });
    if let Err(e) = spawned {
        log::warn!("reload: cannot start a thread to stop '{name}': {e}");
    }
}

/// The settings that differ between `old` and `new` but are only read at start.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("listen", old.listen != new.listen);
    check("state_dir", old.state_dir != new.state_dir);
    check("workers", old.workers != new.workers);
    check("audit", old.audit != new.audit);
    // (`oauth.tool_view` is read at each request.)
    let oauth_view = crate::oauth::OAuthSettings {
        tool_view: new.oauth.tool_view,
        ..old.oauth.clone()
    };
    check("oauth", oauth_view != new.oauth);
    check(
        "openai.upstream",
        old.openai.upstream != new.openai.upstream,
    );
    let (a, b) = (&old.limits, &new.limits);
    check(
        "limits (rate limits, connections, cache bounds, request and I/O timeouts)",
        a.principal_rate != b.principal_rate
            || a.global_rate != b.global_rate
            || a.max_connections != b.max_connections
            || a.max_connections_per_address != b.max_connections_per_address
            || a.cache_max_entries != b.cache_max_entries
            || a.cache_max_bytes != b.cache_max_bytes
            || a.request_timeout != b.request_timeout
            || a.io_timeout != b.io_timeout,
    );
    changed
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
        Audited::named("tools/call", server, name, params)
    }

    fn named(
        action: &'a str,
        server: &'a str,
        name: &'a str,
        params: &'a Map<String, Value>,
    ) -> Audited<'a> {
        Audited {
            action,
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

/// The first entry of the page `cursor` names when it is one a `nextCursor` gives (`o:N`, `N` a
/// multiple of `page_size`, written without leading zeros); `None` for any other cursor.
fn aligned_start(cursor: Option<&str>, page_size: usize) -> Option<usize> {
    let Some(cursor) = cursor else {
        return Some(0);
    };
    let start: usize = cursor.strip_prefix("o:")?.parse().ok()?;
    (page_size > 0 && start % page_size == 0 && cursor == format!("o:{start}")).then_some(start)
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

    #[test]
    fn only_the_cursors_a_next_cursor_gives_name_kept_pages() {
        assert_eq!(aligned_start(None, 50), Some(0));
        assert_eq!(aligned_start(Some("o:100"), 50), Some(100));
        assert_eq!(aligned_start(Some("o:0"), 50), Some(0));
        // Any other start would let a client fill the store with overlapping pages.
        assert_eq!(aligned_start(Some("o:7"), 50), None);
        assert_eq!(aligned_start(Some("o:0100"), 50), None);
        assert_eq!(aligned_start(Some("o:+100"), 50), None);
        assert_eq!(aligned_start(Some("x:100"), 50), None);
        assert_eq!(aligned_start(Some("o:100"), 0), None);
    }
}
