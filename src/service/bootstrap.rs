//! The one-time bootstrap token that lets the operator create the first
//! admin account. Only its keyed hash is stored, with an expiry.

use std::time::Duration;

use super::{Result, Services};
use crate::crypto;
use crate::store::meta::{self, DbBootstrap};

/// How long a bootstrap token stays valid.
pub const VALIDITY: Duration = Duration::from_secs(24 * 3600);

const PURPOSE: &str = "bootstrap-token";

impl Services {
    /// Issues a fresh token, replacing any earlier one; returns the plaintext,
    /// which is shown once and never stored.
    pub async fn issue_bootstrap_token(&self) -> Result<String> {
        let token = crypto::random_token();
        let rec = DbBootstrap::V1 {
            hash: self.secret.keyed_hash(PURPOSE, token.as_bytes()),
            expires_ms: self.clock.now().plus(VALIDITY).0,
        };
        self.store
            .write(move |txn| meta::set_bootstrap(txn, &rec))
            .await?;
        Ok(token)
    }

    /// Whether `token` is the current, unexpired bootstrap token.
    pub async fn check_bootstrap_token(&self, token: &str) -> Result<bool> {
        let hash = self.secret.keyed_hash(PURPOSE, token.as_bytes());
        let now = self.clock.now().0;
        let rec = self.store.read(meta::bootstrap).await?;
        Ok(match rec {
            Some(DbBootstrap::V1 {
                hash: h,
                expires_ms,
            }) => expires_ms > now && crypto::ct_eq(&h, &hash),
            None => false,
        })
    }
}
