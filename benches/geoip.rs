//! GeoIP lookup speed and start-up cost: 1,000,000 addresses from a fixed
//! seed through the embedded range tables, and (when `SIKKER_BENCH_MMDB`
//! names a country `.mmdb`) through maxminddb for comparison. Prints a
//! markdown table. Run: `cargo bench --bench geoip`.
#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use sikker::domain::IpKey;
use sikker::geoip::{GeoDbs, GeoFiles};

const N: usize = 1_000_000;
const SEED: u64 = 0x5EED_6E01_0000_0001;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// 70 % IPv4 anywhere, 30 % IPv6 in 2000::/3 (where the allocations are).
fn addresses() -> Vec<IpKey> {
    let mut r = XorShift(SEED);
    (0..N)
        .map(|_| {
            let a = r.next();
            if a % 10 < 7 {
                #[allow(clippy::cast_possible_truncation)]
                IpKey::from_ip(Ipv4Addr::from((a >> 32) as u32).into())
            } else {
                let hi = (u128::from(r.next()) << 64) | u128::from(r.next());
                IpKey((hi >> 3) | (1 << 125))
            }
        })
        .collect()
}

fn row(name: &str, n: usize, secs: f64) {
    println!(
        "| {name} | {n} | {:.1} | {:.0} | {:.0} |",
        secs * 1000.0,
        secs * 1e9 / n as f64,
        n as f64 / secs
    );
}

fn time(name: &str, ips: &[IpKey], f: impl Fn(IpKey) -> usize) {
    // One warm-up pass, then the measured one.
    let mut sink = 0;
    for ip in ips.iter().take(N / 10) {
        sink ^= f(*ip);
    }
    let t0 = Instant::now();
    for ip in ips {
        sink ^= f(black_box(*ip));
    }
    let secs = t0.elapsed().as_secs_f64();
    black_box(sink);
    row(name, ips.len(), secs);
}

fn main() {
    let ips = addresses();
    let t0 = Instant::now();
    let embedded = GeoDbs::load(&GeoFiles::default()).unwrap();
    let load = t0.elapsed();
    println!("## GeoIP lookups ({N} addresses, seed {SEED:#x})\n");
    println!(
        "Start-up: decoding the embedded tables took {:.1} ms.\n",
        load.as_secs_f64() * 1000.0
    );
    for d in embedded.info() {
        println!(
            "- {} table: {} {} ({}), decode {:.1} ms",
            d.kind,
            d.records,
            d.record_unit,
            d.build_date,
            d.load_ms.unwrap_or_default()
        );
    }
    println!();
    println!("| lookup | addresses | total ms | ns/lookup | lookups/s |");
    println!("|---|---:|---:|---:|---:|");
    time("embedded: country code only", &ips, |ip| {
        usize::from(embedded.country(ip).is_some())
    });
    time(
        "embedded: full GeoInfo (country, name, AS, org)",
        &ips,
        |ip| {
            let g = embedded.lookup(ip);
            g.asn.unwrap_or_default() as usize + usize::from(g.country_code.is_some())
        },
    );
    if let Some(path) = std::env::var_os("SIKKER_BENCH_MMDB") {
        let files = GeoFiles {
            country: Some(path.into()),
            ..GeoFiles::default()
        };
        let t0 = Instant::now();
        let mmdb = GeoDbs::load(&files).unwrap();
        let open = t0.elapsed();
        time("maxminddb file: country code only", &ips, |ip| {
            usize::from(mmdb.country(ip).is_some())
        });
        println!(
            "\nOpening and verifying {} took {:.1} ms.",
            files.country.unwrap().display(),
            open.as_secs_f64() * 1000.0
        );
    }
}
