//! The JSON Schema validator (`policy::schema`): compile a schema, validate an instance.
//!
//! The input is two JSON texts one after the other, the schema then the instance
//! (`{"type": "string"} "abc"`); without a second, the schema is validated against itself.
//! Invariants: no panic (and no stack overflow); `validate` and `is_valid` agree; at most
//! `MAX_VIOLATIONS` violations, each at the root or at a pointer that exists in the instance;
//! the same verdict twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_gateway::policy::schema::{summary, Schema, MAX_VIOLATIONS};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let Some(Ok(schema)) = values.next() else {
        return;
    };
    let instance = match values.next() {
        Some(Ok(instance)) => instance,
        Some(Err(_)) => return,
        None => schema.clone(),
    };
    let Ok(compiled) = Schema::compile(&schema) else {
        return;
    };
    let _ = compiled.notes();
    let violations = compiled.validate(&instance);
    assert_eq!(
        violations.is_empty(),
        compiled.is_valid(&instance),
        "validate and is_valid disagree: {}",
        summary(&violations)
    );
    assert!(violations.len() <= MAX_VIOLATIONS);
    for v in &violations {
        assert!(
            v.pointer == "/" || instance.pointer(&v.pointer).is_some(),
            "violation at {} which the instance lacks",
            v.pointer
        );
    }
    assert_eq!(compiled.validate(&instance), violations);
});
