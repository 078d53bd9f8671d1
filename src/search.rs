//! Tool search: a BM25 index over the catalog's tool definitions, built when the catalog is
//! rebuilt, and the ranking `gateway__search_tools` and the OpenAI face's preselection use.
//!
//! Text is cut into words at anything not a letter or digit and at camelCase and letter/digit
//! boundaries (`HassTurnOn` -> `hass turn on`, `get_disk_temps` -> `get disk temp`), folded to
//! lower case, stripped of common English stop words (but not `on`/`off`/`up`/`down`, which
//! tell tools apart) and reduced by a small suffix stemmer; a query word also looks for a few
//! everyday synonyms at half weight (`thermostat` -> climate). Each tool is one document whose
//! fields weigh differently: name words, title, description, parameter names and descriptions,
//! and the server name (the part of the exposed name before `__`). Scores are BM25 over the
//! weighted term counts; ties go to the smaller name, so a search is deterministic.

use serde_json::Value;
use std::collections::HashMap;

/// Words that carry no meaning for a search.
const STOP_WORDS: &[&str] = &[
    "a", "about", "all", "an", "and", "any", "are", "as", "at", "be", "by", "can", "do", "does",
    "for", "from", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my",
    "of", "or", "our", "please", "should", "so", "some", "than", "that", "the", "their", "them",
    "then", "there", "these", "this", "those", "to", "use", "used", "using", "via", "was", "we",
    "what", "when", "where", "which", "who", "will", "with", "would", "you", "your",
];

/// Everyday words and the words tool descriptions use for the same thing (queries only; a
/// synonym counts half as much as the word itself). Kept short and general on purpose.
const SYNONYMS: &[(&str, &[&str])] = &[
    ("thermostat", &["climate", "temperature"]),
    ("degrees", &["temperature"]),
    ("heating", &["climate"]),
    ("lamp", &["light"]),
    ("music", &["media"]),
    ("song", &["media"]),
    ("folder", &["directory"]),
    ("directory", &["folder"]),
    ("remove", &["delete"]),
    ("delete", &["remove"]),
];
/// How much a synonym counts next to the word the query has.
const SYNONYM_WEIGHT: f32 = 0.5;

/// Field weights: how much a word counts where it appears.
const NAME_WEIGHT: f32 = 3.0;
const TITLE_WEIGHT: f32 = 2.0;
const DESCRIPTION_WEIGHT: f32 = 1.0;
const SERVER_WEIGHT: f32 = 1.0;
const PARAM_NAME_WEIGHT: f32 = 0.5;
const PARAM_DESCRIPTION_WEIGHT: f32 = 0.25;
/// Only the start of a long description is indexed (the rest is mostly examples and detail).
const MAX_DESCRIPTION_WORDS: usize = 120;

/// BM25 parameters (the usual ones).
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// The words of `text`, as the index and queries see them.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in split(text) {
        let folded = word.to_lowercase();
        if folded.len() < 2 || STOP_WORDS.contains(&folded.as_str()) {
            continue;
        }
        out.push(stem(&folded));
    }
    out
}

/// Cuts `text` at non-alphanumerics, at lower-to-upper case changes (`turnOn`), before the last
/// capital of a run followed by lower case (`HTTPServer` -> `HTTP Server`), and between letters
/// and digits.
fn split(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut start: Option<usize> = None;
    for (i, &(at, c)) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if let Some(s) = start.take() {
                parts.push(&text[s..at]);
            }
            continue;
        }
        if let Some(s) = start {
            let (_, prev) = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|(_, n)| n.is_lowercase());
            let boundary = (prev.is_lowercase() && c.is_uppercase())
                || (prev.is_uppercase() && c.is_uppercase() && next_lower)
                || (prev.is_ascii_digit() != c.is_ascii_digit());
            if boundary {
                parts.push(&text[s..at]);
                start = Some(at);
            }
        } else {
            start = Some(at);
        }
    }
    if let Some(s) = start {
        parts.push(&text[s..]);
    }
    parts
}

/// A small suffix stemmer for English: plurals, `-ing`, `-ed`, and a final `-e`, so that
/// `pause`, `paused`, `pauses` and `pausing` meet, as do `snapshot` and `snapshots`.
pub fn stem(word: &str) -> String {
    if !word.is_ascii() || word.len() <= 3 {
        return word.to_string();
    }
    let mut w = word.to_string();
    if let Some(base) = w.strip_suffix("ies").filter(|b| b.len() >= 2) {
        w = format!("{base}y");
    } else if w.ends_with("sses") || w.ends_with("xes") || w.ends_with("ches") {
        w.truncate(w.len() - 2);
    } else if w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        w.pop();
    }
    for suffix in ["ing", "ed"] {
        if let Some(base) = w.strip_suffix(suffix) {
            if base.len() >= 3 && base.bytes().any(is_vowel) {
                w = undouble(base);
                break;
            }
        }
    }
    if w.len() > 3 && w.ends_with('e') {
        w.pop();
    }
    w
}

fn is_vowel(b: u8) -> bool {
    matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'y')
}

/// `runn` -> `run`, `stopp` -> `stop` (but `pass`, `fill`, `buzz` stay).
fn undouble(base: &str) -> String {
    let bytes = base.as_bytes();
    let n = bytes.len();
    if n >= 2 && bytes[n - 1] == bytes[n - 2] && !matches!(bytes[n - 1], b'l' | b's' | b'z') {
        base[..n - 1].to_string()
    } else {
        base.to_string()
    }
}

/// The search index of one catalog's tools (in the catalog's order).
#[derive(Debug, Clone, Default)]
pub struct Index {
    terms: HashMap<String, usize>,
    /// For each term: the documents that have it and its weighted count there.
    postings: Vec<Vec<(u32, f32)>>,
    /// Each document's weighted length.
    lengths: Vec<f32>,
    names: Vec<String>,
    average: f32,
}

/// One hit: the tool's position in the catalog's list and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Index into the list the index was built from.
    pub index: usize,
    /// Its BM25 score (higher is better).
    pub score: f32,
}

impl Index {
    /// Indexes `tools` (definitions as `tools/list` shows them).
    pub fn build(tools: &[Value]) -> Index {
        let mut index = Index::default();
        for (doc, tool) in tools.iter().enumerate() {
            let mut counts: HashMap<String, f32> = HashMap::new();
            let mut length = 0.0;
            let mut add = |text: &str, weight: f32, limit: usize| {
                for word in words(text).into_iter().take(limit) {
                    *counts.entry(word).or_default() += weight;
                    length += weight;
                }
            };
            let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
            let (server, own) = name.split_once("__").unwrap_or(("", name));
            add(own, NAME_WEIGHT, usize::MAX);
            add(server, SERVER_WEIGHT, usize::MAX);
            let text = |key: &str| tool.get(key).and_then(Value::as_str).unwrap_or("");
            add(text("title"), TITLE_WEIGHT, usize::MAX);
            add(
                text("description"),
                DESCRIPTION_WEIGHT,
                MAX_DESCRIPTION_WORDS,
            );
            let properties = tool
                .pointer("/inputSchema/properties")
                .and_then(Value::as_object);
            for (param, schema) in properties.into_iter().flatten() {
                add(param, PARAM_NAME_WEIGHT, usize::MAX);
                let described = schema.get("description").and_then(Value::as_str);
                add(described.unwrap_or(""), PARAM_DESCRIPTION_WEIGHT, 30);
            }
            let mut counts: Vec<(String, f32)> = counts.into_iter().collect();
            counts.sort_by(|a, b| a.0.cmp(&b.0));
            for (word, count) in counts {
                let next = index.postings.len();
                let term = *index.terms.entry(word).or_insert(next);
                if term == next {
                    index.postings.push(Vec::new());
                }
                index.postings[term].push((doc as u32, count));
            }
            index.lengths.push(length);
            index.names.push(name.to_string());
        }
        let total: f32 = index.lengths.iter().sum();
        index.average = if index.lengths.is_empty() {
            1.0
        } else {
            (total / index.lengths.len() as f32).max(1.0)
        };
        index
    }

    /// How many tools it holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether it holds no tool.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The best `limit` tools for `query` among those `allowed` keeps, best first (ties by name).
    /// Tools that share no word with the query are not returned.
    pub fn search(&self, query: &str, limit: usize, allowed: &dyn Fn(usize) -> bool) -> Vec<Hit> {
        let mut query_terms: Vec<(usize, f32)> = Vec::new();
        let mut add = |word: &str, weight: f32| {
            if let Some(&term) = self.terms.get(word) {
                match query_terms.iter_mut().find(|(t, _)| *t == term) {
                    Some(known) => known.1 = known.1.max(weight),
                    None => query_terms.push((term, weight)),
                }
            }
        };
        for word in words(query) {
            add(&word, 1.0);
            for (_, synonyms) in SYNONYMS.iter().filter(|(w, _)| stem(w) == word) {
                for synonym in *synonyms {
                    add(&stem(synonym), SYNONYM_WEIGHT);
                }
            }
        }
        if query_terms.is_empty() || limit == 0 {
            return Vec::new();
        }
        let documents = self.names.len() as f32;
        let mut scores = vec![0.0f32; self.names.len()];
        for (term, weight) in query_terms {
            let postings = &self.postings[term];
            let n = postings.len() as f32;
            let idf = weight * ((documents - n + 0.5) / (n + 0.5) + 1.0).ln();
            for &(doc, tf) in postings {
                let length = self.lengths[doc as usize];
                let norm = K1 * (1.0 - B + B * length / self.average);
                scores[doc as usize] += idf * tf * (K1 + 1.0) / (tf + norm);
            }
        }
        let mut hits: Vec<Hit> = scores
            .into_iter()
            .enumerate()
            .filter(|(i, s)| *s > 0.0 && allowed(*i))
            .map(|(index, score)| Hit { index, score })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| self.names[a.index].cmp(&self.names[b.index]))
        });
        hits.truncate(limit);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, description: &str) -> Value {
        json!({"name": name, "description": description, "inputSchema": {"type": "object", "properties": {"entity_id": {"type": "string", "description": "The entity"}}}})
    }

    fn names(index: &Index, tools: &[Value], query: &str) -> Vec<String> {
        index
            .search(query, 5, &|_| true)
            .iter()
            .map(|h| tools[h.index]["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn words_split_names_fold_case_and_drop_stop_words() {
        assert_eq!(words("HassTurnOn"), ["hass", "turn", "on"]);
        assert_eq!(words("get_disk_temps"), ["get", "disk", "temp"]);
        assert_eq!(words("list-smb-shares"), ["list", "smb", "shar"]);
        assert_eq!(words("HTTPServer v2"), ["http", "server"]);
        assert_eq!(words("ipv6Address"), ["ipv", "address"]);
        assert_eq!(
            words("Turn ON the light in the kitchen"),
            ["turn", "on", "light", "kitchen"]
        );
        assert_eq!(words("the of a"), Vec::<String>::new());
    }

    #[test]
    fn stemming_meets_the_forms_of_a_word() {
        for (a, b) in [
            ("pause", "pausing"),
            ("pause", "paused"),
            ("snapshot", "snapshots"),
            ("entities", "entity"),
            ("running", "run"),
            ("create", "created"),
            ("temperatures", "temperature"),
            ("invoices", "invoice"),
        ] {
            assert_eq!(stem(a), stem(b), "{a} / {b}");
        }
        assert_eq!(stem("status"), "status");
        assert_eq!(stem("address"), "address");
        assert_eq!(stem("on"), "on");
    }

    #[test]
    fn the_name_ranks_above_a_mention_and_ties_go_by_name() {
        let tools = vec![
            tool("house__notes", "Keeps notes. Unrelated to any light."),
            tool("house__light_on", "Switches a lamp on."),
            tool(
                "nas__list_pools",
                "Lists the storage pools and their usage.",
            ),
            tool("b__pool_status", "Status of one pool."),
            tool("a__pool_status", "Status of one pool."),
        ];
        let index = Index::build(&tools);
        assert_eq!(index.len(), 5);
        let found = names(&index, &tools, "turn the light on");
        assert_eq!(found[0], "house__light_on", "{found:?}");
        let found = names(&index, &tools, "pool status");
        assert_eq!(&found[..2], ["a__pool_status", "b__pool_status"]);
        assert!(names(&index, &tools, "zzz unknown words").is_empty());
        assert!(names(&index, &tools, "").is_empty());
        // A synonym finds a tool, below one that has the word itself.
        let found = names(&index, &tools, "lamp");
        assert_eq!(found, ["house__light_on", "house__notes"]);
    }

    #[test]
    fn search_is_deterministic_and_filtered() {
        let tools: Vec<Value> = (0..50)
            .map(|i| tool(&format!("s{}__tool_{i}", i % 3), "Reads a sensor value"))
            .collect();
        let index = Index::build(&tools);
        let first = index.search("sensor", 10, &|_| true);
        for _ in 0..5 {
            assert_eq!(Index::build(&tools).search("sensor", 10, &|_| true), first);
        }
        let only_even = index.search("sensor", 100, &|i| i % 2 == 0);
        assert_eq!(only_even.len(), 25);
        assert!(only_even.iter().all(|h| h.index % 2 == 0));
        assert!(index.search("sensor", 0, &|_| true).is_empty());
    }

    #[test]
    fn parameters_and_server_count_less_than_the_name() {
        let tools = vec![
            json!({"name": "a__set_volume", "description": "Sets the volume.", "inputSchema": {"properties": {"level": {"description": "0 to 100"}}}}),
            json!({"name": "b__play", "description": "Plays media.", "inputSchema": {"properties": {"volume": {}}}}),
        ];
        let index = Index::build(&tools);
        let hits = index.search("volume", 5, &|_| true);
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].index, 0);
        assert!(hits[0].score > hits[1].score);
    }
}

/// Figures on the seed's real catalog (`tests/interop/fixtures/seed_tools`), printed by
/// `tests/bench/search.py` through `cargo test --release --lib search::bench -- --ignored
/// --nocapture`: recall@5 and MRR of the example queries, and search latency for the 231 tools
/// and for 5,000 synthetic ones. Never asserts a time.
#[cfg(test)]
mod bench {
    use super::*;
    use std::time::Instant;

    fn seed_tools() -> Vec<Value> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/fixtures/seed_tools"
        );
        let text = std::fs::read_to_string(format!("{dir}/tools.json")).expect("tools.json");
        serde_json::from_str(&text).expect("tools.json is a JSON array")
    }

    fn queries() -> Vec<(String, Vec<String>)> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/fixtures/seed_tools"
        );
        let text = std::fs::read_to_string(format!("{dir}/queries.json")).expect("queries.json");
        let list: Vec<Value> = serde_json::from_str(&text).expect("queries.json");
        list.iter()
            .map(|q| {
                let expected = q["expected"].as_array().expect("expected");
                (
                    q["query"].as_str().expect("query").to_string(),
                    expected
                        .iter()
                        .filter_map(|e| e.as_str().map(String::from))
                        .collect(),
                )
            })
            .collect()
    }

    /// Microseconds per search, as the median of `rounds` timings of all `queries`.
    fn latency(index: &Index, queries: &[&str], rounds: usize) -> f64 {
        let mut per_search: Vec<f64> = (0..rounds)
            .map(|_| {
                let started = Instant::now();
                for q in queries {
                    std::hint::black_box(index.search(q, 5, &|_| true));
                }
                started.elapsed().as_secs_f64() * 1e6 / queries.len() as f64
            })
            .collect();
        per_search.sort_by(f64::total_cmp);
        per_search[rounds / 2]
    }

    #[test]
    #[ignore]
    fn figures() {
        let tools = seed_tools();
        let started = Instant::now();
        let index = Index::build(&tools);
        let build_ms = started.elapsed().as_secs_f64() * 1e3;
        let queries = queries();
        let (mut hits, mut reciprocal) = (0usize, 0.0f64);
        for (query, expected) in &queries {
            let found: Vec<&str> = index
                .search(query, 10, &|_| true)
                .iter()
                .map(|h| tools[h.index]["name"].as_str().unwrap_or(""))
                .collect();
            let rank = found.iter().position(|n| expected.iter().any(|e| e == n));
            if rank.is_some_and(|r| r < 5) {
                hits += 1;
            }
            if let Some(r) = rank {
                reciprocal += 1.0 / (r as f64 + 1.0);
            }
            println!(
                "query {query:?}: first hit at {}; top 5: {}",
                rank.map(|r| (r + 1).to_string())
                    .unwrap_or_else(|| "-".into()),
                found.iter().take(5).copied().collect::<Vec<_>>().join(", ")
            );
        }
        let n = queries.len() as f64;
        println!(
            "recall@5: {:.2} ({hits}/{})",
            hits as f64 / n,
            queries.len()
        );
        println!("MRR@10: {:.3}", reciprocal / n);
        let texts: Vec<&str> = queries.iter().map(|(q, _)| q.as_str()).collect();
        println!(
            "index build, {} tools: {build_ms:.2} ms; search: {:.1} us",
            tools.len(),
            latency(&index, &texts, 201)
        );
        // 5,000 synthetic tools: the seed's, renamed per copy with a few words changed, so the
        // vocabulary and posting lists grow as a bigger household's would.
        let synthetic: Vec<Value> = (0..5000)
            .map(|i| {
                let mut tool = tools[i % tools.len()].clone();
                let name = tool["name"].as_str().unwrap_or("t").to_string();
                tool["name"] = Value::String(format!("s{}_{name}", i / tools.len()));
                let description = tool["description"].as_str().unwrap_or("").to_string();
                tool["description"] =
                    Value::String(format!("{description} site{} zone{}", i % 97, i % 13));
                tool
            })
            .collect();
        let started = Instant::now();
        let big = Index::build(&synthetic);
        let build_ms = started.elapsed().as_secs_f64() * 1e3;
        println!(
            "index build, {} tools: {build_ms:.2} ms; search: {:.1} us",
            synthetic.len(),
            latency(&big, &texts, 21)
        );
    }
}
