//! Small HTTP helpers on top of tiny_http: JSON answers, and Server-Sent Event streams written
//! chunk by chunk with a flush per event. Each notes the status it sends for the metrics
//! (`crate::metrics::note_status`): an answer written another way must note it too.
//!
//! tiny_http buffers bodies of unknown length (8 KiB) before writing, which would hold SSE events
//! back; so streams take the raw socket with `Request::into_writer`, write the status line and
//! headers themselves, and send each event as one HTTP chunk.

use serde::Serialize;
use serde_json::Value;
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;
use tiny_http::{Header, Request, Response};

/// A header, or `None` if the name or value is not valid in HTTP. Every header the gateway
/// writes goes through here: a value with CR, LF, NUL or another control character (which could
/// split the answer's head) is refused and logged, never written.
pub fn header(name: &str, value: &str) -> Option<Header> {
    if !crate::untrusted::header_name_ok(name) || !crate::untrusted::header_value_ok(value) {
        log::warn!(
            "a {} header was not sent: its value has characters a header cannot carry ({})",
            crate::untrusted::for_log(name),
            crate::untrusted::shortened(value, 80)
        );
        return None;
    }
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

/// The value of request header `name` (case-insensitive).
pub fn request_header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// The address of the client that sent `request`: the socket's peer or, when `trust_forwarded`
/// (the gateway sits behind a proxy its owner runs), the last `X-Forwarded-For` entry (the one
/// that proxy added), else `X-Real-IP`. Without the setting those headers are ignored: anyone
/// could send them.
pub fn client_address(request: &Request, trust_forwarded: bool) -> Option<IpAddr> {
    if trust_forwarded {
        let forwarded = request
            .headers()
            .iter()
            .rev()
            .find(|h| h.field.equiv("X-Forwarded-For"))
            .and_then(|h| h.value.as_str().rsplit(',').next().and_then(parse_address));
        let real = || request_header(request, "X-Real-IP").and_then(parse_address);
        if let Some(ip) = forwarded.or_else(real) {
            return Some(ip);
        }
    }
    request.remote_addr().map(|a| a.ip())
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:1234`, `2001:db8::1` or
/// `[2001:db8::1]:1234`.
fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.parse().ok().or_else(|| {
        let (host, port) = text.split_once(':')?;
        port.parse::<u16>().ok()?;
        host.parse().ok()
    })
}

/// Sends `body` as JSON with `status` and extra headers. Errors writing to a client that went
/// away are only logged.
pub fn respond_json<T: Serialize + ?Sized>(
    request: Request,
    status: u16,
    body: &T,
    headers: &[(String, String)],
) {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    respond_bytes(request, status, bytes, "application/json", headers);
}

/// Sends `body` with `status`, `content_type` and extra headers. Errors writing to a client
/// that went away are only logged.
pub fn respond_bytes(
    request: Request,
    status: u16,
    body: Vec<u8>,
    content_type: &str,
    headers: &[(String, String)],
) {
    crate::metrics::note_status(status);
    let mut response = Response::from_data(body).with_status_code(status);
    if let Some(h) = header("Content-Type", content_type) {
        response.add_header(h);
    }
    for (name, value) in headers {
        if let Some(h) = header(name, value) {
            response.add_header(h);
        }
    }
    if let Err(e) = request.respond(response) {
        log::debug!("client went away before the answer was sent: {e}");
    }
}

/// Sends an empty answer with `status` and extra headers.
pub fn respond_empty(request: Request, status: u16, headers: &[(String, String)]) {
    crate::metrics::note_status(status);
    let mut response = Response::empty(status);
    for (name, value) in headers {
        if let Some(h) = header(name, value) {
            response.add_header(h);
        }
    }
    if let Err(e) = request.respond(response) {
        log::debug!("client went away before the answer was sent: {e}");
    }
}

/// An open `text/event-stream` answer.
pub struct SseStream {
    writer: Box<dyn Write + Send>,
    next_id: u64,
    id_prefix: String,
}

impl SseStream {
    /// Takes over the connection of `request` and writes the stream's head.
    pub fn start(request: Request, headers: &[(String, String)]) -> io::Result<SseStream> {
        crate::metrics::note_status(200);
        let mut writer = request.into_writer();
        let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache, no-transform\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n");
        for (name, value) in headers {
            if header(name, value).is_some() {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str("\r\n");
        writer.write_all(head.as_bytes())?;
        writer.flush()?;
        Ok(SseStream {
            writer,
            next_id: 0,
            id_prefix: String::new(),
        })
    }

    /// A stream whose head was already written to `writer` (tests write into memory).
    pub fn from_writer(writer: Box<dyn Write + Send>) -> SseStream {
        SseStream {
            writer,
            next_id: 0,
            id_prefix: String::new(),
        }
    }

    /// Event ids become `<prefix><n>`.
    pub fn with_id_prefix(mut self, prefix: String) -> SseStream {
        self.id_prefix = prefix;
        self
    }

    fn chunk(&mut self, payload: &str) -> io::Result<()> {
        write!(self.writer, "{:x}\r\n{payload}\r\n", payload.len())?;
        self.writer.flush()
    }

    /// Sends one JSON-RPC message as an SSE `message` event and flushes it.
    pub fn send<T: Serialize + ?Sized>(&mut self, message: &T) -> io::Result<()> {
        self.next_id += 1;
        let data = serde_json::to_string(message).unwrap_or_default();
        let event = format!(
            "id: {}{}\nevent: message\ndata: {data}\n\n",
            self.id_prefix, self.next_id
        );
        self.chunk(&event)
    }

    /// Sends `value` as a bare `data:` event (the OpenAI streaming format) and flushes it.
    pub fn send_data(&mut self, value: &Value) -> io::Result<()> {
        self.send_raw_data(&serde_json::to_string(value).unwrap_or_default())
    }

    /// Sends a `data:` event with `text` as it is (e.g. `[DONE]`) and flushes it.
    pub fn send_raw_data(&mut self, text: &str) -> io::Result<()> {
        self.chunk(&format!("data: {text}\n\n"))
    }

    /// Writes one event formatted by the caller (ending in a blank line) and flushes it.
    pub fn write_event(&mut self, event: &str) -> io::Result<()> {
        self.chunk(event)
    }

    /// Sends an SSE comment (a keep-alive).
    pub fn comment(&mut self, text: &str) -> io::Result<()> {
        self.chunk(&format!(": {text}\n\n"))
    }

    /// Ends the stream properly (last chunk), leaving the connection usable.
    pub fn finish(mut self) -> io::Result<()> {
        self.writer.write_all(b"0\r\n\r\n")?;
        self.writer.flush()
    }
}

/// How long a [`QueuedStream`] stays silent before it writes a comment to find out whether its
/// client is still there (the second write after the client left fails).
const IDLE_PROBE_EVERY: Duration = Duration::from_secs(5);

/// Events a [`QueuedStream`] holds for a client that reads slowly; past that the client is
/// taken for gone.
const QUEUED_EVENTS: usize = 256;

/// What a [`QueuedStream`]'s thread writes.
enum Queued {
    Message(Value),
    Comment(&'static str),
    Finish,
}

/// An event stream that lives on: written by a thread of its own, so that whoever has an event
/// for it (a backend's reader thread, the catalog's rebuild, the keep-alive) only queues it and
/// never waits for a client that stopped reading. A client whose queue is full, or whose writes
/// fail, is gone: [`QueuedStream::send`] says so and the stream should be dropped.
pub struct QueuedStream {
    queue: std::sync::mpsc::SyncSender<Queued>,
}

impl QueuedStream {
    /// Moves `stream` to a writer thread of its own.
    pub fn start(stream: SseStream) -> io::Result<QueuedStream> {
        QueuedStream::start_probing(stream, IDLE_PROBE_EVERY)
    }

    fn start_probing(stream: SseStream, probe_every: Duration) -> io::Result<QueuedStream> {
        let (queue, events) = std::sync::mpsc::sync_channel(QUEUED_EVENTS);
        std::thread::Builder::new()
            .name("mcp-stream".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let mut stream = stream;
                loop {
                    let written = match events.recv_timeout(probe_every) {
                        Ok(Queued::Message(message)) => stream.send(&message),
                        Ok(Queued::Comment(text)) => stream.comment(text),
                        Ok(Queued::Finish) => {
                            let _ = stream.finish();
                            return;
                        }
                        // A client that went away is only noticed by a write that fails: an
                        // idle stream says something now and then, so that its thread and
                        // socket are given back within seconds, not at the next keep-alive.
                        Err(RecvTimeoutError::Timeout) => stream.comment("idle"),
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    if written.is_err() {
                        return;
                    }
                }
            })?;
        Ok(QueuedStream { queue })
    }

    /// Queues one JSON-RPC message; false when the client is gone (or so slow that its queue
    /// is full).
    pub fn send(&self, message: &Value) -> bool {
        self.queue
            .try_send(Queued::Message(message.clone()))
            .is_ok()
    }

    /// Queues an SSE comment (a keep-alive); false when the client is gone.
    pub fn comment(&self, text: &'static str) -> bool {
        self.queue.try_send(Queued::Comment(text)).is_ok()
    }

    /// Ends the stream properly once what is queued is written.
    pub fn finish(self) {
        let _ = self.queue.try_send(Queued::Finish);
    }
}

/// The event stream of an answer that switches to SSE on first use: opens it from `request`
/// the first time. Returns the stream and whether it was just opened; `None` when the client
/// has gone (or the request was already used).
pub fn lazy_stream<'a>(
    request: &mut Option<Request>,
    stream: &'a mut Option<SseStream>,
    headers: &[(String, String)],
) -> Option<(&'a mut SseStream, bool)> {
    let mut opened = false;
    if stream.is_none() {
        match SseStream::start(request.take()?, headers) {
            Ok(s) => {
                *stream = Some(s);
                opened = true;
            }
            Err(e) => {
                log::debug!("cannot open the event stream: {e}");
                return None;
            }
        }
    }
    stream.as_mut().map(|s| (s, opened))
}

/// Answers one POST either as JSON or, as soon as something must be sent before the result, as
/// an SSE stream (when the client accepts one).
pub struct Responder {
    request: Option<Request>,
    stream: Option<SseStream>,
    can_stream: bool,
    headers: Vec<(String, String)>,
    broken: bool,
}

impl Responder {
    /// `can_stream`: the client's `Accept` allows `text/event-stream`.
    pub fn new(request: Request, can_stream: bool, headers: Vec<(String, String)>) -> Responder {
        Responder {
            request: Some(request),
            stream: None,
            can_stream,
            headers,
            broken: false,
        }
    }

    /// Sends a message that comes before the result (progress, log). Switches to SSE on the first
    /// one; dropped when the client cannot take a stream.
    pub fn notify(&mut self, message: &Value) {
        if !self.can_stream || self.broken {
            return;
        }
        let Some((stream, _)) = lazy_stream(&mut self.request, &mut self.stream, &self.headers)
        else {
            self.broken = true;
            return;
        };
        if let Err(e) = stream.send(message) {
            log::debug!("client went away during the call: {e}");
            self.broken = true;
        }
    }

    /// Whether the client has gone away.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sends the final message: a JSON answer with `status`, or the last event of the stream.
    pub fn finish(mut self, status: u16, message: &Value) {
        if let Some(request) = self.request.take() {
            respond_json(request, status, message, &self.headers);
        } else if let Some(mut stream) = self.stream.take() {
            if !self.broken {
                if let Err(e) = stream.send(message).and_then(|_| stream.finish()) {
                    log::debug!("client went away before the result: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::mpsc::TrySendError;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// Writes into shared memory.
    struct Memory(Arc<Mutex<Vec<u8>>>);

    impl Write for Memory {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A client that never reads: every write blocks until the test lets it fail.
    struct Stalled(std::sync::mpsc::Receiver<()>);

    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_queued_stream_writes_in_order_and_finishes() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let stream = SseStream::from_writer(Box::new(Memory(Arc::clone(&written))));
        let queued = QueuedStream::start(stream).unwrap();
        assert!(queued.send(&json!({"n": 1})));
        assert!(queued.comment("keep-alive"));
        assert!(queued.send(&json!({"n": 2})));
        queued.finish();
        wait_until("the last chunk", || {
            written.lock().unwrap().ends_with(b"0\r\n\r\n")
        });
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let (one, two) = (
            text.find("{\"n\":1}").unwrap(),
            text.find("{\"n\":2}").unwrap(),
        );
        assert!(
            one < text.find(": keep-alive").unwrap() && one < two,
            "{text}"
        );
    }

    #[test]
    fn a_client_that_stops_reading_never_holds_the_sender() {
        let (release, stalled) = std::sync::mpsc::channel();
        let stream = SseStream::from_writer(Box::new(Stalled(stalled)));
        let queued = QueuedStream::start(stream).unwrap();
        let started = Instant::now();
        // The writer blocks on the first event; the queue takes QUEUED_EVENTS more, then says
        // the client is gone, all without waiting.
        let accepted = (0..QUEUED_EVENTS + 10)
            .take_while(|n| queued.send(&json!({"n": n})))
            .count();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            (QUEUED_EVENTS..=QUEUED_EVENTS + 1).contains(&accepted),
            "{accepted}"
        );
        assert!(!queued.comment("keep-alive"));
        // The write fails at last (the socket's timeout): the writer ends, and the stream says
        // it is gone for good.
        release.send(()).unwrap();
        wait_until("the writer to end", || {
            matches!(
                queued.queue.try_send(Queued::Comment("x")),
                Err(TrySendError::Disconnected(_))
            )
        });
        assert!(!queued.send(&json!({})));
    }

    /// A client that has gone: every write fails, and the writes are counted.
    struct Gone(Arc<Mutex<usize>>);

    impl Write for Gone {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            *self.0.lock().unwrap() += 1;
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "the client left"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_idle_stream_finds_out_that_its_client_left() {
        let writes = Arc::new(Mutex::new(0));
        let stream = SseStream::from_writer(Box::new(Gone(Arc::clone(&writes))));
        let queued = QueuedStream::start_probing(stream, Duration::from_millis(20)).unwrap();
        // Nothing is queued: the idle probe's failed write ends the writer all the same.
        wait_until("the writer to end", || {
            matches!(
                queued.queue.try_send(Queued::Comment("x")),
                Err(TrySendError::Disconnected(_))
            )
        });
        assert_eq!(*writes.lock().unwrap(), 1);
        assert!(!queued.send(&json!({})));
    }

    /// The head tiny_http writes for a response with `headers` (the way every answer goes out).
    fn written_head(headers: &[(String, String)]) -> String {
        let mut response = Response::empty(302);
        for (name, value) in headers {
            if let Some(h) = header(name, value) {
                response.add_header(h);
            }
        }
        let mut out = Vec::new();
        response
            .raw_print(&mut out, tiny_http::HTTPVersion(1, 1), &[], true, None)
            .expect("write into memory");
        String::from_utf8_lossy(&out).into_owned()
    }

    /// For arbitrary values, the written head has exactly the header lines asked for or fewer
    /// (a refused value is left out), never one more: no value can add a header or a body.
    #[test]
    fn no_value_splits_the_head_whatever_it_holds() {
        let pieces = [
            "https://a.example/cb",
            "\r\n",
            "\r",
            "\n",
            "\0",
            "Set-Cookie: x=1",
            ";",
            " ",
            "\u{1b}[31m",
            "é",
            "%0d%0a",
            "\r\n\r\n<svg onload=alert(1)>",
            ":",
            "\t",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..5_000 {
            let mut value = String::new();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                value.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            let head = written_head(&[("Location".into(), value.clone())]);
            let lines: Vec<&str> = head.trim_end_matches("\r\n").split("\r\n").collect();
            let locations = lines.iter().filter(|l| l.starts_with("Location:")).count();
            assert!(
                !lines.iter().any(|l| l.starts_with("Set-Cookie")),
                "{value:?} -> {head:?}"
            );
            assert!(
                !head.contains('\0') && !head.contains("<svg"),
                "{value:?} -> {head:?}"
            );
            assert!(
                head.ends_with("\r\n\r\n") && head.matches("\r\n\r\n").count() == 1,
                "{value:?} -> {head:?}"
            );
            assert_eq!(
                locations,
                usize::from(header_value_ok_for_test(&value)),
                "{value:?}"
            );
            assert!(lines.iter().all(|l| !l.contains('\n') && !l.contains('\r')));
        }
    }

    fn header_value_ok_for_test(value: &str) -> bool {
        !value.contains(|c: char| c.is_control() && c != '\t') && value.is_ascii()
    }

    #[test]
    fn proxy_addresses_parse() {
        for (text, ip) in [
            ("192.0.2.1", "192.0.2.1"),
            (" 192.0.2.1:1234", "192.0.2.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
        ] {
            assert_eq!(parse_address(text), ip.parse().ok(), "{text}");
        }
        assert_eq!(parse_address("unknown"), None);
        assert_eq!(parse_address("192.0.2.1:99999"), None);
    }

    #[test]
    fn clean_values_are_written() {
        let head = written_head(&[(
            "Location".into(),
            "https://a.example/cb?code=x&state=%0D".into(),
        )]);
        assert!(
            head.contains("Location: https://a.example/cb?code=x&state=%0D\r\n"),
            "{head}"
        );
    }
}
