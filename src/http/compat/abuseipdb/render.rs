//! Value formats of the AbuseIPDB surface: timestamps, report objects with
//! pseudonymous reporters, and the GeoIP-derived fields.

use serde_json::{Value, json};

use crate::crypto::SecretKey;
use crate::domain::abuseipdb;
use crate::domain::{Category, IpKey, Protocol, UnixMillis};
use crate::service::Services;
use crate::store::reports::RawReport;

/// `2026-01-02T03:04:05+00:00`: seconds precision, numeric offset, UTC
/// (what PHP's `DateTime::ATOM` parses).
pub fn atom(t: UnixMillis) -> String {
    let s = t.rfc3339();
    match s.strip_suffix('Z') {
        Some(base) => format!("{base}+00:00"),
        None => s,
    }
}

/// Purpose string of the reporter pseudonym's keyed hash.
const REPORTER_PURPOSE: &str = "abuseipdb reporter id v1";

/// The `reporterId` of a report: a keyed hash of (account, IP) below 2^53.
/// It tells reports about one IP by the same reporter apart from others
/// (as `numDistinctUsers` already does) but is different for every IP, so
/// no reporter can be followed across addresses, and it cannot be turned
/// back into an account without the server's secret (P11, P12).
pub fn reporter_id(secret: &SecretKey, account: u64, ip: u128) -> u64 {
    let mut data = [0_u8; 24];
    data[..8].copy_from_slice(&account.to_le_bytes());
    data[8..].copy_from_slice(&ip.to_le_bytes());
    let h = secret.keyed_hash(REPORTER_PURPOSE, &data);
    let mut b = [0_u8; 8];
    b.copy_from_slice(&h[..8]);
    // Never 0, which would read as "unknown reporter".
    (u64::from_le_bytes(b) & ((1 << 53) - 1)).max(1)
}

/// The AbuseIPDB ids of a stored report: as submitted on `/api/v2`, else
/// its sikker categories expressed upstream's way.
pub fn report_categories(r: &RawReport) -> Vec<u8> {
    if !r.abuseipdb_categories.is_empty() {
        return r.abuseipdb_categories.clone();
    }
    let proto = r
        .protocol
        .as_deref()
        .and_then(|p| p.parse::<Protocol>().ok());
    let mut out = Vec::new();
    for c in r.categories().into_iter().filter_map(Category::from_id) {
        for id in abuseipdb::from_sikker(c, proto) {
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

/// One report object (`reports[]` of check, `results[]` of reports).
/// Reporter countries are not kept (they would be account data): null.
pub fn report_json(secret: &SecretKey, r: &RawReport) -> Value {
    json!({
        "reportedAt": atom(UnixMillis(r.at_ms)),
        "comment": r.comment.clone().unwrap_or_default(),
        "categories": report_categories(r),
        "reporterId": reporter_id(secret, r.account, r.ip),
        "reporterCountryCode": Value::Null,
        "reporterCountryName": Value::Null,
    })
}

/// The location and network fields of an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeoFields {
    pub country_code: Option<String>,
    pub country_name: Option<String>,
    pub usage_type: Option<String>,
    /// `""` when unknown: a strictly typed client needs a string.
    pub isp: String,
    pub domain: Option<String>,
    pub is_tor: bool,
}

/// The only place these fields are filled: country from the local GeoIP
/// tables, `isp` from the AS organisation, `isTor` from the imported exit
/// list. Usage type and domain are not known locally: null (only
/// non-public addresses get upstream's `Reserved`, which needs no data).
pub fn geo_fields(services: &Services, ip: IpKey) -> GeoFields {
    let g = services.geo_answer(ip, None);
    GeoFields {
        country_code: g.geo.country_code.map(|c| c.as_str().to_owned()),
        country_name: g.geo.country_name.as_deref().map(str::to_owned),
        usage_type: (!ip.is_public()).then(|| "Reserved".to_owned()),
        isp: g.geo.as_org.as_deref().unwrap_or_default().to_owned(),
        domain: None,
        is_tor: g.is_tor,
    }
}
