//! Content coding: answers are sent gzip-compressed to clients that
//! accept it (`Accept-Encoding`, RFC 9110 §12.5.3), as Go's and Python's
//! HTTP clients (the SikkerAPI CLI, TAXII clients) and browsers do by
//! default and decompress transparently. Block lists and the UI's files,
//! which carry validators, name their coded representation themselves
//! ([`Coding::tag`], [`Coding::apply`]); every other successful answer is
//! coded once, by the dispatcher ([`Coding::negotiate`]), when it is of a
//! textual type and longer than a packet (a single check is not). At level 2 a
//! 1M-entry JSON list is about 8× smaller (165 MB → 21 MB, 0.45 s of CPU
//! to compress its bytes in a separate program) and a plaintext one 2×
//! (15.2 MB → 7.2 MB, 0.14 s); level 1 left the
//! plaintext list at 10.7 MB, level 3 saved little more for a quarter
//! more CPU. The body is compressed as it streams, chunk by chunk.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, SizeHint};

use super::response::{Body, BodyError, Resp};

/// The compression level (of 0–9).
const LEVEL: u32 = 2;

/// Answers shorter than this are sent as they are: about one packet,
/// where compressing saves nothing a client would notice.
const MIN_BYTES: u64 = 1400;

/// How an answer is coded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
}

impl Coding {
    /// The coding for a request's `Accept-Encoding`: gzip when the client
    /// accepts it (`gzip`, `x-gzip` or `*` with a weight above 0) and does
    /// not prefer the identity coding. Identity for anything else,
    /// including a header that cannot be read.
    pub fn of(headers: &HeaderMap) -> Self {
        let (mut gzip, mut identity, mut any) = (None, None, None);
        let values = headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok());
        for item in values.flat_map(|v| v.split(',')) {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let Some(weight) = weight(parts) else {
                continue;
            };
            let slot = if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                &mut gzip
            } else if name.eq_ignore_ascii_case("identity") {
                &mut identity
            } else if name == "*" {
                &mut any
            } else {
                continue;
            };
            *slot = Some(slot.map_or(weight, |w: u16| w.max(weight)));
        }
        let gzip = gzip.or(any).unwrap_or(0);
        // Identity is always acceptable; it is preferred only when named
        // with a higher weight.
        if gzip > 0 && gzip >= identity.unwrap_or(0) {
            Self::Gzip
        } else {
            Self::Identity
        }
    }

    /// This coding for a body of `len` bytes (`None`: streamed) of
    /// `content_type`, or `None` where compressing is never worth it
    /// (not text, or not longer than a packet): such a body is the same
    /// whatever the client accepts.
    #[must_use]
    pub fn for_body(self, len: Option<u64>, content_type: &str) -> Option<Self> {
        let textual = content_type.starts_with("text/")
            || content_type.starts_with("application/json")
            || content_type.contains("+json")
            || content_type.starts_with("application/javascript")
            || content_type.starts_with("image/svg+xml");
        (textual && len.is_none_or(|n| n >= MIN_BYTES)).then_some(self)
    }

    /// `resp` coded for this client when that is worth it (as `apply`):
    /// a `200` answer of a textual type longer than a packet or streamed,
    /// not coded yet and without a validator (answers with one name their
    /// representation themselves). Others are left as they are.
    pub fn negotiate(self, resp: Resp) -> Resp {
        let h = resp.headers();
        if resp.status() != StatusCode::OK
            || h.contains_key(header::CONTENT_ENCODING)
            || h.contains_key(header::ETAG)
        {
            return resp;
        }
        let content_type = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        match self.for_body(resp.body().size_hint().exact(), content_type) {
            Some(coding) => coding.apply(resp),
            None => resp,
        }
    }

    /// The strong validator of this coding's representation: a gzip body
    /// differs from the identity one, so its tag does too.
    pub fn tag(self, tag: &str) -> String {
        match self {
            Self::Identity => tag.to_owned(),
            Self::Gzip => match tag.strip_suffix('"') {
                Some(open) => format!("{open}-gzip\""),
                None => format!("{tag}-gzip"),
            },
        }
    }

    /// `resp` in this coding. A `200` body is compressed as it streams
    /// (its length is then unknown); every answer says that it varies
    /// with `Accept-Encoding`.
    pub fn apply(self, mut resp: Resp) -> Resp {
        resp.headers_mut()
            .append(header::VARY, HeaderValue::from_static("accept-encoding"));
        if self == Self::Identity || resp.status() != StatusCode::OK {
            return resp;
        }
        resp.headers_mut().remove(header::CONTENT_LENGTH);
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        resp.map(|body| {
            Gzip {
                body,
                encoder: Some(GzEncoder::new(Vec::new(), Compression::new(LEVEL))),
            }
            .boxed()
        })
    }
}

/// A coding's weight in thousandths, from the parameters after its name
/// (`q=0.5`); 1000 without one, `None` when the weight is malformed.
fn weight<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    let mut w = 1000;
    for p in params {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        w = qvalue(v.trim())?;
    }
    Some(w)
}

/// An RFC 9110 qvalue (`0`, `0.5`, `1.000`) in thousandths.
fn qvalue(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// A body compressed as it streams.
struct Gzip {
    body: Body,
    /// `None` once the compressed stream is finished.
    encoder: Option<GzEncoder<Vec<u8>>>,
}

impl hyper::body::Body for Gzip {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            let out = match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        // Trailers: nothing sikker sends; not coded.
                        continue;
                    };
                    encoder.write_all(&data)?;
                    std::mem::take(encoder.get_mut())
                }
                Some(Err(e)) => {
                    this.encoder = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => match this.encoder.take() {
                    Some(encoder) => encoder.finish()?,
                    None => return Poll::Ready(None),
                },
            };
            // The compressor holds small inputs back until it has a block.
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;

    fn asked(values: &[&str]) -> Coding {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        Coding::of(&h)
    }

    #[test]
    fn gzip_is_chosen_only_when_accepted_and_not_outweighed() {
        for v in [
            "gzip",
            "GZIP",
            "x-gzip",
            "gzip, deflate",
            "br;q=1.0, gzip;q=0.8, *;q=0.1",
            "*",
            "identity;q=0.5, gzip",
            "deflate, gzip;q=1.000",
        ] {
            assert_eq!(asked(&[v]), Coding::Gzip, "{v}");
        }
        for v in [
            "",
            "identity",
            "br, deflate",
            "gzip;q=0",
            "gzip;q=0.000",
            "*;q=0, identity",
            "*;q=0",
            "gzip;q=0.5, identity",
            "gzip;q=2",
            "gzip;q=0.5555",
            "gzip;q=abc",
            "gzip;level",
            "*, gzip;q=0",
        ] {
            assert_eq!(asked(&[v]), Coding::Identity, "{v}");
        }
        // Several header lines make one list.
        assert_eq!(asked(&["br", "gzip"]), Coding::Gzip);
        assert_eq!(Coding::of(&HeaderMap::new()), Coding::Identity);
    }

    #[test]
    fn a_gzip_tag_differs_from_the_identity_one() {
        assert_eq!(Coding::Gzip.tag("\"ab12\""), "\"ab12-gzip\"");
        assert_eq!(Coding::Identity.tag("\"ab12\""), "\"ab12\"");
    }

    #[tokio::test]
    async fn a_streamed_body_is_compressed_whole_and_in_order() {
        let parts: Vec<Bytes> = (0..300)
            .map(|i| Bytes::from(format!("{i} 203.0.113.{}\n", i % 256).repeat(i % 7)))
            .collect();
        let want: Vec<u8> = parts.iter().flat_map(|p| p.to_vec()).collect();
        let stream = futures_util::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, BodyError>(Frame::data(p))),
        );
        let mut resp = Resp::new(http_body_util::StreamBody::new(stream).boxed());
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("1"));
        let resp = Coding::Gzip.apply(resp);
        assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(resp.headers()[header::VARY], "accept-encoding");
        assert!(!resp.headers().contains_key(header::CONTENT_LENGTH));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let mut got = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, want);
        // Not a success: left as it is.
        let mut r = Resp::new(super::super::response::full("x"));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        let r = Coding::Gzip.apply(r);
        assert!(!r.headers().contains_key(header::CONTENT_ENCODING));
        assert_eq!(r.headers()[header::VARY], "accept-encoding");
    }

    #[test]
    fn only_long_textual_successes_without_a_validator_are_negotiated() {
        let answer =
            |status: u16, ct: &str, len: usize, extra: Option<(header::HeaderName, &str)>| {
                let mut r = Resp::new(super::super::response::full(vec![b'a'; len]));
                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
                if let Some((k, v)) = extra {
                    r.headers_mut().insert(k, HeaderValue::from_str(v).unwrap());
                }
                r
            };
        let coded = |r: &Resp| r.headers().get(header::CONTENT_ENCODING).is_some();
        let varies = |r: &Resp| r.headers().get(header::VARY).is_some();
        let json = "application/json";
        let r = Coding::Gzip.negotiate(answer(200, json, 1400, None));
        assert!(coded(&r) && varies(&r));
        let r = Coding::Gzip.negotiate(answer(
            200,
            "application/taxii+json;version=2.1",
            5000,
            None,
        ));
        assert!(coded(&r));
        // Identity asked: the same answer, which varies.
        let r = Coding::Identity.negotiate(answer(200, json, 5000, None));
        assert!(!coded(&r) && varies(&r));
        for r in [
            answer(200, json, 1399, None),
            answer(400, json, 5000, None),
            answer(200, "image/png", 5000, None),
            answer(200, json, 5000, Some((header::ETAG, "\"x\""))),
            answer(200, json, 5000, Some((header::CONTENT_ENCODING, "br"))),
        ] {
            let before = r.headers().clone();
            let r = Coding::Gzip.negotiate(r);
            assert_eq!(r.headers(), &before);
        }
    }

    #[tokio::test]
    async fn an_error_of_the_body_ends_the_stream() {
        let stream = futures_util::stream::iter([
            Ok(Frame::data(Bytes::from_static(b"abc"))),
            Err::<Frame<Bytes>, BodyError>("cut".into()),
        ]);
        let resp = Coding::Gzip.apply(Resp::new(http_body_util::StreamBody::new(stream).boxed()));
        assert!(resp.into_body().collect().await.is_err());
    }

    proptest! {
        #[test]
        fn any_header_value_gets_an_answer(v in "[ -~]{0,80}") {
            if let Ok(v) = HeaderValue::from_str(&v) {
                let mut h = HeaderMap::new();
                h.insert(header::ACCEPT_ENCODING, v);
                let _ = Coding::of(&h);
            }
        }
    }
}
