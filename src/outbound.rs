//! Outbound HTTP (to backends and to the upstream LLM): ureq agents with a resolver that never
//! starts a thread on the path of a call, and connections that spend few system calls on one.
//!
//! ureq's own resolver looks the host up again for every request, even on a pooled connection,
//! and runs the lookup on a new thread whenever a timeout applies (always, for our calls).
//! Its connections ([`LeanTransport`] sits on top of them) sent a request's head and its body in
//! two writes, set the socket's timeout anew before every read and write (the time left changes
//! by microseconds), and looked whether the connection was still open both when it went back to
//! the pool and when it was taken out again, three system calls each time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use ureq::config::{Config, ConfigBuilder};
use ureq::http::Uri;
use ureq::typestate::AgentScope;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::time::Duration as UreqDuration;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport,
};
use ureq::Agent;

/// How long a looked-up address is reused.
const RESOLVED_FOR: Duration = Duration::from_secs(30);

/// Bytes read from a backend or the LLM at a time; also the most a response head may take.
const INPUT_BUFFER: usize = 32 * 1024;
/// Bytes written at a time (a request head must fit).
const OUTPUT_BUFFER: usize = 16 * 1024;

/// ureq's agent settings with our buffer sizes. ureq's defaults (128 KiB in and out, zeroed on
/// first use) made every warm pooled connection cost 256 KiB of resident memory, most of the
/// gateway's idle RSS with one backend; bodies stream through the buffers, so only a response
/// head must fit in [`INPUT_BUFFER`].
pub fn config_builder() -> ConfigBuilder<AgentScope> {
    Agent::config_builder()
        .input_buffer_size(INPUT_BUFFER)
        .output_buffer_size(OUTPUT_BUFFER)
        .max_response_header_size(INPUT_BUFFER)
}

/// An agent with `config` (from [`config_builder`]), ureq's connectors under a
/// [`LeanTransport`], and the [`ReusingResolver`].
pub fn agent(config: Config) -> Agent {
    Agent::with_parts(config, LeanConnector::default(), ReusingResolver::default())
}

/// ureq's own connectors (TCP, proxies, TLS), each connection wrapped in a [`LeanTransport`].
#[derive(Debug, Default)]
pub struct LeanConnector(DefaultConnector);

impl Connector<()> for LeanConnector {
    type Out = LeanTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<LeanTransport>, ureq::Error> {
        Ok(self.0.connect(details, chained)?.map(LeanTransport::new))
    }
}

/// Writes this long or shorter are held back to go out with the next one (a request's head
/// with its body); also the most held.
const HOLD_AT_MOST: usize = 4 * 1024;
/// Time left is rounded down to a step of 1/2^STEP_SHIFT of the power of two below it, so a
/// timeout ends at most 1/64 (1.6%) before the deadline it stands for.
const STEP_SHIFT: u32 = 6;

/// One outbound connection, saving system calls on every request:
/// - a short write (a request's head) is held back and sent with the next one (its body), or
///   before the connection next reads, so a request goes out in one `send`;
/// - the time left is rounded down (by at most 1/64 of it), so the socket's timeout, set only
///   when it changes, is not set again for every read and write of every request;
/// - whether the connection is still open is looked at only when it is taken from the pool,
///   not also when it goes back after a request (ureq does both; the look when taken out is
///   the one that finds a connection the server closed meanwhile, or bytes it sent unasked).
#[derive(Debug)]
pub struct LeanTransport {
    inner: Box<dyn Transport>,
    held: Vec<u8>,
    /// Read or written since whether it is open was last looked at.
    used: bool,
}

impl LeanTransport {
    fn new(inner: Box<dyn Transport>) -> LeanTransport {
        LeanTransport {
            inner,
            held: Vec::new(),
            used: false,
        }
    }

    /// Sends what is held, alone.
    fn send_held(&mut self, timeout: NextTimeout) -> Result<(), ureq::Error> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = self.held.len();
        self.inner.buffers().output()[..held].copy_from_slice(&self.held);
        self.held.clear();
        self.inner.transmit_output(held, timeout)
    }
}

/// `timeout` with its time left rounded down (see [`STEP_SHIFT`]). The step is the same for
/// every time left between two powers of two, so the time left of one request after another,
/// each a little under the same budget, rounds to the same value.
fn coarse(mut timeout: NextTimeout) -> NextTimeout {
    if let UreqDuration::Exact(left) = timeout.after {
        let nanos = u64::try_from(left.as_nanos()).unwrap_or(u64::MAX);
        if nanos > 0 {
            let step = (1u64 << (63 - nanos.leading_zeros())) >> STEP_SHIFT;
            if step > 0 {
                let rounded = nanos - nanos % step;
                timeout.after = UreqDuration::Exact(std::time::Duration::from_nanos(rounded));
            }
        }
    }
    timeout
}

impl Transport for LeanTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.used = true;
        let timeout = coarse(timeout);
        if amount == 0 {
            return Ok(());
        }
        let held = self.held.len();
        if held == 0 {
            if amount <= HOLD_AT_MOST {
                let output = self.inner.buffers().output();
                self.held.extend_from_slice(&output[..amount]);
                return Ok(());
            }
            return self.inner.transmit_output(amount, timeout);
        }
        let output = self.inner.buffers().output();
        if held + amount <= output.len() {
            output.copy_within(..amount, held);
            output[..held].copy_from_slice(&self.held);
            self.held.clear();
            return self.inner.transmit_output(held + amount, timeout);
        }
        // Both do not fit in the output buffer: what is held first, then this write.
        let this_write = output[..amount].to_vec();
        self.send_held(timeout)?;
        self.inner.buffers().output()[..amount].copy_from_slice(&this_write);
        self.inner.transmit_output(amount, timeout)
    }

    // ureq waits for input here only when none is buffered, always so when a response is
    // awaited (a connection with unread input is never reused): the held write goes out first.
    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.used = true;
        let timeout = coarse(timeout);
        self.send_held(timeout)?;
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        if !self.held.is_empty() {
            // A request that never went out whole: the connection cannot be reused.
            return false;
        }
        if std::mem::take(&mut self.used) {
            // Going back to the pool after a request (see the type's comment).
            return true;
        }
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// Resolves without a thread per request: an IP literal (`127.0.0.1:8080`,
/// `[::1]:9`) needs no lookup; a name is looked up (by ureq's resolver, with its timeout) and
/// reused for [`RESOLVED_FOR`].
#[derive(Debug, Default)]
pub struct ReusingResolver {
    looked_up: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for ReusingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host_port = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => DefaultResolver::host_and_port(scheme, authority),
            _ => None,
        };
        let Some(host_port) = host_port else {
            return DefaultResolver::default().resolve(uri, config, timeout);
        };
        if let Ok(literal) = host_port.parse::<SocketAddr>() {
            let mut one = self.empty();
            one.push(literal);
            return Ok(one);
        }
        let now = Instant::now();
        {
            let mut looked_up = self.looked_up.lock().unwrap_or_else(|e| e.into_inner());
            match looked_up.get(&host_port) {
                Some((when, addresses)) if now.duration_since(*when) < RESOLVED_FOR => {
                    return Ok(addresses.clone());
                }
                Some(_) => {
                    looked_up.remove(&host_port);
                }
                None => {}
            }
        }
        let addresses = DefaultResolver::default().resolve(uri, config, timeout)?;
        self.looked_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host_port, (now, addresses.clone()));
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use ureq::unversioned::transport::LazyBuffers;
    use ureq::Timeout;

    /// What the transport under a [`LeanTransport`] was asked to do.
    #[derive(Debug, Default)]
    struct Seen {
        sent: Vec<Vec<u8>>,
        timeouts: Vec<UreqDuration>,
        reads: usize,
        open_checks: usize,
    }

    #[derive(Debug)]
    struct Recording {
        buffers: LazyBuffers,
        seen: Arc<Mutex<Seen>>,
    }

    impl Transport for Recording {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }
        fn transmit_output(
            &mut self,
            amount: usize,
            timeout: NextTimeout,
        ) -> Result<(), ureq::Error> {
            let bytes = self.buffers.output()[..amount].to_vec();
            let mut seen = self.seen.lock().unwrap();
            seen.sent.push(bytes);
            seen.timeouts.push(timeout.after);
            Ok(())
        }
        fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
            let mut seen = self.seen.lock().unwrap();
            seen.reads += 1;
            seen.timeouts.push(timeout.after);
            Ok(false)
        }
        fn is_open(&mut self) -> bool {
            self.seen.lock().unwrap().open_checks += 1;
            true
        }
    }

    fn lean(output_size: usize) -> (LeanTransport, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let inner = Recording {
            buffers: LazyBuffers::new(1024, output_size),
            seen: seen.clone(),
        };
        (LeanTransport::new(Box::new(inner)), seen)
    }

    fn write(transport: &mut LeanTransport, bytes: &[u8], timeout: NextTimeout) {
        transport.buffers().output()[..bytes.len()].copy_from_slice(bytes);
        transport.transmit_output(bytes.len(), timeout).unwrap();
    }

    fn left(duration: std::time::Duration) -> NextTimeout {
        NextTimeout {
            after: UreqDuration::Exact(duration),
            reason: Timeout::Global,
            per_read: None,
            per_write: None,
        }
    }

    #[test]
    fn a_head_and_its_body_go_out_in_one_write() {
        let (mut transport, seen) = lean(16 * 1024);
        let timeout = NextTimeout::default();
        write(&mut transport, b"POST /mcp HTTP/1.1\r\n\r\n", timeout);
        assert!(seen.lock().unwrap().sent.is_empty(), "the head is held");
        write(&mut transport, b"{\"id\":1}", timeout);
        transport.transmit_output(0, timeout).unwrap();
        transport.await_input(timeout).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.sent,
            vec![b"POST /mcp HTTP/1.1\r\n\r\n{\"id\":1}".to_vec()]
        );
        assert_eq!(seen.reads, 1);
    }

    #[test]
    fn a_held_write_goes_out_before_the_connection_reads() {
        let (mut transport, seen) = lean(16 * 1024);
        let timeout = NextTimeout::default();
        write(&mut transport, b"GET / HTTP/1.1\r\n\r\n", timeout);
        transport.await_input(timeout).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.sent, vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()]);
        assert_eq!(seen.reads, 1);
    }

    #[test]
    fn writes_that_do_not_fit_together_go_out_in_order() {
        let (mut transport, seen) = lean(64);
        let timeout = NextTimeout::default();
        let head = [b'h'; 40];
        let body = [b'b'; 60];
        write(&mut transport, &head, timeout);
        write(&mut transport, &body, timeout);
        let big = [b'x'; 64];
        write(&mut transport, &big[..30], timeout);
        transport.await_input(timeout).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.sent,
            vec![head.to_vec(), body.to_vec(), big[..30].to_vec()]
        );
    }

    #[test]
    fn long_writes_are_not_held() {
        let (mut transport, seen) = lean(16 * 1024);
        let long = vec![b'l'; HOLD_AT_MOST + 1];
        write(&mut transport, &long, NextTimeout::default());
        assert_eq!(seen.lock().unwrap().sent, vec![long]);
    }

    #[test]
    fn time_left_is_rounded_down_by_at_most_a_64th() {
        let ms = std::time::Duration::from_millis;
        let rounded = |duration| match coarse(left(duration)).after {
            UreqDuration::Exact(d) => d,
            UreqDuration::NotHappening => panic!("a deadline became none"),
        };
        for millis in [1, 7, 999, 1_000, 1_500, 9_987, 30_000, 600_000, 86_400_000] {
            let left = ms(millis);
            let r = rounded(left);
            assert!(
                r <= left && r > std::time::Duration::ZERO,
                "{left:?} -> {r:?}"
            );
            assert!(left - r <= left / 64, "{left:?} -> {r:?}");
        }
        let tiny = std::time::Duration::from_nanos(40);
        assert_eq!(rounded(tiny), tiny, "below 64 ns there is no step");
        // One request after another, each a little under the same 30 s budget.
        assert_eq!(rounded(ms(29_999)), rounded(ms(29_990)));
        assert!(matches!(
            coarse(NextTimeout::default()).after,
            UreqDuration::NotHappening
        ));
    }

    #[test]
    fn the_socket_sees_one_timeout_for_a_whole_request() {
        let (mut transport, seen) = lean(16 * 1024);
        let ms = std::time::Duration::from_millis;
        write(&mut transport, b"head", left(ms(29_999)));
        write(&mut transport, b"body", left(ms(29_998)));
        transport.await_input(left(ms(29_990))).unwrap();
        transport.await_input(NextTimeout::default()).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.timeouts.len(), 3, "{:?}", seen.timeouts);
        assert_eq!(seen.timeouts[0], seen.timeouts[1]);
        assert_eq!(seen.timeouts[2], UreqDuration::NotHappening);
    }

    #[test]
    fn only_the_look_when_taken_from_the_pool_reaches_the_socket() {
        let (mut transport, seen) = lean(16 * 1024);
        // Fresh from the connector, then taken out of the pool: looked at.
        assert!(transport.is_open());
        write(&mut transport, b"head", NextTimeout::default());
        transport.await_input(NextTimeout::default()).unwrap();
        // Going back after the request: not looked at; taken out again: looked at.
        assert!(transport.is_open());
        assert!(transport.is_open());
        assert_eq!(seen.lock().unwrap().open_checks, 2);
    }

    #[test]
    fn a_connection_with_a_write_held_is_not_reused() {
        let (mut transport, seen) = lean(16 * 1024);
        write(&mut transport, b"head", NextTimeout::default());
        assert!(!transport.is_open());
        assert!(seen.lock().unwrap().sent.is_empty());
    }
}
