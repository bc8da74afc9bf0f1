//! The operator's imported Tor exit list: networks as (start, prefix length
//! in the u128 space), replaced as a whole on each import.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::Result;
use super::tables::NET_TOREXIT;

/// Replaces the stored list with `nets`.
pub fn replace_all(txn: &WriteTransaction, nets: &[(u128, u8)]) -> Result<()> {
    let mut t = txn.open_table(NET_TOREXIT)?;
    t.retain(|_, ()| false)?;
    for k in nets {
        t.insert(*k, ())?;
    }
    Ok(())
}

pub fn all(txn: &ReadTransaction) -> Result<Vec<(u128, u8)>> {
    let t = txn.open_table(NET_TOREXIT)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(item?.0.value());
    }
    Ok(out)
}
