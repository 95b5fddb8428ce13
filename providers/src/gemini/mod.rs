//! Google's Gemini API: [`GeminiProvider`], the client for `gemini` targets.
//! A canonical request becomes a `models/{model}:generateContent` body (or
//! `:streamGenerateContent?alt=sse`); `response` reads the answers, the
//! stream and Gemini's error bodies; `schema` translates JSON Schema into
//! Gemini's OpenAPI subset.
//!
//! Tool-call ids: Gemini's function calls carry no id (its `FunctionCall.id`
//! is usually absent), so the adapter derives one per call from the answer's
//! `responseId` and the call's position in it (`call_<responseId>_<n>`):
//! every chunk of a stream and a plain answer name a call alike, and each
//! answer's ids differ from every earlier answer's. When Gemini does send an
//! id, it is used as is. On the way back a tool result is matched to its
//! call by the canonical id, which gives the function's name, and the
//! results of one turn are sent in the order of the calls they answer, which
//! is how Gemini pairs a `functionResponse` with its `functionCall`.

mod response;
pub mod schema;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::remote::{self, build_client, f32_json, RemoteTarget};
use crate::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, ImageSource, MediaType, Message, Piece,
    Provider, ProviderError, ResponseFormat, Role, ToolChoice,
};

/// Where the Gemini API lives; `base_url` in the config replaces it.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

/// The most stop sequences Gemini takes.
pub const MAX_STOP_SEQUENCES: usize = 5;

/// The signature Google documents for replaying a function call whose
/// thought signature is not known: the gateway keeps no conversation state,
/// so a call that comes back from a client has lost the one Gemini sent.
/// Gemini 3 models refuse a replayed call without one.
pub const SKIP_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";

/// A client for one Gemini target.
pub struct GeminiProvider {
    target: RemoteTarget,
    client: reqwest::Client,
}

impl std::fmt::Debug for GeminiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiProvider")
            .field("target", &self.target.target)
            .field("base_url", &self.target.base_url)
            .field("upstream_model", &self.target.upstream_model)
            .finish()
    }
}

impl GeminiProvider {
    pub fn new(target: RemoteTarget) -> Result<Self, ProviderError> {
        let client = build_client(&target)?;
        Ok(Self { target, client })
    }

    pub fn target(&self) -> &RemoteTarget {
        &self.target
    }

    fn request(
        &self,
        method: &str,
        body: &Value,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let key = self.target.key()?;
        let mut req = self
            .client
            .post(
                self.target
                    .url(&method_path(&self.target.upstream_model, method)),
            )
            .json(body);
        if let Some(key) = key {
            req = req.header("x-goog-api-key", key);
        }
        Ok(req)
    }
}

/// `models/{model}:{method}`; the config may name the model with or without
/// Gemini's `models/` prefix.
pub(crate) fn method_path(model: &str, method: &str) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    format!("models/{model}:{method}")
}

/// Built-in context windows of the Gemini families (input tokens).
pub fn context_tokens(model: &str) -> Option<u32> {
    let m = model.strip_prefix("models/").unwrap_or(model);
    let families = ["gemini-2.5-", "gemini-3-", "gemini-3.1-"];
    families
        .iter()
        .any(|f| m.starts_with(f))
        .then_some(1_048_576)
}

/// Gemini 3 and later want a thought signature on replayed function calls;
/// 2.x models neither need nor expect one.
fn wants_thought_signature(model: &str) -> bool {
    let m = model.strip_prefix("models/").unwrap_or(model);
    m.strip_prefix("gemini-")
        .and_then(|rest| rest.split(['.', '-']).next())
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major >= 3)
}

/// A part with its place in its turn: a function response sorts by the
/// position of the call it answers, before any text of the same turn.
type PlacedPart = ((u8, usize), Value);

/// One `contents[]` entry being built.
struct Turn {
    role: &'static str,
    parts: Vec<PlacedPart>,
}

/// The `generateContent` body for a canonical request.
///
/// System messages become `systemInstruction`; assistant turns are `model`,
/// tool results go back as `functionResponse` parts of a `user` turn;
/// consecutive turns of one role are merged and empty ones dropped, as
/// Gemini requires alternating, non-empty turns.
pub(crate) fn upstream_body(t: &RemoteTarget, req: &ChatRequest) -> Result<Value, ProviderError> {
    // Every call made so far: its function's name and its place in its turn.
    let mut calls: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter(|m| m.role == Role::System && !m.content.is_empty())
        .map(|m| m.content.as_str())
        .collect();
    let mut turns: Vec<Turn> = Vec::new();
    let signature = wants_thought_signature(&t.upstream_model);
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role {
            Role::System => continue,
            Role::User | Role::Tool => "user",
            Role::Assistant => "model",
        };
        let mut parts = message_parts(i, m, &calls)?;
        if parts.is_empty() {
            continue;
        }
        for (n, c) in m.tool_calls.iter().enumerate() {
            calls.insert(c.id.as_str(), (c.name.as_str(), n));
        }
        if m.role == Role::Assistant && signature {
            if let Some((_, p)) = parts
                .iter_mut()
                .find(|(_, p)| p.get("functionCall").is_some())
            {
                p["thoughtSignature"] = json!(SKIP_THOUGHT_SIGNATURE);
            }
        }
        match turns.last_mut() {
            Some(last) if last.role == role => last.parts.append(&mut parts),
            _ => turns.push(Turn { role, parts }),
        }
    }
    if turns.is_empty() {
        return Err(ProviderError::bad_request(
            "gemini needs at least one non-empty user or assistant message",
            Some("messages"),
        ));
    }
    let contents: Vec<Value> = turns
        .into_iter()
        .map(|mut turn| {
            turn.parts.sort_by_key(|(key, _)| *key);
            let parts: Vec<Value> = turn.parts.into_iter().map(|(_, p)| p).collect();
            json!({"role": turn.role, "parts": parts})
        })
        .collect();
    let mut body = json!({"contents": contents});
    if !system.is_empty() {
        body["systemInstruction"] = json!({"parts": [{"text": system.join("\n\n")}]});
    }
    let config = generation_config(t, req)?;
    if !config.is_empty() {
        body["generationConfig"] = Value::Object(config);
    }
    tools(req, &mut body)?;
    Ok(body)
}

/// The parts of one canonical message: text first, then (assistant) the
/// calls it made, or (tool) the result, placed after the call it answers.
fn message_parts(
    i: usize,
    m: &Message,
    calls: &BTreeMap<&str, (&str, usize)>,
) -> Result<Vec<PlacedPart>, ProviderError> {
    let mut parts = Vec::new();
    if m.role == Role::Tool {
        let path = format!("messages[{i}].tool_call_id");
        let id = m.tool_call_id.as_deref().unwrap_or_default();
        let (name, ordinal) = calls.get(id).copied().ok_or_else(|| {
            ProviderError::bad_request(
                format!("\"{path}\" answers no earlier tool call: \"{id}\""),
                Some(&path),
            )
        })?;
        // Gemini reads a function's outcome under "output", a failure under "error".
        let key = if m.tool_error { "error" } else { "output" };
        parts.push((
            (0, ordinal),
            json!({"functionResponse": {"name": name, "response": {key: m.content}}}),
        ));
        return Ok(parts);
    }
    for piece in m.pieces() {
        parts.push(((1, i), piece_json(piece)));
    }
    for c in &m.tool_calls {
        // Gemini's args is an object; the canonical arguments always are
        // one when a client sent them (both inbound parsers check).
        let args = match &c.arguments {
            Value::Object(_) => c.arguments.clone(),
            other => json!({ "arguments": other }),
        };
        parts.push((
            (1, i),
            json!({"functionCall": {"name": c.name, "args": args}}),
        ));
    }
    Ok(parts)
}

/// A text part, or an image: inline bytes as `inlineData`, a URL as
/// `fileData` (Gemini fetches it; its MIME type from the URL's extension
/// when that tells it, since `fileData` takes one beside the URI).
fn piece_json(p: Piece<'_>) -> Value {
    match p {
        Piece::Text(t) => json!({"text": t}),
        Piece::Image(img) => match &img.source {
            ImageSource::Base64 { media_type, data } => {
                json!({"inlineData": {"mimeType": media_type.as_str(), "data": data}})
            }
            ImageSource::Url(u) => {
                let mut f = json!({"fileUri": u});
                if let Some(mt) = MediaType::from_url(u) {
                    f["mimeType"] = json!(mt.as_str());
                }
                json!({"fileData": f})
            }
        },
    }
}

fn generation_config(
    t: &RemoteTarget,
    req: &ChatRequest,
) -> Result<serde_json::Map<String, Value>, ProviderError> {
    let mut c = serde_json::Map::new();
    if let Some(v) = req.temperature {
        c.insert("temperature".into(), f32_json(v));
    }
    if let Some(v) = req.top_p {
        c.insert("topP".into(), f32_json(v));
    }
    if let Some(n) = req.max_tokens.or(t.max_tokens_default) {
        c.insert("maxOutputTokens".into(), json!(n));
    }
    if !req.stop.is_empty() {
        if req.stop.len() > MAX_STOP_SEQUENCES {
            return Err(ProviderError::bad_request(
                format!(
                    "target \"{}\" (gemini) takes at most {MAX_STOP_SEQUENCES} stop sequences, got {}",
                    t.target,
                    req.stop.len()
                ),
                Some("stop"),
            ));
        }
        c.insert("stopSequences".into(), json!(req.stop));
    }
    if let Some(seed) = req.seed {
        // The wire's seed may be negative; the canonical one keeps its bits.
        let signed = seed as i64;
        let seed = i32::try_from(signed).map_err(|_| {
            ProviderError::bad_request(
                format!("gemini takes a 32-bit \"seed\", got {signed}"),
                Some("seed"),
            )
        })?;
        c.insert("seed".into(), json!(seed));
    }
    if let Some(v) = req.options.presence_penalty {
        c.insert("presencePenalty".into(), f32_json(v));
    }
    if let Some(v) = req.options.frequency_penalty {
        c.insert("frequencyPenalty".into(), f32_json(v));
    }
    if let Some(n) = req.options.n {
        c.insert("candidateCount".into(), json!(n));
    }
    if req.options.logprobs {
        c.insert("responseLogprobs".into(), json!(true));
        if let Some(k) = req.options.top_logprobs {
            c.insert("logprobs".into(), json!(k));
        }
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            c.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            c.insert("responseMimeType".into(), json!("application/json"));
            c.insert(
                "responseSchema".into(),
                schema::to_gemini(schema, "response_format.json_schema.schema")?,
            );
        }
    }
    Ok(c)
}

/// `tools[].functionDeclarations` and `toolConfig.functionCallingConfig`.
fn tools(req: &ChatRequest, body: &mut Value) -> Result<(), ProviderError> {
    if req.tools.is_empty() {
        // A conversation with earlier calls but no tools on offer now (to
        // get a final answer): the called functions are declared, without
        // parameters, and none may be called.
        let mut called: Vec<&str> = Vec::new();
        for c in req.messages.iter().flat_map(|m| &m.tool_calls) {
            if !called.contains(&c.name.as_str()) {
                called.push(&c.name);
            }
        }
        if !called.is_empty() {
            let decls: Vec<Value> = called.iter().map(|n| json!({"name": n})).collect();
            body["tools"] = json!([{"functionDeclarations": decls}]);
            body["toolConfig"] = json!({"functionCallingConfig": {"mode": "NONE"}});
        }
        return Ok(());
    }
    let mut decls = Vec::new();
    for (i, tool) in req.tools.iter().enumerate() {
        let mut d = json!({"name": tool.name});
        if let Some(desc) = &tool.description {
            d["description"] = json!(desc);
        }
        // A function without arguments is declared without parameters:
        // Gemini refuses an OBJECT schema with no properties.
        let empty = tool
            .parameters
            .get("properties")
            .and_then(Value::as_object)
            .is_none_or(|p| p.is_empty());
        if !empty {
            d["parameters"] =
                schema::to_gemini(&tool.parameters, &format!("tools[{i}].function.parameters"))?;
        }
        decls.push(d);
    }
    body["tools"] = json!([{"functionDeclarations": decls}]);
    let config = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Auto) => Some(json!({"mode": "AUTO"})),
        Some(ToolChoice::None) => Some(json!({"mode": "NONE"})),
        Some(ToolChoice::Required) => Some(json!({"mode": "ANY"})),
        Some(ToolChoice::Named(name)) => {
            Some(json!({"mode": "ANY", "allowedFunctionNames": [name]}))
        }
    };
    if let Some(c) = config {
        body["toolConfig"] = json!({ "functionCallingConfig": c });
    }
    Ok(())
}

/// Whether a Gemini target sends option `field`: `seed`, the two penalties,
/// `n` and log probabilities (`generationConfig.seed`, `presencePenalty`,
/// `frequencyPenalty`, `candidateCount`, `responseLogprobs` and `logprobs`;
/// the further candidates and each one's `logprobsResult` are read back
/// into the answer's choices and `logprobs`).
pub fn sends_option(field: &str) -> bool {
    matches!(
        field,
        "seed" | "presence_penalty" | "frequency_penalty" | "n" | "logprobs" | "top_logprobs"
    )
}

#[async_trait]
impl Provider for GeminiProvider {
    fn sends_option(&self, field: &str) -> bool {
        sends_option(field)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            kind: self.target.kind,
            upstream_model: self.target.upstream_model.clone(),
            streaming: true,
            json_mode: true,
            tools: true,
            // Gemini's embedding models have their own API (`embedContent`),
            // not served here.
            embeddings: false,
            embedding_dimensions: false,
            vision: true,
            context_tokens: context_tokens(&self.target.upstream_model),
            details: Default::default(),
        }
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let body = upstream_body(&self.target, req)?;
        let answer = remote::send_json_with(
            &self.target,
            self.request("generateContent", &body)?,
            response::read_error,
        )
        .await?;
        if let Some(err) = answer.get("error") {
            return Err(response::error_object(&self.target, err, None));
        }
        response::parse_response(&self.target, &answer, req)
    }

    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let body = upstream_body(&self.target, req)?;
        let events = remote::send_sse_with(
            &self.target,
            self.request("streamGenerateContent?alt=sse", &body)?,
            response::read_error,
        )
        .await?;
        Ok(remote::translate(
            events,
            response::ChunkReader::new(self.target.clone(), req),
        ))
    }

    /// Gemini's own count (`:countTokens`) of the prompt as it would be sent.
    async fn count_tokens(&self, req: &ChatRequest) -> Result<Option<u32>, ProviderError> {
        let mut inner = upstream_body(&self.target, req)?;
        inner["model"] = json!(method_path(&self.target.upstream_model, "")
            .trim_end_matches(':')
            .to_owned());
        let body = json!({ "generateContentRequest": inner });
        let answer = remote::send_json_with(
            &self.target,
            self.request("countTokens", &body)?,
            response::read_error,
        )
        .await?;
        answer
            .get("totalTokens")
            .and_then(Value::as_u64)
            .map(|n| Some(u32::try_from(n).unwrap_or(u32::MAX)))
            .ok_or_else(|| remote::protocol(&self.target, "countTokens answer has no totalTokens"))
    }
}

#[cfg(test)]
mod tests;
