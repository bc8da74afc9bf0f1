//! Reports from API keys: validation, the 15-minute de-duplication, raw
//! storage for the retention period, and aggregation into the indicator.

use std::collections::BTreeMap;

use super::apikeys::ApiPrincipal;
use super::quotas::Bucket;
use super::threat::{Publish, indicator_for_update, summary_in_write};
use super::{Error, Result, Services};
use crate::domain::score::reporter_weight;
use crate::domain::{Category, Indicator, IpKey, Protocol, UnixMillis};
use crate::store::evidence_writer::EvidenceWriter;
use crate::store::{self, reports::RawReport};

pub const MAX_BULK_ROWS: usize = 10_000;
pub const MAX_PROTOCOL_CHARS: usize = 32;
pub const MAX_COMMENT_CHARS: usize = 1000;

/// One report as submitted, before validation.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportRow {
    pub ip: String,
    pub category: String,
    pub protocol: Option<String>,
    pub comment: Option<String>,
    /// When the attack happened (Unix ms), for imports of dated evidence
    /// such as fail2ban's ban history; `None`: now. The API never sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<i64>,
}

/// A report that passed validation.
#[derive(Clone, Debug)]
pub struct ValidReport {
    pub ip: IpKey,
    pub category: Category,
    /// Further categories of a report that names several (AbuseIPDB).
    pub more_categories: Vec<Category>,
    pub protocol: Option<String>,
    pub comment: Option<String>,
    /// The AbuseIPDB ids as submitted (empty for native reports).
    pub abuseipdb_categories: Vec<u8>,
    /// When the attack happened, if the reporter said so (else: now).
    pub at: Option<UnixMillis>,
}

/// What became of one submitted report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Stored and counted towards the score.
    Counted,
    /// Stored, but inside the account's 15-minute window for the IP.
    NotCounted,
    /// Refused (nothing stored): the account reported the IP within 15
    /// minutes; it may again in `retry_after_secs`.
    Duplicate { retry_after_secs: u64 },
}

/// How reports inside the 15-minute window are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupMode {
    /// Stored, counted once (SikkerAPI).
    CountOnce,
    /// Refused without writing (AbuseIPDB), also for a repeat within one batch.
    Refuse,
}

/// Why one row was refused: (field, message).
pub type RowProblem = (&'static str, String);

pub fn validate(row: &ReportRow) -> Result<ValidReport, RowProblem> {
    let ip: IpKey = row
        .ip
        .trim()
        .parse()
        .map_err(|_| ("ip", "Invalid IP address".to_owned()))?;
    if !ip.is_public() {
        return Err(("ip", "Private, reserved or non-routable IP address".into()));
    }
    if row.category.trim().is_empty() {
        return Err(("category", "Missing category".into()));
    }
    let category = Category::parse(&row.category).ok_or_else(|| {
        (
            "category",
            format!(
                "Unknown category '{}' (use a name or 1-16)",
                row.category.trim()
            ),
        )
    })?;
    let protocol = row
        .protocol
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    if protocol.is_some_and(|p| p.chars().count() > MAX_PROTOCOL_CHARS) {
        return Err((
            "protocol",
            format!("Protocol longer than {MAX_PROTOCOL_CHARS} characters"),
        ));
    }
    let comment = row
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS) {
        return Err((
            "comment",
            format!("Comment longer than {MAX_COMMENT_CHARS} characters"),
        ));
    }
    Ok(ValidReport {
        ip,
        category,
        more_categories: Vec::new(),
        protocol: protocol.map(str::to_ascii_lowercase),
        comment: comment.map(str::to_owned),
        abuseipdb_categories: Vec::new(),
        at: row.at_ms.map(UnixMillis),
    })
}

/// One refused row of a bulk report (`row` is 1-based).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowError {
    pub row: usize,
    pub ip: String,
    pub error: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BulkOutcome {
    pub total: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub errors: Vec<RowError>,
}

impl Services {
    /// One report. Invalid input changes nothing.
    pub async fn report(&self, who: &ApiPrincipal, row: &ReportRow) -> Result<bool> {
        let valid = validate(row).map_err(|(field, msg)| Error::invalid(field, msg))?;
        let counted = self.store_reports(who, vec![valid]).await?;
        Ok(counted == 1)
    }

    /// Many reports; each bad row is listed and the good ones are stored
    /// together in one transaction. `first_row` numbers the first row.
    pub async fn bulk_report(
        &self,
        who: &ApiPrincipal,
        rows: Vec<ReportRow>,
        first_row: usize,
    ) -> Result<BulkOutcome> {
        if rows.len() > MAX_BULK_ROWS {
            return Err(Error::invalid(
                "reports",
                format!(
                    "at most {MAX_BULK_ROWS} reports per request, got {}",
                    rows.len()
                ),
            ));
        }
        let mut out = BulkOutcome {
            total: rows.len(),
            ..BulkOutcome::default()
        };
        let mut good = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            match validate(row) {
                Ok(v) => good.push(v),
                Err((_, error)) => out.errors.push(RowError {
                    row: first_row + i,
                    ip: row.ip.trim().to_owned(),
                    error,
                }),
            }
        }
        out.accepted = good.len();
        out.rejected = out.errors.len();
        if !good.is_empty() {
            self.store_reports(who, good).await?;
        }
        Ok(out)
    }

    /// Stores valid reports atomically; returns how many counted.
    async fn store_reports(&self, who: &ApiPrincipal, reports: Vec<ValidReport>) -> Result<usize> {
        let out = self
            .submit_reports(who, reports, DedupMode::CountOnce)
            .await?;
        Ok(out.iter().filter(|s| **s == Submitted::Counted).count())
    }

    /// Which of `reports` the 15-minute rule refuses, as of now (read only).
    async fn duplicates(
        &self,
        who: &ApiPrincipal,
        reports: &[ValidReport],
    ) -> Result<Vec<Option<u64>>> {
        let now = self.clock.now();
        let retention = self.retention.indicators_ms;
        let ips: Vec<(IpKey, UnixMillis)> = reports
            .iter()
            .map(|r| (r.ip, r.at.unwrap_or(now)))
            .collect();
        let account = who.account;
        self.store
            .read(move |txn| {
                let mut seen = std::collections::HashSet::new();
                let mut out = Vec::with_capacity(ips.len());
                for (ip, at) in ips {
                    if !seen.insert(ip) {
                        out.push(Some(DEDUP_RETRY_SECS));
                        continue;
                    }
                    let wait = store::indicators::get(txn, ip)?
                        .filter(|i| now.0 < i.last_seen.0 + retention)
                        .map_or(0, |i| i.dedup_wait_ms(account, at));
                    out.push((wait > 0).then(|| wait_secs(wait)));
                }
                Ok(out)
            })
            .await
            .map_err(Error::from)
    }

    /// Stores valid reports in one transaction and aggregates them into
    /// their indicators; the result says, per report, what became of it.
    /// Reports the 15-minute rule refuses (`DedupMode::Refuse`) are neither
    /// stored nor charged.
    pub async fn submit_reports(
        &self,
        who: &ApiPrincipal,
        reports: Vec<ValidReport>,
        mode: DedupMode,
    ) -> Result<Vec<Submitted>> {
        self.submit_reports_as(who, reports, mode, true).await
    }

    /// `submit_reports`, charged to the key's daily quota only when
    /// `metered` (operator imports are not).
    pub(crate) async fn submit_reports_as(
        &self,
        who: &ApiPrincipal,
        reports: Vec<ValidReport>,
        mode: DedupMode,
        metered: bool,
    ) -> Result<Vec<Submitted>> {
        let refused = match mode {
            DedupMode::CountOnce => vec![None; reports.len()],
            DedupMode::Refuse => self.duplicates(who, &reports).await?,
        };
        let to_store = refused.iter().filter(|r| r.is_none()).count() as u64;
        if metered && to_store > 0 {
            self.charge(who, Bucket::Reports, to_store).await?;
        }
        let reports = self.scrub_reports(reports);
        self.store_scrubbed(who, reports, mode, refused).await
    }

    /// Comments through the scrubber, before any write, so no original
    /// comment ever reaches the database or a log line.
    fn scrub_reports(&self, reports: Vec<ValidReport>) -> Scrubbed {
        Scrubbed(
            reports
                .into_iter()
                .map(|mut r| {
                    r.comment = r
                        .comment
                        .take()
                        .map(|c| self.scrubber.scrub(&c, Some(r.ip)));
                    r
                })
                .collect(),
        )
    }

    /// Stores scrubbed reports in one transaction and aggregates them into
    /// their indicators (those `refused` are skipped, see `submit_reports`).
    async fn store_scrubbed(
        &self,
        who: &ApiPrincipal,
        Scrubbed(reports): Scrubbed,
        mode: DedupMode,
        refused: Vec<Option<u64>>,
    ) -> Result<Vec<Submitted>> {
        let now = self.clock.now();
        let evidence = super::alerts::Evidence {
            ips: reports.iter().map(|r| r.ip).collect(),
            ..super::alerts::Evidence::default()
        };
        let batch = ReportBatch {
            who: who.clone(),
            weight: reporter_weight(now.0 - who.account_created.0),
            mode,
            now,
            retentions: self.retention,
        };
        let out = self
            .ingest(move |txn| EvidenceWriter::with(txn, |w| batch.apply(w, reports, refused)))
            .await?;
        self.notice_evidence(&evidence);
        Ok(out)
    }

    /// The stored reports about `ip` made at or after `since`, newest first
    /// (a public answer: none for an IP with a granted correction, P27).
    pub async fn reports_about(&self, ip: IpKey, since: UnixMillis) -> Result<Vec<RawReport>> {
        if self.threat.is_corrected(ip) {
            return Ok(Vec::new());
        }
        let mut v = self
            .store
            .read(move |txn| store::reports::about_ip(txn, ip.0))
            .await?;
        v.retain(|r| r.at_ms >= since.0);
        v.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(b.id.cmp(&a.id)));
        Ok(v)
    }

    /// Deletes every report `who`'s account made about `ip` and takes them
    /// out of the indicator, in one transaction; returns how many went.
    /// An indicator left with no evidence at all is removed.
    pub async fn clear_reports(&self, who: &ApiPrincipal, ip: IpKey) -> Result<usize> {
        let account = who.account;
        let retention = self.retention.indicators_ms;
        let now = self.clock.now();
        self.ingest(move |txn| {
            let removed = store::reports::delete_by_account(txn, ip.0, account)?;
            if removed.is_empty() {
                return Ok((0, vec![]));
            }
            let Some(mut ind) = store::indicators::get_in_write(txn, ip)? else {
                return Ok((removed.len(), vec![]));
            };
            let old_day = expiry_day(&ind, retention);
            let counted: Vec<(Vec<Category>, Option<Protocol>)> = removed
                .iter()
                .filter(|r| r.counted)
                .map(|r| {
                    let cats = r
                        .categories()
                        .into_iter()
                        .filter_map(Category::from_id)
                        .collect();
                    let proto = r.protocol.as_deref().and_then(|p| p.parse().ok());
                    (cats, proto)
                })
                .collect();
            ind.retract_reports(account, &counted);
            let rest = store::reports::about_ip_in_write(txn, ip.0)?;
            let publish = if !ind.has_sensor_evidence() && rest.is_empty() {
                store::indicators::delete(txn, ip, old_day)?;
                Publish::Remove(ip)
            } else {
                // Sensor evidence has no per-event times here, so the
                // seen-times only move when reports were all there was.
                if !ind.has_sensor_evidence() {
                    let first = rest
                        .iter()
                        .map(|r| r.at_ms)
                        .min()
                        .unwrap_or(ind.first_seen.0);
                    let last = rest
                        .iter()
                        .map(|r| r.at_ms)
                        .max()
                        .unwrap_or(ind.last_seen.0);
                    ind.set_seen(UnixMillis(first), UnixMillis(last));
                }
                store::indicators::put(txn, &ind, Some(old_day), expiry_day(&ind, retention), now)?;
                Publish::Upsert(ip, summary_in_write(txn, &ind, retention)?)
            };
            Ok((removed.len(), vec![publish]))
        })
        .await
    }
}

/// Reports whose comments went through the scrubber: the only kind stored.
struct Scrubbed(Vec<ValidReport>);

/// One transaction's worth of reports from one principal.
struct ReportBatch {
    who: ApiPrincipal,
    weight: u16,
    mode: DedupMode,
    now: UnixMillis,
    retentions: super::threat::Retention,
}

impl ReportBatch {
    /// Aggregates `reports` (those not `refused`) into their indicators and
    /// stores them; says per report what became of it, and what to publish.
    fn apply(
        self,
        w: &mut EvidenceWriter<'_>,
        reports: Vec<ValidReport>,
        refused: Vec<Option<u64>>,
    ) -> store::Result<(Vec<Submitted>, Vec<Publish>)> {
        let Self {
            who,
            weight,
            mode,
            now,
            retentions,
        } = self;
        let retention = retentions.indicators_ms;
        // In address order, so each IP-keyed B-tree is walked
        // once front to back instead of at random (a stable sort:
        // one IP's reports keep their order). Answers keep the
        // submitted order.
        let mut touched: BTreeMap<IpKey, (Indicator, Option<i64>)> = BTreeMap::new();
        let mut out = vec![Submitted::NotCounted; reports.len()];
        let mut items: Vec<_> = reports.into_iter().zip(refused).enumerate().collect();
        items.sort_by_key(|(_, (r, _))| r.ip);
        for (i, (r, refused)) in items {
            if let Some(retry_after_secs) = refused {
                out[i] = Submitted::Duplicate { retry_after_secs };
                continue;
            }
            let entry = match touched.entry(r.ip) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    // An expired indicator that the sweep has not removed yet starts afresh.
                    let old = w.indicator(r.ip)?;
                    let (fresh, old_day) =
                        indicator_for_update(w.txn(), r.ip, old, now, retentions)?;
                    v.insert((fresh.unwrap_or_else(|| Indicator::new(r.ip, now)), old_day))
                }
            };
            let at = r.at.unwrap_or(now);
            if mode == DedupMode::Refuse && !entry.0.would_count(who.account, at) {
                // A concurrent request got there first.
                let wait = entry.0.dedup_wait_ms(who.account, at);
                out[i] = Submitted::Duplicate {
                    retry_after_secs: wait_secs(wait),
                };
                continue;
            }
            let proto = r
                .protocol
                .as_deref()
                .and_then(|p| p.parse::<Protocol>().ok());
            let mut cats = vec![r.category];
            cats.extend(&r.more_categories);
            let was_counted = entry
                .0
                .apply_report_multi(who.account, weight, &cats, proto, at);
            out[i] = if was_counted {
                Submitted::Counted
            } else {
                Submitted::NotCounted
            };
            let raw = RawReport {
                id: 0,
                ip: r.ip.0,
                account: who.account,
                key_id: who.key_id,
                category: r.category.id(),
                protocol: r.protocol,
                comment: r.comment,
                at_ms: at.0,
                counted: was_counted,
                more_categories: r.more_categories.iter().map(|c| c.id()).collect(),
                abuseipdb_categories: r.abuseipdb_categories,
            };
            // A dated report's retention runs from when it happened.
            w.insert_report(raw, at.min(now).day())?;
        }
        let mut publish = Vec::with_capacity(touched.len());
        for (ip, (ind, old_day)) in touched {
            w.put_indicator(&ind, old_day, expiry_day(&ind, retention), now)?;
            publish.push(Publish::Upsert(
                ip,
                summary_in_write(w.txn(), &ind, retention)?,
            ));
        }
        Ok((out, publish))
    }
}

/// What a repeat inside one batch is told to wait.
const DEDUP_RETRY_SECS: u64 = 900;

fn wait_secs(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).div_ceil(1000)
}

pub(crate) fn expiry_day(ind: &Indicator, retention_ms: i64) -> i64 {
    ind.expiry_day(retention_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ip: &str, cat: &str) -> ReportRow {
        ReportRow {
            ip: ip.into(),
            category: cat.into(),
            ..ReportRow::default()
        }
    }

    #[test]
    fn validation_messages() {
        assert!(validate(&row("1.2.3.4", "brute_force")).is_ok());
        assert!(validate(&row("2a00:1450::1", "3")).is_ok());
        assert_eq!(
            validate(&row("1.2.3.4.5", "1")).unwrap_err().1,
            "Invalid IP address"
        );
        assert_eq!(validate(&row("10.0.0.1", "1")).unwrap_err().0, "ip");
        assert_eq!(validate(&row("1.2.3.4", "17")).unwrap_err().0, "category");
        assert_eq!(validate(&row("1.2.3.4", "")).unwrap_err().0, "category");
        let mut r = row("1.2.3.4", "1");
        r.comment = Some("x".repeat(1001));
        assert_eq!(validate(&r).unwrap_err().0, "comment");
        r.comment = Some("é".repeat(1000));
        assert!(
            validate(&r).is_ok(),
            "the limit counts characters, not bytes"
        );
        r.protocol = Some("p".repeat(33));
        assert_eq!(validate(&r).unwrap_err().0, "protocol");
    }
}
