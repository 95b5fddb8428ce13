//! Embeddings on the real default model: mean pooling over a context of its
//! own, deterministic for the same text, different for different texts, and
//! bounded by the context and the vocabulary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use watershed_providers::{ChatRequest, EmbeddingInput, EmbeddingParams, Provider, ProviderError};

fn req(inputs: Vec<EmbeddingInput>) -> ChatRequest {
    ChatRequest {
        model: "local".into(),
        embedding: Some(EmbeddingParams {
            inputs,
            dimensions: None,
        }),
        ..Default::default()
    }
}

fn text(s: &str) -> EmbeddingInput {
    EmbeddingInput::Text(s.to_owned())
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_text_embeds_the_same_and_different_texts_differ() {
    let e = common::engine_with(|c| c.context_tokens = 128).await;
    let a = e
        .embed(&req(vec![
            text("The river meets the sea."),
            text("Quarterly revenue grew."),
        ]))
        .await
        .unwrap();
    let b = e
        .embed(&req(vec![text("The river meets the sea.")]))
        .await
        .unwrap();
    assert_eq!(a.vectors.len(), 2);
    assert_eq!(a.vectors[0].len(), 576, "SmolLM2-135M's hidden size");
    // Bit for bit: the same text alone or first in a list, in two requests.
    assert_eq!(a.vectors[0], b.vectors[0]);
    let c = cosine(&a.vectors[0], &a.vectors[1]);
    assert!(c < 0.999, "two different texts gave cosine {c}");
    eprintln!(
        "cosine of two different texts {c:.4}; {} + {} input tokens in {:.3} s",
        a.prompt_tokens - b.prompt_tokens,
        b.prompt_tokens,
        a.engine_seconds.unwrap_or(0.0)
    );
    let norm = cosine(&a.vectors[0], &a.vectors[0]);
    assert!((norm - 1.0).abs() < 1e-6);
    let len: f64 = a.vectors[0].iter().map(|x| f64::from(*x).powi(2)).sum();
    assert!((len - 1.0).abs() < 1e-4, "normalised, |v|² = {len}");
    assert!(a.prompt_tokens > b.prompt_tokens);
    assert!(a.engine_seconds.unwrap() > 0.0);
    // Token ids of the model's own vocabulary embed like the text they spell.
    let ids: Vec<u32> = e
        .tokenize("The river meets the sea.")
        .unwrap()
        .into_iter()
        .map(|t| t as u32)
        .collect();
    let t = e
        .embed(&req(vec![EmbeddingInput::Tokens(ids)]))
        .await
        .unwrap();
    assert!(cosine(&t.vectors[0], &b.vectors[0]) > 0.99);
    e.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_over_the_context_or_outside_the_vocabulary_are_refused_by_index() {
    let e = common::engine_with(|c| c.context_tokens = 64).await;
    let long = "river ".repeat(200);
    for (inputs, words) in [
        (vec![text("short"), text(&long)], "input[1] has"),
        (
            vec![EmbeddingInput::Tokens(vec![1, 4_000_000])],
            "input[0] holds token id 4000000",
        ),
    ] {
        match e.embed(&req(inputs)).await {
            Err(ProviderError::BadRequest { message, param }) => {
                assert_eq!(param.as_deref(), Some("input"));
                assert!(message.contains(words), "{message}");
            }
            other => panic!("expected a bad request, got {other:?}"),
        }
    }
    let mut with_dims = req(vec![text("a")]);
    with_dims.embedding.as_mut().unwrap().dimensions = Some(8);
    match e.embed(&with_dims).await {
        Err(ProviderError::BadRequest { param, .. }) => {
            assert_eq!(param.as_deref(), Some("dimensions"))
        }
        other => panic!("expected a bad request, got {other:?}"),
    }
    e.shutdown();
}
