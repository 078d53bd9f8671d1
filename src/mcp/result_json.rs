//! A request's result on its way from a backend to a client: the backend's own JSON text, or a
//! value the gateway built.
//!
//! A Streamable HTTP backend's result is kept as the text it sent (checked to be JSON, never
//! built into a [`Value`]): the gateway only looks at a few of its top-level members
//! (`isError`, `resultType`) and the MCP face writes it out as it came, with the top-level
//! members of one revision added or taken away for a client of the other. Building a `Value`
//! of it, dropping that and writing it again was about a third of the instructions a proxied
//! `tools/call` cost. Every other face, and every result the gateway makes itself, works on a
//! `Value` ([`ResultJson::into_value`]).

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// See the module's documentation.
#[derive(Debug, Clone)]
pub enum ResultJson {
    /// As the backend wrote it.
    Text(TextResult),
    /// Built (or parsed) by the gateway.
    Value(Value),
}

/// A result as the backend wrote it, and what the gateway needs to know of it (read once).
#[derive(Debug, Clone)]
pub struct TextResult {
    json: Box<RawValue>,
    facts: Facts,
}

impl TextResult {
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.json.get()
    }
}

/// The top-level members the gateway looks at. As when a value is built, a member given twice
/// counts with its last value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Facts {
    is_error: bool,
    has_result_type: bool,
    input_required: bool,
}

impl Facts {
    fn of(text: &str) -> Facts {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        deserializer
            .deserialize_map(FactsVisitor)
            .unwrap_or_default()
    }
}

struct FactsVisitor;

impl<'de> Visitor<'de> for FactsVisitor {
    type Value = Facts;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Facts, A::Error> {
        let mut facts = Facts::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key.0.as_ref() {
                "isError" => {
                    let raw = map.next_value::<&RawValue>()?;
                    facts.is_error = raw.get() == "true";
                }
                "resultType" => {
                    let raw = map.next_value::<&RawValue>()?;
                    facts.has_result_type = true;
                    // Written some other way (`"\u0069nput_required"`): compare the value.
                    facts.input_required = raw.get() == "\"input_required\""
                        || serde_json::from_str::<Value>(raw.get())
                            .is_ok_and(|v| v.as_str() == Some("input_required"));
                }
                // (serde_json wants the object read to its end)
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(facts)
    }
}

impl From<Value> for ResultJson {
    fn from(value: Value) -> ResultJson {
        ResultJson::Value(value)
    }
}

impl Serialize for ResultJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ResultJson::Text(text) => text.json.serialize(serializer),
            ResultJson::Value(value) => value.serialize(serializer),
        }
    }
}

impl ResultJson {
    /// A result as the backend wrote it.
    pub fn from_text(json: Box<RawValue>) -> ResultJson {
        let facts = Facts::of(json.get());
        ResultJson::Text(TextResult { json, facts })
    }

    /// Whether the top-level member `resultType` is there.
    pub fn has_result_type(&self) -> bool {
        match self {
            ResultJson::Text(text) => text.facts.has_result_type,
            ResultJson::Value(value) => value.get("resultType").is_some(),
        }
    }

    /// The result as a value (parsed now if it is still text).
    pub fn into_value(self) -> Value {
        match self {
            // The text was checked to be JSON when it arrived.
            ResultJson::Text(text) => serde_json::from_str(text.get()).unwrap_or(Value::Null),
            ResultJson::Value(value) => value,
        }
    }

    /// `isError: true`: a tool call that failed in the tool.
    pub fn is_error(&self) -> bool {
        match self {
            ResultJson::Text(text) => text.facts.is_error,
            ResultJson::Value(value) => value.get("isError").and_then(Value::as_bool) == Some(true),
        }
    }

    /// `resultType: "input_required"`: the backend asks the client for input before it goes on.
    pub fn is_input_required(&self) -> bool {
        match self {
            ResultJson::Text(text) => text.facts.input_required,
            ResultJson::Value(value) => {
                value.get("resultType").and_then(Value::as_str) == Some("input_required")
            }
        }
    }

    /// About how many bytes the result takes as JSON (for the audit log).
    pub fn approximate_size(&self) -> usize {
        match self {
            ResultJson::Text(text) => text.get().len(),
            ResultJson::Value(value) => crate::audit::approximate_size(value),
        }
    }

    /// Changes the top-level members of a result that is still text (a built value is edited
    /// as a [`Value`]): `edit` gets them in order and may add, replace or remove some, and
    /// returns whether it changed anything. Only the members are taken apart, not their values,
    /// and the result stays text. A result that is not an object is left alone.
    pub fn edit_text_members(&mut self, edit: impl FnOnce(&mut Members) -> bool) {
        let ResultJson::Text(text) = self else { return };
        let Ok(TopLevel(parsed)) = serde_json::from_str::<TopLevel>(text.get()) else {
            return;
        };
        let mut members: Members = parsed
            .into_iter()
            .map(|(k, raw)| (k, Member::Text(raw)))
            .collect();
        if !edit(&mut members) {
            return;
        }
        let rewritten = write_members(&members);
        if let Ok(rewritten) = RawValue::from_string(rewritten) {
            *self = ResultJson::from_text(rewritten);
        }
    }
}

/// The top-level members of a result being edited (see [`ResultJson::edit_text_members`]).
pub type Members<'a> = Vec<(Cow<'a, str>, Member<'a>)>;

/// One member's value: as the backend wrote it, or a value.
#[derive(Debug)]
pub enum Member<'a> {
    Text(&'a RawValue),
    Value(Value),
}

impl Member<'_> {
    /// The member's value (parsed if it is text).
    pub fn to_value(&self) -> Value {
        match self {
            Member::Text(raw) => serde_json::from_str(raw.get()).unwrap_or(Value::Null),
            Member::Value(value) => value.clone(),
        }
    }
}

fn write_members(members: &Members) -> String {
    let mut out = Vec::with_capacity(64 + members.len() * 16);
    out.push(b'{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing JSON strings and values into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, key.as_ref());
        out.push(b':');
        match value {
            Member::Text(raw) => out.extend_from_slice(raw.get().as_bytes()),
            Member::Value(value) => {
                let _ = serde_json::to_writer(&mut out, value);
            }
        }
    }
    out.push(b'}');
    // Made of JSON text and serde_json's output, both UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// A member name, borrowed from the text unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// An object's members in order, their values left as text.
struct TopLevel<'de>(Vec<(Cow<'de, str>, &'de RawValue)>);

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(6));
                while let Some((key, value)) = map.next_entry::<Key, &RawValue>()? {
                    members.push((key.0, value));
                }
                Ok(TopLevel(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(json: &str) -> ResultJson {
        ResultJson::from_text(RawValue::from_string(json.to_string()).unwrap())
    }

    fn written(result: &ResultJson) -> String {
        serde_json::to_string(result).unwrap()
    }

    #[test]
    fn text_is_written_as_it_came() {
        let result = text(r#"{"content": [{"type":"text","text":"4"}],  "isError":false}"#);
        assert_eq!(
            written(&result),
            r#"{"content": [{"type":"text","text":"4"}],  "isError":false}"#
        );
        let message = json!({"id": 1, "result": result});
        assert_eq!(message["result"]["content"][0]["text"], "4");
    }

    #[test]
    fn is_error_and_input_required_look_at_the_top_level_only() {
        assert!(text(r#"{"content":[],"isError":true}"#).is_error());
        assert!(!text(r#"{"content":[],"isError":false}"#).is_error());
        assert!(!text(r#"{"content":[{"isError":true}]}"#).is_error());
        assert!(!text(r#"[true]"#).is_error());
        assert!(text(r#"{"resultType":"input_required","inputRequests":{}}"#).is_input_required());
        assert!(text(r#"{"resultType":"\u0069nput_required"}"#).is_input_required());
        assert!(!text(r#"{"resultType":"complete"}"#).is_input_required());
        assert!(!text(r#"{"x":{"resultType":"input_required"}}"#).is_input_required());
        assert!(
            !text(r#"{"isError":true,"isError":false}"#).is_error(),
            "the last one counts"
        );
        assert!(text(r#"{"resultType":"x","content":[]}"#).has_result_type());
        assert!(!text(r#"{"content":[{"resultType":"x"}]}"#).has_result_type());
        assert!(ResultJson::from(json!({"isError": true})).is_error());
        assert!(ResultJson::from(json!({"resultType": "input_required"})).is_input_required());
    }

    #[test]
    fn members_are_edited_on_the_text_without_touching_the_values() {
        let mut result = text(r#"{"content" : [ {"type":"text", "text":"a\"b"} ],"ttlMs":5}"#);
        result.edit_text_members(|members| {
            members.retain(|(k, _)| k != "ttlMs");
            members.push((
                Cow::Borrowed("resultType"),
                Member::Value(json!("complete")),
            ));
            true
        });
        assert_eq!(
            written(&result),
            r#"{"content":[ {"type":"text", "text":"a\"b"} ],"resultType":"complete"}"#
        );
        assert!(matches!(result, ResultJson::Text(_)));
    }

    #[test]
    fn an_unchanged_edit_leaves_the_text_alone() {
        let mut result = text(r#"{ "a" : 1 }"#);
        result.edit_text_members(|_| false);
        assert_eq!(written(&result), r#"{ "a" : 1 }"#);
    }

    #[test]
    fn a_value_is_not_edited_as_text() {
        let mut result = ResultJson::from(json!({"b": 1}));
        result.edit_text_members(|members| {
            members.clear();
            true
        });
        assert_eq!(written(&result), r#"{"b":1}"#);
    }

    #[test]
    fn escaped_member_names_are_found_and_written_back() {
        let mut result = text(r#"{"is\u0045rror":true,"k\"q":1}"#);
        assert!(result.is_error());
        result.edit_text_members(|_| true);
        assert_eq!(written(&result), r#"{"isError":true,"k\"q":1}"#);
    }

    #[test]
    fn into_value_parses_text() {
        assert_eq!(text(r#"{"a":[1,2]}"#).into_value(), json!({"a": [1, 2]}));
        assert_eq!(text(r#"{"a":[1,2]}"#).approximate_size(), 11);
    }
}
