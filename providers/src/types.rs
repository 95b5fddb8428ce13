//! Canonical request and response types. They follow OpenAI's chat completions
//! shape because that is what most clients speak; adapters translate from here.

use std::collections::BTreeMap;
use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::ProviderError;

/// Who wrote a message. OpenAI's `developer` role is read as `System`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message; array content from the wire has been flattened to its text parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
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
}

impl ChatRequest {
    /// All message text, in order, for classifiers and token estimates.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for m in &self.messages {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&m.content);
        }
        out
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
    pub usage: Usage,
    /// This request's share of local engine time, in seconds (local engine only).
    pub engine_seconds: Option<f64>,
}

/// A complete, non-streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub text: String,
    pub done: Completion,
}

/// One item of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Generated text, in order.
    Delta(String),
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
}

impl BackendKind {
    /// The OpenTelemetry `gen_ai.provider.name` value.
    pub fn otel_name(self) -> &'static str {
        match self {
            BackendKind::Local => "llama.cpp",
            BackendKind::Openai => "openai",
            BackendKind::OpenaiCompatible => "openai-compatible",
            BackendKind::Anthropic => "anthropic",
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
    /// Context window in tokens, when known.
    pub context_tokens: Option<u32>,
    /// Facts read from the model file (local engine only), for `/v1/models`.
    pub details: BTreeMap<String, serde_json::Value>,
}
