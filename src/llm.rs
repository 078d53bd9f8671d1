//! The upstream LLM: a client for an OpenAI-compatible server (Ollama, llama.cpp, vLLM, OpenAI)
//! and the assembly of tool calls that arrive in streamed fragments.

use crate::sse::SseReader;
use serde_json::{json, Map, Value};
use std::fmt;
use std::io::{BufReader, Read};
use std::time::Duration;

/// The longest an answer may stream once it has started (Open WebUI gives up after 300 s).
const MAX_STREAM: Duration = Duration::from_secs(300);
const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;

/// Statuses whose error is about the client's request (too long a prompt, an unknown model, too
/// many requests): passed through to the client as the upstream wrote them.
pub const PASSED_THROUGH: [u16; 5] = [400, 404, 413, 422, 429];

/// Why the upstream failed.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmError {
    /// Could not connect.
    Unreachable(String),
    /// No answer in time.
    Timeout(Duration),
    /// The upstream refused the request with one of [`PASSED_THROUGH`]: its status, its error
    /// object (`message`, `type`, `param`, `code`) and its `Retry-After`.
    Rejected {
        /// HTTP status.
        status: u16,
        /// The upstream's `error` object, made to have the four OpenAI keys.
        error: Value,
        /// The upstream's `Retry-After`, if it sent one.
        retry_after: Option<String>,
    },
    /// Another HTTP error status (a fault of the upstream), with what it said, for our log.
    Status(u16, String),
    /// An answer that is not what an OpenAI-compatible server sends (a stream cut short among
    /// them).
    Protocol(String),
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LlmError::Unreachable(e) => write!(f, "the upstream LLM is unreachable: {e}"),
            LlmError::Timeout(d) => write!(
                f,
                "the upstream LLM did not answer within {} ms",
                d.as_millis()
            ),
            LlmError::Rejected { status, error, .. } => write!(
                f,
                "the upstream LLM refused the request with HTTP {status}: {}",
                error.get("message").and_then(Value::as_str).unwrap_or("")
            ),
            LlmError::Status(code, message) => {
                write!(f, "the upstream LLM answered HTTP {code}: {message}")
            }
            LlmError::Protocol(e) => write!(
                f,
                "the upstream LLM sent an answer that could not be read: {e}"
            ),
        }
    }
}

impl LlmError {
    /// What the client is told: short, without the upstream's internals (its messages may
    /// carry file paths or stack traces; they stay in our log through `Display`).
    pub fn client_message(&self) -> String {
        match self {
            LlmError::Unreachable(_) => "the upstream LLM is unreachable".into(),
            LlmError::Timeout(d) => format!(
                "the upstream LLM did not answer within {} ms",
                d.as_millis()
            ),
            LlmError::Rejected { error, .. } => error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream LLM refused the request")
                .to_string(),
            LlmError::Status(code, _) => format!(
                "the upstream LLM failed (HTTP {code}); the gateway's log has the details"
            ),
            LlmError::Protocol(_) => {
                "the upstream LLM's answer broke off or could not be read; the gateway's log has the details".into()
            }
        }
    }
}

/// An OpenAI-compatible server.
pub struct Upstream {
    base_url: String,
    api_key: Option<String>,
    timeout: Duration,
    agent: ureq::Agent,
}

impl Upstream {
    /// A client for `base_url` (ending in `/v1`), with an optional API key.
    pub fn new(base_url: &str, api_key: Option<String>, timeout: Duration) -> Upstream {
        let agent = crate::outbound::agent(
            crate::outbound::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_connect(Some(timeout))
                .timeout_recv_response(Some(timeout))
                .timeout_global(Some(MAX_STREAM))
                .build(),
        );
        Upstream {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: api_key.filter(|k| !k.is_empty()),
            timeout,
            agent,
        }
    }

    fn map_error(&self, e: ureq::Error) -> LlmError {
        match e {
            ureq::Error::Timeout(_) => LlmError::Timeout(self.timeout),
            ureq::Error::Io(io)
                if io.kind() == std::io::ErrorKind::TimedOut
                    || io.kind() == std::io::ErrorKind::WouldBlock =>
            {
                LlmError::Timeout(self.timeout)
            }
            ureq::Error::Io(io) => LlmError::Unreachable(io.to_string()),
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
                LlmError::Unreachable(e.to_string())
            }
            other => LlmError::Protocol(other.to_string()),
        }
    }

    fn authorised(
        &self,
        builder: ureq::RequestBuilder<ureq::typestate::WithBody>,
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        match &self.api_key {
            Some(key) => builder.header("Authorization", format!("Bearer {key}")),
            None => builder,
        }
    }

    /// The upstream's model ids.
    pub fn list_models(&self) -> Result<Vec<String>, LlmError> {
        let mut builder = self.agent.get(format!("{}/models", self.base_url));
        if let Some(key) = &self.api_key {
            builder = builder.header("Authorization", format!("Bearer {key}"));
        }
        let response = builder.call().map_err(|e| self.map_error(e))?;
        let value = read_json(response, self.timeout)?;
        let data = value
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| LlmError::Protocol("the model list has no \"data\" array".into()))?;
        Ok(data
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str).map(String::from))
            .collect())
    }

    /// A non-streamed chat completion.
    pub fn complete(&self, body: &Value) -> Result<Value, LlmError> {
        // Once the headers are in, a whole answer must not trickle in for minutes.
        let builder = self
            .authorised(
                self.agent
                    .post(format!("{}/chat/completions", self.base_url))
                    .header("Content-Type", "application/json"),
            )
            .config()
            .timeout_recv_body(Some(self.timeout))
            .build();
        let response = builder
            .send(body.to_string())
            .map_err(|e| self.map_error(e))?;
        read_json(response, self.timeout)
    }

    /// A streamed chat completion: `on_chunk` gets each `chat.completion.chunk` as it arrives.
    pub fn stream(&self, body: &Value, on_chunk: &mut dyn FnMut(Value)) -> Result<(), LlmError> {
        // Silence longer than the timeout between two pieces of the stream ends the wait: ureq
        // restarts `timeout_per_read` for each read of the socket (the whole answer is bounded
        // by MAX_STREAM). The events are read on this thread: no reader thread per chat.
        let builder = self
            .authorised(
                self.agent
                    .post(format!("{}/chat/completions", self.base_url))
                    .header("Content-Type", "application/json")
                    .header("Accept", "text/event-stream"),
            )
            .config()
            .timeout_per_read(Some(self.timeout))
            .build();
        let response = builder
            .send(body.to_string())
            .map_err(|e| self.map_error(e))?;
        let status = response.status().as_u16();
        if status >= 400 {
            return Err(status_error(status, response));
        }
        let is_json = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|c| c.starts_with("application/json"))
            .unwrap_or(false);
        if is_json {
            // A server that ignores `stream`: turn its whole answer into one chunk.
            let value = read_json(response, self.timeout)?;
            on_chunk(completion_as_chunk(&value));
            return Ok(());
        }
        let mut events = SseReader::new(BufReader::new(response.into_body().into_reader()));
        // A stream that ends with neither `[DONE]` nor a finish reason was cut short (a server
        // that failed after its 200): a failure, never a finished answer.
        let mut finished = false;
        let cut_short = || {
            LlmError::Protocol(
                "the stream ended before the answer was finished (no [DONE], no finish_reason)"
                    .into(),
            )
        };
        loop {
            match events.next_event() {
                Ok(Some(event)) => {
                    let data = event.data.trim();
                    if data == "[DONE]" {
                        // Read on to the end of the body, so that the connection goes back to
                        // the pool: real servers end it right after [DONE]; one that holds it
                        // open costs this worker at most the timeout, and the connection.
                        for _ in 0..8 {
                            if !matches!(events.next_event(), Ok(Some(_))) {
                                break;
                            }
                        }
                        return Ok(());
                    }
                    match serde_json::from_str::<Value>(data) {
                        Ok(chunk) if chunk.get("error").is_some() => {
                            return Err(LlmError::Protocol(format!(
                                "an error event in the stream: {}",
                                chunk["error"]
                            )))
                        }
                        Ok(chunk) => {
                            finished |= chunk
                                .pointer("/choices/0/finish_reason")
                                .is_some_and(|r| !r.is_null());
                            on_chunk(chunk)
                        }
                        Err(e) => {
                            return Err(LlmError::Protocol(format!(
                                "a stream event is not JSON: {e}"
                            )))
                        }
                    }
                }
                Ok(None) if finished => return Ok(()),
                Ok(None) => return Err(cut_short()),
                Err(e) if is_timeout(&e) => return Err(LlmError::Timeout(self.timeout)),
                Err(e) => return Err(LlmError::Unreachable(format!("the stream broke: {e}"))),
            }
        }
    }
}

fn status_error(status: u16, response: ureq::http::Response<ureq::Body>) -> LlmError {
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .filter(|v| crate::untrusted::header_value_ok(v) && v.len() <= 64)
        .map(String::from);
    let mut text = String::new();
    let _ = response
        .into_body()
        .into_reader()
        .take(64 * 1024)
        .read_to_string(&mut text);
    let parsed = serde_json::from_str::<Value>(&text).ok();
    if PASSED_THROUGH.contains(&status) {
        return LlmError::Rejected {
            status,
            error: openai_error_object(status, parsed.as_ref(), &text),
            retry_after,
        };
    }
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("detail"))
                .map(|m| {
                    m.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| m.to_string())
                })
        })
        .unwrap_or_else(|| text.chars().take(300).collect());
    LlmError::Status(status, message)
}

/// The upstream's error as an OpenAI error object with `message`, `type`, `param` and `code`:
/// its own `error` object (OpenAI, vLLM, llama.cpp), or its top-level fields (llama-cpp-python
/// puts `type`, `param` and `code` beside `message`), or its text.
fn openai_error_object(status: u16, parsed: Option<&Value>, text: &str) -> Value {
    let source = parsed
        .and_then(|v| v.get("error").filter(|e| e.is_object()).or(Some(v)))
        .filter(|v| v.is_object());
    let field = |key: &str| source.and_then(|s| s.get(key)).cloned();
    let message = field("message")
        .or_else(|| field("detail"))
        .map(|m| {
            m.as_str()
                .map(String::from)
                .unwrap_or_else(|| m.to_string())
        })
        .unwrap_or_else(|| text.chars().take(300).collect());
    let default_type = if status == 429 {
        "rate_limit_error"
    } else {
        "invalid_request_error"
    };
    json!({
        "message": message,
        "type": field("type").filter(Value::is_string).unwrap_or_else(|| json!(default_type)),
        "param": field("param").unwrap_or(Value::Null),
        "code": field("code").unwrap_or(Value::Null),
    })
}

fn read_json(
    response: ureq::http::Response<ureq::Body>,
    timeout: Duration,
) -> Result<Value, LlmError> {
    let status = response.status().as_u16();
    if status >= 400 {
        return Err(status_error(status, response));
    }
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(MAX_BODY_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            if is_timeout(&e) {
                LlmError::Timeout(timeout)
            } else {
                LlmError::Unreachable(format!("the answer broke off: {e}"))
            }
        })?;
    serde_json::from_slice(&bytes).map_err(|e| LlmError::Protocol(format!("not JSON: {e}")))
}

/// Whether an I/O error is a timeout (ureq wraps its own timeout errors in `io::Error`).
fn is_timeout(e: &std::io::Error) -> bool {
    let wrapped = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>());
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) || matches!(wrapped, Some(ureq::Error::Timeout(_)))
}

/// A whole completion turned into one streamed chunk.
fn completion_as_chunk(completion: &Value) -> Value {
    let message = completion
        .pointer("/choices/0/message")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut delta = Map::new();
    if let Some(content) = message.get("content").filter(|c| !c.is_null()) {
        delta.insert("content".into(), content.clone());
    }
    if let Some(Value::Array(calls)) = message.get("tool_calls") {
        let indexed: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut c = c.clone();
                c["index"] = json!(i);
                c
            })
            .collect();
        delta.insert("tool_calls".into(), Value::Array(indexed));
    }
    let mut chunk = json!({"choices": [{"index": 0, "delta": delta, "finish_reason": completion.pointer("/choices/0/finish_reason").cloned().unwrap_or(Value::Null)}]});
    if let Some(usage) = completion.get("usage") {
        chunk["usage"] = usage.clone();
    }
    chunk
}

/// One tool call, whole.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// Its id (made up when the upstream sent none).
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments as the upstream sent them (a JSON text).
    pub arguments: String,
}

impl ToolCall {
    /// The arguments as a JSON object (`Err` with the reason when they are not one).
    pub fn arguments_object(&self) -> Result<Value, String> {
        if self.arguments.trim().is_empty() {
            return Ok(json!({}));
        }
        match serde_json::from_str::<Value>(&self.arguments) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err("the arguments are not a JSON object".into()),
            Err(e) => Err(format!("the arguments are not valid JSON: {e}")),
        }
    }

    /// The OpenAI form, for an assistant message or a client's `tool_calls`.
    pub fn to_value(&self) -> Value {
        json!({"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}})
    }
}

/// Puts tool calls together from streamed fragments: by `index`, tolerating a missing index,
/// arguments sent whole, in pieces, or as a JSON object instead of a string.
#[derive(Debug, Default)]
pub struct ToolCallAssembler {
    calls: Vec<ToolCall>,
}

impl ToolCallAssembler {
    /// Adds the `tool_calls` array of one delta (or of a whole message).
    pub fn add(&mut self, fragments: &Value) {
        let Some(fragments) = fragments.as_array() else {
            return;
        };
        for (position, fragment) in fragments.iter().enumerate() {
            let id = fragment
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            let slot = match fragment.get("index").and_then(Value::as_u64) {
                Some(i) => i as usize,
                // No index: a new id starts a new call; otherwise it continues the last one
                // (or takes its position in a message that lists several whole calls).
                None => match (id, self.calls.last()) {
                    (Some(id), Some(last)) if last.id != id => self.calls.len(),
                    (Some(_), None) | (None, None) => position.max(self.calls.len()),
                    (_, Some(_)) if fragments.len() > 1 => position,
                    (_, Some(_)) => self.calls.len() - 1,
                },
            };
            while self.calls.len() <= slot {
                let n = self.calls.len();
                self.calls.push(ToolCall {
                    id: format!("call_{n}"),
                    name: String::new(),
                    arguments: String::new(),
                });
            }
            let call = &mut self.calls[slot];
            if let Some(id) = id {
                call.id = id.to_string();
            }
            let function = fragment.get("function").unwrap_or(fragment);
            if let Some(name) = function.get("name").and_then(Value::as_str) {
                if call.name.is_empty() || name.starts_with(&call.name) {
                    call.name = name.to_string();
                } else if call.name != name {
                    call.name.push_str(name);
                }
            }
            match function.get("arguments") {
                Some(Value::String(piece)) => call.arguments.push_str(piece),
                Some(v @ (Value::Object(_) | Value::Array(_))) => call.arguments = v.to_string(),
                _ => {}
            }
        }
    }

    /// The assembled calls (unnamed fragments dropped).
    pub fn finish(self) -> Vec<ToolCall> {
        self.calls
            .into_iter()
            .filter(|c| !c.name.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_in_pieces_by_index() {
        let mut a = ToolCallAssembler::default();
        a.add(&json!([{"index": 0, "id": "c1", "type": "function", "function": {"name": "weather__add", "arguments": ""}}]));
        a.add(&json!([{"index": 1, "id": "c2", "function": {"name": "notes__upper", "arguments": "{\"te"}}]));
        a.add(&json!([{"index": 0, "function": {"arguments": "{\"a\": 2, "}}]));
        a.add(&json!([{"index": 0, "function": {"arguments": "\"b\": 40}"}}]));
        a.add(&json!([{"index": 1, "function": {"arguments": "xt\": \"x\"}"}}]));
        let calls = a.finish();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].arguments_object(), Ok(json!({"a": 2, "b": 40})));
        assert_eq!(calls[1].name, "notes__upper");
        assert_eq!(calls[1].arguments_object(), Ok(json!({"text": "x"})));
    }

    #[test]
    fn whole_calls_objects_and_missing_indexes() {
        let mut a = ToolCallAssembler::default();
        a.add(&json!([{"id": "x", "function": {"name": "weather__add", "arguments": {"a": 1, "b": 2}}}]));
        a.add(&json!([{"id": "y", "function": {"name": "weather__forecast", "arguments": "{\"city\""}}]));
        a.add(&json!([{"function": {"arguments": ": \"Oslo\"}"}}]));
        let calls = a.finish();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0].arguments_object(), Ok(json!({"a": 1, "b": 2})));
        assert_eq!(calls[1].arguments_object(), Ok(json!({"city": "Oslo"})));
        let mut b = ToolCallAssembler::default();
        b.add(&json!([{"function": {"name": "a__b", "arguments": "{}"}}, {"function": {"name": "c__d", "arguments": "{}"}}]));
        assert_eq!(b.finish().len(), 2, "several whole calls in one message");
    }

    #[test]
    fn repeated_names_and_bad_arguments() {
        let mut a = ToolCallAssembler::default();
        a.add(&json!([{"index": 0, "function": {"name": "weather__add", "arguments": "{"}}]));
        a.add(&json!([{"index": 0, "function": {"name": "weather__add", "arguments": "oops"}}]));
        let calls = a.finish();
        assert_eq!(calls[0].name, "weather__add");
        assert!(calls[0].arguments_object().is_err());
    }

    #[test]
    fn upstream_refusals_become_openai_error_objects_whatever_their_shape() {
        // OpenAI, vLLM and llama.cpp's own server wrap the fields in "error".
        let wrapped = json!({"error": {"message": "too long", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}});
        let expected = json!({"message": "too long", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"});
        assert_eq!(openai_error_object(400, Some(&wrapped), ""), expected);
        // llama-cpp-python puts them at the top level.
        let flat = json!({"message": "too long", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"});
        assert_eq!(openai_error_object(400, Some(&flat), ""), expected);
        // FastAPI's 422 says "detail"; a proxy may send plain text.
        let detail = openai_error_object(422, Some(&json!({"detail": [{"loc": ["body"]}]})), "");
        assert_eq!(detail["type"], "invalid_request_error");
        assert!(detail["message"]
            .as_str()
            .is_some_and(|m| m.contains("loc")));
        let text = openai_error_object(429, None, "Too Many Requests");
        assert_eq!(
            text,
            json!({"message": "Too Many Requests", "type": "rate_limit_error", "param": null, "code": null})
        );
    }

    #[test]
    fn the_client_never_gets_the_upstreams_internals() {
        let fault = LlmError::Status(500, "File \"/opt/venv/app.py\", line 5".into());
        assert!(
            fault.to_string().contains("/opt/venv"),
            "the log keeps them"
        );
        assert!(!fault.client_message().contains("/opt/venv"));
        let cut = LlmError::Protocol("an error event in the stream: /srv/x".into());
        assert!(!cut.client_message().contains("/srv/x"));
        let refused = LlmError::Rejected {
            status: 400,
            error: json!({"message": "too long"}),
            retry_after: None,
        };
        assert_eq!(refused.client_message(), "too long");
    }

    #[test]
    fn a_whole_completion_becomes_one_chunk() {
        let completion = json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "n", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}], "usage": {"total_tokens": 3}});
        let chunk = completion_as_chunk(&completion);
        assert_eq!(chunk["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert!(chunk["choices"][0]["delta"].get("content").is_none());
        assert_eq!(chunk["usage"]["total_tokens"], 3);
    }
}
