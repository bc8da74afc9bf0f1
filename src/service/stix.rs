//! STIX 2.1 objects built from indicators: the producer `identity` and one
//! `indicator` per IP. Pure: every value is a function of the indicator and
//! its feed position, so one version always renders the same bytes.
//! Only aggregate evidence is used; nothing about reporters, sensors,
//! usernames or e-mail addresses is ever written into an object (P12).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::domain::stix_id::{identity_uuid, indicator_uuid};
use crate::domain::{Category, Indicator, IpKey, Severity, UnixMillis, behavior, score};
use crate::store::feed::FeedPos;

pub const SPEC_VERSION: &str = "2.1";
/// The producer identity's `created`/`modified` (and TAXII `date_added`):
/// fixed, so its one version never changes. 2026-01-01T00:00:00.000Z.
pub const IDENTITY_TIME: UnixMillis = UnixMillis(1_767_225_600_000);

/// RFC 3339 in UTC with exactly three fractional digits, as STIX requires
/// for `created`/`modified` and TAXII uses for `date_added`.
pub fn timestamp(t: UnixMillis) -> String {
    let secs = t.0.div_euclid(1000);
    let ms = t.0.rem_euclid(1000);
    time::OffsetDateTime::from_unix_timestamp(secs).map_or_else(
        |_| "1970-01-01T00:00:00.000Z".to_owned(),
        |d| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{ms:03}Z",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            )
        },
    )
}

/// Parses an RFC 3339 timestamp to nanoseconds since the epoch. A space
/// stands for `+` (clients that send offsets unencoded).
pub fn parse_timestamp(s: &str) -> Option<i128> {
    let s = s.trim();
    let fixed = match s.rfind(' ') {
        Some(i) if i > 10 => format!("{}+{}", &s[..i], &s[i + 1..]),
        _ => s.to_owned(),
    };
    time::OffsetDateTime::parse(&fixed, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp_nanos)
}

pub fn identity_id() -> String {
    format!("identity--{}", identity_uuid())
}

pub fn indicator_id(ip: IpKey) -> String {
    format!("indicator--{}", indicator_uuid(ip))
}

/// The organisation that produces every indicator (`created_by_ref`).
pub fn identity() -> Value {
    let t = timestamp(IDENTITY_TIME);
    json!({
        "type": "identity",
        "spec_version": SPEC_VERSION,
        "id": identity_id(),
        "created": t,
        "modified": t,
        "name": "SikkerNet",
        "description": "Threat intelligence produced by this sikker installation from honeypot sensors and community reports",
        "identity_class": "organization",
        "sectors": ["technology"],
    })
}

/// A STIX bundle of `objects` about `ip` at `version`; its id is derived
/// from both, so the same answer always has the same id.
pub fn bundle(ip: IpKey, version: UnixMillis, objects: &[Value]) -> Value {
    let id = uuid::Uuid::new_v5(
        &crate::domain::stix_id::NAMESPACE,
        format!("bundle:{ip}:{}", version.0).as_bytes(),
    );
    json!({
        "type": "bundle",
        "id": format!("bundle--{id}"),
        "objects": objects,
    })
}

/// An ATT&CK technique an observation maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Technique {
    id: &'static str,
    name: &'static str,
    phase: &'static str,
}

#[allow(clippy::unnecessary_wraps)] // Keeps the mapping tables one line per entry.
const fn t(id: &'static str, name: &'static str, phase: &'static str) -> Option<Technique> {
    Some(Technique { id, name, phase })
}

fn behavior_technique(name: &str) -> Option<Technique> {
    match name {
        "port_scan" => t("T1595", "Active Scanning", "reconnaissance"),
        "web_scan" => t("T1595.003", "Wordlist Scanning", "reconnaissance"),
        "credential_brute_force" => t("T1110", "Brute Force", "credential-access"),
        "credential_stuffing" => t("T1110.004", "Credential Stuffing", "credential-access"),
        "exploit_attempt" => t(
            "T1190",
            "Exploit Public-Facing Application",
            "initial-access",
        ),
        "malware_download" => t("T1105", "Ingress Tool Transfer", "command-and-control"),
        "cryptominer_deploy" => t("T1496", "Resource Hijacking", "impact"),
        "persistence_attempt" => t("T1098", "Account Manipulation", "persistence"),
        "recon" => t("T1082", "System Information Discovery", "discovery"),
        _ => None,
    }
}

fn category_technique(c: Category) -> Option<Technique> {
    match c.name() {
        "brute_force" => t("T1110", "Brute Force", "credential-access"),
        "port_scan" => t("T1595", "Active Scanning", "reconnaissance"),
        "ddos" => t("T1498", "Network Denial of Service", "impact"),
        "web_exploit" | "sql_injection" => t(
            "T1190",
            "Exploit Public-Facing Application",
            "initial-access",
        ),
        "phishing" => t("T1566", "Phishing", "initial-access"),
        "malware" => t("T1608.001", "Upload Malware", "resource-development"),
        "open_proxy" => t("T1090", "Proxy", "command-and-control"),
        _ => None,
    }
}

fn kebab(s: &str) -> String {
    s.replace('_', "-")
}

fn ip_pattern(ip: IpKey) -> String {
    let kind = if ip.is_v4() { "ipv4-addr" } else { "ipv6-addr" };
    format!("[{kind}:value = '{ip}']")
}

/// The STIX indicator for `ind` at its feed position `pos`.
/// `retention_ms` is how long the indicator lives without new evidence;
/// `expiries` counts its IP's earlier expiries (repeat offender), which
/// lengthen `valid_until` and raise the confidence.
pub fn indicator(ind: &Indicator, pos: &FeedPos, retention_ms: i64, expiries: u32) -> Value {
    let modified = UnixMillis(pos.modified_ms);
    // The score as of this version, not of the request, so a version's
    // content never changes (the history only changes when an indicator
    // expires, i.e. between versions).
    let confidence = score::score_with_history(ind, modified, expiries).score;
    let validity_ms = crate::domain::repeat::validity_ms(retention_ms, expiries);
    let categories: Vec<Category> = ind
        .categories
        .keys()
        .filter_map(|id| Category::from_id(*id))
        .collect();
    let rules: Vec<&behavior::Rule> = ind
        .behaviors
        .keys()
        .filter_map(|b| behavior::rule(b))
        .collect();
    let mut labels: BTreeSet<String> = rules.iter().map(|r| kebab(r.name)).collect();
    labels.extend(categories.iter().map(|c| kebab(c.name())));
    let techniques: BTreeSet<Technique> = rules
        .iter()
        .filter_map(|r| behavior_technique(r.name))
        .chain(categories.iter().filter_map(|c| category_technique(*c)))
        .collect();
    let malicious = rules.iter().any(|r| r.severity >= Severity::Medium)
        || categories
            .iter()
            .any(|c| !matches!(c.name(), "port_scan" | "other"));
    let indicator_type = if malicious {
        "malicious-activity"
    } else {
        "anomalous-activity"
    };
    let mut protocols: Vec<&str> = ind.protocols.keys().map(|p| p.as_str()).collect();
    protocols.sort_unstable();
    let description = format!(
        "Observed in {} honeypot session(s) with {} event(s){}; {} community report(s) from {} independent reporter(s).",
        ind.sessions,
        ind.events,
        if protocols.is_empty() {
            String::new()
        } else {
            format!(" over {}", protocols.join(", "))
        },
        ind.reports,
        ind.distinct_reporters,
    );
    let valid_from = ind.first_seen.min(modified);
    let valid_until = UnixMillis(
        ind.last_seen
            .0
            .saturating_add(validity_ms)
            .max(valid_from.0 + 1),
    );
    let mut o = json!({
        "type": "indicator",
        "spec_version": SPEC_VERSION,
        "id": indicator_id(ind.ip),
        "created": timestamp(UnixMillis(pos.created_ms)),
        "modified": timestamp(modified),
        "created_by_ref": identity_id(),
        "name": format!("Malicious IP {}", ind.ip),
        "description": description,
        "indicator_types": [indicator_type],
        "pattern": ip_pattern(ind.ip),
        "pattern_type": "stix",
        "pattern_version": SPEC_VERSION,
        "valid_from": timestamp(valid_from),
        "valid_until": timestamp(valid_until),
        "confidence": confidence,
    });
    if !labels.is_empty() {
        o["labels"] = json!(labels);
    }
    if !techniques.is_empty() {
        let phases: BTreeSet<&str> = techniques.iter().map(|t| t.phase).collect();
        o["kill_chain_phases"] = phases
            .iter()
            .map(|p| json!({"kill_chain_name": "mitre-attack", "phase_name": p}))
            .collect();
        o["external_references"] = techniques
            .iter()
            .map(|t| {
                json!({
                    "source_name": "mitre-attack",
                    "external_id": t.id,
                    "description": t.name,
                    "url": format!("https://attack.mitre.org/techniques/{}/", t.id.replace('.', "/")),
                })
            })
            .collect();
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Protocol;

    fn pos(created: i64, modified: i64) -> FeedPos {
        FeedPos {
            created_ms: created,
            modified_ms: modified,
            seq: 1,
        }
    }

    #[test]
    fn timestamps_have_milliseconds_and_parse_back() {
        assert_eq!(
            timestamp(UnixMillis(1_774_094_400_123)),
            "2026-03-21T12:00:00.123Z"
        );
        assert_eq!(timestamp(IDENTITY_TIME), "2026-01-01T00:00:00.000Z");
        assert_eq!(
            parse_timestamp("2026-03-21T12:00:00.123456+00:00"),
            Some(1_774_094_400_123_456_000)
        );
        assert_eq!(
            parse_timestamp("2026-03-21T13:00:00 01:00"),
            Some(1_774_094_400_000_000_000),
            "a space stands for an unencoded plus"
        );
        assert_eq!(parse_timestamp("2026-03-21"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn indicator_properties() {
        let ip: IpKey = "203.0.113.42".parse().unwrap();
        let mut ind = Indicator::new(ip, UnixMillis(1_000));
        let cat = Category::parse("brute_force").unwrap();
        ind.apply_report(9, 1000, cat, Some(Protocol::Ssh), UnixMillis(2_000));
        ind.behaviors.insert("credential_brute_force".into(), 3);
        ind.usernames.insert("alice".into());
        ind.emails.insert("alice@example.org".into());
        let o = indicator(&ind, &pos(2_000, 5_000), 30 * 86_400_000, 0);
        assert_eq!(o["type"], "indicator");
        assert_eq!(o["id"], indicator_id(ip));
        assert_eq!(o["pattern"], "[ipv4-addr:value = '203.0.113.42']");
        assert_eq!(o["created"], "1970-01-01T00:00:02.000Z");
        assert_eq!(o["modified"], "1970-01-01T00:00:05.000Z");
        assert_eq!(o["valid_from"], "1970-01-01T00:00:01.000Z");
        assert_eq!(
            o["valid_until"],
            timestamp(UnixMillis(2_000 + 30 * 86_400_000))
        );
        assert_eq!(o["indicator_types"], json!(["malicious-activity"]));
        assert_eq!(
            o["labels"],
            json!(["brute-force", "credential-brute-force"])
        );
        assert_eq!(o["kill_chain_phases"][0]["phase_name"], "credential-access");
        assert_eq!(o["external_references"][0]["external_id"], "T1110");
        assert!(o["confidence"].as_u64().unwrap() <= 100);
        let text = o.to_string();
        assert!(!text.contains("alice"), "no personal data in indicators");
        // Same version, same bytes.
        assert_eq!(
            text,
            indicator(&ind, &pos(2_000, 5_000), 30 * 86_400_000, 0).to_string()
        );
        let v6: IpKey = "2001:db8::1".parse().unwrap();
        let o6 = indicator(&Indicator::new(v6, UnixMillis(0)), &pos(0, 0), 1000, 0);
        assert_eq!(o6["pattern"], "[ipv6-addr:value = '2001:db8::1']");
        assert_eq!(o6["indicator_types"], json!(["anomalous-activity"]));
        assert!(o6.get("labels").is_none());
    }
}
