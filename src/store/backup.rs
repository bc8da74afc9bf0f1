//! Backup files: a consistent snapshot of every table taken in one read
//! transaction (so the server keeps writing meanwhile), and restore into a
//! fresh database file that replaces the old one only once it is complete.
//!
//! Format (all integers little-endian): the magic `SIKKER-BACKUP\0`, format
//! version (u32), schema version (u32), creation time (i64 ms), the secret
//! key (u32 length + bytes), then per table a section `1`, name (u16 length +
//! bytes), entry count (u64) and entries (u32 length + key bytes, u32
//! length + value bytes), then `0` and the blake3 hash of everything before.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use redb::{
    ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::tables::{self, TableVisitor};
use super::{Error, Result, Store, meta, migrate};

const MAGIC: &[u8; 14] = b"SIKKER-BACKUP\0";
/// The layout version of the file itself (not the schema).
pub const FORMAT: u32 = 1;
const SECTION: u8 = 1;
const END: u8 = 0;
/// Longest key or value accepted from a file (redb's own limit is 3 GiB;
/// sikker's records are far smaller).
const MAX_ITEM: u32 = 64 << 20;

/// What a backup holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub format: u32,
    pub schema_version: u32,
    pub created_ms: i64,
    pub tables: Vec<(String, u64)>,
    pub entries: u64,
    pub bytes: u64,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Backup(msg.into())
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

struct HashWriter<W: Write> {
    inner: W,
    hash: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> HashWriter<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hash.update(b);
        self.bytes += b.len() as u64;
        self.inner.write_all(b)
    }
    fn put_blob(&mut self, b: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(b.len())
            .map_err(|_| std::io::Error::other("record longer than 4 GiB"))?;
        self.put(&len.to_le_bytes())?;
        self.put(b)
    }
}

struct Dump<'a, W: Write> {
    txn: &'a ReadTransaction,
    out: &'a mut HashWriter<W>,
    summary: &'a mut Summary,
}

impl<W: Write> TableVisitor for Dump<'_, W> {
    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        def: TableDefinition<K, V>,
    ) -> Result<()> {
        let table = self.txn.open_table(def)?;
        let count = table.len()?;
        let name = def.name().as_bytes();
        let failed = io("cannot write the backup");
        let write = |out: &mut HashWriter<W>| -> std::io::Result<()> {
            out.put(&[SECTION])?;
            out.put(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_le_bytes())?;
            out.put(name)?;
            out.put(&count.to_le_bytes())
        };
        write(self.out).map_err(failed)?;
        let mut seen = 0_u64;
        for item in table.iter()? {
            let (k, v) = item?;
            let kv = k.value();
            let vv = v.value();
            let kb = K::as_bytes(&kv);
            let vb = V::as_bytes(&vv);
            self.out
                .put_blob(kb.as_ref())
                .and_then(|()| self.out.put_blob(vb.as_ref()))
                .map_err(io("cannot write the backup"))?;
            seen += 1;
        }
        if seen != count {
            return Err(bad(format!(
                "table {} changed while it was read",
                def.name()
            )));
        }
        self.summary.tables.push((def.name().to_owned(), count));
        self.summary.entries += count;
        Ok(())
    }
}

/// Writes a backup of `store` (one read transaction: a consistent
/// snapshot) and `secret` to `path`, through a temporary file renamed into
/// place, so `path` is either the old file or a complete backup.
/// Blocking.
pub fn write(store: &Store, secret: &[u8], path: &Path, now_ms: i64) -> Result<Summary> {
    let tmp = tmp_path(path);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(format!("cannot create {}", tmp.display())))?;
    let result = (|| {
        let mut out = HashWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hash: blake3::Hasher::new(),
            bytes: 0,
        };
        let txn = store.db.begin_read().map_err(redb::Error::from)?;
        let schema = meta::schema_version(&txn)?.unwrap_or_default();
        let mut summary = Summary {
            format: FORMAT,
            schema_version: schema,
            created_ms: now_ms,
            ..Summary::default()
        };
        let w = || io("cannot write the backup");
        out.put(MAGIC).map_err(w())?;
        out.put(&FORMAT.to_le_bytes()).map_err(w())?;
        out.put(&schema.to_le_bytes()).map_err(w())?;
        out.put(&now_ms.to_le_bytes()).map_err(w())?;
        out.put_blob(secret).map_err(w())?;
        tables::visit_all(&mut Dump {
            txn: &txn,
            out: &mut out,
            summary: &mut summary,
        })?;
        out.put(&[END]).map_err(w())?;
        let hash = *out.hash.finalize().as_bytes();
        out.inner.write_all(&hash).map_err(w())?;
        summary.bytes = out.bytes + 32;
        let file = out
            .inner
            .into_inner()
            .map_err(|e| bad(format!("cannot write the backup: {}", e.error())))?;
        file.sync_all().map_err(w())?;
        Ok(summary)
    })();
    match result {
        Ok(s) => {
            std::fs::rename(&tmp, path).map_err(io(format!("cannot create {}", path.display())))?;
            Ok(s)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

use std::os::unix::fs::OpenOptionsExt;

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

struct HashReader<R: Read> {
    inner: R,
    hash: blake3::Hasher,
}

impl<R: Read> HashReader<R> {
    fn take(&mut self, buf: &mut [u8]) -> Result<()> {
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                bad("the backup file is truncated")
            } else {
                Error::Io {
                    what: "cannot read the backup".into(),
                    source: e,
                }
            }
        })?;
        self.hash.update(buf);
        Ok(())
    }
    fn u8(&mut self) -> Result<u8> {
        let mut b = [0; 1];
        self.take(&mut b)?;
        Ok(b[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let mut b = [0; 2];
        self.take(&mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn u32(&mut self) -> Result<u32> {
        let mut b = [0; 4];
        self.take(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut b = [0; 8];
        self.take(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn blob(&mut self, into: &mut Vec<u8>) -> Result<()> {
        let len = self.u32()?;
        if len > MAX_ITEM {
            return Err(bad("the backup file is damaged (a record is too long)"));
        }
        into.resize(len as usize, 0);
        self.take(into)
    }
}

struct Load<'a, R: Read> {
    txn: Option<&'a WriteTransaction>,
    input: &'a mut HashReader<R>,
    name: &'a str,
    count: u64,
    found: bool,
}

impl<R: Read> TableVisitor for Load<'_, R> {
    fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
        &mut self,
        def: TableDefinition<K, V>,
    ) -> Result<()> {
        if def.name() != self.name || self.found {
            return Ok(());
        }
        self.found = true;
        let mut table = self.txn.map(|t| t.open_table(def)).transpose()?;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for _ in 0..self.count {
            self.input.blob(&mut k)?;
            self.input.blob(&mut v)?;
            // Fixed-width types would panic on a wrong length.
            if K::fixed_width().is_some_and(|w| w != k.len())
                || V::fixed_width().is_some_and(|w| w != v.len())
            {
                return Err(bad(format!(
                    "the backup file is damaged (a record of table {} has the wrong size)",
                    self.name
                )));
            }
            if let Some(t) = table.as_mut() {
                t.insert(K::from_bytes(&k), V::from_bytes(&v))?;
            }
        }
        Ok(())
    }
}

/// Reads a whole backup; with `txn`, inserts every record into it. Any
/// damage (wrong magic, truncation, checksum) is an error.
fn read_into<R: Read>(input: R, txn: Option<&WriteTransaction>) -> Result<(Summary, Vec<u8>)> {
    let mut r = HashReader {
        inner: BufReader::with_capacity(1 << 20, input),
        hash: blake3::Hasher::new(),
    };
    let mut magic = [0_u8; 14];
    r.take(&mut magic)
        .map_err(|_| bad("this is not a sikker backup file (too short)"))?;
    if &magic != MAGIC {
        return Err(bad("this is not a sikker backup file (wrong signature)"));
    }
    let format = r.u32()?;
    if format != FORMAT {
        return Err(bad(format!(
            "backup format {format} is not supported by this sikker (it reads format {FORMAT})"
        )));
    }
    let schema = r.u32()?;
    if schema > migrate::CURRENT {
        return Err(bad(format!(
            "the backup has schema version {schema}, written by a newer sikker (this one supports up to {})",
            migrate::CURRENT
        )));
    }
    let created_ms = i64::try_from(r.u64()?).unwrap_or_default();
    let mut secret = Vec::new();
    r.blob(&mut secret)?;
    let mut summary = Summary {
        format,
        schema_version: schema,
        created_ms,
        ..Summary::default()
    };
    loop {
        match r.u8()? {
            END => break,
            SECTION => {}
            _ => return Err(bad("the backup file is damaged (unknown section)")),
        }
        let len = r.u16()?;
        let mut name = vec![0; usize::from(len)];
        r.take(&mut name)?;
        let name =
            String::from_utf8(name).map_err(|_| bad("the backup file is damaged (table name)"))?;
        let count = r.u64()?;
        let mut load = Load {
            txn,
            input: &mut r,
            name: &name,
            count,
            found: false,
        };
        tables::visit_all(&mut load)?;
        if !load.found {
            return Err(bad(format!(
                "the backup holds a table this sikker does not know: {name}"
            )));
        }
        summary.entries += count;
        summary.tables.push((name, count));
    }
    let expected = *r.hash.finalize().as_bytes();
    let mut got = [0_u8; 32];
    r.inner
        .read_exact(&mut got)
        .map_err(|_| bad("the backup file is truncated"))?;
    if got != expected {
        return Err(bad("the backup file is damaged (checksum mismatch)"));
    }
    if r.inner
        .read(&mut [0_u8; 1])
        .map_err(io("cannot read the backup"))?
        != 0
    {
        return Err(bad("the backup file has trailing data"));
    }
    Ok((summary, secret))
}

/// Checks a backup file completely without changing anything.
pub fn verify(path: &Path) -> Result<Summary> {
    let f = std::fs::File::open(path).map_err(io(format!("cannot open {}", path.display())))?;
    let bytes = f.metadata().map(|m| m.len()).unwrap_or_default();
    let (mut s, _) = read_into(f, None)?;
    s.bytes = bytes;
    Ok(s)
}

/// Restores `backup` as the database `db` (and its secret key to
/// `secret_path`). The records go into a new file beside `db`, which is
/// migrated to the current schema and then renamed over `db`; on any error
/// the old database and key are untouched. The caller holds the data dir
/// lock. Blocking.
pub fn restore(backup: &Path, db: &Path, secret_path: &Path) -> Result<Summary> {
    let f = std::fs::File::open(backup).map_err(io(format!("cannot open {}", backup.display())))?;
    let bytes = f.metadata().map(|m| m.len()).unwrap_or_default();
    let tmp = tmp_path(db);
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let fresh = redb::Database::create(&tmp).map_err(|e| Error::open(&tmp, e))?;
        let txn = fresh.begin_write().map_err(redb::Error::from)?;
        let (mut summary, secret) = read_into(f, Some(&txn))?;
        tables::create_all(&txn)?;
        txn.commit().map_err(redb::Error::from)?;
        drop(fresh);
        summary.bytes = bytes;
        // Older schemas are migrated by the ordinary open.
        drop(Store::open(&tmp)?);
        Ok((summary, secret))
    })();
    let (summary, secret) = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(io("cannot restrict the restored database"))?;
    if secret.len() == 32 {
        let ktmp = tmp_path(secret_path);
        let mut k = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&ktmp)
            .map_err(io("cannot write the secret key"))?;
        k.write_all(&secret)
            .and_then(|()| k.sync_all())
            .map_err(io("cannot write the secret key"))?;
        std::fs::rename(&ktmp, secret_path).map_err(io("cannot replace the secret key"))?;
    }
    // Batches logged for the database being replaced are not replayed into
    // the restored one.
    match std::fs::remove_file(super::ingest_log::path_beside(db)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("cannot remove the ingest log")(e));
        }
        _ => {}
    }
    std::fs::rename(&tmp, db).map_err(io(format!("cannot replace {}", db.display())))?;
    Ok(summary)
}

/// Every table's name with its records as raw (key, value) bytes.
pub type Dumped = Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>;

/// Every record of every table, as raw bytes, for comparing logical content.
pub fn logical_dump(store: &Store) -> Result<Dumped> {
    struct Collect<'a> {
        txn: &'a ReadTransaction,
        out: Dumped,
    }
    impl TableVisitor for Collect<'_> {
        fn visit<K: redb::Key + 'static, V: redb::Value + 'static>(
            &mut self,
            def: TableDefinition<K, V>,
        ) -> Result<()> {
            let t = self.txn.open_table(def)?;
            let mut rows = Vec::new();
            for item in t.iter()? {
                let (k, v) = item?;
                let (kv, vv) = (k.value(), v.value());
                rows.push((
                    K::as_bytes(&kv).as_ref().to_vec(),
                    V::as_bytes(&vv).as_ref().to_vec(),
                ));
            }
            self.out.push((def.name().to_owned(), rows));
            Ok(())
        }
    }
    let txn = store.db.begin_read().map_err(redb::Error::from)?;
    let mut c = Collect {
        txn: &txn,
        out: Vec::new(),
    };
    tables::visit_all(&mut c)?;
    Ok(c.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DB_FILE;

    fn sample() -> (tempfile::TempDir, Store) {
        let (dir, store) = crate::store::temp_store();
        store
            .write_blocking(|txn| {
                super::super::whitelist::put(
                    txn,
                    (42, 120),
                    &super::super::whitelist::Entry {
                        net: "192.0.2.0/24".into(),
                        reason: "test".into(),
                        added_ms: 5,
                    },
                )
            })
            .unwrap();
        (dir, store)
    }

    #[test]
    fn round_trip_truncation_and_foreign_files() {
        let (dir, store) = sample();
        let file = dir.path().join("b.sikker");
        let s = write(&store, &[7; 32], &file, 1).unwrap();
        assert_eq!(s.schema_version, migrate::CURRENT);
        assert_eq!(verify(&file).unwrap().entries, s.entries);
        let before = logical_dump(&store).unwrap();

        let other = tempfile::tempdir().unwrap();
        let db = other.path().join(DB_FILE);
        let key = other.path().join("secret.key");
        restore(&file, &db, &key).unwrap();
        let restored = Store::open(&db).unwrap().store;
        assert_eq!(logical_dump(&restored).unwrap(), before);
        assert_eq!(std::fs::read(&key).unwrap(), vec![7; 32]);
        drop(restored);

        let bytes = std::fs::read(&file).unwrap();
        for cut in [10, 40, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&file, &bytes[..cut]).unwrap();
            let e = restore(&file, &db, &key).unwrap_err().to_string();
            assert!(
                e.contains("truncated") || e.contains("not a sikker"),
                "{cut}: {e}"
            );
        }
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 1;
        std::fs::write(&file, &flipped).unwrap();
        assert!(verify(&file).is_err());
        std::fs::write(&file, b"PK\x03\x04 a zip file, not a backup at all").unwrap();
        assert!(
            verify(&file)
                .unwrap_err()
                .to_string()
                .contains("not a sikker backup")
        );
        // Nothing changed by the failed restores.
        let again = Store::open(&db).unwrap().store;
        assert_eq!(logical_dump(&again).unwrap(), before);
    }
}
