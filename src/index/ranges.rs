//! CIDR sets answering "which ranges contain this address" in O(log n):
//! CIDRs are either nested or disjoint, so entries sorted by start (wider
//! first) form a forest; a binary search finds the nearest candidate and
//! parent links lead to every enclosing range.

use ipnet::IpNet;

use crate::domain::IpKey;

/// Inclusive `u128` bounds of a network, in the `IpKey` space.
pub fn bounds(net: &IpNet) -> (u128, u128) {
    let lo = IpKey::from_ip(net.network()).0;
    let hi = IpKey::from_ip(net.broadcast()).0;
    (lo, hi)
}

#[derive(Clone, Debug)]
struct Node<T> {
    lo: u128,
    hi: u128,
    value: T,
    parent: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct CidrSet<T> {
    nodes: Vec<Node<T>>,
}

impl<T> Default for CidrSet<T> {
    fn default() -> Self {
        Self { nodes: Vec::new() }
    }
}

impl<T> CidrSet<T> {
    pub fn new(entries: impl IntoIterator<Item = (IpNet, T)>) -> Self {
        let mut nodes: Vec<Node<T>> = entries
            .into_iter()
            .map(|(net, value)| {
                let (lo, hi) = bounds(&net.trunc());
                Node {
                    lo,
                    hi,
                    value,
                    parent: None,
                }
            })
            .collect();
        // Wider ranges first among equal starts, so parents precede children.
        nodes.sort_by(|a, b| a.lo.cmp(&b.lo).then(b.hi.cmp(&a.hi)));
        let mut stack: Vec<usize> = Vec::new();
        for i in 0..nodes.len() {
            while let Some(&top) = stack.last() {
                if nodes[top].hi >= nodes[i].hi {
                    break;
                }
                stack.pop();
            }
            nodes[i].parent = stack.last().copied();
            stack.push(i);
        }
        Self { nodes }
    }

    /// Every range containing `ip`, innermost first.
    pub fn containing(&self, ip: IpKey) -> Vec<&T> {
        let mut out = Vec::new();
        let mut at = self.nodes.partition_point(|n| n.lo <= ip.0).checked_sub(1);
        while let Some(i) = at {
            let n = &self.nodes[i];
            if n.hi >= ip.0 {
                out.push(&n.value);
            }
            at = n.parent;
        }
        out
    }

    /// Whether any range contains `ip`.
    pub fn contains(&self, ip: IpKey) -> bool {
        let mut at = self.nodes.partition_point(|n| n.lo <= ip.0).checked_sub(1);
        while let Some(i) = at {
            if self.nodes[i].hi >= ip.0 {
                return true;
            }
            at = self.nodes[i].parent;
        }
        false
    }

    /// The bounds of every range sharing at least one address with
    /// `lo..=hi` (in the `IpKey` space).
    pub fn overlapping(&self, lo: u128, hi: u128) -> Vec<(u128, u128)> {
        let mut out = Vec::new();
        // Ranges starting before `lo` that reach it all enclose the last of
        // them to start before `lo`, so they are on its parent chain.
        let start = self.nodes.partition_point(|n| n.lo < lo);
        let mut at = start.checked_sub(1);
        while let Some(i) = at {
            let n = &self.nodes[i];
            if n.hi >= lo {
                out.push((n.lo, n.hi));
            }
            at = n.parent;
        }
        out.extend(
            self.nodes[start..]
                .iter()
                .take_while(|n| n.lo <= hi)
                .map(|n| (n.lo, n.hi)),
        );
        out
    }

    /// Whether any range shares an address with `lo..=hi` (itself a CIDR
    /// block, so it either nests with a range or is disjoint from it).
    pub fn overlaps(&self, lo: IpKey, hi: IpKey) -> bool {
        if self.contains(lo) {
            return true;
        }
        let i = self.nodes.partition_point(|n| n.lo < lo.0);
        self.nodes.get(i).is_some_and(|n| n.lo <= hi.0)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(nets: &[&str]) -> CidrSet<String> {
        CidrSet::new(nets.iter().map(|n| (n.parse().unwrap(), (*n).to_owned())))
    }

    #[test]
    fn membership_and_which_ranges() {
        let s = set(&[
            "10.0.0.0/8",
            "192.168.1.0/24",
            "2001:db8::/32",
            "10.1.0.0/16",
            "10.1.2.0/24",
        ]);
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
        let which: Vec<&String> = s.containing("10.1.2.3".parse().unwrap());
        assert_eq!(which, ["10.1.2.0/24", "10.1.0.0/16", "10.0.0.0/8"]);
        // A later sibling that does not contain the address, inside a parent that does.
        let which: Vec<&String> = s.containing("10.200.0.1".parse().unwrap());
        assert_eq!(which, ["10.0.0.0/8"]);
        assert!(CidrSet::<()>::default().is_empty());
    }

    proptest! {
        #[test]
        fn agrees_with_a_linear_scan(nets in proptest::collection::vec((any::<u32>(), 0_u8..=32), 0..40), probes in proptest::collection::vec(any::<u32>(), 60), window in proptest::collection::vec((any::<u32>(), 0_u8..=32), 8)) {
            let nets: Vec<IpNet> = nets.into_iter().map(|(a, p)| IpNet::new(std::net::Ipv4Addr::from(a).into(), p).unwrap().trunc()).collect();
            let s = CidrSet::new(nets.iter().enumerate().map(|(i, n)| (*n, i)));
            for p in probes {
                let ip = std::net::IpAddr::V4(p.into());
                let mut want: Vec<usize> = nets.iter().enumerate().filter(|(_, n)| n.contains(&ip)).map(|(i, _)| i).collect();
                let mut got: Vec<usize> = s.containing(IpKey::from_ip(ip)).into_iter().copied().collect();
                want.sort_unstable();
                got.sort_unstable();
                prop_assert_eq!(&got, &want);
                prop_assert_eq!(s.contains(IpKey::from_ip(ip)), !want.is_empty());
            }
            for (a, p) in window {
                let w = IpNet::new(std::net::Ipv4Addr::from(a).into(), p).unwrap().trunc();
                let (lo, hi) = bounds(&w);
                let mut want: Vec<(u128, u128)> = nets.iter().map(bounds).filter(|(l, h)| *l <= hi && *h >= lo).collect();
                let mut got = s.overlapping(lo, hi);
                want.sort_unstable();
                got.sort_unstable();
                prop_assert_eq!(got, want);
            }
        }
    }
}
