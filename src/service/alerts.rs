//! Watches on IPs, ranges, usernames and e-mail addresses, per API key's
//! account, with per-tier limits; matching new evidence against them in
//! memory; cool-down digests; and the persistent outbox of notifications
//! (e-mail and signed webhooks) that the delivery job works through.
//!
//! Flow: an ingest commits, then calls `notice_evidence`, which matches the
//! new IPs, usernames and e-mail addresses against in-memory indexes and
//! sends the hits on a channel (ingest never waits for alert work). The
//! alerts job applies hits in one transaction: counters, the pending digest,
//! and — when the alert's cool-down has passed — a notification written to
//! the outbox in the same transaction. The delivery job sends what is due
//! and records the outcome, retrying with exponential backoff.
//!
//! Webhook secrets must be readable to sign, so they are stored encrypted:
//! XOR with a pad that is the keyed hash of the alert id under the server's
//! secret key (unique per alert), so a copy of the database alone does not
//! reveal them.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::{Notify, mpsc};

use super::apikeys::ApiPrincipal;
use super::{Error, Result, Services};
use crate::domain::{IpKey, UnixMillis};
use crate::index::ranges::CidrSet;
use crate::store::{
    self, Store,
    alerts::{Alert, AlertKind, Channel, Delivery, DeliveryStatus},
};

/// Matched items listed in one notification at most (the count is exact).
pub const MAX_DIGEST_ITEMS: usize = 20;
/// Attempts before a delivery is given up as failed.
pub const MAX_ATTEMPTS: u32 = 20;
/// First retry delay; doubled after each failure up to `MAX_BACKOFF`.
pub const BASE_BACKOFF: Duration = Duration::from_secs(30);
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Entries shown in the delivery log.
pub const DELIVERY_LOG_LIMIT: usize = 100;
const MAX_LABEL_CHARS: usize = 100;
const MAX_USERNAME_CHARS: usize = 128;
const MAX_EMAIL_CHARS: usize = 254;
const MAX_URL_CHARS: usize = 2048;
const SECRET_PURPOSE: &str = "webhook-secret";

/// What the alert service takes from the configuration.
#[derive(Clone, Debug)]
pub struct AlertOptions {
    /// At most one notification per alert per this period.
    pub cooldown: Duration,
    /// Whether `http://` webhook URLs (and private targets) are accepted.
    pub webhook_allow_http: bool,
    /// Whether an SMTP relay is configured (`notifyEmail` needs one).
    pub email_enabled: bool,
}

impl Default for AlertOptions {
    fn default() -> Self {
        Self {
            cooldown: Duration::from_secs(3600),
            webhook_allow_http: false,
            email_enabled: false,
        }
    }
}

/// How many alerts of each kind an account has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertCounts {
    pub ip: u64,
    pub range: u64,
    pub username: u64,
    pub email: u64,
}

/// New evidence that committed: the IPs, usernames and e-mail addresses it
/// names, one entry per report or event.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    pub ips: Vec<IpKey>,
    pub usernames: Vec<String>,
    pub emails: Vec<String>,
}

/// One alert matched by new evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub alert: u64,
    /// The matched IP, username or e-mail address.
    pub item: String,
    /// The matched IP, for range alerts' distinct count.
    pub ip: Option<u128>,
    pub count: u64,
}

/// A create request, before validation.
#[derive(Clone, Debug, Default)]
pub struct NewAlert {
    pub value: String,
    pub label: Option<String>,
    pub notify_email: Option<String>,
    pub webhook_url: Option<String>,
}

/// A delivery ready to be made, with what the sender needs.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub id: u64,
    pub attempts: u32,
    pub channel: Channel,
    /// The webhook signing secret as shown to the user.
    pub secret: Option<String>,
}

/// The in-memory match indexes and the alerts waiting for their cool-down.
#[derive(Debug, Default)]
struct Registry {
    alerts: HashMap<u64, (u64, AlertKind)>,
    by_ip: HashMap<IpKey, Vec<u64>>,
    ranges: Vec<(IpNet, u64)>,
    range_set: CidrSet<u64>,
    by_username: HashMap<String, Vec<u64>>,
    by_email: HashMap<String, Vec<u64>>,
    /// Alert id → when its pending digest may be sent.
    pending_due: HashMap<u64, i64>,
}

impl Registry {
    fn add(&mut self, a: &Alert) {
        self.alerts.insert(a.id, (a.account, a.kind));
        match a.kind {
            AlertKind::Ip => {
                if let Ok(ip) = a.value.parse::<IpKey>() {
                    self.by_ip.entry(ip).or_default().push(a.id);
                }
            }
            AlertKind::Range => {
                if let Ok(net) = a.value.parse::<IpNet>() {
                    self.ranges.push((net, a.id));
                    self.range_set = CidrSet::new(self.ranges.iter().copied());
                }
            }
            AlertKind::Username => self
                .by_username
                .entry(a.value.clone())
                .or_default()
                .push(a.id),
            AlertKind::Email => self.by_email.entry(a.value.clone()).or_default().push(a.id),
        }
    }

    fn remove(&mut self, a: &Alert) {
        fn drop_id<K: std::hash::Hash + Eq>(m: &mut HashMap<K, Vec<u64>>, k: &K, id: u64) {
            if let Some(v) = m.get_mut(k) {
                v.retain(|x| *x != id);
                if v.is_empty() {
                    m.remove(k);
                }
            }
        }
        self.alerts.remove(&a.id);
        self.pending_due.remove(&a.id);
        match a.kind {
            AlertKind::Ip => {
                if let Ok(ip) = a.value.parse::<IpKey>() {
                    drop_id(&mut self.by_ip, &ip, a.id);
                }
            }
            AlertKind::Range => {
                self.ranges.retain(|(_, id)| *id != a.id);
                self.range_set = CidrSet::new(self.ranges.iter().copied());
            }
            AlertKind::Username => drop_id(&mut self.by_username, &a.value, a.id),
            AlertKind::Email => drop_id(&mut self.by_email, &a.value, a.id),
        }
    }

    fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }
}

/// The alert service's state inside `Services`.
#[derive(Debug)]
pub struct AlertState {
    pub opts: AlertOptions,
    registry: RwLock<Registry>,
    hits_tx: mpsc::UnboundedSender<Vec<Hit>>,
    hits_rx: Mutex<Option<mpsc::UnboundedReceiver<Vec<Hit>>>>,
    /// Woken when the outbox gets something to send.
    pub outbox: Notify,
}

impl AlertState {
    /// Loads every alert into the match indexes. Blocking.
    pub fn load(store: &Store, opts: AlertOptions) -> Result<Self> {
        let all = store.read_blocking(store::alerts::all_alerts)?;
        let cooldown = ms(opts.cooldown);
        let mut registry = Registry::default();
        for a in &all {
            registry.add(a);
            if a.pending_count > 0 {
                let due = a.last_alerted_ms.map_or(i64::MIN, |t| t + cooldown);
                registry.pending_due.insert(a.id, due);
            }
        }
        let (hits_tx, hits_rx) = mpsc::unbounded_channel();
        Ok(Self {
            opts,
            registry: RwLock::new(registry),
            hits_tx,
            hits_rx: Mutex::new(Some(hits_rx)),
            outbox: Notify::new(),
        })
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn poisoned() -> Error {
    Error::Internal {
        detail: "alert registry lock poisoned".into(),
    }
}

fn kind_name(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Ip => "IP",
        AlertKind::Range => "range",
        AlertKind::Username => "username",
        AlertKind::Email => "e-mail",
    }
}

fn tier_limit(tier: &super::tiers::Tier, kind: AlertKind) -> u64 {
    match kind {
        AlertKind::Ip => tier.ip_alerts,
        AlertKind::Range => tier.range_alerts,
        AlertKind::Username => tier.username_alerts,
        AlertKind::Email => tier.email_alerts,
    }
}

fn field_of(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Ip => "ip",
        AlertKind::Range => "cidr",
        AlertKind::Username => "username",
        AlertKind::Email => "email",
    }
}

fn no_controls(field: &str, s: &str) -> Result<()> {
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// An e-mail address, lower-cased, or why not.
pub fn normalise_email(field: &str, raw: &str) -> Result<String> {
    let e = raw.trim().to_ascii_lowercase();
    if e.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if e.chars().count() > MAX_EMAIL_CHARS {
        return Err(Error::invalid(
            field,
            format!("longer than {MAX_EMAIL_CHARS} characters"),
        ));
    }
    no_controls(field, &e)?;
    if !super::sensors::valid_email(&e) || e.contains(['<', '>', ',', ';']) {
        return Err(Error::invalid(field, "is not a valid e-mail address"));
    }
    Ok(e)
}

/// The watched value in its normal form, checked against the tier's range size.
fn normalise_value(kind: AlertKind, raw: &str, tier: &super::tiers::Tier) -> Result<String> {
    let field = field_of(kind);
    let v = raw.trim();
    match kind {
        AlertKind::Ip => {
            let ip: IpKey = v
                .parse()
                .map_err(|e| Error::invalid(field, format!("invalid IP address: {e}")))?;
            if !ip.is_public() {
                return Err(Error::invalid(
                    field,
                    "private, reserved or non-routable IP address (it can never match)",
                ));
            }
            Ok(ip.to_string())
        }
        AlertKind::Range => {
            let net: IpNet = v.parse().map_err(|_| {
                Error::invalid(
                    field,
                    "invalid CIDR range (expected e.g. 203.0.113.0/24 or 2001:db8::/48)",
                )
            })?;
            let net = net.trunc();
            let min_prefix = match net {
                IpNet::V4(_) => tier.range_max_prefix,
                IpNet::V6(_) => tier.range_max_prefix.saturating_add(96),
            };
            if net.prefix_len() < min_prefix {
                return Err(Error::invalid(
                    field,
                    format!(
                        "range too large for tier {}: at most /{} for IPv4 or /{} for IPv6",
                        tier.name,
                        tier.range_max_prefix,
                        tier.range_max_prefix.saturating_add(96)
                    ),
                ));
            }
            if !IpKey::from_ip(net.network()).is_public()
                && !IpKey::from_ip(net.broadcast()).is_public()
            {
                return Err(Error::invalid(
                    field,
                    "private, reserved or non-routable range (it can never match)",
                ));
            }
            Ok(net.to_string())
        }
        AlertKind::Username => {
            let u = v.to_lowercase();
            if u.is_empty() {
                return Err(Error::invalid(field, "is required"));
            }
            if u.chars().count() > MAX_USERNAME_CHARS {
                return Err(Error::invalid(
                    field,
                    format!("longer than {MAX_USERNAME_CHARS} characters"),
                ));
            }
            no_controls(field, &u)?;
            Ok(u)
        }
        AlertKind::Email => normalise_email(field, v),
    }
}

/// A webhook URL the server may call, or why not.
fn check_webhook_url(raw: &str, allow_http: bool) -> Result<String> {
    let field = "webhookUrl";
    let u = raw.trim();
    if u.len() > MAX_URL_CHARS {
        return Err(Error::invalid(
            field,
            format!("longer than {MAX_URL_CHARS} characters"),
        ));
    }
    let uri: http::Uri = u
        .parse()
        .map_err(|_| Error::invalid(field, "is not a valid URL"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_http => {}
        Some("http") => {
            return Err(Error::invalid(
                field,
                "must use https:// (http:// is allowed only with --webhook-allow-http)",
            ));
        }
        _ => return Err(Error::invalid(field, "must be an https:// URL")),
    }
    let Some(auth) = uri.authority() else {
        return Err(Error::invalid(field, "needs a host"));
    };
    if auth.as_str().contains('@') || auth.host().is_empty() {
        return Err(Error::invalid(
            field,
            "must be scheme://host[:port]/path without credentials",
        ));
    }
    Ok(u.to_owned())
}

/// Encrypts (and, applied again, decrypts) a webhook secret with the pad of
/// alert `id`.
fn seal(key: &crate::crypto::SecretKey, id: u64, raw: [u8; 32]) -> [u8; 32] {
    let pad = key.keyed_hash(SECRET_PURPOSE, &id.to_le_bytes());
    std::array::from_fn(|i| raw[i] ^ pad[i])
}

/// The secret string shown to the user, e.g. `whsec_3f…`.
fn secret_string(raw: &[u8; 32]) -> String {
    format!("whsec_{}", hex::encode(raw))
}

impl Services {
    /// Creates an alert for `who`'s account. Returns it and, when it has a
    /// webhook, the signing secret (shown this once).
    pub async fn create_alert(
        &self,
        who: &ApiPrincipal,
        kind: AlertKind,
        new: NewAlert,
    ) -> Result<(Alert, Option<String>)> {
        let tier = self.tiers.get(&who.tier).clone();
        let value = normalise_value(kind, &new.value, &tier)?;
        let label = match new.label.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(l) if l.chars().count() > MAX_LABEL_CHARS => {
                return Err(Error::invalid(
                    "label",
                    format!("longer than {MAX_LABEL_CHARS} characters"),
                ));
            }
            Some(l) => {
                no_controls("label", l)?;
                Some(l.to_owned())
            }
        };
        let notify_email = match new.notify_email.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(e) => {
                if !self.alerts.opts.email_enabled {
                    return Err(Error::invalid(
                        "notifyEmail",
                        "e-mail delivery is not configured on this server (--smtp-host)",
                    ));
                }
                Some(normalise_email("notifyEmail", e)?)
            }
        };
        let webhook_url = match new.webhook_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) => Some(check_webhook_url(u, self.alerts.opts.webhook_allow_http)?),
        };
        let raw_secret = webhook_url
            .as_ref()
            .map(|_| crate::crypto::random_bytes::<32>());
        let limit = tier_limit(&tier, kind);
        let tier_name = tier.name.clone();
        let now = self.clock.now();
        let account = who.account;
        let key_id = who.key_id;
        let pads = self.secret.clone();
        let alert = self
            .store
            .write(move |txn| {
                let existing = store::alerts::account_alerts_in_write(txn, account)?;
                let mine: Vec<&Alert> = existing.iter().filter(|a| a.kind == kind).collect();
                if mine.iter().any(|a| a.value == value) {
                    return Ok(Err(Error::Conflict {
                        reason: format!("an {} alert for {value} already exists", kind_name(kind)),
                    }));
                }
                if mine.len() as u64 >= limit {
                    return Ok(Err(Error::Forbidden {
                        reason: format!(
                            "{} alert limit reached ({limit} on tier {tier_name})",
                            kind_name(kind)
                        ),
                    }));
                }
                let id = store::alerts::next_alert_id(txn)?;
                let webhook_secret = raw_secret.map(|raw| seal(&pads, id, raw));
                let a = Alert {
                    id,
                    account,
                    key_id,
                    kind,
                    value,
                    label,
                    enabled: true,
                    notify_email,
                    webhook_url,
                    webhook_secret,
                    created_ms: now.0,
                    last_alerted_ms: None,
                    total_alerts: 0,
                    match_count: 0,
                    unique_matches: 0,
                    pending: Vec::new(),
                    pending_count: 0,
                    pending_first_ms: None,
                    pending_last_ms: None,
                };
                store::alerts::put_alert(txn, &a)?;
                Ok(Ok(a))
            })
            .await??;
        self.alerts
            .registry
            .write()
            .map_err(|_| poisoned())?
            .add(&alert);
        Ok((alert, raw_secret.as_ref().map(secret_string)))
    }

    /// The alerts of one kind that `who`'s account has, oldest first.
    pub async fn list_alerts(&self, who: &ApiPrincipal, kind: AlertKind) -> Result<Vec<Alert>> {
        let account = who.account;
        let all = self
            .store
            .read(move |txn| store::alerts::account_alerts(txn, account))
            .await?;
        Ok(all.into_iter().filter(|a| a.kind == kind).collect())
    }

    /// Deletes an alert of `who`'s account. Another account's alert, or one
    /// of another kind, is "not found" like an id that never existed.
    pub async fn delete_alert(&self, who: &ApiPrincipal, kind: AlertKind, id: &str) -> Result<()> {
        let not_found = || Error::not_found(format!("{} alert '{id}'", kind_name(kind)));
        let Ok(num) = id.trim().parse::<u64>() else {
            return Err(not_found());
        };
        let account = who.account;
        let gone = self
            .store
            .write(move |txn| {
                let Some(a) = store::alerts::get_alert_in_write(txn, num)? else {
                    return Ok(None);
                };
                if a.account != account || a.kind != kind {
                    return Ok(None);
                }
                store::alerts::delete_alert(txn, &a)?;
                Ok(Some(a))
            })
            .await?
            .ok_or_else(not_found)?;
        self.alerts
            .registry
            .write()
            .map_err(|_| poisoned())?
            .remove(&gone);
        Ok(())
    }

    /// The alerts `who`'s account has, per kind.
    pub fn alert_counts(&self, who: &ApiPrincipal) -> Result<AlertCounts> {
        let reg = self.alerts.registry.read().map_err(|_| poisoned())?;
        let mut c = AlertCounts::default();
        for (account, kind) in reg.alerts.values() {
            if *account == who.account {
                match kind {
                    AlertKind::Ip => c.ip += 1,
                    AlertKind::Range => c.range += 1,
                    AlertKind::Username => c.username += 1,
                    AlertKind::Email => c.email += 1,
                }
            }
        }
        Ok(c)
    }

    /// The newest deliveries of `who`'s account, newest first.
    pub async fn alert_deliveries(&self, who: &ApiPrincipal) -> Result<Vec<Delivery>> {
        let account = who.account;
        Ok(self
            .store
            .read(move |txn| store::alerts::account_deliveries(txn, account, DELIVERY_LOG_LIMIT))
            .await?
            .into_iter()
            .filter(|d| d.kind.is_some())
            .collect())
    }

    /// Matches evidence that has just committed against every alert and
    /// hands the hits to the alerts job. Cheap when nothing is watched;
    /// never waits.
    pub fn notice_evidence(&self, ev: &Evidence) {
        let hits = match self.alerts.registry.read() {
            Ok(reg) if !reg.is_empty() => {
                // Allowlisted addresses are never reported as threats, so
                // IP and range alerts stay silent for them; username and
                // e-mail alerts watch the credential and still fire.
                let ev = Evidence {
                    ips: ev
                        .ips
                        .iter()
                        .copied()
                        .filter(|ip| self.never_block(*ip).is_none())
                        .collect(),
                    usernames: ev.usernames.clone(),
                    emails: ev.emails.clone(),
                };
                match_evidence(&reg, &ev)
            }
            _ => return,
        };
        if !hits.is_empty() && self.alerts.hits_tx.send(hits).is_err() {
            tracing::warn!("alert hits dropped: the alerts job is not running");
        }
    }

    /// The receiving end of the hit channel, for the one alerts job.
    pub fn take_alert_hits(&self) -> Option<mpsc::UnboundedReceiver<Vec<Hit>>> {
        self.alerts.hits_rx.lock().ok()?.take()
    }

    /// Applies hits: counters and digests, and a notification for each
    /// alert whose cool-down has passed. Returns how many fired.
    pub async fn apply_alert_hits(&self, hits: Vec<Hit>, now: UnixMillis) -> Result<usize> {
        if hits.is_empty() {
            return Ok(0);
        }
        let cooldown = ms(self.alerts.opts.cooldown);
        let (fired, waiting) = self
            .store
            .write(move |txn| {
                let mut by_alert: HashMap<u64, Vec<Hit>> = HashMap::new();
                for h in hits {
                    by_alert.entry(h.alert).or_default().push(h);
                }
                let mut fired = 0;
                let mut waiting = Vec::new();
                for (id, hits) in by_alert {
                    let Some(mut a) = store::alerts::get_alert_in_write(txn, id)? else {
                        continue;
                    };
                    if !a.enabled {
                        continue;
                    }
                    for h in hits {
                        a.match_count += h.count;
                        a.pending_count += h.count;
                        if let Some(ip) = h.ip
                            && store::alerts::first_range_ip(txn, id, ip)?
                        {
                            a.unique_matches += 1;
                        }
                        if !a.pending.contains(&h.item) && a.pending.len() < MAX_DIGEST_ITEMS {
                            a.pending.push(h.item);
                        }
                    }
                    a.pending_first_ms.get_or_insert(now.0);
                    a.pending_last_ms = Some(now.0);
                    let due = a
                        .last_alerted_ms
                        .map_or(i64::MIN, |t| t.saturating_add(cooldown));
                    if now.0 >= due {
                        fire(txn, &mut a, now, cooldown)?;
                        fired += 1;
                    } else {
                        waiting.push((id, due));
                    }
                    store::alerts::put_alert(txn, &a)?;
                }
                Ok((fired, waiting))
            })
            .await?;
        {
            let mut reg = self.alerts.registry.write().map_err(|_| poisoned())?;
            for (id, due) in waiting {
                if reg.alerts.contains_key(&id) {
                    reg.pending_due.insert(id, due);
                }
            }
        }
        if fired > 0 {
            self.alerts.outbox.notify_one();
        }
        Ok(fired)
    }

    /// Sends the digests whose cool-down has passed. Returns how many fired.
    pub async fn fire_due_alerts(&self, now: UnixMillis) -> Result<usize> {
        let due: Vec<u64> = {
            let reg = self.alerts.registry.read().map_err(|_| poisoned())?;
            reg.pending_due
                .iter()
                .filter(|(_, at)| **at <= now.0)
                .map(|(id, _)| *id)
                .collect()
        };
        if due.is_empty() {
            return Ok(0);
        }
        let cooldown = ms(self.alerts.opts.cooldown);
        let ids = due.clone();
        let fired = self
            .store
            .write(move |txn| {
                let mut fired = 0;
                for id in ids {
                    let Some(mut a) = store::alerts::get_alert_in_write(txn, id)? else {
                        continue;
                    };
                    if a.pending_count == 0 || !a.enabled {
                        continue;
                    }
                    fire(txn, &mut a, now, cooldown)?;
                    store::alerts::put_alert(txn, &a)?;
                    fired += 1;
                }
                Ok(fired)
            })
            .await?;
        {
            let mut reg = self.alerts.registry.write().map_err(|_| poisoned())?;
            for id in &due {
                reg.pending_due.remove(id);
            }
        }
        if fired > 0 {
            self.alerts.outbox.notify_one();
        }
        Ok(fired)
    }

    /// Deliveries whose next attempt is due at `now`.
    pub async fn due_deliveries(&self, now: UnixMillis, limit: usize) -> Result<Vec<Outgoing>> {
        let found = self
            .store
            .read(move |txn| {
                let due = store::alerts::due_deliveries(txn, now.0, limit)?;
                let mut out = Vec::with_capacity(due.len());
                for d in due {
                    let sealed = match &d.channel {
                        Channel::Webhook { .. } => store::alerts::get_alert(txn, d.alert_id)?
                            .and_then(|a| a.webhook_secret),
                        Channel::Email { .. } => None,
                    };
                    out.push((d, sealed));
                }
                Ok(out)
            })
            .await?;
        Ok(found
            .into_iter()
            .map(|(d, sealed)| Outgoing {
                id: d.id,
                attempts: d.attempts,
                secret: sealed.map(|s| secret_string(&seal(&self.secret, d.alert_id, s))),
                channel: d.channel,
            })
            .collect())
    }

    /// Records the outcome of one attempt: delivered, retried later with
    /// exponential backoff, or failed after `MAX_ATTEMPTS`.
    pub async fn finish_delivery(
        &self,
        id: u64,
        outcome: std::result::Result<(), String>,
        now: UnixMillis,
    ) -> Result<Option<Delivery>> {
        Ok(self
            .store
            .write(move |txn| {
                let Some(mut d) = store::alerts::get_delivery_in_write(txn, id)? else {
                    return Ok(None);
                };
                if d.status != DeliveryStatus::Pending {
                    return Ok(Some(d));
                }
                let previous = d.next_attempt_ms;
                d.attempts += 1;
                match outcome {
                    Ok(()) => {
                        d.status = DeliveryStatus::Delivered;
                        d.finished_ms = Some(now.0);
                        d.next_attempt_ms = None;
                    }
                    Err(e) => {
                        d.last_error = Some(e);
                        if d.attempts >= MAX_ATTEMPTS {
                            d.status = DeliveryStatus::Failed;
                            d.finished_ms = Some(now.0);
                            d.next_attempt_ms = None;
                        } else {
                            d.next_attempt_ms = Some(now.plus(backoff(d.attempts)).0);
                        }
                    }
                }
                // Account mail carries one-time links: once it is no longer
                // going to be sent, only its subject stays in the log.
                if d.kind.is_none()
                    && d.status != DeliveryStatus::Pending
                    && let Channel::Email { body, .. } = &mut d.channel
                {
                    body.clear();
                }
                store::alerts::put_delivery(txn, &d, previous)?;
                Ok(Some(d))
            })
            .await?)
    }

    /// Deletes finished deliveries older than the report retention period.
    pub async fn prune_deliveries(&self, now: UnixMillis) -> Result<usize> {
        let cutoff = now.0.saturating_sub(self.retention.reports_ms);
        Ok(self
            .store
            .write(move |txn| store::alerts::prune_deliveries(txn, cutoff, 5_000))
            .await?)
    }
}

/// The delay before retry `n` (1-based): 30 s, 1 min, 2 min … at most 1 h.
pub fn backoff(failures: u32) -> Duration {
    let factor = 2_u32.saturating_pow(failures.saturating_sub(1).min(16));
    BASE_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

fn match_evidence(reg: &Registry, ev: &Evidence) -> Vec<Hit> {
    let mut ips: HashMap<IpKey, u64> = HashMap::new();
    for ip in &ev.ips {
        *ips.entry(*ip).or_default() += 1;
    }
    let mut hits = Vec::new();
    for (ip, count) in ips {
        for id in reg.by_ip.get(&ip).into_iter().flatten() {
            hits.push(Hit {
                alert: *id,
                item: ip.to_string(),
                ip: None,
                count,
            });
        }
        for id in reg.range_set.containing(ip) {
            hits.push(Hit {
                alert: *id,
                item: ip.to_string(),
                ip: Some(ip.0),
                count,
            });
        }
    }
    let mut names =
        |list: &[String], index: &HashMap<String, Vec<u64>>, lower: fn(&str) -> String| {
            let mut counted: HashMap<String, u64> = HashMap::new();
            for n in list {
                *counted.entry(lower(n)).or_default() += 1;
            }
            for (n, count) in counted {
                for id in index.get(&n).into_iter().flatten() {
                    hits.push(Hit {
                        alert: *id,
                        item: n.clone(),
                        ip: None,
                        count,
                    });
                }
            }
        };
    names(&ev.usernames, &reg.by_username, str::to_lowercase);
    names(&ev.emails, &reg.by_email, str::to_ascii_lowercase);
    hits
}

/// Turns an alert's pending digest into outbox deliveries and resets it.
fn fire(
    txn: &redb::WriteTransaction,
    a: &mut Alert,
    now: UnixMillis,
    cooldown_ms: i64,
) -> store::Result<()> {
    let what = kind_name(a.kind);
    let named = a
        .label
        .as_ref()
        .map_or_else(String::new, |l| format!(" ({l})"));
    let first = UnixMillis(a.pending_first_ms.unwrap_or(now.0)).rfc3339();
    let last = UnixMillis(a.pending_last_ms.unwrap_or(now.0)).rfc3339();
    let mut listed = a.pending.join("\n  ");
    if a.pending.len() >= MAX_DIGEST_ITEMS {
        listed.push_str("\n  (more not listed)");
    }
    let subject = format!("[sikker] {what} alert: {}{named}", a.value);
    let body = format!(
        "Your sikker {what} alert for {value}{named} matched new evidence.\n\n\
         Watched {what}: {value}\n\
         New matches since the last notification: {count}\n\
         Matched:\n  {listed}\n\
         First match: {first}\n\
         Last match: {last}\n\n\
         This alert notifies at most once every {cool}.\n\
         Alert id: {id}\n",
        value = a.value,
        count = a.pending_count,
        cool = humantime::format_duration(Duration::from_millis(
            u64::try_from(cooldown_ms).unwrap_or(0)
        )),
        id = a.id,
    );
    let json = serde_json::json!({
        "type": "alert.matched",
        "alertId": a.id.to_string(),
        "kind": a.kind.as_str(),
        "watched": a.value,
        "label": a.label,
        "matches": a.pending_count,
        "matched": a.pending,
        "firstMatchAt": first,
        "lastMatchAt": last,
        "createdAt": now.rfc3339(),
    });
    let mut channels = Vec::new();
    if let Some(to) = &a.notify_email {
        channels.push(Channel::Email {
            to: to.clone(),
            subject,
            body,
        });
    }
    if let Some(url) = &a.webhook_url {
        channels.push(Channel::Webhook {
            url: url.clone(),
            body: json.to_string(),
        });
    }
    for channel in channels {
        let d = Delivery {
            id: store::alerts::next_delivery_id(txn)?,
            alert_id: a.id,
            account: a.account,
            kind: Some(a.kind),
            channel,
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
            created_ms: now.0,
            next_attempt_ms: Some(now.0),
            finished_ms: None,
        };
        store::alerts::put_delivery(txn, &d, None)?;
    }
    a.last_alerted_ms = Some(now.0);
    a.total_alerts += 1;
    a.pending.clear();
    a.pending_count = 0;
    a.pending_first_ms = None;
    a.pending_last_ms = None;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tiers::TierTable;

    #[test]
    fn values_are_normalised_and_checked() {
        let t = TierTable::default();
        let free = t.get("free");
        assert_eq!(
            normalise_value(AlertKind::Ip, " 45.155.205.9 ", free).unwrap(),
            "45.155.205.9"
        );
        assert!(normalise_value(AlertKind::Ip, "1.2.3", free).is_err());
        assert!(normalise_value(AlertKind::Ip, "10.0.0.1", free).is_err());
        assert_eq!(
            normalise_value(AlertKind::Range, "45.155.205.7/28", free).unwrap(),
            "45.155.205.0/28"
        );
        assert!(matches!(
            normalise_value(AlertKind::Range, "45.155.205.0/27", free),
            Err(Error::Invalid { .. })
        ));
        assert!(normalise_value(AlertKind::Range, "2a00:1450::/124", free).is_ok());
        assert!(normalise_value(AlertKind::Range, "2a00:1450::/123", free).is_err());
        assert!(normalise_value(AlertKind::Range, "45.155.205.9", free).is_err());
        assert_eq!(
            normalise_value(AlertKind::Username, " Deploy ", free).unwrap(),
            "deploy"
        );
        assert!(normalise_value(AlertKind::Username, "a\u{7}b", free).is_err());
        assert_eq!(
            normalise_value(AlertKind::Email, "Ops@Example.COM", free).unwrap(),
            "ops@example.com"
        );
        assert!(normalise_value(AlertKind::Email, "ops@", free).is_err());
    }

    #[test]
    fn webhook_urls() {
        assert!(check_webhook_url("https://hooks.example.com/x", false).is_ok());
        assert!(check_webhook_url("http://127.0.0.1:9/x", false).is_err());
        assert!(check_webhook_url("http://127.0.0.1:9/x", true).is_ok());
        assert!(check_webhook_url("ftp://example.com/", true).is_err());
        assert!(check_webhook_url("https://user:pw@example.com/", false).is_err());
        assert!(check_webhook_url("not a url", false).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(3), Duration::from_secs(120));
        assert_eq!(backoff(50), MAX_BACKOFF);
    }

    #[test]
    fn matching_finds_every_kind() {
        let mut reg = Registry::default();
        let mk = |id, kind, value: &str| Alert {
            id,
            account: 1,
            key_id: 1,
            kind,
            value: value.into(),
            label: None,
            enabled: true,
            notify_email: None,
            webhook_url: None,
            webhook_secret: None,
            created_ms: 0,
            last_alerted_ms: None,
            total_alerts: 0,
            match_count: 0,
            unique_matches: 0,
            pending: vec![],
            pending_count: 0,
            pending_first_ms: None,
            pending_last_ms: None,
        };
        reg.add(&mk(1, AlertKind::Ip, "45.155.205.9"));
        reg.add(&mk(2, AlertKind::Range, "45.155.205.0/28"));
        reg.add(&mk(3, AlertKind::Username, "deploy"));
        reg.add(&mk(4, AlertKind::Email, "ops@example.com"));
        let ev = Evidence {
            ips: vec![
                "45.155.205.9".parse().unwrap(),
                "45.155.205.9".parse().unwrap(),
                "45.155.205.20".parse().unwrap(),
            ],
            usernames: vec!["DEPLOY".into(), "root".into()],
            emails: vec!["ops@example.com".into()],
        };
        let mut hits = match_evidence(&reg, &ev);
        hits.sort_by_key(|h| (h.alert, h.item.clone()));
        let got: Vec<(u64, &str, u64)> = hits
            .iter()
            .map(|h| (h.alert, h.item.as_str(), h.count))
            .collect();
        assert_eq!(
            got,
            [
                (1, "45.155.205.9", 2),
                (2, "45.155.205.9", 2),
                (3, "deploy", 1),
                (4, "ops@example.com", 1)
            ]
        );
        reg.remove(&mk(2, AlertKind::Range, "45.155.205.0/28"));
        assert!(
            match_evidence(&reg, &ev).iter().all(|h| h.alert != 2),
            "a deleted alert no longer matches"
        );
    }
}
