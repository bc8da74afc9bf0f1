//! The `meta` table: schema version and the one-time bootstrap token hash.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::tables::META;
use super::{Error, Result};

const SCHEMA_VERSION: &str = "schema_version";
const BOOTSTRAP: &str = "bootstrap_token";

pub fn schema_version(txn: &ReadTransaction) -> Result<Option<u32>> {
    let t = txn.open_table(META)?;
    read_version(&t)
}

pub(crate) fn read_version(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<u32>> {
    match t.get(SCHEMA_VERSION)? {
        None => Ok(None),
        Some(v) => {
            let b: [u8; 4] = v
                .value()
                .try_into()
                .map_err(|_| Error::Corrupt("meta.schema_version".into()))?;
            Ok(Some(u32::from_le_bytes(b)))
        }
    }
}

pub fn set_schema_version(txn: &WriteTransaction, v: u32) -> Result<()> {
    let mut t = txn.open_table(META)?;
    t.insert(SCHEMA_VERSION, v.to_le_bytes().as_slice())?;
    Ok(())
}

/// The pending bootstrap token, stored only as its keyed hash with an expiry.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum DbBootstrap {
    V1 { hash: [u8; 32], expires_ms: i64 },
}

pub fn set_bootstrap(txn: &WriteTransaction, rec: &DbBootstrap) -> Result<()> {
    let mut t = txn.open_table(META)?;
    t.insert(BOOTSTRAP, super::codec::encode(rec).as_slice())?;
    Ok(())
}

pub fn bootstrap(txn: &ReadTransaction) -> Result<Option<DbBootstrap>> {
    let t = txn.open_table(META)?;
    t.get(BOOTSTRAP)?
        .map(|v| super::codec::decode("meta.bootstrap_token", v.value()))
        .transpose()
}

/// Removes the bootstrap token (used once, or replaced).
pub fn clear_bootstrap(txn: &WriteTransaction) -> Result<bool> {
    let mut t = txn.open_table(META)?;
    Ok(t.remove(BOOTSTRAP)?.is_some())
}

/// Next value of the named sequence (starting at 1), inside `txn`.
pub fn next_id(txn: &WriteTransaction, name: &str) -> Result<u64> {
    let next = current_id(txn, name)? + 1;
    set_id(txn, name, next)?;
    Ok(next)
}

/// The last id handed out by counter `name` (0 before the first).
pub fn current_id(txn: &WriteTransaction, name: &str) -> Result<u64> {
    let t = txn.open_table(META)?;
    let key = format!("seq.{name}");
    match t.get(key.as_str())? {
        Some(v) => Ok(u64::from_le_bytes(
            v.value()
                .try_into()
                .map_err(|_| Error::Corrupt(format!("meta.{key}")))?,
        )),
        None => Ok(0),
    }
}

/// Moves counter `name` to `last` (ids up to it are taken).
pub fn set_id(txn: &WriteTransaction, name: &str, last: u64) -> Result<()> {
    let mut t = txn.open_table(META)?;
    t.insert(
        format!("seq.{name}").as_str(),
        last.to_le_bytes().as_slice(),
    )?;
    Ok(())
}

/// A free-form text value kept under `key` (e.g. the configuration
/// snapshot the audit log compares against).
pub fn get_text(txn: &ReadTransaction, key: &str) -> Result<Option<String>> {
    let t = txn.open_table(META)?;
    Ok(t.get(key)?
        .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
}

/// The bytes kept under `key`, inside a write.
pub fn get_in_write(txn: &WriteTransaction, key: &str) -> Result<Option<Vec<u8>>> {
    let t = txn.open_table(META)?;
    Ok(t.get(key)?.map(|v| v.value().to_vec()))
}

/// Keeps `value` under `key`.
pub fn set_bytes(txn: &WriteTransaction, key: &str, value: &[u8]) -> Result<()> {
    txn.open_table(META)?.insert(key, value)?;
    Ok(())
}

pub fn set_text(txn: &WriteTransaction, key: &str, value: &str) -> Result<()> {
    txn.open_table(META)?.insert(key, value.as_bytes())?;
    Ok(())
}
