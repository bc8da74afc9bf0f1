//! IPv6 prefix aggregates over the indexed indicators: per prefix, how many
//! addresses have evidence, their reports and categories, the strongest
//! member and the newest evidence. Updated incrementally with every index
//! change; derived only from the per-IP summaries, so a prefix holds
//! nothing once its last member is gone (it expires with its newest member).

use std::collections::{BTreeMap, BTreeSet};

use super::Summary;
use crate::domain::IpKey;
use crate::domain::prefix::{self, Prefix, PrefixLen};
use crate::domain::score;
use crate::domain::time::UnixMillis;

/// The running aggregate of one prefix. Sums are always exact; the
/// extremes are exact unless the prefix is marked dirty (a member was
/// removed or lost evidence), until `settle` recomputes them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Agg {
    members: u32,
    reports: u64,
    /// Members that reported each category (index `id - 1`).
    category_members: [u32; 16],
    /// Members whose evidence is more than one account's (or a sensor's).
    corroborated: u32,
    critical: u32,
    raw_max: f64,
    first_seen: UnixMillis,
    last_seen: UnixMillis,
    max_expires: UnixMillis,
    /// No member expires before this (a lower bound; exact after `settle`).
    min_expires: UnixMillis,
}

impl Agg {
    const EMPTY: Self = Self {
        members: 0,
        reports: 0,
        category_members: [0; 16],
        corroborated: 0,
        critical: 0,
        raw_max: 0.0,
        first_seen: UnixMillis(i64::MAX),
        last_seen: UnixMillis(i64::MIN),
        max_expires: UnixMillis(i64::MIN),
        min_expires: UnixMillis(i64::MAX),
    };

    fn add(&mut self, s: &Summary) {
        self.members += 1;
        self.reports += u64::from(s.reports);
        for (i, n) in self.category_members.iter_mut().enumerate() {
            if s.categories & (1 << i) != 0 {
                *n += 1;
            }
        }
        self.corroborated += u32::from(!s.single_source);
        self.critical += u32::from(s.critical);
        self.raw_max = self.raw_max.max(s.raw);
        self.first_seen = self.first_seen.min(s.first_seen);
        self.last_seen = self.last_seen.max(s.last_seen);
        self.max_expires = self.max_expires.max(s.expires);
        self.min_expires = self.min_expires.min(s.expires);
    }

    /// Takes `s` out of the sums; returns whether an extreme may now be stale.
    fn sub(&mut self, s: &Summary) -> bool {
        self.members = self.members.saturating_sub(1);
        self.reports = self.reports.saturating_sub(u64::from(s.reports));
        for (i, n) in self.category_members.iter_mut().enumerate() {
            if s.categories & (1 << i) != 0 {
                *n = n.saturating_sub(1);
            }
        }
        self.corroborated = self
            .corroborated
            .saturating_sub(u32::from(!s.single_source));
        self.critical = self.critical.saturating_sub(u32::from(s.critical));
        s.raw >= self.raw_max
            || s.last_seen >= self.last_seen
            || s.first_seen <= self.first_seen
            || s.expires >= self.max_expires
    }

    fn of<'a>(members: impl Iterator<Item = &'a Summary>) -> Self {
        let mut a = Self::EMPTY;
        for s in members {
            a.add(s);
        }
        a
    }

    fn categories(&self) -> u16 {
        self.category_members
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .fold(0, |acc, (i, _)| acc | 1 << i)
    }
}

/// The verdict on one IPv6 prefix, as served next to an address's own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrefixVerdict {
    pub prefix: Prefix,
    /// Distinct addresses of the prefix with live evidence.
    pub addresses: u32,
    /// Counted reports over those addresses.
    pub reports: u64,
    /// Reported categories, bit `id - 1` per category.
    pub categories: u16,
    pub first_seen: UnixMillis,
    pub last_seen: UnixMillis,
    /// When the newest member expires, and with it the aggregate.
    pub expires: UnixMillis,
    /// The prefix score (0–100), see `domain::prefix::score`.
    pub score: u8,
}

impl PrefixVerdict {
    fn new(prefix: Prefix, a: &Agg, now: UnixMillis) -> Self {
        Self {
            prefix,
            addresses: a.members,
            reports: a.reports,
            categories: a.categories(),
            first_seen: a.first_seen,
            last_seen: a.last_seen,
            expires: a.max_expires,
            score: prefix::score(
                a.raw_max,
                a.members,
                score::recency(a.last_seen, now),
                a.critical > 0,
                a.corroborated > 0,
            ),
        }
    }
}

/// Prefix → aggregate, for one prefix length.
#[derive(Debug, Default)]
pub struct PrefixIndex {
    len: PrefixLen,
    map: BTreeMap<u128, Agg>,
    /// Prefixes whose extremes may be stale.
    dirty: BTreeSet<u128>,
}

impl PrefixIndex {
    pub fn new(len: PrefixLen) -> Self {
        Self {
            len,
            ..Self::default()
        }
    }

    pub fn len(&self) -> PrefixLen {
        self.len
    }

    /// Number of prefixes with at least two members (those keep an aggregate).
    pub fn count(&self) -> usize {
        self.map.len()
    }

    /// The aggregates of every member of `members` (start-up), built in
    /// one ordered pass: a map bulk-built from sorted keys has full nodes,
    /// where one grown key by key keeps them about half full.
    pub fn from_members(len: PrefixLen, members: &BTreeMap<u128, Summary>) -> Self {
        // Only prefixes of two or more members are kept (see `update`);
        // the one being summed is held aside until its second member, so
        // no buffer holds the many one-address prefixes on the way.
        let mut kept: Vec<(u128, Agg)> = Vec::new();
        let mut current: Option<(u128, Agg)> = None;
        for (ip, s) in members {
            let Some(p) = Prefix::of(IpKey(*ip), len) else {
                continue;
            };
            match &mut current {
                Some((network, a)) if *network == p.network => a.add(s),
                _ => {
                    kept.extend(current.take().filter(|(_, a)| a.members >= 2));
                    let mut a = Agg::EMPTY;
                    a.add(s);
                    current = Some((p.network, a));
                }
            }
        }
        kept.extend(current.filter(|(_, a)| a.members >= 2));
        Self {
            len,
            map: kept.into_iter().collect(),
            dirty: BTreeSet::new(),
        }
    }

    /// Replaces member `ip`'s contribution `old` by `new` (either may be
    /// absent); `members` already holds the change.
    ///
    /// Only prefixes with at least two addresses keep an aggregate: a
    /// one-address prefix never makes a verdict list, and a lookup folds it
    /// from its one member. Most IPv6 attackers are alone in their /64, so
    /// this keeps ~150 bytes per such address out of memory.
    pub(super) fn update(
        &mut self,
        members: &BTreeMap<u128, Summary>,
        ip: IpKey,
        old: Option<&Summary>,
        new: Option<&Summary>,
    ) {
        let Some(p) = Prefix::of(ip, self.len) else {
            return;
        };
        let Some(a) = self.map.get_mut(&p.network) else {
            let (lo, hi) = p.bounds();
            if new.is_some() && members.range(lo.0..=hi.0).nth(1).is_some() {
                self.recompute(members, p.network);
            }
            return;
        };
        if let Some(o) = old {
            let maybe_stale = a.sub(o);
            // Growing evidence keeps every extreme exact; only a member
            // that shrank or left can leave one behind.
            let grew = new.is_some_and(|n| {
                n.raw >= o.raw
                    && n.last_seen >= o.last_seen
                    && n.first_seen <= o.first_seen
                    && n.expires >= o.expires
            });
            if maybe_stale && !grew {
                self.dirty.insert(p.network);
            }
        }
        if let Some(n) = new {
            a.add(n);
        }
        if a.members < 2 {
            self.map.remove(&p.network);
            self.dirty.remove(&p.network);
        }
    }

    fn recompute(&mut self, members: &BTreeMap<u128, Summary>, network: u128) {
        let (lo, hi) = Prefix {
            network,
            len: self.len,
        }
        .bounds();
        let a = Agg::of(members.range(lo.0..=hi.0).map(|(_, s)| s));
        if a.members < 2 {
            self.map.remove(&network);
        } else {
            self.map.insert(network, a);
        }
    }

    /// Recomputes every dirty prefix, and those whose oldest member may
    /// have expired by `now` (so their expiry hint becomes exact again).
    pub(super) fn settle(&mut self, members: &BTreeMap<u128, Summary>, now: UnixMillis) {
        let mut due = std::mem::take(&mut self.dirty);
        due.extend(
            self.map
                .iter()
                .filter(|(_, a)| a.min_expires <= now)
                .map(|(n, _)| *n),
        );
        for network in due {
            self.recompute(members, network);
        }
    }

    /// Recomputes only the dirty prefixes (cheap: after each write).
    pub(super) fn settle_dirty(&mut self, members: &BTreeMap<u128, Summary>) {
        for network in std::mem::take(&mut self.dirty) {
            self.recompute(members, network);
        }
    }

    /// The aggregate of `p` over its members live at `now`, leaving out
    /// the members `hidden` names (when given).
    fn live(
        &self,
        members: &BTreeMap<u128, Summary>,
        p: Prefix,
        now: UnixMillis,
        hidden: Option<&dyn Fn(IpKey) -> bool>,
    ) -> Option<Agg> {
        if let Some(a) = self.map.get(&p.network)
            && hidden.is_none()
            && now < a.min_expires
            && !self.dirty.contains(&p.network)
        {
            return Some(*a);
        }
        // A one-address prefix (no aggregate kept), a member that may have
        // expired and not been swept yet (nothing past its date may
        // count), or members to leave out: fold exactly.
        let (lo, hi) = p.bounds();
        let a = Agg::of(
            members
                .range(lo.0..=hi.0)
                .filter(|(ip, s)| s.live(now) && hidden.is_none_or(|h| !h(IpKey(**ip))))
                .map(|(_, s)| s),
        );
        (a.members > 0).then_some(a)
    }

    pub(super) fn verdict(
        &self,
        members: &BTreeMap<u128, Summary>,
        ip: IpKey,
        now: UnixMillis,
        min_addresses: u32,
        hidden: Option<&dyn Fn(IpKey) -> bool>,
    ) -> Option<PrefixVerdict> {
        let p = Prefix::of(ip, self.len)?;
        let a = self.live(members, p, now, hidden)?;
        (a.members >= min_addresses.max(1)).then(|| PrefixVerdict::new(p, &a, now))
    }

    /// The prefixes with at least `min_addresses` (never fewer than two)
    /// addresses, in address order; in those `touches_hidden` names, the
    /// members `hidden` names are left out.
    pub(super) fn verdicts(
        &self,
        members: &BTreeMap<u128, Summary>,
        now: UnixMillis,
        min_addresses: u32,
        touches_hidden: &dyn Fn(Prefix) -> bool,
        hidden: &dyn Fn(IpKey) -> bool,
    ) -> Vec<PrefixVerdict> {
        self.map
            .keys()
            .filter_map(|n| {
                let p = Prefix {
                    network: *n,
                    len: self.len,
                };
                let a = self.live(members, p, now, touches_hidden(p).then_some(hidden))?;
                (a.members >= min_addresses.max(2)).then(|| PrefixVerdict::new(p, &a, now))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::IpIndex;
    use super::*;
    use crate::domain::time::MILLIS_PER_DAY;
    use proptest::prelude::*;

    fn summary(raw: f64, last_day: i64, single: bool, cats: u16) -> Summary {
        let last = UnixMillis(last_day * MILLIS_PER_DAY);
        Summary {
            raw,
            critical: false,
            single_source: single,
            expiries: 0,
            reports: 1,
            categories: cats,
            max_severity: None,
            protocols: 0,
            sessions: 0,
            first_seen: last,
            last_seen: last,
            expires: UnixMillis(last.0 + 30 * MILLIS_PER_DAY),
        }
    }

    fn ip(s: &str) -> IpKey {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_group_ipv6_only_and_expire_with_the_newest_member() {
        let mut idx = IpIndex::default();
        idx.upsert(ip("2a01:4f8:1:2::1"), summary(20.0, 0, false, 1));
        idx.upsert(ip("2a01:4f8:1:2::2"), summary(30.0, 5, false, 2));
        idx.upsert(ip("2a01:4f8:1:3::1"), summary(30.0, 5, false, 2));
        idx.upsert(ip("81.2.69.1"), summary(30.0, 5, false, 2));
        let now = UnixMillis(6 * MILLIS_PER_DAY);
        let v = idx
            .prefix_verdict(ip("2a01:4f8:1:2::99"), now, 2, None)
            .unwrap();
        assert_eq!(v.prefix.to_string(), "2a01:4f8:1:2::/64");
        assert_eq!((v.addresses, v.reports, v.categories), (2, 2, 3));
        assert_eq!(v.last_seen, UnixMillis(5 * MILLIS_PER_DAY));
        assert_eq!(v.expires, UnixMillis(35 * MILLIS_PER_DAY));
        assert!(
            idx.prefix_verdict(ip("2a01:4f8:1:3::9"), now, 2, None)
                .is_none()
        );
        assert!(idx.prefix_verdict(ip("81.2.69.2"), now, 1, None).is_none());
        // The older member expires: it no longer counts, even unswept.
        let day31 = UnixMillis(31 * MILLIS_PER_DAY);
        let v = idx
            .prefix_verdict(ip("2a01:4f8:1:2::99"), day31, 1, None)
            .unwrap();
        assert_eq!(v.addresses, 1);
        assert_eq!(
            idx.prefix_count(),
            1,
            "only 2a01:4f8:1:2::/64 has two addresses"
        );
        idx.drop_buckets_before(32, UnixMillis(32 * MILLIS_PER_DAY));
        // One address left: no aggregate is kept, a lookup folds it.
        assert_eq!(idx.prefix_count(), 0);
        let day32 = UnixMillis(32 * MILLIS_PER_DAY);
        let v = idx.prefix_verdict(ip("2a01:4f8:1:2::99"), day32, 1, None);
        assert_eq!(v.map(|v| v.addresses), Some(1));
        idx.drop_buckets_before(36, UnixMillis(36 * MILLIS_PER_DAY));
        assert!(
            idx.prefix_verdict(
                ip("2a01:4f8:1:2::99"),
                UnixMillis(36 * MILLIS_PER_DAY),
                1,
                None
            )
            .is_none(),
            "gone with the newest member"
        );
        // Hidden members are left out.
        idx.upsert(ip("2a01:4f8:1:2::1"), summary(20.0, 40, false, 1));
        idx.upsert(ip("2a01:4f8:1:2::2"), summary(30.0, 40, false, 2));
        let now = UnixMillis(40 * MILLIS_PER_DAY);
        let hide = |m: IpKey| m == ip("2a01:4f8:1:2::2");
        let v = idx
            .prefix_verdict(ip("2a01:4f8:1:2::3"), now, 1, Some(&hide))
            .unwrap();
        assert_eq!((v.addresses, v.categories), (1, 1));
    }

    #[test]
    fn one_account_per_address_stays_capped_and_spread_raises_the_score() {
        let mut idx = IpIndex::default();
        for n in 1..=10 {
            idx.upsert(IpKey(ip("2a01:4f8::").0 + n), summary(34.0, 0, true, 1));
        }
        let v = idx
            .prefix_verdict(ip("2a01:4f8::ff"), UnixMillis(0), 2, None)
            .unwrap();
        assert_eq!(v.score, score::SINGLE_REPORTER_CAP);
        let mut idx = IpIndex::default();
        idx.upsert(ip("2a01:4f8::1"), summary(40.0, 0, false, 1));
        let one = idx
            .prefix_verdict(ip("2a01:4f8::ff"), UnixMillis(0), 1, None)
            .unwrap()
            .score;
        idx.upsert(ip("2a01:4f8::2"), summary(10.0, 0, false, 1));
        let two = idx
            .prefix_verdict(ip("2a01:4f8::ff"), UnixMillis(0), 1, None)
            .unwrap()
            .score;
        assert!(two > one, "{two} > {one}");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Upsert(u8, u8, u8, bool),
        Remove(u8),
        Sweep(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0_u8..24, 0_u8..40, 0_u8..60, any::<bool>())
                .prop_map(|(a, r, d, s)| Op::Upsert(a, r, d, s)),
            (0_u8..24).prop_map(Op::Remove),
            (0_u8..100).prop_map(Op::Sweep),
        ]
    }

    proptest! {
        /// The incremental aggregates equal a fold over the members, after
        /// any sequence of changes and sweeps.
        #[test]
        fn incremental_equals_recomputed(ops in proptest::collection::vec(op(), 1..80), len in prop_oneof![Just(56_u8), Just(64), Just(128)]) {
            let len = PrefixLen::new(len).unwrap();
            let mut idx = IpIndex::with_prefix(len);
            // Addresses spread over three /64s of one /56.
            let addr = |a: u8| IpKey(ip("2a01:4f8:0:100::").0 + (u128::from(a % 3) << 64) + u128::from(a));
            let mut now = UnixMillis(0);
            for o in &ops {
                match *o {
                    Op::Upsert(a, r, d, s) => idx.upsert(addr(a), summary(f64::from(r), i64::from(d), s, 1 << (a % 16))),
                    Op::Remove(a) => { idx.remove(addr(a)); }
                    Op::Sweep(d) => {
                        now = UnixMillis(i64::from(d) * MILLIS_PER_DAY);
                        idx.drop_buckets_before(now.day(), now);
                    }
                }
                idx.settle_dirty();
                for a in 0..24 {
                    let got = idx.prefix_verdict(addr(a), now, 1, None);
                    let p = Prefix::of(addr(a), len).unwrap();
                    let members: Vec<Summary> = idx
                        .all()
                        .filter(|(k, s)| p.contains(*k) && s.live(now))
                        .map(|(_, s)| *s)
                        .collect();
                    let want = (!members.is_empty()).then(|| PrefixVerdict::new(p, &Agg::of(members.iter()), now));
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
