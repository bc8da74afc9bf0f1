//! Watches on IPs, ranges, usernames and e-mail addresses, per API key's
//! account, with per-tier limits.

use super::apikeys::ApiPrincipal;
use super::{Result, Services};

/// How many alerts of each kind an account has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertCounts {
    pub ip: u64,
    pub range: u64,
    pub username: u64,
    pub email: u64,
}

impl Services {
    /// The alerts `who`'s account has. No alert kinds are stored yet, so
    /// every count is zero.
    pub fn alert_counts(&self, _who: &ApiPrincipal) -> Result<AlertCounts> {
        Ok(AlertCounts::default())
    }
}
