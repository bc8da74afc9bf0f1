//! The firewall bouncer's core: turning successive block lists into the
//! smallest `nft` or `ipset` update (what was added, what was removed).
//! Entries are addresses or, for a sized list (collapsed or with IPv6
//! prefixes), networks.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

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
    /// The list may hold networks: `hash:net` sets, nft interval sets.
    pub networks: bool,
}

/// Changes between two polls.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub add: Vec<IpNet>,
    pub remove: Vec<IpNet>,
}

impl Delta {
    pub fn between(old: &BTreeSet<IpNet>, new: &BTreeSet<IpNet>) -> Self {
        Self {
            add: new.difference(old).copied().collect(),
            remove: old.difference(new).copied().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// The entries of a plaintext block list (one address or CIDR per line).
pub fn parse_plain(body: &str) -> Result<BTreeSet<IpNet>, String> {
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.parse::<IpAddr>()
                .map(IpNet::from)
                .or_else(|_| l.parse::<IpNet>().map(|n| n.trunc()))
                .map_err(|_| {
                    format!("the block list holds a line that is not an IP address or CIDR: {l:?}")
                })
        })
        .collect()
}

/// An entry as the firewall tools write it: a bare address for one host.
fn entry_text(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
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
                let flags = if self.networks {
                    " flags interval;"
                } else {
                    ""
                };
                let _ = writeln!(s, "add table {f} {}", self.table);
                for (v4, name, ty) in self.sets() {
                    if self.family.holds(v4) {
                        let _ = writeln!(
                            s,
                            "add set {f} {} {name} {{ type {ty};{flags} }}",
                            self.table
                        );
                        let _ = writeln!(s, "flush set {f} {} {name}", self.table);
                    }
                }
            }
            Backend::Ipset => {
                let kind = if self.networks { "hash:net" } else { "hash:ip" };
                for (_, name, fam) in self.sets() {
                    let _ = writeln!(
                        s,
                        "create {name} {kind} family {fam} hashsize 1024 maxelem 1048576 -exist"
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
            let pick = |list: &[IpNet]| -> Vec<String> {
                list.iter()
                    .filter(|n| matches!(n, IpNet::V4(_)) == v4)
                    .map(entry_text)
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

    fn set(ips: &[&str]) -> BTreeSet<IpNet> {
        parse_plain(&ips.join("\n")).unwrap()
    }

    #[test]
    fn delta_holds_only_changes() {
        let d = Delta::between(
            &set(&["1.1.1.1", "2.2.2.2", "::1"]),
            &set(&["2.2.2.2", "3.3.3.3"]),
        );
        assert_eq!(d.add, vec!["3.3.3.3/32".parse::<IpNet>().unwrap()]);
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
            networks: false,
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
    fn networks_use_net_sets() {
        let d = Delta::between(
            &set(&["10.0.0.0/24", "10.0.1.1"]),
            &set(&["10.0.0.0/23", "2001:db8::/64"]),
        );
        let mut t = Target {
            backend: Backend::Nft,
            family: Family::Inet,
            table: "t".into(),
            set: "s".into(),
            networks: true,
        };
        assert!(
            t.setup_script()
                .contains("{ type ipv4_addr; flags interval; }")
        );
        assert_eq!(
            t.delta_script(&d),
            "delete element inet t s4 { 10.0.0.0/24, 10.0.1.1 }\n\
             add element inet t s4 { 10.0.0.0/23 }\n\
             add element inet t s6 { 2001:db8::/64 }\n"
        );
        t.backend = Backend::Ipset;
        assert!(t.setup_script().contains("create s6 hash:net family inet6"));
    }

    #[test]
    fn junk_in_the_list_is_an_error() {
        assert!(parse_plain("1.1.1.1\nnot-an-ip\n").is_err());
        assert!(parse_plain("10.0.0.0/33\n").is_err());
        assert_eq!(parse_plain("1.1.1.1\n\n::1\n").unwrap().len(), 2);
        assert!(valid_name("a;b").is_err());
    }
}
