//! Named never-block range sets (verified crawlers, CDNs, partners), one
//! record per set so a re-import replaces a set in one write.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::SETNAME_ALLOWLIST;
use super::{Result, codec};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedSet {
    pub name: String,
    /// Where the operator got the list (a URL or a note).
    pub source: String,
    pub imported_ms: i64,
    /// Networks as CIDR text, normalised (host bits cleared).
    pub nets: Vec<String>,
}

#[derive(Serialize, Deserialize)]
enum DbNamedSet {
    V1(NamedSet),
}

/// Stores `set`, replacing any set of the same name; returns whether one was replaced.
pub fn put(txn: &WriteTransaction, set: &NamedSet) -> Result<bool> {
    let mut t = txn.open_table(SETNAME_ALLOWLIST)?;
    let bytes = codec::encode(&DbNamedSet::V1(set.clone()));
    Ok(t.insert(set.name.as_str(), bytes.as_slice())?.is_some())
}

pub fn remove(txn: &WriteTransaction, name: &str) -> Result<bool> {
    Ok(txn.open_table(SETNAME_ALLOWLIST)?.remove(name)?.is_some())
}

pub fn all(txn: &ReadTransaction) -> Result<Vec<NamedSet>> {
    let t = txn.open_table(SETNAME_ALLOWLIST)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        match codec::decode::<DbNamedSet>("setname_allowlist", item?.1.value())? {
            DbNamedSet::V1(s) => out.push(s),
        }
    }
    Ok(out)
}
