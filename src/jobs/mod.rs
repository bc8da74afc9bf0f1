//! Background loops. Each is a thin interval loop around a service call;
//! `sikker admin sweep` calls the same functions.

pub mod acme;
pub mod alerts;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::service::Services;

/// Items deleted per sweep transaction.
pub const SWEEP_BATCH: usize = 5_000;

/// Runs the retention sweep now and then every `every`.
pub async fn sweep(services: Arc<Services>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let now = services.clock.now();
        match services.sweep(now, SWEEP_BATCH).await {
            Ok(r) => tracing::info!(
                indicators = r.indicators,
                reports = r.reports,
                usernames = r.usernames,
                emails = r.emails,
                "retention sweep"
            ),
            Err(e) => tracing::error!(error = %e, "retention sweep failed"),
        }
    }
}

/// Flushes usage counters every few seconds, and once more when stopping.
pub async fn flush_usage(services: Arc<Services>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let stopping = tokio::select! {
            _ = stop.changed() => true,
            _ = tick.tick() => false,
        };
        if let Err(e) = services.flush_usage().await {
            tracing::error!(error = %e, "flushing usage counters failed");
        }
        if stopping {
            return;
        }
    }
}

/// Makes the sensor batches of the ingest log durable in the database and
/// empties the log once ingest pauses (while batches arrive, their groups
/// do it every `CHECKPOINT_EVERY`): a log replayed long after, its events'
/// de-duplication keys swept meanwhile, would count them again.
pub async fn checkpoint_ingest(services: Arc<Services>, stop: watch::Receiver<bool>) {
    let every = crate::service::group_commit::CHECKPOINT_EVERY;
    each_after(every, stop, || async {
        if let Err(e) = services.checkpoint_ingest(every).await {
            tracing::error!(error = %e, "checkpoint of the ingest log failed");
        }
    })
    .await;
}

/// Checks hourly whether the JWT signing key is due for rotation, and
/// rotates it (opening the services checks once at start).
pub async fn jwt_rotation(services: Arc<Services>, stop: watch::Receiver<bool>) {
    each_after(Duration::from_secs(3600), stop, || async {
        if let Err(e) = services.rotate_jwt_key_if_due().await {
            tracing::error!(error = %e, "JWT signing-key rotation failed");
        }
    })
    .await;
}

/// Runs `f` every `period`, the first time one `period` from now, until
/// stopped.
async fn each_after<F, Fut>(period: Duration, mut stop: watch::Receiver<bool>, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        f().await;
    }
}
