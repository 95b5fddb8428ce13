//! A synthetic mixture-of-experts model made by `scripts/make_moe_gguf.py`
//! (qwen3moe, 8 experts, top-2, random weights, SmolLM2's tokenizer) loads,
//! reports its experts and active parameters, and generates.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use watershed_local_engine::{LocalEngine, LocalModelConfig};
use watershed_providers::{FinishReason, Provider};

/// Builds the synthetic model once per test binary with the project's venv.
fn moe_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = root.join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/setup.sh",
            python.display()
        );
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("moe-test.gguf");
        let status = Command::new(&python)
            .arg(root.join("scripts/make_moe_gguf.py"))
            .arg("--out")
            .arg(&out)
            .arg("--tokenizer-from")
            .arg(model_path())
            .status()
            .unwrap();
        assert!(status.success(), "make_moe_gguf.py failed");
        out
    })
    .clone()
}

async fn start(moe_on_cpu: bool) -> std::sync::Arc<LocalEngine> {
    let mut cfg = LocalModelConfig::new("moe", moe_model());
    cfg.context_tokens = 512;
    cfg.parallel = 2;
    cfg.moe_experts_on_cpu = moe_on_cpu;
    let e = LocalEngine::start(cfg).unwrap();
    e.wait_ready().await.unwrap();
    e
}

#[tokio::test]
async fn synthetic_moe_loads_reports_experts_and_generates() {
    let e = start(false).await;
    let caps = e.capabilities();
    assert_eq!(caps.upstream_model, "moe-test");
    let d = &caps.details;
    assert_eq!(d["architecture"], "qwen3moe");
    assert_eq!(d["expert_count"], 8);
    assert_eq!(d["expert_used_count"], 2);
    assert_eq!(d["quantization"], "F16");
    let total = d["parameters"].as_u64().unwrap();
    let active = d["active_parameters"].as_u64().unwrap();
    assert_eq!(Some(total), d["n_params_llama"].as_u64());
    // 2 layers × 3 expert tensors × 8 experts × 64 × 128: 6 of 8 experts idle per token.
    let experts = 2 * 3 * 8 * 64 * 128;
    assert_eq!(total - active, experts * 6 / 8);

    let mut r = req("Hello, who are you?");
    r.max_tokens = Some(16);
    let prompt_tokens = e.tokenize(&e.render_prompt(&r).unwrap()).unwrap().len() as u32;
    let (text, done) = run(&e, &r).await;
    assert_eq!(done.usage.prompt_tokens, prompt_tokens);
    assert!(done.usage.completion_tokens >= 1 && done.usage.completion_tokens <= 16);
    if done.finish_reason == FinishReason::Length {
        assert_eq!(done.usage.completion_tokens, 16);
    }
    // Greedy decoding of random weights is still deterministic.
    assert_eq!(run(&e, &r).await.0, text);
}

#[tokio::test]
async fn experts_kept_on_cpu_still_generate() {
    let e = start(true).await;
    let mut r = req("Count to five.");
    r.max_tokens = Some(8);
    let (_, done) = run(&e, &r).await;
    assert!(done.usage.completion_tokens >= 1);
}
