//! Evidence writes of one transaction — raw reports, indicators, their
//! expiry buckets and TAXII feed positions — through tables opened once and
//! id counters read once, for ingest paths that touch thousands of rows per
//! commit. Same records and keys as `reports::insert` and
//! `indicators::put`, which stay the one-off paths.

use redb::{ReadableTable, Table, WriteTransaction};

use super::feed::FeedTables;
use super::indicators::DbIndicatorRef;
use super::reports::{DbReportRef, RawReport};
use super::tables::{DAY_IP_EXPIRY, DAYID_REPORT, IP_INDICATOR, IPDAYID_REPORT};
use super::{Result, codec, meta};
use crate::domain::{Indicator, IpKey, UnixMillis};

/// The raw-report table and its index by IP.
type ReportTables<'t> = (
    Table<'t, (i64, u64), &'static [u8]>,
    Table<'t, (u128, i64, u64), ()>,
);

pub struct EvidenceWriter<'t> {
    txn: &'t WriteTransaction,
    indicators: Table<'t, u128, &'static [u8]>,
    expiry: Table<'t, (i64, u128), ()>,
    feed: FeedTables<'t>,
    reports: Option<ReportTables<'t>>,
    report_seq: Option<(u64, u64)>,
    feed_seq: (u64, u64),
    buf: Vec<u8>,
}

impl<'t> EvidenceWriter<'t> {
    /// Runs `f` with a writer over `txn`, then writes back the id counters
    /// it moved (so a later write never reuses an id).
    pub fn with<T>(txn: &'t WriteTransaction, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let mut w = Self::new(txn)?;
        let out = f(&mut w)?;
        w.finish()?;
        Ok(out)
    }

    fn new(txn: &'t WriteTransaction) -> Result<Self> {
        let feed_seq = meta::current_id(txn, "feed")?;
        Ok(Self {
            txn,
            indicators: txn.open_table(IP_INDICATOR)?,
            expiry: txn.open_table(DAY_IP_EXPIRY)?,
            feed: FeedTables::open(txn)?,
            reports: None,
            report_seq: None,
            feed_seq: (feed_seq, feed_seq),
            buf: Vec::new(),
        })
    }

    /// The transaction, for the tables the writer does not hold.
    pub fn txn(&self) -> &'t WriteTransaction {
        self.txn
    }

    /// The stored indicator of `ip`.
    pub fn indicator(&self, ip: IpKey) -> Result<Option<Indicator>> {
        self.indicators
            .get(ip.0)?
            .map(|v| super::indicators::decode(v.value()))
            .transpose()
    }

    /// As `reports::insert`: stores `r` under `day`, assigning its id.
    pub fn insert_report(&mut self, mut r: RawReport, day: i64) -> Result<u64> {
        let start = match self.report_seq {
            Some(_) => 0,
            None => meta::current_id(self.txn, "report")?,
        };
        let seq = self.report_seq.get_or_insert((start, start));
        seq.1 += 1;
        r.id = seq.1;
        let (by_day, by_ip) = match &mut self.reports {
            Some(t) => t,
            None => self.reports.insert((
                self.txn.open_table(DAYID_REPORT)?,
                self.txn.open_table(IPDAYID_REPORT)?,
            )),
        };
        self.buf.clear();
        codec::encode_into(&DbReportRef::V2(&r), &mut self.buf);
        by_day.insert((day, r.id), self.buf.as_slice())?;
        by_ip.insert((r.ip, day, r.id), ())?;
        Ok(r.id)
    }

    /// As `indicators::put`: writes `ind` as its version of `now`, moves it
    /// between expiry buckets and to the end of the feed.
    pub fn put_indicator(
        &mut self,
        ind: &Indicator,
        old_expiry_day: Option<i64>,
        expiry_day: i64,
        now: UnixMillis,
    ) -> Result<()> {
        let old = super::indicators::position_in(&self.indicators, ind.ip)?;
        self.feed_seq.1 += 1;
        let pos = self.feed.advance(ind.ip, old, now, self.feed_seq.1)?;
        self.buf.clear();
        codec::encode_into(&DbIndicatorRef::new(ind, pos), &mut self.buf);
        self.indicators.insert(ind.ip.0, self.buf.as_slice())?;
        // Already filed under its day: rewriting the key would still copy
        // a page of the bucket table.
        if old_expiry_day != Some(expiry_day) {
            if let Some(old) = old_expiry_day {
                self.expiry.remove((old, ind.ip.0))?;
            }
            self.expiry.insert((expiry_day, ind.ip.0), ())?;
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        let txn = self.txn;
        let (feed_seq, report_seq) = (self.feed_seq, self.report_seq);
        drop(self);
        if feed_seq.1 != feed_seq.0 {
            meta::set_id(txn, "feed", feed_seq.1)?;
        }
        if let Some((from, to)) = report_seq
            && to != from
        {
            meta::set_id(txn, "report", to)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{feed, indicators, reports};

    #[test]
    fn writes_what_the_one_off_paths_write_and_keeps_the_counters() {
        let (_dir, store) = crate::store::temp_store();
        let ip = IpKey::from_ip("198.51.100.9".parse().unwrap());
        let ind = Indicator::new(ip, UnixMillis(1_000));
        let report = RawReport {
            id: 0,
            ip: ip.0,
            account: 1,
            key_id: 2,
            category: 3,
            protocol: Some("ssh".into()),
            comment: Some("x".into()),
            at_ms: 1_000,
            counted: true,
            more_categories: vec![4],
            abuseipdb_categories: vec![],
        };
        store
            .write_blocking(|txn| {
                reports::insert(txn, report.clone(), 0)?;
                indicators::put(txn, &ind, None, 30, UnixMillis(1_000))
            })
            .unwrap();
        let ids = store
            .write_blocking(|txn| {
                EvidenceWriter::with(txn, |w| {
                    assert_eq!(w.indicator(ip)?.as_ref(), Some(&ind));
                    let a = w.insert_report(report.clone(), 0)?;
                    let b = w.insert_report(report.clone(), 1)?;
                    w.put_indicator(&ind, Some(30), 31, UnixMillis(900))?;
                    Ok((a, b))
                })
            })
            .unwrap();
        assert_eq!(ids, (2, 3));
        // The counters moved on: the one-off paths continue after them.
        let next = store
            .write_blocking(|txn| reports::insert(txn, report.clone(), 1))
            .unwrap();
        assert_eq!(next, 4);
        store
            .write_blocking(|txn| indicators::put(txn, &ind, Some(31), 31, UnixMillis(5_000)))
            .unwrap();
        let pos = store
            .read_blocking(|txn| feed::position(txn, ip))
            .unwrap()
            .unwrap();
        assert_eq!(pos.seq, 3);
        assert_eq!(pos.created_ms, 1_000, "created kept across versions");
        // Same day again: the bucket keeps the one key.
        store
            .write_blocking(|txn| {
                EvidenceWriter::with(txn, |w| {
                    w.put_indicator(&ind, Some(31), 31, UnixMillis(6_000))
                })?;
                indicators::put(txn, &ind, Some(31), 31, UnixMillis(7_000))
            })
            .unwrap();
        store
            .read_blocking(|txn| {
                let all = reports::about_ip(txn, ip.0)?;
                assert_eq!(all.len(), 4);
                assert!(all.iter().all(|r| r.comment == report.comment));
                assert_eq!(indicators::get(txn, ip)?.as_ref(), Some(&ind));
                assert_eq!(indicators::oldest_expiry(txn)?, (Some(31), 1));
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn the_feed_never_goes_back_in_time() {
        let (_dir, store) = crate::store::temp_store();
        let a = IpKey::from_ip("198.51.100.1".parse().unwrap());
        let b = IpKey::from_ip("198.51.100.2".parse().unwrap());
        store
            .write_blocking(|txn| {
                EvidenceWriter::with(txn, |w| {
                    w.put_indicator(&Indicator::new(a, UnixMillis(10)), None, 1, UnixMillis(10))?;
                    // An earlier clock reading and a second version of `a`.
                    w.put_indicator(&Indicator::new(b, UnixMillis(5)), None, 1, UnixMillis(5))?;
                    w.put_indicator(
                        &Indicator::new(a, UnixMillis(10)),
                        Some(1),
                        1,
                        UnixMillis(10),
                    )
                })
            })
            .unwrap();
        store
            .read_blocking(|txn| {
                let pa = feed::position(txn, a)?.unwrap();
                let pb = feed::position(txn, b)?.unwrap();
                assert_eq!(pb.modified_ms, 10, "not before the feed's last position");
                assert_eq!((pa.created_ms, pa.modified_ms), (10, 11));
                assert!(pa.key() > pb.key());
                Ok(())
            })
            .unwrap();
    }
}
