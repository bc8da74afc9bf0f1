//! Two-core work for the few jobs large enough to need it (block lists of
//! a million entries): a scoped thread, and the work done here instead
//! should that thread not start.

use std::sync::Mutex;

/// Runs `a` here and `b` on a scoped thread named `name`, and returns
/// both results. If the thread cannot start, `b` runs here after `a`. A
/// panic in `b` is resumed here.
pub fn join<A, B, RA, RB>(name: &str, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA,
    B: FnOnce() -> RB + Send,
    RB: Send,
{
    // Taken by whichever side runs it.
    let b = Mutex::new(Some(b));
    let take = || b.lock().ok().and_then(|mut b| b.take());
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name(name.into())
            .spawn_scoped(s, || take().map(|b| b()));
        let ra = a();
        let rb = match other {
            Ok(h) => match h.join() {
                Ok(rb) => rb,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(e) => {
                tracing::debug!(error = %e, thread = name, "running on one thread");
                None
            }
        };
        // `take` yields `b` once: here only when the thread never ran it.
        let rb = rb.or_else(|| take().map(|b| b()));
        match rb {
            Some(rb) => (ra, rb),
            None => unreachable!("the closure runs on one side or the other"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_run_once_and_return_their_results() {
        let (a, b) = join("test", || 1 + 1, || "two".to_owned());
        assert_eq!((a, b.as_str()), (2, "two"));
        let (v, w) = join("test", || vec![1; 3], || vec![2; 4]);
        assert_eq!((v.len(), w.len()), (3, 4));
    }

    #[test]
    fn a_panic_on_the_thread_reaches_the_caller() {
        let r = std::panic::catch_unwind(|| join("test", || 1, || -> i32 { panic!("boom") }));
        assert!(r.is_err());
    }
}
