//! Session cookies exactly as the privacy policy states (P38, P39):
//! `access_token` (JWT, 15 minutes) and `refresh_token` (24 hours, or 30
//! days with "remember me"), both HttpOnly, Secure, SameSite=Lax; the
//! refresh token is sent only to the session endpoints. `csrf_token` is
//! readable by the page, which echoes it in `X-CSRF-Token` (P49).

use std::time::Duration;

use http::HeaderMap;
use http::header::{self, HeaderValue};

pub const ACCESS: &str = "access_token";
pub const REFRESH: &str = "refresh_token";
pub const CSRF: &str = "csrf_token";
/// Where the refresh token is sent: the session endpoints only.
pub const REFRESH_PATH: &str = "/v1/session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The analytics consent choice (P41): readable by the page, 1 year.
pub const CONSENT: &str = "ska_analytics_consent";
pub const CONSENT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The value of cookie `name` in the request, if present.
pub fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn set(h: &mut HeaderMap, name: &str, value: &str, path: &str, max_age: Duration, http_only: bool) {
    let mut c = format!(
        "{name}={value}; Max-Age={}; Path={path}; Secure; SameSite=Lax",
        max_age.as_secs()
    );
    if http_only {
        c.push_str("; HttpOnly");
    }
    if let Ok(v) = HeaderValue::from_str(&c) {
        h.append(header::SET_COOKIE, v);
    }
}

/// Sets the three session cookies.
pub fn set_session(
    h: &mut HeaderMap,
    access: &str,
    refresh: &str,
    csrf: &str,
    refresh_ttl: Duration,
) {
    set(
        h,
        ACCESS,
        access,
        "/",
        crate::service::sessions::ACCESS_TTL,
        true,
    );
    set(h, REFRESH, refresh, REFRESH_PATH, refresh_ttl, true);
    set(h, CSRF, csrf, "/", refresh_ttl, false);
}

/// Clears the session cookies (sign-out, or a session that ended).
pub fn clear_session(h: &mut HeaderMap) {
    set(h, ACCESS, "", "/", Duration::ZERO, true);
    set(h, REFRESH, "", REFRESH_PATH, Duration::ZERO, true);
    set(h, CSRF, "", "/", Duration::ZERO, false);
}

/// Sets `ska_analytics_consent` to granted or denied (Secure, SameSite=Lax,
/// one year; not HttpOnly, since the banner reads it).
pub fn set_consent(h: &mut HeaderMap, granted: bool) {
    let v = if granted { "granted" } else { "denied" };
    set(h, CONSENT, v, "/", CONSENT_TTL, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_attributes() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; access_token=xyz ;b="),
        );
        assert_eq!(get(&h, ACCESS), Some("xyz"));
        assert_eq!(get(&h, "b"), None);
        assert_eq!(get(&h, "c"), None);
        let mut out = HeaderMap::new();
        set_session(&mut out, "A", "R", "C", Duration::from_secs(86_400));
        let all: Vec<&str> = out
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            all,
            [
                "access_token=A; Max-Age=900; Path=/; Secure; SameSite=Lax; HttpOnly",
                "refresh_token=R; Max-Age=86400; Path=/v1/session; Secure; SameSite=Lax; HttpOnly",
                "csrf_token=C; Max-Age=86400; Path=/; Secure; SameSite=Lax",
            ]
        );
    }
}
