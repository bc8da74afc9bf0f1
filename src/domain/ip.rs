//! IP addresses as sortable `u128` keys, strict parsing, and log anonymisation.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP address as a `u128`; IPv4 is mapped into `::ffff:0:0/96` so that
/// both families share one ordered key space (CIDR queries are range scans).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct IpKey(pub u128);

const V4_MAPPED_PREFIX: u128 = 0xffff_u128 << 32;
const V4_MAPPED_MASK: u128 = !0xffff_ffff_u128;

impl IpKey {
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(V4_MAPPED_PREFIX | u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::from_ip(IpAddr::V4(v4)),
                None => Self(u128::from(v6)),
            },
        }
    }

    pub fn is_v4(self) -> bool {
        self.0 & V4_MAPPED_MASK == V4_MAPPED_PREFIX
    }

    pub fn to_ip(self) -> IpAddr {
        if self.is_v4() {
            #[allow(clippy::cast_possible_truncation)]
            IpAddr::V4(Ipv4Addr::from(self.0 as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.0))
        }
    }
}

impl fmt::Display for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_ip().fmt(f)
    }
}

/// Ranges that are never a public attacker's address: private, loopback,
/// link-local, multicast, reserved, documentation, benchmarking, shared.
const NON_PUBLIC: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "100::/64",
    "2001:2::/48",
    "2001:db8::/32",
    "3fff::/20",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

fn non_public() -> &'static crate::index::ranges::CidrSet<()> {
    use crate::index::ranges::CidrSet;
    static SET: std::sync::OnceLock<CidrSet<()>> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        CidrSet::new(
            NON_PUBLIC
                .iter()
                .filter_map(|n| n.parse::<ipnet::IpNet>().ok())
                .map(|n| (n, ())),
        )
    })
}

impl IpKey {
    /// Whether the address is publicly routable (reports about others are refused).
    pub fn is_public(self) -> bool {
        !non_public().contains(self)
    }
}

/// Why a textual IP address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpParseError {
    #[error("empty IP address")]
    Empty,
    #[error("IPv6 zone identifiers are not accepted")]
    ZoneId,
    #[error("not a valid IPv4 or IPv6 address")]
    Invalid,
}

impl FromStr for IpKey {
    type Err = IpParseError;

    /// Strict: no surrounding whitespace, no zone ids, no leading zeros in
    /// IPv4 octets (std already refuses them), no brackets.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(IpParseError::Empty);
        }
        if s.contains('%') {
            return Err(IpParseError::ZoneId);
        }
        IpAddr::from_str(s)
            .map(Self::from_ip)
            .map_err(|_| IpParseError::Invalid)
    }
}

/// How client addresses appear in logs. There is no mode that logs them raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogIpMode {
    /// IPv4 truncated to its /24, IPv6 to its /48.
    #[default]
    Truncate,
    /// No client address at all.
    Omit,
}

impl LogIpMode {
    /// The form of `ip` that may be written to a log line.
    pub fn render(self, ip: IpAddr) -> String {
        match self {
            Self::Omit => "-".to_owned(),
            Self::Truncate => truncate(ip),
        }
    }
}

/// `203.0.113.77` → `203.0.113.0/24`; `2001:db8:1:2::3` → `2001:db8:1::/48`.
pub fn truncate(ip: IpAddr) -> String {
    match IpKey::from_ip(ip).to_ip() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let masked = u128::from(v6) & !((1_u128 << 80) - 1);
            format!("{}/48", Ipv6Addr::from(masked))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_mapped_v6_share_a_key() {
        let a: IpKey = "203.0.113.9".parse().unwrap();
        let b: IpKey = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(a, b);
        assert!(a.is_v4());
        assert_eq!(a.to_string(), "203.0.113.9");
        let c: IpKey = "2001:db8::1".parse().unwrap();
        assert!(!c.is_v4());
        assert_eq!(c.to_string(), "2001:db8::1");
    }

    #[test]
    fn keys_sort_by_address() {
        let lo: IpKey = "1.2.3.4".parse().unwrap();
        let hi: IpKey = "1.2.3.5".parse().unwrap();
        assert!(lo < hi);
    }

    #[test]
    fn strict_parsing_refuses_odd_forms() {
        for bad in [
            "",
            "1.2.3.4.5",
            "::ffff:999.1.1.1",
            "fe80::1%eth0",
            "01.2.3.4",
            "1.2.3.04",
            " 1.2.3.4",
            "1.2.3.4 ",
            "[::1]",
            "1.2.3",
            "256.1.1.1",
            "abc",
        ] {
            assert!(bad.parse::<IpKey>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn public_and_non_public() {
        for ip in ["1.2.3.4", "8.8.8.8", "2a00:1450::1", "185.220.101.1"] {
            assert!(ip.parse::<IpKey>().unwrap().is_public(), "{ip}");
        }
        for ip in [
            "10.1.1.1",
            "127.0.0.1",
            "192.168.0.1",
            "203.0.113.5",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            "::ffff:192.168.1.1",
            "100.64.0.1",
            "0.1.2.3",
        ] {
            assert!(!ip.parse::<IpKey>().unwrap().is_public(), "{ip}");
        }
    }

    #[test]
    fn truncation_hides_host_bits() {
        assert_eq!(truncate("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(
            truncate("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1::/48"
        );
        assert_eq!(truncate("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.0/24");
        assert_eq!(LogIpMode::Omit.render("1.2.3.4".parse().unwrap()), "-");
    }
}
