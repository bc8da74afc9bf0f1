//! Web sessions exactly as the privacy policy describes them (P38–P40):
//! a 15-minute JWT access token and a refresh token valid 24 hours (30
//! days with "remember me"), stored only as a keyed hash, rotated on every
//! use; presenting a rotated token ends the whole session family. Sign-in
//! is throttled per login name and per source address (P53).

use std::time::Duration;

use super::{Error, Result, Services};
use crate::crypto;
use crate::domain::UnixMillis;
use crate::domain::account::Role;
use crate::jwt::Claims;
use crate::store::{self, accounts::Account, sessions::Session};

pub const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
pub const REFRESH_TTL: Duration = Duration::from_secs(24 * 3600);
pub const REMEMBER_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

const REFRESH: &str = "refresh-token";
const CSRF: &str = "csrf";
const LOGIN: &str = "login-name";
const SOURCE: &str = "login-source";

/// A signed-in person, as established from the access-token cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPrincipal {
    pub account: u64,
    pub family: u64,
    pub role: Role,
    pub username: String,
    pub email_verified: bool,
}

/// Tokens handed to the browser after sign-in or refresh.
#[derive(Clone, Debug)]
pub struct Issued {
    pub access: String,
    pub refresh: String,
    pub csrf: String,
    pub refresh_ttl: Duration,
    pub account: Account,
}

/// A session as listed to its holder.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
    pub remember: bool,
    pub user_agent: String,
    pub ip: String,
    pub current: bool,
}

fn unauthenticated(reason: &str) -> Error {
    Error::Unauthenticated {
        reason: reason.into(),
    }
}

fn invalid_login() -> Error {
    unauthenticated("invalid username or password")
}

impl Services {
    /// The CSRF token bound to a session family: derived, never stored, so
    /// a token from one session is worthless in another (P49).
    pub fn csrf_token(&self, family: u64) -> String {
        hex::encode(&self.secret.keyed_hash(CSRF, &family.to_le_bytes())[..16])
    }

    pub fn csrf_ok(&self, family: u64, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| crypto::ct_eq(p.as_bytes(), self.csrf_token(family).as_bytes()))
    }

    /// Signs in with a username or e-mail address.
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        remember: bool,
        ip: std::net::IpAddr,
        user_agent: &str,
    ) -> Result<Issued> {
        let now = self.clock.now();
        let login = login.trim().to_lowercase();
        let policy = self.accounts.lockout;
        let name_key = self.secret.keyed_hash(LOGIN, login.as_bytes());
        let source_key = self.secret.keyed_hash(SOURCE, ip.to_string().as_bytes());
        let keys = [
            (name_key, policy.per_login),
            (source_key, policy.per_source),
        ];
        if let Some(wait_ms) = self.lockout.locked_for(&policy, &keys, now) {
            return Err(Error::RateLimited {
                retry_after_secs: u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000),
                reason: "too many failed sign-in attempts; try again later".into(),
            });
        }
        if login.is_empty() || login.len() > 254 || password.len() > 1024 {
            return Err(invalid_login());
        }
        let l = login.clone();
        let found = self
            .store
            .read(move |txn| store::accounts::find(txn, &l))
            .await?;
        let phc = found
            .as_ref()
            .and_then(|a| a.auth.as_ref())
            .map(|x| x.password_hash.clone());
        let ok = self.verify_password(password, phc.as_deref()).await?;
        let Some(account) = found.clone().filter(|_| ok) else {
            self.lockout.fail(&policy, &[name_key, source_key], now);
            if let Some(a) = &found {
                self.record_failed_login(a.id, now).await?;
            }
            return Err(invalid_login());
        };
        if account.disabled {
            return Err(Error::Forbidden {
                reason: "this account is disabled".into(),
            });
        }
        self.lockout.clear(&name_key);
        self.start_session(account, remember, ip, user_agent).await
    }

    async fn record_failed_login(&self, id: u64, now: UnixMillis) -> Result<()> {
        self.store
            .write(move |txn| {
                if let Some(mut a) = store::accounts::get_in_write(txn, id)?
                    && let Some(auth) = a.auth.as_mut()
                {
                    auth.failed_logins_ms.push(now.0);
                    let excess = auth
                        .failed_logins_ms
                        .len()
                        .saturating_sub(store::accounts::MAX_FAILED_KEPT);
                    auth.failed_logins_ms.drain(..excess);
                    store::accounts::put(txn, &a)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn start_session(
        &self,
        account: Account,
        remember: bool,
        ip: std::net::IpAddr,
        user_agent: &str,
    ) -> Result<Issued> {
        let now = self.clock.now();
        let ttl = if remember { REMEMBER_TTL } else { REFRESH_TTL };
        let refresh = crypto::random_token();
        let hash = self.secret.keyed_hash(REFRESH, refresh.as_bytes());
        let (id, ua, ip) = (account.id, clip(user_agent, 512), ip.to_string());
        let family = self
            .store
            .write(move |txn| {
                let family = store::sessions::next_family(txn)?;
                let s = Session {
                    account: id,
                    family,
                    created_ms: now.0,
                    last_used_ms: now.0,
                    expires_ms: now.plus(ttl).0,
                    remember,
                    current: hash,
                    user_agent: ua,
                    ip,
                    revoked_ms: None,
                };
                store::sessions::put(txn, &s, None)?;
                store::sessions::map_token(txn, hash, id, family)?;
                Ok(family)
            })
            .await?;
        self.issue(account, family, refresh, ttl, now)
    }

    fn issue(
        &self,
        account: Account,
        family: u64,
        refresh: String,
        ttl: Duration,
        now: UnixMillis,
    ) -> Result<Issued> {
        let claims = Claims {
            sub: account.id,
            sid: family,
            iat: now.0 / 1000,
            exp: now.plus(ACCESS_TTL).0 / 1000,
        };
        Ok(Issued {
            access: self.sign_access(&claims)?,
            refresh,
            csrf: self.csrf_token(family),
            refresh_ttl: ttl,
            account,
        })
    }

    /// Exchanges a refresh token for new tokens. A token that was already
    /// rotated ends its whole family: someone else holds a copy.
    pub async fn refresh_session(
        &self,
        refresh: &str,
        ip: std::net::IpAddr,
        user_agent: &str,
    ) -> Result<Issued> {
        let now = self.clock.now();
        let hash = self.secret.keyed_hash(REFRESH, refresh.as_bytes());
        let next = crypto::random_token();
        let next_hash = self.secret.keyed_hash(REFRESH, next.as_bytes());
        let (ua, ip) = (clip(user_agent, 512), ip.to_string());
        let outcome = self
            .store
            .write(move |txn| {
                let Some((account, family)) = store::sessions::family_of(txn, hash)? else {
                    return Ok(Err(unauthenticated("session expired; sign in again")));
                };
                let Some(mut s) = store::sessions::get_in_write(txn, account, family)? else {
                    return Ok(Err(unauthenticated("session expired; sign in again")));
                };
                if !s.live(now) {
                    return Ok(Err(unauthenticated("session expired; sign in again")));
                }
                if !crypto::ct_eq(&s.current, &hash) {
                    s.revoked_ms = Some(now.0);
                    store::sessions::put(txn, &s, Some(s.expires_ms))?;
                    return Ok(Err(unauthenticated(
                        "this sign-in was ended because an old refresh token was used again; sign in again",
                    )));
                }
                let Some(a) = store::accounts::get_in_write(txn, account)?.filter(|a| !a.disabled)
                else {
                    return Ok(Err(unauthenticated("session expired; sign in again")));
                };
                s.current = next_hash;
                s.last_used_ms = now.0;
                s.user_agent = ua;
                s.ip = ip;
                store::sessions::put(txn, &s, Some(s.expires_ms))?;
                store::sessions::map_token(txn, next_hash, account, family)?;
                let left = Duration::from_millis(u64::try_from(s.expires_ms - now.0).unwrap_or(0));
                Ok(Ok((a, family, left)))
            })
            .await?;
        let (a, family, left) = outcome?;
        self.issue(a, family, next, left, now)
    }

    /// The signed-in person behind an access token, if the token is valid
    /// and its session still live.
    pub async fn authenticate_session(&self, access: &str) -> Result<SessionPrincipal> {
        let now = self.clock.now();
        let c = self
            .verify_access(access, now.0 / 1000)
            .map_err(|e| unauthenticated(&format!("{e}; sign in again")))?;
        let (account, family) = (c.sub, c.sid);
        let (s, a) = self
            .store
            .read(move |txn| {
                Ok((
                    store::sessions::get(txn, account, family)?,
                    store::accounts::get(txn, account)?,
                ))
            })
            .await?;
        match (s, a) {
            (Some(s), Some(a)) if s.live(now) && !a.disabled => Ok(SessionPrincipal {
                account: a.id,
                family,
                role: a.role,
                username: a.username,
                email_verified: a.email_verified,
            }),
            _ => Err(unauthenticated("session ended; sign in again")),
        }
    }

    /// Ends one session of `account`.
    pub async fn end_session(&self, account: u64, family: u64) -> Result<()> {
        let now = self.clock.now();
        let found = self
            .store
            .write(move |txn| {
                let Some(mut s) = store::sessions::get_in_write(txn, account, family)? else {
                    return Ok(false);
                };
                s.revoked_ms.get_or_insert(now.0);
                store::sessions::put(txn, &s, Some(s.expires_ms))?;
                Ok(true)
            })
            .await?;
        if found {
            Ok(())
        } else {
            Err(Error::not_found("session"))
        }
    }

    /// Ends every session of `account` but `keep` ("sign out everywhere",
    /// password changes, disabling).
    pub async fn revoke_sessions(&self, account: u64, keep: Option<u64>) -> Result<()> {
        let now = self.clock.now();
        self.store
            .write(move |txn| {
                for mut s in store::sessions::of_account_in_write(txn, account)? {
                    if Some(s.family) != keep && s.revoked_ms.is_none() {
                        s.revoked_ms = Some(now.0);
                        store::sessions::put(txn, &s, Some(s.expires_ms))?;
                    }
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// The live sessions of `account`.
    pub async fn list_sessions(&self, account: u64, current: u64) -> Result<Vec<SessionView>> {
        let now = self.clock.now();
        let all = self
            .store
            .read(move |txn| store::sessions::of_account(txn, account))
            .await?;
        Ok(all
            .into_iter()
            .filter(|s| s.live(now))
            .map(|s| SessionView {
                id: s.family.to_string(),
                created_at: UnixMillis(s.created_ms).rfc3339(),
                last_used_at: UnixMillis(s.last_used_ms).rfc3339(),
                expires_at: UnixMillis(s.expires_ms).rfc3339(),
                remember: s.remember,
                user_agent: s.user_agent,
                ip: s.ip,
                current: s.family == current,
            })
            .collect())
    }

    /// Deletes sessions whose expiry day has passed (and their token
    /// hashes); returns how many.
    pub async fn sweep_sessions(&self, now: UnixMillis, batch: usize) -> Result<usize> {
        Ok(self
            .store
            .drain(batch, move |txn, b| {
                store::sessions::sweep(txn, now.day(), b)
            })
            .await?)
    }
}

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
