//! Exact CIDR arithmetic for block lists: collapsing a set of addresses and
//! networks into the fewest CIDRs covering exactly their union, and cutting
//! holes (never-block ranges) out of a network. Pure, without I/O.
//!
//! Each family is handled in its own address space (IPv4 as 32-bit,
//! IPv6 as 128-bit numbers), so an IPv4 and an IPv6 network never merge.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// An address family; IPv4 sorts first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn bits(self) -> u32 {
        match self {
            Self::V4 => 32,
            Self::V6 => 128,
        }
    }
}

/// A network as inclusive bounds inside its family's own number space.
pub fn span(net: &IpNet) -> (Family, u128, u128) {
    match net {
        IpNet::V4(n) => (
            Family::V4,
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (
            Family::V6,
            u128::from(n.network()),
            u128::from(n.broadcast()),
        ),
    }
}

/// The network of `2^(bits - len)` addresses starting at `lo`; None only
/// for bounds outside the family (never produced by this module).
fn net_at(f: Family, lo: u128, len: u32) -> Option<IpNet> {
    let len = u8::try_from(len).ok()?;
    match f {
        Family::V4 => {
            let a = Ipv4Addr::from(u32::try_from(lo).ok()?);
            Ipv4Net::new(a, len).ok().map(IpNet::V4)
        }
        Family::V6 => Ipv6Net::new(Ipv6Addr::from(lo), len).ok().map(IpNet::V6),
    }
}

/// Appends the fewest aligned networks covering exactly `lo..=hi`, in
/// address order. Greedy from the left: at each start the largest block
/// that is aligned there and does not run past `hi`. The blocks produced
/// are exactly the maximal CIDRs inside the interval, so every CIDR inside
/// the interval lies in exactly one of them.
pub fn blocks(f: Family, lo: u128, hi: u128, out: &mut Vec<IpNet>) {
    let bits = f.bits();
    let mut lo = lo;
    while lo <= hi {
        let align = if lo == 0 {
            bits
        } else {
            lo.trailing_zeros().min(bits)
        };
        let rest = hi - lo;
        // floor(log2(rest + 1)): the largest block size that fits.
        let fit = match rest.checked_add(1) {
            None => 128,
            Some(n) => n.ilog2(),
        };
        let k = align.min(fit);
        if let Some(n) = net_at(f, lo, bits - k) {
            out.push(n);
        }
        let last = if k >= 128 {
            u128::MAX
        } else {
            lo + ((1_u128 << k) - 1)
        };
        if last >= hi {
            break;
        }
        lo = last + 1;
    }
}

/// Collapses `items` into the minimal set of CIDRs covering exactly the
/// union of their networks. Every output network carries the values of the
/// input networks inside it, folded with `merge` in input address order.
/// The output is sorted by family (IPv4 first), then address.
pub fn collapse<T>(items: Vec<(IpNet, T)>, mut merge: impl FnMut(&mut T, T)) -> Vec<(IpNet, T)> {
    let mut spans: Vec<(Family, u128, u128, T)> = items
        .into_iter()
        .map(|(n, t)| {
            let (f, lo, hi) = span(&n.trunc());
            (f, lo, hi, t)
        })
        .collect();
    spans.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(b.2.cmp(&a.2)));
    // Pass 1: runs of overlapping or adjacent intervals, split into blocks.
    let mut nets: Vec<IpNet> = Vec::new();
    let mut run: Option<(Family, u128, u128)> = None;
    for &(f, lo, hi, _) in &spans {
        run = match run {
            Some((rf, rlo, rhi)) if rf == f && (rhi == u128::MAX || lo <= rhi + 1) => {
                Some((rf, rlo, rhi.max(hi)))
            }
            Some((rf, rlo, rhi)) => {
                blocks(rf, rlo, rhi, &mut nets);
                Some((f, lo, hi))
            }
            None => Some((f, lo, hi)),
        };
    }
    if let Some((rf, rlo, rhi)) = run {
        blocks(rf, rlo, rhi, &mut nets);
    }
    // Pass 2: each input network lies inside exactly one block (the blocks
    // are the maximal CIDRs of their run); fold its value into that block.
    let keys: Vec<(Family, u128)> = nets
        .iter()
        .map(|n| {
            let (f, lo, _) = span(n);
            (f, lo)
        })
        .collect();
    let mut values: Vec<Option<T>> = std::iter::repeat_with(|| None).take(nets.len()).collect();
    for (f, lo, _, t) in spans {
        let Some(i) = keys.partition_point(|k| *k <= (f, lo)).checked_sub(1) else {
            continue;
        };
        match &mut values[i] {
            Some(v) => merge(v, t),
            slot @ None => *slot = Some(t),
        }
    }
    nets.into_iter()
        .zip(values)
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect()
}

/// `net` minus the inclusive intervals `holes` (bounds in `net`'s family
/// number space; holes may overlap, extend past `net` or lie outside it),
/// as the fewest CIDRs, in address order.
pub fn subtract(net: &IpNet, holes: &mut [(u128, u128)]) -> Vec<IpNet> {
    let (f, lo, hi) = span(&net.trunc());
    holes.sort_unstable();
    let mut out = Vec::new();
    // `from` is the first address not yet emitted or known to be a hole.
    let mut from = Some(lo);
    for &(hlo, hhi) in holes.iter() {
        let Some(n) = from else { break };
        if hhi < n || hlo > hi {
            continue;
        }
        if hlo > n {
            blocks(f, n, hlo - 1, &mut out);
        }
        from = if hhi >= hi { None } else { Some(hhi + 1) };
    }
    if let Some(n) = from {
        blocks(f, n, hi, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use proptest::prelude::*;

    use super::*;

    fn nets(s: &[&str]) -> Vec<(IpNet, usize)> {
        s.iter()
            .enumerate()
            .map(|(i, n)| {
                let net = n
                    .parse::<IpNet>()
                    .unwrap_or_else(|_| IpNet::from(n.parse::<IpAddr>().unwrap()));
                (net, i)
            })
            .collect()
    }

    fn strings(v: &[(IpNet, Vec<usize>)]) -> Vec<String> {
        v.iter().map(|(n, _)| n.to_string()).collect()
    }

    fn run(s: &[&str]) -> Vec<(IpNet, Vec<usize>)> {
        collapse(
            nets(s).into_iter().map(|(n, i)| (n, vec![i])).collect(),
            Extend::extend,
        )
    }

    #[test]
    fn adjacent_and_contained_merge_exactly() {
        let all: Vec<String> = (0..256).map(|i| format!("10.0.0.{i}")).collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        assert_eq!(strings(&run(&refs)), ["10.0.0.0/24"]);
        // One hole at .7: the rest in the fewest blocks, .7 left out.
        let without7: Vec<&str> = refs.iter().copied().filter(|s| *s != "10.0.0.7").collect();
        let got = strings(&run(&without7));
        assert_eq!(
            got,
            [
                "10.0.0.0/30",
                "10.0.0.4/31",
                "10.0.0.6/32",
                "10.0.0.8/29",
                "10.0.0.16/28",
                "10.0.0.32/27",
                "10.0.0.64/26",
                "10.0.0.128/25"
            ]
        );
        // Contained and overlapping inputs; values land in their block.
        let got = run(&["10.0.0.0/25", "10.0.0.128/25", "10.0.0.5", "2001:db8::1"]);
        assert_eq!(strings(&got), ["10.0.0.0/24", "2001:db8::1/128"]);
        assert_eq!(got[0].1, vec![0, 2, 1]);
        // The families never merge, even at the ends of their spaces.
        let got = run(&["255.255.255.255", "::", "0.0.0.0/0", "::/0"]);
        assert_eq!(strings(&got), ["0.0.0.0/0", "::/0"]);
        assert!(run(&[]).is_empty());
    }

    #[test]
    fn holes_are_cut_out() {
        let n: IpNet = "2001:db8::/126".parse().unwrap();
        let base = u128::from("2001:db8::".parse::<Ipv6Addr>().unwrap());
        let got: Vec<String> = subtract(&n, &mut [(base + 1, base + 1)])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["2001:db8::/128", "2001:db8::2/127"]);
        // A hole covering everything leaves nothing; no hole leaves the net.
        assert!(subtract(&n, &mut [(0, u128::MAX)]).is_empty());
        assert_eq!(subtract(&n, &mut []), vec![n]);
        let all: IpNet = "::/0".parse().unwrap();
        assert_eq!(subtract(&all, &mut [(u128::MAX, u128::MAX)]).len(), 128);
    }

    /// A random v4 or v6 network; v6 ones cluster in one /112 and v4 ones
    /// in one /20 so that merges actually happen.
    fn arb_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (0_u32..4096, 20_u8..=32).prop_map(|(a, l)| {
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | a), l).unwrap()).trunc()
            }),
            (0_u128..65536, 112_u8..=128).prop_map(|(a, l)| {
                let base = 0x2001_0db8_u128 << 96;
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(base | a), l).unwrap()).trunc()
            }),
            // Rarely a wide one or one at the edge of the space.
            (any::<u32>(), 0_u8..=32)
                .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap()).trunc()),
            (any::<u128>(), 0_u8..=128)
                .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap()).trunc()),
        ]
    }

    fn addr(f: Family, x: u128) -> IpAddr {
        match f {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(x).unwrap())),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(x)),
        }
    }

    /// Every address next to a boundary of any network in `nets`.
    fn boundaries(nets: &[IpNet]) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for n in nets {
            let (f, lo, hi) = span(n);
            let max = if f == Family::V4 {
                u128::from(u32::MAX)
            } else {
                u128::MAX
            };
            for x in [lo.checked_sub(1), Some(lo), Some(hi), hi.checked_add(1)]
                .into_iter()
                .flatten()
                .filter(|x| *x <= max)
            {
                out.push(addr(f, x));
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn collapse_is_exact_and_minimal(
            input in proptest::collection::vec(arb_net(), 0..60),
            probes in proptest::collection::vec(any::<(bool, u16, u128)>(), 80),
        ) {
            let got = collapse(input.iter().map(|n| (*n, 1_usize)).collect(), |a, b| *a += b);
            let out: Vec<IpNet> = got.iter().map(|(n, _)| *n).collect();
            // Every input network is counted exactly once.
            prop_assert_eq!(got.iter().map(|(_, c)| c).sum::<usize>(), input.len());
            let covered_in = |ip: &IpAddr| input.iter().any(|n| n.contains(ip));
            let covered_out = |ip: &IpAddr| out.iter().any(|n| n.contains(ip));
            let mut probe_ips = boundaries(&input);
            probe_ips.extend(boundaries(&out));
            for (v4, low, wide) in probes {
                // Near the clusters and anywhere.
                probe_ips.push(if v4 { IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (u32::from(low) % 4096))) } else { IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | u128::from(low))) });
                probe_ips.push(addr(if v4 { Family::V4 } else { Family::V6 }, if v4 { wide & u128::from(u32::MAX) } else { wide }));
            }
            for ip in &probe_ips {
                prop_assert_eq!(covered_in(ip), covered_out(ip), "{} in {:?} -> {:?}", ip, input, out);
            }
            // Sorted, disjoint, and no two entries could merge into one CIDR.
            for w in out.windows(2) {
                let (fa, _, ha) = span(&w[0]);
                let (fb, lb, _) = span(&w[1]);
                prop_assert!(fa < fb || (fa == fb && ha < lb), "{:?}", out);
            }
            for (i, a) in out.iter().enumerate() {
                for b in &out[i + 1..] {
                    prop_assert!(!a.contains(b) && !b.contains(a), "{} and {} nest", a, b);
                    if a.prefix_len() == b.prefix_len() && a.prefix_len() > 0 {
                        prop_assert_ne!(a.supernet(), b.supernet(), "{} and {} merge", a, b);
                    }
                }
            }
            // As few entries as the ipnet crate's own aggregation.
            prop_assert_eq!(out.len(), IpNet::aggregate(&input).len());
        }

        #[test]
        fn subtract_is_exact(
            net in arb_net(),
            holes in proptest::collection::vec(arb_net(), 0..12),
            probes in proptest::collection::vec(any::<u128>(), 40),
        ) {
            let (f, lo, hi) = span(&net);
            let mut hs: Vec<(u128, u128)> = holes.iter().map(span).filter(|h| h.0 == f).map(|h| (h.1, h.2)).collect();
            let out = subtract(&net, &mut hs);
            let mut probe_ips = boundaries(&[net]);
            probe_ips.extend(boundaries(&holes));
            probe_ips.extend(boundaries(&out));
            for p in probes {
                probe_ips.push(addr(f, lo + p % (hi - lo).saturating_add(1).max(1)));
            }
            for ip in probe_ips.iter().filter(|ip| ip.is_ipv4() == (f == Family::V4)) {
                let want = net.contains(ip) && !holes.iter().any(|h| h.contains(ip));
                let got = out.iter().any(|n| n.contains(ip));
                prop_assert_eq!(want, got, "{} in {} minus {:?} -> {:?}", ip, net, holes, out);
            }
            let collapsed = collapse(out.iter().map(|n| (*n, ())).collect(), |(), ()| ());
            prop_assert_eq!(collapsed.len(), out.len(), "not minimal: {:?}", out);
        }
    }
}
