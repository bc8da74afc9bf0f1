//! A set of IP ranges (CIDRs) answering "is this address covered" in
//! O(log n): ranges are kept sorted and merged.

use ipnet::IpNet;

use crate::domain::IpKey;

/// Inclusive `u128` bounds of a network, in the `IpKey` space.
pub fn bounds(net: &IpNet) -> (u128, u128) {
    let lo = IpKey::from_ip(net.network()).0;
    let hi = IpKey::from_ip(net.broadcast()).0;
    (lo, hi)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    merged: Vec<(u128, u128)>,
}

impl RangeSet {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut v: Vec<(u128, u128)> = nets.into_iter().map(|n| bounds(&n)).collect();
        v.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        Self { merged }
    }

    pub fn contains(&self, ip: IpKey) -> bool {
        let i = self.merged.partition_point(|&(lo, _)| lo <= ip.0);
        i > 0 && self.merged[i - 1].1 >= ip.0
    }

    pub fn is_empty(&self) -> bool {
        self.merged.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn membership() {
        let s = RangeSet::new(
            [
                "10.0.0.0/8",
                "192.168.1.0/24",
                "2001:db8::/32",
                "10.1.0.0/16",
            ]
            .map(|n| n.parse().unwrap()),
        );
        for ip in [
            "10.0.0.1",
            "10.255.255.255",
            "192.168.1.77",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(s.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["11.0.0.0", "192.168.2.1", "2001:db9::1", "9.255.255.255"] {
            assert!(!s.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(RangeSet::default().is_empty());
    }

    proptest! {
        #[test]
        fn agrees_with_a_linear_scan(nets in proptest::collection::vec((any::<u32>(), 8_u8..=32), 0..30), probes in proptest::collection::vec(any::<u32>(), 50)) {
            let nets: Vec<IpNet> = nets.into_iter().map(|(a, p)| IpNet::new(std::net::Ipv4Addr::from(a).into(), p).unwrap().trunc()).collect();
            let set = RangeSet::new(nets.clone());
            for p in probes {
                let ip = std::net::IpAddr::V4(p.into());
                prop_assert_eq!(set.contains(IpKey::from_ip(ip)), nets.iter().any(|n| n.contains(&ip)));
            }
        }
    }
}
