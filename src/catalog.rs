//! The aggregated view: every backend's tools, prompts, resources and templates as one server,
//! with the namespaced names clients see and the routes back to each backend.
//!
//! Tool and prompt names become `<prefix>__<name>` (the prefix is the server's name unless its
//! config sets `"prefix"`; `""` shows the names as they are), after the server's `"rename"`, and
//! always fit `^[a-zA-Z0-9_-]{1,64}$`: a name that would not fit is shortened deterministically
//! (a readable start plus a hash of the full name). `"hide"` drops tools and prompts, and
//! `"description"` replaces a definition's description; every other field of a definition passes
//! through untouched. Routes keep the backend's own name, so calls reach it under that name.
//! Resource URIs are never rewritten; they are routed by exact URI or by the literal start of a
//! resource template. On a clash the gateway's own tools win, then the backend that comes first
//! in the config; each clash is described in [`Catalog::clashes`], and [`naming_warnings`] finds
//! the clashes a config makes likely before any backend runs.

use crate::config::{join_path, Naming, Problem, ServerConfig, BUILTIN_SERVER};
use crate::policy::Schema;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Separator between server and tool name.
pub const SEPARATOR: &str = "__";
const MAX_NAME: usize = 64;

pub use crate::mcp::ListKind;

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
    /// Backend name (for messages; the prefix is in `naming`).
    pub server: &'a str,
    /// Tool globs to expose (empty: all).
    pub allow: &'a [String],
    /// Tool globs to hide.
    pub deny: &'a [String],
    /// Its prefix, renames, description overrides and hidden names.
    pub naming: &'a Naming,
    /// Globs of its own tool names that count as read-only without `readOnlyHint`.
    pub read_only: &'a [String],
    /// What it offers.
    pub lists: &'a crate::backend::Lists,
}

/// The two kinds of entry whose names the catalog rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Tool,
    Prompt,
}

impl Named {
    fn as_str(self) -> &'static str {
        match self {
            Named::Tool => "tool",
            Named::Prompt => "prompt",
        }
    }
}

impl Source<'_> {
    /// Whether the backend's tool or prompt `original` is offered at all (`hide`, and for tools
    /// `tools.allow`/`tools.deny`).
    fn offers(&self, kind: Named, original: &str) -> bool {
        let hidden = self.naming.hide.iter().any(|g| glob_match(g, original));
        !hidden && (kind == Named::Prompt || tool_visible(original, self.allow, self.deny))
    }

    /// The name clients see for the backend's tool or prompt `original`.
    pub fn exposed(&self, original: &str) -> String {
        let shown = self
            .naming
            .rename
            .get(original)
            .map(String::as_str)
            .unwrap_or(original);
        exposed_name(&self.naming.prefix, shown)
    }

    /// The definition clients see: the backend's own, with `name` (and `description` when the
    /// config overrides it) replaced and every other field untouched.
    fn present(&self, def: &Value, exposed: &str, original: &str) -> Value {
        let mut def = def.clone();
        if let Some(fields) = def.as_object_mut() {
            fields.insert("name".into(), Value::String(exposed.to_string()));
            if let Some(description) = self.naming.descriptions.get(original) {
                fields.insert("description".into(), Value::String(description.clone()));
            }
        }
        def
    }
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
    /// The backend of each entry of each list (`None`: ours), indexed by [`ListKind::index`].
    owners: [Vec<Option<usize>>; 4],
    tool_routes: HashMap<String, Route>,
    /// The compiled `inputSchema` of each backend tool, by exposed name (a tool whose schema
    /// cannot be compiled has none, and its calls go unchecked).
    tool_schemas: HashMap<String, Arc<Schema>>,
    /// Exposed names of the tools that count as read-only (`annotations.readOnlyHint: true`, or
    /// the server's `read_only_tools`).
    read_only_tools: HashSet<String>,
    prompt_routes: HashMap<String, Route>,
    resource_routes: HashMap<String, usize>,
    template_routes: Vec<(String, usize)>,
    /// Names dropped because an earlier backend had them.
    pub clashes: Vec<String>,
    /// The search index of `tools` (same order), built with the catalog.
    pub search: crate::search::Index,
}

impl Catalog {
    /// Builds the catalog from the gateway's own tools and each backend's lists (in config order).
    pub fn build(builtin_tools: Vec<Value>, sources: &[Source<'_>]) -> Catalog {
        let mut catalog = Catalog::default();
        for tool in builtin_tools {
            if let Some(name) = tool.get("name").and_then(Value::as_str) {
                if marked_read_only(&tool) {
                    catalog.read_only_tools.insert(name.to_string());
                }
                catalog
                    .tool_routes
                    .insert(name.to_string(), Route::Builtin(name.to_string()));
                catalog.tools.push(tool);
                catalog.owners[ListKind::Tools.index()].push(None);
            }
        }
        // The `search` view's meta-tools are ours too: not listed here, but no backend takes
        // their names.
        for name in crate::tool_view::META_TOOLS {
            catalog
                .tool_routes
                .insert(name.to_string(), Route::Builtin(name.to_string()));
        }
        for (index, source) in sources.iter().enumerate() {
            for tool in &source.lists.tools {
                catalog.add_named(Named::Tool, sources, index, tool);
            }
            for prompt in &source.lists.prompts {
                catalog.add_named(Named::Prompt, sources, index, prompt);
            }
            for resource in &source.lists.resources {
                let Some(uri) = resource.get("uri").and_then(Value::as_str) else {
                    continue;
                };
                if let Some(keeper) = catalog.resource_routes.get(uri) {
                    let keeper = sources.get(*keeper).map(|k| k.server).unwrap_or("?");
                    catalog.clashes.push(format!(
                        "resource {uri}: '{keeper}' keeps this URI; the same URI of '{}' is not offered (resource URIs are never rewritten)",
                        source.server
                    ));
                    continue;
                }
                catalog.resource_routes.insert(uri.to_string(), index);
                catalog.resources.push(resource.clone());
                catalog.owners[ListKind::Resources.index()].push(Some(index));
            }
            for template in &source.lists.templates {
                let Some(pattern) = template.get("uriTemplate").and_then(Value::as_str) else {
                    continue;
                };
                let literal = pattern.split('{').next().unwrap_or(pattern).to_string();
                catalog.template_routes.push((literal, index));
                catalog.templates.push(template.clone());
                catalog.owners[ListKind::Templates.index()].push(Some(index));
            }
        }
        // Longest literal first, so the most specific template wins.
        catalog
            .template_routes
            .sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        catalog.search = crate::search::Index::build(&catalog.tools);
        catalog
    }

    /// The backend of each tool of `tools`, same order (`None`: the gateway's own).
    pub fn tool_owners(&self) -> &[Option<usize>] {
        &self.owners[ListKind::Tools.index()]
    }

    /// Adds tool or prompt `def` of backend `index` under its exposed name, unless it is not
    /// offered or the name is taken (then the clash is recorded and the earlier holder keeps it).
    fn add_named(&mut self, kind: Named, sources: &[Source<'_>], index: usize, def: &Value) {
        let Some(source) = sources.get(index) else {
            return;
        };
        let Some(original) = def.get("name").and_then(Value::as_str) else {
            return;
        };
        if !source.offers(kind, original) {
            return;
        }
        let exposed = source.exposed(original);
        let (routes, items, owners) = match kind {
            Named::Tool => (
                &mut self.tool_routes,
                &mut self.tools,
                &mut self.owners[ListKind::Tools.index()],
            ),
            Named::Prompt => (
                &mut self.prompt_routes,
                &mut self.prompts,
                &mut self.owners[ListKind::Prompts.index()],
            ),
        };
        if let Some(keeper) = routes.get(&exposed) {
            let clash = clash_message(kind, &exposed, keeper, sources, index, original);
            self.clashes.push(clash);
            return;
        }
        items.push(source.present(def, &exposed, original));
        let listed_read_only = || source.read_only.iter().any(|g| glob_match(g, original));
        if kind == Named::Tool && (marked_read_only(def) || listed_read_only()) {
            self.read_only_tools.insert(exposed.clone());
        }
        if let (Named::Tool, Some(schema)) = (&kind, def.get("inputSchema")) {
            match Schema::compile(schema) {
                Ok(compiled) => {
                    for note in compiled.notes() {
                        log::debug!(
                            "[{}] {original}: not checked in its inputSchema: {}",
                            source.server,
                            crate::untrusted::for_log(note)
                        );
                    }
                    self.tool_schemas.insert(exposed.clone(), Arc::new(compiled));
                }
                Err(e) => log::warn!(
                    "[{}] the inputSchema of {original} cannot be checked ({}); its calls go to the backend unchecked",
                    source.server,
                    crate::untrusted::for_log(&e.to_string())
                ),
            }
        }
        routes.insert(
            exposed,
            Route::Backend {
                backend: index,
                original: original.to_string(),
            },
        );
        owners.push(Some(index));
    }

    /// The entries of one list whose backend passes `allowed` (the gateway's own always do).
    pub fn visible(&self, kind: ListKind, allowed: &dyn Fn(usize) -> bool) -> Vec<&Value> {
        self.visible_where(kind, &|owner, _| owner.map(allowed).unwrap_or(true))
    }

    /// The entries of one list that `keep` keeps, given each entry's backend (`None`: ours).
    pub fn visible_where(
        &self,
        kind: ListKind,
        keep: &dyn Fn(Option<usize>, &Value) -> bool,
    ) -> Vec<&Value> {
        let (items, owners) = match kind {
            ListKind::Tools => (&self.tools, &self.owners[kind.index()]),
            ListKind::Prompts => (&self.prompts, &self.owners[kind.index()]),
            ListKind::Resources => (&self.resources, &self.owners[kind.index()]),
            ListKind::Templates => (&self.templates, &self.owners[kind.index()]),
        };
        items
            .iter()
            .zip(owners)
            .filter(|(item, owner)| keep(**owner, item))
            .map(|(item, _)| item)
            .collect()
    }

    /// Whether the tool clients know as `name` counts as read-only.
    pub fn is_read_only(&self, name: &str) -> bool {
        self.read_only_tools.contains(name)
    }

    /// Route of a namespaced tool.
    pub fn tool(&self, name: &str) -> Option<&Route> {
        self.tool_routes.get(name)
    }

    /// The compiled input schema of a backend tool, by the name clients see.
    pub fn tool_schema(&self, name: &str) -> Option<&Arc<Schema>> {
        self.tool_schemas.get(name)
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
    /// A fingerprint of each list, indexed by [`ListKind::index`], to tell which changed.
    pub fn fingerprints(&self) -> [u64; 4] {
        fn fp(items: &[Value]) -> u64 {
            let digest = Sha256::digest(serde_json::to_vec(items).unwrap_or_default());
            u64::from_le_bytes([
                digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6],
                digest[7],
            ])
        }
        [
            fp(&self.tools),
            fp(&self.resources),
            fp(&self.templates),
            fp(&self.prompts),
        ]
    }
}

/// Describes a clash: who keeps `exposed`, what of backend `index` is not offered, and the fix.
fn clash_message(
    kind: Named,
    exposed: &str,
    keeper: &Route,
    sources: &[Source<'_>],
    index: usize,
    original: &str,
) -> String {
    let what = kind.as_str();
    let loser = sources.get(index).map(|s| s.server).unwrap_or("?");
    let (kept_by, same_backend) = match keeper {
        Route::Builtin(_) => ("the gateway's own tool keeps this name".to_string(), false),
        Route::Backend {
            backend,
            original: kept,
        } => {
            let holder = sources.get(*backend).map(|s| s.server).unwrap_or("?");
            (
                format!("'{holder}' keeps this name for its {what} \"{kept}\""),
                *backend == index,
            )
        }
    };
    let fix = if same_backend {
        format!("set a \"rename\" for \"{original}\" on '{loser}'")
    } else {
        format!("set a \"prefix\" on '{loser}' or a \"rename\" for \"{original}\" there")
    };
    format!(
        "{what} \"{exposed}\" clashes: {kept_by}, so {what} \"{original}\" of '{loser}' is not offered ({fix} to show it under another name)"
    )
}

/// The name clients see for `name` under `prefix`: `<prefix>__<name>` (just `<name>` when the
/// prefix is `""`), shortened or cleaned when needed so that it always matches
/// `^[a-zA-Z0-9_-]{1,64}$`. Deterministic.
pub fn exposed_name(prefix: &str, name: &str) -> String {
    let full = if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}{SEPARATOR}{name}")
    };
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
    if clean == full && !full.is_empty() && full.len() <= MAX_NAME {
        return full;
    }
    // Cleaned or too long: a hash of the full original name keeps distinct names distinct.
    let hash = crate::tokens::hex(&Sha256::digest(full.as_bytes()));
    let keep = MAX_NAME - 9;
    let start: String = clean.chars().take(keep).collect();
    format!("{start}_{}", &hash[..8])
}

/// Clashes that a config makes likely before any backend runs, as warnings for `check-config`:
/// two enabled servers with the same effective prefix (`""` included), two renames that give the
/// same exposed name, and names in the gateway's own `gateway__` namespace. Each warning names the
/// JSON path to change, what may clash, and the fix. Disabled servers offer nothing, so they are
/// left out.
pub fn naming_warnings(servers: &[ServerConfig]) -> Vec<Problem> {
    let enabled: Vec<&ServerConfig> = servers.iter().filter(|s| s.enabled).collect();
    let mut warnings = shared_prefixes(&enabled);
    warnings.extend(builtin_namespace(&enabled));
    warnings.extend(shared_renames(&enabled));
    warnings
}

/// A warning for each server whose prefix an earlier server already uses.
fn shared_prefixes(servers: &[&ServerConfig]) -> Vec<Problem> {
    let mut warnings = Vec::new();
    for (i, later) in servers.iter().enumerate() {
        let prefix = &later.naming.prefix;
        let Some(earlier) = servers[..i].iter().find(|s| &s.naming.prefix == prefix) else {
            continue;
        };
        let shown = if prefix.is_empty() {
            "without a prefix (\"prefix\": \"\")".to_string()
        } else {
            format!("as \"{prefix}__<name>\"")
        };
        warnings.push(Problem {
            path: join_path(&server_path(&later.name), "prefix"),
            message: format!(
                "'{}' and '{}' both show their tools and prompts {shown}: a name both offer is kept by '{}' and not offered for '{}'",
                earlier.name, later.name, earlier.name, later.name
            ),
            hint: format!(
                "give '{}' another \"prefix\", or \"rename\" the names both offer",
                later.name
            ),
        });
    }
    warnings
}

/// Warnings for names that may fall in the `gateway__` namespace of the gateway's own tools (which
/// always win), and for renames of unprefixed servers into another server's namespace.
fn builtin_namespace(servers: &[&ServerConfig]) -> Vec<Problem> {
    let mut warnings = Vec::new();
    for server in servers {
        let at = server_path(&server.name);
        if server.naming.prefix == BUILTIN_SERVER {
            warnings.push(Problem {
                path: join_path(&at, "prefix"),
                message: format!(
                    "prefix \"{BUILTIN_SERVER}\" is the namespace of the gateway's own tools: a tool of '{}' named like one of them (\"status\") is not offered, since {BUILTIN_SERVER}__status always wins",
                    server.name
                ),
                hint: "pick another \"prefix\"".to_string(),
            });
        }
        if !server.naming.prefix.is_empty() {
            continue;
        }
        let mut namespaces = vec![BUILTIN_SERVER];
        for other in servers {
            let prefix = other.naming.prefix.as_str();
            if !prefix.is_empty() && !namespaces.contains(&prefix) {
                namespaces.push(prefix);
            }
        }
        for namespace in namespaces {
            let start = format!("{namespace}{SEPARATOR}");
            for (original, target) in &server.naming.rename {
                if target.starts_with(&start) {
                    let owner = if namespace == BUILTIN_SERVER {
                        "the gateway's own tools".to_string()
                    } else {
                        format!("the names of the server with prefix \"{namespace}\"")
                    };
                    warnings.push(Problem {
                        path: join_path(&join_path(&at, "rename"), original),
                        message: format!("\"{target}\" is in the \"{start}\" namespace of {owner}, so it may clash with one of them"),
                        hint: format!("rename \"{original}\" to a name that does not start with \"{start}\""),
                    });
                }
            }
        }
    }
    warnings
}

/// A warning for each rename whose exposed name an earlier rename (of any server) already gives.
fn shared_renames(servers: &[&ServerConfig]) -> Vec<Problem> {
    let mut seen: Vec<(String, &str, &str)> = Vec::new();
    let mut warnings = Vec::new();
    for server in servers {
        for (original, target) in &server.naming.rename {
            let exposed = exposed_name(&server.naming.prefix, target);
            if let Some((_, first, first_original)) = seen.iter().find(|(e, _, _)| *e == exposed) {
                warnings.push(Problem {
                    path: join_path(
                        &join_path(&server_path(&server.name), "rename"),
                        original,
                    ),
                    message: format!(
                        "\"{exposed}\" is the name shown for both \"{first_original}\" of '{first}' and \"{original}\" of '{}': '{first}' keeps it and the other is not offered",
                        server.name
                    ),
                    hint: format!("rename \"{original}\" to another name"),
                });
            } else {
                seen.push((exposed, server.name.as_str(), original.as_str()));
            }
        }
    }
    warnings
}

/// `$.mcpServers.<name>`.
fn server_path(name: &str) -> String {
    join_path("$.mcpServers", name)
}

/// Whether a tool definition says `annotations.readOnlyHint: true`.
fn marked_read_only(def: &Value) -> bool {
    def.pointer("/annotations/readOnlyHint")
        .and_then(Value::as_bool)
        == Some(true)
}

/// Whether a tool passes the server's allow and deny globs.
pub fn tool_visible(name: &str, allow: &[String], deny: &[String]) -> bool {
    (allow.is_empty() || allow.iter().any(|g| glob_match(g, name)))
        && !deny.iter().any(|g| glob_match(g, name))
}

/// Matches `*` (any run) and `?` (one character) globs.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    // Names are ASCII almost always: compare bytes then, without allocating (this runs for
    // every glob of an access rule on every call and list entry).
    if pattern.is_ascii() && text.is_ascii() {
        return glob_match_units(pattern.as_bytes(), text.as_bytes());
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_match_units(&p, &t)
}

/// The glob matcher on any units (bytes or characters): linear backtracking to the last `*`.
fn glob_match_units<T: PartialEq + Copy + GlobUnit>(p: &[T], t: &[T]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi].is(b'?') || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi].is(b'*') {
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
    p[pi..].iter().all(|c| c.is(b'*'))
}

/// A unit of a glob: whether it is the ASCII character `c`.
trait GlobUnit {
    fn is(self, c: u8) -> bool;
}

impl GlobUnit for u8 {
    fn is(self, c: u8) -> bool {
        self == c
    }
}

impl GlobUnit for char {
    fn is(self, c: u8) -> bool {
        self == c as char
    }
}

/// One page of `items` starting at `cursor` (an offset we issued) as the JSON text of its
/// array, written from the entries in place (not one is copied), with the next cursor: what the
/// MCP face sends for a list.
pub fn page_json(
    items: &[&Value],
    cursor: Option<&str>,
    page_size: usize,
) -> Result<(Vec<u8>, Option<String>), String> {
    let (range, next) = page_bounds(items.len(), cursor, page_size)?;
    let mut out = Vec::with_capacity(256 * range.len() + 2);
    out.push(b'[');
    for (i, item) in items[range].iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, *item).map_err(|e| e.to_string())?;
    }
    out.push(b']');
    Ok((out, next))
}

/// The entries of a page of `len` entries starting at `cursor`, and the cursor of the next.
fn page_bounds(
    len: usize,
    cursor: Option<&str>,
    page_size: usize,
) -> Result<(std::ops::Range<usize>, Option<String>), String> {
    let start = match cursor {
        None => 0,
        Some(c) => c
            .strip_prefix("o:")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= len)
            .ok_or_else(|| {
                format!("invalid cursor \"{c}\": use the nextCursor of a previous answer")
            })?,
    };
    let end = (start + page_size.max(1)).min(len);
    let next = (end < len).then(|| format!("o:{end}"));
    Ok((start..end, next))
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
        // `?` is one character, also outside ASCII.
        assert!(glob_match("caf?", "café"));
        assert!(glob_match("*é*", "thé_vert"));
        assert!(!glob_match("caf?", "cafés"));
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
            ..Default::default()
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
        let (nas, nas2) = (Naming::prefixed("nas"), Naming::prefixed("nas2"));
        let catalog = Catalog::build(
            vec![json!({"name": "gateway__status"})],
            &[
                Source {
                    server: "nas",
                    allow: &[],
                    deny: &[],
                    naming: &nas,
                    read_only: &[],
                    lists: &a,
                },
                Source {
                    server: "nas2",
                    allow: &[],
                    deny: &deny,
                    naming: &nas2,
                    read_only: &[],
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

    /// A backend like the interop tests' weather server.
    fn weather() -> Lists {
        Lists {
            tools: vec![
                json!({"name": "add", "description": "Add two integers.", "inputSchema": {"type": "object"}}),
                json!({"name": "forecast", "title": "Forecast", "description": "Tomorrow.",
                       "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}},
                       "outputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true},
                       "icons": [{"src": "https://x/i.png"}], "_meta": {"k": 1}}),
                json!({"name": "slow_count", "inputSchema": {"type": "object"}}),
            ],
            resources: vec![json!({"uri": "weather://cities", "name": "cities"})],
            prompts: vec![
                json!({"name": "greet", "description": "Greet.", "arguments": [{"name": "name", "required": true}]}),
            ],
            ..Default::default()
        }
    }

    fn naming(prefix: &str, rename: &[(&str, &str)], hide: &[&str]) -> Naming {
        Naming {
            prefix: prefix.to_string(),
            rename: rename
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            descriptions: Default::default(),
            hide: hide.iter().map(|h| h.to_string()).collect(),
        }
    }

    fn build(backends: &[(&str, &Naming, &Lists)]) -> Catalog {
        let sources: Vec<Source<'_>> = backends
            .iter()
            .map(|(server, naming, lists)| Source {
                server,
                allow: &[],
                deny: &[],
                naming,
                read_only: &[],
                lists,
            })
            .collect();
        Catalog::build(vec![json!({"name": "gateway__status"})], &sources)
    }

    fn names(items: &[Value]) -> Vec<&str> {
        items.iter().filter_map(|t| t["name"].as_str()).collect()
    }

    fn route(backend: usize, original: &str) -> Route {
        Route::Backend {
            backend,
            original: original.to_string(),
        }
    }

    #[test]
    fn prefix_rename_description_and_hide_change_only_names_and_descriptions() {
        let lists = weather();
        let mut bare = naming("", &[("forecast", "weather_forecast")], &["slow_*"]);
        bare.descriptions
            .insert("forecast".into(), "Tomorrow, in one line.".into());
        bare.descriptions
            .insert("greet".into(), "Say hello.".into());
        let short = naming("w2", &[("add", "sum"), ("greet", "hello")], &["forecast"]);
        let catalog = build(&[("bare", &bare, &lists), ("wx", &short, &lists)]);
        assert_eq!(
            names(&catalog.tools),
            [
                "gateway__status",
                "add",
                "weather_forecast",
                "w2__sum",
                "w2__slow_count"
            ]
        );
        assert_eq!(names(&catalog.prompts), ["greet", "w2__hello"]);
        assert_eq!(
            catalog.clashes,
            ["resource weather://cities: 'bare' keeps this URI; the same URI of 'wx' is not offered (resource URIs are never rewritten)"]
        );
        let mut expected = lists.tools[1].clone();
        expected["name"] = json!("weather_forecast");
        expected["description"] = json!("Tomorrow, in one line.");
        assert_eq!(
            catalog.tools[2], expected,
            "only name and description change"
        );
        assert_eq!(
            serde_json::to_string(&catalog.tools[2]).expect("json"),
            serde_json::to_string(&expected).expect("json"),
            "field order kept"
        );
        assert_eq!(catalog.tools[1]["description"], "Add two integers.");
        assert_eq!(catalog.prompts[0]["description"], "Say hello.");
        assert_eq!(
            catalog.prompts[1]["arguments"], lists.prompts[0]["arguments"],
            "prompt arguments pass through"
        );
        assert_eq!(
            catalog.tool("weather_forecast"),
            Some(&route(0, "forecast"))
        );
        assert_eq!(catalog.tool("add"), Some(&route(0, "add")));
        assert_eq!(catalog.tool("w2__sum"), Some(&route(1, "add")));
        assert_eq!(catalog.prompt("w2__hello"), Some(&route(1, "greet")));
        assert_eq!(catalog.prompt("greet"), Some(&route(0, "greet")));
        for gone in [
            "forecast",
            "slow_count",
            "w2__add",
            "w2__forecast",
            "wx__add",
        ] {
            assert_eq!(catalog.tool(gone), None, "{gone}");
        }
        assert_eq!(catalog.prompt("w2__greet"), None);
        assert_eq!(
            names(&catalog.resources),
            ["cities"],
            "resources are never renamed (the second one clashes by URI)"
        );
    }

    #[test]
    fn hide_applies_to_prompts_and_beside_tools_deny() {
        let lists = weather();
        let hidden = naming("wx", &[("greet", "hello")], &["gr*", "a?d"]);
        let deny = vec!["slow_*".to_string()];
        let catalog = Catalog::build(
            Vec::new(),
            &[Source {
                server: "wx",
                allow: &[],
                deny: &deny,
                naming: &hidden,
                read_only: &[],
                lists: &lists,
            }],
        );
        assert_eq!(names(&catalog.tools), ["wx__forecast"]);
        assert!(catalog.prompts.is_empty());
        assert_eq!(
            catalog.prompt("wx__hello"),
            None,
            "not usable in completion refs either"
        );
    }

    #[test]
    fn on_a_clash_the_first_backend_keeps_the_name_and_the_clash_names_both() {
        let lists = weather();
        let first = naming("", &[], &["slow_*"]);
        let third = naming(
            "",
            &[
                ("add", "forecast"),
                ("forecast", "third_forecast"),
                ("greet", "gateway__status"),
            ],
            &[],
        );
        let own = naming("", &[("add", "gateway__status")], &[]);
        let catalog = build(&[
            ("first", &first, &lists),
            ("third", &third, &lists),
            ("own", &own, &lists),
        ]);
        assert_eq!(
            names(&catalog.tools),
            [
                "gateway__status",
                "add",
                "forecast",
                "third_forecast",
                "slow_count"
            ]
        );
        assert_eq!(catalog.tool("forecast"), Some(&route(0, "forecast")));
        assert_eq!(catalog.tool("slow_count"), Some(&route(1, "slow_count")));
        assert_eq!(
            catalog.tool("gateway__status"),
            Some(&Route::Builtin("gateway__status".into()))
        );
        assert_eq!(
            catalog.prompt("gateway__status"),
            Some(&route(1, "greet")),
            "prompts have their own names"
        );
        let clashes = catalog.clashes.join("\n");
        assert_eq!(catalog.clashes.len(), 7, "{clashes}");
        let forecast = &catalog.clashes[0];
        assert!(
            forecast.starts_with("tool \"forecast\" clashes: 'first' keeps this name for its tool \"forecast\", so tool \"add\" of 'third' is not offered"),
            "{forecast}"
        );
        assert!(
            forecast.contains("\"prefix\"") && forecast.contains("\"rename\""),
            "{forecast}"
        );
        assert!(
            catalog.clashes[2].starts_with("tool \"gateway__status\" clashes: the gateway's own tool keeps this name, so tool \"add\" of 'own'"),
            "{clashes}"
        );
        let again = build(&[
            ("first", &first, &lists),
            ("third", &third, &lists),
            ("own", &own, &lists),
        ]);
        assert_eq!(again.clashes, catalog.clashes, "deterministic");
        assert_eq!(names(&again.tools), names(&catalog.tools));
    }

    #[test]
    fn a_clash_inside_one_backend_asks_for_a_rename() {
        let lists = weather();
        let wx = naming("wx", &[("add", "forecast")], &[]);
        let catalog = build(&[("wx", &wx, &lists)]);
        assert_eq!(
            catalog.tool("wx__forecast"),
            Some(&route(0, "add")),
            "list order decides"
        );
        assert_eq!(catalog.clashes.len(), 1);
        assert!(
            catalog.clashes[0].contains("set a \"rename\" for \"forecast\" on 'wx'"),
            "{}",
            catalog.clashes[0]
        );
    }

    #[test]
    fn unprefixed_names_stay_valid() {
        assert_eq!(exposed_name("", "forecast"), "forecast");
        let dotted = exposed_name("", "light.turn_on");
        assert!(
            valid(&dotted) && dotted.starts_with("light_turn_on_"),
            "{dotted}"
        );
        assert!(
            valid(&exposed_name("", "")),
            "an empty name still gets a usable one"
        );
        assert_eq!(exposed_name("", &"y".repeat(64)), "y".repeat(64));
        assert!(valid(&exposed_name("", &"y".repeat(65))));
    }

    #[test]
    fn resources_are_visible_to_their_own_backend_only() {
        let a = Lists {
            resources: vec![json!({"uri": "a://1"}), json!({"uri": "a://2"})],
            templates: vec![json!({"uriTemplate": "a://t/{x}"})],
            ..Default::default()
        };
        let b = Lists {
            resources: vec![json!({"uri": "b://1"})],
            templates: vec![json!({"uriTemplate": "b://t/{x}"})],
            ..Default::default()
        };
        let (na, nb) = (Naming::prefixed("a"), Naming::prefixed("b"));
        let catalog = build(&[("a", &na, &a), ("b", &nb, &b)]);
        let uris = |kind, backend: usize| -> Vec<Value> {
            catalog
                .visible(kind, &|i| i == backend)
                .into_iter()
                .map(|r| {
                    r.get("uri")
                        .or(r.get("uriTemplate"))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect()
        };
        assert_eq!(
            uris(ListKind::Resources, 0),
            [json!("a://1"), json!("a://2")]
        );
        assert_eq!(uris(ListKind::Resources, 1), [json!("b://1")]);
        assert_eq!(uris(ListKind::Templates, 0), [json!("a://t/{x}")]);
        assert_eq!(uris(ListKind::Templates, 1), [json!("b://t/{x}")]);
    }

    fn servers(text: &str) -> Vec<ServerConfig> {
        match crate::config::Config::parse(text, std::path::Path::new("/"), &|_| None) {
            Ok(config) => config.servers,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn check_config_warns_of_clashes_the_config_makes_likely() {
        let warnings = naming_warnings(&servers(
            r#"{"mcpServers": {
                "first": {"url": "http://x", "prefix": ""},
                "second": {"url": "http://x", "prefix": "", "rename": {"add": "forecast", "x": "gateway__status", "y": "w2__z"}},
                "third": {"url": "http://x", "prefix": "w2", "rename": {"forecast": "f"}},
                "w2": {"url": "http://x", "rename": {"f": "f"}},
                "own": {"url": "http://x", "prefix": "gateway"},
                "off": {"url": "http://x", "prefix": "", "enabled": false},
                "fine": {"url": "http://x", "rename": {"forecast": "forecast"}}
            }}"#,
        ));
        let lines: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.mcpServers.second.prefix",
                "$.mcpServers.w2.prefix",
                "$.mcpServers.second.rename.x",
                "$.mcpServers.second.rename.y",
                "$.mcpServers.own.prefix",
                "$.mcpServers.w2.rename.f",
            ],
            "{lines:#?}"
        );
        assert!(
            lines[0].contains(
                "'first' and 'second' both show their tools and prompts without a prefix"
            ) && lines[0].contains("kept by 'first'")
                && lines[0].contains("give 'second' another \"prefix\""),
            "{}",
            lines[0]
        );
        assert!(
            lines[1]
                .contains("'third' and 'w2' both show their tools and prompts as \"w2__<name>\""),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].contains("\"gateway__\" namespace of the gateway's own tools"),
            "{}",
            lines[2]
        );
        assert!(lines[3].contains("prefix \"w2\""), "{}", lines[3]);
        assert!(
            lines[4].contains("gateway__status always wins") && lines[4].contains("pick another"),
            "{}",
            lines[4]
        );
        assert!(
            lines[5].contains("\"w2__f\" is the name shown for both \"forecast\" of 'third' and \"f\" of 'w2': 'third' keeps it"),
            "{}",
            lines[5]
        );
        assert!(naming_warnings(&servers(
            r#"{"mcpServers": {"a": {"url": "http://x"}, "b": {"url": "http://x", "prefix": ""}, "c": {"url": "http://x", "prefix": "a2"}}}"#
        ))
        .is_empty());
    }

    /// [`page_json`]'s page parsed back, and its next cursor.
    fn page(
        items: &[&Value],
        cursor: Option<&str>,
        size: usize,
    ) -> Result<(Vec<Value>, Option<String>), String> {
        let (text, next) = page_json(items, cursor, size)?;
        Ok((serde_json::from_slice(&text).expect("a JSON array"), next))
    }

    #[test]
    fn pages_follow_cursors() {
        let values: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let items: Vec<&Value> = values.iter().collect();
        let (first, next) = page(&items, None, 2).expect("page");
        assert_eq!(first, vec![json!(0), json!(1)]);
        let (second, next) = page(&items, next.as_deref(), 2).expect("page");
        assert_eq!(second, vec![json!(2), json!(3)]);
        let (last, next) = page(&items, next.as_deref(), 2).expect("page");
        assert_eq!((last, next), (vec![json!(4)], None));
        assert!(page(&items, Some("garbage"), 2).is_err());
        assert!(page(&items, Some("o:99"), 2).is_err());
        assert_eq!(
            page_json(&[], None, 2).expect("empty"),
            (b"[]".to_vec(), None)
        );
    }

    #[test]
    fn a_json_page_keeps_each_entry_as_it_was() {
        let values: Vec<Value> = vec![
            json!({"name": "b", "inputSchema": {"type": "object", "properties": {"z": {}, "a": {}}}}),
            json!({"name": "a", "description": "quote \" and \u{e9}"}),
        ];
        let items: Vec<&Value> = values.iter().collect();
        let (text, next) = page_json(&items, None, 5).expect("page");
        assert_eq!(next, None);
        // Key order (preserve_order) and escaping are those of serializing each entry alone.
        let expected = format!(
            "[{},{}]",
            serde_json::to_string(&values[0]).expect("json"),
            serde_json::to_string(&values[1]).expect("json")
        );
        assert_eq!(String::from_utf8(text).expect("utf-8"), expected);
        assert!(expected.contains(r#""properties":{"z":{},"a":{}}"#));
    }
}
