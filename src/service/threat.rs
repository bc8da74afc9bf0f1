//! The live threat state: the in-memory index and whitelist, kept equal to
//! the store by one rule — a write commits to redb first and is published
//! to memory while still holding the ingest lock, so memory never runs
//! ahead of disk and concurrent writers publish in commit order.

use std::sync::{Arc, Mutex, RwLock};

use redb::WriteTransaction;

use super::task_thread::TaskThread;
use super::{Error, Result, Services};
use crate::domain::prefix::{Prefix, PrefixLen};
use crate::domain::{Indicator, IpKey, UnixMillis};
use crate::index::ranges::CidrSet;
use crate::index::{IndexBuilder, IpIndex, Summary};
use crate::store::{self, Store};

/// How long evidence is kept (defaults are the privacy policy's numbers).
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Raw reports are deleted this long after they were made.
    pub reports_ms: i64,
    /// An indicator with no new evidence for this long is purged.
    pub indicators_ms: i64,
    /// The repeat-offender history of an IP is purged this long after its
    /// last indicator expired.
    pub repeat_history_ms: i64,
}

impl Default for Retention {
    fn default() -> Self {
        let days30 = 30 * crate::domain::time::MILLIS_PER_DAY;
        Self {
            reports_ms: days30,
            indicators_ms: days30,
            repeat_history_ms: days30,
        }
    }
}

impl Retention {
    /// Whole days a repeat-offender history is kept after the expiry day.
    pub fn repeat_keep_days(&self) -> i64 {
        let day = crate::domain::time::MILLIS_PER_DAY;
        self.repeat_history_ms.max(0).saturating_add(day - 1) / day
    }
}

/// The indicator of `ip` as an ingest finds it (`old`, as stored): the live one, or `None`
/// (then a fresh one is started), and the expiry day it is filed under.
/// An expired one the sweep has not removed yet counts as an expiry in the
/// repeat-offender history, exactly as if the sweep had seen it first.
pub(crate) fn indicator_for_update(
    txn: &WriteTransaction,
    ip: IpKey,
    old: Option<Indicator>,
    now: UnixMillis,
    retention: Retention,
) -> store::Result<(Option<Indicator>, Option<i64>)> {
    let old_day = old
        .as_ref()
        .map(|i| super::reports::expiry_day(i, retention.indicators_ms));
    let fresh = old.filter(|i| now.0 < i.last_seen.0.saturating_add(retention.indicators_ms));
    if let (None, Some(day)) = (&fresh, old_day) {
        store::repeat::note_expiry(txn, ip, day, retention.repeat_keep_days())?;
    }
    Ok((fresh, old_day))
}

/// The index summary of `ind` with its repeat-offender history, inside a write.
pub(crate) fn summary_in_write(
    txn: &WriteTransaction,
    ind: &Indicator,
    retention_ms: i64,
) -> store::Result<Summary> {
    let expiries = store::repeat::expiries_in_write(txn, ind.ip)?;
    Ok(Summary::of(ind, retention_ms, expiries))
}

#[derive(Debug)]
pub struct ThreatState {
    pub(crate) index: RwLock<IpIndex>,
    pub(crate) whitelist: RwLock<CidrSet<String>>,
    /// IPs with a granted listing correction (P27), kept out of public answers.
    pub(crate) corrected: RwLock<std::collections::HashSet<IpKey>>,
    pub(crate) ingest: Mutex<()>,
    /// The thread evidence is written on.
    pub(crate) writer: TaskThread,
    /// The thread sensor batches are parsed, validated and hashed on.
    pub(crate) batches: TaskThread,
}

impl Default for ThreatState {
    fn default() -> Self {
        Self {
            index: RwLock::default(),
            whitelist: RwLock::default(),
            corrected: RwLock::default(),
            ingest: Mutex::default(),
            writer: TaskThread::new(WRITER_THREAD),
            batches: TaskThread::new(BATCH_THREAD),
        }
    }
}

/// The names of the task threads (as `top -H` shows them).
const WRITER_THREAD: &str = "sikker-writer";
const BATCH_THREAD: &str = "sikker-batches";

/// A change to publish to memory after a commit.
pub enum Publish {
    Upsert(IpKey, Summary),
    Remove(IpKey),
}

fn poisoned() -> Error {
    Error::Internal {
        detail: "lock poisoned".into(),
    }
}

impl ThreatState {
    /// Builds the index from every stored indicator (start-up), grouping
    /// IPv6 evidence by `/prefix`.
    pub fn load(store: &Store, retention: Retention, prefix: PrefixLen) -> Result<Self> {
        let index = store.read_blocking(|txn| {
            let expiries = store::repeat::all_expiries(txn)?;
            let mut index = IndexBuilder::default();
            store::indicators::for_each(txn, |ind| {
                let n = expiries.get(&ind.ip.0).copied().unwrap_or(0);
                index.push(ind.ip, Summary::of(&ind, retention.indicators_ms, n));
            })?;
            Ok(index.finish(prefix))
        })?;
        let entries = store.read_blocking(store::whitelist::all)?;
        let sets = store.read_blocking(store::allowlists::all)?;
        let whitelist = whitelist_set(&entries, &sets);
        let corrected = store
            .read_blocking(store::privacy::corrected_ips)?
            .into_iter()
            .map(IpKey)
            .collect();
        Ok(Self {
            index: RwLock::new(index),
            whitelist: RwLock::new(whitelist),
            corrected: RwLock::new(corrected),
            ..Self::default()
        })
    }

    pub fn with_index<T>(&self, f: impl FnOnce(&IpIndex) -> T) -> Result<T> {
        Ok(f(&*self.index.read().map_err(|_| poisoned())?))
    }

    pub fn is_whitelisted(&self, ip: IpKey) -> bool {
        self.whitelist.read().is_ok_and(|w| w.contains(ip))
    }

    /// Whether a granted listing correction covers `ip` (P27).
    pub fn is_corrected(&self, ip: IpKey) -> bool {
        self.corrected.read().is_ok_and(|c| c.contains(&ip))
    }

    /// Runs `f` with a test of "kept out of a block list" (corrected, or
    /// allowlisted unless `ignore_whitelist`), the locks taken once for a
    /// scan over many addresses.
    pub fn hidden_scan<T>(
        &self,
        ignore_whitelist: bool,
        f: impl FnOnce(&(dyn Fn(IpKey) -> bool + Sync)) -> T,
    ) -> Result<T> {
        self.flag_scan(|flags| {
            f(&|ip| {
                let (corrected, whitelisted) = flags(ip);
                corrected || (!ignore_whitelist && whitelisted)
            })
        })
    }

    /// Runs `f` with a lookup of `(corrected, allowlisted)` per address,
    /// the locks taken once for a scan over many addresses.
    pub fn flag_scan<T>(
        &self,
        f: impl FnOnce(&(dyn Fn(IpKey) -> (bool, bool) + Sync)) -> T,
    ) -> Result<T> {
        let whitelist = self.whitelist.read().map_err(|_| poisoned())?;
        let corrected = self.corrected.read().map_err(|_| poisoned())?;
        Ok(f(&|ip| (corrected.contains(&ip), whitelist.contains(ip))))
    }

    /// Whether `ip` is kept out of public answers: whitelisted or corrected.
    pub fn is_publicly_hidden(&self, ip: IpKey) -> bool {
        self.is_corrected(ip) || self.is_whitelisted(ip)
    }

    /// Whether `ip` is left out of a served prefix aggregate: corrected,
    /// or allowlisted unless `ignore_whitelist`.
    pub fn is_hidden_member(&self, ip: IpKey, ignore_whitelist: bool) -> bool {
        self.is_corrected(ip) || (!ignore_whitelist && self.is_whitelisted(ip))
    }

    /// Whether any address of `p` may be a hidden member (see
    /// `is_hidden_member`), so its aggregate must be folded member by member.
    pub fn prefix_touches_hidden(&self, p: Prefix, ignore_whitelist: bool) -> bool {
        let (lo, hi) = p.bounds();
        let corrected = self
            .corrected
            .read()
            .map_or(true, |c| c.iter().any(|ip| p.contains(*ip)));
        corrected
            || (!ignore_whitelist && self.whitelist.read().map_or(true, |w| w.overlaps(lo, hi)))
    }

    pub fn set_corrected(&self, ip: IpKey, on: bool) -> Result<()> {
        let mut c = self.corrected.write().map_err(|_| poisoned())?;
        if on {
            c.insert(ip);
        } else {
            c.remove(&ip);
        }
        Ok(())
    }

    /// The innermost allowlist reason covering `ip` (see `Services::never_block`).
    pub fn never_block(&self, ip: IpKey) -> Option<String> {
        self.whitelist
            .read()
            .ok()
            .and_then(|w| w.containing(ip).first().map(|r| (*r).clone()))
    }

    /// The reasons of every whitelist entry covering `ip`, innermost first.
    pub fn whitelist_reasons(&self, ip: IpKey) -> Vec<String> {
        self.whitelist
            .read()
            .map(|w| w.containing(ip).into_iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn set_whitelist(&self, set: CidrSet<String>) -> Result<()> {
        *self.whitelist.write().map_err(|_| poisoned())? = set;
        Ok(())
    }
}

impl Services {
    /// Runs `f` in one write transaction under the ingest lock, then
    /// publishes its changes to the index, on the writer thread
    /// ([`super::task_thread`]).
    pub(crate) async fn ingest<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> store::Result<(T, Vec<Publish>)> + Send + 'static,
    {
        let store = self.store.clone();
        let threat = self.threat.clone();
        self.threat
            .writer
            .run(move || ingest_blocking(&store, &threat, f))
            .await?
    }

    /// The full indicator of `ip`, if live at `now`.
    pub(crate) fn indicator(&self, ip: IpKey, now: UnixMillis) -> Result<Option<Indicator>> {
        Ok(self.live_indicator(ip, now)?.map(|(ind, _)| ind))
    }

    /// The full indicator of `ip`, if live at `now`, with the earlier
    /// expiries of its IP (repeat-offender history) from the same index
    /// lookup. The in-memory index is asked first, so an address without
    /// live evidence costs no read. The point read runs on the calling
    /// task: it touches the few pages of one B-tree path, from redb's
    /// cache or the OS page cache, which is cheaper than handing it to the
    /// blocking pool and back (that hand-off was about 40 % of a check's
    /// CPU; docs/performance.md).
    pub(crate) fn live_indicator(
        &self,
        ip: IpKey,
        now: UnixMillis,
    ) -> Result<Option<(Indicator, u32)>> {
        let Some(expiries) = self
            .threat
            .with_index(|idx| idx.get(ip, now).map(|s| s.expiries))?
        else {
            return Ok(None);
        };
        let retention = self.retention.indicators_ms;
        let ind = store::indicators::get_in(&*self.store.indicator_table()?, ip)?;
        Ok(ind
            .filter(|i| now.0 < i.last_seen.0.saturating_add(retention))
            .map(|i| (i, expiries)))
    }
}

/// What `Services::verify_index` compared.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexCheck {
    /// Indicators in the database.
    pub stored: u64,
    /// Entries in the in-memory index.
    pub indexed: u64,
    /// IPs whose summary differs, or that are on one side only (at most
    /// `MAX_REPORTED_MISMATCHES`; operator output only, never logged).
    pub mismatches: Vec<String>,
    pub mismatch_count: u64,
}

const MAX_REPORTED_MISMATCHES: usize = 20;

impl Services {
    /// Compares the in-memory index with every indicator in the database,
    /// under the ingest lock so no write is half-published. Any difference
    /// is a bug (memory must equal disk after every commit); it is reported
    /// as `Error::Internal`.
    pub async fn verify_index(&self) -> Result<IndexCheck> {
        let store = self.store.clone();
        let threat = self.threat.clone();
        let retention = self.retention.indicators_ms;
        let check = tokio::task::spawn_blocking(move || -> Result<IndexCheck> {
            let _guard = threat.ingest.lock().map_err(|_| poisoned())?;
            let mut stored = std::collections::BTreeMap::new();
            store.read_blocking(|txn| {
                let expiries = store::repeat::all_expiries(txn)?;
                store::indicators::for_each(txn, |ind| {
                    let n = expiries.get(&ind.ip.0).copied().unwrap_or(0);
                    stored.insert(ind.ip.0, Summary::of(&ind, retention, n));
                })
            })?;
            let idx = threat.index.read().map_err(|_| poisoned())?;
            let mut check = IndexCheck {
                stored: stored.len() as u64,
                indexed: idx.len() as u64,
                ..IndexCheck::default()
            };
            let mut note = |ip: u128| {
                check.mismatch_count += 1;
                if check.mismatches.len() < MAX_REPORTED_MISMATCHES {
                    check.mismatches.push(IpKey(ip).to_string());
                }
            };
            for (ip, s) in idx.all() {
                if stored.get(&ip.0) != Some(s) {
                    note(ip.0);
                }
            }
            for ip in stored.keys() {
                if idx.get_any(IpKey(*ip)).is_none() {
                    note(*ip);
                }
            }
            Ok(check)
        })
        .await
        .map_err(|e| Error::Internal {
            detail: e.to_string(),
        })??;
        if check.mismatch_count > 0 {
            tracing::error!(
                stored = check.stored,
                indexed = check.indexed,
                mismatches = check.mismatch_count,
                "the in-memory index differs from the database"
            );
        }
        Ok(check)
    }
}

/// The one allowlist: single entries (with their reason) and every named
/// set (reason `set NAME (source)`), as one CIDR set.
pub fn whitelist_set(
    entries: &[store::whitelist::Entry],
    sets: &[store::allowlists::NamedSet],
) -> CidrSet<String> {
    let singles = entries
        .iter()
        .filter_map(|e| e.net.parse().ok().map(|n| (n, e.reason.clone())));
    let named = sets.iter().flat_map(|s| {
        let reason = format!("set {} ({})", s.name, s.source);
        s.nets
            .iter()
            .filter_map(move |n| n.parse().ok().map(|n| (n, reason.clone())))
    });
    CidrSet::new(singles.chain(named))
}

pub(crate) fn ingest_blocking<T, F>(store: &Store, threat: &Arc<ThreatState>, f: F) -> Result<T>
where
    F: FnOnce(&WriteTransaction) -> store::Result<(T, Vec<Publish>)>,
{
    let _guard = threat.ingest.lock().map_err(|_| poisoned())?;
    let (out, changes) = store.write_blocking(f)?;
    publish(threat, changes)?;
    Ok(out)
}

/// Publishes committed changes to the in-memory index (the caller holds
/// the ingest lock, so writers publish in commit order).
pub(crate) fn publish(threat: &ThreatState, changes: Vec<Publish>) -> Result<()> {
    let mut idx = threat.index.write().map_err(|_| poisoned())?;
    for c in changes {
        match c {
            Publish::Upsert(ip, s) => idx.upsert(ip, s),
            Publish::Remove(ip) => {
                idx.remove(ip);
            }
        }
    }
    idx.settle_dirty();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or_default().to_owned()
    }

    // Each kind of work keeps to its own thread, under the name operators
    // see in `top -H`.
    #[tokio::test]
    async fn evidence_writes_and_sensor_batches_run_on_threads_of_their_own() {
        let t = ThreatState::default();
        let (w, b) = tokio::join!(t.writer.run(thread_name), t.batches.run(thread_name));
        assert_eq!(w.unwrap(), "sikker-writer");
        assert_eq!(b.unwrap(), "sikker-batches");
    }
}
