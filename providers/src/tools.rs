//! Checks both inbound wire formats share for tool calling: a tool's name and
//! parameters schema, and the bookkeeping that every tool result answers an
//! earlier call. Each parser calls them with its own field paths.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::validate::{bad, show, wrong_type};
use crate::ProviderError;

/// The most tools a request may offer (OpenAI's and Anthropic's limit).
pub(crate) const MAX_TOOLS: usize = 128;

/// A function name both OpenAI and Anthropic accept: 1 to 64 of
/// `[A-Za-z0-9_-]`.
pub(crate) fn check_tool_name(name: &str, path: &str) -> Result<(), ProviderError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(bad(
            path,
            format!(
                "invalid tool name {} in \"{path}\": use 1 to 64 letters, digits, '_' or '-'",
                show(&Value::String(name.to_owned()))
            ),
        ))
    }
}

/// A tool's parameters: a JSON schema object describing an object. Absent
/// parameters mean a function without arguments.
pub(crate) fn parameters_schema(v: Option<&Value>, path: &str) -> Result<Value, ProviderError> {
    match v {
        None => Ok(serde_json::json!({"type": "object", "properties": {}})),
        Some(Value::Object(o)) => {
            if let Some(ty) = o.get("type").filter(|t| t.as_str() != Some("object")) {
                return Err(bad(
                    path,
                    format!(
                        "\"{path}\" must be a json schema of type \"object\", got type {}",
                        show(ty)
                    ),
                ));
            }
            Ok(Value::Object(o.clone()))
        }
        Some(other) => Err(wrong_type(path, "a json schema object", other)),
    }
}

/// Tool names must be distinct, or a call could not say which it means.
pub(crate) fn check_unique_names<'a>(
    names: impl IntoIterator<Item = (&'a str, String)>,
) -> Result<(), ProviderError> {
    let mut seen = BTreeSet::new();
    for (name, path) in names {
        if !seen.insert(name) {
            return Err(bad(
                &path,
                format!("duplicate tool name \"{name}\" in \"{path}\""),
            ));
        }
    }
    Ok(())
}

/// The calls made so far in a conversation and which of them were answered.
#[derive(Debug, Default)]
pub(crate) struct CallBook {
    made: BTreeSet<String>,
    open: BTreeSet<String>,
}

impl CallBook {
    /// An assistant's call with `id`; ids are unique in a conversation.
    pub(crate) fn call(&mut self, id: &str, path: &str) -> Result<(), ProviderError> {
        if id.is_empty() {
            return Err(bad(path, format!("\"{path}\" must not be empty")));
        }
        if !self.made.insert(id.to_owned()) {
            return Err(bad(
                path,
                format!("duplicate tool call id \"{id}\" in \"{path}\""),
            ));
        }
        self.open.insert(id.to_owned());
        Ok(())
    }

    /// A result for the call `id`: it must have been made and not answered.
    pub(crate) fn answer(&mut self, id: &str, path: &str) -> Result<(), ProviderError> {
        if self.open.remove(id) {
            return Ok(());
        }
        let why = if self.made.contains(id) {
            "answers a tool call that was already answered"
        } else {
            "answers no earlier tool call"
        };
        Err(bad(path, format!("\"{path}\" {why}: \"{id}\"")))
    }
}

/// Tool-call arguments from the wire: a JSON text (OpenAI) that must hold a
/// JSON object; an empty string means no arguments.
pub(crate) fn arguments_json(text: &str, path: &str) -> Result<Value, ProviderError> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(wrong_type(path, "a json object", &other)),
        Err(e) => Err(bad(
            path,
            format!(
                "\"{path}\" is not valid json ({e}): {}",
                show(&Value::String(text.to_owned()))
            ),
        )),
    }
}

/// The `input` object a tool call becomes for targets that want JSON, not a
/// JSON text (Anthropic's `tool_use` blocks). Text the model wrote that is
/// not a JSON object is kept whole under `"arguments"`, never dropped.
pub fn arguments_object(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Object(Default::default());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => serde_json::json!({ "arguments": text }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_schemas_and_ids_are_checked() {
        assert!(check_tool_name("get_weather-2", "tools[0]").is_ok());
        for bad_name in ["", "has space", "dot.name", &"x".repeat(65)] {
            assert!(check_tool_name(bad_name, "tools[0]").is_err(), "{bad_name}");
        }
        assert!(parameters_schema(Some(&json!({"type": "object"})), "p").is_ok());
        let err =
            parameters_schema(Some(&json!("string")), "tools[0].function.parameters").unwrap_err();
        assert!(
            matches!(&err, ProviderError::BadRequest { param: Some(p), .. } if p == "tools[0].function.parameters"),
            "{err:?}"
        );
        assert!(parameters_schema(Some(&json!({"type": "array"})), "p").is_err());
        assert_eq!(
            parameters_schema(None, "p").unwrap(),
            json!({"type": "object", "properties": {}})
        );

        let mut book = CallBook::default();
        book.call("a", "m[0]").unwrap();
        assert!(book.call("a", "m[1]").is_err());
        book.answer("a", "m[2]").unwrap();
        let again = book.answer("a", "m[3]").unwrap_err().to_string();
        assert!(again.contains("already answered"), "{again}");
        let none = book.answer("zz", "m[4]").unwrap_err().to_string();
        assert!(none.contains("answers no earlier tool call"), "{none}");
    }

    #[test]
    fn arguments_read_as_objects() {
        assert_eq!(arguments_json("", "a").unwrap(), json!({}));
        assert_eq!(arguments_json("{\"x\":1}", "a").unwrap(), json!({"x": 1}));
        assert!(arguments_json("[1]", "a").is_err());
        assert!(arguments_json("{oops", "a").is_err());
        assert_eq!(arguments_object("{\"x\":1}"), json!({"x": 1}));
        assert_eq!(arguments_object("{oops"), json!({"arguments": "{oops"}));
    }
}
