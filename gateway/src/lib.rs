//! Watershed's composition root: configuration loading, the backends built from
//! it, the HTTP surface, metering, trace export and the CLI commands.

pub mod access;
pub mod breaker;
pub mod budget;
pub mod classify;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod extract;
pub mod http;
pub mod meter;
pub mod metrics;
pub mod otlp;
pub mod pipeline;
pub mod pool;
pub mod reload;
pub mod report;
pub mod scan;
pub mod serve;
pub mod state;
pub mod telemetry;
