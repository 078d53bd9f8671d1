//! The floor of the gateway's fixed shape: a proxy built the same way that does nothing but
//! pass a POST's bytes to one backend and its answer's bytes back. `tests/bench/peers.py
//! --floor` measures it beside mcp-gateway in the same run, so what the gateway adds on top of
//! its shape (authentication, JSON-RPC, policy, audit, metrics) is told apart from what the
//! shape costs by itself on the machine at hand. Run by hand:
//!
//! ```sh
//! cargo build --release --example shape_floor
//! target/release/examples/shape_floor 127.0.0.1:8100 http://127.0.0.1:8000/mcp
//! ```
//!
//! The shape (see the developers' guide): a fixed pool of worker threads calling `recv()` on one
//! `tiny_http::Server` (our patched copy, with the gateway's server options), each reaching the
//! backend with blocking `ureq` through the gateway's own agent (`outbound::agent`: its lean
//! connections and resolver). It is not a gateway: no token, no checks, one backend, and only
//! the few headers a Streamable HTTP exchange needs are passed on.

use mcp_gateway::outbound;
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
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(backend)) = (args.next(), args.next()) else {
        eprintln!("usage: shape_floor LISTEN_ADDR BACKEND_URL");
        std::process::exit(2);
    };
    let server = match Server::http(listen.as_str()) {
        Ok(server) => Arc::new(server),
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    let config = outbound::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    let agent = outbound::agent(config);
    eprintln!("shape_floor listening on http://{listen}, passing POSTs to {backend}");
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (server, agent, backend) = (Arc::clone(&server), agent.clone(), backend.clone());
            std::thread::spawn(move || serve(&server, &agent, &backend))
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}

fn serve(server: &Server, agent: &ureq::Agent, backend: &str) {
    while let Ok(mut request) = server.recv() {
        if request.method().as_str() != "POST" {
            let _ = request.respond(Response::from_string("ok"));
            continue;
        }
        let mut body = Vec::new();
        if request.as_reader().read_to_end(&mut body).is_err() {
            continue;
        }
        let mut outgoing = agent.post(backend);
        for header in request.headers() {
            if PASSED.iter().any(|name| header.field.equiv(name)) {
                outgoing = outgoing.header(header.field.as_str().as_str(), header.value.as_str());
            }
        }
        let answer = match outgoing.send(&body[..]) {
            Ok(mut answer) => {
                let status = answer.status().as_u16();
                let headers: Vec<Header> = PASSED
                    .iter()
                    .filter_map(|name| {
                        let value = answer.headers().get(*name)?.as_bytes();
                        Header::from_bytes(name.as_bytes(), value).ok()
                    })
                    .collect();
                match answer.body_mut().read_to_vec() {
                    Ok(bytes) => headers.into_iter().fold(
                        Response::from_data(bytes).with_status_code(status),
                        |r, h| r.with_header(h),
                    ),
                    Err(e) => Response::from_string(e.to_string()).with_status_code(502),
                }
            }
            Err(e) => Response::from_string(e.to_string()).with_status_code(502),
        };
        let _ = request.respond(answer);
    }
}
