//! The de-duplication state of long sessions, kept in memory between
//! ingest transactions (`sensors::Dedup`).
//!
//! A transaction reads a session's rows of a day once and sorts their
//! fingerprints; for a session of many rows, doing that for every batch
//! costs the square of the session's length over its day. A session of
//! more than one row is therefore kept here after its transaction, and
//! the next transaction takes it back once it has checked that the
//! session's last row in the table is still the one kept. Rows of a
//! session only grow at the end (`Dedup::finish` fills the last row, then
//! adds rows), so an equal last row means equal rows: a state kept by a
//! transaction that then failed, or rows written since by anything else,
//! fail the check and the rows are read again.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Fingerprints kept at most over all sessions (8 bytes each: 32 MiB).
/// A transaction holds all of a session's fingerprints while it runs
/// anyway; keeping them makes that memory last, not larger. A session
/// beyond it is read whole for every batch, as any is when not kept.
pub const MAX_FINGERPRINTS: usize = 1 << 22;

/// Days kept: the newest a session was kept for and the two before it.
const WINDOW: i64 = 3;

/// `Kept::recent` is merged into `Kept::stored` once it holds this
/// fraction of it: each fingerprint is then copied a bounded number of
/// times however long the session grows.
const MERGE_FRACTION: usize = 8;

/// A session's day as its transaction left it: its fingerprints are
/// `stored` and `recent` together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Sorted.
    pub stored: Vec<u64>,
    /// Added since `stored` was last merged.
    pub recent: HashSet<u64>,
    /// Its last row: chunk number and fingerprints.
    pub last: (u32, Vec<u64>),
}

impl Kept {
    /// The state after a transaction added `added` (sorted), its last row
    /// now `last`.
    pub fn grown(
        stored: Vec<u64>,
        mut recent: HashSet<u64>,
        added: &[u64],
        last: (u32, Vec<u64>),
    ) -> Self {
        recent.extend(added);
        if recent.len() * MERGE_FRACTION <= stored.len() {
            return Self {
                stored,
                recent,
                last,
            };
        }
        let mut fresh: Vec<u64> = recent.into_iter().collect();
        fresh.sort_unstable();
        Self {
            stored: merged(&stored, &fresh),
            recent: HashSet::new(),
            last,
        }
    }

    fn len(&self) -> usize {
        self.stored.len() + self.recent.len()
    }
}

/// The union of two sorted, disjoint fingerprint lists, sorted.
fn merged(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<(i64, u64, u64), Kept>,
    fingerprints: usize,
    newest: i64,
}

/// Long sessions' states, shared by a store's handles.
pub struct LongSessions {
    inner: Mutex<Inner>,
    /// Whether any session is kept: most ingests have none, and ask
    /// without taking the lock.
    any: AtomicBool,
    max: usize,
}

impl Default for LongSessions {
    fn default() -> Self {
        Self::with_max_fingerprints(MAX_FINGERPRINTS)
    }
}

impl LongSessions {
    /// Keeping at most `max` fingerprints.
    pub fn with_max_fingerprints(max: usize) -> Self {
        Self {
            inner: Mutex::default(),
            any: AtomicBool::new(false),
            max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the state kept for (day, sensor, session), if any; the
    /// caller checks it against the table.
    pub fn take(&self, key: (i64, u64, u64)) -> Option<Kept> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut g = self.lock();
        let kept = g.sessions.remove(&key)?;
        g.fingerprints -= kept.len();
        self.any.store(!g.sessions.is_empty(), Ordering::Release);
        Some(kept)
    }

    /// Keeps a session's state, making room by dropping others (older
    /// days first); one too large to be kept is not.
    pub fn keep(&self, key: (i64, u64, u64), kept: Kept) {
        let n = kept.len();
        if n > self.max {
            return;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        if key.0 > inner.newest || inner.sessions.is_empty() {
            inner.newest = key.0;
        }
        let (newest, max) = (inner.newest, self.max);
        if key.0 <= newest - WINDOW {
            return;
        }
        let mut dropped = 0;
        inner.sessions.retain(|k, s| {
            let keep = k.0 > newest - WINDOW;
            if !keep {
                dropped += s.len();
            }
            keep
        });
        inner.fingerprints -= dropped;
        while inner.fingerprints + n > max {
            let Some(victim) = inner.sessions.keys().min_by_key(|k| k.0).copied() else {
                break;
            };
            if let Some(s) = inner.sessions.remove(&victim) {
                inner.fingerprints -= s.len();
            }
        }
        if let Some(old) = inner.sessions.insert(key, kept) {
            inner.fingerprints -= old.len();
        }
        inner.fingerprints += n;
        self.any.store(true, Ordering::Release);
    }

    /// Sessions and fingerprints kept, for tests.
    #[cfg(test)]
    pub fn held(&self) -> (usize, usize) {
        let g = self.lock();
        (g.sessions.len(), g.fingerprints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_lists_stay_sorted() {
        assert_eq!(merged(&[1, 4, 9], &[2, 3, 10, 11]), [1, 2, 3, 4, 9, 10, 11]);
        assert_eq!(merged(&[], &[5]), [5]);
        assert_eq!(merged(&[5], &[]), [5]);
    }

    #[test]
    fn recent_fingerprints_merge_once_they_are_an_eighth() {
        let stored: Vec<u64> = (0..80).map(|n| n * 10).collect();
        let k = Kept::grown(stored.clone(), HashSet::new(), &[5, 15], (1, vec![]));
        assert_eq!((k.stored.len(), k.recent.len()), (80, 2));
        let k = Kept::grown(
            k.stored,
            k.recent,
            &[21, 22, 23, 24, 25, 26, 27, 28],
            (1, vec![]),
        );
        assert_eq!(k.recent.len(), 10, "10 of 80: an eighth");
        let k = Kept::grown(k.stored, k.recent, &[29], (1, vec![]));
        assert_eq!(k.recent.len(), 0, "11 of 80: merged");
        let mut all: Vec<u64> = stored.into_iter().chain([5, 15]).chain(21..30).collect();
        all.sort_unstable();
        assert_eq!(k.stored, all);
        assert_eq!(k.len(), 91);
    }
}
