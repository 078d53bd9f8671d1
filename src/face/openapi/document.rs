//! The OpenAPI 3.1 document of the OpenAPI face: one `POST` operation per tool, and the
//! flattening that turns a tool's `inputSchema` into a request body schema an OpenAPI tool runner
//! gives its model as parameters.
//!
//! Open WebUI reads the parameters from the top-level `properties` of the request body schema:
//! a top-level `allOf`, `oneOf` or `anyOf`, or a `$ref` it cannot follow, leaves the model with
//! none. So [`flat_body`] makes one flat object schema: every local `$ref` is inlined (a cycle,
//! or more than [`MAX_NODES`] nodes, becomes `{}`), `$defs`/`definitions` are dropped, a
//! top-level `allOf` is merged into the top, and a top-level `oneOf`/`anyOf` is folded into
//! the union of its branches' properties (required only when every branch requires it; the
//! description then lists the alternatives). Every other keyword, vendor keys (`x-...`, `_meta`)
//! included, passes through. The gateway still validates each call against the tool's own
//! schema, so what the flattening loosens is checked there.

use serde_json::{json, Map, Value};

/// The most schema nodes an inlined schema may have; beyond it, references become `{}`.
pub const MAX_NODES: usize = 20_000;
/// How deep an inlined schema may nest (references followed included): deeper parts become
/// `{}`, so that no backend's chain of references runs a worker out of stack.
const MAX_DEPTH: usize = 64;

/// Keys whose values are data, not subschemas: never searched for `$ref`.
const DATA_KEYS: &[&str] = &["const", "enum", "default", "examples", "example", "_meta"];
/// Keys whose values map names (which may be anything, `default` included) to subschemas.
const NAMED_KEYS: &[&str] = &["properties", "patternProperties", "dependentSchemas"];

/// A tool as the document needs it: the backend it belongs to (`gateway` for ours), and its
/// definition as clients see it.
pub struct Operation<'a> {
    /// The path segment after `/openapi/`: the backend's name.
    pub server: &'a str,
    /// The tool definition (`name`, `description`, `title`, `inputSchema`, ...).
    pub tool: &'a Value,
}

/// The document for `operations`, served from `server_url`; operation paths start with
/// `path_prefix` (`/openapi/<server>` for the whole document, empty for a backend's own).
pub fn document(
    title: &str,
    server_url: &str,
    path_prefix: impl Fn(&str) -> String,
    operations: &[Operation<'_>],
) -> Value {
    let mut paths = Map::new();
    for op in operations {
        let Some(name) = op.tool.get("name").and_then(Value::as_str) else {
            continue;
        };
        paths.insert(
            format!("{}/{name}", path_prefix(op.server)),
            json!({"post": operation(op.server, name, op.tool)}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The MCP tools this token may use, through mcp-gateway. Each operation runs one tool: POST its arguments as a JSON object. Success is the tool's structured result as JSON, or its text; an error is {\"error\", \"message\"} with a 4xx or 5xx status.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A token from `mcp-gateway token create`"}},
            "schemas": {"Error": {
                "type": "object",
                "properties": {
                    "error": {"type": "string", "description": "What kind of error (unauthorized, forbidden, not_found, unknown_tool, method_not_allowed, invalid_body, invalid_arguments, confirmation_required, input_required, tool_error, rate_limited, backend_error, backend_busy, backend_timeout, unavailable)"},
                    "message": {"type": "string", "description": "What went wrong and what to do"},
                },
                "required": ["error", "message"],
            }},
            "responses": {"Result": {
                "description": "The tool's result: its structuredContent as JSON, else its text",
                "content": {"application/json": {"schema": {}}, "text/plain": {"schema": {"type": "string"}}},
            }, "Error": {
                "description": "The tool was not run, or it reported an error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }},
        },
    })
}

fn operation(server: &str, name: &str, tool: &Value) -> Value {
    let description = tool.get("description").and_then(Value::as_str);
    let summary = tool
        .get("title")
        .and_then(Value::as_str)
        .or_else(|| description.and_then(|d| d.lines().find(|l| !l.trim().is_empty())))
        .map(|s| s.trim().chars().take(120).collect::<String>())
        .unwrap_or_else(|| name.to_string());
    let schema = flat_body(tool.get("inputSchema"));
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    let mut op = json!({
        "operationId": name,
        "summary": summary,
        "tags": [server],
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}},
        "responses": {
            "200": {"$ref": "#/components/responses/Result"},
            "default": {"$ref": "#/components/responses/Error"},
        },
    });
    if let Some(d) = description {
        op["description"] = json!(d);
    }
    op
}

/// The request body schema for a tool's `inputSchema`: one flat object schema (see the module
/// documentation).
pub fn flat_body(input_schema: Option<&Value>) -> Value {
    let root = match input_schema {
        Some(Value::Object(_)) => input_schema.cloned().unwrap_or_default(),
        _ => json!({}),
    };
    let mut budget = MAX_NODES;
    let mut top = match inline(&root, &root, &mut Vec::new(), &mut budget, 0) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for key in ["$schema", "$id", "$anchor", "$dynamicAnchor"] {
        top.remove(key);
    }
    merge_all_of(&mut top);
    fold_alternatives(&mut top);
    let is_object = match top.get("type") {
        Some(Value::String(t)) => t == "object",
        _ => false,
    };
    if !is_object {
        top.insert("type".into(), json!("object"));
    }
    if !top.get("properties").is_some_and(Value::is_object) {
        top.insert("properties".into(), json!({}));
    }
    match top.get("required") {
        Some(Value::Array(r)) if !r.is_empty() && r.iter().all(Value::is_string) => {}
        Some(_) => {
            top.remove("required");
        }
        None => {}
    }
    Value::Object(top)
}

/// How many JSON values `value` holds, itself included.
fn nodes(value: &Value) -> usize {
    1 + match value {
        Value::Object(map) => map.values().map(nodes).sum(),
        Value::Array(items) => items.iter().map(nodes).sum(),
        _ => 0,
    }
}

/// `value` with every local `$ref` replaced by what it points to in `root`; `stack` holds the
/// references being expanded (a cycle becomes `{}`). `budget` counts the nodes written, copied
/// data included, and `depth` the nesting: past either, the rest becomes `{}`.
fn inline(
    value: &Value,
    root: &Value,
    stack: &mut Vec<String>,
    budget: &mut usize,
    depth: usize,
) -> Value {
    if *budget == 0 || depth > MAX_DEPTH {
        return json!({});
    }
    *budget -= 1;
    let depth = depth + 1;
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                let target =
                    resolve(root, reference).filter(|_| !stack.iter().any(|r| r == reference));
                if let Some(target) = target {
                    stack.push(reference.to_string());
                    let expanded = inline(target, root, stack, budget, depth);
                    stack.pop();
                    match expanded {
                        Value::Object(m) => out = m,
                        other if map.len() == 1 => return other,
                        _ => {}
                    }
                }
            }
            for (key, v) in map {
                if matches!(key.as_str(), "$ref" | "$defs" | "definitions") {
                    continue;
                }
                let v = match v {
                    _ if DATA_KEYS.contains(&key.as_str()) || key.starts_with("x-") => {
                        let size = nodes(v);
                        if size > *budget {
                            *budget = 0;
                            continue;
                        }
                        *budget -= size;
                        v.clone()
                    }
                    Value::Object(named) if NAMED_KEYS.contains(&key.as_str()) => Value::Object(
                        named
                            .iter()
                            .map(|(name, s)| (name.clone(), inline(s, root, stack, budget, depth)))
                            .collect(),
                    ),
                    _ => inline(v, root, stack, budget, depth),
                };
                out.insert(key.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| inline(v, root, stack, budget, depth))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What a local reference (`#`, `#/$defs/x`, any JSON pointer, percent-encoded) points to.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    root.pointer(&crate::policy::schema::percent_decode(pointer)?)
}

/// Moves the branches of a top-level `allOf` into the top: properties (the top's own win),
/// required names, and the other keywords the top lacks.
fn merge_all_of(top: &mut Map<String, Value>) {
    let Some(Value::Array(branches)) = top.remove("allOf") else {
        return;
    };
    for branch in branches {
        let Value::Object(mut branch) = branch else {
            continue;
        };
        merge_all_of(&mut branch);
        if let Some(Value::Object(properties)) = branch.remove("properties") {
            add_properties(top, properties);
        }
        if let Some(Value::Array(names)) = branch.remove("required") {
            add_required(top, names);
        }
        for (key, value) in branch {
            let kept = matches!(
                key.as_str(),
                "type" | "title" | "description" | "additionalProperties" | "unevaluatedProperties"
            );
            if !kept {
                top.entry(key).or_insert(value);
            }
        }
    }
}

/// Folds a top-level `oneOf`/`anyOf` into the union of its branches' properties.
fn fold_alternatives(top: &mut Map<String, Value>) {
    for key in ["oneOf", "anyOf"] {
        let Some(Value::Array(branches)) = top.remove(key) else {
            continue;
        };
        let mut common: Option<Vec<Value>> = None;
        let mut shapes = Vec::new();
        for branch in branches {
            let Value::Object(mut branch) = branch else {
                continue;
            };
            merge_all_of(&mut branch);
            let required = match branch.get("required") {
                Some(Value::Array(r)) => r.clone(),
                _ => Vec::new(),
            };
            common = Some(match common {
                None => required.clone(),
                Some(c) => c.into_iter().filter(|n| required.contains(n)).collect(),
            });
            if let Some(Value::Object(properties)) = branch.remove("properties") {
                let names: Vec<&str> = properties.keys().map(String::as_str).collect();
                if !names.is_empty() {
                    shapes.push(names.join(", "));
                }
                add_properties(top, properties);
            }
        }
        add_required(top, common.unwrap_or_default());
        if shapes.len() > 1 {
            let note = format!(
                "Give the parameters of one of these alternatives: ({}).",
                shapes.join(") or (")
            );
            let text = match top.get("description").and_then(Value::as_str) {
                Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
                _ => note,
            };
            top.insert("description".into(), json!(text));
        }
    }
}

/// Adds `properties` to the top's own (which win).
fn add_properties(top: &mut Map<String, Value>, properties: Map<String, Value>) {
    let slot = top.entry("properties").or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    if let Value::Object(own) = slot {
        for (name, schema) in properties {
            own.entry(name).or_insert(schema);
        }
    }
}

fn add_required(top: &mut Map<String, Value>, names: Vec<Value>) {
    if names.is_empty() {
        return;
    }
    let slot = top.entry("required").or_insert_with(|| json!([]));
    if !slot.is_array() {
        *slot = json!([]);
    }
    if let Value::Array(list) = slot {
        for name in names {
            if name.is_string() && !list.contains(&name) {
                list.push(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_object_schema_passes_through_with_vendor_keys() {
        let schema = json!({
            "type": "object",
            "properties": {"a": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": null}, "t": {"type": "array", "prefixItems": [{"type": "string"}]}},
            "required": ["a"],
            "additionalProperties": false,
            "x-fastmcp-wrap-result": true,
            "_meta": {"k": {"$ref": "#/nowhere"}},
            "$schema": "http://json-schema.org/draft-07/schema#",
        });
        let flat = flat_body(Some(&schema));
        let mut expected = schema.clone();
        expected.as_object_mut().unwrap().remove("$schema");
        assert_eq!(flat, expected);
    }

    #[test]
    fn refs_are_inlined_and_defs_dropped() {
        let schema = json!({
            "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}}, "Tree": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/Tree"}}}}},
            "type": "object",
            "properties": {"default": {"$ref": "#/$defs/Point"}, "p": {"$ref": "#/$defs/Point", "description": "where"}, "t": {"$ref": "#/$defs/Tree"}, "bad": {"$ref": "https://example.com/x"}, "e": {"enum": [{"$ref": "#/$defs/Point"}]}},
        });
        let flat = flat_body(Some(&schema));
        assert_eq!(
            flat["properties"]["p"],
            json!({"type": "object", "properties": {"x": {"type": "number"}}, "description": "where"})
        );
        // A cycle is cut at the second visit.
        assert_eq!(
            flat["properties"]["t"],
            json!({"type": "object", "properties": {"kids": {"type": "array", "items": {}}}})
        );
        assert_eq!(flat["properties"]["bad"], json!({}));
        // A property may be called like a data keyword.
        assert_eq!(
            flat["properties"]["default"]["properties"]["x"],
            json!({"type": "number"})
        );
        assert_eq!(
            flat["properties"]["e"],
            json!({"enum": [{"$ref": "#/$defs/Point"}]})
        );
        assert!(flat.get("$defs").is_none());
        assert!(!flat.to_string().contains("\"$ref\":\"#/$defs/Tree\""));
    }

    #[test]
    fn a_top_level_ref_is_followed() {
        let schema = json!({"$ref": "#/definitions/Args", "definitions": {"Args": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}});
        assert_eq!(
            flat_body(Some(&schema)),
            json!({"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]})
        );
    }

    #[test]
    fn a_top_level_all_of_is_merged() {
        let schema = json!({
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false},
                {"$ref": "#/$defs/B"},
            ],
            "$defs": {"B": {"properties": {"b": {"type": "integer"}}, "required": ["b"], "allOf": [{"properties": {"c": {"type": "boolean"}}}]}},
        });
        let flat = flat_body(Some(&schema));
        assert_eq!(flat["type"], "object");
        assert_eq!(flat["required"], json!(["a", "b"]));
        let names: Vec<&String> = flat["properties"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(flat.get("allOf").is_none() && flat.get("additionalProperties").is_none());
    }

    #[test]
    fn top_level_alternatives_become_the_union_of_their_properties() {
        let schema = json!({
            "type": "object",
            "description": "Finds a thing.",
            "properties": {"limit": {"type": "integer"}},
            "oneOf": [
                {"properties": {"id": {"type": "string"}, "kind": {"type": "string"}}, "required": ["id", "kind"]},
                {"properties": {"name": {"type": "string"}, "kind": {"type": "string"}}, "required": ["name", "kind"]},
            ],
        });
        let flat = flat_body(Some(&schema));
        let names: Vec<&String> = flat["properties"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["limit", "id", "kind", "name"]);
        assert_eq!(flat["required"], json!(["kind"]));
        assert!(flat.get("oneOf").is_none());
        let description = flat["description"].as_str().unwrap();
        assert!(description.starts_with("Finds a thing."), "{description}");
        assert!(
            description.contains("(id, kind) or (name, kind)"),
            "{description}"
        );
        let any = flat_body(Some(
            &json!({"anyOf": [{"type": "object", "properties": {"x": {}}}, {"type": "null"}]}),
        ));
        assert_eq!(any, json!({"properties": {"x": {}}, "type": "object"}));
    }

    #[test]
    fn anything_else_becomes_an_empty_object_schema() {
        for schema in [
            None,
            Some(json!(true)),
            Some(json!("x")),
            Some(json!({"type": "string"})),
            Some(json!({"required": true})),
        ] {
            let flat = flat_body(schema.as_ref());
            assert_eq!(flat["type"], "object", "{schema:?}");
            assert_eq!(flat["properties"], json!({}), "{schema:?}");
            assert!(flat.get("required").is_none(), "{schema:?}");
        }
    }

    #[test]
    fn inlining_is_bounded() {
        // Each level refers twice to the next: 2^30 nodes if fully inlined.
        let mut defs = Map::new();
        for i in 0..30 {
            defs.insert(format!("L{i}"), json!({"type": "object", "properties": {"a": {"$ref": format!("#/$defs/L{}", i + 1)}, "b": {"$ref": format!("#/$defs/L{}", i + 1)}}}));
        }
        let schema = json!({"type": "object", "properties": {"root": {"$ref": "#/$defs/L0"}}, "$defs": defs});
        let flat = flat_body(Some(&schema));
        assert!(flat.to_string().len() < 2_000_000);
    }

    #[test]
    fn a_long_chain_of_references_and_copied_data_are_bounded_too() {
        // 5,000 definitions each referring to the next: followed whole, this ran a 2 MiB
        // worker stack out.
        let mut defs = Map::new();
        for i in 0..5_000 {
            defs.insert(format!("D{i}"), json!({"type": "object", "properties": {"next": {"$ref": format!("#/$defs/D{}", i + 1)}}}));
        }
        let schema = json!({"type": "object", "properties": {"root": {"$ref": "#/$defs/D0"}}, "$defs": defs});
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || flat_body(Some(&schema)).to_string().len())
            .expect("thread");
        assert!(handle.join().expect("no stack overflow") < 20_000);
        // 2,000 references to one enum of 10,000 values: each copy counts against the budget.
        let values: Vec<Value> = (0..10_000).map(|i| json!(i)).collect();
        let properties: Map<String, Value> = (0..2_000)
            .map(|i| (format!("p{i}"), json!({"$ref": "#/$defs/Big"})))
            .collect();
        let schema =
            json!({"type": "object", "properties": properties, "$defs": {"Big": {"enum": values}}});
        let copied = flat_body(Some(&schema)).to_string().len();
        assert!(copied < 1_000_000, "{copied} bytes");
    }

    #[test]
    fn percent_encoded_pointers_resolve() {
        let schema = json!({"$defs": {"a b": {"type": "string"}}, "properties": {"x": {"$ref": "#/$defs/a%20b"}}});
        assert_eq!(
            flat_body(Some(&schema))["properties"]["x"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn the_seed_tools_become_flat_object_schemas() {
        // The seed household's 231 real tool schemas (TrueNAS, ERPNext, Frappe, Home Assistant).
        let seed: Value = serde_json::from_str(include_str!(
            "../../../tests/schema/sources/seed-tools.json"
        ))
        .unwrap();
        let tools = seed["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 231);
        for tool in tools {
            let schema = &tool["inputSchema"];
            let flat = flat_body(Some(schema));
            assert_eq!(flat["type"], "object", "{}", tool["name"]);
            for key in ["allOf", "anyOf", "oneOf", "$ref", "$defs"] {
                assert!(flat.get(key).is_none(), "{} has {key}", tool["name"]);
            }
            // Nothing to flatten in these: they pass through as they are.
            let mut expected = schema.clone();
            if expected.get("properties").is_none() {
                expected["properties"] = json!({});
            }
            if expected["required"] == json!([]) {
                expected.as_object_mut().unwrap().remove("required");
            }
            assert_eq!(flat, expected, "{}", tool["name"]);
        }
    }

    #[test]
    fn the_document_has_one_post_per_tool() {
        let tools = [
            json!({"name": "house__set", "description": "Sets.\nMore.", "inputSchema": {"type": "object", "properties": {"on": {"type": "boolean"}}, "required": ["on"]}}),
            json!({"name": "gateway__status", "title": "Status", "inputSchema": {"type": "object"}}),
        ];
        let ops = [
            Operation {
                server: "house",
                tool: &tools[0],
            },
            Operation {
                server: "gateway",
                tool: &tools[1],
            },
        ];
        let doc = document("t", "http://h", |s| format!("/openapi/{s}"), &ops);
        let set = &doc["paths"]["/openapi/house/house__set"]["post"];
        assert_eq!(set["operationId"], "house__set");
        assert_eq!(set["summary"], "Sets.");
        assert_eq!(set["description"], "Sets.\nMore.");
        assert_eq!(set["requestBody"]["required"], true);
        let status = &doc["paths"]["/openapi/gateway/gateway__status"]["post"];
        assert_eq!(status["summary"], "Status");
        assert_eq!(status["requestBody"]["required"], false);
        assert_eq!(doc["servers"][0]["url"], "http://h");
        let own = document("t", "http://h/openapi/house", |_| String::new(), &ops[..1]);
        assert!(own["paths"].get("/house__set").is_some());
    }
}
