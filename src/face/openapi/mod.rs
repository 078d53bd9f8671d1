//! The OpenAPI tool-server face, for Open WebUI's "tool servers" and any OpenAPI tool runner:
//! the caller's allowed tools as an OpenAPI 3.1 document, and one `POST` operation per tool that
//! runs it through the core's one policy path (access, validation, confirmation, audit).
//!
//! # Paths
//!
//! An OpenAPI tool runner calls "the URL the user entered" plus the operation's path and ignores
//! `servers`, so every operation lives under `/openapi/`, where no other route of the gateway is:
//!
//! - `GET /openapi.json`: every tool; the user enters the gateway's base URL
//!   (`http://host:port`), and the operations are `POST /openapi/<server>/<tool>`.
//! - `GET /openapi/<server>/openapi.json`: one backend's tools (`gateway` for the gateway's own);
//!   the user enters `http://host:port/openapi/<server>`, and the operations are `/<tool>`
//!   relative to it: the same `POST /openapi/<server>/<tool>`.
//!
//! `<tool>` is the namespaced name clients see (`<server>__<tool>`), which is also the
//! `operationId`; a tool is called only under its own server's path.
//!
//! # Answers
//!
//! Success is 200 with the tool's `structuredContent` as JSON when it has some, otherwise its
//! text (`text/plain`, the text items joined by blank lines; an embedded resource's text is
//! included; an image, audio or other item becomes a line such as `[image content (image/png)
//! not shown]`). Errors are `{"error": <kind>, "message": <text>}`: 400 `invalid_body`, 401
//! `unauthorized`, 403 `forbidden` (access rule), 404 `unknown_tool`, 409
//! `confirmation_required` (a `confirm` tool: this face cannot ask the user), 409
//! `input_required` (the tool asked the client for input: elicitation, sampling, roots), 422
//! `invalid_arguments` (the tool's `inputSchema` refuses them; `violations` lists each), 400
//! `tool_error` (the tool ran and reported an error: `isError`), 429 `rate_limited`, 502
//! `backend_error` (down, or failed), 503 `backend_busy`, 504 `backend_timeout`, 503
//! `unavailable` (the audit log refuses calls).
//!
//! The documents are cached per catalog and access rule (bounded), with an `ETag` answering
//! `If-None-Match` with 304. CORS follows `openai.cors_origins`.

pub mod document;

use crate::backend::CallOptions;
use crate::catalog::{Catalog, Route};
use crate::face::openai::cors_headers;
use crate::gateway::{Gateway, Principal};
use crate::http_util::{request_header, respond_bytes, respond_empty, respond_json};
use crate::jsonrpc::{self, RpcError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tiny_http::{Method, Request};

/// The file name of every document.
const DOCUMENT: &str = "openapi.json";
/// Documents kept in memory at most, and their bytes in all (they are cleared when the catalog
/// changes, or when one more would not fit). A household's whole document is ~160 KB.
const MAX_CACHED: usize = 16;
const MAX_CACHED_BYTES: usize = 2 * 1024 * 1024;

/// Whether `path` (without query or trailing slash) belongs to this face.
pub fn handles(path: &str) -> bool {
    matches!(segments(path).first(), Some(&("openapi" | DOCUMENT)))
}

/// The non-empty segments of a path: a runner that joins a URL ending in `/` with a path
/// starting with one (`//openapi.json`) reaches the same place.
fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// An error answer of this face.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `error`: what kind.
    pub kind: &'static str,
    /// `message`: what went wrong and what to do.
    pub message: String,
    /// `violations`, for arguments the schema refuses.
    pub violations: Option<Value>,
}

impl ApiError {
    /// An error without violations.
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            violations: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = json!({"error": self.kind, "message": self.message});
        if let Some(v) = &self.violations {
            body["violations"] = v.clone();
        }
        body
    }

    /// The error for a refusal or failure of the core.
    pub fn from_rpc(error: &RpcError) -> ApiError {
        let message = error.message.clone();
        let data = error.data.as_ref();
        match error.code {
            jsonrpc::ACCESS_DENIED => ApiError::new(403, "forbidden", message),
            jsonrpc::RATE_LIMITED => ApiError::new(429, "rate_limited", message),
            // The tool asked for the user's input (elicitation, sampling, roots), which this
            // face cannot carry.
            jsonrpc::METHOD_NOT_FOUND | jsonrpc::MISSING_CLIENT_CAPABILITY => {
                ApiError::new(409, "input_required", message)
            }
            jsonrpc::INVALID_PARAMS => ApiError {
                violations: data.and_then(|d| d.get("violations")).cloned(),
                ..ApiError::new(422, "invalid_arguments", message)
            },
            jsonrpc::INTERNAL_ERROR if data.and_then(|d| d.get("backend")).is_some() => {
                match data.and_then(|d| d.get("kind")).and_then(Value::as_str) {
                    Some("timeout") => ApiError::new(504, "backend_timeout", message),
                    Some("busy") => ApiError::new(503, "backend_busy", message),
                    _ => ApiError::new(502, "backend_error", message),
                }
            }
            jsonrpc::INTERNAL_ERROR => ApiError::new(503, "unavailable", message),
            _ => ApiError::new(502, "backend_error", message),
        }
    }
}

/// The 401 without a valid bearer token.
pub fn unauthorized(request: Request, gateway: &Gateway) {
    let presented = request_header(&request, "Authorization").is_some();
    let message = if presented {
        "the bearer token is not valid (it may have expired or been revoked); set a valid token from `mcp-gateway token create` as this tool server's key"
    } else {
        "missing Authorization: Bearer <token>; set a token from `mcp-gateway token create` as this tool server's key (auth type Bearer)"
    };
    let mut headers = cors_headers(gateway, &request);
    let mut challenge = "Bearer realm=\"mcp-gateway\"".to_string();
    if presented {
        challenge.push_str(", error=\"invalid_token\"");
    }
    headers.push(("WWW-Authenticate".into(), challenge));
    let error = ApiError::new(401, "unauthorized", message);
    respond_json(request, 401, &error.body(), &headers);
}

/// A document as served: its bytes and their `ETag`.
struct Cached {
    etag: String,
    bytes: Arc<Vec<u8>>,
}

/// The documents generated for one catalog, by scope, access rule and base URL.
#[derive(Default)]
struct DocCache {
    /// The catalog they were made from (weak: an old catalog is not kept alive for them).
    catalog: Weak<Catalog>,
    documents: HashMap<String, Cached>,
    bytes: usize,
}

/// The OpenAPI face and its document cache.
pub struct OpenApiFace {
    gateway: Arc<Gateway>,
    cache: Mutex<DocCache>,
}

impl OpenApiFace {
    /// Creates the face.
    pub fn new(gateway: Arc<Gateway>) -> Arc<OpenApiFace> {
        Arc::new(OpenApiFace {
            gateway,
            cache: Mutex::new(DocCache::default()),
        })
    }

    /// Answers one authenticated request under [`handles`].
    pub fn handle(&self, request: Request, body: &[u8], principal: &Principal) {
        let gateway = &*self.gateway;
        let cors = cors_headers(gateway, &request);
        let path = request
            .url()
            .split(['?', '#'])
            .next()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string();
        let method = request.method().clone();
        let (scope, tool) = match segments(&path)[..] {
            [DOCUMENT] => (None, Some(DOCUMENT)),
            ["openapi", server, tool] => (Some(server), Some(tool)),
            _ => (None, None),
        };
        let error = match (method, scope, tool) {
            (Method::Get, scope, Some(DOCUMENT)) => {
                return self.serve_document(request, principal, scope, cors)
            }
            (Method::Post, Some(server), Some(tool)) if tool != DOCUMENT => {
                return self.call(request, body, principal, server, tool, cors)
            }
            (_, _, Some(DOCUMENT)) => ApiError::new(405, "method_not_allowed", format!("use GET {path}")),
            (_, Some(_), Some(_)) => ApiError::new(405, "method_not_allowed", format!("operations are called with POST {path} and the tool's arguments as a JSON object")),
            _ => ApiError::new(404, "not_found", format!("no such endpoint {path}; the OpenAPI documents are GET /openapi.json (every tool) and GET /openapi/<server>/openapi.json (one server's)")),
        };
        let mut headers = cors;
        if error.status == 405 {
            let allow = if tool == Some(DOCUMENT) {
                "GET"
            } else {
                "POST"
            };
            headers.push(("Allow".into(), allow.into()));
        }
        respond_json(request, error.status, &error.body(), &headers);
    }

    fn serve_document(
        &self,
        request: Request,
        principal: &Principal,
        server: Option<&str>,
        mut headers: Vec<(String, String)>,
    ) {
        let base = crate::face::oauth::base_url(&self.gateway, &request);
        let Some(document) = self.document(principal, server, &base) else {
            let e = ApiError::new(404, "not_found", format!("no server \"{}\" among this token's servers; GET /openapi.json lists every tool this token may use", server.unwrap_or("")));
            return respond_json(request, 404, &e.body(), &headers);
        };
        headers.push(("ETag".into(), document.etag.clone()));
        headers.push(("Cache-Control".into(), "private, no-cache".into()));
        headers.push(("Vary".into(), "Authorization".into()));
        let unchanged = request_header(&request, "If-None-Match").is_some_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t == document.etag)
        });
        if unchanged {
            return respond_empty(request, 304, &headers);
        }
        respond_bytes(
            request,
            200,
            document.bytes.to_vec(),
            "application/json",
            &headers,
        );
    }

    /// The document of `server` (every tool with `None`) for `principal`, from the cache when
    /// the catalog has not changed; `None` for a server it may not see.
    fn document(&self, principal: &Principal, server: Option<&str>, base: &str) -> Option<Cached> {
        let gateway = &*self.gateway;
        let catalog = gateway.catalog();
        let rule = serde_json::to_string(&principal.rule).unwrap_or_default();
        let view = principal.tool_view.as_str();
        let key = format!("{}\n{rule}\n{view}\n{base}", server.unwrap_or(""));
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let current = std::ptr::eq(cache.catalog.as_ptr(), Arc::as_ptr(&catalog));
            if let Some(hit) = cache.documents.get(&key).filter(|_| current) {
                return Some(Cached {
                    etag: hit.etag.clone(),
                    bytes: Arc::clone(&hit.bytes),
                });
            }
        }
        let backends = gateway.backends();
        if let Some(s) = server {
            let known = s == crate::config::BUILTIN_SERVER
                || backends
                    .iter()
                    .any(|b| b.name() == s && principal.may_use(s));
            if !known {
                return None;
            }
        }
        // The tools, their servers and the catalog the document is kept under: one snapshot.
        let (catalog, tools) = gateway.tools_with_servers(principal);
        let operations: Vec<document::Operation<'_>> = tools
            .iter()
            .filter_map(|(owner, tool)| {
                let owner = owner.as_deref()?;
                server
                    .map_or(true, |s| s == owner)
                    .then_some(document::Operation {
                        server: owner,
                        tool,
                    })
            })
            .collect();
        let value = match server {
            None => document::document(
                "mcp-gateway",
                base,
                |s| format!("/openapi/{s}"),
                &operations,
            ),
            Some(s) => {
                let url = format!("{base}/openapi/{s}");
                document::document(
                    &format!("mcp-gateway: {s}"),
                    &url,
                    |_| String::new(),
                    &operations,
                )
            }
        };
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        let etag = format!("\"{}\"", crate::tokens::hex(&digest[..12]));
        let bytes = Arc::new(bytes);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let current = std::ptr::eq(cache.catalog.as_ptr(), Arc::as_ptr(&catalog));
        let full =
            cache.documents.len() >= MAX_CACHED || cache.bytes + bytes.len() > MAX_CACHED_BYTES;
        if !current || full {
            cache.documents.clear();
            cache.bytes = 0;
            cache.catalog = Arc::downgrade(&catalog);
        }
        if bytes.len() <= MAX_CACHED_BYTES {
            cache.bytes += bytes.len();
            let kept = Cached {
                etag: etag.clone(),
                bytes: Arc::clone(&bytes),
            };
            if let Some(old) = cache.documents.insert(key, kept) {
                cache.bytes -= old.bytes.len();
            }
        }
        Some(Cached { etag, bytes })
    }

    /// Runs `tool` of `server` with the body as its arguments.
    fn call(
        &self,
        request: Request,
        body: &[u8],
        principal: &Principal,
        server: &str,
        tool: &str,
        headers: Vec<(String, String)>,
    ) {
        match self.run(body, principal, server, tool) {
            Ok((bytes, content_type)) => respond_bytes(request, 200, bytes, content_type, &headers),
            Err(e) => respond_json(request, e.status, &e.body(), &headers),
        }
    }

    fn run(
        &self,
        body: &[u8],
        principal: &Principal,
        server: &str,
        tool: &str,
    ) -> Result<(Vec<u8>, &'static str), ApiError> {
        let gateway = &*self.gateway;
        let arguments: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body).map_err(|e| {
                ApiError::new(400, "invalid_body", format!("the request body is not valid JSON ({e}); send the tool's arguments as a JSON object"))
            })?
        };
        if !arguments.is_object() {
            return Err(ApiError::new(
                400,
                "invalid_body",
                "the request body must be a JSON object of the tool's arguments",
            ));
        }
        // The tool must be this server's: the path names both.
        let catalog = gateway.catalog();
        let backends = gateway.backends();
        let (owner, original) = match catalog.tool(tool) {
            Some(Route::Builtin(_)) => (Some(crate::config::BUILTIN_SERVER), None),
            Some(Route::Backend { backend, original }) => {
                let backend = backends.get(*backend);
                (backend.map(|b| b.name()), backend.map(|b| (b, original)))
            }
            None => (None, None),
        };
        if owner != Some(server) {
            return Err(ApiError::new(404, "unknown_tool", format!("there is no tool \"{tool}\" under /openapi/{server}; GET /openapi.json lists the tools and their paths")));
        }
        // A `confirm` tool is refused by the core (this face cannot ask the user) unless the
        // config allows such calls.
        let needs_confirmation = original.is_some_and(|(backend, original)| {
            backend
                .config
                .confirm
                .iter()
                .any(|g| crate::catalog::glob_match(g, original))
        }) && gateway.config().confirm_fallback
            != crate::policy::confirm::Fallback::Allow;
        let options = CallOptions {
            audit: Some(crate::audit::AuditContext {
                face: "openapi",
                principal: principal.name.clone(),
            }),
            ..CallOptions::default()
        };
        let result = gateway
            .call_tool(principal, tool, arguments, options, &mut |_| {})
            .map_err(|e| ApiError::from_rpc(&e))?;
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            let text = result_text(&result);
            return Err(if needs_confirmation {
                ApiError::new(409, "confirmation_required", text)
            } else {
                let text = if text.is_empty() {
                    format!("the tool \"{tool}\" reported an error without a message")
                } else {
                    text
                };
                ApiError::new(400, "tool_error", text)
            });
        }
        match result.get("structuredContent") {
            Some(structured) if !structured.is_null() => Ok((
                serde_json::to_vec(structured).unwrap_or_default(),
                "application/json",
            )),
            _ => Ok((
                result_text(&result).into_bytes(),
                "text/plain; charset=utf-8",
            )),
        }
    }
}

/// A tool result's content as text: text items, embedded resources' text, and a line naming
/// each other item.
pub fn result_text(result: &Value) -> String {
    let items = result.get("content").and_then(Value::as_array);
    let parts: Vec<String> = items
        .into_iter()
        .flatten()
        .map(|item| {
            let kind = item
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            let mime = item
                .get("mimeType")
                .or_else(|| item.pointer("/resource/mimeType"))
                .and_then(Value::as_str);
            let mime = mime.map(|m| format!(" ({m})")).unwrap_or_default();
            match (kind, item.get("text"), item.pointer("/resource/text")) {
                ("text", Some(Value::String(t)), _) => t.clone(),
                ("resource", _, Some(Value::String(t))) => t.clone(),
                ("resource_link", _, _) => format!(
                    "[link to {}{mime}]",
                    item.get("uri").and_then(Value::as_str).unwrap_or("?")
                ),
                _ => format!("[{kind} content{mime} not shown]"),
            }
        })
        .collect();
    parts.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CallError;

    #[test]
    fn core_errors_map_to_statuses_a_model_can_act_on() {
        let status = |e: &RpcError| ApiError::from_rpc(e).status;
        let down = CallError::Down {
            backend: "b".into(),
            reason: "refused".into(),
        }
        .to_rpc();
        let slow = CallError::Timeout {
            backend: "b".into(),
            after: std::time::Duration::from_secs(1),
        }
        .to_rpc();
        let busy = CallError::Busy {
            backend: "b".into(),
        }
        .to_rpc();
        let failed = CallError::Failed {
            backend: "b".into(),
            reason: "eof".into(),
        }
        .to_rpc();
        assert_eq!(
            [status(&down), status(&slow), status(&busy), status(&failed)],
            [502, 504, 503, 502]
        );
        assert_eq!(status(&RpcError::new(jsonrpc::ACCESS_DENIED, "no")), 403);
        assert_eq!(
            status(&RpcError::new(jsonrpc::RATE_LIMITED, "slow down")),
            429
        );
        assert_eq!(status(&RpcError::new(-32000, "backend's own")), 502);
        let cannot = RpcError::new(jsonrpc::MISSING_CLIENT_CAPABILITY, "no elicitation");
        assert_eq!(status(&cannot), 409);
        let invalid = RpcError::new(
            jsonrpc::INVALID_PARAMS,
            "invalid arguments for tool \"t\": /a: expected integer",
        )
        .with_data(
            json!({"name": "t", "violations": [{"pointer": "/a", "message": "expected integer"}]}),
        );
        let body = ApiError::from_rpc(&invalid).body();
        assert_eq!(body["error"], "invalid_arguments");
        assert_eq!(body["violations"][0]["pointer"], "/a");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("expected integer"));
    }

    #[test]
    fn results_read_as_text() {
        let result = json!({"content": [
            {"type": "text", "text": "one"},
            {"type": "image", "data": "AAAA", "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "x://a", "text": "inner", "mimeType": "text/plain"}},
            {"type": "resource_link", "uri": "x://b", "name": "b"},
        ]});
        assert_eq!(
            result_text(&result),
            "one\n\n[image content (image/png) not shown]\n\ninner\n\n[link to x://b]"
        );
        assert_eq!(result_text(&json!({})), "");
    }

    #[test]
    fn the_face_owns_only_its_paths() {
        for path in [
            "/openapi.json",
            "/openapi",
            "/openapi/house/openapi.json",
            "/openapi/house/house__set",
        ] {
            assert!(handles(path), "{path}");
        }
        for path in [
            "/mcp",
            "/v1/models",
            "/openapi.yaml",
            "/openapix",
            "/",
            "/health",
            "/x/openapi",
            "/openapi.json.x",
        ] {
            assert!(!handles(path), "{path}");
        }
        assert!(handles("//openapi.json") && handles("/openapi//house//openapi.json"));
    }
}
