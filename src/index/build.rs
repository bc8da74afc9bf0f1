//! The start-up build of an `IpIndex` from every stored indicator, in
//! memory no larger than the index it makes.
//!
//! `BTreeMap::from_iter` gathers its input into one vector before building
//! full nodes from it: at a million indicators an 80 MB buffer, freed once
//! the map stands, which the allocator keeps resident. Inserting one by
//! one needs no buffer but leaves nodes about half full (ascending keys
//! split every full node at its middle). Here entries are gathered in small
//! chunks; each chunk becomes a map with full nodes, and maps of equal size
//! are merged as a binary counter carries (`BTreeMap::append` builds full
//! nodes from both and frees the old ones as it goes, for the next chunk
//! to reuse). Every entry is moved about log2(n / chunk) times; the
//! largest buffer is one chunk.

use std::collections::BTreeMap;

use super::prefix::PrefixIndex;
use super::{IpIndex, Summary};
use crate::domain::IpKey;
use crate::domain::prefix::PrefixLen;

/// Entries gathered before they become a map of their own.
const CHUNK: usize = 1 << 14;

/// Collects the entries of an index, pushed in any order (ascending
/// addresses, as the store yields them, keep every merge cheap).
#[derive(Debug)]
pub struct IndexBuilder {
    chunk_len: usize,
    chunk: Vec<(u128, Summary)>,
    /// Maps still to be merged, larger ones first.
    carries: Vec<BTreeMap<u128, Summary>>,
}

impl Default for IndexBuilder {
    fn default() -> Self {
        Self::with_chunk(CHUNK)
    }
}

impl IndexBuilder {
    fn with_chunk(chunk_len: usize) -> Self {
        Self {
            chunk_len: chunk_len.max(1),
            chunk: Vec::new(),
            carries: Vec::new(),
        }
    }

    /// Adds `ip` (a later push of the same address replaces the earlier).
    pub fn push(&mut self, ip: IpKey, summary: Summary) {
        if self.chunk.capacity() == 0 {
            self.chunk.reserve_exact(self.chunk_len);
        }
        self.chunk.push((ip.0, summary));
        if self.chunk.len() == self.chunk_len {
            self.carry();
        }
    }

    /// Turns the gathered chunk into a map and merges it with the last
    /// carried maps while they are no larger.
    fn carry(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let mut map: BTreeMap<u128, Summary> = self.chunk.drain(..).collect();
        while let Some(mut last) = self.carries.pop_if(|l| l.len() <= map.len()) {
            last.append(&mut map);
            map = last;
        }
        self.carries.push(map);
    }

    /// The index of everything pushed, grouping IPv6 evidence by `/len`.
    pub fn finish(mut self, len: PrefixLen) -> IpIndex {
        self.carry();
        self.chunk = Vec::new();
        let mut map = self.carries.pop().unwrap_or_default();
        while let Some(mut last) = self.carries.pop() {
            last.append(&mut map);
            map = last;
        }
        // Each bucket sized once from a count: vectors grown by doubling
        // would leave their earlier buffers with the allocator.
        let mut sizes: BTreeMap<i64, usize> = BTreeMap::new();
        for s in map.values() {
            *sizes.entry(s.expires.day()).or_default() += 1;
        }
        let mut buckets: BTreeMap<i64, Vec<u128>> = sizes
            .into_iter()
            .map(|(day, n)| (day, Vec::with_capacity(n)))
            .collect();
        for (ip, s) in &map {
            if let Some(b) = buckets.get_mut(&s.expires.day()) {
                b.push(*ip);
            }
        }
        let prefixes = PrefixIndex::from_members(len, &map);
        IpIndex {
            map,
            buckets,
            prefixes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::{MILLIS_PER_DAY, UnixMillis};
    use crate::index::tests::summary;

    fn entries(n: u32) -> Vec<(IpKey, Summary)> {
        (0..n)
            .map(|i| {
                let ip: IpKey = if i % 3 == 0 {
                    format!("2a01:4f8:{:x}:{:x}::{:x}", i % 7, i % 2, i)
                        .parse()
                        .unwrap()
                } else {
                    format!("10.{}.{}.{}", i % 5, i / 7 % 256, i % 250)
                        .parse()
                        .unwrap()
                };
                let mut s = summary(i64::from(i % 40) * MILLIS_PER_DAY, 30);
                s.raw = f64::from(i % 13);
                s.categories = 1 << (i % 16);
                (ip, s)
            })
            .collect()
    }

    fn one_by_one(len: PrefixLen, entries: &[(IpKey, Summary)]) -> IpIndex {
        let mut one = IpIndex::with_prefix(len);
        for (ip, s) in entries {
            one.upsert(*ip, *s);
        }
        one
    }

    fn built(len: PrefixLen, chunk: usize, entries: &[(IpKey, Summary)]) -> IpIndex {
        let mut b = IndexBuilder::with_chunk(chunk);
        for (ip, s) in entries {
            b.push(*ip, *s);
        }
        b.finish(len)
    }

    fn assert_same(bulk: &IpIndex, one: &IpIndex, entries: &[(IpKey, Summary)]) {
        assert_eq!(
            bulk.all().collect::<Vec<_>>(),
            one.all().collect::<Vec<_>>()
        );
        let sets = |idx: &IpIndex| {
            idx.buckets
                .iter()
                .map(|(d, v)| {
                    (
                        *d,
                        v.iter().copied().collect::<std::collections::BTreeSet<_>>(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(sets(bulk), sets(one));
        assert_eq!(bulk.prefix_count(), one.prefix_count());
        let now = UnixMillis(5 * MILLIS_PER_DAY);
        for (ip, _) in entries {
            assert_eq!(
                bulk.prefix_verdict(*ip, now, 1, None),
                one.prefix_verdict(*ip, now, 1, None),
                "{ip}"
            );
        }
    }

    #[test]
    fn an_index_built_in_chunks_equals_one_built_entry_by_entry() {
        let len = PrefixLen::new(64).unwrap();
        let all = entries(1500);
        let one = one_by_one(len, &all);
        // One chunk, chunks that carry several times, and a last partial one.
        for chunk in [1, 7, 64, 1000, 4096] {
            assert_same(&built(len, chunk, &all), &one, &all);
        }
        // In address order, as the store yields them.
        let mut sorted = all.clone();
        sorted.sort_by_key(|(ip, _)| ip.0);
        assert_same(&built(len, 7, &sorted), &one, &all);
        let empty = built(len, 7, &[]);
        assert_eq!((empty.len(), empty.bucket_count()), (0, 0));
    }

    #[test]
    fn a_later_push_of_an_address_replaces_the_earlier() {
        let len = PrefixLen::new(64).unwrap();
        let ip: IpKey = "45.33.32.1".parse().unwrap();
        let (old, new) = (summary(0, 30), summary(3 * MILLIS_PER_DAY, 30));
        let mut pushed = vec![(ip, old)];
        pushed.extend(entries(20));
        pushed.push((ip, new));
        let idx = built(len, 4, &pushed);
        assert_eq!(
            idx.all().find(|(i, _)| *i == ip).map(|(_, s)| *s),
            Some(new)
        );
    }

    #[test]
    fn buckets_hold_no_spare_capacity() {
        let idx = built(PrefixLen::new(64).unwrap(), 64, &entries(1500));
        for b in idx.buckets.values() {
            assert_eq!(b.capacity(), b.len());
        }
    }
}
