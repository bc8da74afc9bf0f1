//! AbuseIPDB's 23 report categories and their mapping to and from sikker's
//! 16 categories (contract §7): `to_sikker` for reports received on
//! `/api/v2`, `from_sikker` for native evidence shown in `/api/v2` answers.

use super::threat::{Category, Protocol};

/// Upstream category names, id = index + 1.
pub const NAMES: [&str; 23] = [
    "DNS Compromise",
    "DNS Poisoning",
    "Fraud Orders",
    "DDoS Attack",
    "FTP Brute-Force",
    "Ping of Death",
    "Phishing",
    "Fraud VoIP",
    "Open Proxy",
    "Web Spam",
    "Email Spam",
    "Blog Spam",
    "VPN IP",
    "Port Scan",
    "Hacking",
    "SQL Injection",
    "Spoofing",
    "Brute-Force",
    "Bad Web Bot",
    "Exploited Host",
    "Web App Attack",
    "SSH",
    "IoT Targeted",
];

/// The add-on labels: they describe context, not an attack, and add no
/// category of their own when combined with another id.
const VPN_IP: u8 = 13;
const SSH: u8 = 22;

/// Whether `id` is an AbuseIPDB category (1–23).
pub fn is_valid(id: u8) -> bool {
    (1..=23).contains(&id)
}

/// A set of AbuseIPDB ids expressed in sikker's vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// Distinct sikker categories, in the order of the ids that produced them.
    pub categories: Vec<Category>,
    /// The protocol an id implies (5 → ftp, 8 → sip, 22 → ssh), the first one wins.
    pub protocol: Option<Protocol>,
}

fn cat(name: &str) -> Option<Category> {
    Category::parse(name)
}

/// The sikker category of one non-qualifier id.
fn category_of(id: u8) -> Option<Category> {
    cat(match id {
        1 | 2 => "dns_abuse",
        3 | 8 => "fraud",
        4 | 6 => "ddos",
        5 | 18 | 22 => "brute_force",
        7 => "phishing",
        9 | 13 => "open_proxy",
        10..=12 => "spam",
        14 => "port_scan",
        15 => "other",
        16 => "sql_injection",
        17 => "spoofing",
        19 => "bad_bot",
        20 => "exploited_host",
        21 => "web_exploit",
        23 => "iot_targeted",
        _ => return None,
    })
}

/// Maps AbuseIPDB ids to sikker categories (inbound table of §7). `None`
/// when `ids` is empty or holds an id outside 1–23. Qualifiers (13 VPN IP,
/// 22 SSH) only yield a category when nothing else does; 22 always sets
/// protocol ssh.
pub fn to_sikker(ids: &[u8]) -> Option<Inbound> {
    if ids.is_empty() || !ids.iter().all(|i| is_valid(*i)) {
        return None;
    }
    let specific: Vec<u8> = ids
        .iter()
        .copied()
        .filter(|i| *i != VPN_IP && *i != SSH)
        .collect();
    let sources = if specific.is_empty() {
        ids.to_vec()
    } else {
        specific
    };
    let mut categories = Vec::new();
    for c in sources.iter().filter_map(|i| category_of(*i)) {
        if !categories.contains(&c) {
            categories.push(c);
        }
    }
    let protocol = ids.iter().find_map(|i| match i {
        5 => Some(Protocol::Ftp),
        8 => Some(Protocol::Sip),
        22 => Some(Protocol::Ssh),
        _ => None,
    });
    Some(Inbound {
        categories,
        protocol,
    })
}

/// Expresses one sikker category (with the report's protocol, if known) as
/// AbuseIPDB ids (outbound table of §7), most specific first.
pub fn from_sikker(category: Category, protocol: Option<Protocol>) -> Vec<u8> {
    match category.name() {
        "brute_force" => match protocol {
            Some(Protocol::Ssh) => vec![18, 22],
            Some(Protocol::Ftp) => vec![18, 5],
            _ => vec![18],
        },
        "port_scan" => vec![14],
        "ddos" => vec![4],
        "web_exploit" => vec![21],
        "sql_injection" => vec![16, 21],
        "phishing" => vec![7],
        "spam" => match protocol {
            Some(Protocol::Http) => vec![10],
            _ => vec![11],
        },
        "bad_bot" => vec![19],
        "exploited_host" | "malware" => vec![20],
        "dns_abuse" => vec![1],
        "open_proxy" => vec![9],
        "iot_targeted" => vec![23],
        "spoofing" => vec![17],
        "fraud" => vec![3],
        _ => vec![15],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &Inbound) -> Vec<&'static str> {
        v.categories.iter().map(|c| c.name()).collect()
    }

    #[test]
    fn inbound_table() {
        let expect = [
            (1, "dns_abuse"),
            (2, "dns_abuse"),
            (3, "fraud"),
            (4, "ddos"),
            (5, "brute_force"),
            (6, "ddos"),
            (7, "phishing"),
            (8, "fraud"),
            (9, "open_proxy"),
            (10, "spam"),
            (11, "spam"),
            (12, "spam"),
            (13, "open_proxy"),
            (14, "port_scan"),
            (15, "other"),
            (16, "sql_injection"),
            (17, "spoofing"),
            (18, "brute_force"),
            (19, "bad_bot"),
            (20, "exploited_host"),
            (21, "web_exploit"),
            (22, "brute_force"),
            (23, "iot_targeted"),
        ];
        for (id, name) in expect {
            assert_eq!(names(&to_sikker(&[id]).unwrap()), [name], "id {id}");
        }
        assert_eq!(to_sikker(&[5]).unwrap().protocol, Some(Protocol::Ftp));
        assert_eq!(to_sikker(&[8]).unwrap().protocol, Some(Protocol::Sip));
        assert_eq!(to_sikker(&[14]).unwrap().protocol, None);
    }

    #[test]
    fn qualifiers_add_no_category_when_combined() {
        let v = to_sikker(&[18, 22]).unwrap();
        assert_eq!(names(&v), ["brute_force"]);
        assert_eq!(v.protocol, Some(Protocol::Ssh));
        let v = to_sikker(&[21, 22]).unwrap();
        assert_eq!(names(&v), ["web_exploit"], "22 alone-only brute force");
        assert_eq!(v.protocol, Some(Protocol::Ssh));
        assert_eq!(names(&to_sikker(&[14, 13]).unwrap()), ["port_scan"]);
        assert_eq!(
            names(&to_sikker(&[13, 22]).unwrap()),
            ["open_proxy", "brute_force"]
        );
        assert_eq!(
            names(&to_sikker(&[10, 11, 21, 16]).unwrap()),
            ["spam", "web_exploit", "sql_injection"],
            "de-duplicated, in order"
        );
    }

    #[test]
    fn invalid_ids_are_refused() {
        assert!(to_sikker(&[]).is_none());
        assert!(to_sikker(&[0]).is_none());
        assert!(to_sikker(&[24]).is_none());
        assert!(to_sikker(&[18, 24]).is_none());
        assert!(!is_valid(0) && !is_valid(24) && is_valid(1) && is_valid(23));
        assert_eq!(NAMES.len(), 23);
    }

    #[test]
    fn outbound_table_and_round_trip() {
        let c = |n: &str| Category::parse(n).unwrap();
        assert_eq!(from_sikker(c("brute_force"), Some(Protocol::Ssh)), [18, 22]);
        assert_eq!(from_sikker(c("brute_force"), Some(Protocol::Ftp)), [18, 5]);
        assert_eq!(from_sikker(c("brute_force"), None), [18]);
        assert_eq!(from_sikker(c("sql_injection"), None), [16, 21]);
        assert_eq!(from_sikker(c("spam"), Some(Protocol::Http)), [10]);
        assert_eq!(from_sikker(c("spam"), Some(Protocol::Smtp)), [11]);
        assert_eq!(from_sikker(c("malware"), None), [20]);
        assert_eq!(from_sikker(c("other"), None), [15]);
        // Every sikker category survives the trip out and back in.
        for id in 1..=16 {
            let cat = Category::from_id(id).unwrap();
            let out = from_sikker(cat, None);
            assert!(out.iter().all(|i| is_valid(*i)), "{}", cat.name());
            let back = to_sikker(&out).unwrap();
            let expect = if cat.name() == "malware" {
                c("exploited_host") // no malware category upstream (lossy)
            } else {
                cat
            };
            assert!(back.categories.contains(&expect), "{}", cat.name());
        }
    }
}
