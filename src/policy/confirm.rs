//! Confirmation of dangerous tools: the question put to the user (an MCP form elicitation) before
//! a tool matching its server's `confirm` globs runs, and how the answer is read.
//!
//! The gateway asks through the call's client link, so the question reaches the user in the
//! client's own era: an `elicitation/create` request on a handshake-era call's stream, an
//! `input_required` result for a 2026-07-28 client. A client that cannot be asked (no
//! elicitation capability, the OpenAI face) gets a refusal naming `confirm_fallback`, unless
//! the config sets it to `"allow"`.

use serde_json::{json, Value};

/// The longest argument text shown in the question; longer ones are cut.
const MAX_SHOWN_ARGUMENTS: usize = 2000;

/// What `confirm_fallback` says to do with a client that cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// Refuse the call (the default).
    #[default]
    Refuse,
    /// Make the call without asking.
    Allow,
}

/// The user's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted with `confirm` true (or no content): the call is made.
    Accepted,
    /// Declined, cancelled, or accepted with `confirm` false: the call is not made. Carries the
    /// answer's action.
    Declined(String),
}

/// The `elicitation/create` params (form mode) asking whether `tool` may run with `arguments`.
pub fn question(tool: &str, server: &str, arguments: &Value) -> Value {
    let mut shown = arguments.to_string();
    if shown.len() > MAX_SHOWN_ARGUMENTS {
        let mut cut = MAX_SHOWN_ARGUMENTS;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    // No `mode`: form is the default in every revision, and older clients know no other.
    json!({
        "message": format!("Allow the tool \"{tool}\" of server \"{server}\" to run with these arguments?\n{shown}"),
        "requestedSchema": {
            "type": "object",
            "properties": {
                "confirm": {
                    "type": "boolean",
                    "title": "Run this tool",
                    "description": format!("Run {tool} now"),
                    "default": false,
                }
            },
            "required": ["confirm"],
        },
    })
}

/// Reads an elicitation result: `{"action": "accept", "content": {"confirm": true}}` accepts;
/// any other action, or `confirm` false, declines.
pub fn verdict(answer: &Value) -> Verdict {
    let action = answer
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    if action != "accept" {
        return Verdict::Declined(action.to_string());
    }
    match answer.pointer("/content/confirm") {
        Some(Value::Bool(false)) => Verdict::Declined("accept with confirm false".into()),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Verdict::Declined("accept with confirm false".into())
        }
        _ => Verdict::Accepted,
    }
}

/// A tool result (`isError: true`) the model reads when a call was not made.
pub fn not_made(text: String) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_names_the_tool_and_its_arguments() {
        let q = question("house__unlock", "house", &json!({"door": "front"}));
        let message = q["message"].as_str().unwrap();
        assert!(message.contains("house__unlock") && message.contains("\"front\""));
        assert_eq!(
            q["requestedSchema"]["properties"]["confirm"]["type"],
            "boolean"
        );
        let long = question("t", "s", &json!({"text": "é".repeat(5000)}));
        assert!(long["message"].as_str().unwrap().len() < MAX_SHOWN_ARGUMENTS + 200);
    }

    #[test]
    fn only_an_accept_that_does_not_say_false_runs_the_tool() {
        assert_eq!(
            verdict(&json!({"action": "accept", "content": {"confirm": true}})),
            Verdict::Accepted
        );
        assert_eq!(verdict(&json!({"action": "accept"})), Verdict::Accepted);
        for answer in [
            json!({"action": "decline"}),
            json!({"action": "cancel"}),
            json!({}),
            json!({"action": "accept", "content": {"confirm": false}}),
            json!({"action": "accept", "content": {"confirm": "false"}}),
        ] {
            assert!(matches!(verdict(&answer), Verdict::Declined(_)), "{answer}");
        }
    }
}
