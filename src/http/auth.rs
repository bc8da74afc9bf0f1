//! Turning credentials on a request into a principal. Keys come from
//! `Authorization: Bearer …` or, on GET requests, `?key=…` (the header wins).

use http::{HeaderMap, Method, header};

use super::dispatch::Ctx;
use super::error::HttpError;
use super::query::Query;
use crate::service::apikeys::ApiPrincipal;
use crate::store::sensors::Sensor;

fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

pub fn api_key(ctx: &Ctx<'_>, q: &Query) -> Result<ApiPrincipal, HttpError> {
    let key = bearer(&ctx.headers)
        .or_else(|| (ctx.method == Method::GET).then(|| q.get("key")).flatten());
    Ok(ctx.state.services.authenticate_api_key(key)?)
}

pub async fn sensor(ctx: &Ctx<'_>) -> Result<Sensor, HttpError> {
    Ok(ctx
        .state
        .services
        .authenticate_sensor(bearer(&ctx.headers))
        .await?)
}
