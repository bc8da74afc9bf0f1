//! Raw reports, kept for the raw-report retention and dropped a day at a
//! time (`dayid_report`), with an index by IP (`ipdayid_report`) for the
//! answers that list the reports about one address.

use redb::{ReadTransaction, ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::{DAYID_REPORT, IPDAYID_REPORT};
use super::{Result, codec, meta};

/// A report as submitted (after validation and scrubbing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawReport {
    pub id: u64,
    pub ip: u128,
    pub account: u64,
    pub key_id: u64,
    /// The first (or only) sikker category.
    pub category: u8,
    pub protocol: Option<String>,
    pub comment: Option<String>,
    pub at_ms: i64,
    /// Whether it counted towards the score (false inside the 15-minute window).
    pub counted: bool,
    /// Further sikker categories of a report that named several.
    pub more_categories: Vec<u8>,
    /// The AbuseIPDB ids as submitted on `/api/v2` (empty for native reports).
    pub abuseipdb_categories: Vec<u8>,
}

/// The first stored shape, frozen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawReportV1 {
    pub id: u64,
    pub ip: u128,
    pub account: u64,
    pub key_id: u64,
    pub category: u8,
    pub protocol: Option<String>,
    pub comment: Option<String>,
    pub at_ms: i64,
    pub counted: bool,
}

#[derive(Serialize, Deserialize)]
enum DbReport {
    V1(RawReportV1),
    V2(RawReport),
}

/// `DbReport` encoded from a borrow (the same bytes, no clone).
#[derive(Serialize)]
pub(super) enum DbReportRef<'a> {
    #[allow(dead_code)] // keeps the variant index of `V2`
    V1(&'a RawReportV1),
    V2(&'a RawReport),
}

fn decode(bytes: &[u8]) -> Result<RawReport> {
    Ok(match codec::decode::<DbReport>("dayid_report", bytes)? {
        DbReport::V1(r) => RawReport {
            id: r.id,
            ip: r.ip,
            account: r.account,
            key_id: r.key_id,
            category: r.category,
            protocol: r.protocol,
            comment: r.comment,
            at_ms: r.at_ms,
            counted: r.counted,
            more_categories: Vec::new(),
            abuseipdb_categories: Vec::new(),
        },
        DbReport::V2(r) => r,
    })
}

impl RawReport {
    /// Every sikker category the report named.
    pub fn categories(&self) -> Vec<u8> {
        let mut v = vec![self.category];
        v.extend(&self.more_categories);
        v
    }
}

/// Stores `r` under its creation day, assigning its id.
pub fn insert(txn: &WriteTransaction, mut r: RawReport, day: i64) -> Result<u64> {
    r.id = meta::next_id(txn, "report")?;
    let mut t = txn.open_table(DAYID_REPORT)?;
    t.insert((day, r.id), codec::encode(&DbReportRef::V2(&r)).as_slice())?;
    txn.open_table(IPDAYID_REPORT)?
        .insert((r.ip, day, r.id), ())?;
    Ok(r.id)
}

/// Deletes up to `max` reports created before `day`; returns how many.
pub fn delete_before(txn: &WriteTransaction, day: i64, max: usize) -> Result<usize> {
    let mut t = txn.open_table(DAYID_REPORT)?;
    let mut by_ip = txn.open_table(IPDAYID_REPORT)?;
    let mut keys = Vec::new();
    for item in t.range((i64::MIN, 0_u64)..(day, 0_u64))?.take(max) {
        let (k, v) = item?;
        keys.push((k.value(), decode(v.value()).map(|r| r.ip)));
    }
    for ((d, id), ip) in &keys {
        t.remove((*d, *id))?;
        // An undecodable record still leaves the day bucket; its index entry
        // (if any) points at nothing and is skipped by readers.
        if let Ok(ip) = ip {
            by_ip.remove((*ip, *d, *id))?;
        }
    }
    Ok(keys.len())
}

fn about<T: ReadableTable<(i64, u64), &'static [u8]>>(
    t: &T,
    refs: Vec<(i64, u64)>,
) -> Result<Vec<RawReport>> {
    let mut out = Vec::with_capacity(refs.len());
    for k in refs {
        if let Some(v) = t.get(k)? {
            out.push(decode(v.value())?);
        }
    }
    Ok(out)
}

fn refs_of<T: ReadableTable<(u128, i64, u64), ()>>(t: &T, ip: u128) -> Result<Vec<(i64, u64)>> {
    let mut refs = Vec::new();
    for item in t.range((ip, i64::MIN, 0_u64)..=(ip, i64::MAX, u64::MAX))? {
        let (_, d, id) = item?.0.value();
        refs.push((d, id));
    }
    Ok(refs)
}

/// Every stored report about `ip`, oldest first.
pub fn about_ip(txn: &ReadTransaction, ip: u128) -> Result<Vec<RawReport>> {
    let refs = refs_of(&txn.open_table(IPDAYID_REPORT)?, ip)?;
    about(&txn.open_table(DAYID_REPORT)?, refs)
}

/// Every stored report about `ip`, oldest first, inside a write transaction.
pub fn about_ip_in_write(txn: &WriteTransaction, ip: u128) -> Result<Vec<RawReport>> {
    let refs = refs_of(&txn.open_table(IPDAYID_REPORT)?, ip)?;
    about(&txn.open_table(DAYID_REPORT)?, refs)
}

/// Deletes the reports about `ip` made by `account`; returns them.
pub fn delete_by_account(txn: &WriteTransaction, ip: u128, account: u64) -> Result<Vec<RawReport>> {
    let mut by_ip: Table<(u128, i64, u64), ()> = txn.open_table(IPDAYID_REPORT)?;
    let refs = refs_of(&by_ip, ip)?;
    let mut t = txn.open_table(DAYID_REPORT)?;
    let mut removed = Vec::new();
    for (d, id) in refs {
        let r = match t.get((d, id))? {
            Some(v) => decode(v.value())?,
            None => continue,
        };
        if r.account == account {
            t.remove((d, id))?;
            by_ip.remove((ip, d, id))?;
            removed.push(r);
        }
    }
    Ok(removed)
}

/// Detaches every report of `account` from it (erasure, P31): the report
/// stays for the aggregate until its day is dropped. Returns how many.
pub fn anonymise_account(txn: &WriteTransaction, account: u64) -> Result<usize> {
    let mut t = txn.open_table(DAYID_REPORT)?;
    let mut hits = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        let r = decode(v.value())?;
        if r.account == account {
            hits.push((k.value(), r));
        }
    }
    for (k, mut r) in hits.iter().cloned() {
        r.account = 0;
        r.key_id = 0;
        r.comment = None;
        t.insert(k, codec::encode(&DbReport::V2(r)).as_slice())?;
    }
    Ok(hits.len())
}

/// The oldest day with a raw report, and how many are stored.
pub fn oldest_day(txn: &ReadTransaction) -> Result<(Option<i64>, u64)> {
    use redb::ReadableTableMetadata as _;
    let t = txn.open_table(DAYID_REPORT)?;
    Ok((t.first()?.map(|(k, _)| k.value().0), t.len()?))
}

/// Fills the by-IP index from the day buckets (schema migration 1 → 2).
pub fn build_ip_index(txn: &WriteTransaction) -> Result<()> {
    let t = txn.open_table(DAYID_REPORT)?;
    let mut by_ip = txn.open_table(IPDAYID_REPORT)?;
    for item in t.iter()? {
        let (k, v) = item?;
        let (d, id) = k.value();
        by_ip.insert((decode(v.value())?.ip, d, id), ())?;
    }
    Ok(())
}

/// All stored raw reports (tests and exports).
pub fn all(txn: &ReadTransaction) -> Result<Vec<RawReport>> {
    let t = txn.open_table(DAYID_REPORT)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (_, v) = item?;
        out.push(decode(v.value())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{migrate, tables::DAYID_REPORT};

    fn v1(id: u64, ip: u128, account: u64) -> RawReportV1 {
        RawReportV1 {
            id,
            ip,
            account,
            key_id: account,
            category: 1,
            protocol: None,
            comment: None,
            at_ms: 0,
            counted: true,
        }
    }

    #[test]
    fn schema_1_reports_are_indexed_by_the_migration_and_stay_readable() {
        let (_dir, store) = crate::store::temp_store();
        store
            .write_blocking(|txn| {
                let mut t = txn.open_table(DAYID_REPORT)?;
                for (id, ip, acc) in [(1, 7, 1), (2, 7, 2), (3, 9, 1)] {
                    t.insert(
                        (5, id),
                        codec::encode(&DbReport::V1(v1(id, ip, acc))).as_slice(),
                    )?;
                }
                drop(t);
                meta::set_schema_version(txn, 1)?;
                migrate::run(txn, false).map(|_| ())
            })
            .unwrap();
        let about7 = store.read_blocking(|t| about_ip(t, 7)).unwrap();
        assert_eq!(about7.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
        assert!(about7[0].abuseipdb_categories.is_empty());
        let gone = store
            .write_blocking(|t| delete_by_account(t, 7, 1))
            .unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(store.read_blocking(|t| about_ip(t, 7)).unwrap().len(), 1);
        assert_eq!(
            store.write_blocking(|t| delete_before(t, 6, 100)).unwrap(),
            2
        );
        assert!(store.read_blocking(|t| about_ip(t, 9)).unwrap().is_empty());
        let left = store
            .read_blocking(|t| {
                Ok(redb::ReadableTableMetadata::len(
                    &t.open_table(IPDAYID_REPORT)?,
                )?)
            })
            .unwrap();
        assert_eq!(left, 0, "the index follows the day buckets");
    }
}
