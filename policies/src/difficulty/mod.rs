//! The difficulty classifier: a score in [0, 1] saying how much a prompt needs
//! the stronger model, computed in-process in microseconds.
//!
//! The model is a logistic regression over hashed word, word-bigram, byte
//! n-gram and prompt-tail features plus a few dense text statistics. It is
//! trained by `scripts/train_difficulty.py` on the labelled routing data and the
//! weights are embedded in the binary; `scripts/eval_difficulty.py` measures it
//! with the RouteLLM metrics (see BENCHMARKS.md).

mod features;
mod weights;

use std::sync::OnceLock;

use features::{Groups, Sink, DENSE_LEN};

pub use weights::DifficultyError;

/// The committed weights, produced by `scripts/train_difficulty.py`.
const BUILTIN_WEIGHTS: &str = include_str!("../../assets/difficulty_weights.json");

/// A trained difficulty model. Cheap to share; scoring takes `&self`.
#[derive(Clone)]
pub struct DifficultyModel {
    bits: u32,
    norm_power: f64,
    groups: Groups,
    /// Hashed weights, one per bucket (`1 << bits` of them).
    weights: Vec<f32>,
    bias: f64,
    dense_mean: [f64; DENSE_LEN],
    dense_std: [f64; DENSE_LEN],
    dense_weights: [f64; DENSE_LEN],
}

impl std::fmt::Debug for DifficultyModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DifficultyModel")
            .field("bits", &self.bits)
            .field("norm_power", &self.norm_power)
            .field("groups", &self.groups)
            .field(
                "nonzero_weights",
                &self.weights.iter().filter(|w| **w != 0.0).count(),
            )
            .finish_non_exhaustive()
    }
}

/// Sums the weights of every feature occurrence, per group.
struct WeightSum<'a> {
    weights: &'a [f32],
    sums: [f64; 4],
}

impl Sink for WeightSum<'_> {
    #[inline]
    fn add(&mut self, group: usize, bucket: usize) {
        // Buckets come from the top `bits` bits of a hash, so they are always in
        // range; `get` keeps that a proof rather than a panic site.
        if let Some(w) = self.weights.get(bucket) {
            self.sums[group] += f64::from(*w);
        }
    }
}

impl DifficultyModel {
    /// The model trained from the routing data and embedded at build time.
    ///
    /// Parsed once; a test parses the same bytes, so an error here means the
    /// committed weights file was edited without running the tests.
    pub fn builtin() -> Result<&'static DifficultyModel, DifficultyError> {
        static BUILTIN: OnceLock<Result<DifficultyModel, DifficultyError>> = OnceLock::new();
        BUILTIN
            .get_or_init(|| DifficultyModel::from_json(BUILTIN_WEIGHTS))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Parses and validates a weights file written by `scripts/train_difficulty.py`.
    pub fn from_json(json: &str) -> Result<DifficultyModel, DifficultyError> {
        weights::parse(json)
    }

    /// The difficulty of `text` in [0, 1]: higher means the strong model is more
    /// likely to do better on it than the weak one.
    pub fn score(&self, text: &str) -> f64 {
        let collapsed = features::collapse(text);
        let mut sink = WeightSum {
            weights: &self.weights,
            sums: [0.0; 4],
        };
        let counts = features::walk_sparse(&collapsed, self.bits, self.groups, &mut sink);
        let mut z = self.bias;
        for (sum, count) in sink.sums.iter().zip(counts) {
            if count > 0 {
                z += sum / (count as f64).powf(self.norm_power);
            }
        }
        let dense = features::dense(text);
        for (i, x) in dense.iter().enumerate().take(DENSE_LEN) {
            z += self.dense_weights[i] * ((x - self.dense_mean[i]) / self.dense_std[i]);
        }
        1.0 / (1.0 + (-z).exp())
    }

    /// The hashed features of `text` as (bucket, value), sorted by bucket: the
    /// same numbers the training script's `feature_arrays` computes.
    #[cfg(test)]
    fn sparse_features(&self, text: &str) -> Vec<(usize, f64)> {
        struct Collect(Vec<(usize, usize)>);
        impl Sink for Collect {
            fn add(&mut self, group: usize, bucket: usize) {
                self.0.push((group, bucket));
            }
        }
        let collapsed = features::collapse(text);
        let mut sink = Collect(Vec::new());
        let counts = features::walk_sparse(&collapsed, self.bits, self.groups, &mut sink);
        let mut map = std::collections::BTreeMap::<usize, f64>::new();
        for (group, bucket) in sink.0 {
            *map.entry(bucket).or_default() += 1.0 / (counts[group] as f64).powf(self.norm_power);
        }
        map.into_iter().collect()
    }
}

/// The threshold that sends `strong_fraction` of these sample scores to the
/// strong model, under the rule "strong when score > threshold" (issue point 6).
///
/// `scores` is sorted in place (descending). With k = round(fraction * n), the
/// threshold lies halfway between the k-th and the (k+1)-th highest score, so
/// exactly k samples are above it unless scores tie at the boundary. A fraction
/// of 0 (or below) gives the highest score, so nothing is above it; a fraction
/// of 1 (or above) gives a value just below the lowest score. No samples (or
/// only NaN ones) give 0.5; NaN scores are ignored and a NaN fraction counts as 0.
pub fn threshold_for_strong_fraction(scores: &mut [f64], strong_fraction: f64) -> f64 {
    scores.sort_unstable_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        (false, false) => b.total_cmp(a),
    });
    // NaNs sorted last; they take no part in the threshold.
    let n = scores.iter().filter(|s| !s.is_nan()).count();
    if n == 0 {
        return 0.5;
    }
    let fraction = if strong_fraction.is_nan() {
        0.0
    } else {
        strong_fraction.clamp(0.0, 1.0)
    };
    let k = (fraction * n as f64).round() as usize;
    if k == 0 {
        return scores[0];
    }
    if k >= n {
        let lowest = scores[n - 1];
        return lowest - (lowest.abs() * f64::EPSILON).max(f64::MIN_POSITIVE);
    }
    scores[k - 1] / 2.0 + scores[k] / 2.0
}

#[cfg(test)]
mod tests;
