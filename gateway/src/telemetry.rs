//! OpenTelemetry traces over OTLP/HTTP (protobuf): where they go (the config's
//! `telemetry:` block, else the standard `OTEL_*` environment variables), the
//! W3C trace context a request arrives with, and the exporter — a bounded queue
//! the request path only ever `try_send`s into, drained in batches by one
//! background task that flushes what is left on shutdown.
//!
//! The spans themselves are built by `meter.rs`, from the same place that
//! finishes the request's ledger record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use watershed_policies::{otlp_endpoint_problem, TelemetrySettings};

use crate::metrics::{Metrics, SPANS_DROPPED, SPANS_EXPORTED};
use crate::otlp::{
    any_value, AnyValue, ArrayValue, ExportTraceServiceRequest, ExportTraceServiceResponse,
    InstrumentationScope, KeyValue, Resource, ResourceSpans, ScopeSpans, Span,
};

/// The `service.name` when neither the config nor `OTEL_SERVICE_NAME` gives one.
pub const DEFAULT_SERVICE_NAME: &str = "watershed";
/// The instrumentation scope every span is reported under.
const SCOPE: &str = "watershed";
/// Tries per batch: a collector that is restarting gets a second and third chance.
const EXPORT_ATTEMPTS: u32 = 3;
const RETRY_BASE: Duration = Duration::from_millis(500);

/// Where and how spans are exported, resolved once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// The full URL spans are posted to (`…/v1/traces`).
    pub traces_url: String,
    pub service_name: String,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`), e.g. a vendor's key.
    pub headers: Vec<(String, String)>,
    /// Per-request timeout of an export.
    pub timeout: Duration,
    /// A batch is sent this long after its first span at the latest ...
    pub schedule_delay: Duration,
    /// ... or as soon as it holds this many spans.
    pub max_batch: usize,
    /// Spans waiting beyond this many are dropped (and counted), never waited for.
    pub max_queue: usize,
}

/// Resolves the export settings from the config and the environment (`env`
/// returns a variable's value). The config wins over the environment; among the
/// variables the signal-specific one wins over the general one, as the
/// OpenTelemetry specification has it. `Ok(None)` means tracing is off: no
/// endpoint anywhere, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
pub fn resolve(
    settings: &TelemetrySettings,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<ExportConfig>, String> {
    let env = |name: &str| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return Ok(None);
    }
    let traces_url = if let Some(base) = &settings.otlp_endpoint {
        // Validated with the rest of the config.
        traces_path(base)
    } else if let Some(url) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        checked(&url, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")?;
        url
    } else if let Some(base) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
        checked(&base, "OTEL_EXPORTER_OTLP_ENDPOINT")?;
        traces_path(&base)
    } else {
        return Ok(None);
    };
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(p) = env(var) {
            if p != "http/protobuf" {
                return Err(format!(
                    "{var}={p:?} is not supported: Watershed exports traces over OTLP/HTTP with protobuf (http/protobuf)"
                ));
            }
            break;
        }
    }
    let service_name = settings
        .service_name
        .clone()
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    let headers = match env("OTEL_EXPORTER_OTLP_TRACES_HEADERS") {
        Some(h) => parse_headers(&h, "OTEL_EXPORTER_OTLP_TRACES_HEADERS")?,
        None => match env("OTEL_EXPORTER_OTLP_HEADERS") {
            Some(h) => parse_headers(&h, "OTEL_EXPORTER_OTLP_HEADERS")?,
            None => Vec::new(),
        },
    };
    let millis = |vars: &[&str], default: u64| -> Result<Duration, String> {
        match vars.iter().find_map(|v| env(v).map(|x| (*v, x))) {
            Some((var, x)) => x
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{var}={x:?} is not a number of milliseconds")),
            None => Ok(Duration::from_millis(default)),
        }
    };
    let count = |var: &str, default: usize| -> Result<usize, String> {
        match env(var) {
            Some(x) => x
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{var}={x:?} is not a positive number")),
            None => Ok(default),
        }
    };
    let max_queue = count("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?;
    Ok(Some(ExportConfig {
        traces_url,
        service_name,
        headers,
        timeout: millis(
            &[
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ],
            10_000,
        )?,
        schedule_delay: millis(&["OTEL_BSP_SCHEDULE_DELAY"], 5_000)?,
        max_batch: count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?.min(max_queue),
        max_queue,
    }))
}

fn traces_path(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

fn checked(url: &str, var: &str) -> Result<(), String> {
    match otlp_endpoint_problem(url) {
        None => Ok(()),
        Some(problem) => Err(format!("{var}={url:?} is not usable: {problem}")),
    }
}

/// `key1=value1,key2=value2` with percent-encoded values (W3C baggage style).
fn parse_headers(text: &str, var: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || format!("{var}: cannot read header {item:?} (expected key=value)");
        let (k, v) = item.split_once('=').ok_or_else(bad)?;
        let (k, v) = (k.trim(), percent_decode(v.trim()).ok_or_else(bad)?);
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(&v).is_err()
        {
            return Err(bad());
        }
        out.push((k.to_owned(), v));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The trace a request belongs to: its own new one, or the caller's when the
/// request carries a valid W3C `traceparent` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The caller's span, the parent of the request's span.
    pub parent_span_id: Option<[u8; 8]>,
    /// Whether the span is recorded: always for a new trace, the caller's
    /// decision otherwise (the default parent-based sampler).
    pub sampled: bool,
    pub trace_state: String,
}

impl TraceContext {
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let parent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        match parent {
            Some((trace_id, span_id, flags)) => Self {
                trace_id,
                parent_span_id: Some(span_id),
                sampled: flags & 1 == 1,
                trace_state: headers
                    .get("tracestate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
            },
            None => Self::new_root(),
        }
    }

    pub fn new_root() -> Self {
        Self {
            trace_id: uuid::Uuid::new_v4().into_bytes(),
            parent_span_id: None,
            sampled: true,
            trace_state: String::new(),
        }
    }
}

/// A new random span id: the random low half of a version-4 UUID (its
/// variant bits aside), never all zeros.
pub fn new_span_id() -> [u8; 8] {
    let id = (uuid::Uuid::new_v4().as_u128() as u64) | 1;
    id.to_be_bytes()
}

/// `version-traceid-parentid-flags`, lowercase hex (W3C Trace Context). A
/// version other than 00 is read the same way, as the specification asks,
/// ignoring what a later version may append.
fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let v = v.trim();
    let parts: Vec<&str> = v.splitn(5, '-').collect();
    let (version, trace, span, flags) = (
        *parts.first()?,
        *parts.get(1)?,
        *parts.get(2)?,
        *parts.get(3)?,
    );
    if version == "ff" || (version == "00" && parts.len() != 4) {
        return None;
    }
    let lower_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    };
    if !(lower_hex(version, 2)
        && lower_hex(trace, 32)
        && lower_hex(span, 16)
        && lower_hex(flags, 2))
    {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    hex_into(trace, &mut trace_id)?;
    hex_into(span, &mut span_id)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((trace_id, span_id, u8::from_str_radix(flags, 16).ok()?))
}

fn hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

/// Attribute constructors for the span builder.
pub fn str_attr(key: &str, v: impl Into<String>) -> KeyValue {
    attr(key, any_value::Value::StringValue(v.into()))
}

pub fn int_attr(key: &str, v: i64) -> KeyValue {
    attr(key, any_value::Value::IntValue(v))
}

pub fn f64_attr(key: &str, v: f64) -> KeyValue {
    attr(key, any_value::Value::DoubleValue(v))
}

pub fn bool_attr(key: &str, v: bool) -> KeyValue {
    attr(key, any_value::Value::BoolValue(v))
}

pub fn str_array_attr(key: &str, vs: Vec<String>) -> KeyValue {
    let values = vs
        .into_iter()
        .map(|s| AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        })
        .collect();
    attr(key, any_value::Value::ArrayValue(ArrayValue { values }))
}

fn attr(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

/// The request path's side of the exporter. Cloning is cheap; sending never
/// waits: a full queue drops the span and counts it.
#[derive(Debug, Clone, Default)]
pub struct Traces {
    tx: Option<mpsc::Sender<Span>>,
    metrics: Option<Arc<Metrics>>,
}

impl Traces {
    /// Tracing off: `enabled` is false and nothing is built or sent.
    pub fn disabled() -> Self {
        Self::default()
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn send(&self, span: Span) {
        let Some(tx) = &self.tx else { return };
        if let Err(e) = tx.try_send(span) {
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "queue_full",
                mpsc::error::TrySendError::Closed(_) => "shut_down",
            };
            if let Some(m) = &self.metrics {
                m.add(SPANS_DROPPED, vec![("reason", reason.to_owned())], 1.0);
            }
        }
    }
}

/// Starts the exporter task on `tracker`. It stops when `stop` is cancelled,
/// after exporting every span already queued.
pub fn start(
    config: ExportConfig,
    metrics: Arc<Metrics>,
    tracker: &TaskTracker,
    stop: CancellationToken,
) -> anyhow::Result<Traces> {
    let client = reqwest::Client::builder().timeout(config.timeout).build()?;
    let (tx, rx) = mpsc::channel(config.max_queue);
    info!(url = %config.traces_url, service_name = %config.service_name, "exporting traces over OTLP/HTTP");
    let exporter = Exporter {
        resource: resource(&config.service_name),
        config,
        client,
        metrics: metrics.clone(),
        failing: AtomicBool::new(false),
    };
    tracker.spawn(exporter.run(rx, stop));
    Ok(Traces {
        tx: Some(tx),
        metrics: Some(metrics),
    })
}

fn resource(service_name: &str) -> Resource {
    Resource {
        attributes: vec![
            str_attr("service.name", service_name),
            str_attr("service.version", env!("CARGO_PKG_VERSION")),
            str_attr("telemetry.sdk.name", "watershed"),
            str_attr("telemetry.sdk.language", "rust"),
            str_attr("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
        ],
        ..Default::default()
    }
}

struct Exporter {
    config: ExportConfig,
    resource: Resource,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    /// Whether the last export failed, so a collector that is down is logged
    /// once when it goes away and once when it comes back, not per batch.
    failing: AtomicBool,
}

impl Exporter {
    async fn run(self, mut rx: mpsc::Receiver<Span>, stop: CancellationToken) {
        let mut batch: Vec<Span> = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            let timer = sleep_until(deadline.unwrap_or_else(Instant::now));
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                span = rx.recv() => match span {
                    None => break,
                    Some(span) => {
                        if batch.is_empty() {
                            deadline = Some(Instant::now() + self.config.schedule_delay);
                        }
                        batch.push(span);
                        if batch.len() >= self.config.max_batch {
                            self.export(std::mem::take(&mut batch), true).await;
                            deadline = None;
                        }
                    }
                },
                _ = timer, if deadline.is_some() => {
                    self.export(std::mem::take(&mut batch), true).await;
                    deadline = None;
                }
            }
        }
        // Requests have drained: export what is queued, once each, and stop.
        rx.close();
        while let Some(span) = rx.recv().await {
            batch.push(span);
            if batch.len() >= self.config.max_batch {
                self.export(std::mem::take(&mut batch), false).await;
            }
        }
        self.export(batch, false).await;
        debug!("trace exporter flushed and stopped");
    }

    /// Sends one batch; `retry` allows further tries when the collector is
    /// briefly unavailable (not during shutdown, which must not hang on it).
    async fn export(&self, spans: Vec<Span>, retry: bool) {
        if spans.is_empty() {
            return;
        }
        let n = spans.len();
        let body = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
        .encode_to_vec();
        let attempts = if retry { EXPORT_ATTEMPTS } else { 1 };
        let mut delay = RETRY_BASE;
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            match self.post(body.clone()).await {
                Ok(rejected) => {
                    let accepted = n.saturating_sub(rejected);
                    self.count(SPANS_EXPORTED, None, accepted);
                    self.count(SPANS_DROPPED, Some("rejected"), rejected);
                    if self.failing.swap(false, Ordering::Relaxed) {
                        info!(url = %self.config.traces_url, "trace export works again");
                    }
                    return;
                }
                Err(PostError::Permanent(e)) => {
                    last_error = e;
                    break;
                }
                Err(PostError::Retryable(e)) => {
                    last_error = e;
                    if attempt < attempts {
                        sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
        self.count(SPANS_DROPPED, Some("export_failed"), n);
        if !self.failing.swap(true, Ordering::Relaxed) {
            warn!(url = %self.config.traces_url, spans = n, error = %last_error, "trace export failed; spans are dropped until the collector answers");
        }
    }

    /// Posts one encoded request; returns how many spans the collector rejected.
    async fn post(&self, body: Vec<u8>) -> Result<usize, PostError> {
        let mut req = self
            .client
            .post(&self.config.traces_url)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body);
        for (k, v) in &self.config.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| PostError::Retryable(e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let msg = format!("collector answered {status}");
            // The statuses OTLP/HTTP names as worth retrying.
            return Err(match status.as_u16() {
                429 | 502 | 503 | 504 => PostError::Retryable(msg),
                _ => PostError::Permanent(msg),
            });
        }
        let bytes = resp.bytes().await.unwrap_or_default();
        let rejected = ExportTraceServiceResponse::decode(bytes)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| usize::try_from(p.rejected_spans).unwrap_or(0));
        Ok(rejected)
    }

    fn count(&self, name: &'static str, reason: Option<&str>, n: usize) {
        if n == 0 {
            return;
        }
        let labels = reason.map_or_else(Vec::new, |r| vec![("reason", r.to_owned())]);
        self.metrics.add(name, labels, n as f64);
    }
}

enum PostError {
    Retryable(String),
    Permanent(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve_with(
        settings: &TelemetrySettings,
        vars: &[(&str, &str)],
    ) -> Result<Option<ExportConfig>, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        resolve(settings, |k| vars.get(k).cloned())
    }

    fn configured(endpoint: Option<&str>, name: Option<&str>) -> TelemetrySettings {
        TelemetrySettings {
            otlp_endpoint: endpoint.map(str::to_owned),
            service_name: name.map(str::to_owned),
        }
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        let none = TelemetrySettings::default();
        assert_eq!(resolve_with(&none, &[]), Ok(None));
        // A service name alone turns nothing on.
        assert_eq!(
            resolve_with(&none, &[("OTEL_SERVICE_NAME", "gw")]),
            Ok(None)
        );
        assert_eq!(
            resolve_with(&none, &[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]),
            Ok(None)
        );
    }

    #[test]
    fn the_config_wins_over_the_environment() {
        let cfg = configured(Some("http://from-config:4318"), Some("from-config"));
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://from-env:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces-env:4318/x",
            ),
            ("OTEL_SERVICE_NAME", "from-env"),
        ];
        let got = resolve_with(&cfg, &env).unwrap().unwrap();
        assert_eq!(got.traces_url, "http://from-config:4318/v1/traces");
        assert_eq!(got.service_name, "from-config");

        // What the config leaves unset comes from the environment.
        let got = resolve_with(&configured(Some("http://c:4318"), None), &env)
            .unwrap()
            .unwrap();
        assert_eq!(got.service_name, "from-env");
        let got = resolve_with(&configured(None, Some("named")), &env)
            .unwrap()
            .unwrap();
        assert_eq!(got.traces_url, "http://traces-env:4318/x");
        assert_eq!(got.service_name, "named");
    }

    #[test]
    fn the_signal_specific_variable_wins_and_is_taken_as_is() {
        let none = TelemetrySettings::default();
        let got = resolve_with(
            &none,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "https://c.example/otlp/spans",
                ),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.traces_url, "https://c.example/otlp/spans");
        assert_eq!(got.service_name, DEFAULT_SERVICE_NAME);

        let got = resolve_with(
            &none,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318/")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.traces_url, "http://general:4318/v1/traces");
        assert_eq!(got.schedule_delay, Duration::from_secs(5));
        assert_eq!(got.timeout, Duration::from_secs(10));
        assert_eq!((got.max_batch, got.max_queue), (512, 2048));
    }

    #[test]
    fn the_sdk_switches_and_batch_settings_are_honoured() {
        let cfg = configured(Some("http://c:4318"), None);
        assert_eq!(
            resolve_with(&cfg, &[("OTEL_SDK_DISABLED", "TRUE")]),
            Ok(None)
        );
        assert_eq!(
            resolve_with(&cfg, &[("OTEL_TRACES_EXPORTER", "none")]),
            Ok(None)
        );
        let got = resolve_with(
            &cfg,
            &[
                ("OTEL_BSP_SCHEDULE_DELAY", "200"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1500"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "x-api-key=s%3Dcret, x-team = core",
                ),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.schedule_delay, Duration::from_millis(200));
        assert_eq!(got.timeout, Duration::from_millis(1500));
        assert_eq!((got.max_batch, got.max_queue), (100, 100));
        assert_eq!(
            got.headers,
            vec![
                ("x-api-key".to_owned(), "s=cret".to_owned()),
                ("x-team".to_owned(), "core".to_owned())
            ]
        );
    }

    #[test]
    fn unusable_variables_are_named() {
        let none = TelemetrySettings::default();
        let err =
            resolve_with(&none, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]).unwrap_err();
        assert!(
            err.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT=\"collector:4318\""),
            "{err}"
        );
        let cfg = configured(Some("http://c:4318"), None);
        let err = resolve_with(&cfg, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert!(err.contains("http/protobuf"), "{err}");
        let err = resolve_with(&cfg, &[("OTEL_BSP_SCHEDULE_DELAY", "soon")]).unwrap_err();
        assert!(err.contains("OTEL_BSP_SCHEDULE_DELAY=\"soon\""), "{err}");
        let err = resolve_with(&cfg, &[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]).unwrap_err();
        assert!(err.contains("\"novalue\""), "{err}");
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let metrics = Arc::new(Metrics::default());
        let (tx, mut rx) = mpsc::channel(1);
        let traces = Traces {
            tx: Some(tx),
            metrics: Some(metrics.clone()),
        };
        traces.send(Span::default());
        traces.send(Span::default());
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err(), "the second span was dropped");
        drop(rx);
        traces.send(Span::default());
        let text = metrics.render();
        for reason in ["queue_full", "shut_down"] {
            let line = format!("{SPANS_DROPPED}{{reason=\"{reason}\"}} 1.0");
            assert!(text.contains(&line), "{line} not in\n{text}");
        }
    }

    #[tokio::test]
    async fn a_refusing_collector_costs_the_batch_not_the_shutdown() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(|| async { http::StatusCode::BAD_REQUEST }),
        );
        let tracker = TaskTracker::new();
        let server_stop = CancellationToken::new();
        let token = server_stop.clone();
        tracker.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        let settings = configured(Some(&format!("http://{addr}")), None);
        let config = resolve_with(&settings, &[]).unwrap().unwrap();
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let exporter_tracker = TaskTracker::new();
        let traces = start(config, metrics.clone(), &exporter_tracker, stop.clone()).unwrap();
        for _ in 0..3 {
            traces.send(Span::default());
        }
        stop.cancel();
        exporter_tracker.close();
        tokio::time::timeout(Duration::from_secs(5), exporter_tracker.wait())
            .await
            .unwrap();
        server_stop.cancel();
        let text = metrics.render();
        let line = format!("{SPANS_DROPPED}{{reason=\"export_failed\"}} 3.0");
        assert!(text.contains(&line), "{line} not in\n{text}");
        assert!(
            !text.lines().any(|l| l.starts_with(SPANS_EXPORTED)),
            "{text}"
        );
    }

    #[test]
    fn traceparent_is_read_strictly() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (t, s, f) = parse_traceparent(good).unwrap();
        assert_eq!(t[0], 0x4b);
        assert_eq!(t[15], 0x36);
        assert_eq!(s, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(f, 1);
        // A later version may append fields.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra")
                .is_some()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?} was accepted");
        }

        let mut h = http::HeaderMap::new();
        h.insert("traceparent", good.parse().unwrap());
        h.insert("tracestate", "vendor=x".parse().unwrap());
        let cx = TraceContext::from_headers(&h);
        assert_eq!((cx.trace_id, cx.parent_span_id), (t, Some(s)));
        assert!(cx.sampled);
        assert_eq!(cx.trace_state, "vendor=x");
        let root = TraceContext::from_headers(&http::HeaderMap::new());
        assert!(root.sampled && root.parent_span_id.is_none());
        assert_ne!(root.trace_id, [0; 16]);
    }
}
