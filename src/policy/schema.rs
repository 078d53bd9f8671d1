//! Argument validation: checks a `tools/call`'s arguments against the tool's `inputSchema`
//! before the call leaves the gateway, so a backend never sees a call its own schema refuses.
//!
//! This module owns the whole validator: compiling a schema ([`Schema::compile`], once per
//! tool), checking an instance against it ([`Schema::validate`], on every call), the messages a
//! client (often a model) reads, and the small regular-expression engine behind `pattern` and
//! `patternProperties`. It knows nothing of tools, faces or JSON-RPC: the caller decides what a
//! violation becomes (-32602 on MCP, a tool error on the OpenAI face).
//!
//! # Semantics
//!
//! Draft 2020-12, the dialect MCP tool schemas are written in (older drafts' schemas validate
//! the same way for everything tools use). The keywords checked are [`SUPPORTED_KEYWORDS`];
//! [`IGNORED_KEYWORDS`] (annotations such as `title`, `description`, `default`, `format`) and
//! vendor keys (`x-...`) never fail a call; any other keyword is ignored too and noted in
//! [`Schema::notes`]. Details:
//!
//! - `type` takes a name or a list; `integer` accepts integral floats (`1.0`).
//! - `enum`, `const` and `uniqueItems` use JSON equality, numbers compared by value (`1 == 1.0`),
//!   `true` never equal to `1`. Numeric bounds compare integers and floats exactly.
//! - `minLength`/`maxLength` count Unicode code points.
//! - `format` is an annotation (the 2020-12 default): it never fails a call. No MCP server seen
//!   relies on it being asserted (the 230 tools of the seed use no `format` at all).
//! - `$ref` is local only: `#`, `#/$defs/...`, `#/definitions/...` or any JSON pointer into the
//!   same document (percent-encoded as in a URI fragment). Remote references, anchors
//!   (`#name`), `$dynamicRef`/`$recursiveRef` and an `$id` below the root make the schema fail to
//!   compile ([`SchemaError`]); so does a `$ref` cycle that never reaches into the instance
//!   (`{"$ref": "#"}`). Recursion through the instance is bounded at [`MAX_DEPTH`] nested
//!   evaluations.
//! - For compatibility with older drafts: `items` as an array (Draft 4 tuples, with
//!   `additionalItems`), boolean `exclusiveMinimum`/`exclusiveMaximum` (Draft 4) and
//!   `dependencies` (Draft 7).
//! - `unevaluatedProperties`/`unevaluatedItems` follow the `jsonschema` Python package's
//!   reading: properties (items) evaluated by this schema's `properties`, `patternProperties`,
//!   `additionalProperties` (`prefixItems`, `items`, `contains`), and by `$ref`,
//!   `dependentSchemas`, `if`/`then`/`else` and the valid branches of `allOf`/`anyOf`/`oneOf`.
//! - A keyword whose value is malformed (`"required": true`, `"minimum": "5"`) is ignored and
//!   noted; a subschema that is neither an object nor a boolean counts as `true` and is noted.
//!
//! Violations name the instance location as a JSON pointer (RFC 6901 escaping, the root shown as
//! `/`): `/entity_id: expected string, got number`. At most [`MAX_VIOLATIONS`] are reported, in
//! a fixed order: per schema, `type` (a type mismatch reports nothing else), `const`/`enum`, the
//! keywords of the instance's type (properties in the schema's order, then the instance's extra
//! properties in its own order), then `$ref`, `allOf`, `anyOf`, `oneOf`, `not`, `if`.
//!
//! # Regular expressions
//!
//! `pattern` and `patternProperties` use ECMA-262 syntax, with search semantics (a pattern
//! matches anywhere unless anchored with `^`/`$`). The subset implemented, on Unicode code
//! points: literals; `.` (anything but `\n`, `\r`, U+2028, U+2029); classes `[...]`, `[^...]`
//! with ranges; `\d \w \s \D \W \S` (ASCII `\d` and `\w` as in ECMA-262, `\s` with the Unicode
//! spaces); escapes `\t \n \r \v \f \0 \cX \xHH \uHHHH` (surrogate pairs joined) and escaped
//! punctuation; anchors `^ $` (not multiline) and `\b \B`; groups `( )` and `(?: )`; alternation
//! `|`; quantifiers `* + ? {n} {n,} {n,m}`, greedy or lazy (`*?`; laziness cannot change
//! whether a pattern matches, so it is accepted and makes no difference). As in ECMA-262's
//! Annex B (what browsers and Node do), a `{`, `}` or `]` that starts no quantifier or class is
//! a literal; `[]` matches nothing and `[^]` any character.
//!
//! Not supported: lookahead and lookbehind, backreferences (`\1`, `\k<name>`), named groups,
//! Unicode property escapes (`\p{..}`), inline flags, `\u{...}`, octal escapes, a class escape
//! as a range bound (`[\d-x]`), and any other escaped letter or digit. A pattern using them is
//! *unchecked*: it never fails a call, and [`Schema::notes`] says so. An invalid pattern is
//! treated the same way.
//!
//! The engine is a Thompson NFA simulation (no backtracking), so its time is linear in the
//! string's length times the pattern's size: no pattern can make it blow up. It still has a step
//! budget ([`REGEX_STEP_BUDGET`] plus [`REGEX_STEPS_PER_CHAR`] per character of the string);
//! a match over budget counts as *cannot check* (no violation), and is counted
//! ([`Schema::patterns_over_budget`], [`patterns_over_budget_total`]). Repetition counts are
//! expanded, so a pattern compiles to at most [`REGEX_MAX_INSTRUCTIONS`] instructions, beyond
//! which it is unchecked.
//!
//! An unchecked pattern counts as matching. Where that could turn into a violation (under `not`,
//! a second matching `oneOf` branch, the `if` of `if`/`then`/`else`, `maxContains`), the keyword
//! is not enforced for that call.
//!
//! # Against the `jsonschema` Python package
//!
//! tests/schema_verdicts.rs checks that this validator gives the same verdict as `jsonschema`'s
//! `Draft202012Validator` on pairs built from real tool schemas (tests/schema/generate.py). The
//! known differences, all on purpose: `jsonschema` runs `pattern` with Python's `re`, not
//! ECMA-262, so there `\d`, `\w`, `\s` and `\b` are Unicode-aware, `$` also matches before a final
//! `\n`, `.` matches `\r` and U+2028/U+2029, and `\B` never matches an empty string; and it
//! raises instead of answering on a `$ref` cycle or a malformed keyword, where this validator
//! refuses to compile or ignores the keyword (see above).
//!
//! # Cost
//!
//! A schema compiles to a flat list of nodes with `$ref`s resolved and patterns compiled.
//! Validating allocates nothing unless there is a violation to report, a pattern of over 128
//! instructions to run (patterns up to that size, every one seen in real schemas, run on
//! bitsets), `uniqueItems` on an array of over 32 items, `propertyNames`, or
//! `unevaluatedProperties`/`unevaluatedItems`. A typical tool schema (four properties, one
//! `pattern`, `anyOf`-null optionals) validates in about half a microsecond.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use serde_json::{Map, Number, Value};

use self::regex::Regex;

/// Keywords the validator checks (and the containers `$defs`/`definitions` its `$ref`s point
/// into).
pub const SUPPORTED_KEYWORDS: &[&str] = &[
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "items",
    "prefixItems",
    "additionalItems",
    "contains",
    "minContains",
    "maxContains",
    "minItems",
    "maxItems",
    "uniqueItems",
    "unevaluatedItems",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "unevaluatedProperties",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "$ref",
    "$defs",
    "definitions",
];

/// Keywords that never fail a call: annotations, identifiers, OpenAPI leftovers. Vendor keys
/// (`x-...`) are ignored as well. `$id` is ignored at the root only (below it, see the module
/// doc); `nullable` (OpenAPI 3.0) does not allow `null`: JSON Schema has no such keyword.
pub const IGNORED_KEYWORDS: &[&str] = &[
    "$schema",
    "$id",
    "$anchor",
    "$comment",
    "$vocabulary",
    "title",
    "description",
    "default",
    "examples",
    "example",
    "deprecated",
    "readOnly",
    "writeOnly",
    "format",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    "nullable",
    "discriminator",
    "_meta",
];

/// Most violations [`Schema::validate`] reports for one instance.
pub const MAX_VIOLATIONS: usize = 10;

/// Most nested evaluations (a subschema applied inside another) one validation makes; deeper is
/// a violation ("too deeply nested"). Real tool arguments are a few levels deep; this bounds
/// recursive schemas and keeps the stack small.
pub const MAX_DEPTH: u32 = 256;

/// Steps a pattern may take on any string, on top of [`REGEX_STEPS_PER_CHAR`] per character.
pub const REGEX_STEP_BUDGET: u64 = 200_000;

/// Steps a pattern may take per character of the string, on top of [`REGEX_STEP_BUDGET`].
pub const REGEX_STEPS_PER_CHAR: u64 = 16;

/// Largest compiled pattern, in instructions; a larger one (`x{1,50000}`) is unchecked.
pub const REGEX_MAX_INSTRUCTIONS: usize = 10_000;

/// Most nodes (subschemas) one schema may compile to.
const MAX_NODES: usize = 50_000;

/// Most notes kept per schema.
const MAX_NOTES: usize = 20;

static OVER_BUDGET_TOTAL: AtomicU64 = AtomicU64::new(0);

/// How many pattern matches, in all schemas, ran over their step budget and were not checked.
pub fn patterns_over_budget_total() -> u64 {
    OVER_BUDGET_TOTAL.load(AtomicOrdering::Relaxed)
}

/// A schema that cannot be used: the caller logs it once and lets the tool be called unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// Why, for a log line.
    pub message: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SchemaError {}

/// One way an instance breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where, as a JSON pointer into the instance (`/items/2/name`; the root is `/`).
    pub pointer: String,
    /// What is wrong, for the client (`expected string, got number`).
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pointer, self.message)
    }
}

/// All `violations` in one line, `; `-separated (for an error message).
pub fn summary(violations: &[Violation]) -> String {
    let mut out = String::new();
    for (i, v) in violations.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&v.pointer);
        out.push_str(": ");
        out.push_str(&v.message);
    }
    out
}

/// A compiled JSON Schema: compile once ([`Schema::compile`]), validate often
/// ([`Schema::validate`], [`Schema::is_valid`]).
pub struct Schema {
    nodes: Vec<Node>,
    patterns: Vec<Pattern>,
    notes: Vec<String>,
    over_budget: AtomicU64,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema")
            .field("nodes", &self.nodes.len())
            .field("patterns", &self.patterns.len())
            .field("notes", &self.notes)
            .finish()
    }
}

impl Schema {
    /// Compiles `schema` (a tool's `inputSchema`). Fails only when the schema cannot be used at
    /// all (see the module doc); what it merely cannot check is in [`Schema::notes`].
    pub fn compile(schema: &Value) -> Result<Schema, SchemaError> {
        let mut c = Compiler {
            root: schema,
            nodes: Vec::new(),
            memo: HashMap::new(),
            patterns: Vec::new(),
            notes: Vec::new(),
        };
        let root = c.node(schema, String::new())?;
        debug_assert_eq!(root, 0);
        find_ref_cycle(&c.nodes)?;
        Ok(Schema {
            nodes: c.nodes,
            patterns: c.patterns,
            notes: c.notes,
            over_budget: AtomicU64::new(0),
        })
    }

    /// What the schema asks that is not checked (unknown keywords, unsupported patterns,
    /// malformed keyword values), one sentence each with its location in the schema; at most a
    /// few. For a log line when the tool is first seen.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// How many pattern matches against this schema ran over their step budget (and so were
    /// not checked).
    pub fn patterns_over_budget(&self) -> u64 {
        self.over_budget.load(AtomicOrdering::Relaxed)
    }

    /// The violations of `instance`, at most [`MAX_VIOLATIONS`], in a fixed order; empty when
    /// it is valid.
    pub fn validate(&self, instance: &Value) -> Vec<Violation> {
        let mut cx = Ctx::default();
        self.check(0, instance, &Path::ROOT, &mut cx, true);
        cx.out
    }

    /// Whether `instance` is valid: [`Schema::validate`] without the messages, stopping at the
    /// first violation.
    pub fn is_valid(&self, instance: &Value) -> bool {
        let mut cx = Ctx::default();
        self.check(0, instance, &Path::ROOT, &mut cx, false)
    }
}

// --- compiled form -----------------------------------------------------------------------------

const T_NULL: u8 = 1;
const T_BOOLEAN: u8 = 2;
const T_INTEGER: u8 = 4;
const T_NUMBER: u8 = 8;
const T_STRING: u8 = 16;
const T_ARRAY: u8 = 32;
const T_OBJECT: u8 = 64;

/// Type names in the order messages list them.
const TYPE_NAMES: [(u8, &str); 7] = [
    (T_STRING, "string"),
    (T_NUMBER, "number"),
    (T_INTEGER, "integer"),
    (T_BOOLEAN, "boolean"),
    (T_OBJECT, "object"),
    (T_ARRAY, "array"),
    (T_NULL, "null"),
];

type NodeId = usize;

/// One (sub)schema. Keywords of one instance type sit in their own box, absent when the schema
/// has none, so checking a value of another type costs one test.
#[derive(Default)]
struct Node {
    /// `Some` for the boolean schemas `true` and `false` (then nothing else is set).
    boolean: Option<bool>,
    /// Allowed types as `T_*` bits; 0 when the schema has no `type`.
    types: u8,
    const_: Option<Value>,
    enum_: Option<Vec<Value>>,
    num: Option<Box<NumRules>>,
    string: Option<Box<StringRules>>,
    array: Option<Box<ArrayRules>>,
    object: Option<Box<ObjectRules>>,
    ref_: Option<NodeId>,
    all_of: Vec<NodeId>,
    any_of: Vec<NodeId>,
    one_of: Vec<NodeId>,
    not: Option<NodeId>,
    if_: Option<NodeId>,
    then_: Option<NodeId>,
    else_: Option<NodeId>,
}

#[derive(Default)]
struct NumRules {
    minimum: Option<Num>,
    maximum: Option<Num>,
    exclusive_minimum: Option<Num>,
    exclusive_maximum: Option<Num>,
    multiple_of: Option<Num>,
}

#[derive(Default)]
struct StringRules {
    min_length: Option<u64>,
    max_length: Option<u64>,
    pattern: Option<usize>,
}

#[derive(Default)]
struct ArrayRules {
    /// `prefixItems`, or the array form of `items`.
    prefix: Vec<NodeId>,
    /// `items` (a schema): applies after `prefix`.
    items: Option<NodeId>,
    /// Whether the schema has an `items` keyword at all (for `unevaluatedItems`).
    has_items: bool,
    /// `additionalItems`, used only with the array form of `items`.
    additional_items: Option<NodeId>,
    contains: Option<NodeId>,
    min_contains: Option<u64>,
    max_contains: Option<u64>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique: bool,
    unevaluated: Option<NodeId>,
}

#[derive(Default)]
struct ObjectRules {
    /// `properties` in the schema's order.
    properties: Vec<(String, NodeId)>,
    /// Indexes into `properties`, sorted by name, for lookups.
    by_name: Vec<u32>,
    /// `patternProperties`: (pattern index, schema).
    patterns: Vec<(usize, NodeId)>,
    additional: Option<NodeId>,
    required: Vec<String>,
    dependent_required: Vec<(String, Vec<String>)>,
    dependent_schemas: Vec<(String, NodeId)>,
    names: Option<NodeId>,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    unevaluated: Option<NodeId>,
}

impl ObjectRules {
    fn has_property(&self, name: &str) -> bool {
        self.by_name
            .binary_search_by(|&i| self.properties[i as usize].0.as_str().cmp(name))
            .is_ok()
    }
}

/// A `pattern` or a `patternProperties` key; `regex` is `None` when it is unchecked.
struct Pattern {
    source: String,
    regex: Option<Regex>,
}

/// A JSON number, compared by value.
#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn of(n: &Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i as i128)
        } else if let Some(u) = n.as_u64() {
            Num::Int(u as i128)
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn cmp(self, other: Num) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            (Num::Int(a), Num::Float(b)) => cmp_int_float(a, b),
            (Num::Float(a), Num::Int(b)) => cmp_int_float(b, a).reverse(),
        }
    }
}

/// Exact comparison of an integer and a float (as Python does it).
fn cmp_int_float(i: i128, f: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    if f.is_nan() {
        return Ordering::Equal;
    }
    if f >= 1.0e38 {
        return Ordering::Less;
    }
    if f <= -1.0e38 {
        return Ordering::Greater;
    }
    let floor = f.floor();
    match i.cmp(&(floor as i128)) {
        Ordering::Equal if f > floor => Ordering::Less,
        other => other,
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Num::Int(i) => write!(f, "{i}"),
            Num::Float(x) => match Number::from_f64(x) {
                Some(n) => write!(f, "{n}"),
                None => write!(f, "{x}"),
            },
        }
    }
}

// --- compiling ---------------------------------------------------------------------------------

struct Compiler<'a> {
    root: &'a Value,
    nodes: Vec<Node>,
    /// Compiled subschemas by their JSON pointer in the document, so a `$ref` and the place it
    /// points to share a node (and recursion terminates).
    memo: HashMap<String, NodeId>,
    patterns: Vec<Pattern>,
    notes: Vec<String>,
}

fn error(message: String) -> SchemaError {
    SchemaError { message }
}

/// `ptr` for messages: the root is `/`.
fn shown_ptr(ptr: &str) -> &str {
    if ptr.is_empty() {
        "/"
    } else {
        ptr
    }
}

fn child_ptr(ptr: &str, key: &str) -> String {
    let mut out = String::with_capacity(ptr.len() + key.len() + 1);
    out.push_str(ptr);
    out.push('/');
    push_escaped(&mut out, key);
    out
}

fn push_escaped(out: &mut String, key: &str) {
    for c in key.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

impl<'a> Compiler<'a> {
    fn note(&mut self, text: String) {
        if self.notes.len() < MAX_NOTES && !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }

    fn malformed(&mut self, ptr: &str, keyword: &str, want: &str) {
        self.note(format!(
            "{}: `{keyword}` ignored: expected {want}",
            shown_ptr(ptr)
        ));
    }

    /// Compiles the subschema `v` found at `ptr`.
    fn node(&mut self, v: &'a Value, ptr: String) -> Result<NodeId, SchemaError> {
        if let Some(&id) = self.memo.get(&ptr) {
            return Ok(id);
        }
        if self.nodes.len() >= MAX_NODES {
            return Err(error(format!(
                "schema too large: more than {MAX_NODES} subschemas"
            )));
        }
        let id = self.nodes.len();
        self.nodes.push(Node::default());
        self.memo.insert(ptr.clone(), id);
        let node = match v {
            Value::Bool(b) => Node {
                boolean: Some(*b),
                ..Node::default()
            },
            Value::Object(map) => self.object(map, &ptr)?,
            _ => {
                self.note(format!(
                    "{}: not a schema (neither an object nor a boolean): accepts anything",
                    shown_ptr(&ptr)
                ));
                Node {
                    boolean: Some(true),
                    ..Node::default()
                }
            }
        };
        self.nodes[id] = node;
        Ok(id)
    }

    fn sub(&mut self, v: &'a Value, ptr: &str, key: &str) -> Result<NodeId, SchemaError> {
        self.node(v, child_ptr(ptr, key))
    }

    /// The subschemas of an array-valued keyword (`allOf`, `prefixItems`, ...); `None` (and a
    /// note) when the value is not an array.
    fn list(
        &mut self,
        v: &'a Value,
        ptr: &str,
        keyword: &str,
        non_empty: bool,
    ) -> Result<Option<Vec<NodeId>>, SchemaError> {
        let items = match v.as_array() {
            Some(items) if !(non_empty && items.is_empty()) => items,
            _ => {
                let want = if non_empty {
                    "a non-empty array of schemas"
                } else {
                    "an array of schemas"
                };
                self.malformed(ptr, keyword, want);
                return Ok(None);
            }
        };
        let at = child_ptr(ptr, keyword);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(self.node(item, child_ptr(&at, &i.to_string()))?);
        }
        Ok(Some(out))
    }

    /// The subschemas of an object-valued keyword (`properties`, `dependentSchemas`, ...).
    fn map(
        &mut self,
        v: &'a Value,
        ptr: &str,
        keyword: &str,
    ) -> Result<Option<Vec<(String, NodeId)>>, SchemaError> {
        let Some(map) = v.as_object() else {
            self.malformed(ptr, keyword, "an object of schemas");
            return Ok(None);
        };
        let at = child_ptr(ptr, keyword);
        let mut out = Vec::with_capacity(map.len());
        for (k, item) in map {
            out.push((k.clone(), self.node(item, child_ptr(&at, k))?));
        }
        Ok(Some(out))
    }

    fn number(&mut self, v: &Value, ptr: &str, keyword: &str) -> Option<Num> {
        match v {
            Value::Number(n) => Some(Num::of(n)),
            _ => {
                self.malformed(ptr, keyword, "a number");
                None
            }
        }
    }

    fn count(&mut self, v: &Value, ptr: &str, keyword: &str) -> Option<u64> {
        let n = v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
                .map(|f| f as u64)
        });
        if n.is_none() {
            self.malformed(ptr, keyword, "a non-negative integer");
        }
        n
    }

    fn strings(&mut self, v: &Value, ptr: &str, keyword: &str) -> Option<Vec<String>> {
        let list = v.as_array().and_then(|items| {
            items
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        });
        if list.is_none() {
            self.malformed(ptr, keyword, "an array of strings");
        }
        list
    }

    fn pattern(&mut self, source: &str, ptr: &str, keyword: &str) -> usize {
        let regex = match Regex::new(source) {
            Ok(re) => Some(re),
            Err(why) => {
                self.note(format!(
                    "{}: {keyword} {} is not checked: {why}",
                    shown_ptr(ptr),
                    shown_pattern(source)
                ));
                None
            }
        };
        self.patterns.push(Pattern {
            source: source.to_owned(),
            regex,
        });
        self.patterns.len() - 1
    }

    fn object(&mut self, map: &'a Map<String, Value>, ptr: &str) -> Result<Node, SchemaError> {
        let mut n = Node::default();
        let mut num = NumRules::default();
        let mut string = StringRules::default();
        let mut array = ArrayRules::default();
        let mut object = ObjectRules::default();
        let (mut exclusive_min_flag, mut exclusive_max_flag) = (false, false);
        let mut items_array = false;
        for (k, v) in map {
            let key = k.as_str();
            match key {
                "type" => {
                    let bits = match v {
                        Value::String(s) => type_bit(s),
                        Value::Array(list) => list
                            .iter()
                            .try_fold(0u8, |acc, t| t.as_str().and_then(type_bit).map(|b| acc | b)),
                        _ => None,
                    };
                    match bits {
                        Some(b) if b != 0 => n.types = b,
                        _ => self.malformed(ptr, key, "a type name or a list of type names"),
                    }
                }
                "enum" => match v.as_array() {
                    Some(list) => n.enum_ = Some(list.clone()),
                    None => self.malformed(ptr, key, "an array"),
                },
                "const" => n.const_ = Some(v.clone()),
                "minimum" => num.minimum = self.number(v, ptr, key),
                "maximum" => num.maximum = self.number(v, ptr, key),
                "exclusiveMinimum" => match v {
                    Value::Bool(b) => exclusive_min_flag = *b,
                    _ => num.exclusive_minimum = self.number(v, ptr, key),
                },
                "exclusiveMaximum" => match v {
                    Value::Bool(b) => exclusive_max_flag = *b,
                    _ => num.exclusive_maximum = self.number(v, ptr, key),
                },
                "multipleOf" => {
                    num.multiple_of = self.number(v, ptr, key);
                    if matches!(num.multiple_of, Some(m) if m.as_f64() <= 0.0) {
                        num.multiple_of = None;
                        self.malformed(ptr, key, "a number above 0");
                    }
                }
                "minLength" => string.min_length = self.count(v, ptr, key),
                "maxLength" => string.max_length = self.count(v, ptr, key),
                "pattern" => match v.as_str() {
                    Some(s) => string.pattern = Some(self.pattern(s, ptr, key)),
                    None => self.malformed(ptr, key, "a string"),
                },
                "items" => {
                    array.has_items = true;
                    if v.is_array() {
                        if let Some(list) = self.list(v, ptr, key, false)? {
                            items_array = true;
                            if array.prefix.is_empty() {
                                array.prefix = list;
                            }
                        }
                    } else {
                        array.items = Some(self.sub(v, ptr, key)?);
                    }
                }
                "prefixItems" => {
                    if let Some(list) = self.list(v, ptr, key, false)? {
                        array.prefix = list;
                    }
                }
                "additionalItems" => array.additional_items = Some(self.sub(v, ptr, key)?),
                "contains" => array.contains = Some(self.sub(v, ptr, key)?),
                "minContains" => array.min_contains = self.count(v, ptr, key),
                "maxContains" => array.max_contains = self.count(v, ptr, key),
                "minItems" => array.min_items = self.count(v, ptr, key),
                "maxItems" => array.max_items = self.count(v, ptr, key),
                "uniqueItems" => match v {
                    Value::Bool(b) => array.unique = *b,
                    _ => self.malformed(ptr, key, "a boolean"),
                },
                "unevaluatedItems" => array.unevaluated = Some(self.sub(v, ptr, key)?),
                "properties" => {
                    if let Some(props) = self.map(v, ptr, key)? {
                        object.properties = props;
                    }
                }
                "patternProperties" => {
                    if let Some(props) = self.map(v, ptr, key)? {
                        for (source, id) in props {
                            let p = self.pattern(&source, ptr, key);
                            object.patterns.push((p, id));
                        }
                    }
                }
                "additionalProperties" => object.additional = Some(self.sub(v, ptr, key)?),
                "required" => {
                    if let Some(list) = self.strings(v, ptr, key) {
                        object.required = list;
                    }
                }
                "dependentRequired" => {
                    let Some(deps) = v.as_object() else {
                        self.malformed(ptr, key, "an object of string arrays");
                        continue;
                    };
                    for (name, list) in deps {
                        if let Some(list) = self.strings(list, ptr, key) {
                            object.dependent_required.push((name.clone(), list));
                        }
                    }
                }
                "dependentSchemas" => {
                    if let Some(deps) = self.map(v, ptr, key)? {
                        object.dependent_schemas.extend(deps);
                    }
                }
                "dependencies" => {
                    let Some(deps) = v.as_object() else {
                        self.malformed(ptr, key, "an object");
                        continue;
                    };
                    let at = child_ptr(ptr, key);
                    for (name, dep) in deps {
                        if dep.is_array() {
                            if let Some(list) = self.strings(dep, ptr, key) {
                                object.dependent_required.push((name.clone(), list));
                            }
                        } else {
                            let id = self.node(dep, child_ptr(&at, name))?;
                            object.dependent_schemas.push((name.clone(), id));
                        }
                    }
                }
                "propertyNames" => object.names = Some(self.sub(v, ptr, key)?),
                "minProperties" => object.min_properties = self.count(v, ptr, key),
                "maxProperties" => object.max_properties = self.count(v, ptr, key),
                "unevaluatedProperties" => object.unevaluated = Some(self.sub(v, ptr, key)?),
                "allOf" => n.all_of = self.list(v, ptr, key, true)?.unwrap_or_default(),
                "anyOf" => n.any_of = self.list(v, ptr, key, true)?.unwrap_or_default(),
                "oneOf" => n.one_of = self.list(v, ptr, key, true)?.unwrap_or_default(),
                "not" => n.not = Some(self.sub(v, ptr, key)?),
                "if" => n.if_ = Some(self.sub(v, ptr, key)?),
                "then" => n.then_ = Some(self.sub(v, ptr, key)?),
                "else" => n.else_ = Some(self.sub(v, ptr, key)?),
                "$ref" => match v.as_str() {
                    Some(r) => n.ref_ = Some(self.reference(r, ptr)?),
                    None => self.malformed(ptr, key, "a string"),
                },
                "$defs" | "definitions" => {
                    if !v.is_object() {
                        self.malformed(ptr, key, "an object of schemas");
                    }
                }
                "$dynamicRef" | "$recursiveRef" => {
                    return Err(error(format!(
                        "{}: `{key}` is not supported",
                        shown_ptr(ptr)
                    )));
                }
                "$id" if !ptr.is_empty() => {
                    return Err(error(format!(
                        "{}: `$id` below the root is not supported",
                        shown_ptr(ptr)
                    )));
                }
                _ if IGNORED_KEYWORDS.contains(&key) || key.starts_with("x-") => {}
                _ => self.note(format!(
                    "{}: unknown keyword `{}` ignored",
                    shown_ptr(ptr),
                    crate::untrusted::shortened(key, 60)
                )),
            }
        }
        if exclusive_min_flag {
            num.exclusive_minimum = num.minimum.take().or(num.exclusive_minimum);
        }
        if exclusive_max_flag {
            num.exclusive_maximum = num.maximum.take().or(num.exclusive_maximum);
        }
        if !items_array {
            array.additional_items = None;
        }
        if n.if_.is_none() {
            n.then_ = None;
            n.else_ = None;
        }
        let NumRules {
            minimum,
            maximum,
            exclusive_minimum,
            exclusive_maximum,
            multiple_of,
        } = &num;
        if minimum.is_some()
            || maximum.is_some()
            || exclusive_minimum.is_some()
            || exclusive_maximum.is_some()
            || multiple_of.is_some()
        {
            n.num = Some(Box::new(num));
        }
        if string.min_length.is_some() || string.max_length.is_some() || string.pattern.is_some() {
            n.string = Some(Box::new(string));
        }
        if !array.prefix.is_empty()
            || array.has_items
            || array.contains.is_some()
            || array.min_items.is_some()
            || array.max_items.is_some()
            || array.unique
            || array.unevaluated.is_some()
        {
            n.array = Some(Box::new(array));
        }
        if !object.properties.is_empty()
            || !object.patterns.is_empty()
            || object.additional.is_some()
            || !object.required.is_empty()
            || !object.dependent_required.is_empty()
            || !object.dependent_schemas.is_empty()
            || object.names.is_some()
            || object.min_properties.is_some()
            || object.max_properties.is_some()
            || object.unevaluated.is_some()
        {
            let mut by_name: Vec<u32> = (0..object.properties.len() as u32).collect();
            by_name.sort_by(|&a, &b| {
                object.properties[a as usize]
                    .0
                    .cmp(&object.properties[b as usize].0)
            });
            object.by_name = by_name;
            n.object = Some(Box::new(object));
        }
        Ok(n)
    }

    /// Resolves a local `$ref` to the node it points to, compiling it if needed.
    fn reference(&mut self, r: &str, ptr: &str) -> Result<NodeId, SchemaError> {
        let unsupported = || {
            error(format!(
                "{}: $ref {} is not supported: only local references (\"#\", \"#/$defs/...\") are",
                shown_ptr(ptr),
                quoted(r)
            ))
        };
        let Some(fragment) = r.strip_prefix('#') else {
            return Err(unsupported());
        };
        let fragment = percent_decode(fragment).ok_or_else(unsupported)?;
        if !fragment.is_empty() && !fragment.starts_with('/') {
            return Err(unsupported());
        }
        if let Some(&id) = self.memo.get(&fragment) {
            return Ok(id);
        }
        let root: &'a Value = self.root;
        let Some(target) = root.pointer(&fragment) else {
            return Err(error(format!(
                "{}: $ref {} points to nothing in the schema",
                shown_ptr(ptr),
                quoted(r)
            )));
        };
        self.node(target, fragment)
    }
}

fn type_bit(name: &str) -> Option<u8> {
    Some(match name {
        "null" => T_NULL,
        "boolean" => T_BOOLEAN,
        "integer" => T_INTEGER,
        "number" => T_NUMBER,
        "string" => T_STRING,
        "array" => T_ARRAY,
        "object" => T_OBJECT,
        _ => return None,
    })
}

/// `%XX` decoding of a URI fragment; `None` when it does not decode to UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The subschemas applied to the same instance location as `n` (not to a child of it).
fn in_place(n: &Node) -> impl Iterator<Item = NodeId> + '_ {
    n.ref_
        .iter()
        .chain(&n.all_of)
        .chain(&n.any_of)
        .chain(&n.one_of)
        .chain(&n.not)
        .chain(&n.if_)
        .chain(&n.then_)
        .chain(&n.else_)
        .chain(
            n.object
                .iter()
                .flat_map(|o| o.dependent_schemas.iter().map(|(_, id)| id)),
        )
        .copied()
}

/// Refuses a schema where following `$ref`s (and in-place applicators) leads back to where it
/// started without going into the instance: validating with it would never end.
fn find_ref_cycle(nodes: &[Node]) -> Result<(), SchemaError> {
    // 0: not seen, 1: on the current path, 2: done.
    let mut state = vec![0u8; nodes.len()];
    let mut stack: Vec<(NodeId, Vec<NodeId>, usize)> = Vec::new();
    for start in 0..nodes.len() {
        if state[start] != 0 || !has_in_place(&nodes[start]) {
            continue;
        }
        state[start] = 1;
        stack.push((start, in_place(&nodes[start]).collect(), 0));
        while let Some((id, children, next)) = stack.last_mut() {
            if let Some(&child) = children.get(*next) {
                *next += 1;
                match state[child] {
                    0 => {
                        state[child] = 1;
                        let grandchildren = in_place(&nodes[child]).collect();
                        stack.push((child, grandchildren, 0));
                    }
                    1 => {
                        return Err(error(
                            "$ref cycle: the schema refers back to itself without going into the \
                             value, so no value could ever be checked"
                                .to_owned(),
                        ))
                    }
                    _ => {}
                }
            } else {
                state[*id] = 2;
                stack.pop();
            }
        }
    }
    Ok(())
}

fn has_in_place(n: &Node) -> bool {
    in_place(n).next().is_some()
}

// --- validating --------------------------------------------------------------------------------

/// One step of the path from the root to the value being checked.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The location being checked, as a chain on the stack: rendered only for a violation.
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Option<Seg<'a>>,
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path {
        parent: None,
        seg: None,
    };

    fn key(&'a self, k: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Some(Seg::Key(k)),
        }
    }

    fn index(&'a self, i: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Some(Seg::Index(i)),
        }
    }

    fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut at = Some(self);
        while let Some(p) = at {
            if let Some(s) = p.seg {
                segs.push(s);
            }
            at = p.parent;
        }
        if segs.is_empty() {
            return "/".to_owned();
        }
        let mut out = String::new();
        for s in segs.iter().rev() {
            out.push('/');
            match s {
                Seg::Key(k) => push_escaped(&mut out, k),
                Seg::Index(i) => out.push_str(&i.to_string()),
            }
        }
        out
    }
}

#[derive(Default)]
struct Ctx {
    out: Vec<Violation>,
    /// Set when something could not be checked (an unchecked pattern, one over budget) and was
    /// let pass; read around `not`, `oneOf`, `if` and `maxContains`, where letting it pass
    /// could itself cause a violation.
    uncertain: bool,
    depth: u32,
}

impl Ctx {
    fn push(&mut self, path: &Path, message: impl FnOnce() -> String) {
        if self.out.len() < MAX_VIOLATIONS {
            self.out.push(Violation {
                pointer: path.render(),
                message: message(),
            });
        }
    }

    fn full(&self) -> bool {
        self.out.len() >= MAX_VIOLATIONS
    }
}

/// Records a failure: returns `false` at once when not collecting messages.
macro_rules! fail {
    ($ok:ident, $cx:ident, $collect:ident, $path:expr, $msg:expr) => {{
        $ok = false;
        if !$collect {
            return false;
        }
        $cx.push($path, || $msg);
    }};
}

/// Folds the result of a subschema check in: returns `false` at once when not collecting.
macro_rules! sub {
    ($ok:ident, $collect:ident, $check:expr) => {{
        if !$check {
            $ok = false;
            if !$collect {
                return false;
            }
        }
    }};
}

impl Schema {
    fn check(&self, id: NodeId, v: &Value, path: &Path, cx: &mut Ctx, collect: bool) -> bool {
        let n = &self.nodes[id];
        if let Some(b) = n.boolean {
            if !b && collect {
                cx.push(path, || "no value is allowed here".to_owned());
            }
            return b;
        }
        let collect = collect && !cx.full();
        if cx.depth >= MAX_DEPTH {
            if collect {
                cx.push(path, || {
                    format!("too deeply nested to validate (over {MAX_DEPTH} levels)")
                });
            }
            return false;
        }
        cx.depth += 1;
        let ok = self.check_node(id, v, path, cx, collect);
        cx.depth -= 1;
        ok
    }

    fn check_node(&self, id: NodeId, v: &Value, path: &Path, cx: &mut Ctx, collect: bool) -> bool {
        let n = &self.nodes[id];
        if n.types != 0 && !type_matches(n.types, v) {
            if collect {
                cx.push(path, || {
                    format!("expected {}, got {}", type_list(n.types), type_name(v))
                });
            }
            return false;
        }
        let mut ok = true;
        if let Some(c) = &n.const_ {
            if !json_eq(c, v) {
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    format!("expected {}, got {}", shown(c), shown(v))
                );
            }
        }
        if let Some(e) = &n.enum_ {
            if !e.iter().any(|x| json_eq(x, v)) {
                fail!(ok, cx, collect, path, enum_message(e, v));
            }
        }
        let typed = match v {
            Value::Number(x) => match &n.num {
                Some(r) => check_number(r, x, path, cx, collect),
                None => true,
            },
            Value::String(s) => match &n.string {
                Some(r) => self.check_string(r, s, path, cx, collect),
                None => true,
            },
            Value::Array(a) => match &n.array {
                Some(r) => self.check_array(id, r, a, path, cx, collect),
                None => true,
            },
            Value::Object(o) => match &n.object {
                Some(r) => self.check_object(id, r, v, o, path, cx, collect),
                None => true,
            },
            _ => true,
        };
        sub!(ok, collect, typed);
        if let Some(r) = n.ref_ {
            sub!(ok, collect, self.check(r, v, path, cx, collect));
        }
        for &s in &n.all_of {
            sub!(ok, collect, self.check(s, v, path, cx, collect));
        }
        if !n.any_of.is_empty() && !n.any_of.iter().any(|&s| self.check(s, v, path, cx, false)) {
            ok = false;
            if !collect {
                return false;
            }
            self.explain(&n.any_of, "anyOf", v, path, cx);
        }
        if !n.one_of.is_empty() {
            let before = std::mem::replace(&mut cx.uncertain, false);
            let mut hits = [0usize; 2];
            let mut count = 0;
            for (i, &s) in n.one_of.iter().enumerate() {
                if self.check(s, v, path, cx, false) {
                    hits[count] = i;
                    count += 1;
                    if count == 2 {
                        break;
                    }
                }
            }
            let unsure = cx.uncertain;
            cx.uncertain = unsure || before;
            if count == 0 {
                ok = false;
                if !collect {
                    return false;
                }
                self.explain(&n.one_of, "oneOf", v, path, cx);
            } else if count == 2 && !unsure {
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    format!(
                        "expected exactly one alternative (oneOf) to match, but alternatives {} \
                         and {} both do",
                        hits[0], hits[1]
                    )
                );
            }
        }
        if let Some(s) = n.not {
            let before = std::mem::replace(&mut cx.uncertain, false);
            let matched = self.check(s, v, path, cx, false);
            let unsure = cx.uncertain;
            cx.uncertain = unsure || before;
            if matched && !unsure {
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    "must not match the schema in \"not\"".to_owned()
                );
            }
        }
        if let Some(s) = n.if_ {
            let before = std::mem::replace(&mut cx.uncertain, false);
            let matched = self.check(s, v, path, cx, false);
            let unsure = cx.uncertain;
            cx.uncertain = unsure || before;
            if !unsure {
                if let Some(branch) = if matched { n.then_ } else { n.else_ } {
                    sub!(ok, collect, self.check(branch, v, path, cx, collect));
                }
            }
        }
        ok
    }

    /// Says why no alternative of `anyOf`/`oneOf` matched: a merged type mismatch when no
    /// alternative takes the value's type, the one alternative's own violations when only one
    /// does, and a plain sentence otherwise.
    fn explain(&self, alts: &[NodeId], keyword: &str, v: &Value, path: &Path, cx: &mut Ctx) {
        let mut merged = 0u8;
        let mut fitting = 0;
        let mut fit = None;
        for &a in alts {
            match self.declared_types(a) {
                Some(t) if !type_matches(t, v) => merged |= t,
                _ => {
                    fitting += 1;
                    fit = Some(a);
                }
            }
        }
        if fitting == 0 && merged != 0 {
            cx.push(path, || {
                format!("expected {}, got {}", type_list(merged), type_name(v))
            });
            return;
        }
        if let (1, Some(a)) = (fitting, fit) {
            let before = cx.out.len();
            self.check(a, v, path, cx, true);
            if cx.out.len() > before || cx.full() {
                return;
            }
        }
        cx.push(path, || {
            format!(
                "does not match any of the {} alternatives ({keyword})",
                alts.len()
            )
        });
    }

    /// The types a subschema declares (through `$ref`s); `None` when it declares none.
    fn declared_types(&self, mut id: NodeId) -> Option<u8> {
        for _ in 0..16 {
            let n = &self.nodes[id];
            match n.boolean {
                Some(false) => return Some(0),
                Some(true) => return None,
                None => {}
            }
            if n.types != 0 {
                return Some(n.types);
            }
            id = n.ref_?;
        }
        None
    }

    fn check_string(
        &self,
        r: &StringRules,
        s: &str,
        path: &Path,
        cx: &mut Ctx,
        collect: bool,
    ) -> bool {
        let mut ok = true;
        if let Some(min) = r.min_length {
            // A string has at most as many characters as bytes: count them only if needed.
            if (s.len() as u64) < min || (s.chars().count() as u64) < min {
                let got = s.chars().count();
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    format!(
                        "expected at least {min} character{}, got {got}",
                        plural(min)
                    )
                );
            }
        }
        if let Some(max) = r.max_length {
            if (s.len() as u64) > max && (s.chars().count() as u64) > max {
                let got = s.chars().count();
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    format!("expected at most {max} character{}, got {got}", plural(max))
                );
            }
        }
        if let Some(p) = r.pattern {
            if self.pattern_matches(p, s, cx) == Some(false) {
                let source = &self.patterns[p].source;
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    format!(
                        "expected a string matching the pattern {}, got {}",
                        shown_pattern(source),
                        shown_str(s)
                    )
                );
            }
        }
        ok
    }

    /// Whether pattern `p` matches `s`; `None` (and `cx.uncertain` set) when it cannot tell.
    fn pattern_matches(&self, p: usize, s: &str, cx: &mut Ctx) -> Option<bool> {
        let Some(re) = &self.patterns[p].regex else {
            cx.uncertain = true;
            return None;
        };
        let budget = REGEX_STEP_BUDGET.saturating_add(REGEX_STEPS_PER_CHAR * s.len() as u64);
        let found = re.is_match(s, budget);
        if found.is_none() {
            cx.uncertain = true;
            self.over_budget.fetch_add(1, AtomicOrdering::Relaxed);
            OVER_BUDGET_TOTAL.fetch_add(1, AtomicOrdering::Relaxed);
        }
        found
    }

    fn check_array(
        &self,
        id: NodeId,
        r: &ArrayRules,
        a: &[Value],
        path: &Path,
        cx: &mut Ctx,
        collect: bool,
    ) -> bool {
        let mut ok = true;
        let len = a.len() as u64;
        if let Some(min) = r.min_items {
            if len < min {
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    format!("expected at least {min} item{}, got {len}", plural(min))
                );
            }
        }
        if let Some(max) = r.max_items {
            if len > max {
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    format!("expected at most {max} item{}, got {len}", plural(max))
                );
            }
        }
        if r.unique {
            if let Some((i, j)) = first_duplicate(a) {
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    format!("expected unique items, but items {i} and {j} are equal")
                );
            }
        }
        let rest = if r.items.is_some() {
            r.items
        } else {
            r.additional_items
        };
        for (i, item) in a.iter().enumerate() {
            let sub = match r.prefix.get(i) {
                Some(&s) => s,
                None => match rest {
                    Some(s) => s,
                    None => break,
                },
            };
            let at = path.index(i);
            if i >= r.prefix.len() && self.nodes[sub].boolean == Some(false) {
                let allowed = r.prefix.len();
                fail!(
                    ok,
                    cx,
                    collect,
                    &at,
                    format!(
                        "unexpected item: at most {allowed} item{} allowed",
                        plural(allowed as u64)
                    )
                );
                continue;
            }
            sub!(ok, collect, self.check(sub, item, &at, cx, collect));
        }
        if let Some(c) = r.contains {
            let before = std::mem::replace(&mut cx.uncertain, false);
            let matches = a
                .iter()
                .filter(|item| self.check(c, item, path, cx, false))
                .count() as u64;
            let unsure = cx.uncertain;
            cx.uncertain = unsure || before;
            let min = r.min_contains.unwrap_or(1);
            if matches < min {
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    format!(
                        "expected at least {min} item{} matching the \"contains\" schema, got {matches}",
                        plural(min)
                    )
                );
            }
            if let Some(max) = r.max_contains {
                if matches > max && !unsure {
                    fail!(
                        ok,
                        cx,
                        collect,
                        path,
                        format!(
                            "expected at most {max} item{} matching the \"contains\" schema, got {matches}",
                            plural(max)
                        )
                    );
                }
            }
        }
        if let Some(u) = r.unevaluated {
            let mut marks = vec![false; a.len()];
            self.evaluated_items(id, a, &mut marks, cx);
            for (i, item) in a.iter().enumerate() {
                if marks[i] {
                    continue;
                }
                let at = path.index(i);
                if self.nodes[u].boolean == Some(false) {
                    fail!(ok, cx, collect, &at, "unexpected item".to_owned());
                    continue;
                }
                sub!(ok, collect, self.check(u, item, &at, cx, collect));
            }
        }
        ok
    }

    #[allow(clippy::too_many_arguments)]
    fn check_object(
        &self,
        id: NodeId,
        r: &ObjectRules,
        v: &Value,
        o: &Map<String, Value>,
        path: &Path,
        cx: &mut Ctx,
        collect: bool,
    ) -> bool {
        let mut ok = true;
        for name in &r.required {
            if !o.contains_key(name) {
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    format!("missing required property {}", quoted(name))
                );
            }
        }
        let len = o.len() as u64;
        if let Some(min) = r.min_properties {
            if len < min {
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    format!(
                        "expected at least {min} propert{}, got {len}",
                        if min == 1 { "y" } else { "ies" }
                    )
                );
            }
        }
        if let Some(max) = r.max_properties {
            if len > max {
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    format!(
                        "expected at most {max} propert{}, got {len}",
                        if max == 1 { "y" } else { "ies" }
                    )
                );
            }
        }
        for (name, needs) in &r.dependent_required {
            if o.contains_key(name) {
                for need in needs {
                    if !o.contains_key(need) {
                        fail!(
                            ok,
                            cx,
                            collect,
                            path,
                            format!(
                                "missing property {}, required when {} is present",
                                quoted(need),
                                quoted(name)
                            )
                        );
                    }
                }
            }
        }
        for (name, s) in &r.properties {
            if let Some(value) = o.get(name) {
                sub!(
                    ok,
                    collect,
                    self.check(*s, value, &path.key(name), cx, collect)
                );
            }
        }
        for &(p, s) in &r.patterns {
            for (k, value) in o {
                if self.pattern_matches(p, k, cx) == Some(true) {
                    sub!(ok, collect, self.check(s, value, &path.key(k), cx, collect));
                }
            }
        }
        if let Some(extra) = r.additional {
            for (k, value) in o {
                if r.has_property(k) {
                    continue;
                }
                // A name an unchecked pattern might match is let pass.
                if r.patterns
                    .iter()
                    .any(|&(p, _)| self.pattern_matches(p, k, cx) != Some(false))
                {
                    continue;
                }
                let at = path.key(k);
                if self.nodes[extra].boolean == Some(false) {
                    fail!(ok, cx, collect, &at, self.unexpected_property(r));
                    continue;
                }
                sub!(ok, collect, self.check(extra, value, &at, cx, collect));
            }
        }
        for (name, s) in &r.dependent_schemas {
            if o.contains_key(name) {
                sub!(ok, collect, self.check(*s, v, path, cx, collect));
            }
        }
        if let Some(names) = r.names {
            for k in o.keys() {
                let key = Value::String(k.clone());
                let at = path.key(k);
                let before = cx.out.len();
                sub!(ok, collect, self.check(names, &key, &at, cx, collect));
                for violation in &mut cx.out[before..] {
                    violation.message = format!("property name: {}", violation.message);
                }
            }
        }
        if let Some(u) = r.unevaluated {
            let mut marks = vec![false; o.len()];
            self.evaluated_properties(id, o, &mut marks, cx);
            for (i, (k, value)) in o.iter().enumerate() {
                if marks[i] {
                    continue;
                }
                let at = path.key(k);
                if self.nodes[u].boolean == Some(false) {
                    fail!(ok, cx, collect, &at, "unexpected property".to_owned());
                    continue;
                }
                sub!(ok, collect, self.check(u, value, &at, cx, collect));
            }
        }
        ok
    }

    fn unexpected_property(&self, r: &ObjectRules) -> String {
        const SHOWN: usize = 12;
        if r.properties.is_empty() {
            return if r.patterns.is_empty() {
                "unexpected property: this object takes no properties".to_owned()
            } else {
                format!("unexpected property (allowed: {})", self.pattern_names(r))
            };
        }
        let mut list = String::new();
        for (i, (name, _)) in r.properties.iter().take(SHOWN).enumerate() {
            if i > 0 {
                list.push_str(", ");
            }
            list.push_str(&crate::untrusted::shortened(name, 40).to_string());
        }
        if r.properties.len() > SHOWN {
            list.push_str(&format!(" and {} more", r.properties.len() - SHOWN));
        }
        if !r.patterns.is_empty() {
            list.push_str(", ");
            list.push_str(&self.pattern_names(r));
        }
        format!("unexpected property (allowed: {list})")
    }

    fn pattern_names(&self, r: &ObjectRules) -> String {
        let patterns: Vec<String> = r
            .patterns
            .iter()
            .map(|&(p, _)| shown_pattern(&self.patterns[p].source))
            .collect();
        format!("names matching {}", patterns.join(" or "))
    }

    /// Marks the properties of `o` that node `id` evaluates (for `unevaluatedProperties`), as
    /// the `jsonschema` package reads it.
    fn evaluated_properties(
        &self,
        id: NodeId,
        o: &Map<String, Value>,
        marks: &mut [bool],
        cx: &mut Ctx,
    ) {
        let n = &self.nodes[id];
        if n.boolean.is_some() || cx.depth >= MAX_DEPTH {
            return;
        }
        cx.depth += 1;
        let v_check =
            |s: NodeId, value: &Value, cx: &mut Ctx| self.check(s, value, &Path::ROOT, cx, false);
        if let Some(r) = n.ref_ {
            self.evaluated_properties(r, o, marks, cx);
        }
        if let Some(r) = &n.object {
            for (i, k) in o.keys().enumerate() {
                if r.has_property(k) {
                    marks[i] = true;
                }
            }
            for s in [r.additional, r.unevaluated].into_iter().flatten() {
                for (i, value) in o.values().enumerate() {
                    if !marks[i] && v_check(s, value, cx) {
                        marks[i] = true;
                    }
                }
            }
            for &(p, _) in &r.patterns {
                for (i, k) in o.keys().enumerate() {
                    if !marks[i] && self.pattern_matches(p, k, cx) != Some(false) {
                        marks[i] = true;
                    }
                }
            }
            for (name, s) in &r.dependent_schemas {
                if o.contains_key(name) {
                    self.evaluated_properties(*s, o, marks, cx);
                }
            }
        }
        for &s in n.all_of.iter().chain(&n.one_of).chain(&n.any_of) {
            if self.check_map(s, o, cx) {
                self.evaluated_properties(s, o, marks, cx);
            }
        }
        if let Some(i) = n.if_ {
            if self.check_map(i, o, cx) {
                self.evaluated_properties(i, o, marks, cx);
                if let Some(t) = n.then_ {
                    self.evaluated_properties(t, o, marks, cx);
                }
            } else if let Some(e) = n.else_ {
                self.evaluated_properties(e, o, marks, cx);
            }
        }
        cx.depth -= 1;
    }

    /// Whether node `s` accepts the object `o` (a copy is made to get a `Value`: this is the rare
    /// `unevaluatedProperties` path).
    fn check_map(&self, s: NodeId, o: &Map<String, Value>, cx: &mut Ctx) -> bool {
        let whole = Value::Object(o.clone());
        self.check(s, &whole, &Path::ROOT, cx, false)
    }

    /// Marks the items of `a` that node `id` evaluates (for `unevaluatedItems`), as the
    /// `jsonschema` package reads it.
    fn evaluated_items(&self, id: NodeId, a: &[Value], marks: &mut [bool], cx: &mut Ctx) {
        let n = &self.nodes[id];
        if n.boolean.is_some() || cx.depth >= MAX_DEPTH {
            return;
        }
        if matches!(&n.array, Some(r) if r.has_items) {
            marks.iter_mut().for_each(|m| *m = true);
            return;
        }
        cx.depth += 1;
        if let Some(r) = n.ref_ {
            self.evaluated_items(r, a, marks, cx);
        }
        if let Some(r) = &n.array {
            for m in marks.iter_mut().take(r.prefix.len()) {
                *m = true;
            }
            for s in [r.contains, r.unevaluated].into_iter().flatten() {
                for (i, item) in a.iter().enumerate() {
                    if !marks[i] && self.check(s, item, &Path::ROOT, cx, false) {
                        marks[i] = true;
                    }
                }
            }
        }
        let whole = || Value::Array(a.to_vec());
        if let Some(i) = n.if_ {
            if self.check(i, &whole(), &Path::ROOT, cx, false) {
                self.evaluated_items(i, a, marks, cx);
                if let Some(t) = n.then_ {
                    self.evaluated_items(t, a, marks, cx);
                }
            } else if let Some(e) = n.else_ {
                self.evaluated_items(e, a, marks, cx);
            }
        }
        for &s in n.all_of.iter().chain(&n.one_of).chain(&n.any_of) {
            if self.check(s, &whole(), &Path::ROOT, cx, false) {
                self.evaluated_items(s, a, marks, cx);
            }
        }
        cx.depth -= 1;
    }
}

fn check_number(r: &NumRules, x: &Number, path: &Path, cx: &mut Ctx, collect: bool) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let mut ok = true;
    let x = Num::of(x);
    // Each bound, the orderings of the instance against it that break it, and the comparison
    // the message asks for.
    let bounds = [
        (r.minimum, [Less, Less], ">="),
        (r.maximum, [Greater, Greater], "<="),
        (r.exclusive_minimum, [Less, Equal], ">"),
        (r.exclusive_maximum, [Greater, Equal], "<"),
    ];
    for (bound, breaking, op) in bounds {
        if let Some(m) = bound {
            if breaking.contains(&x.cmp(m)) {
                fail!(
                    ok,
                    cx,
                    collect,
                    path,
                    format!("expected a number {op} {m}, got {x}")
                );
            }
        }
    }
    if let Some(d) = r.multiple_of {
        if !is_multiple(x, d) {
            fail!(
                ok,
                cx,
                collect,
                path,
                format!("expected a multiple of {d}, got {x}")
            );
        }
    }
    ok
}

/// `multipleOf` as the `jsonschema` package computes it: a float divisor divides in floating
/// point (exactly when that overflows), an integer one takes the remainder.
fn is_multiple(x: Num, d: Num) -> bool {
    match (x, d) {
        (Num::Int(a), Num::Int(b)) => b == 0 || a % b == 0,
        (Num::Float(a), Num::Int(b)) => a % (b as f64) == 0.0,
        (_, Num::Float(b)) => {
            let q = x.as_f64() / b;
            if q.is_finite() {
                q.fract() == 0.0
            } else {
                exact_multiple(x, b)
            }
        }
    }
}

/// Whether `x / d` is an integer, exactly (both are dyadic rationals).
fn exact_multiple(x: Num, d: f64) -> bool {
    fn parts(f: f64) -> (u64, i32) {
        // f = m * 2^e with m odd (f finite and non-zero).
        let bits = f.abs().to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32;
        let frac = bits & ((1u64 << 52) - 1);
        let (mut m, mut e) = if exp == 0 {
            (frac, -1074)
        } else {
            (frac | (1u64 << 52), exp - 1075)
        };
        while m != 0 && m % 2 == 0 {
            m /= 2;
            e += 1;
        }
        (m, e)
    }
    if d == 0.0 || !d.is_finite() {
        return false;
    }
    if x.as_f64() == 0.0 {
        return true;
    }
    let (xm, xe) = match x {
        Num::Int(i) => {
            let mut m = i.unsigned_abs();
            let mut e = 0;
            while m % 2 == 0 {
                m /= 2;
                e += 1;
            }
            (m, e)
        }
        Num::Float(f) => {
            let (m, e) = parts(f);
            (m as u128, e)
        }
    };
    let (dm, de) = parts(d);
    xe >= de && xm % (dm as u128) == 0
}

fn type_matches(types: u8, v: &Value) -> bool {
    let bit = match v {
        Value::Null => T_NULL,
        Value::Bool(_) => T_BOOLEAN,
        Value::Number(n) => {
            if types & T_NUMBER != 0 {
                return true;
            }
            if types & T_INTEGER != 0 {
                return n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0);
            }
            return false;
        }
        Value::String(_) => T_STRING,
        Value::Array(_) => T_ARRAY,
        Value::Object(_) => T_OBJECT,
    };
    types & bit != 0
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `string`, `string or null`, `string, number or null`.
fn type_list(types: u8) -> String {
    let mut types = types;
    if types & T_NUMBER != 0 {
        types &= !T_INTEGER;
    }
    let names: Vec<&str> = TYPE_NAMES
        .iter()
        .filter(|(bit, _)| types & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    match names.split_last() {
        None => "nothing".to_owned(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn enum_message(options: &[Value], v: &Value) -> String {
    const SHOWN: usize = 10;
    let mut list = String::new();
    for (i, o) in options.iter().take(SHOWN).enumerate() {
        if i > 0 {
            list.push_str(", ");
        }
        list.push_str(&shown(o));
    }
    if options.len() > SHOWN {
        list.push_str(&format!(" and {} more", options.len() - SHOWN));
    }
    match options.len() {
        0 => format!("no value is allowed here (empty enum), got {}", shown(v)),
        1 => format!("expected {list}, got {}", shown(v)),
        _ => format!("expected one of {list}, got {}", shown(v)),
    }
}

/// Longest rendering of a value in a message, in characters.
const SHOWN_CHARS: usize = 60;

/// A value as compact JSON, cut to [`SHOWN_CHARS`] characters.
fn shown(v: &Value) -> String {
    let text = match v {
        Value::String(s) => return shown_str(s),
        _ => v.to_string(),
    };
    cut(text)
}

fn shown_str(s: &str) -> String {
    if s.len() > SHOWN_CHARS * 4 {
        let head: String = s.chars().take(SHOWN_CHARS).collect();
        return cut(quoted(&head) + "...");
    }
    cut(quoted(s))
}

fn cut(text: String) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

/// A pattern as a regular expression literal: `/^[a-z]+$/`.
fn shown_pattern(source: &str) -> String {
    format!("/{}/", crate::untrusted::shortened(source, SHOWN_CHARS))
}

/// `s` as a JSON string literal.
fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// JSON equality, numbers by value, `true` never equal to `1`.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Num::of(x).cmp(Num::of(y)).is_eq(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| json_eq(p, q)))
        }
        _ => a == b,
    }
}

/// The first pair of equal items (the smallest second index, then the smallest first).
fn first_duplicate(a: &[Value]) -> Option<(usize, usize)> {
    if a.len() <= 32 {
        for j in 1..a.len() {
            for i in 0..j {
                if json_eq(&a[i], &a[j]) {
                    return Some((i, j));
                }
            }
        }
        return None;
    }
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(a.len());
    for (j, item) in a.iter().enumerate() {
        let mut key = String::new();
        canonical(item, &mut key);
        if let Some(&i) = seen.get(&key) {
            return Some((i, j));
        }
        seen.insert(key, j);
    }
    None
}

/// A text equal for exactly the values [`json_eq`] finds equal.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Number(n) => match Num::of(n) {
            Num::Int(i) => out.push_str(&i.to_string()),
            Num::Float(f) if f.fract() == 0.0 && f.abs() < 1.0e38 => {
                out.push_str(&(f as i128).to_string())
            }
            Num::Float(f) => out.push_str(&Num::Float(f).to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for item in items {
                canonical(item, out);
                out.push(',');
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for k in keys {
                out.push_str(&quoted(k));
                out.push(':');
                canonical(&map[k], out);
                out.push(',');
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

// --- regular expressions -----------------------------------------------------------------------

/// The ECMA-262 subset described in the module doc, matched by a Thompson NFA simulation.
mod regex {
    use super::REGEX_MAX_INSTRUCTIONS;

    /// Deepest nesting of groups a pattern may have.
    const MAX_GROUP_DEPTH: u32 = 64;

    #[derive(Clone, Copy, Debug)]
    enum Look {
        Start,
        End,
        WordBoundary,
        NotWordBoundary,
    }

    #[derive(Clone, Copy, Debug)]
    enum Inst {
        Char(u32),
        Class(u32),
        Split(u32, u32),
        Jmp(u32),
        Look(Look),
        Match,
    }

    enum Ast {
        Empty,
        Char(u32),
        Class(Vec<(u32, u32)>),
        Look(Look),
        Concat(Vec<Ast>),
        Alt(Vec<Ast>),
        Repeat(Box<Ast>, u32, Option<u32>),
    }

    /// A compiled pattern.
    pub(super) struct Regex {
        insts: Vec<Inst>,
        classes: Vec<Class>,
        /// The pattern starts with `^`: only position 0 can start a match.
        anchored: bool,
    }

    impl Regex {
        /// Compiles `pattern`; the error says what is unsupported or invalid.
        pub(super) fn new(pattern: &str) -> Result<Regex, String> {
            let mut p = Parser {
                chars: pattern.chars().collect(),
                pos: 0,
                depth: 0,
            };
            let ast = p.alternation()?;
            if p.pos < p.chars.len() {
                return Err("unbalanced parenthesis".to_owned());
            }
            let mut c = Emitter {
                insts: Vec::new(),
                classes: Vec::new(),
            };
            c.emit(&ast)?;
            c.push(Inst::Match)?;
            let anchored = matches!(c.insts.first(), Some(Inst::Look(Look::Start)));
            Ok(Regex {
                insts: c.insts,
                classes: c
                    .classes
                    .into_iter()
                    .map(|ranges| Class {
                        ascii: ascii_bits(&ranges),
                        ranges,
                    })
                    .collect(),
                anchored,
            })
        }

        /// Whether the pattern matches anywhere in `s`; `None` when that takes more than
        /// `budget` steps.
        pub(super) fn is_match(&self, s: &str, budget: u64) -> Option<bool> {
            let n = self.insts.len();
            if n <= SMALL {
                // Every pattern seen in real schemas: no allocation.
                let mut stack = SmallStack {
                    items: [0; 2 * SMALL + 2],
                    len: 0,
                };
                self.run(s, budget, &mut 0u128, &mut 0u128, &mut stack)
            } else {
                let mut stack = Vec::with_capacity(2 * n + 2);
                let (mut cur, mut next) = (SparseSet::new(n), SparseSet::new(n));
                self.run(s, budget, &mut cur, &mut next, &mut stack)
            }
        }

        fn run<T: Threads, S: Stack>(
            &self,
            s: &str,
            budget: u64,
            cur: &mut T,
            next: &mut T,
            stack: &mut S,
        ) -> Option<bool> {
            let mut budget = budget;
            let (mut cur, mut next) = (cur, next);
            let mut chars = s.chars();
            let mut prev: Option<char> = None;
            let mut ch = chars.next();
            let mut started = false;
            loop {
                if !(self.anchored && started)
                    && self.add(&mut *cur, stack, 0, prev, ch, &mut budget)?
                {
                    return Some(true);
                }
                let Some(c) = ch else {
                    return Some(false);
                };
                if cur.is_empty() && self.anchored {
                    return Some(false);
                }
                let nch = chars.next();
                next.clear();
                // The order threads step in cannot change whether the pattern matches.
                while let Some(pc) = cur.pop() {
                    let pc = pc as usize;
                    budget = budget.checked_sub(1)?;
                    let hit = match self.insts[pc] {
                        Inst::Char(x) => x == c as u32,
                        Inst::Class(k) => self.classes[k as usize].has(c as u32),
                        _ => false,
                    };
                    if hit && self.add(&mut *next, stack, pc + 1, Some(c), nch, &mut budget)? {
                        return Some(true);
                    }
                }
                std::mem::swap(&mut cur, &mut next);
                started = true;
                prev = Some(c);
                ch = nch;
            }
        }

        /// Adds the thread at `pc` and everything reachable from it without reading a
        /// character; `Some(true)` when that reaches the end of the pattern.
        fn add<T: Threads, S: Stack>(
            &self,
            set: &mut T,
            stack: &mut S,
            pc: usize,
            prev: Option<char>,
            next: Option<char>,
            budget: &mut u64,
        ) -> Option<bool> {
            stack.clear();
            stack.push(pc as u32);
            while let Some(pc) = stack.pop() {
                if !set.insert(pc) {
                    continue;
                }
                *budget = budget.checked_sub(1)?;
                match self.insts[pc as usize] {
                    Inst::Match => return Some(true),
                    Inst::Jmp(t) => stack.push(t),
                    Inst::Split(a, b) => {
                        stack.push(b);
                        stack.push(a);
                    }
                    Inst::Look(look) => {
                        let holds = match look {
                            Look::Start => prev.is_none(),
                            Look::End => next.is_none(),
                            Look::WordBoundary => is_word(prev) != is_word(next),
                            Look::NotWordBoundary => is_word(prev) == is_word(next),
                        };
                        if holds {
                            stack.push(pc + 1);
                        }
                    }
                    Inst::Char(_) | Inst::Class(_) => {}
                }
            }
            Some(false)
        }
    }

    fn is_word(c: Option<char>) -> bool {
        c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    /// A character class: sorted, disjoint ranges, and its ASCII part as bits.
    struct Class {
        ascii: u128,
        ranges: Vec<(u32, u32)>,
    }

    impl Class {
        fn has(&self, c: u32) -> bool {
            if c < 128 {
                self.ascii & (1u128 << c) != 0
            } else {
                class_has(&self.ranges, c)
            }
        }
    }

    fn ascii_bits(ranges: &[(u32, u32)]) -> u128 {
        (0..128u32)
            .filter(|&c| class_has(ranges, c))
            .fold(0, |bits, c| bits | 1u128 << c)
    }

    fn class_has(ranges: &[(u32, u32)], c: u32) -> bool {
        ranges
            .binary_search_by(|&(lo, hi)| {
                if hi < c {
                    std::cmp::Ordering::Less
                } else if lo > c {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }

    /// Largest program run with a bitset ([`u128`]) and a stack array.
    const SMALL: usize = 128;

    /// The threads alive at one position: a set of instruction indexes.
    trait Threads {
        /// Adds `x`; false when it was there already.
        fn insert(&mut self, x: u32) -> bool;
        fn clear(&mut self);
        fn is_empty(&self) -> bool;
        /// Takes out some member (the set is drained as the threads step).
        fn pop(&mut self) -> Option<u32>;
    }

    impl Threads for u128 {
        fn insert(&mut self, x: u32) -> bool {
            let bit = 1u128 << x;
            let fresh = *self & bit == 0;
            *self |= bit;
            fresh
        }

        fn clear(&mut self) {
            *self = 0;
        }

        fn is_empty(&self) -> bool {
            *self == 0
        }

        fn pop(&mut self) -> Option<u32> {
            if *self == 0 {
                return None;
            }
            let x = self.trailing_zeros();
            *self &= *self - 1;
            Some(x)
        }
    }

    impl Threads for SparseSet {
        fn insert(&mut self, x: u32) -> bool {
            SparseSet::insert(self, x)
        }

        fn clear(&mut self) {
            self.len = 0;
        }

        fn is_empty(&self) -> bool {
            self.len == 0
        }

        fn pop(&mut self) -> Option<u32> {
            self.len = self.len.checked_sub(1)?;
            Some(self.dense[self.len])
        }
    }

    /// The closure's work list.
    trait Stack {
        fn clear(&mut self);
        fn push(&mut self, x: u32);
        fn pop(&mut self) -> Option<u32>;
    }

    impl Stack for Vec<u32> {
        fn clear(&mut self) {
            Vec::clear(self)
        }

        fn push(&mut self, x: u32) {
            Vec::push(self, x)
        }

        fn pop(&mut self) -> Option<u32> {
            Vec::pop(self)
        }
    }

    /// A stack in an array: a closure pushes each instruction at most once per incoming edge
    /// (two at most per instruction), so `2 * SMALL + 2` is enough.
    struct SmallStack {
        items: [u32; 2 * SMALL + 2],
        len: usize,
    }

    impl Stack for SmallStack {
        fn clear(&mut self) {
            self.len = 0;
        }

        fn push(&mut self, x: u32) {
            self.items[self.len] = x;
            self.len += 1;
        }

        fn pop(&mut self) -> Option<u32> {
            self.len = self.len.checked_sub(1)?;
            Some(self.items[self.len])
        }
    }

    /// A set of instruction indexes with O(1) insert, test and clear.
    struct SparseSet {
        dense: Vec<u32>,
        sparse: Vec<u32>,
        len: usize,
    }

    impl SparseSet {
        fn new(n: usize) -> SparseSet {
            SparseSet {
                dense: vec![0; n],
                sparse: vec![0; n],
                len: 0,
            }
        }

        fn insert(&mut self, x: u32) -> bool {
            let i = self.sparse[x as usize] as usize;
            if i < self.len && self.dense[i] == x {
                return false;
            }
            self.dense[self.len] = x;
            self.sparse[x as usize] = self.len as u32;
            self.len += 1;
            true
        }
    }

    // --- parsing -------------------------------------------------------------------------------

    const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
    const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)];
    /// ECMA-262 WhiteSpace and LineTerminator.
    const SPACE: &[(u32, u32)] = &[
        (0x09, 0x0d),
        (0x20, 0x20),
        (0xa0, 0xa0),
        (0x1680, 0x1680),
        (0x2000, 0x200a),
        (0x2028, 0x2029),
        (0x202f, 0x202f),
        (0x205f, 0x205f),
        (0x3000, 0x3000),
        (0xfeff, 0xfeff),
    ];
    const LINE_TERMINATORS: &[(u32, u32)] = &[(0x0a, 0x0a), (0x0d, 0x0d), (0x2028, 0x2029)];
    const MAX_CHAR: u32 = 0x10ffff;

    fn normalize(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
        ranges.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        out
    }

    fn complement(ranges: &[(u32, u32)]) -> Vec<(u32, u32)> {
        let mut out = Vec::with_capacity(ranges.len() + 1);
        let mut next = 0u32;
        for &(lo, hi) in ranges {
            if lo > next {
                out.push((next, lo - 1));
            }
            next = hi.saturating_add(1);
        }
        if next <= MAX_CHAR {
            out.push((next, MAX_CHAR));
        }
        out
    }

    enum ClassAtom {
        Char(u32),
        Set(Vec<(u32, u32)>),
    }

    struct Parser {
        chars: Vec<char>,
        pos: usize,
        depth: u32,
    }

    impl Parser {
        fn peek(&self) -> Option<char> {
            self.chars.get(self.pos).copied()
        }

        fn peek_at(&self, ahead: usize) -> Option<char> {
            self.chars.get(self.pos + ahead).copied()
        }

        fn eat(&mut self, c: char) -> bool {
            if self.peek() == Some(c) {
                self.pos += 1;
                true
            } else {
                false
            }
        }

        fn bump(&mut self) -> Result<char, String> {
            let c = self.peek().ok_or("unexpected end of pattern")?;
            self.pos += 1;
            Ok(c)
        }

        fn alternation(&mut self) -> Result<Ast, String> {
            let mut alts = vec![self.sequence()?];
            while self.eat('|') {
                alts.push(self.sequence()?);
            }
            Ok(if alts.len() == 1 {
                alts.pop().unwrap_or(Ast::Empty)
            } else {
                Ast::Alt(alts)
            })
        }

        fn sequence(&mut self) -> Result<Ast, String> {
            let mut items = Vec::new();
            while let Some(c) = self.peek() {
                if c == '|' || c == ')' {
                    break;
                }
                let (atom, quantifiable) = self.atom()?;
                match self.quantifier()? {
                    Some((min, max)) => {
                        if !quantifiable {
                            return Err("nothing to repeat".to_owned());
                        }
                        if self.quantifier_follows() {
                            return Err("nothing to repeat".to_owned());
                        }
                        items.push(Ast::Repeat(Box::new(atom), min, max));
                    }
                    None => items.push(atom),
                }
            }
            Ok(match items.len() {
                0 => Ast::Empty,
                1 => items.pop().unwrap_or(Ast::Empty),
                _ => Ast::Concat(items),
            })
        }

        /// Whether a quantifier starts here (after one was read: `a**` is an error).
        fn quantifier_follows(&self) -> bool {
            match self.peek() {
                Some('*' | '+' | '?') => true,
                Some('{') => self.counted_at(self.pos).is_some(),
                _ => false,
            }
        }

        /// One atom and whether a quantifier may follow it.
        fn atom(&mut self) -> Result<(Ast, bool), String> {
            let c = self.bump()?;
            Ok(match c {
                '^' => (Ast::Look(Look::Start), false),
                '$' => (Ast::Look(Look::End), false),
                '.' => (Ast::Class(complement(LINE_TERMINATORS)), true),
                '[' => (Ast::Class(self.class()?), true),
                '(' => (self.group()?, true),
                ')' => return Err("unbalanced parenthesis".to_owned()),
                '*' | '+' | '?' => return Err("nothing to repeat".to_owned()),
                '{' if self.counted_at(self.pos - 1).is_some() => {
                    return Err("nothing to repeat".to_owned())
                }
                '\\' => match self.bump()? {
                    'b' => (Ast::Look(Look::WordBoundary), false),
                    'B' => (Ast::Look(Look::NotWordBoundary), false),
                    e => match self.class_escape(e)? {
                        Some(set) => (Ast::Class(set), true),
                        None => (Ast::Char(self.char_escape(e)?), true),
                    },
                },
                c => (Ast::Char(c as u32), true),
            })
        }

        fn group(&mut self) -> Result<Ast, String> {
            if self.eat('?') {
                match self.bump()? {
                    ':' => {}
                    '=' | '!' => return Err("lookahead is not supported".to_owned()),
                    '<' if matches!(self.peek(), Some('=' | '!')) => {
                        return Err("lookbehind is not supported".to_owned())
                    }
                    '<' => return Err("named groups are not supported".to_owned()),
                    _ => {
                        return Err(
                            "inline flags and (?...) extensions are not supported".to_owned()
                        )
                    }
                }
            }
            self.depth += 1;
            if self.depth > MAX_GROUP_DEPTH {
                return Err("groups nested too deeply".to_owned());
            }
            let inner = self.alternation()?;
            self.depth -= 1;
            if !self.eat(')') {
                return Err("missing )".to_owned());
            }
            Ok(inner)
        }

        /// `{n}`, `{n,}` or `{n,m}` starting at `at` (the `{`): (min, max, length).
        fn counted_at(&self, at: usize) -> Option<(u32, Option<u32>, usize)> {
            let mut i = at + 1;
            let number = |i: &mut usize| -> Option<u32> {
                let start = *i;
                let mut n: u32 = 0;
                while let Some(d) = self.chars.get(*i).and_then(|c| c.to_digit(10)) {
                    n = n.saturating_mul(10).saturating_add(d);
                    *i += 1;
                }
                (*i > start).then_some(n)
            };
            if self.chars.get(at) != Some(&'{') {
                return None;
            }
            let min = number(&mut i)?;
            let max = if self.chars.get(i) == Some(&',') {
                i += 1;
                if self.chars.get(i) == Some(&'}') {
                    None
                } else {
                    Some(number(&mut i)?)
                }
            } else {
                Some(min)
            };
            (self.chars.get(i) == Some(&'}')).then_some((min, max, i + 1 - at))
        }

        fn quantifier(&mut self) -> Result<Option<(u32, Option<u32>)>, String> {
            let q = match self.peek() {
                Some('*') => {
                    self.pos += 1;
                    (0, None)
                }
                Some('+') => {
                    self.pos += 1;
                    (1, None)
                }
                Some('?') => {
                    self.pos += 1;
                    (0, Some(1))
                }
                Some('{') => match self.counted_at(self.pos) {
                    Some((min, max, len)) => {
                        if max.is_some_and(|m| m < min) {
                            return Err("numbers out of order in {} quantifier".to_owned());
                        }
                        self.pos += len;
                        (min, max)
                    }
                    None => return Ok(None),
                },
                _ => return Ok(None),
            };
            // Lazy or greedy makes no difference to whether a pattern matches.
            self.eat('?');
            Ok(Some(q))
        }

        /// `\d \D \w \W \s \S` as a set; `None` for other escapes.
        fn class_escape(&self, e: char) -> Result<Option<Vec<(u32, u32)>>, String> {
            Ok(Some(match e {
                'd' => DIGIT.to_vec(),
                'D' => complement(DIGIT),
                'w' => WORD.to_vec(),
                'W' => complement(WORD),
                's' => SPACE.to_vec(),
                'S' => complement(SPACE),
                _ => return Ok(None),
            }))
        }

        /// The character an escape (after the `\`) stands for.
        fn char_escape(&mut self, e: char) -> Result<u32, String> {
            Ok(match e {
                't' => 0x09,
                'n' => 0x0a,
                'v' => 0x0b,
                'f' => 0x0c,
                'r' => 0x0d,
                '0' if !self.peek().is_some_and(|c| c.is_ascii_digit()) => 0,
                '0' => return Err("octal escapes are not supported".to_owned()),
                '1'..='9' => return Err("backreferences are not supported".to_owned()),
                'c' => match self.peek() {
                    Some(l) if l.is_ascii_alphabetic() => {
                        self.pos += 1;
                        l as u32 % 32
                    }
                    _ => return Err("\\c must be followed by a letter".to_owned()),
                },
                'x' => self.hex(2)?,
                'u' => {
                    if self.peek() == Some('{') {
                        return Err("\\u{...} escapes are not supported".to_owned());
                    }
                    let hi = self.hex(4)?;
                    if (0xd800..0xdc00).contains(&hi)
                        && self.peek() == Some('\\')
                        && self.peek_at(1) == Some('u')
                    {
                        let save = self.pos;
                        self.pos += 2;
                        match self.hex(4) {
                            Ok(lo) if (0xdc00..0xe000).contains(&lo) => {
                                return Ok(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                            }
                            _ => self.pos = save,
                        }
                    }
                    if (0xd800..0xe000).contains(&hi) {
                        return Err("lone surrogate escapes are not supported".to_owned());
                    }
                    hi
                }
                'p' | 'P' => return Err("Unicode property escapes are not supported".to_owned()),
                'k' => return Err("named backreferences are not supported".to_owned()),
                c if c.is_ascii_alphanumeric() => {
                    return Err(format!("the escape \\{c} is not supported"))
                }
                c => c as u32,
            })
        }

        fn hex(&mut self, digits: usize) -> Result<u32, String> {
            let mut v = 0;
            for _ in 0..digits {
                let d = self
                    .peek()
                    .and_then(|c| c.to_digit(16))
                    .ok_or("malformed hexadecimal escape")?;
                v = v * 16 + d;
                self.pos += 1;
            }
            Ok(v)
        }

        /// A character class, after its `[`.
        fn class(&mut self) -> Result<Vec<(u32, u32)>, String> {
            let negated = self.eat('^');
            let mut ranges = Vec::new();
            loop {
                let c = self
                    .bump()
                    .map_err(|_| "unterminated character class".to_owned())?;
                if c == ']' {
                    break;
                }
                let lo = self.class_atom(c)?;
                if self.peek() == Some('-') && !matches!(self.peek_at(1), Some(']') | None) {
                    self.pos += 1;
                    let c2 = self.bump()?;
                    let hi = self.class_atom(c2)?;
                    match (lo, hi) {
                        (ClassAtom::Char(a), ClassAtom::Char(b)) => {
                            if a > b {
                                return Err("range out of order in character class".to_owned());
                            }
                            ranges.push((a, b));
                        }
                        _ => {
                            return Err("a class escape cannot bound a range".to_owned());
                        }
                    }
                } else {
                    match lo {
                        ClassAtom::Char(a) => ranges.push((a, a)),
                        ClassAtom::Set(set) => ranges.extend(set),
                    }
                }
            }
            let ranges = normalize(ranges);
            Ok(if negated { complement(&ranges) } else { ranges })
        }

        fn class_atom(&mut self, c: char) -> Result<ClassAtom, String> {
            if c != '\\' {
                return Ok(ClassAtom::Char(c as u32));
            }
            let e = self.bump()?;
            if let Some(set) = self.class_escape(e)? {
                return Ok(ClassAtom::Set(set));
            }
            Ok(ClassAtom::Char(match e {
                'b' => 0x08,
                '-' => '-' as u32,
                'B' => return Err("\\B inside a class is not supported".to_owned()),
                e => self.char_escape(e)?,
            }))
        }
    }

    // --- compiling -----------------------------------------------------------------------------

    struct Emitter {
        insts: Vec<Inst>,
        classes: Vec<Vec<(u32, u32)>>,
    }

    impl Emitter {
        fn push(&mut self, inst: Inst) -> Result<usize, String> {
            if self.insts.len() >= REGEX_MAX_INSTRUCTIONS {
                return Err(format!(
                    "the pattern is too large (over {REGEX_MAX_INSTRUCTIONS} instructions once \
                     its repetitions are expanded)"
                ));
            }
            self.insts.push(inst);
            Ok(self.insts.len() - 1)
        }

        fn here(&self) -> u32 {
            self.insts.len() as u32
        }

        fn emit(&mut self, ast: &Ast) -> Result<(), String> {
            match ast {
                Ast::Empty => {}
                Ast::Char(c) => {
                    self.push(Inst::Char(*c))?;
                }
                Ast::Class(ranges) => {
                    let k = match self.classes.iter().position(|r| r == ranges) {
                        Some(k) => k,
                        None => {
                            self.classes.push(ranges.clone());
                            self.classes.len() - 1
                        }
                    };
                    self.push(Inst::Class(k as u32))?;
                }
                Ast::Look(l) => {
                    self.push(Inst::Look(*l))?;
                }
                Ast::Concat(items) => {
                    for item in items {
                        self.emit(item)?;
                    }
                }
                Ast::Alt(alts) => {
                    let mut jumps = Vec::new();
                    for (i, alt) in alts.iter().enumerate() {
                        if i + 1 < alts.len() {
                            let split = self.push(Inst::Split(0, 0))?;
                            self.emit(alt)?;
                            jumps.push(self.push(Inst::Jmp(0))?);
                            self.insts[split] = Inst::Split(split as u32 + 1, self.here());
                        } else {
                            self.emit(alt)?;
                        }
                    }
                    let end = self.here();
                    for j in jumps {
                        self.insts[j] = Inst::Jmp(end);
                    }
                }
                Ast::Repeat(inner, min, max) => {
                    if *min as usize > REGEX_MAX_INSTRUCTIONS
                        || max.is_some_and(|m| m as usize > REGEX_MAX_INSTRUCTIONS)
                    {
                        return Err(format!(
                            "the pattern is too large (a repetition count over {REGEX_MAX_INSTRUCTIONS})"
                        ));
                    }
                    for _ in 0..*min {
                        self.emit(inner)?;
                    }
                    match max {
                        None => {
                            let split = self.push(Inst::Split(0, 0))?;
                            self.emit(inner)?;
                            self.push(Inst::Jmp(split as u32))?;
                            self.insts[split] = Inst::Split(split as u32 + 1, self.here());
                        }
                        Some(max) => {
                            let mut splits = Vec::new();
                            for _ in *min..*max {
                                splits.push(self.push(Inst::Split(0, 0))?);
                                self.emit(inner)?;
                            }
                            let end = self.here();
                            for s in splits {
                                self.insts[s] = Inst::Split(s as u32 + 1, end);
                            }
                        }
                    }
                }
            }
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::Regex;

        fn m(pattern: &str, s: &str) -> bool {
            Regex::new(pattern)
                .unwrap_or_else(|e| panic!("{pattern}: {e}"))
                .is_match(s, 1_000_000)
                .expect("within budget")
        }

        #[test]
        fn matches_the_subset() {
            let cases: &[(&str, &str, bool)] = &[
                ("abc", "xxabcxx", true),
                ("^abc", "xxabc", false),
                ("abc$", "abcx", false),
                ("^abc$", "abc", true),
                ("^abc$", "abc\n", false),
                ("", "", true),
                ("^$", "", true),
                ("^$", "a", false),
                ("a.c", "abc", true),
                ("a.c", "a\nc", false),
                ("^[a-z_]+\\.[a-z0-9_]+$", "light.kitchen_2", true),
                ("^[a-z_]+\\.[a-z0-9_]+$", "light kitchen", false),
                ("^[^0-9]+$", "abc", true),
                ("^[^0-9]+$", "ab1", false),
                ("^\\d{3}-\\d{4}$", "555-1234", true),
                ("^\\d{3}-\\d{4}$", "55-1234", false),
                ("^\\w+$", "snake_case9", true),
                ("^\\w+$", "kebab-case", false),
                ("^\\S+$", "no-space", true),
                ("^\\S+$", "a space", false),
                ("\\s", "a\tb", true),
                ("^\\D\\W$", "a-", true),
                ("^(?:ab)+$", "ababab", true),
                ("^(?:ab)+$", "ababa", false),
                ("^(a|bc)*$", "abcabc", true),
                ("^(a|bc)*$", "abcb", false),
                ("^a{2}$", "aa", true),
                ("^a{2}$", "aaa", false),
                ("^a{2,}$", "aaaaa", true),
                ("^a{2,3}$", "aaaa", false),
                ("^a{2,3}?$", "aaa", true),
                ("^a+?$", "aaa", true),
                ("^a*?b", "aaab", true),
                ("^colou?r$", "color", true),
                ("^colou?r$", "colour", true),
                ("a{,2}", "a{,2}", true),
                ("x{", "x{", true),
                ("^[\\w.-]+@[\\w-]+\\.[a-z]{2,}$", "ada@example.org", true),
                ("^[\\w.-]+@[\\w-]+\\.[a-z]{2,}$", "ada@example", false),
                ("\\bcat\\b", "a cat sat", true),
                ("\\bcat\\b", "concatenate", false),
                ("\\Bcat\\B", "concatenate", true),
                ("^\\u00e9$", "é", true),
                ("^\\x41$", "A", true),
                ("^\\ud83d\\ude00$", "😀", true),
                ("^.$", "😀", true),
                ("^[😀-😂]$", "😁", true),
                ("^[^]$", "x", true),
                ("^[]$", "x", false),
                ("^[-a]+$", "-a-", true),
                ("^[a-]+$", "-a-", true),
                ("^(|a)+$", "aa", true),
                ("^(a*)*$", "aaaa", true),
                ("^(a*)*b$", "aaaa", false),
                ("[\\]]", "]", true),
                ("\\/", "/", true),
                ("^\\$\\^\\.\\*$", "$^.*", true),
                ("^\\cJ$", "\n", true),
                ("^\\0$", "\0", true),
                ("(?:)", "x", true),
                ("^(?:[01]\\d|2[0-3]):[0-5]\\d$", "23:59", true),
                ("^(?:[01]\\d|2[0-3]):[0-5]\\d$", "24:00", false),
            ];
            for &(pattern, s, want) in cases {
                assert_eq!(m(pattern, s), want, "{pattern:?} on {s:?}");
            }
        }

        #[test]
        fn refuses_what_it_does_not_support() {
            for (pattern, why) in [
                ("(?=a)", "lookahead"),
                ("(?!a)", "lookahead"),
                ("(?<=a)b", "lookbehind"),
                ("(?<!a)b", "lookbehind"),
                ("(a)\\1", "backreferences"),
                ("(?<year>\\d{4})", "named groups"),
                ("\\p{L}+", "Unicode property"),
                ("(?i)abc", "inline flags"),
                ("\\Aabc\\Z", "escape \\A"),
                ("\\u{1F600}", "\\u{...}"),
                ("a{1,50000}", "too large"),
                ("(", "missing )"),
                ("a)", "unbalanced"),
                ("*a", "nothing to repeat"),
                ("a**", "nothing to repeat"),
                ("^*", "nothing to repeat"),
                ("[z-a]", "out of order"),
                ("a{3,2}", "out of order"),
                ("[abc", "unterminated"),
                ("[\\d-x]", "cannot bound a range"),
            ] {
                let err = Regex::new(pattern)
                    .err()
                    .unwrap_or_else(|| panic!("{pattern} compiled"));
                assert!(err.contains(why), "{pattern}: {err}");
            }
        }

        #[test]
        fn pathological_patterns_stay_linear() {
            // Exponential for a backtracking engine; linear here.
            let re = Regex::new("^(a+)+$").unwrap();
            let s = format!("{}b", "a".repeat(5_000));
            assert_eq!(re.is_match(&s, 1_000_000), Some(false));
            let re = Regex::new("^(a|a)*(a|a)*(a|a)*c$").unwrap();
            assert_eq!(re.is_match(&"a".repeat(2_000), 1_000_000), Some(false));
        }

        #[test]
        fn over_budget_is_unknown() {
            let re = Regex::new("(.*a){20}b").unwrap();
            let s = "a".repeat(20_000);
            assert_eq!(re.is_match(&s, 10_000), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(schema: Value) -> Schema {
        Schema::compile(&schema).unwrap_or_else(|e| panic!("{e}"))
    }

    fn messages(schema: &Schema, instance: Value) -> Vec<String> {
        let out: Vec<String> = schema
            .validate(&instance)
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(schema.is_valid(&instance), out.is_empty(), "{out:?}");
        out
    }

    /// A Home Assistant-like tool schema with the usual optional-parameter shape.
    fn light_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "entity_id": {"type": "string", "pattern": "^[a-z_]+\\.[a-z0-9_]+$"},
                "brightness": {"type": "integer", "minimum": 0, "maximum": 255},
                "color_name": {"anyOf": [{"type": "string", "enum": ["red", "green", "blue"]}, {"type": "null"}], "default": null},
                "transition": {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]}
            },
            "required": ["entity_id"],
            "additionalProperties": false
        })
    }

    #[test]
    fn message_table() {
        let light = compile(light_schema());
        let list = compile(json!({
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 5,
                    "uniqueItems": true,
                    "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 8}},
                        "required": ["name"]
                    }
                }
            }
        }));
        let refs = compile(json!({
            "$defs": {
                "coord": {"type": "number", "minimum": -180, "maximum": 180},
                "label": {"type": "string", "minLength": 1, "maxLength": 40}
            },
            "type": "object",
            "properties": {
                "point": {"type": "array", "prefixItems": [{"$ref": "#/$defs/coord"}, {"$ref": "#/$defs/coord"}], "items": false, "minItems": 2},
                "label": {"$ref": "#/$defs/label"}
            },
            "required": ["point"]
        }));
        let misc = compile(json!({
            "type": "object",
            "properties": {
                "mode": {"const": "auto"},
                "step": {"type": "number", "multipleOf": 0.5},
                "count": {"type": ["integer", "null"]},
                "tags": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}, "maxProperties": 2},
                "either": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 0}]},
                "nope": {"not": {"type": "string"}}
            },
            "dependentRequired": {"step": ["count"]}
        }));
        let table: Vec<(&Schema, Value, Vec<&str>)> = vec![
            (&light, json!({"entity_id": "light.kitchen"}), vec![]),
            (&light, json!({"entity_id": 12}), vec!["/entity_id: expected string, got number"]),
            (&light, json!({}), vec!["/: missing required property \"entity_id\""]),
            (
                &light,
                json!({"entity_id": "light.kitchen", "colour": "red"}),
                vec!["/colour: unexpected property (allowed: entity_id, brightness, color_name, transition)"],
            ),
            (
                &light,
                json!({"entity_id": "light.kitchen", "color_name": "pink"}),
                vec!["/color_name: expected one of \"red\", \"green\", \"blue\", got \"pink\""],
            ),
            (&light, json!({"entity_id": "light.kitchen", "color_name": null}), vec![]),
            (
                &light,
                json!({"entity_id": "light.kitchen", "color_name": 3}),
                vec!["/color_name: expected string or null, got number"],
            ),
            (
                &light,
                json!({"entity_id": "light.kitchen", "transition": 0}),
                vec!["/transition: expected a number > 0, got 0"],
            ),
            (
                &light,
                json!({"entity_id": "Light Kitchen"}),
                vec!["/entity_id: expected a string matching the pattern /^[a-z_]+\\.[a-z0-9_]+$/, got \"Light Kitchen\""],
            ),
            (
                &light,
                json!({"entity_id": "light.kitchen", "brightness": -1}),
                vec!["/brightness: expected a number >= 0, got -1"],
            ),
            (
                &light,
                json!({"entity_id": "light.kitchen", "brightness": 256}),
                vec!["/brightness: expected a number <= 255, got 256"],
            ),
            (
                &light,
                json!({"entity_id": "light.kitchen", "brightness": 2.5}),
                vec!["/brightness: expected integer, got number"],
            ),
            (&light, json!({"entity_id": "light.kitchen", "brightness": 2.0}), vec![]),
            (&light, json!([]), vec!["/: expected object, got array"]),
            (
                &light,
                json!({"entity_id": 1, "brightness": 300, "x": 1}),
                vec![
                    "/entity_id: expected string, got number",
                    "/brightness: expected a number <= 255, got 300",
                    "/x: unexpected property (allowed: entity_id, brightness, color_name, transition)",
                ],
            ),
            (
                &list,
                json!({"items": [{"name": "a"}, {"name": "b"}, {"name": 3}]}),
                vec!["/items/2/name: expected string, got number"],
            ),
            (
                &list,
                json!({"items": [{"name": ""}, {}]}),
                vec!["/items/0/name: expected at least 1 character, got 0", "/items/1: missing required property \"name\""],
            ),
            (
                &list,
                json!({"items": [{"name": "ééééééééé"}]}),
                vec!["/items/0/name: expected at most 8 characters, got 9"],
            ),
            (&list, json!({"items": [{"name": "éééééééé"}]}), vec![]),
            (&list, json!({"items": []}), vec!["/items: expected at least 1 item, got 0"]),
            (
                &list,
                json!({"items": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}),
                vec!["/items: expected unique items, but items 0 and 2 are equal"],
            ),
            (
                &list,
                json!({"items": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}, {"name": "e"}, {"name": "f"}]}),
                vec!["/items: expected at most 5 items, got 6"],
            ),
            (&refs, json!({"point": [1, 2.5], "label": "home"}), vec![]),
            (&refs, json!({"point": [1, 200]}), vec!["/point/1: expected a number <= 180, got 200"]),
            (&refs, json!({"point": [1, 2, 3]}), vec!["/point/2: unexpected item: at most 2 items allowed"]),
            (&refs, json!({"point": [1, 2], "label": ""}), vec!["/label: expected at least 1 character, got 0"]),
            (&refs, json!({"point": ["a", 2]}), vec!["/point/0: expected number, got string"]),
            (&misc, json!({"mode": "manual"}), vec!["/mode: expected \"auto\", got \"manual\""]),
            (&misc, json!({"step": 0.75, "count": 1}), vec!["/step: expected a multiple of 0.5, got 0.75"]),
            (&misc, json!({"step": 1.5}), vec!["/: missing property \"count\", required when \"step\" is present"]),
            (&misc, json!({"count": "3"}), vec!["/count: expected integer or null, got string"]),
            (
                &misc,
                json!({"tags": {"ok": 1, "Bad": 2, "x": 3}}),
                vec![
                    "/tags: expected at most 2 properties, got 3",
                    "/tags/Bad: property name: expected a string matching the pattern /^[a-z]+$/, got \"Bad\"",
                ],
            ),
            (
                &misc,
                json!({"either": 3}),
                vec!["/either: expected exactly one alternative (oneOf) to match, but alternatives 0 and 1 both do"],
            ),
            (&misc, json!({"either": 1.5}), vec![]),
            (&misc, json!({"either": -1.5}), vec!["/either: expected a number >= 0, got -1.5"]),
            (&misc, json!({"either": "x"}), vec!["/either: expected number, got string"]),
            (&misc, json!({"nope": "x"}), vec!["/nope: must not match the schema in \"not\""]),
            (&misc, json!({"nope": 1}), vec![]),
        ];
        for (schema, instance, want) in table {
            assert_eq!(
                messages(schema, instance.clone()),
                want,
                "instance {instance}"
            );
        }
    }

    #[test]
    fn pointers_are_escaped() {
        let s =
            compile(json!({"properties": {"a/b": {"properties": {"c~d": {"type": "string"}}}}}));
        assert_eq!(
            messages(&s, json!({"a/b": {"c~d": 1}})),
            vec!["/a~1b/c~0d: expected string, got number"]
        );
    }

    #[test]
    fn types_and_numbers() {
        let int = compile(json!({"type": "integer"}));
        assert!(int.is_valid(&json!(1)));
        assert!(int.is_valid(&json!(1.0)));
        assert!(int.is_valid(&json!(-9_223_372_036_854_775_808i64)));
        assert!(int.is_valid(&json!(18_446_744_073_709_551_615u64)));
        assert!(!int.is_valid(&json!(1.5)));
        assert!(!int.is_valid(&json!(true)));
        let num = compile(json!({"type": "number"}));
        assert!(num.is_valid(&json!(1)) && num.is_valid(&json!(0.5)));
        assert!(!num.is_valid(&json!("1")) && !num.is_valid(&json!(null)));
        let en = compile(json!({"enum": [1, "a", null, [1, 2], {"k": false}]}));
        assert!(en.is_valid(&json!(1.0)));
        assert!(en.is_valid(&json!([1.0, 2])));
        assert!(en.is_valid(&json!({"k": false})));
        assert!(!en.is_valid(&json!(true)));
        assert!(!en.is_valid(&json!({"k": 0})));
        let c = compile(json!({"const": false}));
        assert!(c.is_valid(&json!(false)) && !c.is_valid(&json!(0)));
        let bounds = compile(json!({"minimum": 1, "maximum": 2.5}));
        assert!(
            bounds.is_valid(&json!(1))
                && bounds.is_valid(&json!(2.5))
                && bounds.is_valid(&json!("x"))
        );
        assert!(!bounds.is_valid(&json!(0.999)) && !bounds.is_valid(&json!(3)));
        let big = compile(json!({"maximum": 9_007_199_254_740_992u64}));
        assert!(!big.is_valid(&json!(9_007_199_254_740_993u64)));
        let draft4 = compile(json!({"minimum": 0, "exclusiveMinimum": true}));
        assert!(!draft4.is_valid(&json!(0)) && draft4.is_valid(&json!(0.1)));
        let m = compile(json!({"multipleOf": 0.1}));
        assert!(m.is_valid(&json!(0.5)) && m.is_valid(&json!(3)));
        let m = compile(json!({"multipleOf": 3}));
        assert!(m.is_valid(&json!(9)) && m.is_valid(&json!(9.0)) && !m.is_valid(&json!(10)));
        // 2^-1000: the quotient overflows, the exact check decides.
        let m = compile(json!({"multipleOf": 9.332636185032189e-302}));
        assert!(m.is_valid(&json!(1e300)));
        let unique = compile(json!({"uniqueItems": true}));
        assert!(!unique.is_valid(&json!([1, 1.0])));
        assert!(unique.is_valid(&json!([1, true, "1", [1], {"a": 1}])));
        assert!(!unique.is_valid(&json!([{"a": 1, "b": 2}, {"b": 2, "a": 1}])));
        let long: Vec<Value> = (0..100)
            .map(|i| json!({"i": i}))
            .chain([json!({"i": 7.0})])
            .collect();
        assert_eq!(
            messages(&unique, Value::Array(long)),
            vec!["/: expected unique items, but items 7 and 100 are equal"]
        );
    }

    #[test]
    fn boolean_schemas_and_applicators() {
        assert!(compile(json!(true)).is_valid(&json!({"x": 1})));
        assert_eq!(
            messages(&compile(json!(false)), json!(1)),
            vec!["/: no value is allowed here"]
        );
        let s = compile(json!({
            "type": "object",
            "properties": {"kind": {"enum": ["a", "b"]}},
            "if": {"properties": {"kind": {"const": "a"}}},
            "then": {"required": ["a_value"]},
            "else": {"required": ["b_value"]}
        }));
        assert_eq!(
            messages(&s, json!({"kind": "a"})),
            vec!["/: missing required property \"a_value\""]
        );
        assert_eq!(
            messages(&s, json!({"kind": "b"})),
            vec!["/: missing required property \"b_value\""]
        );
        assert!(s.is_valid(&json!({"kind": "a", "a_value": 1})));
        let all = compile(json!({"allOf": [{"minLength": 2}, {"maxLength": 3}]}));
        assert!(all.is_valid(&json!("abc")) && !all.is_valid(&json!("abcd")));
        let pp = compile(json!({
            "type": "object",
            "patternProperties": {"^x_": {"type": "integer"}},
            "additionalProperties": {"type": "string"}
        }));
        assert!(pp.is_valid(&json!({"x_a": 1, "other": "s"})));
        assert_eq!(
            messages(&pp, json!({"x_a": "1", "other": 2})),
            vec![
                "/x_a: expected integer, got string",
                "/other: expected string, got number"
            ]
        );
        let contains =
            compile(json!({"contains": {"type": "string"}, "minContains": 2, "maxContains": 3}));
        assert!(contains.is_valid(&json!(["a", 1, "b"])));
        assert!(!contains.is_valid(&json!(["a", 1])));
        assert!(!contains.is_valid(&json!(["a", "b", "c", "d"])));
        let draft4_tuple =
            compile(json!({"items": [{"type": "string"}], "additionalItems": {"type": "integer"}}));
        assert!(draft4_tuple.is_valid(&json!(["a", 1, 2])));
        assert!(!draft4_tuple.is_valid(&json!(["a", "b"])));
        assert!(!draft4_tuple.is_valid(&json!([1])));
    }

    #[test]
    fn unevaluated_properties() {
        // The rich_server fixture's `schema_2020` tool.
        let s = compile(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {"coord": {"type": "number"}},
            "properties": {"point": {"type": "array", "prefixItems": [{"$ref": "#/$defs/coord"}, {"$ref": "#/$defs/coord"}], "items": false}},
            "required": ["point"],
            "unevaluatedProperties": false
        }));
        assert!(s.is_valid(&json!({"point": [1, 2]})));
        assert_eq!(
            messages(&s, json!({"point": [1, 2], "z": 1})),
            vec!["/z: unexpected property"]
        );
        let s = compile(json!({
            "allOf": [{"properties": {"a": true}}],
            "anyOf": [{"properties": {"b": {"type": "string"}}}, {"required": ["c"]}],
            "unevaluatedProperties": false
        }));
        assert!(s.is_valid(&json!({"a": 1, "b": "x"})));
        assert!(!s.is_valid(&json!({"a": 1, "b": 2, "c": 1})));
        assert!(!s.is_valid(&json!({"a": 1, "d": 2})));
        let s = compile(json!({"prefixItems": [true], "unevaluatedItems": {"type": "string"}}));
        assert!(s.is_valid(&json!([1, "a"])));
        assert_eq!(
            messages(&s, json!([1, 2])),
            vec!["/1: expected string, got number"]
        );
    }

    #[test]
    fn refs_resolve_and_recurse() {
        let tree = compile(json!({
            "$ref": "#/definitions/node",
            "definitions": {
                "node": {
                    "type": "object",
                    "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/definitions/node"}}},
                    "required": ["value"]
                }
            }
        }));
        assert!(tree.is_valid(
            &json!({"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}]})
        ));
        assert_eq!(
            messages(
                &tree,
                json!({"value": 1, "children": [{"value": 2, "children": [{"value": "3"}]}]})
            ),
            vec!["/children/0/children/0/value: expected integer, got string"]
        );
        let root =
            compile(json!({"properties": {"next": {"$ref": "#"}, "n": {"type": "integer"}}}));
        assert!(!root.is_valid(&json!({"next": {"next": {"n": "x"}}})));
        let escaped =
            compile(json!({"$defs": {"a/b c": {"type": "string"}}, "$ref": "#/$defs/a~1b%20c"}));
        assert!(escaped.is_valid(&json!("s")) && !escaped.is_valid(&json!(1)));
        let pointer = compile(
            json!({"properties": {"a": {"type": "string"}, "b": {"$ref": "#/properties/a"}}}),
        );
        assert!(!pointer.is_valid(&json!({"b": 1})));
        // Deep recursion is bounded.
        let mut deep = json!({"value": 0});
        for i in 0..300 {
            deep = json!({"value": i, "children": [deep]});
        }
        let out = tree.validate(&deep);
        assert_eq!(out.len(), 1);
        assert!(out[0].message.starts_with("too deeply nested"), "{out:?}");
    }

    #[test]
    fn compile_errors() {
        for (schema, why) in [
            (
                json!({"$ref": "https://example.com/s.json"}),
                "only local references",
            ),
            (json!({"$ref": "#foo"}), "only local references"),
            (json!({"$ref": "#/$defs/missing"}), "points to nothing"),
            (json!({"$ref": "#"}), "$ref cycle"),
            (
                json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}),
                "$ref cycle",
            ),
            (
                json!({"properties": {"a": {"$dynamicRef": "#x"}}}),
                "`$dynamicRef` is not supported",
            ),
            (
                json!({"properties": {"a": {"$id": "other"}}}),
                "`$id` below the root",
            ),
        ] {
            let err = Schema::compile(&schema).expect_err(&schema.to_string());
            assert!(err.message.contains(why), "{schema}: {err}");
        }
    }

    #[test]
    fn notes_and_unchecked_patterns() {
        let s = compile(json!({
            "$id": "https://example.com/tool",
            "type": "object",
            "x-fastmcp-wrap-result": true,
            "properties": {
                "a": {"type": "string", "pattern": "^(?=x)", "title": "A", "format": "email"},
                "b": {"type": "string", "required": true, "minLength": "1"},
                "c": {"not": {"pattern": "(?<=a)b"}},
                "d": {"unknownKeyword": 1}
            },
            "patternProperties": {"\\p{L}": {"type": "integer"}},
            "additionalProperties": false
        }));
        assert_eq!(
            s.notes(),
            [
                "/properties/a: pattern /^(?=x)/ is not checked: lookahead is not supported",
                "/properties/b: `required` ignored: expected an array of strings",
                "/properties/b: `minLength` ignored: expected a non-negative integer",
                "/properties/c/not: pattern /(?<=a)b/ is not checked: lookbehind is not supported",
                "/properties/d: unknown keyword `unknownKeyword` ignored",
                "/: patternProperties /\\p{L}/ is not checked: Unicode property escapes are not supported",
            ]
        );
        // Unchecked patterns never fail a call, not even under `not`; names they might match are
        // not "additional".
        assert!(s.is_valid(&json!({"a": "y", "b": "", "c": "ab", "é": "x"})));
    }

    #[test]
    fn violations_are_capped() {
        let s = compile(json!({"type": "object", "additionalProperties": false}));
        let many: Map<String, Value> = (0..50).map(|i| (format!("k{i}"), json!(i))).collect();
        let out = s.validate(&Value::Object(many));
        assert_eq!(out.len(), MAX_VIOLATIONS);
        assert_eq!(
            out[0].to_string(),
            "/k0: unexpected property: this object takes no properties"
        );
        assert_eq!(summary(&out[..2]), "/k0: unexpected property: this object takes no properties; /k1: unexpected property: this object takes no properties");
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let s = compile(json!({"enum": ["a"]}));
        let long = "x".repeat(1000);
        let out = s.validate(&json!(long));
        assert!(out[0].message.len() < 100, "{}", out[0].message);
        assert!(out[0].message.ends_with("..."), "{}", out[0].message);
    }

    #[test]
    fn deep_validation_fits_a_small_stack() {
        // A worker's stack: recursion is bounded by MAX_DEPTH.
        let schema = compile(
            json!({"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"}),
        );
        let mut deep = json!([]);
        for _ in 0..1000 {
            deep = json!([deep]);
        }
        let handle = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || schema.validate(&deep))
            .unwrap();
        let out = handle.join().unwrap();
        assert_eq!(out.len(), 1);
    }
}
