//! Indicators and their TTL bucket index (`ip_indicator`, `day_ip_expiry`).

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::{DAY_IP_EXPIRY, IP_INDICATOR};
use super::{Result, codec};
use crate::domain::{Indicator, IpKey, UnixMillis};

/// The stored form. When `Indicator` changes shape, its current form is
/// frozen here as a `V1` struct and `V2` is added.
#[derive(Serialize, Deserialize)]
enum DbIndicator {
    V1(Indicator),
}

/// `DbIndicator` encoded from a borrow (the same bytes, no clone).
#[derive(Serialize)]
pub(super) enum DbIndicatorRef<'a> {
    V1(&'a Indicator),
}

pub(super) fn decode(bytes: &[u8]) -> Result<Indicator> {
    match codec::decode::<DbIndicator>("ip_indicator", bytes)? {
        DbIndicator::V1(i) => Ok(i),
    }
}

pub fn get(txn: &ReadTransaction, ip: IpKey) -> Result<Option<Indicator>> {
    let t = txn.open_table(IP_INDICATOR)?;
    t.get(ip.0)?.map(|v| decode(v.value())).transpose()
}

pub fn get_in_write(txn: &WriteTransaction, ip: IpKey) -> Result<Option<Indicator>> {
    let t = txn.open_table(IP_INDICATOR)?;
    t.get(ip.0)?.map(|v| decode(v.value())).transpose()
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
    super::feed::touch(txn, ind.ip, now)?;
    let mut t = txn.open_table(IP_INDICATOR)?;
    t.insert(ind.ip.0, codec::encode(&DbIndicatorRef::V1(ind)).as_slice())?;
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
    txn.open_table(IP_INDICATOR)?
        .insert(ind.ip.0, codec::encode(&DbIndicatorRef::V1(ind)).as_slice())?;
    Ok(())
}

/// The oldest expiry day with an indicator, and how many are stored.
pub fn oldest_expiry(txn: &ReadTransaction) -> Result<(Option<i64>, u64)> {
    use redb::ReadableTableMetadata as _;
    let e = txn.open_table(DAY_IP_EXPIRY)?;
    Ok((e.first()?.map(|(k, _)| k.value().0), e.len()?))
}

/// Deletes the indicator of `ip` filed under `expiry_day`.
pub fn delete(txn: &WriteTransaction, ip: IpKey, expiry_day: i64) -> Result<()> {
    txn.open_table(IP_INDICATOR)?.remove(ip.0)?;
    txn.open_table(DAY_IP_EXPIRY)?.remove((expiry_day, ip.0))?;
    super::feed::remove(txn, ip)?;
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
    for &(d, ip) in &keys {
        e.remove((d, ip))?;
        t.remove(ip)?;
        super::feed::remove(txn, IpKey(ip))?;
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
