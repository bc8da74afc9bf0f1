//! API keys `sk_<tier>_<random>`: shown once, stored as keyed blake3
//! hashes, revocable, with a last-used day. Held in memory for fast auth.

use std::collections::HashMap;
use std::sync::RwLock;

use super::{Error, Result, Services};
use crate::crypto;
use crate::domain::UnixMillis;
use crate::store::{self, apikeys::ApiKey};

const PURPOSE: &str = "api-key";

/// Who is calling with an API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiPrincipal {
    pub key_id: u64,
    pub account: u64,
    pub account_created: UnixMillis,
    pub tier: String,
}

/// Keys by hash, plus the ones whose last-used day changed since the last flush.
#[derive(Debug, Default)]
pub struct KeyCache {
    by_hash: RwLock<HashMap<[u8; 32], ApiKey>>,
    dirty: std::sync::Mutex<Vec<[u8; 32]>>,
    /// Accounts an admin disabled: their keys answer 403.
    disabled_accounts: RwLock<std::collections::HashSet<u64>>,
}

impl KeyCache {
    pub fn load(store: &store::Store) -> Result<Self> {
        let all = store.read_blocking(store::apikeys::all)?;
        let disabled = store
            .read_blocking(store::accounts::all)?
            .into_iter()
            .filter(|a| a.disabled)
            .map(|a| a.id)
            .collect();
        Ok(Self {
            by_hash: RwLock::new(all.into_iter().collect()),
            dirty: std::sync::Mutex::default(),
            disabled_accounts: RwLock::new(disabled),
        })
    }
}

/// A tier name: lower-case letters, digits and `_`, as in `sk_tier_1_…`.
pub fn valid_tier(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 16
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Services {
    /// Creates a key; the plaintext is returned once and never stored.
    /// Without an account, the key is its own reporting identity.
    pub async fn create_api_key(
        &self,
        name: &str,
        tier: &str,
        account: Option<(u64, UnixMillis)>,
    ) -> Result<(String, ApiKey)> {
        if name.trim().is_empty() || name.len() > 64 {
            return Err(Error::invalid("name", "must be 1 to 64 characters"));
        }
        if !valid_tier(tier) {
            return Err(Error::invalid(
                "tier",
                "must be lower-case letters, digits or _ (at most 16)",
            ));
        }
        if !self.tiers.contains(tier) {
            let known: Vec<&str> = self.tiers.ids().collect();
            return Err(Error::invalid(
                "tier",
                format!("unknown tier '{tier}' (known: {})", known.join(", ")),
            ));
        }
        let plaintext = format!("sk_{tier}_{}", crypto::random_token());
        let hash = self.secret.keyed_hash(PURPOSE, plaintext.as_bytes());
        let now = self.clock.now();
        let (name, tier, prefix) = (
            name.trim().to_owned(),
            tier.to_owned(),
            plaintext[..plaintext.len().min(tier.len() + 8)].to_owned(),
        );
        let key = self
            .store
            .write(move |txn| {
                let id = store::apikeys::next_id(txn)?;
                let (account, account_created) = account.unwrap_or((id, now));
                let k = ApiKey {
                    id,
                    name,
                    tier,
                    account,
                    account_created_ms: account_created.0,
                    prefix,
                    created_ms: now.0,
                    revoked_ms: None,
                    last_used_day: None,
                };
                store::apikeys::put(txn, hash, &k)?;
                Ok(k)
            })
            .await?;
        self.keys
            .by_hash
            .write()
            .map_err(|_| lock())?
            .insert(hash, key.clone());
        Ok((plaintext, key))
    }

    pub async fn revoke_api_key(&self, id: u64) -> Result<ApiKey> {
        let now = self.clock.now();
        let (hash, key) = self
            .store
            .write(move |txn| {
                let Some(hash) = store::apikeys::hash_of(txn, id)? else {
                    return Ok(None);
                };
                let Some(mut k) = store::apikeys::get_in_write(txn, hash)? else {
                    return Ok(None);
                };
                k.revoked_ms.get_or_insert(now.0);
                store::apikeys::put(txn, hash, &k)?;
                Ok(Some((hash, k)))
            })
            .await?
            .ok_or_else(|| Error::not_found(format!("API key {id}")))?;
        self.keys
            .by_hash
            .write()
            .map_err(|_| lock())?
            .insert(hash, key.clone());
        Ok(key)
    }

    pub fn list_api_keys(&self) -> Result<Vec<ApiKey>> {
        let mut v: Vec<ApiKey> = self
            .keys
            .by_hash
            .read()
            .map_err(|_| lock())?
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|k| k.id);
        Ok(v)
    }

    /// 401 for a missing or unknown key, 403 for a revoked one.
    pub fn authenticate_api_key(&self, presented: Option<&str>) -> Result<ApiPrincipal> {
        let Some(presented) = presented.filter(|k| !k.is_empty()) else {
            return Err(Error::Unauthenticated {
                reason: "missing API key".into(),
            });
        };
        let hash = self.secret.keyed_hash(PURPOSE, presented.as_bytes());
        let today = self.clock.now().day();
        let mut cache = self.keys.by_hash.write().map_err(|_| lock())?;
        let Some(k) = cache.get_mut(&hash) else {
            return Err(Error::Unauthenticated {
                reason: "invalid API key".into(),
            });
        };
        let account_disabled = self
            .keys
            .disabled_accounts
            .read()
            .map_err(|_| lock())?
            .contains(&k.account);
        if k.revoked_ms.is_some() || account_disabled {
            return Err(Error::Forbidden {
                reason: "API key disabled or expired".into(),
            });
        }
        if self.privacy.is_restricted(k.account) {
            return Err(Error::Forbidden {
                reason: "processing is restricted for this account at its holder's request".into(),
            });
        }
        if k.last_used_day != Some(today) {
            k.last_used_day = Some(today);
            if let Ok(mut d) = self.keys.dirty.lock() {
                d.push(hash);
            }
        }
        Ok(ApiPrincipal {
            key_id: k.id,
            account: k.account,
            account_created: UnixMillis(k.account_created_ms),
            tier: k.tier.clone(),
        })
    }

    /// Persists last-used days that changed since the previous flush.
    pub async fn flush_key_usage(&self) -> Result<()> {
        let hashes: Vec<[u8; 32]> =
            std::mem::take(&mut *self.keys.dirty.lock().map_err(|_| lock())?);
        if hashes.is_empty() {
            return Ok(());
        }
        let updates: Vec<([u8; 32], Option<i64>)> = {
            let cache = self.keys.by_hash.read().map_err(|_| lock())?;
            hashes
                .iter()
                .filter_map(|h| cache.get(h).map(|k| (*h, k.last_used_day)))
                .collect()
        };
        self.store
            .write(move |txn| {
                for (h, day) in updates {
                    if let Some(mut k) = store::apikeys::get_in_write(txn, h)? {
                        k.last_used_day = day;
                        store::apikeys::put(txn, h, &k)?;
                    }
                }
                Ok(())
            })
            .await?;
        Ok(())
    }
}

impl Services {
    /// Keeps the keys of `a` in step with it: the account's tier, and
    /// whether it is disabled.
    pub(crate) async fn sync_account_keys(&self, a: &store::accounts::Account) -> Result<()> {
        {
            let mut d = self.keys.disabled_accounts.write().map_err(|_| lock())?;
            if a.disabled {
                d.insert(a.id);
            } else {
                d.remove(&a.id);
            }
        }
        let changed: Vec<([u8; 32], ApiKey)> = {
            let mut cache = self.keys.by_hash.write().map_err(|_| lock())?;
            cache
                .iter_mut()
                .filter(|(_, k)| k.account == a.id && k.tier != a.tier)
                .map(|(h, k)| {
                    k.tier.clone_from(&a.tier);
                    (*h, k.clone())
                })
                .collect()
        };
        if !changed.is_empty() {
            self.store
                .write(move |txn| {
                    for (h, k) in &changed {
                        store::apikeys::put(txn, *h, k)?;
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    /// Creates a key for a signed-in account, in the account's tier. The
    /// e-mail address must be verified first.
    pub async fn create_account_key(&self, account: u64, name: &str) -> Result<(String, ApiKey)> {
        let a = self.account(account).await?;
        if !a.email_verified {
            return Err(Error::Forbidden {
                reason: "verify your e-mail address before creating API keys".into(),
            });
        }
        let tier = if self.tiers.contains(&a.tier) {
            a.tier.clone()
        } else {
            super::tiers::DEFAULT_TIER.to_owned()
        };
        self.create_api_key(name, &tier, Some((a.id, UnixMillis(a.created_ms))))
            .await
    }

    /// The keys of `account`.
    pub fn account_keys(&self, account: u64) -> Result<Vec<ApiKey>> {
        Ok(self
            .list_api_keys()?
            .into_iter()
            .filter(|k| k.account == account)
            .collect())
    }

    /// The principal of one of `account`'s live keys, for the signed-in web
    /// pages that report and manage alerts without pasting a key: `key_id`
    /// picks one, otherwise the newest live key is used.
    pub fn account_principal(&self, account: u64, key_id: Option<u64>) -> Result<ApiPrincipal> {
        let live: Vec<ApiKey> = self
            .account_keys(account)?
            .into_iter()
            .filter(|k| k.revoked_ms.is_none())
            .collect();
        let k = match key_id {
            Some(id) => live
                .into_iter()
                .find(|k| k.id == id)
                .ok_or_else(|| Error::not_found(format!("API key {id}")))?,
            None => live
                .into_iter()
                .max_by_key(|k| k.id)
                .ok_or_else(|| Error::Forbidden {
                    reason: "create an API key first: reports and alerts are counted against a key's quota".into(),
                })?,
        };
        Ok(ApiPrincipal {
            key_id: k.id,
            account: k.account,
            account_created: UnixMillis(k.account_created_ms),
            tier: k.tier,
        })
    }

    /// Revokes a key of `account`; another account's key is "not found".
    pub async fn revoke_account_key(&self, account: u64, id: u64) -> Result<ApiKey> {
        if !self.account_keys(account)?.iter().any(|k| k.id == id) {
            return Err(Error::not_found(format!("API key {id}")));
        }
        self.revoke_api_key(id).await
    }
}

fn lock() -> Error {
    Error::Internal {
        detail: "key cache lock poisoned".into(),
    }
}
