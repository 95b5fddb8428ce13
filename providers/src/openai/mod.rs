//! The OpenAI chat-completions wire format: validating what clients send
//! ([`parse_chat_request`]), answering them in OpenAI's exact shapes
//! ([`response_json`], [`ChunkBuilder`]), and [`OpenAiProvider`], the client for
//! `openai` and `openai-compatible` targets (DeepSeek, vLLM, llama.cpp server,
//! Ollama).

pub(crate) mod embeddings;
mod request;
mod response;
pub mod responses;

pub use embeddings::{
    base64_f32, embeddings_response_json, parse_embeddings_request, EncodingFormat,
};
pub use request::parse_chat_request;
pub use response::{finish_reason_str, response_json, usage_json, ChunkBuilder};
pub use responses::{parse_responses_request, ResponsesRequest, ResponsesStreamEncoder};

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::remote::{self, build_client, f32_json, RemoteTarget};
use crate::{
    BackendKind, Capabilities, ChatRequest, ChatResponse, ChatStream, Embeddings, Message, Piece,
    Provider, ProviderError, ResponseFormat, Tool, ToolChoice,
};

/// A client for one OpenAI or OpenAI-compatible target.
pub struct OpenAiProvider {
    target: RemoteTarget,
    client: reqwest::Client,
    embeddings: Option<EmbeddingModel>,
}

/// The model a target embeds with (`embeddings: { model }` in the config),
/// and whether it accepts `dimensions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingModel {
    pub model: String,
    pub dimensions: bool,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("OpenAiProvider")
            .field("target", &self.target.target)
            .field("base_url", &self.target.base_url)
            .field("upstream_model", &self.target.upstream_model)
            .finish()
    }
}

impl OpenAiProvider {
    pub fn new(target: RemoteTarget) -> Result<Self, ProviderError> {
        let client = build_client(&target)?;
        Ok(Self {
            target,
            client,
            embeddings: None,
        })
    }

    /// Lets the target serve `POST /v1/embeddings` with `model`.
    pub fn with_embeddings(mut self, model: EmbeddingModel) -> Self {
        self.embeddings = Some(model);
        self
    }

    pub fn target(&self) -> &RemoteTarget {
        &self.target
    }

    fn request(&self, body: &Value) -> Result<reqwest::RequestBuilder, ProviderError> {
        self.post("chat/completions", body)
    }

    fn post(&self, path: &str, body: &Value) -> Result<reqwest::RequestBuilder, ProviderError> {
        let key = self.target.key()?;
        let mut req = self.client.post(self.target.url(path)).json(body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        Ok(req)
    }
}

/// The body sent upstream. Official OpenAI gets `max_completion_tokens` (its
/// reasoning models refuse `max_tokens`); compatible servers get `max_tokens`,
/// the name they all know. Gateway metadata stays in the gateway, except
/// with `store: true` on OpenAI.
pub(crate) fn upstream_body(t: &RemoteTarget, req: &ChatRequest, stream: bool) -> Value {
    let messages: Vec<Value> = req.messages.iter().map(message_json).collect();
    let mut body = json!({"model": t.upstream_model, "messages": messages});
    if let Some(n) = req.max_tokens.or(t.max_tokens_default) {
        let key = match t.kind {
            BackendKind::Openai => "max_completion_tokens",
            _ => "max_tokens",
        };
        body[key] = json!(n);
    }
    if let Some(v) = req.temperature {
        body["temperature"] = f32_json(v);
    }
    if let Some(v) = req.top_p {
        body["top_p"] = f32_json(v);
    }
    if !req.stop.is_empty() {
        body["stop"] = json!(req.stop);
    }
    if let Some(v) = req.seed {
        body["seed"] = json!(v);
    }
    if let Some(v) = &req.user {
        body["user"] = json!(v);
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            body["response_format"] = json!({"type": "json_object"})
        }
        Some(ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        }) => {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": strict}
            });
        }
    }
    // OpenAI refuses `tool_choice` and `parallel_tool_calls` without
    // `tools`; without tools both mean plain text anyway.
    if !req.tools.is_empty() {
        body["tools"] = req.tools.iter().map(tool_json).collect();
        if let Some(v) = req.parallel_tool_calls {
            body["parallel_tool_calls"] = json!(v);
        }
        if let Some(choice) = &req.tool_choice {
            body["tool_choice"] = tool_choice_json(choice);
        }
    }
    options_json(&req.options, &mut body);
    // `metadata` is the gateway's own tags; OpenAI gets it with the stored
    // completion it labels (`store: true`), the only case its API takes it.
    if t.kind == BackendKind::Openai && req.options.store == Some(true) && !req.metadata.is_empty()
    {
        body["metadata"] = json!(req.metadata);
    }
    if stream {
        body["stream"] = json!(true);
        // Always ask for usage so metering is exact, whatever the client wanted.
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// The generation options a request sets, under their OpenAI names. Which of
/// them a target may get is decided before dispatch ([`sends_option`]).
fn options_json(o: &crate::GenerationOptions, body: &mut Value) {
    let crate::GenerationOptions {
        frequency_penalty,
        presence_penalty,
        logit_bias,
        logprobs,
        top_logprobs,
        n,
        reasoning_effort,
        verbosity,
        service_tier,
        prompt_cache_key,
        safety_identifier,
        store,
    } = o;
    if let Some(v) = frequency_penalty {
        body["frequency_penalty"] = f32_json(*v);
    }
    if let Some(v) = presence_penalty {
        body["presence_penalty"] = f32_json(*v);
    }
    if !logit_bias.is_empty() {
        let m: serde_json::Map<String, Value> = logit_bias
            .iter()
            .map(|(k, v)| (k.clone(), f32_json(*v)))
            .collect();
        body["logit_bias"] = Value::Object(m);
    }
    if *logprobs {
        body["logprobs"] = json!(true);
        if let Some(k) = top_logprobs {
            body["top_logprobs"] = json!(k);
        }
    }
    if let Some(n) = n {
        body["n"] = json!(n);
    }
    for (key, v) in [
        ("reasoning_effort", reasoning_effort),
        ("verbosity", verbosity),
        ("service_tier", service_tier),
        ("prompt_cache_key", prompt_cache_key),
        ("safety_identifier", safety_identifier),
    ] {
        if let Some(v) = v {
            body[key] = json!(v);
        }
    }
    if let Some(v) = store {
        body["store"] = json!(v);
    }
}

/// One canonical message in OpenAI's shape: an assistant's calls as
/// `tool_calls` (arguments as a JSON text), a tool result as a `tool`
/// message naming the call it answers.
fn message_json(m: &Message) -> Value {
    let mut v = json!({"role": m.role.as_str(), "content": m.content});
    if !m.parts.is_empty() {
        v["content"] = m.pieces().map(part_json).collect();
    }
    if !m.tool_calls.is_empty() {
        if m.content.is_empty() && m.parts.is_empty() {
            v["content"] = Value::Null;
        }
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments.to_string()}
                })
            })
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}

/// A content part: `text`, or `image_url` with the URL (or a data URI for
/// inline bytes) and the client's `detail`.
fn part_json(p: Piece<'_>) -> Value {
    match p {
        Piece::Text(t) => json!({"type": "text", "text": t}),
        Piece::Image(img) => {
            let mut u = json!({"url": img.as_openai_url()});
            if let Some(d) = img.detail {
                u["detail"] = json!(d.as_str());
            }
            json!({"type": "image_url", "image_url": u})
        }
    }
}

fn tool_json(t: &Tool) -> Value {
    let mut f = json!({"name": t.name, "parameters": t.parameters});
    if let Some(d) = &t.description {
        f["description"] = json!(d);
    }
    if let Some(s) = t.strict {
        f["strict"] = json!(s);
    }
    json!({"type": "function", "function": f})
}

fn tool_choice_json(c: &ToolChoice) -> Value {
    match c {
        ToolChoice::None => json!("none"),
        ToolChoice::Auto => json!("auto"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Named(name) => json!({"type": "function", "function": {"name": name}}),
    }
}

/// Whether an `openai` or `openai-compatible` target sends option `field`.
/// OpenAI itself gets every option. A compatible server (vLLM, llama.cpp
/// server, Ollama, DeepSeek) gets the sampling ones its OpenAI-shaped API
/// has in common with OpenAI's (`seed`, penalties, `logit_bias`,
/// `logprobs` / `top_logprobs`, `n`); OpenAI's own request settings
/// (`reasoning_effort`, `verbosity`, `service_tier`, `prompt_cache_key`,
/// `safety_identifier`, `store: true`) are refused for it, since such a
/// server would ignore them without a word.
pub fn sends_option(kind: BackendKind, field: &str) -> bool {
    match kind {
        BackendKind::Openai => true,
        _ => matches!(
            field,
            "seed"
                | "frequency_penalty"
                | "presence_penalty"
                | "logit_bias"
                | "logprobs"
                | "top_logprobs"
                | "n"
        ),
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn sends_option(&self, field: &str) -> bool {
        sends_option(self.target.kind, field)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kind: self.target.kind,
            upstream_model: self.target.upstream_model.clone(),
            streaming: true,
            json_mode: true,
            tools: true,
            embeddings: self.embeddings.is_some(),
            embedding_dimensions: self.embeddings.as_ref().is_some_and(|e| e.dimensions),
            // The adapter sends image parts; whether the model behind it
            // reads them is the target's `capabilities.vision`.
            vision: true,
            context_tokens: None,
            details: Default::default(),
        }
    }

    async fn embed(&self, req: &ChatRequest) -> Result<Embeddings, ProviderError> {
        let Some(emb) = &self.embeddings else {
            return Err(ProviderError::bad_request(
                format!("target \"{}\" has no embedding model", self.target.target),
                Some("model"),
            ));
        };
        let inputs = req.embedding.as_ref().map_or(0, |p| p.inputs.len());
        let body = embeddings::upstream_body(&emb.model, req);
        let answer = remote::send_json(&self.target, self.post("embeddings", &body)?).await?;
        embeddings::parse_upstream(&self.target, &emb.model, inputs, &answer)
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let body = upstream_body(&self.target, req, false);
        let answer = remote::send_json(&self.target, self.request(&body)?).await?;
        if let Some(err) = answer.get("error").filter(|e| !e.is_null()) {
            return Err(response::stream_error(&self.target, err));
        }
        response::parse_response(&self.target, &answer, &req.stop)
    }

    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let body = upstream_body(&self.target, req, true);
        let events = remote::send_sse(&self.target, self.request(&body)?).await?;
        Ok(remote::translate(
            events,
            response::ChunkReader::new(self.target.clone(), &req.stop),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Role, ToolCall};

    #[test]
    fn an_anthropic_image_request_becomes_openai_image_url_parts() {
        let png = crate::image::PNG_1X1;
        let req = crate::anthropic::parse_messages_request(&serde_json::json!({
            "model": "alias",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "compare"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
                {"type": "image", "source": {"type": "url", "url": "https://e.com/b.jpg"}},
                {"type": "text", "text": "which is brighter?"}
            ]}]
        }))
        .unwrap();
        let t = RemoteTarget::new("o", BackendKind::Openai, "http://x/v1", "gpt-x");
        let body = upstream_body(&t, &req, false);
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": [
                {"type": "text", "text": "compare"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
                {"type": "image_url", "image_url": {"url": "https://e.com/b.jpg"}},
                {"type": "text", "text": "which is brighter?"}
            ]}])
        );
        // `detail` passes through from an OpenAI client.
        let req = parse_chat_request(
            &json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://e.com/c.png", "detail": "low"}}
            ]}]}),
        )
        .unwrap();
        assert_eq!(
            upstream_body(&t, &req, true)["messages"][0]["content"],
            json!([{"type": "image_url", "image_url": {"url": "https://e.com/c.png", "detail": "low"}}])
        );
    }

    fn req() -> ChatRequest {
        ChatRequest {
            model: "alias".into(),
            messages: vec![
                Message::new(Role::System, "be brief"),
                Message::new(Role::User, "hi"),
            ],
            max_tokens: Some(32),
            temperature: Some(0.5),
            stop: vec!["END".into()],
            seed: Some(7),
            user: Some("u1".into()),
            response_format: Some(ResponseFormat::JsonObject),
            metadata: [("team".to_string(), "legal".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn upstream_body_for_openai_and_compatible_targets() {
        let openai = RemoteTarget::new("o", BackendKind::Openai, "http://x/v1", "gpt-5.4-mini");
        let b = upstream_body(&openai, &req(), true);
        assert_eq!(
            b,
            json!({
                "model": "gpt-5.4-mini",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"}
                ],
                "max_completion_tokens": 32,
                "temperature": 0.5,
                "stop": ["END"],
                "seed": 7,
                "user": "u1",
                "response_format": {"type": "json_object"},
                "stream": true,
                "stream_options": {"include_usage": true}
            })
        );
        let mut compat = RemoteTarget::new(
            "d",
            BackendKind::OpenaiCompatible,
            "http://y/v1",
            "deepseek-chat",
        );
        compat.max_tokens_default = Some(100);
        let mut r = req();
        r.max_tokens = None;
        let b = upstream_body(&compat, &r, false);
        assert_eq!(b["model"], "deepseek-chat");
        assert_eq!(b["max_tokens"], 100);
        assert!(b.get("max_completion_tokens").is_none());
        assert!(b.get("stream").is_none() && b.get("metadata").is_none());
        // No tools: no tool fields, whatever the client said about them.
        let mut r = req();
        r.tool_choice = Some(ToolChoice::None);
        r.parallel_tool_calls = Some(true);
        let b = upstream_body(&openai, &r, false);
        assert!(b.get("tool_choice").is_none() && b.get("parallel_tool_calls").is_none());
    }

    #[test]
    fn tools_calls_and_results_go_upstream_in_openai_shape() {
        let client: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/openai_request_tools.json"
        ))
        .unwrap();
        let parsed = parse_chat_request(&client).unwrap();
        let t = RemoteTarget::new("o", BackendKind::Openai, "http://x/v1", "gpt-5.4-mini");
        let up = upstream_body(&t, &parsed, false);
        assert_eq!(up["tools"], client["tools"]);
        assert_eq!(up["tool_choice"], "auto");
        assert_eq!(up["parallel_tool_calls"], false);
        assert_eq!(up["messages"][1]["content"], Value::Null);
        assert_eq!(up["messages"][1]["tool_calls"][0]["id"], "call_abc123");
        let args = up["messages"][1]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(args).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(up["messages"][2], client["messages"][2]);
        let mut named = parsed.clone();
        named.tool_choice = Some(ToolChoice::Named("get_weather".into()));
        named.messages[1].content = "checking".into();
        named.messages[1].tool_calls.push(ToolCall {
            id: "call_2".into(),
            name: "get_weather".into(),
            arguments: json!({}),
        });
        let up = upstream_body(&t, &named, true);
        assert_eq!(
            up["tool_choice"],
            json!({"type": "function", "function": {"name": "get_weather"}})
        );
        assert_eq!(up["messages"][1]["content"], "checking");
        assert_eq!(
            up["messages"][1]["tool_calls"][1]["function"]["arguments"],
            "{}"
        );
    }

    #[test]
    fn parsed_client_body_becomes_the_upstream_body() {
        let client: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/openai_request_full.json"
        ))
        .unwrap();
        let parsed = parse_chat_request(&client).unwrap();
        let t = RemoteTarget::new("o", BackendKind::Openai, "http://x/v1", "gpt-5.4-mini");
        let up = upstream_body(&t, &parsed, parsed.stream);
        assert_eq!(up["response_format"], client["response_format"]);
        assert_eq!(up["stop"], client["stop"]);
        assert_eq!(up["max_completion_tokens"], client["max_completion_tokens"]);
        assert_eq!(up["temperature"], client["temperature"]);
        assert_eq!(up["top_p"], client["top_p"]);
        assert_eq!(up["messages"].as_array().unwrap().len(), 5);
        assert_eq!(
            up["messages"][1],
            json!({"role": "system", "content": "Answer in English."})
        );
    }
}
