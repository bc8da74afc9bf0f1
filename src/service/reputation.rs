//! Reading threat data: one IP, many IPs, block lists, usernames and
//! e-mail addresses. Lookups are never stored: only usage counters move.

use std::collections::BTreeMap;

use super::apikeys::ApiPrincipal;
use super::blockshape::ShapedEntry;
use super::quotas::Bucket;
use super::{Error, Result, Services};
use crate::domain::prefix::{Prefix, PrefixLen};
use crate::domain::score::{self, Explanation};
use crate::domain::{Category, Indicator, IpKey, Protocol, Severity, UnixMillis, behavior, repeat};
use crate::geoip::{Brief, GeoDbs, GeoRef};
use crate::index::{IpIndex, PrefixVerdict};
use crate::store::names;

/// Options of a single check.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Only evidence newer than this many seconds counts as found.
    pub max_age_secs: Option<u64>,
    pub protocols: Vec<Protocol>,
    pub ignore_whitelist: bool,
}

/// The answer about one IP (rendered by each API surface in its own shape).
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub ip: IpKey,
    pub whitelisted: bool,
    /// Why: the allowlist entry or named set covering the address.
    pub whitelist_reason: Option<String>,
    /// The indicator when found and live (and matching the options).
    pub indicator: Option<Indicator>,
    /// Score as served (0 when whitelisted unless ignored).
    pub confidence: u8,
    pub explanation: Option<Explanation>,
    /// How long the indicator is advertised as valid (longer for repeat
    /// offenders, see `domain::repeat::validity_ms`).
    pub valid_until: Option<UnixMillis>,
    /// The verdict on the IPv6 prefix of the address, when at least
    /// `PREFIX_MIN_ADDRESSES` of its addresses have evidence. It never
    /// changes `confidence`: it is reported beside it.
    pub prefix: Option<PrefixVerdict>,
    /// Local geolocation with the Tor-exit and open-proxy flags.
    pub geo: super::geo::GeoAnswer,
}

/// Distinct addresses with evidence before a prefix verdict is served.
pub const PREFIX_MIN_ADDRESSES: u32 = 2;

impl Services {
    /// Checks one IP; counts one lookup for `who`.
    pub async fn check(
        &self,
        who: &ApiPrincipal,
        ip: IpKey,
        opts: &CheckOptions,
    ) -> Result<CheckResult> {
        self.charge(who, Bucket::Lookups, 1).await?;
        let now = self.clock.now();
        let found = self.live_indicator(ip, now)?;
        Ok(self.judge(ip, found, opts, now))
    }

    /// The answer about `ip` given its live indicator and the IP's earlier
    /// expiries (`live_indicator`).
    fn judge(
        &self,
        ip: IpKey,
        found: Option<(Indicator, u32)>,
        opts: &CheckOptions,
        now: UnixMillis,
    ) -> CheckResult {
        let whitelist_reason = self.never_block(ip);
        let whitelisted = whitelist_reason.is_some();
        // A granted listing correction answers exactly as an unlisted IP
        // (P27): a `corrected` flag would itself publish the past listing.
        let corrected = self.threat.is_corrected(ip);
        let (ind, expiries) = found.map_or((None, 0), |(i, e)| (Some(i), e));
        let ind = ind.filter(|i| {
            let fresh = opts.max_age_secs.is_none_or(|s| {
                now.0 - i.last_seen.0 <= i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
            });
            let on_protocol = opts.protocols.is_empty()
                || opts.protocols.iter().any(|p| i.protocols.contains_key(p));
            !corrected && fresh && on_protocol
        });
        let explanation = ind
            .as_ref()
            .map(|i| score::score_with_history(i, now, expiries));
        let raw_score = explanation.as_ref().map_or(0, |e| e.score);
        let discounted = whitelisted && !opts.ignore_whitelist;
        let confidence = if discounted { 0 } else { raw_score };
        let validity = repeat::validity_ms(self.retention.indicators_ms, expiries);
        let valid_until = ind
            .as_ref()
            .map(|i| UnixMillis(i.last_seen.0.saturating_add(validity)));
        // An allowlisted address is never to be blocked, so it gets no
        // prefix verdict that would invite it.
        let prefix = if discounted {
            None
        } else {
            self.prefix_verdict(ip, opts.ignore_whitelist)
                .ok()
                .flatten()
        };
        let geo = self.geo_answer(ip, ind.as_ref());
        CheckResult {
            ip,
            whitelisted,
            whitelist_reason,
            indicator: ind,
            confidence,
            explanation,
            valid_until,
            prefix,
            geo,
        }
    }

    /// The IPv6 prefix length evidence is grouped by (`--ipv6-prefix`).
    pub fn ipv6_prefix_len(&self) -> Result<PrefixLen> {
        self.threat.with_index(IpIndex::prefix_len)
    }

    /// The verdict on the IPv6 prefix of `ip` as public answers serve it:
    /// `None` for IPv4 and for prefixes with evidence on fewer than
    /// `PREFIX_MIN_ADDRESSES` addresses. Addresses kept out of public
    /// answers (a granted correction, P27; the allowlist unless
    /// `ignore_whitelist`) are left out of the aggregate.
    pub fn prefix_verdict(
        &self,
        ip: IpKey,
        ignore_whitelist: bool,
    ) -> Result<Option<PrefixVerdict>> {
        let now = self.clock.now();
        self.threat.with_index(|idx| {
            let p = Prefix::of(ip, idx.prefix_len())?;
            let hidden = |m: IpKey| self.threat.is_hidden_member(m, ignore_whitelist);
            let filter: Option<&dyn Fn(IpKey) -> bool> = self
                .threat
                .prefix_touches_hidden(p, ignore_whitelist)
                .then_some(&hidden);
            idx.prefix_verdict(ip, now, PREFIX_MIN_ADDRESSES, filter)
        })
    }

    /// Every IPv6 prefix with evidence on at least `min_addresses` (and
    /// never fewer than `PREFIX_MIN_ADDRESSES`) addresses, in address
    /// order, with the hiding rules of `prefix_verdict` (for block lists).
    pub fn prefix_verdicts(
        &self,
        min_addresses: u32,
        ignore_whitelist: bool,
    ) -> Result<Vec<PrefixVerdict>> {
        let now = self.clock.now();
        self.threat.with_index(|idx| {
            idx.prefix_verdicts(
                now,
                min_addresses.max(PREFIX_MIN_ADDRESSES),
                &|p| self.threat.prefix_touches_hidden(p, ignore_whitelist),
                &|m| self.threat.is_hidden_member(m, ignore_whitelist),
            )
        })
    }

    /// A lookup made on the public web page: the same answer as `check`
    /// but charged to nobody and recorded nowhere (web lookups are free and
    /// not stored, P23). IPs kept out of public answers (allowlisted, or
    /// corrected, P27) come back without their evidence.
    pub fn public_lookup(&self, ip: IpKey) -> Result<CheckResult> {
        let now = self.clock.now();
        let hidden = self.threat.is_publicly_hidden(ip);
        let ind = if hidden {
            None
        } else {
            self.live_indicator(ip, now)?
        };
        Ok(self.judge(ip, ind, &CheckOptions::default(), now))
    }

    /// The score `check` would serve for `ip` now, without charging (the
    /// answer to a report, which is charged as a report).
    pub fn score_now(&self, ip: IpKey) -> Result<u8> {
        let now = self.clock.now();
        let found = self.live_indicator(ip, now)?;
        Ok(self
            .judge(ip, found, &CheckOptions::default(), now)
            .confidence)
    }

    /// Live indicators with `lo <= ip <= hi` and their served scores, in
    /// address order (whitelisted addresses score 0, as in `check`).
    pub fn scores_in_range(&self, lo: IpKey, hi: IpKey) -> Result<Vec<RangeEntry>> {
        let now = self.clock.now();
        let v = self.threat.with_index(|idx| {
            idx.range(lo, hi, now)
                .map(|(ip, s)| RangeEntry {
                    ip,
                    confidence: s.score(now),
                    last_seen: s.last_seen,
                })
                .collect::<Vec<_>>()
        })?;
        Ok(v.into_iter()
            .filter(|e| !self.threat.is_corrected(e.ip))
            .map(|mut e| {
                if self.never_block(e.ip).is_some() {
                    e.confidence = 0;
                }
                e
            })
            .collect())
    }

    /// Checks up to 10,000 IPs; counts one lookup per IP. Answered from the
    /// in-memory index alone: a bulk answer carries only what the index
    /// holds (score, last seen), so no indicator is read or decoded.
    pub async fn bulk_check(&self, who: &ApiPrincipal, ips: Vec<IpKey>) -> Result<Vec<BulkEntry>> {
        self.charge(who, Bucket::Lookups, ips.len() as u64).await?;
        let now = self.clock.now();
        let dbs = self.geo.dbs();
        let found: Vec<Option<(u8, UnixMillis)>> = self.threat.with_index(|idx| {
            ips.iter()
                .map(|ip| idx.get(*ip, now).map(|s| (s.score(now), s.last_seen)))
                .collect()
        })?;
        self.threat.flag_scan(|flags| {
            ips.into_iter()
                .zip(found)
                .map(|(ip, hit)| {
                    let (corrected, whitelisted) = flags(ip);
                    // As `check`: a granted correction answers as unlisted
                    // (P27), an allowlisted address scores 0.
                    let hit = hit.filter(|_| !corrected);
                    BulkEntry {
                        ip,
                        confidence: hit.map(|(c, _)| if whitelisted { 0 } else { c }),
                        last_seen: hit.map(|(_, t)| t),
                        whitelisted,
                        country: dbs.as_ref().and_then(|d| d.country(ip)),
                    }
                })
                .collect()
        })
    }
}

/// One line of a bulk check: `confidence` and `last_seen` are `None` when
/// the address has no live indicator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkEntry {
    pub ip: IpKey,
    pub confidence: Option<u8>,
    pub last_seen: Option<UnixMillis>,
    pub whitelisted: bool,
    pub country: Option<crate::geoip::CountryCode>,
}

/// One live indicator inside a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeEntry {
    pub ip: IpKey,
    pub confidence: u8,
    pub last_seen: UnixMillis,
}

/// Filters of a block list.
#[derive(Clone, Debug)]
pub struct BlocklistFilter {
    pub score_minimum: u8,
    pub limit: usize,
    pub ip_version: Option<u8>,
    pub protocols: u16,
    pub min_severity: Option<Severity>,
    pub only_countries: Vec<String>,
    pub except_countries: Vec<String>,
    pub only_asn: Vec<String>,
    pub except_asn: Vec<String>,
    pub ignore_whitelist: bool,
}

impl Default for BlocklistFilter {
    fn default() -> Self {
        Self {
            score_minimum: 50,
            limit: 5000,
            ip_version: None,
            protocols: 0,
            min_severity: None,
            only_countries: vec![],
            except_countries: vec![],
            only_asn: vec![],
            except_asn: vec![],
            ignore_whitelist: false,
        }
    }
}

impl BlocklistFilter {
    /// The country and AS filters. An address the databases do not place
    /// fails every "only" filter and passes every "except" filter.
    pub fn matches_geo(&self, g: &Brief<'_>) -> bool {
        let in_countries = |list: &[String]| {
            g.country_code
                .is_some_and(|c| list.iter().any(|x| x.eq_ignore_ascii_case(c.as_str())))
        };
        // AS numbers compare as numbers, so "AS0123" matches 123.
        let in_asns = |list: &[String]| {
            g.asn.is_some_and(|a| {
                list.iter()
                    .any(|x| x.parse::<u64>().is_ok_and(|x| x == u64::from(a)))
            })
        };
        (self.only_countries.is_empty() || in_countries(&self.only_countries))
            && !in_countries(&self.except_countries)
            && (self.only_asn.is_empty() || in_asns(&self.only_asn))
            && !in_asns(&self.except_asn)
    }
}

/// Lists at least this long are sorted on two threads.
const PARALLEL_SORT_MIN: usize = 65_536;

/// Sorts a block list into its order. A long one is split at its median
/// and the halves sorted on two threads: until the first byte is sent the
/// client is idle, so the second core is free.
fn sort_list(list: &mut [ShapedEntry]) {
    if list.len() < PARALLEL_SORT_MIN {
        list.sort_unstable_by(ShapedEntry::order);
        return;
    }
    let mid = list.len() / 2;
    list.select_nth_unstable_by(mid, ShapedEntry::order);
    let (low, high) = list.split_at_mut(mid);
    crate::par::join(
        "sikker-sort",
        || high.sort_unstable_by(ShapedEntry::order),
        || low.sort_unstable_by(ShapedEntry::order),
    );
}

/// Of a long list sent unsorted, the share sorted before the first byte;
/// the rest is sorted on another thread while that share is sent
/// (sending an entry costs several times what sorting it does).
const FIRST_SHARE: usize = 4;

/// The entries of a block list, either in their order or still in
/// address order (as the index holds them). Both are functions of the
/// entries alone, so a validator may be computed over either.
#[derive(Debug)]
pub struct Blocklist {
    pub entries: Vec<ShapedEntry>,
    pub sorted: bool,
}

/// A block list in its order: the first entries, and the rest as a task
/// still sorting them.
#[derive(Debug)]
pub struct Ordered {
    pub first: Vec<ShapedEntry>,
    pub rest: Option<tokio::task::JoinHandle<Vec<ShapedEntry>>>,
}

impl From<Vec<ShapedEntry>> for Ordered {
    /// An already ordered list.
    fn from(first: Vec<ShapedEntry>) -> Self {
        Self { first, rest: None }
    }
}

impl Blocklist {
    /// Entries' worth of memory the list holds until sent: its vector, and
    /// the first share that `into_ordered(true)` copies out of it.
    pub fn held_entries(&self) -> usize {
        let split = !self.sorted && self.entries.len() >= PARALLEL_SORT_MIN;
        let share = if split {
            self.entries.len() / FIRST_SHARE
        } else {
            0
        };
        self.entries.capacity() + share
    }

    /// The most a list scanned from an index of `indexed` addresses holds
    /// (`held_entries` of a list keeping every one).
    pub fn most_held(indexed: usize) -> usize {
        indexed.saturating_add(indexed / FIRST_SHARE)
    }

    /// The entries in their order.
    pub fn into_sorted(mut self) -> Vec<ShapedEntry> {
        if !self.sorted {
            sort_list(&mut self.entries);
        }
        self.entries
    }

    /// Keeps the first `n` entries of the order.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.entries.len() {
            return;
        }
        if !self.sorted {
            sort_list(&mut self.entries);
            self.sorted = true;
        }
        self.entries.truncate(n);
    }

    /// The entries in their order, for sending. With `sort_behind`, a
    /// long unsorted list splits off its first share (a selection) and
    /// sorts it here, the rest on a blocking thread, so the first byte
    /// leaves before the whole is sorted: for formats slow to write (JSON,
    /// CSV). A plaintext list is sent faster than its rest could be
    /// sorted behind it, so it is sorted whole (on two threads) first, as
    /// is everything outside a runtime.
    pub fn into_ordered(self, sort_behind: bool) -> Ordered {
        let runtime = tokio::runtime::Handle::try_current();
        let runtime = match runtime {
            Ok(h) if sort_behind && !self.sorted && self.entries.len() >= PARALLEL_SORT_MIN => h,
            _ => return Ordered::from(self.into_sorted()),
        };
        let mut rest = self.entries;
        let cut = rest.len() - rest.len() / FIRST_SHARE;
        // Reversed, so the first share ends up at the tail, where
        // splitting it off copies only it.
        rest.select_nth_unstable_by(cut, |a, b| ShapedEntry::order(b, a));
        let mut first = rest.split_off(cut);
        let rest = runtime.spawn_blocking(move || {
            rest.sort_unstable_by(ShapedEntry::order);
            rest
        });
        sort_list(&mut first);
        Ordered {
            first,
            rest: Some(rest),
        }
    }
}

impl Services {
    /// The block list: live indicators passing `f`, highest confidence
    /// first, then most recent. The caller charges the IPs it returns.
    /// A list cut to `f.limit` comes sorted, a whole one in address order
    /// ([`Blocklist::into_ordered`] sorts it as it is sent).
    ///
    /// One vector of 48-byte entries, sized once (growing it, and a second
    /// vector, cost more in fresh pages than the sort), cut to the limit by
    /// a selection before the sort. Entries carry no geolocation: a country
    /// or AS filter looks it up here, and with `shown` (the databases the
    /// list will be written with) each entry is placed in them, in address
    /// order, for the writer to read ([`crate::geoip::GeoRef`]; a list
    /// holding the geolocation itself grew with its length).
    pub fn blocklist(&self, f: &BlocklistFilter, shown: Option<&GeoDbs>) -> Result<Blocklist> {
        let now = self.clock.now();
        let own = self.geo.dbs();
        let dbs = shown.or(own.as_deref());
        // Placed in the databases the filter reads (kept when they are the
        // ones the list is written with).
        let place = |ip: IpKey| {
            dbs.map_or((GeoRef::UNKNOWN, Brief::default()), |d| {
                let at = d.locate(ip);
                (at, d.brief_at(ip, at))
            })
        };
        let geo_filtered = !(f.only_countries.is_empty()
            && f.except_countries.is_empty()
            && f.only_asn.is_empty()
            && f.except_asn.is_empty());
        // The hidden sets' locks nest inside the index's, as for prefix
        // verdicts.
        let mut list: Vec<ShapedEntry> = self.threat.with_index(|idx| {
            self.threat.hidden_scan(f.ignore_whitelist, |hidden| {
                // Placed as scanned, in address order, where neighbouring
                // lookups share cache. A list cut to a small part of the
                // index is looked up as written (a few lookups, not one per
                // entry).
                let place_all = shown.filter(|_| !geo_filtered && f.limit >= idx.len() / 8);
                idx.par_filter_map(now, |ip, s| {
                    if f.ip_version.is_some_and(|v| (v == 4) != ip.is_v4())
                        || (f.protocols != 0 && s.protocols & f.protocols == 0)
                        || f.min_severity
                            .is_some_and(|m| s.max_severity.is_none_or(|x| x < m))
                    {
                        return None;
                    }
                    let confidence = s.score(now);
                    if confidence < f.score_minimum || hidden(ip) {
                        return None;
                    }
                    let mut e =
                        ShapedEntry::single(ip, confidence, s.last_seen, s.sessions, s.protocols);
                    if geo_filtered {
                        let (at, brief) = place(ip);
                        if !f.matches_geo(&brief) {
                            return None;
                        }
                        if shown.is_some() {
                            e.located = at;
                        }
                    } else if let Some(d) = place_all {
                        e.located = d.locate(ip);
                    }
                    Some(e)
                })
            })
        })??;
        let cut = list.len() > f.limit;
        if cut {
            list.select_nth_unstable_by(f.limit, ShapedEntry::order);
            list.truncate(f.limit);
        }
        // Sized for the whole index: a short list does not keep that
        // capacity while it is sent.
        if list.capacity() > 2 * list.len() {
            list.shrink_to_fit();
        }
        // The selection left the cut list in no order of its own.
        if cut {
            sort_list(&mut list);
        }
        Ok(Blocklist {
            entries: list,
            sorted: cut,
        })
    }

    /// Attack statistics of a username (case-insensitive).
    pub async fn username_stats(&self, name: &str) -> Result<names::NameStats> {
        self.name_stats(names::Kind::Username, name.to_lowercase(), "username")
            .await
    }

    /// Attack statistics of an e-mail address (case-insensitive).
    pub async fn email_stats(&self, email: &str) -> Result<names::NameStats> {
        self.name_stats(
            names::Kind::Email,
            email.to_ascii_lowercase(),
            "e-mail address",
        )
        .await
    }

    async fn name_stats(
        &self,
        kind: names::Kind,
        key: String,
        what: &'static str,
    ) -> Result<names::NameStats> {
        if key.is_empty() || key.len() > 254 {
            return Err(Error::invalid(what, "must be 1 to 254 characters"));
        }
        let now = self.clock.now().0;
        let retention = self.retention.indicators_ms;
        self.store
            .read(move |txn| names::get(txn, kind, &key))
            .await?
            .filter(|s| now < s.last_seen_ms + retention)
            .ok_or_else(|| Error::not_found(what))
    }
}

/// Behaviours of an indicator with their rule data, most severe first.
pub fn behaviors_of(ind: &Indicator) -> Vec<(&'static behavior::Rule, u64)> {
    let mut v: Vec<_> = ind
        .behaviors
        .iter()
        .filter_map(|(n, c)| behavior::rule(n).map(|r| (r, *c)))
        .collect();
    v.sort_by(|a, b| b.0.severity.cmp(&a.0.severity).then(b.1.cmp(&a.1)));
    v
}

/// Reported categories with counts, by id.
pub fn categories_of(ind: &Indicator) -> BTreeMap<u8, (Category, u64)> {
    ind.categories
        .iter()
        .filter_map(|(id, n)| Category::from_id(*id).map(|c| (*id, (c, *n))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` entries in no order, with few distinct scores and times.
    fn scattered(n: usize) -> Vec<ShapedEntry> {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let ip = if i % 5 == 0 {
                    IpKey(0x2a00_u128 << 112 | u128::from(x))
                } else {
                    IpKey::from_ip(std::net::Ipv4Addr::from(u32::try_from(x >> 32).unwrap()).into())
                };
                // Few distinct scores and times, so ties reach the address.
                let confidence = u8::try_from(x % 7).unwrap() * 10;
                ShapedEntry::single(
                    ip,
                    confidence,
                    UnixMillis(i64::try_from(x % 3).unwrap()),
                    1,
                    1,
                )
            })
            .collect()
    }

    #[test]
    fn a_long_list_sorted_on_two_threads_equals_one_sorted_on_one() {
        let list = scattered(PARALLEL_SORT_MIN * 2 + 7);
        let mut one = list.clone();
        one.sort_unstable_by(ShapedEntry::order);
        let mut two = list;
        sort_list(&mut two);
        assert!(one == two);
    }

    #[tokio::test]
    async fn a_long_list_sent_while_sorting_arrives_in_order() {
        let list = scattered(PARALLEL_SORT_MIN * 2 + 7);
        let mut want = list.clone();
        want.sort_unstable_by(ShapedEntry::order);
        let o = Blocklist {
            entries: list.clone(),
            sorted: false,
        }
        .into_ordered(true);
        assert_eq!(o.first.len(), want.len() / FIRST_SHARE);
        let mut got = o.first;
        got.extend(o.rest.expect("sorted behind").await.unwrap());
        assert!(got == want);
        // Sorted whole when not sorted behind.
        let o = Blocklist {
            entries: list.clone(),
            sorted: false,
        }
        .into_ordered(false);
        assert!(o.rest.is_none() && o.first == want);
        // Cut short: the first entries of the order.
        let mut cut = Blocklist {
            entries: list,
            sorted: false,
        };
        cut.truncate(1000);
        assert!(cut.sorted && cut.entries[..] == want[..1000]);
        let o = cut.into_ordered(true);
        assert!(o.rest.is_none() && o.first[..] == want[..1000]);
    }
}
