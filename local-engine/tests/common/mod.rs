//! Helpers shared by the engine's integration tests: the default model's path
//! and small request/stream utilities.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use watershed_local_engine::{LocalEngine, LocalModelConfig};
use watershed_providers::{
    ChatRequest, ChatStream, Completion, Message, Provider, ProviderError, Role, StreamEvent,
};

/// The default model that `scripts/setup.sh` fetches. The suite's set-up always
/// fetches it, so its absence is a failure, not a skip.
pub fn model_path() -> PathBuf {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "the default model is missing at {}: run scripts/setup.sh",
        p.display()
    );
    p
}

pub async fn engine_with(f: impl FnOnce(&mut LocalModelConfig)) -> Arc<LocalEngine> {
    let mut cfg = LocalModelConfig::new("smollm2", model_path());
    cfg.context_tokens = 1024;
    cfg.parallel = 2;
    cfg.queue = 16;
    f(&mut cfg);
    let e = LocalEngine::start(cfg).unwrap();
    tokio::time::timeout(Duration::from_secs(120), e.wait_ready())
        .await
        .expect("model load timed out")
        .unwrap();
    e
}

pub fn req(user: &str) -> ChatRequest {
    ChatRequest {
        model: "local".into(),
        messages: vec![Message::new(Role::User, user)],
        temperature: Some(0.0),
        max_tokens: Some(48),
        ..Default::default()
    }
}

/// Reads a stream to its end: the text, the number of deltas and the completion.
pub async fn drain(mut s: ChatStream) -> Result<(String, usize, Completion), ProviderError> {
    let mut text = String::new();
    let mut deltas = 0;
    while let Some(item) = s.next().await {
        match item? {
            StreamEvent::Delta(d) => {
                deltas += 1;
                text.push_str(&d);
            }
            StreamEvent::ToolCall(d) => panic!("the engine made a tool call: {d:?}"),
            StreamEvent::Logprobs(l) => panic!("the engine sent log probabilities: {l}"),
            StreamEvent::Done(c) => {
                assert!(s.next().await.is_none(), "items after Done");
                return Ok((text, deltas, c));
            }
        }
    }
    panic!("stream ended without Done");
}

pub async fn run(e: &LocalEngine, r: &ChatRequest) -> (String, Completion) {
    let (text, _, done) = drain(e.chat_stream(r).await.unwrap()).await.unwrap();
    (text, done)
}

/// Polls the engine's stats until `ok` holds (the engine thread notices
/// cancellations between decode steps).
pub async fn wait_for(e: &LocalEngine, ok: impl Fn(&watershed_local_engine::EngineStats) -> bool) {
    for _ in 0..200 {
        if ok(&e.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("engine never reached the expected state: {:?}", e.stats());
}
