//! Usernames and e-mail addresses seen in attacks, with their TTL buckets.

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::{DAY_EMAIL_EXPIRY, DAY_USERNAME_EXPIRY, EMAIL_STATS, USERNAME_STATS};
use super::{Result, codec};
use crate::domain::Protocol;

/// Which kind of name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Username,
    Email,
}

type Stats = TableDefinition<'static, &'static str, &'static [u8]>;
type Expiry = TableDefinition<'static, (i64, &'static str), ()>;

fn tables(kind: Kind) -> (Stats, Expiry) {
    match kind {
        Kind::Username => (USERNAME_STATS, DAY_USERNAME_EXPIRY),
        Kind::Email => (EMAIL_STATS, DAY_EMAIL_EXPIRY),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameStats {
    /// Sessions (usernames) or messages (e-mail addresses).
    pub count: u64,
    pub protocols: BTreeMap<Protocol, u64>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

#[derive(Serialize, Deserialize)]
enum DbNameStats {
    V1(NameStats),
}

fn decode(b: &[u8]) -> Result<NameStats> {
    match codec::decode::<DbNameStats>("name_stats", b)? {
        DbNameStats::V1(s) => Ok(s),
    }
}

pub fn get(txn: &ReadTransaction, kind: Kind, name: &str) -> Result<Option<NameStats>> {
    let t = txn.open_table(tables(kind).0)?;
    t.get(name)?.map(|v| decode(v.value())).transpose()
}

/// Counts one more session/message for `name`; `retention_ms` sets the expiry.
pub fn bump(
    txn: &WriteTransaction,
    kind: Kind,
    name: &str,
    proto: Protocol,
    at_ms: i64,
    retention_ms: i64,
) -> Result<()> {
    let mut seen = NameStats::default();
    seen.add(proto, at_ms);
    bump_by(txn, kind, name, &seen, retention_ms)
}

impl NameStats {
    /// One more session/message at `at_ms`, into a batch's tally.
    pub fn add(&mut self, proto: Protocol, at_ms: i64) {
        if self.count == 0 {
            self.first_seen_ms = at_ms;
            self.last_seen_ms = at_ms;
        }
        self.count += 1;
        *self.protocols.entry(proto).or_default() += 1;
        self.first_seen_ms = self.first_seen_ms.min(at_ms);
        self.last_seen_ms = self.last_seen_ms.max(at_ms);
    }
}

/// Adds a batch's tally for `name` (`seen.count` sessions or messages) in
/// one write; `retention_ms` sets the expiry.
pub fn bump_by(
    txn: &WriteTransaction,
    kind: Kind,
    name: &str,
    seen: &NameStats,
    retention_ms: i64,
) -> Result<()> {
    let (stats, expiry) = tables(kind);
    let mut t = txn.open_table(stats)?;
    let old = t.get(name)?.map(|v| decode(v.value())).transpose()?;
    let old_day = old
        .as_ref()
        .map(|s| crate::domain::UnixMillis(s.last_seen_ms + retention_ms).day());
    let mut s = old.unwrap_or(NameStats {
        first_seen_ms: seen.first_seen_ms,
        last_seen_ms: seen.last_seen_ms,
        ..NameStats::default()
    });
    s.count += seen.count;
    for (p, n) in &seen.protocols {
        *s.protocols.entry(*p).or_default() += n;
    }
    s.first_seen_ms = s.first_seen_ms.min(seen.first_seen_ms);
    s.last_seen_ms = s.last_seen_ms.max(seen.last_seen_ms);
    let new_day = crate::domain::UnixMillis(s.last_seen_ms + retention_ms).day();
    t.insert(name, codec::encode(&DbNameStats::V1(s)).as_slice())?;
    let mut e = txn.open_table(expiry)?;
    if let Some(d) = old_day.filter(|d| *d != new_day) {
        e.remove((d, name))?;
    }
    e.insert((new_day, name), ())?;
    Ok(())
}

/// Deletes up to `max` names whose bucket day is before `day`.
pub fn delete_expired(txn: &WriteTransaction, kind: Kind, day: i64, max: usize) -> Result<usize> {
    let (stats, expiry) = tables(kind);
    let mut e = txn.open_table(expiry)?;
    let mut keys: Vec<(i64, String)> = Vec::new();
    for item in e.range((i64::MIN, "")..(day, ""))?.take(max) {
        let (k, _) = item?;
        let (d, n) = k.value();
        keys.push((d, n.to_owned()));
    }
    let mut t = txn.open_table(stats)?;
    for (d, n) in &keys {
        e.remove((*d, n.as_str()))?;
        t.remove(n.as_str())?;
    }
    Ok(keys.len())
}

/// Files every name of `kind` again under the day `retention_ms` gives
/// (the bucket table is rebuilt from the statistics); returns how many.
pub fn refile(txn: &WriteTransaction, kind: Kind, retention_ms: i64) -> Result<u64> {
    let (stats, expiry) = tables(kind);
    txn.delete_table(expiry)?;
    let t = txn.open_table(stats)?;
    let mut e = txn.open_table(expiry)?;
    let mut n = 0;
    for item in t.iter()? {
        let (name, v) = item?;
        let day = crate::domain::UnixMillis(decode(v.value())?.last_seen_ms + retention_ms).day();
        e.insert((day, name.value()), ())?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_tally_writes_what_one_bump_per_sighting_writes() {
        let (_dir, store) = crate::store::temp_store();
        let day = crate::domain::time::MILLIS_PER_DAY;
        let sightings = [
            (Protocol::Ssh, 5 * day),
            (Protocol::Telnet, 3 * day),
            (Protocol::Ssh, 7 * day),
        ];
        store
            .write_blocking(|txn| {
                bump(
                    txn,
                    Kind::Username,
                    "root",
                    Protocol::Ssh,
                    4 * day,
                    30 * day,
                )?;
                for (p, at) in sightings {
                    bump(txn, Kind::Username, "one", p, at, 30 * day)?;
                }
                let mut tally = NameStats::default();
                for (p, at) in sightings {
                    tally.add(p, at);
                }
                bump_by(txn, Kind::Username, "all", &tally, 30 * day)?;
                bump_by(txn, Kind::Username, "root", &tally, 30 * day)
            })
            .unwrap();
        let (one, all, root) = store
            .read_blocking(|txn| {
                Ok((
                    get(txn, Kind::Username, "one")?.unwrap(),
                    get(txn, Kind::Username, "all")?.unwrap(),
                    get(txn, Kind::Username, "root")?.unwrap(),
                ))
            })
            .unwrap();
        assert_eq!(one, all);
        assert_eq!(
            (all.count, all.first_seen_ms, all.last_seen_ms),
            (3, 3 * day, 7 * day)
        );
        assert_eq!(all.protocols[&Protocol::Ssh], 2);
        assert_eq!((root.count, root.first_seen_ms), (4, 3 * day));
        // Filed once, under the day the newest sighting expires.
        let expiring = store
            .write_blocking(|txn| delete_expired(txn, Kind::Username, 38, 100))
            .unwrap();
        assert_eq!(expiring, 3);
    }
}
