//! The one thread that writes evidence: sensor batches (group commits),
//! reports and the sweep all run their write transactions on it.
//!
//! redb has a single writer anyway, so one thread costs no parallelism.
//! What it saves is memory: a write transaction reads, copies and frees
//! thousands of 4 KiB page buffers. Run on whichever thread of the
//! blocking pool was free, consecutive transactions freed pages that
//! another thread's heap had allocated, and the allocator kept those
//! heaps' memory: a server ingesting sensor batches at full rate on the
//! bench's 1M indicators peaked at 338–352 MB resident, against 267–279
//! MB with every group written here (and 117–119k against 123–131k
//! events/s).

use std::sync::{Mutex, OnceLock, mpsc};

use tokio::sync::oneshot;

use super::{Error, Result};

type Task = Box<dyn FnOnce() + Send>;

/// The writer thread's queue, started with the first task.
#[derive(Debug, Default)]
pub struct Writer {
    tasks: OnceLock<Mutex<mpsc::Sender<Task>>>,
}

fn internal(detail: &str) -> Error {
    Error::Internal {
        detail: detail.into(),
    }
}

impl Writer {
    /// Runs `f` on the writer thread, after the tasks queued before it.
    /// A task that panics fails (its answer is an error); the thread goes
    /// on with the next.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (answer, wait) = oneshot::channel();
        self.queue()?
            .send(Box::new(move || {
                let _ = answer.send(f());
            }))
            .map_err(|_| internal("the writer thread has ended"))?;
        wait.await
            .map_err(|_| internal("a write on the writer thread failed"))
    }

    /// The thread's queue. It ends with the last `Writer` handle.
    fn queue(&self) -> Result<std::sync::MutexGuard<'_, mpsc::Sender<Task>>> {
        let tasks = if let Some(t) = self.tasks.get() {
            t
        } else {
            let (send, tasks) = mpsc::channel::<Task>();
            std::thread::Builder::new()
                .name("sikker-writer".into())
                .spawn(move || {
                    for task in tasks {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                    }
                })
                .map_err(|e| internal(&format!("cannot start the writer thread: {e}")))?;
            // Started twice at once, the thread whose sender is not kept
            // ends at once.
            self.tasks.get_or_init(|| Mutex::new(send))
        };
        tasks.lock().map_err(|_| internal("lock poisoned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_in_order_on_one_thread_and_a_panic_fails_only_its_own() {
        let w = Writer::default();
        let first = w.run(|| std::thread::current().id()).await.unwrap();
        let panicked = w.run(|| -> u8 { panic!("a write panics") }).await;
        assert!(panicked.is_err());
        let (a, b) = tokio::join!(
            w.run(|| std::thread::current().id()),
            w.run(|| std::thread::current().id())
        );
        assert_eq!([a.unwrap(), b.unwrap()], [first, first]);
        assert_ne!(
            std::thread::current().id(),
            first,
            "not the caller's thread"
        );
    }
}
