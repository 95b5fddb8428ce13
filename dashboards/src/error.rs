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

    /// Whether this says the database could not be reached (or is starting
    /// or stopping) rather than that it refused what it was asked: a gateway
    /// starts degraded on the first kind and refuses to start on the second.
    pub fn is_unreachable(&self) -> bool {
        fn sqlx_unreachable(e: &sqlx::Error) -> bool {
            match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // SQLSTATE class 08 (connection exception) and 57 (operator
                // intervention: shutting down, starting up).
                sqlx::Error::Database(d) => d
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57")),
                _ => false,
            }
        }
        match self {
            LedgerError::Unavailable | LedgerError::Timeout(_) => true,
            LedgerError::Database(e) => sqlx_unreachable(e),
            LedgerError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => sqlx_unreachable(e),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_database_that_is_away_counts_as_unreachable() {
        let io = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(LedgerError::Database(io()).is_unreachable());
        assert!(LedgerError::Database(sqlx::Error::PoolTimedOut).is_unreachable());
        assert!(LedgerError::Migrate(sqlx::migrate::MigrateError::Execute(io())).is_unreachable());
        assert!(LedgerError::Timeout(std::time::Duration::from_secs(1)).is_unreachable());
        assert!(LedgerError::Unavailable.is_unreachable());
        // A database that answers and refuses is a different matter.
        assert!(
            !LedgerError::Migrate(sqlx::migrate::MigrateError::VersionMissing(7)).is_unreachable()
        );
        assert!(!LedgerError::Database(sqlx::Error::RowNotFound).is_unreachable());
        assert!(!LedgerError::Invalid("bad".into()).is_unreachable());
    }
}
