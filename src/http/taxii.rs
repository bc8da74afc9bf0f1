//! The TAXII 2.1 surface under `/taxii2/`: discovery (which is also the one
//! API root, as upstream hangs collections directly below it), collections,
//! objects, one object (by STIX id, or by IP as a STIX bundle), versions
//! and manifest. Every answer is `application/taxii+json;version=2.1`;
//! errors are TAXII error messages, rendered in `error.rs`.

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::dispatch::Ctx;
use super::error::HttpError;
use super::query::invalid;
use super::response::{self, Resp};
use crate::domain::IpKey;
use crate::service::Error;
use crate::service::stix::{self, IDENTITY_TIME};
use crate::service::taxii::{
    COLLECTION_ID, Cursor, DEFAULT_LIMIT, Filter, Item, MAX_LIMIT, Page, PageRequest,
};

pub const TAXII_TYPE: &str = "application/taxii+json;version=2.1";
const STIX_TYPE: &str = "application/stix+json;version=2.1";
const ROOT: &str = "/taxii2/";

fn answer(value: &Value) -> Resp {
    response::json_as(StatusCode::OK, TAXII_TYPE, value)
}

/// Whether the client accepts what every TAXII endpoint answers. Generic
/// JSON and wildcards are fine: the official CLI sends
/// `Accept: application/json` on every request.
fn acceptable(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut version = None;
            let mut q_zero = false;
            for p in parts {
                if let Some((k, v)) = p.split_once('=') {
                    let v = v.trim().trim_matches('"');
                    match k.trim().to_ascii_lowercase().as_str() {
                        "version" => version = Some(v.to_owned()),
                        "q" => q_zero = v.parse::<f32>().is_ok_and(|q| q <= 0.0),
                        _ => {}
                    }
                }
            }
            !q_zero
                && match media.as_str() {
                    "*/*" | "application/*" | "application/json" => true,
                    "application/taxii+json" | "application/stix+json" => {
                        version.as_deref().is_none_or(|v| v == "2.1")
                    }
                    _ => false,
                }
        })
}

fn negotiate(ctx: &Ctx<'_>) -> Result<(), HttpError> {
    if acceptable(&ctx.headers) {
        Ok(())
    } else {
        Err(HttpError::NotAcceptable {
            expected: TAXII_TYPE,
        })
    }
}

fn collection_object() -> Value {
    json!({
        "id": COLLECTION_ID,
        "title": "SikkerNet Threat Intelligence",
        "description": "IP reputation indicators from SikkerNet honeypot network",
        "can_read": true,
        "can_write": false,
        "media_types": [STIX_TYPE],
    })
}

fn check_collection(ctx: &Ctx<'_>) -> Result<(), HttpError> {
    if ctx.params.first().map(String::as_str) == Some(COLLECTION_ID) {
        Ok(())
    } else {
        Err(Error::not_found("collection").into())
    }
}

/// `GET /taxii2/`: the discovery document, carrying the API root's members
/// too (`versions`, `max_content_length`) because the root is the same URL.
pub fn discovery(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    negotiate(ctx)?;
    Ok(answer(&json!({
        "title": "SikkerNet TAXII Server",
        "description": "TAXII 2.1 interface for SikkerNet threat intelligence",
        "default": format!("{ROOT}collections/{COLLECTION_ID}/"),
        "api_roots": [ROOT],
        "versions": [TAXII_TYPE],
        // Nothing can be posted: every collection is read-only.
        "max_content_length": 0,
    })))
}

pub fn collections(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    negotiate(ctx)?;
    Ok(answer(&json!({ "collections": [collection_object()] })))
}

pub fn collection(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    negotiate(ctx)?;
    check_collection(ctx)?;
    Ok(answer(&collection_object()))
}

/// The `next` token: a feed position, versioned so its form can change.
fn encode_cursor(c: Cursor) -> String {
    format!("v1.{}.{}", c.0, c.1)
}

fn decode_cursor(s: &str) -> Option<Cursor> {
    let rest = s.trim().strip_prefix("v1.")?;
    let (m, q) = rest.split_once('.')?;
    Some((m.parse().ok()?, q.parse().ok()?))
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_versions(values: &[String]) -> Result<Option<Vec<i64>>, HttpError> {
    let mut exact = Vec::new();
    for v in values {
        match v.as_str() {
            "last" | "first" | "all" => return Ok(None),
            t => {
                let ns = stix::parse_timestamp(t).ok_or_else(|| {
                    invalid(
                        "match[version]",
                        "must be last, first, all or RFC 3339 timestamps",
                    )
                })?;
                // Versions have millisecond precision; a finer one matches nothing.
                if ns.rem_euclid(1_000_000) == 0
                    && let Ok(ms) = i64::try_from(ns / 1_000_000)
                {
                    exact.push(ms);
                }
            }
        }
    }
    Ok(Some(exact))
}

/// The query of an objects, object, versions or manifest request.
pub(crate) fn page_request(query: Option<&str>) -> Result<PageRequest, HttpError> {
    let mut req = PageRequest {
        filter: Filter::default(),
        added_after_ns: None,
        after: None,
        offset: 0,
        limit: DEFAULT_LIMIT,
    };
    let mut versions: Option<Vec<String>> = None;
    let extend = |slot: &mut Option<Vec<String>>, v: &str| {
        slot.get_or_insert_with(Vec::new).extend(list(v));
    };
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "match[id]" => extend(&mut req.filter.ids, &v),
            "match[type]" => extend(&mut req.filter.types, &v),
            "match[version]" => extend(&mut versions, &v),
            "match[spec_version]" => extend(&mut req.filter.spec_versions, &v),
            m if m.starts_with("match[") => {
                return Err(invalid(
                    m,
                    "unsupported filter; supported: match[id], match[type], match[version], match[spec_version]",
                ));
            }
            "added_after" => {
                req.added_after_ns = Some(stix::parse_timestamp(&v).ok_or_else(|| {
                    invalid(
                        "added_after",
                        "must be an RFC 3339 timestamp such as 2026-03-01T00:00:00.000Z",
                    )
                })?);
            }
            "limit" => {
                req.limit = v
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            "limit",
                            &format!("must be an integer from 1 to {MAX_LIMIT}"),
                        )
                    })?;
            }
            "next" => {
                req.after = Some(
                    decode_cursor(&v)
                        .ok_or_else(|| invalid("next", "is not a cursor this server issued"))?,
                );
            }
            "offset" => {
                req.offset = v
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| invalid("offset", "must be a non-negative integer"))?
                    .into();
            }
            _ => {}
        }
    }
    if let Some(v) = versions {
        req.filter.versions = parse_versions(&v)?;
    }
    Ok(req)
}

fn set_header(h: &mut HeaderMap, name: &'static str, v: &str) {
    if let Ok(v) = HeaderValue::from_str(v) {
        h.insert(HeaderName::from_static(name), v);
    }
}

/// `X-TAXII-Date-Added-First/Last` for the items of an answer.
fn date_added_headers(resp: &mut Resp, items: &[Item]) {
    if let (Some(first), Some(last)) = (items.first(), items.last()) {
        let h = resp.headers_mut();
        set_header(
            h,
            "x-taxii-date-added-first",
            &stix::timestamp(first.date_added),
        );
        set_header(
            h,
            "x-taxii-date-added-last",
            &stix::timestamp(last.date_added),
        );
    }
}

fn envelope(page: &Page) -> Resp {
    let mut body = json!({ "more": page.more });
    if let Some(n) = page.next {
        body["next"] = json!(encode_cursor(n));
    }
    body["objects"] = page.items.iter().map(|i| i.object.clone()).collect();
    let mut resp = answer(&body);
    date_added_headers(&mut resp, &page.items);
    resp
}

async fn read(ctx: &Ctx<'_>, req: PageRequest, charge: bool) -> Result<Page, HttpError> {
    let who = ctx.key()?.clone();
    Ok(ctx.state.services.taxii_page(&who, req, charge).await?)
}

/// `GET …/objects/`: an envelope of STIX objects.
pub async fn objects(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    negotiate(ctx)?;
    check_collection(ctx)?;
    let req = page_request(ctx.query.as_deref())?;
    Ok(envelope(&read(ctx, req, true).await?))
}

/// `GET …/manifest/`: id, date_added, version and media type of each object.
pub async fn manifest(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    negotiate(ctx)?;
    check_collection(ctx)?;
    let req = page_request(ctx.query.as_deref())?;
    let page = read(ctx, req, false).await?;
    let records: Vec<Value> = page
        .items
        .iter()
        .map(|i| {
            json!({
                "id": i.object["id"],
                "date_added": stix::timestamp(i.date_added),
                "version": stix::timestamp(i.version),
                "media_type": STIX_TYPE,
            })
        })
        .collect();
    let mut body = json!({ "more": page.more });
    if let Some(n) = page.next {
        body["next"] = json!(encode_cursor(n));
    }
    body["objects"] = json!(records);
    let mut resp = answer(&body);
    date_added_headers(&mut resp, &page.items);
    Ok(resp)
}

/// The request for one object: an IP stands for its indicator.
fn one_object(ctx: &Ctx<'_>) -> Result<(PageRequest, Option<IpKey>), HttpError> {
    let raw = ctx.params.get(1).map_or("", String::as_str);
    let mut req = page_request(ctx.query.as_deref())?;
    let ip = raw.parse::<IpKey>().ok();
    let id = match ip {
        Some(ip) => stix::indicator_id(ip),
        None => raw.to_owned(),
    };
    req.filter.ids = Some(vec![id]);
    req.after = None;
    req.offset = 0;
    req.limit = MAX_LIMIT;
    Ok((req, ip))
}

fn not_found() -> HttpError {
    Error::not_found("object").into()
}

/// `GET …/objects/{id}/`: an envelope with the object (all versions the
/// filters allow); `GET …/objects/{ip}/`: the IP's indicator and its
/// producer as a STIX bundle, as the official CLI expects.
pub async fn object(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    negotiate(ctx)?;
    check_collection(ctx)?;
    let (req, ip) = one_object(ctx)?;
    let page = read(ctx, req, true).await?;
    if page.items.is_empty() {
        return Err(not_found());
    }
    match ip {
        None => Ok(envelope(&page)),
        Some(ip) => {
            let version = page.items.last().map_or(IDENTITY_TIME, |i| i.version);
            let mut objects = vec![stix::identity()];
            objects.extend(page.items.iter().map(|i| i.object.clone()));
            let mut resp = answer(&stix::bundle(ip, version, &objects));
            date_added_headers(&mut resp, &page.items);
            Ok(resp)
        }
    }
}

/// `GET …/objects/{id}/versions/`: the versions held (one: the current).
pub async fn versions(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    negotiate(ctx)?;
    check_collection(ctx)?;
    let (req, _) = one_object(ctx)?;
    let page = read(ctx, req, false).await?;
    if page.items.is_empty() {
        return Err(not_found());
    }
    let versions: Vec<String> = page
        .items
        .iter()
        .map(|i| stix::timestamp(i.version))
        .collect();
    let mut resp = answer(&json!({ "more": false, "versions": versions }));
    date_added_headers(&mut resp, &page.items);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(v: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        acceptable(&h)
    }

    #[test]
    fn negotiation() {
        assert!(acceptable(&HeaderMap::new()));
        assert!(accepts("application/json"));
        assert!(accepts("*/*"));
        assert!(accepts("application/taxii+json;version=2.1"));
        assert!(accepts("application/taxii+json; version=\"2.1\""));
        assert!(accepts("application/stix+json;version=2.1"));
        assert!(accepts("application/taxii+json"));
        assert!(accepts("text/html, application/json;q=0.5"));
        assert!(!accepts("application/taxii+json;version=2.0"));
        assert!(!accepts("text/html"));
        assert!(!accepts("application/json;q=0"));
    }

    #[test]
    fn cursors_and_queries() {
        assert_eq!(decode_cursor(&encode_cursor((-5, 7))), Some((-5, 7)));
        assert_eq!(decode_cursor("v2.1.2"), None);
        assert_eq!(decode_cursor("v1.x.2"), None);
        let r = page_request(Some(
            "limit=5&match[type]=indicator,identity&match[version]=2026-03-21T12:00:00.123Z&added_after=2026-03-21T12:00:00Z",
        ))
        .unwrap();
        assert_eq!(r.limit, 5);
        assert_eq!(r.filter.types.as_ref().unwrap().len(), 2);
        assert_eq!(r.filter.versions, Some(vec![1_774_094_400_123]));
        assert_eq!(r.added_after_ns, Some(1_774_094_400_000_000_000));
        assert!(
            page_request(Some("match[version]=all"))
                .unwrap()
                .filter
                .versions
                .is_none()
        );
        assert!(page_request(Some("limit=0")).is_err());
        assert!(page_request(Some("limit=1001")).is_err());
        assert!(page_request(Some("added_after=yesterday")).is_err());
        assert!(page_request(Some("match[foo]=1")).is_err());
        assert!(page_request(Some("next=abc")).is_err());
    }
}
