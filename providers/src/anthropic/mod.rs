//! The Anthropic Messages API: [`AnthropicProvider`], the client for `anthropic`
//! targets, and (in `inbound`) the gateway's own `/v1/messages` surface —
//! validating Anthropic-shaped requests and answering in Anthropic's shapes.

mod inbound;

pub use inbound::{
    error_json, messages_response_json, parse_messages_request, MessagesStreamEncoder,
};

use std::collections::VecDeque;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::remote::{self, build_client, f32_json, protocol, RemoteTarget, StreamTranslator};
use crate::sse::SseEvent;
use crate::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, Completion, FinishReason,
    GeneratedToolCall, Image, ImageSource, Part, Provider, ProviderError, ResponseFormat, Role,
    StreamEvent, ToolCallDelta, ToolChoice, Usage,
};

/// The API version every request declares.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// What Anthropic requires as `max_tokens` when neither the request nor the
/// target config gives one.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// A client for one Anthropic target.
pub struct AnthropicProvider {
    target: RemoteTarget,
    client: reqwest::Client,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("target", &self.target.target)
            .field("base_url", &self.target.base_url)
            .field("upstream_model", &self.target.upstream_model)
            .finish()
    }
}

impl AnthropicProvider {
    pub fn new(target: RemoteTarget) -> Result<Self, ProviderError> {
        let client = build_client(&target)?;
        Ok(Self { target, client })
    }

    pub fn target(&self) -> &RemoteTarget {
        &self.target
    }

    fn request(&self, body: &Value) -> Result<reqwest::RequestBuilder, ProviderError> {
        self.request_to("v1/messages", body)
    }

    fn request_to(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let key = self.target.key()?;
        let mut req = self
            .client
            .post(self.target.url(path))
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(body);
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        Ok(req)
    }
}

/// The Messages API body for a canonical request.
///
/// System messages become the top-level `system`; empty turns are dropped and
/// consecutive turns of one role merged, because the API rejects both. The
/// temperature is clamped to Anthropic's 0..=1: OpenAI clients may send up to 2,
/// and refusing would fail a request another target in the route could serve.
pub(crate) fn upstream_body(
    t: &RemoteTarget,
    req: &ChatRequest,
    stream: bool,
) -> Result<Value, ProviderError> {
    if matches!(
        req.response_format,
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    ) {
        return Err(ProviderError::bad_request(
            format!(
                "target \"{}\" (anthropic) does not support json response formats",
                t.target
            ),
            Some("response_format"),
        ));
    }
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter(|m| m.role == Role::System && !m.content.is_empty())
        .map(|m| m.content.as_str())
        .collect();
    let mut turns: Vec<Turn> = Vec::new();
    for m in req.messages.iter().filter(|m| m.role != Role::System) {
        if m.content.is_empty()
            && m.parts.is_empty()
            && m.tool_calls.is_empty()
            && m.role != Role::Tool
        {
            continue;
        }
        // Tool results go back in a user turn.
        let role = if m.role == Role::Tool {
            Role::User
        } else {
            m.role
        };
        if turns.last().is_none_or(|t| t.role != role) {
            turns.push(Turn {
                role,
                text: String::new(),
                blocks: Vec::new(),
                tools: Vec::new(),
            });
        }
        let last = turns.len() - 1;
        let turn = &mut turns[last];
        match m.role {
            Role::Tool => {
                let mut block = json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                });
                if !m.content.is_empty() {
                    block["content"] = json!(m.content);
                }
                if m.tool_error {
                    block["is_error"] = json!(true);
                }
                turn.tools.push(block);
            }
            _ => {
                if !m.content.is_empty() {
                    turn.push_text(&m.content);
                }
                for p in &m.parts {
                    match p {
                        Part::Text(t) => turn.push_text(t),
                        Part::Image(img) => turn.push_image(img),
                    }
                }
                for c in &m.tool_calls {
                    turn.tools.push(json!({
                        "type": "tool_use",
                        "id": c.id,
                        "name": c.name,
                        "input": c.arguments,
                    }));
                }
            }
        }
    }
    if turns.is_empty() {
        return Err(ProviderError::bad_request(
            "anthropic needs at least one non-empty user or assistant message",
            Some("messages"),
        ));
    }
    let messages: Vec<Value> = turns.into_iter().map(Turn::into_json).collect();
    let max_tokens = req
        .max_tokens
        .or(t.max_tokens_default)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let mut body = json!({
        "model": t.upstream_model,
        "max_tokens": max_tokens,
        "messages": messages,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if !req.stop.is_empty() {
        body["stop_sequences"] = json!(req.stop);
    }
    if let Some(v) = req.temperature {
        body["temperature"] = f32_json(v.clamp(0.0, 1.0));
    }
    if let Some(v) = req.top_p {
        body["top_p"] = f32_json(v);
    }
    if let Some(user) = &req.user {
        body["metadata"] = json!({"user_id": user});
    }
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| {
                let mut v = json!({"name": t.name, "input_schema": t.parameters});
                if let Some(d) = &t.description {
                    v["description"] = json!(d);
                }
                v
            })
            .collect();
        let mut choice = match &req.tool_choice {
            None | Some(ToolChoice::Auto) => json!({"type": "auto"}),
            Some(ToolChoice::None) => json!({"type": "none"}),
            Some(ToolChoice::Required) => json!({"type": "any"}),
            Some(ToolChoice::Named(name)) => json!({"type": "tool", "name": name}),
        };
        if req.parallel_tool_calls == Some(false) && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        if req.tool_choice.is_some() || req.parallel_tool_calls == Some(false) {
            body["tool_choice"] = choice;
        }
    }
    if req.tools.is_empty() {
        // The Messages API refuses tool_use blocks in a request that defines
        // no tools; a client that stopped offering them (to get a final
        // answer) gets the called ones declared, schema-less, and none allowed.
        let mut called: Vec<&str> = Vec::new();
        for c in req.messages.iter().flat_map(|m| &m.tool_calls) {
            if !called.contains(&c.name.as_str()) {
                called.push(&c.name);
            }
        }
        if !called.is_empty() {
            body["tools"] = called
                .iter()
                .map(|name| json!({"name": name, "input_schema": {"type": "object"}}))
                .collect();
            body["tool_choice"] = json!({"type": "none"});
        }
    }
    if stream {
        body["stream"] = json!(true);
    }
    Ok(body)
}

/// One Messages API turn being built: text and image blocks in order, then
/// (assistant) `tool_use` or (user) `tool_result` blocks.
struct Turn {
    role: Role,
    /// Text not yet closed into a block; consecutive texts join with a blank line.
    text: String,
    /// Text and image blocks before `text`, once the turn holds an image.
    blocks: Vec<Value>,
    tools: Vec<Value>,
}

impl Turn {
    fn push_text(&mut self, t: &str) {
        if !self.text.is_empty() {
            self.text.push_str("\n\n");
        }
        self.text.push_str(t);
    }

    /// An image block, after the text before it: base64 bytes with their
    /// sniffed media type, or a URL the API fetches itself.
    fn push_image(&mut self, img: &Image) {
        if !self.text.is_empty() {
            let text = std::mem::take(&mut self.text);
            self.blocks.push(json!({"type": "text", "text": text}));
        }
        let source = match &img.source {
            ImageSource::Url(u) => json!({"type": "url", "url": u}),
            ImageSource::Base64 { media_type, data } => {
                json!({"type": "base64", "media_type": media_type.as_str(), "data": data})
            }
        };
        self.blocks.push(json!({"type": "image", "source": source}));
    }

    /// A plain string when the turn is only text; otherwise blocks, with a
    /// user turn's tool results first as the API requires.
    fn into_json(self) -> Value {
        let Turn {
            role,
            text,
            mut blocks,
            tools,
        } = self;
        if tools.is_empty() && blocks.is_empty() {
            return json!({"role": role.as_str(), "content": text});
        }
        if !text.is_empty() {
            blocks.push(json!({"type": "text", "text": text}));
        }
        let blocks: Vec<Value> = if role == Role::Assistant {
            blocks.into_iter().chain(tools).collect()
        } else {
            tools.into_iter().chain(blocks).collect()
        };
        json!({"role": role.as_str(), "content": blocks})
    }
}

/// An Anthropic `stop_reason`.
pub(crate) fn parse_stop_reason(v: Option<&Value>) -> FinishReason {
    match v.and_then(Value::as_str) {
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("refusal") => FinishReason::ContentFilter,
        Some("tool_use") => FinishReason::ToolCalls,
        // end_turn, stop_sequence, pause_turn
        _ => FinishReason::Stop,
    }
}

/// The `stop_sequence` Anthropic names when `stop_reason` is `stop_sequence`.
fn matched_stop(reason: Option<&Value>, seq: Option<&Value>) -> Option<String> {
    (reason.and_then(Value::as_str) == Some("stop_sequence"))
        .then(|| seq.and_then(Value::as_str).map(str::to_owned))
        .flatten()
}

fn count(v: &Value, key: &str) -> Option<u32> {
    v.get(key)
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// Anthropic's `input_tokens` excludes cache reads and writes; the canonical
/// `prompt_tokens` is the whole prompt.
#[derive(Debug, Default, Clone, Copy)]
struct WireUsage {
    input: u32,
    cache_read: u32,
    cache_creation: u32,
    output: u32,
}

impl WireUsage {
    /// Overwrite the counts present in `u` (message_delta carries cumulative
    /// counts, sometimes only `output_tokens`).
    fn update(&mut self, u: &Value) {
        if let Some(n) = count(u, "input_tokens") {
            self.input = n;
        }
        if let Some(n) = count(u, "cache_read_input_tokens") {
            self.cache_read = n;
        }
        if let Some(n) = count(u, "cache_creation_input_tokens") {
            self.cache_creation = n;
        }
        if let Some(n) = count(u, "output_tokens") {
            self.output = n;
        }
    }

    fn canonical(self) -> Usage {
        Usage {
            prompt_tokens: self
                .input
                .saturating_add(self.cache_read)
                .saturating_add(self.cache_creation),
            completion_tokens: self.output,
            cached_prompt_tokens: self.cache_read,
        }
    }
}

/// A Messages API answer as a canonical one: text blocks joined in order.
pub(crate) fn parse_message(t: &RemoteTarget, v: &Value) -> Result<ChatResponse, ProviderError> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| protocol(t, "message has no content array"))?;
    let text: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let tool_calls = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .map(|b| {
            let s = |k: &str| {
                b.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| protocol(t, format!("tool_use block has no {k}")))
            };
            Ok(GeneratedToolCall {
                id: s("id")?,
                name: s("name")?,
                arguments: b
                    .get("input")
                    .map_or_else(|| "{}".to_owned(), Value::to_string),
            })
        })
        .collect::<Result<Vec<_>, ProviderError>>()?;
    let mut usage = WireUsage::default();
    if let Some(u) = v.get("usage") {
        usage.update(u);
    }
    Ok(ChatResponse {
        text,
        tool_calls,
        done: Completion {
            model: v
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&t.upstream_model)
                .to_owned(),
            finish_reason: parse_stop_reason(v.get("stop_reason")),
            stop_sequence: matched_stop(v.get("stop_reason"), v.get("stop_sequence")),
            usage: usage.canonical(),
            engine_seconds: None,
        },
        logprobs: None,
        more_choices: Vec::new(),
    })
}

/// An Anthropic error object (`{"type":"overloaded_error","message":..}`) that
/// arrived inside a stream, with the status the same error has over HTTP.
pub(crate) fn stream_error(t: &RemoteTarget, err: &Value) -> ProviderError {
    let kind = err.get("type").and_then(Value::as_str).unwrap_or("");
    let status = match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
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

/// Reads the Messages streaming event sequence: message_start (input usage),
/// content_block_delta text (deltas), message_delta (stop reason, output usage),
/// message_stop (`Done`). An `error` event is an error item.
pub(crate) struct EventReader {
    t: RemoteTarget,
    model: Option<String>,
    usage: WireUsage,
    finish: FinishReason,
    /// Content block index → the ordinal of the tool call it holds.
    tool_blocks: std::collections::BTreeMap<u64, u32>,
    stop_sequence: Option<String>,
}

impl EventReader {
    pub(crate) fn new(t: RemoteTarget) -> Self {
        Self {
            t,
            model: None,
            usage: WireUsage::default(),
            finish: FinishReason::Stop,
            tool_blocks: Default::default(),
            stop_sequence: None,
        }
    }
}

impl StreamTranslator for EventReader {
    fn on_event(
        &mut self,
        ev: SseEvent,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        let v: Value = serde_json::from_str(&ev.data)
            .map_err(|e| protocol(&self.t, format!("stream event is not json: {e}")))?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(ev.event.as_deref())
            .unwrap_or("");
        match kind {
            "message_start" => {
                let msg = v.get("message");
                self.model = msg
                    .and_then(|m| m.get("model"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if let Some(u) = msg.and_then(|m| m.get("usage")) {
                    self.usage.update(u);
                }
            }
            "content_block_start" => {
                let block = v.get("content_block");
                if block.and_then(|b| b.get("type")).and_then(Value::as_str) == Some("tool_use") {
                    let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let ordinal = self.tool_blocks.len() as u32;
                    self.tool_blocks.insert(index, ordinal);
                    let s = |k: &str| {
                        block
                            .and_then(|b| b.get(k))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    };
                    out.push_back(StreamEvent::ToolCall(ToolCallDelta {
                        index: ordinal,
                        id: Some(
                            s("id").ok_or_else(|| protocol(&self.t, "tool_use block has no id"))?,
                        ),
                        name: Some(
                            s("name")
                                .ok_or_else(|| protocol(&self.t, "tool_use block has no name"))?,
                        ),
                        arguments: String::new(),
                    }));
                }
            }
            "content_block_delta" => {
                let delta = v.get("delta");
                if delta.and_then(|d| d.get("type")).and_then(Value::as_str)
                    == Some("input_json_delta")
                {
                    let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let ordinal = *self.tool_blocks.get(&index).ok_or_else(|| {
                        protocol(&self.t, "input_json_delta outside a tool_use block")
                    })?;
                    let piece = delta
                        .and_then(|d| d.get("partial_json"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if !piece.is_empty() {
                        out.push_back(StreamEvent::ToolCall(ToolCallDelta {
                            index: ordinal,
                            id: None,
                            name: None,
                            arguments: piece.to_owned(),
                        }));
                    }
                }
                let is_text =
                    delta.and_then(|d| d.get("type")).and_then(Value::as_str) == Some("text_delta");
                if let Some(text) = delta
                    .filter(|_| is_text)
                    .and_then(|d| d.get("text"))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    out.push_back(StreamEvent::Delta(text.to_owned()));
                }
            }
            "message_delta" => {
                if let Some(r) = v.pointer("/delta/stop_reason").filter(|r| !r.is_null()) {
                    self.finish = parse_stop_reason(Some(r));
                    self.stop_sequence = matched_stop(Some(r), v.pointer("/delta/stop_sequence"));
                }
                if let Some(u) = v.get("usage") {
                    self.usage.update(u);
                }
            }
            "message_stop" => {
                out.push_back(StreamEvent::Done(Completion {
                    model: self
                        .model
                        .take()
                        .unwrap_or_else(|| self.t.upstream_model.clone()),
                    finish_reason: self.finish,
                    stop_sequence: self.stop_sequence.take(),
                    usage: self.usage.canonical(),
                    engine_seconds: None,
                }));
                return Ok(true);
            }
            "error" => {
                let err = v.get("error").unwrap_or(&Value::Null);
                return Err(stream_error(&self.t, err));
            }
            // ping, content_block_stop, and event types
            // added later carry nothing we need.
            _ => {}
        }
        Ok(false)
    }

    fn on_eof(&self) -> ProviderError {
        ProviderError::Unreachable {
            target: self.t.target.clone(),
            message: "stream ended before message_stop".into(),
        }
    }
}

/// Whether an Anthropic target sends option `field`: none of them. The
/// Messages API has no penalties, biases, log probabilities, several
/// choices or seed, and OpenAI's request settings mean nothing to it.
pub fn sends_option(_field: &str) -> bool {
    false
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn sends_option(&self, field: &str) -> bool {
        sends_option(field)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kind: self.target.kind,
            upstream_model: self.target.upstream_model.clone(),
            streaming: true,
            json_mode: false,
            tools: true,
            embeddings: false,
            embedding_dimensions: false,
            vision: true,
            context_tokens: None,
            details: Default::default(),
        }
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let body = upstream_body(&self.target, req, false)?;
        let answer = remote::send_json(&self.target, self.request(&body)?).await?;
        if answer.get("type").and_then(Value::as_str) == Some("error") {
            let err = answer.get("error").unwrap_or(&Value::Null);
            return Err(stream_error(&self.target, err));
        }
        parse_message(&self.target, &answer)
    }

    /// Forwarded to the upstream's `/v1/messages/count_tokens`, which takes
    /// the prompt only (model, system, messages): generation settings are
    /// refused there.
    async fn count_tokens(&self, req: &ChatRequest) -> Result<Option<u32>, ProviderError> {
        let full = upstream_body(&self.target, req, false)?;
        let mut body = json!({"model": full["model"], "messages": full["messages"]});
        if let Some(system) = full.get("system") {
            body["system"] = system.clone();
        }
        let answer = remote::send_json(
            &self.target,
            self.request_to("v1/messages/count_tokens", &body)?,
        )
        .await?;
        count(&answer, "input_tokens")
            .map(Some)
            .ok_or_else(|| protocol(&self.target, "count_tokens answer has no input_tokens"))
    }

    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let body = upstream_body(&self.target, req, true)?;
        let events = remote::send_sse(&self.target, self.request(&body)?).await?;
        Ok(remote::translate(
            events,
            EventReader::new(self.target.clone()),
        ))
    }
}

#[cfg(test)]
mod tests;
