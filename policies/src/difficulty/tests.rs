//! Tests of the difficulty classifier: weights loading, Rust/Python parity and
//! calibration.

use super::*;

fn builtin_model() -> &'static DifficultyModel {
    DifficultyModel::builtin().expect("the committed weights must parse")
}

fn builtin_doc() -> serde_json::Value {
    serde_json::from_str(BUILTIN_WEIGHTS).expect("the committed weights are JSON")
}

#[test]
fn builtin_weights_parse_and_are_cached() {
    let a = builtin_model();
    let b = builtin_model();
    assert!(std::ptr::eq(a, b));
    assert_eq!(a.weights.len(), 1 << a.bits);
    assert!(a.weights.iter().any(|w| *w != 0.0));
}

/// The training script scores fixed strings with its reference scorer and
/// stores the results in the weights file; Rust must reproduce them. A wrong
/// hash, tokenisation, normalisation or dense feature moves a score by far more
/// than the tolerance, which only absorbs summation order.
#[test]
fn scores_match_the_python_reference() {
    let doc = builtin_doc();
    let cases = doc["meta"]["parity"]
        .as_array()
        .expect("parity fixtures in the weights file");
    assert!(cases.len() >= 5);
    let model = builtin_model();
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let expected = case["score"].as_f64().expect("score");
        let got = model.score(text);
        assert!(
            (got - expected).abs() < 1e-9,
            "score of {text:?}: rust {got}, python {expected}"
        );
    }
}

/// Bucket-level parity, independent of the weights: the training script's
/// features of these texts (bucket, value) at 18 bits, every group enabled.
/// Regenerate with `feature_arrays(text, FeatureConfig())` if features change.
#[test]
fn sparse_features_match_the_python_reference() {
    let doc = builtin_doc();
    let cases = doc["meta"]["feature_parity"]
        .as_array()
        .expect("feature fixtures in the weights file");
    assert!(!cases.is_empty());
    let model = builtin_model();
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let expected: Vec<(usize, f64)> = case["features"]
            .as_array()
            .expect("features")
            .iter()
            .map(|p| {
                (
                    p[0].as_u64().expect("bucket") as usize,
                    p[1].as_f64().expect("value"),
                )
            })
            .collect();
        let got = model.sparse_features(text);
        assert_eq!(got.len(), expected.len(), "feature count of {text:?}");
        for ((gb, gv), (eb, ev)) in got.iter().zip(&expected) {
            assert_eq!(gb, eb, "bucket of {text:?}");
            assert!(
                (gv - ev).abs() < 1e-12,
                "value of bucket {gb} in {text:?}: {gv} vs {ev}"
            );
        }
        let dense_expected: Vec<f64> = case["dense"]
            .as_array()
            .expect("dense")
            .iter()
            .map(|v| v.as_f64().expect("dense value"))
            .collect();
        let dense_got = features::dense(text);
        assert_eq!(dense_got.len(), dense_expected.len());
        for (g, e) in dense_got.iter().zip(&dense_expected) {
            // JSON float parsing may be one ulp off; the features themselves agree.
            assert!(
                (g - e).abs() <= 1e-12 * e.abs().max(1.0),
                "dense features of {text:?}: {g} vs {e}"
            );
        }
    }
}

#[test]
fn scores_are_probabilities_and_deterministic() {
    let model = builtin_model();
    let long = "Explain the proof step by step. ".repeat(500);
    for text in [
        "",
        " ",
        "hi",
        "2+2?",
        "🚀",
        long.as_str(),
        "\u{0}\u{7f}\u{80}",
    ] {
        let s = model.score(text);
        assert!((0.0..=1.0).contains(&s), "score {s} of {text:?}");
        assert_eq!(s.to_bits(), model.score(text).to_bits());
    }
}

#[test]
fn a_weights_file_round_trips_through_from_json() {
    let model = DifficultyModel::from_json(BUILTIN_WEIGHTS).expect("parses");
    let text = "Write a function that parses ISO-8601 durations.";
    assert_eq!(
        model.score(text).to_bits(),
        builtin_model().score(text).to_bits()
    );
}

fn edited(f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut doc = builtin_doc();
    f(&mut doc);
    doc.to_string()
}

#[test]
fn invalid_weights_files_are_refused_with_a_reason() {
    let cases: Vec<(String, &str)> = vec![
        ("not json".to_owned(), "difficulty_weights_json"),
        (
            edited(|d| d["format"] = 2.into()),
            "difficulty_weights_format",
        ),
        (
            edited(|d| d["features"]["bits"] = 30.into()),
            "difficulty_weights_invalid",
        ),
        (
            edited(|d| d["features"]["groups"] = serde_json::json!(["word", "emoji"])),
            "difficulty_weights_invalid",
        ),
        (
            edited(|d| d["features"]["char_ns"] = serde_json::json!([2, 3])),
            "difficulty_weights_invalid",
        ),
        (
            edited(|d| d["dense"]["std"][0] = 0.0.into()),
            "difficulty_weights_invalid",
        ),
        (
            edited(|d| d["dense"]["weights"] = serde_json::json!([1.0])),
            "difficulty_weights_invalid",
        ),
        (
            edited(|d| d["dense"]["names"][0] = "other".into()),
            "difficulty_weights_invalid",
        ),
        (
            edited(|d| d["sparse"]["count"] = 1.into()),
            "difficulty_weights_invalid",
        ),
        (
            edited(|d| d["sparse"]["values_f32le_b64"] = "@@@@".into()),
            "difficulty_weights_invalid",
        ),
        (
            edited(|d| d["surprise"] = 1.into()),
            "difficulty_weights_json",
        ),
        (
            edited(|d| {
                d["features"]["bits"] = 8.into();
                d["sparse"]["count"] = 1.into();
                d["sparse"]["indices_u32le_b64"] = "AAEAAA==".into(); // bucket 256
                d["sparse"]["values_f32le_b64"] = "AACAPw==".into(); // 1.0
            }),
            "difficulty_weights_invalid",
        ),
    ];
    for (json, code) in cases {
        let err = DifficultyModel::from_json(&json).expect_err("must be refused");
        assert_eq!(err.code(), code, "{err}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn threshold_sends_the_requested_share_above_it() {
    let sample: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
    for fraction in [0.0, 0.1, 0.3, 0.5, 0.77, 0.999, 1.0] {
        let mut scores = sample.clone();
        let t = threshold_for_strong_fraction(&mut scores, fraction);
        let above = sample.iter().filter(|s| **s > t).count();
        assert_eq!(
            above,
            (fraction * 1000.0_f64).round() as usize,
            "fraction {fraction}"
        );
    }
}

#[test]
fn threshold_handles_edges_without_panicking() {
    assert_eq!(threshold_for_strong_fraction(&mut [], 0.3), 0.5);
    assert_eq!(threshold_for_strong_fraction(&mut [f64::NAN], 0.3), 0.5);
    // Out-of-range and NaN fractions are clamped.
    let mut s = vec![0.2, 0.9, 0.5];
    let t = threshold_for_strong_fraction(&mut s, 7.0);
    assert!(t < 0.2);
    let t = threshold_for_strong_fraction(&mut s, -1.0);
    assert_eq!(t, 0.9);
    let t = threshold_for_strong_fraction(&mut s, f64::NAN);
    assert_eq!(t, 0.9);
    // A lowest score of zero still ends up above the threshold for fraction 1.
    let t = threshold_for_strong_fraction(&mut [0.0, 0.0], 1.0);
    assert!(t < 0.0);
    // NaNs are ignored: one of the two real scores goes strong.
    let mut s = vec![f64::NAN, 0.8, 0.4, f64::NAN];
    let t = threshold_for_strong_fraction(&mut s, 0.5);
    assert!((t - 0.6).abs() < 1e-12);
    // Ties at the boundary stay together (below the threshold).
    let t = threshold_for_strong_fraction(&mut [0.5, 0.5, 0.5, 0.9], 0.5);
    assert_eq!(t, 0.5);
}

#[test]
fn calibrating_on_model_scores_reproduces_the_fraction() {
    let model = builtin_model();
    let prompts: Vec<String> = (0..200)
        .map(|i| {
            format!(
                "Question {i}: {}",
                "why does the sky look blue at noon? ".repeat(i % 7 + 1)
            )
        })
        .collect();
    let scores: Vec<f64> = prompts.iter().map(|p| model.score(p)).collect();
    let mut work = scores.clone();
    let t = threshold_for_strong_fraction(&mut work, 0.25);
    let above = scores.iter().filter(|s| **s > t).count();
    // Distinct prompts can tie in score; allow for a tie at the boundary.
    assert!((45..=55).contains(&above), "{above} of 200 above {t}");
}
