//! The command line: `serve`, `classify`, `report`, `policy check`, and the commands that print. This is
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
    /// Spend for a period from the ledger's daily rollups: requests, tokens,
    /// spend against the all-closed counterfactual, savings, latency, privacy-routed
    /// requests, errors and fallbacks, overall and per group; or, with --plan, the
    /// capacity planner on a plan file.
    Report {
        /// Configuration: ledger url, fleet and counterfactual model (default: the
        /// embedded config/default.yaml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Ledger url (default: the config's ledger.url).
        #[arg(long)]
        ledger: Option<String>,
        /// First day, YYYY-MM-DD UTC (default: 29 days before --to).
        #[arg(long, alias = "since")]
        from: Option<String>,
        /// Last day, included, YYYY-MM-DD UTC (default: today).
        #[arg(long)]
        to: Option<String>,
        /// Group by day, team, key, route, backend or model.
        #[arg(long, default_value = "team")]
        by: String,
        /// Only this team's requests.
        #[arg(long)]
        team: Option<String>,
        /// table, json or csv.
        #[arg(long, default_value = "table")]
        format: String,
        /// Evaluate a capacity plan (YAML, see config/plans/) instead of the ledger.
        #[arg(long)]
        plan: Option<PathBuf>,
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
    /// Derive difficulty.threshold from sample prompts (JSON Lines with `prompt`
    /// or `messages`) so that the given share of them counts as `strong`.
    Calibrate {
        /// Configuration whose difficulty.strong_fraction applies unless given.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Sample prompts, JSON Lines.
        #[arg(long)]
        samples: PathBuf,
        /// Share of traffic meant for strong targets (0..1).
        #[arg(long)]
        strong_fraction: Option<f64>,
    },
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
            let result = rt.block_on(crate::serve::serve(config, listen));
            // Blocking threads still busy (a privacy scan that overran its
            // budget, say) must not hold the exit: the records are flushed by
            // now, so they get a bounded moment and are then left behind.
            rt.shutdown_timeout(SHUTDOWN_BLOCKING_GRACE);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Classify { config } => classify(config),
        Command::Report {
            config,
            ledger,
            from,
            to,
            by,
            team,
            format,
            plan,
        } => {
            let args = by
                .parse()
                .and_then(|by| format.parse().map(|format| (by, format)))
                .map(|(by, format)| crate::report::ReportArgs {
                    config,
                    ledger,
                    from,
                    to,
                    by,
                    team,
                    format,
                    plan,
                })
                .map_err(|e| e.to_string());
            match args.and_then(|a| clock().and_then(|c| crate::report::run(&a, c.now()))) {
                Ok(text) => {
                    print!("{text}");
                    if !text.ends_with('\n') {
                        println!();
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Policy {
            command:
                PolicyCommand::Calibrate {
                    config,
                    samples,
                    strong_fraction,
                },
        } => match calibrate(config.as_deref(), &samples, strong_fraction) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Policy {
            command: PolicyCommand::Explain { config, request },
        } => match clock().and_then(|c| explain(&config, &request, c.now())) {
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
                if let Ok(prices) = crate::state::price_table(&loaded.config) {
                    for id in crate::state::unpriced_targets(&loaded.config, &prices) {
                        eprintln!("warning: {}", crate::state::unpriced_warning(&id));
                    }
                }
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
    now: chrono::DateTime<chrono::Utc>,
) -> Result<serde_json::Value, String> {
    use serde_json::Value;
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
    let header = crate::pipeline::PRIVACY_HEADER;
    let declared = match headers.get(header).and_then(Value::as_str) {
        None => None,
        Some(s) => Some(
            s.trim()
                .parse::<watershed_policies::PrivacyLevel>()
                .map_err(|_| format!("{}: invalid {header} {s:?}", request.display()))?,
        ),
    };
    let mut header_map = axum::http::HeaderMap::new();
    if let Some(h) = headers.as_object() {
        for (k, v) in h {
            if let (Ok(name), Some(Ok(value))) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                v.as_str().map(axum::http::HeaderValue::from_str),
            ) {
                header_map.insert(name, value);
            }
        }
    }
    let cfg = &loaded.config;
    let caller = crate::access::caller(cfg, &header_map)
        .map_err(|e| format!("{}: {}", request.display(), e.message))?;
    let floor = crate::classify::privacy_floor(cfg, declared, &caller);
    let scan = crate::scan::scan_sized(&req, &cfg.scan);
    let mut facts = crate::classify::request_facts(cfg, &req, floor, &scan);
    facts.team = Some(caller.team.clone());
    // The budget state comes from the spend the config's ledger holds now.
    let budget = if crate::budget::scopes_of(cfg, &caller).is_empty() {
        None
    } else {
        let url = cfg.ledger_url(|k| std::env::var(k).ok())?;
        let book = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?
            .block_on(async {
                let store = watershed_dashboards::ledger::open_store(&url).await?;
                let book = match crate::serve::open_shared_budgets(&url, cfg, now).await? {
                    Some(book) => book,
                    None => crate::serve::seed_budgets(&*store, now).await?,
                };
                book.refresh(cfg, &caller, now).await;
                anyhow::Ok(book)
            })
            .map_err(|e| {
                format!(
                    "cannot read spend from ledger {}: {e:#}",
                    watershed_policies::mask_url_password(&url)
                )
            })?;
        let verdict = book.verdict(cfg, &caller, 0.0, now);
        facts.budget = verdict.state;
        Some(verdict.describe(now))
    };
    let e = watershed_policies::explain(cfg, &facts, &scan.evidence);
    let mut v = crate::classify::explanation_json(cfg, &e, declared, &caller, scan.failed.as_ref());
    if let Ok(targets) = &e.outcome {
        if let Some(pools) = crate::pool::describe(cfg, targets) {
            v["pools"] = pools;
        }
    }
    if let Some(detail) = budget {
        v["budget_detail"] =
            serde_json::json!({ "state": facts.budget.as_str(), "detail": detail });
    }
    Ok(v)
}

fn calibrate(
    config_path: Option<&std::path::Path>,
    samples: &std::path::Path,
    strong_fraction: Option<f64>,
) -> Result<String, String> {
    use std::io::BufRead;
    let loaded = config::load(config_path).map_err(|e| e.to_string())?;
    let fraction = strong_fraction
        .or(loaded.config.difficulty.strong_fraction)
        .ok_or("give --strong-fraction or set difficulty.strong_fraction in the config")?;
    if !(0.0..=1.0).contains(&fraction) {
        return Err(format!(
            "--strong-fraction must be between 0 and 1, not {fraction}"
        ));
    }
    let model = watershed_policies::difficulty::DifficultyModel::builtin()
        .map_err(|e| format!("the difficulty model does not load: {e}"))?;
    let file = std::fs::File::open(samples)
        .map_err(|e| format!("{}: cannot open it: {e}", samples.display()))?;
    let mut scores = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", samples.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let text = serde_json::from_str(&line)
            .map_err(|e| e.to_string())
            .and_then(|v| crate::classify::prompt_text(&v))
            .map_err(|e| format!("{}:{}: {e}", samples.display(), i + 1))?;
        scores.push(model.score(&text));
    }
    if scores.is_empty() {
        return Err(format!("{}: no sample prompts", samples.display()));
    }
    let all = scores.clone();
    let threshold =
        watershed_policies::difficulty::threshold_for_strong_fraction(&mut scores, fraction);
    let above = all.iter().filter(|s| **s > threshold).count();
    Ok(format!(
        "# {} sample prompts from {}; {} of them ({:.1} %) score above the threshold\n\
         difficulty:\n  strong_fraction: {fraction}\n  threshold: {threshold:.6}\n",
        all.len(),
        samples.display(),
        above,
        100.0 * above as f64 / all.len() as f64,
    ))
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
    match crate::classify::run(stdin, stdout, model, &loaded.config) {
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

/// How long `serve` waits for blocking threads after the ledger is flushed.
const SHUTDOWN_BLOCKING_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The clock a command decides dates by: the wall clock, or the one
/// `WATERSHED_CLOCK_START` starts.
fn clock() -> Result<watershed_dashboards::clock::SharedClock, String> {
    watershed_dashboards::clock::from_env()
}
