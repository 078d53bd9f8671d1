//! Server-Sent Events parsing (WHATWG `text/event-stream`), independent of any transport.
//!
//! [`SseReader`] pulls bytes from any [`BufRead`] and yields whole [`SseEvent`]s. It never holds
//! more than one line and one event in memory, and both are capped so a hostile or broken stream
//! cannot make it grow without bound.

use std::io::{self, BufRead};

/// Longest line accepted, and the most data one event may accumulate.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SseEvent {
    /// The `event` field, `None` when the event did not name a type (i.e. "message").
    pub event: Option<String>,
    /// The `data` lines, joined with `\n`.
    pub data: String,
    /// The last event ID as of this event (WHATWG semantics: it persists across events until an
    /// `id` field changes it), suitable for a `Last-Event-ID` header on reconnection.
    pub id: Option<String>,
    /// A `retry` field received since the previous dispatched event, in milliseconds.
    pub retry: Option<u64>,
}

/// Reads events from a byte stream.
pub struct SseReader<R: BufRead> {
    reader: R,
    /// The line being assembled (bytes, without its terminator).
    line: Vec<u8>,
    /// The previous line ended with `\r`: a `\n` right after it belongs to the same terminator.
    skip_lf: bool,
    /// True until the first line has been read (a leading BOM is stripped there).
    at_start: bool,
    event_type: Option<String>,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<u64>,
}

impl<R: BufRead> SseReader<R> {
    pub fn new(reader: R) -> Self {
        SseReader {
            reader,
            line: Vec::new(),
            skip_lf: false,
            at_start: true,
            event_type: None,
            data: String::new(),
            has_data: false,
            last_id: None,
            retry: None,
        }
    }

    /// The next complete event, or `None` at the end of the stream. An event still being
    /// assembled when the stream ends is discarded, as the specification requires.
    pub fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        while self.read_line()? {
            let line = String::from_utf8_lossy(&self.line).into_owned();
            let line = match line.strip_prefix('\u{feff}') {
                Some(rest) if self.at_start => rest.to_owned(),
                _ => line,
            };
            self.at_start = false;
            if let Some(event) = self.process_line(&line)? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// Reads one line into `self.line`. Returns false at the end of the stream (a trailing
    /// unterminated line is dropped).
    fn read_line(&mut self) -> io::Result<bool> {
        self.line.clear();
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(false);
            }
            if self.skip_lf {
                self.skip_lf = false;
                if buf[0] == b'\n' {
                    self.reader.consume(1);
                    continue;
                }
            }
            let end = buf.iter().position(|&b| b == b'\n' || b == b'\r');
            let take = end.unwrap_or(buf.len());
            if self.line.len() + take > MAX_LINE_BYTES {
                return Err(too_large("SSE line"));
            }
            self.line.extend_from_slice(&buf[..take]);
            match end {
                Some(i) => {
                    self.skip_lf = buf[i] == b'\r';
                    self.reader.consume(i + 1);
                    return Ok(true);
                }
                None => self.reader.consume(take),
            }
        }
    }

    /// Applies one line to the event being built; returns the event when the line dispatches it.
    fn process_line(&mut self, line: &str) -> io::Result<Option<SseEvent>> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event_type = Some(value.to_owned()),
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_LINE_BYTES {
                    return Err(too_large("SSE event data"));
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event_type = self.event_type.take().filter(|t| !t.is_empty());
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event: event_type,
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone().filter(|id| !id.is_empty()),
            retry: self.retry.take(),
        })
    }
}

fn too_large(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what} longer than {MAX_LINE_BYTES} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor, Read};

    fn all_events(input: &str) -> Vec<SseEvent> {
        let mut reader = SseReader::new(Cursor::new(input.as_bytes().to_vec()));
        let mut events = Vec::new();
        while let Some(event) = reader.next_event().unwrap() {
            events.push(event);
        }
        events
    }

    fn data_event(data: &str) -> SseEvent {
        SseEvent {
            data: data.to_owned(),
            ..SseEvent::default()
        }
    }

    /// Hands out one byte per read, so every line and terminator is split across reads.
    struct OneByte(Vec<u8>, usize);

    impl Read for OneByte {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1 >= self.0.len() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[self.1];
            self.1 += 1;
            Ok(1)
        }
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let events = all_events("data: first\ndata:second\ndata:  third\n\n");
        assert_eq!(events, vec![data_event("first\nsecond\n third")]);
    }

    #[test]
    fn crlf_and_cr_line_endings() {
        let events = all_events("event: a\r\ndata: one\r\n\r\ndata: two\r\rdata: three\n\n");
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event.as_deref(), Some("a"));
        assert_eq!(events[0].data, "one");
        assert_eq!(events[1], data_event("two"));
        assert_eq!(events[2], data_event("three"));
    }

    #[test]
    fn comments_and_unknown_fields_are_ignored() {
        let events = all_events(": keep-alive\n\n:another\nfoo: bar\ndata: x\n: inside\n\n");
        assert_eq!(events, vec![data_event("x")]);
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        let events = all_events("event: ping\n\nid: 1\n\ndata\n\n");
        // `data` without colon is a data line with an empty value: dispatched with data "".
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, None);
        assert_eq!(events[0].data, "");
        assert_eq!(events[0].id.as_deref(), Some("1"));
    }

    #[test]
    fn id_persists_and_retry_is_parsed() {
        let events =
            all_events("id: 7\nretry: 1500\ndata: a\n\ndata: b\n\nretry: x\nid\ndata: c\n\n");
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[0].retry, Some(1500));
        assert_eq!(events[1].id.as_deref(), Some("7"));
        assert_eq!(events[1].retry, None);
        assert_eq!(events[2].id, None);
        assert_eq!(events[2].retry, None);
    }

    #[test]
    fn event_split_across_one_byte_reads() {
        let input = "\u{feff}event: message\r\ndata: {\"a\":1}\r\n\r\n: c\r\ndata: é\r\n\r\n";
        let source = OneByte(input.as_bytes().to_vec(), 0);
        let mut reader = SseReader::new(BufReader::with_capacity(1, source));
        let first = reader.next_event().unwrap().unwrap();
        assert_eq!(first.event.as_deref(), Some("message"));
        assert_eq!(first.data, "{\"a\":1}");
        assert_eq!(reader.next_event().unwrap().unwrap().data, "é");
        assert_eq!(reader.next_event().unwrap(), None);
    }

    #[test]
    fn end_of_stream_mid_event_discards_it() {
        assert_eq!(
            all_events("data: done\n\ndata: partial\n"),
            vec![data_event("done")]
        );
        assert_eq!(all_events("data: partial"), vec![]);
        assert_eq!(all_events(""), vec![]);
    }

    #[test]
    fn overlong_line_is_an_error() {
        let long = "x".repeat(MAX_LINE_BYTES + 1);
        let mut reader = SseReader::new(Cursor::new(long.into_bytes()));
        let err = reader.next_event().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
