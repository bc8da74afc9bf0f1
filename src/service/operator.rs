//! Operator use cases behind `sikker admin`: finding and deleting
//! accounts, streamed imports (report rows, plain lists, fail2ban, cowrie),
//! indicator export pages, backups and the retention overview. The input
//! formats are parsed here too, so the CLI only reads files and batches.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::apikeys::ApiPrincipal;
use super::reports::{DedupMode, ReportRow, Submitted};
use super::sensors::WireEvent;
use super::{Error, Result, Services};
use crate::domain::{IpKey, UnixMillis};
use crate::store::{self, accounts::Account};

/// Rows (or events) per admin request during an import: one write
/// transaction each. The size of that transaction is what sets an import's
/// speed: every transaction copies each B-tree page it touches, and random
/// addresses touch pages all over the indexes, so 10,000 rows per
/// transaction import at less than half the rate of 200,000. The cost is
/// that an online import holds the single writer (delaying API reports)
/// for a second or two per batch.
pub const IMPORT_BATCH: usize = 200_000;
/// How far a dated import row may lie ahead of the server's clock.
const IMPORT_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// Name of the built-in identity imported reports and events carry.
pub const IMPORT_IDENTITY: &str = "import";
/// The widest CIDR an `import list` expands into single reports (256 addresses).
pub const MAX_LIST_PREFIX_V4: u8 = 24;
/// IPv6: a /120 (256 addresses).
pub const MAX_LIST_PREFIX_V6: u8 = 120;

/// One refused input line (1-based).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineError {
    pub line: usize,
    pub error: String,
}

/// What one import batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOutcome {
    pub accepted: usize,
    pub rejected: usize,
    /// Reports stored but inside the reporter's 15-minute window, or events
    /// already ingested.
    pub duplicates: usize,
    pub errors: Vec<LineError>,
}

impl ImportOutcome {
    pub fn add(&mut self, o: ImportOutcome) {
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.duplicates += o.duplicates;
        self.errors.extend(o.errors);
    }
}

/// What `delete_account` removed.
#[derive(Clone, Debug, Serialize)]
pub struct Deleted {
    pub id: u64,
    pub username: String,
    pub keys_revoked: usize,
}

impl Services {
    /// An account by id, username or e-mail address.
    pub async fn find_account(&self, who: &str) -> Result<Account> {
        let who = who.trim().to_lowercase();
        let found = if let Ok(id) = who.parse::<u64>() {
            self.store
                .read(move |txn| store::accounts::get(txn, id))
                .await?
        } else {
            let w = who.clone();
            self.store
                .read(move |txn| store::accounts::find(txn, &w))
                .await?
        };
        found.ok_or_else(|| Error::not_found(format!("account '{who}'")))
    }

    /// Deletes an account: its sessions end, its API keys are revoked, and
    /// the account record with its username and e-mail index goes.
    /// Everything else the account left (reports, alerts) is the privacy
    /// erasure's to handle.
    pub async fn delete_account(&self, id: u64) -> Result<Deleted> {
        let a = self.account(id).await?;
        self.revoke_sessions(id, None).await?;
        let mut keys_revoked = 0;
        for k in self.account_keys(id)? {
            if k.revoked_ms.is_none() {
                self.revoke_api_key(k.id).await?;
                keys_revoked += 1;
            }
        }
        self.store
            .write(move |txn| store::accounts::remove(txn, id))
            .await?;
        Ok(Deleted {
            id,
            username: a.username,
            keys_revoked,
        })
    }

    /// Who imported reports count as: the account of API key `key`, or the
    /// built-in import identity (a key of its own, created on first use).
    async fn import_principal(&self, key: Option<u64>) -> Result<ApiPrincipal> {
        let keys = self.list_api_keys()?;
        let k = match key {
            Some(id) => keys
                .into_iter()
                .find(|k| k.id == id && k.revoked_ms.is_none())
                .ok_or_else(|| Error::not_found(format!("active API key {id}")))?,
            None => match keys
                .into_iter()
                .find(|k| k.name == IMPORT_IDENTITY && k.account == k.id && k.revoked_ms.is_none())
            {
                Some(k) => k,
                None => {
                    self.create_api_key(IMPORT_IDENTITY, super::tiers::DEFAULT_TIER, None)
                        .await?
                        .1
                }
            },
        };
        Ok(ApiPrincipal {
            key_id: k.id,
            account: k.account,
            account_created: UnixMillis(k.account_created_ms),
            tier: k.tier,
        })
    }

    /// One batch of report rows (with their line numbers); invalid rows are
    /// listed, the rest stored in one transaction, outside any quota.
    pub async fn import_reports(
        &self,
        key: Option<u64>,
        rows: Vec<(usize, ReportRow)>,
    ) -> Result<ImportOutcome> {
        if rows.len() > IMPORT_BATCH {
            return Err(Error::invalid(
                "rows",
                format!("at most {IMPORT_BATCH} per request"),
            ));
        }
        let who = self.import_principal(key).await?;
        let now = self.clock.now();
        let mut out = ImportOutcome::default();
        let mut good = Vec::with_capacity(rows.len());
        for (line, row) in &rows {
            match super::reports::validate(row).and_then(|v| self.import_time(v, now)) {
                Ok(v) => good.push(v),
                Err((_, error)) => out.errors.push(LineError { line: *line, error }),
            }
        }
        out.rejected = out.errors.len();
        if !good.is_empty() {
            let done = self
                .submit_reports_as(&who, good, DedupMode::CountOnce, false)
                .await?;
            out.accepted = done.len();
            out.duplicates = done
                .iter()
                .filter(|s| !matches!(s, Submitted::Counted))
                .count();
        }
        Ok(out)
    }

    /// A dated imported row must fall inside the report retention (an older
    /// one would be stored only to be swept) and not in the future.
    fn import_time(
        &self,
        v: super::reports::ValidReport,
        now: UnixMillis,
    ) -> std::result::Result<super::reports::ValidReport, super::reports::RowProblem> {
        let Some(at) = v.at else { return Ok(v) };
        let days = self.retention.reports_ms / crate::domain::time::MILLIS_PER_DAY;
        if at.0 < now.0.saturating_sub(self.retention.reports_ms) {
            return Err((
                "at",
                format!("older than the {days}-day report retention; not imported"),
            ));
        }
        if at.0 > now.0.saturating_add(IMPORT_CLOCK_SKEW_MS) {
            return Err(("at", "lies in the future".to_owned()));
        }
        Ok(v)
    }

    /// One batch of sensor events under the built-in import sensor; each
    /// invalid event is listed with its line, the rest ingested.
    pub async fn import_events(&self, events: Vec<(usize, WireEvent)>) -> Result<ImportOutcome> {
        if events.len() > IMPORT_BATCH {
            return Err(Error::invalid(
                "events",
                format!("at most {IMPORT_BATCH} per request"),
            ));
        }
        let sensors = self.list_sensors().await?;
        let sensor = match sensors
            .into_iter()
            .find(|s| s.name == IMPORT_IDENTITY && s.revoked_ms.is_none())
        {
            Some(s) => s,
            None => self.create_sensor(IMPORT_IDENTITY).await?.1,
        };
        let now = self.clock.now();
        let mut out = ImportOutcome::default();
        let mut good = Vec::with_capacity(events.len());
        for (line, w) in &events {
            match super::sensors::validate_event(w, now, self.retention.reports_ms) {
                Ok(e) => good.push(e),
                Err((field, error)) => out.errors.push(LineError {
                    line: *line,
                    error: format!("{field}: {error}"),
                }),
            }
        }
        out.rejected = out.errors.len();
        if !good.is_empty() {
            let r = self.ingest_events(&sensor, good).await?;
            out.accepted = r.accepted;
            out.duplicates = r.duplicates;
        }
        Ok(out)
    }

    /// Up to `limit` live, not whitelisted indicators with IPs after
    /// `after`, as export records (`stix` holds the STIX indicator).
    pub async fn export_page(&self, after: Option<u128>, limit: usize) -> Result<Value> {
        let limit = limit.clamp(1, IMPORT_BATCH);
        let retention = self.retention.indicators_ms;
        let now = self.clock.now();
        let (found, last) = self
            .store
            .read(move |txn| {
                let mut out = Vec::new();
                let mut last = None;
                let t = txn.open_table(store::tables::IP_INDICATOR)?;
                let start = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
                for item in
                    redb::ReadableTable::range(&t, (start, std::ops::Bound::Unbounded))?.take(limit)
                {
                    let (k, _) = item?;
                    let ip = IpKey(k.value());
                    last = Some(ip.0);
                    let Some((ind, pos)) = store::indicators::get_with_position(txn, ip)? else {
                        continue;
                    };
                    if now.0 >= ind.last_seen.0 + retention {
                        continue;
                    }
                    let expiries = store::repeat::expiries(txn, ip)?;
                    out.push((ind, pos, expiries));
                }
                Ok((out, last))
            })
            .await?;
        let mut items = Vec::with_capacity(found.len());
        for (ind, pos, expiries) in found {
            if self.threat.is_whitelisted(ind.ip) {
                continue;
            }
            let s = crate::domain::score::score_with_history(&ind, now, expiries);
            let categories: Vec<&str> = ind
                .categories
                .keys()
                .filter_map(|c| crate::domain::Category::from_id(*c))
                .map(crate::domain::Category::name)
                .collect();
            items.push(json!({
                "ip": ind.ip.to_string(),
                "score": s.score,
                "first_seen": ind.first_seen.rfc3339(),
                "last_seen": ind.last_seen.rfc3339(),
                "reports": ind.reports,
                "events": ind.events,
                "categories": categories,
                "stix": pos.map(|p| super::stix::indicator(&ind, &p, retention, expiries)),
            }));
        }
        Ok(json!({ "items": items, "next": last.map(|l| l.to_string()) }))
    }

    /// Writes a consistent backup of the database and secret key to `path`
    /// (an absolute path on the server's host) while writes go on.
    pub async fn backup(&self, path: std::path::PathBuf) -> Result<store::backup::Summary> {
        if !path.is_absolute() {
            return Err(Error::invalid("path", "must be absolute"));
        }
        let secret =
            std::fs::read(self.data_dir.join(crate::datadir::SECRET_KEY_FILE)).map_err(|e| {
                Error::Internal {
                    detail: format!("cannot read the secret key: {e}"),
                }
            })?;
        let store = self.store.clone();
        let now = self.clock.now().0;
        tokio::task::spawn_blocking(move || store::backup::write(&store, &secret, &path, now))
            .await
            .map_err(|e| Error::Internal {
                detail: e.to_string(),
            })?
            .map_err(backup_error)
    }

    /// Entries per table and the oldest bucket of each day-bucketed table
    /// (part of `sikker admin stats`; the retention categories themselves
    /// are `sikker admin retention status`).
    pub async fn table_inventory(&self) -> Result<Value> {
        let (counts, oldest) = self
            .store
            .read(|txn| {
                Ok((
                    store::inventory::table_counts(txn)?,
                    store::inventory::oldest_days(txn)?,
                ))
            })
            .await?;
        let day = |d: Option<i64>| {
            d.map(|d| {
                UnixMillis(d * crate::domain::time::MILLIS_PER_DAY).rfc3339()[..10].to_owned()
            })
        };
        Ok(json!({
            "retention_days": {
                "indicators": self.retention.indicators_ms / crate::domain::time::MILLIS_PER_DAY,
                "reports": self.retention.reports_ms / crate::domain::time::MILLIS_PER_DAY,
            },
            "tables": counts.into_iter().map(|(t, n)| json!({"table": t, "entries": n})).collect::<Vec<_>>(),
            "oldest_bucket": oldest.into_iter().map(|(t, d)| json!({"table": t, "day": day(d)})).collect::<Vec<_>>(),
        }))
    }
}

/// Backup problems are the operator's input, in words; the rest internal.
pub fn backup_error(e: store::Error) -> Error {
    match e {
        store::Error::Backup(reason) => Error::invalid("backup", reason),
        store::Error::Io { what, source } => Error::invalid("backup", format!("{what}: {source}")),
        other => other.into(),
    }
}

/// One line of a plain IP/CIDR list: the addresses it stands for.
/// `#` starts a comment; a CIDR wider than /24 (IPv6: /120) is refused
/// rather than expanded, since reporting a whole network as attackers is
/// almost always a mistake.
pub fn list_line(line: &str) -> std::result::Result<Vec<String>, String> {
    let t = line.split('#').next().unwrap_or_default().trim();
    if t.is_empty() {
        return Ok(Vec::new());
    }
    if !t.contains('/') {
        return t
            .parse::<IpKey>()
            .map(|ip| vec![ip.to_string()])
            .map_err(|e| format!("'{t}': {e}"));
    }
    let net: ipnet::IpNet = t.parse().map_err(|_| format!("'{t}': not an IP or CIDR"))?;
    let (max, kind) = match net {
        ipnet::IpNet::V4(_) => (MAX_LIST_PREFIX_V4, "IPv4"),
        ipnet::IpNet::V6(_) => (MAX_LIST_PREFIX_V6, "IPv6"),
    };
    if net.prefix_len() < max {
        return Err(format!(
            "'{t}': {kind} networks wider than /{max} are not imported (list the addresses instead)"
        ));
    }
    Ok(net.hosts().map(|ip| ip.to_string()).collect())
}

/// The banned IPs in `fail2ban-client status <jail>` output (the
/// `Banned IP list:` line; several jails' outputs may be concatenated),
/// with their line numbers and the jail they belong to.
pub fn fail2ban_line(line: &str, jail: &mut Option<String>) -> Vec<String> {
    let t = line.trim_start_matches(['|', '`', '-', ' ', '\t']);
    if let Some(j) = t.strip_prefix("Status for the jail:") {
        *jail = Some(j.trim().to_owned());
    }
    match t.strip_prefix("Banned IP list:") {
        Some(rest) => rest.split_whitespace().map(str::to_owned).collect(),
        None => Vec::new(),
    }
}

/// The category and protocol of a fail2ban jail, from its usual names: the
/// same table as `packaging/fail2ban/action.d/sikker.conf`, so a ban counts
/// the same whether the action reported it or an import did.
pub fn jail_mapping(jail: &str) -> (&'static str, Option<&'static str>) {
    const BRUTE: &str = "brute_force";
    let j = jail.to_ascii_lowercase();
    let has = |names: &[&str]| names.iter().any(|n| j.contains(n));
    if has(&["ssh", "dropbear"]) {
        (BRUTE, Some("ssh"))
    } else if has(&["ftp"]) {
        (BRUTE, Some("ftp"))
    } else if has(&["postfix-sasl", "sasl", "dovecot", "courier", "exim", "smtp"]) {
        (BRUTE, Some("smtp"))
    } else if has(&["sql", "modsec", "naxsi"]) {
        ("web_exploit", Some("http"))
    } else if has(&["-auth", "wordpress", "roundcube", "phpmyadmin"]) {
        (BRUTE, Some("http"))
    } else if has(&["botsearch", "badbot", "bad-bot"]) {
        ("bad_bot", Some("http"))
    } else if has(&["spam", "postfix-rbl"]) {
        ("spam", Some("smtp"))
    } else if has(&["portscan", "scan"]) {
        ("port_scan", None)
    } else if has(&["ddos", "limit-req"]) {
        ("ddos", Some("http"))
    } else {
        ("other", None)
    }
}

/// One report row for a banned IP of `jail` (`category` overrides the
/// jail's own); only the jail's name goes into the comment, never log
/// lines (they can hold user names).
pub fn fail2ban_row(
    ip: String,
    jail: Option<&str>,
    category: Option<&str>,
    at_ms: Option<i64>,
) -> ReportRow {
    let (cat, protocol) = jail.map_or(("brute_force", None), jail_mapping);
    ReportRow {
        ip,
        category: category.unwrap_or(cat).to_owned(),
        protocol: protocol.map(str::to_owned),
        comment: jail.map(|j| format!("fail2ban jail {j}")),
        at_ms,
    }
}

/// One cowrie JSON log line as a sensor event; `Ok(None)` for cowrie
/// events that carry no evidence sikker keeps (client versions, closes …).
pub fn cowrie_line(line: &str) -> std::result::Result<Option<WireEvent>, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let eventid = s("eventid").ok_or("no eventid")?;
    let kind = match eventid.as_str() {
        "cowrie.session.connect" => "connect",
        "cowrie.login.failed" | "cowrie.login.success" => "auth",
        "cowrie.command.input" | "cowrie.command.failed" => "command",
        _ => return Ok(None),
    };
    let protocol = match s("protocol").as_deref() {
        Some("telnet") => "telnet",
        _ => "ssh",
    };
    Ok(Some(WireEvent {
        ts: v.get("timestamp").cloned().ok_or("no timestamp")?,
        src_ip: s("src_ip").ok_or("no src_ip")?,
        protocol: protocol.into(),
        dst_port: v
            .get("dst_port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok()),
        session_id: s("session").ok_or("no session")?,
        kind: kind.into(),
        username: s("username"),
        command: s("input"),
        ..WireEvent::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_lines() {
        assert_eq!(list_line("1.2.3.4 # x").unwrap(), ["1.2.3.4"]);
        assert!(list_line("  # only a comment").unwrap().is_empty());
        assert_eq!(list_line("198.51.100.0/30").unwrap().len(), 2);
        assert_eq!(list_line("198.51.100.0/24").unwrap().len(), 254);
        assert!(
            list_line("10.0.0.0/8")
                .unwrap_err()
                .contains("wider than /24")
        );
        assert!(list_line("nonsense").is_err());
    }

    #[test]
    fn fail2ban_status_output() {
        let text = "Status for the jail: sshd\n|- Filter\n|  |- Currently failed:\t2\n`- Actions\n   |- Currently banned:\t2\n   `- Banned IP list:\t203.0.113.5 198.51.100.7\n";
        let mut jail = None;
        let ips: Vec<String> = text
            .lines()
            .flat_map(|l| fail2ban_line(l, &mut jail))
            .collect();
        assert_eq!(ips, ["203.0.113.5", "198.51.100.7"]);
        assert_eq!(jail.as_deref(), Some("sshd"));
        assert_eq!(jail_mapping("sshd"), ("brute_force", Some("ssh")));
        assert_eq!(jail_mapping("nginx-botsearch"), ("bad_bot", Some("http")));
        assert_eq!(jail_mapping("postfix-sasl"), ("brute_force", Some("smtp")));
        assert_eq!(
            jail_mapping("apache-modsecurity"),
            ("web_exploit", Some("http"))
        );
        assert_eq!(jail_mapping("recidive"), ("other", None));
        let row = fail2ban_row("203.0.113.5".into(), Some("sshd"), Some("port_scan"), None);
        assert_eq!(
            (row.category.as_str(), row.protocol.as_deref()),
            ("port_scan", Some("ssh"))
        );
    }

    #[test]
    fn cowrie_lines() {
        let e = cowrie_line(r#"{"eventid":"cowrie.login.failed","username":"root","password":"x","src_ip":"203.0.113.9","session":"a1","timestamp":"2024-05-01T10:00:00.000000Z","protocol":"ssh"}"#).unwrap().unwrap();
        assert_eq!(e.kind, "auth");
        assert_eq!(e.username.as_deref(), Some("root"));
        assert!(
            cowrie_line(r#"{"eventid":"cowrie.client.version","src_ip":"1.2.3.4"}"#)
                .unwrap()
                .is_none()
        );
        assert!(cowrie_line("{broken").is_err());
    }
}
