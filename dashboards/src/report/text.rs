//! A report as `watershed report` prints it: an aligned table with the
//! overview and caveats under it, CSV of the same rows, or the whole report as
//! JSON.

use super::{GroupRow, Report};
use crate::render::{count, usd, Format, Table};

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into())
}

fn percent(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}%")).unwrap_or_else(|| "-".into())
}

impl Report {
    /// The breakdown as a table: one row per group, an idle row where idle
    /// fleet time is not already a column, and a total row.
    pub fn table(&self) -> Table {
        let o = &self.overview;
        let per_day_fleet = self.rows.iter().any(|r| r.idle_usd.is_some());
        let mut headers = vec![
            self.by.as_str(),
            "requests",
            "tokens in",
            "tokens out",
            "spend",
        ];
        if per_day_fleet {
            headers.push("idle GPU");
        }
        headers.extend([
            "counterfactual",
            "savings",
            "savings %",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "TTFT ms",
            "tokens/s",
            "kept home",
            "errors",
            "fallbacks",
        ]);
        let team = o
            .team
            .as_deref()
            .map(|t| format!(", team {t}"))
            .unwrap_or_default();
        let mut t = Table::new(
            &format!("Spend {} to {}{team}, by {}", o.from, o.to, self.by),
            &headers,
        );
        let row = |r: &GroupRow| -> Vec<String> {
            let s = &r.stats;
            let mut cells = vec![
                r.key.clone(),
                count(s.requests as f64),
                count(s.prompt_tokens as f64),
                count(s.completion_tokens as f64),
                usd(s.spend_usd),
            ];
            if per_day_fleet {
                cells.push(r.idle_usd.map(usd).unwrap_or_else(|| "-".into()));
            }
            cells.extend([
                usd(s.counterfactual_usd),
                usd(r.savings_usd),
                percent(r.savings_pct),
                ms(s.latency_p50_ms),
                ms(s.latency_p95_ms),
                ms(s.latency_p99_ms),
                ms(s.ttft_mean_ms),
                s.tokens_per_s
                    .map(|v| format!("{v:.1}"))
                    .unwrap_or_else(|| "-".into()),
                count(s.privacy_routed as f64),
                count(s.errors as f64),
                count(s.fallbacks as f64),
            ]);
            cells
        };
        for r in &self.rows {
            t.rows.push(row(r));
        }
        let idle = o.fleet.as_ref().map_or(0.0, |f| f.idle_usd);
        if !per_day_fleet && o.fleet.is_some() {
            let mut cells = vec!["(idle GPU time)".to_owned(), String::new(), String::new()];
            cells.push(String::new());
            cells.push(usd(idle));
            cells.extend(std::iter::repeat_n(
                String::new(),
                headers.len() - cells.len(),
            ));
            t.rows.push(cells);
        }
        let s = &o.totals;
        let mut total = vec![
            "total".to_owned(),
            count(s.requests as f64),
            count(s.prompt_tokens as f64),
            count(s.completion_tokens as f64),
        ];
        if per_day_fleet {
            total.push(usd(s.spend_usd));
            total.push(usd(idle));
        } else {
            total.push(usd(o.hybrid_spend_usd));
        }
        total.extend([
            usd(o.counterfactual_usd),
            usd(o.savings_usd),
            percent(o.savings_pct),
            ms(s.latency_p50_ms),
            ms(s.latency_p95_ms),
            ms(s.latency_p99_ms),
            ms(s.ttft_mean_ms),
            s.tokens_per_s
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "-".into()),
            count(s.privacy_routed as f64),
            count(s.errors as f64),
            count(s.fallbacks as f64),
        ]);
        t.rows.push(total);

        t.notes.push(String::new());
        t.notes.push(format!(
            "Hybrid spend {} (API {} + local attributed {} + idle GPU {}) against all-closed {}: \
             savings {} ({}).",
            usd(o.hybrid_spend_usd),
            usd(s.remote_spend_usd),
            usd(s.local_spend_usd),
            usd(idle),
            usd(o.counterfactual_usd),
            usd(o.savings_usd),
            percent(o.savings_pct),
        ));
        t.notes.extend(o.notes.iter().cloned());
        t
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.table().to_text(),
            Format::Csv => self.table().to_csv(),
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_else(|e| {
                format!("{{\"error\":{}}}", serde_json::Value::String(e.to_string()))
            }),
        }
    }
}
