//! `GET /v1/key/check/{ip}`, `POST /v1/key/bulk-check-inline` and
//! `POST /v1/key/bulk-check`.

use http::StatusCode;
use serde_json::{Map, Value};

use super::super::dispatch::Ctx;
use super::super::error::HttpError;
use super::super::query::{Query, invalid};
use super::super::response::{self, Resp};
use crate::domain::{Category, IpKey, Protocol, UnixMillis, behavior};
use crate::geoip::CountryCode;
use crate::index::PrefixVerdict;
use crate::service::geo::GeoBody;
use crate::service::reputation::{self, CheckOptions, CheckResult};

pub const MAX_BULK_IPS: usize = 10_000;

pub fn parse_ip(s: &str) -> Result<IpKey, HttpError> {
    s.parse::<IpKey>()
        .map_err(|e| invalid("ip", &e.to_string()))
}

pub async fn get(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let q = Query::parse(ctx.query.as_deref());
    let who = ctx.key()?.clone();
    let ip = parse_ip(ctx.params.first().map_or("", String::as_str))?;
    let mut protocols = Vec::new();
    for p in q.list("protocols") {
        protocols.push(
            p.parse::<Protocol>()
                .map_err(|()| invalid("protocols", &format!("unknown protocol '{p}'")))?,
        );
    }
    let opts = CheckOptions {
        max_age_secs: q.uint("maxAge", 0, u64::MAX / 1000)?.filter(|s| *s > 0),
        protocols,
        ignore_whitelist: q.bool("ignoreWhitelist", false)?,
    };
    let verbose = q.bool("verbose", true)?;
    let exclude = q.list("exclude");
    let r = ctx.state.services.check(&who, ip, &opts).await?;
    let body = CheckBody::of(&r, verbose);
    if exclude.is_empty() {
        // Written straight from the typed body: building a JSON map first
        // was a tenth of a check's CPU.
        return Ok(response::json(StatusCode::OK, &body));
    }
    let mut v = to_map(&body);
    for field in &exclude {
        if field != "ip" && field != "found" {
            v.remove(field);
        }
    }
    Ok(response::json(StatusCode::OK, &Value::Object(v)))
}

/// The SikkerAPI check object as a JSON map (for callers that edit it).
pub fn render(r: &CheckResult, verbose: bool) -> Map<String, Value> {
    to_map(&CheckBody::of(r, verbose))
}

fn to_map(body: &CheckBody<'_>) -> Map<String, Value> {
    match serde_json::to_value(body) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The SikkerAPI check object. Absent evidence reads as null dates, zero
/// counts and empty lists; `behaviors`, `primitives` and
/// `scoreExplanation` only in the verbose answer.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckBody<'a> {
    ip: String,
    found: bool,
    confidence_level: u8,
    is_whitelisted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    whitelist_reason: Option<&'a str>,
    geolocation: Option<GeoBody<'a>>,
    prefix: Option<PrefixBody>,
    valid_until: Option<String>,
    first_seen: Option<String>,
    last_seen: Option<String>,
    total_sessions: u64,
    total_events: u64,
    total_reports: u64,
    distinct_reporters: u64,
    protocols: Vec<ProtocolLine>,
    categories: Vec<CategoryLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    behaviors: Option<Vec<BehaviorLine>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primitives: Option<Vec<PrimitiveLine<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score_explanation: Option<ExplanationBody<'a>>,
}

#[derive(serde::Serialize)]
struct ProtocolLine {
    protocol: &'static str,
    sessions: u64,
    events: u64,
    reports: u64,
}

#[derive(serde::Serialize)]
struct CategoryLine {
    id: u8,
    name: &'static str,
    count: u64,
}

#[derive(serde::Serialize)]
struct BehaviorLine {
    name: &'static str,
    severity: &'static str,
    count: u64,
    description: &'static str,
}

#[derive(serde::Serialize)]
struct PrimitiveLine<'a> {
    name: &'a str,
    count: u64,
    description: Option<&'static str>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ExplanationBody<'a> {
    score: u8,
    raw: f64,
    recency_factor: f64,
    whitelist_discount: bool,
    factors: Vec<FactorLine<'a>>,
}

#[derive(serde::Serialize)]
struct FactorLine<'a> {
    name: &'static str,
    points: f64,
    detail: &'a str,
}

impl<'a> CheckBody<'a> {
    pub fn of(r: &'a CheckResult, verbose: bool) -> Self {
        let ind = r.indicator.as_ref();
        let explanation = r.explanation.as_ref().filter(|_| verbose && ind.is_some());
        Self {
            ip: r.ip.to_string(),
            found: ind.is_some(),
            confidence_level: r.confidence,
            is_whitelisted: r.whitelisted,
            whitelist_reason: r.whitelist_reason.as_deref(),
            geolocation: r.geo.body(),
            prefix: r.prefix.as_ref().map(PrefixBody::of),
            valid_until: r.valid_until.map(UnixMillis::rfc3339),
            first_seen: ind.map(|i| i.first_seen.rfc3339()),
            last_seen: ind.map(|i| i.last_seen.rfc3339()),
            total_sessions: ind.map_or(0, |i| i.sessions),
            total_events: ind.map_or(0, |i| i.events),
            total_reports: ind.map_or(0, |i| i.reports),
            distinct_reporters: ind.map_or(0, |i| i.distinct_reporters),
            protocols: ind.map_or_else(Vec::new, |i| {
                i.protocols
                    .iter()
                    .map(|(p, s)| ProtocolLine {
                        protocol: p.as_str(),
                        sessions: s.sessions,
                        events: s.events,
                        reports: s.reports,
                    })
                    .collect()
            }),
            categories: ind.map_or_else(Vec::new, |i| {
                reputation::categories_of(i)
                    .into_values()
                    .map(|(c, n)| CategoryLine {
                        id: c.id(),
                        name: c.name(),
                        count: n,
                    })
                    .collect()
            }),
            behaviors: verbose.then(|| {
                ind.map_or_else(Vec::new, |i| {
                    reputation::behaviors_of(i)
                        .into_iter()
                        .map(|(rule, count)| BehaviorLine {
                            name: rule.name,
                            severity: rule.severity.as_str(),
                            count,
                            description: rule.description,
                        })
                        .collect()
                })
            }),
            primitives: verbose.then(|| {
                ind.map_or_else(Vec::new, |i| {
                    i.primitives
                        .iter()
                        .map(|(n, c)| PrimitiveLine {
                            name: n,
                            count: *c,
                            description: behavior::primitive_description(n),
                        })
                        .collect()
                })
            }),
            score_explanation: explanation.map(|e| ExplanationBody {
                score: e.score,
                raw: (e.raw * 100.0).round() / 100.0,
                recency_factor: (e.recency_factor * 1000.0).round() / 1000.0,
                whitelist_discount: r.whitelisted && r.confidence == 0 && e.score > 0,
                factors: e
                    .factors
                    .iter()
                    .map(|f| FactorLine {
                        name: f.name,
                        points: (f.points * 100.0).round() / 100.0,
                        detail: &f.detail,
                    })
                    .collect(),
            }),
        }
    }
}

/// The prefix verdict (an addition to the SikkerAPI contract; clients
/// that do not know it ignore it).
/// The `prefix` object (keys in the order a JSON map gives them).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PrefixBody {
    categories: Vec<CategoryRef>,
    confidence_level: u8,
    distinct_addresses: u32,
    first_seen: String,
    last_seen: String,
    network: String,
    prefix_length: u8,
    total_reports: u64,
    valid_until: String,
}

#[derive(serde::Serialize)]
struct CategoryRef {
    id: u8,
    name: &'static str,
}

impl PrefixBody {
    fn of(p: &PrefixVerdict) -> Self {
        Self {
            categories: (1..=16_u8)
                .filter(|id| p.categories & (1 << (id - 1)) != 0)
                .filter_map(Category::from_id)
                .map(|c| CategoryRef {
                    id: c.id(),
                    name: c.name(),
                })
                .collect(),
            confidence_level: p.score,
            distinct_addresses: p.addresses,
            first_seen: p.first_seen.rfc3339(),
            last_seen: p.last_seen.rfc3339(),
            network: p.prefix.to_string(),
            prefix_length: p.prefix.len.get(),
            total_reports: p.reports,
            valid_until: p.expires.rfc3339(),
        }
    }
}

/// An input line that is not an IP.
#[derive(serde::Serialize)]
struct LineError {
    line: usize,
    input: String,
    error: String,
}

/// Parses one IP per line (first `,`/`;` field; blank lines and a header skipped).
fn parse_lines(text: &str) -> Result<(Vec<IpKey>, Vec<LineError>), HttpError> {
    let mut ips = Vec::new();
    let mut errors = Vec::new();
    let mut first = true;
    for (i, line) in text.lines().enumerate() {
        let field = line
            .split([',', ';'])
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches('"');
        if field.is_empty() {
            continue;
        }
        match field.parse::<IpKey>() {
            Ok(ip) => ips.push(ip),
            Err(_) if first => {} // a header line
            Err(e) => errors.push(LineError {
                line: i + 1,
                input: field.chars().take(64).collect(),
                error: e.to_string(),
            }),
        }
        first = false;
        if ips.len() + errors.len() > MAX_BULK_IPS {
            return Err(invalid(
                "body",
                &format!("at most {MAX_BULK_IPS} IPs per request"),
            ));
        }
    }
    Ok((ips, errors))
}

pub async fn bulk(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.key()?.clone();
    let media = super::media_type(&ctx);
    let (ips, errors) = if super::is_json(&media) {
        let v: Value = serde_json::from_slice(&ctx.body)
            .map_err(|e| invalid("body", &format!("is not valid JSON: {e}")))?;
        let arr = v.get("ips").cloned().unwrap_or(v);
        let Value::Array(items) = arr else {
            return Err(invalid("ips", "must be an array of IP strings"));
        };
        if items.len() > MAX_BULK_IPS {
            return Err(invalid(
                "ips",
                &format!("at most {MAX_BULK_IPS} IPs per request"),
            ));
        }
        let mut ips = Vec::new();
        let mut errors = Vec::new();
        for (i, it) in items.iter().enumerate() {
            match it.as_str().map(str::trim).map(str::parse::<IpKey>) {
                Some(Ok(ip)) => ips.push(ip),
                _ => errors.push(LineError {
                    line: i + 1,
                    input: it.to_string().chars().take(64).collect(),
                    error: "not a valid IPv4 or IPv6 address".into(),
                }),
            }
        }
        (ips, errors)
    } else {
        parse_lines(super::utf8(&ctx)?)?
    };
    let results = ctx.state.services.bulk_check(&who, ips).await?;
    let found = results.iter().filter(|r| r.confidence.is_some()).count();
    let rows: Vec<BulkLine<'_>> = results
        .iter()
        .map(|r| BulkLine {
            ip: r.ip.to_string(),
            found: r.confidence.is_some(),
            confidence_level: r.confidence,
            is_whitelisted: r.whitelisted,
            country_code: r.country.as_ref().map(CountryCode::as_str),
            last_seen: r.last_seen.map(|t| t.0),
        })
        .collect();
    Ok(response::json(
        StatusCode::OK,
        &BulkBody {
            queried: results.len(),
            found,
            results: rows,
            errors,
        },
    ))
}

#[derive(serde::Serialize)]
struct BulkBody<'a> {
    queried: usize,
    found: usize,
    results: Vec<BulkLine<'a>>,
    errors: Vec<LineError>,
}

/// One bulk-check result (`confidenceLevel` and `lastSeen` are null when
/// the address is not listed).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkLine<'a> {
    ip: String,
    found: bool,
    confidence_level: Option<u8>,
    is_whitelisted: bool,
    country_code: Option<&'a str>,
    last_seen: Option<i64>,
}
