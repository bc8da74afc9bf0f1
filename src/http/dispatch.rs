//! One request from arrival to answer: host and path checks, routing, body
//! limit, deadline, handler, security headers and the access-log line.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::auth::{self, Principal};
use super::encoding::Coding;
use super::error::{Dialect, HttpError};
use super::response::{self, Resp};
use super::router::{self, Matched, Route};
use super::{HttpOptions, api, body, client_ip, compat, per_ip, quota_headers, taxii, ui};
use crate::service::Services;
use crate::service::apikeys::ApiPrincipal;
use crate::store::sensors::Sensor;

/// Shared by every connection.
#[derive(Debug)]
pub struct HttpState {
    pub services: Arc<Services>,
    pub opts: HttpOptions,
    /// Public web lookups per client network.
    pub ui_limiter: api::ui_api::Limiter,
    /// Requests per client address (`--rate-limit-per-ip`).
    pub rate_limiter: per_ip::RateTable,
}

/// Client addresses whose request-rate buckets are kept at once (about
/// 100 bytes each); beyond it idle and least recently seen ones are dropped.
pub const RATE_TABLE_CAPACITY: usize = 100_000;

impl HttpState {
    pub fn new(services: Arc<Services>, opts: HttpOptions) -> Self {
        let rate_limiter =
            per_ip::RateTable::new(opts.rate_per_ip, opts.rate_burst, RATE_TABLE_CAPACITY);
        Self {
            services,
            opts,
            ui_limiter: api::ui_api::Limiter::default(),
            rate_limiter,
        }
    }

    /// Counts one request from `client` against its rate limit.
    fn admit(&self, client: std::net::IpAddr, path: &str) -> Result<(), HttpError> {
        // Load balancers and container health checks poll this from one address.
        if path == "/healthz" {
            return Ok(());
        }
        self.rate_limiter
            .admit(client, Instant::now().into_std())
            .map_err(|retry_after| HttpError::ClientRateLimited {
                per_second: self.opts.rate_per_ip,
                retry_after,
            })
    }
}

/// What the accept loop knows about a connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// A request whose body has been read within limits.
pub struct Ctx<'a> {
    pub state: &'a HttpState,
    pub method: Method,
    pub headers: http::HeaderMap,
    pub path: String,
    pub query: Option<String>,
    pub params: Vec<String>,
    pub body: bytes::Bytes,
    pub client: std::net::IpAddr,
    pub principal: Principal,
}

impl Ctx<'_> {
    /// The API key of a route declared `Access::ApiKey`.
    pub fn key(&self) -> Result<&ApiPrincipal, HttpError> {
        match &self.principal {
            Principal::Key(k) => Ok(k),
            _ => Err(HttpError::Unauthenticated),
        }
    }

    /// The signed-in person of a route declared `Access::Session` or `Admin`.
    pub fn session(&self) -> Result<&crate::service::sessions::SessionPrincipal, HttpError> {
        match &self.principal {
            Principal::Session(s) => Ok(s),
            _ => Err(HttpError::Unauthenticated),
        }
    }

    /// The user agent, for the session list (P04).
    pub fn user_agent(&self) -> &str {
        self.headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The sensor of a route declared `Access::Sensor`.
    pub fn sensor(&self) -> Result<&Sensor, HttpError> {
        match &self.principal {
            Principal::Sensor(s) => Ok(s),
            _ => Err(HttpError::Unauthenticated),
        }
    }
}

pub async fn dispatch(state: Arc<HttpState>, conn: ConnInfo, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let deadline = started + state.opts.limits.request_timeout;
    let method = req.method().clone();
    let version = req.version();
    let dialect = Dialect::for_path(req.uri().path());
    let coding = Coding::of(req.headers());
    let client = client_ip::resolve(conn.peer.ip(), req.headers(), &state.opts.trusted_proxies);
    let routed = state
        .admit(client, req.uri().path())
        .and_then(|()| check_host(&req))
        .and_then(|()| router::route(&method, req.uri().path()));
    let template = routed
        .as_ref()
        .map_or("(unmatched)", |m| m.route.template());

    let mut resp = match routed {
        Err(e) => e.into_response(dialect),
        Ok(matched) => run(&state, req, matched, client, deadline, dialect).await,
    };
    resp = coding.negotiate(resp);
    if method == Method::HEAD {
        *resp.body_mut() = response::empty();
    }
    response::add_security_headers(resp.headers_mut());
    tracing::info!(
        target: "sikker::access",
        method = %method,
        route = template,
        status = resp.status().as_u16(),
        ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        client = %state.opts.log_ip.render(client),
        proto = ?version,
        tls = conn.tls,
    );
    resp
}

/// HTTP/1.1 requires Host; we also refuse HTTP/1.0 requests without one so
/// that every answer (and every redirect) knows which name it serves.
fn check_host<B>(req: &Request<B>) -> Result<(), HttpError> {
    if req.uri().authority().is_some() || req.headers().contains_key(http::header::HOST) {
        Ok(())
    } else {
        Err(HttpError::MissingHost)
    }
}

/// How long a sensor batch waits for room. Short: over HTTP/2 the data
/// of a waiting stream fills the connection's flow-control window, which
/// would stall the other posts of the same sensor that hold room.
fn batch_room_wait(opts: &HttpOptions) -> std::time::Duration {
    (opts.limits.request_timeout / 2).min(std::time::Duration::from_secs(1))
}

async fn run(
    state: &HttpState,
    req: Request<Incoming>,
    matched: Matched,
    client: std::net::IpAddr,
    deadline: Instant,
    dialect: Dialect,
) -> Resp {
    let (parts, incoming) = req.into_parts();
    let route = matched.route;
    let principal = match auth::authenticate(
        &state.services,
        route.access(),
        &parts.method,
        &parts.headers,
        parts.uri.query(),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return e.into_response(dialect),
    };
    if let (auth::Access::Admin, Principal::Session(p)) = (route.access(), &principal) {
        state
            .services
            .audit(
                format!("account {} ({})", p.account, p.username),
                format!("{} {}", parts.method, route.template()),
                String::new(),
            )
            .await;
    }
    let key = match &principal {
        Principal::Key(k) => Some(k.clone()),
        _ => None,
    };
    let answered = async {
        let limit = route.body_limit(state.opts.limits.max_body_bytes);
        // A sensor batch is held until its group commits; batches in
        // flight share a memory budget, taken before the body is read.
        let _room = if route == Route::SensorEvents {
            let bytes = body::declared(&parts.headers)
                .and_then(|n| usize::try_from(n).ok())
                .map_or(limit, |n| n.min(limit));
            Some(
                state
                    .services
                    .batch_room(bytes, batch_room_wait(&state.opts))
                    .await?,
            )
        } else {
            None
        };
        let body = body::read(&parts.headers, incoming, limit, deadline).await?;
        let ctx = Ctx {
            state,
            method: parts.method,
            headers: parts.headers,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            params: matched.params,
            body,
            client,
            principal,
        };
        tokio::time::timeout_at(deadline, handle(route, ctx))
            .await
            .map_err(|_| HttpError::HandlerTimeout)?
    }
    .await;
    let mut resp = answered.unwrap_or_else(|e| e.into_response(dialect));
    // Every keyed answer, errors included, tells where the key stands.
    if let (Some(key), Some(bucket)) = (key, route.quota_bucket())
        && let Ok(q) = state.services.quota_state(&key, bucket).await
    {
        quota_headers::apply(resp.headers_mut(), &q, dialect);
    }
    resp
}

async fn handle(route: Route, ctx: Ctx<'_>) -> Result<Resp, HttpError> {
    match route {
        Route::Healthz => {
            ctx.state.services.health().await?;
            Ok(response::json(
                StatusCode::OK,
                &serde_json::json!({ "status": "ok" }),
            ))
        }
        Route::Ui => {
            let resp = ui::serve(&ctx.path, &ctx.headers);
            if resp.status() == StatusCode::OK
                && api::privacy::is_page_load(&ctx.method, &ctx.path, &ctx.headers)
            {
                api::privacy::count_page_view(&ctx).await;
            }
            Ok(resp)
        }
        Route::Check => api::check::get(ctx).await,
        Route::BulkCheckInline | Route::BulkCheck => api::check::bulk(ctx).await,
        Route::Report => api::report::single(ctx).await,
        Route::BulkReport => api::report::bulk(ctx).await,
        Route::Blacklist => api::blacklist::get(&ctx).await,
        Route::Username => api::lookup::username(ctx).await,
        Route::Email => api::lookup::email(ctx).await,
        Route::Status => api::status::get(&ctx).await,
        Route::Alerts(kind) if ctx.method == Method::POST => api::alerts::create(ctx, kind).await,
        Route::Alerts(kind) => api::alerts::list(&ctx, kind).await,
        Route::Alert(kind) => api::alerts::delete(&ctx, kind).await,
        Route::AlertDeliveries => api::alerts::deliveries(&ctx).await,
        Route::SensorEvents => api::sensor::post(ctx).await,
        Route::Register => api::account::register(&ctx).await,
        Route::Bootstrap => api::account::bootstrap(&ctx).await,
        Route::VerifyEmail => api::account::verify_email(&ctx).await,
        Route::PasswordReset => api::account::password_reset(&ctx).await,
        Route::PasswordResetConfirm => api::account::password_reset_confirm(&ctx).await,
        Route::Me => api::account::me(&ctx).await,
        Route::PasswordChange => api::account::password_change(&ctx).await,
        Route::Keys => api::account::keys(&ctx).await,
        Route::KeyRevoke => api::account::key_revoke(&ctx).await,
        Route::Login => api::session::login(&ctx).await,
        Route::Refresh => api::session::refresh(&ctx).await,
        Route::Logout => api::session::logout(&ctx).await,
        Route::Sessions => api::session::list(&ctx).await,
        Route::SessionRevoke => api::session::revoke(&ctx).await,
        Route::SessionsRevokeAll => api::session::revoke_all(&ctx).await,
        Route::AdminUsers => api::admin::users(&ctx).await,
        Route::AdminUser => api::admin::user(&ctx).await,
        Route::AdminInvites => api::admin::invite(&ctx).await,
        Route::AdminSensors => api::ui_api::sensors(&ctx).await,
        Route::AdminSensor => api::ui_api::sensor_revoke(&ctx).await,
        Route::AdminWhitelist => api::ui_api::whitelist(&ctx).await,
        Route::AdminWhitelistEntry => api::ui_api::whitelist_remove(&ctx).await,
        Route::AdminHealth => api::ui_api::health(&ctx).await,
        Route::UiIp => api::ui_api::ip(&ctx),
        Route::UiPolicy => Ok(api::ui_api::policy(&ctx)),
        Route::UiDashboard => api::ui_api::dashboard(&ctx).await,
        Route::UiReport => api::ui_api::keyed(ctx, api::ui_api::Keyed::Report).await,
        Route::UiBulkReport => api::ui_api::keyed(ctx, api::ui_api::Keyed::BulkReport).await,
        Route::UiAlerts(k) => api::ui_api::keyed(ctx, api::ui_api::Keyed::Alerts(k)).await,
        Route::UiAlert(k) => api::ui_api::keyed(ctx, api::ui_api::Keyed::Alert(k)).await,
        Route::UiDeliveries => api::ui_api::keyed(ctx, api::ui_api::Keyed::Deliveries).await,
        Route::AbuseCheck
        | Route::AbuseReports
        | Route::AbuseBlacklist
        | Route::AbuseReport
        | Route::AbuseCheckBlock
        | Route::AbuseBulkReport
        | Route::AbuseClearAddress => compat::abuseipdb::handle(route, ctx).await,
        Route::TaxiiRoot => taxii::discovery(&ctx),
        Route::TaxiiCollections => taxii::collections(&ctx),
        Route::TaxiiCollection => taxii::collection(&ctx),
        Route::TaxiiObjects => taxii::objects(&ctx).await,
        Route::TaxiiObject => taxii::object(&ctx).await,
        Route::TaxiiVersions => taxii::versions(&ctx).await,
        Route::TaxiiManifest => taxii::manifest(&ctx).await,
        Route::Privacy(r) => api::privacy::handle(r, ctx).await,
    }
}
