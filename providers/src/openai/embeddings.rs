//! The OpenAI embeddings wire format: validating what clients send to
//! `POST /v1/embeddings` ([`parse_embeddings_request`]), the body sent to an
//! upstream's `POST {base}/embeddings` and its answer read back, and the
//! answer in OpenAI's exact shape ([`embeddings_response_json`]), floats or
//! base64 (little-endian f32, as OpenAI encodes them).

use serde_json::{json, Value};

use crate::remote::RemoteTarget;
use crate::{ChatRequest, EmbeddingInput, EmbeddingParams, Embeddings, ProviderError};

/// How the client wants its vectors written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodingFormat {
    #[default]
    Float,
    /// The f32 values' little-endian bytes, base64.
    Base64,
}

fn bad(message: impl Into<String>, param: &str) -> ProviderError {
    ProviderError::bad_request(message, Some(param))
}

/// Reads an embeddings body into the canonical request (its `embedding` set,
/// no messages) and the encoding the answer is to use. `max_inputs` caps how
/// many inputs one request may carry (`server.max_embedding_inputs`).
pub fn parse_embeddings_request(
    body: &Value,
    max_inputs: usize,
) -> Result<(ChatRequest, EncodingFormat), ProviderError> {
    let obj = body
        .as_object()
        .ok_or_else(|| bad("the body must be a JSON object", "body"))?;
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        Some(Value::String(_)) => return Err(bad("model must not be empty", "model")),
        Some(_) => return Err(bad("model must be a string", "model")),
        None => return Err(bad("missing field \"model\"", "model")),
    };
    let inputs = match obj.get("input") {
        None => return Err(bad("missing field \"input\"", "input")),
        Some(v) => inputs(v, max_inputs)?,
    };
    let format = match obj.get("encoding_format") {
        None | Some(Value::Null) => EncodingFormat::Float,
        Some(Value::String(s)) if s == "float" => EncodingFormat::Float,
        Some(Value::String(s)) if s == "base64" => EncodingFormat::Base64,
        Some(other) => {
            return Err(bad(
                format!("encoding_format must be \"float\" or \"base64\", not {other}"),
                "encoding_format",
            ))
        }
    };
    let dimensions = match obj.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n > 0 => Some(n),
            _ => {
                return Err(bad(
                    format!("dimensions must be a positive integer, not {v}"),
                    "dimensions",
                ))
            }
        },
    };
    let user = match obj.get("user") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(u.clone()),
        Some(_) => return Err(bad("user must be a string", "user")),
    };
    let req = ChatRequest {
        model,
        user,
        embedding: Some(EmbeddingParams { inputs, dimensions }),
        ..ChatRequest::default()
    };
    Ok((req, format))
}

/// `input`: a string, a list of strings, a token array or a list of them.
fn inputs(v: &Value, max_inputs: usize) -> Result<Vec<EmbeddingInput>, ProviderError> {
    let items = match v {
        Value::String(s) => {
            if s.is_empty() {
                return Err(bad("input must not be an empty string", "input"));
            }
            return Ok(vec![EmbeddingInput::Text(s.clone())]);
        }
        Value::Array(a) => a,
        other => {
            return Err(bad(
                format!(
                    "input must be a string, a list of strings, a token array or a list of token arrays, not {}",
                    kind(other)
                ),
                "input",
            ))
        }
    };
    if items.is_empty() {
        return Err(bad("input must not be an empty list", "input"));
    }
    // A flat list of integers is one token array.
    if items.iter().all(Value::is_number) {
        return Ok(vec![EmbeddingInput::Tokens(tokens(items, None)?)]);
    }
    if items.len() > max_inputs {
        return Err(bad(
            format!(
                "input has {} items; at most {max_inputs} are accepted in one request",
                items.len()
            ),
            "input",
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) if s.is_empty() => {
                Err(bad(format!("input[{i}] is an empty string"), "input"))
            }
            Value::String(s) => Ok(EmbeddingInput::Text(s.clone())),
            Value::Array(a) if a.is_empty() => {
                Err(bad(format!("input[{i}] is an empty token array"), "input"))
            }
            Value::Array(a) => Ok(EmbeddingInput::Tokens(tokens(a, Some(i))?)),
            other => Err(bad(
                format!(
                    "input[{i}] must be a string or a token array, not {}",
                    kind(other)
                ),
                "input",
            )),
        })
        .collect()
}

fn tokens(items: &[Value], at: Option<usize>) -> Result<Vec<u32>, ProviderError> {
    items
        .iter()
        .enumerate()
        .map(|(j, t)| {
            t.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    let place = match at {
                        Some(i) => format!("input[{i}][{j}]"),
                        None => format!("input[{j}]"),
                    };
                    bad(
                        format!("{place} must be a token id (an integer from 0), not {t}"),
                        "input",
                    )
                })
        })
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The body sent to `{base}/embeddings`. Vectors are always asked for as
/// floats: the gateway encodes base64 itself, so every target's answer is
/// read the same way.
pub(crate) fn upstream_body(model: &str, req: &ChatRequest) -> Value {
    let mut body = json!({"model": model, "encoding_format": "float"});
    if let Some(p) = &req.embedding {
        let input: Vec<Value> = p
            .inputs
            .iter()
            .map(|i| match i {
                EmbeddingInput::Text(t) => json!(t),
                EmbeddingInput::Tokens(ids) => json!(ids),
            })
            .collect();
        body["input"] = Value::Array(input);
        if let Some(d) = p.dimensions {
            body["dimensions"] = json!(d);
        }
    }
    if let Some(u) = &req.user {
        body["user"] = json!(u);
    }
    body
}

/// Reads an upstream's embeddings answer: `data[i].embedding` placed by
/// `index`, one per input.
pub(crate) fn parse_upstream(
    t: &RemoteTarget,
    fallback_model: &str,
    inputs: usize,
    answer: &Value,
) -> Result<Embeddings, ProviderError> {
    let protocol = |why: String| ProviderError::Protocol {
        target: t.target.clone(),
        message: why,
    };
    let data = answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| protocol("embeddings answer without data".to_owned()))?;
    if data.len() != inputs {
        return Err(protocol(format!(
            "embeddings answer has {} vectors for {inputs} inputs",
            data.len()
        )));
    }
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for (pos, item) in data.iter().enumerate() {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .map_or(pos, |i| usize::try_from(i).unwrap_or(usize::MAX));
        let v = item
            .get("embedding")
            .and_then(Value::as_array)
            .ok_or_else(|| protocol(format!("data[{pos}] has no embedding list")))?;
        let floats = v
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| protocol(format!("data[{pos}].embedding holds a non-number")))?;
        match vectors.get_mut(index) {
            Some(slot @ None) => *slot = Some(floats),
            _ => return Err(protocol(format!("data[{pos}] has a bad or repeated index"))),
        }
    }
    let prompt_tokens = answer
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
    Ok(Embeddings {
        model: answer
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(fallback_model)
            .to_owned(),
        vectors: vectors.into_iter().flatten().collect(),
        prompt_tokens,
        engine_seconds: None,
    })
}

/// The answer to the client, in OpenAI's shape.
pub fn embeddings_response_json(e: &Embeddings, format: EncodingFormat) -> Value {
    let data: Vec<Value> = e
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = match format {
                EncodingFormat::Float => json!(v),
                EncodingFormat::Base64 => json!(base64_f32(v)),
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": e.model,
        "usage": {"prompt_tokens": e.prompt_tokens, "total_tokens": e.prompt_tokens},
    })
}

/// Standard base64 (with padding) of the values' little-endian bytes.
pub fn base64_f32(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let idx = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (k, i) in idx.iter().enumerate() {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[*i as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<(ChatRequest, EncodingFormat), ProviderError> {
        parse_embeddings_request(&v, 4)
    }

    fn param(e: ProviderError) -> (String, Option<String>) {
        match e {
            ProviderError::BadRequest { message, param } => (message, param),
            other => panic!("not a bad request: {other:?}"),
        }
    }

    #[test]
    fn every_input_shape_is_read() {
        let (r, f) = parse(json!({"model": "m", "input": "hello"})).unwrap();
        assert_eq!(f, EncodingFormat::Float);
        let p = r.embedding.unwrap();
        assert_eq!(p.inputs, vec![EmbeddingInput::Text("hello".into())]);
        let (r, f) = parse(json!({"model": "m", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 8, "user": "u"})).unwrap();
        assert_eq!(f, EncodingFormat::Base64);
        assert_eq!(r.user.as_deref(), Some("u"));
        let p = r.embedding.unwrap();
        assert_eq!(p.inputs.len(), 2);
        assert_eq!(p.dimensions, Some(8));
        let (r, _) = parse(json!({"model": "m", "input": [1, 2, 3]})).unwrap();
        assert_eq!(
            r.embedding.unwrap().inputs,
            vec![EmbeddingInput::Tokens(vec![1, 2, 3])]
        );
        let (r, _) = parse(json!({"model": "m", "input": [[1], [2, 3]]})).unwrap();
        assert_eq!(r.embedding.unwrap().inputs.len(), 2);
    }

    #[test]
    fn bad_input_is_refused_naming_the_field() {
        for (body, field, words) in [
            (json!({"input": "x"}), "model", "missing"),
            (json!({"model": "m"}), "input", "missing"),
            (json!({"model": "m", "input": ""}), "input", "empty"),
            (json!({"model": "m", "input": []}), "input", "empty list"),
            (
                json!({"model": "m", "input": ["a", ""]}),
                "input",
                "input[1]",
            ),
            (
                json!({"model": "m", "input": ["a", 3.5]}),
                "input",
                "input[1]",
            ),
            (json!({"model": "m", "input": 7}), "input", "a number"),
            (
                json!({"model": "m", "input": [[1], [-1]]}),
                "input",
                "input[1][0]",
            ),
            (
                json!({"model": "m", "input": ["a", "b", "c", "d", "e"]}),
                "input",
                "at most 4",
            ),
            (
                json!({"model": "m", "input": "a", "encoding_format": "int8"}),
                "encoding_format",
                "int8",
            ),
            (
                json!({"model": "m", "input": "a", "dimensions": 0}),
                "dimensions",
                "positive",
            ),
            (
                json!({"model": "m", "input": "a", "user": 3}),
                "user",
                "string",
            ),
        ] {
            let (msg, p) = param(parse(body.clone()).unwrap_err());
            assert_eq!(p.as_deref(), Some(field), "{body}: {msg}");
            assert!(msg.contains(words), "{body}: {msg}");
        }
    }

    #[test]
    fn base64_is_little_endian_f32_as_openai_writes_it() {
        // 1.0f32 = 00 00 80 3f; -2.5f32 = 00 00 20 c0.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, -2.5]), "AACAPwAAIMA=");
        assert_eq!(base64_f32(&[]), "");
        let e = Embeddings {
            model: "m".into(),
            vectors: vec![vec![1.0], vec![0.5]],
            prompt_tokens: 3,
            engine_seconds: None,
        };
        let v = embeddings_response_json(&e, EncodingFormat::Base64);
        assert_eq!(v["data"][0]["embedding"], "AACAPw==");
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["usage"]["total_tokens"], 3);
        assert_eq!(v["object"], "list");
    }

    #[test]
    fn the_upstream_answer_is_placed_by_index() {
        let t = RemoteTarget::new("t", crate::BackendKind::Openai, "http://x/v1", "m");
        let answer = json!({"data": [
            {"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}
        ], "model": "emb", "usage": {"prompt_tokens": 5, "total_tokens": 5}});
        let e = parse_upstream(&t, "m", 2, &answer).unwrap();
        assert_eq!(e.vectors, vec![vec![1.0], vec![2.0]]);
        assert_eq!(e.prompt_tokens, 5);
        assert!(parse_upstream(&t, "m", 3, &answer).is_err());
    }
}
