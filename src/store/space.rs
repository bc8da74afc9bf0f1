//! How much of the database file its tables use, and compaction, which
//! gives the rest back to the file system.
//!
//! redb never overwrites a live page: a write transaction copies every page
//! it changes, and the old copies are freed once no reader can see them.
//! A transaction that touches a large share of the database (a first import,
//! a sensor backlog of new addresses) therefore grows the file by about that
//! share, and the freed pages are reused by later writes but not returned.
//! `sikker admin stats` shows the difference; `sikker admin compact` (server
//! stopped) moves the pages to the front and truncates the file.

use redb::{ReadTransaction, ReadableTableMetadata, TableStats};
use serde::Serialize;

use super::{Error, Result, Store};

/// The file against what its tables hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Space {
    /// The file's size.
    pub file_bytes: u64,
    /// The pages of every table (keys, values, their page headers and the
    /// unused room in those pages).
    pub table_bytes: u64,
    /// The keys and values alone.
    pub stored_bytes: u64,
    /// Pages the file holds that no table uses: free for later writes,
    /// returned to the file system only by compaction.
    pub free_bytes: u64,
}

impl Space {
    /// These tables in a file of `file_bytes`.
    fn in_file(self, file_bytes: u64) -> Self {
        Self {
            file_bytes,
            free_bytes: file_bytes.saturating_sub(self.table_bytes),
            ..self
        }
    }
}

/// What one compaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Compacted {
    pub before: Space,
    pub after: Space,
}

fn add(space: &mut Space, s: &TableStats) {
    space.stored_bytes += s.stored_bytes();
    space.table_bytes += s.stored_bytes() + s.metadata_bytes() + s.fragmented_bytes();
}

/// The tables' share of the file, from one read transaction (so a running
/// server's writer is never waited for).
fn tables(txn: &ReadTransaction) -> Result<Space> {
    let mut space = Space::default();
    for handle in txn.list_tables()? {
        add(&mut space, &txn.open_untyped_table(handle)?.stats()?);
    }
    for handle in txn.list_multimap_tables()? {
        add(
            &mut space,
            &txn.open_untyped_multimap_table(handle)?.stats()?,
        );
    }
    Ok(space)
}

fn file_bytes(path: &std::path::Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| Error::Io {
            what: format!("cannot read the size of {}", path.display()),
            source,
        })
}

impl Store {
    /// The file's size against what its tables use.
    pub fn space(&self) -> Result<Space> {
        Ok(self
            .read_blocking(tables)?
            .in_file(file_bytes(self.path())?))
    }

    /// Moves every page to the front of the file, truncates it and closes
    /// the database. Needs the only handle on it: the caller holds the data
    /// dir's lock and no other clone of this store exists. Each step is a
    /// durable commit, so an interrupted compaction leaves a valid, merely
    /// larger, file.
    ///
    /// `after` is the file as closed. It keeps some free room: redb's
    /// closing commit needs a few new pages, and a file with none free grows
    /// by its own size (redb doubles files smaller than its 4 GiB region).
    pub fn compact(mut self) -> Result<Compacted> {
        let before = self.space()?;
        // redb refuses to compact while any read holds a version.
        self.snapshots.release();
        let db = std::sync::Arc::get_mut(&mut self.db).ok_or_else(|| Error::Io {
            what: format!("cannot compact {}", self.path.display()),
            source: std::io::Error::other("the database is in use"),
        })?;
        db.compact().map_err(redb::Error::from)?;
        let tables = self.space()?;
        let path = self.path.clone();
        drop(self);
        Ok(Compacted {
            before,
            after: tables.in_file(file_bytes(&path)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use redb::TableDefinition;

    use super::*;

    const SCRATCH: TableDefinition<u64, &[u8]> = TableDefinition::new("scratch");

    #[test]
    fn compaction_returns_freed_pages_and_keeps_every_row() {
        let (_dir, store) = crate::store::temp_store();
        let row = vec![7u8; 1_000];
        // 20 MB of rows, then all but every tenth deleted: the file keeps
        // its size, the tables shrink.
        for chunk in 0..20u64 {
            store
                .write_blocking(|txn| {
                    let mut t = txn.open_table(SCRATCH)?;
                    for i in chunk * 1_000..(chunk + 1) * 1_000 {
                        t.insert(i, row.as_slice())?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        let full = store.space().unwrap();
        assert!(full.stored_bytes >= 20_000_000, "{full:?}");
        assert!(full.table_bytes >= full.stored_bytes, "{full:?}");
        store
            .write_blocking(|txn| {
                let mut t = txn.open_table(SCRATCH)?;
                for i in (0..20_000u64).filter(|i| i % 10 != 0) {
                    t.remove(i)?;
                }
                Ok(())
            })
            .unwrap();
        let thinned = store.space().unwrap();
        assert!(thinned.file_bytes >= full.file_bytes, "{thinned:?}");
        assert!(thinned.table_bytes < full.table_bytes / 5, "{thinned:?}");
        assert!(thinned.free_bytes > 15_000_000, "{thinned:?}");

        let path = store.path().to_path_buf();
        // Another handle on the database: refused, nothing changed.
        let other = store.clone();
        let refused = store.compact().unwrap_err();
        assert!(refused.to_string().contains("in use"), "{refused}");
        // A point read's shared table does not keep compaction out.
        drop(other.indicator_table().unwrap());
        let c = other.compact().unwrap();
        assert_eq!(c.before, thinned);
        assert_eq!(c.after.stored_bytes, thinned.stored_bytes);
        // The closed file: the tables, and at most as much again of room.
        assert!(c.after.file_bytes < thinned.file_bytes / 3, "{c:?}");
        assert!(c.after.free_bytes <= c.after.table_bytes, "{c:?}");

        // Opened again and written to, it stays well below the file before.
        let reopened = Store::open(&path).unwrap().store;
        let again = reopened.space().unwrap();
        assert!(again.file_bytes < thinned.file_bytes / 3, "{again:?}");
        let rows = reopened
            .read_blocking(|txn| {
                let t = txn.open_table(SCRATCH)?;
                let mut rows = Vec::new();
                for r in redb::ReadableTable::iter(&t)? {
                    let (k, v) = r?;
                    assert_eq!(v.value(), row.as_slice());
                    rows.push(k.value());
                }
                Ok(rows)
            })
            .unwrap();
        let kept: Vec<u64> = (0..20_000).step_by(10).collect();
        assert_eq!(rows, kept);
    }
}
