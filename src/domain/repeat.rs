//! Repeat offenders: the compact history kept about an IP after its
//! indicator expired (how often, and the day of the last expiry — no
//! evidence), and what it changes: a score boost and a longer advertised
//! validity. Documented in `docs/scoring.md`.

use serde::{Deserialize, Serialize};

/// Raw score points per earlier expiry.
pub const POINTS_PER_EXPIRY: f64 = 10.0;
/// Earlier expiries that count towards the boost and the validity.
pub const MAX_COUNTED: u32 = 3;

/// What survives an indicator's expiry: a counter and a day number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// How many times an indicator of this IP expired.
    pub expiries: u32,
    /// The UTC day (days since the epoch) of the latest expiry.
    pub last_expiry_day: i64,
}

impl History {
    /// The history after one more expiry on `day`.
    #[must_use]
    pub fn after_expiry(self, day: i64) -> Self {
        Self {
            expiries: self.expiries.saturating_add(1),
            last_expiry_day: self.last_expiry_day.max(day),
        }
    }
}

/// The expiries that count (at most `MAX_COUNTED`).
pub fn counted(expiries: u32) -> u32 {
    expiries.min(MAX_COUNTED)
}

/// Raw points a repeat offender gets on top of its evidence.
pub fn boost_points(expiries: u32) -> f64 {
    f64::from(counted(expiries)) * POINTS_PER_EXPIRY
}

/// How long after its last evidence an indicator is advertised as valid
/// (STIX `valid_until`, the check's `validUntil`): the retention period,
/// plus half of it per counted earlier expiry. The stored indicator is
/// still purged after `retention_ms` without evidence.
pub fn validity_ms(retention_ms: i64, expiries: u32) -> i64 {
    retention_ms.saturating_add((retention_ms / 2).saturating_mul(i64::from(counted(expiries))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boost_and_validity_grow_then_stop() {
        let d30 = 30 * crate::domain::time::MILLIS_PER_DAY;
        assert!(boost_points(0).abs() < 1e-9);
        assert!((boost_points(1) - 10.0).abs() < 1e-9);
        assert!((boost_points(9) - 30.0).abs() < 1e-9);
        assert_eq!(validity_ms(d30, 0), d30);
        assert_eq!(validity_ms(d30, 1), d30 + d30 / 2);
        assert_eq!(validity_ms(d30, 3), d30 * 5 / 2);
        assert_eq!(validity_ms(d30, 50), d30 * 5 / 2);
        let h = History::default().after_expiry(100).after_expiry(90);
        assert_eq!(
            h,
            History {
                expiries: 2,
                last_expiry_day: 100
            }
        );
    }
}
