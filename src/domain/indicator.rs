//! The indicator: everything known about one IP, aggregated at submission
//! time from sensor events and reports. Pure: no I/O, time is an argument.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::behavior;
use super::ip::IpKey;
use super::threat::{Category, Protocol};
use super::time::UnixMillis;

/// Reports from one account about one IP within this window count once.
pub const DEDUP_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Auth attempts that make one `credential_brute_force` observation.
pub const BRUTE_FORCE_STEP: u64 = 10;
const MAX_PORTS: usize = 64;
const MAX_NAMES: usize = 32;
const MAX_CREDENTIALS: usize = 64;
const MAX_REPORTERS: usize = 256;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtoStats {
    pub sessions: u64,
    pub events: u64,
    pub reports: u64,
}

/// What the indicator remembers of one reporting account (internal only,
/// never served: P12).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReporterState {
    /// Reports that counted (outside the de-duplication window).
    pub counted: u64,
    pub last_counted: UnixMillis,
    /// Trust weight of the account (0–1000 ‰), from its age; see scoring.md.
    pub weight_permille: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Indicator {
    pub ip: IpKey,
    pub first_seen: UnixMillis,
    pub last_seen: UnixMillis,
    pub sessions: u64,
    pub events: u64,
    pub protocols: BTreeMap<Protocol, ProtoStats>,
    pub behaviors: BTreeMap<String, u64>,
    pub primitives: BTreeMap<String, u64>,
    /// Category id → counted reports.
    pub categories: BTreeMap<u8, u64>,
    pub reports: u64,
    pub reporters: BTreeMap<u64, ReporterState>,
    /// Distinct reporters, also past the size cap of `reporters`.
    pub distinct_reporters: u64,
    pub sensors: BTreeSet<u64>,
    pub usernames: BTreeSet<String>,
    pub emails: BTreeSet<String>,
    pub dst_ports: BTreeSet<u16>,
    pub auth_attempts: u64,
    /// Credential hash → sessions it was tried in.
    pub credentials: BTreeMap<String, u64>,
}

/// The kind of a sensor event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Connect,
    Auth,
    Command,
    HttpRequest,
    Mail,
}

/// A validated sensor event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorEvent {
    pub ts: UnixMillis,
    pub src_ip: IpKey,
    pub protocol: Protocol,
    pub dst_port: Option<u16>,
    pub session_id: String,
    pub kind: EventKind,
    pub username: Option<String>,
    pub email: Option<String>,
    pub command: Option<String>,
    pub http_path: Option<String>,
    pub user_agent: Option<String>,
    pub credential_hash: Option<String>,
    pub http_method: Option<String>,
}

#[cfg(test)]
impl SensorEvent {
    /// An SSH login attempt as root from `src_ip`, for tests.
    pub(crate) fn ssh_auth(src_ip: IpKey, session: impl Into<String>, ts: UnixMillis) -> Self {
        Self {
            ts,
            src_ip,
            protocol: Protocol::Ssh,
            dst_port: Some(22),
            session_id: session.into(),
            kind: EventKind::Auth,
            username: Some("root".into()),
            email: None,
            command: None,
            http_path: None,
            user_agent: None,
            credential_hash: None,
            http_method: None,
        }
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, by: u64) {
    *map.entry(key.to_owned()).or_default() += by;
}

fn insert_capped<T: Ord>(set: &mut BTreeSet<T>, v: T, cap: usize) {
    if set.len() < cap || set.contains(&v) {
        set.insert(v);
    }
}

impl Indicator {
    pub fn new(ip: IpKey, at: UnixMillis) -> Self {
        Self {
            ip,
            first_seen: at,
            last_seen: at,
            sessions: 0,
            events: 0,
            protocols: BTreeMap::new(),
            behaviors: BTreeMap::new(),
            primitives: BTreeMap::new(),
            categories: BTreeMap::new(),
            reports: 0,
            reporters: BTreeMap::new(),
            distinct_reporters: 0,
            sensors: BTreeSet::new(),
            usernames: BTreeSet::new(),
            emails: BTreeSet::new(),
            dst_ports: BTreeSet::new(),
            auth_attempts: 0,
            credentials: BTreeMap::new(),
        }
    }

    fn seen(&mut self, at: UnixMillis) {
        self.first_seen = self.first_seen.min(at);
        self.last_seen = self.last_seen.max(at);
    }

    /// Adds one sensor event; `new_session` when its session was not seen before.
    pub fn apply_event(&mut self, sensor: u64, ev: &SensorEvent, new_session: bool) {
        self.seen(ev.ts);
        self.events += 1;
        let proto = self.protocols.entry(ev.protocol).or_default();
        proto.events += 1;
        if new_session {
            self.sessions += 1;
            proto.sessions += 1;
        }
        self.sensors.insert(sensor);
        if let Some(port) = ev.dst_port {
            insert_capped(&mut self.dst_ports, port, MAX_PORTS);
            let scan = u64::try_from(self.dst_ports.len().saturating_sub(4)).unwrap_or(0);
            if scan > 0 {
                self.behaviors.insert("port_scan".into(), scan);
            }
        }
        if let Some(u) = &ev.username {
            insert_capped(&mut self.usernames, u.clone(), MAX_NAMES);
        }
        if let Some(e) = &ev.email {
            insert_capped(&mut self.emails, e.clone(), MAX_NAMES);
        }
        match ev.kind {
            EventKind::Connect => {}
            EventKind::Auth => {
                self.auth_attempts += 1;
                if self.auth_attempts.is_multiple_of(BRUTE_FORCE_STEP) {
                    bump(&mut self.behaviors, "credential_brute_force", 1);
                }
                let tracked = |h: &String| {
                    self.credentials.len() < MAX_CREDENTIALS || self.credentials.contains_key(h)
                };
                if let Some(h) = ev
                    .credential_hash
                    .as_ref()
                    .filter(|h| new_session && tracked(h))
                {
                    let n = self.credentials.entry(h.clone()).or_default();
                    *n += 1;
                    if *n >= 2 {
                        bump(&mut self.behaviors, "credential_stuffing", 1);
                    }
                }
            }
            EventKind::Command => {
                if let Some(c) = &ev.command {
                    self.note(&behavior::classify_command(c));
                }
            }
            EventKind::HttpRequest => {
                if let Some(p) = &ev.http_path {
                    self.note(&behavior::classify_http_path(p));
                }
            }
            EventKind::Mail => bump(&mut self.behaviors, "spam_relay", 1),
        }
    }

    fn note(&mut self, f: &behavior::Findings) {
        for b in &f.behaviors {
            bump(&mut self.behaviors, b, 1);
        }
        for p in &f.primitives {
            bump(&mut self.primitives, p, 1);
        }
    }

    /// Whether a report by `account` at `at` would count, i.e. is not
    /// inside that account's de-duplication window for this IP.
    pub fn would_count(&self, account: u64, at: UnixMillis) -> bool {
        self.reporters.get(&account).is_none_or(|r| {
            !(at.0 - r.last_counted.0 < DEDUP_WINDOW_MS && at.0 >= r.last_counted.0)
        })
    }

    /// Milliseconds until `account` may report this IP again with effect (0 when it may now).
    pub fn dedup_wait_ms(&self, account: u64, at: UnixMillis) -> i64 {
        if self.would_count(account, at) {
            return 0;
        }
        self.reporters
            .get(&account)
            .map_or(0, |r| r.last_counted.0 + DEDUP_WINDOW_MS - at.0)
    }

    /// Adds one report; returns whether it counted (false inside the
    /// de-duplication window of the same account).
    pub fn apply_report(
        &mut self,
        account: u64,
        weight_permille: u16,
        category: Category,
        protocol: Option<Protocol>,
        at: UnixMillis,
    ) -> bool {
        self.apply_report_multi(account, weight_permille, &[category], protocol, at)
    }

    /// Adds one report naming several categories (each is counted once).
    pub fn apply_report_multi(
        &mut self,
        account: u64,
        weight_permille: u16,
        categories: &[Category],
        protocol: Option<Protocol>,
        at: UnixMillis,
    ) -> bool {
        self.seen(at);
        if !self.would_count(account, at) {
            return false;
        }
        if let Some(r) = self.reporters.get_mut(&account) {
            r.counted += 1;
            r.last_counted = at;
            r.weight_permille = r.weight_permille.max(weight_permille);
        } else {
            self.distinct_reporters += 1;
            if self.reporters.len() < MAX_REPORTERS {
                self.reporters.insert(
                    account,
                    ReporterState {
                        counted: 1,
                        last_counted: at,
                        weight_permille,
                    },
                );
            }
        }
        self.reports += 1;
        for c in categories {
            *self.categories.entry(c.id()).or_default() += 1;
        }
        if let Some(p) = protocol {
            self.protocols.entry(p).or_default().reports += 1;
        }
        true
    }

    /// Takes back the reports of `account` that counted, given as their
    /// (categories, protocol); the account stops being a reporter. Sensor
    /// evidence and the seen-times are left to the caller.
    pub fn retract_reports(&mut self, account: u64, counted: &[(Vec<Category>, Option<Protocol>)]) {
        let was_reporter = self.reporters.remove(&account).is_some() || !counted.is_empty();
        if was_reporter {
            self.distinct_reporters = self.distinct_reporters.saturating_sub(1);
        }
        for (cats, proto) in counted {
            self.reports = self.reports.saturating_sub(1);
            for c in cats {
                if let Some(n) = self.categories.get_mut(&c.id()) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.categories.remove(&c.id());
                    }
                }
            }
            if let Some(s) = proto.and_then(|p| self.protocols.get_mut(&p)) {
                s.reports = s.reports.saturating_sub(1);
            }
        }
        self.protocols
            .retain(|_, s| s.reports > 0 || s.events > 0 || s.sessions > 0);
    }

    /// Whether nothing but reports ever spoke about this IP.
    pub fn has_sensor_evidence(&self) -> bool {
        self.events > 0 || !self.sensors.is_empty()
    }

    /// Sets the seen-times, for re-aggregation after reports were removed.
    pub fn set_seen(&mut self, first: UnixMillis, last: UnixMillis) {
        self.first_seen = first;
        self.last_seen = last;
    }

    /// The UTC day this indicator is purged on without new evidence, under
    /// a retention of `retention_ms`: the day of its TTL bucket.
    pub fn expiry_day(&self, retention_ms: i64) -> i64 {
        UnixMillis(self.last_seen.0.saturating_add(retention_ms)).day()
    }

    /// Bit set of protocols with any activity.
    pub fn protocol_bits(&self) -> u16 {
        self.protocols.keys().fold(0, |acc, p| acc | p.bit())
    }

    /// The most serious behaviour severity observed.
    pub fn max_severity(&self) -> Option<super::threat::Severity> {
        self.behaviors
            .keys()
            .filter_map(|b| behavior::rule(b).map(|r| r.severity))
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, session: &str, ts: i64) -> SensorEvent {
        SensorEvent {
            kind,
            credential_hash: Some("h1".into()),
            ..SensorEvent::ssh_auth("1.2.3.4".parse().unwrap(), session, UnixMillis(ts))
        }
    }

    #[test]
    fn brute_force_and_stuffing_emerge() {
        let mut i = Indicator::new("1.2.3.4".parse().unwrap(), UnixMillis(0));
        for n in 0..20 {
            i.apply_event(1, &ev(EventKind::Auth, "s1", n), n == 0);
        }
        assert_eq!(i.behaviors["credential_brute_force"], 2);
        assert!(!i.behaviors.contains_key("credential_stuffing"));
        i.apply_event(2, &ev(EventKind::Auth, "s2", 100), true);
        assert_eq!(i.behaviors["credential_stuffing"], 1);
        assert_eq!(i.sessions, 2);
        assert_eq!(i.events, 21);
        assert_eq!(i.sensors.len(), 2);
        assert_eq!(i.protocols[&Protocol::Ssh].sessions, 2);
        assert!(i.usernames.contains("root"));
    }

    #[test]
    fn reports_from_one_account_within_15_minutes_count_once() {
        let cat = Category::parse("brute_force").unwrap();
        let mut i = Indicator::new("1.2.3.4".parse().unwrap(), UnixMillis(0));
        assert!(i.apply_report(7, 1000, cat, Some(Protocol::Ssh), UnixMillis(0)));
        assert!(!i.apply_report(7, 1000, cat, None, UnixMillis(DEDUP_WINDOW_MS - 1)));
        assert!(
            i.apply_report(8, 1000, cat, None, UnixMillis(1)),
            "another account counts"
        );
        assert!(i.apply_report(7, 1000, cat, None, UnixMillis(DEDUP_WINDOW_MS)));
        assert_eq!(i.reports, 3);
        assert_eq!(i.distinct_reporters, 2);
        assert_eq!(i.last_seen, UnixMillis(DEDUP_WINDOW_MS));
        assert_eq!(i.protocols[&Protocol::Ssh].reports, 1);
    }

    #[test]
    fn would_count_and_retract() {
        let bf = Category::parse("brute_force").unwrap();
        let web = Category::parse("web_exploit").unwrap();
        let mut i = Indicator::new("1.2.3.4".parse().unwrap(), UnixMillis(0));
        assert!(i.would_count(7, UnixMillis(0)));
        assert!(i.apply_report_multi(7, 1000, &[bf, web], Some(Protocol::Ssh), UnixMillis(0)));
        assert!(!i.would_count(7, UnixMillis(1000)));
        assert_eq!(i.dedup_wait_ms(7, UnixMillis(1000)), DEDUP_WINDOW_MS - 1000);
        assert!(i.would_count(8, UnixMillis(1000)));
        assert!(i.apply_report(8, 1000, bf, None, UnixMillis(1000)));
        assert_eq!(i.categories[&bf.id()], 2);
        assert_eq!(i.categories[&web.id()], 1);
        i.retract_reports(7, &[(vec![bf, web], Some(Protocol::Ssh))]);
        assert_eq!(i.reports, 1);
        assert_eq!(i.distinct_reporters, 1);
        assert_eq!(i.categories.get(&bf.id()), Some(&1));
        assert!(!i.categories.contains_key(&web.id()));
        assert!(!i.protocols.contains_key(&Protocol::Ssh));
        assert!(
            i.would_count(7, UnixMillis(1001)),
            "window gone with the reports"
        );
        assert!(!i.has_sensor_evidence());
    }
}
