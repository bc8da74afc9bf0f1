//! Every redb table, named `key_value`, in one place. Only the owning
//! module opens a table.

use redb::{TableDefinition, WriteTransaction};

use super::Result;

/// Store-wide facts: schema version, bootstrap token hash.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Creates every table so that read transactions never meet a missing one.
pub fn create_all(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(META)?;
    Ok(())
}
