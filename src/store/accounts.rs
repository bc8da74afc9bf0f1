//! Accounts, their unique usernames and e-mail addresses, and invitations.
//! Username and e-mail are indexed lower-cased, so uniqueness is
//! case-insensitive.

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::{ACCOUNTID_ACCOUNT, EMAIL_ACCOUNTID, INVITEHASH_INVITE, USERNAME_ACCOUNTID};
use super::{Result, codec, meta};
use crate::domain::account::{Profile, Role};

/// Everything held about an account holder (P01–P03). Authentication data
/// (password hash, change timestamps, failed attempts) is kept apart in
/// `Auth` so erasure can drop it at once (P14).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: u64,
    /// Lower-cased.
    pub username: String,
    /// Lower-cased.
    pub email: String,
    pub email_verified: bool,
    pub profile: Profile,
    pub role: Role,
    pub tier: String,
    pub created_ms: i64,
    /// Where the account was registered from (P03).
    pub registration_ip: Option<String>,
    pub disabled: bool,
    pub auth: Option<Auth>,
}

/// Authentication data (P02).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    /// argon2id PHC string (P50).
    pub password_hash: String,
    /// Every password change, oldest first.
    pub password_changed_ms: Vec<i64>,
    /// Recent failed sign-in attempts (bounded).
    pub failed_logins_ms: Vec<i64>,
}

/// Most failed attempts remembered per account.
pub const MAX_FAILED_KEPT: usize = 50;

#[derive(Serialize, Deserialize)]
enum DbAccount {
    V1(Account),
}

fn decode(b: &[u8]) -> Result<Account> {
    match codec::decode::<DbAccount>("accountid_account", b)? {
        DbAccount::V1(a) => Ok(a),
    }
}

pub fn next_id(txn: &WriteTransaction) -> Result<u64> {
    meta::next_id(txn, "account")
}

/// Writes `a`, keeping the username and e-mail indexes in step with it.
pub fn put(txn: &WriteTransaction, a: &Account) -> Result<()> {
    let mut t = txn.open_table(ACCOUNTID_ACCOUNT)?;
    let old = t.get(a.id)?.map(|v| decode(v.value())).transpose()?;
    t.insert(a.id, codec::encode(&DbAccount::V1(a.clone())).as_slice())?;
    let mut by_name = txn.open_table(USERNAME_ACCOUNTID)?;
    let mut by_email = txn.open_table(EMAIL_ACCOUNTID)?;
    if let Some(o) = old {
        if o.username != a.username {
            by_name.remove(o.username.as_str())?;
        }
        if o.email != a.email {
            by_email.remove(o.email.as_str())?;
        }
    }
    by_name.insert(a.username.as_str(), a.id)?;
    by_email.insert(a.email.as_str(), a.id)?;
    Ok(())
}

pub fn remove(txn: &WriteTransaction, id: u64) -> Result<Option<Account>> {
    let Some(a) = txn
        .open_table(ACCOUNTID_ACCOUNT)?
        .remove(id)?
        .map(|v| decode(v.value()))
        .transpose()?
    else {
        return Ok(None);
    };
    txn.open_table(USERNAME_ACCOUNTID)?
        .remove(a.username.as_str())?;
    txn.open_table(EMAIL_ACCOUNTID)?.remove(a.email.as_str())?;
    Ok(Some(a))
}

pub fn get(txn: &ReadTransaction, id: u64) -> Result<Option<Account>> {
    txn.open_table(ACCOUNTID_ACCOUNT)?
        .get(id)?
        .map(|v| decode(v.value()))
        .transpose()
}

pub fn get_in_write(txn: &WriteTransaction, id: u64) -> Result<Option<Account>> {
    txn.open_table(ACCOUNTID_ACCOUNT)?
        .get(id)?
        .map(|v| decode(v.value()))
        .transpose()
}

/// The account whose username or e-mail (lower-cased) is `login`.
pub fn find(txn: &ReadTransaction, login: &str) -> Result<Option<Account>> {
    let id = match txn.open_table(USERNAME_ACCOUNTID)?.get(login)? {
        Some(id) => Some(id.value()),
        None => txn
            .open_table(EMAIL_ACCOUNTID)?
            .get(login)?
            .map(|v| v.value()),
    };
    id.map_or(Ok(None), |id| get(txn, id))
}

pub fn username_taken(txn: &WriteTransaction, name: &str) -> Result<Option<u64>> {
    Ok(txn
        .open_table(USERNAME_ACCOUNTID)?
        .get(name)?
        .map(|v| v.value()))
}

pub fn email_taken(txn: &WriteTransaction, email: &str) -> Result<Option<u64>> {
    Ok(txn
        .open_table(EMAIL_ACCOUNTID)?
        .get(email)?
        .map(|v| v.value()))
}

pub fn count(txn: &ReadTransaction) -> Result<u64> {
    Ok(txn.open_table(ACCOUNTID_ACCOUNT)?.len()?)
}

pub fn all(txn: &ReadTransaction) -> Result<Vec<Account>> {
    let t = txn.open_table(ACCOUNTID_ACCOUNT)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

/// An invitation to register, stored by the keyed hash of its code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub created_by: u64,
    pub created_ms: i64,
    pub expires_ms: i64,
}

#[derive(Serialize, Deserialize)]
enum DbInvite {
    V1(Invite),
}

pub fn put_invite(txn: &WriteTransaction, hash: [u8; 32], i: &Invite) -> Result<()> {
    txn.open_table(INVITEHASH_INVITE)?
        .insert(hash, codec::encode(&DbInvite::V1(i.clone())).as_slice())?;
    Ok(())
}

/// Removes and returns the invite (each is used once).
pub fn take_invite(txn: &WriteTransaction, hash: [u8; 32]) -> Result<Option<Invite>> {
    let mut t = txn.open_table(INVITEHASH_INVITE)?;
    let v = t.remove(hash)?;
    v.map(
        |v| match codec::decode::<DbInvite>("invitehash_invite", v.value())? {
            DbInvite::V1(i) => Ok(i),
        },
    )
    .transpose()
}
