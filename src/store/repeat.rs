//! Repeat-offender history (`ip_repeat`, `day_ip_repeatpurge`): per IP, how
//! often its indicator expired and the last expiry day — no evidence — with
//! a purge-day bucket so the sweep drops whole days.

use std::collections::HashMap;

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::{DAY_IP_REPEATPURGE, IP_REPEAT};
use super::{Result, codec};
use crate::domain::IpKey;
use crate::domain::repeat::History;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RepeatV1 {
    history: History,
    /// Bucket day in `day_ip_repeatpurge`: purged on the first sweep after it.
    purge_day: i64,
}

/// The stored form (frozen; a change adds `V2`).
#[derive(Serialize, Deserialize)]
enum DbRepeat {
    V1(RepeatV1),
}

fn decode(bytes: &[u8]) -> Result<RepeatV1> {
    match codec::decode::<DbRepeat>("ip_repeat", bytes)? {
        DbRepeat::V1(r) => Ok(r),
    }
}

fn write(txn: &WriteTransaction, ip: IpKey, old: Option<RepeatV1>, new: RepeatV1) -> Result<()> {
    let mut b = txn.open_table(DAY_IP_REPEATPURGE)?;
    if let Some(o) = old.filter(|o| o.purge_day != new.purge_day) {
        b.remove((o.purge_day, ip.0))?;
    }
    b.insert((new.purge_day, ip.0), ())?;
    txn.open_table(IP_REPEAT)?
        .insert(ip.0, codec::encode(&DbRepeat::V1(new)).as_slice())?;
    Ok(())
}

fn get_raw_in_write(txn: &WriteTransaction, ip: IpKey) -> Result<Option<RepeatV1>> {
    let t = txn.open_table(IP_REPEAT)?;
    t.get(ip.0)?.map(|v| decode(v.value())).transpose()
}

pub fn get(txn: &ReadTransaction, ip: IpKey) -> Result<Option<History>> {
    let t = txn.open_table(IP_REPEAT)?;
    Ok(t.get(ip.0)?
        .map(|v| decode(v.value()))
        .transpose()?
        .map(|r| r.history))
}

/// Earlier expiries of `ip` (0 without history).
pub fn expiries(txn: &ReadTransaction, ip: IpKey) -> Result<u32> {
    Ok(get(txn, ip)?.map_or(0, |h| h.expiries))
}

/// Earlier expiries of `ip` (0 without history), inside a write.
pub fn expiries_in_write(txn: &WriteTransaction, ip: IpKey) -> Result<u32> {
    Ok(get_raw_in_write(txn, ip)?.map_or(0, |r| r.history.expiries))
}

/// Records that the indicator of `ip` expired on `expiry_day`; the history
/// is kept through `expiry_day + keep_days`. Returns the new history.
pub fn note_expiry(
    txn: &WriteTransaction,
    ip: IpKey,
    expiry_day: i64,
    keep_days: i64,
) -> Result<History> {
    let old = get_raw_in_write(txn, ip)?;
    let history = old
        .map(|o| o.history)
        .unwrap_or_default()
        .after_expiry(expiry_day);
    let purge_day = old
        .map_or(i64::MIN, |o| o.purge_day)
        .max(expiry_day.saturating_add(keep_days));
    write(txn, ip, old, RepeatV1 { history, purge_day })?;
    Ok(history)
}

/// What one purge batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Bucket entries looked at (a full batch means: run again).
    pub visited: usize,
    /// Histories deleted.
    pub deleted: usize,
}

/// Deletes up to `max` histories whose purge day is before `day`. The
/// history of an IP that has an indicator again is kept while that
/// indicator lives (re-filed at its expiry day, when the next expiry
/// renews it), so a returning offender keeps its boost.
pub fn delete_expired(
    txn: &WriteTransaction,
    day: i64,
    max: usize,
    indicator_retention_ms: i64,
) -> Result<Purged> {
    let mut keys = Vec::new();
    {
        let b = txn.open_table(DAY_IP_REPEATPURGE)?;
        for item in b.range((i64::MIN, 0_u128)..(day, 0_u128))?.take(max) {
            keys.push(item?.0.value());
        }
    }
    let mut out = Purged {
        visited: keys.len(),
        deleted: 0,
    };
    for (d, ip) in keys {
        let ip = IpKey(ip);
        let live_until =
            super::indicators::get_in_write(txn, ip)?.map(|i| i.expiry_day(indicator_retention_ms));
        if let (Some(expiry_day), Some(old)) =
            (live_until.filter(|e| *e >= day), get_raw_in_write(txn, ip)?)
        {
            let new = RepeatV1 {
                purge_day: expiry_day,
                ..old
            };
            write(txn, ip, Some(old), new)?;
        } else {
            txn.open_table(DAY_IP_REPEATPURGE)?.remove((d, ip.0))?;
            txn.open_table(IP_REPEAT)?.remove(ip.0)?;
            out.deleted += 1;
        }
    }
    Ok(out)
}

/// Files every history again under its last expiry day plus `keep_days`
/// (records and bucket table rewritten); returns how many. A history
/// whose IP has a live indicator again is moved on by the sweep, as
/// always, when its new day comes.
pub fn refile(txn: &WriteTransaction, keep_days: i64) -> Result<u64> {
    txn.delete_table(DAY_IP_REPEATPURGE)?;
    let mut t = txn.open_table(IP_REPEAT)?;
    let mut b = txn.open_table(DAY_IP_REPEATPURGE)?;
    let mut n = 0;
    // A table cannot be written while it is iterated: read first.
    let mut all = Vec::new();
    for item in t.iter()? {
        let (ip, v) = item?;
        all.push((ip.value(), decode(v.value())?));
    }
    for (ip, old) in all {
        let new = RepeatV1 {
            purge_day: old.history.last_expiry_day.saturating_add(keep_days),
            ..old
        };
        b.insert((new.purge_day, ip), ())?;
        if new != old {
            t.insert(ip, codec::encode(&DbRepeat::V1(new)).as_slice())?;
        }
        n += 1;
    }
    Ok(n)
}

/// Every IP's count of earlier expiries, for rebuilding the index.
pub fn all_expiries(txn: &ReadTransaction) -> Result<HashMap<u128, u32>> {
    let t = txn.open_table(IP_REPEAT)?;
    let mut out = HashMap::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.insert(k.value(), decode(v.value())?.history.expiries);
    }
    Ok(out)
}

pub fn count(txn: &ReadTransaction) -> Result<u64> {
    Ok(redb::ReadableTableMetadata::len(
        &txn.open_table(IP_REPEAT)?,
    )?)
}
