//! A small MaxMind DB writer (format 2.0, IPv6 tree, 24-bit records) so
//! tests can make operator files of any type and content.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// A value in the MaxMind DB data section.
#[derive(Clone, Debug)]
pub enum V {
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(String, V)>),
    Arr(Vec<V>),
}

pub fn s(x: &str) -> V {
    V::Str(x.to_owned())
}

pub fn map(items: &[(&str, V)]) -> V {
    V::Map(
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

fn ctrl(out: &mut Vec<u8>, ty: u8, size: usize) {
    let (first, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 285 {
        (29, vec![(size - 29) as u8])
    } else {
        let n = size - 285;
        (30, vec![(n >> 8) as u8, n as u8])
    };
    if ty <= 7 {
        out.push((ty << 5) | first);
    } else {
        out.push(first);
        out.push(ty - 7);
    }
    out.extend(extra);
}

fn uint(out: &mut Vec<u8>, ty: u8, v: u64) {
    let bytes: Vec<u8> = v
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    ctrl(out, ty, bytes.len());
    out.extend(bytes);
}

fn encode(out: &mut Vec<u8>, v: &V) {
    match v {
        V::Str(x) => {
            ctrl(out, 2, x.len());
            out.extend(x.as_bytes());
        }
        V::U16(x) => uint(out, 5, u64::from(*x)),
        V::U32(x) => uint(out, 6, u64::from(*x)),
        V::U64(x) => uint(out, 9, *x),
        V::Map(items) => {
            ctrl(out, 7, items.len());
            for (k, x) in items {
                encode(out, &V::Str(k.clone()));
                encode(out, x);
            }
        }
        V::Arr(items) => {
            ctrl(out, 11, items.len());
            for x in items {
                encode(out, x);
            }
        }
    }
}

enum Node {
    Empty,
    Data(usize),
    Inner(Box<Node>, Box<Node>),
}

fn insert(node: &mut Node, bits: u128, depth: u32, len: u32, data: usize) {
    if depth == len {
        *node = Node::Data(data);
        return;
    }
    if !matches!(node, Node::Inner(..)) {
        // Splitting a data leaf keeps its data on both halves.
        let keep = match node {
            Node::Data(d) => Node::Data(*d),
            _ => Node::Empty,
        };
        let keep2 = match &keep {
            Node::Data(d) => Node::Data(*d),
            _ => Node::Empty,
        };
        *node = Node::Inner(Box::new(keep), Box::new(keep2));
    }
    if let Node::Inner(l, r) = node {
        let bit = (bits >> (127 - depth)) & 1;
        let child = if bit == 0 { l } else { r };
        insert(child, bits, depth + 1, len, data);
    }
}

/// Builds a `.mmdb` holding `records` (network → record) with this `database_type`.
pub fn build(database_type: &str, records: &[(&str, V)]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut root = Node::Empty;
    for (net, rec) in records {
        let (addr, len) = net.split_once('/').unwrap();
        let addr: IpAddr = addr.parse().unwrap();
        let len: u32 = len.parse().unwrap();
        // IPv4 lives at ::a.b.c.d/96+len in an IPv6 tree.
        let (bits, len) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), len + 96),
            IpAddr::V6(a) => (u128::from(a), len),
        };
        let off = data.len();
        encode(&mut data, rec);
        insert(&mut root, bits, 0, len, off);
    }
    // Number the inner nodes breadth-first.
    let mut order: Vec<&Node> = vec![&root];
    let mut i = 0;
    while i < order.len() {
        if let Node::Inner(l, r) = order[i] {
            for c in [l, r] {
                if matches!(**c, Node::Inner(..)) {
                    order.push(c);
                }
            }
        }
        i += 1;
    }
    let ids: BTreeMap<*const Node, usize> = order
        .iter()
        .enumerate()
        .map(|(i, n)| (*n as *const Node, i))
        .collect();
    let count = order.len();
    let record = |n: &Node| -> u32 {
        (match n {
            Node::Empty => count,
            Node::Data(off) => count + 16 + off,
            Node::Inner(..) => ids[&(n as *const Node)],
        }) as u32
    };
    let mut out = Vec::new();
    for n in &order {
        let Node::Inner(l, r) = n else { unreachable!() };
        for v in [record(l), record(r)] {
            out.extend(&v.to_be_bytes()[1..]);
        }
    }
    out.extend([0u8; 16]);
    out.extend(data);
    out.extend(b"\xAB\xCD\xEFMaxMind.com");
    let meta = map(&[
        ("binary_format_major_version", V::U16(2)),
        ("binary_format_minor_version", V::U16(0)),
        ("build_epoch", V::U64(1_767_225_600)),
        ("database_type", s(database_type)),
        ("description", map(&[("en", s("sikker test database"))])),
        ("ip_version", V::U16(6)),
        ("languages", V::Arr(vec![s("en")])),
        ("node_count", V::U32(count as u32)),
        ("record_size", V::U16(24)),
    ]);
    encode(&mut out, &meta);
    out
}

/// A GeoIP2-style country record.
pub fn country(code: &str, name: &str) -> V {
    map(&[(
        "country",
        map(&[("iso_code", s(code)), ("names", map(&[("en", s(name))]))]),
    )])
}

/// A GeoIP2-style city record (with its country).
pub fn city(code: &str, city_name: &str) -> V {
    map(&[
        ("city", map(&[("names", map(&[("en", s(city_name))]))])),
        ("country", map(&[("iso_code", s(code))])),
    ])
}

/// A GeoLite2-ASN record.
pub fn asn(number: u32, org: &str) -> V {
    map(&[
        ("autonomous_system_number", V::U32(number)),
        ("autonomous_system_organization", s(org)),
    ])
}
