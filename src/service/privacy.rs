//! Privacy by design: listing corrections (P25–P28), the retention policy
//! table and its purge (P13–P22), data-subject rights with their request log
//! (P29–P36), the consent log and consent-gated analytics (P41–P44), and
//! breach/policy notices to every account holder (P58).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::RwLock;

use serde::Serialize;
use serde_json::{Value, json};

use super::{Error, Result, Services};
use crate::domain::time::MILLIS_PER_DAY;
use crate::domain::{IpKey, UnixMillis};
use crate::store::privacy::{
    self as sp, AnalyticsEvent, Consent, Correction, CorrectionEvent, CorrectionReason,
    CorrectionStatus, GdprRequest, Notice, Verification,
};
use crate::store::{self, Store, tables};

/// The retention table beyond raw reports and indicators (which live in
/// `Retention`); defaults are the seed policy's numbers.
#[derive(Clone, Copy, Debug)]
pub struct PrivacyOptions {
    pub usage_ms: i64,
    pub network_ms: i64,
    pub account_after_deletion_ms: i64,
    pub analytics_ms: i64,
    pub audience_ms: i64,
    pub privacy_log_ms: i64,
    pub notify_per_minute: u32,
}

impl Default for PrivacyOptions {
    fn default() -> Self {
        let d = MILLIS_PER_DAY;
        Self {
            usage_ms: 730 * d,
            network_ms: 730 * d,
            account_after_deletion_ms: 365 * d,
            analytics_ms: 730 * d,
            audience_ms: 395 * d,
            privacy_log_ms: 730 * d,
            notify_per_minute: 60,
        }
    }
}

/// Requests must be answered within this (P36).
pub const DEADLINE_MS: i64 = 30 * MILLIS_PER_DAY;

/// Live per-account flags, mirrored from `accountid_privacy`.
#[derive(Debug)]
pub struct PrivacyState {
    pub opts: PrivacyOptions,
    restricted: RwLock<HashSet<u64>>,
    objected: RwLock<HashSet<u64>>,
}

fn poisoned() -> Error {
    Error::Internal {
        detail: "privacy lock poisoned".into(),
    }
}

impl PrivacyState {
    pub fn load(store: &Store, opts: PrivacyOptions) -> Result<Self> {
        let all = store.read_blocking(sp::all_states)?;
        Ok(Self {
            opts,
            restricted: RwLock::new(
                all.iter()
                    .filter(|(_, s)| s.restricted_ms.is_some())
                    .map(|(a, _)| *a)
                    .collect(),
            ),
            objected: RwLock::new(
                all.iter()
                    .filter(|(_, s)| s.objected_ms.is_some())
                    .map(|(a, _)| *a)
                    .collect(),
            ),
        })
    }

    pub fn is_restricted(&self, account: u64) -> bool {
        self.restricted.read().is_ok_and(|s| s.contains(&account))
    }

    pub fn is_objected(&self, account: u64) -> bool {
        self.objected.read().is_ok_and(|s| s.contains(&account))
    }

    fn set(which: &RwLock<HashSet<u64>>, account: u64, on: bool) -> Result<()> {
        let mut s = which.write().map_err(|_| poisoned())?;
        if on {
            s.insert(account);
        } else {
            s.remove(&account);
        }
        Ok(())
    }
}

fn rfc(ms: i64) -> String {
    UnixMillis(ms).rfc3339()
}

fn opt_rfc(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| json!(rfc(m)))
}

fn day_str(day: i64) -> String {
    rfc(day * MILLIS_PER_DAY)[..10].to_owned()
}

/// A correction as admins see it.
#[derive(Clone, Debug, Serialize)]
pub struct CorrectionView {
    pub id: u64,
    pub ip: String,
    pub reason: CorrectionReason,
    pub details: Option<String>,
    pub status: CorrectionStatus,
    pub verification: Option<Verification>,
    pub requested_at: String,
    pub decided_at: Option<String>,
    /// New evidence about the IP arrived after the correction was granted:
    /// an admin should look (it is not re-listed on its own, P28).
    pub new_evidence: bool,
    pub last_evidence_at: Option<String>,
    pub history: Vec<CorrectionEvent>,
}

/// What the public endpoint answers (no history, no admin names).
#[derive(Clone, Debug, Serialize)]
pub struct CorrectionReceipt {
    pub id: u64,
    pub ip: String,
    pub status: CorrectionStatus,
    pub verified_from_ip: bool,
    pub requested_at: String,
}

pub fn parse_ip(field: &str, s: &str) -> Result<IpKey> {
    s.trim()
        .parse::<IpAddr>()
        .map(IpKey::from_ip)
        .map_err(|_| Error::invalid(field, format!("'{}' is not an IP address", s.trim())))
}

fn decision_reason(reason: &str) -> Result<String> {
    let r = reason.trim();
    if r.is_empty() || r.chars().count() > 500 {
        return Err(Error::invalid("reason", "must be 1 to 500 characters"));
    }
    Ok(r.to_owned())
}

/// What an admin does with a correction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
    /// Withdraws a granted correction, re-listing the IP (after new evidence).
    Revoke,
}

impl Decision {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approve" => Some(Self::Approve),
            "deny" => Some(Self::Deny),
            "revoke" => Some(Self::Revoke),
            _ => None,
        }
    }
}

impl Services {
    /// Whether `ip` is kept out of every public answer (check, bulk check,
    /// block lists, TAXII, AbuseIPDB): whitelisted or corrected.
    pub fn is_publicly_hidden(&self, ip: IpKey) -> bool {
        self.threat.is_publicly_hidden(ip)
    }

    /// A listing-correction request (P25). Made from the IP itself it is
    /// granted at once (verified control, P26); otherwise it waits for an
    /// admin decision with a reason.
    pub async fn request_correction(
        &self,
        ip: &str,
        reason: &str,
        details: Option<String>,
        client: IpAddr,
    ) -> Result<CorrectionReceipt> {
        let key = parse_ip("ip", ip)?;
        let reason = CorrectionReason::parse(reason.trim()).ok_or_else(|| {
            Error::invalid(
                "reason",
                format!("must be one of {}", CorrectionReason::ALL.join(", ")),
            )
        })?;
        let details = details
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty());
        if details.as_ref().is_some_and(|d| d.chars().count() > 1000) {
            return Err(Error::invalid("details", "must be at most 1000 characters"));
        }
        if self.threat.is_corrected(key) {
            return Err(Error::Conflict {
                reason: "this IP already has a granted correction".into(),
            });
        }
        let now = self.clock.now();
        if self.indicator(key, now)?.is_none() {
            return Err(Error::not_found(format!("a listing of {}", key.to_ip())));
        }
        let from_ip = IpKey::from_ip(client) == key;
        let c = self
            .store
            .write(move |txn| {
                if sp::corrections_in_write(txn)?
                    .iter()
                    .any(|c| c.ip == key.0 && c.status == CorrectionStatus::Pending)
                {
                    return Ok(Err(Error::Conflict {
                        reason:
                            "a correction request for this IP is already waiting for a decision"
                                .into(),
                    }));
                }
                let mut history = vec![CorrectionEvent {
                    at_ms: now.0,
                    event: format!(
                        "requested ({}){}",
                        serde_json::to_value(reason)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        if from_ip { " from the IP itself" } else { "" }
                    ),
                }];
                if from_ip {
                    history.push(CorrectionEvent {
                        at_ms: now.0,
                        event: "granted: control verified by a request from the IP itself".into(),
                    });
                }
                let c = Correction {
                    id: sp::next_correction_id(txn)?,
                    ip: key.0,
                    reason,
                    details,
                    status: if from_ip {
                        CorrectionStatus::Granted
                    } else {
                        CorrectionStatus::Pending
                    },
                    verification: from_ip.then_some(Verification::FromIp),
                    requested_ms: now.0,
                    decided_ms: from_ip.then_some(now.0),
                    history,
                };
                sp::put_correction(txn, &c)?;
                Ok(Ok(c))
            })
            .await??;
        if from_ip {
            self.threat.set_corrected(key, true)?;
        }
        Ok(CorrectionReceipt {
            id: c.id,
            ip: key.to_ip().to_string(),
            status: c.status,
            verified_from_ip: from_ip,
            requested_at: rfc(c.requested_ms),
        })
    }

    /// Every correction with its history and the new-evidence flag.
    pub async fn list_corrections(&self) -> Result<Vec<CorrectionView>> {
        let all = self.store.read(sp::corrections).await?;
        let mut out = Vec::with_capacity(all.len());
        for c in all {
            out.push(self.correction_view(c)?);
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.id));
        Ok(out)
    }

    fn correction_view(&self, c: Correction) -> Result<CorrectionView> {
        let ip = IpKey(c.ip);
        let ind = self.indicator(ip, self.clock.now())?;
        let last = ind.map(|i| i.last_seen.0);
        let new_evidence = c.status == CorrectionStatus::Granted
            && matches!((last, c.decided_ms), (Some(l), Some(d)) if l > d);
        Ok(CorrectionView {
            id: c.id,
            ip: ip.to_ip().to_string(),
            reason: c.reason,
            details: c.details,
            status: c.status,
            verification: c.verification,
            requested_at: rfc(c.requested_ms),
            decided_at: c.decided_ms.map(rfc),
            new_evidence,
            last_evidence_at: last.map(rfc),
            history: c.history,
        })
    }

    /// An admin decision on correction `id`, with its reason (P26).
    pub async fn decide_correction(
        &self,
        id: u64,
        decision: Decision,
        admin: u64,
        reason: &str,
    ) -> Result<CorrectionView> {
        let reason = decision_reason(reason)?;
        let now = self.clock.now();
        let c = self
            .store
            .write(move |txn| {
                let Some(mut c) = sp::get_correction_in_write(txn, id)? else {
                    return Ok(Err(Error::not_found(format!("correction {id}"))));
                };
                let (want, status, word) = match decision {
                    Decision::Approve => (
                        CorrectionStatus::Pending,
                        CorrectionStatus::Granted,
                        "granted",
                    ),
                    Decision::Deny => (
                        CorrectionStatus::Pending,
                        CorrectionStatus::Denied,
                        "denied",
                    ),
                    Decision::Revoke => (
                        CorrectionStatus::Granted,
                        CorrectionStatus::Denied,
                        "revoked",
                    ),
                };
                if c.status != want {
                    return Ok(Err(Error::Conflict {
                        reason: format!(
                            "correction {id} is {}; only a {} one can be {word}",
                            serde_json::to_value(c.status)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default(),
                            serde_json::to_value(want)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default()
                        ),
                    }));
                }
                c.status = status;
                c.decided_ms = Some(now.0);
                if decision == Decision::Approve {
                    c.verification = Some(Verification::Admin {
                        admin,
                        reason: reason.clone(),
                    });
                }
                let who = if admin == 0 {
                    "operator CLI".to_owned()
                } else {
                    format!("admin {admin}")
                };
                c.history.push(CorrectionEvent {
                    at_ms: now.0,
                    event: format!("{word} by {who}: {reason}"),
                });
                sp::put_correction(txn, &c)?;
                Ok(Ok(c))
            })
            .await??;
        self.threat
            .set_corrected(IpKey(c.ip), c.status == CorrectionStatus::Granted)?;
        self.correction_view(c)
    }
}

// Retention.

/// One row of `sikker admin retention status`.
#[derive(Clone, Debug, Serialize)]
pub struct CategoryStatus {
    pub category: &'static str,
    pub promise: &'static str,
    /// The period, in days (None: see `rule`).
    pub period_days: Option<i64>,
    pub rule: &'static str,
    pub items: u64,
    pub oldest: Option<String>,
    /// When the oldest item becomes due; the next sweep after it deletes it.
    pub next_purge: Option<String>,
}

/// What one privacy sweep removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PrivacySweep {
    pub usage_counters: usize,
    pub registration_ips: usize,
    pub accounts_purged: usize,
    pub consents: usize,
    pub analytics_events: usize,
    pub page_views: usize,
    pub requests: usize,
    pub notices: usize,
}

fn days(ms: i64) -> i64 {
    ms / MILLIS_PER_DAY
}

impl Services {
    /// Deletes every privacy-table item past its period as of `now`, in
    /// batches of `batch` per transaction (called by the retention sweep).
    pub async fn sweep_privacy(&self, now: UnixMillis, batch: usize) -> Result<PrivacySweep> {
        self.flush_usage().await?;
        let o = self.privacy.opts;
        let mut r = PrivacySweep::default();
        let today = now.day();
        // An item of day d is kept through d + period, like raw reports.
        let cut = |ms: i64| UnixMillis(now.0.saturating_sub(ms)).day();
        let (usage_cut, analytics_cut, audience_cut, log_cut) = (
            cut(o.usage_ms),
            cut(o.analytics_ms),
            cut(o.audience_ms),
            cut(o.privacy_log_ms),
        );
        loop {
            let n = self
                .store
                .write(move |txn| {
                    Ok([
                        store::usage::delete_before(txn, usage_cut, batch)?,
                        sp::delete_days_before(txn, tables::DAYID_CONSENT, log_cut, batch)?,
                        sp::delete_days_before(txn, tables::DAYID_ANALYTICS, analytics_cut, batch)?,
                        sp::delete_days_before(txn, tables::DAYID_PAGEVIEW, audience_cut, batch)?,
                    ])
                })
                .await?;
            r.usage_counters += n[0];
            r.consents += n[1];
            r.analytics_events += n[2];
            r.page_views += n[3];
            if n.iter().all(|x| *x < batch) {
                break;
            }
            tokio::task::yield_now().await;
        }
        // Registration addresses (P03, P15): the accounts table holds one
        // row per person, so this pass is short.
        let net_cut = now.0.saturating_sub(o.network_ms);
        let log_cut_ms = now.0.saturating_sub(o.privacy_log_ms);
        let (ips, reqs, notices) = self
            .store
            .write(move |txn| {
                let mut ips = 0;
                for mut a in store_accounts_in_write(txn)? {
                    if a.registration_ip.is_some() && a.created_ms <= net_cut {
                        a.registration_ip = None;
                        store::accounts::put(txn, &a)?;
                        ips += 1;
                    }
                }
                let reqs = sp::delete_requests_answered_before(txn, log_cut_ms)?;
                let notices = sp::delete_notices_before(txn, log_cut_ms)?;
                Ok((ips, reqs, notices))
            })
            .await?;
        r.registration_ips = ips;
        r.requests = reqs;
        r.notices = notices;
        // Erased accounts whose after-deletion period ended (P13).
        loop {
            let due = self
                .store
                .write(move |txn| {
                    let ids = sp::take_due_purges(txn, today, batch)?;
                    for id in &ids {
                        store::accounts::remove(txn, *id)?;
                        sp::remove_state(txn, *id)?;
                    }
                    Ok(ids)
                })
                .await?;
            r.accounts_purged += due.len();
            for id in &due {
                PrivacyState::set(&self.privacy.restricted, *id, false)?;
                PrivacyState::set(&self.privacy.objected, *id, false)?;
            }
            if due.len() < batch {
                break;
            }
        }
        Ok(r)
    }

    /// Per category: its period, how many items are held, the oldest and
    /// when that one is purged (`sikker admin retention status`).
    #[allow(clippy::too_many_lines)]
    pub async fn retention_status(&self) -> Result<Vec<CategoryStatus>> {
        self.flush_usage().await?;
        let o = self.privacy.opts;
        let ret = self.retention;
        let now = self.clock.now();
        let snap = self
            .store
            .read(move |txn| {
                let accounts = store::accounts::all(txn)?;
                let states = sp::all_states(txn)?;
                Ok((
                    store::reports::oldest_day(txn)?,
                    store::indicators::oldest_expiry(txn)?,
                    (store::usage::oldest_day(txn)?, 0_u64),
                    store::sessions::oldest_expiry(txn)?,
                    sp::oldest_day(txn, tables::DAYID_CONSENT)?,
                    sp::oldest_day(txn, tables::DAYID_ANALYTICS)?,
                    sp::oldest_day(txn, tables::DAYID_PAGEVIEW)?,
                    accounts,
                    states,
                    sp::requests(txn)?,
                    sp::notices(txn)?,
                ))
            })
            .await?;
        let (
            reports,
            inds,
            usage,
            sessions,
            consents,
            analytics,
            views,
            accounts,
            states,
            reqs,
            notices,
        ) = snap;
        let day_ms = |d: i64| d * MILLIS_PER_DAY;
        let row = |category,
                   promise,
                   period: Option<i64>,
                   rule,
                   items,
                   oldest: Option<i64>,
                   due: Option<i64>| {
            CategoryStatus {
                category,
                promise,
                period_days: period.map(days),
                rule,
                items,
                oldest: oldest.map(rfc),
                next_purge: due.map(rfc),
            }
        };
        let by_day = |(d, n): (Option<i64>, u64), period: i64| {
            (n, d.map(day_ms), d.map(|d| day_ms(d + 1) + period))
        };
        let mut out = Vec::new();
        let (n, old, due) = by_day(reports, ret.reports_ms);
        out.push(row(
            "raw_reports",
            "P18",
            Some(ret.reports_ms),
            "from the report's day",
            n,
            old,
            due,
        ));
        out.push(row(
            "indicators",
            "P19",
            Some(ret.indicators_ms),
            "after the last evidence from any source",
            inds.1,
            None,
            inds.0.map(day_ms),
        ));
        let usage_days = usage.0;
        let usage_rows = self
            .store
            .read(|txn| {
                use redb::ReadableTableMetadata as _;
                Ok(txn.open_table(tables::KEYDAY_USAGE)?.len()?)
            })
            .await?;
        out.push(row(
            "api_usage",
            "P16",
            Some(o.usage_ms),
            "from the counter's day",
            usage_rows,
            usage_days.map(day_ms),
            usage_days.map(|d| day_ms(d + 1) + o.usage_ms),
        ));
        out.push(row(
            "sessions_devices",
            "P04/P15",
            Some(o.network_ms),
            "deleted when the session expires (at most 30 days), far inside the period",
            sessions.1,
            None,
            sessions.0.map(day_ms),
        ));
        let with_ip: Vec<i64> = accounts
            .iter()
            .filter(|a| a.registration_ip.is_some())
            .map(|a| a.created_ms)
            .collect();
        let oldest_ip = with_ip.iter().min().copied();
        out.push(row(
            "network_registration_ip",
            "P03/P15",
            Some(o.network_ms),
            "from collection",
            with_ip.len() as u64,
            oldest_ip,
            oldest_ip.map(|m| m + o.network_ms),
        ));
        out.push(row(
            "geolocation",
            "P17",
            Some(o.network_ms),
            "not stored: looked up in the local database when needed; audience country codes follow audience_metrics",
            0,
            None,
            None,
        ));
        let erased: Vec<i64> = states.iter().filter_map(|(_, s)| s.erased_ms).collect();
        let oldest_erased = erased.iter().min().copied();
        out.push(row(
            "accounts",
            "P13",
            None,
            "account lifetime, then the after-deletion period below",
            accounts.len() as u64,
            accounts.iter().map(|a| a.created_ms).min(),
            None,
        ));
        out.push(row(
            "erased_accounts",
            "P13/P22",
            Some(o.account_after_deletion_ms),
            "from erasure",
            erased.len() as u64,
            oldest_erased,
            oldest_erased.map(|m| day_ms(UnixMillis(m + o.account_after_deletion_ms).day())),
        ));
        let with_auth = accounts.iter().filter(|a| a.auth.is_some()).count() as u64;
        out.push(row(
            "authentication",
            "P14",
            Some(0),
            "deleted at erasure",
            with_auth,
            None,
            None,
        ));
        let (n, old, due) = by_day(analytics, o.analytics_ms);
        out.push(row(
            "analytics",
            "P20",
            Some(o.analytics_ms),
            "from collection",
            n,
            old,
            due,
        ));
        let (n, old, due) = by_day(views, o.audience_ms);
        out.push(row(
            "audience_metrics",
            "P21",
            Some(o.audience_ms),
            "from the day",
            n,
            old,
            due,
        ));
        let (n, old, due) = by_day(consents, o.privacy_log_ms);
        out.push(row(
            "consent_log",
            "P44",
            Some(o.privacy_log_ms),
            "from the decision",
            n,
            old,
            due,
        ));
        let answered: Vec<i64> = reqs.iter().filter_map(|r| r.answered_ms).collect();
        let oldest_req = answered.iter().min().copied();
        out.push(row(
            "data_subject_requests",
            "P36",
            Some(o.privacy_log_ms),
            "from the answer",
            reqs.len() as u64,
            oldest_req,
            oldest_req.map(|m| m + o.privacy_log_ms),
        ));
        let oldest_notice = notices.iter().map(|n| n.created_ms).min();
        out.push(row(
            "notices",
            "P58",
            Some(o.privacy_log_ms),
            "from sending",
            notices.len() as u64,
            oldest_notice,
            oldest_notice.map(|m| m + o.privacy_log_ms),
        ));
        out.push(row(
            "delivery_log",
            "P59",
            Some(ret.reports_ms),
            "finished outbox entries, from delivery",
            0,
            None,
            None,
        ));
        out.push(row(
            "logs",
            "P24",
            None,
            "written to stderr only (anonymised); kept by the journal per the operator's journald settings",
            0,
            None,
            None,
        ));
        let _ = now;
        Ok(out)
    }
}

fn store_accounts_in_write(
    txn: &redb::WriteTransaction,
) -> store::Result<Vec<store::accounts::Account>> {
    let ids: Vec<u64> = {
        use redb::ReadableTable as _;
        let t = txn.open_table(tables::ACCOUNTID_ACCOUNT)?;
        let mut v = Vec::new();
        for item in t.iter()? {
            v.push(item?.0.value());
        }
        v
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(a) = store::accounts::get_in_write(txn, id)? {
            out.push(a);
        }
    }
    Ok(out)
}

// Data-subject rights.

/// Kinds of data-subject request.
pub const REQUEST_KINDS: [&str; 8] = [
    "access",
    "rectification",
    "erasure",
    "restriction",
    "lift_restriction",
    "objection",
    "withdraw_objection",
    "consent_withdrawal",
];

impl Services {
    /// Logs a data-subject request; `answered` when it was carried out at once.
    pub async fn log_request(
        &self,
        account: u64,
        kind: &str,
        via: &str,
        answered: bool,
    ) -> Result<GdprRequest> {
        if !REQUEST_KINDS.contains(&kind) {
            return Err(Error::invalid(
                "kind",
                format!("must be one of {}", REQUEST_KINDS.join(", ")),
            ));
        }
        let now = self.clock.now().0;
        let (kind, via) = (kind.to_owned(), via.to_owned());
        Ok(self
            .store
            .write(move |txn| {
                let r = GdprRequest {
                    id: sp::next_request_id(txn)?,
                    account,
                    kind,
                    via,
                    received_ms: now,
                    answered_ms: answered.then_some(now),
                };
                sp::put_request(txn, &r)?;
                Ok(r)
            })
            .await?)
    }

    /// Marks request `id` answered (or every open request of `account` of `kind`).
    pub async fn answer_requests(
        &self,
        id: Option<u64>,
        account: u64,
        kind: &str,
    ) -> Result<usize> {
        let now = self.clock.now().0;
        let kind = kind.to_owned();
        Ok(self
            .store
            .write(move |txn| {
                let mut n = 0;
                for mut r in sp::requests_in_write(txn)? {
                    let hit = match id {
                        Some(i) => r.id == i,
                        None => r.account == account && r.kind == kind,
                    };
                    if hit && r.answered_ms.is_none() {
                        r.answered_ms = Some(now);
                        sp::put_request(txn, &r)?;
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await?)
    }

    /// Requests not yet answered, soonest deadline first, with days left.
    pub async fn pending_requests(&self) -> Result<Vec<Value>> {
        let now = self.clock.now().0;
        let mut v: Vec<GdprRequest> = self
            .store
            .read(sp::requests)
            .await?
            .into_iter()
            .filter(|r| r.answered_ms.is_none())
            .collect();
        v.sort_by_key(|r| r.received_ms);
        Ok(v.into_iter()
            .map(|r| {
                let deadline = r.received_ms + DEADLINE_MS;
                json!({
                    "id": r.id, "account": r.account, "kind": r.kind, "via": r.via,
                    "received": rfc(r.received_ms), "deadline": rfc(deadline),
                    "days_left": (deadline - now).div_euclid(MILLIS_PER_DAY),
                    "overdue": deadline <= now,
                })
            })
            .collect())
    }

    /// Everything held about `account`, as one JSON document (P29, P33):
    /// no password hash, token hash or key hash.
    pub async fn export_account(&self, account: u64) -> Result<Value> {
        self.flush_usage().await?;
        let a = self.account(account).await?;
        let keys = self.account_keys(account)?;
        let key_ids: Vec<u64> = keys.iter().map(|k| k.id).collect();
        let data = self
            .store
            .read(move |txn| {
                let sessions = store::sessions::of_account(txn, account)?;
                let mut usage = Vec::new();
                for k in &key_ids {
                    for (d, b, n) in store::usage::of_key(txn, *k)? {
                        usage.push((*k, d, b, n));
                    }
                }
                let reports: Vec<_> = store::reports::all(txn)?
                    .into_iter()
                    .filter(|r| r.account == account)
                    .collect();
                let alerts = store::alerts::account_alerts(txn, account)?;
                let deliveries = store::alerts::account_deliveries(txn, account, 10_000)?;
                let consents: Vec<_> = sp::consents(txn, i64::MIN, i64::MAX)?
                    .into_iter()
                    .filter(|c| c.account == Some(account))
                    .collect();
                let requests: Vec<_> = sp::requests(txn)?
                    .into_iter()
                    .filter(|r| r.account == account)
                    .collect();
                let state = sp::state(txn, account)?;
                Ok((
                    sessions, usage, reports, alerts, deliveries, consents, requests, state,
                ))
            })
            .await?;
        let (sessions, usage, reports, alerts, deliveries, consents, requests, state) = data;
        let auth = a.auth.as_ref().map(|x| {
            json!({
                "password_changed": x.password_changed_ms.iter().map(|m| rfc(*m)).collect::<Vec<_>>(),
                "failed_logins": x.failed_logins_ms.iter().map(|m| rfc(*m)).collect::<Vec<_>>(),
            })
        });
        Ok(json!({
            "format": "sikker-export-1",
            "exported_at": rfc(self.clock.now().0),
            "account": {
                "id": a.id, "username": a.username, "email": a.email,
                "email_verified": a.email_verified,
                "first_name": a.profile.first_name, "last_name": a.profile.last_name,
                "country": a.profile.country, "account_type": a.profile.account_type,
                "company": a.profile.company, "vat_id": a.profile.vat_id,
                "role": a.role, "tier": a.tier, "created": rfc(a.created_ms),
                "registration_ip": a.registration_ip, "disabled": a.disabled,
            },
            "authentication": auth,
            "sessions": sessions.iter().map(|s| json!({
                "id": s.family, "created": rfc(s.created_ms), "last_used": rfc(s.last_used_ms),
                "expires": rfc(s.expires_ms), "remember_me": s.remember,
                "user_agent": s.user_agent, "ip": s.ip, "revoked": opt_rfc(s.revoked_ms),
            })).collect::<Vec<_>>(),
            "api_keys": keys.iter().map(|k| json!({
                "id": k.id, "name": k.name, "tier": k.tier, "prefix": k.prefix,
                "created": rfc(k.created_ms), "revoked": opt_rfc(k.revoked_ms),
                "last_used_day": k.last_used_day.map(day_str),
            })).collect::<Vec<_>>(),
            "usage": usage.iter().map(|(k, d, b, n)| json!({
                "key_id": k, "day": day_str(*d),
                "bucket": super::quotas::Bucket::ALL.iter().find(|x| **x as u8 == *b).map(|x| x.as_str()), "count": n,
            })).collect::<Vec<_>>(),
            "contributions": reports.iter().map(|r| json!({
                "id": r.id, "ip": IpKey(r.ip).to_ip().to_string(), "categories": r.categories(),
                "protocol": r.protocol, "comment": r.comment, "at": rfc(r.at_ms), "counted": r.counted,
            })).collect::<Vec<_>>(),
            "alerts": alerts.iter().map(|x| serde_json::to_value(x).unwrap_or_default()).collect::<Vec<_>>(),
            "deliveries": deliveries.iter().map(|d| json!({
                "id": d.id, "alert_id": d.alert_id, "status": d.status,
                "created": rfc(d.created_ms), "finished": opt_rfc(d.finished_ms),
            })).collect::<Vec<_>>(),
            "consents": consents.iter().map(|c| json!({
                "at": rfc(c.at_ms), "decision": if c.granted { "granted" } else { "denied" },
            })).collect::<Vec<_>>(),
            "privacy": {
                "restricted": opt_rfc(state.restricted_ms),
                "objected_to_audience_measurement": opt_rfc(state.objected_ms),
            },
            "requests": requests.iter().map(|r| json!({
                "id": r.id, "kind": r.kind, "received": rfc(r.received_ms), "answered": opt_rfc(r.answered_ms),
            })).collect::<Vec<_>>(),
        }))
    }

    /// Erasure (P31, P14): authentication data, sessions and alerts go at
    /// once, keys are revoked, contributions are detached from the account
    /// (aggregates stay), the registration address is dropped; the rest of
    /// the account is purged after the after-deletion period.
    pub async fn erase_account(&self, account: u64) -> Result<Value> {
        let now = self.clock.now();
        let purge_day = UnixMillis(now.0 + self.privacy.opts.account_after_deletion_ms).day();
        let a = self
            .store
            .write(move |txn| {
                let Some(mut a) = store::accounts::get_in_write(txn, account)? else {
                    return Ok(Err(Error::not_found(format!("account {account}"))));
                };
                let mut st = sp::state_in_write(txn, account)?;
                if st.erased_ms.is_some() {
                    return Ok(Err(Error::Conflict {
                        reason: "this account is already erased".into(),
                    }));
                }
                a.auth = None;
                a.disabled = true;
                a.registration_ip = None;
                store::accounts::put(txn, &a)?;
                for s in store::sessions::of_account_in_write(txn, account)? {
                    store::sessions::delete(txn, &s)?;
                }
                for al in store::alerts::account_alerts_in_write(txn, account)? {
                    store::alerts::delete_alert(txn, &al)?;
                }
                store::reports::anonymise_account(txn, account)?;
                st.erased_ms = Some(now.0);
                sp::put_state(txn, account, &st)?;
                sp::schedule_purge(txn, purge_day, account)?;
                Ok(Ok(a))
            })
            .await??;
        for k in self.account_keys(account)? {
            if k.revoked_ms.is_none() {
                self.revoke_api_key(k.id).await?;
            }
        }
        self.sync_account_keys(&a).await?;
        let anonymised = self.anonymise_reporter(account).await?;
        Ok(json!({
            "account": account, "erased": rfc(now.0),
            "indicators_anonymised": anonymised,
            "purge_on": day_str(purge_day),
        }))
    }

    /// Re-keys `account`'s entries in indicators to a fresh pseudonym, so
    /// scores and distinct-reporter counts stay but nothing points back.
    async fn anonymise_reporter(&self, account: u64) -> Result<usize> {
        let ips: Vec<IpKey> = self
            .store
            .read(move |txn| {
                let mut hits = Vec::new();
                store::indicators::for_each(txn, |i| {
                    if i.reporters.contains_key(&account) {
                        hits.push(i.ip);
                    }
                })?;
                Ok(hits)
            })
            .await?;
        let n = ips.len();
        if n == 0 {
            return Ok(0);
        }
        self.store
            .write(move |txn| {
                for ip in ips {
                    if let Some(mut ind) = store::indicators::get_in_write(txn, ip)?
                        && let Some(st) = ind.reporters.remove(&account)
                    {
                        let pseudonym = (1_u64 << 63) | store::meta::next_id(txn, "anon_reporter")?;
                        ind.reporters.insert(pseudonym, st);
                        store::indicators::rewrite(txn, &ind)?;
                    }
                }
                Ok(())
            })
            .await?;
        Ok(n)
    }
}

// Self-service rights of a signed-in person.

impl Services {
    /// Whether `password` is the account's current one.
    pub async fn confirm_password(&self, account: u64, password: &str) -> Result<bool> {
        let a = self.account(account).await?;
        self.verify_password(password, a.auth.as_ref().map(|x| x.password_hash.as_str()))
            .await
    }

    /// Restriction on or off (P32): while on, the account's API keys are
    /// refused (processing paused); sign-in, export and erasure still work.
    pub async fn set_restriction(&self, account: u64, on: bool) -> Result<sp::PrivacyState> {
        let st = self
            .update_state(account, move |st, now| {
                st.restricted_ms = on.then_some(st.restricted_ms.unwrap_or(now));
            })
            .await?;
        PrivacyState::set(&self.privacy.restricted, account, on)?;
        Ok(st)
    }

    /// Objection to audience measurement on or off (P34).
    pub async fn set_objection(&self, account: u64, on: bool) -> Result<sp::PrivacyState> {
        let st = self
            .update_state(account, move |st, now| {
                st.objected_ms = on.then_some(st.objected_ms.unwrap_or(now));
            })
            .await?;
        PrivacyState::set(&self.privacy.objected, account, on)?;
        Ok(st)
    }

    async fn update_state(
        &self,
        account: u64,
        f: impl FnOnce(&mut sp::PrivacyState, i64) + Send + 'static,
    ) -> Result<sp::PrivacyState> {
        let now = self.clock.now().0;
        self.account(account).await?;
        Ok(self
            .store
            .write(move |txn| {
                let mut st = sp::state_in_write(txn, account)?;
                f(&mut st, now);
                sp::put_state(txn, account, &st)?;
                Ok(st)
            })
            .await?)
    }

    /// The privacy state and request log of `account`.
    pub async fn privacy_overview(&self, account: u64) -> Result<Value> {
        let (st, reqs) = self
            .store
            .read(move |txn| {
                Ok((
                    sp::state(txn, account)?,
                    sp::requests(txn)?
                        .into_iter()
                        .filter(|r| r.account == account)
                        .collect::<Vec<_>>(),
                ))
            })
            .await?;
        Ok(json!({
            "restricted": st.restricted_ms.is_some(),
            "restricted_since": opt_rfc(st.restricted_ms),
            "objected_to_audience_measurement": st.objected_ms.is_some(),
            "objected_since": opt_rfc(st.objected_ms),
            "requests": reqs.iter().map(|r| json!({
                "id": r.id, "kind": r.kind, "via": r.via,
                "received": rfc(r.received_ms), "answered": opt_rfc(r.answered_ms),
            })).collect::<Vec<_>>(),
        }))
    }
}

// Consent and first-party analytics.

/// `granted` or `denied`; anything else is refused.
pub fn parse_decision(s: &str) -> Result<bool> {
    match s {
        "granted" => Ok(true),
        "denied" => Ok(false),
        _ => Err(Error::invalid("decision", "must be granted or denied")),
    }
}

fn check_token(field: &str, s: &str, min: usize, max: usize) -> Result<()> {
    let ok = (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("must be {min} to {max} letters, digits, '-', '_', '.' or ':'"),
        ))
    }
}

impl Services {
    /// Logs a consent decision with its time (P44).
    pub async fn record_consent(&self, granted: bool, account: Option<u64>) -> Result<Consent> {
        let now = self.clock.now();
        let c = Consent {
            at_ms: now.0,
            granted,
            account,
        };
        let stored = c.clone();
        self.store
            .write(move |txn| sp::add_consent(txn, now.day(), &stored))
            .await?;
        Ok(c)
    }

    /// Stores one analytics event; the caller has checked consent (P08).
    pub async fn record_analytics(&self, sid: &str, name: &str, path: &str) -> Result<()> {
        check_token("sid", sid, 8, 64)?;
        check_token("name", name, 1, 64)?;
        let path = super::audience::normalise_path(path).ok_or_else(|| {
            Error::invalid("path", "must be an absolute path of at most 200 characters")
        })?;
        let now = self.clock.now();
        let e = AnalyticsEvent {
            at_ms: now.0,
            sid: sid.to_owned(),
            name: name.to_owned(),
            path,
        };
        self.store
            .write(move |txn| sp::add_analytics(txn, now.day(), &e))
            .await?;
        Ok(())
    }

    /// Analytics totals for the last `days` days (admins).
    pub async fn analytics_summary(&self, days: i64) -> Result<Value> {
        let today = self.clock.now().day();
        let from = today - days.clamp(1, 800) + 1;
        let evs = self
            .store
            .read(move |txn| sp::analytics(txn, from, today))
            .await?;
        let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_path: BTreeMap<String, u64> = BTreeMap::new();
        let mut sids = HashSet::new();
        for e in &evs {
            *by_name.entry(e.name.clone()).or_default() += 1;
            *by_path.entry(e.path.clone()).or_default() += 1;
            sids.insert(e.sid.clone());
        }
        Ok(json!({
            "from": day_str(from), "to": day_str(today),
            "events": evs.len(), "sessions": sids.len(),
            "by_name": by_name, "by_path": by_path,
        }))
    }
}

// Notices to every account holder.

impl Services {
    /// Queues `subject`/`body` to every account holder with an address
    /// (breach or policy change, P58), spread at the configured rate, and
    /// records who was notified when.
    pub async fn notify_all(&self, subject: &str, body: &str) -> Result<Value> {
        let subject = subject.trim();
        if subject.is_empty() || subject.chars().count() > 200 || subject.contains(['\r', '\n']) {
            return Err(Error::invalid(
                "subject",
                "must be 1 to 200 characters on one line",
            ));
        }
        if body.trim().is_empty() || body.len() > 64 * 1024 {
            return Err(Error::invalid("body", "must be 1 byte to 64 KiB of text"));
        }
        let accounts = self.store.read(store::accounts::all).await?;
        let erased: HashSet<u64> = self
            .store
            .read(sp::all_states)
            .await?
            .into_iter()
            .filter(|(_, s)| s.erased_ms.is_some())
            .map(|(a, _)| a)
            .collect();
        let now = self.clock.now().0;
        let gap = 60_000 / i64::from(self.privacy.opts.notify_per_minute.max(1));
        let mut notified = Vec::new();
        for (i, a) in accounts
            .iter()
            .filter(|a| !erased.contains(&a.id))
            .enumerate()
        {
            let at = now + gap * i64::try_from(i).unwrap_or(i64::MAX / 2);
            self.send_mail_at(
                super::mail::Mail {
                    account: a.id,
                    to: a.email.clone(),
                    subject: subject.to_owned(),
                    body: body.to_owned(),
                },
                UnixMillis(at),
            )
            .await?;
            notified.push((a.id, at));
        }
        let subject = subject.to_owned();
        let n = self
            .store
            .write(move |txn| {
                let n = Notice {
                    id: sp::next_notice_id(txn)?,
                    subject,
                    created_ms: now,
                    notified,
                };
                sp::put_notice(txn, &n)?;
                Ok(n)
            })
            .await?;
        Ok(json!({
            "notice": n.id, "subject": n.subject, "recipients": n.notified.len(),
            "last_queued_for": n.notified.last().map(|(_, at)| rfc(*at)),
        }))
    }

    pub async fn list_notices(&self) -> Result<Vec<Value>> {
        Ok(self
            .store
            .read(sp::notices)
            .await?
            .into_iter()
            .map(|n| {
                json!({
                    "id": n.id, "subject": n.subject, "sent": rfc(n.created_ms),
                    "recipients": n.notified.len(),
                    "notified": n.notified.iter().map(|(a, at)| json!({"account": a, "at": rfc(*at)})).collect::<Vec<_>>(),
                })
            })
            .collect())
    }
}

// The operator's privacy requests (admin socket and offline CLI).

/// Privacy operations of `sikker admin`, carried over the admin socket.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PrivacyRequest {
    CorrectionList,
    CorrectionDecide {
        id: u64,
        decision: Decision,
        reason: String,
    },
    RetentionStatus,
    GdprExport {
        account: u64,
    },
    GdprErase {
        account: u64,
    },
    /// Records a request received outside the app (e-mail, letter), so its deadline is tracked.
    GdprRecord {
        account: u64,
        kind: String,
    },
    GdprAnswer {
        id: u64,
    },
    GdprPending,
    Notify {
        subject: String,
        body: String,
    },
    NoticeList,
}

impl Services {
    pub async fn privacy_admin(&self, req: PrivacyRequest) -> Result<Value> {
        Ok(match req {
            PrivacyRequest::CorrectionList => json!(self.list_corrections().await?),
            PrivacyRequest::CorrectionDecide {
                id,
                decision,
                reason,
            } => json!(self.decide_correction(id, decision, 0, &reason).await?),
            PrivacyRequest::RetentionStatus => json!(self.retention_status().await?),
            PrivacyRequest::GdprExport { account } => {
                let v = self.export_account(account).await?;
                self.answer_or_log(account, "access").await?;
                v
            }
            PrivacyRequest::GdprErase { account } => {
                let v = self.erase_account(account).await?;
                self.answer_or_log(account, "erasure").await?;
                v
            }
            PrivacyRequest::GdprRecord { account, kind } => {
                self.account(account).await?;
                json!(self.log_request(account, &kind, "cli", false).await?.id)
            }
            PrivacyRequest::GdprAnswer { id } => {
                let n = self.answer_requests(Some(id), 0, "").await?;
                if n == 0 {
                    return Err(Error::not_found(format!("open request {id}")));
                }
                json!({"answered": id})
            }
            PrivacyRequest::GdprPending => json!(self.pending_requests().await?),
            PrivacyRequest::Notify { subject, body } => self.notify_all(&subject, &body).await?,
            PrivacyRequest::NoticeList => json!(self.list_notices().await?),
        })
    }

    /// Marks open requests of this kind answered, or logs an answered one.
    pub async fn answer_or_log(&self, account: u64, kind: &str) -> Result<()> {
        if self.answer_requests(None, account, kind).await? == 0 {
            self.log_request(account, kind, "cli", true).await?;
        }
        Ok(())
    }
}
