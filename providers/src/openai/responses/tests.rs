//! The Responses wire against bodies shaped as the official SDK sends them.

use serde_json::{json, Value};

use super::*;
use crate::{
    ChatResponse, Completion, ErrorCode, FinishReason, GeneratedToolCall, StreamEvent,
    ToolCallDelta, Usage,
};

fn param_of(body: Value) -> (String, String) {
    match parse_responses_request(&body).unwrap_err() {
        ProviderError::BadRequest { message, param } => (param.unwrap_or_default(), message),
        other => panic!("expected BadRequest, got {other:?}"),
    }
}

fn base() -> Value {
    json!({"model": "auto", "input": "hi"})
}

fn with(key: &str, v: Value) -> Value {
    let mut b = base();
    b[key] = v;
    b
}

#[test]
fn a_string_input_with_instructions_is_a_system_and_a_user_message() {
    let body = json!({
        "model": "auto",
        "instructions": "Be terse.",
        "input": "Name a colour.",
        "max_output_tokens": 32,
        "temperature": 0.5,
        "top_p": 0.9,
        "metadata": {"ticket": "T-1"},
        "user": "u-1",
        "store": false,
        "stream": true,
    });
    let r = parse_responses_request(&body).unwrap();
    assert_eq!(
        r.chat.messages,
        vec![
            Message::new(Role::System, "Be terse."),
            Message::new(Role::User, "Name a colour."),
        ]
    );
    assert_eq!(r.chat.max_tokens, Some(32));
    assert_eq!(r.chat.temperature, Some(0.5));
    assert_eq!(r.chat.top_p, Some(0.9));
    assert_eq!(r.chat.user.as_deref(), Some("u-1"));
    assert_eq!(
        r.chat.metadata.get("ticket").map(String::as_str),
        Some("T-1")
    );
    assert!(r.chat.stream);
    assert_eq!(r.echo["instructions"], "Be terse.");
    assert_eq!(r.echo["max_output_tokens"], 32);
}

#[test]
fn items_become_messages_tool_calls_and_tool_results() {
    let body = json!({
        "model": "auto",
        "input": [
            {"role": "developer", "content": "Use tools."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"}, {"type": "input_text", "text": "And Bergen?"}]},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed", "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}", "status": "completed"},
            {"type": "function_call", "call_id": "call_b", "name": "get_weather", "arguments": "{\"city\":\"Bergen\"}"},
            {"type": "function_call_output", "call_id": "call_a", "output": "rain"},
            {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "sun"}]},
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather by city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": false,
    });
    let r = parse_responses_request(&body).unwrap();
    let m = &r.chat.messages;
    assert_eq!(m.len(), 5, "{m:?}");
    assert_eq!(m[0], Message::new(Role::System, "Use tools."));
    assert_eq!(m[1].content, "Weather in Oslo?\nAnd Bergen?");
    assert_eq!(m[2].role, Role::Assistant);
    assert_eq!(m[2].content, "Checking.");
    let ids: Vec<&str> = m[2].tool_calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["call_a", "call_b"]);
    assert_eq!(m[2].tool_calls[0].arguments, json!({"city": "Oslo"}));
    assert_eq!(m[3].role, Role::Tool);
    assert_eq!(m[3].tool_call_id.as_deref(), Some("call_a"));
    assert_eq!(m[4].content, "sun");
    assert_eq!(r.chat.tools.len(), 1);
    assert_eq!(r.chat.tools[0].strict, Some(true));
    assert_eq!(
        r.chat.tool_choice,
        Some(ToolChoice::Named("get_weather".into()))
    );
    assert_eq!(r.chat.parallel_tool_calls, Some(false));
    assert!(r.chat.needs_tools());
}

#[test]
fn text_format_maps_to_the_response_format() {
    let schema =
        json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]});
    let r = parse_responses_request(&with(
        "text",
        json!({"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": true}}),
    ))
    .unwrap();
    assert_eq!(
        r.chat.response_format,
        Some(ResponseFormat::JsonSchema {
            name: "person".into(),
            schema,
            strict: true
        })
    );
    let r =
        parse_responses_request(&with("text", json!({"format": {"type": "json_object"}}))).unwrap();
    assert_eq!(r.chat.response_format, Some(ResponseFormat::JsonObject));
}

#[test]
fn every_text_of_a_responses_body_is_an_outbound_text() {
    let body = json!({
        "model": "auto",
        "instructions": "INSTR-CANARY",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "INPUT-CANARY"}]},
            {"type": "function_call", "call_id": "CALLID-CANARY", "name": "f", "arguments": "{\"ARGKEY-CANARY\":\"ARG-CANARY\"}"},
            {"type": "function_call_output", "call_id": "CALLID-CANARY", "output": "OUTPUT-CANARY"},
        ],
        "tools": [{"type": "function", "name": "f", "description": "DESC-CANARY", "parameters": {"type": "object", "properties": {"PARAM-CANARY": {"type": "string"}}}}],
        "text": {"format": {"type": "json_schema", "name": "SCHEMANAME-CANARY", "schema": {"type": "object", "description": "SCHEMA-CANARY"}}},
        "metadata": {"META-CANARY": "METAVALUE-CANARY"},
        "user": "USER-CANARY",
    });
    let r = parse_responses_request(&body).unwrap();
    let texts: Vec<&str> = r.chat.outbound_texts().iter().map(|t| t.text).collect();
    for canary in [
        "INSTR-CANARY",
        "INPUT-CANARY",
        "CALLID-CANARY",
        "ARGKEY-CANARY",
        "ARG-CANARY",
        "OUTPUT-CANARY",
        "DESC-CANARY",
        "PARAM-CANARY",
        "SCHEMANAME-CANARY",
        "SCHEMA-CANARY",
        "META-CANARY",
        "METAVALUE-CANARY",
        "USER-CANARY",
    ] {
        assert!(texts.contains(&canary), "{canary} missing from {texts:?}");
    }
}

#[test]
fn stateful_and_unknown_fields_are_refused_by_name() {
    let (p, m) = param_of(with("previous_response_id", json!("resp_1")));
    assert_eq!(p, "previous_response_id");
    assert!(m.contains("stores no conversations"), "{m}");
    let (p, m) = param_of(with("store", json!(true)));
    assert_eq!(p, "store");
    assert!(m.contains("stores no responses"), "{m}");
    assert!(parse_responses_request(&with("store", json!(false))).is_ok());
    // A null is a field not sent.
    assert!(parse_responses_request(&with("previous_response_id", Value::Null)).is_ok());
    assert!(
        parse_responses_request(&with("include", json!(["reasoning.encrypted_content"]))).is_ok()
    );
    let (p, _) = param_of(with("include", json!(["message.output_text.logprobs"])));
    assert_eq!(p, "include[0]");
    for key in [
        "background",
        "include",
        "truncation",
        "service_tier",
        "prompt_cache_key",
        "conversation",
        "max_tool_calls",
        "top_logprobs",
    ] {
        let (p, _) = param_of(with(key, json!("x")));
        assert_eq!(p, key);
    }
}

#[test]
fn bad_input_names_the_field() {
    let cases = [
        (with("input", json!(7)), "input"),
        (with("input", json!([])), "input"),
        (
            with(
                "input",
                json!([{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]),
            ),
            "input[0].content[0].image_url",
        ),
        (
            with(
                "input",
                json!([{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]),
            ),
            "input[0].content[0].file_id",
        ),
        (
            with(
                "input",
                json!([{"role": "assistant", "content": [{"type": "input_image", "image_url": "https://e.com/a.png"}]}]),
            ),
            "input[0].content[0].type",
        ),
        (
            with("input", json!([{"role": "critic", "content": "x"}])),
            "input[0].role",
        ),
        (
            with("input", json!([{"type": "reasoning", "summary": []}])),
            "input[0].type",
        ),
        (
            with(
                "input",
                json!([{"type": "function_call_output", "call_id": "nope", "output": "x"}]),
            ),
            "input[0].call_id",
        ),
        (
            with(
                "input",
                json!([{"role": "user", "content": "x", "name": "bob"}]),
            ),
            "input[0].name",
        ),
        (
            with("tools", json!([{"type": "web_search_preview"}])),
            "tools[0].type",
        ),
        (
            with(
                "tools",
                json!([{"type": "function", "name": "f", "parameters": "nope"}]),
            ),
            "tools[0].parameters",
        ),
        (with("tool_choice", json!("required")), "tool_choice"),
        (
            with(
                "text",
                json!({"format": {"type": "json_schema", "name": "x"}}),
            ),
            "text.format.schema",
        ),
        (
            with("text", json!({"format": {"type": "grammar"}})),
            "text.format.type",
        ),
        (with("text", json!({"verbosity": "low"})), "text.verbosity"),
        (with("reasoning", json!({"effort": 3})), "reasoning.effort"),
        (
            with("reasoning", json!({"summary": "auto"})),
            "reasoning.summary",
        ),
        (with("max_output_tokens", json!(0)), "max_output_tokens"),
        (with("temperature", json!(3)), "temperature"),
        (with("metadata", json!({"k": 1})), "metadata.k"),
    ];
    for (body, want) in cases {
        let (p, m) = param_of(body.clone());
        assert_eq!(p, want, "{body} -> {m}");
        assert!(m.contains(want), "{m} does not name {want}");
    }
    assert!(parse_responses_request(&with("reasoning", json!({"effort": null}))).is_ok());
}

#[test]
fn reasoning_effort_becomes_the_canonical_option_and_is_echoed() {
    let r = parse_responses_request(&with("reasoning", json!({"effort": "high"}))).unwrap();
    assert_eq!(r.chat.options.reasoning_effort.as_deref(), Some("high"));
    assert_eq!(r.chat.requested_options(), ["reasoning_effort"]);
    assert_eq!(
        r.echo["reasoning"],
        json!({"effort": "high", "summary": null})
    );
    // A refusal by its chat name reads with the Responses path.
    assert_eq!(
        super::responses_param("reasoning_effort"),
        "reasoning.effort"
    );
    assert_eq!(super::responses_param("n"), "n");
    let none = parse_responses_request(&with("input", json!("hi"))).unwrap();
    assert!(none.chat.requested_options().is_empty());
}

fn done(finish_reason: FinishReason) -> Completion {
    Completion {
        model: "m".into(),
        finish_reason,
        stop_sequence: None,
        usage: Usage {
            prompt_tokens: 7,
            completion_tokens: 3,
            cached_prompt_tokens: 0,
        },
        engine_seconds: None,
    }
}

#[test]
fn a_response_object_has_message_and_function_call_items() {
    let echo = parse_responses_request(&base()).unwrap().echo;
    let resp = ChatResponse {
        text: "Hello".into(),
        tool_calls: vec![GeneratedToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: "{\"a\":1}".into(),
        }],
        done: done(FinishReason::ToolCalls),
        logprobs: None,
        more_choices: vec![],
    };
    let v = response_json("resp_abc", 100, "m", &echo, &resp);
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(v["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(v["output"][1]["type"], "function_call");
    assert_eq!(v["output"][1]["call_id"], "call_1");
    assert_eq!(v["output"][1]["arguments"], "{\"a\":1}");
    assert_eq!(v["output_text"], "Hello");
    assert_eq!(v["usage"]["input_tokens"], 7);
    assert_eq!(v["usage"]["output_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 10);
    assert_eq!(v["store"], false);

    let cut = ChatResponse {
        text: "Hel".into(),
        tool_calls: vec![],
        done: done(FinishReason::Length),
        logprobs: None,
        more_choices: vec![],
    };
    let v = response_json("resp_abc", 100, "m", &echo, &cut);
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
}

#[test]
fn a_stream_is_the_event_sequence_with_sequence_numbers() {
    let echo = parse_responses_request(&base()).unwrap().echo;
    let mut enc = ResponsesStreamEncoder::new("resp_x", 100, "m", &echo);
    let mut events = enc.start();
    events.extend(enc.on_event(&StreamEvent::Delta("Hel".into())));
    events.extend(enc.on_event(&StreamEvent::Delta("lo".into())));
    events.extend(enc.on_event(&StreamEvent::ToolCall(ToolCallDelta {
        index: 0,
        id: Some("call_1".into()),
        name: Some("f".into()),
        arguments: "{\"a\"".into(),
    })));
    events.extend(enc.on_event(&StreamEvent::ToolCall(ToolCallDelta {
        index: 0,
        id: None,
        name: None,
        arguments: ":1}".into(),
    })));
    events.extend(enc.on_event(&StreamEvent::Done(done(FinishReason::ToolCalls))));
    let names: Vec<&str> = events.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], i as u64, "{name}");
        assert_eq!(data["type"], *name);
    }
    assert_eq!(events[6].1["text"], "Hello");
    assert_eq!(events[12].1["arguments"], "{\"a\":1}");
    assert_eq!(events[12].1["output_index"], 1);
    let last = &events[14].1["response"];
    assert_eq!(last["status"], "completed");
    assert_eq!(last["output"].as_array().unwrap().len(), 2);
    assert_eq!(last["output"][1]["call_id"], "call_1");
    assert_eq!(last["usage"]["total_tokens"], 10);

    let mut enc = ResponsesStreamEncoder::new("resp_y", 100, "m", &echo);
    enc.start();
    enc.on_event(&StreamEvent::Delta("x".into()));
    let (name, data) = enc.error(ErrorCode::UpstreamError, "boom");
    assert_eq!(name, "response.failed");
    assert_eq!(data["response"]["status"], "failed");
    assert_eq!(data["response"]["error"]["code"], "upstream_error");
    assert_eq!(data["sequence_number"], 5);

    let mut enc = ResponsesStreamEncoder::new("resp_z", 100, "m", &echo);
    enc.start();
    enc.on_event(&StreamEvent::Delta("x".into()));
    let end = enc.on_event(&StreamEvent::Done(done(FinishReason::Length)));
    let (name, data) = end.last().unwrap();
    assert_eq!(*name, "response.incomplete");
    assert_eq!(
        data["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
}

#[test]
fn input_images_become_image_parts_in_place() {
    let png = format!("data:image/png;base64,{}", crate::image::PNG_1X1);
    let r = parse_responses_request(&with(
        "input",
        json!([{"role": "user", "content": [
            {"type": "input_text", "text": "what is"},
            {"type": "input_image", "image_url": "https://e.com/cat.webp", "detail": "high"},
            {"type": "input_image", "image_url": png}
        ]}]),
    ))
    .unwrap();
    let m = &r.chat.messages[0];
    assert_eq!(m.text(), "what is");
    let images: Vec<&crate::Image> = m.images().collect();
    assert_eq!(images.len(), 2);
    assert_eq!(images[0].url(), Some("https://e.com/cat.webp"));
    assert_eq!(images[0].detail, Some(crate::ImageDetail::High));
    assert_eq!(images[1].field, "input[0].content[2].image_url");
    assert_eq!(images[1].decoded_len(), 70);
}
