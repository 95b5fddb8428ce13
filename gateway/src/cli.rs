//! The command line: `serve`, `classify`, `policy check`, and the commands that print. This is
//! the one module allowed to write to stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config;

#[derive(Debug, Parser)]
#[command(
    name = "watershed",
    version,
    about = "One endpoint for all of a company's LLM traffic"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the OpenAI-compatible HTTP API.
    Serve {
        /// Configuration file (default: the embedded config/default.yaml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (default: the config's `listen`, else 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Score JSON Lines from stdin (`prompt` or `messages`): one JSON object per
    /// line with `difficulty`, `privacy` and `pii` spans.
    Classify {
        /// Configuration whose `server.default_privacy` is the lowest level
        /// (default: the embedded config).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Routing policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a configuration file and print every error with file:line:col.
    Check { file: PathBuf },
    /// Show how a request would be classified and routed, and why: detections
    /// (kinds and spans, never values), difficulty, budget state, each rule
    /// checked up to the one that matched, and the targets.
    Explain {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// A chat request body as JSON, or {"headers": {...}, "body": {...}} to
        /// give headers such as x-watershed-privacy too.
        #[arg(long)]
        request: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Serve { config, listen } => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(crate::serve::serve(config, listen)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Classify { config } => classify(config),
        Command::Policy {
            command: PolicyCommand::Explain { config, request },
        } => match explain(&config, &request) {
            Ok(v) => {
                println!("{v:#}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => match config::load(Some(&file)) {
            Ok(loaded) => {
                println!(
                    "{}: ok ({} models, {} routes)",
                    file.display(),
                    loaded.config.models.len(),
                    loaded.config.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn explain(
    config_path: &std::path::Path,
    request: &std::path::Path,
) -> Result<serde_json::Value, String> {
    use serde_json::{json, Value};
    let loaded = config::load(Some(config_path)).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(request)
        .map_err(|e| format!("{}: cannot read it: {e}", request.display()))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", request.display()))?;
    let (headers, body) = match v.get("body") {
        Some(body) => (
            v.get("headers").cloned().unwrap_or(Value::Null),
            body.clone(),
        ),
        None => (Value::Null, v),
    };
    let req = watershed_providers::openai::parse_chat_request(&body)
        .map_err(|e| format!("{}: {e}", request.display()))?;
    let header = crate::http::chat::PRIVACY_HEADER;
    let declared = match headers.get(header).and_then(Value::as_str) {
        None => None,
        Some(s) => Some(
            s.trim()
                .parse::<watershed_policies::PrivacyLevel>()
                .map_err(|_| format!("{}: invalid {header} {s:?}", request.display()))?,
        ),
    };
    let cfg = &loaded.config;
    let (facts, evidence) = crate::classify::request_facts(cfg, &req, declared);
    let e = watershed_policies::explain(cfg, &facts, &evidence);
    let outcome = match &e.outcome {
        Ok(targets) => json!({
            "route": e.rules.iter().find(|r| r.matched).map(|r| r.route.clone()),
            "targets": targets,
        }),
        Err(d) => json!({"denied": {"code": d.code(), "message": d.to_string()}}),
    };
    Ok(json!({
        "model": e.model,
        "privacy": {
            "level": e.privacy.as_str(),
            "declared": declared.map(|l| l.as_str()),
            "default": cfg.server.default_privacy.as_str(),
            "evidence": e.evidence.iter().map(|s| json!({
                "type": s.kind.as_str(),
                "start": s.start,
                "end": s.end,
                "level": s.kind.default_level().as_str(),
            })).collect::<Vec<_>>(),
        },
        "difficulty": e.difficulty,
        "budget": e.budget.as_str(),
        "rules": e.rules.iter().map(|r| json!({
            "route": r.route,
            "matched": r.matched,
            "reason": r.reason,
        })).collect::<Vec<_>>(),
        "outcome": outcome,
    }))
}

fn classify(config: Option<PathBuf>) -> ExitCode {
    let loaded = match config::load(config.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let model = match watershed_policies::difficulty::DifficultyModel::builtin() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: the difficulty model does not load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdin = std::io::stdin().lock();
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match crate::classify::run(stdin, stdout, model, loaded.config.server.default_privacy) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!("{n} lines could not be classified (their output lines hold an error)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use std::io::IsTerminal;
    // llama.cpp's own log (model metadata dumps and the like) arrives under the
    // target "llama-cpp-2"; only its warnings are worth an operator's attention.
    let filter = EnvFilter::try_from_env("WATERSHED_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,llama-cpp-2=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
