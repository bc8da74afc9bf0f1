//! In-memory indexes, pure and without I/O: live indicators by IP with TTL
//! day buckets, IP range sets, and exact CIDR collapsing. The store is
//! written first; these are then updated to match (see `service::threat`).

pub mod build;
pub mod collapse;
pub mod prefix;
pub mod ranges;

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::domain::prefix::{Prefix, PrefixLen};
use crate::domain::score;
use crate::domain::time::UnixMillis;
use crate::domain::{Indicator, IpKey, Severity};

pub use build::IndexBuilder;
pub use prefix::{PrefixIndex, PrefixVerdict};

/// Below this many entries an index is scanned by one thread.
const PAR_SCAN_MIN: usize = 65_536;
/// Entries claimed at a time by each side of a two-thread scan.
const SCAN_BLOCK: usize = 4096;

/// What block lists, filters and prefix aggregates need of an indicator,
/// in ~64 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Raw points, the repeat-offender boost included.
    /// Kept as `f64`, as the scoring computes it, so `score` equals the
    /// score of the full indicator to the point (bulk checks and block
    /// lists are answered from here).
    pub raw: f64,
    pub critical: bool,
    /// Only one reporting account and no sensor: capped (see scoring.md).
    pub single_source: bool,
    /// Earlier expiries of this IP's indicator (repeat offender history).
    pub expiries: u32,
    /// Counted reports.
    pub reports: u32,
    /// Reported categories, bit `id - 1` per category.
    pub categories: u16,
    pub max_severity: Option<Severity>,
    pub protocols: u16,
    pub sessions: u32,
    pub first_seen: UnixMillis,
    pub last_seen: UnixMillis,
    /// The indicator is purged at this instant unless new evidence arrives.
    pub expires: UnixMillis,
}

impl Summary {
    /// The summary of `ind`, whose IP's indicators expired `expiries` times before.
    pub fn of(ind: &Indicator, retention_ms: i64, expiries: u32) -> Self {
        let e = score::score_with_history(ind, ind.last_seen, expiries);
        Self {
            raw: e.raw,
            critical: score::is_critical(ind),
            single_source: score::single_source(ind),
            expiries,
            reports: u32::try_from(ind.reports).unwrap_or(u32::MAX),
            categories: ind
                .categories
                .keys()
                .filter(|c| (1..=16).contains(*c))
                .fold(0, |acc, c| acc | 1 << (c - 1)),
            max_severity: ind.max_severity(),
            protocols: ind.protocol_bits(),
            sessions: u32::try_from(ind.sessions).unwrap_or(u32::MAX),
            first_seen: ind.first_seen,
            last_seen: ind.last_seen,
            expires: UnixMillis(ind.last_seen.0.saturating_add(retention_ms)),
        }
    }

    /// The confidence score as of `now`.
    pub fn score(&self, now: UnixMillis) -> u8 {
        score::finalize_capped(
            self.raw,
            score::recency(self.last_seen, now),
            self.critical,
            self.single_source,
        )
    }

    pub fn live(&self, now: UnixMillis) -> bool {
        now < self.expires
    }
}

/// Live indicators by IP, with one bucket per expiry day, and the IPv6
/// prefix aggregates over them (kept equal by every change going through
/// `upsert`/`remove`).
#[derive(Debug, Default)]
pub struct IpIndex {
    map: BTreeMap<u128, Summary>,
    /// Day → IPs that expired on that day when pushed. Stale members (moved
    /// to a later day by new evidence) are skipped when the bucket is dropped.
    buckets: BTreeMap<i64, Vec<u128>>,
    prefixes: PrefixIndex,
}

impl IpIndex {
    /// An empty index grouping IPv6 evidence by `/len`.
    pub fn with_prefix(len: PrefixLen) -> Self {
        Self {
            prefixes: PrefixIndex::new(len),
            ..Self::default()
        }
    }

    /// The IPv6 prefix length evidence is grouped by.
    pub fn prefix_len(&self) -> PrefixLen {
        self.prefixes.len()
    }

    /// The verdict on the prefix of `ip` as of `now`, when at least
    /// `min_addresses` live addresses of it have evidence; members for
    /// which `hidden` says true are left out.
    pub fn prefix_verdict(
        &self,
        ip: IpKey,
        now: UnixMillis,
        min_addresses: u32,
        hidden: Option<&dyn Fn(IpKey) -> bool>,
    ) -> Option<PrefixVerdict> {
        self.prefixes
            .verdict(&self.map, ip, now, min_addresses, hidden)
    }

    /// Every prefix with at least `min_addresses` live addresses, in
    /// address order; in prefixes `touches_hidden` names, the members
    /// `hidden` names are left out.
    pub fn prefix_verdicts(
        &self,
        now: UnixMillis,
        min_addresses: u32,
        touches_hidden: &dyn Fn(Prefix) -> bool,
        hidden: &dyn Fn(IpKey) -> bool,
    ) -> Vec<PrefixVerdict> {
        self.prefixes
            .verdicts(&self.map, now, min_addresses, touches_hidden, hidden)
    }

    /// Recomputes the prefix aggregates that lost a member or whose
    /// oldest-expiry hint has passed (after a sweep).
    pub fn settle(&mut self, now: UnixMillis) {
        self.prefixes.settle(&self.map, now);
    }

    /// Recomputes the prefix aggregates that lost a member or evidence;
    /// call after each batch of changes.
    pub fn settle_dirty(&mut self) {
        self.prefixes.settle_dirty(&self.map);
    }

    /// Number of IPv6 prefixes with evidence on at least two addresses.
    pub fn prefix_count(&self) -> usize {
        self.prefixes.count()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Inserts or replaces; moves the IP to its new expiry bucket.
    pub fn upsert(&mut self, ip: IpKey, s: Summary) {
        let day = s.expires.day();
        let old = self.map.insert(ip.0, s);
        self.prefixes.update(&self.map, ip, old.as_ref(), Some(&s));
        if old.is_none_or(|o| o.expires.day() != day) {
            self.buckets.entry(day).or_default().push(ip.0);
        }
    }

    pub fn remove(&mut self, ip: IpKey) -> Option<Summary> {
        let old = self.map.remove(&ip.0);
        if old.is_some() {
            self.prefixes.update(&self.map, ip, old.as_ref(), None);
        }
        old
    }

    /// The live summary of `ip`; nothing past its expiry is ever returned.
    /// Whether `ip` has an entry, live or not yet swept.
    pub fn contains(&self, ip: IpKey) -> bool {
        self.map.contains_key(&ip.0)
    }

    pub fn get(&self, ip: IpKey, now: UnixMillis) -> Option<&Summary> {
        self.map.get(&ip.0).filter(|s| s.live(now))
    }

    /// Live entries with `lo <= ip <= hi`, in address order.
    pub fn range(
        &self,
        lo: IpKey,
        hi: IpKey,
        now: UnixMillis,
    ) -> impl Iterator<Item = (IpKey, &Summary)> {
        self.map
            .range(lo.0..=hi.0)
            .filter(move |(_, s)| s.live(now))
            .map(|(k, s)| (IpKey(*k), s))
    }

    /// Every live entry, in address order.
    pub fn iter(&self, now: UnixMillis) -> impl Iterator<Item = (IpKey, &Summary)> {
        self.map
            .iter()
            .filter(move |(_, s)| s.live(now))
            .map(|(k, s)| (IpKey(*k), s))
    }

    /// The live entries `f` keeps, mapped, in address order. A large index
    /// is scanned by two threads, one from each end: each claims the next
    /// `SCAN_BLOCK` entries of the count left until they meet, so the work
    /// splits evenly however the addresses are spread. Both write into one
    /// vector of `T::default()` slots, one per entry, each into the slots
    /// of the entries it claimed; the kept ones are then moved together in
    /// place. The entries are held once (a vector per side held the far
    /// side's twice until appended).
    pub fn par_filter_map<T: Send + Default>(
        &self,
        now: UnixMillis,
        f: impl Fn(IpKey, &Summary) -> Option<T> + Sync,
    ) -> Vec<T> {
        let total = self.map.len();
        let keep = |(k, s): (&u128, &Summary)| s.live(now).then(|| f(IpKey(*k), s)).flatten();
        if total < PAR_SCAN_MIN {
            return self.map.iter().filter_map(keep).collect();
        }
        let mut out = Vec::with_capacity(total);
        out.resize_with(total, T::default);
        let slots = Mutex::new(Unclaimed {
            rest: out.as_mut_slice(),
            front: 0,
        });
        // Whatever one side does not claim, the other does.
        let (front, back) = crate::par::join(
            "sikker-scan",
            || scan_side(self.map.iter(), &slots, Side::Front, keep),
            || scan_side(self.map.iter().rev(), &slots, Side::Back, keep),
        );
        // Kept entries, in address order: the front side's runs, then the
        // back side's, which it claimed from the end.
        let mut kept = 0;
        for (start, len) in front.into_iter().chain(back.into_iter().rev()) {
            if start >= kept + len {
                let (to, from) = out.split_at_mut(start);
                to[kept..kept + len].swap_with_slice(&mut from[..len]);
            } else {
                out[kept..start + len].rotate_left(start - kept);
            }
            kept += len;
        }
        out.truncate(kept);
        out
    }

    /// Drops every bucket for days before `day` and the entries that still
    /// belong to them (expired by `now`); returns the IPs removed.
    pub fn drop_buckets_before(&mut self, day: i64, now: UnixMillis) -> Vec<IpKey> {
        let keep = self.buckets.split_off(&day);
        let due = std::mem::replace(&mut self.buckets, keep);
        let mut removed = Vec::new();
        for (bucket_day, ips) in due {
            for ip in ips {
                let stale = self
                    .map
                    .get(&ip)
                    .is_none_or(|s| s.expires.day() != bucket_day || s.live(now));
                if !stale {
                    self.remove(IpKey(ip));
                    removed.push(IpKey(ip));
                }
            }
        }
        self.settle(now);
        removed
    }

    /// The entry of `ip`, live or not yet swept.
    pub fn get_any(&self, ip: IpKey) -> Option<&Summary> {
        self.map.get(&ip.0)
    }

    /// Every entry held, live or not yet swept, in address order (for
    /// checking the index against the store).
    pub fn all(&self) -> impl Iterator<Item = (IpKey, &Summary)> {
        self.map.iter().map(|(k, s)| (IpKey(*k), s))
    }

    /// Number of day buckets held (for status output).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }
}

/// The slots of `IpIndex::par_filter_map` not yet claimed: `rest`, which
/// begins at slot `front`.
struct Unclaimed<'a, T> {
    rest: &'a mut [T],
    front: usize,
}

#[derive(Clone, Copy)]
enum Side {
    Front,
    Back,
}

/// One side of `IpIndex::par_filter_map`: `entries` from its end, in
/// claims of up to `SCAN_BLOCK` entries, each with as many slots of
/// `slots` from the same end. Returns where its kept entries lie: per
/// claim, the first slot and the count (a back claim keeps them at its
/// end, in address order), in the order claimed.
fn scan_side<'a, T>(
    mut entries: impl Iterator<Item = (&'a u128, &'a Summary)>,
    slots: &Mutex<Unclaimed<'_, T>>,
    side: Side,
    keep: impl Fn((&'a u128, &'a Summary)) -> Option<T>,
) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    loop {
        let (first, claimed) = {
            let mut u = slots.lock().unwrap_or_else(PoisonError::into_inner);
            let n = SCAN_BLOCK.min(u.rest.len());
            if n == 0 {
                return runs;
            }
            let rest = std::mem::take(&mut u.rest);
            let len = rest.len();
            match side {
                Side::Front => {
                    let (claimed, rest) = rest.split_at_mut(n);
                    u.rest = rest;
                    u.front += n;
                    (u.front - n, claimed)
                }
                Side::Back => {
                    let (rest, claimed) = rest.split_at_mut(len - n);
                    u.rest = rest;
                    (u.front + len - n, claimed)
                }
            }
        };
        let n = claimed.len();
        let mut written = 0;
        for t in entries.by_ref().take(n).filter_map(&keep) {
            let at = match side {
                Side::Front => written,
                Side::Back => n - 1 - written,
            };
            claimed[at] = t;
            written += 1;
        }
        runs.push(match side {
            Side::Front => (first, written),
            Side::Back => (first + n - written, written),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::MILLIS_PER_DAY;

    pub(crate) fn summary(last_seen: i64, retention_days: i64) -> Summary {
        Summary {
            raw: 10.0,
            critical: false,
            single_source: false,
            expiries: 0,
            reports: 1,
            categories: 1,
            max_severity: None,
            protocols: 0,
            sessions: 1,
            first_seen: UnixMillis(last_seen),
            last_seen: UnixMillis(last_seen),
            expires: UnixMillis(last_seen + retention_days * MILLIS_PER_DAY),
        }
    }

    proptest::proptest! {
        /// Bulk checks and block lists serve `Summary::score`; it must be
        /// the score a single check computes from the full indicator.
        #[test]
        fn summary_score_equals_the_full_score(
            reports in proptest::collection::vec((1_u64..6, 1_u8..=16, 0_i64..20), 0..12),
            auths in 0_u32..60,
            expiries in 0_u32..5,
            age_h in 0_i64..(40 * 24),
        ) {
            use crate::domain::{Category, Protocol};
            let ip: IpKey = "5.6.7.8".parse().unwrap();
            let t0 = UnixMillis(1000 * MILLIS_PER_DAY);
            let mut ind = Indicator::new(ip, t0);
            for (who, cat, h) in reports {
                if let Some(c) = Category::from_id(cat) {
                    ind.apply_report(who, 1000, c, Some(Protocol::Ssh), UnixMillis(t0.0 + h * 3_600_000));
                }
            }
            for n in 0..auths {
                let ev = crate::domain::indicator::SensorEvent::ssh_auth(ip, format!("s{}", n / 7), t0);
                ind.apply_event(1, &ev, n % 7 == 0);
            }
            let now = UnixMillis(ind.last_seen.0 + age_h * 3_600_000);
            let s = Summary::of(&ind, 30 * MILLIS_PER_DAY, expiries);
            proptest::prop_assert_eq!(
                s.score(now),
                score::score_with_history(&ind, now, expiries).score
            );
        }
    }

    #[test]
    fn expiry_hides_before_sweep_and_buckets_drop_whole_days() {
        let mut idx = IpIndex::default();
        let a: IpKey = "1.1.1.1".parse().unwrap();
        let b: IpKey = "2.2.2.2".parse().unwrap();
        idx.upsert(a, summary(0, 30));
        idx.upsert(b, summary(0, 30));
        // b gets new evidence on day 10 and moves to a later bucket.
        idx.upsert(b, summary(10 * MILLIS_PER_DAY, 30));
        let day30 = UnixMillis(30 * MILLIS_PER_DAY);
        assert!(idx.get(a, UnixMillis(day30.0 - 1)).is_some());
        assert!(
            idx.get(a, day30).is_none(),
            "expired entries are never returned"
        );
        assert!(idx.get(b, day30).is_some());
        let removed = idx.drop_buckets_before(31, UnixMillis(31 * MILLIS_PER_DAY));
        assert_eq!(removed, vec![a]);
        assert_eq!(idx.len(), 1);
        let removed = idx.drop_buckets_before(41, UnixMillis(41 * MILLIS_PER_DAY));
        assert_eq!(removed, vec![b]);
        assert!(idx.is_empty());
        assert_eq!(idx.bucket_count(), 0);
    }

    #[test]
    fn ranges_scan_in_address_order() {
        let mut idx = IpIndex::default();
        for s in ["10.0.0.5", "10.0.0.1", "10.0.1.1", "9.255.255.255"] {
            idx.upsert(s.parse().unwrap(), summary(0, 30));
        }
        let lo: IpKey = "10.0.0.0".parse().unwrap();
        let hi: IpKey = "10.0.0.255".parse().unwrap();
        let got: Vec<String> = idx
            .range(lo, hi, UnixMillis(0))
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(got, ["10.0.0.1", "10.0.0.5"]);
    }

    /// The two-sided scan gives what one thread's scan gives, in address
    /// order, each entry once, whatever the size (blocks claimed unevenly,
    /// a last block cut short, expired entries skipped).
    #[test]
    fn a_two_thread_scan_equals_the_sequential_one() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for n in [
            0,
            1,
            5000,
            PAR_SCAN_MIN - 1,
            PAR_SCAN_MIN,
            3 * SCAN_BLOCK * 7 + 17,
            200_003,
        ] {
            let mut idx = IpIndex::default();
            while idx.len() < n {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let ip = IpKey(u128::from(rng) << 32 | u128::from(rng >> 40));
                // Every eighth expired by `now` (not yet swept).
                idx.upsert(
                    ip,
                    summary(
                        if rng.is_multiple_of(8) {
                            -2 * MILLIS_PER_DAY
                        } else {
                            0
                        },
                        1,
                    ),
                );
            }
            let now = UnixMillis(0);
            let mid = idx.all().nth(n / 2).map_or(0, |(ip, _)| ip.0);
            // Runs with gaps on both sides, none, and every kept entry on
            // one side only.
            let filters: [&(dyn Fn(IpKey) -> bool + Sync); 4] = [
                &|ip| !ip.0.is_multiple_of(3),
                &|_| true,
                &|ip| ip.0 >= mid,
                &|ip| ip.0 < mid,
            ];
            for (i, f) in filters.into_iter().enumerate() {
                let keep = |ip: IpKey, s: &Summary| f(ip).then_some((ip.0, s.last_seen.0));
                let want: Vec<_> = idx.iter(now).filter_map(|(ip, s)| keep(ip, s)).collect();
                let got = idx.par_filter_map(now, keep);
                assert_eq!(got.len(), want.len(), "n = {n}, filter {i}");
                assert!(got == want, "n = {n}, filter {i}: order or content differs");
                if i == 0 {
                    assert!(n < 1000 || (want.len() > n / 2 && want.len() < n * 2 / 3));
                }
            }
        }
    }
}
