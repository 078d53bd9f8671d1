//! Questions a backend asks the client during a call (sampling, elicitation, roots), on the MCP
//! face: the [`CallLink`] of each call, asking a handshake-era client on the call's event stream,
//! and "parking" a call whose handshake-era backend asked a 2026-07-28 client, which answers
//! through an `input_required` result and a retry.

use super::{Era, McpFace, LOG_LEVELS, PARKED_INPUT_KEY, PARKED_STATE_PREFIX};
use crate::face::answer::Answer;
use crate::gateway::Principal;
use crate::jsonrpc::{self, RpcError};
use crate::link::{check_capability, ClientLink};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};

/// A call whose handshake-era backend asked a 2026-07-28 client something: the client got an
/// `input_required` result, and its retry brings the answer (and a new connection for the rest
/// of the call) to the thread still running the call.
pub(super) struct Parked {
    pub(super) principal: String,
    pub(super) method: String,
    pub(super) resume: Sender<Resume>,
}

/// What the retry of a parked call hands to it.
pub(super) struct Resume {
    pub(super) answer: Answer,
    pub(super) input_responses: Map<String, Value>,
}

/// The link of one call on the MCP face: the call's answer, and who the client is.
pub(super) struct CallLink<'a> {
    pub(super) face: &'a McpFace,
    pub(super) answer: &'a mut Answer,
    pub(super) era: &'a Era,
    pub(super) principal: &'a str,
    /// The client's method (a 2026-07-28 retry must repeat it).
    pub(super) method: &'a str,
    /// The key the client cancels the call by.
    pub(super) cancel_key: String,
    pub(super) capabilities: Value,
    /// Least severe log level passed on; `None`: no log lines.
    pub(super) log_level: Option<String>,
}

impl ClientLink for CallLink<'_> {
    fn notify(&mut self, message: Value) {
        if message.get("method").and_then(Value::as_str) == Some("notifications/message") {
            let level = message.pointer("/params/level").and_then(Value::as_str);
            let wanted = match (&self.log_level, level) {
                (None, _) => false,
                (Some(min), Some(level)) => level_rank(level) >= level_rank(min),
                (Some(_), None) => true,
            };
            if !wanted {
                return;
            }
        }
        self.answer.notify(&message);
    }

    fn ask(&mut self, method: &str, params: Value) -> Result<Value, RpcError> {
        check_capability(&self.capabilities, method, &params)?;
        let face = self.face;
        match self.era {
            Era::Session { id } => face.ask_in_session(id, self, method, params),
            Era::Modern => face.ask_by_parking(self, method, params),
            Era::Plain => Err(RpcError::new(
                jsonrpc::INVALID_REQUEST,
                format!("a request without a session cannot be asked {method}: initialize a session first"),
            )),
        }
    }

    fn capabilities(&self) -> Value {
        self.capabilities.clone()
    }

    fn log_level(&self) -> Option<String> {
        self.log_level.clone()
    }

    fn takes_input_required(&self) -> bool {
        *self.era == Era::Modern
    }
}

/// Position of a log level from the most verbose; unknown levels count as `info`.
pub(super) fn level_rank(level: &str) -> usize {
    LOG_LEVELS.iter().position(|l| *l == level).unwrap_or(1)
}

impl McpFace {
    /// Asks a handshake-era client `method` on the call's event stream and waits for the answer
    /// it POSTs back.
    pub(super) fn ask_in_session(
        &self,
        session: &str,
        link: &mut CallLink<'_>,
        method: &str,
        params: Value,
    ) -> Result<Value, RpcError> {
        let answer = &mut *link.answer;
        if !answer.can_stream() {
            return Err(RpcError::new(
                jsonrpc::INVALID_REQUEST,
                format!("the client's request does not accept an event stream, so mcp-gateway cannot pass it this {method} request"),
            ));
        }
        let request_id = format!("gw-{}", self.next_request.fetch_add(1, Ordering::Relaxed));
        let key = format!("{session}|{}", jsonrpc::id_key(&json!(request_id)));
        let (tx, rx) = mpsc::channel();
        self.awaiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), (link.cancel_key.clone(), tx));
        answer.notify(&jsonrpc::request(&json!(request_id), method, params));
        let outcome = rx.recv_timeout(self.answer_timeout);
        self.awaiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        match outcome {
            Ok(response) => match response.get("error") {
                Some(error) => Err(RpcError::from_value(error)),
                None => Ok(response.get("result").cloned().unwrap_or_else(|| json!({}))),
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                format!("the client cancelled the call before answering {method}"),
            )),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let reason = format!(
                    "the client did not answer {method} within {} s",
                    self.answer_timeout.as_secs()
                );
                // The question is abandoned: tell the client, as the backend would have.
                answer.notify(&jsonrpc::notification(
                    "notifications/cancelled",
                    json!({"requestId": request_id, "reason": reason}),
                ));
                Err(RpcError::new(jsonrpc::INTERNAL_ERROR, reason))
            }
        }
    }

    /// Asks a 2026-07-28 client `method` on behalf of a handshake-era backend: answers the
    /// client's request with an `input_required` result naming it, then waits (holding the
    /// backend's call) for the client's retry, which carries the answer and takes over the rest
    /// of the call.
    pub(super) fn ask_by_parking(
        &self,
        link: &mut CallLink<'_>,
        method: &str,
        mut params: Value,
    ) -> Result<Value, RpcError> {
        crate::link::to_modern_form(method, &mut params);
        let token = match crate::tokens::generate_token() {
            Ok(t) => t.trim_start_matches("mgw_").to_string(),
            Err(e) => {
                return Err(RpcError::new(
                    jsonrpc::INTERNAL_ERROR,
                    format!("cannot make a request state: {e}"),
                ))
            }
        };
        let (tx, rx) = mpsc::channel();
        self.parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                token.clone(),
                Parked {
                    principal: link.principal.to_string(),
                    method: link.method.to_string(),
                    resume: tx,
                },
            );
        let interim = json!({
            "resultType": "input_required",
            "inputRequests": {PARKED_INPUT_KEY: {"method": method, "params": params}},
            "requestState": format!("{PARKED_STATE_PREFIX}{token}"),
        });
        let id = link.answer.id.clone();
        link.answer.finish(200, &jsonrpc::response(&id, interim));
        let outcome = rx.recv_timeout(self.answer_timeout);
        self.parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&token);
        let resume = outcome.map_err(|_| {
            RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                format!(
                    "the client did not send its {method} answer within {} s",
                    self.answer_timeout.as_secs()
                ),
            )
        })?;
        *link.answer = resume.answer;
        resume
            .input_responses
            .get(PARKED_INPUT_KEY)
            .cloned()
            .ok_or_else(|| {
                RpcError::new(
                    jsonrpc::INVALID_PARAMS,
                    format!("the retry carried no inputResponses.{PARKED_INPUT_KEY}"),
                )
            })
    }

    /// A 2026-07-28 retry carrying the `requestState` of a parked call: hands the answer and
    /// this request's connection to the thread running the call.
    pub(super) fn resume_parked(
        &self,
        mut answer: Answer,
        token: &str,
        method: &str,
        params: &Map<String, Value>,
        principal: &Principal,
    ) {
        let parked = {
            let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            match parked.get(token) {
                Some(p) if p.principal == principal.name && p.method == method => {
                    parked.remove(token)
                }
                _ => None,
            }
        };
        let input_responses = params
            .get("inputResponses")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let Some(parked) = parked else {
            let error = RpcError::new(
                jsonrpc::INVALID_PARAMS,
                "params.requestState names no call waiting for input (it expired or was already answered): send the request again without requestState",
            );
            let id = answer.id.clone();
            return answer.finish(400, &jsonrpc::error_response(&id, &error));
        };
        if let Err(mpsc::SendError(resume)) = parked.resume.send(Resume {
            answer,
            input_responses,
        }) {
            let mut answer = resume.answer;
            let error = RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                "the call waiting for this input has ended",
            );
            let id = answer.id.clone();
            answer.finish(200, &jsonrpc::error_response(&id, &error));
        }
    }
}
