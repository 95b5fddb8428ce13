//! The incoming OpenAI chat-completions body, validated into a [`ChatRequest`].
//!
//! Every field that would change the answer is either honoured or refused with a
//! 400 naming it; fields that cannot change the answer are ignored.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::tools::{
    arguments_json, check_tool_name, check_unique_names, parameters_schema, CallBook, MAX_TOOLS,
};
use crate::validate::{
    as_str, bad, body_object, field, opt_bool, opt_max_tokens, opt_number_in, opt_object, opt_str,
    required, show, stop_list, text_items, unsupported, wrong_type, Obj,
};
use crate::{
    ChatRequest, GenerationOptions, Image, ImageDetail, Message, Part, ProviderError,
    ResponseFormat, Role, Tool, ToolCall, ToolChoice,
};

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

    let tools = parse_tools(obj)?;
    let tool_choice = parse_tool_choice(obj, &tools)?;
    let parallel_tool_calls = opt_bool(obj, "parallel_tool_calls", "parallel_tool_calls")?;

    let stream = opt_bool(obj, "stream", "stream")?.unwrap_or(false);
    let include_usage = match opt_object(obj, "stream_options", "stream_options")? {
        Some(o) => opt_bool(o, "include_usage", "stream_options.include_usage")?.unwrap_or(false),
        None => false,
    };

    let options = parse_options(obj)?;
    if let (Some(n), true) = (options.n, stream) {
        return Err(bad(
            "n",
            format!("\"n\": {n} is not supported with \"stream\": true; ask for one choice or do not stream"),
        ));
    }

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
        tools,
        tool_choice,
        parallel_tool_calls,
        embedding: None,
        options,
    })
}

/// The most choices one request may ask for (`n`).
pub const MAX_CHOICES: u64 = 8;

/// The fields of [`GenerationOptions`]: checked here for type and range;
/// whether the chosen target can honour them is decided at dispatch.
fn parse_options(obj: &Obj) -> Result<GenerationOptions, ProviderError> {
    let penalty = |key: &str| -> Result<Option<f32>, ProviderError> {
        Ok(opt_number_in(obj, key, -2.0, 2.0)?.filter(|v| *v != 0.0))
    };
    let mut logit_bias = BTreeMap::new();
    if let Some(m) = opt_object(obj, "logit_bias", "logit_bias")? {
        if m.len() > MAX_LOGIT_BIAS {
            return Err(bad(
                "logit_bias",
                format!(
                    "\"logit_bias\" accepts at most {MAX_LOGIT_BIAS} tokens, got {}",
                    m.len()
                ),
            ));
        }
        for (k, v) in m {
            let path = format!("logit_bias.{k}");
            if k.parse::<u32>().is_err() {
                return Err(bad(
                    "logit_bias",
                    format!("\"logit_bias\" keys are token ids, got {k:?}"),
                ));
            }
            let b = v.as_f64().ok_or_else(|| wrong_type(&path, "a number", v))?;
            if !(-100.0..=100.0).contains(&b) {
                return Err(bad(
                    "logit_bias",
                    format!("\"{path}\" must be between -100 and 100, got {}", show(v)),
                ));
            }
            logit_bias.insert(k.clone(), b as f32);
        }
    }
    let logprobs = opt_bool(obj, "logprobs", "logprobs")?.unwrap_or(false);
    let top_logprobs = match field(obj, "top_logprobs") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(0) => None,
            Some(k @ 1..=20) if logprobs => Some(k as u8),
            Some(1..=20) => {
                return Err(bad(
                    "top_logprobs",
                    "\"top_logprobs\" needs \"logprobs\": true".into(),
                ))
            }
            _ => {
                return Err(bad(
                    "top_logprobs",
                    format!(
                        "\"top_logprobs\" must be an integer from 0 to 20, got {}",
                        show(v)
                    ),
                ))
            }
        },
    };
    let n = match field(obj, "n") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(1) => None,
            Some(k @ 2..) if k <= MAX_CHOICES => Some(k as u32),
            _ => {
                return Err(bad(
                    "n",
                    format!(
                        "\"n\" must be an integer from 1 to {MAX_CHOICES}, got {}",
                        show(v)
                    ),
                ))
            }
        },
    };
    let text = |key: &str| -> Result<Option<String>, ProviderError> {
        Ok(opt_str(obj, key, key)?.map(str::to_owned))
    };
    Ok(GenerationOptions {
        frequency_penalty: penalty("frequency_penalty")?,
        presence_penalty: penalty("presence_penalty")?,
        logit_bias,
        logprobs,
        top_logprobs,
        n,
        reasoning_effort: text("reasoning_effort")?,
        verbosity: text("verbosity")?,
        service_tier: text("service_tier")?,
        prompt_cache_key: text("prompt_cache_key")?,
        safety_identifier: text("safety_identifier")?,
        store: opt_bool(obj, "store", "store")?,
    })
}

/// The most tokens one `logit_bias` may name (OpenAI's own limit is 300).
const MAX_LOGIT_BIAS: usize = 300;

/// Fields that change the answer and that no backend here supports yet. They are
/// refused only when set to something other than their default.
fn reject_unsupported(obj: &Obj) -> Result<(), ProviderError> {
    let non_empty = |v: &Value| match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    };
    // The legacy `functions` / `function_call` pair predates `tools`; clients
    // that still send it are told to use `tools`.
    if let Some(v) = field(obj, "functions").filter(|v| non_empty(v)) {
        return Err(unsupported("functions", v));
    }
    if let Some(v) = field(obj, "function_call") {
        if !matches!(v.as_str(), Some("none" | "auto")) {
            return Err(unsupported("function_call", v));
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
    let messages: Vec<Message> = items
        .iter()
        .enumerate()
        .map(|(i, m)| parse_message(i, m))
        .collect::<Result<_, _>>()?;
    let mut book = CallBook::default();
    for (i, m) in messages.iter().enumerate() {
        for (j, call) in m.tool_calls.iter().enumerate() {
            book.call(&call.id, &format!("messages[{i}].tool_calls[{j}].id"))?;
        }
        if let Some(id) = &m.tool_call_id {
            book.answer(id, &format!("messages[{i}].tool_call_id"))?;
        }
    }
    Ok(messages)
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
        "tool" => Role::Tool,
        _ => {
            return Err(bad(
                &role_path,
                format!("unsupported role {} in \"{role_path}\"", show(role_value)),
            ))
        }
    };
    for key in ["function_call", "audio"] {
        if let Some(v) = field(obj, key) {
            return Err(unsupported(&format!("{at}.{key}"), v));
        }
    }
    let tool_calls = match field(obj, "tool_calls") {
        None => Vec::new(),
        Some(Value::Array(a)) if a.is_empty() => Vec::new(),
        Some(v) if role == Role::Assistant => parse_tool_calls(v, &format!("{at}.tool_calls"))?,
        Some(v) => {
            return Err(bad(
                &format!("{at}.tool_calls"),
                format!(
                    "only assistant messages may carry \"{at}.tool_calls\", got {}",
                    show(v)
                ),
            ))
        }
    };
    let tool_call_id = if role == Role::Tool {
        let path = format!("{at}.tool_call_id");
        Some(as_str(required(obj, "tool_call_id", &path)?, &path)?.to_owned())
    } else {
        None
    };
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
        Some(Value::Array(items)) if role == Role::User => {
            let mut m = Message::from_parts(role, content_parts(items, &content_path)?);
            m.tool_calls = tool_calls;
            m.tool_call_id = tool_call_id;
            return Ok(m);
        }
        Some(Value::Array(parts)) => text_items(parts, &content_path, "content part")?,
        Some(other) => {
            return Err(wrong_type(
                &content_path,
                "a string or an array of content parts",
                other,
            ))
        }
    };
    Ok(Message {
        role,
        content,
        parts: Vec::new(),
        tool_calls,
        tool_call_id,
        tool_error: false,
    })
}

/// A user message's content parts: `text` and `image_url`
/// (`{"url": "https://..." | "data:image/png;base64,...", "detail"}`).
fn content_parts(items: &[Value], path: &str) -> Result<Vec<Part>, ProviderError> {
    let mut out = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let at = format!("{path}[{j}]");
        let obj = item
            .as_object()
            .ok_or_else(|| wrong_type(&at, "an object", item))?;
        let type_path = format!("{at}.type");
        let ty = required(obj, "type", &type_path)?;
        match as_str(ty, &type_path)? {
            "text" => {
                let text_path = format!("{at}.text");
                out.push(Part::Text(
                    as_str(required(obj, "text", &text_path)?, &text_path)?.to_owned(),
                ));
            }
            "image_url" => {
                let ip = format!("{at}.image_url");
                let img = opt_object(obj, "image_url", &ip)?
                    .ok_or_else(|| bad(&ip, format!("missing required field \"{ip}\"")))?;
                let up = format!("{ip}.url");
                let url = as_str(required(img, "url", &up)?, &up)?;
                let dp = format!("{ip}.detail");
                let detail = opt_str(img, "detail", &dp)?
                    .map(|d| ImageDetail::parse(d, &dp))
                    .transpose()?;
                out.push(Part::Image(Image::from_url(url, detail, &up)?));
            }
            _ => {
                return Err(bad(
                    &type_path,
                    format!(
                        "unsupported content part type {} in \"{type_path}\"",
                        show(ty)
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// An assistant message's `tool_calls`.
fn parse_tool_calls(v: &Value, path: &str) -> Result<Vec<ToolCall>, ProviderError> {
    let items = v
        .as_array()
        .ok_or_else(|| wrong_type(path, "an array", v))?;
    let mut out = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let at = format!("{path}[{j}]");
        let call = item
            .as_object()
            .ok_or_else(|| wrong_type(&at, "an object", item))?;
        if let Some(ty) = opt_str(call, "type", &format!("{at}.type"))? {
            if ty != "function" {
                return Err(unsupported(&format!("{at}.type"), &Value::from(ty)));
            }
        }
        let id_path = format!("{at}.id");
        let id = as_str(required(call, "id", &id_path)?, &id_path)?;
        let f_path = format!("{at}.function");
        let f = required(call, "function", &f_path)?
            .as_object()
            .ok_or_else(|| bad(&f_path, format!("\"{f_path}\" must be an object")))?;
        let name_path = format!("{f_path}.name");
        let name = as_str(required(f, "name", &name_path)?, &name_path)?;
        let args_path = format!("{f_path}.arguments");
        let arguments = match field(f, "arguments") {
            None => Value::Object(Default::default()),
            Some(Value::String(s)) => arguments_json(s, &args_path)?,
            Some(other) => return Err(wrong_type(&args_path, "a json string", other)),
        };
        out.push(ToolCall {
            id: id.to_owned(),
            name: name.to_owned(),
            arguments,
        });
    }
    Ok(out)
}

/// `tools`: function tools only.
fn parse_tools(obj: &Obj) -> Result<Vec<Tool>, ProviderError> {
    let Some(v) = field(obj, "tools") else {
        return Ok(Vec::new());
    };
    let items = v
        .as_array()
        .ok_or_else(|| wrong_type("tools", "an array", v))?;
    if items.len() > MAX_TOOLS {
        return Err(bad(
            "tools",
            format!(
                "\"tools\" accepts at most {MAX_TOOLS} tools, got {}",
                items.len()
            ),
        ));
    }
    let mut tools = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("tools[{i}]");
        let t = item
            .as_object()
            .ok_or_else(|| wrong_type(&at, "an object", item))?;
        let ty_path = format!("{at}.type");
        let ty = required(t, "type", &ty_path)?;
        if as_str(ty, &ty_path)? != "function" {
            return Err(bad(
                &ty_path,
                format!(
                    "unsupported tool type {} in \"{ty_path}\" (only \"function\")",
                    show(ty)
                ),
            ));
        }
        let f_path = format!("{at}.function");
        let f = opt_object(t, "function", &f_path)?
            .ok_or_else(|| bad(&f_path, format!("missing required field \"{f_path}\"")))?;
        let name_path = format!("{f_path}.name");
        let name = as_str(required(f, "name", &name_path)?, &name_path)?;
        check_tool_name(name, &name_path)?;
        tools.push(Tool {
            name: name.to_owned(),
            description: opt_str(f, "description", &format!("{f_path}.description"))?
                .map(str::to_owned),
            parameters: parameters_schema(field(f, "parameters"), &format!("{f_path}.parameters"))?,
            strict: opt_bool(f, "strict", &format!("{f_path}.strict"))?,
        });
    }
    check_unique_names(
        tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), format!("tools[{i}].function.name"))),
    )?;
    Ok(tools)
}

/// `tool_choice`: `none`, `auto`, `required` or one named function, which
/// must be among `tools`.
fn parse_tool_choice(obj: &Obj, tools: &[Tool]) -> Result<Option<ToolChoice>, ProviderError> {
    let Some(v) = field(obj, "tool_choice") else {
        return Ok(None);
    };
    let choice = match v {
        Value::String(s) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            _ => {
                return Err(bad(
                    "tool_choice",
                    format!(
                        "unsupported \"tool_choice\" {}: use \"none\", \"auto\", \"required\" or a named function",
                        show(v)
                    ),
                ))
            }
        },
        Value::Object(o) => {
            let ty = o.get("type").and_then(Value::as_str);
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str);
            match (ty, name) {
                (Some("function"), Some(name)) => ToolChoice::Named(name.to_owned()),
                _ => {
                    return Err(bad(
                        "tool_choice",
                        format!(
                            "\"tool_choice\" must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, got {}",
                            show(v)
                        ),
                    ))
                }
            }
        }
        other => return Err(wrong_type("tool_choice", "a string or an object", other)),
    };
    match &choice {
        ToolChoice::None | ToolChoice::Auto => {}
        ToolChoice::Required if tools.is_empty() => {
            return Err(bad(
                "tool_choice",
                "\"tool_choice\" \"required\" needs \"tools\"".into(),
            ))
        }
        ToolChoice::Required => {}
        ToolChoice::Named(name) => {
            if !tools.iter().any(|t| &t.name == name) {
                return Err(bad(
                    "tool_choice",
                    format!("\"tool_choice\" names \"{name}\", which is not in \"tools\""),
                ));
            }
        }
    }
    Ok(Some(choice))
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
            reject(with("n", json!(9))),
            (
                "n".into(),
                "\"n\" must be an integer from 1 to 8, got 9".into()
            )
        );
        assert_eq!(reject(with("n", json!(0))).0, "n");
        assert_eq!(
            reject(with("presence_penalty", json!(2.5))).0,
            "presence_penalty"
        );
        assert_eq!(
            reject(with("frequency_penalty", json!("x"))).0,
            "frequency_penalty"
        );
        assert_eq!(
            reject(with("logit_bias", json!({"abc": 1}))).0,
            "logit_bias"
        );
        assert_eq!(
            reject(with("logit_bias", json!({"5": 101}))).0,
            "logit_bias"
        );
        assert_eq!(reject(with("top_logprobs", json!(21))).0, "top_logprobs");
        // Alternatives per token come only with the tokens' own log probabilities.
        assert_eq!(reject(with("top_logprobs", json!(3))).0, "top_logprobs");
        assert_eq!(reject(with("logprobs", json!("yes"))).0, "logprobs");
        assert_eq!(
            reject(with("reasoning_effort", json!(3))).0,
            "reasoning_effort"
        );
        assert_eq!(reject(with("store", json!("no"))).0, "store");
        assert_eq!(
            reject(with("stop", json!(["a", "b", "c", "d", "e"]))).0,
            "stop"
        );
        assert_eq!(reject(with("seed", json!(1.5))).0, "seed");
    }

    #[test]
    fn generation_options_are_carried_and_defaults_are_not_settings() {
        let mut b = base();
        for (k, v) in [
            ("frequency_penalty", json!(0.5)),
            ("presence_penalty", json!(-1)),
            ("logit_bias", json!({"50256": -100, "7": 2.5})),
            ("logprobs", json!(true)),
            ("top_logprobs", json!(3)),
            ("n", json!(2)),
            ("reasoning_effort", json!("low")),
            ("verbosity", json!("high")),
            ("service_tier", json!("flex")),
            ("prompt_cache_key", json!("k1")),
            ("safety_identifier", json!("u-hash")),
            ("store", json!(true)),
        ] {
            b[k] = v;
        }
        let req = parse_chat_request(&b).unwrap();
        let o = &req.options;
        assert_eq!(o.frequency_penalty, Some(0.5));
        assert_eq!(o.presence_penalty, Some(-1.0));
        assert_eq!(o.logit_bias.get("50256"), Some(&-100.0));
        assert_eq!(o.logit_bias.get("7"), Some(&2.5));
        assert!(o.logprobs);
        assert_eq!(o.top_logprobs, Some(3));
        assert_eq!(o.n, Some(2));
        assert_eq!(o.reasoning_effort.as_deref(), Some("low"));
        assert_eq!(o.verbosity.as_deref(), Some("high"));
        assert_eq!(o.service_tier.as_deref(), Some("flex"));
        assert_eq!(o.prompt_cache_key.as_deref(), Some("k1"));
        assert_eq!(o.safety_identifier.as_deref(), Some("u-hash"));
        assert_eq!(o.store, Some(true));
        assert_eq!(o.set_fields(), GenerationOptions::FIELDS.to_vec());
        // Defaults are no setting any backend must refuse.
        let mut d = base();
        for (k, v) in [
            ("frequency_penalty", json!(0)),
            ("presence_penalty", json!(0.0)),
            ("logit_bias", json!({})),
            ("logprobs", json!(false)),
            ("top_logprobs", json!(0)),
            ("n", json!(1)),
            ("store", json!(false)),
        ] {
            d[k] = v;
        }
        let req = parse_chat_request(&d).unwrap();
        assert!(req.requested_options().is_empty(), "{:?}", req.options);
        assert_eq!(req.options.store, Some(false), "kept to pass on");
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
                    {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}
                ]}
            ]),
        );
        assert_eq!(
            reject(body),
            (
                "messages[2].content[0].type".into(),
                "unsupported content part type \"input_audio\" in \"messages[2].content[0].type\""
                    .into()
            )
        );
        // Images are user content only.
        let body = with(
            "messages",
            json!([{"role": "system", "content": [
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
            ]}]),
        );
        assert_eq!(reject(body).0, "messages[0].content[0].type");
    }

    #[test]
    fn image_parts_keep_their_place_and_bad_ones_name_the_field() {
        let png = format!("data:image/png;base64,{}", crate::image::PNG_1X1);
        let req = parse_chat_request(&with(
            "messages",
            json!([{"role": "user", "content": [
                {"type": "text", "text": "compare"},
                {"type": "image_url", "image_url": {"url": "https://e.com/a.jpg", "detail": "low"}},
                {"type": "text", "text": "with"},
                {"type": "image_url", "image_url": {"url": png}}
            ]}]),
        ))
        .unwrap();
        assert!(req.has_images() && req.has_uninspectable());
        let m = &req.messages[0];
        assert_eq!(m.content, "");
        assert_eq!(m.text(), "compare\nwith");
        let kinds: Vec<String> = m
            .pieces()
            .map(|p| match p {
                crate::Piece::Text(t) => t.to_owned(),
                crate::Piece::Image(i) => format!("[{}]", i.field),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "compare",
                "[messages[0].content[1].image_url.url]",
                "with",
                "[messages[0].content[3].image_url.url]"
            ]
        );
        let first = m.images().next().unwrap();
        assert_eq!(first.detail, Some(crate::ImageDetail::Low));
        // The URL is an outbound text; inline bytes are not.
        let texts: Vec<&str> = req.outbound_texts().iter().map(|t| t.text).collect();
        assert!(texts.contains(&"https://e.com/a.jpg"));
        assert!(!texts.iter().any(|t| t.contains(crate::image::PNG_1X1)));
        let bad = |part: Value| {
            reject(with(
                "messages",
                json!([{"role": "user", "content": [{"type": "text", "text": "x"}, part]}]),
            ))
        };
        let p = "messages[0].content[1].image_url.url";
        assert_eq!(
            bad(json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,!!"}})).0,
            p
        );
        assert_eq!(
            bad(
                json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}})
            )
            .0,
            p
        );
        assert_eq!(
            bad(json!({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}})).0,
            p
        );
        assert_eq!(
            bad(json!({"type": "image_url", "image_url": {"url": "https://e.com/a.png", "detail": "max"}})).0,
            "messages[0].content[1].image_url.detail"
        );
        assert_eq!(
            bad(json!({"type": "image_url"})).0,
            "messages[0].content[1].image_url"
        );
        // A text-only array is still flattened into `content`.
        let req = parse_chat_request(&with(
            "messages",
            json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]),
        ))
        .unwrap();
        assert_eq!(req.messages[0].content, "a\nb");
        assert!(req.messages[0].parts.is_empty() && !req.has_images());
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
        // A tool result needs an earlier call.
        assert_eq!(
            reject(with(
                "messages",
                json!([{"role": "tool", "content": "r", "tool_call_id": "c"}])
            ))
            .0,
            "messages[0].tool_call_id"
        );
        assert_eq!(
            reject(with(
                "messages",
                json!([{"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function"}]}])
            ))
            .0,
            "messages[0].tool_calls[0].function"
        );
    }

    fn weather_tool() -> Value {
        json!({"type": "function", "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }})
    }

    #[test]
    fn tools_calls_and_results_as_the_openai_sdk_sends_them() {
        let body: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/openai_request_tools.json"
        ))
        .unwrap();
        let req = parse_chat_request(&body).unwrap();
        assert_eq!(req.tools.len(), 1);
        assert_eq!(req.tools[0].name, "get_weather");
        assert_eq!(
            req.tools[0].description.as_deref(),
            Some("Weather for a city")
        );
        assert_eq!(req.tools[0].parameters["required"], json!(["city"]));
        assert_eq!(req.tool_choice, Some(ToolChoice::Auto));
        assert_eq!(req.parallel_tool_calls, Some(false));
        assert_eq!(req.messages[1].role, Role::Assistant);
        assert_eq!(
            req.messages[1].tool_calls,
            vec![ToolCall {
                id: "call_abc123".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"}),
            }]
        );
        assert_eq!(req.messages[2].role, Role::Tool);
        assert_eq!(req.messages[2].tool_call_id.as_deref(), Some("call_abc123"));
        assert_eq!(req.messages[2].content, "18C and sunny");
        assert!(req.needs_tools());
    }

    #[test]
    fn tool_choices_and_bad_tools_name_the_field() {
        let with_tools = |choice: Value| {
            let mut b = with("tools", json!([weather_tool()]));
            b["tool_choice"] = choice;
            b
        };
        for (v, want) in [
            (json!("none"), ToolChoice::None),
            (json!("auto"), ToolChoice::Auto),
            (json!("required"), ToolChoice::Required),
            (
                json!({"type": "function", "function": {"name": "get_weather"}}),
                ToolChoice::Named("get_weather".into()),
            ),
        ] {
            assert_eq!(
                parse_chat_request(&with_tools(v)).unwrap().tool_choice,
                Some(want)
            );
        }
        assert_eq!(
            reject(with_tools(
                json!({"type": "function", "function": {"name": "nope"}})
            ))
            .0,
            "tool_choice"
        );
        assert_eq!(
            reject(with("tool_choice", json!("required"))).0,
            "tool_choice"
        );
        assert_eq!(reject(with_tools(json!("sometimes"))).0, "tool_choice");
        let mut t = weather_tool();
        t["function"]["parameters"] = json!("a string");
        let (param, msg) = reject(with("tools", json!([t])));
        assert_eq!(param, "tools[0].function.parameters");
        assert!(msg.contains("json schema object"), "{msg}");
        let mut t = weather_tool();
        t["function"]["parameters"] = json!({"type": "array"});
        assert_eq!(
            reject(with("tools", json!([t]))).0,
            "tools[0].function.parameters"
        );
        let mut t = weather_tool();
        t["function"]["name"] = json!("bad name");
        assert_eq!(
            reject(with("tools", json!([t]))).0,
            "tools[0].function.name"
        );
        assert_eq!(
            reject(with("tools", json!([weather_tool(), weather_tool()]))).0,
            "tools[1].function.name"
        );
        assert_eq!(
            reject(with("tools", json!([{"type": "web_search"}]))).0,
            "tools[0].type"
        );
    }

    #[test]
    fn tool_messages_must_answer_earlier_calls_with_matching_ids() {
        let call = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}
        ]});
        let msgs = |rest: Vec<Value>| {
            let mut m = vec![json!({"role": "user", "content": "weather?"}), call.clone()];
            m.extend(rest);
            let mut b = with("messages", Value::Array(m));
            b["tools"] = json!([weather_tool()]);
            b
        };
        let ok = msgs(vec![
            json!({"role": "tool", "tool_call_id": "call_1", "content": "cold"}),
        ]);
        assert!(parse_chat_request(&ok).is_ok());
        let (param, msg) = reject(msgs(vec![
            json!({"role": "tool", "tool_call_id": "call_2", "content": "cold"}),
        ]));
        assert_eq!(param, "messages[2].tool_call_id");
        assert!(msg.contains("answers no earlier tool call"), "{msg}");
        assert_eq!(
            reject(msgs(vec![json!({"role": "tool", "content": "cold"})])).0,
            "messages[2].tool_call_id"
        );
        assert_eq!(
            reject(msgs(vec![call.clone()])).0,
            "messages[2].tool_calls[0].id"
        );
        let mut bad_args = call.clone();
        bad_args["tool_calls"][0]["function"]["arguments"] = json!("{not json");
        assert_eq!(
            reject(msgs(vec![bad_args])).0,
            "messages[2].tool_calls[0].function.arguments"
        );
        assert_eq!(
            reject(with(
                "messages",
                json!([{"role": "user", "content": "x", "tool_calls": [call["tool_calls"][0].clone()]}])
            ))
            .0,
            "messages[0].tool_calls"
        );
        // An empty list is no calls, on any role.
        assert!(parse_chat_request(&with(
            "messages",
            json!([{"role": "user", "content": "x", "tool_calls": []}])
        ))
        .is_ok());
    }

    #[test]
    fn unsupported_fields_with_non_default_values_are_named() {
        for (k, v) in [
            ("functions", json!([{"name": "f"}])),
            ("function_call", json!({"name": "f"})),
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
