//! Shared harness of the Rust end-to-end tests: start the real `mcp-gateway` binary on a free
//! loopback port with a config of the test's choosing, and talk to it over plain HTTP.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_mcp-gateway")
}

/// A fresh temporary folder for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcpgw-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs the CLI to completion.
pub fn cli(args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run mcp-gateway")
}

/// A running `mcp-gateway serve`, killed on drop.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// A valid bearer token.
    pub token: String,
    /// The test's folder.
    pub dir: PathBuf,
    stderr_log: PathBuf,
}

impl Gateway {
    /// Writes `config` (listen and state_dir are filled in) and starts the gateway.
    pub fn start(tag: &str, mut config: Value) -> Gateway {
        let dir = temp_dir(tag);
        config["listen"] = Value::String("127.0.0.1:0".into());
        config["state_dir"] = Value::String(dir.join("state").display().to_string());
        let config_path = dir.join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&config).expect("json"),
        )
        .expect("write config");
        let created = cli(&[
            "token",
            "create",
            "e2e",
            "--config",
            config_path.to_str().expect("utf8"),
        ]);
        assert!(
            created.status.success(),
            "token create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let token = String::from_utf8_lossy(&created.stdout)
            .lines()
            .last()
            .expect("token line")
            .trim()
            .to_string();
        Gateway::spawn(dir, &config_path, token)
    }

    // The child is moved into the returned Gateway, whose Drop kills and waits for it.
    #[allow(clippy::zombie_processes)]
    fn spawn(dir: PathBuf, config_path: &Path, token: String) -> Gateway {
        let stderr_log = dir.join("stderr.log");
        let log_file = std::fs::File::create(&stderr_log).expect("log file");
        let mut child = Command::new(binary())
            .args(["serve", "--config", config_path.to_str().expect("utf8")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn gateway");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
            if let Some(rest) = log.split("listening on http://").nth(1) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                return Gateway {
                    child,
                    base: format!("http://{addr}"),
                    token,
                    dir,
                    stderr_log,
                };
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("gateway did not start:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `host:port`
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// What the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Starts a handshake-era session with `initialize` at `version`; returns its id.
    pub fn initialize(&self, version: &str) -> String {
        let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}});
        let response = open(
            &self.base,
            "POST",
            "/mcp",
            Some(&self.token),
            &[],
            &init.to_string(),
        );
        assert_eq!(response.status().as_u16(), 200);
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok());
        session
            .expect("initialize answers with an Mcp-Session-Id")
            .to_string()
    }

    /// POST /mcp with the token; returns status and body.
    pub fn post(&self, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        request(&self.base, "POST", "/mcp", Some(&self.token), headers, body)
    }

    /// POST /mcp with the token; returns the response for streaming reads.
    pub fn open_post(
        &self,
        headers: &[(&str, &str)],
        body: &str,
    ) -> ureq::http::Response<ureq::Body> {
        open(&self.base, "POST", "/mcp", Some(&self.token), headers, body)
    }

    /// GET /status with the token.
    pub fn status(&self) -> Value {
        let (status, body) = request(&self.base, "GET", "/status", Some(&self.token), &[], "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("status json")
    }

    /// Waits until every backend reports `state`.
    pub fn wait_backends(&self, state: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status();
            let all = status["backends"]
                .as_array()
                .map(|b| b.iter().all(|b| b["state"] == state))
                .unwrap_or(false);
            if all {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "backends not {state}: {status}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// One HTTP request; returns status and body.
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let response = open(base, method, path, token, headers, body);
    let status = response.status().as_u16();
    let mut text = String::new();
    let _ = response.into_body().into_reader().read_to_string(&mut text);
    (status, text)
}

/// One HTTP request; returns the response for streaming reads.
pub fn open(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> ureq::http::Response<ureq::Body> {
    let url = format!("{base}{path}");
    let agent = agent();
    let mut builder = ureq::http::Request::builder().method(method).uri(&url);
    if let Some(t) = token {
        builder = builder.header("Authorization", format!("Bearer {t}"));
    }
    builder = builder.header("Content-Type", "application/json");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(body.to_string()).expect("request");
    agent.run(request).expect("http request")
}

/// Reads SSE `data:` payloads as JSON, calling `each` with the time since `started`.
pub fn read_events(response: ureq::http::Response<ureq::Body>, mut each: impl FnMut(Value)) {
    let reader = BufReader::new(response.into_body().into_reader());
    for line in reader.lines() {
        let Ok(line) = line else { return };
        if let Some(data) = line.strip_prefix("data:") {
            if let Ok(v) = serde_json::from_str(data.trim()) {
                each(v);
            }
        }
    }
}

/// A stdio MCP server written in Python for tests that need exact timing and control. Handshake
/// era only. Tools: `slow` (sends one progress notification if asked, waits `delay_secs`, returns
/// "done"), `crash` (the process exits), `grow` (adds a tool `extra` and sends
/// `notifications/tools/list_changed`), `cancelled` (the request ids the client cancelled so far).
/// Calls run on threads of their own so that notifications are read while a call runs.
pub fn python_backend(dir: &Path, delay_secs: f64) -> PathBuf {
    let script = format!(
        r#"
import json, sys, threading, time
lock = threading.Lock()
tools = ["slow", "crash", "grow", "cancelled"]
cancelled = []
def send(m):
    with lock:
        sys.stdout.write(json.dumps(m) + "\n"); sys.stdout.flush()
def result(mid, text):
    send({{"jsonrpc": "2.0", "id": mid, "result": {{"content": [{{"type": "text", "text": text}}]}}}})
def call(mid, params):
    name = params["name"]
    if name == "crash":
        sys.stdout.flush(); import os; os._exit(3)
    if name == "grow":
        if "extra" not in tools:
            tools.append("extra")
        send({{"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}})
        return result(mid, "grown")
    if name == "cancelled":
        return result(mid, json.dumps(cancelled))
    token = params.get("_meta", {{}}).get("progressToken")
    if token is not None:
        send({{"jsonrpc": "2.0", "method": "notifications/progress", "params": {{"progressToken": token, "progress": 1, "total": 2}}}})
    time.sleep({delay_secs})
    result(mid, "done")
for line in sys.stdin:
    msg = json.loads(line)
    mid, method = msg.get("id"), msg.get("method")
    if method == "notifications/cancelled":
        cancelled.append(msg["params"]["requestId"])
    if mid is None or method is None:
        continue
    if method == "initialize":
        send({{"jsonrpc": "2.0", "id": mid, "result": {{"protocolVersion": "2025-06-18", "capabilities": {{"tools": {{"listChanged": True}}}}, "serverInfo": {{"name": "pyslow", "version": "1"}}}}}})
    elif method == "tools/list":
        send({{"jsonrpc": "2.0", "id": mid, "result": {{"tools": [{{"name": t, "inputSchema": {{"type": "object"}}}} for t in tools]}}}})
    elif method == "tools/call":
        threading.Thread(target=call, args=(mid, msg["params"]), daemon=True).start()
    else:
        send({{"jsonrpc": "2.0", "id": mid, "error": {{"code": -32601, "message": "no " + str(method)}}}})
"#
    );
    let path = dir.join("pyslow.py");
    std::fs::write(&path, script).expect("write backend");
    path
}
