//! JWT signing-key rotation: the ring of the current key (signs) and the
//! previous one (still verifies), loaded from the store, rotated on demand
//! (`sikker admin jwt rotate`) and by the rotation job once the current key
//! is older than `--jwt-rotate-days`.

use std::sync::RwLock;

use serde::Serialize;

use super::{Error, Result, Services};
use crate::crypto::{self, SecretKey};
use crate::domain::UnixMillis;
use crate::jwt::{Claims, JwtError, JwtKey};
use crate::store::{self, Store, jwtkeys::JwtKeyRecord};

const PURPOSE: &str = "jwt-signing-key";

/// The keys in use, newest last.
#[derive(Debug)]
pub struct JwtRing {
    keys: RwLock<Vec<(JwtKeyRecord, JwtKey)>>,
}

/// A key as shown to the operator (never the key material).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    pub kid: u32,
    pub created: String,
    pub current: bool,
}

fn derive(secret: &SecretKey, rec: &JwtKeyRecord) -> JwtKey {
    match &rec.seed {
        Some(seed) => JwtKey::with_kid(rec.kid, &secret.keyed_hash(PURPOSE, seed)),
        // Schema v4's key: the same derivation with no seed, and no kid.
        None => JwtKey::new(&secret.keyed_hash(PURPOSE, b"")),
    }
}

fn internal(detail: &str) -> Error {
    Error::Internal {
        detail: detail.to_owned(),
    }
}

impl JwtRing {
    /// Loads the stored keys, rotating first when the current key is older
    /// than `max_age_ms` or there is no seeded key yet (a new store, or one
    /// just migrated from v4). Blocking.
    pub fn load(
        store: &Store,
        secret: &SecretKey,
        now: UnixMillis,
        max_age_ms: i64,
    ) -> Result<Self> {
        let seed = crypto::random_bytes::<32>();
        let rotated = store
            .write_blocking(|txn| store::jwtkeys::rotate_if_older(txn, seed, now.0, max_age_ms))?;
        let recs = match rotated {
            Some(r) => r,
            None => store.read_blocking(store::jwtkeys::all)?,
        };
        let ring = Self {
            keys: RwLock::new(Vec::new()),
        };
        ring.replace(secret, recs)?;
        Ok(ring)
    }

    fn replace(&self, secret: &SecretKey, recs: Vec<JwtKeyRecord>) -> Result<()> {
        let keys = recs
            .into_iter()
            .map(|r| {
                let k = derive(secret, &r);
                (r, k)
            })
            .collect();
        *self
            .keys
            .write()
            .map_err(|_| internal("JWT key ring lock"))? = keys;
        Ok(())
    }

    fn sign(&self, claims: &Claims) -> Result<String> {
        let keys = self
            .keys
            .read()
            .map_err(|_| internal("JWT key ring lock"))?;
        let (_, k) = keys.last().ok_or_else(|| internal("no JWT signing key"))?;
        Ok(k.sign(claims))
    }

    fn verify(&self, token: &str, now_s: i64) -> std::result::Result<Claims, JwtError> {
        let kid = crate::jwt::kid_of(token)?;
        let keys = self.keys.read().map_err(|_| JwtError::UnknownKey)?;
        let (_, k) = keys
            .iter()
            .find(|(_, k)| k.kid() == kid)
            .ok_or(JwtError::UnknownKey)?;
        k.verify(token, now_s)
    }

    fn info(&self) -> Vec<KeyInfo> {
        let Ok(keys) = self.keys.read() else {
            return Vec::new();
        };
        let n = keys.len();
        keys.iter()
            .enumerate()
            .map(|(i, (r, _))| KeyInfo {
                kid: r.kid,
                created: UnixMillis(r.created_ms).rfc3339(),
                current: i + 1 == n,
            })
            .collect()
    }
}

impl Services {
    /// A signed access token with the current key.
    pub(crate) fn sign_access(&self, claims: &Claims) -> Result<String> {
        self.jwt.sign(claims)
    }

    /// The claims of a token signed with the current or the previous key.
    pub(crate) fn verify_access(
        &self,
        token: &str,
        now_s: i64,
    ) -> std::result::Result<Claims, JwtError> {
        self.jwt.verify(token, now_s)
    }

    /// The keys in use, oldest first.
    pub fn jwt_keys(&self) -> Vec<KeyInfo> {
        self.jwt.info()
    }

    /// Makes a new key current; the previous current key keeps verifying
    /// until the next rotation, the one before it is dropped.
    pub async fn rotate_jwt_key(&self) -> Result<Vec<KeyInfo>> {
        let now = self.clock.now();
        let seed = crypto::random_bytes::<32>();
        let recs = self
            .store
            .write(move |txn| store::jwtkeys::rotate(txn, seed, now.0))
            .await?;
        self.jwt.replace(&self.secret, recs)?;
        let keys = self.jwt_keys();
        if let Some(k) = keys.last() {
            tracing::info!(kid = k.kid, "JWT signing key rotated");
        }
        Ok(keys)
    }

    /// Rotates when the current key is at least `--jwt-rotate-days` old;
    /// whether it did.
    pub async fn rotate_jwt_key_if_due(&self) -> Result<bool> {
        let now = self.clock.now();
        let max_age = self.accounts.jwt_rotate_ms;
        let seed = crypto::random_bytes::<32>();
        let rotated = self
            .store
            .write(move |txn| store::jwtkeys::rotate_if_older(txn, seed, now.0, max_age))
            .await?;
        let Some(recs) = rotated else {
            return Ok(false);
        };
        self.jwt.replace(&self.secret, recs)?;
        if let Some(k) = self.jwt_keys().last() {
            tracing::info!(kid = k.kid, "JWT signing key rotated (due)");
        }
        Ok(true)
    }
}
