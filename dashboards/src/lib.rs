//! Spend accounting for Watershed: the ledger of every dispatched request
//! (SQLite by default, behind one store interface), the price table and the
//! cost of a request's usage.

pub mod error;
pub mod ledger;
pub mod pricing;

pub use error::LedgerError;
pub mod planner;
pub mod render;
