//! Reading request bodies under a size limit and a deadline.

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::error::HttpError;

/// The body's length as `Content-Length` declares it.
pub fn declared(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Collects the body, refusing more than `limit` bytes (early when
/// `Content-Length` already says so) and a body still arriving at `deadline`.
pub async fn read(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    deadline: Instant,
) -> Result<Bytes, HttpError> {
    if declared(headers).is_some_and(|len| len > limit as u64) {
        return Err(HttpError::PayloadTooLarge { limit });
    }
    let collected = tokio::time::timeout_at(deadline, Limited::new(body, limit).collect())
        .await
        .map_err(|_| HttpError::BodyTimeout)?;
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(HttpError::PayloadTooLarge { limit })
        }
        Err(_) => Err(HttpError::BodyRead),
    }
}
