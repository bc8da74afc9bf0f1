//! Accounts: registration (open, invite-only or closed), the first admin
//! by bootstrap token, e-mail verification and password reset by signed
//! links, password change, profile rectification, and the admin's user
//! operations.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::mail::Mail;
use super::{Error, Result, Services};
use crate::crypto;
use crate::domain::UnixMillis;
use crate::domain::account::{self, FieldError, ProfileInput, Role};
use crate::store::{self, accounts::Account, accounts::Auth};

/// Who may create an account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Registration {
    /// Anyone.
    Open,
    /// Only holders of an invitation an admin created.
    #[default]
    Invite,
    /// Nobody; admins add accounts.
    Closed,
}

/// What the account use cases take from the configuration.
#[derive(Clone, Debug)]
pub struct AccountOptions {
    pub registration: Registration,
    /// Absolute base of links in e-mails (`https://host[:port]`).
    pub base_url: String,
    pub lockout: super::lockout::LockoutPolicy,
    /// Password hashes computed at once; further sign-ins wait.
    pub hash_concurrency: usize,
    /// Age at which the JWT signing key is rotated (`--jwt-rotate-days`).
    pub jwt_rotate_ms: i64,
}

impl Default for AccountOptions {
    fn default() -> Self {
        Self {
            registration: Registration::default(),
            base_url: "https://127.0.0.1:8443".into(),
            lockout: super::lockout::LockoutPolicy::default(),
            hash_concurrency: 2,
            jwt_rotate_ms: 30 * crate::domain::time::MILLIS_PER_DAY,
        }
    }
}

/// A sign-up as submitted.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SignUp {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
    #[serde(flatten)]
    pub profile: ProfileInput,
    /// The person confirms being at least 16 (P37).
    #[serde(default, alias = "ageConfirmed")]
    pub age_confirmed: bool,
    #[serde(default)]
    pub invite: Option<String>,
}

/// An account as shown to its holder and to admins; never the password
/// hash or other authentication secrets.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub id: u64,
    pub username: String,
    pub email: String,
    pub email_verified: bool,
    pub first_name: String,
    pub last_name: String,
    pub country: String,
    pub account_type: account::AccountType,
    pub company: Option<String>,
    pub vat_id: Option<String>,
    pub role: Role,
    pub tier: String,
    pub created_at: String,
    pub disabled: bool,
    pub password_changed_at: Option<String>,
}

impl AccountView {
    pub fn of(a: &Account) -> Self {
        Self {
            id: a.id,
            username: a.username.clone(),
            email: a.email.clone(),
            email_verified: a.email_verified,
            first_name: a.profile.first_name.clone(),
            last_name: a.profile.last_name.clone(),
            country: a.profile.country.clone(),
            account_type: a.profile.account_type,
            company: a.profile.company.clone(),
            vat_id: a.profile.vat_id.clone(),
            role: a.role,
            tier: a.tier.clone(),
            created_at: UnixMillis(a.created_ms).rfc3339(),
            disabled: a.disabled,
            password_changed_at: a
                .auth
                .as_ref()
                .and_then(|x| x.password_changed_ms.last())
                .map(|t| UnixMillis(*t).rfc3339()),
        }
    }
}

fn field(e: FieldError) -> Error {
    Error::invalid(e.0, e.1)
}

const VERIFY: &str = "verify-email";
const RESET: &str = "password-reset";
const INVITE: &str = "invite";
/// How long e-mailed links stay valid.
const LINK_VALIDITY: Duration = Duration::from_secs(24 * 3600);
const RESET_VALIDITY: Duration = Duration::from_secs(3600);

#[derive(Serialize, Deserialize)]
struct LinkPayload {
    account: u64,
    expires_s: i64,
    /// The state the link may change: the e-mail address being verified,
    /// or the time of the last password change (so a reset link works once).
    binding: String,
}

type HashWork = Box<dyn FnOnce() + Send>;

/// A bounded pool of its own threads for password hashing, so a flood of
/// sign-ins can neither take every core from the API nor occupy the
/// blocking pool that database reads and writes run on. Jobs beyond the
/// pool's size wait for a permit (at most 10 s, then 503).
#[derive(Debug)]
pub struct Hashing {
    permits: Arc<Semaphore>,
    work: std::sync::Mutex<std::sync::mpsc::Sender<HashWork>>,
}

impl Hashing {
    /// Starts `threads` hashing threads; they end when the pool is dropped.
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = std::sync::mpsc::channel::<HashWork>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sikker-argon2-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let next = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match next {
                            // A panicking job must not shrink the pool; its caller sees an error.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password-hashing thread");
            }
        }
        Self {
            permits: Arc::new(Semaphore::new(threads)),
            work: std::sync::Mutex::new(tx),
        }
    }
}

/// A dummy hash verified when the login names no account, so both cases
/// take the same time.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| crypto::hash_password("no such account"))
}

impl Services {
    /// Runs argon2id on the hashing pool's threads, off the reactor and off
    /// the blocking pool.
    pub(crate) async fn hash_job<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let permit = tokio::time::timeout(
            Duration::from_secs(10),
            self.hashing.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| Error::Unavailable {
            reason: "the server is busy; try signing in again shortly".into(),
            retry_after_secs: None,
        })?
        .map_err(|_| Error::Internal {
            detail: "hashing pool closed".into(),
        })?;
        let (done, answer) = tokio::sync::oneshot::channel();
        let work: HashWork = Box::new(move || {
            let out = job();
            drop(permit);
            let _ = done.send(out);
        });
        let lost = || Error::Internal {
            detail: "password-hashing thread ended".into(),
        };
        self.hashing
            .work
            .lock()
            .map_err(|_| lost())?
            .send(work)
            .map_err(|_| lost())?;
        answer.await.map_err(|_| lost())
    }

    /// Verifies `password` against `phc` (or the dummy hash) in the pool.
    pub(crate) async fn verify_password(&self, password: &str, phc: Option<&str>) -> Result<bool> {
        let (pw, phc, real) = (
            password.to_owned(),
            phc.unwrap_or_else(|| dummy_hash()).to_owned(),
            phc.is_some(),
        );
        let ok = self
            .hash_job(move || crypto::verify_password(&pw, &phc))
            .await?;
        Ok(ok && real)
    }

    /// Registers an account; sends the verification link. `from_ip` is
    /// the registration address kept with the account (P03).
    pub async fn register(&self, s: SignUp, from_ip: Option<String>) -> Result<AccountView> {
        match self.accounts.registration {
            Registration::Closed => {
                return Err(Error::Forbidden {
                    reason: "registration is closed on this server".into(),
                });
            }
            Registration::Invite if s.invite.as_deref().is_none_or(str::is_empty) => {
                return Err(Error::invalid(
                    "invite",
                    "registration needs an invitation code on this server",
                ));
            }
            _ => {}
        }
        let a = self
            .create_account(s, Role::User, from_ip, false, self.accounts.registration)
            .await?;
        self.send_verification(&a).await?;
        Ok(AccountView::of(&a))
    }

    /// Creates the first admin with the bootstrap token (used once).
    pub async fn bootstrap_admin(&self, token: &str, s: SignUp) -> Result<AccountView> {
        if !self.check_bootstrap_token(token).await? {
            return Err(Error::Forbidden {
                reason: "the bootstrap token is invalid, used or expired; `sikker admin bootstrap` issues a new one".into(),
            });
        }
        let a = self
            .create_account(s, Role::Admin, None, true, Registration::Open)
            .await?;
        self.store.write(store::meta::clear_bootstrap).await?;
        Ok(AccountView::of(&a))
    }

    /// Adds an account on an admin's behalf (no invitation needed).
    pub async fn add_account(&self, s: SignUp, role: Role) -> Result<AccountView> {
        let a = self
            .create_account(s, role, None, false, Registration::Open)
            .await?;
        self.send_verification(&a).await?;
        Ok(AccountView::of(&a))
    }

    async fn create_account(
        &self,
        s: SignUp,
        role: Role,
        from_ip: Option<String>,
        verified: bool,
        mode: Registration,
    ) -> Result<Account> {
        let username = account::username(&s.username).map_err(field)?;
        let email = account::email(&s.email).map_err(field)?;
        let profile = s.profile.validate().map_err(field)?;
        if !s.age_confirmed {
            return Err(Error::invalid(
                "age_confirmed",
                "you must confirm that you are at least 16 years old",
            ));
        }
        account::password(&s.password, &username, &email).map_err(field)?;
        let invite = match mode {
            Registration::Invite => s
                .invite
                .as_deref()
                .map(|code| self.secret.keyed_hash(INVITE, code.trim().as_bytes())),
            _ => None,
        };
        let pw = s.password.clone();
        let phc = self.hash_job(move || crypto::hash_password(&pw)).await?;
        let now = self.clock.now();
        let tier = super::tiers::DEFAULT_TIER.to_owned();
        self.store
            .write(move |txn| {
                if store::accounts::username_taken(txn, &username)?.is_some() {
                    return Ok(Err(Error::Conflict {
                        reason: "username: is already taken".into(),
                    }));
                }
                if store::accounts::email_taken(txn, &email)?.is_some() {
                    return Ok(Err(Error::Conflict {
                        reason: "email: is already registered".into(),
                    }));
                }
                if let Some(h) = invite {
                    match store::accounts::take_invite(txn, h)? {
                        Some(i) if i.expires_ms > now.0 => {}
                        _ => {
                            return Ok(Err(Error::invalid(
                                "invite",
                                "the invitation code is unknown, used or expired",
                            )));
                        }
                    }
                }
                let a = Account {
                    id: store::accounts::next_id(txn)?,
                    username,
                    email,
                    email_verified: verified,
                    profile,
                    role,
                    tier,
                    created_ms: now.0,
                    registration_ip: from_ip,
                    disabled: false,
                    auth: Some(Auth {
                        password_hash: phc,
                        password_changed_ms: vec![now.0],
                        failed_logins_ms: vec![],
                    }),
                };
                store::accounts::put(txn, &a)?;
                Ok(Ok(a))
            })
            .await?
    }

    fn link(&self, purpose: &str, a: &Account, validity: Duration, binding: String) -> String {
        let payload = LinkPayload {
            account: a.id,
            expires_s: self.clock.now().plus(validity).0 / 1000,
            binding,
        };
        let bytes = serde_json::to_vec(&payload).unwrap_or_default();
        self.secret.sign_token(purpose, &bytes)
    }

    fn open_link(&self, purpose: &str, token: &str) -> Result<LinkPayload> {
        let bad = || Error::invalid("token", "the link is invalid or has expired");
        let bytes = self.secret.open_token(purpose, token).ok_or_else(bad)?;
        let p: LinkPayload = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if p.expires_s * 1000 <= self.clock.now().0 {
            return Err(bad());
        }
        Ok(p)
    }

    async fn send_verification(&self, a: &Account) -> Result<()> {
        let token = self.link(VERIFY, a, LINK_VALIDITY, a.email.clone());
        self.send_mail(Mail {
            account: a.id,
            to: a.email.clone(),
            subject: "Confirm your e-mail address".into(),
            body: format!(
                "Hello {},\n\nconfirm your e-mail address for your sikker account by opening this link within 24 hours:\n\n{}/verify-email#token={token}\n\nIf you did not sign up, ignore this message.\n",
                a.username, self.accounts.base_url
            ),
        })
        .await
    }

    /// Marks the e-mail address verified. The link names the address it
    /// was sent to, so it cannot verify a different one.
    pub async fn verify_email(&self, token: &str) -> Result<AccountView> {
        let p = self.open_link(VERIFY, token)?;
        let a = self
            .store
            .write(move |txn| {
                let Some(mut a) = store::accounts::get_in_write(txn, p.account)? else {
                    return Ok(None);
                };
                if a.email != p.binding {
                    return Ok(None);
                }
                a.email_verified = true;
                store::accounts::put(txn, &a)?;
                Ok(Some(a))
            })
            .await?
            .ok_or_else(|| Error::invalid("token", "the link is invalid or has expired"))?;
        Ok(AccountView::of(&a))
    }

    /// Sends a reset link when `email` belongs to an account; answers the
    /// same either way so nobody learns which addresses are registered.
    pub async fn request_password_reset(&self, email: &str) -> Result<()> {
        let email = account::email(email).map_err(field)?;
        let found = self
            .store
            .read(move |txn| store::accounts::find(txn, &email))
            .await?;
        if let Some(a) = found.filter(|a| !a.disabled) {
            let binding = password_binding(&a);
            let token = self.link(RESET, &a, RESET_VALIDITY, binding);
            self.send_mail(Mail {
                account: a.id,
                to: a.email.clone(),
                subject: "Reset your password".into(),
                body: format!(
                    "Hello {},\n\nsomeone asked to reset the password of your sikker account. To choose a new one, open this link within an hour:\n\n{}/reset-password#token={token}\n\nIf it was not you, ignore this message; your password stays as it is.\n",
                    a.username, self.accounts.base_url
                ),
            })
            .await?;
        }
        Ok(())
    }

    /// Sets a new password from a reset link; the link then stops working,
    /// and every session of the account ends.
    pub async fn reset_password(&self, token: &str, new_password: &str) -> Result<()> {
        let p = self.open_link(RESET, token)?;
        let id = p.account;
        let a = self
            .store
            .read(move |txn| store::accounts::get(txn, id))
            .await?
            .filter(|a| password_binding(a) == p.binding)
            .ok_or_else(|| Error::invalid("token", "the link is invalid or has expired"))?;
        self.set_password(a, new_password, Some(p.binding)).await
    }

    /// Changes the password after checking the current one; other sessions
    /// of the account end (the caller's family `keep` stays).
    pub async fn change_password(
        &self,
        account: u64,
        keep: u64,
        current: &str,
        new_password: &str,
    ) -> Result<()> {
        let a = self.account(account).await?;
        let phc = a.auth.as_ref().map(|x| x.password_hash.clone());
        if !self.verify_password(current, phc.as_deref()).await? {
            return Err(Error::invalid("current_password", "is not correct"));
        }
        self.set_password(a, new_password, None).await?;
        self.revoke_sessions(account, Some(keep)).await
    }

    async fn set_password(
        &self,
        a: Account,
        new_password: &str,
        expect_binding: Option<String>,
    ) -> Result<()> {
        account::password(new_password, &a.username, &a.email)
            .map_err(|e| field(("password", e.1)))?;
        let pw = new_password.to_owned();
        let phc = self.hash_job(move || crypto::hash_password(&pw)).await?;
        let now = self.clock.now();
        let id = a.id;
        let from_link = expect_binding.is_some();
        self.store
            .write(move |txn| {
                let Some(mut a) = store::accounts::get_in_write(txn, id)? else {
                    return Ok(Err(Error::not_found("account")));
                };
                if let Some(b) = &expect_binding
                    && password_binding(&a) != *b
                {
                    return Ok(Err(Error::invalid(
                        "token",
                        "the link is invalid or has expired",
                    )));
                }
                let auth = a.auth.get_or_insert_with(|| Auth {
                    password_hash: String::new(),
                    password_changed_ms: vec![],
                    failed_logins_ms: vec![],
                });
                auth.password_hash = phc;
                auth.password_changed_ms.push(now.0);
                store::accounts::put(txn, &a)?;
                Ok(Ok(()))
            })
            .await??;
        if from_link {
            self.revoke_sessions(id, None).await?;
        }
        Ok(())
    }

    pub async fn account(&self, id: u64) -> Result<Account> {
        self.store
            .read(move |txn| store::accounts::get(txn, id))
            .await?
            .ok_or_else(|| Error::not_found("account"))
    }

    /// Rectification (P30): profile fields, and the e-mail address (which
    /// then needs verifying again).
    pub async fn update_profile(
        &self,
        id: u64,
        profile: Option<ProfileInput>,
        email: Option<String>,
    ) -> Result<AccountView> {
        let profile = profile.map(|p| p.validate().map_err(field)).transpose()?;
        let email = email
            .map(|e| account::email(&e).map_err(field))
            .transpose()?;
        let (a, email_changed) = self
            .store
            .write(move |txn| {
                let Some(mut a) = store::accounts::get_in_write(txn, id)? else {
                    return Ok(Err(Error::not_found("account")));
                };
                if let Some(p) = profile {
                    a.profile = p;
                }
                let mut changed = false;
                if let Some(e) = email
                    && e != a.email
                {
                    if store::accounts::email_taken(txn, &e)?.is_some() {
                        return Ok(Err(Error::Conflict {
                            reason: "email: is already registered".into(),
                        }));
                    }
                    a.email = e;
                    a.email_verified = false;
                    changed = true;
                }
                store::accounts::put(txn, &a)?;
                Ok(Ok((a, changed)))
            })
            .await??;
        if email_changed {
            self.send_verification(&a).await?;
        }
        Ok(AccountView::of(&a))
    }

    /// Every account, for admins.
    pub async fn list_accounts(&self) -> Result<Vec<AccountView>> {
        let all = self.store.read(store::accounts::all).await?;
        Ok(all.iter().map(AccountView::of).collect())
    }

    /// Admin changes to an account: role, tier (its API keys follow), or
    /// disabling it (its sessions end and its keys stop working).
    pub async fn admin_update_account(
        &self,
        id: u64,
        role: Option<Role>,
        tier: Option<String>,
        disabled: Option<bool>,
    ) -> Result<AccountView> {
        if let Some(t) = &tier
            && !self.tiers.contains(t)
        {
            let known: Vec<&str> = self.tiers.ids().collect();
            return Err(Error::invalid(
                "tier",
                format!("unknown tier '{t}' (known: {})", known.join(", ")),
            ));
        }
        let a = self
            .store
            .write(move |txn| {
                let Some(mut a) = store::accounts::get_in_write(txn, id)? else {
                    return Ok(Err(Error::not_found("account")));
                };
                if let Some(r) = role {
                    a.role = r;
                }
                if let Some(t) = tier {
                    a.tier = t;
                }
                if let Some(d) = disabled {
                    a.disabled = d;
                }
                store::accounts::put(txn, &a)?;
                Ok(Ok(a))
            })
            .await??;
        self.sync_account_keys(&a).await?;
        if a.disabled {
            self.revoke_sessions(a.id, None).await?;
        }
        Ok(AccountView::of(&a))
    }

    /// An invitation code (shown once) valid for `validity`.
    pub async fn create_invite(&self, by: u64, validity: Duration) -> Result<String> {
        let code = crypto::random_token();
        let hash = self.secret.keyed_hash(INVITE, code.as_bytes());
        let now = self.clock.now();
        let inv = store::accounts::Invite {
            created_by: by,
            created_ms: now.0,
            expires_ms: now.plus(validity).0,
        };
        self.store
            .write(move |txn| store::accounts::put_invite(txn, hash, &inv))
            .await?;
        Ok(code)
    }
}

/// What a reset link is bound to: the current password hash (salted, so
/// it changes with every new password, even within one millisecond).
fn password_binding(a: &Account) -> String {
    let phc = a.auth.as_ref().map_or("", |x| x.password_hash.as_str());
    hex::encode(&blake3::hash(phc.as_bytes()).as_bytes()[..16])
}
