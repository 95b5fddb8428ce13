//! Translation tests for the Gemini API against recorded bodies, both ways.

use std::collections::VecDeque;

use serde_json::{json, Value};

use super::response::{parse_response, read_error, ChunkReader};
use super::*;
use crate::remote::StreamTranslator;
use crate::sse::SseDecoder;
use crate::{BackendKind, Completion, FinishReason, Message, StreamEvent, Tool, ToolCall, Usage};

fn target(model: &str) -> RemoteTarget {
    RemoteTarget::new("gem", BackendKind::Gemini, DEFAULT_BASE_URL, model)
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn read_stream(raw: &str, req: &ChatRequest) -> (Vec<StreamEvent>, Option<ProviderError>) {
    let mut dec = SseDecoder::new();
    let mut events = dec.feed(raw.as_bytes());
    events.extend(dec.finish());
    let mut reader = ChunkReader::new(target("gemini-2.5-flash"), req);
    let mut out = VecDeque::new();
    for ev in events {
        match reader.on_event(ev, &mut out) {
            Ok(true) => return (out.into(), None),
            Ok(false) => {}
            Err(e) => return (out.into(), Some(e)),
        }
    }
    (out.into(), Some(reader.on_eof()))
}

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Weather for a city".into()),
        parameters: json!({
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": false
        }),
        strict: Some(true),
    }
}

#[test]
fn urls_put_the_model_and_method_in_the_path() {
    assert_eq!(
        target("gemini-3-flash-preview").url(&method_path("gemini-3-flash-preview", "generateContent")),
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-3-flash-preview:generateContent"
    );
    assert_eq!(
        method_path("models/gemini-2.5-flash", "streamGenerateContent?alt=sse"),
        "models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(context_tokens("gemini-3.1-pro-preview"), Some(1_048_576));
    assert_eq!(
        context_tokens("models/gemini-2.5-flash-lite"),
        Some(1_048_576)
    );
    assert_eq!(context_tokens("my-tuned-model"), None);
    for (model, wants) in [
        ("gemini-2.5-flash", false),
        ("gemini-2.0-flash-001", false),
        ("gemini-3-flash-preview", true),
        ("models/gemini-3.1-pro-preview", true),
        ("gemini-exp-1206", false),
        ("my-tuned-model", false),
    ] {
        assert_eq!(wants_thought_signature(model), wants, "{model}");
    }
}

#[test]
fn canonical_request_becomes_a_generate_content_body() {
    let req = ChatRequest {
        model: "alias".into(),
        messages: vec![
            Message::new(Role::System, "be brief"),
            Message::new(Role::User, "one"),
            Message::new(Role::User, "two"),
            Message::new(Role::System, "and kind"),
            Message::new(Role::Assistant, ""),
            Message::new(Role::Assistant, "ok"),
            Message::new(Role::User, "three"),
        ],
        max_tokens: Some(64),
        temperature: Some(1.5),
        top_p: Some(0.9),
        stop: vec!["END".into()],
        seed: Some(-3i64 as u64),
        user: Some("u-1".into()),
        response_format: Some(ResponseFormat::JsonObject),
        ..Default::default()
    };
    let body = upstream_body(&target("gemini-2.5-flash"), &req).unwrap();
    assert_eq!(
        body,
        json!({
            "systemInstruction": {"parts": [{"text": "be brief\n\nand kind"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
                {"role": "model", "parts": [{"text": "ok"}]},
                {"role": "user", "parts": [{"text": "three"}]}
            ],
            "generationConfig": {
                "temperature": 1.5,
                "topP": 0.9,
                "maxOutputTokens": 64,
                "stopSequences": ["END"],
                "seed": -3,
                "responseMimeType": "application/json"
            }
        })
    );
    let mut t = target("gemini-2.5-flash");
    t.max_tokens_default = Some(1000);
    let mut r = req.clone();
    r.max_tokens = None;
    r.response_format = Some(ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
        strict: true,
    });
    let b = upstream_body(&t, &r).unwrap();
    assert_eq!(b["generationConfig"]["maxOutputTokens"], 1000);
    assert_eq!(
        b["generationConfig"]["responseSchema"],
        json!({"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}})
    );
}

#[test]
fn requests_gemini_cannot_take_are_refused_by_field() {
    let base = ChatRequest {
        messages: vec![Message::new(Role::User, "u")],
        ..Default::default()
    };
    let param = |r: &ChatRequest| match upstream_body(&target("gemini-2.5-flash"), r) {
        Err(ProviderError::BadRequest { param, .. }) => param,
        other => panic!("{other:?}"),
    };
    let only_system = ChatRequest {
        messages: vec![Message::new(Role::System, "s")],
        ..Default::default()
    };
    assert_eq!(param(&only_system).as_deref(), Some("messages"));
    let mut r = base.clone();
    r.stop = (0..6).map(|i| format!("s{i}")).collect();
    assert_eq!(param(&r).as_deref(), Some("stop"));
    let mut r = base.clone();
    r.seed = Some(u64::from(u32::MAX) + 1);
    assert_eq!(param(&r).as_deref(), Some("seed"));
    let mut r = base.clone();
    r.tools = vec![Tool {
        parameters: json!({"type": "object", "properties": {"x": {"type": "number", "multipleOf": 2}}}),
        ..weather_tool()
    }];
    assert_eq!(param(&r).as_deref(), Some("tools[0].function.parameters"));
    let mut r = base;
    r.response_format = Some(ResponseFormat::JsonSchema {
        name: "x".into(),
        schema: json!({"type": "object", "patternProperties": {"^a": {"type": "string"}}}),
        strict: false,
    });
    assert_eq!(
        param(&r).as_deref(),
        Some("response_format.json_schema.schema")
    );
}

fn call(id: &str, city: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: "get_weather".into(),
        arguments: json!({ "city": city }),
    }
}

fn result(id: &str, text: &str) -> Message {
    let mut m = Message::new(Role::Tool, text);
    m.tool_call_id = Some(id.into());
    m
}

#[test]
fn tools_calls_and_results_go_up_in_gemini_shape_with_results_in_call_order() {
    let mut assistant = Message::new(Role::Assistant, "checking");
    assistant.tool_calls = vec![call("call_a", "Paris"), call("call_b", "Oslo")];
    let mut failed = result("call_a", "no station");
    failed.tool_error = true;
    let req = ChatRequest {
        messages: vec![
            Message::new(Role::User, "weather?"),
            assistant,
            // Answered out of order, then a user remark in the same turn.
            result("call_b", "minus 3"),
            failed,
            Message::new(Role::User, "thanks"),
        ],
        tools: vec![weather_tool()],
        tool_choice: Some(ToolChoice::Named("get_weather".into())),
        ..Default::default()
    };
    let body = upstream_body(&target("gemini-2.5-flash"), &req).unwrap();
    assert_eq!(
        body["tools"],
        json!([{"functionDeclarations": [{
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "OBJECT",
                "properties": {"city": {"type": "STRING"}},
                "required": ["city"]
            }
        }]}])
    );
    assert_eq!(
        body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
    assert_eq!(
        body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "weather?"}]},
            {"role": "model", "parts": [
                {"text": "checking"},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"error": "no station"}}},
                {"functionResponse": {"name": "get_weather", "response": {"output": "minus 3"}}},
                {"text": "thanks"}
            ]}
        ])
    );
    for (choice, mode) in [
        (ToolChoice::Auto, "AUTO"),
        (ToolChoice::None, "NONE"),
        (ToolChoice::Required, "ANY"),
    ] {
        let mut r = req.clone();
        r.tool_choice = Some(choice);
        let b = upstream_body(&target("gemini-2.5-flash"), &r).unwrap();
        assert_eq!(
            b["toolConfig"]["functionCallingConfig"],
            json!({"mode": mode})
        );
    }
    // No tools offered any more: the called one is declared, none allowed.
    let mut r = req.clone();
    r.tools.clear();
    r.tool_choice = None;
    let b = upstream_body(&target("gemini-2.5-flash"), &r).unwrap();
    assert_eq!(
        b["tools"],
        json!([{"functionDeclarations": [{"name": "get_weather"}]}])
    );
    assert_eq!(b["toolConfig"]["functionCallingConfig"]["mode"], "NONE");
    // Gemini 3 gets the documented signature on each turn's first call.
    let b = upstream_body(&target("gemini-3-flash-preview"), &req).unwrap();
    let parts = b["contents"][1]["parts"].as_array().unwrap();
    assert_eq!(parts[1]["thoughtSignature"], SKIP_THOUGHT_SIGNATURE);
    assert!(parts[2].get("thoughtSignature").is_none());
    assert!(body["contents"][1]["parts"][1]
        .get("thoughtSignature")
        .is_none());
    // A result for a call never made is refused by its field.
    let mut r = req;
    r.messages.push(result("call_zz", "?"));
    match upstream_body(&target("gemini-2.5-flash"), &r) {
        Err(ProviderError::BadRequest { param, .. }) => {
            assert_eq!(param.as_deref(), Some("messages[5].tool_call_id"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn recorded_answer_reads_into_the_canonical_answer() {
    let req = ChatRequest::default();
    let resp = parse_response(&target("x"), &fixture("gemini_response.json"), &req).unwrap();
    assert_eq!(resp.text, "Hi! I am Gemini. How can I help?");
    assert_eq!(resp.done.model, "gemini-3-flash-preview");
    assert_eq!(resp.done.finish_reason, FinishReason::Stop);
    // Thinking tokens are billed as output.
    assert_eq!(
        resp.done.usage,
        Usage {
            prompt_tokens: 11,
            completion_tokens: 41,
            cached_prompt_tokens: 4
        }
    );
}

#[test]
fn function_calls_get_ids_from_the_response_id_and_thoughts_are_not_text() {
    let mut req = ChatRequest::default();
    let v = fixture("gemini_response_function_call.json");
    let resp = parse_response(&target("x"), &v, &req).unwrap();
    assert_eq!(resp.text, "");
    assert_eq!(resp.done.finish_reason, FinishReason::ToolCalls);
    let ids: Vec<&str> = resp.tool_calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "call_pZlbaf3dKsa1MkPhqWQ0Ak_0",
            "call_pZlbaf3dKsa1MkPhqWQ0Ak_1"
        ]
    );
    assert_eq!(resp.tool_calls[1].arguments, r#"{"city":"Oslo"}"#);
    // The same answer streamed names the same calls the same way.
    let raw = include_str!("../../tests/fixtures/gemini_stream_function_call.sse");
    let (events, err) = read_stream(raw, &req);
    assert!(err.is_none(), "{err:?}");
    let streamed: Vec<(u32, String, String)> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCall(d) => Some((d.index, d.id.clone().unwrap(), d.arguments.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        streamed,
        vec![
            (0, ids[0].to_owned(), r#"{"city":"Paris"}"#.to_owned()),
            (1, ids[1].to_owned(), r#"{"city":"Oslo"}"#.to_owned())
        ]
    );
    assert!(matches!(
        events.last(),
        Some(StreamEvent::Done(Completion {
            finish_reason: FinishReason::ToolCalls,
            usage: Usage {
                prompt_tokens: 40,
                completion_tokens: 18,
                ..
            },
            ..
        }))
    ));
    // One call at a time, when the client asked for that.
    req.parallel_tool_calls = Some(false);
    assert_eq!(
        parse_response(&target("x"), &v, &req)
            .unwrap()
            .tool_calls
            .len(),
        1
    );
    let (events, _) = read_stream(raw, &req);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, StreamEvent::ToolCall(_)))
            .count(),
        1
    );
    // Gemini's own id, when it sends one, is kept.
    let mut own = v.clone();
    own["candidates"][0]["content"]["parts"][1]["functionCall"]["id"] = json!("fc-7");
    let resp = parse_response(&target("x"), &own, &ChatRequest::default()).unwrap();
    assert_eq!(resp.tool_calls[0].id, "fc-7");
}

#[test]
fn stream_reads_into_deltas_and_one_done_with_the_final_usage() {
    let raw = include_str!("../../tests/fixtures/gemini_stream.sse");
    let (events, err) = read_stream(raw, &ChatRequest::default());
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        events,
        vec![
            StreamEvent::Delta("Hi! I am".into()),
            StreamEvent::Delta(" Gemini.".into()),
            StreamEvent::Delta(" How can I help?".into()),
            StreamEvent::Done(Completion {
                model: "gemini-3-flash-preview".into(),
                finish_reason: FinishReason::Stop,
                stop_sequence: None,
                usage: Usage {
                    prompt_tokens: 11,
                    completion_tokens: 41,
                    cached_prompt_tokens: 0
                },
                engine_seconds: None,
            }),
        ]
    );
    // Cut before the chunk with the finish reason: an error, not a short answer.
    let cut: String = raw.split("\n\n").take(2).collect::<Vec<_>>().join("\n\n") + "\n\n";
    let (events, err) = read_stream(&cut, &ChatRequest::default());
    assert_eq!(events.len(), 2);
    assert!(
        matches!(err, Some(ProviderError::Unreachable { .. })),
        "{err:?}"
    );
}

#[test]
fn finish_and_block_reasons_map_to_canonical_ones() {
    for (reason, want) in [
        ("STOP", FinishReason::Stop),
        ("MAX_TOKENS", FinishReason::Length),
        ("SAFETY", FinishReason::ContentFilter),
        ("RECITATION", FinishReason::ContentFilter),
        ("BLOCKLIST", FinishReason::ContentFilter),
        ("PROHIBITED_CONTENT", FinishReason::ContentFilter),
        ("SPII", FinishReason::ContentFilter),
        ("OTHER", FinishReason::Stop),
    ] {
        let mut v = fixture("gemini_response.json");
        v["candidates"][0]["finishReason"] = json!(reason);
        let resp = parse_response(&target("x"), &v, &ChatRequest::default()).unwrap();
        assert_eq!(resp.done.finish_reason, want, "{reason}");
    }
    let blocked = fixture("gemini_blocked.json");
    let resp = parse_response(&target("x"), &blocked, &ChatRequest::default()).unwrap();
    assert_eq!(resp.text, "");
    assert_eq!(resp.done.finish_reason, FinishReason::ContentFilter);
    assert_eq!(resp.done.usage.prompt_tokens, 7);
    let sse = format!("data: {blocked}\n\n");
    let (events, err) = read_stream(&sse, &ChatRequest::default());
    assert!(err.is_none());
    assert!(matches!(
        events.as_slice(),
        [StreamEvent::Done(Completion {
            finish_reason: FinishReason::ContentFilter,
            ..
        })]
    ));
    // An empty candidate list reads like none at all.
    let empty = json!({"candidates": [], "promptFeedback": {"blockReason": "SAFETY"}});
    let resp = parse_response(&target("x"), &empty, &ChatRequest::default()).unwrap();
    assert_eq!(resp.done.finish_reason, FinishReason::ContentFilter);
    let neither = json!({"modelVersion": "gemini-2.5-flash"});
    assert!(matches!(
        parse_response(&target("x"), &neither, &ChatRequest::default()),
        Err(ProviderError::Protocol { .. })
    ));
}

#[test]
fn error_bodies_keep_status_message_and_retry_delay() {
    let t = target("x");
    let body = |name: &str| fixture(name).to_string().into_bytes();
    match read_error(&t, 429, &body("gemini_error_429.json"), None) {
        e @ ProviderError::Upstream { .. } => {
            assert_eq!(e.retry_after_s(), Some(36));
            assert!(e.is_transient());
            assert_eq!(e.code(), crate::ErrorCode::RateLimited);
            assert!(e.to_string().contains("exceeded your current quota"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // A retry-after header wins over the body.
    let e = read_error(&t, 429, &body("gemini_error_429.json"), Some(3));
    assert_eq!(e.retry_after_s(), Some(3));
    let e = read_error(&t, 400, &body("gemini_error_400.json"), None);
    assert_eq!(e.code(), crate::ErrorCode::BadRequest);
    assert!(e.to_string().contains("contents is not specified"), "{e}");
    // A bad key is the target's fault, not the client's.
    let e = read_error(&t, 400, &body("gemini_error_key.json"), None);
    assert!(
        matches!(e, ProviderError::Upstream { status: 401, .. }),
        "{e:?}"
    );
    assert_eq!(e.code(), crate::ErrorCode::UpstreamError);
    // The array form, and an error inside a stream without an HTTP status.
    let arr = format!("[{}]", fixture("gemini_error_400.json"));
    assert!(matches!(
        read_error(&t, 400, arr.as_bytes(), None),
        ProviderError::Upstream { status: 400, .. }
    ));
    let sse = r#"data: {"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}

"#;
    let (_, err) = read_stream(sse, &ChatRequest::default());
    let err = err.unwrap();
    assert!(
        matches!(err, ProviderError::Upstream { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    // Not Google's shape at all: read like any other upstream's.
    assert!(matches!(
        read_error(&t, 502, b"<html>bad gateway</html>", None),
        ProviderError::Upstream { status: 502, .. }
    ));
}

#[test]
fn several_candidates_become_choices_and_logprobs_results_openai_logprobs() {
    let lp = |tokens: &[(&str, f64)]| {
        json!({
            "chosenCandidates": tokens.iter().map(|(t, p)| json!({"token": t, "tokenId": 1, "logProbability": p})).collect::<Vec<_>>(),
            "topCandidates": tokens.iter().map(|(t, p)| json!({"candidates": [
                {"token": t, "tokenId": 1, "logProbability": p},
                {"token": "x", "tokenId": 2, "logProbability": -3.0}
            ]})).collect::<Vec<_>>()
        })
    };
    let v = json!({"candidates": [
        {"content": {"role": "model", "parts": [{"text": "Hi there"}]}, "finishReason": "STOP", "index": 0,
         "logprobsResult": lp(&[("Hi", -0.25), (" there", -0.5)])},
        {"content": {"role": "model", "parts": [{"text": "Hello"}]}, "finishReason": "MAX_TOKENS", "index": 1,
         "logprobsResult": lp(&[("Hello", -1.0)])}
    ], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 3}});
    let resp = parse_response(&target("x"), &v, &ChatRequest::default()).unwrap();
    assert_eq!(resp.text, "Hi there");
    let content = resp.logprobs.unwrap()["content"].clone();
    assert_eq!(content[1]["token"], " there");
    assert_eq!(content[1]["logprob"], -0.5);
    assert_eq!(content[1]["bytes"], json!(b" there".to_vec()));
    assert_eq!(
        content[1]["top_logprobs"][1],
        json!({"token": "x", "logprob": -3.0, "bytes": [120]})
    );
    assert_eq!(resp.more_choices.len(), 1);
    assert_eq!(resp.more_choices[0].text, "Hello");
    assert_eq!(resp.more_choices[0].finish_reason, FinishReason::Length);
    assert_eq!(
        resp.more_choices[0].logprobs.as_ref().unwrap()["content"][0]["logprob"],
        -1.0
    );

    // Streamed, each chunk's logprobsResult follows its text.
    let raw = format!(
        "data: {}\n\n",
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}, "finishReason": "STOP",
            "logprobsResult": lp(&[("Hi", -0.25)])}]})
    );
    let (events, err) = read_stream(&raw, &ChatRequest::default());
    assert!(err.is_none(), "{err:?}");
    assert_eq!(events[0], StreamEvent::Delta("Hi".into()));
    match &events[1] {
        StreamEvent::Logprobs(lp) => assert_eq!(lp["content"][0]["logprob"], -0.25),
        other => panic!("{other:?}"),
    }
    assert!(matches!(events[2], StreamEvent::Done(_)));
}

#[test]
fn images_become_inline_data_and_file_data_parts() {
    let png = crate::image::PNG_1X1;
    let req = crate::openai::parse_chat_request(&json!({"model": "m", "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "compare"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
            {"type": "image_url", "image_url": {"url": "https://e.com/b.JPG?v=2"}},
            {"type": "image_url", "image_url": {"url": "https://e.com/render"}}
        ]}
    ]}))
    .unwrap();
    let body = upstream_body(&target("gemini-2.5-flash"), &req).unwrap();
    assert_eq!(
        body["contents"],
        json!([{"role": "user", "parts": [
            {"text": "compare"},
            {"inlineData": {"mimeType": "image/png", "data": png}},
            {"fileData": {"fileUri": "https://e.com/b.JPG?v=2", "mimeType": "image/jpeg"}},
            {"fileData": {"fileUri": "https://e.com/render"}}
        ]}])
    );
}
