//! The config checker: `Config::parse` (JSON, `${NAME}` expansion, every check) on any text.
//!
//! `${NAME}` resolves to a fixed value for names starting with `A`-`M` and is unset otherwise,
//! so both paths run. Invariants: no panic; a text that fails is reported with at least one
//! problem (or a syntax error), and its message renders; the same text gives the same verdict
//! twice.
//!
//! The one piece of I/O in the checker, `openai.system_prompt: {"file": ...}`, is skipped: a
//! fuzzed path could name `/dev/zero` and read forever (the config is the operator's own file).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway::config::{Config, ConfigError};
use serde_json::Value;
use std::path::Path;

fn env(name: &str) -> Option<String> {
    match name.bytes().next() {
        Some(b'A'..=b'M') => Some(format!("value-of-{name}")),
        _ => None,
    }
}

fn verdict(text: &str) -> Result<String, String> {
    match Config::parse(text, Path::new("/nonexistent/fuzz"), &env) {
        Ok(config) => Ok(format!(
            "{} {} {}",
            config.listen,
            config.workers,
            config.servers.len()
        )),
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "Invalid without a problem");
            Err(ConfigError::Invalid(problems).to_string())
        }
        Err(other) => Err(other.to_string()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(raw) = serde_json::from_str::<Value>(text) {
        if raw
            .pointer("/openai/system_prompt")
            .is_some_and(Value::is_object)
        {
            return;
        }
    }
    let first = verdict(text);
    assert_eq!(first, verdict(text), "the checker is not deterministic");
});
