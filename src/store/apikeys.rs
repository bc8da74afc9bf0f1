//! API keys, stored only as keyed blake3 hashes.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::{KEYHASH_APIKEY, KEYID_KEYHASH};
use super::{Result, codec, meta};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: u64,
    pub name: String,
    pub tier: String,
    /// The account the key belongs to; its reports count as this account's.
    pub account: u64,
    /// When that account was created (for reporter weights).
    pub account_created_ms: i64,
    /// First characters of the key, to tell keys apart in listings.
    pub prefix: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
    pub last_used_day: Option<i64>,
}

#[derive(Serialize, Deserialize)]
enum DbApiKey {
    V1(ApiKey),
}

fn decode(b: &[u8]) -> Result<ApiKey> {
    match codec::decode::<DbApiKey>("keyhash_apikey", b)? {
        DbApiKey::V1(k) => Ok(k),
    }
}

pub fn next_id(txn: &WriteTransaction) -> Result<u64> {
    meta::next_id(txn, "apikey")
}

pub fn put(txn: &WriteTransaction, hash: [u8; 32], k: &ApiKey) -> Result<()> {
    txn.open_table(KEYHASH_APIKEY)?
        .insert(hash, codec::encode(&DbApiKey::V1(k.clone())).as_slice())?;
    txn.open_table(KEYID_KEYHASH)?.insert(k.id, hash)?;
    Ok(())
}

pub fn hash_of(txn: &WriteTransaction, id: u64) -> Result<Option<[u8; 32]>> {
    Ok(txn.open_table(KEYID_KEYHASH)?.get(id)?.map(|v| v.value()))
}

pub fn get_in_write(txn: &WriteTransaction, hash: [u8; 32]) -> Result<Option<ApiKey>> {
    let t = txn.open_table(KEYHASH_APIKEY)?;
    t.get(hash)?.map(|v| decode(v.value())).transpose()
}

/// Every key with its hash (loaded into memory at start).
pub fn all(txn: &ReadTransaction) -> Result<Vec<([u8; 32], ApiKey)>> {
    let t = txn.open_table(KEYHASH_APIKEY)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.push((k.value(), decode(v.value())?));
    }
    Ok(out)
}
