//! The legacy HTTP+SSE transport (MCP 2024-11-05): one long-lived GET event stream carries
//! everything the backend says; our messages are POSTed to the endpoint the stream announces.
//!
//! This module owns that stream (its reader thread, the `endpoint` handshake, the resolution of
//! the endpoint URL) and the POSTs; matching responses to requests is done by
//! the `Pending` table of [`crate::backend::stdio`], shared with the stdio transport.

use crate::backend::pending::Pending;
use crate::backend::transport::{is_interactive, request_id, truncate};
use crate::backend::transport::{
    Reply, Transport, TransportError, UnsolicitedHandler, WireProtocol,
};
use crate::backend::web::{
    check_http_url, media_type, new_agent, read_prefix, status_error, transport_error,
};
use crate::sse::{SseEvent, SseReader};
use serde_json::Value;
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use ureq::Agent;

/// Time allowed for POSTing a notification, which has no caller-given timeout.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// A legacy HTTP+SSE backend. See the module documentation.
pub struct LegacySseTransport {
    name: String,
    endpoint: String,
    headers: Vec<(String, String)>,
    agent: Agent,
    pending: Arc<Pending>,
    alive: Arc<AtomicBool>,
    closed: AtomicBool,
}

/// What the stream reader thread needs.
struct StreamReader {
    name: String,
    url: String,
    headers: Vec<(String, String)>,
    connect_timeout: Duration,
    agent: Agent,
    pending: Arc<Pending>,
    alive: Arc<AtomicBool>,
    on_unsolicited: UnsolicitedHandler,
}

impl LegacySseTransport {
    /// Opens the event stream at `url` and waits (at most `connect_timeout`) for its `endpoint`
    /// event. `headers` go on every request.
    pub fn connect(
        name: &str,
        url: &str,
        headers: Vec<(String, String)>,
        connect_timeout: Duration,
        on_unsolicited: UnsolicitedHandler,
    ) -> Result<LegacySseTransport, TransportError> {
        check_http_url(url)?;
        let agent = new_agent();
        let pending = Arc::new(Pending::default());
        let alive = Arc::new(AtomicBool::new(true));
        let reader = StreamReader {
            name: name.to_owned(),
            url: url.to_owned(),
            headers: headers.clone(),
            connect_timeout,
            agent: agent.clone(),
            pending: Arc::clone(&pending),
            alive: Arc::clone(&alive),
            on_unsolicited,
        };
        let (endpoint_tx, endpoint_rx) = mpsc::channel();
        thread::Builder::new()
            .name(format!("legacy-sse-{name}"))
            .spawn(move || reader.run(endpoint_tx))
            .map_err(|e| TransportError::Unavailable(format!("cannot start reader thread: {e}")))?;
        let endpoint = match endpoint_rx.recv_timeout(connect_timeout) {
            Ok(Ok(endpoint)) => endpoint,
            Ok(Err(e)) => return Err(e),
            Err(RecvTimeoutError::Timeout) => {
                agent.shutdown(); // stops the reader thread
                return Err(TransportError::Timeout(connect_timeout));
            }
            Err(RecvTimeoutError::Disconnected) => {
                let why = "SSE stream ended before the endpoint event";
                return Err(TransportError::Unavailable(why.into()));
            }
        };
        log::debug!("[{name}] legacy SSE endpoint {endpoint}");
        Ok(LegacySseTransport {
            name: name.to_owned(),
            endpoint,
            headers,
            agent,
            pending,
            alive,
            closed: AtomicBool::new(false),
        })
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// POSTs one message to the endpoint; the answer arrives on the stream, not here.
    fn post(&self, message: &Value, timeout: Duration) -> Result<(), TransportError> {
        if self.is_closed() {
            return Err(TransportError::Closed);
        }
        let body = serde_json::to_vec(message)
            .map_err(|e| TransportError::Protocol(format!("cannot serialise message: {e}")))?;
        let mut builder = self
            .agent
            .post(&self.endpoint)
            .header("Content-Type", "application/json");
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let outcome = builder
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(&body[..]);
        let response = match outcome {
            Ok(response) => response,
            Err(_) if self.is_closed() => return Err(TransportError::Closed),
            Err(e) => return Err(transport_error(e, timeout)),
        };
        let status = response.status().as_u16();
        match status {
            200..=299 => {
                // Read the (normally tiny) body so the connection can be reused.
                let _ = read_prefix(response.into_body(), 64 * 1024);
                Ok(())
            }
            404 => {
                // The server no longer knows this stream's session: only a reconnection helps.
                log::debug!("[{}] endpoint answered 404, marking dead", self.name);
                self.alive.store(false, Ordering::SeqCst);
                Err(TransportError::Unavailable(
                    "legacy SSE session is gone (HTTP 404)".into(),
                ))
            }
            _ => Err(status_error(status, response.into_body())),
        }
    }
}

impl Transport for LegacySseTransport {
    fn request(
        &self,
        request: &Value,
        progress_token: Option<&Value>,
        timeout: Duration,
        on_message: &mut dyn FnMut(Value),
    ) -> Result<Reply, TransportError> {
        let id = request_id(request)?;
        let deadline = Instant::now() + timeout;
        let inbox = self
            .pending
            .register(id, progress_token, is_interactive(request))?;
        if let Err(e) = self.post(request, timeout) {
            self.pending.remove(id);
            return Err(e);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.pending.wait(&inbox, id, left, on_message) {
            Err(TransportError::Timeout(_)) => Err(TransportError::Timeout(timeout)),
            other => other.map(Reply::from_message),
        }
    }

    fn send(&self, message: &Value) -> Result<(), TransportError> {
        self.post(message, SEND_TIMEOUT)
    }

    fn set_protocol(&self, _protocol: WireProtocol) {}

    fn open_listen_stream(&self) {}

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst) && !self.is_closed()
    }

    fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.alive.store(false, Ordering::SeqCst);
        self.pending.fail_all(TransportError::Closed);
        // Closes the event stream (ending the reader thread) and any POST in flight.
        self.agent.clone().shutdown();
    }
}

impl Drop for LegacySseTransport {
    fn drop(&mut self) {
        self.close();
    }
}

impl StreamReader {
    /// The reader thread: opens the stream, reports the endpoint on `endpoint_tx`, then routes
    /// every message until the stream ends.
    fn run(self, endpoint_tx: Sender<Result<String, TransportError>>) {
        let mut endpoint_tx = Some(endpoint_tx);
        let reader = format!("[{}] the SSE stream reader", self.name);
        let outcome = self.open().map(|body| {
            crate::resilient::contain(&reader, || self.read_events(body, &mut endpoint_tx))
                .unwrap_or_else(|why| why)
        });
        let why = match outcome {
            Ok(why) => why,
            Err(e) => e.to_string(),
        };
        log::debug!("[{}] legacy SSE stream ended: {why}", self.name);
        self.alive.store(false, Ordering::SeqCst);
        let err = TransportError::Unavailable(format!("SSE stream ended: {why}"));
        if let Some(tx) = endpoint_tx {
            let _ = tx.send(Err(err.clone()));
        }
        self.pending.fail_all(err);
    }

    fn open(&self) -> Result<impl Read, TransportError> {
        let mut builder = self
            .agent
            .get(&self.url)
            .header("Accept", "text/event-stream");
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let response = builder
            .config()
            .timeout_connect(Some(self.connect_timeout))
            .timeout_recv_response(Some(self.connect_timeout))
            .build()
            .call()
            .map_err(|e| transport_error(e, self.connect_timeout))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(status_error(status, response.into_body()));
        }
        let kind = media_type(&response);
        if kind != "text/event-stream" {
            return Err(TransportError::Protocol(format!(
                "unexpected content type {kind:?}"
            )));
        }
        Ok(response.into_body().into_reader())
    }

    /// Reads the stream until it ends; returns why it ended.
    fn read_events(
        &self,
        body: impl Read,
        endpoint_tx: &mut Option<Sender<Result<String, TransportError>>>,
    ) -> String {
        let mut events = SseReader::new(BufReader::new(body));
        loop {
            match events.next_event() {
                Ok(Some(event)) if event.event.as_deref() == Some("endpoint") => {
                    if let Some(tx) = endpoint_tx.take() {
                        let _ = tx.send(resolve_endpoint(&self.url, &event.data));
                    } else {
                        log::debug!("[{}] ignoring repeated endpoint event", self.name);
                    }
                }
                Ok(Some(event)) => self.route(&event),
                Ok(None) => return "end of stream".to_owned(),
                Err(e) => return e.to_string(),
            }
        }
    }

    fn route(&self, event: &SseEvent) {
        if event.event.as_deref().is_some_and(|kind| kind != "message") {
            log::debug!(
                "[{}] ignoring SSE event of type {:?}",
                self.name,
                event.event
            );
            return;
        }
        match serde_json::from_str::<Value>(&event.data) {
            Ok(Value::Array(batch)) => {
                for message in batch {
                    self.pending.dispatch_or(message, &self.on_unsolicited);
                }
            }
            Ok(message) => self.pending.dispatch_or(message, &self.on_unsolicited),
            Err(_) => {
                let data = truncate(&event.data, 200);
                log::warn!("[{}] ignoring non-JSON SSE event: {data}", self.name);
            }
        }
    }
}

/// Resolves the `endpoint` event's URL against the stream's URL. It may be a full URL, a
/// scheme-relative one, an absolute path, a query, or a path relative to the stream's directory.
/// It must stay on the stream's origin: our headers (credentials) go with every POST.
fn resolve_endpoint(base: &str, reference: &str) -> Result<String, TransportError> {
    let reference = reference.trim();
    let bad = |why: &str| TransportError::Protocol(format!("endpoint {reference:?}: {why}"));
    let (scheme, rest) = base
        .split_once("://")
        .ok_or_else(|| bad("base URL has no scheme"))?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let origin = format!("{scheme}://{}", &rest[..authority_end]);
    let path_and_more = &rest[authority_end..];
    let base_path = &path_and_more[..path_and_more
        .find(['?', '#'])
        .unwrap_or(path_and_more.len())];
    let resolved = if let Some(scheme_relative) = reference.strip_prefix("//") {
        format!("{scheme}://{scheme_relative}")
    } else if reference.starts_with('/') {
        format!("{origin}{reference}")
    } else if has_scheme(reference) {
        reference.to_owned()
    } else if reference.starts_with('?') {
        format!("{origin}{base_path}{reference}")
    } else {
        let directory = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        let directory = if directory.is_empty() { "/" } else { directory };
        format!("{origin}{directory}{reference}")
    };
    let same_origin = resolved
        .strip_prefix(&origin)
        .is_some_and(|tail| tail.is_empty() || tail.starts_with(['/', '?', '#']));
    if !same_origin {
        return Err(bad(&format!("not on the stream's origin {origin}")));
    }
    Ok(resolved)
}

fn has_scheme(reference: &str) -> bool {
    match reference.split_once("://") {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::web::test_server::{respond, serve, Seen};
    use serde_json::json;
    use std::io::Write;
    use std::sync::Mutex;

    /// Decides what the fake server writes on the stream for each POSTed message;
    /// `None` ends the stream.
    type Script = Box<dyn FnMut(Value) -> Option<Vec<Value>> + Send>;

    /// A legacy SSE server at `/sse` announcing `endpoint`; POSTs are fed to `script`.
    fn legacy_server(endpoint: &'static str, script: Script) -> (String, mpsc::Receiver<Seen>) {
        let stream: Arc<Mutex<Option<Sender<Value>>>> = Arc::new(Mutex::new(None));
        let script = Arc::new(Mutex::new(script));
        serve(move |seen, request| {
            if seen.method == "POST" {
                let message: Value = serde_json::from_str(&seen.body).unwrap();
                if let Some(tx) = stream.lock().unwrap().as_ref() {
                    let _ = tx.send(message);
                }
                return respond(request, 202, &[], "Accepted");
            }
            let (tx, rx) = mpsc::channel();
            *stream.lock().unwrap() = Some(tx);
            let mut out = request.into_writer();
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            let _ = out.write_all(head.as_bytes());
            let mut chunk = |text: String| {
                let _ = write!(out, "{:x}\r\n{text}\r\n", text.len());
                let _ = out.flush();
            };
            chunk(format!(": hi\n\nevent: endpoint\ndata: {endpoint}\n\n"));
            while let Ok(message) = rx.recv_timeout(Duration::from_secs(5)) {
                let reply = (script.lock().unwrap())(message);
                let Some(replies) = reply else { break };
                for reply in replies {
                    chunk(format!("event: message\ndata: {reply}\n\n"));
                }
            }
            let _ = out.write_all(b"0\r\n\r\n");
            let _ = out.flush();
        })
    }

    fn ignore() -> UnsolicitedHandler {
        Arc::new(|_| {})
    }

    fn connect(url: &str) -> LegacySseTransport {
        let headers = vec![("Authorization".to_owned(), "Bearer t".to_owned())];
        LegacySseTransport::connect(
            "legacy",
            &format!("{url}/sse"),
            headers,
            Duration::from_secs(2),
            ignore(),
        )
        .unwrap()
    }

    fn call(id: u64, method: &str) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"_meta": {"progressToken": id}}})
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn endpoint_event_and_response_by_id_with_progress() {
        let script: Script = Box::new(|m| {
            let id = m["id"].clone();
            Some(vec![
                json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": id, "progress": 1}}),
                json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "other"}}),
                json!({"jsonrpc": "2.0", "id": id, "result": {"echo": m["method"]}}),
            ])
        });
        let (url, seen) = legacy_server("/messages?sessionId=42", script);
        let t = connect(&url);
        let mut messages = Vec::new();
        let token = json!(1);
        let response = t
            .request(&call(1, "tools/list"), Some(&token), SECOND, &mut |m| {
                messages.push(m)
            })
            .unwrap()
            .message();
        assert_eq!(response["result"]["echo"], "tools/list");
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(messages[0]["params"]["progressToken"], 1);
        let get = seen.recv_timeout(SECOND).unwrap();
        assert_eq!(get.header("Accept"), Some("text/event-stream"));
        assert_eq!(get.header("Authorization"), Some("Bearer t"));
        let post = seen.recv_timeout(SECOND).unwrap();
        assert_eq!(post.url, "/messages?sessionId=42");
        assert_eq!(post.header("Authorization"), Some("Bearer t"));
        assert!(t.is_alive());
    }

    #[test]
    fn concurrent_requests_answered_out_of_order() {
        let mut held: Option<Value> = None;
        let script: Script = Box::new(move |m| match held.take() {
            None => {
                held = Some(m);
                Some(vec![])
            }
            Some(first) => Some(vec![
                json!({"jsonrpc": "2.0", "id": m["id"], "result": {"n": m["id"]}}),
                json!({"jsonrpc": "2.0", "id": first["id"], "result": {"n": first["id"]}}),
            ]),
        });
        let (url, _seen) = legacy_server("messages", script);
        let t = Arc::new(connect(&url));
        let threads: Vec<_> = [10, 20]
            .into_iter()
            .map(|id| {
                let t = Arc::clone(&t);
                thread::spawn(move || {
                    t.request(&call(id, "x"), None, Duration::from_secs(3), &mut |_| {})
                })
            })
            .collect();
        for (thread, id) in threads.into_iter().zip([10, 20]) {
            let response = thread.join().unwrap().unwrap().message();
            assert_eq!(response["result"]["n"], id);
        }
    }

    #[test]
    fn stream_end_fails_waiters_and_marks_dead() {
        let script: Script = Box::new(|_| None);
        let (url, _seen) = legacy_server("/messages", script);
        let t = connect(&url);
        let started = Instant::now();
        let err = t.request(&call(1, "x"), None, Duration::from_secs(3), &mut |_| {});
        assert!(
            matches!(err, Err(TransportError::Unavailable(_))),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!t.is_alive());
    }

    #[test]
    fn timeout_and_close() {
        let script: Script = Box::new(|_| Some(vec![]));
        let (url, _seen) = legacy_server("/messages", script);
        let t = Arc::new(connect(&url));
        let timeout = Duration::from_millis(300);
        let err = t.request(&call(1, "x"), None, timeout, &mut |_| {});
        assert_eq!(err.err(), Some(TransportError::Timeout(timeout)));
        let waiting = {
            let t = Arc::clone(&t);
            thread::spawn(move || {
                t.request(&call(2, "x"), None, Duration::from_secs(3), &mut |_| {})
            })
        };
        thread::sleep(Duration::from_millis(100));
        t.close();
        assert_eq!(waiting.join().unwrap().err(), Some(TransportError::Closed));
        assert!(!t.is_alive());
    }

    #[test]
    fn no_endpoint_event_times_out_connect() {
        let (url, _seen) = serve(|_, request| {
            let mut out = request.into_writer();
            let _ = out.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n: nothing\n\n",
            );
            let _ = out.flush();
            thread::sleep(Duration::from_secs(2));
        });
        let started = Instant::now();
        let result =
            LegacySseTransport::connect("x", &url, vec![], Duration::from_millis(300), ignore());
        assert!(matches!(result, Err(TransportError::Timeout(_))));
        assert!(started.elapsed() < SECOND);
    }

    #[test]
    fn connection_refused_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/sse");
        let result = LegacySseTransport::connect("x", &url, vec![], SECOND, ignore());
        assert!(matches!(result, Err(TransportError::Unavailable(_))));
    }

    #[test]
    fn endpoint_resolution() {
        let base = "http://h:1/a/sse?x=1";
        let ok = |r: &str| resolve_endpoint(base, r).unwrap();
        assert_eq!(ok("/messages?s=1"), "http://h:1/messages?s=1");
        assert_eq!(ok("messages?s=1"), "http://h:1/a/messages?s=1");
        assert_eq!(ok("?s=1"), "http://h:1/a/sse?s=1");
        assert_eq!(ok("http://h:1/m"), "http://h:1/m");
        assert_eq!(ok("//h:1/m"), "http://h:1/m");
        assert_eq!(resolve_endpoint("http://h", "m").unwrap(), "http://h/m");
        assert!(resolve_endpoint(base, "http://evil/m").is_err());
        assert!(resolve_endpoint(base, "//h:12/m").is_err());
        assert!(resolve_endpoint(base, "http://h:1@evil/m").is_err());
    }
}
