//! What the database holds, table by table, and the oldest retention
//! bucket of each time-bucketed table (for `sikker admin retention status`).

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::Result;
use super::tables::{self, TableVisitor};

/// Entries per table, in `ALL_NAMES` order.
pub fn table_counts(txn: &ReadTransaction) -> Result<Vec<(String, u64)>> {
    struct Count<'a> {
        txn: &'a ReadTransaction,
        out: Vec<(String, u64)>,
    }
    impl TableVisitor for Count<'_> {
        fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
            &mut self,
            def: TableDefinition<K, V>,
        ) -> Result<()> {
            let n = self.txn.open_table(def)?.len()?;
            self.out.push((redb::TableHandle::name(&def).to_owned(), n));
            Ok(())
        }
    }
    let mut c = Count {
        txn,
        out: Vec::new(),
    };
    tables::visit_all(&mut c)?;
    Ok(c.out)
}

/// The first day key of each day-bucketed table (`None` when empty): the
/// oldest data the sweep will remove next.
pub fn oldest_days(txn: &ReadTransaction) -> Result<Vec<(&'static str, Option<i64>)>> {
    Ok(vec![
        (
            "day_ip_expiry",
            txn.open_table(tables::DAY_IP_EXPIRY)?
                .first()?
                .map(|(k, _)| k.value().0),
        ),
        (
            "day_ip_repeatpurge",
            txn.open_table(tables::DAY_IP_REPEATPURGE)?
                .first()?
                .map(|(k, _)| k.value().0),
        ),
        (
            "dayid_report",
            txn.open_table(tables::DAYID_REPORT)?
                .first()?
                .map(|(k, _)| k.value().0),
        ),
        (
            "day_sensor_seen",
            txn.open_table(tables::DAY_SENSOR_SEEN)?
                .first()?
                .map(|(k, _)| k.value().0),
        ),
        (
            "day_session_expiry",
            txn.open_table(tables::DAY_SESSION_EXPIRY)?
                .first()?
                .map(|(k, _)| k.value().0),
        ),
        (
            "day_username_expiry",
            txn.open_table(tables::DAY_USERNAME_EXPIRY)?
                .first()?
                .map(|(k, _)| k.value().0),
        ),
        (
            "day_email_expiry",
            txn.open_table(tables::DAY_EMAIL_EXPIRY)?
                .first()?
                .map(|(k, _)| k.value().0),
        ),
    ])
}
