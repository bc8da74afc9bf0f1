//! Geolocation for every surface: the databases in use (reloadable without a
//! restart) and the operator's Tor exit list. Lookups stay in memory.

use std::sync::{Arc, RwLock};

use ipnet::IpNet;
use serde::Serialize;

use super::{Error, Result, Services};
use crate::domain::{Category, Indicator, IpKey};
use crate::geoip::{CountryCode, DbInfo, GeoDbs, GeoError, GeoFiles, GeoInfo};
use crate::index::ranges::{CidrSet, bounds};
use crate::store::{self, Store};

/// At most this many lines in one Tor exit list import.
pub const MAX_TOR_LINES: usize = 100_000;

#[derive(Debug)]
pub struct GeoState {
    files: GeoFiles,
    dbs: RwLock<Arc<GeoDbs>>,
    tor: RwLock<Arc<CidrSet<()>>>,
    /// One reload or import at a time, so memory is published in the order
    /// the store (or the files) were read.
    change: tokio::sync::Mutex<()>,
}

impl From<GeoError> for Error {
    fn from(e: GeoError) -> Self {
        match e {
            GeoError::File { .. } => Error::invalid("geoip", e.to_string()),
            GeoError::Embedded { .. } => Error::Internal {
                detail: e.to_string(),
            },
        }
    }
}

fn key(net: &IpNet) -> (u128, u8) {
    let extra = if matches!(net, IpNet::V4(_)) { 96 } else { 0 };
    (bounds(net).0, net.prefix_len() + extra)
}

fn net_of((start, len): (u128, u8)) -> Option<IpNet> {
    let ip = IpKey(start);
    let len = if ip.is_v4() {
        len.checked_sub(96)?
    } else {
        len
    };
    IpNet::new(ip.to_ip(), len).ok()
}

fn tor_set(keys: &[(u128, u8)]) -> CidrSet<()> {
    CidrSet::new(keys.iter().filter_map(|k| net_of(*k)).map(|n| (n, ())))
}

/// The answer of a Tor exit list import.
#[derive(Clone, Debug, Serialize)]
pub struct TorImport {
    pub imported: usize,
    pub ipv4: usize,
    pub ipv6: usize,
}

/// Geolocation with the flags the check answer carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeoAnswer {
    pub geo: GeoInfo,
    pub is_tor: bool,
    pub is_proxy: bool,
}

impl GeoAnswer {
    /// The SikkerAPI `geolocation` object (also printed by `sikker admin
    /// geoip lookup`); `None` (`null`) when nothing at all is known.
    pub fn body(&self) -> Option<GeoBody<'_>> {
        if self.geo.is_empty() && !self.is_tor && !self.is_proxy {
            return None;
        }
        let g = &self.geo;
        Some(GeoBody {
            asn: g.asn.map(|a| a.to_string()),
            asn_org: g.as_org.as_deref(),
            city: g.city.as_deref(),
            country_code: g.country_code.as_ref().map(CountryCode::as_str),
            country_name: g.country_name.as_deref(),
            is_proxy: self.is_proxy,
            is_tor: self.is_tor,
        })
    }

    /// [`Self::body`] as a JSON value.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.body()).unwrap_or_default()
    }
}

/// The `geolocation` object, written straight from the answer (keys in
/// the order a JSON map gives them).
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GeoBody<'a> {
    asn: Option<String>,
    asn_org: Option<&'a str>,
    city: Option<&'a str>,
    country_code: Option<&'a str>,
    country_name: Option<&'a str>,
    is_proxy: bool,
    is_tor: bool,
}

impl GeoState {
    /// Opens the databases and the stored Tor exit list. Blocking.
    pub fn load(store: &Store, files: GeoFiles) -> Result<Self> {
        let dbs = GeoDbs::load(&files)?;
        let tor = store.read_blocking(store::torexits::all)?;
        Ok(Self {
            files,
            dbs: RwLock::new(Arc::new(dbs)),
            tor: RwLock::new(Arc::new(tor_set(&tor))),
            change: tokio::sync::Mutex::new(()),
        })
    }

    /// The databases in use now (a reload swaps in new ones).
    pub fn dbs(&self) -> Option<Arc<GeoDbs>> {
        self.dbs.read().ok().map(|d| d.clone())
    }

    pub fn is_tor_exit(&self, ip: IpKey) -> bool {
        self.tor.read().is_ok_and(|t| t.contains(ip))
    }
}

/// Open-proxy evidence: the indicator was reported as an open proxy.
pub fn has_proxy_evidence(ind: &Indicator) -> bool {
    Category::parse("open_proxy").is_some_and(|c| ind.categories.contains_key(&c.id()))
}

impl Services {
    /// What the local databases say about `ip` (country, city, AS).
    pub fn geo(&self, ip: IpKey) -> GeoInfo {
        self.geo.dbs().map(|d| d.lookup(ip)).unwrap_or_default()
    }

    /// Geolocation plus the Tor-exit and open-proxy flags for `ip`, given
    /// its indicator when one is live.
    pub fn geo_answer(&self, ip: IpKey, ind: Option<&Indicator>) -> GeoAnswer {
        GeoAnswer {
            geo: self.geo(ip),
            is_tor: self.geo.is_tor_exit(ip),
            is_proxy: ind.is_some_and(has_proxy_evidence),
        }
    }

    /// Whether `ip` is on the imported Tor exit list.
    pub fn is_tor_exit(&self, ip: IpKey) -> bool {
        self.geo.is_tor_exit(ip)
    }

    /// The databases in use, with dates and record counts.
    pub fn geoip_info(&self) -> Vec<DbInfo> {
        self.geo.dbs().map(|d| d.info()).unwrap_or_default()
    }

    /// `sikker admin geoip info`.
    pub fn geoip_info_json(&self) -> serde_json::Value {
        serde_json::json!({
            "databases": self.geoip_info(),
            "tor_exit_networks": self.tor_exit_count(),
        })
    }

    /// `sikker admin geoip lookup IP`: the check answer's geolocation.
    pub fn geoip_lookup_json(&self, ip: &str) -> Result<serde_json::Value> {
        let key = ip
            .trim()
            .parse::<IpKey>()
            .map_err(|e| Error::invalid("ip", e.to_string()))?;
        let ind = self.indicator(key, self.clock.now())?;
        let answer = self.geo_answer(key, ind.as_ref());
        Ok(serde_json::json!({ "ip": key.to_string(), "geolocation": answer.to_json() }))
    }

    /// Number of networks on the Tor exit list.
    pub fn tor_exit_count(&self) -> usize {
        self.geo.tor.read().map_or(0, |t| t.len())
    }

    /// Re-reads the operator's files; on any error the databases in use stay.
    pub async fn geoip_reload(&self) -> Result<Vec<DbInfo>> {
        let _one = self.geo.change.lock().await;
        let files = self.geo.files.clone();
        let dbs = tokio::task::spawn_blocking(move || GeoDbs::load(&files))
            .await
            .map_err(|e| Error::Internal {
                detail: e.to_string(),
            })??;
        let info = dbs.info();
        *self.geo.dbs.write().map_err(|_| Error::Internal {
            detail: "lock poisoned".into(),
        })? = Arc::new(dbs);
        Ok(info)
    }

    /// Replaces the Tor exit list with `text`: one IP or CIDR per line,
    /// `#` starts a comment. Nothing changes when any line is bad.
    pub async fn import_tor_exits(&self, text: &str) -> Result<TorImport> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.split('#').next().unwrap_or_default().trim();
            if t.is_empty() {
                continue;
            }
            if keys.len() >= MAX_TOR_LINES {
                return Err(Error::invalid(
                    "tor-exits",
                    format!("at most {MAX_TOR_LINES} networks"),
                ));
            }
            let net = super::whitelist::parse_net(t).map_err(|_| {
                Error::invalid(
                    "tor-exits",
                    format!(
                        "line {}: '{}' is not an IP address or CIDR",
                        i + 1,
                        t.chars().take(64).collect::<String>()
                    ),
                )
            })?;
            keys.push(key(&net));
        }
        keys.sort_unstable();
        keys.dedup();
        let _one = self.geo.change.lock().await;
        let ipv4 = keys.iter().filter(|(s, _)| IpKey(*s).is_v4()).count();
        let stored = keys.clone();
        self.store
            .write(move |txn| store::torexits::replace_all(txn, &stored))
            .await?;
        *self.geo.tor.write().map_err(|_| Error::Internal {
            detail: "lock poisoned".into(),
        })? = Arc::new(tor_set(&keys));
        Ok(TorImport {
            imported: keys.len(),
            ipv4,
            ipv6: keys.len() - ipv4,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tor_keys_round_trip_both_families() {
        for n in ["185.220.101.0/24", "192.0.2.7/32", "2001:db8::/48", "::/0"] {
            let net: IpNet = n.parse().unwrap();
            assert_eq!(net_of(key(&net)), Some(net), "{n}");
        }
        let set = tor_set(&[key(&"185.220.101.0/24".parse().unwrap())]);
        assert!(set.contains("::ffff:185.220.101.9".parse().unwrap()));
        assert!(!set.contains("185.220.102.1".parse().unwrap()));
    }
}
