//! Time as a value: `UnixMillis` and the `Clock` every expiry, quota reset
//! and rotation takes `now` from. Tests use a manual clock and never sleep.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct UnixMillis(pub i64);

pub const MILLIS_PER_DAY: i64 = 86_400_000;

impl UnixMillis {
    /// Days since the epoch (UTC), the unit of TTL buckets and daily counters.
    pub fn day(self) -> i64 {
        self.0.div_euclid(MILLIS_PER_DAY)
    }

    /// The next 00:00 UTC strictly after `self`.
    #[must_use]
    pub fn next_midnight(self) -> Self {
        Self((self.day() + 1) * MILLIS_PER_DAY)
    }

    #[must_use]
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// RFC 3339 with second precision, e.g. `2026-03-21T16:55:12Z`.
    pub fn rfc3339(self) -> String {
        let secs = self.0.div_euclid(1000);
        time::OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }
}

/// The source of `now`. Cloning shares the same underlying clock.
#[derive(Clone, Debug)]
pub struct Clock(Arc<Source>);

#[derive(Debug)]
enum Source {
    System,
    Manual(AtomicI64),
}

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(Source::System))
    }

    /// A clock that only moves when told to.
    pub fn manual(start: UnixMillis) -> Self {
        Self(Arc::new(Source::Manual(AtomicI64::new(start.0))))
    }

    pub fn now(&self) -> UnixMillis {
        match &*self.0 {
            Source::System => {
                let d = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                UnixMillis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }
            Source::Manual(t) => UnixMillis(t.load(Ordering::SeqCst)),
        }
    }

    /// Moves a manual clock forward; a system clock ignores it.
    pub fn advance(&self, d: Duration) {
        if let Source::Manual(t) = &*self.0 {
            t.fetch_add(
                i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
                Ordering::SeqCst,
            );
        }
    }

    /// Sets a manual clock; a system clock ignores it.
    pub fn set(&self, to: UnixMillis) {
        if let Source::Manual(t) = &*self.0 {
            t.store(to.0, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_midnights() {
        let t = UnixMillis(MILLIS_PER_DAY * 3 + 5);
        assert_eq!(t.day(), 3);
        assert_eq!(t.next_midnight(), UnixMillis(MILLIS_PER_DAY * 4));
        assert_eq!(UnixMillis(-1).day(), -1);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = Clock::manual(UnixMillis(1000));
        let shared = c.clone();
        assert_eq!(c.now(), UnixMillis(1000));
        shared.advance(Duration::from_secs(2));
        assert_eq!(c.now(), UnixMillis(3000));
        assert_eq!(
            UnixMillis(1_774_112_112_000).rfc3339(),
            "2026-03-21T16:55:12Z"
        );
    }
}
