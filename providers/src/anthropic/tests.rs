//! Translation tests for the Messages API against recorded bodies, both ways.

use std::collections::VecDeque;

use serde_json::{json, Value};

use super::*;
use crate::remote::upstream_error;
use crate::sse::SseDecoder;
use crate::{BackendKind, Message};

fn target() -> RemoteTarget {
    RemoteTarget::new(
        "claude",
        BackendKind::Anthropic,
        "http://x",
        "claude-sonnet-4-5",
    )
}

fn read_stream(raw: &str) -> (Vec<StreamEvent>, Option<ProviderError>) {
    let mut dec = SseDecoder::new();
    let mut events = dec.feed(raw.as_bytes());
    events.extend(dec.finish());
    let mut reader = EventReader::new(target());
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

const STREAM: &str = include_str!("../../tests/fixtures/anthropic_stream.sse");

#[test]
fn canonical_request_becomes_a_messages_body() {
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
        max_tokens: None,
        temperature: Some(1.5),
        top_p: Some(0.9),
        stop: vec!["END".into()],
        seed: Some(3),
        user: Some("u-1".into()),
        ..Default::default()
    };
    let body = upstream_body(&target(), &req, true).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": "be brief\n\nand kind",
            "messages": [
                {"role": "user", "content": "one\n\ntwo"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "three"}
            ],
            "stop_sequences": ["END"],
            "temperature": 1.0,
            "top_p": 0.9,
            "metadata": {"user_id": "u-1"},
            "stream": true
        })
    );
    let mut t = target();
    t.max_tokens_default = Some(1000);
    assert_eq!(upstream_body(&t, &req, false).unwrap()["max_tokens"], 1000);
    let mut r = req.clone();
    r.max_tokens = Some(50);
    let b = upstream_body(&t, &r, false).unwrap();
    assert_eq!(b["max_tokens"], 50);
    assert!(b.get("stream").is_none());
}

#[test]
fn requests_anthropic_cannot_serve_are_bad_requests() {
    let only_system = ChatRequest {
        messages: vec![Message::new(Role::System, "s")],
        ..Default::default()
    };
    match upstream_body(&target(), &only_system, false) {
        Err(ProviderError::BadRequest { param, .. }) => {
            assert_eq!(param.as_deref(), Some("messages"))
        }
        other => panic!("{other:?}"),
    }
    let json_mode = ChatRequest {
        messages: vec![Message::new(Role::User, "u")],
        response_format: Some(ResponseFormat::JsonObject),
        ..Default::default()
    };
    match upstream_body(&target(), &json_mode, false) {
        Err(ProviderError::BadRequest { param, .. }) => {
            assert_eq!(param.as_deref(), Some("response_format"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn recorded_message_reads_into_the_canonical_answer() {
    let v: Value =
        serde_json::from_str(include_str!("../../tests/fixtures/anthropic_message.json")).unwrap();
    let resp = parse_message(&target(), &v).unwrap();
    assert_eq!(resp.text, "Hi! My name is Claude. How can I help?");
    assert_eq!(resp.done.model, "claude-sonnet-4-5-20250929");
    assert_eq!(resp.done.finish_reason, FinishReason::Stop);
    // 12 uncached + 20 read from cache + 3 written to cache.
    assert_eq!(
        resp.done.usage,
        Usage {
            prompt_tokens: 35,
            completion_tokens: 10,
            cached_prompt_tokens: 20
        }
    );
}

#[test]
fn stop_reasons_map_both_ways() {
    for (wire, canonical) in [
        ("end_turn", FinishReason::Stop),
        ("stop_sequence", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("refusal", FinishReason::ContentFilter),
        ("tool_use", FinishReason::ToolCalls),
    ] {
        assert_eq!(parse_stop_reason(Some(&json!(wire))), canonical, "{wire}");
    }
    for reason in [
        FinishReason::Stop,
        FinishReason::Length,
        FinishReason::ContentFilter,
        FinishReason::ToolCalls,
    ] {
        let resp = ChatResponse {
            text: "x".into(),
            tool_calls: Vec::new(),
            done: Completion {
                model: "m".into(),
                finish_reason: reason,
                stop_sequence: None,
                usage: Usage::default(),
                engine_seconds: None,
            },
            logprobs: None,
            more_choices: Vec::new(),
        };
        let wire = messages_response_json("msg_1", "m", &resp);
        assert_eq!(parse_stop_reason(wire.get("stop_reason")), reason);
    }
}

#[test]
fn written_message_reads_back_and_has_the_recorded_keys() {
    let resp = ChatResponse {
        text: "hello".into(),
        tool_calls: Vec::new(),
        done: Completion {
            model: "claude-sonnet-4-5".into(),
            finish_reason: FinishReason::Length,
            stop_sequence: None,
            usage: Usage {
                prompt_tokens: 30,
                completion_tokens: 4,
                cached_prompt_tokens: 10,
            },
            engine_seconds: None,
        },
        logprobs: None,
        more_choices: Vec::new(),
    };
    let wire = messages_response_json("msg_abc", "claude-sonnet-4-5", &resp);
    assert_eq!(wire["usage"]["input_tokens"], 20);
    assert_eq!(wire["usage"]["cache_read_input_tokens"], 10);
    assert_eq!(parse_message(&target(), &wire).unwrap(), resp);
    let recorded: Value =
        serde_json::from_str(include_str!("../../tests/fixtures/anthropic_message.json")).unwrap();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&wire), keys(&recorded));
}

#[test]
fn recorded_stream_reads_into_deltas_and_one_done() {
    let (events, err) = read_stream(STREAM);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        events[..3],
        [
            StreamEvent::Delta("Hello".into()),
            StreamEvent::Delta("! How can".into()),
            StreamEvent::Delta(" I help?".into()),
        ]
    );
    match &events[3..] {
        [StreamEvent::Done(c)] => {
            assert_eq!(c.finish_reason, FinishReason::Length);
            assert_eq!(c.model, "claude-sonnet-4-5-20250929");
            assert_eq!(
                c.usage,
                Usage {
                    prompt_tokens: 32,
                    completion_tokens: 15,
                    cached_prompt_tokens: 7
                }
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_event_and_cut_stream_are_errors() {
    let (events, err) = read_stream(include_str!(
        "../../tests/fixtures/anthropic_stream_error.sse"
    ));
    assert_eq!(events, vec![StreamEvent::Delta("Hel".into())]);
    match err {
        Some(ProviderError::Upstream {
            status, message, ..
        }) => {
            assert_eq!(status, 529);
            assert_eq!(message, "Overloaded");
        }
        other => panic!("{other:?}"),
    }
    let cut = STREAM.split("event: message_stop").next().unwrap();
    let (events, err) = read_stream(cut);
    assert!(events.iter().all(|e| matches!(e, StreamEvent::Delta(_))));
    assert!(
        matches!(err, Some(ProviderError::Unreachable { .. })),
        "{err:?}"
    );
}

#[test]
fn recorded_error_bodies_keep_status_and_message() {
    for (status, body, message) in [
        (
            400,
            include_str!("../../tests/fixtures/anthropic_error_400.json"),
            "max_tokens: Field required",
        ),
        (
            401,
            include_str!("../../tests/fixtures/anthropic_error_401.json"),
            "invalid x-api-key",
        ),
        (
            429,
            include_str!("../../tests/fixtures/anthropic_error_429.json"),
            "This request would exceed",
        ),
        (
            500,
            include_str!("../../tests/fixtures/anthropic_error_500.json"),
            "Internal server error",
        ),
        (
            529,
            include_str!("../../tests/fixtures/anthropic_error_529.json"),
            "Overloaded",
        ),
    ] {
        let err = upstream_error(&target(), status, body.as_bytes());
        match &err {
            ProviderError::Upstream {
                status: s,
                message: m,
                ..
            } => {
                assert_eq!(*s, status);
                assert!(m.starts_with(message), "{m}");
            }
            other => panic!("{other:?}"),
        }
        let expected = match status {
            400 => crate::ErrorCode::BadRequest,
            429 => crate::ErrorCode::RateLimited,
            529 => crate::ErrorCode::UpstreamUnavailable,
            _ => crate::ErrorCode::UpstreamError,
        };
        assert_eq!(err.code(), expected, "{status}");
    }
}

#[test]
fn inbound_request_as_the_anthropic_sdk_sends_it() {
    let body: Value = serde_json::from_str(include_str!(
        "../../tests/fixtures/anthropic_request_full.json"
    ))
    .unwrap();
    let req = parse_messages_request(&body).unwrap();
    assert_eq!(req.model, "claude-sonnet-4-5");
    assert_eq!(req.max_tokens, Some(256));
    assert_eq!(
        req.messages,
        vec![
            Message::new(Role::System, "You are a support agent.\nBe brief."),
            Message::new(Role::User, "Hello"),
            Message::new(Role::Assistant, "Hi, how can I help?"),
            Message::new(Role::User, "My order is late.\nOrder 42."),
        ]
    );
    assert_eq!(req.stop, vec!["\n\nHuman:".to_string()]);
    assert_eq!(req.temperature, Some(0.7));
    assert_eq!(req.top_p, Some(0.95));
    assert!(req.stream);
    assert_eq!(req.user.as_deref(), Some("customer-9"));
    // And back out to an upstream Anthropic target, the system prompt on top.
    let up = upstream_body(&target(), &req, true).unwrap();
    assert_eq!(up["system"], "You are a support agent.\nBe brief.");
    assert_eq!(up["messages"].as_array().unwrap().len(), 3);
    assert_eq!(up["temperature"], json!(0.7));
    assert_eq!(up["metadata"]["user_id"], "customer-9");
}

#[test]
fn inbound_bad_requests_name_the_field() {
    let base =
        || json!({"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let reject = |mutate: &dyn Fn(&mut Value)| {
        let mut b = base();
        mutate(&mut b);
        match parse_messages_request(&b) {
            Err(ProviderError::BadRequest { param, message }) => {
                (param.unwrap_or_default(), message)
            }
            other => panic!("{b}: {other:?}"),
        }
    };
    parse_messages_request(&base()).unwrap();
    assert_eq!(
        reject(&|b| {
            b.as_object_mut().unwrap().remove("max_tokens");
        }),
        (
            "max_tokens".into(),
            "missing required field \"max_tokens\"".into()
        )
    );
    assert_eq!(reject(&|b| b["max_tokens"] = json!(0)).0, "max_tokens");
    assert_eq!(reject(&|b| b["temperature"] = json!(1.5)).0, "temperature");
    assert_eq!(reject(&|b| b["messages"] = json!([])).0, "messages");
    assert_eq!(
        reject(&|b| b["messages"] = json!([{"role": "system", "content": "x"}])).0,
        "messages[0].role"
    );
    assert_eq!(
        reject(&|b| b["messages"] = json!([{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
        ]}]))
        .0,
        "messages[0].content[1].source.data"
    );
    assert_eq!(
        reject(&|b| b["messages"] = json!([{"role": "user", "content": [
            {"type": "image", "source": {"type": "file", "file_id": "f"}}
        ]}]))
        .0,
        "messages[0].content[0].source.type"
    );
    assert_eq!(
        reject(
            &|b| b["messages"] = json!([{"role": "assistant", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://e.com/a.png"}}
            ]}])
        )
        .0,
        "messages[0].content[0].type"
    );
    assert_eq!(
        reject(&|b| b["system"] = json!([{"type": "image"}])).0,
        "system[0].type"
    );
    assert_eq!(reject(&|b| b["system"] = json!(5)).0, "system");
    assert_eq!(
        reject(&|b| b["tools"] = json!([{"name": "f", "input_schema": "nope"}])).0,
        "tools[0].input_schema"
    );
    assert_eq!(
        reject(&|b| b["tools"] = json!([{"name": "f"}])).0,
        "tools[0].input_schema"
    );
    assert_eq!(
        reject(&|b| b["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}])).0,
        "tools[0].type"
    );
    assert_eq!(
        reject(&|b| b["tool_choice"] = json!({"type": "any"})).0,
        "tool_choice.type"
    );
    assert_eq!(
        reject(&|b| {
            b["tools"] = json!([{"name": "f", "input_schema": {"type": "object"}}]);
            b["tool_choice"] = json!({"type": "tool", "name": "g"});
        })
        .0,
        "tool_choice.name"
    );
    assert_eq!(
        reject(&|b| b["messages"] = json!([{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}
        ]}]))
        .0,
        "messages[0].content[0].tool_use_id"
    );
    assert_eq!(
        reject(&|b| b["messages"] = json!([{"role": "user", "content": [
            {"type": "tool_use", "id": "toolu_x", "name": "f", "input": {}}
        ]}]))
        .0,
        "messages[0].content[0].type"
    );
    assert_eq!(
        reject(&|b| b["thinking"] = json!({"type": "enabled", "budget_tokens": 1024})).0,
        "thinking"
    );
    assert_eq!(reject(&|b| b["top_k"] = json!(5)).0, "top_k");
    assert_eq!(
        reject(&|b| b["stop_sequences"] = json!("END")).0,
        "stop_sequences"
    );
    assert_eq!(
        reject(&|b| b["metadata"] = json!({"user_id": 5})).0,
        "metadata.user_id"
    );
    // Harmless fields pass.
    let mut ok = base();
    ok["thinking"] = json!({"type": "disabled"});
    ok["tools"] = json!([]);
    ok["service_tier"] = json!("auto");
    parse_messages_request(&ok).unwrap();
}

#[test]
fn encoded_stream_matches_the_recorded_sequence_and_reads_back() {
    let mut enc = MessagesStreamEncoder::new("msg_1", "claude-sonnet-4-5");
    let done = Completion {
        model: "claude-sonnet-4-5".into(),
        finish_reason: FinishReason::Length,
        stop_sequence: None,
        usage: Usage {
            prompt_tokens: 32,
            completion_tokens: 15,
            cached_prompt_tokens: 7,
        },
        engine_seconds: None,
    };
    let canonical = vec![
        StreamEvent::Delta("Hello".into()),
        StreamEvent::Delta("! How can".into()),
        StreamEvent::Delta(" I help?".into()),
        StreamEvent::Done(done),
    ];
    let mut pairs = enc.start(25);
    for ev in &canonical {
        pairs.extend(enc.on_event(ev));
    }
    let names: Vec<&str> = pairs.iter().map(|(n, _)| *n).collect();
    let recorded_names: Vec<&str> = STREAM
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names, recorded_names);
    for (name, data) in &pairs {
        assert_eq!(data["type"], *name);
    }
    let raw: String = pairs
        .iter()
        .map(|(n, d)| format!("event: {n}\ndata: {d}\n\n"))
        .collect();
    let (back, err) = read_stream(&raw);
    assert!(err.is_none());
    // message_delta repeats message_start's input count, so every SDK reads
    // one number; the output count is the backend's.
    let mut expected = canonical.clone();
    if let Some(StreamEvent::Done(d)) = expected.last_mut() {
        d.usage.prompt_tokens = 25;
        d.usage.cached_prompt_tokens = 0;
    }
    assert_eq!(back, expected);

    let (name, data) = enc.error(crate::ErrorCode::UpstreamUnavailable, "backend overloaded");
    assert_eq!(name, "error");
    assert_eq!(
        data,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "backend overloaded"}})
    );
}

const TOOL_MESSAGE: &str = include_str!("../../tests/fixtures/anthropic_message_tool_use.json");
const TOOL_STREAM: &str = include_str!("../../tests/fixtures/anthropic_stream_tool_use.sse");

#[test]
fn inbound_tools_tool_use_and_tool_result_read_into_the_canonical_request() {
    let body: Value = serde_json::from_str(include_str!(
        "../../tests/fixtures/anthropic_request_tools.json"
    ))
    .unwrap();
    let req = parse_messages_request(&body).unwrap();
    assert_eq!(req.tools.len(), 1);
    assert_eq!(req.tools[0].name, "get_weather");
    assert_eq!(req.tools[0].parameters["required"], json!(["city"]));
    assert_eq!(
        req.tool_choice,
        Some(crate::ToolChoice::Named("get_weather".into()))
    );
    assert_eq!(req.parallel_tool_calls, Some(false));
    // user, assistant (text + call), tool result, user text after it.
    assert_eq!(req.messages.len(), 4);
    assert_eq!(req.messages[1].content, "Let me check.");
    assert_eq!(
        req.messages[1].tool_calls,
        vec![crate::ToolCall {
            id: "toolu_01A".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"}),
        }]
    );
    assert_eq!(req.messages[2].role, Role::Tool);
    assert_eq!(req.messages[2].tool_call_id.as_deref(), Some("toolu_01A"));
    assert_eq!(req.messages[2].content, "18C and sunny");
    assert_eq!(
        req.messages[3],
        Message::new(Role::User, "Thanks, and tomorrow?")
    );

    // Out to an Anthropic target: the same blocks, tool results first.
    let up = upstream_body(&target(), &req, false).unwrap();
    assert_eq!(up["tools"], body["tools"]);
    assert_eq!(
        up["tool_choice"],
        json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
    );
    assert_eq!(up["messages"][1], body["messages"][1]);
    assert_eq!(
        up["messages"][2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C and sunny"},
            {"type": "text", "text": "Thanks, and tomorrow?"}
        ])
    );
    // And to an OpenAI target: the same ids on the call and its result.
    let o = RemoteTarget::new("o", crate::BackendKind::Openai, "http://x/v1", "gpt-x");
    let up = crate::openai::upstream_body(&o, &req, false);
    assert_eq!(
        up["tools"][0]["function"]["parameters"],
        body["tools"][0]["input_schema"]
    );
    assert_eq!(up["tool_choice"]["function"]["name"], "get_weather");
    assert_eq!(up["parallel_tool_calls"], false);
    assert_eq!(up["messages"][1]["tool_calls"][0]["id"], "toolu_01A");
    assert_eq!(
        up["messages"][2],
        json!({"role": "tool", "tool_call_id": "toolu_01A", "content": "18C and sunny"})
    );
    assert_eq!(up["messages"][3]["role"], "user");

    // Tools no longer offered: the called ones are declared, none allowed.
    let mut no_tools = req.clone();
    no_tools.tools.clear();
    no_tools.tool_choice = None;
    let up = upstream_body(&target(), &no_tools, false).unwrap();
    assert_eq!(
        up["tools"],
        json!([{"name": "get_weather", "input_schema": {"type": "object"}}])
    );
    assert_eq!(up["tool_choice"], json!({"type": "none"}));
}

#[test]
fn recorded_tool_use_message_reads_and_writes_back() {
    let v: Value = serde_json::from_str(TOOL_MESSAGE).unwrap();
    let resp = parse_message(&target(), &v).unwrap();
    assert_eq!(resp.text, "I'll check the weather.");
    assert_eq!(resp.done.finish_reason, FinishReason::ToolCalls);
    assert_eq!(resp.tool_calls.len(), 1);
    assert_eq!(resp.tool_calls[0].id, "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(resp.tool_calls[0].name, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&resp.tool_calls[0].arguments).unwrap(),
        json!({"location": "San Francisco, CA", "unit": "celsius"})
    );
    let ours = messages_response_json("msg_1", "m", &resp);
    assert_eq!(ours["content"], v["content"]);
    assert_eq!(ours["stop_reason"], "tool_use");
    // The same answer for an OpenAI client.
    let wire = crate::openai::response_json("c", 1, "m", &resp);
    let call = &wire["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(call["type"], "function");
    assert_eq!(wire["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn recorded_tool_use_stream_reads_into_tool_call_pieces_and_writes_back() {
    let (events, err) = read_stream(TOOL_STREAM);
    assert!(err.is_none(), "{err:?}");
    let pieces: Vec<&crate::ToolCallDelta> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCall(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(
        pieces[0].id.as_deref(),
        Some("toolu_01T1x1fJ34qAmk2tNTrN7Up6")
    );
    assert_eq!(pieces[0].name.as_deref(), Some("get_weather"));
    assert!(pieces.iter().all(|p| p.index == 0));
    let args: String = pieces.iter().map(|p| p.arguments.as_str()).collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
    );
    match events.last() {
        Some(StreamEvent::Done(c)) => assert_eq!(c.finish_reason, FinishReason::ToolCalls),
        other => panic!("{other:?}"),
    }
    // Our encoder writes the same event sequence, which reads back the same.
    // message_start announces the recorded input count; message_delta repeats it.
    let input = match events.last() {
        Some(StreamEvent::Done(c)) => c.usage.prompt_tokens,
        _ => 0,
    };
    let mut enc = MessagesStreamEncoder::new("msg_1", "claude-sonnet-4-5-20250929");
    let mut pairs = enc.start(input);
    for ev in &events {
        pairs.extend(enc.on_event(ev));
    }
    let names: Vec<&str> = pairs.iter().map(|(n, _)| *n).collect();
    // Anthropic opens a tool_use block with an empty input_json_delta, which
    // carries nothing and is not written back.
    let recorded: Vec<&str> = TOOL_STREAM
        .split("\n\n")
        .filter(|b| !b.contains("\"partial_json\":\"\""))
        .filter_map(|b| b.lines().next()?.strip_prefix("event: "))
        .collect();
    assert_eq!(names, recorded);
    let starts: Vec<&Value> = pairs
        .iter()
        .filter(|(n, _)| *n == "content_block_start")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(starts[1]["index"], 1);
    assert_eq!(starts[1]["content_block"]["type"], "tool_use");
    let raw: String = pairs
        .iter()
        .map(|(n, d)| format!("event: {n}\ndata: {d}\n\n"))
        .collect();
    let (back, err) = read_stream(&raw);
    assert!(err.is_none());
    assert_eq!(back, events);
}

#[test]
fn a_matched_stop_sequence_is_named_both_ways_plain_and_streamed() {
    let done = Completion {
        model: "m".into(),
        finish_reason: FinishReason::Stop,
        stop_sequence: Some("END".into()),
        usage: Usage {
            prompt_tokens: 9,
            completion_tokens: 3,
            cached_prompt_tokens: 0,
        },
        engine_seconds: None,
    };
    let resp = ChatResponse {
        text: "one two".into(),
        tool_calls: Vec::new(),
        done: done.clone(),
        logprobs: None,
        more_choices: Vec::new(),
    };
    let wire = messages_response_json("msg_1", "m", &resp);
    assert_eq!(wire["stop_reason"], "stop_sequence");
    assert_eq!(wire["stop_sequence"], "END");
    assert_eq!(parse_message(&target(), &wire).unwrap(), resp);

    let mut enc = MessagesStreamEncoder::new("msg_1", "m");
    let mut pairs = enc.start(9);
    pairs.extend(enc.on_event(&StreamEvent::Delta("one two".into())));
    pairs.extend(enc.on_event(&StreamEvent::Done(done.clone())));
    let delta = pairs
        .iter()
        .find(|(n, _)| *n == "message_delta")
        .map(|(_, d)| d.clone())
        .unwrap();
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": "END"})
    );
    let raw: String = pairs
        .iter()
        .map(|(n, d)| format!("event: {n}\ndata: {d}\n\n"))
        .collect();
    let (back, err) = read_stream(&raw);
    assert!(err.is_none());
    assert_eq!(back.last(), Some(&StreamEvent::Done(done)));

    // A natural end names no sequence.
    let natural = ChatResponse {
        text: "x".into(),
        tool_calls: Vec::new(),
        done: Completion {
            stop_sequence: None,
            ..resp.done
        },
        logprobs: None,
        more_choices: Vec::new(),
    };
    let wire = messages_response_json("msg_1", "m", &natural);
    assert_eq!(wire["stop_reason"], "end_turn");
    assert!(wire["stop_sequence"].is_null());
}

#[test]
fn openai_image_parts_become_image_blocks_in_place() {
    let png = crate::image::PNG_1X1;
    let req = crate::openai::parse_chat_request(&json!({"model": "m", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
        {"role": "user", "content": [
            {"type": "text", "text": "what is"},
            {"type": "image_url", "image_url": {"url": format!("data:image/jpeg;base64,{png}"), "detail": "high"}},
            {"type": "text", "text": "and"},
            {"type": "image_url", "image_url": {"url": "https://e.com/b.webp"}}
        ]}
    ]}))
    .unwrap();
    let body = upstream_body(&target(), &req, false).unwrap();
    // The declared jpeg is a png by its bytes; `detail` has no Anthropic field.
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "hello\n\nwhat is"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
            {"type": "text", "text": "and"},
            {"type": "image", "source": {"type": "url", "url": "https://e.com/b.webp"}}
        ]}])
    );
    assert_eq!(body["system"], "be brief");
}

#[test]
fn inbound_image_blocks_are_read_in_order() {
    let png = crate::image::PNG_1X1;
    let req = parse_messages_request(&json!({"model": "m", "max_tokens": 8, "messages": [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": png}},
            {"type": "text", "text": "describe"}
        ]}
    ]}))
    .unwrap();
    let m = &req.messages[0];
    let img = m.images().next().unwrap();
    assert_eq!(img.field, "messages[0].content[0].source.data");
    assert_eq!(
        img.source,
        crate::ImageSource::Base64 {
            media_type: crate::MediaType::Png,
            data: png.into()
        }
    );
    assert_eq!(m.text(), "describe");
    assert!(matches!(m.pieces().next(), Some(crate::Piece::Image(_))));
}
