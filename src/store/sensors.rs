//! Sensors (token stored only as a keyed hash) and the de-duplication keys
//! of their events and sessions.

use std::collections::{HashMap, HashSet, hash_map};

use redb::{ReadTransaction, ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::long_sessions::{Kept, LongSessions};
use super::tables::{
    DAY_SENSOR_EVENT, DAY_SENSOR_SEEN, DAY_SENSOR_SESSION, SENSORID_SENSOR, TOKENHASH_SENSORID,
};
use super::{Result, codec, meta};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sensor {
    pub id: u64,
    pub name: String,
    pub token_hash: [u8; 32],
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
    pub last_event_ms: Option<i64>,
    pub events: u64,
}

#[derive(Serialize, Deserialize)]
enum DbSensor {
    V1(Sensor),
}

fn decode(b: &[u8]) -> Result<Sensor> {
    match codec::decode::<DbSensor>("sensorid_sensor", b)? {
        DbSensor::V1(s) => Ok(s),
    }
}

pub fn create(
    txn: &WriteTransaction,
    name: &str,
    token_hash: [u8; 32],
    now_ms: i64,
) -> Result<Sensor> {
    let id = meta::next_id(txn, "sensor")?;
    let s = Sensor {
        id,
        name: name.to_owned(),
        token_hash,
        created_ms: now_ms,
        revoked_ms: None,
        last_event_ms: None,
        events: 0,
    };
    put(txn, &s)?;
    txn.open_table(TOKENHASH_SENSORID)?.insert(token_hash, id)?;
    Ok(s)
}

pub fn put(txn: &WriteTransaction, s: &Sensor) -> Result<()> {
    txn.open_table(SENSORID_SENSOR)?
        .insert(s.id, codec::encode(&DbSensor::V1(s.clone())).as_slice())?;
    Ok(())
}

pub fn by_token(txn: &ReadTransaction, hash: [u8; 32]) -> Result<Option<Sensor>> {
    let Some(id) = txn
        .open_table(TOKENHASH_SENSORID)?
        .get(hash)?
        .map(|v| v.value())
    else {
        return Ok(None);
    };
    get(txn, id)
}

pub fn get(txn: &ReadTransaction, id: u64) -> Result<Option<Sensor>> {
    txn.open_table(SENSORID_SENSOR)?
        .get(id)?
        .map(|v| decode(v.value()))
        .transpose()
}

pub fn get_in_write(txn: &WriteTransaction, id: u64) -> Result<Option<Sensor>> {
    let t = txn.open_table(SENSORID_SENSOR)?;
    t.get(id)?.map(|v| decode(v.value())).transpose()
}

pub fn list(txn: &ReadTransaction) -> Result<Vec<Sensor>> {
    let t = txn.open_table(SENSORID_SENSOR)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        out.push(decode(item?.1.value())?);
    }
    Ok(out)
}

/// Where a session's row sat in `day_sensor_event` (schema 6 and 7): under
/// this `ts`, which no event has.
const SESSION_ROW: i64 = i64::MIN;

/// Fingerprints per `day_sensor_seen` row: a long session's rows stay
/// small, and a batch rewrites only the last.
pub const CHUNK: usize = 256;

/// The fingerprints of a session itself and of its names have the top
/// bit set; an event's has it clear.
const NAMED: u64 = 1 << 63;

/// An event's fingerprint: its time and content hash (itself a keyed
/// hash), mixed.
fn event_fp(ts: i64, content: u64) -> u64 {
    (content
        ^ ts.cast_unsigned()
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29))
        & !NAMED
}

/// A session's (`name` 0) or a session × name pair's fingerprint.
fn name_fp(name: u64) -> u64 {
    name | NAMED
}

/// Row format version of `day_sensor_seen` values.
const SEEN_V1: u8 = 1;

fn encode_seen(fps: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 * fps.len());
    out.push(SEEN_V1);
    for fp in fps {
        out.extend_from_slice(&fp.to_le_bytes());
    }
    out
}

fn decode_seen(b: &[u8], out: &mut Vec<u64>) -> Result<()> {
    match b.split_first() {
        Some((&SEEN_V1, fps)) if fps.len() % 8 == 0 => {
            out.extend(fps.chunks_exact(8).map(|c| {
                let mut b = [0; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            }));
            Ok(())
        }
        _ => Err(super::Error::Corrupt(
            "day_sensor_seen: not a fingerprint row".into(),
        )),
    }
}

/// The keys of a session's rows of a day, (day, sensor, session).
fn session_rows(key: (i64, u64, u64)) -> std::ops::RangeInclusive<(i64, u64, u64, u32)> {
    let (day, sensor, session) = key;
    (day, sensor, session, 0)..=(day, sensor, session, u32::MAX)
}

/// The de-duplication state of one ingest transaction: per session and
/// day asked, what it had counted (read once), and what this transaction
/// adds (written by `finish`).
pub struct Dedup<'t> {
    seen: Table<'t, (i64, u64, u64, u32), &'static [u8]>,
    /// Long sessions' states kept between transactions.
    long: &'t LongSessions,
    days: HashMap<(i64, u64, u64), SessionDay>,
}

/// One session's day.
#[derive(Default)]
struct SessionDay {
    /// Stored fingerprints, sorted.
    stored: Vec<u64>,
    /// Stored fingerprints not in `stored` yet (a long session's
    /// newest, kept between transactions; `Kept`).
    recent: HashSet<u64>,
    /// The last stored row: its chunk number and fingerprints.
    last: Option<(u32, Vec<u64>)>,
    /// Counted in this transaction.
    added: HashSet<u64>,
}

impl SessionDay {
    fn has(&self, fp: u64) -> bool {
        self.added.contains(&fp)
            || self.recent.contains(&fp)
            || self.stored.binary_search(&fp).is_ok()
    }
}

impl<'t> Dedup<'t> {
    /// `long` is the store's (`Store::long_sessions`).
    pub fn open(txn: &'t WriteTransaction, long: &'t LongSessions) -> Result<Self> {
        Ok(Self {
            seen: txn.open_table(DAY_SENSOR_SEEN)?,
            long,
            days: HashMap::new(),
        })
    }

    /// The state kept for the session's `day` if its last row is still
    /// the one kept.
    fn kept_in(
        seen: &Table<'t, (i64, u64, u64, u32), &'static [u8]>,
        long: &LongSessions,
        key: (i64, u64, u64),
    ) -> Result<Option<SessionDay>> {
        let Some(kept) = long.take(key) else {
            return Ok(None);
        };
        let last = seen.range(session_rows(key))?.next_back().transpose()?;
        let Some((k, val)) = last else {
            return Ok(None);
        };
        let mut fps = Vec::new();
        decode_seen(val.value(), &mut fps)?;
        Ok(
            (k.value().3 == kept.last.0 && fps == kept.last.1).then(|| SessionDay {
                stored: kept.stored,
                recent: kept.recent,
                last: Some(kept.last),
                added: HashSet::new(),
            }),
        )
    }

    /// The session's `day`, read on first use.
    fn day(&mut self, key: (i64, u64, u64)) -> Result<&mut SessionDay> {
        match self.days.entry(key) {
            hash_map::Entry::Occupied(o) => Ok(o.into_mut()),
            hash_map::Entry::Vacant(v) => {
                if let Some(d) = Self::kept_in(&self.seen, self.long, key)? {
                    return Ok(v.insert(d));
                }
                let mut d = SessionDay::default();
                for row in self.seen.range(session_rows(key))? {
                    let (k, val) = row?;
                    let mut fps = Vec::new();
                    decode_seen(val.value(), &mut fps)?;
                    d.stored.extend_from_slice(&fps);
                    d.last = Some((k.value().3, fps));
                }
                d.stored.sort_unstable();
                Ok(v.insert(d))
            }
        }
    }

    /// Counts an event (day, sensor, session, ts, content hash); false
    /// when it was counted before.
    pub fn first_event(&mut self, key: (i64, u64, u64, i64, u64)) -> Result<bool> {
        let (day, sensor, session, ts, content) = key;
        let fp = event_fp(ts, content);
        let d = self.day((day, sensor, session))?;
        Ok(!d.has(fp) && d.added.insert(fp))
    }

    /// Counts a session (`name` 0) or session × name on `day`; false when
    /// it was counted that day or the day before (sessions spanning
    /// midnight count once).
    pub fn first_session(
        &mut self,
        day: i64,
        sensor: u64,
        session: u64,
        name: u64,
    ) -> Result<bool> {
        let fp = name_fp(name);
        if self.day((day, sensor, session))?.has(fp)
            || self.day((day - 1, sensor, session))?.has(fp)
        {
            return Ok(false);
        }
        Ok(self.day((day, sensor, session))?.added.insert(fp))
    }

    /// Writes what this transaction counted: the last row of each session
    /// day filled up to `CHUNK`, then new rows.
    ///
    /// A session of more than one row is then kept in memory for the
    /// next transaction (`long_sessions`).
    pub fn finish(mut self) -> Result<()> {
        for (key, d) in self.days.drain() {
            let (day, sensor, session) = key;
            let SessionDay {
                stored,
                recent,
                last,
                added,
            } = d;
            if added.is_empty() {
                if let Some(last) = last
                    && stored.len() + recent.len() > CHUNK
                {
                    self.long.keep(
                        key,
                        Kept {
                            stored,
                            recent,
                            last,
                        },
                    );
                }
                continue;
            }
            let mut added: Vec<u64> = added.into_iter().collect();
            added.sort_unstable();
            let (mut chunk, mut row) = match last {
                Some((n, fps)) if fps.len() < CHUNK => (n, fps),
                Some((n, _)) => (n + 1, Vec::new()),
                None => (0, Vec::new()),
            };
            let mut rest = added.as_slice();
            loop {
                let take = rest.len().min(CHUNK - row.len());
                row.extend_from_slice(&rest[..take]);
                row.sort_unstable();
                rest = &rest[take..];
                self.seen
                    .insert((day, sensor, session, chunk), encode_seen(&row).as_slice())?;
                if rest.is_empty() {
                    break;
                }
                chunk += 1;
                row.clear();
            }
            if stored.len() + recent.len() + added.len() > CHUNK {
                self.long
                    .keep(key, Kept::grown(stored, recent, &added, (chunk, row)));
            }
        }
        Ok(())
    }
}

/// Drops up to `max` de-duplication rows of days before `day`; returns how many.
pub fn delete_dedup_before(txn: &WriteTransaction, day: i64, max: usize) -> Result<usize> {
    let mut t = txn.open_table(DAY_SENSOR_SEEN)?;
    let keys: Vec<_> = t
        .range((i64::MIN, 0, 0, 0)..(day, 0, 0, 0))?
        .take(max)
        .map(|r| r.map(|(k, _)| k.value()))
        .collect::<Result<_, _>>()?;
    for k in &keys {
        t.remove(k)?;
    }
    Ok(keys.len())
}

/// Schema 7 → 8: the de-duplication keys of `day_sensor_event`, one row
/// per event, session and session × name, become one fingerprint row per
/// session and day (and `CHUNK` fingerprints) in `day_sensor_seen`: an
/// ingest transaction writes one row per session instead of one per
/// event. The old table stays, empty, so backups of older schemas still
/// restore (and migrate).
pub(super) fn fold_dedup_keys(txn: &WriteTransaction) -> Result<()> {
    super::tables::create_all(txn)?;
    {
        let old = txn.open_table(DAY_SENSOR_EVENT)?;
        let mut seen = txn.open_table(DAY_SENSOR_SEEN)?;
        let mut flush = |key: (i64, u64, u64), fps: &mut Vec<u64>| -> Result<()> {
            fps.sort_unstable();
            fps.dedup();
            for (n, chunk) in fps.chunks(CHUNK).enumerate() {
                let n = u32::try_from(n).map_err(|_| {
                    super::Error::Corrupt("day_sensor_event: session too long".into())
                })?;
                seen.insert((key.0, key.1, key.2, n), encode_seen(chunk).as_slice())?;
            }
            fps.clear();
            Ok(())
        };
        let mut current: Option<(i64, u64, u64)> = None;
        let mut fps = Vec::new();
        for row in old.iter()? {
            let (day, sensor, session, ts, last) = row?.0.value();
            if current != Some((day, sensor, session)) {
                if let Some(key) = current {
                    flush(key, &mut fps)?;
                }
                current = Some((day, sensor, session));
            }
            fps.push(if ts == SESSION_ROW {
                name_fp(last)
            } else {
                event_fp(ts, last)
            });
        }
        if let Some(key) = current {
            flush(key, &mut fps)?;
        }
    }
    txn.delete_table(DAY_SENSOR_EVENT)?;
    txn.open_table(DAY_SENSOR_EVENT)?;
    Ok(())
}

/// Schema 5 → 6: the session keys of `day_sensor_session` move into the
/// event table under `SESSION_ROW`, beside their sessions' events (one
/// page written per session instead of two); the old table stays, empty,
/// so backups of older schemas still restore (and migrate).
pub(super) fn move_session_keys(txn: &WriteTransaction) -> Result<()> {
    super::tables::create_all(txn)?;
    let mut old = txn.open_table(DAY_SENSOR_SESSION)?;
    let mut keys = txn.open_table(DAY_SENSOR_EVENT)?;
    while let Some((k, ())) = old.pop_first()?.map(|(k, v)| (k.value(), v.value())) {
        let (day, sensor, session, name) = k;
        keys.insert((day, sensor, session, SESSION_ROW, name), ())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a `Dedup` of one transaction, then writes it.
    fn with_dedup<T>(store: &crate::store::Store, f: impl FnOnce(&mut Dedup) -> Result<T>) -> T {
        with_long(store, &store.long_sessions(), f)
    }

    /// `with_dedup` with the long sessions of `long`.
    fn with_long<T>(
        store: &crate::store::Store,
        long: &LongSessions,
        f: impl FnOnce(&mut Dedup) -> Result<T>,
    ) -> T {
        store
            .write_blocking(|txn| {
                let mut d = Dedup::open(txn, long)?;
                let out = f(&mut d)?;
                d.finish()?;
                Ok(out)
            })
            .unwrap()
    }

    fn rows(store: &crate::store::Store) -> Vec<((i64, u64, u64, u32), usize)> {
        store
            .read_blocking(|txn| {
                let t = txn.open_table(DAY_SENSOR_SEEN)?;
                let mut out = Vec::new();
                for row in t.iter()? {
                    let (k, v) = row?;
                    out.push((k.value(), (v.value().len() - 1) / 8));
                }
                Ok(out)
            })
            .unwrap()
    }

    #[test]
    fn a_session_is_first_once_across_writers_and_midnight() {
        let (_dir, store) = crate::store::temp_store();
        let first = |day: i64, name: u64| {
            with_dedup(&store, |d| {
                let a = d.first_session(day, 1, 7, name)?;
                // Asked again in the same transaction: seen.
                let b = d.first_session(day, 1, 7, name)?;
                Ok((a, b))
            })
        };
        assert_eq!(first(10, 0), (true, false));
        // Another transaction, same day: stored.
        assert_eq!(first(10, 0), (false, false));
        // The next day: a session spanning midnight counts once.
        assert_eq!(first(11, 0), (false, false));
        // Another name of the same session is its own key.
        assert_eq!(first(10, 5), (true, false));
        // Two days on, the session is new again.
        assert_eq!(first(12, 0), (true, false));
        let events = with_dedup(&store, |d| {
            Ok((
                d.first_event((10, 1, 7, 99, 3))?,
                d.first_event((10, 1, 7, 99, 3))?,
                // Same content at another time, or in another session.
                d.first_event((10, 1, 7, 98, 3))?,
                d.first_event((10, 1, 8, 99, 3))?,
            ))
        });
        assert_eq!(events, (true, false, true, true));
        assert!(!with_dedup(&store, |d| d.first_event((10, 1, 7, 99, 3))));
        // An event's fingerprint never stands for a session or a name.
        assert!(with_dedup(&store, |d| d.first_session(10, 1, 8, 0)));
        // One row per session and day, whatever it counted.
        assert_eq!(
            rows(&store),
            vec![((10, 1, 7, 0), 4), ((10, 1, 8, 0), 2), ((12, 1, 7, 0), 1)]
        );
        // Day 10 goes with the day; later ones stay.
        let dropped = store
            .write_blocking(|txn| delete_dedup_before(txn, 11, 100))
            .unwrap();
        assert_eq!(dropped, 2, "the rows of day 10");
        assert_eq!(first(12, 0), (false, false), "day 12's row is kept");
    }

    #[test]
    fn a_long_session_fills_rows_of_chunk_fingerprints() {
        let (_dir, store) = crate::store::temp_store();
        let n = i64::try_from(CHUNK).unwrap();
        // One transaction of 1.5 chunks, then half a chunk more.
        let counted = with_dedup(&store, |d| {
            (0..n + n / 2).try_fold(0, |c, ts| {
                Ok(c + usize::from(d.first_event((10, 1, 7, ts, 1))?))
            })
        });
        assert_eq!(counted, CHUNK + CHUNK / 2);
        assert_eq!(
            rows(&store),
            vec![((10, 1, 7, 0), CHUNK), ((10, 1, 7, 1), CHUNK / 2)]
        );
        let counted = with_dedup(&store, |d| {
            (0..2 * n).try_fold(0, |c, ts| {
                Ok(c + usize::from(d.first_event((10, 1, 7, ts, 1))?))
            })
        });
        assert_eq!(counted, CHUNK / 2, "only the new half");
        assert_eq!(
            rows(&store),
            vec![((10, 1, 7, 0), CHUNK), ((10, 1, 7, 1), CHUNK)]
        );
        assert!(with_dedup(&store, |d| d.first_event((10, 1, 7, 2 * n, 1))));
        assert_eq!(rows(&store).len(), 3);
        // Every one of them is still known.
        let again = with_dedup(&store, |d| {
            (0..=2 * n).try_fold(0, |c, ts| {
                Ok(c + usize::from(d.first_event((10, 1, 7, ts, 1))?))
            })
        });
        assert_eq!(again, 0);
    }

    /// Counts events `ts` in `range` (content 1) of session 7 on day 10.
    fn count(
        store: &crate::store::Store,
        long: &LongSessions,
        range: std::ops::Range<i64>,
    ) -> usize {
        with_long(store, long, |d| {
            range.clone().try_fold(0, |c, ts| {
                Ok(c + usize::from(d.first_event((10, 1, 7, ts, 1))?))
            })
        })
    }

    /// Writes row `chunk` of session 7 on day 10 without `Dedup`.
    fn put_row(store: &crate::store::Store, chunk: u32, fps: &[u64]) {
        store
            .write_blocking(|txn| {
                txn.open_table(DAY_SENSOR_SEEN)?
                    .insert((10, 1, 7, chunk), encode_seen(fps).as_slice())?;
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_long_session_is_kept_between_transactions_while_its_last_row_matches() {
        let (_dir, store) = crate::store::temp_store();
        let long = LongSessions::default();
        assert_eq!(count(&store, &long, 0..600), 600);
        assert_eq!(long.held(), (1, 600), "three rows: kept");
        // A short session is not kept.
        assert!(with_long(&store, &long, |d| d.first_event((10, 1, 8, 0, 1))));
        assert_eq!(long.held(), (1, 600));
        // Row 0 (the 256 smallest fingerprints) replaced behind `Dedup`'s
        // back by other events': the kept state still answers, so the
        // rows were not read again.
        let mut other: Vec<u64> = (0..256).map(|ts| event_fp(ts, 2)).collect();
        other.sort_unstable();
        put_row(&store, 0, &other);
        assert_eq!(count(&store, &long, 0..600), 0);
        let other_known =
            |long: &LongSessions| !with_long(&store, long, |d| d.first_event((10, 1, 7, 5, 2)));
        // A reader without it sees the replaced row (and writes again
        // what it lost).
        assert_eq!(count(&store, &LongSessions::default(), 0..600), 256);
        // The last row is no longer the kept one: read again.
        assert!(other_known(&long));
        assert_eq!(count(&store, &long, 0..600), 0);
        // Same when a row is added behind its back.
        put_row(&store, 100, &[event_fp(700, 1)]);
        assert_eq!(count(&store, &long, 700..701), 0, "row 100 was read");
    }

    #[test]
    fn a_state_kept_by_a_failed_transaction_is_not_trusted() {
        let (_dir, store) = crate::store::temp_store();
        let long = LongSessions::default();
        assert_eq!(count(&store, &long, 0..600), 600);
        for extra in [10, 300] {
            let failed = store.write_blocking(|txn| {
                let mut d = Dedup::open(txn, &long)?;
                for ts in 600..600 + extra {
                    d.first_event((10, 1, 7, ts, 1))?;
                }
                d.finish()?;
                Err::<(), _>(crate::store::Error::Corrupt("rolled back".into()))
            });
            assert!(failed.is_err());
            assert_eq!(long.held(), (1, 600 + usize::try_from(extra).unwrap()));
            assert_eq!(
                count(&store, &long, 600..600 + extra),
                usize::try_from(extra).unwrap(),
                "the rolled-back events are new"
            );
            assert_eq!(count(&store, &long, 0..600 + extra), 0);
            // Back to 600 stored for the next round.
            store
                .write_blocking(|txn| {
                    let mut t = txn.open_table(DAY_SENSOR_SEEN)?;
                    let keys: Vec<_> = t
                        .range(session_rows((10, 1, 7)))?
                        .map(|r| r.map(|(k, _)| k.value()))
                        .collect::<Result<_, _>>()?;
                    for k in keys {
                        t.remove(k)?;
                    }
                    Ok(())
                })
                .unwrap();
            assert_eq!(count(&store, &LongSessions::default(), 0..600), 600);
        }
    }

    #[test]
    fn kept_sessions_are_bounded_and_recent() {
        let (_dir, store) = crate::store::temp_store();
        let long = LongSessions::with_max_fingerprints(700);
        let fill = |day: i64, session: u64| {
            with_long(&store, &long, |d| {
                (0..300).try_for_each(|ts| d.first_event((day, 1, session, ts, 1)).map(drop))
            });
        };
        fill(10, 1);
        fill(10, 2);
        assert_eq!(long.held(), (2, 600));
        fill(11, 3);
        assert_eq!(long.held(), (2, 600), "one of day 10 made room");
        fill(14, 4);
        assert_eq!(long.held(), (1, 300), "days 10 and 11 are too old");
        // A session larger than the bound is not kept, and still counts.
        let big = LongSessions::with_max_fingerprints(100);
        assert_eq!(count(&store, &big, 0..300), 300);
        assert_eq!(big.held(), (0, 0));
        assert_eq!(count(&store, &big, 0..300), 0);
    }

    #[test]
    fn events_out_of_order_across_midnight_in_one_transaction() {
        let (_dir, store) = crate::store::temp_store();
        let got = with_dedup(&store, |d| {
            Ok((
                d.first_session(13, 1, 9, 3)?,
                d.first_session(12, 1, 9, 4)?,
                d.first_session(13, 1, 9, 4)?,
            ))
        });
        assert_eq!(got, (true, true, false), "name 4 was seen on day 12");
    }

    #[test]
    fn the_keys_of_schema_7_fold_into_fingerprint_rows() {
        let (_dir, store) = crate::store::temp_store();
        let long = i64::try_from(CHUNK).unwrap() + 10;
        store
            .write_blocking(|txn| {
                let mut old = txn.open_table(DAY_SENSOR_EVENT)?;
                old.insert((10, 1, 7, SESSION_ROW, 0), ())?;
                old.insert((10, 1, 7, SESSION_ROW, 5), ())?;
                old.insert((10, 1, 7, 1_000, 42), ())?;
                for ts in 0..long {
                    old.insert((11, 2, 8, ts, 1), ())?;
                }
                drop(old);
                fold_dedup_keys(txn)
            })
            .unwrap();
        assert_eq!(
            rows(&store),
            vec![
                ((10, 1, 7, 0), 3),
                ((11, 2, 8, 0), CHUNK),
                ((11, 2, 8, 1), 10)
            ]
        );
        let seen = with_dedup(&store, |d| {
            Ok([
                d.first_session(10, 1, 7, 0)?,
                d.first_session(11, 1, 7, 5)?,
                d.first_event((10, 1, 7, 1_000, 42))?,
                d.first_event((11, 2, 8, 0, 1))?,
                d.first_event((11, 2, 8, long - 1, 1))?,
            ])
        });
        assert_eq!(seen, [false; 5], "everything stored before is known");
        assert!(with_dedup(&store, |d| d.first_event((10, 1, 7, 1_001, 42))));
        let left = store
            .read_blocking(|txn| {
                Ok(redb::ReadableTableMetadata::len(
                    &txn.open_table(DAY_SENSOR_EVENT)?,
                )?)
            })
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn legacy_session_keys_move_beside_their_events() {
        let (_dir, store) = crate::store::temp_store();
        let moved = store
            .write_blocking(|txn| {
                let mut old = txn.open_table(DAY_SENSOR_SESSION)?;
                old.insert((10, 1, 7, 0), ())?;
                old.insert((10, 1, 7, 5), ())?;
                drop(old);
                move_session_keys(txn)?;
                fold_dedup_keys(txn)?;
                let long = LongSessions::default();
                let mut d = Dedup::open(txn, &long)?;
                let seen = (d.first_session(10, 1, 7, 0)?, d.first_session(11, 1, 7, 5)?);
                let left = redb::ReadableTableMetadata::len(&txn.open_table(DAY_SENSOR_SESSION)?)?;
                Ok((seen, left))
            })
            .unwrap();
        assert_eq!(moved, ((false, false), 0));
    }

    #[test]
    fn a_row_that_is_no_fingerprint_row_is_an_error() {
        let mut out = Vec::new();
        assert!(decode_seen(&[2, 0, 0, 0, 0, 0, 0, 0, 0], &mut out).is_err());
        assert!(decode_seen(&[SEEN_V1, 1, 2, 3], &mut out).is_err());
        assert!(decode_seen(&[], &mut out).is_err());
        decode_seen(&encode_seen(&[7, u64::MAX]), &mut out).unwrap();
        assert_eq!(out, vec![7, u64::MAX]);
    }
}
