//! Linear-time benchmark of the privacy detectors and the difficulty score on
//! adversarial inputs (`scripts/bench_detectors.sh`).
//!
//! For every family of `tests/adversarial` (the same texts the linear-time guard test
//! counts work on) and every size from 100 B to 4 MiB it prints the best time of
//! `detect` and of `DifficultyModel::score`, both also in ms per MiB, and then per
//! family the ratio of ms/MiB at 4 MiB to ms/MiB at 16 KiB: about 1 means linear,
//! 256 would mean quadratic. The target is at most 100 ms per MiB for every family.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/adversarial/mod.rs"]
mod adversarial;

use std::hint::black_box;
use std::time::Instant;

use adversarial::{text, FAMILIES};
use watershed_policies::detect;
use watershed_policies::difficulty::DifficultyModel;

const MIB: usize = 1 << 20;
const SIZES: [(usize, &str); 6] = [
    (100, "100 B"),
    (1 << 10, "1 KiB"),
    (16 << 10, "16 KiB"),
    (256 << 10, "256 KiB"),
    (MIB, "1 MiB"),
    (4 * MIB, "4 MiB"),
];

/// The best time in seconds of `f` over enough runs to cover about 1 MiB of text (three
/// at least). The best rather than the median, because on a shared machine the noise
/// is other processes taking the core, which only ever adds time.
fn best_secs(len: usize, mut f: impl FnMut()) -> f64 {
    let runs = (MIB / len.max(1)).clamp(3, 20_000);
    let times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.into_iter().fold(f64::INFINITY, f64::min)
}

fn per_mib(secs: f64, len: usize) -> f64 {
    secs * 1e3 * MIB as f64 / len as f64
}

fn main() {
    // An optional argument keeps only the families whose name contains it.
    let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let model = match DifficultyModel::builtin() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("builtin model failed to load: {e}");
            return;
        }
    };
    println!(
        "| family | size | spans | detect ms | detect ms/MiB | difficulty ms | difficulty ms/MiB |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    // (family, detect ms/MiB at 16 KiB and 4 MiB, difficulty the same)
    let mut summary = Vec::new();
    for family in FAMILIES
        .iter()
        .filter(|f| only.as_ref().is_none_or(|o| f.name.contains(o.as_str())))
    {
        let mut d = [0.0; SIZES.len()];
        let mut c = [0.0; SIZES.len()];
        for (k, &(len, label)) in SIZES.iter().enumerate() {
            let t = text(family, len);
            let spans = detect(&t).len();
            let ds = best_secs(t.len(), || {
                black_box(detect(black_box(&t)));
            });
            let cs = best_secs(t.len(), || {
                black_box(model.score(black_box(&t)));
            });
            d[k] = per_mib(ds, t.len());
            c[k] = per_mib(cs, t.len());
            println!(
                "| {} | {label} | {spans} | {:.3} | {:.1} | {:.3} | {:.1} |",
                family.name,
                ds * 1e3,
                d[k],
                cs * 1e3,
                c[k]
            );
        }
        summary.push((family.name, d, c));
    }
    println!();
    println!("| family | detect ms/MiB at 4 MiB | ratio 4 MiB / 16 KiB | difficulty ms/MiB at 4 MiB | ratio 4 MiB / 16 KiB |");
    println!("|---|---:|---:|---:|---:|");
    let (mut worst, mut worst_ratio) = (0.0f64, 0.0f64);
    for (name, d, c) in &summary {
        let (dr, cr) = (d[5] / d[2], c[5] / c[2]);
        worst = worst.max(d[5]).max(c[5]);
        worst_ratio = worst_ratio.max(dr).max(cr);
        println!("| {name} | {:.1} | {dr:.2} | {:.1} | {cr:.2} |", d[5], c[5]);
    }
    println!();
    println!(
        "worst at 4 MiB: {worst:.1} ms/MiB (target <= 100); worst ratio 4 MiB / 16 KiB: {worst_ratio:.2}"
    );
}
