//! Per-client-address limits: simultaneous connections and a request-rate
//! token bucket, both keyed by the address (an IPv6 client by its /64, which
//! one host can fill at will) and both bounded in memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::domain::IpKey;

/// The key a client is counted under: an IPv4 address as is (IPv4-mapped
/// IPv6 counts as IPv4), an IPv6 address by its /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match IpKey::from_ip(ip).to_ip() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
    }
}

/// Open connections per client. Entries exist only while a client has a
/// connection open, so the table is bounded by the global connection cap.
#[derive(Debug)]
pub struct ConnTable {
    per_client: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Holds one connection slot of a client; gives it back when dropped.
#[derive(Debug)]
pub struct ConnSlot {
    table: Arc<ConnTable>,
    key: IpAddr,
}

impl ConnTable {
    pub fn new(per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            per_client: per_client.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or `None` at the limit.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let key = client_key(ip);
        let mut open = self.open.lock().ok()?;
        let n = open.entry(key).or_insert(0);
        if *n >= self.per_client {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            table: self.clone(),
            key,
        })
    }

    /// Clients with at least one open connection.
    pub fn clients(&self) -> usize {
        self.open.lock().map_or(0, |m| m.len())
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.table.open.lock()
            && let Some(n) = open.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per client: `burst` requests at once, refilled at
/// `per_second`. At most `capacity` clients are tracked; when the table is
/// full, clients whose bucket has refilled (idle ones) are forgotten first,
/// then the least recently seen eighth, so each eviction pass frees room for
/// many inserts and the cost per request stays constant.
#[derive(Debug)]
pub struct RateTable {
    per_second: f64,
    burst: f64,
    capacity: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateTable {
    /// `per_second == 0` turns the limit off.
    pub fn new(per_second: u32, burst: u32, capacity: usize) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            capacity: capacity.max(8),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_second > 0.0
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Admits one request from `ip` at `now`, or says how many whole
    /// seconds to wait before the next one would be admitted.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if !self.enabled() {
            return Ok(());
        }
        let key = client_key(ip);
        // A poisoned lock means a panic elsewhere; failing open keeps serving.
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if !buckets.contains_key(&key) && buckets.len() >= self.capacity {
            self.evict(&mut buckets, now);
        }
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.per_second;
            // Whole seconds, rounded up, at least 1 (Retry-After has no fractions).
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Err((wait.ceil() as u64).max(1))
        }
    }

    fn evict(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let refill = |b: &Bucket| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.per_second
        };
        buckets.retain(|_, b| refill(b) < self.burst);
        let want_free = self.capacity / 8;
        if self.capacity - buckets.len().min(self.capacity) >= want_free {
            return;
        }
        let mut seen: Vec<Instant> = buckets.values().map(|b| b.at).collect();
        let nth = want_free.min(seen.len().saturating_sub(1));
        let (_, cutoff, _) = seen.select_nth_unstable(nth);
        let cutoff = *cutoff;
        buckets.retain(|_, b| b.at > cutoff);
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_v4_as_v4() {
        assert_eq!(client_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn connection_slots_are_counted_per_client_and_come_back() {
        let t = ConnTable::new(2);
        let a = t.acquire(ip("192.0.2.1")).unwrap();
        let _b = t.acquire(ip("192.0.2.1")).unwrap();
        assert!(t.acquire(ip("192.0.2.1")).is_none());
        assert!(t.acquire(ip("2001:db8::1")).is_some());
        drop(a);
        let _c = t.acquire(ip("192.0.2.1")).unwrap();
        assert_eq!(t.clients(), 1, "a client without connections is forgotten");
    }

    #[test]
    fn bucket_allows_the_burst_then_refills_at_the_rate() {
        let t = RateTable::new(2, 3, 1000);
        let t0 = Instant::now();
        let c = ip("198.51.100.1");
        for _ in 0..3 {
            t.admit(c, t0).unwrap();
        }
        assert_eq!(t.admit(c, t0), Err(1));
        t.admit(ip("198.51.100.2"), t0).unwrap();
        t.admit(c, t0 + Duration::from_millis(500)).unwrap();
        assert!(t.admit(c, t0 + Duration::from_millis(600)).is_err());
        for _ in 0..3 {
            t.admit(c, t0 + Duration::from_secs(10)).unwrap();
        }
        let slow = RateTable::new(1, 1, 1000);
        slow.admit(c, t0).unwrap();
        assert_eq!(slow.admit(c, t0), Err(1));
        assert!(RateTable::new(0, 1, 8).admit(c, t0).is_ok());
    }

    #[test]
    fn the_table_stays_bounded_under_many_addresses() {
        let t = RateTable::new(1, 5, 64);
        let t0 = Instant::now();
        for i in 0..10_000_u32 {
            let a = IpAddr::from((0xC000_0000_u32 + i).to_be_bytes());
            t.admit(a, t0 + Duration::from_micros(u64::from(i)))
                .unwrap();
            assert!(t.tracked() <= 64);
        }
        // A busy client seen recently keeps its (empty) bucket.
        let busy = ip("203.0.113.9");
        let now = t0 + Duration::from_millis(20);
        while t.admit(busy, now).is_ok() {}
        for i in 0..30_u32 {
            let a = IpAddr::from((0x0A00_0000_u32 + i).to_be_bytes());
            let _ = t.admit(a, now);
        }
        assert!(t.admit(busy, now).is_err());
    }
}
