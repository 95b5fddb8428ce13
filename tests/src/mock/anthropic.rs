//! The Anthropic Messages side of the mock: messages, the full streaming event
//! sequence and error bodies shaped exactly as api.anthropic.com sends them.

use serde_json::{json, Value};

use super::{
    argument_pieces, content_text, last_user_text, pieces, reply, tool_arguments, words, Answer,
    End,
};

pub(crate) fn error_body(status: u16, message: Option<&str>) -> Value {
    let (default_message, kind) = match status {
        400 => ("messages: at least one message is required", "invalid_request_error"),
        401 => ("invalid x-api-key", "authentication_error"),
        403 => ("Your API key does not have permission to use the specified resource.", "permission_error"),
        404 => ("model: mock-claude", "not_found_error"),
        413 => ("Request exceeds the maximum allowed number of bytes.", "request_too_large"),
        429 => ("This request would exceed the rate limit for your organization of 5 requests per minute.", "rate_limit_error"),
        529 => ("Overloaded", "overloaded_error"),
        _ => ("Internal server error", "api_error"),
    };
    json!({
        "type": "error",
        "error": {"type": kind, "message": message.unwrap_or(default_message)},
        "request_id": "req_mock"
    })
}

/// `/v1/messages/count_tokens`: mock tokens are words of system and messages.
/// Like the real endpoint it refuses generation settings such as `max_tokens`.
pub(crate) fn count_tokens(body: &Value) -> Result<Value, String> {
    body.get("model")
        .and_then(Value::as_str)
        .ok_or("model: Field required")?;
    if body.get("max_tokens").is_some() {
        return Err("max_tokens: Extra inputs are not permitted".into());
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    let n = words(&content_text(body.get("system")))
        + messages
            .iter()
            .map(|m| words(&content_text(m.get("content"))))
            .sum::<u32>();
    Ok(json!({"input_tokens": n}))
}

pub(crate) fn answer(body: &Value, id: u64, cached: u32) -> Result<Answer, String> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or("model: Field required")?;
    let max = body
        .get("max_tokens")
        .and_then(Value::as_u64)
        .ok_or("max_tokens: Field required")?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("messages: at least one message is required")?;
    if messages.iter().any(|m| {
        !matches!(
            m.get("role").and_then(Value::as_str),
            Some("user" | "assistant")
        )
    }) {
        return Err("messages: roles must be \"user\" or \"assistant\"".into());
    }
    let stops: Vec<String> = body
        .get("stop_sequences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    // With tools (and a choice that allows calls) the mock calls the first
    // tool, unless the last user turn holds tool results: then it answers
    // with them, which ends a call-result-answer round trip.
    let results: Vec<String> = messages
        .last()
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                .map(|b| content_text(b.get("content")))
                .collect()
        })
        .unwrap_or_default();
    // `tool_choice: {type: "tool", name}` forces that tool, as Anthropic does.
    let forced = body
        .pointer("/tool_choice/type")
        .and_then(Value::as_str)
        .filter(|t| *t == "tool")
        .and_then(|_| body.pointer("/tool_choice/name"));
    let first_tool = forced
        .or_else(|| body.pointer("/tools/0/name"))
        .and_then(Value::as_str)
        .filter(|_| body.pointer("/tool_choice/type").and_then(Value::as_str) != Some("none"))
        .filter(|_| results.is_empty());
    let prompt = if results.is_empty() {
        last_user_text(messages)
    } else {
        format!("tool said {}", results.join(" "))
    };
    let (text, end) = reply(&prompt, Some(max), &stops);
    let (stop_reason, stop_sequence) = match &end {
        End::Stop => ("end_turn", Value::Null),
        End::StopSequence(s) => ("stop_sequence", json!(s)),
        End::Length => ("max_tokens", Value::Null),
    };
    let system_words = words(&content_text(body.get("system")));
    let prompt: u32 = system_words
        + messages
            .iter()
            .map(|m| words(&content_text(m.get("content"))))
            .sum::<u32>();
    let cached = cached.min(prompt);
    let output = words(&text);
    let id = format!("msg_mock{id}");
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if let Some(tool) = first_tool {
        let call_id = format!("toolu_mock{}", id.trim_start_matches("msg_mock"));
        let args = tool_arguments(messages);
        return Ok(tool_use_answer(
            model,
            &id,
            tool,
            &call_id,
            &args,
            stream,
            prompt - cached,
            cached,
        ));
    }
    if !stream {
        return Ok(Answer::Json(json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {
                "input_tokens": prompt - cached,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": cached,
                "output_tokens": output,
                "service_tier": "standard"
            }
        })));
    }
    let mut events: Vec<(&str, Value)> = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {
                    "input_tokens": prompt - cached,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": cached,
                    "output_tokens": 1,
                    "service_tier": "standard"
                }
            }}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", json!({"type": "ping"})),
    ];
    for piece in pieces(&text) {
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    events.push((
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence}, "usage": {"output_tokens": output}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    let events = events
        .into_iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    // message_start, content_block_start, ping and the first text delta.
    Ok(Answer::Sse {
        events,
        cut_after: 4,
    })
}

/// A `tool_use` answer for `tool`, plain or as Anthropic streams it: a
/// tool_use content block, its input in `input_json_delta` pieces (the first
/// one empty, as Anthropic sends it), `stop_reason: "tool_use"`.
#[allow(clippy::too_many_arguments)]
fn tool_use_answer(
    model: &str,
    id: &str,
    tool: &str,
    call_id: &str,
    args: &str,
    stream: bool,
    input_tokens: u32,
    cached: u32,
) -> Answer {
    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
    let output = words(args);
    let usage = json!({
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": output,
        "service_tier": "standard"
    });
    if !stream {
        return Answer::Json(json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "tool_use", "id": call_id, "name": tool, "input": input}],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": usage
        }));
    }
    let mut start_usage = usage.clone();
    start_usage["output_tokens"] = json!(1);
    let (a, b) = argument_pieces(args);
    let mut events: Vec<(&str, Value)> = vec![(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage
        }}),
    )];
    events.push((
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": call_id, "name": tool, "input": {}}}),
    ));
    events.push(("ping", json!({"type": "ping"})));
    for piece in ["", a.as_str(), b.as_str()] {
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}}),
        ));
    }
    events.push((
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": output}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    Answer::Sse {
        events: events
            .into_iter()
            .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
            .collect(),
        cut_after: 4,
    }
}
