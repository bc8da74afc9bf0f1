//! The embedded range tables (`geoip/*.bin`, written by `geoip/build.py`):
//! decoded once into sorted start arrays searched by binary search, each
//! narrowed first by a table of where every /16 (IPv4) or top 16 bits
//! (IPv6) begins, so a lookup searches a few neighbouring entries instead
//! of twenty cache misses across the whole array.

use std::sync::Arc;

use super::CountryCode;
use crate::domain::IpKey;

const MAGIC: &[u8; 8] = b"SKGEOTB1";
/// Value index meaning "no data for this range".
const GAP: u32 = u32::MAX;

/// Facts from a table's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The data's date, `YYYY-MM-DD`.
    pub date: String,
    /// Where the data came from (package names and versions).
    pub source: String,
}

/// Address ranges → value index, per family.
#[derive(Default)]
pub struct Ranges {
    v4_starts: Vec<u32>,
    v4_vals: Vec<u32>,
    /// `v4_first[h]`: the first range starting at or after `h << 16`.
    v4_first: Vec<u32>,
    v6_starts: Vec<u128>,
    v6_vals: Vec<u32>,
    /// `v6_first[h]`: the first range starting at or after `h << 112`.
    v6_first: Vec<u32>,
}

/// Buckets of the first-level tables: the top 16 bits of an address.
const BUCKETS: usize = 1 << 16;

/// Where each bucket's ranges begin (one past the last bucket: the end).
fn first_of<T: Copy>(starts: &[T], bucket: impl Fn(T) -> usize) -> Vec<u32> {
    let mut first = Vec::with_capacity(BUCKETS + 1);
    let mut i = 0;
    for h in 0..=BUCKETS {
        while i < starts.len() && bucket(starts[i]) < h {
            i += 1;
        }
        first.push(u32::try_from(i).unwrap_or(u32::MAX));
    }
    first
}

/// The last of `starts` at or before `x`, searching only the entries of
/// `x`'s bucket `h` (the range before them covers `x` when none does).
fn last_at_or_before<T: Copy + Ord>(starts: &[T], first: &[u32], h: usize, x: T) -> Option<usize> {
    let lo = first.get(h).map_or(0, |i| *i as usize);
    let hi = first.get(h + 1).map_or(starts.len(), |i| *i as usize);
    let i = lo + starts.get(lo..hi)?.partition_point(|s| *s <= x);
    i.checked_sub(1)
}

impl Ranges {
    fn new(
        v4_starts: Vec<u32>,
        v4_vals: Vec<u32>,
        v6_starts: Vec<u128>,
        v6_vals: Vec<u32>,
    ) -> Self {
        Self {
            v4_first: first_of(&v4_starts, |s| (s >> 16) as usize),
            v6_first: first_of(&v6_starts, |s| (s >> 112) as usize),
            v4_starts,
            v4_vals,
            v6_starts,
            v6_vals,
        }
    }

    /// The value index covering `ip`, if any.
    #[inline]
    pub fn get(&self, ip: IpKey) -> Option<u32> {
        let v = if ip.is_v4() {
            #[allow(clippy::cast_possible_truncation)]
            let x = ip.0 as u32;
            let i = last_at_or_before(&self.v4_starts, &self.v4_first, (x >> 16) as usize, x)?;
            *self.v4_vals.get(i)?
        } else {
            let h = (ip.0 >> 112) as usize;
            let i = last_at_or_before(&self.v6_starts, &self.v6_first, h, ip.0)?;
            *self.v6_vals.get(i)?
        };
        (v != GAP).then_some(v)
    }

    /// Number of ranges (gaps included), IPv4 and IPv6.
    pub fn len(&self) -> (usize, usize) {
        (self.v4_starts.len(), self.v6_starts.len())
    }
}

// Counts only: the tables hold hundreds of thousands of entries.
impl std::fmt::Debug for Ranges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ranges")
            .field("v4", &self.v4_starts.len())
            .field("v6", &self.v6_starts.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for CountryTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountryTable")
            .field("header", &self.header)
            .field("values", &self.values.len())
            .field("ranges", &self.ranges)
            .finish()
    }
}

impl std::fmt::Debug for AsnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsnTable")
            .field("header", &self.header)
            .field("values", &self.values.len())
            .field("ranges", &self.ranges)
            .finish()
    }
}

/// The embedded country table.
pub struct CountryTable {
    pub header: Header,
    pub values: Vec<(CountryCode, Arc<str>)>,
    pub ranges: Ranges,
}

/// The embedded AS table.
pub struct AsnTable {
    pub header: Header,
    pub values: Vec<(u32, Arc<str>)>,
    pub ranges: Ranges,
}

impl CountryTable {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut c = Cursor { b: bytes, at: 0 };
        let header = c.header(1)?;
        let n = c.u32()?;
        let mut values = Vec::new();
        for _ in 0..n {
            let code = c.take(2)?;
            let code = std::str::from_utf8(code)
                .ok()
                .and_then(CountryCode::parse)
                .ok_or_else(|| format!("bad country code at byte {}", c.at))?;
            let len = usize::from(c.u8()?);
            values.push((code, Arc::from(c.str(len)?)));
        }
        let ranges = c.ranges(values.len())?;
        c.end()?;
        Ok(Self {
            header,
            values,
            ranges,
        })
    }

    pub fn get(&self, ip: IpKey) -> Option<&(CountryCode, Arc<str>)> {
        self.values.get(self.ranges.get(ip)? as usize)
    }

    /// The English name of a country code, when the table knows it.
    pub fn name_of(&self, code: CountryCode) -> Option<Arc<str>> {
        self.values
            .iter()
            .find(|(c, n)| *c == code && !n.is_empty())
            .map(|(_, n)| n.clone())
    }
}

impl AsnTable {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut c = Cursor { b: bytes, at: 0 };
        let header = c.header(2)?;
        let n = c.u32()?;
        let mut values = Vec::new();
        for _ in 0..n {
            let asn = c.u32()?;
            let len = usize::from(c.u16()?);
            values.push((asn, Arc::from(c.str(len)?)));
        }
        let ranges = c.ranges(values.len())?;
        c.end()?;
        Ok(Self {
            header,
            values,
            ranges,
        })
    }

    pub fn get(&self, ip: IpKey) -> Option<&(u32, Arc<str>)> {
        self.values.get(self.ranges.get(ip)? as usize)
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn str(&mut self, len: usize) -> Result<&'a str, String> {
        let at = self.at;
        std::str::from_utf8(self.take(len)?).map_err(|_| format!("bad UTF-8 at byte {at}"))
    }

    fn varint(&mut self) -> Result<u128, String> {
        let mut v: u128 = 0;
        for shift in (0..128).step_by(7) {
            let b = self.u8()?;
            v |= u128::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint too long at byte {}", self.at))
    }

    fn header(&mut self, kind: u8) -> Result<Header, String> {
        if self.take(8)? != MAGIC {
            return Err("not a sikker GeoIP table (bad magic)".into());
        }
        let k = self.u8()?;
        if k != kind {
            return Err(format!("table kind {k}, expected {kind}"));
        }
        let date = self.str(10)?.to_owned();
        let len = usize::from(self.u16()?);
        let source = self.str(len)?.to_owned();
        Ok(Header { date, source })
    }

    /// One family's entries: (start, value) with strictly rising starts.
    fn entries(&mut self, nvalues: usize, top: u128) -> Result<(Vec<u128>, Vec<u32>), String> {
        let n = self.u32()? as usize;
        // Each entry takes at least 3 bytes: refuse counts the data cannot hold.
        if n > self.b.len().saturating_sub(self.at) / 3 {
            return Err(format!("entry count {n} exceeds the data"));
        }
        let mut starts = Vec::with_capacity(n);
        let mut vals = Vec::with_capacity(n);
        let mut prev: u128 = 0;
        for i in 0..n {
            let tz = u32::from(self.u8()?);
            let d = self.varint()?;
            let step = d
                .checked_shl(tz)
                .filter(|s| tz < 128 && s >> tz == d)
                .ok_or("delta overflows")?;
            let start = prev.checked_add(step).ok_or("start overflows")?;
            if start > top || (i > 0 && step == 0) {
                return Err(format!("range start out of order at entry {i}"));
            }
            let v = self.varint()?;
            let v = match v {
                0 => GAP,
                v => u32::try_from(v - 1)
                    .ok()
                    .filter(|x| (*x as usize) < nvalues)
                    .ok_or_else(|| format!("value index {v} out of range"))?,
            };
            starts.push(start);
            vals.push(v);
            prev = start;
        }
        Ok((starts, vals))
    }

    fn ranges(&mut self, nvalues: usize) -> Result<Ranges, String> {
        let (s4, v4_vals) = self.entries(nvalues, u128::from(u32::MAX))?;
        let (v6_starts, v6_vals) = self.entries(nvalues, u128::MAX)?;
        #[allow(clippy::cast_possible_truncation)]
        let v4_starts = s4.into_iter().map(|s| s as u32).collect();
        Ok(Ranges::new(v4_starts, v4_vals, v6_starts, v6_vals))
    }

    fn end(&self) -> Result<(), String> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.b.len() - self.at))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut n: u128, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7F) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// A table in the build script's format from (start, value+1) lists.
    fn table(kind: u8, values: &[u8], n: u32, v4: &[(u128, u128)], v6: &[(u128, u128)]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.push(kind);
        b.extend_from_slice(b"2026-01-02");
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(b"test");
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(values);
        for fam in [v4, v6] {
            b.extend_from_slice(&u32::try_from(fam.len()).unwrap().to_le_bytes());
            let mut prev = 0;
            for (s, v) in fam {
                let d = s - prev;
                let tz = if d == 0 { 0 } else { d.trailing_zeros() };
                b.push(u8::try_from(tz).unwrap());
                varint(d >> tz, &mut b);
                varint(*v, &mut b);
                prev = *s;
            }
        }
        b
    }

    fn ip(s: &str) -> IpKey {
        s.parse().unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]
        #[test]
        fn the_first_level_tables_find_what_a_full_search_finds(
            // Starts in a few dense /16s and spread over the whole space.
            v4 in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::any::<u32>(),
                0x0a00_0000_u32..0x0a02_0000,
                proptest::strategy::Just(0),
                proptest::strategy::Just(u32::MAX),
            ], 1..3000),
            v6 in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::any::<u128>(),
                (0x2a00_u128 << 112)..(0x2a01_u128 << 112),
            ], 1..3000),
            probes in proptest::collection::vec(
                (proptest::prelude::any::<u32>(), proptest::prelude::any::<u128>()), 200),
        ) {
            let (mut v4, mut v6) = (v4, v6);
            v4.sort_unstable();
            v4.dedup();
            v6.sort_unstable();
            v6.dedup();
            let index = |n: usize| (0..u32::try_from(n).unwrap()).collect::<Vec<_>>();
            let r = Ranges::new(v4.clone(), index(v4.len()), v6.clone(), index(v6.len()));
            let full = |at: usize| at.checked_sub(1).map(|i| u32::try_from(i).unwrap());
            // The probes, the starts themselves and their neighbours.
            let a4 = probes.iter().map(|p| p.0).chain(v4.iter().flat_map(|s| [*s, s.wrapping_sub(1)]));
            for a in a4 {
                let ip = IpKey::from_ip(std::net::Ipv4Addr::from(a).into());
                proptest::prop_assert_eq!(r.get(ip), full(v4.partition_point(|s| *s <= a)));
            }
            let a6 = probes.iter().map(|p| p.1).chain(v6.iter().flat_map(|s| [*s, s.wrapping_sub(1)]));
            for b in a6.filter(|b| !IpKey(*b).is_v4()) {
                proptest::prop_assert_eq!(r.get(IpKey(b)), full(v6.partition_point(|s| *s <= b)));
            }
        }
    }

    #[test]
    fn ranges_gaps_and_families() {
        let mut vals = b"NL".to_vec();
        vals.push(11);
        vals.extend_from_slice(b"Netherlands");
        vals.extend_from_slice(b"US");
        vals.push(0);
        let v4 = [(0, 0), (0x0A00_0000, 1), (0x0B00_0000, 2), (0x0C00_0000, 0)];
        let v6 = [(0, 0), (0x2001_0db8 << 96, 2), (0x2001_0db9 << 96, 0)];
        let t = CountryTable::parse(&table(1, &vals, 2, &v4, &v6)).unwrap();
        assert_eq!(t.header.date, "2026-01-02");
        let code = |s: &str| t.get(ip(s)).map(|(c, _)| c.as_str().to_owned());
        assert_eq!(code("9.255.255.255"), None);
        assert_eq!(code("10.0.0.0").as_deref(), Some("NL"));
        assert_eq!(code("::ffff:10.1.2.3").as_deref(), Some("NL"));
        assert_eq!(code("11.255.255.255").as_deref(), Some("US"));
        assert_eq!(code("12.0.0.0"), None);
        assert_eq!(code("255.255.255.255"), None);
        assert_eq!(code("2001:db8::1").as_deref(), Some("US"));
        assert_eq!(code("2001:db9::"), None);
        assert_eq!(code("::"), None);
        assert_eq!(
            t.name_of(CountryCode::parse("nl").unwrap()).as_deref(),
            Some("Netherlands")
        );
        assert_eq!(t.name_of(CountryCode::parse("US").unwrap()), None);
        assert_eq!(t.ranges.len(), (4, 3));
    }

    #[test]
    fn corrupt_tables_are_refused() {
        let vals = b"NL\0".to_vec();
        let good = table(1, &vals, 1, &[(0, 1)], &[(0, 0)]);
        assert!(CountryTable::parse(&good).is_ok());
        assert!(AsnTable::parse(&good).is_err(), "wrong kind");
        for cut in 0..good.len() {
            assert!(CountryTable::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(CountryTable::parse(&trailing).is_err());
        // A value index past the value list.
        assert!(CountryTable::parse(&table(1, &vals, 1, &[(0, 2)], &[])).is_err());
        // Starts that do not rise, or leave the IPv4 space.
        assert!(CountryTable::parse(&table(1, &vals, 1, &[(5, 1), (5, 1)], &[])).is_err());
        assert!(CountryTable::parse(&table(1, &vals, 1, &[(1 << 32, 1)], &[])).is_err());
        let mut bad_magic = good;
        bad_magic[0] = b'X';
        assert!(CountryTable::parse(&bad_magic).is_err());
    }
}
