//! Privacy endpoints: listing corrections (public request, admin
//! decisions), the signed-in person's data-subject rights under
//! `/v1/account/privacy/…`, the consent log and consent-gated analytics,
//! and the admins' retention, audience, analytics and request views.
//! Documented with examples in `docs/privacy.md`.

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::super::auth::Access;
use super::super::cookies;
use super::super::dispatch::Ctx;
use super::super::error::HttpError;
use super::super::query::{Query, invalid};
use super::super::response::{self, Resp};
use super::json_body;
use crate::service::privacy::{Decision, parse_decision};

/// The privacy routes, one variant of `Route`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrivacyRoute {
    Corrections,
    Consent,
    AnalyticsEvents,
    Overview,
    Export,
    Erase,
    Restriction,
    Objection,
    Requests,
    AdminCorrections,
    AdminCorrectionDecide,
    AdminRetention,
    AdminAudience,
    AdminAnalytics,
    AdminRequests,
    AdminExport,
    AdminErase,
}

impl PrivacyRoute {
    pub fn template(self) -> &'static str {
        match self {
            Self::Corrections => "/v1/corrections",
            Self::Consent => "/v1/privacy/consent",
            Self::AnalyticsEvents => "/v1/analytics/events",
            Self::Overview => "/v1/account/privacy",
            Self::Export => "/v1/account/privacy/export",
            Self::Erase => "/v1/account/privacy/erase",
            Self::Restriction => "/v1/account/privacy/restriction",
            Self::Objection => "/v1/account/privacy/objection",
            Self::Requests => "/v1/account/privacy/requests",
            Self::AdminCorrections => "/v1/admin/corrections",
            Self::AdminCorrectionDecide => "/v1/admin/corrections/{id}/{decision}",
            Self::AdminRetention => "/v1/admin/retention",
            Self::AdminAudience => "/v1/admin/audience",
            Self::AdminAnalytics => "/v1/admin/analytics",
            Self::AdminRequests => "/v1/admin/gdpr/requests",
            Self::AdminExport => "/v1/admin/gdpr/export/{account}",
            Self::AdminErase => "/v1/admin/gdpr/erase/{account}",
        }
    }

    pub fn access(self) -> Access {
        match self {
            Self::Corrections | Self::Consent | Self::AnalyticsEvents => Access::Public,
            Self::Overview
            | Self::Export
            | Self::Erase
            | Self::Restriction
            | Self::Objection
            | Self::Requests => Access::Session,
            Self::AdminCorrections
            | Self::AdminCorrectionDecide
            | Self::AdminRetention
            | Self::AdminAudience
            | Self::AdminAnalytics
            | Self::AdminRequests
            | Self::AdminExport
            | Self::AdminErase => Access::Admin,
        }
    }

    pub fn allow(self) -> &'static str {
        match self {
            Self::Corrections
            | Self::Consent
            | Self::AnalyticsEvents
            | Self::Erase
            | Self::Restriction
            | Self::Objection
            | Self::Requests
            | Self::AdminCorrectionDecide
            | Self::AdminErase => "POST",
            Self::Overview
            | Self::Export
            | Self::AdminCorrections
            | Self::AdminRetention
            | Self::AdminAudience
            | Self::AdminAnalytics
            | Self::AdminRequests
            | Self::AdminExport => "GET, HEAD",
        }
    }

    pub fn body_limit(self, general: usize) -> usize {
        if self.allow() == "POST" { general } else { 0 }
    }

    /// Matches the privacy paths.
    pub fn route(parts: &[&str]) -> Option<(Self, Vec<String>)> {
        let one = |s: &str| vec![s.to_owned()];
        Some(match parts {
            ["v1", "corrections"] => (Self::Corrections, vec![]),
            ["v1", "privacy", "consent"] => (Self::Consent, vec![]),
            ["v1", "analytics", "events"] => (Self::AnalyticsEvents, vec![]),
            ["v1", "account", "privacy"] => (Self::Overview, vec![]),
            ["v1", "account", "privacy", "export"] => (Self::Export, vec![]),
            ["v1", "account", "privacy", "erase"] => (Self::Erase, vec![]),
            ["v1", "account", "privacy", "restriction"] => (Self::Restriction, vec![]),
            ["v1", "account", "privacy", "objection"] => (Self::Objection, vec![]),
            ["v1", "account", "privacy", "requests"] => (Self::Requests, vec![]),
            ["v1", "admin", "corrections"] => (Self::AdminCorrections, vec![]),
            ["v1", "admin", "corrections", id, d] => (
                Self::AdminCorrectionDecide,
                vec![(*id).to_owned(), (*d).to_owned()],
            ),
            ["v1", "admin", "retention"] => (Self::AdminRetention, vec![]),
            ["v1", "admin", "audience"] => (Self::AdminAudience, vec![]),
            ["v1", "admin", "analytics"] => (Self::AdminAnalytics, vec![]),
            ["v1", "admin", "gdpr", "requests"] => (Self::AdminRequests, vec![]),
            ["v1", "admin", "gdpr", "export", a] => (Self::AdminExport, one(a)),
            ["v1", "admin", "gdpr", "erase", a] => (Self::AdminErase, one(a)),
            _ => return None,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CorrectionBody {
    ip: String,
    reason: String,
    #[serde(default)]
    details: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody {
    sid: String,
    name: String,
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlagBody {
    on: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    kind: String,
}

fn param_u64(ctx: &Ctx<'_>, i: usize, name: &str) -> Result<u64, HttpError> {
    ctx.params
        .get(i)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| invalid(name, "must be a number"))
}

fn ok(v: &serde_json::Value) -> Resp {
    response::json(StatusCode::OK, v)
}

/// The value of the consent cookie, if it is one of the two allowed.
pub fn consent_cookie(h: &http::HeaderMap) -> Option<bool> {
    match cookies::get(h, cookies::CONSENT)? {
        "granted" => Some(true),
        "denied" => Some(false),
        _ => None,
    }
}

#[allow(clippy::too_many_lines, clippy::many_single_char_names)]
pub async fn handle(r: PrivacyRoute, ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    let s = &ctx.state.services;
    match r {
        PrivacyRoute::Corrections => {
            let b: CorrectionBody = json_body(&ctx)?;
            let receipt = s
                .request_correction(&b.ip, &b.reason, b.details, ctx.client)
                .await?;
            Ok(response::json(
                StatusCode::CREATED,
                &json!({"correction": receipt}),
            ))
        }
        PrivacyRoute::Consent => {
            let b: DecisionBody = json_body(&ctx)?;
            let granted = parse_decision(&b.decision)?;
            let c = s.record_consent(granted, None).await?;
            let mut resp = ok(&json!({
                "decision": b.decision, "recorded": crate::domain::UnixMillis(c.at_ms).rfc3339(),
            }));
            cookies::set_consent(resp.headers_mut(), granted);
            Ok(resp)
        }
        PrivacyRoute::AnalyticsEvents => {
            if consent_cookie(&ctx.headers) != Some(true) {
                return Err(HttpError::Service(crate::service::Error::Forbidden {
                    reason: "analytics events are accepted only with the ska_analytics_consent cookie set to granted".into(),
                }));
            }
            let b: EventBody = json_body(&ctx)?;
            s.record_analytics(&b.sid, &b.name, &b.path).await?;
            Ok(response::json(
                StatusCode::ACCEPTED,
                &json!({"accepted": true}),
            ))
        }
        PrivacyRoute::Overview => {
            let me = ctx.session()?;
            Ok(ok(&s.privacy_overview(me.account).await?))
        }
        PrivacyRoute::Export => {
            let me = ctx.session()?;
            let v = s.export_account(me.account).await?;
            s.log_request(me.account, "access", "self", true).await?;
            let mut resp = ok(&v);
            if let Ok(h) =
                http::HeaderValue::from_str("attachment; filename=\"sikker-export.json\"")
            {
                resp.headers_mut()
                    .insert(http::header::CONTENT_DISPOSITION, h);
            }
            Ok(resp)
        }
        PrivacyRoute::Erase => {
            let me = ctx.session()?;
            let b: PasswordBody = json_body(&ctx)?;
            // Identity is verified again before an irreversible act (P36).
            if !s.confirm_password(me.account, &b.password).await? {
                return Err(HttpError::Service(crate::service::Error::Forbidden {
                    reason: "password: does not match; erasure needs your current password".into(),
                }));
            }
            let v = s.erase_account(me.account).await?;
            s.log_request(me.account, "erasure", "self", true).await?;
            let mut resp = ok(&v);
            cookies::clear_session(resp.headers_mut());
            Ok(resp)
        }
        PrivacyRoute::Restriction => {
            let me = ctx.session()?;
            let b: FlagBody = json_body(&ctx)?;
            s.set_restriction(me.account, b.on).await?;
            let kind = if b.on {
                "restriction"
            } else {
                "lift_restriction"
            };
            s.log_request(me.account, kind, "self", true).await?;
            Ok(ok(&s.privacy_overview(me.account).await?))
        }
        PrivacyRoute::Objection => {
            let me = ctx.session()?;
            let b: FlagBody = json_body(&ctx)?;
            s.set_objection(me.account, b.on).await?;
            let kind = if b.on {
                "objection"
            } else {
                "withdraw_objection"
            };
            s.log_request(me.account, kind, "self", true).await?;
            Ok(ok(&s.privacy_overview(me.account).await?))
        }
        PrivacyRoute::Requests => {
            let me = ctx.session()?;
            let b: RequestBody = json_body(&ctx)?;
            let r = s.log_request(me.account, &b.kind, "self", false).await?;
            Ok(response::json(
                StatusCode::CREATED,
                &json!({"request": {"id": r.id, "kind": r.kind,
                    "received": crate::domain::UnixMillis(r.received_ms).rfc3339(),
                    "deadline": crate::domain::UnixMillis(r.received_ms + crate::service::privacy::DEADLINE_MS).rfc3339()}}),
            ))
        }
        PrivacyRoute::AdminCorrections => {
            ctx.session()?;
            let q = Query::parse(ctx.query.as_deref());
            let mut all = s.list_corrections().await?;
            if let Some(st) = q.get("status") {
                all.retain(|c| {
                    serde_json::to_value(c.status)
                        .ok()
                        .is_some_and(|v| v.as_str() == Some(st))
                });
            }
            if q.get("flagged") == Some("true") {
                all.retain(|c| c.new_evidence);
            }
            Ok(ok(&json!({"corrections": all})))
        }
        PrivacyRoute::AdminCorrectionDecide => {
            let me = ctx.session()?;
            let id = param_u64(&ctx, 0, "id")?;
            let d = ctx
                .params
                .get(1)
                .and_then(|d| Decision::parse(d))
                .ok_or_else(|| invalid("decision", "must be approve, deny or revoke"))?;
            let b: ReasonBody = json_body(&ctx)?;
            let v = s.decide_correction(id, d, me.account, &b.reason).await?;
            Ok(ok(&json!({"correction": v})))
        }
        PrivacyRoute::AdminRetention => {
            ctx.session()?;
            Ok(ok(&json!({"categories": s.retention_status().await?})))
        }
        PrivacyRoute::AdminAudience => {
            ctx.session()?;
            let q = Query::parse(ctx.query.as_deref());
            let today = s.clock.now().day();
            let day = |name: &str, default: i64| -> Result<i64, HttpError> {
                q.get(name).map_or(Ok(default), |v| {
                    time::Date::parse(v, &time::format_description::well_known::Iso8601::DATE)
                        .map(|d| i64::from(d.to_julian_day()) - 2_440_588)
                        .map_err(|_| invalid(name, "must be a date like 2026-03-21"))
                })
            };
            let to = day("to", today)?;
            let from = day("from", to - 29)?;
            if from > to || to - from > 400 {
                return Err(invalid(
                    "from",
                    "must be on or before 'to', at most 400 days apart",
                ));
            }
            Ok(ok(&s.audience_summary(from, to).await?))
        }
        PrivacyRoute::AdminAnalytics => {
            ctx.session()?;
            let q = Query::parse(ctx.query.as_deref());
            let days = match q.get("days") {
                None => 30,
                Some(v) => v
                    .parse::<i64>()
                    .ok()
                    .filter(|d| (1..=800).contains(d))
                    .ok_or_else(|| invalid("days", "must be from 1 to 800"))?,
            };
            Ok(ok(&s.analytics_summary(days).await?))
        }
        PrivacyRoute::AdminRequests => {
            ctx.session()?;
            Ok(ok(&json!({"pending": s.pending_requests().await?})))
        }
        PrivacyRoute::AdminExport => {
            let me = ctx.session()?;
            let account = param_u64(&ctx, 0, "account")?;
            let v = s.export_account(account).await?;
            s.answer_requests(None, account, "access").await?;
            s.log_request(account, "access", &format!("admin:{}", me.account), true)
                .await?;
            Ok(ok(&v))
        }
        PrivacyRoute::AdminErase => {
            let me = ctx.session()?;
            let account = param_u64(&ctx, 0, "account")?;
            if account == me.account {
                return Err(invalid(
                    "account",
                    "admins erase their own account from their privacy page",
                ));
            }
            let v = s.erase_account(account).await?;
            s.answer_requests(None, account, "erasure").await?;
            s.log_request(account, "erasure", &format!("admin:{}", me.account), true)
                .await?;
            Ok(ok(&v))
        }
    }
}

/// Whether a UI request is an HTML page load (not an asset, not a probe).
pub fn is_page_load(method: &Method, path: &str, headers: &http::HeaderMap) -> bool {
    if method != Method::GET {
        return false;
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    // "/ip/8.8.8.8" is a page; "app.js" is not.
    let asset = std::path::Path::new(last).extension().is_some_and(|e| {
        let e = e.to_string_lossy();
        e.bytes().any(|b| b.is_ascii_alphabetic()) && !e.eq_ignore_ascii_case("html")
    });
    let dest_ok = headers
        .get("sec-fetch-dest")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|d| d == "document");
    let wants_html = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    !asset && dest_ok && wants_html
}

/// Counts an HTML page view for the anonymous audience measurement.
pub async fn count_page_view(ctx: &Ctx<'_>) {
    let h = &ctx.headers;
    let flag = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim) == Some("1");
    let opted_out = flag("sec-gpc") || flag("dnt");
    let s = &ctx.state.services;
    let account = match cookies::get(h, cookies::ACCESS) {
        Some(t) => s.authenticate_session(t).await.ok().map(|p| p.account),
        None => None,
    };
    let host = h
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(':').next());
    let visit = crate::service::audience::Visit {
        ip: ctx.client,
        user_agent: ctx.user_agent(),
        path: &ctx.path,
        referrer: h.get(http::header::REFERER).and_then(|v| v.to_str().ok()),
        host,
        opted_out,
        account,
    };
    if let Err(e) = s.count_page_view(visit).await {
        tracing::warn!(error = %e, "audience measurement failed");
    }
}
