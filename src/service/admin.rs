//! Operator requests, executed the same way whether they arrive over the
//! admin socket of a running server or from an offline `sikker admin`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Mode, Result, Services};
use crate::store::meta;

/// One operator request. New operations are added as variants.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AdminRequest {
    /// The newest entries of the admin audit log (P60).
    AuditLog {
        #[serde(default = "default_audit_limit")]
        limit: usize,
    },
    Ping,
    /// Issues a new one-time bootstrap token for the first admin account.
    Bootstrap,
    KeyCreate {
        name: String,
        tier: String,
        /// Create the key for this account (id, username or e-mail); it
        /// then has the account's tier.
        #[serde(default)]
        user: Option<String>,
    },
    KeyList,
    KeyRevoke {
        id: u64,
    },
    SensorAdd {
        name: String,
    },
    SensorList,
    SensorRevoke {
        id: u64,
    },
    WhitelistAdd {
        net: String,
        reason: String,
    },
    WhitelistList,
    WhitelistRemove {
        net: String,
    },
    /// Imports or replaces a named never-block set (one IP or CIDR per line).
    WhitelistImport {
        name: String,
        source: String,
        text: String,
    },
    WhitelistSets,
    WhitelistDropSet {
        name: String,
    },
    /// Runs the retention sweep now.
    Sweep,
    Stats,
    /// Compares the in-memory index with the database.
    Verify,
    /// The GeoIP databases in use.
    GeoipInfo,
    /// Re-reads the operator's GeoIP files; the old ones stay on error.
    GeoipReload,
    GeoipLookup {
        ip: String,
    },
    UserAdd {
        username: String,
        email: String,
        first_name: String,
        last_name: String,
        country: String,
        role: String,
        password: String,
    },
    UserList,
    /// An account by id, username or e-mail.
    UserShow {
        user: String,
    },
    UserSetDisabled {
        user: String,
        disabled: bool,
    },
    UserSetRole {
        user: String,
        role: String,
    },
    UserSetTier {
        user: String,
        tier: String,
    },
    /// Mails the account a password-reset link.
    UserResetPassword {
        user: String,
    },
    UserDelete {
        user: String,
    },
    /// One batch of report rows with their line numbers.
    ImportReports {
        #[serde(default)]
        key: Option<u64>,
        rows: Vec<(usize, crate::service::reports::ReportRow)>,
    },
    /// One batch of sensor events with their line numbers.
    ImportEvents {
        events: Vec<(usize, crate::service::sensors::WireEvent)>,
    },
    /// A page of live indicators with IPs after `after` (a u128 in decimal).
    ExportIndicators {
        #[serde(default)]
        after: Option<String>,
        limit: usize,
    },
    /// Writes a consistent backup to this absolute path on the server's host.
    Backup {
        path: String,
    },
    /// Replaces the Tor exit list (one IP or CIDR per line, `#` comments).
    TorExitsImport {
        text: String,
    },
    /// Listing corrections, retention, data-subject requests and notices.
    Privacy(super::privacy::PrivacyRequest),
    /// Makes a new JWT signing key current (the previous one still verifies).
    JwtRotate,
    /// The JWT signing keys in use (ids and ages, never the keys).
    JwtKeys,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PingInfo {
    pub mode: String,
    pub version: String,
    pub schema_version: u32,
    pub data_dir: String,
    pub uptime_secs: u64,
}

impl Services {
    /// `verify`: the index check, an error naming the first differences.
    async fn verify_json(&self) -> Result<Value> {
        let c = self.verify_index().await?;
        if c.mismatch_count > 0 {
            return Err(super::Error::Internal {
                detail: format!(
                    "index differs from the database: {} of {} stored indicators, {} indexed; first: {}",
                    c.mismatch_count,
                    c.stored,
                    c.indexed,
                    c.mismatches.join(", ")
                ),
            });
        }
        Ok(serde_json::to_value(c).unwrap_or_default())
    }
}

fn ms_to_rfc3339(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| {
        json!(crate::domain::UnixMillis(m).rfc3339())
    })
}

fn default_audit_limit() -> usize {
    100
}

impl Services {
    async fn ping_json(&self) -> Result<Value> {
        let schema_version = self
            .store
            .read(meta::schema_version)
            .await?
            .unwrap_or_default();
        let uptime_ms = self.clock.now().0.saturating_sub(self.started.0);
        let info = PingInfo {
            mode: match self.mode {
                Mode::Server => "server",
                Mode::Offline => "offline",
            }
            .to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version,
            data_dir: self.data_dir.display().to_string(),
            uptime_secs: u64::try_from(uptime_ms / 1000).unwrap_or_default(),
        };
        Ok(serde_json::to_value(info).unwrap_or_default())
    }

    // One arm per admin request; each is a call into its use case.
    #[allow(clippy::too_many_lines)]
    pub async fn admin(&self, req: AdminRequest) -> Result<Value> {
        self.audit_admin_request(&req).await;
        match req {
            AdminRequest::AuditLog { limit } => Ok(serde_json::to_value(self.audit_log(limit).await?)
                .unwrap_or_default()),
            AdminRequest::Ping => self.ping_json().await,
            AdminRequest::JwtRotate => Ok(json!({ "keys": self.rotate_jwt_key().await? })),
            AdminRequest::JwtKeys => Ok(json!({ "keys": self.jwt_keys() })),
            AdminRequest::Bootstrap => {
                let token = self.issue_bootstrap_token().await?;
                Ok(json!({ "token": token, "valid_hours": super::bootstrap::VALIDITY.as_secs() / 3600 }))
            }
            AdminRequest::KeyCreate { name, tier, user } => {
                let (key, k) = match user {
                    Some(u) => {
                        let a = self.find_account(&u).await?;
                        self.create_api_key(&name, &a.tier, Some((a.id, crate::domain::UnixMillis(a.created_ms))))
                            .await?
                    }
                    None => self.create_api_key(&name, &tier, None).await?,
                };
                Ok(json!({ "id": k.id, "name": k.name, "tier": k.tier, "account": k.account, "key": key }))
            }
            AdminRequest::KeyList => Ok(Value::Array(
                self.list_api_keys()?
                    .into_iter()
                    .map(|k| {
                        json!({
                            "id": k.id, "name": k.name, "tier": k.tier, "prefix": k.prefix,
                            "account": (k.account != k.id).then_some(k.account),
                            "created": ms_to_rfc3339(Some(k.created_ms)),
                            "revoked": ms_to_rfc3339(k.revoked_ms),
                            "lastUsedDay": k.last_used_day.map(|d| crate::domain::UnixMillis(d * crate::domain::time::MILLIS_PER_DAY).rfc3339()[..10].to_owned()),
                        })
                    })
                    .collect(),
            )),
            AdminRequest::KeyRevoke { id } => {
                let k = self.revoke_api_key(id).await?;
                Ok(json!({ "id": k.id, "revoked": ms_to_rfc3339(k.revoked_ms) }))
            }
            AdminRequest::SensorAdd { name } => {
                let (token, s) = self.create_sensor(&name).await?;
                Ok(json!({ "id": s.id, "name": s.name, "token": token }))
            }
            AdminRequest::SensorList => Ok(Value::Array(
                self.list_sensors()
                    .await?
                    .into_iter()
                    .map(|s| {
                        json!({
                            "id": s.id, "name": s.name, "events": s.events,
                            "created": ms_to_rfc3339(Some(s.created_ms)),
                            "lastEvent": ms_to_rfc3339(s.last_event_ms),
                            "revoked": ms_to_rfc3339(s.revoked_ms),
                        })
                    })
                    .collect(),
            )),
            AdminRequest::SensorRevoke { id } => {
                let s = self.revoke_sensor(id).await?;
                Ok(json!({ "id": s.id, "revoked": ms_to_rfc3339(s.revoked_ms) }))
            }
            AdminRequest::WhitelistAdd { net, reason } => {
                let e = self.whitelist_add(&net, &reason).await?;
                Ok(json!({ "net": e.net, "reason": e.reason, "added": ms_to_rfc3339(Some(e.added_ms)) }))
            }
            AdminRequest::WhitelistList => Ok(Value::Array(
                self.whitelist_list()
                    .await?
                    .into_iter()
                    .map(|e| json!({ "net": e.net, "reason": e.reason, "added": ms_to_rfc3339(Some(e.added_ms)) }))
                    .collect(),
            )),
            AdminRequest::WhitelistRemove { net } => {
                self.whitelist_remove(&net).await?;
                Ok(json!({ "removed": net }))
            }
            AdminRequest::WhitelistImport { name, source, text } => {
                let out = self.whitelist_import(&name, &source, &text).await?;
                Ok(serde_json::to_value(out).unwrap_or_default())
            }
            AdminRequest::WhitelistSets => Ok(Value::Array(
                self.whitelist_sets()
                    .await?
                    .into_iter()
                    .map(|s| json!({ "name": s.name, "source": s.source, "imported": ms_to_rfc3339(Some(s.imported_ms)), "networks": s.nets.len() }))
                    .collect(),
            )),
            AdminRequest::WhitelistDropSet { name } => {
                self.whitelist_drop_set(&name).await?;
                Ok(json!({ "dropped": name }))
            }
            AdminRequest::Sweep => {
                let r = self.sweep(self.clock.now(), crate::jobs::SWEEP_BATCH).await?;
                Ok(serde_json::to_value(r).unwrap_or_default())
            }
            AdminRequest::Stats => {
                let stored = self.store.read(crate::store::indicators::count).await?;
                let store = self.store.clone();
                let space = tokio::task::spawn_blocking(move || store.space())
                    .await
                    .map_err(|e| super::Error::Internal {
                        detail: e.to_string(),
                    })??;
                Ok(json!({
                    "indicators_live": self.indicator_count(),
                    "indicators_stored": stored,
                    "ttl_buckets": self.threat.with_index(crate::index::IpIndex::bucket_count)?,
                    "api_keys": self.list_api_keys()?.len(),
                    "store": self.table_inventory().await?,
                    "database": space,
                }))
            }
            AdminRequest::Verify => self.verify_json().await,
            AdminRequest::GeoipInfo => Ok(self.geoip_info_json()),
            AdminRequest::GeoipReload => Ok(json!({ "databases": self.geoip_reload().await? })),
            AdminRequest::GeoipLookup { ip } => self.geoip_lookup_json(&ip),
            AdminRequest::UserAdd {
                username,
                email,
                first_name,
                last_name,
                country,
                role,
                password,
            } => {
                let role = role
                    .parse()
                    .map_err(|()| super::Error::invalid("role", "must be user or admin"))?;
                let s = super::accounts::SignUp {
                    username,
                    email,
                    password,
                    profile: crate::domain::account::ProfileInput {
                        first_name,
                        last_name,
                        country,
                        ..Default::default()
                    },
                    age_confirmed: true,
                    invite: None,
                };
                Ok(json!(self.add_account(s, role).await?))
            }
            AdminRequest::UserList => Ok(Value::Array(
                self.list_accounts()
                    .await?
                    .into_iter()
                    .map(|a| {
                        json!({
                            "id": a.id, "username": a.username, "email": a.email,
                            "role": a.role, "tier": a.tier, "verified": a.email_verified,
                            "disabled": a.disabled, "created": a.created_at,
                        })
                    })
                    .collect(),
            )),
            AdminRequest::UserShow { user } => {
                let a = self.find_account(&user).await?;
                let mut v = json!(super::accounts::AccountView::of(&a));
                v["apiKeys"] = json!(self.account_keys(a.id)?.iter().filter(|k| k.revoked_ms.is_none()).count());
                Ok(v)
            }
            AdminRequest::UserSetDisabled { user, disabled } => {
                let a = self.find_account(&user).await?;
                Ok(json!(self.admin_update_account(a.id, None, None, Some(disabled)).await?))
            }
            AdminRequest::UserSetRole { user, role } => {
                let role = role
                    .parse()
                    .map_err(|()| super::Error::invalid("role", "must be user or admin"))?;
                let a = self.find_account(&user).await?;
                Ok(json!(self.admin_update_account(a.id, Some(role), None, None).await?))
            }
            AdminRequest::UserSetTier { user, tier } => {
                let a = self.find_account(&user).await?;
                Ok(json!(self.admin_update_account(a.id, None, Some(tier), None).await?))
            }
            AdminRequest::UserResetPassword { user } => {
                let a = self.find_account(&user).await?;
                if a.disabled {
                    return Err(super::Error::Conflict {
                        reason: "the account is disabled; enable it first".into(),
                    });
                }
                self.request_password_reset(&a.email).await?;
                Ok(json!({ "id": a.id, "mailed": a.email }))
            }
            AdminRequest::UserDelete { user } => {
                let a = self.find_account(&user).await?;
                Ok(json!(self.delete_account(a.id).await?))
            }
            AdminRequest::ImportReports { key, rows } => {
                Ok(json!(self.import_reports(key, rows).await?))
            }
            AdminRequest::ImportEvents { events } => Ok(json!(self.import_events(events).await?)),
            AdminRequest::ExportIndicators { after, limit } => {
                let after = after
                    .map(|a| a.parse::<u128>())
                    .transpose()
                    .map_err(|_| super::Error::invalid("after", "must be a number"))?;
                self.export_page(after, limit).await
            }
            AdminRequest::Backup { path } => Ok(json!(self.backup(path.into()).await?)),
            AdminRequest::TorExitsImport { text } => Ok(json!(self.import_tor_exits(&text).await?)),
            AdminRequest::Privacy(p) => self.privacy_admin(p).await,
        }
    }
}
