//! Raw reports, kept for the raw-report retention and dropped a day at a time.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::DAYID_REPORT;
use super::{Result, codec, meta};

/// A report as submitted (after validation and scrubbing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawReport {
    pub id: u64,
    pub ip: u128,
    pub account: u64,
    pub key_id: u64,
    pub category: u8,
    pub protocol: Option<String>,
    pub comment: Option<String>,
    pub at_ms: i64,
    /// Whether it counted towards the score (false inside the 15-minute window).
    pub counted: bool,
}

#[derive(Serialize, Deserialize)]
enum DbReport {
    V1(RawReport),
}

/// Stores `r` under its creation day, assigning its id.
pub fn insert(txn: &WriteTransaction, mut r: RawReport, day: i64) -> Result<u64> {
    r.id = meta::next_id(txn, "report")?;
    let mut t = txn.open_table(DAYID_REPORT)?;
    t.insert(
        (day, r.id),
        codec::encode(&DbReport::V1(r.clone())).as_slice(),
    )?;
    Ok(r.id)
}

/// Deletes up to `max` reports created before `day`; returns how many.
pub fn delete_before(txn: &WriteTransaction, day: i64, max: usize) -> Result<usize> {
    let mut t = txn.open_table(DAYID_REPORT)?;
    let mut keys = Vec::new();
    for item in t.range((i64::MIN, 0_u64)..(day, 0_u64))?.take(max) {
        keys.push(item?.0.value());
    }
    for k in &keys {
        t.remove(*k)?;
    }
    Ok(keys.len())
}

/// All stored raw reports (tests and exports).
pub fn all(txn: &ReadTransaction) -> Result<Vec<RawReport>> {
    let t = txn.open_table(DAYID_REPORT)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (_, v) = item?;
        match codec::decode::<DbReport>("dayid_report", v.value())? {
            DbReport::V1(r) => out.push(r),
        }
    }
    Ok(out)
}
