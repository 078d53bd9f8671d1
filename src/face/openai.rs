//! The OpenAI face at `/v1`: `GET /v1/models`, `GET /v1/models/{id}` and
//! `POST /v1/chat/completions`, so that Open WebUI and any OpenAI client reach the household's
//! tools.
//!
//! This part serves the built-in `mcp-gateway` model, which needs no LLM: `/help` explains,
//! `/call <tool> <json-arguments>` runs a tool, and any other message gets the tool catalog
//! grouped by server. Streaming (`stream: true`) and plain answers; errors are OpenAI error
//! objects; CORS for the origins in `openai.cors_origins` only.

use crate::backend::CallOptions;
use crate::catalog::{ListKind, Route};
use crate::gateway::{Gateway, Principal};
use crate::http_util::{lazy_stream, request_header, respond_empty, respond_json, SseStream};
use crate::llm::{LlmError, ToolCall, ToolCallAssembler, Upstream};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tiny_http::{Method, Request};

/// The model that works without an LLM.
pub const BUILTIN_MODEL: &str = "mcp-gateway";
/// `plain/<model>` sends the conversation to `<model>` without any tool of ours (for Open
/// WebUI's title, tag and follow-up requests: choose it as the "task model").
pub const PLAIN_PREFIX: &str = "plain/";
const MODELS_REFRESH: Duration = Duration::from_secs(60);
const MODELS_RETRY: Duration = Duration::from_secs(5);

const HELP: &str =
    "This is the mcp-gateway model: it needs no LLM and runs your MCP tools directly.\n\n\
- Any message: lists the tools this gateway offers, grouped by server.\n\
- `/call <tool> <json-arguments>`: runs a tool, e.g. `/call gateway__status {}`.\n\
- `/help`: this text.";

/// An OpenAI error: HTTP status, `type`, `code`, `param`, message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `error.type`
    pub kind: &'static str,
    /// `error.code`
    pub code: Option<&'static str>,
    /// `error.param`
    pub param: Option<&'static str>,
    /// `error.message`
    pub message: String,
}

impl ApiError {
    fn invalid(param: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            kind: "invalid_request_error",
            code: None,
            param: Some(param),
            message: message.into(),
        }
    }

    /// The error object.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

/// The 401 an OpenAI client understands.
pub fn unauthorized(request: Request, gateway: &Gateway) {
    let error = ApiError {
        status: 401,
        kind: "invalid_request_error",
        code: Some("invalid_api_key"),
        param: None,
        message: "Missing or invalid API key: send Authorization: Bearer <token> with a token from `mcp-gateway token create`.".into(),
    };
    let mut headers = cors_headers(gateway, &request);
    headers.push((
        "WWW-Authenticate".into(),
        "Bearer realm=\"mcp-gateway\"".into(),
    ));
    respond_json(request, 401, &error.body(), &headers);
}

/// CORS headers for a browser origin that `openai.cors_origins` allows (none otherwise).
pub fn cors_headers(gateway: &Gateway, request: &Request) -> Vec<(String, String)> {
    let Some(origin) = request_header(request, "Origin") else {
        return Vec::new();
    };
    let origin = origin.trim_end_matches('/');
    let allowed = gateway
        .config()
        .openai
        .cors_origins
        .iter()
        .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin));
    if !allowed {
        return Vec::new();
    }
    vec![
        ("Access-Control-Allow-Origin".into(), origin.to_string()),
        ("Vary".into(), "Origin".into()),
        (
            "Access-Control-Allow-Headers".into(),
            "Authorization, Content-Type".into(),
        ),
        (
            "Access-Control-Allow-Methods".into(),
            "GET, POST, OPTIONS".into(),
        ),
        ("Access-Control-Max-Age".into(), "600".into()),
    ]
}

/// Answers a CORS preflight (no token needed): 204 with the headers for allowed origins, 403
/// for others.
pub fn preflight(request: Request, gateway: &Gateway) {
    let headers = cors_headers(gateway, &request);
    let status = if headers.is_empty() { 403 } else { 204 };
    respond_empty(request, status, &headers);
}

/// The OpenAI face: the upstream LLM (if configured) and the models it was last seen to offer.
pub struct OpenAiFace {
    gateway: Arc<Gateway>,
    upstream: Option<Upstream>,
    /// The upstream's models as last listed (or the configured allowlist before that).
    upstream_models: RwLock<Vec<String>>,
    /// Whether the last model listing failed (to log an outage once).
    upstream_down: AtomicBool,
}

impl OpenAiFace {
    /// Creates the face; with an upstream, a thread keeps its model list fresh in the
    /// background so `/v1/models` is always answered from memory.
    pub fn new(gateway: Arc<Gateway>) -> Arc<OpenAiFace> {
        let settings = gateway.config().openai.upstream.clone();
        let upstream = settings
            .as_ref()
            .map(|u| Upstream::new(&u.base_url, u.api_key.clone(), u.timeout));
        let allowlist = settings.map(|u| u.models).unwrap_or_default();
        let face = Arc::new(OpenAiFace {
            gateway,
            upstream,
            upstream_models: RwLock::new(allowlist),
            upstream_down: AtomicBool::new(false),
        });
        if face.upstream.is_some() {
            let weak = Arc::downgrade(&face);
            let _ = std::thread::Builder::new()
                .name("llm-models".into())
                .spawn(move || {
                    crate::resilient::restart_on_panic("the upstream model refresh", || loop {
                        let listed = match weak.upgrade() {
                            Some(face) => face.refresh_models(),
                            None => return,
                        };
                        // Try again soon while the upstream is down (it may still be starting).
                        std::thread::sleep(if listed { MODELS_REFRESH } else { MODELS_RETRY });
                    })
                });
        }
        face
    }

    /// Lists the upstream's models; false if it could not be reached.
    fn refresh_models(&self) -> bool {
        let Some(upstream) = &self.upstream else {
            return false;
        };
        match upstream.list_models() {
            Ok(mut ids) => {
                let allowlist = self
                    .gateway
                    .config()
                    .openai
                    .upstream
                    .as_ref()
                    .map(|u| u.models.clone())
                    .unwrap_or_default();
                if !allowlist.is_empty() {
                    ids.retain(|id| allowlist.contains(id));
                }
                *self
                    .upstream_models
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = ids;
                if self.upstream_down.swap(false, Ordering::Relaxed) {
                    log::info!("the upstream LLM answers again");
                }
                true
            }
            Err(e) => {
                // Said once per outage, not at every retry.
                if !self.upstream_down.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "cannot list the upstream LLM's models (keeping the last known ones): {e}"
                    );
                }
                false
            }
        }
    }

    /// Every model id we offer: the built-in one, the upstream's, and a `plain/` variant of each.
    fn model_ids(&self) -> Vec<String> {
        let upstream = self
            .upstream_models
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut ids = vec![BUILTIN_MODEL.to_string()];
        ids.extend(upstream.iter().cloned());
        ids.extend(upstream.iter().map(|id| format!("{PLAIN_PREFIX}{id}")));
        ids
    }

    /// Answers one authenticated request under `/v1`.
    pub fn handle(&self, request: Request, body: &[u8], principal: &Principal) {
        let gateway = &*self.gateway;
        let path = request
            .url()
            .split('?')
            .next()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string();
        let cors = cors_headers(gateway, &request);
        let outcome = match (request.method(), path.as_str()) {
            (Method::Get, "/v1/models") => {
                let data: Vec<Value> = self.model_ids().iter().map(|id| model_entry(id)).collect();
                Ok(json!({"object": "list", "data": data}))
            }
            (Method::Get, p) if p.starts_with("/v1/models/") => {
                let id = &p["/v1/models/".len()..];
                if self.model_ids().iter().any(|m| m == id) {
                    Ok(model_entry(id))
                } else {
                    Err(model_not_found(id))
                }
            }
            (Method::Post, "/v1/chat/completions") => return self.chat(request, body, principal, cors),
            (_, "/v1/models" | "/v1/chat/completions") => Err(ApiError { status: 405, kind: "invalid_request_error", code: None, param: None, message: format!("{} is not allowed on {path}", request.method()) }),
            _ => Err(ApiError { status: 404, kind: "invalid_request_error", code: Some("unknown_url"), param: None, message: format!("unknown endpoint {path}; this gateway serves /v1/models and /v1/chat/completions") }),
        };
        match outcome {
            Ok(value) => respond_json(request, 200, &value, &cors),
            Err(error) => respond_json(request, error.status, &error.body(), &cors),
        }
    }

    fn chat(
        &self,
        request: Request,
        body: &[u8],
        principal: &Principal,
        cors: Vec<(String, String)>,
    ) {
        let chat = match parse_chat(body) {
            Ok(c) => c,
            Err(e) => return respond_json(request, e.status, &e.body(), &cors),
        };
        if chat.model == BUILTIN_MODEL {
            let principal = principal.with_view(crate::tool_view::ToolView::Full);
            return builtin_chat(&self.gateway, request, chat, &principal, cors);
        }
        let (base_model, plain) = match chat.model.strip_prefix(PLAIN_PREFIX) {
            Some(base) => (base.to_string(), true),
            None => (chat.model.clone(), false),
        };
        let known = self
            .upstream_models
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(upstream) = self
            .upstream
            .as_ref()
            .filter(|_| known.is_empty() || known.contains(&base_model))
        else {
            let e = model_not_found(&chat.model);
            return respond_json(request, e.status, &e.body(), &cors);
        };
        let tool_loop = ToolLoop {
            gateway: &self.gateway,
            upstream,
            principal,
            settings: &self.gateway.config().openai,
        };
        tool_loop.run(request, chat, base_model, plain, cors);
    }
}

fn model_entry(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1_767_225_600, "owned_by": "mcp-gateway"})
}

fn model_not_found(id: &str) -> ApiError {
    ApiError {
        status: 404,
        kind: "invalid_request_error",
        code: Some("model_not_found"),
        param: Some("model"),
        message: format!("The model `{id}` does not exist; GET /v1/models lists the models"),
    }
}

/// A checked chat request.
struct ChatRequest {
    /// The whole request, passed on to the upstream (with our changes).
    body: Map<String, Value>,
    model: String,
    stream: bool,
    include_usage: bool,
    last_user_text: String,
}

fn parse_chat(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError {
        status: 400,
        kind: "invalid_request_error",
        code: None,
        param: None,
        message: format!("the request body is not valid JSON: {e}"),
    })?;
    let object = value.as_object().ok_or_else(|| ApiError {
        status: 400,
        kind: "invalid_request_error",
        code: None,
        param: None,
        message: "the request body must be a JSON object".into(),
    })?;
    let model = match object.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "model",
                "`model` must be a non-empty string",
            ))
        }
        None => return Err(ApiError::invalid("model", "you must provide a `model`")),
    };
    let messages = match object.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must not be empty",
            ))
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must be an array of message objects",
            ))
        }
        None => return Err(ApiError::invalid("messages", "you must provide `messages`")),
    };
    for (i, m) in messages.iter().enumerate() {
        if m.get("role").and_then(Value::as_str).is_none() {
            return Err(ApiError::invalid(
                "messages",
                format!("messages[{i}] needs a string `role`"),
            ));
        }
    }
    let stream = match object.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid(
                "stream",
                "`stream` must be true or false",
            ))
        }
    };
    let include_usage = object
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let last_user_text = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(message_text)
        .unwrap_or_default();
    Ok(ChatRequest {
        body: object.clone(),
        model,
        stream,
        include_usage,
        last_user_text,
    })
}

/// The text of a message: a string, or the text parts of a content array.
fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn builtin_chat(
    gateway: &Gateway,
    request: Request,
    chat: ChatRequest,
    principal: &Principal,
    cors: Vec<(String, String)>,
) {
    let answer = builtin_answer(gateway, principal, &chat.last_user_text);
    let id = completion_id();
    let created = crate::tokens::now_secs();
    let usage = json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0});
    if !chat.stream {
        let completion = json!({
            "id": id, "object": "chat.completion", "created": created, "model": chat.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": usage,
        });
        return respond_json(request, 200, &completion, &cors);
    }
    let chunk = |delta: Value, finish: Value| json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": chat.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    let mut stream = match SseStream::start(request, &cors) {
        Ok(s) => s,
        Err(e) => return log::debug!("client went away: {e}"),
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    // Line by line, so long answers (a big catalog) arrive progressively.
    for piece in answer.split_inclusive('\n') {
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if chat.include_usage {
        events.push(json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": chat.model, "choices": [], "usage": usage}));
    }
    let sent = events
        .iter()
        .try_for_each(|e| stream.send_data(e))
        .and_then(|_| stream.send_raw_data("[DONE]"))
        .and_then(|_| stream.finish());
    if let Err(e) = sent {
        log::debug!("client went away during a streamed answer: {e}");
    }
}

/// What the built-in model says to `text`.
fn builtin_answer(gateway: &Gateway, principal: &Principal, text: &str) -> String {
    let text = text.trim();
    if text == "/help" || text == "help" {
        return HELP.to_string();
    }
    if let Some(rest) = text.strip_prefix("/call") {
        let rest = rest.trim();
        let (tool, arguments) = rest
            .split_once(char::is_whitespace)
            .map(|(t, a)| (t, a.trim()))
            .unwrap_or((rest, ""));
        if tool.is_empty() {
            return "Usage: `/call <tool> <json-arguments>`, e.g. `/call gateway__status {}`."
                .into();
        }
        let arguments: Value = if arguments.is_empty() {
            json!({})
        } else {
            match serde_json::from_str(arguments) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    return "The arguments must be a JSON object, e.g. `{\"city\": \"Paris\"}`."
                        .into()
                }
                Err(e) => return format!("The arguments are not valid JSON: {e}"),
            }
        };
        return match gateway.call_tool(
            principal,
            tool,
            arguments,
            CallOptions {
                audit: Some(crate::audit::AuditContext {
                    face: "openai",
                    principal: principal.name.clone(),
                }),
                ..CallOptions::default()
            },
            &mut |_| {},
        ) {
            Ok(result) => format_result(tool, &result),
            Err(e) => format!("Error calling `{tool}`: {}", e.message),
        };
    }
    catalog_markdown(gateway, principal)
}

/// A tool result as Markdown: its text, other content named, structured content as JSON.
fn format_result(tool: &str, result: &Value) -> String {
    let mut out = Vec::new();
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        out.push(format!("`{tool}` reported an error:"));
    }
    for item in result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match item.get("type").and_then(Value::as_str) {
            Some("text") => out.push(
                item.get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ),
            Some(kind) => out.push(format!("[{kind} content]")),
            None => {}
        }
    }
    if let Some(structured) = result.get("structuredContent") {
        if out.is_empty() {
            out.push(format!(
                "```json\n{}\n```",
                serde_json::to_string_pretty(structured).unwrap_or_default()
            ));
        }
    }
    if out.is_empty() {
        out.push(format!("`{tool}` returned nothing."));
    }
    out.join("\n\n")
}

/// The tools this principal may use, grouped by server, as Markdown.
fn catalog_markdown(gateway: &Gateway, principal: &Principal) -> String {
    let catalog = gateway.catalog();
    let tools = gateway.list(principal, ListKind::Tools);
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for tool in &tools {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            continue;
        };
        let server = match catalog.tool(name) {
            Some(Route::Backend { backend, .. }) => gateway
                .backends()
                .get(*backend)
                .map(|b| b.name().to_string())
                .unwrap_or_default(),
            _ => "gateway".to_string(),
        };
        let description = tool
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let line = if description.is_empty() {
            format!("- `{name}`")
        } else {
            format!("- `{name}`: {description}")
        };
        match groups.iter_mut().find(|(s, _)| *s == server) {
            Some((_, lines)) => lines.push(line),
            None => groups.push((server, vec![line])),
        }
    }
    let count = match tools.len() {
        1 => "1 tool is".to_string(),
        n => format!("{n} tools are"),
    };
    let mut out = format!(
        "{count} available. Run one with `/call <tool> <json-arguments>`; `/help` explains.\n"
    );
    for (server, lines) in groups {
        out.push_str(&format!("\n### {server}\n{}\n", lines.join("\n")));
    }
    out
}

fn completion_id() -> String {
    format!(
        "chatcmpl-{}",
        crate::tokens::generate_token()
            .map(|t| t[4..28].to_string())
            .unwrap_or_default()
    )
}

/// Open WebUI's title, tag and follow-up requests: a `### Task:` prompt.
fn is_task_request(messages: &[Value]) -> bool {
    messages
        .iter()
        .any(|m| message_text(m).trim_start().starts_with("### Task:"))
}

/// An input schema as OpenAI-style validators want `parameters`: an object schema with
/// `properties`.
fn as_parameters(schema: Option<&Value>) -> Value {
    let mut schema = schema
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if schema.get("type").is_none() {
        schema["type"] = json!("object");
    }
    if schema.get("type") == Some(&json!("object")) && schema.get("properties").is_none() {
        schema["properties"] = json!({});
    }
    schema
}

/// A tool definition as an OpenAI function.
fn as_function(tool: &Value) -> Option<Value> {
    let name = tool.get("name")?.as_str()?;
    let description = tool
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("");
    Some(
        json!({"type": "function", "function": {"name": name, "description": description, "parameters": as_parameters(tool.get("inputSchema"))}}),
    )
}

/// Where the answer goes: collected for one JSON reply, or streamed as chunks (the stream is
/// opened at the first thing to send, so an upstream that fails at once still gets a plain
/// HTTP error).
struct Sink {
    request: Option<Request>,
    stream: Option<SseStream>,
    streaming: bool,
    cors: Vec<(String, String)>,
    id: String,
    created: u64,
    model: String,
    notes: String,
    broken: bool,
}

impl Sink {
    fn chunk(&self, delta: Value, finish: Value) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    fn send(&mut self, value: &Value) {
        if self.broken {
            return;
        }
        let first = self.chunk(json!({"role": "assistant", "content": ""}), Value::Null);
        let Some((stream, opened)) = lazy_stream(&mut self.request, &mut self.stream, &self.cors)
        else {
            self.broken = true;
            return;
        };
        let sent = if opened {
            stream.send_data(&first)
        } else {
            Ok(())
        }
        .and_then(|_| stream.send_data(value));
        if let Err(e) = sent {
            log::debug!("client went away during a streamed answer: {e}");
            self.broken = true;
        }
    }

    /// Text for the user as it comes (streamed at once; collected otherwise).
    fn content(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.streaming {
            let chunk = self.chunk(json!({"content": text}), Value::Null);
            self.send(&chunk);
        } else {
            self.notes.push_str(text);
        }
    }

    /// The end: the last round's text (for a JSON reply), client tool calls, finish reason,
    /// usage.
    fn finish(
        mut self,
        final_text: &str,
        client_calls: &[ToolCall],
        finish_reason: &str,
        usage: Option<Value>,
        include_usage: bool,
    ) {
        if !self.streaming {
            let Some(request) = self.request.take() else {
                return;
            };
            let mut message =
                json!({"role": "assistant", "content": format!("{}{final_text}", self.notes)});
            if !client_calls.is_empty() {
                message["tool_calls"] =
                    Value::Array(client_calls.iter().map(ToolCall::to_value).collect());
                if final_text.is_empty() && self.notes.is_empty() {
                    message["content"] = Value::Null;
                }
            }
            // Without the upstream's usage there is none to give: no `usage`, never zeros.
            let mut completion = json!({
                "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            });
            if let Some(usage) = usage {
                completion["usage"] = usage;
            }
            return respond_json(request, 200, &completion, &self.cors);
        }
        if !client_calls.is_empty() {
            let calls: Vec<Value> = client_calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut v = c.to_value();
                    v["index"] = json!(i);
                    v
                })
                .collect();
            let chunk = self.chunk(json!({"tool_calls": calls}), Value::Null);
            self.send(&chunk);
        }
        let last = self.chunk(json!({}), json!(finish_reason));
        self.send(&last);
        if include_usage {
            // `null` when the upstream sent none: unknown, not zero.
            let usage = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model, "choices": [], "usage": usage});
            self.send(&usage);
        }
        self.done();
    }

    fn done(mut self) {
        if let Some(mut stream) = self.stream.take() {
            if !self.broken {
                let _ = stream.send_raw_data("[DONE]").and_then(|_| stream.finish());
            }
        }
    }

    /// The upstream failed: an HTTP error before anything was sent, an error event after. A
    /// refusal of the request (400, 404, 413, 422, 429) passes through with the upstream's
    /// status, error object and `Retry-After`; any other failure is a 502 (504 for a timeout)
    /// whose message leaves the upstream's internals in our log.
    fn fail(mut self, error: &LlmError) {
        log::warn!("{error}");
        let (status, body, retry_after) = match error {
            LlmError::Rejected {
                status,
                error,
                retry_after,
            } => (*status, json!({"error": error}), retry_after.clone()),
            other => {
                let (status, code) = match other {
                    LlmError::Timeout(_) => (504, "upstream_timeout"),
                    _ => (502, "upstream_error"),
                };
                let body = ApiError {
                    status,
                    kind: "upstream_error",
                    code: Some(code),
                    param: None,
                    message: other.client_message(),
                }
                .body();
                (status, body, None)
            }
        };
        match self.request.take() {
            Some(request) => {
                let mut headers = self.cors.clone();
                if let Some(seconds) = retry_after {
                    headers.push(("Retry-After".into(), seconds));
                }
                respond_json(request, status, &body, &headers)
            }
            None => {
                self.send(&body);
                self.done();
            }
        }
    }
}

/// Adds up the usage of every round.
#[derive(Default)]
struct Usage {
    prompt: u64,
    completion: u64,
    seen: bool,
}

impl Usage {
    fn add(&mut self, usage: Option<&Value>) {
        if let Some(u) = usage.filter(|u| u.is_object()) {
            self.prompt += u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
            self.completion += u
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            self.seen = true;
        }
    }

    fn total(&self) -> Option<Value> {
        self.seen.then(|| json!({"prompt_tokens": self.prompt, "completion_tokens": self.completion, "total_tokens": self.prompt + self.completion}))
    }
}

/// The server-side tool loop: the model asks, the gateway runs its own tools, the model is
/// asked again, until it answers or calls the client's own tools.
struct ToolLoop<'a> {
    gateway: &'a Gateway,
    upstream: &'a Upstream,
    principal: &'a Principal,
    settings: &'a crate::config::OpenAiSettings,
}

/// What one upstream round said.
struct Round {
    content: String,
    calls: Vec<ToolCall>,
    finish_reason: Option<String>,
}

impl ToolLoop<'_> {
    /// Our tools this principal may use and `openai.tools` offers, in OpenAI form, as the tool
    /// view says (`openai.tool_view`; `full` gives a `search` token the search view): all of
    /// them; the meta-tools and the pinned ones; or with `auto`, all while they fit in
    /// `max_tool_tokens`, else the meta-tools, the pinned ones and the best ones for the user's
    /// last message (at most 20) within the budget.
    fn offered_tools(&self, last_user_text: &str) -> Vec<Value> {
        use crate::tool_view::{self as tv, OpenAiView, ToolView};
        let globs = &self.settings.tools;
        let full = self.principal.with_view(ToolView::Full);
        let all: Vec<Value> = self
            .gateway
            .list(&full, ListKind::Tools)
            .into_iter()
            .filter(|tool| {
                let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
                globs.is_empty() || globs.iter().any(|g| crate::catalog::glob_match(g, name))
            })
            .collect();
        let view = match self.settings.tool_view {
            OpenAiView::Full if self.principal.tool_view == ToolView::Search => OpenAiView::Search,
            view => view,
        };
        let functions = |tools: &[Value]| tools.iter().filter_map(as_function).collect::<Vec<_>>();
        if view == OpenAiView::Full {
            return functions(&all);
        }
        let everything = functions(&all);
        let budget = self.settings.max_tool_tokens;
        if view == OpenAiView::Auto && tv::estimate_tokens(tv::listing_bytes(&everything)) <= budget
        {
            return everything;
        }
        let refs: Vec<&Value> = all.iter().collect();
        let mut chosen = functions(&tv::search_listing(
            &refs,
            &self.gateway.config().tool_search.pinned,
        ));
        if view == OpenAiView::Search {
            return chosen;
        }
        let by_name: HashMap<&str, &Value> = everything
            .iter()
            .filter_map(|f| Some((f.pointer("/function/name")?.as_str()?, f)))
            .collect();
        let mut bytes = tv::listing_bytes(&chosen);
        let mut added = 0;
        for found in self
            .gateway
            .search_tools(&full, last_user_text, None, all.len())
        {
            let name = found.get("name").and_then(Value::as_str).unwrap_or("");
            let Some(function) = by_name.get(name) else {
                continue;
            };
            let taken = chosen
                .iter()
                .any(|c| c.pointer("/function/name") == Some(&json!(name)));
            let size = tv::listing_bytes(std::slice::from_ref(*function));
            if taken || tv::estimate_tokens(bytes + size) > budget {
                continue;
            }
            chosen.push((*function).clone());
            bytes += size;
            added += 1;
            if added == tv::MAX_LIMIT {
                break;
            }
        }
        chosen
    }

    fn run(
        &self,
        request: Request,
        chat: ChatRequest,
        upstream_model: String,
        plain: bool,
        cors: Vec<(String, String)>,
    ) {
        let client_tools: Vec<Value> = chat
            .body
            .get("tools")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let client_names: HashSet<String> = client_tools
            .iter()
            .filter_map(|t| {
                t.pointer("/function/name")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .collect();
        let client_messages: Vec<Value> = chat
            .body
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let task = client_tools.is_empty() && is_task_request(&client_messages);
        let ours = if plain || task {
            Vec::new()
        } else {
            self.offered_tools(&chat.last_user_text)
        };
        let mut messages = Vec::new();
        if let (Some(prompt), false) = (&self.settings.system_prompt, plain || task) {
            messages.push(json!({"role": "system", "content": prompt}));
        }
        messages.extend(client_messages);
        let mut sink = Sink {
            request: Some(request),
            stream: None,
            streaming: chat.stream,
            cors,
            id: completion_id(),
            created: crate::tokens::now_secs(),
            model: chat.model.clone(),
            notes: String::new(),
            broken: false,
        };
        let mut usage = Usage::default();
        let max_rounds = self.settings.max_tool_rounds;
        // A forced `tool_choice` (a named tool of ours, or "required") holds for the first
        // round only: after our tools ran, forcing again would run them again every round.
        let mut tool_choice = chat.body.get("tool_choice").cloned();
        for round_number in 0..=max_rounds {
            let mut body = chat.body.clone();
            match &tool_choice {
                Some(choice) => body.insert("tool_choice".into(), choice.clone()),
                None => body.remove("tool_choice"),
            };
            body.insert("model".into(), json!(upstream_model));
            body.insert("messages".into(), Value::Array(messages.clone()));
            let mut tools = client_tools.clone();
            tools.extend(ours.iter().cloned());
            if tools.is_empty() {
                body.remove("tools");
                body.remove("tool_choice");
            } else {
                body.insert("tools".into(), Value::Array(tools));
            }
            if chat.stream {
                body.insert("stream".into(), json!(true));
                body.insert("stream_options".into(), json!({"include_usage": true}));
            }
            let round = match self.ask(&body, chat.stream, &mut sink, &mut usage) {
                Ok(r) => r,
                Err(e) => return sink.fail(&e),
            };
            let (client_calls, our_calls): (Vec<ToolCall>, Vec<ToolCall>) = round
                .calls
                .into_iter()
                .partition(|c| client_names.contains(&c.name));
            if !client_calls.is_empty() {
                // The client runs its own tools and calls again; calls to ours in the same turn
                // are not run (the model can ask again once it has the client's results).
                if !our_calls.is_empty() {
                    log::info!("the model called the client's tools and ours in one turn: handing back the client's, not running ours");
                }
                return sink.finish(
                    &round.content,
                    &client_calls,
                    "tool_calls",
                    usage.total(),
                    chat.include_usage,
                );
            }
            if our_calls.is_empty() {
                let reason = round.finish_reason.unwrap_or_else(|| "stop".into());
                let reason = if reason == "tool_calls" {
                    "stop".to_string()
                } else {
                    reason
                };
                return sink.finish(
                    &round.content,
                    &[],
                    &reason,
                    usage.total(),
                    chat.include_usage,
                );
            }
            if round_number == max_rounds {
                let note = format!("\n\n(Stopped after {max_rounds} rounds of tool calls: the model kept asking for more tools.)");
                sink.content(&note);
                return sink.finish("", &[], "stop", usage.total(), chat.include_usage);
            }
            // `""`, not `null`: the OpenAI API takes both, llama-cpp-python only a string.
            messages.push(json!({"role": "assistant", "content": round.content, "tool_calls": our_calls.iter().map(ToolCall::to_value).collect::<Vec<_>>()}));
            if tool_choice
                .as_ref()
                .is_some_and(|c| c != "none" && c != "auto")
            {
                tool_choice = Some(json!("auto"));
            }
            for call in &our_calls {
                if self.settings.show_tool_calls {
                    sink.content(&format!("> running `{}`\n\n", call.name));
                }
                let result = self.execute(call);
                messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": result}));
            }
        }
    }

    /// One upstream round; streamed text is passed on to the client as it comes.
    fn ask(
        &self,
        body: &Map<String, Value>,
        stream: bool,
        sink: &mut Sink,
        usage: &mut Usage,
    ) -> Result<Round, LlmError> {
        let body = Value::Object(body.clone());
        if !stream {
            let completion = self.upstream.complete(&body)?;
            usage.add(completion.get("usage"));
            let message = completion
                .pointer("/choices/0/message")
                .cloned()
                .ok_or_else(|| LlmError::Protocol("the answer has no choices[0].message".into()))?;
            let mut assembler = ToolCallAssembler::default();
            if let Some(calls) = message.get("tool_calls") {
                assembler.add(calls);
            }
            return Ok(Round {
                content: message
                    .get("content")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                calls: assembler.finish(),
                finish_reason: completion
                    .pointer("/choices/0/finish_reason")
                    .and_then(Value::as_str)
                    .map(String::from),
            });
        }
        let mut round = Round {
            content: String::new(),
            calls: Vec::new(),
            finish_reason: None,
        };
        let mut assembler = ToolCallAssembler::default();
        self.upstream.stream(&body, &mut |chunk| {
            usage.add(chunk.get("usage"));
            let Some(choice) = chunk.pointer("/choices/0") else {
                return;
            };
            if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str) {
                round.content.push_str(text);
                sink.content(text);
            }
            if let Some(calls) = choice.pointer("/delta/tool_calls") {
                assembler.add(calls);
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                round.finish_reason = Some(reason.to_string());
            }
        })?;
        round.calls = assembler.finish();
        Ok(round)
    }

    /// Runs one of our tools; the result (or the error) as text for the model.
    fn execute(&self, call: &ToolCall) -> String {
        let mut arguments = match call.arguments_object() {
            Ok(a) => a,
            Err(e) => return format!("Error: {e}. Call `{}` again with a JSON object.", call.name),
        };
        // With `openai.tools` globs, a search finds only the tools they offer: it asks for the
        // most results, drops those outside the globs and keeps as many as the model asked for.
        let globs = &self.settings.tools;
        let narrowed = (call.name == crate::tool_view::SEARCH_TOOL && !globs.is_empty())
            .then(|| crate::tool_view::widen_search(&mut arguments));
        let text = match self
            .gateway
            .call_tool(
                self.principal,
                &call.name,
                arguments,
                CallOptions {
                    audit: Some(crate::audit::AuditContext {
                        face: "openai",
                        principal: self.principal.name.clone(),
                    }),
                    ..CallOptions::default()
                },
                &mut |_| {},
            )
            .map(|result| match narrowed {
                Some(limit) => crate::tool_view::narrow_search(result, limit, &|name| {
                    globs.iter().any(|g| crate::catalog::glob_match(g, name))
                }),
                None => result,
            }) {
            Ok(result) => {
                let mut parts: Vec<String> = result
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.get("text").and_then(Value::as_str).map(String::from))
                    .collect();
                if let Some(structured) = result.get("structuredContent") {
                    // (Once, when a text part already carries it, as a search answer's does.)
                    let text = structured.to_string();
                    if !parts.contains(&text) {
                        parts.push(text);
                    }
                }
                let joined = parts.join("\n");
                if result.get("isError").and_then(Value::as_bool) == Some(true) {
                    format!("Error: {joined}")
                } else {
                    joined
                }
            }
            Err(e) => format!("Error: {}", e.message),
        };
        let limit = self.settings.max_tool_result_chars;
        if text.chars().count() > limit {
            let cut: String = text.chars().take(limit).collect();
            format!("{cut}\n[result cut at {limit} characters]")
        } else {
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_requests_are_checked_naming_the_param() {
        assert_eq!(parse_chat(b"{}").err().and_then(|e| e.param), Some("model"));
        assert_eq!(
            parse_chat(br#"{"model": "m"}"#).err().and_then(|e| e.param),
            Some("messages")
        );
        assert_eq!(
            parse_chat(br#"{"model": "m", "messages": "hi"}"#)
                .err()
                .and_then(|e| e.param),
            Some("messages")
        );
        assert_eq!(
            parse_chat(br#"{"model": "m", "messages": [{"content": "x"}]}"#)
                .err()
                .and_then(|e| e.param),
            Some("messages")
        );
        assert_eq!(parse_chat(br#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}"#).err().and_then(|e| e.param), Some("stream"));
        let ok = parse_chat(br#"{"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, {"role": "assistant", "content": "z"}]}"#).expect("valid");
        assert_eq!(
            (ok.stream, ok.include_usage, ok.last_user_text.as_str()),
            (true, true, "a\nb")
        );
    }

    #[test]
    fn results_read_as_markdown() {
        let r = json!({"content": [{"type": "text", "text": "42"}, {"type": "image", "data": "..."}], "isError": false});
        assert_eq!(format_result("t", &r), "42\n\n[image content]");
        let e = json!({"content": [{"type": "text", "text": "boom"}], "isError": true});
        assert!(format_result("t", &e).starts_with("`t` reported an error:"));
        let s = json!({"content": [], "structuredContent": {"a": 1}});
        assert!(format_result("t", &s).contains("\"a\": 1"));
    }
}
