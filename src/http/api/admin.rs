//! Admin endpoints (`/v1/admin/…`), reachable only with an admin session
//! (P54): users (list, show, role, tier, disable) and invitations.

use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::super::dispatch::Ctx;
use super::super::error::HttpError;
use super::super::query::invalid;
use super::super::response::{self, Resp};
use super::{id_param, json_body};
use crate::domain::account::Role;
use crate::service::accounts::AccountView;

pub async fn users(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    ctx.session()?;
    let all = ctx.state.services.list_accounts().await?;
    Ok(response::json(StatusCode::OK, &json!({"users": all})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    role: Option<String>,
    tier: Option<String>,
    disabled: Option<bool>,
}

pub async fn user(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let me = ctx.session()?;
    let id = id_param(ctx, "id")?;
    let s = &ctx.state.services;
    if ctx.method != http::Method::PATCH {
        let a = s.account(id).await?;
        return Ok(response::json(
            StatusCode::OK,
            &json!({"user": AccountView::of(&a)}),
        ));
    }
    let p: UserPatch = json_body(ctx)?;
    let role = p
        .role
        .map(|r| {
            r.parse::<Role>()
                .map_err(|()| invalid("role", "must be user or admin"))
        })
        .transpose()?;
    if id == me.account && (role == Some(Role::User) || p.disabled == Some(true)) {
        return Err(invalid("id", "admins cannot demote or disable themselves"));
    }
    let a = s.admin_update_account(id, role, p.tier, p.disabled).await?;
    Ok(response::json(StatusCode::OK, &json!({"user": a})))
}

#[derive(Deserialize)]
struct InviteBody {
    #[serde(default, alias = "validDays")]
    valid_days: Option<u64>,
}

pub async fn invite(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let me = ctx.session()?;
    let b: InviteBody = json_body(ctx)?;
    let days = b.valid_days.unwrap_or(7);
    if !(1..=90).contains(&days) {
        return Err(invalid("valid_days", "must be from 1 to 90"));
    }
    let code = ctx
        .state
        .services
        .create_invite(me.account, Duration::from_secs(days * 86_400))
        .await?;
    Ok(response::json(
        StatusCode::CREATED,
        &json!({"invite": code, "validDays": days}),
    ))
}
