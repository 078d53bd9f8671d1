//! Prometheus metrics: the counters the gateway keeps about itself, and `GET /metrics` in the
//! text exposition format 0.0.4.
//!
//! This module owns the [`Metrics`] held by the [`Gateway`](crate::gateway::Gateway)
//! (counters, the call-duration histogram, the series caps), the `"metrics"` config section
//! ([`MetricsSettings`]), the rendering of the text format ([`Metrics::render`]) and the note of
//! the HTTP status each answer went out with ([`note_status`]). It decides nothing about auth:
//! `server.rs` routes and authenticates `/metrics` like `/status`.
//!
//! Where the figures come from:
//! - **HTTP requests** (`mcp_gateway_http_requests_total{face,status}`): every answer is written
//!   by a few helpers (`http_util::respond_json`, `respond_empty`, `respond_bytes`,
//!   `SseStream::start`, the OAuth face's HTML page), always on the worker thread that routes the
//!   request. Each helper notes its status in a thread-local ([`note_status`]); the worker, which
//!   knows the face from the path, takes the note after routing ([`take_status`]) and counts
//!   once. No face has to know about metrics, and no signature changes. A request answered by
//!   nobody (a panic, a handler that returned without answering) is answered 500 by tiny_http
//!   when it is dropped, and is counted as 500. A streamed answer counts when its head is sent
//!   (a long-lived GET stream) or, for a stream the worker writes to the end (an OpenAI
//!   completion), when it ends. Refusals tiny_http makes before a worker sees the request
//!   (too many connections, a head that never arrives) are not counted.
//! - **Calls** (`mcp_gateway_calls_total`, `mcp_gateway_call_duration_seconds`,
//!   `mcp_gateway_confirmations_total`): one hook, [`Metrics::observe`], at the top of
//!   `Gateway::audit_line`, through which every audit entry of a call passes (made, failed or
//!   refused), whether or not the audit log is on.
//! - **Rate limits and failed authentication**: counted by `server.rs` where it refuses them.
//! - **Backends, sessions, audit write failures, the result cache**: read when scraped
//!   ([`View`]).
//!
//! Label values come only from the gateway's own vocabulary (faces, status codes, actions,
//! outcomes, configured server names) or from the catalog: a tool name a client made up is
//! counted as `tool="(unknown)"`. On top of that every labelled family holds at most
//! [`MAX_SERIES`] series; further label sets are added to one series whose labels are all
//! `"(other)"`, so a scrape stays small whatever clients send.

use crate::catalog::Catalog;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Most series one labelled family holds; more are summed into the [`OTHER`] series.
pub const MAX_SERIES: usize = 2000;
/// The `tool` label of a name the catalog does not know.
pub const UNKNOWN: &str = "(unknown)";
/// Every label of the series that takes what is over [`MAX_SERIES`].
pub const OTHER: &str = "(other)";
/// Upper bounds of the call-duration histogram's buckets, in seconds (`+Inf` comes after).
pub const DURATION_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The metrics settings (`"metrics": {...}` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSettings {
    /// Whether `/metrics` answers at all (404 when not).
    pub enabled: bool,
    /// No token needed (for a scraper on loopback; anyone who reaches the port can read it).
    pub public: bool,
    /// When not empty: only these static tokens may scrape (no other token, no OAuth token).
    pub tokens: Vec<String>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            enabled: true,
            public: false,
            tokens: Vec::new(),
        }
    }
}

/// Which part of the gateway answered an HTTP request (the `face` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// `/mcp`.
    Mcp,
    /// `/v1/...`.
    OpenAi,
    /// `/openapi.json` and `/openapi/...`.
    OpenApi,
    /// The OAuth authorization server and its metadata.
    OAuth,
    /// `/health`, `/status`, `/metrics`.
    Status,
    /// The owner's page (`/`, `/owner/...`).
    Owner,
    /// Anything else (404s).
    Other,
}

impl Face {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Face::Mcp => "mcp",
            Face::OpenAi => "openai",
            Face::OpenApi => "openapi",
            Face::OAuth => "oauth",
            Face::Status => "status",
            Face::Owner => "owner",
            Face::Other => "other",
        }
    }
}

thread_local! {
    /// The status of the answer the current worker sent, until the worker takes it.
    static STATUS_SENT: Cell<Option<u16>> = const { Cell::new(None) };
}

/// Notes that this thread is sending an answer with `status` (called by the helpers that write
/// answers; see the module doc).
pub fn note_status(status: u16) {
    STATUS_SENT.with(|s| s.set(Some(status)));
}

/// The status noted on this thread since the last call, if any; clears it.
pub fn take_status() -> Option<u16> {
    STATUS_SENT.with(Cell::take)
}

/// What the result cache reports (`crate::policy::cache`).
pub use crate::policy::cache::CacheStats as CacheFigures;

/// One backend as a scrape shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendFigures {
    /// Its config name.
    pub server: String,
    /// Connected and listed (`up` in `/status`).
    pub up: bool,
    /// Calls made since start.
    pub calls: u64,
    /// Of them, failed ones (down, timeout, transport error; not a backend's JSON-RPC error).
    pub failures: u64,
}

/// What a scrape reads from the running gateway besides the counters kept here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Backends in config order.
    pub backends: Vec<BackendFigures>,
    /// Audit lines that could not be written (or were dropped).
    pub audit_write_failures: u64,
    /// MCP sessions open now.
    pub sessions: u64,
    /// The result cache, when there is one.
    pub cache: Option<CacheFigures>,
}

impl View {
    /// Reads `gateway` now; `sessions` comes from the MCP face, which keeps them.
    pub fn of(gateway: &crate::gateway::Gateway, sessions: u64) -> View {
        View {
            uptime_seconds: gateway.started.elapsed().as_secs_f64(),
            backends: gateway
                .backends()
                .iter()
                .map(|b| {
                    let s = b.status();
                    BackendFigures {
                        server: s.name,
                        up: s.state == crate::backend::State::Up,
                        calls: s.calls,
                        failures: s.failures,
                    }
                })
                .collect(),
            audit_write_failures: gateway.audit.failures.load(Ordering::Relaxed),
            sessions,
            cache: Some(gateway.cache.stats()),
        }
    }
}

/// Counters keyed by their label values, at most [`MAX_SERIES`] series.
#[derive(Debug)]
struct Counters {
    labels: &'static [&'static str],
    cap: usize,
    /// Sorted by label values: found by binary search with the caller's borrowed values, so
    /// counting a request copies no strings (this runs several times per request).
    series: Mutex<Vec<(Vec<String>, u64)>>,
}

impl Counters {
    fn new(labels: &'static [&'static str]) -> Counters {
        Counters::with_cap(labels, MAX_SERIES)
    }

    fn with_cap(labels: &'static [&'static str], cap: usize) -> Counters {
        Counters {
            labels,
            cap,
            series: Mutex::new(Vec::new()),
        }
    }

    fn add(&self, values: &[&str]) {
        debug_assert_eq!(values.len(), self.labels.len());
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let position = |series: &[(Vec<String>, u64)], values: &[&str]| {
            series.binary_search_by(|(key, _)| {
                key.iter().map(String::as_str).cmp(values.iter().copied())
            })
        };
        let over_cap;
        let values = match position(&series, values) {
            Ok(found) => {
                series[found].1 += 1;
                return;
            }
            Err(_) if series.len() < self.cap => values,
            Err(_) => {
                over_cap = vec![OTHER; values.len()];
                &over_cap[..]
            }
        };
        match position(&series, values) {
            Ok(found) => series[found].1 += 1,
            Err(at) => series.insert(at, (values.iter().map(|v| v.to_string()).collect(), 1)),
        }
    }

    fn snapshot(&self) -> Vec<(Vec<String>, u64)> {
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// One histogram series: counts per bucket (not cumulative; rendering sums them), in all, and
/// the sum of what was observed.
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, value: f64) {
        if let Some(i) = DURATION_BUCKETS.iter().position(|bound| value <= *bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += value;
    }
}

/// The gateway's own counters.
#[derive(Debug)]
pub struct Metrics {
    http: Counters,
    calls: Counters,
    confirmations: Counters,
    durations: Mutex<BTreeMap<String, Histogram>>,
    duration_cap: usize,
    rate_limited: [AtomicU64; 2],
    auth_failures: AtomicU64,
    /// The last hour of call durations per backend, for the owner's page.
    pub latency: crate::latency::History,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// All counters at zero.
    pub fn new() -> Metrics {
        Metrics {
            http: Counters::new(&["face", "status"]),
            calls: Counters::new(&["action", "server", "tool", "outcome"]),
            confirmations: Counters::new(&["outcome"]),
            durations: Mutex::new(BTreeMap::new()),
            duration_cap: MAX_SERIES,
            rate_limited: [AtomicU64::new(0), AtomicU64::new(0)],
            auth_failures: AtomicU64::new(0),
            latency: crate::latency::History::new(),
        }
    }

    /// Counts one HTTP answer.
    pub fn count_request(&self, face: Face, status: u16) {
        // Three digits without a String (this runs on every request).
        let digits = [100, 10, 1].map(|place| b'0' + (status / place % 10) as u8);
        self.http
            .add(&[face.as_str(), std::str::from_utf8(&digits).unwrap_or("000")]);
    }

    /// Counts what one audit entry says: a call (`tools/call`, `prompts/get`, `resources/read`,
    /// ...) with its outcome (`ok`, `error`, `refused`) and, when it was made, its duration; or,
    /// for action `confirm`, a confirmation and its outcome. `catalog` tells which tool names
    /// may be labels (see [`tool_label`]).
    pub fn observe(
        &self,
        action: &str,
        server: &str,
        name: &str,
        outcome: &str,
        duration: Option<Duration>,
        catalog: &Catalog,
    ) {
        if action == "confirm" {
            self.confirmations.add(&[outcome]);
            return;
        }
        let tool = tool_label(action, server, name, catalog);
        self.calls.add(&[action, server, tool, outcome]);
        if let Some(duration) = duration {
            self.latency.record(server, duration);
            let mut durations = self.durations.lock().unwrap_or_else(|e| e.into_inner());
            let seconds = duration.as_secs_f64();
            if let Some(histogram) = durations.get_mut(server) {
                histogram.observe(seconds);
            } else {
                let key = if durations.len() < self.duration_cap {
                    server
                } else {
                    OTHER
                };
                durations
                    .entry(key.to_string())
                    .or_default()
                    .observe(seconds);
            }
        }
    }

    /// Counts a request refused by a rate limit: the principal's own (`own`) or the global one.
    pub fn count_rate_limited(&self, own: bool) {
        self.rate_limited[usize::from(!own)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request without a valid bearer token.
    pub fn count_auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition (format 0.0.4) of every family, with `view` for what is read live.
    pub fn render(&self, view: &View) -> String {
        let mut out = Text::default();

        out.family(
            "mcp_gateway_build_info",
            "gauge",
            "Always 1; the version label says which mcp-gateway this is.",
        );
        out.sample(
            "mcp_gateway_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            "1",
        );
        out.family(
            "mcp_gateway_uptime_seconds",
            "gauge",
            "Seconds since the gateway started.",
        );
        out.sample(
            "mcp_gateway_uptime_seconds",
            &[],
            &float(view.uptime_seconds),
        );

        out.family(
            "mcp_gateway_http_requests_total",
            "counter",
            "HTTP requests answered, by face (mcp, openai, oauth, status, other) and status code.",
        );
        out.counters("mcp_gateway_http_requests_total", &self.http);

        out.family(
            "mcp_gateway_calls_total",
            "counter",
            "Tool calls, prompt gets and resource reads, by action, server, tool and outcome (ok, error, refused).",
        );
        out.counters("mcp_gateway_calls_total", &self.calls);

        out.family(
            "mcp_gateway_call_duration_seconds",
            "histogram",
            "Time calls made to a backend (or the gateway's own tools) took, by server.",
        );
        let durations: Vec<(String, Histogram)> = {
            let durations = self.durations.lock().unwrap_or_else(|e| e.into_inner());
            durations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        for (server, histogram) in &durations {
            out.histogram(
                "mcp_gateway_call_duration_seconds",
                &[("server", server)],
                histogram,
            );
        }

        out.family(
            "mcp_gateway_confirmations_total",
            "counter",
            "Confirmations asked of a user, by outcome.",
        );
        out.counters("mcp_gateway_confirmations_total", &self.confirmations);

        out.family(
            "mcp_gateway_rate_limited_total",
            "counter",
            "Requests refused with 429, by the limit that refused them (principal or global).",
        );
        for (i, scope) in ["principal", "global"].into_iter().enumerate() {
            let n = self.rate_limited[i].load(Ordering::Relaxed);
            out.sample(
                "mcp_gateway_rate_limited_total",
                &[("scope", scope)],
                &n.to_string(),
            );
        }
        out.family(
            "mcp_gateway_auth_failures_total",
            "counter",
            "Requests refused with 401: no bearer token, or one that is not valid.",
        );
        let n = self.auth_failures.load(Ordering::Relaxed);
        out.sample("mcp_gateway_auth_failures_total", &[], &n.to_string());
        out.family(
            "mcp_gateway_audit_write_failures_total",
            "counter",
            "Audit lines that could not be written or were dropped.",
        );
        out.sample(
            "mcp_gateway_audit_write_failures_total",
            &[],
            &view.audit_write_failures.to_string(),
        );

        out.family(
            "mcp_gateway_backend_up",
            "gauge",
            "1 when the backend is connected and listed, else 0.",
        );
        for b in &view.backends {
            let up = if b.up { "1" } else { "0" };
            out.sample("mcp_gateway_backend_up", &[("server", &b.server)], up);
        }
        out.family(
            "mcp_gateway_backend_calls_total",
            "counter",
            "Requests sent to the backend since start.",
        );
        for b in &view.backends {
            out.sample(
                "mcp_gateway_backend_calls_total",
                &[("server", &b.server)],
                &b.calls.to_string(),
            );
        }
        out.family(
            "mcp_gateway_backend_failures_total",
            "counter",
            "Requests to the backend that failed (down, timeout, transport), not counting its JSON-RPC errors.",
        );
        for b in &view.backends {
            out.sample(
                "mcp_gateway_backend_failures_total",
                &[("server", &b.server)],
                &b.failures.to_string(),
            );
        }

        out.family(
            "mcp_gateway_sessions",
            "gauge",
            "MCP sessions open (handshake-era clients).",
        );
        out.sample("mcp_gateway_sessions", &[], &view.sessions.to_string());

        let cache = view.cache.unwrap_or_default();
        for (name, kind, help, value) in [
            (
                "mcp_gateway_cache_hits_total",
                "counter",
                "Results answered from the result cache.",
                cache.hits,
            ),
            (
                "mcp_gateway_cache_misses_total",
                "counter",
                "Cacheable calls that went to the backend.",
                cache.misses,
            ),
            (
                "mcp_gateway_cache_entries",
                "gauge",
                "Results in the result cache.",
                cache.entries,
            ),
            (
                "mcp_gateway_cache_bytes",
                "gauge",
                "Size of the results in the result cache.",
                cache.bytes,
            ),
        ] {
            out.family(name, kind, help);
            out.sample(name, &[], &value.to_string());
        }
        out.0
    }
}

/// The `tool` label of a call: the name the client called when the catalog has that tool; for
/// `prompts/get` the prompt's name when the call reached a backend (the catalog routed it, so
/// the name is one the backend lists); `""` for `resources/read` (a URI can be anything a
/// template matches: never a label); else [`UNKNOWN`].
pub fn tool_label<'a>(action: &str, server: &str, name: &'a str, catalog: &Catalog) -> &'a str {
    match action {
        "resources/read" => "",
        "prompts/get" if !server.is_empty() => name,
        _ if catalog.tool(name).is_some() => name,
        _ => UNKNOWN,
    }
}

/// A label value escaped for the text format: `\` `"` and line feeds.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escaped for the text format: `\` and line feeds.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float as the text format writes it (`+Inf`, `-Inf`, `NaN` for the special ones).
fn float(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

/// The exposition being written.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{label}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        self.0.push(' ');
        self.0.push_str(value);
        self.0.push('\n');
    }

    fn counters(&mut self, name: &str, counters: &Counters) {
        for (values, n) in counters.snapshot() {
            let labels: Vec<(&str, &str)> = counters
                .labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            self.sample(name, &labels, &n.to_string());
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, n) in DURATION_BUCKETS.iter().zip(histogram.buckets) {
            cumulative += n;
            let le = float(*bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, &cumulative.to_string());
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, &histogram.count.to_string());
        self.sample(&format!("{name}_sum"), labels, &float(histogram.sum));
        self.sample(
            &format!("{name}_count"),
            labels,
            &histogram.count.to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line that starts with `series` (name and labels as written).
    fn value_of(text: &str, series: &str) -> Option<String> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("line\nnext"), "line\\nnext");
        assert_eq!(escape_label("plain (unknown) é"), "plain (unknown) é");
        let mut text = Text::default();
        text.sample("m", &[("a", "x\"y"), ("b", "\\\n")], "1");
        assert_eq!(text.0, "m{a=\"x\\\"y\",b=\"\\\\\\n\"} 1\n");
        assert_eq!(escape_help("one\\two\nthree"), "one\\\\two\\nthree");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inf_is_the_count() {
        let metrics = Metrics::new();
        let catalog = Catalog::default();
        for ms in [1, 4, 7, 30, 30, 900, 45_000, 120_000] {
            let d = Some(Duration::from_millis(ms));
            metrics.observe("tools/call", "w", "w__add", "ok", d, &catalog);
        }
        let text = metrics.render(&View::default());
        let bucket = |le: &str| {
            value_of(
                &text,
                &format!("mcp_gateway_call_duration_seconds_bucket{{server=\"w\",le=\"{le}\"}}"),
            )
            .and_then(|v| v.parse::<u64>().ok())
        };
        assert_eq!(bucket("0.005"), Some(2));
        assert_eq!(bucket("0.01"), Some(3));
        assert_eq!(bucket("0.025"), Some(3));
        assert_eq!(bucket("0.05"), Some(5));
        assert_eq!(bucket("1"), Some(6));
        assert_eq!(bucket("30"), Some(6));
        assert_eq!(bucket("60"), Some(7));
        assert_eq!(bucket("+Inf"), Some(8));
        let mut last = 0;
        for le in DURATION_BUCKETS.iter().map(|b| float(*b)) {
            let n = bucket(&le).unwrap_or(u64::MAX);
            assert!(n >= last, "bucket {le} is {n}, below {last}");
            last = n;
        }
        assert_eq!(
            value_of(
                &text,
                "mcp_gateway_call_duration_seconds_count{server=\"w\"}"
            ),
            Some("8".into())
        );
        let sum: f64 = value_of(&text, "mcp_gateway_call_duration_seconds_sum{server=\"w\"}")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        assert!((sum - 165.972).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn a_full_family_counts_the_rest_as_other() {
        let counters = Counters::with_cap(&["a", "b"], 3);
        for i in 0..10 {
            counters.add(&[&format!("x{i}"), "y"]);
        }
        counters.add(&["x0", "y"]);
        let snapshot: BTreeMap<Vec<String>, u64> = counters.snapshot().into_iter().collect();
        assert_eq!(snapshot.len(), 4, "{snapshot:?}");
        assert_eq!(snapshot[&vec!["x0".to_string(), "y".to_string()]], 2);
        assert_eq!(snapshot[&vec![OTHER.to_string(), OTHER.to_string()]], 7);
        assert_eq!(snapshot.values().sum::<u64>(), 11);
    }

    #[test]
    fn the_duration_histogram_is_capped_too() {
        let mut metrics = Metrics::new();
        metrics.duration_cap = 2;
        let catalog = Catalog::default();
        for server in ["a", "b", "c", "d"] {
            let d = Some(Duration::from_millis(1));
            metrics.observe("tools/call", server, "t", "ok", d, &catalog);
        }
        let text = metrics.render(&View::default());
        assert_eq!(
            value_of(
                &text,
                "mcp_gateway_call_duration_seconds_count{server=\"(other)\"}"
            ),
            Some("2".into())
        );
        assert!(!text.contains("server=\"c\",le"));
    }

    #[test]
    fn made_up_tool_names_are_not_labels() {
        let metrics = Metrics::new();
        let catalog = Catalog::default();
        metrics.observe("tools/call", "", "evil\"\nname", "refused", None, &catalog);
        metrics.observe("resources/read", "files", "file:///x", "ok", None, &catalog);
        metrics.observe("prompts/get", "notes", "summary", "ok", None, &catalog);
        metrics.observe("confirm", "notes", "x", "declined", None, &catalog);
        let text = metrics.render(&View::default());
        assert!(!text.contains("evil"), "{text}");
        assert_eq!(
            value_of(&text, "mcp_gateway_calls_total{action=\"tools/call\",server=\"\",tool=\"(unknown)\",outcome=\"refused\"}"),
            Some("1".into())
        );
        assert!(text.contains("action=\"resources/read\",server=\"files\",tool=\"\""));
        assert!(text.contains("tool=\"summary\""));
        assert_eq!(
            value_of(
                &text,
                "mcp_gateway_confirmations_total{outcome=\"declined\"}"
            ),
            Some("1".into())
        );
        assert!(!text.contains("action=\"confirm\""));
    }

    #[test]
    fn every_family_has_help_and_type_and_stable_zeros() {
        let metrics = Metrics::new();
        metrics.count_request(Face::Mcp, 200);
        metrics.count_request(Face::Mcp, 200);
        metrics.count_request(Face::Status, 401);
        metrics.count_rate_limited(false);
        metrics.count_auth_failure();
        let view = View {
            uptime_seconds: 1.5,
            backends: vec![BackendFigures {
                server: "w".into(),
                up: true,
                calls: 3,
                failures: 1,
            }],
            audit_write_failures: 2,
            sessions: 4,
            cache: None,
        };
        let text = metrics.render(&view);
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap_or("").to_string());
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                assert!(
                    typed.iter().any(|t| name == t
                        || ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| name.strip_suffix(s) == Some(t.as_str()))),
                    "{line} has no TYPE before it"
                );
            }
        }
        for (series, value) in [
            (
                "mcp_gateway_http_requests_total{face=\"mcp\",status=\"200\"}",
                "2",
            ),
            (
                "mcp_gateway_http_requests_total{face=\"status\",status=\"401\"}",
                "1",
            ),
            ("mcp_gateway_rate_limited_total{scope=\"principal\"}", "0"),
            ("mcp_gateway_rate_limited_total{scope=\"global\"}", "1"),
            ("mcp_gateway_auth_failures_total", "1"),
            ("mcp_gateway_audit_write_failures_total", "2"),
            ("mcp_gateway_backend_up{server=\"w\"}", "1"),
            ("mcp_gateway_backend_calls_total{server=\"w\"}", "3"),
            ("mcp_gateway_backend_failures_total{server=\"w\"}", "1"),
            ("mcp_gateway_sessions", "4"),
            ("mcp_gateway_uptime_seconds", "1.5"),
            ("mcp_gateway_cache_hits_total", "0"),
            ("mcp_gateway_cache_misses_total", "0"),
            ("mcp_gateway_cache_entries", "0"),
            ("mcp_gateway_cache_bytes", "0"),
        ] {
            assert_eq!(value_of(&text, series).as_deref(), Some(value), "{series}");
        }
        assert!(text.ends_with('\n'));
        let cached = View {
            cache: Some(CacheFigures {
                hits: 5,
                misses: 6,
                entries: 7,
                bytes: 8,
            }),
            ..View::default()
        };
        let text = metrics.render(&cached);
        assert_eq!(
            value_of(&text, "mcp_gateway_cache_bytes").as_deref(),
            Some("8")
        );
    }

    #[test]
    fn the_status_note_is_per_thread_and_taken_once() {
        assert_eq!(take_status(), None);
        note_status(404);
        note_status(200);
        let elsewhere = std::thread::spawn(take_status).join().expect("thread");
        assert_eq!(elsewhere, None);
        assert_eq!(take_status(), Some(200));
        assert_eq!(take_status(), None);
    }

    #[test]
    fn floats_are_written_as_the_format_wants() {
        assert_eq!(float(0.005), "0.005");
        assert_eq!(float(1.0), "1");
        assert_eq!(float(60.0), "60");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NAN), "NaN");
    }
}
