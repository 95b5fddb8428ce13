//! Errors of the ledger, pricing and reports, each with a small code that the
//! gateway maps to an HTTP status in one place.

use thiserror::Error;
use watershed_providers::ErrorCode;

#[derive(Debug, Error)]
pub enum LedgerError {
    /// The ledger URL names a scheme this build cannot store into.
    #[error("unsupported ledger url \"{0}\" (expected sqlite://PATH or postgres://...)")]
    UnsupportedUrl(String),
    /// The database refused or failed a statement.
    #[error("ledger database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed to apply or the database is ahead of this build.
    #[error("ledger migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The background writer has stopped; nothing more can be recorded.
    #[error("ledger writer has stopped")]
    WriterClosed,
    /// The database could not be reached; the records wait in the journal.
    #[error("ledger database unavailable; records are kept in the journal")]
    Unavailable,
    /// A database operation did not finish within its bound.
    #[error("ledger database operation timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// A value read back from the database does not fit the record.
    #[error("invalid ledger value in column {column}: {message}")]
    Corrupt { column: String, message: String },
    /// Report parameters or a plan that cannot be evaluated.
    #[error("{0}")]
    Invalid(String),
}

impl LedgerError {
    /// The stable code the gateway turns into a status.
    pub fn code(&self) -> ErrorCode {
        match self {
            LedgerError::Invalid(_) => ErrorCode::BadRequest,
            LedgerError::UnsupportedUrl(_)
            | LedgerError::Database(_)
            | LedgerError::Migrate(_)
            | LedgerError::WriterClosed
            | LedgerError::Unavailable
            | LedgerError::Timeout(_)
            | LedgerError::Corrupt { .. } => ErrorCode::Internal,
        }
    }
}
