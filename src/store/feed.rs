//! The TAXII feed order (`modseq_ip`, `stixid_ip`, and each indicator
//! record's own position, since schema 7): every indicator write gives the
//! indicator a new position `(modified_ms, seq)` at the end of the feed.
//! `seq` comes from one counter under the single writer and `modified_ms`
//! never goes below the last position's, so feed order is commit order: a
//! reader holding a cursor never misses a later write, however many writes
//! share a millisecond.

use redb::{ReadTransaction, ReadableTable, Table, WriteTransaction};

use super::tables::{IP_FEEDPOS, IP_INDICATOR, MODSEQ_IP, STIXID_IP};
use super::{Result, meta};
use crate::domain::stix_id::indicator_uuid;
use crate::domain::{IpKey, UnixMillis};

/// Where an indicator's current version stands in the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedPos {
    /// When the indicator entered the feed (STIX `created`); kept across versions.
    pub created_ms: i64,
    /// When the current version was written (STIX `modified`, TAXII `date_added`).
    pub modified_ms: i64,
    pub seq: u64,
}

impl FeedPos {
    pub fn key(&self) -> (i64, u64) {
        (self.modified_ms, self.seq)
    }
}

/// The feed's tables of one write, opened once.
pub(super) struct FeedTables<'t> {
    modseq: Table<'t, (i64, u64), u128>,
    stixid: Table<'t, u128, u128>,
    /// The feed's last `modified_ms` (its order never goes back).
    last_modified: i64,
}

impl<'t> FeedTables<'t> {
    pub(super) fn open(txn: &'t WriteTransaction) -> Result<Self> {
        let modseq = txn.open_table(MODSEQ_IP)?;
        let last_modified = modseq.last()?.map_or(i64::MIN, |(k, _)| k.value().0);
        Ok(Self {
            modseq,
            stixid: txn.open_table(STIXID_IP)?,
            last_modified,
        })
    }

    /// Moves `ip`, at `old` in the feed (if anywhere), to its end as of
    /// `now` with sequence number `seq`; returns the new position, which
    /// the caller stores in the indicator's record. A new version is
    /// always at least a millisecond after the one it replaces, because
    /// STIX identifies a version by (`id`, `modified`).
    pub(super) fn advance(
        &mut self,
        ip: IpKey,
        old: Option<FeedPos>,
        now: UnixMillis,
        seq: u64,
    ) -> Result<FeedPos> {
        let after_old = old.map_or(i64::MIN, |o| o.modified_ms.saturating_add(1));
        let modified_ms = now.0.max(self.last_modified).max(after_old);
        let created_ms = if let Some(o) = old {
            self.modseq.remove(o.key())?;
            o.created_ms
        } else {
            self.stixid.insert(indicator_uuid(ip).as_u128(), ip.0)?;
            modified_ms
        };
        self.modseq.insert((modified_ms, seq), ip.0)?;
        self.last_modified = modified_ms;
        Ok(FeedPos {
            created_ms,
            modified_ms,
            seq,
        })
    }

    /// Takes `ip`, at `pos`, out of the feed (its indicator was purged).
    pub(super) fn leave(&mut self, ip: IpKey, pos: FeedPos) -> Result<()> {
        self.modseq.remove(pos.key())?;
        self.stixid.remove(indicator_uuid(ip).as_u128())?;
        Ok(())
    }
}

/// `FeedTables::advance` as a one-off write, drawing the next sequence
/// number.
pub(super) fn advance(
    txn: &WriteTransaction,
    ip: IpKey,
    old: Option<FeedPos>,
    now: UnixMillis,
) -> Result<FeedPos> {
    let seq = meta::next_id(txn, "feed")?;
    FeedTables::open(txn)?.advance(ip, old, now, seq)
}

/// `FeedTables::leave` as a one-off write.
pub(super) fn leave(txn: &WriteTransaction, ip: IpKey, pos: FeedPos) -> Result<()> {
    FeedTables::open(txn)?.leave(ip, pos)
}

/// The feed position of the indicator of `ip`, if it is stored.
pub fn position(txn: &ReadTransaction, ip: IpKey) -> Result<Option<FeedPos>> {
    super::indicators::position_in(&txn.open_table(IP_INDICATOR)?, ip)
}

/// The IP whose indicator has the STIX id `uuid`, if it is in the feed.
pub fn ip_of(txn: &ReadTransaction, uuid: u128) -> Result<Option<IpKey>> {
    let t = txn.open_table(STIXID_IP)?;
    Ok(t.get(uuid)?.map(|v| IpKey(v.value())))
}

/// Feed entries strictly after `after`, in feed order, until `f` says stop.
pub fn scan_after(
    txn: &ReadTransaction,
    after: (i64, u64),
    mut f: impl FnMut((i64, u64), IpKey) -> Result<bool>,
) -> Result<()> {
    let t = txn.open_table(MODSEQ_IP)?;
    let range = match after.1.checked_add(1) {
        Some(s) => t.range((after.0, s)..)?,
        None => match after.0.checked_add(1) {
            Some(m) => t.range((m, 0)..)?,
            None => return Ok(()),
        },
    };
    for item in range {
        let (k, v) = item?;
        if !f(k.value(), IpKey(v.value()))? {
            break;
        }
    }
    Ok(())
}

/// Puts every stored indicator that has no feed position into the feed,
/// oldest evidence first, dated by its last evidence (schema migration).
pub fn backfill(txn: &WriteTransaction) -> Result<u64> {
    let mut missing: Vec<(i64, u128)> = Vec::new();
    {
        let inds = txn.open_table(IP_INDICATOR)?;
        for item in inds.iter()? {
            let (k, v) = item?;
            if super::indicators::position_of(v.value())?.is_none() {
                let ind = super::indicators::decode(v.value())?;
                missing.push((ind.last_seen.0, k.value()));
            }
        }
    }
    missing.sort_unstable();
    for &(last_seen, ip) in &missing {
        let Some(ind) = super::indicators::get_in_write(txn, IpKey(ip))? else {
            continue;
        };
        let pos = advance(txn, IpKey(ip), None, UnixMillis(last_seen))?;
        super::indicators::store_record(txn, &ind, pos)?;
    }
    Ok(missing.len() as u64)
}

/// Schema 6 → 7: each indicator's feed position moves from `ip_feedpos`
/// into its record (one B-tree fewer read and written per indicator
/// write). The old table stays, empty, so backups of older schemas still
/// restore (and migrate). A position without an indicator is taken out of
/// the feed; an indicator without one is put at the feed's end.
pub(super) fn fold_positions(txn: &WriteTransaction) -> Result<()> {
    super::tables::create_all(txn)?;
    let mut moved: Vec<(u128, FeedPos)> = Vec::new();
    {
        let t = txn.open_table(IP_FEEDPOS)?;
        for item in t.iter()? {
            let (k, v) = item?;
            let (created_ms, modified_ms, seq) = v.value();
            moved.push((
                k.value(),
                FeedPos {
                    created_ms,
                    modified_ms,
                    seq,
                },
            ));
        }
    }
    for (ip, pos) in moved {
        match super::indicators::get_in_write(txn, IpKey(ip))? {
            Some(ind) => super::indicators::store_record(txn, &ind, pos)?,
            None => leave(txn, IpKey(ip), pos)?,
        }
    }
    txn.delete_table(IP_FEEDPOS)?;
    txn.open_table(IP_FEEDPOS)?;
    backfill(txn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn ip(s: &str) -> IpKey {
        s.parse().unwrap()
    }

    fn order(store: &Store) -> Vec<((i64, u64), String)> {
        store
            .read_blocking(|txn| {
                let mut v = Vec::new();
                scan_after(txn, (i64::MIN, 0), |k, ip| {
                    v.push((k, ip.to_string()));
                    Ok(true)
                })?;
                Ok(v)
            })
            .unwrap()
    }

    #[test]
    fn migration_to_v2_puts_existing_indicators_in_the_feed() {
        use crate::domain::Indicator;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let store = Store::open(&path).unwrap().store;
        // A version-1 database: indicators, no feed.
        store
            .write_blocking(|txn| {
                for (s, seen) in [("3.3.3.3", 300), ("1.1.1.1", 100)] {
                    let ind = Indicator::new(ip(s), UnixMillis(seen));
                    super::super::indicators::store_v1_record(txn, &ind)?;
                }
                meta::set_schema_version(txn, 1)
            })
            .unwrap();
        drop(store);
        let opened = Store::open(&path).unwrap();
        assert_eq!(opened.migrated_from, Some(1));
        let o = order(&opened.store);
        assert_eq!(
            o.iter()
                .map(|(k, ip)| (k.0, ip.as_str()))
                .collect::<Vec<_>>(),
            [(100, "1.1.1.1"), (300, "3.3.3.3")]
        );
        let pos = opened
            .store
            .read_blocking(|t| position(t, ip("3.3.3.3")))
            .unwrap()
            .unwrap();
        assert_eq!((pos.created_ms, pos.key()), (300, o[1].0));
    }

    #[test]
    fn migration_to_v7_moves_positions_into_the_records() {
        use crate::domain::Indicator;
        use crate::store::indicators;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let store = Store::open(&path).unwrap().store;
        let (kept, orphan, unplaced) = (ip("1.1.1.1"), ip("2.2.2.2"), ip("3.3.3.3"));
        // A version-6 database: records without positions, positions in
        // their own table; one position without an indicator, one
        // indicator without a position.
        store
            .write_blocking(|txn| {
                for a in [kept, unplaced] {
                    indicators::store_v1_record(txn, &Indicator::new(a, UnixMillis(50)))?;
                }
                let mut pos = txn.open_table(IP_FEEDPOS)?;
                let mut order = txn.open_table(MODSEQ_IP)?;
                let mut ids = txn.open_table(STIXID_IP)?;
                for (a, created, modified, seq) in [(kept, 10, 20, 7_u64), (orphan, 30, 40, 8)] {
                    pos.insert(a.0, (created, modified, seq))?;
                    order.insert((modified, seq), a.0)?;
                    ids.insert(indicator_uuid(a).as_u128(), a.0)?;
                }
                drop((pos, order, ids));
                meta::set_id(txn, "feed", 8)?;
                meta::set_schema_version(txn, 6)
            })
            .unwrap();
        drop(store);
        let opened = Store::open(&path).unwrap();
        assert_eq!(opened.migrated_from, Some(6));
        let store = opened.store;
        let at = |a| store.read_blocking(|t| position(t, a)).unwrap();
        assert_eq!(
            at(kept),
            Some(FeedPos {
                created_ms: 10,
                modified_ms: 20,
                seq: 7
            }),
            "the position moved unchanged"
        );
        assert_eq!(at(orphan), None);
        let placed = at(unplaced).expect("an indicator without a position enters the feed");
        assert_eq!((placed.modified_ms, placed.seq), (50, 9));
        assert_eq!(
            order(&store)
                .iter()
                .map(|(k, a)| (*k, a.as_str()))
                .collect::<Vec<_>>(),
            [((20, 7), "1.1.1.1"), ((50, 9), "3.3.3.3")],
            "the orphan left the feed"
        );
        store
            .read_blocking(|t| {
                assert_eq!(ip_of(t, indicator_uuid(orphan).as_u128())?, None);
                assert_eq!(ip_of(t, indicator_uuid(kept).as_u128())?, Some(kept));
                assert!(redb::ReadableTableMetadata::is_empty(
                    &t.open_table(IP_FEEDPOS)?
                )?);
                let ind = indicators::get(t, kept)?.unwrap();
                assert_eq!(ind.last_seen, UnixMillis(50));
                Ok(())
            })
            .unwrap();
        // The next write continues the feed's counter.
        store
            .write_blocking(|txn| {
                indicators::put(
                    txn,
                    &Indicator::new(kept, UnixMillis(60)),
                    Some(1),
                    1,
                    UnixMillis(60),
                )
            })
            .unwrap();
        assert_eq!(at(kept).unwrap().seq, 10);
        assert_eq!(at(kept).unwrap().created_ms, 10);
    }

    #[test]
    fn writes_move_to_the_end_and_time_never_goes_back() {
        use crate::domain::Indicator;
        use crate::store::indicators;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap().store;
        let (a, b) = (ip("1.1.1.1"), ip("2.2.2.2"));
        let put = |txn: &WriteTransaction, x: IpKey, old_day: Option<i64>, now: i64| {
            indicators::put(
                txn,
                &Indicator::new(x, UnixMillis(now)),
                old_day,
                1,
                UnixMillis(now),
            )
        };
        store
            .write_blocking(|txn| {
                put(txn, a, None, 100)?;
                put(txn, b, None, 100)?;
                // A clock stepped backwards does not reorder the feed.
                put(txn, a, Some(1), 50)
            })
            .unwrap();
        let o = order(&store);
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].1, "2.2.2.2");
        assert_eq!(o[1].1, "1.1.1.1");
        assert_eq!(o[0].0.0, 100);
        assert_eq!(
            o[1].0.0, 101,
            "a new version is after the old one even with the clock stepped back"
        );
        assert!(o[0].0 < o[1].0);
        let pos = store.read_blocking(|t| position(t, a)).unwrap().unwrap();
        assert_eq!(pos.created_ms, 100, "created survives new versions");
        assert_eq!(pos.key(), o[1].0);
        let uuid = indicator_uuid(a).as_u128();
        assert_eq!(store.read_blocking(|t| ip_of(t, uuid)).unwrap(), Some(a));
        store
            .write_blocking(|txn| indicators::delete(txn, a, 1))
            .unwrap();
        assert_eq!(order(&store).len(), 1);
        assert_eq!(store.read_blocking(|t| ip_of(t, uuid)).unwrap(), None);
        assert_eq!(store.read_blocking(|t| position(t, a)).unwrap(), None);
    }
}
