//! Endpoints the bundled web pages use instead of asking for an API key
//! (`/v1/ui/…`), and the admin pages' extra endpoints (sensors, whitelist,
//! health). Each calls the same service functions as the keyed API.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::auth::Principal;
use super::super::dispatch::Ctx;
use super::super::error::HttpError;
use super::super::query::{Query, invalid};
use super::super::response::{self, Resp};
use super::json_body;
use crate::domain::UnixMillis;
use crate::domain::time::MILLIS_PER_DAY;
use crate::service::quotas::Bucket;
use crate::store::alerts::AlertKind;

/// Public web lookups per client network (/24 or /64) per minute.
pub const LOOKUPS_PER_MINUTE: u32 = 60;

/// Counts public web lookups per client network in the current minute;
/// only the current minute is kept, so the table never outgrows one
/// minute of distinct clients.
#[derive(Debug, Default)]
pub struct Limiter {
    inner: Mutex<(i64, HashMap<IpAddr, u32>)>,
}

fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
    }
}

impl Limiter {
    /// Admits one lookup from `client` at `now`, or says how long to wait.
    pub fn admit(&self, client: IpAddr, now: UnixMillis) -> Result<(), u64> {
        let minute = now.0.div_euclid(60_000);
        let Ok(mut g) = self.inner.lock() else {
            return Ok(());
        };
        if g.0 != minute {
            *g = (minute, HashMap::new());
        }
        let n = g.1.entry(network_of(client)).or_insert(0);
        if *n >= LOOKUPS_PER_MINUTE {
            let wait = (minute + 1) * 60_000 - now.0;
            return Err(u64::try_from(wait / 1000).unwrap_or(60).max(1));
        }
        *n += 1;
        Ok(())
    }
}

/// `GET /v1/ui/ip/{ip}`: the check answer for the public IP page, free,
/// not stored, rate-limited per client network.
pub fn ip(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let s = &ctx.state.services;
    let ip = super::check::parse_ip(ctx.params.first().map_or("", String::as_str))?;
    ctx.state
        .ui_limiter
        .admit(ctx.client, s.clock.now())
        .map_err(|secs| {
            HttpError::Service(crate::service::Error::RateLimited {
                retry_after_secs: secs,
                reason: format!(
                    "at most {LOOKUPS_PER_MINUTE} web lookups a minute; sign in and use an API key for more"
                ),
            })
        })?;
    let r = s.public_lookup(ip)?;
    let mut v = super::check::render(&r, true);
    v.insert("public".into(), json!(true));
    Ok(response::json(StatusCode::OK, &Value::Object(v)))
}

fn days(ms: i64) -> i64 {
    ms / MILLIS_PER_DAY
}

/// `GET /v1/ui/policy`: the live settings the privacy policy page states.
pub fn policy(ctx: &Ctx<'_>) -> Resp {
    let s = &ctx.state.services;
    response::json(
        StatusCode::OK,
        &json!({
            "retention": {
                "rawReportsDays": days(s.retention.reports_ms),
                "indicatorsDays": days(s.retention.indicators_ms),
                "apiUsageDays": days(s.privacy.opts.usage_ms),
                "networkDays": days(s.privacy.opts.network_ms),
                "accountAfterDeletionDays": days(s.privacy.opts.account_after_deletion_ms),
                "analyticsDays": days(s.privacy.opts.analytics_ms),
                "audienceDays": days(s.privacy.opts.audience_ms),
                "privacyLogDays": days(s.privacy.opts.privacy_log_ms),
            },
            "registration": format!("{:?}", s.accounts.registration).to_ascii_lowercase(),
            "sessions": {
                "accessTokenMinutes": crate::service::sessions::ACCESS_TTL.as_secs() / 60,
            },
        }),
    )
}

/// `GET /v1/ui/dashboard`: the signed-in account's keys with today's quota
/// standing per bucket, and its alerts against the tier's limits.
pub async fn dashboard(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.session()?;
    let s = &ctx.state.services;
    let account = s.account(who.account).await?;
    let mut keys = Vec::new();
    for k in s.account_keys(who.account)? {
        if k.revoked_ms.is_some() {
            continue;
        }
        let p = s.account_principal(who.account, Some(k.id))?;
        let mut quotas = serde_json::Map::new();
        for b in Bucket::ALL {
            let q = s.quota_state(&p, b).await?;
            quotas.insert(
                b.as_str().into(),
                json!({"used": q.used.min(q.limit), "limit": q.limit}),
            );
        }
        keys.push(json!({"id": k.id.to_string(), "name": k.name, "prefix": k.prefix, "tier": k.tier, "quotas": quotas}));
    }
    let tier = s.tiers.get(&account.tier).clone();
    let alerts = match s.account_principal(who.account, None) {
        Ok(p) => {
            let c = s.alert_counts(&p)?;
            json!({
                "ip": {"current": c.ip, "limit": tier.ip_alerts},
                "range": {"current": c.range, "limit": tier.range_alerts},
                "username": {"current": c.username, "limit": tier.username_alerts},
                "email": {"current": c.email, "limit": tier.email_alerts},
            })
        }
        Err(_) => Value::Null,
    };
    Ok(response::json(
        StatusCode::OK,
        &json!({"tier": {"id": account.tier, "name": tier.name}, "keys": keys, "alerts": alerts}),
    ))
}

/// What a keyed UI route forwards to.
#[derive(Clone, Copy, Debug)]
pub enum Keyed {
    Report,
    BulkReport,
    Alerts(AlertKind),
    Alert(AlertKind),
    Deliveries,
}

/// Runs a keyed handler for the signed-in account with one of its keys
/// (`?keyId=`, else the newest live key), so the pages never handle a key.
pub async fn keyed(mut ctx: Ctx<'_>, what: Keyed) -> Result<Resp, HttpError> {
    let who = ctx.session()?.account;
    let q = Query::parse(ctx.query.as_deref());
    let key_id = q.uint("keyId", 0, u64::MAX)?;
    let p = ctx.state.services.account_principal(who, key_id)?;
    ctx.principal = Principal::Key(p);
    match what {
        Keyed::Report => super::report::single(ctx).await,
        Keyed::BulkReport => super::report::bulk(ctx).await,
        Keyed::Alerts(kind) if ctx.method == Method::POST => super::alerts::create(ctx, kind).await,
        Keyed::Alerts(kind) => super::alerts::list(&ctx, kind).await,
        Keyed::Alert(kind) => super::alerts::delete(&ctx, kind).await,
        Keyed::Deliveries => super::alerts::deliveries(&ctx).await,
    }
}

fn ms_rfc(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |t| json!(UnixMillis(t).rfc3339()))
}

fn sensor_view(sensor: &crate::store::sensors::Sensor, now: UnixMillis) -> Value {
    let minutes = ((now.0 - sensor.created_ms) / 60_000).max(1);
    #[allow(clippy::cast_precision_loss)]
    let per_min = sensor.events as f64 / minutes as f64;
    json!({
        "id": sensor.id.to_string(),
        "name": sensor.name,
        "createdAt": UnixMillis(sensor.created_ms).rfc3339(),
        "revokedAt": ms_rfc(sensor.revoked_ms),
        "lastEventAt": ms_rfc(sensor.last_event_ms),
        "events": sensor.events,
        "eventsPerMinute": (per_min * 100.0).round() / 100.0,
    })
}

#[derive(Deserialize)]
struct NameBody {
    name: String,
}

/// `GET/POST /v1/admin/sensors`: list, or create one (token shown once).
pub async fn sensors(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    ctx.session()?;
    let s = &ctx.state.services;
    let now = s.clock.now();
    if ctx.method == Method::POST {
        let b: NameBody = json_body(ctx)?;
        let (token, sensor) = s.create_sensor(&b.name).await?;
        let mut v = sensor_view(&sensor, now);
        v["token"] = json!(token);
        return Ok(response::json(StatusCode::CREATED, &v));
    }
    let list: Vec<Value> = s
        .list_sensors()
        .await?
        .iter()
        .map(|x| sensor_view(x, now))
        .collect();
    Ok(response::json(StatusCode::OK, &json!({"sensors": list})))
}

/// `DELETE /v1/admin/sensors/{id}`: revokes a sensor's token.
pub async fn sensor_revoke(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    ctx.session()?;
    let id = super::id_param(ctx, "id")?;
    let s = &ctx.state.services;
    let sensor = s.revoke_sensor(id).await?;
    Ok(response::json(
        StatusCode::OK,
        &json!({"success": true, "sensor": sensor_view(&sensor, s.clock.now())}),
    ))
}

#[derive(Deserialize)]
struct WhitelistBody {
    net: String,
    #[serde(default)]
    reason: String,
}

/// `GET/POST /v1/admin/whitelist`: list, or add a network with a reason.
pub async fn whitelist(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    ctx.session()?;
    let s = &ctx.state.services;
    if ctx.method == Method::POST {
        let b: WhitelistBody = json_body(ctx)?;
        if b.reason.trim().is_empty() {
            return Err(invalid("reason", "is required"));
        }
        let e = s.whitelist_add(&b.net, b.reason.trim()).await?;
        return Ok(response::json(
            StatusCode::CREATED,
            &json!({"net": e.net, "reason": e.reason, "addedAt": UnixMillis(e.added_ms).rfc3339()}),
        ));
    }
    let list: Vec<Value> = s
        .whitelist_list()
        .await?
        .iter()
        .map(|e| json!({"net": e.net, "reason": e.reason, "addedAt": UnixMillis(e.added_ms).rfc3339()}))
        .collect();
    Ok(response::json(StatusCode::OK, &json!({"whitelist": list})))
}

/// `DELETE /v1/admin/whitelist/{net}` (the `/` of a CIDR sent as `%2F`).
pub async fn whitelist_remove(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    ctx.session()?;
    let net = ctx.params.first().map_or("", String::as_str);
    ctx.state.services.whitelist_remove(net).await?;
    Ok(response::json(StatusCode::OK, &json!({"success": true})))
}

/// Resident memory of this process from `/proc/self/status`, in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `GET /v1/admin/health`: indicators in memory, memory, database size, uptime.
pub async fn health(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    ctx.session()?;
    let s = &ctx.state.services;
    s.health().await?;
    let db = s.data_dir.join(crate::store::DB_FILE);
    let db_bytes = std::fs::metadata(&db).map(|m| m.len()).ok();
    let now = s.clock.now();
    Ok(response::json(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "indicators": s.indicator_count(),
            "memoryRssBytes": rss_bytes(),
            "dbBytes": db_bytes,
            "uptimeSeconds": (now.0 - s.started.0).max(0) / 1000,
            "startedAt": s.started.rfc3339(),
            "version": env!("CARGO_PKG_VERSION"),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_per_network_and_minute() {
        let lim = Limiter::default();
        let near: IpAddr = "192.0.2.7".parse().unwrap();
        let same_net: IpAddr = "192.0.2.200".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        let t0 = UnixMillis(1_774_094_400_000);
        for _ in 0..LOOKUPS_PER_MINUTE {
            assert!(lim.admit(near, t0).is_ok());
        }
        assert_eq!(lim.admit(same_net, UnixMillis(t0.0 + 30_000)), Err(30));
        assert!(lim.admit(other, t0).is_ok());
        assert!(lim.admit(same_net, UnixMillis(t0.0 + 60_000)).is_ok());
    }
}
