//! The Streamable HTTP transport (MCP 2025-03-26 and later, including the stateless 2026-07-28
//! revision): one POST per message, answered with JSON or an SSE stream, plus the optional GET
//! stream for unsolicited server messages.
//!
//! This module owns the HTTP headers of the protocol (session id, protocol version, routing
//! headers), the mapping of HTTP outcomes to [`TransportError`]s, and the ureq setup shared with
//! the legacy SSE transport (`new_agent`, `transport_error`).

use crate::backend::transport::{request_id, truncate};
use crate::backend::transport::{
    Reply, Transport, TransportError, UnsolicitedHandler, WireProtocol,
};
use crate::backend::web::{
    check_http_url, io_transport_error, media_type, new_agent, read_prefix, status_error,
    status_text_error, transport_error,
};
use crate::mcp::param_headers::ParamHeader;
use crate::mcp::result_json::ResultJson;
use crate::sse::{SseEvent, SseReader};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use ureq::http::Response;
use ureq::{Agent, Body, RequestBuilder};

/// Largest JSON response body read into memory.
const MAX_JSON_BODY: u64 = 64 * 1024 * 1024;
/// Largest error body read when looking for a JSON-RPC error in it.
const MAX_ERROR_BODY: u64 = 1024 * 1024;
/// Time allowed for a notification POST, which has no caller-given timeout.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for the session `DELETE` on close.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds on opening the GET listen stream (its body may stay idle for ever).
const LISTEN_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const LISTEN_HEADERS_TIMEOUT: Duration = Duration::from_secs(30);
/// Reconnection delays of the GET listen stream: doubled while it yields nothing.
const LISTEN_MIN_DELAY: Duration = Duration::from_secs(1);
/// How long opening a 2026-07-28 listen waits for the backend's acknowledgement, so that a
/// subscription is in place when the client's subscribe returns.
const LISTEN_READY_WAIT: Duration = Duration::from_secs(5);
const LISTEN_MAX_DELAY: Duration = Duration::from_secs(60);
/// A POST's SSE stream that closes before the response is resumed with `Last-Event-ID` at most
/// this many times, waiting the server's `retry` (or this default) in between.
const MAX_RESUMPTIONS: u32 = 20;
const DEFAULT_RESUME_DELAY: Duration = Duration::from_millis(500);

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

/// A Streamable HTTP backend. See the module documentation.
pub struct HttpTransport {
    shared: Arc<Shared>,
}

/// What the transport and its listen thread share.
struct Shared {
    name: String,
    url: String,
    headers: Vec<(String, String)>,
    agent: Agent,
    state: Mutex<SessionState>,
    closed: AtomicBool,
    on_unsolicited: UnsolicitedHandler,
}

#[derive(Default)]
struct SessionState {
    protocol: WireProtocol,
    session_id: Option<String>,
    /// The current GET listen stream: its number and its own agent (shutting that agent down
    /// ends the stream and nothing else).
    listen: Option<(u64, Agent)>,
    listen_count: u64,
    /// The `Mcp-Param-*` parameters of each tool, by the backend's tool name.
    param_headers: HashMap<String, Vec<ParamHeader>>,
    /// 2026-07-28: the `subscriptions/listen` request the listen stream POSTs (instead of the
    /// handshake era's GET).
    listen_request: Option<Value>,
    /// Told when the listen stream delivers its first event (or fails to open).
    listen_ready: Option<std::sync::mpsc::Sender<()>>,
}

impl HttpTransport {
    /// Prepares a transport for the MCP endpoint `url`; `headers` go on every request.
    /// Does no network I/O.
    pub fn new(
        name: &str,
        url: &str,
        headers: Vec<(String, String)>,
        on_unsolicited: UnsolicitedHandler,
    ) -> Result<HttpTransport, TransportError> {
        check_http_url(url)?;
        let shared = Shared {
            name: name.to_owned(),
            url: url.to_owned(),
            headers,
            agent: new_agent(),
            state: Mutex::new(SessionState::default()),
            closed: AtomicBool::new(false),
            on_unsolicited,
        };
        Ok(HttpTransport {
            shared: Arc::new(shared),
        })
    }
}

impl Transport for HttpTransport {
    fn request(
        &self,
        request: &Value,
        _progress_token: Option<&Value>,
        timeout: Duration,
        on_message: &mut dyn FnMut(Value),
    ) -> Result<Reply, TransportError> {
        let shared = &self.shared;
        let id = request_id(request)?;
        let deadline = Instant::now() + timeout;
        let outcome = shared
            .post(request, timeout)
            .and_then(|(response, sent_session)| {
                shared.read_response(response, sent_session, id, deadline, timeout, on_message)
            });
        shared.unless_closed(outcome)
    }

    fn send(&self, message: &Value) -> Result<(), TransportError> {
        let shared = &self.shared;
        let outcome = shared
            .post(message, SEND_TIMEOUT)
            .and_then(|(response, sent_session)| {
                let status = response.status().as_u16();
                match status {
                    200..=299 => Ok(()),
                    404 if sent_session.is_some() => Err(shared.session_expired(sent_session)),
                    _ => Err(status_error(status, response.into_body())),
                }
            });
        shared.unless_closed(outcome)
    }

    fn set_protocol(&self, protocol: WireProtocol) {
        let mut state = self.shared.lock();
        if protocol.version.is_none() {
            state.session_id = None;
            stop_listening(&mut state);
        }
        state.protocol = protocol;
    }

    fn set_param_headers(&self, tools: HashMap<String, Vec<ParamHeader>>) {
        self.shared.lock().param_headers = tools;
    }

    fn open_subscription(&self, request: Value, _previous_id: Option<Value>, wait: bool) {
        let (ready, ready_rx) = std::sync::mpsc::channel();
        {
            let mut state = self.shared.lock();
            state.listen_request = Some(request);
            state.listen_ready = Some(ready);
        }
        self.open_listen_stream();
        // The acknowledgement says the backend has the subscription; an update sent before
        // that would be lost.
        if wait && ready_rx.recv_timeout(LISTEN_READY_WAIT).is_err() {
            log::debug!(
                "[{}] subscriptions/listen not acknowledged yet",
                self.shared.name
            );
        }
    }

    fn open_listen_stream(&self) {
        if self.shared.is_closed() {
            return;
        }
        let agent = new_agent();
        let number = {
            let mut state = self.shared.lock();
            stop_listening(&mut state);
            state.listen_count += 1;
            state.listen = Some((state.listen_count, agent.clone()));
            state.listen_count
        };
        let shared = Arc::clone(&self.shared);
        let spawned = thread::Builder::new()
            .name(format!("http-listen-{}", shared.name))
            .spawn(move || shared.listen(number, &agent));
        if let Err(e) = spawned {
            log::warn!("[{}] cannot start listen thread: {e}", self.shared.name);
        }
    }

    fn is_alive(&self) -> bool {
        !self.shared.is_closed()
    }

    fn close(&self) {
        let shared = &self.shared;
        if shared.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let session = {
            let mut state = shared.lock();
            stop_listening(&mut state);
            state.session_id.take()
        };
        if let Some(session) = session {
            shared.delete_session(&session);
        }
        // Unblocks requests still reading a response; they then report `Closed`.
        shared.agent.clone().shutdown();
    }
}

impl Drop for HttpTransport {
    /// Also ends the listen thread, which would otherwise keep the shared state alive.
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn unless_closed<T>(&self, outcome: Result<T, TransportError>) -> Result<T, TransportError> {
        match outcome {
            Err(_) if self.is_closed() => Err(TransportError::Closed),
            other => other,
        }
    }

    fn snapshot(&self) -> (WireProtocol, Option<String>) {
        let state = self.lock();
        (state.protocol.clone(), state.session_id.clone())
    }

    /// Adds the configured headers, the protocol version and the session id.
    fn with_common_headers<B>(
        &self,
        mut builder: RequestBuilder<B>,
        protocol: &WireProtocol,
        session: Option<&str>,
    ) -> RequestBuilder<B> {
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(version) = &protocol.version {
            builder = builder.header(crate::mcp::VERSION_HEADER, version.as_str());
        }
        if let Some(session) = session {
            builder = builder.header(crate::mcp::SESSION_HEADER, session);
        }
        builder
    }

    /// POSTs one message; returns the response and the session id the request carried.
    fn post(
        &self,
        message: &Value,
        timeout: Duration,
    ) -> Result<(Response<Body>, Option<String>), TransportError> {
        if self.is_closed() {
            return Err(TransportError::Closed);
        }
        let body = serde_json::to_vec(message)
            .map_err(|e| TransportError::Protocol(format!("cannot serialise message: {e}")))?;
        let (protocol, session) = self.snapshot();
        let mut builder = self
            .agent
            .post(&self.url)
            .header("Content-Type", JSON)
            .header("Accept", "application/json, text/event-stream");
        builder = self.with_common_headers(builder, &protocol, session.as_deref());
        if protocol.stateless {
            for (name, value) in routing_headers(message, &self.lock().param_headers) {
                builder = builder.header(name, value);
            }
        }
        let response = builder
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(&body[..])
            .map_err(|e| transport_error(e, timeout))?;
        self.capture_session(&response);
        Ok((response, session))
    }

    fn capture_session(&self, response: &Response<Body>) {
        let header = response.headers().get("mcp-session-id");
        if let Some(session) = header.and_then(|v| v.to_str().ok()) {
            let mut state = self.lock();
            if state.session_id.as_deref() != Some(session) {
                log::debug!("[{}] session id {session}", self.name);
                state.session_id = Some(session.to_owned());
            }
        }
    }

    /// Forgets the session the backend no longer knows (unless a newer one replaced it).
    fn session_expired(&self, sent_session: Option<String>) -> TransportError {
        let mut state = self.lock();
        if state.session_id == sent_session {
            state.session_id = None;
        }
        TransportError::SessionExpired
    }

    fn read_response(
        &self,
        response: Response<Body>,
        sent_session: Option<String>,
        id: &Value,
        deadline: Instant,
        timeout: Duration,
        on_message: &mut dyn FnMut(Value),
    ) -> Result<Reply, TransportError> {
        let status = response.status().as_u16();
        match status {
            404 if sent_session.is_some() => Err(self.session_expired(sent_session)),
            202 => Err(TransportError::Protocol(
                "HTTP 202 (no response) to a request".into(),
            )),
            200..=299 => match media_type(&response).as_str() {
                JSON => {
                    let body = read_json(response.into_body(), timeout)?;
                    route_messages(&body, id, on_message)
                        .map_err(|e| {
                            TransportError::Protocol(format!("response body is not JSON: {e}"))
                        })?
                        .ok_or_else(|| {
                            TransportError::Protocol(
                                "JSON body holds no response to the request".into(),
                            )
                        })
                }
                EVENT_STREAM => {
                    let body = response.into_body().into_reader();
                    self.read_event_stream(body, id, deadline, timeout, on_message)
                }
                other => Err(TransportError::Protocol(format!(
                    "unexpected content type {other:?}"
                ))),
            },
            _ => json_rpc_error(status, response.into_body(), id),
        }
    }

    /// Reads the SSE stream of a POST until the response to `id`, resuming it with
    /// `Last-Event-ID` if the server closes it early after giving event ids.
    fn read_event_stream(
        &self,
        body: impl Read,
        id: &Value,
        deadline: Instant,
        timeout: Duration,
        on_message: &mut dyn FnMut(Value),
    ) -> Result<Reply, TransportError> {
        let mut cursor = StreamCursor::default();
        let mut outcome = self.scan_stream(body, id, timeout, on_message, &mut cursor);
        let mut resumptions = 0;
        loop {
            match outcome {
                Ok(Some(response)) => return Ok(response),
                Ok(None) | Err(TransportError::Unavailable(_))
                    if cursor.last_event_id.is_some() && resumptions < MAX_RESUMPTIONS =>
                {
                    resumptions += 1;
                    let body = self.resume(&cursor, deadline, timeout)?;
                    outcome = self.scan_stream(body, id, timeout, on_message, &mut cursor);
                }
                Ok(None) => {
                    let why = "SSE stream ended without a response to the request";
                    return Err(TransportError::Protocol(why.into()));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn scan_stream(
        &self,
        body: impl Read,
        id: &Value,
        timeout: Duration,
        on_message: &mut dyn FnMut(Value),
        cursor: &mut StreamCursor,
    ) -> Result<Option<Reply>, TransportError> {
        let mut events = SseReader::new(BufReader::new(body));
        loop {
            let event = events
                .next_event()
                .map_err(|e| io_transport_error(e, timeout))?;
            let Some(event) = event else { return Ok(None) };
            if self.is_closed() {
                return Err(TransportError::Closed);
            }
            cursor.advance(&event);
            let Some(data) = self.message_data(&event) else {
                continue;
            };
            match route_messages(data, id, on_message) {
                Ok(Some(reply)) => return Ok(Some(reply)),
                Ok(None) => {}
                Err(_) => self.ignore_non_json(data),
            }
        }
    }

    /// Reopens a POST's event stream with GET and `Last-Event-ID`.
    fn resume(
        &self,
        cursor: &StreamCursor,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<impl Read, TransportError> {
        let delay = cursor.retry.unwrap_or(DEFAULT_RESUME_DELAY);
        let left = deadline.saturating_duration_since(Instant::now());
        if left <= delay {
            thread::sleep(left);
            return Err(TransportError::Timeout(timeout));
        }
        thread::sleep(delay);
        let left = deadline.saturating_duration_since(Instant::now());
        let (protocol, session) = self.snapshot();
        let mut builder = self.agent.get(&self.url).header("Accept", EVENT_STREAM);
        builder = self.with_common_headers(builder, &protocol, session.as_deref());
        if let Some(last) = &cursor.last_event_id {
            builder = builder.header("Last-Event-ID", last.as_str());
        }
        let response = builder
            .config()
            .timeout_global(Some(left))
            .build()
            .call()
            .map_err(|e| transport_error(e, timeout))?;
        self.capture_session(&response);
        let status = response.status().as_u16();
        match status {
            404 if session.is_some() => Err(self.session_expired(session)),
            200 if media_type(&response) == EVENT_STREAM => Ok(response.into_body().into_reader()),
            _ => Err(status_error(status, response.into_body())),
        }
    }

    /// The JSON-RPC message(s) carried by an SSE event, if any.
    /// The data of an event that carries a message (not the priming event that only carries
    /// an id, nor an event of another type).
    fn message_data<'e>(&self, event: &'e SseEvent) -> Option<&'e str> {
        if event.data.trim().is_empty() {
            return None;
        }
        if event.event.as_deref().is_some_and(|kind| kind != "message") {
            log::debug!(
                "[{}] ignoring SSE event of type {:?}",
                self.name,
                event.event
            );
            return None;
        }
        Some(&event.data)
    }

    fn event_message(&self, event: &SseEvent) -> Option<Value> {
        let data = self.message_data(event)?;
        match serde_json::from_str(data) {
            Ok(message) => Some(message),
            Err(_) => {
                self.ignore_non_json(data);
                None
            }
        }
    }

    fn ignore_non_json(&self, data: &str) {
        let data = truncate(data, 200);
        log::warn!("[{}] ignoring non-JSON SSE event: {data}", self.name);
    }

    fn delete_session(&self, session: &str) {
        let protocol = self.lock().protocol.clone();
        let builder = self.agent.delete(&self.url);
        let outcome = self
            .with_common_headers(builder, &protocol, Some(session))
            .config()
            .timeout_global(Some(DELETE_TIMEOUT))
            .build()
            .call();
        match outcome {
            Ok(response) => log::debug!("[{}] DELETE session: {}", self.name, response.status()),
            Err(e) => log::debug!("[{}] DELETE session failed: {e}", self.name),
        }
    }

    /// Whether listen stream `number` is still the wanted one.
    /// Wakes whoever waits for the listen stream to be in place.
    fn listen_is_ready(&self) {
        if let Some(ready) = self.lock().listen_ready.take() {
            let _ = ready.send(());
        }
    }

    fn still_listening(&self, number: u64) -> bool {
        let current = self.lock().listen.as_ref().map(|(n, _)| *n);
        !self.is_closed() && current == Some(number)
    }

    /// The GET listen stream: every message goes to `on_unsolicited`; reconnects while wanted.
    fn listen(&self, number: u64, agent: &Agent) {
        let mut delay = LISTEN_MIN_DELAY;
        let mut cursor = StreamCursor::default();
        while self.still_listening(number) {
            let body = match self.open_listen_stream(agent, &cursor) {
                Ok(body) => body,
                Err(why) => {
                    log::debug!("[{}] no listen stream: {why}", self.name);
                    self.listen_is_ready();
                    return;
                }
            };
            let mut events = SseReader::new(BufReader::new(body));
            let mut got_any = false;
            loop {
                let event = match events.next_event() {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(e) => {
                        log::debug!("[{}] listen stream broke: {e}", self.name);
                        break;
                    }
                };
                if !self.still_listening(number) {
                    return;
                }
                got_any = true;
                cursor.advance(&event);
                self.deliver_unsolicited(&event);
                self.listen_is_ready();
            }
            delay = match (got_any, cursor.retry) {
                (_, Some(retry)) => retry.min(LISTEN_MAX_DELAY),
                (true, None) => LISTEN_MIN_DELAY,
                (false, None) => (delay * 2).min(LISTEN_MAX_DELAY),
            };
            self.sleep_while_listening(number, delay);
        }
    }

    fn open_listen_stream(
        &self,
        agent: &Agent,
        cursor: &StreamCursor,
    ) -> Result<impl Read, String> {
        let (protocol, session) = self.snapshot();
        let listen_request = self.lock().listen_request.clone();
        let response = match listen_request {
            // 2026-07-28: a POSTed subscriptions/listen whose answer is the stream.
            Some(request) => {
                let mut builder = agent
                    .post(&self.url)
                    .header("Content-Type", JSON)
                    .header("Accept", "application/json, text/event-stream");
                builder = self.with_common_headers(builder, &protocol, session.as_deref());
                for (name, value) in routing_headers(&request, &HashMap::new()) {
                    builder = builder.header(name, value);
                }
                builder
                    .config()
                    .timeout_connect(Some(LISTEN_CONNECT_TIMEOUT))
                    .timeout_recv_response(Some(LISTEN_HEADERS_TIMEOUT))
                    .build()
                    .send(request.to_string().as_bytes())
            }
            None => {
                let mut builder = agent.get(&self.url).header("Accept", EVENT_STREAM);
                builder = self.with_common_headers(builder, &protocol, session.as_deref());
                if let Some(last) = &cursor.last_event_id {
                    builder = builder.header("Last-Event-ID", last.as_str());
                }
                builder
                    .config()
                    .timeout_connect(Some(LISTEN_CONNECT_TIMEOUT))
                    .timeout_recv_response(Some(LISTEN_HEADERS_TIMEOUT))
                    .build()
                    .call()
            }
        }
        .map_err(|e| e.to_string())?;
        self.capture_session(&response);
        let status = response.status().as_u16();
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        if media_type(&response) != EVENT_STREAM {
            return Err(format!("content type {:?}", media_type(&response)));
        }
        Ok(response.into_body().into_reader())
    }

    fn deliver_unsolicited(&self, event: &SseEvent) {
        match self.event_message(event) {
            Some(Value::Array(batch)) => batch.into_iter().for_each(|m| (self.on_unsolicited)(m)),
            Some(message) => (self.on_unsolicited)(message),
            None => {}
        }
    }

    fn sleep_while_listening(&self, number: u64, delay: Duration) {
        let until = Instant::now() + delay;
        while Instant::now() < until && self.still_listening(number) {
            thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
    }
}

/// Ends the current GET listen stream, if any, by closing its connection.
fn stop_listening(state: &mut SessionState) {
    if let Some((_, agent)) = state.listen.take() {
        agent.shutdown();
    }
}

/// Where an SSE stream got to, for resuming it.
#[derive(Default)]
struct StreamCursor {
    last_event_id: Option<String>,
    retry: Option<Duration>,
}

impl StreamCursor {
    fn advance(&mut self, event: &SseEvent) {
        if event.id.is_some() {
            self.last_event_id = event.id.clone();
        }
        if let Some(ms) = event.retry {
            self.retry = Some(Duration::from_millis(ms));
        }
    }
}

/// Finds the response to `id` in `messages` (one message or a batch); every other message goes
/// to `on_message`, in order.
fn route_messages(
    text: &str,
    id: &Value,
    on_message: &mut dyn FnMut(Value),
) -> Result<Option<Reply>, serde_json::Error> {
    let mut reply = None;
    if text.trim_start().starts_with('[') {
        for message in serde_json::from_str::<Vec<&RawValue>>(text)? {
            route_message(message.get(), id, &mut reply, on_message)?;
        }
    } else {
        route_message(text, id, &mut reply, on_message)?;
    }
    Ok(reply)
}

/// Keeps `text` in `reply` if it is the (first) response to `id`, with its result as the
/// backend wrote it; passes any other message to `on_message`.
fn route_message(
    text: &str,
    id: &Value,
    reply: &mut Option<Reply>,
    on_message: &mut dyn FnMut(Value),
) -> Result<(), serde_json::Error> {
    if reply.is_none() {
        if let Ok(response) = serde_json::from_str::<ResponseFields>(text) {
            if response.method.is_none() && response.id.as_ref() == Some(id) {
                match (response.result, response.error) {
                    (_, Some(error)) => {
                        *reply = Some(Reply::Error(error));
                        return Ok(());
                    }
                    (Some(result), None) => {
                        *reply = Some(Reply::Result(ResultJson::from_text(result)));
                        return Ok(());
                    }
                    (None, None) => {}
                }
            }
        }
    }
    on_message(serde_json::from_str(text)?);
    Ok(())
}

/// The members of a message that tell whether it is a response, its result left as text. A
/// member present with `null` counts as present.
#[derive(Deserialize)]
struct ResponseFields<'a> {
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default, borrow, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Value>,
}

fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A 4xx/5xx answer: the JSON-RPC error for `id` in the body if there is one (stateless servers
/// answer errors this way), otherwise a protocol error quoting the body.
fn json_rpc_error(status: u16, body: Body, id: &Value) -> Result<Reply, TransportError> {
    let text = read_prefix(body, MAX_ERROR_BODY);
    if let Ok(mut message) = serde_json::from_str::<Value>(&text) {
        if message.get("id") == Some(id) {
            if let Some(error) = message.get_mut("error").map(Value::take) {
                return Ok(Reply::Error(error));
            }
        }
    }
    Err(status_text_error(status, &text))
}

fn read_json(mut body: Body, timeout: Duration) -> Result<String, TransportError> {
    let bytes = body
        .with_config()
        .limit(MAX_JSON_BODY)
        .read_to_vec()
        .map_err(|e| transport_error(e, timeout))?;
    String::from_utf8(bytes)
        .map_err(|e| TransportError::Protocol(format!("response body is not JSON: {e}")))
}

/// The 2026-07-28 routing headers for a message (see [`crate::mcp::headers::routing_headers`]).
fn routing_headers(
    message: &Value,
    param_headers: &HashMap<String, Vec<ParamHeader>>,
) -> Vec<(String, String)> {
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        return Vec::new();
    };
    let params = message.get("params").and_then(Value::as_object);
    crate::mcp::headers::routing_headers(method, params, param_headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::web::test_server::{respond, respond_streaming, serve, sse, Seen};
    use serde_json::json;
    use std::net::TcpListener;
    use std::sync::mpsc;

    fn ignore() -> UnsolicitedHandler {
        Arc::new(|_| {})
    }

    fn transport(url: &str) -> HttpTransport {
        let headers = vec![("Authorization".to_owned(), "Bearer s3cret".to_owned())];
        HttpTransport::new("test", url, headers, ignore()).unwrap()
    }

    /// `route_messages` on `text`: the reply's message and the other messages, in order.
    fn routed(text: &str, id: Value) -> (Option<Value>, Vec<Value>) {
        let mut others = Vec::new();
        let reply = route_messages(text, &id, &mut |m| others.push(m)).unwrap();
        (reply.map(Reply::message), others)
    }

    #[test]
    fn the_response_is_kept_as_text_and_every_other_message_passed_on() {
        let reply = route_messages(
            r#"{"jsonrpc":"2.0","id":3,"result":{ "content" : [] }}"#,
            &json!(3),
            &mut |_| panic!("nothing else"),
        )
        .unwrap();
        match reply {
            Some(Reply::Result(ResultJson::Text(text))) => {
                assert_eq!(text.get(), r#"{ "content" : [] }"#)
            }
            other => panic!("{other:?}"),
        }
        let batch = r#"[{"jsonrpc":"2.0","method":"notifications/progress","params":{"p":1}},
            {"jsonrpc":"2.0","id":4,"result":{"n":4}},
            {"jsonrpc":"2.0","id":3,"result":{"n":3}},
            {"jsonrpc":"2.0","id":3,"result":{"again":true}},
            {"jsonrpc":"2.0","id":9,"method":"ping"}]"#;
        let (reply, others) = routed(batch, json!(3));
        assert_eq!(reply, Some(json!({"result": {"n": 3}})));
        assert_eq!(others.len(), 4);
        assert_eq!(others[0]["method"], "notifications/progress");
        assert_eq!(others[1]["id"], 4);
        assert_eq!(others[2]["result"]["again"], true);
        assert_eq!(others[3]["method"], "ping");
    }

    #[test]
    fn errors_nulls_and_requests_are_told_apart() {
        let (reply, _) = routed(r#"{"id":1,"error":{"code":-1,"message":"no"}}"#, json!(1));
        assert_eq!(reply, Some(json!({"error": {"code": -1, "message": "no"}})));
        let (reply, _) = routed(r#"{"id":1,"result":{},"error":{"code":-2}}"#, json!(1));
        assert_eq!(reply, Some(json!({"error": {"code": -2}})), "an error wins");
        let (reply, _) = routed(r#"{"id":1,"result":null}"#, json!(1));
        assert_eq!(reply, Some(json!({"result": null})), "null is a result");
        let (reply, others) = routed(r#"{"id":1,"method":"x","result":{}}"#, json!(1));
        assert_eq!(
            (reply, others.len()),
            (None, 1),
            "a request is not our response"
        );
        let (reply, others) = routed(r#"{"id":"1","result":{}}"#, json!(1));
        assert_eq!(
            (reply, others.len()),
            (None, 1),
            "ids compare as JSON values"
        );
        let (reply, others) = routed("7", json!(1));
        assert_eq!((reply, others), (None, vec![json!(7)]));
        assert!(route_messages("{\"id\":1,", &json!(1), &mut |_| {}).is_err());
        assert!(route_messages("[{\"id\":1}", &json!(1), &mut |_| {}).is_err());
    }

    fn call(id: u64, method: &str, params: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
    }

    fn echo_id(seen: &Seen) -> Value {
        serde_json::from_str::<Value>(&seen.body).unwrap()["id"].clone()
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn json_response_and_request_headers() {
        let (url, seen) = serve(|seen, request| {
            let reply = json!({"jsonrpc": "2.0", "id": echo_id(seen), "result": {"ok": true}});
            respond(
                request,
                200,
                &[("Content-Type", "application/json")],
                &reply.to_string(),
            );
        });
        let t = transport(&url);
        let response = t
            .request(&call(1, "tools/list", json!({})), None, SECOND, &mut |_| {})
            .unwrap()
            .message();
        assert_eq!(response["result"]["ok"], true);
        let seen = seen.recv_timeout(SECOND).unwrap();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.header("Content-Type"), Some("application/json"));
        assert_eq!(
            seen.header("Accept"),
            Some("application/json, text/event-stream")
        );
        assert_eq!(seen.header("Authorization"), Some("Bearer s3cret"));
        assert_eq!(seen.header("MCP-Protocol-Version"), None);
        assert_eq!(seen.header("Mcp-Method"), None);
    }

    #[test]
    fn sse_response_streams_notifications_before_the_result() {
        let (reached_tx, reached_rx) = mpsc::channel::<()>();
        let reached_rx = Mutex::new(reached_rx);
        let (waited_tx, waited_rx) = mpsc::channel::<bool>();
        let (url, _seen) = serve(move |seen, request| {
            let id = echo_id(seen);
            let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "p", "progress": 1}});
            let result = json!({"jsonrpc": "2.0", "id": id, "result": {"done": true}});
            let parts = [": keep-alive\n\n".to_owned(), sse(&progress), sse(&result)];
            let reached = reached_rx.lock().unwrap();
            let waited = waited_tx.clone();
            respond_streaming(
                request,
                200,
                &[("Content-Type", "text/event-stream")],
                &parts,
                |i| {
                    if i == 2 {
                        // Only send the result once the client has handed the progress on.
                        let _ = waited.send(reached.recv_timeout(Duration::from_secs(2)).is_ok());
                    }
                },
            );
        });
        let t = transport(&url);
        let mut messages = Vec::new();
        let response = t
            .request(
                &call(7, "tools/call", json!({"name": "x"})),
                None,
                Duration::from_secs(5),
                &mut |m| {
                    messages.push(m);
                    let _ = reached_tx.send(());
                },
            )
            .unwrap()
            .message();
        assert_eq!(response["result"]["done"], true);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0]["method"], "notifications/progress");
        assert!(
            waited_rx.recv_timeout(SECOND).unwrap(),
            "progress was not streamed"
        );
    }

    #[test]
    fn session_id_is_captured_sent_and_expires_on_404() {
        let (url, seen) = serve(|seen, request| {
            let id = echo_id(seen);
            if seen.header("Mcp-Session-Id") == Some("abc") && id == json!(3) {
                return respond(request, 404, &[], "gone");
            }
            let reply = json!({"jsonrpc": "2.0", "id": id, "result": {}});
            let headers = [
                ("Content-Type", "application/json"),
                ("mcp-session-id", "abc"),
            ];
            respond(request, 200, &headers, &reply.to_string());
        });
        let t = transport(&url);
        t.request(&call(1, "initialize", json!({})), None, SECOND, &mut |_| {})
            .unwrap();
        assert_eq!(
            seen.recv_timeout(SECOND).unwrap().header("Mcp-Session-Id"),
            None
        );
        t.set_protocol(WireProtocol {
            version: Some("2025-11-25".into()),
            stateless: false,
        });
        t.request(&call(2, "tools/list", json!({})), None, SECOND, &mut |_| {})
            .unwrap();
        let second = seen.recv_timeout(SECOND).unwrap();
        assert_eq!(second.header("Mcp-Session-Id"), Some("abc"));
        assert_eq!(second.header("MCP-Protocol-Version"), Some("2025-11-25"));
        let expired = t.request(&call(3, "tools/list", json!({})), None, SECOND, &mut |_| {});
        assert_eq!(expired.err(), Some(TransportError::SessionExpired));
        assert_eq!(t.shared.lock().session_id, None);
    }

    #[test]
    fn http_error_with_json_rpc_body_is_the_response() {
        let (url, _seen) = serve(|seen, request| {
            let id = echo_id(seen);
            if id == json!(1) {
                let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": "bad"}});
                respond(
                    request,
                    400,
                    &[("Content-Type", "application/json")],
                    &error.to_string(),
                );
            } else {
                respond(request, 500, &[], &"x".repeat(1000));
            }
        });
        let t = transport(&url);
        let response = t.request(&call(1, "initialize", json!({})), None, SECOND, &mut |_| {});
        assert_eq!(response.unwrap().message()["error"]["code"], -32602);
        let err = t
            .request(&call(2, "initialize", json!({})), None, SECOND, &mut |_| {})
            .unwrap_err();
        match err {
            TransportError::Protocol(why) => {
                assert!(why.starts_with("HTTP 500: xxx"), "{why}");
                assert!(why.chars().count() < 220, "{why}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn accepted_without_body_is_a_protocol_error_for_requests_but_fine_for_send() {
        let (url, _seen) = serve(|_, request| respond(request, 202, &[], ""));
        let t = transport(&url);
        let err = t.request(&call(1, "ping", json!({})), None, SECOND, &mut |_| {});
        assert!(matches!(err, Err(TransportError::Protocol(_))), "{err:?}");
        t.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .unwrap();
    }

    #[test]
    fn stateless_routing_headers() {
        let (url, seen) = serve(|seen, request| {
            let reply = json!({"jsonrpc": "2.0", "id": echo_id(seen), "result": {}});
            respond(
                request,
                200,
                &[("Content-Type", "application/json")],
                &reply.to_string(),
            );
        });
        let t = transport(&url);
        t.set_protocol(WireProtocol {
            version: Some("2026-07-28".into()),
            stateless: true,
        });
        let schema = json!({"properties": {"city": {"type": "string", "x-mcp-header": "City"}}});
        let marked = crate::mcp::param_headers::marked(&schema);
        t.set_param_headers(HashMap::from([("get_weather".to_string(), marked)]));
        t.request(
            &call(
                9,
                "tools/call",
                json!({"name": "get_weather", "arguments": {"city": "Zürich"}}),
            ),
            None,
            SECOND,
            &mut |_| {},
        )
        .unwrap();
        let seen_call = seen.recv_timeout(SECOND).unwrap();
        assert_eq!(
            seen_call.header("Mcp-Param-City"),
            Some("=?base64?WsO8cmljaA==?=")
        );
        let cases = [
            (
                call(1, "tools/call", json!({"name": "get_weather"})),
                Some("get_weather"),
            ),
            (
                call(2, "prompts/get", json!({"name": "café"})),
                Some("=?base64?Y2Fmw6k=?="),
            ),
            (
                call(3, "resources/read", json!({"uri": "file:///a b"})),
                Some("file:///a b"),
            ),
            (
                call(4, "resources/read", json!({"uri": " x"})),
                Some("=?base64?IHg=?="),
            ),
            (call(5, "tools/list", json!({})), None),
        ];
        for (request, name) in cases {
            t.request(&request, None, SECOND, &mut |_| {}).unwrap();
            let seen = seen.recv_timeout(SECOND).unwrap();
            assert_eq!(seen.header("Mcp-Method"), request["method"].as_str());
            assert_eq!(seen.header("Mcp-Name"), name);
            assert_eq!(seen.header("MCP-Protocol-Version"), Some("2026-07-28"));
        }
    }

    #[test]
    fn timeout_against_a_silent_server() {
        let (url, _seen) = serve(|_, request| {
            thread::sleep(Duration::from_secs(2));
            drop(request);
        });
        let t = transport(&url);
        let started = Instant::now();
        let timeout = Duration::from_millis(300);
        let err = t.request(&call(1, "ping", json!({})), None, timeout, &mut |_| {});
        assert_eq!(err.err(), Some(TransportError::Timeout(timeout)));
        assert!(started.elapsed() < Duration::from_millis(1500));
    }

    #[test]
    fn timeout_while_streaming() {
        let (url, _seen) = serve(|_, request| {
            let parts = [": hello\n\n".to_owned(), ": late\n\n".to_owned()];
            respond_streaming(
                request,
                200,
                &[("Content-Type", "text/event-stream")],
                &parts,
                |i| {
                    if i == 1 {
                        thread::sleep(Duration::from_secs(2));
                    }
                },
            );
        });
        let t = transport(&url);
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let err = t.request(&call(1, "ping", json!({})), None, timeout, &mut |_| {});
        assert_eq!(err.err(), Some(TransportError::Timeout(timeout)));
        assert!(started.elapsed() < Duration::from_millis(1500));
    }

    #[test]
    fn connection_refused_is_unavailable() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t = transport(&format!("http://127.0.0.1:{port}/mcp"));
        let err = t.request(&call(1, "ping", json!({})), None, SECOND, &mut |_| {});
        assert!(
            matches!(err, Err(TransportError::Unavailable(_))),
            "{err:?}"
        );
    }

    #[test]
    fn redirects_are_not_followed() {
        let (url, seen) =
            serve(|_, request| respond(request, 307, &[("Location", "http://127.0.0.1:1/")], ""));
        let t = transport(&url);
        let err = t.request(&call(1, "ping", json!({})), None, SECOND, &mut |_| {});
        assert!(
            matches!(err, Err(TransportError::Protocol(ref why)) if why.starts_with("HTTP 307")),
            "{err:?}"
        );
        assert!(seen.recv_timeout(SECOND).is_ok());
    }

    #[test]
    fn stream_closed_early_is_resumed_with_last_event_id() {
        let (url, seen) = serve(|seen, request| {
            let headers = [("Content-Type", "text/event-stream")];
            if seen.method == "POST" {
                let parts = ["id: e1\nretry: 10\ndata:\n\n".to_owned()];
                return respond_streaming(request, 200, &headers, &parts, |_| {});
            }
            let result = json!({"jsonrpc": "2.0", "id": 5, "result": {"resumed": true}});
            respond_streaming(
                request,
                200,
                &headers,
                &[format!("id: e2\n{}", sse(&result))],
                |_| {},
            );
        });
        let t = transport(&url);
        let response = t.request(
            &call(5, "tools/call", json!({"name": "n"})),
            None,
            SECOND,
            &mut |_| {},
        );
        assert_eq!(response.unwrap().message()["result"]["resumed"], true);
        let _post = seen.recv_timeout(SECOND).unwrap();
        let get = seen.recv_timeout(SECOND).unwrap();
        assert_eq!(get.method, "GET");
        assert_eq!(get.header("Last-Event-ID"), Some("e1"));
    }

    #[test]
    fn listen_stream_delivers_unsolicited_and_405_stops_quietly() {
        let (url, seen) = serve(|seen, request| {
            let headers = [("Content-Type", "text/event-stream")];
            if seen.method == "GET" {
                let message =
                    json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
                return respond_streaming(request, 200, &headers, &[sse(&message)], |_| {});
            }
            respond(request, 200, &[], "");
        });
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let handler: UnsolicitedHandler = Arc::new(move |m| {
            let _ = tx.lock().unwrap().send(m);
        });
        let t = HttpTransport::new("test", &url, vec![], handler).unwrap();
        t.open_listen_stream();
        let message = rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!(message["method"], "notifications/tools/list_changed");
        let get = seen.recv_timeout(SECOND).unwrap();
        assert_eq!(get.header("Accept"), Some("text/event-stream"));
        t.close();
        assert!(!t.is_alive());

        let (url, seen) = serve(|_, request| respond(request, 405, &[], ""));
        let t = transport(&url);
        t.open_listen_stream();
        assert_eq!(seen.recv_timeout(SECOND).unwrap().method, "GET");
        // No reconnection after a 405.
        assert!(seen.recv_timeout(Duration::from_millis(1500)).is_err());
    }

    #[test]
    fn close_deletes_the_session_and_fails_later_requests() {
        let (url, seen) = serve(|seen, request| {
            let reply = json!({"jsonrpc": "2.0", "id": echo_id(seen), "result": {}});
            let headers = [
                ("Content-Type", "application/json"),
                ("Mcp-Session-Id", "s-1"),
            ];
            respond(request, 200, &headers, &reply.to_string());
        });
        let t = transport(&url);
        t.request(&call(1, "initialize", json!({})), None, SECOND, &mut |_| {})
            .unwrap();
        t.close();
        let _post = seen.recv_timeout(SECOND).unwrap();
        let delete = seen.recv_timeout(SECOND).unwrap();
        assert_eq!(delete.method, "DELETE");
        assert_eq!(delete.header("Mcp-Session-Id"), Some("s-1"));
        let err = t.request(&call(2, "ping", json!({})), None, SECOND, &mut |_| {});
        assert_eq!(err.err(), Some(TransportError::Closed));
    }
}
