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
    let (stats, expiry) = tables(kind);
    let mut t = txn.open_table(stats)?;
    let old = t.get(name)?.map(|v| decode(v.value())).transpose()?;
    let old_day = old
        .as_ref()
        .map(|s| crate::domain::UnixMillis(s.last_seen_ms + retention_ms).day());
    let mut s = old.unwrap_or(NameStats {
        first_seen_ms: at_ms,
        last_seen_ms: at_ms,
        ..NameStats::default()
    });
    s.count += 1;
    *s.protocols.entry(proto).or_default() += 1;
    s.first_seen_ms = s.first_seen_ms.min(at_ms);
    s.last_seen_ms = s.last_seen_ms.max(at_ms);
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
