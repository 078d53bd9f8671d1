//! Tool views: how much of the catalog a principal's `tools/list` shows.
//!
//! `full` (the default) lists every tool the principal may use. `search` lists only two
//! meta-tools, `gateway__search_tools` (find tools by what they do) and `gateway__call_tool`
//! (run one by name), plus the tools the config pins (`tool_search.pinned` globs), so a client
//! with hundreds of tools behind the gateway pays a few hundred bytes per listing instead of
//! the whole catalog. This module owns the two meta-tools' definitions, the checking of their
//! arguments, the shape of a search answer, and the size estimates `/status` and the OpenAI
//! face use; the search itself is [`crate::search`], run by the gateway on the principal's
//! allowed tools, and a call through `gateway__call_tool` takes the one policy path of
//! [`crate::gateway::Gateway::call_tool_params`] under the inner tool's name.

use crate::catalog::Catalog;
use crate::jsonrpc::{self, RpcError};
use crate::policy::AccessRule;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Name of the search meta-tool.
pub const SEARCH_TOOL: &str = "gateway__search_tools";
/// Name of the call meta-tool.
pub const CALL_TOOL: &str = "gateway__call_tool";
/// Both meta-tools.
pub const META_TOOLS: [&str; 2] = [SEARCH_TOOL, CALL_TOOL];
/// Results a search returns unless it asks for another number.
pub const DEFAULT_LIMIT: usize = 5;
/// The most results one search returns.
pub const MAX_LIMIT: usize = 20;

/// What a principal's `tools/list` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolView {
    /// Every tool it may use.
    #[default]
    Full,
    /// The two meta-tools and the pinned tools.
    Search,
}

impl ToolView {
    /// `full` or `search`.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolView::Full => "full",
            ToolView::Search => "search",
        }
    }

    /// Parses `full` or `search`.
    pub fn parse(text: &str) -> Option<ToolView> {
        match text {
            "full" => Some(ToolView::Full),
            "search" => Some(ToolView::Search),
            _ => None,
        }
    }

    /// Whether it is the default (so token records leave it out).
    pub fn is_full(&self) -> bool {
        *self == ToolView::Full
    }
}

/// What the OpenAI face offers the upstream model (`openai.tool_view`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OpenAiView {
    /// Every tool (unless the token's own view is `search`).
    #[default]
    Full,
    /// The meta-tools and the pinned tools.
    Search,
    /// Every tool while they fit in `openai.max_tool_tokens`; beyond, the best ones for the
    /// user's last message within the budget, with the meta-tools beside them.
    Auto,
}

impl OpenAiView {
    /// Parses `full`, `search` or `auto`.
    pub fn parse(text: &str) -> Option<OpenAiView> {
        match text {
            "full" => Some(OpenAiView::Full),
            "search" => Some(OpenAiView::Search),
            "auto" => Some(OpenAiView::Auto),
            _ => None,
        }
    }
}

/// Whether `name` is one of the meta-tools.
pub fn is_meta(name: &str) -> bool {
    name == SEARCH_TOOL || name == CALL_TOOL
}

/// The two meta-tools as `tools/list` shows them; `servers` (the name prefixes the principal
/// may use) are named in the search tool's description so a model knows what `server` takes.
pub fn meta_tools(servers: &[&str]) -> Vec<Value> {
    let mut described = String::from(
        "Find tools by what they do, best match first, with each tool's input schema. Then run one with gateway__call_tool. Example: {\"query\": \"turn on the kitchen light\"}.",
    );
    if !servers.is_empty() {
        described.push_str(" Servers: ");
        described.push_str(&servers.join(", "));
        described.push('.');
    }
    vec![
        json!({
            "name": SEARCH_TOOL,
            "description": described,
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What you want to do, in plain words"},
                    "server": {"type": "string", "description": "Only tools of this server"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": "How many tools (default 5)"},
                },
                "required": ["query"],
                "additionalProperties": false,
            },
            "annotations": {"readOnlyHint": true, "openWorldHint": false},
        }),
        json!({
            "name": CALL_TOOL,
            "description": "Run a tool that gateway__search_tools found, by its exact name, with arguments as its inputSchema asks. Example: {\"name\": \"homeassistant__HassTurnOn\", \"arguments\": {\"name\": \"kitchen light\"}}.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "The tool's name"},
                    "arguments": {"type": "object", "description": "The tool's arguments"},
                },
                "required": ["name"],
                "additionalProperties": false,
            },
        }),
    ]
}

/// The `search` view of `tools` (the principal's full list): the meta-tools, then the tools a
/// `pinned` glob matches, in catalog order.
pub fn search_listing(tools: &[&Value], pinned: &[String]) -> Vec<Value> {
    let mut servers: Vec<&str> = Vec::new();
    for tool in tools {
        let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
        if let Some((server, _)) = name.split_once("__") {
            if !servers.contains(&server) && server != crate::config::BUILTIN_SERVER {
                servers.push(server);
            }
        }
    }
    let mut listing = meta_tools(&servers);
    listing.extend(
        tools
            .iter()
            .filter(|tool| {
                let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
                !is_meta(name) && pinned.iter().any(|g| crate::catalog::glob_match(g, name))
            })
            .map(|tool| (*tool).clone()),
    );
    listing
}

/// The tools of `catalog` that `rule` lets its principal use and that best match `query`, best
/// first, as a search answer shows them; `backends` are the names of the catalog's backends (its
/// routes' indexes), `server` keeps only the tools of that server.
pub fn search_catalog(
    catalog: &Catalog,
    backends: &[&str],
    rule: &AccessRule,
    query: &str,
    server: Option<&str>,
    limit: usize,
) -> Vec<Value> {
    let owners = catalog.tool_owners();
    let everything = rule.is_everything();
    let hits = catalog.search.search(query, limit, &|i| {
        let (Some(tool), Some(owner)) = (catalog.tools.get(i), owners.get(i)) else {
            return false;
        };
        let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
        let backend = match owner {
            Some(index) => match backends.get(*index) {
                Some(backend) => Some(*backend),
                None => return false,
            },
            None => None,
        };
        // The server the tool comes from (not its name's prefix, which a config may change).
        let in_server = match server {
            None => true,
            Some(s) => backend.unwrap_or(crate::config::BUILTIN_SERVER) == s,
        };
        in_server
            && (everything
                || rule
                    .check_tool(backend, name, catalog.is_read_only(name))
                    .is_ok())
    });
    hits.iter()
        .filter_map(|hit| catalog.tools.get(hit.index))
        .map(found_entry)
        .collect()
}

/// The arguments of a `gateway__search_tools` call, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// The words to look for.
    pub query: String,
    /// Only the tools of that server (the gateway's own: `gateway`).
    pub server: Option<String>,
    /// How many tools at most.
    pub limit: usize,
}

fn invalid(message: String) -> RpcError {
    RpcError::new(jsonrpc::INVALID_PARAMS, message)
}

/// Checks the arguments of a `gateway__search_tools` call.
pub fn search_request(arguments: Option<&Value>) -> Result<SearchRequest, RpcError> {
    let empty = Map::new();
    let arguments = match arguments {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(map)) => map,
        Some(_) => return Err(invalid(format!("{SEARCH_TOOL}: arguments must be an object such as {{\"query\": \"turn on the light\"}}"))),
    };
    if let Some(key) = arguments
        .keys()
        .find(|k| !matches!(k.as_str(), "query" | "server" | "limit"))
    {
        return Err(invalid(format!(
            "{SEARCH_TOOL}: unknown argument \"{key}\" (it takes query, server and limit)"
        )));
    }
    let query = match arguments.get("query") {
        Some(Value::String(q)) if !q.trim().is_empty() => q.clone(),
        _ => return Err(invalid(format!("{SEARCH_TOOL}: \"query\" must be a non-empty string, e.g. {{\"query\": \"turn on the light\"}}"))),
    };
    let server = match arguments.get("server") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            return Err(invalid(format!(
                "{SEARCH_TOOL}: \"server\" must be a server name (a string)"
            )))
        }
    };
    let limit = match arguments.get("limit") {
        None | Some(Value::Null) => DEFAULT_LIMIT,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
            _ => {
                return Err(invalid(format!(
                    "{SEARCH_TOOL}: \"limit\" must be an integer from 1 to {MAX_LIMIT}"
                )))
            }
        },
    };
    Ok(SearchRequest {
        query,
        server,
        limit,
    })
}

/// A found tool as a search answer shows it: name, description and input schema.
pub fn found_entry(tool: &Value) -> Value {
    let mut entry = Map::new();
    for key in ["name", "description", "inputSchema"] {
        if let Some(value) = tool.get(key) {
            entry.insert(key.into(), value.clone());
        }
    }
    Value::Object(entry)
}

/// The result of a search: `structuredContent` `{"tools": [...]}`, and the same JSON as text for
/// clients that read text only.
pub fn search_result(found: Vec<Value>) -> Value {
    let structured = json!({ "tools": found });
    let text = if found.is_empty() {
        "No tool matches these words. Try other words (what the tool does, or the device or service it acts on).".to_string()
    } else {
        structured.to_string()
    };
    json!({
        "content": [{"type": "text", "text": text}],
        "structuredContent": structured,
        "isError": false,
    })
}

/// Makes the arguments of a search ask for the most results, for a caller that filters them
/// further ([`narrow_search`]); the number the caller asked for (1 to [`MAX_LIMIT`]).
pub fn widen_search(arguments: &mut Value) -> usize {
    let asked = arguments
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_LIMIT, |n| n.clamp(1, MAX_LIMIT as u64) as usize);
    if let Some(map) = arguments.as_object_mut() {
        map.insert("limit".into(), json!(MAX_LIMIT));
    }
    asked
}

/// A search result with only the found tools `keep` keeps, at most `limit` of them.
pub fn narrow_search(result: Value, limit: usize, keep: &dyn Fn(&str) -> bool) -> Value {
    let Some(found) = result
        .pointer("/structuredContent/tools")
        .and_then(Value::as_array)
    else {
        return result;
    };
    let kept: Vec<Value> = found
        .iter()
        .filter(|t| keep(t.get("name").and_then(Value::as_str).unwrap_or("")))
        .take(limit)
        .cloned()
        .collect();
    search_result(kept)
}

/// The `tools/call` params of the tool a `gateway__call_tool` call names: its `name` and
/// `arguments` in place of the meta-tool's, every other param (`_meta`, `inputResponses`,
/// `requestState`) kept.
pub fn inner_call(params: &Map<String, Value>) -> Result<Map<String, Value>, RpcError> {
    let empty = Map::new();
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(map)) => map,
        Some(_) => return Err(invalid(format!("{CALL_TOOL}: arguments must be an object such as {{\"name\": \"server__tool\", \"arguments\": {{}}}}"))),
    };
    if let Some(key) = arguments
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "arguments"))
    {
        return Err(invalid(format!(
            "{CALL_TOOL}: unknown argument \"{key}\" (it takes name and arguments; the tool's own arguments go inside \"arguments\")"
        )));
    }
    let name = match arguments.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => {
            return Err(invalid(format!(
                "{CALL_TOOL}: \"name\" must be the name of a tool gateway__search_tools found"
            )))
        }
    };
    // A meta-tool inside the call would skip what the faces apply to meta-tools by name (the
    // OpenAI face keeps searches within `openai.tools`).
    if is_meta(&name) {
        return Err(invalid(format!(
            "{CALL_TOOL} runs the tools {SEARCH_TOOL} finds, not {name}: call {name} directly"
        )));
    }
    let inner_arguments = match arguments.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(_) => {
            return Err(invalid(format!(
                "{CALL_TOOL}: \"arguments\" must be an object with the tool's arguments"
            )))
        }
    };
    let mut inner = params.clone();
    inner.insert("name".into(), json!(name));
    inner.insert("arguments".into(), inner_arguments);
    Ok(inner)
}

/// The size of a listing in bytes (its compact JSON), counted as it is written: nothing is
/// kept (a household's full listing is some 150 KB).
pub fn listing_bytes<T: serde::Serialize>(tools: &[T]) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, tools) {
        Ok(()) => count.0,
        Err(_) => 0,
    }
}

/// A rough token count of JSON text: one token per four bytes, the usual rule of thumb for
/// English and JSON with BPE tokenizers.
pub fn estimate_tokens(bytes: usize) -> usize {
    bytes.div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_parse_and_the_default_is_full() {
        assert_eq!(ToolView::default(), ToolView::Full);
        assert_eq!(ToolView::parse("search"), Some(ToolView::Search));
        assert_eq!(ToolView::parse("Search"), None);
        assert_eq!(OpenAiView::parse("auto"), Some(OpenAiView::Auto));
        assert_eq!(
            serde_json::to_string(&ToolView::Search).unwrap(),
            "\"search\""
        );
    }

    #[test]
    fn the_search_listing_has_the_meta_tools_and_the_pinned_ones() {
        let a = json!({"name": "house__light_on", "inputSchema": {}});
        let b = json!({"name": "nas__list_pools", "inputSchema": {}});
        let own = json!({"name": "gateway__status", "inputSchema": {}});
        let listing = search_listing(&[&own, &a, &b], &["house__*".to_string()]);
        let names: Vec<&str> = listing
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [SEARCH_TOOL, CALL_TOOL, "house__light_on"]);
        let described = listing[0]["description"].as_str().unwrap();
        assert!(described.ends_with("Servers: house, nas."), "{described}");
        assert!(
            listing_bytes(&listing) < 1500,
            "{}",
            listing_bytes(&listing)
        );
    }

    #[test]
    fn a_search_finds_only_what_the_rule_lets_the_principal_use() {
        use crate::backend::Lists;
        use crate::catalog::Source;
        use crate::config::Naming;
        let house = Lists {
            tools: vec![
                json!({"name": "unlock_door", "description": "Unlocks a door."}),
                json!({"name": "door_status", "description": "Whether a door is locked.", "annotations": {"readOnlyHint": true}}),
            ],
            ..Default::default()
        };
        let garage = Lists {
            tools: vec![json!({"name": "open_door", "description": "Opens the garage door."})],
            ..Default::default()
        };
        let (h, g) = (Naming::prefixed("house"), Naming::prefixed("garage"));
        let source = |server, naming, lists| Source {
            server,
            allow: &[],
            deny: &[],
            naming,
            read_only: &[],
            lists,
        };
        let catalog = Catalog::build(
            Vec::new(),
            &[source("house", &h, &house), source("garage", &g, &garage)],
        );
        let backends = ["house", "garage"];
        let found = |rule: &AccessRule, server: Option<&str>| -> Vec<String> {
            let mut names: Vec<String> =
                search_catalog(&catalog, &backends, rule, "door", server, 10)
                    .iter()
                    .map(|t| t["name"].as_str().unwrap_or("").to_string())
                    .collect();
            names.sort();
            names
        };
        let all = AccessRule::everything();
        assert_eq!(
            found(&all, None),
            [
                "garage__open_door",
                "house__door_status",
                "house__unlock_door"
            ]
        );
        assert_eq!(found(&all, Some("garage")), ["garage__open_door"]);
        let no_unlock = AccessRule {
            deny: vec!["*unlock*".into()],
            ..AccessRule::everything()
        };
        assert_eq!(
            found(&no_unlock, None),
            ["garage__open_door", "house__door_status"]
        );
        let house_reads = AccessRule {
            servers: Some(vec!["house".into()]),
            read_only: true,
            ..AccessRule::everything()
        };
        assert_eq!(found(&house_reads, None), ["house__door_status"]);
        assert!(found(&AccessRule::nothing(), None).is_empty());
        // A route to a backend the view no longer has is never found.
        let found_short = search_catalog(&catalog, &["house"], &all, "garage", None, 10);
        assert!(found_short.is_empty());
    }

    #[test]
    fn no_backend_takes_a_meta_tools_name() {
        use crate::backend::Lists;
        use crate::catalog::Source;
        use crate::config::Naming;
        let lists = Lists {
            tools: vec![
                json!({"name": "gateway__search_tools"}),
                json!({"name": "other"}),
            ],
            ..Default::default()
        };
        let bare = Naming::prefixed("");
        let catalog = Catalog::build(
            Vec::new(),
            &[Source {
                server: "odd",
                allow: &[],
                deny: &[],
                naming: &bare,
                read_only: &[],
                lists: &lists,
            }],
        );
        let names: Vec<&str> = catalog
            .tools
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, ["other"]);
        assert_eq!(catalog.clashes.len(), 1, "{:?}", catalog.clashes);
    }

    #[test]
    fn a_widened_search_is_narrowed_to_the_asked_number() {
        let mut arguments = json!({"query": "x", "limit": 2});
        assert_eq!(widen_search(&mut arguments), 2);
        assert_eq!(arguments["limit"], json!(MAX_LIMIT));
        assert_eq!(widen_search(&mut json!({"query": "x"})), DEFAULT_LIMIT);
        let found: Vec<Value> = ["a__1", "b__2", "a__3", "a__4"]
            .iter()
            .map(|n| json!({"name": n, "inputSchema": {}}))
            .collect();
        let narrowed = narrow_search(search_result(found), 2, &|n| n.starts_with("a__"));
        let names: Vec<&str> = narrowed["structuredContent"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, ["a__1", "a__3"]);
        let error = json!({"content": [], "isError": true});
        assert_eq!(narrow_search(error.clone(), 2, &|_| true), error);
    }

    #[test]
    fn search_arguments_are_checked() {
        let ok = search_request(Some(
            &json!({"query": "lights", "limit": 3, "server": "house"}),
        ));
        assert_eq!(
            ok.unwrap(),
            SearchRequest {
                query: "lights".into(),
                server: Some("house".into()),
                limit: 3
            }
        );
        assert_eq!(
            search_request(Some(&json!({"query": "x"}))).unwrap().limit,
            DEFAULT_LIMIT
        );
        for bad in [
            json!({}),
            json!({"query": " "}),
            json!({"query": "x", "limit": 0}),
            json!({"query": "x", "limit": 21}),
            json!({"query": "x", "extra": 1}),
            json!([]),
        ] {
            let error = search_request(Some(&bad)).unwrap_err();
            assert_eq!(error.code, jsonrpc::INVALID_PARAMS, "{bad}");
        }
    }

    #[test]
    fn an_inner_call_keeps_the_other_params() {
        let params = json!({"name": CALL_TOOL, "arguments": {"name": "house__light_on", "arguments": {"area": "kitchen"}}, "_meta": {"progressToken": 7}});
        let inner = inner_call(params.as_object().unwrap()).unwrap();
        assert_eq!(
            Value::Object(inner),
            json!({"name": "house__light_on", "arguments": {"area": "kitchen"}, "_meta": {"progressToken": 7}})
        );
        let bare = json!({"arguments": {"name": "house__status"}});
        assert_eq!(
            inner_call(bare.as_object().unwrap()).unwrap()["arguments"],
            json!({})
        );
        for bad in [
            json!({"arguments": {}}),
            json!({"arguments": {"name": CALL_TOOL}}),
            json!({"arguments": {"name": SEARCH_TOOL, "arguments": {"query": "x"}}}),
            json!({"arguments": {"name": "a__b", "arguments": [1]}}),
            json!({"arguments": {"name": "a__b", "area": "kitchen"}}),
        ] {
            assert!(inner_call(bad.as_object().unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_search_answer_has_the_same_json_as_text() {
        let found = vec![found_entry(
            &json!({"name": "a__b", "description": "d", "inputSchema": {"type": "object"}, "annotations": {}}),
        )];
        let result = search_result(found);
        let text = result["content"][0]["text"].as_str().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(text).unwrap(),
            result["structuredContent"]
        );
        assert!(result["structuredContent"]["tools"][0]
            .get("annotations")
            .is_none());
        let none = search_result(Vec::new());
        assert_eq!(none["structuredContent"], json!({"tools": []}));
        assert_eq!(estimate_tokens(10), 3);
    }
}
