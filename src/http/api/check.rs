//! `GET /v1/key/check/{ip}`, `POST /v1/key/bulk-check-inline` and
//! `POST /v1/key/bulk-check`.

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::super::dispatch::Ctx;
use super::super::error::HttpError;
use super::super::query::{Query, invalid};
use super::super::response::{self, Resp};
use crate::domain::{Category, IpKey, Protocol, behavior};
use crate::index::PrefixVerdict;
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
    let mut v = render(&r, verbose);
    for field in &exclude {
        if field != "ip" && field != "found" {
            v.remove(field);
        }
    }
    Ok(response::json(StatusCode::OK, &Value::Object(v)))
}

/// The SikkerAPI check object.
pub fn render(r: &CheckResult, verbose: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("ip".into(), json!(r.ip.to_string()));
    m.insert("found".into(), json!(r.indicator.is_some()));
    m.insert("confidenceLevel".into(), json!(r.confidence));
    m.insert("isWhitelisted".into(), json!(r.whitelisted));
    if let Some(reason) = &r.whitelist_reason {
        m.insert("whitelistReason".into(), json!(reason));
    }
    m.insert("geolocation".into(), r.geo.to_json());
    m.insert(
        "prefix".into(),
        r.prefix.as_ref().map_or(Value::Null, prefix),
    );
    m.insert(
        "validUntil".into(),
        r.valid_until.map_or(Value::Null, |t| json!(t.rfc3339())),
    );
    let Some(ind) = &r.indicator else {
        for k in ["firstSeen", "lastSeen"] {
            m.insert(k.into(), Value::Null);
        }
        for k in [
            "totalSessions",
            "totalEvents",
            "totalReports",
            "distinctReporters",
        ] {
            m.insert(k.into(), json!(0));
        }
        for k in ["protocols", "categories"] {
            m.insert(k.into(), json!([]));
        }
        if verbose {
            m.insert("behaviors".into(), json!([]));
            m.insert("primitives".into(), json!([]));
        }
        return m;
    };
    m.insert("firstSeen".into(), json!(ind.first_seen.rfc3339()));
    m.insert("lastSeen".into(), json!(ind.last_seen.rfc3339()));
    m.insert("totalSessions".into(), json!(ind.sessions));
    m.insert("totalEvents".into(), json!(ind.events));
    m.insert("totalReports".into(), json!(ind.reports));
    m.insert("distinctReporters".into(), json!(ind.distinct_reporters));
    let protocols: Vec<Value> = ind
        .protocols
        .iter()
        .map(|(p, s)| json!({"protocol": p.as_str(), "sessions": s.sessions, "events": s.events, "reports": s.reports}))
        .collect();
    m.insert("protocols".into(), Value::Array(protocols));
    let categories: Vec<Value> = reputation::categories_of(ind)
        .into_values()
        .map(|(c, n)| json!({"id": c.id(), "name": c.name(), "count": n}))
        .collect();
    m.insert("categories".into(), Value::Array(categories));
    if verbose {
        let behaviors: Vec<Value> = reputation::behaviors_of(ind)
            .into_iter()
            .map(|(rule, count)| {
                json!({"name": rule.name, "severity": rule.severity.as_str(), "count": count, "description": rule.description})
            })
            .collect();
        m.insert("behaviors".into(), Value::Array(behaviors));
        let primitives: Vec<Value> = ind
            .primitives
            .iter()
            .map(|(n, c)| json!({"name": n, "count": c, "description": behavior::primitive_description(n)}))
            .collect();
        m.insert("primitives".into(), Value::Array(primitives));
        if let Some(e) = &r.explanation {
            let factors: Vec<Value> = e
                .factors
                .iter()
                .map(|f| json!({"name": f.name, "points": (f.points * 100.0).round() / 100.0, "detail": f.detail}))
                .collect();
            m.insert(
                "scoreExplanation".into(),
                json!({
                    "score": e.score,
                    "raw": (e.raw * 100.0).round() / 100.0,
                    "recencyFactor": (e.recency_factor * 1000.0).round() / 1000.0,
                    "whitelistDiscount": r.whitelisted && r.confidence == 0 && e.score > 0,
                    "factors": factors,
                }),
            );
        }
    }
    m
}

/// The prefix verdict (an addition to the SikkerAPI contract; clients
/// that do not know it ignore it).
fn prefix(p: &PrefixVerdict) -> Value {
    let categories: Vec<Value> = (1..=16_u8)
        .filter(|id| p.categories & (1 << (id - 1)) != 0)
        .filter_map(Category::from_id)
        .map(|c| json!({"id": c.id(), "name": c.name()}))
        .collect();
    json!({
        "network": p.prefix.to_string(),
        "prefixLength": p.prefix.len.get(),
        "distinctAddresses": p.addresses,
        "totalReports": p.reports,
        "categories": categories,
        "firstSeen": p.first_seen.rfc3339(),
        "lastSeen": p.last_seen.rfc3339(),
        "validUntil": p.expires.rfc3339(),
        "confidenceLevel": p.score,
    })
}

fn country(r: &CheckResult) -> Option<String> {
    r.geo.geo.country_code.map(|c| c.to_string())
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
    let found = results.iter().filter(|r| r.indicator.is_some()).count();
    let rows: Vec<Value> = results
        .iter()
        .map(|r| match &r.indicator {
            Some(i) => json!({"ip": r.ip.to_string(), "found": true, "confidenceLevel": r.confidence, "isWhitelisted": r.whitelisted, "countryCode": country(r), "lastSeen": i.last_seen.0}),
            None => json!({"ip": r.ip.to_string(), "found": false, "confidenceLevel": null, "isWhitelisted": r.whitelisted, "countryCode": country(r), "lastSeen": null}),
        })
        .collect();
    Ok(response::json(
        StatusCode::OK,
        &json!({"queried": results.len(), "found": found, "results": rows, "errors": errors}),
    ))
}
