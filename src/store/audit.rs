//! The admin audit log (P60): who did what to the server, when. Entries
//! are keyed by a sequence number, so they are in time order and the
//! retention sweep drops a prefix.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::SEQ_AUDIT;
use super::{Result, codec, meta};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// Who acted: the admin socket, the offline CLI, an admin account, or
    /// the server itself (configuration changes seen at start).
    pub actor: String,
    /// What was done: an operation or route name, never its secrets.
    pub action: String,
    pub detail: String,
}

#[derive(Serialize, Deserialize)]
enum DbAudit {
    V1(AuditEntry),
}

fn decode(b: &[u8]) -> Result<AuditEntry> {
    match codec::decode::<DbAudit>("seq_audit", b)? {
        DbAudit::V1(e) => Ok(e),
    }
}

pub fn append(txn: &WriteTransaction, e: &AuditEntry) -> Result<()> {
    let seq = meta::next_id(txn, "audit")?;
    txn.open_table(SEQ_AUDIT)?
        .insert(seq, codec::encode(&DbAudit::V1(e.clone())).as_slice())?;
    Ok(())
}

/// The newest `limit` entries, newest first.
pub fn newest(txn: &ReadTransaction, limit: usize) -> Result<Vec<AuditEntry>> {
    let t = txn.open_table(SEQ_AUDIT)?;
    let mut out = Vec::new();
    for item in t.iter()?.rev().take(limit) {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

/// Deletes up to `limit` entries made before `cutoff_ms`; returns how many.
pub fn delete_before(txn: &WriteTransaction, cutoff_ms: i64, limit: usize) -> Result<usize> {
    let mut t = txn.open_table(SEQ_AUDIT)?;
    let mut old = Vec::new();
    for item in t.iter()?.take(limit) {
        let (k, v) = item?;
        if decode(v.value())?.at_ms >= cutoff_ms {
            break;
        }
        old.push(k.value());
    }
    for k in &old {
        t.remove(k)?;
    }
    Ok(old.len())
}
