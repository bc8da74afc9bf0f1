//! `GET /v1/key/blacklist`: JSON, plaintext, CSV, and ready-to-load `ipset`
//! and `nftables` files, optionally sized (`maxEntries`, `collapse`,
//! `ipv6Prefix`; see docs/blocklists.md).

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderValue};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use super::super::dispatch::Ctx;
use super::super::encoding::Coding;
use super::super::error::HttpError;
use super::super::query::{Query, invalid};
use super::super::response::{self, Resp};
use super::off_reactor;
use crate::domain::{Protocol, Severity};
use crate::geoip::{Brief, GeoDbs};
use crate::service::blockshape::{Shape, ShapedEntry};
use crate::service::list_room::ListRoom;
use crate::service::quotas::Bucket;
use crate::service::reputation::{Blocklist, BlocklistFilter, Ordered};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Plain,
    Csv,
    Ipset,
    Nft,
}

/// A set or table name safe to paste into ipset/nft files.
fn set_name(q: &Query, param: &str, default: &str) -> Result<String, HttpError> {
    let n = q.get(param).unwrap_or(default).trim().to_owned();
    if n.is_empty()
        || n.len() > 24
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            param,
            "must be 1 to 24 letters, digits, '_' or '-'",
        ));
    }
    Ok(n)
}

fn asn_list(q: &Query, name: &str) -> Result<Vec<String>, HttpError> {
    q.list(name)
        .into_iter()
        .map(|a| {
            let digits = a.trim_start_matches(['A', 'S', 'a', 's']);
            if !digits.is_empty()
                && digits.len() <= 10
                && digits.bytes().all(|b| b.is_ascii_digit())
            {
                Ok(digits.to_owned())
            } else {
                Err(invalid(
                    name,
                    "must be comma-separated AS numbers such as AS12345 or 12345",
                ))
            }
        })
        .collect()
}

fn country_list(q: &Query, name: &str) -> Result<Vec<String>, HttpError> {
    q.list(name)
        .into_iter()
        .map(|c| {
            if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) {
                Ok(c.to_ascii_uppercase())
            } else {
                Err(invalid(
                    name,
                    "must be comma-separated ISO 3166-1 alpha-2 codes such as CN,RU",
                ))
            }
        })
        .collect()
}

/// `maxEntries`, `collapse` and `ipv6Prefix`; shared with the AbuseIPDB
/// dialect, which renders the same errors its own way.
pub fn shape_of(
    get: impl Fn(&str) -> Option<String>,
    flag: impl Fn(&str) -> Result<bool, HttpError>,
) -> Result<Shape, HttpError> {
    let number = |name: &str, range: std::ops::RangeInclusive<u64>, strip_slash: bool| {
        let Some(v) = get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        else {
            return Ok(None);
        };
        let digits = if strip_slash {
            v.strip_prefix('/').unwrap_or(&v)
        } else {
            &v
        };
        digits
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    name,
                    &format!(
                        "must be an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )
            })
    };
    let max_entries = number("maxEntries", 1..=Shape::MAX_ENTRIES, false)?
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let ipv6_prefix =
        number("ipv6Prefix", Shape::IPV6_PREFIX, true)?.and_then(|n| u8::try_from(n).ok());
    Ok(Shape {
        max_entries,
        collapse: flag("collapse")?,
        ipv6_prefix,
    })
}

/// The response format: `plaintext=true` or `format=`.
fn format_of(q: &Query) -> Result<Format, HttpError> {
    Ok(if q.bool("plaintext", false)? {
        Format::Plain
    } else {
        match q
            .get("format")
            .map(|f| f.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("" | "json") => Format::Json,
            Some("plain" | "plaintext" | "txt") => Format::Plain,
            Some("csv") => Format::Csv,
            Some("ipset") => Format::Ipset,
            Some("nft" | "nftables") => Format::Nft,
            Some(_) => {
                return Err(invalid(
                    "format",
                    "must be json, plaintext, csv, ipset or nft",
                ));
            }
        }
    })
}

pub async fn get(ctx: &Ctx<'_>) -> Result<Resp, HttpError> {
    let q = Query::parse(ctx.query.as_deref());
    let who = ctx.key()?.clone();
    let cap =
        usize::try_from(ctx.state.services.tiers.get(&who.tier).blacklist).unwrap_or(usize::MAX);
    let mut protocols = 0_u16;
    for p in q.list("protocols") {
        protocols |= p
            .parse::<Protocol>()
            .map_err(|()| invalid("protocols", &format!("unknown protocol '{p}'")))?
            .bit();
    }
    let ip_version = match q.get("ipVersion").map_or("mixed", str::trim) {
        "4" => Some(4),
        "6" => Some(6),
        "" | "mixed" => None,
        _ => return Err(invalid("ipVersion", "must be 4, 6 or mixed")),
    };
    let min_severity = match q
        .get("minSeverity")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => Some(
            s.parse::<Severity>()
                .map_err(|()| invalid("minSeverity", "must be very_high, high, medium or low"))?,
        ),
    };
    let format = format_of(&q)?;
    let shape = shape_of(|n| q.get(n).map(str::to_owned), |n| q.bool(n, false))?;
    let filter = BlocklistFilter {
        score_minimum: u8::try_from(q.uint("scoreMinimum", 1, 100)?.unwrap_or(50)).unwrap_or(50),
        limit: q
            .uint("limit", 1, u64::MAX)?
            .map_or(cap, |l| usize::try_from(l).unwrap_or(cap).min(cap)),
        ip_version,
        protocols,
        min_severity,
        only_countries: country_list(&q, "onlyCountries")?,
        except_countries: country_list(&q, "exceptCountries")?,
        only_asn: asn_list(&q, "onlyAsn")?,
        except_asn: asn_list(&q, "exceptAsn")?,
        ignore_whitelist: q.bool("ignoreWhitelist", false)?,
    };
    let names = (
        set_name(&q, "setName", "sikker_block")?,
        set_name(&q, "table", "sikker")?,
    );
    let services = &ctx.state.services;
    // Only JSON shows geolocation: looked up per chunk as the body streams.
    let dbs = services.geo.dbs().filter(|_| format == Format::Json);
    let geo_id = dbs.as_deref().map(GeoDbs::identity);
    // Over the entries in address order or in their order: either is a
    // function of the entries.
    let tag_names = names.clone();
    let coding = Coding::of(&ctx.headers);
    let tag_of = move |list: &[ShapedEntry]| {
        coding.tag(&etag(format, &tag_names, &shape, geo_id.as_deref(), list))
    };
    let wants_tag = ctx.headers.contains_key(header::IF_NONE_MATCH);
    // The list is built, tagged and made ready to send off the runtime's
    // workers (80 ms and more for a long one), one per core at a time.
    let mut room = room(ctx).await?;
    let _turn = services.list_build_turn().await?;
    let (list, full_tag) = {
        let (services, filter, dbs) = (services.clone(), filter.clone(), dbs.clone());
        let tag_of = tag_of.clone();
        off_reactor(move || -> Result<_, HttpError> {
            let list = services.blocklist(&filter, dbs.as_deref())?;
            // The same databases place merged networks, name the tag and render.
            let list =
                services.shape_blocklist(list, &shape, filter.ignore_whitelist, dbs.as_deref())?;
            let full_tag = wants_tag.then(|| tag_of(&list.entries));
            Ok((list, full_tag))
        })
        .await??
    };
    room.keep(list.held_entries());
    // A poller that already holds this exact list gets 304 and is not
    // charged: nothing is sent.
    if let Some(t) = full_tag
        .as_deref()
        .filter(|t| if_none_match(&ctx.headers, t))
    {
        return Ok(coding.apply(not_modified(t)));
    }
    // The daily budget may cut the list short; only what is sent is charged
    // (one unit per entry, whether an address or a network).
    let granted = services
        .charge_up_to(&who, Bucket::Blacklist, list.entries.len() as u64)
        .await?;
    let now = services.clock.now();
    let resp = off_reactor(move || {
        let mut list = list;
        let cut = usize::try_from(granted).unwrap_or(usize::MAX) < list.entries.len();
        list.truncate(usize::try_from(granted).unwrap_or(usize::MAX));
        let tag = match full_tag {
            Some(t) if !cut => t,
            _ => tag_of(&list.entries),
        };
        let mut resp = render(format, list, dbs, &filter, &shape, &names, now.0);
        if let Ok(v) = HeaderValue::from_str(&tag) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        resp
    })
    .await?;
    Ok(response::holding(coding.apply(resp), room))
}

/// Room for a list's entries until it is sent ([`ListRoom`]), waited
/// for at most half the request's time.
pub(crate) async fn room(ctx: &Ctx<'_>) -> Result<ListRoom, HttpError> {
    let wait = ctx.state.opts.limits.request_timeout / 2;
    Ok(ctx.state.services.list_room(wait).await?)
}

/// The response body in `format`; JSON, plaintext and CSV stream. `dbs`
/// places the addresses of a JSON list.
fn render(
    format: Format,
    list: Blocklist,
    dbs: Option<Arc<GeoDbs>>,
    filter: &BlocklistFilter,
    shape: &Shape,
    names: &(String, String),
    now_ms: i64,
) -> Resp {
    match format {
        Format::Json => {
            let meta = json_meta(list.entries.len(), filter, shape, now_ms);
            let mut writer = JsonWriter::default();
            streamed(
                "application/json",
                "{\"data\":[".to_owned(),
                list.into_ordered(true),
                ",",
                format!("],\"meta\":{meta}}}"),
                JSON_CHUNK,
                move |buf, e| writer.entry(buf, e, &e.brief(dbs.as_deref())),
            )
        }
        Format::Plain => streamed(
            "text/plain; charset=utf-8",
            String::new(),
            list.into_ordered(false),
            "",
            String::new(),
            TEXT_CHUNK,
            plain_entry,
        ),
        Format::Csv => streamed(
            "text/csv; charset=utf-8",
            CSV_HEADER.to_owned(),
            list.into_ordered(true),
            "",
            String::new(),
            TEXT_CHUNK,
            csv_entry,
        ),
        Format::Ipset => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            ipset(&list.into_sorted(), &names.0, shape.networks()),
        ),
        Format::Nft => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            nft(&list.into_sorted(), &names.1, &names.0, shape.networks()),
        ),
    }
}

/// A strong validator over what the response carries apart from the JSON
/// `generatedAt` stamp: the format, the set names, the sizing and, per
/// entry, the fields that format shows (an address list's tag does not
/// move when only a score does). Fixed-width bytes, hashed in large
/// pieces: formatting every field as text was most of a large list's cost.
/// An address's geolocation is a function of the address and the
/// databases, so `geo_id` (the databases' identity) stands for all of it.
fn etag(
    format: Format,
    names: &(String, String),
    shape: &Shape,
    geo_id: Option<&str>,
    list: &[ShapedEntry],
) -> String {
    let mut h = blake3::Hasher::new();
    h.update(
        format!(
            "{format:?}\n{}\n{}\n{shape:?}\n{}\n",
            names.0,
            names.1,
            geo_id.unwrap_or_default()
        )
        .as_bytes(),
    );
    // Each block of entries is hashed on its own and the tag covers the
    // blocks' hashes in order: the same for any split of the work, so the
    // two halves of a long list (split on a block's boundary) are hashed
    // on two threads.
    let digests = |part: &[ShapedEntry]| {
        let mut buf = Vec::new();
        let mut out = Vec::with_capacity(part.len().div_ceil(ETAG_BLOCK));
        for block in part.chunks(ETAG_BLOCK) {
            buf.clear();
            for e in block {
                etag_entry(&mut buf, format, e);
            }
            out.push(blake3::hash(&buf));
        }
        out
    };
    let (low, high) = list.split_at(list.len().div_ceil(ETAG_BLOCK) / 2 * ETAG_BLOCK);
    let (low, high) = if list.len() <= 3 * ETAG_BLOCK {
        (digests(low), digests(high))
    } else {
        crate::par::join("sikker-etag", || digests(low), || digests(high))
    };
    for d in low.iter().chain(&high) {
        h.update(d.as_bytes());
    }
    let hex = h.finalize().to_hex();
    format!("\"{}\"", &hex.as_str()[..32])
}

/// Entries hashed together in a tag: a few hundred kilobytes.
const ETAG_BLOCK: usize = 4096;

fn etag_entry(buf: &mut Vec<u8>, format: Format, e: &ShapedEntry) {
    match e.net {
        ipnet::IpNet::V4(n) => {
            buf.push(4);
            buf.extend_from_slice(&n.addr().octets());
        }
        ipnet::IpNet::V6(n) => {
            buf.push(6);
            buf.extend_from_slice(&n.addr().octets());
        }
    }
    buf.push(e.net.prefix_len());
    if matches!(format, Format::Plain | Format::Ipset | Format::Nft) {
        return;
    }
    buf.push(e.confidence);
    buf.extend_from_slice(&e.last_seen.0.to_le_bytes());
    buf.extend_from_slice(&e.sessions.to_le_bytes());
    buf.extend_from_slice(&e.protocols.to_le_bytes());
    if format != Format::Json {
        return;
    }
    let Some(geo) = &e.merged_geo else {
        buf.push(0);
        return;
    };
    buf.push(1);
    match geo.country_code {
        Some(c) => buf.extend_from_slice(c.as_str().as_bytes()),
        None => buf.extend_from_slice(b"--"),
    }
    buf.extend_from_slice(&geo.asn.map_or(u64::MAX, u64::from).to_le_bytes());
    let org = geo.as_org.as_deref().unwrap_or_default();
    buf.extend_from_slice(&org.len().to_le_bytes());
    buf.extend_from_slice(org.as_bytes());
}

/// Whether `If-None-Match` names `tag` (or is `*`), per RFC 9110 13.1.2
/// (weak comparison: a `W/` prefix is ignored).
fn if_none_match(headers: &http::HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == tag)
}

fn not_modified(tag: &str) -> Resp {
    let mut r = Resp::new(response::empty());
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    if let Ok(v) = HeaderValue::from_str(tag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

fn text(status: StatusCode, ct: &'static str, body: String) -> Resp {
    let mut r = response::text(status, body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

/// Entries rendered per body chunk of a JSON list: about 127 KB, each
/// handed to hyper and rustls as one piece. The chunk, the TLS records
/// rustls copies it into and the socket's copy of those stay within a
/// core's L2 cache (1 MiB here); 2,048-entry chunks (340 KB) did not. A
/// 1M-entry list, medians of seven `curl` downloads in 13 interleaved
/// rounds: 297–322 ms (median 304) against 300–330 ms (median 316) with
/// 2,048, and 370–394 ms of the server's CPU per list against 381–408.
/// 256-entry chunks had been slower than 2,048 (325–343 ms against
/// 313–314, three rounds): more pieces, each with its own overhead.
pub(crate) const JSON_CHUNK: usize = 768;

/// Entries per chunk of a text list (plaintext, CSV): a few kilobytes,
/// which the allocator recycles. 2,048-entry plaintext chunks were slower
/// (136–139 ms against 130–131 ms for a 1M-entry list).
pub(crate) const TEXT_CHUNK: usize = 256;

/// Entries written before the connection's task lets the worker's other
/// tasks run (half a millisecond of JSON).
const ENTRIES_PER_TURN: usize = 2048;

/// A body rendered `chunk` entries at a time as the connection asks for
/// more: the text of a large list is never held whole, only the entries
/// and one chunk. `head`, `sep`-joined entries, `tail`. Entries are
/// written as bytes (ASCII, or JSON-escaped UTF-8 names). The entries
/// after `list.first` are waited for when the body reaches them.
pub(crate) fn streamed(
    ct: &'static str,
    head: String,
    list: impl Into<Ordered>,
    sep: &'static str,
    tail: String,
    chunk: usize,
    render: impl FnMut(&mut Vec<u8>, &ShapedEntry) + Send + Sync + 'static,
) -> Resp {
    let Ordered { first, rest } = list.into();
    let state = Chunks {
        head: Some(head),
        tail: Some(tail),
        entries: first.into_iter(),
        rest,
        sep: sep.as_bytes(),
        started: false,
        size: 0,
        per_chunk: chunk.max(1),
        since_turn: 0,
        render,
    };
    let chunks = futures_util::stream::unfold(state, |mut c| async move {
        // Other connections served by this worker get their turn: a long
        // list is otherwise written for as long as the socket takes it.
        if c.since_turn >= ENTRIES_PER_TURN {
            c.since_turn = 0;
            tokio::task::yield_now().await;
        }
        if c.entries.len() == 0
            && let Some(rest) = c.rest.take()
        {
            match rest.await {
                Ok(rest) => c.entries = rest.into_iter(),
                Err(e) => {
                    // The body ends short: the client sees a cut
                    // transfer, not a shorter list.
                    tracing::error!(error = %e, "sorting a block list failed");
                    c.tail = None;
                    return Some((Err(response::BodyError::from(e)), c));
                }
            }
        }
        let frame = c.chunk()?;
        Some((Ok(frame), c))
    });
    let body = StreamBody::new(chunks).boxed();
    let mut r = Resp::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

/// The state of a streamed body.
struct Chunks<R> {
    head: Option<String>,
    tail: Option<String>,
    entries: std::vec::IntoIter<ShapedEntry>,
    rest: Option<tokio::task::JoinHandle<Vec<ShapedEntry>>>,
    sep: &'static [u8],
    /// Whether an entry was written (the next one is preceded by `sep`).
    started: bool,
    /// Capacity for the next chunk, from the one before, so a chunk is
    /// not copied as it grows.
    size: usize,
    /// Entries per chunk.
    per_chunk: usize,
    /// Entries written since the worker's other tasks last had a turn.
    since_turn: usize,
    render: R,
}

impl<R: FnMut(&mut Vec<u8>, &ShapedEntry)> Chunks<R> {
    /// The next chunk of the entries at hand, or the tail after them.
    fn chunk(&mut self) -> Option<Frame<Bytes>> {
        let mut buf = Vec::with_capacity(self.size);
        if let Some(head) = self.head.take() {
            buf.extend_from_slice(head.as_bytes());
        }
        for e in self.entries.by_ref().take(self.per_chunk) {
            if self.started {
                buf.extend_from_slice(self.sep);
            }
            self.started = true;
            (self.render)(&mut buf, &e);
            self.since_turn += 1;
        }
        self.size = self.size.max(buf.len() + buf.len() / 8);
        if buf.is_empty() {
            buf = self.tail.take()?.into_bytes();
        }
        Some(Frame::data(Bytes::from(buf)))
    }
}

fn json_meta(count: usize, f: &BlocklistFilter, shape: &Shape, now_ms: i64) -> Value {
    let mut meta = json!({"generatedAt": now_ms, "scoreMinimum": f.score_minimum, "limit": f.limit, "count": count});
    if *shape != Shape::default() {
        meta["maxEntries"] = json!(shape.max_entries);
        meta["collapse"] = json!(shape.collapse);
        meta["ipv6Prefix"] = json!(shape.ipv6_prefix);
    }
    meta
}

/// Writes JSON entries. Most entries of a list share their protocols:
/// the text of the last set written is kept.
#[derive(Default)]
struct JsonWriter {
    protocols: Option<(u16, Vec<u8>)>,
}

impl JsonWriter {
    /// One entry, written directly (keys in the order serde_json's map
    /// gives them): a `json!` value per entry allocated a dozen times,
    /// and `write!` formatting was a third of a large list's CPU.
    fn entry(&mut self, buf: &mut Vec<u8>, e: &ShapedEntry, geo: &Brief<'_>) {
        buf.reserve(192 + geo.as_org.map_or(0, str::len));
        buf.extend_from_slice(b"{\"asn\":");
        match geo.asn {
            Some(a) => {
                buf.push(b'"');
                push_int(buf, a);
                buf.push(b'"');
            }
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b",\"asnOrg\":");
        json_opt_str(buf, geo.as_org);
        buf.extend_from_slice(b",\"confidenceLevel\":");
        push_int(buf, e.confidence);
        buf.extend_from_slice(b",\"countryCode\":");
        push_country(buf, geo.country_code);
        // Addresses and networks need no escaping.
        buf.extend_from_slice(b",\"ip\":\"");
        push_entry(buf, e);
        buf.extend_from_slice(b"\",\"lastSeen\":");
        push_int(buf, e.last_seen.0);
        buf.extend_from_slice(b",\"protocols\":[");
        match &self.protocols {
            Some((bits, text)) if *bits == e.protocols => buf.extend_from_slice(text),
            _ => {
                let mut text = Vec::new();
                push_protocols(&mut text, e.protocols, b"\"", b",");
                buf.extend_from_slice(&text);
                self.protocols = Some((e.protocols, text));
            }
        }
        buf.extend_from_slice(b"],\"sessions\":");
        push_int(buf, e.sessions);
        buf.push(b'}');
    }
}

/// A JSON string or `null`.
fn json_opt_str(buf: &mut Vec<u8>, s: Option<&str>) {
    let Some(s) = s else {
        buf.extend_from_slice(b"null");
        return;
    };
    buf.push(b'"');
    if needs_escape(s.as_bytes()) {
        // Bytes of multi-byte characters are never below 0x80.
        for b in s.bytes() {
            match b {
                b'"' => buf.extend_from_slice(b"\\\""),
                b'\\' => buf.extend_from_slice(b"\\\\"),
                b if b < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    buf.extend_from_slice(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 0xf)],
                    ]);
                }
                b => buf.push(b),
            }
        }
    } else {
        buf.extend_from_slice(s.as_bytes());
    }
    buf.push(b'"');
}

/// Whether `s` holds a byte JSON escapes (a control character, `"` or
/// `\\`). Eight bytes at a time: most names need nothing, and checking
/// them byte by byte was a fifth of writing a JSON list entry.
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of the result is set where `x` has a
    // byte below `n` (exact for bytes below 0x80, which is all that can
    // match here; bytes of multi-byte characters are never below 0x80).
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let mut b = [0_u8; 8];
        b.copy_from_slice(w);
        let x = u64::from_le_bytes(b);
        if below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            != 0
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// A country code as a JSON string, or `null`.
pub(crate) fn push_country(buf: &mut Vec<u8>, code: Option<crate::geoip::CountryCode>) {
    match code {
        Some(c) => {
            let [a, b] = c.to_bytes();
            buf.extend_from_slice(&[b'"', a, b, b'"']);
        }
        None => buf.extend_from_slice(b"null"),
    }
}

pub(crate) fn push_int(buf: &mut Vec<u8>, n: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The entry as its `Display` writes it; an address without the
/// formatting machinery (most of a list: that machinery was a fifth of a
/// plaintext list's CPU).
pub(crate) fn push_entry(buf: &mut Vec<u8>, e: &ShapedEntry) {
    match e.net {
        ipnet::IpNet::V4(n) if e.is_single() => push_ipv4(buf, n.addr().octets()),
        // The IPv4-mapped and -compatible forms are left to `Display`.
        ipnet::IpNet::V6(n) if e.is_single() && n.addr().segments()[..5] != [0; 5] => {
            push_ipv6(buf, n.addr().segments());
        }
        _ => buf.extend_from_slice(e.to_string().as_bytes()),
    }
}

/// Dotted decimal, composed on the stack and copied once.
fn push_ipv4(buf: &mut Vec<u8>, octets: [u8; 4]) {
    let mut out = [0_u8; 15];
    let mut n = 0;
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            out[n] = b'.';
            n += 1;
        }
        let (h, t, u) = (o / 100, o / 10 % 10, o % 10);
        if h > 0 {
            out[n] = b'0' + h;
            n += 1;
        }
        if o >= 10 {
            out[n] = b'0' + t;
            n += 1;
        }
        out[n] = b'0' + u;
        n += 1;
    }
    buf.extend_from_slice(&out[..n]);
}

/// RFC 5952 text of an address: lower-case hexadecimal groups without
/// leading zeros, the longest run of two or more zero groups (the first
/// of equal runs) written `::`. Composed on the stack and copied once.
fn push_ipv6(buf: &mut Vec<u8>, g: [u16; 8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let (mut run, mut best) = ((0, 0), (0, 0));
    for (i, v) in g.iter().enumerate() {
        if *v == 0 {
            if run.1 == 0 {
                run.0 = i;
            }
            run.1 += 1;
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run.1 = 0;
        }
    }
    let skip = if best.1 >= 2 { best } else { (8, 0) };
    let mut out = [0_u8; 39];
    let mut n = 0;
    let mut i = 0;
    while i < 8 {
        if i == skip.0 {
            out[n] = b':';
            out[n + 1] = b':';
            n += 2;
            i += skip.1;
            continue;
        }
        if i > 0 && i != skip.0 + skip.1 {
            out[n] = b':';
            n += 1;
        }
        let v = g[i];
        let digits = (16 - v.leading_zeros()).div_ceil(4).max(1);
        for d in (0..digits).rev() {
            out[n] = HEX[usize::from((v >> (4 * d)) & 0xf)];
            n += 1;
        }
        i += 1;
    }
    buf.extend_from_slice(&out[..n]);
}

/// The names of the protocols in `bits`, each quoted with `quote`, joined
/// by `sep`.
fn push_protocols(buf: &mut Vec<u8>, bits: u16, quote: &[u8], sep: &[u8]) {
    let mut first = true;
    for p in Protocol::ALL.iter().filter(|p| bits & p.bit() != 0) {
        if !first {
            buf.extend_from_slice(sep);
        }
        first = false;
        buf.extend_from_slice(quote);
        buf.extend_from_slice(p.as_str().as_bytes());
        buf.extend_from_slice(quote);
    }
}

pub(crate) fn plain_entry(buf: &mut Vec<u8>, e: &ShapedEntry) {
    push_entry(buf, e);
    buf.push(b'\n');
}

const CSV_HEADER: &str = "ip,confidence,last_seen,sessions,protocols\n";

fn csv_entry(buf: &mut Vec<u8>, e: &ShapedEntry) {
    push_entry(buf, e);
    buf.push(b',');
    push_int(buf, e.confidence);
    buf.push(b',');
    buf.extend_from_slice(e.last_seen.rfc3339().as_bytes());
    buf.push(b',');
    push_int(buf, e.sessions);
    buf.push(b',');
    push_protocols(buf, e.protocols, b"", b" ");
    buf.push(b'\n');
}

fn is_v4(e: &ShapedEntry) -> bool {
    matches!(e.net, ipnet::IpNet::V4(_))
}

/// `ipset restore` input: one set per address family, replaced as a whole.
/// A sized list that may hold networks uses `hash:net` sets (an existing
/// `hash:ip` set of the same name cannot be reused for it).
pub fn ipset(list: &[ShapedEntry], name: &str, networks: bool) -> String {
    let mut s = String::new();
    let kind = if networks { "hash:net" } else { "hash:ip" };
    for (suffix, family, v4) in [("", "inet", true), ("6", "inet6", false)] {
        let members: Vec<&ShapedEntry> = list.iter().filter(|e| is_v4(e) == v4).collect();
        let maxelem = members.len().max(65_536);
        let _ = writeln!(
            s,
            "create {name}{suffix} {kind} family {family} hashsize 1024 maxelem {maxelem} -exist"
        );
        let _ = writeln!(s, "flush {name}{suffix}");
        for e in members {
            let _ = writeln!(s, "add {name}{suffix} {e} -exist");
        }
    }
    s
}

/// `nft -f` input: a table with one set per family, flushed and refilled
/// in one transaction. A sized list that may hold networks uses interval
/// sets (entries are disjoint, as nft requires).
pub fn nft(list: &[ShapedEntry], table: &str, set: &str, networks: bool) -> String {
    let mut s = format!("add table inet {table}\n");
    let flags = if networks { " flags interval;" } else { "" };
    for (suffix, ty, v4) in [("4", "ipv4_addr", true), ("6", "ipv6_addr", false)] {
        let _ = writeln!(
            s,
            "add set inet {table} {set}{suffix} {{ type {ty};{flags} }}"
        );
        let _ = writeln!(s, "flush set inet {table} {set}{suffix}");
        let members: Vec<String> = list
            .iter()
            .filter(|e| is_v4(e) == v4)
            .map(ToString::to_string)
            .collect();
        for chunk in members.chunks(1000) {
            let _ = writeln!(
                s,
                "add element inet {table} {set}{suffix} {{ {} }}",
                chunk.join(", ")
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UnixMillis;
    use crate::geoip::{CountryCode, GeoInfo};

    fn protocol_names(bits: u16) -> Vec<&'static str> {
        Protocol::ALL
            .iter()
            .filter(|p| bits & p.bit() != 0)
            .map(|p| p.as_str())
            .collect()
    }

    fn entry(net: &str, org: Option<&str>) -> ShapedEntry {
        ShapedEntry {
            net: net.parse().unwrap(),
            confidence: 87,
            last_seen: UnixMillis(1_790_000_000_123),
            sessions: 4,
            protocols: Protocol::Ssh.bit() | Protocol::Http.bit(),
            merged_geo: org.map(|org| {
                Box::new(GeoInfo {
                    country_code: CountryCode::parse("NO"),
                    asn: Some(64_512),
                    as_org: Some(org.into()),
                    ..GeoInfo::default()
                })
            }),
            located: crate::geoip::GeoRef::UNKNOWN,
        }
    }

    #[test]
    fn written_json_entries_equal_the_json_values_they_stand_for() {
        for e in [
            entry(
                "203.0.113.9/32",
                Some("Quote \" back\\slash \n\u{1} Ærlig AS"),
            ),
            entry("2001:db8::/48", None),
        ] {
            let mut bytes = Vec::new();
            let geo = e.brief(None);
            // Twice: the second time with the protocols' text kept.
            let mut w = JsonWriter::default();
            w.entry(&mut bytes, &e, &geo);
            let first = bytes.len();
            w.entry(&mut bytes, &e, &geo);
            assert_eq!(bytes[..first], bytes[first..]);
            let buf = String::from_utf8(bytes[..first].to_vec()).unwrap();
            let got: Value = serde_json::from_str(&buf).unwrap();
            let want = json!({
                "ip": e.to_string(),
                "confidenceLevel": e.confidence,
                "lastSeen": e.last_seen.0,
                "sessions": e.sessions,
                "protocols": protocol_names(e.protocols),
                "countryCode": geo.country_code.map(|c| c.to_string()),
                "asn": geo.asn.map(|a| a.to_string()),
                "asnOrg": geo.as_org,
            });
            assert_eq!(got, want, "{buf}");
            assert_eq!(buf, want.to_string().replace("\\n", "\\u000a"));
        }
    }

    fn written(ip: std::net::IpAddr) -> (String, String) {
        let e = ShapedEntry::single(crate::domain::IpKey::from_ip(ip), 1, UnixMillis(0), 0, 0);
        let mut buf = Vec::new();
        push_entry(&mut buf, &e);
        (String::from_utf8(buf).unwrap(), e.to_string())
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for s in [
            "::1",
            "::",
            "1::",
            "2a00::",
            "2a00::1:0:0:1",
            "2a00:0:0:1::1",
            "2a00:0:1:0:1:0:1:0",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "64:ff9b::1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "fe80::1:0:0:0",
            "1:0:0:2:0:0:0:3",
            "1:0:0:0:2:0:0:3",
        ] {
            let (got, want) = written(s.parse().unwrap());
            assert_eq!(got, want, "{s}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]
        /// The word-at-a-time test agrees with the byte-by-byte one, on
        /// any bytes (multi-byte characters, bytes just above and below
        /// the ones that match, any length and position).
        #[test]
        fn the_escape_test_matches_byte_by_byte(
            bytes in proptest::collection::vec(proptest::prop_oneof![
                1 => proptest::prelude::any::<u8>(),
                1 => proptest::sample::select(vec![0x1f_u8, 0x20, 0x21, b'"', 0x23, 0x5b, b'\\', 0x5d, 0x7f, 0x80, 0xff, 0]),
                // Mostly bytes that need nothing, so both answers are common.
                30 => 0x23_u8..0x5b,
            ], 0..40),
        ) {
            let naive = bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            proptest::prop_assert_eq!(needs_escape(&bytes), naive);
        }

        #[test]
        fn any_address_is_written_as_display_writes_it(
            // Groups that are often zero, so runs of them are common.
            groups in proptest::array::uniform8(proptest::prop_oneof![
                proptest::strategy::Just(0_u16),
                proptest::prelude::any::<u16>(),
                0_u16..16,
            ]),
            v4 in proptest::prelude::any::<u32>(),
        ) {
            for ip in [
                std::net::IpAddr::from(std::net::Ipv6Addr::from(groups)),
                std::net::IpAddr::from(std::net::Ipv4Addr::from(v4)),
            ] {
                let (got, want) = written(ip);
                proptest::prop_assert_eq!(got, want);
            }
        }
    }

    /// `n` single addresses from `first` on, in order.
    fn consecutive(first: u32, n: u32) -> Vec<ShapedEntry> {
        (first..first + n)
            .map(|i| {
                let ip = std::net::Ipv4Addr::from(i);
                ShapedEntry::single(
                    crate::domain::IpKey::from_ip(ip.into()),
                    50,
                    UnixMillis(0),
                    1,
                    1,
                )
            })
            .collect()
    }

    /// The whole streamed plaintext body of `list` between `head` and `tail`.
    async fn plain_body(
        head: &str,
        list: impl Into<Ordered>,
        sep: &'static str,
        tail: &str,
    ) -> Bytes {
        let r = streamed(
            "text/plain",
            head.into(),
            list,
            sep,
            tail.into(),
            TEXT_CHUNK,
            plain_entry,
        );
        r.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_body_waits_for_the_entries_still_being_sorted() {
        let all = consecutive(0x0a00_0000, 1000);
        let rest = all[300..].to_vec();
        let list = Ordered {
            first: all[..300].to_vec(),
            rest: Some(tokio::task::spawn_blocking(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                rest
            })),
        };
        let body = plain_body("[", list, ",", "]").await;
        let want: Vec<String> = all.iter().map(|e| format!("{e}\n")).collect();
        assert_eq!(body, format!("[{}]", want.join(",")));
    }

    #[tokio::test]
    async fn a_long_body_lets_others_run_and_stays_whole() {
        let n = u32::try_from(3 * ENTRIES_PER_TURN + 17).unwrap();
        let all = consecutive(0x0b00_0000, n);
        // A task of the same single-threaded runtime gets turns while the
        // body is written.
        let turns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let other = {
            let turns = turns.clone();
            tokio::spawn(async move {
                loop {
                    turns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            })
        };
        let body = plain_body("", all.clone(), "", "").await;
        other.abort();
        let want: String = all.iter().map(|e| e.to_string() + "\n").collect();
        assert_eq!(body, want);
        let ran = turns.load(std::sync::atomic::Ordering::Relaxed);
        assert!(ran >= 3, "the other task ran only {ran} times");
    }

    #[test]
    fn tags_cover_what_each_format_shows() {
        let names = ("s".to_owned(), "t".to_owned());
        let shape = Shape::default();
        let a = vec![entry("203.0.113.9/32", Some("Org"))];
        let mut b = a.clone();
        b[0].confidence = 90;
        let mut c = a.clone();
        if let Some(g) = c[0].merged_geo.as_mut() {
            g.as_org = Some("Other".into());
        }
        let looked_up = vec![entry("203.0.113.9/32", None)];
        let tag = |f, l: &[ShapedEntry]| etag(f, &names, &shape, Some("db 1"), l);
        assert_eq!(tag(Format::Plain, &a), tag(Format::Plain, &b));
        assert_ne!(tag(Format::Csv, &a), tag(Format::Csv, &b));
        assert_eq!(tag(Format::Csv, &a), tag(Format::Csv, &c));
        assert_ne!(tag(Format::Json, &a), tag(Format::Json, &c));
        assert_ne!(tag(Format::Json, &a), tag(Format::Json, &looked_up));
        assert_ne!(tag(Format::Plain, &a), tag(Format::Nft, &a));
        assert_ne!(tag(Format::Plain, &a), tag(Format::Plain, &[]));
        // Looked-up geolocation is named by the databases in use.
        let json_with = |id| etag(Format::Json, &names, &shape, Some(id), &looked_up);
        assert_ne!(json_with("db 1"), json_with("db 2"));
    }

    /// A long list is hashed in blocks on two threads: the tag is the same
    /// every time and still moves with any entry, in either half, and with
    /// the order (entries moved across a block's boundary).
    #[test]
    fn a_long_lists_tag_covers_every_entry_and_its_place() {
        let names = ("s".to_owned(), "t".to_owned());
        let shape = Shape::default();
        let list: Vec<ShapedEntry> = (0..u32::try_from(5 * ETAG_BLOCK + 7).unwrap())
            .map(|i| {
                let mut e = entry("203.0.113.9/32", None);
                e.net = ipnet::IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                    0x0a00_0000 + i,
                )));
                e
            })
            .collect();
        let tag = |l: &[ShapedEntry]| etag(Format::Csv, &names, &shape, None, l);
        let first = tag(&list);
        assert_eq!(first, tag(&list));
        for i in [0, ETAG_BLOCK - 1, 3 * ETAG_BLOCK, list.len() - 1] {
            let mut changed = list.clone();
            changed[i].sessions += 1;
            assert_ne!(tag(&changed), first, "entry {i}");
        }
        let mut moved = list.clone();
        moved.swap(ETAG_BLOCK - 1, ETAG_BLOCK);
        assert_ne!(tag(&moved), first);
        assert_ne!(tag(&list[..list.len() - 1]), first);
    }
}
