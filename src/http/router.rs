//! Path routing. Each route has a template (used in the access log instead of
//! the raw path, which may hold an IP, an e-mail or a username), the methods
//! it takes and its body limit.

use http::Method;

use super::auth::Access;
use super::error::HttpError;
use crate::service::quotas::Bucket;
use crate::store::alerts::AlertKind;

/// Every endpoint the server has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Healthz,
    /// The embedded web UI (static files and page fallback).
    Ui,
    Check,
    BulkCheckInline,
    BulkCheck,
    Report,
    BulkReport,
    Blacklist,
    Username,
    Email,
    Status,
    /// `GET` lists, `POST` creates alerts of one kind.
    Alerts(AlertKind),
    /// `DELETE` one alert by id.
    Alert(AlertKind),
    /// The account's alert delivery log (an extension).
    AlertDeliveries,
    SensorEvents,
}

const MIB: usize = 1024 * 1024;

/// A route with its decoded path parameters.
#[derive(Debug)]
pub struct Matched {
    pub route: Route,
    pub params: Vec<String>,
}

impl Route {
    /// The path template written to logs.
    pub fn template(self) -> &'static str {
        match self {
            Self::Healthz => "/healthz",
            Self::Ui => "/ui",
            Self::Check => "/v1/key/check/{ip}",
            Self::BulkCheckInline => "/v1/key/bulk-check-inline",
            Self::BulkCheck => "/v1/key/bulk-check",
            Self::Report => "/v1/key/report",
            Self::BulkReport => "/v1/key/bulk-report",
            Self::Blacklist => "/v1/key/blacklist",
            Self::Username => "/v1/key/username/{username}",
            Self::Email => "/v1/key/email/{email}",
            Self::Status => "/v1/key/status",
            Self::Alerts(k) => match k {
                AlertKind::Ip => "/v1/key/ip-alerts",
                AlertKind::Range => "/v1/key/range-alerts",
                AlertKind::Username => "/v1/key/username-alerts",
                AlertKind::Email => "/v1/key/email-alerts",
            },
            Self::Alert(k) => match k {
                AlertKind::Ip => "/v1/key/ip-alerts/{id}",
                AlertKind::Range => "/v1/key/range-alerts/{id}",
                AlertKind::Username => "/v1/key/username-alerts/{id}",
                AlertKind::Email => "/v1/key/email-alerts/{id}",
            },
            Self::AlertDeliveries => "/v1/key/alerts/deliveries",
            Self::SensorEvents => "/v1/sensor/events",
        }
    }

    /// The credential the route requires; checked before the body is read.
    pub fn access(self) -> Access {
        match self {
            Self::Healthz | Self::Ui => Access::Public,
            Self::SensorEvents => Access::Sensor,
            Self::Check
            | Self::BulkCheckInline
            | Self::BulkCheck
            | Self::Report
            | Self::BulkReport
            | Self::Blacklist
            | Self::Username
            | Self::Email
            | Self::Status
            | Self::Alerts(_)
            | Self::Alert(_)
            | Self::AlertDeliveries => Access::ApiKey,
        }
    }

    /// The quota bucket whose standing keyed answers report in headers.
    pub fn quota_bucket(self) -> Option<Bucket> {
        match self {
            Self::Check
            | Self::BulkCheckInline
            | Self::BulkCheck
            | Self::Username
            | Self::Email => Some(Bucket::Lookups),
            Self::Report | Self::BulkReport => Some(Bucket::Reports),
            Self::Blacklist => Some(Bucket::Blacklist),
            Self::Healthz
            | Self::Ui
            | Self::Status
            | Self::Alerts(_)
            | Self::Alert(_)
            | Self::AlertDeliveries
            | Self::SensorEvents => None,
        }
    }

    /// Methods accepted, for the `Allow` header.
    fn allow(self) -> &'static str {
        match self {
            Self::Alerts(_) => "GET, HEAD, POST",
            Self::Alert(_) => "DELETE",
            _ if self.is_post() => "POST",
            _ => "GET, HEAD",
        }
    }

    fn is_post(self) -> bool {
        matches!(
            self,
            Self::BulkCheckInline
                | Self::BulkCheck
                | Self::Report
                | Self::BulkReport
                | Self::SensorEvents
        )
    }

    fn accepts(self, m: &Method) -> bool {
        if let Self::Alerts(_) = self {
            m == Method::GET || m == Method::HEAD || m == Method::POST
        } else if let Self::Alert(_) = self {
            m == Method::DELETE
        } else if self.is_post() {
            m == Method::POST
        } else {
            m == Method::GET || m == Method::HEAD
        }
    }

    /// Largest body this route reads, given the general JSON limit.
    pub fn body_limit(self, general: usize) -> usize {
        match self {
            Self::Healthz
            | Self::Ui
            | Self::Check
            | Self::Blacklist
            | Self::Username
            | Self::Email
            | Self::Status
            | Self::Alert(_)
            | Self::AlertDeliveries => 0,
            Self::Report | Self::Alerts(_) => general,
            // 10,000 lines as the official CLI sends them (it allows 10 MB files).
            Self::BulkCheckInline | Self::BulkCheck => 10 * MIB,
            // 10,000 JSON reports with 1,000-character comments, or a 2 MB CSV.
            Self::BulkReport | Self::SensorEvents => 16 * MIB,
        }
    }
}

/// Percent-decodes one path segment; `+` stays a plus (paths are not forms).
pub fn decode_segment(s: &str) -> Result<String, HttpError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(HttpError::BadPath)?;
            let hex = std::str::from_utf8(hex).map_err(|_| HttpError::BadPath)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| HttpError::BadPath)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| HttpError::BadPath)
}

/// Segments of `path` with empty ones dropped, so `//v1/key` and trailing
/// slashes route like their canonical form.
pub fn segments(path: &str) -> Result<Vec<String>, HttpError> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect()
}

fn alert_kind(segment: &str) -> Option<AlertKind> {
    match segment {
        "ip-alerts" => Some(AlertKind::Ip),
        "range-alerts" => Some(AlertKind::Range),
        "username-alerts" => Some(AlertKind::Username),
        "email-alerts" => Some(AlertKind::Email),
        _ => None,
    }
}

fn is_api_prefix(first: Option<&str>) -> bool {
    matches!(first, Some("v1" | "api" | "taxii2" | "healthz"))
}

pub fn route(method: &Method, path: &str) -> Result<Matched, HttpError> {
    let segs = segments(path)?;
    let parts: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (route, params): (Route, Vec<String>) = match parts.as_slice() {
        ["healthz"] => (Route::Healthz, vec![]),
        ["v1", "key", "check", ip] => (Route::Check, vec![(*ip).to_owned()]),
        ["v1", "key", "bulk-check-inline"] => (Route::BulkCheckInline, vec![]),
        ["v1", "key", "bulk-check"] => (Route::BulkCheck, vec![]),
        ["v1", "key", "report"] => (Route::Report, vec![]),
        ["v1", "key", "bulk-report"] => (Route::BulkReport, vec![]),
        ["v1", "key", "blacklist"] => (Route::Blacklist, vec![]),
        ["v1", "key", "username", u] => (Route::Username, vec![(*u).to_owned()]),
        ["v1", "key", "email", e] => (Route::Email, vec![(*e).to_owned()]),
        ["v1", "key", "status"] => (Route::Status, vec![]),
        ["v1", "key", "alerts", "deliveries"] => (Route::AlertDeliveries, vec![]),
        ["v1", "key", kind] if alert_kind(kind).is_some() => (
            Route::Alerts(alert_kind(kind).unwrap_or(AlertKind::Ip)),
            vec![],
        ),
        ["v1", "key", kind, id] if alert_kind(kind).is_some() => (
            Route::Alert(alert_kind(kind).unwrap_or(AlertKind::Ip)),
            vec![(*id).to_owned()],
        ),
        ["v1", "sensor", "events"] => (Route::SensorEvents, vec![]),
        _ if !is_api_prefix(parts.first().copied()) => (Route::Ui, vec![]),
        _ => return Err(HttpError::NotFound),
    };
    if !route.accepts(method) {
        return Err(HttpError::MethodNotAllowed {
            allow: route.allow(),
        });
    }
    Ok(Matched { route, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_templates() {
        assert_eq!(
            route(&Method::GET, "/healthz").unwrap().route,
            Route::Healthz
        );
        assert_eq!(
            route(&Method::GET, "//healthz/").unwrap().route,
            Route::Healthz
        );
        assert_eq!(route(&Method::GET, "/").unwrap().route, Route::Ui);
        assert_eq!(route(&Method::GET, "/ip/1.2.3.4").unwrap().route, Route::Ui);
        assert!(matches!(
            route(&Method::GET, "/v1/nothing"),
            Err(HttpError::NotFound)
        ));
        assert!(matches!(
            route(&Method::POST, "/healthz"),
            Err(HttpError::MethodNotAllowed { .. })
        ));
    }

    #[test]
    fn decoding() {
        assert_eq!(decode_segment("a%40b+c").unwrap(), "a@b+c");
        assert!(matches!(decode_segment("%ff"), Err(HttpError::BadPath)));
        assert!(matches!(decode_segment("%4"), Err(HttpError::BadPath)));
        assert!(matches!(decode_segment("%zz"), Err(HttpError::BadPath)));
    }
}
