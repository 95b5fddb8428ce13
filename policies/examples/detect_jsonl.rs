//! Runs the privacy detectors over JSON Lines on stdin and writes one JSON line of spans
//! per input line on stdout: the detector alone, without the gateway around it, so that
//! `scripts/compare_detectors.py` can measure it beside other tools on the same corpus.
//!
//! Input lines are objects with a `text` (or `prompt`) string; output lines are
//! `{"pii": [{"type": "email", "start": 3, "end": 20}, ...]}` in character offsets, the
//! same shape as `watershed classify` writes. A line that is not such an object gets
//! `{"error": "..."}`, so the output stays aligned with the input. With `--time` it also
//! writes to stderr how long detection alone took, for a throughput that leaves out
//! process start and JSON.

use std::io::{self, BufRead, BufWriter, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use watershed_policies::privacy::detect;

fn main() -> io::Result<()> {
    let timed = std::env::args().any(|a| a == "--time");
    let mut spent = Duration::ZERO;
    let mut bytes = 0usize;
    let stdin = io::stdin();
    let mut out = BufWriter::new(io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Result<Value, _> = serde_json::from_str(&line);
        let text = parsed.as_ref().ok().and_then(|v| {
            v.get("text")
                .or_else(|| v.get("prompt"))
                .and_then(Value::as_str)
        });
        let answer = match text {
            Some(text) => {
                let t0 = Instant::now();
                let found = detect(text);
                spent += t0.elapsed();
                bytes += text.len();
                let spans: Vec<Value> = found
                    .iter()
                    .map(|s| json!({"type": s.kind.as_str(), "start": s.start, "end": s.end}))
                    .collect();
                json!({ "pii": spans })
            }
            None => json!({"error": "expected an object with a \"text\" or \"prompt\" string"}),
        };
        writeln!(out, "{answer}")?;
    }
    out.flush()?;
    if timed {
        let report = json!({"detect_seconds": spent.as_secs_f64(), "bytes": bytes});
        writeln!(io::stderr(), "{report}")?;
    }
    Ok(())
}
