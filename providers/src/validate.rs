//! Path-aware readers for incoming JSON bodies. Every failure names the field
//! path and shows the offending value, so a client sees exactly what to fix.

use serde_json::{Map, Value};

use crate::ProviderError;

/// The largest `max_tokens` any request may ask for; more is a client bug.
pub const MAX_TOKENS_LIMIT: u64 = 1_000_000;

pub(crate) type Obj = Map<String, Value>;

/// A compact rendering of a value for error messages, cut to a readable length.
pub(crate) fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

pub(crate) fn bad(param: &str, message: String) -> ProviderError {
    ProviderError::bad_request(message, Some(param))
}

pub(crate) fn wrong_type(param: &str, expected: &str, got: &Value) -> ProviderError {
    bad(
        param,
        format!(
            "invalid type for \"{param}\": expected {expected}, got {}",
            show(got)
        ),
    )
}

pub(crate) fn unsupported(param: &str, got: &Value) -> ProviderError {
    bad(
        param,
        format!("\"{param}\" is not supported, got {}", show(got)),
    )
}

/// The request body as an object.
pub(crate) fn body_object(body: &Value) -> Result<&Obj, ProviderError> {
    body.as_object().ok_or_else(|| {
        ProviderError::bad_request(
            format!("request body must be a json object, got {}", show(body)),
            None,
        )
    })
}

/// A present, non-null field.
pub(crate) fn field<'a>(obj: &'a Obj, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(crate) fn required<'a>(
    obj: &'a Obj,
    key: &str,
    path: &str,
) -> Result<&'a Value, ProviderError> {
    field(obj, key).ok_or_else(|| bad(path, format!("missing required field \"{path}\"")))
}

pub(crate) fn as_str<'a>(v: &'a Value, path: &str) -> Result<&'a str, ProviderError> {
    v.as_str().ok_or_else(|| wrong_type(path, "a string", v))
}

pub(crate) fn opt_str<'a>(
    obj: &'a Obj,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, ProviderError> {
    field(obj, key).map(|v| as_str(v, path)).transpose()
}

pub(crate) fn opt_bool(obj: &Obj, key: &str, path: &str) -> Result<Option<bool>, ProviderError> {
    field(obj, key)
        .map(|v| v.as_bool().ok_or_else(|| wrong_type(path, "a boolean", v)))
        .transpose()
}

pub(crate) fn opt_object<'a>(
    obj: &'a Obj,
    key: &str,
    path: &str,
) -> Result<Option<&'a Obj>, ProviderError> {
    field(obj, key)
        .map(|v| {
            v.as_object()
                .ok_or_else(|| wrong_type(path, "an object", v))
        })
        .transpose()
}

/// A number within `lo..=hi`.
pub(crate) fn opt_number_in(
    obj: &Obj,
    key: &str,
    lo: f64,
    hi: f64,
) -> Result<Option<f32>, ProviderError> {
    let Some(v) = field(obj, key) else {
        return Ok(None);
    };
    let n = v.as_f64().ok_or_else(|| wrong_type(key, "a number", v))?;
    if !(lo..=hi).contains(&n) {
        return Err(bad(
            key,
            format!("\"{key}\" must be between {lo} and {hi}, got {}", show(v)),
        ));
    }
    Ok(Some(n as f32))
}

/// A token budget: an integer in `1..=MAX_TOKENS_LIMIT`.
pub(crate) fn opt_max_tokens(obj: &Obj, key: &str) -> Result<Option<u32>, ProviderError> {
    let Some(v) = field(obj, key) else {
        return Ok(None);
    };
    let out_of_range = || {
        bad(
            key,
            format!(
                "\"{key}\" must be an integer between 1 and {MAX_TOKENS_LIMIT}, got {}",
                show(v)
            ),
        )
    };
    if !v.is_number() {
        return Err(wrong_type(key, "an integer", v));
    }
    let n = v.as_u64().ok_or_else(out_of_range)?;
    if n == 0 || n > MAX_TOKENS_LIMIT {
        return Err(out_of_range());
    }
    u32::try_from(n).map(Some).map_err(|_| out_of_range())
}

/// Stop strings: one string or an array of at most `max` strings. Empty strings
/// are dropped because they would end every answer before it starts.
/// Joins the text items of array content (OpenAI content parts, Anthropic
/// content blocks) with newlines; any other item type is refused, naming it.
pub(crate) fn text_items(items: &[Value], path: &str, noun: &str) -> Result<String, ProviderError> {
    let mut texts = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let at = format!("{path}[{j}]");
        let obj = item
            .as_object()
            .ok_or_else(|| wrong_type(&at, "an object", item))?;
        let type_path = format!("{at}.type");
        let ty = required(obj, "type", &type_path)?;
        if as_str(ty, &type_path)? != "text" {
            return Err(bad(
                &type_path,
                format!("unsupported {noun} type {} in \"{type_path}\"", show(ty)),
            ));
        }
        let text_path = format!("{at}.text");
        texts.push(as_str(required(obj, "text", &text_path)?, &text_path)?);
    }
    Ok(texts.join("\n"))
}

pub(crate) fn stop_list(v: &Value, path: &str, max: usize) -> Result<Vec<String>, ProviderError> {
    let list: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => {
            if items.len() > max {
                return Err(bad(
                    path,
                    format!(
                        "\"{path}\" accepts at most {max} strings, got {}",
                        items.len()
                    ),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| as_str(item, &format!("{path}[{i}]")).map(str::to_owned))
                .collect::<Result<_, _>>()?
        }
        other => return Err(wrong_type(path, "a string or an array of strings", other)),
    };
    Ok(list.into_iter().filter(|s| !s.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn max_tokens_rejects_zero_huge_fractional_and_strings() {
        let check = |v: Value| {
            let obj = json!({ "max_tokens": v });
            opt_max_tokens(obj.as_object().unwrap(), "max_tokens")
        };
        assert_eq!(check(json!(16)).unwrap(), Some(16));
        assert_eq!(check(json!(1_000_000)).unwrap(), Some(1_000_000));
        for v in [
            json!(0),
            json!(-3),
            json!(1_000_001),
            json!(1e30),
            json!(2.5),
        ] {
            let err = check(v.clone()).unwrap_err();
            assert!(
                err.to_string().contains("between 1 and 1000000"),
                "{v}: {err}"
            );
        }
        let err = check(json!("12")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid type for \"max_tokens\": expected an integer, got \"12\""
        );
    }

    #[test]
    fn show_cuts_long_values() {
        let long = Value::String("x".repeat(500));
        assert!(show(&long).len() <= 80);
        assert!(show(&long).ends_with("..."));
    }
}
