//! Sensors: admin-created tokens (stored as keyed hashes) and the ingest of
//! event batches. A batch is validated whole, then written in one
//! transaction: it is stored completely, durably, or not at all.

use std::collections::{BTreeMap, HashMap, btree_map};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::reports::expiry_day;
use super::threat::{Publish, indicator_for_update, summary_in_write};
use super::{Error, Result, Services};
use crate::crypto;
use crate::domain::{EventKind, Indicator, IpKey, Protocol, SensorEvent, UnixMillis};
use crate::store::evidence_writer::EvidenceWriter;
use crate::store::{self, names, sensors::Sensor};

/// What one stored batch yields: its outcome and the evidence for alerts.
pub type Ingested = (IngestOutcome, super::alerts::Evidence);

const PURPOSE: &str = "sensor-token";
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Events may be this far in the future (clock skew) at most.
const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// An event as a sensor sends it (and as `sikker sensor` writes it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct WireEvent {
    pub ts: serde_json::Value,
    pub src_ip: String,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    pub session_id: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_hash: Option<String>,
    /// The HTTP request method (`GET`, `POST` …) of an `http_request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
}

/// One refused event (`line` is 1-based: the NDJSON line or array position).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EventError {
    pub line: usize,
    pub field: String,
    pub error: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestOutcome {
    pub received: usize,
    pub accepted: usize,
    pub duplicates: usize,
}

fn parse_ts(v: &serde_json::Value) -> Option<UnixMillis> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().map(UnixMillis),
        serde_json::Value::String(s) => {
            let t = time::OffsetDateTime::parse(
                s.trim(),
                &time::format_description::well_known::Rfc3339,
            )
            .ok()?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                .ok()
                .map(UnixMillis)
        }
        _ => None,
    }
}

fn limited(
    field: &'static str,
    v: Option<&String>,
    max: usize,
) -> Result<Option<String>, (&'static str, String)> {
    match v.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) if s.chars().count() > max => Err((field, format!("longer than {max} characters"))),
        Some(s) if s.chars().any(char::is_control) => {
            Err((field, "contains control characters".into()))
        }
        Some(s) => Ok(Some(s.to_owned())),
    }
}

/// Validates one wire event against `now` and the retention window.
pub fn validate_event(
    w: &WireEvent,
    now: UnixMillis,
    retention_ms: i64,
) -> Result<SensorEvent, (&'static str, String)> {
    let ts = parse_ts(&w.ts).ok_or(("ts", "must be RFC 3339 or epoch milliseconds".to_owned()))?;
    if ts.0 > now.0 + MAX_SKEW_MS {
        return Err(("ts", "is in the future".into()));
    }
    if ts.0 <= now.0 - retention_ms {
        return Err(("ts", "is older than the retention period".into()));
    }
    let src_ip: IpKey = w
        .src_ip
        .trim()
        .parse()
        .map_err(|_| ("src_ip", "Invalid IP address".to_owned()))?;
    if !src_ip.is_public() {
        return Err((
            "src_ip",
            "Private, reserved or non-routable IP address".into(),
        ));
    }
    let protocol: Protocol = w
        .protocol
        .parse()
        .map_err(|()| ("protocol", format!("unknown protocol '{}'", w.protocol)))?;
    let kind = match w.kind.trim().to_ascii_lowercase().as_str() {
        "connect" | "connection" => EventKind::Connect,
        "auth" | "login" => EventKind::Auth,
        "command" => EventKind::Command,
        "http_request" | "http" => EventKind::HttpRequest,
        "mail" | "email" => EventKind::Mail,
        other => {
            return Err((
                "kind",
                format!("unknown kind '{other}' (connect, auth, command, http_request, mail)"),
            ));
        }
    };
    let session_id = limited("session_id", Some(&w.session_id), 128)?
        .ok_or(("session_id", "is required".to_owned()))?;
    let email = limited("email", w.email.as_ref(), 254)?.map(|e| e.to_ascii_lowercase());
    if email.as_deref().is_some_and(|e| !valid_email(e)) {
        return Err(("email", "is not an e-mail address".into()));
    }
    let ev = SensorEvent {
        ts,
        src_ip,
        protocol,
        dst_port: w.dst_port,
        session_id,
        kind,
        username: limited("username", w.username.as_ref(), 128)?,
        email,
        command: limited("command", w.command.as_ref(), 4096)?,
        http_path: limited("http_path", w.http_path.as_ref(), 4096)?,
        user_agent: limited("user_agent", w.user_agent.as_ref(), 512)?,
        credential_hash: limited("credential_hash", w.credential_hash.as_ref(), 128)?,
        http_method: limited("http_method", w.http_method.as_ref(), 16)?,
    };
    if ev.http_method.as_deref().is_some_and(|m| {
        !m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) {
        return Err(("http_method", "must be a method token such as GET".into()));
    }
    match ev.kind {
        EventKind::Command if ev.command.is_none() => {
            Err(("command", "is required for kind command".into()))
        }
        EventKind::HttpRequest if ev.http_path.is_none() => {
            Err(("http_path", "is required for kind http_request".into()))
        }
        EventKind::Mail if ev.email.is_none() => Err(("email", "is required for kind mail".into())),
        _ => Ok(ev),
    }
}

/// An event's de-duplication keys: its session, its content and its
/// session × username pair (keyed hashes), with the lower-cased username.
struct EventKeys {
    session: u64,
    content: u64,
    username: Option<(String, u64)>,
}

impl EventKeys {
    fn of(secret: &crate::crypto::SecretKey, ev: &SensorEvent) -> Self {
        let h = |s: &str| {
            let b = secret.keyed_hash("sensor-dedup", s.as_bytes());
            u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        };
        Self {
            session: h(&ev.session_id),
            content: h(&canonical(ev)),
            username: ev.username.as_ref().map(|u| {
                let lower = u.to_lowercase();
                let name = h(&lower);
                (lower, name)
            }),
        }
    }
}

/// A stable rendering of an event's content, for de-duplication.
fn canonical(ev: &SensorEvent) -> String {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    format!(
        "{}\u{1f}{}\u{1f}{:?}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
        ev.src_ip,
        ev.protocol,
        ev.kind,
        ev.dst_port.unwrap_or(0),
        o(&ev.username),
        o(&ev.email),
        o(&ev.command),
        o(&ev.http_path),
        o(&ev.user_agent),
        o(&ev.credential_hash),
        o(&ev.http_method)
    )
}

pub fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.contains(char::is_whitespace)
}

impl Services {
    /// Creates a sensor; its token is returned once.
    pub async fn create_sensor(&self, name: &str) -> Result<(String, Sensor)> {
        let name = name.trim().to_owned();
        if name.is_empty() || name.len() > 64 {
            return Err(Error::invalid("name", "must be 1 to 64 characters"));
        }
        let token = format!("sks_{}", crypto::random_token());
        let hash = self.secret.keyed_hash(PURPOSE, token.as_bytes());
        let now = self.clock.now().0;
        let s = self
            .store
            .write(move |txn| store::sensors::create(txn, &name, hash, now))
            .await?;
        Ok((token, s))
    }

    pub async fn revoke_sensor(&self, id: u64) -> Result<Sensor> {
        let now = self.clock.now().0;
        self.store
            .write(move |txn| {
                let Some(mut s) = store::sensors::get_in_write(txn, id)? else {
                    return Ok(None);
                };
                s.revoked_ms.get_or_insert(now);
                store::sensors::put(txn, &s)?;
                Ok(Some(s))
            })
            .await?
            .ok_or_else(|| Error::not_found(format!("sensor {id}")))
    }

    pub async fn list_sensors(&self) -> Result<Vec<Sensor>> {
        Ok(self.store.read(store::sensors::list).await?)
    }

    pub async fn authenticate_sensor(&self, token: Option<&str>) -> Result<Sensor> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(Error::Unauthenticated {
                reason: "missing sensor token".into(),
            });
        };
        let hash = self.secret.keyed_hash(PURPOSE, token.as_bytes());
        match self
            .store
            .read(move |txn| store::sensors::by_token(txn, hash))
            .await?
        {
            None => Err(Error::Unauthenticated {
                reason: "invalid sensor token".into(),
            }),
            Some(s) if s.revoked_ms.is_some() => Err(Error::Forbidden {
                reason: "sensor token revoked".into(),
            }),
            Some(s) => Ok(s),
        }
    }

    /// Validates every event; any error refuses the whole batch unchanged.
    pub fn validate_batch(
        &self,
        events: &[WireEvent],
    ) -> Result<Vec<SensorEvent>, Vec<EventError>> {
        let now = self.clock.now();
        let mut ok = Vec::with_capacity(events.len());
        let mut errors = Vec::new();
        for (i, w) in events.iter().enumerate() {
            match validate_event(w, now, self.retention.reports_ms) {
                Ok(e) => ok.push(e),
                Err((field, error)) => errors.push(EventError {
                    line: i + 1,
                    field: field.into(),
                    error,
                }),
            }
        }
        if errors.is_empty() {
            Ok(ok)
        } else {
            Err(errors)
        }
    }

    /// Runs `f` on the thread sensor batches are parsed, validated and
    /// hashed on (`task_thread` says why one thread).
    pub async fn on_batch_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        self.threat.batches.run(f).await
    }

    /// Makes every sensor batch written so far durable in the database
    /// and empties the ingest log, unless the last checkpoint is younger
    /// than `older_than` (zero at shutdown).
    pub async fn checkpoint_ingest(&self, older_than: std::time::Duration) -> Result<()> {
        // Asked first, so an idle server does not start its writer thread
        // (which ends when idle, giving its heap back) for nothing.
        if !self.sensor_commits.checkpoint_due(older_than) {
            return Ok(());
        }
        let (commits, store) = (self.sensor_commits.clone(), self.store.clone());
        let threat = self.threat.clone();
        self.threat
            .writer
            .run(move || {
                // Ordered with every other writer, as a drain is.
                let _guard = threat.ingest.lock();
                commits.checkpoint(&store, older_than)
            })
            .await?
    }

    /// Stores a validated batch durably; batches arriving together share
    /// one commit (see `group_commit` for the durability contract).
    pub async fn ingest_events(
        &self,
        sensor: &Sensor,
        events: Vec<SensorEvent>,
    ) -> Result<IngestOutcome> {
        let now = self.clock.now();
        let sensor_id = sensor.id;
        let logged = self.sensor_commits.is_logged();
        // The keys are hashed (and the log record encoded) before the
        // batch reaches the single writer, which they would otherwise hold
        // up (a tenth of its time).
        let secret = self.secret.clone();
        let (events, keys, record) = self
            .on_batch_thread(move || {
                let keys: Vec<EventKeys> =
                    events.iter().map(|ev| EventKeys::of(&secret, ev)).collect();
                let record = logged.then(|| log_record(sensor_id, now, &events));
                (events, keys, record)
            })
            .await?;
        let job = ingest_job(
            sensor_id,
            now,
            self.retention,
            self.store.long_sessions(),
            events,
            keys,
        );
        let (out, evidence) = self
            .sensor_commits
            .submit_logged(&self.store, &self.threat, job, record)
            .await?;
        self.notice_evidence(&evidence);
        Ok(out)
    }
}

/// A sensor batch as the ingest log holds it (`store::ingest_log`):
/// versioned, like every stored record.
#[derive(Deserialize)]
enum LogRecord {
    V1 {
        sensor: u64,
        now: i64,
        events: Vec<SensorEvent>,
    },
}

/// `LogRecord` encoded from a borrow.
#[derive(Serialize)]
enum LogRecordRef<'a> {
    V1 {
        sensor: u64,
        now: i64,
        events: &'a [SensorEvent],
    },
}

/// The framed log record of a batch.
fn log_record(sensor: u64, now: UnixMillis, events: &[SensorEvent]) -> Vec<u8> {
    let rec = LogRecordRef::V1 {
        sensor,
        now: now.0,
        events,
    };
    store::ingest_log::frame(&store::codec::encode(&rec))
}

/// The write of one validated batch from `sensor` at `now`, in whichever
/// transaction runs it (a group's, the batch's own, or a replay's).
fn ingest_job(
    sensor_id: u64,
    now: UnixMillis,
    retentions: super::Retention,
    long: Arc<store::long_sessions::LongSessions>,
    events: Vec<SensorEvent>,
    keys: Vec<EventKeys>,
) -> super::group_commit::Job<Ingested> {
    let retention = retentions.indicators_ms;
    Box::new(move |txn| {
        EvidenceWriter::with(txn, |w| {
            let mut out = IngestOutcome {
                received: events.len(),
                ..IngestOutcome::default()
            };
            let mut evidence = super::alerts::Evidence::default();
            // Written in address order once the batch is tallied.
            let mut touched: BTreeMap<IpKey, (Indicator, Option<i64>)> = BTreeMap::new();
            let mut dedup = store::sensors::Dedup::open(txn, &long)?;
            let mut usernames: HashMap<String, names::NameStats> = HashMap::new();
            let mut emails: HashMap<String, names::NameStats> = HashMap::new();
            for (ev, k) in events.iter().zip(&keys) {
                let (day, session) = (ev.ts.day(), k.session);
                if !dedup.first_event((day, sensor_id, session, ev.ts.0, k.content))? {
                    out.duplicates += 1;
                    continue;
                }
                out.accepted += 1;
                evidence.ips.push(ev.src_ip);
                evidence.usernames.extend(ev.username.iter().cloned());
                evidence.emails.extend(ev.email.iter().cloned());
                let new_session = dedup.first_session(day, sensor_id, session, 0)?;
                let entry = match touched.entry(ev.src_ip) {
                    btree_map::Entry::Occupied(o) => o.into_mut(),
                    btree_map::Entry::Vacant(v) => {
                        let old = w.indicator(ev.src_ip)?;
                        let (fresh, old_day) =
                            indicator_for_update(txn, ev.src_ip, old, now, retentions)?;
                        v.insert((
                            fresh.unwrap_or_else(|| Indicator::new(ev.src_ip, ev.ts)),
                            old_day,
                        ))
                    }
                };
                entry.0.apply_event(sensor_id, ev, new_session);
                if let Some((lower, name)) = &k.username
                    && dedup.first_session(day, sensor_id, session, *name)?
                {
                    usernames
                        .entry(lower.clone())
                        .or_default()
                        .add(ev.protocol, ev.ts.0);
                }
                if let (Some(e), EventKind::Mail) = (&ev.email, ev.kind) {
                    emails
                        .entry(e.clone())
                        .or_default()
                        .add(ev.protocol, ev.ts.0);
                }
            }
            dedup.finish()?;
            for (kind, tally) in [
                (names::Kind::Username, usernames),
                (names::Kind::Email, emails),
            ] {
                for (name, seen) in tally {
                    names::bump_by(txn, kind, &name, &seen, retention)?;
                }
            }
            if let Some(mut s) = store::sensors::get_in_write(txn, sensor_id)? {
                s.events += out.accepted as u64;
                s.last_event_ms = Some(now.0);
                store::sensors::put(txn, &s)?;
            }
            let mut publish = Vec::with_capacity(touched.len());
            for (ip, (ind, old_day)) in touched {
                w.put_indicator(&ind, old_day, expiry_day(&ind, retention), now)?;
                publish.push(Publish::Upsert(ip, summary_in_write(txn, &ind, retention)?));
            }
            Ok(((out, evidence), publish))
        })
    })
}

/// Writes again the batches the ingest log holds (answered before the
/// server stopped, their commit not yet durable), then empties it. A
/// batch already in the database changes nothing (its events are
/// de-duplicated); one that cannot be written is skipped, named in the
/// log. Returns how many batches were written.
pub(super) fn replay_ingest_log(
    store: &store::Store,
    secret: &crate::crypto::SecretKey,
    retention: super::Retention,
    log: &store::ingest_log::IngestLog,
    held: &[u8],
) -> Result<usize> {
    let mut jobs = Vec::new();
    for (i, r) in store::ingest_log::records(held).into_iter().enumerate() {
        match store::codec::decode::<LogRecord>("ingest log record", r) {
            Ok(LogRecord::V1 {
                sensor,
                now,
                events,
            }) => {
                let keys = events.iter().map(|ev| EventKeys::of(secret, ev)).collect();
                jobs.push((
                    i,
                    ingest_job(
                        sensor,
                        UnixMillis(now),
                        retention,
                        store.long_sessions(),
                        events,
                        keys,
                    ),
                ));
            }
            Err(e) => {
                tracing::error!(record = i, error = %e, "skipping an unreadable ingest log record");
            }
        }
    }
    let mut written = jobs.len();
    // Nothing to write: no commit (and no fsync) at every start.
    if !jobs.is_empty() {
        let together = store.write_blocking(|txn| {
            for (_, job) in &jobs {
                job(txn)?;
            }
            Ok(())
        });
        if together.is_err() {
            for (i, job) in &jobs {
                if let Err(e) = store.write_blocking(|txn| job(txn).map(|_| ())) {
                    tracing::error!(record = i, error = %e, "skipping an ingest log record that cannot be written");
                    written -= 1;
                }
            }
        }
    }
    if !held.is_empty() {
        log.checkpointed().map_err(|e| Error::Internal {
            detail: format!("cannot empty {}: {e}", log.path().display()),
        })?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ingest_log::{self, IngestLog};

    #[test]
    fn a_replay_writes_what_it_can_read_and_names_the_rest() {
        let (dir, store) = crate::store::temp_store();
        let path = dir.path().join(ingest_log::LOG_FILE);
        let secret = crate::crypto::SecretKey::from_bytes([3; 32]);
        let ip = IpKey::from_ip("198.51.100.9".parse().unwrap());
        let now = UnixMillis(1_700_000_000_000);
        let event = SensorEvent::ssh_auth(ip, "s1", now);
        let batch = log_record(7, now, &[event]);
        let write = |records: &[Vec<u8>]| {
            let (log, _) = IngestLog::open(&path).unwrap();
            log.append(records).unwrap();
            log.sync().unwrap();
        };
        let replay = || {
            let (log, held) = IngestLog::open(&path).unwrap();
            let retention = super::super::Retention::default();
            let written = replay_ingest_log(&store, &secret, retention, &log, &held).unwrap();
            let ind = store
                .read_blocking(|txn| store::indicators::get(txn, ip))
                .unwrap()
                .expect("the batch's address is stored");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "emptied");
            (written, ind.events)
        };
        // A framed record that is no batch, then a batch: the batch is
        // written, the other skipped.
        write(&[ingest_log::frame(b"not a batch"), batch.clone()]);
        assert_eq!(replay(), (1, 1));
        // Replayed again (a crash before the log was emptied): its event
        // is known, nothing is counted twice.
        write(&[batch]);
        assert_eq!(replay(), (1, 1));
    }
}
