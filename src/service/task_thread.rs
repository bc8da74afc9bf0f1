//! A thread of its own for one kind of work: tasks run on it in the
//! order queued, and it ends when idle for two seconds (the next task
//! starts another).
//!
//! What it saves is memory. Work that allocates and frees a lot, run on
//! whichever thread of the blocking pool is free, leaves each of those
//! threads' heaps holding freed memory the allocator does not give back
//! while the thread waits. Two kinds of work run on such threads:
//! - evidence writes (sensor group commits, reports, the sweep): a write
//!   transaction reads, copies and frees thousands of 4 KiB page buffers.
//!   redb has a single writer anyway, so one thread costs no parallelism.
//!   A server ingesting sensor batches at full rate on the bench's 1M
//!   indicators peaked at 345–361 MB resident with the writes on the
//!   blocking pool, against 276–285 MB on one thread (and 117–119k
//!   against 123–131k events/s);
//! - sensor batches parsed, validated and hashed before the write: the
//!   same ingest peaked at 296–317 MB with that work on the blocking
//!   pool, 271–293 MB on one thread, same throughput.

use std::sync::{Arc, Mutex, Weak, mpsc};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Error, Result};

type Task = Box<dyn FnOnce() + Send>;

/// A thread idle this long ends; the next task starts another.
/// The allocator gives back what a thread's heap holds when the thread
/// ends, not while it waits.
const IDLE: Duration = Duration::from_secs(2);

/// The queue of a task thread, when one runs.
#[derive(Debug)]
pub struct TaskThread {
    name: &'static str,
    queue: Arc<Mutex<Option<mpsc::Sender<Task>>>>,
    idle: Duration,
}

fn internal(detail: &str) -> Error {
    Error::Internal {
        detail: detail.into(),
    }
}

impl TaskThread {
    /// A task thread called `name` (as `top -H` shows it).
    pub fn new(name: &'static str) -> Self {
        Self::with_idle(name, IDLE)
    }

    /// A task thread that ends after `idle` without work.
    pub fn with_idle(name: &'static str, idle: Duration) -> Self {
        Self {
            name,
            queue: Arc::default(),
            idle,
        }
    }

    /// Runs `f` on the thread, after the tasks queued before it.
    /// A task that panics fails (its answer is an error); the thread goes
    /// on with the next.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        self.queue(f)?.await
    }

    /// Queues `f` for the thread now, and returns what resolves to
    /// its result. The task runs whether or not that is awaited.
    pub fn queue<T, F>(&self, f: F) -> Result<impl Future<Output = Result<T>> + use<T, F>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (answer, wait) = oneshot::channel();
        let task: Task = Box::new(move || {
            let _ = answer.send(f());
        });
        {
            let mut queue = self.queue.lock().map_err(|_| internal("lock poisoned"))?;
            // Sent under the lock: a thread ends only under it, after
            // finding its queue empty.
            let unsent = match queue.as_ref() {
                Some(q) => q.send(task).err().map(|e| e.0),
                None => Some(task),
            };
            if let Some(task) = unsent {
                let (send, tasks) = mpsc::channel::<Task>();
                let _ = send.send(task);
                let (handle, idle) = (Arc::downgrade(&self.queue), self.idle);
                std::thread::Builder::new()
                    .name(self.name.into())
                    .spawn(move || work(&tasks, &handle, idle))
                    .map_err(|e| {
                        internal(&format!("cannot start the {} thread: {e}", self.name))
                    })?;
                *queue = Some(send);
            }
        }
        Ok(async {
            wait.await
                .map_err(|_| internal("a task on a task thread failed"))
        })
    }
}

/// The thread: runs tasks until it has been `idle` without one, or its
/// `TaskThread` is gone.
fn work(
    tasks: &mpsc::Receiver<Task>,
    handle: &Weak<Mutex<Option<mpsc::Sender<Task>>>>,
    idle: Duration,
) {
    loop {
        let task = match tasks.recv_timeout(idle) {
            Ok(task) => task,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let Some(queue) = handle.upgrade() else {
                    return;
                };
                let Ok(mut queue) = queue.lock() else {
                    return;
                };
                if let Ok(task) = tasks.try_recv() {
                    task
                } else {
                    *queue = None;
                    return;
                }
            }
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_id() -> std::thread::ThreadId {
        std::thread::current().id()
    }

    #[tokio::test]
    async fn tasks_run_in_order_on_one_thread_and_a_panic_fails_only_its_own() {
        let w = TaskThread::new("sikker-test");
        let first = w.run(thread_id).await.unwrap();
        let panicked = w.run(|| -> u8 { panic!("a write panics") }).await;
        assert!(panicked.is_err());
        let (a, b) = tokio::join!(w.run(thread_id), w.run(thread_id));
        assert_eq!([a.unwrap(), b.unwrap()], [first, first]);
        assert_ne!(thread_id(), first, "not the caller's thread");
        // In order: each task sees the ones queued before it.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let runs = (0..50).map(|i| {
            let seen = seen.clone();
            w.run(move || seen.lock().unwrap().push(i))
        });
        for r in futures_util::future::join_all(runs).await {
            r.unwrap();
        }
        assert_eq!(*seen.lock().unwrap(), (0..50).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_thread_ends_and_the_next_write_starts_another() {
        let w = Arc::new(TaskThread::with_idle(
            "sikker-test",
            Duration::from_millis(20),
        ));
        let first = w.run(thread_id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(w.queue.lock().unwrap().is_none(), "the idle thread ended");
        let second = w.run(thread_id).await.unwrap();
        assert_ne!(first, second);
        // Writes arriving while threads end and start are all run.
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i % 40)).await;
                w.run(move || i).await
            }));
        }
        for (i, t) in (0..).zip(tasks) {
            assert_eq!(t.await.unwrap().unwrap(), i);
        }
    }
}
