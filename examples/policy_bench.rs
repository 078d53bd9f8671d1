//! What the policy path costs a `tools/call`, and how fast the audit log writes. Run by hand:
//!
//! ```sh
//! cargo run --release --example policy_bench
//! ```
//!
//! It times, in-process and without a network, each step the gateway runs before a call leaves
//! for its backend: the access rule (none, and one with servers, allow and deny globs and
//! read-only), argument validation against a Home Assistant tool's `inputSchema`, and the cache
//! key; then it sends audit lines to the real writer thread and counts how many reach the disk
//! per second. The end-to-end latency through the gateway is `tests/bench/bench.py`.

use mcp_gateway::audit::{AuditLog, AuditSettings, Entry};
use mcp_gateway::policy::{cache, AccessRule, Schema};
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};

const ROUNDS: usize = 200_000;
const AUDIT_LINES: usize = 100_000;

/// Median nanoseconds per run of `f`, over 7 batches of `ROUNDS / 7` runs.
fn median_ns(mut f: impl FnMut()) -> f64 {
    let batch = ROUNDS / 7;
    let mut samples: Vec<f64> = (0..7)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..batch {
                f();
            }
            started.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[3]
}

fn main() {
    // light.turn_on as Home Assistant's MCP server describes it (trimmed to its checked parts).
    let schema = Schema::compile(&json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "area": {"type": "string"},
            "domain": {"type": "array", "items": {"type": "string", "enum": ["light", "switch", "fan"]}},
            "brightness": {"type": "integer", "minimum": 0, "maximum": 100},
            "color": {"anyOf": [{"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"}, {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}, "minItems": 3, "maxItems": 3}]},
            "transition": {"type": "number", "exclusiveMinimum": 0}
        },
        "required": ["name"],
        "additionalProperties": false
    }))
    .unwrap_or_else(|e| panic!("the bench schema does not compile: {e}"));
    let arguments = json!({"name": "Kitchen", "area": "Ground floor", "domain": ["light"], "brightness": 80, "color": "#ffaa00", "transition": 1.5});
    assert!(schema.validate(&arguments).is_empty());

    let everything = AccessRule::everything();
    let rule = AccessRule {
        servers: Some(vec!["nas".into(), "home".into()]),
        allow: vec![
            "home__light*".into(),
            "home__get_*".into(),
            "nas__list_*".into(),
        ],
        deny: vec!["*unlock*".into(), "*alarm*".into(), "*delete*".into()],
        read_only: false,
    };
    let name = "home__light_turn_on";

    let no_rule = median_ns(|| {
        black_box(everything.check_tool(black_box(Some("home")), black_box(name), false)).ok();
    });
    let with_rule = median_ns(|| {
        black_box(rule.check_tool(black_box(Some("home")), black_box(name), false)).ok();
    });
    let validation = median_ns(|| {
        black_box(schema.validate(black_box(&arguments)));
    });
    let rule_text = serde_json::to_string(&rule).unwrap_or_default();
    let cache_key = median_ns(|| {
        black_box(cache::key("kids", &rule_text, name, black_box(&arguments)));
    });
    println!(
        "policy steps per tools/call (median of 7 batches of {} runs):",
        ROUNDS / 7
    );
    println!("  access rule, none:                       {no_rule:8.0} ns");
    println!("  access rule, servers + 3 allow + 3 deny:  {with_rule:8.0} ns");
    println!("  argument validation (HA light.turn_on):  {validation:8.0} ns");
    println!(
        "  cache key (canonical JSON + SHA-256):    {cache_key:8.0} ns   (only for cached tools)"
    );
    println!(
        "  all together, with a rule and a schema:  {:8.0} ns   (without either: {:.0} ns)",
        with_rule + validation,
        no_rule
    );

    let dir = std::env::temp_dir().join(format!("mcpgw-policy-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return;
    }
    let settings = AuditSettings {
        max_bytes: 1 << 30,
        ..AuditSettings::default()
    };
    let log = AuditLog::start(&settings, &dir);
    let path = dir.join("audit.log");
    let started = Instant::now();
    for _ in 0..AUDIT_LINES {
        log.record(&Entry {
            face: "mcp",
            principal: "kids",
            action: "tools/call",
            server: "home",
            name,
            arguments: Some(&arguments),
            outcome: "ok",
            duration: Some(Duration::from_micros(850)),
            result_bytes: Some(312),
            ..Entry::default()
        });
    }
    let queued = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    let dropped = || log.failures.load(std::sync::atomic::Ordering::SeqCst) as usize;
    let mut written = 0;
    while Instant::now() < deadline {
        written = std::fs::read(&path)
            .map(|b| b.iter().filter(|c| **c == b'\n').count())
            .unwrap_or(0);
        if written + dropped() >= AUDIT_LINES {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let total = started.elapsed();
    println!("audit log, {AUDIT_LINES} lines sent as fast as one thread can:");
    println!(
        "  queued in {:.0} ms ({:.1} us a line on the calling thread)",
        queued.as_secs_f64() * 1000.0,
        queued.as_secs_f64() * 1e6 / AUDIT_LINES as f64
    );
    println!(
        "  written {written} lines (each appended and flushed) in {:.0} ms: {:.0} lines/s; {} dropped because the queue was full",
        total.as_secs_f64() * 1000.0,
        written as f64 / total.as_secs_f64(),
        dropped()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
