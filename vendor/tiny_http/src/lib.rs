//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
// mcp-gateway: newer compilers warn about two leftovers of the upstream code.
#![allow(unused_imports, dead_code)]
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use util::{ConnectionLimits, MessagesQueue};

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod client;
mod common;
mod connection;
mod request;
mod response;
mod ssl;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // mcp-gateway patch: the open connections
    connections: Arc<ConnectionLimits>,
}

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// mcp-gateway patch: limits applied to every accepted connection.
///
/// Build it from `ServerOptions::default()` and change the fields wanted.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Read and write timeout of each socket operation (as `from_listener_with_timeouts` sets).
    /// Default: none.
    pub io_timeout: Option<Duration>,

    /// A request's head and the part of its body read in advance must arrive within this,
    /// counted from the request's first byte (not from the idle wait before it on a kept-alive
    /// connection). Past it: 408 and the connection is closed. Reads of a larger body by the
    /// application (after `recv` handed the request over) fail with `io::ErrorKind::TimedOut`
    /// once the same deadline has passed, the time the request waited for a `recv` included;
    /// what the application leaves unread of a body is skipped by the connection's own thread
    /// under the same deadline (past it, the connection is closed after the answer). After a
    /// `100 Continue` (sent when the application first reads the body) the body gets a fresh
    /// deadline; `Request::upgrade` lifts the deadline.
    ///
    /// The deadline is looked at when a read starts and when it returns, so a read blocked on
    /// a silent client ends only with `io_timeout` (a socket read timeout inside a request
    /// counts as the request timing out): the bound is about `request_timeout + io_timeout`,
    /// and there is none without `io_timeout`. Default: none.
    pub request_timeout: Option<Duration>,

    /// Largest request head (request line plus headers, bytes, line ends included). Over:
    /// 431 and the connection is closed. Default 32 KiB.
    pub max_head_bytes: usize,

    /// Most header lines in a request. Over: 431 and the connection is closed. Default 100.
    pub max_headers: usize,

    /// Bodies up to this size (`Content-Length`, or chunked bodies after decoding) are read
    /// completely in the connection's own thread before the request is handed to `recv`, so
    /// that the application never waits on a slow client for them. A longer chunked body is
    /// handed over as what was read so far followed by the rest; a longer `Content-Length`
    /// body is read by the application. Not for requests with `Expect: 100-continue`.
    /// Default 64 KiB (upstream: 1024 for `Content-Length` bodies only).
    pub preread_body_bytes: usize,

    /// Most connections open at once (0: no limit). A connection over the limit is answered
    /// `503 Service Unavailable` (`Connection: close`, `Retry-After: 1`, empty body) by the
    /// accept thread, without blocking it, and closed at once. Default 0.
    pub max_connections: usize,

    /// Most connections open at once from one client address (0: no limit), IPv6 addresses
    /// counted by their /64 and IPv4-mapped IPv6 addresses as IPv4; Unix-socket clients are
    /// only counted in `max_connections`. Same 503 answer. Default 0.
    pub max_connections_per_address: usize,

    /// Requests for which this returns true are handed to `recv` as soon as their head is
    /// read, without reading any of their body in advance: for requests that the application
    /// refuses by their head alone (such as a `Content-Length` over its own limit for that
    /// URL), so that it answers at once instead of after the body (or after `request_timeout`
    /// if the client waits for an answer before sending it). Their body is read by the
    /// application if it wants it, under `request_timeout`; what it leaves unread is skipped by
    /// the connection's own thread after the answer. Default: none.
    pub hand_over_early: Option<HandOverEarly>,
}

/// mcp-gateway patch: see `ServerOptions::hand_over_early`.
#[derive(Clone)]
pub struct HandOverEarly(Arc<HeadPredicate>);

type HeadPredicate = dyn Fn(&Method, &str, &[Header]) -> bool + Send + Sync;

impl HandOverEarly {
    /// `f` is called in the connection's thread with the request's method, URL and headers.
    pub fn new<F>(f: F) -> HandOverEarly
    where
        F: Fn(&Method, &str, &[Header]) -> bool + Send + Sync + 'static,
    {
        HandOverEarly(Arc::new(f))
    }

    pub(crate) fn applies(&self, method: &Method, url: &str, headers: &[Header]) -> bool {
        (self.0)(method, url, headers)
    }
}

impl std::fmt::Debug for HandOverEarly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandOverEarly(..)")
    }
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            io_timeout: None,
            request_timeout: None,
            max_head_bytes: 32 * 1024,
            max_headers: 100,
            preread_body_bytes: 64 * 1024,
            max_connections: 0,
            max_connections_per_address: 0,
            hand_over_early: None,
        }
    }
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with_timeouts(listener, ssl_config, None)
    }

    /// mcp-gateway patch: like `from_listener`, and every accepted TCP connection gets
    /// `io_timeout` as its read and write timeout, so that a client that stalls mid-request or
    /// stops reading cannot hold a thread forever. (Setting SO_RCVTIMEO on the listener instead
    /// makes `accept` itself time out, which ends the accept loop.) The other limits are those
    /// of `ServerOptions::default()`.
    pub fn from_listener_with_timeouts<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        io_timeout: Option<std::time::Duration>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let options = ServerOptions {
            io_timeout,
            ..ServerOptions::default()
        };
        Self::from_listener_with_options(listener, ssl_config, options)
    }

    /// mcp-gateway patch: like `from_listener`, with the limits of `options` on every
    /// accepted connection (see `ServerOptions`).
    ///
    /// Each connection is served by its own thread, which reads a request's head and short
    /// body, hands the request to `recv`, and reads the connection's next request only once
    /// that one has been answered (upstream read pipelined requests ahead without limit).
    pub fn from_listener_with_options<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        options: ServerOptions,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        let io_timeout = options.io_timeout;
        let connections =
            ConnectionLimits::new(options.max_connections, options.max_connections_per_address);
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // building the SSL capabilities
        #[cfg(all(feature = "ssl-openssl", feature = "ssl-rustls"))]
        compile_error!(
            "Features 'ssl-openssl' and 'ssl-rustls' must not be enabled at the same time"
        );
        #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
        type SslContext = ();
        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
        type SslContext = crate::ssl::SslContextImpl;
        let ssl: Option<SslContext> = {
            match ssl_config {
                #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                Some(config) => Some(SslContext::from_pem(
                    config.certificate,
                    Zeroizing::new(config.private_key),
                )?),
                #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                Some(_) => return Err(
                    "Building a server with SSL requires enabling the `ssl` feature in tiny-http"
                        .into(),
                ),
                None => None,
            }
        };

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let inside_connections = connections.clone();
        thread::spawn(move || {
            // a tasks pool is used to dispatch the connections into threads
            let tasks_pool = util::TaskPool::new();

            log::debug!("Running accept thread");
            // mcp-gateway patch: refusals are logged at most every 10 s, with a count, so that a
            // flood of connections does not flood the log (on a router, its flash) as well.
            let mut refused_since_log: u64 = 0;
            let mut last_refusal_log: Option<std::time::Instant> = None;
            while !inside_close_trigger.load(Relaxed) {
                let new_client = match server.accept() {
                    Ok((sock, peer)) => {
                        // mcp-gateway patch: count the connection, or refuse it
                        let slot = match inside_connections.acquire(peer.as_ref()) {
                            Some(slot) => slot,
                            None => {
                                refused_since_log += 1;
                                let due = last_refusal_log
                                    .map_or(true, |at| at.elapsed() >= std::time::Duration::from_secs(10));
                                if due {
                                    log::warn!(
                                        "refused {} connection(s) over the connection limits (the latest from {:?})",
                                        refused_since_log,
                                        peer
                                    );
                                    refused_since_log = 0;
                                    last_refusal_log = Some(std::time::Instant::now());
                                }
                                if ssl.is_none() {
                                    sock.refuse_busy();
                                }
                                continue;
                            }
                        };
                        if let Some(timeout) = io_timeout {
                            sock.set_io_timeout(timeout);
                        }
                        use util::RefinedTcpStream;
                        let (read_closable, write_closable) = match ssl {
                            None => RefinedTcpStream::new(sock),
                            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                            Some(ref ssl) => {
                                // trying to apply SSL over the connection
                                // if an error occurs, we just close the socket and resume listening
                                let sock = match ssl.accept(sock) {
                                    Ok(s) => s,
                                    Err(_) => continue,
                                };

                                RefinedTcpStream::new(sock)
                            }
                            #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                            Some(ref _ssl) => unreachable!(),
                        };

                        Ok((
                            ClientConnection::new(write_closable, read_closable, &options),
                            slot,
                        ))
                    }
                    Err(e) => Err(e),
                };

                match new_client {
                    Ok((client, slot)) => {
                        let messages = inside_messages.clone();
                        let mut client = Some((client, slot));
                        tasks_pool.spawn(Box::new(move || {
                            if let Some((client, slot)) = client.take() {
                                // Synchronization is needed for HTTPS requests to avoid a deadlock
                                // mcp-gateway patch: and for all requests, so that one
                                // connection has one request at a time in the queue or in the
                                // application (upstream queued pipelined requests without limit)
                                // mcp-gateway patch: the connection hands over one
                                // request at a time (see `ClientConnection::next`), and its
                                // place is given back once its last request is answered (a
                                // stream counts while it is open)
                                let mut client = client;
                                for rq in client.by_ref() {
                                    messages.push(rq.into());
                                }
                                client.wait_for_answer();
                                drop(slot);
                            }
                        }));
                    }

                    // mcp-gateway patch: errors that concern one connection (or a
                    // momentary shortage of file descriptors) must not end the accept loop.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::Interrupted
                                | std::io::ErrorKind::ConnectionAborted
                                | std::io::ErrorKind::ConnectionReset
                        ) || e.raw_os_error() == Some(24) || e.raw_os_error() == Some(23) =>
                    {
                        log::warn!("Error accepting new client: {}", e);
                        if e.raw_os_error() == Some(24) || e.raw_os_error() == Some(23) {
                            thread::sleep(std::time::Duration::from_millis(100));
                        }
                        continue;
                    }
                    Err(e) => {
                        log::error!("Error accepting new client: {}", e);
                        inside_messages.push(e.into());
                        break;
                    }
                }
            }
            log::debug!("Terminating accept thread");
        });

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            connections,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    ///
    /// mcp-gateway patch: implemented (upstream panicked): the connections whose thread is
    /// still serving them, as counted for `ServerOptions::max_connections`.
    pub fn num_connections(&self) -> usize {
        self.connections.open()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
