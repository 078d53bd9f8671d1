//! The aggregated view: every backend's tools, prompts, resources and templates as one server,
//! with the namespaced names clients see and the routes back to each backend.
//!
//! Tool and prompt names become `<server>__<name>` and always fit `^[a-zA-Z0-9_-]{1,64}$`;
//! a name that would not fit is shortened deterministically (a readable start plus a hash of the
//! full name). Resource URIs are never rewritten; they are routed by exact URI or by the literal
//! start of a resource template. On a clash the backend that comes first in the config keeps the
//! name.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Separator between server and tool name.
pub const SEPARATOR: &str = "__";
const MAX_NAME: usize = 64;

/// The four lists of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// tools/list
    Tools,
    /// prompts/list
    Prompts,
    /// resources/list
    Resources,
    /// resources/templates/list
    Templates,
}

/// Where a namespaced tool or prompt lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// One of the gateway's own tools.
    Builtin(String),
    /// A backend (index into the gateway's backend list) and the name it knows.
    Backend {
        /// Index of the backend.
        backend: usize,
        /// The backend's own name for the tool or prompt.
        original: String,
    },
}

/// One backend's contribution, as the catalog builder needs it.
pub struct Source<'a> {
    /// Backend name (the prefix).
    pub server: &'a str,
    /// Tool globs to expose (empty: all).
    pub allow: &'a [String],
    /// Tool globs to hide.
    pub deny: &'a [String],
    /// What it offers.
    pub lists: &'a crate::backend::Lists,
}

/// The aggregated, namespaced catalog. Rebuilt whenever a backend's lists change.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// Tool definitions as clients see them, in config order.
    pub tools: Vec<Value>,
    /// Prompt definitions as clients see them.
    pub prompts: Vec<Value>,
    /// Resources (URIs unchanged).
    pub resources: Vec<Value>,
    /// Resource templates (unchanged).
    pub templates: Vec<Value>,
    /// The backend of each entry of `tools`, `prompts`, `resources`, `templates` (`None`: ours).
    owners: [Vec<Option<usize>>; 4],
    tool_routes: HashMap<String, Route>,
    prompt_routes: HashMap<String, Route>,
    resource_routes: HashMap<String, usize>,
    template_routes: Vec<(String, usize)>,
    /// Names dropped because an earlier backend had them.
    pub clashes: Vec<String>,
}

impl Catalog {
    /// Builds the catalog from the gateway's own tools and each backend's lists (in config order).
    pub fn build(builtin_tools: Vec<Value>, sources: &[Source<'_>]) -> Catalog {
        let mut catalog = Catalog::default();
        for tool in builtin_tools {
            if let Some(name) = tool.get("name").and_then(Value::as_str) {
                catalog
                    .tool_routes
                    .insert(name.to_string(), Route::Builtin(name.to_string()));
                catalog.tools.push(tool);
                catalog.owners[0].push(None);
            }
        }
        for (index, source) in sources.iter().enumerate() {
            for tool in &source.lists.tools {
                let Some(original) = tool.get("name").and_then(Value::as_str) else {
                    continue;
                };
                if !tool_visible(original, source.allow, source.deny) {
                    continue;
                }
                let exposed = exposed_name(source.server, original);
                if catalog.tool_routes.contains_key(&exposed) {
                    catalog.clashes.push(format!(
                        "tool {exposed} of '{}' is hidden: an earlier server has that name",
                        source.server
                    ));
                    continue;
                }
                let mut def = tool.clone();
                def["name"] = Value::String(exposed.clone());
                catalog.tool_routes.insert(
                    exposed,
                    Route::Backend {
                        backend: index,
                        original: original.to_string(),
                    },
                );
                catalog.tools.push(def);
                catalog.owners[0].push(Some(index));
            }
            for prompt in &source.lists.prompts {
                let Some(original) = prompt.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let exposed = exposed_name(source.server, original);
                if catalog.prompt_routes.contains_key(&exposed) {
                    catalog.clashes.push(format!(
                        "prompt {exposed} of '{}' is hidden: an earlier server has that name",
                        source.server
                    ));
                    continue;
                }
                let mut def = prompt.clone();
                def["name"] = Value::String(exposed.clone());
                catalog.prompt_routes.insert(
                    exposed,
                    Route::Backend {
                        backend: index,
                        original: original.to_string(),
                    },
                );
                catalog.prompts.push(def);
                catalog.owners[1].push(Some(index));
            }
            for resource in &source.lists.resources {
                let Some(uri) = resource.get("uri").and_then(Value::as_str) else {
                    continue;
                };
                if catalog.resource_routes.contains_key(uri) {
                    catalog.clashes.push(format!(
                        "resource {uri} of '{}' is hidden: an earlier server has that URI",
                        source.server
                    ));
                    continue;
                }
                catalog.resource_routes.insert(uri.to_string(), index);
                catalog.resources.push(resource.clone());
                catalog.owners[2].push(Some(index));
                catalog.owners[2].push(Some(index));
            }
            for template in &source.lists.templates {
                let Some(pattern) = template.get("uriTemplate").and_then(Value::as_str) else {
                    continue;
                };
                let literal = pattern.split('{').next().unwrap_or(pattern).to_string();
                catalog.template_routes.push((literal, index));
                catalog.templates.push(template.clone());
                catalog.owners[3].push(Some(index));
                catalog.owners[3].push(Some(index));
            }
        }
        // Longest literal first, so the most specific template wins.
        catalog
            .template_routes
            .sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        catalog
    }

    /// The entries of one list whose backend passes `allowed` (the gateway's own always do).
    pub fn visible(&self, kind: ListKind, allowed: &dyn Fn(usize) -> bool) -> Vec<Value> {
        let (items, owners) = match kind {
            ListKind::Tools => (&self.tools, &self.owners[0]),
            ListKind::Prompts => (&self.prompts, &self.owners[1]),
            ListKind::Resources => (&self.resources, &self.owners[2]),
            ListKind::Templates => (&self.templates, &self.owners[3]),
        };
        items
            .iter()
            .zip(owners)
            .filter(|(_, owner)| owner.map(allowed).unwrap_or(true))
            .map(|(item, _)| item.clone())
            .collect()
    }

    /// Route of a namespaced tool.
    pub fn tool(&self, name: &str) -> Option<&Route> {
        self.tool_routes.get(name)
    }

    /// Route of a namespaced prompt.
    pub fn prompt(&self, name: &str) -> Option<&Route> {
        self.prompt_routes.get(name)
    }

    /// Backend index owning a resource URI (listed, or matching a template's literal start).
    pub fn resource_owner(&self, uri: &str) -> Option<usize> {
        if let Some(index) = self.resource_routes.get(uri) {
            return Some(*index);
        }
        self.template_routes
            .iter()
            .find(|(literal, _)| !literal.is_empty() && uri.starts_with(literal.as_str()))
            .map(|(_, i)| *i)
    }

    /// Backend index owning a resource template, by its exact `uriTemplate`.
    pub fn template_owner(&self, uri_template: &str) -> Option<usize> {
        let literal = uri_template.split('{').next().unwrap_or(uri_template);
        self.template_routes
            .iter()
            .find(|(l, _)| l == literal)
            .map(|(_, i)| *i)
    }

    /// A fingerprint of what clients see, to tell whether a rebuild changed anything per kind.
    pub fn fingerprints(&self) -> [u64; 3] {
        fn fp(items: &[Value]) -> u64 {
            let digest = Sha256::digest(serde_json::to_vec(items).unwrap_or_default());
            u64::from_le_bytes([
                digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6],
                digest[7],
            ])
        }
        let mut resources = self.resources.clone();
        resources.extend(self.templates.iter().cloned());
        [fp(&self.tools), fp(&resources), fp(&self.prompts)]
    }
}

/// The name clients see for `name` of `server`: `<server>__<name>`, shortened or cleaned when
/// needed so that it always matches `^[a-zA-Z0-9_-]{1,64}$`. Deterministic.
pub fn exposed_name(server: &str, name: &str) -> String {
    let full = format!("{server}{SEPARATOR}{name}");
    let clean: String = full
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == full && full.len() <= MAX_NAME {
        return full;
    }
    // Cleaned or too long: a hash of the full original name keeps distinct names distinct.
    let hash = crate::tokens::hex(&Sha256::digest(full.as_bytes()));
    let keep = MAX_NAME - 9;
    let start: String = clean.chars().take(keep).collect();
    format!("{start}_{}", &hash[..8])
}

/// Whether a tool passes the server's allow and deny globs.
pub fn tool_visible(name: &str, allow: &[String], deny: &[String]) -> bool {
    (allow.is_empty() || allow.iter().any(|g| glob_match(g, name)))
        && !deny.iter().any(|g| glob_match(g, name))
}

/// Matches `*` (any run) and `?` (one character) globs.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// One page of `items` starting at `cursor` (an offset we issued), with the next cursor.
pub fn page(
    items: &[Value],
    cursor: Option<&str>,
    page_size: usize,
) -> Result<(Vec<Value>, Option<String>), String> {
    let start = match cursor {
        None => 0,
        Some(c) => c
            .strip_prefix("o:")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| {
                format!("invalid cursor \"{c}\": use the nextCursor of a previous answer")
            })?,
    };
    let end = (start + page_size.max(1)).min(items.len());
    let next = (end < items.len()).then(|| format!("o:{end}"));
    Ok((items[start..end].to_vec(), next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Lists;
    use serde_json::json;

    fn valid(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    #[test]
    fn names_are_namespaced_and_always_valid() {
        assert_eq!(exposed_name("weather", "forecast"), "weather__forecast");
        let long = exposed_name("truenas", &"x".repeat(100));
        assert!(valid(&long) && long.len() == 64, "{long}");
        assert_eq!(
            long,
            exposed_name("truenas", &"x".repeat(100)),
            "deterministic"
        );
        assert_ne!(
            long,
            exposed_name("truenas", &"x".repeat(101)),
            "distinct names stay distinct"
        );
        let dotted = exposed_name("ha", "light.turn_on");
        assert!(
            valid(&dotted) && dotted.starts_with("ha__light_turn_on_"),
            "{dotted}"
        );
        assert_ne!(dotted, exposed_name("ha", "light_turn_on"));
        assert!(valid(&exposed_name("a", "ünïcode tool")));
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("get_*", "get_state"));
        assert!(!glob_match("get_*", "set_state"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*_pool*", "list_pools"));
        assert!(!glob_match("a*b", "acbd"));
        assert!(tool_visible("get_x", &["get_*".into()], &[]));
        assert!(!tool_visible(
            "get_secret",
            &["get_*".into()],
            &["*secret*".into()]
        ));
    }

    #[test]
    fn builds_routes_and_first_backend_keeps_a_clashing_name() {
        let a = Lists {
            tools: vec![json!({"name": "list_pools", "inputSchema": {"type": "object"}})],
            resources: vec![json!({"uri": "file:///a", "name": "a"})],
            templates: vec![json!({"uriTemplate": "weather://{city}", "name": "w"})],
            prompts: vec![json!({"name": "greet"})],
        };
        let b = Lists {
            tools: vec![
                json!({"name": "list_pools"}),
                json!({"name": "delete_pool"}),
            ],
            resources: vec![json!({"uri": "file:///a", "name": "dup"})],
            ..Default::default()
        };
        let deny = vec!["delete_*".to_string()];
        let catalog = Catalog::build(
            vec![json!({"name": "gateway__status"})],
            &[
                Source {
                    server: "nas",
                    allow: &[],
                    deny: &[],
                    lists: &a,
                },
                Source {
                    server: "nas2",
                    allow: &[],
                    deny: &deny,
                    lists: &b,
                },
            ],
        );
        let names: Vec<&str> = catalog
            .tools
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["gateway__status", "nas__list_pools", "nas2__list_pools"]
        );
        assert_eq!(
            catalog.tool("nas2__list_pools"),
            Some(&Route::Backend {
                backend: 1,
                original: "list_pools".into()
            })
        );
        assert_eq!(
            catalog.tool("gateway__status"),
            Some(&Route::Builtin("gateway__status".into()))
        );
        assert_eq!(
            catalog.tools[1]["inputSchema"],
            json!({"type": "object"}),
            "definitions pass through"
        );
        assert_eq!(catalog.resource_owner("file:///a"), Some(0));
        let only_second = catalog.visible(ListKind::Tools, &|b| b == 1);
        let names: Vec<&str> = only_second
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["gateway__status", "nas2__list_pools"],
            "our own tools stay visible"
        );
        assert!(catalog.visible(ListKind::Resources, &|b| b == 1).is_empty());
        assert_eq!(catalog.visible(ListKind::Templates, &|b| b == 0).len(), 1);
        assert_eq!(catalog.visible(ListKind::Prompts, &|_| true).len(), 1);
        assert_eq!(catalog.clashes.len(), 1);
        assert_eq!(catalog.resource_owner("weather://paris"), Some(0));
        assert_eq!(catalog.resource_owner("nope://x"), None);
        assert_eq!(
            catalog.prompt("nas__greet"),
            Some(&Route::Backend {
                backend: 0,
                original: "greet".into()
            })
        );
    }

    #[test]
    fn pages_follow_cursors() {
        let items: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let (first, next) = page(&items, None, 2).expect("page");
        assert_eq!(first, vec![json!(0), json!(1)]);
        let (second, next) = page(&items, next.as_deref(), 2).expect("page");
        assert_eq!(second, vec![json!(2), json!(3)]);
        let (last, next) = page(&items, next.as_deref(), 2).expect("page");
        assert_eq!((last, next), (vec![json!(4)], None));
        assert!(page(&items, Some("garbage"), 2).is_err());
        assert!(page(&items, Some("o:99"), 2).is_err());
    }
}
