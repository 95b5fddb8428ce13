//! The engine against the real default model: templating and exact usage,
//! sampling determinism, stop strings, limits, cancellation, concurrency, load
//! errors and the facts read from the GGUF file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use watershed_local_engine::{EngineError, LocalEngine, LocalModelConfig};
use watershed_providers::{BackendKind, FinishReason, Provider, ProviderError, StreamEvent};

#[tokio::test]
async fn generation_reports_exact_usage() {
    let e = engine_with(|_| {}).await;
    let r = req("What is the capital of France? Answer in one sentence.");
    let prompt = e.render_prompt(&r).unwrap();
    assert!(
        prompt.contains("<|im_start|>user\nWhat is the capital"),
        "{prompt}"
    );
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");
    let prompt_tokens = e.tokenize(&prompt).unwrap().len() as u32;

    let resp = e.chat(&r).await.unwrap();
    println!("answer: {:?} {:?}", resp.text, resp.done);
    assert!(!resp.text.trim().is_empty());
    assert!(resp.text.contains("Paris"), "{}", resp.text);
    assert_eq!(resp.done.usage.prompt_tokens, prompt_tokens);
    assert_eq!(resp.done.model, "SmolLM2-135M-Instruct.Q4_1");
    let c = resp.done.usage.completion_tokens;
    assert!((1..=48).contains(&c));
    if resp.done.finish_reason == FinishReason::Length {
        assert_eq!(c, 48);
    } else {
        assert_eq!(resp.done.finish_reason, FinishReason::Stop);
    }
    // Re-tokenizing the answer gives the same count, give or take merges at
    // token boundaries.
    let retok = e.tokenize(&resp.text).unwrap().len() as i64;
    assert!((retok - i64::from(c)).abs() <= 2, "{retok} vs {c}");
    assert!(resp.done.engine_seconds.unwrap() > 0.0);
}

#[tokio::test]
async fn same_seed_same_text() {
    let e = engine_with(|_| {}).await;
    let mut r = req("Write a short poem about the sea.");
    r.temperature = Some(0.9);
    r.seed = Some(42);
    let (a, _) = run(&e, &r).await;
    let (b, _) = run(&e, &r).await;
    assert_eq!(a, b);
    let mut differ = false;
    for seed in [43, 44, 45] {
        r.seed = Some(seed);
        differ |= run(&e, &r).await.0 != a;
    }
    assert!(differ, "three other seeds all gave {a:?}");
    // Greedy decoding is deterministic without a seed.
    let g = req("Write a short poem about the sea.");
    assert_eq!(run(&e, &g).await.0, run(&e, &g).await.0);
}

#[tokio::test]
async fn stop_string_ends_the_answer_and_is_not_sent() {
    let e = engine_with(|_| {}).await;
    let mut r = req("List five fruits, one per line.");
    r.max_tokens = Some(40);
    let (full, _) = run(&e, &r).await;
    // A word from the middle of the free answer becomes the stop string.
    let words: Vec<&str> = full.split_whitespace().filter(|w| w.len() >= 4).collect();
    assert!(words.len() >= 2, "answer too short: {full:?}");
    let stop = words[words.len() / 2].to_string();
    let cut = full.find(&stop).unwrap();
    r.stop = vec![stop.clone(), "THIS NEVER APPEARS".into()];
    let (text, deltas, done) = drain(e.chat_stream(&r).await.unwrap()).await.unwrap();
    assert_eq!(text, full[..cut], "stop {stop:?}");
    assert!(!text.contains(&stop));
    assert!(deltas >= 1 || text.is_empty());
    assert_eq!(done.finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn max_tokens_ends_with_length() {
    let e = engine_with(|_| {}).await;
    for n in [1, 7] {
        let mut r = req("Write a long story about a dragon and a knight.");
        r.max_tokens = Some(n);
        let (text, done) = run(&e, &r).await;
        assert_eq!(done.finish_reason, FinishReason::Length, "{text:?}");
        assert_eq!(done.usage.completion_tokens, n);
    }
}

#[tokio::test]
async fn concurrent_requests_match_their_solo_answers() {
    let e = engine_with(|c| c.parallel = 2).await;
    let mut a = req("Name three colours.");
    let mut b = req("Why is the sky blue? Explain briefly.");
    b.temperature = Some(0.7);
    b.seed = Some(7);
    a.max_tokens = Some(32);
    b.max_tokens = Some(32);
    let solo_a = run(&e, &a).await;
    let solo_b = run(&e, &b).await;
    let (ra, rb) = tokio::join!(run(&e, &a), run(&e, &b));
    assert_eq!(ra.0, solo_a.0);
    assert_eq!(rb.0, solo_b.0);
    assert_eq!(
        ra.1.usage,
        solo_a.1.usage.with_cached(ra.1.usage.cached_prompt_tokens)
    );
    assert!(e.stats().steps > 0);
}

trait WithCached {
    fn with_cached(self, n: u32) -> Self;
}
impl WithCached for watershed_providers::Usage {
    fn with_cached(mut self, n: u32) -> Self {
        self.cached_prompt_tokens = n;
        self
    }
}

#[tokio::test]
async fn dropping_the_stream_frees_the_sequence() {
    let e = engine_with(|c| c.parallel = 1).await;
    let mut r = req("Write a long story about a dragon and a knight.");
    r.max_tokens = Some(400);
    let mut s = e.chat_stream(&r).await.unwrap();
    for _ in 0..3 {
        match s.next().await {
            Some(Ok(StreamEvent::Delta(_))) => {}
            other => panic!("expected a delta, got {other:?}"),
        }
    }
    drop(s);
    wait_for(&e, |st| st.active == 0).await;
    let st = e.stats();
    assert_eq!(st.slots[0].kv_cells, 0, "{st:?}");
    assert_eq!(st.slots[0].cached_tokens, 0);
    // The only sequence is free again: the next request is served.
    let (text, done) = run(&e, &req("Say hello.")).await;
    assert!(!text.is_empty());
    assert!(done.usage.completion_tokens > 0);
}

#[tokio::test]
async fn prompt_over_the_context_is_a_bad_request_with_numbers() {
    let e = engine_with(|c| c.context_tokens = 256).await;
    let mut r = req("Tell me about cats.");
    let n = e.tokenize(&e.render_prompt(&r).unwrap()).unwrap().len();
    r.max_tokens = Some(512);
    let err = e.chat(&r).await.unwrap_err();
    let ProviderError::BadRequest { message, param } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        message,
        &format!("prompt has {n} tokens and max_tokens is 512, but the context holds 256")
    );
    assert_eq!(param.as_deref(), Some("max_tokens"));
    let long = req(&"cats and dogs ".repeat(200));
    let err = e.chat_stream(&long).await.err().unwrap();
    assert!(
        err.to_string().contains("but the context holds 256"),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn queue_full_is_overloaded_with_retry_after() {
    let e = engine_with(|c| {
        c.parallel = 1;
        c.queue = 1;
    })
    .await;
    let mut long = req("Write a long story about a dragon and a knight.");
    long.max_tokens = Some(300);
    let mut first = e.chat_stream(&long).await.unwrap();
    // Once a token arrives the first request holds the only sequence.
    assert!(matches!(
        first.next().await,
        Some(Ok(StreamEvent::Delta(_)))
    ));
    let second = e.chat_stream(&req("Say hi.")).await.unwrap();
    let err = e.chat_stream(&req("Say hi.")).await.err().unwrap();
    match err {
        ProviderError::Overloaded { retry_after_s, .. } => assert_eq!(retry_after_s, Some(1)),
        other => panic!("{other:?}"),
    }
    drop(first);
    let (text, _, done) = drain(second).await.unwrap();
    assert!(!text.is_empty());
    assert!(done.usage.completion_tokens > 0);
}

#[tokio::test]
async fn missing_and_corrupt_files_are_named() {
    let dir = std::env::temp_dir().join(format!("ws-engine-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let missing = dir.join("nope.gguf");
    let e = LocalEngine::start(LocalModelConfig::new("missing", &missing)).unwrap();
    let err = e.wait_ready().await.unwrap_err();
    assert!(matches!(err, EngineError::ModelFile { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&missing.display().to_string()) && msg.contains("does not exist"),
        "{msg}"
    );
    let req_err = e.chat(&req("hi")).await.unwrap_err();
    assert!(
        matches!(req_err, ProviderError::Overloaded { .. }),
        "{req_err:?}"
    );
    assert!(req_err.public_message().contains("nope.gguf"), "{req_err}");
    assert!(req_err.is_retryable());

    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"this is not a model, just some text").unwrap();
    let err = LocalEngine::start(LocalModelConfig::new("junk", &junk))
        .unwrap()
        .wait_ready()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&junk.display().to_string()) && err.contains("not a GGUF file"),
        "{err}"
    );

    let real = std::fs::read(model_path()).unwrap();
    let cut = dir.join("truncated.gguf");
    std::fs::write(&cut, &real[..real.len() / 2]).unwrap();
    let err = LocalEngine::start(LocalModelConfig::new("cut", &cut))
        .unwrap()
        .wait_ready()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&cut.display().to_string()) && err.contains("truncated"),
        "{err}"
    );

    // A bad model next to a good one does not take the good one down.
    let good = engine_with(|_| {}).await;
    assert!(good.is_ready());
    assert!(!run(&good, &req("Say hi.")).await.0.is_empty());
}

/// `gpu_layers: fit` runs llama.cpp's parameter fitting before loading. Without a
/// GPU (this machine) there is nothing to place, and the model loads and answers
/// exactly as with the default placement.
#[tokio::test]
async fn fitting_to_memory_loads_and_answers_the_same() {
    let fitted = engine_with(|c| c.fit_to_memory = true).await;
    let plain = engine_with(|_| {}).await;
    let r = req("Name a fruit.");
    assert_eq!(run(&fitted, &r).await.0, run(&plain, &r).await.0);
}

#[tokio::test]
async fn capabilities_come_from_the_gguf_file() {
    let e = engine_with(|c| c.context_tokens = 2048).await;
    let caps = e.capabilities();
    assert_eq!(caps.kind, BackendKind::Local);
    assert_eq!(caps.upstream_model, "SmolLM2-135M-Instruct.Q4_1");
    assert_eq!(caps.context_tokens, Some(2048));
    assert_eq!(caps.details["architecture"], "llama");
    assert_eq!(caps.details["quantization"], "Q4_1");
    let params = caps.details["parameters"].as_u64().unwrap();
    assert!((130_000_000..140_000_000).contains(&params), "{params}");
    assert_eq!(caps.details["parameters"], caps.details["n_params_llama"]);
    assert!(!caps.details.contains_key("expert_count"));
}

#[tokio::test]
async fn readiness_is_reported_while_loading() {
    let e = LocalEngine::start(LocalModelConfig::new("smollm2", model_path())).unwrap();
    // Either still loading (a clear retryable error) or already loaded.
    if !e.is_ready() {
        if let Err(err) = e.chat(&req("hi")).await {
            assert!(matches!(err, ProviderError::Overloaded { .. }), "{err:?}");
        }
    }
    tokio::time::timeout(Duration::from_secs(120), e.wait_ready())
        .await
        .unwrap()
        .unwrap();
    assert!(e.is_ready());
}
