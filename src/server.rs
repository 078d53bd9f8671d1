//! The HTTP server: a fixed pool of worker threads on one tiny_http server, routing, bearer-token
//! checks, body limits, socket timeouts, and panic isolation. Each worker counts the answers it
//! sends (`mcp_gateway_http_requests_total`, see `crate::metrics`).

use crate::face::mcp::McpFace;
use crate::face::oauth as oauth_face;
use crate::face::openai::{self as openai_face, OpenAiFace};
use crate::face::openapi::{self as openapi_face, OpenApiFace};
use crate::face::owner::{self as owner_face, OwnerFace};
use crate::gateway::{Gateway, Principal};
use crate::http_util::{request_header, respond_json};
use crate::metrics::Face;
use crate::policy::ratelimit::{Limited, RateLimits};
use crate::policy::AccessRule;
use serde_json::json;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use tiny_http::{HandOverEarly, Method, Request, Server, ServerOptions};

/// Why the server could not start.
#[derive(Debug)]
pub enum ServeError {
    /// The listen address could not be bound.
    Bind(String, std::io::Error),
    /// tiny_http refused the listener.
    Setup(String),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e} (hint: is another program using that port? change \"listen\" or pass --listen)"),
            ServeError::Setup(e) => write!(f, "cannot start the HTTP server: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// The protocols served, each with the state it keeps.
struct Faces {
    mcp: Arc<McpFace>,
    openai: Arc<OpenAiFace>,
    openapi: Arc<OpenApiFace>,
    /// Workers busy in the OAuth face, which anyone can reach without a token: at most half of
    /// them, so that its slow parts (a password hash, a metadata fetch) never take them all.
    oauth_busy: AtomicUsize,
    oauth_max: usize,
    /// Requests per principal and in all (`limits.*_requests_per_minute`).
    rates: RateLimits,
    /// The owner's page at `/` and its sessions.
    owner: OwnerFace,
}

/// A bound, running HTTP server.
pub struct HttpServer {
    server: Arc<Server>,
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `listen` and starts `config.workers` worker threads serving `gateway`.
    pub fn start(gateway: Arc<Gateway>, listen: &str) -> Result<HttpServer, ServeError> {
        let listener =
            TcpListener::bind(listen).map_err(|e| ServeError::Bind(listen.to_string(), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| ServeError::Bind(listen.to_string(), e))?;
        let server = Arc::new(
            Server::from_listener_with_options(listener, None, server_options(&gateway))
                .map_err(|e| ServeError::Setup(e.to_string()))?,
        );
        let faces = Arc::new(Faces {
            mcp: McpFace::new(Arc::clone(&gateway)),
            openai: OpenAiFace::new(Arc::clone(&gateway)),
            openapi: OpenApiFace::new(Arc::clone(&gateway)),
            oauth_busy: AtomicUsize::new(0),
            oauth_max: (gateway.config().workers / 2).max(1),
            rates: RateLimits::new(
                gateway.config().limits.principal_rate,
                gateway.config().limits.global_rate,
            ),
            owner: OwnerFace::new(),
        });
        let mut workers = Vec::new();
        for n in 0..gateway.config().workers {
            let server = Arc::clone(&server);
            let gateway = Arc::clone(&gateway);
            let faces = Arc::clone(&faces);
            let handle = std::thread::Builder::new()
                .name(format!("worker-{n}"))
                .spawn(move || worker(&server, &gateway, &faces))
                .map_err(|e| ServeError::Setup(format!("cannot start worker threads: {e}")))?;
            workers.push(handle);
        }
        Ok(HttpServer {
            server,
            local_addr,
            workers,
        })
    }

    /// Blocks until the server stops.
    pub fn join(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }

    /// Stops accepting requests; workers end after their current request.
    pub fn shutdown(&self) {
        self.server.unblock();
    }
}

/// The connection limits from the config. Bodies up to 64 KiB (every OAuth form) are read by
/// the connection's own thread before a worker gets the request, within `request_timeout`, so
/// a client that trickles its bytes holds no worker; a body over the limit of its path is
/// handed over at once, unread, for an immediate 413.
fn server_options(gateway: &Gateway) -> ServerOptions {
    let limits = &gateway.config().limits;
    let max_body = limits.max_body_bytes;
    ServerOptions {
        io_timeout: Some(limits.io_timeout),
        request_timeout: Some(limits.request_timeout),
        max_head_bytes: 32 * 1024,
        max_headers: 100,
        preread_body_bytes: oauth_face::MAX_BODY_BYTES,
        max_connections: limits.max_connections,
        max_connections_per_address: limits.max_connections_per_address,
        hand_over_early: Some(HandOverEarly::new(move |_method, url, headers| {
            let length = headers
                .iter()
                .find(|h| h.field.equiv("Content-Length"))
                .and_then(|h| h.value.as_str().trim().parse::<usize>().ok());
            let path = path_of(url).trim_end_matches('/');
            let limit = if oauth_face::handles(path) {
                oauth_face::body_limit(path)
            } else if owner_face::handles(path) {
                owner_face::MAX_BODY_BYTES
            } else {
                max_body
            };
            length.is_some_and(|n| n > limit)
        })),
    }
}

fn worker(server: &Server, gateway: &Arc<Gateway>, faces: &Faces) {
    loop {
        let request = match server.recv() {
            Ok(r) => r,
            Err(e) => {
                log::debug!("worker stops: {e}");
                return;
            }
        };
        let path = request.url().to_string();
        let face = face_of(path_of(&path).trim_end_matches('/'));
        // Forget whatever a previous request on this thread left noted.
        crate::metrics::take_status();
        // A panic must cost one request, never the worker or the process.
        if catch_unwind(AssertUnwindSafe(|| route(request, gateway, faces))).is_err() {
            log::error!(
                "internal error while answering {}; the request was dropped",
                crate::untrusted::for_log(&path)
            );
        }
        // Answered by nobody: tiny_http sent 500 when the request was dropped.
        let status = crate::metrics::take_status().unwrap_or(500);
        gateway.metrics.count_request(face, status);
    }
}

fn path_of(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// The face a path belongs to, for the metrics (as `route` sends it on).
fn face_of(path: &str) -> Face {
    match path {
        "/mcp" => Face::Mcp,
        "/health" | "/status" | "/metrics" => Face::Status,
        _ if path == "/v1" || path.starts_with("/v1/") => Face::OpenAi,
        _ if openapi_face::handles(path) => Face::OpenApi,
        _ if oauth_face::handles(path) => Face::OAuth,
        _ if owner_face::handles(path) => Face::Owner,
        _ => Face::Other,
    }
}

fn route(mut request: Request, gateway: &Gateway, faces: &Faces) {
    let path = path_of(request.url()).trim_end_matches('/').to_string();
    if path == "/health" {
        return respond_json(
            request,
            200,
            &json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}),
            &[],
        );
    }
    let is_oauth = oauth_face::handles(&path);
    let is_openai = path == "/v1" || path.starts_with("/v1/");
    let is_openapi = openapi_face::handles(&path);
    if (is_openai || is_openapi) && *request.method() == Method::Options {
        return openai_face::preflight(request, gateway);
    }
    let config = gateway.config();
    let settings = &config.metrics;
    if path == "/metrics" && !settings.enabled {
        return respond_json(
            request,
            404,
            &json!({"error": "not_found", "message": "metrics are off (\"metrics\": {\"enabled\": false} in the config)"}),
            &[],
        );
    }
    if path == "/metrics" && settings.public {
        return metrics(request, gateway, faces, None);
    }
    if config.owner.enabled && owner_face::handles(&path) {
        return owner(request, gateway, faces, &path);
    }
    if !is_oauth
        && !is_openai
        && !is_openapi
        && !matches!(path.as_str(), "/mcp" | "/status" | "/metrics")
    {
        return respond_json(
            request,
            404,
            &json!({"error": "not_found", "message": format!("no such endpoint {path}; the MCP endpoint is /mcp")}),
            &[],
        );
    }
    if is_oauth {
        return oauth(request, gateway, faces, &path);
    }
    let limit = gateway.config().limits.max_body_bytes;
    let face = face_of(&path);
    let audit_face = match face {
        Face::OpenAi | Face::OpenApi => face.as_str(),
        _ => "mcp",
    };
    if request.body_length().map(|n| n > limit).unwrap_or(false) {
        return too_large(request, limit, face);
    }
    let principal = match authenticate(&request, gateway) {
        Some(p) => p,
        None => {
            gateway.metrics.count_auth_failure();
            let presented = request_header(&request, "Authorization").is_some();
            let address = crate::http_util::client_address(
                &request,
                gateway.config().oauth.trust_forwarded_headers,
            )
            .map(|a| a.to_string())
            .unwrap_or_default();
            gateway.audit.record(&crate::audit::Entry {
                face: audit_face,
                principal: &address,
                action: "auth",
                name: &path,
                outcome: "refused",
                detail: Some(if presented {
                    "invalid bearer token"
                } else {
                    "no bearer token"
                }),
                ..crate::audit::Entry::default()
            });
            return if is_openai {
                openai_face::unauthorized(request, gateway)
            } else if is_openapi {
                openapi_face::unauthorized(request, gateway)
            } else {
                unauthorized(request, gateway, &path)
            };
        }
    };
    if let Err(limited) = faces.rates.check(&principal.name) {
        gateway.metrics.count_rate_limited(limited.own);
        gateway.audit.record(&crate::audit::Entry {
            face: audit_face,
            principal: &principal.name,
            action: "rate_limit",
            name: &path,
            outcome: "refused",
            detail: Some(if limited.own {
                "principal limit"
            } else {
                "global limit"
            }),
            ..crate::audit::Entry::default()
        });
        return rate_limited(request, &principal.name, limited, face);
    }
    let body = match read_body(&mut request, limit) {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return too_large(request, limit, face),
        Err(BodyError::Io(status, message)) => return refuse_body(request, status, message, face),
    };
    match (path.as_str(), principal) {
        ("/mcp", principal) => faces.mcp.handle(request, body, &principal),
        ("/metrics", principal) => metrics(request, gateway, faces, Some(&principal)),
        (_, principal) if is_openai => faces.openai.handle(request, &body, &principal),
        (_, principal) if is_openapi => faces.openapi.handle(request, &body, &principal),
        (_, principal) if *request.method() == Method::Get => {
            respond_json(request, 200, &gateway.status_json(&principal), &[])
        }
        _ => respond_json(
            request,
            405,
            &json!({"error": "method_not_allowed", "message": "use GET /status"}),
            &[("Allow".to_string(), "GET".to_string())],
        ),
    }
}

/// The OAuth face: no token needed, so small bodies only, refused before they are read, and at
/// most half the workers at once.
fn oauth(mut request: Request, gateway: &Gateway, faces: &Faces, path: &str) {
    let limit = oauth_face::body_limit(path);
    let refuse = |request, status: u16, message: String| {
        let error = crate::oauth::OAuthError::new("invalid_request", message).with_status(status);
        oauth_face::respond_oauth_error(request, &error)
    };
    if request.body_length().is_some_and(|n| n > limit) {
        return refuse(
            request,
            413,
            format!("the request body is larger than {limit} bytes, the most this endpoint takes"),
        );
    }
    let Some(_busy) = crate::oauth::limits::Slot::take(&faces.oauth_busy, faces.oauth_max) else {
        let mut error = crate::oauth::OAuthError::new(
            "temporarily_unavailable",
            "the gateway is busy with other sign-ins; try again in a moment",
        )
        .with_status(503);
        error.retry_after = Some(1);
        return oauth_face::respond_oauth_error(request, &error);
    };
    match read_body(&mut request, limit) {
        Ok(body) => oauth_face::handle(gateway, request, &body),
        Err(BodyError::TooLarge) => refuse(
            request,
            413,
            format!("the request body is larger than {limit} bytes, the most this endpoint takes"),
        ),
        Err(BodyError::Io(status, message)) => refuse(request, status, message),
    }
}

/// The owner's page: no token needed, so small bodies only, and its POSTs (a password check is
/// slow) share the OAuth face's half of the workers.
fn owner(mut request: Request, gateway: &Gateway, faces: &Faces, path: &str) {
    let limit = owner_face::MAX_BODY_BYTES;
    let refuse = |request, status: u16, message: &str| {
        owner_face::respond_message(request, status, "Refused", message)
    };
    if request.body_length().is_some_and(|n| n > limit) {
        return refuse(request, 413, "The form is too large.");
    }
    let _busy = if *request.method() == Method::Post {
        match crate::oauth::limits::Slot::take(&faces.oauth_busy, faces.oauth_max) {
            Some(slot) => Some(slot),
            None => return refuse(request, 503, "The gateway is busy; try again in a moment."),
        }
    } else {
        None
    };
    match read_body(&mut request, limit) {
        Ok(body) => faces.owner.handle(gateway, request, path, &body),
        Err(BodyError::TooLarge) => refuse(request, 413, "The form is too large."),
        Err(BodyError::Io(status, message)) => refuse(request, status, &message),
    }
}

/// `GET /metrics`: the Prometheus text exposition. `principal` is who scrapes (`None` with
/// `metrics.public`); with `metrics.tokens` set, only those static tokens may (OAuth principals
/// are named `oauth:...`, which no token name can be).
fn metrics(request: Request, gateway: &Gateway, faces: &Faces, principal: Option<&Principal>) {
    if *request.method() != Method::Get {
        return respond_json(
            request,
            405,
            &json!({"error": "method_not_allowed", "message": "use GET /metrics"}),
            &[("Allow".to_string(), "GET".to_string())],
        );
    }
    let config = gateway.config();
    let allowed = &config.metrics.tokens;
    if let Some(principal) = principal {
        if !allowed.is_empty() && !allowed.contains(&principal.name) {
            log::info!(
                "refused GET /metrics to {}: not in metrics.tokens",
                crate::untrusted::for_log(&principal.name)
            );
            return respond_json(
                request,
                403,
                &json!({"error": "forbidden", "message": "this token may not read /metrics (metrics.tokens lists the ones that may)"}),
                &[],
            );
        }
    }
    let sessions = faces.mcp.session_count() as u64;
    let view = crate::metrics::View::of(gateway, sessions);
    let body = gateway.metrics.render(&view);
    crate::http_util::respond_bytes(
        request,
        200,
        body.into_bytes(),
        crate::metrics::CONTENT_TYPE,
        &[("Cache-Control".to_string(), "no-store".to_string())],
    );
}

/// Why a request body could not be had.
enum BodyError {
    /// Over the limit.
    TooLarge,
    /// The client stalled (408) or sent a broken body (400).
    Io(u16, String),
}

/// Reads the body, at most `limit` bytes. The server's request timeout bounds how long a slow
/// client can make this take.
fn read_body(request: &mut Request, limit: usize) -> Result<Vec<u8>, BodyError> {
    // Sized from Content-Length (a few hundred bytes for most calls): read_to_end's growth
    // would reach 8 KiB, and musl's allocator maps and unmaps a page for that on every request.
    // At most what tiny_http has already read in advance: a client that declares megabytes and
    // sends nothing must not make a connection hold them.
    let declared = request
        .body_length()
        .unwrap_or(0)
        .min(limit + 1)
        .min(oauth_face::MAX_BODY_BYTES);
    let mut body = Vec::with_capacity(declared);
    match request
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
    {
        Ok(_) if body.len() > limit => Err(BodyError::TooLarge),
        Ok(_) => Ok(body),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            log::debug!("a client was too slow sending a request body: {e}");
            Err(BodyError::Io(
                408,
                "the request body did not arrive in time (limits.request_timeout_ms)".into(),
            ))
        }
        Err(e) => {
            log::debug!("could not read a request body: {e}");
            Err(BodyError::Io(
                400,
                format!("could not read the request body: {e}"),
            ))
        }
    }
}

/// 401 with the challenge that tells OAuth clients where to start (RFC 9728).
fn unauthorized(request: Request, gateway: &Gateway, path: &str) {
    let presented = request_header(&request, "Authorization").is_some();
    let message = if presented {
        "the bearer token is not valid (it may have expired or been revoked)"
    } else {
        "missing Authorization: Bearer <token> header"
    };
    let metadata = oauth_face::resource_metadata_url(&oauth_face::base_url(gateway, &request));
    let mut challenge = format!("Bearer realm=\"mcp-gateway\", resource_metadata=\"{metadata}\"");
    if presented {
        challenge.push_str(", error=\"invalid_token\"");
    }
    log::info!(
        "refused {} {}: {message}",
        request.method(),
        crate::untrusted::for_log(path)
    );
    respond_json(
        request,
        401,
        &json!({"error": "unauthorized", "message": message}),
        &[("WWW-Authenticate".to_string(), challenge)],
    );
}

/// 429 with `Retry-After`, in the protocol of the face: an OpenAI `rate_limit_exceeded` error on
/// `/v1`, `{"error": "rate_limited"}` on the OpenAPI face, a JSON-RPC error with
/// `data.retryAfterMs` elsewhere.
fn rate_limited(request: Request, principal: &str, limited: Limited, face: Face) {
    let millis = limited.retry_after.as_millis().max(1) as u64;
    let seconds = millis.div_ceil(1000).max(1);
    let which = if limited.own {
        "this token's request limit (limits.principal_requests_per_minute)"
    } else {
        "the gateway's request limit for all clients together (limits.global_requests_per_minute)"
    };
    let message = format!("too many requests: {which} is reached; try again in {seconds} s");
    log::debug!(
        "rate-limited {}: {which}",
        crate::untrusted::for_log(principal)
    );
    let body = if face == Face::OpenAi {
        json!({"error": {"message": message, "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
    } else if face == Face::OpenApi {
        openapi_face::ApiError::new(429, "rate_limited", message).body()
    } else {
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": crate::jsonrpc::RATE_LIMITED, "message": message,
            "data": {"retryAfterMs": millis, "limit": if limited.own { "principal" } else { "global" }}}})
    };
    respond_json(
        request,
        429,
        &body,
        &[("Retry-After".to_string(), seconds.to_string())],
    );
}

fn too_large(request: Request, limit: usize, face: Face) {
    let message = format!("the request body is larger than {limit} bytes (limits.max_body_bytes)");
    refuse_body(request, 413, message, face);
}

/// A body refused before the face saw it, in the face's protocol: an OpenAI error on `/v1`, an
/// OpenAPI face error, a JSON-RPC error elsewhere. The connection is closed (the rest of the body
/// is not read).
fn refuse_body(request: Request, status: u16, message: String, face: Face) {
    let body = if face == Face::OpenApi {
        openapi_face::ApiError::new(status, "invalid_body", message).body()
    } else if face == Face::OpenAi {
        openai_face::ApiError {
            status,
            kind: "invalid_request_error",
            code: None,
            param: None,
            message,
        }
        .body()
    } else {
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": crate::jsonrpc::INVALID_REQUEST, "message": message}})
    };
    respond_json(
        request,
        status,
        &body,
        &[("Connection".to_string(), "close".to_string())],
    );
}

/// Who the request's bearer token speaks for: a static token, or an OAuth access token issued
/// for this gateway's MCP endpoint.
fn authenticate(request: &Request, gateway: &Gateway) -> Option<Principal> {
    let value = request_header(request, "Authorization")?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    if let Some(record) = gateway.tokens.verify_record(token) {
        let rule = match &record.profile {
            None => record.access,
            Some(profile) => match gateway.config().profiles.get(profile) {
                Some(rule) => rule.clone(),
                None => {
                    log::warn!("token \"{}\" names the profile \"{profile}\", which the config no longer has: it may reach nothing until the profile is back", record.name);
                    AccessRule::nothing()
                }
            },
        };
        return Some(Principal {
            name: record.name,
            rule,
            tool_view: record.tool_view,
        });
    }
    let resource = oauth_face::resource_url(&oauth_face::base_url(gateway, request));
    gateway
        .oauth
        .verify_access(token, &resource)
        .map(|p| Principal {
            name: format!("oauth:{}", p.client_name),
            rule: AccessRule {
                servers: p.servers,
                read_only: p.read_only,
                ..AccessRule::everything()
            },
            tool_view: gateway.config().oauth.tool_view,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_counted_under_its_face() {
        let label = |path: &str| face_of(path).as_str();
        assert_eq!(label("/mcp"), "mcp");
        assert_eq!(label("/metrics"), "status");
        assert_eq!(label("/v1/chat/completions"), "openai");
        assert_eq!(label("/openapi.json"), "openapi");
        assert_eq!(label("/.well-known/oauth-authorization-server"), "oauth");
        assert_eq!(
            label(""),
            "owner",
            "the page at / (its path without the slash)"
        );
        assert_eq!(label("/owner/login"), "owner");
        assert_eq!(label("/nope"), "other");
    }
}
