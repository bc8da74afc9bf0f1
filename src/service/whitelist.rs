//! The admin-managed allowlist: single IPs and networks plus named range
//! sets, never listed; `Services::never_block` is the one check every
//! output asks.

use ipnet::IpNet;

use super::{Error, Result, Services};
use crate::domain::IpKey;
use crate::index::ranges::bounds;
use crate::store::{self, allowlists::NamedSet, whitelist::Entry};

/// Most lines a named set file may have.
pub const MAX_SET_LINES: usize = 100_000;
/// Widest networks an allowlist may hold: a wider one would silence most
/// of the data set, which is never what an operator means.
pub const MIN_PREFIX_V4: u8 = 8;
pub const MIN_PREFIX_V6: u8 = 16;

/// One refused line of a set file (`line` is 1-based).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BadLine {
    pub line: usize,
    pub error: String,
}

/// What a named set import did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SetImport {
    pub name: String,
    pub source: String,
    pub imported: usize,
    pub replaced: bool,
    pub bad_lines: Vec<BadLine>,
}

fn valid_set_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// One line of a set file: `None` for blank and `#` comment lines.
fn parse_set_line(line: &str) -> Option<std::result::Result<IpNet, String>> {
    let t = line.split('#').next().unwrap_or_default().trim();
    if t.is_empty() {
        return None;
    }
    let shown: String = t.chars().take(60).collect();
    Some(match parse_net(t) {
        Err(_) => Err(format!("'{shown}' is not an IP address or CIDR")),
        Ok(net) => {
            let (min, fam) = match net {
                IpNet::V4(_) => (MIN_PREFIX_V4, "IPv4"),
                IpNet::V6(_) => (MIN_PREFIX_V6, "IPv6"),
            };
            if net.prefix_len() < min {
                Err(format!(
                    "'{shown}' is wider than /{min}, the widest {fam} network an allowlist accepts"
                ))
            } else {
                Ok(net)
            }
        }
    })
}

fn key(net: &IpNet) -> (u128, u8) {
    let extra = if matches!(net, IpNet::V4(_)) { 96 } else { 0 };
    (bounds(net).0, net.prefix_len() + extra)
}

pub fn parse_net(s: &str) -> Result<IpNet> {
    let t = s.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| Error::invalid("net", format!("'{t}' is not an IP address or CIDR")))
}

impl Services {
    pub async fn whitelist_add(&self, net: &str, reason: &str) -> Result<Entry> {
        let net = parse_net(net)?;
        let reason = reason.trim().to_owned();
        if reason.is_empty() || reason.chars().count() > 200 {
            return Err(Error::invalid("reason", "must be 1 to 200 characters"));
        }
        let e = Entry {
            net: net.to_string(),
            reason,
            added_ms: self.clock.now().0,
        };
        let stored = e.clone();
        self.store
            .write(move |txn| store::whitelist::put(txn, key(&net), &stored))
            .await?;
        self.reload_whitelist().await?;
        Ok(e)
    }

    pub async fn whitelist_remove(&self, net: &str) -> Result<()> {
        let net = parse_net(net)?;
        let removed = self
            .store
            .write(move |txn| store::whitelist::remove(txn, key(&net)))
            .await?;
        if !removed {
            return Err(Error::not_found(format!("whitelist entry {net}")));
        }
        self.reload_whitelist().await
    }

    pub async fn whitelist_list(&self) -> Result<Vec<Entry>> {
        Ok(self.store.read(store::whitelist::all).await?)
    }

    /// Why `ip` must never appear in any output (check verdicts, bulk
    /// check, block lists, TAXII, the AbuseIPDB surface, alerts): the reason
    /// of the innermost allowlist entry or named set covering it.
    pub fn never_block(&self, ip: IpKey) -> Option<String> {
        self.threat.never_block(ip)
    }

    /// Imports (or replaces) the named set `name` from `text`: one IP or
    /// CIDR per line, `#` comments. Bad lines are reported by number and
    /// the rest imported; a file with no good line changes nothing. The
    /// set is replaced in one write, so outputs see the old set or the new.
    pub async fn whitelist_import(
        &self,
        name: &str,
        source: &str,
        text: &str,
    ) -> Result<SetImport> {
        let name = name.trim().to_owned();
        if !valid_set_name(&name) {
            return Err(Error::invalid(
                "name",
                "must be 1 to 64 characters of letters, digits, '.', '_' and '-'",
            ));
        }
        let source = source.trim().to_owned();
        if source.is_empty() || source.chars().count() > 200 {
            return Err(Error::invalid("source", "must be 1 to 200 characters"));
        }
        let mut nets = Vec::new();
        let mut bad_lines = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if i >= MAX_SET_LINES {
                return Err(Error::invalid(
                    "file",
                    format!("more than {MAX_SET_LINES} lines; nothing was imported"),
                ));
            }
            match parse_set_line(line) {
                None => {}
                Some(Ok(net)) => nets.push(net),
                Some(Err(error)) => bad_lines.push(BadLine { line: i + 1, error }),
            }
        }
        if nets.is_empty() {
            let why = bad_lines.first().map_or_else(
                || "the file has no IP address or CIDR".to_owned(),
                |b| format!("no good line; line {}: {}", b.line, b.error),
            );
            return Err(Error::invalid(
                "file",
                format!("{why}; nothing was imported"),
            ));
        }
        nets.sort_unstable();
        nets.dedup();
        let set = NamedSet {
            name: name.clone(),
            source: source.clone(),
            imported_ms: self.clock.now().0,
            nets: nets.iter().map(ToString::to_string).collect(),
        };
        let replaced = self
            .store
            .write(move |txn| store::allowlists::put(txn, &set))
            .await?;
        self.reload_whitelist().await?;
        Ok(SetImport {
            name,
            source,
            imported: nets.len(),
            replaced,
            bad_lines,
        })
    }

    /// Removes the named set `name`.
    pub async fn whitelist_drop_set(&self, name: &str) -> Result<()> {
        let owned = name.trim().to_owned();
        let removed = self
            .store
            .write(move |txn| store::allowlists::remove(txn, &owned))
            .await?;
        if !removed {
            return Err(Error::not_found(format!("allowlist set {}", name.trim())));
        }
        self.reload_whitelist().await
    }

    pub async fn whitelist_sets(&self) -> Result<Vec<NamedSet>> {
        Ok(self.store.read(store::allowlists::all).await?)
    }

    async fn reload_whitelist(&self) -> Result<()> {
        let all = self.store.read(store::whitelist::all).await?;
        let sets = self.store.read(store::allowlists::all).await?;
        self.threat
            .set_whitelist(super::threat::whitelist_set(&all, &sets))
    }
}
