//! Block lists sized for their target: IPv6 entries widened to a prefix,
//! exact CIDR collapsing and a cap on entries. Runs on a list the
//! never-block set has already filtered, and cuts never-block addresses out
//! of every widened prefix, so no output entry ever covers them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv6Net};

use super::reputation::Blocklist;
use super::{Error, Result, Services};
use crate::domain::IpKey;
use crate::domain::time::UnixMillis;
use crate::geoip::{Brief, GeoDbs, GeoInfo, GeoRef};
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
    /// A network's geolocation: the country and AS its addresses agree on
    /// (each part empty where they differ), kept only when the list shows
    /// it. `None` for a single address, which is looked up when rendered
    /// ([`Self::brief`]), so a long list holds no geolocation.
    pub merged_geo: Option<Box<GeoInfo>>,
    /// Where the embedded tables place a single address, when the list
    /// was built to show it (looked up in address order as it was built).
    pub located: GeoRef,
}

/// A slot of a list being filled (0.0.0.0/0, nothing else): never listed.
impl Default for ShapedEntry {
    fn default() -> Self {
        Self {
            net: IpNet::default(),
            confidence: 0,
            last_seen: UnixMillis(0),
            sessions: 0,
            protocols: 0,
            merged_geo: None,
            located: GeoRef::UNKNOWN,
        }
    }
}

impl ShapedEntry {
    /// One address.
    pub fn single(
        ip: IpKey,
        confidence: u8,
        last_seen: UnixMillis,
        sessions: u32,
        protocols: u16,
    ) -> Self {
        Self {
            net: IpNet::from(ip.to_ip()),
            confidence,
            last_seen,
            sessions,
            protocols,
            merged_geo: None,
            located: GeoRef::UNKNOWN,
        }
    }

    /// Whether the entry is one address, not a network.
    pub fn is_single(&self) -> bool {
        self.net.prefix_len() == self.net.max_prefix_len()
    }

    /// The entry's country and AS: a single address's own from `dbs`
    /// (read where the list placed it, or looked up), a network's as
    /// merged (empty when the list was built without it).
    pub fn brief<'a>(&'a self, dbs: Option<&'a GeoDbs>) -> Brief<'a> {
        match (&self.merged_geo, dbs) {
            (Some(g), _) => g.brief(),
            (None, Some(d)) if self.is_single() => {
                d.brief_at(IpKey::from_ip(self.net.addr()), self.located)
            }
            _ => Brief::default(),
        }
    }

    /// Folds `o` into `self`. With `dbs`, the result keeps the country and
    /// AS both sides agree on.
    fn merge(&mut self, o: &Self, dbs: Option<&GeoDbs>) {
        self.confidence = self.confidence.max(o.confidence);
        self.last_seen = self.last_seen.max(o.last_seen);
        self.sessions = self.sessions.saturating_add(o.sessions);
        self.protocols |= o.protocols;
        if dbs.is_none() {
            return;
        }
        let (mine, theirs) = (self.brief(dbs), o.brief(dbs));
        let same_as = mine.asn == theirs.asn;
        let merged = Brief {
            country_code: mine
                .country_code
                .filter(|c| theirs.country_code == Some(*c)),
            asn: mine.asn.filter(|_| same_as),
            as_org: mine.as_org.filter(|_| same_as),
        }
        .to_info();
        self.merged_geo = Some(Box::new(merged));
    }

    /// The order of every block list: confidence, then recency (both
    /// highest first), then network (IPv4 first, by address, then prefix
    /// length). Plain field comparisons: a list of 1,000,000 is sorted
    /// with some 20 million of them. Networks compare as integers
    /// (`IpNet`'s own order goes through the address's bytes or groups,
    /// a quarter of a sort where many entries share a second).
    pub fn order(a: &Self, b: &Self) -> std::cmp::Ordering {
        (b.confidence, b.last_seen.0)
            .cmp(&(a.confidence, a.last_seen.0))
            .then_with(|| net_rank(&a.net).cmp(&net_rank(&b.net)))
    }
}

/// `IpNet`'s order as integers: IPv4 first, then by address, then by
/// prefix length.
#[inline]
fn net_rank(n: &IpNet) -> (bool, u128, u8) {
    match n {
        IpNet::V4(v) => (false, u128::from(v.addr().to_bits()), v.prefix_len()),
        IpNet::V6(v) => (true, v.addr().to_bits(), v.prefix_len()),
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
    /// Sizes `list` (already filtered and cut to its `limit`):
    /// IPv6 entries widened to their /N (minus never-block addresses), then
    /// collapsed, then ordered by confidence and cut to `max_entries`.
    /// Without a shape the list keeps its order, one entry per address.
    /// With `dbs` (the databases the list is rendered with), networks
    /// keep the geolocation their addresses agree on.
    pub fn shape_blocklist(
        &self,
        list: Blocklist,
        shape: &Shape,
        ignore_whitelist: bool,
        dbs: Option<&GeoDbs>,
    ) -> Result<Blocklist> {
        if *shape == Shape::default() {
            return Ok(list);
        }
        let list = list.into_sorted();
        let mut out = match shape.ipv6_prefix {
            None => list,
            Some(len) => self.widen_v6(list, len, ignore_whitelist, dbs)?,
        };
        if shape.collapse {
            out = collapse::collapse(out.into_iter().map(|e| (e.net, e)).collect(), |a, b| {
                a.merge(&b, dbs);
            })
            .into_iter()
            .map(|(net, mut e)| {
                e.net = net;
                e
            })
            .collect();
        }
        if shape.networks() {
            out.sort_unstable_by(ShapedEntry::order);
        }
        if let Some(m) = shape.max_entries {
            out.truncate(m);
        }
        Ok(Blocklist {
            entries: out,
            sorted: true,
        })
    }

    fn widen_v6(
        &self,
        list: Vec<ShapedEntry>,
        len: u8,
        ignore_whitelist: bool,
        dbs: Option<&GeoDbs>,
    ) -> Result<Vec<ShapedEntry>> {
        let mut out = Vec::with_capacity(list.len());
        let mut prefixes: BTreeMap<Ipv6Net, ShapedEntry> = BTreeMap::new();
        for mut s in list {
            let IpAddr::V6(a) = s.net.addr() else {
                out.push(s);
                continue;
            };
            let net = Ipv6Net::new(a, len)
                .map_err(|_| Error::invalid("ipv6Prefix", "must be an integer from 32 to 128"))?
                .trunc();
            // The address's own geolocation travels with its network.
            if dbs.is_some() && s.merged_geo.is_none() {
                s.merged_geo = Some(Box::new(s.brief(dbs).to_info()));
            }
            s.net = IpNet::V6(net);
            match prefixes.get_mut(&net) {
                Some(p) => p.merge(&s, dbs),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geoip::GeoFiles;

    fn single(ip: &str) -> ShapedEntry {
        ShapedEntry::single(ip.parse().unwrap(), 60, UnixMillis(5), 1, 1)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]
        /// The integer comparison of networks is `IpNet`'s own order.
        #[test]
        fn order_is_confidence_recency_then_the_networks_own_order(
            conf in proptest::collection::vec(0_u8..3, 2),
            seen in proptest::collection::vec(-1_i64..2, 2),
            bits in proptest::collection::vec(proptest::prelude::any::<u128>(), 2),
            wide in proptest::collection::vec(proptest::prelude::any::<bool>(), 2),
            v6 in proptest::collection::vec(proptest::prelude::any::<bool>(), 2),
            same_addr in proptest::prelude::any::<bool>(),
        ) {
            let e = |i: usize| {
                let b = if same_addr { bits[0] } else { bits[i] };
                // Short prefixes often, so equal addresses with different
                // lengths (and IPv4 beside IPv6) are compared.
                let net = if v6[i] {
                    IpNet::V6(ipnet::Ipv6Net::new(b.into(), if wide[i] { 48 } else { 128 }).unwrap())
                } else {
                    #[allow(clippy::cast_possible_truncation)]
                    let a = std::net::Ipv4Addr::from(b as u32);
                    IpNet::V4(ipnet::Ipv4Net::new(a, if wide[i] { 24 } else { 32 }).unwrap())
                };
                ShapedEntry { net, confidence: conf[i], last_seen: UnixMillis(seen[i]), sessions: 0, protocols: 0, merged_geo: None, located: GeoRef::UNKNOWN }
            };
            let (a, b) = (e(0), e(1));
            let want = b.confidence.cmp(&a.confidence)
                .then(b.last_seen.cmp(&a.last_seen))
                .then_with(|| a.net.cmp(&b.net));
            proptest::prop_assert_eq!(ShapedEntry::order(&a, &b), want);
        }
    }

    #[test]
    fn entries_are_small_and_hold_no_geolocation_of_their_own() {
        // 1,000,000 entries stay under 50 MB while a list is sent.
        assert!(std::mem::size_of::<ShapedEntry>() <= 48);
        let dbs = GeoDbs::load(&GeoFiles::default()).unwrap();
        let e = single("8.8.8.8");
        assert!(e.merged_geo.is_none());
        let full = dbs.lookup("8.8.8.8".parse().unwrap());
        assert!(full.country_name.is_some());
        let brief = GeoInfo {
            country_name: None,
            ..full
        };
        assert_eq!(e.brief(Some(&dbs)).to_info(), brief);
        let mut net = single("8.8.8.8");
        net.net = "8.8.8.0/24".parse().unwrap();
        assert_eq!(e.brief(None), Brief::default());
        assert_eq!(net.brief(Some(&dbs)), Brief::default());
    }

    #[test]
    fn lists_order_by_confidence_then_recency_then_network() {
        let e = |ip: &str, confidence, t| {
            ShapedEntry::single(ip.parse().unwrap(), confidence, UnixMillis(t), 1, 1)
        };
        let mut list = [
            e("2a00::1", 90, 5),
            e("9.9.9.9", 90, 5),
            e("1.1.1.1", 90, 5),
            e("8.8.8.8", 90, 9),
            e("7.7.7.7", 100, 1),
            e("6.6.6.6", 10, 1_800_000_000_000),
        ];
        list.sort_unstable_by(ShapedEntry::order);
        let got: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "7.7.7.7", "8.8.8.8", "1.1.1.1", "9.9.9.9", "2a00::1", "6.6.6.6"
            ]
        );
    }

    #[test]
    fn a_merged_entry_keeps_the_geolocation_its_addresses_share() {
        let dbs = GeoDbs::load(&GeoFiles::default()).unwrap();
        let google = dbs.lookup("8.8.8.8".parse().unwrap());
        assert_eq!(google.asn, Some(15_169));
        let mut a = single("8.8.8.8");
        a.merge(&single("8.8.4.4"), Some(&dbs));
        let g = a.merged_geo.as_deref().unwrap();
        assert_eq!(
            (g.country_code, g.asn, &g.as_org),
            (google.country_code, google.asn, &google.as_org)
        );
        // Another country and AS: nothing is shared any more.
        a.merge(&single("1.1.1.1"), Some(&dbs));
        assert_eq!(a.merged_geo.as_deref(), Some(&GeoInfo::default()));
        assert_eq!(a.sessions, 3);
        // Without geolocation asked for, none is kept.
        let mut b = single("8.8.8.8");
        b.merge(&single("8.8.4.4"), None);
        assert!(b.merged_geo.is_none());
    }
}
