//! Quota headers, rendered from one `QuotaState` in each API's dialect.
//! SikkerAPI documents `X-Daily-Limit/Used/Remaining`; its official CLI
//! reads family names (`X-RateLimit-*` for lookups and block lists,
//! `X-Report-*`, `X-TAXII-*`), so both sets are sent. AbuseIPDB clients read
//! `X-RateLimit-*`.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use super::error::Dialect;
use crate::service::quotas::{Bucket, QuotaState};

fn set(h: &mut HeaderMap, name: &'static str, v: impl Into<HeaderValue>) {
    h.insert(HeaderName::from_static(name), v.into());
}

pub fn apply(h: &mut HeaderMap, q: &QuotaState, dialect: Dialect) {
    let remaining = q.remaining();
    let rate_limit = |h: &mut HeaderMap| {
        set(h, "x-ratelimit-limit", q.limit);
        set(h, "x-ratelimit-remaining", remaining);
        set(h, "x-ratelimit-reset", q.reset_at_s);
    };
    if dialect == Dialect::AbuseIpdb {
        rate_limit(h);
        return;
    }
    set(h, "x-daily-limit", q.limit);
    set(h, "x-daily-used", q.used.min(q.limit));
    set(h, "x-daily-remaining", remaining);
    match q.bucket {
        Bucket::Lookups | Bucket::Blacklist => rate_limit(h),
        Bucket::Reports => {
            set(h, "x-report-limit", q.limit);
            set(h, "x-report-remaining", remaining);
        }
        Bucket::Taxii => {
            set(h, "x-taxii-limit", q.limit);
            set(h, "x-taxii-remaining", remaining);
        }
    }
}
