//! The errors use cases return. Each surface maps them once (`http/error.rs`,
//! the admin socket) and clients see a stable message; details go to the log.

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{reason}")]
    Conflict { reason: String },
    #[error("{reason}")]
    Unauthenticated { reason: String },
    #[error("{reason}")]
    Forbidden { reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{reason}")]
    RateLimited {
        retry_after_secs: u64,
        reason: String,
    },
    /// 503; `retry_after_secs` when the service knows when to come back.
    #[error("{reason}")]
    Unavailable {
        reason: String,
        retry_after_secs: Option<u64>,
    },
    #[error("internal error: {detail}")]
    Internal { detail: String },
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }
}

impl From<crate::store::Error> for Error {
    /// I/O failures of the data dir (disk full, read-only, failing device)
    /// are the operator's to fix and the service may recover: they become
    /// `Unavailable` (503), logged here once with their cause.
    fn from(e: crate::store::Error) -> Self {
        if e.is_io() {
            tracing::error!(error = %e, "database write failed; is the data dir full or read-only?");
            return Self::Unavailable {
                reason: "storage is unavailable; the change was not saved, try again later".into(),
                retry_after_secs: None,
            };
        }
        Self::Internal {
            detail: e.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
