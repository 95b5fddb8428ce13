//! Errors of the local engine itself (loading, start-up); request-level errors
//! are `ProviderError`s.

use std::path::PathBuf;

use thiserror::Error;
use watershed_providers::ErrorCode;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum EngineError {
    /// The config cannot work (zero context, zero parallel sequences, …).
    #[error("local model \"{id}\": {reason}")]
    Config { id: String, reason: String },
    /// The model file is missing, unreadable, not GGUF, corrupt or truncated.
    #[error("cannot load model file {}: {reason}", path.display())]
    ModelFile { path: PathBuf, reason: String },
    /// llama.cpp refused a file whose header looked fine.
    #[error("llama.cpp could not load {}: {reason}", path.display())]
    Load { path: PathBuf, reason: String },
    /// The llama.cpp context (KV cache, compute buffers) could not be created.
    #[error("cannot create a llama.cpp context for \"{id}\": {reason}")]
    Context { id: String, reason: String },
    #[error("the engine thread for \"{id}\" stopped")]
    Stopped { id: String },
}

impl EngineError {
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::Config { .. } => ErrorCode::BadRequest,
            _ => ErrorCode::Internal,
        }
    }
}
