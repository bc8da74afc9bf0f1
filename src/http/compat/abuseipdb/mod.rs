//! The AbuseIPDB APIv2-compatible surface under `/api/v2` (contract:
//! `spec/abuseipdb-api.md`): the seven endpoints over the same reports,
//! indicators, scores and quotas as the SikkerAPI surface, answering in
//! AbuseIPDB's shapes. Errors are `HttpError`s, rendered in the AbuseIPDB
//! dialect by `http/error.rs`.

mod bulk;
pub(crate) mod params;
mod render;

use std::collections::BTreeSet;

use http::header::{self, HeaderValue};
use http::{HeaderName, StatusCode};
use ipnet::IpNet;
use serde_json::{Value, json};

use self::params::Params;
use self::render::{atom, geo_fields, report_json};
use super::super::api::{blacklist, off_reactor};
use super::super::dispatch::Ctx;
use super::super::encoding::Coding;
use super::super::error::HttpError;
use super::super::query::invalid;
use super::super::response::{self, Resp};
use super::super::router::Route;
use crate::domain::abuseipdb;
use crate::domain::time::MILLIS_PER_DAY;
use crate::domain::{Category, IpKey, UnixMillis};
use crate::geoip::Brief;
use crate::service::apikeys::ApiPrincipal;
use crate::service::blockshape::ShapedEntry;
use crate::service::quotas::Bucket;
use crate::service::reports::{DedupMode, Submitted, ValidReport};
use crate::service::reputation::{BlocklistFilter, CheckOptions};
use crate::service::{self, Services};

/// Upstream's text for an address it cannot parse.
pub const INVALID_IP: &str =
    "The ip address must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8 or 2001:4860:4860::8888).";
const MAX_AGE_MSG: &str = "The max age in days must be between 1 and 365.";
/// Upstream keeps this many bytes of a comment.
pub const MAX_COMMENT_BYTES: usize = 1024;
/// Reports dated this far ahead of the server clock are refused.
const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;

/// Runs one `/api/v2` route. A daily quota refusal is reworded the way
/// upstream words it, naming the limit.
pub async fn handle(route: Route, ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let services = ctx.state.services.clone();
    let who = ctx.key()?.clone();
    let out = match route {
        Route::AbuseCheck => check(ctx).await,
        Route::AbuseReports => reports(ctx).await,
        Route::AbuseBlacklist => blacklist(ctx).await,
        Route::AbuseReport => report(ctx).await,
        Route::AbuseCheckBlock => check_block(ctx).await,
        Route::AbuseBulkReport => bulk::post(ctx).await,
        Route::AbuseClearAddress => clear_address(ctx).await,
        _ => Err(HttpError::NotFound),
    };
    match out {
        Err(HttpError::Service(service::Error::RateLimited {
            retry_after_secs, ..
        })) => {
            let limit = match route.quota_bucket() {
                Some(b) => services.quota_state(&who, b).await?.limit,
                None => 0,
            };
            Err(HttpError::Refused {
                status: StatusCode::TOO_MANY_REQUESTS,
                detail: format!(
                    "Daily rate limit of {limit} requests exceeded for this endpoint. See headers for additional details."
                ),
                parameter: None,
                retry_after: Some(retry_after_secs),
            })
        }
        other => other,
    }
}

fn ok(data: &Value) -> Resp {
    response::json(StatusCode::OK, &json!({ "data": data }))
}

/// An address parameter (`ipAddress`, or `ip` on `/report`).
fn ip_param(p: &Params, name: &'static str) -> Result<IpKey, HttpError> {
    let s = p.required(name, "ip address")?;
    s.parse::<IpKey>().map_err(|_| invalid(name, INVALID_IP))
}

fn max_age_days(p: &Params) -> Result<u64, HttpError> {
    p.int("maxAgeInDays", 1, 365, 30, MAX_AGE_MSG)
}

fn days_ago(now: UnixMillis, days: u64) -> UnixMillis {
    UnixMillis(now.0 - i64::try_from(days).unwrap_or(365) * MILLIS_PER_DAY)
}

async fn check(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let p = Params::from_ctx(&ctx).await?;
    let who = ctx.key()?.clone();
    let ip = ip_param(&p, "ipAddress")?;
    let days = max_age_days(&p)?;
    let verbose = p.flag("verbose");
    let s = &ctx.state.services;
    let r = s.check(&who, ip, &CheckOptions::default()).await?;
    let now = s.clock.now();
    let reports = s.reports_about(ip, days_ago(now, days)).await?;
    let users: BTreeSet<u64> = reports.iter().map(|r| r.account).collect();
    let geo = geo_fields(s, ip);
    let mut d = json!({
        "ipAddress": ip.to_string(),
        "isPublic": ip.is_public(),
        "ipVersion": if ip.is_v4() { 4 } else { 6 },
        "isWhitelisted": r.whitelisted,
        "abuseConfidenceScore": r.confidence,
        "countryCode": geo.country_code,
        "usageType": geo.usage_type,
        "isp": geo.isp,
        "domain": geo.domain,
        "hostnames": [],
        "isTor": geo.is_tor,
        "totalReports": reports.len(),
        "numDistinctUsers": users.len(),
        "lastReportedAt": reports.first().map(|r| atom(UnixMillis(r.at_ms))),
    });
    if verbose {
        d["countryName"] = json!(geo.country_name);
        d["reports"] = reports.iter().map(|r| report_json(&s.secret, r)).collect();
    }
    Ok(ok(&d))
}

/// The base for page links: the configured public URL, else this request's host.
fn base_url(ctx: &Ctx<'_>) -> String {
    if let Some(u) = &ctx.state.opts.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let host = ctx
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("https://{host}")
}

async fn reports(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let p = Params::from_ctx(&ctx).await?;
    let who = ctx.key()?.clone();
    let ip = ip_param(&p, "ipAddress")?;
    let days = max_age_days(&p)?;
    let page = p.int(
        "page",
        1,
        u64::from(u32::MAX),
        1,
        "The page must be an integer of at least 1.",
    )?;
    let per_page = p.int(
        "perPage",
        1,
        100,
        25,
        "The per page must be between 1 and 100.",
    )?;
    let s = &ctx.state.services;
    s.charge(&who, Bucket::Lookups, 1).await?;
    let all = s.reports_about(ip, days_ago(s.clock.now(), days)).await?;
    let total = all.len() as u64;
    let last_page = total.div_ceil(per_page).max(1);
    let start = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let results: Vec<Value> = all
        .iter()
        .skip(start)
        .take(usize::try_from(per_page).unwrap_or(100))
        .map(|r| report_json(&s.secret, r))
        .collect();
    let link = |n: u64| {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("ipAddress", &ip.to_string())
            .append_pair("maxAgeInDays", &days.to_string())
            .append_pair("perPage", &per_page.to_string())
            .append_pair("page", &n.to_string())
            .finish();
        format!("{}/api/v2/reports?{q}", base_url(&ctx))
    };
    Ok(ok(&json!({
        "total": total,
        "page": page,
        "count": results.len(),
        "perPage": per_page,
        "lastPage": last_page,
        "nextPageUrl": (page < last_page).then(|| link(page + 1)),
        "previousPageUrl": (page > 1).then(|| link((page - 1).min(last_page))),
        "results": results,
    })))
}

fn country_list(p: &Params, name: &'static str) -> Result<Vec<String>, HttpError> {
    p.list(name)
        .into_iter()
        .map(|c| {
            if c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()) {
                Ok(c.to_ascii_uppercase())
            } else {
                Err(invalid(
                    name,
                    &format!("The country code `{c}` is not an ISO 3166-1 alpha-2 code."),
                ))
            }
        })
        .collect()
}

fn wants_text(ctx: &Ctx<'_>) -> bool {
    ctx.headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split([',', ';'])
                .any(|t| t.trim().eq_ignore_ascii_case("text/plain"))
        })
}

async fn blacklist(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let p = Params::from_ctx(&ctx).await?;
    let who = ctx.key()?.clone();
    let s = &ctx.state.services;
    let cap = s.tiers.get(&who.tier).blacklist.max(1);
    let minimum = p.int(
        "confidenceMinimum",
        25,
        100,
        100,
        "The confidence minimum must be between 25 and 100.",
    )?;
    let limit = p.int(
        "limit",
        1,
        u64::MAX,
        10_000,
        "The limit must be an integer of at least 1.",
    )?;
    let ip_version = match p.text("ipVersion").as_deref().map(str::trim) {
        None | Some("") => None,
        Some("4") => Some(4),
        Some("6") => Some(6),
        Some(_) => return Err(invalid("ipVersion", "The ip version must be 4 or 6.")),
    };
    let filter = BlocklistFilter {
        score_minimum: u8::try_from(minimum).unwrap_or(100),
        // Above the tier's cap the list is cut short, as upstream does.
        limit: usize::try_from(limit.min(cap)).unwrap_or(usize::MAX),
        ip_version,
        only_countries: country_list(&p, "onlyCountries")?,
        except_countries: country_list(&p, "exceptCountries")?,
        ..BlocklistFilter::default()
    };
    // sikker's sizing parameters (not upstream's; docs/blocklists.md).
    let shape = blacklist::shape_of(|n| p.text(n), |n| Ok(p.flag(n))).map_err(|e| match e {
        HttpError::Service(service::Error::Invalid { field, reason }) => {
            invalid(&field, &format!("The {field} {reason}."))
        }
        other => other,
    })?;
    let plaintext = p.flag("plaintext") || wants_text(&ctx);
    // Only JSON shows a country; the same databases place merged networks.
    let dbs = s.geo.dbs().filter(|_| !plaintext);
    // Built and made ready to send off the runtime's workers, one per core
    // at a time, as sikker's own list.
    let mut room = blacklist::room(&ctx).await?;
    let _turn = s.list_build_turn().await?;
    let list = {
        let (s, dbs) = (s.clone(), dbs.clone());
        off_reactor(move || -> Result<_, HttpError> {
            let mut list = s.blocklist(&filter, dbs.as_deref())?;
            list.entries
                .retain(|e| IpKey::from_ip(e.net.addr()).is_public());
            Ok(s.shape_blocklist(list, &shape, false, dbs.as_deref())?)
        })
        .await??
    };
    room.keep(list.held_entries());
    let granted = s
        .charge_up_to(&who, Bucket::Blacklist, list.entries.len() as u64)
        .await?;
    let generated = atom(s.clock.now());
    let resp = off_reactor(move || {
        let mut list = list;
        list.truncate(usize::try_from(granted).unwrap_or(usize::MAX));
        let list = list.into_ordered(!plaintext);
        let mut r = if plaintext {
            blacklist::streamed(
                "text/plain; charset=utf-8",
                String::new(),
                list,
                "",
                String::new(),
                blacklist::TEXT_CHUNK,
                blacklist::plain_entry,
            )
        } else {
            // Upstream's shape, meta first; streamed like sikker's own list.
            blacklist::streamed(
                "application/json",
                format!("{{\"meta\":{{\"generatedAt\":\"{generated}\"}},\"data\":["),
                list,
                ",",
                "]}".to_owned(),
                blacklist::JSON_CHUNK,
                move |b, e| blacklist_entry(b, e, &e.brief(dbs.as_deref())),
            )
        };
        if plaintext && let Ok(v) = HeaderValue::from_str(&generated) {
            r.headers_mut()
                .insert(HeaderName::from_static("x-generated-at"), v);
        }
        r
    })
    .await?;
    Ok(response::holding(
        Coding::of(&ctx.headers).apply(resp),
        room,
    ))
}

/// One blacklist entry; a network's country is the one every address
/// merged into it shares. Nothing here needs JSON escaping: an address,
/// two capital letters, digits and an RFC 3339 time.
fn blacklist_entry(b: &mut Vec<u8>, e: &ShapedEntry, geo: &Brief<'_>) {
    b.extend_from_slice(b"{\"ipAddress\":\"");
    blacklist::push_entry(b, e);
    b.extend_from_slice(b"\",\"countryCode\":");
    blacklist::push_country(b, geo.country_code);
    b.extend_from_slice(b",\"abuseConfidenceScore\":");
    blacklist::push_int(b, e.confidence);
    b.extend_from_slice(b",\"lastReportedAt\":\"");
    b.extend_from_slice(atom(e.last_seen).as_bytes());
    b.extend_from_slice(b"\"}");
}

/// AbuseIPDB category ids from a list parameter; 422 on anything outside 1–23.
fn category_ids(items: &[String], param: &'static str) -> Result<Vec<u8>, HttpError> {
    if items.is_empty() {
        return Err(invalid(param, "The categories field is required."));
    }
    let mut ids = Vec::new();
    for it in items {
        match it.parse::<u8>() {
            Ok(id) if abuseipdb::is_valid(id) => {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            _ => {
                return Err(invalid(
                    param,
                    &format!(
                        "The category `{it}` is not valid; categories are integers from 1 to 23."
                    ),
                ));
            }
        }
    }
    Ok(ids)
}

/// The first `MAX_COMMENT_BYTES` bytes of a comment, cut on a character boundary.
pub fn truncate_comment(c: &str) -> Option<String> {
    let c = c.trim();
    if c.is_empty() {
        return None;
    }
    let mut end = c.len().min(MAX_COMMENT_BYTES);
    while !c.is_char_boundary(end) {
        end -= 1;
    }
    Some(c[..end].to_owned())
}

/// Parses a report time: RFC 3339 / ISO 8601 with offset, or a zone-less
/// `YYYY-MM-DD[T ]HH:MM:SS` taken as UTC.
pub fn parse_time(s: &str) -> Option<UnixMillis> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    let t = time::OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| {
            // `+0000` style offsets.
            let f = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"
            );
            time::OffsetDateTime::parse(s, &f)
        })
        .or_else(|_| {
            let f = time::macros::format_description!(
                "[year]-[month]-[day][first [T][ ]][hour]:[minute]:[second]"
            );
            time::PrimitiveDateTime::parse(s, &f).map(time::PrimitiveDateTime::assume_utc)
        })
        .ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .ok()
        .map(UnixMillis)
}

/// Whether a report time is acceptable: not ahead of the clock by more than
/// 5 minutes, not older than raw reports are kept.
fn time_in_range(s: &Services, at: UnixMillis) -> bool {
    let now = s.clock.now();
    at.0 <= now.0 + MAX_FUTURE_MS && at.0 >= now.0 - s.retention.reports_ms
}

/// One AbuseIPDB report turned into a sikker report. `Err` names the field.
pub fn build_report(
    ip: IpKey,
    ids: Vec<u8>,
    comment: Option<String>,
    at: Option<UnixMillis>,
) -> Result<ValidReport, &'static str> {
    if !ip.is_public() {
        return Err("ip");
    }
    let inbound = abuseipdb::to_sikker(&ids).ok_or("categories")?;
    let mut cats = inbound.categories.into_iter();
    let category: Category = cats.next().ok_or("categories")?;
    Ok(ValidReport {
        ip,
        category,
        more_categories: cats.collect(),
        protocol: inbound.protocol.map(|p| p.as_str().to_owned()),
        comment,
        abuseipdb_categories: ids,
        at,
    })
}

fn duplicate(ip: IpKey, retry_after_secs: u64) -> HttpError {
    HttpError::Refused {
        status: StatusCode::TOO_MANY_REQUESTS,
        detail: format!("You can only report the same IP address (`{ip}`) once in 15 minutes."),
        parameter: Some("ip"),
        retry_after: Some(retry_after_secs),
    }
}

async fn report(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let p = Params::from_ctx(&ctx).await?;
    let who = ctx.key()?.clone();
    let s = &ctx.state.services;
    let ip = ip_param(&p, "ip")?;
    let ids = category_ids(&p.list("categories"), "categories")?;
    let comment = p.text("comment").and_then(|c| truncate_comment(&c));
    let at = match p.text("timestamp").filter(|t| !t.trim().is_empty()) {
        None => None,
        Some(t) => Some(
            parse_time(&t)
                .filter(|at| time_in_range(s, *at))
                .ok_or_else(|| {
                    invalid(
                        "timestamp",
                        "The timestamp must be an ISO 8601 date no more than 5 minutes ahead and within the last 30 days.",
                    )
                })?,
        ),
    };
    let valid = build_report(ip, ids, comment, at).map_err(|field| match field {
        "ip" => invalid(
            "ip",
            "The ip address must be a public address; private, reserved and loopback addresses are not accepted.",
        ),
        _ => invalid("categories", "The categories field is invalid."),
    })?;
    let out = s
        .submit_reports(&who, vec![valid], DedupMode::Refuse)
        .await?;
    if let Some(Submitted::Duplicate { retry_after_secs }) = out.first() {
        return Err(duplicate(ip, *retry_after_secs));
    }
    let score = s.score_now(ip)?;
    Ok(ok(&json!({
        "ipAddress": ip.to_string(),
        "abuseConfidenceScore": score,
    })))
}

/// Widest IPv4 block per tier (`free` = upstream's standard, `tier_1` =
/// basic, larger tiers = premium) and the longest `maxAgeInDays`.
fn block_caps(who: &ApiPrincipal) -> (u8, u64) {
    match who.tier.as_str() {
        "free" => (24, 30),
        "tier_1" => (20, 60),
        _ => (16, 365),
    }
}

fn address_space(net: &IpNet) -> &'static str {
    let a = net.network();
    let private = match a {
        std::net::IpAddr::V4(v4) => v4.is_private(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    };
    if a.is_loopback() {
        "Loopback"
    } else if private {
        "Private"
    } else if IpKey::from_ip(a).is_public() {
        "Internet"
    } else {
        "Reserved"
    }
}

fn payment_required(param: &'static str, detail: String) -> HttpError {
    HttpError::Refused {
        status: StatusCode::PAYMENT_REQUIRED,
        detail,
        parameter: Some(param),
        retry_after: None,
    }
}

async fn check_block(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let p = Params::from_ctx(&ctx).await?;
    let who = ctx.key()?.clone();
    let s = &ctx.state.services;
    let text = p.required("network", "network")?;
    let bad = || {
        invalid(
            "network",
            "The network must be a valid IPv4 or IPv6 CIDR block (e.g. 127.0.0.1/24).",
        )
    };
    let net: IpNet = if text.contains('/') {
        text.parse().map_err(|_| bad())?
    } else {
        IpNet::from(text.parse::<std::net::IpAddr>().map_err(|_| bad())?)
    };
    let net = net.trunc();
    let days = max_age_days(&p)?;
    let (v4_cap, age_cap) = block_caps(&who);
    // IPv6 blocks may hold as many addresses as the widest IPv4 block.
    let (cap, is_v4) = match net {
        IpNet::V4(_) => (v4_cap, true),
        IpNet::V6(_) => (v4_cap + 96, false),
    };
    if net.prefix_len() < cap {
        return Err(payment_required(
            "network",
            format!("Your plan allows blocks up to /{cap}; upgrade to check a wider network."),
        ));
    }
    if days > age_cap {
        return Err(payment_required(
            "maxAgeInDays",
            format!("Your plan allows a max age of up to {age_cap} days."),
        ));
    }
    s.charge(&who, Bucket::Lookups, 1).await?;
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    let size: u128 = 1u128 << host_bits;
    let (lo, hi) = (
        IpKey::from_ip(net.network()),
        IpKey::from_ip(net.broadcast()),
    );
    // Network and broadcast addresses are not hosts in IPv4 blocks wider than /31.
    let (min, max, hosts) = if is_v4 && host_bits >= 2 {
        (IpKey(lo.0 + 1), IpKey(hi.0 - 1), size - 2)
    } else {
        (lo, hi, size)
    };
    let since = days_ago(s.clock.now(), days);
    let mut reported = Vec::new();
    for e in s.scores_in_range(lo, hi)? {
        if e.last_seen < since {
            continue;
        }
        let n = s.reports_about(e.ip, since).await?.len();
        reported.push(json!({
            "ipAddress": e.ip.to_string(),
            "numReports": n,
            "mostRecentReport": atom(e.last_seen),
            "abuseConfidenceScore": e.confidence,
            "countryCode": geo_fields(s, e.ip).country_code,
        }));
    }
    Ok(ok(&json!({
        "networkAddress": net.network().to_string(),
        "netmask": net.netmask().to_string(),
        "minAddress": min.to_string(),
        "maxAddress": max.to_string(),
        "numPossibleHosts": u64::try_from(hosts).unwrap_or(u64::MAX),
        "addressSpaceDesc": address_space(&net),
        "reportedAddress": reported,
    })))
}

async fn clear_address(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let p = Params::from_ctx(&ctx).await?;
    let who = ctx.key()?.clone();
    let s = &ctx.state.services;
    let ip = ip_param(&p, "ipAddress")?;
    s.charge(&who, Bucket::Reports, 1).await?;
    let n = s.clear_reports(&who, ip).await?;
    Ok(ok(&json!({ "numReportsDeleted": n })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_cut_on_a_character_boundary() {
        assert_eq!(truncate_comment("  "), None);
        assert_eq!(truncate_comment("a").as_deref(), Some("a"));
        let long = "é".repeat(600); // 1,200 bytes
        let cut = truncate_comment(&long).unwrap();
        assert_eq!(cut.len(), 1024);
        let odd = format!("x{}", "é".repeat(600));
        assert_eq!(truncate_comment(&odd).unwrap().len(), 1023);
    }

    #[test]
    fn report_times() {
        let t = parse_time("2026-01-02T03:04:05+00:00").unwrap();
        assert_eq!(atom(t), "2026-01-02T03:04:05+00:00");
        assert_eq!(parse_time("2026-01-02T04:04:05+01:00"), Some(t));
        assert_eq!(parse_time("2026-01-02T03:04:05Z"), Some(t));
        assert_eq!(parse_time("2026-01-02 03:04:05"), Some(t));
        assert_eq!(parse_time("2026-01-02T03:04:05"), Some(t));
        assert_eq!(parse_time("2026-01-02T04:04:05+0100"), Some(t));
        assert_eq!(parse_time("yesterday"), None);
    }
}
