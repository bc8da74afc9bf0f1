//! The ACME loop: orders a certificate when none is stored (or it lacks a
//! configured name) and renews it inside the renewal window, retrying with
//! backoff; each new certificate is put in service through `reload`, the
//! same swap SIGHUP uses.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::acme::{self, AcmeFiles, AcmeOptions, Challenges, Step};
use crate::domain::{Clock, UnixMillis};

/// Swaps the served certificate for the stored one.
pub type Reload = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Everything the loop works with.
pub struct AcmeJob {
    pub opts: AcmeOptions,
    pub files: AcmeFiles,
    pub challenges: Arc<Challenges>,
    pub reload: Reload,
    pub clock: Clock,
    /// How often the clock is looked at (the decision itself uses `clock`).
    pub tick: Duration,
}

/// Runs until `stop` turns true.
pub async fn run(job: AcmeJob, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(job.tick);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut failures = 0u32;
    let mut retry_at: Option<UnixMillis> = None;
    let mut waiting_logged: Option<UnixMillis> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let now = job.clock.now();
        if retry_at.is_some_and(|t| now < t) {
            continue;
        }
        let stored = job.files.stored();
        match acme::next_step(
            stored.as_ref(),
            &job.opts.domains,
            now,
            job.opts.renew_before,
        ) {
            Step::WaitUntil(at) => {
                if waiting_logged != Some(at) {
                    tracing::info!(renew_at = %at.rfc3339(), "ACME certificate valid; renewal scheduled");
                    waiting_logged = Some(at);
                }
                continue;
            }
            Step::Issue => {}
        }
        tracing::info!(
            domains = %job.opts.domains.join(","),
            directory = %job.opts.directory,
            renewal = stored.is_some(),
            "ordering ACME certificate"
        );
        // The order must not outlive shutdown; a half-done order is
        // simply ordered again next time.
        let result = tokio::select! {
            _ = stop.changed() => return,
            r = acme::issue(&job.opts, &job.files, &job.challenges) => r,
        };
        match result
            .map_err(|e| e.to_string())
            .and_then(|info| (job.reload)().map(|()| info))
        {
            Ok(info) => {
                failures = 0;
                retry_at = None;
                tracing::info!(
                    domains = %job.opts.domains.join(","),
                    not_after = %info.not_after.rfc3339(),
                    "ACME certificate issued and in service"
                );
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = acme::backoff(failures);
                let ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                retry_at = Some(UnixMillis(now.0.saturating_add(ms)));
                tracing::error!(
                    error = %e,
                    failures,
                    retry_in = %humantime::format_duration(wait),
                    "ACME certificate order failed; the current certificate stays in service"
                );
            }
        }
    }
}
