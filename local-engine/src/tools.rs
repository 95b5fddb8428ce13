//! Tool calling on the local engine, the way llama.cpp's `common/chat.cpp`
//! does it. A GGUF whose chat template can express tools in the Hermes /
//! Qwen form (it reads `tools` and writes `<tool_call>` blocks) is rendered
//! natively, by a Jinja engine with the tools passed in; any other template
//! gets llama.cpp's "generic" format: the tools' schemas in a system message
//! and the whole answer held by a grammar to either
//! `{"tool_calls": [{"name": .., "arguments": {..}}]}` or `{"response": ".."}`.
//! Either way the call is constrained by a grammar built from the declared
//! tools' parameter schemas, so a finished answer always parses into one of
//! them; this module also parses it back into [`GeneratedToolCall`]s.

use futures::StreamExt;
use serde_json::{json, Value};
use watershed_providers::{
    ChatRequest, ChatStream, FinishReason, GeneratedToolCall, ProviderError, Role, StreamEvent,
    Tool, ToolCallDelta, ToolChoice,
};

use crate::grammar::Grammar;

/// How a template renders tools and how the model writes a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Tool schemas in a system message; the answer is one JSON object.
    Generic,
    /// The template's own `tools` rendering; calls are
    /// `<tool_call>{"name": .., "arguments": {..}}</tool_call>` blocks.
    Hermes,
}

const CALL_OPEN: &str = "<tool_call>";
const CALL_CLOSE: &str = "</tool_call>";

impl Format {
    /// The format a chat template source supports: Hermes when it reads
    /// `tools` and writes `<tool_call>` (llama.cpp's own test for it).
    pub(crate) fn of_template(source: &str) -> Format {
        if source.contains("tools") && source.contains(CALL_OPEN) {
            Format::Hermes
        } else {
            Format::Generic
        }
    }
}

/// What a request with tools asks of the answer.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub format: Format,
    /// The tools the answer may call (one with a named choice).
    pub tools: Vec<Tool>,
    /// Whether the answer may be text instead of calls (`auto`).
    pub text_allowed: bool,
    /// `parallel_tool_calls: false`: at most one call.
    pub single_call: bool,
}

/// The plan for `req`, or `None` when the answer is free text: no tools
/// offered, or `tool_choice: none`. Every offered tool's parameters must
/// become a grammar; the first that cannot is a 400 naming it.
pub(crate) fn plan(req: &ChatRequest, format: Format) -> Result<Option<Plan>, ProviderError> {
    if req.tools.is_empty() || req.tool_choice == Some(ToolChoice::None) {
        return Ok(None);
    }
    for (i, t) in req.tools.iter().enumerate() {
        llama_cpp_2::json_schema_to_grammar(&t.parameters.to_string()).map_err(|e| {
            let field = format!("tools[{i}].function.parameters");
            ProviderError::bad_request(
                format!("\"{field}\" of tool \"{}\" cannot be turned into a grammar for the local engine: {e}", t.name),
                Some(&field),
            )
        })?;
    }
    let (tools, text_allowed) = match &req.tool_choice {
        None | Some(ToolChoice::Auto) => (req.tools.clone(), true),
        Some(ToolChoice::Required) => (req.tools.clone(), false),
        Some(ToolChoice::Named(name)) => {
            let Some(t) = req.tools.iter().find(|t| &t.name == name) else {
                return Err(ProviderError::bad_request(
                    format!("tool_choice names \"{name}\", which is not among the tools"),
                    Some("tool_choice"),
                ));
            };
            (vec![t.clone()], false)
        }
        Some(ToolChoice::None) => return Ok(None),
    };
    if req
        .response_format
        .as_ref()
        .is_some_and(|f| *f != watershed_providers::ResponseFormat::Text)
    {
        return Err(ProviderError::bad_request(
            "the local engine cannot hold an answer to both response_format and tools; send one of them (or tool_choice \"none\")",
            Some("response_format"),
        ));
    }
    Ok(Some(Plan {
        format,
        tools,
        text_allowed,
        single_call: req.parallel_tool_calls == Some(false),
    }))
}

/// One call as the grammar writes it: the tool's name, fixed, then
/// arguments that follow that tool's parameter schema.
///
/// Written as text: llama.cpp's converter keeps the schema's property order,
/// and `name` must come first so the model picks the tool before writing
/// its arguments (a `serde_json` map would sort `arguments` first).
fn call_schema(tools: &[Tool]) -> String {
    let one = |t: &Tool| {
        format!(
            r#"{{"type":"object","properties":{{"name":{{"const":{}}},"arguments":{}}},"required":["name","arguments"],"additionalProperties":false}}"#,
            Value::String(t.name.clone()),
            t.parameters
        )
    };
    match tools {
        [t] => one(t),
        many => format!(
            r#"{{"oneOf":[{}]}}"#,
            many.iter().map(one).collect::<Vec<_>>().join(",")
        ),
    }
}

/// The JSON schema a generic-format answer follows.
fn generic_schema(plan: &Plan) -> String {
    let max = if plan.single_call {
        r#","maxItems":1"#
    } else {
        ""
    };
    let calls = format!(
        r#"{{"type":"object","properties":{{"tool_calls":{{"type":"array","items":{},"minItems":1{max}}}}},"required":["tool_calls"],"additionalProperties":false}}"#,
        call_schema(&plan.tools)
    );
    if !plan.text_allowed {
        return calls;
    }
    format!(
        r#"{{"oneOf":[{calls},{{"type":"object","properties":{{"response":{{"type":"string"}}}},"required":["response"],"additionalProperties":false}}]}}"#
    )
}

fn to_grammar(schema: &str) -> Result<String, ProviderError> {
    llama_cpp_2::json_schema_to_grammar(schema).map_err(|e| {
        ProviderError::bad_request(
            format!("the tools' parameter schemas cannot be combined into one grammar: {e}"),
            Some("tools"),
        )
    })
}

impl Plan {
    /// The grammar that holds the answer to this plan.
    pub(crate) fn grammar(&self) -> Result<Grammar, ProviderError> {
        match self.format {
            Format::Generic => Ok(Grammar {
                gbnf: to_grammar(&generic_schema(self))?,
                trigger: None,
                field: "tools",
            }),
            Format::Hermes => {
                // The converter names its top rule `root`; it becomes the
                // rule for one call's JSON, inside the call block.
                let call = to_grammar(&call_schema(&self.tools))?;
                let mut gbnf = String::new();
                let repeat = if self.single_call {
                    ""
                } else {
                    " (\"\\n\" tool-call-block)*"
                };
                gbnf.push_str(&format!(
                    "root ::= tool-call-block{repeat}\ntool-call-block ::= \"{CALL_OPEN}\\n\" tool-call-json \"\\n{CALL_CLOSE}\"\n"
                ));
                for line in call.lines() {
                    match line.strip_prefix("root ::=") {
                        Some(body) => gbnf.push_str(&format!("tool-call-json ::={body}\n")),
                        None => {
                            gbnf.push_str(line);
                            gbnf.push('\n');
                        }
                    }
                }
                Ok(Grammar {
                    gbnf,
                    field: "tools",
                    // With `auto`, text may come first: the grammar holds
                    // the answer only once a call starts.
                    trigger: self.text_allowed.then(|| CALL_OPEN.to_owned()),
                })
            }
        }
    }

    /// The system text that tells a generic-format model what it may call
    /// and how to answer.
    pub(crate) fn generic_system(&self) -> String {
        let tools: Vec<Value> = self
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters}))
            .collect();
        let calls = if self.single_call {
            r#"{"tool_calls": [{"name": "<tool name>", "arguments": {<arguments>}}]} (one call)"#
        } else {
            r#"{"tool_calls": [{"name": "<tool name>", "arguments": {<arguments>}}, ...]}"#
        };
        let how = if self.text_allowed {
            format!("Respond in JSON, either with {calls} to call tools, or with {{\"response\": \"<your answer>\"}} to reply to the user.")
        } else {
            format!("Respond in JSON with {calls} to call tools.")
        };
        format!(
            "You can call these tools:\n{}\n{how}",
            serde_json::to_string_pretty(&tools).unwrap_or_default()
        )
    }
}

/// The generic format's rendering of the conversation: roles and texts for
/// the template, with earlier calls and their results written as JSON the
/// way the model is asked to write them.
pub(crate) fn generic_turns(req: &ChatRequest, plan: Option<&Plan>) -> Vec<(String, String)> {
    let mut turns: Vec<(String, String)> = Vec::with_capacity(req.messages.len() + 1);
    let name_of = |id: &str| {
        req.messages
            .iter()
            .flat_map(|m| &m.tool_calls)
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
    };
    for m in &req.messages {
        let content = if !m.tool_calls.is_empty() {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| json!({"name": c.name, "arguments": c.arguments, "id": c.id}))
                .collect();
            let mut v = json!({"tool_calls": calls});
            if !m.content.is_empty() {
                v["response"] = json!(m.content);
            }
            v.to_string()
        } else if m.role == Role::Tool {
            let id = m.tool_call_id.clone().unwrap_or_default();
            let mut v = json!({"id": id, "name": name_of(&id), "content": m.content});
            if m.tool_error {
                v["is_error"] = json!(true);
            }
            json!({ "tool_response": v }).to_string()
        } else {
            m.content.clone()
        };
        // Legacy templates know no `tool` role: a result is the user's turn.
        let role = match m.role {
            Role::Tool => "user",
            r => r.as_str(),
        };
        turns.push((role.to_owned(), content));
    }
    if let Some(p) = plan {
        let text = p.generic_system();
        match turns.first_mut() {
            Some((role, content)) if role == "system" => {
                *content = format!("{text}\n\n{content}");
            }
            _ => turns.insert(0, ("system".to_owned(), text)),
        }
    }
    turns
}

/// The Hermes format's rendering: the template itself, run by a Jinja
/// engine with the conversation and tools in OpenAI's shape, as Hugging
/// Face's `apply_chat_template` passes them.
pub(crate) fn render_native(
    source: &str,
    req: &ChatRequest,
    plan: Option<&Plan>,
    bos: &str,
    eos: &str,
) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_function("strftime_now", |_fmt: String| "01 Jan 2026".to_owned());
    env.add_template("chat", source)
        .map_err(|e| format!("the chat template does not parse: {e}"))?;
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| {
            let mut v = json!({"role": m.role.as_str(), "content": m.content});
            if !m.tool_calls.is_empty() {
                v["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
            }
            if let Some(id) = &m.tool_call_id {
                v["tool_call_id"] = json!(id);
            }
            v
        })
        .collect();
    let tools: Option<Vec<Value>> = plan.map(|p| {
        p.tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect()
    });
    let tmpl = env
        .get_template("chat")
        .map_err(|e| format!("the chat template does not load: {e}"))?;
    tmpl.render(minijinja::context! {
        messages => messages,
        tools => tools,
        add_generation_prompt => true,
        bos_token => bos,
        eos_token => eos,
    })
    .map_err(|e| format!("the chat template cannot render this conversation: {e}"))
}

/// A fresh call id in OpenAI's shape.
pub(crate) fn new_call_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("call_{}", &hex[..24])
}

/// An answer read back: its text and the calls it made.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Parsed {
    pub text: String,
    pub calls: Vec<GeneratedToolCall>,
}

fn to_call(v: &Value) -> Option<GeneratedToolCall> {
    let name = v.get("name")?.as_str()?.to_owned();
    let arguments = v.get("arguments")?;
    arguments.is_object().then(|| GeneratedToolCall {
        id: new_call_id(),
        name,
        arguments: arguments.to_string(),
    })
}

/// Reads the model's answer under `format`. What does not parse (an answer
/// cut short by `max_tokens` or a stop sequence) is kept as text.
pub(crate) fn parse(format: Format, out: &str) -> Parsed {
    let as_text = || Parsed {
        text: out.to_owned(),
        calls: Vec::new(),
    };
    match format {
        Format::Generic => {
            let Ok(v) = serde_json::from_str::<Value>(out.trim()) else {
                return as_text();
            };
            if let Some(calls) = v.get("tool_calls").and_then(Value::as_array) {
                let calls: Option<Vec<_>> = calls.iter().map(to_call).collect();
                match calls {
                    Some(calls) if !calls.is_empty() => Parsed {
                        text: String::new(),
                        calls,
                    },
                    _ => as_text(),
                }
            } else if let Some(text) = v.get("response").and_then(Value::as_str) {
                Parsed {
                    text: text.to_owned(),
                    calls: Vec::new(),
                }
            } else {
                as_text()
            }
        }
        Format::Hermes => {
            let Some(first) = out.find(CALL_OPEN) else {
                return as_text();
            };
            let mut calls = Vec::new();
            let mut rest = &out[first..];
            while let Some(start) = rest.find(CALL_OPEN) {
                let after = &rest[start + CALL_OPEN.len()..];
                let Some(end) = after.find(CALL_CLOSE) else {
                    return as_text();
                };
                let Some(call) = serde_json::from_str::<Value>(after[..end].trim())
                    .ok()
                    .as_ref()
                    .and_then(to_call)
                else {
                    return as_text();
                };
                calls.push(call);
                rest = &after[end + CALL_CLOSE.len()..];
            }
            Parsed {
                text: out[..first].trim_end().to_owned(),
                calls,
            }
        }
    }
}

/// Reads the calls out of an answer held to them: its text is gathered, and
/// at its end given back as text or as calls (each as a first piece with id
/// and name, then its arguments), the finish reason `tool_calls` when there
/// are calls. Other events pass through as they come.
pub(crate) fn read_calls(stream: ChatStream, format: Format) -> ChatStream {
    let mut text = String::new();
    Box::pin(stream.flat_map(move |item| {
        let out: Vec<Result<StreamEvent, ProviderError>> = match item {
            Ok(StreamEvent::Delta(d)) => {
                text.push_str(&d);
                Vec::new()
            }
            Ok(StreamEvent::Done(mut done)) => {
                let parsed = parse(format, &std::mem::take(&mut text));
                let mut out = Vec::new();
                if !parsed.text.is_empty() {
                    out.push(Ok(StreamEvent::Delta(parsed.text)));
                }
                for (i, c) in parsed.calls.iter().enumerate() {
                    let index = u32::try_from(i).unwrap_or(u32::MAX);
                    out.push(Ok(StreamEvent::ToolCall(ToolCallDelta {
                        index,
                        id: Some(c.id.clone()),
                        name: Some(c.name.clone()),
                        arguments: String::new(),
                    })));
                    out.push(Ok(StreamEvent::ToolCall(ToolCallDelta {
                        index,
                        id: None,
                        name: None,
                        arguments: c.arguments.clone(),
                    })));
                }
                if !parsed.calls.is_empty() && done.finish_reason == FinishReason::Stop {
                    done.finish_reason = FinishReason::ToolCalls;
                }
                out.push(Ok(StreamEvent::Done(done)));
                out
            }
            other => vec![other],
        };
        futures::stream::iter(out)
    }))
}

#[cfg(test)]
mod tests;
