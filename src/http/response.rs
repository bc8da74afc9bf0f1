//! Response construction: the body type, JSON and text helpers, and the
//! security headers every response carries.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BodyError>;
pub type Resp = Response<Body>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// `resp` with `kept` alive until its body is dropped: sent whole, or its
/// connection closed. The body's size is kept, so a whole body still gets
/// its `Content-Length`.
pub fn holding<T: Send + Sync + Unpin + 'static>(resp: Resp, kept: T) -> Resp {
    resp.map(|body| Holding { body, _kept: kept }.boxed())
}

/// A body and something to keep until it is dropped.
struct Holding<T> {
    body: Body,
    _kept: T,
}

impl<T: Unpin> hyper::body::Body for Holding<T> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BodyError>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

fn with_type(status: StatusCode, content_type: &'static str, body: Body) -> Resp {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON answer with `application/json`.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Resp {
    json_as(status, "application/json", value)
}

/// A JSON answer with a specific media type (TAXII uses its own).
pub fn json_as(
    status: StatusCode,
    content_type: &'static str,
    value: &impl serde::Serialize,
) -> Resp {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    with_type(status, content_type, full(bytes))
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    with_type(status, "text/plain; charset=utf-8", full(body))
}

pub const CSP: &str = "default-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; object-src 'none'";
const PERMISSIONS: &str = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=(), browsing-topics=(), interest-cohort=()";

/// Adds the security headers every response carries (P56), keeping a more
/// specific value a handler already set.
pub fn add_security_headers(h: &mut HeaderMap) {
    let pairs: [(header::HeaderName, &'static str); 8] = [
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (
            header::HeaderName::from_static("permissions-policy"),
            PERMISSIONS,
        ),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in pairs {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
}
