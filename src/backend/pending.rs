//! The table of requests waiting for their responses on a stream all of them share (a stdio
//! child's stdout, a legacy SSE stream): the reader hands each response, and the requests and
//! log lines a backend sends during a call, to the request they belong to.

use crate::backend::transport::{TransportError, UnsolicitedHandler};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the reader of a shared stream hands to one waiting request.
pub(crate) enum Delivery {
    /// The response: the request is over.
    Response(Value),
    /// A progress or cancellation notification for this request.
    Message(Value),
    /// The connection ended before the response.
    Failed(TransportError),
}

pub(crate) struct Waiter {
    inbox: Sender<Delivery>,
    progress_token: Option<Value>,
    /// A call made for a client (`tools/call`, `prompts/get`, `resources/read`), which may get
    /// the backend's requests and log lines.
    interactive: bool,
}

#[derive(Default)]
pub(crate) struct PendingState {
    /// Keyed by the JSON text of the id, so that `1` and `"1"` stay distinct.
    pub(crate) waiters: HashMap<String, Waiter>,
    /// Set once the connection is over: later requests fail at once with this error.
    ended: Option<TransportError>,
}

/// Requests waiting for their response on a stream shared by all of them (stdio, legacy SSE).
#[derive(Default)]
pub(crate) struct Pending {
    state: Mutex<PendingState>,
}

/// The channel a registered request waits on.
pub(crate) struct Inbox(pub(crate) Receiver<Delivery>);

impl Pending {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a request before it is sent, so that its response cannot be missed.
    pub(crate) fn register(
        &self,
        id: &Value,
        progress_token: Option<&Value>,
        interactive: bool,
    ) -> Result<Inbox, TransportError> {
        let mut state = self.lock();
        if let Some(err) = &state.ended {
            return Err(err.clone());
        }
        let key = id_key(id);
        if state.waiters.contains_key(&key) {
            return Err(TransportError::Protocol(format!(
                "request id {key} already in flight"
            )));
        }
        let (tx, rx) = mpsc::channel();
        let waiter = Waiter {
            inbox: tx,
            progress_token: progress_token.cloned(),
            interactive,
        };
        state.waiters.insert(key, waiter);
        Ok(Inbox(rx))
    }

    pub(crate) fn remove(&self, id: &Value) {
        self.lock().waiters.remove(&id_key(id));
    }

    /// Blocks until the response for `id` arrives, passing this request's notifications to
    /// `on_message` meanwhile. On timeout the request is forgotten.
    pub(crate) fn wait(
        &self,
        inbox: &Inbox,
        id: &Value,
        timeout: Duration,
        on_message: &mut dyn FnMut(Value),
    ) -> Result<Value, TransportError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match inbox.0.recv_timeout(left) {
                Ok(Delivery::Response(response)) => return Ok(response),
                Ok(Delivery::Message(message)) => on_message(message),
                Ok(Delivery::Failed(err)) => return Err(err),
                Err(RecvTimeoutError::Timeout) => {
                    self.remove(id);
                    return Err(TransportError::Timeout(timeout));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(TransportError::Unavailable("connection lost".to_owned()))
                }
            }
        }
    }

    /// Routes `message` to the request it belongs to, or gives it to `on_unsolicited`.
    pub(crate) fn dispatch_or(&self, message: Value, on_unsolicited: &UnsolicitedHandler) {
        if let Some(unclaimed) = self.dispatch(message) {
            on_unsolicited(unclaimed);
        }
    }

    /// Routes `message` to the request it belongs to; returns it when no request claims it.
    /// Responses to requests nobody waits for any more (timed out) are dropped.
    fn dispatch(&self, message: Value) -> Option<Value> {
        let method = message.get("method").and_then(Value::as_str);
        let mut state = self.lock();
        match method {
            None if is_response(&message) => {
                let key = message.get("id").map(id_key).unwrap_or_default();
                match state.waiters.remove(&key) {
                    Some(waiter) => {
                        let _ = waiter.inbox.send(Delivery::Response(message));
                    }
                    None => log::debug!("dropping response to unknown request id {key}"),
                }
                None
            }
            Some("notifications/progress") => {
                let token = message.pointer("/params/progressToken");
                let waiter = token.and_then(|token| {
                    state
                        .waiters
                        .values()
                        .find(|w| w.progress_token.as_ref() == Some(token))
                });
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.inbox.send(Delivery::Message(message));
                        None
                    }
                    None => Some(message),
                }
            }
            Some("notifications/cancelled") => {
                let key = message.pointer("/params/requestId").map(id_key);
                match key.and_then(|key| state.waiters.get(&key)) {
                    Some(waiter) => {
                        let _ = waiter.inbox.send(Delivery::Message(message));
                        None
                    }
                    None => Some(message),
                }
            }
            // A request of the backend's own, or a log line: a shared stream does not say which
            // call it belongs to, so it goes to the call in flight when there is exactly one.
            Some(method) if message.get("id").is_some() || method == "notifications/message" => {
                let mut interactive = state.waiters.values().filter(|w| w.interactive);
                match (interactive.next(), interactive.next()) {
                    (Some(waiter), None) => {
                        let _ = waiter.inbox.send(Delivery::Message(message));
                        None
                    }
                    _ => Some(message),
                }
            }
            _ => Some(message),
        }
    }

    /// Ends every waiting request with `err` and makes later registrations fail with it too.
    /// The first error sticks (so a `close` is not reported as a crash afterwards).
    pub(crate) fn fail_all(&self, err: TransportError) {
        let mut state = self.lock();
        let err = state.ended.get_or_insert(err).clone();
        for (_, waiter) in state.waiters.drain() {
            let _ = waiter.inbox.send(Delivery::Failed(err.clone()));
        }
    }
}

fn is_response(message: &Value) -> bool {
    message.get("id").is_some()
        && (message.get("result").is_some() || message.get("error").is_some())
}

fn id_key(id: &Value) -> String {
    id.to_string()
}
