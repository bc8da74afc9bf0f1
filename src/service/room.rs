//! Room in a budget, waited for a bounded time: the shared step of the
//! block-list and sensor-batch memory budgets.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Error, Result};

/// `units` of `budget`, waiting at most `wait`; then 503 with the time to
/// come back, the reason being that too many `what` are in flight.
pub(crate) async fn wait_for(
    budget: &Arc<Semaphore>,
    units: usize,
    wait: Duration,
    what: &str,
) -> Result<OwnedSemaphorePermit> {
    let asked = budget
        .clone()
        .acquire_many_owned(u32::try_from(units).unwrap_or(u32::MAX));
    match tokio::time::timeout(wait, asked).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(Error::Internal {
            detail: format!("the room for {what} is closed"),
        }),
        Err(_) => Err(Error::Unavailable {
            reason: format!("too many {what} at once; try again shortly"),
            retry_after_secs: Some(wait.as_secs().max(1)),
        }),
    }
}
