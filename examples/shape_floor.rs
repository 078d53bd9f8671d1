//! The floor of the gateway's fixed shape: a proxy built the same way that does nothing but
//! pass a POST's bytes to one backend and its answer's bytes back. `tests/bench/peers.py
//! --floor-bin` measures it beside mcp-gateway in the same run, so what the gateway adds on top of
//! its shape (authentication, JSON-RPC, policy, audit, metrics) is told apart from what the
//! shape costs by itself on the machine at hand. Run by hand:
//!
//! ```sh
//! cargo build --release --example shape_floor
//! target/release/examples/shape_floor 127.0.0.1:8100 http://127.0.0.1:8000/mcp
//! target/release/examples/shape_floor --inline 127.0.0.1:8101 http://127.0.0.1:8000/mcp
//! ```
//!
//! The shape (see the developers' guide): a fixed pool of worker threads calling `recv()` on one
//! `tiny_http::Server` (our patched copy), each reaching the backend with blocking `ureq`
//! through the gateway's own agent (`outbound::agent`: its lean connections and resolver).
//! tiny_http reads each request on the connection's own thread and hands it to a worker.
//!
//! `--inline` is the other shape, for comparison only: each connection's thread reads its
//! requests, calls the backend through the same agent and writes the answers itself (a small
//! HTTP/1.1 reader of its own, keep-alive, `Content-Length` bodies only), so no request changes
//! threads. Neither is a gateway: no token, no checks, one backend, and only the few headers a
//! Streamable HTTP exchange needs are passed on.

use mcp_gateway::outbound;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Response, Server};

/// As many workers as the gateway's default config.
const WORKERS: usize = 8;
/// Headers passed on to the backend, and back from it.
const PASSED: [&str; 6] = [
    "Content-Type",
    "Accept",
    "Mcp-Session-Id",
    "MCP-Protocol-Version",
    "Mcp-Method",
    "Mcp-Name",
];

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let inline = args.first().is_some_and(|a| a == "--inline");
    if inline {
        args.remove(0);
    }
    let [listen, backend] = &args[..] else {
        eprintln!("usage: shape_floor [--inline] LISTEN_ADDR BACKEND_URL");
        std::process::exit(2);
    };
    let config = outbound::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    let agent = outbound::agent(config);
    let how = if inline {
        "each connection's thread serving its own requests"
    } else {
        "tiny_http workers"
    };
    eprintln!("shape_floor ({how}) listening on http://{listen}, passing POSTs to {backend}");
    let outcome = if inline {
        serve_inline(listen, &agent, backend)
    } else {
        serve_workers(listen, &agent, backend)
    };
    if let Err(e) = outcome {
        eprintln!("cannot listen on {listen}: {e}");
        std::process::exit(1);
    }
}

/// What the backend answered: status, the passed headers, the body.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// Sends `body` with the `headers` of [`PASSED`] to the backend and reads its whole answer.
fn forward<'h>(
    agent: &ureq::Agent,
    backend: &str,
    headers: impl Iterator<Item = (&'h str, &'h str)>,
    body: &[u8],
) -> Answer {
    let mut outgoing = agent.post(backend);
    for (name, value) in headers {
        if PASSED.iter().any(|p| p.eq_ignore_ascii_case(name)) {
            outgoing = outgoing.header(name, value);
        }
    }
    let failed = |e: ureq::Error| Answer {
        status: 502,
        headers: Vec::new(),
        body: e.to_string().into_bytes(),
    };
    let mut answer = match outgoing.send(body) {
        Ok(answer) => answer,
        Err(e) => return failed(e),
    };
    let headers = PASSED
        .iter()
        .filter_map(|name| {
            let value = answer.headers().get(*name)?.to_str().ok()?;
            Some((*name, value.to_string()))
        })
        .collect();
    match answer.body_mut().read_to_vec() {
        Ok(body) => Answer {
            status: answer.status().as_u16(),
            headers,
            body,
        },
        Err(e) => failed(e),
    }
}

fn serve_workers(listen: &str, agent: &ureq::Agent, backend: &str) -> Result<(), String> {
    let server = Arc::new(Server::http(listen).map_err(|e| e.to_string())?);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (server, agent, backend) =
                (Arc::clone(&server), agent.clone(), backend.to_string());
            std::thread::spawn(move || worker(&server, &agent, &backend))
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

fn worker(server: &Server, agent: &ureq::Agent, backend: &str) {
    while let Ok(mut request) = server.recv() {
        if request.method().as_str() != "POST" {
            let _ = request.respond(Response::from_string("ok"));
            continue;
        }
        let mut body = Vec::new();
        if request.as_reader().read_to_end(&mut body).is_err() {
            continue;
        }
        let headers = request
            .headers()
            .iter()
            .map(|h| (h.field.as_str().as_str(), h.value.as_str()));
        let answer = forward(agent, backend, headers, &body);
        let response = answer.headers.iter().fold(
            Response::from_data(answer.body).with_status_code(answer.status),
            |response, (name, value)| match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                Ok(header) => response.with_header(header),
                Err(()) => response,
            },
        );
        let _ = request.respond(response);
    }
}

fn serve_inline(listen: &str, agent: &ureq::Agent, backend: &str) -> Result<(), String> {
    let listener = TcpListener::bind(listen).map_err(|e| e.to_string())?;
    for stream in listener.incoming().flatten() {
        let (agent, backend) = (agent.clone(), backend.to_string());
        std::thread::spawn(move || connection(stream, &agent, &backend));
    }
    Ok(())
}

/// One keep-alive connection, served on its own thread until the client closes it or sends
/// something this small reader does not take.
fn connection(stream: TcpStream, agent: &ureq::Agent, backend: &str) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        head.clear();
        // The request line and headers, up to the blank line.
        loop {
            let before = head.len();
            match reader.read_line(&mut head) {
                Ok(0) | Err(_) => return,
                Ok(_) if head[before..].trim_end().is_empty() => break,
                Ok(_) => {}
            }
        }
        let mut lines = head.lines();
        let method = lines.next().unwrap_or("").split(' ').next().unwrap_or("");
        let headers: Vec<(&str, &str)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim(), value.trim()))
            .collect();
        let length = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer = if method == "POST" {
            forward(agent, backend, headers.iter().copied(), &body)
        } else {
            Answer {
                status: 200,
                headers: Vec::new(),
                body: b"ok".to_vec(),
            }
        };
        let mut out = format!("HTTP/1.1 {} -\r\n", answer.status);
        for (name, value) in &answer.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", answer.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&answer.body);
        if writer.write_all(&bytes).is_err() {
            return;
        }
    }
}
