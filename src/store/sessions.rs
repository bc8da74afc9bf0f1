//! Web sessions. A session family starts at sign-in; each refresh rotates
//! its refresh token. Only keyed hashes of refresh tokens are stored (P40);
//! every hash a family ever had stays mapped to it until the family ends,
//! so presenting an already-rotated token is recognised as reuse.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::{
    ACCOUNTFAMILY_SESSION, DAY_SESSION_EXPIRY, FAMILY_REFRESHHASH, REFRESHHASH_FAMILY,
};
use super::{Result, codec, meta};
use crate::domain::UnixMillis;

/// One signed-in device (P04: user agent and session identifiers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub account: u64,
    pub family: u64,
    pub created_ms: i64,
    pub last_used_ms: i64,
    pub expires_ms: i64,
    pub remember: bool,
    /// Hash of the one refresh token that is currently valid.
    pub current: [u8; 32],
    pub user_agent: String,
    /// The address last used (P03).
    pub ip: String,
    pub revoked_ms: Option<i64>,
}

impl Session {
    pub fn live(&self, now: UnixMillis) -> bool {
        self.revoked_ms.is_none() && now.0 < self.expires_ms
    }
}

#[derive(Serialize, Deserialize)]
enum DbSession {
    V1(Session),
}

fn decode(b: &[u8]) -> Result<Session> {
    match codec::decode::<DbSession>("accountfamily_session", b)? {
        DbSession::V1(s) => Ok(s),
    }
}

pub fn next_family(txn: &WriteTransaction) -> Result<u64> {
    meta::next_id(txn, "session")
}

/// Writes `s`; `old_expiry` is its previous expiry (to move its TTL bucket).
pub fn put(txn: &WriteTransaction, s: &Session, old_expiry: Option<i64>) -> Result<()> {
    txn.open_table(ACCOUNTFAMILY_SESSION)?.insert(
        (s.account, s.family),
        codec::encode(&DbSession::V1(s.clone())).as_slice(),
    )?;
    let mut exp = txn.open_table(DAY_SESSION_EXPIRY)?;
    let day = UnixMillis(s.expires_ms).day();
    if let Some(old) = old_expiry.map(|e| UnixMillis(e).day())
        && old != day
    {
        exp.remove((old, s.account, s.family))?;
    }
    exp.insert((day, s.account, s.family), ())?;
    Ok(())
}

/// Maps a refresh-token hash to its family.
pub fn map_token(txn: &WriteTransaction, hash: [u8; 32], account: u64, family: u64) -> Result<()> {
    txn.open_table(REFRESHHASH_FAMILY)?
        .insert(hash, (account, family))?;
    txn.open_table(FAMILY_REFRESHHASH)?
        .insert((account, family, hash), ())?;
    Ok(())
}

pub fn family_of(txn: &WriteTransaction, hash: [u8; 32]) -> Result<Option<(u64, u64)>> {
    Ok(txn
        .open_table(REFRESHHASH_FAMILY)?
        .get(hash)?
        .map(|v| v.value()))
}

pub fn get(txn: &ReadTransaction, account: u64, family: u64) -> Result<Option<Session>> {
    txn.open_table(ACCOUNTFAMILY_SESSION)?
        .get((account, family))?
        .map(|v| decode(v.value()))
        .transpose()
}

pub fn get_in_write(txn: &WriteTransaction, account: u64, family: u64) -> Result<Option<Session>> {
    txn.open_table(ACCOUNTFAMILY_SESSION)?
        .get((account, family))?
        .map(|v| decode(v.value()))
        .transpose()
}

/// Every session of `account`, oldest first.
pub fn of_account(txn: &ReadTransaction, account: u64) -> Result<Vec<Session>> {
    let t = txn.open_table(ACCOUNTFAMILY_SESSION)?;
    let mut out = Vec::new();
    for item in t.range((account, 0)..=(account, u64::MAX))? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

pub fn of_account_in_write(txn: &WriteTransaction, account: u64) -> Result<Vec<Session>> {
    let t = txn.open_table(ACCOUNTFAMILY_SESSION)?;
    let mut out = Vec::new();
    for item in t.range((account, 0)..=(account, u64::MAX))? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

/// Deletes a family with every refresh-token hash it had.
pub fn delete(txn: &WriteTransaction, s: &Session) -> Result<()> {
    txn.open_table(ACCOUNTFAMILY_SESSION)?
        .remove((s.account, s.family))?;
    txn.open_table(DAY_SESSION_EXPIRY)?.remove((
        UnixMillis(s.expires_ms).day(),
        s.account,
        s.family,
    ))?;
    let mut by_family = txn.open_table(FAMILY_REFRESHHASH)?;
    let mut tokens = txn.open_table(REFRESHHASH_FAMILY)?;
    let range = (s.account, s.family, [0_u8; 32])..=(s.account, s.family, [0xff_u8; 32]);
    let hashes: Vec<[u8; 32]> = by_family
        .range(range.clone())?
        .map(|item| item.map(|(k, _)| k.value().2))
        .collect::<std::result::Result<_, _>>()?;
    for h in hashes {
        tokens.remove(h)?;
    }
    by_family.retain_in(range, |_, ()| false)?;
    Ok(())
}

/// Deletes up to `limit` sessions whose expiry day is before `day`, with
/// their token hashes; returns how many expiry entries it dropped.
pub fn sweep(txn: &WriteTransaction, day: i64, limit: usize) -> Result<usize> {
    let due: Vec<(i64, u64, u64)> = txn
        .open_table(DAY_SESSION_EXPIRY)?
        .range((i64::MIN, 0, 0)..(day, 0, 0))?
        .take(limit)
        .map(|item| item.map(|(k, _)| k.value()))
        .collect::<std::result::Result<_, _>>()?;
    for (d, account, family) in &due {
        if let Some(s) = get_in_write(txn, *account, *family)? {
            delete(txn, &s)?;
        }
        txn.open_table(DAY_SESSION_EXPIRY)?
            .remove((*d, *account, *family))?;
    }
    Ok(due.len())
}

/// The oldest expiry day of a session, and how many sessions are stored.
pub fn oldest_expiry(txn: &ReadTransaction) -> Result<(Option<i64>, u64)> {
    use redb::ReadableTableMetadata as _;
    let e = txn.open_table(DAY_SESSION_EXPIRY)?;
    Ok((e.first()?.map(|(k, _)| k.value().0), e.len()?))
}
