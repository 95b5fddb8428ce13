//! Unit tests of the tool formats: which templates are native, the plans and
//! grammars each `tool_choice` gives, rendering, and reading answers back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use watershed_providers::{ChatRequest, Message, Role, Tool, ToolCall, ToolChoice};

use super::*;

/// Qwen2.5's chat template, as its GGUF files carry it (Hermes tool format).
const QWEN: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

/// SmolLM2-Instruct's template: ChatML, no tools.
const SMOLLM: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

fn param(e: &ProviderError) -> Option<&str> {
    match e {
        ProviderError::BadRequest { param, .. } => param.as_deref(),
        _ => None,
    }
}

fn weather() -> Tool {
    Tool {
        name: "get_weather".to_owned(),
        description: Some("The weather in a city".to_owned()),
        parameters: json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]}
            },
            "required": ["city", "unit"]
        }),
        strict: None,
    }
}

fn time() -> Tool {
    Tool {
        name: "get_time".to_owned(),
        description: None,
        parameters: json!({"type": "object", "properties": {"zone": {"type": "integer", "minimum": -12, "maximum": 14}}, "required": ["zone"]}),
        strict: None,
    }
}

fn request(choice: Option<ToolChoice>) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::new(Role::User, "weather in Paris?")],
        tools: vec![weather(), time()],
        tool_choice: choice,
        ..Default::default()
    }
}

fn generic_plan(choice: Option<ToolChoice>) -> Plan {
    plan(&request(choice), Format::Generic).unwrap().unwrap()
}

#[test]
fn a_template_that_writes_tool_call_blocks_is_native_and_chatml_is_generic() {
    assert_eq!(Format::of_template(QWEN), Format::Hermes);
    assert_eq!(Format::of_template(SMOLLM), Format::Generic);
    assert_eq!(Format::of_template("chatml"), Format::Generic);
}

#[test]
fn tool_choice_decides_what_the_answer_may_be() {
    assert!(plan(&request(Some(ToolChoice::None)), Format::Generic)
        .unwrap()
        .is_none());
    let auto = generic_plan(None);
    assert!(auto.text_allowed && auto.tools.len() == 2 && !auto.single_call);
    let required = generic_plan(Some(ToolChoice::Required));
    assert!(!required.text_allowed && required.tools.len() == 2);
    let named = generic_plan(Some(ToolChoice::Named("get_time".to_owned())));
    assert!(!named.text_allowed);
    assert_eq!(named.tools, vec![time()]);
    let mut one = request(None);
    one.parallel_tool_calls = Some(false);
    assert!(plan(&one, Format::Generic).unwrap().unwrap().single_call);
    let err = plan(
        &request(Some(ToolChoice::Named("nope".to_owned()))),
        Format::Generic,
    )
    .unwrap_err();
    assert_eq!(param(&err), Some("tool_choice"), "{err}");
}

#[test]
fn parameters_that_cannot_become_a_grammar_are_a_400_naming_the_tool() {
    let mut req = request(None);
    req.tools[1].parameters =
        json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}});
    let err = plan(&req, Format::Generic).unwrap_err();
    assert_eq!(param(&err), Some("tools[1].function.parameters"), "{err}");
    assert!(err.to_string().contains("get_time"), "{err}");
}

#[test]
fn response_format_and_tools_together_are_refused_by_name() {
    let mut req = request(None);
    req.response_format = Some(watershed_providers::ResponseFormat::JsonObject);
    let err = plan(&req, Format::Generic).unwrap_err();
    assert_eq!(param(&err), Some("response_format"), "{err}");
    req.tool_choice = Some(ToolChoice::None);
    assert!(plan(&req, Format::Generic).unwrap().is_none());
}

#[test]
fn the_generic_grammar_offers_text_only_with_auto_and_only_the_named_tool() {
    let auto = generic_plan(None).grammar().unwrap();
    assert_eq!(auto.trigger, None);
    assert!(auto.gbnf.contains("response"), "{}", auto.gbnf);
    assert!(auto.gbnf.contains("get_weather") && auto.gbnf.contains("get_time"));
    let required = generic_plan(Some(ToolChoice::Required)).grammar().unwrap();
    assert!(!required.gbnf.contains("response"), "{}", required.gbnf);
    assert!(required.gbnf.contains("tool_calls"));
    let named = generic_plan(Some(ToolChoice::Named("get_weather".to_owned())))
        .grammar()
        .unwrap();
    assert!(named.gbnf.contains("get_weather"));
    assert!(!named.gbnf.contains("get_time"), "{}", named.gbnf);
    // The argument schema is the tool's own: its enum values are in it.
    assert!(named.gbnf.contains(r#"\"f\""#), "{}", named.gbnf);
    let mut one = generic_plan(Some(ToolChoice::Required));
    one.single_call = true;
    assert_ne!(one.grammar().unwrap().gbnf, required.gbnf);
}

#[test]
fn the_hermes_grammar_wraps_calls_in_blocks_and_is_lazy_with_auto() {
    let mut p = plan(&request(None), Format::Hermes).unwrap().unwrap();
    let auto = p.grammar().unwrap();
    assert_eq!(auto.trigger.as_deref(), Some("<tool_call>"));
    assert!(auto
        .gbnf
        .starts_with("root ::= tool-call-block (\"\\n\" tool-call-block)*\n"));
    assert!(auto.gbnf.contains("tool-call-json ::="), "{}", auto.gbnf);
    assert_eq!(auto.gbnf.matches("\nroot ::=").count(), 0, "{}", auto.gbnf);
    p.text_allowed = false;
    p.single_call = true;
    let required = p.grammar().unwrap();
    assert_eq!(required.trigger, None);
    assert!(required.gbnf.starts_with("root ::= tool-call-block\n"));
}

#[test]
fn generic_turns_put_the_tools_in_the_system_message_and_calls_as_json() {
    let mut req = request(Some(ToolChoice::Required));
    req.messages = vec![
        Message::new(Role::System, "be brief"),
        Message::new(Role::User, "weather in Paris?"),
        Message {
            tool_calls: vec![ToolCall {
                id: "call_1".to_owned(),
                name: "get_weather".to_owned(),
                arguments: json!({"city": "Paris", "unit": "c"}),
            }],
            ..Message::new(Role::Assistant, "")
        },
        Message {
            tool_call_id: Some("call_1".to_owned()),
            ..Message::new(Role::Tool, "18 degrees")
        },
    ];
    let p = plan(&req, Format::Generic).unwrap().unwrap();
    let turns = generic_turns(&req, Some(&p));
    assert_eq!(turns.len(), 4);
    assert_eq!(turns[0].0, "system");
    assert!(turns[0].1.starts_with("You can call these tools:\n"));
    assert!(turns[0].1.ends_with("\n\nbe brief"));
    assert!(turns[0].1.contains("\"get_weather\"") && !turns[0].1.contains("\"response\""));
    let call: Value = serde_json::from_str(&turns[2].1).unwrap();
    assert_eq!(call["tool_calls"][0]["arguments"]["city"], "Paris");
    assert_eq!(turns[3].0, "user");
    let result: Value = serde_json::from_str(&turns[3].1).unwrap();
    assert_eq!(
        result,
        json!({"tool_response": {"id": "call_1", "name": "get_weather", "content": "18 degrees"}})
    );
    // Without a system message, one is added in front.
    let req = request(None);
    let turns = generic_turns(&req, plan(&req, Format::Generic).unwrap().as_ref());
    assert_eq!(turns[0].0, "system");
    assert!(turns[0].1.contains(r#"{"response": "<your answer>"}"#));
    assert_eq!(
        turns[1],
        ("user".to_owned(), "weather in Paris?".to_owned())
    );
}

#[test]
fn a_hermes_template_renders_tools_calls_and_results_natively() {
    let mut req = request(None);
    req.messages.push(Message {
        tool_calls: vec![ToolCall {
            id: "call_1".to_owned(),
            name: "get_weather".to_owned(),
            arguments: json!({"city": "Paris", "unit": "c"}),
        }],
        ..Message::new(Role::Assistant, "")
    });
    req.messages.push(Message {
        tool_call_id: Some("call_1".to_owned()),
        ..Message::new(Role::Tool, "18 degrees")
    });
    let p = plan(&req, Format::Hermes).unwrap();
    let out = render_native(QWEN, &req, p.as_ref(), "", "<|im_end|>").unwrap();
    assert!(out.starts_with("<|im_start|>system\nYou are Qwen"), "{out}");
    assert!(out.contains("<tools>\n{"), "{out}");
    assert!(out.contains(r#""name":"get_weather""#), "{out}");
    assert!(out.contains(r#""name":"get_time""#), "{out}");
    assert!(
        out.contains("<|im_start|>user\nweather in Paris?<|im_end|>\n"),
        "{out}"
    );
    assert!(
        out.contains("<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\",\"unit\":\"c\"}}\n</tool_call><|im_end|>\n"),
        "{out}"
    );
    assert!(
        out.contains("<|im_start|>user\n<tool_response>\n18 degrees\n</tool_response><|im_end|>\n"),
        "{out}"
    );
    assert!(out.ends_with("<|im_start|>assistant\n"), "{out}");
    // With tool_choice none the tools are not shown, the history still is.
    req.tool_choice = Some(ToolChoice::None);
    let out = render_native(QWEN, &req, None, "", "").unwrap();
    assert!(
        !out.contains("<tools>") && out.contains("<tool_response>"),
        "{out}"
    );
    // A template that fails says so (the engine then falls back to generic).
    let err =
        render_native("{{ raise_exception('no tools here') }}", &req, None, "", "").unwrap_err();
    assert!(err.contains("no tools here"), "{err}");
}

#[test]
fn generic_answers_read_back_into_calls_or_text() {
    let out = r#"{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}, {"name": "get_time", "arguments": {"zone": 1}}]}"#;
    let p = parse(Format::Generic, out);
    assert_eq!(p.text, "");
    assert_eq!(p.calls.len(), 2);
    assert_eq!(p.calls[0].name, "get_weather");
    let args: Value = serde_json::from_str(&p.calls[0].arguments).unwrap();
    assert_eq!(args, json!({"city": "Paris", "unit": "c"}));
    assert!(p
        .calls
        .iter()
        .all(|c| c.id.starts_with("call_") && c.id.len() == 29));
    assert_ne!(p.calls[0].id, p.calls[1].id);
    let p = parse(
        Format::Generic,
        "{\"response\": \"It is \\\"sunny\\\".\"}\n",
    );
    assert_eq!(p.text, "It is \"sunny\".");
    assert!(p.calls.is_empty());
    // Cut short: kept as the text it is.
    let cut = r#"{"tool_calls": [{"name": "get_weather", "argu"#;
    assert_eq!(parse(Format::Generic, cut).text, cut);
    assert!(parse(Format::Generic, cut).calls.is_empty());
}

#[test]
fn hermes_answers_read_back_with_the_text_before_the_calls() {
    let out = "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": 1}}\n</tool_call>";
    let p = parse(Format::Hermes, out);
    assert_eq!(p.text, "Let me look.");
    assert_eq!(
        p.calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["get_weather", "get_time"]
    );
    assert_eq!(parse(Format::Hermes, "plain answer").text, "plain answer");
    let open = "<tool_call>\n{\"name\": \"get_time\"";
    assert_eq!(parse(Format::Hermes, open).text, open);
}
