//! Path routing. Each route has a template (used in the access log instead of
//! the raw path, which may hold an IP, an e-mail or a username), the methods
//! it takes and its body limit.

use http::Method;

use super::api::privacy::PrivacyRoute;
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
    Register,
    Bootstrap,
    VerifyEmail,
    PasswordReset,
    PasswordResetConfirm,
    Login,
    Refresh,
    Logout,
    Me,
    PasswordChange,
    Sessions,
    SessionRevoke,
    SessionsRevokeAll,
    Keys,
    KeyRevoke,
    AdminUsers,
    AdminUser,
    AdminInvites,
    AdminSensors,
    AdminSensor,
    AdminWhitelist,
    AdminWhitelistEntry,
    AdminHealth,
    /// The public IP page's lookup (free, not stored, rate-limited).
    UiIp,
    /// The live settings the privacy policy page states.
    UiPolicy,
    UiDashboard,
    /// Keyed operations for the signed-in pages, on one of the account's keys.
    UiReport,
    UiBulkReport,
    UiAlerts(AlertKind),
    UiAlert(AlertKind),
    UiDeliveries,
    /// AbuseIPDB APIv2 (`/api/v2/…`).
    AbuseCheck,
    AbuseReports,
    AbuseBlacklist,
    AbuseReport,
    AbuseCheckBlock,
    AbuseBulkReport,
    AbuseClearAddress,
    /// TAXII discovery, which is also the API root (`/taxii2/`).
    TaxiiRoot,
    TaxiiCollections,
    TaxiiCollection,
    TaxiiObjects,
    TaxiiObject,
    TaxiiVersions,
    TaxiiManifest,
    /// Corrections, data-subject rights, consent, analytics, audience.
    Privacy(PrivacyRoute),
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
            Self::Register => "/v1/account/register",
            Self::Bootstrap => "/v1/account/bootstrap",
            Self::VerifyEmail => "/v1/account/verify-email",
            Self::PasswordReset => "/v1/account/password-reset",
            Self::PasswordResetConfirm => "/v1/account/password-reset/confirm",
            Self::Login => "/v1/session/login",
            Self::Refresh => "/v1/session/refresh",
            Self::Logout => "/v1/session/logout",
            Self::Me => "/v1/account",
            Self::PasswordChange => "/v1/account/password",
            Self::Sessions => "/v1/account/sessions",
            Self::SessionRevoke => "/v1/account/sessions/{id}",
            Self::SessionsRevokeAll => "/v1/account/sessions/revoke-all",
            Self::Keys => "/v1/account/keys",
            Self::KeyRevoke => "/v1/account/keys/{id}",
            Self::AdminUsers => "/v1/admin/users",
            Self::AdminUser => "/v1/admin/users/{id}",
            Self::AdminInvites => "/v1/admin/invites",
            Self::AdminSensors => "/v1/admin/sensors",
            Self::AdminSensor => "/v1/admin/sensors/{id}",
            Self::AdminWhitelist => "/v1/admin/whitelist",
            Self::AdminWhitelistEntry => "/v1/admin/whitelist/{net}",
            Self::AdminHealth => "/v1/admin/health",
            Self::UiIp => "/v1/ui/ip/{ip}",
            Self::UiPolicy => "/v1/ui/policy",
            Self::UiDashboard => "/v1/ui/dashboard",
            Self::UiReport => "/v1/ui/report",
            Self::UiBulkReport => "/v1/ui/bulk-report",
            Self::UiAlerts(k) => match k {
                AlertKind::Ip => "/v1/ui/ip-alerts",
                AlertKind::Range => "/v1/ui/range-alerts",
                AlertKind::Username => "/v1/ui/username-alerts",
                AlertKind::Email => "/v1/ui/email-alerts",
            },
            Self::UiAlert(k) => match k {
                AlertKind::Ip => "/v1/ui/ip-alerts/{id}",
                AlertKind::Range => "/v1/ui/range-alerts/{id}",
                AlertKind::Username => "/v1/ui/username-alerts/{id}",
                AlertKind::Email => "/v1/ui/email-alerts/{id}",
            },
            Self::UiDeliveries => "/v1/ui/alerts/deliveries",
            Self::AbuseCheck => "/api/v2/check",
            Self::AbuseReports => "/api/v2/reports",
            Self::AbuseBlacklist => "/api/v2/blacklist",
            Self::AbuseReport => "/api/v2/report",
            Self::AbuseCheckBlock => "/api/v2/check-block",
            Self::AbuseBulkReport => "/api/v2/bulk-report",
            Self::AbuseClearAddress => "/api/v2/clear-address",
            Self::TaxiiRoot => "/taxii2/",
            Self::TaxiiCollections => "/taxii2/collections/",
            Self::TaxiiCollection => "/taxii2/collections/{id}/",
            Self::TaxiiObjects => "/taxii2/collections/{id}/objects/",
            Self::TaxiiObject => "/taxii2/collections/{id}/objects/{object}/",
            Self::TaxiiVersions => "/taxii2/collections/{id}/objects/{object}/versions/",
            Self::TaxiiManifest => "/taxii2/collections/{id}/manifest/",
            Self::Privacy(p) => p.template(),
        }
    }

    /// The credential the route requires; checked before the body is read.
    pub fn access(self) -> Access {
        match self {
            Self::Healthz
            | Self::Ui
            | Self::Register
            | Self::Bootstrap
            | Self::VerifyEmail
            | Self::PasswordReset
            | Self::PasswordResetConfirm
            | Self::Login
            | Self::TaxiiRoot
            | Self::TaxiiCollections
            | Self::TaxiiCollection
            | Self::UiIp
            | Self::UiPolicy => Access::Public,
            Self::SensorEvents => Access::Sensor,
            Self::Refresh => Access::Refresh,
            Self::Logout
            | Self::Me
            | Self::PasswordChange
            | Self::Sessions
            | Self::SessionRevoke
            | Self::SessionsRevokeAll
            | Self::Keys
            | Self::KeyRevoke
            | Self::UiDashboard
            | Self::UiReport
            | Self::UiBulkReport
            | Self::UiAlerts(_)
            | Self::UiAlert(_)
            | Self::UiDeliveries => Access::Session,
            Self::AdminUsers
            | Self::AdminUser
            | Self::AdminInvites
            | Self::AdminSensors
            | Self::AdminSensor
            | Self::AdminWhitelist
            | Self::AdminWhitelistEntry
            | Self::AdminHealth => Access::Admin,
            Self::Check
            | Self::BulkCheckInline
            | Self::BulkCheck
            | Self::Report
            | Self::BulkReport
            | Self::Blacklist
            | Self::Username
            | Self::Email
            | Self::Status
            | Self::TaxiiObjects
            | Self::TaxiiObject
            | Self::TaxiiVersions
            | Self::TaxiiManifest
            | Self::Alerts(_)
            | Self::Alert(_)
            | Self::AlertDeliveries => Access::ApiKey,
            Self::AbuseCheck
            | Self::AbuseReports
            | Self::AbuseBlacklist
            | Self::AbuseReport
            | Self::AbuseCheckBlock
            | Self::AbuseBulkReport
            | Self::AbuseClearAddress => Access::AbuseIpdbKey,
            Self::Privacy(p) => p.access(),
        }
    }

    /// The quota bucket whose standing keyed answers report in headers.
    pub fn quota_bucket(self) -> Option<Bucket> {
        match self {
            Self::Check
            | Self::BulkCheckInline
            | Self::BulkCheck
            | Self::Username
            | Self::Email
            | Self::AbuseCheck
            | Self::AbuseReports
            | Self::AbuseCheckBlock => Some(Bucket::Lookups),
            Self::Report
            | Self::BulkReport
            | Self::AbuseReport
            | Self::AbuseBulkReport
            | Self::AbuseClearAddress => Some(Bucket::Reports),
            Self::Blacklist | Self::AbuseBlacklist => Some(Bucket::Blacklist),
            Self::TaxiiObjects | Self::TaxiiObject | Self::TaxiiVersions | Self::TaxiiManifest => {
                Some(Bucket::Taxii)
            }
            _ => None,
        }
    }

    /// Methods accepted, for the `Allow` header.
    fn allow(self) -> &'static str {
        match self {
            Self::BulkCheckInline
            | Self::BulkCheck
            | Self::Report
            | Self::BulkReport
            | Self::SensorEvents
            | Self::Register
            | Self::Bootstrap
            | Self::VerifyEmail
            | Self::PasswordReset
            | Self::PasswordResetConfirm
            | Self::Login
            | Self::Refresh
            | Self::Logout
            | Self::PasswordChange
            | Self::SessionsRevokeAll
            | Self::AdminInvites
            | Self::AbuseReport
            | Self::AbuseBulkReport
            | Self::UiReport
            | Self::UiBulkReport => "POST",
            Self::Me | Self::AdminUser => "GET, HEAD, PATCH",
            Self::Keys
            | Self::Alerts(_)
            | Self::UiAlerts(_)
            | Self::AdminSensors
            | Self::AdminWhitelist => "GET, HEAD, POST",
            Self::SessionRevoke
            | Self::KeyRevoke
            | Self::AbuseClearAddress
            | Self::Alert(_)
            | Self::UiAlert(_)
            | Self::AdminSensor
            | Self::AdminWhitelistEntry => "DELETE",
            Self::Healthz
            | Self::Ui
            | Self::Check
            | Self::Blacklist
            | Self::Username
            | Self::Email
            | Self::Status
            | Self::Sessions
            | Self::AdminUsers
            | Self::AlertDeliveries
            | Self::AbuseCheck
            | Self::AbuseReports
            | Self::AbuseBlacklist
            | Self::AbuseCheckBlock
            | Self::TaxiiRoot
            | Self::TaxiiCollections
            | Self::TaxiiCollection
            | Self::TaxiiObjects
            | Self::TaxiiObject
            | Self::TaxiiVersions
            | Self::TaxiiManifest
            | Self::AdminHealth
            | Self::UiIp
            | Self::UiPolicy
            | Self::UiDashboard
            | Self::UiDeliveries => "GET, HEAD",
            Self::Privacy(p) => p.allow(),
        }
    }

    fn accepts(self, m: &Method) -> bool {
        self.allow().split(", ").any(|a| a == m.as_str())
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
            | Self::Sessions
            | Self::SessionRevoke
            | Self::KeyRevoke
            | Self::AdminUsers
            | Self::AbuseCheck
            | Self::AbuseReports
            | Self::AbuseBlacklist
            | Self::AbuseCheckBlock
            | Self::TaxiiRoot
            | Self::TaxiiCollections
            | Self::TaxiiCollection
            | Self::TaxiiObjects
            | Self::TaxiiObject
            | Self::TaxiiVersions
            | Self::TaxiiManifest
            | Self::Alert(_)
            | Self::AlertDeliveries
            | Self::AdminSensor
            | Self::AdminWhitelistEntry
            | Self::AdminHealth
            | Self::UiIp
            | Self::UiPolicy
            | Self::UiDashboard
            | Self::UiAlert(_)
            | Self::UiDeliveries => 0,
            Self::Report
            | Self::Alerts(_)
            | Self::Register
            | Self::Bootstrap
            | Self::VerifyEmail
            | Self::PasswordReset
            | Self::PasswordResetConfirm
            | Self::Login
            | Self::Me
            | Self::PasswordChange
            | Self::Keys
            | Self::AdminUser
            | Self::AdminInvites
            | Self::Logout
            | Self::Refresh
            | Self::SessionsRevokeAll
            | Self::AbuseReport
            | Self::AbuseClearAddress
            | Self::AdminSensors
            | Self::AdminWhitelist
            | Self::UiReport
            | Self::UiAlerts(_) => general,
            // A 2 MB CSV plus multipart framing.
            Self::AbuseBulkReport | Self::UiBulkReport => 3 * MIB,
            // 10,000 lines as the official CLI sends them (it allows 10 MB files).
            Self::BulkCheckInline | Self::BulkCheck => 10 * MIB,
            // 10,000 JSON reports with 1,000-character comments, or a 2 MB CSV.
            Self::BulkReport | Self::SensorEvents => 16 * MIB,
            Self::Privacy(p) => p.body_limit(general),
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
        ["v1", "account"] => (Route::Me, vec![]),
        ["v1", "account", "register"] => (Route::Register, vec![]),
        ["v1", "account", "bootstrap"] => (Route::Bootstrap, vec![]),
        ["v1", "account", "verify-email"] => (Route::VerifyEmail, vec![]),
        ["v1", "account", "password-reset"] => (Route::PasswordReset, vec![]),
        ["v1", "account", "password-reset", "confirm"] => (Route::PasswordResetConfirm, vec![]),
        ["v1", "account", "password"] => (Route::PasswordChange, vec![]),
        ["v1", "account", "sessions"] => (Route::Sessions, vec![]),
        ["v1", "account", "sessions", "revoke-all"] => (Route::SessionsRevokeAll, vec![]),
        ["v1", "account", "sessions", id] => (Route::SessionRevoke, vec![(*id).to_owned()]),
        ["v1", "account", "keys"] => (Route::Keys, vec![]),
        ["v1", "account", "keys", id] => (Route::KeyRevoke, vec![(*id).to_owned()]),
        ["v1", "session", "login"] => (Route::Login, vec![]),
        ["v1", "session", "refresh"] => (Route::Refresh, vec![]),
        ["v1", "session", "logout"] => (Route::Logout, vec![]),
        ["v1", "admin", "users"] => (Route::AdminUsers, vec![]),
        ["v1", "admin", "users", id] => (Route::AdminUser, vec![(*id).to_owned()]),
        ["v1", "admin", "invites"] => (Route::AdminInvites, vec![]),
        ["v1", "admin", "sensors"] => (Route::AdminSensors, vec![]),
        ["v1", "admin", "sensors", id] => (Route::AdminSensor, vec![(*id).to_owned()]),
        ["v1", "admin", "whitelist"] => (Route::AdminWhitelist, vec![]),
        ["v1", "admin", "whitelist", net] => (Route::AdminWhitelistEntry, vec![(*net).to_owned()]),
        ["v1", "admin", "health"] => (Route::AdminHealth, vec![]),
        ["v1", "ui", "ip", ip] => (Route::UiIp, vec![(*ip).to_owned()]),
        ["v1", "ui", "policy"] => (Route::UiPolicy, vec![]),
        ["v1", "ui", "dashboard"] => (Route::UiDashboard, vec![]),
        ["v1", "ui", "report"] => (Route::UiReport, vec![]),
        ["v1", "ui", "bulk-report"] => (Route::UiBulkReport, vec![]),
        ["v1", "ui", "alerts", "deliveries"] => (Route::UiDeliveries, vec![]),
        ["v1", "ui", kind] if alert_kind(kind).is_some() => (
            Route::UiAlerts(alert_kind(kind).unwrap_or(AlertKind::Ip)),
            vec![],
        ),
        ["v1", "ui", kind, id] if alert_kind(kind).is_some() => (
            Route::UiAlert(alert_kind(kind).unwrap_or(AlertKind::Ip)),
            vec![(*id).to_owned()],
        ),
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
        ["api", "v2", "check"] => (Route::AbuseCheck, vec![]),
        ["api", "v2", "reports"] => (Route::AbuseReports, vec![]),
        ["api", "v2", "blacklist"] => (Route::AbuseBlacklist, vec![]),
        ["api", "v2", "report"] => (Route::AbuseReport, vec![]),
        ["api", "v2", "check-block"] => (Route::AbuseCheckBlock, vec![]),
        ["api", "v2", "bulk-report"] => (Route::AbuseBulkReport, vec![]),
        ["api", "v2", "clear-address"] => (Route::AbuseClearAddress, vec![]),
        ["taxii2"] => (Route::TaxiiRoot, vec![]),
        ["taxii2", "collections"] => (Route::TaxiiCollections, vec![]),
        ["taxii2", "collections", c] => (Route::TaxiiCollection, vec![(*c).to_owned()]),
        ["taxii2", "collections", c, "objects"] => (Route::TaxiiObjects, vec![(*c).to_owned()]),
        ["taxii2", "collections", c, "objects", o] => {
            (Route::TaxiiObject, vec![(*c).to_owned(), (*o).to_owned()])
        }
        ["taxii2", "collections", c, "objects", o, "versions"] => {
            (Route::TaxiiVersions, vec![(*c).to_owned(), (*o).to_owned()])
        }
        ["taxii2", "collections", c, "manifest"] => (Route::TaxiiManifest, vec![(*c).to_owned()]),
        p if PrivacyRoute::route(p).is_some() => PrivacyRoute::route(p)
            .map(|(r, params)| (Route::Privacy(r), params))
            .ok_or(HttpError::NotFound)?,
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
