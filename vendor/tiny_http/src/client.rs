use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

use crate::common::{HTTPVersion, Method};
use crate::util::{ConnState, DeadlineReader, RefinedTcpStream};
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{HandOverEarly, Request, ServerOptions};

/// mcp-gateway patch: the reading half of a connection, under the request deadline.
type Source = BufReader<DeadlineReader<RefinedTcpStream>>;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<Source>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<Source>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // mcp-gateway patch: the connection's read deadline, and the limits of a request
    conn: ConnState,
    max_head_bytes: usize,
    max_headers: usize,
    preread_body_bytes: usize,
    hand_over_early: Option<HandOverEarly>,
    // bytes the head being read may still take
    head_bytes_left: usize,

    // mcp-gateway patch: the answer of the request handed over last (see `next`)
    answered: Receiver<()>,
    notify_answered: Sender<()>,
    answering: bool,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
    /// mcp-gateway patch: the head is longer than `max_head_bytes` or has more than
    /// `max_headers` header lines
    HeadTooLarge,
    /// mcp-gateway patch: an HTTP version above 1.1 (upstream answered it while the request
    /// it had built held the previous writer's turn, which blocked the connection forever)
    UnsupportedVersion,
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        options: &ServerOptions,
    ) -> ClientConnection {
        let (notify_answered, answered) = mpsc::channel();
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();

        // mcp-gateway patch: reads go through the deadline, below the buffer
        let conn = ConnState::new(options.request_timeout);
        let mut source =
            SequentialReaderBuilder::new(BufReader::with_capacity(1024, conn.reader(read_socket)));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            conn,
            max_head_bytes: options.max_head_bytes,
            max_headers: options.max_headers,
            preread_body_bytes: options.preread_body_bytes,
            hand_over_early: options.hand_over_early.clone(),
            head_bytes_left: options.max_head_bytes,
            answered,
            notify_answered,
            answering: false,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    ///
    /// mcp-gateway patch: every byte counts against `head_bytes_left`, so that neither one
    /// line nor the whole head can grow without bound.
    /// Reads the next line of the head into `buf` (emptied first; the line without its CRLF,
    /// checked to be ASCII).
    /// mcp-gateway patch: one buffer for every line of a head, kept by the caller (a line used
    /// to be an allocation of its own, and then copied into the header's strings).
    fn read_next_line(&mut self, buf: &mut Vec<u8>) -> Result<(), ReadError> {
        // mcp-gateway patch: scans the buffered bytes for the line's end instead of reading
        // one byte per call through the sequential reader (a fifth of a request's CPU)
        buf.clear();
        let reader = self.next_header_source.wait_turn();
        loop {
            let available = match reader.fill_buf() {
                Ok(available) => available,
                // a signal (SIGHUP asks for a reload) is no reason to drop the connection
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReadError::ReadIoError(e)),
            };
            if available.is_empty() {
                return Err(ReadError::ReadIoError(IoError::new(
                    ErrorKind::ConnectionAborted,
                    "Unexpected EOF",
                )));
            }
            let allowed = available.len().min(self.head_bytes_left);
            if allowed == 0 {
                return Err(ReadError::HeadTooLarge);
            }
            let (taken, line_end) = match available[..allowed].iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (allowed, false),
            };
            buf.extend_from_slice(&available[..taken]);
            reader.consume(taken);
            self.head_bytes_left -= taken;
            // a bare LF is part of the line, as before: only CRLF ends it
            if line_end && buf.len() >= 2 && buf[buf.len() - 2] == b'\r' {
                buf.truncate(buf.len() - 2);
                if !buf.is_ascii() {
                    return Err(ReadError::ReadIoError(IoError::new(
                        ErrorKind::InvalidInput,
                        "Header is not in ASCII",
                    )));
                }
                return Ok(());
            }
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // mcp-gateway patch: finish the previous request's body, then start this request's
        // deadline (now if some of it is already buffered, else at its first byte) and its
        // head budget
        let buffered = self.finish_previous_body()?;
        self.conn.arm(buffered);
        self.head_bytes_left = self.max_head_bytes;

        let (method, path, version, headers) = {
            // reading the request line
            let mut line = Vec::with_capacity(128);
            let (method, path, version) = {
                self.read_next_line(&mut line)?;
                parse_request_line(ascii_str(&line).trim())?
            };

            // mcp-gateway patch: see ReadError::UnsupportedVersion
            if version > (1, 1) {
                return Err(ReadError::UnsupportedVersion);
            }

            // getting all headers
            let headers = {
                // mcp-gateway patch: room for a usual client's headers from the start
                let mut headers = Vec::with_capacity(16);
                loop {
                    self.read_next_line(&mut line)?;

                    if line.is_empty() {
                        break;
                    };
                    // mcp-gateway patch
                    if headers.len() >= self.max_headers {
                        return Err(ReadError::HeadTooLarge);
                    }
                    headers.push(match FromStr::from_str(ascii_str(&line).trim()) {
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // mcp-gateway patch: the body read in advance, unless the application wants the
        // request at once
        let preread_body_bytes = match &self.hand_over_early {
            Some(early) if early.applies(&method, &path, &headers) => 0,
            _ => self.preread_body_bytes,
        };

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
            preread_body_bytes,
            Some(self.conn.clone()),
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
                request::RequestCreationError::InvalidContentLength => {
                    ReadError::WrongHeader(version)
                }
            }
        })?;

        // return the request
        Ok(request)
    }
}

impl ClientConnection {
    /// mcp-gateway patch: reads the next request while the previous one may still be being
    /// answered. Waiting idle for it, the socket's read timeout gives up the connection only
    /// once that answer is done: a call that takes longer than the timeout keeps its
    /// connection for the client's next request.
    fn read_while_answering(&mut self) -> Result<Request, ReadError> {
        loop {
            match self.read() {
                Err(ReadError::ReadIoError(ref e))
                    if e.kind() == ErrorKind::WouldBlock && self.still_answering() => {}
                other => return other,
            }
        }
    }

    /// Whether the request handed over last is still being answered (without waiting).
    fn still_answering(&mut self) -> bool {
        if self.answering {
            match self.answered.try_recv() {
                Ok(()) | Err(TryRecvError::Disconnected) => self.answering = false,
                Err(TryRecvError::Empty) => {}
            }
        }
        self.answering
    }

    /// Waits until the request handed over last is answered; false if it never will be.
    pub(crate) fn wait_for_answer(&mut self) -> bool {
        if !self.answering {
            return true;
        }
        self.answering = false;
        self.answered.recv().is_ok()
    }

    /// mcp-gateway patch: waits until the previous request's body is done with the stream and
    /// skips what the application left unread of it (still under that request's deadline).
    /// Returns whether some of the next request is already buffered. A connection whose
    /// previous body cannot be skipped carries no more requests.
    fn finish_previous_body(&mut self) -> Result<bool, ReadError> {
        self.next_header_source.wait_turn();
        let aborted = |why: &str| {
            ReadError::ReadIoError(IoError::new(ErrorKind::ConnectionAborted, why.to_string()))
        };
        if self.conn.is_poisoned() {
            return Err(aborted("the previous body was not read to its end"));
        }
        let mut skip = self.conn.take_skip();
        if skip > 0 {
            // (Only here: zeroing 8 KiB for every request showed in profiles.)
            let mut scratch = [0u8; 8192];
            while skip > 0 {
                let want = skip.min(scratch.len());
                match self.next_header_source.read(&mut scratch[..want]) {
                    Ok(0) | Err(_) => {
                        return Err(aborted("the previous request's body did not come"))
                    }
                    Ok(n) => skip -= n,
                }
            }
        }
        Ok(!self.next_header_source.wait_turn().buffer().is_empty())
    }

    /// mcp-gateway patch: answers `status` with `Connection: close` (the caller then ends the
    /// connection), and flushes the answer. Written by hand: `Response` drops a `Connection`
    /// header.
    fn answer_and_close(&mut self, status: u16, body: &str) {
        use crate::StatusCode;

        let mut writer = self.sink.next().unwrap();
        let answer = format!(
            "HTTP/1.1 {} {}\r\nConnection: close\r\nContent-Type: text/plain; charset=UTF-8\r\n\
             Content-Length: {}\r\n\r\n{}",
            status,
            StatusCode(status).default_reason_phrase(),
            body.len(),
            body
        );
        if writer.write_all(answer.as_bytes()).is_ok() {
            writer.flush().ok();
        }
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            // mcp-gateway patch: still skip the unread rest of the last body, so that closing
            // with it unread does not reset the connection under the answer
            let _ = self.finish_previous_body();
            return None;
        }

        // mcp-gateway patch: every answer that ends the connection says so
        // (`Connection: close`) and is flushed; a head over the limits gets 431; an HTTP version
        // above 1.1 gets 505 before any `Request` exists (see ReadError::UnsupportedVersion).
        let rq = match self.read_while_answering() {
            Err(ReadError::WrongRequestLine) => {
                self.answer_and_close(400, "");
                return None; // we don't know where the next request would start,
                             // se we have to close
            }

            Err(ReadError::WrongHeader(_)) => {
                self.answer_and_close(400, "");
                return None; // we don't know where the next request would start,
                             // se we have to close
            }

            Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                // request timeout
                self.answer_and_close(408, "");
                return None; // closing the connection
            }

            Err(ReadError::ExpectationFailed(_)) => {
                self.answer_and_close(417, "");
                return None; // TODO: should be recoverable, but needs handling in case of body
            }

            Err(ReadError::HeadTooLarge) => {
                self.answer_and_close(431, "");
                return None;
            }

            Err(ReadError::UnsupportedVersion) => {
                self.answer_and_close(505, "This server only supports HTTP versions 1.0 and 1.1");
                return None;
            }

            // mcp-gateway patch: a head that is not ASCII, or a chunked body read here that is
            // broken, gets 400 (upstream: the connection closed without an answer)
            Err(ReadError::ReadIoError(ref err))
                if matches!(err.kind(), ErrorKind::InvalidInput | ErrorKind::InvalidData) =>
            {
                self.answer_and_close(
                    400,
                    "malformed request: non-ASCII head or broken chunked body",
                );
                return None;
            }

            Err(ReadError::ReadIoError(_)) => return None,

            Ok(rq) => rq,
        };

        // mcp-gateway patch: one request of a connection at a time in the application: the
        // next one is handed over once the previous one is answered (usually it already is)
        if !self.wait_for_answer() {
            return None;
        }
        let rq = rq.with_notify_sender(self.notify_answered.clone());
        self.answering = true;

        // updating the status of the connection
        let connection_header = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str());

        let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

        match lowercase {
            Some(ref val) if val.contains("close") => self.no_more_requests = true,
            Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
            Some(ref val)
                if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
            {
                self.no_more_requests = true
            }
            None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
            _ => (),
        };

        // returning the request
        Some(rq)
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

/// mcp-gateway patch: a head line that `read_next_line` checked to be ASCII, as text.
fn ascii_str(line: &[u8]) -> &str {
    std::str::from_utf8(line).unwrap_or("")
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
