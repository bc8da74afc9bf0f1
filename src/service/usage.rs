//! Aggregate usage counters per API key, day and bucket. They are counted in
//! memory and flushed to the store every few seconds and at shutdown; they
//! are the only trace a lookup leaves (P05, P23).

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Error, Result, Services};
use crate::store;

/// What a request consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Bucket {
    Lookups = 1,
    Reports = 2,
    Blacklist = 3,
    Taxii = 4,
}

#[derive(Debug, Default)]
pub struct Usage {
    pending: Mutex<HashMap<(u64, i64, u8), u64>>,
}

impl Services {
    pub fn count_usage(&self, key_id: u64, bucket: Bucket, n: u64) {
        if n == 0 {
            return;
        }
        let day = self.clock.now().day();
        if let Ok(mut p) = self.usage.pending.lock() {
            *p.entry((key_id, day, bucket as u8)).or_default() += n;
        }
    }

    /// Units of `bucket` used today by `key_id` (stored plus pending).
    pub async fn usage_today(&self, key_id: u64, bucket: Bucket) -> Result<u64> {
        let day = self.clock.now().day();
        let pending = self
            .usage
            .pending
            .lock()
            .map_err(|_| Error::Internal {
                detail: "usage lock poisoned".into(),
            })?
            .get(&(key_id, day, bucket as u8))
            .copied()
            .unwrap_or(0);
        let stored = self
            .store
            .read(move |txn| store::usage::get(txn, key_id, day, bucket as u8))
            .await?;
        Ok(stored + pending)
    }

    pub async fn flush_usage(&self) -> Result<()> {
        let batch: HashMap<(u64, i64, u8), u64> = std::mem::take(
            &mut *self.usage.pending.lock().map_err(|_| Error::Internal {
                detail: "usage lock poisoned".into(),
            })?,
        );
        if !batch.is_empty() {
            self.store
                .write(move |txn| {
                    for ((k, d, b), n) in batch {
                        store::usage::add(txn, k, d, b, n)?;
                    }
                    Ok(())
                })
                .await?;
        }
        self.flush_key_usage().await
    }
}
