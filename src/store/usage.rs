//! Aggregate usage counters per API key, day and bucket — the only trace a
//! lookup leaves (P05, P23).

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::Result;
use super::tables::KEYDAY_USAGE;

pub fn add(txn: &WriteTransaction, key_id: u64, day: i64, bucket: u8, n: u64) -> Result<()> {
    let mut t = txn.open_table(KEYDAY_USAGE)?;
    let cur = t.get((key_id, day, bucket))?.map_or(0, |v| v.value());
    t.insert((key_id, day, bucket), cur + n)?;
    Ok(())
}

pub fn get(txn: &ReadTransaction, key_id: u64, day: i64, bucket: u8) -> Result<u64> {
    Ok(txn
        .open_table(KEYDAY_USAGE)?
        .get((key_id, day, bucket))?
        .map_or(0, |v| v.value()))
}
