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
    BackendKind, ChatRequest, EmbeddingInput, EmbeddingParams, Message, RemoteTarget,
    ResponseFormat, Role, Tool, ToolCall, ToolChoice,
};

/// The highest canary number [`canary_request`] uses.
const LAST_CANARY: u32 = 29;

/// A request whose every string holds a canary `⟦cN⟧`, with `format`:
/// messages, stop, user, metadata, the schema (c10-c15), and every tool
/// field (c16-c27): a call's id, name and argument keys and values, the
/// result naming it, a tool's name, description and parameters, and a
/// named tool choice; and two embedding inputs (c28, c29) around a token
/// array.
fn canary_request(format: Option<ResponseFormat>) -> ChatRequest {
    let call = Message {
        role: Role::Assistant,
        content: "⟦c16⟧ calling".into(),
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
                EmbeddingInput::Text("⟦c28⟧ embed me".into()),
                EmbeddingInput::Tokens(vec![1, 2, 3]),
                EmbeddingInput::Text("⟦c29⟧".into()),
            ],
            dimensions: Some(4),
        }),
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
                &["⟦c28⟧", "⟦c29⟧", "⟦c7⟧"]
            } else if req.tools.is_empty() {
                &["⟦c2⟧", call, "⟦c20⟧", "⟦c22⟧"]
            } else {
                &["⟦c2⟧", call, "⟦c20⟧", "⟦c22⟧", "⟦c24⟧", "⟦c26⟧", "⟦c27⟧"]
            };
            for c in tool_canaries {
                assert!(sent.contains(*c), "{adapter} does not send {c}: {body}");
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
