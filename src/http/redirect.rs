//! The optional plain-HTTP listener that answers everything with 308 to HTTPS.

use std::net::SocketAddr;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use super::response::{self, Resp};

/// Where a plain-HTTP request should go: the public URL when configured,
/// else the same host on the HTTPS port.
pub fn target<B>(req: &Request<B>, https_port: u16, public_url: Option<&str>) -> Option<String> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    if let Some(base) = public_url {
        return Some(format!("{base}{path}"));
    }
    let host = req.uri().host().map(str::to_owned).or_else(|| {
        let h = req.headers().get(header::HOST)?.to_str().ok()?;
        let auth: http::uri::Authority = h.parse().ok()?;
        Some(auth.host().to_owned())
    })?;
    if host.contains(['/', '@', ' ']) {
        return None;
    }
    Some(if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    })
}

pub fn answer<B>(req: &Request<B>, https: SocketAddr, public_url: Option<&str>) -> Resp {
    let mut resp =
        match target(req, https.port(), public_url).and_then(|t| HeaderValue::from_str(&t).ok()) {
            Some(loc) => {
                let mut r = Response::new(response::empty());
                *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
                r.headers_mut().insert(header::LOCATION, loc);
                r
            }
            None => response::json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": "missing or invalid Host header" }),
            ),
        };
    response::add_security_headers(resp.headers_mut());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let req = Request::builder()
            .uri("/v1/x?a=1")
            .header("host", "example.org:80")
            .body(())
            .unwrap();
        assert_eq!(
            target(&req, 8443, None).unwrap(),
            "https://example.org:8443/v1/x?a=1"
        );
        assert_eq!(
            target(&req, 443, None).unwrap(),
            "https://example.org/v1/x?a=1"
        );
        assert_eq!(
            target(&req, 443, Some("https://s.example")).unwrap(),
            "https://s.example/v1/x?a=1"
        );
        let req = Request::builder().uri("/").body(()).unwrap();
        assert!(target(&req, 443, None).is_none());
    }
}
