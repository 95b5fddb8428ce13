//! OpenAI answers in both directions: reading what an upstream sent (a
//! `chat.completion` or its `chat.completion.chunk` stream) and writing the same
//! shapes for the gateway's own clients, field for field as OpenAI sends them.

use std::collections::VecDeque;

use serde_json::{json, Value};

use crate::remote::{protocol, RemoteTarget, StreamTranslator};
use crate::sse::SseEvent;
use crate::{
    ChatResponse, Choice, Completion, FinishReason, GeneratedToolCall, ProviderError, StreamEvent,
    ToolCallDelta, Usage,
};

/// The wire name of a finish reason. `Cancelled` never reaches a client (the
/// gateway stops writing when the client is gone), so it reads as `stop`.
pub fn finish_reason_str(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length => "length",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::ToolCalls => "tool_calls",
    }
}

/// The `usage` object of a completion or of the final stream chunk.
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
        "prompt_tokens_details": {"cached_tokens": u.cached_prompt_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

/// A complete `chat.completion` object. A message with tool calls carries
/// them as `tool_calls` and, when it has no text, `"content": null`.
pub fn response_json(id: &str, created: i64, model: &str, resp: &ChatResponse) -> Value {
    let mut v = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": resp.text,
                "refusal": null,
                "annotations": []
            },
            "logprobs": resp.logprobs,
            "finish_reason": finish_reason_str(resp.done.finish_reason)
        }],
        "usage": usage_json(&resp.done.usage),
        "system_fingerprint": null
    });
    with_tool_calls(
        &mut v["choices"][0]["message"],
        &resp.text,
        &resp.tool_calls,
    );
    for (i, c) in resp.more_choices.iter().enumerate() {
        let mut choice = json!({
            "index": i + 1,
            "message": {
                "role": "assistant",
                "content": c.text,
                "refusal": null,
                "annotations": []
            },
            "logprobs": c.logprobs,
            "finish_reason": finish_reason_str(c.finish_reason)
        });
        with_tool_calls(&mut choice["message"], &c.text, &c.tool_calls);
        if let Some(a) = v["choices"].as_array_mut() {
            a.push(choice);
        }
    }
    v
}

/// A message's `tool_calls`, and `"content": null` when it has no text.
fn with_tool_calls(message: &mut Value, text: &str, calls: &[GeneratedToolCall]) {
    if calls.is_empty() {
        return;
    }
    if text.is_empty() {
        message["content"] = Value::Null;
    }
    message["tool_calls"] = calls
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments}
            })
        })
        .collect();
}

/// Writes the `chat.completion.chunk` objects of one streamed answer. With
/// `include_usage` every chunk carries `"usage": null` and a last chunk with
/// empty `choices` carries the usage, as OpenAI does.
#[derive(Debug, Clone)]
pub struct ChunkBuilder {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
}

impl ChunkBuilder {
    pub fn new(id: &str, created: i64, model: &str, include_usage: bool) -> Self {
        Self {
            id: id.to_owned(),
            created,
            model: model.to_owned(),
            include_usage,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason
            }]
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    /// The first chunk: the role, with empty content.
    pub fn role(&self) -> Value {
        self.chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            None,
        )
    }

    /// A piece of generated text.
    pub fn content(&self, text: &str) -> Value {
        self.chunk(json!({"content": text}), None)
    }

    /// A piece of a tool call: the first piece of a call carries its id, type
    /// and name, later ones only argument text, as OpenAI streams them.
    pub fn tool_call(&self, d: &ToolCallDelta) -> Value {
        let mut call = json!({"index": d.index, "function": {"arguments": d.arguments}});
        if let Some(id) = &d.id {
            call["id"] = json!(id);
            call["type"] = json!("function");
        }
        if let Some(name) = &d.name {
            call["function"]["name"] = json!(name);
        }
        self.chunk(json!({"tool_calls": [call]}), None)
    }

    /// The chunk that ends the choice: empty delta, the finish reason.
    pub fn finish(&self, reason: FinishReason) -> Value {
        self.chunk(json!({}), Some(finish_reason_str(reason)))
    }

    /// The usage chunk (sent only when the client asked for it).
    pub fn usage(&self, usage: &Usage) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [],
            "usage": usage_json(usage)
        })
    }

    /// The chunks one canonical event becomes: a delta is one chunk; `Done` is the
    /// finish chunk plus, when asked for, the usage chunk. The caller sends
    /// [`ChunkBuilder::role`] first and `data: [DONE]` last.
    pub fn on_event(&self, ev: &StreamEvent) -> Vec<Value> {
        match ev {
            StreamEvent::Delta(text) => vec![self.content(text)],
            StreamEvent::ToolCall(d) => vec![self.tool_call(d)],
            StreamEvent::Logprobs(lp) => {
                let mut c = self.chunk(json!({}), None);
                c["choices"][0]["logprobs"] = lp.clone();
                vec![c]
            }
            StreamEvent::Done(done) => {
                let mut out = vec![self.finish(done.finish_reason)];
                if self.include_usage {
                    out.push(self.usage(&done.usage));
                }
                out
            }
        }
    }
}

/// An upstream `finish_reason`; `null` or unknown reads as `stop`.
fn parse_finish_reason(v: Option<&Value>) -> FinishReason {
    match v.and_then(Value::as_str) {
        Some("length") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

fn count(v: Option<&Value>) -> u32 {
    v.and_then(Value::as_u64)
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// An upstream `usage` object. DeepSeek reports cache hits as
/// `prompt_cache_hit_tokens` instead of `prompt_tokens_details.cached_tokens`.
pub(crate) fn parse_usage(u: &Value) -> Usage {
    let cached = u
        .pointer("/prompt_tokens_details/cached_tokens")
        .or_else(|| u.get("prompt_cache_hit_tokens"));
    Usage {
        prompt_tokens: count(u.get("prompt_tokens")),
        completion_tokens: count(u.get("completion_tokens")),
        cached_prompt_tokens: count(cached),
    }
}

/// An upstream `chat.completion` as a canonical answer.
///
/// `stops` are the request's stop sequences: OpenAI does not say which one
/// ended an answer, so [`crate::infer_stop_sequence`] tells it where it can.
pub(crate) fn parse_response(
    t: &RemoteTarget,
    v: &Value,
    stops: &[String],
) -> Result<ChatResponse, ProviderError> {
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| protocol(t, "answer has no choices"))?;
    let (first, rest) = (&choices[0], &choices[1..]);
    let c0 = read_choice(t, first)?;
    let more_choices = rest
        .iter()
        .map(|c| read_choice(t, c))
        .collect::<Result<_, _>>()?;
    let stop_sequence = (c0.finish_reason == FinishReason::Stop)
        .then(|| crate::infer_stop_sequence(stops, named_stop(first), &c0.text))
        .flatten();
    Ok(ChatResponse {
        text: c0.text,
        tool_calls: c0.tool_calls,
        done: Completion {
            stop_sequence,
            model: v
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&t.upstream_model)
                .to_owned(),
            finish_reason: c0.finish_reason,
            usage: v.get("usage").map(parse_usage).unwrap_or_default(),
            engine_seconds: None,
        },
        logprobs: c0.logprobs,
        more_choices,
    })
}

/// One upstream choice: its text (or refusal), calls, finish reason and
/// log probabilities.
fn read_choice(t: &RemoteTarget, choice: &Value) -> Result<Choice, ProviderError> {
    let message = choice
        .get("message")
        .ok_or_else(|| protocol(t, "choice has no message"))?;
    // A refusal comes instead of content; the client should still see why.
    let text = match (message.get("content"), message.get("refusal")) {
        (Some(Value::String(s)), _) => s.clone(),
        (_, Some(Value::String(r))) => r.clone(),
        (None | Some(Value::Null), _) => String::new(),
        (Some(other), _) => return Err(protocol(t, format!("content is not a string: {other}"))),
    };
    let finish_reason = match message.get("refusal") {
        Some(Value::String(_)) => FinishReason::ContentFilter,
        _ => parse_finish_reason(choice.get("finish_reason")),
    };
    let tool_calls = match message.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => calls
            .iter()
            .map(|c| read_tool_call(t, c))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(protocol(t, format!("tool_calls is not an array: {other}"))),
    };
    Ok(Choice {
        text,
        tool_calls,
        finish_reason,
        logprobs: choice.get("logprobs").filter(|l| !l.is_null()).cloned(),
    })
}

/// One complete upstream tool call. Arguments are the model's JSON text;
/// a server that sends an object instead gets it written out as text.
fn read_tool_call(t: &RemoteTarget, c: &Value) -> Result<GeneratedToolCall, ProviderError> {
    let f = c
        .get("function")
        .ok_or_else(|| protocol(t, "tool call has no function"))?;
    let arguments = match f.get("arguments") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    Ok(GeneratedToolCall {
        id: c
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol(t, "tool call has no id"))?
            .to_owned(),
        name: f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol(t, "tool call has no function name"))?
            .to_owned(),
        arguments,
    })
}

/// The tool-call pieces of one chunk's delta.
fn read_tool_call_deltas(delta: Option<&Value>, out: &mut VecDeque<StreamEvent>) {
    let Some(calls) = delta
        .and_then(|d| d.get("tool_calls"))
        .and_then(Value::as_array)
    else {
        return;
    };
    for (n, c) in calls.iter().enumerate() {
        let index = c
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok())
            .unwrap_or(n as u32);
        let f = c.get("function");
        let arguments = match f.and_then(|f| f.get("arguments")) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        out.push_back(StreamEvent::ToolCall(ToolCallDelta {
            index,
            id: c.get("id").and_then(Value::as_str).map(str::to_owned),
            name: f
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            arguments,
        }));
    }
}

/// The stop string some OpenAI-compatible servers (vLLM) name in a choice's
/// `stop_reason`; OpenAI itself sends none.
fn named_stop(choice: &Value) -> Option<&str> {
    choice.get("stop_reason").and_then(Value::as_str)
}

/// An `error` object inside a 200 stream, with a status guessed from its type so
/// the error code (rate limit, overload, bad request) survives.
pub(crate) fn stream_error(t: &RemoteTarget, err: &Value) -> ProviderError {
    let kind = err
        .get("type")
        .or_else(|| err.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let status = match kind {
        "invalid_request_error" => 400,
        "rate_limit_exceeded" | "rate_limit_error" | "requests" | "tokens" => 429,
        "overloaded_error" | "overloaded" => 529,
        _ => 500,
    };
    ProviderError::Upstream {
        target: t.target.clone(),
        status,
        message: err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or(kind)
            .to_owned(),
        retry_after_s: None,
    }
}

/// Reads an upstream chunk stream: content deltas as they come, the finish
/// reason from the last choice chunk, usage from the usage chunk, and `Done`
/// only at `data: [DONE]` so a cut connection is an error, not a short answer.
pub(crate) struct ChunkReader {
    t: RemoteTarget,
    finish: Option<FinishReason>,
    usage: Usage,
    model: Option<String>,
    /// The request's stop sequences, the one a server named, and the end of
    /// the text so far (as long as the longest stop sequence), to tell which
    /// stop sequence ended the answer.
    stops: Vec<String>,
    named_stop: Option<String>,
    tail: String,
}

impl ChunkReader {
    pub(crate) fn new(t: RemoteTarget, stops: &[String]) -> Self {
        Self {
            t,
            finish: None,
            usage: Usage::default(),
            model: None,
            stops: stops.to_vec(),
            named_stop: None,
            tail: String::new(),
        }
    }

    fn keep_tail(&mut self, text: &str) {
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        if longest == 0 {
            return;
        }
        self.tail.push_str(text);
        if self.tail.len() > longest {
            let mut cut = self.tail.len() - longest;
            while !self.tail.is_char_boundary(cut) {
                cut -= 1;
            }
            self.tail.drain(..cut);
        }
    }
}

impl StreamTranslator for ChunkReader {
    fn on_event(
        &mut self,
        ev: SseEvent,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        let data = ev.data.trim();
        if data == "[DONE]" {
            out.push_back(StreamEvent::Done(Completion {
                model: self
                    .model
                    .take()
                    .unwrap_or_else(|| self.t.upstream_model.clone()),
                finish_reason: self.finish.unwrap_or(FinishReason::Stop),
                stop_sequence: matches!(self.finish, None | Some(FinishReason::Stop))
                    .then(|| {
                        crate::infer_stop_sequence(
                            &self.stops,
                            self.named_stop.as_deref(),
                            &self.tail,
                        )
                    })
                    .flatten(),
                usage: self.usage,
                engine_seconds: None,
            }));
            return Ok(true);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| protocol(&self.t, format!("stream chunk is not json: {e}")))?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(stream_error(&self.t, err));
        }
        if self.model.is_none() {
            self.model = v.get("model").and_then(Value::as_str).map(str::to_owned);
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = parse_usage(u);
        }
        if let Some(choice) = v.pointer("/choices/0") {
            let delta = choice.get("delta");
            let piece = delta
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str)
                .or_else(|| delta.and_then(|d| d.get("refusal")).and_then(Value::as_str));
            if let Some(text) = piece.filter(|s| !s.is_empty()) {
                self.keep_tail(text);
                out.push_back(StreamEvent::Delta(text.to_owned()));
            }
            read_tool_call_deltas(delta, out);
            if let Some(lp) = choice.get("logprobs").filter(|l| !l.is_null()) {
                out.push_back(StreamEvent::Logprobs(lp.clone()));
            }
            if let Some(s) = named_stop(choice) {
                self.named_stop = Some(s.to_owned());
            }
            if let Some(r) = choice.get("finish_reason").filter(|r| !r.is_null()) {
                self.finish = Some(parse_finish_reason(Some(r)));
            }
        }
        Ok(false)
    }

    fn on_eof(&self) -> ProviderError {
        ProviderError::Unreachable {
            target: self.t.target.clone(),
            message: "stream ended before data: [DONE]".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseDecoder;
    use crate::BackendKind;

    fn target() -> RemoteTarget {
        RemoteTarget::new("gpt", BackendKind::Openai, "http://x/v1", "gpt-4o-mini")
    }

    fn fixture(name: &str) -> Value {
        let text = match name {
            "completion" => include_str!("../../tests/fixtures/openai_chat_completion.json"),
            _ => panic!("unknown fixture {name}"),
        };
        serde_json::from_str(text).unwrap()
    }

    const STREAM: &str = include_str!("../../tests/fixtures/openai_chat_stream.sse");

    fn read_stream(raw: &str) -> (Vec<StreamEvent>, Option<ProviderError>) {
        let mut dec = SseDecoder::new();
        let mut events: Vec<SseEvent> = dec.feed(raw.as_bytes());
        events.extend(dec.finish());
        let mut reader = ChunkReader::new(target(), &[]);
        let mut out = VecDeque::new();
        for ev in events {
            match reader.on_event(ev, &mut out) {
                Ok(true) => return (out.into(), None),
                Ok(false) => {}
                Err(e) => return (out.into(), Some(e)),
            }
        }
        (out.into(), Some(reader.on_eof()))
    }

    #[test]
    fn recorded_completion_reads_into_the_canonical_answer() {
        let resp = parse_response(&target(), &fixture("completion"), &[]).unwrap();
        assert_eq!(resp.text, "The sky is blue because of Rayleigh scattering.");
        assert_eq!(resp.done.model, "gpt-4o-mini-2024-07-18");
        assert_eq!(resp.done.finish_reason, FinishReason::Stop);
        assert_eq!(
            resp.done.usage,
            Usage {
                prompt_tokens: 25,
                completion_tokens: 11,
                cached_prompt_tokens: 12
            }
        );
    }

    #[test]
    fn writing_then_reading_a_completion_round_trips() {
        let original = ChatResponse {
            text: "hello there".into(),
            tool_calls: Vec::new(),
            done: Completion {
                model: "local-moe".into(),
                finish_reason: FinishReason::Length,
                usage: Usage {
                    prompt_tokens: 9,
                    completion_tokens: 2,
                    cached_prompt_tokens: 4,
                },
                stop_sequence: None,
                engine_seconds: None,
            },
            logprobs: None,
            more_choices: Vec::new(),
        };
        let wire = response_json("chatcmpl-1", 1_700_000_000, "local-moe", &original);
        assert_eq!(wire["object"], "chat.completion");
        assert_eq!(wire["choices"][0]["message"]["role"], "assistant");
        assert_eq!(wire["choices"][0]["finish_reason"], "length");
        assert_eq!(wire["usage"]["total_tokens"], 11);
        assert_eq!(wire["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        let back = parse_response(&target(), &wire, &[]).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn written_completion_has_the_recorded_shape() {
        // Every key OpenAI sends at the top level and in the choice is present.
        let recorded = fixture("completion");
        let ours = response_json(
            "chatcmpl-x",
            1,
            "m",
            &parse_response(&target(), &recorded, &[]).unwrap(),
        );
        for key in [
            "id",
            "object",
            "created",
            "model",
            "choices",
            "usage",
            "system_fingerprint",
        ] {
            assert!(ours.get(key).is_some(), "missing {key}");
        }
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&ours["choices"][0]), keys(&recorded["choices"][0]));
        assert_eq!(keys(&ours["usage"]), keys(&recorded["usage"]));
    }

    #[test]
    fn logprobs_and_further_choices_are_read_and_written_back() {
        let lp = json!({"content": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105],
            "top_logprobs": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105]}]}], "refusal": null});
        let upstream = json!({
            "id": "x", "model": "gpt-x",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "logprobs": lp, "finish_reason": "stop"},
                {"index": 1, "message": {"role": "assistant", "content": "Hello"}, "logprobs": null, "finish_reason": "length"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4}
        });
        let t = target();
        let resp = parse_response(&t, &upstream, &[]).unwrap();
        assert_eq!(resp.logprobs.as_ref(), Some(&lp));
        assert_eq!(resp.more_choices.len(), 1);
        assert_eq!(resp.more_choices[0].text, "Hello");
        assert_eq!(resp.more_choices[0].finish_reason, FinishReason::Length);
        let out = response_json("chatcmpl-1", 0, "gpt-x", &resp);
        assert_eq!(out["choices"][0]["logprobs"], lp);
        assert_eq!(out["choices"][1]["index"], 1);
        assert_eq!(out["choices"][1]["message"]["content"], "Hello");
        assert_eq!(out["choices"][1]["finish_reason"], "length");
        assert_eq!(out["choices"].as_array().unwrap().len(), 2);

        // Streamed: each chunk's logprobs become an event, written back on
        // the client's chunk.
        let chunk = json!({"model": "gpt-x", "choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": lp, "finish_reason": null}]});
        let sse = format!("data: {chunk}\n\ndata: [DONE]\n\n");
        let (events, err) = read_stream(&sse);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(events[0], StreamEvent::Delta("Hi".into()));
        assert_eq!(events[1], StreamEvent::Logprobs(lp.clone()));
        let b = ChunkBuilder::new("chatcmpl-1", 0, "gpt-x", false);
        let written = b.on_event(&events[1]);
        assert_eq!(written.len(), 1);
        assert_eq!(written[0]["choices"][0]["logprobs"], lp);
        assert_eq!(written[0]["choices"][0]["delta"], json!({}));
    }

    #[test]
    fn recorded_stream_with_usage_reads_into_deltas_and_one_done() {
        let (events, err) = read_stream(STREAM);
        assert!(err.is_none(), "{err:?}");
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Delta(t) => Some(t.as_str()),
                StreamEvent::ToolCall(_) | StreamEvent::Logprobs(_) | StreamEvent::Done(_) => None,
            })
            .collect();
        assert_eq!(text, "Hello! How can I help?");
        let dones: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Done(_)))
            .collect();
        assert_eq!(dones.len(), 1);
        assert!(matches!(events.last(), Some(StreamEvent::Done(_))));
        match events.last() {
            Some(StreamEvent::Done(c)) => {
                assert_eq!(c.finish_reason, FinishReason::Stop);
                assert_eq!(
                    c.usage,
                    Usage {
                        prompt_tokens: 19,
                        completion_tokens: 7,
                        cached_prompt_tokens: 0
                    }
                );
                assert_eq!(c.model, "gpt-4o-mini-2024-07-18");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn which_stop_sequence_ended_an_answer_is_told_where_it_can_be() {
        let stops = vec!["END".to_string(), "\n\n".to_string()];
        let answer = |text: &str, extra: Value| {
            let mut choice = json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"});
            if let Value::Object(m) = extra {
                choice.as_object_mut().unwrap().extend(m);
            }
            json!({"model": "m", "choices": [choice]})
        };
        let stop_of = |v: &Value| {
            parse_response(&target(), v, &stops)
                .unwrap()
                .done
                .stop_sequence
        };
        // OpenAI strips the string and names nothing: a natural end.
        assert_eq!(stop_of(&answer("one two", json!({}))), None);
        // vLLM names it in `stop_reason`.
        assert_eq!(
            stop_of(&answer("one two", json!({"stop_reason": "END"}))),
            Some("END".into())
        );
        // A server that keeps it in the output.
        assert_eq!(
            stop_of(&answer("one twoEND", json!({}))),
            Some("END".into())
        );
        // Not one of the request's: not reported.
        assert_eq!(stop_of(&answer("x", json!({"stop_reason": "other"}))), None);

        // Streamed, the end of the text is kept across chunks.
        let mut reader = ChunkReader::new(target(), &stops);
        let mut out = VecDeque::new();
        for data in [
            r#"{"model":"m","choices":[{"index":0,"delta":{"content":"one E"}}]}"#,
            r#"{"model":"m","choices":[{"index":0,"delta":{"content":"ND"},"finish_reason":"stop"}]}"#,
            "[DONE]",
        ] {
            let ev = SseEvent {
                event: None,
                data: data.into(),
            };
            reader.on_event(ev, &mut out).unwrap();
        }
        match out.back() {
            Some(StreamEvent::Done(c)) => assert_eq!(c.stop_sequence.as_deref(), Some("END")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stream_cut_before_done_is_an_error() {
        let cut = STREAM.split("data: [DONE]").next().unwrap();
        let (_, err) = read_stream(cut);
        assert!(
            matches!(err, Some(ProviderError::Unreachable { .. })),
            "{err:?}"
        );
        let first_two: String = STREAM
            .split("\n\n")
            .take(2)
            .collect::<Vec<_>>()
            .join("\n\n");
        let (events, err) = read_stream(&first_two);
        assert!(events.iter().all(|e| matches!(e, StreamEvent::Delta(_))));
        assert!(err.is_some());
    }

    #[test]
    fn error_inside_a_stream_is_an_error_item() {
        let raw = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
                   data: {\"error\":{\"message\":\"The server had an error while processing your request. Sorry about that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";
        let (events, err) = read_stream(raw);
        assert_eq!(events, vec![StreamEvent::Delta("Hi".into())]);
        match err {
            Some(ProviderError::Upstream {
                status, message, ..
            }) => {
                assert_eq!(status, 500);
                assert!(message.starts_with("The server had an error"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn written_chunks_read_back_to_the_same_events() {
        let done = Completion {
            model: "m".into(),
            finish_reason: FinishReason::Length,
            usage: Usage {
                prompt_tokens: 5,
                completion_tokens: 3,
                cached_prompt_tokens: 0,
            },
            stop_sequence: None,
            engine_seconds: None,
        };
        let events = vec![
            StreamEvent::Delta("a".into()),
            StreamEvent::Delta("b c".into()),
            StreamEvent::Done(done.clone()),
        ];
        let b = ChunkBuilder::new("chatcmpl-9", 7, "m", true);
        let mut raw = format!("data: {}\n\n", b.role());
        for ev in &events {
            for chunk in b.on_event(ev) {
                raw.push_str(&format!("data: {chunk}\n\n"));
            }
        }
        raw.push_str("data: [DONE]\n\n");
        let (back, err) = read_stream(&raw);
        assert!(err.is_none());
        assert_eq!(back, events);
    }

    #[test]
    fn written_chunks_match_the_recorded_shapes() {
        let recorded: Vec<Value> = STREAM
            .split("\n\n")
            .filter_map(|b| b.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let b = ChunkBuilder::new("chatcmpl-9", 7, "m", true);
        let ours = [
            b.role(),
            b.content("Hello"),
            b.finish(FinishReason::Stop),
            b.usage(&Usage::default()),
        ];
        let theirs = [
            &recorded[0],
            &recorded[1],
            &recorded[recorded.len() - 2],
            &recorded[recorded.len() - 1],
        ];
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        for (o, t) in ours.iter().zip(theirs) {
            assert_eq!(keys(o), keys(t), "{o} vs {t}");
            assert_eq!(o["object"], "chat.completion.chunk");
            if let Some(c) = t["choices"].get(0) {
                assert_eq!(o["choices"][0]["delta"], {
                    let mut d = c["delta"].clone();
                    if d.get("content").is_some_and(|c| c != "") {
                        d["content"] = "Hello".into();
                    }
                    d
                });
                assert_eq!(o["choices"][0]["finish_reason"], c["finish_reason"]);
            } else {
                assert_eq!(o["choices"], Value::Array(vec![]));
            }
        }
        assert!(ours[0]["usage"].is_null() && ours[0].get("usage").is_some());
        let no_usage = ChunkBuilder::new("c", 1, "m", false);
        assert!(no_usage.content("x").get("usage").is_none());
        assert_eq!(
            no_usage
                .on_event(&StreamEvent::Done(Completion {
                    model: "m".into(),
                    finish_reason: FinishReason::Cancelled,
                    usage: Usage::default(),
                    stop_sequence: None,
                    engine_seconds: None,
                }))
                .len(),
            1
        );
    }

    const TOOL_STREAM: &str =
        include_str!("../../tests/fixtures/openai_chat_stream_tool_calls.sse");

    #[test]
    fn recorded_tool_call_stream_reads_into_pieces_and_writes_back() {
        let (events, err) = read_stream(TOOL_STREAM);
        assert!(err.is_none(), "{err:?}");
        let pieces: Vec<&ToolCallDelta> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCall(d) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(pieces.len(), 4);
        assert_eq!(
            pieces[0].id.as_deref(),
            Some("call_DdmO9pD3xa9XTPNJ32zg2hcA")
        );
        assert_eq!(pieces[0].name.as_deref(), Some("get_weather"));
        let first: String = pieces
            .iter()
            .filter(|p| p.index == 0)
            .map(|p| p.arguments.as_str())
            .collect();
        assert_eq!(first, "{\"city\":\"Paris\"}");
        assert_eq!(pieces[3].index, 1);
        assert_eq!(pieces[3].name.as_deref(), Some("get_time"));
        match events.last() {
            Some(StreamEvent::Done(c)) => assert_eq!(c.finish_reason, FinishReason::ToolCalls),
            other => panic!("{other:?}"),
        }
        // Written as OpenAI chunks, the same pieces read back.
        let b = ChunkBuilder::new("chatcmpl-9", 7, "gpt-4o-mini-2024-07-18", true);
        let mut raw = format!("data: {}\n\n", b.role());
        for ev in &events {
            for chunk in b.on_event(ev) {
                raw.push_str(&format!("data: {chunk}\n\n"));
            }
        }
        raw.push_str("data: [DONE]\n\n");
        let (back, err) = read_stream(&raw);
        assert!(err.is_none());
        assert_eq!(back, events);
        let first_chunk = b.tool_call(pieces[0]);
        assert_eq!(
            first_chunk["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "type": "function",
                   "function": {"name": "get_weather", "arguments": ""}})
        );
    }

    #[test]
    fn recorded_tool_call_completion_reads_and_writes_back() {
        let v = json!({
            "id": "chatcmpl-T2", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}],
                "refusal": null}, "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        });
        let resp = parse_response(&target(), &v, &[]).unwrap();
        assert_eq!(resp.text, "");
        assert_eq!(resp.done.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            resp.tool_calls,
            vec![GeneratedToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            }]
        );
        let ours = response_json("c", 1, "gpt-4o-mini", &resp);
        assert_eq!(ours["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            ours["choices"][0]["message"]["tool_calls"],
            v["choices"][0]["message"]["tool_calls"]
        );
        assert_eq!(ours["choices"][0]["finish_reason"], "tool_calls");
        // For an Anthropic client the same call is a tool_use block.
        let a = crate::anthropic::messages_response_json("msg_1", "m", &resp);
        assert_eq!(
            a["content"],
            json!([{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}])
        );
        assert_eq!(a["stop_reason"], "tool_use");
    }
}
