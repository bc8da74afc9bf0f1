//! Indicators and their TTL bucket index (`ip_indicator`, `day_ip_expiry`).

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::feed::FeedPos;
use super::tables::{DAY_IP_EXPIRY, IP_INDICATOR};
use super::{Result, codec};
use crate::domain::{Indicator, IpKey, UnixMillis};

/// The stored form. When `Indicator` changes shape, its current form is
/// frozen here as a struct of its own and a new version is added. `V2`
/// (schema 7) carries the indicator's TAXII feed position `(created_ms,
/// modified_ms, seq)`, which had its own table.
#[derive(Serialize, Deserialize)]
enum DbIndicator {
    V1(Indicator),
    V2((i64, i64, u64), Indicator),
}

/// `DbIndicator` encoded from a borrow (the same bytes, no clone).
#[derive(Serialize)]
pub(super) enum DbIndicatorRef<'a> {
    /// Never written any more; here so that `V2` is encoded with
    /// `DbIndicator`'s variant index.
    #[allow(dead_code)]
    V1(&'a Indicator),
    V2((i64, i64, u64), &'a Indicator),
}

impl<'a> DbIndicatorRef<'a> {
    pub(super) fn new(ind: &'a Indicator, pos: FeedPos) -> Self {
        Self::V2((pos.created_ms, pos.modified_ms, pos.seq), ind)
    }
}

/// The first fields of `DbIndicator`: the feed position without the
/// indicator (`()` reads nothing of a `V1` record).
#[derive(Deserialize)]
enum DbIndicatorHead {
    V1(()),
    V2((i64, i64, u64)),
}

fn feed_pos((created_ms, modified_ms, seq): (i64, i64, u64)) -> FeedPos {
    FeedPos {
        created_ms,
        modified_ms,
        seq,
    }
}

pub(super) fn decode(bytes: &[u8]) -> Result<Indicator> {
    decode_with_position(bytes).map(|(i, _)| i)
}

/// The indicator and its feed position (none in a record written before
/// schema 7 and not yet migrated).
pub(super) fn decode_with_position(bytes: &[u8]) -> Result<(Indicator, Option<FeedPos>)> {
    match codec::decode::<DbIndicator>("ip_indicator", bytes)? {
        DbIndicator::V1(i) => Ok((i, None)),
        DbIndicator::V2(p, i) => Ok((i, Some(feed_pos(p)))),
    }
}

/// The feed position of a record, without decoding the indicator.
pub(super) fn position_of(bytes: &[u8]) -> Result<Option<FeedPos>> {
    match codec::decode_prefix::<DbIndicatorHead>("ip_indicator", bytes)? {
        DbIndicatorHead::V1(()) => Ok(None),
        DbIndicatorHead::V2(p) => Ok(Some(feed_pos(p))),
    }
}

/// The feed position stored with the indicator of `ip` in `t` (the
/// indicator table), if there is one.
pub(super) fn position_in(
    t: &impl ReadableTable<u128, &'static [u8]>,
    ip: IpKey,
) -> Result<Option<FeedPos>> {
    match t.get(ip.0)? {
        Some(v) => position_of(v.value()),
        None => Ok(None),
    }
}

pub fn get(txn: &ReadTransaction, ip: IpKey) -> Result<Option<Indicator>> {
    get_in(&txn.open_table(IP_INDICATOR)?, ip)
}

/// The indicator of `ip` in an opened table (`Store::indicator_table`).
pub fn get_in(t: &impl ReadableTable<u128, &'static [u8]>, ip: IpKey) -> Result<Option<Indicator>> {
    t.get(ip.0)?.map(|v| decode(v.value())).transpose()
}

/// The indicator of `ip` with its feed position.
pub fn get_with_position(
    txn: &ReadTransaction,
    ip: IpKey,
) -> Result<Option<(Indicator, Option<FeedPos>)>> {
    let t = txn.open_table(IP_INDICATOR)?;
    t.get(ip.0)?
        .map(|v| decode_with_position(v.value()))
        .transpose()
}

pub fn get_in_write(txn: &WriteTransaction, ip: IpKey) -> Result<Option<Indicator>> {
    let t = txn.open_table(IP_INDICATOR)?;
    t.get(ip.0)?.map(|v| decode(v.value())).transpose()
}

/// A record as schema 6 and before stored it, for migration tests.
#[cfg(test)]
pub(super) fn store_v1_record(txn: &WriteTransaction, ind: &Indicator) -> Result<()> {
    txn.open_table(IP_INDICATOR)?
        .insert(ind.ip.0, codec::encode(&DbIndicatorRef::V1(ind)).as_slice())?;
    Ok(())
}

/// Stores the record of `ind` at feed position `pos`, nothing else.
pub(super) fn store_record(txn: &WriteTransaction, ind: &Indicator, pos: FeedPos) -> Result<()> {
    txn.open_table(IP_INDICATOR)?.insert(
        ind.ip.0,
        codec::encode(&DbIndicatorRef::new(ind, pos)).as_slice(),
    )?;
    Ok(())
}

/// Writes `ind` as its version of `now`, moving it from `old_expiry_day`
/// (if any) to `expiry_day` and to the end of the TAXII feed.
pub fn put(
    txn: &WriteTransaction,
    ind: &Indicator,
    old_expiry_day: Option<i64>,
    expiry_day: i64,
    now: UnixMillis,
) -> Result<()> {
    let old = position_in(&txn.open_table(IP_INDICATOR)?, ind.ip)?;
    let pos = super::feed::advance(txn, ind.ip, old, now)?;
    store_record(txn, ind, pos)?;
    // Already filed under its day: rewriting the key would still copy a
    // page of the bucket table.
    if old_expiry_day != Some(expiry_day) {
        let mut e = txn.open_table(DAY_IP_EXPIRY)?;
        if let Some(old) = old_expiry_day {
            e.remove((old, ind.ip.0))?;
        }
        e.insert((expiry_day, ind.ip.0), ())?;
    }
    Ok(())
}

/// Rewrites the stored record of `ind` in place (no feed or expiry change),
/// for anonymising a reporter after erasure.
pub fn rewrite(txn: &WriteTransaction, ind: &Indicator) -> Result<()> {
    let old = position_in(&txn.open_table(IP_INDICATOR)?, ind.ip)?;
    // Not in the feed (cannot happen after migration): it enters it.
    let pos = match old {
        Some(pos) => pos,
        None => super::feed::advance(txn, ind.ip, None, ind.last_seen)?,
    };
    store_record(txn, ind, pos)
}

/// The oldest expiry day with an indicator, and how many are stored.
pub fn oldest_expiry(txn: &ReadTransaction) -> Result<(Option<i64>, u64)> {
    use redb::ReadableTableMetadata as _;
    let e = txn.open_table(DAY_IP_EXPIRY)?;
    Ok((e.first()?.map(|(k, _)| k.value().0), e.len()?))
}

/// Deletes the indicator of `ip` filed under `expiry_day`.
pub fn delete(txn: &WriteTransaction, ip: IpKey, expiry_day: i64) -> Result<()> {
    let pos = {
        let mut t = txn.open_table(IP_INDICATOR)?;
        let v = t.remove(ip.0)?;
        v.map(|v| position_of(v.value())).transpose()?.flatten()
    };
    txn.open_table(DAY_IP_EXPIRY)?.remove((expiry_day, ip.0))?;
    if let Some(pos) = pos {
        super::feed::leave(txn, ip, pos)?;
    }
    Ok(())
}

/// Deletes up to `max` indicators whose bucket day is before `day`;
/// returns the IPs deleted with the day each expired.
pub fn delete_expired(txn: &WriteTransaction, day: i64, max: usize) -> Result<Vec<(i64, IpKey)>> {
    let mut e = txn.open_table(DAY_IP_EXPIRY)?;
    let mut keys = Vec::new();
    for item in e.range((i64::MIN, 0_u128)..(day, 0_u128))?.take(max) {
        keys.push(item?.0.value());
    }
    let mut t = txn.open_table(IP_INDICATOR)?;
    let mut feed = super::feed::FeedTables::open(txn)?;
    for &(d, ip) in &keys {
        e.remove((d, ip))?;
        let pos = t
            .remove(ip)?
            .map(|v| position_of(v.value()))
            .transpose()?
            .flatten();
        if let Some(pos) = pos {
            feed.leave(IpKey(ip), pos)?;
        }
    }
    Ok(keys.into_iter().map(|(d, ip)| (d, IpKey(ip))).collect())
}

/// Files every indicator again under the day `retention_ms` gives (the
/// bucket table is rebuilt from the records); returns how many.
pub fn refile(txn: &WriteTransaction, retention_ms: i64) -> Result<u64> {
    txn.delete_table(DAY_IP_EXPIRY)?;
    let t = txn.open_table(IP_INDICATOR)?;
    let mut e = txn.open_table(DAY_IP_EXPIRY)?;
    let mut n = 0;
    for item in t.iter()? {
        let (ip, v) = item?;
        e.insert(
            (decode(v.value())?.expiry_day(retention_ms), ip.value()),
            (),
        )?;
        n += 1;
    }
    Ok(n)
}

/// Every stored indicator, for rebuilding the in-memory index.
pub fn for_each(txn: &ReadTransaction, mut f: impl FnMut(Indicator)) -> Result<()> {
    let t = txn.open_table(IP_INDICATOR)?;
    for item in t.iter()? {
        let (_, v) = item?;
        f(decode(v.value())?);
    }
    Ok(())
}

pub fn count(txn: &ReadTransaction) -> Result<u64> {
    Ok(redb::ReadableTableMetadata::len(
        &txn.open_table(IP_INDICATOR)?,
    )?)
}
