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
