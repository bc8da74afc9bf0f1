//! Group commit: batches that arrive while a write transaction is being
//! committed wait, and are then written together in the next one.
//!
//! Durability contract: a batch is acknowledged only once the transaction
//! holding it is committed (redb's durable commit, fsync included), and its
//! changes are published to the in-memory index before the answer, exactly
//! as a batch written alone. What changes is how many batches share one
//! commit: one transaction copies each B-tree page it touches once, however
//! many of the group's rows land on it, and pays one fsync for all of them.
//!
//! A failing batch never takes the others down: when the group's
//! transaction fails, each batch is retried alone, and only the failing
//! one gets the error.

use std::sync::{Arc, Mutex};

use redb::WriteTransaction;
use tokio::sync::oneshot;

use super::threat::{Publish, ThreatState, publish};
use super::{Error, Result};
use crate::store::{self, Store};

/// One batch's write: runs inside the group's transaction (and again alone
/// if the group fails, hence `Fn`).
pub type Job<T> = Box<dyn Fn(&WriteTransaction) -> store::Result<(T, Vec<Publish>)> + Send>;

struct Pending<T> {
    job: Job<T>,
    done: oneshot::Sender<Result<T>>,
}

/// The queue of batches waiting for the next commit.
pub struct GroupCommit<T> {
    queue: Mutex<Vec<Pending<T>>>,
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
        }
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
        let (done, answer) = oneshot::channel();
        self.queue
            .lock()
            .map_err(|_| internal("lock poisoned"))?
            .push(Pending { job, done });
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
        let group = std::mem::take(&mut *self.queue.lock().map_err(|_| internal("lock poisoned"))?);
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
        let together = store.write_blocking(|txn| {
            let mut outs = Vec::with_capacity(group.len());
            let mut changes = Vec::new();
            for p in &group {
                let (out, c) = (p.job)(txn)?;
                outs.push(out);
                changes.extend(c);
            }
            Ok((outs, changes))
        });
        match together {
            Ok((outs, changes)) => {
                publish(threat, changes)?;
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
