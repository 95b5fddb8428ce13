//! The in-process model server: loads a GGUF file with llama.cpp (through
//! `llama-cpp-2`) on a dedicated OS thread and serves chat requests from it with
//! continuous batching, a prefix cache, grammar-constrained JSON output and
//! exact token accounting. [`LocalEngine`] is a [`watershed_providers::Provider`].

mod choices;
mod embed;
mod engine;
mod error;
pub mod gguf;
mod grammar;
mod load;
mod scheduler;
mod text;
mod tools;

use std::path::PathBuf;

pub use engine::{EngineStats, LoadState, LocalEngine, SlotStats};
pub use error::EngineError;

/// How one local model is loaded and served.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalModelConfig {
    /// The target id in the config; used in logs and error messages.
    pub id: String,
    pub gguf: PathBuf,
    /// Tokens one request may use, prompt and answer together.
    pub context_tokens: u32,
    /// Sequences decoded together in one batch.
    pub parallel: u32,
    /// CPU threads for decoding; `None` lets llama.cpp choose.
    pub threads: Option<u32>,
    /// Layers offloaded to the GPU; `None` offloads all of them.
    pub gpu_layers: Option<u32>,
    /// Ignore `gpu_layers` and let llama.cpp fit the layers (and, for a MoE
    /// model, the expert tensors) to the free memory of each GPU.
    pub fit_to_memory: bool,
    pub main_gpu: u32,
    /// Keep MoE expert tensors in system RAM (llama.cpp's CPU-MoE override).
    pub moe_experts_on_cpu: bool,
    /// Requests that may wait for a free sequence before new ones are refused.
    pub queue: u32,
    /// Serve embeddings (mean pooling over the model's last hidden states).
    pub embeddings: bool,
    /// Serve tool calling; with `false` the engine refuses requests with tools.
    pub tools: bool,
}

impl LocalModelConfig {
    /// A config with the defaults `watershed serve` uses.
    pub fn new(id: impl Into<String>, gguf: impl Into<PathBuf>) -> Self {
        Self {
            id: id.into(),
            gguf: gguf.into(),
            context_tokens: 4096,
            parallel: 4,
            threads: None,
            gpu_layers: None,
            fit_to_memory: false,
            main_gpu: 0,
            moe_experts_on_cpu: false,
            queue: 64,
            embeddings: true,
            tools: true,
        }
    }
}
