//! The embedded web UI, served through this one handler: content types,
//! ETag/304, cache headers and the page fallback. Release builds embed
//! `assets/`; debug builds read it from disk so edits show without a rebuild.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::encoding::Coding;
use super::response::{self, Resp};

#[derive(rust_embed::RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// Serves `path` from the embedded assets; paths without a file extension
/// that match no file get `index.html` (client-side pages).
pub fn serve(path: &str, req_headers: &HeaderMap) -> Resp {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let found = Assets::get(rel).map(|f| (f, rel)).or_else(|| {
        if looks_like_asset(rel) {
            None
        } else {
            Assets::get("index.html").map(|f| (f, "index.html"))
        }
    });
    let Some((file, name)) = found else {
        return response::text(StatusCode::NOT_FOUND, "not found\n");
    };
    let mime = mime_for(name);
    let coding = Coding::of(req_headers).for_body(Some(file.data.len() as u64), &mime);
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12]));
    let etag = coding.map_or_else(|| etag.clone(), |c| c.tag(&etag));
    let mut resp = if req_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        let mut r = Response::new(response::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(response::full(file.data.into_owned()));
        if let Ok(v) = HeaderValue::from_str(&mime) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    match coding {
        Some(c) => c.apply(resp),
        None => resp,
    }
}

/// A request for a static file that does not exist gets 404; any other path
/// is a page (`/ip/203.0.113.9`, `/login`) rendered by `index.html`.
fn looks_like_asset(rel: &str) -> bool {
    const EXT: [&str; 14] = [
        "css", "js", "mjs", "map", "png", "svg", "ico", "jpg", "webp", "woff", "woff2", "json",
        "txt", "html",
    ];
    rel.starts_with("assets/")
        || rel
            .rsplit_once('.')
            .is_some_and(|(_, ext)| EXT.contains(&ext.to_ascii_lowercase().as_str()))
}

fn mime_for(name: &str) -> String {
    let m = Assets::get(name)
        .map(|f| f.metadata.mimetype().to_owned())
        .unwrap_or_default();
    if m.starts_with("text/") || m == "application/javascript" || m == "image/svg+xml" {
        format!("{m}; charset=utf-8")
    } else if m.is_empty() {
        "application/octet-stream".to_owned()
    } else {
        m
    }
}
