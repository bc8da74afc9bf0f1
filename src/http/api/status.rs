//! `GET /v1/key/status`: the key's tier, today's quota standing per bucket
//! and its alert counts. Reading it costs nothing.

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::super::dispatch::Ctx;
use super::super::error::HttpError;
use super::super::response::{self, Resp};
use crate::service::quotas::Bucket;

pub async fn get(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.key()?;
    let services = &ctx.state.services;
    let tier = services.tiers.get(&who.tier);
    let mut quotas = Map::new();
    for b in Bucket::ALL {
        let q = services.quota_state(who, b).await?;
        quotas.insert(
            b.as_str().into(),
            json!({"used": q.used.min(q.limit), "limit": q.limit, "remaining": q.remaining()}),
        );
    }
    let alerts = services.alert_counts(who)?;
    let alert = |current: u64, limit: u64| json!({"current": current, "limit": limit});
    Ok(response::json(
        StatusCode::OK,
        &json!({
            "tier": {"id": who.tier, "name": tier.name},
            "quotas": Value::Object(quotas),
            "alerts": {
                "ipAlerts": alert(alerts.ip, tier.ip_alerts),
                "rangeAlerts": alert(alerts.range, tier.range_alerts),
                "usernameAlerts": alert(alerts.username, tier.username_alerts),
                "emailAlerts": alert(alerts.email, tier.email_alerts),
            },
        }),
    ))
}
