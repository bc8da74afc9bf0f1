//! Sign-in throttling (P53): failed attempts are counted per login name
//! and per source address within a window; past a threshold further
//! attempts are refused until the window has passed. Counting is by keyed
//! hash and in memory only, and names that match no account are counted
//! exactly like real ones, so a lockout never tells whether an account
//! exists. Failures on real accounts are also recorded with the account as
//! authentication data (P02).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::UnixMillis;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failed attempts per login name within `window_ms` before refusing.
    pub per_login: usize,
    /// Failed attempts per source address within `window_ms`.
    pub per_source: usize,
    pub window_ms: i64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            per_login: 5,
            per_source: 20,
            window_ms: 15 * 60 * 1000,
        }
    }
}

#[derive(Debug, Default)]
pub struct Lockout {
    failures: Mutex<HashMap<[u8; 32], Vec<i64>>>,
}

impl Lockout {
    /// Milliseconds until `keys` may try again, if any of them is locked.
    pub fn locked_for(
        &self,
        policy: &LockoutPolicy,
        keys: &[([u8; 32], usize)],
        now: UnixMillis,
    ) -> Option<i64> {
        let map = self.failures.lock().ok()?;
        keys.iter()
            .filter_map(|(k, limit)| {
                let recent: Vec<i64> = map
                    .get(k)?
                    .iter()
                    .copied()
                    .filter(|t| now.0 - t < policy.window_ms)
                    .collect();
                (recent.len() >= *limit)
                    .then(|| {
                        recent
                            .iter()
                            .min()
                            .map(|oldest| oldest + policy.window_ms - now.0)
                    })
                    .flatten()
            })
            .max()
    }

    pub fn fail(&self, policy: &LockoutPolicy, keys: &[[u8; 32]], now: UnixMillis) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        // Forget whatever is out of the window, so memory stays bounded by
        // the attempts of the last window.
        if map.len() > 10_000 {
            map.retain(|_, v| v.iter().any(|t| now.0 - t < policy.window_ms));
        }
        for k in keys {
            let v = map.entry(*k).or_default();
            v.retain(|t| now.0 - t < policy.window_ms);
            v.push(now.0);
        }
    }

    pub fn clear(&self, key: &[u8; 32]) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_threshold_and_unlocks_after_window() {
        let p = LockoutPolicy {
            per_login: 3,
            per_source: 5,
            window_ms: 1000,
        };
        let l = Lockout::default();
        let (login, source) = ([1; 32], [2; 32]);
        let keys = [(login, p.per_login), (source, p.per_source)];
        for t in 0..3 {
            assert_eq!(l.locked_for(&p, &keys, UnixMillis(t)), None);
            l.fail(&p, &[login, source], UnixMillis(t));
        }
        assert_eq!(l.locked_for(&p, &keys, UnixMillis(10)), Some(990));
        assert_eq!(l.locked_for(&p, &keys, UnixMillis(1000)), None);
        l.clear(&login);
        assert_eq!(l.locked_for(&p, &keys, UnixMillis(10)), None);
    }
}
