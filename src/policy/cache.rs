//! Results of read-only tools, kept for a while (a server's `cache_ttl_secs`).
//!
//! An entry is keyed by the principal and its access rule, the tool's name and its arguments in
//! canonical form (object keys sorted), so two principals never share a result and reordering
//! arguments hits the same entry. The cache is bounded in entries and bytes; the oldest entry
//! goes first when it is full. Only successful results are stored: the gateway never calls
//! [`ResultCache::put`] with an error.

use crate::mcp::result_json::ResultJson;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Figures for `/status` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Cacheable calls that went to the backend.
    pub misses: u64,
    /// Results held now.
    pub entries: u64,
    /// Their approximate size in bytes.
    pub bytes: u64,
}

struct Held {
    value: ResultJson,
    bytes: usize,
    expires: Instant,
    /// Insertion order, for evicting the oldest.
    serial: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<[u8; 32], Held>,
    by_age: BTreeMap<u64, [u8; 32]>,
    bytes: usize,
    next_serial: u64,
}

impl Inner {
    fn remove(&mut self, key: &[u8; 32]) {
        if let Some(held) = self.entries.remove(key) {
            self.by_age.remove(&held.serial);
            self.bytes -= held.bytes;
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, key)) = self.by_age.pop_first() {
            if let Some(held) = self.entries.remove(&key) {
                self.bytes -= held.bytes;
            }
        }
    }
}

/// The bounded result cache.
pub struct ResultCache {
    inner: Mutex<Inner>,
    max_entries: usize,
    max_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The key of one call: who calls (principal and rule), which tool, with what arguments.
pub fn key(principal: &str, rule: &str, tool: &str, arguments: &Value) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [principal, rule, tool] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let mut canonical = String::new();
    write_canonical(arguments, &mut canonical);
    hasher.update(canonical.as_bytes());
    hasher.finalize().into()
}

/// `value` as JSON with every object's keys sorted.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

impl ResultCache {
    /// A cache holding at most `max_entries` results and `max_bytes` bytes.
    pub fn new(max_entries: usize, max_bytes: usize) -> ResultCache {
        ResultCache {
            inner: Mutex::new(Inner::default()),
            max_entries,
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The result held for `key`, if it has not expired (counted as a hit or a miss).
    pub fn get(&self, key: &[u8; 32]) -> Option<ResultJson> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let found = match inner.entries.get(key) {
            Some(held) if held.expires > Instant::now() => Some(held.value.clone()),
            Some(_) => {
                inner.remove(key);
                None
            }
            None => None,
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `value` for `ttl` (a result larger than the whole cache is not kept).
    pub fn put(&self, key: [u8; 32], value: &ResultJson, ttl: Duration) {
        let bytes = value.approximate_size() + 64;
        if bytes > self.max_bytes || self.max_entries == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.remove(&key);
        let now = Instant::now();
        // Expired entries go first, then the oldest until the new one fits.
        let expired: Vec<[u8; 32]> = inner
            .entries
            .iter()
            .filter(|(_, held)| held.expires <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            inner.remove(&k);
        }
        while inner.entries.len() >= self.max_entries || inner.bytes + bytes > self.max_bytes {
            if inner.entries.is_empty() {
                break;
            }
            inner.evict_oldest();
        }
        let serial = inner.next_serial;
        inner.next_serial += 1;
        inner.by_age.insert(serial, key);
        inner.bytes += bytes;
        inner.entries.insert(
            key,
            Held {
                value: value.clone(),
                bytes,
                expires: now + ttl,
                serial,
            },
        );
    }

    /// Hits, misses and what is held now.
    pub fn stats(&self) -> CacheStats {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: inner.entries.len() as u64,
            bytes: inner.bytes as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn argument_order_does_not_matter_but_principal_and_tool_do() {
        let a = key(
            "kids",
            "r",
            "house__status",
            &json!({"room": "hall", "deep": {"x": 1, "y": [2, {"b": 1, "a": 2}]}}),
        );
        let b = key(
            "kids",
            "r",
            "house__status",
            &json!({"deep": {"y": [2, {"a": 2, "b": 1}], "x": 1}, "room": "hall"}),
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            key("owner", "r", "house__status", &json!({"room": "hall"}))
        );
        assert_ne!(
            key("kids", "r", "house__status", &json!({})),
            key("kids", "r2", "house__status", &json!({}))
        );
        // The parts are length-prefixed: moving a character between them changes the key.
        assert_ne!(
            key("ab", "c", "t", &json!({})),
            key("a", "bc", "t", &json!({}))
        );
    }

    #[test]
    fn hits_misses_and_expiry() {
        let cache = ResultCache::new(10, 1 << 20);
        let k = key("p", "", "t", &json!({}));
        assert!(cache.get(&k).is_none());
        cache.put(k, &ResultJson::from(json!({"content": []})), MINUTE);
        assert_eq!(
            cache.get(&k).map(ResultJson::into_value),
            Some(json!({"content": []}))
        );
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
        assert!(stats.bytes > 0);
        let short = key("p", "", "short", &json!({}));
        cache.put(short, &ResultJson::from(json!(1)), Duration::ZERO);
        assert!(cache.get(&short).is_none());
        assert_eq!(cache.stats().entries, 1);
    }

    #[test]
    fn bounded_in_entries_and_bytes_oldest_first() {
        let cache = ResultCache::new(3, 1 << 20);
        let keys: Vec<_> = (0..5)
            .map(|i| key("p", "", "t", &json!({"i": i})))
            .collect();
        for k in &keys {
            cache.put(*k, &ResultJson::from(json!("x")), MINUTE);
        }
        assert_eq!(cache.stats().entries, 3);
        assert!(cache.get(&keys[0]).is_none());
        assert!(cache.get(&keys[1]).is_none());
        assert!(cache.get(&keys[4]).is_some());

        let small = ResultCache::new(100, 400);
        let big = "y".repeat(200);
        for k in &keys {
            small.put(*k, &ResultJson::from(json!(big)), MINUTE);
        }
        let stats = small.stats();
        assert_eq!(stats.entries, 1);
        assert!(stats.bytes <= 400);
        // Too big for the whole cache: not kept, nothing else lost.
        small.put(keys[0], &ResultJson::from(json!("z".repeat(1000))), MINUTE);
        assert!(small.get(&keys[4]).is_some());
        assert!(small.get(&keys[0]).is_none());
    }
}
