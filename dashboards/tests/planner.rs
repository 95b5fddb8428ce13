//! The planner against the seed chapter's three-tier example, read from the
//! shipped plan file exactly as the CLI reads it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use watershed_dashboards::planner::Plan;
use watershed_dashboards::pricing::PriceTable;
use watershed_dashboards::render::Format;

/// The instant the plans are priced at (2026-11-26): fixed, so the outcome
/// never depends on the day the test runs.
const NOW_MS: i64 = 1_795_651_200_000;

fn seed_plan() -> Plan {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/plans/seed-hybrid.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let doc = watershed_policies::yaml::parse(&text).unwrap();
    Plan::from_value(doc.value).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn the_seed_example_comes_out_as_the_chapter_computes_it() {
    let r = seed_plan()
        .evaluate(&PriceTable::builtin(), NOW_MS)
        .unwrap();
    let per_tier: Vec<(f64, f64)> = r
        .tiers
        .iter()
        .map(|t| (t.hybrid_per_day, t.all_closed_per_day))
        .collect();
    // 2 * 6.50 * 24 = 312 vs 80 * 3.0 = 240; 15 * 0.35 = 5.25 vs 15 * 9 = 135;
    // 5 * 15 = 75 both ways.
    for ((h, c), (eh, ec)) in per_tier
        .iter()
        .zip([(312.0, 240.0), (5.25, 135.0), (75.0, 75.0)])
    {
        assert!(close(*h, eh) && close(*c, ec), "{h} {c} vs {eh} {ec}");
    }
    assert!(close(r.hybrid_per_day, 392.25));
    assert!(close(r.all_closed_per_day, 450.0));
    assert!(close(r.savings_per_month, 1732.5));
    assert!(close(r.hybrid_per_month, 11767.5));
    assert!(close(r.all_closed_per_month, 13500.0));
    assert_eq!(r.savings_pct.round(), 13.0);
    assert!(close(r.savings_pct, 57.75 / 450.0 * 100.0));

    // Break-even: 312 $/day of GPUs against Sonnet at $3/MTok is 104M tokens/day
    // (so at 80M the chatbot tier costs more self-hosted); against DeepSeek at
    // $0.35 it is 891.43M; against Opus at $15 it is 20.8M.
    let be: Vec<f64> = r
        .tiers
        .iter()
        .map(|t| t.break_even_tokens_per_day.unwrap())
        .collect();
    assert!(close(be[0], 104_000_000.0));
    assert!(close(be[1], 312.0 / 0.35 * 1e6));
    assert!(close(be[2], 20_800_000.0));

    let text = r.render(Format::Table);
    assert!(text.contains("$392.25"), "{text}");
    assert!(text.contains("$450.00"), "{text}");
    assert!(text.contains("savings $1,732.50 (13%)"), "{text}");
    assert!(text.contains("104,000,000"), "{text}");
    let csv = r.render(Format::Csv);
    assert!(csv.starts_with("tier,solution,tokens/day,"), "{csv}");
    assert!(
        csv.contains("total,,\"100,000,000\",$392.25,$450.00,$57.75,"),
        "{csv}"
    );
    let json: serde_json::Value = serde_json::from_str(&r.render(Format::Json)).unwrap();
    assert_eq!(json["savings_per_month"], 1732.5);
    assert_eq!(json["tiers"][1]["hybrid_per_day"], 5.25);
}

#[test]
fn api_prices_can_come_from_the_price_table() {
    let plan = Plan::from_value(serde_json::json!({
        "tiers": [{
            "name": "t",
            "tokens_per_day": 2_000_000,
            "serve": { "api": { "model": "deepseek-v3.2", "input_fraction": 0.5 } },
            "all_closed": { "model": "claude-opus-4.6", "input_fraction": 0.75 }
        }]
    }))
    .unwrap();
    let r = plan.evaluate(&PriceTable::builtin(), NOW_MS).unwrap();
    // DeepSeek blended 0.5*0.28 + 0.5*0.42 = 0.35 -> 0.70/day; Opus
    // 0.75*5 + 0.25*25 = 10 -> 20/day; no self-hosted side -> no break-even.
    assert!(close(r.tiers[0].hybrid_per_day, 0.70));
    assert!(close(r.tiers[0].all_closed_per_day, 20.0));
    assert_eq!(r.tiers[0].break_even_tokens_per_day, None);
    assert!(close(r.savings_per_month, 19.3 * 30.0));
}

#[test]
fn bad_plans_are_refused_with_the_reason() {
    let unknown = Plan::from_value(serde_json::json!({ "tiers": [], "tierz": 1 }));
    assert!(unknown.unwrap_err().to_string().contains("tierz"));
    let empty = Plan::from_value(serde_json::json!({ "tiers": [] })).unwrap();
    assert!(empty.evaluate(&PriceTable::builtin(), NOW_MS).is_err());
    let unpriced = Plan::from_value(serde_json::json!({ "tiers": [{
        "name": "t", "tokens_per_day": 1,
        "serve": { "api": { "model": "nope", "input_fraction": 0.5 } },
        "all_closed": { "model": "gpt-5.4", "blended_usd_per_mtok": 9 }
    }]}))
    .unwrap();
    let err = unpriced
        .evaluate(&PriceTable::builtin(), NOW_MS)
        .unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");
}
