//! The audit log: one JSON line per tool call, prompt get, resource read, refusal and
//! authentication failure, so every action taken in the household's name can be traced.
//!
//! Lines are handed to a writer thread of its own over a bounded channel, so a slow disk (an SD
//! card, a NAS under load) never holds a worker; the thread appends and flushes each line and
//! rotates the file by size (`audit.log`, `audit.log.1`, ... keeping `keep` old files). Values of
//! sensitive argument keys (password, token, secret, key, authorization, and any configured) are
//! written as `"[redacted]"`. When writing fails the failure is counted, logged once a minute,
//! and, with `on_failure: "refuse"`, calls are refused until a line is written again.

use serde::Serialize;
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lines waiting for the writer; past that, lines are dropped and counted. (An unbounded
/// channel with this count as the bound: a `sync_channel` of this size took 128 KiB of resident
/// memory up front, a sixth of the gateway's own memory at idle.)
const QUEUE: u64 = 4096;
/// At most this much of the queue goes out in one write.
const BATCH_BYTES: usize = 64 * 1024;
/// How long the writer lets lines gather after writing a batch.
const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// Argument keys whose values are never written (matched case-insensitively as substrings).
pub const SENSITIVE: &[&str] = &[
    "password",
    "passwd",
    "token",
    "secret",
    "authorization",
    "cookie",
    "credential",
    "api_key",
    "apikey",
    "private_key",
];

/// The audit settings (`"audit": {...}` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditSettings {
    /// Whether to write the log at all.
    pub enabled: bool,
    /// The file (relative paths are in the state folder).
    pub path: PathBuf,
    /// Rotate when the file grows past this.
    pub max_bytes: u64,
    /// Old files kept (`audit.log.1` ... `audit.log.<keep>`).
    pub keep: usize,
    /// More argument keys to redact (substrings, any case).
    pub redact: Vec<String>,
    /// Refuse calls while the log cannot be written.
    pub refuse_on_failure: bool,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: true,
            path: PathBuf::from("audit.log"),
            max_bytes: 5 * 1024 * 1024,
            keep: 3,
            redact: Vec::new(),
            refuse_on_failure: false,
        }
    }
}

/// Whose call it is, carried with a call so the core can write its line.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditContext {
    /// `mcp`, `openai` or `openapi`.
    pub face: &'static str,
    /// The principal's name.
    pub principal: String,
}

/// Who did what through which face, for one line.
#[derive(Debug, Clone, Default)]
pub struct Entry<'a> {
    /// `mcp`, `openai` or `http`.
    pub face: &'a str,
    /// The principal (a token's name, `oauth:<client>`), or the address for auth failures.
    pub principal: &'a str,
    /// `tools/call`, `prompts/get`, `resources/read`, `auth`, `rate_limit`.
    pub action: &'a str,
    /// The backend (or `gateway` for its own tools).
    pub server: &'a str,
    /// The tool or prompt name, or the resource URI, as the client named it.
    pub name: &'a str,
    /// The arguments (redacted when written).
    pub arguments: Option<&'a Value>,
    /// `ok`, `error` or `refused`.
    pub outcome: &'a str,
    /// Why, for errors and refusals.
    pub detail: Option<&'a str>,
    /// How long it took.
    pub duration: Option<Duration>,
    /// Size of the result, in bytes of JSON.
    pub result_bytes: Option<usize>,
}

/// The running audit log.
/// One line of the log as written: empty names and absent values are left out.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(skip_serializing_if = "is_empty")]
    face: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    principal: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    action: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    server: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<Redacted<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_bytes: Option<usize>,
}

fn is_empty(text: &&str) -> bool {
    text.is_empty()
}

pub struct AuditLog {
    tx: Option<Sender<String>>,
    redact: Vec<String>,
    refuse_on_failure: bool,
    failing: Arc<AtomicBool>,
    /// Lines queued, and lines the writer has dealt with (written or failed): see `flush`.
    queued: AtomicU64,
    handled: Arc<AtomicU64>,
    /// Lines that could not be written (write errors) or were dropped (queue full).
    pub failures: Arc<AtomicU64>,
}

impl AuditLog {
    /// Starts the writer for `settings` (its path relative to `state_dir`).
    pub fn start(settings: &AuditSettings, state_dir: &Path) -> AuditLog {
        let failures = Arc::new(AtomicU64::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let handled = Arc::new(AtomicU64::new(0));
        let mut redact: Vec<String> = SENSITIVE.iter().map(|s| s.to_string()).collect();
        redact.extend(settings.redact.iter().map(|s| s.to_ascii_lowercase()));
        let mut log = AuditLog {
            tx: None,
            redact,
            refuse_on_failure: settings.refuse_on_failure,
            failing: Arc::clone(&failing),
            failures: Arc::clone(&failures),
            queued: AtomicU64::new(0),
            handled: Arc::clone(&handled),
        };
        if !settings.enabled {
            return log;
        }
        let path = state_dir.join(&settings.path);
        let (tx, rx) = channel::<String>();
        let writer = Writer {
            path,
            max_bytes: settings.max_bytes,
            keep: settings.keep,
            file: None,
            size: 0,
            failures,
            failing,
            handled,
            last_complaint: None,
        };
        match std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                let mut writer = writer;
                crate::resilient::restart_on_panic("the audit log writer", || writer.run(&rx));
            }) {
            Ok(_) => log.tx = Some(tx),
            Err(e) => log::error!("cannot start the audit log writer: {e}"),
        }
        log
    }

    /// Whether calls must be refused now (`on_failure: "refuse"` and the log is failing).
    pub fn refuses(&self) -> bool {
        self.refuse_on_failure && self.failing.load(Ordering::SeqCst)
    }

    /// Queues one line; never blocks.
    pub fn record(&self, entry: &Entry<'_>) {
        let Some(tx) = &self.tx else { return };
        let line = Line {
            time: crate::cli::format_time(crate::tokens::now_secs()),
            face: entry.face,
            principal: entry.principal,
            action: entry.action,
            server: entry.server,
            name: entry.name,
            outcome: entry.outcome,
            arguments: entry.arguments.map(|value| Redacted {
                value,
                redact: &self.redact,
            }),
            detail: entry
                .detail
                .map(|d| crate::untrusted::shortened(d, 300).to_string()),
            duration_ms: entry.duration.map(|d| d.as_secs_f64() * 1000.0),
            result_bytes: entry.result_bytes,
        };
        // Written field by field (no map of keys to build and hash: this runs on every call).
        let text = match serde_json::to_string(&line) {
            Ok(text) => text,
            Err(_) => {
                self.failures.fetch_add(1, Ordering::SeqCst);
                return;
            }
        };
        // (The writer may count a line as handled before `queued` counts it: saturate.)
        let waiting = (self.queued.load(Ordering::SeqCst))
            .saturating_sub(self.handled.load(Ordering::SeqCst));
        if waiting >= QUEUE {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return;
        }
        match tx.send(text) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Waits (at most `limit`) until every line queued so far has been written, so that the
    /// last calls before a stop are in the log.
    pub fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.handled.load(Ordering::SeqCst) < self.queued.load(Ordering::SeqCst)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A call's arguments as the audit log shows them: written with the values of sensitive keys
/// replaced, at any depth, straight from the caller's value (no redacted copy is built).
struct Redacted<'a> {
    value: &'a Value,
    redact: &'a [String],
}

impl Redacted<'_> {
    fn is_sensitive(&self, key: &str) -> bool {
        let lower = key.to_ascii_lowercase();
        lower == "key"
            || lower.ends_with("_key")
            || lower.ends_with("-key")
            || self.redact.iter().any(|s| lower.contains(s.as_str()))
    }

    fn nested<'b>(&self, value: &'b Value) -> Redacted<'b>
    where
        Self: 'b,
    {
        Redacted {
            value,
            redact: self.redact,
        }
    }
}

impl Serialize for Redacted<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.value {
            Value::Object(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (key, value) in map {
                    if self.is_sensitive(key) {
                        out.serialize_entry(key, "[redacted]")?;
                    } else {
                        out.serialize_entry(key, &self.nested(value))?;
                    }
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&self.nested(item))?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// About how many bytes `value` takes as JSON, without writing it out (results can be megabytes,
/// and this runs on the worker that answers the call): the length of its strings plus a little
/// for each number and punctuation mark.
pub fn approximate_size(value: &Value) -> usize {
    match value {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|v| approximate_size(v) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| k.len() + 4 + approximate_size(v))
                .sum::<usize>()
        }
    }
}

struct Writer {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<File>,
    size: u64,
    failures: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
    handled: Arc<AtomicU64>,
    last_complaint: Option<Instant>,
}

impl Writer {
    fn run(&mut self, rx: &Receiver<String>) {
        // Lines that queued up while the last ones were written go out in one write, as long
        // as they fit in the current file (a line that does not waits for the next batch).
        let mut batch = String::new();
        let mut held: Option<String> = None;
        loop {
            let first = match held.take() {
                Some(line) => line,
                None => match rx.recv() {
                    Ok(line) => line,
                    Err(_) => return,
                },
            };
            batch.clear();
            batch.push_str(&first);
            batch.push('\n');
            let mut lines = 1;
            let room = self.max_bytes.saturating_sub(self.size) as usize;
            while batch.len() < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(more) if batch.len() + more.len() < room => {
                        batch.push_str(&more);
                        batch.push('\n');
                        lines += 1;
                    }
                    Ok(more) => {
                        held = Some(more);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let written = self.write(&batch);
            self.handled.fetch_add(lines, Ordering::SeqCst);
            match written {
                Ok(()) => self.failing.store(false, Ordering::SeqCst),
                Err(e) => {
                    self.file = None;
                    self.failures.fetch_add(lines, Ordering::SeqCst);
                    self.failing.store(true, Ordering::SeqCst);
                    let due = match self.last_complaint {
                        None => true,
                        Some(at) => at.elapsed() >= Duration::from_secs(60),
                    };
                    if due {
                        log::error!("cannot write the audit log {}: {e}", self.path.display());
                        self.last_complaint = Some(Instant::now());
                    }
                }
            }
            // Not back to waiting on the queue at once: while lines keep coming, the calls that
            // queue them find no writer asleep on it to wake (a futex call and a thread switch
            // per call), and the writer takes them in batches. An idle log still writes its
            // next line at once.
            if held.is_none() {
                std::thread::sleep(BATCH_PAUSE);
            }
        }
    }

    /// Appends `lines` (whole lines, each ending in a newline) with one write.
    fn write(&mut self, lines: &str) -> std::io::Result<()> {
        if self.file.is_some() && self.size + lines.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
            if self.size > 0 && self.size + lines.len() as u64 > self.max_bytes {
                return self.rotate().and_then(|_| self.write(lines));
            }
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        // No buffering in between: a line is in the file when this returns.
        file.write_all(lines.as_bytes())?;
        self.size += lines.len() as u64;
        Ok(())
    }

    /// `audit.log` becomes `audit.log.1`, `.1` becomes `.2`, ... the oldest beyond `keep` goes.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        let _ = std::fs::remove_file(numbered(self.keep));
        for n in (1..self.keep).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mcpgw-audit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn wait_for_lines(path: &Path, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<Value> = std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_line_per_entry_with_secrets_redacted() {
        let dir = dir("lines");
        let settings = AuditSettings {
            redact: vec!["PIN".into()],
            ..AuditSettings::default()
        };
        let log = AuditLog::start(&settings, &dir);
        let arguments = json!({"door": "front", "pin": "1234", "auth": {"api_key": "k", "Password": "p"},
            "list": [{"token": "t"}], "monkey": "ok", "key": "x"});
        log.record(&Entry {
            face: "mcp",
            principal: "kids-tablet",
            action: "tools/call",
            server: "home",
            name: "home__unlock",
            arguments: Some(&arguments),
            outcome: "ok",
            duration: Some(Duration::from_millis(12)),
            result_bytes: Some(40),
            ..Entry::default()
        });
        let lines = wait_for_lines(&dir.join("audit.log"), 1);
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["principal"], "kids-tablet");
        assert_eq!(line["arguments"]["door"], "front");
        assert_eq!(line["arguments"]["monkey"], "ok");
        for pointer in [
            "/pin",
            "/auth/api_key",
            "/auth/Password",
            "/list/0/token",
            "/key",
        ] {
            assert_eq!(
                line["arguments"].pointer(pointer),
                Some(&json!("[redacted]")),
                "{pointer}"
            );
        }
        assert!(line["time"].as_str().is_some() && line["duration_ms"].as_f64() == Some(12.0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flush_waits_until_every_queued_line_is_written() {
        let dir = dir("flush");
        let log = AuditLog::start(&AuditSettings::default(), &dir);
        let entry = Entry {
            face: "mcp",
            principal: "p",
            action: "tools/call",
            name: "t",
            outcome: "ok",
            ..Entry::default()
        };
        // A burst: the writer takes the first line at once, then pauses while the rest queue.
        for _ in 0..50 {
            log.record(&entry);
        }
        log.flush(Duration::from_secs(5));
        let text = std::fs::read_to_string(dir.join("audit.log")).expect("the log");
        assert_eq!(text.lines().count(), 50);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sizes_are_close_to_the_json() {
        let value =
            json!({"content": [{"type": "text", "text": "x".repeat(1000)}], "isError": false});
        let exact = value.to_string().len();
        let estimate = approximate_size(&value);
        assert!(estimate.abs_diff(exact) < 32, "{estimate} vs {exact}");
    }

    #[test]
    fn the_file_rotates_by_size_keeping_old_files() {
        let dir = dir("rotate");
        let settings = AuditSettings {
            max_bytes: 400,
            keep: 2,
            ..AuditSettings::default()
        };
        let log = AuditLog::start(&settings, &dir);
        for i in 0..40 {
            let name = format!("tool_{i}");
            log.record(&Entry {
                action: "tools/call",
                name: &name,
                outcome: "ok",
                ..Entry::default()
            });
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(dir.join("audit.log"))
            .unwrap_or_default()
            .contains("tool_39")
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        for file in ["audit.log", "audit.log.1", "audit.log.2"] {
            let size = std::fs::metadata(dir.join(file))
                .map(|m| m.len())
                .unwrap_or(0);
            assert!(size > 0 && size <= 400, "{file}: {size}");
        }
        assert!(!dir.join("audit.log.3").exists());
        assert_eq!(log.failures.load(Ordering::SeqCst), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_log_that_cannot_be_written_is_counted_and_can_refuse() {
        let dir = dir("failing");
        std::fs::create_dir_all(dir.join("audit.log")).expect("a folder where the file goes");
        let settings = AuditSettings {
            refuse_on_failure: true,
            ..AuditSettings::default()
        };
        let log = AuditLog::start(&settings, &dir);
        log.record(&Entry::default());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !log.refuses() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(log.refuses());
        assert_eq!(log.failures.load(Ordering::SeqCst), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
