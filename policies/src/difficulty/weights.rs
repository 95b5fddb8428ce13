//! Loading and validating the difficulty model's weights file.
//!
//! The file is JSON written by `scripts/train_difficulty.py`: the feature
//! settings, the dense-feature standardisation and weights, and the non-zero
//! hashed weights as base64 little-endian u32 indices and f32 values (compact,
//! and exact, which the Rust/Python parity test depends on).

use serde::Deserialize;

use super::features::{Groups, CHAR_NS, DENSE_LEN, DENSE_NAMES, TAIL_BYTES};
use super::DifficultyModel;

/// The weights-file format this code reads.
const FORMAT_VERSION: u32 = 1;
/// Bounds on the hash table size: 2^8 is useless, 2^24 f32s is 64 MiB.
const MIN_BITS: u32 = 8;
const MAX_BITS: u32 = 24;

/// Why a weights file could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DifficultyError {
    /// The file is not the JSON shape the trainer writes.
    #[error("difficulty weights are not valid JSON for format {FORMAT_VERSION}: {0}")]
    Json(String),
    /// The file is from a newer or older trainer.
    #[error("difficulty weights have format {found}, this build reads format {FORMAT_VERSION}")]
    Format {
        /// The format number the file declares.
        found: u32,
    },
    /// The file parsed but its contents are inconsistent.
    #[error("difficulty weights are invalid: {0}")]
    Invalid(String),
}

impl DifficultyError {
    /// A short stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            DifficultyError::Json(_) => "difficulty_weights_json",
            DifficultyError::Format { .. } => "difficulty_weights_format",
            DifficultyError::Invalid(_) => "difficulty_weights_invalid",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    format: u32,
    features: RawFeatures,
    bias: f64,
    dense: RawDense,
    sparse: RawSparse,
    /// Provenance (training data, hyper-parameters, parity fixtures); not used here.
    #[allow(dead_code)]
    meta: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeatures {
    bits: u32,
    norm_power: f64,
    groups: Vec<String>,
    char_ns: Vec<usize>,
    tail_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDense {
    names: Vec<String>,
    mean: Vec<f64>,
    std: Vec<f64>,
    weights: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSparse {
    count: usize,
    indices_u32le_b64: String,
    values_f32le_b64: String,
}

fn invalid(msg: impl Into<String>) -> DifficultyError {
    DifficultyError::Invalid(msg.into())
}

/// Parses, then checks every field against what this build's features compute.
pub(super) fn parse(json: &str) -> Result<DifficultyModel, DifficultyError> {
    let raw: RawFile =
        serde_json::from_str(json).map_err(|e| DifficultyError::Json(e.to_string()))?;
    if raw.format != FORMAT_VERSION {
        return Err(DifficultyError::Format { found: raw.format });
    }
    let f = &raw.features;
    if !(MIN_BITS..=MAX_BITS).contains(&f.bits) {
        return Err(invalid(format!(
            "bits {} outside {MIN_BITS}..={MAX_BITS}",
            f.bits
        )));
    }
    if !f.norm_power.is_finite() || !(0.0..=1.0).contains(&f.norm_power) {
        return Err(invalid(format!(
            "norm_power {} outside 0..=1",
            f.norm_power
        )));
    }
    if f.char_ns != CHAR_NS {
        return Err(invalid(format!(
            "char_ns {:?}, this build computes {CHAR_NS:?}",
            f.char_ns
        )));
    }
    if f.tail_bytes != TAIL_BYTES {
        return Err(invalid(format!(
            "tail_bytes {}, this build uses {TAIL_BYTES}",
            f.tail_bytes
        )));
    }
    let mut groups = Groups {
        word: false,
        bigram: false,
        char: false,
        tail: false,
    };
    for g in &f.groups {
        match g.as_str() {
            "word" => groups.word = true,
            "bigram" => groups.bigram = true,
            "char" => groups.char = true,
            "tail" => groups.tail = true,
            other => return Err(invalid(format!("unknown feature group \"{other}\""))),
        }
    }

    let d = &raw.dense;
    if d.names != DENSE_NAMES {
        return Err(invalid(format!(
            "dense features {:?}, this build computes {DENSE_NAMES:?}",
            d.names
        )));
    }
    let dense_mean = dense_array("mean", &d.mean)?;
    let dense_std = dense_array("std", &d.std)?;
    let dense_weights = dense_array("weights", &d.weights)?;
    if let Some(s) = dense_std.iter().find(|s| **s <= 0.0) {
        return Err(invalid(format!("dense std {s} is not positive")));
    }
    if !raw.bias.is_finite() {
        return Err(invalid(format!("bias {} is not finite", raw.bias)));
    }

    let indices = base64_decode(&raw.sparse.indices_u32le_b64)?;
    let values = base64_decode(&raw.sparse.values_f32le_b64)?;
    let count = raw.sparse.count;
    if indices.len() != count * 4 || values.len() != count * 4 {
        return Err(invalid(format!(
            "sparse count {count} but {} index bytes and {} value bytes",
            indices.len(),
            values.len()
        )));
    }
    let size = 1usize << f.bits;
    let mut weights = vec![0f32; size];
    for (ib, vb) in indices.chunks_exact(4).zip(values.chunks_exact(4)) {
        let index = u32::from_le_bytes([ib[0], ib[1], ib[2], ib[3]]) as usize;
        let value = f32::from_le_bytes([vb[0], vb[1], vb[2], vb[3]]);
        if !value.is_finite() {
            return Err(invalid(format!("weight of bucket {index} is not finite")));
        }
        match weights.get_mut(index) {
            Some(slot) => *slot = value,
            None => return Err(invalid(format!("bucket {index} outside a table of {size}"))),
        }
    }

    Ok(DifficultyModel {
        bits: f.bits,
        norm_power: f.norm_power,
        groups,
        weights,
        bias: raw.bias,
        dense_mean,
        dense_std,
        dense_weights,
    })
}

fn dense_array(what: &str, values: &[f64]) -> Result<[f64; DENSE_LEN], DifficultyError> {
    let arr: [f64; DENSE_LEN] = values.try_into().map_err(|_| {
        invalid(format!(
            "dense {what} has {} values, expected {DENSE_LEN}",
            values.len()
        ))
    })?;
    if let Some(v) = arr.iter().find(|v| !v.is_finite()) {
        return Err(invalid(format!("dense {what} value {v} is not finite")));
    }
    Ok(arr)
}

/// Standard base64 (RFC 4648, with padding); small enough not to need a crate.
fn base64_decode(text: &str) -> Result<Vec<u8>, DifficultyError> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return Err(invalid(format!(
            "base64 length {} is not a multiple of 4",
            bytes.len()
        )));
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let chunks = bytes.len() / 4;
    for (i, chunk) in bytes.chunks_exact(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return Err(invalid("misplaced base64 padding"));
        }
        let mut acc = 0u32;
        for &c in &chunk[..4 - pad] {
            let v = sextet(c).ok_or_else(|| invalid(format!("invalid base64 byte 0x{c:02x}")))?;
            acc = (acc << 6) | v;
        }
        acc <<= 6 * pad as u32;
        let decoded = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_vectors() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
    }

    #[test]
    fn base64_rejects_malformed_input() {
        assert!(base64_decode("Zg=").is_err());
        assert!(base64_decode("Zg==Zg==").is_err());
        assert!(base64_decode("Z===").is_err());
        assert!(base64_decode("Zm9*").is_err());
    }
}
