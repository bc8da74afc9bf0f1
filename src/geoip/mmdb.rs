//! Operator-supplied MaxMind DB files (GeoIP2/GeoLite2 Country, City, ASN),
//! read whole into memory and checked when opened.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;

use super::{CountryCode, GeoError};
use crate::domain::IpKey;

/// Which flag a file was given to, and so which records it must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Country,
    Asn,
    City,
}

impl Kind {
    pub fn flag(self) -> &'static str {
        match self {
            Self::Country => "--geoip-country / SIKKER_GEOIP_COUNTRY",
            Self::Asn => "--geoip-asn / SIKKER_GEOIP_ASN",
            Self::City => "--geoip-city / SIKKER_GEOIP_CITY",
        }
    }

    /// Whether a `database_type` from the metadata carries this kind's records.
    fn accepts(self, db_type: &str) -> bool {
        let t = db_type.to_ascii_lowercase();
        match self {
            Self::Country => t.contains("country") || t.contains("city"),
            Self::Asn => t.contains("asn") || t.contains("isp"),
            Self::City => t.contains("city"),
        }
    }
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow)]
    en: Option<&'a str>,
}

#[derive(Deserialize)]
struct Place<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
    #[serde(borrow)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct CountryRec<'a> {
    #[serde(borrow)]
    country: Option<Place<'a>>,
    #[serde(borrow)]
    registered_country: Option<Place<'a>>,
    /// The flat layout of some open databases (`{"country_code": "NL"}`).
    #[serde(borrow)]
    country_code: Option<&'a str>,
}

/// A country record's codes only: names are skipped, not copied.
#[derive(Deserialize)]
struct CodeOnly<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct CountryCodeRec<'a> {
    #[serde(borrow)]
    country: Option<CodeOnly<'a>>,
    #[serde(borrow)]
    registered_country: Option<CodeOnly<'a>>,
    #[serde(borrow)]
    country_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct AsnRec<'a> {
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

#[derive(Deserialize)]
struct CityRec<'a> {
    #[serde(borrow)]
    city: Option<Place<'a>>,
}

pub struct Db {
    reader: Reader<Vec<u8>>,
    pub path: PathBuf,
    pub kind: Kind,
    networks: u64,
    /// BLAKE3 of the file's bytes: names its data whatever its metadata
    /// says (a rebuilt file may keep its build date).
    pub digest: [u8; 32],
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Walks the whole search tree and decodes every record once, so a damaged
/// tree or data section is found when the file is opened, not on the first
/// lookup that happens to reach it. (`Reader::verify` does the same but also
/// refuses files whose metadata lacks optional fields, such as an empty
/// description, which real databases have.) Returns the number of networks.
fn walk(reader: &Reader<Vec<u8>>) -> Result<u64, maxminddb::MaxMindDbError> {
    let mut seen = HashSet::new();
    let mut networks = 0_u64;
    // A tree of N nodes has at most 2N leaves; more means a cycle.
    let limit = u64::from(reader.metadata.node_count).saturating_mul(2) + 1;
    for item in reader.networks(WithinOptions::default())? {
        let r = item?;
        networks += 1;
        if networks > limit {
            return Err(maxminddb::MaxMindDbError::invalid_database(
                "the search tree has a cycle",
            ));
        }
        if let Some(offset) = r.offset()
            && seen.insert(offset)
        {
            r.decode::<serde::de::IgnoredAny>()?;
        }
    }
    Ok(networks)
}

impl Db {
    /// Reads, verifies and type-checks `path`. Blocking.
    pub fn open(path: &Path, kind: Kind) -> Result<Self, GeoError> {
        let fail = |reason: String| GeoError::File {
            path: path.display().to_string(),
            flag: kind.flag(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let digest = *blake3::hash(&bytes).as_bytes();
        let reader = Reader::from_source(bytes)
            .map_err(|e| fail(format!("not a readable MaxMind DB file: {e}")))?;
        let db_type = &reader.metadata.database_type;
        if !kind.accepts(db_type) {
            return Err(fail(format!(
                "database type '{db_type}' holds no {} records",
                match kind {
                    Kind::Country => "country",
                    Kind::Asn => "AS number",
                    Kind::City => "city",
                }
            )));
        }
        let networks = walk(&reader).map_err(|e| fail(format!("damaged MaxMind DB file: {e}")))?;
        Ok(Self {
            reader,
            path: path.to_path_buf(),
            kind,
            networks,
            digest,
        })
    }

    fn decode<'a, T: Deserialize<'a>>(&'a self, ip: IpKey) -> Option<T> {
        let r = self.reader.lookup(ip.to_ip()).ok()?;
        r.decode::<T>().ok().flatten()
    }

    /// Country code and, when the file has one, its English name.
    pub fn country(&self, ip: IpKey) -> Option<(CountryCode, Option<Arc<str>>)> {
        let rec: CountryRec<'_> = self.decode(ip)?;
        let place = rec
            .country
            .filter(|p| p.iso_code.is_some())
            .or(rec.registered_country.filter(|p| p.iso_code.is_some()));
        match place {
            Some(p) => {
                let code = CountryCode::parse(p.iso_code?)?;
                Some((code, p.names.and_then(|n| n.en).map(Arc::from)))
            }
            None => Some((CountryCode::parse(rec.country_code?)?, None)),
        }
    }

    /// The country code `country` gives, without decoding its name.
    pub fn country_code(&self, ip: IpKey) -> Option<CountryCode> {
        let rec: CountryCodeRec<'_> = self.decode(ip)?;
        match rec
            .country
            .and_then(|p| p.iso_code)
            .or(rec.registered_country.and_then(|p| p.iso_code))
        {
            Some(code) => CountryCode::parse(code),
            None => CountryCode::parse(rec.country_code?),
        }
    }

    /// The AS number and name, the name borrowed from the file.
    pub fn asn_ref(&self, ip: IpKey) -> Option<(u32, Option<&str>)> {
        let rec: AsnRec<'_> = self.decode(ip)?;
        Some((
            rec.autonomous_system_number?,
            rec.autonomous_system_organization,
        ))
    }

    pub fn city(&self, ip: IpKey) -> Option<Arc<str>> {
        let rec: CityRec<'_> = self.decode(ip)?;
        rec.city?.names?.en.map(Arc::from)
    }

    pub fn database_type(&self) -> &str {
        &self.reader.metadata.database_type
    }

    /// The build date, `YYYY-MM-DD`.
    pub fn build_date(&self) -> String {
        let ms = i64::try_from(self.reader.metadata.build_epoch.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        crate::domain::UnixMillis(ms)
            .rfc3339()
            .chars()
            .take(10)
            .collect()
    }

    /// Networks with data, counted when the file was opened.
    pub fn networks(&self) -> u64 {
        self.networks
    }
}
