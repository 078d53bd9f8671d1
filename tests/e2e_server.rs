//! End-to-end tests of the server itself: the real binary on a free loopback port, driven over
//! raw HTTP. (The interop tests under tests/interop drive it with the official MCP SDK.)

mod support;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{cli, open, python_backend, read_events, request, temp_dir, Gateway};

fn slow_backend_config(tag: &str, delay: f64, extra: Value) -> Value {
    let dir = temp_dir(&format!("{tag}-py"));
    let script = python_backend(&dir, delay);
    let mut config = json!({
        "mcpServers": {"py": {"command": "python3", "args": ["-u", script.to_str().expect("utf8")], "timeout_ms": 5000}}
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    config
}

#[test]
fn progress_reaches_the_client_before_the_call_ends() {
    let gw = Gateway::start("progress", slow_backend_config("progress", 1.5, json!({})));
    gw.wait_backends("up", Duration::from_secs(20));
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "py__slow", "arguments": {}, "_meta": {"progressToken": "mine-1"}}});
    let started = Instant::now();
    let response = gw.open_post(
        &[("Accept", "application/json, text/event-stream")],
        &body.to_string(),
    );
    assert_eq!(response.status().as_u16(), 200);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .starts_with("text/event-stream"));
    let mut seen = Vec::new();
    read_events(response, |event| seen.push((started.elapsed(), event)));
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (progress_at, progress) = &seen[0];
    assert_eq!(progress["method"], "notifications/progress");
    assert_eq!(
        progress["params"]["progressToken"], "mine-1",
        "the client's own token comes back"
    );
    let (result_at, result) = &seen[1];
    assert_eq!(result["id"], 7);
    assert_eq!(result["result"]["content"][0]["text"], "done");
    assert!(
        *result_at >= Duration::from_millis(1400),
        "result came after the backend's delay"
    );
    assert!(
        *result_at - *progress_at >= Duration::from_millis(1000),
        "progress was flushed at once, not held until the end: {progress_at:?} vs {result_at:?}"
    );
}

#[test]
fn a_call_without_progress_is_plain_json() {
    let gw = Gateway::start(
        "plainjson",
        slow_backend_config("plainjson", 0.0, json!({})),
    );
    gw.wait_backends("up", Duration::from_secs(20));
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "py__slow"}});
    let response = gw.open_post(
        &[("Accept", "application/json, text/event-stream")],
        &body.to_string(),
    );
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let mut text = String::new();
    response
        .into_body()
        .into_reader()
        .read_to_string(&mut text)
        .expect("body");
    let value: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(value["result"]["content"][0]["text"], "done");
}

#[test]
fn a_stdio_backend_that_crashes_is_reported_and_restarted() {
    let gw = Gateway::start("crash", slow_backend_config("crash", 0.0, json!({})));
    gw.wait_backends("up", Duration::from_secs(20));
    let crash =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "py__crash"}});
    let started = Instant::now();
    let (status, text) = gw.post(&[], &crash.to_string());
    assert_eq!(status, 200);
    let value: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(value["error"]["code"], -32603, "{value}");
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("'py'"),
        "names the backend: {value}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "fails fast, not at the 5 s timeout"
    );
    // The supervisor restarts the process; the backend comes back up and answers again.
    gw.wait_backends("up", Duration::from_secs(20));
    let call =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "py__slow"}});
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = gw.post(&[], &call.to_string());
        if text.contains("\"done\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backend never came back: {text}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_stalled_client_does_not_hold_the_server() {
    let gw = Gateway::start(
        "stall",
        json!({"workers": 1, "limits": {"io_timeout_ms": 500}}),
    );
    // Half a request line and headers, then silence.
    let mut stalled = TcpStream::connect(gw.addr()).expect("connect");
    stalled
        .write_all(b"POST /mcp HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    // A body promised but never sent, to hold the only worker as long as it can.
    let mut half_body = TcpStream::connect(gw.addr()).expect("connect");
    let head = format!("POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\"", gw.token);
    half_body.write_all(head.as_bytes()).expect("write");
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let (status, _) = request(&gw.base, "GET", "/health", None, &[], "");
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "health answered while clients stall"
    );
    // Both stalled connections are closed by the server within a few timeouts.
    for mut socket in [stalled, half_body] {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = Vec::new();
        let started = Instant::now();
        let _ = socket.read_to_end(&mut buf);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the server dropped the stalled client"
        );
    }
}

#[test]
fn lists_are_paged_with_cursors() {
    let gw = Gateway::start(
        "paging",
        slow_backend_config("paging", 0.0, json!({"limits": {"page_size": 2}})),
    );
    gw.wait_backends("up", Duration::from_secs(20));
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..5 {
        let mut params = json!({});
        if let Some(c) = &cursor {
            params["cursor"] = json!(c);
        }
        let body = json!({"jsonrpc": "2.0", "id": page, "method": "tools/list", "params": params});
        let (_, text) = gw.post(&[], &body.to_string());
        let value: Value = serde_json::from_str(&text).expect("json");
        let tools = value["result"]["tools"].as_array().expect("tools").clone();
        assert!(tools.len() <= 2);
        names.extend(
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(String::from)),
        );
        cursor = value["result"]["nextCursor"].as_str().map(String::from);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        names,
        [
            "gateway__status",
            "py__slow",
            "py__crash",
            "py__grow",
            "py__cancelled"
        ]
    );
    let bad = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {"cursor": "nonsense"}});
    let (_, text) = gw.post(&[], &bad.to_string());
    assert!(text.contains("-32602") && text.contains("cursor"), "{text}");
}

#[test]
fn sessions_origins_and_methods() {
    let gw = Gateway::start("sessions", json!({}));
    let session = gw.initialize("2025-06-18");
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}).to_string();
    let (status, _) = gw.post(&[("Mcp-Session-Id", &session)], &ping);
    assert_eq!(status, 200);
    let (status, _) = gw.post(&[("Mcp-Session-Id", "not-a-session")], &ping);
    assert_eq!(status, 404, "unknown session");
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    let (status, _) = gw.post(&[("Mcp-Session-Id", &session)], &note);
    assert_eq!(status, 202);
    let (status, text) = gw.post(&[("Origin", "https://evil.example")], &ping);
    assert_eq!(status, 403, "{text}");
    let (status, _) = gw.post(&[("Origin", "http://localhost:3000")], &ping);
    assert_eq!(status, 200);
    let (status, _) = request(
        &gw.base,
        "DELETE",
        "/mcp",
        Some(&gw.token),
        &[("Mcp-Session-Id", &session)],
        "",
    );
    assert_eq!(status, 200);
    let (status, _) = gw.post(&[("Mcp-Session-Id", &session)], &ping);
    assert_eq!(status, 404, "the session is gone after DELETE");
    let response = open(
        &gw.base,
        "GET",
        "/mcp",
        Some(&gw.token),
        &[("Accept", "text/event-stream")],
        "",
    );
    assert_eq!(
        response.status().as_u16(),
        405,
        "no GET stream without a session"
    );
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let batch = json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]).to_string();
    let (status, text) = gw.post(&[], &batch);
    assert_eq!(status, 400);
    assert!(text.contains("-32600") && text.contains("batch"), "{text}");
}

#[test]
fn modern_requests_are_checked_against_their_headers() {
    let gw = Gateway::start("modern", json!({}));
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "gateway__status", "arguments": {}, "_meta": meta}}).to_string();
    let good = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "gateway__status"),
    ];
    let (status, text) = gw.post(&good, &call);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"resultType\":\"complete\""), "{text}");
    let wrong_name = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "other"),
    ];
    let (status, text) = gw.post(&wrong_name, &call);
    assert_eq!(status, 400);
    assert!(text.contains("-32020"), "{text}");
    let wrong_method = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/list"),
        ("Mcp-Name", "gateway__status"),
    ];
    let (status, text) = gw.post(&wrong_method, &call);
    assert_eq!((status, text.contains("-32020")), (400, true), "{text}");
    let future = [
        ("MCP-Protocol-Version", "2099-01-01"),
        ("Mcp-Method", "tools/list"),
    ];
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2099-01-01", "io.modelcontextprotocol/clientCapabilities": {}}}}).to_string();
    let (status, text) = gw.post(&future, &list);
    assert_eq!(status, 400);
    let value: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(value["error"]["code"], -32022);
    assert_eq!(value["error"]["data"]["supported"][0], "2026-07-28");
}

#[test]
fn first_start_creates_and_prints_one_token() {
    let dir = temp_dir("firststart");
    let config = dir.join("c.json");
    std::fs::write(
        &config,
        json!({"listen": "127.0.0.1:0", "state_dir": dir.join("st").display().to_string()})
            .to_string(),
    )
    .expect("write");
    let mut child = std::process::Command::new(support::binary())
        .args(["serve", "--config", config.to_str().expect("utf8")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    let mut buf = [0u8; 512];
    while !text.contains("\nmgw_") && Instant::now() < deadline {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let token = text
        .lines()
        .find(|l| l.starts_with("mgw_"))
        .expect("token printed")
        .to_string();
    let stored = std::fs::read_to_string(dir.join("st/tokens.json")).expect("tokens.json");
    assert!(!stored.contains(&token), "only the hash is stored");
    let listed = cli(&["token", "list", "--config", config.to_str().expect("utf8")]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("default") && !listed.contains(&token),
        "{listed}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn post(gw: &Gateway, headers: &[(&str, &str)], body: Value) -> Value {
    let (_, text) = request(
        &gw.base,
        "POST",
        "/mcp",
        Some(&gw.token),
        headers,
        &body.to_string(),
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn list_changes_of_a_backend_reach_open_streams_of_both_eras() {
    let gw = Gateway::start(
        "listchanged",
        slow_backend_config("listchanged", 0.0, json!({})),
    );
    gw.wait_backends("up", Duration::from_secs(20));
    // A handshake-era session with its GET stream...
    let session = gw.initialize("2025-11-25");
    let get_stream = open(
        &gw.base,
        "GET",
        "/mcp",
        Some(&gw.token),
        &[
            ("Accept", "text/event-stream"),
            ("Mcp-Session-Id", &session),
        ],
        "",
    );
    assert_eq!(get_stream.status().as_u16(), 200);
    // ...and a 2026-07-28 subscriptions/listen stream.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    let listen = json!({"jsonrpc": "2.0", "id": "listen-1", "method": "subscriptions/listen", "params": {"notifications": {"toolsListChanged": true}, "_meta": meta}});
    let listen_stream = gw.open_post(
        &[
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "subscriptions/listen"),
        ],
        &listen.to_string(),
    );
    assert_eq!(listen_stream.status().as_u16(), 200);
    let (tx, rx) = std::sync::mpsc::channel::<(&'static str, Value)>();
    for (label, stream) in [("get", get_stream), ("listen", listen_stream)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            read_events(stream, |event| {
                let _ = tx.send((label, event));
            })
        });
    }
    let first = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("acknowledgement");
    assert_eq!(first.0, "listen");
    assert_eq!(
        first.1["method"],
        "notifications/subscriptions/acknowledged"
    );
    assert_eq!(
        first.1["params"]["notifications"],
        json!({"toolsListChanged": true})
    );
    // The backend grows a tool and says so; both streams hear of it, and the list has it.
    let grown = post(
        &gw,
        &[],
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "py__grow"}}),
    );
    assert_eq!(grown["result"]["content"][0]["text"], "grown");
    let mut heard = std::collections::BTreeMap::new();
    while heard.len() < 2 {
        let (label, event) = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no list_changed on every stream: {heard:?}\n{}", gw.log()));
        assert_eq!(
            event["method"], "notifications/tools/list_changed",
            "{event}"
        );
        heard.insert(label, event);
    }
    assert_eq!(
        heard["listen"]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "listen-1"
    );
    let list = post(
        &gw,
        &[],
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
    );
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"py__extra"), "{names:?}");
}

#[test]
fn a_cancelled_call_is_cancelled_at_the_backend_under_its_own_id() {
    let gw = Gateway::start("cancel", slow_backend_config("cancel", 2.0, json!({})));
    gw.wait_backends("up", Duration::from_secs(20));
    let session = gw.initialize("2025-11-25");
    let base = gw.base.clone();
    let token = gw.token.clone();
    let session_for_call = session.clone();
    let slow = std::thread::spawn(move || {
        let body = json!({"jsonrpc": "2.0", "id": "client-call-9", "method": "tools/call", "params": {"name": "py__slow"}});
        request(
            &base,
            "POST",
            "/mcp",
            Some(&token),
            &[("Mcp-Session-Id", &session_for_call)],
            &body.to_string(),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "client-call-9", "reason": "user pressed stop"}});
    let (status, _) = gw.post(&[("Mcp-Session-Id", &session)], &cancel.to_string());
    assert_eq!(status, 202);
    let _ = slow.join();
    let seen = post(
        &gw,
        &[],
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "py__cancelled"}}),
    );
    let ids: Vec<Value> =
        serde_json::from_str(seen["result"]["content"][0]["text"].as_str().expect("text"))
            .expect("ids");
    assert_eq!(
        ids.len(),
        1,
        "the backend got exactly one cancellation: {ids:?}"
    );
    assert!(
        ids[0].is_number(),
        "under the gateway's own request id, not the client's: {ids:?}"
    );
}

#[test]
fn token_commands_do_not_need_the_backends_secrets_but_serve_and_check_config_do() {
    let dir = temp_dir("secrets");
    let config = dir.join("c.json");
    let text = json!({"state_dir": "st", "mcpServers": {"ha": {"url": "http://127.0.0.1:9/api/mcp", "headers": {"Authorization": "Bearer ${MCPGW_TEST_UNSET_SECRET}"}}}});
    std::fs::write(&config, text.to_string()).expect("write");
    let path = config.to_str().expect("utf8");
    let created = cli(&["token", "create", "phone", "--config", path]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(
        dir.join("st/tokens.json").is_file(),
        "state_dir is relative to the config file"
    );
    let checked = cli(&["check-config", "--config", path]);
    assert_eq!(checked.status.code(), Some(1));
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(
        said.contains("$.mcpServers.ha.headers.Authorization")
            && said.contains("MCPGW_TEST_UNSET_SECRET"),
        "{said}"
    );
    let served = cli(&["serve", "--config", path]);
    assert_eq!(
        served.status.code(),
        Some(1),
        "serve refuses a config with an unset secret"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hanging_call_times_out_and_is_cancelled_at_the_backend() {
    let mut config = slow_backend_config("hang", 3.0, json!({}));
    config["mcpServers"]["py"]["timeout_ms"] = json!(1000);
    let gw = Gateway::start("hang", config);
    gw.wait_backends("up", Duration::from_secs(20));
    let started = Instant::now();
    let answer = post(
        &gw,
        &[],
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "py__slow"}}),
    );
    let waited = started.elapsed();
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("'py'") && message.contains("1000 ms"),
        "{message}"
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );
    let seen = post(
        &gw,
        &[],
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "py__cancelled"}}),
    );
    let ids: Vec<Value> =
        serde_json::from_str(seen["result"]["content"][0]["text"].as_str().expect("text"))
            .expect("ids");
    assert_eq!(
        ids.len(),
        1,
        "the gateway told the backend it gave up: {ids:?}"
    );
}

#[test]
fn a_backend_that_accepts_but_never_answers_does_not_block_start_up() {
    // Accepts connections and reads, but never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().take(50).flatten() {
            held.push(conn);
        }
    });
    let config = json!({"mcpServers": {"mute": {"type": "streamable-http", "url": format!("http://127.0.0.1:{port}/mcp"), "timeout_ms": 500}}});
    let started = Instant::now();
    let gw = Gateway::start("mute", config);
    let (status, _) = request(&gw.base, "GET", "/health", None, &[], "");
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "start-up did not wait for the backend"
    );
    let own = post(
        &gw,
        &[],
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "gateway__status"}}),
    );
    assert_eq!(own["result"]["isError"], false, "{own}");
    let status = gw.wait_backends("down", Duration::from_secs(10));
    let error = status["backends"][0]["last_error"].as_str().unwrap_or("");
    assert!(error.contains("500 ms"), "the status says why: {error}");
}

#[test]
fn oauth_discovery_and_a_metadata_client_id_on_the_lan_is_never_fetched() {
    let gw = Gateway::start("cimd", json!({}));
    let (status, text) = request(
        &gw.base,
        "GET",
        "/.well-known/oauth-authorization-server",
        None,
        &[],
        "",
    );
    assert_eq!(status, 200);
    let metadata: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(metadata["client_id_metadata_document_supported"], true);
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        metadata["issuer"],
        gw.base.as_str(),
        "without public_url, URLs come from Host"
    );
    let (status, text) = request(
        &gw.base,
        "POST",
        "/mcp",
        Some("mgwa_not-a-real-token"),
        &[],
        "{}",
    );
    assert_eq!(status, 401, "{text}");
    // A client_id URL pointing into the LAN: shown as an error on our page, nothing fetched,
    // and no redirect anywhere.
    let query = "response_type=code&client_id=https%3A%2F%2F127.0.0.1%2Fclient.json&redirect_uri=https%3A%2F%2Fattacker.example%2Fcb&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=s";
    let response = open(
        &gw.base,
        "GET",
        &format!("/oauth/authorize?{query}"),
        None,
        &[],
        "",
    );
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.headers().get("location").is_none());
    assert_eq!(
        response
            .headers()
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    let mut page = String::new();
    response
        .into_body()
        .into_reader()
        .read_to_string(&mut page)
        .expect("page");
    assert!(
        page.contains("could not be fetched from a public https address"),
        "{page}"
    );
}

#[test]
fn an_idle_gateway_keeps_accepting_after_its_io_timeout() {
    // Socket timeouts must apply to connections, never to accepting them: a gateway left idle
    // longer than io_timeout_ms still answers.
    let gw = Gateway::start("idle", json!({"limits": {"io_timeout_ms": 200}}));
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        let (status, _) = request(&gw.base, "GET", "/health", None, &[], "");
        assert_eq!(status, 200, "{}", gw.log());
    }
    assert!(!gw.log().contains("Error accepting"), "{}", gw.log());
}

#[test]
fn browser_direct_connections_work_only_from_the_configured_origins() {
    let gw = Gateway::start(
        "cors",
        json!({"openai": {"cors_origins": ["https://chat.example.net"]}}),
    );
    let preflight = |origin: &str| {
        open(
            &gw.base,
            "OPTIONS",
            "/v1/chat/completions",
            None,
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization,content-type",
                ),
            ],
            "",
        )
    };
    let allowed = preflight("https://chat.example.net");
    assert_eq!(allowed.status().as_u16(), 204);
    let header = |r: &ureq::http::Response<ureq::Body>, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some("https://chat.example.net")
    );
    assert!(header(&allowed, "access-control-allow-headers")
        .unwrap_or_default()
        .contains("Authorization"));
    let refused = preflight("https://evil.example");
    assert_eq!(refused.status().as_u16(), 403);
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
    let models = open(
        &gw.base,
        "GET",
        "/v1/models",
        Some(&gw.token),
        &[("Origin", "https://chat.example.net")],
        "",
    );
    assert_eq!(models.status().as_u16(), 200);
    assert_eq!(
        header(&models, "access-control-allow-origin").as_deref(),
        Some("https://chat.example.net")
    );
    let other = open(
        &gw.base,
        "GET",
        "/v1/models",
        Some(&gw.token),
        &[("Origin", "https://evil.example")],
        "",
    );
    assert_eq!(
        header(&other, "access-control-allow-origin"),
        None,
        "no CORS grant for other origins"
    );
}
