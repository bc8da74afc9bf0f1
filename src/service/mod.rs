//! Use cases. Each takes `now` from the clock it is given and talks to the
//! store; none knows about HTTP.

pub mod admin;
pub mod bootstrap;
pub mod error;

use std::path::PathBuf;

use crate::crypto::SecretKey;
use crate::domain::{Clock, UnixMillis};
use crate::store::Store;

pub use error::{Error, Result};

/// How the services were started: inside `sikker serve`, or by an offline
/// `sikker admin` command holding the data dir lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Server,
    Offline,
}

/// Everything a use case may need, built once by the composition root.
#[derive(Debug)]
pub struct Services {
    pub store: Store,
    pub clock: Clock,
    pub secret: SecretKey,
    pub mode: Mode,
    pub started: UnixMillis,
    pub data_dir: PathBuf,
}

impl Services {
    pub fn new(
        store: Store,
        clock: Clock,
        secret: SecretKey,
        mode: Mode,
        data_dir: PathBuf,
    ) -> Self {
        let started = clock.now();
        Self {
            store,
            clock,
            secret,
            mode,
            started,
            data_dir,
        }
    }

    /// Liveness plus a read of the database, for `/healthz`.
    pub async fn health(&self) -> Result<()> {
        self.store.read(crate::store::meta::schema_version).await?;
        Ok(())
    }
}
