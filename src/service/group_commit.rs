//! Group commit: batches that arrive while a write transaction is being
//! committed wait, and are then written together in the next one.
//!
//! Durability contract: a batch is acknowledged only once it is durable,
//! and its changes are published to the in-memory index before the answer,
//! exactly as a batch written alone. What changes is how many batches
//! share one commit: one transaction copies each B-tree page it touches
//! once, however many of the group's rows land on it.
//!
//! Without a log, each group's commit is durable (redb's fsync included).
//! With the ingest log (`store::ingest_log`, sensor batches), each batch's
//! record is appended before its group's transaction and synced on a
//! thread of its own while the transaction runs; the transaction waits for
//! that sync, then is committed without fsync, published and answered. So
//! nothing is seen or answered before it is durable, and the writer no
//! longer waits for the database's fsync on every group. The database file
//! is synced in the background meanwhile, and a
//! durable commit (a checkpoint: then the log is emptied) follows at most
//! `CHECKPOINT_EVERY` or `CHECKPOINT_BYTES` of log later, at once for a
//! group adding `CHECKPOINT_NEW_ADDRESSES`, and from a job once batches
//! stop coming (`jobs::checkpoint_ingest`). After a crash the
//! log is replayed at start-up (`Services::open`); a record already in the
//! database changes nothing there (sensor events are de-duplicated).
//!
//! A failing batch never takes the others down: when the group's
//! transaction fails, each batch is retried alone, and only the failing
//! one gets the error.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::WriteTransaction;
use tokio::sync::oneshot;

use super::task_thread::TaskThread;
use super::threat::{Publish, ThreatState, publish};
use super::{Error, Result};
use crate::store::ingest_log::IngestLog;
use crate::store::{self, Store};

/// A durable commit at least this often while batches are logged.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// … and once the log holds this much (bounds its replay after a crash).
pub const CHECKPOINT_BYTES: u64 = 8 << 20;
/// … and for a group that adds this many addresses. A page a non-durable
/// commit frees is reused only after the next durable one, and new
/// addresses are inserted all over the database's tables: groups of them
/// committed without fsync (a scan from fresh addresses) left the bench's
/// file twice as large (2.6 GB against 1.3 GB for 1M indicators).
pub const CHECKPOINT_NEW_ADDRESSES: usize = 1_000;

/// One batch's write: runs inside the group's transaction (and again alone
/// if the group fails, hence `Fn`).
pub type Job<T> = Box<dyn Fn(&WriteTransaction) -> store::Result<(T, Vec<Publish>)> + Send>;

struct Pending<T> {
    job: Job<T>,
    /// The batch's framed log record, when it is logged.
    record: Option<Vec<u8>>,
    done: oneshot::Sender<Result<T>>,
}

/// The queue of batches waiting for the next commit.
pub struct GroupCommit<T> {
    queue: Mutex<Vec<Pending<T>>>,
    log: Option<LogSide>,
}

/// The ingest log and the threads that sync it and the database file.
struct LogSide {
    log: Arc<IngestLog>,
    /// Syncs the log while the writer runs the group's transaction.
    syncer: TaskThread,
    /// Syncs the database file, so that a checkpoint's fsync finds little
    /// left to write.
    flusher: TaskThread,
    db_file: Arc<File>,
    flush_queued: Arc<AtomicBool>,
    /// When the last checkpoint was made, and the log's end then.
    checkpoint: Mutex<(Instant, u64)>,
}

impl<T> std::fmt::Debug for GroupCommit<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl<T> Default for GroupCommit<T> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Vec::new()),
            log: None,
        }
    }
}

impl<T> GroupCommit<T> {
    /// Whether the log holds batches and the last checkpoint is at least
    /// `older_than` old.
    pub fn checkpoint_due(&self, older_than: Duration) -> bool {
        self.log.as_ref().is_some_and(|side| {
            let (at, from) = side.since();
            side.log.end() > from && at.elapsed() >= older_than
        })
    }

    /// A durable commit of everything committed so far, then the log is
    /// emptied, when `checkpoint_due(older_than)` (at shutdown, any age:
    /// the next start replays nothing). Runs on the writer thread, after
    /// the drains queued before it.
    pub fn checkpoint(&self, store: &Store, older_than: Duration) -> Result<()> {
        if let Some(side) = &self.log
            && self.checkpoint_due(older_than)
        {
            store.write_blocking(|_| Ok(()))?;
            side.checkpointed();
        }
        Ok(())
    }

    /// Whether batches given a record are logged.
    pub fn is_logged(&self) -> bool {
        self.log.is_some()
    }

    /// Group commit through `log` (emptied by the caller's replay) for
    /// the database file `db`.
    pub fn with_log(log: Arc<IngestLog>, db: &std::path::Path) -> Result<Self> {
        let db_file = File::open(db).map_err(|e| Error::Internal {
            detail: format!("cannot open {}: {e}", db.display()),
        })?;
        let checkpoint = Mutex::new((Instant::now(), log.end()));
        Ok(Self {
            queue: Mutex::new(Vec::new()),
            log: Some(LogSide {
                log,
                syncer: TaskThread::new("sikker-logsync"),
                flusher: TaskThread::new("sikker-flusher"),
                db_file: Arc::new(db_file),
                flush_queued: Arc::default(),
                checkpoint,
            }),
        })
    }
}

fn internal(detail: &str) -> Error {
    Error::Internal {
        detail: detail.into(),
    }
}

impl<T: Send + 'static> GroupCommit<T> {
    /// Queues `job` and resolves once it is durable and published (or has
    /// failed). Whoever holds the ingest lock next writes every queued job.
    pub async fn submit(
        self: &Arc<Self>,
        store: &Store,
        threat: &Arc<ThreatState>,
        job: Job<T>,
    ) -> Result<T> {
        self.submit_logged(store, threat, job, None).await
    }

    /// As `submit`, with the batch's framed log `record` when it is
    /// logged (written ahead of a non-durable commit, if this group
    /// commit has a log).
    pub async fn submit_logged(
        self: &Arc<Self>,
        store: &Store,
        threat: &Arc<ThreatState>,
        job: Job<T>,
        record: Option<Vec<u8>>,
    ) -> Result<T> {
        let (done, answer) = oneshot::channel();
        self.queue
            .lock()
            .map_err(|_| internal("lock poisoned"))?
            .push(Pending { job, record, done });
        let (me, store, t) = (self.clone(), store.clone(), threat.clone());
        // On the writer thread ([`super::task_thread`]). The batch is answered
        // as soon as the group holding it is committed, which is often an
        // earlier caller's drain: this caller's own drain may by then be
        // writing later batches, and waiting for it would hold a durable
        // batch's answer for a whole further commit (and keep the sensors'
        // batches from arriving together, so groups stayed single).
        let drained = threat.writer.queue(move || me.drain(&store, &t))?;
        let mut answer = std::pin::pin!(answer);
        let no_answer = |_| internal("a group commit ended without an answer");
        tokio::select! {
            biased;
            got = &mut answer => got.map_err(no_answer)?,
            // This caller's drain ran after every earlier one, so the
            // batch has been answered, or its drain failed before taking
            // it (the drain's error says why).
            ran = drained => {
                ran??;
                answer.await.map_err(no_answer)?
            }
        }
    }

    /// Writes every queued job, under the ingest lock that orders all
    /// writers; finds the queue empty when an earlier drain took this
    /// caller's job along.
    fn drain(&self, store: &Store, threat: &ThreatState) -> Result<()> {
        let guard = threat.ingest.lock();
        let mut group =
            std::mem::take(&mut *self.queue.lock().map_err(|_| internal("lock poisoned"))?);
        if group.is_empty() {
            return Ok(());
        }
        // A poisoned ingest lock fails the batches taken, so none of them
        // stays queued to be written after its sender was told it failed.
        let Ok(_guard) = guard else {
            for p in group {
                let _ = p.done.send(Err(internal("lock poisoned")));
            }
            return Ok(());
        };
        // Logged: the records go ahead of a commit without fsync, unless a
        // checkpoint is due (or the log cannot be written: then as without).
        let logged = match &self.log {
            Some(side) if group.iter().any(|p| p.record.is_some()) => side.append(&mut group),
            _ => None,
        };
        // Not a checkpoint: the log is synced on its own thread while the
        // transaction runs, and waited for before the commit.
        let (durable, synced) = match (&self.log, logged) {
            (Some(side), Some((end, false))) => (false, Some(side.sync_in_background(end))),
            _ => (true, None),
        };
        // A group that adds many addresses is a checkpoint too, decided
        // once its changes are known (before they are published).
        let adds_many = |(_, changes): &(Vec<T>, Vec<Publish>)| {
            let new = threat.with_index(|idx| {
                changes
                    .iter()
                    .filter(|c| matches!(c, Publish::Upsert(ip, _) if !idx.contains(*ip)))
                    .take(CHECKPOINT_NEW_ADDRESSES)
                    .count()
            });
            new.map_or(true, |n| n >= CHECKPOINT_NEW_ADDRESSES)
        };
        let checkpoint_now = std::cell::Cell::new(durable);
        let together = store.write_blocking_as(
            |out| {
                if !durable && adds_many(out) {
                    checkpoint_now.set(true);
                }
                checkpoint_now.get()
            },
            |txn| {
                let mut outs = Vec::with_capacity(group.len());
                let mut changes = Vec::new();
                for p in &group {
                    let (out, c) = (p.job)(txn)?;
                    outs.push(out);
                    changes.extend(c);
                }
                if let Some(synced) = synced {
                    synced
                        .recv()
                        .map_err(|_| {
                            std::io::Error::other("the log's sync ended without an answer")
                        })
                        .and_then(|r| r)
                        .map_err(|source| store::Error::Io {
                            what: "cannot sync the ingest log".into(),
                            source,
                        })?;
                }
                Ok((outs, changes))
            },
        );
        match together {
            Ok((outs, changes)) => {
                publish(threat, changes)?;
                if let (Some(side), Some(_)) = (&self.log, logged) {
                    if checkpoint_now.get() {
                        side.checkpointed();
                    } else {
                        side.flush_in_background();
                    }
                }
                for (p, out) in group.into_iter().zip(outs) {
                    let _ = p.done.send(Ok(out));
                }
            }
            Err(e) if group.len() == 1 => {
                if let Some(p) = group.into_iter().next() {
                    let _ = p.done.send(Err(e.into()));
                }
            }
            Err(_) => {
                for p in group {
                    let r = store
                        .write_blocking(|txn| (p.job)(txn))
                        .map_err(Error::from)
                        .and_then(|(out, changes)| publish(threat, changes).map(|()| out));
                    let _ = p.done.send(r);
                }
            }
        }
        Ok(())
    }
}

impl LogSide {
    /// Appends the group's records; returns the log's end after them and
    /// whether this group's commit is to be a checkpoint. `None` when the
    /// log cannot be written: the group is committed durably instead.
    fn append<T>(&self, group: &mut [Pending<T>]) -> Option<(u64, bool)> {
        // Taken: a record's memory is given back once it is written.
        let records: Vec<Vec<u8>> = group.iter_mut().filter_map(|p| p.record.take()).collect();
        let end = match self.log.append(&records) {
            Ok(end) => end,
            Err(e) => {
                tracing::error!(error = %e, log = %self.log.path().display(), "cannot append to the ingest log; committing durably");
                return None;
            }
        };
        let (at, from) = self.since();
        let due = at.elapsed() >= CHECKPOINT_EVERY || end - from >= CHECKPOINT_BYTES;
        Some((end, due))
    }

    /// When the last checkpoint was made, and the log's end then.
    fn since(&self) -> (Instant, u64) {
        *self
            .checkpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After a durable commit of everything the log holds.
    fn checkpointed(&self) {
        if let Err(e) = self.log.checkpointed() {
            tracing::error!(error = %e, "cannot empty the ingest log (it is replayed without effect)");
        }
        *self
            .checkpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (Instant::now(), self.log.end());
    }

    /// Syncs the log up to `end` on the syncer thread; the receiver gets
    /// the outcome.
    fn sync_in_background(&self, end: u64) -> std::sync::mpsc::Receiver<std::io::Result<()>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let log = self.log.clone();
        // Not queued (the thread cannot start): the receiver finds the
        // sender gone, the group's transaction fails, and each batch is
        // written again alone, durably.
        let _ = self.syncer.queue(move || {
            let r = if log.synced() >= end {
                Ok(())
            } else {
                log.sync().map(|_| ())
            };
            let _ = tx.send(r);
        });
        rx
    }

    /// Syncs the database file on the flusher thread (unless a sync is
    /// queued already), so that the next checkpoint's fsync finds little
    /// left to write.
    fn flush_in_background(&self) {
        if self.flush_queued.swap(true, Ordering::SeqCst) {
            return;
        }
        let (file, flag) = (self.db_file.clone(), self.flush_queued.clone());
        let queued = self.flusher.queue(move || {
            flag.store(false, Ordering::SeqCst);
            if let Err(e) = file.sync_data() {
                tracing::warn!(error = %e, "background sync of the database file failed");
            }
        });
        if queued.is_err() {
            self.flush_queued.store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::meta;

    fn setup() -> (tempfile::TempDir, Store, Arc<ThreatState>) {
        let (dir, store) = crate::store::temp_store();
        (dir, store, Arc::new(ThreatState::default()))
    }

    /// A job writing `v` under a key of its own (any small write will do),
    /// failing instead when `v` is 0.
    fn job(v: u32) -> Job<u32> {
        Box::new(move |txn| {
            if v == 0 {
                return Err(store::Error::Corrupt("refused".into()));
            }
            meta::set_id(txn, &format!("job-{v}"), u64::from(v))?;
            Ok((v, Vec::new()))
        })
    }

    /// What job `v` wrote (0: nothing).
    fn written(store: &Store, v: u32) -> u64 {
        store
            .write_blocking(|txn| meta::current_id(txn, &format!("job-{v}")))
            .unwrap()
    }

    // The ingest lock is held across the wait on purpose: the drains block
    // on it in the blocking pool while the batches queue up.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_batches_are_all_answered_and_a_failing_one_fails_alone() {
        let (_dir, store, threat) = setup();
        let gc = Arc::new(GroupCommit::<u32>::default());
        // Hold the ingest lock so every batch queues, then let them go
        // together: they land in one group, one of them failing.
        let guard = threat.ingest.lock().unwrap();
        let mut tasks = Vec::new();
        for v in [7, 0, 9] {
            let (gc, store, threat) = (gc.clone(), store.clone(), threat.clone());
            tasks.push(tokio::spawn(async move {
                gc.submit(&store, &threat, job(v)).await
            }));
        }
        while gc.queue.lock().unwrap().len() < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop(guard);
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap().map_err(|e| match e {
                Error::Internal { detail } => detail,
                other => other.to_string(),
            }));
        }
        assert_eq!(got[0], Ok(7));
        assert!(
            got[1].as_ref().is_err_and(|e| e.contains("refused")),
            "{got:?}"
        );
        assert_eq!(got[2], Ok(9));
        // Both good batches are durable (in whichever order the tasks
        // queued them), the failing one wrote nothing.
        assert_eq!([written(&store, 7), written(&store, 9)], [7, 9]);
        assert!(gc.queue.lock().unwrap().is_empty());
    }

    /// A job writing `v` that first says it started, then waits for the
    /// test's word (`Fn`, so it may run again alone: the word is taken once).
    fn held_job(
        v: u32,
        started: std::sync::mpsc::Sender<()>,
        go: std::sync::mpsc::Receiver<()>,
    ) -> Job<u32> {
        let gate = Mutex::new(Some(go));
        Box::new(move |txn| {
            let _ = started.send(());
            if let Some(go) = gate.lock().unwrap().take() {
                let _ = go.recv();
            }
            meta::set_id(txn, &format!("job-{v}"), u64::from(v))?;
            Ok((v, Vec::new()))
        })
    }

    // A batch taken along in an earlier caller's group is answered when
    // that group commits, not after its own drain, which by then may be
    // writing a batch that arrived later.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_is_answered_when_its_group_commits() {
        use std::sync::mpsc;
        use std::time::Duration;
        let (_dir, store, threat) = setup();
        let gc = Arc::new(GroupCommit::<u32>::default());
        let submit = |job: Job<u32>| {
            let (gc, store, threat) = (gc.clone(), store.clone(), threat.clone());
            tokio::spawn(async move { gc.submit(&store, &threat, job).await })
        };
        let queued = |n: usize| {
            let gc = gc.clone();
            async move {
                while gc.queue.lock().unwrap().len() != n {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        let held = |v: u32| {
            let (started, wait) = mpsc::channel();
            let (go, gate) = mpsc::channel();
            (held_job(v, started, gate), wait, go)
        };
        // Batch 1's group is open; 2 and 4 queue behind it.
        let (job1, started1, go1) = held(1);
        let first = submit(job1);
        started1.recv().unwrap();
        let (job2, started2, go2) = held(2);
        let second = submit(job2);
        queued(1).await;
        let fourth = submit(job(4));
        queued(2).await;
        // 2's drain takes 2 and 4 into one group, held open by 2.
        go1.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        started2.recv_timeout(Duration::from_secs(10)).unwrap();
        // 3 arrives meanwhile: 4's own drain takes it and holds it open.
        let (job3, started3, go3) = held(3);
        let third = submit(job3);
        queued(1).await;
        go2.send(()).unwrap();
        started3.recv_timeout(Duration::from_secs(10)).unwrap();
        // 4 is durable with 2, so both are answered while 3 is open.
        let answered = tokio::time::timeout(Duration::from_secs(5), async {
            (
                second.await.unwrap().unwrap(),
                fourth.await.unwrap().unwrap(),
            )
        })
        .await;
        go3.send(()).unwrap();
        assert_eq!(answered.expect("a batch waited for a later group"), (2, 4));
        assert_eq!(third.await.unwrap().unwrap(), 3);
        assert_eq!(written(&store, 4), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_logged_batch_is_answered_once_its_record_is_synced() {
        use crate::store::ingest_log::{self, IngestLog};
        let (dir, store, threat) = setup();
        let path = dir.path().join(ingest_log::LOG_FILE);
        let (log, _) = IngestLog::open(&path).unwrap();
        let log = Arc::new(log);
        let gc = Arc::new(GroupCommit::<u32>::with_log(log.clone(), store.path()).unwrap());
        assert!(gc.is_logged());
        let record = ingest_log::frame(b"batch 3");
        let end = record.len() as u64;
        assert_eq!(
            gc.submit_logged(&store, &threat, job(3), Some(record))
                .await
                .unwrap(),
            3
        );
        // Answered: synced to the log, and seen by reads.
        assert!(log.synced() >= end);
        let (_, held) = IngestLog::open(&path).unwrap();
        assert_eq!(ingest_log::records(&held), vec![&b"batch 3"[..]]);
        assert_eq!(written(&store, 3), 3);
        // Without a record, a batch is committed durably as before and the
        // log is left alone.
        assert_eq!(gc.submit(&store, &threat, job(4)).await.unwrap(), 4);
        assert_eq!(log.end(), end);
        // A checkpoint makes it all durable in the database and empties
        // the log.
        gc.checkpoint(&store, CHECKPOINT_EVERY).unwrap();
        assert!(
            std::fs::metadata(&path).unwrap().len() > 0,
            "the last one is recent"
        );
        gc.checkpoint(&store, Duration::ZERO).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert_eq!(log.synced(), end);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_adding_many_addresses_is_a_checkpoint() {
        use crate::domain::{Indicator, IpKey, UnixMillis};
        use crate::index::Summary;
        use crate::store::ingest_log::{self, IngestLog};
        let (dir, store, threat) = setup();
        let path = dir.path().join(ingest_log::LOG_FILE);
        let (log, _) = IngestLog::open(&path).unwrap();
        let gc = Arc::new(GroupCommit::<u32>::with_log(Arc::new(log), store.path()).unwrap());
        // A job adding `n` addresses from `first` on.
        let adding = |v: u32, first: u128, n: u128| -> Job<u32> {
            Box::new(move |txn| {
                meta::set_id(txn, &format!("job-{v}"), u64::from(v))?;
                let changes = (first..first + n)
                    .map(|i| {
                        let ip = IpKey(i);
                        let ind = Indicator::new(ip, UnixMillis(1));
                        Publish::Upsert(ip, Summary::of(&ind, 1_000, 0))
                    })
                    .collect();
                Ok((v, changes))
            })
        };
        let logged = |v: u32| Some(ingest_log::frame(format!("batch {v}").as_bytes()));
        let size = || std::fs::metadata(&path).unwrap().len();
        // A few new addresses: committed without fsync, the log keeps it.
        gc.submit_logged(&store, &threat, adding(1, 1 << 40, 10), logged(1))
            .await
            .unwrap();
        assert!(size() > 0);
        // As many again as the limit, the first ten known already: not yet.
        let n = CHECKPOINT_NEW_ADDRESSES as u128;
        gc.submit_logged(&store, &threat, adding(2, 1 << 40, n), logged(2))
            .await
            .unwrap();
        assert!(size() > 0, "{} new addresses only", n - 10);
        // The limit: a durable commit, and the log is emptied.
        gc.submit_logged(&store, &threat, adding(3, 1 << 41, n), logged(3))
            .await
            .unwrap();
        assert_eq!(size(), 0);
        assert_eq!(
            threat.with_index(crate::index::IpIndex::len).unwrap(),
            2 * n as usize
        );
    }

    #[tokio::test]
    async fn a_poisoned_ingest_lock_fails_the_batch_and_leaves_nothing_queued() {
        let (_dir, store, threat) = setup();
        let t = threat.clone();
        let _ = std::thread::spawn(move || {
            let _g = t.ingest.lock().unwrap();
            panic!("a writer panics holding the ingest lock");
        })
        .join();
        let gc = Arc::new(GroupCommit::<u32>::default());
        assert!(gc.submit(&store, &threat, job(5)).await.is_err());
        assert!(gc.queue.lock().unwrap().is_empty());
        assert_eq!(written(&store, 5), 0, "nothing written");
    }
}
