//! The vocabulary of threat data: protocols, report categories, severities.

use std::fmt;
use std::str::FromStr;

/// The 16 honeypot protocols of the SikkerAPI contract, as lower-case tokens.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Ssh,
    Http,
    Ftp,
    Smtp,
    Mysql,
    Postgresql,
    Mongodb,
    Redis,
    Docker,
    Telnet,
    Elasticsearch,
    Mssql,
    Imap,
    Smb,
    Rtsp,
    Sip,
}

impl Protocol {
    pub const ALL: [Self; 16] = [
        Self::Ssh,
        Self::Http,
        Self::Ftp,
        Self::Smtp,
        Self::Mysql,
        Self::Postgresql,
        Self::Mongodb,
        Self::Redis,
        Self::Docker,
        Self::Telnet,
        Self::Elasticsearch,
        Self::Mssql,
        Self::Imap,
        Self::Smb,
        Self::Rtsp,
        Self::Sip,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ssh => "ssh",
            Self::Http => "http",
            Self::Ftp => "ftp",
            Self::Smtp => "smtp",
            Self::Mysql => "mysql",
            Self::Postgresql => "postgresql",
            Self::Mongodb => "mongodb",
            Self::Redis => "redis",
            Self::Docker => "docker",
            Self::Telnet => "telnet",
            Self::Elasticsearch => "elasticsearch",
            Self::Mssql => "mssql",
            Self::Imap => "imap",
            Self::Smb => "smb",
            Self::Rtsp => "rtsp",
            Self::Sip => "sip",
        }
    }

    /// A bit per protocol, for compact protocol sets in the index.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let s = s.trim().to_ascii_lowercase();
        let s = match s.as_str() {
            "https" => "http",
            "postgres" => "postgresql",
            "mongo" => "mongodb",
            "elastic" => "elasticsearch",
            other => other,
        };
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or(())
    }
}

/// Report categories 1–16 of the SikkerAPI contract.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Category(u8);

const CATEGORY_NAMES: [&str; 16] = [
    "brute_force",
    "port_scan",
    "ddos",
    "web_exploit",
    "sql_injection",
    "phishing",
    "spam",
    "bad_bot",
    "exploited_host",
    "malware",
    "dns_abuse",
    "open_proxy",
    "iot_targeted",
    "spoofing",
    "fraud",
    "other",
];

impl Category {
    pub fn from_id(id: u8) -> Option<Self> {
        (1..=16).contains(&id).then_some(Self(id))
    }

    /// A name (case-insensitive) or a decimal id 1–16.
    pub fn parse(s: &str) -> Option<Self> {
        let t = s.trim();
        if let Ok(n) = t.parse::<u8>() {
            return Self::from_id(n);
        }
        let lower = t.to_ascii_lowercase();
        CATEGORY_NAMES
            .iter()
            .position(|n| *n == lower)
            .and_then(|i| u8::try_from(i + 1).ok())
            .map(Self)
    }

    pub fn id(self) -> u8 {
        self.0
    }

    pub fn name(self) -> &'static str {
        CATEGORY_NAMES[usize::from(self.0 - 1)]
    }

    /// How strongly one report of this category speaks for malice (0–10).
    pub fn weight(self) -> f64 {
        match self.name() {
            "web_exploit" | "sql_injection" | "malware" | "exploited_host" => 10.0,
            "brute_force" | "ddos" | "phishing" | "fraud" => 8.0,
            "spam" | "bad_bot" | "open_proxy" | "iot_targeted" | "spoofing" | "dns_abuse" => 6.0,
            _ => 4.0, // port_scan, other
        }
    }
}

/// Behaviour severity, ordered from least to most serious.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    VeryHigh,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::VeryHigh => "very_high",
        }
    }

    /// Points per behaviour of this severity (SikkerAPI's published weights).
    pub fn weight(self) -> f64 {
        match self {
            Self::Info => 3.0,
            Self::Low => 8.0,
            Self::Medium => 20.0,
            Self::High => 35.0,
            Self::VeryHigh => 55.0,
        }
    }
}

impl FromStr for Severity {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim().to_ascii_lowercase().as_str() {
            "info" => Ok(Self::Info),
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            "very_high" | "veryhigh" | "very-high" => Ok(Self::VeryHigh),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_by_name_and_id() {
        assert_eq!(Category::parse("brute_force").unwrap().id(), 1);
        assert_eq!(Category::parse("BRUTE_FORCE").unwrap().id(), 1);
        assert_eq!(Category::parse("3").unwrap().name(), "ddos");
        assert_eq!(Category::parse("16").unwrap().name(), "other");
        for bad in ["0", "17", "abc", "", "-1", "256"] {
            assert!(Category::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn protocols_round_trip() {
        for p in Protocol::ALL {
            assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
        }
        assert_eq!("HTTPS".parse::<Protocol>(), Ok(Protocol::Http));
        assert!("gopher".parse::<Protocol>().is_err());
        let bits: u16 = Protocol::ALL.iter().map(|p| p.bit()).fold(0, |a, b| a | b);
        assert_eq!(bits, u16::MAX);
    }
}
