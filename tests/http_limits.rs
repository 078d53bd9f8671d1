//! The limits the vendored tiny_http puts on every connection (vendor/tiny_http, "mcp-gateway
//! patch"): request deadline, head limits, bodies read before the request is handed over, and
//! connection counts. Each test runs its own server on a loopback port with its own worker
//! thread, and every wait is bounded.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tiny_http::{HandOverEarly, Request, Response, Server, ServerOptions};

const MS: Duration = Duration::from_millis(1);

fn start(options: ServerOptions) -> (Arc<Server>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = Server::from_listener_with_options(listener, None, options).expect("server");
    (Arc::new(server), addr)
}

fn options(request_timeout_ms: u32, io_timeout_ms: u32) -> ServerOptions {
    ServerOptions {
        request_timeout: Some(request_timeout_ms * MS),
        io_timeout: Some(io_timeout_ms * MS),
        ..ServerOptions::default()
    }
}

/// FNV-1a, to compare bodies through a short answer.
fn digest(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The answer of the test worker: the path, the body's length and digest, or the error that
/// reading the body gave.
fn answer_for(request: &mut Request) -> String {
    let mut body = Vec::new();
    match request.as_reader().read_to_end(&mut body) {
        Ok(_) => format!("{} {} {:x}", request.url(), body.len(), digest(&body)),
        Err(e) => format!("{} error {:?}", request.url(), e.kind()),
    }
}

fn expected(path: &str, body: &[u8]) -> String {
    format!("{path} {} {:x}", body.len(), digest(body))
}

/// A worker thread that answers every request with `answer_for`, until dropped.
struct Worker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    fn start(server: &Arc<Server>) -> Worker {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let server = Arc::clone(server);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match server.recv_timeout(20 * MS) {
                        Ok(Some(mut request)) => {
                            let text = answer_for(&mut request);
                            let _ = request.respond(Response::from_string(text));
                        }
                        Ok(None) => {}
                        Err(_) => return,
                    }
                }
            })
        };
        Worker {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    stream
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (head, then a Content-Length body); None if the connection ended first.
fn read_answer(stream: &mut TcpStream) -> Option<Answer> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 64 * 1024, "response head too long");
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => return None,
            Err(e) if e.kind() == ErrorKind::ConnectionReset && head.is_empty() => return None,
            Err(e) => panic!("reading a response: {e} after {head:?}"),
        }
    }
    let head = String::from_utf8(head).expect("ascii head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut answer = Answer {
        status,
        headers,
        body: String::new(),
    };
    let length: usize = answer
        .header("Content-Length")
        .map(|v| v.parse().expect("content length"))
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("response body");
    answer.body = String::from_utf8(body).expect("utf8 body");
    Some(answer)
}

/// True if the server has closed the connection (EOF or reset) within the read timeout.
fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

fn post_head(path: &str, length: usize) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {length}\r\n\r\n")
}

/// One request on a new connection, answered.
fn request(addr: SocketAddr, raw: &[u8]) -> Answer {
    let mut stream = connect(addr);
    stream.write_all(raw).expect("send");
    read_answer(&mut stream).expect("an answer")
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn chunked(data: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in data.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn a_trickled_body_is_handed_over_only_once_complete() {
    let (server, addr) = start(options(5000, 2000));
    let data = body(2000);
    let last_part_sent = Arc::new(AtomicBool::new(false));
    let client = {
        let data = data.clone();
        let last_part_sent = Arc::clone(&last_part_sent);
        thread::spawn(move || {
            let mut stream = connect(addr);
            stream
                .write_all(post_head("/slow", data.len()).as_bytes())
                .unwrap();
            let parts: Vec<&[u8]> = data.chunks(200).collect();
            for (i, part) in parts.iter().enumerate() {
                thread::sleep(60 * MS);
                if i + 1 == parts.len() {
                    last_part_sent.store(true, Ordering::SeqCst);
                }
                stream.write_all(part).unwrap();
            }
            read_answer(&mut stream).expect("an answer")
        })
    };
    let started = Instant::now();
    let mut empty_polls = 0;
    let mut request = loop {
        assert!(started.elapsed() < 5 * 1000 * MS, "no request came");
        if let Some(request) = server.recv_timeout(20 * MS).unwrap() {
            break request;
        }
        empty_polls += 1;
    };
    assert!(
        last_part_sent.load(Ordering::SeqCst),
        "the request was handed over before its body was complete"
    );
    assert!(empty_polls >= 10, "recv was polled while the body trickled");
    let read_started = Instant::now();
    let mut received = Vec::new();
    request.as_reader().read_to_end(&mut received).unwrap();
    assert!(
        read_started.elapsed() < 50 * MS,
        "the body was already read"
    );
    assert_eq!(received, data);
    request.respond(Response::from_string("ok")).unwrap();
    let answer = client.join().unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
}

/// Sends `head`, then one byte every `every` (an endless header line, or body bytes), until
/// the connection fails or `stop` is set.
fn trickler(
    addr: SocketAddr,
    head: &str,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> (TcpStream, JoinHandle<()>) {
    let mut stream = connect(addr);
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let handle = thread::spawn(move || {
        for _ in 0..100 {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            thread::sleep(every);
            if writer.write_all(b"X").is_err() {
                return;
            }
        }
    });
    (stream, handle)
}

#[test]
fn a_trickled_head_or_body_gets_408_and_is_closed() {
    let (server, addr) = start(options(400, 2000));
    for head in [
        "GET /head HTTP/1.1\r\nHost: test\r\n".to_string(),
        post_head("/body", 100),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let (mut stream, writer) = trickler(addr, &head, 100 * MS, Arc::clone(&stop));
        let answer = read_answer(&mut stream).expect("an answer");
        let took = started.elapsed();
        stop.store(true, Ordering::SeqCst);
        assert_eq!(answer.status, 408, "{head:?}");
        assert_eq!(answer.header("Connection"), Some("close"));
        assert!(took >= 380 * MS, "{head:?}: 408 after {took:?}");
        assert!(took < 1500 * MS, "{head:?}: 408 after {took:?}");
        assert!(closed(&mut stream), "{head:?}: still open");
        writer.join().unwrap();
    }
    assert!(
        server.try_recv().unwrap().is_none(),
        "no request was handed over"
    );
}

#[test]
fn the_deadline_counts_from_the_first_byte_not_the_idle_wait() {
    let (server, addr) = start(options(300, 2000));
    let _worker = Worker::start(&server);
    let mut stream = connect(addr);
    stream.write_all(get("/first").as_bytes()).unwrap();
    let answer = read_answer(&mut stream).expect("first answer");
    assert_eq!(answer.body, expected("/first", b""));
    // idle longer than request_timeout, less than io_timeout
    thread::sleep(800 * MS);
    let data = body(500);
    let mut second = post_head("/second", data.len()).into_bytes();
    second.extend_from_slice(&data);
    stream.write_all(&second).unwrap();
    let answer = read_answer(&mut stream).expect("second answer");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, expected("/second", &data));
}

#[test]
fn a_head_over_max_head_bytes_gets_431() {
    let (server, addr) = start(ServerOptions {
        max_head_bytes: 1024,
        ..options(3000, 2000)
    });
    let _worker = Worker::start(&server);
    // one endless header line (and an endless request line): the server stops reading at the
    // limit, whatever the client goes on sending
    for start_of_head in ["GET / HTTP/1.1\r\nX-Long: ", "GET /"] {
        let mut stream = connect(addr);
        let mut writer = stream.try_clone().unwrap();
        let start_of_head = start_of_head.to_string();
        let sender = thread::spawn(move || {
            if writer.write_all(start_of_head.as_bytes()).is_err() {
                return 0;
            }
            let filler = [b'a'; 4096];
            let mut sent = 0;
            // at most 4 MiB; the server stops reading long before
            while sent < 4 << 20 {
                match writer.write(&filler) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            sent
        });
        let answer = read_answer(&mut stream).expect("an answer");
        assert_eq!(answer.status, 431);
        assert_eq!(answer.header("Connection"), Some("close"));
        assert!(closed(&mut stream));
        let sent = sender.join().unwrap();
        assert!(sent < 4 << 20, "the client could send all it wanted");
    }
    // a head just within the limit is served, and the server still serves normal requests
    let padding = "p".repeat(1024 - get("/").len() - "X-Pad: \r\n".len());
    let head = format!("GET / HTTP/1.1\r\nHost: test\r\nX-Pad: {padding}\r\n\r\n");
    assert_eq!(head.len(), 1024);
    assert_eq!(request(addr, head.as_bytes()).status, 200);
    assert_eq!(
        request(addr, get("/after").as_bytes()).body,
        expected("/after", b"")
    );
}

#[test]
fn more_than_max_headers_gets_431() {
    let (server, addr) = start(ServerOptions {
        max_headers: 10,
        ..options(3000, 2000)
    });
    let _worker = Worker::start(&server);
    let head = |n: usize| {
        let mut head = "GET /h HTTP/1.1\r\nHost: test\r\n".to_string();
        for i in 1..n {
            head.push_str(&format!("X-{i}: {i}\r\n"));
        }
        head + "\r\n"
    };
    assert_eq!(request(addr, head(10).as_bytes()).status, 200);
    let mut stream = connect(addr);
    stream.write_all(head(11).as_bytes()).unwrap();
    let answer = read_answer(&mut stream).expect("an answer");
    assert_eq!(answer.status, 431);
    assert!(closed(&mut stream));
}

#[test]
fn chunked_bodies_are_read_ahead_up_to_the_limit_and_fully_after_it() {
    let (server, addr) = start(ServerOptions {
        preread_body_bytes: 4096,
        ..options(5000, 2000)
    });
    let head = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
    };

    // within the limit: trickled chunk by chunk, handed over only once complete
    let small = body(1000);
    let last_chunk_sent = Arc::new(AtomicBool::new(false));
    let client = {
        let encoded = chunked(&small, 100);
        let head = head("/small");
        let last_chunk_sent = Arc::clone(&last_chunk_sent);
        thread::spawn(move || {
            let mut stream = connect(addr);
            stream.write_all(head.as_bytes()).unwrap();
            let (chunks, end) = encoded.split_at(encoded.len() - 5);
            for part in chunks.chunks(105) {
                thread::sleep(40 * MS);
                stream.write_all(part).unwrap();
            }
            thread::sleep(40 * MS);
            last_chunk_sent.store(true, Ordering::SeqCst);
            stream.write_all(end).unwrap();
            stream
        })
    };
    let started = Instant::now();
    let mut request = loop {
        assert!(started.elapsed() < 5 * 1000 * MS, "no request came");
        if let Some(request) = server.recv_timeout(20 * MS).unwrap() {
            break request;
        }
    };
    assert!(last_chunk_sent.load(Ordering::SeqCst), "handed over early");
    let read_started = Instant::now();
    let answer = answer_for(&mut request);
    assert!(
        read_started.elapsed() < 50 * MS,
        "the body was already read"
    );
    assert_eq!(answer, expected("/small", &small));
    request.respond(Response::from_string(answer)).unwrap();
    let mut stream = client.join().unwrap();
    assert_eq!(read_answer(&mut stream).expect("answer").status, 200);

    // over the limit: the worker reads it all, and the connection goes on after it
    let _worker = Worker::start(&server);
    let large = body(100_000);
    let mut raw = head("/large").into_bytes();
    raw.extend_from_slice(&chunked(&large, 7000));
    raw.extend_from_slice(get("/next").as_bytes());
    stream.write_all(&raw).unwrap();
    let answer = read_answer(&mut stream).expect("large answer");
    assert_eq!(answer.body, expected("/large", &large));
    let answer = read_answer(&mut stream).expect("next answer");
    assert_eq!(answer.body, expected("/next", b""));
}

#[test]
fn connections_over_the_limits_get_503() {
    let (server, addr) = start(ServerOptions {
        max_connections: 2,
        ..options(3000, 2000)
    });
    let _worker = Worker::start(&server);
    let mut open = Vec::new();
    for i in 0..2 {
        let mut stream = connect(addr);
        stream.write_all(get(&format!("/{i}")).as_bytes()).unwrap();
        assert_eq!(read_answer(&mut stream).expect("answer").status, 200);
        open.push(stream);
    }
    assert_eq!(server.num_connections(), 2);
    assert_busy(addr);
    open.clear();
    assert_served_again(addr);

    // per address: here every client is 127.0.0.1
    let (server, addr) = start(ServerOptions {
        max_connections_per_address: 1,
        ..options(3000, 2000)
    });
    let _worker = Worker::start(&server);
    let mut first = connect(addr);
    first.write_all(get("/1").as_bytes()).unwrap();
    assert_eq!(read_answer(&mut first).expect("answer").status, 200);
    assert_busy(addr);
    drop(first);
    assert_served_again(addr);
}

/// A new connection is refused at once with the 503, even if it sends nothing.
fn assert_busy(addr: SocketAddr) {
    let mut stream = connect(addr);
    let answer = read_answer(&mut stream).expect("a 503");
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("Connection"), Some("close"));
    assert_eq!(answer.header("Retry-After"), Some("1"));
    assert_eq!(answer.header("Content-Length"), Some("0"));
    assert!(closed(&mut stream));
}

/// Once connections have closed, new ones are served again (the server notices the close
/// within a moment).
fn assert_served_again(addr: SocketAddr) {
    let started = Instant::now();
    loop {
        let answer = request(addr, get("/again").as_bytes());
        if answer.status == 200 {
            return;
        }
        assert_eq!(answer.status, 503);
        assert!(started.elapsed() < 3000 * MS, "still refused");
        thread::sleep(20 * MS);
    }
}

#[test]
fn per_address_limits_count_ipv4_and_ipv6_apart() {
    // a dual-stack listener: 127.0.0.1 arrives as ::ffff:127.0.0.1 and is counted as IPv4
    // (probed on a listener of its own, so that the probes are not counted)
    let dual_stack = |listener: &TcpListener| {
        let port = listener.local_addr().unwrap().port();
        let v4: SocketAddr = ([127, 0, 0, 1], port).into();
        let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        (v4, v6)
    };
    let Ok(probe) = TcpListener::bind("[::]:0") else {
        eprintln!("no IPv6 here; skipped");
        return;
    };
    let (v4, v6) = dual_stack(&probe);
    if TcpStream::connect(v4).is_err() || TcpStream::connect(v6).is_err() {
        eprintln!("not dual-stack here; skipped");
        return;
    }
    drop(probe);
    let listener = TcpListener::bind("[::]:0").expect("bind [::]");
    let (v4, v6) = dual_stack(&listener);
    let options = ServerOptions {
        max_connections_per_address: 1,
        ..options(3000, 2000)
    };
    let server = Arc::new(Server::from_listener_with_options(listener, None, options).unwrap());
    let _worker = Worker::start(&server);
    let mut a = connect(v4);
    a.write_all(get("/v4").as_bytes()).unwrap();
    assert_eq!(read_answer(&mut a).expect("answer").status, 200);
    assert_busy(v4);
    let mut b = connect(v6);
    b.write_all(get("/v6").as_bytes()).unwrap();
    assert_eq!(read_answer(&mut b).expect("answer").status, 200);
    assert_busy(v6);
}

/// Waits (a bounded time) until the server has seen all its connections closed.
fn wait_for_no_connections(server: &Server) {
    let started = Instant::now();
    while server.num_connections() > 0 {
        assert!(started.elapsed() < 3000 * MS, "connections left open");
        thread::sleep(10 * MS);
    }
}

#[test]
fn a_worker_reading_a_stalled_large_body_times_out() {
    let request_timeout = 500;
    let io_timeout = 400;
    let (server, addr) = start(ServerOptions {
        preread_body_bytes: 1024,
        ..options(request_timeout, io_timeout)
    });
    // one client stops after part of its body; the other trickles it slowly
    for trickle in [false, true] {
        let mut stream = connect(addr);
        let mut raw = post_head("/stalled", 10_000).into_bytes();
        raw.extend_from_slice(&body(2000));
        stream.write_all(&raw).unwrap();
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let mut writer = stream.try_clone().unwrap();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                for _ in 0..100 {
                    if !trickle || stop.load(Ordering::SeqCst) {
                        return;
                    }
                    thread::sleep(100 * MS);
                    if writer.write_all(b"x").is_err() {
                        return;
                    }
                }
            })
        };
        let mut request = server
            .recv_timeout(2000 * MS)
            .unwrap()
            .expect("handed over with its head");
        let mut received = Vec::new();
        let error = request
            .as_reader()
            .read_to_end(&mut received)
            .expect_err("the body never completes");
        let took = started.elapsed();
        stop.store(true, Ordering::SeqCst);
        assert_eq!(error.kind(), ErrorKind::TimedOut, "trickle: {trickle}");
        assert!(received.len() >= 2000, "what came was read");
        assert!(
            took < (request_timeout + io_timeout + 300) * MS,
            "trickle: {trickle}, took {took:?}"
        );
        // answering closes the connection: the rest of the body cannot be skipped
        request
            .respond(Response::from_string("too slow").with_status_code(408))
            .unwrap();
        let answer = read_answer(&mut stream).expect("an answer");
        assert_eq!(answer.status, 408);
        assert!(closed(&mut stream), "trickle: {trickle}: still open");
        writer.join().unwrap();
    }
}

#[test]
fn an_unread_huge_body_neither_aborts_nor_holds_the_worker() {
    // upstream allocated the whole unread remainder of a body when the request was dropped:
    // a Content-Length of a terabyte aborted the process
    let (server, addr) = start(ServerOptions {
        preread_body_bytes: 1024,
        ..options(500, 400)
    });
    let mut stream = connect(addr);
    stream
        .write_all(post_head("/huge", 1 << 40).as_bytes())
        .unwrap();
    stream.write_all(&body(3000)).unwrap();
    let request = server
        .recv_timeout(2000 * MS)
        .unwrap()
        .expect("handed over with its head");
    assert_eq!(request.body_length(), Some(1 << 40));
    let started = Instant::now();
    request
        .respond(Response::from_string("too large").with_status_code(413))
        .unwrap();
    // the rest of the body is skipped by the connection's own thread, not by the worker
    assert!(
        started.elapsed() < 300 * MS,
        "the worker waited for the body"
    );
    let answer = read_answer(&mut stream).expect("an answer");
    assert_eq!(answer.status, 413);
    assert!(closed(&mut stream));
}

#[test]
fn other_bad_heads_are_answered_and_release_the_connection() {
    let (server, addr) = start(options(3000, 2000));
    let _worker = Worker::start(&server);
    // upstream blocked the connection's thread forever on an HTTP/2.0 request line
    let answer = request(addr, b"GET / HTTP/2.0\r\nHost: test\r\n\r\n");
    assert_eq!(answer.status, 505);
    // a Content-Length that is not a number was taken as no body (the body then read as the
    // next request); so were two that disagree
    for lengths in [
        "Content-Length: x1",
        "Content-Length: 1\r\nContent-Length: 2",
    ] {
        let raw = format!("POST / HTTP/1.1\r\nHost: test\r\n{lengths}\r\n\r\nab");
        assert_eq!(request(addr, raw.as_bytes()).status, 400, "{lengths}");
    }
    wait_for_no_connections(&server);
}

#[test]
fn pipelined_requests_are_handed_over_one_at_a_time() {
    let (server, addr) = start(options(3000, 2000));
    let mut stream = connect(addr);
    let mut raw = Vec::new();
    for i in 0..5 {
        raw.extend_from_slice(get(&format!("/p{i}")).as_bytes());
    }
    stream.write_all(&raw).unwrap();
    for i in 0..5 {
        let request = server
            .recv_timeout(2000 * MS)
            .unwrap()
            .expect("the next request");
        assert_eq!(request.url(), format!("/p{i}"));
        // the connection's next request waits for this one's answer
        assert!(server.recv_timeout(100 * MS).unwrap().is_none());
        request
            .respond(Response::from_string(format!("{i}")))
            .unwrap();
    }
    for i in 0..5 {
        let answer = read_answer(&mut stream).expect("an answer");
        assert_eq!(answer.body, format!("{i}"));
    }
}

#[test]
fn a_body_sent_after_100_continue_gets_a_fresh_deadline() {
    let (server, addr) = start(options(400, 2000));
    let data = body(500);
    let mut stream = connect(addr);
    let head = format!(
        "POST /continue HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n\
         Content-Length: {}\r\n\r\n",
        data.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let client = {
        let mut stream = stream.try_clone().unwrap();
        thread::spawn(move || {
            let interim = read_answer(&mut stream).expect("100 Continue");
            assert_eq!(interim.status, 100);
            stream.write_all(&data).unwrap();
            let answer = read_answer(&mut stream).expect("an answer");
            (answer, data)
        })
    };
    let mut request = server
        .recv_timeout(2000 * MS)
        .unwrap()
        .expect("handed over without its body");
    // the request waits for a worker for longer than request_timeout
    thread::sleep(600 * MS);
    let text = answer_for(&mut request);
    request.respond(Response::from_string(text)).unwrap();
    let (answer, data) = client.join().unwrap();
    assert_eq!(answer.body, expected("/continue", &data));
}

#[test]
fn a_request_handed_over_early_is_answered_without_waiting_for_its_body() {
    let over_1000 = |headers: &[tiny_http::Header]| {
        headers.iter().any(|h| {
            h.field.equiv("Content-Length")
                && h.value.as_str().parse::<usize>().is_ok_and(|n| n > 1000)
        })
    };
    let (server, addr) = start(ServerOptions {
        hand_over_early: Some(HandOverEarly::new(move |_, url, headers| {
            url == "/small" && over_1000(headers)
        })),
        ..options(500, 800)
    });
    // the client waits for an answer before it sends its body
    let mut stream = connect(addr);
    stream
        .write_all(post_head("/small", 20_000).as_bytes())
        .unwrap();
    let early = server
        .recv_timeout(1000 * MS)
        .unwrap()
        .expect("handed over before its body");
    let started = Instant::now();
    early
        .respond(Response::from_string("too large").with_status_code(413))
        .unwrap();
    assert!(
        started.elapsed() < 300 * MS,
        "the worker waited for the body"
    );
    assert_eq!(read_answer(&mut stream).expect("an answer").status, 413);
    // the connection's thread waits for the rest of the body for about request_timeout +
    // io_timeout at most
    assert!(closed(&mut stream));
    assert!(
        started.elapsed() < 1500 * MS,
        "closed after {:?}",
        started.elapsed()
    );

    // other requests still have their body read in advance
    let _worker = Worker::start(&server);
    let data = body(1000);
    let mut raw = post_head("/small", data.len()).into_bytes();
    raw.extend_from_slice(&data);
    assert_eq!(request(addr, &raw).body, expected("/small", &data));
}

#[test]
fn a_connection_whose_answer_outlasts_the_io_timeout_carries_the_next_request() {
    // The connection's thread waits idle for the next request while the first is answered;
    // its read timeout (300 ms) must not give the connection up before that answer is done.
    let (server, addr) = start(options(3000, 300));
    let mut stream = connect(addr);
    stream.write_all(get("/slow").as_bytes()).unwrap();
    let request = server
        .recv_timeout(2000 * MS)
        .unwrap()
        .expect("the first request");
    thread::sleep(900 * MS);
    request.respond(Response::from_string("slow")).unwrap();
    assert_eq!(
        read_answer(&mut stream).expect("the slow answer").body,
        "slow"
    );
    stream.write_all(get("/next").as_bytes()).unwrap();
    let request = server
        .recv_timeout(2000 * MS)
        .unwrap()
        .expect("the next request on the same connection");
    assert_eq!(request.url(), "/next");
    request.respond(Response::from_string("next")).unwrap();
    assert_eq!(
        read_answer(&mut stream).expect("the next answer").body,
        "next"
    );
    // Idle after its last answer, it is closed after the read timeout, as before.
    assert!(closed(&mut stream));
    assert_eq!(server.num_connections(), 0);
}
