//! The choices of one local answer asked for with `n`: the bound on `n`,
//! each choice's stream read to its end, and the answers merged into one
//! with `more_choices`.

use futures::StreamExt;
use watershed_providers::{
    ChatRequest, ChatResponse, ChatStream, Choice, GeneratedToolCall, ProviderError, StreamEvent,
};

use crate::LocalModelConfig;

/// `n` choices are sequences of their own: at most `parallel`, so they
/// all decode side by side. With tools they are refused: each choice's
/// calls would need ids and a tool-call reader of their own.
pub(crate) fn check(
    req: &ChatRequest,
    choices: u32,
    cfg: &LocalModelConfig,
) -> Result<(), ProviderError> {
    if choices <= 1 {
        return Ok(());
    }
    if choices > cfg.parallel {
        return Err(ProviderError::bad_request(
            format!(
                "\"n\": {choices} is more than target \"{}\" (local engine) decodes at once \
                 (parallel: {}); ask for at most {}",
                cfg.id, cfg.parallel, cfg.parallel
            ),
            Some("n"),
        ));
    }
    if req.needs_tools() {
        return Err(ProviderError::bad_request(
            format!(
                "target \"{}\" (local engine) gives one choice when tools are declared; \
                 ask for \"n\": 1",
                cfg.id
            ),
            Some("n"),
        ));
    }
    Ok(())
}

/// Reads one choice's stream to its end.
pub(crate) async fn collect(
    mut stream: ChatStream,
    req: &ChatRequest,
    id: &str,
) -> Result<ChatResponse, ProviderError> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    let mut tool_calls: Vec<GeneratedToolCall> = Vec::new();
    while let Some(item) = stream.next().await {
        match item? {
            StreamEvent::Delta(d) => text.push_str(&d),
            StreamEvent::ToolCall(d) => match tool_calls.get_mut(d.index as usize) {
                Some(c) => c.arguments.push_str(&d.arguments),
                None => tool_calls.push(GeneratedToolCall {
                    id: d.id.unwrap_or_default(),
                    name: d.name.unwrap_or_default(),
                    arguments: d.arguments,
                }),
            },
            StreamEvent::Logprobs(lp) => {
                if let Some(items) = lp.get("content").and_then(|c| c.as_array()) {
                    logprobs.extend(items.iter().cloned());
                }
            }
            StreamEvent::Done(done) => {
                return Ok(ChatResponse {
                    text,
                    tool_calls,
                    done,
                    logprobs: req
                        .options
                        .logprobs
                        .then(|| serde_json::json!({"content": logprobs, "refusal": null})),
                    more_choices: Vec::new(),
                })
            }
        }
    }
    Err(ProviderError::Internal(format!(
        "the engine for \"{}\" ended the answer without finishing it",
        id
    )))
}

/// Choice 0 with the others as its `more_choices`: the prompt counted once
/// (every choice read the same one), completion tokens and engine time
/// summed over the choices, as OpenAI counts them.
pub(crate) fn merge_choices(mut answers: Vec<ChatResponse>) -> Option<ChatResponse> {
    let rest = answers.split_off(1.min(answers.len()));
    let mut first = answers.pop()?;
    for a in rest {
        let usage = &mut first.done.usage;
        usage.completion_tokens = usage
            .completion_tokens
            .saturating_add(a.done.usage.completion_tokens);
        if let (Some(t), Some(more)) = (first.done.engine_seconds.as_mut(), a.done.engine_seconds) {
            *t += more;
        }
        first.more_choices.push(Choice {
            text: a.text,
            tool_calls: a.tool_calls,
            finish_reason: a.done.finish_reason,
            logprobs: a.logprobs,
        });
    }
    Some(first)
}
