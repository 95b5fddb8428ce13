//! The gateway's Anthropic-shaped surface (`/v1/messages`): validating a Messages
//! request into a [`ChatRequest`] and writing answers, streamed or not, exactly
//! as Anthropic does, so the official SDKs work unchanged.

use serde_json::{json, Value};

use crate::tools::{
    arguments_object, check_tool_name, check_unique_names, parameters_schema, CallBook, MAX_TOOLS,
};
use crate::validate::{
    as_str, bad, body_object, field, opt_bool, opt_max_tokens, opt_number_in, opt_object, required,
    show, stop_list, text_items, unsupported, wrong_type, Obj,
};
use crate::{
    ChatRequest, ChatResponse, Completion, ErrorCode, FinishReason, Image, Message, Part,
    ProviderError, Role, StreamEvent, Tool, ToolCall, ToolCallDelta, ToolChoice, Usage,
};

/// The most stop sequences a request may give.
const MAX_STOP_SEQUENCES: usize = 16;

/// Validate an Anthropic Messages body.
pub fn parse_messages_request(body: &Value) -> Result<ChatRequest, ProviderError> {
    let obj = body_object(body)?;
    reject_unsupported(obj)?;

    let model = as_str(required(obj, "model", "model")?, "model")?;
    if model.is_empty() {
        return Err(bad("model", "\"model\" must not be empty".into()));
    }
    required(obj, "max_tokens", "max_tokens")?;
    let max_tokens = opt_max_tokens(obj, "max_tokens")?;

    let mut messages = Vec::new();
    match field(obj, "system") {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => messages.push(Message::new(Role::System, s.clone())),
        Some(Value::Array(blocks)) => {
            let text = text_items(blocks, "system", "content block")?;
            if !text.is_empty() {
                messages.push(Message::new(Role::System, text));
            }
        }
        Some(other) => {
            return Err(wrong_type(
                "system",
                "a string or an array of text blocks",
                other,
            ))
        }
    }

    let list_value = required(obj, "messages", "messages")?;
    let list = list_value
        .as_array()
        .ok_or_else(|| wrong_type("messages", "an array", list_value))?;
    if list.is_empty() {
        return Err(bad("messages", "\"messages\" must not be empty".into()));
    }
    let mut book = CallBook::default();
    for (i, m) in list.iter().enumerate() {
        messages.extend(parse_message(i, m, &mut book)?);
    }
    let tools = parse_tools(obj)?;
    let (tool_choice, parallel_tool_calls) = parse_tool_choice(obj, &tools)?;

    let stop = match field(obj, "stop_sequences") {
        None => Vec::new(),
        Some(v @ Value::Array(_)) => stop_list(v, "stop_sequences", MAX_STOP_SEQUENCES)?,
        Some(other) => return Err(wrong_type("stop_sequences", "an array of strings", other)),
    };

    let user = match opt_object(obj, "metadata", "metadata")? {
        Some(meta) => match field(meta, "user_id") {
            None => None,
            Some(v) => Some(as_str(v, "metadata.user_id")?.to_owned()),
        },
        None => None,
    };

    Ok(ChatRequest {
        model: model.to_owned(),
        messages,
        max_tokens,
        temperature: opt_number_in(obj, "temperature", 0.0, 1.0)?,
        top_p: opt_number_in(obj, "top_p", 0.0, 1.0)?,
        stop,
        seed: None,
        user,
        metadata: Default::default(),
        response_format: None,
        stream: opt_bool(obj, "stream", "stream")?.unwrap_or(false),
        // Anthropic streams always report usage.
        include_usage: true,
        tools,
        tool_choice,
        parallel_tool_calls,
        embedding: None,
        options: Default::default(),
    })
}

fn reject_unsupported(obj: &Obj) -> Result<(), ProviderError> {
    if let Some(v) = field(obj, "thinking") {
        if v.get("type").and_then(Value::as_str) != Some("disabled") {
            return Err(unsupported("thinking", v));
        }
    }
    for key in ["top_k", "mcp_servers", "container", "output_format"] {
        if let Some(v) = field(obj, key) {
            return Err(unsupported(key, v));
        }
    }
    Ok(())
}

/// `tools`: client tools (`custom`, the default type); Anthropic's server
/// tools (web search, code execution, ...) run at Anthropic and are refused.
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
        if let Some(ty) = field(t, "type") {
            if ty.as_str() != Some("custom") {
                return Err(bad(
                    &format!("{at}.type"),
                    format!(
                        "unsupported tool type {} in \"{at}.type\" (only client tools)",
                        show(ty)
                    ),
                ));
            }
        }
        let name_path = format!("{at}.name");
        let name = as_str(required(t, "name", &name_path)?, &name_path)?;
        check_tool_name(name, &name_path)?;
        let schema_path = format!("{at}.input_schema");
        let schema = required(t, "input_schema", &schema_path)?;
        let description = match field(t, "description") {
            None => None,
            Some(d) => Some(as_str(d, &format!("{at}.description"))?.to_owned()),
        };
        tools.push(Tool {
            name: name.to_owned(),
            description,
            parameters: parameters_schema(Some(schema), &schema_path)?,
            strict: None,
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

/// `tool_choice` (`auto`, `any`, `tool` with a name, `none`) and its
/// `disable_parallel_tool_use`, read as `parallel_tool_calls`.
fn parse_tool_choice(
    obj: &Obj,
    tools: &[Tool],
) -> Result<(Option<ToolChoice>, Option<bool>), ProviderError> {
    let Some(tc) = opt_object(obj, "tool_choice", "tool_choice")? else {
        return Ok((None, None));
    };
    let ty_value = required(tc, "type", "tool_choice.type")?;
    let choice = match as_str(ty_value, "tool_choice.type")? {
        "auto" => ToolChoice::Auto,
        "any" => ToolChoice::Required,
        "none" => ToolChoice::None,
        "tool" => {
            let name = as_str(
                required(tc, "name", "tool_choice.name")?,
                "tool_choice.name",
            )?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(bad(
                    "tool_choice.name",
                    format!("\"tool_choice.name\" names \"{name}\", which is not in \"tools\""),
                ));
            }
            ToolChoice::Named(name.to_owned())
        }
        _ => {
            return Err(bad(
                "tool_choice.type",
                format!(
                    "unsupported tool choice {} in \"tool_choice.type\" (use \"auto\", \"any\", \"tool\" or \"none\")",
                    show(ty_value)
                ),
            ))
        }
    };
    if matches!(choice, ToolChoice::Required) && tools.is_empty() {
        return Err(bad(
            "tool_choice.type",
            "\"tool_choice\" \"any\" needs \"tools\"".into(),
        ));
    }
    let disable = opt_bool(
        tc,
        "disable_parallel_tool_use",
        "tool_choice.disable_parallel_tool_use",
    )?;
    Ok((Some(choice), disable.map(|d| !d)))
}

/// One wire message as canonical messages: a user turn's `tool_result`
/// blocks become one `Tool` message each (then its text, if any, a user
/// message); an assistant turn's `tool_use` blocks become its tool calls.
fn parse_message(i: usize, v: &Value, book: &mut CallBook) -> Result<Vec<Message>, ProviderError> {
    let at = format!("messages[{i}]");
    let obj = v
        .as_object()
        .ok_or_else(|| wrong_type(&at, "an object", v))?;
    let role_path = format!("{at}.role");
    let role_value = required(obj, "role", &role_path)?;
    let role = match as_str(role_value, &role_path)? {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        _ => {
            return Err(bad(
                &role_path,
                format!(
                    "unsupported role {} in \"{role_path}\" (use \"user\" or \"assistant\"; the system prompt goes in \"system\")",
                    show(role_value)
                ),
            ))
        }
    };
    let content_path = format!("{at}.content");
    let blocks = match required(obj, "content", &content_path)? {
        Value::String(s) => return Ok(vec![Message::new(role, s.clone())]),
        Value::Array(blocks) => blocks,
        other => {
            return Err(wrong_type(
                &content_path,
                "a string or an array of content blocks",
                other,
            ))
        }
    };
    let mut texts = Vec::new();
    let mut results = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let bp = format!("{content_path}[{j}]");
        let b = block
            .as_object()
            .ok_or_else(|| wrong_type(&bp, "an object", block))?;
        let type_path = format!("{bp}.type");
        let ty = required(b, "type", &type_path)?;
        match (as_str(ty, &type_path)?, role) {
            ("text", _) => {
                let text_path = format!("{bp}.text");
                texts.push(Part::Text(
                    as_str(required(b, "text", &text_path)?, &text_path)?.to_owned(),
                ));
            }
            ("image", Role::User) => texts.push(Part::Image(image_block(b, &bp)?)),
            ("tool_use", Role::Assistant) => {
                let id_path = format!("{bp}.id");
                let id = as_str(required(b, "id", &id_path)?, &id_path)?;
                book.call(id, &id_path)?;
                let name_path = format!("{bp}.name");
                let name = as_str(required(b, "name", &name_path)?, &name_path)?;
                let input_path = format!("{bp}.input");
                let input = match field(b, "input") {
                    None => Value::Object(Default::default()),
                    Some(v @ Value::Object(_)) => v.clone(),
                    Some(other) => return Err(wrong_type(&input_path, "an object", other)),
                };
                calls.push(ToolCall {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    arguments: input,
                });
            }
            ("tool_result", Role::User) => {
                let id_path = format!("{bp}.tool_use_id");
                let id = as_str(required(b, "tool_use_id", &id_path)?, &id_path)?;
                book.answer(id, &id_path)?;
                let result_path = format!("{bp}.content");
                let text = match field(b, "content") {
                    None => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(items)) => text_items(items, &result_path, "content block")?,
                    Some(other) => {
                        return Err(wrong_type(
                            &result_path,
                            "a string or an array of text blocks",
                            other,
                        ))
                    }
                };
                let mut m = Message::new(Role::Tool, text);
                m.tool_call_id = Some(id.to_owned());
                m.tool_error = opt_bool(b, "is_error", &format!("{bp}.is_error"))?.unwrap_or(false);
                results.push(m);
            }
            _ => {
                return Err(bad(
                    &type_path,
                    format!(
                        "unsupported content block type {} in \"{type_path}\" for role \"{}\"",
                        show(ty),
                        role.as_str()
                    ),
                ))
            }
        }
    }
    let m = Message::from_parts(role, texts);
    let mut out = results;
    if role == Role::Assistant {
        let mut m = m;
        m.tool_calls = calls;
        out.push(m);
    } else if !m.content.is_empty() || !m.parts.is_empty() || out.is_empty() {
        out.push(m);
    }
    Ok(out)
}

/// An `image` block's `source`: `{"type":"base64","media_type","data"}` or
/// `{"type":"url","url"}`.
fn image_block(b: &Obj, bp: &str) -> Result<Image, ProviderError> {
    let sp = format!("{bp}.source");
    let source = opt_object(b, "source", &sp)?
        .ok_or_else(|| bad(&sp, format!("missing required field \"{sp}\"")))?;
    let tp = format!("{sp}.type");
    let ty = required(source, "type", &tp)?;
    match as_str(ty, &tp)? {
        "base64" => {
            let mp = format!("{sp}.media_type");
            let media_type = as_str(required(source, "media_type", &mp)?, &mp)?;
            let dp = format!("{sp}.data");
            let data = as_str(required(source, "data", &dp)?, &dp)?;
            Image::from_base64(media_type, data, &dp)
        }
        "url" => {
            let up = format!("{sp}.url");
            Image::from_plain_url(as_str(required(source, "url", &up)?, &up)?, &up)
        }
        _ => Err(bad(
            &tp,
            format!(
                "unsupported image source type {} in \"{tp}\" (\"base64\" or \"url\")",
                show(ty)
            ),
        )),
    }
}

/// The wire `stop_reason` and `stop_sequence` of an answer: `stop_sequence`
/// with the matched string when the backend said (or it could be told) which
/// one ended it, else `end_turn`.
fn stop_fields(done: &Completion) -> (&'static str, Value) {
    match (&done.stop_sequence, done.finish_reason) {
        (Some(s), FinishReason::Stop) => ("stop_sequence", json!(s)),
        (_, reason) => (stop_reason_str(reason), Value::Null),
    }
}

fn stop_reason_str(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Cancelled => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ContentFilter => "refusal",
        FinishReason::ToolCalls => "tool_use",
    }
}

/// Anthropic usage: `input_tokens` counts the prompt tokens not read from cache.
fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens.saturating_sub(u.cached_prompt_tokens),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": u.cached_prompt_tokens,
        "output_tokens": u.completion_tokens,
    })
}

/// An answer's content: its text (also when empty, if there is nothing
/// else), then one `tool_use` block per call.
fn content_blocks(resp: &ChatResponse) -> Value {
    let mut blocks = Vec::new();
    if !resp.text.is_empty() || resp.tool_calls.is_empty() {
        blocks.push(json!({"type": "text", "text": resp.text}));
    }
    for c in &resp.tool_calls {
        blocks.push(json!({
            "type": "tool_use",
            "id": c.id,
            "name": c.name,
            "input": arguments_object(&c.arguments),
        }));
    }
    Value::Array(blocks)
}

/// A complete Messages API answer.
pub fn messages_response_json(id: &str, model: &str, resp: &ChatResponse) -> Value {
    let (stop_reason, stop_sequence) = stop_fields(&resp.done);
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content_blocks(resp),
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_json(&resp.done.usage),
    })
}

/// The Anthropic error type for an error code.
fn error_type(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::MissingCapability
        | ErrorCode::PayloadTooLarge
        | ErrorCode::MethodNotAllowed => "invalid_request_error",
        ErrorCode::Unauthorized => "authentication_error",
        ErrorCode::PolicyDenied => "permission_error",
        ErrorCode::NotFound | ErrorCode::UnknownEndpoint => "not_found_error",
        ErrorCode::BudgetExceeded | ErrorCode::RateLimited => "rate_limit_error",
        ErrorCode::Overloaded
        | ErrorCode::UpstreamUnavailable
        | ErrorCode::LedgerUnavailable
        | ErrorCode::ShuttingDown => "overloaded_error",
        ErrorCode::UpstreamError
        | ErrorCode::UpstreamTimeout
        | ErrorCode::Cancelled
        | ErrorCode::Internal => "api_error",
    }
}

/// An Anthropic-shaped error body: `{"type":"error","error":{"type","message"}}`.
pub fn error_json(code: ErrorCode, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type(code), "message": message}})
}

/// Writes one Anthropic-format stream as `(event name, data)` pairs: `start`,
/// then `on_event` for each canonical event, or `error` when the answer fails
/// after it started.
#[derive(Debug, Clone)]
pub struct MessagesStreamEncoder {
    id: String,
    model: String,
    /// The index of the open content block.
    block: u32,
    /// Whether the open block is a `tool_use` block, and for which call.
    tool: Option<u32>,
    /// The `input_tokens` message_start announced.
    input_tokens: u32,
}

impl MessagesStreamEncoder {
    pub fn new(id: &str, model: &str) -> Self {
        Self {
            id: id.to_owned(),
            model: model.to_owned(),
            block: 0,
            tool: None,
            input_tokens: 0,
        }
    }

    fn block_stop(&self) -> (&'static str, Value) {
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": self.block}),
        )
    }

    /// message_start, content_block_start and ping. `input_tokens` is the best
    /// count known before generation (exact where the gateway can count it).
    ///
    /// message_delta repeats this number rather than the backend's final one:
    /// the SDKs build the final message from message_start and overwrite
    /// `input_tokens` only when message_delta carries it (the Python SDK since
    /// 0.50, older ones never), so two different numbers would leave the same
    /// answer with a different usage depending on the SDK's version and on
    /// whether the client read the start event. Holding message_start back
    /// until the backend reports its count would instead hold the whole answer
    /// back behind an OpenAI upstream, which reports usage only at the end.
    pub fn start(&mut self, input_tokens: u32) -> Vec<(&'static str, Value)> {
        self.input_tokens = input_tokens;
        vec![
            (
                "message_start",
                json!({
                    "type": "message_start",
                    "message": {
                        "id": self.id,
                        "type": "message",
                        "role": "assistant",
                        "model": self.model,
                        "content": [],
                        "stop_reason": null,
                        "stop_sequence": null,
                        "usage": {
                            "input_tokens": input_tokens,
                            "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 0,
                            "output_tokens": 1
                        }
                    }
                }),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ("ping", json!({"type": "ping"})),
        ]
    }

    /// A delta becomes a content_block_delta; the first piece of a tool call
    /// closes the open block and starts a `tool_use` block, whose argument
    /// text follows as `input_json_delta`; `Done` closes the block and the
    /// message, with the final usage in message_delta.
    pub fn on_event(&mut self, ev: &StreamEvent) -> Vec<(&'static str, Value)> {
        match ev {
            StreamEvent::Delta(text) => {
                let mut out = Vec::new();
                if self.tool.is_some() {
                    out.push(self.block_stop());
                    self.block += 1;
                    self.tool = None;
                    out.push((
                        "content_block_start",
                        json!({"type": "content_block_start", "index": self.block, "content_block": {"type": "text", "text": ""}}),
                    ));
                }
                out.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": self.block, "delta": {"type": "text_delta", "text": text}}),
                ));
                out
            }
            StreamEvent::ToolCall(d) => self.tool_call(d),
            // The Messages API has no log probabilities; its requests never ask.
            StreamEvent::Logprobs(_) => Vec::new(),
            StreamEvent::Done(done) => {
                let (stop_reason, stop_sequence) = stop_fields(done);
                vec![
                    self.block_stop(),
                    (
                        "message_delta",
                        json!({
                            "type": "message_delta",
                            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                            // The same input count message_start announced,
                            // so every SDK version reads one figure.
                            "usage": usage_json(&Usage {
                                prompt_tokens: self.input_tokens,
                                cached_prompt_tokens: 0,
                                ..done.usage
                            })
                        }),
                    ),
                    ("message_stop", json!({"type": "message_stop"})),
                ]
            }
        }
    }

    fn tool_call(&mut self, d: &ToolCallDelta) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if self.tool != Some(d.index) || d.id.is_some() {
            out.push(self.block_stop());
            self.block += 1;
            self.tool = Some(d.index);
            out.push((
                "content_block_start",
                json!({
                    "type": "content_block_start",
                    "index": self.block,
                    "content_block": {
                        "type": "tool_use",
                        "id": d.id.clone().unwrap_or_default(),
                        "name": d.name.clone().unwrap_or_default(),
                        "input": {}
                    }
                }),
            ));
        }
        if !d.arguments.is_empty() {
            out.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": self.block, "delta": {"type": "input_json_delta", "partial_json": d.arguments}}),
            ));
        }
        out
    }

    /// The `error` event that ends a stream which failed midway.
    pub fn error(&self, code: ErrorCode, message: &str) -> (&'static str, Value) {
        ("error", error_json(code, message))
    }
}
