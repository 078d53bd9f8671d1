//! One POST's answer on the MCP face, and the event logs that make handshake-era streams
//! resumable.
//!
//! An [`Answer`] is plain JSON until something must come before the result (progress, a log
//! line, a request to the client); then it becomes an SSE stream. In a handshake-era session
//! that stream's events carry ids `<stream>-<seq>` and are kept (bounded) in an [`EventLog`]
//! registered in [`EventLogs`]: a client whose connection dropped sends `GET /mcp` with
//! `Last-Event-ID`, gets the events it missed, and goes on reading the rest of the call there.

use crate::http_util::{respond_json, SseStream};
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tiny_http::Request;

/// Events kept per stream for resumption.
const KEEP_EVENTS: usize = 512;
/// Bytes kept per stream for resumption (the oldest events go first; the newest always stays).
const KEEP_BYTES: usize = 4 * 1024 * 1024;
/// Bytes kept for all streams together; beyond it the oldest finished streams are forgotten
/// first (a small router must not fill its memory with answers nobody will ask for again).
const KEEP_TOTAL_BYTES: usize = 32 * 1024 * 1024;
/// How long a finished stream can still be resumed.
const KEEP_FINISHED: Duration = Duration::from_secs(60);
/// How long an unfinished stream nobody reads is kept.
const KEEP_UNFINISHED: Duration = Duration::from_secs(3600);
/// The reconnection delay we suggest to clients (SSE `retry`), in milliseconds.
pub const RETRY_MS: u64 = 1000;

/// The events of one resumable stream, and the connection currently reading it.
pub struct EventLog {
    stream_no: u64,
    live: Option<SseStream>,
    kept: VecDeque<(u64, String)>,
    kept_bytes: usize,
    last_seq: u64,
    finished: Option<Instant>,
    touched: Instant,
}

/// A log shared between the call that writes it and the GET that resumes it.
pub type SharedLog = Arc<Mutex<EventLog>>;

impl EventLog {
    fn new(stream_no: u64, live: SseStream) -> EventLog {
        EventLog {
            stream_no,
            live: Some(live),
            kept: VecDeque::new(),
            kept_bytes: 0,
            last_seq: 0,
            finished: None,
            touched: Instant::now(),
        }
    }

    /// Writes `message` as the next event (keeping it); false once no client reads the stream.
    /// The first one is preceded by a priming event (an id, the `retry` delay and empty data),
    /// so that a client whose stream breaks before the first real event can still resume.
    fn send<T: Serialize + ?Sized>(&mut self, message: &T) -> bool {
        if self.last_seq == 0 {
            let priming = format!("id: {}-0\nretry: {RETRY_MS}\ndata: \n\n", self.stream_no);
            self.write_live(&priming);
        }
        self.last_seq += 1;
        self.touched = Instant::now();
        let data = serde_json::to_string(message).unwrap_or_default();
        let event = format!(
            "id: {}-{}\nevent: message\ndata: {data}\n\n",
            self.stream_no, self.last_seq
        );
        let delivered = self.write_live(&event);
        self.kept_bytes += event.len();
        self.kept.push_back((self.last_seq, event));
        while self.kept.len() > 1 && (self.kept.len() > KEEP_EVENTS || self.kept_bytes > KEEP_BYTES)
        {
            match self.kept.pop_front() {
                Some((_, old)) => self.kept_bytes -= old.len(),
                None => break,
            }
        }
        delivered
    }

    fn write_live(&mut self, event: &str) -> bool {
        let Some(live) = self.live.as_mut() else {
            return false;
        };
        if let Err(e) = live.write_event(event) {
            log::debug!("client stopped reading stream {}: {e}", self.stream_no);
            self.live = None;
            return false;
        }
        true
    }

    /// Sends the last message and ends the stream.
    fn finish<T: Serialize + ?Sized>(&mut self, message: &T) {
        self.send(message);
        self.finished = Some(Instant::now());
        if let Some(live) = self.live.take() {
            let _ = live.finish();
        }
    }

    /// Continues the stream on `stream` for a client that last saw event `after`: replays what
    /// it missed, then either ends (the call is over) or keeps `stream` as the live reader.
    pub fn resume(&mut self, after: u64, mut stream: SseStream) {
        self.touched = Instant::now();
        for (seq, event) in &self.kept {
            if *seq > after && stream.write_event(event).is_err() {
                return;
            }
        }
        if self.finished.is_some() {
            let _ = stream.finish();
        } else {
            if let Some(old) = self.live.replace(stream) {
                let _ = old.finish();
            }
        }
    }

    fn expired(&self) -> bool {
        match self.finished {
            Some(at) => at.elapsed() > KEEP_FINISHED,
            None => self.live.is_none() && self.touched.elapsed() > KEEP_UNFINISHED,
        }
    }
}

/// Every resumable stream, by session.
#[derive(Default)]
pub struct EventLogs {
    logs: Mutex<HashMap<(String, u64), SharedLog>>,
    next_stream: AtomicU64,
}

impl EventLogs {
    fn open(&self, session: &str, live: SseStream) -> SharedLog {
        self.sweep();
        let stream_no = self.next_stream.fetch_add(1, Ordering::Relaxed) + 1;
        let log = Arc::new(Mutex::new(EventLog::new(stream_no, live)));
        self.lock()
            .insert((session.to_string(), stream_no), Arc::clone(&log));
        log
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), SharedLog>> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stream a `Last-Event-ID` of `session` points into, and the last event it saw.
    pub fn find(&self, session: &str, last_event_id: &str) -> Option<(SharedLog, u64)> {
        let (stream, seq) = last_event_id.trim().split_once('-')?;
        let stream: u64 = stream.parse().ok()?;
        let seq: u64 = seq.parse().ok()?;
        let log = self.lock().get(&(session.to_string(), stream)).cloned()?;
        Some((log, seq))
    }

    /// Forgets the streams of an ended session.
    pub fn forget_session(&self, session: &str) {
        self.lock().retain(|(s, _), _| s != session);
    }

    /// Forgets streams that can no longer be resumed, and the oldest finished ones while all
    /// together keep more than `KEEP_TOTAL_BYTES` (32 MiB).
    pub fn sweep(&self) {
        let mut logs = self.lock();
        logs.retain(|_, log| !log.lock().unwrap_or_else(|e| e.into_inner()).expired());
        let mut finished: Vec<(Instant, usize, (String, u64))> = Vec::new();
        let mut total = 0;
        for (key, log) in logs.iter() {
            let log = log.lock().unwrap_or_else(|e| e.into_inner());
            total += log.kept_bytes;
            if let Some(at) = log.finished {
                finished.push((at, log.kept_bytes, key.clone()));
            }
        }
        finished.sort_by_key(|(at, _, _)| *at);
        for (_, bytes, key) in finished {
            if total <= KEEP_TOTAL_BYTES {
                break;
            }
            logs.remove(&key);
            total -= bytes;
        }
    }

    /// Number of streams kept (for tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no stream is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where the events of an [`Answer`] go once it streams.
enum Stream {
    /// A stream nobody can resume (2026-07-28, or no session).
    Plain(SseStream),
    /// A handshake-era stream, kept for resumption.
    Logged(SharedLog),
}

/// One POST's answer: JSON, or an SSE stream from the first message that precedes the result.
pub struct Answer {
    /// The JSON-RPC id the final message answers (a 2026-07-28 retry brings its own).
    pub id: Value,
    request: Option<Request>,
    stream: Option<Stream>,
    can_stream: bool,
    resumable: Option<(String, Arc<EventLogs>)>,
    done: bool,
    broken: bool,
}

impl Answer {
    /// `can_stream`: the client's `Accept` allows `text/event-stream`. `resumable`: the session
    /// and the registry that keeps its streams, for the handshake era.
    pub fn new(
        request: Request,
        id: Value,
        can_stream: bool,
        resumable: Option<(String, Arc<EventLogs>)>,
    ) -> Answer {
        Answer {
            id,
            request: Some(request),
            stream: None,
            can_stream,
            resumable,
            done: false,
            broken: false,
        }
    }

    /// Whether messages before the result can reach the client.
    pub fn can_stream(&self) -> bool {
        self.can_stream && !self.done
    }

    /// Sends a message that comes before the result, opening the stream on the first one.
    /// Returns false when it was not delivered (no stream possible, or nobody reads it; a
    /// resumable stream still keeps it).
    pub fn notify(&mut self, message: &Value) -> bool {
        if !self.can_stream() || self.broken {
            return false;
        }
        if self.stream.is_none() {
            let Some(request) = self.request.take() else {
                return false;
            };
            let live = match SseStream::start(request, &[]) {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("cannot open the event stream: {e}");
                    self.broken = true;
                    return false;
                }
            };
            self.stream = Some(match &self.resumable {
                Some((session, logs)) => Stream::Logged(logs.open(session, live)),
                None => Stream::Plain(live),
            });
        }
        match self.stream.as_mut() {
            Some(Stream::Plain(live)) => {
                if let Err(e) = live.send(message) {
                    log::debug!("client went away during the call: {e}");
                    self.broken = true;
                    return false;
                }
                true
            }
            Some(Stream::Logged(log)) => {
                log.lock().unwrap_or_else(|e| e.into_inner()).send(message)
            }
            None => false,
        }
    }

    /// Sends the final message: a JSON answer with `status`, or the last event of the stream.
    /// Later calls do nothing.
    pub fn finish<T: Serialize + ?Sized>(&mut self, status: u16, message: &T) {
        if self.done {
            return;
        }
        self.done = true;
        if let Some(request) = self.request.take() {
            return respond_json(request, status, message, &[]);
        }
        match self.stream.take() {
            Some(Stream::Plain(mut live)) if !self.broken => {
                if let Err(e) = live.send(message).and_then(|_| live.finish()) {
                    log::debug!("client went away before the result: {e}");
                }
            }
            Some(Stream::Plain(_)) => {}
            Some(Stream::Logged(log)) => log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .finish(message),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{self, Write};

    /// A writer into shared memory that can be made to fail, like a dropped connection.
    #[derive(Clone, Default)]
    struct Wire {
        bytes: Arc<Mutex<Vec<u8>>>,
        broken: Arc<Mutex<bool>>,
    }

    impl Write for Wire {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if *self.broken.lock().unwrap() {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"));
            }
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Wire {
        fn stream(&self) -> SseStream {
            SseStream::from_writer(Box::new(self.clone()))
        }
        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }
        fn ids(&self) -> Vec<String> {
            self.text()
                .lines()
                .filter_map(|l| l.strip_prefix("id: ").map(str::to_string))
                .collect()
        }
    }

    fn progress(n: u64) -> Value {
        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": n}})
    }

    #[test]
    fn a_dropped_stream_resumes_after_the_last_event_seen() {
        let logs = EventLogs::default();
        let first = Wire::default();
        let log = logs.open("s1", first.stream());
        let stream_no = log.lock().unwrap().stream_no;
        let mut log = log.lock().unwrap();
        assert!(log.send(&progress(1)));
        assert!(log.send(&progress(2)));
        assert!(
            first
                .text()
                .contains(&format!("id: {stream_no}-0\nretry: 1000\ndata: \n\n")),
            "a priming event comes first: {}",
            first.text()
        );
        assert_eq!(first.ids()[0], format!("{stream_no}-0"));
        *first.broken.lock().unwrap() = true;
        assert!(!log.send(&progress(3)), "nobody reads the stream any more");
        let second = Wire::default();
        log.resume(2, second.stream());
        assert_eq!(second.ids(), [format!("{stream_no}-3")]);
        assert!(log.send(&progress(4)));
        log.finish(&json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
        assert_eq!(
            second.ids(),
            [3, 4, 5].map(|n| format!("{stream_no}-{n}")).to_vec()
        );
        assert!(
            second.text().ends_with("0\r\n\r\n"),
            "the stream ends with the call"
        );
        // A finished stream can still be read again from the start, then ends at once.
        let third = Wire::default();
        log.resume(0, third.stream());
        assert_eq!(third.ids().len(), 5);
        assert!(third.text().ends_with("0\r\n\r\n"));
    }

    #[test]
    fn logs_are_found_by_session_and_event_id_and_forgotten_with_the_session() {
        let logs = EventLogs::default();
        let log = logs.open("s1", Wire::default().stream());
        let stream_no = log.lock().unwrap().stream_no;
        let id = format!("{stream_no}-7");
        assert_eq!(logs.find("s1", &id).map(|(_, seq)| seq), Some(7));
        assert!(logs.find("s2", &id).is_none(), "another session's stream");
        assert!(logs.find("s1", "garbage").is_none());
        logs.forget_session("s1");
        assert!(logs.is_empty());
    }

    #[test]
    fn a_result_bigger_than_the_cap_is_still_kept() {
        let logs = EventLogs::default();
        let log = logs.open("s1", Wire::default().stream());
        let mut log = log.lock().unwrap();
        log.send(&progress(1));
        log.finish(&json!({"result": "x".repeat(KEEP_BYTES + 10)}));
        assert_eq!(log.kept.len(), 1, "only the last, oversized event stays");
        assert_eq!(log.kept.back().map(|(seq, _)| *seq), Some(2));
    }

    #[test]
    fn finished_streams_go_first_when_all_keep_too_much() {
        let logs = EventLogs::default();
        let big = json!({"result": "x".repeat(KEEP_BYTES - 1000)});
        let mut finished = Vec::new();
        for _ in 0..(KEEP_TOTAL_BYTES / KEEP_BYTES + 2) {
            let log = logs.open("s1", Wire::default().stream());
            log.lock().unwrap().finish(&big);
            finished.push(log);
        }
        let running = logs.open("s1", Wire::default().stream());
        running.lock().unwrap().send(&big);
        logs.sweep();
        let total: usize = logs
            .lock()
            .values()
            .map(|l| l.lock().unwrap().kept_bytes)
            .sum();
        assert!(total <= KEEP_TOTAL_BYTES, "{total}");
        let running_no = running.lock().unwrap().stream_no;
        assert!(
            logs.find("s1", &format!("{running_no}-0")).is_some(),
            "running streams stay"
        );
    }

    #[test]
    fn kept_events_are_bounded() {
        let logs = EventLogs::default();
        let log = logs.open("s1", Wire::default().stream());
        let mut log = log.lock().unwrap();
        for n in 0..(KEEP_EVENTS as u64 + 50) {
            log.send(&progress(n));
        }
        assert_eq!(log.kept.len(), KEEP_EVENTS);
        assert_eq!(log.kept.front().map(|(seq, _)| *seq), Some(51));
    }
}
