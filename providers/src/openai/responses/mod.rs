//! The OpenAI Responses wire format (`POST /v1/responses`), stateless: a
//! Responses body validated into the canonical [`ChatRequest`]
//! ([`parse_responses_request`]), and answers written as a `response` object
//! or its event stream (`answer.rs`).
//!
//! Every text a Responses body carries lands in the canonical request
//! (`instructions` as the first system message, input items as messages,
//! tools, the `text.format` schema, `metadata`, `user`), so the privacy
//! classifier, which reads `ChatRequest::outbound_texts`, sees all of it.
//! Fields that need a stored conversation (`previous_response_id`, `store:
//! true`, `background`) are refused, as is every field this adapter does not
//! know: nothing is dropped without a word.

mod answer;

pub use answer::{response_json, ResponsesStreamEncoder};

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::tools::{
    arguments_json, check_tool_name, check_unique_names, parameters_schema, CallBook, MAX_TOOLS,
};
use crate::validate::{
    as_str, bad, body_object, field, opt_bool, opt_max_tokens, opt_number_in, opt_object, opt_str,
    required, show, unsupported, wrong_type, Obj,
};
use crate::{
    ChatRequest, Image, ImageDetail, Message, Part, ProviderError, ResponseFormat, Role, Tool,
    ToolCall, ToolChoice,
};

/// A validated Responses request: the canonical request the pipeline runs,
/// and the request's settings as the answer object echoes them back.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesRequest {
    pub chat: ChatRequest,
    /// `instructions`, `tools`, `tool_choice`, `text`, `temperature`, … as
    /// the client sent them (defaults filled in), for the `response` object.
    pub echo: Map<String, Value>,
}

/// The fields this adapter reads. Anything else is refused by name.
const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "text",
    "reasoning",
    "max_output_tokens",
    "temperature",
    "top_p",
    "metadata",
    "user",
    "parallel_tool_calls",
    "stream",
    "store",
    "previous_response_id",
    "include",
];

/// `include` values that can be honoured: encrypted reasoning items (what a
/// stateless client such as the Vercel AI SDK with `store: false` asks for)
/// are included whenever an answer has them, and no answer here has any.
const INCLUDABLE: &[&str] = &["reasoning.encrypted_content"];

/// Validate a Responses body.
pub fn parse_responses_request(body: &Value) -> Result<ResponsesRequest, ProviderError> {
    let obj = body_object(body)?;
    refuse_stateful(obj)?;
    if let Some((key, v)) = obj
        .iter()
        .find(|(k, v)| !v.is_null() && !KNOWN.contains(&k.as_str()))
    {
        return Err(bad(
            key,
            format!(
                "\"{key}\" is not supported on /v1/responses, got {}",
                show(v)
            ),
        ));
    }
    let model = as_str(required(obj, "model", "model")?, "model")?;
    if model.is_empty() {
        return Err(bad("model", "\"model\" must not be empty".into()));
    }

    let mut messages = Vec::new();
    let instructions = opt_str(obj, "instructions", "instructions")?;
    if let Some(text) = instructions.filter(|s| !s.is_empty()) {
        messages.push(Message::new(Role::System, text));
    }
    messages.extend(parse_input(required(obj, "input", "input")?)?);
    if !messages.iter().any(|m| m.role != Role::System) {
        return Err(bad(
            "input",
            "\"input\" must hold at least one item besides instructions".into(),
        ));
    }

    check_include(obj)?;
    let (reasoning, reasoning_effort) = parse_reasoning(obj)?;
    let max_tokens = opt_max_tokens(obj, "max_output_tokens")?;
    let temperature = opt_number_in(obj, "temperature", 0.0, 2.0)?;
    let top_p = opt_number_in(obj, "top_p", 0.0, 1.0)?;
    let mut metadata = BTreeMap::new();
    if let Some(meta) = opt_object(obj, "metadata", "metadata")? {
        for (k, v) in meta {
            metadata.insert(k.clone(), as_str(v, &format!("metadata.{k}"))?.to_owned());
        }
    }
    let user = opt_str(obj, "user", "user")?.map(str::to_owned);
    let tools = parse_tools(obj)?;
    let tool_choice = parse_tool_choice(obj, &tools)?;
    let parallel_tool_calls = opt_bool(obj, "parallel_tool_calls", "parallel_tool_calls")?;
    let (response_format, text_echo) = parse_text(obj)?;
    let stream = opt_bool(obj, "stream", "stream")?.unwrap_or(false);

    let mut echo = Map::new();
    echo.insert("instructions".into(), json!(instructions));
    echo.insert("max_output_tokens".into(), json!(max_tokens));
    echo.insert("temperature".into(), json!(temperature.map(f64::from)));
    echo.insert("top_p".into(), json!(top_p.map(f64::from)));
    echo.insert("metadata".into(), json!(metadata));
    echo.insert("user".into(), json!(user));
    echo.insert(
        "parallel_tool_calls".into(),
        json!(parallel_tool_calls.unwrap_or(true)),
    );
    echo.insert(
        "tools".into(),
        field(obj, "tools").cloned().unwrap_or_else(|| json!([])),
    );
    echo.insert(
        "tool_choice".into(),
        field(obj, "tool_choice")
            .cloned()
            .unwrap_or_else(|| json!("auto")),
    );
    echo.insert("text".into(), text_echo);
    echo.insert("reasoning".into(), reasoning);

    Ok(ResponsesRequest {
        chat: ChatRequest {
            model: model.to_owned(),
            messages,
            max_tokens,
            temperature,
            top_p,
            stop: Vec::new(),
            seed: None,
            user,
            metadata,
            response_format,
            stream,
            // The pipeline always meters; the final event carries usage.
            include_usage: true,
            tools,
            tool_choice,
            parallel_tool_calls,
            embedding: None,
            options: crate::GenerationOptions {
                reasoning_effort,
                ..Default::default()
            },
        },
        echo,
    })
}

/// Where a chat option the canonical request carries sits in a Responses
/// body, for errors that name it: dispatch refuses an option a target
/// cannot honour by its chat name.
const OPTION_PATHS: &[(&str, &str)] = &[("reasoning_effort", "reasoning.effort")];

/// The Responses name of parameter `param` of an error: its path in the
/// Responses body where it differs from the chat name.
pub fn responses_param(param: &str) -> &str {
    OPTION_PATHS
        .iter()
        .find(|(chat, _)| *chat == param)
        .map_or(param, |(_, path)| path)
}

/// `previous_response_id` and `store: true` need a stored conversation, and
/// prompts and answers are never stored: both are refused by name.
fn refuse_stateful(obj: &Obj) -> Result<(), ProviderError> {
    if let Some(v) = field(obj, "previous_response_id") {
        return Err(bad(
            "previous_response_id",
            format!(
                "\"previous_response_id\" is not supported, got {}: this gateway stores no conversations; send the whole conversation in \"input\"",
                show(v)
            ),
        ));
    }
    match opt_bool(obj, "store", "store")? {
        Some(true) => Err(bad(
            "store",
            "\"store\": true is not supported: this gateway stores no responses; send \"store\": false or leave it out".into(),
        )),
        _ => Ok(()),
    }
}

/// `include`: more output data to return. Any value but those in
/// [`INCLUDABLE`] would ask for data no answer here carries, so it is refused.
fn check_include(obj: &Obj) -> Result<(), ProviderError> {
    let Some(v) = field(obj, "include") else {
        return Ok(());
    };
    let items = v
        .as_array()
        .ok_or_else(|| wrong_type("include", "an array of strings", v))?;
    for (i, item) in items.iter().enumerate() {
        let path = format!("include[{i}]");
        if !INCLUDABLE.contains(&as_str(item, &path)?) {
            return Err(bad(
                &path,
                format!(
                    "\"{path}\" {} is not supported (here: {})",
                    show(item),
                    INCLUDABLE.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// `reasoning`: `effort` becomes the canonical `reasoning_effort`, which
/// dispatch sends to targets that understand it (OpenAI's chat wire takes it
/// as `reasoning_effort`) and refuses by name (`reasoning.effort`, see
/// [`responses_param`]) for the others. No answer here carries a reasoning
/// summary, so `summary` is refused rather than dropped. Returns the echo
/// and the effort.
fn parse_reasoning(obj: &Obj) -> Result<(Value, Option<String>), ProviderError> {
    let Some(r) = opt_object(obj, "reasoning", "reasoning")? else {
        return Ok((json!({"effort": null, "summary": null}), None));
    };
    let mut effort = None;
    for (k, v) in r {
        if v.is_null() {
            continue;
        }
        let path = format!("reasoning.{k}");
        match k.as_str() {
            "effort" => {
                let e = as_str(v, &path)?;
                if e.is_empty() {
                    return Err(bad(&path, format!("\"{path}\" must not be empty")));
                }
                effort = Some(e.to_owned());
            }
            "summary" | "generate_summary" => {
                return Err(bad(
                    &path,
                    format!(
                        "\"{path}\" is not supported by any target of this gateway, got {}",
                        show(v)
                    ),
                ))
            }
            _ => return Err(unsupported(&path, v)),
        }
    }
    Ok((json!({"effort": effort, "summary": null}), effort))
}

/// `input`: a string (one user message) or a list of items.
fn parse_input(v: &Value) -> Result<Vec<Message>, ProviderError> {
    let items = match v {
        Value::String(s) => return Ok(vec![Message::new(Role::User, s.clone())]),
        Value::Array(items) => items,
        other => return Err(wrong_type("input", "a string or an array of items", other)),
    };
    if items.is_empty() {
        return Err(bad("input", "\"input\" must not be empty".into()));
    }
    let mut out: Vec<Message> = Vec::with_capacity(items.len());
    let mut book = CallBook::default();
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| wrong_type(&at, "an object", item))?;
        let ty_path = format!("{at}.type");
        let ty = match field(obj, "type") {
            Some(t) => as_str(t, &ty_path)?,
            // An item with a role and no type is a message (an easy input message).
            None => "message",
        };
        match ty {
            "message" => out.push(parse_message_item(obj, &at)?),
            "function_call" => {
                let call = parse_function_call(obj, &at)?;
                book.call(&call.id, &format!("{at}.call_id"))?;
                // Calls made together belong to one assistant turn, the
                // shape every chat wire wants; a call right after the
                // assistant's text joins that message.
                match out.last_mut() {
                    Some(m) if m.role == Role::Assistant => m.tool_calls.push(call),
                    _ => {
                        let mut m = Message::new(Role::Assistant, "");
                        m.tool_calls.push(call);
                        out.push(m);
                    }
                }
            }
            "function_call_output" => {
                check_keys(obj, &at, &["type", "call_id", "output", "id", "status"])?;
                let id_path = format!("{at}.call_id");
                let id = as_str(required(obj, "call_id", &id_path)?, &id_path)?;
                book.answer(id, &id_path)?;
                let out_path = format!("{at}.output");
                let text = match required(obj, "output", &out_path)? {
                    Value::String(s) => s.clone(),
                    Value::Array(parts) => content_text(parts, &out_path, &["input_text"])?,
                    other => {
                        return Err(wrong_type(
                            &out_path,
                            "a string or an array of input_text parts",
                            other,
                        ))
                    }
                };
                let mut m = Message::new(Role::Tool, text);
                m.tool_call_id = Some(id.to_owned());
                out.push(m);
            }
            _ => {
                return Err(bad(
                    &ty_path,
                    format!(
                        "unsupported input item type {} in \"{ty_path}\": use \"message\", \"function_call\" or \"function_call_output\"",
                        show(&Value::from(ty))
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// Refuses a key of an item this adapter does not read.
fn check_keys(obj: &Obj, at: &str, known: &[&str]) -> Result<(), ProviderError> {
    match obj
        .iter()
        .find(|(k, v)| !v.is_null() && !known.contains(&k.as_str()))
    {
        Some((k, v)) => Err(unsupported(&format!("{at}.{k}"), v)),
        None => Ok(()),
    }
}

fn parse_message_item(obj: &Obj, at: &str) -> Result<Message, ProviderError> {
    // `id` and `status` come with an earlier answer's output item sent back.
    check_keys(obj, at, &["type", "role", "content", "id", "status"])?;
    let role_path = format!("{at}.role");
    let role_value = required(obj, "role", &role_path)?;
    let role = match as_str(role_value, &role_path)? {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" | "developer" => Role::System,
        _ => {
            return Err(bad(
                &role_path,
                format!("unsupported role {} in \"{role_path}\"", show(role_value)),
            ))
        }
    };
    let content_path = format!("{at}.content");
    let allowed: &[&str] = match role {
        Role::Assistant => &["output_text"],
        Role::User => &["input_text", "input_image"],
        _ => &["input_text"],
    };
    match required(obj, "content", &content_path)? {
        Value::String(s) => Ok(Message::new(role, s.clone())),
        Value::Array(parts) => Ok(Message::from_parts(
            role,
            content_parts(parts, &content_path, allowed)?,
        )),
        other => Err(wrong_type(
            &content_path,
            "a string or an array of content parts",
            other,
        )),
    }
}

/// The text of content parts of the `allowed` text types, joined by newlines.
fn content_text(parts: &[Value], path: &str, allowed: &[&str]) -> Result<String, ProviderError> {
    let texts: Vec<String> = content_parts(parts, path, allowed)?
        .into_iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t),
            Part::Image(_) => None,
        })
        .collect();
    Ok(texts.join("\n"))
}

/// An `input_image` part: `image_url` (an https URL or a data URI) and
/// `detail`; an uploaded `file_id` needs stored files, which this stateless
/// adapter has not.
fn input_image(obj: &Obj, at: &str) -> Result<Image, ProviderError> {
    check_keys(obj, at, &["type", "image_url", "detail", "file_id"])?;
    if let Some(v) = field(obj, "file_id") {
        return Err(unsupported(&format!("{at}.file_id"), v));
    }
    let up = format!("{at}.image_url");
    let url = as_str(required(obj, "image_url", &up)?, &up)?;
    let dp = format!("{at}.detail");
    let detail = opt_str(obj, "detail", &dp)?
        .map(|d| ImageDetail::parse(d, &dp))
        .transpose()?;
    Image::from_url(url, detail, &up)
}

/// Content parts of the `allowed` types, in order.
fn content_parts(
    parts: &[Value],
    path: &str,
    allowed: &[&str],
) -> Result<Vec<Part>, ProviderError> {
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let at = format!("{path}[{j}]");
        let obj = part
            .as_object()
            .ok_or_else(|| wrong_type(&at, "an object", part))?;
        let ty_path = format!("{at}.type");
        let ty_value = required(obj, "type", &ty_path)?;
        let ty = as_str(ty_value, &ty_path)?;
        if !allowed.contains(&ty) {
            return Err(bad(
                &ty_path,
                format!(
                    "unsupported content part type {} in \"{ty_path}\" (here: {})",
                    show(ty_value),
                    allowed.join(", ")
                ),
            ));
        }
        if ty == "input_image" {
            texts.push(Part::Image(input_image(obj, &at)?));
            continue;
        }
        // An output_text part sent back carries its annotations and logprobs.
        check_keys(obj, &at, &["type", "text", "annotations", "logprobs"])?;
        for key in ["annotations", "logprobs"] {
            if let Some(v) = field(obj, key).filter(|v| v.as_array().is_none_or(|a| !a.is_empty()))
            {
                return Err(unsupported(&format!("{at}.{key}"), v));
            }
        }
        let text_path = format!("{at}.text");
        texts.push(Part::Text(
            as_str(required(obj, "text", &text_path)?, &text_path)?.to_owned(),
        ));
    }
    Ok(texts)
}

fn parse_function_call(obj: &Obj, at: &str) -> Result<ToolCall, ProviderError> {
    check_keys(
        obj,
        at,
        &["type", "call_id", "name", "arguments", "id", "status"],
    )?;
    let id_path = format!("{at}.call_id");
    let id = as_str(required(obj, "call_id", &id_path)?, &id_path)?;
    let name_path = format!("{at}.name");
    let name = as_str(required(obj, "name", &name_path)?, &name_path)?;
    let args_path = format!("{at}.arguments");
    let arguments = match field(obj, "arguments") {
        None => Value::Object(Default::default()),
        Some(Value::String(s)) => arguments_json(s, &args_path)?,
        Some(other) => return Err(wrong_type(&args_path, "a json string", other)),
    };
    Ok(ToolCall {
        id: id.to_owned(),
        name: name.to_owned(),
        arguments,
    })
}

/// `tools`: function tools, in the Responses API's flat shape
/// (`{"type": "function", "name", "description", "parameters", "strict"}`).
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
        check_keys(
            t,
            &at,
            &["type", "name", "description", "parameters", "strict"],
        )?;
        let name_path = format!("{at}.name");
        let name = as_str(required(t, "name", &name_path)?, &name_path)?;
        check_tool_name(name, &name_path)?;
        tools.push(Tool {
            name: name.to_owned(),
            description: opt_str(t, "description", &format!("{at}.description"))?
                .map(str::to_owned),
            parameters: parameters_schema(field(t, "parameters"), &format!("{at}.parameters"))?,
            strict: opt_bool(t, "strict", &format!("{at}.strict"))?,
        });
    }
    check_unique_names(
        tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), format!("tools[{i}].name"))),
    )?;
    Ok(tools)
}

/// `tool_choice`: `none`, `auto`, `required` or `{"type": "function", "name"}`,
/// which must be among `tools`.
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
        Value::Object(o) => match (
            o.get("type").and_then(Value::as_str),
            o.get("name").and_then(Value::as_str),
        ) {
            (Some("function"), Some(name)) if o.len() == 2 => ToolChoice::Named(name.to_owned()),
            _ => {
                return Err(bad(
                    "tool_choice",
                    format!(
                        "\"tool_choice\" must be {{\"type\": \"function\", \"name\": ...}}, got {}",
                        show(v)
                    ),
                ))
            }
        },
        other => return Err(wrong_type("tool_choice", "a string or an object", other)),
    };
    match &choice {
        ToolChoice::Required if tools.is_empty() => {
            return Err(bad(
                "tool_choice",
                "\"tool_choice\" \"required\" needs \"tools\"".into(),
            ))
        }
        ToolChoice::Named(name) if !tools.iter().any(|t| &t.name == name) => {
            return Err(bad(
                "tool_choice",
                format!("\"tool_choice\" names \"{name}\", which is not in \"tools\""),
            ))
        }
        _ => {}
    }
    Ok(Some(choice))
}

/// `text.format`: `text`, `json_object` or `json_schema` (`name`, `schema`,
/// `strict`), as the canonical response format; returns the echo too.
fn parse_text(obj: &Obj) -> Result<(Option<ResponseFormat>, Value), ProviderError> {
    let default_echo = json!({"format": {"type": "text"}});
    let Some(text) = opt_object(obj, "text", "text")? else {
        return Ok((None, default_echo));
    };
    check_keys(text, "text", &["format"])?;
    let Some(f) = opt_object(text, "format", "text.format")? else {
        return Ok((None, default_echo));
    };
    let ty_value = required(f, "type", "text.format.type")?;
    let format = match as_str(ty_value, "text.format.type")? {
        "text" => {
            check_keys(f, "text.format", &["type"])?;
            ResponseFormat::Text
        }
        "json_object" => {
            check_keys(f, "text.format", &["type"])?;
            ResponseFormat::JsonObject
        }
        "json_schema" => {
            check_keys(f, "text.format", &["type", "name", "schema", "strict"])?;
            let name = as_str(
                required(f, "name", "text.format.name")?,
                "text.format.name",
            )?;
            let schema = match required(f, "schema", "text.format.schema")? {
                s @ Value::Object(_) => s.clone(),
                other => return Err(wrong_type("text.format.schema", "an object", other)),
            };
            ResponseFormat::JsonSchema {
                name: name.to_owned(),
                schema,
                strict: opt_bool(f, "strict", "text.format.strict")?.unwrap_or(false),
            }
        }
        _ => {
            return Err(bad(
                "text.format.type",
                format!(
                    "unsupported text format {} in \"text.format.type\": use \"text\", \"json_object\" or \"json_schema\"",
                    show(ty_value)
                ),
            ))
        }
    };
    Ok((Some(format), json!({ "format": Value::Object(f.clone()) })))
}

#[cfg(test)]
mod tests;
