//! Metering of one dispatched request: timing, tokens and cost, ending in exactly
//! one ledger record and one trace span — also when the client goes away
//! mid-answer, because both are written when the meter is dropped if nothing
//! else wrote them.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use watershed_dashboards::clock::SharedClock;
use watershed_dashboards::ledger::{LedgerHandle, LedgerRecord};
use watershed_dashboards::pricing::PriceTable;
use watershed_providers::{BackendKind, Completion, ErrorCode, Usage};

use crate::breaker::BreakerState;
use crate::budget::{BudgetBook, Reservation};
use crate::error::status_of;
use crate::metrics::{self, Metrics};
use crate::otlp::{Span, SpanKind, Status, StatusCode};
use crate::pool::Member;
use crate::state::TargetHandle;
use crate::telemetry::{
    bool_attr, f64_attr, int_attr, new_span_id, str_array_attr, str_attr, TraceContext, Traces,
};

/// What is known about a request before any backend is tried.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub request_id: String,
    pub ts_ms: i64,
    pub team: String,
    pub key_id: String,
    pub route: String,
    pub privacy: String,
    pub stream: bool,
    pub difficulty: Option<f64>,
    /// Rough prompt size, used for the record of a request that never got usage.
    pub estimated_prompt_tokens: u32,
    pub counterfactual_model: Option<String>,
    /// What the owned GPU fleet costs per second of engine time (`fleet:` in
    /// the config: gpus × gpu_hour_usd / 3600), 0 without a fleet.
    pub fleet_usd_per_engine_second: f64,
    /// The model name the client asked for.
    pub requested_model: String,
    /// The request's `max_tokens` and `temperature`, for its span.
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    /// The trace the request's span belongs to.
    pub trace: TraceContext,
    /// The decision's explanation as JSON (no values), kept in the ledger.
    pub explanation: Option<String>,
}

/// The budget money set aside for a request, settled when its record is written.
#[derive(Debug)]
pub struct BudgetHold {
    pub reservation: Reservation,
    pub book: Arc<BudgetBook>,
    pub config: Arc<watershed_policies::Config>,
    /// The application's clock: the settle time and the gauges' windows.
    pub clock: SharedClock,
}

#[derive(Debug)]
pub struct Meter {
    info: RequestInfo,
    ledger: LedgerHandle,
    prices: Arc<PriceTable>,
    metrics: Arc<Metrics>,
    traces: Traces,
    started: Instant,
    /// `started` on the wall clock, the span's start time.
    started_unix_nanos: u64,
    first_token_ms: Option<f64>,
    deltas: u32,
    backend: Option<Arc<TargetHandle>>,
    /// The pool member the last attempt went to, when the backend is a pool.
    member: Option<Arc<Member>>,
    attempts: u32,
    /// Targets dispatch passed over, with why (`"circuit open"`), added to the
    /// record's explanation.
    skipped: Vec<(String, &'static str)>,
    written: bool,
    budget: Option<BudgetHold>,
}

/// What a finished request cost, for the response headers.
#[derive(Debug, Clone, Copy)]
pub struct Charged {
    pub cost_usd: f64,
}

impl Meter {
    pub fn start(
        info: RequestInfo,
        ledger: LedgerHandle,
        prices: Arc<PriceTable>,
        metrics: Arc<Metrics>,
        traces: Traces,
    ) -> Self {
        let started_unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self {
            info,
            ledger,
            prices,
            metrics,
            traces,
            started: Instant::now(),
            started_unix_nanos,
            first_token_ms: None,
            deltas: 0,
            backend: None,
            member: None,
            attempts: 0,
            skipped: Vec::new(),
            written: false,
            budget: None,
        }
    }

    /// Settles `hold` with this request's cost on paid targets when its record
    /// is written (or releases it if nothing was spent).
    pub fn hold_budget(&mut self, hold: BudgetHold) {
        self.budget = Some(hold);
    }

    /// Records which target is being tried; the last one tried is the record's backend.
    pub fn attempt(&mut self, target: &Arc<TargetHandle>) {
        self.attempts += 1;
        self.backend = Some(target.clone());
        self.member = None;
    }

    /// Records which member of the pool being tried serves the attempt; the
    /// record's explanation names it (`pool_member`), as does the span.
    pub fn member(&mut self, member: &Arc<Member>) {
        self.member = Some(member.clone());
    }

    /// The metrics this request counts in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The request id, for log lines about this request.
    pub fn request_id(&self) -> &str {
        &self.info.request_id
    }

    /// Counts a retry on `target` (`retry` is 1 for the first).
    pub fn retried(&self, target: &TargetHandle, retry: u32) {
        self.metrics.add(
            crate::metrics::UPSTREAM_RETRIES,
            vec![("backend", target.id.clone())],
            1.0,
        );
        tracing::info!(request_id = %self.info.request_id, backend = %target.id, retry, "retrying the same target");
    }

    /// Records that dispatch passed over `target` and why.
    pub fn skipped(&mut self, target: &TargetHandle, reason: &'static str) {
        self.skipped.push((target.id.clone(), reason));
    }

    /// Counts a breaker's move to `to` and logs it.
    pub fn breaker_moved(&self, target: &TargetHandle, to: BreakerState) {
        self.metrics.add(
            crate::metrics::BREAKER_TRANSITIONS,
            vec![
                ("backend", target.id.clone()),
                ("to", to.as_str().to_owned()),
            ],
            1.0,
        );
        tracing::warn!(request_id = %self.info.request_id, backend = %target.id, state = to.as_str(), "circuit breaker moved");
    }

    /// The decision's explanation with the targets dispatch skipped.
    fn explanation(&self) -> Option<String> {
        let text = self.info.explanation.as_ref()?;
        if self.skipped.is_empty() && self.member.is_none() {
            return Some(text.clone());
        }
        let mut v: serde_json::Value = serde_json::from_str(text).ok()?;
        if !self.skipped.is_empty() {
            v["dispatch_skipped"] = self
                .skipped
                .iter()
                .map(|(t, why)| serde_json::json!({"target": t, "reason": why}))
                .collect();
        }
        if let Some(m) = &self.member {
            v["pool_member"] = serde_json::Value::String(m.name.clone());
        }
        Some(v.to_string())
    }

    /// The target tried last, if any was.
    pub fn backend_id(&self) -> Option<&str> {
        self.backend.as_ref().map(|b| b.id.as_str())
    }

    /// Called for every streamed piece of text.
    pub fn delta(&mut self) {
        if self.first_token_ms.is_none() {
            self.first_token_ms = Some(self.elapsed_ms());
        }
        self.deltas += 1;
    }

    pub fn estimated_prompt_tokens(&self) -> u32 {
        self.info.estimated_prompt_tokens
    }

    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// The answer completed.
    pub fn success(mut self, done: &Completion) -> Charged {
        let cost_usd = match &self.backend {
            // A local answer costs its share of the fleet's time: the engine
            // splits each step's wall time among the sequences in it.
            Some(b) if b.kind == BackendKind::Local => {
                done.engine_seconds.unwrap_or(0.0) * self.info.fleet_usd_per_engine_second
            }
            _ => self.cost(&done.model, done.usage),
        };
        let counterfactual_usd = self.counterfactual(done.usage);
        let mut rec = self.base_record();
        rec.model = done.model.clone();
        rec.prompt_tokens = i64::from(done.usage.prompt_tokens);
        rec.completion_tokens = i64::from(done.usage.completion_tokens);
        rec.cached_tokens = i64::from(done.usage.cached_prompt_tokens);
        rec.cost_usd = cost_usd;
        rec.counterfactual_usd = counterfactual_usd;
        rec.engine_seconds = done.engine_seconds.unwrap_or(0.0);
        rec.status = 200;
        rec.finish_reason = Some(done.finish_reason.as_str().to_owned());
        self.write(rec);
        Charged { cost_usd }
    }

    /// The request failed with `code` after reaching dispatch.
    pub fn failure(mut self, code: ErrorCode) {
        let mut rec = self.base_record();
        rec.status = i64::from(status_of(code).as_u16());
        rec.error_code = Some(code.as_str().to_owned());
        if self.first_token_ms.is_some() {
            // The client already had text: the record says the failure cut
            // a started answer, not one that never began.
            rec.explanation = rec.explanation.and_then(|text| {
                let mut v: serde_json::Value = serde_json::from_str(&text).ok()?;
                v["failed_after_first_token"] = serde_json::Value::Bool(true);
                Some(v.to_string())
            });
        }
        self.write(rec);
    }

    fn base_record(&self) -> LedgerRecord {
        let backend = self.backend.as_ref();
        LedgerRecord {
            request_id: self.info.request_id.clone(),
            ts_ms: self.info.ts_ms,
            team: self.info.team.clone(),
            key_id: self.info.key_id.clone(),
            route: self.info.route.clone(),
            backend: backend.map(|b| b.id.clone()).unwrap_or_default(),
            backend_kind: backend
                .map(|b| b.kind.otel_name().to_owned())
                .unwrap_or_default(),
            model: backend.map(|b| b.model_name.clone()).unwrap_or_default(),
            privacy: self.info.privacy.clone(),
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cost_usd: 0.0,
            counterfactual_usd: 0.0,
            engine_seconds: 0.0,
            ttft_ms: self.first_token_ms,
            latency_ms: self.elapsed_ms(),
            status: 0,
            error_code: None,
            finish_reason: None,
            stream: self.info.stream,
            attempts: i64::from(self.attempts),
            difficulty: self.info.difficulty,
            explanation: self.explanation(),
        }
    }

    fn cost(&self, model: &str, usage: Usage) -> f64 {
        match &self.backend {
            Some(b) if b.kind == BackendKind::Local => 0.0,
            Some(b) => {
                let candidates = [b.id.as_str(), b.model_name.as_str(), model];
                match self
                    .prices
                    .try_cost_for(&candidates, self.info.ts_ms, usage)
                {
                    Some(c) => c,
                    // Not free: unknown. Counted, so a dashboard at $0 can be
                    // told from one that is missing a price.
                    None => {
                        self.metrics
                            .add(metrics::UNPRICED, vec![("backend", b.id.clone())], 1.0);
                        0.0
                    }
                }
            }
            None => 0.0,
        }
    }

    fn counterfactual(&self, usage: Usage) -> f64 {
        match &self.info.counterfactual_model {
            Some(m) => self.prices.cost_for(&[m.as_str()], self.info.ts_ms, usage),
            None => 0.0,
        }
    }

    fn write(&mut self, rec: LedgerRecord) {
        self.written = true;
        if let Some(hold) = self.budget.take() {
            // Budgets count money spent on paid targets; the local fleet is paid
            // for whether it is used or not.
            let paid = if rec.backend_kind == BackendKind::Local.otel_name() {
                0.0
            } else {
                rec.cost_usd
            };
            let now = hold.clock.now();
            hold.reservation.settle(paid, now);
            hold.book.publish(&hold.config, &self.metrics, now);
        }
        self.observe(&rec);
        self.trace(&rec);
        self.ledger.record(rec);
    }

    /// The request's span under the GenAI conventions, from the same record the
    /// ledger gets: `chat {model}`, CLIENT for a remote API, INTERNAL for the
    /// in-process engine (and for a request no target could take), ending now.
    fn trace(&self, rec: &LedgerRecord) {
        if !self.traces.enabled() || !self.info.trace.sampled {
            return;
        }
        let info = &self.info;
        let backend = self.backend.as_ref();
        let remote = backend.is_some_and(|b| b.kind != BackendKind::Local);
        let mut attrs = vec![
            str_attr("gen_ai.operation.name", "chat"),
            str_attr("gen_ai.request.model", info.requested_model.clone()),
        ];
        if let Some(b) = backend {
            attrs.push(str_attr("gen_ai.provider.name", b.kind.otel_name()));
            let server = match &self.member {
                Some(m) => &m.server,
                None => &b.server,
            };
            if let Some((host, port)) = server {
                attrs.push(str_attr("server.address", host.clone()));
                attrs.push(int_attr("server.port", i64::from(*port)));
            }
        }
        if let Some(n) = info.max_tokens {
            attrs.push(int_attr("gen_ai.request.max_tokens", i64::from(n)));
        }
        if let Some(t) = info.temperature {
            attrs.push(f64_attr("gen_ai.request.temperature", f64::from(t)));
        }
        if rec.status == 200 {
            attrs.push(str_attr("gen_ai.response.model", rec.model.clone()));
        }
        if rec.status == 200 || rec.prompt_tokens + rec.completion_tokens > 0 {
            attrs.push(int_attr("gen_ai.usage.input_tokens", rec.prompt_tokens));
            attrs.push(int_attr(
                "gen_ai.usage.output_tokens",
                rec.completion_tokens,
            ));
        }
        if let Some(reason) = &rec.finish_reason {
            attrs.push(str_array_attr(
                "gen_ai.response.finish_reasons",
                vec![reason.clone()],
            ));
        }
        if let Some(code) = &rec.error_code {
            attrs.push(str_attr("error.type", code.clone()));
        }
        attrs.extend([
            str_attr("watershed.request_id", rec.request_id.clone()),
            str_attr("watershed.route", rec.route.clone()),
            str_attr("watershed.privacy", rec.privacy.clone()),
            str_attr("watershed.backend", rec.backend.clone()),
            str_attr("watershed.team", rec.team.clone()),
            int_attr("watershed.attempts", rec.attempts),
            f64_attr("watershed.cost_usd", rec.cost_usd),
            f64_attr("watershed.counterfactual_usd", rec.counterfactual_usd),
            bool_attr("watershed.stream", rec.stream),
            int_attr("watershed.status", rec.status),
        ]);
        if let Some(m) = &self.member {
            attrs.push(str_attr("watershed.pool_member", m.name.clone()));
        }
        if let Some(d) = rec.difficulty {
            attrs.push(f64_attr("watershed.difficulty", d));
        }
        if let Some(ttft) = rec.ttft_ms {
            attrs.push(f64_attr("watershed.ttft_ms", ttft));
        }
        let elapsed = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let status = match &rec.error_code {
            Some(code) => Status {
                code: StatusCode::Error as i32,
                message: code.clone(),
            },
            None => Status::default(),
        };
        // Trace flags (sampled) and whether the parent came from another process.
        let flags = match info.trace.parent_span_id {
            Some(_) => 0x301,
            None => 0x101,
        };
        self.traces.send(Span {
            trace_id: info.trace.trace_id.to_vec(),
            span_id: new_span_id().to_vec(),
            trace_state: info.trace.trace_state.clone(),
            parent_span_id: info
                .trace
                .parent_span_id
                .map(|p| p.to_vec())
                .unwrap_or_default(),
            flags,
            name: format!("chat {}", info.requested_model),
            kind: (if remote {
                SpanKind::Client
            } else {
                SpanKind::Internal
            }) as i32,
            start_time_unix_nano: self.started_unix_nanos,
            end_time_unix_nano: self.started_unix_nanos.saturating_add(elapsed),
            attributes: attrs,
            status: Some(status),
        });
    }

    /// Metrics under the GenAI names: `client` metrics for remote backends, `server`
    /// metrics for the in-process engine.
    fn observe(&self, rec: &LedgerRecord) {
        let local = rec.backend_kind == BackendKind::Local.otel_name();
        let base = || {
            vec![
                ("gen_ai_operation_name", "chat".to_owned()),
                ("gen_ai_provider_name", rec.backend_kind.clone()),
                ("gen_ai_request_model", self.info.requested_model.clone()),
                ("gen_ai_response_model", rec.model.clone()),
            ]
        };
        let m = &self.metrics;
        m.add(
            metrics::REQUESTS,
            vec![
                ("route", rec.route.clone()),
                ("backend", rec.backend.clone()),
                ("status", rec.status.to_string()),
            ],
            1.0,
        );
        let team = || vec![("team", rec.team.clone()), ("backend", rec.backend.clone())];
        m.add(metrics::COST, team(), rec.cost_usd);
        m.add(metrics::COUNTERFACTUAL, team(), rec.counterfactual_usd);
        if rec.status == 200 {
            for (kind, n) in [
                ("input", rec.prompt_tokens),
                ("output", rec.completion_tokens),
            ] {
                let mut l = base();
                l.push(("gen_ai_token_type", kind.to_owned()));
                m.observe(metrics::TOKEN_USAGE, l, n as f64);
            }
        }
        let mut l = base();
        if let Some(code) = &rec.error_code {
            l.push(("error_type", code.clone()));
        }
        let secs = rec.latency_ms / 1000.0;
        if local {
            m.observe(metrics::SERVER_DURATION, l, secs);
            if let Some(ttft) = rec.ttft_ms {
                m.observe(metrics::SERVER_TTFT, base(), ttft / 1000.0);
                if rec.completion_tokens > 1 {
                    let tpot =
                        (rec.latency_ms - ttft) / 1000.0 / (rec.completion_tokens - 1) as f64;
                    m.observe(metrics::SERVER_TPOT, base(), tpot);
                }
            }
        } else {
            m.observe(metrics::CLIENT_DURATION, l, secs);
            if let Some(ttft) = rec.ttft_ms {
                m.observe(metrics::CLIENT_TTFC, base(), ttft / 1000.0);
            }
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if self.written {
            return;
        }
        // The client went away (or the handler was dropped) before the answer
        // finished: record what was generated so far as cancelled.
        let usage = Usage {
            prompt_tokens: self.info.estimated_prompt_tokens,
            completion_tokens: self.deltas,
            cached_prompt_tokens: 0,
        };
        let model = self
            .backend
            .as_ref()
            .map(|b| b.model_name.clone())
            .unwrap_or_default();
        let cost = self.cost(&model, usage);
        let mut rec = self.base_record();
        rec.prompt_tokens = i64::from(usage.prompt_tokens);
        rec.completion_tokens = i64::from(usage.completion_tokens);
        rec.cost_usd = cost;
        rec.counterfactual_usd = self.counterfactual(usage);
        rec.status = i64::from(status_of(ErrorCode::Cancelled).as_u16());
        rec.error_code = Some(ErrorCode::Cancelled.as_str().to_owned());
        rec.finish_reason = Some("cancelled".to_owned());
        self.write(rec);
    }
}
