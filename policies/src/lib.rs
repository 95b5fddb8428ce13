//! Watershed's routing policy, kept pure: no IO, no clock, no async, no threads.
//! Text and facts come in; a validated config, classifications and a decision with its
//! reasons go out. The gateway owns reading files and the clock.

pub mod budget;
pub mod capability;
pub mod config;
pub mod difficulty;
pub mod explain;
pub mod level;
pub mod privacy;
pub mod route;
#[doc(hidden)]
pub mod steps;
pub mod yaml;

pub use budget::{
    evaluate_budget, BudgetEval, BudgetLimits, BudgetState, BudgetWindow, OnExhausted,
    SpendSnapshot,
};
pub use capability::{lacking, Capability, Needs, TargetCapabilities};
pub use config::{
    load_config, mask_url_password, otlp_endpoint_problem, ApiKey, BreakerSettings, Config,
    ConfigError, ConfigErrors, DashboardSettings, DifficultySettings, FleetSettings, GpuLayers,
    HealthSettings, JournalFull, JournalSettings, LedgerSettings, LocalSpec, PoolMember, PoolSpec,
    PriceEntry, ProviderKind, RemoteEmbeddings, RemoteSpec, Route, ScanSettings, ServerSettings,
    SharedBudgetSettings, Target, TargetSpec, Team, TelemetrySettings, When, ANONYMOUS_KEY,
    DEFAULT_TEAM,
};
pub use explain::{explain, Explanation, RuleCheck, Skipped};
pub use level::{CmpOp, LevelCondition, LevelSet, NumCondition, PrivacyLevel, UnknownLevel};
pub use privacy::{detect, level_of, PiiKind, PiiSpan};
pub use route::{allowed, decide, skip_reason, Decision, Denial, DenialKind, RequestFacts, Skip};
