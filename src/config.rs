//! The configuration file: reading it, expanding `${ENV}` references, checking every key, and
//! producing the resolved [`Config`] that the rest of the gateway trusts.
//!
//! The file is JSON. Backends sit under `mcpServers` in the format Claude Desktop, Cursor and mcpo
//! already use; gateway keys sit beside it. Checking walks the raw JSON by hand rather than
//! through serde so that *every* problem is reported at once, each with its JSON path and a hint.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Address used when neither the config nor `--listen` names one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// State folder used when the config names none (relative to the config file's folder, or to the
/// current folder when running without a config file).
pub const DEFAULT_STATE_DIR: &str = "mcp-gateway-state";
/// Server name reserved for the gateway's own built-in tools.
pub const BUILTIN_SERVER: &str = "gateway";

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on, `host:port`.
    pub listen: String,
    /// The URL clients use to reach the gateway (behind a proxy or tunnel), without a trailing `/`.
    pub public_url: Option<String>,
    /// Folder for tokens and other state.
    pub state_dir: PathBuf,
    /// Number of worker threads answering requests.
    pub workers: usize,
    /// Size, time and concurrency limits.
    pub limits: Limits,
    /// Extra browser origins allowed to call `/mcp` (loopback origins are always allowed).
    pub allowed_origins: Vec<String>,
    /// Backends, in config order (the order decides who keeps a name on a clash).
    pub servers: Vec<ServerConfig>,
    /// The built-in OAuth authorization server's settings.
    pub oauth: crate::oauth::OAuthSettings,
    /// The OpenAI face's settings.
    pub openai: OpenAiSettings,
    /// The audit log's settings.
    pub audit: crate::audit::AuditSettings,
    /// Named access rules tokens can refer to (`token create NAME --profile P`).
    pub profiles: BTreeMap<String, crate::policy::AccessRule>,
    /// What happens to a `confirm` tool when the client cannot be asked.
    pub confirm_fallback: crate::policy::confirm::Fallback,
    /// `/metrics`: on or off, and who may read it.
    pub metrics: crate::metrics::MetricsSettings,
    /// The owner's page at `/`: on or off, and how long a sign-in lasts.
    pub owner: crate::face::owner::OwnerSettings,
    /// Tool search and the `search` tool view (`"tool_search": {...}`).
    pub tool_search: ToolSearchSettings,
    /// Where the config came from, for messages.
    pub source: Option<PathBuf>,
}

/// Size, time and concurrency limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body accepted (bigger is HTTP 413).
    pub max_body_bytes: usize,
    /// Default time a backend call may take, unless the server sets `timeout_ms`.
    pub call_timeout: Duration,
    /// Read/write timeout on client sockets: a stalled client is dropped after this.
    pub io_timeout: Duration,
    /// Items per page in our list results (`nextCursor` beyond).
    pub page_size: usize,
    /// Calls in flight at once per backend; further calls wait, then fail.
    pub max_calls_per_backend: usize,
    /// How often backends' lists are fetched again even without a change notification.
    pub refresh_interval: Duration,
    /// A request's head and body must arrive within this, counted from its first byte (HTTP 408
    /// after), so a client that trickles bytes cannot hold a connection for long.
    pub request_timeout: Duration,
    /// Connections open at once; more get HTTP 503.
    pub max_connections: usize,
    /// Connections open at once from one address (an IPv6 /64); more get HTTP 503.
    pub max_connections_per_address: usize,
    /// Requests a minute each principal may make (`None`: no limit), with its burst.
    pub principal_rate: Option<crate::policy::ratelimit::Rate>,
    /// Requests a minute all principals together may make (`None`: no limit), with its burst.
    pub global_rate: Option<crate::policy::ratelimit::Rate>,
    /// Results the result cache holds at most.
    pub cache_max_entries: usize,
    /// Bytes the result cache holds at most.
    pub cache_max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            call_timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(30),
            page_size: 500,
            max_calls_per_backend: 4,
            refresh_interval: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_connections_per_address: 64,
            principal_rate: None,
            global_rate: None,
            cache_max_entries: 1000,
            cache_max_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The OpenAI face's settings (`"openai": {...}`).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiSettings {
    /// Browser origins allowed to call `/v1` and the OpenAPI face directly; `*` for any.
    pub cors_origins: Vec<String>,
    /// The OpenAI-compatible LLM the tool loop talks to (none: only the built-in model).
    pub upstream: Option<UpstreamSettings>,
    /// Put before the conversation's own system message.
    pub system_prompt: Option<String>,
    /// Rounds of tool calls per request before the loop stops.
    pub max_tool_rounds: usize,
    /// Longest tool result (in characters) fed back to the model.
    pub max_tool_result_chars: usize,
    /// Globs of our namespaced tool names offered to the model (empty: all).
    pub tools: Vec<String>,
    /// Stream a short line per executed tool call.
    pub show_tool_calls: bool,
    /// Which tools are offered to the model: all, the search meta-tools, or `auto`.
    pub tool_view: crate::tool_view::OpenAiView,
    /// `auto`'s budget for tool definitions, in tokens estimated as JSON bytes / 4.
    pub max_tool_tokens: usize,
}

/// Tool search settings (`"tool_search": {...}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolSearchSettings {
    /// Globs of tool names (as clients see them) listed as usual in the `search` view.
    pub pinned: Vec<String>,
}

impl Default for OpenAiSettings {
    fn default() -> Self {
        OpenAiSettings {
            cors_origins: Vec::new(),
            upstream: None,
            system_prompt: None,
            max_tool_rounds: 8,
            max_tool_result_chars: 20_000,
            tools: Vec::new(),
            show_tool_calls: false,
            tool_view: crate::tool_view::OpenAiView::Full,
            max_tool_tokens: 4000,
        }
    }
}

/// An OpenAI-compatible LLM server.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    /// Its URL, ending in `/v1`.
    pub base_url: String,
    /// Its API key, if it wants one.
    pub api_key: Option<String>,
    /// Only these models are offered (empty: all the upstream lists).
    pub models: Vec<String>,
    /// Time to connect and to the first byte of an answer.
    pub timeout: Duration,
}

/// One backend from `mcpServers`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The key under `mcpServers`; the prefix of its tool names.
    pub name: String,
    /// How to reach it.
    pub transport: TransportConfig,
    /// Time one call may take.
    pub timeout: Duration,
    /// False: declared but not started.
    pub enabled: bool,
    /// Tool name globs to expose (empty: all).
    pub tools_allow: Vec<String>,
    /// Tool name globs to hide (applied after `allow`).
    pub tools_deny: Vec<String>,
    /// How its tool and prompt names are shown to clients.
    pub naming: Naming,
    /// Globs of its own tool names that need the user's confirmation before each call.
    pub confirm: Vec<String>,
    /// Globs of its own tool names that count as read-only even without `readOnlyHint`.
    pub read_only_tools: Vec<String>,
    /// How long results of its read-only tools are kept (`None`: not cached).
    pub cache_ttl: Option<Duration>,
}

/// How one backend's tool and prompt names are shown to clients (`prefix`, `rename`,
/// `description`, `hide` in its `mcpServers` entry). Keys are always the backend's own names;
/// resources are never renamed.
#[derive(Debug, Clone, PartialEq)]
pub struct Naming {
    /// Put before every name with `__` between; `""` shows the names as they are.
    pub prefix: String,
    /// Original name to the name shown instead (the prefix still goes in front).
    pub rename: BTreeMap<String, String>,
    /// Original name to the `description` shown instead of the backend's.
    pub descriptions: BTreeMap<String, String>,
    /// Globs of original names that are neither listed nor callable.
    pub hide: Vec<String>,
}

impl Naming {
    /// The default naming of server `name`: `<name>__<tool>`, nothing renamed or hidden.
    pub fn prefixed(name: &str) -> Naming {
        Naming {
            prefix: name.to_string(),
            rename: BTreeMap::new(),
            descriptions: BTreeMap::new(),
            hide: Vec::new(),
        }
    }
}

/// How a backend is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportConfig {
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio {
        /// Program to run.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Environment added to the gateway's own.
        env: Vec<(String, String)>,
        /// Working folder.
        cwd: Option<PathBuf>,
    },
    /// Streamable HTTP (`"type": "streamable-http"` or `"http"`).
    StreamableHttp {
        /// Endpoint URL.
        url: String,
        /// Headers sent on every request (the backend's own credentials).
        headers: Vec<(String, String)>,
    },
    /// The 2024-11-05 HTTP+SSE transport (`"type": "sse"`).
    Sse {
        /// URL of the SSE stream.
        url: String,
        /// Headers sent on every request.
        headers: Vec<(String, String)>,
    },
    /// Only a `url`: try Streamable HTTP, fall back to SSE.
    AutoHttp {
        /// Endpoint URL.
        url: String,
        /// Headers sent on every request.
        headers: Vec<(String, String)>,
    },
}

impl TransportConfig {
    /// Short name for `/status` and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            TransportConfig::Stdio { .. } => "stdio",
            TransportConfig::StreamableHttp { .. } => "streamable-http",
            TransportConfig::Sse { .. } => "sse",
            TransportConfig::AutoHttp { .. } => "http",
        }
    }
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// JSON path, like `$.mcpServers.web.url`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if !self.hint.is_empty() {
            write!(f, " (hint: {})", self.hint)?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read(PathBuf, std::io::Error),
    /// The file is not JSON.
    Syntax(PathBuf, serde_json::Error),
    /// The file is JSON but has problems.
    Invalid(Vec<Problem>),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(p, e) => write!(f, "cannot read config file {}: {e}", p.display()),
            ConfigError::Syntax(p, e) => write!(
                f,
                "config file {} is not valid JSON: {e} (hint: check for a trailing comma or a missing quote near that line)",
                p.display()
            ),
            ConfigError::Invalid(problems) => {
                writeln!(f, "the config has {} problem(s):", problems.len())?;
                for p in problems {
                    writeln!(f, "  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The built-in configuration used when no file is given.
    pub fn embedded_default() -> Config {
        Config {
            listen: DEFAULT_LISTEN.to_string(),
            public_url: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            workers: 8,
            limits: Limits::default(),
            allowed_origins: Vec::new(),
            servers: Vec::new(),
            oauth: crate::oauth::OAuthSettings::default(),
            openai: OpenAiSettings::default(),
            audit: crate::audit::AuditSettings::default(),
            profiles: BTreeMap::new(),
            confirm_fallback: crate::policy::confirm::Fallback::Refuse,
            metrics: crate::metrics::MetricsSettings::default(),
            owner: crate::face::owner::OwnerSettings::default(),
            tool_search: ToolSearchSettings::default(),
            source: None,
        }
    }

    /// Reads and checks the file at `path`, expanding `${NAME}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config =
            Config::parse(&text, &base, &|name| std::env::var(name).ok()).map_err(|e| match e {
                ConfigError::Syntax(_, err) => ConfigError::Syntax(path.to_path_buf(), err),
                other => other,
            })?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Reads the file for commands that only need the gateway's own settings (the state folder):
    /// `${NAME}` references to unset variables read as empty instead of being errors, so that
    /// `token create` works without the backends' secrets in the environment.
    pub fn load_for_state(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config = Config::parse(&text, &base, &|name| {
            Some(std::env::var(name).unwrap_or_default())
        })
        .map_err(|e| match e {
            ConfigError::Syntax(_, err) => ConfigError::Syntax(path.to_path_buf(), err),
            other => other,
        })?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses config text. Relative paths are resolved against `base`; `env` looks up variables.
    pub fn parse(
        text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut raw: Value =
            serde_json::from_str(text).map_err(|e| ConfigError::Syntax(PathBuf::new(), e))?;
        let mut checker = Checker::default();
        expand_env(&mut raw, "$", env, &mut checker);
        let config = checker.config(&raw, base);
        if checker.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(checker.problems))
        }
    }

    /// The origins that may call us from a browser, loopback aside.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        if is_loopback_origin(origin) {
            return true;
        }
        let origin = origin.trim_end_matches('/');
        if let Some(public) = &self.public_url {
            if origin_of(public).eq_ignore_ascii_case(origin) {
                return true;
            }
        }
        self.allowed_origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

fn is_loopback_origin(origin: &str) -> bool {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        rest.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Replaces `${NAME}` in every string value.
fn expand_env(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    checker: &mut Checker,
) {
    match value {
        Value::String(s) if s.contains("${") => match expand_string(s, env) {
            Ok(expanded) => *s = expanded,
            Err(name) => checker.problem(
                path,
                format!("environment variable {name} is not set"),
                format!(
                    "export {name}=... before starting the gateway, or put the value in the file"
                ),
            ),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, &format!("{path}[{i}]"), env, checker);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                expand_env(item, &join_path(path, key), env, checker);
            }
        }
        _ => {}
    }
}

/// Expands `${NAME}` references; `Err(name)` for the first unset variable.
pub fn expand_string(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if is_env_name(&after[..end]) => {
                let name = &after[..end];
                out.push_str(&env(name).ok_or_else(|| name.to_string())?);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `path.key`, or `path["key"]` when the key has characters a plain path cannot show.
pub(crate) fn join_path(path: &str, key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !key.is_empty()
    {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_string()))
    }
}

/// Collects problems while reading the raw JSON.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

const OAUTH_KEYS: &[&str] = &[
    "allow_registration",
    "access_token_ttl_secs",
    "refresh_token_ttl_secs",
    "code_ttl_secs",
    "trust_forwarded_headers",
    "refresh_grace_secs",
    "tool_view",
];
const OPENAI_KEYS: &[&str] = &[
    "cors_origins",
    "upstream",
    "system_prompt",
    "max_tool_rounds",
    "max_tool_result_chars",
    "tools",
    "show_tool_calls",
    "tool_view",
    "max_tool_tokens",
];
const UPSTREAM_KEYS: &[&str] = &["base_url", "api_key", "models", "timeout_ms"];
const AUDIT_KEYS: &[&str] = &[
    "enabled",
    "path",
    "max_bytes",
    "keep",
    "redact",
    "on_failure",
];
const METRICS_KEYS: &[&str] = &["enabled", "public", "tokens"];
const OWNER_KEYS: &[&str] = &["enabled", "session_idle_secs", "session_max_secs"];
const TOOL_SEARCH_KEYS: &[&str] = &["pinned"];
const TOP_KEYS: &[&str] = &[
    "owner",
    "tool_search",
    "audit",
    "profiles",
    "confirm_fallback",
    "metrics",
    "openai",
    "oauth",
    "mcpServers",
    "listen",
    "public_url",
    "state_dir",
    "workers",
    "limits",
    "allowed_origins",
];
const LIMIT_KEYS: &[&str] = &[
    "max_body_bytes",
    "call_timeout_ms",
    "io_timeout_ms",
    "page_size",
    "max_calls_per_backend",
    "refresh_interval_secs",
    "request_timeout_ms",
    "max_connections",
    "max_connections_per_address",
    "principal_requests_per_minute",
    "principal_burst",
    "global_requests_per_minute",
    "global_burst",
    "cache_max_entries",
    "cache_max_bytes",
];
const PROFILE_KEYS: &[&str] = &["servers", "allow", "deny", "read_only"];
const STDIO_KEYS: &[&str] = &[
    "command",
    "args",
    "env",
    "cwd",
    "type",
    "timeout_ms",
    "enabled",
    "tools",
    "disabled",
    "prefix",
    "rename",
    "description",
    "hide",
    "confirm",
    "read_only_tools",
    "cache_ttl_secs",
];
const HTTP_KEYS: &[&str] = &[
    "url",
    "type",
    "headers",
    "timeout_ms",
    "enabled",
    "tools",
    "disabled",
    "prefix",
    "rename",
    "description",
    "hide",
    "confirm",
    "read_only_tools",
    "cache_ttl_secs",
];
const TOOLS_KEYS: &[&str] = &["allow", "deny"];

impl Checker {
    fn problem(&mut self, path: &str, message: impl Into<String>, hint: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            message: message.into(),
            hint: hint.into(),
        });
    }

    fn unknown_keys(&mut self, map: &Map<String, Value>, path: &str, known: &[&str]) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let hint = match closest(key, known) {
                    Some(k) => format!("did you mean \"{k}\"?"),
                    None => format!("known keys here: {}", known.join(", ")),
                };
                self.problem(&join_path(path, key), "unknown key", hint);
            }
        }
    }

    fn string(&mut self, map: &Map<String, Value>, path: &str, key: &str) -> Option<String> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.problem(
                    &join_path(path, key),
                    format!("expected a string, found {}", kind(other)),
                    "put the value in double quotes",
                );
                None
            }
        }
    }

    fn number(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => Some(v),
                _ => {
                    self.problem(
                        &join_path(path, key),
                        format!("{n} is out of range"),
                        format!("use a whole number from {min} to {max}"),
                    );
                    None
                }
            },
            Some(other) => {
                self.problem(
                    &join_path(path, key),
                    format!("expected a number, found {}", kind(other)),
                    format!("use a whole number from {min} to {max}, without quotes"),
                );
                None
            }
        }
    }

    fn boolean(&mut self, map: &Map<String, Value>, path: &str, key: &str) -> Option<bool> {
        match map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.problem(
                    &join_path(path, key),
                    format!("expected true or false, found {}", kind(other)),
                    "write true or false without quotes",
                );
                None
            }
        }
    }

    fn string_list(&mut self, map: &Map<String, Value>, path: &str, key: &str) -> Vec<String> {
        let item_path = join_path(path, key);
        match map.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => self.problem(
                            &format!("{item_path}[{i}]"),
                            format!("expected a string, found {}", kind(other)),
                            "every entry of this list is a string",
                        ),
                    }
                }
                out
            }
            Some(other) => {
                self.problem(
                    &item_path,
                    format!("expected a list of strings, found {}", kind(other)),
                    "write [\"a\", \"b\"]",
                );
                Vec::new()
            }
        }
    }

    /// An object of strings (`"env"`, `"headers"`); numbers and booleans are taken as their
    /// text, as shells and other tools write them.
    fn string_map(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Vec<(String, String)> {
        self.checked_string_map(map, path, key, false)
    }

    /// An object whose values must all be strings (`"rename"`, `"description"`): each other
    /// value is a problem naming its path.
    fn strict_string_map(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
    ) -> Vec<(String, String)> {
        self.checked_string_map(map, path, key, true)
    }

    fn checked_string_map(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        strict: bool,
    ) -> Vec<(String, String)> {
        let map_path = join_path(path, key);
        let (value_hint, object_hint) = if strict {
            (
                "values here are strings in double quotes",
                "write {\"backend_name\": \"...\"}, keyed by the backend's own tool or prompt names",
            )
        } else {
            ("values here are strings", "write {\"NAME\": \"value\"}")
        };
        match map.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(entries)) => {
                let mut out = Vec::new();
                for (k, v) in entries {
                    match v {
                        Value::String(s) => out.push((k.clone(), s.clone())),
                        Value::Number(n) if !strict => out.push((k.clone(), n.to_string())),
                        Value::Bool(b) if !strict => out.push((k.clone(), b.to_string())),
                        other => self.problem(
                            &join_path(&map_path, k),
                            format!("expected a string, found {}", kind(other)),
                            value_hint,
                        ),
                    }
                }
                out
            }
            Some(other) => {
                self.problem(
                    &map_path,
                    format!("expected an object, found {}", kind(other)),
                    object_hint,
                );
                Vec::new()
            }
        }
    }

    fn config(&mut self, raw: &Value, base: &Path) -> Config {
        let mut config = Config::embedded_default();
        let Some(top) = raw.as_object() else {
            self.problem(
                "$",
                format!("expected an object, found {}", kind(raw)),
                "the file must be a JSON object like {\"mcpServers\": {}}",
            );
            return config;
        };
        self.unknown_keys(top, "$", TOP_KEYS);
        if let Some(listen) = self.string(top, "$", "listen") {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                self.problem(
                    "$.listen",
                    format!("\"{listen}\" is not an address with a port"),
                    "write it like \"127.0.0.1:8080\" or \"0.0.0.0:8080\"",
                );
            }
            config.listen = listen;
        }
        if let Some(url) = self.string(top, "$", "public_url") {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                self.problem(
                    "$.public_url",
                    "must start with http:// or https://",
                    "use the URL clients type, e.g. \"https://gateway.example.net\"",
                );
            }
            config.public_url = Some(url.trim_end_matches('/').to_string());
        }
        if let Some(dir) = self.string(top, "$", "state_dir") {
            if dir.is_empty() {
                self.problem(
                    "$.state_dir",
                    "must not be empty",
                    "name a folder the gateway may write, e.g. \"/var/lib/mcp-gateway\"",
                );
            }
            config.state_dir = PathBuf::from(dir);
        }
        if config.state_dir.is_relative() {
            config.state_dir = base.join(&config.state_dir);
        }
        if let Some(workers) = self.number(top, "$", "workers", 1, 256) {
            config.workers = workers as usize;
        }
        config.allowed_origins = self.string_list(top, "$", "allowed_origins");
        match top.get("limits") {
            None | Some(Value::Null) => {}
            Some(Value::Object(limits)) => self.limits(limits, &mut config.limits),
            Some(other) => self.problem(
                "$.limits",
                format!("expected an object, found {}", kind(other)),
                "write {\"max_body_bytes\": 4194304}",
            ),
        }
        match top.get("openai") {
            None | Some(Value::Null) => {}
            Some(Value::Object(openai)) => self.openai(openai, base, &mut config.openai),
            Some(other) => self.problem(
                "$.openai",
                format!("expected an object, found {}", kind(other)),
                "write {\"cors_origins\": [\"https://chat.example.net\"]}",
            ),
        }
        match top.get("audit") {
            None | Some(Value::Null) => {}
            Some(Value::Object(audit)) => self.audit(audit, &mut config.audit),
            Some(other) => self.problem(
                "$.audit",
                format!("expected an object, found {}", kind(other)),
                "write {\"path\": \"audit.log\"}",
            ),
        }
        match top.get("metrics") {
            None | Some(Value::Null) => {}
            Some(Value::Object(metrics)) => self.metrics(metrics, &mut config.metrics),
            Some(other) => self.problem(
                "$.metrics",
                format!("expected an object, found {}", kind(other)),
                "write {\"enabled\": true, \"public\": false}",
            ),
        }
        match top.get("owner") {
            None | Some(Value::Null) => {}
            Some(Value::Object(owner)) => self.owner(owner, &mut config.owner),
            Some(other) => self.problem(
                "$.owner",
                format!("expected an object, found {}", kind(other)),
                "write {\"enabled\": true, \"session_idle_secs\": 43200}",
            ),
        }
        match top.get("tool_search") {
            None | Some(Value::Null) => {}
            Some(Value::Object(search)) => {
                self.unknown_keys(search, "$.tool_search", TOOL_SEARCH_KEYS);
                config.tool_search.pinned = self.string_list(search, "$.tool_search", "pinned");
            }
            Some(other) => self.problem(
                "$.tool_search",
                format!("expected an object, found {}", kind(other)),
                "write {\"pinned\": [\"homeassistant__HassTurn*\"]}",
            ),
        }
        match top.get("oauth") {
            None | Some(Value::Null) => {}
            Some(Value::Object(oauth)) => self.oauth(oauth, &mut config.oauth),
            Some(other) => self.problem(
                "$.oauth",
                format!("expected an object, found {}", kind(other)),
                "write {\"allow_registration\": true}",
            ),
        }
        match top.get("mcpServers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(servers)) => {
                for (name, entry) in servers {
                    if let Some(server) = self.server(name, entry, base, config.limits.call_timeout)
                    {
                        config.servers.push(server);
                    }
                }
            }
            Some(other) => self.problem(
                "$.mcpServers",
                format!("expected an object, found {}", kind(other)),
                "write {\"name\": {\"command\": \"...\"}}",
            ),
        }
        match top.get("profiles") {
            None | Some(Value::Null) => {}
            Some(Value::Object(profiles)) => {
                config.profiles = self.profiles(profiles, &config.servers)
            }
            Some(other) => self.problem(
                "$.profiles",
                format!("expected an object, found {}", kind(other)),
                "write {\"kids\": {\"servers\": [\"home\"], \"read_only\": true}}",
            ),
        }
        match self.string(top, "$", "confirm_fallback").as_deref() {
            None | Some("refuse") => {}
            Some("allow") => config.confirm_fallback = crate::policy::confirm::Fallback::Allow,
            Some(other) => self.problem(
                "$.confirm_fallback",
                format!("\"{other}\" is not a fallback"),
                "use \"refuse\" (the default: a client that cannot confirm cannot call confirm tools) or \"allow\"",
            ),
        }
        config
    }

    fn limits(&mut self, map: &Map<String, Value>, limits: &mut Limits) {
        let path = "$.limits";
        self.unknown_keys(map, path, LIMIT_KEYS);
        if let Some(v) = self.number(map, path, "max_body_bytes", 1024, 1 << 30) {
            limits.max_body_bytes = v as usize;
        }
        if let Some(v) = self.number(map, path, "call_timeout_ms", 100, 3_600_000) {
            limits.call_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.number(map, path, "io_timeout_ms", 100, 3_600_000) {
            limits.io_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.number(map, path, "page_size", 1, 100_000) {
            limits.page_size = v as usize;
        }
        if let Some(v) = self.number(map, path, "max_calls_per_backend", 1, 1024) {
            limits.max_calls_per_backend = v as usize;
        }
        if let Some(v) = self.number(map, path, "refresh_interval_secs", 5, 86_400) {
            limits.refresh_interval = Duration::from_secs(v);
        }
        if let Some(v) = self.number(map, path, "request_timeout_ms", 100, 3_600_000) {
            limits.request_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.number(map, path, "max_connections", 1, 1_000_000) {
            limits.max_connections = v as usize;
        }
        if let Some(v) = self.number(map, path, "max_connections_per_address", 1, 1_000_000) {
            limits.max_connections_per_address = v as usize;
        }
        use crate::policy::ratelimit::Rate;
        let principal_burst = self.number(map, path, "principal_burst", 1, 1_000_000);
        limits.principal_rate = self
            .number(map, path, "principal_requests_per_minute", 1, 6_000_000)
            .map(|r| Rate::new(r, principal_burst));
        let global_burst = self.number(map, path, "global_burst", 1, 1_000_000);
        limits.global_rate = self
            .number(map, path, "global_requests_per_minute", 1, 6_000_000)
            .map(|r| Rate::new(r, global_burst));
        if let Some(v) = self.number(map, path, "cache_max_entries", 0, 1_000_000) {
            limits.cache_max_entries = v as usize;
        }
        if let Some(v) = self.number(map, path, "cache_max_bytes", 0, 1 << 32) {
            limits.cache_max_bytes = v as usize;
        }
    }

    /// `"profiles": {"kids": {"servers": [...], "allow": [...], "deny": [...], "read_only": true}}`.
    fn profiles(
        &mut self,
        map: &Map<String, Value>,
        servers: &[ServerConfig],
    ) -> BTreeMap<String, crate::policy::AccessRule> {
        let mut profiles = BTreeMap::new();
        for (name, entry) in map {
            let path = join_path("$.profiles", name);
            let Some(fields) = entry.as_object() else {
                self.problem(
                    &path,
                    format!("expected an object, found {}", kind(entry)),
                    "write {\"servers\": [\"home\"], \"deny\": [\"*unlock*\"], \"read_only\": true}",
                );
                continue;
            };
            self.unknown_keys(fields, &path, PROFILE_KEYS);
            let listed = fields
                .get("servers")
                .map(|_| self.string_list(fields, &path, "servers"));
            for server in listed.iter().flatten() {
                if !servers.iter().any(|s| &s.name == server) {
                    self.problem(
                        &join_path(&path, "servers"),
                        format!("no server named \"{server}\" under mcpServers"),
                        "list names of mcpServers entries",
                    );
                }
            }
            profiles.insert(
                name.clone(),
                crate::policy::AccessRule {
                    servers: listed,
                    allow: self.string_list(fields, &path, "allow"),
                    deny: self.string_list(fields, &path, "deny"),
                    read_only: self.boolean(fields, &path, "read_only").unwrap_or(false),
                },
            );
        }
        profiles
    }

    fn openai(&mut self, map: &Map<String, Value>, base: &Path, openai: &mut OpenAiSettings) {
        let path = "$.openai";
        self.unknown_keys(map, path, OPENAI_KEYS);
        openai.cors_origins = self.string_list(map, path, "cors_origins");
        openai.tools = self.string_list(map, path, "tools");
        if let Some(v) = self.boolean(map, path, "show_tool_calls") {
            openai.show_tool_calls = v;
        }
        if let Some(v) = self.number(map, path, "max_tool_rounds", 1, 100) {
            openai.max_tool_rounds = v as usize;
        }
        if let Some(v) = self.number(map, path, "max_tool_result_chars", 100, 10_000_000) {
            openai.max_tool_result_chars = v as usize;
        }
        if let Some(v) = self.number(map, path, "max_tool_tokens", 100, 10_000_000) {
            openai.max_tool_tokens = v as usize;
        }
        if let Some(text) = self.string(map, path, "tool_view") {
            match crate::tool_view::OpenAiView::parse(&text) {
                Some(view) => openai.tool_view = view,
                None => self.problem(
                    "$.openai.tool_view",
                    format!("\"{text}\" is not a tool view"),
                    "use \"full\" (every tool), \"search\" (the search and call meta-tools) or \"auto\" (every tool while they fit in max_tool_tokens)",
                ),
            }
        }
        match map.get("system_prompt") {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => openai.system_prompt = Some(text.clone()),
            Some(Value::Object(file)) => {
                let at = "$.openai.system_prompt";
                self.unknown_keys(file, at, &["file"]);
                if let Some(name) = self.string(file, at, "file") {
                    let file_path = if Path::new(&name).is_relative() {
                        base.join(&name)
                    } else {
                        PathBuf::from(&name)
                    };
                    match std::fs::read_to_string(&file_path) {
                        Ok(text) => openai.system_prompt = Some(text),
                        Err(e) => self.problem(
                            &format!("{at}.file"),
                            format!("cannot read {}: {e}", file_path.display()),
                            "give the path of a text file (relative to the config file)",
                        ),
                    }
                }
            }
            Some(other) => self.problem(
                "$.openai.system_prompt",
                format!(
                    "expected a string or {{\"file\": ...}}, found {}",
                    kind(other)
                ),
                "write the prompt, or {\"file\": \"prompt.txt\"}",
            ),
        }
        match map.get("upstream") {
            None | Some(Value::Null) => {}
            Some(Value::Object(up)) => {
                let at = "$.openai.upstream";
                self.unknown_keys(up, at, UPSTREAM_KEYS);
                let base_url = self.string(up, at, "base_url").unwrap_or_default();
                if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                    self.problem(&format!("{at}.base_url"), format!("\"{base_url}\" is not an http:// or https:// URL"), "the server's OpenAI base URL, e.g. \"http://127.0.0.1:11434/v1\" for Ollama");
                }
                let timeout = self
                    .number(up, at, "timeout_ms", 100, 3_600_000)
                    .map(Duration::from_millis)
                    .unwrap_or(Duration::from_secs(60));
                openai.upstream = Some(UpstreamSettings {
                    base_url,
                    api_key: self.string(up, at, "api_key"),
                    models: self.string_list(up, at, "models"),
                    timeout,
                });
            }
            Some(other) => self.problem(
                "$.openai.upstream",
                format!("expected an object, found {}", kind(other)),
                "write {\"base_url\": \"http://127.0.0.1:11434/v1\"}",
            ),
        }
    }

    fn audit(&mut self, map: &Map<String, Value>, audit: &mut crate::audit::AuditSettings) {
        let path = "$.audit";
        self.unknown_keys(map, path, AUDIT_KEYS);
        if let Some(v) = self.boolean(map, path, "enabled") {
            audit.enabled = v;
        }
        if let Some(v) = self.string(map, path, "path") {
            audit.path = PathBuf::from(v);
        }
        if let Some(v) = self.number(map, path, "max_bytes", 4096, 1 << 40) {
            audit.max_bytes = v;
        }
        if let Some(v) = self.number(map, path, "keep", 0, 100) {
            audit.keep = v as usize;
        }
        audit.redact = self.string_list(map, path, "redact");
        match self.string(map, path, "on_failure").as_deref() {
            None | Some("continue") => {}
            Some("refuse") => audit.refuse_on_failure = true,
            Some(other) => self.problem(
                "$.audit.on_failure",
                format!("\"{other}\" is not a choice"),
                "use \"continue\" (count the failure and go on) or \"refuse\" (refuse calls while the log cannot be written)",
            ),
        }
    }

    fn metrics(&mut self, map: &Map<String, Value>, metrics: &mut crate::metrics::MetricsSettings) {
        let path = "$.metrics";
        self.unknown_keys(map, path, METRICS_KEYS);
        if let Some(v) = self.boolean(map, path, "enabled") {
            metrics.enabled = v;
        }
        if let Some(v) = self.boolean(map, path, "public") {
            metrics.public = v;
        }
        metrics.tokens = self.string_list(map, path, "tokens");
        if metrics.public && !metrics.tokens.is_empty() {
            self.problem(
                "$.metrics.tokens",
                "has no effect with \"public\": true (anyone may read /metrics then)",
                "drop \"public\" to let only these tokens scrape, or drop \"tokens\"",
            );
        }
        for (i, name) in metrics.tokens.iter().enumerate() {
            if !crate::tokens::valid_name(name) {
                self.problem(
                    &format!("$.metrics.tokens[{i}]"),
                    format!("\"{name}\" is not a token name"),
                    "list static tokens by the names `mcp-gateway token list` shows (letters, digits, '.', '_', '-')",
                );
            }
        }
    }

    fn owner(&mut self, map: &Map<String, Value>, owner: &mut crate::face::owner::OwnerSettings) {
        let path = "$.owner";
        self.unknown_keys(map, path, OWNER_KEYS);
        if let Some(v) = self.boolean(map, path, "enabled") {
            owner.enabled = v;
        }
        if let Some(v) = self.number(map, path, "session_idle_secs", 1, 86_400 * 30) {
            owner.session_idle = Duration::from_secs(v);
        }
        if let Some(v) = self.number(map, path, "session_max_secs", 1, 86_400 * 30) {
            owner.session_max = Duration::from_secs(v);
        }
    }

    fn oauth(&mut self, map: &Map<String, Value>, oauth: &mut crate::oauth::OAuthSettings) {
        let path = "$.oauth";
        self.unknown_keys(map, path, OAUTH_KEYS);
        if let Some(v) = self.boolean(map, path, "allow_registration") {
            oauth.allow_registration = v;
        }
        if let Some(v) = self.boolean(map, path, "trust_forwarded_headers") {
            oauth.trust_forwarded_headers = v;
        }
        if let Some(v) = self.number(map, path, "access_token_ttl_secs", 1, 86_400 * 30) {
            oauth.access_token_ttl = Duration::from_secs(v);
        }
        if let Some(v) = self.number(map, path, "refresh_token_ttl_secs", 1, 86_400 * 400) {
            oauth.refresh_token_ttl = Duration::from_secs(v);
        }
        if let Some(v) = self.number(map, path, "code_ttl_secs", 1, 600) {
            oauth.code_ttl = Duration::from_secs(v);
        }
        if let Some(v) = self.number(map, path, "refresh_grace_secs", 0, 60) {
            oauth.refresh_grace = Duration::from_secs(v);
        }
        if let Some(text) = self.string(map, path, "tool_view") {
            match crate::tool_view::ToolView::parse(&text) {
                Some(view) => oauth.tool_view = view,
                None => self.problem(
                    "$.oauth.tool_view",
                    format!("\"{text}\" is not a tool view"),
                    "use \"full\" (every tool) or \"search\" (the search and call meta-tools)",
                ),
            }
        }
    }

    fn server(
        &mut self,
        name: &str,
        entry: &Value,
        base: &Path,
        default_timeout: Duration,
    ) -> Option<ServerConfig> {
        let path = join_path("$.mcpServers", name);
        if !valid_server_name(name) {
            self.problem(&path, format!("\"{name}\" is not a usable server name"), "use 1-32 letters, digits, '-' or single '_' (it becomes the tool prefix <name>__tool)");
        } else if name == BUILTIN_SERVER {
            self.problem(
                &path,
                "the name \"gateway\" is reserved for the gateway's own tools",
                "pick another name",
            );
        }
        let Some(map) = entry.as_object() else {
            self.problem(
                &path,
                format!("expected an object, found {}", kind(entry)),
                "write {\"command\": \"...\"} or {\"url\": \"...\"}",
            );
            return None;
        };
        let kind_field = self.string(map, &path, "type");
        let has_command = map.contains_key("command");
        let has_url = map.contains_key("url");
        let transport = match (has_command, has_url) {
            (true, true) => {
                self.problem(
                    &path,
                    "has both \"command\" and \"url\"",
                    "a backend is either a program (command) or a URL, not both",
                );
                return None;
            }
            (false, false) => {
                self.problem(
                    &path,
                    "has neither \"command\" nor \"url\"",
                    "add \"command\" for a local program or \"url\" for an HTTP server",
                );
                return None;
            }
            (true, false) => {
                self.unknown_keys(map, &path, STDIO_KEYS);
                if let Some(t) = &kind_field {
                    if t != "stdio" {
                        self.problem(
                            &join_path(&path, "type"),
                            format!("\"{t}\" does not go with \"command\""),
                            "use \"stdio\" or leave \"type\" out",
                        );
                    }
                }
                let command = self.string(map, &path, "command").unwrap_or_default();
                if command.trim().is_empty() {
                    self.problem(
                        &join_path(&path, "command"),
                        "must not be empty",
                        "name the program to run, e.g. \"npx\" or \"/usr/bin/python3\"",
                    );
                }
                let cwd = self.string(map, &path, "cwd").map(|c| {
                    let p = PathBuf::from(c);
                    if p.is_relative() {
                        base.join(p)
                    } else {
                        p
                    }
                });
                TransportConfig::Stdio {
                    command,
                    args: self.string_list(map, &path, "args"),
                    env: self.string_map(map, &path, "env"),
                    cwd,
                }
            }
            (false, true) => {
                self.unknown_keys(map, &path, HTTP_KEYS);
                let url = self.string(map, &path, "url").unwrap_or_default();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    self.problem(
                        &join_path(&path, "url"),
                        format!("\"{url}\" is not an http:// or https:// URL"),
                        "write the backend's full URL, e.g. \"http://127.0.0.1:8000/mcp\"",
                    );
                }
                let headers = self.string_map(map, &path, "headers");
                match kind_field.as_deref() {
                    None => TransportConfig::AutoHttp { url, headers },
                    Some("streamable-http" | "streamable_http" | "streamableHttp" | "http") => {
                        TransportConfig::StreamableHttp { url, headers }
                    }
                    Some("sse") => TransportConfig::Sse { url, headers },
                    Some(other) => {
                        self.problem(
                            &join_path(&path, "type"),
                            format!("unknown transport type \"{other}\""),
                            "use \"streamable-http\", \"http\" or \"sse\"",
                        );
                        return None;
                    }
                }
            }
        };
        let timeout = self
            .number(map, &path, "timeout_ms", 100, 3_600_000)
            .map(Duration::from_millis)
            .unwrap_or(default_timeout);
        let mut enabled = self.boolean(map, &path, "enabled").unwrap_or(true);
        if self.boolean(map, &path, "disabled") == Some(true) {
            enabled = false;
        }
        let (mut allow, mut deny) = (Vec::new(), Vec::new());
        match map.get("tools") {
            None | Some(Value::Null) => {}
            Some(Value::Object(tools)) => {
                let tools_path = join_path(&path, "tools");
                self.unknown_keys(tools, &tools_path, TOOLS_KEYS);
                allow = self.string_list(tools, &tools_path, "allow");
                deny = self.string_list(tools, &tools_path, "deny");
            }
            Some(other) => self.problem(
                &join_path(&path, "tools"),
                format!("expected an object, found {}", kind(other)),
                "write {\"allow\": [\"get_*\"], \"deny\": [\"delete_*\"]}",
            ),
        }
        Some(ServerConfig {
            name: name.to_string(),
            transport,
            timeout,
            enabled,
            tools_allow: allow,
            tools_deny: deny,
            naming: self.naming(map, &path, name),
            confirm: self.string_list(map, &path, "confirm"),
            read_only_tools: self.string_list(map, &path, "read_only_tools"),
            cache_ttl: self
                .number(map, &path, "cache_ttl_secs", 1, 86_400)
                .map(Duration::from_secs),
        })
    }

    /// The `prefix`, `rename`, `description` and `hide` keys of server `name` at `path`.
    fn naming(&mut self, map: &Map<String, Value>, path: &str, name: &str) -> Naming {
        let mut naming = Naming::prefixed(name);
        if let Some(prefix) = self.string(map, path, "prefix") {
            if !prefix.is_empty() && !valid_server_name(&prefix) {
                self.problem(
                    &join_path(path, "prefix"),
                    format!("\"{prefix}\" is not a usable prefix"),
                    "use 1-32 letters, digits, '-' or single '_' (names become <prefix>__<name>), or \"\" to show the backend's names as they are",
                );
            }
            naming.prefix = prefix;
        }
        for (original, shown) in self.strict_string_map(map, path, "rename") {
            if valid_rename(&shown) {
                naming.rename.insert(original, shown);
            } else {
                self.problem(
                    &join_path(&join_path(path, "rename"), &original),
                    format!("\"{shown}\" is not a usable name"),
                    "use 1-64 letters, digits, '-' or '_' (the prefix, if any, is still put in front)",
                );
            }
        }
        naming.descriptions = self
            .strict_string_map(map, path, "description")
            .into_iter()
            .collect();
        naming.hide = self.string_list(map, path, "hide");
        naming
    }
}

/// A `rename` target: it must already be a valid name clients may see, so that with the prefix
/// `""` it is the exact name shown.
fn valid_rename(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Server names become tool prefixes, so they follow the tool-name alphabet and never contain the
/// `__` separator.
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.contains("__")
        && !name.ends_with('_')
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The known key nearest to a typo, if any is close.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| {
            (
                edit_distance(&key.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cur = row[j + 1];
            row[j + 1] = if ca == b[j] {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Environment as a map, for tests and `check-config`.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/gw"), &|name| {
            (name == "HA_TOKEN").then(|| "secret-value".to_string())
        })
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text) {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn claude_desktop_format_is_accepted_as_is() {
        let config = parse(
            r#"{"mcpServers": {
                "files": {"command": "npx", "args": ["-y", "server-filesystem", "/tmp"], "env": {"A": "1"}},
                "ha": {"url": "http://127.0.0.1:8123/api/mcp", "type": "http", "headers": {"Authorization": "Bearer ${HA_TOKEN}"}},
                "old": {"url": "http://127.0.0.1:9000/sse", "type": "sse"},
                "cursor": {"url": "http://127.0.0.1:9001/mcp"}
            }}"#,
        )
        .expect("valid");
        assert_eq!(config.servers.len(), 4);
        assert_eq!(config.servers[0].name, "files");
        assert!(
            matches!(&config.servers[0].transport, TransportConfig::Stdio { command, args, .. } if command == "npx" && args.len() == 3)
        );
        match &config.servers[1].transport {
            TransportConfig::StreamableHttp { headers, .. } => {
                assert_eq!(headers[0].1, "Bearer secret-value")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(config.servers[2].transport.kind(), "sse");
        assert_eq!(config.servers[3].transport.kind(), "http");
        assert_eq!(config.state_dir, Path::new("/etc/gw/mcp-gateway-state"));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let found = problems(
            r#"{"lisen": "x", "workers": "8", "limits": {"max_body_bytes": 5},
                "mcpServers": {"web": {"urll": "http://x"}, "a__b": {"command": "x"},
                               "ha": {"url": "http://x", "headers": {"Authorization": "Bearer ${MISSING_VAR}"}}}}"#,
        );
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"$.lisen"), "{paths:?}");
        assert!(paths.contains(&"$.workers"), "{paths:?}");
        assert!(paths.contains(&"$.limits.max_body_bytes"), "{paths:?}");
        assert!(paths.contains(&"$.mcpServers.web"), "{paths:?}");
        assert!(paths.contains(&"$.mcpServers.a__b"), "{paths:?}");
        assert!(
            paths.contains(&"$.mcpServers.ha.headers.Authorization"),
            "{paths:?}"
        );
        let typo = found
            .iter()
            .find(|p| p.path == "$.lisen")
            .expect("typo reported");
        assert!(typo.hint.contains("listen"), "{typo}");
        let env = found
            .iter()
            .find(|p| p.path.ends_with("Authorization"))
            .expect("env reported");
        assert!(env.message.contains("MISSING_VAR"));
    }

    #[test]
    fn tool_views_and_pinned_tools_are_read_and_checked() {
        let config = parse(
            r#"{"tool_search": {"pinned": ["ha__HassTurn*"]}, "oauth": {"tool_view": "search"},
                "openai": {"tool_view": "auto", "max_tool_tokens": 2000}}"#,
        )
        .expect("valid");
        assert_eq!(config.tool_search.pinned, ["ha__HassTurn*"]);
        assert_eq!(config.oauth.tool_view, crate::tool_view::ToolView::Search);
        assert_eq!(config.openai.tool_view, crate::tool_view::OpenAiView::Auto);
        assert_eq!(config.openai.max_tool_tokens, 2000);
        let defaults = parse("{}").expect("valid");
        assert_eq!(
            defaults.openai.tool_view,
            crate::tool_view::OpenAiView::Full
        );
        assert!(defaults.tool_search.pinned.is_empty());
        let found = problems(
            r#"{"tool_search": {"pin": []}, "oauth": {"tool_view": "auto"}, "openai": {"tool_view": "small"}}"#,
        );
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.openai.tool_view",
                "$.tool_search.pin",
                "$.oauth.tool_view"
            ]
        );
    }

    #[test]
    fn unknown_key_inside_a_server_is_an_error() {
        let found = problems(r#"{"mcpServers": {"web": {"url": "http://x", "timeout": 5}}}"#);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "$.mcpServers.web.timeout");
        assert!(found[0].hint.contains("timeout_ms"));
    }

    #[test]
    fn syntax_errors_are_not_problems_lists() {
        assert!(matches!(
            parse("{\"mcpServers\": {},}"),
            Err(ConfigError::Syntax(..))
        ));
    }

    #[test]
    fn env_expansion_leaves_other_dollars_alone() {
        let env = |n: &str| (n == "X").then(|| "1".to_string());
        assert_eq!(expand_string("a${X}b", &env), Ok("a1b".to_string()));
        assert_eq!(
            expand_string("$5 ${ not} ${X}", &env),
            Ok("$5 ${ not} 1".to_string())
        );
        assert_eq!(expand_string("${NOPE}", &env), Err("NOPE".to_string()));
    }

    #[test]
    fn naming_keys_are_read_with_their_defaults() {
        let config = parse(
            r#"{"mcpServers": {
                "plain": {"url": "http://x"},
                "bare": {"command": "x", "prefix": "", "hide": ["slow_*", "debug"],
                         "rename": {"forecast": "weather_forecast", "light.on": "light_on"},
                         "description": {"forecast": "Tomorrow, in one line."}},
                "short": {"url": "http://y", "prefix": "w-2"}
            }}"#,
        )
        .expect("valid");
        assert_eq!(config.servers[0].naming, Naming::prefixed("plain"));
        let bare = &config.servers[1].naming;
        assert_eq!(bare.prefix, "");
        assert_eq!(bare.hide, ["slow_*", "debug"]);
        assert_eq!(bare.rename["forecast"], "weather_forecast");
        assert_eq!(bare.rename["light.on"], "light_on");
        assert_eq!(bare.descriptions["forecast"], "Tomorrow, in one line.");
        assert_eq!(config.servers[2].naming.prefix, "w-2");
    }

    #[test]
    fn bad_naming_keys_are_problems_at_their_paths() {
        let found = problems(
            r#"{"mcpServers": {
                "a": {"url": "http://x", "prefix": "a__b", "rename": {"forecast": "two words", "add": "", "x": 7},
                      "description": {"forecast": 5}, "hide": "slow_*"},
                "b": {"command": "x", "prefix": 3, "rename": ["x"], "description": "d", "hide": [1]},
                "c": {"url": "http://x", "prefix": "ccccccccccccccccccccccccccccccccc", "rename": {"light.on": "light.on"}},
                "d": {"url": "http://x", "prefix": "d_", "prefx": "e"}
            }}"#,
        );
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        let expected = [
            "$.mcpServers.a.prefix",
            "$.mcpServers.a.rename.forecast",
            "$.mcpServers.a.rename.add",
            "$.mcpServers.a.rename.x",
            "$.mcpServers.a.description.forecast",
            "$.mcpServers.a.hide",
            "$.mcpServers.b.prefix",
            "$.mcpServers.b.rename",
            "$.mcpServers.b.description",
            "$.mcpServers.b.hide[0]",
            "$.mcpServers.c.prefix",
            "$.mcpServers.c.rename[\"light.on\"]",
            "$.mcpServers.d.prefix",
            "$.mcpServers.d.prefx",
        ];
        for path in expected {
            assert!(paths.contains(&path), "{path} missing from {paths:?}");
        }
        assert_eq!(found.len(), expected.len(), "{paths:?}");
        let prefix = &found[0];
        assert!(prefix.message.contains("a__b"), "{prefix}");
        assert!(prefix.hint.contains("\"\""), "{prefix}");
        let rename = found
            .iter()
            .find(|p| p.path == "$.mcpServers.a.rename.forecast")
            .expect("rename reported");
        assert!(rename.message.contains("two words"), "{rename}");
        let typo = found
            .iter()
            .find(|p| p.path == "$.mcpServers.d.prefx")
            .expect("typo reported");
        assert!(typo.hint.contains("\"prefix\""), "{typo}");
    }

    #[test]
    fn the_owner_section_is_read_and_checked() {
        let config = parse(r#"{"mcpServers": {}}"#).expect("valid");
        assert_eq!(config.owner, crate::face::owner::OwnerSettings::default());
        let config = parse(
            r#"{"owner": {"enabled": false, "session_idle_secs": 60, "session_max_secs": 3600}}"#,
        )
        .expect("valid");
        assert!(!config.owner.enabled);
        assert_eq!(config.owner.session_idle, Duration::from_secs(60));
        assert_eq!(config.owner.session_max, Duration::from_secs(3600));
        let found = problems(r#"{"owner": {"session_idle_secs": 0, "sesion_max_secs": 5}}"#);
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["$.owner.sesion_max_secs", "$.owner.session_idle_secs"]
        );
        assert!(found[0].hint.contains("session_max_secs"), "{}", found[0]);
    }

    #[test]
    fn the_metrics_section_is_read_and_checked() {
        let config = parse(r#"{"mcpServers": {}}"#).expect("valid");
        assert_eq!(config.metrics, crate::metrics::MetricsSettings::default());
        assert!(config.metrics.enabled && !config.metrics.public);
        let config =
            parse(r#"{"metrics": {"enabled": false, "tokens": ["prometheus", "a.b-c_d"]}}"#)
                .expect("valid");
        assert!(!config.metrics.enabled);
        assert_eq!(config.metrics.tokens, ["prometheus", "a.b-c_d"]);
        assert!(
            parse(r#"{"metrics": {"public": true}}"#)
                .expect("valid")
                .metrics
                .public
        );
        let found = problems(
            r#"{"metrics": {"enabled": "yes", "publik": true, "tokens": ["oauth:claude", 3]}}"#,
        );
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.metrics.publik",
                "$.metrics.enabled",
                "$.metrics.tokens[1]",
                "$.metrics.tokens[0]"
            ],
            "{found:?}"
        );
        assert!(found[0].hint.contains("\"public\""), "{}", found[0]);
        let found = problems(r#"{"metrics": {"public": true, "tokens": ["prometheus"]}}"#);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "$.metrics.tokens");
        let found = problems(r#"{"metrics": true}"#);
        assert_eq!(found[0].path, "$.metrics");
    }

    #[test]
    fn origins() {
        let mut config = Config::embedded_default();
        config.public_url = Some("https://gw.example.net".to_string());
        assert!(config.origin_allowed("http://localhost:3000"));
        assert!(config.origin_allowed("http://127.0.0.1:8080"));
        assert!(config.origin_allowed("http://[::1]:5"));
        assert!(config.origin_allowed("https://gw.example.net"));
        assert!(!config.origin_allowed("https://evil.example"));
        assert!(!config.origin_allowed("http://localhost.evil.example"));
        assert!(!config.origin_allowed("http://127.evil.example"));
    }
}
