//! Starts one mock OpenAI and one mock Anthropic upstream on free ports, prints
//! `{"openai":URL,"anthropic":URL}` on one line, and serves until interrupted
//! (SIGINT). Handy for manual runs, the Python
//! end-to-end tests and the soak script (`scripts/soak.py`).
//!
//! Each line on standard input scripts faults, for both mocks at once:
//!
//! ```text
//! fail N STATUS     the next N requests answer STATUS with the provider's error body
//! hang N            the next N requests never answer
//! drop N            the next N requests are cut after their first event
//! trickle N         the next N requests trickle bytes that never finish
//! delay MS          pause MS between streamed events
//! down              every request answers 503 until `up`
//! up                answer normally again
//! count             print {"openai":N,"anthropic":N}: requests received so far
//! ```
//!
//! An unknown line is answered with `{"error": ...}` on standard output.

use std::io::Write;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use watershed_tests::mock::{Failure, MockUpstream};

fn say(line: &serde_json::Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Applies one control line to both mocks; `Err` says why it was not understood.
fn control(line: &str, mocks: &[&MockUpstream]) -> Result<Option<serde_json::Value>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| -> Result<u64, String> {
        words
            .get(i)
            .ok_or_else(|| format!("\"{line}\": missing a number"))?
            .parse::<u64>()
            .map_err(|e| format!("\"{line}\": {e}"))
    };
    let failure = match words.first().copied() {
        None => return Ok(None),
        Some("count") => {
            return Ok(Some(serde_json::json!({
                "openai": mocks[0].request_count(),
                "anthropic": mocks[1].request_count(),
            })))
        }
        Some("delay") => {
            for m in mocks {
                m.set_chunk_delay(Duration::from_millis(number(1)?));
            }
            return Ok(None);
        }
        Some(switch @ ("down" | "up")) => {
            for m in mocks {
                m.set_down(switch == "down");
            }
            return Ok(None);
        }
        Some("fail") => {
            let status = u16::try_from(number(2)?).map_err(|e| format!("\"{line}\": {e}"))?;
            Failure::Status(status)
        }
        Some("hang") => Failure::Hang,
        Some("drop") => Failure::DropMidStream,
        Some("trickle") => Failure::Trickle,
        Some(other) => return Err(format!("unknown command \"{other}\"")),
    };
    let n = usize::try_from(number(1)?).map_err(|e| format!("\"{line}\": {e}"))?;
    for m in mocks {
        m.fail_next(n, failure);
    }
    Ok(None)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    say(&serde_json::json!({"openai": openai.base_url, "anthropic": anthropic.base_url}))?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut reading = true;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            line = lines.next_line(), if reading => match line? {
                // Standard input closed (or was never open): serve on.
                None => reading = false,
                Some(line) => match control(&line, &[&openai, &anthropic]) {
                    Ok(Some(answer)) => say(&answer)?,
                    Ok(None) => {}
                    Err(e) => say(&serde_json::json!({"error": e}))?,
                },
            },
        }
    }
    openai.shutdown().await;
    anthropic.shutdown().await;
    Ok(())
}
