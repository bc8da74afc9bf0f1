//! The JWT signing-key ring: each key is a random seed with its key id
//! (`kid`); the signing key itself is derived from the seed with the data
//! dir's secret key, so the database alone cannot sign tokens. Only the
//! current key and the one before it are kept.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::KID_JWTKEY;
use super::{Result, codec};

/// One signing key as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtKeyRecord {
    pub kid: u32,
    /// `None` for kid 0: the key schema v4 signed with (derived from the
    /// secret key alone, tokens without a key id), registered by the
    /// v4 → v5 migration so tokens issued before the upgrade stay valid
    /// until they expire.
    pub seed: Option<[u8; 32]>,
    pub created_ms: i64,
}

#[derive(Serialize, Deserialize)]
enum DbJwtKey {
    V1(JwtKeyRecord),
}

/// Keys kept: the current one signs, the previous one still verifies
/// tokens issued before the last rotation.
pub const KEPT: usize = 2;

fn decode(b: &[u8]) -> Result<JwtKeyRecord> {
    match codec::decode::<DbJwtKey>("kid_jwtkey", b)? {
        DbJwtKey::V1(k) => Ok(k),
    }
}

/// The stored keys, oldest first.
pub fn all(txn: &ReadTransaction) -> Result<Vec<JwtKeyRecord>> {
    let t = txn.open_table(KID_JWTKEY)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

/// Registers the key of schema v4 (kid 0, no seed, created at 0 so that
/// it is due for rotation at once); a no-op when keys exist.
pub fn register_legacy(txn: &WriteTransaction) -> Result<()> {
    let mut t = txn.open_table(KID_JWTKEY)?;
    if t.first()?.is_none() {
        let rec = JwtKeyRecord {
            kid: 0,
            seed: None,
            created_ms: 0,
        };
        t.insert(0, codec::encode(&DbJwtKey::V1(rec)).as_slice())?;
    }
    Ok(())
}

/// Rotates (as [`rotate`]) only when the current key was created at least
/// `max_age_ms` before `now_ms`; checked inside the write so two callers
/// never rotate twice. `None` when not due.
pub fn rotate_if_older(
    txn: &WriteTransaction,
    seed: [u8; 32],
    now_ms: i64,
    max_age_ms: i64,
) -> Result<Option<Vec<JwtKeyRecord>>> {
    let current = {
        let t = txn.open_table(KID_JWTKEY)?;
        let last = t.last()?;
        match last {
            Some((_, v)) => Some(decode(v.value())?),
            None => None,
        }
    };
    let due = current
        .is_none_or(|c| c.seed.is_none() || now_ms.saturating_sub(c.created_ms) >= max_age_ms);
    if due {
        rotate(txn, seed, now_ms).map(Some)
    } else {
        Ok(None)
    }
}

/// Adds a new current key with the next kid and drops all but the newest
/// [`KEPT`]; returns the keys kept, oldest first.
pub fn rotate(
    txn: &WriteTransaction,
    seed: [u8; 32],
    created_ms: i64,
) -> Result<Vec<JwtKeyRecord>> {
    let mut t = txn.open_table(KID_JWTKEY)?;
    let last = t.last()?.map_or(0, |(k, _)| k.value());
    let kid = last.wrapping_add(1).max(1);
    let rec = JwtKeyRecord {
        kid,
        seed: Some(seed),
        created_ms,
    };
    t.insert(kid, codec::encode(&DbJwtKey::V1(rec)).as_slice())?;
    let mut kids = Vec::new();
    for item in t.iter()? {
        kids.push(item?.0.value());
    }
    let drop_n = kids.len().saturating_sub(KEPT);
    for k in &kids[..drop_n] {
        t.remove(*k)?;
    }
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}
