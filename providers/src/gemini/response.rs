//! Gemini's answers read into canonical ones: a `GenerateContentResponse`,
//! the same objects one per SSE event when streamed, finish and block
//! reasons, `usageMetadata`, and Google's error bodies
//! (`{"error":{"code","message","status","details"}}`) with the retry delay
//! a 429 carries in its `RetryInfo`.

use std::collections::VecDeque;

use serde_json::Value;

use crate::remote::{protocol, RemoteTarget, StreamTranslator};
use crate::sse::SseEvent;
use crate::{
    infer_stop_sequence, ChatRequest, ChatResponse, Choice, Completion, FinishReason,
    GeneratedToolCall, ProviderError, StreamEvent, ToolCallDelta, Usage,
};

/// A Gemini `finishReason`. A candidate that called functions says `STOP`;
/// the caller turns that into `ToolCalls`.
pub(crate) fn finish_reason(v: Option<&Value>) -> FinishReason {
    match v.and_then(Value::as_str) {
        Some("MAX_TOKENS") => FinishReason::Length,
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY",
        ) => FinishReason::ContentFilter,
        // STOP, LANGUAGE, OTHER, MALFORMED_FUNCTION_CALL and reasons added later.
        _ => FinishReason::Stop,
    }
}

fn count(v: &Value, key: &str) -> u32 {
    v.get(key)
        .and_then(Value::as_u64)
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// `usageMetadata` as canonical usage: the prompt includes what tools added
/// to it, the completion includes the thinking tokens (billed as output),
/// and cached content is the cached part of the prompt.
pub(crate) fn usage(u: Option<&Value>) -> Usage {
    let Some(u) = u else {
        return Usage::default();
    };
    Usage {
        prompt_tokens: count(u, "promptTokenCount")
            .saturating_add(count(u, "toolUsePromptTokenCount")),
        completion_tokens: count(u, "candidatesTokenCount")
            .saturating_add(count(u, "thoughtsTokenCount")),
        cached_prompt_tokens: count(u, "cachedContentTokenCount"),
    }
}

/// The id a call gets (see the module comment of `gemini`): Gemini's own
/// when it sent one, else derived from the answer's `responseId` and the
/// call's position.
pub(crate) struct CallIds {
    base: String,
}

impl CallIds {
    pub(crate) fn new() -> Self {
        CallIds {
            base: uuid::Uuid::new_v4().simple().to_string()[..24].to_owned(),
        }
    }

    /// Use the answer's `responseId` (the same in every chunk of a stream).
    pub(crate) fn observe(&mut self, answer: &Value) {
        if let Some(id) = answer.get("responseId").and_then(Value::as_str) {
            let clean: String = id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(24)
                .collect();
            if !clean.is_empty() {
                self.base = clean;
            }
        }
    }

    pub(crate) fn id(&self, call: &Value, ordinal: u32) -> String {
        match call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(own) => own.to_owned(),
            None => format!("call_{}_{ordinal}", self.base),
        }
    }
}

/// The first candidate's parts: answer text (thought summaries left out)
/// and calls.
fn parts(answer: &Value) -> &[Value] {
    answer.pointer("/candidates/0").map_or(&[], candidate_parts)
}

fn candidate_parts(candidate: &Value) -> &[Value] {
    candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A candidate's `logprobsResult` (asked for with `responseLogprobs`) in
/// OpenAI's shape, `{"content": [{"token", "logprob", "bytes",
/// "top_logprobs"}, ...]}`: one entry per chosen token, its alternatives
/// from `topCandidates` at the same step.
pub(crate) fn logprobs(candidate: &Value) -> Option<Value> {
    let result = candidate.get("logprobsResult")?;
    let chosen = result.get("chosenCandidates")?.as_array()?;
    let tops = result.get("topCandidates").and_then(Value::as_array);
    let entry = |c: &Value| {
        let token = c.get("token").and_then(Value::as_str).unwrap_or("");
        serde_json::json!({
            "token": token,
            "logprob": c.get("logProbability").and_then(Value::as_f64).unwrap_or(0.0),
            "bytes": token.as_bytes(),
        })
    };
    let content: Vec<Value> = chosen
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let alts: Vec<Value> = tops
                .and_then(|t| t.get(i))
                .and_then(|t| t.get("candidates"))
                .and_then(Value::as_array)
                .map(|a| a.iter().map(entry).collect())
                .unwrap_or_default();
            let mut e = entry(c);
            e["top_logprobs"] = Value::Array(alts);
            e
        })
        .collect();
    Some(serde_json::json!({"content": content, "refusal": null}))
}

fn is_thought(part: &Value) -> bool {
    part.get("thought").and_then(Value::as_bool) == Some(true)
}

/// Whether the answer holds no candidate (absent or an empty list).
fn no_candidates(answer: &Value) -> bool {
    answer
        .get("candidates")
        .and_then(Value::as_array)
        .is_none_or(|c| c.is_empty())
}

/// Why a prompt was refused outright, when it was (no candidates then).
fn block_reason(answer: &Value) -> Option<&str> {
    answer
        .pointer("/promptFeedback/blockReason")
        .and_then(Value::as_str)
}

/// A complete `generateContent` answer. A prompt Gemini blocked
/// (`promptFeedback.blockReason`) is an empty answer ending in
/// `content_filter`, as OpenAI reports its own filter.
pub(crate) fn parse_response(
    t: &RemoteTarget,
    v: &Value,
    req: &ChatRequest,
) -> Result<ChatResponse, ProviderError> {
    let model = v
        .get("modelVersion")
        .and_then(Value::as_str)
        .unwrap_or(&t.upstream_model)
        .to_owned();
    let usage = usage(v.get("usageMetadata"));
    if no_candidates(v) {
        if block_reason(v).is_none() {
            return Err(protocol(
                t,
                "answer has neither candidates nor a blockReason",
            ));
        }
        return Ok(ChatResponse {
            text: String::new(),
            tool_calls: Vec::new(),
            done: Completion {
                model,
                finish_reason: FinishReason::ContentFilter,
                stop_sequence: None,
                usage,
                engine_seconds: None,
            },
            logprobs: None,
            more_choices: Vec::new(),
        });
    }
    let mut ids = CallIds::new();
    ids.observe(v);
    // `candidateCount: n` answers with n candidates: the first is the
    // answer, the others its further choices.
    let mut candidates = v
        .get("candidates")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|c| read_candidate(t, c, req, &ids));
    let first = candidates
        .next()
        .ok_or_else(|| protocol(t, "answer has no candidates"))??;
    let more_choices = candidates.collect::<Result<Vec<_>, _>>()?;
    let stop_sequence = (first.finish_reason == FinishReason::Stop)
        .then(|| infer_stop_sequence(&req.stop, None, &first.text))
        .flatten();
    Ok(ChatResponse {
        text: first.text,
        tool_calls: first.tool_calls,
        done: Completion {
            model,
            finish_reason: first.finish_reason,
            stop_sequence,
            usage,
            engine_seconds: None,
        },
        logprobs: first.logprobs,
        more_choices,
    })
}

/// One candidate: its text, calls, finish reason and log probabilities.
fn read_candidate(
    t: &RemoteTarget,
    c: &Value,
    req: &ChatRequest,
    ids: &CallIds,
) -> Result<Choice, ProviderError> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for p in candidate_parts(c).iter().filter(|p| !is_thought(p)) {
        if let Some(s) = p.get("text").and_then(Value::as_str) {
            text.push_str(s);
        }
        if let Some(call) = p.get("functionCall") {
            // Gemini has no switch for one call at a time; the client's
            // `parallel_tool_calls: false` keeps the first.
            if req.parallel_tool_calls == Some(false) && !tool_calls.is_empty() {
                continue;
            }
            tool_calls.push(generated_call(t, call, ids, tool_calls.len() as u32)?);
        }
    }
    let mut finish_reason = finish_reason(c.get("finishReason"));
    if !tool_calls.is_empty() && finish_reason == FinishReason::Stop {
        finish_reason = FinishReason::ToolCalls;
    }
    Ok(Choice {
        text,
        tool_calls,
        finish_reason,
        logprobs: logprobs(c),
    })
}

fn generated_call(
    t: &RemoteTarget,
    call: &Value,
    ids: &CallIds,
    ordinal: u32,
) -> Result<GeneratedToolCall, ProviderError> {
    let name = call
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| protocol(t, "functionCall has no name"))?;
    Ok(GeneratedToolCall {
        id: ids.id(call, ordinal),
        name: name.to_owned(),
        arguments: call
            .get("args")
            .map_or_else(|| "{}".to_owned(), Value::to_string),
    })
}

/// Reads `streamGenerateContent?alt=sse`: every event is a whole
/// `GenerateContentResponse` holding the next piece of text or whole
/// function calls; the one with a `finishReason` (or a `blockReason`) ends
/// the answer with that chunk's `usageMetadata`. Gemini sends no `[DONE]`.
pub(crate) struct ChunkReader {
    t: RemoteTarget,
    ids: CallIds,
    calls: u32,
    one_call: bool,
    stops: Vec<String>,
    text_tail: String,
    usage: Usage,
    model: Option<String>,
}

impl ChunkReader {
    pub(crate) fn new(t: RemoteTarget, req: &ChatRequest) -> Self {
        Self {
            t,
            ids: CallIds::new(),
            calls: 0,
            one_call: req.parallel_tool_calls == Some(false),
            stops: req.stop.clone(),
            text_tail: String::new(),
            usage: Usage::default(),
            model: None,
        }
    }

    fn done(&mut self, finish: FinishReason) -> StreamEvent {
        let stop_sequence = (finish == FinishReason::Stop)
            .then(|| infer_stop_sequence(&self.stops, None, &self.text_tail))
            .flatten();
        StreamEvent::Done(Completion {
            model: self
                .model
                .take()
                .unwrap_or_else(|| self.t.upstream_model.clone()),
            finish_reason: finish,
            stop_sequence,
            usage: self.usage,
            engine_seconds: None,
        })
    }
}

/// Enough of the answer's end to tell which stop string it ends with.
const TAIL_BYTES: usize = 256;

impl StreamTranslator for ChunkReader {
    fn on_event(
        &mut self,
        ev: SseEvent,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        let v: Value = serde_json::from_str(&ev.data)
            .map_err(|e| protocol(&self.t, format!("stream event is not json: {e}")))?;
        if let Some(err) = v.get("error") {
            return Err(error_object(&self.t, err, None));
        }
        self.ids.observe(&v);
        if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
            self.model = Some(m.to_owned());
        }
        if v.get("usageMetadata").is_some() {
            self.usage = usage(v.get("usageMetadata"));
        }
        if no_candidates(&v) && block_reason(&v).is_some() {
            out.push_back(self.done(FinishReason::ContentFilter));
            return Ok(true);
        }
        for p in parts(&v).iter().filter(|p| !is_thought(p)) {
            if let Some(s) = p
                .get("text")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                self.text_tail.push_str(s);
                if self.text_tail.len() > 2 * TAIL_BYTES {
                    let mut cut = self.text_tail.len() - TAIL_BYTES;
                    while !self.text_tail.is_char_boundary(cut) {
                        cut += 1;
                    }
                    self.text_tail.drain(..cut);
                }
                out.push_back(StreamEvent::Delta(s.to_owned()));
            }
            if let Some(call) = p.get("functionCall") {
                if self.one_call && self.calls > 0 {
                    continue;
                }
                let c = generated_call(&self.t, call, &self.ids, self.calls)?;
                out.push_back(StreamEvent::ToolCall(ToolCallDelta {
                    index: self.calls,
                    id: Some(c.id),
                    name: Some(c.name),
                    arguments: c.arguments,
                }));
                self.calls += 1;
            }
        }
        if let Some(lp) = v.pointer("/candidates/0").and_then(logprobs) {
            out.push_back(StreamEvent::Logprobs(lp));
        }
        if let Some(reason) = v
            .pointer("/candidates/0/finishReason")
            .filter(|r| !r.is_null())
        {
            let mut finish = finish_reason(Some(reason));
            if self.calls > 0 && finish == FinishReason::Stop {
                finish = FinishReason::ToolCalls;
            }
            out.push_back(self.done(finish));
            return Ok(true);
        }
        Ok(false)
    }

    fn on_eof(&self) -> ProviderError {
        ProviderError::Unreachable {
            target: self.t.target.clone(),
            message: "stream ended before a finishReason".into(),
        }
    }
}

/// The HTTP status a Google RPC `status` name stands for, for an error
/// object that arrived without one (inside a stream).
fn status_of(name: &str) -> u16 {
    match name {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "RESOURCE_EXHAUSTED" => 429,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

/// `details[].retryDelay` of a `google.rpc.RetryInfo` ("37s", "1.5s"), in
/// whole seconds, rounded up.
fn retry_delay(err: &Value) -> Option<u64> {
    err.get("details")?
        .as_array()?
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| s.ceil() as u64)
}

/// Whether Google says the key itself is bad (it answers 400 for that, which
/// would otherwise read as the client's mistake).
fn bad_key(err: &Value) -> bool {
    err.get("details")
        .and_then(Value::as_array)
        .is_some_and(|ds| {
            ds.iter()
                .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        })
}

/// One Google error object as a [`ProviderError`]; `status` is the HTTP
/// status when there was one. A rejected API key counts as 401.
pub(crate) fn error_object(t: &RemoteTarget, err: &Value, status: Option<u16>) -> ProviderError {
    let name = err.get("status").and_then(Value::as_str).unwrap_or("");
    let status = status
        .or_else(|| {
            err.get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
        })
        .unwrap_or_else(|| status_of(name));
    let status = if bad_key(err) { 401 } else { status };
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map_or_else(|| format!("{name} (status {status})"), str::to_owned);
    ProviderError::Upstream {
        target: t.target.clone(),
        status,
        message,
        retry_after_s: retry_delay(err),
    }
}

/// Gemini's error body (an object, or the same in a one-element array as
/// older stream answers sent it) as a [`ProviderError`]. The `retry-after`
/// header wins over the body's `RetryInfo` when both are there.
pub(crate) fn read_error(
    t: &RemoteTarget,
    status: u16,
    body: &[u8],
    retry_after_s: Option<u64>,
) -> ProviderError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().and_then(|v| match v {
        Value::Array(a) => a.first().and_then(|x| x.get("error")),
        other => other.get("error"),
    });
    match err.filter(|e| e.is_object()) {
        Some(e) => match error_object(t, e, Some(status)) {
            ProviderError::Upstream {
                target,
                status,
                message,
                retry_after_s: from_body,
            } => ProviderError::Upstream {
                target,
                status,
                message,
                retry_after_s: retry_after_s.or(from_body),
            },
            other => other,
        },
        None => crate::remote::upstream_error_with(t, status, body, retry_after_s),
    }
}
