//! The firewall bouncer's core: turning successive block lists into the
//! smallest `nft` or `ipset` update (what was added, what was removed).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

/// Which firewall tool holds the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// nftables: `nft -f -`, sets `<set>4` and `<set>6` in one table.
    Nft,
    /// ipset: `ipset restore`, sets `<set>` (IPv4) and `<set>6` (IPv6).
    Ipset,
}

/// nftables address family of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Family {
    /// Both IPv4 and IPv6.
    Inet,
    /// IPv4 only.
    Ip,
    /// IPv6 only.
    Ip6,
}

impl Family {
    fn as_str(self) -> &'static str {
        match self {
            Self::Inet => "inet",
            Self::Ip => "ip",
            Self::Ip6 => "ip6",
        }
    }

    fn holds(self, v4: bool) -> bool {
        match self {
            Self::Inet => true,
            Self::Ip => v4,
            Self::Ip6 => !v4,
        }
    }
}

/// Where the addresses go.
#[derive(Clone, Debug)]
pub struct Target {
    pub backend: Backend,
    pub family: Family,
    pub table: String,
    pub set: String,
}

/// Changes between two polls.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub add: Vec<IpAddr>,
    pub remove: Vec<IpAddr>,
}

impl Delta {
    pub fn between(old: &BTreeSet<IpAddr>, new: &BTreeSet<IpAddr>) -> Self {
        Self {
            add: new.difference(old).copied().collect(),
            remove: old.difference(new).copied().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// The addresses of a plaintext block list (one per line).
pub fn parse_plain(body: &str) -> Result<BTreeSet<IpAddr>, String> {
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.parse::<IpAddr>().map_err(|_| {
                format!("the block list holds a line that is not an IP address: {l:?}")
            })
        })
        .collect()
}

/// A set or table name that is safe to put in a script.
pub fn valid_name(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 24
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("must be 1 to 24 letters, digits, '_' or '-'".into());
    }
    Ok(s.to_owned())
}

impl Target {
    fn sets(&self) -> [(bool, String, &'static str); 2] {
        match self.backend {
            Backend::Nft => [
                (true, format!("{}4", self.set), "ipv4_addr"),
                (false, format!("{}6", self.set), "ipv6_addr"),
            ],
            Backend::Ipset => [
                (true, self.set.clone(), "inet"),
                (false, format!("{}6", self.set), "inet6"),
            ],
        }
    }

    /// Creates the table and sets when missing and empties them: the first
    /// poll after start fills them from scratch.
    pub fn setup_script(&self) -> String {
        let mut s = String::new();
        match self.backend {
            Backend::Nft => {
                let f = self.family.as_str();
                let _ = writeln!(s, "add table {f} {}", self.table);
                for (v4, name, ty) in self.sets() {
                    if self.family.holds(v4) {
                        let _ = writeln!(s, "add set {f} {} {name} {{ type {ty}; }}", self.table);
                        let _ = writeln!(s, "flush set {f} {} {name}", self.table);
                    }
                }
            }
            Backend::Ipset => {
                for (_, name, fam) in self.sets() {
                    let _ = writeln!(
                        s,
                        "create {name} hash:ip family {fam} hashsize 1024 maxelem 1048576 -exist"
                    );
                    let _ = writeln!(s, "flush {name}");
                }
            }
        }
        s
    }

    /// Removals first, then additions; addresses of a family the table does
    /// not hold are left out.
    pub fn delta_script(&self, d: &Delta) -> String {
        let mut s = String::new();
        for (v4, name, _) in self.sets() {
            if self.backend == Backend::Nft && !self.family.holds(v4) {
                continue;
            }
            let pick = |list: &[IpAddr]| -> Vec<String> {
                list.iter()
                    .filter(|ip| ip.is_ipv4() == v4)
                    .map(ToString::to_string)
                    .collect()
            };
            for (verb, ips) in [("delete", pick(&d.remove)), ("add", pick(&d.add))] {
                match self.backend {
                    Backend::Nft => {
                        for chunk in ips.chunks(1000) {
                            let _ = writeln!(
                                s,
                                "{verb} element {} {} {name} {{ {} }}",
                                self.family.as_str(),
                                self.table,
                                chunk.join(", ")
                            );
                        }
                    }
                    Backend::Ipset => {
                        let verb = if verb == "delete" { "del" } else { "add" };
                        for ip in ips {
                            let _ = writeln!(s, "{verb} {name} {ip} -exist");
                        }
                    }
                }
            }
        }
        s
    }

    /// The command that reads a script on stdin.
    pub fn command(&self) -> (&'static str, &'static [&'static str]) {
        match self.backend {
            Backend::Nft => ("nft", &["-f", "-"]),
            Backend::Ipset => ("ipset", &["restore"]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ips: &[&str]) -> BTreeSet<IpAddr> {
        ips.iter().map(|i| i.parse().unwrap()).collect()
    }

    #[test]
    fn delta_holds_only_changes() {
        let d = Delta::between(
            &set(&["1.1.1.1", "2.2.2.2", "::1"]),
            &set(&["2.2.2.2", "3.3.3.3"]),
        );
        assert_eq!(d.add, vec!["3.3.3.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(d.remove.len(), 2);
        assert!(Delta::between(&set(&["1.1.1.1"]), &set(&["1.1.1.1"])).is_empty());
    }

    #[test]
    fn scripts_per_backend_and_family() {
        let d = Delta::between(&set(&["1.1.1.1"]), &set(&["2.2.2.2", "2001:db8::1"]));
        let mut t = Target {
            backend: Backend::Nft,
            family: Family::Ip,
            table: "t".into(),
            set: "s".into(),
        };
        assert_eq!(
            t.delta_script(&d),
            "delete element ip t s4 { 1.1.1.1 }\nadd element ip t s4 { 2.2.2.2 }\n"
        );
        assert!(!t.setup_script().contains("s6"));
        t.backend = Backend::Ipset;
        assert_eq!(
            t.delta_script(&d),
            "del s 1.1.1.1 -exist\nadd s 2.2.2.2 -exist\nadd s6 2001:db8::1 -exist\n"
        );
    }

    #[test]
    fn junk_in_the_list_is_an_error() {
        assert!(parse_plain("1.1.1.1\nnot-an-ip\n").is_err());
        assert_eq!(parse_plain("1.1.1.1\n\n::1\n").unwrap().len(), 2);
        assert!(valid_name("a;b").is_err());
    }
}
