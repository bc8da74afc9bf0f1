//! Sensors (token stored only as a keyed hash) and the de-duplication keys
//! of their events and sessions.

use std::collections::HashSet;

use redb::{ReadTransaction, ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::tables::{DAY_SENSOR_EVENT, DAY_SENSOR_SESSION, SENSORID_SENSOR, TOKENHASH_SENSORID};
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

/// Where a session's row sits in the event table: under this `ts`, which
/// no event has (events are validated against the retention window), so
/// the row shares the page of the session's events.
const SESSION_ROW: i64 = i64::MIN;

/// The de-duplication table of one ingest transaction, opened once: the
/// events already counted, and under `SESSION_ROW` the sessions (and
/// session × name pairs) already counted.
pub struct Dedup<'t> {
    keys: Table<'t, (i64, u64, u64, i64, u64), ()>,
    /// Session keys already asked in this transaction: asked again, each
    /// is not the first (it is in the table now, or was found the day
    /// before), so the B-tree is not walked twice. Most events of a batch
    /// belong to a session another event of it opened.
    asked: HashSet<(i64, u64, u64, u64)>,
}

impl<'t> Dedup<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self> {
        Ok(Self {
            keys: txn.open_table(DAY_SENSOR_EVENT)?,
            asked: HashSet::new(),
        })
    }

    /// Records an event key (day, sensor, session, ts, content); false
    /// when it was already there.
    pub fn first_event(&mut self, key: (i64, u64, u64, i64, u64)) -> Result<bool> {
        debug_assert_ne!(key.3, SESSION_ROW);
        Ok(self.keys.insert(key, ())?.is_none())
    }

    /// Records a session (or session × name) on `day`; false when it was
    /// seen that day or the day before (sessions spanning midnight count
    /// once).
    pub fn first_session(
        &mut self,
        day: i64,
        sensor: u64,
        session: u64,
        name: u64,
    ) -> Result<bool> {
        if !self.asked.insert((day, sensor, session, name)) {
            return Ok(false);
        }
        if self
            .keys
            .get((day - 1, sensor, session, SESSION_ROW, name))?
            .is_some()
        {
            return Ok(false);
        }
        Ok(self
            .keys
            .insert((day, sensor, session, SESSION_ROW, name), ())?
            .is_none())
    }
}

/// Drops up to `max` de-duplication keys of days before `day`; returns how many.
pub fn delete_dedup_before(txn: &WriteTransaction, day: i64, max: usize) -> Result<usize> {
    let mut t = txn.open_table(DAY_SENSOR_EVENT)?;
    let keys: Vec<_> = t
        .range((i64::MIN, 0, 0, i64::MIN, 0)..(day, 0, 0, i64::MIN, 0))?
        .take(max)
        .map(|r| r.map(|(k, _)| k.value()))
        .collect::<Result<_, _>>()?;
    for k in &keys {
        t.remove(k)?;
    }
    Ok(keys.len())
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

    #[test]
    fn a_session_is_first_once_across_writers_and_midnight() {
        let (_dir, store) = crate::store::temp_store();
        let first = |day: i64, name: u64| {
            store
                .write_blocking(|txn| {
                    let mut d = Dedup::open(txn)?;
                    let a = d.first_session(day, 1, 7, name)?;
                    // Asked again through the same writer: seen.
                    let b = d.first_session(day, 1, 7, name)?;
                    Ok((a, b))
                })
                .unwrap()
        };
        assert_eq!(first(10, 0), (true, false));
        // Another writer, same day: stored.
        assert_eq!(first(10, 0), (false, false));
        // The next day: a session spanning midnight counts once.
        assert_eq!(first(11, 0), (false, false));
        // Another name of the same session is its own key.
        assert_eq!(first(10, 5), (true, false));
        // Two days on, the session is new again.
        assert_eq!(first(12, 0), (true, false));
        let events = store
            .write_blocking(|txn| {
                let mut d = Dedup::open(txn)?;
                Ok((
                    d.first_event((10, 1, 7, 99, 3))?,
                    d.first_event((10, 1, 7, 99, 3))?,
                ))
            })
            .unwrap();
        assert_eq!(events, (true, false));
        // Sessions and events of day 10 go with the day; later ones stay.
        let dropped = store
            .write_blocking(|txn| delete_dedup_before(txn, 11, 100))
            .unwrap();
        assert_eq!(dropped, 3, "two session rows and one event of day 10");
        assert_eq!(first(12, 0), (false, false), "day 12's row is kept");
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
                let mut d = Dedup::open(txn)?;
                let seen = (d.first_session(10, 1, 7, 0)?, d.first_session(11, 1, 7, 5)?);
                let left = redb::ReadableTableMetadata::len(&txn.open_table(DAY_SENSOR_SESSION)?)?;
                Ok((seen, left))
            })
            .unwrap();
        assert_eq!(moved, ((false, false), 0));
    }
}
