//! Validation of a remote target's `capabilities:`: the built-in facts of
//! its provider and model (`crate::capability::builtin`), each one the config
//! sets replacing the fact, refused where the adapter cannot honour it.

use super::raw::RawCapabilities;
use super::validate::{At, Ctx};
use super::{ProviderKind, RemoteSpec};
use crate::capability::TargetCapabilities;
use crate::yaml::join_key;

/// A remote target's capabilities: the built-in facts of its provider and
/// model, each one `capabilities:` sets replaced; it embeds when
/// `embeddings:` names a model.
pub(super) fn remote(
    cx: &mut Ctx<'_>,
    path: &str,
    spec: &RemoteSpec,
    raw: Option<RawCapabilities>,
) -> TargetCapabilities {
    let mut caps = crate::capability::builtin(spec.provider, &spec.model);
    caps.embeddings = spec.embeddings.is_some();
    let Some(RawCapabilities {
        tools,
        json_schema,
        vision,
        logprobs,
        context_tokens,
    }) = raw
    else {
        return caps;
    };
    if json_schema == Some(true) && spec.provider == ProviderKind::Anthropic {
        cx.err(
            &join_key(path, "json_schema"),
            At::Value,
            "anthropic targets cannot take response_format (the Messages API has none)",
        );
    }
    if logprobs == Some(true) && spec.provider == ProviderKind::Anthropic {
        cx.err(
            &join_key(path, "logprobs"),
            At::Value,
            "anthropic targets cannot return logprobs (the Messages API has none)",
        );
    }
    if context_tokens == Some(0) {
        cx.err(
            &join_key(path, "context_tokens"),
            At::Value,
            "context_tokens must be positive",
        );
    }
    caps.tools = tools.unwrap_or(caps.tools);
    caps.json_schema = json_schema.unwrap_or(caps.json_schema);
    caps.vision = vision.unwrap_or(caps.vision);
    caps.logprobs = logprobs.unwrap_or(caps.logprobs);
    caps.context_tokens = context_tokens.or(caps.context_tokens);
    caps
}
