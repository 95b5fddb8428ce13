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
use watershed_policies::steps;

const MIB: usize = 1 << 20;
const SIZES: [(usize, &str); 6] = [
    (100, "100 B"),
    (1 << 10, "1 KiB"),
    (16 << 10, "16 KiB"),
    (256 << 10, "256 KiB"),
    (MIB, "1 MiB"),
    (4 * MIB, "4 MiB"),
];

/// The best time in seconds of `f` over enough runs to cover about 8 MiB of text (five
/// at least). The best rather than the median, because on a shared machine the noise
/// is other processes taking the core, which only ever adds time.
fn best_secs(len: usize, mut f: impl FnMut()) -> f64 {
    let runs = (8 * MIB / len.max(1)).clamp(5, 80_000);
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
    // (family, detect ms/MiB at every size, the difficulty score's)
    let mut summary = Vec::new();
    for family in FAMILIES
        .iter()
        .filter(|f| only.as_ref().is_none_or(|o| f.name.contains(o.as_str())))
    {
        let mut d = [0.0; SIZES.len()];
        let mut c = [0.0; SIZES.len()];
        let mut w = [0.0; SIZES.len()];
        for (k, &(len, label)) in SIZES.iter().enumerate() {
            let t = text(family, len);
            steps::take();
            let spans = detect(&t).len();
            w[k] = steps::take() as f64 / t.len() as f64;
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
        summary.push((family.name, d, c, w));
    }
    for (what, detector) in [("detect", true), ("difficulty score", false)] {
        println!();
        println!("{what}, ms per MiB by size; ratio = ms/MiB at 4 MiB over ms/MiB at 16 KiB:");
        if detector {
            // The counted work per byte (`steps`) is deterministic, so it shows the
            // algorithm's growth without the machine's noise.
            println!("(work/B: the detectors' counted steps per byte at 16 KiB and 4 MiB)");
        }
        println!();
        let sizes: Vec<&str> = SIZES.iter().map(|(_, label)| *label).collect();
        let (head, rule) = if detector {
            (" work/B 16 KiB | work/B 4 MiB |", "---:|---:|")
        } else {
            ("", "")
        };
        println!("| family | {} | ratio |{head}", sizes.join(" | "));
        println!("|---|{}---:|{rule}", "---:|".repeat(SIZES.len()));
        for (name, d, c, w) in &summary {
            let row = if detector { d } else { c };
            let cells: Vec<String> = row.iter().map(|x| format!("{x:.1}")).collect();
            let work = if detector {
                format!(" {:.1} | {:.1} |", w[2], w[5])
            } else {
                String::new()
            };
            let ratio = row[5] / row[2];
            println!("| {name} | {} | {ratio:.2} |{work}", cells.join(" | "));
        }
    }
    let worst = summary
        .iter()
        .flat_map(|(_, d, c, _)| [d[5], c[5]])
        .fold(0.0, f64::max);
    let worst_ratio = summary
        .iter()
        .flat_map(|(_, d, c, _)| [d[5] / d[2], c[5] / c[2]])
        .fold(0.0, f64::max);
    println!();
    println!(
        "worst at 4 MiB: {worst:.1} ms/MiB (target <= 100); worst ratio 4 MiB / 16 KiB: {worst_ratio:.2}"
    );
}
