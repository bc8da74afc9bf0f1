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
        // On the writer thread ([`super::writer`]).
        threat.writer.run(move || me.drain(&store, &t)).await??;
        answer
            .await
            .map_err(|_| internal("a group commit ended without an answer"))?
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
