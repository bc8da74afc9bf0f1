//! `/v1/key/{ip,range,username,email}-alerts[/{id}]`: create (201 with the
//! alert), list (`{"alerts": […]}`) and delete (`{"success": true}`), plus
//! the extension `GET /v1/key/alerts/deliveries`, the account's delivery log.

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::super::dispatch::Ctx;
use super::super::error::HttpError;
use super::super::query::invalid;
use super::super::response::{self, Resp};
use crate::domain::UnixMillis;
use crate::service::alerts::NewAlert;
use crate::store::alerts::{Alert, AlertKind, Channel, Delivery, DeliveryStatus};

fn value_field(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Ip => "ip",
        AlertKind::Range => "cidr",
        AlertKind::Username => "username",
        AlertKind::Email => "email",
    }
}

/// An optional string member; `null` and absent are the same.
fn opt_str(body: &Map<String, Value>, name: &str) -> Result<Option<String>, HttpError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}

fn rfc3339(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |t| Value::String(UnixMillis(t).rfc3339()))
}

/// One alert as the SikkerAPI CLI decodes it, plus sikker's delivery fields.
pub fn alert_json(a: &Alert) -> Value {
    let mut o = json!({
        "id": a.id.to_string(),
        "label": a.label,
        "enabled": a.enabled,
        "emailNotifications": a.notify_email.is_some(),
        "notifyEmail": a.notify_email,
        "webhookUrl": a.webhook_url,
        "lastAlertedAt": rfc3339(a.last_alerted_ms),
        "totalAlerts": a.total_alerts,
        "matchCount": a.match_count,
        "createdAt": UnixMillis(a.created_ms).rfc3339(),
    });
    o[value_field(a.kind)] = json!(a.value);
    if a.kind == AlertKind::Range {
        let (net, prefix) = a.value.split_once('/').unwrap_or((&a.value, "0"));
        o["networkAddress"] = json!(net);
        o["prefixLength"] = json!(prefix.parse::<u8>().unwrap_or(0));
        o["uniqueMatches"] = json!(a.unique_matches);
    }
    o
}

pub async fn create(ctx: Ctx<'_>, kind: AlertKind) -> Result<Resp, HttpError> {
    let who = ctx.key()?.clone();
    super::require_json(&ctx)?;
    let v: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| invalid("body", &format!("is not valid JSON: {e}")))?;
    let Value::Object(body) = v else {
        return Err(invalid("body", "must be a JSON object"));
    };
    let field = value_field(kind);
    let value = opt_str(&body, field)?.ok_or_else(|| invalid(field, "is required"))?;
    let new = NewAlert {
        value,
        label: opt_str(&body, "label")?,
        notify_email: opt_str(&body, "notifyEmail")?,
        webhook_url: opt_str(&body, "webhookUrl")?,
    };
    let (alert, secret) = ctx.state.services.create_alert(&who, kind, new).await?;
    let mut out = alert_json(&alert);
    if let Some(s) = secret {
        out["webhookSecret"] = json!(s);
    }
    Ok(response::json(StatusCode::CREATED, &out))
}

pub async fn list(ctx: &Ctx<'_>, kind: AlertKind) -> Result<Resp, HttpError> {
    let who = ctx.key()?;
    let alerts = ctx.state.services.list_alerts(who, kind).await?;
    let items: Vec<Value> = alerts.iter().map(alert_json).collect();
    Ok(response::json(StatusCode::OK, &json!({ "alerts": items })))
}

pub async fn delete(ctx: &Ctx<'_>, kind: AlertKind) -> Result<Resp, HttpError> {
    let who = ctx.key()?;
    let id = ctx.params.first().map_or("", String::as_str);
    ctx.state.services.delete_alert(who, kind, id).await?;
    Ok(response::json(StatusCode::OK, &json!({ "success": true })))
}

fn delivery_json(d: &Delivery) -> Value {
    let (channel, target) = match &d.channel {
        Channel::Email { to, .. } => ("email", to.as_str()),
        Channel::Webhook { url, .. } => ("webhook", url.as_str()),
    };
    json!({
        "id": d.id.to_string(),
        "alertId": d.alert_id.to_string(),
        "kind": d.kind.map(AlertKind::as_str),
        "channel": channel,
        "target": target,
        "status": match d.status {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        },
        "attempts": d.attempts,
        "lastError": d.last_error,
        "createdAt": UnixMillis(d.created_ms).rfc3339(),
        "nextAttemptAt": rfc3339(d.next_attempt_ms),
        "finishedAt": rfc3339(d.finished_ms),
    })
}

pub async fn deliveries(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.key()?;
    let list = ctx.state.services.alert_deliveries(who).await?;
    let items: Vec<Value> = list.iter().map(delivery_json).collect();
    Ok(response::json(
        StatusCode::OK,
        &json!({ "deliveries": items }),
    ))
}
