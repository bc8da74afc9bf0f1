//! The TAXII 2.1 collection `sikker-threat-intel`: pages of STIX objects in
//! feed order (see `store::feed`), the filters of the objects, manifest and
//! versions endpoints, and the TAXII quota. A page is read in one read
//! transaction and its `next` cursor is the feed position of its last
//! object, so a client walking the feed never misses or repeats an object
//! version while indicators are being written.

use std::sync::Arc;

use serde_json::Value;

use super::apikeys::ApiPrincipal;
use super::quotas::Bucket;
use super::stix::{self, IDENTITY_TIME, SPEC_VERSION};
use super::threat::ThreatState;
use super::{Error, Result, Services};
use crate::domain::{IpKey, UnixMillis};
use crate::store::{self, feed};

pub const COLLECTION_ID: &str = "sikker-threat-intel";
/// Largest `limit` a client may ask for (the contract's documented range).
pub const MAX_LIMIT: usize = 1000;
pub const DEFAULT_LIMIT: usize = 100;
/// Most `match[id]` values one request may carry.
pub const MAX_IDS: usize = 1000;
/// Feed entries one request may examine; a page cut short by this budget
/// still carries a `next` cursor, so a walk always makes progress with
/// bounded work per request.
const SCAN_BUDGET: usize = 50_000;

/// A feed position: (modified ms, sequence).
pub type Cursor = (i64, u64);

/// The `match[...]` filters of a request (each `None` when absent).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub ids: Option<Vec<String>>,
    pub types: Option<Vec<String>>,
    /// Exact versions (ms); `None` for `last`, `first` or `all`, which are
    /// the same here because only the current version of an object is kept.
    pub versions: Option<Vec<i64>>,
    pub spec_versions: Option<Vec<String>>,
}

impl Filter {
    fn admits(&self, ty: &str, id: &str, version_ms: i64) -> bool {
        self.types
            .as_ref()
            .is_none_or(|t| t.iter().any(|x| x == ty))
            && self.ids.as_ref().is_none_or(|i| i.iter().any(|x| x == id))
            && self
                .versions
                .as_ref()
                .is_none_or(|v| v.contains(&version_ms))
            && self
                .spec_versions
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| x == SPEC_VERSION))
    }

    fn may_admit_indicators(&self) -> bool {
        self.types
            .as_ref()
            .is_none_or(|t| t.iter().any(|x| x == "indicator"))
            && self
                .ids
                .as_ref()
                .is_none_or(|i| i.iter().any(|x| x.starts_with("indicator--")))
    }
}

/// What to read.
#[derive(Clone, Debug)]
pub struct PageRequest {
    pub filter: Filter,
    /// `added_after`, in nanoseconds since the epoch.
    pub added_after_ns: Option<i128>,
    /// The `next` cursor of the previous page.
    pub after: Option<Cursor>,
    /// Objects to skip first (the official CLI's `offset`).
    pub offset: u64,
    pub limit: usize,
}

/// One object with its TAXII `date_added`.
#[derive(Clone, Debug)]
pub struct Item {
    pub date_added: UnixMillis,
    pub version: UnixMillis,
    pub object: Value,
}

#[derive(Clone, Debug, Default)]
pub struct Page {
    pub items: Vec<Item>,
    pub more: bool,
    pub next: Option<Cursor>,
}

/// What the blocking read found.
struct Found {
    identity: Option<Item>,
    indicators: Vec<(Cursor, Item)>,
    /// An eligible indicator exists after the last one taken.
    more: bool,
    /// Where the scan stopped when the budget ran out first.
    stopped_at: Option<Cursor>,
    /// The exclusive lower bound the page started from.
    after: Cursor,
}

/// Whether an IP is kept out of public answers: whitelisted IPs and those
/// with a granted listing correction (P27).
fn hidden(threat: &ThreatState, ip: IpKey) -> bool {
    threat.is_publicly_hidden(ip)
}

impl Services {
    /// One page of the collection; charges the indicators returned to
    /// `who`'s TAXII quota when `charge` (object requests), cutting the
    /// page to what is left today.
    pub async fn taxii_page(
        &self,
        who: &ApiPrincipal,
        req: PageRequest,
        charge: bool,
    ) -> Result<Page> {
        let limit = req.limit.clamp(1, MAX_LIMIT);
        if req.filter.ids.as_ref().is_some_and(|i| i.len() > MAX_IDS) {
            return Err(Error::invalid(
                "match[id]",
                format!("at most {MAX_IDS} ids per request"),
            ));
        }
        let now = self.clock.now();
        let retention = self.retention.indicators_ms;
        let threat = self.threat.clone();
        let found = self
            .store
            .read(move |txn| read_page(txn, &threat, &req, limit, now, retention))
            .await?;
        let Found {
            identity,
            mut indicators,
            mut more,
            stopped_at,
            after,
        } = found;
        if charge && !indicators.is_empty() {
            let granted = self
                .charge_up_to(who, Bucket::Taxii, indicators.len() as u64)
                .await?;
            let granted = usize::try_from(granted).unwrap_or(usize::MAX);
            if granted < indicators.len() {
                indicators.truncate(granted);
                more = true;
            }
        }
        let next = indicators.last().map(|(c, _)| *c).or(stopped_at);
        // A page without indicators that still has more (the identity alone
        // under `limit=1`, or a spent scan budget) continues from where it began.
        let next = if more || stopped_at.is_some() {
            more = true;
            next.or(Some(after))
        } else {
            None
        };
        let mut items: Vec<Item> = identity.into_iter().collect();
        items.extend(indicators.into_iter().map(|(_, i)| i));
        Ok(Page { items, more, next })
    }
}

/// The exclusive lower bound of a page: after the cursor and after
/// `added_after` (date_added > t, to the nanosecond, where date_added has
/// millisecond precision: so every position with ms > floor(t)).
fn start_after(cursor: Option<Cursor>, added_after_ns: Option<i128>) -> Cursor {
    let by_time = added_after_ns.map(|ns| {
        let ms = i64::try_from(ns.div_euclid(1_000_000)).unwrap_or(i64::MAX);
        (ms, u64::MAX)
    });
    match (cursor, by_time) {
        (Some(c), Some(t)) => c.max(t),
        (Some(c), None) => c,
        (None, Some(t)) => t,
        (None, None) => (i64::MIN, 0),
    }
}

fn read_page(
    txn: &redb::ReadTransaction,
    threat: &Arc<ThreatState>,
    req: &PageRequest,
    limit: usize,
    now: UnixMillis,
    retention: i64,
) -> store::Result<Found> {
    let identity_id = stix::identity_id();
    // The producer identity heads the first page of every walk (also with
    // `added_after`), so each run of a consumer receives the object its
    // indicators' `created_by_ref` points at. In `offset` counting it is
    // object 0.
    let mut skip = req.offset;
    let identity = (req.after.is_none()
        && req.filter.admits("identity", &identity_id, IDENTITY_TIME.0))
    .then(|| {
        if skip > 0 {
            skip -= 1;
            None
        } else {
            Some(Item {
                date_added: IDENTITY_TIME,
                version: IDENTITY_TIME,
                object: stix::identity(),
            })
        }
    })
    .flatten();
    let room = limit - usize::from(identity.is_some());
    let after = start_after(req.after, req.added_after_ns);
    let mut found = Found {
        identity,
        indicators: Vec::new(),
        more: false,
        stopped_at: None,
        after,
    };
    if !req.filter.may_admit_indicators() {
        return Ok(found);
    }
    let mut budget = SCAN_BUDGET;
    let mut visit = |key: Cursor, ip: IpKey| -> store::Result<bool> {
        if budget == 0 {
            found.stopped_at = Some(key);
            return Ok(false);
        }
        budget -= 1;
        let id = stix::indicator_id(ip);
        if !req.filter.admits("indicator", &id, key.0) || hidden(threat, ip) {
            return Ok(true);
        }
        let Some((ind, pos)) = store::indicators::get_with_position(txn, ip)?
            .filter(|(i, _)| now.0 < i.last_seen.0.saturating_add(retention))
        else {
            return Ok(true);
        };
        if skip > 0 {
            skip -= 1;
            return Ok(true);
        }
        if found.indicators.len() >= room {
            found.more = true;
            return Ok(false);
        }
        let Some(pos) = pos else {
            return Ok(true);
        };
        found.indicators.push((
            key,
            Item {
                date_added: UnixMillis(pos.modified_ms),
                version: UnixMillis(pos.modified_ms),
                object: stix::indicator(&ind, &pos, retention, store::repeat::expiries(txn, ip)?),
            },
        ));
        Ok(true)
    };
    if let Some(ids) = &req.filter.ids {
        // Few ids: look each up instead of scanning the feed.
        let mut keyed: Vec<(Cursor, IpKey)> = Vec::new();
        for id in ids {
            let Some(uuid) = id
                .strip_prefix("indicator--")
                .and_then(|u| uuid::Uuid::parse_str(u).ok())
            else {
                continue;
            };
            if let Some(ip) = feed::ip_of(txn, uuid.as_u128())?
                && let Some(pos) = feed::position(txn, ip)?
                && pos.key() > after
            {
                keyed.push((pos.key(), ip));
            }
        }
        keyed.sort_unstable();
        keyed.dedup();
        for (key, ip) in keyed {
            if !visit(key, ip)? {
                break;
            }
        }
    } else {
        feed::scan_after(txn, after, &mut visit)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_after_is_exact_to_the_millisecond() {
        // 12:00:00.123456 → objects added at .124 or later.
        let ns = 1_774_094_400_123_456_000_i128;
        assert_eq!(start_after(None, Some(ns)), (1_774_094_400_123, u64::MAX));
        // A cursor further on wins; an earlier one does not.
        assert_eq!(
            start_after(Some((1_774_094_400_500, 3)), Some(ns)),
            (1_774_094_400_500, 3)
        );
        assert_eq!(
            start_after(Some((1_774_094_400_000, 3)), Some(ns)),
            (1_774_094_400_123, u64::MAX)
        );
        assert_eq!(start_after(None, None), (i64::MIN, 0));
    }

    /// Measures a 1,000-object page at the end of a 200,000-entry feed:
    /// `cargo test --lib service::taxii::tests::page_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement"]
    fn page_cost() {
        use crate::domain::Indicator;
        let dir = tempfile::tempdir().unwrap();
        let store = store::Store::open(&dir.path().join("db.redb"))
            .unwrap()
            .store;
        let n: u32 = 200_000;
        let t = std::time::Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            store
                .write_blocking(|txn| {
                    for &i in chunk {
                        let key = IpKey::from_ip(std::net::Ipv4Addr::from(0x2d00_0000 + i).into());
                        let ind = Indicator::new(key, UnixMillis(i64::from(i)));
                        store::indicators::put(txn, &ind, None, 1, UnixMillis(i64::from(i)))?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        println!("write {n} indicators with feed: {:?}", t.elapsed());
        for (label, after) in [
            ("first page", (i64::MIN, 0)),
            ("last page", (i64::from(n) - 1001, u64::MAX)),
        ] {
            let t = std::time::Instant::now();
            let built = store
                .read_blocking(|txn| {
                    let mut out = Vec::new();
                    feed::scan_after(txn, after, |_, ip| {
                        let ind = store::indicators::get(txn, ip)?.unwrap();
                        let pos = feed::position(txn, ip)?.unwrap();
                        out.push(stix::indicator(&ind, &pos, 1000, 0));
                        Ok(out.len() < 1000)
                    })?;
                    Ok(out)
                })
                .unwrap();
            let bytes = serde_json::to_vec(&built).unwrap().len();
            println!(
                "{label}: {} objects, {bytes} bytes JSON, {:?}",
                built.len(),
                t.elapsed()
            );
        }
    }

    #[test]
    fn filters() {
        let f = Filter {
            types: Some(vec!["identity".into()]),
            ..Filter::default()
        };
        assert!(!f.may_admit_indicators());
        assert!(f.admits("identity", "identity--x", 0));
        let f = Filter {
            spec_versions: Some(vec!["2.0".into()]),
            ..Filter::default()
        };
        assert!(!f.admits("indicator", "indicator--x", 0));
        let f = Filter {
            versions: Some(vec![5]),
            ..Filter::default()
        };
        assert!(f.admits("indicator", "indicator--x", 5));
        assert!(!f.admits("indicator", "indicator--x", 6));
    }
}
