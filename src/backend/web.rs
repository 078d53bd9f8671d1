//! HTTP plumbing both HTTP transports (Streamable HTTP and the older HTTP+SSE) use: the ureq
//! agent, URL checks, reading bodies and error statuses, and mapping ureq's
//! errors. Neither transport imports the other; both import this.

use crate::backend::transport::{truncate, TransportError};
use std::io::{self, Read};
use std::time::Duration;
use ureq::http::Response;
use ureq::{Agent, Body};

pub(crate) fn status_error(status: u16, body: Body) -> TransportError {
    status_text_error(status, &read_prefix(body, 4096))
}

pub(crate) fn status_text_error(status: u16, body: &str) -> TransportError {
    TransportError::Protocol(format!("HTTP {status}: {}", truncate(body.trim(), 200)))
}

/// Up to `max` bytes of a body as text; read errors just end the text.
pub(crate) fn read_prefix(body: Body, max: u64) -> String {
    let mut bytes = Vec::new();
    let _ = body.into_reader().take(max).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The response's media type, lower-cased, without parameters.
pub(crate) fn media_type(response: &Response<Body>) -> String {
    let header = response.headers().get("content-type");
    let value = header.and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = value.split(';').next().unwrap_or("");
    essence.trim().to_ascii_lowercase()
}

pub(crate) fn check_http_url(url: &str) -> Result<(), TransportError> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| TransportError::Protocol(format!("invalid URL {url:?}: {e}")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(TransportError::Protocol(format!(
            "not an http(s) URL: {url:?}"
        ))),
    }
}

/// The ureq agent for one transport: HTTP error statuses come back as responses (their bodies
/// matter), and redirects are not followed (they could carry our credentials elsewhere).
pub(crate) fn new_agent() -> Agent {
    let config = crate::outbound::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent("mcp-gateway")
        .build();
    crate::outbound::agent(config)
}

/// Maps a ureq failure; `timeout` is the budget that applied, reported on timeouts.
pub(crate) fn transport_error(err: ureq::Error, timeout: Duration) -> TransportError {
    match err {
        ureq::Error::Timeout(_) => TransportError::Timeout(timeout),
        ureq::Error::Io(e) => io_kind_error(e, timeout),
        ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::ConnectProxyFailed(_) => TransportError::Unavailable(err.to_string()),
        other => TransportError::Protocol(other.to_string()),
    }
}

/// Maps an error from reading a response body (which may wrap a ureq error such as a timeout).
pub(crate) fn io_transport_error(err: io::Error, timeout: Duration) -> TransportError {
    transport_error(ureq::Error::from(err), timeout)
}

fn io_kind_error(err: io::Error, timeout: Duration) -> TransportError {
    match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TransportError::Timeout(timeout),
        io::ErrorKind::InvalidData => TransportError::Protocol(err.to_string()),
        _ => TransportError::Unavailable(err.to_string()),
    }
}

/// A loopback HTTP server for the transports' tests.
#[cfg(test)]
pub(crate) mod test_server {
    use serde_json::Value;
    use std::io::Write;
    use std::sync::{mpsc, Arc};
    use std::thread;

    /// A request as the test server saw it.
    #[derive(Debug, Clone)]
    pub(crate) struct Seen {
        pub method: String,
        pub url: String,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Seen {
        pub fn header(&self, name: &str) -> Option<&str> {
            let found = self
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name));
            found.map(|(_, v)| v.as_str())
        }
    }

    /// A loopback server answering each request with `handler`; requests are reported on the
    /// returned channel. Returns the base URL.
    pub(crate) fn serve<F>(handler: F) -> (String, mpsc::Receiver<Seen>)
    where
        F: Fn(&Seen, tiny_http::Request) + Send + Sync + 'static,
    {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let (tx, rx) = mpsc::channel();
        let handler = Arc::new(handler);
        thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                let seen = Seen {
                    method: request.method().to_string(),
                    url: request.url().to_owned(),
                    headers: request
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect(),
                    body,
                };
                let _ = tx.send(seen.clone());
                let handler = Arc::clone(&handler);
                thread::spawn(move || handler(&seen, request));
            }
        });
        (format!("http://127.0.0.1:{port}"), rx)
    }

    /// Writes a raw chunked response; each part is flushed as its own chunk, after `pause(i)`.
    pub(crate) fn respond_streaming(
        request: tiny_http::Request,
        status: u16,
        headers: &[(&str, &str)],
        parts: &[String],
        mut pause: impl FnMut(usize),
    ) {
        let mut out = request.into_writer();
        let mut head =
            format!("HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let _ = out.write_all(head.as_bytes());
        let _ = out.flush();
        for (i, part) in parts.iter().enumerate() {
            pause(i);
            let _ = write!(out, "{:x}\r\n{part}\r\n", part.len());
            let _ = out.flush();
        }
        let _ = out.write_all(b"0\r\n\r\n");
        let _ = out.flush();
    }

    pub(crate) fn respond(
        request: tiny_http::Request,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
    ) {
        let mut response = tiny_http::Response::from_string(body).with_status_code(status);
        for (name, value) in headers {
            let header = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap();
            response.add_header(header);
        }
        let _ = request.respond(response);
    }

    pub(crate) fn sse(message: &Value) -> String {
        format!("event: message\ndata: {message}\n\n")
    }
}
