//! Latency benchmark of the builtin difficulty classifier.
//!
//! `cargo bench -p watershed-policies --bench difficulty` prints p50/p99/max over
//! 1,000 scorings of a ~2,000-token prompt (the issue's budget: p99 <= 1 ms),
//! and the wall time to score 14,000 prompts of mixed length (`watershed
//! classify` must do that in under 20 s, IO and privacy detection included).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use watershed_policies::difficulty::DifficultyModel;

/// About 2,000 tokens: prose, a question and a code block, ~8,000 bytes.
fn long_prompt() -> String {
    let prose = "The quarterly report shows revenue growth of 12% across the three regions, \
                 but the margin fell because freight costs doubled after the port closures. ";
    let code = "```python\ndef rolling_mean(xs, k):\n    out = []\n    for i in range(len(xs) - k + 1):\n        \
                out.append(sum(xs[i:i + k]) / k)\n    return out\n```\n";
    let mut text = String::new();
    while text.len() < 7_600 {
        text.push_str(prose);
        text.push_str(code);
    }
    text.push_str(
        "\n\nGiven all of the above, explain step by step why the margin fell, estimate the \
                   effect of a 5% freight discount, and rewrite rolling_mean to run in O(n).",
    );
    text
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let model = match DifficultyModel::builtin() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("builtin model failed to load: {e}");
            return;
        }
    };
    let prompt = long_prompt();
    let words = prompt.split_whitespace().count();
    for _ in 0..100 {
        black_box(model.score(black_box(&prompt)));
    }
    let mut times = Vec::with_capacity(1_000);
    for _ in 0..1_000 {
        let start = Instant::now();
        black_box(model.score(black_box(&prompt)));
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "difficulty score, {} bytes / {words} words (~2,000 tokens), 1000 runs: p50 {:?}  p99 {:?}  max {:?}",
        prompt.len(),
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        times[times.len() - 1],
    );

    // 14,000 prompts from 40 to ~8,000 bytes, like a mixed classify batch.
    let prompts: Vec<String> = (0..14_000usize)
        .map(|i| {
            let cut = 40 + (i * 7_919) % (prompt.len() - 40);
            let mut end = cut;
            while !prompt.is_char_boundary(end) {
                end -= 1;
            }
            format!("#{i} {}", &prompt[..end])
        })
        .collect();
    let total_bytes: usize = prompts.iter().map(String::len).sum();
    let start = Instant::now();
    let mut acc = 0.0;
    for p in &prompts {
        acc += model.score(p);
    }
    black_box(acc);
    println!(
        "difficulty score, 14000 prompts ({:.1} MB): {:?} total",
        total_bytes as f64 / 1e6,
        start.elapsed()
    );
}
