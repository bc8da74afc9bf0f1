//! Aggregate usage counters per API key, day and bucket — the only trace a
//! lookup leaves (P05, P23).

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::Result;
use super::tables::{DAY_KEYUSAGE, KEYDAY_USAGE};

pub fn add(txn: &WriteTransaction, key_id: u64, day: i64, bucket: u8, n: u64) -> Result<()> {
    let mut t = txn.open_table(KEYDAY_USAGE)?;
    let cur = t.get((key_id, day, bucket))?.map_or(0, |v| v.value());
    t.insert((key_id, day, bucket), cur + n)?;
    if cur == 0 {
        txn.open_table(DAY_KEYUSAGE)?
            .insert((day, key_id, bucket), ())?;
    }
    Ok(())
}

pub fn get(txn: &ReadTransaction, key_id: u64, day: i64, bucket: u8) -> Result<u64> {
    Ok(txn
        .open_table(KEYDAY_USAGE)?
        .get((key_id, day, bucket))?
        .map_or(0, |v| v.value()))
}

/// Deletes up to `max` counters of days before `day` (the usage-log
/// retention, P16); returns how many.
pub fn delete_before(txn: &WriteTransaction, day: i64, max: usize) -> Result<usize> {
    let mut idx = txn.open_table(DAY_KEYUSAGE)?;
    let mut t = txn.open_table(KEYDAY_USAGE)?;
    let mut keys = Vec::new();
    for item in idx
        .range((i64::MIN, 0_u64, 0_u8)..(day, 0_u64, 0_u8))?
        .take(max)
    {
        keys.push(item?.0.value());
    }
    for (d, k, b) in &keys {
        idx.remove((*d, *k, *b))?;
        t.remove((*k, *d, *b))?;
    }
    Ok(keys.len())
}

/// The oldest day with a counter.
pub fn oldest_day(txn: &ReadTransaction) -> Result<Option<i64>> {
    Ok(txn
        .open_table(DAY_KEYUSAGE)?
        .first()?
        .map(|(k, _)| k.value().0))
}

/// Every counter of `key_id`: (day, bucket, count).
pub fn of_key(txn: &ReadTransaction, key_id: u64) -> Result<Vec<(i64, u8, u64)>> {
    let t = txn.open_table(KEYDAY_USAGE)?;
    let mut out = Vec::new();
    for item in t.range((key_id, i64::MIN, 0_u8)..=(key_id, i64::MAX, u8::MAX))? {
        let (key, count) = item?;
        let (_, day, bucket) = key.value();
        out.push((day, bucket, count.value()));
    }
    Ok(out)
}

/// Fills the TTL index from the counters (migration to schema 4).
pub fn build_day_index(txn: &WriteTransaction) -> Result<()> {
    let t = txn.open_table(KEYDAY_USAGE)?;
    let mut idx = txn.open_table(DAY_KEYUSAGE)?;
    for item in t.iter()? {
        let (k, d, b) = item?.0.value();
        idx.insert((d, k, b), ())?;
    }
    Ok(())
}
