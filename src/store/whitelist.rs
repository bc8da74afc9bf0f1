//! Admin-managed whitelist of IPs and networks.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::NET_WHITELIST;
use super::{Result, codec};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub net: String,
    pub reason: String,
    pub added_ms: i64,
}

#[derive(Serialize, Deserialize)]
enum DbEntry {
    V1(Entry),
}

pub fn put(txn: &WriteTransaction, key: (u128, u8), e: &Entry) -> Result<bool> {
    let mut t = txn.open_table(NET_WHITELIST)?;
    Ok(
        t.insert(key, codec::encode(&DbEntry::V1(e.clone())).as_slice())?
            .is_none(),
    )
}

pub fn remove(txn: &WriteTransaction, key: (u128, u8)) -> Result<bool> {
    Ok(txn.open_table(NET_WHITELIST)?.remove(key)?.is_some())
}

pub fn all(txn: &ReadTransaction) -> Result<Vec<Entry>> {
    let t = txn.open_table(NET_WHITELIST)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        match codec::decode::<DbEntry>("net_whitelist", item?.1.value())? {
            DbEntry::V1(e) => out.push(e),
        }
    }
    Ok(out)
}
