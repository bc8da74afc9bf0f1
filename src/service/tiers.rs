//! Tiers and their daily limits. The defaults are SikkerAPI's published
//! tier table; an operator replaces it with a TOML file (`--tiers-file`).
//! Every feature is on every tier; tiers only change capacity.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The limits of one tier. Quotas are per API key and UTC day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Tier {
    /// Display name (`Free`, `Basic` …).
    pub name: String,
    /// Checks per day (one per single check, one per IP of a bulk check,
    /// one per username or e-mail lookup).
    pub lookups: u64,
    /// Reports per day (one per submitted row).
    pub reports: u64,
    /// Block-list IPs per day; also the most one request returns.
    pub blacklist: u64,
    /// TAXII indicators per day.
    pub taxii: u64,
    /// Watched IPs.
    pub ip_alerts: u64,
    /// Watched ranges.
    pub range_alerts: u64,
    /// Widest IPv4 range alert, as a prefix length (IPv6 ranges may be
    /// `range_max_prefix + 96` wide at most, the same number of addresses).
    pub range_max_prefix: u8,
    /// Watched usernames.
    pub username_alerts: u64,
    /// Watched e-mail addresses.
    pub email_alerts: u64,
}

/// Every tier by id (`free`, `tier_1` …); the id is what keys carry
/// (`sk_<id>_…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierTable {
    tiers: BTreeMap<String, Tier>,
}

/// The tier new accounts and keys get.
pub const DEFAULT_TIER: &str = "free";

#[allow(clippy::too_many_arguments)]
fn tier(
    name: &str,
    lookups: u64,
    reports: u64,
    blacklist: u64,
    taxii: u64,
    range_alerts: u64,
    range_max_prefix: u8,
    watch: u64,
) -> Tier {
    Tier {
        name: name.into(),
        lookups,
        reports,
        blacklist,
        taxii,
        ip_alerts: watch,
        range_alerts,
        range_max_prefix,
        username_alerts: watch,
        email_alerts: watch,
    }
}

impl Default for TierTable {
    /// SikkerAPI's table. Where it publishes no number (reports per day on
    /// paid tiers, IP and e-mail alert counts) the tier's lookup quota and
    /// username-alert count are used.
    fn default() -> Self {
        let big = 1_000_000_000;
        let tiers = [
            ("free", tier("Free", 1_000, 1_000, 5_000, 1_000, 1, 28, 5)),
            (
                "tier_1",
                tier("Basic", 7_000, 7_000, 50_000, 7_000, 5, 24, 10),
            ),
            (
                "tier_2",
                tier("Small Business", 14_000, 14_000, 75_000, 14_000, 10, 20, 20),
            ),
            (
                "tier_3",
                tier(
                    "Medium Business",
                    30_000,
                    30_000,
                    150_000,
                    30_000,
                    20,
                    16,
                    40,
                ),
            ),
            (
                "tier_4",
                tier(
                    "Large Business",
                    100_000,
                    100_000,
                    350_000,
                    100_000,
                    40,
                    16,
                    80,
                ),
            ),
            (
                "unlimited",
                tier("Unlimited", big, big, big, big, 1_000, 8, 1_000),
            ),
        ];
        Self {
            tiers: tiers.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierFile {
    tiers: BTreeMap<String, Tier>,
}

impl TierTable {
    /// Reads a tier file: `[tiers.<id>]` tables with every limit. The file
    /// must define `free`, the tier of new accounts.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let f: TierFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        for (id, t) in &f.tiers {
            if !super::apikeys::valid_tier(id) {
                return Err(format!(
                    "tier id '{id}' must be lower-case letters, digits or _ (at most 16)"
                ));
            }
            if t.name.trim().is_empty() {
                return Err(format!("tier '{id}' needs a name"));
            }
            if t.range_max_prefix > 32 {
                return Err(format!("tier '{id}': range_max_prefix must be 0 to 32"));
            }
        }
        if !f.tiers.contains_key(DEFAULT_TIER) {
            return Err(format!("the tier '{DEFAULT_TIER}' must be defined"));
        }
        Ok(Self { tiers: f.tiers })
    }

    /// The tier `id`, or the default tier's limits for an id the table no
    /// longer has (a key made before the table changed).
    pub fn get(&self, id: &str) -> &Tier {
        // `parse` and `default` both guarantee the default tier exists.
        self.tiers
            .get(id)
            .unwrap_or_else(|| &self.tiers[DEFAULT_TIER])
    }

    pub fn contains(&self, id: &str) -> bool {
        self.tiers.contains_key(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.tiers.keys().map(String::as_str)
    }

    /// The table as a TOML file (for `sikker config example`-style output
    /// and as a starting point for operators).
    pub fn to_toml(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            tiers: &'a BTreeMap<String, Tier>,
        }
        toml::to_string(&Out { tiers: &self.tiers }).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_published_table() {
        let t = TierTable::default();
        let free = t.get("free");
        assert_eq!(
            (free.lookups, free.blacklist, free.taxii, free.range_alerts),
            (1_000, 5_000, 1_000, 1)
        );
        assert_eq!(free.range_max_prefix, 28);
        assert_eq!(t.get("tier_4").blacklist, 350_000);
        assert_eq!(
            t.get("no_such_tier"),
            free,
            "unknown ids get the free limits"
        );
    }

    #[test]
    fn file_round_trips_and_bad_files_are_explained() {
        let t = TierTable::default();
        assert_eq!(TierTable::parse(&t.to_toml()).unwrap(), t);
        let e = TierTable::parse("[tiers.gold]\nname='Gold'").unwrap_err();
        assert!(e.contains("missing field"), "{e}");
        let mut no_free = t.to_toml().replace("[tiers.free]", "[tiers.freebie]");
        assert!(
            TierTable::parse(&no_free)
                .unwrap_err()
                .contains("'free' must be defined")
        );
        no_free = t.to_toml().replace("[tiers.free]", "[tiers.Free]");
        assert!(
            TierTable::parse(&no_free)
                .unwrap_err()
                .contains("lower-case")
        );
        let bad = t.to_toml().replacen("lookups = 1000", "lookups = -1", 1);
        assert!(TierTable::parse(&bad).is_err());
    }
}
