//! The canonical, OpenAI-shaped chat types every backend speaks, the object-safe
//! [`Provider`] trait, and the adapters for remote APIs (OpenAI, OpenAI-compatible
//! servers, Anthropic, Gemini).
//!
//! Nothing here serves HTTP: adapters are HTTP clients only.

pub mod anthropic;
pub mod error;
pub mod gemini;
pub mod image;
pub mod openai;
pub mod remote;
pub mod sse;
pub mod tools;
pub mod types;
mod validate;

#[cfg(test)]
mod outbound_guard;

pub use error::{ErrorCode, ProviderError};
pub use image::{Image, ImageDetail, ImageSource, MediaType, Part, Piece};
pub use remote::RemoteTarget;
pub use types::*;
pub use validate::MAX_TOKENS_LIMIT;

use async_trait::async_trait;

/// A backend that can answer chat requests: a remote API or the in-process engine.
///
/// Implementations are stored as `Arc<dyn Provider>` in a registry built from the
/// config. A provider instance serves exactly one configured target, so it knows
/// the upstream model name and ignores `ChatRequest::model`.
#[async_trait]
pub trait Provider: Send + Sync {
    /// What the backend can do; used by `/v1/models` and by dispatch.
    fn capabilities(&self) -> Capabilities;

    /// One complete answer.
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError>;

    /// A stream of deltas ending with exactly one [`StreamEvent::Done`].
    ///
    /// Errors that happen before the first byte of the answer are returned here so
    /// dispatch can fall back to the next target; later errors arrive in the stream.
    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError>;

    /// The prompt's input tokens as the backend itself counts them, or `None`
    /// when it has no way to count (the caller then estimates, and says so).
    /// Whether this backend passes option `field` (a name from
    /// [`GenerationOptions::FIELDS`], or `seed`) on to its model. Each adapter
    /// answers in this one function, so routing and dispatch ask the same
    /// question.
    fn sends_option(&self, field: &str) -> bool;

    /// The first option `req` sets that this backend cannot honour; dispatch
    /// skips the target for it, and refuses the request naming it when no
    /// target is left.
    fn refused_option(&self, req: &ChatRequest) -> Option<&'static str> {
        req.requested_options()
            .into_iter()
            .find(|f| !self.sends_option(f))
    }

    async fn count_tokens(&self, _req: &ChatRequest) -> Result<Option<u32>, ProviderError> {
        Ok(None)
    }

    /// One vector per input of `req.embedding`, in order. Only called on a
    /// backend whose capabilities say `embeddings`; the default refuses.
    async fn embed(&self, _req: &ChatRequest) -> Result<Embeddings, ProviderError> {
        Err(ProviderError::bad_request(
            "this target cannot embed",
            Some("model"),
        ))
    }
}
