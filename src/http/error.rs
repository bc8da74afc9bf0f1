//! Every error a request can end in, mapped to a status and a stable message
//! in one exhaustive `match`, then rendered in the dialect of the API the
//! request addressed.

use http::StatusCode;
use http::header::{self, HeaderValue};
use serde_json::json;

use super::response::{self, Resp};
use crate::service;

/// The API family a path belongs to; each renders errors its own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `/v1/...`, `/healthz` and everything else: `{"success": false, "error": "..."}`.
    Sikker,
    /// `/api/v2/...`: `{"errors":[{"detail","status","source":{"parameter"}}]}`.
    AbuseIpdb,
    /// `/taxii2/...`: TAXII 2.1 error message object.
    Taxii,
}

impl Dialect {
    pub fn for_path(path: &str) -> Self {
        if path.starts_with("/api/") {
            Self::AbuseIpdb
        } else if path.starts_with("/taxii2") {
            Self::Taxii
        } else {
            Self::Sikker
        }
    }
}

/// Why a request failed at the HTTP layer, or the service error it carried.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Service(#[from] service::Error),
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("missing Host header")]
    MissingHost,
    #[error("request path is not valid UTF-8 after percent-decoding")]
    BadPath,
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body not received within the time limit")]
    BodyTimeout,
    #[error("unsupported Content-Type; expected {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("request body could not be read")]
    BodyRead,
    #[error("the server did not finish the request within the time limit")]
    HandlerTimeout,
    #[error("authentication required")]
    Unauthenticated,
    /// A refusal a compatibility surface words itself (AbuseIPDB's 402,
    /// its 15-minute duplicate rule, its daily-limit text).
    #[error("{detail}")]
    Refused {
        status: StatusCode,
        detail: String,
        parameter: Option<&'static str>,
        retry_after: Option<u64>,
    },
    #[error("no acceptable representation; this endpoint answers {expected}")]
    NotAcceptable { expected: &'static str },
    /// The client address sent requests faster than `--rate-limit-per-ip`.
    #[error("too many requests from this address (at most {per_second} a second); retry later")]
    ClientRateLimited { per_second: u32, retry_after: u64 },
}

/// AbuseIPDB's text for any authentication failure (missing, unknown or revoked key).
pub const ABUSEIPDB_AUTH_FAILED: &str = "Authentication failed. Your API key is either missing, incorrect, or revoked. Note: The APIv2 key differs from the APIv1 key.";

struct Rendered {
    status: StatusCode,
    message: String,
    field: Option<String>,
    retry_after: Option<u64>,
    allow: Option<&'static str>,
}

impl HttpError {
    fn classify(&self) -> Rendered {
        let plain = |status: StatusCode, message: String| Rendered {
            status,
            message,
            field: None,
            retry_after: None,
            allow: None,
        };
        match self {
            Self::Service(e) => match e {
                service::Error::NotFound { what } => {
                    plain(StatusCode::NOT_FOUND, format!("{what} not found"))
                }
                service::Error::Conflict { reason } => plain(StatusCode::CONFLICT, reason.clone()),
                service::Error::Unauthenticated { reason } => {
                    plain(StatusCode::UNAUTHORIZED, reason.clone())
                }
                service::Error::Forbidden { reason } => {
                    plain(StatusCode::FORBIDDEN, reason.clone())
                }
                service::Error::Invalid { field, reason } => Rendered {
                    field: Some(field.clone()),
                    ..plain(StatusCode::BAD_REQUEST, format!("{field}: {reason}"))
                },
                service::Error::RateLimited {
                    retry_after_secs,
                    reason,
                } => Rendered {
                    retry_after: Some(*retry_after_secs),
                    ..plain(StatusCode::TOO_MANY_REQUESTS, reason.clone())
                },
                service::Error::Unavailable {
                    reason,
                    retry_after_secs,
                } => Rendered {
                    retry_after: *retry_after_secs,
                    ..plain(StatusCode::SERVICE_UNAVAILABLE, reason.clone())
                },
                service::Error::Internal { .. } => {
                    plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
                }
            },
            Self::NotFound => plain(StatusCode::NOT_FOUND, self.to_string()),
            Self::MethodNotAllowed { allow } => Rendered {
                allow: Some(allow),
                ..plain(StatusCode::METHOD_NOT_ALLOWED, self.to_string())
            },
            Self::MissingHost | Self::BadPath | Self::BodyRead => {
                plain(StatusCode::BAD_REQUEST, self.to_string())
            }
            Self::PayloadTooLarge { .. } => plain(StatusCode::PAYLOAD_TOO_LARGE, self.to_string()),
            Self::UnsupportedMediaType { .. } => {
                plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, self.to_string())
            }
            Self::BodyTimeout => plain(StatusCode::REQUEST_TIMEOUT, self.to_string()),
            Self::HandlerTimeout => plain(StatusCode::SERVICE_UNAVAILABLE, self.to_string()),
            Self::Unauthenticated => plain(StatusCode::UNAUTHORIZED, self.to_string()),
            Self::Refused {
                status,
                detail,
                parameter,
                retry_after,
            } => Rendered {
                field: parameter.map(str::to_owned),
                retry_after: *retry_after,
                ..plain(*status, detail.clone())
            },
            Self::NotAcceptable { .. } => plain(StatusCode::NOT_ACCEPTABLE, self.to_string()),
            Self::ClientRateLimited { retry_after, .. } => Rendered {
                retry_after: Some(*retry_after),
                ..plain(StatusCode::TOO_MANY_REQUESTS, self.to_string())
            },
        }
    }

    /// The AbuseIPDB rendering: 422 for invalid input (detail without the
    /// field prefix), upstream's fixed text for every authentication failure.
    fn classify_abuseipdb(&self) -> Rendered {
        let mut r = self.classify();
        match self {
            Self::Service(service::Error::Invalid { reason, .. }) => {
                r.status = StatusCode::UNPROCESSABLE_ENTITY;
                r.message.clone_from(reason);
            }
            Self::Service(service::Error::Unauthenticated { .. }) | Self::Unauthenticated => {
                r.status = StatusCode::UNAUTHORIZED;
                r.message = ABUSEIPDB_AUTH_FAILED.into();
            }
            _ => {}
        }
        r
    }

    pub fn status(&self) -> StatusCode {
        self.classify().status
    }

    /// The response for this error in `dialect`.
    pub fn into_response(self, dialect: Dialect) -> Resp {
        if let Self::Service(service::Error::Internal { detail }) = &self {
            tracing::error!(detail = %detail, "internal error");
        }
        let r = if dialect == Dialect::AbuseIpdb {
            self.classify_abuseipdb()
        } else {
            self.classify()
        };
        let mut resp = match dialect {
            // `success: false` is what the report endpoint's clients read; harmless elsewhere.
            Dialect::Sikker => {
                let mut body = json!({ "success": false, "error": r.message });
                if let Some(f) = &r.field {
                    body["field"] = json!(f);
                }
                response::json(r.status, &body)
            }
            Dialect::AbuseIpdb => {
                let mut e = json!({ "detail": r.message, "status": r.status.as_u16() });
                if let Some(f) = &r.field {
                    e["source"] = json!({ "parameter": f });
                }
                response::json(r.status, &json!({ "errors": [e] }))
            }
            Dialect::Taxii => response::json_as(
                r.status,
                "application/taxii+json;version=2.1",
                &json!({
                    "title": r.status.canonical_reason().unwrap_or("error"),
                    "description": r.message,
                    "http_status": r.status.as_u16().to_string(),
                    "error": r.message,
                }),
            ),
        };
        if let Some(secs) = r.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // HTTP requires the challenge on every 401 (RFC 9110 §11.6.1).
        if r.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sikker\""),
            );
        }
        if let Some(allow) = r.allow {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }
}
