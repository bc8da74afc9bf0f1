//! `GET /v1/key/username/{username}` and `GET /v1/key/email/{email}`.

use std::collections::BTreeMap;

use http::StatusCode;
use serde_json::json;

use super::super::dispatch::Ctx;
use super::super::error::HttpError;
use super::super::response::{self, Resp};
use crate::service::{Error, quotas::Bucket};

pub async fn username(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.key()?.clone();
    let name = ctx.params.first().cloned().unwrap_or_default();
    ctx.state.services.charge(&who, Bucket::Lookups, 1).await?;
    let s = ctx
        .state
        .services
        .username_stats(&name)
        .await
        .map_err(|e| rename(e, "Username"))?;
    let counts: BTreeMap<&str, u64> = s.protocols.iter().map(|(p, n)| (p.as_str(), *n)).collect();
    Ok(response::json(
        StatusCode::OK,
        &json!({
            "username": name.to_lowercase(),
            "totalSessions": s.count,
            // The contract wants this object as a JSON string.
            "protocolCounts": serde_json::to_string(&counts).unwrap_or_default(),
            "firstSeenAt": s.first_seen_ms,
            "lastSeenAt": s.last_seen_ms,
        }),
    ))
}

pub async fn email(ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.key()?.clone();
    let addr = ctx.params.first().cloned().unwrap_or_default();
    ctx.state.services.charge(&who, Bucket::Lookups, 1).await?;
    let s = ctx
        .state
        .services
        .email_stats(&addr)
        .await
        .map_err(|e| rename(e, "Email"))?;
    Ok(response::json(
        StatusCode::OK,
        &json!({
            "email": addr.to_ascii_lowercase(),
            "totalMessages": s.count,
            "firstSeenAt": s.first_seen_ms,
            "lastSeenAt": s.last_seen_ms,
        }),
    ))
}

fn rename(e: Error, what: &str) -> HttpError {
    match e {
        Error::NotFound { .. } => HttpError::Service(Error::not_found(what)),
        other => HttpError::Service(other),
    }
}
