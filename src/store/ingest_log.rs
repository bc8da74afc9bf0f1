//! The ingest log (`ingest.log` beside the database): sensor batches
//! written ahead of their non-durable commit, so that a batch is durable
//! once its record is synced, while the database's own fsync is paid at
//! checkpoints, off the answer's path (`service::group_commit`).
//!
//! A record is `[length u32 LE][first 8 bytes of its BLAKE3 hash][bytes]`.
//! Reading stops at the first record that is cut short or does not match
//! its hash: the end of what was synced. After a checkpoint (a durable
//! commit of everything the log holds) the file is emptied and written
//! again from its start; stale records a crash may leave after the new
//! ones fail their hash, or are replayed without effect (sensor events are
//! de-duplicated).
//!
//! Positions are logical: bytes appended since the log was opened, never
//! reset, so a sync and a checkpoint can be ordered.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// The log's file name inside the data dir.
pub const LOG_FILE: &str = "ingest.log";

/// The longest record read back (a 16 MiB batch and its framing).
const MAX_RECORD: usize = 64 << 20;
const HEAD: usize = 12;

/// The ingest log of one data dir.
#[derive(Debug)]
pub struct IngestLog {
    path: PathBuf,
    file: Mutex<Tail>,
    /// The same file, synced without holding the tail's lock.
    sync_handle: File,
    /// Everything before this logical position is durable.
    synced: AtomicU64,
}

#[derive(Debug)]
struct Tail {
    file: File,
    /// Logical position of the file's first byte.
    base: u64,
    /// Logical position of the end.
    end: u64,
}

/// The path of the log beside the database file `db`.
pub fn path_beside(db: &Path) -> PathBuf {
    db.with_file_name(LOG_FILE)
}

/// `bytes` framed as one record.
pub fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD + bytes.len());
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&blake3::hash(bytes).as_bytes()[..8]);
    out.extend_from_slice(bytes);
    out
}

/// The records at the start of `data`, up to the first one that is cut
/// short or corrupt.
pub fn records(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(head) = data.get(at..at + HEAD) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let Some(body) = data.get(at + HEAD..at + HEAD + len) else {
            break;
        };
        if len > MAX_RECORD || blake3::hash(body).as_bytes()[..8] != head[4..HEAD] {
            break;
        }
        out.push(body);
        at += HEAD + len;
    }
    out
}

impl IngestLog {
    /// Opens (or creates) the log and returns what it holds, to be
    /// replayed before anything is appended.
    pub fn open(path: &Path) -> std::io::Result<(Self, Vec<u8>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let mut held = Vec::new();
        file.read_to_end(&mut held)?;
        file.seek(SeekFrom::Start(0))?;
        let log = Self {
            path: path.to_path_buf(),
            sync_handle: file.try_clone()?,
            file: Mutex::new(Tail {
                file,
                base: 0,
                end: 0,
            }),
            synced: AtomicU64::new(0),
        };
        Ok((log, held))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends framed records (not synced); returns the logical end after them.
    pub fn append<B: AsRef<[u8]>>(&self, framed: &[B]) -> std::io::Result<u64> {
        let mut t = self.tail();
        let at = t.end - t.base;
        t.file.seek(SeekFrom::Start(at))?;
        let mut len = 0;
        for b in framed {
            if let Err(e) = t.file.write_all(b.as_ref()) {
                // What was half written is cut off again (it would fail
                // its hash anyway) so the next record starts where these
                // did.
                let _ = t.file.set_len(at);
                return Err(e);
            }
            len += b.as_ref().len() as u64;
        }
        t.end += len;
        Ok(t.end)
    }

    /// The logical end of what has been appended.
    pub fn end(&self) -> u64 {
        self.tail().end
    }

    /// Everything before this logical position is durable.
    pub fn synced(&self) -> u64 {
        self.synced.load(Ordering::SeqCst)
    }

    /// Makes everything appended so far durable; returns the position
    /// it reached.
    pub fn sync(&self) -> std::io::Result<u64> {
        let end = self.end();
        if self.synced() >= end {
            return Ok(end);
        }
        self.sync_handle.sync_data()?;
        self.synced.fetch_max(end, Ordering::SeqCst);
        Ok(end)
    }

    /// Empties the log once a durable commit holds everything appended
    /// (the caller's checkpoint): all of it counts as synced.
    pub fn checkpointed(&self) -> std::io::Result<()> {
        let mut t = self.tail();
        t.base = t.end;
        self.synced.fetch_max(t.end, Ordering::SeqCst);
        t.file.set_len(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_until_the_first_torn_or_corrupt_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let (log, held) = IngestLog::open(&path).unwrap();
        assert!(held.is_empty());
        let (a, b) = (frame(b"first"), frame(&[7u8; 1000]));
        let end = log.append(&[&a, &b]).unwrap();
        assert_eq!(end, (a.len() + b.len()) as u64);
        assert_eq!(log.synced(), 0);
        assert_eq!(log.sync().unwrap(), end);
        assert_eq!(log.synced(), end);
        drop(log);

        let (_, held) = IngestLog::open(&path).unwrap();
        assert_eq!(records(&held), vec![&b"first"[..], &[7u8; 1000][..]]);
        // Cut short: the whole records before the cut.
        assert_eq!(records(&held[..held.len() - 1]).len(), 1);
        assert_eq!(records(&held[..a.len() + 5]).len(), 1);
        // A flipped byte ends the log there.
        let mut bad = held.clone();
        bad[a.len() + HEAD + 10] ^= 1;
        assert_eq!(records(&bad), vec![&b"first"[..]]);
        let mut bad = held;
        bad[3] = 0x7f;
        assert!(records(&bad).is_empty(), "a length past the end");
    }

    #[test]
    fn a_checkpoint_empties_the_file_and_positions_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let (log, _) = IngestLog::open(&path).unwrap();
        let old = frame(&[1u8; 500]);
        let first = log.append(&[&old]).unwrap();
        log.checkpointed().unwrap();
        assert_eq!(log.synced(), first, "all of it is in the database now");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let new = frame(b"after");
        let end = log.append(&[&new]).unwrap();
        assert_eq!(end, first + new.len() as u64);
        log.sync().unwrap();
        let (_, held) = IngestLog::open(&path).unwrap();
        assert_eq!(records(&held), vec![&b"after"[..]]);
    }
}
