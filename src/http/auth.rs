//! Turning credentials on a request into a principal, before its body is
//! read. Which credential a route needs is declared by the route itself
//! (`Route::access`), so no keyed endpoint can forget to check it (P52).
//! API keys come from `Authorization: Bearer …` or, on GET requests,
//! `?key=…` (the header wins). The AbuseIPDB surface reads its `Key`
//! header instead (or `?key=…` on any method) and resolves to the same
//! principal.

use http::{HeaderMap, Method, header};

use super::cookies;
use super::error::HttpError;
use super::query::Query;
use crate::domain::account::Role;
use crate::service::Services;
use crate::service::apikeys::ApiPrincipal;
use crate::service::sessions::SessionPrincipal;
use crate::store::sensors::Sensor;

/// The credential a route requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    ApiKey,
    /// An API key in AbuseIPDB's `Key` header; any failure is a 401 there.
    AbuseIpdbKey,
    Sensor,
    /// A signed-in person (access-token cookie); CSRF token on writes.
    Session,
    /// A signed-in admin (P54).
    Admin,
    /// The refresh-token cookie, with the CSRF token echoed in a header.
    Refresh,
}

/// Who made a request, as established by `authenticate`.
#[derive(Clone, Debug)]
pub enum Principal {
    Anonymous,
    Key(ApiPrincipal),
    Sensor(Sensor),
    Session(SessionPrincipal),
    /// The refresh token presented to the session endpoints.
    Refresh(String),
}

fn unauthenticated(reason: &str) -> HttpError {
    HttpError::Service(crate::service::Error::Unauthenticated {
        reason: reason.into(),
    })
}

fn csrf_failed() -> HttpError {
    HttpError::Service(crate::service::Error::Forbidden {
        reason: "missing or wrong CSRF token (send the csrf_token cookie's value in X-CSRF-Token)"
            .into(),
    })
}

fn is_safe(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

pub fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

pub async fn authenticate(
    services: &Services,
    access: Access,
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Principal, HttpError> {
    Ok(match access {
        Access::Public => Principal::Anonymous,
        Access::ApiKey => {
            let q;
            let key = match bearer(headers) {
                Some(k) => Some(k),
                None if method == Method::GET || method == Method::HEAD => {
                    q = Query::parse(query);
                    q.get("key")
                }
                None => None,
            };
            Principal::Key(services.authenticate_api_key(key)?)
        }
        Access::AbuseIpdbKey => {
            let q = Query::parse(query);
            let key = headers
                .get("key")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .or_else(|| q.get("key"));
            // Upstream answers a revoked key like a wrong one.
            let p = services.authenticate_api_key(key).map_err(|e| match e {
                crate::service::Error::Unauthenticated { .. }
                | crate::service::Error::Forbidden { .. } => HttpError::Unauthenticated,
                other => HttpError::Service(other),
            })?;
            Principal::Key(p)
        }
        Access::Sensor => Principal::Sensor(services.authenticate_sensor(bearer(headers)).await?),
        Access::Session | Access::Admin => {
            let token = cookies::get(headers, cookies::ACCESS)
                .ok_or_else(|| unauthenticated("sign in first"))?;
            let p = services.authenticate_session(token).await?;
            if !is_safe(method)
                && !services.csrf_ok(
                    p.family,
                    headers
                        .get(cookies::CSRF_HEADER)
                        .and_then(|v| v.to_str().ok()),
                )
            {
                return Err(csrf_failed());
            }
            if access == Access::Admin && p.role != Role::Admin {
                return Err(HttpError::Service(crate::service::Error::Forbidden {
                    reason: "this needs an admin account".into(),
                }));
            }
            Principal::Session(p)
        }
        Access::Refresh => {
            let token = cookies::get(headers, cookies::REFRESH)
                .ok_or_else(|| unauthenticated("session expired; sign in again"))?;
            let echoed = headers
                .get(cookies::CSRF_HEADER)
                .and_then(|v| v.to_str().ok());
            let cookie = cookies::get(headers, cookies::CSRF);
            match (echoed, cookie) {
                (Some(e), Some(c)) if crate::crypto::ct_eq(e.as_bytes(), c.as_bytes()) => {}
                _ => return Err(csrf_failed()),
            }
            Principal::Refresh(token.to_owned())
        }
    })
}
