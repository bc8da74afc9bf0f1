//! The account endpoints (`/v1/account/…`): sign-up, the first admin,
//! e-mail verification, password reset and change, the profile, and the
//! account's API keys.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::super::dispatch::Ctx;
use super::super::error::HttpError;
use super::super::response::{self, Resp};
use super::{id_param, json_body};
use crate::domain::UnixMillis;
use crate::domain::account::ProfileInput;
use crate::service::accounts::SignUp;
use crate::store::apikeys::ApiKey;

fn ok(v: &serde_json::Value) -> Resp {
    response::json(StatusCode::OK, v)
}

pub async fn register(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let s: SignUp = json_body(ctx)?;
    let a = ctx
        .state
        .services
        .register(s, Some(ctx.client.to_string()))
        .await?;
    Ok(response::json(
        StatusCode::CREATED,
        &json!({"success": true, "account": a, "message": "check your e-mail to confirm your address"}),
    ))
}

#[derive(Deserialize)]
struct BootstrapBody {
    token: String,
    #[serde(flatten)]
    signup: SignUp,
}

pub async fn bootstrap(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let b: BootstrapBody = json_body(ctx)?;
    let a = ctx
        .state
        .services
        .bootstrap_admin(&b.token, b.signup)
        .await?;
    Ok(response::json(
        StatusCode::CREATED,
        &json!({"success": true, "account": a}),
    ))
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

pub async fn verify_email(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let b: TokenBody = json_body(ctx)?;
    let a = ctx.state.services.verify_email(&b.token).await?;
    Ok(ok(&json!({"success": true, "account": a})))
}

#[derive(Deserialize)]
struct EmailBody {
    email: String,
}

pub async fn password_reset(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let b: EmailBody = json_body(ctx)?;
    ctx.state.services.request_password_reset(&b.email).await?;
    Ok(ok(
        &json!({"success": true, "message": "if the address belongs to an account, a reset link is on its way"}),
    ))
}

#[derive(Deserialize)]
struct ResetBody {
    token: String,
    password: String,
}

pub async fn password_reset_confirm(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let b: ResetBody = json_body(ctx)?;
    ctx.state
        .services
        .reset_password(&b.token, &b.password)
        .await?;
    Ok(ok(&json!({"success": true})))
}

pub async fn me(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.session()?;
    let s = &ctx.state.services;
    let view = if ctx.method == http::Method::PATCH {
        let p: serde_json::Value = json_body(ctx)?;
        let email = p.get("email").and_then(|e| e.as_str()).map(str::to_owned);
        let has_profile = [
            "first_name",
            "firstName",
            "last_name",
            "lastName",
            "country",
            "account_type",
            "accountType",
            "company",
            "vat_id",
            "vatId",
        ]
        .iter()
        .any(|k| p.get(k).is_some());
        let profile = if has_profile {
            // Unchanged fields keep their values: start from the current profile.
            let cur = s.account(who.account).await?.profile;
            let mut base = serde_json::json!({
                "first_name": cur.first_name, "last_name": cur.last_name, "country": cur.country,
                "account_type": cur.account_type, "company": cur.company.unwrap_or_default(),
                "vat_id": cur.vat_id.unwrap_or_default(),
            });
            if let (Some(b), Some(o)) = (base.as_object_mut(), p.as_object()) {
                for (k, v) in o {
                    let key = match k.as_str() {
                        "firstName" => "first_name",
                        "lastName" => "last_name",
                        "accountType" => "account_type",
                        "vatId" => "vat_id",
                        other => other,
                    };
                    if key != "email" {
                        b.insert(key.to_owned(), v.clone());
                    }
                }
            }
            Some(
                serde_json::from_value::<ProfileInput>(base)
                    .map_err(|e| super::super::query::invalid("body", &e.to_string()))?,
            )
        } else {
            None
        };
        s.update_profile(who.account, profile, email).await?
    } else {
        crate::service::accounts::AccountView::of(&s.account(who.account).await?)
    };
    Ok(ok(
        &json!({"account": view, "csrfToken": s.csrf_token(who.family)}),
    ))
}

#[derive(Deserialize)]
struct PasswordBody {
    #[serde(alias = "currentPassword")]
    current_password: String,
    #[serde(alias = "newPassword")]
    new_password: String,
}

pub async fn password_change(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.session()?;
    let b: PasswordBody = json_body(ctx)?;
    ctx.state
        .services
        .change_password(
            who.account,
            who.family,
            &b.current_password,
            &b.new_password,
        )
        .await?;
    Ok(ok(&json!({"success": true})))
}

fn key_view(k: &ApiKey) -> serde_json::Value {
    json!({
        "id": k.id.to_string(),
        "name": k.name,
        "tier": k.tier,
        "prefix": k.prefix,
        "createdAt": UnixMillis(k.created_ms).rfc3339(),
        "revokedAt": k.revoked_ms.map(|t| UnixMillis(t).rfc3339()),
        "lastUsedDay": k.last_used_day.map(|d| UnixMillis(d * 86_400_000).rfc3339()[..10].to_owned()),
    })
}

#[derive(Deserialize)]
struct KeyBody {
    name: String,
}

pub async fn keys(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.session()?;
    let s = &ctx.state.services;
    if ctx.method == http::Method::POST {
        let b: KeyBody = json_body(ctx)?;
        let (plaintext, k) = s.create_account_key(who.account, &b.name).await?;
        let mut v = key_view(&k);
        v["key"] = json!(plaintext);
        return Ok(response::json(StatusCode::CREATED, &v));
    }
    let keys: Vec<_> = s.account_keys(who.account)?.iter().map(key_view).collect();
    Ok(ok(&json!({"keys": keys})))
}

pub async fn key_revoke(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.session()?;
    let id = id_param(ctx, "id")?;
    let k = ctx
        .state
        .services
        .revoke_account_key(who.account, id)
        .await?;
    Ok(ok(&json!({"success": true, "key": key_view(&k)})))
}
