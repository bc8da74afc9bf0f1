//! The redb store: opening, schema version and migrations, and the only
//! doorway to transactions. Every call from async code goes through
//! `read`/`write`, which run on the blocking pool, never on the reactor.

pub mod accounts;
pub mod alerts;
pub mod allowlists;
pub mod apikeys;
pub mod audit;
pub mod backup;
pub mod codec;
pub mod error;
pub mod evidence_writer;
pub mod feed;
pub mod indicators;
pub mod ingest_log;
pub mod inventory;
pub mod jwtkeys;
pub mod long_sessions;
pub mod meta;
pub mod migrate;
pub mod names;
pub mod periods;
pub mod privacy;
pub mod repeat;
pub mod reports;
pub mod sensors;
pub mod sessions;
pub mod snapshot;
pub mod space;
pub mod tables;
pub mod torexits;
pub mod usage;
pub mod whitelist;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

pub use error::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The database file's name inside the data dir.
pub const DB_FILE: &str = "sikker.redb";

/// redb's page cache when none is configured (`--db-cache-mib`). redb's
/// own default is 1 GiB, which a start-up that reads every indicator fills
/// whole; the in-memory index answers the hot questions instead, so a
/// small cache costs little (see docs/performance.md).
pub const DEFAULT_CACHE_BYTES: usize = 16 << 20;

/// A cheap-to-clone handle on the one database.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    /// Fault injection: when set, every write fails as a full disk would.
    write_fault: Arc<AtomicBool>,
    /// The indicator table shared by point reads until the next commit.
    snapshots: Arc<snapshot::Snapshots>,
    /// Long sensor sessions' de-duplication state between transactions.
    long_sessions: Arc<long_sessions::LongSessions>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What `Store::open` found.
#[derive(Debug)]
pub struct Opened {
    pub store: Store,
    /// The file did not exist before.
    pub created: bool,
    /// The schema version the file had before migrations ran, when it was older.
    pub migrated_from: Option<u32>,
}

impl Store {
    /// Opens or creates the database with the default page cache, creating
    /// every table and running migrations. Blocking: call from
    /// `spawn_blocking` or a CLI.
    pub fn open(path: &Path) -> Result<Opened> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// `open` with a page cache of at most `cache_bytes` (reads and the
    /// write buffer together).
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Opened> {
        let created = !path.exists();
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| Error::open(path, e))?;
        if created {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| Error::Io {
                    what: format!("cannot restrict permissions of {}", path.display()),
                    source,
                },
            )?;
        }
        let store = Self {
            db: Arc::new(db),
            path: Arc::new(path.to_path_buf()),
            write_fault: Arc::new(AtomicBool::new(false)),
            snapshots: Arc::default(),
            long_sessions: Arc::default(),
        };
        let migrated_from = store.write_blocking(|txn| {
            migrate::refuse_foreign(txn)?;
            tables::create_all(txn)?;
            migrate::run(txn, created)
        })?;
        Ok(Opened {
            store,
            created,
            migrated_from,
        })
    }

    /// Makes every following write fail with "no space left on device"
    /// (`true`) or work again (`false`), for tests of a full or read-only
    /// data dir on machines where a small file system cannot be mounted.
    #[doc(hidden)]
    pub fn inject_write_fault(&self, on: bool) {
        self.write_fault.store(on, Ordering::Relaxed);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read transaction on the calling thread (CLI, jobs already off the reactor).
    pub fn read_blocking<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        f(&txn)
    }

    /// A write transaction on the calling thread; committed when `f` succeeds,
    /// dropped (rolled back) when it fails.
    pub fn write_blocking<T>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
        self.write_blocking_as(|_| true, f)
    }

    /// As `write_blocking`, the commit durable only if `durable` says so
    /// of what `f` returned: otherwise redb's non-durable commit (no
    /// fsync): later reads see it, a crash loses it unless a durable
    /// commit came after (`service::group_commit` logs what it writes so).
    pub fn write_blocking_as<T>(
        &self,
        durable: impl FnOnce(&T) -> bool,
        f: impl FnOnce(&WriteTransaction) -> Result<T>,
    ) -> Result<T> {
        if self.write_fault.load(Ordering::Relaxed) {
            return Err(Error::Io {
                what: format!("cannot write {}", self.path.display()),
                source: std::io::Error::from_raw_os_error(28), // ENOSPC
            });
        }
        let mut txn = self.db.begin_write().map_err(redb::Error::from)?;
        let out = f(&txn)?;
        if !durable(&out) {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| Error::Corrupt(e.to_string()))?;
        }
        let committed = txn.commit();
        // Also after a failed commit, which may have reached the file.
        self.snapshots.committed();
        committed.map_err(redb::Error::from)?;
        Ok(out)
    }

    /// The indicator table as of the last commit, shared by point reads
    /// (`snapshot`).
    pub fn indicator_table(&self) -> Result<Arc<snapshot::IndicatorTable>> {
        self.snapshots.indicators(&self.db)
    }

    /// Long sensor sessions' de-duplication state, kept between ingest
    /// transactions (`sensors::Dedup`).
    pub fn long_sessions(&self) -> Arc<long_sessions::LongSessions> {
        self.long_sessions.clone()
    }

    /// A read transaction on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking(f))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    /// Deletes in bounded batches: runs `f` (which removes at most `batch`
    /// items and says how many) in one short write transaction after
    /// another, so the single writer is never held long, until a batch
    /// comes back short. Returns the total removed.
    pub async fn drain<F>(&self, batch: usize, f: F) -> Result<usize>
    where
        F: Fn(&WriteTransaction, usize) -> Result<usize> + Send + Sync + Clone + 'static,
    {
        let batch = batch.max(1);
        let mut total = 0;
        loop {
            let f = f.clone();
            let n = self.write(move |txn| f(txn, batch)).await?;
            total += n;
            if n < batch {
                return Ok(total);
            }
        }
    }

    /// A write transaction on the blocking pool.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write_blocking(f))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }
}

/// A store in a fresh temporary directory, for unit tests; the store
/// lives as long as the directory guard.
#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join(DB_FILE)).unwrap().store;
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_gets_current_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(DB_FILE);
        let opened = Store::open(&p).unwrap();
        assert!(opened.created);
        assert_eq!(opened.migrated_from, None);
        let v = opened.store.read_blocking(meta::schema_version).unwrap();
        assert_eq!(v, Some(migrate::CURRENT));
        drop(opened);
        let again = Store::open(&p).unwrap();
        assert!(!again.created);
    }

    #[test]
    fn newer_schema_is_refused_with_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(DB_FILE);
        let opened = Store::open(&p).unwrap();
        opened
            .store
            .write_blocking(|txn| meta::set_schema_version(txn, migrate::CURRENT + 1))
            .unwrap();
        drop(opened);
        let err = Store::open(&p).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::NewerSchema { .. }), "{msg}");
        assert!(msg.contains("newer version of sikker"), "{msg}");
    }

    #[test]
    fn failed_write_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let opened = Store::open(&dir.path().join(DB_FILE)).unwrap();
        let r: Result<()> = opened.store.write_blocking(|txn| {
            meta::set_schema_version(txn, 77)?;
            Err(Error::Corrupt("forced".into()))
        });
        assert!(r.is_err());
        let v = opened.store.read_blocking(meta::schema_version).unwrap();
        assert_eq!(v, Some(migrate::CURRENT));
    }
}
