//! The Gemini API side of the mock: `models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse` (one whole `GenerateContentResponse`
//! per event, no `[DONE]`, the finish reason and final usage in the last
//! one), `:countTokens`, and Google's error bodies
//! (`{"error":{"code","message","status","details"}}`, a 429 with its
//! `RetryInfo`), shaped as generativelanguage.googleapis.com sends them.

use serde_json::{json, Value};

use super::{pieces, reply, words, Answer, End};

/// What a request to the Gemini mock asks for, read from its path
/// (`/v1beta/models/{model}:{method}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Method {
    Generate,
    /// `:streamGenerateContent`; Gemini streams SSE only with `alt=sse`.
    Stream {
        sse: bool,
    },
    CountTokens,
}

/// The model and method of a Gemini path, or `None` when it is not one.
pub(crate) fn route(path: &str, query: Option<&str>) -> Option<(String, Method)> {
    let rest = path.strip_prefix("/v1beta/models/")?;
    let (model, method) = rest.split_once(':')?;
    let method = match method {
        "generateContent" => Method::Generate,
        "streamGenerateContent" => Method::Stream {
            sse: query.is_some_and(|q| q.split('&').any(|p| p == "alt=sse")),
        },
        "countTokens" => Method::CountTokens,
        _ => return None,
    };
    (!model.is_empty()).then(|| (model.to_owned(), method))
}

/// Google's error body for `status`. A 429 carries the quota that ran out
/// and a `RetryInfo` with `retry_s` (Gemini sends no `retry-after` header).
pub(crate) fn error_body(status: u16, message: Option<&str>, retry_s: u64) -> Value {
    let (default_message, name) = match status {
        400 => ("* GenerateContentRequest.contents: contents is not specified\n", "INVALID_ARGUMENT"),
        401 => ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", "UNAUTHENTICATED"),
        403 => ("Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.", "PERMISSION_DENIED"),
        404 => ("models/mock-gemini is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.", "NOT_FOUND"),
        429 => ("You exceeded your current quota, please check your plan and billing details.", "RESOURCE_EXHAUSTED"),
        503 => ("The model is overloaded. Please try again later.", "UNAVAILABLE"),
        504 => ("Deadline expired before operation could complete.", "DEADLINE_EXCEEDED"),
        _ => ("An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting", "INTERNAL"),
    };
    let mut err = json!({
        "code": status,
        "message": message.unwrap_or(default_message),
        "status": name
    });
    if status == 429 {
        err["details"] = json!([
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    "quotaValue": "10"
                }]
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{retry_s}s")}
        ]);
    }
    json!({ "error": err })
}

/// The text parts of a `Content`, joined with a space.
fn parts_text(content: Option<&Value>) -> String {
    content
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Checks Gemini makes of `contents`: present, roles `user` or `model`,
/// every turn with parts.
fn contents(body: &Value) -> Result<&[Value], String> {
    let contents = body
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    for (i, c) in contents.iter().enumerate() {
        match c.get("role").and_then(Value::as_str) {
            Some("user" | "model") => {}
            _ => return Err("Please use a valid role: user, model.".into()),
        }
        let parts = c.get("parts").and_then(Value::as_array);
        if parts.is_none_or(|p| p.is_empty()) {
            return Err(format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            ));
        }
    }
    Ok(contents)
}

/// Mock tokens are words of the system instruction and every text part.
fn prompt_words(body: &Value, contents: &[Value]) -> u32 {
    words(&parts_text(body.get("systemInstruction")))
        + contents
            .iter()
            .map(|c| words(&parts_text(Some(c))))
            .sum::<u32>()
}

/// `:countTokens` with a `generateContentRequest` or bare `contents`.
pub(crate) fn count_tokens(body: &Value) -> Result<Value, String> {
    let inner = body.get("generateContentRequest").unwrap_or(body);
    let contents = contents(inner)?;
    Ok(json!({"totalTokens": prompt_words(inner, contents)}))
}

fn usage(prompt: u32, completion: u32, cached: u32) -> Value {
    let mut u = json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": completion,
        "totalTokenCount": prompt + completion,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]
    });
    if cached > 0 {
        u["cachedContentTokenCount"] = json!(cached);
    }
    u
}

/// The answer to a valid `generateContent` or `streamGenerateContent` body.
///
/// With function declarations (and a mode that allows calls) the mock calls
/// the first allowed function with the last user text as `query`, unless
/// the last user turn holds function responses: then it answers with their
/// `output`, which ends a call-result-answer round trip.
pub(crate) fn answer(
    body: &Value,
    model: &str,
    stream: bool,
    id: u64,
    cached: u32,
) -> Result<Answer, String> {
    let contents = contents(body)?;
    let config = body.get("generationConfig");
    let max = config
        .and_then(|c| c.get("maxOutputTokens"))
        .and_then(Value::as_u64);
    let stops: Vec<String> = config
        .and_then(|c| c.get("stopSequences"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let last = contents.last();
    let results: Vec<String> = last
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.pointer("/functionResponse/response"))
                .map(|r| {
                    r.get("output")
                        .or_else(|| r.get("error"))
                        .and_then(Value::as_str)
                        .map_or_else(|| r.to_string(), str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    let fc = body.pointer("/toolConfig/functionCallingConfig");
    let mode = fc
        .and_then(|c| c.get("mode"))
        .and_then(Value::as_str)
        .unwrap_or("AUTO");
    let tool = fc
        .and_then(|c| c.pointer("/allowedFunctionNames/0"))
        .or_else(|| body.pointer("/tools/0/functionDeclarations/0/name"))
        .and_then(Value::as_str)
        .filter(|_| mode != "NONE" && results.is_empty());
    let prompt = if results.is_empty() {
        let user = contents
            .iter()
            .rev()
            .find(|c| c.get("role").and_then(Value::as_str) == Some("user"));
        parts_text(user)
    } else {
        format!("tool said {}", results.join(" "))
    };
    let prompt_tokens = prompt_words(body, contents);
    let cached = cached.min(prompt_tokens);
    let response_id = format!("mockresp{id}");
    let answer_of = |candidates: Vec<Value>, usage: Value| {
        json!({
            "candidates": candidates,
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": response_id
        })
    };
    let chunk = |parts: Value, finish: Option<&str>, usage: Value| {
        answer_of(vec![candidate(parts, finish, 0, None)], usage)
    };
    let partial = json!({"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens});
    if let Some(name) = tool {
        let call = json!({"functionCall": {"name": name, "args": {"query": prompt}}});
        let out = words(&prompt) + 1;
        let usage = usage(prompt_tokens, out, cached);
        if !stream {
            return Ok(Answer::Json(chunk(json!([call]), Some("STOP"), usage)));
        }
        let events = vec![
            chunk(json!([call]), None, partial),
            chunk(json!([{"text": ""}]), Some("STOP"), usage),
        ];
        return Ok(sse(events, 1));
    }
    // With `responseMimeType: application/json` and a `responseSchema` (or
    // `responseJsonSchema`) the reply is an instance of the schema, whole,
    // as a constrained model gives it.
    let schema = config
        .filter(|c| c.get("responseMimeType").and_then(Value::as_str) == Some("application/json"))
        .and_then(|c| {
            c.get("responseSchema")
                .or_else(|| c.get("responseJsonSchema"))
        });
    let (text, end) = match schema {
        Some(s) => (
            super::openai::schema_instance(s, &prompt).to_string(),
            End::Stop,
        ),
        None => reply(&prompt, max, &stops),
    };
    let finish = match end {
        // Gemini does not say which stop sequence matched.
        End::Stop | End::StopSequence(_) => "STOP",
        End::Length => "MAX_TOKENS",
    };
    // `candidateCount: n` gives the reply n times, candidate `i` prefixed
    // "[i] " after the first; `responseLogprobs` a `logprobsResult` per
    // candidate (see `logprobs_result`).
    let n = config
        .and_then(|c| c.get("candidateCount"))
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .max(1);
    let lp = |text: &str| logprobs_result(config, text);
    let texts: Vec<String> = (0..n)
        .map(|i| {
            if i == 0 {
                text.clone()
            } else {
                format!("[{i}] {text}")
            }
        })
        .collect();
    let usage = usage(prompt_tokens, texts.iter().map(|t| words(t)).sum(), cached);
    if !stream {
        let candidates = texts
            .iter()
            .zip(0..)
            .map(|(t, i)| candidate(json!([{"text": t}]), Some(finish), i, lp(t)))
            .collect();
        return Ok(Answer::Json(answer_of(candidates, usage)));
    }
    let pieces = pieces(&text);
    let mut events: Vec<Value> = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let is_last = i + 1 == pieces.len();
        let (finish, usage) = if is_last {
            (Some(finish), usage.clone())
        } else {
            (None, partial.clone())
        };
        let c = candidate(json!([{"text": piece}]), finish, 0, lp(piece));
        events.push(answer_of(vec![c], usage));
    }
    if events.is_empty() {
        events.push(chunk(json!([{"text": ""}]), Some(finish), usage));
    }
    // The first chunk ("echo: ") reaches the client before a cut.
    Ok(sse(events, 1))
}

/// One candidate of an answer.
fn candidate(parts: Value, finish: Option<&str>, index: u64, logprobs: Option<Value>) -> Value {
    let mut c = json!({"content": {"parts": parts, "role": "model"}, "index": index});
    if let Some(f) = finish {
        c["finishReason"] = json!(f);
    }
    if let Some(lp) = logprobs {
        c["logprobsResult"] = lp;
    }
    c
}

/// With `generationConfig.responseLogprobs`, each piece of `text` is a
/// chosen token of log probability -0.5, with `generationConfig.logprobs`
/// alternatives `alt{k}` of log probability -1 - k, as Gemini's
/// `logprobsResult` has them.
fn logprobs_result(config: Option<&Value>, text: &str) -> Option<Value> {
    let config = config?;
    if config.get("responseLogprobs").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let top = config.get("logprobs").and_then(Value::as_u64).unwrap_or(0);
    let pieces = pieces(text);
    let chosen: Vec<Value> = pieces
        .iter()
        .map(|p| json!({"token": p, "tokenId": 7, "logProbability": -0.5}))
        .collect();
    let alts: Vec<Value> = pieces
        .iter()
        .map(|_| {
            let c: Vec<Value> = (0..top)
                .map(|k| json!({"token": format!("alt{k}"), "tokenId": 100 + k, "logProbability": -1.0 - k as f64}))
                .collect();
            json!({"candidates": c})
        })
        .collect();
    Some(json!({"topCandidates": alts, "chosenCandidates": chosen}))
}

fn sse(chunks: Vec<Value>, cut_after: usize) -> Answer {
    Answer::Sse {
        events: chunks
            .into_iter()
            .map(|c| format!("data: {c}\r\n\r\n"))
            .collect(),
        cut_after,
    }
}
