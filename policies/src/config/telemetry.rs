//! Validation of `telemetry:`, where request traces are exported. Only what the
//! file says is checked here; the standard `OTEL_*` environment variables fill
//! the gaps in the gateway, which is the one that reads the environment.

use serde_json::Value;

use super::raw::RawTelemetry;
use super::validate::{At, Ctx};
use super::TelemetrySettings;

pub(super) fn telemetry(cx: &mut Ctx<'_>, v: Option<&Value>) -> TelemetrySettings {
    let Some(raw) = v.and_then(|v| cx.de::<RawTelemetry>(v, "telemetry")) else {
        return TelemetrySettings::default();
    };
    let otlp_endpoint = raw
        .otlp_endpoint
        .and_then(|url| match otlp_endpoint_problem(&url) {
            None => Some(url.trim_end_matches('/').to_owned()),
            Some(problem) => {
                cx.err(
                    "telemetry.otlp_endpoint",
                    At::Value,
                    format!("invalid otlp_endpoint \"{url}\": {problem}"),
                );
                None
            }
        });
    let service_name = raw.service_name.and_then(|name| {
        if name.trim().is_empty() {
            cx.err(
                "telemetry.service_name",
                At::Value,
                "must name the service (the service.name of every span)",
            );
            None
        } else {
            Some(name)
        }
    });
    TelemetrySettings {
        otlp_endpoint,
        service_name,
    }
}

/// Why `url` cannot be an OTLP/HTTP endpoint, if it cannot.
pub fn otlp_endpoint_problem(url: &str) -> Option<&'static str> {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Some(
            "expected an http:// or https:// URL (OTLP over HTTP, like http://collector:4318)",
        );
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Some("the URL has no host");
    }
    if url.contains(char::is_whitespace) || url.contains(['?', '#']) {
        return Some("the URL may not hold spaces, a query or a fragment");
    }
    None
}
