//! Spend accounting for Watershed: the ledger of every dispatched request
//! (SQLite by default, behind one store interface), the price table and the
//! cost of a request's usage, reports over the ledger's daily rollups, and
//! the capacity planner.

pub mod error;
pub mod ledger;
pub mod pricing;

pub use error::LedgerError;
pub mod planner;
pub mod render;
pub mod report;
