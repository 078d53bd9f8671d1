//! The stdio transport: a backend run as a child process speaking newline-delimited JSON-RPC.
//!
//! This module owns the child process (spawn, stderr logging, reaping, killing); responses are
//! matched to their requests by [`crate::backend::pending`].

use crate::backend::pending::Pending;
use crate::backend::transport::{
    is_interactive, request_id, truncate, Reply, Transport, TransportError, UnsolicitedHandler,
    WireProtocol,
};
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Longest stdout line accepted from a backend (a single JSON-RPC message).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Longest stderr line read before the rest of it is discarded.
const MAX_STDERR_BYTES: usize = 64 * 1024;
/// Stderr lines are logged up to this many characters.
const STDERR_LOG_CHARS: usize = 2000;
/// How long `close` lets the child exit on its own after its stdin is closed.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long the reader waits for the child to exit once its stdout has closed before killing it.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A child-process backend. See the module documentation.
pub struct StdioTransport {
    name: String,
    stdin: Mutex<Option<ChildStdin>>,
    child: Arc<Mutex<Child>>,
    pending: Arc<Pending>,
    alive: Arc<AtomicBool>,
}

impl StdioTransport {
    /// Starts `command` with `args`, `env` added to the gateway's environment, in `cwd` if given.
    pub fn spawn(
        name: &str,
        command: &str,
        args: &[String],
        env: &[(String, String)],
        cwd: Option<&Path>,
        on_unsolicited: UnsolicitedHandler,
    ) -> Result<StdioTransport, TransportError> {
        let mut cmd = Command::new(command);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| TransportError::Unavailable(format!("cannot start `{command}`: {e}")))?;
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(stdin), Some(stdout), Some(stderr)) = (stdin, stdout, stderr) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TransportError::Unavailable(format!(
                "cannot start `{command}`: pipes unavailable"
            )));
        };
        let transport = StdioTransport {
            name: name.to_owned(),
            stdin: Mutex::new(Some(stdin)),
            child: Arc::new(Mutex::new(child)),
            pending: Arc::new(Pending::default()),
            alive: Arc::new(AtomicBool::new(true)),
        };
        transport.start_stdout_reader(stdout, on_unsolicited)?;
        spawn_stderr_logger(name, stderr)?;
        Ok(transport)
    }

    fn start_stdout_reader(
        &self,
        stdout: impl Read + Send + 'static,
        on_unsolicited: UnsolicitedHandler,
    ) -> Result<(), TransportError> {
        let name = self.name.clone();
        let child = Arc::clone(&self.child);
        let pending = Arc::clone(&self.pending);
        let alive = Arc::clone(&self.alive);
        thread::Builder::new()
            .name(format!("stdio-out-{name}"))
            .spawn(move || {
                let reader = format!("[{name}] the stdout reader");
                let read = crate::resilient::contain(&reader, || {
                    read_messages(&name, stdout, &pending, &on_unsolicited)
                });
                alive.store(false, Ordering::SeqCst);
                if let Err(why) = read {
                    // The server may well still be running: its calls end now, not after the
                    // grace its exit is given.
                    pending.fail_all(TransportError::Unavailable(format!(
                        "the gateway's reader of this server {why}"
                    )));
                }
                let status = reap(&child, EXIT_GRACE);
                log::debug!("[{name}] stdout closed, process exited: {status}");
                pending.fail_all(TransportError::Unavailable(format!(
                    "process exited: {status}"
                )));
            })
            .map(|_| ())
            .map_err(|e| TransportError::Unavailable(format!("cannot start reader thread: {e}")))
    }

    fn write_line(&self, message: &Value) -> Result<(), TransportError> {
        let mut line = serde_json::to_vec(message)
            .map_err(|e| TransportError::Protocol(format!("cannot serialise message: {e}")))?;
        line.push(b'\n');
        let mut stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
        let pipe = stdin.as_mut().ok_or(TransportError::Closed)?;
        pipe.write_all(&line)
            .and_then(|()| pipe.flush())
            .map_err(|e| TransportError::Unavailable(format!("cannot write to process: {e}")))
    }
}

impl Transport for StdioTransport {
    fn request(
        &self,
        request: &Value,
        progress_token: Option<&Value>,
        timeout: Duration,
        on_message: &mut dyn FnMut(Value),
    ) -> Result<Reply, TransportError> {
        let id = request_id(request)?;
        let inbox = self
            .pending
            .register(id, progress_token, is_interactive(request))?;
        if let Err(e) = self.write_line(request) {
            self.pending.remove(id);
            return Err(e);
        }
        self.pending
            .wait(&inbox, id, timeout, on_message)
            .map(Reply::from_message)
    }

    fn send(&self, message: &Value) -> Result<(), TransportError> {
        self.write_line(message)
    }

    fn set_protocol(&self, _protocol: WireProtocol) {}

    fn open_listen_stream(&self) {}

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn close(&self) {
        self.alive.store(false, Ordering::SeqCst);
        self.pending.fail_all(TransportError::Closed);
        // Closing stdin is the polite way to ask an MCP stdio server to exit.
        drop(self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take());
        let status = reap(&self.child, CLOSE_GRACE);
        log::debug!("[{}] closed, process exited: {status}", self.name);
    }
}

impl Drop for StdioTransport {
    fn drop(&mut self) {
        drop(self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take());
        reap(&self.child, Duration::ZERO);
    }
}

/// Waits up to `grace` for the child to exit, then kills it; always reaps it.
/// Returns a description of the exit status.
fn reap(child: &Mutex<Child>, grace: Duration) -> String {
    let deadline = Instant::now() + grace;
    loop {
        let mut guard = child.lock().unwrap_or_else(|e| e.into_inner());
        match guard.try_wait() {
            Ok(Some(status)) => return describe(status),
            Ok(None) if Instant::now() < deadline => {}
            Ok(None) | Err(_) => {
                let _ = guard.kill();
                return match guard.wait() {
                    Ok(status) => describe(status),
                    Err(e) => format!("unknown ({e})"),
                };
            }
        }
        drop(guard);
        thread::sleep(Duration::from_millis(10));
    }
}

fn describe(status: ExitStatus) -> String {
    status.to_string()
}

/// Reads stdout until it closes, handing every JSON message to `pending` (or to `on_unsolicited`).
fn read_messages(
    name: &str,
    stdout: impl Read,
    pending: &Pending,
    on_unsolicited: &UnsolicitedHandler,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        match read_bounded_line(&mut reader, &mut line, MAX_MESSAGE_BYTES) {
            Ok(LineRead::Eof) => return,
            Ok(LineRead::TooLong) => {
                log::warn!("[{name}] dropped a stdout line longer than {MAX_MESSAGE_BYTES} bytes");
                continue;
            }
            Ok(LineRead::Line) => {}
            Err(e) => {
                log::warn!("[{name}] error reading stdout: {e}");
                return;
            }
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(batch)) => {
                for message in batch {
                    pending.dispatch_or(message, on_unsolicited);
                }
            }
            Ok(message) => pending.dispatch_or(message, on_unsolicited),
            Err(_) => log::warn!(
                "[{name}] ignoring non-JSON stdout line: {}",
                truncate(text, 200)
            ),
        }
    }
}

fn spawn_stderr_logger(
    name: &str,
    stderr: impl Read + Send + 'static,
) -> Result<(), TransportError> {
    let name = name.to_owned();
    thread::Builder::new()
        .name(format!("stdio-err-{name}"))
        .spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                match read_bounded_line(&mut reader, &mut line, MAX_STDERR_BYTES) {
                    Ok(LineRead::Line) | Ok(LineRead::TooLong) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end();
                        if !text.is_empty() {
                            log::info!("[{name}] {}", truncate(text, STDERR_LOG_CHARS));
                        }
                    }
                    Ok(LineRead::Eof) | Err(_) => return,
                }
            }
        })
        .map(|_| ())
        .map_err(|e| TransportError::Unavailable(format!("cannot start stderr thread: {e}")))
}

enum LineRead {
    Line,
    /// The line exceeded the limit: `buf` holds its first `limit` bytes, the rest was skipped.
    TooLong,
    Eof,
}

/// Reads one `\n`-terminated line into `buf` (without the terminator), never buffering more than
/// `limit` bytes of it. A final unterminated line counts as a line.
fn read_bounded_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<LineRead> {
    buf.clear();
    let mut too_long = false;
    let mut saw_any = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(match (saw_any, too_long) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        saw_any = true;
        let newline = chunk.iter().position(|&b| b == b'\n');
        let take = newline.unwrap_or(chunk.len());
        let room = limit.saturating_sub(buf.len());
        if take > room {
            too_long = true;
        }
        buf.extend_from_slice(&chunk[..take.min(room)]);
        reader.consume(newline.map_or(take, |i| i + 1));
        if newline.is_some() {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::pending::Delivery;
    use serde_json::json;
    use std::sync::mpsc;

    fn ignore() -> UnsolicitedHandler {
        Arc::new(|_| {})
    }

    fn sh(name: &str, script: &str, on_unsolicited: UnsolicitedHandler) -> StdioTransport {
        let args = vec!["-c".to_owned(), script.to_owned()];
        StdioTransport::spawn(name, "sh", &args, &[], None, on_unsolicited).unwrap()
    }

    /// A Python echo server: answers each request with its own params, after `delay` seconds
    /// taken from the params; sends a progress notification first when asked to.
    const ECHO_SERVER: &str = r#"
import json, sys, threading, time, os
lock = threading.Lock()
def out(m):
    with lock:
        sys.stdout.write(json.dumps(m) + "\n"); sys.stdout.flush()
def handle(m):
    p = m.get("params") or {}
    time.sleep(p.get("delay", 0))
    tok = (p.get("_meta") or {}).get("progressToken")
    if tok is not None:
        out({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": tok, "progress": 1}})
    out({"jsonrpc": "2.0", "id": m["id"], "result": {"echo": p, "env": os.environ.get("ECHO_ENV"), "cwd": os.getcwd()}})
print("not json, ignored", flush=True)
out({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
for line in sys.stdin:
    m = json.loads(line)
    if "id" in m and "method" in m:
        threading.Thread(target=handle, args=(m,)).start()
    else:
        out({"jsonrpc": "2.0", "method": "seen", "params": m})
"#;

    fn echo_server(on_unsolicited: UnsolicitedHandler) -> StdioTransport {
        let args = vec!["-c".to_owned(), ECHO_SERVER.to_owned()];
        let env = [("ECHO_ENV".to_owned(), "yes".to_owned())];
        let cwd = Path::new("/tmp");
        StdioTransport::spawn("echo", "python3", &args, &env, Some(cwd), on_unsolicited).unwrap()
    }

    #[test]
    fn echo_server_answers_by_id_with_progress_env_and_cwd() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let unsolicited: UnsolicitedHandler = Arc::new(move |m| {
            let _ = tx.lock().unwrap().send(m);
        });
        let transport = echo_server(unsolicited);
        let token = json!("tok-1");
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"_meta": {"progressToken": "tok-1"}}});
        let mut seen = Vec::new();
        let response = transport
            .request(&request, Some(&token), Duration::from_secs(5), &mut |m| {
                seen.push(m)
            })
            .unwrap()
            .message();
        assert_eq!(response["result"]["env"], "yes");
        assert_eq!(response["result"]["cwd"], "/tmp");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["method"], "notifications/progress");
        let first = rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!(first["method"], "notifications/tools/list_changed");

        transport
            .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .unwrap();
        let seen = rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!(seen["params"]["method"], "notifications/initialized");
        transport.close();
        assert!(!transport.is_alive());
        let err = transport.request(&request, None, Duration::from_secs(1), &mut |_| {});
        assert_eq!(err.err(), Some(TransportError::Closed));
    }

    #[test]
    fn a_panic_on_the_reader_thread_ends_the_connection_at_once() {
        // The server's first line is a list_changed notice: the handler panics on it.
        let transport = echo_server(Arc::new(|_| panic!("a bug in a handler")));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while transport.is_alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "the connection still looks alive after its reader panicked"
            );
            thread::sleep(Duration::from_millis(10));
        }
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "x"});
        let started = std::time::Instant::now();
        let answer = transport.request(&request, None, Duration::from_secs(5), &mut |_| {});
        assert!(answer.is_err(), "{answer:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn concurrent_requests_answered_out_of_order() {
        let transport = Arc::new(echo_server(ignore()));
        let slow = {
            let transport = Arc::clone(&transport);
            thread::spawn(move || {
                let request = json!({"jsonrpc": "2.0", "id": "slow", "method": "x", "params": {"delay": 0.4}});
                transport.request(&request, None, Duration::from_secs(5), &mut |_| {})
            })
        };
        thread::sleep(Duration::from_millis(50));
        let request = json!({"jsonrpc": "2.0", "id": 2, "method": "x", "params": {"n": 2}});
        let fast = transport
            .request(&request, None, Duration::from_secs(5), &mut |_| {})
            .unwrap()
            .message();
        assert_eq!(fast["result"]["echo"]["n"], 2);
        let slow = slow.join().unwrap().unwrap();
        assert_eq!(slow.message()["result"]["echo"]["delay"], 0.4);
    }

    #[test]
    fn backend_requests_and_log_lines_go_to_the_only_interactive_call() {
        let pending = Pending::default();
        let unclaimed = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&unclaimed);
        let on_unsolicited: UnsolicitedHandler =
            Arc::new(move |m: Value| sink.lock().unwrap().push(m));
        let _refresh = pending.register(&json!(1), None, false).unwrap();
        let call = pending.register(&json!(2), None, true).unwrap();
        let ask = json!({"jsonrpc": "2.0", "id": 7, "method": "elicitation/create", "params": {}});
        let log = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info"}});
        pending.dispatch_or(ask.clone(), &on_unsolicited);
        pending.dispatch_or(log.clone(), &on_unsolicited);
        assert!(unclaimed.lock().unwrap().is_empty());
        for expected in [&ask, &log] {
            match call.0.recv_timeout(Duration::from_secs(1)) {
                Ok(Delivery::Message(m)) => assert_eq!(&m, expected),
                _ => panic!("the interactive call did not get {expected}"),
            }
        }
        // With two interactive calls in flight nobody can tell whose it is.
        let _other = pending.register(&json!(3), None, true).unwrap();
        pending.dispatch_or(ask.clone(), &on_unsolicited);
        assert_eq!(unclaimed.lock().unwrap().as_slice(), [ask]);
    }

    #[test]
    fn timeout_removes_the_waiter() {
        let transport = sh("mute", "cat > /dev/null", ignore());
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "x"});
        let started = Instant::now();
        let err = transport.request(&request, None, Duration::from_millis(200), &mut |_| {});
        assert_eq!(
            err.err(),
            Some(TransportError::Timeout(Duration::from_millis(200)))
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(transport.pending.lock().waiters.is_empty());
        // The same id may be used again after the timeout.
        let err = transport.request(&request, None, Duration::from_millis(50), &mut |_| {});
        assert_eq!(
            err.err(),
            Some(TransportError::Timeout(Duration::from_millis(50)))
        );
    }

    #[test]
    fn exiting_child_fails_waiters_quickly() {
        let transport = sh("dies", "read line; exit 3", ignore());
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "x"});
        let started = Instant::now();
        let err = transport.request(&request, None, Duration::from_secs(5), &mut |_| {});
        assert!(started.elapsed() < Duration::from_secs(3));
        match err {
            Err(TransportError::Unavailable(why)) => {
                assert!(why.starts_with("process exited:"), "{why}");
                assert!(why.contains('3'), "{why}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!transport.is_alive());
        let again = transport.request(&request, None, Duration::from_secs(1), &mut |_| {});
        assert!(matches!(again, Err(TransportError::Unavailable(_))));
    }

    /// Records log lines so tests can check what was logged.
    struct CaptureLogs;

    static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

    impl log::Log for CaptureLogs {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            let line = format!("{} {}", record.level(), record.args());
            LOGGED.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
        fn flush(&self) {}
    }

    fn capture_logs() {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let _ = log::set_logger(&CaptureLogs);
            log::set_max_level(log::LevelFilter::Info);
        });
    }

    /// Waits (briefly) for a logged line satisfying `wanted`.
    fn logged(wanted: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if LOGGED.lock().unwrap().iter().any(|line| wanted(line)) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn stderr_and_junk_stdout_are_logged_and_child_is_killed_on_close() {
        capture_logs();
        let script = "echo 'hello from stderr' >&2; \
                      head -c 100000 /dev/zero | tr '\\0' x >&2; echo >&2; \
                      echo 'junk on stdout'; \
                      echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}'; \
                      exec sleep 30";
        let transport = sh("noisy", script, ignore());
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "x"});
        let response = transport.request(&request, None, Duration::from_secs(5), &mut |_| {});
        assert_eq!(response.unwrap().message(), json!({"result": {}}));
        assert!(logged(|l| l == "INFO [noisy] hello from stderr"));
        let long = format!("INFO [noisy] {}…", "x".repeat(STDERR_LOG_CHARS));
        assert!(logged(|l| l == long));
        assert!(logged(
            |l| l.starts_with("WARN [noisy]") && l.ends_with("junk on stdout")
        ));
        // The child ignores stdin EOF (it sleeps): close() must kill it, within its grace time.
        let started = Instant::now();
        transport.close();
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(transport
            .child
            .lock()
            .unwrap()
            .try_wait()
            .unwrap()
            .is_some());
    }

    #[test]
    fn command_not_found_is_unavailable() {
        let err = StdioTransport::spawn("x", "/nonexistent/mcp-server", &[], &[], None, ignore());
        match err {
            Err(TransportError::Unavailable(why)) => {
                assert!(why.contains("/nonexistent/mcp-server"))
            }
            Err(other) => panic!("unexpected {other:?}"),
            Ok(_) => panic!("spawned a nonexistent command"),
        }
    }

    #[test]
    fn bounded_lines() {
        let mut reader =
            BufReader::with_capacity(4, io::Cursor::new(b"abcdefgh\nxy\nlast".to_vec()));
        let mut buf = Vec::new();
        assert!(matches!(
            read_bounded_line(&mut reader, &mut buf, 5),
            Ok(LineRead::TooLong)
        ));
        assert_eq!(buf, b"abcde");
        assert!(matches!(
            read_bounded_line(&mut reader, &mut buf, 5),
            Ok(LineRead::Line)
        ));
        assert_eq!(buf, b"xy");
        assert!(matches!(
            read_bounded_line(&mut reader, &mut buf, 5),
            Ok(LineRead::Line)
        ));
        assert_eq!(buf, b"last");
        assert!(matches!(
            read_bounded_line(&mut reader, &mut buf, 5),
            Ok(LineRead::Eof)
        ));
    }
}
