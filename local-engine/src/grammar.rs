//! `response_format` to a llama.cpp GBNF grammar. JSON schemas go through
//! llama.cpp's own converter (the one `llama-server` uses); `json_object` is the
//! schema `{"type":"object"}`, as in `llama-server`.

use watershed_providers::{ProviderError, ResponseFormat};

/// A grammar for the sampler: applied from the first token, or, when lazy,
/// only from the first occurrence of `trigger` on (llama.cpp's lazy grammar).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grammar {
    pub gbnf: String,
    pub trigger: Option<String>,
    /// The request field the grammar comes from, for error messages.
    pub field: &'static str,
}

/// The grammar for a response format, or `None` when output is free text.
pub(crate) fn for_format(
    format: Option<&ResponseFormat>,
) -> Result<Option<Grammar>, ProviderError> {
    let schema = match format {
        None | Some(ResponseFormat::Text) => return Ok(None),
        Some(ResponseFormat::JsonObject) => serde_json::json!({"type": "object"}),
        Some(ResponseFormat::JsonSchema { schema, .. }) => schema.clone(),
    };
    let text = schema.to_string();
    llama_cpp_2::json_schema_to_grammar(&text)
        .map(|gbnf| {
            Some(Grammar {
                gbnf,
                trigger: None,
                field: "response_format",
            })
        })
        .map_err(|e| {
            ProviderError::bad_request(
                format!("response_format.json_schema cannot be turned into a grammar: {e}"),
                Some("response_format"),
            )
        })
}
