//! Spend accounting for Watershed: the ledger of every dispatched request
//! (SQLite by default, behind one store interface), the price table and the
//! cost of a request's usage, reports over the ledger's daily rollups, the
//! capacity planner, and the HTML dashboard (figures, server-side SVG charts,
//! the page) that the gateway serves.

pub mod charts;
pub mod clock;
pub mod dashboard;
pub mod error;
pub mod ledger;
pub mod page;
pub mod planner;
pub mod pricing;
pub mod render;
pub mod report;

pub use error::LedgerError;
