//! Starts one mock OpenAI and one mock Anthropic upstream on free ports, prints
//! `{"openai":URL,"anthropic":URL}` on one line, and serves until interrupted.
//! Handy for manual runs and for the Python end-to-end tests.

use std::io::Write;

use watershed_tests::mock::MockUpstream;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let line = serde_json::json!({"openai": openai.base_url, "anthropic": anthropic.base_url});
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    drop(out);
    tokio::signal::ctrl_c().await?;
    openai.shutdown().await;
    anthropic.shutdown().await;
    Ok(())
}
