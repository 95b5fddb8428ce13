//! Readers of the streams the gateway writes, shared by the end-to-end
//! tests: OpenAI chunks and the one tool call an OpenAI or Anthropic stream
//! makes, assembled from its pieces.

#![allow(clippy::unwrap_used)] // test support fails loudly by design

use serde_json::Value;

/// The `data:` payloads of an OpenAI stream, `[DONE]` excluded.
pub fn openai_chunks(sse: &str) -> Vec<Value> {
    let datas: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(datas.last(), Some(&"[DONE]"), "{sse}");
    datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// The one tool call an OpenAI stream makes, assembled from its pieces:
/// (id, name, arguments, finish reason).
pub fn openai_streamed_call(sse: &str) -> (String, String, String, String) {
    let (mut id, mut name, mut args, mut finish) =
        (String::new(), String::new(), String::new(), String::new());
    for c in openai_chunks(sse) {
        let Some(choice) = c["choices"].get(0) else {
            continue;
        };
        if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
            for call in calls {
                assert_eq!(call["index"], 0, "{call}");
                if let Some(s) = call["id"].as_str() {
                    id = s.to_owned();
                    assert_eq!(call["type"], "function");
                }
                if let Some(s) = call["function"]["name"].as_str() {
                    name = s.to_owned();
                }
                args.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = f.to_owned();
        }
    }
    (id, name, args, finish)
}

/// The one tool_use an Anthropic stream makes: (id, name, input JSON text,
/// stop reason).
pub fn anthropic_streamed_call(sse: &str) -> (String, String, String, String) {
    let (mut id, mut name, mut args, mut stop) =
        (String::new(), String::new(), String::new(), String::new());
    let mut names = Vec::new();
    for block in sse.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let event = block
            .lines()
            .find_map(|l| l.strip_prefix("event: "))
            .unwrap();
        let data: Value = serde_json::from_str(
            block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(data["type"], event, "{block}");
        names.push(event.to_owned());
        match event {
            "content_block_start" if data["content_block"]["type"] == "tool_use" => {
                id = data["content_block"]["id"].as_str().unwrap().to_owned();
                name = data["content_block"]["name"].as_str().unwrap().to_owned();
            }
            "content_block_delta" if data["delta"]["type"] == "input_json_delta" => {
                args.push_str(data["delta"]["partial_json"].as_str().unwrap());
            }
            "message_delta" => stop = data["delta"]["stop_reason"].as_str().unwrap().to_owned(),
            _ => {}
        }
    }
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    (id, name, args, stop)
}
