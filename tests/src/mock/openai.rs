//! The OpenAI chat-completions side of the mock: answers, chunk streams and
//! error bodies shaped exactly as api.openai.com sends them.

use serde_json::{json, Value};

use super::{
    argument_pieces, content_text, last_user_text, pieces, reply, tool_arguments, words, Answer,
    End,
};

const CREATED: i64 = 1_732_871_021;

pub(crate) fn models() -> Value {
    json!({"object": "list", "data": [
        {"id": "mock-gpt", "object": "model", "created": CREATED, "owned_by": "mock"}
    ]})
}

/// `POST /v1/embeddings`: for each input a vector of `dimensions` (default
/// 8) floats drawn from the input's bytes, so equal inputs give equal
/// vectors; usage counts words (token arrays: their length).
pub(crate) fn embeddings(body: &Value) -> Result<Value, String> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or("you must provide a model parameter")?;
    let inputs: Vec<Value> = match body.get("input") {
        Some(Value::String(s)) => vec![json!(s)],
        Some(Value::Array(a)) if a.iter().all(Value::is_number) && !a.is_empty() => {
            vec![Value::Array(a.clone())]
        }
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        _ => return Err("'input' is a required property".to_owned()),
    };
    let dims = body.get("dimensions").and_then(Value::as_u64).unwrap_or(8) as usize;
    let mut tokens = 0u32;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let seed: Vec<u8> = match input {
                Value::String(s) => {
                    tokens += words(s).max(1);
                    s.as_bytes().to_vec()
                }
                other => {
                    tokens += other.as_array().map_or(0, |a| a.len() as u32);
                    other.to_string().into_bytes()
                }
            };
            let mut h: u64 = 1469598103934665603;
            let v: Vec<f64> = (0..dims)
                .map(|d| {
                    for b in seed.iter().chain(&[d as u8]) {
                        h ^= u64::from(*b);
                        h = h.wrapping_mul(1099511628211);
                    }
                    ((h >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
                })
                .collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
}

pub(crate) fn error_body(status: u16, message: Option<&str>) -> Value {
    let (default_message, kind, code) = match status {
        400 => ("Invalid value for 'temperature': expected a number between 0 and 2, but got 3 instead.", "invalid_request_error", json!("invalid_value")),
        401 => ("Incorrect API key provided: sk-mock****1234. You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", json!("invalid_api_key")),
        403 => ("You are not allowed to sample from this model", "invalid_request_error", Value::Null),
        404 => ("The model `mock-gpt` does not exist or you do not have access to it.", "invalid_request_error", json!("model_not_found")),
        429 => ("Rate limit reached for mock-gpt in organization org-mock on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.", "requests", json!("rate_limit_exceeded")),
        503 => ("The engine is currently overloaded, please try again later.", "server_error", Value::Null),
        _ => ("The server had an error while processing your request. Sorry about that!", "server_error", Value::Null),
    };
    json!({"error": {
        "message": message.unwrap_or(default_message),
        "type": kind,
        "param": null,
        "code": code
    }})
}

fn stops(body: &Value) -> Vec<String> {
    match body.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn usage(prompt: u32, completion: u32, cached: u32) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached.min(prompt), "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

/// The answer to a valid chat-completions body; `names_stop` adds vLLM's
/// `stop_reason` (the stop string that ended the reply, or null) to the
/// choice that finishes.
pub(crate) fn answer(
    body: &Value,
    id: u64,
    cached: u32,
    names_stop: bool,
) -> Result<Answer, String> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or("you must provide a model parameter")?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("'messages' is a required property")?;
    let max = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64);
    // With tools (and a choice that allows calls) the mock calls the first
    // tool, unless the last message is a tool result: then it answers with
    // that result, which ends a call-result-answer round trip.
    let last = messages.last();
    let last_is_result = last.and_then(|m| m.get("role")).and_then(Value::as_str) == Some("tool");
    // A named `tool_choice` forces that tool, as OpenAI does.
    let first_tool = body
        .pointer("/tool_choice/function/name")
        .or_else(|| body.pointer("/tools/0/function/name"))
        .and_then(Value::as_str)
        .filter(|_| body.get("tool_choice").and_then(Value::as_str) != Some("none"))
        .filter(|_| !last_is_result);
    let prompt = if last_is_result {
        format!(
            "tool said {}",
            content_text(last.and_then(|m| m.get("content")))
        )
    } else {
        last_user_text(messages)
    };
    // With a `json_schema` response format the reply is an instance of the
    // schema (see `schema_instance`), whole, as a constrained model gives it.
    let (text, end) = match json_schema(body) {
        Some(schema) => (schema_instance(schema, &prompt).to_string(), End::Stop),
        None => reply(&prompt, max, &stops(body)),
    };
    let finish = if end == End::Length { "length" } else { "stop" };
    let stop_reason = match &end {
        End::StopSequence(s) => json!(s),
        _ => Value::Null,
    };
    let name_stop = |choice: &mut Value| {
        if names_stop {
            choice["stop_reason"] = stop_reason.clone();
        }
    };
    let prompt_tokens: u32 = messages
        .iter()
        .map(|m| words(&content_text(m.get("content"))))
        .sum();
    let usage = usage(prompt_tokens, words(&text), cached);
    let id = format!("chatcmpl-mock{id}");
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let call_id = format!("call_mock{}", id.trim_start_matches("chatcmpl-mock"));
    if let Some(tool) = first_tool {
        let args = tool_arguments(messages);
        return Ok(tool_call_answer(
            body,
            &id,
            model,
            tool,
            &call_id,
            &args,
            stream,
            prompt_tokens,
        ));
    }
    // With `logprobs: true` every piece of the reply is a token of log
    // probability -0.5, with `top_logprobs` alternatives; with `n` the reply
    // comes `n` times, choice `i` prefixed "[i] " after the first.
    let logprobs = |text: &str| -> Value {
        if body.get("logprobs").and_then(Value::as_bool) != Some(true) {
            return Value::Null;
        }
        let top = body
            .get("top_logprobs")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let content: Vec<Value> = pieces(text)
            .into_iter()
            .map(|p| {
                let alts: Vec<Value> = (0..top)
                    .map(|k| json!({"token": format!("alt{k}"), "logprob": -1.0 - k as f64, "bytes": null}))
                    .collect();
                json!({"token": p, "logprob": -0.5, "bytes": p.as_bytes(), "top_logprobs": alts})
            })
            .collect();
        json!({"content": content, "refusal": null})
    };
    if !stream {
        let n = body.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
        let choices: Vec<Value> = (0..n)
            .map(|i| {
                let text = if i == 0 { text.clone() } else { format!("[{i}] {text}") };
                let mut choice = json!({
                    "index": i,
                    "message": {"role": "assistant", "content": text, "refusal": null, "annotations": []},
                    "logprobs": logprobs(&text),
                    "finish_reason": finish
                });
                name_stop(&mut choice);
                choice
            })
            .collect();
        return Ok(Answer::Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": choices,
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_mock"
        })));
    }
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Option<&str>| {
        let lp = match delta.get("content").and_then(Value::as_str) {
            Some(p) if !p.is_empty() => logprobs(p),
            _ => Value::Null,
        };
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}]
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut chunks = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        None,
    )];
    for piece in pieces(&text) {
        chunks.push(chunk(json!({"content": piece}), None));
    }
    let mut last = chunk(json!({}), Some(finish));
    name_stop(&mut last["choices"][0]);
    chunks.push(last);
    if include_usage {
        chunks.push(json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [],
            "usage": usage
        }));
    }
    let mut events: Vec<String> = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    events.push("data: [DONE]\n\n".to_owned());
    Ok(Answer::Sse {
        events,
        cut_after: 2,
    })
}

/// The schema of a `response_format: {type: "json_schema"}`, if the body has one.
fn json_schema(body: &Value) -> Option<&Value> {
    (body
        .pointer("/response_format/type")
        .and_then(Value::as_str)
        == Some("json_schema"))
    .then(|| body.pointer("/response_format/json_schema/schema"))
    .flatten()
}

/// An instance of `schema` (a JSON Schema, or Gemini's `Schema` with its
/// capitalised types) built from the prompt: every property of an
/// object (required or not), strings holding the prompt, numbers its word
/// count, booleans true, arrays one item; `$ref`s into `$defs` followed.
pub(crate) fn schema_instance(schema: &Value, prompt: &str) -> Value {
    fn build(s: &Value, root: &Value, prompt: &str, depth: usize) -> Value {
        if depth > 8 {
            return Value::Null;
        }
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let target = r
                .strip_prefix('#')
                .and_then(|p| root.pointer(p))
                .unwrap_or(&Value::Null);
            return build(target, root, prompt, depth + 1);
        }
        if let Some(first) = s.pointer("/anyOf/0") {
            return build(first, root, prompt, depth + 1);
        }
        if let Some(v) = s.pointer("/enum/0") {
            return v.clone();
        }
        // Gemini's `Schema` spells its types in capitals (`OBJECT`).
        let ty = match s.get("type") {
            Some(Value::Array(types)) => types.first().and_then(Value::as_str),
            t => t.and_then(Value::as_str),
        }
        .map(str::to_ascii_lowercase);
        match ty.as_deref() {
            Some("string") => json!(prompt),
            Some("integer" | "number") => json!(words(prompt)),
            Some("boolean") => json!(true),
            Some("null") => Value::Null,
            Some("array") => json!([build(
                s.get("items").unwrap_or(&Value::Null),
                root,
                prompt,
                depth + 1
            )]),
            _ => {
                let props = s.get("properties").and_then(Value::as_object);
                let obj: serde_json::Map<String, Value> = props
                    .into_iter()
                    .flatten()
                    .map(|(k, p)| (k.clone(), build(p, root, prompt, depth + 1)))
                    .collect();
                Value::Object(obj)
            }
        }
    }
    build(schema, schema, prompt, 0)
}

/// A call to `tool`, plain or streamed as OpenAI streams calls: the first
/// piece with id, type and name and empty arguments, then the arguments in
/// pieces, then `finish_reason: "tool_calls"`.
#[allow(clippy::too_many_arguments)]
fn tool_call_answer(
    body: &Value,
    id: &str,
    model: &str,
    tool: &str,
    call_id: &str,
    args: &str,
    stream: bool,
    prompt_tokens: u32,
) -> Answer {
    let usage = usage(prompt_tokens, words(args), 0);
    if !stream {
        return Answer::Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "id": call_id,
                        "type": "function",
                        "function": {"name": tool, "arguments": args}
                    }],
                    "refusal": null,
                    "annotations": []
                },
                "logprobs": null,
                "finish_reason": "tool_calls"
            }],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_mock"
        }));
    }
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        })
    };
    let (a, b) = argument_pieces(args);
    let mut chunks = vec![
        chunk(
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "index": 0, "id": call_id, "type": "function",
                "function": {"name": tool, "arguments": ""}
            }], "refusal": null}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
    ];
    if include_usage {
        chunks.push(json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [],
            "usage": usage
        }));
    }
    let mut events: Vec<String> = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    events.push("data: [DONE]\n\n".to_owned());
    Answer::Sse {
        events,
        cut_after: 2,
    }
}
