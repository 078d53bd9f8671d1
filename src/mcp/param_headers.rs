//! `Mcp-Param-*` routing headers (2026-07-28): a tool may mark parameters of its `inputSchema`
//! with `"x-mcp-header": "<Token>"`, and a `tools/call` then mirrors those arguments into
//! `Mcp-Param-<Token>` headers so that intermediaries can route without reading the body.
//!
//! This module finds the marked parameters, renders their values, and checks a request's
//! headers against its arguments. Only properties reached from the schema's root through
//! `properties` alone count, on `string`, `integer`, `number` or `boolean` types.

use serde_json::{Map, Value};

/// The schema key that marks a parameter.
pub const SCHEMA_KEY: &str = "x-mcp-header";
/// The header name prefix.
pub const PREFIX: &str = "Mcp-Param-";

/// One marked parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamHeader {
    /// The property names from the root to the parameter.
    pub path: Vec<String>,
    /// `Mcp-Param-<token>`.
    pub header: String,
    /// The declared JSON type.
    pub kind: String,
}

/// The marked parameters of an `inputSchema`. Header names must be unique, case-insensitively:
/// parameters that share one are left out, since one header cannot mirror two arguments.
pub fn marked(schema: &Value) -> Vec<ParamHeader> {
    let mut found = Vec::new();
    let mut stack: Vec<(Vec<String>, &Value)> = vec![(Vec::new(), schema)];
    // Bounded: a schema is finite and each step goes one level down.
    while let Some((path, node)) = stack.pop() {
        let Some(object) = node.as_object() else {
            continue;
        };
        if !path.is_empty() {
            let token = object.get(SCHEMA_KEY).and_then(Value::as_str);
            let kind = object.get("type").and_then(Value::as_str);
            if let (Some(token), Some(kind)) = (token, kind) {
                if is_token(token) && matches!(kind, "string" | "integer" | "number" | "boolean") {
                    found.push(ParamHeader {
                        path: path.clone(),
                        header: format!("{PREFIX}{token}"),
                        kind: kind.to_string(),
                    });
                }
            }
        }
        if let Some(Value::Object(properties)) = object.get("properties") {
            for (name, sub) in properties {
                let mut deeper = path.clone();
                deeper.push(name.clone());
                stack.push((deeper, sub));
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    let sharing = |p: &ParamHeader| {
        let same = |q: &&ParamHeader| q.header.eq_ignore_ascii_case(&p.header);
        found.iter().filter(same).count()
    };
    found.iter().filter(|p| sharing(p) == 1).cloned().collect()
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn value_at<'a>(arguments: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut at = arguments.get(first)?;
    for key in rest {
        at = at.as_object()?.get(key)?;
    }
    (!at.is_null()).then_some(at)
}

/// A value as a header carries it, before encoding; `None` for objects and arrays.
pub fn render(value: &Value) -> Option<String> {
    match value {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The `(header, rendered value)` pairs a call with `arguments` carries (values not encoded).
pub fn outgoing(marked: &[ParamHeader], arguments: &Map<String, Value>) -> Vec<(String, String)> {
    marked
        .iter()
        .filter_map(|p| {
            let value = value_at(arguments, &p.path)?;
            Some((p.header.clone(), render(value)?))
        })
        .collect()
}

/// Checks a request's `Mcp-Param-*` headers (`header` looks one up, already decoded; `Err(())`
/// for a malformed encoding) against its `arguments`: present together and equal, or absent
/// together. The error says which header disagrees.
pub fn check(
    marked: &[ParamHeader],
    arguments: &Map<String, Value>,
    header: &dyn Fn(&str) -> Option<Result<String, ()>>,
) -> Result<(), String> {
    for param in marked {
        let argument = param.path.join(".");
        let sent = header(&param.header);
        let value = value_at(arguments, &param.path);
        let rendered = value.and_then(render);
        match (sent, value, rendered) {
            (None, None, _) | (None, Some(_), None) => {}
            (Some(_), None, _) => {
                return Err(format!(
                    "the {} header is present but the argument {argument} is absent",
                    param.header
                ))
            }
            (Some(Err(())), _, _) => {
                return Err(format!(
                    "the {} header is not validly encoded",
                    param.header
                ))
            }
            (None, Some(_), Some(_)) => {
                return Err(format!(
                    "the {} header is missing but the argument {argument} is present",
                    param.header
                ))
            }
            (Some(Ok(text)), Some(value), rendered) => {
                let same_number = param.kind == "integer"
                    && value.as_f64().is_some()
                    && text.parse::<f64>().ok() == value.as_f64();
                if rendered.as_deref() != Some(text.as_str()) && !same_number {
                    return Err(format!(
                        "the {} header does not match the argument {argument}",
                        param.header
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "count": {"type": "integer", "x-mcp-header": "Count"},
            "nested": {"type": "object", "properties": {"flag": {"type": "boolean", "x-mcp-header": "Flag"}}},
            "list": {"type": "array", "x-mcp-header": "List"},
            "other": {"anyOf": [{"type": "string", "x-mcp-header": "Hidden"}]}
        }})
    }

    #[test]
    fn finds_marked_parameters_on_pure_property_paths_only() {
        let found = marked(&schema());
        let headers: Vec<&str> = found.iter().map(|p| p.header.as_str()).collect();
        assert_eq!(
            headers,
            ["Mcp-Param-Count", "Mcp-Param-Flag", "Mcp-Param-Region"]
        );
    }

    /// Found by the `routing_headers` fuzz target: two parameters marked with one header name
    /// made the gateway send `Mcp-Param-Count` for `count` and then refuse it for `inner.count`
    /// ("present but the argument inner.count is absent").
    #[test]
    fn parameters_sharing_a_header_name_are_not_marked() {
        let schema = json!({"type": "object", "properties": {
            "count": {"type": "integer", "x-mcp-header": "Count"},
            "inner": {"type": "object", "properties": {
                "count": {"type": "integer", "x-mcp-header": "count"}}},
            "region": {"type": "string", "x-mcp-header": "Region"}
        }});
        let found = marked(&schema);
        let headers: Vec<&str> = found.iter().map(|p| p.header.as_str()).collect();
        assert_eq!(headers, ["Mcp-Param-Region"]);
        let args = json!({"count": 3, "region": "eu"});
        let args = args.as_object().unwrap();
        let sent = outgoing(&found, args);
        assert_eq!(sent, [("Mcp-Param-Region".into(), "eu".into())]);
        let lookup = |name: &str| {
            sent.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| Ok(v.clone()))
        };
        assert_eq!(check(&found, args, &lookup), Ok(()));
    }

    #[test]
    fn renders_and_checks_headers_against_arguments() {
        let found = marked(&schema());
        let args = json!({"region": "eu west", "count": 3, "nested": {"flag": true}});
        let args = args.as_object().unwrap();
        let out = outgoing(&found, args);
        assert!(out.contains(&("Mcp-Param-Region".into(), "eu west".into())));
        assert!(out.contains(&("Mcp-Param-Flag".into(), "true".into())));
        let lookup = |sent: Vec<(&'static str, &'static str)>| {
            move |name: &str| {
                sent.iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| Ok(v.to_string()))
            }
        };
        let all = lookup(vec![
            ("mcp-param-region", "eu west"),
            ("Mcp-Param-Count", "3.0"),
            ("Mcp-Param-Flag", "true"),
        ]);
        assert_eq!(check(&found, args, &all), Ok(()));
        let missing = lookup(vec![("Mcp-Param-Region", "eu west")]);
        assert!(check(&found, args, &missing).unwrap_err().contains("Count"));
        let wrong = lookup(vec![
            ("Mcp-Param-Region", "us"),
            ("Mcp-Param-Count", "3"),
            ("Mcp-Param-Flag", "true"),
        ]);
        assert!(check(&found, args, &wrong).unwrap_err().contains("Region"));
        let none = json!({}).as_object().unwrap().clone();
        let extra = lookup(vec![("Mcp-Param-Region", "eu")]);
        assert!(check(&found, &none, &extra).unwrap_err().contains("absent"));
    }
}
