//! Linear-time guard for the privacy detectors, the redaction pair and the difficulty
//! features: on every adversarial family the work they count (`steps`, bytes examined
//! in the scanners' inner loops) stays under a constant times the text's length, and
//! does not grow per byte from 64 KiB to 256 KiB. Work is counted, never timed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod adversarial;

use adversarial::{text, FAMILIES};
use watershed_policies::difficulty::DifficultyModel;
use watershed_policies::privacy::{detect, redact};
use watershed_policies::steps;

const SIZES: [usize; 2] = [64 << 10, 256 << 10];

/// The most work per byte any family needs today (password fillers, "password
/// password …") is 10; single digits ("1 1 …") needed 26 before the card scanner walked
/// each chain once. A scanner that walks again from every candidate needs thousands at
/// these sizes.
const MAX_STEPS_PER_BYTE: f64 = 16.0;

/// Work per byte at 256 KiB over work per byte at 64 KiB; linear work gives ≈ 1,
/// quadratic work 4.
const MAX_GROWTH: f64 = 1.2;

fn check(what: &str, mut work: impl FnMut(&str)) {
    for family in FAMILIES {
        let mut per_byte = Vec::new();
        for len in SIZES {
            let t = text(family, len);
            steps::take();
            work(&t);
            let n = steps::take();
            let pb = n as f64 / t.len() as f64;
            assert!(
                pb <= MAX_STEPS_PER_BYTE,
                "{what} on {:?} at {len} bytes: {n} steps, {pb:.1} per byte",
                family.name
            );
            per_byte.push(pb.max(1.0));
        }
        let growth = per_byte[1] / per_byte[0];
        assert!(
            growth <= MAX_GROWTH,
            "{what} on {:?}: work per byte grew {growth:.2}× from 64 KiB to 256 KiB",
            family.name
        );
    }
}

#[test]
fn detection_is_linear_on_every_adversarial_family() {
    check("detect", |t| {
        let spans = detect(t);
        // Spans are sorted and disjoint, so there are never more than the characters.
        assert!(spans.windows(2).all(|w| w[0].end <= w[1].start));
        assert!(spans.len() <= t.chars().count());
    });
}

#[test]
fn redaction_and_restoration_are_linear_on_every_adversarial_family() {
    check("redact+restore", |t| {
        let spans = detect(t);
        steps::take();
        let (red, map) = redact(t, &spans);
        assert_eq!(map.restore(&red), t);
    });
}

#[test]
fn difficulty_features_are_linear_on_every_adversarial_family() {
    let model = DifficultyModel::builtin().unwrap();
    check("difficulty", |t| {
        let s = model.score(t);
        assert!((0.0..=1.0).contains(&s));
    });
}

#[test]
fn steps_count_the_scanners_work() {
    // The guard is only as good as the counter: a text with candidates must count some.
    steps::take();
    detect("call +1 555 123 4567 or mail a@b.co");
    assert!(steps::take() > 20);
}
