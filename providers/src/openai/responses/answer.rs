//! Responses answers as OpenAI writes them: the `response` object, and the
//! event stream of a streamed one (`response.created`, `response.in_progress`,
//! output items with their content parts and deltas, `response.completed`
//! with usage), each event with its `sequence_number`.

use serde_json::{json, Map, Value};

use crate::{ChatResponse, Completion, ErrorCode, FinishReason, StreamEvent, ToolCallDelta, Usage};

/// The `usage` object of a response.
fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_prompt_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
    })
}

/// `status` and `incomplete_details` for how an answer ended: cut by
/// `max_output_tokens` or by a content filter is `incomplete`, saying why.
fn ending(done: &Completion) -> (&'static str, Value) {
    match done.finish_reason {
        FinishReason::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
        FinishReason::ContentFilter => ("incomplete", json!({"reason": "content_filter"})),
        FinishReason::Stop | FinishReason::ToolCalls | FinishReason::Cancelled => {
            ("completed", Value::Null)
        }
    }
}

/// The output item id of the message of response `id`.
fn message_item_id(id: &str) -> String {
    format!("msg_{}", id.trim_start_matches("resp_"))
}

/// The output item id of function call `n` of response `id`.
fn call_item_id(id: &str, n: u32) -> String {
    format!("fc_{}_{n}", id.trim_start_matches("resp_"))
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

fn call_item(id: &str, status: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({
        "id": id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    })
}

/// The `response` object around `output`: the request's settings echoed,
/// nothing stored (`store: false`, `previous_response_id: null`).
fn envelope(
    id: &str,
    created: i64,
    model: &str,
    echo: &Map<String, Value>,
    status: &str,
    output: Vec<Value>,
) -> Value {
    let mut v = json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "model": model,
        "output": output,
        "previous_response_id": null,
        "store": false,
        "truncation": "disabled",
        "usage": null,
    });
    for (k, x) in echo {
        v[k.as_str()] = x.clone();
    }
    v
}

/// The text of every `output_text` part of `output`, joined, as the SDKs'
/// `output_text` gives it.
fn output_text(output: &[Value]) -> String {
    output
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().into_iter().flatten())
        .filter(|p| p["type"] == "output_text")
        .filter_map(|p| p["text"].as_str())
        .collect()
}

/// A complete `response` object: a `message` item with the text (when there
/// is text, or nothing else), then one `function_call` item per call.
pub fn response_json(
    id: &str,
    created: i64,
    model: &str,
    echo: &Map<String, Value>,
    resp: &ChatResponse,
) -> Value {
    let mut output = Vec::new();
    if !resp.text.is_empty() || resp.tool_calls.is_empty() {
        output.push(message_item(
            &message_item_id(id),
            "completed",
            vec![text_part(&resp.text)],
        ));
    }
    for (n, c) in (0u32..).zip(&resp.tool_calls) {
        output.push(call_item(
            &call_item_id(id, n),
            "completed",
            &c.id,
            &c.name,
            &c.arguments,
        ));
    }
    let (status, incomplete) = ending(&resp.done);
    let text = output_text(&output);
    let mut v = envelope(id, created, model, echo, status, output);
    v["incomplete_details"] = incomplete;
    v["usage"] = usage_json(&resp.done.usage);
    v["output_text"] = json!(text);
    v
}

/// An output item being streamed.
#[derive(Debug, Clone)]
enum Open {
    Message {
        text: String,
    },
    Call {
        /// The call's number in this answer, for its item id.
        n: u32,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Writes one Responses event stream as `(event name, data)` pairs: `start`,
/// then `on_event` for each canonical event, or `error` when the answer
/// fails after it started. Every event carries the next `sequence_number`.
#[derive(Debug, Clone)]
pub struct ResponsesStreamEncoder {
    id: String,
    created: i64,
    model: String,
    echo: Map<String, Value>,
    seq: u64,
    /// Finished output items, in order.
    done: Vec<Value>,
    /// The item being streamed, at output index `done.len()`.
    open: Option<Open>,
    /// Function calls started so far, for their item ids.
    calls: u32,
}

impl ResponsesStreamEncoder {
    pub fn new(id: &str, created: i64, model: &str, echo: &Map<String, Value>) -> Self {
        Self {
            id: id.to_owned(),
            created,
            model: model.to_owned(),
            echo: echo.clone(),
            seq: 0,
            done: Vec::new(),
            open: None,
            calls: 0,
        }
    }

    fn event(&mut self, name: &'static str, mut data: Value) -> (&'static str, Value) {
        data["type"] = json!(name);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        (name, data)
    }

    fn response(&self, status: &str) -> Value {
        envelope(
            &self.id,
            self.created,
            &self.model,
            &self.echo,
            status,
            self.done.clone(),
        )
    }

    /// `response.created` and `response.in_progress`.
    pub fn start(&mut self) -> Vec<(&'static str, Value)> {
        let r = self.response("in_progress");
        vec![
            self.event("response.created", json!({"response": r.clone()})),
            self.event("response.in_progress", json!({"response": r})),
        ]
    }

    fn output_index(&self) -> usize {
        self.done.len()
    }

    /// Closes the open item: its `.done` events and `response.output_item.done`.
    fn close(&mut self, out: &mut Vec<(&'static str, Value)>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let index = self.output_index();
        let item = match open {
            Open::Message { text } => {
                let item_id = message_item_id(&self.id);
                out.push(self.event(
                    "response.output_text.done",
                    json!({"item_id": item_id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                ));
                out.push(self.event(
                    "response.content_part.done",
                    json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": text_part(&text)}),
                ));
                message_item(&item_id, "completed", vec![text_part(&text)])
            }
            Open::Call {
                n,
                call_id,
                name,
                arguments,
            } => {
                let item_id = call_item_id(&self.id, n);
                out.push(self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": item_id, "output_index": index, "arguments": arguments}),
                ));
                call_item(&item_id, "completed", &call_id, &name, &arguments)
            }
        };
        out.push(self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ));
        self.done.push(item);
    }

    fn text(&mut self, delta: &str) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if !matches!(self.open, Some(Open::Message { .. })) {
            self.close(&mut out);
            let item_id = message_item_id(&self.id);
            let index = self.output_index();
            out.push(self.event(
                "response.output_item.added",
                json!({"output_index": index, "item": message_item(&item_id, "in_progress", vec![])}),
            ));
            out.push(self.event(
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": text_part("")}),
            ));
            self.open = Some(Open::Message {
                text: String::new(),
            });
        }
        if let Some(Open::Message { text }) = &mut self.open {
            text.push_str(delta);
        }
        let index = self.output_index();
        out.push(self.event(
            "response.output_text.delta",
            json!({"item_id": message_item_id(&self.id), "output_index": index, "content_index": 0, "delta": delta, "logprobs": []}),
        ));
        out
    }

    /// A piece of a tool call. A call's first piece (it carries the id)
    /// closes the open item and adds a `function_call` item; later pieces
    /// are argument deltas of the open call (adapters stream calls one
    /// after another).
    fn tool_call(&mut self, d: &ToolCallDelta) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        if d.id.is_some() || !matches!(self.open, Some(Open::Call { .. })) {
            self.close(&mut out);
            let n = self.calls;
            self.calls += 1;
            let call_id = d.id.clone().unwrap_or_default();
            let name = d.name.clone().unwrap_or_default();
            let index = self.output_index();
            out.push(self.event(
                "response.output_item.added",
                json!({"output_index": index, "item": call_item(&call_item_id(&self.id, n), "in_progress", &call_id, &name, "")}),
            ));
            self.open = Some(Open::Call {
                n,
                call_id,
                name,
                arguments: String::new(),
            });
        }
        if d.arguments.is_empty() {
            return out;
        }
        if let Some(Open::Call { arguments, .. }) = &mut self.open {
            arguments.push_str(&d.arguments);
        }
        let item_id = call_item_id(&self.id, self.calls - 1);
        let index = self.output_index();
        out.push(self.event(
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": index, "delta": d.arguments}),
        ));
        out
    }

    pub fn on_event(&mut self, ev: &StreamEvent) -> Vec<(&'static str, Value)> {
        match ev {
            StreamEvent::Delta(text) => self.text(text),
            StreamEvent::ToolCall(d) => self.tool_call(d),
            // Responses requests cannot ask for log probabilities (`include`
            // values other than encrypted reasoning are refused), so none come.
            StreamEvent::Logprobs(_) => Vec::new(),
            StreamEvent::Done(done) => {
                let mut out = Vec::new();
                if self.done.is_empty() && self.open.is_none() {
                    // An empty answer still has its (empty) message.
                    out.extend(self.text(""));
                }
                self.close(&mut out);
                let (status, incomplete) = ending(done);
                let mut r = self.response(status);
                r["incomplete_details"] = incomplete;
                r["usage"] = usage_json(&done.usage);
                r["output_text"] = json!(output_text(&self.done));
                let name = if status == "completed" {
                    "response.completed"
                } else {
                    "response.incomplete"
                };
                out.push(self.event(name, json!({ "response": r })));
                out
            }
        }
    }

    /// `response.failed`, which ends a stream that failed midway.
    pub fn error(&mut self, code: ErrorCode, message: &str) -> (&'static str, Value) {
        let mut r = self.response("failed");
        r["error"] = json!({"code": code.as_str(), "message": message});
        self.event("response.failed", json!({ "response": r }))
    }
}
