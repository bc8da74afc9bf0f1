//! Privacy records: listing corrections, per-account privacy state,
//! data-subject requests, the consent log, first-party analytics events,
//! anonymous page views and breach/policy notices. Every day-keyed table
//! here is dropped a day at a time by the retention sweep.

use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::tables::{
    ACCOUNTID_PRIVACY, CORRECTIONID_CORRECTION, DAY_ACCOUNTPURGE, DAYID_ANALYTICS, DAYID_CONSENT,
    DAYID_PAGEVIEW, IP_CORRECTIONID, NOTICEID_NOTICE, REQUESTID_GDPRREQUEST,
};
use super::{Result, codec, meta};

/// Why a listing correction is asked for (seed 004 §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionReason {
    FalsePositive,
    OwnershipChange,
    DynamicReassignment,
}

impl CorrectionReason {
    pub const ALL: [&'static str; 3] =
        ["false_positive", "ownership_change", "dynamic_reassignment"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "false_positive" => Some(Self::FalsePositive),
            "ownership_change" => Some(Self::OwnershipChange),
            "dynamic_reassignment" => Some(Self::DynamicReassignment),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionStatus {
    /// Waiting for an admin decision (control not shown from the IP itself).
    Pending,
    Granted,
    Denied,
}

/// How control of the IP was verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// The request came from the IP itself.
    FromIp,
    /// An admin decided, with a recorded reason.
    Admin { admin: u64, reason: String },
}

/// One step in a correction's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrectionEvent {
    pub at_ms: i64,
    pub event: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    pub id: u64,
    pub ip: u128,
    pub reason: CorrectionReason,
    pub details: Option<String>,
    pub status: CorrectionStatus,
    pub verification: Option<Verification>,
    pub requested_ms: i64,
    pub decided_ms: Option<i64>,
    pub history: Vec<CorrectionEvent>,
}

#[derive(Serialize, Deserialize)]
enum DbCorrection {
    V1(Correction),
}

/// Per-account privacy state, kept apart from the account record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyState {
    /// Restriction (P32): processing paused, API keys refused.
    pub restricted_ms: Option<i64>,
    /// Objection to audience measurement (P34).
    pub objected_ms: Option<i64>,
    /// Erasure (P31): when it happened; the rest is purged later.
    pub erased_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
enum DbPrivacyState {
    V1(PrivacyState),
}

/// A data-subject request and its answer (P36).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GdprRequest {
    pub id: u64,
    pub account: u64,
    /// access, rectification, erasure, restriction, lift_restriction, objection, withdraw_objection, consent_withdrawal
    pub kind: String,
    /// "self" (the signed-in person) or "admin:<id>"/"cli" acting on a verified request.
    pub via: String,
    pub received_ms: i64,
    pub answered_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
enum DbGdprRequest {
    V1(GdprRequest),
}

/// One consent decision (P44).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub at_ms: i64,
    pub granted: bool,
    /// The signed-in account that decided, if any.
    pub account: Option<u64>,
}

#[derive(Serialize, Deserialize)]
enum DbConsent {
    V1(Consent),
}

/// One first-party analytics event (P08, consent only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyticsEvent {
    pub at_ms: i64,
    /// `_ska_sid` from the page's sessionStorage.
    pub sid: String,
    pub name: String,
    pub path: String,
}

#[derive(Serialize, Deserialize)]
enum DbAnalytics {
    V1(AnalyticsEvent),
}

/// One anonymous page view (P46): exactly these four facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageView {
    /// 16 hex characters, rotating daily.
    pub visitor: String,
    pub path: String,
    pub referrer_domain: Option<String>,
    pub country: Option<String>,
}

#[derive(Serialize, Deserialize)]
enum DbPageView {
    V1(PageView),
}

/// A breach or policy notice and who it went to (P58).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub id: u64,
    pub subject: String,
    pub created_ms: i64,
    /// (account, queued at).
    pub notified: Vec<(u64, i64)>,
}

#[derive(Serialize, Deserialize)]
enum DbNotice {
    V1(Notice),
}

fn dec<T: DeserializeOwned>(what: &str, b: &[u8]) -> Result<T> {
    codec::decode(what, b)
}

// Corrections.

pub fn next_correction_id(txn: &WriteTransaction) -> Result<u64> {
    meta::next_id(txn, "correction")
}

pub fn put_correction(txn: &WriteTransaction, c: &Correction) -> Result<()> {
    txn.open_table(CORRECTIONID_CORRECTION)?
        .insert(c.id, codec::encode(&DbCorrection::V1(c.clone())).as_slice())?;
    let mut by_ip = txn.open_table(IP_CORRECTIONID)?;
    if c.status == CorrectionStatus::Granted {
        by_ip.insert(c.ip, c.id)?;
    } else if by_ip.get(c.ip)?.is_some_and(|v| v.value() == c.id) {
        by_ip.remove(c.ip)?;
    }
    Ok(())
}

fn decode_correction(b: &[u8]) -> Result<Correction> {
    match dec::<DbCorrection>("correctionid_correction", b)? {
        DbCorrection::V1(c) => Ok(c),
    }
}

pub fn get_correction_in_write(txn: &WriteTransaction, id: u64) -> Result<Option<Correction>> {
    txn.open_table(CORRECTIONID_CORRECTION)?
        .get(id)?
        .map(|v| decode_correction(v.value()))
        .transpose()
}

pub fn corrections(txn: &ReadTransaction) -> Result<Vec<Correction>> {
    let t = txn.open_table(CORRECTIONID_CORRECTION)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode_correction(item?.1.value())?);
    }
    Ok(out)
}

pub fn corrections_in_write(txn: &WriteTransaction) -> Result<Vec<Correction>> {
    let t = txn.open_table(CORRECTIONID_CORRECTION)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode_correction(item?.1.value())?);
    }
    Ok(out)
}

/// The IPs with a granted correction.
pub fn corrected_ips(txn: &ReadTransaction) -> Result<Vec<u128>> {
    let t = txn.open_table(IP_CORRECTIONID)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(item?.0.value());
    }
    Ok(out)
}

// Account privacy state.

pub fn state(txn: &ReadTransaction, account: u64) -> Result<PrivacyState> {
    txn.open_table(ACCOUNTID_PRIVACY)?
        .get(account)?
        .map_or(Ok(PrivacyState::default()), |v| {
            match dec::<DbPrivacyState>("accountid_privacy", v.value())? {
                DbPrivacyState::V1(s) => Ok(s),
            }
        })
}

pub fn all_states(txn: &ReadTransaction) -> Result<Vec<(u64, PrivacyState)>> {
    let t = txn.open_table(ACCOUNTID_PRIVACY)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        let DbPrivacyState::V1(s) = dec("accountid_privacy", v.value())?;
        out.push((k.value(), s));
    }
    Ok(out)
}

pub fn state_in_write(txn: &WriteTransaction, account: u64) -> Result<PrivacyState> {
    txn.open_table(ACCOUNTID_PRIVACY)?
        .get(account)?
        .map_or(Ok(PrivacyState::default()), |v| {
            match dec::<DbPrivacyState>("accountid_privacy", v.value())? {
                DbPrivacyState::V1(s) => Ok(s),
            }
        })
}

pub fn put_state(txn: &WriteTransaction, account: u64, s: &PrivacyState) -> Result<()> {
    let mut t = txn.open_table(ACCOUNTID_PRIVACY)?;
    if *s == PrivacyState::default() {
        t.remove(account)?;
    } else {
        t.insert(
            account,
            codec::encode(&DbPrivacyState::V1(s.clone())).as_slice(),
        )?;
    }
    Ok(())
}

pub fn remove_state(txn: &WriteTransaction, account: u64) -> Result<()> {
    txn.open_table(ACCOUNTID_PRIVACY)?.remove(account)?;
    Ok(())
}

/// Schedules the final purge of an erased account on `day`.
pub fn schedule_purge(txn: &WriteTransaction, day: i64, account: u64) -> Result<()> {
    txn.open_table(DAY_ACCOUNTPURGE)?
        .insert((day, account), ())?;
    Ok(())
}

/// Schedules the purge of every erased account again, `period_ms` after
/// its erasure (after the period changed); returns how many.
pub fn refile_purges(txn: &WriteTransaction, period_ms: i64) -> Result<u64> {
    txn.delete_table(DAY_ACCOUNTPURGE)?;
    let states = txn.open_table(ACCOUNTID_PRIVACY)?;
    let mut t = txn.open_table(DAY_ACCOUNTPURGE)?;
    let mut n = 0;
    for item in states.iter()? {
        let (account, v) = item?;
        let DbPrivacyState::V1(s) = dec("accountid_privacy", v.value())?;
        if let Some(erased) = s.erased_ms {
            let day = crate::domain::UnixMillis(erased.saturating_add(period_ms)).day();
            t.insert((day, account.value()), ())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Takes up to `max` accounts due for purge before or on `day`.
pub fn take_due_purges(txn: &WriteTransaction, day: i64, max: usize) -> Result<Vec<u64>> {
    let mut t = txn.open_table(DAY_ACCOUNTPURGE)?;
    let mut keys = Vec::new();
    for item in t.range((i64::MIN, 0_u64)..=(day, u64::MAX))?.take(max) {
        keys.push(item?.0.value());
    }
    for k in &keys {
        t.remove(*k)?;
    }
    Ok(keys.into_iter().map(|(_, a)| a).collect())
}

// Data-subject requests.

pub fn put_request(txn: &WriteTransaction, r: &GdprRequest) -> Result<()> {
    txn.open_table(REQUESTID_GDPRREQUEST)?.insert(
        r.id,
        codec::encode(&DbGdprRequest::V1(r.clone())).as_slice(),
    )?;
    Ok(())
}

pub fn next_request_id(txn: &WriteTransaction) -> Result<u64> {
    meta::next_id(txn, "gdpr_request")
}

pub fn requests_in_write(txn: &WriteTransaction) -> Result<Vec<GdprRequest>> {
    let t = txn.open_table(REQUESTID_GDPRREQUEST)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let DbGdprRequest::V1(r) = dec("requestid_gdprrequest", item?.1.value())?;
        out.push(r);
    }
    Ok(out)
}

/// Deletes requests answered before `cutoff_ms`; returns how many.
pub fn delete_requests_answered_before(txn: &WriteTransaction, cutoff_ms: i64) -> Result<usize> {
    let old: Vec<u64> = requests_in_write(txn)?
        .into_iter()
        .filter(|r| r.answered_ms.is_some_and(|a| a < cutoff_ms))
        .map(|r| r.id)
        .collect();
    let mut t = txn.open_table(REQUESTID_GDPRREQUEST)?;
    for id in &old {
        t.remove(*id)?;
    }
    Ok(old.len())
}

pub fn requests(txn: &ReadTransaction) -> Result<Vec<GdprRequest>> {
    let t = txn.open_table(REQUESTID_GDPRREQUEST)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let DbGdprRequest::V1(r) = dec("requestid_gdprrequest", item?.1.value())?;
        out.push(r);
    }
    Ok(out)
}

// Day-keyed logs: consent, analytics, page views.

fn put_day<V: Serialize>(
    txn: &WriteTransaction,
    def: TableDefinition<(i64, u64), &[u8]>,
    seq: &str,
    day: i64,
    v: &V,
) -> Result<u64> {
    let id = meta::next_id(txn, seq)?;
    txn.open_table(def)?
        .insert((day, id), codec::encode(v).as_slice())?;
    Ok(id)
}

fn day_range<T: DeserializeOwned>(
    txn: &ReadTransaction,
    def: TableDefinition<(i64, u64), &[u8]>,
    what: &str,
    from_day: i64,
    to_day: i64,
) -> Result<Vec<(i64, T)>> {
    let t = txn.open_table(def)?;
    let mut out = Vec::new();
    for item in t.range((from_day, 0_u64)..=(to_day, u64::MAX))? {
        let (k, v) = item?;
        out.push((k.value().0, dec(what, v.value())?));
    }
    Ok(out)
}

/// Deletes up to `max` rows of days before `day`.
pub fn delete_days_before(
    txn: &WriteTransaction,
    def: TableDefinition<(i64, u64), &[u8]>,
    day: i64,
    max: usize,
) -> Result<usize> {
    let mut t = txn.open_table(def)?;
    let mut keys = Vec::new();
    for item in t.range((i64::MIN, 0_u64)..(day, 0_u64))?.take(max) {
        keys.push(item?.0.value());
    }
    for k in &keys {
        t.remove(*k)?;
    }
    Ok(keys.len())
}

/// The oldest day present in a day-keyed table, and its row count.
pub fn oldest_day(
    txn: &ReadTransaction,
    def: TableDefinition<(i64, u64), &[u8]>,
) -> Result<(Option<i64>, u64)> {
    let t = txn.open_table(def)?;
    Ok((t.first()?.map(|(k, _)| k.value().0), t.len()?))
}

pub fn add_consent(txn: &WriteTransaction, day: i64, c: &Consent) -> Result<u64> {
    put_day(
        txn,
        DAYID_CONSENT,
        "consent",
        day,
        &DbConsent::V1(c.clone()),
    )
}

pub fn consents(txn: &ReadTransaction, from_day: i64, to_day: i64) -> Result<Vec<Consent>> {
    Ok(
        day_range::<DbConsent>(txn, DAYID_CONSENT, "dayid_consent", from_day, to_day)?
            .into_iter()
            .map(|(_, DbConsent::V1(c))| c)
            .collect(),
    )
}

pub fn add_analytics(txn: &WriteTransaction, day: i64, e: &AnalyticsEvent) -> Result<u64> {
    put_day(
        txn,
        DAYID_ANALYTICS,
        "analytics",
        day,
        &DbAnalytics::V1(e.clone()),
    )
}

pub fn analytics(txn: &ReadTransaction, from_day: i64, to_day: i64) -> Result<Vec<AnalyticsEvent>> {
    Ok(
        day_range::<DbAnalytics>(txn, DAYID_ANALYTICS, "dayid_analytics", from_day, to_day)?
            .into_iter()
            .map(|(_, DbAnalytics::V1(e))| e)
            .collect(),
    )
}

pub fn add_pageview(txn: &WriteTransaction, day: i64, p: &PageView) -> Result<u64> {
    put_day(
        txn,
        DAYID_PAGEVIEW,
        "pageview",
        day,
        &DbPageView::V1(p.clone()),
    )
}

pub fn pageviews(
    txn: &ReadTransaction,
    from_day: i64,
    to_day: i64,
) -> Result<Vec<(i64, PageView)>> {
    Ok(
        day_range::<DbPageView>(txn, DAYID_PAGEVIEW, "dayid_pageview", from_day, to_day)?
            .into_iter()
            .map(|(d, DbPageView::V1(p))| (d, p))
            .collect(),
    )
}

// Notices.

pub fn put_notice(txn: &WriteTransaction, n: &Notice) -> Result<()> {
    txn.open_table(NOTICEID_NOTICE)?
        .insert(n.id, codec::encode(&DbNotice::V1(n.clone())).as_slice())?;
    Ok(())
}

pub fn next_notice_id(txn: &WriteTransaction) -> Result<u64> {
    meta::next_id(txn, "notice")
}

/// Deletes notices sent before `cutoff_ms`; returns how many.
pub fn delete_notices_before(txn: &WriteTransaction, cutoff_ms: i64) -> Result<usize> {
    let mut t = txn.open_table(NOTICEID_NOTICE)?;
    let mut old = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        let DbNotice::V1(n) = dec("noticeid_notice", v.value())?;
        if n.created_ms < cutoff_ms {
            old.push(k.value());
        }
    }
    for id in &old {
        t.remove(*id)?;
    }
    Ok(old.len())
}

pub fn notices(txn: &ReadTransaction) -> Result<Vec<Notice>> {
    let t = txn.open_table(NOTICEID_NOTICE)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let DbNotice::V1(n) = dec("noticeid_notice", item?.1.value())?;
        out.push(n);
    }
    Ok(out)
}
