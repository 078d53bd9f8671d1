//! How results differ between the eras: a 2026-07-28 result says `resultType`, and list
//! results say how long they may be cached (`ttlMs`, `cacheScope`); a handshake-era client gets
//! none of that revision's fields or reserved `_meta` keys.

use super::{ListKind, META_RESERVED_PREFIX};
use serde_json::{json, Value};

/// How long a client may cache a list (`ttlMs`, `cacheScope`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CacheHint {
    /// `ttlMs`, the smallest over the list's pages; `None` when the server did not say.
    pub ttl_ms: Option<u64>,
    /// `cacheScope` was `"public"` on every page.
    pub public: bool,
}

/// A result from a 2026-07-28 backend, for a handshake-era client: without the fields and
/// reserved `_meta` keys of that revision (the content is left as it is).
pub fn unmark_modern_result(result: &mut Value) {
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
pub fn mark_modern_result(method: &str, result: &mut Value, hint: CacheHint) {
    if let Value::Object(map) = result {
        map.entry("resultType").or_insert(json!("complete"));
        if ListKind::of_method(method).is_some() || method == "server/discover" {
            let scope = if hint.public { "public" } else { "private" };
            map.entry("ttlMs")
                .or_insert(json!(hint.ttl_ms.unwrap_or(0)));
            map.entry("cacheScope").or_insert(json!(scope));
        }
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

    #[test]
    fn modern_results_are_marked() {
        let mut r = json!({"tools": []});
        mark_modern_result("tools/list", &mut r, CacheHint::default());
        assert_eq!(r["resultType"], "complete");
        assert_eq!(r["cacheScope"], "private");
        assert_eq!(r["ttlMs"], 0);
        let mut c = json!({"content": []});
        mark_modern_result("tools/call", &mut c, CacheHint::default());
        assert_eq!(c["resultType"], "complete");
        assert!(c.get("ttlMs").is_none());
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
        let mut r = json!({"tools": [], "resultType": "complete", "ttlMs": 5, "cacheScope": "public",
            "_meta": {"io.modelcontextprotocol/serverInfo": {}, "vendor/x": 1}});
        unmark_modern_result(&mut r);
        assert_eq!(r, json!({"tools": [], "_meta": {"vendor/x": 1}}));
    }
}
