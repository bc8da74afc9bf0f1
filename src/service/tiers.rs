//! Tier limits. The defaults are the published numbers of the SikkerAPI
//! tiers; unknown tiers get the free tier's limits.

/// Most IPs one block-list request may return for `tier`.
pub fn blacklist_cap(tier: &str) -> usize {
    match tier {
        "tier_1" => 50_000,
        "tier_2" => 75_000,
        "tier_3" => 150_000,
        "tier_4" => 350_000,
        "unlimited" => usize::MAX,
        _ => 5_000,
    }
}
