//! Daily quotas: one engine for every API surface. Counters are aggregate
//! per API key, UTC day and bucket — the only trace a lookup leaves (P05,
//! P23). They live in memory (checked and charged under one lock, so
//! concurrent requests cannot overshoot) and are flushed to the store every
//! few seconds and at shutdown; a crash forgets at most the last few
//! seconds of counting, never evidence.

use std::collections::HashMap;
use std::sync::Mutex;

use super::apikeys::ApiPrincipal;
use super::{Error, Result, Services};
use crate::domain::UnixMillis;
use crate::store;

/// What a request consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Bucket {
    Lookups = 1,
    Reports = 2,
    Blacklist = 3,
    Taxii = 4,
}

impl Bucket {
    pub const ALL: [Self; 4] = [Self::Lookups, Self::Reports, Self::Blacklist, Self::Taxii];

    /// The key of this bucket in `/v1/key/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lookups => "lookups",
            Self::Reports => "reports",
            Self::Blacklist => "blacklist",
            Self::Taxii => "taxii",
        }
    }

    fn limit(self, t: &super::tiers::Tier) -> u64 {
        match self {
            Self::Lookups => t.lookups,
            Self::Reports => t.reports,
            Self::Blacklist => t.blacklist,
            Self::Taxii => t.taxii,
        }
    }

    fn exhausted(self) -> &'static str {
        match self {
            Self::Lookups => "Daily lookup quota exceeded",
            Self::Reports => "Daily report quota exceeded",
            Self::Blacklist => "Daily blacklist quota exceeded",
            Self::Taxii => "Daily TAXII quota exceeded",
        }
    }
}

/// A key's standing in one bucket today, for the quota headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaState {
    pub bucket: Bucket,
    pub limit: u64,
    pub used: u64,
    /// Unix seconds of the next 00:00 UTC, when the counter resets.
    pub reset_at_s: i64,
}

impl QuotaState {
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// (key, bucket) → (day, used that day).
    today: HashMap<(u64, u8), (i64, u64)>,
    /// (key, day, bucket) → units not yet written to the store.
    pending: HashMap<(u64, i64, u8), u64>,
}

#[derive(Debug, Default)]
pub struct Quotas {
    counters: Mutex<Counters>,
}

fn poisoned() -> Error {
    Error::Internal {
        detail: "quota lock poisoned".into(),
    }
}

fn next_midnight_s(now: UnixMillis) -> i64 {
    (now.day() + 1) * 86_400
}

/// How much of a request the quota allows.
enum Want {
    /// All of it or nothing.
    Exactly(u64),
    /// As much as is left, at least one.
    UpTo(u64),
}

impl Services {
    /// Charges `n` units of `bucket` to `who`, or refuses the whole request
    /// with 429 when fewer than `n` are left today.
    pub async fn charge(&self, who: &ApiPrincipal, bucket: Bucket, n: u64) -> Result<()> {
        self.take(who, bucket, Want::Exactly(n)).await.map(|_| ())
    }

    /// Charges up to `want` units and says how many were granted (at least
    /// one); refuses with 429 only when nothing is left. Used where an
    /// answer can be shortened (block lists, TAXII pages).
    pub async fn charge_up_to(&self, who: &ApiPrincipal, bucket: Bucket, want: u64) -> Result<u64> {
        self.take(who, bucket, Want::UpTo(want)).await
    }

    async fn take(&self, who: &ApiPrincipal, bucket: Bucket, want: Want) -> Result<u64> {
        let now = self.clock.now();
        let day = now.day();
        self.load_today(who.key_id, bucket, day).await?;
        let limit = bucket.limit(self.tiers.get(&who.tier));
        let mut c = self.quotas.counters.lock().map_err(|_| poisoned())?;
        let used = c
            .today
            .get(&(who.key_id, bucket as u8))
            .filter(|(d, _)| *d == day)
            .map_or(0, |(_, u)| *u);
        let left = limit.saturating_sub(used);
        let granted = match want {
            Want::Exactly(n) if n <= left => n,
            Want::UpTo(n) if left > 0 => n.min(left),
            Want::Exactly(0) | Want::UpTo(0) => 0,
            _ => {
                return Err(Error::RateLimited {
                    retry_after_secs: u64::try_from(next_midnight_s(now) * 1000 - now.0)
                        .unwrap_or(0)
                        .div_ceil(1000),
                    reason: bucket.exhausted().into(),
                });
            }
        };
        if granted > 0 {
            c.today
                .insert((who.key_id, bucket as u8), (day, used + granted));
            *c.pending
                .entry((who.key_id, day, bucket as u8))
                .or_default() += granted;
        }
        Ok(granted)
    }

    /// Makes sure today's counter of (key, bucket) is in memory, reading
    /// what an earlier run of the server stored.
    async fn load_today(&self, key_id: u64, bucket: Bucket, day: i64) -> Result<()> {
        let known = self
            .quotas
            .counters
            .lock()
            .map_err(|_| poisoned())?
            .today
            .get(&(key_id, bucket as u8))
            .is_some_and(|(d, _)| *d == day);
        if known {
            return Ok(());
        }
        let stored = self
            .store
            .read(move |txn| store::usage::get(txn, key_id, day, bucket as u8))
            .await?;
        let mut c = self.quotas.counters.lock().map_err(|_| poisoned())?;
        let pending = c
            .pending
            .get(&(key_id, day, bucket as u8))
            .copied()
            .unwrap_or(0);
        let entry = c.today.entry((key_id, bucket as u8)).or_insert((day, 0));
        if entry.0 != day {
            *entry = (day, stored + pending);
        } else if entry.1 < stored + pending {
            // A concurrent first request may have inserted its own charge
            // before this read finished; never count below what is stored.
            entry.1 = stored + pending;
        }
        Ok(())
    }

    /// Where `who` stands in `bucket` today (for quota headers).
    pub async fn quota_state(&self, who: &ApiPrincipal, bucket: Bucket) -> Result<QuotaState> {
        let now = self.clock.now();
        self.load_today(who.key_id, bucket, now.day()).await?;
        let used = self
            .quotas
            .counters
            .lock()
            .map_err(|_| poisoned())?
            .today
            .get(&(who.key_id, bucket as u8))
            .filter(|(d, _)| *d == now.day())
            .map_or(0, |(_, u)| *u);
        Ok(QuotaState {
            bucket,
            limit: bucket.limit(self.tiers.get(&who.tier)),
            used,
            reset_at_s: next_midnight_s(now),
        })
    }

    /// Units of `bucket` used today by `key_id` (stored plus pending).
    pub async fn usage_today(&self, key_id: u64, bucket: Bucket) -> Result<u64> {
        let day = self.clock.now().day();
        self.load_today(key_id, bucket, day).await?;
        Ok(self
            .quotas
            .counters
            .lock()
            .map_err(|_| poisoned())?
            .today
            .get(&(key_id, bucket as u8))
            .map_or(0, |(_, u)| *u))
    }

    /// Writes pending counters to the store, and last-used days of keys.
    pub async fn flush_usage(&self) -> Result<()> {
        let batch: HashMap<(u64, i64, u8), u64> = {
            let mut c = self.quotas.counters.lock().map_err(|_| poisoned())?;
            let today = self.clock.now().day();
            // Yesterday's counters are no longer needed in memory.
            c.today.retain(|_, (d, _)| *d >= today);
            std::mem::take(&mut c.pending)
        };
        let batch: Vec<_> = batch.into_iter().filter(|(_, n)| *n > 0).collect();
        if !batch.is_empty() {
            let written = batch.clone();
            let stored = self
                .store
                .write(move |txn| {
                    for ((k, d, b), n) in written {
                        store::usage::add(txn, k, d, b, n)?;
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = stored {
                // Keep the counts for the next flush rather than forget them.
                let mut c = self.quotas.counters.lock().map_err(|_| poisoned())?;
                for (k, n) in batch {
                    *c.pending.entry(k).or_default() += n;
                }
                return Err(e.into());
            }
        }
        self.flush_key_usage().await
    }
}
