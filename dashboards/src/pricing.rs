//! Token prices (USD per million tokens) with built-in defaults for the models
//! the seed chapter prices, config overrides, effective dates, and the cost of
//! one request's usage.
//!
//! Input and output prices are the chapter's. It gives no cached-input prices,
//! so the defaults assume each provider's usual prompt-cache discount: cached
//! input at 10% of the input price (OpenAI's cached input for GPT-5.x,
//! Anthropic's cache read, Gemini's context-cache read and DeepSeek's cache hit
//! all list 10%). Anthropic's cache-write surcharge is not modelled. Override
//! any of them in the config's `pricing` section.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};
use watershed_providers::Usage;

use crate::error::LedgerError;

/// One set of rates, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
}

/// What a model costs. Some models charge more for every token of a request
/// whose prompt is longer than a threshold (Gemini 3.1 Pro above 200K).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_context: Option<LongContext>,
}

/// Rates that apply to the whole request once the prompt exceeds
/// `above_prompt_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LongContext {
    pub above_prompt_tokens: u64,
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
}

impl Price {
    /// Free: what local models cost here (the fleet's cost is attributed
    /// separately, from engine time).
    pub const ZERO: Price = Price::new(0.0, 0.0, 0.0);

    pub const fn new(input: f64, output: f64, cached_input: f64) -> Self {
        Self {
            input,
            output,
            cached_input,
            long_context: None,
        }
    }

    /// The rates that apply to a request with `prompt_tokens` of prompt.
    pub fn rates_for(&self, prompt_tokens: u64) -> Rates {
        match self.long_context {
            Some(lc) if prompt_tokens > lc.above_prompt_tokens => Rates {
                input: lc.input,
                output: lc.output,
                cached_input: lc.cached_input,
            },
            _ => Rates {
                input: self.input,
                output: self.output,
                cached_input: self.cached_input,
            },
        }
    }

    /// USD for `usage`: cached prompt tokens at the cached rate, the rest of
    /// the prompt at the input rate, completion tokens at the output rate.
    pub fn cost(&self, usage: Usage) -> f64 {
        let prompt = u64::from(usage.prompt_tokens);
        let cached = u64::from(usage.cached_prompt_tokens).min(prompt);
        let r = self.rates_for(prompt);
        ((prompt - cached) as f64 * r.input
            + cached as f64 * r.cached_input
            + f64::from(usage.completion_tokens) * r.output)
            / 1_000_000.0
    }
}

/// A price and the moment (unix ms) from which it applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DatedPrice {
    pub effective_from_ms: i64,
    pub price: Price,
}

/// A price as the config's `pricing` section writes it. `cached_input`
/// defaults to the input price (no discount assumed); `effective_from`
/// (`YYYY-MM-DD`, UTC midnight, or RFC 3339) adds the price from that moment
/// on instead of replacing the model's whole price history.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cached_input: Option<f64>,
    #[serde(default)]
    pub effective_from: Option<String>,
    #[serde(default)]
    pub long_context: Option<LongContext>,
}

/// Prices per canonical model key, each a history ordered by effective date.
#[derive(Debug, Clone)]
pub struct PriceTable {
    models: BTreeMap<String, Vec<DatedPrice>>,
    /// Normalized key -> canonical key, for tolerant lookups.
    normalized: BTreeMap<String, String>,
}

/// Cached input at 10% of input (see the module comment).
const fn p(input: f64, output: f64) -> Price {
    Price::new(input, output, input / 10.0)
}

/// The seed chapter's prices.
fn builtin() -> Vec<(&'static str, Price)> {
    vec![
        ("gpt-5.4", p(2.50, 15.00)),
        ("gpt-5.4-mini", p(0.75, 4.50)),
        ("gpt-5.4-nano", p(0.20, 1.25)),
        ("claude-opus-4.6", p(5.00, 25.00)),
        ("claude-sonnet-4.6", p(3.00, 15.00)),
        ("claude-haiku-4.5", p(1.00, 5.00)),
        (
            "gemini-3.1-pro",
            Price {
                long_context: Some(LongContext {
                    above_prompt_tokens: 200_000,
                    input: 4.00,
                    output: 18.00,
                    cached_input: 0.40,
                }),
                ..p(2.00, 12.00)
            },
        ),
        ("gemini-3-flash", p(0.50, 3.00)),
        ("gemini-2.5-flash-lite", p(0.10, 0.40)),
        ("gemini-3.1-flash-lite", p(0.25, 1.50)),
        ("deepseek-v3.2", Price::new(0.28, 0.42, 0.028)),
        // DeepSeek's API serves V3.2 under these two names.
        ("deepseek-chat", Price::new(0.28, 0.42, 0.028)),
        ("deepseek-reasoner", Price::new(0.28, 0.42, 0.028)),
        // Embedding models: the seed chapter prices none, so these are
        // OpenAI's published list prices (input only; an embedding has no
        // output tokens, and OpenAI lists no cached rate for them).
        ("text-embedding-3-small", Price::new(0.02, 0.0, 0.02)),
        ("text-embedding-3-large", Price::new(0.13, 0.0, 0.13)),
        ("text-embedding-ada-002", Price::new(0.10, 0.0, 0.10)),
    ]
}

/// Lowercase, provider prefix dropped, `.`/`_`/`:`/`@`/space read as `-`.
pub fn normalize(model: &str) -> String {
    let tail = model.rsplit('/').next().unwrap_or(model);
    tail.trim()
        .chars()
        .map(|c| match c {
            '.' | '_' | ':' | '@' | ' ' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Parses `YYYY-MM-DD` (UTC midnight) or RFC 3339 into unix ms.
pub fn parse_date_ms(s: &str) -> Result<i64, LedgerError> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| LedgerError::Invalid(format!("invalid date \"{s}\" (expected YYYY-MM-DD)")))
}

impl Default for PriceTable {
    fn default() -> Self {
        Self::builtin()
    }
}

impl PriceTable {
    /// An empty table (every model unpriced).
    pub fn empty() -> Self {
        Self {
            models: BTreeMap::new(),
            normalized: BTreeMap::new(),
        }
    }

    /// The built-in defaults, in force since the epoch.
    pub fn builtin() -> Self {
        let mut t = Self::empty();
        for (key, price) in builtin() {
            t.set(key, price);
        }
        t
    }

    /// The built-in defaults with the config's overrides applied.
    pub fn with_overrides<I, K>(overrides: I) -> Result<Self, LedgerError>
    where
        I: IntoIterator<Item = (K, PriceOverride)>,
        K: AsRef<str>,
    {
        let mut t = Self::builtin();
        t.apply_overrides(overrides)?;
        Ok(t)
    }

    /// Applies overrides: without `effective_from` the model's price is
    /// replaced outright, with it the price is added from that date on.
    pub fn apply_overrides<I, K>(&mut self, overrides: I) -> Result<(), LedgerError>
    where
        I: IntoIterator<Item = (K, PriceOverride)>,
        K: AsRef<str>,
    {
        for (key, o) in overrides {
            let key = key.as_ref();
            for (what, v) in [
                ("input", Some(o.input)),
                ("output", Some(o.output)),
                ("cached_input", o.cached_input),
            ] {
                if let Some(v) = v {
                    if !v.is_finite() || v < 0.0 {
                        return Err(LedgerError::Invalid(format!(
                            "price {what} of \"{key}\" must be a non-negative number, got {v}"
                        )));
                    }
                }
            }
            let price = Price {
                input: o.input,
                output: o.output,
                cached_input: o.cached_input.unwrap_or(o.input),
                long_context: o.long_context,
            };
            match &o.effective_from {
                None => self.set(key, price),
                Some(d) => self.add_dated(key, parse_date_ms(d)?, price),
            }
        }
        Ok(())
    }

    /// Sets `key`'s price for all time.
    pub fn set(&mut self, key: &str, price: Price) {
        self.models.insert(
            key.to_owned(),
            vec![DatedPrice {
                effective_from_ms: i64::MIN,
                price,
            }],
        );
        self.normalized.insert(normalize(key), key.to_owned());
    }

    /// Adds a price for `key` that applies from `effective_from_ms` on.
    pub fn add_dated(&mut self, key: &str, effective_from_ms: i64, price: Price) {
        let history = self.models.entry(key.to_owned()).or_default();
        history.retain(|d| d.effective_from_ms != effective_from_ms);
        history.push(DatedPrice {
            effective_from_ms,
            price,
        });
        history.sort_by_key(|d| d.effective_from_ms);
        self.normalized.insert(normalize(key), key.to_owned());
    }

    /// The canonical key `model` is priced under: the exact key, else the
    /// normalized form, else the longest canonical key that is a prefix of it
    /// ending at a `-` ("gpt-5.4-mini-2026-03-17" -> "gpt-5.4-mini").
    pub fn resolve(&self, model: &str) -> Option<&str> {
        if let Some((k, _)) = self.models.get_key_value(model) {
            return Some(k.as_str());
        }
        let n = normalize(model);
        if let Some(k) = self.normalized.get(&n) {
            return Some(k.as_str());
        }
        self.normalized
            .iter()
            .filter(|(nk, _)| {
                n.len() > nk.len() && n.starts_with(nk.as_str()) && n[nk.len()..].starts_with('-')
            })
            .max_by_key(|(nk, _)| nk.len())
            .map(|(_, k)| k.as_str())
    }

    /// The price history of `model`, oldest first.
    pub fn history(&self, model: &str) -> Option<&[DatedPrice]> {
        self.resolve(model)
            .and_then(|k| self.models.get(k))
            .map(Vec::as_slice)
    }

    /// The price in force at `ts_ms` (unix ms).
    pub fn price_at(&self, model: &str, ts_ms: i64) -> Option<&Price> {
        self.history(model)?
            .iter()
            .rev()
            .find(|d| d.effective_from_ms <= ts_ms)
            .map(|d| &d.price)
    }

    /// USD for `usage` on `model` at the price in force at `ts_ms`.
    pub fn cost_at(&self, model: &str, ts_ms: i64, usage: Usage) -> Option<f64> {
        self.price_at(model, ts_ms).map(|p| p.cost(usage))
    }

    /// USD for `usage` on `model` at the price in force at `ts_ms`; an
    /// unpriced model costs 0 (and is logged).
    pub fn cost(&self, model: &str, ts_ms: i64, usage: Usage) -> f64 {
        self.cost_for(&[model], ts_ms, usage)
    }

    /// USD for `usage` priced as the first of `candidates` that has a price
    /// (target id, configured model name, the name the backend reported);
    /// 0 when none has one. The price is the one in force at `ts_ms` (the
    /// request's start), so a price change never splits one request.
    pub fn cost_for(&self, candidates: &[&str], ts_ms: i64, usage: Usage) -> f64 {
        match self.try_cost_for(candidates, ts_ms, usage) {
            Some(c) => c,
            None => {
                tracing::debug!(models = ?candidates, "no price for model; costed at 0");
                0.0
            }
        }
    }

    /// [`PriceTable::cost_for`], `None` when no candidate has a price, for
    /// callers that must not take an unpriced request for a free one.
    pub fn try_cost_for(&self, candidates: &[&str], ts_ms: i64, usage: Usage) -> Option<f64> {
        candidates
            .iter()
            .find_map(|m| self.cost_at(m, ts_ms, usage))
    }

    /// Whether any of `candidates` has a price.
    pub fn has_price(&self, candidates: &[&str]) -> bool {
        candidates.iter().any(|m| self.resolve(m).is_some())
    }

    /// Canonical keys with their price histories.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[DatedPrice])> {
        self.models.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u32, completion: u32, cached: u32) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_prompt_tokens: cached,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// The instant prices are asked for: fixed, so no test depends on today.
    fn now() -> i64 {
        parse_date_ms("2026-11-26").unwrap()
    }

    #[test]
    fn builtin_prices_match_the_seed_chapter() {
        let t = PriceTable::builtin();
        let io = |m: &str| {
            let p = t.price_at(m, now()).unwrap();
            (p.input, p.output, p.cached_input)
        };
        assert_eq!(io("gpt-5.4"), (2.50, 15.00, 0.25));
        assert_eq!(io("gpt-5.4-mini"), (0.75, 4.50, 0.075));
        assert_eq!(io("gpt-5.4-nano"), (0.20, 1.25, 0.02));
        assert_eq!(io("text-embedding-3-small"), (0.02, 0.0, 0.02));
        assert_eq!(io("text-embedding-3-large"), (0.13, 0.0, 0.13));
        assert_eq!(io("text-embedding-ada-002"), (0.10, 0.0, 0.10));
        assert_eq!(io("claude-opus-4.6"), (5.0, 25.0, 0.5));
        assert_eq!(io("claude-sonnet-4.6"), (3.0, 15.0, 0.3));
        assert_eq!(io("claude-haiku-4.5"), (1.0, 5.0, 0.1));
        assert_eq!(io("gemini-3.1-pro"), (2.0, 12.0, 0.2));
        assert_eq!(io("gemini-3-flash"), (0.5, 3.0, 0.05));
        assert_eq!(io("gemini-2.5-flash-lite"), (0.10, 0.40, 0.01));
        assert_eq!(io("gemini-3.1-flash-lite"), (0.25, 1.50, 0.025));
        assert_eq!(io("deepseek-v3.2"), (0.28, 0.42, 0.028));
    }

    #[test]
    fn hand_computed_costs() {
        let t = PriceTable::builtin();
        // 1M in + 1M out on Opus: $5 + $25.
        assert!(close(
            t.cost("claude-opus-4.6", now(), usage(1_000_000, 1_000_000, 0)),
            30.0
        ));
        // GPT-5.4 mini: 1200 prompt of which 200 cached, 340 completion:
        // 1000 * 0.75 + 200 * 0.075 + 340 * 4.50 = 750 + 15 + 1530 = 2295 per 1e6.
        assert!(close(
            t.cost("gpt-5.4-mini", now(), usage(1200, 340, 200)),
            0.002295
        ));
        // DeepSeek: 10_000 in, 2_000 out = 2800 + 840 = 3640 per 1e6.
        assert!(close(
            t.cost("deepseek-v3.2", now(), usage(10_000, 2_000, 0)),
            0.00364
        ));
        // More cached than prompt is clamped to the prompt.
        assert!(close(
            t.cost("claude-sonnet-4.6", now(), usage(100, 0, 500)),
            100.0 * 0.3 / 1e6
        ));
        assert!(close(t.cost("gpt-5.4", now(), usage(0, 0, 0)), 0.0));
    }

    #[test]
    fn gemini_pro_charges_long_prompts_at_the_higher_rate() {
        let t = PriceTable::builtin();
        // Exactly 200K is still standard: 200_000 * 2 + 1000 * 12 = 412_000 per 1e6.
        assert!(close(
            t.cost("gemini-3.1-pro", now(), usage(200_000, 1000, 0)),
            0.412
        ));
        // One more token and the whole request is at $4/$18:
        // 200_001 * 4 + 1000 * 18 = 818_004 per 1e6.
        assert!(close(
            t.cost("gemini-3.1-pro", now(), usage(200_001, 1000, 0)),
            0.818004
        ));
        // Cached tokens above the threshold at $0.40:
        // 200_000 * 4 + 100_001 * 0.40 ... (300_001 prompt, 100_001 cached)
        let c = t.cost("gemini-3.1-pro", now(), usage(300_001, 0, 100_001));
        assert!(close(c, (200_000.0 * 4.0 + 100_001.0 * 0.40) / 1e6), "{c}");
    }

    #[test]
    fn tolerant_lookup() {
        let t = PriceTable::builtin();
        let r = |m: &str| t.resolve(m);
        assert_eq!(r("gpt-5.4-mini-2026-03-17"), Some("gpt-5.4-mini"));
        assert_eq!(r("GPT-5.4"), Some("gpt-5.4"));
        assert_eq!(r("gpt-5-4-nano"), Some("gpt-5.4-nano"));
        assert_eq!(r("claude-opus-4-6"), Some("claude-opus-4.6"));
        assert_eq!(r("claude-sonnet-4-6-20260301"), Some("claude-sonnet-4.6"));
        assert_eq!(r("anthropic/claude-haiku-4.5"), Some("claude-haiku-4.5"));
        assert_eq!(r("gemini-3.1-pro-preview"), Some("gemini-3.1-pro"));
        assert_eq!(r("deepseek-chat"), Some("deepseek-chat"));
        // A prefix must end at a separator: "gpt-5.40" is not "gpt-5.4".
        assert_eq!(r("gpt-5.40"), None);
        assert_eq!(r("smollm2-135m-instruct"), None);
        assert_eq!(
            t.cost("smollm2-135m-instruct", now(), usage(10, 10, 0)),
            0.0
        );
        assert_eq!(
            t.cost_at("smollm2-135m-instruct", now(), usage(10, 10, 0)),
            None
        );
        // The first candidate with a price wins.
        assert!(close(
            t.cost_for(&["my-target", "gpt-5.4"], now(), usage(1_000_000, 0, 0)),
            2.5
        ));
    }

    #[test]
    fn the_gemini_apis_own_model_names_find_the_seed_prices() {
        let t = PriceTable::builtin();
        let r = |m: &str| t.resolve(m);
        // As Gemini names them in requests and in `modelVersion`.
        assert_eq!(r("gemini-3-flash-preview"), Some("gemini-3-flash"));
        assert_eq!(r("models/gemini-3.1-pro-preview"), Some("gemini-3.1-pro"));
        assert_eq!(
            r("gemini-3.1-flash-lite-preview"),
            Some("gemini-3.1-flash-lite")
        );
        assert_eq!(r("gemini-2.5-flash-lite"), Some("gemini-2.5-flash-lite"));
        // Not priced by the seed chapter, so not built in (and "flash" is
        // not "flash-lite").
        assert_eq!(r("gemini-2.5-flash"), None);
        assert_eq!(r("gemini-2.5-pro"), None);
        // 1,000 prompt (200 of them cached) and 500 output on Gemini 3 Flash:
        // 800 * 0.50 + 200 * 0.05 + 500 * 3.00 = 400 + 10 + 1500 per 1e6.
        assert!(close(
            t.cost("gemini-3-flash-preview", now(), usage(1000, 500, 200)),
            0.00191
        ));
    }

    #[test]
    fn overrides_replace_or_add_dated_prices() {
        let o: BTreeMap<String, PriceOverride> = serde_json::from_value(serde_json::json!({
            "claude-opus-4.6": { "input": 4.0, "output": 20.0 },
            "my-vllm": { "input": 0.1, "output": 0.2, "cached_input": 0.05 },
            "gpt-5.4": { "input": 2.0, "output": 12.0, "effective_from": "2026-04-01" },
        }))
        .unwrap();
        let t = PriceTable::with_overrides(o).unwrap();
        let opus = t.price_at("claude-opus-4.6", now()).unwrap();
        assert_eq!(
            (opus.input, opus.output, opus.cached_input),
            (4.0, 20.0, 4.0)
        );
        assert!(close(
            t.cost("my-vllm", now(), usage(1000, 1000, 500)),
            0.000275
        ));
        let april = parse_date_ms("2026-04-01").unwrap();
        let before = t.price_at("gpt-5.4", april - 1).unwrap();
        let after = t.price_at("gpt-5.4", april).unwrap();
        assert_eq!((before.input, after.input), (2.5, 2.0));
        assert_eq!(t.history("gpt-5.4").unwrap().len(), 2);

        let bad: BTreeMap<String, PriceOverride> =
            serde_json::from_value(serde_json::json!({ "x": { "input": -1.0, "output": 1.0 } }))
                .unwrap();
        assert!(PriceTable::with_overrides(bad).is_err());
        let unknown: Result<PriceOverride, _> =
            serde_json::from_value(serde_json::json!({ "input": 1.0, "output": 1.0, "inptu": 2 }));
        assert!(unknown.is_err(), "unknown fields are refused");
    }
}
