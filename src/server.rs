//! The HTTP server: a fixed pool of worker threads on one tiny_http server, routing, bearer-token
//! checks, body limits, socket timeouts, and panic isolation.

use crate::face::mcp::McpFace;
use crate::face::oauth as oauth_face;
use crate::face::openai::{self as openai_face, OpenAiFace};
use crate::gateway::{Gateway, Principal};
use crate::http_util::{request_header, respond_json};
use serde_json::json;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tiny_http::{Method, Request, Server};

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
        let io_timeout = Some(gateway.config.limits.io_timeout);
        let server = Arc::new(
            Server::from_listener_with_timeouts(listener, None, io_timeout)
                .map_err(|e| ServeError::Setup(e.to_string()))?,
        );
        let faces = Arc::new(Faces {
            mcp: McpFace::new(Arc::clone(&gateway)),
            openai: OpenAiFace::new(Arc::clone(&gateway)),
        });
        let mut workers = Vec::new();
        for n in 0..gateway.config.workers {
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
        // A panic must cost one request, never the worker or the process.
        if catch_unwind(AssertUnwindSafe(|| route(request, gateway, faces))).is_err() {
            log::error!("internal error while answering {path}; the request was dropped");
        }
    }
}

fn path_of(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
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
    if is_openai && *request.method() == Method::Options {
        return openai_face::preflight(request, gateway);
    }
    if !is_oauth && !is_openai && !matches!(path.as_str(), "/mcp" | "/status") {
        return respond_json(
            request,
            404,
            &json!({"error": "not_found", "message": format!("no such endpoint {path}; the MCP endpoint is /mcp")}),
            &[],
        );
    }
    let limit = gateway.config.limits.max_body_bytes;
    if request.body_length().map(|n| n > limit).unwrap_or(false) {
        return too_large(request, limit);
    }
    let principal = if is_oauth {
        None
    } else {
        match authenticate(&request, gateway) {
            Some(p) => Some(p),
            None if is_openai => return openai_face::unauthorized(request, gateway),
            None => return unauthorized(request, gateway, &path),
        }
    };
    let mut body = Vec::new();
    match request
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
    {
        Ok(_) if body.len() > limit => return too_large(request, limit),
        Ok(_) => {}
        Err(e) => {
            log::debug!("could not read a request body: {e}");
            return respond_json(
                request,
                400,
                &json!({"error": "bad_request", "message": format!("could not read the request body: {e}")}),
                &[],
            );
        }
    }
    match (path.as_str(), principal) {
        (_, None) => oauth_face::handle(gateway, request, &body),
        ("/mcp", Some(principal)) => faces.mcp.handle(request, body, &principal),
        (_, Some(principal)) if is_openai => faces.openai.handle(request, &body, &principal),
        (_, Some(principal)) if *request.method() == Method::Get => {
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
    log::info!("refused {} {path}: {message}", request.method());
    respond_json(
        request,
        401,
        &json!({"error": "unauthorized", "message": message}),
        &[("WWW-Authenticate".to_string(), challenge)],
    );
}

fn too_large(request: Request, limit: usize) {
    let message = format!("the request body is larger than {limit} bytes (limits.max_body_bytes)");
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": crate::jsonrpc::INVALID_REQUEST, "message": message}});
    respond_json(
        request,
        413,
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
    if let Some(name) = gateway.tokens.verify(token) {
        return Some(Principal::unrestricted(name));
    }
    let resource = oauth_face::resource_url(&oauth_face::base_url(gateway, request));
    gateway
        .oauth
        .verify_access(token, &resource)
        .map(|p| Principal {
            name: format!("oauth:{}", p.client_name),
            servers: p.servers,
        })
}
