//! The guard on the privacy scan's completeness: every string an adapter
//! puts in an upstream body must come from `ChatRequest::outbound_texts` (the
//! pieces the classifier reads and redaction rewrites) or from the gateway
//! itself (roles, the target's model name, format constants). A request whose
//! every text field holds a distinct canary is sent through each adapter, and
//! each canary found in a body must be one the outbound texts hold.
//!
//! The request is built without `..Default::default()`, so a field added to
//! the canonical request fails to compile here until the test sets it too.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::{
    BackendKind, ChatRequest, EmbeddingInput, EmbeddingParams, GenerationOptions, Image,
    ImageDetail, ImageSource, MediaType, Message, Part, RemoteTarget, ResponseFormat, Role, Tool,
    ToolCall, ToolChoice,
};

/// The highest canary number [`canary_request`] uses.
const LAST_CANARY: u32 = 38;

/// A request whose every string holds a canary `⟦cN⟧`, with `format`:
/// messages, stop, user, metadata, the schema (c10-c15), and every tool
/// field (c16-c27): a call's id, name and argument keys and values, the
/// result naming it, a tool's name, description and parameters, and a
/// named tool choice; the string generation options (c28-c33): a
/// `logit_bias` key, `reasoning_effort`, `verbosity`, `service_tier`,
/// `prompt_cache_key` and `safety_identifier`; two embedding inputs
/// (c34, c35) around a token array; and a message of parts (c36-c38): text,
/// an image URL, inline image bytes, and text after them.
fn canary_request(format: Option<ResponseFormat>) -> ChatRequest {
    let image = |source: ImageSource| {
        Part::Image(Image {
            source,
            detail: Some(ImageDetail::High),
            field: "⟦field⟧".into(),
        })
    };
    let look = Message {
        role: Role::User,
        content: String::new(),
        parts: vec![
            Part::Text("⟦c36⟧ look".into()),
            image(ImageSource::Url("https://img.example/⟦c37⟧.png".into())),
            image(ImageSource::Base64 {
                media_type: MediaType::Png,
                data: crate::image::PNG_1X1.into(),
            }),
            Part::Text("⟦c38⟧ after".into()),
        ],
        tool_calls: Vec::new(),
        tool_call_id: None,
        tool_error: false,
    };
    let call = Message {
        role: Role::Assistant,
        content: "⟦c16⟧ calling".into(),
        parts: Vec::new(),
        tool_calls: vec![ToolCall {
            id: "⟦c17⟧".into(),
            name: "⟦c18⟧".into(),
            arguments: json!({"⟦c19⟧": "⟦c20⟧ value", "n": [1, "⟦c21⟧"]}),
        }],
        tool_call_id: None,
        tool_error: false,
    };
    let result = Message {
        role: Role::Tool,
        content: "⟦c22⟧ result".into(),
        parts: Vec::new(),
        tool_calls: Vec::new(),
        tool_call_id: Some("⟦c17⟧".into()),
        tool_error: true,
    };
    ChatRequest {
        model: "⟦alias⟧".into(),
        messages: vec![
            Message::new(Role::System, "⟦c1⟧ system"),
            Message::new(Role::User, "⟦c2⟧ user"),
            Message::new(Role::Assistant, "⟦c3⟧ assistant"),
            Message::new(Role::User, "⟦c4⟧ again"),
            look,
            call,
            result,
        ],
        max_tokens: Some(16),
        temperature: Some(0.5),
        top_p: Some(0.9),
        stop: vec!["⟦c5⟧".into(), "⟦c6⟧ end".into()],
        seed: Some(1),
        user: Some("⟦c7⟧ user id".into()),
        metadata: [("⟦c8⟧".to_owned(), "⟦c9⟧".to_owned())].into(),
        response_format: format,
        stream: true,
        include_usage: true,
        tools: vec![Tool {
            name: "⟦c23⟧".into(),
            description: Some("⟦c24⟧ describes".into()),
            parameters: json!({
                "type": "object",
                "properties": {"⟦c25⟧": {"type": "string", "description": "⟦c26⟧"}}
            }),
            strict: Some(true),
        }],
        tool_choice: Some(ToolChoice::Named("⟦c27⟧".into())),
        parallel_tool_calls: Some(false),
        embedding: Some(EmbeddingParams {
            inputs: vec![
                EmbeddingInput::Text("⟦c34⟧ embed me".into()),
                EmbeddingInput::Tokens(vec![1, 2, 3]),
                EmbeddingInput::Text("⟦c35⟧".into()),
            ],
            dimensions: Some(4),
        }),
        options: GenerationOptions {
            frequency_penalty: Some(0.5),
            presence_penalty: Some(-0.5),
            logit_bias: [("⟦c28⟧".to_owned(), 5.0)].into(),
            logprobs: true,
            top_logprobs: Some(2),
            n: Some(2),
            reasoning_effort: Some("⟦c29⟧".into()),
            verbosity: Some("⟦c30⟧".into()),
            service_tier: Some("⟦c31⟧".into()),
            prompt_cache_key: Some("⟦c32⟧".into()),
            safety_identifier: Some("⟦c33⟧".into()),
            store: Some(true),
        },
    }
}

fn schema_format() -> ResponseFormat {
    ResponseFormat::JsonSchema {
        name: "⟦c10⟧".into(),
        schema: json!({
            "type": "object",
            "description": "⟦c11⟧",
            "properties": {
                "⟦c12⟧": {"type": "string", "enum": ["⟦c13⟧", "⟦c14⟧"]},
                "nested": {"type": "array", "items": {"const": "⟦c15⟧"}}
            }
        }),
        strict: true,
    }
}

/// Every canary in `s`.
fn canaries(s: &str, out: &mut BTreeSet<String>) {
    let mut rest = s;
    while let Some(i) = rest.find('⟦') {
        let tail = &rest[i..];
        match tail.find('⟧') {
            Some(j) => {
                out.insert(tail[..j + '⟧'.len_utf8()].to_owned());
                rest = &tail[j + '⟧'.len_utf8()..];
            }
            None => break,
        }
    }
}

/// Every canary in any key or string of `v`.
fn body_canaries(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => canaries(s, out),
        Value::Array(a) => a.iter().for_each(|x| body_canaries(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                canaries(k, out);
                body_canaries(x, out);
            }
        }
        _ => {}
    }
}

fn scanned(req: &ChatRequest) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for t in req.outbound_texts() {
        canaries(t.text, &mut out);
    }
    out
}

fn bodies(req: &ChatRequest) -> Vec<(&'static str, Value)> {
    let openai = RemoteTarget::new("o", BackendKind::Openai, "http://x/v1", "gpt-x");
    let compat = RemoteTarget::new("c", BackendKind::OpenaiCompatible, "http://y/v1", "m");
    let anthropic = RemoteTarget::new("a", BackendKind::Anthropic, "http://z", "claude-x");
    let mut out = Vec::new();
    for stream in [false, true] {
        out.push(("openai", crate::openai::upstream_body(&openai, req, stream)));
        out.push((
            "compatible",
            crate::openai::upstream_body(&compat, req, stream),
        ));
        // Anthropic refuses JSON formats; it has nothing to send then.
        if let Ok(b) = crate::anthropic::upstream_body(&anthropic, req, stream) {
            out.push(("anthropic", b));
        }
    }
    // Gemini's body is the same streamed or not. It pairs a result with its
    // call by id, so a request whose redaction gave the two different
    // placeholders has nothing to send.
    let gemini = RemoteTarget::new(
        "g",
        BackendKind::Gemini,
        "http://w/v1beta",
        "gemini-3-flash",
    );
    if let Ok(b) = crate::gemini::upstream_body(&gemini, req) {
        out.push(("gemini", b));
    }
    // `{base}/embeddings`, for OpenAI and compatible targets alike.
    out.push((
        "embeddings",
        crate::openai::embeddings::upstream_body("emb-x", req),
    ));
    out
}

#[test]
fn every_string_an_adapter_sends_is_an_outbound_text() {
    // The last request offers no tools but has tool history: the Anthropic
    // adapter then declares the called tools itself, from the calls' names.
    let mut no_tools = canary_request(None);
    no_tools.tools.clear();
    no_tools.tool_choice = None;
    let mut requests: Vec<ChatRequest> = [
        None,
        Some(ResponseFormat::Text),
        Some(ResponseFormat::JsonObject),
        Some(schema_format()),
    ]
    .into_iter()
    .map(canary_request)
    .collect();
    requests.push(no_tools);
    for req in requests {
        let scanned = scanned(&req);
        let bodies = bodies(&req);
        assert!(
            bodies.iter().any(|(a, _)| *a == "gemini"),
            "gemini sent nothing"
        );
        for (adapter, body) in bodies {
            let mut sent = BTreeSet::new();
            body_canaries(&body, &mut sent);
            let unscanned: Vec<_> = sent.difference(&scanned).collect();
            assert!(
                unscanned.is_empty(),
                "{adapter} sends text the classifier never reads: {unscanned:?} in {body}"
            );
            // The test would prove nothing if the adapters sent no request
            // text, or none of the tool fields.
            // Gemini has no call ids: it names the called function instead.
            let call = if adapter == "gemini" {
                "⟦c18⟧"
            } else {
                "⟦c17⟧"
            };
            let tool_canaries: &[&str] = if adapter == "embeddings" {
                &["⟦c34⟧", "⟦c35⟧", "⟦c7⟧"]
            } else if req.tools.is_empty() {
                &["⟦c2⟧", call, "⟦c20⟧", "⟦c22⟧"]
            } else {
                &["⟦c2⟧", call, "⟦c20⟧", "⟦c22⟧", "⟦c24⟧", "⟦c26⟧", "⟦c27⟧"]
            };
            for c in tool_canaries {
                assert!(sent.contains(*c), "{adapter} does not send {c}: {body}");
            }
            // Every chat adapter sends the image message: its texts, the
            // URL (scanned) and the inline bytes (not text: no canary).
            if adapter != "embeddings" {
                for c in ["⟦c36⟧", "⟦c37⟧", "⟦c38⟧"] {
                    assert!(sent.contains(c), "{adapter} does not send {c}: {body}");
                }
                assert!(
                    body.to_string().contains(crate::image::PNG_1X1),
                    "{adapter} drops the inline image: {body}"
                );
            }
            // OpenAI itself gets every string option, and the metadata
            // that goes with `store: true`.
            if adapter == "openai" {
                for c in [
                    "⟦c8⟧",
                    "⟦c9⟧",
                    "⟦c28⟧",
                    "⟦c29⟧",
                    "⟦c30⟧",
                    "⟦c31⟧",
                    "⟦c32⟧",
                    "⟦c33⟧",
                ] {
                    assert!(sent.contains(c), "openai does not send {c}: {body}");
                }
            }
        }
    }
}

#[test]
fn the_schema_and_every_text_field_are_scanned_and_redacted_in_the_same_order() {
    let mut req = canary_request(Some(schema_format()));
    let all = scanned(&req);
    for c in 1..=LAST_CANARY {
        assert!(all.contains(&format!("⟦c{c}⟧")), "⟦c{c}⟧ is not scanned");
    }
    assert!(!all.contains("⟦alias⟧"), "the client's alias is never sent");
    let before: Vec<String> = req
        .outbound_texts()
        .iter()
        .map(|t| t.text.to_owned())
        .collect();
    // Redaction sees the same pieces in the same order.
    let mut seen = Vec::new();
    req.redact_texts(|i, s| {
        seen.push((i, s.to_owned()));
        Some(format!("[R{i}]"))
    });
    assert_eq!(
        seen.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
        before
    );
    assert!(seen.iter().enumerate().all(|(n, (i, _))| n == *i));
    // After redaction no adapter sends a single canary.
    assert!(scanned(&req).is_empty(), "{:?}", req.outbound_texts());
    for (adapter, body) in bodies(&req) {
        let mut sent = BTreeSet::new();
        body_canaries(&body, &mut sent);
        assert!(sent.is_empty(), "{adapter} still sends {sent:?}: {body}");
    }
}

#[test]
fn every_option_each_adapter_does_not_send_is_refused_and_each_it_sends_reaches_its_body() {
    // Which adapter sends which option, and the body key it lands under.
    let req = canary_request(None);
    let openai = RemoteTarget::new("o", BackendKind::Openai, "http://x/v1", "gpt-x");
    let compat = RemoteTarget::new("c", BackendKind::OpenaiCompatible, "http://y/v1", "m");
    let gemini = RemoteTarget::new("g", BackendKind::Gemini, "http://w/v1beta", "gemini-x");
    let o_body = crate::openai::upstream_body(&openai, &req, false);
    let c_body = crate::openai::upstream_body(&compat, &req, false);
    let g_body = crate::gemini::upstream_body(&gemini, &req).unwrap();
    let gemini_key = |f: &str| match f {
        "seed" => Some("seed"),
        "presence_penalty" => Some("presencePenalty"),
        "frequency_penalty" => Some("frequencyPenalty"),
        "n" => Some("candidateCount"),
        "logprobs" => Some("responseLogprobs"),
        "top_logprobs" => Some("logprobs"),
        _ => None,
    };
    let all: Vec<&str> = req.requested_options();
    assert_eq!(all.len(), GenerationOptions::FIELDS.len() + 1, "{all:?}");
    for f in all {
        assert!(crate::openai::sends_option(BackendKind::Openai, f), "{f}");
        assert!(
            o_body.get(f).is_some(),
            "openai does not send {f}: {o_body}"
        );
        let compat_sends = crate::openai::sends_option(BackendKind::OpenaiCompatible, f);
        // The body holds every option; dispatch decides which target may get it.
        assert!(c_body.get(f).is_some(), "{f}");
        assert_eq!(
            compat_sends,
            matches!(
                f,
                "seed"
                    | "frequency_penalty"
                    | "presence_penalty"
                    | "logit_bias"
                    | "logprobs"
                    | "top_logprobs"
                    | "n"
            ),
            "{f}"
        );
        assert!(!crate::anthropic::sends_option(f), "{f}");
        let g = crate::gemini::sends_option(f);
        assert_eq!(g, gemini_key(f).is_some(), "{f}");
        if let Some(k) = gemini_key(f) {
            assert!(
                g_body["generationConfig"].get(k).is_some(),
                "gemini does not send {f} as {k}: {g_body}"
            );
        }
    }
}
