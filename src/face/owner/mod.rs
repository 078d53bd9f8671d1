//! The owner's page: `GET /` in a browser. Without a session it shows the gateway's name,
//! version and health and a sign-in form for the owner password (the OAuth consent page's
//! password, with the same limit on wrong attempts); with one, a single page of backends,
//! recent activity, tokens, OAuth clients and grants, and how to connect clients.
//!
//! This module owns the routes (`/` and `/owner/...`), the session cookie, the CSRF and origin
//! checks and the page's security headers; [`session`] keeps the sessions, [`activity`] reads
//! the audit log's tail, [`page`] renders the HTML. What the page changes goes through the same
//! functions as the CLI (`tokens::create_with_access` and `tokens::revoke`, which hold the
//! state folder's lock; `OAuthServer::revoke_grant`), so the CLI can do all of it too.
//!
//! Every state-changing request is a form POST that must carry the session's CSRF token
//! (compared in constant time; 403 without it) and, when the browser sends `Origin`, come from
//! this gateway's own origin; each answers 303 back to the page (redirect after post).

pub mod activity;
pub mod page;
pub mod session;

use crate::gateway::{Gateway, Principal};
use crate::http_util::{header, request_header};
use crate::policy::AccessRule;
use session::{Flash, Lifetimes, Sessions};
use std::time::{Duration, Instant};
use tiny_http::{Method, Request, Response};

/// The session cookie's name.
pub const COOKIE: &str = "mgw_owner";
/// Largest form body accepted (the server answers 413 before reading more).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The `"owner": {...}` section of the config.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerSettings {
    /// Whether `/` serves the page (off: 404 as before).
    pub enabled: bool,
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, however busy.
    pub session_max: Duration,
}

impl Default for OwnerSettings {
    fn default() -> Self {
        OwnerSettings {
            enabled: true,
            session_idle: Duration::from_secs(12 * 3600),
            session_max: Duration::from_secs(7 * 86_400),
        }
    }
}

impl OwnerSettings {
    fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            idle: self.session_idle,
            max: self.session_max,
        }
    }
}

/// Whether `path` (without its query and trailing `/`) belongs to the page.
pub fn handles(path: &str) -> bool {
    path.is_empty() || path == "/owner" || path.starts_with("/owner/")
}

/// The page's state: the sessions.
#[derive(Default)]
pub struct OwnerFace {
    sessions: Sessions,
}

/// What an answer carries besides its body.
struct Answer {
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn html(status: u16, body: String) -> Answer {
        Answer {
            status,
            body,
            headers: Vec::new(),
        }
    }

    fn see_other(location: &str) -> Answer {
        Answer {
            status: 303,
            body: String::new(),
            headers: vec![("Location".into(), location.into())],
        }
    }

    fn with(mut self, name: &str, value: String) -> Answer {
        self.headers.push((name.to_string(), value));
        self
    }
}

fn respond(request: Request, answer: Answer) {
    let mut response = Response::from_string(answer.body).with_status_code(answer.status);
    for (k, v) in [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Security-Policy", page::csp()),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
    ] {
        if let Some(h) = header(k, v) {
            response.add_header(h);
        }
    }
    for (k, v) in &answer.headers {
        if let Some(h) = header(k, v) {
            response.add_header(h);
        }
    }
    crate::metrics::note_status(answer.status);
    if let Err(e) = request.respond(response) {
        log::debug!("client went away before the owner's page was sent: {e}");
    }
}

/// A short page (`status`, a title and a message) with the page's security headers, for
/// refusals made before the page's own handler runs (a body too large, the workers busy).
pub fn respond_message(request: Request, status: u16, title: &str, text: &str) {
    respond(request, Answer::html(status, page::message(title, text)));
}

/// The request's form or query fields.
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl OwnerFace {
    /// No sessions yet.
    pub fn new() -> OwnerFace {
        OwnerFace::default()
    }

    /// Answers one request to a path [`handles`] accepts; `body` was read within
    /// [`MAX_BODY_BYTES`].
    pub fn handle(&self, gateway: &Gateway, request: Request, path: &str, body: &[u8]) {
        let answer = self.answer(gateway, &request, path, body);
        respond(request, answer);
    }

    fn answer(&self, gateway: &Gateway, request: &Request, path: &str, body: &[u8]) -> Answer {
        let config = gateway.config();
        let life = config.owner.lifetimes();
        let now = Instant::now();
        let cookie = request_header(request, "Cookie")
            .and_then(|h| session::cookie_value(h, COOKIE))
            .unwrap_or("")
            .to_string();
        let method = request.method().clone();
        let allowed = match path {
            "" => "GET",
            "/owner/login"
            | "/owner/logout"
            | "/owner/tokens"
            | "/owner/tokens/revoke"
            | "/owner/oauth/revoke" => "POST",
            _ => {
                return Answer::html(
                    404,
                    page::message("Not found", "There is no such page here."),
                )
            }
        };
        let method_ok = match allowed {
            "GET" => matches!(method, Method::Get | Method::Head),
            _ => method == Method::Post,
        };
        if !method_ok {
            return Answer::html(
                405,
                page::message("Not allowed", "This address does not take that method."),
            )
            .with("Allow", allowed.to_string());
        }
        if method == Method::Get || method == Method::Head {
            let query = request.url().split_once('?').map_or("", |(_, q)| q);
            let form = Form(crate::face::oauth::parse_form(query.as_bytes()));
            let take_flash = method == Method::Get;
            return match self.sessions.current(&cookie, now, life, take_flash) {
                Some(current) => Answer::html(
                    200,
                    page::dashboard(&dashboard(gateway, request, &form, current)),
                ),
                None => Answer::html(
                    200,
                    page::login(
                        env!("CARGO_PKG_VERSION"),
                        gateway.oauth.has_password(),
                        None,
                    ),
                ),
            };
        }
        if !same_origin(gateway, request) {
            log::warn!(
                "owner's page: refused a form from another site (Origin {}, Sec-Fetch-Site {})",
                crate::untrusted::for_log(request_header(request, "Origin").unwrap_or("-")),
                crate::untrusted::for_log(request_header(request, "Sec-Fetch-Site").unwrap_or("-"))
            );
            return Answer::html(
                403,
                page::message(
                    "Refused",
                    "This form was sent from another web site. Open the owner's page itself and try again.",
                ),
            );
        }
        let form = Form(crate::face::oauth::parse_form(body));
        if path == "/owner/login" {
            return self.login(gateway, request, &form, life, now);
        }
        if !self
            .sessions
            .check_csrf(&cookie, form.get("csrf_token"), now, life)
        {
            let signed_in = self.sessions.current(&cookie, now, life, false).is_some();
            log::info!(
                "owner's page: refused a form without a valid {}",
                if signed_in { "CSRF token" } else { "session" }
            );
            let text = if signed_in {
                "The form's token is missing or wrong. Reload the owner's page and try again."
            } else {
                "You are not signed in (the session may have ended). Sign in again."
            };
            return Answer::html(403, page::message("Refused", text));
        }
        let flash = match path {
            "/owner/logout" => {
                self.sessions.close(&cookie);
                audit(gateway, "owner/logout", "", "ok", None);
                return Answer::see_other("/").with("Set-Cookie", clear_cookie(gateway, request));
            }
            "/owner/tokens" => create_token(gateway, &form),
            "/owner/tokens/revoke" => revoke_token(gateway, form.get("name")),
            _ => revoke_oauth(gateway, form.get("id")),
        };
        let anchor = if path == "/owner/oauth/revoke" {
            "/#oauth"
        } else {
            "/#tokens"
        };
        self.sessions.set_flash(&cookie, flash, now, life);
        Answer::see_other(anchor)
    }

    fn login(
        &self,
        gateway: &Gateway,
        request: &Request,
        form: &Form,
        life: Lifetimes,
        now: Instant,
    ) -> Answer {
        let version = env!("CARGO_PKG_VERSION");
        if !gateway.oauth.has_password() {
            return Answer::html(403, page::login(version, false, None));
        }
        let address = crate::http_util::client_address(
            request,
            gateway.config().oauth.trust_forwarded_headers,
        )
        .map(crate::oauth::limits::address_key)
        .unwrap_or_else(|| "unknown".into());
        if let Err(e) = gateway.oauth.check_password(form.get("password"), &address) {
            audit(gateway, "owner/login", &address, "refused", Some(e.code));
            let (status, text) = crate::face::oauth::password_refusal(&e);
            let mut answer = Answer::html(status, page::login(version, true, Some(text)));
            if let Some(seconds) = e.retry_after {
                answer = answer.with("Retry-After", seconds.to_string());
            }
            return answer;
        }
        match self.sessions.open(now, life) {
            Ok(opened) => {
                log::info!("owner signed in to the owner's page from {address}");
                audit(gateway, "owner/login", &address, "ok", None);
                Answer::see_other("/").with(
                    "Set-Cookie",
                    session_cookie(gateway, request, &opened.cookie, life),
                )
            }
            Err(e) => {
                log::error!("owner's page: {e}");
                Answer::html(
                    500,
                    page::message("Cannot sign in", "The gateway could not make a session."),
                )
            }
        }
    }
}

/// Whether the request reached us over https, so that the cookie can be `Secure`: a trusted
/// proxy's `X-Forwarded-Proto` says so (`oauth.trust_forwarded_headers`), or `public_url` is
/// `https://` and the request names its host (it came through the TLS proxy or tunnel). The
/// owner who opens `http://nas:8080/` on the LAN gets a cookie without `Secure` (a browser would
/// drop a `Secure` cookie over plain http, and that connection is in clear anyway).
fn over_https(gateway: &Gateway, request: &Request) -> bool {
    let config = gateway.config();
    if config.oauth.trust_forwarded_headers {
        if let Some(proto) = request_header(request, "X-Forwarded-Proto") {
            return proto.split(',').next().unwrap_or("").trim() == "https";
        }
    }
    let Some(public) = config.public_url.as_deref() else {
        return false;
    };
    let host = request_header(request, "Host").map_or("", str::trim);
    public.starts_with("https://") && (host.is_empty() || host_of(public) == host_of(host))
}

fn session_cookie(gateway: &Gateway, request: &Request, value: &str, life: Lifetimes) -> String {
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        life.max.as_secs(),
        if over_https(gateway, request) {
            "; Secure"
        } else {
            ""
        }
    )
}

fn clear_cookie(gateway: &Gateway, request: &Request) -> String {
    format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if over_https(gateway, request) {
            "; Secure"
        } else {
            ""
        }
    )
}

/// Whether a form POST comes from this gateway's own pages, as far as the browser tells: its
/// `Sec-Fetch-Site` must be `same-origin` (or `none`: typed by the user), and its `Origin`, when
/// it names one, must be ours (`public_url`, the forwarded or `Host` origin). Browsers send
/// `Origin: null` for our forms (the pages' `Referrer-Policy` is `no-referrer`), and old
/// browsers or other clients send neither header: the CSRF token and the `SameSite=Strict`
/// cookie still stand for those.
fn same_origin(gateway: &Gateway, request: &Request) -> bool {
    if let Some(site) = request_header(request, "Sec-Fetch-Site") {
        if !matches!(site.trim(), "same-origin" | "none") {
            return false;
        }
    }
    let origin = match request_header(request, "Origin").map(str::trim) {
        None | Some("null") => return true,
        Some(origin) => origin,
    };
    if origin == crate::face::oauth::base_url(gateway, request) {
        return true;
    }
    let host = request_header(request, "Host").unwrap_or("");
    !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"))
}

/// One audit line for something done on the page: by `owner`, or, for sign-ins, by the
/// address that tried.
fn audit(gateway: &Gateway, action: &str, name: &str, outcome: &str, detail: Option<&str>) {
    let principal = if action == "owner/login" {
        name
    } else {
        "owner"
    };
    let name = if action == "owner/login" { "" } else { name };
    gateway.audit.record(&crate::audit::Entry {
        face: "owner",
        principal,
        action,
        name,
        outcome,
        detail,
        ..crate::audit::Entry::default()
    });
}

fn create_token(gateway: &Gateway, form: &Form) -> Flash {
    let config = gateway.config();
    let name = form.get("name").trim();
    if !crate::tokens::valid_name(name) {
        return Flash::Problem(
            "A token name is 1 to 64 letters, digits, '.', '_' or '-'.".to_string(),
        );
    }
    let profile = Some(form.get("profile"))
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    if let Some(p) = &profile {
        if !config.profiles.contains_key(p) {
            return Flash::Problem("That profile is not in the config.".to_string());
        }
    }
    let all: Vec<String> = config.servers.iter().map(|s| s.name.clone()).collect();
    let servers = crate::policy::access::ticked_servers(form.all("server"), &all);
    if profile.is_none() && !all.is_empty() && servers.as_ref().is_some_and(Vec::is_empty) {
        return Flash::Problem("Tick at least one server for the new token.".to_string());
    }
    // A profile's rule is read from the config at each request (as `token create --profile`).
    let access = match &profile {
        Some(_) => AccessRule::everything(),
        None => AccessRule {
            servers,
            read_only: !form.get("read_only").is_empty(),
            ..AccessRule::everything()
        },
    };
    let view = if form.get("tool_view") == "search" {
        crate::tool_view::ToolView::Search
    } else {
        crate::tool_view::ToolView::Full
    };
    match crate::tokens::create_with_view(&config.state_dir, name, access, profile, view) {
        Ok(token) => {
            log::info!("owner's page: token \"{name}\" created");
            audit(gateway, "owner/token_create", name, "ok", None);
            Flash::NewToken {
                name: name.to_string(),
                token,
            }
        }
        Err(e) => {
            log::warn!("owner's page: token \"{name}\" not created: {e}");
            Flash::Problem(format!("The token was not created: {e}"))
        }
    }
}

fn revoke_token(gateway: &Gateway, name: &str) -> Flash {
    match crate::tokens::revoke(&gateway.config().state_dir, name) {
        Ok(()) => {
            log::info!("owner's page: token \"{name}\" revoked");
            audit(gateway, "owner/token_revoke", name, "ok", None);
            Flash::Done(format!("Token {name} revoked."))
        }
        Err(e) => Flash::Problem(format!("Not revoked: {e}")),
    }
}

fn revoke_oauth(gateway: &Gateway, id: &str) -> Flash {
    if id.is_empty() {
        return Flash::Problem("Nothing to revoke.".to_string());
    }
    match gateway.oauth.revoke_grant(id) {
        Ok(true) => {
            audit(gateway, "owner/oauth_revoke", id, "ok", None);
            Flash::Done("Revoked: its tokens no longer work.".to_string())
        }
        Ok(false) => Flash::Problem("No such grant or client (already revoked?).".to_string()),
        Err(e) => Flash::Problem(format!("Not revoked: {}", e.description)),
    }
}

/// The host of a URL or a `Host` header (for "redirects to", and to compare hosts), without
/// scheme, user info, port or path, in lower case.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default();
    }
    host.split(':').next().unwrap_or("").to_ascii_lowercase()
}

/// Gathers what the dashboard shows: `/status`'s data, the audit log's tail, the stores.
fn dashboard(
    gateway: &Gateway,
    request: &Request,
    query: &Form,
    current: session::Current,
) -> page::Dashboard {
    let config = gateway.config();
    let status = gateway.status_json(&Principal::unrestricted("owner"));
    let text = |v: &serde_json::Value, key: &str| {
        v.get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let number = |v: &serde_json::Value, key: &str| {
        v.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0)
    };
    let backends = status
        .get("backends")
        .and_then(serde_json::Value::as_array)
        .map(|all| {
            all.iter()
                .map(|b| {
                    let name = text(b, "name");
                    page::BackendRow {
                        latency: gateway.metrics.latency.summary(&name),
                        state: text(b, "state"),
                        transport: text(b, "transport"),
                        protocol: text(b, "protocol_version"),
                        tools: number(b, "tools"),
                        last_error: crate::untrusted::shortened(&text(b, "last_error"), 300)
                            .to_string(),
                        calls: number(b, "calls"),
                        failures: number(b, "failures"),
                        name,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let filter = activity::Filter {
        principal: query.get("principal").trim().to_string(),
        server: query.get("server").trim().to_string(),
    };
    let activity = if config.audit.enabled {
        activity::tail(&config.state_dir.join(&config.audit.path))
            .map(|bytes| activity::rows(&bytes, &filter))
            .map_err(|e| e.to_string())
    } else {
        Err("The audit log is off (\"audit\": {\"enabled\": false}), so there is no activity to show.".to_string())
    };
    let used = gateway.tokens.last_used();
    let tokens = crate::tokens::list(&config.state_dir)
        .map(|list| {
            list.into_iter()
                .map(|(record, last)| page::TokenRow {
                    last_used: last.max(used.get(&record.name).copied()),
                    created: record.created,
                    access: record.describe_access(),
                    name: record.name,
                })
                .collect()
        })
        .map_err(|e| e.to_string());
    let grants_used = gateway.oauth.grants_last_used();
    let access_ttl = config.oauth.access_token_ttl.as_secs();
    let clients = gateway
        .oauth
        .list()
        .map(|(clients, grants)| {
            clients
                .into_iter()
                .map(|c| page::ClientRow {
                    grants: grants
                        .iter()
                        .filter(|g| g.client_id == c.client_id)
                        .map(|g| {
                            let issued = g.access_expires.saturating_sub(access_ttl);
                            let used = grants_used.get(&g.id).copied();
                            page::GrantRow {
                                id: g.id.clone(),
                                servers: match (&g.servers, g.read_only) {
                                    (None, false) => "all".to_string(),
                                    (None, true) => "all, read-only".to_string(),
                                    (Some(s), ro) => format!(
                                        "{}{}",
                                        if s.is_empty() {
                                            "none".to_string()
                                        } else {
                                            s.join(", ")
                                        },
                                        if ro { ", read-only" } else { "" }
                                    ),
                                },
                                created: g.created,
                                last_used: used.max(Some(issued)).filter(|t| *t > 0),
                            }
                        })
                        .collect(),
                    id: c.client_id,
                    redirect_hosts: {
                        let mut hosts: Vec<String> =
                            c.redirect_uris.iter().map(|u| host_of(u)).collect();
                        hosts.dedup();
                        hosts
                    },
                    created: c.created,
                    name: c.name,
                })
                .collect()
        })
        .map_err(|e| e.description);
    page::Dashboard {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_secs: gateway.started.elapsed().as_secs(),
        tools: status
            .get("tools")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
        csrf: current.csrf,
        flash: current.flash,
        backends,
        activity,
        filter,
        tokens,
        profiles: config.profiles.keys().cloned().collect(),
        clients,
        base: crate::face::oauth::base_url(gateway, request),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(handles(""));
        assert!(handles("/owner/login"));
        assert!(!handles("/ownerx"));
        assert!(!handles("/mcp"));
    }

    #[test]
    fn redirect_hosts() {
        assert_eq!(
            host_of("https://claude.ai/api/mcp/auth_callback"),
            "claude.ai"
        );
        assert_eq!(host_of("http://127.0.0.1:3333/cb"), "127.0.0.1");
        assert_eq!(host_of("http://[::1]:80/x"), "[::1]");
        assert_eq!(host_of("https://u@h.example:8443?x"), "h.example");
        assert_eq!(host_of("GW.example.net:443"), "gw.example.net");
    }

    #[test]
    fn the_default_lifetimes() {
        let s = OwnerSettings::default();
        assert!(s.enabled);
        assert_eq!(s.session_idle, Duration::from_secs(43_200));
        assert_eq!(s.session_max, Duration::from_secs(604_800));
    }
}
