//! What a target can do and what a request needs: tools, JSON schema, vision,
//! embeddings, logprobs and a context window. Routing skips a target that
//! lacks a need exactly as it skips an untrusted target for a confidential
//! request, and dispatch asks the same question of the backend itself, both
//! through [`lacking`], the one place every capability is checked.

use std::fmt;

use crate::config::ProviderKind;

/// One thing a request may need and a target may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Tool calling: tools offered, or tool calls and results in the conversation.
    Tools,
    /// `response_format` with a JSON schema (or JSON mode).
    JsonSchema,
    /// Image inputs.
    Vision,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `logprobs` / `top_logprobs` in the answer.
    Logprobs,
    /// A context window that holds the prompt and the answer's `max_tokens`.
    ContextTokens,
}

impl Capability {
    /// Every capability, in the order they are checked and reported.
    pub const ALL: [Capability; 6] = [
        Capability::Tools,
        Capability::JsonSchema,
        Capability::Vision,
        Capability::Embeddings,
        Capability::Logprobs,
        Capability::ContextTokens,
    ];

    /// The name used in YAML, explanations and error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Tools => "tools",
            Capability::JsonSchema => "json_schema",
            Capability::Vision => "vision",
            Capability::Embeddings => "embeddings",
            Capability::Logprobs => "logprobs",
            Capability::ContextTokens => "context_tokens",
        }
    }

    /// The request field that asks for it, for a 400's `param`: the field
    /// itself where one does (`response_format`, `logprobs`, `tools`), the
    /// messages for images and length, `embeddings` for the endpoint.
    pub fn request_field(self) -> &'static str {
        match self {
            Capability::Tools => "tools",
            Capability::JsonSchema => "response_format",
            Capability::Vision | Capability::ContextTokens => "messages",
            Capability::Embeddings => "embeddings",
            Capability::Logprobs => "logprobs",
        }
    }

    /// The capabilities a route's `when: { needs: [...] }` may name: every one
    /// but the context window, which is a number, not a yes or no.
    pub fn parse_need(s: &str) -> Option<Capability> {
        Capability::ALL
            .into_iter()
            .filter(|c| *c != Capability::ContextTokens)
            .find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one request needs of the target that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    pub tools: bool,
    pub json_schema: bool,
    pub vision: bool,
    pub embeddings: bool,
    pub logprobs: bool,
    /// The smallest context window that holds it: estimated prompt tokens
    /// plus `max_tokens` when set.
    pub context_tokens: Option<u64>,
}

impl Needs {
    /// Whether it needs `cap` (for the context window: any window at all).
    pub fn has(&self, cap: Capability) -> bool {
        match cap {
            Capability::Tools => self.tools,
            Capability::JsonSchema => self.json_schema,
            Capability::Vision => self.vision,
            Capability::Embeddings => self.embeddings,
            Capability::Logprobs => self.logprobs,
            Capability::ContextTokens => self.context_tokens.is_some(),
        }
    }
}

/// What one target can do, resolved once when the config is loaded (built-in
/// facts and `capabilities:` for remote targets, the GGUF and the engine for
/// local ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetCapabilities {
    pub tools: bool,
    pub json_schema: bool,
    pub vision: bool,
    pub embeddings: bool,
    pub logprobs: bool,
    /// The context window in tokens; `None` when unknown, which skips no
    /// request.
    pub context_tokens: Option<u64>,
}

impl TargetCapabilities {
    /// Both at once: what `self` and `other` can each do. Dispatch meets the
    /// configured capabilities with the backend's own.
    pub fn meet(&self, other: &TargetCapabilities) -> TargetCapabilities {
        TargetCapabilities {
            tools: self.tools && other.tools,
            json_schema: self.json_schema && other.json_schema,
            vision: self.vision && other.vision,
            embeddings: self.embeddings && other.embeddings,
            logprobs: self.logprobs && other.logprobs,
            context_tokens: match (self.context_tokens, other.context_tokens) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// The first capability `needs` asks for that `caps` lacks, in
/// [`Capability::ALL`] order, or `None` when the target can serve it. Both
/// sides are taken apart without `..`, so a capability added to either is a
/// compile error here until it is checked.
pub fn lacking(needs: &Needs, caps: &TargetCapabilities) -> Option<Capability> {
    let Needs {
        tools,
        json_schema,
        vision,
        embeddings,
        logprobs,
        context_tokens,
    } = *needs;
    let TargetCapabilities {
        tools: has_tools,
        json_schema: has_json_schema,
        vision: has_vision,
        embeddings: has_embeddings,
        logprobs: has_logprobs,
        context_tokens: window,
    } = *caps;
    let too_small = matches!((context_tokens, window), (Some(n), Some(w)) if n > w);
    [
        (tools && !has_tools, Capability::Tools),
        (json_schema && !has_json_schema, Capability::JsonSchema),
        (vision && !has_vision, Capability::Vision),
        (embeddings && !has_embeddings, Capability::Embeddings),
        (logprobs && !has_logprobs, Capability::Logprobs),
        (too_small, Capability::ContextTokens),
    ]
    .into_iter()
    .find_map(|(lacks, cap)| lacks.then_some(cap))
}

/// What a remote model can do by what is publicly documented of its
/// provider and family; `capabilities:` in the config overrides any of it.
/// `embeddings` is always false here: a remote target embeds only when its
/// config names an embedding model.
pub fn builtin(provider: ProviderKind, model: &str) -> TargetCapabilities {
    let m = model.to_ascii_lowercase();
    let m = m.strip_prefix("models/").unwrap_or(&m);
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| m.starts_with(p));
    match provider {
        ProviderKind::Openai => {
            // The reasoning models (o-series, gpt-5) return no logprobs;
            // gpt-3.5 and the o-series minis before o4 read no images.
            let o_series = starts(&["o1", "o3", "o4"]);
            let blind_mini = starts(&["o1-mini", "o3-mini"]);
            let gpt5 = starts(&["gpt-5"]);
            let gpt41 = starts(&["gpt-4.1"]);
            let gpt4o = starts(&["gpt-4o", "chatgpt-4o"]);
            let gpt4_turbo = starts(&["gpt-4-turbo"]);
            let gpt35 = starts(&["gpt-3.5"]);
            let gpt4_base =
                starts(&["gpt-4"]) && !(gpt41 || gpt4o || gpt4_turbo || starts(&["gpt-4-vision"]));
            TargetCapabilities {
                tools: true,
                json_schema: true,
                // A name this table does not know is taken to be a current
                // model, which reads images; the older ones listed do not.
                vision: !(gpt35 || gpt4_base || blind_mini || starts(&["o1-preview"])),
                embeddings: false,
                logprobs: !o_series && !gpt5,
                context_tokens: if gpt41 {
                    Some(1_047_576)
                } else if gpt5 {
                    Some(400_000)
                } else if starts(&["o1-mini"]) {
                    Some(128_000)
                } else if o_series {
                    Some(200_000)
                } else if gpt4o || gpt4_turbo {
                    Some(128_000)
                } else if gpt35 {
                    Some(16_385)
                } else {
                    None
                },
            }
        }
        ProviderKind::Anthropic => {
            // Claude 3 and later read images and call tools. The Messages
            // API has no logprobs, and this gateway sends no
            // `response_format` to it (JSON through a forced tool is not the
            // schema the client asked for).
            // Claude 2 and Instant are the only ones before 3; a name this
            // table does not know is taken to be a current model.
            let claude3_up = !starts(&["claude-2", "claude-instant"]);
            TargetCapabilities {
                tools: true,
                json_schema: false,
                vision: claude3_up,
                embeddings: false,
                logprobs: false,
                context_tokens: claude3_up.then_some(200_000),
            }
        }
        ProviderKind::Gemini => {
            let modern = starts(&["gemini-2", "gemini-3"]);
            TargetCapabilities {
                tools: true,
                json_schema: true,
                vision: true,
                embeddings: false,
                logprobs: true,
                context_tokens: modern.then_some(1_048_576),
            }
        }
        // Whatever the server runs: tools and JSON schema are widely
        // served (vLLM, llama.cpp's server, SGLang); images and logprobs only
        // where the config says so.
        ProviderKind::OpenaiCompatible => TargetCapabilities {
            tools: true,
            json_schema: true,
            vision: false,
            embeddings: false,
            logprobs: false,
            context_tokens: None,
        },
    }
}

/// A local engine's capabilities before its model is loaded: JSON schema
/// and tool calls through a grammar (unless `tools: false`), logprobs
/// natively, no images. The gateway replaces tool calling with what the
/// engine reports and lowers the window to the GGUF's (`context_tokens` here
/// is the configured one).
pub fn local(context_tokens: u32, embeddings: bool, tools: bool) -> TargetCapabilities {
    TargetCapabilities {
        tools,
        json_schema: true,
        vision: false,
        embeddings,
        logprobs: true,
        context_tokens: Some(u64::from(context_tokens)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> TargetCapabilities {
        TargetCapabilities {
            tools: true,
            json_schema: true,
            vision: true,
            embeddings: true,
            logprobs: true,
            context_tokens: Some(1000),
        }
    }

    #[test]
    fn each_need_is_checked_against_its_capability() {
        let caps = all();
        for cap in Capability::ALL {
            let mut needs = Needs::default();
            let mut lack = caps;
            match cap {
                Capability::Tools => (needs.tools, lack.tools) = (true, false),
                Capability::JsonSchema => (needs.json_schema, lack.json_schema) = (true, false),
                Capability::Vision => (needs.vision, lack.vision) = (true, false),
                Capability::Embeddings => (needs.embeddings, lack.embeddings) = (true, false),
                Capability::Logprobs => (needs.logprobs, lack.logprobs) = (true, false),
                Capability::ContextTokens => needs.context_tokens = Some(1001),
            }
            assert!(needs.has(cap));
            assert_eq!(lacking(&needs, &caps.meet(&lack)), Some(cap), "{cap}");
            if cap != Capability::ContextTokens {
                assert_eq!(lacking(&needs, &caps), None, "{cap}");
            }
        }
        // A window that fits, or one that is unknown, skips nothing.
        let needs = Needs {
            context_tokens: Some(1000),
            ..Needs::default()
        };
        assert_eq!(lacking(&needs, &caps), None);
        let unknown = TargetCapabilities {
            context_tokens: None,
            ..caps
        };
        let big = Needs {
            context_tokens: Some(u64::MAX),
            ..Needs::default()
        };
        assert_eq!(lacking(&big, &unknown), None);
        assert_eq!(unknown.meet(&caps).context_tokens, Some(1000));
    }

    #[test]
    fn names_round_trip_and_the_window_is_no_yes_or_no_need() {
        for cap in Capability::ALL {
            let parsed = Capability::parse_need(cap.as_str());
            assert_eq!(parsed, (cap != Capability::ContextTokens).then_some(cap));
        }
        assert_eq!(Capability::parse_need("telepathy"), None);
    }

    #[test]
    fn builtin_facts_follow_the_providers_documentation() {
        let gpt4o = builtin(ProviderKind::Openai, "gpt-4o-mini");
        assert!(gpt4o.tools && gpt4o.json_schema && gpt4o.vision && gpt4o.logprobs);
        assert_eq!(gpt4o.context_tokens, Some(128_000));
        let o3 = builtin(ProviderKind::Openai, "o3-mini");
        assert!(!o3.logprobs && !o3.vision);
        assert_eq!(o3.context_tokens, Some(200_000));
        let o1_mini = builtin(ProviderKind::Openai, "o1-mini");
        assert_eq!(o1_mini.context_tokens, Some(128_000));
        let o4 = builtin(ProviderKind::Openai, "o4-mini");
        assert!(o4.vision && !o4.logprobs);
        let gpt5 = builtin(ProviderKind::Openai, "gpt-5.4-mini");
        assert!(gpt5.vision && !gpt5.logprobs);
        assert_eq!(gpt5.context_tokens, Some(400_000));
        let claude = builtin(ProviderKind::Anthropic, "claude-sonnet-4-5");
        assert!(claude.tools && claude.vision && !claude.logprobs && !claude.json_schema);
        assert!(builtin(ProviderKind::Openai, "gpt").vision);
        assert!(!builtin(ProviderKind::Openai, "gpt-4-0613").vision);
        assert!(!builtin(ProviderKind::Openai, "gpt-3.5-turbo").vision);
        // A name the table does not know is a current model; Claude 2 is not.
        assert!(builtin(ProviderKind::Anthropic, "claude").vision);
        let claude2 = builtin(ProviderKind::Anthropic, "claude-2.1");
        assert!(!claude2.vision && claude2.context_tokens.is_none());
        let gemini = builtin(ProviderKind::Gemini, "models/gemini-2.5-flash");
        assert!(gemini.logprobs && gemini.vision && gemini.json_schema);
        assert_eq!(gemini.context_tokens, Some(1_048_576));
        let compat = builtin(ProviderKind::OpenaiCompatible, "qwen");
        assert!(compat.tools && compat.json_schema && !compat.vision && !compat.logprobs);
        assert_eq!(compat.context_tokens, None);
    }
}
