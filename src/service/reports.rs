//! Reports from API keys: validation, the 15-minute de-duplication, raw
//! storage for the retention period, and aggregation into the indicator.

use std::collections::HashMap;

use super::apikeys::ApiPrincipal;
use super::quotas::Bucket;
use super::threat::Publish;
use super::{Error, Result, Services};
use crate::domain::score::reporter_weight;
use crate::domain::{Category, Indicator, IpKey, Protocol, UnixMillis};
use crate::index::Summary;
use crate::store::{self, reports::RawReport};

pub const MAX_BULK_ROWS: usize = 10_000;
pub const MAX_PROTOCOL_CHARS: usize = 32;
pub const MAX_COMMENT_CHARS: usize = 1000;

/// One report as submitted, before validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportRow {
    pub ip: String,
    pub category: String,
    pub protocol: Option<String>,
    pub comment: Option<String>,
}

/// A report that passed validation.
#[derive(Clone, Debug)]
pub struct ValidReport {
    pub ip: IpKey,
    pub category: Category,
    pub protocol: Option<String>,
    pub comment: Option<String>,
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
        protocol: protocol.map(str::to_ascii_lowercase),
        comment: comment.map(str::to_owned),
    })
}

/// One refused row of a bulk report (`row` is 1-based).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
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
        let now = self.clock.now();
        let retention = self.retention.indicators_ms;
        let weight = reporter_weight(now.0 - who.account_created.0);
        self.charge(who, Bucket::Reports, reports.len() as u64)
            .await?;
        let who = who.clone();
        let evidence = super::alerts::Evidence {
            ips: reports.iter().map(|r| r.ip).collect(),
            ..super::alerts::Evidence::default()
        };
        let counted = self
            .ingest(move |txn| {
                let mut touched: HashMap<IpKey, (Indicator, Option<i64>)> = HashMap::new();
                let mut counted = 0;
                for r in reports {
                    let entry = match touched.entry(r.ip) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            let old = store::indicators::get_in_write(txn, r.ip)?;
                            let old_day = old.as_ref().map(|i| expiry_day(i, retention));
                            // An expired indicator that the sweep has not removed yet starts afresh.
                            let fresh = old.filter(|i| now.0 < i.last_seen.0 + retention);
                            v.insert((fresh.unwrap_or_else(|| Indicator::new(r.ip, now)), old_day))
                        }
                    };
                    let proto = r
                        .protocol
                        .as_deref()
                        .and_then(|p| p.parse::<Protocol>().ok());
                    let was_counted =
                        entry
                            .0
                            .apply_report(who.account, weight, r.category, proto, now);
                    counted += usize::from(was_counted);
                    let raw = RawReport {
                        id: 0,
                        ip: r.ip.0,
                        account: who.account,
                        key_id: who.key_id,
                        category: r.category.id(),
                        protocol: r.protocol,
                        comment: r.comment,
                        at_ms: now.0,
                        counted: was_counted,
                    };
                    store::reports::insert(txn, raw, now.day())?;
                }
                let mut publish = Vec::with_capacity(touched.len());
                for (ip, (ind, old_day)) in touched {
                    store::indicators::put(txn, &ind, old_day, expiry_day(&ind, retention))?;
                    publish.push(Publish::Upsert(ip, Summary::of(&ind, retention)));
                }
                Ok((counted, publish))
            })
            .await?;
        self.notice_evidence(&evidence);
        Ok(counted)
    }
}

pub(crate) fn expiry_day(ind: &Indicator, retention_ms: i64) -> i64 {
    UnixMillis(ind.last_seen.0.saturating_add(retention_ms)).day()
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
