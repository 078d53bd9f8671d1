//! mcp-gateway patch: state shared by everything that reads one connection: the deadline of the
//! request being read, whether the connection must be closed after the current request, and how
//! much of the previous body the connection's thread must skip before the next request.

use std::io::{Error as IoError, ErrorKind, Read, Result as IoResult};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where the current request's read deadline stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No deadline (no request timeout configured, or the stream was upgraded).
    Off,
    /// A new request is awaited: its first byte starts the clock.
    Armed,
    /// Reads that return at or after this instant fail with `TimedOut`.
    Until(Instant),
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    poisoned: bool,
    skip: usize,
}

/// Handle on one connection's shared read state; cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnState {
    timeout: Option<Duration>,
    inner: Arc<Mutex<Inner>>,
}

impl ConnState {
    /// `timeout`: the request timeout (None: reads have no deadline).
    pub fn new(timeout: Option<Duration>) -> ConnState {
        ConnState {
            timeout,
            inner: Arc::new(Mutex::new(Inner {
                phase: Phase::Off,
                poisoned: false,
                skip: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wraps the reading half of the connection so that its reads obey the deadline.
    pub fn reader<R: Read>(&self, inner: R) -> DeadlineReader<R> {
        DeadlineReader {
            inner,
            state: self.clone(),
        }
    }

    /// A new request is about to be read. `started`: some of it is already buffered, so its
    /// clock starts now rather than at the next byte received.
    pub fn arm(&self, started: bool) {
        if let Some(timeout) = self.timeout {
            self.lock().phase = if started {
                Phase::Until(Instant::now() + timeout)
            } else {
                Phase::Armed
            };
        }
    }

    /// The rest of the request starts only now (after a `100 Continue`): a fresh deadline from
    /// now.
    pub fn rearm(&self) {
        self.arm(true)
    }

    /// No deadline any more (the stream was handed to the application by `upgrade`).
    pub fn disarm(&self) {
        self.lock().phase = Phase::Off;
    }

    /// The connection cannot carry another request (a body was left unread or half read):
    /// it is closed once the current request is answered.
    pub fn poison(&self) {
        self.lock().poisoned = true;
    }

    pub fn is_poisoned(&self) -> bool {
        self.lock().poisoned
    }

    /// The application dropped a body with `n` bytes still unread: the connection's thread
    /// skips them before it reads the next request (so that no application thread waits for
    /// them).
    pub fn skip_later(&self, n: usize) {
        let mut inner = self.lock();
        inner.skip = inner.skip.saturating_add(n);
    }

    /// The bytes to skip before the next request (see `skip_later`); resets them to 0.
    pub fn take_skip(&self) -> usize {
        std::mem::replace(&mut self.lock().skip, 0)
    }

    /// A read failed. The socket read timeout expiring inside a request (which the system
    /// reports as `WouldBlock` on Unix) is that request timing out: `TimedOut`, so that it
    /// gets its 408. While waiting idle for the next request it stays as it is (the
    /// connection is then closed without an answer).
    fn on_error(&self, e: IoError) -> IoError {
        if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut {
            if let Phase::Until(_) = self.lock().phase {
                return timed_out();
            }
        }
        e
    }

    /// Before a read: error if the deadline has already passed.
    fn check(&self) -> IoResult<()> {
        if let Phase::Until(t) = self.lock().phase {
            if Instant::now() >= t {
                return Err(timed_out());
            }
        }
        Ok(())
    }

    /// After a read that returned `n` bytes: starts the clock on the first data, and fails the
    /// read if it returned past the deadline.
    fn after_read(&self, n: usize) -> IoResult<()> {
        let mut inner = self.lock();
        match inner.phase {
            Phase::Off => Ok(()),
            Phase::Armed => {
                if n > 0 {
                    if let Some(timeout) = self.timeout {
                        inner.phase = Phase::Until(Instant::now() + timeout);
                    }
                }
                Ok(())
            }
            Phase::Until(t) => {
                if Instant::now() >= t {
                    Err(timed_out())
                } else {
                    Ok(())
                }
            }
        }
    }
}

fn timed_out() -> IoError {
    IoError::new(ErrorKind::TimedOut, "request timeout")
}

/// The reading half of a connection, under the request deadline of its `ConnState`.
///
/// The deadline is only looked at when a read starts and when it returns (no timer, no system
/// call), so a read that blocks is bounded by the socket's own read timeout: a client that
/// trickles is cut off within about the request timeout plus the socket read timeout. Sockets
/// are blocking here, so `WouldBlock` from a read can only be the socket read timeout.
pub struct DeadlineReader<R> {
    inner: R,
    state: ConnState,
}

impl<R: Read> Read for DeadlineReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.state.timeout.is_none() {
            return self.inner.read(buf);
        }
        self.state.check()?;
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => return Err(self.state.on_error(e)),
        };
        self.state.after_read(n)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::ConnState;
    use std::io::{ErrorKind, Read};
    use std::time::Duration;

    #[test]
    fn deadline_starts_with_the_first_byte() {
        let state = ConnState::new(Some(Duration::from_millis(50)));
        let mut reader = state.reader(&b"abcdef"[..]);
        let mut buf = [0; 2];
        state.arm(false);
        std::thread::sleep(Duration::from_millis(80));
        // armed but not started: the idle wait does not count
        assert_eq!(reader.read(&mut buf).unwrap(), 2);
        assert_eq!(reader.read(&mut buf).unwrap(), 2);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            reader.read(&mut buf).unwrap_err().kind(),
            ErrorKind::TimedOut
        );
        // a new request starts a new clock
        state.arm(false);
        assert_eq!(reader.read(&mut buf).unwrap(), 2);
    }

    #[test]
    fn no_timeout_means_no_deadline() {
        let state = ConnState::new(None);
        let mut reader = state.reader(&b"abcdef"[..]);
        state.arm(true);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcdef");
        assert!(!state.is_poisoned());
        state.poison();
        assert!(state.is_poisoned());
    }
}
