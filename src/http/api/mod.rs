//! Handlers of the SikkerAPI-compatible surface (`/v1/key/…`) and the
//! sensor API (`/v1/sensor/…`), one module per resource.

pub mod account;
pub mod admin;
pub mod alerts;
pub mod blacklist;
pub mod check;
pub mod lookup;
pub mod privacy;
pub mod report;
pub mod sensor;
pub mod session;
pub mod status;
pub mod ui_api;

use http::header;

use super::dispatch::Ctx;
use super::error::HttpError;

/// Runs CPU-heavy work of a request (building a long block list, parsing
/// a large batch) on the blocking pool, so the runtime's few workers keep
/// serving the other connections meanwhile.
pub async fn off_reactor<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        HttpError::Service(crate::service::Error::Internal {
            detail: format!("request work did not finish: {e}"),
        })
    })
}

/// The media type of the body, lower-cased, without parameters.
pub fn media_type(ctx: &Ctx<'_>) -> String {
    ctx.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

pub fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

pub fn require_json(ctx: &Ctx<'_>) -> Result<(), HttpError> {
    let m = media_type(ctx);
    if is_json(&m) {
        Ok(())
    } else {
        Err(HttpError::UnsupportedMediaType {
            expected: "application/json",
        })
    }
}

/// The body as UTF-8 text.
pub fn utf8<'a>(ctx: &'a Ctx<'_>) -> Result<&'a str, HttpError> {
    utf8_text(&ctx.body)
}

/// `body` as UTF-8 text; a 400 naming the body otherwise.
pub fn utf8_text(body: &[u8]) -> Result<&str, HttpError> {
    std::str::from_utf8(body).map_err(|_| super::query::invalid("body", "is not valid UTF-8"))
}

/// The JSON body as `T`; a body that is not JSON, or does not have the
/// expected shape, is a 400 naming the problem.
pub fn json_body<T: serde::de::DeserializeOwned>(ctx: &Ctx<'_>) -> Result<T, HttpError> {
    require_json(ctx)?;
    serde_json::from_slice(&ctx.body).map_err(|e| {
        super::query::invalid("body", &format!("is not valid JSON for this request: {e}"))
    })
}

/// A numeric path parameter.
pub fn id_param(ctx: &Ctx<'_>, name: &str) -> Result<u64, HttpError> {
    ctx.params
        .first()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| super::query::invalid(name, "must be a number"))
}
