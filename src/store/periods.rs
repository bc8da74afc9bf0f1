//! The periods the TTL buckets were filed with. The day an indicator, an
//! attacked name, a repeat-offender history or an erased account's final
//! purge is filed under comes from a configured period. When the operator
//! changes one, every entry filed under the old period is filed again
//! under the new one before anything else reads or writes the store.
//! Without this, an update would look for its old key at the day the new
//! period gives and leave the real one behind, and the sweep would delete
//! by the old period: too early after a longer one, too late after a
//! shorter one.

use redb::WriteTransaction;
use serde::{Deserialize, Serialize};

use super::{Result, codec, indicators, meta, names, privacy, repeat};

/// The periods bucket days are computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Periods {
    /// Indicators and attacked names: last seen plus this.
    pub indicators_ms: i64,
    /// Repeat-offender histories: last expiry day plus this many days.
    pub repeat_keep_days: i64,
    /// An erased account's remainder: erasure plus this.
    pub account_after_deletion_ms: i64,
}

/// The stored form (frozen; a change adds `V2`).
#[derive(Serialize, Deserialize)]
enum DbPeriods {
    V1(Periods),
}

const KEY: &str = "bucket-periods";

/// What `refile` moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refiled {
    pub indicators: u64,
    pub names: u64,
    pub histories: u64,
    pub erased_accounts: u64,
}

/// The periods the buckets were last filed with (none before the first
/// `refile`: a store written by a version that did not record them).
///
/// A record that cannot be read counts as none: it only notes how the
/// buckets were filed, and filing every entry again is always right.
/// (Development builds between two commits wrote a first form of `V1`
/// with two periods; such a store is filed again once, not refused.)
pub fn filed_with(txn: &WriteTransaction) -> Result<Option<Periods>> {
    let Some(bytes) = meta::get_in_write(txn, KEY)? else {
        return Ok(None);
    };
    match codec::decode::<DbPeriods>("meta.bucket-periods", &bytes) {
        Ok(DbPeriods::V1(p)) => Ok(Some(p)),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable record of the bucket periods: every bucket is filed again");
            Ok(None)
        }
    }
}

/// Files every bucketed entry whose period differs from the one it was
/// filed with again under `now`, and records `now`. Nothing is written
/// when the periods did not change. A store that never recorded its
/// periods has everything filed again, whatever it was filed with.
pub fn refile(txn: &WriteTransaction, now: Periods) -> Result<Option<Refiled>> {
    refile_from(txn, filed_with(txn)?, now)
}

/// `refile` for a caller that has read [`filed_with`] already.
pub fn refile_from(
    txn: &WriteTransaction,
    before: Option<Periods>,
    now: Periods,
) -> Result<Option<Refiled>> {
    if before == Some(now) {
        return Ok(None);
    }
    let mut out = Refiled::default();
    if before.map(|p| p.indicators_ms) != Some(now.indicators_ms) {
        out.indicators = indicators::refile(txn, now.indicators_ms)?;
        out.names = names::refile(txn, names::Kind::Username, now.indicators_ms)?
            + names::refile(txn, names::Kind::Email, now.indicators_ms)?;
    }
    // A history of an IP with a live indicator is held until that
    // indicator's expiry day (`repeat::delete_expired`), which the
    // indicator period gives: it moves with either period.
    if before.map(|p| (p.repeat_keep_days, p.indicators_ms))
        != Some((now.repeat_keep_days, now.indicators_ms))
    {
        out.histories = repeat::refile(txn, now.repeat_keep_days)?;
    }
    if before.map(|p| p.account_after_deletion_ms) != Some(now.account_after_deletion_ms) {
        out.erased_accounts = privacy::refile_purges(txn, now.account_after_deletion_ms)?;
    }
    meta::set_bytes(txn, KEY, &codec::encode(&DbPeriods::V1(now)))?;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::MILLIS_PER_DAY as DAY;
    use crate::domain::{Indicator, IpKey, Protocol, UnixMillis};
    use crate::store::Store;

    fn periods(indicator_days: i64, keep_days: i64, account_days: i64) -> Periods {
        Periods {
            indicators_ms: indicator_days * DAY,
            repeat_keep_days: keep_days,
            account_after_deletion_ms: account_days * DAY,
        }
    }

    const ALL: Refiled = Refiled {
        indicators: 1,
        names: 1,
        histories: 1,
        erased_accounts: 1,
    };

    /// A store filed with 30-day periods: one indicator and one username
    /// last seen on day 100, the history of another IP whose indicator
    /// expired on day 100, and an account erased on day 100.
    fn filed_for_30_days() -> (tempfile::TempDir, Store) {
        let (dir, store) = crate::store::temp_store();
        let seen = UnixMillis(100 * DAY + 5);
        store
            .write_blocking(|txn| {
                let empty = Some(Refiled::default());
                assert_eq!(refile(txn, periods(30, 30, 30))?, empty);
                let ind = Indicator::new(ip(1), seen);
                indicators::put(txn, &ind, None, ind.expiry_day(30 * DAY), seen)?;
                names::bump(
                    txn,
                    names::Kind::Username,
                    "root",
                    Protocol::Ssh,
                    seen.0,
                    30 * DAY,
                )?;
                repeat::note_expiry(txn, ip(2), 100, 30)?;
                let erased = privacy::PrivacyState {
                    erased_ms: Some(seen.0),
                    ..privacy::PrivacyState::default()
                };
                privacy::put_state(txn, 7, &erased)?;
                privacy::schedule_purge(txn, 130, 7)
            })
            .unwrap();
        (dir, store)
    }

    fn ip(n: u8) -> IpKey {
        format!("45.33.32.{n}").parse().unwrap()
    }

    /// What the sweep of `day` deletes: indicators, usernames, histories,
    /// erased accounts.
    fn sweep(store: &Store, day: i64, p: Periods) -> (usize, usize, usize, usize) {
        store
            .write_blocking(|txn| {
                Ok((
                    indicators::delete_expired(txn, day, 100)?.len(),
                    names::delete_expired(txn, names::Kind::Username, day, 100)?,
                    repeat::delete_expired(txn, day, 100, p.indicators_ms)?.deleted,
                    privacy::take_due_purges(txn, day, 100)?.len(),
                ))
            })
            .unwrap()
    }

    #[test]
    fn an_unreadable_record_files_everything_again() {
        let (_dir, store) = filed_for_30_days();
        // The first form of `V1`: two periods, no account period.
        let two = codec::encode(&(0_u8, 30 * DAY, 30_i64));
        store
            .write_blocking(|txn| meta::set_bytes(txn, KEY, &two))
            .unwrap();
        let p = periods(30, 30, 30);
        let moved = store.write_blocking(|txn| refile(txn, p)).unwrap();
        assert_eq!(moved, Some(ALL));
        let now = store.write_blocking(filed_with).unwrap();
        assert_eq!(now, Some(p));
        assert_eq!(sweep(&store, 130, p), (0, 0, 0, 1));
        assert_eq!(sweep(&store, 131, p), (1, 1, 1, 0));
    }

    #[test]
    fn the_same_periods_move_nothing() {
        let (_dir, store) = filed_for_30_days();
        let p = periods(30, 30, 30);
        assert_eq!(store.write_blocking(|txn| refile(txn, p)).unwrap(), None);
        assert_eq!(sweep(&store, 129, p), (0, 0, 0, 0));
        assert_eq!(sweep(&store, 130, p), (0, 0, 0, 1));
        assert_eq!(sweep(&store, 131, p), (1, 1, 1, 0));
    }

    #[test]
    fn after_longer_periods_nothing_is_deleted_on_the_old_day_and_updates_find_their_key() {
        let (_dir, store) = filed_for_30_days();
        let longer = periods(90, 40, 60);
        let moved = store.write_blocking(|txn| refile(txn, longer)).unwrap();
        assert_eq!(moved, Some(ALL));
        // New evidence on day 104: moved from the day 90 days give (190)
        // to 194, with no key left behind at the 30-day one (130).
        let later = UnixMillis(104 * DAY);
        store
            .write_blocking(|txn| {
                let mut ind = indicators::get_in_write(txn, ip(1))?.unwrap();
                let old = ind.expiry_day(longer.indicators_ms);
                ind.set_seen(ind.first_seen, later);
                indicators::put(
                    txn,
                    &ind,
                    Some(old),
                    ind.expiry_day(longer.indicators_ms),
                    later,
                )
            })
            .unwrap();
        assert_eq!(sweep(&store, 131, longer), (0, 0, 0, 0));
        assert_eq!(sweep(&store, 141, longer), (0, 0, 1, 0));
        assert_eq!(sweep(&store, 159, longer), (0, 0, 0, 0));
        assert_eq!(sweep(&store, 160, longer), (0, 0, 0, 1));
        assert_eq!(sweep(&store, 194, longer), (0, 1, 0, 0));
        assert_eq!(sweep(&store, 195, longer), (1, 0, 0, 0));
    }

    #[test]
    fn after_shorter_periods_entries_are_deleted_on_the_new_day() {
        let (_dir, store) = filed_for_30_days();
        let shorter = periods(10, 5, 3);
        let moved = store.write_blocking(|txn| refile(txn, shorter)).unwrap();
        assert_eq!(moved, Some(ALL));
        assert_eq!(sweep(&store, 102, shorter), (0, 0, 0, 0));
        assert_eq!(sweep(&store, 103, shorter), (0, 0, 0, 1));
        assert_eq!(sweep(&store, 105, shorter), (0, 0, 0, 0));
        assert_eq!(sweep(&store, 106, shorter), (0, 0, 1, 0));
        assert_eq!(sweep(&store, 110, shorter), (0, 0, 0, 0));
        assert_eq!(sweep(&store, 111, shorter), (1, 1, 0, 0));
        let recorded = store.write_blocking(filed_with).unwrap();
        assert_eq!(recorded, Some(shorter));
    }

    #[test]
    fn a_history_held_for_a_live_indicator_follows_a_shorter_indicator_period() {
        let (_dir, store) = filed_for_30_days();
        // IP 2 is seen again on day 110 under 90-day indicators: its
        // history, due on day 130, is held until the indicator's day 200.
        let long = periods(90, 30, 30);
        store.write_blocking(|txn| refile(txn, long)).unwrap();
        let seen = UnixMillis(110 * DAY);
        store
            .write_blocking(|txn| {
                let ind = Indicator::new(ip(2), seen);
                indicators::put(txn, &ind, None, ind.expiry_day(long.indicators_ms), seen)
            })
            .unwrap();
        assert_eq!(sweep(&store, 131, long), (0, 0, 0, 1));
        // Indicators shortened to 10 days: both indicators (days 110 and
        // 120) and the username (110) go by day 130, and the history is
        // due again on day 130, not 200.
        let short = periods(10, 30, 30);
        let moved = store.write_blocking(|txn| refile(txn, short)).unwrap();
        assert_eq!(moved.map(|m| m.histories), Some(1));
        assert_eq!(sweep(&store, 130, short), (2, 1, 0, 0));
        assert_eq!(sweep(&store, 131, short), (0, 0, 1, 0));
    }

    #[test]
    fn only_the_changed_period_is_filed_again() {
        let (_dir, store) = filed_for_30_days();
        let moved = store
            .write_blocking(|txn| refile(txn, periods(30, 30, 3)))
            .unwrap();
        let only_accounts = Refiled {
            erased_accounts: 1,
            ..Refiled::default()
        };
        assert_eq!(moved, Some(only_accounts));
    }
}
