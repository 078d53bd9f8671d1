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
use crate::http_util::{request_header, respond_json, SseStream};
use serde_json::{json, Value};
use tiny_http::{Method, Request, Response};

/// The model that works without an LLM.
pub const BUILTIN_MODEL: &str = "mcp-gateway";

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
        .config
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
    let mut response = Response::empty(status);
    for (k, v) in headers {
        if let Some(h) = crate::http_util::header(&k, &v) {
            response.add_header(h);
        }
    }
    let _ = request.respond(response);
}

/// Answers one authenticated request under `/v1`.
pub fn handle(gateway: &Gateway, request: Request, body: &[u8], principal: &Principal) {
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
            Ok(json!({"object": "list", "data": [model_entry(BUILTIN_MODEL)]}))
        }
        (Method::Get, p) if p.starts_with("/v1/models/") => {
            let id = &p["/v1/models/".len()..];
            if id == BUILTIN_MODEL {
                Ok(model_entry(id))
            } else {
                Err(model_not_found(id))
            }
        }
        (Method::Post, "/v1/chat/completions") => {
            return chat(gateway, request, body, principal, cors);
        }
        (_, "/v1/models" | "/v1/chat/completions") => Err(ApiError {
            status: 405,
            kind: "invalid_request_error",
            code: None,
            param: None,
            message: format!("{} is not allowed on {path}", request.method()),
        }),
        _ => Err(ApiError {
            status: 404,
            kind: "invalid_request_error",
            code: Some("unknown_url"),
            param: None,
            message: format!(
                "unknown endpoint {path}; this gateway serves /v1/models and /v1/chat/completions"
            ),
        }),
    };
    match outcome {
        Ok(value) => respond_json(request, 200, &value, &cors),
        Err(error) => respond_json(request, error.status, &error.body(), &cors),
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

fn chat(
    gateway: &Gateway,
    request: Request,
    body: &[u8],
    principal: &Principal,
    cors: Vec<(String, String)>,
) {
    let chat = match parse_chat(body) {
        Ok(c) => c,
        Err(e) => return respond_json(request, e.status, &e.body(), &cors),
    };
    if chat.model != BUILTIN_MODEL {
        let e = model_not_found(&chat.model);
        return respond_json(request, e.status, &e.body(), &cors);
    }
    let answer = builtin_answer(gateway, principal, &chat.last_user_text);
    let id = format!(
        "chatcmpl-{}",
        crate::tokens::generate_token()
            .map(|t| t[4..28].to_string())
            .unwrap_or_default()
    );
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
            CallOptions::default(),
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
    let tools = catalog.visible(ListKind::Tools, &|b| gateway.allows(principal, b));
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for tool in &tools {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            continue;
        };
        let server = match catalog.tool(name) {
            Some(Route::Backend { backend, .. }) => gateway
                .backends
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
