//! How results differ between the eras: a 2026-07-28 result says `resultType`, and list
//! results say how long they may be cached (`ttlMs`, `cacheScope`); a handshake-era client gets
//! none of that revision's fields or reserved `_meta` keys.

use super::result_json::{Member, ResultJson};
use super::{ListKind, META_RESERVED_PREFIX};
use serde_json::{json, Value};
use std::borrow::Cow;

/// How long a client may cache a list (`ttlMs`, `cacheScope`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CacheHint {
    /// `ttlMs`, the smallest over the list's pages; `None` when the server did not say.
    pub ttl_ms: Option<u64>,
    /// `cacheScope` was `"public"` on every page.
    pub public: bool,
}

/// Top-level members of a 2026-07-28 result that a handshake-era client does not get.
const MODERN_MEMBERS: [&str; 4] = ["resultType", "ttlMs", "cacheScope", "_meta"];

/// A result from a 2026-07-28 backend, for a handshake-era client: without the fields and
/// reserved `_meta` keys of that revision (the content is left as it is).
pub fn unmark_modern_result(result: &mut ResultJson) {
    let text = match result {
        ResultJson::Value(value) => return unmark_value(value),
        ResultJson::Text(text) => text.get(),
    };
    if !MODERN_MEMBERS.iter().any(|name| text.contains(name)) {
        return;
    }
    result.edit_text_members(|members| {
        let before = members.len();
        members.retain(|(key, value)| match key.as_ref() {
            "resultType" => value.to_value().as_str() != Some("complete"),
            "ttlMs" | "cacheScope" => false,
            _ => true,
        });
        let mut changed = members.len() != before;
        if let Some(at) = members.iter().position(|(key, _)| key == "_meta") {
            if let Value::Object(mut meta) = members[at].1.to_value() {
                let keys = meta.len();
                meta.retain(|key, _| !key.starts_with(META_RESERVED_PREFIX));
                if meta.is_empty() {
                    members.remove(at);
                    changed = true;
                } else if meta.len() != keys {
                    members[at].1 = Member::Value(Value::Object(meta));
                    changed = true;
                }
            }
        }
        changed
    });
}

fn unmark_value(result: &mut Value) {
    let Value::Object(map) = result else { return };
    if map.get("resultType").and_then(Value::as_str) == Some("complete") {
        map.remove("resultType");
    }
    map.remove("ttlMs");
    map.remove("cacheScope");
    if let Some(Value::Object(meta)) = map.get_mut("_meta") {
        meta.retain(|key, _| !key.starts_with(META_RESERVED_PREFIX));
        if meta.is_empty() {
            map.remove("_meta");
        }
    }
}

/// 2026-07-28 results say they are complete; list results say how long they may be cached.
pub fn mark_modern_result(method: &str, result: &mut ResultJson, hint: CacheHint) {
    let is_list = ListKind::of_method(method).is_some() || method == "server/discover";
    let scope = if hint.public { "public" } else { "private" };
    let ttl = hint.ttl_ms.unwrap_or(0);
    match result {
        ResultJson::Value(Value::Object(map)) => {
            map.entry("resultType").or_insert(json!("complete"));
            if is_list {
                map.entry("ttlMs").or_insert(json!(ttl));
                map.entry("cacheScope").or_insert(json!(scope));
            }
        }
        ResultJson::Value(_) => {}
        // Most results of a 2026-07-28 backend say it already.
        ResultJson::Text(_) if !is_list && result.has_result_type() => {}
        ResultJson::Text(_) => result.edit_text_members(|members| {
            let mut added = false;
            let mut add = |name: &'static str, value: Value| {
                if !members.iter().any(|(key, _)| key == name) {
                    members.push((Cow::Borrowed(name), Member::Value(value)));
                    added = true;
                }
            };
            add("resultType", json!("complete"));
            if is_list {
                add("ttlMs", json!(ttl));
                add("cacheScope", json!(scope));
            }
            added
        }),
    }
}

/// The caching hint of an aggregated list: the shortest `ttlMs` of the backends that
/// contribute to it (0 for one that said nothing), public only when all of them said so.
pub fn combine_hints(hints: impl IntoIterator<Item = CacheHint>) -> CacheHint {
    let mut combined = CacheHint {
        ttl_ms: None,
        public: false,
    };
    let mut first = true;
    for hint in hints {
        let ttl = hint.ttl_ms.unwrap_or(0);
        combined.ttl_ms = Some(combined.ttl_ms.map_or(ttl, |t| t.min(ttl)));
        combined.public = if first {
            hint.public
        } else {
            combined.public && hint.public
        };
        first = false;
    }
    combined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(json: &str) -> ResultJson {
        ResultJson::from_text(serde_json::value::RawValue::from_string(json.to_string()).unwrap())
    }

    fn written(result: &ResultJson) -> String {
        serde_json::to_string(result).unwrap()
    }

    #[test]
    fn modern_results_are_marked() {
        let mut r = ResultJson::from(json!({"tools": []}));
        mark_modern_result("tools/list", &mut r, CacheHint::default());
        let r = r.into_value();
        assert_eq!(r["resultType"], "complete");
        assert_eq!(r["cacheScope"], "private");
        assert_eq!(r["ttlMs"], 0);
        let mut c = ResultJson::from(json!({"content": []}));
        mark_modern_result("tools/call", &mut c, CacheHint::default());
        let c = c.into_value();
        assert_eq!(c["resultType"], "complete");
        assert!(c.get("ttlMs").is_none());
    }

    #[test]
    fn modern_results_are_marked_on_the_text() {
        let mut c = text(r#"{"content":[{"type":"text","text":"x"}]}"#);
        mark_modern_result("tools/call", &mut c, CacheHint::default());
        assert_eq!(
            written(&c),
            r#"{"content":[{"type":"text","text":"x"}],"resultType":"complete"}"#
        );
        let mut marked = text(r#"{"content":[],"resultType":"complete"}"#);
        mark_modern_result("tools/call", &mut marked, CacheHint::default());
        assert_eq!(
            written(&marked),
            r#"{"content":[],"resultType":"complete"}"#
        );
        let hint = CacheHint {
            ttl_ms: Some(7),
            public: true,
        };
        let mut list = text(r#"{"resources":[]}"#);
        mark_modern_result("resources/list", &mut list, hint);
        assert_eq!(
            written(&list),
            r#"{"resources":[],"resultType":"complete","ttlMs":7,"cacheScope":"public"}"#
        );
    }

    #[test]
    fn list_hints_take_the_shortest_ttl_and_public_only_when_all_agree() {
        let public = |ttl| CacheHint {
            ttl_ms: Some(ttl),
            public: true,
        };
        let both = combine_hints([public(60_000), public(5_000)]);
        assert_eq!((both.ttl_ms, both.public), (Some(5_000), true));
        let silent = combine_hints([public(60_000), CacheHint::default()]);
        assert_eq!((silent.ttl_ms, silent.public), (Some(0), false));
        let none = combine_hints([]);
        assert_eq!((none.ttl_ms, none.public), (None, false));
    }

    #[test]
    fn handshake_clients_get_no_modern_fields() {
        let modern = r#"{"tools": [], "resultType": "complete", "ttlMs": 5, "cacheScope": "public",
            "_meta": {"io.modelcontextprotocol/serverInfo": {}, "vendor/x": 1}}"#;
        let mut r = ResultJson::from(serde_json::from_str::<Value>(modern).unwrap());
        unmark_modern_result(&mut r);
        assert_eq!(
            r.into_value(),
            json!({"tools": [], "_meta": {"vendor/x": 1}})
        );
        let mut t = text(modern);
        unmark_modern_result(&mut t);
        assert_eq!(written(&t), r#"{"tools":[],"_meta":{"vendor/x":1}}"#);
    }

    #[test]
    fn text_and_value_come_out_the_same() {
        let results = [
            r#"{"content":[{"type":"text","text":"4"}],"isError":false}"#,
            r#"{"content":[],"resultType":"complete","_meta":{"io.modelcontextprotocol/a":1}}"#,
            r#"{"resultType":"input_required","inputRequests":{"x":{}},"requestState":"s"}"#,
            r#"{"tools":[],"ttlMs":5,"cacheScope":"public","nextCursor":"c"}"#,
            r#"{"_meta":"not an object","resultType":7}"#,
            r#"{"_meta":{},"x":{"resultType":"complete","ttlMs":1}}"#,
            r#"{"_meta":{"vendor/y":[1,{"z":null}],"io.modelcontextprotocol/b":2}}"#,
            r#"{}"#,
            r#"[1,{"resultType":"complete"}]"#,
            r#""text""#,
        ];
        let hint = CacheHint {
            ttl_ms: Some(9),
            public: false,
        };
        for result in results {
            let value: Value = serde_json::from_str(result).unwrap();
            for method in ["tools/call", "tools/list", "server/discover"] {
                let mut as_value = ResultJson::from(value.clone());
                let mut as_text = text(result);
                mark_modern_result(method, &mut as_value, hint);
                mark_modern_result(method, &mut as_text, hint);
                assert_eq!(
                    written(&as_text),
                    written(&as_value),
                    "mark {method} {result}"
                );
            }
            let mut as_value = ResultJson::from(value.clone());
            let mut as_text = text(result);
            unmark_modern_result(&mut as_value);
            unmark_modern_result(&mut as_text);
            assert_eq!(written(&as_text), written(&as_value), "unmark {result}");
        }
    }

    #[test]
    fn handshake_clients_get_the_text_untouched_when_it_has_nothing_modern() {
        let plain = r#"{ "content": [ {"type": "text", "text": "ttl"} ], "isError": false }"#;
        let mut t = text(plain);
        unmark_modern_result(&mut t);
        assert_eq!(written(&t), plain);
        let other_result_type = r#"{"resultType": "input_required", "_meta": {"vendor/x": 1}}"#;
        let mut t = text(other_result_type);
        unmark_modern_result(&mut t);
        assert_eq!(
            written(&t),
            other_result_type,
            "nothing to take away: left as it was"
        );
        let only_reserved = r#"{"content":[],"_meta":{"io.modelcontextprotocol/x":1}}"#;
        let mut t = text(only_reserved);
        unmark_modern_result(&mut t);
        assert_eq!(written(&t), r#"{"content":[]}"#);
    }
}
