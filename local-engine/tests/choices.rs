//! `n` choices on the real default model: decoded side by side from one
//! prefill of the prompt, each with its own seed, logprobs and grammar; usage counts the prompt once and sums the
//! choices' tokens; `n` above `parallel` or with tools is refused by name.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::*;
use watershed_local_engine::LocalEngine;
use watershed_providers::{
    ChatResponse, FinishReason, Provider, ProviderError, ResponseFormat, Tool, ToolChoice,
};

/// Every choice's text, choice 0 first.
fn texts(resp: &ChatResponse) -> Vec<String> {
    std::iter::once(resp.text.clone())
        .chain(resp.more_choices.iter().map(|c| c.text.clone()))
        .collect()
}

/// The completion tokens an answer of this text took, counted the way the
/// engine counts them: one per sampled token, which logprobs list.
fn tokens_of(logprobs: &Option<serde_json::Value>) -> u32 {
    logprobs.as_ref().unwrap()["content"]
        .as_array()
        .unwrap()
        .len() as u32
}

async fn seeded(e: &LocalEngine, n: Option<u32>, seed: u64) -> ChatResponse {
    let mut r = req("Write a short poem about the sea.");
    r.temperature = Some(1.0);
    r.seed = Some(seed);
    r.max_tokens = Some(24);
    r.options.n = n;
    r.options.logprobs = true;
    e.chat(&r).await.unwrap()
}

#[tokio::test]
async fn n_choices_differ_and_sum_their_tokens() {
    let e = engine_with(|c| c.parallel = 3).await;
    let before = e.stats().batched_tokens;
    let resp = seeded(&e, Some(3), 7).await;
    let decoded = e.stats().batched_tokens - before;
    let all = texts(&resp);
    println!("choices: {all:?} usage: {:?}", resp.done.usage);
    assert_eq!(resp.more_choices.len(), 2);
    assert!(all.iter().all(|t| !t.trim().is_empty()), "{all:?}");
    assert!(
        all[0] != all[1] || all[1] != all[2],
        "three sampled choices are all the same: {all:?}"
    );
    // The prompt is counted once; completion tokens are the choices' sum,
    // which the logprobs (one entry per sampled, non-final token) confirm.
    let single = seeded(&e, None, 7).await;
    assert_eq!(
        resp.done.usage.prompt_tokens,
        single.done.usage.prompt_tokens
    );
    let per_choice: Vec<u32> = std::iter::once(&resp.logprobs)
        .chain(resp.more_choices.iter().map(|c| &c.logprobs))
        .map(tokens_of)
        .collect();
    println!("completion tokens per choice: {per_choice:?}");
    assert_eq!(
        resp.done.usage.completion_tokens,
        per_choice.iter().sum::<u32>()
    );
    assert!(resp.done.usage.completion_tokens > single.done.usage.completion_tokens);
    // The prompt was decoded once: the other choices copied its KV cells and
    // decoded only its last token (for logits of their own), then one token
    // per step each.
    let prompt = u64::from(resp.done.usage.prompt_tokens);
    let completion = u64::from(resp.done.usage.completion_tokens);
    println!("tokens decoded: {decoded} (prompt {prompt}, completion {completion})");
    assert!(decoded <= prompt + 2 + completion, "{decoded}");
    assert!(decoded < 2 * prompt + completion - 3, "{decoded}");
    // Choice i is seeded with seed + i: choice 0 is the one-choice answer of
    // the same seed, choice 1 that of the next seed.
    assert_eq!(all[0], single.text);
    assert_eq!(all[1], seeded(&e, None, 8).await.text);
    for c in &resp.more_choices {
        assert!(matches!(
            c.finish_reason,
            FinishReason::Stop | FinishReason::Length
        ));
    }
}

#[tokio::test]
async fn every_choice_is_held_to_the_grammar() {
    let e = engine_with(|c| c.parallel = 2).await;
    let mut r = req("Give me a JSON object describing a cat.");
    r.temperature = Some(1.0);
    r.seed = Some(3);
    r.max_tokens = Some(64);
    r.options.n = Some(2);
    r.response_format = Some(ResponseFormat::JsonObject);
    let resp = e.chat(&r).await.unwrap();
    let all = texts(&resp);
    println!("choices: {all:?}");
    assert_eq!(all.len(), 2);
    for (t, reason) in all.iter().zip(
        std::iter::once(resp.done.finish_reason)
            .chain(resp.more_choices.iter().map(|c| c.finish_reason)),
    ) {
        if reason == FinishReason::Stop {
            let v: serde_json::Value = serde_json::from_str(t).expect(t);
            assert!(v.is_object(), "{t}");
        } else {
            assert!(t.trim_start().starts_with('{'), "{t}");
        }
    }
}

#[tokio::test]
async fn n_above_parallel_or_with_tools_is_refused_by_name() {
    let e = engine_with(|c| {
        c.parallel = 2;
        c.tools = true;
    })
    .await;
    let mut r = req("hi");
    r.options.n = Some(3);
    let err = e.chat(&r).await.unwrap_err();
    println!("{err}");
    match &err {
        ProviderError::BadRequest { param, message, .. } => {
            assert_eq!(param.as_deref(), Some("n"));
            assert!(message.contains("parallel: 2"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    r.options.n = Some(2);
    r.tools = vec![Tool {
        name: "get_weather".into(),
        description: None,
        parameters: serde_json::json!({"type": "object", "properties": {}}),
        strict: None,
    }];
    r.tool_choice = Some(ToolChoice::Auto);
    let err = e.chat(&r).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::BadRequest { param, .. } if param.as_deref() == Some("n")),
        "{err:?}"
    );
    // Nothing was left holding capacity: a plain request still runs.
    r.tools.clear();
    r.tool_choice = None;
    assert_eq!(texts(&e.chat(&r).await.unwrap()).len(), 2);
}

#[tokio::test]
async fn n_choices_take_n_places_of_the_queue() {
    // Room for 3: 2 decoding and 1 waiting.
    let e = engine_with(|c| {
        c.parallel = 2;
        c.queue = 1;
    })
    .await;
    let mut long = req("Count from one to a thousand in words.");
    long.max_tokens = Some(400);
    let a = e.chat_stream(&long).await.unwrap();
    let b = e.chat_stream(&long).await.unwrap();
    // Two choices need two places where one is left: refused whole.
    let mut two = req("hi");
    two.max_tokens = Some(4);
    two.options.n = Some(2);
    let err = e.chat(&two).await.unwrap_err();
    println!("{err}");
    assert!(matches!(err, ProviderError::Overloaded { .. }), "{err:?}");
    // The refusal held nothing back: one choice still fits.
    let mut one = two.clone();
    one.options.n = None;
    let c = e.chat_stream(&one).await.unwrap();
    drop((a, b, c));
    wait_for(&e, |s| s.active == 0 && s.queued == 0).await;
    let resp = e.chat(&two).await.unwrap();
    assert_eq!(texts(&resp).len(), 2);
}
