//! IPv6 prefixes for evidence aggregation: the configured prefix length and
//! the network an address belongs to. Pure arithmetic on `IpKey`.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use super::ip::IpKey;

/// Length of the IPv6 prefix evidence is grouped by (`--ipv6-prefix`).
/// Shorter than /32 would lump whole providers together; /128 turns
/// grouping off in effect (every prefix holds one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrefixLen(u8);

impl PrefixLen {
    pub const MIN: u8 = 32;
    pub const MAX: u8 = 128;
    /// A /64 is what one subscriber line or one server is usually given.
    pub const DEFAULT: Self = Self(64);

    pub fn new(len: u8) -> Option<Self> {
        (Self::MIN..=Self::MAX).contains(&len).then_some(Self(len))
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// The host bits below the prefix.
    fn host_mask(self) -> u128 {
        if self.0 >= 128 {
            0
        } else {
            u128::MAX >> self.0
        }
    }
}

impl Default for PrefixLen {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for PrefixLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for PrefixLen {
    type Err = String;

    /// `64` or `/64`; anything outside 32..=128 is refused.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let digits = t.strip_prefix('/').unwrap_or(t);
        let n: u8 = digits.parse().map_err(|_| {
            format!(
                "'{s}' is not a prefix length (a number from {} to {}, e.g. 64)",
                Self::MIN,
                Self::MAX
            )
        })?;
        Self::new(n).ok_or_else(|| {
            format!(
                "/{n} is outside the allowed IPv6 prefix lengths /{} to /{}",
                Self::MIN,
                Self::MAX
            )
        })
    }
}

/// One IPv6 network: its first address and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    pub network: u128,
    pub len: PrefixLen,
}

impl Prefix {
    /// The prefix of `ip`, or `None` for IPv4 (IPv4 is not grouped).
    pub fn of(ip: IpKey, len: PrefixLen) -> Option<Self> {
        (!ip.is_v4()).then(|| Self {
            network: ip.0 & !len.host_mask(),
            len,
        })
    }

    /// The first and last address of the prefix (both inclusive).
    pub fn bounds(self) -> (IpKey, IpKey) {
        (
            IpKey(self.network),
            IpKey(self.network | self.len.host_mask()),
        )
    }

    pub fn contains(self, ip: IpKey) -> bool {
        Self::of(ip, self.len) == Some(self)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv6Addr::from(self.network), self.len)
    }
}

/// Raw points per natural-log unit of distinct addresses in a prefix.
pub const SPREAD_PER_LN: f64 = 8.0;
/// Most raw points the spread over a prefix can add.
pub const SPREAD_MAX: f64 = 20.0;

/// Points for evidence spread over `addresses` addresses of one prefix:
/// 2 → 5.5, 3 → 8.8, 5 → 12.9, 10 → 18.4, from 13 on 20.
pub fn spread_points(addresses: u32) -> f64 {
    (SPREAD_PER_LN * f64::from(addresses.max(1)).ln()).min(SPREAD_MAX)
}

/// The prefix score: the strongest member's raw points plus the spread,
/// mapped to 0–100 like an address's score. When no member is corroborated
/// (each address has reports of one account at most and no sensor saw
/// any), the prefix is held at the single-reporter cap, since one account
/// could be behind all of it.
pub fn score(
    strongest_raw: f64,
    addresses: u32,
    recency: f64,
    critical: bool,
    corroborated: bool,
) -> u8 {
    super::score::finalize_capped(
        strongest_raw + spread_points(addresses),
        recency,
        critical,
        !corroborated,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpKey {
        s.parse().unwrap()
    }

    #[test]
    fn lengths_are_checked() {
        for bad in ["0", "/0", "31", "129", "/129", "255", "-1", "", "x", "64.5"] {
            assert!(bad.parse::<PrefixLen>().is_err(), "{bad:?}");
        }
        assert_eq!("64".parse::<PrefixLen>().unwrap().get(), 64);
        assert_eq!("/48".parse::<PrefixLen>().unwrap().get(), 48);
        assert_eq!("32".parse::<PrefixLen>().unwrap().get(), 32);
        assert_eq!("128".parse::<PrefixLen>().unwrap().get(), 128);
        assert!(
            "129"
                .parse::<PrefixLen>()
                .unwrap_err()
                .contains("/32 to /128")
        );
    }

    #[test]
    fn networks_and_display() {
        let len = PrefixLen::DEFAULT;
        let p = Prefix::of(ip("2a00:1450:4001:81c::200e"), len).unwrap();
        assert_eq!(p.to_string(), "2a00:1450:4001:81c::/64");
        assert!(p.contains(ip("2a00:1450:4001:81c:ffff::1")));
        assert!(!p.contains(ip("2a00:1450:4001:81d::1")));
        assert!(Prefix::of(ip("1.2.3.4"), len).is_none());
        let p48 = Prefix::of(ip("2a00:1450:4001:81c::1"), PrefixLen::new(48).unwrap()).unwrap();
        assert_eq!(p48.to_string(), "2a00:1450:4001::/48");
        assert!(p48.contains(ip("2a00:1450:4001:ffff::1")));
        let p128 = Prefix::of(ip("2a00::1"), PrefixLen::new(128).unwrap()).unwrap();
        assert_eq!(p128.bounds(), (ip("2a00::1"), ip("2a00::1")));
    }

    fn v6() -> impl Strategy<Value = IpKey> {
        any::<u128>()
            .prop_map(IpKey)
            .prop_filter("IPv6 only", |k| !k.is_v4())
    }

    proptest! {
        #[test]
        fn prefix_contains_exactly_the_addresses_sharing_the_leading_bits(
            a in v6(), b in v6(), len in PrefixLen::MIN..=PrefixLen::MAX,
        ) {
            let len = PrefixLen::new(len).unwrap();
            let p = Prefix::of(a, len).unwrap();
            let (lo, hi) = p.bounds();
            // The address lies in its own prefix, at the network boundary.
            prop_assert!(lo <= a && a <= hi);
            prop_assert_eq!(lo.0, p.network);
            prop_assert_eq!(hi.0 - lo.0, if len.get() == 128 { 0 } else { u128::MAX >> len.get() });
            // Same prefix exactly when the leading `len` bits agree.
            let shift = 128 - u32::from(len.get());
            let same_bits = (a.0 >> shift) == (b.0 >> shift);
            prop_assert_eq!(p.contains(b), same_bits && !b.is_v4());
            // Idempotent, and a longer prefix nests inside a shorter one.
            prop_assert_eq!(Prefix::of(lo, len), Some(p));
            if len.get() > PrefixLen::MIN {
                let shorter = PrefixLen::new(len.get() - 1).unwrap();
                prop_assert!(Prefix::of(a, shorter).unwrap().contains(lo));
            }
            // The textual form parses back to the same network.
            let net: ipnet::Ipv6Net = p.to_string().parse().unwrap();
            prop_assert_eq!(u128::from(net.network()), p.network);
            prop_assert_eq!(net.prefix_len(), len.get());
        }
    }
}
