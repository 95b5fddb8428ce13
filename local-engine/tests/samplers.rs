//! `logit_bias`, `frequency_penalty` and `presence_penalty` on the default
//! model, greedy so every answer is reproducible: a large bias takes over
//! every token, a bad token id is a 400 naming the field, and the penalties
//! change a long answer without making it repeat itself more.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;

use common::{engine_with, req, run};
use futures::StreamExt;
use watershed_providers::{FinishReason, Provider, ProviderError, StreamEvent};

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

#[tokio::test]
async fn logprobs_come_from_the_logits_each_token_was_drawn_from() {
    let e = engine_with(|_| {}).await;
    let mut r = req("Name three colours.");
    r.max_tokens = Some(10);
    r.options.logprobs = true;
    r.options.top_logprobs = Some(3);
    let resp = e.chat(&r).await.unwrap();
    let tokens = resp.logprobs.as_ref().unwrap()["content"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(tokens.len() as u32, resp.done.usage.completion_tokens);
    let spelled: String = tokens
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(spelled, resp.text, "the tokens spell the answer");
    for t in &tokens {
        let lp = t["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0, "{t}");
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{t}");
        let tops: Vec<f64> = top.iter().map(|x| x["logprob"].as_f64().unwrap()).collect();
        assert!(tops.windows(2).all(|w| w[0] >= w[1]), "best first: {t}");
        // Greedy decoding picks the likeliest token.
        assert_eq!(top[0]["token"], t["token"], "{t}");
        assert!((tops[0] - lp).abs() < 1e-6, "{t}");
        let mass: f64 = tops.iter().map(|l| l.exp()).sum();
        assert!(mass <= 1.0 + 1e-4, "{t}");
    }

    // Streamed: one event per token, the same as the plain answer's.
    let mut s = e.chat_stream(&r).await.unwrap();
    let mut streamed = Vec::new();
    while let Some(ev) = s.next().await {
        if let StreamEvent::Logprobs(lp) = ev.unwrap() {
            streamed.extend(lp["content"].as_array().unwrap().iter().cloned());
        }
    }
    assert_eq!(streamed, tokens);
}
