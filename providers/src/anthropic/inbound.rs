//! The gateway's Anthropic-shaped surface (`/v1/messages`): validating a Messages
//! request into a [`ChatRequest`] and writing answers, streamed or not, exactly
//! as Anthropic does, so the official SDKs work unchanged.

use serde_json::{json, Value};

use crate::validate::{
    as_str, bad, body_object, field, opt_bool, opt_max_tokens, opt_number_in, opt_object, required,
    show, stop_list, text_items, unsupported, wrong_type, Obj,
};
use crate::{
    ChatRequest, ChatResponse, Completion, ErrorCode, FinishReason, Message, ProviderError, Role,
    StreamEvent, Usage,
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
    for (i, m) in list.iter().enumerate() {
        messages.push(parse_message(i, m)?);
    }

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
    })
}

fn reject_unsupported(obj: &Obj) -> Result<(), ProviderError> {
    if let Some(v) = field(obj, "tools").filter(|v| v.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(unsupported("tools", v));
    }
    if let Some(v) = field(obj, "tool_choice") {
        let kind = v.get("type").and_then(Value::as_str);
        if !matches!(kind, Some("none" | "auto")) {
            return Err(unsupported("tool_choice", v));
        }
    }
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

fn parse_message(i: usize, v: &Value) -> Result<Message, ProviderError> {
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
    let content = match required(obj, "content", &content_path)? {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => text_items(blocks, &content_path, "content block")?,
        other => {
            return Err(wrong_type(
                &content_path,
                "a string or an array of content blocks",
                other,
            ))
        }
    };
    Ok(Message { role, content })
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

/// A complete Messages API answer.
pub fn messages_response_json(id: &str, model: &str, resp: &ChatResponse) -> Value {
    let (stop_reason, stop_sequence) = stop_fields(&resp.done);
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": resp.text}],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_json(&resp.done.usage),
    })
}

/// The Anthropic error type for an error code.
fn error_type(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest | ErrorCode::PayloadTooLarge | ErrorCode::MethodNotAllowed => {
            "invalid_request_error"
        }
        ErrorCode::Unauthorized => "authentication_error",
        ErrorCode::PolicyDenied => "permission_error",
        ErrorCode::NotFound | ErrorCode::UnknownEndpoint => "not_found_error",
        ErrorCode::BudgetExceeded | ErrorCode::RateLimited => "rate_limit_error",
        ErrorCode::Overloaded | ErrorCode::UpstreamUnavailable => "overloaded_error",
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
    /// The `input_tokens` message_start announced.
    input_tokens: u32,
}

impl MessagesStreamEncoder {
    pub fn new(id: &str, model: &str) -> Self {
        Self {
            id: id.to_owned(),
            model: model.to_owned(),
            input_tokens: 0,
        }
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

    /// A delta becomes a content_block_delta; `Done` closes the block and the
    /// message, with the final usage in message_delta.
    pub fn on_event(&self, ev: &StreamEvent) -> Vec<(&'static str, Value)> {
        match ev {
            StreamEvent::Delta(text) => vec![(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            )],
            StreamEvent::Done(done) => {
                let (stop_reason, stop_sequence) = stop_fields(done);
                vec![
                    (
                        "content_block_stop",
                        json!({"type": "content_block_stop", "index": 0}),
                    ),
                    (
                        "message_delta",
                        json!({
                            "type": "message_delta",
                            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
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

    /// The `error` event that ends a stream which failed midway.
    pub fn error(&self, code: ErrorCode, message: &str) -> (&'static str, Value) {
        ("error", error_json(code, message))
    }
}
