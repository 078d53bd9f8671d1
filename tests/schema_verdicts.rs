//! The argument validator (`policy::schema`) against the `jsonschema` Python package (Draft
//! 2020-12): the same valid/invalid verdict on every (schema, instance) pair of
//! tests/schema/pairs.json, built by tests/schema/generate.py from real MCP servers' tool schemas
//! (the seed's Home Assistant, TrueNAS and ERPNext servers, @modelcontextprotocol/server-everything,
//! the SDK fixture servers) and a few hand-written ones, with the verdicts jsonschema gave.

use std::time::Instant;

use mcp_gateway::policy::schema::Schema;
use serde_json::Value;

fn load() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schema/pairs.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compiled(data: &Value) -> Vec<(String, Value, Schema)> {
    data["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .map(|entry| {
            let source = entry["source"].as_str().expect("source").to_owned();
            let schema = entry["schema"].clone();
            let compiled = Schema::compile(&schema)
                .unwrap_or_else(|e| panic!("{source}: the schema does not compile: {e}"));
            (source, schema, compiled)
        })
        .collect()
}

#[test]
fn same_verdicts_as_jsonschema() {
    let data = load();
    let schemas = compiled(&data);
    let pairs = data["pairs"].as_array().expect("pairs");
    assert!(pairs.len() >= 1000, "only {} pairs", pairs.len());

    let mut disagreements = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    let mut by_source: std::collections::BTreeMap<&str, usize> = Default::default();
    for pair in pairs {
        let index = pair[0].as_u64().expect("schema index") as usize;
        let instance = &pair[1];
        let expected = pair[2].as_bool().expect("verdict");
        let (source, schema, compiled) = &schemas[index];
        *by_source
            .entry(source.split('/').next().unwrap_or(""))
            .or_default() += 1;
        if expected {
            valid += 1;
        } else {
            invalid += 1;
        }
        let violations = compiled.validate(instance);
        let ours = violations.is_empty();
        assert_eq!(
            ours,
            compiled.is_valid(instance),
            "{source}: validate and is_valid disagree on {instance}"
        );
        if !ours && violations.iter().any(|v| !v.pointer.starts_with('/')) {
            panic!("{source}: a violation without a pointer: {violations:?}");
        }
        if ours != expected {
            disagreements.push(format!(
                "{source}\n  schema:     {schema}\n  instance:   {instance}\n  jsonschema: {}\n  ours:       {} {:?}",
                if expected { "valid" } else { "invalid" },
                if ours { "valid" } else { "invalid" },
                violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            ));
        }
    }
    println!(
        "{} schemas, {} pairs ({valid} valid, {invalid} invalid), by source {by_source:?}: {} disagreements",
        schemas.len(),
        pairs.len(),
        disagreements.len()
    );
    // Every source the issue names is represented, and both verdicts are common.
    for family in [
        "seed-tools",
        "server-everything",
        "sdk-fixtures",
        "synthetic",
    ] {
        assert!(
            by_source.get(family).copied().unwrap_or(0) >= 50,
            "few pairs from {family}: {by_source:?}"
        );
    }
    assert!(
        valid >= 500 && invalid >= 500,
        "{valid} valid, {invalid} invalid"
    );
    assert!(
        disagreements.is_empty(),
        "{} of {} pairs disagree with jsonschema:\n{}",
        disagreements.len(),
        pairs.len(),
        disagreements.join("\n")
    );
}

/// Not a pass/fail test: how long validation takes. Run it optimised:
/// `cargo test --release --test schema_verdicts -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing() {
    let data = load();
    let schemas = compiled(&data);
    let pairs = data["pairs"].as_array().expect("pairs");

    let started = Instant::now();
    let rounds = 20;
    let mut invalid = 0;
    for _ in 0..rounds {
        for pair in pairs {
            let (_, _, compiled) = &schemas[pair[0].as_u64().unwrap() as usize];
            if !compiled.validate(&pair[1]).is_empty() {
                invalid += 1;
            }
        }
    }
    let per = started.elapsed() / (rounds * pairs.len() as u32);
    println!("all pairs: {per:?} per validate() on average ({invalid} invalid results)");

    // A typical Home Assistant tool: the seed's most common shape.
    let schema: Value = serde_json::json!({
        "type": "object",
        "properties": {
            "entity_id": {"type": "string", "pattern": "^[a-z_]+\\.[a-z0-9_]+$"},
            "brightness": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 255}, {"type": "null"}], "default": null},
            "color_name": {"anyOf": [{"type": "string", "enum": ["red", "green", "blue"]}, {"type": "null"}], "default": null},
            "transition": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": null}
        },
        "required": ["entity_id"],
        "additionalProperties": false
    });
    let started = Instant::now();
    let compiled = Schema::compile(&schema).unwrap();
    println!("compile: {:?}", started.elapsed());
    let good = serde_json::json!({"entity_id": "light.kitchen", "brightness": 128, "color_name": "red", "transition": null});
    let bad = serde_json::json!({"entity_id": 12, "brightness": 300, "colour": "red"});
    for (name, instance) in [("valid", &good), ("invalid (3 violations)", &bad)] {
        let n = 200_000;
        let started = Instant::now();
        let mut count = 0;
        for _ in 0..n {
            count += compiled.validate(std::hint::black_box(instance)).len();
        }
        println!(
            "typical schema, {name}: {:?} per validate() ({count} violations)",
            started.elapsed() / n
        );
    }
}
