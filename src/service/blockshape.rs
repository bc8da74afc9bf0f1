//! Block lists sized for their target: IPv6 entries widened to a prefix,
//! exact CIDR collapsing and a cap on entries. Runs on a list the
//! never-block set has already filtered, and cuts never-block addresses out
//! of every widened prefix, so no output entry ever covers them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv6Net};

use super::reputation::BlockEntry;
use super::{Error, Result, Services};
use crate::domain::IpKey;
use crate::domain::time::UnixMillis;
use crate::geoip::GeoInfo;
use crate::index::collapse;

/// How a block list is sized (all off by default: one entry per address).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// At most this many entries, highest confidence first.
    pub max_entries: Option<usize>,
    /// Merge adjacent and contained entries into the fewest exact CIDRs.
    pub collapse: bool,
    /// IPv6 entries become their /N network (32..=128).
    pub ipv6_prefix: Option<u8>,
}

impl Shape {
    /// The largest `maxEntries` accepted.
    pub const MAX_ENTRIES: u64 = 10_000_000;
    /// The accepted `ipv6Prefix` lengths.
    pub const IPV6_PREFIX: std::ops::RangeInclusive<u64> = 32..=128;

    /// Whether entries may be networks: firewall files then use set types
    /// that hold networks (`hash:net`, nft `flags interval`).
    pub fn networks(&self) -> bool {
        self.collapse || self.ipv6_prefix.is_some()
    }
}

/// One entry of a sized block list: an address or a network, with the
/// strongest evidence of the listed addresses inside it.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapedEntry {
    pub net: IpNet,
    /// The highest confidence of the addresses merged into this entry.
    pub confidence: u8,
    /// The latest `lastSeen` of those addresses.
    pub last_seen: UnixMillis,
    /// Their sessions, summed.
    pub sessions: u32,
    /// Their protocols, united.
    pub protocols: u16,
    /// Country and AS where every merged address agrees; empty otherwise.
    pub geo: GeoInfo,
}

impl ShapedEntry {
    pub fn single(e: BlockEntry) -> Self {
        Self {
            net: IpNet::from(e.ip.to_ip()),
            confidence: e.confidence,
            last_seen: e.last_seen,
            sessions: e.sessions,
            protocols: e.protocols,
            geo: e.geo,
        }
    }

    fn merge(&mut self, o: &Self) {
        self.confidence = self.confidence.max(o.confidence);
        self.last_seen = self.last_seen.max(o.last_seen);
        self.sessions = self.sessions.saturating_add(o.sessions);
        self.protocols |= o.protocols;
        if self.geo != o.geo {
            let same_as = self.geo.asn == o.geo.asn;
            self.geo = GeoInfo {
                country_code: self
                    .geo
                    .country_code
                    .filter(|c| o.geo.country_code == Some(*c)),
                asn: self.geo.asn.filter(|_| same_as),
                as_org: self.geo.as_org.take().filter(|_| same_as),
                ..GeoInfo::default()
            };
        }
    }

    /// Order of a sized list: confidence, then recency, then address.
    fn order(a: &Self, b: &Self) -> std::cmp::Ordering {
        b.confidence
            .cmp(&a.confidence)
            .then(b.last_seen.cmp(&a.last_seen))
            .then_with(|| {
                (IpKey::from_ip(a.net.network()), a.net.prefix_len())
                    .cmp(&(IpKey::from_ip(b.net.network()), b.net.prefix_len()))
            })
    }
}

/// A single host as its bare address, a wider network in CIDR notation.
impl fmt::Display for ShapedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.net.prefix_len() == self.net.max_prefix_len() {
            self.net.addr().fmt(f)
        } else {
            self.net.fmt(f)
        }
    }
}

/// IPv4-mapped IPv6 addresses are IPv4 in every index; a widened IPv6
/// prefix never covers them.
const V4_MAPPED: (u128, u128) = (0xffff_u128 << 32, (0xffff_u128 << 32) | 0xffff_ffff);

impl Services {
    /// Sizes `list` (already filtered, ordered and cut to its `limit`):
    /// IPv6 entries widened to their /N (minus never-block addresses), then
    /// collapsed, then ordered by confidence and cut to `max_entries`.
    /// Without a shape the list keeps its order, one entry per address.
    pub fn shape_blocklist(
        &self,
        list: Vec<BlockEntry>,
        shape: &Shape,
        ignore_whitelist: bool,
    ) -> Result<Vec<ShapedEntry>> {
        let mut out: Vec<ShapedEntry> = match shape.ipv6_prefix {
            None => list.into_iter().map(ShapedEntry::single).collect(),
            Some(len) => self.widen_v6(list, len, ignore_whitelist)?,
        };
        if shape.collapse {
            out = collapse::collapse(out.into_iter().map(|e| (e.net, e)).collect(), |a, b| {
                a.merge(&b);
            })
            .into_iter()
            .map(|(net, mut e)| {
                e.net = net;
                e
            })
            .collect();
        }
        if shape.networks() {
            out.sort_by(ShapedEntry::order);
        }
        if let Some(m) = shape.max_entries {
            out.truncate(m);
        }
        Ok(out)
    }

    fn widen_v6(
        &self,
        list: Vec<BlockEntry>,
        len: u8,
        ignore_whitelist: bool,
    ) -> Result<Vec<ShapedEntry>> {
        let mut out = Vec::with_capacity(list.len());
        let mut prefixes: BTreeMap<Ipv6Net, ShapedEntry> = BTreeMap::new();
        for e in list {
            let IpAddr::V6(a) = e.ip.to_ip() else {
                out.push(ShapedEntry::single(e));
                continue;
            };
            let net = Ipv6Net::new(a, len)
                .map_err(|_| Error::invalid("ipv6Prefix", "must be an integer from 32 to 128"))?
                .trunc();
            let mut s = ShapedEntry::single(e);
            s.net = IpNet::V6(net);
            match prefixes.get_mut(&net) {
                Some(p) => p.merge(&s),
                None => {
                    prefixes.insert(net, s);
                }
            }
        }
        if prefixes.is_empty() {
            return Ok(out);
        }
        let internal = || Error::Internal {
            detail: "lock poisoned".into(),
        };
        let mut corrected: Vec<u128> = self
            .threat
            .corrected
            .read()
            .map_err(|_| internal())?
            .iter()
            .filter(|ip| !ip.is_v4())
            .map(|ip| ip.0)
            .collect();
        corrected.sort_unstable();
        let whitelist = self.threat.whitelist.read().map_err(|_| internal())?;
        for (net, entry) in prefixes {
            let (_, lo, hi) = collapse::span(&IpNet::V6(net));
            let mut holes = vec![V4_MAPPED];
            if !ignore_whitelist {
                holes.extend(whitelist.overlapping(lo, hi));
            }
            let first = corrected.partition_point(|c| *c < lo);
            holes.extend(
                corrected[first..]
                    .iter()
                    .take_while(|c| **c <= hi)
                    .map(|c| (*c, *c)),
            );
            for piece in collapse::subtract(&IpNet::V6(net), &mut holes) {
                let mut e = entry.clone();
                e.net = piece;
                out.push(e);
            }
        }
        Ok(out)
    }
}
