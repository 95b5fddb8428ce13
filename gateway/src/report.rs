//! `watershed report`: the ledger's spend for a period as a table, CSV or
//! JSON, and `--plan`, the capacity planner on a plan file. The IO around
//! `watershed_dashboards::report` and `planner`; the figures are computed there.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use watershed_dashboards::ledger::open_store;
use watershed_dashboards::planner::Plan;
use watershed_dashboards::render::Format;
use watershed_dashboards::report::{self, Dimension, Fleet, Period, ReportQuery};
use watershed_policies::yaml::{self, join_index, join_key};

use crate::config;

/// What `watershed report` was asked for.
#[derive(Debug, Clone)]
pub struct ReportArgs {
    pub config: Option<PathBuf>,
    pub ledger: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub by: Dimension,
    pub team: Option<String>,
    pub format: Format,
    pub plan: Option<PathBuf>,
}

/// Runs the report and returns what to print; errors are one line each.
/// `now` is the caller's clock: it sets the default period and the prices in force.
pub fn run(args: &ReportArgs, now: DateTime<Utc>) -> Result<String, String> {
    let loaded = config::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    let cfg = &loaded.config;
    if let Some(plan) = &args.plan {
        let prices = crate::state::price_table(cfg).map_err(|e| e.to_string())?;
        let plan_value = load_plan(plan)?;
        let result = plan_value
            .evaluate(&prices, now.timestamp_millis())
            .map_err(|e| format!("{}: {e}", plan.display()))?;
        return Ok(result.render(args.format));
    }
    let period = Period::parse(args.from.as_deref(), args.to.as_deref(), now.date_naive())
        .map_err(|e| e.to_string())?;
    let query = ReportQuery {
        period,
        team: args.team.clone(),
        fleet: cfg.fleet.as_ref().map(|f| Fleet {
            gpus: f64::from(f.gpus),
            gpu_hour_usd: f.gpu_hour_usd,
        }),
        counterfactual_model: cfg.counterfactual.clone(),
        now_ms: now.timestamp_millis(),
    };
    let url = match &args.ledger {
        Some(u) => u.clone(),
        None => cfg.ledger_url(|k| std::env::var(k).ok())?,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let report = rt.block_on(async {
        let store = open_store(&url).await.map_err(|e| {
            format!(
                "cannot open ledger {}: {e}",
                watershed_policies::mask_url_password(&url)
            )
        })?;
        report::report(&*store, &query, args.by)
            .await
            .map_err(|e| e.to_string())
    })?;
    Ok(report.render(args.format))
}

/// Reads a plan file through the policies crate's YAML parser, so every
/// error names the file, line and column it is about.
pub fn load_plan(path: &Path) -> Result<Plan, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read plan file {}: {e}", path.display()))?;
    parse_plan(&text, &path.display().to_string())
}

/// Parses a plan from YAML text; `source` names it in errors.
pub fn parse_plan(text: &str, source: &str) -> Result<Plan, String> {
    let doc = yaml::parse(text).map_err(|errs| {
        errs.iter()
            .map(|e| format!("{source}:{}:{}: {}", e.pos.line, e.pos.col, e.message))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    serde_path_to_error::deserialize::<_, Plan>(&doc.value).map_err(|e| {
        let mut path = String::new();
        for seg in e.path().iter() {
            path = match seg {
                serde_path_to_error::Segment::Seq { index } => join_index(&path, *index),
                serde_path_to_error::Segment::Map { key }
                | serde_path_to_error::Segment::Enum { variant: key } => join_key(&path, key),
                serde_path_to_error::Segment::Unknown => path,
            };
        }
        let message = e.inner().to_string().replace('`', "\"");
        let span = doc.nearest_span(&path);
        let pos = if message.starts_with("unknown field") {
            span.key
        } else {
            span.value
        };
        let at = if path.is_empty() {
            String::new()
        } else {
            format!("{path}: ")
        };
        format!(
            "{source}:{}:{}: {at}invalid plan: {message}",
            pos.line, pos.col
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_errors_name_file_line_and_column() {
        let err = parse_plan(
            "tiers:\n  - name: a\n    tokens_per_day: lots\n    serve: { api: { model: x, blended_usd_per_mtok: 1 } }\n    all_closed: { model: y, blended_usd_per_mtok: 2 }\n",
            "p.yaml",
        )
        .unwrap_err();
        assert!(
            err.starts_with("p.yaml:3:21: tiers[0].tokens_per_day: invalid plan:"),
            "{err}"
        );
        let err = parse_plan("tiers: []\ntierz: 1\n", "p.yaml").unwrap_err();
        assert!(err.starts_with("p.yaml:2:1: "), "{err}");
        assert!(err.contains("tierz"), "{err}");
        let err = parse_plan("tiers: [\n", "p.yaml").unwrap_err();
        assert!(err.starts_with("p.yaml:"), "{err}");
    }
}
