//! Prometheus metrics under the OpenTelemetry GenAI semantic-convention names
//! (dots become underscores in Prometheus), plus Watershed's cost counters and
//! budget gauges. Rendered in the text exposition format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Buckets the GenAI conventions recommend for durations (seconds).
const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// Buckets the GenAI conventions recommend for token counts.
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Time per output token (seconds).
const TPOT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone)]
struct Histogram {
    buckets: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(buckets: &'static [f64]) -> Self {
        Self {
            buckets,
            counts: vec![0; buckets.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (i, b) in self.buckets.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Inner {
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
    counters: BTreeMap<(&'static str, Labels), f64>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
}

/// One metric family's name, type and help text.
struct Family {
    name: &'static str,
    help: &'static str,
    buckets: &'static [f64],
}

pub const TOKEN_USAGE: &str = "gen_ai_client_token_usage";
pub const CLIENT_DURATION: &str = "gen_ai_client_operation_duration_seconds";
pub const CLIENT_TTFC: &str = "gen_ai_client_operation_time_to_first_chunk_seconds";
pub const SERVER_DURATION: &str = "gen_ai_server_request_duration_seconds";
pub const SERVER_TTFT: &str = "gen_ai_server_time_to_first_token_seconds";
pub const SERVER_TPOT: &str = "gen_ai_server_time_per_output_token_seconds";
pub const COST: &str = "watershed_cost_usd_total";
pub const COUNTERFACTUAL: &str = "watershed_counterfactual_cost_usd_total";
pub const REQUESTS: &str = "watershed_requests_total";
pub const CONFIG_RELOADS: &str = "watershed_config_reloads_total";
pub const SPANS_EXPORTED: &str = "watershed_otel_spans_exported_total";
pub const SPANS_DROPPED: &str = "watershed_otel_spans_dropped_total";
pub const BUDGET_REMAINING: &str = "watershed_budget_remaining_usd";
pub const BUDGET_USED_RATIO: &str = "watershed_budget_used_ratio";
pub const BUDGET_ALERTS: &str = "watershed_budget_alerts_total";
pub const BUDGET_ACTIONS: &str = "watershed_budget_actions_total";
pub const BUDGET_STORE_UP: &str = "watershed_budget_store_up";
pub const BUDGET_EXPIRED: &str = "watershed_budget_reservations_expired_total";
pub const BUDGET_OFFLINE: &str = "watershed_budget_offline_reservations_total";
pub const REDACTIONS: &str = "watershed_redacted_values_total";
pub const PRIVACY_FAIL_CLOSED: &str = "watershed_privacy_fail_closed_total";
pub const UPSTREAM_RETRIES: &str = "watershed_upstream_retries_total";
pub const BREAKER_TRANSITIONS: &str = "watershed_breaker_transitions_total";
pub const BREAKER_STATE: &str = "watershed_breaker_state";
pub const UNPRICED: &str = "watershed_unpriced_requests_total";
pub const POOL_EJECTIONS: &str = "watershed_pool_ejections_total";
pub const POOL_READMISSIONS: &str = "watershed_pool_readmissions_total";
pub const POOL_MEMBER_STATE: &str = "watershed_pool_member_state";
pub const POOL_MEMBER_OUTSTANDING: &str = "watershed_pool_member_outstanding";

const HISTOGRAMS: &[Family] = &[
    Family {
        name: TOKEN_USAGE,
        help: "Tokens used per request (gen_ai.client.token.usage), by token type",
        buckets: TOKEN_BUCKETS,
    },
    Family {
        name: CLIENT_DURATION,
        help: "Duration of calls to remote model APIs (gen_ai.client.operation.duration)",
        buckets: DURATION_BUCKETS,
    },
    Family {
        name: CLIENT_TTFC,
        help: "Time to the first streamed chunk from a remote model API (gen_ai.client.operation.time_to_first_chunk)",
        buckets: DURATION_BUCKETS,
    },
    Family {
        name: SERVER_DURATION,
        help: "Duration of requests served by the in-process engine (gen_ai.server.request.duration)",
        buckets: DURATION_BUCKETS,
    },
    Family {
        name: SERVER_TTFT,
        help: "Time to first token of the in-process engine (gen_ai.server.time_to_first_token)",
        buckets: DURATION_BUCKETS,
    },
    Family {
        name: SERVER_TPOT,
        help: "Time per output token after the first of the in-process engine (gen_ai.server.time_per_output_token)",
        buckets: TPOT_BUCKETS,
    },
];

const COUNTERS: &[(&str, &str)] = &[
    (COST, "Spend in USD, by backend and team"),
    (
        COUNTERFACTUAL,
        "What the same requests would have cost on the all-closed reference model, in USD",
    ),
    (
        REQUESTS,
        "Requests that reached dispatch, by route, backend and status",
    ),
    (CONFIG_RELOADS, "Configuration reloads, by result"),
    (
        BUDGET_ALERTS,
        "Budget windows whose spend reached alert_at, by budget and window",
    ),
    (
        BUDGET_ACTIONS,
        "Requests downgraded or rejected because a budget was exhausted",
    ),
    (
        BUDGET_EXPIRED,
        "Shared budget reservations swept by this replica because nobody settled them within ledger.budgets.reservation_ttl_s",
    ),
    (
        BUDGET_OFFLINE,
        "Reservations made from this replica's last known figures while the shared budget store was unreachable, by outcome (admitted, refused_unknown)",
    ),
    (
        PRIVACY_FAIL_CLOSED,
        "Requests treated as restricted because their classification could not finish (too large, timeout), by reason",
    ),
    (
        UNPRICED,
        "Requests served by a remote target that has no price (costed at 0 in the ledger), by backend",
    ),
    (
        REDACTIONS,
        "Sensitive values replaced by placeholders before leaving the trust boundary, by kind",
    ),
    (
        UPSTREAM_RETRIES,
        "Retries of the same target after a transient failure (429, 5xx, connect error, timeout), by backend",
    ),
    (
        BREAKER_TRANSITIONS,
        "Circuit breaker moves, by backend and the state moved to (open, half_open, closed)",
    ),
    (
        POOL_EJECTIONS,
        "Pool members ejected after failed requests in a row, by backend and member",
    ),
    (
        POOL_READMISSIONS,
        "Pool members brought back by passed health checks, by backend and member",
    ),
    (SPANS_EXPORTED, "Request spans the OTLP collector accepted"),
    (
        SPANS_DROPPED,
        "Request spans not exported, by reason (queue_full, export_failed, rejected, shut_down)",
    ),
];

const GAUGES: &[(&str, &str)] = &[
    (BUDGET_REMAINING, "USD left in a budget period"),
    (BUDGET_USED_RATIO, "Share of a budget period's limit spent"),
    (
        BUDGET_STORE_UP,
        "Whether the shared budget store (PostgreSQL) answers (1) or budgets are enforced from this replica's last known figures (0)",
    ),
    (
        BREAKER_STATE,
        "Circuit breaker state of each remote target: 0 closed, 1 half-open, 2 open",
    ),
    (
        POOL_MEMBER_STATE,
        "State of each pool member: 0 healthy, 1 unhealthy (health checks), 2 ejected (failed requests)",
    ),
    (
        POOL_MEMBER_OUTSTANDING,
        "Requests outstanding on each pool member",
    ),
];

/// The process's metrics. Cheap to update from the request path (one short lock).
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn observe(&self, name: &'static str, labels: Labels, value: f64) {
        let Some(family) = HISTOGRAMS.iter().find(|f| f.name == name) else {
            return;
        };
        self.with(|m| {
            m.histograms
                .entry((name, labels))
                .or_insert_with(|| Histogram::new(family.buckets))
                .observe(value)
        });
    }

    pub fn add(&self, name: &'static str, labels: Labels, value: f64) {
        self.with(|m| *m.counters.entry((name, labels)).or_insert(0.0) += value);
    }

    pub fn set(&self, name: &'static str, labels: Labels, value: f64) {
        self.with(|m| {
            m.gauges.insert((name, labels), value);
        });
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        self.with(|m| {
            let mut out = String::new();
            for f in HISTOGRAMS {
                let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
                let _ = writeln!(out, "# TYPE {} histogram", f.name);
                for ((name, labels), h) in m.histograms.iter().filter(|((n, _), _)| *n == f.name) {
                    for (b, c) in h.buckets.iter().zip(&h.counts) {
                        let le = format_float(*b);
                        let _ =
                            writeln!(out, "{name}_bucket{} {c}", render_labels(labels, Some(&le)));
                    }
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        render_labels(labels, Some("+Inf")),
                        h.count
                    );
                    let _ = writeln!(
                        out,
                        "{name}_sum{} {}",
                        render_labels(labels, None),
                        format_float(h.sum)
                    );
                    let _ = writeln!(
                        out,
                        "{name}_count{} {}",
                        render_labels(labels, None),
                        h.count
                    );
                }
            }
            for (fname, help) in COUNTERS {
                let _ = writeln!(out, "# HELP {fname} {help}");
                let _ = writeln!(out, "# TYPE {fname} counter");
                for ((_, labels), v) in m.counters.iter().filter(|((n, _), _)| n == fname) {
                    let _ = writeln!(
                        out,
                        "{fname}{} {}",
                        render_labels(labels, None),
                        format_float(*v)
                    );
                }
            }
            for (fname, help) in GAUGES {
                let _ = writeln!(out, "# HELP {fname} {help}");
                let _ = writeln!(out, "# TYPE {fname} gauge");
                for ((_, labels), v) in m.gauges.iter().filter(|((n, _), _)| n == fname) {
                    let _ = writeln!(
                        out,
                        "{fname}{} {}",
                        render_labels(labels, None),
                        format_float(*v)
                    );
                }
            }
            out
        })
    }
}

fn format_float(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_rendered_with_labels() {
        let m = Metrics::default();
        let l = || vec![("gen_ai_token_type", "input".to_owned())];
        m.observe(TOKEN_USAGE, l(), 3.0);
        m.observe(TOKEN_USAGE, l(), 100.0);
        let text = m.render();
        assert!(
            text.contains(
                "gen_ai_client_token_usage_bucket{gen_ai_token_type=\"input\",le=\"4.0\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "gen_ai_client_token_usage_bucket{gen_ai_token_type=\"input\",le=\"256.0\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("gen_ai_client_token_usage_sum{gen_ai_token_type=\"input\"} 103.0"),
            "{text}"
        );
        assert!(
            text.contains("gen_ai_client_token_usage_count{gen_ai_token_type=\"input\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.add(COST, vec![("team", "a\"b".to_owned())], 1.5);
        assert!(m
            .render()
            .contains("watershed_cost_usd_total{team=\"a\\\"b\"} 1.5"));
    }
}
