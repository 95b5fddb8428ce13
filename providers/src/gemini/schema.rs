//! JSON Schema (what clients send as tool parameters and `json_schema`
//! response formats) translated into Gemini's `Schema`, a subset of OpenAPI
//! 3.0. Annotations Gemini has no field for are dropped; a constraint it
//! cannot state is refused naming the field and the keyword, never dropped,
//! so the model is never told less than the client asked for without a word.

use serde_json::{json, Map, Value};

use crate::ProviderError;

/// How deep a schema may nest (objects in arrays in objects, `$ref`s
/// followed included) before it is refused; also what ends a recursive
/// `$ref`, which Gemini's schema cannot express.
pub const MAX_SCHEMA_DEPTH: usize = 32;

/// Keywords that only describe and that Gemini has no field for: dropped.
const DROPPED: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "strict",
];

/// String formats Gemini understands; others are annotations and dropped.
const STRING_FORMATS: &[&str] = &["enum", "date-time"];
const NUMBER_FORMATS: &[&str] = &["float", "double"];
const INTEGER_FORMATS: &[&str] = &["int32", "int64"];

/// `schema` (found at `path` of the client's request) as a Gemini schema.
pub fn to_gemini(schema: &Value, path: &str) -> Result<Value, ProviderError> {
    let defs = Defs::of(schema);
    convert(schema, path, &defs, 0)
}

/// The `$defs` / `definitions` of the root, for local `$ref`s.
struct Defs<'a> {
    root: &'a Value,
}

impl<'a> Defs<'a> {
    fn of(root: &'a Value) -> Self {
        Defs { root }
    }

    fn resolve(&self, r: &str) -> Option<&'a Value> {
        let pointer = r.strip_prefix('#')?;
        if !(pointer.starts_with("/$defs/") || pointer.starts_with("/definitions/")) {
            return None;
        }
        self.root.pointer(pointer)
    }
}

fn refuse(path: &str, why: impl Into<String>) -> ProviderError {
    let why = why.into();
    let root = path.split(['.', '[']).next().unwrap_or(path);
    ProviderError::bad_request(
        format!("\"{path}\" cannot be sent to a gemini target: {why}"),
        Some(param_of(path, root)),
    )
}

/// The request field an error names: the schema's own field (tool parameters
/// or the response format's schema), not a path inside the schema.
fn param_of<'p>(path: &'p str, root: &'p str) -> &'p str {
    for end in [".parameters", ".schema"] {
        if let Some(i) = path.find(end) {
            return &path[..i + end.len()];
        }
    }
    root
}

fn convert(v: &Value, path: &str, defs: &Defs<'_>, depth: usize) -> Result<Value, ProviderError> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err(refuse(
            path,
            format!("the schema nests deeper than {MAX_SCHEMA_DEPTH} levels (or refers to itself)"),
        ));
    }
    let obj = match v {
        Value::Object(o) => o,
        Value::Bool(true) => {
            return Err(refuse(
                path,
                "a schema that allows any value has no gemini equivalent",
            ))
        }
        other => {
            return Err(refuse(
                path,
                format!("expected a schema object, got {other}"),
            ))
        }
    };
    if let Some(r) = obj.get("$ref") {
        let target = r
            .as_str()
            .and_then(|r| defs.resolve(r))
            .ok_or_else(|| refuse(path, format!("$ref {r} does not name an entry of $defs")))?;
        // Keywords beside a $ref (a description, say) describe the same value.
        let mut merged = target.clone();
        if let (Some(m), true) = (merged.as_object_mut(), obj.len() > 1) {
            for (k, x) in obj.iter().filter(|(k, _)| k.as_str() != "$ref") {
                m.insert(k.clone(), x.clone());
            }
        }
        return convert(&merged, path, defs, depth + 1);
    }
    let mut out = Map::new();
    let (ty, nullable) = schema_type(obj, path)?;
    if nullable {
        out.insert("nullable".into(), json!(true));
    }
    for (k, x) in obj {
        let at = format!("{path}.{k}");
        match k.as_str() {
            "type" => {}
            "description" | "title" => {
                let s = x.as_str().ok_or_else(|| refuse(&at, "must be a string"))?;
                out.insert(k.clone(), json!(s));
            }
            "default" | "example" => {
                out.insert(k.clone(), x.clone());
            }
            "nullable" => {
                if x.as_bool() == Some(true) {
                    out.insert("nullable".into(), json!(true));
                }
            }
            "enum" => {
                out.insert("enum".into(), string_values(x, &at)?);
            }
            "const" => {
                let s = x
                    .as_str()
                    .ok_or_else(|| refuse(&at, "gemini states only string constants"))?;
                out.insert("enum".into(), json!([s]));
            }
            "format" => {
                let f = x.as_str().unwrap_or_default();
                let known = match ty.as_deref() {
                    Some("STRING") => STRING_FORMATS,
                    Some("NUMBER") => NUMBER_FORMATS,
                    Some("INTEGER") => INTEGER_FORMATS,
                    _ => &[],
                };
                if known.contains(&f) {
                    out.insert("format".into(), json!(f));
                }
            }
            "minimum" | "maximum" => {
                if !x.is_number() {
                    return Err(refuse(&at, "must be a number"));
                }
                out.insert(k.clone(), x.clone());
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" | "minProperties"
            | "maxProperties" => {
                // Gemini's schema carries these as int64, which JSON writes as strings.
                let n = x
                    .as_u64()
                    .ok_or_else(|| refuse(&at, "must be a non-negative integer"))?;
                out.insert(k.clone(), json!(n.to_string()));
            }
            "pattern" => {
                let s = x.as_str().ok_or_else(|| refuse(&at, "must be a string"))?;
                out.insert("pattern".into(), json!(s));
            }
            "required" => {
                out.insert("required".into(), string_values(x, &at)?);
            }
            "properties" => {
                let props = x
                    .as_object()
                    .ok_or_else(|| refuse(&at, "must be an object"))?;
                let mut conv = Map::new();
                for (name, p) in props {
                    conv.insert(
                        name.clone(),
                        convert(p, &format!("{at}.{name}"), defs, depth + 1)?,
                    );
                }
                out.insert("properties".into(), Value::Object(conv));
            }
            "items" => {
                out.insert("items".into(), convert(x, &at, defs, depth + 1)?);
            }
            "anyOf" | "oneOf" => {
                // As a constraint on what to generate, "exactly one of" and
                // "at least one of" ask the same of the model.
                let alts = x
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| refuse(&at, "must be a non-empty array of schemas"))?;
                let mut conv = Vec::new();
                for (i, a) in alts.iter().enumerate() {
                    if a.get("type").and_then(Value::as_str) == Some("null") {
                        out.insert("nullable".into(), json!(true));
                        continue;
                    }
                    conv.push(convert(a, &format!("{at}[{i}]"), defs, depth + 1)?);
                }
                match conv.len() {
                    0 => return Err(refuse(&at, "offers no alternative but null")),
                    // `anyOf: [X, null]` is X, nullable.
                    1 => {
                        if let Some(Value::Object(only)) = conv.pop() {
                            for (k, x) in only {
                                out.entry(k).or_insert(x);
                            }
                        }
                    }
                    _ => {
                        out.insert("anyOf".into(), Value::Array(conv));
                    }
                }
            }
            "additionalProperties" => match x {
                // Gemini generates only the listed properties: closed already.
                Value::Bool(_) => {}
                _ => {
                    return Err(refuse(
                        &at,
                        "gemini cannot state a schema for properties it does not list",
                    ))
                }
            },
            k if DROPPED.contains(&k) => {}
            other => {
                return Err(refuse(
                    &at,
                    format!(
                    "gemini's schema has no \"{other}\" and it would change what may be generated"
                ),
                ))
            }
        }
    }
    match ty {
        Some(t) => {
            out.insert("type".into(), json!(t));
        }
        // From the one alternative of an `anyOf: [X, null]`.
        None if out.contains_key("type") || out.contains_key("anyOf") => {}
        None if out.contains_key("properties") => {
            out.insert("type".into(), json!("OBJECT"));
        }
        None if out.contains_key("enum") => {
            out.insert("type".into(), json!("STRING"));
        }
        None => {
            return Err(refuse(
                path,
                "a schema without \"type\" allows any value, which gemini cannot state",
            ))
        }
    }
    if out.get("type").and_then(Value::as_str) == Some("ARRAY") && !out.contains_key("items") {
        return Err(refuse(path, "an array needs \"items\" for gemini"));
    }
    let no_properties = out
        .get("properties")
        .and_then(Value::as_object)
        .is_none_or(|p| p.is_empty());
    if out.get("type").and_then(Value::as_str) == Some("OBJECT") && no_properties {
        return Err(refuse(
            path,
            "gemini cannot state an object without \"properties\" (a free-form object)",
        ));
    }
    Ok(Value::Object(out))
}

/// The Gemini type name and whether `null` is allowed too.
fn schema_type(
    obj: &Map<String, Value>,
    path: &str,
) -> Result<(Option<String>, bool), ProviderError> {
    let at = format!("{path}.type");
    let names: Vec<&str> = match obj.get("type") {
        None => return Ok((None, false)),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(other) => return Err(refuse(&at, format!("must be a string, got {other}"))),
    };
    let nullable = names.contains(&"null");
    let real: Vec<&str> = names.into_iter().filter(|n| *n != "null").collect();
    let ty = match real.as_slice() {
        [] => {
            return Err(refuse(
                &at,
                "a value that can only be null has no gemini type",
            ))
        }
        [one] => gemini_type(one).ok_or_else(|| refuse(&at, format!("unknown type \"{one}\"")))?,
        _ => {
            return Err(refuse(
                &at,
                "several types in one schema: write them as anyOf",
            ))
        }
    };
    Ok((Some(ty.to_owned()), nullable))
}

fn gemini_type(json_type: &str) -> Option<&'static str> {
    Some(match json_type {
        "string" => "STRING",
        "number" => "NUMBER",
        "integer" => "INTEGER",
        "boolean" => "BOOLEAN",
        "array" => "ARRAY",
        "object" => "OBJECT",
        _ => return None,
    })
}

fn string_values(v: &Value, path: &str) -> Result<Value, ProviderError> {
    let items = v
        .as_array()
        .ok_or_else(|| refuse(path, "must be an array"))?;
    if items.iter().all(Value::is_string) {
        Ok(v.clone())
    } else {
        Err(refuse(path, "gemini states only string values here"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typical_tool_schema_translates() {
        let s = json!({
            "type": "object",
            "title": "Args",
            "properties": {
                "city": {"type": "string", "description": "where", "format": "email"},
                "days": {"type": ["integer", "null"], "minimum": 1, "maximum": 7},
                "unit": {"enum": ["c", "f"]},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                "when": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}
            },
            "required": ["city"],
            "additionalProperties": false,
            "$schema": "http://json-schema.org/draft-07/schema#"
        });
        assert_eq!(
            to_gemini(&s, "tools[0].function.parameters").unwrap(),
            json!({
                "type": "OBJECT",
                "title": "Args",
                "properties": {
                    "city": {"type": "STRING", "description": "where"},
                    "days": {"type": "INTEGER", "nullable": true, "minimum": 1, "maximum": 7},
                    "unit": {"type": "STRING", "enum": ["c", "f"]},
                    "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "maxItems": "3"},
                    "when": {"type": "STRING", "format": "date-time", "nullable": true}
                },
                "required": ["city"]
            })
        );
    }

    #[test]
    fn local_refs_are_inlined_and_recursion_is_refused() {
        let s = json!({
            "type": "object",
            "properties": {"step": {"$ref": "#/$defs/Step", "description": "one step"}},
            "$defs": {"Step": {"type": "object", "properties": {"n": {"type": "integer"}}}}
        });
        assert_eq!(
            to_gemini(&s, "response_format.json_schema.schema").unwrap(),
            json!({
                "type": "OBJECT",
                "properties": {"step": {
                    "type": "OBJECT",
                    "description": "one step",
                    "properties": {"n": {"type": "INTEGER"}}
                }}
            })
        );
        let recursive = json!({
            "type": "object",
            "properties": {"child": {"$ref": "#/$defs/Node"}},
            "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}}
        });
        let err = to_gemini(&recursive, "tools[0].function.parameters").unwrap_err();
        assert!(err.to_string().contains("deeper than 32"), "{err}");
    }

    #[test]
    fn what_gemini_cannot_state_is_refused_by_name() {
        for (schema, needle) in [
            (
                json!({"type": "object", "properties": {"n": {"type": "number", "exclusiveMinimum": 0}}}),
                "properties.n.exclusiveMinimum",
            ),
            (
                json!({"type": "object", "additionalProperties": {"type": "string"}}),
                "additionalProperties",
            ),
            (
                json!({"type": "object", "properties": {"x": {}}}),
                "properties.x",
            ),
            (
                json!({"type": "object", "properties": {"x": {"enum": [1, 2]}}}),
                "properties.x.enum",
            ),
            (
                json!({"type": "object", "properties": {"x": {"type": ["string", "integer"]}}}),
                "properties.x.type",
            ),
            (
                json!({"type": "object", "allOf": [{"type": "object"}]}),
                "allOf",
            ),
            (
                json!({"type": "object", "properties": {"x": {"$ref": "https://x/schema"}}}),
                "$ref",
            ),
            (json!({"type": "array"}), "needs \"items\""),
            (
                json!({"type": "object", "properties": {"meta": {"type": "object"}}}),
                "properties.meta",
            ),
        ] {
            let err = to_gemini(&schema, "tools[2].function.parameters").unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(needle), "{needle}: {msg}");
            assert!(
                matches!(&err, ProviderError::BadRequest { param: Some(p), .. } if p == "tools[2].function.parameters"),
                "{err:?}"
            );
        }
    }
}
