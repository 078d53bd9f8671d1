//! mcp-gateway patch: a decoder of `Transfer-Encoding: chunked` request bodies that replaces
//! `chunked_transfer::Decoder` on the reading side. That one collects a chunk-size line into a
//! `Vec` without limit (a line without a newline grows it for as long as the client sends), does
//! not accept trailers, and takes an EOF inside a chunk for the end of the body.

use std::io::{Error as IoError, ErrorKind, Read, Result as IoResult};

use super::ConnState;

/// Longest chunk-size line (size and extensions) and longest trailer line, in bytes.
const MAX_LINE: usize = 4096;
/// Most bytes of trailer lines after the last chunk.
const MAX_TRAILER: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, with this many bytes left.
    Data(usize),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// The body ended (last chunk and trailers read).
    Done,
    /// A read failed: the connection cannot be trusted any more.
    Failed,
}

/// Reads a chunked body and returns its decoded data; EOF exactly at its end.
///
/// If `conn` is given and the decoder is dropped before the end of the body, the connection is
/// poisoned (closed after the current request) instead of reading the rest of the body as the
/// next request.
pub struct ChunkedDecoder<R: Read> {
    source: R,
    state: State,
    conn: Option<ConnState>,
}

fn invalid(message: &'static str) -> IoError {
    IoError::new(ErrorKind::InvalidData, message)
}

impl<R: Read> ChunkedDecoder<R> {
    pub fn new(source: R, conn: Option<ConnState>) -> ChunkedDecoder<R> {
        ChunkedDecoder {
            source,
            state: State::Size,
            conn,
        }
    }

    /// True once the whole body (up to and including its trailers) has been read.
    pub fn finished(&self) -> bool {
        self.state == State::Done
    }

    fn byte(&mut self) -> IoResult<u8> {
        let mut b = [0u8; 1];
        loop {
            match self.source.read(&mut b) {
                Ok(0) => {
                    return Err(IoError::new(
                        ErrorKind::UnexpectedEof,
                        "connection closed inside a chunked body",
                    ))
                }
                Ok(_) => return Ok(b[0]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one line up to its CRLF (a bare LF is an error) and returns it without its end;
    /// a line longer than `MAX_LINE` is an error. `budget` counts down the bytes consumed.
    fn line(&mut self, budget: &mut usize) -> IoResult<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let b = self.byte()?;
            if *budget == 0 || line.len() > MAX_LINE {
                return Err(invalid("chunk-size or trailer line too long"));
            }
            *budget -= 1;
            if b == b'\n' {
                if line.pop() != Some(b'\r') {
                    return Err(invalid("bare LF in a chunked body"));
                }
                return Ok(line);
            }
            line.push(b);
        }
    }

    fn read_size(&mut self) -> IoResult<usize> {
        let line = self.line(&mut (MAX_LINE + 2))?;
        let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
        let size = std::str::from_utf8(size)
            .map_err(|_| invalid("bad chunk size"))?
            .trim();
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("bad chunk size"));
        }
        usize::from_str_radix(size, 16).map_err(|_| invalid("chunk size too large"))
    }

    fn read_trailers(&mut self) -> IoResult<()> {
        let mut budget = MAX_TRAILER;
        while !self.line(&mut budget)?.is_empty() {}
        Ok(())
    }

    fn step(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Failed => return Err(invalid("chunked body already failed")),
                State::Size => {
                    let size = self.read_size()?;
                    if size == 0 {
                        self.read_trailers()?;
                        self.state = State::Done;
                        return Ok(0);
                    }
                    self.state = State::Data(size);
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(0);
                    }
                    let want = left.min(buf.len());
                    let n = self.source.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(IoError::new(
                            ErrorKind::UnexpectedEof,
                            "connection closed inside a chunked body",
                        ));
                    }
                    self.state = if n == left {
                        State::DataEnd
                    } else {
                        State::Data(left - n)
                    };
                    return Ok(n);
                }
                State::DataEnd => {
                    if !self.line(&mut (MAX_LINE + 2))?.is_empty() {
                        return Err(invalid("chunk data longer than its size"));
                    }
                    self.state = State::Size;
                }
            }
        }
    }
}

impl<R: Read> Read for ChunkedDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self.step(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                if e.kind() != ErrorKind::Interrupted {
                    self.state = State::Failed;
                }
                Err(e)
            }
        }
    }
}

impl<R: Read> Drop for ChunkedDecoder<R> {
    fn drop(&mut self) {
        if self.state != State::Done {
            if let Some(conn) = &self.conn {
                conn.poison();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChunkedDecoder;
    use std::io::Read;

    fn decode(input: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ChunkedDecoder::new(input, None).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes() {
        assert_eq!(
            decode(b"3\r\nhel\r\nb;ext=1\r\nlo world!!!\r\n0\r\n\r\n").unwrap(),
            b"hello world!!!"
        );
        assert_eq!(
            decode(b"3\r\nhel\r\n0\r\nX-Trailer: 1\r\n\r\nnext").unwrap(),
            b"hel"
        );
    }

    #[test]
    fn rejects() {
        assert!(decode(b"3\r\nhel\r\n").is_err());
        assert!(decode(b"3\r\nhello\r\n0\r\n\r\n").is_err());
        assert!(decode(b"zz\r\n").is_err());
        assert!(decode(b"fffffffffffffffffffff\r\n").is_err());
        assert!(decode(&[b'0'; 10_000]).is_err());
        assert!(decode(b"3\nhel\r\n0\r\n\r\n").is_err());
    }
}
