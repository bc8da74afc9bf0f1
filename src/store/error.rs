//! Storage errors. Mapped once into `service::Error` at the service boundary.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "database {path} is locked by another process (is `sikker serve` already running on this data dir?)"
    )]
    Locked { path: String },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: String,
        source: Box<redb::Error>,
    },
    #[error(
        "database schema version {found} was written by a newer version of sikker (this binary supports up to {supported}); upgrade sikker or restore a backup"
    )]
    NewerSchema { found: u32, supported: u32 },
    #[error("database error: {0}")]
    Db(#[from] Box<redb::Error>),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A backup file that cannot be written or restored, in words.
    #[error("{0}")]
    Backup(String),
    #[error("blocking task failed: {0}")]
    Task(String),
}

impl Error {
    /// The file system failed (full, read-only, I/O error), not the data.
    pub fn is_io(&self) -> bool {
        match self {
            Self::Io { .. } => true,
            Self::Db(e) => matches!(
                **e,
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
            ),
            _ => false,
        }
    }

    pub(crate) fn open(path: &Path, e: redb::DatabaseError) -> Self {
        let path = path.display().to_string();
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Self::Locked { path },
            other => Self::Open {
                path,
                source: Box::new(other.into()),
            },
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Self::Db(Box::new(e.into()))
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::TableError,
    redb::StorageError,
    redb::TransactionError,
    redb::CommitError
);
