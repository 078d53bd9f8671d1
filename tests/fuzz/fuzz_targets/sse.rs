//! The SSE parser (`sse::SseReader`) on an arbitrary byte stream.
//!
//! The first byte picks a read size (1-16 bytes); the rest is the stream. Invariants: no panic
//! and no error (inputs are far below the 16 MiB line cap); the same events whether the stream
//! arrives whole or in small reads (terminators split across reads); no event's type, data or
//! id holds a CR, the type and id no LF, the id no NUL; at most one event per blank line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway::sse::{SseEvent, SseReader};
use std::io::{self, BufRead, BufReader, Cursor, Read};

/// Hands out at most `step` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn events<R: BufRead>(reader: R) -> Vec<SseEvent> {
    let mut reader = SseReader::new(reader);
    let mut out = Vec::new();
    while let Some(event) = reader.next_event().expect("no error below the size caps") {
        out.push(event);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(first % 16) + 1;
    let whole = events(Cursor::new(stream));
    let trickled = events(BufReader::with_capacity(
        step,
        Trickle { data: stream, step },
    ));
    assert_eq!(whole, trickled, "read size {step} changed the events");

    let terminators = stream.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    assert!(whole.len() <= terminators);
    for event in &whole {
        assert!(!event.data.contains('\r'));
        if let Some(kind) = &event.event {
            assert!(!kind.is_empty() && !kind.contains(['\r', '\n']));
        }
        if let Some(id) = &event.id {
            assert!(!id.is_empty() && !id.contains(['\r', '\n', '\0']));
        }
    }
});
