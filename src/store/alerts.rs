//! Alerts (watched IPs, ranges, usernames, e-mail addresses) and their
//! delivery outbox: the records, the per-account indexes, the distinct IPs
//! a range alert matched, and the queue of deliveries due.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::{
    ACCOUNTID_ALERTID, ACCOUNTID_DELIVERYID, ALERTID_ALERT, ALERTID_IP, DELIVERYID_DELIVERY,
    DUE_DELIVERYID,
};
use super::{Result, codec, meta};

/// What an alert watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertKind {
    Ip,
    Range,
    Username,
    Email,
}

impl AlertKind {
    pub const ALL: [Self; 4] = [Self::Ip, Self::Range, Self::Username, Self::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Range => "range",
            Self::Username => "username",
            Self::Email => "email",
        }
    }
}

/// One alert with its counters and the matches not yet notified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: u64,
    pub account: u64,
    /// The API key that created it.
    pub key_id: u64,
    pub kind: AlertKind,
    /// The normalised watched value: an IP, a CIDR, a lower-case username or e-mail.
    pub value: String,
    pub label: Option<String>,
    pub enabled: bool,
    /// Where e-mail notifications go; none means no e-mail.
    pub notify_email: Option<String>,
    pub webhook_url: Option<String>,
    /// The webhook signing secret, encrypted with a pad derived from the
    /// server's secret key and the alert id (see `service::alerts`).
    pub webhook_secret: Option<[u8; 32]>,
    pub created_ms: i64,
    pub last_alerted_ms: Option<i64>,
    pub total_alerts: u64,
    pub match_count: u64,
    pub unique_matches: u64,
    /// Matched items since the last notification (distinct, capped).
    pub pending: Vec<String>,
    /// Matches since the last notification (not capped).
    pub pending_count: u64,
    pub pending_first_ms: Option<i64>,
    pub pending_last_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
enum DbAlert {
    V1(Alert),
}

fn decode_alert(b: &[u8]) -> Result<Alert> {
    match codec::decode::<DbAlert>("alertid_alert", b)? {
        DbAlert::V1(a) => Ok(a),
    }
}

pub fn next_alert_id(txn: &WriteTransaction) -> Result<u64> {
    meta::next_id(txn, "alert")
}

pub fn put_alert(txn: &WriteTransaction, a: &Alert) -> Result<()> {
    txn.open_table(ALERTID_ALERT)?
        .insert(a.id, codec::encode(&DbAlert::V1(a.clone())).as_slice())?;
    txn.open_table(ACCOUNTID_ALERTID)?
        .insert((a.account, a.id), ())?;
    Ok(())
}

pub fn get_alert_in_write(txn: &WriteTransaction, id: u64) -> Result<Option<Alert>> {
    let t = txn.open_table(ALERTID_ALERT)?;
    t.get(id)?.map(|v| decode_alert(v.value())).transpose()
}

pub fn get_alert(txn: &ReadTransaction, id: u64) -> Result<Option<Alert>> {
    let t = txn.open_table(ALERTID_ALERT)?;
    t.get(id)?.map(|v| decode_alert(v.value())).transpose()
}

/// Removes an alert, its distinct-IP set and its undelivered deliveries.
pub fn delete_alert(txn: &WriteTransaction, a: &Alert) -> Result<()> {
    txn.open_table(ALERTID_ALERT)?.remove(a.id)?;
    txn.open_table(ACCOUNTID_ALERTID)?
        .remove((a.account, a.id))?;
    txn.open_table(ALERTID_IP)?
        .retain_in((a.id, 0)..=(a.id, u128::MAX), |_, ()| false)?;
    let mut due = txn.open_table(DUE_DELIVERYID)?;
    let mut gone = Vec::new();
    for item in due.iter()? {
        let (k, _) = item?;
        let (at, id) = k.value();
        if let Some(d) = get_delivery_in_write(txn, id)?
            && d.alert_id == a.id
        {
            gone.push((at, id));
        }
    }
    for k in &gone {
        due.remove(*k)?;
    }
    let mut log = txn.open_table(DELIVERYID_DELIVERY)?;
    for (_, id) in gone {
        let found = log
            .get(id)?
            .map(|v| decode_delivery(v.value()))
            .transpose()?;
        if let Some(mut d) = found {
            d.status = DeliveryStatus::Cancelled;
            d.next_attempt_ms = None;
            log.insert(id, codec::encode(&DbDelivery::V1(d)).as_slice())?;
        }
    }
    Ok(())
}

/// Every alert of `account`, oldest first, inside a write transaction.
pub fn account_alerts_in_write(txn: &WriteTransaction, account: u64) -> Result<Vec<Alert>> {
    let ids = txn.open_table(ACCOUNTID_ALERTID)?;
    let t = txn.open_table(ALERTID_ALERT)?;
    let mut out = Vec::new();
    for item in ids.range((account, 0)..=(account, u64::MAX))? {
        let (k, _) = item?;
        if let Some(v) = t.get(k.value().1)? {
            out.push(decode_alert(v.value())?);
        }
    }
    Ok(out)
}

/// Every alert of `account`, oldest first.
pub fn account_alerts(txn: &ReadTransaction, account: u64) -> Result<Vec<Alert>> {
    let ids = txn.open_table(ACCOUNTID_ALERTID)?;
    let t = txn.open_table(ALERTID_ALERT)?;
    let mut out = Vec::new();
    for item in ids.range((account, 0)..=(account, u64::MAX))? {
        let (k, _) = item?;
        if let Some(v) = t.get(k.value().1)? {
            out.push(decode_alert(v.value())?);
        }
    }
    Ok(out)
}

/// Every alert (loaded into the match index at start).
pub fn all_alerts(txn: &ReadTransaction) -> Result<Vec<Alert>> {
    let t = txn.open_table(ALERTID_ALERT)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (_, v) = item?;
        out.push(decode_alert(v.value())?);
    }
    Ok(out)
}

/// Records that range alert `id` matched `ip`; true when it is a new IP.
pub fn first_range_ip(txn: &WriteTransaction, id: u64, ip: u128) -> Result<bool> {
    Ok(txn.open_table(ALERTID_IP)?.insert((id, ip), ())?.is_none())
}

/// How a delivery is made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    Email {
        to: String,
        subject: String,
        body: String,
    },
    Webhook {
        url: String,
        body: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
    /// The alert was deleted before the delivery was made.
    Cancelled,
}

/// One message in the outbox: an alert notification, or (with no alert
/// kind and alert id 0) an e-mail about the account itself. Kept after
/// delivery as the account's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: u64,
    pub alert_id: u64,
    pub account: u64,
    pub kind: Option<AlertKind>,
    pub channel: Channel,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub next_attempt_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
enum DbDelivery {
    V1(Delivery),
}

fn decode_delivery(b: &[u8]) -> Result<Delivery> {
    match codec::decode::<DbDelivery>("deliveryid_delivery", b)? {
        DbDelivery::V1(d) => Ok(d),
    }
}

pub fn next_delivery_id(txn: &WriteTransaction) -> Result<u64> {
    meta::next_id(txn, "delivery")
}

/// Writes a delivery and keeps the due queue in step with its
/// `next_attempt_ms` (`previous_due` is the time it was queued under).
pub fn put_delivery(txn: &WriteTransaction, d: &Delivery, previous_due: Option<i64>) -> Result<()> {
    txn.open_table(DELIVERYID_DELIVERY)?
        .insert(d.id, codec::encode(&DbDelivery::V1(d.clone())).as_slice())?;
    txn.open_table(ACCOUNTID_DELIVERYID)?
        .insert((d.account, d.id), ())?;
    let mut due = txn.open_table(DUE_DELIVERYID)?;
    if let Some(at) = previous_due {
        due.remove((at, d.id))?;
    }
    if let Some(at) = d.next_attempt_ms {
        due.insert((at, d.id), ())?;
    }
    Ok(())
}

pub fn get_delivery_in_write(txn: &WriteTransaction, id: u64) -> Result<Option<Delivery>> {
    let t = txn.open_table(DELIVERYID_DELIVERY)?;
    t.get(id)?.map(|v| decode_delivery(v.value())).transpose()
}

/// Up to `limit` deliveries whose next attempt is at or before `now_ms`.
pub fn due_deliveries(txn: &ReadTransaction, now_ms: i64, limit: usize) -> Result<Vec<Delivery>> {
    let due = txn.open_table(DUE_DELIVERYID)?;
    let t = txn.open_table(DELIVERYID_DELIVERY)?;
    let mut out = Vec::new();
    for item in due.range((i64::MIN, 0)..=(now_ms, u64::MAX))? {
        if out.len() >= limit {
            break;
        }
        let (k, _) = item?;
        if let Some(v) = t.get(k.value().1)? {
            out.push(decode_delivery(v.value())?);
        }
    }
    Ok(out)
}

/// The newest `limit` deliveries of `account`, newest first.
pub fn account_deliveries(
    txn: &ReadTransaction,
    account: u64,
    limit: usize,
) -> Result<Vec<Delivery>> {
    let ids = txn.open_table(ACCOUNTID_DELIVERYID)?;
    let t = txn.open_table(DELIVERYID_DELIVERY)?;
    let mut out = Vec::new();
    for item in ids.range((account, 0)..=(account, u64::MAX))?.rev() {
        if out.len() >= limit {
            break;
        }
        let (k, _) = item?;
        if let Some(v) = t.get(k.value().1)? {
            out.push(decode_delivery(v.value())?);
        }
    }
    Ok(out)
}

/// Deletes finished deliveries that ended before `cutoff_ms`; returns how many.
pub fn prune_deliveries(txn: &WriteTransaction, cutoff_ms: i64, batch: usize) -> Result<usize> {
    let mut t = txn.open_table(DELIVERYID_DELIVERY)?;
    let mut old = Vec::new();
    for item in t.iter()? {
        if old.len() >= batch {
            break;
        }
        let (k, v) = item?;
        let d = decode_delivery(v.value())?;
        if d.status != DeliveryStatus::Pending && d.finished_ms.is_some_and(|f| f < cutoff_ms) {
            old.push((k.value(), d.account));
        }
    }
    let mut ids = txn.open_table(ACCOUNTID_DELIVERYID)?;
    for (id, account) in &old {
        t.remove(*id)?;
        ids.remove((*account, *id))?;
    }
    Ok(old.len())
}
