//! The TAXII feed order (`modseq_ip`, `ip_feedpos`, `stixid_ip`): every
//! indicator write gives the indicator a new position `(modified_ms, seq)`
//! at the end of the feed. `seq` comes from one counter under the single
//! writer and `modified_ms` never goes below the last position's, so feed
//! order is commit order: a reader holding a cursor never misses a later
//! write, however many writes share a millisecond.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

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

fn last_modified(txn: &WriteTransaction) -> Result<Option<i64>> {
    let t = txn.open_table(MODSEQ_IP)?;
    Ok(t.last()?.map(|(k, _)| k.value().0))
}

/// Moves `ip` to the end of the feed as of `now`; returns its new position.
/// A new version is always at least a millisecond after the one it
/// replaces, because STIX identifies a version by (`id`, `modified`).
pub fn touch(txn: &WriteTransaction, ip: IpKey, now: UnixMillis) -> Result<FeedPos> {
    let seq = meta::next_id(txn, "feed")?;
    let mut pos_t = txn.open_table(IP_FEEDPOS)?;
    let old = pos_t.get(ip.0)?.map(|v| v.value());
    let floor = last_modified(txn)?.unwrap_or(i64::MIN);
    let after_old = old.map_or(i64::MIN, |(_, m, _)| m.saturating_add(1));
    let modified_ms = now.0.max(floor).max(after_old);
    let mut order = txn.open_table(MODSEQ_IP)?;
    let created_ms = if let Some((created, modified, old_seq)) = old {
        order.remove((modified, old_seq))?;
        created
    } else {
        txn.open_table(STIXID_IP)?
            .insert(indicator_uuid(ip).as_u128(), ip.0)?;
        modified_ms
    };
    order.insert((modified_ms, seq), ip.0)?;
    pos_t.insert(ip.0, (created_ms, modified_ms, seq))?;
    Ok(FeedPos {
        created_ms,
        modified_ms,
        seq,
    })
}

/// Takes `ip` out of the feed (its indicator was purged).
pub fn remove(txn: &WriteTransaction, ip: IpKey) -> Result<()> {
    let mut pos_t = txn.open_table(IP_FEEDPOS)?;
    if let Some((_, modified, seq)) = pos_t.remove(ip.0)?.map(|v| v.value()) {
        txn.open_table(MODSEQ_IP)?.remove((modified, seq))?;
        txn.open_table(STIXID_IP)?
            .remove(indicator_uuid(ip).as_u128())?;
    }
    Ok(())
}

pub fn position(txn: &ReadTransaction, ip: IpKey) -> Result<Option<FeedPos>> {
    let t = txn.open_table(IP_FEEDPOS)?;
    Ok(t.get(ip.0)?.map(|v| {
        let (created_ms, modified_ms, seq) = v.value();
        FeedPos {
            created_ms,
            modified_ms,
            seq,
        }
    }))
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
        let pos = txn.open_table(IP_FEEDPOS)?;
        for item in inds.iter()? {
            let (k, v) = item?;
            let ip = k.value();
            if pos.get(ip)?.is_none() {
                let ind = super::indicators::decode(v.value())?;
                missing.push((ind.last_seen.0, ip));
            }
        }
    }
    missing.sort_unstable();
    for &(last_seen, ip) in &missing {
        touch(txn, IpKey(ip), UnixMillis(last_seen))?;
    }
    Ok(missing.len() as u64)
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
                    super::super::indicators::put(txn, &ind, None, 1, UnixMillis(seen))?;
                    remove(txn, ip(s))?;
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
    }

    #[test]
    fn writes_move_to_the_end_and_time_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb")).unwrap().store;
        let (a, b) = (ip("1.1.1.1"), ip("2.2.2.2"));
        store
            .write_blocking(|txn| {
                touch(txn, a, UnixMillis(100))?;
                touch(txn, b, UnixMillis(100))?;
                // A clock stepped backwards does not reorder the feed.
                touch(txn, a, UnixMillis(50))
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
        let uuid = indicator_uuid(a).as_u128();
        assert_eq!(store.read_blocking(|t| ip_of(t, uuid)).unwrap(), Some(a));
        store.write_blocking(|txn| remove(txn, a)).unwrap();
        assert_eq!(order(&store).len(), 1);
        assert_eq!(store.read_blocking(|t| ip_of(t, uuid)).unwrap(), None);
        assert_eq!(store.read_blocking(|t| position(t, a)).unwrap(), None);
    }
}
