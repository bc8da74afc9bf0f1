//! Retention sweep: drops whole expired day buckets — indicators (noting
//! each expiry in the repeat-offender history), raw reports,
//! de-duplication keys, username and e-mail statistics, repeat-offender
//! histories past their period — in bounded
//! batches, each a short write transaction (the privacy tables follow the
//! policy table in `service::privacy`), so the single writer is never
//! held for long. Reads already hide expired items before the sweep runs.

use super::threat::Publish;
use super::{Result, Services};
use crate::domain::UnixMillis;
use crate::domain::time::MILLIS_PER_DAY;
use crate::store::{self, names};

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    pub indicators: usize,
    /// Repeat-offender histories purged after their period.
    pub repeat_histories: usize,
    pub reports: usize,
    pub dedup_keys: usize,
    pub usernames: usize,
    pub emails: usize,
    pub sessions: usize,
    pub batches: usize,
    pub privacy: super::privacy::PrivacySweep,
    pub audit_entries: usize,
}

impl Services {
    /// Deletes everything expired as of `now`, `batch` items per transaction.
    pub async fn sweep(&self, now: UnixMillis, batch: usize) -> Result<SweepReport> {
        let batch = batch.max(1);
        let mut r = SweepReport::default();
        let today = now.day();
        let keep_days = self.retention.repeat_keep_days();
        let indicator_ms = self.retention.indicators_ms;
        loop {
            let removed = self
                .ingest(move |txn| {
                    let gone = store::indicators::delete_expired(txn, today, batch)?;
                    for (day, ip) in &gone {
                        store::repeat::note_expiry(txn, *ip, *day, keep_days)?;
                    }
                    let publish = gone.iter().map(|(_, ip)| Publish::Remove(*ip)).collect();
                    Ok((gone.len(), publish))
                })
                .await?;
            r.indicators += removed;
            r.batches += 1;
            if removed < batch {
                break;
            }
            tokio::task::yield_now().await;
        }
        self.threat
            .index
            .write()
            .map_err(|_| super::Error::Internal {
                detail: "index lock poisoned".into(),
            })?
            .drop_buckets_before(today, now);
        // A history is kept through its purge day (the last expiry day
        // plus the history period).
        loop {
            let purged = self
                .store
                .write(move |txn| store::repeat::delete_expired(txn, today, batch, indicator_ms))
                .await?;
            r.repeat_histories += purged.deleted;
            r.batches += 1;
            if purged.visited < batch {
                break;
            }
            tokio::task::yield_now().await;
        }
        // A raw report made on day d is kept through d + retention.
        let report_cut = UnixMillis(now.0 - self.retention.reports_ms).day();
        let retention_days = self.retention.reports_ms / MILLIS_PER_DAY;
        let dedup_cut = today - retention_days - 1;
        loop {
            let (reports, dedup, users, mails) = self
                .store
                .write(move |txn| {
                    Ok((
                        store::reports::delete_before(txn, report_cut, batch)?,
                        store::sensors::delete_dedup_before(txn, dedup_cut, batch)?,
                        names::delete_expired(txn, names::Kind::Username, today, batch)?,
                        names::delete_expired(txn, names::Kind::Email, today, batch)?,
                    ))
                })
                .await?;
            r.reports += reports;
            r.dedup_keys += dedup;
            r.usernames += users;
            r.emails += mails;
            r.batches += 1;
            if reports < batch && dedup < batch && users < batch && mails < batch {
                break;
            }
            tokio::task::yield_now().await;
        }
        r.sessions = self.sweep_sessions(now, batch).await?;
        r.privacy = self.sweep_privacy(now, batch).await?;
        r.audit_entries = self.sweep_audit(now, batch).await?;
        Ok(r)
    }
}
