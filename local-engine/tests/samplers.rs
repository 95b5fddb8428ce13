//! `logit_bias`, `frequency_penalty` and `presence_penalty` on the default
//! model, greedy so every answer is reproducible: a large bias takes over
//! every token, a bad token id is a 400 naming the field, and the penalties
//! change a long answer without making it repeat itself more.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;

use common::{engine_with, req, run};
use watershed_providers::{FinishReason, Provider, ProviderError};

/// The most times any one word occurs in `text`.
fn most_repeated(text: &str) -> usize {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for w in text.split_whitespace() {
        *counts.entry(w).or_default() += 1;
    }
    counts.values().copied().max().unwrap_or(0)
}

#[tokio::test]
async fn a_large_logit_bias_takes_every_token_and_a_bad_id_is_named() {
    let e = engine_with(|_| {}).await;
    let mut r = req("Name three colours.");
    r.max_tokens = Some(12);
    let (plain, _) = run(&e, &r).await;

    // +100 on one token: greedy decoding picks it at every step, so the
    // answer is that token's text, once per generated token.
    r.options.logit_bias = [("1000".to_owned(), 100.0)].into();
    let (biased, done) = run(&e, &r).await;
    assert_ne!(biased, plain);
    assert_eq!(done.finish_reason, FinishReason::Length);
    assert_eq!(done.usage.completion_tokens, 12);
    assert!(!biased.is_empty() && biased.len() % 12 == 0, "{biased:?}");
    let unit = &biased[..biased.len() / 12];
    assert_eq!(biased, unit.repeat(12), "one token, twelve times");

    // A zero bias beside it changes nothing.
    r.options.logit_bias = [("1000".to_owned(), 100.0), ("1001".to_owned(), 0.0)].into();
    let (again, _) = run(&e, &r).await;
    assert_eq!(again, biased, "reproducible");

    r.options.logit_bias = [("99999999".to_owned(), 5.0)].into();
    match e.chat(&r).await {
        Err(ProviderError::BadRequest { param, message }) => {
            assert_eq!(param.as_deref(), Some("logit_bias"));
            assert!(message.contains("99999999"), "{message}");
        }
        other => panic!("expected a 400 naming logit_bias, got {other:?}"),
    }
}

#[tokio::test]
async fn frequency_and_presence_penalties_change_a_repetitive_answer() {
    let e = engine_with(|_| {}).await;
    let mut r = req("Write a long list of animals, one per line.");
    r.max_tokens = Some(64);
    let (plain, _) = run(&e, &r).await;
    let base = most_repeated(&plain);

    r.options.frequency_penalty = Some(2.0);
    let (freq, _) = run(&e, &r).await;
    assert_eq!(run(&e, &r).await.0, freq, "reproducible");
    assert_ne!(freq, plain, "frequency_penalty changed nothing");
    assert!(
        most_repeated(&freq) <= base,
        "frequency_penalty repeats more: {freq:?} vs {plain:?}"
    );

    r.options.frequency_penalty = None;
    r.options.presence_penalty = Some(2.0);
    let (pres, _) = run(&e, &r).await;
    assert_ne!(pres, plain, "presence_penalty changed nothing");
    assert!(
        most_repeated(&pres) <= base,
        "presence_penalty repeats more: {pres:?} vs {plain:?}"
    );
    println!(
        "most repeated word: {base} plain, {} with frequency_penalty 2, {} with presence_penalty 2",
        most_repeated(&freq),
        most_repeated(&pres)
    );
}
