//! The alert loops: one applies hits from ingest and sends digests whose
//! cool-down has passed; the other works through the delivery outbox.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::notify::smtp::Mailer;
use crate::notify::webhook::WebhookClient;
use crate::service::Services;
use crate::service::alerts::Outgoing;
use crate::store::alerts::Channel;

/// How often the loops look at the clock when nothing wakes them.
pub const TICK: Duration = Duration::from_secs(1);
/// Deliveries attempted per round.
const BATCH: usize = 50;
/// How often delivered and failed entries past retention are pruned.
const PRUNE_EVERY_MS: i64 = 3_600_000;

/// Applies hits as they arrive and fires digests when their cool-down ends.
pub async fn alerts(services: Arc<Services>, mut stop: watch::Receiver<bool>) {
    let Some(mut rx) = services.take_alert_hits() else {
        tracing::error!("alerts job started twice; this one stops");
        return;
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let mut hits = tokio::select! {
            _ = stop.changed() => return,
            h = rx.recv() => match h {
                Some(h) => h,
                None => return,
            },
            _ = tick.tick() => Vec::new(),
        };
        while let Ok(more) = rx.try_recv() {
            hits.extend(more);
        }
        let now = services.clock.now();
        if let Err(e) = services.apply_alert_hits(hits, now).await {
            tracing::error!(error = %e, "applying alert matches failed");
        }
        if let Err(e) = services.fire_due_alerts(now).await {
            tracing::error!(error = %e, "sending alert digests failed");
        }
    }
}

/// What deliveries are sent with.
#[derive(Debug)]
pub struct Senders {
    pub mailer: Option<Mailer>,
    pub webhook: WebhookClient,
}

async fn send(senders: &Senders, o: &Outgoing, now_secs: i64) -> Result<(), String> {
    match &o.channel {
        Channel::Email { to, subject, body } => match &senders.mailer {
            Some(m) => m.send(to, subject, body).await,
            None => Err("e-mail delivery is not configured (--smtp-host)".into()),
        },
        Channel::Webhook { url, body } => {
            let secret = o
                .secret
                .as_deref()
                .ok_or("the alert's webhook secret is gone")?;
            senders
                .webhook
                .post(url, body, secret, now_secs, o.id)
                .await
        }
    }
}

/// Sends due deliveries when woken or every tick, recording each outcome.
pub async fn deliveries(
    services: Arc<Services>,
    senders: Senders,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last_prune = i64::MIN;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = services.alerts.outbox.notified() => {}
            _ = tick.tick() => {}
        }
        let now = services.clock.now();
        let due = match services.due_deliveries(now, BATCH).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "reading the alert outbox failed");
                continue;
            }
        };
        for o in due {
            let sent = tokio::select! {
                _ = stop.changed() => return,
                r = send(&senders, &o, now.0.div_euclid(1000)) => r,
            };
            let kind = match o.channel {
                Channel::Email { .. } => "email",
                Channel::Webhook { .. } => "webhook",
            };
            match &sent {
                Ok(()) => tracing::info!(delivery = o.id, channel = kind, "alert delivered"),
                Err(e) => tracing::warn!(
                    delivery = o.id,
                    channel = kind,
                    attempt = o.attempts + 1,
                    error = %e,
                    "alert delivery failed"
                ),
            }
            if let Err(e) = services
                .finish_delivery(o.id, sent, services.clock.now())
                .await
            {
                tracing::error!(error = %e, "recording an alert delivery failed");
            }
        }
        if now.0 >= last_prune.saturating_add(PRUNE_EVERY_MS) {
            last_prune = now.0;
            if let Err(e) = services.prune_deliveries(now).await {
                tracing::error!(error = %e, "pruning the delivery log failed");
            }
        }
    }
}
