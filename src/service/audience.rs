//! Cookie-less anonymous audience measurement (P45–P48): per UI page view
//! a visitor id (first 16 hex characters of a blake3 hash keyed by a salt
//! that lives only in memory and changes at 00:00 UTC) of (IP, user agent);
//! stored: visitor id, page path, referrer domain, country code. A restart
//! mid-day draws a new salt, so that day's visitors may count twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::{Result, Services};
use crate::domain::time::MILLIS_PER_DAY;
use crate::domain::{IpKey, UnixMillis};
use crate::store::privacy::{self as sp, PageView};

/// The day's salt, drawn on first use each UTC day.
#[derive(Debug, Default)]
pub struct AudienceState {
    salt: Mutex<Option<(i64, [u8; 32])>>,
}

/// One page view as the HTTP layer sees it; the IP and user agent are used
/// for the hash only and dropped with this value.
pub struct Visit<'a> {
    pub ip: IpAddr,
    pub user_agent: &'a str,
    pub path: &'a str,
    pub referrer: Option<&'a str>,
    /// Our own host name, so internal navigation has no referrer.
    pub host: Option<&'a str>,
    /// `Sec-GPC: 1` or `DNT: 1` was sent.
    pub opted_out: bool,
    /// The signed-in account, if the request carried a session.
    pub account: Option<u64>,
}

/// The path with its query dropped and any segment that could carry a
/// looked-up IP, an e-mail address or an identifier replaced, so no
/// lookup is stored through the audience data (P23).
pub fn normalise_path(raw: &str) -> Option<String> {
    let p = raw.split(['?', '#']).next().unwrap_or_default();
    if !p.starts_with('/') || p.len() > 200 {
        return None;
    }
    let segs: Vec<String> = p
        .split('/')
        .map(|s| {
            if s.parse::<IpAddr>().is_ok() {
                ":ip".to_owned()
            } else if s.contains('@') || s.contains("%40") {
                ":email".to_owned()
            } else if s.len() > 40 || (s.bytes().any(|b| b.is_ascii_digit()) && s.len() > 6) {
                ":id".to_owned()
            } else {
                s.to_ascii_lowercase()
            }
        })
        .collect();
    Some(segs.join("/"))
}

/// The host part of a referrer URL, lower-cased, without port or user info.
pub fn referrer_domain(r: &str) -> Option<String> {
    let rest = r.split_once("://")?.1;
    let auth = rest.split(['/', '?', '#']).next()?;
    let host = auth.rsplit('@').next()?;
    let host = if host.starts_with('[') {
        host.split(']').next()?.trim_start_matches('[')
    } else {
        host.split(':').next()?
    };
    let h = host.to_ascii_lowercase();
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    ok.then_some(h)
}

impl Services {
    /// The visitor id of (ip, ua) on `day` under that day's salt.
    pub fn visitor_id(&self, ip: IpAddr, ua: &str, now: UnixMillis) -> String {
        let day = now.day();
        let salt = {
            let mut g = match self.audience.salt.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            match *g {
                Some((d, s)) if d == day => s,
                _ => {
                    let s = crate::crypto::random_bytes::<32>();
                    *g = Some((day, s));
                    s
                }
            }
        };
        let mut h = blake3::Hasher::new_keyed(&salt);
        h.update(&IpKey::from_ip(ip).0.to_be_bytes());
        h.update(&[0]);
        h.update(ua.as_bytes());
        hex::encode(&h.finalize().as_bytes()[..8])
    }

    /// Counts one page view unless the visitor opted out (GPC/DNT) or
    /// objected while signed in (P34). Returns whether it was counted.
    pub async fn count_page_view(&self, v: Visit<'_>) -> Result<bool> {
        if v.opted_out || v.account.is_some_and(|a| self.privacy.is_objected(a)) {
            return Ok(false);
        }
        let Some(path) = normalise_path(v.path) else {
            return Ok(false);
        };
        let now = self.clock.now();
        let referrer_domain = v
            .referrer
            .and_then(referrer_domain)
            .filter(|d| v.host.is_none_or(|h| !h.eq_ignore_ascii_case(d)));
        let country = self
            .geo
            .dbs()
            .and_then(|d| d.lookup(IpKey::from_ip(v.ip)).country_code)
            .map(|c| c.as_str().to_owned());
        let pv = PageView {
            visitor: self.visitor_id(v.ip, v.user_agent, now),
            path,
            referrer_domain,
            country,
        };
        self.store
            .write(move |txn| sp::add_pageview(txn, now.day(), &pv))
            .await?;
        Ok(true)
    }

    /// Aggregates over days `from..=to` (admins, P48): unique visitors per
    /// day (ids rotate daily, so a week or month sums daily uniques and
    /// cannot tell a returning visitor), bounce rate, top pages, countries
    /// and referrer domains.
    pub async fn audience_summary(&self, from: i64, to: i64) -> Result<Value> {
        let views = self
            .store
            .read(move |txn| sp::pageviews(txn, from, to))
            .await?;
        Ok(summarise(from, to, &views))
    }
}

fn top(m: HashMap<String, u64>, n: usize) -> Vec<Value> {
    let mut v: Vec<(String, u64)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(n);
    v.into_iter()
        .map(|(k, c)| json!({"key": k, "views": c}))
        .collect()
}

/// The aggregates of a set of page views (pure, for tests on synthetic data).
pub fn summarise(from: i64, to: i64, views: &[(i64, PageView)]) -> Value {
    let mut per_day: BTreeMap<i64, HashMap<&str, u64>> = BTreeMap::new();
    let mut pages = HashMap::new();
    let mut countries = HashMap::new();
    let mut referrers = HashMap::new();
    for (d, v) in views {
        *per_day
            .entry(*d)
            .or_default()
            .entry(&v.visitor)
            .or_default() += 1;
        *pages.entry(v.path.clone()).or_default() += 1;
        *countries
            .entry(v.country.clone().unwrap_or_else(|| "unknown".into()))
            .or_default() += 1;
        if let Some(r) = &v.referrer_domain {
            *referrers.entry(r.clone()).or_default() += 1;
        }
    }
    let mut days = Vec::new();
    let (mut visitors, mut bounces) = (0_u64, 0_u64);
    let mut weeks: BTreeMap<i64, u64> = BTreeMap::new();
    let mut months: BTreeMap<String, u64> = BTreeMap::new();
    for (d, vis) in &per_day {
        let u = vis.len() as u64;
        let b = vis.values().filter(|n| **n == 1).count() as u64;
        visitors += u;
        bounces += b;
        // Weeks start on Monday; day 0 (1970-01-01) was a Thursday.
        *weeks.entry((d + 3).div_euclid(7) * 7 - 3).or_default() += u;
        let date = UnixMillis(d * MILLIS_PER_DAY).rfc3339();
        *months
            .entry(date.get(..7).unwrap_or_default().to_owned())
            .or_default() += u;
        days.push(json!({
            "day": date.get(..10).unwrap_or_default(), "visitors": u,
            "page_views": vis.values().sum::<u64>(), "bounces": b,
        }));
    }
    let day = |d: i64| {
        UnixMillis(d * MILLIS_PER_DAY)
            .rfc3339()
            .get(..10)
            .unwrap_or_default()
            .to_owned()
    };
    #[allow(clippy::cast_precision_loss)]
    let bounce_rate = if visitors == 0 {
        0.0
    } else {
        bounces as f64 / visitors as f64
    };
    let distinct: HashSet<(i64, &str)> = views
        .iter()
        .map(|(d, v)| (*d, v.visitor.as_str()))
        .collect();
    json!({
        "from": day(from), "to": day(to),
        "page_views": views.len(),
        "visitors": distinct.len(),
        "bounce_rate": bounce_rate,
        "days": days,
        "weeks": weeks.into_iter().map(|(w, u)| json!({"week_of": day(w), "visitors": u})).collect::<Vec<_>>(),
        "months": months.into_iter().map(|(m, u)| json!({"month": m, "visitors": u})).collect::<Vec<_>>(),
        "top_pages": top(pages, 20),
        "countries": top(countries, 50),
        "referrers": top(referrers, 20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(visitor: &str, path: &str, r: Option<&str>, c: Option<&str>) -> PageView {
        PageView {
            visitor: visitor.into(),
            path: path.into(),
            referrer_domain: r.map(Into::into),
            country: c.map(Into::into),
        }
    }

    #[test]
    fn aggregates_on_a_synthetic_set() {
        // Day 20_000 is a Thursday (1 Oct 2024); 20_004 the next Monday.
        let views = vec![
            (20_000, pv("a", "/", Some("example.org"), Some("NO"))),
            (20_000, pv("a", "/docs", None, Some("NO"))),
            (20_000, pv("b", "/", None, Some("DK"))),
            (20_001, pv("a", "/", Some("example.org"), Some("NO"))),
            (20_004, pv("c", "/pricing", Some("search.example"), None)),
        ];
        let s = summarise(20_000, 20_004, &views);
        assert_eq!(s["page_views"], 5);
        assert_eq!(s["visitors"], 4);
        // Bounces: b on day 0, a on day 1, c on day 4 → 3 of 4 daily visitors.
        assert_eq!(s["bounce_rate"], 0.75);
        assert_eq!(s["days"][0]["visitors"], 2);
        assert_eq!(s["days"][0]["page_views"], 3);
        assert_eq!(s["top_pages"][0], json!({"key": "/", "views": 3}));
        assert_eq!(s["countries"][0], json!({"key": "NO", "views": 3}));
        assert_eq!(s["referrers"][0], json!({"key": "example.org", "views": 2}));
        assert_eq!(s["weeks"].as_array().unwrap().len(), 2);
        assert_eq!(s["weeks"][0]["visitors"], 3);
        assert_eq!(s["weeks"][1]["visitors"], 1);
        assert_eq!(s["months"][0], json!({"month": "2024-10", "visitors": 4}));
    }

    #[test]
    fn paths_and_referrers_are_reduced() {
        assert_eq!(normalise_path("/ip/1.2.3.4?x=1").unwrap(), "/ip/:ip");
        assert_eq!(normalise_path("/ip/2001:db8::1").unwrap(), "/ip/:ip");
        assert_eq!(normalise_path("/email/a@b.org").unwrap(), "/email/:email");
        assert_eq!(normalise_path("/Docs/API").unwrap(), "/docs/api");
        assert_eq!(normalise_path("nope"), None);
        assert_eq!(
            referrer_domain("https://user@Search.Example:8443/q?s=1").unwrap(),
            "search.example"
        );
        assert_eq!(referrer_domain("not a url"), None);
    }
}
