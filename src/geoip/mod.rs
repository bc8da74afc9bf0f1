//! Local geolocation: country, city and AS of an address, from the tables
//! embedded in the binary or from operator-supplied MaxMind `.mmdb` files.
//! Nothing here opens a socket: every answer comes from memory.

pub mod mmdb;
pub mod table;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::domain::IpKey;
use table::{AsnTable, CountryTable};

/// The embedded country table (see `geoip/README.md`).
pub static EMBEDDED_COUNTRY: &[u8] = include_bytes!("../../geoip/country.bin");
/// The embedded AS number and organisation table.
pub static EMBEDDED_ASN: &[u8] = include_bytes!("../../geoip/asn.bin");

/// An ISO 3166-1 alpha-2 code, upper case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Two ASCII letters, any case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The two letters.
    pub fn to_bytes(self) -> [u8; 2] {
        self.0
    }

    pub fn as_str(&self) -> &str {
        // Built only from two ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl std::fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for CountryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the local databases say about one address. Every field is `None`
/// when no database covers the address: nothing is guessed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeoInfo {
    pub country_code: Option<CountryCode>,
    pub country_name: Option<Arc<str>>,
    pub city: Option<Arc<str>>,
    pub asn: Option<u32>,
    pub as_org: Option<Arc<str>>,
}

impl GeoInfo {
    pub fn is_empty(&self) -> bool {
        self.country_code.is_none() && self.asn.is_none() && self.city.is_none()
    }

    /// The country code and AS, borrowed.
    pub fn brief(&self) -> Brief<'_> {
        Brief {
            country_code: self.country_code,
            asn: self.asn,
            as_org: self.as_org.as_deref(),
        }
    }
}

/// What block lists show of an address: its country code and AS, the AS
/// name borrowed from the database. A lookup for a list of a million
/// addresses copies and counts no names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Brief<'a> {
    pub country_code: Option<CountryCode>,
    pub asn: Option<u32>,
    pub as_org: Option<&'a str>,
}

impl Brief<'_> {
    pub fn to_info(self) -> GeoInfo {
        GeoInfo {
            country_code: self.country_code,
            asn: self.asn,
            as_org: self.as_org.map(Arc::from),
            ..GeoInfo::default()
        }
    }
}

/// Where the embedded tables place an address: the indexes of its
/// country's and its AS's values (6 bytes). A block list looks its
/// entries up in address order while it is built and keeps this, then
/// reads the values as it writes each entry ([`GeoDbs::brief_at`]):
/// looked up in the list's own order (by score), each lookup missed the
/// cache, four times the cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeoRef([u16; 3]);

/// `GeoRef`'s first word: the address was not looked up.
const UNLOCATED: u16 = u16::MAX;
/// `GeoRef`'s first word: no country.
const NO_COUNTRY: u16 = u16::MAX - 1;
/// `GeoRef`'s second and third words: no AS.
const NO_ASN: u32 = u32::MAX;

impl GeoRef {
    /// Not looked up: whoever reads the entry looks the address up.
    pub const UNKNOWN: Self = Self([UNLOCATED, 0, 0]);

    fn new(country: Option<u32>, asn: Option<u32>) -> Self {
        let country = match country.map(u16::try_from) {
            None => NO_COUNTRY,
            Some(Ok(i)) if i < NO_COUNTRY => i,
            Some(_) => return Self::UNKNOWN,
        };
        let asn = match asn {
            None => NO_ASN,
            Some(NO_ASN) => return Self::UNKNOWN,
            Some(i) => i,
        };
        #[allow(clippy::cast_possible_truncation)]
        Self([country, (asn >> 16) as u16, asn as u16])
    }

    /// The country and AS value indexes; `None` when not looked up.
    fn parts(self) -> Option<(Option<usize>, Option<usize>)> {
        let [c, hi, lo] = self.0;
        if c == UNLOCATED {
            return None;
        }
        let asn = (u32::from(hi) << 16) | u32::from(lo);
        Some((
            (c != NO_COUNTRY).then_some(usize::from(c)),
            (asn != NO_ASN).then_some(asn as usize),
        ))
    }
}

/// Operator-supplied files; each replaces the embedded table of its kind
/// (city only exists when given).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeoFiles {
    pub country: Option<PathBuf>,
    pub asn: Option<PathBuf>,
    pub city: Option<PathBuf>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GeoError {
    #[error("cannot use GeoIP database {path} ({flag}): {reason}")]
    File {
        path: String,
        flag: &'static str,
        reason: String,
    },
    #[error("the embedded {what} table is damaged: {reason}")]
    Embedded { what: &'static str, reason: String },
}

/// A table parsed once per process, with the time its parse took.
type Parsed<T> = Result<(Arc<T>, Duration), GeoError>;

fn embedded_country() -> Parsed<CountryTable> {
    static T: OnceLock<Parsed<CountryTable>> = OnceLock::new();
    T.get_or_init(|| {
        let t0 = Instant::now();
        CountryTable::parse(EMBEDDED_COUNTRY)
            .map(|t| (Arc::new(t), t0.elapsed()))
            .map_err(|reason| GeoError::Embedded {
                what: "country",
                reason,
            })
    })
    .clone()
}

fn embedded_asn() -> Parsed<AsnTable> {
    static T: OnceLock<Parsed<AsnTable>> = OnceLock::new();
    T.get_or_init(|| {
        let t0 = Instant::now();
        AsnTable::parse(EMBEDDED_ASN)
            .map(|t| (Arc::new(t), t0.elapsed()))
            .map_err(|reason| GeoError::Embedded { what: "AS", reason })
    })
    .clone()
}

#[derive(Debug)]
enum CountrySource {
    Embedded(Arc<CountryTable>, Duration),
    File(mmdb::Db),
}

#[derive(Debug)]
enum AsnSource {
    Embedded(Arc<AsnTable>, Duration),
    File(mmdb::Db),
}

/// One database in use, for `sikker admin geoip info`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DbInfo {
    /// `country`, `asn` or `city`.
    pub kind: &'static str,
    /// `embedded` or the file's path.
    pub source: String,
    /// The file's `database_type`, or where the embedded data came from.
    pub database: String,
    pub build_date: String,
    pub records: u64,
    /// What `records` counts.
    pub record_unit: &'static str,
    /// Time spent decoding the embedded table (once per process), if embedded.
    pub load_ms: Option<f64>,
}

/// The databases in use. Immutable: a reload builds a new one.
#[derive(Debug)]
pub struct GeoDbs {
    country: CountrySource,
    asn: AsnSource,
    city: Option<mmdb::Db>,
    /// Names for country codes whose file carries none.
    names: Option<Arc<CountryTable>>,
}

impl GeoDbs {
    /// Opens `files`, using the embedded tables for kinds not given. Blocking.
    pub fn load(files: &GeoFiles) -> Result<Self, GeoError> {
        let country = if let Some(p) = &files.country {
            CountrySource::File(mmdb::Db::open(p, mmdb::Kind::Country)?)
        } else {
            let (t, d) = embedded_country()?;
            CountrySource::Embedded(t, d)
        };
        let asn = if let Some(p) = &files.asn {
            AsnSource::File(mmdb::Db::open(p, mmdb::Kind::Asn)?)
        } else {
            let (t, d) = embedded_asn()?;
            AsnSource::Embedded(t, d)
        };
        let city = match &files.city {
            Some(p) => Some(mmdb::Db::open(p, mmdb::Kind::City)?),
            None => None,
        };
        let names = match &country {
            CountrySource::Embedded(t, _) => Some(t.clone()),
            CountrySource::File(_) => embedded_country().ok().map(|(t, _)| t),
        };
        Ok(Self {
            country,
            asn,
            city,
            names,
        })
    }

    /// Everything the databases know about `ip`. Private, loopback and
    /// other non-public addresses have no location, whatever a file says.
    pub fn lookup(&self, ip: IpKey) -> GeoInfo {
        let mut g = GeoInfo::default();
        if !ip.is_public() {
            return g;
        }
        match &self.country {
            CountrySource::Embedded(t, _) => {
                if let Some((code, name)) = t.get(ip) {
                    g.country_code = Some(*code);
                    g.country_name = (!name.is_empty()).then(|| name.clone());
                }
            }
            CountrySource::File(db) => {
                if let Some((code, name)) = db.country(ip) {
                    g.country_code = Some(code);
                    g.country_name =
                        name.or_else(|| self.names.as_ref().and_then(|n| n.name_of(code)));
                }
            }
        }
        match &self.asn {
            // The table's own name, shared.
            AsnSource::Embedded(t, _) => {
                if let Some((asn, org)) = t.get(ip) {
                    g.asn = Some(*asn);
                    g.as_org = (!org.is_empty()).then(|| org.clone());
                }
            }
            AsnSource::File(_) => {
                let b = self.brief_asn(ip);
                g.asn = b.asn;
                g.as_org = b.as_org.map(Arc::from);
            }
        }
        g.city = self.city.as_ref().and_then(|db| db.city(ip));
        g
    }

    /// The country code and AS only, borrowed from the databases.
    pub fn brief(&self, ip: IpKey) -> Brief<'_> {
        if !ip.is_public() {
            return Brief::default();
        }
        Brief {
            country_code: self.country(ip),
            ..self.brief_asn(ip)
        }
    }

    /// Where the embedded tables place `ip`, to be read by
    /// [`Self::brief_at`] ([`GeoRef::UNKNOWN`] when a file is in use: a
    /// file's lookup walks a tree, in any order).
    pub fn locate(&self, ip: IpKey) -> GeoRef {
        let (CountrySource::Embedded(c, _), AsnSource::Embedded(a, _)) = (&self.country, &self.asn)
        else {
            return GeoRef::UNKNOWN;
        };
        if !ip.is_public() {
            return GeoRef::new(None, None);
        }
        GeoRef::new(c.ranges.get(ip), a.ranges.get(ip))
    }

    /// `brief(ip)`, read from where [`Self::locate`] placed `ip` (looked
    /// up when it was not).
    pub fn brief_at(&self, ip: IpKey, at: GeoRef) -> Brief<'_> {
        let (CountrySource::Embedded(c, _), AsnSource::Embedded(a, _)) = (&self.country, &self.asn)
        else {
            return self.brief(ip);
        };
        let Some((country, asn)) = at.parts() else {
            return self.brief(ip);
        };
        let mut b = Brief {
            country_code: country.and_then(|i| c.values.get(i)).map(|(code, _)| *code),
            ..Brief::default()
        };
        if let Some((n, org)) = asn.and_then(|i| a.values.get(i)) {
            b.asn = Some(*n);
            b.as_org = (!org.is_empty()).then_some(&**org);
        }
        b
    }

    /// The AS part of `brief` (`ip` known public).
    fn brief_asn(&self, ip: IpKey) -> Brief<'_> {
        let mut b = Brief::default();
        match &self.asn {
            AsnSource::Embedded(t, _) => {
                if let Some((asn, org)) = t.get(ip) {
                    b.asn = Some(*asn);
                    b.as_org = (!org.is_empty()).then_some(&**org);
                }
            }
            AsnSource::File(db) => {
                if let Some((asn, org)) = db.asn_ref(ip) {
                    b.asn = Some(asn);
                    b.as_org = org;
                }
            }
        }
        b
    }

    /// The country code only (block-list filters).
    pub fn country(&self, ip: IpKey) -> Option<CountryCode> {
        if !ip.is_public() {
            return None;
        }
        match &self.country {
            CountrySource::Embedded(t, _) => t.get(ip).map(|(c, _)| *c),
            CountrySource::File(db) => db.country_code(ip),
        }
    }

    /// Names the data in use: an operator file by the hash of its bytes,
    /// an embedded table by its date and source (built into the binary).
    /// Equal for two loads of the same data, so a validator over looked-up
    /// fields can hash this once instead of every answer.
    pub fn identity(&self) -> String {
        let file = |db: &mmdb::Db| blake3::Hash::from(db.digest).to_hex().to_string();
        let embedded = |h: &table::Header| format!("{} {}", h.date, h.source);
        let country = match &self.country {
            CountrySource::Embedded(t, _) => embedded(&t.header),
            CountrySource::File(db) => file(db),
        };
        let asn = match &self.asn {
            AsnSource::Embedded(t, _) => embedded(&t.header),
            AsnSource::File(db) => file(db),
        };
        let city = self.city.as_ref().map(file).unwrap_or_default();
        format!("country {country}\nasn {asn}\ncity {city}\n")
    }

    /// Which databases are in use, with dates and sizes.
    pub fn info(&self) -> Vec<DbInfo> {
        let file = |kind, db: &mmdb::Db| DbInfo {
            kind,
            source: db.path.display().to_string(),
            database: db.database_type().to_owned(),
            build_date: db.build_date(),
            records: db.networks(),
            record_unit: "networks",
            load_ms: None,
        };
        let ms = |d: &Duration| Some((d.as_secs_f64() * 1e5).round() / 100.0);
        let ranges = |r: &table::Ranges| {
            let (a, b) = r.len();
            (a + b) as u64
        };
        let mut out = vec![
            match &self.country {
                CountrySource::Embedded(t, d) => DbInfo {
                    kind: "country",
                    source: "embedded".into(),
                    database: t.header.source.clone(),
                    build_date: t.header.date.clone(),
                    records: ranges(&t.ranges),
                    record_unit: "ranges",
                    load_ms: ms(d),
                },
                CountrySource::File(db) => file("country", db),
            },
            match &self.asn {
                AsnSource::Embedded(t, d) => DbInfo {
                    kind: "asn",
                    source: "embedded".into(),
                    database: t.header.source.clone(),
                    build_date: t.header.date.clone(),
                    records: ranges(&t.ranges),
                    record_unit: "ranges",
                    load_ms: ms(d),
                },
                AsnSource::File(db) => file("asn", db),
            },
        ];
        if let Some(db) = &self.city {
            out.push(file("city", db));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpKey {
        s.parse().unwrap()
    }

    /// What the shipped data says about well-known resolvers. When the
    /// tables are rebuilt these may move; the README says to re-check them.
    #[test]
    fn embedded_tables_answer_for_known_addresses() {
        let g = GeoDbs::load(&GeoFiles::default()).unwrap();
        let cases = [
            ("8.8.8.8", "US", 15169, "Google LLC"),
            ("1.1.1.1", "AU", 13335, "Cloudflare, Inc."),
            ("9.9.9.9", "US", 19281, "Quad9"),
            ("2620:fe::fe", "US", 19281, "Quad9"),
            ("2001:4860:4860::8888", "US", 15169, "Google LLC"),
            ("2606:4700:4700::1111", "US", 13335, "Cloudflare, Inc."),
            ("::ffff:8.8.4.4", "US", 15169, "Google LLC"),
        ];
        for (addr, cc, asn, org) in cases {
            let a = g.lookup(ip(addr));
            assert_eq!(
                a.country_code.map(|c| c.to_string()).as_deref(),
                Some(cc),
                "{addr}"
            );
            assert_eq!(a.asn, Some(asn), "{addr}");
            assert_eq!(a.as_org.as_deref(), Some(org), "{addr}");
            assert!(a.country_name.is_some(), "{addr}");
            assert_eq!(a.city, None, "no city without --geoip-city");
        }
        assert_eq!(
            g.lookup(ip("8.8.8.8")).country_name.as_deref(),
            Some("United States")
        );
        for private in ["10.1.2.3", "192.168.0.1", "127.0.0.1", "::1", "fe80::1"] {
            assert_eq!(g.lookup(ip(private)), GeoInfo::default(), "{private}");
        }
        let info = g.info();
        assert_eq!(info.len(), 2);
        assert!(
            info.iter()
                .all(|i| i.source == "embedded" && i.records > 100_000)
        );
    }

    #[test]
    fn a_located_address_reads_as_its_lookup() {
        let g = GeoDbs::load(&GeoFiles::default()).unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut placed = 0;
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ip = if i % 3 == 0 {
                IpKey((0x2000_u128 << 112) | (u128::from(x) << 48))
            } else {
                IpKey::from_ip(std::net::Ipv4Addr::from((x >> 32) as u32).into())
            };
            let brief = g.brief(ip);
            placed += usize::from(brief.asn.is_some());
            assert_eq!(g.brief_at(ip, g.locate(ip)), brief, "{ip:?}");
            assert_eq!(g.brief_at(ip, GeoRef::UNKNOWN), brief, "{ip:?}");
        }
        assert!(placed > 5_000, "{placed}");
        for private in ["10.1.2.3", "::1"] {
            assert_eq!(
                g.brief_at(ip(private), g.locate(ip(private))),
                Brief::default()
            );
        }
        // Indexes at the edges of the encoding.
        for (c, a) in [
            (None, None),
            (Some(0), Some(0)),
            (Some(65_533), Some(u32::MAX - 1)),
        ] {
            assert_eq!(
                GeoRef::new(c, a).parts(),
                Some((c.map(|c| c as usize), a.map(|a| a as usize)))
            );
        }
        assert_eq!(GeoRef::new(Some(65_534), None), GeoRef::UNKNOWN);
        assert_eq!(GeoRef::new(None, Some(u32::MAX)), GeoRef::UNKNOWN);
    }

    #[test]
    fn country_codes() {
        assert_eq!(CountryCode::parse("nl").unwrap().as_str(), "NL");
        for bad in ["", "N", "NLD", "1A", "é"] {
            assert!(CountryCode::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn missing_and_wrong_files_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.mmdb");
        std::fs::write(&junk, b"this is not a MaxMind database").unwrap();
        let e = GeoDbs::load(&GeoFiles {
            asn: Some(junk.clone()),
            ..GeoFiles::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("junk.mmdb") && e.contains("--geoip-asn"), "{e}");
        let e = GeoDbs::load(&GeoFiles {
            city: Some(dir.path().join("absent.mmdb")),
            ..GeoFiles::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("absent.mmdb") && e.contains("--geoip-city"),
            "{e}"
        );
    }
}
