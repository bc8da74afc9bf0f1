//! The indicator table as of the last commit, opened once and shared by
//! the point reads of checks until the next commit. Beginning a read
//! transaction and finding the table in it took about 0.8 µs of a check's
//! 21 µs of server CPU (docs/performance.md, Check).
//!
//! Every commit drops the shared table (`Snapshots::committed`, called by
//! the store's only write path), so a read that starts after a write was
//! answered sees that write, and no old version's pages are kept from
//! reuse — or deleted rows kept readable — longer than the reads that
//! already hold it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use redb::{Database, ReadOnlyTable, ReadableDatabase};

use super::Result;
use super::tables::IP_INDICATOR;

/// The indicator table of one committed version.
pub type IndicatorTable = ReadOnlyTable<u128, &'static [u8]>;

#[derive(Default)]
pub struct Snapshots {
    /// Commits so far; a table opened under an older count is not shared.
    commits: AtomicU64,
    shared: Mutex<Option<Arc<IndicatorTable>>>,
}

impl Snapshots {
    /// Called after every commit, before its result is returned.
    pub fn committed(&self) {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.release();
    }

    /// Lets go of the shared table: its version's pages are free for
    /// reuse once the reads that hold it end.
    pub fn release(&self) {
        let old = self.lock().take();
        drop(old);
    }

    /// The indicator table as of the last commit.
    pub fn indicators(&self, db: &Database) -> Result<Arc<IndicatorTable>> {
        if let Some(t) = self.lock().as_ref() {
            return Ok(t.clone());
        }
        let seen = self.commits.load(Ordering::SeqCst);
        let txn = db.begin_read().map_err(redb::Error::from)?;
        let table = Arc::new(txn.open_table(IP_INDICATOR)?);
        self.share(seen, &table);
        Ok(table)
    }

    /// Shares `table`, opened when `seen` commits had been made, unless a
    /// commit came since: its version may lack that commit, which may be
    /// answered before the next read. Such a table serves its own read only.
    fn share(&self, seen: u64, table: &Arc<IndicatorTable>) {
        let mut shared = self.lock();
        if self.commits.load(Ordering::SeqCst) == seen && shared.is_none() {
            *shared = Some(table.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<IndicatorTable>>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots")
            .field("commits", &self.commits.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Indicator, IpKey, UnixMillis};
    use crate::store::indicators;

    #[test]
    fn reads_share_one_table_until_a_commit_which_they_then_see() {
        let (_dir, store) = crate::store::temp_store();
        let ip = IpKey::from_ip("198.51.100.7".parse().unwrap());
        let put = |at: i64| {
            store
                .write_blocking(|txn| {
                    let mut ind = Indicator::new(ip, UnixMillis(at));
                    ind.last_seen = UnixMillis(at);
                    indicators::put(txn, &ind, None, 1, UnixMillis(at))
                })
                .unwrap();
        };
        let seen = || {
            let t = store.indicator_table().unwrap();
            let last = indicators::get_in(&*t, ip).unwrap().map(|i| i.last_seen.0);
            (t, last)
        };
        let (a, none) = seen();
        assert_eq!(none, None);
        let (b, _) = seen();
        assert!(Arc::ptr_eq(&a, &b), "no commit between them: one table");
        drop(b);

        put(10);
        // The commit let go of the shared table: only this read holds it,
        // so its version's pages are free once the read ends.
        assert_eq!(Arc::strong_count(&a), 1);
        assert_eq!(
            indicators::get_in(&*a, ip).unwrap(),
            None,
            "a version stays as it was"
        );
        let (c, last) = seen();
        assert_eq!(last, Some(10), "a read after a commit sees it");
        assert!(!Arc::ptr_eq(&a, &c));

        // A write that fails before its commit keeps the shared table.
        let failed: Result<()> =
            store.write_blocking(|_| Err(crate::store::Error::Corrupt("test".into())));
        assert!(failed.is_err());
        let (d, _) = seen();
        assert!(Arc::ptr_eq(&c, &d));

        put(20);
        assert_eq!(seen().1, Some(20));
    }

    #[test]
    fn a_table_opened_across_a_commit_is_not_shared() {
        let (_dir, store) = crate::store::temp_store();
        let snaps = Snapshots::default();
        let open = || {
            Arc::new(
                store
                    .db
                    .begin_read()
                    .unwrap()
                    .open_table(IP_INDICATOR)
                    .unwrap(),
            )
        };
        // A commit lands between the read's start and its table's sharing.
        let seen = snaps.commits.load(Ordering::SeqCst);
        let t = open();
        snaps.committed();
        snaps.share(seen, &t);
        assert!(snaps.lock().is_none(), "kept for its own read only");
        assert_eq!(Arc::strong_count(&t), 1);
        // Without one, it is shared.
        let seen = snaps.commits.load(Ordering::SeqCst);
        let t = open();
        snaps.share(seen, &t);
        assert!(snaps.lock().as_ref().is_some_and(|s| Arc::ptr_eq(s, &t)));
        snaps.committed();
        assert!(snaps.lock().is_none());
    }
}
