//! Sign-in, refresh, sign-out and the session list (`/v1/session/…`,
//! `/v1/account/sessions…`). Tokens travel only in cookies.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::super::auth::Principal;
use super::super::cookies;
use super::super::dispatch::Ctx;
use super::super::error::HttpError;
use super::super::response::{self, Resp};
use super::{id_param, json_body};
use crate::service::accounts::AccountView;
use crate::service::sessions::Issued;

#[derive(Deserialize)]
struct LoginBody {
    #[serde(alias = "username", alias = "email")]
    login: String,
    password: String,
    #[serde(default, alias = "rememberMe")]
    remember: bool,
}

fn signed_in(i: &Issued) -> Resp {
    let mut r = response::json(
        StatusCode::OK,
        &json!({"success": true, "account": AccountView::of(&i.account), "csrfToken": i.csrf}),
    );
    cookies::set_session(
        r.headers_mut(),
        &i.access,
        &i.refresh,
        &i.csrf,
        i.refresh_ttl,
    );
    r
}

pub async fn login(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let b: LoginBody = json_body(ctx)?;
    let issued = ctx
        .state
        .services
        .login(
            &b.login,
            &b.password,
            b.remember,
            ctx.client,
            ctx.user_agent(),
        )
        .await?;
    Ok(signed_in(&issued))
}

pub async fn refresh(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let Principal::Refresh(token) = &ctx.principal else {
        return Err(HttpError::Unauthenticated);
    };
    match ctx
        .state
        .services
        .refresh_session(token, ctx.client, ctx.user_agent())
        .await
    {
        Ok(issued) => Ok(signed_in(&issued)),
        Err(e) => {
            // A dead session's cookies are useless: clear them with the error.
            let mut r = HttpError::from(e).into_response(super::super::error::Dialect::Sikker);
            cookies::clear_session(r.headers_mut());
            Ok(r)
        }
    }
}

pub async fn logout(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.session()?;
    ctx.state
        .services
        .end_session(who.account, who.family)
        .await?;
    let mut r = response::json(StatusCode::OK, &json!({"success": true}));
    cookies::clear_session(r.headers_mut());
    Ok(r)
}

pub async fn list(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.session()?;
    let sessions = ctx
        .state
        .services
        .list_sessions(who.account, who.family)
        .await?;
    Ok(response::json(
        StatusCode::OK,
        &json!({"sessions": sessions}),
    ))
}

pub async fn revoke(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.session()?;
    let id = id_param(ctx, "id")?;
    ctx.state.services.end_session(who.account, id).await?;
    Ok(response::json(StatusCode::OK, &json!({"success": true})))
}

pub async fn revoke_all(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let who = ctx.session()?;
    ctx.state
        .services
        .revoke_sessions(who.account, None)
        .await?;
    let mut r = response::json(StatusCode::OK, &json!({"success": true}));
    cookies::clear_session(r.headers_mut());
    Ok(r)
}
