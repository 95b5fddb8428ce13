//! The incoming OpenAI chat-completions body, validated into a [`ChatRequest`].
//!
//! Every field that would change the answer is either honoured or refused with a
//! 400 naming it; fields that cannot change the answer are ignored.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::validate::{
    as_str, bad, body_object, field, opt_bool, opt_max_tokens, opt_number_in, opt_object, opt_str,
    required, show, stop_list, text_items, unsupported, wrong_type, Obj,
};
use crate::{ChatRequest, Message, ProviderError, ResponseFormat, Role};

/// Validate an OpenAI chat-completions body.
pub fn parse_chat_request(body: &Value) -> Result<ChatRequest, ProviderError> {
    let obj = body_object(body)?;
    reject_unsupported(obj)?;

    let model = as_str(required(obj, "model", "model")?, "model")?;
    if model.is_empty() {
        return Err(bad("model", "\"model\" must not be empty".into()));
    }
    let messages = parse_messages(required(obj, "messages", "messages")?)?;

    // `max_completion_tokens` is the newer name; when both are sent it wins.
    let max_tokens = match opt_max_tokens(obj, "max_completion_tokens")? {
        Some(n) => {
            opt_max_tokens(obj, "max_tokens")?;
            Some(n)
        }
        None => opt_max_tokens(obj, "max_tokens")?,
    };

    if let Some(n) = field(obj, "n") {
        if n.as_u64() != Some(1) {
            return Err(bad(
                "n",
                format!("only \"n\": 1 is supported, got {}", show(n)),
            ));
        }
    }

    let seed = match field(obj, "seed") {
        None => None,
        // Negative seeds are legal on the wire; keep their bits.
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_i64().map(|i| i as u64))
                .ok_or_else(|| wrong_type("seed", "an integer", v))?,
        ),
    };

    let stop = match field(obj, "stop") {
        None => Vec::new(),
        Some(v) => stop_list(v, "stop", 4)?,
    };

    let mut metadata = BTreeMap::new();
    if let Some(meta) = opt_object(obj, "metadata", "metadata")? {
        for (k, v) in meta {
            let path = format!("metadata.{k}");
            metadata.insert(k.clone(), as_str(v, &path)?.to_owned());
        }
    }

    let stream = opt_bool(obj, "stream", "stream")?.unwrap_or(false);
    let include_usage = match opt_object(obj, "stream_options", "stream_options")? {
        Some(o) => opt_bool(o, "include_usage", "stream_options.include_usage")?.unwrap_or(false),
        None => false,
    };

    Ok(ChatRequest {
        model: model.to_owned(),
        messages,
        max_tokens,
        temperature: opt_number_in(obj, "temperature", 0.0, 2.0)?,
        top_p: opt_number_in(obj, "top_p", 0.0, 1.0)?,
        stop,
        seed,
        user: opt_str(obj, "user", "user")?.map(str::to_owned),
        metadata,
        response_format: parse_response_format(obj)?,
        stream,
        include_usage,
    })
}

/// Fields that change the answer and that no backend here supports yet. They are
/// refused only when set to something other than their default.
fn reject_unsupported(obj: &Obj) -> Result<(), ProviderError> {
    let non_empty = |v: &Value| match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    };
    for key in ["tools", "functions", "logit_bias"] {
        if let Some(v) = field(obj, key).filter(|v| non_empty(v)) {
            return Err(unsupported(key, v));
        }
    }
    // "none" and "auto" without tools mean plain text, which is what we do.
    for key in ["tool_choice", "function_call"] {
        if let Some(v) = field(obj, key) {
            if !matches!(v.as_str(), Some("none" | "auto")) {
                return Err(unsupported(key, v));
            }
        }
    }
    if let Some(v) = field(obj, "logprobs") {
        match v.as_bool() {
            Some(false) => {}
            Some(true) => return Err(unsupported("logprobs", v)),
            None => return Err(wrong_type("logprobs", "a boolean", v)),
        }
    }
    if let Some(v) = field(obj, "top_logprobs") {
        if v.as_u64() != Some(0) {
            return Err(unsupported("top_logprobs", v));
        }
    }
    for key in ["presence_penalty", "frequency_penalty"] {
        if let Some(v) = field(obj, key) {
            let n = v.as_f64().ok_or_else(|| wrong_type(key, "a number", v))?;
            if n != 0.0 {
                return Err(unsupported(key, v));
            }
        }
    }
    for key in ["audio", "prediction", "web_search_options"] {
        if let Some(v) = field(obj, key) {
            return Err(unsupported(key, v));
        }
    }
    if let Some(v) = field(obj, "modalities") {
        let text_only = v
            .as_array()
            .is_some_and(|a| a.iter().all(|m| m.as_str() == Some("text")));
        if !text_only {
            return Err(unsupported("modalities", v));
        }
    }
    Ok(())
}

fn parse_messages(v: &Value) -> Result<Vec<Message>, ProviderError> {
    let items = v
        .as_array()
        .ok_or_else(|| wrong_type("messages", "an array", v))?;
    if items.is_empty() {
        return Err(bad("messages", "\"messages\" must not be empty".into()));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| parse_message(i, m))
        .collect()
}

fn parse_message(i: usize, v: &Value) -> Result<Message, ProviderError> {
    let at = format!("messages[{i}]");
    let obj = v
        .as_object()
        .ok_or_else(|| wrong_type(&at, "an object", v))?;
    let role_path = format!("{at}.role");
    let role_value = required(obj, "role", &role_path)?;
    let role = match as_str(role_value, &role_path)? {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        // Tool results only make sense after tool calls, which are refused.
        _ => {
            return Err(bad(
                &role_path,
                format!("unsupported role {} in \"{role_path}\"", show(role_value)),
            ))
        }
    };
    for key in ["tool_calls", "function_call", "audio"] {
        if let Some(v) = field(obj, key).filter(|v| v.as_array().is_none_or(|a| !a.is_empty())) {
            return Err(unsupported(&format!("{at}.{key}"), v));
        }
    }
    let content_path = format!("{at}.content");
    let content = match field(obj, "content") {
        None if role == Role::Assistant => String::new(),
        None => {
            return Err(bad(
                &content_path,
                format!("missing required field \"{content_path}\""),
            ))
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => text_items(parts, &content_path, "content part")?,
        Some(other) => {
            return Err(wrong_type(
                &content_path,
                "a string or an array of content parts",
                other,
            ))
        }
    };
    Ok(Message { role, content })
}

fn parse_response_format(obj: &Obj) -> Result<Option<ResponseFormat>, ProviderError> {
    let Some(rf) = opt_object(obj, "response_format", "response_format")? else {
        return Ok(None);
    };
    let ty_value = required(rf, "type", "response_format.type")?;
    let format = match as_str(ty_value, "response_format.type")? {
        "text" => ResponseFormat::Text,
        "json_object" => ResponseFormat::JsonObject,
        "json_schema" => {
            let js =
                opt_object(rf, "json_schema", "response_format.json_schema")?.ok_or_else(|| {
                    bad(
                        "response_format.json_schema",
                        "missing required field \"response_format.json_schema\"".into(),
                    )
                })?;
            let name = as_str(
                required(js, "name", "response_format.json_schema.name")?,
                "response_format.json_schema.name",
            )?;
            let schema = match field(js, "schema") {
                None => Value::Object(Default::default()),
                Some(s @ Value::Object(_)) => s.clone(),
                Some(other) => {
                    return Err(wrong_type(
                        "response_format.json_schema.schema",
                        "an object",
                        other,
                    ))
                }
            };
            let strict =
                opt_bool(js, "strict", "response_format.json_schema.strict")?.unwrap_or(false);
            ResponseFormat::JsonSchema {
                name: name.to_owned(),
                schema,
                strict,
            }
        }
        _ => {
            return Err(bad(
                "response_format.type",
                format!(
                    "unsupported response format {} in \"response_format.type\"",
                    show(ty_value)
                ),
            ))
        }
    };
    Ok(Some(format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param_of(err: ProviderError) -> (String, String) {
        match err {
            ProviderError::BadRequest { message, param } => (param.unwrap_or_default(), message),
            other => panic!("expected BadRequest, got {other:?}"),
        }
    }

    fn reject(body: Value) -> (String, String) {
        param_of(parse_chat_request(&body).unwrap_err())
    }

    fn base() -> Value {
        json!({"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]})
    }

    fn with(key: &str, v: Value) -> Value {
        let mut b = base();
        b[key] = v;
        b
    }

    #[test]
    fn full_request_as_the_openai_sdk_sends_it() {
        let body: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/openai_request_full.json"
        ))
        .unwrap();
        let req = parse_chat_request(&body).unwrap();
        assert_eq!(req.model, "gpt-5.4-mini");
        assert_eq!(
            req.messages,
            vec![
                Message::new(Role::System, "You are terse."),
                Message::new(Role::System, "Answer in English."),
                Message::new(Role::User, "Name a colour.\nJust one."),
                Message::new(Role::Assistant, "Blue."),
                Message::new(Role::User, "Another?"),
            ]
        );
        assert_eq!(req.max_tokens, Some(64));
        assert_eq!(req.temperature, Some(0.2));
        assert_eq!(req.top_p, Some(0.9));
        assert_eq!(req.stop, vec!["\n\n".to_string(), "END".to_string()]);
        assert_eq!(req.seed, Some(42));
        assert_eq!(req.user.as_deref(), Some("user-1234"));
        assert_eq!(req.metadata.get("ticket").map(String::as_str), Some("T-1"));
        assert!(req.stream);
        assert!(req.include_usage);
        assert_eq!(
            req.response_format,
            Some(ResponseFormat::JsonSchema {
                name: "colour".into(),
                schema: json!({"type": "object", "properties": {"name": {"type": "string"}}}),
                strict: true,
            })
        );
    }

    #[test]
    fn minimal_request_has_defaults() {
        let req = parse_chat_request(&base()).unwrap();
        assert_eq!(req.messages, vec![Message::new(Role::User, "hi")]);
        assert_eq!(req.max_tokens, None);
        assert!(!req.stream && !req.include_usage);
        assert!(req.stop.is_empty());
    }

    #[test]
    fn harmless_and_default_valued_fields_are_accepted() {
        let mut b = base();
        for (k, v) in [
            ("n", json!(1)),
            ("logprobs", json!(false)),
            ("presence_penalty", json!(0)),
            ("frequency_penalty", json!(0.0)),
            ("tools", json!([])),
            ("tool_choice", json!("none")),
            ("parallel_tool_calls", json!(true)),
            ("modalities", json!(["text"])),
            ("store", json!(false)),
            ("service_tier", json!("auto")),
            ("some_future_field", json!({"x": 1})),
            ("max_tokens", Value::Null),
            ("stop", Value::Null),
        ] {
            b[k] = v;
        }
        parse_chat_request(&b).unwrap();
    }

    #[test]
    fn max_completion_tokens_wins_and_both_names_are_checked() {
        let mut b = with("max_tokens", json!(10));
        b["max_completion_tokens"] = json!(20);
        assert_eq!(parse_chat_request(&b).unwrap().max_tokens, Some(20));
        let req = parse_chat_request(&with("max_completion_tokens", json!(7))).unwrap();
        assert_eq!(req.max_tokens, Some(7));
        b["max_tokens"] = json!(0);
        assert_eq!(reject(b).0, "max_tokens");
    }

    #[test]
    fn absurd_values_name_the_field_and_show_the_value() {
        assert_eq!(
            reject(with("max_tokens", json!(0))),
            (
                "max_tokens".into(),
                "\"max_tokens\" must be an integer between 1 and 1000000, got 0".into()
            )
        );
        assert_eq!(
            reject(with("max_completion_tokens", json!(99_999_999))).0,
            "max_completion_tokens"
        );
        assert_eq!(
            reject(with("temperature", json!(2.5))),
            (
                "temperature".into(),
                "\"temperature\" must be between 0 and 2, got 2.5".into()
            )
        );
        assert_eq!(reject(with("top_p", json!(-0.1))).0, "top_p");
        assert_eq!(
            reject(with("n", json!(3))),
            ("n".into(), "only \"n\": 1 is supported, got 3".into())
        );
        assert_eq!(
            reject(with("stop", json!(["a", "b", "c", "d", "e"]))).0,
            "stop"
        );
        assert_eq!(reject(with("seed", json!(1.5))).0, "seed");
    }

    #[test]
    fn wrong_types_name_the_path() {
        assert_eq!(
            reject(with("model", json!(5))),
            (
                "model".into(),
                "invalid type for \"model\": expected a string, got 5".into()
            )
        );
        assert_eq!(reject(with("messages", json!("hi"))).0, "messages");
        assert_eq!(reject(with("stream", json!("yes"))).0, "stream");
        assert_eq!(reject(with("stop", json!(["a", 1]))).0, "stop[1]");
        assert_eq!(reject(with("metadata", json!({"k": 1}))).0, "metadata.k");
        assert_eq!(
            reject(with("stream_options", json!({"include_usage": 1}))).0,
            "stream_options.include_usage"
        );
        assert_eq!(
            reject(with("messages", json!([{"role": "user", "content": 7}]))).0,
            "messages[0].content"
        );
        assert_eq!(
            reject(with(
                "messages",
                json!([{"role": "user", "content": [{"type": "text", "text": 3}]}])
            ))
            .0,
            "messages[0].content[0].text"
        );
        let (param, msg) = param_of(parse_chat_request(&json!([1])).unwrap_err());
        assert_eq!(param, "");
        assert_eq!(msg, "request body must be a json object, got [1]");
    }

    #[test]
    fn missing_and_empty_required_fields() {
        assert_eq!(
            reject(json!({"messages": [{"role": "user", "content": "x"}]})),
            ("model".into(), "missing required field \"model\"".into())
        );
        assert_eq!(
            reject(with("messages", json!([]))),
            ("messages".into(), "\"messages\" must not be empty".into())
        );
        assert_eq!(
            reject(with("messages", json!([{"role": "user"}]))).0,
            "messages[0].content"
        );
        assert_eq!(
            reject(with("messages", json!([{"content": "x"}]))).0,
            "messages[0].role"
        );
    }

    #[test]
    fn non_text_content_parts_name_their_index() {
        let body = with(
            "messages",
            json!([
                {"role": "system", "content": "s"},
                {"role": "user", "content": "a"},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
                ]}
            ]),
        );
        assert_eq!(
            reject(body),
            (
                "messages[2].content[0].type".into(),
                "unsupported content part type \"image_url\" in \"messages[2].content[0].type\""
                    .into()
            )
        );
    }

    #[test]
    fn roles_developer_tool_and_null_assistant_content() {
        let req = parse_chat_request(&with(
            "messages",
            json!([
                {"role": "developer", "content": "d"},
                {"role": "user", "content": "u"},
                {"role": "assistant", "content": null},
                {"role": "user", "content": "again"}
            ]),
        ))
        .unwrap();
        assert_eq!(req.messages[0].role, Role::System);
        assert_eq!(req.messages[2], Message::new(Role::Assistant, ""));
        assert_eq!(
            reject(with(
                "messages",
                json!([{"role": "tool", "content": "r", "tool_call_id": "c"}])
            ))
            .0,
            "messages[0].role"
        );
        assert_eq!(
            reject(with(
                "messages",
                json!([{"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function"}]}])
            ))
            .0,
            "messages[0].tool_calls"
        );
    }

    #[test]
    fn unsupported_fields_with_non_default_values_are_named() {
        for (k, v) in [
            (
                "tools",
                json!([{"type": "function", "function": {"name": "f"}}]),
            ),
            ("tool_choice", json!("required")),
            ("functions", json!([{"name": "f"}])),
            ("function_call", json!({"name": "f"})),
            ("logprobs", json!(true)),
            ("top_logprobs", json!(3)),
            ("logit_bias", json!({"50256": -100})),
            ("presence_penalty", json!(0.5)),
            ("frequency_penalty", json!(-1)),
            ("audio", json!({"voice": "alloy", "format": "wav"})),
            ("modalities", json!(["text", "audio"])),
            ("prediction", json!({"type": "content", "content": "x"})),
        ] {
            let (param, msg) = reject(with(k, v.clone()));
            assert_eq!(param, k, "{k}");
            assert!(
                msg.starts_with(&format!("\"{k}\" is not supported, got ")),
                "{msg}"
            );
        }
    }

    #[test]
    fn response_formats() {
        let rf = |v: Value| parse_chat_request(&with("response_format", v));
        assert_eq!(
            rf(json!({"type": "text"})).unwrap().response_format,
            Some(ResponseFormat::Text)
        );
        assert_eq!(
            rf(json!({"type": "json_object"})).unwrap().response_format,
            Some(ResponseFormat::JsonObject)
        );
        assert_eq!(
            param_of(rf(json!({"type": "json_schema"})).unwrap_err()).0,
            "response_format.json_schema"
        );
        assert_eq!(
            param_of(
                rf(json!({"type": "json_schema", "json_schema": {"schema": {}}})).unwrap_err()
            )
            .0,
            "response_format.json_schema.name"
        );
        assert_eq!(
            param_of(rf(json!({"type": "xml"})).unwrap_err()).0,
            "response_format.type"
        );
    }
}
