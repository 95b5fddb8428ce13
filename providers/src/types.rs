//! Canonical request and response types. They follow OpenAI's chat completions
//! shape because that is what most clients speak; adapters translate from here.

use std::collections::BTreeMap;
use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::{Image, ImageSource, Part, ProviderError};

/// Who wrote a message. OpenAI's `developer` role is read as `System`; a
/// `Tool` message is the result of one earlier tool call (Anthropic's
/// `tool_result` block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message: `content` followed by `parts`. Array content without images
/// is flattened to its text parts in `content`; content with images keeps
/// every part, in order, in `parts` (`content` then empty), so an image
/// stays where the client put it between texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// The parts after `content`, in order; empty for text-only messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    /// The calls an assistant message made (OpenAI `tool_calls`, Anthropic
    /// `tool_use` blocks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a `Tool` message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For a `Tool` message: the tool failed (Anthropic's `is_error`). OpenAI
    /// has no such flag; its targets see only the result's text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tool_error: bool,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            parts: Vec::new(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            tool_error: false,
        }
    }
}

/// A tool call in the conversation the client sent. The arguments are kept
/// as parsed JSON, not as the wire's string, so the classifier reads (and
/// redaction rewrites) the decoded strings an adapter may send, never an
/// escaped form that hides them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// A JSON schema object for the arguments.
    pub parameters: serde_json::Value,
    /// OpenAI's `function.strict`; other targets ignore it.
    pub strict: Option<bool>,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    None,
    Auto,
    /// At least one call (OpenAI `required`, Anthropic `any`).
    Required,
    /// This tool (OpenAI `{"type":"function",..}`, Anthropic `{"type":"tool",..}`).
    Named(String),
}

/// A tool call the model made, as the target sent it: the arguments are the
/// model's text, which need not even be valid JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A piece of a streamed tool call. The first piece of call `index` carries
/// its id and name; later ones carry only more argument text.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallDelta {
    /// The call's position among this answer's tool calls, from 0.
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

/// Constrained output requested by the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: serde_json::Value,
        #[serde(default)]
        strict: bool,
    },
}

/// A validated chat request, independent of the wire format it arrived in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model alias the client asked for.
    pub model: String,
    pub messages: Vec<Message>,
    /// Upper bound on generated tokens (`max_tokens` or `max_completion_tokens`).
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop: Vec<String>,
    pub seed: Option<u64>,
    pub user: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub response_format: Option<ResponseFormat>,
    pub stream: bool,
    /// `stream_options.include_usage`: send a final chunk with usage.
    pub include_usage: bool,
    /// Functions the model may call.
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `parallel_tool_calls` (Anthropic: the negation of
    /// `disable_parallel_tool_use`).
    pub parallel_tool_calls: Option<bool>,
    /// Set for `POST /v1/embeddings`: the inputs to embed instead of
    /// messages to answer. Its texts are outbound texts like any message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingParams>,
    /// The generation options not every backend can honour; each adapter's
    /// `Provider::sends_option` says which it sends, and dispatch skips a
    /// target that cannot send one the request sets.
    pub options: GenerationOptions,
}

/// One input of an embeddings request: text, or token ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    /// Token ids, passed to remote targets as they are; the local engine
    /// reads them as ids of its own vocabulary. The detectors cannot read
    /// them, so the gateway classes such a request as confidential.
    Tokens(Vec<u32>),
}

/// What an embeddings request asks for besides its model and `user`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingParams {
    pub inputs: Vec<EmbeddingInput>,
    /// `dimensions`: a shorter vector, for targets that can give one.
    pub dimensions: Option<u32>,
}

/// The vectors of an embeddings request, one per input, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// The model that embedded, as the backend names it.
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    /// Input tokens; completion tokens are always 0.
    pub prompt_tokens: u32,
    /// This request's local engine time, in seconds (local engine only).
    pub engine_seconds: Option<f64>,
}

/// Chat fields whose meaning depends on the backend: sampling penalties and
/// biases, log probabilities, several choices, and OpenAI's own request
/// settings. A field at its default (a zero penalty, `logprobs: false`,
/// `n: 1`, `store: false`) is not set: every backend honours the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationOptions {
    /// In [-2, 2]; `None` when absent or zero.
    pub frequency_penalty: Option<f32>,
    /// In [-2, 2]; `None` when absent or zero.
    pub presence_penalty: Option<f32>,
    /// Token id (the wire's string key, a decimal integer) to a bias in
    /// [-100, 100].
    pub logit_bias: BTreeMap<String, f32>,
    /// Return the log probability of each generated token.
    pub logprobs: bool,
    /// How many alternatives per token to return with it (1-20; needs `logprobs`).
    pub top_logprobs: Option<u8>,
    /// How many choices to generate; `None` for one.
    pub n: Option<u32>,
    /// OpenAI's `reasoning_effort` (`minimal`, `low`, `medium`, `high`, ...).
    pub reasoning_effort: Option<String>,
    /// OpenAI's `verbosity` (`low`, `medium`, `high`).
    pub verbosity: Option<String>,
    /// OpenAI's `service_tier` (`auto`, `default`, `flex`, `priority`, ...).
    pub service_tier: Option<String>,
    /// OpenAI's `prompt_cache_key`.
    pub prompt_cache_key: Option<String>,
    /// OpenAI's `safety_identifier`, the end user's stable id for abuse checks.
    pub safety_identifier: Option<String>,
    /// OpenAI's `store`; `Some(false)` is kept so it can be passed on, but
    /// only `Some(true)` is a setting another backend must refuse.
    pub store: Option<bool>,
}

impl GenerationOptions {
    /// Every option's wire name, in the order [`GenerationOptions::set_fields`] reports them.
    pub const FIELDS: [&'static str; 12] = [
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "n",
        "reasoning_effort",
        "verbosity",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "store",
    ];

    /// The wire names of the options this request sets to something other
    /// than their default. Taken apart without `..`: a new option is a
    /// compile error here until it is named.
    pub fn set_fields(&self) -> Vec<&'static str> {
        let GenerationOptions {
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
        } = self;
        let set = [
            frequency_penalty.is_some(),
            presence_penalty.is_some(),
            !logit_bias.is_empty(),
            *logprobs,
            top_logprobs.is_some(),
            n.is_some(),
            reasoning_effort.is_some(),
            verbosity.is_some(),
            service_tier.is_some(),
            prompt_cache_key.is_some(),
            safety_identifier.is_some(),
            *store == Some(true),
        ];
        Self::FIELDS
            .iter()
            .zip(set)
            .filter_map(|(f, on)| on.then_some(*f))
            .collect()
    }
}

impl ChatRequest {
    /// All message text, then every text input to embed, in order, for
    /// token estimates and the difficulty score. Privacy classification
    /// reads [`ChatRequest::outbound_texts`].
    pub fn text(&self) -> String {
        let inputs = self.embedding.iter().flat_map(|p| {
            p.inputs.iter().filter_map(|i| match i {
                EmbeddingInput::Text(t) => Some(t.as_str()),
                EmbeddingInput::Tokens(_) => None,
            })
        });
        let messages: Vec<String> = self.messages.iter().map(Message::text).collect();
        let mut out = String::new();
        for t in messages.iter().map(String::as_str).chain(inputs) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(t);
        }
        out
    }

    /// Whether only a target that can embed may serve this request.
    pub fn needs_embeddings(&self) -> bool {
        self.embedding.is_some()
    }

    /// Whether only a target that can do tool calling may serve this request:
    /// it offers tools or carries earlier calls or their results.
    pub fn needs_tools(&self) -> bool {
        !self.tools.is_empty()
            || self
                .messages
                .iter()
                .any(|m| m.role == Role::Tool || !m.tool_calls.is_empty())
    }

    /// Every piece of text a provider adapter may send, in a fixed order:
    /// the one list the privacy classifier reads. [`ChatRequest::redact_texts`]
    /// visits the same pieces in the same order, so the i-th piece's
    /// detections are the ones redaction rewrites.
    ///
    /// Both visitors take the request apart without `..`: a field added to
    /// the canonical request is a compile error here until it is named as
    /// text or as something that carries none. The unit test
    /// `every_string_an_adapter_sends_is_an_outbound_text` checks the other
    /// direction: every string the adapters put in an upstream body comes from
    /// these pieces or from the gateway itself.
    pub fn outbound_texts(&self) -> Vec<OutboundText<'_>> {
        let ChatRequest {
            // The client's alias: adapters send the target's own model name.
            model: _,
            messages,
            max_tokens: _,
            temperature: _,
            top_p: _,
            stop,
            seed: _,
            user,
            metadata,
            response_format,
            stream: _,
            include_usage: _,
            tools,
            tool_choice,
            parallel_tool_calls: _,
            embedding,
            options,
        } = self;
        let mut out = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let Message {
                role: _,
                content,
                parts,
                tool_calls,
                tool_call_id,
                tool_error: _,
            } = m;
            out.push(OutboundText::new(TextField::Message(i), content));
            for part in parts {
                match part {
                    Part::Text(t) => out.push(OutboundText::new(TextField::Message(i), t)),
                    Part::Image(Image {
                        source,
                        detail: _,
                        field: _,
                    }) => match source {
                        // The URL is text an adapter sends; the bytes it
                        // points at, or inline bytes, no detector can read
                        // (`ChatRequest::has_uninspectable`).
                        ImageSource::Url(u) => {
                            out.push(OutboundText::new(TextField::ImageUrl(i), u));
                        }
                        ImageSource::Base64 {
                            media_type: _,
                            data: _,
                        } => {}
                    },
                }
            }
            for call in tool_calls {
                let ToolCall {
                    id,
                    name,
                    arguments,
                } = call;
                out.push(OutboundText::new(TextField::ToolCallId(i), id));
                out.push(OutboundText::new(TextField::ToolCallName(i), name));
                json_strings(arguments, &mut |s| {
                    out.push(OutboundText::new(TextField::ToolCallArguments(i), s));
                });
            }
            if let Some(id) = tool_call_id {
                out.push(OutboundText::new(TextField::ToolCallId(i), id));
            }
        }
        for (i, s) in stop.iter().enumerate() {
            out.push(OutboundText::new(TextField::Stop(i), s));
        }
        if let Some(u) = user {
            out.push(OutboundText::new(TextField::User, u));
        }
        // Only OpenAI gets metadata (with `store: true`); it is scanned for
        // every target all the same.
        for (k, v) in metadata {
            out.push(OutboundText::new(TextField::MetadataKey, k));
            out.push(OutboundText::new(TextField::MetadataValue, v));
        }
        match response_format {
            None | Some(ResponseFormat::Text | ResponseFormat::JsonObject) => {}
            Some(ResponseFormat::JsonSchema {
                name,
                schema,
                strict: _,
            }) => {
                out.push(OutboundText::new(TextField::SchemaName, name));
                json_strings(schema, &mut |s| {
                    out.push(OutboundText::new(TextField::Schema, s));
                });
            }
        }
        for (i, tool) in tools.iter().enumerate() {
            let Tool {
                name,
                description,
                parameters,
                strict: _,
            } = tool;
            out.push(OutboundText::new(TextField::ToolName(i), name));
            if let Some(d) = description {
                out.push(OutboundText::new(TextField::ToolDescription(i), d));
            }
            json_strings(parameters, &mut |s| {
                out.push(OutboundText::new(TextField::ToolParameters(i), s));
            });
        }
        match tool_choice {
            None | Some(ToolChoice::None | ToolChoice::Auto | ToolChoice::Required) => {}
            Some(ToolChoice::Named(name)) => {
                out.push(OutboundText::new(TextField::ToolChoice, name));
            }
        }
        if let Some(EmbeddingParams {
            inputs,
            dimensions: _,
        }) = embedding
        {
            for (i, input) in inputs.iter().enumerate() {
                match input {
                    EmbeddingInput::Text(t) => {
                        out.push(OutboundText::new(TextField::EmbeddingInput(i), t));
                    }
                    // Ids carry no text the detectors can read; the gateway
                    // classes the request as confidential instead.
                    EmbeddingInput::Tokens(_) => {}
                }
            }
        }
        let GenerationOptions {
            frequency_penalty: _,
            presence_penalty: _,
            logit_bias,
            logprobs: _,
            top_logprobs: _,
            n: _,
            reasoning_effort,
            verbosity,
            service_tier,
            prompt_cache_key,
            safety_identifier,
            store: _,
        } = options;
        for k in logit_bias.keys() {
            out.push(OutboundText::new(TextField::Option("logit_bias"), k));
        }
        for (name, v) in [
            ("reasoning_effort", reasoning_effort),
            ("verbosity", verbosity),
            ("service_tier", service_tier),
            ("prompt_cache_key", prompt_cache_key),
            ("safety_identifier", safety_identifier),
        ] {
            if let Some(v) = v {
                out.push(OutboundText::new(TextField::Option(name), v));
            }
        }
        out
    }

    /// Rewrites every piece of [`ChatRequest::outbound_texts`], in the same
    /// order: `f` gets each piece's index and text and returns its
    /// replacement, or `None` to keep it.
    pub fn redact_texts(&mut self, mut f: impl FnMut(usize, &str) -> Option<String>) {
        let ChatRequest {
            model: _,
            messages,
            max_tokens: _,
            temperature: _,
            top_p: _,
            stop,
            seed: _,
            user,
            metadata,
            response_format,
            stream: _,
            include_usage: _,
            tools,
            tool_choice,
            parallel_tool_calls: _,
            embedding,
            options,
        } = self;
        let mut i = 0usize;
        let mut visit = |s: &mut String| {
            if let Some(new) = f(i, s) {
                *s = new;
            }
            i += 1;
        };
        for m in messages.iter_mut() {
            let Message {
                role: _,
                content,
                parts,
                tool_calls,
                tool_call_id,
                tool_error: _,
            } = m;
            visit(content);
            for part in parts.iter_mut() {
                match part {
                    Part::Text(t) => visit(t),
                    Part::Image(Image {
                        source,
                        detail: _,
                        field: _,
                    }) => match source {
                        ImageSource::Url(u) => visit(u),
                        ImageSource::Base64 {
                            media_type: _,
                            data: _,
                        } => {}
                    },
                }
            }
            for call in tool_calls.iter_mut() {
                let ToolCall {
                    id,
                    name,
                    arguments,
                } = call;
                visit(id);
                visit(name);
                json_strings_mut(arguments, &mut visit);
            }
            if let Some(id) = tool_call_id {
                visit(id);
            }
        }
        stop.iter_mut().for_each(&mut visit);
        if let Some(u) = user {
            visit(u);
        }
        let old = std::mem::take(metadata);
        for (mut k, mut v) in old {
            visit(&mut k);
            visit(&mut v);
            metadata.insert(k, v);
        }
        match response_format {
            None | Some(ResponseFormat::Text | ResponseFormat::JsonObject) => {}
            Some(ResponseFormat::JsonSchema {
                name,
                schema,
                strict: _,
            }) => {
                visit(name);
                json_strings_mut(schema, &mut visit);
            }
        }
        for tool in tools.iter_mut() {
            let Tool {
                name,
                description,
                parameters,
                strict: _,
            } = tool;
            visit(name);
            if let Some(d) = description {
                visit(d);
            }
            json_strings_mut(parameters, &mut visit);
        }
        match tool_choice {
            None | Some(ToolChoice::None | ToolChoice::Auto | ToolChoice::Required) => {}
            Some(ToolChoice::Named(name)) => visit(name),
        }
        if let Some(EmbeddingParams {
            inputs,
            dimensions: _,
        }) = embedding
        {
            for input in inputs.iter_mut() {
                match input {
                    EmbeddingInput::Text(t) => visit(t),
                    EmbeddingInput::Tokens(_) => {}
                }
            }
        }
        let GenerationOptions {
            frequency_penalty: _,
            presence_penalty: _,
            logit_bias,
            logprobs: _,
            top_logprobs: _,
            n: _,
            reasoning_effort,
            verbosity,
            service_tier,
            prompt_cache_key,
            safety_identifier,
            store: _,
        } = options;
        let old = std::mem::take(logit_bias);
        for (mut k, v) in old {
            visit(&mut k);
            logit_bias.insert(k, v);
        }
        for v in [
            reasoning_effort,
            verbosity,
            service_tier,
            prompt_cache_key,
            safety_identifier,
        ]
        .into_iter()
        .flatten()
        {
            visit(v);
        }
    }

    /// The wire names of the settings this request makes that not every
    /// backend can honour: its set [`GenerationOptions`] and `seed`.
    pub fn requested_options(&self) -> Vec<&'static str> {
        let mut out = self.options.set_fields();
        if self.seed.is_some() {
            out.push("seed");
        }
        out
    }
}

/// Where a piece of outbound text sits in the request (for explanations and
/// metrics; never with its value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    /// The content of message `i`.
    Message(usize),
    /// Stop sequence `i`.
    Stop(usize),
    /// The end-user id (`user`; Anthropic's `metadata.user_id`).
    User,
    MetadataKey,
    MetadataValue,
    /// The name of a `json_schema` response format.
    SchemaName,
    /// A key or string value anywhere in a `json_schema` response format.
    Schema,
    /// The id of a tool call in message `i`, or of the call message `i` answers.
    ToolCallId(usize),
    /// The function name of a tool call in message `i`.
    ToolCallName(usize),
    /// A key or string value in the arguments of a tool call in message `i`.
    ToolCallArguments(usize),
    /// The name of tool `i`.
    ToolName(usize),
    /// The description of tool `i`.
    ToolDescription(usize),
    /// A key or string value in the parameters schema of tool `i`.
    ToolParameters(usize),
    /// The tool a named `tool_choice` forces.
    ToolChoice,
    /// Text input `i` of an embeddings request.
    EmbeddingInput(usize),
    /// The URL of an image in message `i`.
    ImageUrl(usize),
    /// A string generation option (a `logit_bias` key, `prompt_cache_key`, ...),
    /// by its wire name.
    Option(&'static str),
}

impl TextField {
    /// The field's name in the OpenAI wire format.
    pub fn as_str(self) -> &'static str {
        match self {
            TextField::Message(_) => "messages",
            TextField::Stop(_) => "stop",
            TextField::User => "user",
            TextField::MetadataKey | TextField::MetadataValue => "metadata",
            TextField::SchemaName => "response_format.json_schema.name",
            TextField::Schema => "response_format.json_schema.schema",
            TextField::ToolCallId(_) => "messages.tool_calls.id",
            TextField::ToolCallName(_) => "messages.tool_calls.function.name",
            TextField::ToolCallArguments(_) => "messages.tool_calls.function.arguments",
            TextField::ToolName(_) => "tools.function.name",
            TextField::ToolDescription(_) => "tools.function.description",
            TextField::ToolParameters(_) => "tools.function.parameters",
            TextField::ToolChoice => "tool_choice",
            TextField::EmbeddingInput(_) => "input",
            TextField::ImageUrl(_) => "messages.content.image_url.url",
            TextField::Option(name) => name,
        }
    }
}

/// One piece of text that may leave the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundText<'a> {
    pub field: TextField,
    pub text: &'a str,
}

impl<'a> OutboundText<'a> {
    fn new(field: TextField, text: &'a str) -> Self {
        OutboundText { field, text }
    }
}

/// Every object key and string value in `v`, depth first, keys before values.
fn json_strings<'a>(v: &'a serde_json::Value, f: &mut impl FnMut(&'a str)) {
    match v {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_strings(x, f)),
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                f(k);
                json_strings(x, f);
            }
        }
        _ => {}
    }
}

/// [`json_strings`] for rewriting, in the same order. Keys are rebuilt, so a
/// rewritten key keeps its place in the object.
fn json_strings_mut(v: &mut serde_json::Value, f: &mut impl FnMut(&mut String)) {
    match v {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| json_strings_mut(x, f)),
        serde_json::Value::Object(o) => {
            let old = std::mem::take(o);
            for (mut k, mut x) in old {
                f(&mut k);
                json_strings_mut(&mut x, f);
                o.insert(k, x);
            }
        }
        _ => {}
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ContentFilter,
    ToolCalls,
    /// The client went away before the answer was complete.
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// Which of the request's stop sequences ended an answer whose backend did not
/// say: the one the backend named (`named`, e.g. vLLM's `stop_reason`) if the
/// request holds it, else the one the answer's text ends with (servers that
/// keep the stop string in the output). OpenAI itself strips the string and
/// names nothing, so there the answer reads as a natural end (`None`): a
/// model's own end of turn and a stop sequence cannot be told apart.
pub fn infer_stop_sequence(stops: &[String], named: Option<&str>, text: &str) -> Option<String> {
    if let Some(n) = named {
        if let Some(s) = stops.iter().find(|s| s.as_str() == n) {
            return Some(s.clone());
        }
    }
    stops
        .iter()
        .filter(|s| !s.is_empty() && text.ends_with(s.as_str()))
        .max_by_key(|s| s.len())
        .cloned()
}

/// Token counts as the backend reported them (exact for the local engine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Prompt tokens served from a provider-side or local prefix cache.
    pub cached_prompt_tokens: u32,
}

/// How an answer ended, with what it cost in tokens and engine time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The model that answered, as the backend names it.
    pub model: String,
    pub finish_reason: FinishReason,
    /// The stop sequence that ended the answer (`finish_reason` is `Stop`),
    /// when the backend says which or it could be told from the answer's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequence: Option<String>,
    pub usage: Usage,
    /// This request's share of local engine time, in seconds (local engine only).
    pub engine_seconds: Option<f64>,
}

/// A complete, non-streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub text: String,
    /// The calls the model made, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<GeneratedToolCall>,
    pub done: Completion,
    /// The tokens' log probabilities (`logprobs: true`), in OpenAI's shape:
    /// `{"content": [{"token", "logprob", "bytes", "top_logprobs"}, ...]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<serde_json::Value>,
    /// Choices 1 and up of an answer asked for with `n > 1`; this answer
    /// itself is choice 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_choices: Vec<Choice>,
}

/// One further choice of an answer generated `n` times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<GeneratedToolCall>,
    pub finish_reason: FinishReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<serde_json::Value>,
}

/// One item of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Generated text, in order.
    Delta(String),
    /// A piece of a tool call.
    ToolCall(ToolCallDelta),
    /// The log probabilities of the tokens just streamed, in OpenAI's chunk
    /// shape (`{"content": [...]}`).
    Logprobs(serde_json::Value),
    /// The end of the answer; always the last item of a successful stream.
    Done(Completion),
}

pub type ChatStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// Where a backend runs, which decides whether confidential data may reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    Local,
    Openai,
    OpenaiCompatible,
    Anthropic,
    /// Google's Gemini API (`generateContent`).
    Gemini,
}

impl BackendKind {
    /// The OpenTelemetry `gen_ai.provider.name` value.
    pub fn otel_name(self) -> &'static str {
        match self {
            BackendKind::Local => "llama.cpp",
            BackendKind::Openai => "openai",
            BackendKind::OpenaiCompatible => "openai-compatible",
            BackendKind::Anthropic => "anthropic",
            BackendKind::Gemini => "gcp.gemini",
        }
    }
}

/// What a backend can do and what it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capabilities {
    pub kind: BackendKind,
    /// The model name the backend itself uses.
    pub upstream_model: String,
    pub streaming: bool,
    pub json_mode: bool,
    /// Tool calling (`tools`, tool calls and results in the conversation).
    pub tools: bool,
    /// Embeddings (`POST /v1/embeddings`).
    pub embeddings: bool,
    /// Image inputs (`image_url` parts, Anthropic image blocks).
    pub vision: bool,
    /// Embeddings of a requested `dimensions` (OpenAI's text-embedding-3).
    pub embedding_dimensions: bool,
    /// Context window in tokens, when known.
    pub context_tokens: Option<u32>,
    /// Facts read from the model file (local engine only), for `/v1/models`.
    pub details: BTreeMap<String, serde_json::Value>,
}
